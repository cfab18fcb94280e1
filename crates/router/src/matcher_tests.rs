//! Tests of the matching semantics and of the indexes against a linear
//! reference scan.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::*;
use crate::compile::Router;
use crate::spec::RouteSpec;

fn r(id: u64) -> RouteSpec {
    RouteSpec {
        id,
        ..RouteSpec::default()
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

fn hdrs(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// A request builder with defaults: GET, no host, no headers, no SNI.
struct Req {
    method: Method,
    host: Option<String>,
    path: String,
    headers: HeaderMap,
    sni: Option<String>,
    websocket: bool,
}

impl Req {
    fn new(path: &str) -> Self {
        Req {
            method: Method::GET,
            host: None,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            sni: None,
            websocket: false,
        }
    }
    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
    fn host(mut self, h: &str) -> Self {
        self.host = Some(h.to_owned());
        self
    }
    fn headers(mut self, pairs: &[(&str, &str)]) -> Self {
        self.headers = hdrs(pairs);
        self
    }
    fn sni(mut self, s: &str) -> Self {
        self.sni = Some(s.to_owned());
        self
    }
    fn websocket(mut self) -> Self {
        self.websocket = true;
        self
    }
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            host: self.host.as_deref(),
            path: &self.path,
            headers: &self.headers,
            sni: self.sni.as_deref(),
            websocket: self.websocket,
        }
    }
}

fn find_id(router: &Router, req: &Req) -> Option<u64> {
    router.find(&req.view()).map(|m| m.route_id)
}

fn one(spec: RouteSpec) -> Router {
    Router::build(&[spec]).unwrap()
}

#[test]
fn router_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Router>();
}

#[test]
fn empty_router_matches_nothing() {
    let router = Router::build(&[]).unwrap();
    assert!(router.is_empty());
    assert_eq!(router.len(), 0);
    assert_eq!(find_id(&router, &Req::new("/")), None);
}

#[test]
fn every_configured_field_must_match() {
    let router = one(RouteSpec {
        methods: s(&["GET", "POST"]),
        hosts: s(&["a.com", "b.com"]),
        paths: s(&["/x", "/yy"]),
        headers: vec![("x-v".into(), s(&["1", "2"]))],
        ..r(1)
    });
    let ok = Req::new("/yy/z")
        .method(Method::POST)
        .host("b.com")
        .headers(&[("x-v", "2")]);
    assert_eq!(find_id(&router, &ok), Some(1));
    let ok2 = Req::new("/x").host("a.com").headers(&[("x-v", "1")]);
    assert_eq!(find_id(&router, &ok2), Some(1));
    assert_eq!(
        find_id(
            &router,
            &Req::new("/x")
                .method(Method::PUT)
                .host("a.com")
                .headers(&[("x-v", "1")])
        ),
        None
    );
    assert_eq!(
        find_id(
            &router,
            &Req::new("/x").host("c.com").headers(&[("x-v", "1")])
        ),
        None
    );
    assert_eq!(
        find_id(
            &router,
            &Req::new("/z").host("a.com").headers(&[("x-v", "1")])
        ),
        None
    );
    assert_eq!(
        find_id(
            &router,
            &Req::new("/x").host("a.com").headers(&[("x-v", "3")])
        ),
        None
    );
    assert_eq!(find_id(&router, &Req::new("/x").host("a.com")), None);
}

#[test]
fn methods_are_exact() {
    let router = one(RouteSpec {
        methods: s(&["GET"]),
        ..r(1)
    });
    assert_eq!(find_id(&router, &Req::new("/")), Some(1));
    assert_eq!(find_id(&router, &Req::new("/").method(Method::HEAD)), None);
    let custom = Method::from_bytes(b"PURGE").unwrap();
    let router = one(RouteSpec {
        methods: s(&["PURGE"]),
        ..r(2)
    });
    assert_eq!(find_id(&router, &Req::new("/").method(custom)), Some(2));
}

#[test]
fn headers_names_and_values_or() {
    let router = one(RouteSpec {
        headers: vec![
            ("X-Version".into(), s(&["v1", "V2"])),
            ("x_tenant".into(), s(&["~*^acme-\\d+$"])),
        ],
        ..r(1)
    });
    let ok = Req::new("/").headers(&[("x-version", "v2"), ("x-tenant", "ACME-42")]);
    assert_eq!(find_id(&router, &ok), Some(1));
    // Values compare ignoring case.
    let ok = Req::new("/").headers(&[("x-version", "V1"), ("x-tenant", "acme-1")]);
    assert_eq!(find_id(&router, &ok), Some(1));
    // Both names are required.
    assert_eq!(
        find_id(&router, &Req::new("/").headers(&[("x-version", "v1")])),
        None
    );
    // A value outside the list.
    let bad = Req::new("/").headers(&[("x-version", "v3"), ("x-tenant", "acme-1")]);
    assert_eq!(find_id(&router, &bad), None);
    // Any one of several header lines may match.
    let multi = Req::new("/").headers(&[
        ("x-version", "v9"),
        ("x-version", "v1"),
        ("x-tenant", "acme-7"),
    ]);
    assert_eq!(find_id(&router, &multi), Some(1));
}

#[test]
fn header_regex_is_unanchored_and_case_insensitive() {
    let router = one(RouteSpec {
        headers: vec![("x-agent".into(), s(&["~*Mobile"]))],
        ..r(1)
    });
    assert_eq!(
        find_id(
            &router,
            &Req::new("/").headers(&[("x-agent", "Foo mobile Safari")])
        ),
        Some(1)
    );
    assert_eq!(
        find_id(&router, &Req::new("/").headers(&[("x-agent", "desktop")])),
        None
    );
    // `~*` regexes and plain values mix within one header.
    let router = one(RouteSpec {
        headers: vec![("x-a".into(), s(&["exact", "~*^re"]))],
        ..r(2)
    });
    assert_eq!(
        find_id(&router, &Req::new("/").headers(&[("x-a", "EXACT")])),
        Some(2)
    );
    assert_eq!(
        find_id(&router, &Req::new("/").headers(&[("x-a", "Rex")])),
        Some(2)
    );
    assert_eq!(
        find_id(&router, &Req::new("/").headers(&[("x-a", "exactly")])),
        None
    );
}

#[test]
fn hosts_exact_ports_and_case() {
    let router = one(RouteSpec {
        hosts: s(&["Example.com"]),
        ..r(1)
    });
    assert_eq!(
        find_id(&router, &Req::new("/").host("example.com")),
        Some(1)
    );
    assert_eq!(
        find_id(&router, &Req::new("/").host("EXAMPLE.COM:8443")),
        Some(1)
    );
    assert_eq!(find_id(&router, &Req::new("/").host("example.org")), None);
    assert_eq!(
        find_id(&router, &Req::new("/").host("www.example.com")),
        None
    );
    assert_eq!(find_id(&router, &Req::new("/")), None);

    let router = one(RouteSpec {
        hosts: s(&["example.com:8080"]),
        ..r(2)
    });
    assert_eq!(
        find_id(&router, &Req::new("/").host("example.com:8080")),
        Some(2)
    );
    assert_eq!(
        find_id(&router, &Req::new("/").host("example.com:8081")),
        None
    );
    assert_eq!(find_id(&router, &Req::new("/").host("example.com")), None);

    let router = one(RouteSpec {
        hosts: s(&["[::1]:9000", "10.0.0.1"]),
        ..r(3)
    });
    assert_eq!(find_id(&router, &Req::new("/").host("[::1]:9000")), Some(3));
    assert_eq!(find_id(&router, &Req::new("/").host("[::1]")), None);
    assert_eq!(
        find_id(&router, &Req::new("/").host("10.0.0.1:80")),
        Some(3)
    );
}

#[test]
fn hosts_wildcards() {
    let router = one(RouteSpec {
        hosts: s(&["*.example.com", "example.*"]),
        ..r(1)
    });
    assert_eq!(
        find_id(&router, &Req::new("/").host("api.example.com")),
        Some(1)
    );
    assert_eq!(
        find_id(&router, &Req::new("/").host("a.b.EXAMPLE.com:1234")),
        Some(1)
    );
    assert_eq!(
        find_id(&router, &Req::new("/").host("example.org")),
        Some(1)
    );
    assert_eq!(
        find_id(&router, &Req::new("/").host("example.co.uk:80")),
        Some(1)
    );
    assert_eq!(
        find_id(&router, &Req::new("/").host("example.com")),
        Some(1)
    );
    assert_eq!(
        find_id(&router, &Req::new("/").host("notexample.com")),
        None
    );
    assert_eq!(find_id(&router, &Req::new("/").host("myexample.org")), None);

    let router = one(RouteSpec {
        hosts: s(&["*.example.com:8443"]),
        ..r(2)
    });
    assert_eq!(
        find_id(&router, &Req::new("/").host("a.example.com:8443")),
        Some(2)
    );
    assert_eq!(find_id(&router, &Req::new("/").host("a.example.com")), None);
}

#[test]
fn prefix_paths_are_not_segment_aware() {
    let router = one(RouteSpec {
        paths: s(&["/foo"]),
        ..r(1)
    });
    for (path, hit) in [
        ("/foo", true),
        ("/foobar", true),
        ("/foo/bar", true),
        ("/fo", false),
        ("/bar/foo", false),
    ] {
        assert_eq!(find_id(&router, &Req::new(path)).is_some(), hit, "{path}");
    }
    let m = router.find(&Req::new("/foobar").view()).unwrap();
    assert_eq!((m.matched_path, m.prefix_len), (Some("/foo"), 4));
    assert!(m.captures.is_empty());
}

#[test]
fn prefix_paths_compare_in_canonical_form() {
    // Kong stores `/café` (its normalized form) and matches `/caf%C3%A9`.
    let router = one(RouteSpec {
        paths: s(&["/café"]),
        ..r(1)
    });
    let m = router.find(&Req::new("/caf%C3%A9/x").view()).unwrap();
    assert_eq!(
        (m.matched_path, m.prefix_len),
        (Some("/café"), "/caf%C3%A9".len())
    );
}

#[test]
fn regex_paths_anchor_at_start_only() {
    let router = one(RouteSpec {
        paths: s(&[r"~/users/\d+"]),
        ..r(1)
    });
    assert_eq!(find_id(&router, &Req::new("/users/12")), Some(1));
    assert_eq!(find_id(&router, &Req::new("/users/12/orders")), Some(1));
    assert_eq!(find_id(&router, &Req::new("/api/users/12")), None);
    let m = router.find(&Req::new("/users/12/orders").view()).unwrap();
    assert_eq!(m.matched_path, Some(r"~/users/\d+"));
    assert_eq!(m.prefix_len, "/users/12".len());

    // Alternation is anchored as a whole: `^(?:/a|/b)`.
    let router = one(RouteSpec {
        paths: s(&["~/a|/b"]),
        ..r(2)
    });
    assert_eq!(find_id(&router, &Req::new("/b/x")), Some(2));
    assert_eq!(find_id(&router, &Req::new("/x/b")), None);
}

#[test]
fn regex_captures_named_and_positional() {
    let router = one(RouteSpec {
        paths: s(&[r"~/v(?<ver>\d+)/(?P<res>\w+)(/(\d+))?"]),
        ..r(1)
    });
    let m = router.find(&Req::new("/v2/users/x").view()).unwrap();
    assert_eq!(m.prefix_len, "/v2/users".len());
    assert_eq!(m.captures.get(0), Some("/v2/users"));
    assert_eq!(m.captures.get(1), Some("2"));
    assert_eq!(m.captures.get(2), Some("users"));
    assert_eq!(m.captures.get(3), None);
    assert_eq!(m.captures.positional.len(), 5);
    assert_eq!(m.captures.name("ver"), Some("2"));
    assert_eq!(m.captures.name("res"), Some("users"));
    assert_eq!(
        m.captures.named,
        vec![
            ("ver".to_owned(), "2".to_owned()),
            ("res".to_owned(), "users".to_owned())
        ]
    );
}

#[test]
fn snis_exact_and_ignored_without_tls() {
    let router = one(RouteSpec {
        snis: s(&["api.example.com."]),
        ..r(1)
    });
    assert_eq!(
        find_id(&router, &Req::new("/").sni("api.example.com")),
        Some(1)
    );
    assert_eq!(
        find_id(&router, &Req::new("/").sni("api.example.com.")),
        Some(1)
    );
    assert_eq!(
        find_id(&router, &Req::new("/").sni("other.example.com")),
        None
    );
    // Plain HTTP: Kong's expression is `net.protocol != "https" || tls.sni == …`.
    assert_eq!(find_id(&router, &Req::new("/")), Some(1));
}

#[test]
fn websocket_only_routes_match_handshakes_only() {
    let router = Router::build(&[
        RouteSpec {
            paths: s(&["/chat/live"]),
            websocket_only: true,
            ..r(1)
        },
        RouteSpec {
            paths: s(&["/chat"]),
            ..r(2)
        },
    ])
    .unwrap();
    // The longer path wins for a handshake; a plain request falls through to the HTTP route.
    assert_eq!(
        find_id(&router, &Req::new("/chat/live").websocket()),
        Some(1)
    );
    assert_eq!(find_id(&router, &Req::new("/chat/live")), Some(2));
    // HTTP routes still take handshakes (Kong OSS proxies upgrades on them).
    assert_eq!(find_id(&router, &Req::new("/chat/x").websocket()), Some(2));
    let only_ws = one(RouteSpec {
        paths: s(&["/ws"]),
        websocket_only: true,
        ..r(1)
    });
    assert_eq!(find_id(&only_ws, &Req::new("/ws")), None);
}

#[test]
fn routes_without_paths_match_any_path() {
    let router = one(RouteSpec {
        hosts: s(&["a.com"]),
        ..r(1)
    });
    let m = router
        .find(&Req::new("/any/thing").host("a.com").view())
        .unwrap();
    assert_eq!((m.route_id, m.matched_path, m.prefix_len), (1, None, 0));
}

#[test]
fn more_fields_beat_longer_paths() {
    let routes = vec![
        RouteSpec {
            paths: s(&["/very/long/prefix"]),
            ..r(1)
        },
        RouteSpec {
            paths: s(&["/"]),
            methods: s(&["GET"]),
            ..r(2)
        },
    ];
    let router = Router::build(&routes).unwrap();
    assert_eq!(find_id(&router, &Req::new("/very/long/prefix/x")), Some(2));
    assert_eq!(
        find_id(
            &router,
            &Req::new("/very/long/prefix/x").method(Method::POST)
        ),
        Some(1)
    );
}

#[test]
fn plain_hosts_beat_wildcards() {
    let routes = vec![
        RouteSpec {
            hosts: s(&["*.example.com"]),
            paths: s(&["/longer/path"]),
            ..r(1)
        },
        RouteSpec {
            hosts: s(&["api.example.com"]),
            paths: s(&["/"]),
            ..r(2)
        },
    ];
    let router = Router::build(&routes).unwrap();
    assert_eq!(
        find_id(&router, &Req::new("/longer/path").host("api.example.com")),
        Some(2)
    );
    assert_eq!(
        find_id(&router, &Req::new("/longer/path").host("web.example.com")),
        Some(1)
    );
}

#[test]
fn more_headers_win() {
    let routes = vec![
        RouteSpec {
            headers: vec![("a".into(), s(&["1"]))],
            paths: s(&["/long/path"]),
            ..r(1)
        },
        RouteSpec {
            headers: vec![("a".into(), s(&["1"])), ("b".into(), s(&["2"]))],
            ..r(2)
        },
    ];
    let router = Router::build(&routes).unwrap();
    assert_eq!(
        find_id(
            &router,
            &Req::new("/long/path").headers(&[("a", "1"), ("b", "2")])
        ),
        Some(1)
    );
    let routes = vec![
        RouteSpec {
            headers: vec![("a".into(), s(&["1"]))],
            paths: s(&["/long/path"]),
            ..r(1)
        },
        RouteSpec {
            headers: vec![("a".into(), s(&["1"])), ("b".into(), s(&["2"]))],
            paths: s(&["/"]),
            ..r(2)
        },
    ];
    let router = Router::build(&routes).unwrap();
    assert_eq!(
        find_id(
            &router,
            &Req::new("/long/path").headers(&[("a", "1"), ("b", "2")])
        ),
        Some(2)
    );
    assert_eq!(
        find_id(&router, &Req::new("/long/path").headers(&[("a", "1")])),
        Some(1)
    );
}

#[test]
fn regex_beats_prefix_and_regex_priority_orders_regexes() {
    let routes = vec![
        RouteSpec {
            paths: s(&["/users/123/profile"]),
            ..r(1)
        },
        RouteSpec {
            paths: s(&[r"~/users/\d+"]),
            regex_priority: 0,
            ..r(2)
        },
        RouteSpec {
            paths: s(&[r"~/users/"]),
            regex_priority: 5,
            ..r(3)
        },
        RouteSpec {
            paths: s(&[r"~/users/1"]),
            regex_priority: -1,
            ..r(4)
        },
    ];
    let router = Router::build(&routes).unwrap();
    assert_eq!(find_id(&router, &Req::new("/users/123/profile")), Some(3));
    let router = Router::build(&routes[..2]).unwrap();
    assert_eq!(find_id(&router, &Req::new("/users/123/profile")), Some(2));
    let routes = vec![
        RouteSpec {
            paths: s(&[r"~/users/\d+"]),
            regex_priority: -3,
            ..r(2)
        },
        RouteSpec {
            paths: s(&[r"~/users/1"]),
            regex_priority: -1,
            ..r(4)
        },
    ];
    let router = Router::build(&routes).unwrap();
    assert_eq!(find_id(&router, &Req::new("/users/123")), Some(4));
}

#[test]
fn longer_prefix_wins_among_equals() {
    let routes = vec![
        RouteSpec {
            paths: s(&["/a"]),
            ..r(1)
        },
        RouteSpec {
            paths: s(&["/a/b"]),
            ..r(2)
        },
    ];
    let router = Router::build(&routes).unwrap();
    assert_eq!(find_id(&router, &Req::new("/a/b/c")), Some(2));
    assert_eq!(find_id(&router, &Req::new("/a/c")), Some(1));
}

#[test]
fn ties_go_to_older_then_lower_id() {
    let routes = vec![
        RouteSpec {
            paths: s(&["/x"]),
            created_at: 20,
            ..r(1)
        },
        RouteSpec {
            paths: s(&["/x"]),
            created_at: 10,
            ..r(9)
        },
        RouteSpec {
            paths: s(&["/x"]),
            created_at: 10,
            ..r(5)
        },
    ];
    let router = Router::build(&routes).unwrap();
    assert_eq!(find_id(&router, &Req::new("/x")), Some(5));
    let router = Router::build(&routes[..2]).unwrap();
    assert_eq!(find_id(&router, &Req::new("/x")), Some(9));
    // Regex routes tie the same way.
    let routes = vec![
        RouteSpec {
            paths: s(&["~/x"]),
            created_at: 20,
            ..r(1)
        },
        RouteSpec {
            paths: s(&["~/x"]),
            created_at: 10,
            ..r(2)
        },
    ];
    assert_eq!(
        find_id(&Router::build(&routes).unwrap(), &Req::new("/x")),
        Some(2)
    );
}

#[test]
fn split_route_tries_longer_paths_first_and_maps_back() {
    let routes = vec![
        RouteSpec {
            paths: s(&["/a", "/a/b/c", "~/a/(?<n>\\d+)"]),
            ..r(1)
        },
        RouteSpec {
            paths: s(&["/a/b"]),
            ..r(2)
        },
    ];
    let router = Router::build(&routes).unwrap();
    assert_eq!(router.len(), 2);
    assert_eq!(router.entry_count(), 4);
    let m = router.find(&Req::new("/a/b/c/d").view()).unwrap();
    assert_eq!(
        (m.route_id, m.matched_path, m.prefix_len),
        (1, Some("/a/b/c"), 6)
    );
    // `/a/b` (route 2, length 4) beats route 1's `/a` (length 2).
    let m = router.find(&Req::new("/a/b/x").view()).unwrap();
    assert_eq!((m.route_id, m.matched_path), (2, Some("/a/b")));
    let m = router.find(&Req::new("/a/x").view()).unwrap();
    assert_eq!((m.route_id, m.matched_path), (1, Some("/a")));
    // The regex part of route 1 outranks every prefix entry.
    let m = router.find(&Req::new("/a/7/b/c").view()).unwrap();
    assert_eq!(
        (m.route_id, m.matched_path, m.captures.name("n")),
        (1, Some("~/a/(?<n>\\d+)"), Some("7"))
    );
}

#[test]
fn same_length_paths_of_one_route() {
    let router = one(RouteSpec {
        paths: s(&["/aa", "/bb"]),
        ..r(1)
    });
    assert_eq!(
        router.find(&Req::new("/bb/x").view()).unwrap().matched_path,
        Some("/bb")
    );
    assert_eq!(
        router.find(&Req::new("/aa").view()).unwrap().matched_path,
        Some("/aa")
    );
    let router = one(RouteSpec {
        paths: s(&["~/x(\\d)", "~/x(\\d+)"]),
        ..r(2)
    });
    // Regexes are tried in configuration order.
    let m = router.find(&Req::new("/x123").view()).unwrap();
    assert_eq!((m.matched_path, m.prefix_len), (Some("~/x(\\d)"), 3));
}

#[test]
fn exact_host_bucket_still_checks_port_and_other_fields() {
    let routes = vec![
        RouteSpec {
            hosts: s(&["a.com:8080"]),
            paths: s(&["/p"]),
            methods: s(&["GET"]),
            ..r(1)
        },
        RouteSpec {
            hosts: s(&["a.com"]),
            paths: s(&["/p"]),
            ..r(2)
        },
    ];
    let router = Router::build(&routes).unwrap();
    assert_eq!(
        find_id(&router, &Req::new("/p").host("a.com:8080")),
        Some(1)
    );
    assert_eq!(
        find_id(&router, &Req::new("/p").host("a.com:9090")),
        Some(2)
    );
    assert_eq!(
        find_id(
            &router,
            &Req::new("/p").host("A.COM:8080").method(Method::POST)
        ),
        Some(2)
    );
}

#[test]
fn long_host_headers_do_not_break_lookup() {
    let long = format!("{}.com", "a".repeat(300));
    let router = one(RouteSpec {
        hosts: vec![long.clone()],
        ..r(1)
    });
    assert_eq!(
        find_id(&router, &Req::new("/").host(&long.to_uppercase())),
        Some(1)
    );
}

/// Deterministic pseudo-random numbers (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// The matching entry of lowest rank by scanning every entry: the
/// definition the indexes must agree with.
fn find_linear<'r>(
    router: &'r Router,
    req: &RequestView<'_>,
) -> Option<(u64, Option<&'r str>, usize)> {
    let host = req.host.map(|h| {
        let (name, port) = split_request_host(h);
        ReqHost { name, port }
    });
    for e in &router.entries {
        if !e.matches_non_path(req, host) {
            continue;
        }
        match &e.paths {
            EntryPaths::Any => return Some((e.route_id, None, 0)),
            EntryPaths::Prefix(ps) => {
                if let Some(p) = ps.iter().find(|p| req.path.starts_with(&*p.canonical)) {
                    return Some((e.route_id, Some(&*p.configured), p.canonical.len()));
                }
            }
            EntryPaths::Regex(rs) => {
                if let Some((p, m)) = rs
                    .iter()
                    .find_map(|p| p.regex.find(req.path).map(|m| (p, m)))
                {
                    return Some((e.route_id, Some(&*p.configured), m.end()));
                }
            }
        }
    }
    None
}

#[test]
fn indexes_agree_with_linear_scan() {
    let hosts = ["a.com", "b.com", "*.c.com", "c.*", "a.com:8080"];
    let segs = ["/", "/a", "/ab", "/a/b", "/b", "/abc/d", "/x"];
    let regexes = [r"~/a/\d+", r"~/b", r"~/(?<s>[a-z]+)/x"];
    let methods = ["GET", "POST"];
    let mut rng = Lcg(42);
    let mut routes = Vec::new();
    for id in 0..400u64 {
        let mut spec = RouteSpec {
            id,
            created_at: rng.next(50) as i64,
            regex_priority: rng.next(5) as i64 - 2,
            ..RouteSpec::default()
        };
        if rng.next(3) == 0 {
            spec.methods = vec![methods[rng.next(2)].to_owned()];
        }
        if rng.next(2) == 0 {
            spec.hosts = (0..=rng.next(2))
                .map(|_| hosts[rng.next(hosts.len())].to_owned())
                .collect();
        }
        if rng.next(4) == 0 {
            spec.headers = vec![(
                "x-h".into(),
                vec![["1", "2", "~*^3"][rng.next(3)].to_owned()],
            )];
        }
        if rng.next(6) == 0 {
            spec.snis = vec!["s.com".into()];
        }
        spec.websocket_only = rng.next(5) == 0;
        let n_paths = rng.next(4);
        for _ in 0..n_paths {
            if rng.next(4) == 0 {
                spec.paths.push(regexes[rng.next(regexes.len())].to_owned());
            } else {
                spec.paths.push(segs[rng.next(segs.len())].to_owned());
            }
        }
        routes.push(spec);
    }
    let router = Router::build(&routes).unwrap();

    let req_hosts = [
        None,
        Some("a.com"),
        Some("A.com:8080"),
        Some("x.c.com"),
        Some("c.org"),
        Some("b.com:1"),
    ];
    let req_paths = [
        "/", "/a", "/ab", "/abc/d/e", "/a/12", "/b/x", "/zz/x", "/x", "/a/b/c",
    ];
    let mut checked = 0;
    for _ in 0..3000 {
        let req = Req {
            method: if rng.next(2) == 0 {
                Method::GET
            } else {
                Method::POST
            },
            host: req_hosts[rng.next(req_hosts.len())].map(str::to_owned),
            path: req_paths[rng.next(req_paths.len())].to_owned(),
            headers: match rng.next(4) {
                0 => hdrs(&[("x-h", "1")]),
                1 => hdrs(&[("x-h", "2"), ("x-h", "3x")]),
                _ => HeaderMap::new(),
            },
            sni: if rng.next(2) == 0 {
                Some("s.com".into())
            } else {
                None
            },
            websocket: rng.next(3) == 0,
        };
        let view = req.view();
        let expected = find_linear(&router, &view);
        let got = router
            .find(&view)
            .map(|m| (m.route_id, m.matched_path, m.prefix_len));
        assert_eq!(
            got, expected,
            "{:?} {:?} {} {:?}",
            req.method, req.host, req.path, req.sni
        );
        checked += usize::from(expected.is_some());
    }
    assert!(checked > 1000, "too few matches exercised: {checked}");
}

#[test]
fn ten_thousand_routes() {
    let routes: Vec<RouteSpec> = (0..10_000u64)
        .map(|i| RouteSpec {
            paths: vec![format!("/svc-{i}")],
            methods: if i % 2 == 0 { s(&["GET"]) } else { Vec::new() },
            hosts: if i % 3 == 0 {
                vec![format!("svc-{i}.example.com")]
            } else {
                Vec::new()
            },
            ..r(i)
        })
        .collect();
    let router = Router::build(&routes).unwrap();
    assert_eq!(router.len(), 10_000);
    assert_eq!(
        find_id(
            &router,
            &Req::new("/svc-4998/x").host("svc-4998.example.com")
        ),
        Some(4998)
    );
    // Without the host, 4998's hosted route is out; the longest host-less
    // prefix with a matching method wins: /svc-499 (1 field, length 8) loses
    // to /svc-4 (methods + paths).
    assert_eq!(find_id(&router, &Req::new("/svc-4998/x")), Some(4));
    assert_eq!(
        find_id(&router, &Req::new("/svc-4998/x").method(Method::POST)),
        Some(499)
    );
    assert_eq!(find_id(&router, &Req::new("/nope")), None);
}
