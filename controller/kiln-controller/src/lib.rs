//! kiln's operator: reconciles Releases and Promotions end to end.
//!
//! observe (reflector caches, AWS signals) → decide (`kiln_core`, pure) → act (`kiln_aws`, one
//! idempotent action) → record (status by server-side apply, Events, metrics). See
//! docs/architecture.md.
#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
pub mod context;
pub mod error;
pub mod guard;
pub mod http;
pub mod index;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod objects;
pub mod promotion;
pub mod record;
pub mod release;
pub mod run;
