//! The issuer endpoints over HTTP (the identity listener): a thin axum layer over
//! [`Identity`](crate::Identity). Every auth server lives under its issuer path `/{slug}`.

use crate::error::OAuthError;
use crate::runtime::{Identity, ServerRuntime};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use gatehouse_listener::body::{BodyFailure, announced_too_large, rejection_failure};
use gatehouse_listener::serve::EdgeError;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Largest form body the endpoints read.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The identity listener's router.
pub fn router(identity: Arc<Identity>) -> Router {
    Router::new()
        .route(
            "/{slug}/.well-known/openid-configuration",
            get(discovery).options(preflight),
        )
        .route(
            "/.well-known/oauth-authorization-server/{slug}",
            get(discovery).options(preflight),
        )
        .route("/{slug}/.well-known/jwks", get(jwks).options(preflight))
        .route("/{slug}/oauth/token", post(token).options(preflight))
        .route("/{slug}/introspect", post(introspect).options(preflight))
        .route("/{slug}/revoke", post(revoke).options(preflight))
        .route(
            "/{slug}/userinfo",
            get(userinfo).post(userinfo).options(preflight),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(identity)
}

/// An OAuth-style error body (`invalid_request`) with any status: what the endpoints answer
/// for requests refused before their grant logic (method, size, time, framing).
fn refusal(status: StatusCode, description: &str) -> Response {
    let mut resp = (
        status,
        axum::Json(
            serde_json::json!({"error": "invalid_request", "error_description": description}),
        ),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn too_large() -> Response {
    refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the request body is larger than 64 KiB",
    )
}

/// The identity listener's answer to a request refused at the edge (URI length, `Host`).
pub fn edge_error(_uri: &http::Uri, e: EdgeError) -> Response {
    refusal(e.status(), e.message())
}

async fn method_not_allowed(method: Method) -> Response {
    refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("the method {method} is not allowed on this endpoint"),
    )
}

/// The caller's address when the request came over the network (`None` in tests that call
/// the router directly).
struct Peer(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// A request body read whole (at most [`MAX_FORM_BYTES`]); failures answer 413, 408 or 400
/// in OAuth's format.
struct FormBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for FormBody {
    type Rejection = Response;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        if announced_too_large(req.headers(), MAX_FORM_BYTES) {
            return Err(too_large());
        }
        Bytes::from_request(req, state)
            .await
            .map(FormBody)
            .map_err(|e| match rejection_failure(&e) {
                BodyFailure::TooLarge => too_large(),
                BodyFailure::TimedOut => refusal(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                ),
                BodyFailure::Broken => refusal(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                ),
            })
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            serde_json::json!({"error": "not_found", "error_description": "no such endpoint"}),
        ),
    )
        .into_response()
}

/// The auth server named by the path's `{slug}`; an unknown slug is the issuer endpoints' 404.
struct Issuer(Arc<ServerRuntime>);

impl FromRequestParts<Arc<Identity>> for Issuer {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        identity: &Arc<Identity>,
    ) -> Result<Self, Response> {
        let Path(slug) = Path::<String>::from_request_parts(parts, identity)
            .await
            .map_err(IntoResponse::into_response)?;
        identity.by_slug(&slug).map(Issuer).ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                axum::Json(
                    serde_json::json!({"error": "not_found", "error_description": "unknown issuer"}),
                ),
            )
                .into_response()
        })
    }
}

/// Adds CORS headers when the request's origin is one of the auth server's trusted origins.
fn cors(server: &ServerRuntime, req: &HeaderMap, mut resp: Response) -> Response {
    if let Some(origin) = req.get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && server.server.trusted_origins.iter().any(|t| t == origin)
        && let Ok(v) = HeaderValue::from_str(origin)
    {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

async fn preflight(Issuer(s): Issuer, headers: HeaderMap) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    cors(&s, &headers, resp)
}

fn json_bytes(body: bytes::Bytes, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

async fn discovery(Issuer(s): Issuer, headers: HeaderMap) -> Response {
    let resp = json_bytes(s.discovery.clone(), "public, max-age=60");
    cors(&s, &headers, resp)
}

async fn jwks(Issuer(s): Issuer, headers: HeaderMap) -> Response {
    let mut resp = json_bytes(s.jwks.clone(), "public, max-age=60");
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    cors(&s, &headers, resp)
}

/// A parsed `application/x-www-form-urlencoded` body where every parameter occurs once.
struct Form<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Form<'a> {
    /// The pairs of `body`; values without escapes (a JWT) are borrowed from it, not copied.
    fn parse(headers: &HeaderMap, body: &'a [u8]) -> Result<Self, OAuthError> {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(OAuthError::InvalidRequest(
                "the body must be application/x-www-form-urlencoded".into(),
            ));
        }
        let mut pairs: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::new();
        for (k, v) in form_pairs(body) {
            if pairs.iter().any(|(seen, _)| *seen == k) {
                // RFC 6749 §3.2: parameters must not be included more than once.
                return Err(OAuthError::InvalidRequest(format!(
                    "the parameter '{k}' is repeated"
                )));
            }
            pairs.push((k, v));
        }
        Ok(Self(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Takes the value of `key` out of the form, still borrowed from the body when it had no
    /// escapes.
    fn take(&mut self, key: &str) -> Option<Cow<'a, str>> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(at).1)
    }
}

/// The pairs of a form body, decoded as `application/x-www-form-urlencoded`. Pairs without
/// escapes (`%`, `+`), such as a JWT, are taken as they are instead of through the decoder;
/// the searches run with SIMD (`memchr`), not a byte at a time, as a token is most of a body.
///
/// Public only for the fuzz targets (`fuzz/`), which compare it with the `url` crate's parser.
#[doc(hidden)]
pub fn form_pairs(body: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    let mut rest = body;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let end = memchr::memchr(b'&', rest).unwrap_or(rest.len());
            let pair = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or_default();
            if !pair.is_empty() {
                return Some(form_pair(pair));
            }
        }
    })
}

/// One `name=value` pair of a form, decoded.
fn form_pair(pair: &[u8]) -> (Cow<'_, str>, Cow<'_, str>) {
    if memchr::memchr2(b'%', b'+', pair).is_some() {
        let mut decoded = url::form_urlencoded::parse(pair);
        let (k, v) = decoded.next().unwrap_or_default();
        return (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned()));
    }
    let (k, v) = match memchr::memchr(b'=', pair) {
        Some(i) => (&pair[..i], &pair[i + 1..]),
        None => (pair, &pair[pair.len()..]),
    };
    (utf8(k), utf8(v))
}

/// `bytes` as text, invalid sequences replaced (the decoder's rule); valid text is borrowed.
fn utf8(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The client credentials of an issuer endpoint's request, read as the token, introspection
/// and revocation endpoints read them: the form (`Form::parse`), then HTTP Basic or the
/// form's `client_id` and `client_secret` (`client_credentials`).
///
/// The endpoints make those two calls themselves; this is how the fuzz targets (`fuzz/`) reach
/// them, so it must not do anything else.
#[doc(hidden)]
pub fn parse_client_credentials(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, String), OAuthError> {
    let form = Form::parse(headers, body)?;
    client_credentials(headers, &form)
}

/// The client's credentials from HTTP Basic or the form, refusing both at once (RFC 6749 §2.3).
fn client_credentials(headers: &HeaderMap, form: &Form) -> Result<(String, String), OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        Some(v) => {
            let bad = || OAuthError::InvalidClient("malformed Basic authorization header".into());
            let v = v.to_str().map_err(|_| bad())?;
            let (scheme, rest) = v.split_once(' ').ok_or_else(bad)?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(bad());
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| bad())?;
            let text = String::from_utf8(raw).map_err(|_| bad())?;
            let (id, secret) = text.split_once(':').ok_or_else(bad)?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded (Appendix B) before Base64, so
            // `+` is a space and a literal plus arrives as `%2B` (docs/compatibility.md).
            let decode = |s: &str| {
                let spaced = if s.contains('+') {
                    Cow::Owned(s.replace('+', " "))
                } else {
                    Cow::Borrowed(s)
                };
                percent_encoding::percent_decode_str(&spaced)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| bad())
            };
            Some((decode(id)?, decode(secret)?))
        }
        None => None,
    };
    let posted = match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Some((id.to_owned(), secret.to_owned())),
        _ => None,
    };
    match (basic, posted) {
        (Some(_), Some(_)) => Err(OAuthError::InvalidRequest(
            "use one client authentication method, not both".into(),
        )),
        (Some(b), None) => {
            if form.get("client_id").is_some_and(|id| id != b.0) {
                return Err(OAuthError::InvalidRequest(
                    "client_id does not match the authorization header".into(),
                ));
            }
            Ok(b)
        }
        (None, Some(p)) => Ok(p),
        (None, None) => Err(OAuthError::InvalidClient(
            "client authentication is required".into(),
        )),
    }
}

fn no_store_json(value: &impl serde::Serialize) -> Response {
    let mut resp = axum::Json(value).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

async fn token(
    State(identity): State<Arc<Identity>>,
    Issuer(s): Issuer,
    Peer(peer): Peer,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Response {
    let result = async {
        let form = Form::parse(&headers, &body)?;
        match form.get("grant_type") {
            None => {
                return Err(OAuthError::InvalidRequest("grant_type is required".into()));
            }
            Some("client_credentials") => {}
            Some(other) => {
                return Err(OAuthError::UnsupportedGrantType(format!(
                    "the grant type '{other}' is not supported"
                )));
            }
        }
        let (id, secret) = client_credentials(&headers, &form)?;
        let client = identity.authenticate(&s, &id, &secret, peer).await?;
        identity
            .client_credentials(&s, client, form.get("scope"))
            .await
    }
    .await;
    let resp = match result {
        Ok(t) => no_store_json(&t),
        Err(e) => e.into_response(),
    };
    cors(&s, &headers, resp)
}

/// The token-holding endpoints (introspect, revoke): a form with `token`, sent by an
/// authenticated client of the auth server.
async fn with_client_and_token<'s, 'b>(
    identity: &Identity,
    s: &'s ServerRuntime,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    body: &'b [u8],
) -> Result<(&'s crate::runtime::ClientRuntime, Cow<'b, str>), OAuthError> {
    let mut form = Form::parse(headers, body)?;
    let (id, secret) = client_credentials(headers, &form)?;
    let client = identity.authenticate(s, &id, &secret, peer).await?;
    let token = form
        .take("token")
        .ok_or_else(|| OAuthError::InvalidRequest("token is required".into()))?;
    Ok((client, token))
}

/// The body of an introspection answer.
fn introspection_json(answer: Option<&serde_json::Map<String, serde_json::Value>>) -> Response {
    match answer {
        Some(live) => no_store_json(live),
        None => no_store_json(&*crate::runtime::inactive_introspection()),
    }
}

async fn introspect(
    State(identity): State<Arc<Identity>>,
    Issuer(s): Issuer,
    Peer(peer): Peer,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Response {
    let resp = match with_client_and_token(&identity, &s, peer, &headers, &body).await {
        Ok((_, token)) => {
            let hash = crate::runtime::token_hash(&token);
            introspection_json(identity.introspect(&s, &token, &hash).as_deref())
        }
        Err(e) => e.into_response(),
    };
    cors(&s, &headers, resp)
}

/// `POST {path}` (an issuer's `/{slug}/introspect`) answered in this process, without HTTP,
/// for the gateway's `oauth2-introspection` plugin: the same client authentication and the
/// same answer as the HTTP endpoint. `Ok(Some)` is a live token's answer (shared, not
/// copied), `Ok(None)` `{"active": false}` ([`crate::runtime::inactive_introspection`]),
/// `Err` the status the endpoint would have answered.
/// `token_sha256` is the SHA-256 of the form's `token` (the gateway's cache key), which spares
/// hashing the token a second time.
pub async fn introspect_in_process(
    identity: &Identity,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    token_sha256: &[u8; 32],
) -> Result<Option<Arc<serde_json::Map<String, serde_json::Value>>>, StatusCode> {
    let slug = path
        .strip_prefix('/')
        .and_then(|p| p.strip_suffix("/introspect"))
        .filter(|slug| !slug.is_empty() && !slug.contains('/'))
        .ok_or(StatusCode::NOT_FOUND)?;
    let s = identity.by_slug(slug).ok_or(StatusCode::NOT_FOUND)?;
    let (_, token) = with_client_and_token(identity, &s, None, headers, body)
        .await
        .map_err(|e| e.status())?;
    debug_assert_eq!(
        crate::runtime::token_hash(&token),
        *token_sha256,
        "the digest given is not the form's token's"
    );
    Ok(identity.introspect(&s, &token, token_sha256))
}

async fn revoke(
    State(identity): State<Arc<Identity>>,
    Issuer(s): Issuer,
    Peer(peer): Peer,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Response {
    let result = match with_client_and_token(&identity, &s, peer, &headers, &body).await {
        Ok((client, token)) => identity.revoke(&s, client, &token).await,
        Err(e) => Err(e),
    };
    let resp = match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    };
    cors(&s, &headers, resp)
}

async fn userinfo(
    State(identity): State<Arc<Identity>>,
    Issuer(s): Issuer,
    method: Method,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Response {
    let result = async {
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_owned());
        let token = match from_header {
            Some(t) => t,
            None if method == Method::POST => Form::parse(&headers, &body)?
                .get("access_token")
                .map(str::to_owned)
                .ok_or_else(|| OAuthError::InvalidToken("a bearer token is required".into()))?,
            None => {
                return Err(OAuthError::InvalidToken(
                    "a bearer token is required".into(),
                ));
            }
        };
        identity.userinfo(&s, &token)
    }
    .await;
    let resp = match result {
        Ok(v) => no_store_json(&v),
        Err(e) => e.into_response(),
    };
    cors(&s, &headers, resp)
}

#[cfg(test)]
mod tests {
    use super::{form_pairs, parse_client_credentials};
    use base64::Engine;
    use http::{HeaderMap, HeaderValue, header};

    fn basic(user_pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(user_pass);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {b64}")).unwrap(),
        );
        h
    }

    /// RFC 6749 §2.3.1 and Appendix B: each half of Basic is form-urlencoded, so `+` is a
    /// space and a literal plus is `%2B` (what openid-client and Authlib send).
    #[test]
    fn basic_credentials_are_form_urlencoded() {
        let read = |user_pass: &str| parse_client_credentials(&basic(user_pass), b"");
        assert_eq!(
            read("a+b:c%2Bd").unwrap(),
            ("a b".to_owned(), "c+d".to_owned())
        );
        assert_eq!(
            read("id:s%20p+q%3A").unwrap(),
            ("id".to_owned(), "s p q:".to_owned())
        );
        // Plain alphanumerics, which is all Gatehouse generates, pass through untouched.
        assert_eq!(
            read("Abc123:Zyx987").unwrap(),
            ("Abc123".to_owned(), "Zyx987".to_owned())
        );
        assert!(read("id:%FF").is_err(), "invalid UTF-8 after decoding");
        assert!(read("no-colon").is_err());
    }

    #[test]
    fn form_pairs_decode_like_the_url_crate() {
        for body in [
            "token=eyJ.a-b_c&token_type_hint=access_token",
            "a=1&&b=&c&d=x%20y+z&e=%C3%BC&f=%zz&=v&g==h",
            "",
            "k=%FF",
            "k=\u{fc}\u{0}",
            "&&a=b&&",
            "=",
            "token=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ&token_type_hint=access_token",
            "token=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlLXNpZ2%2BuYXR1cmU+&x=1",
        ] {
            let ours: Vec<(String, String)> = form_pairs(body.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let theirs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(ours, theirs, "{body}");
        }
    }
}
