//! Admin authentication: every request but `GET /status` needs `Authorization: Bearer <token>`.
//!
//! Tokens are kept only as SHA-256 digests (they are long random strings, so a fast digest is
//! enough) and compared in constant time.

use crate::problem::ApiError;
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;
use std::sync::Arc;

/// The accepted admin tokens, as digests.
#[derive(Clone, Default)]
pub struct AdminAuth {
    digests: Vec<Vec<u8>>,
}

/// The digest stored for an admin token (hex SHA-256).
pub fn token_digest_hex(token: &str) -> String {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl AdminAuth {
    /// Accepts the tokens whose hex digests are given (unparseable entries are skipped).
    pub fn from_hex_digests<'a>(digests: impl IntoIterator<Item = &'a str>) -> Self {
        let digests = digests
            .into_iter()
            .filter(|d| d.len() == 64)
            .filter_map(|d| {
                (0..32)
                    .map(|i| u8::from_str_radix(&d[2 * i..2 * i + 2], 16).ok())
                    .collect::<Option<Vec<u8>>>()
            })
            .collect();
        Self { digests }
    }

    /// Whether `token` is an admin token.
    pub fn accepts(&self, token: &str) -> bool {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        // Check every digest so timing does not tell which one matched.
        self.digests.iter().fold(false, |ok, known| {
            verify_slices_are_equal(known, d.as_ref()).is_ok() | ok
        })
    }
}

/// Middleware: 401 unless the request carries an admin token.
pub async fn require_admin(
    State(auth): State<Arc<AdminAuth>>,
    req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match token {
        Some(t) if auth.accepts(t) => next.run(req).await,
        _ if is_konnect_path(req.uri().path()) => ApiError::Unauthorized.into_response(),
        _ => crate::kong_error::KongError::Unauthorized.into_response(),
    }
}

/// Whether a path belongs to the Konnect-style APIs (problem+json) rather than to the Kong
/// Admin API format (`/v2/control-planes/{id}/core-entities/…` is Kong-format, like Konnect's).
pub fn is_konnect_path(path: &str) -> bool {
    (path.starts_with("/v1/") || path.starts_with("/v2/")) && !path.contains("/core-entities")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_known_tokens() {
        let auth = AdminAuth::from_hex_digests([token_digest_hex("secret-token").as_str(), "junk"]);
        assert!(auth.accepts("secret-token"));
        assert!(!auth.accepts("secret-tokeN"));
        assert!(!auth.accepts(""));
    }
}
