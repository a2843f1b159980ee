//! The gate against the shared control plane: our two configurations (deploy/webhooks.yaml)
//! registered under unique names for one test namespace with `clientConfig.url` and a `caBundle`,
//! the webhook server in this process on its own watch caches, and the KubeVirt objects as
//! virt-api and virt-handler would leave them (no KubeVirt runs here: testbed.md).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use cryptopass::api::CryptoPassthrough;
use cryptopass::webhook::tls::{CertDir, Certificates};
use cryptopass::webhook::watch::Watches;
use cryptopass::webhook::{AdmissionMetrics, Gate, start_with};

use crate::support::cluster::cleanup;
use crate::support::{Cluster, TEST_MANAGER, eventually, repo, suffix};
use crate::webhook_support::Pki;

pub use crate::support::kubevirt::{vmi_resource, vmim_resource};

/// The webhook server of this test, on its own caches (the controller is not needed: the tests
/// write the passthroughs' status themselves).
pub struct GateServer {
    pub addr: SocketAddr,
    pub pki: Pki,
    pub watches: Watches,
    metrics: AdmissionMetrics,
    registry: Registry,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl GateServer {
    /// Serves on a free loopback port once its caches (passthroughs and VMIs of `ns`, Nodes) synced.
    pub async fn start(client: &Client, ns: &str) -> GateServer {
        GateServer::start_with(client, ns, |c| c).await
    }

    /// The same with the certificates of its directory as `certs` hands them out.
    pub async fn start_with(
        client: &Client,
        ns: &str,
        certs: impl FnOnce(Arc<CertDir>) -> Arc<dyn Certificates>,
    ) -> GateServer {
        let pki = Pki::new("cryptopass webhook test CA");
        let dir = tempfile::tempdir().expect("tempdir");
        pki.serving("cryptopass-webhook").install(dir.path());
        let addr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let watches = Watches::start(client.clone(), Some(ns));
        let metrics = AdmissionMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let gate = Gate { caches: watches.caches.clone(), metrics: metrics.clone() };
        let dir_certs = Arc::new(CertDir::load(dir.path()).expect("the webhook certificate"));
        let task = start_with(addr, certs(dir_certs), gate, watches.synced());
        eventually("the webhook server to listen", || async move {
            tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
        })
        .await;
        GateServer { addr, pki, watches, metrics, registry, task: Some(task), _dir: dir }
    }

    /// Every replica down: the port refuses connections, open ones are gone.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        let addr = self.addr;
        eventually("the webhook port to refuse connections", || async move {
            tokio::net::TcpStream::connect(addr).await.is_err().then_some(())
        })
        .await;
    }

    /// `cryptopass_admission_requests_total{webhook,decision}` of this server.
    pub fn requests(&self, webhook: &str, decision: &str) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("an exposition");
        let prefix = format!("cryptopass_admission_requests_total{{webhook=\"{webhook}\",decision=\"{decision}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |n| n.trim().parse().expect("a count"))
    }

    /// The upper bound of the `cryptopass_admission_duration_seconds{webhook}` bucket that holds
    /// quantile `q` of this server's answers.
    pub fn duration_bucket(&self, webhook: &str, q: f64) -> Duration {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("an exposition");
        let prefix = "cryptopass_admission_duration_seconds_bucket{le=\"";
        let suffix = format!("\",webhook=\"{webhook}\"}}");
        let buckets: Vec<(f64, u64)> = text
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(prefix)?;
                let (le, n) = rest.split_once(&suffix)?;
                Some((le.parse().unwrap_or(f64::INFINITY), n.trim().parse().ok()?))
            })
            .collect();
        let total = buckets.last().map_or(0, |b| b.1);
        let want = (total as f64 * q).ceil() as u64;
        buckets
            .iter()
            .find(|(_, n)| *n >= want)
            .map_or(Duration::ZERO, |(le, _)| Duration::from_secs_f64(le.min(3600.0)))
    }

    /// Waits until the gate's cache holds `obj` at least at its resourceVersion.
    pub async fn cached<K>(&self, store: &Store<K>, obj: &K)
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let key = ObjectRef::from_obj(obj);
        let want: u64 = obj.meta().resource_version.as_deref().and_then(|v| v.parse().ok()).expect("a resourceVersion");
        let what = format!("the gate's cache to hold {key} at resourceVersion {want}");
        eventually(&what, || {
            let got =
                store.get(&key).and_then(|o| o.meta().resource_version.as_deref().and_then(|v| v.parse::<u64>().ok()));
            async move { got.filter(|g| *g >= want).map(|_| ()) }
        })
        .await;
    }
}

impl Drop for GateServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Our two configurations from deploy/webhooks.yaml, under names of this test, for namespace
/// `ns` only, calling `https://ADDR/…` with our CA; deleted on drop.
pub struct Registered {
    pub validate: String,
    pub mutate: String,
    kubeconfig: PathBuf,
}

fn shipped() -> (MutatingWebhookConfiguration, ValidatingWebhookConfiguration) {
    let path = repo().join("deploy/webhooks.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/webhooks.yaml");
    let (mut m, mut v) = (None, None);
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc).expect("a YAML document");
        match value["kind"].as_str() {
            Some("MutatingWebhookConfiguration") => m = Some(serde_json::from_value(value).expect("typed")),
            Some("ValidatingWebhookConfiguration") => v = Some(serde_json::from_value(value).expect("typed")),
            other => panic!("unexpected document {other:?} in deploy/webhooks.yaml"),
        }
    }
    (m.expect("the mutating configuration"), v.expect("the validating configuration"))
}

/// `ca` empty: no caBundle (the controller's leader puts its own).
fn client_config(addr: SocketAddr, path: &str, ca: &str) -> WebhookClientConfig {
    WebhookClientConfig {
        url: Some(format!("https://{addr}{path}")),
        ca_bundle: (!ca.is_empty()).then(|| ByteString(ca.as_bytes().to_vec())),
        service: None,
    }
}

/// Only the namespaces `ns` (a comma-separated list): tests never see each other's VMIMs.
fn scoped(ns: &str) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: "In".into(),
            values: Some(ns.split(',').map(str::to_string).collect()),
        }]),
        ..LabelSelector::default()
    })
}

impl Registered {
    pub async fn install(c: &Cluster, ns: &str, server: &GateServer, expression: &str) -> Registered {
        Registered::install_at(c, ns, server.addr, &server.pki.ca_pem(), expression).await
    }

    /// The same for a server at `addr` trusted through `ca`.
    pub async fn install_at(c: &Cluster, ns: &str, addr: SocketAddr, ca: &str, expression: &str) -> Registered {
        Registered::create(c, ns, addr, ca, expression, Some(&suffix())).await
    }

    /// Under the shipped names (for the controller's leader, which patches exactly those): only
    /// for tests in the serial group, which never run beside another user of these names. `ns`
    /// may list several namespaces, comma-separated.
    pub async fn install_shipped(c: &Cluster, ns: &str, addr: SocketAddr, ca: &str) -> Registered {
        let dp = DeleteParams::default();
        let _ = Api::<MutatingWebhookConfiguration>::all(c.client.clone())
            .delete(cryptopass::webhook::MUTATING_CONFIGURATION, &dp)
            .await;
        let _ = Api::<ValidatingWebhookConfiguration>::all(c.client.clone())
            .delete(cryptopass::webhook::VALIDATING_CONFIGURATION, &dp)
            .await;
        Registered::create(c, ns, addr, ca, cryptopass::webhook::scope::NOTHING, None).await
    }

    async fn create(
        c: &Cluster,
        ns: &str,
        addr: SocketAddr,
        ca: &str,
        expression: &str,
        suffix: Option<&str>,
    ) -> Registered {
        let (mut m, mut v) = shipped();
        if let Some(s) = suffix {
            m.metadata.name = Some(format!("{}-{s}", m.metadata.name.as_deref().expect("a name")));
            v.metadata.name = Some(format!("{}-{s}", v.metadata.name.as_deref().expect("a name")));
        }
        for w in m.webhooks.iter_mut().flatten() {
            w.client_config = client_config(addr, "/mutate-vmim", ca);
            w.namespace_selector = scoped(ns);
        }
        for w in v.webhooks.iter_mut().flatten() {
            w.client_config = client_config(addr, "/validate-vmim", ca);
            w.namespace_selector = scoped(ns);
        }
        let pp = PostParams { field_manager: Some(TEST_MANAGER.into()), ..PostParams::default() };
        let mapi: Api<MutatingWebhookConfiguration> = Api::all(c.client.clone());
        let vapi: Api<ValidatingWebhookConfiguration> = Api::all(c.client.clone());
        let r = Registered {
            validate: v.metadata.name.clone().expect("a name"),
            mutate: m.metadata.name.clone().expect("a name"),
            kubeconfig: c.kubeconfig.clone(),
        };
        mapi.create(&pp, &m).await.expect("registering the mutating webhook");
        vapi.create(&pp, &v).await.expect("registering the validating webhook");
        r.set_expression(&c.client, expression).await;
        r
    }

    /// Sets our match condition in both, as the leader does (server-side apply, own field manager).
    pub async fn set_expression(&self, client: &Client, expression: &str) {
        self.set_expression_as(client, cryptopass::webhook::scope::FIELD_MANAGER, expression).await;
    }

    /// The same under another field manager (e.g. `helm`).
    pub async fn set_expression_as(&self, client: &Client, manager: &str, expression: &str) {
        let condition =
            vec![MatchCondition { name: cryptopass::webhook::scope::CONDITION.into(), expression: expression.into() }];
        let mapi: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let vapi: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let pp = PatchParams::apply(manager).force();
        let m = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": self.mutate},
            "webhooks": [{"name": cryptopass::webhook::MUTATING_WEBHOOK, "matchConditions": condition}],
        });
        let v = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.validate},
            "webhooks": [{"name": cryptopass::webhook::VALIDATING_WEBHOOK, "matchConditions": condition}],
        });
        mapi.patch(&self.mutate, &pp, &Patch::Apply(&m)).await.expect("the mutating matchConditions");
        vapi.patch(&self.validate, &pp, &Patch::Apply(&v)).await.expect("the validating matchConditions");
    }
}

impl Registered {
    /// Our match condition's expression in each configuration: (validating, mutating).
    pub async fn expressions(&self, client: &Client) -> (Option<String>, Option<String>) {
        let ours = |conds: Option<Vec<MatchCondition>>| {
            conds.into_iter().flatten().find(|c| c.name == cryptopass::webhook::scope::CONDITION).map(|c| c.expression)
        };
        let v =
            Api::<ValidatingWebhookConfiguration>::all(client.clone()).get(&self.validate).await.expect("validating");
        let m = Api::<MutatingWebhookConfiguration>::all(client.clone()).get(&self.mutate).await.expect("mutating");
        (
            ours(v.webhooks.into_iter().flatten().next().and_then(|w| w.match_conditions)),
            ours(m.webhooks.into_iter().flatten().next().and_then(|w| w.match_conditions)),
        )
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let (m, v) = (self.mutate.clone(), self.validate.clone());
        cleanup(&self.kubeconfig, move |client| async move {
            let dp = DeleteParams::default();
            let _ = Api::<MutatingWebhookConfiguration>::all(client.clone()).delete(&m, &dp).await;
            let _ = Api::<ValidatingWebhookConfiguration>::all(client).delete(&v, &dp).await;
        });
    }
}

/// A VMI as the real CRD accepts it, with the VM's nodeSelector, then Running on `node` (what
/// virt-handler writes; a VMI has no status subresource). Returns the object as stored.
pub async fn running_vmi(client: &Client, ns: &str, name: &str, node: &str, selector: Value) -> DynamicObject {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &vmi_resource());
    let vmi: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "architecture": "s390x", "nodeSelector": selector,
            "domain": {"devices": {}, "resources": {"requests": {"memory": "1Gi"}}},
        },
    }))
    .expect("a VMI");
    api.create(&PostParams::default(), &vmi).await.unwrap_or_else(|e| panic!("creating VMI {ns}/{name}: {e}"));
    let status = json!({"status": {"phase": "Running", "nodeName": node,
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "LiveMigratable", "status": "True"}]}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap_or_else(|e| panic!("VMI status: {e}"))
}

/// A passthrough with the status the test writes (status subresource), as stored.
pub async fn passthrough_with_status(client: &Client, ns: &str, pt: Value, status: Value) -> CryptoPassthrough {
    let api: Api<CryptoPassthrough> = Api::namespaced(client.clone(), ns);
    let pt: CryptoPassthrough = serde_json::from_value(pt).expect("a CryptoPassthrough");
    let name = pt.metadata.name.clone().expect("a name");
    api.create(&PostParams { field_manager: Some(TEST_MANAGER.into()), ..PostParams::default() }, &pt)
        .await
        .unwrap_or_else(|e| panic!("creating passthrough {ns}/{name}: {e}"));
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": status})))
        .await
        .unwrap_or_else(|e| panic!("status of passthrough {ns}/{name}: {e}"))
}

/// Creates a VMIM through kube-apiserver as virt-api does after `virtctl migrate`.
pub async fn migrate(client: &Client, vmim: &Value) -> Result<DynamicObject, kube::Error> {
    create_vmim(client, vmim, false).await
}

/// The same with `dryRun=All` (`virtctl migrate --dry-run`): admission runs, nothing is stored.
pub async fn migrate_dry(client: &Client, vmim: &Value) -> Result<DynamicObject, kube::Error> {
    create_vmim(client, vmim, true).await
}

async fn create_vmim(client: &Client, vmim: &Value, dry_run: bool) -> Result<DynamicObject, kube::Error> {
    let ns = vmim["metadata"]["namespace"].as_str().expect("a namespace");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &vmim_resource());
    let obj: DynamicObject = serde_json::from_value(vmim.clone()).expect("a VMIM");
    api.create(&PostParams { dry_run, ..PostParams::default() }, &obj).await
}

/// The message kube-apiserver returns for a refused create.
pub fn refusal(r: Result<DynamicObject, kube::Error>) -> String {
    match r {
        Ok(o) => panic!("expected a refusal, the VMIM was created: {:?}", o.data),
        Err(kube::Error::Api(s)) => s.message.clone(),
        Err(e) => panic!("expected a refusal, got {e}"),
    }
}

/// Polls until the webhooks are in effect (kube-apiserver's configuration informer).
pub async fn until_refused(client: &Client, vmim: &Value, expected: &str) {
    let (client, vmim) = (client.clone(), vmim.clone());
    let what = format!("kube-apiserver to refuse with {expected:?}");
    let limit = Duration::from_secs(30);
    crate::support::eventually_within(limit, &what, || {
        let (client, vmim) = (client.clone(), vmim.clone());
        async move {
            match migrate_dry(&client, &vmim).await {
                Err(kube::Error::Api(s)) if s.message == expected => Some(()),
                _ => None,
            }
        }
    })
    .await;
}
