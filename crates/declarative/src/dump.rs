//! `dump`: a node's state written as a decK state file that `validate`s and `sync`s back with
//! an empty diff. Routes and plugins nest under the entity they belong to, as decK writes
//! them; named entities lose their ids (names find them again), unnamed ones keep theirs.

use crate::state::State;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use uuid::Uuid;

/// What a dump writes besides the entities.
#[derive(Debug, Default, Clone)]
pub struct DumpOptions {
    /// Keep every entity's id, named or not (decK's `--with-id`).
    pub with_id: bool,
    /// The tags the dump was selected by, written as `_info.select_tags`.
    pub select_tags: Vec<String>,
    /// The control plane dumped, written as `_konnect.control_plane_name`.
    pub control_plane: Option<String>,
}

fn fields<T: Serialize>(entity: &T, keep_id: bool) -> Map<String, Value> {
    let Ok(Value::Object(mut m)) = serde_json::to_value(entity) else {
        return Map::new();
    };
    m.retain(|k, v| !v.is_null() && k != "created_at" && k != "updated_at");
    if !keep_id {
        m.remove("id");
    }
    m
}

fn sort_key(m: &Map<String, Value>, keys: &[&str]) -> String {
    keys.iter()
        .find_map(|k| m.get(*k).and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned()
}

/// `state` as a decK state file.
pub fn dump(state: &State, opts: &DumpOptions) -> Value {
    // How a top-level plugin refers to an entity: its name, else its id.
    let refs = state.names();

    // Plugins go under their one scope, or at the top level with references.
    let mut nested: HashMap<Uuid, Vec<Map<String, Value>>> = HashMap::new();
    let mut top_plugins = Vec::new();
    for p in &state.plugins {
        let mut m = fields(p, opts.with_id);
        let scope: Vec<(&str, Uuid)> = [
            ("service", p.service),
            ("route", p.route),
            ("consumer", p.consumer),
        ]
        .into_iter()
        .filter_map(|(k, fk)| fk.map(|f| (k, f.id)))
        .collect();
        for (k, _) in &scope {
            m.remove(*k);
        }
        match scope.as_slice() {
            [(_, parent)] if refs.contains_key(parent) => {
                nested.entry(*parent).or_default().push(m)
            }
            _ => {
                for (k, id) in scope {
                    let r = refs.get(&id).cloned().unwrap_or_else(|| id.to_string());
                    m.insert(k.into(), Value::String(r));
                }
                top_plugins.push(m);
            }
        }
    }
    let mut take_plugins = |id: Uuid, m: &mut Map<String, Value>| {
        if let Some(mut ps) = nested.remove(&id) {
            ps.sort_by_key(|p| sort_key(p, &["name", "instance_name"]));
            m.insert(
                "plugins".into(),
                Value::Array(ps.into_iter().map(Value::Object).collect()),
            );
        }
    };

    let mut routes_of: HashMap<Uuid, Vec<Map<String, Value>>> = HashMap::new();
    let mut top_routes = Vec::new();
    for r in &state.routes {
        let mut m = fields(r, opts.with_id || r.name.is_none());
        m.remove("service");
        take_plugins(r.id, &mut m);
        match r.service {
            Some(fk) if refs.contains_key(&fk.id) => routes_of.entry(fk.id).or_default().push(m),
            Some(fk) => {
                m.insert("service".into(), json!({ "id": fk.id }));
                top_routes.push(m);
            }
            None => top_routes.push(m),
        }
    }

    let mut services = Vec::new();
    for s in &state.services {
        let mut m = fields(s, opts.with_id || s.name.is_none());
        if let Some(mut rs) = routes_of.remove(&s.id) {
            rs.sort_by_key(|r| sort_key(r, &["name", "id"]));
            m.insert(
                "routes".into(),
                Value::Array(rs.into_iter().map(Value::Object).collect()),
            );
        }
        take_plugins(s.id, &mut m);
        services.push(m);
    }
    services.sort_by_key(|s| sort_key(s, &["name", "id"]));

    let mut consumers = Vec::new();
    for c in &state.consumers {
        let mut m = fields(c, opts.with_id);
        take_plugins(c.id, &mut m);
        consumers.push(m);
    }
    consumers.sort_by_key(|c| sort_key(c, &["username", "custom_id"]));

    let mut certificates = Vec::new();
    for c in &state.certificates {
        let mut m = fields(&c.certificate, true);
        if !c.snis.is_empty() {
            let snis: Vec<Value> = c.snis.iter().map(|n| json!({ "name": n })).collect();
            m.insert("snis".into(), Value::Array(snis));
        }
        certificates.push(m);
    }
    certificates.sort_by_key(|c| sort_key(c, &["id"]));
    let mut ca_certificates: Vec<_> = state
        .ca_certificates
        .iter()
        .map(|c| fields(c, true))
        .collect();
    ca_certificates.sort_by_key(|c| sort_key(c, &["id"]));
    top_routes.sort_by_key(|r| sort_key(r, &["name", "id"]));
    top_plugins.sort_by_key(|p| sort_key(p, &["name", "instance_name"]));

    let mut doc = Map::new();
    doc.insert("_format_version".into(), json!("3.0"));
    if let Some(cp) = &opts.control_plane {
        doc.insert("_konnect".into(), json!({ "control_plane_name": cp }));
    }
    if !opts.select_tags.is_empty() {
        doc.insert("_info".into(), json!({ "select_tags": opts.select_tags }));
    }
    for (key, list) in [
        ("ca_certificates", ca_certificates),
        ("certificates", certificates),
        ("services", services),
        ("routes", top_routes),
        ("consumers", consumers),
        ("plugins", top_plugins),
    ] {
        if !list.is_empty() {
            doc.insert(
                key.into(),
                Value::Array(list.into_iter().map(Value::Object).collect()),
            );
        }
    }
    crate::state::sorted(Value::Object(doc))
}
