//! Reflectors: the controller's only read path. One watch per kind feeds a store (read by every
//! reconcile through [`Stores::cluster`]) and a trigger stream (which passthroughs to reconcile
//! when a CryptoNode, Node, Lease, VMI or KubeVirt CR changes).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::inputs::MigrationView;
use super::inputs::{AGENT_STALE_AFTER, Cluster, NodeView, agent_lease_name};
use super::kubevirt::{KubeVirt, MIGRATION_JOB_LABEL, Migration, Vmi, default_eviction_strategy, sweep_protection};
use crate::api::{CryptoNode, CryptoPassthrough};

const LEASE_PREFIX: &str = "cryptopass-agent-";

#[derive(Clone)]
pub struct Stores {
    pub namespace: String,
    pub passthroughs: Store<CryptoPassthrough>,
    pub cnodes: Store<CryptoNode>,
    pub nodes: Store<Node>,
    pub leases: Store<Lease>,
    pub vmis: Store<Vmi>,
    pub kubevirts: Store<KubeVirt>,
    /// VirtualMachineInstanceMigrations.
    pub migrations: Store<Migration>,
    /// Migration target pods only (label `kubevirt.io/migrationJobUID`): their node.
    pub target_pods: Store<Pod>,
    /// Whether the Lease watch fails, or when it came back.
    pub leases_resumed: Arc<Resumed>,
}

/// Whether a watch is failing, or when it last came back after failing (apiserver down or
/// restarted, 403 until its RBAC caches filled): meanwhile no Lease renewal reached us, and most
/// likely none reached the apiserver. An agent Lease counts as renewed no earlier than that, so an
/// apiserver outage longer than the stale bound does not make every agent stale at once (their
/// standby entries dropped, the prepared mdevs removed the moment the agents are back: seen in an
/// apiserver-restart test on this 2-core box, where RBAC answered 403 for over a minute after the
/// restart). Not set by the first list: a starting controller trusts the Leases as they are.
#[derive(Debug, Default)]
pub struct Resumed {
    broken: AtomicBool,
    /// Milliseconds since the epoch; 0: never.
    at_ms: AtomicI64,
}

impl Resumed {
    /// An item of the watch: an object (the watch works) or an error.
    pub fn saw(&self, ok: bool, now: Timestamp) {
        if !ok {
            self.broken.store(true, Ordering::Release);
        } else if self.broken.swap(false, Ordering::AcqRel) {
            self.at_ms.store(now.as_millisecond(), Ordering::Release);
        }
    }

    /// `now` while the watch fails (no renewal can reach us), else when it last came back.
    pub fn at(&self, now: Timestamp) -> Option<Timestamp> {
        if self.broken.load(Ordering::Acquire) {
            return Some(now);
        }
        match self.at_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Timestamp::from_millisecond(ms).ok(),
        }
    }
}

pub type Trigger<K> = futures::stream::BoxStream<'static, Result<K, watcher::Error>>;

/// The trigger streams; polling them (the Controller does) keeps the stores current.
pub struct Streams {
    pub passthroughs: Trigger<CryptoPassthrough>,
    pub cnodes: Trigger<CryptoNode>,
    pub nodes: Trigger<Node>,
    pub leases: Trigger<Lease>,
    pub vmis: Trigger<Vmi>,
    pub kubevirts: Trigger<KubeVirt>,
    pub migrations: Trigger<Migration>,
    pub target_pods: Trigger<Pod>,
}

/// Annotations the caches keep (every other one is dropped): the evacuation mark of a VMIM, by
/// which the lifecycle counts its own evacuation attempts.
const KEPT_ANNOTATIONS: &[&str] = &[crate::webhook::vmim::EVACUATION_ANNOTATION];

fn strip<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
    if let Some(a) = o.meta_mut().annotations.as_mut() {
        a.retain(|k, _| KEPT_ANNOTATIONS.contains(&k.as_str()));
    }
    if o.meta().annotations.as_ref().is_some_and(|a| a.is_empty()) {
        o.meta_mut().annotations = None;
    }
}

/// A reflector whose store keeps what `trim` leaves of each object; `synced` turns true with the
/// first complete list. (Readiness is taken from the watch events, not from
/// `Store::wait_until_ready`: that future keeps only the last waiter's waker, and the Controller
/// waits on the passthrough store itself.)
fn reflect<K>(
    api: Api<K>,
    wc: watcher::Config,
    trim: fn(&mut K),
    synced: Arc<AtomicBool>,
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let events = watcher(api, wc).default_backoff().modify(move |o| {
        strip(o);
        trim(o)
    });
    let stream = reflector::reflector(writer, events)
        .inspect(move |e| {
            if matches!(e, Ok(watcher::Event::InitDone)) {
                synced.store(true, Ordering::Release);
            }
        })
        .touched_objects();
    (reader, stream)
}

/// A trigger stream without the watch's errors (logged here): the watcher retries with its own
/// backoff, while an error handed to the Controller pauses EVERY trigger stream for the
/// Controller's trigger backoff (up to 30 s per error). After an apiserver restart each watch's
/// errors in turn held a new passthrough back for minutes.
fn triggers<K>(kind: &'static str, s: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static) -> Trigger<K>
where
    K: Send + 'static,
{
    s.filter_map(move |r| {
        std::future::ready(match r {
            Ok(o) => Some(Ok(o)),
            Err(e) => {
                tracing::warn!(kind, error = %e, "watch failed; retrying");
                None
            }
        })
    })
    .boxed()
}

/// One flag per watched kind: its cache has had its first complete list.
#[derive(Clone, Default)]
pub struct Synced(Vec<(&'static str, Arc<AtomicBool>)>);

impl Synced {
    fn flag(&mut self, kind: &'static str) -> Arc<AtomicBool> {
        let f = Arc::new(AtomicBool::new(false));
        self.0.push((kind, f.clone()));
        f
    }

    /// The kinds whose cache is not synced yet.
    pub fn pending(&self) -> Vec<&'static str> {
        self.0.iter().filter(|(_, f)| !f.load(Ordering::Acquire)).map(|(k, _)| *k).collect()
    }

    pub fn all(&self) -> bool {
        self.pending().is_empty()
    }
}

/// Whether an agent Lease is fresh now: renewals of a fresh Lease pass no event on (staleness is
/// found by the reconcile's requeue), a stale Lease coming back does.
fn lease_fresh(l: &Lease) -> Option<u64> {
    let mut h = DefaultHasher::new();
    (renewed(l).is_some_and(|t| Timestamp::now().duration_since(t).unsigned_abs() < AGENT_STALE_AFTER)).hash(&mut h);
    l.spec.as_ref().and_then(|s| s.holder_identity.clone()).hash(&mut h);
    Some(h.finish())
}

/// What of a CryptoNode placement reads: its spec and its status without the conditions (whose
/// times change on every agent pass that writes them).
fn cnode_content(c: &CryptoNode) -> Option<u64> {
    let mut status = c.status.clone().unwrap_or_default();
    status.conditions.clear();
    let text = serde_json::to_string(&(&c.spec, &status)).ok()?;
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    Some(h.finish())
}

/// What of a VMI placement reads.
fn vmi_placement(v: &Vmi) -> Option<u64> {
    let mut h = DefaultHasher::new();
    format!("{:?}", v.view()).hash(&mut h);
    Some(h.finish())
}

/// What of a VMIM the lifecycle reads.
fn migration_content(m: &Migration) -> Option<u64> {
    let mut h = DefaultHasher::new();
    format!("{:?}", m.view(None)).hash(&mut h);
    Some(h.finish())
}

/// What of a target pod the lifecycle reads: its node.
fn pod_node(p: &Pod) -> Option<u64> {
    let mut h = DefaultHasher::new();
    p.spec.as_ref().and_then(|s| s.node_name.clone()).hash(&mut h);
    Some(h.finish())
}

fn renewed(l: &Lease) -> Option<Timestamp> {
    let s = l.spec.as_ref()?;
    s.renew_time.as_ref().or(s.acquire_time.as_ref()).map(|t| t.0)
}

/// Starts the watches (lazily: nothing runs until the streams are polled).
pub fn start(client: Client, namespace: &str) -> (Stores, Streams, Synced) {
    let wc = watcher::Config::default;
    let mut synced = Synced::default();
    let (passthroughs, pt_stream) =
        reflect(Api::<CryptoPassthrough>::all(client.clone()), wc(), |_| {}, synced.flag("cryptopassthroughs"));
    let (cnodes, cn_stream) = reflect(Api::<CryptoNode>::all(client.clone()), wc(), |_| {}, synced.flag("cryptonodes"));
    let trim_node = |n: &mut Node| {
        n.spec = None;
        n.status = None;
    };
    let (nodes, node_stream) = reflect(Api::<Node>::all(client.clone()), wc(), trim_node, synced.flag("nodes"));
    let (leases, lease_stream) =
        reflect(Api::<Lease>::namespaced(client.clone(), namespace), wc(), |_| {}, synced.flag("leases"));
    let (vmis, vmi_stream) =
        reflect(Api::<Vmi>::all(client.clone()), wc(), |_| {}, synced.flag("virtualmachineinstances"));
    let (kubevirts, kv_stream) = reflect(Api::<KubeVirt>::all(client.clone()), wc(), |_| {}, synced.flag("kubevirts"));
    let (migrations, mig_stream) =
        reflect(Api::<Migration>::all(client.clone()), wc(), |_| {}, synced.flag("virtualmachineinstancemigrations"));
    // Only the node of a target pod is kept.
    let trim_pod = |p: &mut Pod| {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec { node_name: node, ..Default::default() });
        p.status = None;
    };
    let (target_pods, pod_stream) = reflect(
        Api::<Pod>::all(client),
        wc().labels(MIGRATION_JOB_LABEL),
        trim_pod,
        synced.flag("migration target pods"),
    );
    let cfg = kube::runtime::utils::PredicateConfig::default;
    let leases_resumed = Arc::new(Resumed::default());
    let streams = Streams {
        passthroughs: triggers("cryptopassthroughs", pt_stream),
        cnodes: triggers("cryptonodes", cn_stream.predicate_filter(cnode_content, cfg())),
        nodes: triggers("nodes", node_stream.predicate_filter(predicates::labels, cfg())),
        leases: triggers(
            "leases",
            lease_stream
                .inspect({
                    let resumed = leases_resumed.clone();
                    move |l| resumed.saw(l.is_ok(), Timestamp::now())
                })
                .filter(|l| std::future::ready(l.as_ref().map_or(true, |l| l.name_any().starts_with(LEASE_PREFIX))))
                .predicate_filter(lease_fresh, cfg()),
        ),
        vmis: triggers("virtualmachineinstances", vmi_stream.predicate_filter(vmi_placement, cfg())),
        kubevirts: triggers("kubevirts", kv_stream.predicate_filter(predicates::resource_version, cfg())),
        migrations: triggers("virtualmachineinstancemigrations", mig_stream.predicate_filter(migration_content, cfg())),
        target_pods: triggers("migration target pods", pod_stream.predicate_filter(pod_node, cfg())),
    };
    let stores = Stores {
        namespace: namespace.to_string(),
        passthroughs,
        cnodes,
        nodes,
        leases,
        vmis,
        kubevirts,
        migrations,
        target_pods,
        leases_resumed,
    };
    (stores, streams, synced)
}

impl Stores {
    /// The inputs of a reconcile, from the caches.
    pub fn cluster(&self, now: Timestamp) -> Cluster {
        let resumed = self.leases_resumed.at(now);
        let nodes = self
            .nodes
            .state()
            .into_iter()
            .map(|n| {
                let name = n.name_any();
                let lease = self.leases.get(&ObjectRef::new(&agent_lease_name(&name)).within(&self.namespace));
                let view = NodeView {
                    name: name.clone(),
                    labels: n.labels().clone(),
                    lease_renewed: lease.as_deref().and_then(renewed).map(|t| resumed.map_or(t, |r| t.max(r))),
                    cnode: self.cnodes.get(&ObjectRef::new(&name)),
                };
                (name, view)
            })
            .collect();
        let vmis =
            self.vmis.state().iter().map(|v| ((v.namespace().unwrap_or_default(), v.name_any()), v.view())).collect();
        let kubevirts = self.kubevirts.state();
        let pod_nodes: std::collections::HashMap<String, String> = self
            .target_pods
            .state()
            .iter()
            .filter_map(|p| {
                let uid = p.labels().get(MIGRATION_JOB_LABEL)?.clone();
                Some((uid, p.spec.as_ref()?.node_name.clone()?))
            })
            .collect();
        let mut migrations: std::collections::BTreeMap<(String, String), Vec<MigrationView>> = Default::default();
        for m in self.migrations.state() {
            let view = m.view(m.metadata.uid.as_ref().and_then(|u| pod_nodes.get(u)).cloned());
            migrations.entry((m.namespace().unwrap_or_default(), view.vmi.clone())).or_default().push(view);
        }
        Cluster {
            now,
            nodes,
            passthroughs: self.passthroughs.state(),
            vmis,
            migrations,
            default_eviction_strategy: default_eviction_strategy(kubevirts.iter().map(|k| k.as_ref())),
            sweep: sweep_protection(kubevirts.iter().map(|k| k.as_ref())),
        }
    }

    /// Passthroughs of the VMI a VMIM migrates.
    pub fn using_migration(&self, m: &Migration) -> Vec<ObjectRef<CryptoPassthrough>> {
        match &m.spec.vmi_name {
            Some(vmi) => self.using_vmi(&m.namespace().unwrap_or_default(), vmi),
            None => Vec::new(),
        }
    }

    /// Passthroughs of the VMI whose migration a target pod serves.
    pub fn using_target_pod(&self, p: &Pod) -> Vec<ObjectRef<CryptoPassthrough>> {
        let Some(uid) = p.labels().get(MIGRATION_JOB_LABEL) else { return Vec::new() };
        self.migrations
            .state()
            .iter()
            .find(|m| m.metadata.uid.as_ref() == Some(uid))
            .map(|m| self.using_migration(m))
            .unwrap_or_default()
    }

    pub fn all(&self) -> Vec<ObjectRef<CryptoPassthrough>> {
        self.passthroughs.state().iter().map(|p| ObjectRef::from_obj(p.as_ref())).collect()
    }

    /// Passthroughs that may care about a node: listed there, holding an entry there, or
    /// selecting it.
    pub fn related_to_node(&self, node: &str) -> Vec<ObjectRef<CryptoPassthrough>> {
        let labels = self.nodes.get(&ObjectRef::new(node)).map(|n| n.labels().clone()).unwrap_or_default();
        let cnode = self.cnodes.get(&ObjectRef::new(node));
        let uids: Vec<String> = cnode
            .iter()
            .flat_map(|c| c.spec.mdevs.iter().filter_map(|m| m.passthrough.as_ref().map(|p| p.uid.clone())))
            .collect();
        self.passthroughs
            .state()
            .iter()
            .filter(|p| {
                p.spec.placement.node_selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                    || p.status.as_ref().is_some_and(|s| s.nodes.iter().any(|n| n.name == node))
                    || p.metadata.uid.as_ref().is_some_and(|u| uids.contains(u))
            })
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect()
    }

    pub fn using_vmi(&self, namespace: &str, name: &str) -> Vec<ObjectRef<CryptoPassthrough>> {
        self.passthroughs
            .state()
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(namespace) && p.spec.vm_name == name)
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect()
    }

    /// The node an agent Lease belongs to.
    pub fn lease_node(lease: &Lease) -> Option<String> {
        lease.name_any().strip_prefix(LEASE_PREFIX).map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::vmim::EVACUATION_ANNOTATION;

    #[test]
    fn the_caches_keep_the_evacuation_mark_of_a_vmim_and_drop_every_other_annotation() {
        let mut m = Migration::default();
        m.metadata.annotations = Some(
            [(EVACUATION_ANNOTATION.to_string(), "n1".to_string()), ("kubectl.kubernetes.io/x".into(), "big".into())]
                .into(),
        );
        strip(&mut m);
        assert_eq!(m.view(None).evacuation.as_deref(), Some("n1"));
        assert_eq!(m.metadata.annotations.as_ref().map(|a| a.len()), Some(1));
        let mut n = Node::default();
        n.metadata.annotations = Some([("a".to_string(), "b".to_string())].into());
        strip(&mut n);
        assert_eq!(n.metadata.annotations, None);
    }
}

#[cfg(test)]
mod resumed_tests {
    use super::*;

    #[test]
    fn a_failing_lease_watch_holds_staleness_and_its_return_restarts_the_count() {
        let r = Resumed::default();
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        r.saw(true, t(100));
        assert_eq!(r.at(t(110)), None, "a watch that never failed changes nothing");
        r.saw(false, t(120));
        assert_eq!(r.at(t(200)), Some(t(200)), "while failing, every Lease counts as renewed now");
        r.saw(false, t(210));
        r.saw(true, t(230));
        assert_eq!(r.at(t(300)), Some(t(230)), "back: renewed no earlier than the return");
        r.saw(true, t(240));
        assert_eq!(r.at(t(300)), Some(t(230)));
    }
}
