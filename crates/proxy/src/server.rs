//! The proxy listener: accepts connections, serves HTTP/1.1 (keep-alive) and h2c with hyper,
//! and drains in-flight requests on shutdown.

use crate::gateway::Gateway;
use crate::handler::{ConnInfo, handle};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Largest request head (request line and headers) accepted; bigger gets 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Serves the proxy on `listener` until `shutdown` resolves, then waits (up to 30 s) for
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(60))
        .max_buf_size(MAX_HEADER_BYTES);
    // HTTP/2 connections have no header-read timeout to end them: ping idle peers and drop the
    // ones that stop answering, so dead h2c clients do not hold descriptors forever.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(256);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let gw = gateway.clone();
                let info = Arc::new(ConnInfo::new(peer, local));
                let service = service_fn(move |req| {
                    let gw = gw.clone();
                    let info = info.clone();
                    async move { Ok::<_, Infallible>(handle(&gw, req, &info).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!("proxy shutdown: requests still running after 30 s were cut");
        }
    }
    Ok(())
}
