//! Several nodes on one PostgreSQL database (DESIGN.md §6): three real `gatehouse` processes
//! share a private schema, and what is written through one node is served by the others.
//!
//! The nodes check versions on a timer only every 60 s here, so everything that arrives within
//! the deadlines below arrived through PostgreSQL's notifications: without the change feed
//! the other nodes would serve nothing new until restarted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Node, PgSchema, StartOptions, admin, client, grant, token_call};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long a change may take to reach another node here. The target is 0.5 s (measured by
/// `bench/run`'s `cluster_propagation`); this bound only leaves room for a loaded CI machine,
/// and is far below the 60 s timer.
const DEADLINE: Duration = Duration::from_secs(5);

/// The issuer base every node advertises, as behind one load balancer.
const PUBLIC_URL: &str = "http://gatehouse.cluster.test:9";

struct Cluster {
    nodes: Vec<Node>,
    schema: Option<PgSchema>,
    http: reqwest::Client,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let schema = PgSchema::create().await;
        let master = "5a".repeat(32);
        let http = client();
        let mut nodes = Vec::new();
        for _ in 0..n {
            let node = Node::start_opts(
                "serve",
                Some(&schema.url),
                &[
                    "--db-update-frequency",
                    "60s",
                    "--identity-public-url",
                    PUBLIC_URL,
                ],
                StartOptions {
                    master_key: Some(master.clone()),
                    ..StartOptions::default()
                },
            );
            node.ready(&http).await;
            nodes.push(node);
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
    let started = Instant::now();
    while c.config_versions().await.iter().any(|v| *v != versions[0]) {
        assert!(
            started.elapsed() < DEADLINE,
            "{:?}",
            c.config_versions().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    // issuer: every node answers it in-process. The gateway introspects as a client of its own.
    let issuer = server["issuer"].as_str().unwrap();
    let server_id = server["id"].as_str().unwrap();
    let (s, gw) = c
        .admin(
            0,
            Method::POST,
            &format!("/v1/auth-servers/{server_id}/clients"),
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
    for (path, body) in [
        (
            "/services",
            json!({"name": "svc", "url": format!("{}/anything", upstream.base_url())}),
        ),
        (
            "/services/svc/routes",
            json!({"name": "r", "paths": ["/protected"]}),
        ),
        (
            "/routes/r/plugins",
            json!({"name": "oauth2-introspection", "config": {
                "introspection_url": format!("{issuer}/introspect"),
                "authorization_value": format!("Basic {basic}"),
                "ttl": 300,
            }}),
        ),
    ] {
        let (s, v) = c.admin(0, Method::POST, path, Some(body)).await;
        assert_eq!(s, 201, "{path}: {v}");
    }
    for n in 0..3 {
        c.proxy_until(n, "/protected", None, 401, "the plugin was added")
            .await;
        // Served, and now cached for 300 s on every node.
        assert_eq!(c.proxy(n, "/protected", Some(&token)).await, 200);
        assert_eq!(c.proxy(n, "/protected", Some(&token)).await, 200);
    }

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
