//! Least-privilege identities of the chart-to-be (`deploy/`): tokens of the real ServiceAccounts,
//! minted with the TokenRequest API, in a kubeconfig with the admin's server and CA.
//!
//! An agent's token is bound to a Pod on its (fake) node (`spec.nodeName`; the Pod never runs):
//! such tokens carry `authentication.kubernetes.io/node-name`, which the agent's
//! ValidatingAdmissionPolicy confines it by.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ServiceAccount, Toleration};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::OnceCell;

use cryptopass::api::{CryptoNode, CryptoNodeSpec};

use super::cluster::{Cluster, cleanup, client_from};
use super::{RELEASE_NAMESPACE, eventually_within, is_code, suffix};

pub const AGENT_SA: &str = "cryptopass-agent";
pub const CONTROLLER_SA: &str = "cryptopass-controller";

/// A token identity and its kubeconfig file.
pub struct Identity {
    /// `system:serviceaccount:<ns>:<sa>`.
    pub user: String,
    pub token: String,
    pub kubeconfig: PathBuf,
    /// The Pod the token is bound to (deleted on drop: that revokes the token).
    pub pod: Option<String>,
    admin: PathBuf,
    _dir: tempfile::TempDir,
}

impl Identity {
    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig).await
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        if let Some(pod) = self.pod.clone() {
            cleanup(&self.admin, move |client| async move {
                let _ =
                    Api::<Pod>::namespaced(client, RELEASE_NAMESPACE).delete(&pod, &DeleteParams::background()).await;
            });
        }
    }
}

/// The identity of the agent of `node`: a token of `cryptopass-agent` bound to a Pod on `node`.
/// The first call of a process also waits until the agent's admission policy is in force.
pub async fn agent_identity(c: &Cluster, node: &str) -> Identity {
    let pod = format!("cryptopass-agent-{node}");
    let (pod_name, uid) = bound_pod(c, &pod, node).await;
    let id = mint(c, AGENT_SA, Some((pod_name, uid))).await;
    POLICY_IN_FORCE.get_or_init(|| policy_in_force(&id, node)).await;
    id
}

/// The identity of the controller (a plain ServiceAccount token, not bound to a node).
pub async fn controller_identity(c: &Cluster) -> Identity {
    mint(c, CONTROLLER_SA, None).await
}

static POLICY_IN_FORCE: OnceCell<()> = OnceCell::const_new();

/// A ValidatingAdmissionPolicy takes effect a moment after it is created: probe it with a dry-run
/// create of another node's CryptoNode until the policy refuses it.
async fn policy_in_force(id: &Identity, node: &str) {
    let api: Api<CryptoNode> = Api::all(id.client().await);
    let probe = CryptoNode::new(&format!("{node}-probe-{}", suffix()), CryptoNodeSpec::default());
    let pp = PostParams { dry_run: true, ..PostParams::default() };
    eventually_within(Duration::from_secs(60), "the agent's ValidatingAdmissionPolicy to be in force", || {
        let (api, probe, pp) = (api.clone(), probe.clone(), pp.clone());
        async move {
            match api.create(&pp, &probe).await {
                // Forbidden by the policy, not by RBAC (whose bindings may still be on their way).
                Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("may only write") => Some(()),
                _ => None,
            }
        }
    })
    .await;
}

/// A Pod of the agent's ServiceAccount bound to `node` (it never runs: no kubelet).
async fn bound_pod(c: &Cluster, name: &str, node: &str) -> (String, String) {
    let api: Api<Pod> = Api::namespaced(c.client.clone(), RELEASE_NAMESPACE);
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([("app.kubernetes.io/component".to_string(), "agent".to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.to_string()),
            service_account_name: Some(AGENT_SA.to_string()),
            automount_service_account_token: Some(false),
            tolerations: Some(vec![Toleration { operator: Some("Exists".into()), ..Toleration::default() }]),
            containers: vec![Container {
                name: "agent".into(),
                image: Some("cryptopass:test".into()),
                args: Some(vec!["agent".into(), "--node-name".into(), node.into()]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    let created = match api.create(&PostParams::default(), &pod).await {
        Ok(p) => p,
        Err(e) if is_code(&e, 409) => api.get(name).await.unwrap_or_else(|e| panic!("pod {name}: {e}")),
        Err(e) => panic!("creating pod {name} on node {node}: {e}"),
    };
    (created.name_any(), created.uid().expect("a pod uid"))
}

/// A token of `sa` (bound to a pod when given) and a kubeconfig holding it.
async fn mint(c: &Cluster, sa: &str, pod: Option<(String, String)>) -> Identity {
    let api: Api<ServiceAccount> = Api::namespaced(c.client.clone(), RELEASE_NAMESPACE);
    let req = TokenRequest {
        metadata: ObjectMeta::default(),
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            bound_object_ref: pod.as_ref().map(|(name, uid)| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.clone()),
                uid: Some(uid.clone()),
            }),
            expiration_seconds: Some(3600),
        },
        status: None,
    };
    let tr = api
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {RELEASE_NAMESPACE}/{sa}: {e}"));
    let token = tr.status.expect("a token").token;
    let user = format!("system:serviceaccount:{RELEASE_NAMESPACE}:{sa}");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    write_kubeconfig(&c.kubeconfig, &kubeconfig, &user, &token);
    Identity { user, token, kubeconfig, pod: pod.map(|p| p.0), admin: c.kubeconfig.clone(), _dir: dir }
}

/// A kubeconfig with the current cluster of `admin` (server and CA as they are) and a token user.
pub fn write_kubeconfig(admin: &Path, out: &Path, user: &str, token: &str) {
    let text = std::fs::read_to_string(admin).unwrap_or_else(|e| panic!("{}: {e}", admin.display()));
    let kc: serde_yaml::Value = serde_yaml::from_str(&text).expect("admin kubeconfig YAML");
    let current = kc["current-context"].as_str().expect("current-context").to_string();
    let ctx = kc["contexts"].as_sequence().and_then(|s| s.iter().find(|c| c["name"].as_str() == Some(&current)));
    let cluster_name = ctx.and_then(|c| c["context"]["cluster"].as_str()).expect("the current context's cluster");
    let mut cluster = kc["clusters"]
        .as_sequence()
        .and_then(|s| s.iter().find(|c| c["name"].as_str() == Some(cluster_name)))
        .cloned()
        .expect("the current cluster");
    // A relative CA path is relative to the admin kubeconfig's directory.
    if let Some(ca) = cluster["cluster"]["certificate-authority"].as_str() {
        let base = admin.parent().unwrap_or(Path::new("."));
        cluster["cluster"]["certificate-authority"] = base.join(ca).display().to_string().into();
    }
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [serde_json::to_value(&cluster).expect("cluster as JSON")],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": cluster_name, "user": user}}],
        "current-context": "test",
    });
    std::fs::write(out, serde_yaml::to_string(&doc).expect("kubeconfig YAML")).expect("writing a kubeconfig");
}
