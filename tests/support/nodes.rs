//! Fake s390x `Node`s (testbed.md): no kubelet runs, the test writes what a kubelet would (Ready,
//! capacity, node info) through the status subresource; the real scheduler binds pods to them.
//! Deleted on drop, with the CryptoNode and agent Lease of the same name.

use std::path::PathBuf;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use cryptopass::api::CryptoNode;

use super::cluster::{Cluster, cleanup};
use super::{RELEASE_NAMESPACE, TEST_MANAGER, unique};

pub struct FakeNode {
    pub name: String,
    kubeconfig: PathBuf,
}

/// The labels every fake s390x node carries (plus `kubernetes.io/hostname` = its name).
pub const S390X_LABELS: &[(&str, &str)] =
    &[("kubernetes.io/arch", "s390x"), ("kubernetes.io/os", "linux"), ("kubevirt.io/schedulable", "true")];

impl FakeNode {
    /// A Ready s390x node named `<prefix>-<random>`.
    pub async fn create(c: &Cluster, prefix: &str) -> FakeNode {
        FakeNode::create_with_labels(c, prefix, &[]).await
    }

    /// A Ready s390x node with extra labels.
    pub async fn create_with_labels(c: &Cluster, prefix: &str, labels: &[(&str, &str)]) -> FakeNode {
        let name = unique(prefix);
        let mut all: std::collections::BTreeMap<String, String> =
            S390X_LABELS.iter().chain(labels).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        all.insert("kubernetes.io/hostname".into(), name.clone());
        let node = Node {
            metadata: ObjectMeta { name: Some(name.clone()), labels: Some(all), ..ObjectMeta::default() },
            ..Node::default()
        };
        let api: Api<Node> = Api::all(c.client.clone());
        api.create(&PostParams::default(), &node).await.unwrap_or_else(|e| panic!("creating node {name}: {e}"));
        let n = FakeNode { name, kubeconfig: c.kubeconfig.clone() };
        n.set_ready(c, true).await;
        n
    }

    /// Removes the node's taints (the apiserver taints a new node `node.kubernetes.io/not-ready`; with
    /// no kubelet and controller-manager's `nodelifecycle` off, nothing else lifts it): the real scheduler
    /// then binds pods to it, e.g. KubeVirt's virt-launcher pods (`support::kubevirt`).
    pub async fn untaint(&self, c: &Cluster) {
        let patch = json!({"spec": {"taints": null}});
        Api::<Node>::all(c.client.clone())
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("removing the taints of node {}: {e}", self.name));
    }

    /// Writes the kubelet's part of the status: Ready (or not), capacity and allocatable.
    pub async fn set_ready(&self, c: &Cluster, ready: bool) {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let resources = json!({
            "cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi",
            "devices.kubevirt.io/kvm": "1k", "devices.kubevirt.io/tun": "1k", "devices.kubevirt.io/vhost-net": "1k",
        });
        let status = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "status": {
                "conditions": [{
                    "type": "Ready",
                    "status": if ready { "True" } else { "False" },
                    "reason": if ready { "KubeletReady" } else { "KubeletNotReady" },
                    "message": "fake s390x node of the cryptopass tests (no kubelet)",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }],
                "capacity": resources,
                "allocatable": resources,
                "nodeInfo": {
                    "architecture": "s390x", "operatingSystem": "linux", "osImage": "fake",
                    "kernelVersion": "6.19.0", "kubeletVersion": "v1.37.2", "kubeProxyVersion": "",
                    "containerRuntimeVersion": "fake://0", "machineID": self.name, "systemUUID": self.name,
                    "bootID": self.name,
                },
            },
        });
        Api::<Node>::all(c.client.clone())
            .patch_status(&self.name, &PatchParams::apply(TEST_MANAGER).force(), &Patch::Apply(&status))
            .await
            .unwrap_or_else(|e| panic!("writing the status of node {}: {e}", self.name));
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        let name = self.name.clone();
        cleanup(&self.kubeconfig, move |client| async move {
            let dp = DeleteParams::background();
            let _ = Api::<Node>::all(client.clone()).delete(&name, &dp).await;
            let _ = Api::<CryptoNode>::all(client.clone()).delete(&name, &dp).await;
            let lease = format!("cryptopass-agent-{name}");
            let _ = Api::<Lease>::namespaced(client, RELEASE_NAMESPACE).delete(&lease, &dp).await;
        });
    }
}
