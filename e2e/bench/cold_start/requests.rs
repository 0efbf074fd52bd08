//! The API requests the controller made, from the API test server's counters.

use std::collections::BTreeMap;

pub(crate) const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];
pub(crate) const VERBS: [&str; 10] =
    ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "apply", "post"];
pub(crate) const RESOURCES: [&str; 9] = [
    "releases",
    "promotions",
    "environments",
    "freezewindows",
    "rollbackpolicies",
    "events",
    "leases",
    "namespaces",
    "customresourcedefinitions",
];

pub(crate) fn requests(h: &kiln_test_apiserver::Handle) -> BTreeMap<(String, String), u64> {
    let mut m = BTreeMap::new();
    for v in VERBS {
        for r in RESOURCES {
            let c = h.requests(Some(v), Some(r));
            if c > 0 {
                m.insert((v.to_string(), r.to_string()), c);
            }
        }
    }
    m
}

pub(crate) fn diff(
    a: &BTreeMap<(String, String), u64>,
    b: &BTreeMap<(String, String), u64>,
) -> BTreeMap<(String, String), u64> {
    b.iter()
        .filter_map(|(k, v)| {
            let d = v - a.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}
