//! Focused tests of each family of CEL rules in the kiln CRDs, through the same admission path
//! the apiserver takes (defaults first, structural errors block CEL).

mod common;

use common::*;
use serde_json::{Value, json};

const DIGEST_MSG: &str = "image must be pinned by digest";
const SEMVER_MSG: &str = "version must be SemVer with a leading v";
const STEPS_MSG: &str = "steps must be strictly increasing traffic percentages";
const DURATION_MSG: &str = "must be a positive duration";

fn with_image(image: &str) -> Value {
    let mut r = release();
    r["spec"]["artifacts"][0]["image"] = json!(image);
    r
}

#[test]
fn digest_pinned_images() {
    let registry = "111111111111.dkr.ecr.ca-central-1.amazonaws.com";
    for ok in [
        format!("{registry}/ingest-worker@sha256:{DIGEST}"),
        format!("{registry}/team/ingest-worker@sha256:{DIGEST}"),
        // A tag may precede the digest; the digest is what is deployed.
        format!("{registry}/ingest-worker:v1.4.2@sha256:{DIGEST}"),
        format!("localhost:5000/ingest-worker@sha256:{DIGEST}"),
        format!("ghcr.io/example/ingest_worker.v2@sha256:{DIGEST}"),
    ] {
        accepted(&with_image(&ok));
    }
    for bad in [
        format!("{registry}/ingest-worker:latest"),
        format!("{registry}/ingest-worker"),
        format!("{registry}/ingest-worker@sha256:{}", DIGEST.to_uppercase()),
        format!("{registry}/ingest-worker@sha256:{}", &DIGEST[..63]),
        format!("{registry}/ingest-worker@sha256:{DIGEST}0"),
        format!("{registry}/ingest-worker@sha512:{DIGEST}"),
        format!("{registry}/Ingest-Worker@sha256:{DIGEST}"),
        format!("{registry}/ingest-worker@{DIGEST}"),
        format!(" {registry}/ingest-worker@sha256:{DIGEST}"),
    ] {
        let errs = create_errors(&with_image(&bad));
        one_error(&errs, DIGEST_MSG);
        assert!(errs[0].starts_with("spec.artifacts[0].image: Invalid value: \"string\": "), "{}", errs[0]);
    }
}

#[test]
fn semver_versions() {
    for ok in [
        "v1.4.2",
        "v0.0.0",
        "v10.20.30",
        "v2.0.0-rc.1",
        "v1.4.2+build.7",
        "v1.0.0-alpha.beta+exp.sha.5114f85",
        "v1.0.0-0.3.7",
        "v1.0.0-x-y-z.--",
        "v1.0.0+0000",
    ] {
        let mut r = release();
        r["spec"]["version"] = json!(ok);
        accepted(&r);
    }
    for bad in [
        "1.4.2",
        "v1.4",
        "v1",
        "V1.4.2",
        "v01.4.2",
        "v1.04.2",
        "v1.4.2-",
        "v1.4.2-01",
        "v1.4.2+",
        "v1.4.2.5",
        "v1.4.2 ",
        "latest",
    ] {
        let mut r = release();
        r["spec"]["version"] = json!(bad);
        let errs = create_errors(&r);
        one_error(&errs, SEMVER_MSG);
        assert!(errs[0].starts_with("spec.version: Invalid value"), "{bad}: {}", errs[0]);
    }
}

#[test]
fn traffic_steps() {
    for steps in [json!([100]), json!([10, 100]), json!([25, 50, 75, 100]), json!([1, 2, 3, 100])] {
        let mut r = release();
        r["spec"]["target"]["ecs"]["steps"] = steps.clone();
        accepted(&r);
        let mut l = lambda_release();
        l["spec"]["target"]["lambda"]["steps"] = steps;
        accepted(&l);
    }
    for steps in [json!([50, 10, 100]), json!([10, 50]), json!([100, 50]), json!([50])] {
        let mut r = release();
        r["spec"]["target"]["ecs"]["steps"] = steps.clone();
        let errs = create_errors(&r);
        one_error(&errs, STEPS_MSG);
        assert!(errs[0].starts_with("spec.target.ecs.steps: Invalid value: \"array\""), "{}", errs[0]);
        let mut l = lambda_release();
        l["spec"]["target"]["lambda"]["steps"] = steps;
        one_error(&create_errors(&l), STEPS_MSG);
    }
    // Repeated steps are caught by the set list type, out-of-range ones by the schema.
    let mut r = release();
    r["spec"]["target"]["ecs"]["steps"] = json!([10, 10, 100]);
    one_error(&create_errors(&r), "spec.target.ecs.steps[1]: Duplicate value: 10");
    r["spec"]["target"]["ecs"]["steps"] = json!([0, 100]);
    let errs = create_errors(&r);
    assert!(errs[0].contains("spec.target.ecs.steps[0]: Invalid value: 0: spec.target.ecs.steps[0] in body should be greater than or equal to 1"), "{errs:#?}");
    r["spec"]["target"]["ecs"]["steps"] = json!([10, 150]);
    let errs = create_errors(&r);
    assert!(errs[0].contains("should be less than or equal to 100"), "{errs:#?}");
    // Steps only make sense for strategies that shift traffic.
    let mut rolling = release();
    rolling["spec"]["target"]["ecs"]["strategy"] = json!("rolling");
    one_error(&create_errors(&rolling), "steps apply to blueGreen, canary and linear only");
    let mut all_at_once = lambda_release();
    all_at_once["spec"]["target"]["lambda"]["strategy"] = json!("allAtOnce");
    one_error(&create_errors(&all_at_once), "allAtOnce moves all traffic in one step");
    all_at_once["spec"]["target"]["lambda"]["steps"] = json!([100]);
    accepted(&all_at_once);
}

#[test]
fn durations() {
    for ok in ["30s", "5m", "1h30m", "250ms", "1.5h", "90s", "1h0m0s", "720h"] {
        let mut r = release();
        r["spec"]["target"]["ecs"]["stepBake"] = json!(ok);
        accepted(&r);
    }
    for ok in ["1s", "2s", "30s", "1.5s", "1m", "720h"] {
        let mut p = rollback_policy();
        p["spec"]["interval"] = json!(ok);
        accepted(&p);
    }
    // Signals are read at most once a second; no wait is longer than 30 days.
    for bad in ["500ms", "0.5s", "999ms", "721h", "0s"] {
        let mut p = rollback_policy();
        p["spec"]["interval"] = json!(bad);
        one_error(&create_errors(&p), "spec.interval: Invalid value: \"string\": must be a duration from 1s to 720h");
    }
    for bad in ["10 minutes", "0s", "0m", "0h0m", "-5m", "5", "5d", "", "1h 30m", "5M", "ms", "721h", "720h1ms"] {
        let mut r = release();
        r["spec"]["target"]["ecs"]["stepBake"] = json!(bad);
        let errs = create_errors(&r);
        one_error(&errs, DURATION_MSG);
        assert!(errs[0].starts_with("spec.target.ecs.stepBake: Invalid value"), "{bad}: {}", errs[0]);
    }
    // A bake may be zero ("no bake"); it must still be a duration.
    for ok in ["0s", "0m", "0h0m", "10m", "250ms"] {
        let mut e = environment();
        e["spec"]["bake"] = json!({"duration": ok});
        accepted(&e);
    }
    for bad in ["0", "-5m", "10 minutes", "", "5d", "100000h"] {
        let mut e = environment();
        e["spec"]["bake"] = json!({"duration": bad});
        one_error(
            &create_errors(&e),
            "spec.bake.duration: Invalid value: \"string\": must be a duration of at most 720h (30 days) such as 0s",
        );
    }
    let mut p = rollback_policy();
    p["spec"]["metrics"] = json!([{"name": "error-rate", "query": {"namespace": "Ingest", "metricName": "ErrorRate"}, "max": 0.01, "for": "5 min"}]);
    one_error(&create_errors(&p), "spec.metrics[0].for: Invalid value");
}

#[test]
fn evidence_buckets_and_prefixes() {
    for ok in [
        json!({"bucket": "nc-audit-prod"}),
        json!({"bucket": "audit.example.com", "prefix": "kiln/"}),
        json!({"bucket": "abc", "prefix": ""}),
    ] {
        let mut e = environment();
        e["spec"]["evidence"] = ok;
        accepted(&e);
    }
    for (bad, field, msg) in [
        (json!({"bucket": "Audit_Bucket"}), "spec.evidence.bucket", "must be an S3 bucket name"),
        (json!({"bucket": "a..b"}), "spec.evidence.bucket", "must be an S3 bucket name"),
        (json!({"bucket": "nc-audit", "prefix": "/kiln/"}), "spec.evidence.prefix", "must not start with '/'"),
        (json!({"bucket": "nc-audit", "prefix": "kiln"}), "spec.evidence.prefix", "must end with '/'"),
    ] {
        let mut e = environment();
        e["spec"]["evidence"] = bad.clone();
        let errs = create_errors(&e);
        assert!(!errs.is_empty(), "{bad} accepted");
        assert!(errs.iter().any(|x| x.starts_with(field) && x.contains(msg)), "{bad}: {errs:?}");
    }
}

#[test]
fn exactly_one_of() {
    // target: ecs or lambda
    let mut both = release();
    both["spec"]["target"]["lambda"] = json!({"functionName": "f", "strategy": "allAtOnce"});
    one_error(
        &create_errors(&both),
        "spec.target: Invalid value: \"object\": set exactly one of target.ecs or target.lambda",
    );
    let mut neither = release();
    neither["spec"]["target"] = json!({});
    one_error(&create_errors(&neither), "set exactly one of target.ecs or target.lambda");

    // artifact: image or zip
    let zip = json!({"s3Bucket": "artifacts", "s3Key": "f.zip", "codeSha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="});
    let mut zip_only = lambda_release();
    zip_only["spec"]["artifacts"] = json!([{"name": "function", "zip": zip}]);
    accepted(&zip_only);
    let mut image_and_zip = release();
    image_and_zip["spec"]["artifacts"][0]["zip"] = zip;
    one_error(
        &create_errors(&image_and_zip),
        "spec.artifacts[0]: Invalid value: \"object\": set exactly one of image or zip",
    );
    let mut no_image = release();
    no_image["spec"]["artifacts"] = json!([{"name": "api"}]);
    one_error(&create_errors(&no_image), "set exactly one of image or zip");

    // listener: arn, or load balancer name and port
    let mut listener_arn = release();
    listener_arn["spec"]["target"]["ecs"]["traffic"]["listener"] =
        json!({"arn": "arn:aws:elasticloadbalancing:ca-central-1:111111111111:listener/app/ingest/1/2"});
    accepted(&listener_arn);
    let mut arn_and_name = listener_arn.clone();
    arn_and_name["spec"]["target"]["ecs"]["traffic"]["listener"]["loadBalancerName"] = json!("ingest-alb");
    arn_and_name["spec"]["target"]["ecs"]["traffic"]["listener"]["port"] = json!(443);
    one_error(
        &create_errors(&arn_and_name),
        "spec.target.ecs.traffic.listener: Invalid value: \"object\": set either arn, or loadBalancerName and port",
    );
    let mut name_without_port = release();
    name_without_port["spec"]["target"]["ecs"]["traffic"]["listener"] = json!({"loadBalancerName": "ingest-alb"});
    one_error(&create_errors(&name_without_port), "set either arn, or loadBalancerName and port");

    // target group: name, arn or tags
    let mut by_tags = release();
    by_tags["spec"]["target"]["ecs"]["traffic"]["greenTargetGroup"] = json!({"tags": {"kiln.dev/slot": "green"}});
    accepted(&by_tags);
    let mut two = release();
    two["spec"]["target"]["ecs"]["traffic"]["blueTargetGroup"]["arn"] =
        json!("arn:aws:elasticloadbalancing:::targetgroup/x/1");
    one_error(
        &create_errors(&two),
        "spec.target.ecs.traffic.blueTargetGroup: Invalid value: \"object\": set exactly one of name, arn or tags",
    );
    let mut none = release();
    none["spec"]["target"]["ecs"]["traffic"]["blueTargetGroup"] = json!({});
    one_error(&create_errors(&none), "set exactly one of name, arn or tags");

    // hooks: a Lambda or an ECS task
    let mut hook = release();
    hook["spec"]["target"]["ecs"]["hooks"] =
        json!({"preTraffic": {"lambdaFunction": "migrate", "ecsTaskDefinition": "migrate:3"}});
    one_error(
        &create_errors(&hook),
        "spec.target.ecs.hooks.preTraffic: Invalid value: \"object\": set exactly one of lambdaFunction or ecsTaskDefinition",
    );

    // alarm selector: name or prefix
    let mut alarm = rollback_policy();
    alarm["spec"]["alarms"] = json!([{"name": "a"}, {}]);
    one_error(&create_errors(&alarm), "spec.alarms[1]: Invalid value: \"object\": set exactly one of name or prefix");

    // a metric trigger needs a bound
    let mut metric = rollback_policy();
    metric["spec"]["metrics"] =
        json!([{"name": "error-rate", "query": {"namespace": "Ingest", "metricName": "ErrorRate"}}]);
    one_error(&create_errors(&metric), "spec.metrics[0]: Invalid value: \"object\": set max, min or both");

    // a policy needs at least one signal
    let mut empty = rollback_policy();
    empty["spec"] = json!({});
    one_error(
        &create_errors(&empty),
        "spec: Invalid value: \"object\": a RollbackPolicy needs at least one alarm, metric or errorBudget",
    );
}

#[test]
fn target_artifact_must_exist() {
    let mut r = release();
    r["spec"]["target"]["ecs"]["artifact"] = json!("api");
    accepted(&r);
    r["spec"]["target"]["ecs"]["artifact"] = json!("sidecar");
    one_error(
        &create_errors(&r),
        "spec.target.ecs.artifact: Invalid value: \"object\": target.ecs.artifact must name one of spec.artifacts",
    );
    let mut dup = release();
    let a = dup["spec"]["artifacts"][0].clone();
    dup["spec"]["artifacts"] = json!([a.clone(), a]);
    one_error(&create_errors(&dup), "spec.artifacts: Invalid value: \"array\": artifact names must be unique");
}

#[test]
fn strategies_need_their_settings() {
    let mut r = release();
    r["spec"]["target"]["ecs"].as_object_mut().map(|m| m.remove("traffic"));
    one_error(&create_errors(&r), "strategies blueGreen, canary and linear need traffic");
    let mut cd = release();
    cd["spec"]["target"]["ecs"]["strategy"] = json!("codeDeploy");
    cd["spec"]["target"]["ecs"].as_object_mut().map(|m| m.remove("steps"));
    one_error(&create_errors(&cd), "strategy codeDeploy needs the codeDeploy settings");
    cd["spec"]["target"]["ecs"]["codeDeploy"] =
        json!({"application": "ingest", "deploymentGroup": "ingest-prod", "containerPort": 8080});
    accepted(&cd);
}

#[test]
fn approvals_are_append_only() {
    let a = approval("seclead@example.com", "security", "2025-10-28T14:05:00Z");
    let b = approval("pm@example.com", "product", "2025-10-28T14:20:00Z");
    let c = approval("sre@example.com", "sre", "2025-10-28T14:30:00Z");
    let with = |approvals: Value| {
        let mut p = promotion();
        p["spec"]["approvals"] = approvals;
        p
    };
    // Appending is accepted, from none and from some.
    update_accepted(&with(json!([a])), &promotion());
    update_accepted(&with(json!([a, b])), &with(json!([a])));
    update_accepted(&with(json!([a, b, c])), &with(json!([a])));
    update_accepted(&with(json!([a, b])), &with(json!([a, b])));
    const MSG: &str = "spec.approvals: Invalid value: \"object\": approvals are append-only";
    // Removing, reordering and editing are rejected.
    one_error(&update_errors(&with(json!([a])), &with(json!([a, b]))), MSG);
    one_error(&update_errors(&promotion(), &with(json!([a]))), MSG);
    one_error(&update_errors(&with(json!([b, a])), &with(json!([a, b]))), MSG);
    one_error(&update_errors(&with(json!([b, a, c])), &with(json!([a, b]))), MSG);
    for (field, value) in [
        ("user", json!("mallory@example.com")),
        ("role", json!("product")),
        ("at", json!("2025-10-28T09:00:00Z")),
        ("comment", json!("edited")),
    ] {
        let mut edited = a.clone();
        edited[field] = value;
        one_error(&update_errors(&with(json!([edited, b])), &with(json!([a, b]))), MSG);
    }
    // Inserting before existing entries is an edit too.
    one_error(&update_errors(&with(json!([c, a, b])), &with(json!([a, b]))), MSG);
    // `at` is a timestamp to CEL: the same instant written with another offset is not an edit.
    let mut same_instant = a.clone();
    same_instant["at"] = json!("2025-10-28T10:05:00-04:00");
    update_accepted(&with(json!([same_instant])), &with(json!([a])));
}

#[test]
fn abort_cannot_be_undone() {
    let with = |abort: bool| {
        let mut p = promotion();
        p["spec"]["abort"] = json!(abort);
        p
    };
    update_accepted(&with(true), &promotion());
    update_accepted(&with(true), &with(false));
    update_accepted(&with(true), &with(true));
    const MSG: &str = "spec.abort: Invalid value: \"object\": abort cannot be undone";
    one_error(&update_errors(&with(false), &with(true)), MSG);
    // Removing the field defaults it back to false: also an un-abort.
    one_error(&update_errors(&promotion(), &with(true)), MSG);
}

#[test]
fn promotion_immutable_fields() {
    let mut changed = promotion();
    changed["spec"]["release"] = json!("ingest-worker-v1-4-3");
    one_error(&update_errors(&changed, &promotion()), "spec.release: Invalid value: \"object\": release is immutable");
    let with_requester = |who: Option<&str>| {
        let mut p = promotion();
        if let Some(who) = who {
            p["spec"]["requestedBy"] = json!(who);
        }
        p
    };
    update_accepted(&with_requester(Some("dana")), &with_requester(None));
    one_error(
        &update_errors(&with_requester(Some("mallory")), &with_requester(Some("dana"))),
        "requestedBy is immutable",
    );
    one_error(&update_errors(&with_requester(None), &with_requester(Some("dana"))), "requestedBy is immutable");
    let with_retry = |n: i64| {
        let mut p = promotion();
        p["spec"]["retry"] = json!(n);
        p
    };
    update_accepted(&with_retry(1), &promotion());
    one_error(
        &update_errors(&with_retry(0), &with_retry(1)),
        "spec.retry: Invalid value: \"object\": retry only counts up",
    );
    let mut rollback = promotion();
    rollback["spec"]["rollback"] = json!({"reason": "p95 regression", "fromRelease": "ingest-worker-v1-4-2"});
    accepted(&rollback);
    one_error(&update_errors(&rollback, &promotion()), "rollback is immutable");
    one_error(&update_errors(&promotion(), &rollback), "rollback is immutable");
    let mut downgrade = promotion();
    downgrade["spec"]["downgrade"] = json!(true);
    accepted(&downgrade);
    one_error(&update_errors(&downgrade, &promotion()), "downgrade is immutable");
    one_error(&update_errors(&promotion(), &downgrade), "downgrade is immutable");
    let mut explicit_false = promotion();
    explicit_false["spec"]["downgrade"] = json!(false);
    update_accepted(&explicit_false, &promotion());
}

#[test]
fn release_immutable_fields_and_mutable_ones() {
    let old = release();
    let mut new = release();
    new["spec"]["artifacts"][0]["image"] = json!(
        "111111111111.dkr.ecr.ca-central-1.amazonaws.com/ingest-worker@sha256:c1ee8b6ef072d29d90da451434d9418ae54ce84a14184c556af9ad918eb8530f"
    );
    one_error(&update_errors(&new, &old), "spec.artifacts: Invalid value: \"object\": artifacts are immutable");
    let mut new = release();
    new["spec"]["version"] = json!("v1.4.3");
    one_error(&update_errors(&new, &old), "spec.version: Invalid value: \"object\": version is immutable");
    let mut new = release();
    new["spec"]["target"]["ecs"]["stepBake"] = json!("10m");
    one_error(&update_errors(&new, &old), "spec.target: Invalid value: \"object\": target is immutable");
    // Two changes, two errors: all errors are returned.
    new["spec"]["version"] = json!("v1.4.3");
    assert_eq!(update_errors(&new, &old).len(), 2);
    // What is not immutable may change: the change ticket, the environments, labels, status.
    let mut new = release();
    new["spec"]["changeRef"] = json!("CHG-20251029-002");
    new["spec"]["environments"] = json!(["dev", "stg"]);
    new["metadata"]["labels"] = json!({"team": "ingest"});
    new["status"] = json!({"phase": "Succeeded"});
    update_accepted(&new, &old);
}

#[test]
fn absolute_spans_end_after_start() {
    let with = |start: &str, end: &str| {
        let mut f = freeze_window();
        f["spec"]["absolute"] = json!([{"start": start, "end": end, "reason": "holidays"}]);
        f
    };
    accepted(&with("2026-12-21T00:00:00-05:00", "2027-01-04T09:00:00-05:00"));
    const MSG: &str = "spec.absolute[0]: Invalid value: \"object\": end must be after start";
    one_error(&create_errors(&with("2027-01-04T09:00:00-05:00", "2026-12-21T00:00:00-05:00")), MSG);
    one_error(&create_errors(&with("2026-12-21T00:00:00-05:00", "2026-12-21T00:00:00-05:00")), MSG);
    // Compared as instants, not as text: 04:00Z is 23:00 the day before in New York.
    one_error(&create_errors(&with("2026-12-21T00:00:00-05:00", "2026-12-21T04:00:00Z")), MSG);
    accepted(&with("2026-12-21T00:00:00-05:00", "2026-12-21T05:00:01Z"));
    // Not a timestamp at all is a format error (and the rule is not run).
    let errs = create_errors(&with("next monday", "2026-12-21T05:00:01Z"));
    assert!(errs[0].contains("spec.absolute[0].start: Invalid value: \"next monday\": spec.absolute[0].start in body must be of type date-time"), "{errs:#?}");
}

#[test]
fn weekly_times() {
    for ok in ["00:00", "09:00", "17:30", "23:59"] {
        let mut f = freeze_window();
        f["spec"]["recurring"][0]["from"]["time"] = json!(ok);
        accepted(&f);
    }
    for bad in ["9:00", "24:00", "17:60", "5pm", "1700", ""] {
        let mut f = freeze_window();
        f["spec"]["recurring"][0]["from"]["time"] = json!(bad);
        one_error(&create_errors(&f), "spec.recurring[0].from.time: Invalid value: \"string\": time must be HH:MM");
    }
    let mut seconds = freeze_window();
    seconds["spec"]["recurring"][0]["from"]["time"] = json!("17:00:00");
    assert_eq!(create_errors(&seconds)[0], "spec.recurring[0].from.time: Too long: may not be longer than 5");
    let mut same = freeze_window();
    same["spec"]["recurring"][0]["to"] = json!({"day": "Friday", "time": "17:00"});
    one_error(&create_errors(&same), "spec.recurring[0]: Invalid value: \"object\": from and to must differ");
    let mut none = freeze_window();
    none["spec"]["recurring"] = json!([]);
    one_error(&create_errors(&none), "a FreezeWindow needs at least one recurring or absolute span");
}

#[test]
fn dns_label_names() {
    let mut p = promotion();
    for ok in ["prod", "prod-eu-1", "p", "a1"] {
        p["spec"]["environment"] = json!(ok);
        accepted(&p);
    }
    for bad in ["Prod", "prod_eu", "-prod", "prod-", "prod.eu", ""] {
        p["spec"]["environment"] = json!(bad);
        one_error(&create_errors(&p), "spec.environment: Invalid value: \"string\": must be a DNS-1123 label");
    }
    // 64 characters is caught by maxLength first, and the apiserver then skips CEL and says so.
    p["spec"]["environment"] = json!("p".repeat(64));
    let errs = create_errors(&p);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[0], "spec.environment: Too long: may not be longer than 63");
    assert!(errs[1].contains("some validation rules were not checked"));
    let mut r = release();
    r["spec"]["environments"] = json!(["dev", "Stg"]);
    one_error(
        &create_errors(&r),
        "spec.environments: Invalid value: \"array\": environments must be Environment names",
    );
    let mut e = environment();
    e["spec"]["upstream"] = json!(["stg_1"]);
    one_error(&create_errors(&e), "upstream entries must be Environment names");
    let mut f = freeze_window();
    f["spec"]["environments"] = json!(["PROD"]);
    one_error(&create_errors(&f), "environments must be Environment names");
    let mut a = environment();
    a["spec"]["promotion"] = json!({"approvals": [{"role": "Security"}]});
    one_error(
        &create_errors(&a),
        "spec.promotion.approvals[0].role: Invalid value: \"string\": must be a DNS-1123 label",
    );
}

#[test]
fn environment_names_and_accounts() {
    // metadata.name: a subdomain for the apiserver, a label for the Environment rule.
    let mut e = environment();
    e["metadata"]["name"] = json!("prod.eu");
    one_error(&create_errors(&e), "<nil>: Invalid value: \"object\": metadata.name must be a DNS-1123 label");
    e["metadata"]["name"] = json!("Prod");
    let errs = create_errors(&e);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].starts_with("metadata.name: Invalid value: \"Prod\": a lowercase RFC 1123 subdomain"), "{errs:#?}");
    // generateName: the rule sees the generated name.
    let mut g = environment();
    g["metadata"] = json!({"generateName": "preview-"});
    accepted(&g);

    let mut wrong_account = environment();
    wrong_account["spec"]["aws"]["roleArn"] = json!("arn:aws:iam::111111111111:role/kiln-deploy");
    one_error(
        &create_errors(&wrong_account),
        "spec.aws: Invalid value: \"object\": roleArn must be a role in accountId",
    );
    let mut short = environment();
    short["spec"]["aws"]["accountId"] = json!("33333333333");
    short["spec"]["aws"]["roleArn"] = json!("arn:aws:iam::33333333333:role/kiln-deploy");
    let errs = create_errors(&short);
    assert!(errs.iter().any(|e| e.contains("accountId must be 12 digits")), "{errs:#?}");
    let mut region = environment();
    region["spec"]["aws"]["region"] = json!("Canada Central");
    one_error(&create_errors(&region), "region must look like us-east-1");
    let mut gov = environment();
    gov["spec"]["aws"]["roleArn"] = json!("arn:aws-us-gov:iam::333333333333:role/kiln-deploy");
    accepted(&gov);
}

#[test]
fn commit_and_code_hash() {
    let mut r = release();
    r["spec"]["commit"] = json!("3f2a9c1");
    accepted(&r);
    for bad in ["3F2A9C1", "3f2a9c", "main", "3f2a9c1d8e7b6a5f40e1b2c3d4e5f60718293a4bz"] {
        r["spec"]["commit"] = json!(bad);
        one_error(&create_errors(&r), "commit must be a lowercase hex commit SHA");
    }
    let mut z = lambda_release();
    z["spec"]["artifacts"] =
        json!([{"name": "function", "zip": {"s3Bucket": "artifacts", "s3Key": "f.zip", "codeSha256": "not-a-hash"}}]);
    one_error(&create_errors(&z), "codeSha256 must be the base64 SHA-256 Lambda reports");
}
