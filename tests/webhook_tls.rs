//! The webhook server over real TLS on loopback (the one socket test of kubewarden's pattern):
//! admission over HTTPS, the certificate of `--webhook-cert-dir` rotated per connection with no
//! request lost, the port bound only once the caches have synced, two servers sharing one port
//! with SO_REUSEPORT.

mod webhook_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use cryptopass::webhook::server::{bind, serve};
use cryptopass::webhook::tls::CertDir;
use cryptopass::webhook::{AdmissionMetrics, Gate, Options, VALIDATE_PATH, router, start};
use webhook_support::*;

fn gate() -> Gate {
    Gate { caches: caches(vec![], vec![], vec![]), metrics: AdmissionMetrics::default() }
}

fn plain_review() -> Value {
    review("CREATE", vmim("ns", "vm-plain", None, &[]))
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(addr: SocketAddr, dir: &std::path::Path) -> Running {
        let listener = bind(addr).expect("bound");
        let addr = listener.local_addr().expect("an address");
        let certs = Arc::new(CertDir::load(dir).expect("a certificate"));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, certs, router(gate()), async move { drop(rx.await) }));
        Running { addr, stop: Some(tx), task }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task).await.expect("stopped in time").expect("ran");
    }
}

async fn admitted(conn: &mut Conn) -> Result<(), String> {
    let (code, r) = conn.post(VALIDATE_PATH, &plain_review()).await?;
    assert_eq!((code, r["response"]["allowed"].clone()), (200, Value::Bool(true)), "{r}");
    Ok(())
}

#[tokio::test]
async fn admission_over_tls_survives_a_certificate_rotation_and_a_bad_pair_and_stops_cleanly() {
    let pki = Pki::new("cryptopass test CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let one = pki.serving("one");
    one.install(dir.path());
    let server = Running::start("127.0.0.1:0".parse().expect("addr"), dir.path());

    let mut old = Conn::open(server.addr, &pki.ca_pem()).await.expect("a connection");
    assert_eq!(old.peer, one.der);
    admitted(&mut old).await.expect("an answer");

    // Rotation: the next connection presents the new certificate; the open one keeps working.
    let two = pki.serving("two");
    two.install(dir.path());
    let mut new = Conn::open(server.addr, &pki.ca_pem()).await.expect("a connection");
    assert_eq!(new.peer, two.der, "a new connection gets the rotated certificate");
    admitted(&mut new).await.expect("an answer");
    admitted(&mut old).await.expect("the open connection still answers");

    // A pair that does not load (key of another certificate): the last good one stays in use.
    let three = pki.serving("three");
    std::fs::write(dir.path().join("tls.crt"), &three.cert).expect("write");
    let mut conn = Conn::open(server.addr, &pki.ca_pem()).await.expect("a connection");
    assert_eq!(conn.peer, two.der, "a mismatched pair is not used");
    admitted(&mut conn).await.expect("an answer");
    three.install(dir.path());
    let conn = Conn::open(server.addr, &pki.ca_pem()).await.expect("a connection");
    assert_eq!(conn.peer, three.der, "once the pair matches it is used");

    // A certificate of another CA is not trusted by the client: the server is what it says.
    let other = Pki::new("another CA");
    assert!(Conn::open(server.addr, &other.ca_pem()).await.is_err());

    // Stop: no new connection, and idle keep-alive connections are closed.
    let addr = server.addr;
    server.stop().await;
    assert!(Conn::open(addr, &pki.ca_pem()).await.is_err(), "the port is closed");
    assert!(admitted(&mut old).await.is_err(), "an idle keep-alive connection was closed");
}

#[tokio::test]
async fn a_start_without_a_usable_certificate_fails_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options { addr: "127.0.0.1:0".parse().expect("addr"), cert_dir: dir.path().to_path_buf() };
    let err = start(&opts, gate(), || true).expect_err("no certificate, no start");
    assert!(err.to_string().contains("tls.crt"), "{err}");
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").expect("write");
    std::fs::write(dir.path().join("tls.key"), "not a key").expect("write");
    let err = start(&opts, gate(), || true).expect_err("garbage, no start");
    assert!(err.to_string().contains("serving certificate"), "{err}");
}

#[tokio::test]
async fn the_port_is_bound_only_once_the_caches_have_synced() {
    let pki = Pki::new("cryptopass test CA");
    let dir = tempfile::tempdir().expect("tempdir");
    pki.serving("one").install(dir.path());
    let addr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
    let synced = Arc::new(AtomicBool::new(false));
    let flag = synced.clone();
    let task =
        start(&Options { addr, cert_dir: dir.path().to_path_buf() }, gate(), move || flag.load(Ordering::Acquire))
            .expect("started");
    // Not bound while the caches are not synced: kube-apiserver gets "connection refused".
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "bound before the caches synced");
        tokio::task::yield_now().await;
    }
    synced.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match Conn::open(addr, &pki.ca_pem()).await {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < deadline, "not serving 10 s after the caches synced: {e}"),
        }
        tokio::task::yield_now().await;
    };
    admitted(&mut conn).await.expect("an answer");
    task.abort();
}

#[tokio::test]
async fn two_servers_share_one_port_and_either_one_alone_serves_it() {
    let pki = Pki::new("cryptopass test CA");
    let (d1, d2) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let (one, two) = (pki.serving("one"), pki.serving("two"));
    one.install(d1.path());
    two.install(d2.path());
    let s1 = Running::start("127.0.0.1:0".parse().expect("addr"), d1.path());
    let s2 = Running::start(s1.addr, d2.path());
    assert_eq!(s1.addr, s2.addr);
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        let mut c = Conn::open(s1.addr, &pki.ca_pem()).await.expect("a connection");
        admitted(&mut c).await.expect("an answer");
        seen.insert(if c.peer == one.der { "one" } else { "two" });
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "the kernel spreads connections over both servers: {seen:?}");
    let addr = s1.addr;
    s1.stop().await;
    for _ in 0..20 {
        let mut c = Conn::open(addr, &pki.ca_pem()).await.expect("the other server still serves");
        assert_eq!(c.peer, two.der);
        admitted(&mut c).await.expect("an answer");
    }
    s2.stop().await;
}

/// kube-apiserver's client offers h2 in ALPN: it gets HTTP/2, and many admissions at once share
/// one connection (one TLS handshake).
#[tokio::test]
async fn a_client_offering_h2_gets_http2_with_concurrent_admissions_on_one_connection() {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let pki = Pki::new("cryptopass test CA");
    let dir = tempfile::tempdir().expect("tempdir");
    pki.serving("one").install(dir.path());
    let server = Running::start("127.0.0.1:0".parse().expect("addr"), dir.path());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_pem().as_bytes()) {
        roots.add(c.expect("PEM")).expect("a root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.addr).await.expect("connected");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(server.addr.ip().into()), tcp)
        .await
        .expect("a TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.expect("HTTP/2");
    tokio::spawn(conn);
    let body = plain_review().to_string();
    let answers = (0..20).map(|_| {
        let (mut send, body) = (send.clone(), body.clone());
        async move {
            let req = hyper::Request::post(format!("https://{}{VALIDATE_PATH}", server.addr))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("a request");
            send.ready().await.expect("ready");
            let resp = send.send_request(req).await.expect("an answer");
            assert_eq!(resp.version(), hyper::Version::HTTP_2);
            let code = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
            let r: Value = serde_json::from_slice(&bytes).expect("JSON");
            (code, r["response"]["allowed"].clone())
        }
    });
    for a in futures::future::join_all(answers).await {
        assert_eq!(a, (200, Value::Bool(true)));
    }
    server.stop().await;
}
