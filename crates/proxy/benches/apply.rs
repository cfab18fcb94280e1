//! Criterion benchmarks for `Gateway::apply` at 10,000 routes: building the configuration
//! from nothing (a first load, or a source that hands over new entities) against applying
//! one change to the set last applied (the change feed's case, DESIGN.md §6).
//!
//! The configuration: 100 services, 10,000 routes spread over them (each with its own prefix
//! path, every tenth also a host), 1,000 consumers, a global plugin, one per service and one
//! per hundredth route.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gatehouse_core::gateway::{Consumer, CoreEntity, Plugin as PluginEntity, Route, Service};
use gatehouse_core::kong_schema::FieldErrors;
use gatehouse_proxy::gateway::Gateway;
use gatehouse_proxy::plugin::{Plugin, PluginError, PluginFactory, Registry};
use serde_json::{Value, json};
use uuid::Uuid;

struct Noop;
impl Plugin for Noop {}

struct Tag;
impl PluginFactory for Tag {
    fn name(&self) -> &'static str {
        "tag"
    }
    fn priority(&self) -> i32 {
        10
    }
    fn validate(&self, config: Value) -> Result<Value, FieldErrors> {
        Ok(if config.is_null() { json!({}) } else { config })
    }
    fn schema(&self) -> Value {
        json!({"fields": []})
    }
    fn build(&self, _: &Value) -> Result<Arc<dyn Plugin>, PluginError> {
        Ok(Arc::new(Noop))
    }
}

const ROUTES: usize = 10_000;

struct Fixture {
    registry: Arc<Registry>,
    entities: BTreeMap<Uuid, Arc<CoreEntity>>,
    route: Uuid,
    service: Uuid,
    global: Uuid,
}

fn fixture() -> Fixture {
    let mut registry = Registry::new();
    registry.register(Arc::new(Tag));
    let cp = Uuid::nil();
    let mut entities = BTreeMap::new();
    let mut put = |e: CoreEntity| {
        entities.insert(e.id, Arc::new(e));
    };
    let services: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
    for (i, id) in services.iter().enumerate() {
        let s = Service::from_input(*id, json!({"host": format!("svc-{i}.test")}), 1, 1);
        put(s.unwrap().to_entity(cp));
        let p = json!({"name": "tag", "service": {"id": id}, "config": {"i": i}});
        put(PluginEntity::from_input(Uuid::new_v4(), p, 1, 1, &registry)
            .unwrap()
            .to_entity(cp));
    }
    let mut route = Uuid::nil();
    for i in 0..ROUTES {
        route = Uuid::new_v4();
        let mut body = json!({"paths": [format!("/r-{i}")], "service": {"id": services[i % 100]}});
        if i % 10 == 0 {
            body["hosts"] = json!([format!("r-{i}.example.com")]);
        }
        put(Route::from_input(route, body, 1, 1).unwrap().to_entity(cp));
        if i % 100 == 0 {
            let p = json!({"name": "tag", "route": {"id": route}});
            put(PluginEntity::from_input(Uuid::new_v4(), p, 1, 1, &registry)
                .unwrap()
                .to_entity(cp));
        }
    }
    for i in 0..1000 {
        let c = Consumer::from_input(Uuid::new_v4(), json!({"username": format!("c-{i}")}), 1, 1);
        put(c.unwrap().to_entity(cp));
    }
    let global = Uuid::new_v4();
    let p = PluginEntity::from_input(global, json!({"name": "tag"}), 1, 1, &registry);
    put(p.unwrap().to_entity(cp));
    Fixture {
        registry: Arc::new(registry),
        entities,
        route,
        service: services[0],
        global,
    }
}

/// `e` with `field` set to `value`, as a new allocation (what the source holds after a change).
fn changed(e: &Arc<CoreEntity>, field: &str, value: Value) -> Arc<CoreEntity> {
    let mut e = (**e).clone();
    e.body[field] = value;
    Arc::new(e)
}

fn bench_apply(c: &mut Criterion) {
    let mut f = fixture();
    let gateway = Gateway::new(f.registry.clone(), Uuid::nil());
    gateway.apply(f.entities.values()).unwrap();
    assert_eq!(gateway.snapshot().routes.len(), ROUTES);

    let mut group = c.benchmark_group("apply_10k_routes");
    group.sample_size(20);
    group.bench_function("everything_new", |b| {
        b.iter_batched(
            || {
                f.entities
                    .values()
                    .map(|e| Arc::new((**e).clone()))
                    .collect::<Vec<_>>()
            },
            |fresh| gateway.apply(&fresh).unwrap(),
            BatchSize::LargeInput,
        )
    });
    gateway.apply(f.entities.values()).unwrap();

    let mut n = 0u64;
    let mut one_change = |id: Uuid, field: &'static str, value: &dyn Fn(u64) -> Value| {
        n += 1;
        let e = changed(&f.entities[&id], field, value(n));
        f.entities.insert(id, e);
        gateway.apply(f.entities.values()).unwrap();
    };
    group.bench_function("one_route_changed", |b| {
        b.iter(|| one_change(f.route, "paths", &|n| json!([format!("/moved-{n}")])))
    });
    group.bench_function("one_service_changed", |b| {
        b.iter(|| one_change(f.service, "port", &|n| json!(1000 + n % 1000)))
    });
    group.bench_function("global_plugin_changed", |b| {
        b.iter(|| one_change(f.global, "config", &|n| json!({"n": n})))
    });
    group.finish();
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
