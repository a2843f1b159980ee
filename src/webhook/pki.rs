//! Self-managed webhook certificates, without Kubernetes: what the Secret holds, what it says
//! (validity, issuer, whether keys match), what the leader does next, and the issuing itself (rcgen).
//!
//! The Secret (`cryptopass-webhook-tls` in the release namespace) holds `tls.crt`/`tls.key` (the
//! serving certificate every replica presents), `ca.crt` (the trust bundle: one CA, two while the
//! CA rotates; it is what goes into the webhook configurations' `caBundle`) and `ca.key` (the key of
//! the newest CA of the bundle, the *signer*).
//!
//! The schedule ([`decide`]): the serving certificate is renewed at 2/3 of its lifetime, the CA at
//! 2/3 of its own. A new CA first joins the bundle next to the old one; only once that bundle has
//! been in both configurations for a while ("settled": kube-apiserver picked it up) does a serving
//! certificate of the new CA replace the old one; the old CA leaves the bundle when it expires,
//! which is after every serving certificate it signed expired (a serving certificate never
//! outlives its CA), so no replica can still present a certificate of the old CA that kube-apiserver
//! would accept then.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const CERT: &str = "tls.crt";
pub const KEY: &str = "tls.key";

/// Why stored material cannot be used or new material cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    #[error("{0}: not a PEM certificate")]
    Pem(&'static str),
    #[error("{0}: not an X.509 certificate this parser understands")]
    Der(&'static str),
    #[error("{0}: not a usable private key: {1}")]
    Key(&'static str, String),
    #[error("cannot issue a certificate: {0}")]
    Issue(String),
}

/// The four PEM texts of the Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Material {
    pub ca_bundle: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

/// What a certificate says, as far as the schedule needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The DER of the subject and issuer names (compared byte for byte: our CAs have unique names).
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    pub subject_cn: Option<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The DER of the SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    pub pem: String,
}

impl CertInfo {
    /// The moment it is due for renewal: 2/3 of its lifetime.
    pub fn renew_at(&self) -> SystemTime {
        let life = self.not_after.duration_since(self.not_before).unwrap_or_default();
        self.not_before + life * 2 / 3
    }

    pub fn signed_by(&self, ca: &CertInfo) -> bool {
        self.issuer == ca.subject
    }
}

fn system_time(t: &time::OffsetDateTime) -> SystemTime {
    let nanos = t.unix_timestamp_nanos();
    if nanos >= 0 { UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)) } else { UNIX_EPOCH }
}

fn read_time(r: yasna::BERReader<'_, '_>) -> yasna::ASN1Result<SystemTime> {
    if r.lookahead_tag()? == yasna::tags::TAG_UTCTIME {
        Ok(system_time(r.read_utctime()?.datetime()))
    } else {
        Ok(system_time(r.read_generalized_time()?.datetime()))
    }
}

/// The common name of a Name (the first one), read from its DER.
fn common_name(name: &[u8]) -> Option<String> {
    const CN: &[u64] = &[2, 5, 4, 3];
    let mut cn = None;
    yasna::parse_der(name, |r| {
        r.read_sequence_of(|r| {
            r.read_set_of(|r| {
                r.read_sequence(|r| {
                    let oid = r.next().read_oid()?;
                    let value = r.next().read_der()?;
                    if cn.is_none() && oid.components().as_slice() == CN {
                        cn = yasna::parse_der(&value, |r| {
                            if r.lookahead_tag()? == yasna::tags::TAG_PRINTABLESTRING {
                                r.read_printable_string()
                            } else {
                                r.read_utf8string()
                            }
                        })
                        .ok();
                    }
                    Ok(())
                })
            })
        })
    })
    .ok()?;
    cn
}

/// Reads the fields of an X.509 certificate the schedule needs.
pub fn parse_der(der: &[u8], what: &'static str) -> Result<CertInfo, PkiError> {
    let parsed = yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let tbs = r.next().read_sequence(|r| {
                r.read_optional(|r| r.read_tagged(yasna::Tag::context(0), |r| r.read_i64()))?;
                r.next().read_bigint_bytes()?;
                r.next().read_der()?;
                let issuer = r.next().read_der()?;
                let (not_before, not_after) =
                    r.next().read_sequence(|r| Ok((read_time(r.next())?, read_time(r.next())?)))?;
                let subject = r.next().read_der()?;
                let spki = r.next().read_der()?;
                while r.read_optional(|r| r.read_der())?.is_some() {}
                Ok((issuer, not_before, not_after, subject, spki))
            })?;
            r.next().read_der()?;
            r.next().read_der()?;
            Ok(tbs)
        })
    });
    let (issuer, not_before, not_after, subject, spki) = parsed.map_err(|_| PkiError::Der(what))?;
    let pem = pem_of(der);
    Ok(CertInfo { subject_cn: common_name(&subject), subject, issuer, not_before, not_after, spki, pem })
}

fn pem_of(der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn base64_encode(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every certificate of a PEM text, in order.
pub fn parse_pem(pem: &str, what: &'static str) -> Result<Vec<CertInfo>, PkiError> {
    let ders: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().map_err(|_| PkiError::Pem(what))?;
    if ders.is_empty() {
        return Err(PkiError::Pem(what));
    }
    ders.iter().map(|d| parse_der(d, what)).collect()
}

/// The SubjectPublicKeyInfo of a PEM private key.
fn key_spki(pem: &str, what: &'static str) -> Result<Vec<u8>, PkiError> {
    let key = KeyPair::from_pem(pem).map_err(|e| PkiError::Key(what, e.to_string()))?;
    Ok(key.subject_public_key_info())
}

/// The stored material, read: the bundle, the signer (the newest CA, when `ca.key` is its key)
/// and the serving certificate (when `tls.key` is its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub bundle: Vec<CertInfo>,
    pub signer: Option<CertInfo>,
    pub serving: Option<CertInfo>,
}

impl State {
    pub fn read(m: &Material) -> State {
        let bundle = parse_pem(&m.ca_bundle, CA_CERT).unwrap_or_default();
        let signer = bundle
            .iter()
            .max_by_key(|c| c.not_after)
            .filter(|c| key_spki(&m.ca_key, CA_KEY).is_ok_and(|k| k == c.spki))
            .cloned();
        let serving = parse_pem(&m.cert, CERT)
            .ok()
            .and_then(|c| c.into_iter().next())
            .filter(|c| key_spki(&m.key, KEY).is_ok_and(|k| k == c.spki));
        State { bundle, signer, serving }
    }
}

/// How long what is issued stays valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifetimes {
    pub serving: Duration,
    pub ca: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes { serving: Duration::from_secs(90 * 86_400), ca: Duration::from_secs(3 * 365 * 86_400) }
    }
}

impl Lifetimes {
    /// How long a new bundle must have been in the webhook configurations before a serving
    /// certificate of its new CA is presented (kube-apiserver reads configurations from an
    /// informer: normally well under a second). Short enough that a serving certificate due for
    /// renewal while a new CA settles (it waits) is renewed well before it expires.
    pub fn settle(&self) -> Duration {
        (self.ca / 10).min(self.serving / 6).min(Duration::from_secs(60))
    }

    /// How far back `notBefore` is set (clocks of the apiservers may lag ours).
    pub fn backdate(validity: Duration) -> Duration {
        (validity / 10).min(Duration::from_secs(60))
    }
}

/// What the leader does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing usable is stored: a new CA and a serving certificate.
    Create,
    /// The signer is at 2/3 of its lifetime: a new CA joins the bundle (serving unchanged).
    RotateCa,
    /// A new serving certificate from the signer.
    Reissue(Reissue),
    /// CAs that expired leave the bundle.
    DropExpired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reissue {
    /// Missing, not matching its key, expired, or from a CA no longer in the bundle.
    Unusable,
    /// From an older CA, and the bundle with the signer has settled.
    NewCa,
    /// At 2/3 of its lifetime.
    Due,
}

/// The next step at `now`, if any, and when to look again otherwise. `settled`: the current
/// bundle has been in both webhook configurations for [`Lifetimes::settle`] (until then a serving
/// certificate of an older CA stays; the caller looks again when the bundle settles).
pub fn decide(now: SystemTime, state: &State, settled: bool) -> (Option<Step>, Option<SystemTime>) {
    let Some(signer) = state.signer.as_ref().filter(|s| s.not_after > now) else {
        return (Some(Step::Create), None);
    };
    let trusted = |c: &CertInfo| state.bundle.iter().any(|ca| ca.not_after > now && c.signed_by(ca));
    let Some(serving) = state.serving.as_ref().filter(|s| s.not_after > now && s.not_before <= now && trusted(s))
    else {
        return (Some(Step::Reissue(Reissue::Unusable)), None);
    };
    let ours = serving.signed_by(signer);
    // Renewed before a CA rotation due at the same time: after it, the renewal would wait for
    // the new CA to settle.
    if ours && now >= serving.renew_at() {
        return (Some(Step::Reissue(Reissue::Due)), None);
    }
    if now >= signer.renew_at() {
        return (Some(Step::RotateCa), None);
    }
    if !ours && settled {
        return (Some(Step::Reissue(Reissue::NewCa)), None);
    }
    if state.bundle.iter().any(|c| c.not_after <= now) {
        return (Some(Step::DropExpired), None);
    }
    let mut next = vec![signer.renew_at()];
    if ours {
        next.push(serving.renew_at());
    }
    next.extend(state.bundle.iter().filter(|c| c.subject != signer.subject).map(|c| c.not_after));
    (None, next.into_iter().min())
}

/// What serving certificates are issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// DNS names (the Service's).
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Names {
    /// `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`, `<svc>.<ns>.svc.cluster.local`, then `extra`
    /// (an IP address or a DNS name each).
    pub fn of_service(service: &str, namespace: &str, extra: &[String]) -> Names {
        let mut dns = vec![
            service.to_string(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ];
        let mut ips = Vec::new();
        for e in extra {
            match e.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(e.clone()),
            }
        }
        Names { dns, ips }
    }
}

fn offset(t: SystemTime) -> time::OffsetDateTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn issue_err(e: impl std::fmt::Display) -> PkiError {
    PkiError::Issue(e.to_string())
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// A new CA: (certificate PEM, key PEM). Its name carries the time and a random part, so that
/// every CA's is unique (certificates are matched to their CA by name).
pub fn new_ca(now: SystemTime, validity: Duration) -> Result<(String, String), PkiError> {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let random = uuid::Uuid::new_v4().simple().to_string();
    let mut params = ca_params(&format!("cryptopass-webhook-ca@{secs}-{}", &random[..8]));
    params.not_before = offset(now - Lifetimes::backdate(validity));
    params.not_after = offset(now + validity);
    let key = KeyPair::generate().map_err(issue_err)?;
    let cert = params.self_signed(&key).map_err(issue_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving certificate for `names` from `signer` (its key `signer_key`), never outliving it:
/// (certificate PEM, key PEM).
pub fn new_serving(
    now: SystemTime,
    validity: Duration,
    names: &Names,
    signer: &CertInfo,
    signer_key: &str,
) -> Result<(String, String), PkiError> {
    let cn = signer.subject_cn.as_deref().ok_or_else(|| issue_err("the CA has no common name"))?;
    let ca_key = KeyPair::from_pem(signer_key).map_err(|e| PkiError::Key(CA_KEY, e.to_string()))?;
    let issuer = Issuer::new(ca_params(cn), ca_key);
    let mut params = CertificateParams::new(names.dns.clone()).map_err(issue_err)?;
    params.subject_alt_names.extend(names.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, names.dns.first().map_or("cryptopass-webhook", |s| s));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.not_before = offset(now - Lifetimes::backdate(validity));
    params.not_after = offset((now + validity).min(signer.not_after));
    let key = KeyPair::generate().map_err(issue_err)?;
    let cert = params.signed_by(&key, &issuer).map_err(issue_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The material after `step`.
pub fn apply(
    step: &Step,
    now: SystemTime,
    current: &Material,
    state: &State,
    lifetimes: &Lifetimes,
    names: &Names,
) -> Result<Material, PkiError> {
    let serving = |ca_pem: &str, ca_key: &str| -> Result<(String, String), PkiError> {
        let signer = parse_pem(ca_pem, CA_CERT)?.into_iter().next().ok_or(PkiError::Pem(CA_CERT))?;
        new_serving(now, lifetimes.serving, names, &signer, ca_key)
    };
    match step {
        Step::Create => {
            let (ca, ca_key) = new_ca(now, lifetimes.ca)?;
            let (cert, key) = serving(&ca, &ca_key)?;
            Ok(Material { ca_bundle: ca, ca_key, cert, key })
        }
        Step::RotateCa => {
            let (ca, ca_key) = new_ca(now, lifetimes.ca)?;
            let mut bundle: String =
                state.bundle.iter().filter(|c| c.not_after > now).map(|c| c.pem.as_str()).collect();
            bundle.push_str(&ca);
            Ok(Material { ca_bundle: bundle, ca_key, ..current.clone() })
        }
        Step::Reissue(_) => {
            let signer = state.signer.as_ref().ok_or_else(|| issue_err("no signing CA"))?;
            let (cert, key) = new_serving(now, lifetimes.serving, names, signer, &current.ca_key)?;
            Ok(Material { cert, key, ..current.clone() })
        }
        Step::DropExpired => {
            let bundle: String = state.bundle.iter().filter(|c| c.not_after > now).map(|c| c.pem.as_str()).collect();
            Ok(Material { ca_bundle: bundle, ..current.clone() })
        }
    }
}

#[cfg(test)]
mod tests;
