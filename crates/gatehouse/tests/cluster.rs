//! Several nodes on one PostgreSQL database (DESIGN.md §6): three real `gatehouse` processes
//! share a private schema, and what is written through one node is served by the others.
//!
//! The nodes check versions on a timer only every 60 s here, so everything that arrives within
//! the deadlines below arrived through PostgreSQL's notifications: without the change feed
//! the other nodes would serve nothing new until restarted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    Node, PgSchema, PrivatePg, StartOptions, admin, client, grant, grant_scope, token_call,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long a change may take to reach another node here. The target is 0.5 s (measured by
/// `bench/run`'s `cluster_propagation`); this bound only leaves room for a loaded CI machine,
/// and is far below the 60 s timer.
const DEADLINE: Duration = Duration::from_secs(5);

/// The issuer base every node advertises, as behind one load balancer.
const PUBLIC_URL: &str = "http://gatehouse.cluster.test:9";

/// The master key every node shares.
const MASTER_KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// Starts a node on `database` with `--db-update-frequency frequency`, in `data_dir` when
/// given (a restart), and waits until it is ready.
async fn start_node(
    http: &reqwest::Client,
    database: &str,
    frequency: &str,
    data_dir: Option<std::path::PathBuf>,
) -> Node {
    let node = Node::start_opts(
        "serve",
        Some(database),
        &[
            "--db-update-frequency",
            frequency,
            "--identity-public-url",
            PUBLIC_URL,
        ],
        StartOptions {
            master_key: Some(MASTER_KEY.into()),
            data_dir,
            ..StartOptions::default()
        },
    );
    node.ready(http).await;
    node
}

/// `GET /status` of a node.
async fn status(http: &reqwest::Client, node: &Node) -> Value {
    http.get(format!("{}/status", node.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

struct Cluster {
    nodes: Vec<Node>,
    schema: Option<PgSchema>,
    http: reqwest::Client,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let schema = PgSchema::create().await;
        let http = client();
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(start_node(&http, &schema.url, "60s", None).await);
        }
        Cluster {
            nodes,
            schema: Some(schema),
            http,
        }
    }

    async fn stop(mut self) {
        self.nodes.clear();
        if let Some(s) = self.schema.take() {
            s.drop().await;
        }
    }

    async fn admin(
        &self,
        node: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        admin(
            &self.http,
            method,
            format!("{}{path}", self.nodes[node].admin),
            body,
        )
        .await
    }

    /// `GET path` through `node`'s proxy, with an optional bearer token: the status.
    async fn proxy(&self, node: usize, path: &str, token: Option<&str>) -> u16 {
        let mut req = self.http.get(format!("{}{path}", self.nodes[node].proxy));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// The `X-Consumer-Username` the upstream saw for `GET path` through `node` with `token`.
    async fn consumer_seen(&self, node: usize, path: &str, token: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.nodes[node].proxy))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let echoed: Value = resp.json().await.unwrap();
        echoed["headers"]["X-Consumer-Username"].clone()
    }

    /// Waits until `node`'s proxy answers `path` with `status`; panics after [`DEADLINE`].
    async fn proxy_until(
        &self,
        node: usize,
        path: &str,
        token: Option<&str>,
        status: u16,
        what: &str,
    ) {
        let started = Instant::now();
        loop {
            let got = self.proxy(node, path, token).await;
            if got == status {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "node {node} still answers {got} for {path}, not {status}, {DEADLINE:?} after {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Each node's `config_version` from `GET /status`.
    async fn config_versions(&self) -> Vec<i64> {
        let mut out = Vec::new();
        for n in &self.nodes {
            let v: Value = self
                .http
                .get(format!("{}/status", n.admin))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(v["configuration"]["error"], Value::Null, "{v}");
            out.push(v["config_version"].as_i64().unwrap());
        }
        out
    }

    /// Node `node`'s own URL for an issuer (its identity listener; the issuer advertised is
    /// the shared public one).
    fn issuer_at(&self, node: usize, server: &Value) -> String {
        let slug = server["issuer"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        format!("{}/{slug}", self.nodes[node].identity)
    }
}

/// Makes, through the admin API at `admin_url`, a service on `upstream` with a route `path`
/// protected by oauth2-introspection (`ttl: 300`, consumers by `client_id`) against `server`'s
/// introspection endpoint; the gateway introspects as a client of its own.
async fn protected_route(
    http: &reqwest::Client,
    admin_url: &str,
    server: &Value,
    upstream: &str,
    path: &str,
) {
    let issuer = server["issuer"].as_str().unwrap();
    let server_id = server["id"].as_str().unwrap();
    let (s, gw) = admin(
        http,
        Method::POST,
        format!("{admin_url}/v1/auth-servers/{server_id}/clients"),
        Some(
            json!({"name": "gateway", "grant_types": ["client_credentials"],
                    "response_types": ["token"]}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{gw}");
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!(
            "{}:{}",
            gw["id"].as_str().unwrap(),
            gw["client_secret"].as_str().unwrap()
        ),
    );
    for (collection, body) in [
        (
            "/services",
            json!({"name": "svc", "url": format!("{upstream}/anything")}),
        ),
        (
            "/services/svc/routes",
            json!({"name": "r", "paths": [path]}),
        ),
        (
            "/routes/r/plugins",
            json!({"name": "oauth2-introspection", "config": {
                "introspection_url": format!("{issuer}/introspect"),
                "authorization_value": format!("Basic {basic}"),
                "ttl": 300,
                "consumer_by": "client_id",
            }}),
        ),
    ] {
        let (s, v) = admin(
            http,
            Method::POST,
            format!("{admin_url}{collection}"),
            Some(body),
        )
        .await;
        assert_eq!(s, 201, "{collection}: {v}");
    }
}

#[tokio::test]
async fn gateway_changes_through_one_node_are_served_by_every_node() {
    let c = Cluster::start(3).await;
    let upstream = gatehouse_echo::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // Before: nothing is routed anywhere.
    for n in 0..3 {
        assert_eq!(c.proxy(n, "/shared", None).await, 404);
    }
    let (s, _) = c
        .admin(
            0,
            Method::POST,
            "/services",
            Some(json!({"name": "svc", "url": format!("{}/anything", upstream.base_url())})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, route) = c
        .admin(
            0,
            Method::POST,
            "/services/svc/routes",
            Some(json!({"name": "r", "paths": ["/shared"]})),
        )
        .await;
    assert_eq!(s, 201, "{route}");
    // The writing node serves it when it answers; the others within the deadline.
    assert_eq!(c.proxy(0, "/shared", None).await, 200);
    c.proxy_until(1, "/shared", None, 200, "the route was created")
        .await;
    c.proxy_until(2, "/shared", None, 200, "the route was created")
        .await;

    // The service disabled through node 1 takes the route out everywhere; enabled, it is back.
    for (enabled, status) in [(false, 404), (true, 200)] {
        let (s, v) = c
            .admin(
                1,
                Method::PATCH,
                "/services/svc",
                Some(json!({"enabled": enabled})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        for n in [0, 2] {
            c.proxy_until(n, "/shared", None, status, "the service was changed")
                .await;
        }
    }

    // A plugin written through node 1, then changed, then removed.
    let (s, plugin) = c
        .admin(
            1,
            Method::POST,
            "/routes/r/plugins",
            Some(json!({"name": "request-termination", "config": {"status_code": 418}})),
        )
        .await;
    assert_eq!(s, 201, "{plugin}");
    c.proxy_until(0, "/shared", None, 418, "the plugin was added")
        .await;
    c.proxy_until(2, "/shared", None, 418, "the plugin was added")
        .await;
    let id = plugin["id"].as_str().unwrap();
    let (s, _) = c
        .admin(
            2,
            Method::PATCH,
            &format!("/plugins/{id}"),
            Some(json!({"config": {"status_code": 403}})),
        )
        .await;
    assert_eq!(s, 200);
    c.proxy_until(0, "/shared", None, 403, "the plugin was changed")
        .await;
    c.proxy_until(1, "/shared", None, 403, "the plugin was changed")
        .await;
    let (s, _) = c
        .admin(2, Method::DELETE, &format!("/plugins/{id}"), None)
        .await;
    assert_eq!(s, 204);
    c.proxy_until(0, "/shared", None, 200, "the plugin was deleted")
        .await;
    c.proxy_until(1, "/shared", None, 200, "the plugin was deleted")
        .await;

    // The route deleted through node 2 is gone everywhere.
    let (s, _) = c.admin(2, Method::DELETE, "/routes/r", None).await;
    assert_eq!(s, 204);
    c.proxy_until(0, "/shared", None, 404, "the route was deleted")
        .await;
    c.proxy_until(1, "/shared", None, 404, "the route was deleted")
        .await;

    // Every node reports the same configuration version, past the six writes above.
    let versions = c.config_versions().await;
    assert!(versions[0] >= 6, "{versions:?}");
    until("every node at the same version", || async {
        c.config_versions()
            .await
            .iter()
            .all(|v| *v == versions[0])
            .then_some(())
    })
    .await;

    // Konnect's nodes list, through any node: the three nodes, each reporting the hash its
    // own /status shows, all the same, at the same version (reports follow within the deadline).
    let (_, cps) = c
        .admin(
            2,
            Method::GET,
            "/v2/control-planes?filter[name][eq]=default",
            None,
        )
        .await;
    let cp = cps["data"][0]["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let nodes = loop {
        let mut hashes = Vec::new();
        for n in &c.nodes {
            hashes.push(status(&c.http, n).await["configuration_hash"].clone());
        }
        let (s, nodes) = c
            .admin(
                1,
                Method::GET,
                &format!("/v2/control-planes/{cp}/nodes"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{nodes}");
        let items = nodes["items"].as_array().unwrap();
        if hashes.iter().all(|h| *h == hashes[0])
            && items.len() == 3
            && items
                .iter()
                .all(|i| i["config_hash"] == hashes[0] && i["config_version"] == json!(versions[0]))
        {
            break nodes;
        }
        assert!(started.elapsed() < DEADLINE, "{hashes:?} {nodes}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(nodes["page"]["total"], 3);
    let items = nodes["items"].as_array().unwrap();
    let ids: std::collections::HashSet<_> = items.iter().map(|i| i["id"].clone()).collect();
    assert_eq!(ids.len(), 3, "{nodes}");
    for i in items {
        assert_eq!(i["connection_state"]["is_connected"], true, "{i}");
        assert_eq!(i["lagging"], false, "{i}");
        assert_eq!(i["config_version"], json!(versions[0]), "{i}");
        assert_eq!(i["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            i["last_ping"].as_i64().unwrap() > 0 && !i["hostname"].as_str().unwrap().is_empty()
        );
    }
    let (s, v) = c
        .admin(
            0,
            Method::GET,
            &format!("/v2/control-planes/{}/nodes", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!((s, v["status"].clone()), (404, json!(404)), "{v}");
    c.stop().await;
}

#[tokio::test]
async fn identity_changes_and_revocations_reach_every_node_whatever_the_plugin_ttl() {
    let c = Cluster::start(3).await;
    let upstream = gatehouse_echo::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // An auth server and a client made through node 0: node 2 issues tokens for it.
    let (server, creds) =
        common::auth_server_with_client(&c.http, &c.nodes[0].admin, "cluster").await;
    let at_2 = c.issuer_at(2, &server);
    let started = Instant::now();
    let token = loop {
        let (s, t) = grant(&c.http, &at_2, &creds).await;
        if s == 200 {
            break t["access_token"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < DEADLINE,
            "node 2 never knew the new client: {s} {t}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // A route protected by oauth2-introspection with a 300 s cache, against the cluster's own
    // issuer: every node answers it in-process.
    protected_route(
        &c.http,
        &c.nodes[0].admin,
        &server,
        &upstream.base_url(),
        "/protected",
    )
    .await;
    let server_id = server["id"].as_str().unwrap();
    for n in 0..3 {
        c.proxy_until(n, "/protected", None, 401, "the plugin was added")
            .await;
        // Served, and now cached for 300 s on every node; no consumer is named.
        assert_eq!(c.proxy(n, "/protected", Some(&token)).await, 200);
        assert_eq!(c.consumer_seen(n, "/protected", &token).await, Value::Null);
    }

    // A consumer for the client, made through node 1, is named upstream by every node (the
    // cached answer is mapped to the consumers each node serves now); renamed through node 2,
    // then deleted through node 0, every node follows.
    let (s, v) = c
        .admin(
            1,
            Method::POST,
            "/consumers",
            Some(json!({"username": "alice", "custom_id": creds.0})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let consumer_until = |want: Value, what: &'static str| {
        let (c, token) = (&c, &token);
        async move {
            for n in 0..3 {
                until(&format!("node {n}: consumer {want} after {what}"), || {
                    let want = want.clone();
                    async move { (c.consumer_seen(n, "/protected", token).await == want).then_some(()) }
                })
                .await;
            }
        }
    };
    consumer_until(json!("alice"), "the consumer was created").await;
    let (s, v) = c
        .admin(
            2,
            Method::PATCH,
            "/consumers/alice",
            Some(json!({"username": "alicia"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    consumer_until(json!("alicia"), "the consumer was renamed").await;
    let (s, _) = c.admin(0, Method::DELETE, "/consumers/alicia", None).await;
    assert_eq!(s, 204);
    consumer_until(Value::Null, "the consumer was deleted").await;

    // Revoked through node 0 (RFC 7009): refused by every node's proxy despite the cache, and
    // inactive at every node's introspection endpoint.
    let (s, _) = token_call(&c.http, &c.issuer_at(0, &server), "revoke", &creds, &token).await;
    assert_eq!(s, 200);
    for n in 0..3 {
        c.proxy_until(n, "/protected", Some(&token), 401, "the token was revoked")
            .await;
        let (_, v) = token_call(
            &c.http,
            &c.issuer_at(n, &server),
            "introspect",
            &creds,
            &token,
        )
        .await;
        assert_eq!(v, json!({"active": false}), "node {n}");
    }

    // A fresh token, cached everywhere; then its client is deleted through node 1.
    let (s, t) = grant(&c.http, &at_2, &creds).await;
    assert_eq!(s, 200, "{t}");
    let second = t["access_token"].as_str().unwrap().to_owned();
    for n in 0..3 {
        assert_eq!(c.proxy(n, "/protected", Some(&second)).await, 200);
    }
    let (s, _) = c
        .admin(
            1,
            Method::DELETE,
            &format!("/v1/auth-servers/{server_id}/clients/{}", creds.0),
            None,
        )
        .await;
    assert_eq!(s, 204);
    for n in 0..3 {
        c.proxy_until(
            n,
            "/protected",
            Some(&second),
            401,
            "the client was deleted",
        )
        .await;
    }
    // No node issues it tokens any more.
    for n in 0..3 {
        let (s, v) = grant(&c.http, &c.issuer_at(n, &server), &creds).await;
        assert_eq!(s, 401, "node {n}: {v}");
        assert_eq!(v["error"], "invalid_client");
    }
    c.stop().await;
}

/// Waits until `node` has written the configuration it applied to its cache: the cache's
/// version is the applied one. Returns `/status`.
async fn cached(http: &reqwest::Client, node: &Node) -> Value {
    let started = Instant::now();
    loop {
        let v = status(http, node).await;
        let cache = &v["configuration"]["cache"];
        if cache["version"] == v["config_version"] && cache["written_at"].as_i64() > Some(0) {
            assert_eq!(cache["error"], Value::Null, "{v}");
            return v;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the cache was not written: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET path` through a node's proxy with an optional bearer token: the status.
async fn through(http: &reqwest::Client, node: &Node, path: &str, token: Option<&str>) -> u16 {
    let mut req = http.get(format!("{}{path}", node.proxy));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_node_starts_from_its_cached_configuration_while_the_database_is_down_and_catches_up() {
    // The test's own PostgreSQL, which it stops: never the machine's shared one.
    let pg = PrivatePg::start();
    let http = client();
    let a = start_node(&http, &pg.url, "300ms", None).await;
    let b = start_node(&http, &pg.url, "300ms", None).await;
    let upstream = gatehouse_echo::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (server, creds) = common::auth_server_with_client(&http, &a.admin, "cached").await;
    protected_route(&http, &a.admin, &server, &upstream.base_url(), "/cached").await;
    let slug = server["issuer"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let issuer_a = format!("{}/{slug}", a.identity);
    let (s, t) = grant(&http, &issuer_a, &creds).await;
    assert_eq!(s, 200, "{t}");
    let token = t["access_token"].as_str().unwrap().to_owned();
    // A second token, revoked before the outage: the cache must carry the revocation.
    let (_, t) = grant(&http, &issuer_a, &creds).await;
    let revoked = t["access_token"].as_str().unwrap().to_owned();
    let (s, _) = token_call(&http, &issuer_a, "revoke", &creds, &revoked).await;
    assert_eq!(s, 200);
    assert_eq!(through(&http, &a, "/cached", Some(&token)).await, 200);
    assert_eq!(through(&http, &a, "/cached", Some(&revoked)).await, 401);

    // Both nodes serve the same configuration, so they report the same hash.
    let before = cached(&http, &a).await;
    let hash = before["configuration_hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 32, "{before}");
    assert_ne!(hash, "0".repeat(32));
    until("node b reports the same hash", || async {
        (status(&http, &b).await["configuration_hash"] == hash.as_str()).then_some(())
    })
    .await;

    // Node a dies, then the database goes away. Node b goes on serving from memory.
    let data_dir = a.dir.clone();
    let mut a = a;
    a.kill9();
    pg.stop();
    assert_eq!(through(&http, &b, "/cached", Some(&token)).await, 200);
    assert_eq!(through(&http, &b, "/cached", None).await, 401);

    // A node without a database and without a cache cannot start, and says why.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--database", &pg.url, "--data-dir"])
        .arg(std::env::temp_dir().join(format!("gh-nocache-{}", uuid::Uuid::new_v4().simple())))
        .env("GATEHOUSE_MASTER_KEY", MASTER_KEY)
        .env("GATEHOUSE_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no cached configuration"), "{stderr}");

    // Node a restarts on its data directory while the database is still down: it serves the
    // configuration it cached, revocation included.
    let restarted = start_node(&http, &pg.url, "300ms", Some(data_dir)).await;
    let v = status(&http, &restarted).await;
    assert_eq!(v["database"]["reachable"], false, "{v}");
    assert_eq!(v["configuration_hash"], hash.as_str(), "{v}");
    assert_eq!(v["config_version"], before["config_version"], "{v}");
    assert_eq!(
        through(&http, &restarted, "/cached", Some(&token)).await,
        200
    );
    assert_eq!(through(&http, &restarted, "/cached", None).await, 401);
    assert_eq!(
        through(&http, &restarted, "/cached", Some(&revoked)).await,
        401
    );
    assert_eq!(
        through(&http, &restarted, "/cached", Some("garbage")).await,
        401
    );
    let issuer_r = format!("{}/{slug}", restarted.identity);
    let (s, v) = token_call(&http, &issuer_r, "introspect", &creds, &token).await;
    assert_eq!((s, v["active"].clone()), (200, json!(true)), "{v}");
    // Writes and grants need the database: 503 in each API's format, at once.
    let started = Instant::now();
    let (s, v) = admin(
        &http,
        Method::POST,
        format!("{}/services", restarted.admin),
        Some(json!({"name": "during", "url": "http://127.0.0.1:9/"})),
    )
    .await;
    assert_eq!(s, 503, "{v}");
    let (s, v) = grant(&http, &issuer_r, &creds).await;
    assert_eq!(
        (s, v["error"].clone()),
        (503, json!("temporarily_unavailable")),
        "{v}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // The database comes back. A write through node b reaches the restarted node, which
    // catches up without a restart; a write through the restarted node reaches b.
    pg.start_again();
    let started = Instant::now();
    loop {
        let (s, v) = admin(
            &http,
            Method::POST,
            format!("{}/services/svc/routes", b.admin),
            Some(json!({"name": "after", "paths": ["/after"]})),
        )
        .await;
        if s == 201 {
            break;
        }
        assert_eq!(s, 503, "{v}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "writes did not come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    // A new route without a plugin: 404 until the node knows it, then the upstream answers.
    while through(&http, &restarted, "/after", None).await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the restarted node did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, v) = admin(
        &http,
        Method::POST,
        format!("{}/services/svc/routes", restarted.admin),
        Some(json!({"name": "later", "paths": ["/later"]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    until("node b serves /later", || async {
        (through(&http, &b, "/later", None).await == 200).then_some(())
    })
    .await;
    let v = status(&http, &restarted).await;
    assert_eq!(v["database"]["reachable"], true, "{v}");
    assert_eq!(v["configuration"]["error"], Value::Null, "{v}");
    // The restarted node is the same node: two rows, not three.
    let (_, cps) = admin(
        &http,
        Method::GET,
        format!("{}/v2/control-planes?filter[name][eq]=default", b.admin),
        None,
    )
    .await;
    let cp = cps["data"][0]["id"].as_str().unwrap();
    let (s, nodes) = admin(
        &http,
        Method::GET,
        format!("{}/v2/control-planes/{cp}/nodes", b.admin),
        None,
    )
    .await;
    assert_eq!(
        (s, nodes["page"]["total"].clone()),
        (200, json!(2)),
        "{nodes}"
    );
    // Its cache follows: the new configuration, a new hash.
    let after = cached(&http, &restarted).await;
    assert_ne!(after["configuration_hash"], hash.as_str());
    drop(restarted);
    drop(a);
}

#[tokio::test]
async fn kill_9_during_writes_loses_nothing_acknowledged() {
    let c = Cluster::start(2).await;
    // Writes through node 0, one after another, while node 0 is killed with SIGKILL.
    let http = c.http.clone();
    let admin_0 = c.nodes[0].admin.clone();
    let writer = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for i in 0..10_000 {
            let r = http
                .post(format!("{admin_0}/consumers"))
                .bearer_auth(common::ADMIN_TOKEN)
                .json(&json!({"username": format!("user-{i}")}))
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 201 => acknowledged.push(format!("user-{i}")),
                Ok(r) => panic!("write {i}: {}", r.status()),
                Err(_) => break,
            }
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut c = c;
    c.nodes[0].kill9();
    let acknowledged = writer.await.unwrap();
    assert!(acknowledged.len() >= 10, "{} writes", acknowledged.len());
    // Every write node 0 acknowledged is there through node 1.
    for name in &acknowledged {
        let (s, v) = c
            .admin(1, Method::GET, &format!("/consumers/{name}"), None)
            .await;
        assert_eq!(s, 200, "{name} was acknowledged and lost: {v}");
    }
    c.stop().await;
}

#[tokio::test]
async fn concurrent_writes_to_one_entity_end_with_one_winner_never_a_lost_update() {
    let c = Cluster::start(2).await;
    let (s, _) = c
        .admin(
            0,
            Method::POST,
            "/services",
            Some(json!({"name": "svc", "url": "http://127.0.0.1:9/"})),
        )
        .await;
    assert_eq!(s, 201);
    // Each round, node 0 and node 1 change different fields of the same service at the same
    // moment. Whatever answered 200 must be in the result: a write that read the old service
    // and then overwrote the other's change would be a lost update.
    let mut conflicts = 0;
    for round in 0..40 {
        let (a, b) = tokio::join!(
            c.admin(
                0,
                Method::PATCH,
                "/services/svc",
                Some(json!({"retries": round}))
            ),
            c.admin(
                1,
                Method::PATCH,
                "/services/svc",
                Some(json!({"read_timeout": 1000 + round}))
            ),
        );
        for (s, v) in [&a, &b] {
            assert!(*s == 200 || *s == 409, "{s} {v}");
            if *s == 409 {
                conflicts += 1;
                assert!(
                    v["message"]
                        .as_str()
                        .unwrap()
                        .contains("changed by another request"),
                    "{v}"
                );
            }
        }
        assert!(
            a.0 == 200 || b.0 == 200,
            "one of two concurrent writes wins"
        );
        let (_, svc) = c.admin(1, Method::GET, "/services/svc", None).await;
        if a.0 == 200 {
            assert_eq!(
                svc["retries"], round,
                "round {round}: node 0's write was lost"
            );
        }
        if b.0 == 200 {
            assert_eq!(
                svc["read_timeout"],
                1000 + round,
                "round {round}: node 1's write was lost"
            );
        }
    }
    eprintln!("{conflicts} of 80 concurrent writes answered 409");

    // The same through Konnect's identity API: a scope renamed through node 1 while node 0
    // changes its description; 409s are problem+json.
    let (server, _) = common::auth_server_with_client(&c.http, &c.nodes[0].admin, "race").await;
    let scopes = format!("/v1/auth-servers/{}/scopes", server["id"].as_str().unwrap());
    let (s, scope) = c
        .admin(0, Method::POST, &scopes, Some(json!({"name": "s"})))
        .await;
    assert_eq!(s, 201, "{scope}");
    let one = format!("{scopes}/{}", scope["id"].as_str().unwrap());
    for round in 0..20 {
        let (a, b) = tokio::join!(
            c.admin(
                0,
                Method::PATCH,
                &one,
                Some(json!({"description": format!("d-{round}")}))
            ),
            c.admin(
                1,
                Method::PATCH,
                &one,
                Some(json!({"name": format!("s-{round}")}))
            ),
        );
        for (s, v) in [&a, &b] {
            assert!(*s == 200 || (*s == 409 && v["status"] == 409), "{s} {v}");
        }
        assert!(a.0 == 200 || b.0 == 200);
        let (_, now) = c.admin(1, Method::GET, &one, None).await;
        if a.0 == 200 {
            assert_eq!(now["description"], format!("d-{round}"), "round {round}");
        }
        if b.0 == 200 {
            assert_eq!(now["name"], format!("s-{round}"), "round {round}");
        }
    }
    c.stop().await;
}

/// A JWT's header and payload.
fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.').map(|p| {
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    });
    (parts.next().unwrap(), parts.next().unwrap())
}

/// Polls `probe` until it returns `Some`; panics with `what` after [`DEADLINE`].
async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_identity_entity_kind_written_through_one_node_is_served_by_the_others() {
    let c = Cluster::start(3).await;
    let (server, creds) =
        common::auth_server_with_client(&c.http, &c.nodes[0].admin, "kinds").await;
    let base = format!("/v1/auth-servers/{}", server["id"].as_str().unwrap());
    let (at_1, at_2) = (c.issuer_at(1, &server), c.issuer_at(2, &server));
    until("node 2 knows the auth server and the client", || async {
        (grant(&c.http, &at_2, &creds).await.0 == 200).then_some(())
    })
    .await;

    // A scope made through node 0: node 2 refuses it before, grants it after.
    let (s, v) = grant_scope(&c.http, &at_2, &creds, Some("reports:read")).await;
    assert_eq!(
        (s, v["error"].clone()),
        (400, json!("invalid_scope")),
        "{v}"
    );
    let (s, v) = c
        .admin(
            0,
            Method::POST,
            &format!("{base}/scopes"),
            Some(json!({"name": "reports:read"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    until("node 2 grants the new scope", || async {
        let (s, v) = grant_scope(&c.http, &at_2, &creds, Some("reports:read")).await;
        (s == 200 && v["scope"] == "reports:read").then_some(())
    })
    .await;

    // A claim made through node 1 is in the tokens node 2 signs.
    let (s, v) = c
        .admin(
            1,
            Method::POST,
            &format!("{base}/claims"),
            Some(
                json!({"name": "team", "value": "platform", "include_in_token": true,
                        "include_in_all_scopes": true}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    until("node 2's tokens carry the new claim", || async {
        let (s, v) = grant(&c.http, &at_2, &creds).await;
        (s == 200 && jwt_parts(v["access_token"].as_str()?).1["team"] == "platform").then_some(())
    })
    .await;

    // A second secret added through node 0 authenticates at node 1.
    let (s, v) = c
        .admin(
            0,
            Method::POST,
            &format!("{base}/clients/{}/secrets", creds.0),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let second = (creds.0.clone(), v["secret"].as_str().unwrap().to_owned());
    assert_ne!(second.1, creds.1);
    until("node 1 accepts the new secret", || async {
        (grant(&c.http, &at_1, &second).await.0 == 200).then_some(())
    })
    .await;

    // A new signing algorithm set through node 2: node 1 signs with the new key, and node 0
    // publishes it.
    let (s, v) = c
        .admin(
            2,
            Method::PATCH,
            &base,
            Some(json!({"signing_algorithm": "ES256"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let kid = until("node 1 signs with the new key", || async {
        let (s, v) = grant(&c.http, &at_1, &creds).await;
        let (header, _) = jwt_parts(v["access_token"].as_str()?);
        (s == 200 && header["alg"] == "ES256").then(|| header["kid"].clone())
    })
    .await;
    let jwks: Value = c
        .http
        .get(format!("{}/.well-known/jwks", c.issuer_at(0, &server)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid),
        "{jwks}"
    );
    c.stop().await;
}
