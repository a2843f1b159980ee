//! The gate served by `cryptopass controller --webhook-addr A --webhook-cert-dir D` (the real
//! binary, its least-privilege ServiceAccount): two replicas share one loopback port with
//! SO_REUSEPORT (architecture.md, "Webhooks"), both answer, the leader narrows the shipped
//! configurations to our VMIs, a replica that stops hands over without a refused admission, and
//! with both gone our VMIs' VMIMs are refused while others pass.

mod support;
mod webhook_cluster;
mod webhook_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::{Api, PostParams};
use serde_json::json;

use cryptopass::api::CryptoPassthrough;
use cryptopass::webhook::{VALIDATE_PATH, VALIDATING_WEBHOOK};
use support::{Identity, RELEASE_NAMESPACE, TestNamespace, cluster, controller_identity, unique, wait_until};
use webhook_cluster::*;
use webhook_support::{Conn, Pki, passthrough, review, vmim};

const BIN: &str = env!("CARGO_BIN_EXE_cryptopass");

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port")
}

/// One `cryptopass controller` process with the webhook flags.
struct Replica {
    child: Option<Child>,
    metrics: SocketAddr,
    log: std::path::PathBuf,
}

impl Replica {
    fn start(id: &Identity, name: &str, webhook: SocketAddr, certs: &Path, dir: &Path) -> Replica {
        let metrics = free_addr();
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("a log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("controller")
            .arg("--kubeconfig")
            .arg(&id.kubeconfig)
            .args(["--namespace", RELEASE_NAMESPACE, "--metrics-addr", &metrics.to_string()])
            .args(["--identity", &unique(name), "--webhook-addr", &webhook.to_string()])
            .arg("--webhook-cert-dir")
            .arg(certs)
            .env("CRYPTOPASS_LOG", "info,kube=warn,tower=warn,hyper=warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("starting the controller");
        Replica { child: Some(child), metrics, log }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let code = out.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
    }

    fn wait_ready(&mut self) {
        let log = self.log.clone();
        wait_until(Duration::from_secs(60), "a controller replica to be ready", || {
            let exited = self.child.as_mut().is_none_or(|c| c.try_wait().ok().flatten().is_some());
            assert!(!exited, "the controller exited:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            self.get("/readyz").is_some_and(|(c, _)| c == 200)
        });
    }

    /// `cryptopass_admission_requests_total{webhook="validate"}` over all decisions.
    fn validations(&self) -> u64 {
        let body = self.get("/metrics").map(|(_, b)| b).unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with("cryptopass_admission_requests_total{webhook=\"validate\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    fn signal(&mut self, sig: i32) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(child.id() as i32, sig) };
            let _ = child.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

#[tokio::test]
async fn serial_two_controller_replicas_serve_the_gate_on_one_port_and_hand_over_without_a_refusal() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c, "gate-ha").await;
    // VMIs without passthrough live in a namespace of their own: however the leader has to widen
    // the matchConditions (kube-apiserver's CEL size limit, with many passthroughs in the cluster),
    // a namespace without passthroughs stays out.
    let other = TestNamespace::create(&c, "gate-ha-other").await;
    let client = c.client.clone();
    let pki = Pki::new("cryptopass webhook test CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).expect("a cert dir");
    pki.serving("cryptopass-webhook").install(&certs);
    let addr = free_addr();
    let scope = format!("{},{}", ns.name, other.name);
    let _registered = Registered::install_shipped(&c, &scope, addr, &pki.ca_pem()).await;

    // A VM whose migration is disabled: refused whatever the controller's placement finds.
    let mut pt = passthrough(&ns.name, "p1", "vm1", &uuid::Uuid::new_v4().to_string());
    pt["spec"]["migration"] = json!({"enabled": false});
    pt["spec"]["placement"] = json!({"nodeSelector": {"cryptopass-test-nowhere": unique("none")}});
    let pt: CryptoPassthrough = serde_json::from_value(pt).expect("a passthrough");
    Api::<CryptoPassthrough>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &pt)
        .await
        .expect("created");
    running_vmi(&client, &ns.name, "vm1", "nowhere", json!({})).await;
    running_vmi(&client, &other.name, "vm-plain", "nowhere", json!({})).await;

    let id = controller_identity(&c).await;
    let mut r1 = Replica::start(&id, "gate-r1", addr, &certs, dir.path());
    let mut r2 = Replica::start(&id, "gate-r2", addr, &certs, dir.path());
    r1.wait_ready();
    r2.wait_ready();

    // The leader puts vm1 into the shipped configurations' matchConditions: then kube-apiserver
    // calls us for it.
    let off = format!(
        "admission webhook \"{VALIDATING_WEBHOOK}\" denied the request: CryptoPassthrough p1: migration is disabled \
         (spec.migration.enabled: false)"
    );
    until_refused(&client, &vmim(&ns.name, "vm1", None, &[]), &off).await;

    // Both replicas serve the one port: new connections reach either.
    for _ in 0..200 {
        let mut conn = Conn::open(addr, &pki.ca_pem()).await.expect("a connection");
        let (code, r) =
            conn.post(VALIDATE_PATH, &review("CREATE", vmim(&ns.name, "vm1", None, &[]))).await.expect("an answer");
        assert_eq!((code, r["response"]["allowed"].clone()), (200, json!(false)));
        if r1.validations() > 0 && r2.validations() > 0 {
            break;
        }
    }
    assert!(r1.validations() > 0 && r2.validations() > 0, "both replicas answered");

    // A replica stops (rolling update): a stream of admissions across it, every one answered by us.
    let mut answered = 0;
    for i in 0..60 {
        if i == 20 {
            r1.signal(libc::SIGTERM);
        }
        let got = refusal(migrate_dry(&client, &vmim(&ns.name, "vm1", None, &[])).await);
        assert_eq!(got, off, "admission {i} across the stop of a replica");
        answered += 1;
    }
    assert_eq!(answered, 60);

    // Every replica down: our VMI's VMIM is refused (failurePolicy Fail), another VMI's is not.
    // (A clean stop: it releases the leader Lease for the next test at once.)
    r2.signal(libc::SIGTERM);
    support::eventually("kube-apiserver to find no replica", || {
        let (client, v) = (client.clone(), vmim(&ns.name, "vm1", None, &[]));
        async move {
            match migrate_dry(&client, &v).await {
                Err(kube::Error::Api(s)) if s.message.contains("failed calling webhook") => Some(()),
                _ => None,
            }
        }
    })
    .await;
    migrate(&client, &vmim(&other.name, "vm-plain", None, &[])).await.expect("not blocked by our outage");
}
