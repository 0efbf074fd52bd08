//! Test infrastructure shared by kiln's AWS adapter tests, e2e suite and sandbox.
//!
//! **Test infrastructure only**: nothing here is used by kiln itself.
//!
//! - [`moto`]: a [`Moto`] server per test (`.venv-moto/bin/moto_server` on a free 127.0.0.1 port,
//!   killed on drop; `KILN_MOTO_BIN` overrides the binary), SDK clients in moto's default account,
//!   and hand-made AWS Query calls (EC2, IAM) so the build does not pay for `aws-sdk-ec2`/`-iam`.
//! - [`account`]: an [`Account`] per 12-digit account ID, reached the way kiln's controller reaches
//!   it: STS AssumeRole of `arn:aws:iam::<id>:role/kiln-deploy` from the default credentials. moto
//!   maps the assumed-role credentials to that account, so what a test creates through an
//!   [`Account`] is what the controller sees when it assumes the same role.
//! - [`fixtures`]: what a promotion acts on, in one account: [`EcsFixture`] (an EXTERNAL ECS service
//!   behind an ALB listener weighted 100/0 to blue/green target groups), [`LambdaFixture`] (a
//!   function with version 1 and an alias on it) and CloudWatch alarms ([`put_alarm`],
//!   [`set_alarm_state`], [`alarm_state`]), with helpers that read back what kiln changed.
//! - [`controlplane`]: a real Kubernetes [`ControlPlane`] per test (kube-apiserver, etcd and the
//!   garbage-collector, namespace and ServiceAccount controllers, built from pinned Go modules by
//!   `scripts/controlplane.sh`), with one kubeconfig context per test user.
//! - [`proxy`]: a [`FaultProxy`] in front of kube-apiserver (HTTPS) or moto (HTTP), one per
//!   client: holds (before or after the upstream acts), delays, fails, black-holes and logs
//!   requests by rules a test sets while it runs.
//! - [`process`]: the real `kiln-controller` binary as a [`ControllerProcess`] (log file, metrics
//!   port, `/proc` readings), killed on drop; the e2e suite and the cold-start benchmark share it.
//! - [`stub`]: a canned-response HTTP [`Stub`] for the AWS paths moto lacks (and for retries, which
//!   moto cannot provoke).
//!
//! Everything that talks to moto returns `Result<_, String>` whose error names the call and the
//! account; only [`Moto::start`] and [`Stub::start`] panic (with what failed), being harnesses.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! use kiln_testkit::{Account, EcsFixture, Moto, REGION};
//! let moto = Moto::start();
//! let dev = Account::assume(&moto, "111111111111", REGION).await?;
//! let web = EcsFixture::create(&dev, "web", "app").await?;
//! assert_eq!(web.weights(&dev.clients).await?, vec![(web.blue_tg.clone(), 100), (web.green_tg.clone(), 0)]);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod account;
pub mod chart;
pub mod controlplane;
pub mod fixtures;
pub mod moto;
pub mod process;
pub mod proxy;
pub mod stub;

pub use account::{Account, DEPLOY_ROLE};
pub use controlplane::{ControlPlane, User, controlplane_bin};
pub use fixtures::{
    AliasState, EcsFixture, EcsNames, LambdaFixture, TaskSet, alarm_state, lambda_alias, lambda_versions,
    listener_weights, object_lock_bucket, put_alarm, rolling_service, service_task_definition, set_alarm_state,
    task_sets, zip_file,
};
pub use moto::{Moto, MotoEndpoint, Vpc, moto_bin, repo_root, static_clients, xml_tag};
pub use process::{ControllerProcess, Launch, free_port};
pub use proxy::{Action, FaultProxy, Logged, Match, Outcome, Rule, Upstream, When};
pub use stub::{Stub, StubRequest, StubResponse};

/// The region tests use unless they say otherwise.
pub const REGION: &str = "us-east-1";

/// moto's default account: static test credentials ([`STATIC_ACCESS_KEY`]) act in it.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// The static test access key (moto maps keys it did not issue to [`DEFAULT_ACCOUNT`]).
pub const STATIC_ACCESS_KEY: &str = "AKIATESTTESTTEST";

/// A syntactically valid image digest (`sha256:` and 64 hex digits) for images pinned by digest.
pub const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
