//! The plugin's configuration: Kong's schema (spec A.2) with Gatehouse's defaults (DESIGN §4),
//! validated with Kong's messages, and its `/schemas/plugins/oauth2-introspection` description.

use gatehouse_core::kong_schema::{FieldErrors, KongReader};
use http::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Default `ttl`, seconds.
pub const DEFAULT_TTL: f64 = 30.0;
/// Default `timeout`, milliseconds.
pub const DEFAULT_TIMEOUT_MS: i64 = 10_000;
/// Default `keepalive`, milliseconds.
pub const DEFAULT_KEEPALIVE_MS: i64 = 60_000;
/// Default `cache_size` (Gatehouse extension), entries: about 40 MB at ~4 KB an entry (`bench/`).
pub const DEFAULT_CACHE_SIZE: i64 = 10_000;
/// Largest accepted `ttl`, seconds (Kong sets none; this keeps the arithmetic finite).
const MAX_TTL: f64 = 1_000_000_000.0;
/// Largest `timeout` / `keepalive`, as Kong's `typedefs.timeout`.
const MAX_MS: i64 = 2_147_483_646;
/// Largest `cache_size`.
const MAX_CACHE_SIZE: i64 = 100_000_000;

/// Which introspection field names the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerBy {
    /// The response's `username` is a consumer's `username`.
    Username,
    /// The response's `client_id` is a consumer's `custom_id`.
    ClientId,
}

impl ConsumerBy {
    /// The introspection response field that holds the consumer's key.
    pub fn claim(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::ClientId => "client_id",
        }
    }
}

/// A validated configuration, ready for the hot path.
#[derive(Clone)]
pub struct Config {
    /// The introspection endpoint: scheme, authority and path (Kong does not send the URL's
    /// query, and neither does Gatehouse).
    pub introspection_url: http::Uri,
    /// The `Authorization` header sent to the endpoint (marked sensitive).
    pub authorization_value: HeaderValue,
    /// The `token_type_hint` form field, when set.
    pub token_type_hint: Option<String>,
    /// How long an active result is cached; `None` = no fixed expiry (only the token's `exp`).
    pub ttl: Option<Duration>,
    /// Strip the token before the request goes upstream.
    pub hide_credentials: bool,
    /// Overall deadline of one introspection call; `None` when `timeout` is 0.
    pub timeout: Option<Duration>,
    /// Idle lifetime of pooled connections to the endpoint (0: no reuse).
    pub keepalive: Duration,
    /// Send `X-Request-Http-Method` and `X-Request-Path` with the call.
    pub introspect_request: bool,
    /// Extra headers for the call (`_` turned into `-` in the names).
    pub custom_introspection_headers: Vec<(HeaderName, HeaderValue)>,
    /// Claims forwarded upstream, with their `X-Credential-<claim>` header name.
    pub custom_claims_forward: Vec<(String, HeaderName)>,
    /// How the consumer is found.
    pub consumer_by: ConsumerBy,
    /// The anonymous consumer's id or username; `None` when `anonymous` is empty.
    pub anonymous: Option<String>,
    /// When false, `OPTIONS` requests bypass the plugin.
    pub run_on_preflight: bool,
    /// Most cached introspection results (Gatehouse extension).
    pub cache_size: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `authorization_value` is a secret: never printed.
        f.debug_struct("Config")
            .field("introspection_url", &self.introspection_url)
            .field("authorization_value", &"<redacted>")
            .field("token_type_hint", &self.token_type_hint)
            .field("ttl", &self.ttl)
            .field("hide_credentials", &self.hide_credentials)
            .field("timeout", &self.timeout)
            .field("keepalive", &self.keepalive)
            .field("introspect_request", &self.introspect_request)
            .field(
                "custom_introspection_headers",
                &self
                    .custom_introspection_headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("custom_claims_forward", &self.custom_claims_forward)
            .field("consumer_by", &self.consumer_by)
            .field("anonymous", &self.anonymous)
            .field("run_on_preflight", &self.run_on_preflight)
            .field("cache_size", &self.cache_size)
            .finish()
    }
}

/// Kong's `typedefs.url` check (`validate_url`), plus Gatehouse's restriction to http and https.
fn check_url(raw: &str) -> Result<http::Uri, String> {
    // `http:///path`: the url crate would take `path` as the host; Kong sees no host.
    if let Some((_, rest)) = raw.split_once("://")
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return Err("missing host in url".to_owned());
    }
    let parsed = match url::Url::parse(raw) {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            return Err(if raw.starts_with("//") {
                "missing scheme in url".to_owned()
            } else {
                "missing host in url".to_owned()
            });
        }
        Err(url::ParseError::EmptyHost) => return Err("missing host in url".to_owned()),
        Err(e) => return Err(format!("could not parse url. {e}")),
    };
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("missing host in url".to_owned());
    }
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported scheme in url '{}' (expected http or https)",
            parsed.scheme()
        ));
    }
    let mut target = String::with_capacity(raw.len());
    target.push_str(parsed.scheme());
    target.push_str("://");
    // `host_str` keeps IPv6 brackets; the port only when it is not the scheme's default.
    target.push_str(parsed.host_str().unwrap_or_default());
    if let Some(port) = parsed.port() {
        target.push(':');
        target.push_str(&port.to_string());
    }
    target.push_str(parsed.path());
    target
        .parse::<http::Uri>()
        .map_err(|e| format!("could not parse url. {e}"))
}

/// The header name for a forwarded claim: `X-Credential-<claim>` with `_` → `-`.
pub fn claim_header(claim: &str) -> Option<HeaderName> {
    let name = format!("x-credential-{}", claim.replace('_', "-"));
    HeaderName::from_bytes(name.as_bytes()).ok()
}

/// Reads, checks and normalises a raw configuration. Returns the hot-path form and the stored
/// form (every field present, defaults filled in, in Kong's field order).
pub fn parse(raw: Value) -> Result<(Config, Value), FieldErrors> {
    let mut r = KongReader::new(raw)?;

    let url_raw = r.required_string("introspection_url");
    let introspection_url = url_raw.as_deref().and_then(|u| match check_url(u) {
        Ok(uri) => Some(uri),
        Err(msg) => {
            r.errors.add("introspection_url", msg);
            None
        }
    });

    let ttl = match r.take("ttl") {
        None => DEFAULT_TTL,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if (0.0..=MAX_TTL).contains(&f) => f,
            _ => {
                r.errors.add(
                    "ttl",
                    format!("value should be between 0 and {}", MAX_TTL as i64),
                );
                DEFAULT_TTL
            }
        },
        Some(_) => {
            r.errors.add("ttl", "expected a number");
            DEFAULT_TTL
        }
    };

    let token_type_hint = r.string("token_type_hint");

    let auth_raw = r.required_string("authorization_value");
    let authorization_value = auth_raw.as_deref().and_then(|a| {
        match HeaderValue::from_str(a) {
            Ok(mut v) => {
                v.set_sensitive(true);
                Some(v)
            }
            Err(_) => {
                // The value itself is a secret: not echoed in the message.
                r.errors.add(
                    "authorization_value",
                    "invalid value: not a valid HTTP header value",
                );
                None
            }
        }
    });

    let timeout = r.int("timeout", 0, MAX_MS).unwrap_or(DEFAULT_TIMEOUT_MS);
    let keepalive = r
        .int("keepalive", 0, MAX_MS)
        .unwrap_or(DEFAULT_KEEPALIVE_MS);
    let introspect_request = r.bool("introspect_request").unwrap_or(false);
    let hide_credentials = r.bool("hide_credentials").unwrap_or(true);
    let run_on_preflight = r.bool("run_on_preflight").unwrap_or(true);
    let anonymous = r.string("anonymous").unwrap_or_default();
    let consumer_by = r.one_of("consumer_by", &["username", "client_id"], "username");

    let custom_headers_raw = r
        .string_map("custom_introspection_headers")
        .unwrap_or_default();
    let mut custom_introspection_headers = Vec::with_capacity(custom_headers_raw.len());
    for (name, value) in &custom_headers_raw {
        let header = name.replace('_', "-");
        let Ok(hn) = HeaderName::from_bytes(header.as_bytes()) else {
            r.errors.add(
                "custom_introspection_headers",
                format!("invalid header name '{name}'"),
            );
            continue;
        };
        let Ok(hv) = HeaderValue::from_str(value) else {
            r.errors.add(
                "custom_introspection_headers",
                format!("invalid value for header '{name}'"),
            );
            continue;
        };
        custom_introspection_headers.push((hn, hv));
    }

    let claims_raw = r.strings("custom_claims_forward", true).unwrap_or_default();
    let mut custom_claims_forward = Vec::with_capacity(claims_raw.len());
    for claim in &claims_raw {
        match claim_header(claim) {
            Some(h) if !claim.is_empty() => custom_claims_forward.push((claim.clone(), h)),
            _ => r.errors.add(
                "custom_claims_forward",
                format!("invalid claim '{claim}': not usable in a header name"),
            ),
        }
    }

    let cache_size = r
        .int("cache_size", 1, MAX_CACHE_SIZE)
        .unwrap_or(DEFAULT_CACHE_SIZE);

    r.finish()?;

    let (Some(url_raw), Some(introspection_url), Some(auth_raw), Some(authorization_value)) =
        (url_raw, introspection_url, auth_raw, authorization_value)
    else {
        // Unreachable: a missing or invalid required field recorded an error above.
        let mut e = FieldErrors::new();
        e.add("introspection_url", "required field missing");
        return Err(e);
    };

    let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
    let config = Config {
        introspection_url,
        authorization_value,
        token_type_hint: token_type_hint.clone(),
        ttl: (ttl > 0.0).then(|| Duration::from_secs_f64(ttl)),
        hide_credentials,
        timeout: (timeout > 0).then(|| ms(timeout)),
        keepalive: ms(keepalive),
        introspect_request,
        custom_introspection_headers,
        custom_claims_forward,
        consumer_by: if consumer_by == "client_id" {
            ConsumerBy::ClientId
        } else {
            ConsumerBy::Username
        },
        anonymous: (!anonymous.is_empty()).then(|| anonymous.clone()),
        run_on_preflight,
        cache_size: usize::try_from(cache_size).unwrap_or(usize::MAX),
    };

    // Kong returns integral numbers without a fraction (`30`, not `30.0`).
    let ttl_value = if ttl.fract() == 0.0 {
        json!(ttl as i64)
    } else {
        json!(ttl)
    };
    let mut stored = Map::new();
    stored.insert("introspection_url".into(), Value::String(url_raw));
    stored.insert("ttl".into(), ttl_value);
    stored.insert(
        "token_type_hint".into(),
        token_type_hint.map_or(Value::Null, Value::String),
    );
    stored.insert("authorization_value".into(), Value::String(auth_raw));
    stored.insert("timeout".into(), json!(timeout));
    stored.insert("keepalive".into(), json!(keepalive));
    stored.insert("introspect_request".into(), json!(introspect_request));
    stored.insert("hide_credentials".into(), json!(hide_credentials));
    stored.insert("run_on_preflight".into(), json!(run_on_preflight));
    stored.insert("anonymous".into(), json!(anonymous));
    stored.insert("consumer_by".into(), json!(consumer_by));
    stored.insert(
        "custom_introspection_headers".into(),
        json!(custom_headers_raw.into_iter().collect::<BTreeMap<_, _>>()),
    );
    stored.insert("custom_claims_forward".into(), json!(claims_raw));
    stored.insert("cache_size".into(), json!(cache_size));
    Ok((config, Value::Object(stored)))
}

/// The plugin's schema in the shape of Kong's `GET /schemas/plugins/oauth2-introspection`.
pub fn schema() -> Value {
    json!({
        "fields": [
            {"consumer": {
                "type": "foreign", "reference": "consumers", "eq": null,
                "description": "Custom type for representing a foreign key with a null value allowed."
            }},
            {"protocols": {
                "type": "set", "required": true,
                "default": ["grpc", "grpcs", "http", "https"],
                "elements": {"type": "string", "one_of": ["grpc", "grpcs", "http", "https"]},
                "description": "A set of strings representing HTTP protocols."
            }},
            {"config": {
                "type": "record", "required": true,
                "fields": [
                    {"introspection_url": {
                        "type": "string", "required": true,
                        "description": "The full URL to the third-party introspection endpoint (http or https; only scheme, host, port and path are used)."
                    }},
                    {"ttl": {
                        "type": "number", "required": true, "default": DEFAULT_TTL as i64,
                        "description": "The TTL in seconds for the introspection response. Set to 0 to disable the expiration; a cached result never outlives the token's `exp`."
                    }},
                    {"token_type_hint": {
                        "type": "string",
                        "description": "The `token_type_hint` value to associate to introspection requests."
                    }},
                    {"authorization_value": {
                        "type": "string", "required": true, "encrypted": true,
                        "description": "The value to set as the `Authorization` header when querying the introspection endpoint. This depends on the OAuth 2.0 server, but usually is the `client_id` and `client_secret` as a Base64-encoded Basic Auth string (`Basic MG9hNWl...`)."
                    }},
                    {"timeout": {
                        "type": "integer", "required": true, "default": DEFAULT_TIMEOUT_MS,
                        "between": [0, MAX_MS],
                        "description": "An optional timeout in milliseconds for the whole introspection call (0: no deadline)."
                    }},
                    {"keepalive": {
                        "type": "integer", "required": true, "default": DEFAULT_KEEPALIVE_MS,
                        "between": [0, MAX_MS],
                        "description": "An optional value in milliseconds that defines how long an idle connection lives before being closed."
                    }},
                    {"introspect_request": {
                        "type": "boolean", "required": true, "default": false,
                        "description": "A boolean indicating whether to forward information about the current downstream request to the introspect endpoint. If true, headers `X-Request-Path` and `X-Request-Http-Method` will be inserted into the introspect request."
                    }},
                    {"hide_credentials": {
                        "type": "boolean", "required": true, "default": true,
                        "description": "An optional boolean value telling the plugin to hide the credential to the upstream API server. It will be removed from the header, the query string or the form body before proxying the request."
                    }},
                    {"run_on_preflight": {
                        "type": "boolean", "required": true, "default": true,
                        "description": "A boolean value that indicates whether the plugin should run (and try to authenticate) on `OPTIONS` preflight requests. If set to `false`, then `OPTIONS` requests will always be allowed."
                    }},
                    {"anonymous": {
                        "type": "string", "required": true, "default": "", "len_min": 0,
                        "description": "An optional string (consumer UUID or username) value to use as an “anonymous” consumer if authentication fails. If empty (default null), the request fails with an authentication failure `4xx`."
                    }},
                    {"consumer_by": {
                        "type": "string", "required": true, "default": "username",
                        "one_of": ["username", "client_id"],
                        "description": "A string indicating whether to associate OAuth2 `username` or `client_id` with the consumer's username. OAuth2 `username` is mapped to a consumer's `username` field, while an OAuth2 `client_id` maps to a consumer's `custom_id`."
                    }},
                    {"custom_introspection_headers": {
                        "type": "map", "required": true, "default": {},
                        "keys": {"type": "string"}, "values": {"type": "string"},
                        "description": "A list of custom headers to be added in the introspection request (underscores in names become hyphens)."
                    }},
                    {"custom_claims_forward": {
                        "type": "set", "required": true, "default": [],
                        "elements": {"type": "string"},
                        "description": "A list of custom claims to be forwarded from the introspection response to the upstream request. Claims are forwarded in headers with prefix `X-Credential-{claim-name}` (underscores become hyphens)."
                    }},
                    {"cache_size": {
                        "type": "integer", "required": true, "default": DEFAULT_CACHE_SIZE,
                        "between": [1, MAX_CACHE_SIZE],
                        "description": "Gatehouse extension (not in Kong): the maximum number of introspection results this plugin instance keeps in its in-memory cache (about 4 KB each); the least valuable entries are evicted first."
                    }}
                ]
            }}
        ]
    })
}
