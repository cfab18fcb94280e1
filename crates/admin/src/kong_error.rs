//! Kong Admin API errors: `{code, name, message, fields}` with Kong's codes and statuses
//! (spec D.1), and the plain `{"message": …}` bodies Kong uses for 401/404/405. This is the only
//! place the core-entity API turns failures into responses.

use axum::response::{IntoResponse, Response};
use gatehouse_core::gateway::EntityKind;
use gatehouse_core::kong_schema::FieldErrors;
use http::StatusCode;
use serde_json::{Value, json};

/// An error of the Kong-format APIs.
#[derive(Debug)]
pub enum KongError {
    /// Code 2, 400: the body failed validation.
    Schema(FieldErrors),
    /// Code 4, 400: a reference names no entity (`field` is `service`, `route`, …).
    ForeignKey {
        /// The referencing field.
        field: &'static str,
        /// The kind it should reference.
        kind: EntityKind,
        /// How it was referenced: (`id`|`name`|`username`, value).
        key: (&'static str, String),
    },
    /// Code 4, 400: deleting would leave other entities pointing at nothing.
    ReferencedBy {
        /// The entity being deleted.
        kind: EntityKind,
        /// The kind that still references it.
        by: EntityKind,
    },
    /// Code 5, 409: a unique field is taken; `fields` shows the clashing values.
    Unique(Value),
    /// Code 7, 400.
    InvalidOffset(String),
    /// Code 9, 400.
    InvalidSize(String),
    /// 400 with a message only (Kong's non-schema request errors).
    BadRequest(String),
    /// 401.
    Unauthorized,
    /// 404.
    NotFound,
    /// 404 for `/certificates/{name}` when no SNI has that name.
    SniNotFound,
    /// 405.
    MethodNotAllowed,
    /// Code 12, 405: a core-entity write on a DB-less node (`serve --declarative-config`).
    DbLess {
        /// `create`, `update`, …
        op: &'static str,
        /// The collection written.
        kind: EntityKind,
    },
    /// A request refused before its handler ran (408, 413, 414, a second `Host`), with
    /// Kong's style of message.
    Refused(StatusCode, String),
    /// 409: the entity changed between this request's read and its write (another request,
    /// perhaps on another node, wrote it first); nothing was written.
    Stale,
    /// 503: the database is unavailable (`StoreError::Unavailable`); the request may be sent
    /// again. The cause was logged.
    Unavailable,
    /// 500; the cause was logged.
    Internal,
}

/// What a 409 for a concurrent write says, in both APIs.
pub(crate) const STALE: &str = "The entity was changed by another request while this one ran; nothing was written. Read it again and retry";

/// What a 503 says, in both APIs' formats.
pub(crate) const UNAVAILABLE: &str = "The database is unavailable; try again later";

/// A 503's `Retry-After`, in seconds: about the time a node takes to reconnect.
pub(crate) const RETRY_AFTER: &str = "2";

fn lua_table(v: &Value) -> String {
    // Kong prints keys as a Lua-ish table: {name="x"}.
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}=\"{s}\""),
                    Value::Null => format!("{k}=null"),
                    Value::Object(_) => format!("{k}={}", lua_table(v)),
                    other => format!("{k}={other}"),
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

impl KongError {
    /// Status and body.
    pub fn parts(&self) -> (StatusCode, Value) {
        match self {
            Self::Schema(fields) => (
                StatusCode::BAD_REQUEST,
                json!({"code": 2, "name": "schema violation", "message": fields.summary(),
                       "fields": fields.clone().into_value()}),
            ),
            Self::ForeignKey { field, kind, key } => {
                let reference = json!({ key.0: key.1 });
                (
                    StatusCode::BAD_REQUEST,
                    json!({"code": 4, "name": "foreign key violation",
                           "message": format!("the foreign key '{}' does not reference an existing '{}' entity.",
                                              lua_table(&reference), kind.as_str()),
                           "fields": { *field: reference }}),
                )
            }
            Self::ReferencedBy { kind, by } => (
                StatusCode::BAD_REQUEST,
                json!({"code": 4, "name": "foreign key violation",
                       "message": format!("an existing '{}' entity references this '{}' entity",
                                          by.as_str(), kind.as_str()),
                       "fields": {"@referenced_by": by.as_str()}}),
            ),
            Self::Unique(fields) => (
                StatusCode::CONFLICT,
                json!({"code": 5, "name": "unique constraint violation",
                       "message": format!("UNIQUE violation detected on '{}'", lua_table(fields)),
                       "fields": fields}),
            ),
            Self::InvalidOffset(o) => (
                StatusCode::BAD_REQUEST,
                json!({"code": 7, "name": "invalid offset",
                       "message": format!("'{o}' is not a valid offset: bad base64 encoding")}),
            ),
            Self::InvalidSize(reason) => (
                StatusCode::BAD_REQUEST,
                json!({"code": 9, "name": "invalid size", "message": reason}),
            ),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({"message": m})),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, json!({"message": "Unauthorized"})),
            Self::NotFound => (StatusCode::NOT_FOUND, json!({"message": "Not found"})),
            Self::SniNotFound => (StatusCode::NOT_FOUND, json!({"message": "SNI not found"})),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"message": "Method not allowed"}),
            ),
            Self::DbLess { op, kind } => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"code": 12, "name": "operation unsupported",
                       "message": format!("cannot {op} '{}' entities when not using a database", kind.as_str())}),
            ),
            Self::Refused(status, m) => (*status, json!({"message": m})),
            Self::Stale => (StatusCode::CONFLICT, json!({"message": STALE})),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"message": UNAVAILABLE}),
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"message": "An unexpected error occurred"}),
            ),
        }
    }
}

impl From<FieldErrors> for KongError {
    fn from(e: FieldErrors) -> Self {
        Self::Schema(e)
    }
}

impl IntoResponse for KongError {
    fn into_response(self) -> Response {
        let (status, body) = self.parts();
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static(RETRY_AFTER),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_follow_kong() {
        let mut f = FieldErrors::new();
        f.add("host", "required field missing");
        let cases: Vec<(KongError, u16, Option<i64>)> = vec![
            (KongError::Schema(f), 400, Some(2)),
            (
                KongError::ForeignKey {
                    field: "service",
                    kind: EntityKind::Service,
                    key: ("id", "x".into()),
                },
                400,
                Some(4),
            ),
            (KongError::Unique(json!({"name": "s"})), 409, Some(5)),
            (KongError::InvalidOffset("zz".into()), 400, Some(7)),
            (KongError::InvalidSize("x".into()), 400, Some(9)),
            (KongError::NotFound, 404, None),
            (KongError::Unauthorized, 401, None),
            (KongError::MethodNotAllowed, 405, None),
            (KongError::Internal, 500, None),
        ];
        for (e, status, code) in cases {
            let (s, body) = e.parts();
            assert_eq!(s.as_u16(), status);
            assert_eq!(body["code"].as_i64(), code);
        }
        let (_, body) = KongError::Unique(json!({"name": "s"})).parts();
        assert_eq!(
            body["message"],
            "UNIQUE violation detected on '{name=\"s\"}'"
        );
        let (_, body) = KongError::ForeignKey {
            field: "service",
            kind: EntityKind::Service,
            key: ("id", "123".into()),
        }
        .parts();
        assert_eq!(
            body["message"],
            "the foreign key '{id=\"123\"}' does not reference an existing 'services' entity."
        );
        assert_eq!(body["fields"]["service"]["id"], "123");
    }
}
