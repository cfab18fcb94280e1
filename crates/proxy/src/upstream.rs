//! Connections to upstream services: a keep-alive pool per upstream (host, port, connect
//! timeout) over hyper's HTTP/1.1 client connections, and the response body that enforces the
//! read timeout and gives its connection back to the pool once the response is read to the end.
//!
//! The pool is deliberately small: a stack of idle connections behind a mutex that is never
//! held across an `.await`. A request takes the most recently used connection (the one least
//! likely to have been closed by the upstream); a connection goes back when its response body
//! has ended, so no task is spawned per request to wait for that.

use crate::ProxyBody;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How long an idle upstream connection is kept for reuse.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream; more are closed when they come back.
const MAX_IDLE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    host: String,
    port: u16,
    connect_timeout_ms: u32,
}

/// The pools of every upstream the running configurations use. A pool lives as long as a
/// snapshot refers to it, so pools (and their warm connections) survive configuration changes
/// and are closed once no service uses the upstream any more.
#[derive(Default)]
pub struct UpstreamPools {
    pools: Mutex<HashMap<PoolKey, Weak<HostPool>>>,
}

impl UpstreamPools {
    /// The pool for `host:port` with this connect timeout (created on first use).
    pub fn get(&self, host: &str, port: u16, connect_timeout_ms: u32) -> Arc<HostPool> {
        let key = PoolKey {
            host: host.to_owned(),
            port,
            connect_timeout_ms,
        };
        let mut pools = self.pools.lock();
        pools.retain(|_, pool| pool.strong_count() > 0);
        if let Some(pool) = pools.get(&key).and_then(Weak::upgrade) {
            return pool;
        }
        let pool = Arc::new(HostPool {
            connect_timeout: Duration::from_millis(u64::from(connect_timeout_ms)),
            host: key
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            idle: Mutex::new(Vec::new()),
        });
        pools.insert(key, Arc::downgrade(&pool));
        pool
    }
}

/// The keep-alive connections to one upstream.
pub struct HostPool {
    host: String,
    port: u16,
    connect_timeout: Duration,
    idle: Mutex<Vec<IdleConn>>,
}

impl std::fmt::Debug for HostPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPool")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("idle", &self.idle.lock().len())
            .finish()
    }
}

struct IdleConn {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The host name did not resolve.
    #[error("could not resolve the upstream host: {0}")]
    Resolve(std::io::Error),
    /// No connection could be made (refused, unreachable, connect timeout): retryable.
    #[error("could not connect to the upstream: {0}")]
    Connect(std::io::Error),
    /// A reused keep-alive connection turned out closed by the upstream before it answered
    /// (the request may or may not have reached it): retryable for requests without a body.
    #[error("reused upstream connection closed: {0}")]
    Stale(hyper::Error),
    /// Connected, then the exchange failed (reset, garbage, closed early).
    #[error("upstream exchange failed: {0}")]
    Exchange(#[from] hyper::Error),
}

impl UpstreamError {
    /// Whether another attempt may succeed (for requests that can be sent again).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Stale(_))
    }
}

impl HostPool {
    /// Sends `req` (its URI in origin form) on an idle connection, or on a new one when none
    /// is left. A request that a pooled connection could not take (the upstream closed it
    /// while idle) comes back unsent and goes to the next connection.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Lease::new(self, sender))),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => {
                        let e = e.into_error();
                        return Err(if e.is_incomplete_message() {
                            UpstreamError::Stale(e)
                        } else {
                            UpstreamError::Exchange(e)
                        });
                    }
                },
            }
        }
        let mut sender = self.connect().await?;
        let resp = sender.send_request(req).await?;
        Ok((resp, Lease::new(self, sender)))
    }

    fn take_idle(&self) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock();
        while let Some(conn) = idle.pop() {
            if conn.since.elapsed() > IDLE_TIMEOUT {
                // The stack is ordered by return time: everything below is older still.
                idle.clear();
                return None;
            }
            if !conn.sender.is_closed() {
                return Some(conn.sender);
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(IdleConn {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<SendRequest<ProxyBody>, UpstreamError> {
        let connecting = async {
            let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(UpstreamError::Resolve)?;
            let mut last = None;
            for addr in addrs {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = Some(e),
                }
            }
            Err(UpstreamError::Connect(last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address")
            })))
        };
        let stream = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| {
                UpstreamError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            })??;
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(IDLE_TIMEOUT);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// A connection lent to one exchange; it goes back to its pool only through
/// [`Lease::release`], i.e. when the response was read to the end.
pub struct Lease {
    pool: Arc<HostPool>,
    sender: SendRequest<ProxyBody>,
}

impl Lease {
    fn new(pool: &Arc<HostPool>, sender: SendRequest<ProxyBody>) -> Self {
        Self {
            pool: pool.clone(),
            sender,
        }
    }

    /// Gives the connection back for the next request.
    pub fn release(self) {
        self.pool.put(self.sender);
    }
}

pin_project_lite::pin_project! {
    /// An upstream response body: fails when the upstream sends nothing for the read timeout,
    /// and returns the connection to its pool when the body has ended. Dropped before its end,
    /// it closes the connection (the rest of the body is never read).
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        #[pin]
        sleep: tokio::time::Sleep,
        timeout: Duration,
        armed: bool,
        lease: Option<Lease>,
    }

    impl PinnedDrop for UpstreamBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(lease) = this.lease.take()
                && this.inner.is_end_stream()
            {
                lease.release();
            }
        }
    }
}

impl UpstreamBody {
    /// Wraps `inner`, read with `timeout` between chunks.
    pub fn new(inner: Incoming, timeout: Duration, lease: Lease) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(timeout),
            timeout,
            armed: false,
            lease: Some(lease),
        }
    }
}

/// The upstream went quiet for longer than the read timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream read timed out")]
pub struct ReadTimedOut;

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                // The timer is armed only while waiting, so a body that is already here costs
                // no timer at all.
                *this.armed = false;
                match &frame {
                    None => {
                        if let Some(lease) = this.lease.take() {
                            lease.release();
                        }
                    }
                    Some(Err(_)) => *this.lease = None,
                    Some(Ok(_)) => {}
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !*this.armed {
                    *this.armed = true;
                    let deadline = tokio::time::Instant::now() + *this.timeout;
                    this.sleep.as_mut().reset(deadline);
                }
                match this.sleep.poll(cx) {
                    Poll::Ready(()) => {
                        *this.lease = None;
                        Poll::Ready(Some(Err(Box::new(ReadTimedOut))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
