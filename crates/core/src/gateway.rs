//! Gateway entities: control planes and the core entities of a control plane (services,
//! routes, consumers, plugins), in the Kong Admin API's shape.
//!
//! Each core entity has a raw form (any JSON from a request body) and a validated form (the
//! structs here). `*::from_input` applies Kong's defaults and validation rules (spec B.2–B.5) and
//! returns every problem at once as [`FieldErrors`]; the structs serialise to exactly the JSON
//! the Admin API returns, and that JSON is also what the store keeps, so one shape serves the
//! wire, the database and the proxy's snapshot.

use crate::kong_schema::{
    FieldErrors, KongReader, MAX_NAME_CHARS, invalid_name_message, valid_name,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The kinds of core entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// `/services`
    Service,
    /// `/routes`
    Route,
    /// `/consumers`
    Consumer,
    /// `/plugins`
    Plugin,
    /// `/certificates`
    Certificate,
    /// `/snis`
    Sni,
    /// `/ca_certificates`
    CaCertificate,
}

impl EntityKind {
    /// The collection name, as in URLs and in Kong's error messages (`services`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "services",
            Self::Route => "routes",
            Self::Consumer => "consumers",
            Self::Plugin => "plugins",
            Self::Certificate => "certificates",
            Self::Sni => "snis",
            Self::CaCertificate => "ca_certificates",
        }
    }

    /// Parses a collection name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "services" => Self::Service,
            "routes" => Self::Route,
            "consumers" => Self::Consumer,
            "plugins" => Self::Plugin,
            "certificates" => Self::Certificate,
            "snis" => Self::Sni,
            "ca_certificates" => Self::CaCertificate,
            _ => return None,
        })
    }

    /// The field that can stand for the id in URLs (Kong's `endpoint_key`).
    pub fn endpoint_key(self) -> &'static str {
        match self {
            Self::Service | Self::Route | Self::Sni => "name",
            Self::Consumer => "username",
            Self::Plugin => "instance_name",
            // Certificates have no endpoint key of their own (Kong addresses them by SNI name
            // too, which the admin layer resolves).
            Self::Certificate | Self::CaCertificate => "id",
        }
    }

    /// The field name of a reference to this kind (`service`, `route`, …).
    pub fn singular(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Route => "route",
            Self::Consumer => "consumer",
            Self::Plugin => "plugin",
            Self::Certificate => "certificate",
            Self::Sni => "sni",
            Self::CaCertificate => "ca_certificate",
        }
    }
}

/// A reference to another entity, `{"id": …}` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    /// The referenced entity's id.
    pub id: Uuid,
}

/// A control plane (Konnect's `ControlPlane`): a named, isolated set of core entities.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlPlane {
    /// Id.
    pub id: Uuid,
    /// Unique name, 1–256 characters.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Konnect labels.
    pub labels: BTreeMap<String, String>,
    /// `CLUSTER_TYPE_CONTROL_PLANE` and the other Konnect cluster types.
    pub cluster_type: String,
    /// `pinned_client_certs` or `pki_client_certs` (kept for compatibility; Gatehouse nodes
    /// share a database instead).
    pub auth_type: String,
    /// Konnect's cloud-gateway flag (kept for compatibility).
    pub cloud_gateway: bool,
    /// Proxy URLs the user declared for this control plane.
    pub proxy_urls: Vec<ProxyUrl>,
    /// Creation time.
    pub created_at: crate::Timestamp,
    /// Last change.
    pub updated_at: crate::Timestamp,
}

/// One of a control plane's declared proxy URLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyUrl {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `http` or `https`.
    pub protocol: String,
}

/// Konnect's cluster types.
pub const CLUSTER_TYPES: &[&str] = &[
    "CLUSTER_TYPE_CONTROL_PLANE",
    "CLUSTER_TYPE_K8S_INGRESS_CONTROLLER",
    "CLUSTER_TYPE_CONTROL_PLANE_GROUP",
    "CLUSTER_TYPE_SERVERLESS",
    "CLUSTER_TYPE_SERVERLESS_V1",
    "CLUSTER_TYPE_KAFKA_NATIVE_EVENT_PROXY",
];

/// Konnect's data-plane authentication types.
pub const AUTH_TYPES: &[&str] = &["pinned_client_certs", "pki_client_certs"];

/// One stored core entity: the Kong JSON plus the columns the store indexes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoreEntity {
    /// The control plane it belongs to.
    pub control_plane_id: Uuid,
    /// Its kind.
    pub kind: EntityKind,
    /// Its id.
    pub id: Uuid,
    /// The endpoint key's value (name, username, instance_name), unique per kind.
    pub endpoint_key: Option<String>,
    /// A second unique value: a consumer's `custom_id`, a plugin's scope combination.
    pub alt_key: Option<String>,
    /// The service it references.
    pub service_id: Option<Uuid>,
    /// The route it references.
    pub route_id: Option<Uuid>,
    /// The consumer it references.
    pub consumer_id: Option<Uuid>,
    /// The certificate it references (an SNI's certificate).
    #[serde(default)]
    pub certificate_id: Option<Uuid>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// The entity as the Admin API returns it.
    pub body: Value,
}

fn to_value<T: Serialize>(v: &T) -> Value {
    // These structs hold only strings, numbers, booleans, maps and lists: serialising them
    // cannot fail.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Service protocols the proxy can reach today (see docs/compatibility.md for the others):
/// `ws`/`wss` are Kong Enterprise's WebSocket services, reached like `http`/`https`.
pub const SERVICE_PROTOCOLS: &[&str] = &["http", "https", "ws", "wss"];
/// Every protocol Kong knows for services; those not in [`SERVICE_PROTOCOLS`] are refused
/// with a message saying so rather than accepted and left broken.
const KONG_SERVICE_PROTOCOLS: &[&str] = &[
    "grpc",
    "grpcs",
    "http",
    "https",
    "tcp",
    "tls",
    "tls_passthrough",
    "udp",
    "ws",
    "wss",
];

/// The largest timeout Kong accepts, in milliseconds.
pub const MAX_TIMEOUT_MS: i64 = 2_147_483_646;

/// A service: an upstream the proxy forwards to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Id.
    pub id: Uuid,
    /// Unique name.
    pub name: Option<String>,
    /// Upstream protocol.
    pub protocol: String,
    /// Upstream host (name or IP, no port).
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Path prefix on the upstream.
    pub path: Option<String>,
    /// Retries on connection failure.
    pub retries: u32,
    /// Connect timeout, ms.
    pub connect_timeout: u32,
    /// Write timeout (gap between writes), ms.
    pub write_timeout: u32,
    /// Read timeout (gap between reads), ms.
    pub read_timeout: u32,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Always null: Gatehouse has no certificate entities yet.
    pub client_certificate: Option<ForeignKey>,
    /// TLS verification (https upstreams).
    pub tls_verify: Option<bool>,
    /// TLS verification depth.
    pub tls_verify_depth: Option<u8>,
    /// Always null: Gatehouse has no CA certificate entities yet.
    pub ca_certificates: Option<Vec<Uuid>>,
    /// Disabled services take their routes out of the router.
    pub enabled: bool,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// Whether a service protocol reaches its upstream over TLS.
fn protocol_uses_tls(protocol: &str) -> bool {
    matches!(protocol, "https" | "wss")
}

impl Service {
    /// Whether the upstream is reached over TLS (`https`, `wss`).
    pub fn uses_tls(&self) -> bool {
        protocol_uses_tls(&self.protocol)
    }

    /// The port the upstream's scheme implies (443 over TLS, else 80).
    pub fn default_port(&self) -> u16 {
        if self.uses_tls() { 443 } else { 80 }
    }

    /// Validates a request body into a service (Kong's defaults for absent fields).
    pub fn from_input(
        id: Uuid,
        input: Value,
        created_at: i64,
        now: i64,
    ) -> Result<Self, FieldErrors> {
        let mut r = entity_reader(input)?;
        let name = read_name(&mut r, "name");
        let mut protocol = None;
        let mut host = None;
        let mut port = None;
        let mut path = None;
        if let Some(url) = r.string("url") {
            match parse_service_url(&url) {
                Ok(u) => {
                    // The shorthand wins over the separate fields (a PATCH with a new `url`
                    // carries the old ones along).
                    for f in ["protocol", "host", "port", "path"] {
                        r.ignore(f);
                    }
                    protocol = Some(u.0);
                    host = Some(u.1);
                    port = Some(u.2);
                    path = u.3;
                }
                Err(m) => r.errors.add("url", m),
            }
        }
        let protocol = match r.string("protocol").or(protocol) {
            Some(p) if SERVICE_PROTOCOLS.contains(&p.as_str()) => p,
            Some(p) if KONG_SERVICE_PROTOCOLS.contains(&p.as_str()) => {
                r.errors.add(
                    "protocol",
                    format!(
                        "protocol '{p}' is not supported by Gatehouse yet; use: {}",
                        SERVICE_PROTOCOLS.join(", ")
                    ),
                );
                p
            }
            Some(_) => {
                r.errors.add(
                    "protocol",
                    format!("expected one of: {}", KONG_SERVICE_PROTOCOLS.join(", ")),
                );
                "http".to_owned()
            }
            None => "http".to_owned(),
        };
        let explicit_host = r.string("host");
        let host = match explicit_host.or(host) {
            Some(h) => {
                if let Err(m) = validate_upstream_host(&h) {
                    r.errors.add("host", m);
                }
                h
            }
            None => {
                if !r.errors.has("url") {
                    r.errors.add("host", "required field missing");
                }
                String::new()
            }
        };
        let port = r
            .int("port", 0, 65535)
            .map(|p| p as u16)
            .or(port)
            .unwrap_or(80);
        let path = r.string("path").or(path);
        if let Some(p) = &path
            && let Err(m) = validate_service_path(p)
        {
            r.errors.add("path", m);
        }
        let retries = r.int("retries", 0, 32767).unwrap_or(5) as u32;
        let connect_timeout = r.int("connect_timeout", 1, MAX_TIMEOUT_MS).unwrap_or(60000) as u32;
        let write_timeout = r.int("write_timeout", 1, MAX_TIMEOUT_MS).unwrap_or(60000) as u32;
        let read_timeout = r.int("read_timeout", 1, MAX_TIMEOUT_MS).unwrap_or(60000) as u32;
        let tags = r.tags();
        let client_certificate = r.foreign("client_certificate").map(|id| ForeignKey { id });
        let ca_certificates = r.strings("ca_certificates", true).map(|ids| {
            ids.iter()
                .filter_map(|s| match Uuid::parse_str(s) {
                    Ok(u) => Some(u),
                    Err(_) => {
                        r.errors.add("ca_certificates", "expected a valid UUID");
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
        let tls_verify = r.bool("tls_verify");
        let tls_verify_depth = r.int("tls_verify_depth", 0, 64).map(|d| d as u8);
        // Kong's conditional checks: the upstream TLS settings need an https (or wss) service.
        if !protocol_uses_tls(&protocol) {
            let set = [
                ("client_certificate", client_certificate.is_some()),
                ("tls_verify", tls_verify.is_some()),
                ("tls_verify_depth", tls_verify_depth.is_some()),
                ("ca_certificates", ca_certificates.is_some()),
            ];
            let mut any = false;
            for (field, present) in set {
                if present {
                    any = true;
                    r.errors.add(field, "value must be null");
                }
            }
            if any {
                r.errors
                    .entity("failed conditional validation given value of field 'protocol'");
            }
        }
        let enabled = r.bool("enabled").unwrap_or(true);
        r.finish()?;
        Ok(Self {
            id,
            name,
            protocol,
            host,
            port,
            path,
            retries,
            connect_timeout,
            write_timeout,
            read_timeout,
            tags,
            client_certificate,
            tls_verify,
            tls_verify_depth,
            ca_certificates,
            enabled,
            created_at,
            updated_at: now,
        })
    }

    /// The stored form.
    pub fn to_entity(&self, control_plane_id: Uuid) -> CoreEntity {
        CoreEntity {
            control_plane_id,
            kind: EntityKind::Service,
            id: self.id,
            endpoint_key: self.name.clone(),
            alt_key: None,
            service_id: None,
            route_id: None,
            consumer_id: None,
            // The client certificate is a foreign key (it must exist; deleting it is refused).
            certificate_id: self.client_certificate.map(|c| c.id),
            created_at: self.created_at,
            body: to_value(self),
        }
    }
}

/// Splits a service `url` into protocol, host, port and path (Kong's shorthand).
fn parse_service_url(url: &str) -> Result<(String, String, u16, Option<String>), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => return Err("missing scheme in url".to_owned()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_owned())),
        None => (rest, None),
    };
    if authority.is_empty() {
        return Err("missing host in url".to_owned());
    }
    if authority.contains('@') {
        return Err("could not parse url: user info is not allowed".to_owned());
    }
    let (host, port) = split_host_port(authority)
        .ok_or_else(|| format!("could not parse url: invalid port in '{authority}'"))?;
    let port = port.unwrap_or(if protocol_uses_tls(&scheme) { 443 } else { 80 });
    let path = path.map(|p| match p.find(['?', '#']) {
        Some(i) => p[..i].to_owned(),
        None => p,
    });
    Ok((scheme, host.to_owned(), port, path))
}

/// `host[:port]`, with IPv6 literals in brackets.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &authority[..end + 2];
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((authority, None)),
    }
}

fn validate_upstream_host(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("length must be at least 1".to_owned());
    }
    if h.starts_with('[') && h.ends_with(']') {
        return h[1..h.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("invalid value: {h}"));
    }
    if h.contains(':') {
        return Err("must not have a port".to_owned());
    }
    let ok = h.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if ok && h.len() <= 253 {
        Ok(())
    } else {
        Err(format!("invalid value: {h}"))
    }
}

fn validate_service_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err("should start with: /".to_owned());
    }
    if p.contains("//") {
        return Err("must not have empty segments".to_owned());
    }
    let bytes = p.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'%' {
            let hex = bytes.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return Err("invalid url-encoded value".to_owned());
            }
            i += 3;
            continue;
        }
        let allowed = c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&c);
        if !allowed {
            return Err(format!(
                "invalid path: '{p}' (characters outside of the reserved list of RFC 3986 found)"
            ));
        }
        i += 1;
    }
    Ok(())
}

/// A reader over an entity body: the read-only fields (`id`, timestamps) a client may send back
/// from a GET are accepted and ignored.
fn entity_reader(input: Value) -> Result<KongReader, FieldErrors> {
    let mut r = KongReader::new(input)?;
    for read_only in ["id", "created_at", "updated_at"] {
        r.ignore(read_only);
    }
    Ok(r)
}

fn read_name(r: &mut KongReader, key: &str) -> Option<String> {
    let name = r.string(key)?;
    if name.chars().count() > MAX_NAME_CHARS {
        r.errors
            .add(key, format!("length must be at most {MAX_NAME_CHARS}"));
    } else if !valid_name(&name) {
        r.errors.add(key, invalid_name_message(&name));
    }
    Some(name)
}

/// Route protocols Gatehouse serves: the HTTP family, and Kong Enterprise's `ws`/`wss`, which
/// match WebSocket handshakes only.
pub const ROUTE_PROTOCOLS: &[&str] = &["http", "https", "ws", "wss"];
/// Kong's `mutually_exclusive_subsets` for route protocols: one route mixes no two of these.
const EXCLUSIVE_ROUTE_PROTOCOLS: &[&[&str]] = &[
    &["http", "https"],
    &["tcp", "tls", "udp"],
    &["tls_passthrough"],
    &["grpc", "grpcs"],
    &["ws", "wss"],
];
const KONG_ROUTE_PROTOCOLS: &[&str] = &[
    "grpc",
    "grpcs",
    "http",
    "https",
    "tcp",
    "tls",
    "tls_passthrough",
    "udp",
    "ws",
    "wss",
];

/// A route: which requests go to which service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Id.
    pub id: Uuid,
    /// Unique name.
    pub name: Option<String>,
    /// `http`, `https` (DESIGN §4: default both).
    pub protocols: Vec<String>,
    /// Methods matched.
    pub methods: Option<Vec<String>>,
    /// Hosts matched.
    pub hosts: Option<Vec<String>>,
    /// Paths matched (prefix, or `~` regex).
    pub paths: Option<Vec<String>>,
    /// Headers matched: name → accepted values.
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// SNIs matched.
    pub snis: Option<Vec<String>>,
    /// Stream-route sources (always null for HTTP routes).
    pub sources: Option<Vec<Value>>,
    /// Stream-route destinations (always null for HTTP routes).
    pub destinations: Option<Vec<Value>>,
    /// Strip the matched prefix from the upstream path.
    pub strip_path: bool,
    /// Send the client's Host upstream.
    pub preserve_host: bool,
    /// Kong's request buffering flag (Gatehouse always streams).
    pub request_buffering: bool,
    /// Kong's response buffering flag (Gatehouse always streams).
    pub response_buffering: bool,
    /// Priority among regex routes.
    pub regex_priority: i64,
    /// `v0` or `v1` upstream path construction.
    pub path_handling: String,
    /// Status for https-only routes over http.
    pub https_redirect_status_code: u16,
    /// The service it forwards to.
    pub service: Option<ForeignKey>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// Kong's "these sets are mutually exclusive" message when `protocols` draws from more than
/// one of [`EXCLUSIVE_ROUTE_PROTOCOLS`], naming the sets in the order they first appear.
fn mixed_protocol_sets(protocols: &[String]) -> Option<String> {
    let mut sets: Vec<&[&str]> = Vec::new();
    for p in protocols {
        if let Some(set) = EXCLUSIVE_ROUTE_PROTOCOLS
            .iter()
            .find(|set| set.contains(&p.as_str()))
            && !sets.contains(set)
        {
            sets.push(set);
        }
    }
    (sets.len() > 1).then(|| {
        let quoted: Vec<String> = sets
            .iter()
            .map(|set| {
                let items: Vec<String> = set.iter().map(|p| format!("'{p}'")).collect();
                format!("({})", items.join(", "))
            })
            .collect();
        format!("these sets are mutually exclusive: {}", quoted.join(", "))
    })
}

impl Route {
    /// Whether the route serves requests on the plain listener (`http` or `ws`); a route
    /// without either answers those with its `https_redirect_status_code`.
    pub fn accepts_plain(&self) -> bool {
        self.protocols.iter().any(|p| p == "http" || p == "ws")
    }

    /// Whether the route matches WebSocket handshakes only (Kong Enterprise's `ws`/`wss`).
    pub fn websocket_only(&self) -> bool {
        !self.protocols.is_empty() && self.protocols.iter().all(|p| p == "ws" || p == "wss")
    }

    /// Validates a request body into a route.
    pub fn from_input(
        id: Uuid,
        input: Value,
        created_at: i64,
        now: i64,
    ) -> Result<Self, FieldErrors> {
        let mut r = entity_reader(input)?;
        let name = read_name(&mut r, "name");
        let protocols = match r.strings("protocols", true) {
            Some(p) if p.is_empty() => {
                r.errors.add("protocols", "length must be at least 1");
                vec![]
            }
            Some(p) => {
                for proto in &p {
                    if !KONG_ROUTE_PROTOCOLS.contains(&proto.as_str()) {
                        r.errors.add(
                            "protocols",
                            format!("expected one of: {}", KONG_ROUTE_PROTOCOLS.join(", ")),
                        );
                    } else if !ROUTE_PROTOCOLS.contains(&proto.as_str()) {
                        r.errors.add(
                            "protocols",
                            format!(
                                "protocol '{proto}' is not supported by Gatehouse yet; use: {}",
                                ROUTE_PROTOCOLS.join(", ")
                            ),
                        );
                    }
                }
                if let Some(m) = mixed_protocol_sets(&p) {
                    r.errors.add("protocols", m);
                }
                p
            }
            None => vec!["http".to_owned(), "https".to_owned()],
        };
        let methods = r.strings("methods", true);
        if let Some(ms) = &methods {
            for m in ms {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    r.errors.add(
                        "methods",
                        format!("invalid value '{m}': expected only uppercase ASCII letters"),
                    );
                }
            }
        }
        let hosts = r.strings("hosts", false);
        if let Some(hs) = &hosts {
            for h in hs {
                if let Err(m) = gatehouse_router::validate_route_host(h) {
                    r.errors.add("hosts", m);
                }
            }
        }
        let paths = r.strings("paths", false);
        if let Some(ps) = &paths {
            for p in ps {
                if let Err(m) = gatehouse_router::validate_route_path(p) {
                    r.errors.add("paths", m);
                }
            }
        }
        let headers = read_headers(&mut r);
        let snis = r.strings("snis", true);
        for stream_only in ["sources", "destinations"] {
            if r.has(stream_only) {
                r.errors.add(
                    stream_only,
                    "only stream routes (tcp, tls, udp) take this field; Gatehouse serves HTTP routes",
                );
            }
            r.ignore(stream_only);
        }
        let strip_path = r.bool("strip_path").unwrap_or(true);
        let preserve_host = r.bool("preserve_host").unwrap_or(false);
        let request_buffering = r.bool("request_buffering").unwrap_or(true);
        let response_buffering = r.bool("response_buffering").unwrap_or(true);
        let regex_priority = r
            .int("regex_priority", -(1 << 31), (1 << 31) - 1)
            .unwrap_or(0);
        let path_handling = r.one_of("path_handling", &["v0", "v1"], "v0");
        let https_redirect_status_code = match r.int("https_redirect_status_code", 0, 999) {
            Some(c) if [426, 301, 302, 307, 308].contains(&c) => c as u16,
            Some(_) => {
                r.errors.add(
                    "https_redirect_status_code",
                    "expected one of: 426, 301, 302, 307, 308",
                );
                426
            }
            None => 426,
        };
        let service = r.foreign("service").map(|id| ForeignKey { id });
        let tags = r.tags();
        for unsupported in ["expression", "priority"] {
            if r.has(unsupported) {
                r.errors.add(
                    unsupported,
                    "only routes of the 'expressions' router flavor take this field; Gatehouse uses traditional_compatible",
                );
            }
            r.ignore(unsupported);
        }
        let nonempty = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
        // The protocol under which a route may match by SNI.
        let tls_protocol = protocols
            .iter()
            .map(String::as_str)
            .find(|p| matches!(*p, "https" | "wss"));
        let has_matcher = nonempty(&methods)
            || nonempty(&hosts)
            || nonempty(&paths)
            || headers.as_ref().is_some_and(|h| !h.is_empty())
            || (tls_protocol.is_some() && nonempty(&snis));
        if !has_matcher && let Some(first) = protocols.first() {
            let with_snis = tls_protocol.is_some();
            let proto = tls_protocol.unwrap_or(first.as_str());
            let list = if with_snis {
                "'methods', 'hosts', 'headers', 'paths', 'snis'"
            } else {
                "'methods', 'hosts', 'headers', 'paths'"
            };
            r.errors.entity(format!(
                "must set one of {list} when 'protocols' is '{proto}'"
            ));
        }
        if nonempty(&snis) && tls_protocol.is_none() {
            r.errors.entity(
                "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls', 'tls_passthrough', or 'wss'",
            );
        }
        r.finish()?;
        Ok(Self {
            id,
            name,
            protocols,
            methods,
            hosts,
            paths,
            headers,
            snis,
            sources: None,
            destinations: None,
            strip_path,
            preserve_host,
            request_buffering,
            response_buffering,
            regex_priority,
            path_handling,
            https_redirect_status_code,
            service,
            tags,
            created_at,
            updated_at: now,
        })
    }

    /// The stored form.
    pub fn to_entity(&self, control_plane_id: Uuid) -> CoreEntity {
        CoreEntity {
            control_plane_id,
            kind: EntityKind::Route,
            id: self.id,
            endpoint_key: self.name.clone(),
            alt_key: None,
            service_id: self.service.map(|s| s.id),
            route_id: None,
            consumer_id: None,
            certificate_id: None,
            created_at: self.created_at,
            body: to_value(self),
        }
    }
}

fn read_headers(r: &mut KongReader) -> Option<BTreeMap<String, Vec<String>>> {
    let v = r.take("headers")?;
    let Value::Object(m) = v else {
        r.errors.add("headers", "expected a map");
        return None;
    };
    let mut out = BTreeMap::new();
    for (name, values) in m {
        if let Err(msg) = gatehouse_router::validate_header_name(&name) {
            r.errors.add("headers", msg);
            continue;
        }
        let list = match values {
            Value::String(s) => vec![s],
            Value::Array(items) => {
                let mut list = Vec::with_capacity(items.len());
                for i in items {
                    match i {
                        Value::String(s) => list.push(s),
                        _ => {
                            r.errors.add("headers", "expected a string");
                        }
                    }
                }
                list
            }
            _ => {
                r.errors.add("headers", "expected an array");
                continue;
            }
        };
        if list.is_empty() {
            r.errors.add(
                "headers",
                format!("header '{name}' needs at least one value"),
            );
            continue;
        }
        for value in &list {
            if let Err(msg) = gatehouse_router::validate_header_value(value) {
                r.errors.add("headers", msg);
            }
        }
        out.insert(name, list);
    }
    Some(out)
}

/// A consumer: an identity the gateway knows, matched by username or custom id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consumer {
    /// Id.
    pub id: Uuid,
    /// Unique username.
    pub username: Option<String>,
    /// Unique custom id (the OAuth client id with `consumer_by: client_id`).
    pub custom_id: Option<String>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

impl Consumer {
    /// Validates a request body into a consumer.
    pub fn from_input(
        id: Uuid,
        input: Value,
        created_at: i64,
        now: i64,
    ) -> Result<Self, FieldErrors> {
        let mut r = entity_reader(input)?;
        let username = r.string("username");
        let custom_id = r.string("custom_id");
        for (f, v) in [("username", &username), ("custom_id", &custom_id)] {
            if v.as_deref() == Some("") {
                r.errors.add(f, "length must be at least 1");
            } else if v
                .as_deref()
                .is_some_and(|v| v.chars().count() > MAX_NAME_CHARS)
            {
                r.errors
                    .add(f, format!("length must be at most {MAX_NAME_CHARS}"));
            }
        }
        let tags = r.tags();
        if username.is_none() && custom_id.is_none() {
            r.errors
                .entity("at least one of these fields must be non-empty: 'custom_id', 'username'");
        }
        r.finish()?;
        Ok(Self {
            id,
            username,
            custom_id,
            tags,
            created_at,
            updated_at: now,
        })
    }

    /// The stored form.
    pub fn to_entity(&self, control_plane_id: Uuid) -> CoreEntity {
        CoreEntity {
            control_plane_id,
            kind: EntityKind::Consumer,
            id: self.id,
            endpoint_key: self.username.clone(),
            alt_key: self.custom_id.clone(),
            service_id: None,
            route_id: None,
            consumer_id: None,
            certificate_id: None,
            created_at: self.created_at,
            body: to_value(self),
        }
    }
}

/// What the plugin catalogue tells the entity layer about a plugin name.
pub trait PluginSchemas: Send + Sync {
    /// Validates `config` (absent = `{}`) for plugin `name` and fills defaults. `None` when no
    /// such plugin exists.
    fn validate_config(&self, name: &str, config: Value) -> Option<Result<Value, FieldErrors>>;
    /// The protocols a plugin supports (the default of its `protocols`).
    fn protocols(&self, name: &str) -> Vec<String>;
    /// Whether a plugin may be scoped to a consumer (auth plugins may not).
    fn allows_consumer(&self, name: &str) -> bool;
}

/// A plugin instance: a plugin's configuration at one scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plugin {
    /// Id.
    pub id: Uuid,
    /// The plugin's name (`oauth2-introspection`, …).
    pub name: String,
    /// Unique instance name.
    pub instance_name: Option<String>,
    /// The validated configuration, defaults filled in.
    pub config: Value,
    /// Protocols it runs for.
    pub protocols: Vec<String>,
    /// Disabled instances are ignored.
    pub enabled: bool,
    /// Service scope.
    pub service: Option<ForeignKey>,
    /// Route scope.
    pub route: Option<ForeignKey>,
    /// Consumer scope.
    pub consumer: Option<ForeignKey>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

impl Plugin {
    /// Validates a request body into a plugin instance; `config` goes through the plugin's own
    /// schema, and its errors nest under `config`.
    pub fn from_input(
        id: Uuid,
        input: Value,
        created_at: i64,
        now: i64,
        schemas: &dyn PluginSchemas,
    ) -> Result<Self, FieldErrors> {
        let mut r = entity_reader(input)?;
        let name = r.required_string("name");
        let instance_name = read_name(&mut r, "instance_name");
        let raw_config = r
            .take("config")
            .unwrap_or_else(|| Value::Object(Default::default()));
        let mut config = Value::Null;
        if let Some(n) = &name {
            match schemas.validate_config(n, raw_config) {
                None => r.errors.add(
                    "name",
                    format!(
                        "plugin '{n}' not enabled; add it to the 'plugins' configuration property"
                    ),
                ),
                Some(Ok(c)) => config = c,
                Some(Err(e)) => r.errors.nest("config", e),
            }
        }
        let supported = name
            .as_deref()
            .map(|n| schemas.protocols(n))
            .unwrap_or_default();
        let protocols = match r.strings("protocols", true) {
            Some(p) => {
                for proto in &p {
                    if !supported.contains(proto) {
                        r.errors.add(
                            "protocols",
                            format!("expected one of: {}", supported.join(", ")),
                        );
                    }
                }
                p
            }
            None => supported,
        };
        let enabled = r.bool("enabled").unwrap_or(true);
        let service = r.foreign("service").map(|id| ForeignKey { id });
        let route = r.foreign("route").map(|id| ForeignKey { id });
        let consumer = r.foreign("consumer").map(|id| ForeignKey { id });
        if consumer.is_some()
            && let Some(n) = &name
            && !schemas.allows_consumer(n)
        {
            r.errors.add(
                "consumer",
                format!("value must be null (plugin '{n}' cannot be applied to a consumer)"),
            );
        }
        let tags = r.tags();
        for unsupported in ["consumer_group", "ordering", "partials", "condition"] {
            if r.has(unsupported) {
                r.errors
                    .add(unsupported, "not supported by Gatehouse yet (must be null)");
            }
            r.ignore(unsupported);
        }
        r.finish()?;
        Ok(Self {
            id,
            name: name.unwrap_or_default(),
            instance_name,
            config,
            protocols,
            enabled,
            service,
            route,
            consumer,
            tags,
            created_at,
            updated_at: now,
        })
    }

    /// The uniqueness key of Kong's `cache_key`: one instance per name and scope combination.
    pub fn scope_key(&self) -> String {
        let id = |f: &Option<ForeignKey>| f.map(|f| f.id.to_string()).unwrap_or_default();
        format!(
            "{}:{}:{}:{}",
            self.name,
            id(&self.route),
            id(&self.service),
            id(&self.consumer)
        )
    }

    /// The stored form.
    pub fn to_entity(&self, control_plane_id: Uuid) -> CoreEntity {
        CoreEntity {
            control_plane_id,
            kind: EntityKind::Plugin,
            id: self.id,
            endpoint_key: self.instance_name.clone(),
            alt_key: Some(self.scope_key()),
            service_id: self.service.map(|s| s.id),
            route_id: self.route.map(|s| s.id),
            consumer_id: self.consumer.map(|s| s.id),
            certificate_id: None,
            created_at: self.created_at,
            body: to_value(self),
        }
    }
}

/// Applies a PATCH body to an entity's JSON: top-level fields replace, except that a plugin's
/// `config` record merges field by field (as Kong does).
pub fn merge_patch(current: &Value, patch: Value) -> Result<Value, FieldErrors> {
    let Value::Object(patch) = patch else {
        let mut e = FieldErrors::new();
        e.entity("expected a record");
        return Err(e);
    };
    let mut out = current.clone();
    let Value::Object(target) = &mut out else {
        return Ok(Value::Object(patch));
    };
    for (k, v) in patch {
        match (k.as_str(), target.get_mut(&k), v) {
            ("config", Some(Value::Object(existing)), Value::Object(changes)) => {
                for (ck, cv) in changes {
                    existing.insert(ck, cv);
                }
            }
            (_, _, v) => {
                target.insert(k, v);
            }
        }
    }
    Ok(out)
}

pub mod certificates;

#[cfg(test)]
mod tests;
