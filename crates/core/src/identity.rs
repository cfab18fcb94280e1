//! Kong Identity entities: auth servers with their scopes, claims and clients; client secrets;
//! issued tokens; signing keys. Field meanings follow `spec/kong-identity.md` §2.
//!
//! The serde derives are the format of a node's configuration cache on disk (DESIGN.md §6),
//! not an API shape: the APIs render these types with their own functions.

use crate::Timestamp;
use crate::validation::Labels;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// JWS algorithms an auth server can sign with (Kong's six RSA ones plus ES256 and EdDSA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlgorithm {
    /// Every algorithm, in the order the API lists them.
    pub const ALL: [SigningAlgorithm; 8] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::EdDSA,
    ];

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }

    /// Parses a JOSE name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether keys for this algorithm are RSA keys (RSA keys serve all six RSA algorithms).
    pub fn is_rsa(self) -> bool {
        !matches!(self, Self::ES256 | Self::EdDSA)
    }

    /// The names, for error messages.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|a| a.as_str()).collect()
    }
}

/// An authorization server: issuer of tokens for one audience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthServer {
    /// Id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Becomes the JWT `aud` (as a one-element array).
    pub audience: String,
    /// The algorithm new tokens are signed with.
    pub signing_algorithm: SigningAlgorithm,
    /// Konnect labels.
    pub labels: Labels,
    /// Origins allowed to call the issuer endpoints from browsers (CORS).
    pub trusted_origins: Vec<String>,
    /// The random last segment of the issuer URL.
    pub issuer_slug: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last update.
    pub updated_at: Timestamp,
}

/// A scope clients may request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    /// Id.
    pub id: Uuid,
    /// Owning auth server.
    pub auth_server_id: Uuid,
    /// The string clients put in `scope=`; unique within the auth server.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Granted without being requested, when the client is allowed it.
    pub default: bool,
    /// Listed in discovery `scopes_supported`.
    pub include_in_metadata: bool,
    /// A disabled scope is never granted.
    pub enabled: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last update.
    pub updated_at: Timestamp,
}

/// A custom claim, static or templated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// Id.
    pub id: Uuid,
    /// Owning auth server.
    pub auth_server_id: Uuid,
    /// The JWT member name (case-sensitive).
    pub name: String,
    /// Static text or a `${ … }` template.
    pub value: String,
    /// Put in access tokens (else only served by `/userinfo`).
    pub include_in_token: bool,
    /// Included whatever scopes are granted.
    pub include_in_all_scopes: bool,
    /// Included when one of these scopes is granted; when empty (and not all scopes), included
    /// only when no scope was requested.
    pub include_in_scopes: Vec<Uuid>,
    /// A disabled claim goes nowhere.
    pub enabled: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last update.
    pub updated_at: Timestamp,
}

/// OAuth grant types a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 6749 §4.2 (accepted for compatibility; no interactive flow is served).
    Implicit,
}

impl GrantType {
    /// Wire names.
    pub const NAMES: [&'static str; 2] = ["client_credentials", "implicit"];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::Implicit => "implicit",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_credentials" => Some(Self::ClientCredentials),
            "implicit" => Some(Self::Implicit),
            _ => None,
        }
    }
}

/// Response types a client registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseType {
    /// `none`.
    None,
    /// `token`.
    Token,
    /// `code`.
    Code,
    /// `id_token`.
    IdToken,
}

impl ResponseType {
    /// Wire names.
    pub const NAMES: [&'static str; 4] = ["none", "token", "code", "id_token"];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Token => "token",
            Self::Code => "code",
            Self::IdToken => "id_token",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "token" => Some(Self::Token),
            "code" => Some(Self::Code),
            "id_token" => Some(Self::IdToken),
            _ => None,
        }
    }
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// Secret in the form body (Kong Identity's default); Basic is accepted too.
    ClientSecretPost,
    /// Secret in an HTTP Basic header; the form body is accepted too.
    ClientSecretBasic,
    /// A public client: cannot use `client_credentials` (RFC 6749 §4.4).
    None,
}

impl TokenEndpointAuthMethod {
    /// Wire names.
    pub const NAMES: [&'static str; 3] = ["client_secret_post", "client_secret_basic", "none"];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::None => "none",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_secret_post" => Some(Self::ClientSecretPost),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// Bounds of token lifetimes, seconds (60 s … 30 days).
pub const TOKEN_DURATION_MIN: i64 = 60;
/// Upper bound of token lifetimes, seconds.
pub const TOKEN_DURATION_MAX: i64 = 2_592_000;
/// Default token lifetime, seconds.
pub const TOKEN_DURATION_DEFAULT: i64 = 300;
/// At most this many enabled secrets per client.
pub const MAX_ENABLED_SECRETS: usize = 2;

/// An OAuth client of one auth server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    /// The OAuth `client_id` (generated, or chosen by the caller on PUT).
    pub id: String,
    /// Owning auth server.
    pub auth_server_id: Uuid,
    /// Unique name within the auth server.
    pub name: String,
    /// Allowed grants.
    pub grant_types: Vec<GrantType>,
    /// Registered response types.
    pub response_types: Vec<ResponseType>,
    /// Redirect URIs (interactive flows only).
    pub redirect_uris: Vec<String>,
    /// Login page (interactive flows only).
    pub login_uri: Option<String>,
    /// Access-token lifetime, seconds.
    pub access_token_duration: i64,
    /// ID-token lifetime, seconds.
    pub id_token_duration: i64,
    /// May request any scope of the auth server.
    pub allow_all_scopes: bool,
    /// Scope ids the client may request.
    pub allow_scopes: Vec<Uuid>,
    /// Konnect labels.
    pub labels: Labels,
    /// Token endpoint authentication.
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last update.
    pub updated_at: Timestamp,
}

/// A client secret; only its hash is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientSecret {
    /// Id.
    pub id: Uuid,
    /// Owning auth server.
    pub auth_server_id: Uuid,
    /// Owning client.
    pub client_id: String,
    /// The secret's PHC-style hash string.
    pub hash: String,
    /// A disabled secret cannot authenticate.
    pub enabled: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last update.
    pub updated_at: Timestamp,
}

/// A token the auth server issued (its JWT `jti`).
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedToken {
    /// The JWT `jti`.
    pub id: Uuid,
    /// Issuing auth server.
    pub auth_server_id: Uuid,
    /// The client it was issued to.
    pub client_id: String,
    /// Granted scope names.
    pub granted_scope_names: Vec<String>,
    /// Issue time.
    pub created_at: Timestamp,
    /// Expiry.
    pub expires_at: Timestamp,
    /// Set once revoked.
    pub revoked_at: Option<Timestamp>,
}

/// A signing key of an auth server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    /// The JWS `kid`.
    pub id: Uuid,
    /// Owning auth server.
    pub auth_server_id: Uuid,
    /// Algorithm the key signs with.
    pub algorithm: SigningAlgorithm,
    /// PKCS#8 private key, encrypted with the master key.
    pub encrypted_private_key: Vec<u8>,
    /// The public JWK as JSON text.
    pub public_jwk: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// When a newer key took over; the public key stays published while tokens may live.
    pub retired_at: Option<Timestamp>,
}

/// Everything stored about one auth server that its issuer endpoints serve from: what the
/// identity server builds an auth server's runtime from, whatever the source (the database,
/// or the on-disk copy of the last configuration a node applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthServerRecord {
    /// The auth server.
    pub server: AuthServer,
    /// Its signing keys, newest first (private keys sealed with the master key).
    pub signing_keys: Vec<SigningKey>,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Its claims, in creation order.
    pub claims: Vec<Claim>,
    /// Its clients.
    pub clients: Vec<Client>,
    /// Its clients' secrets (hashes only), enabled or not.
    pub secrets: Vec<ClientSecret>,
}
