//! Database rows and their conversion to and from domain types. Rows hold only types both
//! backends encode alike (text, 64-bit integers, booleans, bytes), so one set serves both.

use crate::{Result, StoreError};
use gatehouse_core::Timestamp;
use gatehouse_core::identity::{
    AuthServer, Claim, Client, ClientSecret, GrantType, IssuedToken, ResponseType, Scope,
    SigningAlgorithm, SigningKey, TokenEndpointAuthMethod,
};
use gatehouse_core::validation::Labels;
use uuid::Uuid;

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

pub(crate) fn uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| corrupt("uuid"))
}

fn json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|_| corrupt(what))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serialising strings, maps and vectors of strings cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

fn uuids(s: &str) -> Result<Vec<Uuid>> {
    let v: Vec<String> = json(s, "uuid list")?;
    v.iter().map(|s| uuid(s)).collect()
}

pub(crate) fn uuids_json(v: &[Uuid]) -> String {
    to_json(&v.iter().map(Uuid::to_string).collect::<Vec<_>>())
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuthServerRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub audience: String,
    pub signing_algorithm: String,
    pub labels: String,
    pub trusted_origins: String,
    pub issuer_slug: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<AuthServerRow> for AuthServer {
    type Error = StoreError;
    fn try_from(r: AuthServerRow) -> Result<Self> {
        Ok(AuthServer {
            id: uuid(&r.id)?,
            name: r.name,
            description: r.description,
            audience: r.audience,
            signing_algorithm: SigningAlgorithm::parse(&r.signing_algorithm)
                .ok_or_else(|| corrupt("signing_algorithm"))?,
            labels: json::<Labels>(&r.labels, "labels")?,
            trusted_origins: json(&r.trusted_origins, "trusted_origins")?,
            issuer_slug: r.issuer_slug,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ScopeRow {
    pub id: String,
    pub auth_server_id: String,
    pub name: String,
    pub description: String,
    pub is_default: bool,
    pub include_in_metadata: bool,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<ScopeRow> for Scope {
    type Error = StoreError;
    fn try_from(r: ScopeRow) -> Result<Self> {
        Ok(Scope {
            id: uuid(&r.id)?,
            auth_server_id: uuid(&r.auth_server_id)?,
            name: r.name,
            description: r.description,
            default: r.is_default,
            include_in_metadata: r.include_in_metadata,
            enabled: r.enabled,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ClaimRow {
    pub id: String,
    pub auth_server_id: String,
    pub name: String,
    pub value: String,
    pub include_in_token: bool,
    pub include_in_all_scopes: bool,
    pub include_in_scopes: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<ClaimRow> for Claim {
    type Error = StoreError;
    fn try_from(r: ClaimRow) -> Result<Self> {
        Ok(Claim {
            id: uuid(&r.id)?,
            auth_server_id: uuid(&r.auth_server_id)?,
            name: r.name,
            value: r.value,
            include_in_token: r.include_in_token,
            include_in_all_scopes: r.include_in_all_scopes,
            include_in_scopes: uuids(&r.include_in_scopes)?,
            enabled: r.enabled,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ClientRow {
    pub auth_server_id: String,
    pub id: String,
    pub name: String,
    pub grant_types: String,
    pub response_types: String,
    pub redirect_uris: String,
    pub login_uri: Option<String>,
    pub access_token_duration: i64,
    pub id_token_duration: i64,
    pub allow_all_scopes: bool,
    pub allow_scopes: String,
    pub labels: String,
    pub token_endpoint_auth_method: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<ClientRow> for Client {
    type Error = StoreError;
    fn try_from(r: ClientRow) -> Result<Self> {
        let grant_types: Vec<String> = json(&r.grant_types, "grant_types")?;
        let response_types: Vec<String> = json(&r.response_types, "response_types")?;
        Ok(Client {
            id: r.id,
            auth_server_id: uuid(&r.auth_server_id)?,
            name: r.name,
            grant_types: grant_types
                .iter()
                .map(|g| GrantType::parse(g).ok_or_else(|| corrupt("grant_types")))
                .collect::<Result<_>>()?,
            response_types: response_types
                .iter()
                .map(|g| ResponseType::parse(g).ok_or_else(|| corrupt("response_types")))
                .collect::<Result<_>>()?,
            redirect_uris: json(&r.redirect_uris, "redirect_uris")?,
            login_uri: r.login_uri,
            access_token_duration: r.access_token_duration,
            id_token_duration: r.id_token_duration,
            allow_all_scopes: r.allow_all_scopes,
            allow_scopes: uuids(&r.allow_scopes)?,
            labels: json(&r.labels, "labels")?,
            token_endpoint_auth_method: TokenEndpointAuthMethod::parse(
                &r.token_endpoint_auth_method,
            )
            .ok_or_else(|| corrupt("token_endpoint_auth_method"))?,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}

pub(crate) fn grant_types_json(c: &Client) -> String {
    to_json(&c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>())
}

pub(crate) fn response_types_json(c: &Client) -> String {
    to_json(
        &c.response_types
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>(),
    )
}

#[derive(sqlx::FromRow)]
pub(crate) struct SecretRow {
    pub id: String,
    pub auth_server_id: String,
    pub client_id: String,
    pub hash: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<SecretRow> for ClientSecret {
    type Error = StoreError;
    fn try_from(r: SecretRow) -> Result<Self> {
        Ok(ClientSecret {
            id: uuid(&r.id)?,
            auth_server_id: uuid(&r.auth_server_id)?,
            client_id: r.client_id,
            hash: r.hash,
            enabled: r.enabled,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    pub id: String,
    pub auth_server_id: String,
    pub client_id: String,
    pub granted_scope_names: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl TryFrom<TokenRow> for IssuedToken {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<Self> {
        Ok(IssuedToken {
            id: uuid(&r.id)?,
            auth_server_id: uuid(&r.auth_server_id)?,
            client_id: r.client_id,
            granted_scope_names: json(&r.granted_scope_names, "granted_scope_names")?,
            created_at: Timestamp(r.created_at),
            expires_at: Timestamp(r.expires_at),
            revoked_at: r.revoked_at.map(Timestamp),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    pub id: String,
    pub auth_server_id: String,
    pub algorithm: String,
    pub encrypted_private_key: Vec<u8>,
    pub public_jwk: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl TryFrom<KeyRow> for SigningKey {
    type Error = StoreError;
    fn try_from(r: KeyRow) -> Result<Self> {
        Ok(SigningKey {
            id: uuid(&r.id)?,
            auth_server_id: uuid(&r.auth_server_id)?,
            algorithm: SigningAlgorithm::parse(&r.algorithm).ok_or_else(|| corrupt("algorithm"))?,
            encrypted_private_key: r.encrypted_private_key,
            public_jwk: r.public_jwk,
            created_at: Timestamp(r.created_at),
            retired_at: r.retired_at.map(Timestamp),
        })
    }
}

/// Converts every row, failing on the first corrupt one.
pub(crate) fn convert<R, T: TryFrom<R, Error = StoreError>>(rows: Vec<R>) -> Result<Vec<T>> {
    rows.into_iter().map(T::try_from).collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct ControlPlaneRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub labels: String,
    pub cluster_type: String,
    pub auth_type: String,
    pub cloud_gateway: bool,
    pub proxy_urls: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<ControlPlaneRow> for gatehouse_core::gateway::ControlPlane {
    type Error = StoreError;
    fn try_from(r: ControlPlaneRow) -> Result<Self> {
        Ok(Self {
            id: uuid(&r.id)?,
            name: r.name,
            description: r.description,
            labels: json(&r.labels, "labels")?,
            cluster_type: r.cluster_type,
            auth_type: r.auth_type,
            cloud_gateway: r.cloud_gateway,
            proxy_urls: json(&r.proxy_urls, "proxy_urls")?,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CoreEntityRow {
    pub control_plane_id: String,
    pub kind: String,
    pub id: String,
    pub endpoint_key: Option<String>,
    pub alt_key: Option<String>,
    pub service_id: Option<String>,
    pub route_id: Option<String>,
    pub consumer_id: Option<String>,
    pub certificate_id: Option<String>,
    pub created_at: i64,
    pub body: String,
}

fn opt_uuid(s: Option<String>) -> Result<Option<Uuid>> {
    s.map(|s| uuid(&s)).transpose()
}

impl TryFrom<CoreEntityRow> for gatehouse_core::gateway::CoreEntity {
    type Error = StoreError;
    fn try_from(r: CoreEntityRow) -> Result<Self> {
        Ok(Self {
            control_plane_id: uuid(&r.control_plane_id)?,
            kind: gatehouse_core::gateway::EntityKind::parse(&r.kind)
                .ok_or_else(|| corrupt("entity kind"))?,
            id: uuid(&r.id)?,
            endpoint_key: r.endpoint_key,
            alt_key: r.alt_key,
            service_id: opt_uuid(r.service_id)?,
            route_id: opt_uuid(r.route_id)?,
            consumer_id: opt_uuid(r.consumer_id)?,
            certificate_id: opt_uuid(r.certificate_id)?,
            created_at: r.created_at,
            body: json(&r.body, "entity body")?,
        })
    }
}
