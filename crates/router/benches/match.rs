//! Criterion benchmarks for `Router::find` at 1, 100 and 10,000 routes.
//!
//! Route `i` has the prefix path `/svc-<i>`; every second route also has
//! methods `GET`/`POST`, every third a host `svc-<i>.example.com`. The
//! request targets a route in the middle of the table that has both, so
//! every table size does the same work for the winning route; the extra
//! cost of a large table is the candidates sharing its path prefix.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse_router::{RequestView, RouteSpec, Router};

fn routes(n: usize) -> Vec<RouteSpec> {
    (0..n)
        .map(|i| RouteSpec {
            id: i as u64,
            paths: vec![format!("/svc-{i}")],
            methods: if i % 2 == 0 {
                vec!["GET".into(), "POST".into()]
            } else {
                Vec::new()
            },
            hosts: if i % 3 == 0 {
                vec![format!("svc-{i}.example.com")]
            } else {
                Vec::new()
            },
            created_at: i as i64,
            ..RouteSpec::default()
        })
        .collect()
}

/// The middle route, rounded down to one that has methods and a host.
fn target(n: usize) -> usize {
    (n / 2) / 6 * 6
}

fn bench_find(c: &mut Criterion) {
    let headers = http::HeaderMap::new();
    let mut hit = c.benchmark_group("find_hit");
    for n in [1usize, 100, 10_000] {
        let router = Router::build(&routes(n)).unwrap();
        let t = target(n);
        let host = format!("svc-{t}.example.com");
        let path = format!("/svc-{t}/items/42");
        let req = RequestView {
            method: &http::Method::GET,
            host: Some(&host),
            path: &path,
            headers: &headers,
            sni: None,
            websocket: false,
        };
        assert_eq!(router.find(&req).unwrap().route_id, t as u64);
        hit.bench_with_input(BenchmarkId::from_parameter(n), &req, |b, req| {
            b.iter(|| black_box(router.find(black_box(req))).map(|m| m.route_id))
        });
    }
    hit.finish();

    // Only host-less, method-less prefix routes: the request walks the
    // shared tree and the winner is the longest matching prefix.
    let mut paths_only = c.benchmark_group("find_hit_paths_only");
    for n in [1usize, 100, 10_000] {
        let table: Vec<RouteSpec> = (0..n)
            .map(|i| RouteSpec {
                id: i as u64,
                paths: vec![format!("/svc-{i}")],
                ..RouteSpec::default()
            })
            .collect();
        let router = Router::build(&table).unwrap();
        let t = n / 2;
        let path = format!("/svc-{t}/items/42");
        let req = RequestView {
            method: &http::Method::GET,
            host: Some("api.example.com"),
            path: &path,
            headers: &headers,
            sni: None,
            websocket: false,
        };
        assert_eq!(router.find(&req).unwrap().route_id, t as u64);
        paths_only.bench_with_input(BenchmarkId::from_parameter(n), &req, |b, req| {
            b.iter(|| black_box(router.find(black_box(req))).map(|m| m.route_id))
        });
    }
    paths_only.finish();

    let mut miss = c.benchmark_group("find_miss");
    for n in [1usize, 100, 10_000] {
        let router = Router::build(&routes(n)).unwrap();
        let req = RequestView {
            method: &http::Method::GET,
            host: Some("unknown.example.org"),
            path: "/nothing/here",
            headers: &headers,
            sni: None,
            websocket: false,
        };
        assert!(router.find(&req).is_none());
        miss.bench_with_input(BenchmarkId::from_parameter(n), &req, |b, req| {
            b.iter(|| black_box(router.find(black_box(req))).map(|m| m.route_id))
        });
    }
    miss.finish();

    let mut regex = c.benchmark_group("find_regex_captures");
    for n in [1usize, 100, 10_000] {
        let mut rs = routes(n);
        rs.push(RouteSpec {
            id: u64::MAX,
            paths: vec![r"~/users/(?<id>\d+)/orders/(\d+)$".into()],
            ..RouteSpec::default()
        });
        let router = Router::build(&rs).unwrap();
        let req = RequestView {
            method: &http::Method::GET,
            host: None,
            path: "/users/12345/orders/678",
            headers: &headers,
            sni: None,
            websocket: false,
        };
        assert_eq!(
            router.find(&req).unwrap().captures.name("id"),
            Some("12345")
        );
        regex.bench_with_input(BenchmarkId::from_parameter(n), &req, |b, req| {
            b.iter(|| black_box(router.find(black_box(req))).map(|m| m.route_id))
        });
    }
    regex.finish();

    let mut build = c.benchmark_group("build");
    build.sample_size(10);
    let table = routes(10_000);
    build.bench_function("10000", |b| {
        b.iter(|| Router::build(black_box(&table)).unwrap().len())
    });
    build.finish();
}

criterion_group!(benches, bench_find);
criterion_main!(benches);
