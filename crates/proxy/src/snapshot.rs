//! The immutable configuration a proxy request runs on: the compiled router, each route's
//! service and resolved plugin chain, and the consumers by id, username and custom id.
//!
//! Built from a control plane's stored entities whenever they change, then swapped in
//! atomically; requests in flight keep the snapshot they started with. Everything a request
//! needs is computed here, once, so the hot path only looks things up.

use crate::plugin::{Plugin, PluginFactory, Registry};
use gatehouse_core::gateway::{
    Consumer, CoreEntity, EntityKind, Plugin as PluginEntity, Route, Service,
};
use gatehouse_router::{PathHandling, RouteSpec, Router};
use http::HeaderValue;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A stored entity does not parse (database edited by hand?).
    #[error("stored {kind} {id} is invalid: {reason}")]
    Entity {
        /// Its kind.
        kind: &'static str,
        /// Its id.
        id: Uuid,
        /// What is wrong.
        reason: String,
    },
    /// The router refused the routes.
    #[error("router: {0}")]
    Router(#[from] gatehouse_router::RouterError),
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
    /// The entity.
    pub route: Route,
    /// Its service (None: the route has none; plugins may still answer).
    pub service: Option<Arc<ServiceRuntime>>,
    /// Upstream path construction version.
    pub path_handling: PathHandling,
    /// Whether the route accepts plain http.
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

/// A control plane's configuration, compiled.
pub struct Snapshot {
    /// The control plane.
    pub control_plane_id: Uuid,
    /// The compiled router; match ids index `routes`.
    pub router: Router,
    /// Routes in the router, by router id.
    pub routes: Vec<Arc<RouteRuntime>>,
    /// Consumers.
    pub consumers: Consumers,
    /// When it was built.
    pub built_at: std::time::Instant,
}

impl Snapshot {
    /// An empty configuration (every request gets 404).
    pub fn empty(control_plane_id: Uuid) -> Result<Self, SnapshotError> {
        Ok(Self {
            control_plane_id,
            router: Router::build(&[])?,
            routes: Vec::new(),
            consumers: Consumers::default(),
            built_at: std::time::Instant::now(),
        })
    }
}

/// Plugin instances kept from one snapshot to the next while their configuration is unchanged.
pub type InstanceCache = HashMap<Uuid, (Value, Arc<PluginInstance>)>;

fn parse<T: serde::de::DeserializeOwned>(e: &CoreEntity) -> Result<T, SnapshotError> {
    // Read in place: cloning every body cost a third of a rebuild at 10,000 routes.
    T::deserialize(&e.body).map_err(|err| SnapshotError::Entity {
        kind: e.kind.as_str(),
        id: e.id,
        reason: err.to_string(),
    })
}

/// Builds a snapshot from a control plane's entities. `cache` holds the previous snapshot's
/// plugin instances and is updated to this one's.
pub fn build<'a>(
    control_plane_id: Uuid,
    entities: impl IntoIterator<Item = &'a CoreEntity>,
    registry: &Registry,
    cache: &mut InstanceCache,
    upstreams: &crate::upstream::UpstreamPools,
) -> Result<Snapshot, SnapshotError> {
    let mut services = HashMap::new();
    let mut routes = Vec::new();
    let mut consumers = Consumers::default();
    let mut plugins = Vec::new();
    for e in entities {
        match e.kind {
            EntityKind::Service => {
                let s: Service = parse(e)?;
                let pool = upstreams.get(&s.host, s.port, s.connect_timeout);
                services.insert(s.id, Arc::new(service_runtime(s, e.id, pool)?));
            }
            EntityKind::Route => routes.push(parse::<Route>(e)?),
            EntityKind::Consumer => {
                let c = Arc::new(parse::<Consumer>(e)?);
                if let Some(u) = &c.username {
                    consumers.by_username.insert(u.clone(), c.clone());
                }
                if let Some(u) = &c.custom_id {
                    consumers.by_custom_id.insert(u.clone(), c.clone());
                }
                consumers.by_id.insert(c.id, c);
            }
            EntityKind::Plugin => plugins.push(parse::<PluginEntity>(e)?),
        }
    }

    let mut next_cache = InstanceCache::new();
    let mut instances: Vec<(PluginEntity, Arc<dyn PluginFactory>, Arc<PluginInstance>)> =
        Vec::new();
    for p in plugins {
        if !p.enabled || !p.protocols.iter().any(|x| x == "http" || x == "https") {
            continue;
        }
        let Some(factory) = registry.get(&p.name).cloned() else {
            // A plugin this build does not know (written by a newer node): skip it loudly
            // rather than refusing the whole configuration.
            tracing::error!(plugin = %p.name, id = %p.id, "unknown plugin in configuration; skipped");
            continue;
        };
        let instance = match cache.get(&p.id) {
            Some((config, inst)) if *config == p.config => inst.clone(),
            _ => match factory.build(&p.config) {
                Ok(plugin) => Arc::new(PluginInstance {
                    id: p.id,
                    name: factory.name(),
                    plugin,
                }),
                Err(e) => {
                    return Err(SnapshotError::Entity {
                        kind: "plugins",
                        id: p.id,
                        reason: e.0,
                    });
                }
            },
        };
        next_cache.insert(p.id, (p.config.clone(), instance.clone()));
        instances.push((p, factory, instance));
    }
    *cache = next_cache;

    // Routes of disabled services are left out of the router (Kong: they answer 404), and so
    // are routes matching on SNI: the proxy has no TLS listener, and a request without SNI must
    // not match them.
    routes.retain(|r| r.snis.as_ref().is_none_or(|s| s.is_empty()));
    routes.retain(|r| {
        r.service
            .and_then(|s| services.get(&s.id))
            .is_none_or(|s: &Arc<ServiceRuntime>| s.service.enabled)
    });
    let mut specs = Vec::with_capacity(routes.len());
    let mut runtimes = Vec::with_capacity(routes.len());
    for (i, r) in routes.into_iter().enumerate() {
        specs.push(RouteSpec {
            id: i as u64,
            methods: r.methods.clone().unwrap_or_default(),
            hosts: r.hosts.clone().unwrap_or_default(),
            paths: r.paths.clone().unwrap_or_default(),
            headers: r
                .headers
                .clone()
                .map(|h| h.into_iter().collect())
                .unwrap_or_default(),
            snis: r.snis.clone().unwrap_or_default(),
            regex_priority: r.regex_priority,
            created_at: r.created_at,
        });
        let service = r.service.and_then(|s| services.get(&s.id).cloned());
        let chain = resolve_chain(&r, service.as_deref(), &instances);
        runtimes.push(Arc::new(RouteRuntime {
            path_handling: if r.path_handling == "v1" {
                PathHandling::V1
            } else {
                PathHandling::V0
            },
            accepts_http: r.protocols.iter().any(|p| p == "http"),
            route: r,
            service,
            plugins: chain,
        }));
    }
    let router = Router::build(&specs)?;
    Ok(Snapshot {
        control_plane_id,
        router,
        routes: runtimes,
        consumers,
        built_at: std::time::Instant::now(),
    })
}

fn service_runtime(
    s: Service,
    id: Uuid,
    pool: Arc<crate::upstream::HostPool>,
) -> Result<ServiceRuntime, SnapshotError> {
    let default_port = if s.protocol == "https" { 443 } else { 80 };
    let host_header = if s.port == default_port {
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

fn resolve_chain(
    route: &Route,
    service: Option<&ServiceRuntime>,
    instances: &[(PluginEntity, Arc<dyn PluginFactory>, Arc<PluginInstance>)],
) -> Vec<PluginSlot> {
    // name → (priority, best non-consumer (level, inst), per consumer best (level, inst))
    type Best = (u8, Arc<PluginInstance>);
    type Candidates = (i32, Option<Best>, HashMap<Uuid, Best>);
    let mut by_name: HashMap<&'static str, Candidates> = HashMap::new();
    for (p, factory, inst) in instances {
        let Some(level) = specificity(p, route, service) else {
            continue;
        };
        let entry = by_name
            .entry(factory.name())
            .or_insert_with(|| (factory.priority(), None, HashMap::new()));
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
