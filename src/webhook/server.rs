//! HTTPS serving on the webhook port: a listener bound with SO_REUSEPORT (two replicas on one
//! host share a port in tests; in a cluster each pod has its own), TLS per connection from
//! [`Certificates`] (a rotated certificate is used from the next connection on), HTTP/2 when the
//! client offers it in ALPN (kube-apiserver does), else HTTP/1.1, into the axum router. On shutdown
//! the listener closes and every connection is shut down gracefully (an idle keep-alive connection
//! at once, one in flight after its answer), so that kube-apiserver turns to another replica.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::error::{Error, Result};
use super::tls::Certificates;

/// A TLS handshake or a request's headers must arrive within this.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after a shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Binds `addr` with SO_REUSEADDR and SO_REUSEPORT.
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let io = |context: &str| {
        let context = format!("{context} {addr}");
        move |source| Error::Io { context, source }
    };
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(io("socket for"))?;
    socket.set_reuseaddr(true).map_err(io("SO_REUSEADDR on"))?;
    socket.set_reuseport(true).map_err(io("SO_REUSEPORT on"))?;
    socket.bind(addr).map_err(io("cannot bind the webhook address"))?;
    socket.listen(1024).map_err(io("cannot listen on"))
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then drains the connections.
pub async fn serve<C: Certificates + ?Sized>(
    listener: TcpListener,
    certs: Arc<C>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // No certificate yet (a self-managed one not created): kube-apiserver tries again.
        let Some(config) = certs.current() else { continue };
        let _ = stream.set_nodelay(true);
        let acceptor = TlsAcceptor::from(config);
        conns.spawn(connection(acceptor, stream, peer, app.clone(), stop_rx.clone()));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await.is_err() {
        conns.abort_all();
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    stop: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let (io, service) = (TokioIo::new(tls), TowerToHyperService::new(app));
    let result = if h2 {
        // kube-apiserver's client offers h2: every call of a replica's webhooks on one connection.
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(io, service);
        until_stopped(conn, stop, |c| c.graceful_shutdown()).await
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(READ_TIMEOUT)
            .serve_connection(io, service);
        until_stopped(conn, stop, |c| c.graceful_shutdown()).await
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "webhook connection ended");
    }
}

/// Drives `conn` to its end; once `stop` turns true, shuts it down gracefully and lets it finish.
async fn until_stopped<C, T>(
    conn: C,
    mut stop: watch::Receiver<bool>,
    shutdown: impl FnOnce(std::pin::Pin<&mut C>),
) -> T
where
    C: Future<Output = T>,
{
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        () = async { drop(stop.wait_for(|s| *s).await) } => {
            shutdown(conn.as_mut());
            conn.await
        }
    }
}
