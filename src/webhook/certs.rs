//! Self-managed certificates in the cluster (without `--webhook-cert-dir`; the schedule is
//! [`pki`]'s): every replica serves the pair of the Secret [`SECRET`] through a watch (no mount),
//! swapping it for new connections; the leader creates and rotates the Secret and keeps its CA
//! bundle in both configurations' `caBundle` (server-side apply under [`FIELD_MANAGER`], so that
//! helm and the matchConditions keep theirs).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::pki::{self, Lifetimes, Material, Names, State, Step};
use super::scope::{ApplyError, Configuration, apply_webhook};
use super::tls::Swappable;
use super::{MUTATING_CONFIGURATION, VALIDATING_CONFIGURATION};

/// The Secret of the self-managed certificates, in the release namespace.
pub const SECRET: &str = "cryptopass-webhook-tls";
/// The field manager of the leader's `caBundle`.
pub const FIELD_MANAGER: &str = "cryptopass-webhook-ca";
/// How often the leader looks at the Secret when nothing is due (it may have been deleted or
/// edited) and applies the bundle again (an admin or `helm upgrade` may have removed it).
const POLL: Duration = Duration::from_secs(30);

/// What the leader issues.
#[derive(Debug, Clone)]
pub struct SelfManaged {
    /// The release namespace (the Secret's).
    pub namespace: String,
    pub names: Names,
    pub lifetimes: Lifetimes,
}

fn material(secret: &Secret) -> Material {
    let data = secret.data.as_ref();
    let text =
        |k: &str| data.and_then(|d| d.get(k)).map(|b| String::from_utf8_lossy(&b.0).into_owned()).unwrap_or_default();
    Material { ca_bundle: text(pki::CA_CERT), ca_key: text(pki::CA_KEY), cert: text(pki::CERT), key: text(pki::KEY) }
}

/// Every replica: keeps `certs` equal to the Secret's pair until `shutdown` (a deleted Secret
/// leaves the last pair in use: the leader makes a new one).
pub async fn follow(client: Client, namespace: String, certs: Arc<Swappable>, shutdown: impl Future<Output = ()>) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={SECRET}"));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let event = tokio::select! {
            () = &mut shutdown => return,
            e = events.next() => e,
        };
        match event {
            Some(Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s))) => {
                let m = material(&s);
                match certs.set(m.cert.as_bytes(), m.key.as_bytes()) {
                    Ok(true) => {
                        let until = pki::parse_pem(&m.cert, pki::CERT).ok().and_then(|c| {
                            c.first().map(|c| humantime::format_rfc3339_seconds(c.not_after).to_string())
                        });
                        tracing::info!(secret = SECRET, until, "serving the self-managed certificate");
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the self-managed certificate does not load; the previous one stays in use")
                    }
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::warn!(error = %e, "watching the webhook certificate Secret"),
            None => return,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum KeepError {
    #[error("Secret {SECRET}: {0}")]
    Secret(#[source] kube::Error),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Configuration(#[from] ApplyError),
}

/// The leader's task: the Secret and both configurations' `caBundle`.
pub struct Keeper {
    pub client: Client,
    pub managed: SelfManaged,
    pub leader: watch::Receiver<bool>,
    pub validating: String,
    pub mutating: String,
}

/// The bundle last applied to both configurations: since when, and when last.
#[derive(Debug)]
struct Bundle {
    pem: String,
    since: Instant,
    last: Instant,
}

type Applied = Option<Bundle>;

impl Keeper {
    /// For the configurations of architecture.md ("Names").
    pub fn new(client: Client, managed: SelfManaged, leader: watch::Receiver<bool>) -> Keeper {
        Keeper {
            client,
            managed,
            leader,
            validating: VALIDATING_CONFIGURATION.to_string(),
            mutating: MUTATING_CONFIGURATION.to_string(),
        }
    }

    /// Runs until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut applied: Applied = None;
        let mut backoff = Duration::from_millis(500);
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                changed = self.leader.changed() => if changed.is_err() {
                    return tracing::warn!("leader election ended: self-managed certificates no longer kept");
                },
                () = tokio::time::sleep(wait) => {}
            }
            if !*self.leader.borrow_and_update() {
                applied = None;
                wait = POLL;
                continue;
            }
            match self.round(&mut applied).await {
                Ok(next) => {
                    wait = next;
                    backoff = Duration::from_millis(500);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "self-managed webhook certificate: retrying");
                    wait = backoff;
                    backoff = (backoff * 2).min(POLL);
                }
            }
        }
    }

    /// One look: a step of the schedule when one is due, the bundle into the configurations when
    /// it changed; returns how long to wait for the next look.
    async fn round(&self, applied: &mut Applied) -> Result<Duration, KeepError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.managed.namespace);
        let live = api.get_opt(SECRET).await.map_err(KeepError::Secret)?;
        let mut current = live.as_ref().map(material).unwrap_or_default();
        let lifetimes = &self.managed.lifetimes;
        let settle = lifetimes.settle();
        let state = State::read(&current);
        let settled = applied.as_ref().is_some_and(|b| b.pem == current.ca_bundle && b.since.elapsed() >= settle);
        let now = SystemTime::now();
        let (step, next) = pki::decide(now, &state, settled);
        if let Some(step) = &step {
            let new = pki::apply(step, now, &current, &state, lifetimes, &self.managed.names)?;
            self.write(&api, live, &new).await?;
            tracing::info!(?step, secret = SECRET, "self-managed webhook certificate: {}", describe(step));
            current = new;
        }
        let fresh = applied.as_ref().is_some_and(|b| b.pem == current.ca_bundle && b.last.elapsed() < POLL);
        if !fresh {
            self.apply_bundle(&current.ca_bundle).await?;
            match applied.as_mut() {
                // Applied again (a repair): in effect since the first time.
                Some(b) if b.pem == current.ca_bundle => b.last = Instant::now(),
                _ => {
                    let cas = pki::parse_pem(&current.ca_bundle, pki::CA_CERT).map_or(0, |b| b.len());
                    tracing::info!(cas, "caBundle applied to the webhook configurations");
                    let now = Instant::now();
                    *applied = Some(Bundle { pem: current.ca_bundle.clone(), since: now, last: now });
                }
            }
        }
        if step.is_some() {
            return Ok(Duration::ZERO);
        }
        let mut wait = POLL;
        if let Some(next) = next {
            wait = wait.min(next.duration_since(SystemTime::now()).unwrap_or_default());
        }
        if let Some(b) = applied.as_ref()
            && !settled
        {
            wait = wait.min(settle.saturating_sub(b.since.elapsed()));
        }
        // Never spin: at most a few looks a second.
        Ok(wait.max(Duration::from_millis(200)))
    }

    async fn write(&self, api: &Api<Secret>, live: Option<Secret>, m: &Material) -> Result<(), KeepError> {
        let data: BTreeMap<String, ByteString> =
            [(pki::CA_CERT, &m.ca_bundle), (pki::CA_KEY, &m.ca_key), (pki::CERT, &m.cert), (pki::KEY, &m.key)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect();
        let pp = PostParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PostParams::default() };
        match live {
            // Optimistic concurrency: a former leader's write in between makes this one fail.
            Some(mut s) => {
                s.data = Some(data);
                s.string_data = None;
                api.replace(SECRET, &pp, &s).await.map_err(KeepError::Secret)?;
            }
            None => {
                let s = Secret {
                    metadata: ObjectMeta {
                        name: Some(SECRET.to_string()),
                        namespace: Some(self.managed.namespace.clone()),
                        labels: Some(
                            [
                                ("app.kubernetes.io/name".to_string(), "cryptopass".to_string()),
                                ("app.kubernetes.io/component".to_string(), "webhook".to_string()),
                            ]
                            .into(),
                        ),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".to_string()),
                    data: Some(data),
                    ..Secret::default()
                };
                api.create(&pp, &s).await.map_err(KeepError::Secret)?;
            }
        }
        Ok(())
    }

    async fn apply_bundle(&self, bundle: &str) -> Result<(), KeepError> {
        apply_ca::<ValidatingWebhookConfiguration>(&self.client, &self.validating, bundle).await?;
        apply_ca::<MutatingWebhookConfiguration>(&self.client, &self.mutating, bundle).await?;
        Ok(())
    }
}

/// The server-side apply body that sets `caBundle` of `webhook` in configuration `name`.
pub fn ca_bundle_body(kind: &str, name: &str, webhook: &str, bundle: &str) -> Value {
    let encoded = serde_json::to_value(ByteString(bundle.as_bytes().to_vec())).unwrap_or(Value::Null);
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": [{"name": webhook, "clientConfig": {"caBundle": encoded}}],
    })
}

async fn apply_ca<C: Configuration>(client: &Client, name: &str, bundle: &str) -> Result<(), ApplyError> {
    apply_webhook::<C>(client, name, FIELD_MANAGER, &ca_bundle_body(C::KIND, name, C::WEBHOOK, bundle)).await
}

fn describe(step: &Step) -> &'static str {
    match step {
        Step::Create => "created a CA and a serving certificate",
        Step::RotateCa => "a new CA joined the bundle",
        Step::Reissue(pki::Reissue::Unusable) => "the serving certificate was unusable: issued a new one",
        Step::Reissue(pki::Reissue::NewCa) => "serving certificate issued by the new CA",
        Step::Reissue(pki::Reissue::Due) => "serving certificate renewed",
        Step::DropExpired => "expired CAs left the bundle",
    }
}
