//! The router's public data types: [`RouteSpec`] in at build time,
//! [`RequestView`] in and [`Match`] out per request, [`RouterError`] when a
//! configuration cannot be compiled.

use std::fmt;

/// One route as the router sees it.
///
/// The admin layer validates routes before they get here (see the
/// `validate_*` functions), but [`Router::build`](crate::Router::build)
/// still refuses values it cannot compile (bad regexes, hosts, header names,
/// methods) with a [`RouterError`] instead of panicking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSpec {
    /// Opaque key the caller maps back to its route entity; returned in
    /// [`Match::route_id`] and used as the last tie-breaker.
    pub id: u64,
    /// HTTP methods, uppercase (`GET`); any one must equal the request's.
    pub methods: Vec<String>,
    /// Hosts: `example.com`, `example.com:8080`, `*.example.com`,
    /// `example.*`, IP literals.
    pub hosts: Vec<String>,
    /// Paths: `/prefix` (plain, not segment-aware prefix) or `~/regex`
    /// (anchored at the start only).
    pub paths: Vec<String>,
    /// Header name → accepted values. Every name must match (AND); for one
    /// name any value may match (OR). A value starting with `~*` is a
    /// case-insensitive, unanchored regex.
    pub headers: Vec<(String, Vec<String>)>,
    /// TLS server names; only consulted for requests that carry an SNI.
    pub snis: Vec<String>,
    /// Matches WebSocket handshakes only (Kong Enterprise's `ws`/`wss` protocols); other
    /// routes match every request, handshakes included.
    pub websocket_only: bool,
    /// Priority among regex routes (higher first); ignored for routes
    /// without regex paths, as in Kong.
    pub regex_priority: i64,
    /// Creation time (Unix seconds); older routes win ties.
    pub created_at: i64,
}

/// The parts of a request the router looks at. Nothing is copied.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Request method.
    pub method: &'a http::Method,
    /// `Host` header as sent (HTTP/2: `:authority`), possibly with `:port`;
    /// `None` when absent, in which case routes with `hosts` cannot match.
    pub host: Option<&'a str>,
    /// The request path as returned by
    /// [`normalize_path`](crate::normalize_path), without query string.
    pub path: &'a str,
    /// Request headers, for routes with `headers`.
    pub headers: &'a http::HeaderMap,
    /// TLS SNI of the connection; `None` for plain-text connections (or a
    /// TLS client that sent none), in which case a route's `snis` are not
    /// considered at all (Kong's `net.protocol != "https" || tls.sni == …`).
    pub sni: Option<&'a str>,
    /// Whether the request is a WebSocket handshake (`Upgrade: websocket`); only those match
    /// [`RouteSpec::websocket_only`] routes.
    pub websocket: bool,
}

/// The result of a successful [`Router::find`](crate::Router::find).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match<'r> {
    /// [`RouteSpec::id`] of the matched route.
    pub route_id: u64,
    /// The route path (as configured, regex paths with their `~`) that
    /// matched; `None` when the route has no paths.
    pub matched_path: Option<&'r str>,
    /// Bytes of the request path consumed by the path match: the prefix
    /// length for prefix paths, the whole regex match for regex paths, `0`
    /// when the route has no paths. Feed it to
    /// [`upstream_path`](crate::upstream_path).
    pub prefix_len: usize,
    /// Regex captures (Kong's `uri_captures`); empty for prefix paths and
    /// routes without paths.
    pub captures: Captures,
}

/// Captures of a regex path match. Only filled for regex routes; for other
/// routes both vectors are empty and nothing is allocated.
///
/// For a regex match `positional[0]` is always the whole match. Kong hands
/// `uri_captures` to plugins only when the pattern has at least one group
/// that participated; check `positional.len() > 1` to do the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures {
    /// Positional captures: index 0 is the whole match, index `i` the `i`-th
    /// group, `None` for a group that did not participate.
    pub positional: Vec<Option<String>>,
    /// Named groups that participated in the match, in pattern order.
    pub named: Vec<(String, String)>,
}

impl Captures {
    /// True when there is nothing captured (prefix routes).
    pub fn is_empty(&self) -> bool {
        self.positional.is_empty() && self.named.is_empty()
    }

    /// Positional capture `i` (0 = whole match), if it participated.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.positional.get(i).and_then(Option::as_deref)
    }

    /// Named capture `name`, if it participated.
    pub fn name(&self, name: &str) -> Option<&str> {
        self.named
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Which field of a route an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteField {
    /// `methods`.
    Methods,
    /// `hosts`.
    Hosts,
    /// `paths`.
    Paths,
    /// `headers` (name or value).
    Headers,
    /// `snis`.
    Snis,
}

impl fmt::Display for RouteField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteField::Methods => "methods",
            RouteField::Hosts => "hosts",
            RouteField::Paths => "paths",
            RouteField::Headers => "headers",
            RouteField::Snis => "snis",
        })
    }
}

/// A route that [`Router::build`](crate::Router::build) cannot compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {route_id}: invalid value '{value}' in '{field}': {reason}")]
pub struct RouterError {
    /// [`RouteSpec::id`] of the offending route.
    pub route_id: u64,
    /// The field holding the offending value.
    pub field: RouteField,
    /// The offending value, as configured.
    pub value: String,
    /// Why it was refused (Kong's wording where there is one).
    pub reason: String,
}
