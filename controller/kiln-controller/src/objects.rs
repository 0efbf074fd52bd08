//! The status of Environments, FreezeWindows and RollbackPolicies (`kiln_core::objects`):
//! whether each is valid, and whether a FreezeWindow is in effect. Written by server-side
//! apply only when it changes, by the leader; a FreezeWindow is looked at again when it next
//! starts or ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_api::environment::EnvironmentSpec;
use kiln_api::{Environment, FreezeWindow, RollbackPolicy};
use kiln_core::objects;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;

use crate::context::Context;
use crate::error::Error;
use crate::record;

/// The longest a FreezeWindow waits before being looked at again (a window edited by hand to
/// start in a year is still re-read hourly).
const MAX_FREEZE_REQUEUE: Duration = Duration::from_secs(3600);

/// Reconciles an Environment's status.
pub async fn reconcile_environment(obj: Arc<Environment>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    ctx.timed("environment", async {
        if obj.metadata.deletion_timestamp.is_some() || !ctx.is_leader() {
            return Ok(Requeue::await_change());
        }
        let environments: BTreeMap<String, EnvironmentSpec> =
            ctx.stores.environments.state().iter().map(|e| (e.name_any(), e.spec.clone())).collect();
        let current = obj.status.clone().unwrap_or_default();
        let status = objects::environment_status(
            &obj.name_any(),
            &environments,
            obj.metadata.generation,
            &current,
            ctx.clock.now(),
        );
        if obj.status.as_ref() != Some(&status) {
            ctx.fence()?;
            record::apply_status(&Api::<Environment>::all(ctx.client.clone()), obj.as_ref(), &status).await?;
        }
        Ok(Requeue::await_change())
    })
    .await
}

/// Every Environment (an Environment's validity depends on the others: upstreams, cycles).
pub fn all_environments(ctx: &Context) -> Vec<ObjectRef<Environment>> {
    ctx.stores.environments.state().iter().map(|e| ObjectRef::from_obj(e.as_ref())).collect()
}

/// Reconciles a FreezeWindow's status.
pub async fn reconcile_freeze_window(obj: Arc<FreezeWindow>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    ctx.timed("freezewindow", async {
        let ns = obj.namespace().ok_or(Error::NoNamespace)?;
        // Windows in the controller's namespace apply everywhere; others to their namespace.
        let mine = ns == ctx.controller_namespace || ctx.watches_namespace(&ns);
        if !mine || obj.metadata.deletion_timestamp.is_some() || !ctx.is_leader() {
            return Ok(Requeue::await_change());
        }
        let now = ctx.clock.now();
        let current = obj.status.clone().unwrap_or_default();
        let (status, next_change) =
            objects::freeze_window_status(&ctx.freeze_cache.get(&obj), obj.metadata.generation, &current, now);
        if obj.status.as_ref() != Some(&status) {
            ctx.fence()?;
            record::apply_status(&Api::<FreezeWindow>::namespaced(ctx.client.clone(), &ns), obj.as_ref(), &status)
                .await?;
        }
        Ok(match next_change {
            Some(at) => {
                let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
                // A second past the change, so the window reads as changed when it is looked at.
                Requeue::requeue((wait + Duration::from_secs(1)).min(MAX_FREEZE_REQUEUE))
            }
            None => Requeue::await_change(),
        })
    })
    .await
}

/// Reconciles a RollbackPolicy's status.
pub async fn reconcile_rollback_policy(obj: Arc<RollbackPolicy>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    ctx.timed("rollbackpolicy", async {
        let ns = obj.namespace().ok_or(Error::NoNamespace)?;
        if !ctx.watches_namespace(&ns) || obj.metadata.deletion_timestamp.is_some() || !ctx.is_leader() {
            return Ok(Requeue::await_change());
        }
        let current = obj.status.clone().unwrap_or_default();
        let status = objects::rollback_policy_status(&obj.spec, obj.metadata.generation, &current, ctx.clock.now());
        if obj.status.as_ref() != Some(&status) {
            ctx.fence()?;
            record::apply_status(&Api::<RollbackPolicy>::namespaced(ctx.client.clone(), &ns), obj.as_ref(), &status)
                .await?;
        }
        Ok(Requeue::await_change())
    })
    .await
}
