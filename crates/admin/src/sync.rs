//! Keeping this node in step with the database: the store as the proxy's configuration
//! source, and the change feed that drives it and the identity server (DESIGN.md §6).
//!
//! Admin handlers never rebuild anything themselves. After a write they call [`settle`],
//! which asks the feed to apply everything committed so far — their own write included — so
//! that the answer follows this node serving it; other nodes learn of it from the same feed.

use crate::AdminState;
use async_trait::async_trait;
use gatehouse_core::gateway::EntityKind;
use gatehouse_identity::Identity;
use gatehouse_proxy::gateway::Gateway;
use gatehouse_store::SharedStore;
use gatehouse_store::feed::{Change, ChangeKind, ChangeSink, Feed, SinkError};
use std::sync::Arc;

/// The store as the proxy's configuration source: reads the served control plane's entities,
/// opens the plugins' sealed secrets, and hands them to [`Gateway::apply`].
pub struct StoreSource {
    store: SharedStore,
    gateway: Arc<Gateway>,
    identity: Arc<Identity>,
}

impl StoreSource {
    /// A source for `gateway`'s control plane. The identity server holds the master key
    /// that opens plugin secrets.
    pub fn new(store: SharedStore, gateway: Arc<Gateway>, identity: Arc<Identity>) -> Self {
        Self {
            store,
            gateway,
            identity,
        }
    }

    /// Reads the whole configuration and applies it.
    pub async fn load(&self) -> Result<(), SinkError> {
        let cp = self.gateway.control_plane_id();
        let mut entities = self.store.core_entities(cp, None).await?;
        for e in &mut entities {
            if e.kind == EntityKind::Plugin
                && let Some(name) = e
                    .body
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map(str::to_owned)
                && let Some(config) = e.body.get_mut("config")
            {
                crate::plugin_secrets::open_config(
                    self.gateway.registry(),
                    self.identity.master_key(),
                    &name,
                    config,
                );
            }
        }
        self.gateway.apply(&entities)?;
        Ok(())
    }
}

#[async_trait]
impl ChangeSink for StoreSource {
    async fn apply(&self, changes: &[Change]) -> Result<(), SinkError> {
        let cp = self.gateway.control_plane_id();
        if changes
            .iter()
            .any(|c| c.kind == ChangeKind::CoreEntity && c.scope == cp)
        {
            self.load().await?;
        }
        Ok(())
    }

    async fn resync(&self) -> Result<(), SinkError> {
        self.load().await
    }
}

/// Loads this node's proxy configuration (when it runs a proxy) and returns the feed that
/// keeps it and `identity` current, positioned at `version`: the feed version read before
/// `identity` was loaded. Call [`Feed::spawn`] to start following other nodes' writes.
pub async fn follow(
    store: SharedStore,
    identity: Arc<Identity>,
    gateway: Option<Arc<Gateway>>,
    version: i64,
) -> Result<Arc<Feed>, SinkError> {
    let mut sinks: Vec<Arc<dyn ChangeSink>> = vec![identity.clone()];
    if let Some(gateway) = gateway {
        let source = StoreSource::new(store.clone(), gateway, identity);
        source.load().await?;
        sinks.push(Arc::new(source));
    }
    Ok(Feed::new(store, sinks, version))
}

/// Applies everything committed so far on this node before a write is answered. A failure
/// is logged, not returned: the write is committed, and the feed's loop tries again within
/// `--db-update-frequency`.
pub async fn settle(st: &AdminState) {
    if let Err(e) = st.feed.catch_up().await {
        tracing::error!(error = %e, "applying a committed change on this node failed; retrying in the background");
    }
}
