//! Keeping this node in step with the database: the store as the proxy's configuration
//! source, and the change feed that drives it and the identity server (DESIGN.md §6).
//!
//! Admin handlers never rebuild anything themselves. After a write they call [`settle`],
//! which asks the feed to apply everything committed so far — their own write included — so
//! that the answer follows this node serving it; other nodes learn of it from the same feed.

use crate::AdminState;
use async_trait::async_trait;
use gatehouse_core::gateway::{CoreEntity, EntityKind};
use gatehouse_identity::Identity;
use gatehouse_proxy::gateway::Gateway;
use gatehouse_store::SharedStore;
use gatehouse_store::feed::{Change, ChangeKind, ChangeSink, Feed, SinkError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use uuid::Uuid;

/// The store as the proxy's configuration source: reads the served control plane's entities,
/// opens sealed secrets (plugin settings, certificate keys), and hands them to [`Gateway::apply`].
///
/// After the first load it reads only what changed: each change row names one entity
/// (`<kind>:<id>`), which is read again (or found gone) and replaced in the set it keeps, and
/// the whole set is handed over. Unchanged entities are handed over as the same `Arc`s, so
/// the gateway compiles only what changed. A batch larger than [`INCREMENTAL_MAX`] reads
/// everything.
pub struct StoreSource {
    store: SharedStore,
    gateway: Arc<Gateway>,
    identity: Arc<Identity>,
    // The entities last applied, by id (the store's order): held while a batch is merged and
    // applied (no await inside). Copy-on-write, so the configuration cache can serialise one
    // set while the next is applied.
    applied: parking_lot::Mutex<Applied>,
}

/// The set last applied.
#[derive(Clone, Default)]
struct Applied {
    /// Every entity as stored (plugin secrets sealed): what the configuration cache keeps.
    stored: Arc<BTreeMap<Uuid, Arc<CoreEntity>>>,
    /// The entities with sealed secrets (plugins, certificates) as they run: secrets opened.
    opened: Arc<BTreeMap<Uuid, Arc<CoreEntity>>>,
}

/// Past this many changed entities in one batch, reading them one by one costs more than
/// reading the control plane whole.
pub const INCREMENTAL_MAX: usize = 256;

impl StoreSource {
    /// A source for `gateway`'s control plane. The identity server holds the master key
    /// that opens plugin secrets.
    pub fn new(store: SharedStore, gateway: Arc<Gateway>, identity: Arc<Identity>) -> Self {
        Self {
            store,
            gateway,
            identity,
            applied: parking_lot::Mutex::new(Applied::default()),
        }
    }

    /// Reads the whole configuration and applies it.
    pub async fn load(&self) -> Result<(), SinkError> {
        let cp = self.gateway.control_plane_id();
        let entities = self.store.core_entities(cp, None).await?;
        self.install(entities)
    }

    /// Applies `entities`, the control plane's whole configuration as stored. An entity
    /// stored as it was applied last keeps its `Arc`, so that a full read (a resync, a large
    /// batch) rebuilds only what differs.
    pub fn install(&self, stored: Vec<CoreEntity>) -> Result<(), SinkError> {
        let mut applied = self.applied.lock();
        let mut next = Applied::default();
        let (all, opened) = (
            Arc::make_mut(&mut next.stored),
            Arc::make_mut(&mut next.opened),
        );
        for e in stored {
            let same = applied.stored.get(&e.id).filter(|held| ***held == e);
            if let Some(held) = same {
                if let Some(held_opened) = applied.opened.get(&e.id) {
                    opened.insert(e.id, held_opened.clone());
                }
                all.insert(e.id, held.clone());
                continue;
            }
            if sealed(e.kind) {
                opened.insert(e.id, Arc::new(self.opened(&e)));
            }
            all.insert(e.id, Arc::new(e));
        }
        *applied = next;
        self.apply_set(&applied)
    }

    /// Re-reads the entities `targets` names and applies the set with them replaced (or
    /// removed, when gone).
    async fn update(&self, targets: BTreeSet<(EntityKind, Uuid)>) -> Result<(), SinkError> {
        let cp = self.gateway.control_plane_id();
        let mut fresh = Vec::with_capacity(targets.len());
        for (kind, id) in targets {
            fresh.push((id, self.store.get_core_entity(cp, kind, id).await?));
        }
        // Merged in place under the lock, so that the copy-on-write copies nothing (unless the
        // configuration cache is serialising this very set) and nobody sees a half-merged
        // set. The set follows the database even if the snapshot then fails to build: the
        // feed retries the batch, and re-reading an entity is harmless.
        let mut guard = self.applied.lock();
        let applied = &mut *guard;
        let all = Arc::make_mut(&mut applied.stored);
        let opened = Arc::make_mut(&mut applied.opened);
        for (id, entity) in fresh {
            opened.remove(&id);
            match entity {
                Some(e) => {
                    if sealed(e.kind) {
                        opened.insert(id, Arc::new(self.opened(&e)));
                    }
                    all.insert(id, Arc::new(e));
                }
                None => {
                    all.remove(&id);
                }
            }
        }
        self.apply_set(applied)
    }

    /// An entity as it runs: its sealed secrets opened.
    fn opened(&self, stored: &CoreEntity) -> CoreEntity {
        let mut e = stored.clone();
        if e.kind == EntityKind::Certificate {
            crate::secrets::open_certificate(self.identity.master_key(), &mut e.body);
        } else if let Some(name) = e
            .body
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_owned)
            && let Some(config) = e.body.get_mut("config")
        {
            crate::secrets::open_config(
                self.gateway.registry(),
                self.identity.master_key(),
                &name,
                config,
            );
        }
        e
    }

    /// Hands `set` to the gateway (called with the set's lock held: no await).
    fn apply_set(&self, set: &Applied) -> Result<(), SinkError> {
        self.gateway.apply(set.stored.values().map(|e| {
            if sealed(e.kind) {
                set.opened.get(&e.id).unwrap_or(e)
            } else {
                e
            }
        }))?;
        Ok(())
    }

    /// The entities applied last, as stored, ordered by id.
    pub fn entities(&self) -> Arc<BTreeMap<Uuid, Arc<CoreEntity>>> {
        self.applied.lock().stored.clone()
    }
}

/// Whether entities of `kind` are stored with sealed secrets (plugins, certificates).
fn sealed(kind: EntityKind) -> bool {
    matches!(kind, EntityKind::Plugin | EntityKind::Certificate)
}

#[async_trait]
impl ChangeSink for StoreSource {
    async fn apply(&self, changes: &[Change]) -> Result<(), SinkError> {
        let cp = self.gateway.control_plane_id();
        let mut targets = BTreeSet::new();
        for c in changes
            .iter()
            .filter(|c| c.kind == ChangeKind::CoreEntity && c.scope == cp)
        {
            let target = c
                .entity_id
                .split_once(':')
                .and_then(|(kind, id)| Some((EntityKind::parse(kind)?, Uuid::parse_str(id).ok()?)));
            match target {
                Some(t) => {
                    targets.insert(t);
                }
                // Not a name this build writes: read everything rather than guess.
                None => return self.load().await,
            }
        }
        match targets.len() {
            0 => Ok(()),
            n if n > INCREMENTAL_MAX => self.load().await,
            _ => self.update(targets).await,
        }
    }

    async fn resync(&self) -> Result<(), SinkError> {
        self.load().await
    }
}

/// A node kept in step with the database: the feed, and the proxy's configuration source
/// (when the node runs a proxy).
pub struct Following {
    /// The feed; call [`Feed::spawn`] to start following other nodes' writes.
    pub feed: Arc<Feed>,
    /// The proxy's configuration source.
    pub source: Option<Arc<StoreSource>>,
}

/// Loads this node's proxy configuration (when it runs a proxy) and returns the feed that
/// keeps it and `identity` current, positioned at `version`: the feed version read before
/// `identity` was loaded.
pub async fn follow(
    store: SharedStore,
    identity: Arc<Identity>,
    gateway: Option<Arc<Gateway>>,
    version: i64,
) -> Result<Following, SinkError> {
    let source = gateway.map(|g| Arc::new(StoreSource::new(store.clone(), g, identity.clone())));
    if let Some(source) = &source {
        source.load().await?;
    }
    Ok(following(store, identity, source, version))
}

/// Serves `cached` — the configuration cache of a node whose database is unreachable — and
/// returns the feed positioned at its version, which catches up once the database answers.
pub fn restore(
    store: SharedStore,
    identity: Arc<Identity>,
    gateway: Option<Arc<Gateway>>,
    cached: crate::cache::CachedConfig,
) -> Result<Following, SinkError> {
    identity.install(
        cached.auth_servers.into_iter().map(Arc::new),
        cached.revoked,
    )?;
    let source = gateway.map(|g| Arc::new(StoreSource::new(store.clone(), g, identity.clone())));
    if let Some(source) = &source {
        source.install(cached.entities)?;
    }
    Ok(following(store, identity, source, cached.version))
}

fn following(
    store: SharedStore,
    identity: Arc<Identity>,
    source: Option<Arc<StoreSource>>,
    version: i64,
) -> Following {
    let mut sinks: Vec<Arc<dyn ChangeSink>> = vec![identity];
    if let Some(source) = &source {
        sinks.push(source.clone());
    }
    Following {
        feed: Feed::new(store, sinks, version),
        source,
    }
}

/// Applies everything committed so far on this node before a write is answered. A failure
/// is logged, not returned: the write is committed, and the feed's loop tries again within
/// `--db-update-frequency`.
pub async fn settle(st: &AdminState) {
    if let Err(e) = st.feed.catch_up().await {
        tracing::error!(error = %e, "applying a committed change on this node failed; retrying in the background");
    }
}
