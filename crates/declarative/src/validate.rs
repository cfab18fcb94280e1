//! Merging state files and checking them offline: the file's own keys, every entity with the
//! Admin API's rules, the references between entities, and the names they must not share.
//!
//! References are resolved within the files given: decK's `default_lookup_tags` (entities
//! referred to but kept elsewhere) is not read yet, so a route must find its service in the
//! files.

use crate::state::{CertificateWithSnis, Known, State, derived_id, plugin_key};
use crate::{Document, Problem};
use gatehouse_core::gateway::certificates::{CaCertificate, Certificate};
use gatehouse_core::gateway::{Consumer, EntityKind, Plugin, PluginSchemas, Route, Service};
use gatehouse_core::kong_schema::FieldErrors;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use uuid::Uuid;

/// The `_format_version`s decK writes; older files that are otherwise valid are read alike.
const FORMAT_VERSIONS: &[&str] = &["1.1", "2.1", "3.0"];
/// Top-level keys that hold entities Gatehouse has.
const KINDS: &[&str] = &[
    "services",
    "routes",
    "consumers",
    "plugins",
    "certificates",
    "ca_certificates",
];
/// Top-level keys about the file itself.
const META: &[&str] = &[
    "_format_version",
    "_transform",
    "_info",
    "_konnect",
    "_workspace",
];
/// Kinds decK knows that Gatehouse does not have (yet): refused by name, never dropped.
const NOT_YET: &[&str] = &[
    "upstreams",
    "consumer_groups",
    "vaults",
    "keys",
    "key_sets",
    "partials",
    "filter_chains",
    "custom_entities",
    "degraphql_routes",
    "rbac_roles",
    "licenses",
    "service_packages",
    "auth_servers",
];
/// Consumer credentials decK nests under consumers; Gatehouse has no credential plugins.
const CREDENTIALS: &[&str] = &[
    "keyauth_credentials",
    "hmacauth_credentials",
    "jwt_secrets",
    "basicauth_credentials",
    "oauth2_credentials",
    "acls",
    "mtls_auth_credentials",
    "groups",
];

/// How many entities of each kind the files hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Services.
    pub services: usize,
    /// Routes, nested or not.
    pub routes: usize,
    /// Consumers.
    pub consumers: usize,
    /// Plugins, nested or not.
    pub plugins: usize,
    /// Certificates.
    pub certificates: usize,
    /// SNIs listed by certificates.
    pub snis: usize,
    /// CA certificates.
    pub ca_certificates: usize,
}

/// Kong's cache key of a plugin instance: its name, service, route and consumer.
type PluginKey = (String, Option<Uuid>, Option<Uuid>, Option<Uuid>);

/// An entity as found: where it is, and its fields without the nested lists.
struct Item {
    file: usize,
    path: String,
    body: Map<String, Value>,
}

/// Where a plugin or route is attached.
#[derive(Default)]
struct Scope {
    service: Option<Attach>,
    route: Option<Attach>,
    consumer: Option<Attach>,
}

/// A nested entity's parent (its index), or what a top-level entity's field names.
enum Attach {
    Parent(usize),
    Named(Value),
}

#[derive(Default)]
struct Collected {
    services: Vec<Item>,
    routes: Vec<(Item, Scope)>,
    consumers: Vec<Item>,
    plugins: Vec<(Item, Scope)>,
    certificates: Vec<Item>,
    ca_certificates: Vec<Item>,
    defaults: HashMap<String, Map<String, Value>>,
    /// `_info.select_tags`, with the file that first gave them.
    select_tags: Option<(Vec<String>, usize)>,
    control_plane: Option<String>,
}

/// Ids and unique names of one kind.
#[derive(Default)]
struct Index {
    kind: Option<EntityKind>,
    ids: Vec<Uuid>,
    by_id: HashMap<Uuid, usize>,
    by_name: HashMap<String, usize>,
}

impl Index {
    fn find(&self, key: &str) -> Option<usize> {
        match Uuid::parse_str(key) {
            Ok(id) => self.by_id.get(&id).copied(),
            Err(_) => self.by_name.get(key).copied(),
        }
    }
}

struct Checker<'a> {
    docs: &'a [Document],
    problems: Vec<Problem>,
    /// `_info.default_lookup_tags`: the kinds whose references may name entities kept on
    /// the node rather than in the files, and the tags those carry.
    lookup_tags: HashMap<EntityKind, Vec<String>>,
    /// The node's entities with those tags (None offline: such references are trusted).
    lookup: Option<&'a Known>,
}

impl Checker<'_> {
    fn problem(&mut self, file: usize, path: &str, message: impl Into<String>) {
        let file = self
            .docs
            .get(file)
            .map(|d| d.file.clone())
            .unwrap_or_default();
        self.problems.push(Problem {
            file,
            line: None,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn field_errors(&mut self, item: &Item, errors: &FieldErrors) {
        for leaf in errors.leaves() {
            let leaf = leaf.strip_prefix("@entity: ").unwrap_or(&leaf).to_owned();
            self.problem(item.file, &item.path, leaf);
        }
    }

    /// The objects of the list `value` at `path`, each with its path.
    fn objects(
        &mut self,
        file: usize,
        path: &str,
        value: Value,
    ) -> Vec<(String, Map<String, Value>)> {
        let Value::Array(items) = value else {
            self.problem(file, path, "expected an array");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("{path}[{i}]");
            match item {
                Value::Object(map) => out.push((at, map)),
                _ => self.problem(file, &at, "expected an object"),
            }
        }
        out
    }

    /// Takes the nested list `key` out of `body`.
    fn nested(
        &mut self,
        file: usize,
        path: &str,
        body: &mut Map<String, Value>,
        key: &str,
    ) -> Vec<(String, Map<String, Value>)> {
        match body.remove(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => self.objects(file, &format!("{path}.{key}"), v),
        }
    }

    fn collect(&mut self, out: &mut Collected) {
        let mut version: Option<(String, usize)> = None;
        for (file, doc) in self.docs.iter().enumerate() {
            let Value::Object(top) = doc.content.clone() else {
                self.problem(
                    file,
                    "",
                    "expected a mapping of `_format_version`, `services`, … at the top level",
                );
                continue;
            };
            match top.get("_format_version") {
                None => self.problem(file, "_format_version", "required field missing"),
                Some(Value::String(v)) if FORMAT_VERSIONS.contains(&v.as_str()) => match &version {
                    Some((first, at)) if first != v => {
                        let other = self.docs[*at].file.clone();
                        self.problem(
                            file,
                            "_format_version",
                            format!("'{v}' differs from '{first}' in {other}"),
                        );
                    }
                    Some(_) => {}
                    None => version = Some((v.clone(), file)),
                },
                Some(other) => self.problem(
                    file,
                    "_format_version",
                    format!(
                        "expected one of: {}; got {other}",
                        FORMAT_VERSIONS.join(", ")
                    ),
                ),
            }
            for (key, value) in top {
                match key.as_str() {
                    "_format_version" => {}
                    "_transform" if !value.is_boolean() => self.problem(file, &key, "expected a boolean"),
                    "_transform" => {}
                    "_workspace" => self.problem(
                        file,
                        &key,
                        "Gatehouse has control planes, not workspaces: drop `_workspace` and pass --control-plane",
                    ),
                    "_konnect" => self.konnect(file, &value, out),
                    "_info" => self.info(file, value, out),
                    "services" => self.services(file, value, out),
                    "routes" => {
                        for (path, body) in self.objects(file, "routes", value) {
                            self.route(file, path, body, None, out);
                        }
                    }
                    "consumers" => {
                        for (path, mut body) in self.objects(file, "consumers", value) {
                            let index = out.consumers.len();
                            for (p, b) in self.nested(file, &path, &mut body, "plugins") {
                                let scope = Scope { consumer: Some(Attach::Parent(index)), ..Scope::default() };
                                self.plugin(file, p, b, scope, out);
                            }
                            for credential in CREDENTIALS {
                                if body.remove(*credential).is_some() {
                                    self.problem(
                                        file,
                                        &format!("{path}.{credential}"),
                                        "not supported by Gatehouse yet (it has no credential plugins)",
                                    );
                                }
                            }
                            out.consumers.push(Item { file, path, body });
                        }
                    }
                    "plugins" => {
                        for (path, body) in self.objects(file, "plugins", value) {
                            self.plugin(file, path, body, Scope::default(), out);
                        }
                    }
                    "certificates" => {
                        for (path, body) in self.objects(file, "certificates", value) {
                            out.certificates.push(Item { file, path, body });
                        }
                    }
                    "ca_certificates" => {
                        for (path, body) in self.objects(file, "ca_certificates", value) {
                            out.ca_certificates.push(Item { file, path, body });
                        }
                    }
                    k if NOT_YET.contains(&k) => self.problem(file, k, "not supported by Gatehouse yet"),
                    k => self.problem(
                        file,
                        k,
                        format!("unknown key; expected one of: {}, {}", META.join(", "), KINDS.join(", ")),
                    ),
                }
            }
        }
    }

    fn konnect(&mut self, file: usize, value: &Value, out: &mut Collected) {
        let ok = value.as_object().is_some_and(|m| {
            m.iter().all(|(k, v)| {
                matches!(k.as_str(), "control_plane_name" | "runtime_group_name") && v.is_string()
            })
        });
        if !ok {
            self.problem(
                file,
                "_konnect",
                "expected an object with a string `control_plane_name`",
            );
        }
        let name = value
            .get("control_plane_name")
            .or_else(|| value.get("runtime_group_name"))
            .and_then(Value::as_str);
        if let Some(name) = name {
            match &out.control_plane {
                Some(first) if first != name => self.problem(
                    file,
                    "_konnect.control_plane_name",
                    format!("'{name}' differs from '{first}' in another file"),
                ),
                _ => out.control_plane = Some(name.to_owned()),
            }
        }
    }

    fn info(&mut self, file: usize, value: Value, out: &mut Collected) {
        let Value::Object(info) = value else {
            self.problem(file, "_info", "expected an object");
            return;
        };
        for (key, value) in info {
            let path = format!("_info.{key}");
            match key.as_str() {
                "select_tags" => {
                    let ok = value.as_array().is_some_and(|tags| {
                        tags.iter()
                            .all(|t| t.as_str().is_some_and(|s| !s.is_empty()))
                    });
                    if !ok {
                        self.problem(file, &path, "expected an array of non-empty strings");
                        continue;
                    }
                    let tags: Vec<String> = value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect();
                    match &out.select_tags {
                        Some((first, at)) if !same_set(first, &tags) => {
                            let other = self.docs[*at].file.clone();
                            self.problem(
                                file,
                                &path,
                                format!("{tags:?} differ from {first:?} in {other}: files synced together share their select_tags"),
                            );
                        }
                        Some(_) => {}
                        None => out.select_tags = Some((tags, file)),
                    }
                }
                "defaults" => {
                    let Value::Object(kinds) = value else {
                        self.problem(file, &path, "expected an object");
                        continue;
                    };
                    for (kind, fields) in kinds {
                        let at = format!("{path}.{kind}");
                        match (kind.as_str(), fields) {
                            ("service" | "route", Value::Object(f)) => {
                                out.defaults.entry(kind.clone()).or_default().extend(f);
                            }
                            ("service" | "route", _) => {
                                self.problem(file, &at, "expected an object")
                            }
                            ("upstream" | "target", _) => {
                                self.problem(file, &at, "not supported by Gatehouse yet")
                            }
                            _ => self.problem(file, &at, "unknown key; expected service or route"),
                        }
                    }
                }
                "default_lookup_tags" => self.lookup_tags(file, &path, value),
                _ => self.problem(
                    file,
                    &path,
                    "unknown key; expected select_tags, defaults or default_lookup_tags",
                ),
            }
        }
    }

    fn lookup_tags(&mut self, file: usize, path: &str, value: Value) {
        let Value::Object(kinds) = value else {
            self.problem(file, path, "expected an object");
            return;
        };
        for (kind, tags) in kinds {
            let at = format!("{path}.{kind}");
            let kind = match kind.as_str() {
                "services" => EntityKind::Service,
                "routes" => EntityKind::Route,
                "consumers" => EntityKind::Consumer,
                "consumer_groups" => {
                    self.problem(file, &at, "not supported by Gatehouse yet");
                    continue;
                }
                _ => {
                    self.problem(
                        file,
                        &at,
                        "unknown key; expected services, routes or consumers",
                    );
                    continue;
                }
            };
            let tags: Option<Vec<String>> = tags.as_array().and_then(|a| {
                a.iter()
                    .map(|t| t.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
                    .collect()
            });
            match tags {
                Some(tags) if !tags.is_empty() => {
                    self.lookup_tags.entry(kind).or_default().extend(tags);
                }
                _ => self.problem(file, &at, "expected a non-empty array of non-empty strings"),
            }
        }
    }

    fn services(&mut self, file: usize, value: Value, out: &mut Collected) {
        for (path, mut body) in self.objects(file, "services", value) {
            let index = out.services.len();
            for (p, b) in self.nested(file, &path, &mut body, "routes") {
                self.route(file, p, b, Some(index), out);
            }
            for (p, b) in self.nested(file, &path, &mut body, "plugins") {
                let scope = Scope {
                    service: Some(Attach::Parent(index)),
                    ..Scope::default()
                };
                self.plugin(file, p, b, scope, out);
            }
            out.services.push(Item { file, path, body });
        }
    }

    fn route(
        &mut self,
        file: usize,
        path: String,
        mut body: Map<String, Value>,
        service: Option<usize>,
        out: &mut Collected,
    ) {
        let index = out.routes.len();
        for (p, b) in self.nested(file, &path, &mut body, "plugins") {
            let scope = Scope {
                route: Some(Attach::Parent(index)),
                ..Scope::default()
            };
            self.plugin(file, p, b, scope, out);
        }
        let service = match service {
            Some(i) => Some(Attach::Parent(i)),
            None => body
                .remove("service")
                .filter(|v| !v.is_null())
                .map(Attach::Named),
        };
        out.routes.push((
            Item { file, path, body },
            Scope {
                service,
                ..Scope::default()
            },
        ));
    }

    fn plugin(
        &mut self,
        file: usize,
        path: String,
        mut body: Map<String, Value>,
        mut scope: Scope,
        out: &mut Collected,
    ) {
        for (key, slot) in [
            ("service", &mut scope.service),
            ("route", &mut scope.route),
            ("consumer", &mut scope.consumer),
        ] {
            match body.remove(key) {
                None | Some(Value::Null) => {}
                Some(v) if slot.is_some() => self.problem(
                    file,
                    &format!("{path}.{key}"),
                    format!("the plugin is nested, so its {key} is its parent's; got {v}"),
                ),
                Some(v) => *slot = Some(Attach::Named(v)),
            }
        }
        out.plugins.push((Item { file, path, body }, scope));
    }

    /// Ids and unique names of `items`; `names` are the fields that must be unique among
    /// them. An item without an id takes the id `known` gives one of its `keys`, else one
    /// derived from its first key when that is a unique name, else a random one.
    fn index(
        &mut self,
        kind: EntityKind,
        items: &[&Item],
        names: &[&str],
        keys: &[&str],
        known: &Known,
    ) -> Index {
        let mut index = Index {
            kind: Some(kind),
            ..Index::default()
        };
        let mut seen: HashMap<String, String> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let id = match item.body.get("id") {
                None | Some(Value::Null) => {
                    let key = keys
                        .iter()
                        .find_map(|k| item.body.get(*k).and_then(Value::as_str))
                        .map(str::trim);
                    let found = keys.iter().find_map(|k| {
                        let v = item.body.get(*k).and_then(Value::as_str)?;
                        known.get(kind, v.trim())
                    });
                    match (found, key) {
                        (Some(id), _) => id,
                        // Only a unique name makes a unique id.
                        (None, Some(key)) if !names.is_empty() => derived_id(kind, key),
                        _ => Uuid::new_v4(),
                    }
                }
                Some(Value::String(s)) => match Uuid::parse_str(s) {
                    Ok(id) => id,
                    Err(_) => {
                        self.problem(
                            item.file,
                            &format!("{}.id", item.path),
                            "expected a valid UUID",
                        );
                        Uuid::new_v4()
                    }
                },
                Some(_) => {
                    self.problem(item.file, &format!("{}.id", item.path), "expected a string");
                    Uuid::new_v4()
                }
            };
            // Ids derived from one name collide when the name does: that is reported once, as
            // the name.
            let given = item.body.get("id").is_some_and(|v| !v.is_null());
            if let Some(first) = index.by_id.insert(id, i)
                && given
            {
                let other = items[first].path.clone();
                self.problem(
                    item.file,
                    &format!("{}.id", item.path),
                    format!("{id} is also the id of {other}"),
                );
            }
            index.ids.push(id);
            for field in names {
                let Some(name) = item.body.get(*field).and_then(Value::as_str) else {
                    continue;
                };
                match seen.get(&format!("{field}={name}")) {
                    Some(other) => {
                        let other = other.clone();
                        self.problem(
                            item.file,
                            &format!("{}.{field}", item.path),
                            format!("'{name}' is also the {field} of {other}"),
                        );
                    }
                    None => {
                        seen.insert(format!("{field}={name}"), item.path.clone());
                        index.by_name.insert(name.to_owned(), i);
                    }
                }
            }
        }
        index
    }

    /// The id `attach` points to among `kind`'s entities, or a problem at `item`'s `field`.
    fn resolve(
        &mut self,
        item: &Item,
        field: &str,
        attach: &Attach,
        kind: &str,
        index: &Index,
    ) -> Option<Uuid> {
        let key = match attach {
            Attach::Parent(i) => return index.ids.get(*i).copied(),
            Attach::Named(Value::String(s)) => s.clone(),
            Attach::Named(Value::Object(m)) => match (m.get("id"), m.get("name")) {
                (Some(Value::String(id)), _) => id.clone(),
                (None, Some(Value::String(name))) => name.clone(),
                _ => {
                    self.problem(
                        item.file,
                        &format!("{}.{field}", item.path),
                        "expected a name, an id, or {id} or {name}",
                    );
                    return None;
                }
            },
            Attach::Named(_) => {
                self.problem(
                    item.file,
                    &format!("{}.{field}", item.path),
                    "expected a name, an id, or {id} or {name}",
                );
                return None;
            }
        };
        let found = index.find(&key).and_then(|i| index.ids.get(i).copied());
        if found.is_some() {
            return found;
        }
        let lookup = index
            .kind
            .and_then(|k| Some((k, self.lookup_tags.get(&k)?.clone())));
        let Some((entity_kind, tags)) = lookup else {
            self.problem(
                item.file,
                &format!("{}.{field}", item.path),
                format!("no {kind} '{key}' in the files"),
            );
            return None;
        };
        match self.lookup {
            // Offline, an entity kept on the node cannot be checked: it is taken on trust.
            None => Some(derived_id(entity_kind, &key)),
            Some(node) => {
                let found = node.get(entity_kind, &key);
                if found.is_none() {
                    self.problem(
                        item.file,
                        &format!("{}.{field}", item.path),
                        format!(
                            "no {kind} '{key}' in the files, nor on the node with the tags {tags:?} (_info.default_lookup_tags)"
                        ),
                    );
                }
                found
            }
        }
    }
}

/// `problems` with the line of each path in its file.
fn with_lines(mut problems: Vec<Problem>, docs: &[Document]) -> Vec<Problem> {
    for doc in docs {
        if !problems
            .iter()
            .any(|p| p.file == doc.file && p.line.is_none())
        {
            continue;
        }
        let lines = crate::lines::lines(&doc.text);
        for p in problems
            .iter_mut()
            .filter(|p| p.file == doc.file && p.line.is_none() && !p.path.is_empty())
        {
            p.line = crate::lines::line_of(&lines, &p.path);
        }
    }
    problems
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().all(|t| b.contains(t)) && b.iter().all(|t| a.contains(t))
}

fn apply_defaults(body: &mut Map<String, Value>, defaults: Option<&Map<String, Value>>) {
    for (k, v) in defaults.into_iter().flatten() {
        body.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

/// Checks `docs` as one configuration. Every problem is reported, not only the first.
pub fn validate(docs: &[Document], schemas: &dyn PluginSchemas) -> Result<Summary, Vec<Problem>> {
    resolve(docs, schemas, &Options::default()).map(|s| s.summary())
}

/// How [`resolve`] gives ids and tags.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// The ids a node gives to entity names already.
    pub known: Known,
    /// `--select-tag`: the tags marking the entities the files manage. Files that name their
    /// own (`_info.select_tags`) must name the same.
    pub select_tags: Vec<String>,
    /// The node's entities that references may name under `_info.default_lookup_tags`
    /// ([`State::lookup`]); None offline.
    pub lookup: Option<Known>,
}

/// Checks `docs` as one configuration and resolves it into entities with ids, references
/// and defaults, as the Admin API would store them. Every problem is reported.
pub fn resolve(
    docs: &[Document],
    schemas: &dyn PluginSchemas,
    options: &Options,
) -> Result<State, Vec<Problem>> {
    let known = &options.known;
    let mut c = Checker {
        docs,
        problems: Vec::new(),
        lookup_tags: HashMap::new(),
        lookup: options.lookup.as_ref(),
    };
    let mut found = Collected::default();
    c.collect(&mut found);
    let Collected {
        mut services,
        mut routes,
        consumers,
        plugins,
        certificates,
        ca_certificates,
        defaults,
        select_tags,
        control_plane,
    } = found;
    let select_tags = match select_tags {
        Some((tags, at))
            if !options.select_tags.is_empty() && !same_set(&tags, &options.select_tags) =>
        {
            c.problem(
                at,
                "_info.select_tags",
                format!(
                    "{tags:?} differ from --select-tag {:?}",
                    options.select_tags
                ),
            );
            tags
        }
        Some((tags, _)) => tags,
        None => options.select_tags.clone(),
    };
    for s in &mut services {
        apply_defaults(&mut s.body, defaults.get("service"));
    }
    for (r, _) in &mut routes {
        apply_defaults(&mut r.body, defaults.get("route"));
    }

    let service_index = c.index(
        EntityKind::Service,
        &services.iter().collect::<Vec<_>>(),
        &["name"],
        &["name"],
        known,
    );
    let route_index = c.index(
        EntityKind::Route,
        &routes.iter().map(|(r, _)| r).collect::<Vec<_>>(),
        &["name"],
        &["name"],
        known,
    );
    let consumer_index = c.index(
        EntityKind::Consumer,
        &consumers.iter().collect::<Vec<_>>(),
        &["username", "custom_id"],
        &["username", "custom_id"],
        known,
    );
    let certificate_index = c.index(
        EntityKind::Certificate,
        &certificates.iter().collect::<Vec<_>>(),
        &[],
        &["cert"],
        known,
    );
    let ca_index = c.index(
        EntityKind::CaCertificate,
        &ca_certificates.iter().collect::<Vec<_>>(),
        &[],
        &["cert"],
        known,
    );
    let plugin_index = c.index(
        EntityKind::Plugin,
        &plugins.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        &["instance_name"],
        &[],
        known,
    );

    let mut state = State {
        select_tags: select_tags.clone(),
        control_plane,
        lookup_tags: c.lookup_tags.clone().into_iter().collect(),
        ..State::default()
    };
    for (item, id) in ca_certificates.iter().zip(&ca_index.ids) {
        match CaCertificate::from_input(*id, Value::Object(item.body.clone()), 0, 0) {
            Ok(ca) => state.ca_certificates.push(ca),
            Err(e) => c.field_errors(item, &e),
        }
    }

    let mut sni_owner: HashMap<String, String> = HashMap::new();
    for (item, id) in certificates.iter().zip(&certificate_index.ids) {
        let mut body = item.body.clone();
        // decK lists SNIs as objects (`- name: example.com`); the Admin API takes names.
        if let Some(Value::Array(snis)) = body.get_mut("snis") {
            for sni in snis.iter_mut() {
                if let Some(name) = sni.get("name").cloned() {
                    *sni = name;
                }
            }
        }
        match Certificate::from_input(*id, Value::Object(body), 0, 0) {
            Ok(input) => {
                let mut snis = input.snis.unwrap_or_default();
                for name in &snis {
                    if let Some(other) = sni_owner.insert(name.clone(), item.path.clone()) {
                        c.problem(
                            item.file,
                            &format!("{}.snis", item.path),
                            format!("'{name}' is also an SNI of {other}"),
                        );
                    }
                }
                snis.sort();
                snis.dedup();
                state.certificates.push(CertificateWithSnis {
                    certificate: input.certificate,
                    snis,
                });
            }
            Err(e) => c.field_errors(item, &e),
        }
    }

    for (item, id) in services.iter().zip(&service_index.ids) {
        let mut body = item.body.clone();
        if let Some(cert) = body.remove("client_certificate").filter(|v| !v.is_null())
            && let Some(id) = c.resolve(
                item,
                "client_certificate",
                &Attach::Named(cert),
                "certificate",
                &certificate_index,
            )
        {
            body.insert("client_certificate".into(), json!({ "id": id }));
        }
        if let Some(Value::Array(cas)) = body.get("ca_certificates") {
            let mut ids = Vec::new();
            for ca in cas.clone() {
                ids.extend(c.resolve(
                    item,
                    "ca_certificates",
                    &Attach::Named(ca),
                    "CA certificate",
                    &ca_index,
                ));
            }
            body.insert("ca_certificates".into(), json!(ids));
        }
        match Service::from_input(*id, Value::Object(body), 0, 0) {
            Ok(s) => state.services.push(s),
            Err(e) => c.field_errors(item, &e),
        }
    }

    for ((item, scope), id) in routes.iter().zip(&route_index.ids) {
        let mut body = item.body.clone();
        if let Some(attach) = &scope.service
            && let Some(id) = c.resolve(item, "service", attach, "service", &service_index)
        {
            body.insert("service".into(), json!({ "id": id }));
        }
        match Route::from_input(*id, Value::Object(body), 0, 0) {
            Ok(r) => state.routes.push(r),
            Err(e) => c.field_errors(item, &e),
        }
    }

    for (item, id) in consumers.iter().zip(&consumer_index.ids) {
        match Consumer::from_input(*id, Value::Object(item.body.clone()), 0, 0) {
            Ok(consumer) => state.consumers.push(consumer),
            Err(e) => c.field_errors(item, &e),
        }
    }

    // Kong keeps one instance of a plugin per scope (its cache key).
    let mut scopes: HashMap<PluginKey, String> = HashMap::new();
    for ((item, scope), given) in plugins.iter().zip(&plugin_index.ids) {
        let mut body = item.body.clone();
        let mut ids = [None, None, None];
        for (slot, (field, attach, index)) in ids.iter_mut().zip([
            ("service", &scope.service, &service_index),
            ("route", &scope.route, &route_index),
            ("consumer", &scope.consumer, &consumer_index),
        ]) {
            if let Some(attach) = attach {
                *slot = c.resolve(item, field, attach, field, index);
                if let Some(id) = slot {
                    body.insert(field.into(), json!({ "id": id }));
                }
            }
        }
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let [service, route, consumer] = ids;
        if let Some(other) =
            scopes.insert((name.clone(), service, route, consumer), item.path.clone())
        {
            c.problem(item.file, &item.path, format!("plugin '{name}' is configured twice on the same service, route and consumer (also {other})"));
        }
        // A plugin has no name to be found by: it is found by its scope, as Kong's cache key.
        let id = if item.body.get("id").is_some_and(|v| !v.is_null()) {
            *given
        } else {
            let key = plugin_key(&name, service, route, consumer);
            known
                .get(EntityKind::Plugin, &key)
                .unwrap_or_else(|| derived_id(EntityKind::Plugin, &key))
        };
        match Plugin::from_input(id, Value::Object(body), 0, 0, schemas) {
            Ok(p) => state.plugins.push(p),
            Err(e) => c.field_errors(item, &e),
        }
    }

    if c.problems.is_empty() {
        state.add_tags(&select_tags);
        Ok(state)
    } else {
        Err(with_lines(c.problems, docs))
    }
}

#[cfg(test)]
mod tests;
