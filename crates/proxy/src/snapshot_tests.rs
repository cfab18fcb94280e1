#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::plugin::{Plugin, PluginError, PluginFactory};
use crate::upstream::UpstreamPools;
use gatehouse_core::kong_schema::FieldErrors;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A plugin that does nothing; counts how many instances were built.
struct Tag {
    name: &'static str,
    priority: i32,
    built: AtomicUsize,
}

struct Noop;
impl Plugin for Noop {}

impl PluginFactory for Tag {
    fn name(&self) -> &'static str {
        self.name
    }
    fn priority(&self) -> i32 {
        self.priority
    }
    fn validate(&self, config: Value) -> Result<Value, FieldErrors> {
        Ok(if config.is_null() { json!({}) } else { config })
    }
    fn schema(&self) -> Value {
        json!({"fields": []})
    }
    fn build(&self, _: &Value) -> Result<Arc<dyn Plugin>, PluginError> {
        self.built.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(Noop))
    }
}

/// The configuration held by id, as a source holds it, and the cache of its builds.
struct Config {
    registry: Registry,
    tag: Arc<Tag>,
    entities: BTreeMap<Uuid, Arc<CoreEntity>>,
    cache: BuildCache,
    upstreams: UpstreamPools,
    cp: Uuid,
}

impl Config {
    fn new() -> Self {
        let tag = Arc::new(Tag {
            name: "tag",
            priority: 10,
            built: AtomicUsize::new(0),
        });
        let mut registry = Registry::new();
        registry.register(tag.clone());
        registry.register(Arc::new(Tag {
            name: "other",
            priority: 20,
            built: AtomicUsize::new(0),
        }));
        Self {
            registry,
            tag,
            entities: BTreeMap::new(),
            cache: BuildCache::new(),
            upstreams: UpstreamPools::default(),
            cp: Uuid::nil(),
        }
    }

    fn put(&mut self, e: CoreEntity) -> Uuid {
        let id = e.id;
        self.entities.insert(id, Arc::new(e));
        id
    }

    fn service(&mut self, id: Uuid, body: Value) -> Uuid {
        self.put(
            Service::from_input(id, body, 1, 1)
                .unwrap()
                .to_entity(self.cp),
        )
    }

    fn route(&mut self, id: Uuid, body: Value) -> Uuid {
        self.put(
            Route::from_input(id, body, 1, 1)
                .unwrap()
                .to_entity(self.cp),
        )
    }

    fn consumer(&mut self, id: Uuid, body: Value) -> Uuid {
        self.put(
            Consumer::from_input(id, body, 1, 1)
                .unwrap()
                .to_entity(self.cp),
        )
    }

    fn plugin(&mut self, id: Uuid, body: Value) -> Uuid {
        let p = PluginEntity::from_input(id, body, 1, 1, &self.registry).unwrap();
        self.put(p.to_entity(self.cp))
    }

    /// Services `a.test` and `b.test`, with routes `/a` and `/b` to them: (a, b, ra, rb).
    fn two_services(&mut self) -> (Uuid, Uuid, Uuid, Uuid) {
        let a = self.service(Uuid::new_v4(), json!({"host": "a.test"}));
        let b = self.service(Uuid::new_v4(), json!({"host": "b.test"}));
        let ra = self.route(
            Uuid::new_v4(),
            json!({"paths": ["/a"], "service": {"id": a}}),
        );
        let rb = self.route(
            Uuid::new_v4(),
            json!({"paths": ["/b"], "service": {"id": b}}),
        );
        (a, b, ra, rb)
    }

    /// Builds with the cache kept from the previous build.
    fn build(&mut self) -> Snapshot {
        build(
            self.cp,
            self.entities.values(),
            &self.registry,
            &mut self.cache,
            &self.upstreams,
        )
        .unwrap()
    }

    /// Builds from nothing: what a first load gives.
    fn build_fresh(&self) -> Snapshot {
        build(
            self.cp,
            self.entities.values(),
            &self.registry,
            &mut BuildCache::new(),
            &self.upstreams,
        )
        .unwrap()
    }
}

fn route_at(s: &Snapshot, path: &str) -> Option<Uuid> {
    let headers = http::HeaderMap::new();
    let req = gatehouse_router::RequestView {
        method: &http::Method::GET,
        host: Some("gw.test"),
        path,
        headers: &headers,
        sni: None,
        websocket: false,
    };
    s.router
        .find(&req)
        .map(|m| s.routes[m.route_id as usize].route.id)
}

fn runtime(s: &Snapshot, route: Uuid) -> &Arc<RouteRuntime> {
    s.routes.iter().find(|r| r.route.id == route).unwrap()
}

/// One slot of a chain: the plugin's name, the fallback instance, the instance per consumer.
type Slot = (&'static str, Option<Uuid>, Vec<(Uuid, Uuid)>);

/// The plugin instances in a route's chain, in order.
fn chain(s: &Snapshot, route: Uuid) -> Vec<Slot> {
    runtime(s, route)
        .plugins
        .iter()
        .map(|slot| {
            let mut per: Vec<_> = slot.by_consumer.iter().map(|(c, i)| (*c, i.id)).collect();
            per.sort();
            (slot.name, slot.fallback.as_ref().map(|i| i.id), per)
        })
        .collect()
}

#[test]
fn a_changed_route_is_compiled_again_and_the_others_are_kept() {
    let mut c = Config::new();
    let svc = c.service(Uuid::new_v4(), json!({"host": "a.test"}));
    let r1 = c.route(
        Uuid::new_v4(),
        json!({"paths": ["/one"], "service": {"id": svc}}),
    );
    let r2 = c.route(
        Uuid::new_v4(),
        json!({"paths": ["/two"], "service": {"id": svc}}),
    );
    let first = c.build();
    assert_eq!(route_at(&first, "/one"), Some(r1));

    c.route(r1, json!({"paths": ["/uno"], "service": {"id": svc}}));
    let second = c.build();
    assert_eq!(route_at(&second, "/one"), None);
    assert_eq!(route_at(&second, "/uno"), Some(r1));
    assert_eq!(route_at(&second, "/two"), Some(r2));
    // The untouched route's runtime is the very one the first build made.
    assert!(Arc::ptr_eq(runtime(&first, r2), runtime(&second, r2)));
    assert!(!Arc::ptr_eq(runtime(&first, r1), runtime(&second, r1)));

    c.entities.remove(&r1);
    let third = c.build();
    assert_eq!(route_at(&third, "/uno"), None);
    assert_eq!(third.routes.len(), 1);
    assert!(Arc::ptr_eq(runtime(&first, r2), runtime(&third, r2)));
}

#[test]
fn a_service_change_reaches_its_routes_only() {
    let mut c = Config::new();
    let (a, _, ra, rb) = c.two_services();
    let first = c.build();

    c.service(a, json!({"host": "a2.test", "port": 8080}));
    let second = c.build();
    let svc = runtime(&second, ra).service.as_ref().unwrap();
    assert_eq!(svc.host_header, "a2.test:8080");
    assert!(Arc::ptr_eq(runtime(&first, rb), runtime(&second, rb)));

    // A disabled service takes its routes out of the router, and back.
    c.service(a, json!({"host": "a2.test", "enabled": false}));
    let third = c.build();
    assert_eq!(route_at(&third, "/a"), None);
    assert_eq!(route_at(&third, "/b"), Some(rb));
    c.service(a, json!({"host": "a2.test"}));
    assert_eq!(route_at(&c.build(), "/a"), Some(ra));

    // A route whose service is gone keeps serving without one (plugins may answer).
    c.entities.remove(&a);
    let fourth = c.build();
    assert_eq!(route_at(&fourth, "/a"), Some(ra));
    assert!(runtime(&fourth, ra).service.is_none());
}

#[test]
fn a_plugin_change_resolves_again_only_the_chains_it_may_apply_to() {
    let mut c = Config::new();
    let (a, _, ra, rb) = c.two_services();
    let first = c.build();
    assert!(chain(&first, ra).is_empty());

    let on_a = c.plugin(
        Uuid::new_v4(),
        json!({"name": "tag", "service": {"id": a}, "config": {"v": 1}}),
    );
    let second = c.build();
    assert_eq!(chain(&second, ra), vec![("tag", Some(on_a), vec![])]);
    assert!(chain(&second, rb).is_empty());
    assert!(Arc::ptr_eq(runtime(&first, rb), runtime(&second, rb)));

    // The same configuration under new tags keeps its instance (and its state).
    let built = c.tag.built.load(Ordering::Relaxed);
    c.plugin(
        on_a,
        json!({"name": "tag", "service": {"id": a}, "config": {"v": 1}, "tags": ["x"]}),
    );
    let third = c.build();
    assert_eq!(c.tag.built.load(Ordering::Relaxed), built);
    let instance = |s: &Snapshot| runtime(s, ra).plugins[0].fallback.clone().unwrap();
    assert!(Arc::ptr_eq(&instance(&second), &instance(&third)));

    // A global one reaches every route; a route's own one is more specific than it.
    let global = c.plugin(Uuid::new_v4(), json!({"name": "tag"}));
    let on_rb = c.plugin(
        Uuid::new_v4(),
        json!({"name": "tag", "route": {"id": rb}, "config": {"v": 2}}),
    );
    let alice = c.consumer(Uuid::new_v4(), json!({"username": "alice"}));
    let for_alice = c.plugin(
        Uuid::new_v4(),
        json!({"name": "other", "consumer": {"id": alice}}),
    );
    let fourth = c.build();
    assert_eq!(
        chain(&fourth, ra),
        vec![
            ("other", None, vec![(alice, for_alice)]),
            ("tag", Some(on_a), vec![])
        ]
    );
    assert_eq!(
        chain(&fourth, rb),
        vec![
            ("other", None, vec![(alice, for_alice)]),
            ("tag", Some(on_rb), vec![])
        ]
    );

    // Disabled, then deleted: gone from the chains it was in.
    c.plugin(
        on_a,
        json!({"name": "tag", "service": {"id": a}, "enabled": false}),
    );
    let fifth = c.build();
    assert_eq!(chain(&fifth, ra)[1], ("tag", Some(global), vec![]));
    assert!(Arc::ptr_eq(runtime(&fourth, rb), runtime(&fifth, rb)));
    c.entities.remove(&on_rb);
    c.entities.remove(&for_alice);
    let sixth = c.build();
    assert_eq!(chain(&sixth, rb), vec![("tag", Some(global), vec![])]);
}

#[test]
fn the_consumer_index_is_rebuilt_when_a_consumer_changes_and_kept_otherwise() {
    let mut c = Config::new();
    let alice = c.consumer(Uuid::new_v4(), json!({"username": "alice"}));
    c.route(Uuid::new_v4(), json!({"paths": ["/a"]}));
    let first = c.build();
    assert!(first.consumers.by_username.contains_key("alice"));

    c.route(Uuid::new_v4(), json!({"paths": ["/b"]}));
    let second = c.build();
    assert!(Arc::ptr_eq(&first.consumers, &second.consumers));

    c.consumer(alice, json!({"username": "alicia", "custom_id": "a-1"}));
    let third = c.build();
    assert!(!third.consumers.by_username.contains_key("alice"));
    assert_eq!(third.consumers.by_custom_id["a-1"].id, alice);

    c.entities.remove(&alice);
    let fourth = c.build();
    assert!(fourth.consumers.by_id.is_empty());
    assert!(fourth.consumers.by_username.is_empty());
}

#[test]
fn a_failed_build_leaves_the_cache_as_it_was() {
    let mut c = Config::new();
    let r1 = c.route(Uuid::new_v4(), json!({"paths": ["/one"]}));
    let first = c.build();
    let mut bad = Route::from_input(Uuid::new_v4(), json!({"paths": ["/x"]}), 1, 1)
        .unwrap()
        .to_entity(c.cp);
    bad.body["paths"] = json!(["~/(unclosed"]);
    let bad_id = c.put(bad);
    let err = build(
        c.cp,
        c.entities.values(),
        &c.registry,
        &mut c.cache,
        &c.upstreams,
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains(&bad_id.to_string()),
        "the error names the route: {err}"
    );
    c.entities.remove(&bad_id);
    let second = c.build();
    assert!(Arc::ptr_eq(runtime(&first, r1), runtime(&second, r1)));
}

/// What requests see of a snapshot: each routed route with its service and chain, in router
/// order, the router's size, and the consumers.
fn describe(s: &Snapshot) -> String {
    let mut out = format!("entries {}\n", s.router.entry_count());
    for r in &s.routes {
        let svc = r.service.as_ref().map(|s| {
            (
                s.service.id,
                s.host_header.clone(),
                s.service.enabled,
                Arc::as_ptr(&s.pool),
            )
        });
        out += &format!("{} {:?} {:?}\n", r.route.id, svc, chain(s, r.route.id));
    }
    let mut consumers: Vec<_> = s
        .consumers
        .by_id
        .values()
        .map(|c| (c.id, c.username.clone(), c.custom_id.clone()))
        .collect();
    consumers.sort();
    out += &format!(
        "{consumers:?} {} {}",
        s.consumers.by_username.len(),
        s.consumers.by_custom_id.len()
    );
    out
}

#[test]
fn any_sequence_of_changes_builds_what_a_build_from_nothing_builds() {
    let mut rng = StdRng::seed_from_u64(18);
    let mut c = Config::new();
    let mut ids: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
    let pick = |rng: &mut StdRng, ids: &BTreeMap<&str, Vec<Uuid>>, kind: &str| {
        let list = ids.get(kind).filter(|l| !l.is_empty())?;
        Some(list[rng.random_range(0..list.len())])
    };
    for step in 0..400 {
        let kind = ["services", "routes", "consumers", "plugins"][rng.random_range(0..4)];
        let existing = pick(&mut rng, &ids, kind);
        if let Some(id) = existing.filter(|_| rng.random_bool(0.15)) {
            c.entities.remove(&id);
            ids.get_mut(kind).unwrap().retain(|x| *x != id);
            // Whatever referred to it goes too, as the store's cascade does.
            c.entities.retain(|_, e| {
                e.service_id != Some(id) && e.route_id != Some(id) && e.consumer_id != Some(id)
            });
            for list in ids.values_mut() {
                list.retain(|x| c.entities.contains_key(x));
            }
        } else {
            let id = existing
                .filter(|_| rng.random_bool(0.5))
                .unwrap_or_else(Uuid::new_v4);
            let n = rng.random_range(0..6);
            match kind {
                "services" => {
                    let enabled = rng.random_bool(0.8);
                    c.service(
                        id,
                        json!({"host": format!("h{n}.test"), "enabled": enabled}),
                    );
                }
                "routes" => {
                    let mut body = json!({"paths": [format!("/p{n}")]});
                    if let Some(s) = pick(&mut rng, &ids, "services") {
                        body["service"] = json!({"id": s});
                    }
                    c.route(id, body);
                }
                "consumers" => {
                    c.consumer(id, json!({"username": format!("u{}", id.simple())}));
                }
                _ => {
                    let mut body = json!({
                        "name": if rng.random_bool(0.5) { "tag" } else { "other" },
                        "config": {"n": n},
                        "enabled": rng.random_bool(0.9),
                    });
                    for (field, k) in [
                        ("service", "services"),
                        ("route", "routes"),
                        ("consumer", "consumers"),
                    ] {
                        if rng.random_bool(0.4)
                            && let Some(x) = pick(&mut rng, &ids, k)
                        {
                            body[field] = json!({"id": x});
                        }
                    }
                    // One instance per plugin name and scope, as the store enforces.
                    let scope = |e: &CoreEntity| {
                        (
                            e.body["name"].clone(),
                            e.service_id,
                            e.route_id,
                            e.consumer_id,
                        )
                    };
                    let p = PluginEntity::from_input(id, body, 1, 1, &c.registry)
                        .unwrap()
                        .to_entity(c.cp);
                    if c.entities.values().any(|e| {
                        e.kind == EntityKind::Plugin && e.id != id && scope(e) == scope(&p)
                    }) {
                        continue;
                    }
                    c.put(p);
                }
            }
            if !ids.get(kind).is_some_and(|l| l.contains(&id)) {
                ids.entry(kind).or_default().push(id);
            }
        }
        let incremental = c.build();
        let fresh = c.build_fresh();
        assert_eq!(
            describe(&incremental),
            describe(&fresh),
            "after step {step}"
        );
    }
    assert!(
        c.entities.len() > 20,
        "the walk built up a configuration: {}",
        c.entities.len()
    );
}
