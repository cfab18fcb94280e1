//! The proxy listener: accepts connections and serves HTTP/1.x on them with the proxy's own
//! codec ([`crate::h1`]), keep-alive and pipelining included, and drains in-flight requests on
//! shutdown.
//!
//! Each connection is one task that reads a request head, runs the request through
//! [`handle`], writes the response head together with the first piece of the body, and streams
//! the rest. A request body is read from the connection by the body object the request
//! carries ([`ClientBody`]), so it streams upstream at the client's pace; the connection goes
//! on to the next request only once that body was read to its end (otherwise it closes).

use crate::context::RequestId;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::h1::chunked::{self, Chunk, ChunkedDecoder};
use crate::h1::{self, HeadError};
use crate::handler::{ConnInfo, Forward, Reply, handle, via_field};
use crate::{ProxyBody, ProxyRequest};
use bytes::{Bytes, BytesMut};
use gatehouse_listener::body::DeadlineBody;
use gatehouse_listener::gate::{Admission, ConnectionGate};
use gatehouse_listener::serve::{EdgeError, SendTimeout, check_head};
use gatehouse_listener::{ConnectionBudget, Limits};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a proxy listener allows its clients ([`Limits`]: head and idle timeouts, body
/// deadline, send timeout, URI and head sizes), and its connection gate.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The limits.
    pub limits: Arc<Limits>,
    /// Counts the listener's connections, in all and per address.
    pub gate: Arc<ConnectionGate>,
}

impl Edge {
    /// An edge with `limits` and a gate sized by them.
    pub fn new(limits: Limits) -> Edge {
        Edge {
            gate: ConnectionGate::new(limits.max_connections, limits.max_connections_per_ip),
            limits: Arc::new(limits),
        }
    }
}

impl Default for Edge {
    /// The default limits, with the proxy's share of the descriptor limit.
    fn default() -> Edge {
        Edge::new(Limits::with_connections(ConnectionBudget::current().proxy))
    }
}
/// Response bodies pieces up to this size are copied next to their framing and written
/// with it in one call; larger ones are written on their own.
const COALESCE: usize = 16 * 1024;
const READ_BUF: usize = 8 * 1024;

/// Serves the proxy on `listener` until `shutdown` resolves, then waits (up to 30 s) for
/// requests in flight; idle keep-alive connections are closed at once. Connections beyond
/// the edge's gate are closed as they are accepted.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    edge: Edge,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let (stop, stopping) = watch::channel(false);
    let live = Arc::new(());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        gatehouse_listener::serve::accept_failed("proxy", &e).await;
                        continue;
                    }
                };
                let admission = match edge.gate.admit(peer.ip()) {
                    Ok(a) => a,
                    Err(refusal) => {
                        tracing::debug!(%peer, %refusal, "connection refused");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = Connection {
                    stream: Arc::new(stream),
                    gateway: gateway.clone(),
                    info: ConnInfo::new(peer, local),
                    limits: edge.limits.clone(),
                    stopping: stopping.clone(),
                    stop_signal: None,
                    deadline_armed: false,
                    served: false,
                    _live: live.clone(),
                    _admission: admission,
                };
                tokio::spawn(conn.run());
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while Arc::strong_count(&live) > 1 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("proxy shutdown: requests still running after 30 s were cut");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

struct Connection {
    stream: Arc<TcpStream>,
    gateway: Arc<Gateway>,
    info: ConnInfo,
    limits: Arc<Limits>,
    /// Changes (to `true`) when the proxy starts shutting down.
    stopping: watch::Receiver<bool>,
    /// Wakes the connection's task when `stopping` changes: made and registered at the
    /// connection's first idle wait, then left registered ([`Connection::wait`]).
    stop_signal: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The header deadline holds the task's waker since it was last polled, and has not
    /// fired since.
    deadline_armed: bool,
    /// A request was read on this connection (so it is not HTTP/2's).
    served: bool,
    /// Counts the connections still open, for the shutdown drain.
    _live: Arc<()>,
    /// The connection's slot in the listener's gate.
    _admission: Admission,
}

/// What ended one wait for more of a request head.
enum Woke {
    /// The client sent something (or closed: the read tells).
    Readable,
    /// The connection failed.
    Failed,
    /// The header deadline fired.
    Deadline,
    /// The proxy is shutting down.
    Stop,
}

/// What ended the wait for a request head.
enum Wait {
    /// A complete head, parsed into the connection's request.
    Head,
    /// The client closed, timed out, or the proxy is shutting down: close quietly.
    Close,
    /// A malformed or oversized head: answer, then close.
    Refuse(GatewayError),
    /// The HTTP/2 preface opened the connection: it is HTTP/2's.
    Http2,
}

impl Connection {
    async fn run(mut self) {
        let mut buf = BytesMut::with_capacity(READ_BUF);
        let mut out = Vec::with_capacity(READ_BUF);
        // One timer for the connection's whole life, moved only when it fires (or when a
        // partial head must arrive sooner than the idle limit): keep-alive waits cost no
        // timer registration per request.
        let header_deadline = tokio::time::sleep(self.limits.idle_timeout);
        tokio::pin!(header_deadline);
        // The request being served: each head is parsed into it where it lies, and the header
        // map's allocation serves every request of the connection.
        let mut req = ProxyRequest {
            parts: http::Request::new(()).into_parts().0,
            body: crate::empty_body(),
            upstream_path: String::new(),
        };
        loop {
            match self
                .read_head(&mut buf, header_deadline.as_mut(), &mut req.parts)
                .await
            {
                Wait::Head => {}
                Wait::Close => return,
                Wait::Http2 => return self.serve_http2(buf).await,
                Wait::Refuse(e) => {
                    let resp = e.response(&RequestId::next(), None);
                    let version = Version::HTTP_11;
                    let written = write_response(
                        &self.stream,
                        self.limits.send_timeout,
                        &mut out,
                        Reply::Parts(resp),
                        version,
                        false,
                        false,
                    );
                    if written.await.is_ok() {
                        linger_close(&self.stream).await;
                    }
                    return;
                }
            }
            self.served = true;
            let exchanged = self.exchange(&mut req, &mut buf, &mut out).await;
            req.clear();
            match exchanged {
                Ok(Exchanged::Done(true)) if !self.stopping() => {}
                Ok(Exchanged::Done(_)) => return linger_close(&self.stream).await,
                Ok(Exchanged::Upgraded(upstream, idle)) => {
                    return self.relay(upstream, idle, buf).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Reads until a complete request head is in `buf`, and parses it into `parts`.
    ///
    /// The wait may last the idle timeout while nothing of the head has arrived, and the
    /// header timeout from the first byte of a head that is not complete at once.
    async fn read_head(
        &mut self,
        buf: &mut BytesMut,
        mut deadline: Pin<&mut tokio::time::Sleep>,
        parts: &mut http::request::Parts,
    ) -> Wait {
        let mut limit = tokio::time::Instant::now() + self.limits.idle_timeout;
        let mut head_started = false;
        loop {
            if !buf.is_empty() {
                match h1::parse_request(buf, self.limits.max_head_bytes, parts) {
                    Ok(true) => {
                        return match check_head(
                            parts.version,
                            &parts.uri,
                            &parts.headers,
                            &self.limits,
                        ) {
                            Ok(()) => Wait::Head,
                            Err(EdgeError::UriTooLong) => Wait::Refuse(GatewayError::UriTooLong),
                            Err(EdgeError::DuplicateHost | EdgeError::MissingHost) => {
                                Wait::Refuse(GatewayError::BadRequest)
                            }
                        };
                    }
                    Ok(false) => {}
                    Err(HeadError::TooLarge) => return Wait::Refuse(GatewayError::HeadersTooLarge),
                    // Not an HTTP/1 head: HTTP/2 with prior knowledge, if it opens the
                    // connection (checked only here, off the HTTP/1 path).
                    Err(_) if !self.served => match crate::http2::preface(buf) {
                        Some(true) => return Wait::Http2,
                        Some(false) => return Wait::Refuse(GatewayError::BadRequest),
                        None => {}
                    },
                    Err(_) => return Wait::Refuse(GatewayError::BadRequest),
                }
            }
            h1::reserve_read(buf, READ_BUF);
            match h1::try_read_some(&self.stream, buf) {
                Ok(0) => return Wait::Close,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Wait::Close,
            }
            // Nothing to read: wait for the client, the deadline or shutdown. Between requests
            // (nothing buffered) shutdown closes the connection at once.
            let idle = buf.is_empty();
            if idle && self.stopping() {
                return Wait::Close;
            }
            if !idle && !head_started {
                // Part of a head: the rest must come within the header timeout.
                head_started = true;
                limit = limit.min(tokio::time::Instant::now() + self.limits.header_timeout);
                if deadline.deadline() > limit {
                    deadline.as_mut().reset(limit);
                    self.deadline_armed = false;
                }
            }
            match self.wait(deadline.as_mut(), idle).await {
                Woke::Readable => {}
                Woke::Failed | Woke::Stop => return Wait::Close,
                Woke::Deadline => {
                    if tokio::time::Instant::now() >= limit {
                        return Wait::Close;
                    }
                    deadline.as_mut().reset(limit);
                    self.deadline_armed = false;
                }
            }
        }
    }

    /// Relays the connection to the upstream that switched protocols with it, `early` (what
    /// the client sent after its request head) first.
    async fn relay(self, upstream: crate::upstream::Upgraded, idle: Duration, early: BytesMut) {
        let Connection {
            stream,
            _live,
            _admission,
            ..
        } = self;
        // An upgrade request has no body, so nothing else holds the socket.
        let Ok(stream) = Arc::try_unwrap(stream) else {
            return;
        };
        if let Err(e) = upstream.relay(stream, &early, idle).await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    }

    /// Hands the connection to the HTTP/2 server, with the bytes read so far.
    async fn serve_http2(self, buf: BytesMut) {
        let Connection {
            stream,
            gateway,
            info,
            limits,
            stopping,
            _live,
            _admission,
            ..
        } = self;
        // Nothing else holds the socket before the first request's body is read.
        let Ok(stream) = Arc::try_unwrap(stream) else {
            return;
        };
        let io = crate::http2::Replay {
            read: buf.freeze(),
            inner: SendTimeout::new(stream, limits.send_timeout),
        };
        crate::http2::serve(io, gateway, info, limits, stopping).await;
    }

    /// Whether the proxy is shutting down.
    fn stopping(&self) -> bool {
        // An error: the sender is gone, which it only is once the listener has stopped.
        !matches!(self.stopping.has_changed(), Ok(false))
    }

    /// Waits until the client sends more, the header deadline fires, or (when `idle`) the
    /// proxy starts shutting down.
    ///
    /// Only the socket's readiness is polled on every wait. A connection is one task, whose
    /// waker never changes: the deadline keeps it from its first poll until it fires (then
    /// [`Connection::read_head`] moves it and it is polled again), and the shutdown signal,
    /// registered at the first idle wait, keeps it for the connection's life; when woken,
    /// [`Connection::stopping`] tells whether it was the signal. This spares every keep-alive
    /// wait a timer poll and a registration with the shutdown channel.
    fn wait<'a>(
        &'a mut self,
        mut deadline: Pin<&'a mut tokio::time::Sleep>,
        idle: bool,
    ) -> impl Future<Output = Woke> + 'a {
        std::future::poll_fn(move |cx| {
            match self.stream.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(Woke::Readable),
                Poll::Ready(Err(_)) => return Poll::Ready(Woke::Failed),
                Poll::Pending => {}
            }
            if !self.deadline_armed || deadline.is_elapsed() {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Deadline);
                }
                self.deadline_armed = true;
            }
            if idle && self.stopping() {
                return Poll::Ready(Woke::Stop);
            }
            if idle && self.stop_signal.is_none() {
                let mut stopping = self.stopping.clone();
                let mut signal: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
                    let _ = stopping.changed().await;
                });
                if signal.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Stop);
                }
                self.stop_signal = Some(signal);
            }
            Poll::Pending
        })
    }

    /// One request (its head parsed into `req`) and its response; `Ok(true)` when the
    /// connection can carry another.
    async fn exchange(
        &mut self,
        req: &mut ProxyRequest,
        buf: &mut BytesMut,
        out: &mut Vec<u8>,
    ) -> io::Result<Exchanged> {
        let parts = &mut req.parts;
        let version = parts.version;
        let method_head = parts.method == Method::HEAD;
        let mut keep_alive = h1::keeps_alive(version, &parts.headers);
        let framing = match request_framing(parts) {
            Ok(f) => f,
            Err(e) => {
                let resp = e.response(&RequestId::next(), parts.headers.get(header::ACCEPT));
                write_response(
                    &self.stream,
                    self.limits.send_timeout,
                    out,
                    Reply::Parts(resp),
                    version,
                    method_head,
                    false,
                )
                .await?;
                return Ok(Exchanged::Done(false));
            }
        };
        // The framing headers are this hop's: the handler decides the upstream's framing. The
        // proxy answers `Expect: 100-continue` itself and sends the body upstream at once.
        let (body, shared) = match framing {
            None => (crate::empty_body(), None),
            Some(framing) => {
                if let BodyFraming::Chunked(_) = framing {
                    parts.headers.remove(header::TRANSFER_ENCODING);
                }
                let expects = parts.headers.remove(header::EXPECT);
                let wants_continue = version == Version::HTTP_11
                    && expects.is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
                let shared = Arc::new(Mutex::new(BodyState {
                    buf: std::mem::take(buf),
                    framing,
                    failed: false,
                }));
                let body = ClientBody {
                    stream: self.stream.clone(),
                    state: shared.clone(),
                    ended: false,
                    // Sent when the body is first wanted: a request refused before that (no
                    // route, authentication) spares the client the upload.
                    continue_unsent: if wants_continue { CONTINUE.len() } else { 0 },
                };
                (
                    DeadlineBody::new(body, &self.limits).boxed_unsync(),
                    Some(shared),
                )
            }
        };
        req.body = body;
        // A body the handler did not take (the request was answered before it went upstream)
        // stays in `req` until the connection clears it after the response.
        let mut resp = handle(&self.gateway, req, &self.info).await;
        if let Reply::Forward(f) = &mut resp
            && let Some((upstream, idle)) = f.upgraded.take()
        {
            // 101: the head goes out as received, with the switch's own fields, and the
            // connection then belongs to the relay.
            out.clear();
            write_forward_head(out, f, version, false);
            out.extend_from_slice(b"connection: upgrade\r\nupgrade: websocket\r\n\r\n");
            write_all(&self.stream, self.limits.send_timeout, out).await?;
            return Ok(Exchanged::Upgraded(upstream, idle));
        }
        if let Some(shared) = shared {
            // The connection continues only after the whole request body was read.
            let mut state = shared.lock();
            if !state.failed && state.framing.is_done() {
                *buf = std::mem::take(&mut state.buf);
            } else {
                keep_alive = false;
            }
        }
        if self.stopping() {
            keep_alive = false;
        }
        write_response(
            &self.stream,
            self.limits.send_timeout,
            out,
            resp,
            version,
            method_head,
            keep_alive,
        )
        .await
        .map(Exchanged::Done)
    }
}

/// How an exchange ended.
enum Exchanged {
    /// The response was sent; `true` when the connection may carry another request.
    Done(bool),
    /// The upstream switched protocols (WebSocket): the connection is relayed to it, idle for
    /// at most this long.
    Upgraded(crate::upstream::Upgraded, Duration),
}

/// How long a closing connection keeps reading what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// How much it reads at most.
const LINGER_BYTES: usize = 1 << 20;

/// Closes a connection the way RFC 9112 §9.6 asks: stop sending, then read and drop what the
/// client still sends for a moment (a request body nobody read), so that a client that is
/// still uploading sees the response rather than a reset.
async fn linger_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut scratch = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match stream.try_read(&mut scratch) {
            Ok(0) => return,
            Ok(n) => drained += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout_at(deadline, stream.readable()).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
            Err(_) => return,
        }
    }
}

/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// The `Server` field line of a forwarded response that has none ([`crate::SERVER_TOKEN`]).
const SERVER_FIELD: &[u8] =
    concat!("server: gatehouse/", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes();

/// How the request body is delimited (RFC 9112 §6.3); `None` for no body. Ambiguous framing
/// (`Transfer-Encoding` with `Content-Length`, or not ending in chunked) is refused, as the
/// classic request-smuggling vectors.
fn request_framing(parts: &mut http::request::Parts) -> Result<Option<BodyFraming>, GatewayError> {
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        if parts.version != Version::HTTP_11
            || parts.headers.contains_key(header::CONTENT_LENGTH)
            || !h1::is_chunked(&parts.headers)
        {
            return Err(GatewayError::BadRequest);
        }
        return Ok(Some(BodyFraming::Chunked(ChunkedDecoder::new())));
    }
    match h1::single_content_length(&mut parts.headers) {
        Ok(Some(0) | None) => Ok(None),
        Ok(Some(n)) => Ok(Some(BodyFraming::Length(n))),
        Err(_) => Err(GatewayError::BadRequest),
    }
}

/// Writes the whole of `data`, waiting (at most `timeout` each time) for the client to make
/// room.
async fn write_all(stream: &TcpStream, timeout: Duration, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match stream.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::timeout(timeout, stream.writable())
                    .await
                    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How a response body goes to the client.
enum OutFraming {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// Writes a response: its head with the first piece of its body in one write when the body
/// has one ready, then the rest as it comes. `Ok(true)` when the connection can carry another
/// request.
async fn write_response(
    stream: &TcpStream,
    timeout: Duration,
    out: &mut Vec<u8>,
    reply: Reply,
    version: Version,
    method_head: bool,
    mut keep_alive: bool,
) -> io::Result<bool> {
    out.clear();
    let (mut framing, mut body) = match reply {
        Reply::Parts(resp) => {
            let (parts, body) = resp.into_parts();
            let framing = write_parts_head(out, parts, &body, version, method_head);
            (framing, body)
        }
        Reply::Forward(forward) => {
            let framing = write_forward_head(out, &forward, version, method_head);
            (framing, forward.body)
        }
    };
    if let OutFraming::Close = framing {
        keep_alive = false;
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if let OutFraming::None = framing {
        write_all(stream, timeout, out).await?;
        return Ok(keep_alive);
    }
    // The head waits for the body's first piece only if it is already there: a slow or
    // streaming upstream gets its head to the client at once.
    let mut head_pending = true;
    loop {
        let next = if head_pending {
            match poll_once(&mut body).await {
                Some(next) => next,
                None => {
                    write_all(stream, timeout, out).await?;
                    out.clear();
                    head_pending = false;
                    continue;
                }
            }
        } else {
            body.frame().await
        };
        let data = match next {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; closing the connection");
                if !out.is_empty() {
                    write_all(stream, timeout, out).await?;
                }
                return Ok(false);
            }
        };
        match &mut framing {
            OutFraming::Length(remaining) => {
                if data.len() as u64 > *remaining {
                    // More than announced: the message cannot be delimited any more.
                    write_all(stream, timeout, out).await?;
                    return Ok(false);
                }
                *remaining -= data.len() as u64;
                push_data(stream, timeout, out, &data, None).await?;
            }
            OutFraming::Chunked => push_data(stream, timeout, out, &data, Some(data.len())).await?,
            OutFraming::Close | OutFraming::None => {
                push_data(stream, timeout, out, &data, None).await?
            }
        }
        head_pending = false;
        if body.is_end_stream() {
            break;
        }
    }
    match framing {
        OutFraming::Chunked => out.extend_from_slice(chunked::LAST_CHUNK),
        // The body ended short of its Content-Length: the client must see the message cut.
        OutFraming::Length(remaining) if remaining > 0 => keep_alive = false,
        OutFraming::Close => keep_alive = false,
        _ => {}
    }
    if !out.is_empty() {
        write_all(stream, timeout, out).await?;
        out.clear();
    }
    Ok(keep_alive)
}

/// Whether a response to this request, with this status, has no body on the wire.
fn is_bodiless(status: StatusCode, method_head: bool) -> bool {
    method_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// How the body goes to the client: the length the head declares, else the body's exact size,
/// else chunked (HTTP/1.1) or until close (HTTP/1.0, which has no chunked coding).
fn out_framing(
    bodiless: bool,
    declared: Option<u64>,
    body: &ProxyBody,
    version: Version,
) -> OutFraming {
    if bodiless {
        OutFraming::None
    } else if let Some(n) = declared.or_else(|| body.size_hint().exact()) {
        OutFraming::Length(n)
    } else if version == Version::HTTP_11 {
        OutFraming::Chunked
    } else {
        OutFraming::Close
    }
}

/// Writes the status line and the fields of a response held as parts; the framing header is
/// made to match how the body goes out.
fn write_parts_head(
    out: &mut Vec<u8>,
    parts: http::response::Parts,
    body: &ProxyBody,
    version: Version,
    method_head: bool,
) -> OutFraming {
    h1::write_status_line(out, parts.status);
    let mut headers = parts.headers;
    let declared = match h1::content_length(&headers) {
        Ok(n) => n,
        Err(_) => {
            headers.remove(header::CONTENT_LENGTH);
            None
        }
    };
    headers.remove(header::TRANSFER_ENCODING);
    let framing = out_framing(
        is_bodiless(parts.status, method_head),
        declared,
        body,
        version,
    );
    if declared.is_none() {
        match framing {
            OutFraming::Length(n) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            OutFraming::Chunked => {
                headers.insert(
                    header::TRANSFER_ENCODING,
                    HeaderValue::from_static("chunked"),
                );
            }
            OutFraming::None | OutFraming::Close => {}
        }
    }
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, date());
    }
    h1::write_headers(out, &headers);
    framing
}

/// Writes the status line and the fields of a forwarded upstream response: the upstream's
/// own (less the hop-by-hop and framing ones), the gateway's, then the framing header.
fn write_forward_head(
    out: &mut Vec<u8>,
    forward: &Forward,
    version: Version,
    method_head: bool,
) -> OutFraming {
    let head = &forward.head;
    h1::write_status_line(out, head.status);
    for (name, value) in head.forwarded_fields() {
        h1::write_field(out, name, value);
    }
    out.extend_from_slice(via_field(head.version));
    if !head.has_server() {
        out.extend_from_slice(SERVER_FIELD);
    }
    write_number_field(
        out,
        b"x-gatehouse-upstream-latency",
        forward.upstream_latency,
    );
    write_number_field(out, b"x-gatehouse-proxy-latency", forward.proxy_latency);
    h1::write_field(
        out,
        b"x-gatehouse-request-id",
        forward.request_id.as_bytes(),
    );
    if !head.has_date() {
        with_date(|date| h1::write_field(out, b"date", date.as_bytes()));
    }
    // An invalid Content-Length was refused with the response (502) unless the answer has no
    // body; one that is valid is sent as the plain number, also for bodiless answers (HEAD:
    // the GET's length).
    let declared = head.declared_length();
    let framing = out_framing(
        is_bodiless(head.status, method_head),
        declared,
        &forward.body,
        version,
    );
    match (declared, &framing) {
        (Some(n), _) | (None, &OutFraming::Length(n)) => {
            write_number_field(out, b"content-length", n);
        }
        (None, OutFraming::Chunked) => {
            h1::write_field(out, b"transfer-encoding", b"chunked");
        }
        (None, _) => {}
    }
    framing
}

fn write_number_field(out: &mut Vec<u8>, name: &[u8], n: u64) {
    let mut digits = itoa::Buffer::new();
    h1::write_field(out, name, digits.format(n).as_bytes());
}

/// Appends `data` (with its chunk framing when `chunk` is set) to `out` and writes it all.
async fn push_data(
    stream: &TcpStream,
    timeout: Duration,
    out: &mut Vec<u8>,
    data: &Bytes,
    chunk: Option<usize>,
) -> io::Result<()> {
    if let Some(len) = chunk {
        chunked::encode_chunk_size(len, out);
    }
    if data.len() <= COALESCE {
        out.extend_from_slice(data);
    } else {
        write_all(stream, timeout, out).await?;
        out.clear();
        write_all(stream, timeout, data).await?;
    }
    if chunk.is_some() {
        out.extend_from_slice(chunked::CHUNK_END);
    }
    write_all(stream, timeout, out).await?;
    out.clear();
    Ok(())
}

type FrameResult = Option<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>>;

/// The body's next frame if it is ready now; `None` if it would have to wait.
async fn poll_once(body: &mut ProxyBody) -> Option<FrameResult> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(frame) => Some(frame),
            Poll::Pending => None,
        })
    })
    .await
}

/// `Date`, formatted once a second.
pub(crate) fn date() -> HeaderValue {
    with_date(HeaderValue::clone)
}

/// Calls `f` with the current `Date` value, formatted once a second per thread.
fn with_date<R>(f: impl FnOnce(&HeaderValue) -> R) -> R {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, HeaderValue)> =
            const { std::cell::RefCell::new((0, HeaderValue::from_static(""))) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            let text = httpdate::fmt_http_date(now);
            cache.1 = HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""));
            cache.0 = secs;
        }
        f(&cache.1)
    })
}

/// How the rest of a request body is delimited.
enum BodyFraming {
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl BodyFraming {
    fn is_done(&self) -> bool {
        match self {
            Self::Length(remaining) => *remaining == 0,
            Self::Chunked(decoder) => decoder.is_done(),
        }
    }
}

/// The connection's read state while a request body is being read: shared by the body and
/// the connection, which takes the buffer back (with any pipelined bytes after the body) once
/// the body has ended.
struct BodyState {
    buf: BytesMut,
    framing: BodyFraming,
    failed: bool,
}

/// A request body read from the client connection as the upstream takes it.
struct ClientBody {
    stream: Arc<TcpStream>,
    state: Arc<Mutex<BodyState>>,
    ended: bool,
    /// How much of `100 Continue` is still to be written before the body is read.
    continue_unsent: usize,
}

/// The client closed the connection or sent a malformed body.
#[derive(Debug, thiserror::Error)]
enum ClientBodyError {
    #[error("the client closed the connection before the end of the request body")]
    Closed,
    #[error("malformed chunked request body: {0}")]
    Chunked(#[from] chunked::ChunkedError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        while this.continue_unsent > 0 {
            let from = CONTINUE.len() - this.continue_unsent;
            let failed = match this.stream.try_write(&CONTINUE[from..]) {
                Ok(n) => {
                    this.continue_unsent -= n.min(this.continue_unsent);
                    None
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match this.stream.poll_write_ready(cx) {
                        Poll::Ready(Ok(())) => None,
                        Poll::Ready(Err(e)) => Some(e),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => Some(e),
            };
            if let Some(e) = failed {
                this.ended = true;
                this.state.lock().failed = true;
                return Poll::Ready(Some(Err(Box::new(e))));
            }
        }
        let mut state = this.state.lock();
        let state = &mut *state;
        let result = loop {
            if !state.buf.is_empty() || state.framing.is_done() {
                match &mut state.framing {
                    BodyFraming::Length(0) => break Ok(None),
                    BodyFraming::Length(remaining) => {
                        let n = state
                            .buf
                            .len()
                            .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                        *remaining -= n as u64;
                        break Ok(Some(state.buf.split_to(n).freeze()));
                    }
                    BodyFraming::Chunked(decoder) => match decoder.decode(&mut state.buf) {
                        Ok(Some(Chunk::Data(data))) => break Ok(Some(data)),
                        Ok(Some(Chunk::Done)) => break Ok(None),
                        Ok(None) => {}
                        Err(e) => break Err(ClientBodyError::from(e)),
                    },
                }
            }
            h1::reserve_read(&mut state.buf, READ_BUF);
            match h1::try_read_some(&this.stream, &mut state.buf) {
                Ok(0) => break Err(ClientBodyError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match this.stream.poll_read_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => break Err(e.into()),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => break Err(e.into()),
            }
        };
        match result {
            Ok(Some(data)) => {
                if state.framing.is_done() {
                    this.ended = true;
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Ok(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Err(e) => {
                state.failed = true;
                this.ended = true;
                Poll::Ready(Some(Err(Box::new(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match self.state.lock().framing {
            BodyFraming::Length(remaining) => SizeHint::with_exact(remaining),
            BodyFraming::Chunked(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_field_names_the_server_token() {
        assert_eq!(
            SERVER_FIELD,
            format!("server: {}\r\n", crate::SERVER_TOKEN).as_bytes()
        );
    }
}
