//! Konnect-style errors: `application/problem+json` with `status, title, instance, detail` and,
//! for 400s, `invalid_parameters`. Internal causes are logged, never sent.

use axum::response::{IntoResponse, Response};
use gatehouse_core::validation::{InvalidParameter, ValidationError};
use gatehouse_store::StoreError;
use http::{HeaderValue, StatusCode, header};

/// An error of the Konnect-style APIs.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with the fields that failed.
    #[error("invalid parameters")]
    Invalid(Vec<InvalidParameter>),
    /// 400 with a sentence.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401.
    #[error("unauthorized")]
    Unauthorized,
    /// 403 with a sentence.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404.
    #[error("not found")]
    NotFound,
    /// 409 with a sentence.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A request refused before its handler ran (405, 408, 413, 414, a second `Host`), with
    /// a sentence.
    #[error("refused: {1}")]
    Refused(StatusCode, String),
    /// 503: the database is unavailable; the request may be sent again. The cause was
    /// logged.
    #[error("database unavailable")]
    Unavailable,
    /// 500; the cause was logged.
    #[error("internal error")]
    Internal,
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::Invalid(e.0)
    }
}

impl From<InvalidParameter> for ApiError {
    fn from(p: InvalidParameter) -> Self {
        Self::Invalid(vec![p])
    }
}

impl ApiError {
    /// Maps a storage error; `what` names the entity for 409s.
    pub fn store(e: StoreError, what: &str) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            StoreError::Stale => Self::Conflict(crate::kong_error::STALE.into()),
            StoreError::Conflict => Self::Conflict(format!("{what} with this name already exists")),
            StoreError::HasChildren => Self::BadRequest(
                "the auth server still has scopes, claims or clients; delete them or use ?force=true"
                    .into(),
            ),
            StoreError::TooManySecrets => Self::Forbidden(format!(
                "a client can have at most {} enabled secrets",
                gatehouse_core::identity::MAX_ENABLED_SECRETS
            )),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "storage unavailable");
                Self::Unavailable
            }
            other => {
                tracing::error!(error = %other, "storage failed");
                Self::Internal
            }
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Refused(status, _) => *status,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let title = status.canonical_reason().unwrap_or("Error");
        let detail = match &self {
            Self::Invalid(_) => "Invalid Parameters".to_owned(),
            Self::BadRequest(d) | Self::Forbidden(d) | Self::Conflict(d) | Self::Refused(_, d) => {
                d.clone()
            }
            Self::Unauthorized => {
                "A valid admin token is required (Authorization: Bearer <token>)".into()
            }
            Self::NotFound => "Not Found".into(),
            Self::Unavailable => crate::kong_error::UNAVAILABLE.into(),
            Self::Internal => "An unexpected error occurred".into(),
        };
        let mut body = serde_json::json!({
            "status": status.as_u16(),
            "title": title,
            "type": format!("https://httpstatuses.com/{}", status.as_u16()),
            "instance": format!("gatehouse:trace:{}", uuid::Uuid::new_v4().simple()),
            "detail": detail,
        });
        if let Self::Invalid(params) = &self {
            body["invalid_parameters"] = serde_json::to_value(params).unwrap_or_default();
        }
        let mut resp = (status, axum::Json(body)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(crate::kong_error::RETRY_AFTER),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="gatehouse-admin""#),
            );
        }
        resp
    }
}
