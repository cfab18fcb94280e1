//! Kong's DB-less endpoints, on a control plane's core entities: `POST /config` replaces the
//! whole configuration with a decK-format file, in one transaction, or answers 400 with
//! Kong's `flattened_errors` and changes nothing; `GET /config` returns the configuration as
//! such a file. `serve --declarative-config` loads its file through [`replace`] too.

use crate::AdminState;
use crate::core_entities::{Scope, internal, render, store_error, validate};
use crate::kong_error::KongError;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gatehouse_core::gateway::{CoreEntity, EntityKind as K};
use gatehouse_declarative::plan::{Action, Counts, Plan};
use gatehouse_declarative::state::State as Config;
use gatehouse_declarative::{Document, Options, Problem};
use gatehouse_store::CoreWrite;
use http::StatusCode;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The routes, mounted with the core entities (Kong's root and Konnect's paths).
pub fn routes() -> Router<AdminState> {
    Router::new().route("/config", get(get_config).post(post_config))
}

/// Why a configuration was not applied.
#[derive(Debug)]
pub enum ConfigError {
    /// The file has problems; nothing was written.
    Invalid(Vec<Problem>, Vec<Document>),
    /// The store refused or failed; nothing was written.
    Store(KongError),
}

impl From<KongError> for ConfigError {
    fn from(e: KongError) -> Self {
        Self::Store(e)
    }
}

/// The control plane's configuration as the Admin API shows it, and its stored entities.
async fn current(
    st: &AdminState,
    cp: Uuid,
) -> Result<(Config, HashMap<Uuid, CoreEntity>, Vec<CoreEntity>), KongError> {
    let all = st
        .identity
        .store()
        .core_entities(cp, None)
        .await
        .map_err(internal)?;
    let (snis, entities): (Vec<CoreEntity>, Vec<CoreEntity>) =
        all.into_iter().partition(|e| e.kind == K::Sni);
    let shown = render(st, cp, &entities).await?;
    let mut lists: HashMap<K, Vec<Value>> = HashMap::new();
    for (e, body) in entities.iter().zip(shown) {
        lists.entry(e.kind).or_default().push(body);
    }
    let config = Config::from_api(lists).map_err(|e| {
        tracing::error!(error = %e, "a stored entity does not read back");
        KongError::Internal
    })?;
    Ok((
        config,
        entities.into_iter().map(|e| (e.id, e)).collect(),
        snis,
    ))
}

/// One write, owning its entity.
enum Write {
    Insert(CoreEntity),
    Update(CoreEntity, Value),
    Delete(K, Uuid),
}

/// Makes control plane `cp` hold exactly what `docs` say, in one transaction: every entity
/// created, updated or deleted lands, or none does.
pub async fn replace(
    st: &AdminState,
    cp: Uuid,
    docs: Vec<Document>,
) -> Result<Counts, ConfigError> {
    let started = std::time::Instant::now();
    let (current, stored, snis) = current(st, cp).await?;
    let read = started.elapsed();
    let options = Options {
        known: current.known(),
        ..Options::default()
    };
    let wanted = match gatehouse_declarative::resolve(&docs, st.gateway.registry.as_ref(), &options)
    {
        Ok(w) => w,
        Err(problems) => return Err(ConfigError::Invalid(problems, docs)),
    };
    let plan = Plan::new(&wanted, &current);
    let planned = started.elapsed();

    // SNIs are rows of their own: those the file does not keep go first (a name may move to
    // another certificate), those it adds come after their certificate.
    let want_snis: HashSet<(&str, Uuid)> = wanted
        .certificates
        .iter()
        .flat_map(|c| c.snis.iter().map(move |n| (n.as_str(), c.certificate.id)))
        .collect();
    let have_snis: HashSet<(&str, Uuid)> = snis
        .iter()
        .filter_map(|s| Some((s.endpoint_key.as_deref()?, s.certificate_id?)))
        .collect();
    let mut writes: Vec<Write> = snis
        .iter()
        .filter(|s| {
            let pair = s.endpoint_key.as_deref().zip(s.certificate_id);
            pair.is_none_or(|p| !want_snis.contains(&p))
        })
        .map(|s| Write::Delete(K::Sni, s.id))
        .collect();
    let now = gatehouse_core::Timestamp::now().unix_seconds();
    let mut counts = Counts::default();
    for change in &plan.changes {
        counts.add(change.action);
        let e = &change.entity;
        match change.action {
            Action::Delete => writes.push(Write::Delete(e.kind, e.id)),
            Action::Create | Action::Update => {
                let existing = stored.get(&e.id);
                let created_at = existing.map_or(now, |x| x.created_at);
                let mut body = e.write_body();
                if let Value::Object(m) = &mut body {
                    m.remove("snis");
                }
                let v =
                    validate(st, cp, e.kind, e.id, body, created_at).map_err(ConfigError::Store)?;
                writes.push(match existing {
                    Some(x) => Write::Update(v.entity, x.body.clone()),
                    None => Write::Insert(v.entity),
                });
                if e.kind == K::Certificate
                    && let Some(c) = wanted
                        .certificates
                        .iter()
                        .find(|c| c.certificate.id == e.id)
                {
                    for name in &c.snis {
                        if !have_snis.contains(&(name.as_str(), e.id)) {
                            let sni = gatehouse_core::gateway::certificates::Sni {
                                id: Uuid::new_v4(),
                                name: name.clone(),
                                certificate: gatehouse_core::gateway::ForeignKey { id: e.id },
                                tags: None,
                                created_at: now,
                                updated_at: now,
                            };
                            writes.push(Write::Insert(sni.to_entity(cp)));
                        }
                    }
                }
            }
        }
    }
    if writes.is_empty() {
        return Ok(counts);
    }
    let borrowed: Vec<CoreWrite<'_>> = writes
        .iter()
        .map(|w| match w {
            Write::Insert(e) => CoreWrite::Insert(e),
            Write::Update(e, read) => CoreWrite::Update(e, read),
            Write::Delete(kind, id) => CoreWrite::Delete(cp, *kind, *id),
        })
        .collect();
    let validated = started.elapsed();
    let result = st.identity.store().write_core_entities(&borrowed).await;
    let written = started.elapsed();
    if let Err((i, e)) = result {
        return Err(ConfigError::Store(match writes.get(i) {
            Some(Write::Insert(x) | Write::Update(x, _)) => store_error(e, x),
            _ => internal(e),
        }));
    }
    crate::sync::settle(st).await;
    tracing::debug!(
        read_ms = read.as_millis() as u64,
        planned_ms = planned.as_millis() as u64,
        validated_ms = validated.as_millis() as u64,
        written_ms = written.as_millis() as u64,
        applied_ms = started.elapsed().as_millis() as u64,
        writes = writes.len(),
        "configuration replaced"
    );
    Ok(counts)
}

/// The largest `POST /config` body: a state file's limit.
const MAX_CONFIG_BYTES: usize = gatehouse_declarative::MAX_FILE_BYTES;

async fn post_config(State(st): State<AdminState>, scope: Scope, req: Request) -> Response {
    if gatehouse_listener::body::announced_too_large(req.headers(), MAX_CONFIG_BYTES) {
        return KongError::Refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large".into(),
        )
        .into_response();
    }
    let bytes = match axum::body::to_bytes(req.into_body(), MAX_CONFIG_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return KongError::BadRequest(format!("the body could not be read: {e}"))
                .into_response();
        }
    };
    let cp = scope.cp;
    let applied = in_background(async move {
        let doc = parse(&bytes).map_err(|p| ConfigError::Invalid(vec![p], Vec::new()))?;
        replace(&st, cp, vec![doc]).await
    })
    .await;
    match applied {
        Ok(c) => (
            StatusCode::CREATED,
            axum::Json(json!({"created": c.created, "updated": c.updated, "deleted": c.deleted})),
        )
            .into_response(),
        Err(ConfigError::Invalid(problems, docs)) => invalid(&problems, &docs).into_response(),
        Err(ConfigError::Store(e)) => e.into_response(),
    }
}

/// Runs `work` (a whole configuration's parsing, checking, writing and compiling: seconds
/// of CPU at 10,000 services) on a thread of its own at a lower CPU priority than the proxy's
/// workers, so that on a busy machine requests in flight keep their latency while it runs.
async fn in_background<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ConfigError>> + Send + 'static,
) -> Result<T, ConfigError> {
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("gatehouse-config".into())
        .spawn(move || {
            // Best effort: without the permission the work simply runs at normal priority.
            let _ = rustix::process::setpriority_process(
                rustix::process::Pid::from_raw(rustix::thread::gettid().as_raw_nonzero().get()),
                BACKGROUND_NICE,
            );
            let _ = tx.send(handle.block_on(work));
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a thread to apply a configuration");
        return Err(ConfigError::Store(KongError::Internal));
    }
    rx.await.unwrap_or_else(|_| {
        tracing::error!("the thread applying a configuration ended without an answer");
        Err(ConfigError::Store(KongError::Internal))
    })
}

/// The nice value of the thread that applies a whole configuration (the process runs at 0).
const BACKGROUND_NICE: i32 = 10;

/// The body as a state file: YAML or JSON, or Kong's `{"config": "<the file as text>"}`.
fn parse(bytes: &[u8]) -> Result<Document, Problem> {
    // Kong's POST /config takes the file as it is: no `${{ env }}` templating on the server.
    let mut doc = gatehouse_declarative::parse("config", bytes)?;
    if let Some(Value::String(text)) = doc.content.get("config")
        && doc.content.get("_format_version").is_none()
    {
        let text = text.clone();
        doc = gatehouse_declarative::parse("config", text.as_bytes())?;
    }
    Ok(doc)
}

/// Kong's answer to an invalid declarative configuration: code 14, with `flattened_errors`
/// (one entry per entity, each with its errors) and `fields` for the file's own keys.
fn invalid(problems: &[Problem], docs: &[Document]) -> (StatusCode, axum::Json<Value>) {
    let mut fields = Map::new();
    let mut by_entity: Vec<(String, Vec<Value>)> = Vec::new();
    for p in problems {
        let Some(end) = p.path.rfind(']') else {
            let key = if p.path.is_empty() {
                "@entity".to_owned()
            } else {
                p.path.clone()
            };
            fields.insert(key, Value::String(p.message.clone()));
            continue;
        };
        let (entity_path, rest) = p.path.split_at(end + 1);
        let error = match rest.strip_prefix('.') {
            Some(field) => json!({"type": "field", "field": field, "message": p.message}),
            None => match p.message.split_once(": ") {
                Some((field, message)) if !field.contains(' ') => {
                    json!({"type": "field", "field": field, "message": message})
                }
                _ => json!({"type": "entity", "message": p.message}),
            },
        };
        match by_entity.iter_mut().find(|(path, _)| path == entity_path) {
            Some((_, errors)) => errors.push(error),
            None => by_entity.push((entity_path.to_owned(), vec![error])),
        }
    }
    let content = docs.first().map(|d| &d.content);
    let flattened: Vec<Value> = by_entity
        .into_iter()
        .map(|(path, errors)| {
            let entity = content
                .and_then(|c| at_path(c, &path))
                .cloned()
                .unwrap_or(Value::Null);
            let kind = path
                .rsplit('.')
                .next()
                .and_then(|last| last.split('[').next())
                .unwrap_or_default();
            let name = ["name", "username", "custom_id"]
                .iter()
                .find_map(|k| entity.get(*k).cloned());
            let mut out = json!({
                "entity_type": kind.strip_suffix('s').unwrap_or(kind),
                "entity_path": path,
                "errors": errors,
                "entity": entity,
            });
            if let Some(n) = name {
                out["entity_name"] = n;
            }
            if let Some(id) = out["entity"].get("id").cloned() {
                out["entity_id"] = id;
            }
            if let Some(tags) = out["entity"].get("tags").cloned() {
                out["entity_tags"] = tags;
            }
            out
        })
        .collect();
    let lines: Vec<String> = problems
        .iter()
        .map(|p| {
            if p.path.is_empty() {
                p.message.clone()
            } else {
                format!("{}: {}", p.path, p.message)
            }
        })
        .collect();
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "code": 14,
            "name": "invalid declarative configuration",
            "message": format!("declarative config is invalid: {}", lines.join("; ")),
            "fields": fields,
            "flattened_errors": flattened,
        })),
    )
}

/// The value at `services[0].routes[1]` in `v`.
fn at_path<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    let mut at = v;
    for segment in path.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((k, i)) => (k, i.strip_suffix(']')?.parse::<usize>().ok()),
            None => (segment, None),
        };
        at = at.get(key)?;
        if let Some(i) = index {
            at = at.get(i)?;
        }
    }
    Some(at)
}

async fn get_config(State(st): State<AdminState>, scope: Scope) -> Result<Response, KongError> {
    let (config, _, _) = current(&st, scope.cp).await?;
    let file = gatehouse_declarative::dump::dump(
        &config,
        &gatehouse_declarative::dump::DumpOptions {
            with_id: true,
            ..Default::default()
        },
    );
    let text = yaml_serde::to_string(&file).map_err(|e| {
        tracing::error!(error = %e, "writing the configuration as YAML failed");
        KongError::Internal
    })?;
    Ok(axum::Json(json!({ "config": text })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_flatten_by_entity_with_kongs_fields() {
        let doc = gatehouse_declarative::parse(
            "config",
            b"_format_version: '3.0'\nservices:\n  - name: s\n    host: h\n    routes:\n      - name: r\n        paths: [x]\n",
        )
        .unwrap();
        let problems = vec![
            Problem {
                file: "config".into(),
                line: None,
                path: "services[0].routes[0]".into(),
                message: "paths: should start with: /".into(),
            },
            Problem {
                file: "config".into(),
                line: None,
                path: "whatever".into(),
                message: "unknown key".into(),
            },
        ];
        let (status, axum::Json(body)) = invalid(&problems, &[doc]);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], 14);
        assert_eq!(body["fields"], json!({"whatever": "unknown key"}));
        let f = &body["flattened_errors"][0];
        assert_eq!(f["entity_type"], "route");
        assert_eq!(f["entity_name"], "r");
        assert_eq!(f["entity"]["paths"], json!(["x"]));
        assert_eq!(
            f["errors"],
            json!([{"type": "field", "field": "paths", "message": "should start with: /"}])
        );
    }
}
