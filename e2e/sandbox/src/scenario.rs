//! The scripted release and the narration of what kiln records.

use std::collections::HashMap;
use std::time::Duration;

use kiln_api::{Environment, FreezeWindow, Promotion, PromotionPhase, Release, RollbackPolicy};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::world::{POLL, World, example};

/// Where the scripted scenario ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// ingest-worker's prod Promotion.
    pub ingest_prod: Option<PromotionPhase>,
    /// api-adapter's stg Promotion.
    pub api_stg: Option<PromotionPhase>,
    /// Its rollback cause.
    pub api_stg_cause: Option<String>,
    /// Measured breach to restore (ms).
    pub breach_to_restore_ms: Option<i64>,
    /// The stg alias went back to version 1.
    pub alias_restored: bool,
    /// prod was held by the freeze before it deployed.
    pub prod_was_frozen: bool,
}

impl Outcome {
    /// Whether the scenario reached every expected end state.
    pub fn ok(&self) -> bool {
        self.ingest_prod == Some(PromotionPhase::Succeeded)
            && self.api_stg == Some(PromotionPhase::RolledBack)
            && self.api_stg_cause.as_deref() == Some("alarm")
            && self.alias_restored
            && self.prod_was_frozen
    }
}

/// Compressed durations: the examples' policies, minutes turned into seconds.
fn compress(doc: &mut Value) {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    match kind.as_str() {
        "Environment" => {
            let bake = match name.as_str() {
                "dev" => "3s",
                "stg" => "6s",
                _ => "4s",
            };
            if let Some(b) = doc.pointer_mut("/spec/bake/duration") {
                *b = json!(bake);
            }
            if let Some(m) = doc.pointer_mut("/spec/promotion/minUpstreamBake") {
                *m = json!("5s");
            }
        }
        "Release" => {
            for target in ["ecs", "lambda"] {
                if let Some(t) = doc.pointer_mut(&format!("/spec/target/{target}")).and_then(Value::as_object_mut) {
                    if t.contains_key("stepBake") {
                        t.insert("stepBake".into(), json!("3s"));
                    }
                    // moto starts an ECS task but never runs it to completion, so a hook task
                    // would never finish: the sandbox leaves hooks out.
                    t.remove("hooks");
                }
            }
        }
        _ => {}
    }
}

async fn create(client: &kube::Client, doc: &Value) -> Result<(), String> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let ns = doc.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
    let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let pp = PostParams::default();
    let err = |e: kube::Error| format!("create {kind} {name}: {e}");
    let bad = |e: serde_json::Error| format!("{kind} {name}: {e}");
    match kind {
        "Environment" => {
            let o: Environment = serde_json::from_value(doc.clone()).map_err(bad)?;
            Api::<Environment>::all(client.clone()).create(&pp, &o).await.map_err(err)?;
        }
        "Release" => {
            let o: Release = serde_json::from_value(doc.clone()).map_err(bad)?;
            Api::<Release>::namespaced(client.clone(), ns).create(&pp, &o).await.map_err(err)?;
        }
        "Promotion" => {
            let o: Promotion = serde_json::from_value(doc.clone()).map_err(bad)?;
            Api::<Promotion>::namespaced(client.clone(), ns).create(&pp, &o).await.map_err(err)?;
        }
        "FreezeWindow" => {
            let o: FreezeWindow = serde_json::from_value(doc.clone()).map_err(bad)?;
            Api::<FreezeWindow>::namespaced(client.clone(), ns).create(&pp, &o).await.map_err(err)?;
        }
        "RollbackPolicy" => {
            let o: RollbackPolicy = serde_json::from_value(doc.clone()).map_err(bad)?;
            Api::<RollbackPolicy>::namespaced(client.clone(), ns).create(&pp, &o).await.map_err(err)?;
        }
        other => return Err(format!("examples: unexpected kind {other}")),
    }
    Ok(())
}

fn rfc3339(secs_from_now: i64) -> String {
    let t = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs_from_now))
        .unwrap_or(jiff::Timestamp::now());
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Applies the environments, policies and (when not in force now) the holiday freeze, and the
/// Releases' prerequisites; the weekend freeze comes when prod is reached.
async fn apply_setup(world: &World, say: &(dyn Fn(&str) + Send + Sync)) -> Result<Vec<Value>, String> {
    say("applying examples/environments.yaml, rollback-policy.yaml, freeze-windows.yaml (bakes compressed to seconds)");
    for file in ["environments.yaml", "rollback-policy.yaml"] {
        for mut doc in example(&world.repo, file)? {
            compress(&mut doc);
            create(&world.client, &doc).await?;
        }
    }
    let mut weekend = Vec::new();
    for doc in example(&world.repo, "freeze-windows.yaml")? {
        let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        if name == "weekend" {
            weekend.push(doc);
            continue;
        }
        // A dated window (the holidays) applies as written, unless it is in force right now:
        // then the scripted release could not finish, and the sandbox says so.
        let now = jiff::Timestamp::now();
        let active = doc.pointer("/spec/absolute").and_then(Value::as_array).is_some_and(|spans| {
            spans.iter().any(|s| {
                let t = |k: &str| s.get(k).and_then(Value::as_str).and_then(|v| v.parse::<jiff::Timestamp>().ok());
                matches!((t("start"), t("end")), (Some(a), Some(b)) if a <= now && now < b)
            })
        });
        if active {
            say(&format!(
                "freeze window {name} is in force today; the sandbox leaves it out so the release can finish"
            ));
        } else {
            create(&world.client, &doc).await?;
        }
    }
    Ok(weekend)
}

/// Applies the weekend freeze compressed: in force now, ending `secs` from now.
async fn freeze_now(world: &World, weekend: Vec<Value>, secs: i64) -> Result<(), String> {
    for mut doc in weekend {
        if let Some(spec) = doc.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("recurring");
            let reason = format!("weekend (compressed by the sandbox: ends {secs} s after it started)");
            spec.insert("absolute".into(), json!([{"start": rfc3339(-60), "end": rfc3339(secs), "reason": reason}]));
        }
        create(&world.client, &doc).await?;
    }
    Ok(())
}

/// For `--interactive`: the examples applied (clock compressed; the weekend freeze ends three
/// minutes from now) and both Releases created, so dev deploys by itself and the rest is yours.
pub async fn interactive_setup(world: &World, say: &(dyn Fn(&str) + Send + Sync)) -> Result<(), String> {
    let weekend = apply_setup(world, say).await?;
    freeze_now(world, weekend, 180).await?;
    say("the weekend prod freeze is on for the next 3 minutes (compressed)");
    for file in ["release-ingest-worker.yaml", "release-api-adapter.yaml"] {
        say(&format!("applying examples/{file}"));
        for mut doc in example(&world.repo, file)? {
            compress(&mut doc);
            create(&world.client, &doc).await?;
        }
    }
    Ok(())
}

/// Follows every Promotion's timeline and prints what is new.
pub struct Narrator {
    client: kube::Client,
    started: std::time::Instant,
    /// Timeline entries already printed, per Promotion.
    seen: std::sync::Mutex<HashMap<String, usize>>,
}

impl Narrator {
    /// A narrator for `world`.
    pub fn new(world: &World) -> Narrator {
        Narrator { client: world.client.clone(), started: world.started, seen: std::sync::Mutex::new(HashMap::new()) }
    }

    fn clock(&self) -> String {
        let s = self.started.elapsed().as_secs_f64();
        format!("{:>2}:{:04.1}", (s / 60.0) as u64, s % 60.0)
    }

    /// Prints new timeline entries until dropped.
    pub async fn follow(&self, say: &(dyn Fn(&str) + Send + Sync)) {
        let promotions: Api<Promotion> = Api::all(self.client.clone());
        let mut names: HashMap<String, String> = HashMap::new();
        loop {
            if let Ok(list) = promotions.list(&ListParams::default()).await {
                let mut items = list.items;
                items.sort_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp));
                for p in items {
                    let ns = p.metadata.namespace.clone().unwrap_or_default();
                    let key = format!("{ns}/{}", p.metadata.name.clone().unwrap_or_default());
                    let Some(status) = &p.status else { continue };
                    let from = self.seen.lock().map(|m| m.get(&key).copied().unwrap_or(0)).unwrap_or(0);
                    if status.timeline.len() <= from {
                        continue;
                    }
                    if !names.contains_key(&p.spec.release)
                        && let Ok(Some(r)) =
                            Api::<Release>::namespaced(self.client.clone(), &ns).get_opt(&p.spec.release).await
                    {
                        names.insert(p.spec.release.clone(), format!("{} {}", r.spec.service, r.spec.version));
                    }
                    let what = names.get(&p.spec.release).cloned().unwrap_or_else(|| p.spec.release.clone());
                    for t in status.timeline.iter().skip(from) {
                        say(&format!(
                            "[{}] {:<4} {:<24} {:<18} {}",
                            self.clock(),
                            p.spec.environment,
                            what,
                            t.phase.as_str(),
                            shorten_arns(&t.message)
                        ));
                    }
                    if let Ok(mut m) = self.seen.lock() {
                        m.insert(key, status.timeline.len());
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

async fn wait_for(
    world: &World,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&Promotion) -> bool,
) -> Result<Promotion, String> {
    let api: Api<Promotion> = Api::namespaced(world.client.clone(), ns);
    loop {
        match api.get_opt(name).await {
            Ok(Some(p)) if pred(&p) => return Ok(p),
            Ok(Some(p)) if p.status.as_ref().is_some_and(|s| s.phase.is_terminal()) && !pred(&p) => {
                let s = p.status.unwrap_or_default();
                return Err(format!(
                    "Promotion {ns}/{name} ended {} ({}) instead of {what}",
                    s.phase.as_str(),
                    s.message.unwrap_or_default()
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("read Promotion {ns}/{name}: {e}")),
        }
        tokio::time::sleep(POLL).await;
    }
}

fn phase_is(p: &Promotion, phase: PromotionPhase) -> bool {
    p.status.as_ref().map(|s| s.phase) == Some(phase)
}

async fn promote(world: &World, ns: &str, release: &str, env: &str, as_user: &str) -> Result<String, String> {
    let name = format!("{release}-{env}");
    let person = world.person(as_user).ok_or_else(|| format!("no sandbox user {as_user}"))?;
    let p: Promotion = serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"release": release, "environment": env, "requestedBy": as_user}
    }))
    .map_err(|e| e.to_string())?;
    Api::<Promotion>::namespaced(person.client.clone(), ns)
        .create(&PostParams::default(), &p)
        .await
        .map_err(|e| format!("promote {release} to {env} as {as_user}: {e}"))?;
    Ok(name)
}

async fn approve(
    world: &World,
    ns: &str,
    promotion: &str,
    user: &str,
    role: &str,
    comment: &str,
) -> Result<(), String> {
    let person = world.person(user).ok_or_else(|| format!("no sandbox user {user}"))?;
    let api: Api<Promotion> = Api::namespaced(person.client.clone(), ns);
    let p = api.get(promotion).await.map_err(|e| format!("read {promotion}: {e}"))?;
    let mut approvals = serde_json::to_value(&p.spec.approvals).map_err(|e| e.to_string())?;
    if let Some(list) = approvals.as_array_mut() {
        list.push(json!({"user": user, "role": role, "at": rfc3339(0), "comment": comment}));
    }
    api.patch(promotion, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"approvals": approvals}})))
        .await
        .map_err(|e| format!("approve {promotion} as {user}: {e}"))?;
    Ok(())
}

/// The scripted release. Returns where it ended.
pub async fn scripted(world: &World, say: &(dyn Fn(&str) + Send + Sync)) -> Result<Outcome, String> {
    let narrator = Narrator::new(world);
    let script = async {
        let weekend = apply_setup(world, say).await?;
        let mut out = Outcome::default();

        say("CI: applying examples/release-ingest-worker.yaml (ECS blue/green, 10% then 100%)");
        for mut doc in example(&world.repo, "release-ingest-worker.yaml")? {
            compress(&mut doc);
            create(&world.client, &doc).await?;
        }
        let release = "ingest-worker-v1-4-2";
        wait_for(world, "ingest", &format!("{release}-dev"), "Succeeded", |p| phase_is(p, PromotionPhase::Succeeded))
            .await?;

        say("alice promotes ingest-worker to stg (kubectl kiln promote)");
        let stg = promote(world, "ingest", release, "stg", "alice@example.com").await?;
        wait_for(world, "ingest", &stg, "WaitingForApproval", |p| phase_is(p, PromotionPhase::WaitingForApproval))
            .await?;
        say("relmgr@example.com approves stg as release-engineering");
        approve(world, "ingest", &stg, "relmgr@example.com", "release-engineering", "dev looks good").await?;
        wait_for(world, "ingest", &stg, "Succeeded", |p| phase_is(p, PromotionPhase::Succeeded)).await?;

        freeze_now(world, weekend, 25).await?;
        say("release management: the weekend prod freeze is on (compressed: it ends in 25 s)");
        say("alice promotes ingest-worker to prod");
        let prod = promote(world, "ingest", release, "prod", "alice@example.com").await?;
        let frozen = wait_for(world, "ingest", &prod, "a freeze or approval wait", |p| {
            p.status
                .as_ref()
                .is_some_and(|s| matches!(s.phase, PromotionPhase::Frozen | PromotionPhase::WaitingForApproval))
        })
        .await?;
        if let Some(g) = frozen.status.as_ref().and_then(|s| s.gates.iter().find(|g| g.name == "freeze" && !g.ok)) {
            say(&format!("prod gate freeze: {}", g.message));
        }
        say("seclead@example.com approves prod as security; pm-ingest@example.com as product");
        approve(world, "ingest", &prod, "seclead@example.com", "security", "CAB approved").await?;
        approve(world, "ingest", &prod, "pm-ingest@example.com", "product", "release notes reviewed").await?;
        let held = wait_for(world, "ingest", &prod, "Frozen with approvals in", |p| {
            phase_is(p, PromotionPhase::Frozen) || p.status.as_ref().is_some_and(|s| s.started_at.is_some())
        })
        .await?;
        out.prod_was_frozen = phase_is(&held, PromotionPhase::Frozen);
        let done = wait_for(world, "ingest", &prod, "Succeeded", |p| phase_is(p, PromotionPhase::Succeeded)).await?;
        out.ingest_prod = done.status.as_ref().map(|s| s.phase);
        if let Some(sha) = done.status.as_ref().and_then(|s| s.evidence_sha256.clone()) {
            say(&format!("ingest-worker v1.4.2 is live in prod; evidence sha256:{sha}"));
        }

        say("CI: applying examples/release-api-adapter.yaml (Lambda canary, 10% then 100%)");
        for mut doc in example(&world.repo, "release-api-adapter.yaml")? {
            compress(&mut doc);
            create(&world.client, &doc).await?;
        }
        let release = "api-adapter-v2-3-0";
        wait_for(world, "api", &format!("{release}-dev"), "Succeeded", |p| phase_is(p, PromotionPhase::Succeeded))
            .await?;
        say("alice promotes api-adapter to stg; relmgr@example.com approves");
        let stg = promote(world, "api", release, "stg", "alice@example.com").await?;
        approve(world, "api", &stg, "relmgr@example.com", "release-engineering", "").await?;
        wait_for(world, "api", &stg, "baking at full traffic", |p| {
            p.status.as_ref().is_some_and(|s| s.phase == PromotionPhase::Baking && s.full_traffic_at.is_some())
        })
        .await?;
        let stg_account = world.account("stg").ok_or("no stg account")?;
        say("an SLO alarm fires in stg: api-adapter-errors → ALARM (aws cloudwatch set-alarm-state)");
        kiln_testkit::set_alarm_state(&stg_account.clients, "api-adapter-errors", "ALARM").await?;
        let rolled = wait_for(world, "api", &stg, "RolledBack", |p| phase_is(p, PromotionPhase::RolledBack)).await?;
        let rb = rolled.status.as_ref().and_then(|s| s.rollback.clone());
        out.api_stg = rolled.status.as_ref().map(|s| s.phase);
        out.api_stg_cause = rb.as_ref().map(|r| r.cause.to_string());
        out.breach_to_restore_ms = rb.as_ref().and_then(|r| r.breach_to_restore_millis);
        let alias = kiln_testkit::lambda_alias(&stg_account.clients, "api-adapter", "live").await?;
        out.alias_restored = alias == kiln_testkit::AliasState::on("1");
        say(&format!(
            "stg alias live → version {} again; breach to traffic restored: {} ms (measured by kiln, in status.rollback.breachToRestoreMillis)",
            alias.function_version,
            out.breach_to_restore_ms.map(|m| m.to_string()).unwrap_or_else(|| "?".into())
        ));
        Ok::<Outcome, String>(out)
    };
    let result = tokio::select! {
        r = script => r,
        _ = narrator.follow(say) => Err("the narrator stopped".into()),
    };
    // Print the last entries kiln wrote.
    let _ = tokio::time::timeout(Duration::from_secs(1), narrator.follow(say)).await;
    result
}

/// ARNs shortened to the resource's name (`…/ingest-worker-web:2`), for readable narration.
fn shorten_arns(message: &str) -> String {
    message
        .split(' ')
        .map(|word| {
            word.split(',')
                .map(|whole| {
                    let (part, value) = match whole.split_once('=') {
                        Some((p, v)) => (p, format!("={v}")),
                        None => (whole, String::new()),
                    };
                    let short = match part.find("arn:aws:") {
                        Some(at) => {
                            let (head, arn) = part.split_at(at);
                            let resource = arn.splitn(6, ':').nth(5).unwrap_or(arn);
                            let segments: Vec<&str> = resource.split('/').collect();
                            let name = match segments.first() {
                                // targetgroup/<name>/<id>, task-set/<cluster>/<service>/<id>
                                Some(&"targetgroup") => segments.get(1).copied().unwrap_or(resource),
                                _ => segments.last().copied().unwrap_or(resource),
                            };
                            format!("{head}{name}")
                        }
                        None => part.to_string(),
                    };
                    format!("{short}{value}")
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::shorten_arns;

    #[test]
    fn arns_become_names() {
        let m = "previous state captured: task definition arn:aws:ecs:ca-central-1:111111111111:task-definition/ingest-worker-web:1; weights arn:aws:elasticloadbalancing:ca-central-1:111111111111:targetgroup/ingest-worker-blue/31929ad2b167efef=100,arn:aws:elasticloadbalancing:ca-central-1:111111111111:targetgroup/ingest-worker-green/5281d64eb6af02bc=0";
        assert_eq!(
            shorten_arns(m),
            "previous state captured: task definition ingest-worker-web:1; weights ingest-worker-blue=100,ingest-worker-green=0"
        );
    }
}
