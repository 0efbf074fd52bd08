//! Test support: a moto server per test, static test credentials, and the few EC2 calls the
//! fixtures need (made on the wire by hand so the test build does not pay for aws-sdk-ec2).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use kiln_aws::Scope;
use kiln_aws::credentials::{AwsSettings, Clients};

pub const REGION: &str = "us-east-1";
/// moto's default account (static test credentials act in it).
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// A moto server on a free 127.0.0.1 port, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    /// Starts `.venv-moto/bin/moto_server` and waits until it answers. Fails (never skips) when
    /// moto is not installed.
    pub fn start() -> Moto {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let bin = root.join(".venv-moto/bin/moto_server");
        assert!(
            bin.exists(),
            "moto is not installed at {}: run scripts/moto.sh (it installs the pinned moto[server] into .venv-moto)",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(std::env::temp_dir().join(format!("kiln-moto-{port}.log"))).unwrap())
            .spawn()
            .expect("start moto_server");
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(body) = http(port, "GET", "/moto-api/", &[], "")
                && !body.is_empty()
            {
                break;
            }
            assert!(Instant::now() < deadline, "moto_server did not start on port {port} within 60s");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn settings(&self) -> AwsSettings {
        AwsSettings::for_endpoint(self.url())
    }

    /// Clients acting in moto's default account with static test credentials.
    pub async fn clients(&self) -> Clients {
        let creds = Credentials::new("AKIATESTTESTTEST", "test", None, None, "static");
        let config = self.settings().sdk_config(REGION, SharedCredentialsProvider::new(creds)).await;
        Clients::new(&config, Scope { account_id: DEFAULT_ACCOUNT.into(), region: REGION.into() })
    }

    /// An EC2 Query API call as `access_key` (moto maps assumed-role keys to their account).
    pub fn ec2(&self, access_key: &str, params: &[(&str, &str)]) -> String {
        self.query("ec2", "2016-11-15", access_key, params)
    }

    /// An AWS Query-protocol call made by hand (moto does not check signatures; it reads the
    /// access key and service from the Authorization header).
    pub fn query(&self, service: &str, version: &str, access_key: &str, params: &[(&str, &str)]) -> String {
        let mut body = format!("Version={version}");
        for (k, v) in params {
            body.push('&');
            body.push_str(k);
            body.push('=');
            body.push_str(&encode(v));
        }
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={access_key}/20250101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        http(
            self.port,
            "POST",
            "/",
            &[("Authorization", &auth), ("Content-Type", "application/x-www-form-urlencoded")],
            &body,
        )
        .unwrap()
    }

    /// An IAM role Lambda can assume, in `access_key`'s account; returns its ARN.
    pub fn lambda_role(&self, access_key: &str, name: &str) -> String {
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        let out = self.query(
            "iam",
            "2010-05-08",
            access_key,
            &[("Action", "CreateRole"), ("RoleName", name), ("AssumeRolePolicyDocument", policy)],
        );
        tag(&out, "Arn")
    }

    /// A VPC with two subnets in `access_key`'s account: (vpc, [subnets]).
    pub fn vpc(&self, access_key: &str) -> (String, Vec<String>) {
        let vpc = tag(&self.ec2(access_key, &[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")]), "vpcId");
        let mut subnets = Vec::new();
        for (i, az) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
            let cidr = format!("10.0.{i}.0/24");
            let out = self.ec2(
                access_key,
                &[("Action", "CreateSubnet"), ("VpcId", &vpc), ("CidrBlock", &cidr), ("AvailabilityZone", az)],
            );
            subnets.push(tag(&out, "subnetId"));
        }
        (vpc, subnets)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn tag(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("no <{name}> in {xml}")) + open.len();
    let end = xml[start..].find('<').unwrap() + start;
    xml[start..end].to_string()
}

/// A minimal HTTP/1.1 request to 127.0.0.1:`port`; returns the body.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

pub const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A realistic ECS blue/green setup: VPC, two subnets, an ALB with a listener on port 80
/// forwarding 100/0 to blue/green target groups, a cluster, an EXTERNAL service with a blue
/// task set (PRIMARY) on the blue target group.
pub struct EcsFixture {
    pub cluster: String,
    pub service: String,
    pub lb_name: String,
    pub listener_arn: String,
    pub blue_tg: String,
    pub green_tg: String,
    pub blue_task_set: String,
    pub task_definition: String,
}

pub async fn ecs_fixture(moto: &Moto, clients: &Clients, access_key: &str, prefix: &str) -> EcsFixture {
    use aws_sdk_ecs::types as ecs;
    use aws_sdk_elasticloadbalancingv2::types as elb;
    let (vpc, subnets) = moto.vpc(access_key);
    let sg = tag(
        &moto.ec2(
            access_key,
            &[("Action", "CreateSecurityGroup"), ("GroupName", prefix), ("GroupDescription", "web"), ("VpcId", &vpc)],
        ),
        "groupId",
    );
    let lb_name = format!("{prefix}-alb");
    let lb = clients
        .elb
        .create_load_balancer()
        .name(&lb_name)
        .set_subnets(Some(subnets.clone()))
        .r#type(elb::LoadBalancerTypeEnum::Application)
        .send()
        .await
        .unwrap();
    let lb_arn = lb.load_balancers()[0].load_balancer_arn().unwrap().to_string();
    let mut tgs = Vec::new();
    for color in ["blue", "green"] {
        let tg = clients
            .elb
            .create_target_group()
            .name(format!("{prefix}-{color}"))
            .protocol(elb::ProtocolEnum::Http)
            .port(8080)
            .vpc_id(&vpc)
            .target_type(elb::TargetTypeEnum::Ip)
            .tags(elb::Tag::builder().key("kiln.test/color").value(format!("{prefix}-{color}")).build())
            .send()
            .await
            .unwrap();
        tgs.push(tg.target_groups()[0].target_group_arn().unwrap().to_string());
    }
    let fwd = elb::ForwardActionConfig::builder()
        .target_groups(elb::TargetGroupTuple::builder().target_group_arn(&tgs[0]).weight(100).build())
        .target_groups(elb::TargetGroupTuple::builder().target_group_arn(&tgs[1]).weight(0).build())
        .build();
    let listener = clients
        .elb
        .create_listener()
        .load_balancer_arn(&lb_arn)
        .protocol(elb::ProtocolEnum::Http)
        .port(80)
        .default_actions(elb::Action::builder().r#type(elb::ActionTypeEnum::Forward).forward_config(fwd).build())
        .send()
        .await
        .unwrap();
    let listener_arn = listener.listeners()[0].listener_arn().unwrap().to_string();

    let cluster = format!("{prefix}-cluster");
    clients.ecs.create_cluster().cluster_name(&cluster).send().await.unwrap();
    let td = clients
        .ecs
        .register_task_definition()
        .family(format!("{prefix}-web"))
        .network_mode(ecs::NetworkMode::Awsvpc)
        .requires_compatibilities(ecs::Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ecs::ContainerDefinition::builder()
                .name("app")
                .image("registry.example/app:v1")
                // moto sums container memory when placing tasks (it fails without it).
                .memory(384)
                .cpu(128)
                .essential(true)
                .port_mappings(ecs::PortMapping::builder().container_port(8080).build())
                .environment(ecs::KeyValuePair::builder().name("MODE").value("blue").build())
                .build(),
        )
        .container_definitions(
            ecs::ContainerDefinition::builder()
                .name("sidecar")
                .image("registry.example/proxy:v7")
                .essential(false)
                .memory(128)
                .cpu(128)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let task_definition = td.task_definition().unwrap().task_definition_arn().unwrap().to_string();
    let service = format!("{prefix}-svc");
    clients
        .ecs
        .create_service()
        .cluster(&cluster)
        .service_name(&service)
        // moto starts tasks for a task set's scale and, with awsvpc networking, fails building
        // their network interface (AttributeError private_dns_name): no tasks in tests.
        .desired_count(0)
        .deployment_controller(
            ecs::DeploymentController::builder().r#type(ecs::DeploymentControllerType::External).build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    let network = ecs::NetworkConfiguration::builder()
        .awsvpc_configuration(
            ecs::AwsVpcConfiguration::builder().set_subnets(Some(subnets)).security_groups(&sg).build().unwrap(),
        )
        .build();
    let ts = clients
        .ecs
        .create_task_set()
        .cluster(&cluster)
        .service(&service)
        .task_definition(&task_definition)
        .external_id("initial")
        .launch_type(ecs::LaunchType::Fargate)
        .network_configuration(network)
        .load_balancers(
            ecs::LoadBalancer::builder().target_group_arn(&tgs[0]).container_name("app").container_port(8080).build(),
        )
        .scale(ecs::Scale::builder().unit(ecs::ScaleUnit::Percent).value(100.0).build())
        .send()
        .await
        .unwrap();
    let blue_task_set = ts.task_set().unwrap().task_set_arn().unwrap().to_string();
    clients
        .ecs
        .update_service_primary_task_set()
        .cluster(&cluster)
        .service(&service)
        .primary_task_set(&blue_task_set)
        .send()
        .await
        .unwrap();
    EcsFixture {
        cluster,
        service,
        lb_name,
        listener_arn,
        blue_tg: tgs[0].clone(),
        green_tg: tgs[1].clone(),
        blue_task_set,
        task_definition,
    }
}

/// The listener's forward weights as (target group ARN, weight).
pub async fn listener_weights(clients: &Clients, listener: &str) -> Vec<(String, i32)> {
    kiln_aws::elb::weights(&clients.elb, listener)
        .await
        .unwrap()
        .into_iter()
        .map(|w| (w.target_group_arn, w.weight))
        .collect()
}

/// The service's task sets as (ARN, status, externalId).
pub async fn task_sets(clients: &Clients, f: &EcsFixture) -> Vec<(String, String, String)> {
    let out = clients.ecs.describe_task_sets().cluster(&f.cluster).service(&f.service).send().await.unwrap();
    let mut v: Vec<_> = out
        .task_sets()
        .iter()
        .map(|t| {
            (
                t.task_set_arn().unwrap_or_default().to_string(),
                t.status().unwrap_or_default().to_string(),
                t.external_id().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A request the [`Stub`] received.
#[derive(Debug, Clone)]
pub struct StubRequest {
    /// Header lines, lower-cased names: (name, value).
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl StubRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A canned answer: (status, content type, body).
pub type StubResponse = (u16, &'static str, String);

type Handler = dyn Fn(&StubRequest, usize) -> StubResponse + Send + Sync;

/// A tiny HTTP/1.1 server on 127.0.0.1 answering canned responses (for AWS paths moto lacks):
/// `handler(request, n)` answers the `n`th request (0-based). Every answer closes the connection.
pub struct Stub {
    pub port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<StubRequest>>>,
}

impl Stub {
    pub fn start(handler: impl Fn(&StubRequest, usize) -> StubResponse + Send + Sync + 'static) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let handler: Box<Handler> = Box::new(handler);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let Some(req) = read_request(&mut conn) else { continue };
                let n = {
                    let mut r = seen.lock().unwrap();
                    r.push(req.clone());
                    r.len() - 1
                };
                let (status, content_type, body) = handler(&req, n);
                let reason = match status {
                    200 => "OK",
                    400 => "Bad Request",
                    500 => "Internal Server Error",
                    503 => "Service Unavailable",
                    _ => "Status",
                };
                let out = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: stub-{n}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(out.as_bytes());
                let _ = conn.flush();
            }
        });
        Stub { port, requests }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<StubRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Clients in moto's default account pointed at the stub, with kiln's timeouts and retries.
    pub async fn clients(&self) -> Clients {
        let creds = Credentials::new("AKIATESTTESTTEST", "test", None, None, "static");
        let config =
            AwsSettings::for_endpoint(self.url()).sdk_config(REGION, SharedCredentialsProvider::new(creds)).await;
        Clients::new(&config, Scope { account_id: DEFAULT_ACCOUNT.into(), region: REGION.into() })
    }
}

fn read_request(conn: &mut TcpStream) -> Option<StubRequest> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    Some(StubRequest { headers, body })
}

/// A metric alarm `name` in the account of `clients` (Kiln/Test Errors >= 1 over one minute).
pub async fn put_alarm(clients: &Clients, name: &str) {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
    clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("Kiln/Test")
        .metric_name("Errors")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .unwrap();
}

/// Sets alarm `name` to `state` (CloudWatch SetAlarmState).
pub async fn set_state(clients: &Clients, name: &str, state: aws_sdk_cloudwatch::types::StateValue) {
    clients.cloudwatch.set_alarm_state().alarm_name(name).state_value(state).state_reason("test").send().await.unwrap();
}
