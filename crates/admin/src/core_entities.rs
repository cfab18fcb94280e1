//! Services, routes, consumers, plugins, certificates, SNIs and CA certificates in the Kong
//! Admin API format (spec B, D.1, D.3); what certificates need beyond the rest is in
//! [`crate::certificates`].
//!
//! [`routes`] is mounted twice: under `/v2/control-planes/{cp}/core-entities` (Konnect) and at
//! the root for the control plane named `default` (Kong). Every handler works on one
//! [`Scope`] (the control plane), validates bodies with the entity rules of
//! `gatehouse_core::gateway`, writes through the store, and then rebuilds the proxy's snapshot
//! when the control plane is the one this node serves — so a write is live when its response
//! is sent.

use crate::AdminState;
use crate::kong_error::KongError;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use gatehouse_core::gateway::certificates::{CaCertificate, Certificate, Sni};
use gatehouse_core::gateway::{
    Consumer, CoreEntity, EntityKind as K, Plugin, Route, Service, merge_patch,
};
use gatehouse_store::StoreError;
use http::StatusCode;
use http::request::Parts;
use serde_json::{Value, json};
use std::collections::HashMap;
use uuid::Uuid;

type KResult = Result<Response, KongError>;

/// The control plane a request works on, and the path prefix for `next` links.
pub struct Scope {
    /// The control plane.
    pub cp: Uuid,
    /// `""` at the root, `/v2/control-planes/{id}/core-entities` under Konnect paths.
    pub prefix: String,
    /// Path parameters.
    pub params: HashMap<String, String>,
}

impl FromRequestParts<AdminState> for Scope {
    type Rejection = KongError;
    async fn from_request_parts(parts: &mut Parts, st: &AdminState) -> Result<Self, KongError> {
        // A path that does not decode (invalid UTF-8 in a parameter) names nothing: it must not
        // fall back to the default control plane.
        let Path(params): Path<HashMap<String, String>> = Path::from_request_parts(parts, st)
            .await
            .map_err(|_| KongError::NotFound)?;
        let (cp, prefix) = match params.get("cp") {
            Some(raw) => {
                let id = Uuid::parse_str(raw).map_err(|_| KongError::NotFound)?;
                let found = st
                    .identity
                    .store()
                    .get_control_plane(id)
                    .await
                    .map_err(internal)?;
                if found.is_none() {
                    return Err(KongError::NotFound);
                }
                (id, format!("/v2/control-planes/{id}/core-entities"))
            }
            None => (st.gateway.default_control_plane, String::new()),
        };
        Ok(Self { cp, prefix, params })
    }
}

impl Scope {
    fn param(&self, name: &str) -> Result<&str, KongError> {
        self.params
            .get(name)
            .map(String::as_str)
            .ok_or(KongError::Internal)
    }
}

/// A JSON object body, with Kong's answers for anything else.
pub struct KongJson(pub Value);

impl<S: Send + Sync> FromRequest<S> for KongJson {
    type Rejection = KongError;
    async fn from_request(req: Request, state: &S) -> Result<Self, KongError> {
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = crate::read_body(req, state)
            .await
            .map_err(|(refusal, e)| match refusal {
                Some((status, message)) => KongError::Refused(status, message.into()),
                None => KongError::BadRequest(format!("the body could not be read: {e}")),
            })?;
        if bytes.is_empty() {
            return Ok(Self(json!({})));
        }
        if content_type.starts_with("application/x-www-form-urlencoded") {
            let mut v = form_to_json(&bytes)?;
            coerce_form(&mut v);
            return Ok(Self(v));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v @ Value::Object(_)) => Ok(Self(v)),
            Ok(_) => Err(KongError::BadRequest("body must be a JSON object".into())),
            Err(e) => Err(KongError::BadRequest(format!(
                "Cannot parse JSON body: {e}"
            ))),
        }
    }
}

fn insert_path(
    target: &mut serde_json::Map<String, Value>,
    segments: &[&str],
    value: Value,
    array: bool,
) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    if !rest.is_empty() {
        let slot = target
            .entry((*first).to_owned())
            .or_insert_with(|| Value::Object(Default::default()));
        if !slot.is_object() {
            *slot = Value::Object(Default::default());
        }
        if let Value::Object(m) = slot {
            insert_path(m, rest, value, array);
        }
        return;
    }
    match target.get_mut(*first) {
        Some(Value::Array(list)) => list.push(value),
        Some(existing) => {
            let prev = existing.take();
            *existing = Value::Array(vec![prev, value]);
        }
        None if array => {
            target.insert((*first).to_owned(), Value::Array(vec![value]));
        }
        None => {
            target.insert((*first).to_owned(), value);
        }
    }
}

/// Kong's form bodies: `a.b=1` nests, repeated keys and `key[]` make arrays. Values are strings,
/// as sent; [`coerce_form`] then types the fields whose type the entity schemas define.
fn form_to_json(body: &[u8]) -> Result<Value, KongError> {
    let mut out = serde_json::Map::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        let key = k.trim_end_matches("[]").to_owned();
        let array = k.ends_with("[]");
        let segments: Vec<&str> = key.split('.').collect();
        if segments.len() > MAX_FORM_DEPTH {
            return Err(KongError::BadRequest(format!(
                "form field names may nest at most {MAX_FORM_DEPTH} levels"
            )));
        }
        insert_path(&mut out, &segments, Value::String(v.into_owned()), array);
    }
    Ok(Value::Object(out))
}

/// Deep enough for any entity; bounds the recursion of [`insert_path`].
const MAX_FORM_DEPTH: usize = 8;

const FORM_INTEGERS: &[&str] = &[
    "port",
    "retries",
    "connect_timeout",
    "write_timeout",
    "read_timeout",
    "tls_verify_depth",
    "regex_priority",
    "https_redirect_status_code",
];
const FORM_BOOLEANS: &[&str] = &[
    "enabled",
    "tls_verify",
    "strip_path",
    "preserve_host",
    "request_buffering",
    "response_buffering",
];
const FORM_ARRAYS: &[&str] = &["protocols", "methods", "hosts", "paths", "snis", "tags"];

/// Types form values by the entity schemas (Kong infers them from the schema too): integer and
/// boolean fields from their strings, array fields from a single value. Plugin `config` values
/// keep their strings except `true`, `false` and numbers, since plugin schemas are not known here.
fn coerce_form(v: &mut Value) {
    let Value::Object(m) = v else { return };
    for (k, val) in m.iter_mut() {
        if k == "config" {
            if let Value::Object(cfg) = val {
                for c in cfg.values_mut() {
                    if let Value::String(s) = c {
                        if let Ok(b) = s.parse::<bool>() {
                            *c = Value::Bool(b);
                        } else if let Ok(n) = s.parse::<i64>() {
                            *c = Value::from(n);
                        } else if let Ok(f) = s.parse::<f64>() {
                            *c = Value::from(f);
                        }
                    }
                }
            }
            continue;
        }
        if FORM_INTEGERS.contains(&k.as_str()) {
            if let Value::String(s) = val
                && let Ok(n) = s.parse::<i64>()
            {
                *val = Value::from(n);
            }
        } else if FORM_BOOLEANS.contains(&k.as_str()) {
            if let Value::String(s) = val
                && let Ok(b) = s.parse::<bool>()
            {
                *val = Value::Bool(b);
            }
        } else if FORM_ARRAYS.contains(&k.as_str()) && val.is_string() {
            *val = Value::Array(vec![val.take()]);
        }
    }
}

pub(crate) fn internal(e: StoreError) -> KongError {
    if let StoreError::Unavailable(_) = e {
        tracing::warn!(error = %e, "core entity storage unavailable");
        return KongError::Unavailable;
    }
    tracing::error!(error = %e, "core entity storage failed");
    KongError::Internal
}

fn ok(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// The Kong Admin API routes for core entities (relative; see the module docs for mounting).
pub fn routes() -> Router<AdminState> {
    let mut r = Router::new();
    for kind in [
        K::Service,
        K::Route,
        K::Consumer,
        K::Plugin,
        K::Certificate,
        K::Sni,
        K::CaCertificate,
    ] {
        let collection = format!("/{}", kind.as_str());
        let item = format!("/{}/{{item}}", kind.as_str());
        r = r
            .route(
                &collection,
                get(
                    move |st: State<AdminState>, s: Scope, uri: OriginalUri| async move {
                        list(st.0, s, kind, None, uri).await
                    },
                )
                .post(
                    move |st: State<AdminState>, s: Scope, KongJson(b): KongJson| async move {
                        create(st.0, s, kind, None, b).await
                    },
                ),
            )
            .route(
                &item,
                get(move |st: State<AdminState>, s: Scope| async move {
                    get_item(st.0, s, kind, None).await
                })
                .put(
                    move |st: State<AdminState>, s: Scope, KongJson(b): KongJson| async move {
                        upsert(st.0, s, kind, None, b).await
                    },
                )
                .patch(
                    move |st: State<AdminState>, s: Scope, KongJson(b): KongJson| async move {
                        patch(st.0, s, kind, None, b).await
                    },
                )
                .delete(move |st: State<AdminState>, s: Scope| async move {
                    delete(st.0, s, kind, None).await
                }),
            );
    }
    r = r.merge(crate::declarative::routes());
    let nested = [
        (K::Service, K::Route),
        (K::Service, K::Plugin),
        (K::Route, K::Plugin),
        (K::Consumer, K::Plugin),
        (K::Certificate, K::Sni),
    ];
    for (parent, child) in nested {
        let collection = format!("/{}/{{parent}}/{}", parent.as_str(), child.as_str());
        let item = format!(
            "/{}/{{parent}}/{}/{{item}}",
            parent.as_str(),
            child.as_str()
        );
        r = r
            .route(
                &collection,
                get(
                    move |st: State<AdminState>, s: Scope, uri: OriginalUri| async move {
                        list(st.0, s, child, Some(parent), uri).await
                    },
                )
                .post(
                    move |st: State<AdminState>, s: Scope, KongJson(b): KongJson| async move {
                        create(st.0, s, child, Some(parent), b).await
                    },
                ),
            )
            .route(
                &item,
                get(move |st: State<AdminState>, s: Scope| async move {
                    get_item(st.0, s, child, Some(parent)).await
                })
                .put(
                    move |st: State<AdminState>, s: Scope, KongJson(b): KongJson| async move {
                        upsert(st.0, s, child, Some(parent), b).await
                    },
                )
                .patch(
                    move |st: State<AdminState>, s: Scope, KongJson(b): KongJson| async move {
                        patch(st.0, s, child, Some(parent), b).await
                    },
                )
                .delete(move |st: State<AdminState>, s: Scope| async move {
                    delete(st.0, s, child, Some(parent)).await
                }),
            );
    }
    r.route(
        "/routes/{parent}/service",
        get(|st: State<AdminState>, s: Scope| async move { route_service(st.0, s).await }),
    )
    .route(
        "/plugins/enabled",
        get(|st: State<AdminState>| async move {
            let names: Vec<&str> = st.gateway.registry.iter().map(|f| f.name()).collect();
            ok(StatusCode::OK, json!({"enabled_plugins": names}))
        }),
    )
    .route(
        "/schemas/plugins/{name}",
        get(
            |st: State<AdminState>, Path(p): Path<HashMap<String, String>>| async move {
                let name = p.get("name").map(String::as_str).unwrap_or("");
                match st.gateway.registry.get(name) {
                    Some(f) => Ok(ok(StatusCode::OK, f.schema())),
                    None => Err(KongError::BadRequest(format!(
                        "plugin '{name}' does not exist"
                    ))),
                }
            },
        ),
    )
}

/// Looks up `raw` (an id, or the endpoint key) of `kind`.
async fn find(st: &AdminState, cp: Uuid, kind: K, raw: &str) -> Result<CoreEntity, KongError> {
    let store = st.identity.store();
    let found = match Uuid::parse_str(raw) {
        Ok(id) => store.get_core_entity(cp, kind, id).await,
        Err(_) if kind == K::Certificate => return crate::certificates::by_sni(st, cp, raw).await,
        // Only the id addresses a CA certificate.
        Err(_) if kind == K::CaCertificate => Ok(None),
        Err(_) => store.core_entity_by_key(cp, kind, raw).await,
    }
    .map_err(internal)?;
    found.ok_or(KongError::NotFound)
}

fn belongs(e: &CoreEntity, parent: Option<(K, Uuid)>) -> bool {
    match parent {
        None => true,
        Some((K::Service, id)) => e.service_id == Some(id),
        Some((K::Route, id)) => e.route_id == Some(id),
        Some((K::Consumer, id)) => e.consumer_id == Some(id),
        Some((K::Certificate, id)) => e.certificate_id == Some(id),
        Some((K::Plugin | K::Sni | K::CaCertificate, _)) => false,
    }
}

async fn resolve_parent(
    st: &AdminState,
    s: &Scope,
    parent: Option<K>,
) -> Result<Option<(K, Uuid)>, KongError> {
    match parent {
        None => Ok(None),
        Some(kind) => {
            let raw = s.param("parent")?;
            let e = find(st, s.cp, kind, raw).await?;
            Ok(Some((kind, e.id)))
        }
    }
}

/// What a client sees of stored entities: secrets opened, and certificates with the sorted
/// names of their SNIs (Kong's `snis`).
pub(crate) async fn render(
    st: &AdminState,
    cp: Uuid,
    entities: &[CoreEntity],
) -> Result<Vec<Value>, KongError> {
    let snis = if entities.iter().any(|e| e.kind == K::Certificate) {
        crate::certificates::sni_names(st, cp).await?
    } else {
        HashMap::new()
    };
    Ok(entities
        .iter()
        .map(|e| {
            let mut body = e.body.clone();
            match e.kind {
                K::Plugin => crate::secrets::open(st, &mut body),
                K::Certificate => {
                    crate::secrets::open_certificate(st.identity.master_key(), &mut body);
                    body["snis"] = json!(snis.get(&e.id).cloned().unwrap_or_default());
                }
                _ => {}
            }
            body
        })
        .collect())
}

async fn render_one(st: &AdminState, e: &CoreEntity) -> Result<Value, KongError> {
    let mut one = render(st, e.control_plane_id, std::slice::from_ref(e)).await?;
    one.pop().ok_or(KongError::Internal)
}

async fn list(
    st: AdminState,
    s: Scope,
    kind: K,
    parent: Option<K>,
    OriginalUri(uri): OriginalUri,
) -> KResult {
    let parent = resolve_parent(&st, &s, parent).await?;
    let mut size = 100usize;
    let mut offset: Option<String> = None;
    let mut tags: Option<String> = None;
    let mut name_eq: Option<String> = None;
    let mut name_contains: Option<String> = None;
    let mut custom_id: Option<String> = None;
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "size" => {
                size = match v.parse::<usize>() {
                    Ok(n) if (1..=1000).contains(&n) => n,
                    Ok(_) => {
                        return Err(KongError::InvalidSize(
                            "size must be an integer between 1 and 1000".into(),
                        ));
                    }
                    Err(_) => return Err(KongError::InvalidSize("size must be a number".into())),
                }
            }
            "offset" => offset = Some(v.into_owned()),
            "tags" => tags = Some(v.into_owned()),
            "filter[name][eq]" | "filter[name]" => name_eq = Some(v.into_owned()),
            "filter[name][contains]" => name_contains = Some(v.into_owned()),
            "custom_id" if kind == K::Consumer => {
                if v.is_empty() {
                    return Err(KongError::BadRequest(
                        "custom_id must be an unempty string".into(),
                    ));
                }
                custom_id = Some(v.into_owned());
            }
            _ => {}
        }
    }
    let after = match &offset {
        Some(o) => Some(
            B64.decode(o)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| Uuid::parse_str(&s).ok())
                .ok_or_else(|| KongError::InvalidOffset(o.clone()))?,
        ),
        None => None,
    };
    let tag_filter = match &tags {
        Some(t) => Some(parse_tags(t)?),
        None => None,
    };
    let name_field = if kind == K::Consumer {
        "username"
    } else {
        "name"
    };
    let entities = st
        .identity
        .store()
        .core_entities(s.cp, Some(kind))
        .await
        .map_err(internal)?;
    let mut matching = entities.into_iter().filter(|e| {
        belongs(e, parent)
            && after.is_none_or(|a| e.id.to_string() > a.to_string())
            && custom_id
                .as_deref()
                .is_none_or(|c| e.alt_key.as_deref() == Some(c))
            && name_eq
                .as_deref()
                .is_none_or(|n| e.body.get(name_field).and_then(Value::as_str) == Some(n))
            && name_contains.as_deref().is_none_or(|n| {
                e.body
                    .get(name_field)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.contains(n))
            })
            // Kong ignores tags on nested (foreign-key) listings.
            && (parent.is_some()
                || tag_filter.as_ref().is_none_or(|f| f.matches(&e.body)))
    });
    let page: Vec<CoreEntity> = matching.by_ref().take(size).collect();
    let more = matching.next().is_some();
    let data = render(&st, s.cp, &page).await?;
    let mut body = json!({"data": data, "next": null});
    if more && let Some(last) = page.last() {
        let token = B64.encode(last.id.to_string());
        // Every parameter of this request but the offset carries over (size, tags, filters).
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("offset", &token);
        for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
            if k != "offset" {
                query.append_pair(&k, &v);
            }
        }
        body["offset"] = json!(token);
        body["next"] = json!(format!("{}?{}", uri.path(), query.finish()));
    }
    Ok(ok(StatusCode::OK, body))
}

struct TagFilter {
    tags: Vec<String>,
    all: bool,
}

impl TagFilter {
    fn matches(&self, body: &Value) -> bool {
        let have: Vec<&str> = body
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if self.all {
            self.tags.iter().all(|t| have.contains(&t.as_str()))
        } else {
            self.tags.iter().any(|t| have.contains(&t.as_str()))
        }
    }
}

fn parse_tags(raw: &str) -> Result<TagFilter, KongError> {
    if raw.is_empty() {
        let mut f = gatehouse_core::kong_schema::FieldErrors::new();
        f.add("tags", "cannot be null");
        return Err(KongError::Schema(f));
    }
    let (and, or) = (raw.contains(','), raw.contains('/'));
    if and && or {
        return Err(KongError::BadRequest(
            "invalid option (tags: cannot mix the 'or' and 'and' operators)".into(),
        ));
    }
    let tags: Vec<String> = raw.split([',', '/']).map(str::to_owned).collect::<Vec<_>>();
    if tags.len() > 5 {
        return Err(KongError::BadRequest(
            "invalid option (tags: cannot query more than 5 tags)".into(),
        ));
    }
    Ok(TagFilter { tags, all: !or })
}

async fn get_item(st: AdminState, s: Scope, kind: K, parent: Option<K>) -> KResult {
    let parent = resolve_parent(&st, &s, parent).await?;
    let e = find(&st, s.cp, kind, s.param("item")?).await?;
    if !belongs(&e, parent) {
        return Err(KongError::NotFound);
    }
    Ok(ok(StatusCode::OK, render_one(&st, &e).await?))
}

async fn route_service(st: AdminState, s: Scope) -> KResult {
    let route = find(&st, s.cp, K::Route, s.param("parent")?).await?;
    let Some(service_id) = route.service_id else {
        return Err(KongError::NotFound);
    };
    let svc = st
        .identity
        .store()
        .get_core_entity(s.cp, K::Service, service_id)
        .await
        .map_err(internal)?
        .ok_or(KongError::NotFound)?;
    Ok(ok(StatusCode::OK, svc.body))
}

/// Replaces `{"name": …}` / `{"username": …}` references by `{"id": …}`.
async fn resolve_references(st: &AdminState, cp: Uuid, body: &mut Value) -> Result<(), KongError> {
    let fields: [(&'static str, K); 3] = [
        ("service", K::Service),
        ("route", K::Route),
        ("consumer", K::Consumer),
    ];
    for (field, kind) in fields {
        let Some(Value::Object(reference)) = body.get(field) else {
            continue;
        };
        if reference.contains_key("id") {
            continue;
        }
        let key_field = kind.endpoint_key();
        let Some(Value::String(key)) = reference.get(key_field).cloned() else {
            continue;
        };
        let found = st
            .identity
            .store()
            .core_entity_by_key(cp, kind, &key)
            .await
            .map_err(internal)?;
        match found {
            Some(e) => body[field] = json!({"id": e.id}),
            None => {
                return Err(KongError::ForeignKey {
                    field,
                    kind,
                    key: (key_field, key),
                });
            }
        }
    }
    Ok(())
}

/// A validated entity, and the SNI names a certificate's body listed (`None`: absent).
pub(crate) struct Validated {
    pub(crate) entity: CoreEntity,
    snis: Option<Vec<String>>,
}

/// Validates `body` as an entity of `kind` with this id and creation time.
pub(crate) fn validate(
    st: &AdminState,
    cp: Uuid,
    kind: K,
    id: Uuid,
    body: Value,
    created_at: i64,
) -> Result<Validated, KongError> {
    let now = gatehouse_core::Timestamp::now().unix_seconds();
    let entity = match kind {
        K::Service => Service::from_input(id, body, created_at, now)?.to_entity(cp),
        K::Route => Route::from_input(id, body, created_at, now)?.to_entity(cp),
        K::Consumer => Consumer::from_input(id, body, created_at, now)?.to_entity(cp),
        K::Plugin => {
            let p = Plugin::from_input(id, body, created_at, now, st.gateway.registry.as_ref())?;
            // A configuration the plugin cannot run with is refused before it is stored.
            if let Some(f) = st.gateway.registry.get(&p.name)
                && let Err(e) = f.build(&p.config)
            {
                let mut fields = gatehouse_core::kong_schema::FieldErrors::new();
                fields.add("config", e.0);
                return Err(KongError::Schema(fields));
            }
            let mut e = p.to_entity(cp);
            crate::secrets::seal(st, &mut e.body)?;
            e
        }
        K::Certificate => {
            let input = Certificate::from_input(id, body, created_at, now)?;
            let mut e = input.certificate.to_entity(cp);
            crate::secrets::seal_certificate(st.identity.master_key(), &mut e.body)?;
            return Ok(Validated {
                entity: e,
                snis: input.snis,
            });
        }
        K::Sni => Sni::from_input(id, body, created_at, now)?.to_entity(cp),
        K::CaCertificate => CaCertificate::from_input(id, body, created_at, now)?.to_entity(cp),
    };
    Ok(Validated { entity, snis: None })
}

/// Writes a validated entity: inserted, or updated from `read` (the body it was read as).
/// A certificate's `snis`, when given, replace its SNIs in the same transaction.
async fn save(st: &AdminState, v: &Validated, read: Option<&Value>) -> Result<(), KongError> {
    if let Some(names) = &v.snis {
        return crate::certificates::save(st, &v.entity, read, names).await;
    }
    let store = st.identity.store();
    match read {
        Some(read) => store.update_core_entity(&v.entity, read).await,
        None => store.insert_core_entity(&v.entity).await,
    }
    .map_err(|e| store_error(e, &v.entity))
}

/// Kong's 405 for a write to a DB-less node's core entities (only `POST /config` writes).
fn writable(st: &AdminState, op: &'static str, kind: K) -> Result<(), KongError> {
    if st.gateway.db_less {
        return Err(KongError::DbLess { op, kind });
    }
    Ok(())
}

pub(crate) fn store_error(e: StoreError, entity: &CoreEntity) -> KongError {
    match e {
        StoreError::Duplicate("endpoint_key") => {
            let field = entity.kind.endpoint_key();
            KongError::Unique(json!({ field: entity.endpoint_key }))
        }
        StoreError::Duplicate("alt_key") => match entity.kind {
            K::Consumer => KongError::Unique(json!({"custom_id": entity.alt_key})),
            K::CaCertificate => KongError::Unique(json!({"cert_digest": entity.alt_key})),
            _ => {
                let b = &entity.body;
                KongError::Unique(json!({
                    "consumer": b.get("consumer").cloned().unwrap_or(Value::Null),
                    "name": b.get("name").cloned().unwrap_or(Value::Null),
                    "route": b.get("route").cloned().unwrap_or(Value::Null),
                    "service": b.get("service").cloned().unwrap_or(Value::Null),
                }))
            }
        },
        StoreError::Duplicate(_) | StoreError::Conflict => {
            KongError::Unique(json!({"id": entity.id}))
        }
        StoreError::MissingReference(kind, id) => KongError::ForeignKey {
            field: kind.singular(),
            kind,
            key: ("id", id.to_string()),
        },
        StoreError::NotFound => KongError::NotFound,
        StoreError::Stale => KongError::Stale,
        StoreError::HasChildren => KongError::ReferencedBy {
            kind: entity.kind,
            by: if matches!(entity.kind, K::Certificate | K::CaCertificate) {
                K::Service
            } else {
                K::Route
            },
        },
        other => internal(other),
    }
}

fn set_parent(body: &mut Value, parent: Option<(K, Uuid)>) {
    if let Some((kind, id)) = parent {
        body[kind.singular()] = json!({"id": id});
    }
}

async fn create(st: AdminState, s: Scope, kind: K, parent: Option<K>, mut body: Value) -> KResult {
    writable(&st, "create", kind)?;
    let parent = resolve_parent(&st, &s, parent).await?;
    set_parent(&mut body, parent);
    resolve_references(&st, s.cp, &mut body).await?;
    let id = match body.get("id").and_then(Value::as_str) {
        Some(raw) => Uuid::parse_str(raw).map_err(|_| {
            let mut f = gatehouse_core::kong_schema::FieldErrors::new();
            f.add("id", "expected a valid UUID");
            KongError::Schema(f)
        })?,
        None => Uuid::new_v4(),
    };
    let now = gatehouse_core::Timestamp::now().unix_seconds();
    let v = validate(&st, s.cp, kind, id, body, now)?;
    save(&st, &v, None).await?;
    crate::sync::settle(&st).await;
    Ok(ok(StatusCode::CREATED, render_one(&st, &v.entity).await?))
}

async fn upsert(st: AdminState, s: Scope, kind: K, parent: Option<K>, mut body: Value) -> KResult {
    writable(&st, "create or update", kind)?;
    let parent = resolve_parent(&st, &s, parent).await?;
    let raw = s.param("item")?.to_owned();
    let existing = match find(&st, s.cp, kind, &raw).await {
        Ok(e) => Some(e),
        Err(KongError::NotFound | KongError::SniNotFound) => None,
        Err(e) => return Err(e),
    };
    if let Some(e) = &existing
        && !belongs(e, parent)
    {
        return Err(KongError::NotFound);
    }
    set_parent(&mut body, parent);
    resolve_references(&st, s.cp, &mut body).await?;
    let (id, created_at) = match (&existing, Uuid::parse_str(&raw)) {
        (Some(e), _) => (e.id, e.created_at),
        (None, Ok(id)) => (id, gatehouse_core::Timestamp::now().unix_seconds()),
        (None, Err(_)) if kind == K::CaCertificate => {
            let mut f = gatehouse_core::kong_schema::FieldErrors::new();
            f.add("id", "expected a valid UUID");
            return Err(KongError::Schema(f));
        }
        (None, Err(_)) => {
            // PUT /services/{name}: the path names the entity (a certificate's: an SNI,
            // added below).
            if kind != K::Certificate {
                body[kind.endpoint_key()] = Value::String(raw.clone());
            }
            (
                Uuid::new_v4(),
                gatehouse_core::Timestamp::now().unix_seconds(),
            )
        }
    };
    let by_name = Uuid::parse_str(&raw).is_err();
    if kind == K::Certificate {
        // A PUT replaces the whole certificate, SNIs included: none listed means none (and
        // `PUT /certificates/{name}` keeps that name).
        if body.get("snis").is_none_or(Value::is_null) {
            body["snis"] = if by_name { json!([raw]) } else { json!([]) };
        }
    } else if existing.is_some() && by_name && body.get(kind.endpoint_key()).is_none() {
        body[kind.endpoint_key()] = Value::String(raw.clone());
    }
    let v = validate(&st, s.cp, kind, id, body, created_at)?;
    save(&st, &v, existing.as_ref().map(|e| &e.body)).await?;
    crate::sync::settle(&st).await;
    Ok(ok(StatusCode::OK, render_one(&st, &v.entity).await?))
}

async fn patch(st: AdminState, s: Scope, kind: K, parent: Option<K>, body: Value) -> KResult {
    writable(&st, "update", kind)?;
    let parent = resolve_parent(&st, &s, parent).await?;
    let existing = find(&st, s.cp, kind, s.param("item")?).await?;
    if !belongs(&existing, parent) {
        return Err(KongError::NotFound);
    }
    let mut body = body;
    resolve_references(&st, s.cp, &mut body).await?;
    let mut current = render_one(&st, &existing).await?;
    if kind == K::Certificate && body.get("snis").is_none() {
        // Without `snis` a PATCH leaves the certificate's SNIs alone.
        if let Value::Object(m) = &mut current {
            m.remove("snis");
        }
    }
    if kind == K::Service && body.get("url").is_some() {
        // The shorthand replaces the parts it covers; the old ones must not linger.
        if let Value::Object(m) = &mut current {
            for f in ["protocol", "host", "port", "path"] {
                m.remove(f);
            }
        }
    }
    let merged = merge_patch(&current, body)?;
    let v = validate(&st, s.cp, kind, existing.id, merged, existing.created_at)?;
    save(&st, &v, Some(&existing.body)).await?;
    crate::sync::settle(&st).await;
    Ok(ok(StatusCode::OK, render_one(&st, &v.entity).await?))
}

async fn delete(st: AdminState, s: Scope, kind: K, parent: Option<K>) -> KResult {
    writable(&st, "delete", kind)?;
    let nested = parent.is_some();
    let parent = resolve_parent(&st, &s, parent).await?;
    let existing = match find(&st, s.cp, kind, s.param("item")?).await {
        Ok(e) => e,
        // Kong: deleting something absent is a success at the top level, a 404 when nested.
        Err(KongError::NotFound) if !nested => return Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => return Err(e),
    };
    if !belongs(&existing, parent) {
        return Err(KongError::NotFound);
    }
    match st
        .identity
        .store()
        .delete_core_entity(s.cp, kind, existing.id)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(store_error(e, &existing)),
    }
    crate::sync::settle(&st).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_nest_and_repeat() {
        let mut v = form_to_json(
            b"name=2024&config.ttl=5&paths=/a&methods=GET&methods=POST&enabled=false&port=80&username=0042",
        )
        .unwrap();
        coerce_form(&mut v);
        assert_eq!(
            v,
            json!({"name": "2024", "config": {"ttl": 5}, "paths": ["/a"],
                   "methods": ["GET", "POST"], "enabled": false, "port": 80, "username": "0042"})
        );
        let deep = format!("{}=1", vec!["a"; 100].join("."));
        assert!(form_to_json(deep.as_bytes()).is_err());
    }

    #[test]
    fn tag_filters() {
        let and = parse_tags("a,b").unwrap();
        assert!(and.matches(&json!({"tags": ["a", "b", "c"]})));
        assert!(!and.matches(&json!({"tags": ["a"]})));
        let or = parse_tags("a/b").unwrap();
        assert!(or.matches(&json!({"tags": ["b"]})));
        assert!(parse_tags("a,b/c").is_err());
        assert!(parse_tags("").is_err());
        assert!(parse_tags("1,2,3,4,5,6").is_err());
    }
}
