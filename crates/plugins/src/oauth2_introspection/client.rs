//! The HTTP client to the introspection endpoint (spec A.4): one pooled keep-alive client per
//! plugin instance, http or https (rustls with the aws-lc-rs provider; the system's trusted
//! roots, or Mozilla's when the system has none), `keepalive` as the pool's idle timeout and
//! `timeout` as the deadline of a whole call (connect, send, response, body).
//!
//! An endpoint this process serves itself (Gatehouse's own identity server, see
//! [`LocalIntrospection`]) is called without HTTP: the same request headers and form go to the
//! same code the HTTP endpoint runs, and only the loopback round trip, the HTTP codec and the
//! JSON encoding and parsing are skipped.

use super::config::Config;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Largest introspection response body read (a token's claims are a few KiB at most).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

static X_REQUEST_HTTP_METHOD: HeaderName = HeaderName::from_static("x-request-http-method");
static X_REQUEST_PATH: HeaderName = HeaderName::from_static("x-request-path");

/// Why an introspection call produced no usable answer. Logged, never sent to the client, and
/// never cached.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connecting, sending or reading failed.
    #[error("introspection request failed: {0}")]
    Transport(String),
    /// The call took longer than `timeout`.
    #[error("introspection request timed out after {0:?}")]
    Timeout(Duration),
    /// The endpoint answered with something else than 200.
    #[error("introspection endpoint answered {0}")]
    Status(StatusCode),
    /// The answer is not a JSON object.
    #[error("introspection response is not a JSON object: {0}")]
    Unparsable(String),
}

/// The downstream request, described to the endpoint when `introspect_request` is set.
pub struct RequestInfo<'a> {
    /// Its method.
    pub method: &'a Method,
    /// Its path, without the query.
    pub path: &'a str,
}

/// An introspection endpoint served by this very process (the built-in identity server).
/// Calls to it skip HTTP; everything else about them (client authentication, the answer) is
/// what the HTTP endpoint does.
#[async_trait::async_trait]
pub trait LocalIntrospection: Send + Sync {
    /// The path (from `/`) under which this process serves `url`, or `None` when `url` is
    /// another server's.
    fn local_path(&self, url: &http::Uri) -> Option<String>;

    /// Answers `POST path` with `headers` and the form `body` as the HTTP endpoint would:
    /// the JSON object of a 200 answer (shared: the server may keep it for the token's
    /// lifetime), or the status of any other. `token_sha256` is the SHA-256 of the form's
    /// `token` (the plugin's cache key), for a server that keys its own caches the same way.
    async fn introspect(
        &self,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
        token_sha256: &[u8; 32],
    ) -> Result<Arc<serde_json::Map<String, serde_json::Value>>, StatusCode>;

    /// A counter that moves whenever an answer given before may have stopped holding early
    /// (a revocation, a client deleted or disabled). A cached answer is used only while the
    /// counter is where it was when the answer was given, whatever the plugin's `ttl`: the
    /// revocation reaches the gateway at once. The default, for a server whose answers hold
    /// until their `exp`, never moves.
    fn invalidation_epoch(&self) -> u64 {
        0
    }
}

/// A pooled client bound to one introspection endpoint and configuration.
pub struct IntrospectionClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: http::Uri,
    /// The headers of every call: the defaults, then the custom headers, which override them
    /// (spec A.4) and the per-request `X-Request-*` headers too.
    headers: HeaderMap,
    token_type_hint: Option<String>,
    introspect_request: bool,
    timeout: Option<Duration>,
    /// The endpoint is this process's own: its handler and path.
    local: Option<(Arc<dyn LocalIntrospection>, String)>,
}

/// The process's TLS client configuration, built once (loading the system roots reads files).
fn tls_config() -> Result<rustls::ClientConfig, String> {
    static TLS: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    TLS.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        match builder.clone().with_native_roots() {
            Ok(b) => Ok(b.with_no_client_auth()),
            Err(e) => {
                tracing::warn!(error = %e, "no system CA certificates; oauth2-introspection uses Mozilla's root certificates for https");
                Ok(builder.with_webpki_roots().with_no_client_auth())
            }
        }
    })
    .clone()
}

impl IntrospectionClient {
    /// A client for `config`'s endpoint. Nothing is connected yet: connections are made by
    /// the first call and then kept in the pool.
    pub fn new(
        config: &Config,
        local: Option<&Arc<dyn LocalIntrospection>>,
    ) -> Result<Self, String> {
        Self::with_tls(config, local, tls_config()?)
    }

    /// [`IntrospectionClient::new`] with its own TLS client configuration (tests trust a
    /// private CA with it instead of the system's roots).
    pub(crate) fn with_tls(
        config: &Config,
        local: Option<&Arc<dyn LocalIntrospection>>,
        tls: rustls::ClientConfig,
    ) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(config.timeout);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_timer(TokioTimer::new());
        if config.keepalive.is_zero() {
            builder.pool_max_idle_per_host(0);
        } else {
            builder.pool_idle_timeout(config.keepalive);
        }
        let client = builder.build(https);

        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(header::AUTHORIZATION, config.authorization_value.clone());
        for (name, value) in &config.custom_introspection_headers {
            headers.insert(name.clone(), value.clone());
        }
        Ok(Self {
            client,
            uri: config.introspection_url.clone(),
            headers,
            token_type_hint: config.token_type_hint.clone(),
            introspect_request: config.introspect_request,
            timeout: config.timeout,
            local: local.and_then(|l| {
                l.local_path(&config.introspection_url)
                    .map(|path| (l.clone(), path))
            }),
        })
    }

    /// Whether calls are answered in-process rather than over HTTP.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// The in-process server's [`LocalIntrospection::invalidation_epoch`]; 0 for an endpoint
    /// over HTTP, whose answers the cache keeps for the `ttl` rule.
    pub fn invalidation_epoch(&self) -> u64 {
        self.local
            .as_ref()
            .map_or(0, |(local, _)| local.invalidation_epoch())
    }

    /// Introspects `token` (whose SHA-256 is `token_sha256`); returns the response's JSON
    /// object when the endpoint answered 200.
    pub async fn introspect(
        &self,
        token: &str,
        token_sha256: &[u8; 32],
        info: RequestInfo<'_>,
    ) -> Result<Arc<serde_json::Map<String, serde_json::Value>>, CallError> {
        let call = async {
            let (headers, form) = self.request(token, info);
            match &self.local {
                Some((local, path)) => local
                    .introspect(path, &headers, form.as_bytes(), token_sha256)
                    .await
                    .map_err(CallError::Status),
                None => parse(&self.call(headers.into_owned(), form).await?).map(Arc::new),
            }
        };
        match self.timeout {
            Some(t) => tokio::time::timeout(t, call)
                .await
                .map_err(|_| CallError::Timeout(t))?,
            None => call.await,
        }
    }

    /// The headers and form of the call for `token`: the configured headers as they are
    /// unless the call describes the downstream request.
    fn request(&self, token: &str, info: RequestInfo<'_>) -> (Cow<'_, HeaderMap>, String) {
        let mut form = String::with_capacity(token.len() + 64);
        form.push_str("token=");
        push_form_value(&mut form, token);
        if let Some(hint) = &self.token_type_hint {
            form.push_str("&token_type_hint=");
            push_form_value(&mut form, hint);
        }
        if !self.introspect_request {
            return (Cow::Borrowed(&self.headers), form);
        }
        // The base headers hold an `X-Request-*` name only when a custom header set it.
        let mut h = self.headers.clone();
        if !self.headers.contains_key(&X_REQUEST_HTTP_METHOD)
            && let Ok(v) = HeaderValue::from_str(info.method.as_str())
        {
            h.insert(X_REQUEST_HTTP_METHOD.clone(), v);
        }
        if !self.headers.contains_key(&X_REQUEST_PATH)
            && let Ok(v) = HeaderValue::from_str(info.path)
        {
            h.insert(X_REQUEST_PATH.clone(), v);
        }
        (Cow::Owned(h), form)
    }

    async fn call(&self, headers: HeaderMap, form: String) -> Result<Bytes, CallError> {
        let mut req = Request::new(Full::new(Bytes::from(form)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = headers;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| CallError::Transport(error_chain(&e)))?;
        let status = resp.status();
        // The body is read in full even on errors so the connection can go back to the pool.
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| CallError::Transport(format!("reading the response: {e}")))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(CallError::Status(status));
        }
        Ok(body)
    }
}

/// Appends `value` form-urlencoded. JWTs and most opaque tokens consist only of characters the
/// encoding leaves as they are, so they are copied in one go instead of byte by byte.
fn push_form_value(form: &mut String, value: &str) {
    if is_form_plain(value.as_bytes()) {
        form.push_str(value);
    } else {
        form.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
    }
}

/// Whether `application/x-www-form-urlencoded` leaves every byte as it is (ASCII letters and
/// digits, `-`, `.`, `_`, `*`), in one vectorised pass.
fn is_form_plain(bytes: &[u8]) -> bool {
    super::every_byte(bytes, |b| {
        let lower = b | 0x20;
        (lower.wrapping_sub(b'a') < 26)
            | (b.wrapping_sub(b'0') < 10)
            | (b == b'-')
            | (b == b'.')
            | (b == b'_')
            | (b == b'*')
    })
}

/// The JSON object of an introspection answer.
fn parse(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, CallError> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(CallError::Unparsable(format!(
            "a JSON {}",
            match other {
                serde_json::Value::Array(_) => "array",
                serde_json::Value::String(_) => "string",
                serde_json::Value::Number(_) => "number",
                serde_json::Value::Bool(_) => "boolean",
                _ => "null",
            }
        ))),
        Err(e) => Err(CallError::Unparsable(e.to_string())),
    }
}

/// An error and its sources on one line (hyper's top-level messages are terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::push_form_value;

    #[test]
    fn form_values_encode_like_the_serializer() {
        for value in ["eyJhbGciOi.J9-_x*", "a b+c/d=e&f%", "ünï", ""] {
            let mut ours = String::new();
            push_form_value(&mut ours, value);
            let theirs: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
            assert_eq!(ours, theirs, "{value}");
        }
        // Long values, one byte that needs encoding at every position around the 16-byte steps.
        let plain: String = "abcXYZ019-._*".chars().cycle().take(70).collect();
        for bad in [
            ' ', '+', '/', '=', '&', '%', '~', '@', '[', '`', '{', '\u{7f}', 'ü',
        ] {
            for at in [0, 1, 15, 16, 17, 31, 32, 63, 64, 69] {
                let mut value: Vec<char> = plain.chars().collect();
                value[at] = bad;
                let value: String = value.into_iter().collect();
                let mut ours = String::new();
                push_form_value(&mut ours, &value);
                let theirs: String =
                    url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
                assert_eq!(ours, theirs, "{bad:?} at {at}");
            }
        }
    }
}
