//! One proxied request, start to finish: normalise and route, run the plugin chain's `access`
//! phase, build the upstream request (spec C.4–C.5), send it with the service's timeouts and
//! retries, and stream the response back with the gateway's headers (spec C.6).

use crate::context::{RequestCtx, RequestId};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::h1;
use crate::plugin::Flow;
use crate::snapshot::{PluginInstance, RouteRuntime};
use crate::upstream::{ExchangeError, RequestBody, UpstreamError, UpstreamRequest};
use crate::{ProxyBody, ProxyRequest, SERVER_TOKEN, VIA_TOKEN};
use gatehouse_listener::body::BodyFailure;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, Uri};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Gatehouse-Request-Id` (Kong: `X-Kong-Request-Id`).
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-gatehouse-request-id");
static X_UPSTREAM_LATENCY: HeaderName = HeaderName::from_static("x-gatehouse-upstream-latency");
static X_PROXY_LATENCY: HeaderName = HeaderName::from_static("x-gatehouse-proxy-latency");
static X_RESPONSE_LATENCY: HeaderName = HeaderName::from_static("x-gatehouse-response-latency");

/// What the server knows about the connection a request came in on, with the header values
/// every request on it sends upstream prepared once.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client.
    pub peer: SocketAddr,
    /// The listener's address (its port is `X-Forwarded-Port`).
    pub local: SocketAddr,
    /// The client's IP (`X-Real-IP`, and `X-Forwarded-For` when the client sent none).
    peer_ip: HeaderValue,
    /// The listener's port (`X-Forwarded-Port`).
    local_port: HeaderValue,
    /// The connection is TLS (the request is `https`).
    secure: bool,
    /// The server name the client sent in its TLS handshake (routes' `snis`).
    sni: Option<Box<str>>,
}

impl ConnInfo {
    /// The information about a connection from `peer` accepted on `local`.
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Self {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        Self {
            peer,
            local,
            peer_ip,
            local_port: HeaderValue::from(local.port()),
            secure: false,
            sni: None,
        }
    }

    /// The same connection, over TLS with server name `sni`.
    pub fn with_tls(mut self, sni: Option<&str>) -> Self {
        self.secure = true;
        self.sni = sni.map(Into::into);
        self
    }
}

/// What [`handle`] answers with.
pub enum Reply {
    /// A response whose head is held as `http` parts: the gateway's and the plugins' own
    /// answers, and upstream responses that a plugin's `response_headers` phase sees or that
    /// need more than fields left out ([`crate::h1::ResponseHead::forwardable`]).
    Parts(Response<ProxyBody>),
    /// An upstream response whose header fields go to the client as they arrived, less this
    /// hop's own, followed by the gateway's. Boxed: the reply is handed up through three
    /// async layers, and one allocation is cheaper than copying ~200 bytes at each.
    Forward(Box<Forward>),
}

/// An upstream response forwarded with its head as received, and the fields the gateway adds
/// to it (`Via`, `Server` when the upstream sent none, the latency headers, the request id).
pub struct Forward {
    /// The upstream's head.
    pub head: crate::h1::ResponseHead,
    /// The upstream's body.
    pub body: ProxyBody,
    /// `X-Gatehouse-Upstream-Latency`, milliseconds.
    pub upstream_latency: u64,
    /// `X-Gatehouse-Proxy-Latency`, milliseconds.
    pub proxy_latency: u64,
    /// `X-Gatehouse-Request-Id`.
    pub request_id: HeaderValue,
    /// After `101 Switching Protocols` to a WebSocket upgrade: the upstream's end of the
    /// connection, to relay to the client's once the head is sent, and how long the relay may
    /// sit idle (the service's `read_timeout`).
    pub upgraded: Option<(crate::upstream::Upgraded, Duration)>,
}

impl Reply {
    /// The status sent to the client.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Parts(resp) => resp.status(),
            Self::Forward(f) => f.head.status,
        }
    }
}

/// Handles one request. `req` arrives with the head and body as the client sent them (its
/// `upstream_path` is set here, after routing); it is taken by reference so that the head, a
/// few hundred bytes, stays where the connection parsed it.
pub async fn handle(gw: &Gateway, req: &mut ProxyRequest, conn: &ConnInfo) -> Reply {
    let snapshot = gw.snapshot();
    let mut ctx = RequestCtx::new(snapshot, RequestId::next(), conn.peer);
    let request_id = ctx.request_id.header_value();
    let mut executed: Vec<Arc<PluginInstance>> = Vec::new();
    let result = proxy(&mut ctx, req, conn, &request_id, &mut executed).await;
    let mut reply = match result {
        Ok(reply) => reply,
        Err(e) => {
            let mut resp = e.response(&ctx.request_id, req.parts.headers.get(header::ACCEPT));
            resp.headers_mut()
                .insert(X_RESPONSE_LATENCY.clone(), millis_since(ctx.started));
            Reply::Parts(resp)
        }
    };
    match &mut reply {
        Reply::Forward(forward) => forward.request_id = request_id,
        Reply::Parts(resp) => {
            resp.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
            if !executed.is_empty() {
                let taken = std::mem::replace(resp, Response::new(crate::empty_body()));
                let (mut parts, body) = taken.into_parts();
                for inst in &executed {
                    inst.plugin.response_headers(&mut ctx, &mut parts);
                }
                *resp = Response::from_parts(parts, body);
            }
        }
    }
    let status = reply.status();
    for inst in &executed {
        inst.plugin.log(&ctx, status);
    }
    reply
}

async fn proxy(
    ctx: &mut RequestCtx,
    req: &mut ProxyRequest,
    conn: &ConnInfo,
    request_id: &HeaderValue,
    executed: &mut Vec<Arc<PluginInstance>>,
) -> Result<Reply, GatewayError> {
    // The head's size was bounded by the listener (server::MAX_HEADER_BYTES, 431).
    // Hop-by-hop headers, including those the client names in `Connection`, go before any
    // plugin runs: otherwise `Connection: X-Anonymous-Consumer` would strip a header a plugin
    // set for the upstream.
    let upgrade = is_websocket_upgrade(&req.parts);
    strip_hop_by_hop(&mut req.parts.headers);
    let parts = &req.parts;
    // The request as it came, for routing and the forwarding headers after plugins may have
    // changed it: shared copies of the head's bytes, not new strings.
    let uri = parts.uri.clone();
    let raw_path = uri.path();
    let path = gatehouse_router::normalize_path(raw_path).map_err(|_| GatewayError::BadRequest)?;
    let host_source = request_host(parts);
    let host = host_source.as_ref().and_then(RequestHost::as_str);
    let (route, prefix_len) = {
        let snapshot = &ctx.snapshot;
        let found = snapshot.router.find(&gatehouse_router::RequestView {
            method: &parts.method,
            host,
            path: &path,
            headers: &parts.headers,
            sni: conn.sni.as_deref(),
            websocket: upgrade,
        });
        let Some(m) = found else {
            return Err(GatewayError::NoRoute);
        };
        let route: Arc<RouteRuntime> = snapshot
            .routes
            .get(m.route_id as usize)
            .cloned()
            .ok_or(GatewayError::Internal)?;
        ctx.uri_captures = m.captures;
        (route, m.prefix_len)
    };
    ctx.route = Some(route.clone());

    // Kong's rule: an https-only (or wss-only) route reached over plain http is refused or
    // redirected; a route without `https` in its protocols still serves a TLS request.
    if !route.accepts_http && !conn.secure {
        return match https_redirect(route.route.https_redirect_status_code, host, &uri) {
            Some(resp) => Ok(Reply::Parts(resp)),
            None => Err(GatewayError::HttpsRequired),
        };
    }

    let service_path = route
        .service
        .as_ref()
        .and_then(|s| s.service.path.as_deref());
    req.upstream_path = gatehouse_router::upstream_path(
        service_path,
        &path,
        prefix_len,
        route.route.strip_path,
        route.path_handling,
    );

    for slot in &route.plugins {
        let consumer = ctx.consumer.as_ref().map(|c| c.id);
        let Some(inst) = slot.resolve(consumer).cloned() else {
            continue;
        };
        let flow = inst.plugin.access(ctx, req).await;
        executed.push(inst.clone());
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Respond(mut resp)) => {
                let h = resp.headers_mut();
                h.entry(header::SERVER)
                    .or_insert(HeaderValue::from_static(SERVER_TOKEN));
                h.insert(X_RESPONSE_LATENCY.clone(), millis_since(ctx.started));
                return Ok(Reply::Parts(resp));
            }
            Err(e) => {
                tracing::error!(plugin = inst.name, request_id = %ctx.request_id, error = %e, "plugin failed");
                return Err(GatewayError::Internal);
            }
        }
    }

    let Some(service) = route.service.clone() else {
        return Err(GatewayError::NoService);
    };
    let svc = &service.service;

    let req_parts = &mut req.parts;
    let upstream_path = &req.upstream_path;
    let req_body = std::mem::replace(&mut req.body, crate::empty_body());
    // The upstream gets the request target in origin form, `path?query`.
    let query = req_parts.uri.query().or_else(|| {
        req_parts
            .uri
            .path_and_query()
            .is_some_and(|p| p.as_str().ends_with('?'))
            .then_some("")
    });
    if !h1::is_safe_target(upstream_path) || query.is_some_and(|q| !h1::is_safe_target(q)) {
        return Err(GatewayError::BadRequest);
    }

    let headers = &mut req_parts.headers;
    let body = upstream_body(headers, req_body)?;
    let bodiless = matches!(body, RequestBody::Empty);
    let client_host = host.unwrap_or("");
    let prefix = &path[..prefix_len.min(path.len())];
    let forwarding = Forwarding {
        host: if !route.route.preserve_host {
            Some(service.host_header.as_bytes())
        } else if headers.contains_key(header::HOST) {
            None
        } else {
            Some(client_host.as_bytes())
        },
        conn,
        request_id,
        client_host,
        raw_path,
        prefix: (route.route.strip_path && !prefix.is_empty() && prefix != "/").then_some(prefix),
    };

    let method = &req_parts.method;
    let mut head = Vec::with_capacity(384 + 48 * headers.len());
    h1::write_request_line(&mut head, method, upstream_path, query);
    write_upstream_headers(&mut head, headers, &forwarding);
    if upgrade {
        head.extend_from_slice(b"connection: upgrade\r\nupgrade: websocket\r\n");
    }
    head.extend_from_slice(b"\r\n");

    let read_timeout = Duration::from_millis(u64::from(svc.read_timeout));
    // The wait for the response head is the read timeout (Kong's 60 s by default), counted
    // from the exchange's start; connecting is bounded by connect_timeout on its own.
    let header_timeout = read_timeout;
    let attempts = if bodiless { svc.retries + 1 } else { 1 };
    let mut body = Some(body);
    let sent_at = Instant::now();
    let mut last_failure = GatewayError::BadGateway;
    let mut upstream_resp = None;
    for attempt in 0..attempts {
        let started = if attempt == 0 {
            sent_at
        } else {
            Instant::now()
        };
        let request = UpstreamRequest {
            head: &head,
            body: body.take().unwrap_or(RequestBody::Empty),
            method,
            read_timeout,
            write_timeout: Duration::from_millis(u64::from(svc.write_timeout)),
            deadline: tokio::time::Instant::from_std(started) + header_timeout,
            upgrade,
            started,
        };
        match service.pool.send(request).await {
            Ok(resp) => {
                upstream_resp = Some(resp);
                break;
            }
            Err(UpstreamError::TimedOut) => {
                tracing::warn!(request_id = %ctx.request_id, service = %svc.id, "upstream timed out");
                last_failure = GatewayError::Timeout;
                break;
            }
            Err(e) => {
                tracing::warn!(request_id = %ctx.request_id, service = %svc.id, attempt, error = %e, "upstream request failed");
                let retry = e.is_retryable();
                last_failure = match e {
                    UpstreamError::Resolve(_) => GatewayError::NameResolution,
                    // The client's own body was too slow, too large, malformed, cut or of
                    // the wrong length.
                    UpstreamError::Exchange(ExchangeError::RequestBody(e)) => {
                        match gatehouse_listener::body::failure(&*e) {
                            BodyFailure::TimedOut => GatewayError::RequestTimeout,
                            BodyFailure::TooLarge => GatewayError::PayloadTooLarge,
                            BodyFailure::Broken => GatewayError::BadRequest,
                        }
                    }
                    UpstreamError::Exchange(ExchangeError::BodyLength) => GatewayError::BadRequest,
                    _ => GatewayError::BadGateway,
                };
                if !retry {
                    break;
                }
            }
        }
    }
    let Some(resp) = upstream_resp else {
        return Err(last_failure);
    };
    let upstream_latency = sent_at.elapsed();
    let proxy_latency = sent_at.duration_since(ctx.started);

    let body = resp.body.boxed_unsync();
    let rewritten = executed
        .iter()
        .any(|inst| inst.plugin.rewrites_response_headers());
    if let Some(upgraded) = resp.upgraded {
        // The switch is forwarded as received; the head's own fields are not rewritten.
        return Ok(Reply::Forward(Box::new(Forward {
            head: resp.head,
            body,
            upstream_latency: whole_millis(upstream_latency),
            proxy_latency: whole_millis(proxy_latency),
            request_id: HeaderValue::from_static(""),
            upgraded: Some((upgraded, read_timeout)),
        })));
    }
    if resp.head.forwardable() && !rewritten {
        return Ok(Reply::Forward(Box::new(Forward {
            head: resp.head,
            body,
            upstream_latency: whole_millis(upstream_latency),
            proxy_latency: whole_millis(proxy_latency),
            request_id: HeaderValue::from_static(""),
            upgraded: None,
        })));
    }
    let mut parts = resp.head.into_parts().map_err(|e| {
        tracing::warn!(request_id = %ctx.request_id, service = %svc.id, error = %e, "upstream response head refused");
        GatewayError::BadGateway
    })?;
    strip_hop_by_hop(&mut parts.headers);
    let h = &mut parts.headers;
    append_via(h, parts.version);
    h.entry(header::SERVER)
        .or_insert(HeaderValue::from_static(SERVER_TOKEN));
    h.insert(X_UPSTREAM_LATENCY.clone(), millis(upstream_latency));
    h.insert(X_PROXY_LATENCY.clone(), millis(proxy_latency));
    Ok(Reply::Parts(Response::from_parts(parts, body)))
}

/// The request body as it goes upstream, with the framing header that says how it is
/// delimited: the client's `Content-Length` when it sent one, else the body's exact size when
/// known, else chunked.
fn upstream_body(headers: &mut HeaderMap, body: ProxyBody) -> Result<RequestBody, GatewayError> {
    if let Some(len) = h1::content_length(headers).map_err(|_| GatewayError::BadRequest)? {
        return Ok(if len == 0 && http_body::Body::is_end_stream(&body) {
            RequestBody::Empty
        } else {
            RequestBody::Length(body, len)
        });
    }
    if http_body::Body::is_end_stream(&body) {
        return Ok(RequestBody::Empty);
    }
    if let Some(len) = http_body::Body::size_hint(&body).exact() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        return Ok(RequestBody::Length(body, len));
    }
    headers.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    Ok(RequestBody::Chunked(body))
}

/// Whole milliseconds as a header value (Kong's latency headers).
fn millis(d: Duration) -> HeaderValue {
    HeaderValue::from(whole_millis(d))
}

fn whole_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn millis_since(start: Instant) -> HeaderValue {
    millis(start.elapsed())
}

/// Where the request's host name came from, held as a shared copy of the head's bytes.
enum RequestHost {
    Header(HeaderValue),
    Authority(http::uri::Authority),
}

impl RequestHost {
    /// The host as text; `None` for a `Host` with bytes that are not visible ASCII.
    fn as_str(&self) -> Option<&str> {
        match self {
            Self::Header(v) => v.to_str().ok(),
            Self::Authority(a) => Some(a.as_str()),
        }
    }
}

/// The `Host` as the client sent it (HTTP/2 `:authority` when there is no `Host`).
fn request_host(parts: &http::request::Parts) -> Option<RequestHost> {
    match parts
        .headers
        .get(header::HOST)
        .filter(|v| v.to_str().is_ok())
    {
        Some(v) => Some(RequestHost::Header(v.clone())),
        None => parts.uri.authority().cloned().map(RequestHost::Authority),
    }
}

/// Whether the request asks to switch to WebSocket (RFC 6455 §4.1): a bodiless HTTP/1.1 GET
/// with `Upgrade: websocket` and `upgrade` among its `Connection` options.
fn is_websocket_upgrade(parts: &http::request::Parts) -> bool {
    if parts.version != http::Version::HTTP_11 || parts.method != http::Method::GET {
        return false;
    }
    let h = &parts.headers;
    if h.contains_key(header::CONTENT_LENGTH) || h.contains_key(header::TRANSFER_ENCODING) {
        return false;
    }
    let token = |name: header::HeaderName, want: &[u8]| {
        h.get_all(name).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(want))
        })
    };
    token(header::CONNECTION, b"upgrade") && token(header::UPGRADE, b"websocket")
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    h1::is_hop_by_hop(name.as_str().as_bytes())
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests carry none: one pass over the names is cheaper than nine lookups. Most
    // upstream responses carry just `Connection: keep-alive`: only what is there is removed.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|b| *b == b',') {
            let token = token.trim_ascii();
            if token.eq_ignore_ascii_case(b"close") || token.eq_ignore_ascii_case(b"keep-alive") {
                continue; // connection options, and keep-alive is doomed already if present
            }
            if let Ok(name) = HeaderName::from_bytes(token) {
                doomed.push(name);
            }
        }
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// Our `Via` element for a response received in `version`.
pub(crate) fn via_element(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_10 => concat!("1.0 gatehouse/", env!("CARGO_PKG_VERSION")),
        http::Version::HTTP_2 => concat!("2 gatehouse/", env!("CARGO_PKG_VERSION")),
        _ => concat!("1.1 gatehouse/", env!("CARGO_PKG_VERSION")),
    }
}

/// The whole `Via` field line (name, value, CRLF) when this hop's element is its only one.
pub(crate) fn via_field(version: http::Version) -> &'static [u8] {
    match version {
        http::Version::HTTP_10 => concat!("via: 1.0 gatehouse/", env!("CARGO_PKG_VERSION"), "\r\n"),
        http::Version::HTTP_2 => concat!("via: 2 gatehouse/", env!("CARGO_PKG_VERSION"), "\r\n"),
        _ => concat!("via: 1.1 gatehouse/", env!("CARGO_PKG_VERSION"), "\r\n"),
    }
    .as_bytes()
}

fn append_via(headers: &mut HeaderMap, version: http::Version) {
    let ours = via_element(version);
    let value = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing}, {ours}"),
        None => {
            headers.insert(header::VIA, HeaderValue::from_static(ours));
            return;
        }
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(header::VIA, v);
    }
}

/// What the proxy tells the upstream about the request (spec C.5), written after the client's
/// own headers; the client's values of these names are dropped, or extended for
/// `X-Forwarded-For` and `Via` (no peer is trusted, Kong's default `trusted_ips = NONE`).
struct Forwarding<'a> {
    /// The `Host` sent instead of the client's; `None` keeps the client's.
    host: Option<&'a [u8]>,
    conn: &'a ConnInfo,
    request_id: &'a HeaderValue,
    client_host: &'a str,
    raw_path: &'a str,
    /// The prefix the route stripped, when it stripped one (`X-Forwarded-Prefix`).
    prefix: Option<&'a str>,
}

/// Writes the upstream request's header fields: the client's (hop-by-hop ones were removed
/// before the plugins ran), then the forwarding headers, straight into the head's bytes.
fn write_upstream_headers(out: &mut Vec<u8>, headers: &HeaderMap, fwd: &Forwarding<'_>) {
    let mut forwarded_for = false;
    let mut via = false;
    for (name, value) in headers {
        match name.as_str() {
            "host" if fwd.host.is_some() => continue,
            "x-forwarded-for" => forwarded_for = true,
            "via" => via = true,
            "x-forwarded-proto"
            | "x-forwarded-host"
            | "x-forwarded-port"
            | "x-forwarded-path"
            | "x-forwarded-prefix"
            | "x-real-ip"
            | "x-gatehouse-request-id" => {}
            name => {
                h1::write_field(out, name.as_bytes(), value.as_bytes());
                continue;
            }
        }
    }
    if let Some(host) = fwd.host {
        write_checked(out, b"host", host);
    }
    let peer_ip = fwd.conn.peer_ip.as_bytes();
    if forwarded_for {
        let mut list = Vec::with_capacity(64);
        for v in headers.get_all(&X_FORWARDED_FOR) {
            list.extend_from_slice(v.as_bytes());
            list.extend_from_slice(b", ");
        }
        list.extend_from_slice(peer_ip);
        h1::write_field(out, b"x-forwarded-for", &list);
    } else {
        h1::write_field(out, b"x-forwarded-for", peer_ip);
    }
    out.extend_from_slice(if fwd.conn.secure {
        b"x-forwarded-proto: https\r\n"
    } else {
        b"x-forwarded-proto: http\r\n"
    });
    write_checked(
        out,
        b"x-forwarded-host",
        strip_port(fwd.client_host).as_bytes(),
    );
    h1::write_field(out, b"x-forwarded-port", fwd.conn.local_port.as_bytes());
    write_checked(out, b"x-forwarded-path", fwd.raw_path.as_bytes());
    if let Some(prefix) = fwd.prefix {
        write_checked(out, b"x-forwarded-prefix", prefix.as_bytes());
    }
    h1::write_field(out, b"x-real-ip", peer_ip);
    if via {
        let mut list = Vec::with_capacity(64);
        for v in headers.get_all(header::VIA) {
            list.extend_from_slice(v.as_bytes());
            list.extend_from_slice(b", ");
        }
        list.extend_from_slice(b"1.1 ");
        list.extend_from_slice(VIA_TOKEN.as_bytes());
        h1::write_field(out, b"via", &list);
    } else {
        out.extend_from_slice(via_field(http::Version::HTTP_11));
    }
    h1::write_field(out, b"x-gatehouse-request-id", fwd.request_id.as_bytes());
}

/// Writes a field whose value the proxy computed from the request (a host, a decoded path):
/// left out when it holds a byte a field value may not (a control character).
fn write_checked(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    if h1::is_field_value(value) {
        h1::write_field(out, name, value);
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // `[v6]:port` → `[v6]`; anything without a closing bracket is returned as it is.
        return match host.split_once(']') {
            Some((h, _)) => &host[..h.len() + 1],
            None => host,
        };
    }
    host.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

/// The redirect (301/302/307/308) or 426 for an https-only route reached over http.
pub fn https_redirect(status: u16, host: Option<&str>, uri: &Uri) -> Option<Response<ProxyBody>> {
    let status = StatusCode::from_u16(status).ok()?;
    if status == StatusCode::UPGRADE_REQUIRED {
        return None;
    }
    let host = strip_port(host?);
    let location = format!(
        "https://{host}{}",
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut resp = Response::new(crate::empty_body());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_str(&location).ok()?);
    resp.headers_mut()
        .insert(header::SERVER, HeaderValue::from_static(SERVER_TOKEN));
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_field_is_the_via_element_as_a_field_line() {
        for version in [
            http::Version::HTTP_10,
            http::Version::HTTP_11,
            http::Version::HTTP_2,
        ] {
            assert_eq!(
                via_field(version),
                format!("via: {}\r\n", via_element(version)).as_bytes()
            );
        }
    }
}
