//! Kong's `oauth2-introspection` plugin (spec part A, with DESIGN §4's decisions).
//!
//! Per request ([`OAuth2Introspection::access`]):
//! 1. `OPTIONS` with `run_on_preflight: false` passes untouched; with `anonymous` set, a request
//!    an earlier authentication plugin already authenticated passes too.
//! 2. Client-supplied `X-Consumer-*`, `X-Credential-*` and `X-Anonymous-Consumer` are removed.
//! 3. The token is taken from the `access_token` form-body or query parameter, else from
//!    `Authorization: Bearer|Token` ([`token`]); `hide_credentials` removes it.
//! 4. The token is introspected ([`client`]) unless its answer is cached ([`cache`]).
//! 5. An active token maps to a consumer of the request's snapshot (`consumer_by`), the
//!    `X-Consumer-*` / `X-Credential-*` headers are set, and the consumer and credential are
//!    recorded on the request context for later plugins.
//! 6. Any failure falls back to the `anonymous` consumer when one is configured; otherwise
//!    401 (missing or inactive token) or 500 (the identity server failed; cause logged).
//!
//! Deliberate differences from Kong: the raw token is never a credential id, cache key or log
//! field; only form bodies are searched for `access_token` (see [`token`]); `active` must be
//! JSON `true`; identity-server failures answer a generic 500 instead of echoing the server's
//! error; `cache_size` bounds the cache (Gatehouse extension).

pub mod cache;
pub mod client;
pub mod config;
pub mod token;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use cache::{Active, Outcome, TokenCache};
use client::{IntrospectionClient, LocalIntrospection, RequestInfo};
use config::{Config, ConsumerBy};
use gatehouse_core::gateway::Consumer;
use gatehouse_core::kong_schema::FieldErrors;
use gatehouse_proxy::context::{Credential, RequestCtx};
use gatehouse_proxy::plugin::{Flow, Plugin, PluginError, PluginFactory};
use gatehouse_proxy::snapshot::Snapshot;
use gatehouse_proxy::{ProxyBody, ProxyRequest, full_body};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The plugin's name.
pub const NAME: &str = "oauth2-introspection";
/// Kong's priority for this plugin (runs before every other authentication plugin).
pub const PRIORITY: i32 = 1700;

static X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
static X_CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
static X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
static X_ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");

/// Introspection fields forwarded as `X-Credential-*` (spec A.7); `username` becomes
/// `X-Credential-Identifier`.
static CREDENTIAL_HEADERS: [(&str, HeaderName); 11] = [
    ("scope", HeaderName::from_static("x-credential-scope")),
    (
        "client_id",
        HeaderName::from_static("x-credential-client-id"),
    ),
    (
        "username",
        HeaderName::from_static("x-credential-identifier"),
    ),
    (
        "token_type",
        HeaderName::from_static("x-credential-token-type"),
    ),
    ("exp", HeaderName::from_static("x-credential-exp")),
    ("iat", HeaderName::from_static("x-credential-iat")),
    ("nbf", HeaderName::from_static("x-credential-nbf")),
    ("sub", HeaderName::from_static("x-credential-sub")),
    ("aud", HeaderName::from_static("x-credential-aud")),
    ("iss", HeaderName::from_static("x-credential-iss")),
    ("jti", HeaderName::from_static("x-credential-jti")),
];

const MISSING_BODY: &str =
    r#"{"error":"invalid_request","error_description":"The access token is missing"}"#;
const MISSING_CHALLENGE: &str = r#"Bearer realm="service""#;
const INVALID_BODY: &str =
    r#"{"error":"invalid_token","error_description":"The access token is invalid or has expired"}"#;
const INVALID_CHALLENGE: &str = r#"Bearer realm="service" error="invalid_token" error_description="The access token is invalid or has expired""#;
const INTERNAL_BODY: &str = r#"{"message":"An unexpected error occurred"}"#;
const BAD_REQUEST_BODY: &str = r#"{"message":"Bad request"}"#;

/// Builds `oauth2-introspection` instances.
#[derive(Default)]
pub struct Factory {
    /// The introspection endpoints this process serves itself, called without HTTP.
    pub local: Option<Arc<dyn LocalIntrospection>>,
}

impl PluginFactory for Factory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn priority(&self) -> i32 {
        PRIORITY
    }

    fn allows_consumer(&self) -> bool {
        false
    }

    fn encrypted_fields(&self) -> &'static [&'static str] {
        &["authorization_value"]
    }

    fn validate(&self, config: Value) -> Result<Value, FieldErrors> {
        config::parse(config).map(|(_, stored)| stored)
    }

    fn schema(&self) -> Value {
        config::schema()
    }

    fn build(&self, config: &Value) -> Result<Arc<dyn Plugin>, PluginError> {
        let (config, _) = config::parse(config.clone())
            .map_err(|e| PluginError(format!("invalid {NAME} configuration: {}", e.summary())))?;
        Ok(Arc::new(OAuth2Introspection::with_local(
            config,
            self.local.as_ref(),
        )?))
    }
}

/// Why authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No token in the request.
    Missing,
    /// The identity server said the token is not active.
    Invalid,
    /// The identity server could not be asked (already logged).
    IdentityServer,
}

impl Failure {
    fn reason(self) -> &'static str {
        match self {
            Self::Missing => "no access token",
            Self::Invalid => "access token not active",
            Self::IdentityServer => "identity server failure",
        }
    }
}

/// One configured `oauth2-introspection` instance, with its connection pool and cache.
pub struct OAuth2Introspection {
    config: Config,
    client: IntrospectionClient,
    cache: TokenCache,
}

impl OAuth2Introspection {
    /// An instance for a validated configuration.
    pub fn new(config: Config) -> Result<Self, PluginError> {
        Self::with_local(config, None)
    }

    /// An instance that calls `local` instead of HTTP when it serves the introspection URL.
    pub fn with_local(
        config: Config,
        local: Option<&Arc<dyn LocalIntrospection>>,
    ) -> Result<Self, PluginError> {
        let client = IntrospectionClient::new(&config, local).map_err(PluginError)?;
        let cache = TokenCache::new(config.cache_size, config.ttl);
        Ok(Self {
            config,
            client,
            cache,
        })
    }

    /// An instance whose HTTPS calls trust what `tls` trusts (a test's private CA).
    #[cfg(test)]
    pub(crate) fn with_tls(config: Config, tls: rustls::ClientConfig) -> Result<Self, PluginError> {
        let client = IntrospectionClient::with_tls(&config, None, tls).map_err(PluginError)?;
        let cache = TokenCache::new(config.cache_size, config.ttl);
        Ok(Self {
            config,
            client,
            cache,
        })
    }

    /// The instance's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Turns an introspection answer into the cached outcome, with its headers precomputed.
    fn outcome(&self, claims: Arc<Map<String, Value>>) -> Outcome {
        // One pass over the answer's fields picks every claim the plugin uses: a hashed
        // lookup per claim (SipHash, the map's hasher) cost more than the rest of a miss's
        // bookkeeping together.
        let custom = &self.config.custom_claims_forward;
        let consumer_claim = self.config.consumer_by.claim();
        let mut standard: [Option<&Value>; CREDENTIAL_HEADERS.len()] =
            [None; CREDENTIAL_HEADERS.len()];
        let mut forwarded: Vec<Option<&Value>> = vec![None; custom.len()];
        let (mut active, mut exp, mut client_id, mut scope, mut consumer_key) =
            (None, None, None, None, None);
        for (name, value) in claims.iter() {
            let name = name.as_str();
            match name {
                "active" => active = Some(value),
                "exp" => exp = Some(value),
                "client_id" => client_id = Some(value),
                "scope" => scope = Some(value),
                _ => {}
            }
            if name == consumer_claim {
                consumer_key = Some(value);
            }
            if let Some(i) = CREDENTIAL_HEADERS.iter().position(|(c, _)| *c == name) {
                standard[i] = Some(value);
            }
            for (slot, (claim, _)) in forwarded.iter_mut().zip(custom) {
                if claim == name {
                    *slot = Some(value);
                }
            }
        }
        if active != Some(&Value::Bool(true)) {
            return Outcome::Inactive;
        }
        let mut values = HeaderValues::default();
        for ((_, name), v) in CREDENTIAL_HEADERS.iter().zip(standard) {
            if let Some(v) = v {
                values.push(name, v);
            }
        }
        for ((_, name), v) in custom.iter().zip(forwarded) {
            if let Some(v) = v {
                // A custom claim that repeats a standard one replaces it (set, not add).
                values.fields.retain(|(n, _)| n != name);
                values.push(name, v);
            }
        }
        let headers = values.finish();
        let exp = exp.and_then(|v| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
        let client_id = client_id.and_then(scalar_string).map(Arc::from);
        let scope = scope.and_then(scalar_string).map(Arc::from);
        let consumer_key = consumer_key.and_then(scalar_string);
        Outcome::Active(Active {
            client_id,
            scope,
            consumer_key,
            exp,
            headers,
            claims,
        })
    }

    /// Authenticates with `token`; on success the request carries the identity headers and
    /// `ctx` the consumer and credential.
    async fn authenticate(
        &self,
        ctx: &mut RequestCtx,
        req: &mut ProxyRequest,
        token: String,
    ) -> Result<(), Failure> {
        let key = cache::key(&token);
        let info = RequestInfo {
            method: &req.parts.method,
            path: req.parts.uri.path(),
        };
        let token_ref = token.as_str();
        let epoch = self.client.invalidation_epoch();
        let result = self
            .cache
            .get_or_load(key, epoch, move || async move {
                let claims = self.client.introspect(token_ref, &key, info).await?;
                Ok(self.outcome(claims))
            })
            .await;
        drop(token);
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(
                    plugin = NAME,
                    request_id = %ctx.request_id,
                    introspection_url = %self.config.introspection_url,
                    cause = %e,
                    "introspection failed; answering 500"
                );
                return Err(Failure::IdentityServer);
            }
        };
        let Outcome::Active(active) = &*outcome else {
            return Err(Failure::Invalid);
        };
        let consumer = active
            .consumer_key
            .as_deref()
            .and_then(|k| find_consumer(&ctx.snapshot, self.config.consumer_by, k));
        let h = &mut req.parts.headers;
        if let Some(c) = &consumer {
            set_consumer_headers(h, c);
        }
        for (name, value) in &active.headers {
            h.append(name.clone(), value.clone());
        }
        ctx.authenticate(
            consumer,
            Credential {
                client_id: active.client_id.clone(),
                scope: active.scope.clone(),
                claims: active.claims.clone(),
            },
        );
        Ok(())
    }

    /// Falls back to the anonymous consumer, or answers the failure.
    fn fail(&self, ctx: &mut RequestCtx, req: &mut ProxyRequest, failure: Failure) -> Flow {
        tracing::info!(
            plugin = NAME,
            request_id = %ctx.request_id,
            reason = failure.reason(),
            anonymous = self.config.anonymous.is_some(),
            "authentication failed"
        );
        if let Some(anonymous) = &self.config.anonymous {
            let Some(consumer) = anonymous_consumer(&ctx.snapshot, anonymous) else {
                tracing::error!(
                    plugin = NAME,
                    request_id = %ctx.request_id,
                    anonymous = %anonymous,
                    "the configured anonymous consumer does not exist (no consumer has this id or username); answering 500"
                );
                return Flow::Respond(json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    INTERNAL_BODY,
                    None,
                ));
            };
            let h = &mut req.parts.headers;
            set_consumer_headers(h, &consumer);
            h.insert(
                X_ANONYMOUS_CONSUMER.clone(),
                HeaderValue::from_static("true"),
            );
            ctx.consumer = Some(consumer);
            ctx.anonymous = true;
            ctx.credential = None;
            return Flow::Continue;
        }
        Flow::Respond(match failure {
            Failure::Missing => json_response(
                StatusCode::UNAUTHORIZED,
                MISSING_BODY,
                Some(MISSING_CHALLENGE),
            ),
            Failure::Invalid => json_response(
                StatusCode::UNAUTHORIZED,
                INVALID_BODY,
                Some(INVALID_CHALLENGE),
            ),
            Failure::IdentityServer => {
                json_response(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_BODY, None)
            }
        })
    }
}

#[async_trait]
impl Plugin for OAuth2Introspection {
    async fn access(
        &self,
        ctx: &mut RequestCtx,
        req: &mut ProxyRequest,
    ) -> Result<Flow, PluginError> {
        let cfg = &self.config;
        if !cfg.run_on_preflight && req.parts.method == Method::OPTIONS {
            if ctx.consumer.is_none() && ctx.credential.is_none() {
                strip_identity_headers(&mut req.parts.headers);
            }
            return Ok(Flow::Continue);
        }
        if cfg.anonymous.is_some() && ctx.credential.is_some() {
            // "Logical OR": an earlier authentication plugin already succeeded.
            return Ok(Flow::Continue);
        }
        strip_identity_headers(&mut req.parts.headers);

        let found = match token::take(req, cfg.hide_credentials).await {
            Ok(found) => found,
            Err(e) => {
                tracing::info!(
                    plugin = NAME,
                    request_id = %ctx.request_id,
                    error = %e.0,
                    "could not read the form body"
                );
                return Ok(Flow::Respond(json_response(
                    StatusCode::BAD_REQUEST,
                    BAD_REQUEST_BODY,
                    None,
                )));
            }
        };
        let result = match found {
            Some((token, _)) if !token.is_empty() => self.authenticate(ctx, req, token).await,
            _ => Err(Failure::Missing),
        };
        match result {
            Ok(()) => Ok(Flow::Continue),
            Err(failure) => Ok(self.fail(ctx, req, failure)),
        }
    }
}

/// A JSON response of the plugin's own.
fn json_response(
    status: StatusCode,
    body: &'static str,
    challenge: Option<&'static str>,
) -> Response<ProxyBody> {
    let mut resp = Response::new(full_body(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if let Some(c) = challenge {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    resp
}

/// Removes every header a client could use to pose as an authenticated consumer.
fn strip_identity_headers(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            n.starts_with("x-consumer-")
                || n.starts_with("x-credential-")
                || *name == X_ANONYMOUS_CONSUMER
        })
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

fn set_consumer_headers(h: &mut HeaderMap, consumer: &Consumer) {
    if let Ok(v) = HeaderValue::from_str(&consumer.id.to_string()) {
        h.insert(X_CONSUMER_ID.clone(), v);
    }
    match consumer
        .custom_id
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        Some(v) => h.insert(X_CONSUMER_CUSTOM_ID.clone(), v),
        None => h.remove(&X_CONSUMER_CUSTOM_ID),
    };
    match consumer
        .username
        .as_deref()
        .and_then(|u| HeaderValue::from_str(u).ok())
    {
        Some(v) => h.insert(X_CONSUMER_USERNAME.clone(), v),
        None => h.remove(&X_CONSUMER_USERNAME),
    };
}

/// The consumer a token maps to, in the request's own snapshot (so consumers created, changed
/// or deleted are seen by the next request).
fn find_consumer(snapshot: &Snapshot, by: ConsumerBy, key: &str) -> Option<Arc<Consumer>> {
    match by {
        ConsumerBy::Username => snapshot.consumers.by_username.get(key),
        ConsumerBy::ClientId => snapshot.consumers.by_custom_id.get(key),
    }
    .cloned()
}

/// Kong's `kong.client.load_consumer(value, true)`: by id when `value` is a UUID, else (or when
/// no consumer has that id) by username.
fn anonymous_consumer(snapshot: &Snapshot, value: &str) -> Option<Arc<Consumer>> {
    uuid::Uuid::parse_str(value)
        .ok()
        .and_then(|id| snapshot.consumers.by_id.get(&id))
        .or_else(|| snapshot.consumers.by_username.get(value))
        .cloned()
}

/// Whether `ok` holds for every byte of `bytes`. Sixteen bytes a step without an early exit,
/// which the compiler turns into vector compares when `ok` is branch-free (comparisons joined
/// with `|`, not `||`): tokens are hundreds of bytes, and a search or table lookup per byte
/// was several instructions a byte.
pub(crate) fn every_byte(bytes: &[u8], ok: impl Fn(u8) -> bool) -> bool {
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        if !chunk.iter().fold(true, |all, &b| all & ok(b)) {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| ok(b))
}

/// A string or number as a string (how Kong uses a claim as a lookup key).
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The `X-Credential-*` header values of a cache entry, collected into one buffer: every
/// value is a slice of one shared allocation (cloned into each request with a reference
/// count), not an allocation of its own. A miss builds an entry, uses it once and later drops
/// it cold: a dozen separate small buffers were a dozen allocations, a dozen promotions to
/// shared on first clone and two dozen frees (2.4 % of a miss's CPU time in `perf` was
/// freeing them).
struct HeaderValues {
    text: String,
    fields: Vec<(HeaderName, std::ops::Range<usize>)>,
}

impl Default for HeaderValues {
    /// Room for a typical token's values (a dozen claims, a few hundred bytes), so that
    /// building an entry does not grow the buffers step by step.
    fn default() -> Self {
        Self {
            text: String::with_capacity(512),
            fields: Vec::with_capacity(CREDENTIAL_HEADERS.len() + 4),
        }
    }
}

impl HeaderValues {
    /// Adds the header lines for a claim: scalars as text, arrays one line per element,
    /// objects as JSON, `null` none. Values that cannot be a header (control characters) are
    /// left out by [`HeaderValues::finish`].
    fn push(&mut self, name: &HeaderName, v: &Value) {
        use std::fmt::Write as _;
        let mut one = |v: &Value| {
            let start = self.text.len();
            // Formatting into the shared buffer (`write!` to a String cannot fail).
            match v {
                Value::Null => return,
                Value::String(s) => self.text.push_str(s),
                Value::Number(n) => {
                    let _ = write!(self.text, "{n}");
                }
                Value::Bool(b) => self.text.push_str(if *b { "true" } else { "false" }),
                other => {
                    let _ = write!(self.text, "{other}");
                }
            }
            self.fields.push((name.clone(), start..self.text.len()));
        };
        match v {
            Value::Array(items) => items.iter().for_each(&mut one),
            other => one(other),
        }
    }

    /// The header lines; values that are not valid header values are left out.
    fn finish(self) -> Vec<(HeaderName, HeaderValue)> {
        let text = bytes::Bytes::from(self.text);
        let mut out = Vec::with_capacity(self.fields.len());
        for (name, range) in self.fields {
            if let Ok(v) = HeaderValue::from_maybe_shared(text.slice(range)) {
                out.push((name, v));
            }
        }
        out
    }
}
