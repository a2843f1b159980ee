//! Watch caches of the gate's own, for a webhook server that runs without the controller (the
//! integration tests, the admission benchmark). The controller process hands its reflector stores
//! to the gate instead (one watch per kind per process).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::handler::Caches;
use crate::api::CryptoPassthrough;
use crate::controller::kubevirt::Vmi;

/// The caches and the tasks that keep them current (stopped on drop).
pub struct Watches {
    pub caches: Caches,
    synced: Vec<Arc<AtomicBool>>,
    tasks: Vec<JoinHandle<()>>,
}

fn reflect<K>(api: Api<K>, tasks: &mut Vec<JoinHandle<()>>, synced: &mut Vec<Arc<AtomicBool>>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let flag = Arc::new(AtomicBool::new(false));
    synced.push(flag.clone());
    let events = watcher(api, watcher::Config::default()).default_backoff().modify(|o: &mut K| {
        o.meta_mut().managed_fields = None;
    });
    let stream = reflector::reflector(writer, events);
    tasks.push(tokio::spawn(async move {
        stream
            .for_each(|e| {
                if matches!(e, Ok(watcher::Event::InitDone)) {
                    flag.store(true, Ordering::Release);
                }
                std::future::ready(())
            })
            .await;
    }));
    reader
}

impl Watches {
    /// Watches passthroughs and VMIs (in `namespace`, or everywhere) and Nodes.
    pub fn start(client: Client, namespace: Option<&str>) -> Watches {
        let (mut tasks, mut synced) = (Vec::new(), Vec::new());
        let passthroughs = match namespace {
            Some(ns) => reflect(Api::<CryptoPassthrough>::namespaced(client.clone(), ns), &mut tasks, &mut synced),
            None => reflect(Api::<CryptoPassthrough>::all(client.clone()), &mut tasks, &mut synced),
        };
        let vmis = match namespace {
            Some(ns) => reflect(Api::<Vmi>::namespaced(client.clone(), ns), &mut tasks, &mut synced),
            None => reflect(Api::<Vmi>::all(client.clone()), &mut tasks, &mut synced),
        };
        let nodes = reflect(Api::<Node>::all(client), &mut tasks, &mut synced);
        Watches { caches: Caches { passthroughs, vmis, nodes }, synced, tasks }
    }

    /// A probe for [`super::start`]: every cache has had its first complete list.
    pub fn synced(&self) -> impl Fn() -> bool + Send + 'static {
        let flags = self.synced.clone();
        move || flags.iter().all(|f| f.load(Ordering::Acquire))
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
