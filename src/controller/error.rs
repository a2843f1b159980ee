//! Every way a reconcile or the controller process fails, each counted by kind
//! (`cryptopass_reconcile_errors_total{reason}`).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("passthrough {0} has no metadata.uid (not stored by an apiserver)")]
    NoUid(String),
    #[error("cannot encode a patch: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("cannot infer a Kubernetes configuration: {0}")]
    InferConfig(#[from] kube::config::InferConfigError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("a watch stream ended: {0}")]
    WatchEnded(&'static str),
    #[error("webhook server: {0}")]
    Webhook(#[from] crate::webhook::Error),
}

impl Error {
    /// The `reason` label of `cryptopass_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "forbidden",
            Error::Kube(kube::Error::Api(s)) if s.code == 404 => "not_found",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::NoUid(_) => "no_uid",
            Error::Encode(_) => "encode",
            Error::Lease(_) => "lease",
            Error::Kubeconfig(_) | Error::InferConfig(_) => "config",
            Error::Io { .. } => "io",
            Error::WatchEnded(_) => "watch",
            Error::Webhook(_) => "webhook",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
