//! The last configuration this node applied, kept on disk: what lets a node start, and serve,
//! while its database is unreachable (DESIGN.md §6; Kong's data planes keep the same kind of
//! cache). Also the source of `/status`'s `configuration_hash`.
//!
//! After every batch of changes the feed applies, a background task (at most one write per
//! [`DEBOUNCE`]) serialises what the node serves — the proxy's entities as stored (plugin
//! secrets still sealed), every auth server's records (secrets hashed, keys sealed), the
//! revoked tokens — and writes it to `<data-dir>/config-cache.json` atomically (a private
//! temporary file, fsync, rename, fsync of the directory). Nothing in it is more readable than
//! the database it copies: the file is 0600, and opening its keys takes the master key.

use crate::sync::StoreSource;
use aws_lc_rs::digest;
use gatehouse_core::Timestamp;
use gatehouse_core::gateway::CoreEntity;
use gatehouse_core::identity::AuthServerRecord;
use gatehouse_identity::Identity;
use gatehouse_store::feed::Feed;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;
use uuid::Uuid;

/// The cache's file name in the data directory.
pub const FILE_NAME: &str = "config-cache.json";

/// The file's format; a file of another format is not used.
const FORMAT: u32 = 1;

/// How long the writer waits after a change for more to arrive, so that a burst of writes
/// costs one file.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Kong's `configuration_hash` before any configuration is known.
pub const NO_HASH: &str = "00000000000000000000000000000000";

/// What a node needs besides its configuration to serve from the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSettings {
    /// The control plane the proxy serves, and its name (`--control-plane`).
    pub control_plane: Option<ControlPlaneRef>,
    /// The control plane of the Kong Admin API paths.
    pub default_control_plane: Uuid,
    /// SHA-256 digests (hex) of the admin tokens the database holds (the environment's token
    /// is not copied: the environment gives it again).
    pub admin_token_digests: Vec<String>,
}

/// A control plane by id and name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlPlaneRef {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
}

/// What the configuration hash covers: what every node serving the same control plane serves
/// alike. Revocations are left out: each node forgets expired ones on its own schedule.
#[derive(Serialize)]
struct ConfigurationRef<'a> {
    entities: Vec<&'a CoreEntity>,
    auth_servers: Vec<&'a AuthServerRecord>,
}

/// [`ConfigurationRef`], read back.
#[derive(Deserialize)]
struct Configuration {
    entities: Vec<CoreEntity>,
    auth_servers: Vec<AuthServerRecord>,
}

/// The file's fields but its configuration, which is spliced in after them (see
/// [`ConfigCache::refresh`]).
#[derive(Serialize)]
struct FileHead<'a> {
    format: u32,
    gatehouse_version: &'a str,
    version: i64,
    written_at: Timestamp,
    configuration_hash: &'a str,
    node: &'a NodeSettings,
    revoked: &'a [(Uuid, Timestamp)],
}

/// The file: `head`'s fields, then `configuration`, which serde_json wrote (so it is valid
/// JSON) and which goes in as it is rather than parsed again into a `RawValue` and copied
/// (7.6 MB at 10,000 routes).
fn file_bytes(head: &FileHead<'_>, configuration: &str) -> Result<Vec<u8>, CacheError> {
    let mut bytes = serde_json::to_vec(head).map_err(|e| CacheError::Invalid(e.to_string()))?;
    if bytes.pop() != Some(b'}') {
        return Err(CacheError::Invalid("the file head is not an object".into()));
    }
    bytes.reserve(configuration.len() + 20);
    bytes.extend_from_slice(b",\"configuration\":");
    bytes.extend_from_slice(configuration.as_bytes());
    bytes.push(b'}');
    Ok(bytes)
}

#[derive(Deserialize)]
struct File {
    format: u32,
    version: i64,
    written_at: Timestamp,
    configuration_hash: String,
    node: NodeSettings,
    revoked: Vec<(Uuid, Timestamp)>,
    configuration: Box<RawValue>,
}

/// A configuration read from the cache.
#[derive(Debug)]
pub struct CachedConfig {
    /// The feed version it holds everything up to.
    pub version: i64,
    /// When it was written.
    pub written_at: Timestamp,
    /// Its `configuration_hash`.
    pub configuration_hash: String,
    /// The node's settings when it was written.
    pub node: NodeSettings,
    /// The proxy's entities as stored (plugin secrets sealed).
    pub entities: Vec<CoreEntity>,
    /// Every auth server's records.
    pub auth_servers: Vec<AuthServerRecord>,
    /// Revoked tokens: `(jti, expires_at)`.
    pub revoked: Vec<(Uuid, Timestamp)>,
}

/// Why the cache cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading or writing the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a cache this build can read, or its content does not match its hash.
    #[error("not a usable configuration cache: {0}")]
    Invalid(String),
}

/// `configuration_hash` of a serialised configuration: the first 128 bits of its SHA-256, in
/// hex (Kong's field is 32 hex digits).
fn hash_of(configuration: &[u8]) -> String {
    digest::digest(&digest::SHA256, configuration).as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads the cache at `path`: `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<CachedConfig>, CacheError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let file: File =
        serde_json::from_slice(&bytes).map_err(|e| CacheError::Invalid(e.to_string()))?;
    if file.format != FORMAT {
        return Err(CacheError::Invalid(format!(
            "format {} (this build reads {FORMAT})",
            file.format
        )));
    }
    let hash = hash_of(file.configuration.get().as_bytes());
    if hash != file.configuration_hash {
        return Err(CacheError::Invalid(
            "its content does not match its hash".into(),
        ));
    }
    let configuration: Configuration = serde_json::from_str(file.configuration.get())
        .map_err(|e| CacheError::Invalid(e.to_string()))?;
    Ok(Some(CachedConfig {
        version: file.version,
        written_at: file.written_at,
        configuration_hash: hash,
        node: file.node,
        entities: configuration.entities,
        auth_servers: configuration.auth_servers,
        revoked: file.revoked,
    }))
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a part:
/// a fresh private temporary file beside it, synced, renamed over it, and the directory synced.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What the cache last did, for `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct CacheStatus {
    /// The hash of the configuration applied ([`NO_HASH`] before the first).
    pub configuration_hash: String,
    /// The feed version of the last configuration hashed and written.
    pub version: i64,
    /// When the file was last written (Unix seconds; 0: never, or no file is kept).
    pub written_at: i64,
    /// The file (absent when this node keeps none: SQLite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The last failure to write it.
    pub error: Option<String>,
}

/// A node's configuration cache: hashes what the node serves after every change and, when
/// it has a path, keeps it on disk.
pub struct ConfigCache {
    path: Option<PathBuf>,
    node: NodeSettings,
    feed: Arc<Feed>,
    identity: Arc<Identity>,
    source: Option<Arc<StoreSource>>,
    status: std::sync::Mutex<CacheStatus>,
    // Ticks after every refresh (the node's heartbeat reports the new hash at once).
    refreshed: tokio::sync::watch::Sender<()>,
}

impl ConfigCache {
    /// A cache of what `identity` and `source` serve at `feed`'s version, written to `path`
    /// when given. Call [`ConfigCache::spawn`] to keep it current.
    pub fn new(
        path: Option<PathBuf>,
        node: NodeSettings,
        feed: Arc<Feed>,
        identity: Arc<Identity>,
        source: Option<Arc<StoreSource>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            status: std::sync::Mutex::new(CacheStatus {
                configuration_hash: NO_HASH.into(),
                version: 0,
                written_at: 0,
                path: path.clone(),
                error: None,
            }),
            path,
            node,
            feed,
            identity,
            source,
            refreshed: tokio::sync::watch::Sender::new(()),
        })
    }

    /// Changes after every refresh.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<()> {
        self.refreshed.subscribe()
    }

    /// Where the cache stands.
    pub fn status(&self) -> CacheStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Hashes (and writes) what the node serves now.
    pub async fn refresh(&self) {
        // The version first: the content read after it holds at least that version, so a
        // node starting from this file replays from there, never skipping a change.
        let version = self.feed.applied();
        let entities = match &self.source {
            Some(s) => s.entities(),
            None => Arc::new(std::collections::BTreeMap::new()),
        };
        let records = self.identity.records();
        let revoked = self.identity.revoked();
        let node = self.node.clone();
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let configuration = serde_json::to_string(&ConfigurationRef {
                entities: entities.values().map(|e| &**e).collect(),
                auth_servers: records.iter().map(|r| r.as_ref()).collect(),
            })
            .map_err(|e| CacheError::Invalid(e.to_string()))?;
            let hash = hash_of(configuration.as_bytes());
            let Some(path) = path else {
                return Ok((hash, 0));
            };
            let written_at = Timestamp::now();
            let head = FileHead {
                format: FORMAT,
                gatehouse_version: env!("CARGO_PKG_VERSION"),
                version,
                written_at,
                configuration_hash: &hash,
                node: &node,
                revoked: &revoked,
            };
            let bytes = file_bytes(&head, &configuration)?;
            write_atomically(&path, &bytes)?;
            tracing::debug!(
                version,
                bytes = bytes.len(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "configuration cache written"
            );
            Ok::<_, CacheError>((hash, written_at.unix_seconds()))
        })
        .await;
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match written {
            Ok(Ok((hash, written_at))) => {
                status.configuration_hash = hash;
                status.version = version;
                status.written_at = written_at;
                status.error = None;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, path = ?self.path, "cannot write the configuration cache");
                status.error = Some(e.to_string());
            }
            Err(e) => status.error = Some(format!("the cache writer failed: {e}")),
        }
        drop(status);
        self.refreshed.send_replace(());
    }

    /// Keeps the cache current until the process ends: now, and after every batch of changes
    /// the feed applies (bursts coalesced over [`DEBOUNCE`]).
    pub fn spawn(self: &Arc<Self>) {
        let me: Weak<Self> = Arc::downgrade(self);
        let mut applied = self.feed.watch();
        tokio::spawn(async move {
            loop {
                match me.upgrade() {
                    Some(me) => me.refresh().await,
                    None => break,
                }
                if applied.changed().await.is_err() {
                    break;
                }
                tokio::time::sleep(DEBOUNCE).await;
                applied.borrow_and_update();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_reads_back_and_a_changed_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("gh-cache-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE_NAME);
        assert!(read(&path).unwrap().is_none(), "no file: no cache");

        let cp = Uuid::new_v4();
        let entity = CoreEntity {
            control_plane_id: cp,
            kind: gatehouse_core::gateway::EntityKind::Service,
            id: Uuid::new_v4(),
            endpoint_key: Some("svc".into()),
            alt_key: None,
            service_id: None,
            route_id: None,
            consumer_id: None,
            certificate_id: None,
            created_at: 1,
            body: serde_json::json!({"name": "svc", "host": "example.test"}),
        };
        let configuration = serde_json::to_string(&ConfigurationRef {
            entities: vec![&entity],
            auth_servers: Vec::new(),
        })
        .unwrap();
        let hash = hash_of(configuration.as_bytes());
        let node = NodeSettings {
            control_plane: Some(ControlPlaneRef {
                id: cp,
                name: "default".into(),
            }),
            default_control_plane: cp,
            admin_token_digests: vec!["ab".into()],
        };
        let revoked = [(Uuid::new_v4(), Timestamp(5_000_000))];
        let head = FileHead {
            format: FORMAT,
            gatehouse_version: "test",
            version: 42,
            written_at: Timestamp(1_000_000),
            configuration_hash: &hash,
            node: &node,
            revoked: &revoked,
        };
        let bytes = file_bytes(&head, &configuration).unwrap();
        write_atomically(&path, &bytes).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "private to its owner");
        }
        let back = read(&path).unwrap().unwrap();
        assert_eq!(back.version, 42);
        assert_eq!(back.entities, vec![entity]);
        assert_eq!(back.node, node);
        assert_eq!(back.revoked, revoked);
        assert_eq!(back.configuration_hash, hash);
        assert_eq!(hash.len(), 32);

        let tampered = String::from_utf8(bytes)
            .unwrap()
            .replace("example.test", "evil.test");
        std::fs::write(&path, tampered).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("does not match its hash"), "{err}");

        std::fs::write(&path, b"{\"format\":").unwrap();
        assert!(matches!(read(&path), Err(CacheError::Invalid(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
