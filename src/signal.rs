//! Process shutdown: the long-running commands (agent, controller's webhook server and keepers)
//! stop on the first SIGTERM or SIGINT.

/// Completes on the first SIGTERM or SIGINT.
pub async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
