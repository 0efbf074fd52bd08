//! Scale check of the API test server (not a test): N ConfigMaps created through kube-rs with C
//! concurrent writers while W watchers follow, then N updates. Prints writes/s and whether every
//! watcher saw every event. `cargo run --release -p kiln-test-apiserver --example scale -- 10000 32 3`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (n, conc, watchers) = (
        args.first().copied().unwrap_or(10_000),
        args.get(1).copied().unwrap_or(32),
        args.get(2).copied().unwrap_or(3),
    );
    let server =
        kiln_test_apiserver::start(kiln_test_apiserver::Config { event_window: 2 * n + 10, ..Default::default() })
            .await
            .expect("start");
    let kc = Kubeconfig::from_yaml(&server.kubeconfig).expect("kubeconfig");
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config"),
    )
    .expect("client");
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    let rv = server.handle.resource_version().to_string();
    let mut watch_tasks = Vec::new();
    for _ in 0..watchers {
        let api = api.clone();
        let rv = rv.clone();
        watch_tasks.push(tokio::spawn(async move {
            let mut seen = 0usize;
            let mut s = api.watch(&WatchParams::default().timeout(600), &rv).await.expect("watch").boxed();
            while let Some(ev) = s.try_next().await.expect("event") {
                if matches!(ev, WatchEvent::Added(_) | WatchEvent::Modified(_)) {
                    seen += 1;
                    if seen == 2 * n {
                        break;
                    }
                }
            }
            seen
        }));
    }
    for phase in ["create", "update"] {
        let t = Instant::now();
        futures::stream::iter(0..n)
            .for_each_concurrent(conc, |i| {
                let api = api.clone();
                async move {
                    let name = format!("cm-{i}");
                    if phase == "create" {
                        let cm: ConfigMap =
                            serde_json::from_value(json!({"metadata": {"name": name}, "data": {"i": i.to_string()}}))
                                .expect("cm");
                        api.create(&PostParams::default(), &cm).await.expect("create");
                    } else {
                        api.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"data": {"u": "1"}})))
                            .await
                            .expect("patch");
                    }
                }
            })
            .await;
        let secs = t.elapsed().as_secs_f64();
        println!("{phase}: {n} writes in {secs:.2}s = {:.0} writes/s ({conc} concurrent clients)", n as f64 / secs);
    }
    let t = Instant::now();
    let list = api.list(&Default::default()).await.expect("list");
    println!("list of {} objects: {:.0} ms", list.items.len(), t.elapsed().as_secs_f64() * 1000.0);
    for (i, w) in watch_tasks.into_iter().enumerate() {
        println!("watcher {i}: saw {} of {} events", w.await.expect("join"), 2 * n);
    }
}
