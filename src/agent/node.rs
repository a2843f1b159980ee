//! The agent's own CryptoNode: created when missing, its status written by server-side apply
//! with the agent's field manager, and an event when its `Synced` condition changes.

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::json;

use crate::api::condition::find;
use crate::api::node::{CryptoNode, CryptoNodeSpec, CryptoNodeStatus};

use super::status::SYNCED;

/// The field manager of everything the agent writes.
pub const MANAGER: &str = "cryptopass-agent";

pub struct NodeApi {
    api: Api<CryptoNode>,
    name: String,
    recorder: Recorder,
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl NodeApi {
    pub fn new(client: Client, name: &str) -> NodeApi {
        let reporter = Reporter { controller: MANAGER.into(), instance: Some(name.to_string()) };
        NodeApi { api: Api::all(client.clone()), name: name.to_string(), recorder: Recorder::new(client, reporter) }
    }

    pub fn api(&self) -> &Api<CryptoNode> {
        &self.api
    }

    /// The CryptoNode, created (empty spec) when there is none.
    pub async fn ensure(&self) -> Result<CryptoNode, kube::Error> {
        if let Some(n) = self.api.get_opt(&self.name).await? {
            return Ok(n);
        }
        let node = CryptoNode::new(&self.name, CryptoNodeSpec::default());
        let pp = PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() };
        match self.api.create(&pp, &node).await {
            Ok(n) => {
                tracing::info!("created CryptoNode {}", self.name);
                Ok(n)
            }
            Err(e) if is_status(&e, 409) => self.api.get(&self.name).await,
            Err(e) => Err(e),
        }
    }

    /// Server-side apply of the whole status (forced: the status is the agent's alone).
    pub async fn write_status(&self, status: &CryptoNodeStatus) -> Result<CryptoNode, kube::Error> {
        let body = json!({
            "apiVersion": "crypto.s390x.dev/v1alpha1",
            "kind": "CryptoNode",
            "status": status,
        });
        self.api.patch_status(&self.name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body)).await
    }

    /// An event on the CryptoNode when `Synced` changed status or reason (best effort).
    pub async fn announce(&self, node: &CryptoNode, before: Option<&CryptoNodeStatus>, after: &CryptoNodeStatus) {
        let Some(now) = find(&after.conditions, SYNCED) else { return };
        let old = before.and_then(|s| find(&s.conditions, SYNCED));
        if old.is_some_and(|o| o.status == now.status && o.reason == now.reason) {
            return;
        }
        let ev = Event {
            type_: if now.is_true() { EventType::Normal } else { EventType::Warning },
            reason: now.reason.clone(),
            note: Some(now.message.chars().take(1000).collect()),
            action: "Apply".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &node.object_ref(&())).await {
            tracing::debug!("event on CryptoNode {}: {e}", self.name);
        }
    }
}
