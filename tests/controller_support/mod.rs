//! What the controller's integration tests need beyond `tests/support`: the controller as a real
//! process of our binary with its own least-privilege identity, passthroughs, and VMIs whose
//! status the test writes (no virt-handler runs: testbed.md).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

use cryptopass::api::{CryptoPassthrough, condition::find};

use crate::support::{Cluster, Identity, RELEASE_NAMESPACE, TEST_MANAGER, controller_identity, wait_until};

pub mod migration;

pub const BIN: &str = env!("CARGO_BIN_EXE_cryptopass");

fn spawn(cmd: &mut Command) -> Child {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port")
}

/// `cryptopass controller` as the ServiceAccount `cryptopass-controller` (deploy/ RBAC).
pub struct ControllerProcess {
    pub identity_name: String,
    pub metrics_addr: SocketAddr,
    pub log: PathBuf,
    child: Option<Child>,
    id: Identity,
    _dir: tempfile::TempDir,
}

impl ControllerProcess {
    pub async fn start(c: &Cluster, name: &str) -> ControllerProcess {
        let id = controller_identity(c).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = ControllerProcess {
            identity_name: format!("{name}-{}", crate::support::suffix()),
            metrics_addr: free_addr(),
            log: dir.path().join("controller.log"),
            child: None,
            id,
            _dir: dir,
        };
        p.launch();
        p
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("controller log");
        self.child = Some(spawn(
            Command::new(BIN)
                .arg("controller")
                .arg("--kubeconfig")
                .arg(&self.id.kubeconfig)
                .args(["--namespace", RELEASE_NAMESPACE, "--metrics-addr", &self.metrics_addr.to_string()])
                .args(["--identity", &self.identity_name])
                .env("CRYPTOPASS_LOG", "info,kube=warn,tower=warn,hyper=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log),
        ));
    }

    /// SIGTERM and wait (a clean stop releases the leader Lease).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL: a crash, the Lease stays held until it expires.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` on the metrics address: (status code, body).
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.metrics_addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let code = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((code, body))
    }

    /// Waits for `/readyz` to answer 200 (every watch cache synced).
    pub fn wait_ready(&mut self) {
        let what = format!("the controller {} to be ready", self.identity_name);
        wait_until(Duration::from_secs(60), &what, || {
            assert!(self.running(), "the controller exited:\n{}", self.log_text());
            self.http_get("/readyz").is_some_and(|(c, _)| c == 200)
        });
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

pub use crate::support::kubevirt::vmi_resource;

/// A VMI as the real KubeVirt CRD accepts it (no virt-api here, so nothing defaults it).
pub async fn create_vmi(client: &Client, ns: &str, name: &str) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &vmi_resource());
    let vmi: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"architecture": "s390x", "domain": {"devices": {}, "resources": {"requests": {"memory": "1Gi"}}}},
    }))
    .expect("a VMI");
    api.create(&PostParams::default(), &vmi).await.unwrap_or_else(|e| panic!("creating VMI {ns}/{name}: {e}"));
}

/// What virt-handler would write (a VMI has no status subresource): Running on `node`.
pub async fn set_vmi_running(client: &Client, ns: &str, name: &str, node: &str, live_migratable: Option<(&str, &str)>) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &vmi_resource());
    let mut conditions = vec![json!({"type": "Ready", "status": "True"})];
    if let Some((status, reason)) = live_migratable {
        conditions
            .push(json!({"type": "LiveMigratable", "status": status, "reason": reason, "message": "set by the test"}));
    }
    let patch = json!({"status": {"phase": "Running", "nodeName": node, "conditions": conditions}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap_or_else(|e| panic!("VMI status: {e}"));
}

/// A passthrough's spec: `adapters` × `domains` (control domains = domains) for VM `vm`, on the
/// nodes carrying `selector`.
pub fn spec(
    vm: &str,
    adapters: &[u8],
    domains: &[u8],
    standby: serde_json::Value,
    selector: &[(&str, &str)],
) -> serde_json::Value {
    let selector: serde_json::Map<String, serde_json::Value> =
        selector.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({
        "adapters": adapters, "domains": domains, "controlDomains": domains, "vmName": vm,
        "placement": {"nodeSelector": selector, "standby": standby},
    })
}

pub async fn create_passthrough(client: &Client, ns: &str, name: &str, spec: serde_json::Value) -> CryptoPassthrough {
    let pt: CryptoPassthrough = serde_json::from_value(json!({
        "apiVersion": "crypto.s390x.dev/v1alpha1",
        "kind": "CryptoPassthrough",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .expect("a CryptoPassthrough");
    Api::<CryptoPassthrough>::namespaced(client.clone(), ns)
        .create(&PostParams { field_manager: Some(TEST_MANAGER.into()), ..PostParams::default() }, &pt)
        .await
        .unwrap_or_else(|e| panic!("creating passthrough {ns}/{name}: {e}"))
}

/// Polls the passthrough until `f` holds (deadline of `support::eventually`).
pub async fn passthrough_until(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    f: impl Fn(&CryptoPassthrough) -> bool,
) -> CryptoPassthrough {
    let f = &f;
    crate::support::eventually(what, || async move { get_passthrough(client, ns, name).await.filter(|p| f(p)) }).await
}

/// The `Conflict` (or other) condition's message.
pub fn condition_message(pt: &CryptoPassthrough, type_: &str) -> String {
    pt.status
        .as_ref()
        .and_then(|s| find(&s.conditions, type_))
        .map(|c| format!("{}: {}", c.reason, c.message))
        .unwrap_or_default()
}

/// Whether `node`'s CryptoNode holds an entry of the passthrough with uid `uid`.
pub async fn has_entry(client: &Client, node: &str, uid: &str) -> bool {
    Api::<cryptopass::api::CryptoNode>::all(client.clone())
        .get_opt(node)
        .await
        .ok()
        .flatten()
        .is_some_and(|c| c.spec.mdevs.iter().any(|m| m.passthrough.as_ref().is_some_and(|p| p.uid == uid)))
}

/// The prepared label of `uuid` on `node`.
pub async fn labeled(client: &Client, node: &str, uuid: &str) -> bool {
    let key = cryptopass::api::prepared_label(uuid);
    Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get_opt(node)
        .await
        .ok()
        .flatten()
        .and_then(|n| n.metadata.labels)
        .is_some_and(|l| l.get(&key).is_some_and(|v| v == "true"))
}

pub async fn get_passthrough(client: &Client, ns: &str, name: &str) -> Option<CryptoPassthrough> {
    Api::<CryptoPassthrough>::namespaced(client.clone(), ns).get_opt(name).await.ok().flatten()
}

pub async fn delete_passthrough(client: &Client, ns: &str, name: &str) {
    Api::<CryptoPassthrough>::namespaced(client.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting {ns}/{name}: {e}"));
}

pub fn condition_is(pt: &CryptoPassthrough, type_: &str, status: &str) -> bool {
    pt.status.as_ref().and_then(|s| find(&s.conditions, type_)).is_some_and(|c| c.status == status)
}

/// The status entry of a node.
pub fn node_entry<'a>(pt: &'a CryptoPassthrough, node: &str) -> Option<&'a cryptopass::api::NodeVerdict> {
    pt.status.as_ref()?.nodes.iter().find(|n| n.name == node)
}

/// `kubectl wait --for=condition=<c>` on a passthrough, as a user would.
pub fn kubectl_wait(
    kubeconfig: &std::path::Path,
    ns: &str,
    name: &str,
    condition: &str,
    timeout_s: u32,
) -> (bool, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", ns, "wait", &format!("--for=condition={condition}"), &format!("cryptopassthrough/{name}")])
        .arg(format!("--timeout={timeout_s}s"))
        .output()
        .unwrap_or_else(|e| panic!("running kubectl (PATH from the test bed's env): {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The simulator's writes numbered above `since` whose path or data names `uuid`.
pub fn writes_about(host: &crate::support::SimAgent, uuid: &str, since: u64) -> Vec<String> {
    let reply = host.ctl(json!({"op": "writes"}));
    let log = reply.writes.and_then(|w| w.as_array().cloned()).unwrap_or_default();
    log.iter()
        .filter(|w| w["n"].as_u64().is_some_and(|n| n > since))
        .filter(|w| w.to_string().contains(uuid))
        .map(|w| w.to_string())
        .collect()
}
