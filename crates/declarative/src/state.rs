//! A whole gateway configuration as typed entities: what a state file resolves to
//! ([`crate::resolve`]) and what a running node holds ([`State::from_api`]). Both sides of a
//! `diff` are a [`State`], so they are compared field by field in the Admin API's own form.

use gatehouse_core::gateway::certificates::{CaCertificate, Certificate};
use gatehouse_core::gateway::{Consumer, EntityKind, Plugin, Route, Service};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::HashMap;
use uuid::Uuid;

/// The kinds a state holds, in the order they are created: an entity only refers to kinds
/// before it. Deletes go in the reverse order.
pub const KINDS: [EntityKind; 6] = [
    EntityKind::CaCertificate,
    EntityKind::Certificate,
    EntityKind::Service,
    EntityKind::Route,
    EntityKind::Consumer,
    EntityKind::Plugin,
];

/// The namespace of the ids derived from entity names (UUID v5).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6761_7465_686f_5573_a8a3_6465_636b_6964);

/// The stable id of a new entity of `kind` keyed `key` (its name, username, or a plugin's
/// scope): the same file gives the same ids on every node.
pub fn derived_id(kind: EntityKind, key: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("{}:{key}", kind.as_str()).as_bytes())
}

/// Kong's cache key of a plugin instance, as text: its name and the ids it is scoped to.
pub fn plugin_key(
    name: &str,
    service: Option<Uuid>,
    route: Option<Uuid>,
    consumer: Option<Uuid>,
) -> String {
    let id = |i: Option<Uuid>| i.map(|i| i.to_string()).unwrap_or_default();
    format!("{name}|{}|{}|{}", id(service), id(route), id(consumer))
}

/// The ids a node already gives to entity keys, so that a file's entities without ids
/// update those entities instead of creating new ones (decK matches by name the same way).
#[derive(Debug, Default, Clone)]
pub struct Known(HashMap<(EntityKind, String), Uuid>);

impl Known {
    /// The id of the entity of `kind` keyed `key`.
    pub fn get(&self, kind: EntityKind, key: &str) -> Option<Uuid> {
        self.0.get(&(kind, key.to_owned())).copied()
    }

    fn insert(&mut self, kind: EntityKind, key: Option<&str>, id: Uuid) {
        if let Some(key) = key {
            self.0.insert((kind, key.to_owned()), id);
        }
    }
}

/// A certificate and the SNI names it serves (sorted).
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateWithSnis {
    /// The certificate.
    pub certificate: Certificate,
    /// Its SNIs.
    pub snis: Vec<String>,
}

/// A gateway configuration.
#[derive(Debug, Default, Clone)]
pub struct State {
    /// Services.
    pub services: Vec<Service>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Consumers.
    pub consumers: Vec<Consumer>,
    /// Plugin instances.
    pub plugins: Vec<Plugin>,
    /// Certificates with their SNIs.
    pub certificates: Vec<CertificateWithSnis>,
    /// CA certificates.
    pub ca_certificates: Vec<CaCertificate>,
    /// The tags that mark the entities this configuration manages (`_info.select_tags`).
    pub select_tags: Vec<String>,
    /// The control plane the file names (`_konnect.control_plane_name`).
    pub control_plane: Option<String>,
    /// `_info.default_lookup_tags`: kinds whose references may name entities kept on the
    /// node, and the tags those carry.
    pub lookup_tags: Vec<(EntityKind, Vec<String>)>,
}

/// One entity in the Admin API's form, for comparing and writing.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Its kind.
    pub kind: EntityKind,
    /// Its id.
    pub id: Uuid,
    /// How decK names it in its output (`service example-service`).
    pub label: String,
    /// Its fields as the Admin API shows them, without `id` and the timestamps; a
    /// certificate's carry its `snis`.
    pub body: Map<String, Value>,
}

impl Entity {
    /// Its tags.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.body
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }

    /// Whether it carries every one of `tags`.
    pub fn has_tags(&self, tags: &[String]) -> bool {
        tags.iter().all(|t| self.tags().any(|have| have == t))
    }

    /// The body to PUT: null fields left out (the Admin API's default for each is null).
    pub fn write_body(&self) -> Value {
        Value::Object(
            self.body
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }
}

/// `value` with every object's keys in alphabetical order, as decK writes files and diffs.
pub fn sorted(value: Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> =
                m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Whether `have` carries every one of `want`.
fn has_tags(have: &Option<Vec<String>>, want: &[String]) -> bool {
    want.iter()
        .all(|w| have.as_ref().is_some_and(|have| have.contains(w)))
}

fn body_of<T: Serialize>(entity: &T) -> Map<String, Value> {
    let mut body = match serde_json::to_value(entity) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for field in ["id", "created_at", "updated_at"] {
        body.remove(field);
    }
    body
}

/// An error reading a node's entities.
#[derive(Debug)]
pub struct ApiShapeError {
    /// The collection (`services`, …).
    pub kind: &'static str,
    /// What did not parse.
    pub message: String,
}

impl std::fmt::Display for ApiShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unexpected {} from the node: {}",
            self.kind, self.message
        )
    }
}

impl std::error::Error for ApiShapeError {}

fn parse_all<T: DeserializeOwned>(
    kind: EntityKind,
    items: Vec<Value>,
) -> Result<Vec<T>, ApiShapeError> {
    items
        .into_iter()
        .map(|v| {
            serde_json::from_value(v).map_err(|e| ApiShapeError {
                kind: kind.as_str(),
                message: e.to_string(),
            })
        })
        .collect()
}

impl State {
    /// The state a node holds, from its Admin API lists (every page of each collection).
    pub fn from_api(mut lists: HashMap<EntityKind, Vec<Value>>) -> Result<Self, ApiShapeError> {
        let mut take = |k| lists.remove(&k).unwrap_or_default();
        let certificates = take(EntityKind::Certificate)
            .into_iter()
            .map(|mut v| {
                let mut snis: Vec<String> = v
                    .as_object_mut()
                    .and_then(|m| m.remove("snis"))
                    .and_then(|s| serde_json::from_value(s).ok())
                    .unwrap_or_default();
                snis.sort();
                let certificate = serde_json::from_value(v).map_err(|e| ApiShapeError {
                    kind: "certificates",
                    message: e.to_string(),
                })?;
                Ok(CertificateWithSnis { certificate, snis })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            services: parse_all(EntityKind::Service, take(EntityKind::Service))?,
            routes: parse_all(EntityKind::Route, take(EntityKind::Route))?,
            consumers: parse_all(EntityKind::Consumer, take(EntityKind::Consumer))?,
            plugins: parse_all(EntityKind::Plugin, take(EntityKind::Plugin))?,
            certificates,
            ca_certificates: parse_all(EntityKind::CaCertificate, take(EntityKind::CaCertificate))?,
            select_tags: Vec::new(),
            control_plane: None,
            lookup_tags: Vec::new(),
        })
    }

    /// The keys of this state's entities, for giving a file's entities the same ids.
    pub fn known(&self) -> Known {
        let mut k = Known::default();
        for s in &self.services {
            k.insert(EntityKind::Service, s.name.as_deref(), s.id);
        }
        for r in &self.routes {
            k.insert(EntityKind::Route, r.name.as_deref(), r.id);
        }
        for c in &self.consumers {
            k.insert(EntityKind::Consumer, c.custom_id.as_deref(), c.id);
            k.insert(EntityKind::Consumer, c.username.as_deref(), c.id);
        }
        for p in &self.plugins {
            let key = plugin_key(
                &p.name,
                p.service.map(|f| f.id),
                p.route.map(|f| f.id),
                p.consumer.map(|f| f.id),
            );
            k.insert(EntityKind::Plugin, Some(&key), p.id);
        }
        for c in &self.certificates {
            k.insert(
                EntityKind::Certificate,
                Some(c.certificate.cert.trim()),
                c.certificate.id,
            );
        }
        for c in &self.ca_certificates {
            k.insert(EntityKind::CaCertificate, Some(c.cert.trim()), c.id);
        }
        k
    }

    /// The entities that references may name under `lookup_tags` (those of each kind that
    /// carry all of its tags), by name and by id.
    pub fn lookup(&self, lookup_tags: &[(EntityKind, Vec<String>)]) -> Known {
        let mut k = Known::default();
        let has = has_tags;
        for (kind, tags) in lookup_tags {
            match kind {
                EntityKind::Service => {
                    for s in self.services.iter().filter(|s| has(&s.tags, tags)) {
                        k.insert(*kind, s.name.as_deref(), s.id);
                        k.insert(*kind, Some(&s.id.to_string()), s.id);
                    }
                }
                EntityKind::Route => {
                    for r in self.routes.iter().filter(|r| has(&r.tags, tags)) {
                        k.insert(*kind, r.name.as_deref(), r.id);
                        k.insert(*kind, Some(&r.id.to_string()), r.id);
                    }
                }
                EntityKind::Consumer => {
                    for c in self.consumers.iter().filter(|c| has(&c.tags, tags)) {
                        k.insert(*kind, c.username.as_deref(), c.id);
                        k.insert(*kind, c.custom_id.as_deref(), c.id);
                        k.insert(*kind, Some(&c.id.to_string()), c.id);
                    }
                }
                _ => {}
            }
        }
        k
    }

    /// Keeps only the entities carrying every one of `tags` (all of them when empty), and
    /// without consumers (and the plugins scoped to one) when `skip_consumers`.
    pub fn select(&mut self, tags: &[String], skip_consumers: bool) {
        let has = has_tags;
        self.services.retain(|e| has(&e.tags, tags));
        self.routes.retain(|e| has(&e.tags, tags));
        self.consumers
            .retain(|e| !skip_consumers && has(&e.tags, tags));
        self.plugins
            .retain(|e| has(&e.tags, tags) && !(skip_consumers && e.consumer.is_some()));
        self.certificates.retain(|e| has(&e.certificate.tags, tags));
        self.ca_certificates.retain(|e| has(&e.tags, tags));
    }

    /// Adds `tags` to every entity that lacks them (decK tags a file's entities with its
    /// `select_tags`).
    pub fn add_tags(&mut self, tags: &[String]) {
        if tags.is_empty() {
            return;
        }
        fn add(t: &mut Option<Vec<String>>, tags: &[String]) {
            let have = t.get_or_insert_with(Vec::new);
            for tag in tags {
                if !have.contains(tag) {
                    have.push(tag.clone());
                }
            }
        }
        self.services
            .iter_mut()
            .for_each(|e| add(&mut e.tags, tags));
        self.routes.iter_mut().for_each(|e| add(&mut e.tags, tags));
        self.consumers
            .iter_mut()
            .for_each(|e| add(&mut e.tags, tags));
        self.plugins.iter_mut().for_each(|e| add(&mut e.tags, tags));
        self.certificates
            .iter_mut()
            .for_each(|e| add(&mut e.certificate.tags, tags));
        self.ca_certificates
            .iter_mut()
            .for_each(|e| add(&mut e.tags, tags));
    }

    /// How a service, route or consumer is named in output and in references: its name (a
    /// consumer's username, else its custom id), else its id.
    pub fn names(&self) -> HashMap<Uuid, String> {
        let mut names = HashMap::new();
        for s in &self.services {
            names.insert(s.id, s.name.clone().unwrap_or_else(|| s.id.to_string()));
        }
        for r in &self.routes {
            names.insert(r.id, r.name.clone().unwrap_or_else(|| r.id.to_string()));
        }
        for c in &self.consumers {
            let n = c.username.clone().or_else(|| c.custom_id.clone());
            names.insert(c.id, n.unwrap_or_else(|| c.id.to_string()));
        }
        names
    }

    /// How many entities of each kind it holds.
    pub fn summary(&self) -> crate::Summary {
        crate::Summary {
            services: self.services.len(),
            routes: self.routes.len(),
            consumers: self.consumers.len(),
            plugins: self.plugins.len(),
            certificates: self.certificates.len(),
            snis: self.certificates.iter().map(|c| c.snis.len()).sum(),
            ca_certificates: self.ca_certificates.len(),
        }
    }

    /// Every entity in the Admin API's form, kinds in [`KINDS`] order. `names` labels the
    /// entities a plugin or route refers to (this state's own, plus `others`).
    pub fn entities(&self, others: &State) -> Vec<Entity> {
        let mut names = others.names();
        names.extend(self.names());
        let name = |id: Uuid| names.get(&id).cloned().unwrap_or_else(|| id.to_string());
        let mut out = Vec::new();
        let entity = |kind: EntityKind, id: Uuid, label: String, body| Entity {
            kind,
            id,
            label,
            body,
        };
        for c in &self.ca_certificates {
            out.push(entity(
                EntityKind::CaCertificate,
                c.id,
                format!("ca_certificate {}", c.id),
                body_of(c),
            ));
        }
        for c in &self.certificates {
            let mut body = body_of(&c.certificate);
            body.insert("snis".into(), serde_json::json!(c.snis));
            out.push(entity(
                EntityKind::Certificate,
                c.certificate.id,
                format!("certificate {}", c.certificate.id),
                body,
            ));
        }
        for s in &self.services {
            out.push(entity(
                EntityKind::Service,
                s.id,
                format!("service {}", name(s.id)),
                body_of(s),
            ));
        }
        for r in &self.routes {
            out.push(entity(
                EntityKind::Route,
                r.id,
                format!("route {}", name(r.id)),
                body_of(r),
            ));
        }
        for c in &self.consumers {
            out.push(entity(
                EntityKind::Consumer,
                c.id,
                format!("consumer {}", name(c.id)),
                body_of(c),
            ));
        }
        for p in &self.plugins {
            let mut scope = Vec::new();
            for (what, fk) in [
                ("service", p.service),
                ("route", p.route),
                ("consumer", p.consumer),
            ] {
                if let Some(fk) = fk {
                    scope.push(format!("{what} {}", name(fk.id)));
                }
            }
            let label = if scope.is_empty() {
                format!("plugin {} (global)", p.name)
            } else {
                format!("plugin {} for {}", p.name, scope.join(" and "))
            };
            out.push(entity(EntityKind::Plugin, p.id, label, body_of(p)));
        }
        out
    }
}
