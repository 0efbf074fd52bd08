//! The `kiln.dev/v1alpha1` API: the custom resources teams and platform engineers apply.
//!
//! This crate holds types only (no I/O) so the controller, the `kubectl-kiln` CLI and the e2e
//! suite share one definition. CRD YAML is generated from these types by `crdgen` and checked in
//! under `crds/`; the test suite fails when the two drift apart.
#![forbid(unsafe_code)]
// `printcolumn(..., type_ = "string", ...)` repeats identical key-value pairs inside the derive
// macro's attribute, which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod common;
pub mod environment;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod freeze_window;
pub mod promotion;
pub mod release;
pub mod rollback_policy;

pub use common::{Approval, ApprovalRequirement, ReleaseType};
pub use environment::{Environment, EnvironmentSpec, EnvironmentStatus};
pub use freeze_window::{FreezeWindow, FreezeWindowSpec, FreezeWindowStatus};
pub use promotion::{Promotion, PromotionPhase, PromotionSpec, PromotionStatus, RollbackCause};
pub use release::{Release, ReleasePhase, ReleaseSpec, ReleaseStatus};
pub use rollback_policy::{RollbackPolicy, RollbackPolicySpec, RollbackPolicyStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group.
pub const GROUP: &str = "kiln.dev";
/// The API version.
pub const VERSION: &str = "v1alpha1";
/// The field manager kiln writes with (server-side apply).
pub const FIELD_MANAGER: &str = "kiln.dev/controller";

/// Every kiln CRD, paired with the file name it is written to under `crds/`.
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("environments.kiln.dev.yaml", Environment::crd()),
        ("releases.kiln.dev.yaml", Release::crd()),
        ("promotions.kiln.dev.yaml", Promotion::crd()),
        ("freezewindows.kiln.dev.yaml", FreezeWindow::crd()),
        ("rollbackpolicies.kiln.dev.yaml", RollbackPolicy::crd()),
    ]
}
