//! `cryptopass controller`: runs until SIGTERM/SIGINT (exit 0), exit 2 when it cannot start.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{Error, Outcome};
use crate::controller::run::{Options, run};

pub struct ControllerArgs {
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub metrics_addr: SocketAddr,
    pub identity: Option<String>,
    pub webhook: Option<crate::webhook::Serving>,
}

pub fn run_blocking(a: ControllerArgs) -> Outcome {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io { context: "cannot start the async runtime".into(), source })?;
    let opts = Options {
        kubeconfig: a.kubeconfig,
        namespace: a.namespace,
        metrics_addr: a.metrics_addr,
        identity: a.identity,
        webhook: a.webhook,
    };
    rt.block_on(run(opts)).map(|()| 0).map_err(|e| Error::Usage(format!("controller: {e}")))
}
