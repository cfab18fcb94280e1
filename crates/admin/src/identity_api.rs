//! `/v1/auth-servers…`: Kong Identity's management API (spec `kong-identity.md` §2).
//!
//! Each handler validates its body into domain types with [`ObjectReader`] (so one answer
//! names every bad field), writes through the store, then rebuilds that auth server's runtime
//! snapshot so the issuer endpoints see the change on their next request.

use crate::AdminState;
use crate::list::{self, Allowed, EQ, TEXT};
use crate::problem::ApiError;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gatehouse_claim_template::Template;
use gatehouse_core::Timestamp;
use gatehouse_core::identity::*;
use gatehouse_core::list::ListQuery;
use gatehouse_core::validation::{InvalidParameter, Labels, ObjectReader, Problems};
use gatehouse_identity::runtime::{client_template_ctx, server_template_ctx, template_ctx};
use gatehouse_identity::{RESERVED_CLAIM_NAMES, keys, secrets};
use http::StatusCode;
use std::collections::BTreeMap;
use uuid::Uuid;

type ApiResult = Result<Response, ApiError>;

/// The routes, relative to the admin root.
pub fn routes() -> Router<AdminState> {
    let base = "/v1/auth-servers";
    Router::new()
        .route(base, get(list_servers).post(create_server))
        .route(
            &format!("{base}/{{as}}"),
            get(get_server).patch(patch_server).delete(delete_server),
        )
        .route(
            &format!("{base}/{{as}}/scopes"),
            get(list_scopes).post(create_scope),
        )
        .route(
            &format!("{base}/{{as}}/scopes/{{id}}"),
            get(get_scope).patch(patch_scope).delete(delete_scope),
        )
        .route(
            &format!("{base}/{{as}}/claims"),
            get(list_claims).post(create_claim),
        )
        .route(
            &format!("{base}/{{as}}/claims/{{id}}"),
            get(get_claim).patch(patch_claim).delete(delete_claim),
        )
        .route(
            &format!("{base}/{{as}}/clients"),
            get(list_clients).post(create_client),
        )
        .route(
            &format!("{base}/{{as}}/clients/{{client}}"),
            get(get_client)
                .patch(patch_client)
                .put(put_client)
                .delete(delete_client),
        )
        .route(
            &format!("{base}/{{as}}/clients/{{client}}/secrets"),
            get(list_secrets).post(create_secret),
        )
        .route(
            &format!("{base}/{{as}}/clients/{{client}}/secrets/{{id}}"),
            get(get_secret).patch(patch_secret).delete(delete_secret),
        )
        .route(
            &format!("{base}/{{as}}/clients/{{client}}/test-claim"),
            post(test_claim),
        )
        .route(
            &format!("{base}/{{as}}/clients/{{client}}/tokens"),
            get(list_tokens).delete(revoke_all_tokens),
        )
        .route(
            &format!("{base}/{{as}}/clients/{{client}}/tokens/{{id}}"),
            get(get_token).delete(revoke_token),
        )
}

/// A JSON body, with a problem+json answer for anything that is not JSON.
pub struct JsonBody(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = crate::read_body(req, state)
            .await
            .map_err(|(refusal, e)| match refusal {
                Some((status, message)) => ApiError::Refused(status, message.into()),
                None => ApiError::BadRequest(format!("the body could not be read: {e}")),
            })?;
        if bytes.is_empty() {
            return Err(ApiError::BadRequest("a JSON body is required".into()));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
    }
}

fn path_uuid(field: &str, s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| {
        let mut p = InvalidParameter::new(field, "is_uuid", "must be a UUID");
        p.source = Some("path");
        ApiError::Invalid(vec![p])
    })
}

fn created(v: serde_json::Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

fn ok(v: serde_json::Value) -> Response {
    Json(v).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Read-only members clients may echo back from a GET; accepted and ignored.
fn ignore_read_only(r: &mut ObjectReader, extra: &[&str]) {
    for k in ["id", "created_at", "updated_at"].iter().chain(extra) {
        r.ignore(k);
    }
}

pub(crate) fn apply_labels(
    current: &mut Labels,
    update: BTreeMap<String, Option<String>>,
    replace: bool,
) {
    if replace {
        current.clear();
    }
    for (k, v) in update {
        match v {
            Some(v) => {
                current.insert(k, v);
            }
            None => {
                current.remove(&k);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Auth servers

const SERVER_LIST: Allowed = Allowed {
    filters: &[
        ("name", TEXT),
        ("description", TEXT),
        ("audience", TEXT),
        ("id", EQ),
        ("labels", EQ),
    ],
    sorts: &["created_at", "updated_at", "name", "audience"],
};

fn render_server(state: &AdminState, s: &AuthServer) -> serde_json::Value {
    let issuer = state.identity.issuer_url(&s.issuer_slug);
    serde_json::json!({
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "audience": s.audience,
        "signing_algorithm": s.signing_algorithm.as_str(),
        "labels": s.labels,
        "trusted_origins": s.trusted_origins,
        "issuer": issuer,
        "metadata_uri": format!("{issuer}/.well-known/openid-configuration"),
        "jwks_uri": format!("{issuer}/.well-known/jwks"),
        "created_at": s.created_at,
        "updated_at": s.updated_at,
    })
}

fn read_algorithm(r: &mut ObjectReader) -> Option<SigningAlgorithm> {
    let s = r.string("signing_algorithm")?;
    match SigningAlgorithm::parse(&s) {
        Some(a) => Some(a),
        None => {
            r.problems.push(InvalidParameter::choices(
                "signing_algorithm",
                &SigningAlgorithm::names(),
            ));
            None
        }
    }
}

fn read_origins(r: &mut ObjectReader) -> Option<Vec<String>> {
    let origins = r.string_array("trusted_origins", true)?;
    if origins.len() > 16 {
        r.problems.push(InvalidParameter::new(
            "trusted_origins",
            "max_items",
            "must have at most 16 origins",
        ));
    }
    for (i, o) in origins.iter().enumerate() {
        let ok = url::Url::parse(o)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            r.problems.push(InvalidParameter::new(
                format!("trusted_origins[{i}]"),
                "is_uri",
                "must be an http(s) origin such as https://app.example.com",
            ));
        }
    }
    Some(origins)
}

async fn list_servers(State(state): State<AdminState>, RawQuery(raw): RawQuery) -> ApiResult {
    let q = list::parse(raw.as_deref(), &SERVER_LIST)?;
    let page = state
        .identity
        .store()
        .list_auth_servers(&q)
        .await
        .map_err(|e| ApiError::store(e, "an auth server"))?;
    Ok(ok(list::envelope(page, &q, |s| render_server(&state, s))))
}

async fn create_server(State(state): State<AdminState>, JsonBody(body): JsonBody) -> ApiResult {
    let mut r = ObjectReader::new(body)?;
    let name = r.required_string("name", 1, 255);
    let audience = r.required_string("audience", 1, 2048);
    let description = r.string_len("description", 0, 4096).unwrap_or_default();
    let algorithm = read_algorithm(&mut r).unwrap_or(SigningAlgorithm::RS256);
    let labels = r.labels("labels", false);
    let origins = read_origins(&mut r).unwrap_or_default();
    ignore_read_only(&mut r, &["issuer", "metadata_uri", "jwks_uri"]);
    r.finish()?;
    let (Some(name), Some(audience)) = (name, audience) else {
        return Err(ApiError::Internal);
    };
    let now = Timestamp::now();
    let id = Uuid::new_v4();
    let server = AuthServer {
        id,
        name,
        description,
        audience,
        signing_algorithm: algorithm,
        labels: labels
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
        trusted_origins: origins,
        issuer_slug: gatehouse_core::ids::issuer_slug(),
        created_at: now,
        updated_at: now,
    };
    let (key, _) = keys::generate(state.identity.master_key(), id, algorithm).map_err(|e| {
        tracing::error!(error = %e, "key generation failed");
        ApiError::Internal
    })?;
    state
        .identity
        .store()
        .create_auth_server(&server, &key)
        .await
        .map_err(|e| ApiError::store(e, "an auth server"))?;
    crate::sync::settle(&state).await;
    Ok(created(render_server(&state, &server)))
}

async fn load_server(state: &AdminState, id: &str) -> Result<AuthServer, ApiError> {
    let id = path_uuid("authServerId", id)?;
    state
        .identity
        .store()
        .get_auth_server(id)
        .await
        .map_err(|e| ApiError::store(e, "an auth server"))?
        .ok_or(ApiError::NotFound)
}

async fn get_server(State(state): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    let s = load_server(&state, &id).await?;
    Ok(ok(render_server(&state, &s)))
}

async fn patch_server(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let mut s = load_server(&state, &id).await?;
    let mut r = ObjectReader::new(body)?;
    if let Some(v) = r.string_len("name", 1, 255) {
        s.name = v;
    }
    if let Some(v) = r.string_len("audience", 1, 2048) {
        s.audience = v;
    }
    if let Some(v) = r.string_len("description", 0, 4096) {
        s.description = v;
    }
    let algorithm = read_algorithm(&mut r);
    if let Some(l) = r.labels("labels", true) {
        apply_labels(&mut s.labels, l, false);
    }
    if let Some(o) = read_origins(&mut r) {
        s.trusted_origins = o;
    }
    ignore_read_only(&mut r, &["issuer", "metadata_uri", "jwks_uri"]);
    r.finish()?;
    // A new algorithm gets a new key; the old public key stays in the JWKS while its tokens live.
    let new_key = match algorithm {
        Some(a) if a != s.signing_algorithm => {
            s.signing_algorithm = a;
            Some(
                keys::generate(state.identity.master_key(), s.id, a)
                    .map_err(|e| {
                        tracing::error!(error = %e, "key generation failed");
                        ApiError::Internal
                    })?
                    .0,
            )
        }
        _ => None,
    };
    let read = s.updated_at;
    s.updated_at = Timestamp::now();
    state
        .identity
        .store()
        .update_auth_server(&s, new_key.as_ref(), read)
        .await
        .map_err(|e| ApiError::store(e, "an auth server"))?;
    crate::sync::settle(&state).await;
    Ok(ok(render_server(&state, &s)))
}

async fn delete_server(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let id = path_uuid("authServerId", &id)?;
    let mut force = false;
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if k == "force" {
            force = match v.as_ref() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(InvalidParameter::choices("force", &["true", "false"])
                        .in_query()
                        .into());
                }
            };
        }
    }
    state
        .identity
        .store()
        .delete_auth_server(id, force)
        .await
        .map_err(|e| ApiError::store(e, "an auth server"))?;
    crate::sync::settle(&state).await;
    Ok(no_content())
}

// ---------------------------------------------------------------------------------------------
// Scopes

const SCOPE_LIST: Allowed = Allowed {
    filters: &[("name", TEXT), ("id", EQ), ("enabled", EQ)],
    sorts: &["created_at", "updated_at", "name"],
};

fn render_scope(s: &Scope) -> serde_json::Value {
    serde_json::json!({
        "id": s.id, "name": s.name, "description": s.description, "default": s.default,
        "include_in_metadata": s.include_in_metadata, "enabled": s.enabled,
        "created_at": s.created_at, "updated_at": s.updated_at,
    })
}

fn read_scope_fields(r: &mut ObjectReader, s: &mut Scope) {
    if let Some(v) = r.string_len("name", 1, 255) {
        if v.contains(' ') {
            r.problems.push(InvalidParameter::new(
                "name",
                "matches_regex",
                "scope names cannot contain spaces",
            ));
        }
        s.name = v;
    }
    if let Some(v) = r.string_len("description", 0, 4096) {
        s.description = v;
    }
    if let Some(v) = r.bool("default") {
        s.default = v;
    }
    if let Some(v) = r.bool("include_in_metadata") {
        s.include_in_metadata = v;
    }
    if let Some(v) = r.bool("enabled") {
        s.enabled = v;
    }
    ignore_read_only(r, &[]);
}

async fn list_scopes(
    State(state): State<AdminState>,
    Path(a): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let server = load_server(&state, &a).await?;
    let q = list::parse(raw.as_deref(), &SCOPE_LIST)?;
    let page = state
        .identity
        .store()
        .list_scopes(server.id, &q)
        .await
        .map_err(|e| ApiError::store(e, "a scope"))?;
    Ok(ok(list::envelope(page, &q, render_scope)))
}

async fn create_scope(
    State(state): State<AdminState>,
    Path(a): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let server = load_server(&state, &a).await?;
    let mut r = ObjectReader::new(body)?;
    if !r.has("name") {
        r.problems.push(InvalidParameter::required("name"));
    }
    let now = Timestamp::now();
    let mut s = Scope {
        id: Uuid::new_v4(),
        auth_server_id: server.id,
        name: String::new(),
        description: String::new(),
        default: false,
        include_in_metadata: false,
        enabled: true,
        created_at: now,
        updated_at: now,
    };
    read_scope_fields(&mut r, &mut s);
    r.finish()?;
    state
        .identity
        .store()
        .create_scope(&s)
        .await
        .map_err(|e| ApiError::store(e, "a scope"))?;
    crate::sync::settle(&state).await;
    Ok(created(render_scope(&s)))
}

async fn load_scope(state: &AdminState, a: &str, id: &str) -> Result<Scope, ApiError> {
    let server = load_server(state, a).await?;
    let id = path_uuid("scopeId", id)?;
    state
        .identity
        .store()
        .get_scope(server.id, id)
        .await
        .map_err(|e| ApiError::store(e, "a scope"))?
        .ok_or(ApiError::NotFound)
}

async fn get_scope(
    State(state): State<AdminState>,
    Path((a, id)): Path<(String, String)>,
) -> ApiResult {
    Ok(ok(render_scope(&load_scope(&state, &a, &id).await?)))
}

async fn patch_scope(
    State(state): State<AdminState>,
    Path((a, id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let mut s = load_scope(&state, &a, &id).await?;
    let mut r = ObjectReader::new(body)?;
    read_scope_fields(&mut r, &mut s);
    r.finish()?;
    let read = s.updated_at;
    s.updated_at = Timestamp::now();
    state
        .identity
        .store()
        .update_scope(&s, read)
        .await
        .map_err(|e| ApiError::store(e, "a scope"))?;
    crate::sync::settle(&state).await;
    Ok(ok(render_scope(&s)))
}

async fn delete_scope(
    State(state): State<AdminState>,
    Path((a, id)): Path<(String, String)>,
) -> ApiResult {
    let server = load_server(&state, &a).await?;
    let id = path_uuid("scopeId", &id)?;
    state
        .identity
        .store()
        .delete_scope(server.id, id)
        .await
        .map_err(|e| ApiError::store(e, "a scope"))?;
    crate::sync::settle(&state).await;
    Ok(no_content())
}

// ---------------------------------------------------------------------------------------------
// Claims

const CLAIM_LIST: Allowed = Allowed {
    filters: &[("name", TEXT), ("id", EQ), ("enabled", EQ)],
    sorts: &["created_at", "updated_at", "name"],
};

fn render_claim(c: &Claim) -> serde_json::Value {
    serde_json::json!({
        "id": c.id, "name": c.name, "value": c.value, "include_in_token": c.include_in_token,
        "include_in_all_scopes": c.include_in_all_scopes, "include_in_scopes": c.include_in_scopes,
        "enabled": c.enabled, "created_at": c.created_at, "updated_at": c.updated_at,
    })
}

/// Scope ids must exist in the auth server.
async fn check_scope_refs(
    state: &AdminState,
    server: Uuid,
    field: &str,
    ids: &[Uuid],
    problems: &mut Problems,
) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Ok(());
    }
    let scopes = state
        .identity
        .store()
        .all_scopes(server)
        .await
        .map_err(|e| ApiError::store(e, "a scope"))?;
    for (i, id) in ids.iter().enumerate() {
        if !scopes.iter().any(|s| s.id == *id) {
            problems.push(InvalidParameter::new(
                format!("{field}[{i}]"),
                "missing_reference",
                format!("no scope {id} in this auth server"),
            ));
        }
    }
    Ok(())
}

async fn read_claim(
    state: &AdminState,
    body: serde_json::Value,
    c: &mut Claim,
    creating: bool,
) -> Result<(), ApiError> {
    let mut r = ObjectReader::new(body)?;
    if creating {
        for k in ["name", "value"] {
            if !r.has(k) {
                r.problems.push(InvalidParameter::required(k));
            }
        }
    }
    if let Some(v) = r.string_len("name", 1, 255) {
        if RESERVED_CLAIM_NAMES.contains(&v.as_str()) {
            r.problems.push(InvalidParameter::new(
                "name",
                "invalid",
                format!("'{v}' is a registered claim the server sets itself"),
            ));
        }
        c.name = v;
    }
    if let Some(v) = r.string_len("value", 1, 16 * 1024) {
        if let Err(e) = Template::parse(&v) {
            r.problems.push(InvalidParameter::new(
                "value",
                "invalid",
                format!("the template of claim '{}' does not parse: {e}", c.name),
            ));
        }
        c.value = v;
    }
    if let Some(v) = r.bool("include_in_token") {
        c.include_in_token = v;
    }
    if let Some(v) = r.bool("include_in_all_scopes") {
        c.include_in_all_scopes = v;
    }
    if let Some(v) = r.bool("enabled") {
        c.enabled = v;
    }
    if let Some(v) = r.uuid_array("include_in_scopes") {
        c.include_in_scopes = v;
    }
    ignore_read_only(&mut r, &[]);
    check_scope_refs(
        state,
        c.auth_server_id,
        "include_in_scopes",
        &c.include_in_scopes,
        &mut r.problems,
    )
    .await?;
    r.finish()?;
    Ok(())
}

async fn list_claims(
    State(state): State<AdminState>,
    Path(a): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let server = load_server(&state, &a).await?;
    let q = list::parse(raw.as_deref(), &CLAIM_LIST)?;
    let page = state
        .identity
        .store()
        .list_claims(server.id, &q)
        .await
        .map_err(|e| ApiError::store(e, "a claim"))?;
    Ok(ok(list::envelope(page, &q, render_claim)))
}

async fn create_claim(
    State(state): State<AdminState>,
    Path(a): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let server = load_server(&state, &a).await?;
    let now = Timestamp::now();
    let mut c = Claim {
        id: Uuid::new_v4(),
        auth_server_id: server.id,
        name: String::new(),
        value: String::new(),
        include_in_token: false,
        include_in_all_scopes: false,
        include_in_scopes: vec![],
        enabled: true,
        created_at: now,
        updated_at: now,
    };
    read_claim(&state, body, &mut c, true).await?;
    state
        .identity
        .store()
        .create_claim(&c)
        .await
        .map_err(|e| ApiError::store(e, "a claim"))?;
    crate::sync::settle(&state).await;
    Ok(created(render_claim(&c)))
}

async fn load_claim(state: &AdminState, a: &str, id: &str) -> Result<Claim, ApiError> {
    let server = load_server(state, a).await?;
    let id = path_uuid("claimId", id)?;
    state
        .identity
        .store()
        .get_claim(server.id, id)
        .await
        .map_err(|e| ApiError::store(e, "a claim"))?
        .ok_or(ApiError::NotFound)
}

async fn get_claim(
    State(state): State<AdminState>,
    Path((a, id)): Path<(String, String)>,
) -> ApiResult {
    Ok(ok(render_claim(&load_claim(&state, &a, &id).await?)))
}

async fn patch_claim(
    State(state): State<AdminState>,
    Path((a, id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let mut c = load_claim(&state, &a, &id).await?;
    read_claim(&state, body, &mut c, false).await?;
    let read = c.updated_at;
    c.updated_at = Timestamp::now();
    state
        .identity
        .store()
        .update_claim(&c, read)
        .await
        .map_err(|e| ApiError::store(e, "a claim"))?;
    crate::sync::settle(&state).await;
    Ok(ok(render_claim(&c)))
}

async fn delete_claim(
    State(state): State<AdminState>,
    Path((a, id)): Path<(String, String)>,
) -> ApiResult {
    let server = load_server(&state, &a).await?;
    let id = path_uuid("claimId", &id)?;
    state
        .identity
        .store()
        .delete_claim(server.id, id)
        .await
        .map_err(|e| ApiError::store(e, "a claim"))?;
    crate::sync::settle(&state).await;
    Ok(no_content())
}

// ---------------------------------------------------------------------------------------------
// Clients

const CLIENT_LIST: Allowed = Allowed {
    filters: &[("name", TEXT), ("id", EQ), ("labels", EQ)],
    sorts: &["created_at", "updated_at", "name"],
};

fn render_client(c: &Client) -> serde_json::Value {
    serde_json::json!({
        "id": c.id, "name": c.name,
        "grant_types": c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "response_types": c.response_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "redirect_uris": c.redirect_uris, "login_uri": c.login_uri,
        "access_token_duration": c.access_token_duration, "id_token_duration": c.id_token_duration,
        "allow_all_scopes": c.allow_all_scopes, "allow_scopes": c.allow_scopes, "labels": c.labels,
        "token_endpoint_auth_method": c.token_endpoint_auth_method.as_str(),
        "created_at": c.created_at, "updated_at": c.updated_at,
    })
}

fn enum_list<T>(
    r: &mut ObjectReader,
    key: &str,
    names: &[&str],
    parse: fn(&str) -> Option<T>,
) -> Option<Vec<T>> {
    let raw = r.string_array(key, true)?;
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        match parse(s) {
            Some(v) => out.push(v),
            None => r
                .problems
                .push(InvalidParameter::choices(format!("{key}[{i}]"), names)),
        }
    }
    Some(out)
}

fn is_https_uri(s: &str) -> bool {
    url::Url::parse(s)
        .is_ok_and(|u| u.scheme() == "https" && u.host().is_some() && u.fragment().is_none())
}

/// Reads client fields; `required` lists the fields that must be present.
async fn read_client(
    state: &AdminState,
    body: serde_json::Value,
    c: &mut Client,
    required: &[&str],
) -> Result<Option<String>, ApiError> {
    let mut r = ObjectReader::new(body)?;
    for k in required {
        if !r.has(k) {
            r.problems.push(InvalidParameter::required(*k));
        }
    }
    if let Some(v) = r.string_len("name", 1, 255) {
        c.name = v;
    }
    if let Some(v) = enum_list(&mut r, "grant_types", &GrantType::NAMES, GrantType::parse) {
        c.grant_types = v;
    }
    if let Some(v) = enum_list(
        &mut r,
        "response_types",
        &ResponseType::NAMES,
        ResponseType::parse,
    ) {
        c.response_types = v;
    }
    if let Some(v) = r.string_array("redirect_uris", true) {
        for (i, u) in v.iter().enumerate() {
            if !is_https_uri(u) {
                r.problems.push(InvalidParameter::new(
                    format!("redirect_uris[{i}]"),
                    "is_uri",
                    "must be an absolute https URI without a fragment",
                ));
            }
        }
        c.redirect_uris = v;
    }
    if r.has("login_uri") {
        match r.string("login_uri") {
            None => c.login_uri = None,
            Some(s) if s.is_empty() => c.login_uri = None,
            Some(s) => {
                if !is_https_uri(&s) {
                    r.problems.push(InvalidParameter::new(
                        "login_uri",
                        "is_uri",
                        "must be an absolute https URI",
                    ));
                }
                c.login_uri = Some(s);
            }
        }
    }
    if let Some(v) = r.int(
        "access_token_duration",
        TOKEN_DURATION_MIN,
        TOKEN_DURATION_MAX,
    ) {
        c.access_token_duration = v;
    }
    if let Some(v) = r.int("id_token_duration", TOKEN_DURATION_MIN, TOKEN_DURATION_MAX) {
        c.id_token_duration = v;
    }
    if let Some(v) = r.bool("allow_all_scopes") {
        c.allow_all_scopes = v;
    }
    if let Some(v) = r.uuid_array("allow_scopes") {
        c.allow_scopes = v;
    }
    if let Some(l) = r.labels("labels", true) {
        apply_labels(&mut c.labels, l, false);
    }
    if let Some(m) = r.string("token_endpoint_auth_method") {
        match TokenEndpointAuthMethod::parse(&m) {
            Some(m) => c.token_endpoint_auth_method = m,
            None => r.problems.push(InvalidParameter::choices(
                "token_endpoint_auth_method",
                &TokenEndpointAuthMethod::NAMES,
            )),
        }
    }
    let secret = r.string_len("client_secret", 1, 255);
    ignore_read_only(&mut r, &[]);
    check_scope_refs(
        state,
        c.auth_server_id,
        "allow_scopes",
        &c.allow_scopes,
        &mut r.problems,
    )
    .await?;
    r.finish()?;
    Ok(secret)
}

fn new_client(auth_server_id: Uuid, id: String) -> Client {
    let now = Timestamp::now();
    Client {
        id,
        auth_server_id,
        name: String::new(),
        grant_types: vec![],
        response_types: vec![],
        redirect_uris: vec![],
        login_uri: None,
        access_token_duration: TOKEN_DURATION_DEFAULT,
        id_token_duration: TOKEN_DURATION_DEFAULT,
        allow_all_scopes: false,
        allow_scopes: vec![],
        labels: Labels::new(),
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
        created_at: now,
        updated_at: now,
    }
}

/// Hashing is deliberately slow; keep it off the async workers.
async fn secret_record(
    server: Uuid,
    client: &str,
    secret: String,
    enabled: bool,
) -> Result<ClientSecret, ApiError> {
    let hash = tokio::task::spawn_blocking(move || secrets::hash(&secret))
        .await
        .map_err(|_| ApiError::Internal)?;
    let now = Timestamp::now();
    Ok(ClientSecret {
        id: Uuid::new_v4(),
        auth_server_id: server,
        client_id: client.to_owned(),
        hash,
        enabled,
        created_at: now,
        updated_at: now,
    })
}

async fn list_clients(
    State(state): State<AdminState>,
    Path(a): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let server = load_server(&state, &a).await?;
    let q = list::parse(raw.as_deref(), &CLIENT_LIST)?;
    let page = state
        .identity
        .store()
        .list_clients(server.id, &q)
        .await
        .map_err(|e| ApiError::store(e, "a client"))?;
    Ok(ok(list::envelope(page, &q, render_client)))
}

async fn create_client(
    State(state): State<AdminState>,
    Path(a): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let server = load_server(&state, &a).await?;
    let mut c = new_client(server.id, gatehouse_core::ids::client_id());
    let given = read_client(
        &state,
        body,
        &mut c,
        &["name", "grant_types", "response_types"],
    )
    .await?;
    if given.is_some() {
        return Err(InvalidParameter::new(
            "client_secret",
            "unknown_property",
            "secrets are generated on create; use PUT to choose one",
        )
        .into());
    }
    let secret = gatehouse_core::ids::client_secret();
    let record = secret_record(server.id, &c.id, secret.clone(), true).await?;
    state
        .identity
        .store()
        .create_client(&c, &record)
        .await
        .map_err(|e| ApiError::store(e, "a client"))?;
    crate::sync::settle(&state).await;
    let mut v = render_client(&c);
    v["client_secret"] = secret.into();
    Ok(created(v))
}

async fn load_client(state: &AdminState, a: &str, id: &str) -> Result<Client, ApiError> {
    let server = load_server(state, a).await?;
    state
        .identity
        .store()
        .get_client(server.id, id)
        .await
        .map_err(|e| ApiError::store(e, "a client"))?
        .ok_or(ApiError::NotFound)
}

async fn get_client(
    State(state): State<AdminState>,
    Path((a, id)): Path<(String, String)>,
) -> ApiResult {
    Ok(ok(render_client(&load_client(&state, &a, &id).await?)))
}

async fn patch_client(
    State(state): State<AdminState>,
    Path((a, id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let mut c = load_client(&state, &a, &id).await?;
    let secret = read_client(&state, body, &mut c, &[]).await?;
    let read = c.updated_at;
    c.updated_at = Timestamp::now();
    let record = match secret {
        Some(s) => Some(secret_record(c.auth_server_id, &c.id, s, true).await?),
        None => None,
    };
    state
        .identity
        .store()
        .update_client(&c, record.as_ref(), read)
        .await
        .map_err(|e| ApiError::store(e, "a client"))?;
    crate::sync::settle(&state).await;
    Ok(ok(render_client(&c)))
}

fn valid_client_id(id: &str) -> bool {
    (1..=36).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn put_client(
    State(state): State<AdminState>,
    Path((a, id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let server = load_server(&state, &a).await?;
    if !valid_client_id(&id) {
        let mut p = InvalidParameter::new(
            "clientId",
            "matches_regex",
            "must be 1 to 36 characters of letters, digits, - and _",
        );
        p.source = Some("path");
        return Err(p.into());
    }
    let existing = state
        .identity
        .store()
        .get_client(server.id, &id)
        .await
        .map_err(|e| ApiError::store(e, "a client"))?;
    let mut c = new_client(server.id, id.clone());
    if let Some(old) = &existing {
        c.created_at = old.created_at;
    }
    let secret = read_client(
        &state,
        body,
        &mut c,
        &["name", "grant_types", "response_types", "client_secret"],
    )
    .await?;
    let secret = secret.ok_or(ApiError::Internal)?;
    let record = secret_record(server.id, &c.id, secret, true).await?;
    let was_created = state
        .identity
        .store()
        .upsert_client(&c, &record)
        .await
        .map_err(|e| ApiError::store(e, "a client"))?;
    crate::sync::settle(&state).await;
    let status = if was_created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(render_client(&c))).into_response())
}

async fn delete_client(
    State(state): State<AdminState>,
    Path((a, id)): Path<(String, String)>,
) -> ApiResult {
    let server = load_server(&state, &a).await?;
    state
        .identity
        .store()
        .delete_client(server.id, &id)
        .await
        .map_err(|e| ApiError::store(e, "a client"))?;
    crate::sync::settle(&state).await;
    Ok(no_content())
}

// ---------------------------------------------------------------------------------------------
// Client secrets

const SECRET_LIST: Allowed = Allowed {
    filters: &[("id", EQ), ("enabled", EQ)],
    sorts: &["created_at", "updated_at"],
};

fn render_secret(s: &ClientSecret) -> serde_json::Value {
    serde_json::json!({"id": s.id, "enabled": s.enabled, "created_at": s.created_at, "updated_at": s.updated_at})
}

async fn list_secrets(
    State(state): State<AdminState>,
    Path((a, c)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let client = load_client(&state, &a, &c).await?;
    let q = list::parse(raw.as_deref(), &SECRET_LIST)?;
    let page = state
        .identity
        .store()
        .list_secrets(client.auth_server_id, &client.id, &q)
        .await
        .map_err(|e| ApiError::store(e, "a secret"))?;
    Ok(ok(list::envelope(page, &q, render_secret)))
}

async fn create_secret(
    State(state): State<AdminState>,
    Path((a, c)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let client = load_client(&state, &a, &c).await?;
    let mut r = ObjectReader::new(body)?;
    let given = r.string_len("secret", 1, 255);
    let enabled = r.bool("enabled").unwrap_or(true);
    r.finish()?;
    let secret = given.unwrap_or_else(gatehouse_core::ids::client_secret);
    let record = secret_record(client.auth_server_id, &client.id, secret.clone(), enabled).await?;
    state
        .identity
        .store()
        .create_secret(&record, MAX_ENABLED_SECRETS)
        .await
        .map_err(|e| ApiError::store(e, "a secret"))?;
    crate::sync::settle(&state).await;
    let mut v = render_secret(&record);
    v["secret"] = secret.into();
    Ok(created(v))
}

async fn get_secret(
    State(state): State<AdminState>,
    Path((a, c, id)): Path<(String, String, String)>,
) -> ApiResult {
    let client = load_client(&state, &a, &c).await?;
    let id = path_uuid("clientSecretId", &id)?;
    let s = state
        .identity
        .store()
        .get_secret(client.auth_server_id, &client.id, id)
        .await
        .map_err(|e| ApiError::store(e, "a secret"))?
        .ok_or(ApiError::NotFound)?;
    Ok(ok(render_secret(&s)))
}

async fn patch_secret(
    State(state): State<AdminState>,
    Path((a, c, id)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let client = load_client(&state, &a, &c).await?;
    let id = path_uuid("clientSecretId", &id)?;
    let mut r = ObjectReader::new(body)?;
    let enabled = r.bool("enabled");
    if !r.has("enabled") {
        r.problems.push(InvalidParameter::required("enabled"));
    }
    r.finish()?;
    let s = state
        .identity
        .store()
        .set_secret_enabled(
            client.auth_server_id,
            &client.id,
            id,
            enabled.unwrap_or(true),
            MAX_ENABLED_SECRETS,
        )
        .await
        .map_err(|e| ApiError::store(e, "a secret"))?;
    crate::sync::settle(&state).await;
    Ok(ok(render_secret(&s)))
}

async fn delete_secret(
    State(state): State<AdminState>,
    Path((a, c, id)): Path<(String, String, String)>,
) -> ApiResult {
    let client = load_client(&state, &a, &c).await?;
    let id = path_uuid("clientSecretId", &id)?;
    state
        .identity
        .store()
        .delete_secret(client.auth_server_id, &client.id, id)
        .await
        .map_err(|e| ApiError::store(e, "a secret"))?;
    crate::sync::settle(&state).await;
    Ok(no_content())
}

// ---------------------------------------------------------------------------------------------
// test-claim

async fn test_claim(
    State(state): State<AdminState>,
    Path((a, c)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let server = load_server(&state, &a).await?;
    let client = load_client(&state, &a, &c).await?;
    let serde_json::Value::Object(map) = body else {
        return Err(InvalidParameter::new(
            "body",
            "is_object",
            "must be an object of claim name to template",
        )
        .into());
    };
    let ctx = template_ctx(&server_template_ctx(&server), &client_template_ctx(&client));
    let mut problems = Problems::new();
    let mut out = serde_json::Map::new();
    for (name, v) in map {
        let serde_json::Value::String(src) = v else {
            problems.push(InvalidParameter::new(
                name,
                "is_string",
                "templates must be strings",
            ));
            continue;
        };
        match Template::parse(&src) {
            Err(e) => problems.push(InvalidParameter::new(
                name.clone(),
                "invalid",
                format!("the template of claim '{name}' does not parse: {e}"),
            )),
            Ok(t) => match t.render(&ctx) {
                Ok(v) => {
                    out.insert(name, v);
                }
                Err(e) => problems.push(InvalidParameter::new(
                    name.clone(),
                    "invalid",
                    format!("the template of claim '{name}' failed: {e}"),
                )),
            },
        }
    }
    problems.finish()?;
    Ok(ok(serde_json::Value::Object(out)))
}

// ---------------------------------------------------------------------------------------------
// Issued tokens

const TOKEN_LIST: Allowed = Allowed {
    filters: &[("id", EQ)],
    sorts: &["created_at", "expires_at"],
};

fn render_token(t: &IssuedToken) -> serde_json::Value {
    serde_json::json!({"id": t.id, "granted_scope_names": t.granted_scope_names, "created_at": t.created_at, "expires_at": t.expires_at})
}

async fn list_tokens(
    State(state): State<AdminState>,
    Path((a, c)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let client = load_client(&state, &a, &c).await?;
    let q: ListQuery = list::parse(raw.as_deref(), &TOKEN_LIST)?;
    let page = state
        .identity
        .store()
        .list_tokens(client.auth_server_id, &client.id, &q)
        .await
        .map_err(|e| ApiError::store(e, "a token"))?;
    Ok(ok(list::envelope(page, &q, render_token)))
}

async fn load_token(
    state: &AdminState,
    a: &str,
    c: &str,
    id: &str,
) -> Result<IssuedToken, ApiError> {
    let client = load_client(state, a, c).await?;
    let id = path_uuid("tokenId", id)?;
    match state
        .identity
        .store()
        .get_token(client.auth_server_id, id)
        .await
        .map_err(|e| ApiError::store(e, "a token"))?
    {
        Some(t) if t.client_id == client.id && t.revoked_at.is_none() => Ok(t),
        _ => Err(ApiError::NotFound),
    }
}

async fn get_token(
    State(state): State<AdminState>,
    Path((a, c, id)): Path<(String, String, String)>,
) -> ApiResult {
    Ok(ok(render_token(&load_token(&state, &a, &c, &id).await?)))
}

async fn revoke_token(
    State(state): State<AdminState>,
    Path((a, c, id)): Path<(String, String, String)>,
) -> ApiResult {
    let t = load_token(&state, &a, &c, &id).await?;
    let revoked = state
        .identity
        .store()
        .revoke_token(t.auth_server_id, t.id, Timestamp::now())
        .await
        .map_err(|e| ApiError::store(e, "a token"))?;
    if revoked.is_some() {
        crate::sync::settle(&state).await;
    }
    Ok(no_content())
}

async fn revoke_all_tokens(
    State(state): State<AdminState>,
    Path((a, c)): Path<(String, String)>,
) -> ApiResult {
    let client = load_client(&state, &a, &c).await?;
    let revoked = state
        .identity
        .store()
        .revoke_client_tokens(client.auth_server_id, &client.id, Timestamp::now())
        .await
        .map_err(|e| ApiError::store(e, "a token"))?;
    if !revoked.is_empty() {
        crate::sync::settle(&state).await;
    }
    Ok(no_content())
}
