//! The webhooks' `matchConditions` (architecture.md, "Webhooks"): they send us only the VMIMs of
//! VMIs that a CryptoPassthrough names, so that `failurePolicy: Fail` refuses those when every
//! replica is down and never blocks any other VMIM. The leader keeps the map literal current.
//!
//! An entry is the passthrough's `namespace/vmName`, present for as long as the passthrough
//! object exists: it exists before its first mdev is prepared and, held by its finalizer, until
//! after its last one is released.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{MUTATING_CONFIGURATION, MUTATING_WEBHOOK, VALIDATING_CONFIGURATION, VALIDATING_WEBHOOK};
use crate::api::CryptoPassthrough;

/// The field manager of the leader's matchConditions.
pub const FIELD_MANAGER: &str = "cryptopass-webhook-scope";

/// The name of our match condition in both configurations.
pub const CONDITION: &str = "vmi-uses-a-cryptopassthrough";
/// As shipped: nothing is sent to us.
pub const NOTHING: &str = "false";

/// `namespace/vmName` of every passthrough.
pub fn entries<'a>(passthroughs: impl IntoIterator<Item = &'a CryptoPassthrough>) -> BTreeSet<String> {
    passthroughs
        .into_iter()
        .filter_map(|p| Some(format!("{}/{}", p.metadata.namespace.as_deref()?, p.spec.vm_name)))
        .collect()
}

fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if matches!(c, '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// kube-apiserver refuses a CEL expression longer than this many code points ("expression code
/// point size exceeds limit"; measured with 1.37).
pub const MAX_EXPRESSION: usize = 100_000;

fn map_literal<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    let map: Vec<String> = keys.map(|k| format!("{}: true", quoted(k))).collect();
    format!("{{{}}}", map.join(", "))
}

/// The CEL expression that matches the VMIMs of exactly these `namespace/vmi` entries.
pub fn expression(entries: &BTreeSet<String>) -> String {
    if entries.is_empty() {
        return NOTHING.to_string();
    }
    format!(
        "has(object.spec.vmiName) && (object.metadata.namespace + '/' + object.spec.vmiName) in {}",
        map_literal(entries.iter().map(String::as_str))
    )
}

/// [`expression`] when it fits in [`MAX_EXPRESSION`]; else the VMIMs of every VMI in the
/// namespaces of the entries; else every VMIM. Too many entries never let one of our VMIs'
/// VMIMs through unchecked: they widen what an outage of ours blocks instead.
pub fn bounded_expression(entries: &BTreeSet<String>) -> String {
    let exact = expression(entries);
    if exact.chars().count() <= MAX_EXPRESSION {
        return exact;
    }
    let namespaces: BTreeSet<&str> = entries.iter().filter_map(|e| e.split_once('/').map(|(ns, _)| ns)).collect();
    let wide =
        format!("has(object.spec.vmiName) && object.metadata.namespace in {}", map_literal(namespaces.into_iter()));
    if wide.chars().count() <= MAX_EXPRESSION { wide } else { "has(object.spec.vmiName)".to_string() }
}

/// The server-side apply body that sets our match condition of `webhook` in configuration `name`.
pub fn apply_body(kind: &str, name: &str, webhook: &str, expression: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": [{"name": webhook, "matchConditions": [{"name": CONDITION, "expression": expression}]}],
    })
}

/// The leader's task: keeps the match condition of both configurations equal to the passthroughs
/// in the cache. Writes only while this replica leads and only once the cache has synced (an
/// empty cache would let our VMIs' VMIMs through unchecked); applies on a change, and again every
/// `repair` (a `helm upgrade` or an admin may have put `false` back).
pub struct Keeper {
    pub client: Client,
    pub passthroughs: Store<CryptoPassthrough>,
    pub leader: watch::Receiver<bool>,
    pub validating: String,
    pub mutating: String,
    /// How often the cache is compared with what was applied.
    pub poll: Duration,
    pub repair: Duration,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    #[error("{kind} {name} is not installed")]
    NotInstalled { kind: &'static str, name: String },
    #[error("{kind} {name} has no webhook {webhook}")]
    NoWebhook { kind: &'static str, name: String, webhook: &'static str },
    #[error("{kind} {name}: {source}")]
    Kube { kind: &'static str, name: String, source: kube::Error },
}

pub(crate) trait Configuration:
    Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
{
    const KIND: &'static str;
    const WEBHOOK: &'static str;
    fn webhook_names(&self) -> Vec<&str>;
}

impl Configuration for ValidatingWebhookConfiguration {
    const KIND: &'static str = "ValidatingWebhookConfiguration";
    const WEBHOOK: &'static str = VALIDATING_WEBHOOK;
    fn webhook_names(&self) -> Vec<&str> {
        self.webhooks.iter().flatten().map(|w| w.name.as_str()).collect()
    }
}

impl Configuration for MutatingWebhookConfiguration {
    const KIND: &'static str = "MutatingWebhookConfiguration";
    const WEBHOOK: &'static str = MUTATING_WEBHOOK;
    fn webhook_names(&self) -> Vec<&str> {
        self.webhooks.iter().flatten().map(|w| w.name.as_str()).collect()
    }
}

async fn apply<C: Configuration>(client: &Client, name: &str, expression: &str) -> Result<(), ApplyError> {
    let body = apply_body(C::KIND, name, C::WEBHOOK, expression);
    apply_webhook::<C>(client, name, FIELD_MANAGER, &body).await
}

/// Server-side apply of `body` (naming our webhook of configuration `name`) under `manager`,
/// only when the configuration and its webhook exist.
pub(crate) async fn apply_webhook<C: Configuration>(
    client: &Client,
    name: &str,
    manager: &str,
    body: &Value,
) -> Result<(), ApplyError> {
    let api: Api<C> = Api::all(client.clone());
    let kube = |source| ApplyError::Kube { kind: C::KIND, name: name.to_string(), source };
    // Applying to a configuration that is not there would create a broken one.
    let live = api.get_opt(name).await.map_err(kube)?;
    let live = live.ok_or_else(|| ApplyError::NotInstalled { kind: C::KIND, name: name.to_string() })?;
    if !live.webhook_names().contains(&C::WEBHOOK) {
        return Err(ApplyError::NoWebhook { kind: C::KIND, name: name.to_string(), webhook: C::WEBHOOK });
    }
    api.patch(name, &PatchParams::apply(manager).force(), &Patch::Apply(body)).await.map_err(kube)?;
    Ok(())
}

impl Keeper {
    /// For the configurations of architecture.md ("Names").
    pub fn new(client: Client, passthroughs: Store<CryptoPassthrough>, leader: watch::Receiver<bool>) -> Keeper {
        Keeper {
            client,
            passthroughs,
            leader,
            validating: VALIDATING_CONFIGURATION.to_string(),
            mutating: MUTATING_CONFIGURATION.to_string(),
            poll: Duration::from_millis(250),
            repair: Duration::from_secs(60),
        }
    }

    /// Runs until `shutdown` completes (then the leader receiver is dropped).
    pub async fn run(self, synced: impl Fn() -> bool, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut applied: Option<(String, Instant)> = None;
        let (mut next_try, mut backoff) = (Instant::now(), self.poll);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            if !*self.leader.borrow() || !synced() {
                applied = None;
                continue;
            }
            let expression = bounded_expression(&entries(self.passthroughs.state().iter().map(|p| p.as_ref())));
            let fresh = applied.as_ref().is_some_and(|(e, at)| *e == expression && at.elapsed() < self.repair);
            if fresh || Instant::now() < next_try {
                continue;
            }
            let result = async {
                apply::<ValidatingWebhookConfiguration>(&self.client, &self.validating, &expression).await?;
                apply::<MutatingWebhookConfiguration>(&self.client, &self.mutating, &expression).await
            }
            .await;
            match result {
                Ok(()) => {
                    if applied.as_ref().is_none_or(|(e, _)| *e != expression) {
                        tracing::info!(
                            entries = expression.matches(": true").count(),
                            "webhook matchConditions applied"
                        );
                    }
                    applied = Some((expression, Instant::now()));
                    backoff = self.poll;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook matchConditions not applied; retrying");
                    backoff = (backoff * 2).min(self.repair);
                    next_try = Instant::now() + backoff;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_passthrough_sends_nothing_and_entries_form_a_map_literal() {
        assert_eq!(expression(&BTreeSet::new()), "false");
        let e: BTreeSet<String> = ["ns1/vm-a".to_string(), "ns2/vm-b".to_string()].into();
        assert_eq!(
            expression(&e),
            "has(object.spec.vmiName) && (object.metadata.namespace + '/' + object.spec.vmiName) in \
             {'ns1/vm-a': true, 'ns2/vm-b': true}"
        );
        let odd: BTreeSet<String> = ["ns/it's".to_string()].into();
        assert!(expression(&odd).ends_with(r"in {'ns/it\'s': true}"));
    }

    #[test]
    fn too_many_entries_widen_the_match_to_their_namespaces_and_then_to_every_vmim() {
        let few: BTreeSet<String> = ["ns1/vm-a".to_string()].into();
        assert_eq!(bounded_expression(&few), expression(&few));
        let many: BTreeSet<String> = (0..5000).map(|i| format!("ns{}/virtual-machine-{i:05}", i % 3)).collect();
        assert!(expression(&many).len() > MAX_EXPRESSION);
        assert_eq!(
            bounded_expression(&many),
            "has(object.spec.vmiName) && object.metadata.namespace in {'ns0': true, 'ns1': true, 'ns2': true}"
        );
        let spread: BTreeSet<String> = (0..20000).map(|i| format!("namespace-{i:05}/vm")).collect();
        assert_eq!(bounded_expression(&spread), "has(object.spec.vmiName)");
    }

    #[test]
    fn the_apply_body_sets_only_our_condition_of_one_webhook() {
        assert_eq!(
            apply_body("ValidatingWebhookConfiguration", "cfg", "w", "false"),
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "cfg"},
                "webhooks": [{"name": "w", "matchConditions": [{"name": "vmi-uses-a-cryptopassthrough", "expression": "false"}]}],
            })
        );
    }
}
