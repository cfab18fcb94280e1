//! The change feed (DESIGN.md §6): how every node learns, in well under a second, of every
//! write that changes what it serves, whichever node made it.
//!
//! Triggers in the database add a row to `changes` in the same transaction as each such write
//! (migration `0003_changes.sql`); versions commit in order. On PostgreSQL each commit also
//! sends a `NOTIFY` on [`CHANNEL`]. A node's [`Feed`] holds the version it has applied and,
//! when woken — by a notification, by the node's own write ([`Feed::catch_up`]), or by its
//! timer — reads the rows past it and hands them to its [`ChangeSink`]s (the identity server,
//! the proxy's configuration source). The notification is only a wake-up: the table is the
//! truth, so a lost or garbled notification costs at most one timer period, never a change.

use crate::{Result, SharedStore, StoreError};
use async_trait::async_trait;
use gatehouse_core::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// The PostgreSQL channel every commit that records a change notifies.
pub const CHANNEL: &str = "gatehouse_changes";

/// How many changes one read of the `changes` table returns at most.
const BATCH: i64 = 1000;

/// How many changes are read ahead and handed to the sinks together at most; a node further
/// behind rebuilds everything instead.
const MAX_PENDING: usize = 100_000;

/// How long change rows are kept. A node that falls further behind (it was stopped) rebuilds
/// everything instead of replaying.
pub const RETENTION_SECS: i64 = 3600;

/// What a change touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// An auth server itself.
    AuthServer,
    /// One of an auth server's scopes.
    Scope,
    /// One of an auth server's claims.
    Claim,
    /// One of an auth server's clients.
    Client,
    /// A client's secret.
    Secret,
    /// An auth server's signing key.
    Key,
    /// A token was revoked: `entity_id` is its jti.
    Revocation,
    /// A control plane.
    ControlPlane,
    /// A service, route, consumer, plugin… of a control plane.
    CoreEntity,
    /// A kind this build does not know (a newer node wrote it): the feed rebuilds everything.
    Unknown(String),
}

impl ChangeKind {
    fn parse(s: &str) -> Self {
        match s {
            "auth_server" => Self::AuthServer,
            "scope" => Self::Scope,
            "claim" => Self::Claim,
            "client" => Self::Client,
            "secret" => Self::Secret,
            "key" => Self::Key,
            "revocation" => Self::Revocation,
            "control_plane" => Self::ControlPlane,
            "core_entity" => Self::CoreEntity,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// Whether the change is to an auth server's configuration (the identity server rebuilds
    /// that auth server).
    pub fn is_identity(&self) -> bool {
        matches!(
            self,
            Self::AuthServer | Self::Scope | Self::Claim | Self::Client | Self::Secret | Self::Key
        )
    }
}

/// One recorded change. It names what changed, never a token or a secret.
#[derive(Debug, Clone)]
pub struct Change {
    /// Its place in the feed; versions commit in order.
    pub version: i64,
    /// What it touched.
    pub kind: ChangeKind,
    /// The auth server or control plane it belongs to.
    pub scope: Uuid,
    /// The entity (`<kind>:<id>` for core entities, the jti for revocations).
    pub entity_id: String,
    /// For a revocation, when the token would have expired.
    pub expires_at: Option<Timestamp>,
}

impl Change {
    /// Reads a stored row; `None` when it cannot be understood (the feed then rebuilds).
    pub(crate) fn from_row(
        version: i64,
        kind: &str,
        scope: &str,
        entity_id: String,
        expires_at: Option<i64>,
    ) -> Option<Self> {
        Some(Self {
            version,
            kind: ChangeKind::parse(kind),
            scope: Uuid::parse_str(scope).ok()?,
            entity_id,
            expires_at: expires_at.map(Timestamp),
        })
    }

    /// A revocation's jti, when the change is one.
    pub fn revoked_jti(&self) -> Option<Uuid> {
        (self.kind == ChangeKind::Revocation)
            .then(|| Uuid::parse_str(&self.entity_id).ok())
            .flatten()
    }
}

/// What a read of the feed found.
#[derive(Debug)]
pub enum ChangeRead {
    /// The changes past the version asked for, in order (empty: up to date).
    Changes(Vec<Change>),
    /// A row could not be understood: rebuild everything.
    Unreadable,
}

/// Something a node keeps in step with the database: the identity server, the proxy's
/// configuration.
#[async_trait]
pub trait ChangeSink: Send + Sync {
    /// Brings this sink up to date with `changes` (in version order). Applying a change twice
    /// must be harmless: after a failure the whole batch is handed over again.
    async fn apply(&self, changes: &[Change]) -> std::result::Result<(), SinkError>;
    /// Rebuilds everything from the store (the feed lost track: rows pruned, unreadable).
    async fn resync(&self) -> std::result::Result<(), SinkError>;
}

/// Why a sink could not apply changes; the feed keeps its version and tries again.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Waits for a backend's change announcements (PostgreSQL `LISTEN`).
#[async_trait]
pub trait ChangeListener: Send {
    /// Waits for the next announcement. `Ok(true)`: a notification arrived; `Ok(false)`: the
    /// connection was lost and has been (or will on the next call be) re-established, so
    /// notifications may have been missed.
    async fn next(&mut self) -> Result<bool>;
}

/// A node's position in the feed, and the loop that keeps it current.
pub struct Feed {
    store: SharedStore,
    sinks: Vec<Arc<dyn ChangeSink>>,
    applied: AtomicI64,
    // The same version, for those who wait for it to move (the configuration cache).
    applied_watch: tokio::sync::watch::Sender<i64>,
    // Serialises catching up: one reader at a time, batches applied in order.
    lock: tokio::sync::Mutex<()>,
    // Held for a copy, never across an await.
    health: std::sync::Mutex<FeedHealth>,
}

/// The feed's health, for `/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FeedHealth {
    /// The last version applied.
    pub applied_version: i64,
    /// When the feed last caught up with the database (Unix seconds; 0: never).
    pub last_sync: i64,
    /// The last failure to catch up, when the latest attempt failed.
    pub error: Option<String>,
}

impl Feed {
    /// A feed positioned at `version`: the sinks hold everything up to it. Read the version
    /// ([`crate::Store::change_version`]) *before* loading the sinks, so that a write landing
    /// while they load is applied again rather than missed.
    pub fn new(store: SharedStore, sinks: Vec<Arc<dyn ChangeSink>>, version: i64) -> Arc<Self> {
        let health = std::sync::Mutex::new(FeedHealth {
            applied_version: version,
            last_sync: Timestamp::now().0,
            error: None,
        });
        Arc::new(Self {
            store,
            sinks,
            applied: AtomicI64::new(version),
            applied_watch: tokio::sync::watch::Sender::new(version),
            lock: tokio::sync::Mutex::new(()),
            health,
        })
    }

    /// The last version applied.
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Follows the last version applied: it changes after every batch the sinks applied.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<i64> {
        self.applied_watch.subscribe()
    }

    fn set_applied(&self, version: i64) {
        self.applied.store(version, Ordering::Release);
        self.applied_watch.send_replace(version);
    }

    /// The feed's health.
    pub fn health(&self) -> FeedHealth {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update_health(&self, f: impl FnOnce(&mut FeedHealth)) {
        f(&mut self.health.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Applies every change committed so far. A node calls it after its own writes, so that
    /// its answer follows its own proxy and identity server being up to date; the feed's loop
    /// calls it on every notification and tick.
    pub async fn catch_up(&self) -> Result<()> {
        let result = self.catch_up_inner().await;
        match &result {
            Ok(()) => self.update_health(|h| {
                h.applied_version = self.applied();
                h.last_sync = Timestamp::now().0;
                h.error = None;
            }),
            Err(e) => {
                let e = e.to_string();
                self.update_health(|h| h.error = Some(e));
            }
        }
        result
    }

    async fn catch_up_inner(&self) -> Result<()> {
        let _one_at_a_time = self.lock.lock().await;
        'again: loop {
            // Every change committed so far is read first and handed to the sinks at once: a
            // burst (a `POST /config` of 20,000 entities) rebuilds the proxy's configuration
            // once, not once per page.
            let mut pending: Vec<Change> = Vec::new();
            loop {
                let after = pending.last().map_or_else(|| self.applied(), |c| c.version);
                let batch = match self.store.changes_since(after, BATCH).await? {
                    ChangeRead::Changes(batch) => batch,
                    ChangeRead::Unreadable => {
                        tracing::warn!(after, "unreadable change record; rebuilding everything");
                        self.resync().await?;
                        continue 'again;
                    }
                };
                if let Some(first) = batch.first()
                    && first.version != after + 1
                {
                    // Rows between were pruned: this node was away longer than they are kept.
                    tracing::info!(
                        after,
                        next = first.version,
                        "the change feed moved past this node; rebuilding everything"
                    );
                    self.resync().await?;
                    continue 'again;
                }
                if let Some(unknown) = batch.iter().find_map(|c| match &c.kind {
                    ChangeKind::Unknown(k) => Some(k.clone()),
                    _ => None,
                }) {
                    tracing::warn!(kind = %unknown, "unknown change kind; rebuilding everything");
                    self.resync().await?;
                    continue 'again;
                }
                let full = batch.len() as i64 == BATCH;
                pending.extend(batch);
                if !full {
                    break;
                }
                if pending.len() >= MAX_PENDING {
                    // So far behind that reading everything again is cheaper than replaying.
                    tracing::info!(
                        changes = pending.len(),
                        "more changes than are replayed; rebuilding everything"
                    );
                    self.resync().await?;
                    continue 'again;
                }
            }
            let Some(last) = pending.last().map(|c| c.version) else {
                return Ok(());
            };
            for sink in &self.sinks {
                sink.apply(&pending).await.map_err(StoreError::Sink)?;
            }
            self.set_applied(last);
            tracing::debug!(version = last, changes = pending.len(), "changes applied");
            return Ok(());
        }
    }

    /// Rebuilds every sink and moves to the version read before the rebuild.
    async fn resync(&self) -> Result<()> {
        let version = self.store.change_version().await?;
        for sink in &self.sinks {
            sink.resync().await.map_err(StoreError::Sink)?;
        }
        self.set_applied(version);
        Ok(())
    }

    /// Keeps the node current until the process ends: on every notification (PostgreSQL),
    /// every `frequency` (the safety net for a lost notification or connection), and after a
    /// lost listening connection. Old change rows are pruned about once a minute.
    pub fn spawn(self: &Arc<Self>, frequency: Duration) {
        let me = Arc::downgrade(self);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut listener: Option<Box<dyn ChangeListener>> = None;
            let mut tick = tokio::time::interval(frequency);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ticks: u64 = 0;
            let prune_every = (60_000 / frequency.as_millis().max(1)).max(1) as u64;
            loop {
                if listener.is_none() {
                    match store.listen().await {
                        Ok(l) => listener = l,
                        Err(e) => tracing::warn!(error = %e, "cannot listen for changes"),
                    }
                }
                let woke_by_tick = match listener.as_mut() {
                    Some(l) => tokio::select! {
                        got = l.next() => {
                            match got {
                                Ok(true) => {}
                                Ok(false) => tracing::info!("change listener reconnected; catching up"),
                                Err(e) => {
                                    tracing::warn!(error = %e, "change listener failed");
                                    listener = None;
                                }
                            }
                            false
                        }
                        _ = tick.tick() => true,
                    },
                    None => {
                        tick.tick().await;
                        true
                    }
                };
                let Some(me) = me.upgrade() else { break };
                if let Err(e) = me.catch_up().await {
                    tracing::warn!(error = %e, applied = me.applied(), "catching up with the database failed");
                }
                if woke_by_tick {
                    ticks += 1;
                    if ticks.is_multiple_of(prune_every) {
                        let cutoff = Timestamp::now().plus_seconds(-RETENTION_SECS);
                        if let Err(e) = store.prune_changes(cutoff).await {
                            tracing::warn!(error = %e, "pruning the change feed failed");
                        }
                    }
                }
            }
        });
    }
}
