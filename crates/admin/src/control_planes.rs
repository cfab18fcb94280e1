//! `/v2/control-planes`: Konnect's Control Planes API v2 (spec D.2) — create, list with
//! `filter[...]`, `labels`, `sort` and pages, get, patch, delete. Errors are problem+json.

use crate::AdminState;
use crate::identity_api::{JsonBody, apply_labels};
use crate::list::{self, Allowed, EQ};
use crate::problem::ApiError;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gatehouse_core::Timestamp;
use gatehouse_core::gateway::{AUTH_TYPES, CLUSTER_TYPES, ControlPlane, ProxyUrl};
use gatehouse_core::list::FilterOp;
use gatehouse_core::validation::{InvalidParameter, ObjectReader};
use http::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

type ApiResult = Result<Response, ApiError>;

const NAME_OPS: &[FilterOp] = &[FilterOp::Eq, FilterOp::Neq, FilterOp::Contains];
const EQ_NEQ: &[FilterOp] = &[FilterOp::Eq, FilterOp::Neq];

const CONTROL_PLANE_LIST: Allowed = Allowed {
    filters: &[
        ("id", EQ),
        ("name", NAME_OPS),
        ("cluster_type", EQ_NEQ),
        ("labels", EQ),
    ],
    sorts: &["name", "created_at", "updated_at"],
};

/// The control-plane routes.
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/v2/control-planes", get(list_cps).post(create_cp))
        .route(
            "/v2/control-planes/{id}",
            get(get_cp).patch(patch_cp).delete(delete_cp),
        )
}

/// Creates the control plane `name` unless it exists; returns its id either way.
pub async fn ensure(store: &gatehouse_store::SharedStore, name: &str) -> Result<Uuid, ApiError> {
    if let Some(cp) = store
        .control_plane_by_name(name)
        .await
        .map_err(|e| ApiError::store(e, "a control plane"))?
    {
        return Ok(cp.id);
    }
    let now = Timestamp::now();
    let cp = ControlPlane {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        description: String::new(),
        labels: Default::default(),
        cluster_type: CLUSTER_TYPES[0].to_owned(),
        auth_type: AUTH_TYPES[0].to_owned(),
        cloud_gateway: false,
        proxy_urls: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    match store.create_control_plane(&cp).await {
        Ok(()) => Ok(cp.id),
        // Another node created it at the same moment.
        Err(gatehouse_store::StoreError::Conflict) => store
            .control_plane_by_name(name)
            .await
            .map_err(|e| ApiError::store(e, "a control plane"))?
            .map(|cp| cp.id)
            .ok_or(ApiError::Internal),
        Err(e) => Err(ApiError::store(e, "a control plane")),
    }
}

fn render(st: &AdminState, cp: &ControlPlane) -> Value {
    let endpoint = format!(
        "{}/v2/control-planes/{}/core-entities",
        st.gateway.admin_url, cp.id
    );
    let served = st.gateway.served_control_plane == Some(cp.id);
    let proxy_urls: Vec<Value> = if cp.proxy_urls.is_empty() && served {
        st.gateway.proxy_url.iter().map(|u| json!(u)).collect()
    } else {
        cp.proxy_urls.iter().map(|u| json!(u)).collect()
    };
    json!({
        "id": cp.id,
        "name": cp.name,
        "description": cp.description,
        "labels": cp.labels,
        "config": {
            "control_plane_endpoint": endpoint,
            "telemetry_endpoint": st.gateway.admin_url,
            "cluster_type": cp.cluster_type,
            "auth_type": cp.auth_type,
            "cloud_gateway": cp.cloud_gateway,
            "proxy_urls": proxy_urls,
        },
        "created_at": cp.created_at.to_rfc3339(),
        "updated_at": cp.updated_at.to_rfc3339(),
    })
}

fn read_choice(r: &mut ObjectReader, key: &str, choices: &[&str]) -> Option<String> {
    let v = r.string(key)?;
    if choices.contains(&v.as_str()) {
        Some(v)
    } else {
        r.problem(InvalidParameter::choices(key, choices));
        None
    }
}

fn read_proxy_urls(r: &mut ObjectReader) -> Option<Vec<ProxyUrl>> {
    let raw = r.raw("proxy_urls")?;
    let Value::Array(items) = raw else {
        r.problem(InvalidParameter::new(
            "proxy_urls",
            "is_array",
            "must be an array",
        ));
        return None;
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let host = item.get("host").and_then(Value::as_str);
        let port = item
            .get("port")
            .and_then(Value::as_u64)
            .filter(|p| (1..=65535).contains(p));
        let protocol = item
            .get("protocol")
            .and_then(Value::as_str)
            .filter(|p| *p == "http" || *p == "https");
        let extra = item.as_object().is_some_and(|m| {
            m.keys()
                .any(|k| !["host", "port", "protocol"].contains(&k.as_str()))
        });
        match (host, port, protocol) {
            (Some(h), Some(p), Some(pr)) if !h.is_empty() && !extra => out.push(ProxyUrl {
                host: h.to_owned(),
                port: p as u16,
                protocol: pr.to_owned(),
            }),
            _ => r.problem(InvalidParameter::new(
                format!("proxy_urls[{i}]"),
                "type",
                "must be an object with host (string), port (1-65535) and protocol (http or https)",
            )),
        }
    }
    Some(out)
}

async fn list_cps(State(st): State<AdminState>, RawQuery(raw): RawQuery) -> ApiResult {
    // Konnect takes `labels=key:value` as its own parameter; it becomes a labels filter.
    let mut rest = Vec::new();
    let mut labels = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        if k == "labels" {
            labels.push(v.into_owned());
        } else {
            rest.push((k.into_owned(), v.into_owned()));
        }
    }
    let rebuilt = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(rest)
        .finish();
    let mut q = list::parse(Some(&rebuilt), &CONTROL_PLANE_LIST)?;
    for l in labels {
        for pair in l.split(',') {
            q.filters.push(gatehouse_core::list::Filter {
                field: "labels".into(),
                op: FilterOp::Eq,
                value: pair.to_owned(),
            });
        }
    }
    let page = st
        .identity
        .store()
        .list_control_planes(&q)
        .await
        .map_err(|e| ApiError::store(e, "a control plane"))?;
    Ok(axum::Json(list::envelope(page, &q, |cp| render(&st, cp))).into_response())
}

async fn create_cp(State(st): State<AdminState>, JsonBody(body): JsonBody) -> ApiResult {
    let mut r = ObjectReader::new(body)?;
    let name = r.required_string("name", 1, 256);
    let description = r.string_len("description", 0, 250).unwrap_or_default();
    let cluster_type =
        read_choice(&mut r, "cluster_type", CLUSTER_TYPES).unwrap_or(CLUSTER_TYPES[0].into());
    let auth_type = read_choice(&mut r, "auth_type", AUTH_TYPES).unwrap_or(AUTH_TYPES[0].into());
    let cloud_gateway = r.bool("cloud_gateway").unwrap_or(false);
    let proxy_urls = read_proxy_urls(&mut r).unwrap_or_default();
    let labels = r.labels("labels", false);
    r.finish()?;
    let Some(name) = name else {
        return Err(ApiError::Internal);
    };
    let now = Timestamp::now();
    let mut cp = ControlPlane {
        id: Uuid::new_v4(),
        name,
        description,
        labels: Default::default(),
        cluster_type,
        auth_type,
        cloud_gateway,
        proxy_urls,
        created_at: now,
        updated_at: now,
    };
    if let Some(l) = labels {
        apply_labels(&mut cp.labels, l, true);
    }
    st.identity
        .store()
        .create_control_plane(&cp)
        .await
        .map_err(|e| ApiError::store(e, "a control plane"))?;
    Ok((StatusCode::CREATED, axum::Json(render(&st, &cp))).into_response())
}

pub(crate) async fn load(st: &AdminState, id: &str) -> Result<ControlPlane, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::NotFound)?;
    st.identity
        .store()
        .get_control_plane(id)
        .await
        .map_err(|e| ApiError::store(e, "a control plane"))?
        .ok_or(ApiError::NotFound)
}

async fn get_cp(State(st): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    let cp = load(&st, &id).await?;
    Ok(axum::Json(render(&st, &cp)).into_response())
}

async fn patch_cp(
    State(st): State<AdminState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let mut cp = load(&st, &id).await?;
    let mut r = ObjectReader::new(body)?;
    if let Some(v) = r.string_len("name", 1, 256) {
        // Nodes find `default` and their --control-plane by name at start: renaming those would
        // orphan their configuration on the next start.
        if v != cp.name && in_use(&st, &cp) {
            return Err(ApiError::Conflict(
                "this control plane is served by this node; it cannot be renamed while in use"
                    .into(),
            ));
        }
        cp.name = v;
    }
    if let Some(v) = r.string_len("description", 0, 250) {
        cp.description = v;
    }
    if let Some(v) = read_choice(&mut r, "auth_type", AUTH_TYPES) {
        cp.auth_type = v;
    }
    if let Some(v) = read_proxy_urls(&mut r) {
        cp.proxy_urls = v;
    }
    if let Some(l) = r.labels("labels", true) {
        apply_labels(&mut cp.labels, l, false);
    }
    r.finish()?;
    let read = cp.updated_at;
    cp.updated_at = Timestamp::now();
    st.identity
        .store()
        .update_control_plane(&cp, read)
        .await
        .map_err(|e| ApiError::store(e, "a control plane"))?;
    Ok(axum::Json(render(&st, &cp)).into_response())
}

/// Whether this node serves `cp` (its proxy, or the Kong Admin API paths).
fn in_use(st: &AdminState, cp: &ControlPlane) -> bool {
    st.gateway.served_control_plane == Some(cp.id) || st.gateway.default_control_plane == cp.id
}

async fn delete_cp(State(st): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    let cp = load(&st, &id).await?;
    if in_use(&st, &cp) {
        return Err(ApiError::Conflict(
            "this control plane is served by this node (its proxy or the Kong Admin API paths); it cannot be deleted while in use".into(),
        ));
    }
    st.identity
        .store()
        .delete_control_plane(cp.id)
        .await
        .map_err(|e| ApiError::store(e, "a control plane"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
