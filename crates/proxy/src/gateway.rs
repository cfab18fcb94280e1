//! The live configuration of the control plane this node proxies for: the current
//! [`Snapshot`], rebuilt from the store after every change and swapped atomically.

use crate::plugin::Registry;
use crate::snapshot::{self, InstanceCache, Snapshot, SnapshotError};
use crate::upstream::UpstreamPools;
use arc_swap::ArcSwap;
use gatehouse_store::{SharedStore, StoreError};
use std::sync::Arc;
use uuid::Uuid;

/// Why the configuration could not be (re)loaded.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Reading the entities failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The entities did not compile.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Turns a stored plugin configuration into the one the plugin runs with (decrypting the
/// fields its factory marks as secret). Identity when nothing is encrypted.
pub type ConfigOpener = Arc<dyn Fn(&str, serde_json::Value) -> serde_json::Value + Send + Sync>;

/// One control plane's running configuration.
pub struct Gateway {
    store: SharedStore,
    registry: Arc<Registry>,
    control_plane_id: Uuid,
    snapshot: ArcSwap<Snapshot>,
    // Serialises rebuilds and carries plugin instances from one snapshot to the next.
    rebuild: tokio::sync::Mutex<InstanceCache>,
    upstreams: UpstreamPools,
    opener: Option<ConfigOpener>,
}

impl Gateway {
    /// Loads the control plane's configuration.
    pub async fn load(
        store: SharedStore,
        registry: Arc<Registry>,
        control_plane_id: Uuid,
        opener: Option<ConfigOpener>,
    ) -> Result<Arc<Self>, GatewayError> {
        let gw = Arc::new(Self {
            store,
            registry,
            control_plane_id,
            snapshot: ArcSwap::from_pointee(Snapshot::empty(control_plane_id)?),
            rebuild: tokio::sync::Mutex::new(InstanceCache::new()),
            upstreams: UpstreamPools::default(),
            opener,
        });
        gw.reload().await?;
        Ok(gw)
    }

    /// The configuration new requests run on.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The control plane served.
    pub fn control_plane_id(&self) -> Uuid {
        self.control_plane_id
    }

    /// The plugins this build knows.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The upstream connection pools.
    pub fn upstreams(&self) -> &UpstreamPools {
        &self.upstreams
    }

    /// Rebuilds the snapshot from the store and swaps it in. Requests already running finish
    /// on the snapshot they started with.
    pub async fn reload(&self) -> Result<(), GatewayError> {
        let mut cache = self.rebuild.lock().await;
        let started = std::time::Instant::now();
        let mut entities = self
            .store
            .core_entities(self.control_plane_id, None)
            .await?;
        if let Some(open) = &self.opener {
            for e in &mut entities {
                if e.kind == gatehouse_core::gateway::EntityKind::Plugin
                    && let Some(name) = e
                        .body
                        .get("name")
                        .and_then(|n| n.as_str())
                        .map(str::to_owned)
                    && let Some(config) = e.body.get_mut("config")
                {
                    *config = open(&name, config.take());
                }
            }
        }
        let next = snapshot::build(
            self.control_plane_id,
            &entities,
            &self.registry,
            &mut cache,
            &self.upstreams,
        )?;
        let routes = next.routes.len();
        self.snapshot.store(Arc::new(next));
        tracing::debug!(
            routes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "configuration reloaded"
        );
        Ok(())
    }
}
