//! HTTP/2 on the proxy listeners: cleartext with prior knowledge (h2c, RFC 9113 §3.3) on the
//! plain one, and by ALPN on the TLS one ([`crate::tls`]). A plain connection whose first
//! bytes are the HTTP/2 preface is handed from the HTTP/1.1 codec to hyper's HTTP/2 server,
//! and each stream runs through the same [`handle`] and plugin chain as an HTTP/1.1 request.
//! Upstreams are still spoken to in HTTP/1.1.
//!
//! Limits (docs/configuration.md): at most [`MAX_CONCURRENT_STREAMS`] streams at once, a
//! header list of at most the listener's head size, hyper's defaults for flow-control windows
//! and for streams reset before they are answered (the rapid-reset bound), the listener's body
//! deadline on every request body, and the idle timeout once no stream is open.

use crate::ProxyBody;
use crate::context::RequestId;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::handler::{ConnInfo, Forward, Reply, handle};
use bytes::{Buf, Bytes};
use gatehouse_listener::Limits;
use gatehouse_listener::body::DeadlineBody;
use gatehouse_listener::serve::{EdgeError, SendTimeout, check_head};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Streams one connection may have open at once (nginx's `http2_max_concurrent_streams`).
pub const MAX_CONCURRENT_STREAMS: u32 = 128;

/// Streams the client may reset before they are answered (h2's default).
const MAX_PENDING_RESETS: usize = 20;

/// How often an idle connection is looked at.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Whether `buf`, the first bytes of a connection that are not an HTTP/1 request head, is the
/// HTTP/2 preface: `Some(true)` when it is whole, `None` while it may still become one.
pub(crate) fn preface(buf: &[u8]) -> Option<bool> {
    let n = buf.len().min(PREFACE.len());
    match (buf[..n] == PREFACE[..n], n == PREFACE.len()) {
        (false, _) => Some(false),
        (true, true) => Some(true),
        (true, false) => None,
    }
}

/// Serves an HTTP/2 connection (h2c with [`Replay`] in front, or TLS that chose `h2`)
/// until the client closes it, it is idle for the idle timeout, or the proxy shuts down
/// (then open streams finish first).
pub(crate) async fn serve<I>(
    io: I,
    gateway: Arc<Gateway>,
    info: ConnInfo,
    limits: Arc<Limits>,
    stopping: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX))
        // The rapid-reset bound (CVE-2023-44487): streams reset by the client before they
        // are answered, and streams this side had to reset, close the connection past these.
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(Some(1024));
    let activity = Arc::new(Activity::new());
    let info = Arc::new(info);
    let service = {
        let activity = activity.clone();
        let limits = limits.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (gateway, info, limits) = (gateway.clone(), info.clone(), limits.clone());
            let open = Open::new(activity.clone());
            async move {
                let resp = exchange(&gateway, &info, &limits, req).await;
                Ok::<_, std::convert::Infallible>(resp.map(|body| Tracked { body, _open: open }))
            }
        })
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let idle = || activity.idle_for() >= limits.idle_timeout;
    drive(
        conn,
        |c| c.graceful_shutdown(),
        stopping,
        Some(&idle),
        "HTTP/2 connection ended with an error",
    )
    .await;
}

/// Drives a hyper connection until it ends. Its graceful shutdown (`shutdown`) starts when the
/// proxy stops, or when `idle` (looked at every [`IDLE_CHECK`]) says it has had no open stream
/// for too long; requests in flight then finish first.
pub(crate) async fn drive<C, E>(
    mut conn: Pin<&mut C>,
    shutdown: impl Fn(Pin<&mut C>),
    mut stopping: watch::Receiver<bool>,
    idle: Option<&(dyn Fn() -> bool + Sync)>,
    failed: &'static str,
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut closing = *stopping.borrow();
    if closing {
        shutdown(conn.as_mut());
    }
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "{failed}");
                }
                return;
            }
            changed = stopping.changed(), if !closing => {
                if changed.is_err() || *stopping.borrow() {
                    closing = true;
                    shutdown(conn.as_mut());
                }
            }
            () = tokio::time::sleep(IDLE_CHECK), if !closing && idle.is_some() => {
                if idle.is_some_and(|quiet| quiet()) {
                    closing = true;
                    shutdown(conn.as_mut());
                }
            }
        }
    }
}

/// One stream (or one HTTP/1.1 request over TLS): the request as the handler takes it, the
/// reply as hyper sends it.
pub(crate) async fn exchange(
    gateway: &Gateway,
    info: &ConnInfo,
    limits: &Limits,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    // An HTTP/1.1 request over TLS may ask to switch to WebSocket: hyper hands the connection
    // over once the 101 is sent.
    let on_upgrade = (req.version() == http::Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE))
    .then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    // HTTP/2 carries the host in `:authority` (RFC 9113 §8.3.1): it stands in for `Host`, and
    // the target is routed and sent upstream in origin form, as an HTTP/1.1 request's.
    if let Some(authority) = parts.uri.authority()
        && !parts.headers.contains_key(header::HOST)
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, host);
    }
    if let Some(target) = parts.uri.path_and_query() {
        parts.uri = Uri::from(target.clone());
    }
    if let Err(e) = check_head(parts.version, &parts.uri, &parts.headers, limits) {
        let error = match e {
            EdgeError::UriTooLong => GatewayError::UriTooLong,
            EdgeError::DuplicateHost | EdgeError::MissingHost => GatewayError::BadRequest,
        };
        return error.response(&RequestId::next(), parts.headers.get(header::ACCEPT));
    }
    let method_head = parts.method == http::Method::HEAD;
    let body = if body.is_end_stream() {
        crate::empty_body()
    } else {
        DeadlineBody::new(body, limits).boxed_unsync()
    };
    let mut req = crate::ProxyRequest {
        parts,
        body,
        upstream_path: String::new(),
    };
    let mut reply = handle(gateway, &mut req, info).await;
    let upgraded = match &mut reply {
        Reply::Forward(f) => f.upgraded.take(),
        Reply::Parts(_) => None,
    };
    let mut resp = response(reply, method_head);
    if let (Some((upstream, idle)), Some(on_upgrade)) = (upgraded, on_upgrade) {
        let headers = resp.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(client) => {
                    if let Err(e) = upstream.relay(TokioIo::new(client), &[], idle).await {
                        tracing::debug!(error = %e, "upgraded connection ended with an error");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "the client's connection did not upgrade"),
            }
        });
    }
    resp
}

/// Fields that are this connection's own in HTTP/1.1 and malformed in HTTP/2 (RFC 9113
/// §8.2.2).
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// A reply as an HTTP/2 response: the same fields an HTTP/1.1 client gets, less the
/// connection-specific ones.
fn response(reply: Reply, method_head: bool) -> Response<ProxyBody> {
    let mut resp = match reply {
        Reply::Parts(resp) => resp,
        Reply::Forward(forward) => forwarded(*forward, method_head),
    };
    let headers = resp.headers_mut();
    for name in CONNECTION_SPECIFIC {
        headers.remove(name);
    }
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, crate::server::date());
    }
    resp
}

/// An upstream response forwarded as received, with the fields the gateway adds.
fn forwarded(f: Forward, method_head: bool) -> Response<ProxyBody> {
    let head = &f.head;
    let mut headers = HeaderMap::with_capacity(head.forwarded_fields().size_hint().0 + 6);
    for (name, value) in head.forwarded_fields() {
        // The upstream's head was parsed as HTTP/1.1; a field HTTP/2 cannot carry is dropped.
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    let version = if head.version == http::Version::HTTP_10 {
        "1.0"
    } else {
        "1.1"
    };
    if let Ok(via) = HeaderValue::from_str(&format!("{version} {}", crate::VIA_TOKEN)) {
        headers.append(header::VIA, via);
    }
    if !head.has_server() {
        headers.insert(
            header::SERVER,
            HeaderValue::from_static(crate::SERVER_TOKEN),
        );
    }
    headers.insert(
        "x-gatehouse-upstream-latency",
        HeaderValue::from(f.upstream_latency),
    );
    headers.insert(
        "x-gatehouse-proxy-latency",
        HeaderValue::from(f.proxy_latency),
    );
    headers.insert("x-gatehouse-request-id", f.request_id.clone());
    if let Some(n) = head.declared_length() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let body = if method_head {
        crate::empty_body()
    } else {
        f.body
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.headers_mut() = headers;
    resp
}

/// When the connection last had no open stream, and how many it has.
struct Activity {
    started: Instant,
    open: AtomicUsize,
    /// Milliseconds from `started` to when the last stream closed.
    quiet_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            open: AtomicUsize::new(0),
            quiet_since: AtomicU64::new(0),
        }
    }

    /// How long no stream has been open (zero while one is).
    fn idle_for(&self) -> Duration {
        if self.open.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let quiet = Duration::from_millis(self.quiet_since.load(Ordering::Acquire));
        self.started.elapsed().saturating_sub(quiet)
    }
}

/// An open stream: from its request until its response body is sent or the stream is reset.
struct Open(Arc<Activity>);

impl Open {
    fn new(activity: Arc<Activity>) -> Self {
        activity.open.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.quiet_since.store(ms, Ordering::Release);
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its stream counted as open until it is dropped.
struct Tracked {
    body: ProxyBody,
    _open: Open,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection with the bytes the HTTP/1.1 codec already read put back in front.
pub(crate) struct Replay {
    /// What was read.
    pub(crate) read: Bytes,
    /// The connection.
    pub(crate) inner: SendTimeout<TcpStream>,
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.has_remaining() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
