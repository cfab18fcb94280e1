//! The live configuration of the control plane this node proxies for: the current
//! [`Snapshot`], built from the entities a configuration source hands over
//! ([`Gateway::apply`]) and swapped atomically. The proxy never reads a database: the source
//! (the change feed, or a declarative file) feeds it.

use crate::plugin::Registry;
use crate::snapshot::{self, BuildCache, Snapshot, SnapshotError};
use crate::upstream::UpstreamPools;
use arc_swap::ArcSwap;
use gatehouse_core::gateway::CoreEntity;
use parking_lot::Mutex;
use std::sync::Arc;
use uuid::Uuid;

/// One control plane's running configuration.
pub struct Gateway {
    registry: Arc<Registry>,
    control_plane_id: Uuid,
    snapshot: ArcSwap<Snapshot>,
    // Serialises rebuilds and carries what did not change (parsed entities, compiled routes,
    // plugin instances) from one snapshot to the next. Held only while a snapshot is built
    // (no await inside).
    rebuild: Mutex<BuildCache>,
    upstreams: UpstreamPools,
}

impl Gateway {
    /// A gateway for `control_plane_id` with nothing configured yet (every request 404s
    /// until the first [`Gateway::apply`]).
    pub fn new(registry: Arc<Registry>, control_plane_id: Uuid) -> Arc<Self> {
        Arc::new(Self {
            registry,
            control_plane_id,
            snapshot: ArcSwap::from_pointee(Snapshot::empty(control_plane_id)),
            rebuild: Mutex::new(BuildCache::new()),
            upstreams: UpstreamPools::default(),
        })
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

    /// Builds a snapshot of the control plane's whole configuration, `entities` (plugin
    /// configurations as the plugins run them: secrets opened), and swaps it in. Requests
    /// already running finish on the snapshot they started with; plugin instances whose
    /// configuration did not change carry over with their state. On error nothing changes.
    ///
    /// Only what changed since the last call costs anything: an entity handed over as the
    /// same `Arc` as last time is neither parsed nor compiled again, and a route's runtime is
    /// rebuilt only when it, its service or a plugin that may apply to it changed.
    pub fn apply<'a>(
        &self,
        entities: impl IntoIterator<Item = &'a Arc<CoreEntity>>,
    ) -> Result<(), SnapshotError> {
        let mut cache = self.rebuild.lock();
        let started = std::time::Instant::now();
        let next = snapshot::build(
            self.control_plane_id,
            entities,
            &self.registry,
            &mut cache,
            &self.upstreams,
        )?;
        let routes = next.routes.len();
        retire(self.snapshot.swap(Arc::new(next)));
        tracing::debug!(
            routes,
            elapsed_us = started.elapsed().as_micros() as u64,
            "configuration applied"
        );
        Ok(())
    }
}

/// Hands a replaced snapshot to the thread that frees snapshots. Requests still running on it
/// hold clones; without this, the one that finished last would free it on a proxy worker, and
/// freeing the routes of a whole replaced configuration (a `POST /config` of 10,000 services)
/// is milliseconds that the requests queued behind it would wait.
fn retire(old: Arc<Snapshot>) {
    static REAPER: std::sync::OnceLock<Option<std::sync::mpsc::Sender<Arc<Snapshot>>>> =
        std::sync::OnceLock::new();
    let sender = REAPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Snapshot>>();
        std::thread::Builder::new()
            .name("gatehouse-reaper".into())
            .spawn(move || reap(&rx))
            .ok()
            .map(|_| tx)
    });
    match sender {
        Some(tx) => {
            // The reaper never ends while the process runs; if it did, `old` drops here.
            let _ = tx.send(old);
        }
        None => drop(old),
    }
}

/// Frees retired snapshots once no request holds them (checked every 10 ms while any is
/// held; asleep otherwise).
fn reap(rx: &std::sync::mpsc::Receiver<Arc<Snapshot>>) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut held: Vec<Arc<Snapshot>> = Vec::new();
    loop {
        let next = if held.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(std::time::Duration::from_millis(10))
        };
        match next {
            Ok(s) => held.push(s),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        held.retain(|s| Arc::strong_count(s) > 1);
    }
}
