use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn lifetimes() -> Lifetimes {
    Lifetimes { serving: 30 * DAY, ca: 90 * DAY }
}

fn names() -> Names {
    Names::of_service("cryptopass-webhook", "cryptopass", &["127.0.0.1".to_string()])
}

fn created(now: SystemTime) -> Material {
    let state = State::read(&Material::default());
    apply(&Step::Create, now, &Material::default(), &state, &lifetimes(), &names()).expect("created")
}

/// Whether kube-apiserver, trusting `bundle`, accepts `cert` for `name` at `now`.
fn accepts(bundle: &str, cert: &str, name: &str, now: SystemTime) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().map_err(|e| e.to_string())?;
    let leaf =
        CertificateDer::pem_slice_iter(cert.as_bytes()).next().ok_or("no certificate")?.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let at = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?);
    verifier.verify_server_cert(&leaf, &[], &name, &[], at).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn a_created_pair_is_accepted_for_the_service_names_and_the_extra_ip_and_read_back_exactly() {
    let m = created(t0());
    for name in [
        "cryptopass-webhook",
        "cryptopass-webhook.cryptopass",
        "cryptopass-webhook.cryptopass.svc",
        "cryptopass-webhook.cryptopass.svc.cluster.local",
        "127.0.0.1",
    ] {
        accepts(&m.ca_bundle, &m.cert, name, t0()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(accepts(&m.ca_bundle, &m.cert, "cryptopass-webhook.other.svc", t0()).is_err());
    let state = State::read(&m);
    let (ca, serving) = (state.signer.clone().expect("a signer"), state.serving.clone().expect("a serving cert"));
    assert_eq!(state.bundle, vec![ca.clone()]);
    assert!(ca.subject_cn.as_deref().is_some_and(|cn| cn.starts_with("cryptopass-webhook-ca@")), "{ca:?}");
    assert!(serving.signed_by(&ca));
    assert_eq!(serving.subject_cn.as_deref(), Some("cryptopass-webhook"));
    // Backdated by a minute for lagging clocks; valid for the lifetime from now.
    assert_eq!(ca.not_before, t0() - Duration::from_secs(60));
    assert_eq!((ca.not_after, serving.not_after), (t0() + 90 * DAY, t0() + 30 * DAY));
    // The PEM written back from a parsed certificate is the same certificate.
    assert_eq!(parse_pem(&ca.pem, CA_CERT).expect("parsed"), vec![ca]);
    assert_eq!(decide(t0(), &state, false), (None, Some(serving.renew_at())));
}

#[test]
fn unusable_material_is_replaced_and_never_half_used() {
    let m = created(t0());
    assert_eq!(decide(t0(), &State::read(&Material::default()), true).0, Some(Step::Create));
    let other = created(t0());
    // ca.key of another CA: nothing can be signed, start over.
    let mixed = Material { ca_key: other.ca_key.clone(), ..m.clone() };
    assert_eq!(decide(t0(), &State::read(&mixed), true).0, Some(Step::Create));
    // tls.key of another certificate, or a serving certificate of a CA outside the bundle: reissue at once.
    let mismatched = Material { key: other.key.clone(), ..m.clone() };
    assert_eq!(decide(t0(), &State::read(&mismatched), false).0, Some(Step::Reissue(Reissue::Unusable)));
    let foreign = Material { cert: other.cert.clone(), key: other.key.clone(), ..m.clone() };
    assert_eq!(decide(t0(), &State::read(&foreign), false).0, Some(Step::Reissue(Reissue::Unusable)));
    let garbage = Material { cert: "garbage".into(), ..m.clone() };
    assert_eq!(decide(t0(), &State::read(&garbage), false).0, Some(Step::Reissue(Reissue::Unusable)));
    // Expired: reissue; the CA due: a new one first; the CA expired: start over.
    let state = State::read(&m);
    assert_eq!(decide(t0() + 31 * DAY, &state, false).0, Some(Step::Reissue(Reissue::Unusable)));
    let day50 = t0() + 50 * DAY;
    let renewed = apply(&Step::Reissue(Reissue::Due), day50, &m, &state, &lifetimes(), &names()).expect("renewed");
    assert_eq!(decide(t0() + 61 * DAY, &State::read(&renewed), false).0, Some(Step::RotateCa));
    assert_eq!(decide(t0() + 91 * DAY, &state, false).0, Some(Step::Create));
}

/// What was true from when on.
struct History<T>(Vec<(SystemTime, T)>);

impl<T: Clone + PartialEq> History<T> {
    fn set(&mut self, at: SystemTime, v: &T) {
        if self.0.last().is_none_or(|(_, last)| last != v) {
            self.0.push((at, v.clone()));
        }
    }

    /// Every value that someone lagging by up to `lag` may hold at `t`.
    fn seen(&self, t: SystemTime, lag: Duration) -> Vec<T> {
        let current = self.0.iter().rposition(|(at, _)| *at <= t).unwrap_or(0);
        let oldest = self.0.iter().rposition(|(at, _)| *at <= t - lag).unwrap_or(0);
        self.0[oldest..=current].iter().map(|(_, v)| v.clone()).collect()
    }
}

/// Runs the schedule with a clock for `span` and checks that at every moment, whatever serving
/// certificate a replica may still present (replicas follow the Secret up to `replica_lag` late)
/// is accepted by whatever bundle kube-apiserver may still hold (it follows the configurations
/// with a delay shorter than the settle time): a rotation never loses an admission. Returns the
/// steps with their second since the start.
fn simulate(lt: &Lifetimes, span: Duration, replica_lag: Duration) -> Vec<(u64, Step)> {
    let apiserver_lag = lt.settle() / 2;
    let start = t0();
    let empty = Material::default();
    let mut m = apply(&Step::Create, start, &empty, &State::read(&empty), lt, &names()).expect("created");
    let (mut bundles, mut served) =
        (History(vec![(start, m.ca_bundle.clone())]), History(vec![(start, m.cert.clone())]));
    let mut bundle_since = start;
    let mut steps = Vec::new();
    let mut checks = vec![start];
    let mut now = start;
    let mut late = 0;
    let end = start + span;
    while now < end {
        loop {
            let state = State::read(&m);
            let settled = now.duration_since(bundle_since).unwrap_or_default() >= lt.settle();
            let (step, next) = decide(now, &state, settled);
            let Some(step) = step else {
                let mut wake = next.expect("a next look").min(now + lt.serving / 4);
                if !settled {
                    wake = wake.min(bundle_since + lt.settle());
                }
                assert!(wake >= now, "no progress at {now:?}");
                // The leader looks up to a second late (a loaded apiserver, a busy runtime).
                late = (late + 347) % 1000;
                now = wake + Duration::from_millis(late);
                break;
            };
            assert_ne!(step, Step::Create, "started over at {now:?}");
            assert!(!matches!(step, Step::Reissue(Reissue::Unusable)), "an unusable certificate at {now:?}");
            m = apply(&step, now, &m, &state, lt, &names()).expect("applied");
            steps.push((now.duration_since(start).expect("later").as_secs(), step));
            if bundles.0.last().is_some_and(|(_, b)| *b != m.ca_bundle) {
                bundle_since = now;
            }
            bundles.set(now, &m.ca_bundle);
            served.set(now, &m.cert);
            checks.extend([now, now + apiserver_lag, now + replica_lag]);
        }
        checks.push(now);
    }
    for t in checks {
        for cert in served.seen(t, replica_lag) {
            for bundle in bundles.seen(t, apiserver_lag) {
                accepts(&bundle, &cert, "cryptopass-webhook.cryptopass.svc", t)
                    .unwrap_or_else(|e| panic!("at {:?}: {e}\n{steps:?}", t.duration_since(start)));
            }
        }
    }
    steps
}

/// The lifetimes of the rotation test (tests/webhook_controller.rs): a serving certificate due
/// while a new CA settles is still renewed before it expires.
#[test]
fn short_lifetimes_never_present_an_untrusted_certificate_either() {
    let lt = Lifetimes { serving: Duration::from_secs(15), ca: Duration::from_secs(60) };
    let steps = simulate(&lt, Duration::from_secs(600), Duration::from_secs(1));
    assert!(steps.iter().filter(|(_, s)| *s == Step::RotateCa).count() >= 14, "{steps:?}");
}

/// Two years with the default kind of lifetimes; the renewals happen when promised.
#[test]
fn the_schedule_never_presents_a_certificate_that_kube_apiserver_does_not_trust() {
    let lt = lifetimes();
    let steps = simulate(&lt, 730 * DAY, Duration::from_secs(20));
    // Serving renewed every 20 days (2/3 of 30); a new CA every 60 (2/3 of 90; each drifts by the
    // backdate's share), its first serving certificate once the bundle settled, the old CA gone when
    // it expires, 30 days later.
    let at = |want: Step| steps.iter().filter(|(_, s)| *s == want).map(|(t, _)| *t).collect::<Vec<u64>>();
    let (rotations, first, dropped) = (at(Step::RotateCa), at(Step::Reissue(Reissue::NewCa)), at(Step::DropExpired));
    let near = |got: u64, want: u64, within: u64| got.abs_diff(want) <= within;
    assert_eq!(rotations.len(), 12, "{steps:?}");
    for (i, r) in rotations.iter().enumerate() {
        assert!(near(*r, (i as u64 + 1) * 60 * 86_400, 3600), "rotation {i} at {r} s");
        assert!(near(first[i], r + lt.settle().as_secs(), 1), "first certificate of CA {i} at {} s", first[i]);
    }
    assert_eq!(dropped.len(), 11, "{steps:?}");
    for (i, d) in dropped.iter().enumerate() {
        let expiry = if i == 0 { 90 * 86_400 } else { rotations[i - 1] + 90 * 86_400 };
        assert!(near(*d, expiry, 60), "drop {i} at {d} s, expiry {expiry} s");
    }
    let serving: Vec<u64> = steps.iter().filter(|(_, s)| matches!(s, Step::Reissue(_))).map(|(t, _)| *t).collect();
    // (Due while a new CA settles: renewed once it settled.)
    assert!(serving.windows(2).all(|w| w[1] - w[0] <= 20 * 86_400 + lt.settle().as_secs()), "{serving:?}");
    assert!(serving.len() >= 730 / 20, "{serving:?}");
}
