//! The shared control plane: an admin client, the CRDs and `deploy/` applied once per process
//! (server-side apply: idempotent, so parallel test processes agree), and test namespaces.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use serde::Deserialize as _;
use tokio::sync::OnceCell;

use super::{RELEASE_NAMESPACE, TEST_MANAGER, repo, unique};

pub const KUBECONFIG_ENV: &str = "CRYPTOPASS_TEST_KUBECONFIG";

/// The `deploy/` manifests every test relies on, in the order they must be applied.
pub const DEPLOY: &[&str] = &["namespace.yaml", "rbac-agent.yaml", "rbac-controller.yaml", "vap-agent.yaml"];

/// The test bed as an admin sees it.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    /// The admin kubeconfig (server, CA): identities get the same server and CA.
    pub kubeconfig: PathBuf,
}

static SHARED: OnceCell<()> = OnceCell::const_new();

/// The admin kubeconfig of the test bed; panics (never skips) when it is not set.
pub fn admin_kubeconfig() -> PathBuf {
    match std::env::var_os(KUBECONFIG_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "{KUBECONFIG_ENV} is not set: the Kubernetes integration tests need the test bed's control plane. \
             Run them with `make test`, or `hack/testbed/up.sh DIR && source DIR/env` first."
        ),
    }
}

/// A client from a kubeconfig file.
pub async fn client_from(path: &Path) -> Client {
    let kc = Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()));
    Client::try_from(config).expect("a Kubernetes client")
}

/// The admin client; the CRDs and `deploy/` are in place (applied on the first call of a process).
pub async fn cluster() -> Cluster {
    let kubeconfig = admin_kubeconfig();
    let client = client_from(&kubeconfig).await;
    SHARED
        .get_or_init(|| async {
            install_crds(&client).await;
            for f in DEPLOY {
                apply_file(&client, &repo().join("deploy").join(f)).await;
            }
        })
        .await;
    Cluster { client, kubeconfig }
}

/// Applies `cryptopass::api::crds()` (server-side, forced) and waits until each is Established.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in cryptopass::api::crds() {
        let name = crd.name_any();
        api.patch(&name, &PatchParams::apply(TEST_MANAGER).force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not Established within 30 s"))
            .unwrap_or_else(|e| panic!("waiting for CRD {name}: {e}"));
    }
}

/// Applies a file of YAML documents.
pub async fn apply_file(client: &Client, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    apply_yaml(client, &text).await;
}

/// Server-side apply (forced, field manager `cryptopass-test`) of every document of a YAML
/// stream, resolving each kind through discovery. Namespaced objects without a namespace go to
/// `default`. Returns the applied objects.
pub async fn apply_yaml(client: &Client, text: &str) -> Vec<DynamicObject> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc).expect("a YAML document");
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject =
            serde_json::from_value(serde_json::to_value(&value).expect("YAML as JSON")).expect("a Kubernetes object");
        let types = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("a valid apiVersion");
        let (ar, caps) = pinned_kind(client, &gvk).await.unwrap_or_else(|e| panic!("discovering {gvk:?}: {e}"));
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                Api::namespaced_with(client.clone(), obj.metadata.namespace.as_deref().unwrap_or("default"), &ar)
            }
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        let name = obj.name_any();
        let applied = api
            .patch(&name, &PatchParams::apply(TEST_MANAGER).force(), &Patch::Apply(&obj))
            .await
            .unwrap_or_else(|e| panic!("applying {} {name}: {e}", types.kind));
        out.push(applied);
    }
    out
}

/// Runs `f` with a fresh admin client on a thread of its own (for `Drop`, which cannot await);
/// failures are ignored, at most 20 s.
pub fn cleanup<F, Fut>(kubeconfig: &Path, f: F)
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let kubeconfig = kubeconfig.to_path_buf();
    let t = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            let Ok(kc) = Kubeconfig::read_from(&kubeconfig) else { return };
            let Ok(config) = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await else {
                return;
            };
            let Ok(client) = Client::try_from(config) else { return };
            let _ = tokio::time::timeout(Duration::from_secs(20), f(client)).await;
        });
    });
    let _ = t.join();
}

/// A namespace of one test, deleted on drop.
pub struct TestNamespace {
    pub name: String,
    kubeconfig: PathBuf,
}

impl TestNamespace {
    pub async fn create(c: &Cluster, prefix: &str) -> TestNamespace {
        let name = unique(&format!("t-{prefix}"));
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("cryptopass-test".to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(c.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        TestNamespace { name, kubeconfig: c.kubeconfig.clone() }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        cleanup(&self.kubeconfig, move |client| async move {
            let _ = Api::<Namespace>::all(client).delete(&name, &DeleteParams::background()).await;
        });
    }
}

/// The release namespace `deploy/namespace.yaml` makes.
pub fn release_namespace() -> &'static str {
    RELEASE_NAMESPACE
}
