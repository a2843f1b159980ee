//! One reconcile of a CryptoPassthrough: fetch (the freshest copy and the cluster from the watch
//! caches) → validate → build (pure: [`plan`]) → apply (CryptoNode entries, node labels) → status
//! (and events, metrics). Only the leader gets past the first line.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;

use super::apply;
use super::error::{Error, Result};
use super::metrics::Metrics;
use super::plan::plan;
use super::status::Note;
use super::watch::Stores;
use crate::api::{CryptoPassthrough, FINALIZER};

/// A periodic look even when nothing changed (caches are the read path, so this costs no GET).
const RESYNC: Duration = Duration::from_secs(300);
/// While deleting: how soon to look again if no CryptoNode change wakes us first.
const RELEASE_RECHECK: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(5);
/// Kubernetes limits an event's note to 1 kB.
const NOTE_LIMIT: usize = 1000;

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub stores: Stores,
    pub leader: watch::Receiver<bool>,
    pub node_locks: apply::NodeLocks,
}

impl Context {
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }
}

pub async fn reconcile(trigger: Arc<CryptoPassthrough>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.is_leader() {
        return Ok(Action::await_change());
    }
    let _timer = ctx.metrics.reconcile_started();
    // Fetch: the cache may be newer than the object that triggered us.
    let pt = ctx.stores.passthroughs.get(&ObjectRef::from_obj(trigger.as_ref())).unwrap_or(trigger);
    let (ns, name) = (pt.namespace().unwrap_or_default(), pt.name_any());
    let api: Api<CryptoPassthrough> = Api::namespaced(ctx.client.clone(), &ns);
    let deleting = pt.metadata.deletion_timestamp.is_some();
    let finalized = pt.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !finalized {
        return Ok(Action::await_change());
    }
    // Validate: the schema (CEL) refused bad input already; what is left is having a uid.
    let uid = pt.metadata.uid.clone().ok_or_else(|| Error::NoUid(format!("{ns}/{name}")))?;
    if !finalized {
        apply::add_finalizer(&api, &pt).await?;
    }
    // Build.
    let cluster = ctx.stores.cluster(Timestamp::now());
    let out = plan(&pt, &cluster).ok_or_else(|| Error::NoUid(format!("{ns}/{name}")))?;
    // Apply: an abort first (the sooner the less guest memory is copied in vain).
    if let Some(a) = &out.lifecycle.abort {
        apply::abort(&ctx.client, a).await?;
    }
    apply::entries(&ctx.client, &ctx.stores, &ctx.node_locks, &uid, &out.placement).await?;
    if out.placement.conflicts.uuid_in_use.is_none() {
        apply::labels(&ctx.client, &ctx.stores, &uid, &out.placement).await?;
    }
    let mut requeue = out.lifecycle.requeue_after;
    let mut notes = out.notes.clone();
    let mut vmi_notes = out.lifecycle.vmi_notes.clone();
    if let Some(m) = &out.lifecycle.create
        && let Some(refused) = apply::create_migration(&ctx.client, m).await?
    {
        let text = format!("the drain of node {} waits: creating {} was refused: {refused}", m.evacuation_node, m.name);
        notes.push(Note { warning: true, reason: "EvacuationBlocked".into(), message: text.clone() });
        vmi_notes.push(Note { warning: true, reason: "EvacuationBlocked".into(), message: text });
        requeue = Some(super::lifecycle::EVACUATION_RETRY);
    }
    // Status, events, metrics.
    apply::status(&api, &pt, &out.status).await?;
    publish(&ctx.recorder, &pt.object_ref(&()), &notes).await;
    if !vmi_notes.is_empty()
        && let Some(vmi) = ctx.stores.vmis.get(&ObjectRef::new(&pt.spec.vm_name).within(&ns))
    {
        publish(&ctx.recorder, &vmi.object_ref(&()), &vmi_notes).await;
    }
    if let Some(outcome) = out.lifecycle.finished {
        let took = out.status.last_migration.as_ref().and_then(|l| l.duration_seconds);
        ctx.metrics.migration_finished(outcome, took);
    }
    ctx.metrics.set_passthrough(&ns, &name, Some(&out.verdict_counts), &out.incompatible_apqns);
    if deleting {
        if out.placement.holding.is_empty() {
            apply::remove_finalizer(&api, &pt).await?;
            ctx.metrics.set_passthrough(&ns, &name, None, &Default::default());
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(RELEASE_RECHECK));
    }
    let next = [out.placement.requeue_after, requeue].into_iter().flatten().min();
    Ok(Action::requeue(next.map_or(RESYNC, |d| d.min(RESYNC))))
}

pub fn error_policy(pt: Arc<CryptoPassthrough>, e: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(passthrough = %format!("{}/{}", pt.namespace().unwrap_or_default(), pt.name_any()), error = %e, "reconcile failed");
    ctx.metrics.reconcile_failed(e);
    Action::requeue(RETRY + jitter(&pt))
}

/// Up to 5 s more, so that reconciles failing together (an overloaded apiserver answering 429 or
/// 504) do not come back together.
fn jitter(pt: &CryptoPassthrough) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (pt.metadata.uid.as_deref(), std::time::SystemTime::now()).hash(&mut h);
    Duration::from_millis(h.finish() % 5000)
}

fn truncate(s: &str) -> String {
    if s.len() <= NOTE_LIMIT {
        return s.to_string();
    }
    let mut end = NOTE_LIMIT - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Events are best effort: a failed publish is logged, never a failed reconcile.
async fn publish(recorder: &Recorder, reference: &ObjectReference, notes: &[Note]) {
    for n in notes {
        let ev = Event {
            type_: if n.warning { EventType::Warning } else { EventType::Normal },
            reason: n.reason.chars().take(128).collect(),
            note: Some(truncate(&n.message)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, reference).await {
            tracing::warn!(error = %e, reason = %n.reason, "cannot publish an event");
        }
    }
}
