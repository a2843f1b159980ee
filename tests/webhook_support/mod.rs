//! What the webhook tests share: AdmissionReviews and VMIMs as kube-apiserver and virt-api make
//! them, passthroughs with a written status, in-memory caches, a test PKI (rcgen) and an HTTPS
//! client that trusts it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

use cryptopass::api::{CryptoPassthrough, prepared_label};
use cryptopass::controller::kubevirt::Vmi;
use cryptopass::webhook::Caches;

/// Who creates VMIMs after `virtctl migrate` (kubevirt.md §1).
pub const VIRT_API: &str = "system:serviceaccount:kubevirt:kubevirt-apiserver";
pub const UUID: &str = "0b1c2d3e-4f50-4a61-8b72-9c8d7e6f5a4b";

pub fn key(uuid: &str) -> String {
    prepared_label(uuid)
}

/// A VMIM as virt-api creates it (plus what KubeVirt's own mutating webhook adds).
pub fn vmim(ns: &str, vmi: &str, added: Option<Value>, annotations: &[(&str, &str)]) -> Value {
    let annotations: serde_json::Map<String, Value> =
        annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let mut spec = json!({"vmiName": vmi});
    if let Some(a) = added {
        spec["addedNodeSelector"] = a;
    }
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {
            "generateName": "kubevirt-migrate-vm-", "namespace": ns, "annotations": annotations,
            "labels": {"kubevirt.io/vmi-name": vmi}, "finalizers": ["kubevirt.io/migrationJobFinalize"],
        },
        "spec": spec,
    })
}

/// An `admission.k8s.io/v1` AdmissionReview of `object` as kube-apiserver sends it.
pub fn review(operation: &str, object: Value) -> Value {
    let ns = object["metadata"]["namespace"].clone();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachineInstanceMigration"},
            "resource": {"group": "kubevirt.io", "version": "v1", "resource": "virtualmachineinstancemigrations"},
            "requestKind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachineInstanceMigration"},
            "requestResource": {"group": "kubevirt.io", "version": "v1", "resource": "virtualmachineinstancemigrations"},
            "name": "", "namespace": ns, "operation": operation,
            "userInfo": {"username": VIRT_API, "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": object, "oldObject": null, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    })
}

/// The JSON patch of an AdmissionReview response (`patch` is base64 on the wire, or bytes).
pub fn patch_of(response: &Value) -> Option<Value> {
    let p = &response["response"]["patch"];
    let bytes: Vec<u8> = match p {
        Value::Null => return None,
        Value::Array(a) => a.iter().map(|b| b.as_u64().expect("a byte") as u8).collect(),
        Value::String(s) => base64_decode(s),
        other => panic!("unexpected patch {other}"),
    };
    Some(serde_json::from_slice(&bytes).expect("the patch is JSON"))
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').map(val).collect();
    bytes
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().enumerate().fold(0u32, |n, (i, v)| n | (u32::from(*v) << (18 - 6 * i)));
            let out = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.into_iter().take(c.len() - 1)
        })
        .collect()
}

/// A passthrough `name` of VM `vm` in `ns` with spec `uuid`.
pub fn passthrough(ns: &str, name: &str, vm: &str, uuid: &str) -> Value {
    json!({
        "apiVersion": "crypto.s390x.dev/v1alpha1",
        "kind": "CryptoPassthrough",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"uuid": uuid, "adapters": [1], "domains": [5], "controlDomains": [5], "vmName": vm},
    })
}

pub fn node_entry(name: &str, role: &str, prepared: bool, verdict: &str, reasons: Value) -> Value {
    json!({"name": name, "role": role, "prepared": prepared, "verdict": verdict, "reasons": reasons})
}

/// A status as the controller writes it: Ready, active on `active`, with `nodes`.
pub fn status(uuid: &str, active: &str, ready: bool, nodes: Vec<Value>) -> Value {
    let (r, reason, msg) = if ready {
        ("True", "Synced", format!("mdev {uuid} is synced on the active node {active}"))
    } else {
        ("False", "NotSynced", format!("waiting for the agent of the active node {active} to sync mdev {uuid}"))
    };
    json!({
        "uuid": uuid, "activeNode": active, "nodes": nodes,
        "conditions": [{"type": "Ready", "status": r, "reason": reason, "message": msg,
                        "lastTransitionTime": "2026-11-27T10:00:00Z"}],
    })
}

/// A VMI running on `node` with `selector` (the subset the caches keep).
pub fn vmi(ns: &str, name: &str, node: Option<&str>, selector: &[(&str, &str)]) -> Vmi {
    let selector: BTreeMap<&str, &str> = selector.iter().copied().collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeSelector": selector},
        "status": {"phase": if node.is_some() { "Running" } else { "Pending" }, "nodeName": node},
    }))
    .expect("a VMI")
}

pub fn node(name: &str, labels: &[(&str, &str)]) -> Node {
    let mut l: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    l.insert("kubernetes.io/hostname".into(), name.into());
    Node {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), labels: Some(l), ..Default::default() },
        ..Node::default()
    }
}

fn store<K>(objects: Vec<K>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + ResourceExt + Send + Sync + 'static,
{
    let (reader, mut writer) = reflector::store();
    for o in objects {
        writer.apply_watcher_event(&Event::Apply(o));
    }
    reader
}

/// Caches holding exactly these objects.
pub fn caches(passthroughs: Vec<CryptoPassthrough>, vmis: Vec<Vmi>, nodes: Vec<Node>) -> Caches {
    Caches { passthroughs: store(passthroughs), vmis: store(vmis), nodes: store(nodes) }
}

/// A passthrough object with a status, as the cache holds it.
pub fn cached_passthrough(pt: Value, status: Value) -> CryptoPassthrough {
    let mut pt = pt;
    pt["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    pt["status"] = status;
    serde_json::from_value(pt).expect("a CryptoPassthrough")
}

/// A CA and serving certificates it issues for `127.0.0.1` and `localhost`.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A serving certificate and its key (PEM).
pub struct Serving {
    pub cert: String,
    pub key: String,
    pub der: CertificateDer<'static>,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a CA key")).expect("the CA");
        Pki { ca }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    pub fn serving(&self, cn: &str) -> Serving {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.ca).expect("a serving certificate");
        Serving { cert: cert.pem(), key: key.serialize_pem(), der: cert.der().clone() }
    }
}

impl Serving {
    /// Writes `tls.crt` and `tls.key` into `dir` the way a Secret volume changes: new files
    /// renamed into place.
    pub fn install(&self, dir: &std::path::Path) {
        for (name, text) in [("tls.key", &self.key), ("tls.crt", &self.cert)] {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text).expect("writing a certificate file");
            std::fs::rename(&tmp, dir.join(name)).expect("renaming a certificate file");
        }
    }
}

/// One HTTPS connection (HTTP/1.1, keep-alive) that trusts only `ca_pem`.
pub struct Conn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// The certificate the server presented.
    pub peer: CertificateDer<'static>,
}

impl Conn {
    pub async fn open(addr: SocketAddr, ca_pem: &str) -> Result<Conn, String> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        let name = ServerName::IpAddress(addr.ip().into());
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        let peer = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned().ok_or("no peer certificate")?;
        let (send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| format!("HTTP/1.1: {e}"))?;
        tokio::spawn(conn);
        Ok(Conn { send, peer })
    }

    /// POSTs `body` as JSON to `path`: (status code, JSON answer).
    pub async fn post(&mut self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let req = hyper::Request::post(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        self.send.ready().await.map_err(|e| format!("connection: {e}"))?;
        let resp = self.send.send_request(req).await.map_err(|e| format!("request: {e}"))?;
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }
}
