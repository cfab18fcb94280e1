//! The Gatehouse control-plane API (the admin listener).
//!
//! Start at [`router`]: it mounts, behind [`auth::AdminAuth`], the identity management API
//! ([`identity_api`], Konnect's `/v1/auth-servers…`), the control planes ([`control_planes`],
//! `/v2/control-planes`) and their core entities ([`core_entities`], under
//! `/v2/control-planes/{id}/core-entities` and, for the `default` control plane, at Kong's Admin
//! API paths), plus `GET /status`. Errors leave through one type per wire format:
//! [`problem::ApiError`] renders Konnect's `application/problem+json`, [`kong_error::KongError`]
//! Kong's `{code, name, message, fields}`.

pub mod auth;
pub mod cache;
mod certificates;
pub mod control_planes;
pub mod core_entities;
pub mod declarative;
pub mod identity_api;
pub mod kong_error;
pub mod list;
pub mod nodes;
pub mod problem;
pub mod secrets;
pub mod sync;

use axum::Router;
use axum::routing::get;
use gatehouse_identity::Identity;
use gatehouse_proxy::plugin::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use uuid::Uuid;

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// The identity server (its store is the store).
    pub identity: Arc<Identity>,
    /// Set once every role of the process listens.
    pub ready: Arc<AtomicBool>,
    /// The gateway side: plugins, control planes, the running proxy.
    pub gateway: GatewayAdmin,
    /// This node's place in the change feed ([`sync::settle`] after every write).
    pub feed: Arc<gatehouse_store::feed::Feed>,
    /// The configuration cache, for `/status` (None where nothing keeps one: unit tests).
    pub cache: Option<Arc<cache::ConfigCache>>,
}

/// The gateway side of the admin state.
#[derive(Clone)]
pub struct GatewayAdmin {
    /// Every plugin this build knows (validates plugin configurations).
    pub registry: Arc<Registry>,
    /// The control plane the Kong Admin API paths (`/services`, …) work on: `default`.
    pub default_control_plane: Uuid,
    /// The control plane this node's proxy serves (None: no proxy role).
    pub served_control_plane: Option<Uuid>,
    /// The admin listener's URL, for `control_plane_endpoint`.
    pub admin_url: String,
    /// The proxy listener, for the served control plane's `proxy_urls`.
    pub proxy_url: Option<gatehouse_core::gateway::ProxyUrl>,
    /// DB-less mode (`serve --declarative-config`): core entities change only through
    /// `POST /config`; every other write answers 405.
    pub db_less: bool,
}

/// Largest admin request body read (axum's default, made explicit): larger, or announced
/// larger, gets 413 in the API's format.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The admin listener's router.
pub fn router(state: AdminState, auth: auth::AdminAuth) -> Router {
    let protected = Router::new()
        .merge(identity_api::routes())
        .merge(control_planes::routes())
        .merge(nodes::routes())
        .nest(
            "/v2/control-planes/{cp}/core-entities",
            core_entities::routes(),
        )
        .merge(core_entities::routes())
        .route("/", get(node_info))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            auth::require_admin,
        ));
    let inner = Router::new()
        .route("/status", get(status))
        .merge(protected)
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    // The walkthrough POSTs to `…/core-entities/plugins/`: Kong and Konnect accept a trailing
    // slash, so the path loses it before routing.
    Router::new().fallback_service(
        tower::ServiceBuilder::new()
            .map_request(strip_trailing_slash)
            .service(inner),
    )
}

fn strip_trailing_slash(mut req: axum::extract::Request) -> axum::extract::Request {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let rebuilt = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        if let Ok(pq) = rebuilt.parse::<http::uri::PathAndQuery>() {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// 404 in the format of the API the path belongs to.
async fn fallback(uri: http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    if auth::is_konnect_path(uri.path()) {
        problem::ApiError::NotFound.into_response()
    } else {
        kong_error::KongError::NotFound.into_response()
    }
}

/// A request refused before its handler ran, in the format of the API `path` belongs to.
pub fn refusal(path: &str, status: http::StatusCode, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    if auth::is_konnect_path(path) {
        problem::ApiError::Refused(status, message.to_owned()).into_response()
    } else {
        kong_error::KongError::Refused(status, message.to_owned()).into_response()
    }
}

/// The admin listener's answer to a request refused at the edge (URI length, `Host`).
pub fn edge_error(
    uri: &http::Uri,
    e: gatehouse_listener::serve::EdgeError,
) -> axum::response::Response {
    refusal(uri.path(), e.status(), e.message())
}

/// Reads a request body whole: the request's bytes, or why they cannot be had when the
/// client is to blame for more than its syntax — too large (413, also when only announced so)
/// or too slow (408) — or `Err(None)` with the rejection's text for a cut or malformed body.
pub(crate) async fn read_body<S: Send + Sync>(
    req: axum::extract::Request,
    state: &S,
) -> Result<bytes::Bytes, (Option<(http::StatusCode, &'static str)>, String)> {
    use axum::extract::FromRequest;
    if gatehouse_listener::body::announced_too_large(req.headers(), MAX_BODY_BYTES) {
        return Err((
            Some((
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large",
            )),
            String::new(),
        ));
    }
    bytes::Bytes::from_request(req, state)
        .await
        .map_err(|e| (body_refusal(&e), e.to_string()))
}

/// Why a body could not be read, when the client is to blame for more than its syntax: too
/// large (413) or too slow (408). `None` for a body that was cut or malformed.
fn body_refusal(
    e: &axum::extract::rejection::BytesRejection,
) -> Option<(http::StatusCode, &'static str)> {
    use gatehouse_listener::body::{BodyFailure, rejection_failure};
    match rejection_failure(e) {
        BodyFailure::TooLarge => Some((
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large",
        )),
        BodyFailure::TimedOut => Some((http::StatusCode::REQUEST_TIMEOUT, "Request timeout")),
        BodyFailure::Broken => None,
    }
}

async fn method_not_allowed(uri: http::Uri) -> axum::response::Response {
    refusal(
        uri.path(),
        http::StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
    )
}

/// This process's node id (Kong's `node_id`): random per start, like a DB-less Kong node's.
fn node_id() -> Uuid {
    static ID: std::sync::OnceLock<Uuid> = std::sync::OnceLock::new();
    *ID.get_or_init(Uuid::new_v4)
}

/// Kong's `GET /`: the node, its version and its plugins.
async fn node_info(
    axum::extract::State(state): axum::extract::State<AdminState>,
) -> axum::Json<serde_json::Value> {
    let available: serde_json::Map<String, serde_json::Value> = state
        .gateway
        .registry
        .iter()
        .map(|f| {
            (
                f.name().to_owned(),
                serde_json::json!({"version": f.version(), "priority": f.priority()}),
            )
        })
        .collect();
    let enabled: Vec<&str> = state.gateway.registry.iter().map(|f| f.name()).collect();
    axum::Json(serde_json::json!({
        "tagline": "Welcome to gatehouse",
        "version": env!("CARGO_PKG_VERSION"),
        "edition": "community",
        "hostname": std::env::var("HOSTNAME").unwrap_or_default(),
        "node_id": node_id(),
        "lua_version": null,
        "plugins": {"available_on_server": available, "enabled_in_cluster": enabled},
        "configuration": {
            "database": state.identity.store().backend(),
            "router_flavor": "traditional_compatible",
            "admin_listen": [state.gateway.admin_url],
        },
    }))
}

/// How long `GET /status` waits for the database to answer before it reports it unreachable.
const STATUS_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

async fn status(
    axum::extract::State(state): axum::extract::State<AdminState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ready = state.ready.load(Ordering::Acquire);
    let store = state.identity.store();
    // As Kong's `/status`: whether the database answers now. A node whose database is gone
    // stays ready (it serves from memory), so a probe of this endpoint must not wait long.
    let reachable = matches!(
        tokio::time::timeout(STATUS_PING_TIMEOUT, store.ping()).await,
        Ok(Ok(()))
    );
    // Where this node stands in the change feed: the version it serves, when it last caught
    // up with the database, and why not if its latest attempt failed (a lagging node).
    let feed = state.feed.health();
    // Kong's `configuration_hash`, and where the on-disk copy stands.
    let cache = state.cache.as_ref().map(|c| c.status());
    let body = serde_json::json!({
        "ready": ready,
        "version": env!("CARGO_PKG_VERSION"),
        "database": {"backend": store.backend(), "reachable": reachable},
        "config_version": feed.applied_version,
        "configuration_hash": cache.as_ref().map_or(cache::NO_HASH, |c| c.configuration_hash.as_str()),
        "configuration": {
            "applied_version": feed.applied_version,
            "last_sync": feed.last_sync,
            "error": feed.error,
            "cache": cache,
        },
    });
    let status = if ready {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod certificate_tests;
#[cfg(test)]
mod gateway_tests;
#[cfg(test)]
mod tests;
