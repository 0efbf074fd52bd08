//! kiln's decision core.
//!
//! Everything here is a pure function of its inputs: no async, no clients, no clock of its own.
//! The controller observes Kubernetes and AWS, calls into this crate with what it saw and the
//! current time, and executes the actions it gets back. That is what lets freeze windows across
//! DST, approval quorums and every Promotion transition be tested by the thousand.
//!
//! - [`duration`]: Go-style durations as written in manifests.
//! - [`freeze`]: is an environment frozen at an instant, until when, and when next.
//! - [`approvals`]: which approval quorums are met.
//! - [`signals`]: breach evaluation of a RollbackPolicy against observed signals.
//! - [`gates`]: every gate of a Promotion, with a human message.
//! - [`plan`]: steps, bakes and hooks resolved from the Release and Environment.
//! - [`machine`]: the Promotion state machine (status, now) → (next status, action).
//! - [`observe`]: per-Promotion observations (queue, preemption, upstream, freeze scope) from the
//!   caches, and the owned [`observe::Observations`] a decision reads.
//! - [`problem`]: typed reasons a Promotion cannot go ahead as specified.
//! - [`reason`]: the timeline, condition and Event reasons kiln writes, listed once.
//! - [`release`]: a Release's aggregate status and the Promotions kiln should create.
//! - [`validate`]: what the schema cannot check (unknown environments, cycles, time zones).
//! - [`target`]: the AWS resource a Promotion drives, as the canonical ARN queues are keyed by.
//! - [`integrity`]: which Release a Promotion deployed, by UID and digests, never by name.
//! - [`running`]: what an environment runs now (kiln's mark, read from AWS) and whether a Release
//!   may replace it (newer by SemVer).
//! - [`evidence`]: the evidence record and its digest.
//! - `sim` (feature `sim`, for tests and benchmarks): a simulated world around one Promotion and
//!   the decide → act → complete driver they share.
#![forbid(unsafe_code)]

pub mod approvals;
pub mod duration;
pub mod error;
pub mod evidence;
pub mod freeze;
pub mod gates;
pub mod integrity;
pub mod machine;
pub mod objects;
pub mod observe;
pub mod plan;
pub mod problem;
pub mod reason;
pub mod release;
pub mod running;
pub mod signals;
#[cfg(feature = "sim")]
pub mod sim;
pub mod target;
pub mod tenancy;
pub mod time;
pub mod validate;

pub use error::SpecError;
pub use problem::Problem;
