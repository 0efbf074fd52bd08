//! Secondary indexes over the Promotion cache, kept in step with its watch stream.
//!
//! kube's reflector store is keyed by (namespace, name) only. Every Promotion or Release event
//! has to find "this Release's Promotions", "the unfinished Promotions of this environment" and
//! "the unfinished Promotions driving this AWS resource" (any namespace: the queue's key);
//! scanning the whole cache for that made a cold start O(N²) (at 10,000 Releases over 90 % of
//! the controller's CPU went to those scans; docs/benchmarks.md). The index answers both by
//! name; objects are still read from the store, so an entry the store no longer has is skipped.
//!
//! It is fed each watch event *before* the reflector applies it (see `run.rs`), so when a
//! controller sees an event the index already includes it. A re-list (`Init` … `InitDone`) is
//! buffered and swapped in whole, like the store itself.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use kiln_api::Promotion;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

/// (namespace, release or environment name).
type Key = (String, String);

/// What the index remembers about one Promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    release: String,
    environment: String,
    /// Not finished, or being deleted: reconciles that other objects' changes may unblock.
    live: bool,
    /// The AWS resource it drives, as its status records it.
    target: Option<String>,
}

#[derive(Debug, Default)]
struct Maps {
    /// (namespace, name) → what it was indexed under.
    entries: HashMap<Key, Entry>,
    /// (namespace, release) → Promotion names.
    by_release: HashMap<Key, BTreeSet<String>>,
    /// (namespace, environment) → names of live Promotions.
    live_by_environment: HashMap<Key, BTreeSet<String>>,
    /// AWS resource (`status.target`) → (namespace, name) of live Promotions driving it, in
    /// every namespace: a queue is per resource.
    live_by_target: HashMap<String, BTreeSet<Key>>,
}

impl Maps {
    fn insert(&mut self, p: &Promotion) {
        let Some((ns, name)) = identity(p) else { return };
        self.remove(&ns, &name);
        let entry = Entry {
            release: p.spec.release.clone(),
            environment: p.spec.environment.clone(),
            live: is_live(p),
            target: p.status.as_ref().and_then(|s| s.target.clone()),
        };
        self.by_release.entry((ns.clone(), entry.release.clone())).or_default().insert(name.clone());
        if entry.live {
            self.live_by_environment.entry((ns.clone(), entry.environment.clone())).or_default().insert(name.clone());
            if let Some(t) = &entry.target {
                self.live_by_target.entry(t.clone()).or_default().insert((ns.clone(), name.clone()));
            }
        }
        self.entries.insert((ns, name), entry);
    }

    fn remove(&mut self, ns: &str, name: &str) {
        let Some(old) = self.entries.remove(&(ns.to_string(), name.to_string())) else { return };
        unlink(&mut self.by_release, (ns.to_string(), old.release), name);
        if old.live {
            unlink(&mut self.live_by_environment, (ns.to_string(), old.environment), name);
            if let Some(t) = old.target
                && let Some(set) = self.live_by_target.get_mut(&t)
            {
                set.remove(&(ns.to_string(), name.to_string()));
                if set.is_empty() {
                    self.live_by_target.remove(&t);
                }
            }
        }
    }
}

fn unlink(map: &mut HashMap<Key, BTreeSet<String>>, key: Key, name: &str) {
    if let Some(set) = map.get_mut(&key) {
        set.remove(name);
        if set.is_empty() {
            map.remove(&key);
        }
    }
}

fn identity(p: &Promotion) -> Option<(String, String)> {
    Some((p.metadata.namespace.clone()?, p.metadata.name.clone()?))
}

/// Not finished, or being deleted (a finished Promotion being deleted may still hold the
/// restore finalizer).
pub fn is_live(p: &Promotion) -> bool {
    !p.status.as_ref().is_some_and(|s| s.phase.is_terminal()) || p.metadata.deletion_timestamp.is_some()
}

/// Promotions by Release and live Promotions by environment; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct PromotionIndex {
    inner: Arc<RwLock<State>>,
}

#[derive(Default)]
struct State {
    current: Maps,
    /// A re-list in progress: filled by `InitApply`, swapped in at `InitDone`.
    relisting: Option<Maps>,
}

impl PromotionIndex {
    /// Applies one watch event (call before the reflector applies it to the store).
    pub fn apply(&self, event: &watcher::Event<Promotion>) {
        // A poisoned lock means a panic mid-update elsewhere; the maps are still usable and the
        // next re-list rebuilds them.
        let mut state = self.inner.write().unwrap_or_else(|p| p.into_inner());
        match event {
            watcher::Event::Apply(p) => state.current.insert(p),
            watcher::Event::Delete(p) => {
                if let Some((ns, name)) = identity(p) {
                    state.current.remove(&ns, &name);
                }
            }
            watcher::Event::Init => state.relisting = Some(Maps::default()),
            watcher::Event::InitApply(p) => state.relisting.get_or_insert_with(Maps::default).insert(p),
            watcher::Event::InitDone => {
                if let Some(fresh) = state.relisting.take() {
                    state.current = fresh;
                }
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// References to the Promotions of Release `release` in `namespace`.
    pub fn of_release(&self, namespace: &str, release: &str) -> Vec<ObjectRef<Promotion>> {
        let state = self.read();
        refs(namespace, state.current.by_release.get(&(namespace.to_string(), release.to_string())))
    }

    /// References to the live Promotions into `environment` in `namespace`.
    pub fn live_in(&self, namespace: &str, environment: &str) -> Vec<ObjectRef<Promotion>> {
        let state = self.read();
        refs(namespace, state.current.live_by_environment.get(&(namespace.to_string(), environment.to_string())))
    }

    /// References to the live Promotions of every namespace that drive AWS resource `target`.
    pub fn live_on(&self, target: &str) -> Vec<ObjectRef<Promotion>> {
        let state = self.read();
        state
            .current
            .live_by_target
            .get(target)
            .into_iter()
            .flatten()
            .map(|(ns, name)| ObjectRef::new(name).within(ns))
            .collect()
    }

    /// References to every live Promotion in `namespace` (every namespace for `None`).
    pub fn live(&self, namespace: Option<&str>) -> Vec<ObjectRef<Promotion>> {
        let state = self.read();
        state
            .current
            .live_by_environment
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .flat_map(|((ns, _), names)| names.iter().map(move |n| ObjectRef::new(n).within(ns)))
            .collect()
    }
}

fn refs(namespace: &str, names: Option<&BTreeSet<String>>) -> Vec<ObjectRef<Promotion>> {
    names.into_iter().flatten().map(|n| ObjectRef::new(n).within(namespace)).collect()
}

/// The cached objects behind `refs` (those the store still has).
pub fn resolve(store: &Store<Promotion>, refs: &[ObjectRef<Promotion>]) -> Vec<Arc<Promotion>> {
    refs.iter().filter_map(|r| store.get(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use kiln_api::PromotionPhase;
    use kiln_api::promotion::{PromotionSpec, PromotionStatus};

    fn promo(ns: &str, name: &str, release: &str, env: &str, phase: Option<PromotionPhase>) -> Promotion {
        Promotion {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..ObjectMeta::default() },
            spec: PromotionSpec {
                release: release.into(),
                environment: env.into(),
                requested_by: None,
                approvals: Vec::new(),
                abort: false,
                retry: 0,
                rollback: None,
                downgrade: false,
            },
            status: phase.map(|phase| PromotionStatus { phase, ..PromotionStatus::default() }),
        }
    }

    fn names(refs: Vec<ObjectRef<Promotion>>) -> Vec<String> {
        refs.into_iter().map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name)).collect()
    }

    #[test]
    fn finds_a_releases_promotions_and_live_ones_per_environment() {
        let ix = PromotionIndex::default();
        ix.apply(&watcher::Event::Apply(promo("a", "web-v1-dev", "web-v1", "dev", Some(PromotionPhase::Succeeded))));
        ix.apply(&watcher::Event::Apply(promo("a", "web-v1-stg", "web-v1", "stg", Some(PromotionPhase::Baking))));
        ix.apply(&watcher::Event::Apply(promo("a", "gitops-name", "web-v1", "prod", None)));
        ix.apply(&watcher::Event::Apply(promo("b", "web-v1-dev", "web-v1", "dev", None)));

        assert_eq!(names(ix.of_release("a", "web-v1")), ["a/gitops-name", "a/web-v1-dev", "a/web-v1-stg"]);
        assert_eq!(names(ix.of_release("b", "web-v1")), ["b/web-v1-dev"]);
        assert!(ix.of_release("a", "web-v2").is_empty());
        // Finished in dev: not live; in namespace b it has no status yet: live.
        assert!(ix.live_in("a", "dev").is_empty());
        assert_eq!(names(ix.live_in("b", "dev")), ["b/web-v1-dev"]);
        assert_eq!(names(ix.live_in("a", "stg")), ["a/web-v1-stg"]);
        let mut all = names(ix.live(None));
        all.sort();
        assert_eq!(all, ["a/gitops-name", "a/web-v1-stg", "b/web-v1-dev"]);
        assert_eq!(names(ix.live(Some("b"))), ["b/web-v1-dev"]);
    }

    #[test]
    fn finds_the_live_promotions_driving_an_aws_resource_in_every_namespace() {
        const WEB: &str = "arn:aws:ecs:us-east-1:111111111111:service/apps/web";
        let on = |ns: &str, name: &str, phase: PromotionPhase, target: &str| {
            let mut p = promo(ns, name, "web-v1", "dev", Some(phase));
            if let Some(s) = p.status.as_mut() {
                s.target = Some(target.into());
            }
            p
        };
        let ix = PromotionIndex::default();
        ix.apply(&watcher::Event::Apply(on("a", "p", PromotionPhase::Baking, WEB)));
        ix.apply(&watcher::Event::Apply(on("b", "q", PromotionPhase::Queued, WEB)));
        ix.apply(&watcher::Event::Apply(on("b", "r", PromotionPhase::Queued, "arn:aws:lambda:x")));
        assert_eq!(names(ix.live_on(WEB)), ["a/p", "b/q"]);
        // Finishing or going away takes it out of its resource's queue.
        ix.apply(&watcher::Event::Apply(on("a", "p", PromotionPhase::Succeeded, WEB)));
        assert_eq!(names(ix.live_on(WEB)), ["b/q"]);
        ix.apply(&watcher::Event::Delete(on("b", "q", PromotionPhase::Queued, WEB)));
        assert!(ix.live_on(WEB).is_empty());
        assert_eq!(names(ix.live_on("arn:aws:lambda:x")), ["b/r"]);
    }

    #[test]
    fn follows_finishing_deleting_and_spec_changes() {
        let ix = PromotionIndex::default();
        ix.apply(&watcher::Event::Apply(promo("a", "p", "web-v1", "stg", Some(PromotionPhase::Baking))));
        // It finishes: no longer live, still the Release's.
        ix.apply(&watcher::Event::Apply(promo("a", "p", "web-v1", "stg", Some(PromotionPhase::Succeeded))));
        assert!(ix.live_in("a", "stg").is_empty());
        assert_eq!(names(ix.of_release("a", "web-v1")), ["a/p"]);
        // Being deleted while finished: live again (its finalizer may need the restore).
        let mut deleting = promo("a", "p", "web-v1", "stg", Some(PromotionPhase::Succeeded));
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        ix.apply(&watcher::Event::Apply(deleting.clone()));
        assert_eq!(names(ix.live_in("a", "stg")), ["a/p"]);
        // Indexed under its new release/environment only (no stale entry under the old ones).
        ix.apply(&watcher::Event::Apply(promo("a", "p", "web-v2", "prod", None)));
        assert!(ix.of_release("a", "web-v1").is_empty());
        assert!(ix.live_in("a", "stg").is_empty());
        assert_eq!(names(ix.live_in("a", "prod")), ["a/p"]);
        ix.apply(&watcher::Event::Delete(deleting));
        assert!(ix.of_release("a", "web-v2").is_empty());
        assert!(ix.live(None).is_empty());
    }

    #[test]
    fn a_relist_replaces_everything_at_its_end() {
        let ix = PromotionIndex::default();
        ix.apply(&watcher::Event::Apply(promo("a", "gone", "web-v1", "dev", None)));
        ix.apply(&watcher::Event::Init);
        ix.apply(&watcher::Event::InitApply(promo("a", "kept", "web-v1", "dev", None)));
        // Until the re-list ends, the old view answers.
        assert_eq!(names(ix.of_release("a", "web-v1")), ["a/gone"]);
        ix.apply(&watcher::Event::InitDone);
        // A deletion missed while the watch was down does not linger.
        assert_eq!(names(ix.of_release("a", "web-v1")), ["a/kept"]);
        assert_eq!(names(ix.live(None)), ["a/kept"]);
    }
}
