//! The gate served by `cryptopass controller --webhook-addr A --webhook-cert-dir D` (the real
//! binary, its least-privilege ServiceAccount): two replicas share one loopback port with
//! SO_REUSEPORT (architecture.md, "Webhooks"), both answer, the leader narrows the shipped
//! configurations to our VMIs, a replica that stops hands over without a refused admission, and
//! with both gone our VMIs' VMIMs are refused while others pass.

mod support;
mod webhook_cluster;
mod webhook_support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

use cryptopass::api::CryptoPassthrough;
use cryptopass::webhook::pki::{self, Material};
use cryptopass::webhook::{VALIDATE_PATH, VALIDATING_WEBHOOK, certs};
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
        let args = ["--webhook-cert-dir".to_string(), certs.display().to_string()];
        Replica::start_with(id, name, webhook, &args, dir)
    }

    /// With self-managed certificates (no `--webhook-cert-dir`) valid for 127.0.0.1, and `args`.
    fn self_managed(id: &Identity, name: &str, webhook: SocketAddr, args: &[&str], dir: &Path) -> Replica {
        let mut all = vec!["--webhook-cert-san".to_string(), "127.0.0.1".to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        Replica::start_with(id, name, webhook, &all, dir)
    }

    fn start_with(id: &Identity, name: &str, webhook: SocketAddr, args: &[String], dir: &Path) -> Replica {
        let metrics = free_addr();
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("a log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("controller")
            .arg("--kubeconfig")
            .arg(&id.kubeconfig)
            .args(["--namespace", RELEASE_NAMESPACE, "--metrics-addr", &metrics.to_string()])
            .args(["--identity", &unique(name), "--webhook-addr", &webhook.to_string()])
            .args(args)
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
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let exited = self.child.as_mut().is_none_or(|c| c.try_wait().ok().flatten().is_some());
            assert!(!exited, "the controller exited:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            if self.get("/readyz").is_some_and(|(c, _)| c == 200) {
                return;
            }
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(std::time::Instant::now() < deadline, "a controller replica not ready within 60 s:\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        }
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

/// In `ns`: passthrough p1 of VM vm1 with migration disabled (refused whatever the placement finds)
/// and vm1 running; in `other`: vm-plain, a VMI without passthrough.
async fn disabled_vm_and_a_plain_one(client: &kube::Client, ns: &str, other: &str) {
    let mut pt = passthrough(ns, "p1", "vm1", &uuid::Uuid::new_v4().to_string());
    pt["spec"]["migration"] = json!({"enabled": false});
    pt["spec"]["placement"] = json!({"nodeSelector": {"cryptopass-test-nowhere": unique("none")}});
    let pt: CryptoPassthrough = serde_json::from_value(pt).expect("a passthrough");
    Api::<CryptoPassthrough>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pt)
        .await
        .expect("created");
    running_vmi(client, ns, "vm1", "nowhere", json!({})).await;
    running_vmi(client, other, "vm-plain", "nowhere", json!({})).await;
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
    disabled_vm_and_a_plain_one(&client, &ns.name, &other.name).await;

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

/// The self-managed Secret, as the admin reads it.
async fn tls_secret(client: &kube::Client) -> Option<Material> {
    let s =
        Api::<Secret>::namespaced(client.clone(), RELEASE_NAMESPACE).get_opt(certs::SECRET).await.expect("a GET")?;
    let data = s.data.unwrap_or_default();
    let text = |k: &str| data.get(k).map(|b| String::from_utf8(b.0.clone()).expect("PEM")).unwrap_or_default();
    Some(Material {
        ca_bundle: text(pki::CA_CERT),
        ca_key: text(pki::CA_KEY),
        cert: text(pki::CERT),
        key: text(pki::KEY),
    })
}

/// No Secret from an earlier run: the leader makes a new one.
async fn without_tls_secret(client: &kube::Client) {
    let api = Api::<Secret>::namespaced(client.clone(), RELEASE_NAMESPACE);
    let _ = api.delete(certs::SECRET, &DeleteParams::default()).await;
    support::eventually("the webhook Secret to be gone", || {
        let api = api.clone();
        async move { api.get_opt(certs::SECRET).await.ok().flatten().is_none().then_some(()) }
    })
    .await;
}

/// The caBundle of both shipped configurations.
async fn ca_bundles(client: &kube::Client) -> (String, String) {
    let bundle = |c: Option<WebhookClientConfig>| {
        c.and_then(|c| c.ca_bundle).map(|b| String::from_utf8(b.0).expect("PEM")).unwrap_or_default()
    };
    let v = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get(cryptopass::webhook::VALIDATING_CONFIGURATION)
        .await
        .expect("validating");
    let m = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(cryptopass::webhook::MUTATING_CONFIGURATION)
        .await
        .expect("mutating");
    (
        bundle(v.webhooks.into_iter().flatten().next().map(|w| w.client_config)),
        bundle(m.webhooks.into_iter().flatten().next().map(|w| w.client_config)),
    )
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).next().expect("a certificate").expect("PEM")
}

/// Namespaces, the shipped configurations (without a caBundle) for them, passthrough p1 of vm1
/// with migration disabled, and vm-plain without one in the other namespace.
struct CertBed {
    ns: TestNamespace,
    other: TestNamespace,
    _registered: Registered,
    addr: SocketAddr,
    off: String,
}

impl CertBed {
    async fn new(c: &support::Cluster, name: &str) -> CertBed {
        let ns = TestNamespace::create(c, name).await;
        let other = TestNamespace::create(c, &format!("{name}-other")).await;
        let client = c.client.clone();
        without_tls_secret(&client).await;
        let addr = free_addr();
        let registered = Registered::install_shipped(c, &format!("{},{}", ns.name, other.name), addr, "").await;
        disabled_vm_and_a_plain_one(&client, &ns.name, &other.name).await;
        let off = format!(
            "admission webhook \"{VALIDATING_WEBHOOK}\" denied the request: CryptoPassthrough p1: migration is \
             disabled (spec.migration.enabled: false)"
        );
        CertBed { ns, other, _registered: registered, addr, off }
    }

    fn ours(&self) -> serde_json::Value {
        vmim(&self.ns.name, "vm1", None, &[])
    }
}

/// Holds the leader Lease for someone else (renewed every second, 5 s long) until released.
async fn hold_leader_lease(client: &kube::Client) -> tokio::task::JoinHandle<()> {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let api = Api::<Lease>::namespaced(client.clone(), RELEASE_NAMESPACE);
    let name = cryptopass::controller::leader::LEASE_NAME;
    let _ = api.delete(name, &DeleteParams::default()).await;
    let now = || MicroTime(k8s_openapi::jiff::Timestamp::now());
    let lease = Lease {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some(unique("someone-else")),
            lease_duration_seconds: Some(5),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            ..LeaseSpec::default()
        }),
    };
    api.create(&PostParams::default(), &lease).await.expect("the leader Lease held by someone else");
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let renew = json!({"spec": {"renewTime": now()}});
            let _ = api.patch(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&renew)).await;
        }
    })
}

#[tokio::test]
async fn serial_without_a_cert_dir_the_leader_makes_the_certificate_and_kube_apiserver_trusts_it() {
    let c = cluster().await;
    let client = c.client.clone();
    let bed = CertBed::new(&c, "gate-certs").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let id = controller_identity(&c).await;

    // Before the Secret exists a replica is not ready and does not listen: here it cannot lead
    // (the Lease is someone else's), so nobody makes the Secret.
    let holder = hold_leader_lease(&client).await;
    let mut r1 = Replica::self_managed(&id, "certs-r1", bed.addr, &[], dir.path());
    let log = r1.log.clone();
    wait_until(Duration::from_secs(60), "the replica's caches to sync", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("not ready until the webhook certificate")
    });
    assert_eq!(r1.get("/readyz").map(|(code, _)| code), Some(503), "ready without a certificate");
    assert!(TcpStream::connect(bed.addr).is_err(), "listening without a certificate");
    assert!(tls_secret(&client).await.is_none());

    // It leads: the Secret, the caBundle, then it is ready and kube-apiserver calls it over TLS.
    holder.abort();
    r1.wait_ready();
    let m = tls_secret(&client).await.expect("the leader made the Secret");
    let state = pki::State::read(&m);
    let (ca, serving) = (state.signer.expect("a CA and its key"), state.serving.expect("a certificate and its key"));
    assert!(serving.signed_by(&ca));
    until_refused(&client, &bed.ours(), &bed.off).await;
    assert_eq!(ca_bundles(&client).await, (m.ca_bundle.clone(), m.ca_bundle.clone()));
    migrate(&client, &vmim(&bed.other.name, "vm-plain", None, &[])).await.expect("other VMIs pass untouched");

    // The caBundle is the leader's own field: the matchConditions (another manager) stay.
    let v = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get(cryptopass::webhook::VALIDATING_CONFIGURATION)
        .await
        .expect("validating");
    let managers: Vec<String> =
        v.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|f| f.manager).collect();
    for m in [certs::FIELD_MANAGER, cryptopass::webhook::scope::FIELD_MANAGER] {
        assert!(managers.iter().any(|x| x == m), "{m} in {managers:?}");
    }

    // A client trusting only the Secret's CA gets the Secret's certificate and an answer.
    let mut conn = Conn::open(bed.addr, &m.ca_bundle).await.expect("trusted");
    assert_eq!(conn.peer, der(&m.cert));
    let (code, r) = conn
        .post(VALIDATE_PATH, &review("CREATE", vmim(&bed.other.name, "vm-plain", None, &[])))
        .await
        .expect("an answer");
    assert_eq!((code, r["response"]["allowed"].clone()), (200, json!(true)));
    r1.signal(libc::SIGTERM);
}

/// What the Secret held over time.
#[derive(Default)]
struct Seen {
    materials: Vec<Material>,
}

impl Seen {
    fn states(&self) -> Vec<pki::State> {
        self.materials.iter().map(pki::State::read).collect()
    }
}

#[tokio::test]
async fn serial_self_managed_certificates_rotate_under_load_without_losing_an_admission() {
    let c = cluster().await;
    let client = c.client.clone();
    let bed = Arc::new(CertBed::new(&c, "gate-rotate").await);
    let dir = tempfile::tempdir().expect("tempdir");
    let id = controller_identity(&c).await;
    // Serving certificates renewed every 40 s, a new CA after 60 s (settled 9 s later), the first
    // one gone from the bundle after 90 s. The last third of a serving certificate's life (20 s)
    // outlasts a leader hand-over (the 15 s Lease), should the Lease change hands under load.
    let short = ["--webhook-cert-validity", "60s", "--webhook-ca-validity", "90s"];
    let mut r1 = Replica::self_managed(&id, "rotate-r1", bed.addr, &short, dir.path());
    let mut r2 = Replica::self_managed(&id, "rotate-r2", bed.addr, &short, dir.path());
    r1.wait_ready();
    r2.wait_ready();
    until_refused(&client, &bed.ours(), &bed.off).await;
    let first = pki::State::read(&tls_secret(&client).await.expect("the Secret"));
    let ca0 = first.signer.clone().expect("a CA");

    // A stream of admissions (three at a time) while the Secret is watched.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watcher = {
        let (client, stop, seen) = (client.clone(), stop.clone(), seen.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                if let Some(m) = tls_secret(&client).await {
                    let mut s = seen.lock().expect("seen");
                    if s.materials.last() != Some(&m) {
                        s.materials.push(m);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (client, stop, bed) = (client.clone(), stop.clone(), bed.clone());
            tokio::spawn(async move {
                let (mut answered, mut failed) = (0usize, Vec::new());
                while !stop.load(Ordering::Acquire) {
                    match migrate_dry(&client, &bed.ours()).await {
                        Err(kube::Error::Api(s)) if s.message == bed.off => answered += 1,
                        other => failed.push(format!("{:?}", other.map(|o| o.data))),
                    }
                }
                (answered, failed)
            })
        })
        .collect();
    // Until a serving certificate of a new CA was served and the first CA left the bundle.
    let rotated = |seen: &Seen| {
        let states = seen.states();
        let new_ca = states.iter().any(|s| s.serving.as_ref().is_some_and(|c| !c.signed_by(&ca0)));
        let dropped = states.last().is_some_and(|s| s.bundle.iter().all(|c| c.subject != ca0.subject));
        new_ca && dropped
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !rotated(&seen.lock().expect("seen")) {
        assert!(std::time::Instant::now() < deadline, "no CA rotation within 180 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Admissions go on for a moment with the new CA alone.
    let after = r1.validations() + r2.validations();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while r1.validations() + r2.validations() < after + 20 {
        assert!(std::time::Instant::now() < deadline, "no admissions after the rotation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Release);
    let _ = watcher.await;
    let (mut answered, mut failed) = (0, Vec::new());
    for w in workers {
        let (a, f) = w.await.expect("a worker");
        answered += a;
        failed.extend(f);
    }
    let certificate_log = |r: &Replica| {
        let text = std::fs::read_to_string(&r.log).unwrap_or_default();
        text.lines().filter(|l| l.contains("certificate") || l.contains("caBundle")).collect::<Vec<_>>().join("\n")
    };
    assert!(
        failed.is_empty(),
        "{} of {} admissions not answered by us: {:?}\nr1:\n{}\nr2:\n{}",
        failed.len(),
        answered + failed.len(),
        &failed[..failed.len().min(5)],
        certificate_log(&r1),
        certificate_log(&r2),
    );
    let states = seen.lock().expect("seen").states();
    let servings: BTreeSet<Vec<u8>> =
        states.iter().filter_map(|s| s.serving.as_ref().map(|c| c.pem.clone().into_bytes())).collect();
    let cas: BTreeSet<Vec<u8>> = states.iter().flat_map(|s| s.bundle.iter().map(|c| c.subject.clone())).collect();
    assert!(servings.len() >= 3 && cas.len() >= 2, "{} serving certificates, {} CAs", servings.len(), cas.len());
    assert!(answered >= 100, "only {answered} admissions");
    eprintln!(
        "{answered} admissions, all answered by us, across {} serving certificates of {} CAs",
        servings.len(),
        cas.len()
    );

    // Both replicas present the Secret's current certificate.
    let (v1, v2) = (r1.validations(), r2.validations());
    for _ in 0..200 {
        let now = tls_secret(&client).await.expect("the Secret");
        let mut conn = Conn::open(bed.addr, &now.ca_bundle).await.expect("trusted by the current bundle");
        let (code, _) = conn.post(VALIDATE_PATH, &review("CREATE", bed.ours())).await.expect("an answer");
        assert_eq!(code, 200);
        let later = tls_secret(&client).await.expect("the Secret");
        assert!(
            conn.peer == der(&now.cert) || conn.peer == der(&later.cert),
            "a replica presents an older certificate"
        );
        if r1.validations() > v1 && r2.validations() > v2 {
            break;
        }
    }
    assert!(r1.validations() > v1 && r2.validations() > v2, "both replicas answered");
    assert_eq!(ca_bundles(&client).await.0, tls_secret(&client).await.expect("the Secret").ca_bundle);
    r1.signal(libc::SIGTERM);
    r2.signal(libc::SIGTERM);
}
