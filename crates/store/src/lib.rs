//! Gatehouse storage.
//!
//! [`Store`] is the one interface the rest of Gatehouse uses; [`sqlite::SqliteStore`] (the
//! default, embedded) and [`postgres::PgStore`] (several nodes) implement it. Both are generated
//! from the same SQL in `sql.rs`; the few places where the two dialects differ live in each
//! backend's `dialect` module. Each backend applies its own migrations (`migrations/<backend>/`)
//! when it opens. [`open`] picks the backend from a URL.

use async_trait::async_trait;
use gatehouse_core::Timestamp;
use gatehouse_core::gateway::{ControlPlane, CoreEntity, EntityKind};
use gatehouse_core::identity::{
    AuthServer, AuthServerRecord, Claim, Client, ClientSecret, IssuedToken, Scope, SigningKey,
};
use gatehouse_core::list::{ListQuery, Page};
use std::sync::Arc;
use uuid::Uuid;

pub mod feed;
mod rows;
#[macro_use]
mod gateway_sql;
#[macro_use]
mod sql;
pub mod postgres;
pub mod sqlite;

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The entity (or its parent) does not exist.
    #[error("not found")]
    NotFound,
    /// A unique constraint was violated.
    #[error("unique constraint violated")]
    Conflict,
    /// A unique value is taken: `id`, `endpoint_key` (name, username, instance_name) or
    /// `alt_key` (custom_id, a plugin's scope combination).
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    /// A core entity references another that does not exist in its control plane.
    #[error("missing {0:?} {1}")]
    MissingReference(EntityKind, Uuid),
    /// Deleting would orphan children and `force` was not given.
    #[error("the entity still has children")]
    HasChildren,
    /// The entity changed after the caller read it (a concurrent write, perhaps on another
    /// node, came first); nothing was written.
    #[error("the entity changed since it was read")]
    Stale,
    /// A client may have at most two enabled secrets.
    #[error("too many enabled secrets")]
    TooManySecrets,
    /// A stored value could not be read back.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The database cannot be reached or is not answering in time: a refused or dropped
    /// connection, no pooled connection within [`ACQUIRE_TIMEOUT`], a statement cancelled by
    /// [`STATEMENT_TIMEOUT`], a server shutting down, SQLite's write lock held past its busy
    /// timeout. Transient: the same request may succeed later (APIs answer 503).
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A change-feed sink could not apply changes (see [`feed::ChangeSink`]).
    #[error("applying changes failed: {0}")]
    Sink(feed::SinkError),
    /// Migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A node serving a control plane, as it last reported itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    /// The node's id (kept in its data directory).
    pub id: Uuid,
    /// The control plane its proxy serves.
    pub control_plane_id: Uuid,
    /// Its host's name.
    pub hostname: String,
    /// Its Gatehouse version.
    pub version: String,
    /// The `configuration_hash` of what it serves.
    pub config_hash: String,
    /// The last change-feed version it applied.
    pub config_version: i64,
    /// Why it could not catch up, when its last attempt failed.
    pub sync_error: Option<String>,
    /// Its first report (Unix seconds).
    pub created_at: i64,
    /// Its latest report (Unix seconds).
    pub last_ping: i64,
}

/// Storage results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A shared handle to a store.
pub type SharedStore = Arc<dyn Store>;

/// Everything Gatehouse persists. All methods are safe to call concurrently.
#[async_trait]
pub trait Store: GatewayStore {
    /// Which backend this is (`sqlite` or `postgres`), for logs and `/status`.
    fn backend(&self) -> &'static str;

    /// Runs a trivial statement: `Ok` when the database answers now (within
    /// [`ACQUIRE_TIMEOUT`] for a connection).
    async fn ping(&self) -> Result<()>;

    /// A setting by key.
    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    /// Sets `key` unless it already has a value; returns whether this call set it.
    async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<bool>;
    /// Sets `key`, replacing any value.
    async fn put_setting(&self, key: &str, value: &str) -> Result<()>;

    /// Creates an auth server together with its first signing key.
    async fn create_auth_server(&self, server: &AuthServer, key: &SigningKey) -> Result<()>;
    /// An auth server by id.
    async fn get_auth_server(&self, id: Uuid) -> Result<Option<AuthServer>>;
    /// A page of auth servers.
    async fn list_auth_servers(&self, q: &ListQuery) -> Result<Page<AuthServer>>;
    /// Every auth server.
    async fn all_auth_servers(&self) -> Result<Vec<AuthServer>>;
    /// Saves an auth server; with `new_key`, also adds that key and retires the older ones.
    /// `read` is the `updated_at` the caller read: when the stored one differs (a concurrent
    /// write came first) nothing is written and the answer is [`StoreError::Stale`]. The other
    /// updates below take it alike.
    async fn update_auth_server(
        &self,
        server: &AuthServer,
        new_key: Option<&SigningKey>,
        read: Timestamp,
    ) -> Result<()>;
    /// Deletes an auth server; without `force`, refuses while scopes, claims or clients exist.
    async fn delete_auth_server(&self, id: Uuid, force: bool) -> Result<()>;

    /// Creates a scope.
    async fn create_scope(&self, scope: &Scope) -> Result<()>;
    /// A scope by id.
    async fn get_scope(&self, auth_server: Uuid, id: Uuid) -> Result<Option<Scope>>;
    /// A page of scopes.
    async fn list_scopes(&self, auth_server: Uuid, q: &ListQuery) -> Result<Page<Scope>>;
    /// Every scope of an auth server.
    async fn all_scopes(&self, auth_server: Uuid) -> Result<Vec<Scope>>;
    /// Saves a scope.
    async fn update_scope(&self, scope: &Scope, read: Timestamp) -> Result<()>;
    /// Deletes a scope and removes it from clients' `allow_scopes` and claims' `include_in_scopes`.
    async fn delete_scope(&self, auth_server: Uuid, id: Uuid) -> Result<()>;

    /// Creates a claim.
    async fn create_claim(&self, claim: &Claim) -> Result<()>;
    /// A claim by id.
    async fn get_claim(&self, auth_server: Uuid, id: Uuid) -> Result<Option<Claim>>;
    /// A page of claims.
    async fn list_claims(&self, auth_server: Uuid, q: &ListQuery) -> Result<Page<Claim>>;
    /// Every claim of an auth server.
    async fn all_claims(&self, auth_server: Uuid) -> Result<Vec<Claim>>;
    /// Saves a claim.
    async fn update_claim(&self, claim: &Claim, read: Timestamp) -> Result<()>;
    /// Deletes a claim.
    async fn delete_claim(&self, auth_server: Uuid, id: Uuid) -> Result<()>;

    /// Creates a client with its first secret.
    async fn create_client(&self, client: &Client, secret: &ClientSecret) -> Result<()>;
    /// A client by id.
    async fn get_client(&self, auth_server: Uuid, id: &str) -> Result<Option<Client>>;
    /// A page of clients.
    async fn list_clients(&self, auth_server: Uuid, q: &ListQuery) -> Result<Page<Client>>;
    /// Every client of an auth server.
    async fn all_clients(&self, auth_server: Uuid) -> Result<Vec<Client>>;
    /// Saves a client; with `secret`, its secrets are replaced by that one.
    async fn update_client(
        &self,
        client: &Client,
        secret: Option<&ClientSecret>,
        read: Timestamp,
    ) -> Result<()>;
    /// Creates or replaces a client and replaces its secrets by `secret`; true when created.
    async fn upsert_client(&self, client: &Client, secret: &ClientSecret) -> Result<bool>;
    /// Deletes a client with its secrets and tokens.
    async fn delete_client(&self, auth_server: Uuid, id: &str) -> Result<()>;

    /// Adds a secret; fails with [`StoreError::TooManySecrets`] if it is enabled and the client
    /// already has `max_enabled` enabled secrets.
    async fn create_secret(&self, secret: &ClientSecret, max_enabled: usize) -> Result<()>;
    /// A page of a client's secrets.
    async fn list_secrets(
        &self,
        auth_server: Uuid,
        client: &str,
        q: &ListQuery,
    ) -> Result<Page<ClientSecret>>;
    /// Every secret of every client of an auth server.
    async fn all_secrets(&self, auth_server: Uuid) -> Result<Vec<ClientSecret>>;
    /// A secret by id.
    async fn get_secret(
        &self,
        auth_server: Uuid,
        client: &str,
        id: Uuid,
    ) -> Result<Option<ClientSecret>>;
    /// Enables or disables a secret, keeping at most `max_enabled` enabled.
    async fn set_secret_enabled(
        &self,
        auth_server: Uuid,
        client: &str,
        id: Uuid,
        enabled: bool,
        max_enabled: usize,
    ) -> Result<ClientSecret>;
    /// Deletes a secret.
    async fn delete_secret(&self, auth_server: Uuid, client: &str, id: Uuid) -> Result<()>;

    /// Records issued tokens in one transaction.
    async fn insert_tokens(&self, tokens: &[IssuedToken]) -> Result<()>;
    /// A page of a client's live (unrevoked) tokens.
    async fn list_tokens(
        &self,
        auth_server: Uuid,
        client: &str,
        q: &ListQuery,
    ) -> Result<Page<IssuedToken>>;
    /// A token by id (revoked ones included).
    async fn get_token(&self, auth_server: Uuid, id: Uuid) -> Result<Option<IssuedToken>>;
    /// Revokes one token of an auth server; returns it, or `None` if unknown.
    async fn revoke_token(
        &self,
        auth_server: Uuid,
        id: Uuid,
        at: Timestamp,
    ) -> Result<Option<IssuedToken>>;
    /// Revokes every live token of a client; returns `(jti, expires_at)` of each.
    async fn revoke_client_tokens(
        &self,
        auth_server: Uuid,
        client: &str,
        at: Timestamp,
    ) -> Result<Vec<(Uuid, Timestamp)>>;
    /// Revoked tokens that have not expired by `now`: `(jti, expires_at)`.
    async fn revoked_tokens(&self, now: Timestamp) -> Result<Vec<(Uuid, Timestamp)>>;
    /// Deletes token records that expired before `before`; returns how many.
    async fn purge_expired_tokens(&self, before: Timestamp) -> Result<u64>;

    /// An auth server's signing keys, newest first.
    async fn signing_keys(&self, auth_server: Uuid) -> Result<Vec<SigningKey>>;

    /// Everything the identity server serves one auth server from; `None` when it does not
    /// exist.
    async fn auth_server_record(&self, id: Uuid) -> Result<Option<AuthServerRecord>> {
        match self.get_auth_server(id).await? {
            Some(server) => Ok(Some(self.record_of(server).await?)),
            None => Ok(None),
        }
    }
    /// [`Store::auth_server_record`] of every auth server.
    async fn auth_server_records(&self) -> Result<Vec<AuthServerRecord>> {
        let mut records = Vec::new();
        for server in self.all_auth_servers().await? {
            records.push(self.record_of(server).await?);
        }
        Ok(records)
    }
    /// Reads what belongs to `server`.
    async fn record_of(&self, server: AuthServer) -> Result<AuthServerRecord> {
        let id = server.id;
        Ok(AuthServerRecord {
            signing_keys: self.signing_keys(id).await?,
            scopes: self.all_scopes(id).await?,
            claims: self.all_claims(id).await?,
            clients: self.all_clients(id).await?,
            secrets: self.all_secrets(id).await?,
            server,
        })
    }

    /// Applies the migrations this build carries that the database lacks (idempotent). [`open`]
    /// does this; a store from [`open_lazy`] needs it once the database answers.
    async fn migrate(&self) -> Result<()>;

    /// The latest version of the change feed (0 before any change).
    async fn change_version(&self) -> Result<i64>;
    /// Up to `limit` recorded changes after version `after`, in order.
    async fn changes_since(&self, after: i64, limit: i64) -> Result<feed::ChangeRead>;
    /// Deletes change records made before `before`; returns how many.
    async fn prune_changes(&self, before: Timestamp) -> Result<u64>;
    /// Creates or updates a node's row (its `created_at` is kept on update).
    async fn record_node(&self, node: &NodeRecord) -> Result<()>;
    /// The nodes that last said they serve `control_plane`, by hostname.
    async fn nodes(&self, control_plane: Uuid) -> Result<Vec<NodeRecord>>;
    /// Deletes the rows of nodes not heard from since `before`; returns how many.
    async fn prune_nodes(&self, before: Timestamp) -> Result<u64>;

    /// Listens for other nodes' change announcements: PostgreSQL's `LISTEN`; `None` on
    /// SQLite, whose one node learns of its writes in-process.
    async fn listen(&self) -> Result<Option<Box<dyn feed::ChangeListener>>>;
}

/// The gateway's part of the store: control planes and their core entities. Every [`Store`] is
/// one; it is a separate trait only to keep each trait's methods in one place.
#[async_trait]
pub trait GatewayStore: Send + Sync + 'static {
    /// Creates a control plane (`Conflict` when the name is taken).
    async fn create_control_plane(&self, cp: &ControlPlane) -> Result<()>;
    /// A control plane by id.
    async fn get_control_plane(&self, id: Uuid) -> Result<Option<ControlPlane>>;
    /// A control plane by its unique name.
    async fn control_plane_by_name(&self, name: &str) -> Result<Option<ControlPlane>>;
    /// One page of control planes (filters: id, name, cluster_type, labels).
    async fn list_control_planes(&self, q: &ListQuery) -> Result<Page<ControlPlane>>;
    /// Replaces a control plane's fields.
    /// (`read`: as [`Store::update_auth_server`].)
    async fn update_control_plane(&self, cp: &ControlPlane, read: Timestamp) -> Result<()>;
    /// Deletes a control plane and every core entity in it.
    async fn delete_control_plane(&self, id: Uuid) -> Result<()>;

    /// Every core entity of a control plane (of one kind, or all), ordered by id.
    async fn core_entities(&self, cp: Uuid, kind: Option<EntityKind>) -> Result<Vec<CoreEntity>>;
    /// A core entity by id.
    async fn get_core_entity(
        &self,
        cp: Uuid,
        kind: EntityKind,
        id: Uuid,
    ) -> Result<Option<CoreEntity>>;
    /// A core entity by its endpoint key (name, username, instance_name).
    async fn core_entity_by_key(
        &self,
        cp: Uuid,
        kind: EntityKind,
        key: &str,
    ) -> Result<Option<CoreEntity>>;
    /// A core entity by its second unique value (a consumer's custom_id).
    async fn core_entity_by_alt_key(
        &self,
        cp: Uuid,
        kind: EntityKind,
        key: &str,
    ) -> Result<Option<CoreEntity>>;
    /// Inserts a core entity after checking its references and unique values in one
    /// transaction (`MissingReference`, `Duplicate`).
    async fn insert_core_entity(&self, e: &CoreEntity) -> Result<()>;
    /// Replaces an existing core entity, with the same checks (`NotFound` when absent), if its
    /// stored body is still `read` (what the caller read and changed); otherwise nothing is
    /// written and the answer is `Stale`. Two concurrent updates thus end with one winner,
    /// never one silently undoing the other.
    async fn update_core_entity(&self, e: &CoreEntity, read: &serde_json::Value) -> Result<()>;
    /// Deletes a core entity and what goes with it (the plugins scoped to it, a certificate's
    /// SNIs); a service that routes still reference is refused with `HasChildren`.
    async fn delete_core_entity(&self, cp: Uuid, kind: EntityKind, id: Uuid) -> Result<()>;
    /// Runs `writes` in order in one transaction, each with the checks of its single form:
    /// all of them land or none does. The error carries the index of the write that failed
    /// (`writes.len()` when the commit did).
    async fn write_core_entities(
        &self,
        writes: &[CoreWrite<'_>],
    ) -> std::result::Result<(), (usize, StoreError)>;
}

/// One write of [`GatewayStore::write_core_entities`].
#[derive(Debug, Clone, Copy)]
pub enum CoreWrite<'a> {
    /// As [`GatewayStore::insert_core_entity`].
    Insert(&'a CoreEntity),
    /// As [`GatewayStore::update_core_entity`]: the entity and the body it was read as.
    Update(&'a CoreEntity, &'a serde_json::Value),
    /// As [`GatewayStore::delete_core_entity`]: control plane, kind, id.
    Delete(Uuid, EntityKind, Uuid),
}

/// How long a request waits for a pooled database connection, including the attempts to
/// open one while the server refuses connections, before failing with
/// [`StoreError::Unavailable`]: an outage answers 503 within this, not after sqlx's default of
/// 30 s.
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// PostgreSQL's `statement_timeout` on every connection: a statement waiting longer (a lock
/// held by another node, a stalled server) is cancelled and fails with
/// [`StoreError::Unavailable`].
pub const STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Opens the store a URL names: `postgres://…`/`postgresql://…` for PostgreSQL, `sqlite://PATH`
/// or a plain path for SQLite. Migrations are applied before this returns.
pub async fn open(url: &str) -> Result<SharedStore> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url).await?))
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        Ok(Arc::new(
            sqlite::SqliteStore::open(std::path::Path::new(path)).await?,
        ))
    }
}

/// A PostgreSQL store that connects only when first used and has not applied migrations: for
/// a node that starts from its cached configuration while the database is unreachable
/// (call [`Store::migrate`] once it answers). Fails only on a malformed URL.
pub fn open_lazy(url: &str) -> Result<SharedStore> {
    Ok(Arc::new(postgres::PgStore::connect_lazy(url)?))
}

/// A column a list query may filter or sort on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Col {
    /// The API field name.
    pub name: &'static str,
    /// The SQL column.
    pub column: &'static str,
    /// How values compare.
    pub kind: ColKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColKind {
    Text,
    Bool,
    Int,
    /// A JSON label map; filters take `key:value`.
    Labels,
}

pub(crate) const fn col(name: &'static str, column: &'static str, kind: ColKind) -> Col {
    Col { name, column, kind }
}

#[cfg(test)]
mod tests;
