//! The controller (architecture.md, "Components"): places each CryptoPassthrough on its active
//! node and standby targets, judges every candidate with `compat`, writes the desired mdevs into
//! `CryptoNode.spec`, labels prepared nodes, keeps status, conditions, events and metrics.
//!
//! Pure core (no client; unit-tested): [`inputs`] (what a reconcile reads), [`planned`] (a node as
//! it will be with our mdev), [`judge`] (verdict classes), [`conflict`], [`placement`], [`status`],
//! [`plan`] (all of it for one passthrough), [`kubevirt`] (the KubeVirt subsets and the CR check),
//! [`lifecycle`] (the migrations of the VM: re-verify, abort, hand-over, evacuation, last migration).
//! Kubernetes shell: [`run`] wires reflectors, leader election, the `kube::runtime::Controller`
//! and the HTTP endpoints; [`reconcile`] is fetch → validate → build → apply → status.

pub mod apply;
pub mod conflict;
pub mod error;
pub mod gc;
pub mod http;
pub mod inputs;
pub mod judge;
pub mod kubevirt;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod placement;
pub mod plan;
pub mod planned;
pub mod reconcile;
pub mod run;
pub mod status;
pub mod watch;

#[cfg(test)]
mod tests;
