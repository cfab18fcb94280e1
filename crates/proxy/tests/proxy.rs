//! End-to-end tests of the proxy: a real listener on an ephemeral port, a real echo upstream,
//! configuration written to a real (SQLite) store and loaded by the [`Gateway`], requests made
//! with a real HTTP client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use async_trait::async_trait;
use gatehouse_core::gateway::{
    Consumer, ControlPlane, CoreEntity, Plugin as PluginEntity, Route, Service,
};
use gatehouse_core::kong_schema::{FieldErrors, KongReader};
use gatehouse_proxy::context::{Credential, RequestCtx};
use gatehouse_proxy::gateway::Gateway;
use gatehouse_proxy::plugin::{Flow, Plugin, PluginError, PluginFactory, Registry};
use gatehouse_proxy::{ProxyRequest, full_body};
use gatehouse_store::SharedStore;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A test plugin that sets `X-Test-Plugin: <config.value>` on the upstream request, so tests can
/// see which instance ran.
struct Marker;

struct MarkerPlugin(String);

#[async_trait]
impl Plugin for MarkerPlugin {
    async fn access(
        &self,
        _: &mut RequestCtx,
        req: &mut ProxyRequest,
    ) -> Result<Flow, PluginError> {
        req.parts
            .headers
            .insert("x-test-plugin", self.0.parse().unwrap());
        Ok(Flow::Continue)
    }
}

impl PluginFactory for Marker {
    fn name(&self) -> &'static str {
        "marker"
    }
    fn priority(&self) -> i32 {
        10
    }
    fn validate(&self, config: Value) -> Result<Value, FieldErrors> {
        let mut r = KongReader::new(config)?;
        let v = r.required_string("value");
        r.finish()?;
        Ok(json!({"value": v}))
    }
    fn schema(&self) -> Value {
        json!({"fields": []})
    }
    fn build(&self, config: &Value) -> Result<Arc<dyn Plugin>, PluginError> {
        Ok(Arc::new(MarkerPlugin(
            config["value"].as_str().unwrap_or("").to_owned(),
        )))
    }
}

/// A test auth plugin (higher priority): `X-User: <username>` authenticates that consumer;
/// `X-Deny` answers 403 itself.
struct HeaderAuth;

struct HeaderAuthPlugin;

#[async_trait]
impl Plugin for HeaderAuthPlugin {
    async fn access(
        &self,
        ctx: &mut RequestCtx,
        req: &mut ProxyRequest,
    ) -> Result<Flow, PluginError> {
        if req.parts.headers.contains_key("x-deny") {
            let mut resp = http::Response::new(full_body("{\"message\":\"denied\"}"));
            *resp.status_mut() = http::StatusCode::FORBIDDEN;
            return Ok(Flow::Respond(resp));
        }
        if let Some(u) = req
            .parts
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
        {
            let consumer = ctx.snapshot.consumers.by_username.get(u).cloned();
            ctx.authenticate(consumer, Credential::default());
        }
        Ok(Flow::Continue)
    }
}

impl PluginFactory for HeaderAuth {
    fn name(&self) -> &'static str {
        "header-auth"
    }
    fn priority(&self) -> i32 {
        1000
    }
    fn validate(&self, config: Value) -> Result<Value, FieldErrors> {
        KongReader::new(config)?.finish()?;
        Ok(json!({}))
    }
    fn schema(&self) -> Value {
        json!({"fields": []})
    }
    fn build(&self, _: &Value) -> Result<Arc<dyn Plugin>, PluginError> {
        Ok(Arc::new(HeaderAuthPlugin))
    }
}

/// A test plugin with a response phase: adds `X-Response-Marker: <config.value>:<n>` to the
/// response, `n` being how many `X-Mixed-Case` fields the upstream sent.
struct ResponseMarker;

struct ResponseMarkerPlugin(String);

#[async_trait]
impl Plugin for ResponseMarkerPlugin {
    fn response_headers(&self, _: &mut RequestCtx, resp: &mut http::response::Parts) {
        let seen = resp.headers.get_all("x-mixed-case").iter().count();
        let value = format!("{}:{seen}", self.0);
        resp.headers
            .insert("x-response-marker", value.parse().unwrap());
    }

    fn rewrites_response_headers(&self) -> bool {
        true
    }
}

impl PluginFactory for ResponseMarker {
    fn name(&self) -> &'static str {
        "response-marker"
    }
    fn priority(&self) -> i32 {
        5
    }
    fn validate(&self, config: Value) -> Result<Value, FieldErrors> {
        Marker.validate(config)
    }
    fn schema(&self) -> Value {
        json!({"fields": []})
    }
    fn build(&self, config: &Value) -> Result<Arc<dyn Plugin>, PluginError> {
        Ok(Arc::new(ResponseMarkerPlugin(
            config["value"].as_str().unwrap_or("").to_owned(),
        )))
    }
}

fn registry() -> Arc<Registry> {
    let mut r = Registry::new();
    r.register(Arc::new(Marker));
    r.register(Arc::new(HeaderAuth));
    r.register(Arc::new(ResponseMarker));
    Arc::new(r)
}

struct Env {
    store: SharedStore,
    cp: Uuid,
    gateway: Arc<Gateway>,
    proxy: SocketAddr,
    echo: gatehouse_echo::EchoServer,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: std::path::PathBuf,
}

impl Env {
    async fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("gatehouse-proxy-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = gatehouse_store::open(&dir.join("t.db").display().to_string())
            .await
            .unwrap();
        let now = gatehouse_core::Timestamp::now();
        let cp = ControlPlane {
            id: Uuid::new_v4(),
            name: "default".into(),
            description: String::new(),
            labels: Default::default(),
            cluster_type: "CLUSTER_TYPE_CONTROL_PLANE".into(),
            auth_type: "pinned_client_certs".into(),
            cloud_gateway: false,
            proxy_urls: vec![],
            created_at: now,
            updated_at: now,
        };
        store.create_control_plane(&cp).await.unwrap();
        let gateway = Gateway::new(registry(), cp.id);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(gatehouse_proxy::server::serve(
            listener,
            gateway.clone(),
            gatehouse_proxy::server::Edge::default(),
            async {
                let _ = stopped.await;
            },
        ));
        let echo = gatehouse_echo::spawn("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Self {
            store,
            cp: cp.id,
            gateway,
            proxy,
            echo,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            stop: Some(stop),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    async fn put(&self, e: CoreEntity) {
        self.store.insert_core_entity(&e).await.unwrap();
        let all = self.store.core_entities(self.cp, None).await.unwrap();
        self.gateway
            .apply(&all.into_iter().map(Arc::new).collect::<Vec<_>>())
            .unwrap();
    }

    async fn service(&self, body: Value) -> Uuid {
        let s = Service::from_input(Uuid::new_v4(), body, 1, 1).unwrap();
        let id = s.id;
        self.put(s.to_entity(self.cp)).await;
        id
    }

    async fn route(&self, mut body: Value, service: Option<Uuid>) -> Uuid {
        if let Some(s) = service {
            body["service"] = json!({"id": s});
        }
        let r = Route::from_input(Uuid::new_v4(), body, 1, 1).unwrap();
        let id = r.id;
        self.put(r.to_entity(self.cp)).await;
        id
    }

    async fn plugin(&self, body: Value) -> Uuid {
        let p = PluginEntity::from_input(Uuid::new_v4(), body, 1, 1, registry().as_ref()).unwrap();
        let id = p.id;
        self.put(p.to_entity(self.cp)).await;
        id
    }

    async fn consumer(&self, username: &str) -> Uuid {
        let c = Consumer::from_input(Uuid::new_v4(), json!({"username": username}), 1, 1).unwrap();
        let id = c.id;
        self.put(c.to_entity(self.cp)).await;
        id
    }

    /// A service pointing at `upstream`, and a route for `path`.
    async fn upstream_route(&self, upstream: SocketAddr, path: &str, service: Value) {
        let mut body = service;
        body["url"] = json!(format!("http://{upstream}"));
        let s = self.service(body).await;
        self.route(json!({"paths": [path]}), Some(s)).await;
    }

    /// A service pointing at the echo server's `/anything`, and a route for `path`.
    async fn echo_route(&self, path: &str) -> (Uuid, Uuid) {
        let s = self
            .service(json!({"url": format!("{}/anything", self.echo.base_url())}))
            .await;
        let r = self.route(json!({"paths": [path]}), Some(s)).await;
        (s, r)
    }

    async fn get_json(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.client.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body, headers)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

#[tokio::test]
async fn routes_to_the_service_with_forwarding_headers() {
    let env = Env::new().await;
    env.echo_route("/anything").await;
    let (status, body, headers) = env
        .get_json("/anything/x?a=1&a=2", &[("x-forwarded-for", "10.0.0.1")])
        .await;
    assert_eq!(status, 200, "{body}");
    // strip_path: /anything/x → service path /anything + /x
    assert_eq!(
        body["url"],
        format!("{}/anything/x?a=1&a=2", env.echo.base_url())
    );
    assert_eq!(body["args"]["a"], json!(["1", "2"]));
    let h = &body["headers"];
    assert_eq!(h["Host"], env.echo.addr.to_string());
    assert_eq!(h["X-Forwarded-For"], "10.0.0.1, 127.0.0.1");
    assert_eq!(h["X-Real-Ip"], "127.0.0.1");
    assert_eq!(h["X-Forwarded-Proto"], "http");
    assert_eq!(h["X-Forwarded-Host"], "127.0.0.1");
    assert_eq!(h["X-Forwarded-Port"], env.proxy.port().to_string());
    assert_eq!(h["X-Forwarded-Path"], "/anything/x");
    assert_eq!(h["X-Forwarded-Prefix"], "/anything");
    assert!(h["Via"].as_str().unwrap().starts_with("1.1 gatehouse/"));
    let rid = headers["x-gatehouse-request-id"].to_str().unwrap();
    assert_eq!(h["X-Gatehouse-Request-Id"], rid);
    assert!(headers.contains_key("x-gatehouse-upstream-latency"));
    assert!(headers.contains_key("x-gatehouse-proxy-latency"));
    assert!(headers["via"].to_str().unwrap().contains("gatehouse/"));
}

/// An upstream that records every request head it receives and answers `200 ok`, closing.
async fn recording_upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = tcp_upstream(move |mut stream| {
        let tx = tx.clone();
        async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
            let _ = stream.write_all(reply).await;
        }
    })
    .await;
    (addr, rx)
}

/// The values of `name` in a raw head, in order.
fn fields<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

#[tokio::test]
async fn forwarding_headers_replace_the_clients_own() {
    let env = Env::new().await;
    let (upstream, mut heads) = recording_upstream().await;
    env.upstream_route(upstream, "/fwd", json!({})).await;
    let request = b"GET /fwd/a%0d%0aInjected:%20yes?q=1 HTTP/1.1\r\nHost: example.com:8443\r\n\
        X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nX-Forwarded-Proto: https\r\n\
        X-Forwarded-Host: evil\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Path: /evil\r\n\
        X-Forwarded-Prefix: /evil\r\nX-Real-IP: 6.6.6.6\r\nVia: 1.0 corp-proxy\r\n\
        X-Gatehouse-Request-Id: forged\r\nX-Custom: kept\r\nConnection: close\r\n\r\n";
    let (head, body) = {
        let raw = raw_exchange(env.proxy, request, "", b"").await;
        let (head, body) = split_head(&raw);
        (head, body.to_vec())
    };
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"ok");
    let sent = heads.recv().await.unwrap();
    let one = |name: &str| {
        let v = fields(&sent, name);
        assert_eq!(v.len(), 1, "{name} exactly once in:\n{sent}");
        v[0].to_owned()
    };
    // Percent-encoded CR LF stay encoded (normalised to upper case), never raw.
    assert!(
        sent.starts_with("GET /a%0D%0AInjected:%20yes?q=1 HTTP/1.1\r\n"),
        "{sent}"
    );
    assert_eq!(one("host"), upstream.to_string());
    assert_eq!(one("x-forwarded-for"), "10.0.0.1, 10.0.0.2, 127.0.0.1");
    assert_eq!(one("x-forwarded-proto"), "http");
    assert_eq!(one("x-forwarded-host"), "example.com");
    assert_eq!(one("x-forwarded-port"), env.proxy.port().to_string());
    assert_eq!(one("x-forwarded-path"), "/fwd/a%0d%0aInjected:%20yes");
    // The stripped prefix is the route's path, whatever the client claimed.
    assert_eq!(one("x-forwarded-prefix"), "/fwd");
    assert_eq!(one("x-real-ip"), "127.0.0.1");
    assert_eq!(
        one("via"),
        format!(
            "1.0 corp-proxy, 1.1 gatehouse/{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    let id = one("x-gatehouse-request-id");
    assert_eq!(id.len(), 32, "{id}");
    assert_ne!(id, "forged");
    assert_eq!(one("x-custom"), "kept");
    assert!(fields(&sent, "injected").is_empty(), "{sent}");
    assert!(fields(&sent, "connection").is_empty(), "hop-by-hop: {sent}");
}

#[tokio::test]
async fn gateway_errors_follow_kong() {
    let env = Env::new().await;
    let (status, body, headers) = env.get_json("/nothing", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "no Route matched with those values");
    assert_eq!(
        body["request_id"],
        headers["x-gatehouse-request-id"].to_str().unwrap()
    );
    let text = env
        .client
        .get(env.url("/nothing"))
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap();
    assert!(
        text.text()
            .await
            .unwrap()
            .starts_with("no Route matched with those values\nrequest_id: ")
    );

    // Nothing listens on the upstream port: 502.
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = free.local_addr().unwrap();
    drop(free);
    let s = env
        .service(json!({"url": format!("http://{dead}"), "retries": 2, "connect_timeout": 1000}))
        .await;
    env.route(json!({"paths": ["/dead"]}), Some(s)).await;
    let resp = env.client.get(env.url("/dead")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        resp.text().await.unwrap().lines().next().unwrap(),
        "An invalid response was received from the upstream server"
    );

    // A slow upstream: 504 after the read timeout, not after the upstream's 2 s.
    let s = env
        .service(json!({"url": format!("{}/delay/2", env.echo.base_url()), "read_timeout": 200}))
        .await;
    env.route(json!({"paths": ["/slow"]}), Some(s)).await;
    let started = std::time::Instant::now();
    let resp = env.client.get(env.url("/slow")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(1500));

    // A route without a service.
    env.route(json!({"paths": ["/orphan"]}), None).await;
    let (status, body, _) = env.get_json("/orphan", &[]).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (503, Some("no Service found with those values"))
    );

    // Bad paths and oversized headers get clean 4xx.
    let (status, body, _) = env.get_json("/anything/%zz", &[]).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("Bad request"))
    );
    let huge = "x".repeat(100 * 1024);
    let resp = env
        .client
        .get(env.url("/nothing"))
        .header("x-huge", huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
}

#[tokio::test]
async fn https_only_routes_answer_426_or_redirect() {
    let env = Env::new().await;
    let (s, _) = env.echo_route("/open").await;
    env.route(
        json!({"paths": ["/secure"], "protocols": ["https"]}),
        Some(s),
    )
    .await;
    env.route(
        json!({"paths": ["/moved"], "protocols": ["https"], "https_redirect_status_code": 301}),
        Some(s),
    )
    .await;
    let (status, body, headers) = env.get_json("/secure", &[]).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (426, Some("Please use HTTPS protocol"))
    );
    assert_eq!(headers["upgrade"], "TLS/1.2, HTTP/1.1");
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_redirects
        .get(env.url("/moved/a?b=1"))
        .header("host", "api.test:8000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 301);
    assert_eq!(resp.headers()["location"], "https://api.test/moved/a?b=1");
}

#[tokio::test]
async fn preserve_host_and_no_strip() {
    let env = Env::new().await;
    let s = env
        .service(json!({"url": format!("{}/anything/base", env.echo.base_url())}))
        .await;
    env.route(
        json!({"paths": ["/keep"], "strip_path": false, "preserve_host": true}),
        Some(s),
    )
    .await;
    let (status, body, _) = env.get_json("/keep/me", &[("host", "client.test")]).await;
    assert_eq!(status, 200);
    assert_eq!(body["headers"]["Host"], "client.test");
    assert_eq!(body["url"], "http://client.test/anything/base/keep/me");
    assert!(body["headers"].get("X-Forwarded-Prefix").is_none());
}

#[tokio::test]
async fn plugins_resolve_by_scope_and_consumer() {
    let env = Env::new().await;
    let (s, r) = env.echo_route("/anything").await;
    let other_route = env.route(json!({"paths": ["/other"]}), Some(s)).await;
    let alice = env.consumer("alice").await;
    env.plugin(json!({"name": "header-auth"})).await;
    env.plugin(json!({"name": "marker", "config": {"value": "global"}}))
        .await;
    let marker = |env: &Env, path: &'static str, user: Option<&'static str>| {
        let mut req = env.client.get(env.url(path));
        if let Some(u) = user {
            req = req.header("x-user", u);
        }
        async move {
            let body: Value = req.send().await.unwrap().json().await.unwrap();
            body["headers"]["X-Test-Plugin"].as_str().map(str::to_owned)
        }
    };
    assert_eq!(
        marker(&env, "/anything", None).await.as_deref(),
        Some("global")
    );
    env.plugin(json!({"name": "marker", "config": {"value": "service"}, "service": {"id": s}}))
        .await;
    assert_eq!(
        marker(&env, "/anything", None).await.as_deref(),
        Some("service")
    );
    env.plugin(json!({"name": "marker", "config": {"value": "route"}, "route": {"id": r}}))
        .await;
    assert_eq!(
        marker(&env, "/anything", None).await.as_deref(),
        Some("route")
    );
    assert_eq!(
        marker(&env, "/other", None).await.as_deref(),
        Some("service")
    );
    // Consumer alone beats Route and Service…
    env.plugin(
        json!({"name": "marker", "config": {"value": "consumer"}, "consumer": {"id": alice}}),
    )
    .await;
    assert_eq!(
        marker(&env, "/anything", Some("alice")).await.as_deref(),
        Some("consumer")
    );
    assert_eq!(
        marker(&env, "/other", Some("alice")).await.as_deref(),
        Some("consumer")
    );
    assert_eq!(
        marker(&env, "/other", Some("bob")).await.as_deref(),
        Some("service")
    );
    assert_eq!(
        marker(&env, "/anything", Some("bob")).await.as_deref(),
        Some("route")
    );
    // …but not Route+Service.
    env.plugin(
        json!({"name": "marker", "config": {"value": "route+service"},
                      "route": {"id": r}, "service": {"id": s}}),
    )
    .await;
    assert_eq!(
        marker(&env, "/anything", Some("alice")).await.as_deref(),
        Some("route+service")
    );
    assert_eq!(
        marker(&env, "/other", Some("alice")).await.as_deref(),
        Some("consumer")
    );
    // Route+Consumer beats Route.
    env.plugin(
        json!({"name": "marker", "config": {"value": "route+consumer"},
                      "route": {"id": r}, "consumer": {"id": alice}}),
    )
    .await;
    assert_eq!(
        marker(&env, "/anything", Some("alice")).await.as_deref(),
        Some("route+consumer")
    );
    let _ = other_route;

    // A plugin answering itself: no upstream call, gateway headers on the response.
    let resp = env
        .client
        .get(env.url("/anything"))
        .header("x-deny", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().contains_key("x-gatehouse-request-id"));
    assert!(
        resp.headers()["server"]
            .to_str()
            .unwrap()
            .starts_with("gatehouse/")
    );
}

#[tokio::test]
async fn disabled_services_take_their_routes_out() {
    let env = Env::new().await;
    let url = format!("{}/anything", env.echo.base_url());
    let s = env.service(json!({"url": url})).await;
    env.route(json!({"paths": ["/off"]}), Some(s)).await;
    // Enabled, the route serves.
    let (status, _, _) = env.get_json("/off", &[]).await;
    assert_eq!(status, 200);
    // The same service disabled: its route answers 404, as Kong's does.
    let held = env
        .store
        .core_entities(env.cp, None)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.id == s)
        .unwrap();
    let disabled = Service::from_input(s, json!({"url": url, "enabled": false}), 1, 2).unwrap();
    env.store
        .update_core_entity(&disabled.to_entity(env.cp), &held.body)
        .await
        .unwrap();
    let all = env.store.core_entities(env.cp, None).await.unwrap();
    env.gateway
        .apply(&all.into_iter().map(Arc::new).collect::<Vec<_>>())
        .unwrap();
    let (status, _, _) = env.get_json("/off", &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn streams_large_bodies_both_ways() {
    use http_body_util::BodyExt;
    let env = Env::new().await;
    // Download: 64 MiB from the echo server, counted chunk by chunk.
    let s = env.service(json!({"url": env.echo.base_url()})).await;
    env.route(json!({"paths": ["/dl"]}), Some(s)).await;
    let mut resp = env
        .client
        .get(env.url("/dl/bytes/67108864"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut total = 0usize;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        total += chunk.len();
    }
    assert_eq!(total, 64 << 20);

    // Upload: 256 MiB streamed to an upstream that counts and discards.
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = sink.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let mut body = req.into_body();
                        let mut n = 0usize;
                        while let Some(frame) = body.frame().await {
                            if let Ok(data) = frame.unwrap().into_data() {
                                n += data.len();
                            }
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(n.to_string())),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let s = env
        .service(json!({"url": format!("http://{sink_addr}")}))
        .await;
    env.route(json!({"paths": ["/ul"]}), Some(s)).await;
    let chunk = bytes::Bytes::from(vec![7u8; 1 << 20]);
    let stream =
        futures::stream::iter((0..256).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let resp = env
        .client
        .post(env.url("/ul"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), (256usize << 20).to_string());
}

#[tokio::test]
async fn configuration_swaps_under_load_without_failures() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let env = Arc::new(Env::new().await);
    env.echo_route("/anything").await;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU32::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (env, stop, served) = (env.clone(), stop.clone(), served.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let resp = env.client.get(env.url("/anything")).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // The load is running before the first swap...
    while served.load(Ordering::Relaxed) == 0 {
        tokio::task::yield_now().await;
    }
    // ...and requests complete between swaps, not only before and after them.
    let mut overlapped = 0;
    for i in 0..30 {
        let before = served.load(Ordering::Relaxed);
        env.route(json!({"paths": [format!("/extra-{i}")]}), None)
            .await;
        tokio::task::yield_now().await;
        if served.load(Ordering::Relaxed) > before {
            overlapped += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        overlapped >= 10,
        "requests completed during {overlapped} of 30 swaps"
    );
    assert_eq!(env.gateway.snapshot().routes.len(), 31);
}

/// A TCP upstream on a free port whose every accepted connection `serve` handles in a task
/// of its own.
async fn tcp_upstream<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// An upstream that answers every connection with `reply` and closes it.
async fn raw_upstream(reply: &'static [u8]) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp_upstream(move |mut stream| async move {
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(reply).await;
        let _ = stream.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn broken_upstreams_give_502_never_a_hang() {
    let env = Env::new().await;
    let garbage = raw_upstream(b"this is not HTTP\r\n\r\n").await;
    let reset = raw_upstream(b"").await;
    let truncated = raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort").await;
    // A response head larger than the proxy reads (64 KiB).
    static HUGE_HEAD: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let mut head = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 100 * 1024));
        head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
        head
    });
    let huge = raw_upstream(HUGE_HEAD.as_slice()).await;
    for (path, addr) in [("/garbage", garbage), ("/reset", reset), ("/huge", huge)] {
        env.upstream_route(addr, path, json!({"read_timeout": 2000}))
            .await;
        let resp = env.client.get(env.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 502, "{path}");
    }
    // Headers arrived, then the body broke: the client sees the stream end in an error rather
    // than a complete response.
    env.upstream_route(truncated, "/truncated", json!({"read_timeout": 2000}))
        .await;
    let resp = env.client.get(env.url("/truncated")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err());
}

/// The header fields of a raw response head, as `(name, value)` in order and as spelled.
fn head_fields(head: &str) -> Vec<(&str, &str)> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(": "))
        .collect()
}

#[tokio::test]
async fn upstream_response_heads_are_forwarded_as_received() {
    let env = Env::new().await;
    let version = env!("CARGO_PKG_VERSION");
    let request = b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    // The upstream's fields in its order and spelling, less hop-by-hop and framing ones; its
    // Server stays; the gateway's fields follow.
    let plain = raw_upstream(
        b"HTTP/1.1 200 OK\r\nServer: up/1\r\nX-Mixed-Case: A\r\nKeep-Alive: timeout=5\r\n\
          Connection: keep-alive\r\nx-mixed-case: b\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    env.upstream_route(plain, "/plain", json!({})).await;
    let raw = raw_exchange(env.proxy, request, "", b"").await;
    let (head, body) = split_head(&raw);
    assert_eq!(body, b"ok");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let fields = head_fields(&head);
    let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names[..7],
        [
            "Server",
            "X-Mixed-Case",
            "x-mixed-case",
            "via",
            "x-gatehouse-upstream-latency",
            "x-gatehouse-proxy-latency",
            "x-gatehouse-request-id",
        ],
        "{head}"
    );
    assert_eq!(fields[0].1, "up/1");
    assert_eq!(fields[3].1, format!("1.1 gatehouse/{version}"));
    assert_eq!(fields[6].1.len(), 32);
    let value = |name: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .collect()
    };
    assert_eq!(value("content-length"), ["2"]);
    assert_eq!(value("connection"), ["close"], "ours, for this client");
    assert!(value("keep-alive").is_empty(), "{head}");
    assert_eq!(value("date").len(), 1, "a Date is added: {head}");

    // `Connection` naming a field, and a `Via` to extend: read as a map, sent in lower case.
    let named = raw_upstream(
        b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nVia: 1.0 cache\r\n\
          X-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    env.upstream_route(named, "/named", json!({})).await;
    let request = b"GET /named HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let raw = raw_exchange(env.proxy, request, "", b"").await;
    let (head, body) = split_head(&raw);
    assert_eq!(body, b"ok");
    let fields = head_fields(&head);
    let value = |name: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .collect()
    };
    assert!(value("x-secret").is_empty(), "{head}");
    assert_eq!(value("x-kept"), ["yes"]);
    assert_eq!(
        value("via"),
        [format!("1.0 cache, 1.1 gatehouse/{version}")]
    );
    assert_eq!(
        value("server"),
        [format!("gatehouse/{version}")],
        "none upstream"
    );

    // Transfer-Encoding next to Content-Length: the body is re-framed, the length not sent on.
    let both = raw_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n\
          2\r\nok\r\n0\r\n\r\n",
    )
    .await;
    env.upstream_route(both, "/both", json!({})).await;
    let request = b"GET /both HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let raw = raw_exchange(env.proxy, request, "", b"").await;
    let (head, body) = split_head(&raw);
    let fields = head_fields(&head);
    assert!(
        !fields
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length")),
        "{head}"
    );
    assert!(fields.contains(&("transfer-encoding", "chunked")), "{head}");
    assert_eq!(body, b"2\r\nok\r\n0\r\n\r\n");

    // A plugin with a response phase sees the upstream's fields as a map and changes them.
    let s = env.service(json!({"url": format!("http://{plain}")})).await;
    let r = env.route(json!({"paths": ["/rewritten"]}), Some(s)).await;
    env.plugin(json!({"name": "response-marker", "config": {"value": "seen"}, "route": {"id": r}}))
        .await;
    let resp = env.client.get(env.url("/rewritten")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-response-marker"], "seen:2");
    assert_eq!(resp.headers()["server"], "up/1");
    assert_eq!(resp.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn hostile_headers_neither_crash_nor_strip_plugin_headers() {
    let env = Env::new().await;
    env.echo_route("/anything").await;
    env.plugin(json!({"name": "marker", "config": {"value": "set-by-plugin"}}))
        .await;
    // A Host with an unclosed IPv6 bracket.
    let (status, body, _) = env.get_json("/anything", &[("host", "[x")]).await;
    assert_eq!(status, 200, "{body}");
    // `Connection` may not name a header a plugin sets for the upstream.
    let (status, body, _) = env
        .get_json(
            "/anything",
            &[("connection", "x-test-plugin, x-other"), ("x-other", "1")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["headers"]["X-Test-Plugin"], "set-by-plugin");
    assert!(
        body["headers"].get("X-Other").is_none(),
        "client hop-by-hop headers go"
    );
    // Proxied responses carry a Server header when the upstream sent none.
    let resp = env.client.get(env.url("/anything")).send().await.unwrap();
    assert!(resp.headers().contains_key("server"));
}

/// A keep-alive upstream answering `ok` to bodiless requests; counts the connections it
/// accepted. With `one_per_connection` it answers the first request of each connection and
/// closes the connection, unannounced, when a second one arrives: the race of an upstream
/// whose keep-alive timeout expires just as a request is sent.
async fn counting_upstream(
    one_per_connection: bool,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let (addr, accepted, _) = counting_upstream_dropping(one_per_connection).await;
    (addr, accepted)
}

/// [`counting_upstream`], also counting the requests it dropped by closing their connection
/// (the second request of a connection, with `one_per_connection`).
async fn counting_upstream_dropping(
    one_per_connection: bool,
) -> (
    SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let accepted = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let drops = dropped.clone();
    let addr = tcp_upstream(move |mut stream| {
        count.fetch_add(1, Ordering::SeqCst);
        let drops = drops.clone();
        async move {
            let mut pending = Vec::new();
            let mut answered = false;
            let mut buf = [0u8; 4096];
            loop {
                let Ok(n) = stream.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    pending.drain(..end + 4);
                    if one_per_connection && answered {
                        drops.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    answered = true;
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(reply).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    (addr, accepted, dropped)
}

#[tokio::test]
async fn upstream_connections_are_reused_and_stale_ones_retried() {
    use std::sync::atomic::Ordering;
    let env = Env::new().await;
    let (keepalive, accepted) = counting_upstream(false).await;
    env.upstream_route(keepalive, "/keepalive", json!({})).await;
    for _ in 0..20 {
        let resp = env.client.get(env.url("/keepalive")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");
    let parallel = futures::future::join_all((0..8).map(|_| async {
        let resp = env.client.get(env.url("/keepalive")).send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }))
    .await;
    assert!(parallel.iter().all(|(s, b)| *s == 200 && b == "ok"));
    assert!(accepted.load(Ordering::SeqCst) <= 8);

    // The upstream closes a reused connection instead of answering: the gateway sends the
    // (bodiless) request again on a new connection and the client never sees an error.
    let (closing, accepted, dropped) = counting_upstream_dropping(true).await;
    env.upstream_route(closing, "/closing", json!({})).await;
    for i in 0..30 {
        let resp = env.client.get(env.url("/closing")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    assert!(accepted.load(Ordering::SeqCst) >= 30);
    // Without a pool every request would get a fresh connection and none would be dropped:
    // here each request after the first went out on the reused connection, was dropped
    // there, and was sent again.
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        29,
        "requests dropped on reused connections"
    );
}

/// Sends `request` on a new connection to the proxy and reads until the proxy closes it.
/// `then` is sent once `wait_for` has been read (for `Expect: 100-continue`).
async fn raw_exchange(proxy: SocketAddr, request: &[u8], wait_for: &str, then: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    let mut sent_then = wait_for.is_empty();
    if sent_then {
        stream.write_all(then).await.unwrap();
    }
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the proxy neither answered nor closed the connection")
            .unwrap_or(0);
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&buf[..n]);
        if !sent_then && String::from_utf8_lossy(&got).contains(wait_for) {
            stream.write_all(then).await.unwrap();
            sent_then = true;
        }
    }
}

fn text_of(raw: Vec<u8>) -> String {
    String::from_utf8(raw).unwrap()
}

/// The head (as text) and the raw body of one response.
fn split_head(raw: &[u8]) -> (String, &[u8]) {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (
        String::from_utf8(raw[..end].to_vec()).unwrap(),
        &raw[end + 4..],
    )
}

#[tokio::test]
async fn speaks_http1_on_the_wire() {
    let env = Env::new().await;
    env.echo_route("/anything").await;
    let s = env.service(json!({"url": env.echo.base_url()})).await;
    env.route(
        json!({"paths": ["/stream-bytes"], "strip_path": false}),
        Some(s),
    )
    .await;

    // Pipelined requests on one connection, answered in order: a GET, a HEAD (no body, so
    // the next response follows its head directly) and a chunked POST whose body reaches the
    // upstream whole. The last one asks to close.
    let text = text_of(raw_exchange(
        env.proxy,
        b"GET /anything/one HTTP/1.1\r\nHost: a\r\n\r\n\
          HEAD /anything/two HTTP/1.1\r\nHost: a\r\n\r\n\
          POST /anything/three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
        "",
        b"",
    )
    .await);
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{text}");
    let one = text.find("/anything/one").unwrap();
    let three = text.find("/anything/three").unwrap();
    assert!(one < three);
    assert!(
        !text.contains("/anything/two"),
        "HEAD answered without a body: {text}"
    );
    assert!(text.contains("\"data\":\"hello world\""), "{text}");
    assert!(text.ends_with("}") || text.ends_with("}\n"), "{text}");
    assert!(text.contains("connection: close\r\n"));

    // Each request on a connection is parsed into the same place: nothing of one request's
    // head reaches the upstream with the next.
    let text = text_of(
        raw_exchange(
            env.proxy,
            b"GET /anything/first?q=1 HTTP/1.1\r\nHost: a\r\nX-First-Only: yes\r\n\r\n\
          GET /anything/second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "",
            b"",
        )
        .await,
    );
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
    let second = text.find("/anything/second").unwrap();
    assert!(
        text[..second].to_ascii_lowercase().contains("x-first-only"),
        "{text}"
    );
    assert!(
        !text[second..].to_ascii_lowercase().contains("x-first-only"),
        "{text}"
    );
    assert!(!text[second..].contains("q=1"), "{text}");

    // HTTP/1.0 without keep-alive: the proxy answers and closes; an upstream body of unknown
    // length goes to a 1.0 client delimited by the close, to a 1.1 client chunked.
    let raw = raw_exchange(
        env.proxy,
        b"GET /stream-bytes/3000 HTTP/1.0\r\nHost: a\r\n\r\n",
        "",
        b"",
    )
    .await;
    let (head, body) = split_head(&raw);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert_eq!(body.len(), 3000);
    let raw = raw_exchange(
        env.proxy,
        b"GET /stream-bytes/3000 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "",
        b"",
    )
    .await;
    let (head, body) = split_head(&raw);
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(body.ends_with(b"0\r\n\r\n"));
    assert!(body.len() > 3000);

    // Expect: 100-continue: the interim answer comes before the body is sent.
    let text = text_of(raw_exchange(
        env.proxy,
        b"POST /anything HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        "100 Continue\r\n\r\n",
        b"abc",
    )
    .await);
    assert!(
        text.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
        "{text}"
    );
    assert!(text.contains("\"data\":\"abc\""), "{text}");

    // A request refused before its body is wanted gets no `100 Continue`: the client is
    // spared the upload.
    let text = text_of(
        raw_exchange(
            env.proxy,
            b"POST /nowhere HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
            "",
            b"",
        )
        .await,
    );
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");

    // A list of equal lengths is accepted and forwarded as one plain value.
    let text = text_of(
        raw_exchange(
            env.proxy,
            b"POST /anything HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nConnection: close\r\n\r\nabc",
            "",
            b"",
        )
        .await,
    );
    assert!(text.contains("\"Content-Length\":\"3\""), "{text}");
    assert!(text.contains("\"data\":\"abc\""), "{text}");

    // Ambiguous framing (the request-smuggling classic) and garbage: 400 in Kong's format,
    // then the connection closes.
    for bad in [
        &b"POST /anything HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"POST /anything HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /anything HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\nab",
        b"this is not HTTP\r\n\r\n",
    ] {
        let text = text_of(raw_exchange(env.proxy, bad, "", b"").await);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("\"message\":\"Bad request\""), "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
    }

    // A malformed chunked body is the client's error, answered at once.
    let text = text_of(raw_exchange(
        env.proxy,
        b"POST /anything HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "",
        b"",
    )
    .await);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
}

/// An upstream that reads a request head, answers 413 at once and then neither reads nor
/// closes: the gateway must not wait for it to take the body.
async fn early_answer_upstream() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp_upstream(|mut stream| async move {
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!")
            .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await
}

#[tokio::test]
async fn early_upstream_answers_and_non_idempotent_requests() {
    use std::sync::atomic::Ordering;
    let env = Env::new().await;
    // 32 MiB to an upstream that answers 413 after the head: the answer reaches the client
    // (not a 504 after the read timeout).
    let early = early_answer_upstream().await;
    env.upstream_route(early, "/upload", json!({"read_timeout": 10000}))
        .await;
    let started = std::time::Instant::now();
    // A client that reads while it sends (as curl does): the upload goes out on a task of its
    // own, and the answer is read as soon as it comes.
    let stream = tokio::net::TcpStream::connect(env.proxy).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let uploading = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let head = format!(
            "POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            32 << 20
        );
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![1u8; 64 << 10];
        for _ in 0..512 {
            writer.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        use tokio::io::AsyncReadExt;
        let n = tokio::time::timeout(Duration::from_secs(8), reader.read(&mut buf))
            .await
            .expect("the answer comes before the read timeout")
            .unwrap();
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 413 "), "{head}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    uploading.abort();

    // A POST (even bodiless) sent on a reused connection that the upstream closes is not
    // sent again (RFC 9110 §9.2.2): 502. A GET is.
    let (closing, accepted) = counting_upstream(true).await;
    env.upstream_route(closing, "/closing", json!({})).await;
    let first = env.client.get(env.url("/closing")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let _ = first.bytes().await;
    let post = env
        .client
        .post(env.url("/closing"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 502);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let get = env.client.get(env.url("/closing")).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// Reads one response (its head and a `Content-Length` body) from `stream`: the text of the
/// head and the body. Panics when the connection ends first or nothing comes for 10 s.
async fn read_response(stream: &mut tokio::net::TcpStream) -> (String, String) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(got[..end].to_vec()).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                let body = String::from_utf8(got[end + 4..end + 4 + len].to_vec()).unwrap();
                return (head, body);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("no response within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before a whole response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// Whether the proxy closed `stream` within `wait` (`false`: still open, nothing sent).
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Err(_) => false,
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(n)) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
    }
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_lets_requests_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let mut env = Env::new().await;
    env.echo_route("/echo").await;
    // An upstream that answers each request 300 ms after it arrived.
    let slow = tcp_upstream(|mut stream| async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow";
            if stream.write_all(reply).await.is_err() {
                break;
            }
        }
    })
    .await;
    env.upstream_route(slow, "/slow", json!({})).await;

    // Idle: one request answered, then nothing.
    let mut idle = TcpStream::connect(env.proxy).await.unwrap();
    idle.write_all(b"GET /echo HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut idle).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // In flight: waiting for the slow upstream when the shutdown begins.
    let mut busy = TcpStream::connect(env.proxy).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    // Half a head: a request has begun.
    let mut partial = TcpStream::connect(env.proxy).await.unwrap();
    partial
        .write_all(b"GET /echo HTTP/1.1\r\nhost: a\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    env.stop.take().unwrap().send(()).unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(2)).await,
        "an idle keep-alive connection stays open after shutdown began"
    );
    let (head, body) = read_response(&mut busy).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "slow");
    assert!(fields(&head, "connection").contains(&"close"), "{head}");
    assert!(closed_within(&mut busy, Duration::from_secs(2)).await);
    // The begun request is served, on a connection that then closes.
    partial.write_all(b"\r\n").await.unwrap();
    let (head, _) = read_response(&mut partial).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(fields(&head, "connection").contains(&"close"), "{head}");
    assert!(closed_within(&mut partial, Duration::from_secs(2)).await);
    // The listener is gone.
    assert!(TcpStream::connect(env.proxy).await.is_err());
}

/// A connection that sends nothing is closed after the idle timeout (60 s); half a head is cut
/// the header timeout (30 s) after its first byte; a connection that served a request gets
/// the whole idle timeout again for the next. Runs on the paused test clock.
#[tokio::test]
async fn idle_and_header_timeouts_close_silent_and_slow_connections() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio::time::Instant;
    let env = Env::new().await;
    env.echo_route("/echo").await;
    tokio::time::pause();
    let limits = gatehouse_listener::Limits::with_connections(1);
    let (idle, header) = (limits.idle_timeout, limits.header_timeout);
    assert!(header < idle, "the test tells the two apart");
    let second = Duration::from_secs(1);

    let started = Instant::now();
    let mut silent = TcpStream::connect(env.proxy).await.unwrap();
    let mut slow = TcpStream::connect(env.proxy).await.unwrap();
    slow.write_all(b"GET /echo HTTP/1.1\r\n").await.unwrap();
    let mut kept = TcpStream::connect(env.proxy).await.unwrap();
    // The half head is cut at the header timeout, not at the idle one.
    assert!(!closed_within(&mut slow, header - 2 * second).await);
    assert!(closed_within(&mut slow, 4 * second).await);
    let cut_at = started.elapsed();
    assert!(
        cut_at >= header && cut_at < header + 3 * second,
        "{cut_at:?}"
    );
    assert!(!closed_within(&mut silent, idle - header - 12 * second).await);
    // 50 s in: a request on `kept`; its next head may wait until 110 s.
    kept.write_all(b"GET /echo HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut kept).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let answered = Instant::now();
    assert!(closed_within(&mut silent, 12 * second).await);
    let closed_at = started.elapsed();
    assert!(
        closed_at >= idle && closed_at < idle + 3 * second,
        "{closed_at:?}"
    );
    // 62 s: `kept` is still open, and is closed once its own 60 s have passed.
    assert!(!closed_within(&mut kept, idle - 15 * second).await);
    assert!(closed_within(&mut kept, 20 * second).await);
    let idle_for = answered.elapsed();
    assert!(
        idle_for >= idle && idle_for < idle + 3 * second,
        "{idle_for:?}"
    );
}

/// An upload that takes longer than the service's read timeout goes through: the wait for the
/// answer counts from the body's end (nginx's proxy_read_timeout), not from the request's
/// start. A silent upstream still times out `read_timeout` after the body.
#[tokio::test]
async fn an_upload_longer_than_the_read_timeout_is_answered() {
    use tokio::io::AsyncWriteExt;
    let env = Env::new().await;
    let s = env
        .service(json!({"url": format!("{}/anything", env.echo.base_url()), "read_timeout": 600}))
        .await;
    env.route(json!({"paths": ["/upload"]}), Some(s)).await;
    let mut stream = tokio::net::TcpStream::connect(env.proxy).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 5000\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    for _ in 0..10 {
        stream.write_all(&[b'u'; 500]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (head, body) = read_response(&mut stream).await;
    assert!(
        started.elapsed() > Duration::from_millis(1200),
        "the upload took its time"
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let echoed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["data"].as_str().map(str::len), Some(5000));

    // The control: an upstream that takes the body and never answers is cut 600 ms later.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = silent.accept().await {
            tokio::spawn(async move {
                let mut sink = vec![0u8; 65536];
                use tokio::io::AsyncReadExt;
                while let Ok(n) = conn.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    let s = env
        .service(json!({"url": format!("http://{silent_addr}/"), "read_timeout": 600}))
        .await;
    env.route(json!({"paths": ["/silent"]}), Some(s)).await;
    let started = std::time::Instant::now();
    let r = env
        .client
        .post(env.url("/silent"))
        .body("x".repeat(100))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 with prior knowledge
// ---------------------------------------------------------------------------------------------

type H2Sender = hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>;

/// An HTTP/2 connection with prior knowledge (h2c) to `addr`, and its driving task.
async fn h2_connect(addr: SocketAddr) -> (H2Sender, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let driving = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, driving)
}

/// 100 concurrent `GET {base}/slow?i=<i>` streams on the connection of `send` (the route
/// holds each half a second upstream): each answered 200 with its own `i`, and side by side
/// (one after the other would take 50 s). The answers, in order.
async fn hundred_concurrent_streams(
    send: &H2Sender,
    base: &str,
) -> Vec<(u16, http::HeaderMap, Value)> {
    let started = std::time::Instant::now();
    let streams = (0..100).map(|i| {
        let mut send = send.clone();
        let uri = format!("{base}/slow?i={i}");
        async move { h2_request(&mut send, "GET", uri, "").await }
    });
    let answers = futures::future::join_all(streams).await;
    let took = started.elapsed();
    for (i, (status, _, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "stream {i}: {body}");
        assert_eq!(body["args"]["i"], i.to_string(), "{body}");
    }
    assert!(took < Duration::from_secs(10), "{took:?}");
    answers
}

/// One HTTP/2 request: the status, the headers and the body as JSON (null when not JSON).
async fn h2_request(
    send: &mut H2Sender,
    method: &str,
    uri: String,
    body: &'static str,
) -> (u16, http::HeaderMap, Value) {
    use http_body_util::BodyExt;
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            body.as_bytes(),
        )))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn http2_with_prior_knowledge_runs_concurrent_streams_through_the_plugin_chain() {
    let env = Env::new().await;
    env.echo_route("/anything").await;
    let slow = env
        .service(json!({"url": format!("{}/delay/0.5", env.echo.base_url())}))
        .await;
    env.route(json!({"paths": ["/slow"]}), Some(slow)).await;
    env.plugin(json!({"name": "marker", "config": {"value": "h2"}}))
        .await;
    let base = format!("http://127.0.0.1:{}", env.proxy.port());
    let (mut send, _driving) = h2_connect(env.proxy).await;

    // One stream, with a body: routed, through the plugin, forwarded with the gateway's fields
    // and none of HTTP/1.1's connection fields.
    let (status, headers, body) =
        h2_request(&mut send, "POST", format!("{base}/anything/x?a=1"), "hello").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], "hello");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["args"]["a"], "1");
    assert_eq!(body["headers"]["X-Test-Plugin"], "h2");
    assert_eq!(body["headers"]["Host"], env.echo.addr.to_string());
    assert_eq!(body["headers"]["X-Forwarded-Host"], "127.0.0.1", "{body}");
    assert!(
        headers["via"]
            .to_str()
            .unwrap()
            .ends_with(gatehouse_proxy::VIA_TOKEN)
    );
    assert!(headers.contains_key("x-gatehouse-request-id"));
    assert!(headers.contains_key(http::header::DATE));
    assert!(!headers.contains_key(http::header::CONNECTION));

    // The gateway's own answers too: no route is Kong's 404.
    let (status, _, body) = h2_request(&mut send, "GET", format!("{base}/nowhere"), "").await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "no Route matched with those values");

    // 100 concurrent streams on the one connection, each held half a second upstream.
    for (_, _, body) in hundred_concurrent_streams(&send, &base).await {
        assert_eq!(body["headers"]["X-Test-Plugin"], "h2");
    }

    // HTTP/1.1 on the same listener is unchanged.
    let (status, body, _) = env.get_json("/anything/h1", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["X-Test-Plugin"], "h2");
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_at_the_idle_timeout_and_garbage_is_refused() {
    let env = Env::new().await;
    env.echo_route("/anything").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = gatehouse_listener::Limits {
        idle_timeout: Duration::from_millis(800),
        ..gatehouse_listener::Limits::with_connections(64)
    };
    tokio::spawn(gatehouse_proxy::server::serve(
        listener,
        env.gateway.clone(),
        gatehouse_proxy::server::Edge::new(limits),
        std::future::pending(),
    ));
    let (mut send, driving) = h2_connect(addr).await;
    let (status, _, _) = h2_request(
        &mut send,
        "GET",
        format!("http://127.0.0.1:{}/anything", addr.port()),
        "",
    )
    .await;
    assert_eq!(status, 200);
    // Idle from now on: the server closes it after the idle timeout, not before.
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), driving)
        .await
        .expect("the idle connection was closed")
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(3500),
        "{took:?}"
    );

    // A header list over the listener's head size is refused, and the listener serves on.
    let (mut send, _driving) = h2_connect(addr).await;
    let req = http::Request::get(format!("http://127.0.0.1:{}/anything", addr.port()))
        .header("x-big", "a".repeat(70_000))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    if let Ok(resp) = send.send_request(req).await {
        assert_eq!(resp.status(), 431);
    }
    let (mut send, _driving) = h2_connect(addr).await;
    let (status, _, _) = h2_request(
        &mut send,
        "GET",
        format!("http://127.0.0.1:{}/anything", addr.port()),
        "",
    )
    .await;
    assert_eq!(status, 200);

    // Something that starts like the preface but is not: 400, as any malformed head.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
}

/// Opens `n` streams on an h2 connection to `addr`, resetting each at once: how many were sent
/// before the connection failed, and the connection's driving task.
async fn h2_resets(
    addr: SocketAddr,
    path: &str,
    n: usize,
) -> (
    usize,
    Option<h2::client::SendRequest<bytes::Bytes>>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let driving = tokio::spawn(conn);
    let mut client = client.ready().await.ok();
    let mut sent = 0;
    while sent < n {
        let Some(mut c) = client.take() else { break };
        let req = http::Request::get(format!("http://127.0.0.1:{}{path}", addr.port()))
            .body(())
            .unwrap();
        match c.send_request(req, true) {
            Ok((_, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                sent += 1;
            }
            Err(_) => break,
        }
        client = c.ready().await.ok();
    }
    (sent, client, driving)
}

#[tokio::test]
async fn an_http2_rapid_reset_flood_closes_its_connection_and_the_listener_serves_on() {
    let env = Env::new().await;
    env.echo_route("/anything").await;
    let slow = env
        .service(json!({"url": format!("{}/delay/1", env.echo.base_url())}))
        .await;
    env.route(json!({"paths": ["/slow"]}), Some(slow)).await;
    let base = format!("http://127.0.0.1:{}", env.proxy.port());

    // A few streams cancelled by a client are normal: the connection serves on.
    let (sent, client, _driving) = h2_resets(env.proxy, "/slow", 5).await;
    assert_eq!(sent, 5);
    let mut client = client.expect("the connection is still usable");
    let req = http::Request::get(format!("{base}/anything"))
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);

    // CVE-2023-44487: open a stream and reset it at once, over and over. Reset streams stop
    // counting against the stream limit, so without a bound each would cost a request. The
    // server ends such a connection instead of serving on.
    // (The client's handle is kept: dropping it would end the connection from this side.)
    let (sent, _client, driving) = h2_resets(env.proxy, "/slow", 5_000).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), driving)
        .await
        .expect("the flooding connection was closed by the server")
        .unwrap();
    assert!(
        ended.is_err(),
        "closed with an error: {ended:?} after {sent} streams"
    );
    // Others are served.
    let (mut send, _driving) = h2_connect(env.proxy).await;
    let (status, _, _) = h2_request(&mut send, "GET", format!("{base}/anything"), "").await;
    assert_eq!(status, 200);
    let (status, _, _) = env.get_json("/anything", &[]).await;
    assert_eq!(status, 200);
}

/// The TLS listener of `env`'s gateway on a fresh port, serving a self-signed certificate for
/// `localhost`: its address and the certificate's DER.
async fn tls_listener(env: &Env) -> (SocketAddr, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pair = gatehouse_proxy::tls::CertPair::from_pem(&cert.pem(), &key.serialize_pem()).unwrap();
    let config = gatehouse_proxy::tls::server_config(env.gateway.clone(), pair).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gatehouse_proxy::tls::serve(
        listener,
        env.gateway.clone(),
        gatehouse_proxy::server::Edge::new(gatehouse_listener::Limits::with_connections(64)),
        config,
        std::future::pending(),
    ));
    (addr, cert.der().to_vec())
}

#[tokio::test]
async fn http2_over_tls_by_alpn_runs_100_concurrent_streams_on_one_connection() {
    let env = Env::new().await;
    let slow = env
        .service(json!({"url": format!("{}/delay/0.5", env.echo.base_url())}))
        .await;
    env.route(json!({"paths": ["/slow"]}), Some(slow)).await;
    env.plugin(json!({"name": "marker", "config": {"value": "h2-tls"}}))
        .await;
    let (addr, der) = tls_listener(&env).await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der))
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let _driving = tokio::spawn(async move {
        let _ = conn.await;
    });
    let base = format!("https://localhost:{}", addr.port());
    for (_, _, body) in hundred_concurrent_streams(&send, &base).await {
        assert_eq!(body["headers"]["X-Test-Plugin"], "h2-tls");
        assert_eq!(body["headers"]["X-Forwarded-Proto"], "https", "{body}");
    }
}
