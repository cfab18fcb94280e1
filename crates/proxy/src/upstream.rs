//! Connections to upstream services: pooled keep-alive HTTP/1.1 clients (one pool per distinct
//! connect timeout, since the timeout lives in the connector) and a body wrapper that enforces
//! the read timeout between chunks of a streamed response.

use crate::ProxyBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The HTTP client the proxy sends upstream requests with.
pub type UpstreamClient = Client<HttpConnector, ProxyBody>;

/// Upstream clients by connect timeout; each owns a connection pool shared by every service
/// with that timeout, so pools survive configuration changes.
#[derive(Default)]
pub struct UpstreamClients {
    clients: Mutex<HashMap<u32, UpstreamClient>>,
}

impl UpstreamClients {
    /// The client for `connect_timeout_ms` (created on first use).
    pub fn get(&self, connect_timeout_ms: u32) -> UpstreamClient {
        let mut clients = self.clients.lock();
        clients
            .entry(connect_timeout_ms)
            .or_insert_with(|| {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(Duration::from_millis(u64::from(
                    connect_timeout_ms,
                ))));
                connector.set_keepalive(Some(Duration::from_secs(60)));
                connector.enforce_http(true);
                Client::builder(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .pool_max_idle_per_host(1024)
                    .retry_canceled_requests(true)
                    .set_host(false)
                    .build(connector)
            })
            .clone()
    }
}

/// How a failed upstream exchange maps to a gateway error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// Could not connect (refused, unreachable, connect timeout): retryable.
    Connect,
    /// The host name did not resolve.
    Resolve,
    /// Connected, then the exchange failed (reset, garbage).
    Exchange,
}

/// Classifies a client error.
pub fn classify(e: &hyper_util::client::legacy::Error) -> UpstreamFailure {
    if e.is_connect() {
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(s) = source {
            let text = s.to_string();
            if text.contains("dns error") || text.contains("failed to lookup address") {
                return UpstreamFailure::Resolve;
            }
            source = s.source();
        }
        UpstreamFailure::Connect
    } else {
        UpstreamFailure::Exchange
    }
}

pin_project_lite::pin_project! {
    /// A response body that fails when the upstream sends nothing for `timeout`.
    pub struct ReadTimeoutBody<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: tokio::time::Sleep,
        timeout: Duration,
    }
}

impl<B> ReadTimeoutBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(timeout),
            timeout,
        }
    }
}

/// The upstream went quiet for longer than the read timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream read timed out")]
pub struct ReadTimedOut;

impl<B> Body for ReadTimeoutBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + *this.timeout;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ReadTimedOut)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
