//! Real adapter code against a canned-response HTTP stub on 127.0.0.1, for the paths moto lacks
//! (CodeDeploy StopDeployment, DescribeAlarmHistory) and for retries, which moto cannot provoke.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jiff::Timestamp;
use kiln_aws::codedeploy::{CodeDeploy, CodeDeployEcs, CodeDeployRequest, DeploymentState, StopOutcome};
use kiln_aws::signals::AlarmSource;
use kiln_aws::signals::cloudwatch::CloudWatch;
use kiln_core::signals::AlarmState;
use kiln_testkit::*;

const JSON: &str = "application/x-amz-json-1.1";
const XML: &str = "text/xml";

fn ok(body: &str) -> StubResponse {
    (200, JSON, body.to_string())
}

fn target(r: &StubRequest) -> String {
    r.header("x-amz-target").unwrap_or_default().to_string()
}

fn request() -> CodeDeployRequest {
    CodeDeployRequest {
        application: "web".into(),
        deployment_group: "web-dg".into(),
        deployment_config: None,
        task_definition: "arn:aws:ecs:us-east-1:123456789012:task-definition/web:7".into(),
        container_name: "app".into(),
        container_port: 8080,
        hooks: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codedeploy_stop_tells_rollback_from_already_completed() {
    let stub = Stub::start(|r, n| {
        assert_eq!(target(r), "CodeDeploy_20141006.StopDeployment");
        if n == 0 {
            ok(r#"{"status":"Pending","statusMessage":"Stopping deployment d-ABC"}"#)
        } else {
            (
                400,
                JSON,
                r#"{"__type":"DeploymentAlreadyCompletedException","message":"The deployment d-ABC has already completed"}"#
                    .into(),
            )
        }
    });
    let api = CodeDeployEcs::new(stub.clients().await);
    assert_eq!(
        api.stop("d-ABC").await.unwrap(),
        StopOutcome::RollingBack { status: "Pending".into(), message: "Stopping deployment d-ABC".into() }
    );
    assert_eq!(api.stop("d-ABC").await.unwrap(), StopOutcome::AlreadyCompleted, "nothing rolled back");
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 2, "DeploymentAlreadyCompletedException is an answer, not retried");
    let body: serde_json::Value = serde_json::from_str(&reqs[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"deploymentId": "d-ABC", "autoRollbackEnabled": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codedeploy_repeat_follows_list_pages_and_only_active_deployments() {
    let stub = Stub::start(|r, _| {
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        match target(r).as_str() {
            "CodeDeploy_20141006.ListDeployments" => {
                if body.get("nextToken").and_then(|t| t.as_str()) == Some("page-2") {
                    ok(r#"{"deployments":["d-2","d-3"]}"#)
                } else {
                    ok(r#"{"deployments":["d-1"],"nextToken":"page-2"}"#)
                }
            }
            "CodeDeploy_20141006.BatchGetDeployments" => {
                // d-2 is this Promotion's but finished (listed anyway: kiln checks the status too);
                // d-3 is this Promotion's and in progress.
                ok(r#"{"deploymentsInfo":[
                    {"deploymentId":"d-1","description":"kiln promotion other","status":"InProgress"},
                    {"deploymentId":"d-2","description":"kiln promotion uid-x","status":"Failed"},
                    {"deploymentId":"d-3","description":"kiln promotion uid-x","status":"Ready"}]}"#)
            }
            "CodeDeploy_20141006.CreateDeployment" => ok(r#"{"deploymentId":"d-NEW"}"#),
            other => panic!("unexpected {other}"),
        }
    });
    let api = CodeDeployEcs::new(stub.clients().await);
    assert_eq!(api.create("uid-x", &request()).await.unwrap(), "d-3", "found on the second page");
    // No active deployment carries uid-y: it is created.
    assert_eq!(api.create("uid-y", &request()).await.unwrap(), "d-NEW");

    let reqs = stub.requests();
    let targets: Vec<String> = reqs.iter().map(target).collect();
    let op = |t: &str| format!("CodeDeploy_20141006.{t}");
    assert_eq!(
        targets,
        vec![
            op("ListDeployments"),
            op("ListDeployments"),
            op("BatchGetDeployments"),
            op("ListDeployments"),
            op("ListDeployments"),
            op("BatchGetDeployments"),
            op("CreateDeployment"),
        ]
    );
    let first: serde_json::Value = serde_json::from_str(&reqs[0].body).unwrap();
    assert_eq!(first["includeOnlyStatuses"], serde_json::json!(["Created", "Queued", "InProgress", "Baking", "Ready"]));
    let second: serde_json::Value = serde_json::from_str(&reqs[1].body).unwrap();
    assert_eq!(second["nextToken"], "page-2");
    let batch: serde_json::Value = serde_json::from_str(&reqs[2].body).unwrap();
    assert_eq!(batch["deploymentIds"], serde_json::json!(["d-1", "d-2", "d-3"]));
}

fn history_page(items: &[(&str, &str, &str)], next: Option<&str>) -> String {
    let members: String = items
        .iter()
        .map(|(at, from, to)| {
            format!(
                "<member><AlarmName>web-5xx</AlarmName><Timestamp>{at}</Timestamp>\
                 <HistoryItemType>StateUpdate</HistoryItemType>\
                 <HistorySummary>Alarm updated from {from} to {to}</HistorySummary>\
                 <HistoryData>{{&quot;version&quot;:&quot;1.0&quot;,&quot;oldState&quot;:{{&quot;stateValue&quot;:&quot;{from}&quot;}},&quot;newState&quot;:{{&quot;stateValue&quot;:&quot;{to}&quot;,&quot;stateReason&quot;:&quot;Threshold Crossed&quot;}}}}</HistoryData></member>"
            )
        })
        .collect();
    let next = next.map(|t| format!("<NextToken>{t}</NextToken>")).unwrap_or_default();
    format!(
        r#"<DescribeAlarmHistoryResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><DescribeAlarmHistoryResult><AlarmHistoryItems>{members}</AlarmHistoryItems>{next}</DescribeAlarmHistoryResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeAlarmHistoryResponse>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_alarm_history_parses_state_updates() {
    let stub = Stub::start(|r, _| {
        assert!(r.body.contains("Action=DescribeAlarmHistory"), "{}", r.body);
        if r.body.contains("NextToken=h2") {
            (200, XML, history_page(&[("2026-01-01T00:03:00.000Z", "ALARM", "OK")], None))
        } else {
            (200, XML, history_page(&[("2026-01-01T00:02:00Z", "OK", "ALARM")], Some("h2")))
        }
    });
    let clients = stub.clients().await;
    let cw = CloudWatch::new(clients.cloudwatch.clone(), clients.scope.clone());
    let since: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let history = cw.alarm_history("web-5xx", since).await.unwrap().expect("history available");
    assert_eq!(
        history,
        vec![
            ("2026-01-01T00:02:00Z".parse().unwrap(), AlarmState::Alarm),
            ("2026-01-01T00:03:00Z".parse().unwrap(), AlarmState::Ok),
        ]
    );
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 2);
    for part in
        ["AlarmName=web-5xx", "HistoryItemType=StateUpdate", "ScanBy=TimestampAscending", "StartDate=2026-01-01T00"]
    {
        assert!(reqs[0].body.contains(part), "{part} in {}", reqs[0].body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_twice_then_200_is_retried_to_success() {
    let stub = Stub::start(|_, n| {
        if n < 2 {
            (503, JSON, r#"{"__type":"ServiceUnavailableException","message":"try again"}"#.into())
        } else {
            ok(r#"{"deploymentInfo":{"deploymentId":"d-1","status":"Succeeded"}}"#)
        }
    });
    let api = CodeDeployEcs::new(stub.clients().await);
    assert_eq!(api.state("d-1").await.unwrap(), DeploymentState::Succeeded);
    assert_eq!(stub.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_twice_then_200_is_retried_to_success() {
    let stub = Stub::start(|_, n| {
        if n < 2 {
            (
                400,
                XML,
                "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>t</RequestId></ErrorResponse>".into(),
            )
        } else {
            (200, XML, history_page(&[("2026-01-01T00:02:00Z", "OK", "ALARM")], None))
        }
    });
    let clients = stub.clients().await;
    let cw = CloudWatch::new(clients.cloudwatch.clone(), clients.scope.clone());
    let history = cw.alarm_history("web-5xx", "2026-01-01T00:00:00Z".parse().unwrap()).await.unwrap();
    assert_eq!(history, Some(vec![("2026-01-01T00:02:00Z".parse().unwrap(), AlarmState::Alarm)]));
    assert_eq!(stub.requests().len(), 3);
}

/// An AWS answer kiln cannot parse never reaches an error message (which goes to logs, Events and
/// status): a malformed AssumeRole answer carries the role's secret key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_assume_role_answer_never_reaches_an_error_message() {
    use aws_credential_types::provider::SharedCredentialsProvider;
    use kiln_aws::credentials::{AssumeRole, AwsSettings, EnvironmentAws, StsAssumeRole};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzKILNSECRET";
    let stub = Stub::start(|_, _| {
        // The credentials are there; the expiration is not a timestamp, so the SDK cannot parse it.
        let body = format!(
            "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials>\
             <AccessKeyId>ASIAKILNTEST</AccessKeyId><SecretAccessKey>{SECRET}</SecretAccessKey>\
             <SessionToken>token-{SECRET}</SessionToken><Expiration>in an hour</Expiration></Credentials>\
             </AssumeRoleResult></AssumeRoleResponse>"
        );
        (200, XML, body)
    });
    let creds = SharedCredentialsProvider::new(MotoEndpoint::static_credentials());
    let base = AwsSettings::for_endpoint(stub.url()).sdk_config(REGION, creds).await;
    let env = EnvironmentAws {
        account_id: "222222222222".into(),
        region: REGION.into(),
        role_arn: "arn:aws:iam::222222222222:role/kiln-deploy".into(),
        external_id: None,
        session_tags: Vec::new(),
    };
    let err = StsAssumeRole::new(&base).assume(&env, "kiln-test").await.unwrap_err();
    let shown = format!("{err} | {err:?}");
    assert!(!shown.contains(SECRET), "the secret leaked into the error: {shown}");
    assert!(shown.contains("AssumeRole") && shown.contains("could not be read"), "it says what failed: {shown}");
}
