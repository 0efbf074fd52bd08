//! Part 2: controller overhead on lead time dev → stg → prod (moto).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kiln_api::{Promotion, PromotionPhase};
use serde_json::{Value, json};

use crate::{LEAD_ROUNDS, LIMIT, harness, verdict};

pub(crate) async fn lead_time() -> Result<(), String> {
    println!("\n== lead time dev → stg → prod: zero bake, approvals given up front (moto) ==");
    let service = "lead";
    let mut w = harness::lambda_world("bench-lead", service, ["0s", "0s", "0s"]).await;
    // The harness's settings (alarm poll 500 ms, log filter from KILN_E2E_LOG, default
    // `info,kiln_controller=debug`).
    w.start_controller(harness::ControllerOptions::default());
    // Ready (caches synced) before the clock starts: lead time is about promotions, not startup.
    let ready_deadline = Instant::now() + Duration::from_secs(60);
    while w.controllers[0].http_get("/readyz").is_none_or(|(c, _)| c != 200) {
        if Instant::now() > ready_deadline {
            return Err(format!("controller not ready within 60 s\n{}", w.logs()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let at = harness::World::at(0);
    let approvals = |list: &[(&str, &str)]| -> Value {
        list.iter().map(|(u, r)| json!({"user": u, "role": r, "at": at})).collect::<Vec<_>>().into()
    };
    println!("  | Release | → dev Succeeded | → stg Succeeded | → prod Succeeded (lead time) |");
    println!("  |---|---|---|---|");
    let mut totals = Vec::new();
    for k in 2..2 + LEAD_ROUNDS {
        let t0 = Instant::now();
        let release = w.lambda_release(service, k, &["dev", "stg", "prod"], json!({})).await;
        for (env, who) in [
            ("stg", approvals(&[("rel@example.com", "release-engineering")])),
            ("prod", approvals(&[("sec@example.com", "security"), ("pm@example.com", "product")])),
        ] {
            w.create::<Promotion>(json!({
                "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion",
                "metadata": {"name": format!("{release}-{env}")},
                "spec": {"release": release, "environment": env, "requestedBy": "alice@example.com", "approvals": who}
            }))
            .await;
        }
        let mut reached: BTreeMap<&str, Duration> = BTreeMap::new();
        while reached.len() < 3 {
            for env in ["dev", "stg", "prod"] {
                if reached.contains_key(env) {
                    continue;
                }
                if let Some(p) = w.promotion(&format!("{release}-{env}")).await {
                    let phase = p.status.as_ref().map(|s| s.phase);
                    if phase == Some(PromotionPhase::Succeeded) {
                        reached.insert(env, t0.elapsed());
                    } else if phase.is_some_and(PromotionPhase::is_terminal) {
                        return Err(format!("{release} in {env}: {phase:?}\n{}", w.logs()));
                    }
                }
            }
            if t0.elapsed() > LIMIT {
                return Err(format!("{release}: not in every environment within {LIMIT:?}: {reached:?}\n{}", w.logs()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // It really is there: prod's alias serves the new image.
        let served = w.alias_image("prod", service).await;
        if served != harness::image(service, k) {
            return Err(format!("{release}: prod's alias serves {served}, not the release's image"));
        }
        println!(
            "  | {release} | {:.2} s | {:.2} s | {:.2} s |",
            reached["dev"].as_secs_f64(),
            reached["stg"].as_secs_f64(),
            reached["prod"].as_secs_f64()
        );
        totals.push(reached["prod"]);
    }
    totals.sort();
    let worst = totals.last().copied().unwrap_or_default();
    println!(
        "\n  lead time over {LEAD_ROUNDS} releases: median {:.2} s, max {:.2} s (moto's time included)",
        totals[totals.len() / 2].as_secs_f64(),
        worst.as_secs_f64()
    );
    println!("  goal: overhead ≤ 5 s: {}", verdict(worst <= Duration::from_secs(5)));
    Ok(())
}
