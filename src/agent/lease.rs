//! The agent's liveness Lease `cryptopass-agent-<node>` in the release namespace (architecture.md,
//! "CryptoNode"): created when missing, renewed every 10 s; the controller treats it as stale after
//! 40 s (`AgentStale`). Not a leader election: one agent per node holds it. Only get, create and
//! update are used (the RBAC grants nothing else).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use super::node::MANAGER;

/// How often the Lease is renewed.
pub const RENEW_SECONDS: u64 = 10;
/// `leaseDurationSeconds`: stale after this without a renewal.
pub const DURATION_SECONDS: i32 = 40;

pub fn lease_name(node: &str) -> String {
    format!("cryptopass-agent-{node}")
}

pub struct Heartbeat {
    api: Api<Lease>,
    name: String,
    holder: String,
    last: Option<Lease>,
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl Heartbeat {
    pub fn new(client: Client, namespace: &str, node: &str) -> Heartbeat {
        Heartbeat {
            api: Api::namespaced(client, namespace),
            name: lease_name(node),
            holder: node.to_string(),
            last: None,
        }
    }

    fn stamped(&self, lease: Option<Lease>) -> Lease {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let mut l = lease.unwrap_or_else(|| Lease {
            metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
            spec: None,
        });
        let spec = l.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.holder.as_str()) {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions =
                Some(spec.lease_transitions.unwrap_or(0) + i32::from(spec.holder_identity.is_some()));
        }
        spec.holder_identity = Some(self.holder.clone());
        spec.lease_duration_seconds = Some(DURATION_SECONDS);
        spec.renew_time = Some(now);
        l
    }

    /// Renews the Lease (or creates it). A conflict (someone else wrote it) re-reads and retries once.
    pub async fn renew(&mut self) -> Result<(), kube::Error> {
        let pp = PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() };
        for _ in 0..2 {
            let current = match self.last.take() {
                Some(l) => Some(l),
                None => self.api.get_opt(&self.name).await?,
            };
            let r = match current {
                Some(l) => self.api.replace(&self.name, &pp, &self.stamped(Some(l))).await,
                None => self.api.create(&pp, &self.stamped(None)).await,
            };
            match r {
                Ok(l) => {
                    self.last = Some(l);
                    return Ok(());
                }
                Err(e) if matches!(code(&e), Some(409) | Some(404)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(kube::Error::Api(
            kube::core::Status::failure(&format!("Lease {} kept changing under us", self.name), "Conflict")
                .with_code(409)
                .boxed(),
        ))
    }
}
