//! Accepting connections, serving them with hyper, and shutting down
//! gracefully.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::routes;

/// How long a graceful shutdown waits for in-flight requests before cutting
/// the remaining connections: long enough for the longest `/delay` (10 s) and
/// a large `/bytes` download, short enough that a stuck client cannot hold a
/// shutdown forever.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long to pause after an accept error that is not about one connection
/// (typically running out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves the echo endpoints on `listener` until `shutdown` resolves; then
/// stops accepting, lets in-flight requests finish (graceful) and returns.
///
/// Each connection speaks HTTP/1.1 (with keep-alive) or HTTP/2 over cleartext
/// with prior knowledge (h2c), detected from its first bytes. Accepted
/// sockets get `TCP_NODELAY`. Connections still open
/// 30 seconds after `shutdown` resolved are cut.
///
/// Accept errors never end the loop (they are logged and retried), so in
/// practice this returns `Ok(())`; the `Result` leaves room for fatal errors.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The timers let hyper enforce its header-read timeout (HTTP/1) and
    // keep-alive pings (HTTP/2) against idle or stuck peers.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());

    let graceful = GracefulShutdown::new();
    // The connection tasks, so that whatever outlives the grace period is
    // aborted when this set is dropped (also if `serve` itself is dropped).
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Reap finished connections so the set does not grow unbounded.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) if is_connection_error(&e) => {
                        tracing::debug!(error = %e, "echo: accept failed for one connection");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "echo: accept failed; retrying");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                // Small answers must not wait for Nagle's algorithm: it would
                // add latency to every benchmark request.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "echo: could not set TCP_NODELAY");
                }
                let service = service_fn(move |req| routes::handle(req, peer));
                let connection = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, %peer, "echo: connection ended with an error");
                    }
                });
            }
        }
    }

    // Stop accepting before waiting: new clients are refused rather than
    // left hanging in the backlog.
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("echo: connections still open after the grace period; cutting them");
    }
    connections.shutdown().await;
    Ok(())
}

/// Errors that concern only the connection being accepted.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Binds `addr` and serves the echo endpoints in the background on the
/// current tokio runtime; prints nothing. Meant for tests: bind
/// `127.0.0.1:0` and read the port from [`EchoServer::addr`].
///
/// # Errors
///
/// When `addr` cannot be bound.
pub async fn spawn(addr: SocketAddr) -> io::Result<EchoServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    // A dropped sender also resolves the receiver: dropping the handle stops
    // the server too.
    let task = tokio::spawn(serve(listener, async move {
        let _ = stopped.await;
    }));
    Ok(EchoServer {
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

/// A running echo server started by [`spawn`].
///
/// Dropping it stops the server gracefully in the background (it stops
/// accepting at once; in-flight requests finish); [`EchoServer::shutdown`]
/// does the same and waits for the end.
#[derive(Debug)]
pub struct EchoServer {
    /// The address the server listens on (with the actual port when bound to
    /// port 0).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl EchoServer {
    /// `http://{addr}`, for building request URLs.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, waits for in-flight requests to finish, and returns
    /// what [`serve`] returned.
    ///
    /// # Errors
    ///
    /// What [`serve`] returned, or an error if the server task panicked or
    /// was cancelled.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The task is left to finish its graceful shutdown on its own.
    }
}
