//! Thread-per-core serving: the proxy runs on its own OS threads, each with a single-threaded
//! runtime that accepts on a duplicate of the listening socket and keeps its own upstream
//! connections (nginx's worker model, inside one process).
//!
//! A connection, its requests, the upstream exchange and the response all stay on the thread
//! that accepted it: no work-stealing queue, no cross-thread wake-ups, no contended pool. The
//! admin and identity listeners keep running on the process's shared runtime.

use crate::gateway::Gateway;
use crate::server;
use std::cell::Cell;
use std::io;
use std::num::NonZeroUsize;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

thread_local! {
    /// The proxy worker running on this thread: 1.. for a worker, 0 for any other thread.
    static WORKER: Cell<u32> = const { Cell::new(0) };
}

/// The proxy worker this thread belongs to; 0 when it is not one (a shared runtime's thread,
/// whose sockets any of that runtime's threads may drive).
///
/// A socket is registered with the reactor of the runtime that opened it, so an upstream
/// connection is only reused by the worker that opened it.
pub(crate) fn current() -> u32 {
    WORKER.with(Cell::get)
}

/// Makes this thread count as worker `index` (tests of what is kept per worker).
#[cfg(test)]
pub(crate) fn set_current(index: u32) {
    WORKER.with(|w| w.set(index));
}

/// The running proxy workers.
pub struct Workers {
    done: Vec<oneshot::Receiver<io::Result<()>>>,
}

/// The proxy's TLS listener and its configuration ([`crate::tls::server_config`]).
pub struct TlsListener {
    /// The bound socket.
    pub listener: std::net::TcpListener,
    /// Its TLS configuration.
    pub config: Arc<rustls::ServerConfig>,
}

/// Starts `count` proxy workers on `listener`, and on `tls` when given (sockets are made
/// non-blocking). They share `edge` (one connection gate for both listeners), serve until
/// `shutdown` turns `true`, then drain like [`server::serve`].
pub fn spawn(
    listener: std::net::TcpListener,
    tls: Option<TlsListener>,
    gateway: Arc<Gateway>,
    edge: server::Edge,
    count: NonZeroUsize,
    shutdown: watch::Receiver<bool>,
) -> io::Result<Workers> {
    listener.set_nonblocking(true)?;
    if let Some(t) = &tls {
        t.listener.set_nonblocking(true)?;
    }
    let mut done = Vec::with_capacity(count.get());
    for index in 1..=count.get() {
        // Every worker polls its own duplicate of the socket; the kernel hands each new
        // connection to one of them (a busy worker wakes later, so the idle one takes it).
        let listener = listener.try_clone()?;
        let tls = match &tls {
            Some(t) => Some((t.listener.try_clone()?, t.config.clone())),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let gateway = gateway.clone();
        let edge = edge.clone();
        let mut shutdown = shutdown.clone();
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("gatehouse-proxy-{index}"))
            .spawn(move || {
                WORKER.with(|w| w.set(u32::try_from(index).unwrap_or(u32::MAX)));
                let result = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let tls_shutdown = shutdown.clone();
                    let plain =
                        server::serve(listener, gateway.clone(), edge.clone(), async move {
                            let _ = shutdown.wait_for(|stop| *stop).await;
                        });
                    let Some((tls_listener, config)) = tls else {
                        return plain.await;
                    };
                    let tls_listener = tokio::net::TcpListener::from_std(tls_listener)?;
                    let mut tls_shutdown = tls_shutdown;
                    let secure =
                        crate::tls::serve(tls_listener, gateway, edge, config, async move {
                            let _ = tls_shutdown.wait_for(|stop| *stop).await;
                        });
                    let (plain, secure) = tokio::join!(plain, secure);
                    plain.and(secure)
                });
                let _ = tx.send(result);
            })?;
        done.push(rx);
    }
    Ok(Workers { done })
}

impl Workers {
    /// Waits until every worker has stopped; the first error any of them met, if one did.
    pub async fn wait(self) -> io::Result<()> {
        let mut first = Ok(());
        for rx in self.done {
            let result = rx
                .await
                .unwrap_or_else(|_| Err(io::Error::other("a proxy worker thread panicked")));
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

/// How many workers to run by default: one per CPU this process may use.
pub fn default_count() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}
