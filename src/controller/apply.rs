//! The writes of a reconcile, each skipped when the watch cache already shows the wanted state:
//! our entries in `CryptoNode.spec.mdevs` and our node labels by server-side apply with one field
//! manager per passthrough (passthroughs never overwrite each other; applying nothing with that
//! manager removes what it owned), the status by server-side apply with `.force()` and the
//! controller's own manager, the finalizer by a merge patch guarded by the resourceVersion.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::error::Result;
use super::kubevirt::Migration;
use super::lifecycle::{Abort, NewMigration};
use super::placement::Placement;
use super::watch::Stores;
use crate::api::{CryptoNode, CryptoPassthrough, CryptoPassthroughStatus, DesiredMdev, FINALIZER, prepared_label};

/// The field manager of a passthrough's CryptoNode entries and node labels.
pub fn manager(uid: &str) -> String {
    format!("cryptopass/{uid}")
}

/// One lock per CryptoNode: this replica's applies to one node go one at a time. Concurrent
/// server-side applies to one object conflict inside the apiserver and are retried there until
/// its request deadline (hack/bench-scale/RESULTS.md); in turn they are cheap.
#[derive(Default)]
pub struct NodeLocks(std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>);

impl NodeLocks {
    pub fn of(&self, node: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(node.to_string()).or_default().clone()
    }
}

/// The field manager of CryptoPassthrough status.
pub const STATUS_MANAGER: &str = "cryptopass-controller";

fn ours(m: &DesiredMdev, uid: &str) -> bool {
    m.passthrough.as_ref().is_some_and(|p| p.uid == uid)
}

/// Makes every CryptoNode hold exactly our desired entries; returns the number of writes.
pub async fn entries(client: &Client, stores: &Stores, locks: &NodeLocks, uid: &str, p: &Placement) -> Result<usize> {
    let api: Api<CryptoNode> = Api::all(client.clone());
    let pp = PatchParams::apply(&manager(uid));
    let mut writes = 0;
    let apply = |node: &str, list: Vec<&DesiredMdev>| {
        // Nothing under `spec` gives up every entry this manager owned.
        let mut body =
            json!({"apiVersion": "crypto.s390x.dev/v1alpha1", "kind": "CryptoNode", "metadata": {"name": node}});
        if !list.is_empty() {
            body["spec"] = json!({"mdevs": list});
        }
        let (api, pp, node, lock) = (api.clone(), pp.clone(), node.to_string(), locks.of(node));
        async move {
            let _turn = lock.lock().await;
            api.patch(&node, &pp, &Patch::Apply(&body)).await.map(|_| ())
        }
    };
    for (node, want) in &p.desired {
        let cached = stores.cnodes.get(&ObjectRef::new(node));
        let have = cached.as_ref().and_then(|c| c.spec.mdevs.iter().find(|m| m.uuid == want.uuid));
        if have != Some(want) {
            apply(node, vec![want]).await?;
            writes += 1;
        }
    }
    for c in stores.cnodes.state() {
        let node = c.name_any();
        if !p.desired.contains_key(&node) && c.spec.mdevs.iter().any(|m| ours(m, uid)) {
            apply(&node, Vec::new()).await?;
            writes += 1;
        }
    }
    Ok(writes)
}

/// Puts `crypto.s390x.dev/prepared-<uuid>: "true"` on exactly the labeled nodes.
pub async fn labels(client: &Client, stores: &Stores, uid: &str, p: &Placement) -> Result<usize> {
    let api: Api<Node> = Api::all(client.clone());
    let pp = PatchParams::apply(&manager(uid));
    let key = prepared_label(&p.uuid);
    let labeled: &BTreeSet<String> = &p.labeled;
    let mut writes = 0;
    for n in stores.nodes.state() {
        let name = n.name_any();
        let want = labeled.contains(&name);
        let have = n.labels().get(&key).is_some_and(|v| v == "true");
        if want == have {
            continue;
        }
        let body = if want {
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {key.clone(): "true"}}})
        } else {
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
        };
        api.patch(&name, &pp, &Patch::Apply(&body)).await?;
        writes += 1;
    }
    Ok(writes)
}

/// Writes the status when it differs from the cached one.
pub async fn status(
    api: &Api<CryptoPassthrough>,
    pt: &CryptoPassthrough,
    new: &CryptoPassthroughStatus,
) -> Result<bool> {
    if pt.status.as_ref() == Some(new) {
        return Ok(false);
    }
    let body = json!({"apiVersion": "crypto.s390x.dev/v1alpha1", "kind": "CryptoPassthrough", "status": new});
    api.patch_status(&pt.name_any(), &PatchParams::apply(STATUS_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(true)
}

/// Sets the finalizer list; the resourceVersion makes it fail (409) rather than lose a concurrent edit.
async fn set_finalizers(api: &Api<CryptoPassthrough>, pt: &CryptoPassthrough, list: Vec<String>) -> Result<()> {
    let body = json!({"metadata": {"finalizers": list, "resourceVersion": pt.resource_version()}});
    api.patch(&pt.name_any(), &PatchParams::default(), &Patch::Merge(&body)).await?;
    Ok(())
}

pub async fn add_finalizer(api: &Api<CryptoPassthrough>, pt: &CryptoPassthrough) -> Result<()> {
    let mut list = pt.finalizers().to_vec();
    list.push(FINALIZER.to_string());
    set_finalizers(api, pt, list).await
}

pub async fn remove_finalizer(api: &Api<CryptoPassthrough>, pt: &CryptoPassthrough) -> Result<()> {
    let list: Vec<String> = pt.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    set_finalizers(api, pt, list).await
}

/// Aborts a migration: deletes its VMIM, only if it is still the one judged (uid precondition).
/// Gone already (404) or replaced (409) is not an error: there is nothing left to abort.
pub async fn abort(client: &Client, a: &Abort) -> Result<bool> {
    let api: Api<Migration> = Api::namespaced(client.clone(), &a.namespace);
    let dp = DeleteParams {
        preconditions: Some(Preconditions { uid: Some(a.uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    };
    tracing::info!(namespace = %a.namespace, migration = %a.name, reason = %a.reason, message = %a.message, "aborting a migration");
    match api.delete(&a.name, &dp).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Creates an evacuation VMIM. `Ok(None)`: created, or it exists already (the name is one per
/// attempt); `Ok(Some(why))`: the apiserver refused it (our gate or KubeVirt's denied it).
pub async fn create_migration(client: &Client, m: &NewMigration) -> Result<Option<String>> {
    let ar = kube::core::ApiResource::erase::<Migration>(&());
    let api: Api<kube::core::DynamicObject> = Api::namespaced_with(client.clone(), &m.namespace, &ar);
    let body = json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {
            "name": m.name,
            "namespace": m.namespace,
            "annotations": {crate::webhook::vmim::EVACUATION_ANNOTATION: m.evacuation_node},
        },
        "spec": {"vmiName": m.vmi, "addedNodeSelector": m.added_node_selector},
    });
    let obj: kube::core::DynamicObject = serde_json::from_value(body)?;
    match api.create(&PostParams { field_manager: Some(STATUS_MANAGER.into()), ..Default::default() }, &obj).await {
        Ok(_) => {
            tracing::info!(namespace = %m.namespace, migration = %m.name, node = %m.evacuation_node, "created an evacuation migration");
            Ok(None)
        }
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => Ok(None),
        // Denied by an admission webhook (ours or KubeVirt's) or a policy.
        Err(kube::Error::Api(s)) if s.code == 403 || s.code == 422 || s.message.contains("denied the request") => {
            Ok(Some(s.message))
        }
        Err(e) => Err(e.into()),
    }
}
