//! The Gatehouse control-plane API (the admin listener).
//!
//! Start at [`router`]: it mounts the identity management API ([`identity_api`], Konnect's
//! `/v1/auth-servers…`) behind [`auth::AdminAuth`], plus `GET /status`. Errors leave through one
//! type per wire format: [`problem::ApiError`] renders Konnect's `application/problem+json`.

pub mod auth;
pub mod identity_api;
pub mod list;
pub mod problem;

use axum::Router;
use axum::routing::get;
use gatehouse_identity::Identity;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// The identity server (its store is the store).
    pub identity: Arc<Identity>,
    /// Set once every role of the process listens.
    pub ready: Arc<AtomicBool>,
}

/// The admin listener's router.
pub fn router(state: AdminState, auth: auth::AdminAuth) -> Router {
    let protected =
        Router::new()
            .merge(identity_api::routes())
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(auth),
                auth::require_admin,
            ));
    Router::new()
        .route("/status", get(status))
        .merge(protected)
        .fallback(|| async { problem::ApiError::NotFound })
        .with_state(state)
}

async fn status(
    axum::extract::State(state): axum::extract::State<AdminState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ready = state.ready.load(Ordering::Acquire);
    let body = serde_json::json!({
        "ready": ready,
        "version": env!("CARGO_PKG_VERSION"),
        "database": state.identity.store().backend(),
    });
    let status = if ready {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests;
