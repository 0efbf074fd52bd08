//! kiln's end-to-end suite: the real `kiln-controller` binary against a real kube-apiserver (with
//! etcd and the GC/namespace controllers, built from pinned Go modules) and moto, one world per test (see e2e/README.md). Each test asserts what a
//! user would check: phases, gates, Events, evidence, listener weights and alias versions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod approvals;
mod blocked;
mod chart;
mod cli;
mod crash;
mod crash_points;
mod ecs_blue_green;
mod evidence;
mod flap;
mod freeze;
mod human;
mod integrity;
mod invalid;
mod lambda_breach;
mod leader;
mod objects;
mod sandbox;
mod takeover;
mod tenancy;
mod unreadable;
