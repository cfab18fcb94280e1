//! `GET /v2/control-planes/{id}/nodes`: the nodes that serve a control plane, in Konnect's
//! shape (its "data plane node records"), and the heartbeat by which each node reports itself.
//!
//! Every node upserts its row on a timer and as soon as its configuration changes: its id
//! (kept in the data directory), hostname, version, `config_hash` and feed version. A node
//! whose database is unreachable cannot report, so its `last_ping` ages and it shows as
//! disconnected; a node that reaches the database but cannot apply what it reads reports the
//! error.

use crate::AdminState;
use crate::cache::ConfigCache;
use crate::problem::ApiError;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gatehouse_core::Timestamp;
use gatehouse_store::feed::Feed;
use gatehouse_store::{NodeRecord, SharedStore};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A node whose last report is older than this shows `connection_state.is_connected: false`.
/// Nodes report at least every 10 s.
pub const CONNECTED_WITHIN_SECS: i64 = 30;

/// Rows of nodes not heard from for this long are deleted.
const FORGET_AFTER_SECS: i64 = 86_400;

/// The nodes routes.
pub fn routes() -> Router<AdminState> {
    Router::new().route("/v2/control-planes/{id}/nodes", get(list_nodes))
}

async fn list_nodes(
    State(st): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let cp = crate::control_planes::load(&st, &id).await?;
    let store = st.identity.store();
    let nodes = store
        .nodes(cp.id)
        .await
        .map_err(|e| ApiError::store(e, "the nodes"))?;
    let current = store
        .change_version()
        .await
        .map_err(|e| ApiError::store(e, "the configuration version"))?;
    let now = Timestamp::now().unix_seconds();
    let items: Vec<_> = nodes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "version": n.version,
                "hostname": n.hostname,
                "last_ping": n.last_ping,
                "type": "kong-proxy",
                "created_at": n.created_at,
                "updated_at": n.last_ping,
                "config_hash": n.config_hash,
                "connection_state": {"is_connected": now - n.last_ping <= CONNECTED_WITHIN_SECS},
                // Gatehouse's own: where the node stands in the change feed, and why not
                // further.
                "config_version": n.config_version,
                "lagging": n.config_version < current,
                "sync_error": n.sync_error,
            })
        })
        .collect();
    Ok(axum::Json(json!({"items": items, "page": {"total": items.len()}})).into_response())
}

/// Who a node is, for its reports.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// Its id.
    pub id: Uuid,
    /// The control plane its proxy serves.
    pub control_plane_id: Uuid,
    /// Its host's name.
    pub hostname: String,
}

/// Reports this node every `every` (at least every 10 s) and after each configuration the
/// cache hashed, until the process ends. A report that fails (the database is away) is
/// skipped: the next one says where the node stands.
pub fn spawn_heartbeat(
    store: SharedStore,
    node: NodeIdentity,
    feed: Arc<Feed>,
    cache: Arc<ConfigCache>,
    every: Duration,
) {
    let every = every.clamp(Duration::from_secs(1), Duration::from_secs(10));
    let prune_every = (3600 / every.as_secs().max(1)).max(1);
    let mut refreshed = cache.watch();
    tokio::spawn(async move {
        let created_at = Timestamp::now().unix_seconds();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            let by_tick = tokio::select! {
                _ = tick.tick() => true,
                changed = refreshed.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    false
                }
            };
            let health = feed.health();
            let record = NodeRecord {
                id: node.id,
                control_plane_id: node.control_plane_id,
                hostname: node.hostname.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                config_hash: cache.status().configuration_hash,
                config_version: health.applied_version,
                sync_error: health.error,
                created_at,
                last_ping: Timestamp::now().unix_seconds(),
            };
            tracing::debug!(
                version = record.config_version,
                by_tick,
                "reporting this node"
            );
            if let Err(e) = store.record_node(&record).await {
                tracing::debug!(error = %e, "reporting this node failed");
            }
            if by_tick {
                ticks += 1;
            }
            if by_tick && ticks.is_multiple_of(prune_every) {
                let cutoff = Timestamp::now().plus_seconds(-FORGET_AFTER_SECS);
                if let Err(e) = store.prune_nodes(cutoff).await {
                    tracing::debug!(error = %e, "forgetting old nodes failed");
                }
            }
        }
    });
}
