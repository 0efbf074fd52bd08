//! The Release reconciler: the aggregate status dashboards read, and the Promotions kiln
//! creates by itself (the first environment, and every `auto` environment whose upstreams
//! succeeded). A Promotion someone else created for the same environment (a person, GitOps) is
//! adopted: kiln finds it by release and environment and never creates a second one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::PromotionSpec;
use kiln_api::{Promotion, Release};
use kiln_core::machine::EventNote;
use kiln_core::release::{self as core_release, PromotionView, ReleaseInput};
use kiln_core::{Problem, validate};
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Resource, ResourceExt};

use crate::context::Context;
use crate::error::Error;
use crate::record;

/// The label kiln puts on the Promotions it creates, naming their Release.
pub const RELEASE_LABEL: &str = "kiln.dev/release";

/// Reconciles one Release.
pub async fn reconcile(obj: Arc<Release>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    ctx.timed("release", reconcile_inner(&obj, &ctx)).await
}

#[tracing::instrument(skip_all, fields(
    namespace = obj.metadata.namespace.as_deref().unwrap_or_default(),
    release = obj.metadata.name.as_deref().unwrap_or_default(),
    service = %obj.spec.service,
    version = %obj.spec.version,
    digest = digest_of(&obj.spec).unwrap_or_default(),
))]
async fn reconcile_inner(obj: &Release, ctx: &Context) -> Result<Requeue, Error> {
    let ns = obj.namespace().ok_or(Error::NoNamespace)?;
    if !ctx.watches_namespace(&ns) || obj.metadata.deletion_timestamp.is_some() || !ctx.is_leader() {
        return Ok(Requeue::await_change());
    }
    let name = obj.name_any();
    let environments: BTreeMap<String, EnvironmentSpec> =
        ctx.stores.environments.state().iter().map(|e| (e.name_any(), e.spec.clone())).collect();
    let mut promotions: Vec<Arc<Promotion>> =
        crate::index::resolve(&ctx.stores.promotions, &ctx.stores.promotion_index.of_release(&ns, &name));
    // The index follows the watch; the Release's own name and namespace decide.
    promotions.retain(|p| crate::promotion::of_release(p, obj));
    promotions.sort_by(|a, b| {
        (a.metadata.creation_timestamp.as_ref().map(|t| t.0), a.name_any())
            .cmp(&(b.metadata.creation_timestamp.as_ref().map(|t| t.0), b.name_any()))
    });
    let views: Vec<PromotionView<'_>> = promotions
        .iter()
        .map(|p| PromotionView {
            name: p.metadata.name.as_deref().unwrap_or_default(),
            spec: &p.spec,
            status: p.status.as_ref(),
            release_uid: p.release_uid(),
        })
        .collect();
    let problems: Vec<Problem> = validate::release(&obj.spec, &environments).into_iter().map(Problem::Spec).collect();
    let status = obj.status.clone().unwrap_or_default();
    let decision = core_release::decide(&ReleaseInput {
        now: ctx.clock.now(),
        name: &name,
        uid: obj.metadata.uid.as_deref(),
        generation: obj.metadata.generation,
        spec: &obj.spec,
        status: &status,
        environments: &environments,
        promotions: &views,
        problems: &problems,
    });

    let api: Api<Release> = Api::namespaced(ctx.client.clone(), &ns);
    let promotions_api: Api<Promotion> = Api::namespaced(ctx.client.clone(), &ns);
    let mut events = Vec::new();
    for new in &decision.create {
        let p = new_promotion(obj, &new.name, &new.environment, ctx.requested_by.as_deref());
        ctx.fence()?;
        match promotions_api.create(&PostParams::default(), &p).await {
            Ok(_) => events.push(EventNote {
                warning: false,
                reason: kiln_core::reason::PROMOTION_CREATED.into(),
                message: format!("created Promotion {} into {}", new.name, new.environment),
            }),
            // Already there (created by an earlier reconcile whose write the cache has not seen).
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if status.phase != decision.status.phase {
        events.push(EventNote {
            warning: matches!(
                decision.status.phase,
                kiln_api::ReleasePhase::Failed | kiln_api::ReleasePhase::RolledBack
            ),
            reason: format!("Release{:?}", decision.status.phase),
            message: format!("release {} {} is {:?}", obj.spec.service, obj.spec.version, decision.status.phase),
        });
    }
    if obj.status.as_ref() != Some(&decision.status) {
        ctx.fence()?;
        record::apply_status(&api, obj, &decision.status).await?;
    }
    if !events.is_empty() {
        ctx.fence()?;
        record::publish(&ctx.recorder, obj, &events).await;
    }
    if !decision.create.is_empty() {
        // Look again once the new Promotions are in the cache.
        return Ok(Requeue::requeue(Duration::from_secs(1)));
    }
    Ok(Requeue::await_change())
}

/// The Promotion kiln creates for `release` into `environment`: owned by the Release, labelled
/// with it (and carrying its labels, so a shard selector keeps them together), requested by kiln
/// itself (`requested_by`, its own username).
fn new_promotion(release: &Release, name: &str, environment: &str, requested_by: Option<&str>) -> Promotion {
    let mut labels = release.labels().clone();
    labels.insert(RELEASE_LABEL.to_string(), release.name_any());
    let owner = release.controller_owner_ref(&()).map(|o| OwnerReference { controller: Some(false), ..o });
    Promotion {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: release.namespace(),
            labels: Some(labels),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: PromotionSpec {
            release: release.name_any(),
            environment: environment.to_string(),
            requested_by: requested_by.map(str::to_string),
            approvals: Vec::new(),
            abort: false,
            retry: 0,
            rollback: None,
            downgrade: false,
        },
        status: None,
    }
}

/// The Release a Promotion belongs to.
pub fn of_promotion(p: &Promotion) -> Option<kube::runtime::reflector::ObjectRef<Release>> {
    let ns = p.metadata.namespace.as_deref()?;
    Some(kube::runtime::reflector::ObjectRef::new(&p.spec.release).within(ns))
}

/// Releases that name environment `env`.
pub fn naming_environment(ctx: &Context, env: &str) -> Vec<kube::runtime::reflector::ObjectRef<Release>> {
    ctx.stores
        .releases
        .state()
        .iter()
        .filter(|r| r.spec.environments.iter().any(|e| e == env))
        .map(|r| kube::runtime::reflector::ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// The first artifact's digest (`sha256:…` of an image, or a zip's CodeSha256), for log fields.
pub fn digest_of(spec: &kiln_api::ReleaseSpec) -> Option<&str> {
    let a = spec.artifacts.first()?;
    match (&a.image, &a.zip) {
        (Some(image), _) => image.split_once('@').map(|(_, d)| d),
        (None, Some(z)) => Some(z.code_sha256.as_str()),
        (None, None) => None,
    }
}
