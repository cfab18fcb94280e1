//! The identity server's in-memory runtime.
//!
//! The token, introspection and revocation endpoints never read the database on their hot path:
//! they run on an immutable snapshot per auth server ([`ServerRuntime`]: scopes, parsed claim
//! templates, clients with their secret hashes, decrypted keys, pre-rendered JWKS and discovery),
//! swapped atomically whenever the management API changes that auth server. Issued tokens are
//! written through [`TokenWriter`] (group commit); revocations land in the database and in an
//! in-memory set that introspection consults, so they take effect at once.

use crate::error::OAuthError;
use crate::jwt;
use crate::keys::{KeyError, LoadedKey, MasterKey};
use crate::secrets::VerifiedSecrets;
use crate::throttle::{AuthThrottle, ThrottleConfig};
use arc_swap::ArcSwap;
use aws_lc_rs::digest;
use bytes::Bytes;
use gatehouse_claim_template::{Template, Value};
use gatehouse_core::Timestamp;
use gatehouse_core::identity::{
    AuthServer, AuthServerRecord, Claim, Client, GrantType, IssuedToken, Scope,
    TokenEndpointAuthMethod,
};
use gatehouse_store::feed::{Change, ChangeSink, SinkError};
use gatehouse_store::{SharedStore, StoreError};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

/// JWT claim names a custom claim may not take: the token's own members and the members
/// introspection answers with.
pub const RESERVED_CLAIM_NAMES: [&str; 11] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "active",
    "token_type",
];

/// How long a retired key stays published: the longest token lifetime.
const RETIRED_KEY_GRACE_SECS: i64 = gatehouse_core::identity::TOKEN_DURATION_MAX;

/// Failures while building a runtime from storage.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// An auth server has no usable signing key.
    #[error("auth server {0} has no active signing key")]
    NoKey(Uuid),
}

/// A parsed claim.
pub struct CompiledClaim {
    /// The stored claim.
    pub claim: Claim,
    /// Its value, parsed.
    pub template: Template,
}

/// A client with what authentication needs.
pub struct ClientRuntime {
    /// The stored client.
    pub client: Client,
    /// Enabled secrets: `(id, hash)`.
    pub secrets: Vec<(Uuid, String)>,
    /// `.Client` for claim templates.
    pub template_ctx: Value,
}

/// One auth server's immutable snapshot.
pub struct ServerRuntime {
    /// What it was built from.
    pub record: Arc<AuthServerRecord>,
    /// The stored auth server.
    pub server: AuthServer,
    /// Its issuer URL.
    pub issuer: String,
    /// Scopes, by name.
    pub scopes: HashMap<String, Scope>,
    /// Claims in creation order.
    pub claims: Vec<CompiledClaim>,
    /// Clients by id.
    pub clients: HashMap<String, ClientRuntime>,
    /// The key new tokens are signed with.
    pub signing_key: Arc<LoadedKey>,
    /// Every published key by `kid` (the signing key and retired keys still in their grace).
    pub keys: HashMap<Uuid, Arc<LoadedKey>>,
    /// `GET …/.well-known/jwks`, pre-rendered.
    pub jwks: Bytes,
    /// `GET …/.well-known/openid-configuration` (and RFC 8414 metadata), pre-rendered.
    pub discovery: Bytes,
    /// `.AuthServer` for claim templates.
    pub template_ctx: Value,
}

fn labels_value(labels: &gatehouse_core::validation::Labels) -> Value {
    Value::Map(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn time_value(t: Timestamp) -> Value {
    Value::Time(t.to_datetime().fixed_offset())
}

/// `.AuthServer` of the template context.
pub fn server_template_ctx(s: &AuthServer) -> Value {
    Value::map([
        ("ID", Value::String(s.id.to_string())),
        ("CreatedAt", time_value(s.created_at)),
        ("UpdatedAt", time_value(s.updated_at)),
        ("Name", Value::String(s.name.clone())),
        ("Description", Value::String(s.description.clone())),
        ("Audience", Value::String(s.audience.clone())),
        (
            "SigningAlgorithm",
            Value::String(s.signing_algorithm.as_str().to_owned()),
        ),
        ("Labels", labels_value(&s.labels)),
    ])
}

/// `.Client` of the template context.
pub fn client_template_ctx(c: &Client) -> Value {
    let strings = |v: &[String]| Value::List(v.iter().map(|s| Value::String(s.clone())).collect());
    Value::map([
        ("ID", Value::String(c.id.clone())),
        ("CreatedAt", time_value(c.created_at)),
        ("UpdatedAt", time_value(c.updated_at)),
        ("Name", Value::String(c.name.clone())),
        ("Labels", labels_value(&c.labels)),
        (
            "GrantTypes",
            Value::List(
                c.grant_types
                    .iter()
                    .map(|g| Value::String(g.as_str().to_owned()))
                    .collect(),
            ),
        ),
        ("RedirectURIs", strings(&c.redirect_uris)),
        (
            "LoginURI",
            Value::String(c.login_uri.clone().unwrap_or_default()),
        ),
        (
            "ResponseTypes",
            Value::List(
                c.response_types
                    .iter()
                    .map(|g| Value::String(g.as_str().to_owned()))
                    .collect(),
            ),
        ),
        ("AllowAllScopes", Value::Bool(c.allow_all_scopes)),
    ])
}

/// The whole template context for a client of an auth server.
pub fn template_ctx(server: &Value, client: &Value) -> Value {
    Value::map([("AuthServer", server.clone()), ("Client", client.clone())])
}

impl ServerRuntime {
    /// Whether `claim` goes into a token (or userinfo) given the granted scope ids and whether
    /// any scope was requested (spec §2.5).
    fn claim_applies(claim: &Claim, granted: &[Uuid], requested_any: bool) -> bool {
        if claim.include_in_all_scopes {
            true
        } else if !claim.include_in_scopes.is_empty() {
            claim.include_in_scopes.iter().any(|s| granted.contains(s))
        } else {
            !requested_any
        }
    }

    /// Renders the claims for a grant into `out`; `in_token` picks token or userinfo claims.
    fn render_claims(
        &self,
        client: &ClientRuntime,
        granted: &[Uuid],
        requested_any: bool,
        in_token: bool,
        out: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), OAuthError> {
        let mut ctx = None;
        for c in &self.claims {
            let claim = &c.claim;
            if !claim.enabled
                || claim.include_in_token != in_token
                || !Self::claim_applies(claim, granted, requested_any)
            {
                continue;
            }
            let ctx =
                ctx.get_or_insert_with(|| template_ctx(&self.template_ctx, &client.template_ctx));
            let value = c.template.render(ctx).map_err(|e| {
                // Fail closed: a token missing a claim could widen what it grants downstream.
                tracing::error!(auth_server = %self.server.id, claim = %claim.name, error = %e, "claim template failed to render");
                OAuthError::ServerError
            })?;
            out.insert(claim.name.clone(), value);
        }
        Ok(())
    }
}

/// A token that passed signature and issuer checks.
pub struct VerifiedToken {
    /// Issuing auth server.
    pub auth_server_id: Uuid,
    /// `jti`.
    pub jti: Uuid,
    /// `client_id`.
    pub client_id: String,
    /// `exp`, Unix seconds.
    pub exp: i64,
    /// `nbf`, Unix seconds.
    pub nbf: i64,
    /// The RFC 7662 answer while the token is live: `active`, `token_type`, then every claim
    /// of the payload. Built once per verified token and shared, so an introspection (over
    /// HTTP or in-process from the gateway) neither re-parses nor copies the claims.
    pub introspection: Arc<serde_json::Map<String, serde_json::Value>>,
}

impl VerifiedToken {
    /// A claim of the token's payload (`active` and `token_type` are reserved names, never
    /// claims).
    pub fn claim(&self, name: &str) -> Option<&serde_json::Value> {
        self.introspection.get(name)
    }
}

/// Writes issued tokens in batches: each request waits for the commit that contains its token,
/// but many tokens share one transaction.
#[derive(Clone)]
pub struct TokenWriter {
    tx: mpsc::Sender<(IssuedToken, oneshot::Sender<Recorded>)>,
}

/// Whether an issued token was recorded, and so may be handed out; if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Committed.
    Yes,
    /// The token's client no longer exists in the store: deleted, on this node or another,
    /// after the request was authenticated.
    ClientGone,
    /// The database is unavailable; the cause is logged.
    Unavailable,
    /// The store failed; the cause is logged.
    Failed,
}

/// The answer to a client that cannot be authenticated, whatever the reason.
fn bad_client() -> OAuthError {
    OAuthError::InvalidClient("client authentication failed".into())
}

/// Most tokens one commit carries.
const MAX_BATCH: usize = 1024;

impl TokenWriter {
    /// Starts the writer task.
    pub fn spawn(store: SharedStore) -> Self {
        let (tx, mut rx) = mpsc::channel::<(IssuedToken, oneshot::Sender<Recorded>)>(8192);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let tokens: Vec<IssuedToken> = batch.iter().map(|(t, _)| t.clone()).collect();
                let outcomes = record_batch(&store, &tokens).await;
                for ((_, done), outcome) in batch.drain(..).zip(outcomes) {
                    let _ = done.send(outcome);
                }
            }
        });
        Self { tx }
    }

    /// Records a token; [`Recorded::Yes`] once it is committed.
    pub async fn record(&self, token: IssuedToken) -> Recorded {
        let (done, wait) = oneshot::channel();
        if self.tx.send((token, done)).await.is_err() {
            return Recorded::Failed;
        }
        wait.await.unwrap_or(Recorded::Failed)
    }
}

/// Commits `tokens` in one transaction, and when a row of it is refused (a client deleted by
/// another node since its request was authenticated), each token on its own, so that one
/// client's refusal is that client's alone: the batch's other tokens are recorded and issued.
/// One outcome per token, in order.
async fn record_batch(store: &SharedStore, tokens: &[IssuedToken]) -> Vec<Recorded> {
    let refused = |e: &StoreError| matches!(e, StoreError::NotFound | StoreError::Conflict);
    match store.insert_tokens(tokens).await {
        Ok(()) => vec![Recorded::Yes; tokens.len()],
        Err(e) if refused(&e) && tokens.len() > 1 => {
            let mut outcomes = Vec::with_capacity(tokens.len());
            for token in tokens {
                outcomes.push(
                    match store.insert_tokens(std::slice::from_ref(token)).await {
                        Ok(()) => Recorded::Yes,
                        Err(e) => single_failure(token, &e),
                    },
                );
            }
            outcomes
        }
        Err(e) if tokens.len() == 1 => vec![single_failure(&tokens[0], &e)],
        Err(e) => {
            // The database itself failed: retrying row by row would only wait longer.
            tracing::error!(error = %e, count = tokens.len(), "recording issued tokens failed");
            let outcome = match e {
                StoreError::Unavailable(_) => Recorded::Unavailable,
                _ => Recorded::Failed,
            };
            vec![outcome; tokens.len()]
        }
    }
}

fn single_failure(token: &IssuedToken, e: &StoreError) -> Recorded {
    if let StoreError::Unavailable(_) = e {
        tracing::error!(error = %e, "recording an issued token failed");
        return Recorded::Unavailable;
    }
    if matches!(e, StoreError::NotFound) {
        tracing::info!(
            auth_server = %token.auth_server_id,
            client_id = %token.client_id,
            "token not issued: the client was deleted after its request was authenticated",
        );
        Recorded::ClientGone
    } else {
        tracing::error!(
            error = %e,
            auth_server = %token.auth_server_id,
            client_id = %token.client_id,
            "recording an issued token failed",
        );
        Recorded::Failed
    }
}

struct Servers {
    by_slug: HashMap<String, Arc<ServerRuntime>>,
    by_id: HashMap<Uuid, Arc<ServerRuntime>>,
}

/// A successful token response.
#[derive(Debug, serde::Serialize)]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until expiry.
    pub expires_in: i64,
    /// Granted scopes, space-separated; absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The identity server's shared state.
pub struct Identity {
    store: SharedStore,
    master: MasterKey,
    public_url: String,
    servers: ArcSwap<Servers>,
    reload_lock: tokio::sync::Mutex<()>,
    revoked: RwLock<HashMap<Uuid, Timestamp>>,
    secrets: Arc<VerifiedSecrets>,
    verified: quick_cache::sync::Cache<[u8; 32], Arc<VerifiedToken>>,
    writer: TokenWriter,
    // PBKDF2 runs on blocking threads; bound how many at once so bad secrets cannot starve
    // the machine.
    hash_permits: Semaphore,
    /// Failed client authentications per address.
    throttle: AuthThrottle,
    /// Bumped after every change that can end a token's life early; see
    /// [`Identity::invalidation_epoch`].
    epoch: AtomicU64,
}

/// The RFC 7662 answer for a token that is not live, `{"active": false}`: one map, shared.
pub fn inactive_introspection() -> Arc<serde_json::Map<String, serde_json::Value>> {
    static INACTIVE: std::sync::LazyLock<Arc<serde_json::Map<String, serde_json::Value>>> =
        std::sync::LazyLock::new(|| {
            let mut answer = serde_json::Map::with_capacity(1);
            answer.insert("active".into(), false.into());
            Arc::new(answer)
        });
    INACTIVE.clone()
}

/// SHA-256 of a token: the only form in which tokens are used as keys.
pub fn token_hash(token: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Identity {
    /// Loads every auth server and the revoked-token set, and starts the token writer, with
    /// the default throttling of failed client authentications.
    pub async fn load(
        store: SharedStore,
        master: MasterKey,
        public_url: &str,
    ) -> Result<Arc<Self>, RuntimeError> {
        Self::load_with(store, master, public_url, ThrottleConfig::default()).await
    }

    /// [`Identity::load`] with failed client authentications throttled as `throttle` says.
    pub async fn load_with(
        store: SharedStore,
        master: MasterKey,
        public_url: &str,
        throttle: ThrottleConfig,
    ) -> Result<Arc<Self>, RuntimeError> {
        let me = Self::new(store, master, public_url, throttle);
        me.reload_all().await?;
        me.refresh_revoked().await?;
        Ok(me)
    }

    /// An identity server that serves nothing until [`Identity::install`] or
    /// [`Identity::reload_all`], with its token writer started.
    pub fn new(
        store: SharedStore,
        master: MasterKey,
        public_url: &str,
        throttle: ThrottleConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            writer: TokenWriter::spawn(store.clone()),
            store,
            master,
            public_url: public_url.trim_end_matches('/').to_owned(),
            servers: ArcSwap::from_pointee(Servers {
                by_slug: HashMap::new(),
                by_id: HashMap::new(),
            }),
            reload_lock: tokio::sync::Mutex::new(()),
            revoked: RwLock::new(HashMap::new()),
            secrets: Arc::new(VerifiedSecrets::default()),
            verified: quick_cache::sync::Cache::new(100_000),
            hash_permits: Semaphore::new(2),
            throttle: AuthThrottle::new(throttle),
            epoch: AtomicU64::new(0),
        })
    }

    /// The store.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// The master key.
    pub fn master_key(&self) -> &MasterKey {
        &self.master
    }

    /// The issuer URL of a slug.
    pub fn issuer_url(&self, slug: &str) -> String {
        format!("{}/{slug}", self.public_url)
    }

    /// An auth server's runtime by issuer slug.
    pub fn by_slug(&self, slug: &str) -> Option<Arc<ServerRuntime>> {
        self.servers.load().by_slug.get(slug).cloned()
    }

    /// An auth server's runtime by id.
    pub fn by_id(&self, id: Uuid) -> Option<Arc<ServerRuntime>> {
        self.servers.load().by_id.get(&id).cloned()
    }

    /// Rebuilds every auth server's snapshot from storage.
    pub async fn reload_all(&self) -> Result<(), RuntimeError> {
        let _guard = self.reload_lock.lock().await;
        let records = self.store.auth_server_records().await?;
        self.install_servers(records.into_iter().map(Arc::new))
    }

    /// Serves `records` (every auth server) and `revoked` (`(jti, expires_at)` of revoked
    /// tokens), replacing what was served: how a node that starts without its database serves
    /// its cached configuration.
    pub fn install(
        &self,
        records: impl IntoIterator<Item = Arc<AuthServerRecord>>,
        revoked: impl IntoIterator<Item = (Uuid, Timestamp)>,
    ) -> Result<(), RuntimeError> {
        self.install_servers(records)?;
        *self.revoked.write() = revoked.into_iter().collect();
        self.invalidate();
        Ok(())
    }

    fn install_servers(
        &self,
        records: impl IntoIterator<Item = Arc<AuthServerRecord>>,
    ) -> Result<(), RuntimeError> {
        let mut by_slug = HashMap::new();
        let mut by_id = HashMap::new();
        for record in records {
            let rt = Arc::new(self.build(record)?);
            by_slug.insert(rt.server.issuer_slug.clone(), rt.clone());
            by_id.insert(rt.server.id, rt);
        }
        self.servers.store(Arc::new(Servers { by_slug, by_id }));
        self.forget_stale_secrets();
        self.invalidate();
        Ok(())
    }

    /// What every served auth server was built from, ordered by id.
    pub fn records(&self) -> Vec<Arc<AuthServerRecord>> {
        let mut records: Vec<_> = self
            .servers
            .load()
            .by_id
            .values()
            .map(|s| s.record.clone())
            .collect();
        records.sort_by_key(|r| r.server.id);
        records
    }

    /// The revoked tokens not yet expired that this node knows: `(jti, expires_at)`, ordered
    /// by jti.
    pub fn revoked(&self) -> Vec<(Uuid, Timestamp)> {
        let mut revoked: Vec<_> = self.revoked.read().iter().map(|(k, v)| (*k, *v)).collect();
        revoked.sort_unstable();
        revoked
    }

    /// Rebuilds one auth server's snapshot (or drops it if it was deleted). Call after every
    /// write that touches it.
    pub async fn reload(&self, id: Uuid) -> Result<(), RuntimeError> {
        let _guard = self.reload_lock.lock().await;
        let fresh = match self.store.auth_server_record(id).await? {
            Some(record) => Some(Arc::new(self.build(Arc::new(record))?)),
            None => None,
        };
        let current = self.servers.load();
        let mut by_slug = current.by_slug.clone();
        let mut by_id = current.by_id.clone();
        if let Some(old) = by_id.remove(&id) {
            by_slug.remove(&old.server.issuer_slug);
        }
        if let Some(rt) = fresh {
            by_slug.insert(rt.server.issuer_slug.clone(), rt.clone());
            by_id.insert(id, rt);
        }
        self.servers.store(Arc::new(Servers { by_slug, by_id }));
        self.forget_stale_secrets();
        self.invalidate();
        Ok(())
    }

    fn forget_stale_secrets(&self) {
        let servers = self.servers.load();
        let live: std::collections::HashSet<Uuid> = servers
            .by_id
            .values()
            .flat_map(|s| s.clients.values())
            .flat_map(|c| c.secrets.iter().map(|(id, _)| *id))
            .collect();
        self.secrets.retain(|id| live.contains(id));
    }

    fn build(&self, record: Arc<AuthServerRecord>) -> Result<ServerRuntime, RuntimeError> {
        let server = record.server.clone();
        let id = server.id;
        let issuer = self.issuer_url(&server.issuer_slug);
        let now = Timestamp::now();
        let mut keys = HashMap::new();
        let mut signing_key = None;
        for stored in &record.signing_keys {
            if let Some(retired) = stored.retired_at
                && retired.plus_seconds(RETIRED_KEY_GRACE_SECS) < now
            {
                continue;
            }
            let key = Arc::new(LoadedKey::unseal(&self.master, stored)?);
            if stored.retired_at.is_none() && signing_key.is_none() {
                signing_key = Some(key.clone());
            }
            keys.insert(key.id, key);
        }
        let signing_key = signing_key.ok_or(RuntimeError::NoKey(id))?;
        let scopes: HashMap<String, Scope> = record
            .scopes
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        let mut claims = Vec::new();
        for claim in &record.claims {
            match Template::parse(&claim.value) {
                Ok(template) => claims.push(CompiledClaim {
                    claim: claim.clone(),
                    template,
                }),
                // Values are checked when written; one that no longer parses (an older
                // version accepted it) is left out rather than taking the server down.
                Err(e) => {
                    tracing::error!(auth_server = %id, claim = %claim.name, error = %e, "stored claim template does not parse; skipped")
                }
            }
        }
        let mut secrets_by_client: HashMap<String, Vec<(Uuid, String)>> = HashMap::new();
        for s in &record.secrets {
            if s.enabled {
                secrets_by_client
                    .entry(s.client_id.clone())
                    .or_default()
                    .push((s.id, s.hash.clone()));
            }
        }
        let clients = record
            .clients
            .iter()
            .map(|c| {
                let secrets = secrets_by_client.remove(&c.id).unwrap_or_default();
                let template_ctx = client_template_ctx(c);
                (
                    c.id.clone(),
                    ClientRuntime {
                        client: c.clone(),
                        secrets,
                        template_ctx,
                    },
                )
            })
            .collect();
        let mut published: Vec<&Arc<LoadedKey>> = keys.values().collect();
        published.sort_by_key(|k| (k.retired_at.is_some(), k.id));
        let jwks = serde_json::json!({"keys": published.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        let discovery = discovery_document(&issuer, &server, &scopes);
        Ok(ServerRuntime {
            template_ctx: server_template_ctx(&server),
            record,
            server,
            issuer,
            scopes,
            claims,
            clients,
            signing_key,
            keys,
            jwks: Bytes::from(jwks.to_string()),
            discovery: Bytes::from(discovery.to_string()),
        })
    }

    /// Authenticates a client of `server` by id and secret. `peer` is the caller's address
    /// (`None` in process): its failures are throttled ([`crate::throttle`]), and an unknown
    /// id costs the same PBKDF2 work as a wrong secret.
    pub async fn authenticate<'a>(
        &self,
        server: &'a ServerRuntime,
        client_id: &str,
        secret: &str,
        peer: Option<IpAddr>,
    ) -> Result<&'a ClientRuntime, OAuthError> {
        let bad = bad_client;
        let client = server.clients.get(client_id);
        if let Some(client) = client {
            if client.client.token_endpoint_auth_method == TokenEndpointAuthMethod::None {
                return Err(OAuthError::UnauthorizedClient(
                    "public clients cannot authenticate with a secret".into(),
                ));
            }
            // Fast path: a secret that verified before (never throttled).
            if client
                .secrets
                .iter()
                .any(|(id, _)| self.secrets.cached(*id, secret) == Some(true))
            {
                return Ok(client);
            }
        }
        if let Some(ip) = peer {
            self.throttle
                .check(ip, Instant::now())
                .map_err(OAuthError::Throttled)?;
        }
        let _permit = self
            .hash_permits
            .acquire()
            .await
            .map_err(|_| OAuthError::ServerError)?;
        let verified = match client {
            Some(client) => {
                let mut ok = false;
                for (id, hash) in &client.secrets {
                    let (id, hash, presented) = (*id, hash.clone(), secret.to_owned());
                    let secrets = self.secrets.clone();
                    ok = tokio::task::spawn_blocking(move || secrets.check(id, &hash, &presented))
                        .await
                        .map_err(|_| OAuthError::ServerError)?;
                    if ok {
                        break;
                    }
                }
                ok.then_some(client)
            }
            None => {
                // The same work as a wrong secret, so that the time taken does not tell which
                // client ids exist.
                let presented = secret.to_owned();
                tokio::task::spawn_blocking(move || {
                    crate::secrets::verify(&presented, crate::secrets::decoy_hash())
                })
                .await
                .map_err(|_| OAuthError::ServerError)?;
                None
            }
        };
        match verified {
            Some(client) => Ok(client),
            None => {
                if let Some(ip) = peer {
                    self.throttle.failed(ip, Instant::now());
                }
                Err(bad())
            }
        }
    }

    /// The client_credentials grant: checks the grant and scopes, renders claims, signs the
    /// JWT, records it durably, and returns the response.
    pub async fn client_credentials(
        &self,
        server: &ServerRuntime,
        client: &ClientRuntime,
        scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let c = &client.client;
        if !c.grant_types.contains(&GrantType::ClientCredentials) {
            return Err(OAuthError::UnauthorizedClient(
                "the client is not allowed the client_credentials grant".into(),
            ));
        }
        let allowed =
            |s: &Scope| s.enabled && (c.allow_all_scopes || c.allow_scopes.contains(&s.id));
        let mut granted: Vec<&Scope> = Vec::new();
        let requested: Vec<&str> = scope
            .map(|s| s.split(' ').filter(|p| !p.is_empty()).collect())
            .unwrap_or_default();
        for name in &requested {
            match server.scopes.get(*name) {
                Some(s) if allowed(s) => {
                    if !granted.iter().any(|g| g.id == s.id) {
                        granted.push(s);
                    }
                }
                _ => {
                    return Err(OAuthError::InvalidScope(format!(
                        "the scope '{name}' is unknown, disabled or not allowed for this client"
                    )));
                }
            }
        }
        let mut defaults: Vec<&Scope> = server
            .scopes
            .values()
            .filter(|s| s.default && allowed(s) && !granted.iter().any(|g| g.id == s.id))
            .collect();
        defaults.sort_by_key(|s| (s.created_at, s.id));
        granted.extend(defaults);
        let granted_ids: Vec<Uuid> = granted.iter().map(|s| s.id).collect();
        let granted_names: Vec<String> = granted.iter().map(|s| s.name.clone()).collect();
        let scope_str = granted_names.join(" ");

        let now = Timestamp::now();
        let iat = now.unix_seconds();
        let exp = iat + c.access_token_duration;
        let jti = Uuid::now_v7();
        let mut claims = serde_json::Map::new();
        claims.insert("aud".into(), serde_json::json!([server.server.audience]));
        claims.insert("client_id".into(), c.id.clone().into());
        claims.insert("exp".into(), exp.into());
        claims.insert("iat".into(), iat.into());
        claims.insert("iss".into(), server.issuer.clone().into());
        claims.insert("jti".into(), jti.to_string().into());
        claims.insert("nbf".into(), iat.into());
        claims.insert("scope".into(), scope_str.clone().into());
        claims.insert("sub".into(), c.id.clone().into());
        server.render_claims(
            client,
            &granted_ids,
            !requested.is_empty(),
            true,
            &mut claims,
        )?;
        let token =
            jwt::sign(&server.signing_key, &serde_json::Value::Object(claims)).map_err(|e| {
                // A claim set too long to be read back is the auth server's configuration,
                // not the client's doing: say which server, and issue nothing.
                tracing::error!(
                    auth_server = %server.server.id,
                    client_id = %c.id,
                    error = %e,
                    "signing failed",
                );
                OAuthError::ServerError
            })?;
        let record = IssuedToken {
            id: jti,
            auth_server_id: server.server.id,
            client_id: c.id.clone(),
            granted_scope_names: granted_names,
            created_at: now,
            expires_at: Timestamp::from_unix_seconds(exp),
            revoked_at: None,
        };
        match self.writer.record(record).await {
            Recorded::Yes => {}
            // As for any client that does not exist: the token is not handed out.
            Recorded::ClientGone => return Err(bad_client()),
            Recorded::Unavailable => return Err(OAuthError::Unavailable),
            Recorded::Failed => return Err(OAuthError::ServerError),
        }
        Ok(TokenResponse {
            access_token: token,
            token_type: "Bearer",
            expires_in: c.access_token_duration,
            scope: (!scope_str.is_empty()).then_some(scope_str),
        })
    }

    /// Checks an access token of `server`: signature by a published key, issuer, time window,
    /// revocation, and that its client still exists. `None` for anything else.
    pub fn verify(&self, server: &ServerRuntime, token: &str) -> Option<Arc<VerifiedToken>> {
        self.verify_hashed(server, token, &token_hash(token))
    }

    /// [`Identity::verify`] for a caller that already has the token's [`token_hash`] (the
    /// gateway's cache key is the same digest): the key of the verification cache.
    pub fn verify_hashed(
        &self,
        server: &ServerRuntime,
        token: &str,
        hash: &[u8; 32],
    ) -> Option<Arc<VerifiedToken>> {
        let now = Timestamp::now().unix_seconds();
        let (verified, cached) = match self.verified.get(hash) {
            Some(v) => (v, true),
            None => (Arc::new(self.verify_uncached(server, token)?), false),
        };
        let keep = self.may_keep(&verified, now);
        let live = keep
            && verified.auth_server_id == server.server.id
            && verified.nbf <= now + 5
            && server.clients.contains_key(&verified.client_id);
        // The cache holds live tokens only: a revoked or expired token's verification is of no
        // further use, and keeping it would grow memory with every token ever checked.
        if !cached && live {
            self.verified.insert(*hash, verified.clone());
        } else if cached && !keep {
            self.verified.remove(hash);
        }
        live.then_some(verified)
    }

    /// Whether a verification is still worth caching: unexpired and not revoked.
    fn may_keep(&self, v: &VerifiedToken, now: i64) -> bool {
        v.exp > now && !self.revoked.read().contains_key(&v.jti)
    }

    /// Drops the cached verifications of tokens that expired or were revoked (here, on another
    /// node, or all of a client's at once) and were not presented again. Maintenance runs it
    /// every minute.
    pub fn forget_dead_verifications(&self) {
        let now = Timestamp::now().unix_seconds();
        self.verified.retain(|_, v| self.may_keep(v, now));
    }

    /// How many token verifications are cached (live tokens recently presented).
    pub fn cached_verifications(&self) -> usize {
        self.verified.len()
    }

    fn verify_uncached(&self, server: &ServerRuntime, token: &str) -> Option<VerifiedToken> {
        let parsed = jwt::parse(token)?;
        let key = server.keys.get(&parsed.kid)?;
        if !key.verify(
            parsed.alg,
            parsed.signing_input.as_bytes(),
            &parsed.signature,
        ) {
            return None;
        }
        let c = &parsed.claims;
        if c.get("iss")?.as_str()? != server.issuer {
            return None;
        }
        let jti = Uuid::parse_str(c.get("jti")?.as_str()?).ok()?;
        let client_id = c.get("client_id")?.as_str()?.to_owned();
        let exp = c.get("exp")?.as_i64()?;
        let nbf = c.get("nbf").and_then(|n| n.as_i64()).unwrap_or(0);
        let mut introspection = serde_json::Map::with_capacity(parsed.claims.len() + 2);
        introspection.insert("active".into(), true.into());
        introspection.insert("token_type".into(), "Bearer".into());
        for (k, val) in parsed.claims {
            // Reserved names (RESERVED_CLAIM_NAMES): a token of ours never carries them as
            // claims, and a forged one fails the signature check before this point.
            if k != "active" && k != "token_type" {
                introspection.insert(k, val);
            }
        }
        Some(VerifiedToken {
            auth_server_id: server.server.id,
            jti,
            client_id,
            exp,
            nbf,
            introspection: Arc::new(introspection),
        })
    }

    /// RFC 7662 answer for `token`, whose [`token_hash`] is `hash` (the caller's to compute: the
    /// gateway has it already), when it is live: `active: true` and its claims, shared with the
    /// verification cache. `None` means [`inactive_introspection`].
    pub fn introspect(
        &self,
        server: &ServerRuntime,
        token: &str,
        hash: &[u8; 32],
    ) -> Option<Arc<serde_json::Map<String, serde_json::Value>>> {
        self.verify_hashed(server, token, hash)
            .map(|v| v.introspection.clone())
    }

    /// Claims with `include_in_token: false` for a live token (`/userinfo`).
    pub fn userinfo(
        &self,
        server: &ServerRuntime,
        token: &str,
    ) -> Result<serde_json::Value, OAuthError> {
        let v = self.verify(server, token).ok_or_else(|| {
            OAuthError::InvalidToken("the access token is invalid or has expired".into())
        })?;
        let client = server
            .clients
            .get(&v.client_id)
            .ok_or_else(|| OAuthError::InvalidToken("the client no longer exists".into()))?;
        let scope = v.claim("scope").and_then(|s| s.as_str()).unwrap_or("");
        let granted: Vec<Uuid> = scope
            .split(' ')
            .filter_map(|n| server.scopes.get(n).map(|s| s.id))
            .collect();
        let mut out = serde_json::Map::new();
        out.insert("sub".into(), v.client_id.clone().into());
        // "Requested" is not recorded in the token; an empty granted set stands for it.
        server.render_claims(client, &granted, !granted.is_empty(), false, &mut out)?;
        Ok(serde_json::Value::Object(out))
    }

    /// Marks a token revoked in memory (after the store recorded it).
    pub fn mark_revoked(&self, jti: Uuid, expires_at: Timestamp) {
        self.revoked.write().insert(jti, expires_at);
        self.invalidate();
    }

    /// A counter that moves after every change that can make an active token inactive before
    /// its `exp`: a revocation (here, or another node's once read), and any rebuild of an auth
    /// server (a client deleted or disabled, a key retired). The change is visible to
    /// [`Identity::verify`] before the counter moves, so a cache of this server's answers
    /// (the gateway's `oauth2-introspection`, whatever its `ttl`) that asks again whenever
    /// the counter differs from when it stored an answer never serves a revoked token.
    pub fn invalidation_epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// RFC 7009 revocation by the client that holds the token. Unknown or invalid tokens are
    /// not an error (RFC 7009 §2.2).
    pub async fn revoke(
        &self,
        server: &ServerRuntime,
        client: &ClientRuntime,
        token: &str,
    ) -> Result<(), OAuthError> {
        let Some(parsed) = jwt::parse(token) else {
            return Ok(());
        };
        let Some(key) = server.keys.get(&parsed.kid) else {
            return Ok(());
        };
        if !key.verify(
            parsed.alg,
            parsed.signing_input.as_bytes(),
            &parsed.signature,
        ) {
            return Ok(());
        }
        let claims = &parsed.claims;
        if claims.get("client_id").and_then(|c| c.as_str()) != Some(client.client.id.as_str()) {
            return Err(OAuthError::UnauthorizedClient(
                "the token was not issued to this client".into(),
            ));
        }
        let Some(jti) = claims
            .get("jti")
            .and_then(|j| j.as_str())
            .and_then(|j| Uuid::parse_str(j).ok())
        else {
            return Ok(());
        };
        match self
            .store
            .revoke_token(server.server.id, jti, Timestamp::now())
            .await
        {
            Ok(Some(t)) => {
                self.mark_revoked(t.id, t.expires_at);
                // Its verification is of no further use (the revoked set answers for it): the
                // cache keeps live tokens, not every token ever revoked.
                self.verified.remove(&token_hash(token));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "revocation failed");
                Err(match e {
                    StoreError::Unavailable(_) => OAuthError::Unavailable,
                    _ => OAuthError::ServerError,
                })
            }
        }
    }

    /// Re-reads the revoked set from storage (picks up other nodes' revocations) and drops
    /// expired entries.
    pub async fn refresh_revoked(&self) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let fresh = self.store.revoked_tokens(now).await?;
        let mut set = self.revoked.write();
        set.retain(|_, exp| *exp > now);
        let before = set.len();
        for (jti, exp) in fresh {
            set.insert(jti, exp);
        }
        let learned = set.len() > before;
        drop(set);
        if learned {
            self.invalidate();
        }
        Ok(())
    }

    /// Background upkeep: forget dead verifications every minute, purge long-expired token
    /// records hourly. Runs until the process ends. (Other nodes' revocations and changes
    /// arrive through the change feed: see the [`ChangeSink`] implementation.)
    pub fn spawn_maintenance(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { break };
                n += 1;
                if n.is_multiple_of(12) {
                    me.forget_dead_verifications();
                }
                if n.is_multiple_of(720) {
                    let cutoff = Timestamp::now().plus_seconds(-86_400);
                    match me.store.purge_expired_tokens(cutoff).await {
                        Ok(k) if k > 0 => {
                            tracing::info!(purged = k, "expired token records purged")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "purging expired tokens failed"),
                    }
                }
            }
        });
    }
}

/// The identity server follows the change feed: a change to an auth server's configuration
/// (its clients, secrets, scopes, claims, keys) rebuilds that auth server, once per batch; a
/// revocation joins the revoked set. Either moves the [`Identity::invalidation_epoch`], so
/// every cached introspection answer is asked again.
#[async_trait::async_trait]
impl ChangeSink for Identity {
    async fn apply(&self, changes: &[Change]) -> Result<(), SinkError> {
        let mut servers: Vec<Uuid> = Vec::new();
        for c in changes {
            if c.kind.is_identity() && !servers.contains(&c.scope) {
                servers.push(c.scope);
            }
        }
        for id in servers {
            self.reload(id).await?;
        }
        for c in changes {
            if let (Some(jti), Some(exp)) = (c.revoked_jti(), c.expires_at) {
                self.mark_revoked(jti, exp);
            }
        }
        Ok(())
    }

    async fn resync(&self) -> Result<(), SinkError> {
        self.reload_all().await?;
        self.refresh_revoked().await?;
        Ok(())
    }
}

fn discovery_document(
    issuer: &str,
    server: &AuthServer,
    scopes: &HashMap<String, Scope>,
) -> serde_json::Value {
    let mut listed: Vec<&Scope> = scopes
        .values()
        .filter(|s| s.enabled && s.include_in_metadata)
        .collect();
    listed.sort_by_key(|s| (s.created_at, s.id));
    let auth_methods = ["client_secret_basic", "client_secret_post"];
    serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/.well-known/jwks"),
        "scopes_supported": listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        "response_types_supported": [],
        "grant_types_supported": ["client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [server.signing_algorithm.as_str()],
        "token_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "request_uri_parameter_supported": false,
    })
}
