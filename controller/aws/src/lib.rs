//! kiln's AWS adapters.
//!
//! Small traits shaped by what kiln does — move traffic ([`traffic::TrafficTarget`]: ECS blue/green,
//! rolling and through CodeDeploy ([`ecs::code_deploy::EcsCodeDeploy`]), Lambda aliases), read
//! signals ([`signals::SignalReader`] over a per-account [`signals::AlarmCache`]), assume an
//! environment's role ([`credentials::AssumeRole`]), follow CodeDeploy ([`codedeploy::CodeDeploy`]),
//! run hooks ([`hooks::HookRunner`]), store evidence ([`evidence::EvidenceStore`]) — implemented
//! on the `aws-sdk-*` crates and, for unit tests, in memory (`fake`, feature `fake`). Every call has a timeout
//! and retries throttling and 5xx with backoff and jitter ([`credentials::AwsSettings`]); errors
//! are classified for the controller ([`error::ErrorClass`]). See docs/aws.md.
#![forbid(unsafe_code)]

pub mod cloud;
pub mod codedeploy;
pub mod credentials;
pub mod ecs;
pub mod elb;
pub mod error;
pub mod evidence;
pub mod execute;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod fence;
pub mod hooks;
pub mod lambda;
pub mod restore;
pub mod signals;
pub mod targets;
pub mod traffic;

pub use error::{AwsError, ErrorClass, Scope};
pub use fence::WriteFence;
