//! Connections to upstream services: a keep-alive pool per upstream (host, port, connect
//! timeout) and the proxy's own HTTP/1.1 client over it.
//!
//! An exchange runs inline in the task of the request that needs it: the request head (already
//! serialized by the caller, so a retry resends the same bytes) and body are written, the
//! response head is read and parsed, and the response body ([`UpstreamBody`]) owns the
//! connection until the body has been read to its end, then puts it back in the pool. No task,
//! channel or timer is created per exchange unless the upstream makes the request wait.
//!
//! The pool is deliberately small: a stack of idle connections behind a mutex that is never
//! held across an `.await`. A request takes the most recently used connection (the one least
//! likely to have been closed by the upstream).

use crate::ProxyBody;
use crate::h1::chunked::{self, Chunk, ChunkedDecoder};
use crate::h1::{self, HeadError, ResponseHead};
use crate::workers;
use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long an idle upstream connection is kept for reuse.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream; more are closed when they come back.
const MAX_IDLE: usize = 1024;
/// Largest upstream response head accepted (nginx: `proxy_buffer_size`, 4–8 KiB).
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Read buffer of an upstream connection.
const READ_BUF: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    host: String,
    port: u16,
    connect_timeout_ms: u32,
    /// What the TLS settings are ([`UpstreamTls::key`]); `None` for plain HTTP.
    tls: Option<String>,
}

/// How connections to an `https` upstream are made: the client configuration (roots,
/// verification, client certificate) and the name sent as SNI and verified.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The connector.
    pub connector: tokio_rustls::TlsConnector,
    /// The server name (SNI, and what the certificate must be valid for).
    pub name: rustls::pki_types::ServerName<'static>,
    /// Identifies the settings: connections are pooled only with others made the same way.
    pub key: String,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The pools of every upstream the running configurations use. A pool lives as long as a
/// snapshot refers to it, so pools (and their warm connections) survive configuration changes
/// and are closed once no service uses the upstream any more.
#[derive(Default)]
pub struct UpstreamPools {
    pools: Mutex<HashMap<PoolKey, Weak<HostPool>>>,
}

impl UpstreamPools {
    /// The pool for `host:port` with this connect timeout, over TLS made with `tls` when
    /// given (created on first use).
    pub fn get(
        &self,
        host: &str,
        port: u16,
        connect_timeout_ms: u32,
        tls: Option<UpstreamTls>,
    ) -> Arc<HostPool> {
        let key = PoolKey {
            host: host.to_owned(),
            port,
            connect_timeout_ms,
            tls: tls.as_ref().map(|t| t.key.clone()),
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
            tls,
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
    tls: Option<UpstreamTls>,
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

/// An upstream connection's transport.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

impl Stream {
    /// Writes all of `data` and flushes it (TLS keeps records in its buffer until flushed).
    async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_all(data).await?;
        if let Stream::Tls(s) = self {
            s.flush().await?;
        }
        Ok(())
    }
}

/// One upstream connection and the bytes read from it that no message has used yet.
struct Conn {
    stream: Stream,
    buf: BytesMut,
    /// The proxy worker whose reactor the socket is registered with ([`workers::current`]).
    worker: u32,
    /// The connection's timer for response deadlines ([`within`]), made on first use.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

struct IdleConn {
    conn: Conn,
    since: Instant,
}

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The host name did not resolve.
    #[error("could not resolve the upstream host: {0}")]
    Resolve(io::Error),
    /// No connection could be made (refused, unreachable, connect timeout): retryable.
    #[error("could not connect to the upstream: {0}")]
    Connect(io::Error),
    /// A reused keep-alive connection turned out closed by the upstream before it answered
    /// (the request may or may not have reached it). Idempotent requests without a body are
    /// sent once more on another connection first; others are not sent twice.
    #[error("reused upstream connection closed: {0}")]
    Stale(io::Error),
    /// Connected, then the exchange failed (reset, garbage, closed early, body error).
    #[error("upstream exchange failed: {0}")]
    Exchange(#[from] ExchangeError),
    /// No complete response head before the deadline.
    #[error("the upstream did not answer in time")]
    TimedOut,
    /// The TLS handshake failed: the certificate did not verify, or the upstream does not
    /// speak TLS. Not retried (it would fail the same way).
    #[error("TLS handshake with the upstream failed: {0}")]
    Tls(io::Error),
}

impl UpstreamError {
    /// Whether another attempt may succeed and may be made: the request never left. (A
    /// stale connection was already retried once by [`HostPool::send`] where that is allowed.)
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

/// How an exchange on an established connection went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// A socket error.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The upstream closed the connection before a complete response head.
    #[error("the upstream closed the connection before a complete response head")]
    Closed,
    /// The response head is not HTTP/1.x.
    #[error("malformed response head: {0}")]
    Head(#[from] HeadError),
    /// The upstream switched protocols without being asked to.
    #[error("the upstream answered 101 Switching Protocols to a request that asked for no upgrade")]
    Upgrade,
    /// The request body could not be read from the client.
    #[error("request body: {0}")]
    RequestBody(Box<dyn std::error::Error + Send + Sync>),
    /// The request body was longer or shorter than its `Content-Length`.
    #[error("the request body does not match its Content-Length")]
    BodyLength,
}

/// The body of a request going upstream, with its framing.
pub enum RequestBody {
    /// No body.
    Empty,
    /// A body of exactly this many bytes (the head carries `Content-Length`).
    Length(ProxyBody, u64),
    /// A body of unknown length, sent chunked (the head carries `Transfer-Encoding: chunked`).
    Chunked(ProxyBody),
}

/// What the caller tells [`HostPool::send`] about the request.
pub struct UpstreamRequest<'a> {
    /// The serialized request head, including the blank line that ends it.
    pub head: &'a [u8],
    /// The body.
    pub body: RequestBody,
    /// The method: `HEAD` responses have no body whatever their headers say, and only
    /// idempotent requests are sent again after a reused connection failed them.
    pub method: &'a Method,
    /// The wait allowed between two reads of the response body, and for the response head
    /// once a request body was sent.
    pub read_timeout: Duration,
    /// The wait allowed for the upstream to take more of a request body (Kong's
    /// `write_timeout`, nginx's `proxy_send_timeout`).
    pub write_timeout: Duration,
    /// When a request without a body must have been sent and answered with a response head
    /// (connecting is bounded by the pool's connect timeout on its own). A request with a body
    /// gets `read_timeout` for the head from when its body was sent instead: an upload may
    /// take longer than the read timeout.
    pub deadline: tokio::time::Instant,
    /// The request asks to switch to WebSocket: a `101` answer hands the connection over
    /// ([`UpstreamResponse::upgraded`]) instead of being refused.
    pub upgrade: bool,
    /// When this attempt began. The pool takes it as "now" when it picks an idle connection
    /// and as the time the connection was last used when it comes back, rather than reading
    /// the clock twice more per request; both make a connection look older than it is, so
    /// the idle timeout can only close one early, never reuse one late.
    pub started: Instant,
}

/// An upstream response: its head as received, its body streaming from the connection.
#[derive(Debug)]
pub struct UpstreamResponse {
    /// The head, its fields in the bytes they arrived in.
    pub head: ResponseHead,
    /// The body, which holds the connection until it has been read to its end.
    pub body: UpstreamBody,
    /// After a `101 Switching Protocols` to an upgrade request: the connection, now the
    /// upstream's end of the new protocol.
    pub upgraded: Option<Upgraded>,
}

/// An upstream connection that switched protocols (WebSocket): bytes now flow both ways
/// unframed until either side closes.
pub struct Upgraded {
    stream: Stream,
    /// What the upstream sent after its `101` head.
    read: BytesMut,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded").finish_non_exhaustive()
    }
}

impl Upgraded {
    /// Relays bytes between `client` (whose `early` bytes, read past the request head, go
    /// first) and the upstream until both directions have ended, or nothing moved either way
    /// for `idle` (then both are closed).
    pub async fn relay<C>(mut self, mut client: C, early: &[u8], idle: Duration) -> io::Result<()>
    where
        C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        if !early.is_empty() {
            self.stream.send(early).await?;
        }
        if !self.read.is_empty() {
            client.write_all(&self.read).await?;
            client.flush().await?;
        }
        let activity = ActivityClock::default();
        let mut upstream = Watched {
            inner: self.stream,
            clock: &activity,
        };
        let mut client = Watched {
            inner: client,
            clock: &activity,
        };
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::pin!(copy);
        loop {
            let quiet_until = tokio::time::Instant::from_std(activity.last() + idle);
            tokio::select! {
                done = &mut copy => return done.map(|_| ()),
                () = tokio::time::sleep_until(quiet_until) => {
                    if activity.last().elapsed() >= idle {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "the upgraded connection was idle too long"));
                    }
                }
            }
        }
    }
}

/// When bytes last moved on a relay.
struct ActivityClock {
    start: Instant,
    /// Milliseconds from `start`.
    last_ms: std::sync::atomic::AtomicU64,
}

impl Default for ActivityClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl ActivityClock {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// A stream whose reads count as activity on a relay.
struct Watched<'a, S> {
    inner: S,
    clock: &'a ActivityClock,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.touch();
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A failed attempt on one connection, before a response was received.
enum Attempt {
    /// Nothing came back (write or read failed, or EOF, before any response byte).
    NoResponse(io::Error),
    Failed(ExchangeError),
    /// The upstream took longer than its timeouts: to read the request, or to answer it.
    TimedOut,
}

impl HostPool {
    /// Sends the request on an idle connection, or on a new one when none is left, and
    /// returns the response with its head read and its body streaming from the connection.
    ///
    /// A request without a body that finds its reused connection closed by the upstream is
    /// sent again on the next connection.
    pub async fn send(
        self: &Arc<Self>,
        req: UpstreamRequest<'_>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let UpstreamRequest {
            head,
            mut body,
            method,
            read_timeout,
            write_timeout,
            deadline,
            upgrade,
            started,
        } = req;
        let head_method = *method == Method::HEAD;
        // A reused connection the upstream closed just as the request went out: sent once more
        // (RFC 9110 §9.2.2: only idempotent requests, and only ones without a body).
        let mut may_resend = matches!(body, RequestBody::Empty) && method.is_idempotent();
        loop {
            let (mut conn, reused) = match self.take_idle(started) {
                Some(conn) => (conn, true),
                // Boxed: connecting (name resolution included) is a large future that most
                // requests never run, and it would otherwise make every request's future as big.
                None => (Box::pin(self.connect()).await?, false),
            };
            let mut timer = conn.timer.take();
            let exchanged = if let RequestBody::Empty = body {
                within(
                    &mut timer,
                    deadline,
                    exchange_bodiless(&mut conn, head, head_method, upgrade),
                )
                .await
                .unwrap_or(Err(Attempt::TimedOut))
            } else {
                let timeouts = (read_timeout, write_timeout);
                exchange(
                    &mut conn,
                    &mut timer,
                    head,
                    &mut body,
                    head_method,
                    timeouts,
                )
                .await
            };
            conn.timer = timer;
            match exchanged {
                Ok((head, _, _)) if head.status == StatusCode::SWITCHING_PROTOCOLS => {
                    let body = UpstreamBody::done(self.clone(), read_timeout, started);
                    let upgraded = Upgraded {
                        stream: conn.stream,
                        read: conn.buf,
                    };
                    return Ok(UpstreamResponse {
                        head,
                        body,
                        upgraded: Some(upgraded),
                    });
                }
                Ok((head, framing, reusable)) => {
                    let body = UpstreamBody::new(
                        self.clone(),
                        conn,
                        framing,
                        reusable,
                        read_timeout,
                        started,
                    );
                    return Ok(UpstreamResponse {
                        head,
                        body,
                        upgraded: None,
                    });
                }
                Err(Attempt::NoResponse(_)) if reused && may_resend => may_resend = false,
                Err(Attempt::NoResponse(e)) if reused => return Err(UpstreamError::Stale(e)),
                Err(Attempt::NoResponse(e)) => {
                    return Err(UpstreamError::Exchange(
                        if e.kind() == io::ErrorKind::UnexpectedEof {
                            ExchangeError::Closed
                        } else {
                            ExchangeError::Io(e)
                        },
                    ));
                }
                Err(Attempt::Failed(e)) => return Err(UpstreamError::Exchange(e)),
                Err(Attempt::TimedOut) => return Err(UpstreamError::TimedOut),
            }
        }
    }

    /// The most recently returned open connection of this worker, if one is left that has
    /// not been idle longer than the idle timeout at `now`.
    fn take_idle(&self, now: Instant) -> Option<Conn> {
        let worker = workers::current();
        loop {
            let conn = {
                let mut idle = self.idle.lock();
                // The most recently returned connection of this worker: other workers'
                // connections belong to their reactors.
                let at = idle.iter().rposition(|e| e.conn.worker == worker)?;
                if now.saturating_duration_since(idle[at].since) > IDLE_TIMEOUT {
                    // The stack is ordered by return time: everything below is older still.
                    idle.drain(..=at);
                    return None;
                }
                idle.remove(at).conn
            };
            let mut conn = conn;
            if still_open(&mut conn) {
                return Some(conn);
            }
        }
    }

    /// Returns `conn`, last used at `since` (or later), to the idle stack.
    fn put(&self, conn: Conn, since: Instant) {
        let mut idle = self.idle.lock();
        // Expired connections (the oldest, at the bottom of the stack) are closed whenever one
        // comes back, so a burst's connections do not linger after traffic has calmed down.
        let expired =
            idle.partition_point(|e| since.saturating_duration_since(e.since) > IDLE_TIMEOUT);
        idle.drain(..expired);
        if idle.len() < MAX_IDLE {
            // The stack stays ordered by `since`: a connection returned after the one on top
            // was last used no earlier than that one, whenever its exchange began.
            let since = idle.last().map_or(since, |top| top.since.max(since));
            idle.push(IdleConn { conn, since });
        }
    }

    async fn connect(&self) -> Result<Conn, UpstreamError> {
        let connecting = async {
            let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(UpstreamError::Resolve)?;
            let mut last = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = Some(e),
                }
            }
            Err(UpstreamError::Connect(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "the host has no address")
            })))
        };
        // The connect timeout bounds the TLS handshake too (nginx's `proxy_connect_timeout`
        // covers the SSL handshake as well).
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let timed_out =
            || UpstreamError::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        let tcp = tokio::time::timeout_at(deadline, connecting)
            .await
            .map_err(|_| timed_out())??;
        let _ = tcp.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(IDLE_TIMEOUT);
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                let handshake = tls.connector.connect(tls.name.clone(), tcp);
                let tls = tokio::time::timeout_at(deadline, handshake)
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(UpstreamError::Tls)?;
                Stream::Tls(Box::new(tls))
            }
        };
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(READ_BUF),
            worker: workers::current(),
            timer: None,
        })
    }
}

/// Whether an idle connection is still usable: the upstream has neither closed it nor sent
/// anything unasked. Costs a syscall only when the reactor saw the socket become readable
/// since the last read (a read that did not fill the buffer clears that readiness, so after a
/// normal response this is free).
/// Runs `fut` until `deadline` (`None` when the deadline came first) on the connection's
/// `timer`. The timer stays registered from one exchange to the next and is moved only when
/// it fires before the deadline of the exchange waiting on it, so an exchange that ends in
/// time registers no timer of its own.
async fn within<F: std::future::Future>(
    timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    deadline: tokio::time::Instant,
    fut: F,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        loop {
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if tokio::time::Instant::now() >= deadline => {
                    return Poll::Ready(None);
                }
                // An earlier exchange's deadline: this one's is later.
                Poll::Ready(()) => sleep.as_mut().reset(deadline),
            }
        }
    })
    .await
}

fn still_open(conn: &mut Conn) -> bool {
    match &mut conn.stream {
        Stream::Plain(s) => {
            let mut probe = [0u8; 1];
            matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
        // A read that would wait: nothing but TLS housekeeping (session tickets, which rustls
        // takes itself) arrived. Polled without a waker to register: the next real read
        // registers its own.
        Stream::Tls(s) => {
            let mut probe = [0u8; 1];
            let mut buf = tokio::io::ReadBuf::new(&mut probe);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            matches!(
                tokio::io::AsyncRead::poll_read(Pin::new(&mut **s), &mut cx, &mut buf),
                Poll::Pending
            )
        }
    }
}

/// Writes a request without a body and reads the response head on `conn` (the caller bounds
/// it with the request's deadline).
async fn exchange_bodiless(
    conn: &mut Conn,
    head: &[u8],
    head_method: bool,
    upgrade: bool,
) -> Result<(ResponseHead, Framing, bool), Attempt> {
    conn.stream.send(head).await.map_err(Attempt::NoResponse)?;
    read_head(conn, head_method, upgrade).await
}

/// Writes a request with its body and reads the response head on `conn`: each write may wait
/// `write_timeout` for the upstream to take more, and the head must come within
/// `read_timeout` of the body's end (nginx's `proxy_send_timeout` and `proxy_read_timeout`).
async fn exchange(
    conn: &mut Conn,
    timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    head: &[u8],
    body: &mut RequestBody,
    head_method: bool,
    (read_timeout, write_timeout): (Duration, Duration),
) -> Result<(ResponseHead, Framing, bool), Attempt> {
    let written = match std::mem::replace(body, RequestBody::Empty) {
        RequestBody::Empty => Ok(Sent::Whole),
        // Boxed for the same reason: most requests have no body.
        RequestBody::Length(b, len) => {
            Box::pin(write_body(conn, head, b, Some(len), write_timeout)).await
        }
        RequestBody::Chunked(b) => Box::pin(write_body(conn, head, b, None, write_timeout)).await,
    };
    let deadline = tokio::time::Instant::now() + read_timeout;
    let answer = |conn, timer| head_within(conn, timer, deadline, head_method);
    match written {
        Ok(Sent::Whole) => answer(conn, timer).await,
        // The upstream answered before taking the whole body (413, 401…): its answer stands,
        // and the connection, with part of a request on it, is not used again.
        Ok(Sent::Cut) => answer(conn, timer)
            .await
            .map(|(head, framing, _)| (head, framing, false)),
        // The client's body failed: the upstream would wait for the rest forever.
        Err(e @ Attempt::Failed(ExchangeError::RequestBody(_) | ExchangeError::BodyLength)) => {
            Err(e)
        }
        Err(Attempt::TimedOut) => Err(Attempt::TimedOut),
        // The upstream may have answered and closed before taking the whole body; its answer
        // is the better outcome. Otherwise the write failure is what went wrong.
        Err(write) => answer(conn, timer)
            .await
            .map(|(head, framing, _)| (head, framing, false))
            .map_err(|_| write),
    }
}

/// [`read_head`] by `deadline`, on the connection's timer.
async fn head_within(
    conn: &mut Conn,
    timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    deadline: tokio::time::Instant,
    head_method: bool,
) -> Result<(ResponseHead, Framing, bool), Attempt> {
    within(timer, deadline, read_head(conn, head_method, false))
        .await
        .unwrap_or(Err(Attempt::TimedOut))
}

/// How much of a request went out.
enum Sent {
    Whole,
    /// The upstream started answering before the body was sent, and the rest was not sent.
    Cut,
}

async fn write_body(
    conn: &mut Conn,
    head: &[u8],
    mut body: ProxyBody,
    len: Option<u64>,
    write_timeout: Duration,
) -> Result<Sent, Attempt> {
    conn.stream.send(head).await.map_err(Attempt::NoResponse)?;
    let mut sent = 0u64;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Attempt::Failed(ExchangeError::RequestBody(e)))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers are not forwarded
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        out.clear();
        match len {
            Some(len) if sent > len => return Err(Attempt::Failed(ExchangeError::BodyLength)),
            Some(_) => out.extend_from_slice(&data),
            None => {
                chunked::encode_chunk_size(data.len(), &mut out);
                out.extend_from_slice(&data);
                out.extend_from_slice(chunked::CHUNK_END);
            }
        }
        if let Sent::Cut = write_watching(conn, &out, write_timeout).await? {
            return Ok(Sent::Cut);
        }
    }
    match len {
        Some(len) if sent != len => Err(Attempt::Failed(ExchangeError::BodyLength)),
        Some(_) => Ok(Sent::Whole),
        None => write_watching(conn, chunked::LAST_CHUNK, write_timeout).await,
    }
}

/// Writes `data`, but stops as soon as the upstream sends something (an early answer while
/// the body is still going out: an upstream that answers and stops reading would otherwise
/// leave the write waiting until the response deadline).
async fn write_watching(
    conn: &mut Conn,
    mut data: &[u8],
    write_timeout: Duration,
) -> Result<Sent, Attempt> {
    let fail = |e: io::Error| Attempt::Failed(ExchangeError::Io(e));
    let stream = match &mut conn.stream {
        Stream::Plain(s) => s,
        Stream::Tls(_) => return write_watching_tls(conn, data, write_timeout).await,
    };
    while !data.is_empty() {
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::select! {
                    ready = stream.writable() => ready.map_err(fail)?,
                    () = tokio::time::sleep(write_timeout) => return Err(Attempt::TimedOut),
                    ready = stream.readable() => {
                        ready.map_err(fail)?;
                        h1::reserve_read(&mut conn.buf, READ_BUF);
                        match stream.try_read_buf(&mut conn.buf) {
                            // Readiness without data (stale): go on writing.
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(fail(e)),
                            // Answer bytes, or the upstream's close: read_head takes it from here.
                            Ok(_) => return Ok(Sent::Cut),
                        }
                    }
                }
            }
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(Sent::Whole)
}

/// [`write_watching`] over TLS: the write and the watch for an early answer are polled
/// together on the one TLS stream, and what was written is flushed.
async fn write_watching_tls(
    conn: &mut Conn,
    mut data: &[u8],
    write_timeout: Duration,
) -> Result<Sent, Attempt> {
    use tokio::io::AsyncWrite;
    let fail = |e: io::Error| Attempt::Failed(ExchangeError::Io(e));
    enum Step {
        Wrote(usize),
        Flushed,
        Answer,
    }
    let mut flushed = false;
    while !data.is_empty() || !flushed {
        let step = std::future::poll_fn(|cx| {
            let polled = if data.is_empty() {
                Pin::new(&mut conn.stream)
                    .poll_flush(cx)
                    .map_ok(|()| Step::Flushed)
            } else {
                Pin::new(&mut conn.stream)
                    .poll_write(cx, data)
                    .map_ok(Step::Wrote)
            };
            if polled.is_ready() {
                return polled;
            }
            match poll_fill(conn, cx) {
                Poll::Ready(Ok(_)) => Poll::Ready(Ok(Step::Answer)),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        });
        match tokio::time::timeout(write_timeout, step).await {
            Err(_) => return Err(Attempt::TimedOut),
            Ok(Err(e)) => return Err(fail(e)),
            Ok(Ok(Step::Wrote(0))) => return Err(fail(io::ErrorKind::WriteZero.into())),
            Ok(Ok(Step::Wrote(n))) => data = &data[n..],
            Ok(Ok(Step::Flushed)) => flushed = true,
            // Answer bytes, or the upstream's close: read_head takes it from here.
            Ok(Ok(Step::Answer)) => return Ok(Sent::Cut),
        }
    }
    Ok(Sent::Whole)
}

/// Reads and parses the response head (skipping interim 1xx responses): the head, how the
/// body is framed, and whether the connection may carry another request afterwards.
async fn read_head(
    conn: &mut Conn,
    head_method: bool,
    upgrade: bool,
) -> Result<(ResponseHead, Framing, bool), Attempt> {
    let mut received = false;
    loop {
        if !conn.buf.is_empty() {
            received = true;
            match h1::parse_response(&mut conn.buf, MAX_RESPONSE_HEAD) {
                Ok(Some(head)) => {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        if upgrade {
                            return Ok((head, Framing::Close, false));
                        }
                        return Err(Attempt::Failed(ExchangeError::Upgrade));
                    }
                    if head.status.is_informational() {
                        continue;
                    }
                    let framing = response_framing(&head, head_method)
                        .map_err(|e| Attempt::Failed(e.into()))?;
                    let reusable = !matches!(framing, Framing::Close) && head.keeps_alive();
                    return Ok((head, framing, reusable));
                }
                Ok(None) => {}
                Err(e) => return Err(Attempt::Failed(e.into())),
            }
        }
        h1::reserve_read(&mut conn.buf, READ_BUF);
        match tokio::io::AsyncReadExt::read_buf(&mut conn.stream, &mut conn.buf).await {
            Ok(0) if received => return Err(Attempt::Failed(ExchangeError::Closed)),
            Ok(0) => {
                return Err(Attempt::NoResponse(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before answering",
                )));
            }
            Ok(_) => {}
            Err(e) if received => return Err(Attempt::Failed(e.into())),
            Err(e) => return Err(Attempt::NoResponse(e)),
        }
    }
}

/// How the response body is delimited (RFC 9112 §6.3): `Transfer-Encoding` wins over
/// `Content-Length`; a coding other than chunked, or neither field, runs until close.
fn response_framing(head: &ResponseHead, head_method: bool) -> Result<Framing, HeadError> {
    let status = head.status;
    if head_method || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Length(0));
    }
    Ok(match head.transfer_coding_chunked() {
        Some(true) => Framing::Chunked(ChunkedDecoder::new()),
        Some(false) => Framing::Close,
        None => match head.content_length()? {
            Some(len) => Framing::Length(len),
            None => Framing::Close,
        },
    })
}

/// Reads more bytes into the connection's buffer: `Ok(0)` at end of stream. (Through
/// `AsyncRead`, which takes a read that did not fill the buffer as proof the socket is
/// drained, so [`still_open`] costs nothing afterwards.)
fn poll_fill(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    h1::reserve_read(&mut conn.buf, READ_BUF);
    tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.buf)
}

/// How the rest of a response body is delimited.
#[derive(Debug)]
enum Framing {
    /// This many bytes are still to come.
    Length(u64),
    /// Chunked.
    Chunked(ChunkedDecoder),
    /// Until the upstream closes the connection.
    Close,
}

/// An upstream response body, read from its connection as the client takes it: fails when
/// the upstream sends nothing for the read timeout, and returns the connection to its pool
/// when the body has ended. Dropped before its end, it closes the connection (the rest of the
/// body is never read).
pub struct UpstreamBody {
    pool: Arc<HostPool>,
    conn: Option<Conn>,
    framing: Framing,
    reusable: bool,
    ended: bool,
    timeout: Duration,
    /// When the exchange began: the connection's last use as far as the pool's idle timeout
    /// is concerned (see [`UpstreamRequest::started`]).
    started: Instant,
    /// Created the first time the body has to wait, armed only while waiting.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("framing", &self.framing)
            .field("ended", &self.ended)
            .finish()
    }
}

/// The upstream went quiet for longer than the read timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream read timed out")]
pub struct ReadTimedOut;

impl UpstreamBody {
    /// An empty body that holds no connection (the connection went elsewhere).
    fn done(pool: Arc<HostPool>, timeout: Duration, started: Instant) -> Self {
        Self {
            pool,
            conn: None,
            framing: Framing::Length(0),
            reusable: false,
            ended: true,
            timeout,
            started,
            sleep: None,
            armed: false,
        }
    }

    fn new(
        pool: Arc<HostPool>,
        conn: Conn,
        framing: Framing,
        reusable: bool,
        timeout: Duration,
        started: Instant,
    ) -> Self {
        let mut body = Self {
            pool,
            conn: Some(conn),
            framing,
            reusable,
            ended: false,
            timeout,
            started,
            sleep: None,
            armed: false,
        };
        if matches!(body.framing, Framing::Length(0)) {
            body.finish();
        }
        body
    }

    /// The body is complete: the connection goes back to the pool if it can carry another
    /// request (nothing unread is left on it).
    fn finish(&mut self) {
        self.ended = true;
        if let Some(conn) = self.conn.take()
            && self.reusable
            && conn.buf.is_empty()
        {
            self.pool.put(conn, self.started);
        }
    }

    fn fail(&mut self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BodyPoll {
        self.ended = true;
        self.conn = None;
        Poll::Ready(Some(Err(e.into())))
    }
}

type BodyPoll = Poll<Option<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>>>;

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> BodyPoll {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if !conn.buf.is_empty() {
                match &mut this.framing {
                    Framing::Length(remaining) => {
                        let n = conn
                            .buf
                            .len()
                            .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                        let data = conn.buf.split_to(n).freeze();
                        *remaining -= n as u64;
                        if *remaining == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Framing::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                        Ok(Some(Chunk::Data(data))) => {
                            if decoder.is_done() {
                                this.finish();
                            }
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        Ok(Some(Chunk::Done)) => {
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Ok(None) => {}
                        Err(e) => return this.fail(e),
                    },
                    Framing::Close => {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match poll_fill(conn, cx) {
                Poll::Ready(Ok(0)) => {
                    if matches!(this.framing, Framing::Close) {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    return this.fail(ExchangeError::Closed);
                }
                Poll::Ready(Ok(_)) => this.armed = false,
                Poll::Ready(Err(e)) => return this.fail(e),
                Poll::Pending => {
                    let deadline = tokio::time::Instant::now() + this.timeout;
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if !this.armed {
                        this.armed = true;
                        sleep.as_mut().reset(deadline);
                    }
                    return match sleep.as_mut().poll(cx) {
                        Poll::Ready(()) => this.fail(ReadTimedOut),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(remaining) => SizeHint::with_exact(remaining),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A pool for an upstream that accepts and keeps every connection open, so that none
    /// looks closed when reused; abort the task when done.
    async fn pool_on_keeper() -> (UpstreamPools, Arc<HostPool>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let keeper = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let pools = UpstreamPools::default();
        let pool = pools.get("127.0.0.1", port, 1000, None);
        (pools, pool, keeper)
    }

    #[tokio::test]
    async fn idle_connections_stay_with_the_worker_that_opened_them() {
        let (_pools, pool, keeper) = pool_on_keeper().await;

        workers::set_current(0);
        let conn = pool.connect().await.unwrap();
        pool.put(conn, Instant::now());
        workers::set_current(2);
        assert!(
            pool.take_idle(Instant::now()).is_none(),
            "worker 0's connection is not worker 2's"
        );
        let conn = pool.connect().await.unwrap();
        assert_eq!(conn.worker, 2);
        pool.put(conn, Instant::now());

        workers::set_current(0);
        assert_eq!(pool.take_idle(Instant::now()).map(|c| c.worker), Some(0));
        assert!(
            pool.take_idle(Instant::now()).is_none(),
            "the one left is worker 2's"
        );
        workers::set_current(2);
        assert_eq!(pool.take_idle(Instant::now()).map(|c| c.worker), Some(2));
        workers::set_current(0);
        keeper.abort();
    }

    #[tokio::test]
    async fn idle_age_counts_from_the_exchange_start_and_the_stack_stays_ordered() {
        let (_pools, pool, keeper) = pool_on_keeper().await;
        workers::set_current(0);
        let now = Instant::now() + IDLE_TIMEOUT + Duration::from_secs(10);

        // An exchange that began more than the idle timeout ago: its connection is not reused.
        let conn = pool.connect().await.unwrap();
        pool.put(conn, now - IDLE_TIMEOUT - Duration::from_secs(1));
        assert!(
            pool.take_idle(now).is_none(),
            "idle too long, counted from its start"
        );
        assert!(pool.idle.lock().is_empty(), "and closed");

        // A long exchange returned after a short one that began later: it takes the later
        // time, so the stack stays ordered and the bottom is always the oldest.
        let short = pool.connect().await.unwrap();
        let long = pool.connect().await.unwrap();
        pool.put(short, now - Duration::from_secs(5));
        pool.put(long, now - Duration::from_secs(50));
        let since: Vec<Instant> = pool.idle.lock().iter().map(|e| e.since).collect();
        assert_eq!(since, [now - Duration::from_secs(5); 2]);
        assert!(pool.take_idle(now).is_some());
        assert!(pool.take_idle(now).is_some());
        assert!(pool.take_idle(now).is_none());
        keeper.abort();
    }
}
