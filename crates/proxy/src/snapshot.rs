//! The immutable configuration a proxy request runs on: the compiled router, each route's
//! service and resolved plugin chain, and the consumers by id, username and custom id.
//!
//! Built from a control plane's stored entities whenever they change, then swapped in
//! atomically; requests in flight keep the snapshot they started with. Everything a request
//! needs is computed here, once, so the hot path only looks things up.

use crate::plugin::{Plugin, PluginFactory, Registry};
use crate::tls::{CertPair, SniTable};
use gatehouse_core::gateway::certificates::{Certificate, Sni};
use gatehouse_core::gateway::{
    Consumer, CoreEntity, EntityKind, Plugin as PluginEntity, Route, Service,
};
use gatehouse_router::{CompiledRoute, PathHandling, RouteSpec, Router};
use http::HeaderValue;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A stored entity does not parse (database edited by hand?), or its route cannot be
    /// compiled.
    #[error("stored {kind} {id} is invalid: {reason}")]
    Entity {
        /// Its kind.
        kind: &'static str,
        /// Its id.
        id: Uuid,
        /// What is wrong.
        reason: String,
    },
}

/// A service, ready for the proxy.
#[derive(Debug)]
pub struct ServiceRuntime {
    /// The entity.
    pub service: Service,
    /// `host[:port]` for the upstream `Host` header (port omitted when it is the default).
    pub host_header: HeaderValue,
    /// The keep-alive connections to the service's host (pools outlive snapshots).
    pub pool: Arc<crate::upstream::HostPool>,
    /// The upstream is spoken to over TLS (`protocol: https`).
    pub tls: bool,
}

/// One plugin instance, ready to run.
pub struct PluginInstance {
    /// The instance's id.
    pub id: Uuid,
    /// The plugin's name.
    pub name: &'static str,
    /// The plugin.
    pub plugin: Arc<dyn Plugin>,
}

/// One plugin's place in a route's chain: which instance applies, depending on the consumer
/// authenticated by the time the plugin runs (spec B.6).
pub struct PluginSlot {
    /// The plugin's name.
    pub name: &'static str,
    /// The plugin's priority.
    pub priority: i32,
    /// The most specific instance without a consumer scope.
    pub fallback: Option<Arc<PluginInstance>>,
    /// Per consumer: the instance that applies when that consumer is authenticated, already
    /// compared with `fallback` by Kong's lookup order.
    pub by_consumer: HashMap<Uuid, Arc<PluginInstance>>,
}

impl PluginSlot {
    /// The instance that applies for `consumer`, if any.
    pub fn resolve(&self, consumer: Option<Uuid>) -> Option<&Arc<PluginInstance>> {
        consumer
            .and_then(|c| self.by_consumer.get(&c))
            .or(self.fallback.as_ref())
    }
}

/// A route, ready for the proxy.
pub struct RouteRuntime {
    /// The entity (shared with the next snapshot's runtime when only its chain or service
    /// changes).
    pub route: Arc<Route>,
    /// Its service (None: the route has none; plugins may still answer).
    pub service: Option<Arc<ServiceRuntime>>,
    /// Upstream path construction version.
    pub path_handling: PathHandling,
    /// Whether the route accepts plain-text requests (`http` or `ws` in its protocols).
    pub accepts_http: bool,
    /// The plugin chain, highest priority first.
    pub plugins: Vec<PluginSlot>,
}

/// Consumers by every key a plugin looks them up by.
#[derive(Default)]
pub struct Consumers {
    /// By id.
    pub by_id: HashMap<Uuid, Arc<Consumer>>,
    /// By username.
    pub by_username: HashMap<String, Arc<Consumer>>,
    /// By custom id.
    pub by_custom_id: HashMap<String, Arc<Consumer>>,
}

impl Consumers {
    /// Files `c` under each of its keys.
    pub fn insert(&mut self, c: Arc<Consumer>) {
        if let Some(u) = &c.username {
            self.by_username.insert(u.clone(), c.clone());
        }
        if let Some(u) = &c.custom_id {
            self.by_custom_id.insert(u.clone(), c.clone());
        }
        self.by_id.insert(c.id, c);
    }
}

/// A control plane's configuration, compiled.
pub struct Snapshot {
    /// The control plane.
    pub control_plane_id: Uuid,
    /// The compiled router; match ids index `routes`.
    pub router: Router,
    /// Routes in the router, by router id.
    pub routes: Vec<Arc<RouteRuntime>>,
    /// Consumers.
    pub consumers: Arc<Consumers>,
    /// The certificates the TLS listener serves, by SNI.
    pub tls: Arc<SniTable>,
    /// When it was built.
    pub built_at: std::time::Instant,
}

impl Snapshot {
    /// An empty configuration (every request gets 404).
    pub fn empty(control_plane_id: Uuid) -> Self {
        Self {
            control_plane_id,
            router: Router::assemble([]),
            routes: Vec::new(),
            consumers: Arc::default(),
            tls: Arc::default(),
            built_at: std::time::Instant::now(),
        }
    }
}

/// What the last snapshot was built from, kept to build the next one: every entity's parsed
/// and compiled form, and every route's runtime. A part is reused while its entity is the
/// very allocation it was made from (`Arc::ptr_eq`), so a source that hands over the same
/// `Arc` for an unchanged entity pays only for what changed. Plugin instances also carry
/// over, with their state, when a changed plugin entity kept its configuration.
#[derive(Default)]
pub struct BuildCache {
    services: IdMap<Kept<Arc<ServiceRuntime>>>,
    routes: IdMap<KeptRoute>,
    consumers: IdMap<Kept<Arc<Consumer>>>,
    consumer_index: Arc<Consumers>,
    plugins: IdMap<Kept<Option<Arc<ActivePlugin>>>>,
    /// Certificates ready to serve; `None` for one that cannot be (logged when built).
    certificates: IdMap<Kept<Option<Arc<CertPair>>>>,
    /// CA certificates as applied (what `https` services were built against).
    ca_certificates: IdMap<Arc<CoreEntity>>,
}

/// Maps by entity id, rebuilt on every change: SipHash was an eighth of applying one change
/// at 10,000 routes. The keys come from the configuration, not from clients.
type IdMap<V> = HashMap<Uuid, V, foldhash::fast::RandomState>;

fn sized<V>(n: usize) -> IdMap<V> {
    IdMap::with_capacity_and_hasher(n, Default::default())
}

impl BuildCache {
    /// An empty cache: the next build parses everything.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A part built from `entity`.
struct Kept<T> {
    entity: Arc<CoreEntity>,
    value: T,
}

impl<T: Clone> Kept<T> {
    /// The part, when `entity` is the one it was built from.
    fn reuse(this: Option<&Self>, entity: &Arc<CoreEntity>) -> Option<T> {
        this.filter(|k| Arc::ptr_eq(&k.entity, entity))
            .map(|k| k.value.clone())
    }
}

/// A route's parts.
struct KeptRoute {
    entity: Arc<CoreEntity>,
    runtime: Arc<RouteRuntime>,
    /// Compiled when the route first enters the router.
    compiled: Option<Arc<CompiledRoute>>,
}

/// An enabled plugin this build knows, with its instance.
struct ActivePlugin {
    entity: PluginEntity,
    factory: Arc<dyn PluginFactory>,
    instance: Arc<PluginInstance>,
}

/// The routes whose plugin chains a build must resolve again.
#[derive(Default)]
struct Invalidated {
    all: bool,
    routes: HashSet<Uuid, foldhash::fast::RandomState>,
    services: HashSet<Uuid, foldhash::fast::RandomState>,
}

impl Invalidated {
    /// Every route `p` may apply to.
    fn add(&mut self, p: &PluginEntity) {
        match (p.route, p.service) {
            (Some(r), _) => {
                self.routes.insert(r.id);
            }
            (None, Some(s)) => {
                self.services.insert(s.id);
            }
            (None, None) => self.all = true,
        }
    }

    fn covers(&self, route: &Route) -> bool {
        self.all
            || self.routes.contains(&route.id)
            || route.service.is_some_and(|s| self.services.contains(&s.id))
    }
}

fn parse<T: serde::de::DeserializeOwned>(e: &CoreEntity) -> Result<T, SnapshotError> {
    // Read in place: cloning every body cost a third of a rebuild at 10,000 routes.
    T::deserialize(&e.body).map_err(|err| SnapshotError::Entity {
        kind: e.kind.as_str(),
        id: e.id,
        reason: err.to_string(),
    })
}

/// Builds a snapshot from a control plane's entities, in the order given (it breaks ties
/// between routes of equal priority and age). `cache` holds what the previous build made;
/// on success it holds this one's, on error it is left as it was.
pub fn build<'a>(
    control_plane_id: Uuid,
    entities: impl IntoIterator<Item = &'a Arc<CoreEntity>>,
    registry: &Registry,
    cache: &mut BuildCache,
    upstreams: &crate::upstream::UpstreamPools,
) -> Result<Snapshot, SnapshotError> {
    let mut next = BuildCache {
        services: sized(cache.services.len()),
        routes: sized(cache.routes.len()),
        consumers: sized(cache.consumers.len()),
        consumer_index: Arc::default(),
        plugins: sized(cache.plugins.len()),
        certificates: sized(cache.certificates.len()),
        ca_certificates: sized(cache.ca_certificates.len()),
    };
    let mut snis = Vec::new();
    let mut service_entities = Vec::new();
    // A certificate or CA certificate changed: `https` services are built again (their TLS
    // clients may trust or present it).
    let mut tls_changed = false;
    let mut route_entities = Vec::new();
    let mut consumers_changed = false;
    let mut plugin_order = Vec::new();
    let mut invalidated = Invalidated::default();
    for e in entities {
        match e.kind {
            // Built once every certificate is known (below).
            EntityKind::Service => service_entities.push(e),
            EntityKind::Route => route_entities.push(e),
            EntityKind::Consumer => {
                let consumer = match Kept::reuse(cache.consumers.get(&e.id), e) {
                    Some(c) => c,
                    None => {
                        consumers_changed = true;
                        Arc::new(parse::<Consumer>(e)?)
                    }
                };
                next.consumers.insert(
                    e.id,
                    Kept {
                        entity: e.clone(),
                        value: consumer,
                    },
                );
            }
            EntityKind::Plugin => {
                let kept = cache.plugins.get(&e.id);
                let active = match Kept::reuse(kept, e) {
                    Some(a) => a,
                    None => {
                        let previous = kept.and_then(|k| k.value.as_deref());
                        let active = activate(parse::<PluginEntity>(e)?, previous, registry)?;
                        for p in previous.into_iter().chain(active.as_deref()) {
                            invalidated.add(&p.entity);
                        }
                        active
                    }
                };
                plugin_order.push(e.id);
                next.plugins.insert(
                    e.id,
                    Kept {
                        entity: e.clone(),
                        value: active,
                    },
                );
            }
            EntityKind::Certificate => {
                let pair = match Kept::reuse(cache.certificates.get(&e.id), e) {
                    Some(p) => p,
                    None => {
                        tls_changed = true;
                        certificate_pair(e)
                    }
                };
                next.certificates.insert(
                    e.id,
                    Kept {
                        entity: e.clone(),
                        value: pair,
                    },
                );
            }
            EntityKind::Sni => snis.push(parse::<Sni>(e)?),
            EntityKind::CaCertificate => {
                if !cache
                    .ca_certificates
                    .get(&e.id)
                    .is_some_and(|held| Arc::ptr_eq(held, e))
                {
                    tls_changed = true;
                }
                next.ca_certificates.insert(e.id, e.clone());
            }
        }
    }
    tls_changed |= next.certificates.len() != cache.certificates.len()
        || next.ca_certificates.len() != cache.ca_certificates.len();
    for e in service_entities {
        let reused = Kept::reuse(cache.services.get(&e.id), e).filter(|r| !(tls_changed && r.tls));
        let runtime = match reused {
            Some(r) => r,
            None => {
                let s: Service = parse(e)?;
                let tls = if s.uses_tls() {
                    let client_certificate = match s.client_certificate {
                        Some(fk) => match next.certificates.get(&fk.id) {
                            Some(k) => Some(parse::<Certificate>(&k.entity)?),
                            None => None,
                        },
                        None => None,
                    };
                    let ca = |id: Uuid| {
                        next.ca_certificates
                            .get(&id)
                            .and_then(|e| e.body.get("cert"))
                            .and_then(|c| c.as_str())
                            .map(str::to_owned)
                    };
                    let input = crate::tls::UpstreamTlsInput {
                        service: &s,
                        ca: &ca,
                        client_certificate: client_certificate.as_ref(),
                    };
                    Some(crate::tls::upstream_tls(&input).map_err(|reason| {
                        SnapshotError::Entity {
                            kind: "services",
                            id: e.id,
                            reason,
                        }
                    })?)
                } else {
                    None
                };
                let pool = upstreams.get(&s.host, s.port, s.connect_timeout, tls);
                Arc::new(service_runtime(s, e.id, pool)?)
            }
        };
        next.services.insert(
            e.id,
            Kept {
                entity: e.clone(),
                value: runtime,
            },
        );
    }
    // Plugins gone since the last build.
    for (id, kept) in &cache.plugins {
        if !next.plugins.contains_key(id)
            && let Some(p) = &kept.value
        {
            invalidated.add(&p.entity);
        }
    }
    let active = PluginIndex::new(
        plugin_order
            .iter()
            .filter_map(|id| next.plugins.get(id).and_then(|k| k.value.as_deref())),
    );

    next.consumer_index = if consumers_changed || next.consumers.len() != cache.consumers.len() {
        let mut index = Consumers::default();
        for kept in next.consumers.values() {
            index.insert(kept.value.clone());
        }
        Arc::new(index)
    } else {
        cache.consumer_index.clone()
    };

    let mut compiled = Vec::with_capacity(route_entities.len());
    let mut runtimes = Vec::with_capacity(route_entities.len());
    for e in route_entities {
        let kept = cache
            .routes
            .get(&e.id)
            .filter(|k| Arc::ptr_eq(&k.entity, e));
        let route = match kept {
            Some(k) => k.runtime.route.clone(),
            None => Arc::new(parse::<Route>(e)?),
        };
        let service = route
            .service
            .and_then(|s| next.services.get(&s.id))
            .map(|k| k.value.clone());
        let runtime = match kept {
            Some(k)
                if !invalidated.covers(&k.runtime.route)
                    && ptr_eq_opt(&k.runtime.service, &service) =>
            {
                k.runtime.clone()
            }
            _ => {
                let chain = resolve_chain(&route, service.as_deref(), &active);
                Arc::new(RouteRuntime {
                    path_handling: if route.path_handling == "v1" {
                        PathHandling::V1
                    } else {
                        PathHandling::V0
                    },
                    accepts_http: route.accepts_plain(),
                    route,
                    service,
                    plugins: chain,
                })
            }
        };
        // Routes of disabled services are left out of the router (Kong: they answer 404).
        let r = &runtime.route;
        let routed = runtime.service.as_ref().is_none_or(|s| s.service.enabled);
        let mut route_compiled = kept.and_then(|k| k.compiled.clone());
        if routed {
            let c = match route_compiled {
                Some(c) => c,
                None => {
                    let c = CompiledRoute::compile(&route_spec(r)).map_err(|err| {
                        SnapshotError::Entity {
                            kind: "routes",
                            id: e.id,
                            reason: err.to_string(),
                        }
                    })?;
                    Arc::new(c)
                }
            };
            route_compiled = Some(c.clone());
            compiled.push(c);
            runtimes.push(runtime.clone());
        }
        next.routes.insert(
            e.id,
            KeptRoute {
                entity: e.clone(),
                runtime,
                compiled: route_compiled,
            },
        );
    }
    let router = Router::assemble((0u64..).zip(compiled.iter().map(|c| &**c)));
    let tls = if snis.is_empty() {
        Arc::default()
    } else {
        let pairs: HashMap<Uuid, Arc<CertPair>> = next
            .certificates
            .iter()
            .filter_map(|(id, k)| Some((*id, k.value.clone()?)))
            .collect();
        Arc::new(crate::tls::table(
            &pairs,
            snis.iter().map(|s| (s.name.as_str(), s.certificate.id)),
        ))
    };
    let snapshot = Snapshot {
        control_plane_id,
        router,
        routes: runtimes,
        consumers: next.consumer_index.clone(),
        tls,
        built_at: std::time::Instant::now(),
    };
    *cache = next;
    Ok(snapshot)
}

/// A certificate ready to serve, or `None` (logged) when its PEM does not load: one bad
/// certificate must not keep the rest of the configuration from applying.
fn certificate_pair(e: &CoreEntity) -> Option<Arc<CertPair>> {
    let loaded = parse::<Certificate>(e)
        .map_err(|err| err.to_string())
        .and_then(|c| CertPair::from_certificate(&c));
    match loaded {
        Ok(pair) => Some(Arc::new(pair)),
        Err(reason) => {
            tracing::error!(certificate = %e.id, %reason, "certificate cannot be served; skipped");
            None
        }
    }
}

fn ptr_eq_opt<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// `p` ready to run, or `None` when it does not run (disabled, not for http, or unknown to
/// this build). The instance of `previous` carries over when the configuration is the same.
fn activate(
    p: PluginEntity,
    previous: Option<&ActivePlugin>,
    registry: &Registry,
) -> Result<Option<Arc<ActivePlugin>>, SnapshotError> {
    if !p.enabled || !p.protocols.iter().any(|x| x == "http" || x == "https") {
        return Ok(None);
    }
    let Some(factory) = registry.get(&p.name).cloned() else {
        // A plugin this build does not know (written by a newer node): skip it loudly
        // rather than refusing the whole configuration.
        tracing::error!(plugin = %p.name, id = %p.id, "unknown plugin in configuration; skipped");
        return Ok(None);
    };
    let instance = match previous {
        Some(prev) if prev.entity.name == p.name && prev.entity.config == p.config => {
            prev.instance.clone()
        }
        _ => {
            let plugin = factory
                .build(&p.config)
                .map_err(|e| SnapshotError::Entity {
                    kind: "plugins",
                    id: p.id,
                    reason: e.0,
                })?;
            Arc::new(PluginInstance {
                id: p.id,
                name: factory.name(),
                plugin,
            })
        }
    };
    Ok(Some(Arc::new(ActivePlugin {
        entity: p,
        factory,
        instance,
    })))
}

fn route_spec(r: &Route) -> RouteSpec {
    RouteSpec {
        id: 0,
        methods: r.methods.clone().unwrap_or_default(),
        hosts: r.hosts.clone().unwrap_or_default(),
        paths: r.paths.clone().unwrap_or_default(),
        headers: r
            .headers
            .clone()
            .map(|h| h.into_iter().collect())
            .unwrap_or_default(),
        snis: r.snis.clone().unwrap_or_default(),
        websocket_only: r.websocket_only(),
        regex_priority: r.regex_priority,
        created_at: r.created_at,
    }
}

fn service_runtime(
    s: Service,
    id: Uuid,
    pool: Arc<crate::upstream::HostPool>,
) -> Result<ServiceRuntime, SnapshotError> {
    let host_header = if s.port == s.default_port() {
        s.host.clone()
    } else {
        format!("{}:{}", s.host, s.port)
    };
    let host_header = HeaderValue::from_str(&host_header).map_err(|_| SnapshotError::Entity {
        kind: "services",
        id,
        reason: "host is not a valid header value".into(),
    })?;
    Ok(ServiceRuntime {
        host_header,
        pool,
        tls: s.uses_tls(),
        service: s,
    })
}

/// Kong's lookup order (spec B.6), most specific first: Route+Service+Consumer, Route+Consumer,
/// Service+Consumer, Route+Service, Consumer, Route, Service, Global. `None` when the instance
/// does not apply to this route at all.
fn specificity(p: &PluginEntity, route: &Route, service: Option<&ServiceRuntime>) -> Option<u8> {
    let route_ok = p.route.is_none_or(|r| r.id == route.id);
    let service_ok = p
        .service
        .is_none_or(|s| service.is_some_and(|svc| svc.service.id == s.id));
    if !route_ok || !service_ok {
        return None;
    }
    Some(
        match (p.route.is_some(), p.service.is_some(), p.consumer.is_some()) {
            (true, true, true) => 0,
            (true, false, true) => 1,
            (false, true, true) => 2,
            (true, true, false) => 3,
            (false, false, true) => 4,
            (true, false, false) => 5,
            (false, true, false) => 6,
            (false, false, false) => 7,
        },
    )
}

/// The running plugins by the route or service they are scoped to, so that resolving a
/// route's chain looks only at the instances that may apply to it (a global change resolves
/// every chain again).
struct PluginIndex<'a> {
    /// Neither route nor service.
    unscoped: Vec<&'a ActivePlugin>,
    /// By route (whether or not they also name a service).
    by_route: IdMap<Vec<&'a ActivePlugin>>,
    /// By service, without a route.
    by_service: IdMap<Vec<&'a ActivePlugin>>,
}

impl<'a> PluginIndex<'a> {
    fn new(active: impl Iterator<Item = &'a ActivePlugin>) -> Self {
        let mut index = Self {
            unscoped: Vec::new(),
            by_route: sized(0),
            by_service: sized(0),
        };
        for p in active {
            match (p.entity.route, p.entity.service) {
                (Some(r), _) => index.by_route.entry(r.id).or_default().push(p),
                (None, Some(s)) => index.by_service.entry(s.id).or_default().push(p),
                (None, None) => index.unscoped.push(p),
            }
        }
        index
    }

    /// The instances that may apply to `route` of `service`.
    fn candidates(
        &self,
        route: &Route,
        service: Option<&ServiceRuntime>,
    ) -> impl Iterator<Item = &'a ActivePlugin> {
        let none = &[][..];
        let of_route = self.by_route.get(&route.id).map_or(none, Vec::as_slice);
        let of_service = service
            .and_then(|s| self.by_service.get(&s.service.id))
            .map_or(none, Vec::as_slice);
        self.unscoped
            .iter()
            .chain(of_route)
            .chain(of_service)
            .copied()
    }
}

fn resolve_chain(
    route: &Route,
    service: Option<&ServiceRuntime>,
    active: &PluginIndex<'_>,
) -> Vec<PluginSlot> {
    // name → (priority, best non-consumer (level, inst), per consumer best (level, inst))
    type Best = (u8, Arc<PluginInstance>);
    type Candidates = (i32, Option<Best>, HashMap<Uuid, Best>);
    // A route has a handful of plugins: a list beats a map.
    let mut by_name: Vec<(&'static str, Candidates)> = Vec::new();
    for a in active.candidates(route, service) {
        let (p, factory, inst) = (&a.entity, &a.factory, &a.instance);
        let Some(level) = specificity(p, route, service) else {
            continue;
        };
        let name = factory.name();
        let at = match by_name.iter().position(|(n, _)| *n == name) {
            Some(at) => at,
            None => {
                by_name.push((name, (factory.priority(), None, HashMap::new())));
                by_name.len() - 1
            }
        };
        let entry = &mut by_name[at].1;
        let better = |cur: &Option<&Best>| cur.is_none_or(|(l, _)| level < *l);
        match p.consumer {
            Some(c) => {
                if better(&entry.2.get(&c.id)) {
                    entry.2.insert(c.id, (level, inst.clone()));
                }
            }
            None => {
                if better(&entry.1.as_ref()) {
                    entry.1 = Some((level, inst.clone()));
                }
            }
        }
    }
    let mut slots: Vec<PluginSlot> = by_name
        .into_iter()
        .map(|(name, (priority, fallback, per_consumer))| {
            let fallback_level = fallback.as_ref().map_or(u8::MAX, |(l, _)| *l);
            let by_consumer = per_consumer
                .into_iter()
                .filter(|(_, (l, _))| *l < fallback_level)
                .map(|(c, (_, inst))| (c, inst))
                .collect();
            PluginSlot {
                name,
                priority,
                fallback: fallback.map(|(_, i)| i),
                by_consumer,
            }
        })
        .collect();
    // Higher priority first; equal priorities in reverse alphabetical order (as Kong).
    slots.sort_by(|a, b| b.priority.cmp(&a.priority).then(b.name.cmp(a.name)));
    slots
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
