//! OAuth errors (RFC 6749 §5.2, RFC 7009 §2.2.1) and their one mapping to HTTP responses.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// An error an issuer endpoint answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// Malformed request.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Client authentication failed (401 with `WWW-Authenticate`).
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    /// The grant is invalid.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// The client may not use this grant or action.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// Grant type not served.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// Requested scope is unknown, disabled or not allowed.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// A bearer token is missing or invalid (userinfo; RFC 6750).
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// Too many failed client authentications from the caller's address (429 with
    /// `Retry-After`, whole seconds rounded up).
    #[error("temporarily_unavailable: throttled for {0:?}")]
    Throttled(std::time::Duration),
    /// The database is unavailable (503 `temporarily_unavailable` with `Retry-After`; RFC 7009
    /// §2.2.1 names 503 for a revocation endpoint that cannot answer now): the request may be
    /// sent again.
    #[error("temporarily_unavailable: the database is unavailable")]
    Unavailable,
    /// The server failed; the cause is logged, not sent.
    #[error("server_error")]
    ServerError,
}

impl OAuthError {
    /// The RFC error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidToken(_) => "invalid_token",
            Self::Throttled(_) | Self::Unavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidClient(_) | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn description(&self) -> &str {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidClient(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d)
            | Self::InvalidToken(d) => d,
            Self::Throttled(_) => {
                "too many failed client authentications from this address; retry later"
            }
            Self::Unavailable => "the server's database is unavailable; retry later",
            Self::ServerError => "the server could not complete the request",
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body =
            serde_json::json!({"error": self.code(), "error_description": self.description()});
        let mut resp = (self.status(), axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        match self {
            Self::InvalidClient(_) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="gatehouse", charset="UTF-8""#),
                );
            }
            Self::InvalidToken(_) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            Self::Throttled(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            Self::Unavailable => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_rfcs() {
        let r = OAuthError::InvalidClient("x".into()).into_response();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(OAuthError::InvalidScope("x".into()).status(), 400);
        assert_eq!(OAuthError::UnsupportedGrantType("x".into()).status(), 400);
        assert_eq!(OAuthError::ServerError.status(), 500);
        let r = OAuthError::InvalidRequest("x".into()).into_response();
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        let r = OAuthError::Throttled(std::time::Duration::from_millis(1500)).into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let r = OAuthError::Unavailable.into_response();
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
    }
}
