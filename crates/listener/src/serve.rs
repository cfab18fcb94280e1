//! Serving an axum router (the admin and identity listeners) with the edge limits that
//! `axum::serve` does not set: hyper's HTTP/1.1 server with a head timeout, a bounded head, a
//! body deadline, a send timeout, a connection cap per listener and per address, a URI length
//! limit, one `Host` field per request, and a graceful drain on shutdown.
//!
//! The role renders the refusals that reach it ([`EdgeError`]) in its API's own format;
//! hyper answers what it refuses itself (a malformed or oversized head: 400, 431) without a
//! body, as nginx does.

use crate::body::DeadlineBody;
use crate::gate::ConnectionGate;
use crate::limits::Limits;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http::{Request, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tower::ServiceExt;

/// A request refused at the edge, before the router saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeError {
    /// The request target is longer than [`Limits::max_uri_len`] (414).
    UriTooLong,
    /// More than one `Host` field (RFC 9112 §3.2: 400).
    DuplicateHost,
    /// An HTTP/1.1 request with no `Host` field and no authority in its target (RFC 9112
    /// §3.2: 400).
    MissingHost,
}

impl EdgeError {
    /// The status this refusal answers with.
    pub fn status(self) -> StatusCode {
        match self {
            EdgeError::UriTooLong => StatusCode::URI_TOO_LONG,
            EdgeError::DuplicateHost | EdgeError::MissingHost => StatusCode::BAD_REQUEST,
        }
    }

    /// A sentence for the client.
    pub fn message(self) -> &'static str {
        match self {
            EdgeError::UriTooLong => "the request target is too long",
            EdgeError::DuplicateHost => "the request has more than one Host field",
            EdgeError::MissingHost => "an HTTP/1.1 request needs a Host field",
        }
    }
}

/// Renders an [`EdgeError`] for the request whose target is `uri`, in the API's format.
pub type RenderEdgeError = Arc<dyn Fn(&http::Uri, EdgeError) -> Response + Send + Sync>;

/// Checks a request head against the limits every listener applies after parsing: the
/// target's length, and exactly one `Host` field on HTTP/1.1 (none needed when the target
/// carries the authority).
pub fn check_head(
    version: http::Version,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    limits: &Limits,
) -> Result<(), EdgeError> {
    let target = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > limits.max_uri_len {
        return Err(EdgeError::UriTooLong);
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(EdgeError::DuplicateHost),
        (None, _) if version == http::Version::HTTP_11 && uri.authority().is_none() => {
            Err(EdgeError::MissingHost)
        }
        _ => Ok(()),
    }
}

/// One listener of a router: where it accepts, what it allows, how it renders refusals.
pub struct RouterListener {
    /// The bound socket.
    pub listener: TcpListener,
    /// The router.
    pub router: Router,
    /// The listener's limits.
    pub limits: Limits,
    /// Its connection gate (its counters are the listener's).
    pub gate: Arc<ConnectionGate>,
    /// Renders [`EdgeError`]s.
    pub render: RenderEdgeError,
    /// Its name in log lines (`admin`, `identity`).
    pub role: &'static str,
    /// TLS ([`crate::tls::server_config`]); `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(30);

impl RouterListener {
    /// Serves until `shutdown` resolves, then stops accepting and waits (at most 30 s) for
    /// the requests in flight; idle connections close at once.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let RouterListener {
            listener,
            router,
            limits,
            gate,
            render,
            role,
            tls,
        } = self;
        let tls = tls.map(tokio_rustls::TlsAcceptor::from);
        let limits = Arc::new(limits);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_head_bytes.max(8192))
            .keep_alive(true);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        accept_failed(role, &e).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let admission = match gate.admit(peer.ip()) {
                Ok(a) => a,
                Err(refusal) => {
                    tracing::debug!(role, %peer, %refusal, "connection refused");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let stream = SendTimeout::new(stream, limits.send_timeout);
            let service = {
                let router = router.clone();
                let limits = limits.clone();
                let render = render.clone();
                hyper::service::service_fn(move |req: Request<Incoming>| {
                    let router = router.clone();
                    let limits = limits.clone();
                    let render = render.clone();
                    async move {
                        if let Err(e) = check_head(req.version(), req.uri(), req.headers(), &limits)
                        {
                            let mut resp = render(req.uri(), e);
                            resp.headers_mut().insert(
                                header::CONNECTION,
                                http::HeaderValue::from_static("close"),
                            );
                            return Ok::<_, std::convert::Infallible>(resp);
                        }
                        let mut req =
                            req.map(|b| axum::body::Body::new(DeadlineBody::new(b, &limits)));
                        req.extensions_mut().insert(ConnectInfo(peer));
                        router.oneshot(req).await
                    }
                })
            };
            let watcher = graceful.watcher();
            let (http, tls, handshake_timeout) = (http.clone(), tls.clone(), limits.header_timeout);
            tokio::spawn(async move {
                let ended = match tls {
                    None => {
                        let conn = http.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(conn).await
                    }
                    // The handshake has the head's deadline: a client that stalls in it, or
                    // sends something else than a ClientHello, is dropped without an answer.
                    Some(acceptor) => {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                        {
                            Ok(Ok(stream)) => {
                                let conn = http.serve_connection(TokioIo::new(stream), service);
                                watcher.watch(conn).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(role, %peer, error = %e, "TLS handshake failed");
                                Ok(())
                            }
                            Err(_) => {
                                tracing::debug!(role, %peer, "TLS handshake timed out");
                                Ok(())
                            }
                        }
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!(role, %peer, error = %e, "connection ended with an error");
                }
                drop(admission);
            });
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(DRAIN) => {
                tracing::warn!(role, "shutdown: requests still running after 30 s were cut");
            }
        }
        Ok(())
    }
}

/// Backs off after a failed accept. Out of descriptors (EMFILE, ENFILE) the pending
/// connection stays in the backlog, so retrying at once would spin.
pub async fn accept_failed(role: &str, e: &io::Error) {
    tracing::warn!(role, error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// A client connection whose writes fail with `TimedOut` after waiting
/// [`Limits::send_timeout`] for the client to read; the timer exists only while a write
/// waits.
pub struct SendTimeout<S> {
    inner: S,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> SendTimeout<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        SendTimeout {
            inner,
            timeout,
            sleep: None,
        }
    }

    fn waited<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.sleep = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    self.sleep = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not read the response in time",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncRead for SendTimeout<TcpStream> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendTimeout<TcpStream> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.waited(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.waited(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.waited(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
