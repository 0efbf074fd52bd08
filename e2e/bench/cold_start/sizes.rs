//! What the stored objects weigh as kiln's types, each figure measured in a fresh process.

use std::process::Command;

use kiln_api::{Promotion, Release};
use kiln_testkit::process::proc_status_kib;

/// For Releases and Promotions as the server holds them: the RSS a fresh process grows by when
/// it deserializes all of them into kiln's types, as they are and slimmed as the controller's
/// caches keep them (`kiln_controller::cache`), and the average JSON size. Each figure is
/// measured in its own process (a clean heap).
pub(crate) fn typed_sizes(handle: &kiln_test_apiserver::Handle) -> Vec<(&'static str, u64, u64, usize)> {
    let mut out = Vec::new();
    for (kind, resource) in [("Release", "releases"), ("Promotion", "promotions")] {
        let items = handle.list(resource);
        let mut text = String::new();
        for v in &items {
            text.push_str(&v.to_string());
            text.push('\n');
        }
        let per = text.len() / items.len().max(1);
        let path = std::env::temp_dir().join(format!("kiln-bench-{resource}-{}.jsonl", std::process::id()));
        if std::fs::write(&path, text).is_err() {
            continue;
        }
        let measure = |mode: &str| {
            let exe = std::env::current_exe().ok()?;
            let out = Command::new(exe).args(["typed-size", kind, mode, &path.to_string_lossy()]).output().ok();
            String::from_utf8_lossy(&out?.stdout).trim().parse::<u64>().ok()
        };
        out.push((kind, measure("stored").unwrap_or(0), measure("cached").unwrap_or(0), per));
        let _ = std::fs::remove_file(&path);
    }
    out
}

/// In a fresh process: prints how many KiB RSS grows by while the objects of `path` (JSON, one
/// a line) are held as kiln's typed objects — as stored, or (`cached`) each slimmed as it is
/// read, like the controller's watch streams do. The text is one large (mmap-backed)
/// allocation read before the first measurement, so nothing freed is there to be reused.
pub(crate) fn typed_size_child(kind: &str, cached: bool, path: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let grown = if kind == "Release" {
        rss_growth_holding::<Release>(&text, cached.then_some(kiln_controller::cache::slim::<Release>))
    } else {
        rss_growth_holding::<Promotion>(&text, cached.then_some(kiln_controller::cache::slim_promotion))
    };
    println!("{grown}");
}

/// KiB of RSS growth while the objects of `text` (one a line) are held as `K`, each passed
/// through `slim` first when given.
pub(crate) fn rss_growth_holding<K: serde::de::DeserializeOwned>(text: &str, slim: Option<fn(&mut K)>) -> u64 {
    let before = proc_status_kib("/proc/self/status", "VmRSS");
    let typed: Vec<K> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .map(|mut k| {
            if let Some(slim) = slim {
                slim(&mut k);
            }
            k
        })
        .collect();
    let after = proc_status_kib("/proc/self/status", "VmRSS");
    std::hint::black_box(&typed);
    after.saturating_sub(before)
}
