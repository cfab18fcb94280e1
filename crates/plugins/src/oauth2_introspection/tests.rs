#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::config::{self, ConsumerBy};
use super::*;
use crate::test_support::*;
use bytes::Bytes;
use gatehouse_proxy::plugin::{Flow, Plugin, PluginFactory};
use gatehouse_proxy::snapshot::BuildCache;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// The scripted introspection endpoint
// ---------------------------------------------------------------------------------------------

/// What the endpoint answers.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: String,
    delay: Duration,
}

impl Reply {
    fn active(claims: Value) -> Self {
        let mut obj = json!({"active": true});
        if let (Some(o), Value::Object(extra)) = (obj.as_object_mut(), claims) {
            o.extend(extra);
        }
        Self {
            status: 200,
            body: obj.to_string(),
            delay: Duration::ZERO,
        }
    }
    fn inactive() -> Self {
        Self::raw(200, r#"{"active":false}"#)
    }
    fn raw(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }
    fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One introspection request as the endpoint received it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    form: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Script = Box<dyn Fn(&str) -> Reply + Send + Sync>;

struct IdpState {
    calls: AtomicUsize,
    connections: AtomicUsize,
    seen: parking_lot::Mutex<Vec<Seen>>,
    script: parking_lot::Mutex<Arc<Script>>,
}

/// A scripted introspection endpoint on an ephemeral port; counts calls and connections.
struct Idp {
    url: String,
    state: Arc<IdpState>,
}

impl Idp {
    async fn start(script: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script: Script = Box::new(script);
        let state = Arc::new(IdpState {
            calls: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            seen: parking_lot::Mutex::new(Vec::new()),
            script: parking_lot::Mutex::new(Arc::new(script)),
        });
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                        let st = st.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}/introspect"),
            state,
        }
    }

    fn script(&self, script: impl Fn(&str) -> Reply + Send + Sync + 'static) {
        let script: Script = Box::new(script);
        *self.state.script.lock() = Arc::new(script);
    }

    fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().clone()
    }
}

async fn answer(st: &IdpState, req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let token = form
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    st.seen.lock().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        form,
    });
    st.calls.fetch_add(1, Ordering::SeqCst);
    let script = st.script.lock().clone();
    let reply = script(&token);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    http::Response::builder()
        .status(reply.status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The claims Kong Identity returns for an active token (DESIGN §4).
fn claims() -> Value {
    json!({
        "scope": "read write",
        "client_id": "client-1",
        "username": "alice",
        "token_type": "Bearer",
        "exp": (unix_now() as i64) + 3600,
        "iat": unix_now() as i64,
        "nbf": unix_now() as i64,
        "sub": "client-1",
        "aud": ["api-a", "api-b"],
        "iss": "http://issuer.test/abc",
        "jti": "jti-1",
        "my_claim": "mine",
        "roles": ["admin", "ops"],
        "profile": {"team": "blue"},
        "nothing": null,
        "secret_claim": "not forwarded"
    })
}

/// Active for every token except: `inactive*` → inactive, `boom*` → 500, `garbage*` → not
/// JSON, `slow*` → active after 2 s.
fn standard(token: &str) -> Reply {
    if token.starts_with("inactive") {
        Reply::inactive()
    } else if token.starts_with("boom") {
        Reply::raw(
            500,
            r#"{"error":"server_error","detail":"db down at 10.0.0.7"}"#,
        )
    } else if token.starts_with("garbage") {
        Reply::raw(200, "<html>not json</html>")
    } else if token.starts_with("slow") {
        Reply::active(claims()).after(Duration::from_secs(2))
    } else {
        Reply::active(claims())
    }
}

fn config_value(idp_url: &str, extra: Value) -> Value {
    let mut cfg = json!({
        "introspection_url": idp_url,
        "authorization_value": "Basic Y2xpZW50OnNlY3JldA==",
    });
    if let (Some(o), Value::Object(extra)) = (cfg.as_object_mut(), extra) {
        o.extend(extra);
    }
    cfg
}

fn instance(idp: &Idp, extra: Value) -> Arc<OAuth2Introspection> {
    let (config, _) = config::parse(config_value(&idp.url, extra)).unwrap();
    Arc::new(OAuth2Introspection::new(config).unwrap())
}

async fn run(
    plugin: &OAuth2Introspection,
    snapshot: &Arc<Snapshot>,
    req: &mut ProxyRequest,
) -> (RequestCtx, Flow) {
    let mut ctx = ctx(snapshot);
    let flow = plugin.access(&mut ctx, req).await.unwrap();
    (ctx, flow)
}

fn header<'a>(req: &'a ProxyRequest, name: &str) -> Option<&'a str> {
    req.parts.headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_all(req: &ProxyRequest, name: &str) -> Vec<String> {
    req.parts
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn identity_headers(req: &ProxyRequest) -> Vec<String> {
    req.parts
        .headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| {
            k.starts_with("x-consumer-")
                || k.starts_with("x-credential-")
                || k == "x-anonymous-consumer"
        })
        .collect()
}

async fn assert_missing(flow: Flow) {
    let resp = responded(flow);
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer realm="service""#
    );
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        body_json(resp.into_body()).await,
        json!({"error":"invalid_request","error_description":"The access token is missing"})
    );
}

async fn assert_invalid(flow: Flow) {
    let resp = responded(flow);
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer realm="service" error="invalid_token" error_description="The access token is invalid or has expired""#
    );
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        body_json(resp.into_body()).await,
        json!({"error":"invalid_token","error_description":"The access token is invalid or has expired"})
    );
}

async fn assert_internal(flow: Flow) {
    let resp = responded(flow);
    assert_eq!(resp.status(), 500);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert!(resp.headers().get("www-authenticate").is_none());
    assert_eq!(
        body_json(resp.into_body()).await,
        json!({"message": "An unexpected error occurred"})
    );
}

/// Polls `cond` until it holds or `limit` passes.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

#[test]
fn minimal_config_gets_every_default_in_kong_order() {
    let stored = Factory::default()
        .validate(json!({
            "introspection_url": "https://idp.example/oauth/introspect",
            "authorization_value": "Basic abc"
        }))
        .unwrap();
    assert_eq!(
        stored,
        json!({
            "introspection_url": "https://idp.example/oauth/introspect",
            "ttl": 30,
            "token_type_hint": null,
            "authorization_value": "Basic abc",
            "timeout": 10000,
            "keepalive": 60000,
            "introspect_request": false,
            "hide_credentials": true,
            "run_on_preflight": true,
            "anonymous": "",
            "consumer_by": "username",
            "custom_introspection_headers": {},
            "custom_claims_forward": [],
            "cache_size": 10000
        })
    );
    let keys: Vec<&String> = stored.as_object().unwrap().keys().collect();
    assert_eq!(keys[0], "introspection_url");
    assert_eq!(keys[1], "ttl");
    // Validating the stored form again changes nothing (PUT round trip).
    assert_eq!(Factory::default().validate(stored.clone()).unwrap(), stored);
    // Every field set explicitly.
    let full = json!({
        "introspection_url": "http://127.0.0.1:8002/abc/introspect",
        "ttl": 0.5,
        "token_type_hint": "access_token",
        "authorization_value": "Basic abc",
        "timeout": 0,
        "keepalive": 0,
        "introspect_request": true,
        "hide_credentials": false,
        "run_on_preflight": false,
        "anonymous": "test",
        "consumer_by": "client_id",
        "custom_introspection_headers": {"x_tenant": "t1"},
        "custom_claims_forward": ["a", "b", "a"],
        "cache_size": 10
    });
    let stored = Factory::default().validate(full).unwrap();
    assert_eq!(stored["ttl"], 0.5);
    assert_eq!(stored["custom_claims_forward"], json!(["a", "b"]));
    assert_eq!(stored["anonymous"], "test");
    let (c, _) = config::parse(stored).unwrap();
    assert_eq!(c.ttl, Some(Duration::from_millis(500)));
    assert_eq!(c.timeout, None);
    assert_eq!(c.keepalive, Duration::ZERO);
    assert_eq!(c.consumer_by, ConsumerBy::ClientId);
    assert_eq!(c.anonymous.as_deref(), Some("test"));
    assert_eq!(c.custom_introspection_headers[0].0.as_str(), "x-tenant");
    assert_eq!(c.cache_size, 10);
    let (c, _) = config::parse(config_value("http://h/x", json!({"ttl": 0}))).unwrap();
    assert_eq!(c.ttl, None);
}

#[test]
fn invalid_configs_get_kongs_messages() {
    let e = Factory::default()
        .validate(json!({}))
        .unwrap_err()
        .into_value();
    assert_eq!(e["introspection_url"], "required field missing");
    assert_eq!(e["authorization_value"], "required field missing");

    let url_error = |u: &str| {
        Factory::default()
            .validate(json!({"introspection_url": u, "authorization_value": "x"}))
            .unwrap_err()
            .into_value()["introspection_url"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(url_error("idp.example/introspect"), "missing host in url");
    assert_eq!(
        url_error("//idp.example/introspect"),
        "missing scheme in url"
    );
    assert_eq!(url_error("http:///introspect"), "missing host in url");
    assert_eq!(url_error("mailto:someone"), "missing host in url");
    assert!(url_error("ftp://idp.example/x").starts_with("unsupported scheme in url"));
    assert!(url_error("http://[::1/x").starts_with("could not parse url."));

    let e = Factory::default()
        .validate(json!({
            "introspection_url": 5,
            "authorization_value": "Basic\nabc",
            "ttl": "30",
            "timeout": -1,
            "keepalive": 1.5,
            "hide_credentials": "yes",
            "consumer_by": "email",
            "custom_introspection_headers": {"bad header": "v"},
            "custom_claims_forward": "scope",
            "anonymous": 7,
            "cache_size": 0,
            "extra": true
        }))
        .unwrap_err();
    let v = e.clone().into_value();
    assert_eq!(v["introspection_url"], "expected a string");
    assert_eq!(
        v["authorization_value"],
        "invalid value: not a valid HTTP header value"
    );
    assert_eq!(v["ttl"], "expected a number");
    assert_eq!(v["timeout"], "value should be between 0 and 2147483646");
    assert_eq!(v["keepalive"], "expected an integer");
    assert_eq!(v["hide_credentials"], "expected a boolean");
    assert_eq!(v["consumer_by"], "expected one of: username, client_id");
    assert_eq!(
        v["custom_introspection_headers"],
        "invalid header name 'bad header'"
    );
    assert_eq!(v["custom_claims_forward"], "expected a set");
    assert_eq!(v["anonymous"], "expected a string");
    assert_eq!(v["cache_size"], "value should be between 1 and 100000000");
    assert_eq!(v["extra"], "unknown field");
    // The secret never appears in error messages.
    assert!(!e.summary().contains("abc"));

    let v = Factory::default()
        .validate(config_value("http://h/x", json!({"ttl": -1})))
        .unwrap_err()
        .into_value();
    assert_eq!(v["ttl"], "value should be between 0 and 1000000000");
    // `anonymous` as a username is valid (EE-T 02-schema_spec).
    assert!(
        Factory::default()
            .validate(config_value("http://h/x", json!({"anonymous": "test"})))
            .is_ok()
    );
    assert!(Factory::default().build(&json!({})).is_err());
}

#[test]
fn plugin_errors_nest_under_config_and_consumer_scope_is_refused() {
    let consumer_id = uuid::Uuid::new_v4();
    let e = gatehouse_core::gateway::Plugin::from_input(
        uuid::Uuid::new_v4(),
        json!({
            "name": NAME,
            "config": {"introspection_url": "nope"},
            "consumer": {"id": consumer_id}
        }),
        0,
        0,
        &crate::registry(),
    )
    .unwrap_err()
    .into_value();
    assert_eq!(e["config"]["introspection_url"], "missing host in url");
    assert_eq!(e["config"]["authorization_value"], "required field missing");
    assert_eq!(
        e["consumer"],
        "value must be null (plugin 'oauth2-introspection' cannot be applied to a consumer)"
    );
}

#[test]
fn factory_identity_and_schema() {
    let f = Factory::default();
    assert_eq!(f.name(), "oauth2-introspection");
    assert_eq!(f.priority(), 1700);
    assert!(!f.allows_consumer());
    assert_eq!(f.encrypted_fields(), &["authorization_value"]);
    assert_eq!(f.protocols(), &["grpc", "grpcs", "http", "https"]);
    let schema = f.schema();
    let top: Vec<&str> = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_object().unwrap().keys().next().unwrap().as_str())
        .collect();
    assert_eq!(top, ["consumer", "protocols", "config"]);
    assert_eq!(schema["fields"][0]["consumer"]["eq"], Value::Null);
    let fields = schema["fields"][2]["config"]["fields"].as_array().unwrap();
    let names: Vec<&str> = fields
        .iter()
        .map(|f| f.as_object().unwrap().keys().next().unwrap().as_str())
        .collect();
    // Exactly the fields `validate` returns, in the same order.
    let stored = f.validate(config_value("http://h/x", json!({}))).unwrap();
    let stored_names: Vec<&str> = stored
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, stored_names);
    let field = |n: &str| fields.iter().find_map(|f| f.get(n)).unwrap().clone();
    assert_eq!(field("authorization_value")["encrypted"], true);
    assert_eq!(field("authorization_value")["required"], true);
    assert_eq!(field("hide_credentials")["default"], true);
    assert_eq!(field("ttl")["default"], 30);
    assert_eq!(
        field("consumer_by")["one_of"],
        json!(["username", "client_id"])
    );
    assert!(
        field("cache_size")["description"]
            .as_str()
            .unwrap()
            .contains("Gatehouse extension")
    );
}

#[test]
fn debug_output_hides_the_authorization_value() {
    let (c, _) = config::parse(config_value("http://h/x", json!({}))).unwrap();
    let dbg = format!("{c:?}");
    assert!(dbg.contains("<redacted>"));
    assert!(!dbg.contains("Y2xpZW50OnNlY3JldA=="));
    assert!(c.authorization_value.is_sensitive());
}

#[test]
fn cache_keys_are_sha256_of_the_token() {
    // SHA-256("abc"), FIPS 180-2 test vector.
    let k = cache::key("abc");
    assert_eq!(k[..4], [0xba, 0x78, 0x16, 0xbf]);
    assert_eq!(k[28..], [0xf2, 0x00, 0x15, 0xad]);
}

// ---------------------------------------------------------------------------------------------
// Spec A.10: every response the plugin produces
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn no_token_is_401_invalid_request_without_a_call() {
    let idp = Idp::start(standard).await;
    let p = instance(&idp, json!({}));
    let snap = snapshot(&[]);
    for mut req in [
        request("GET", "/anything", &[], ""),
        request("GET", "/anything", &[("authorization", "Basic dTpw")], ""),
        request("GET", "/anything", &[("authorization", "Bearer a b")], ""),
        request("GET", "/anything", &[("authorization", "Bearer")], ""),
        request("GET", "/anything?access_token=", &[], ""),
        request(
            "POST",
            "/anything",
            &[("content-type", "application/x-www-form-urlencoded")],
            "access_token=&a=1",
        ),
    ] {
        let (ctx, flow) = run(&p, &snap, &mut req).await;
        assert_missing(flow).await;
        assert!(ctx.credential.is_none());
    }
    assert_eq!(idp.calls(), 0);
}

#[tokio::test]
async fn inactive_or_absent_active_is_401_invalid_token() {
    let idp = Idp::start(|t: &str| {
        if t == "no-active-field" {
            Reply::raw(200, r#"{"client_id":"c"}"#)
        } else if t == "active-string" {
            Reply::raw(200, r#"{"active":"true"}"#)
        } else {
            Reply::inactive()
        }
    })
    .await;
    let p = instance(&idp, json!({}));
    let snap = snapshot(&[]);
    for token in ["revoked", "no-active-field", "active-string"] {
        let (ctx, flow) = run(&p, &snap, &mut bearer(token)).await;
        assert_invalid(flow).await;
        assert!(ctx.credential.is_none() && ctx.consumer.is_none());
    }
    assert_eq!(idp.calls(), 3);
}

#[tokio::test]
async fn identity_server_failures_are_a_generic_500() {
    let idp = Idp::start(|t: &str| match t {
        "array" => Reply::raw(200, "[1,2]"),
        "unauthorized" => Reply::raw(401, r#"{"error":"invalid_client"}"#),
        other => standard(other),
    })
    .await;
    let p = instance(&idp, json!({}));
    let snap = snapshot(&[]);
    for token in ["boom", "garbage", "array", "unauthorized"] {
        let (ctx, flow) = run(&p, &snap, &mut bearer(token)).await;
        assert_internal(flow).await;
        assert!(ctx.credential.is_none());
    }

    // Nothing listens on the port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (config, _) = config::parse(config_value(
        &format!("http://{closed}/introspect"),
        json!({}),
    ))
    .unwrap();
    let p = OAuth2Introspection::new(config).unwrap();
    let (_, flow) = run(&p, &snap, &mut bearer("valid")).await;
    assert_internal(flow).await;
}

#[tokio::test]
async fn timeout_is_honoured() {
    let idp = Idp::start(standard).await;
    let p = instance(&idp, json!({"timeout": 200}));
    let snap = snapshot(&[]);
    let started = Instant::now();
    let (_, flow) = run(&p, &snap, &mut bearer("slow")).await;
    let took = started.elapsed();
    assert_internal(flow).await;
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(idp.calls(), 1);
}

#[tokio::test]
async fn a_json_body_is_not_searched_for_a_token() {
    // Deliberate difference from Kong (DESIGN §4): only form bodies are read, so a JSON body
    // that is not an object is no 400, and a token in a JSON body is not used.
    let idp = Idp::start(standard).await;
    let p = instance(&idp, json!({}));
    let snap = snapshot(&[]);
    let mut req = request(
        "POST",
        "/anything",
        &[("content-type", "application/json")],
        r#""string""#,
    );
    assert_missing(run(&p, &snap, &mut req).await.1).await;
    let mut req = request(
        "POST",
        "/anything",
        &[("content-type", "application/json")],
        r#"{"access_token":"valid"}"#,
    );
    assert_missing(run(&p, &snap, &mut req).await.1).await;
    let mut req = request(
        "POST",
        "/anything",
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer valid"),
        ],
        r#""string""#,
    );
    continued(run(&p, &snap, &mut req).await.1).await;
    assert_eq!(body_string(req.body).await, r#""string""#);
}

// ---------------------------------------------------------------------------------------------
// The introspection call
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_endpoint_receives_the_form_and_every_configured_header() {
    let idp = Idp::start(standard).await;
    let p = instance(
        &idp,
        json!({
            "token_type_hint": "access_token",
            "introspect_request": true,
            "custom_introspection_headers": {"x_tenant_id": "t-1", "X-Api-Version": "2"}
        }),
    );
    // The URL's query is not sent (only scheme, host, port and path are used, as Kong).
    let (config, _) = config::parse(config_value(
        &format!("{}?ignored=1", idp.url),
        json!({"introspect_request": false}),
    ))
    .unwrap();
    let plain = OAuth2Introspection::new(config).unwrap();
    let snap = snapshot(&[]);

    let mut req = request(
        "PATCH",
        "/orders/42?expand=all",
        &[("authorization", "Bearer tok+en/=1")],
        "",
    );
    continued(run(&p, &snap, &mut req).await.1).await;
    continued(run(&plain, &snap, &mut bearer("other")).await.1).await;

    let seen = idp.seen();
    assert_eq!(seen.len(), 2);
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    assert_eq!(s.path, "/introspect");
    assert_eq!(s.query, None);
    assert_eq!(s.field("token"), Some("tok+en/=1"));
    assert_eq!(s.field("token_type_hint"), Some("access_token"));
    assert_eq!(s.form.len(), 2);
    assert_eq!(
        s.header("authorization"),
        Some("Basic Y2xpZW50OnNlY3JldA==")
    );
    assert_eq!(s.header("accept"), Some("application/json"));
    assert_eq!(
        s.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(s.header("x-request-http-method"), Some("PATCH"));
    assert_eq!(s.header("x-request-path"), Some("/orders/42"));
    assert_eq!(s.header("x-tenant-id"), Some("t-1"));
    assert_eq!(s.header("x-api-version"), Some("2"));

    let s = &seen[1];
    assert_eq!(s.query, None);
    assert_eq!(s.field("token"), Some("other"));
    assert_eq!(s.field("token_type_hint"), None);
    assert_eq!(s.header("x-request-http-method"), None);
    assert_eq!(s.header("x-request-path"), None);
    assert_eq!(s.header("x-tenant-id"), None);
}

#[tokio::test]
async fn custom_headers_override_the_defaults() {
    let idp = Idp::start(standard).await;
    let p = instance(
        &idp,
        json!({"custom_introspection_headers": {"accept": "application/token-introspection+jwt"}}),
    );
    continued(run(&p, &snapshot(&[]), &mut bearer("t")).await.1).await;
    assert_eq!(
        idp.seen()[0].header("accept"),
        Some("application/token-introspection+jwt")
    );

    // They also win over the headers that describe the downstream request.
    let p = instance(
        &idp,
        json!({"introspect_request": true,
               "custom_introspection_headers": {"x-request-path": "/fixed"}}),
    );
    let mut req = request("DELETE", "/orders/7", &[("authorization", "Bearer t2")], "");
    continued(run(&p, &snapshot(&[]), &mut req).await.1).await;
    let s = &idp.seen()[1];
    assert_eq!(s.header("x-request-path"), Some("/fixed"));
    assert_eq!(s.header("x-request-http-method"), Some("DELETE"));
}

#[tokio::test]
async fn connections_are_pooled_and_kept_alive() {
    let idp = Idp::start(standard).await;
    let p = instance(&idp, json!({}));
    let snap = snapshot(&[]);
    for i in 0..5 {
        continued(run(&p, &snap, &mut bearer(&format!("t{i}"))).await.1).await;
    }
    assert_eq!(idp.calls(), 5);
    assert_eq!(idp.connections(), 1);

    // keepalive 0: no connection is reused.
    let idp = Idp::start(standard).await;
    let p = instance(&idp, json!({"keepalive": 0}));
    for i in 0..3 {
        continued(run(&p, &snap, &mut bearer(&format!("t{i}"))).await.1).await;
    }
    assert_eq!(idp.calls(), 3);
    assert!(eventually(Duration::from_secs(2), || idp.connections() == 3).await);
}

// ---------------------------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_cached_token_is_not_introspected_again() {
    let idp = Idp::start(standard).await;
    let p = instance(&idp, json!({}));
    let snap = snapshot(&[]);
    for _ in 0..3 {
        let mut req = bearer("valid");
        continued(run(&p, &snap, &mut req).await.1).await;
        assert_eq!(header(&req, "x-credential-client-id"), Some("client-1"));
    }
    assert_eq!(idp.calls(), 1);
    continued(run(&p, &snap, &mut bearer("valid-2")).await.1).await;
    assert_eq!(idp.calls(), 2);

    // Another instance has its own cache.
    let other = instance(&idp, json!({}));
    continued(run(&other, &snap, &mut bearer("valid")).await.1).await;
    assert_eq!(idp.calls(), 3);
}

#[tokio::test]
async fn ttl_expiry() {
    let idp = Idp::start(standard).await;
    let p = instance(&idp, json!({"ttl": 0.6}));
    let snap = snapshot(&[]);
    continued(run(&p, &snap, &mut bearer("valid")).await.1).await;
    continued(run(&p, &snap, &mut bearer("valid")).await.1).await;
    assert_eq!(idp.calls(), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    continued(run(&p, &snap, &mut bearer("valid")).await.1).await;
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn ttl_zero_without_exp_never_expires() {
    let idp = Idp::start(|_: &str| Reply::active(json!({"client_id": "c"}))).await;
    let p = instance(&idp, json!({"ttl": 0}));
    let snap = snapshot(&[]);
    continued(run(&p, &snap, &mut bearer("valid")).await.1).await;
    // An hour later on the cache's clock (tokio's, moved rather than slept): a 30 s or any
    // other fallback expiry would have let the entry go.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3600)).await;
    tokio::time::resume();
    continued(run(&p, &snap, &mut bearer("valid")).await.1).await;
    assert_eq!(idp.calls(), 1);
}

#[tokio::test]
async fn a_cached_result_never_outlives_the_tokens_exp() {
    // ttl 30 (default) and ttl 0 (no fixed expiry) are both capped by `exp`.
    for ttl in [json!(30), json!(0)] {
        let idp =
            Idp::start(|_: &str| Reply::active(json!({"client_id": "c", "exp": unix_now() + 0.6})))
                .await;
        let p = instance(&idp, json!({"ttl": ttl}));
        let snap = snapshot(&[]);
        continued(run(&p, &snap, &mut bearer("valid")).await.1).await;
        continued(run(&p, &snap, &mut bearer("valid")).await.1).await;
        assert_eq!(idp.calls(), 1);
        tokio::time::sleep(Duration::from_millis(750)).await;
        continued(run(&p, &snap, &mut bearer("valid")).await.1).await;
        assert_eq!(idp.calls(), 2, "ttl {ttl}");
    }

    // Already past its exp (the server still says active): used once, not cached.
    let idp = Idp::start(|_: &str| {
        Reply::active(json!({"client_id": "c", "exp": (unix_now() as i64) - 10}))
    })
    .await;
    let p = instance(&idp, json!({}));
    let snap = snapshot(&[]);
    continued(run(&p, &snap, &mut bearer("valid")).await.1).await;
    continued(run(&p, &snap, &mut bearer("valid")).await.1).await;
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn inactive_answers_are_cached_for_a_short_window() {
    let idp = Idp::start(standard).await;
    let snap = snapshot(&[]);
    let p = instance(&idp, json!({"ttl": 0}));
    assert_eq!(p.cache.negative_ttl, Duration::from_secs(5));
    assert_invalid(run(&p, &snap, &mut bearer("inactive")).await.1).await;
    assert_invalid(run(&p, &snap, &mut bearer("inactive")).await.1).await;
    assert_eq!(idp.calls(), 1);

    // The window ends (shortened here so the test does not wait 5 s): asked again.
    let (config, _) = config::parse(config_value(&idp.url, json!({"ttl": 0}))).unwrap();
    let mut p = OAuth2Introspection::new(config).unwrap();
    p.cache.negative_ttl = Duration::from_millis(600);
    assert_invalid(run(&p, &snap, &mut bearer("inactive")).await.1).await;
    assert_invalid(run(&p, &snap, &mut bearer("inactive")).await.1).await;
    assert_eq!(idp.calls(), 2);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Meanwhile the token became active (e.g. `nbf` passed): the new answer is used.
    idp.script(|_: &str| Reply::active(json!({"client_id": "c"})));
    continued(run(&p, &snap, &mut bearer("inactive")).await.1).await;
    assert_eq!(idp.calls(), 3);
}

#[tokio::test]
async fn failures_are_never_cached() {
    let idp = Idp::start(|_: &str| Reply::raw(503, "maintenance")).await;
    let p = instance(&idp, json!({"timeout": 200}));
    let snap = snapshot(&[]);
    assert_internal(run(&p, &snap, &mut bearer("t")).await.1).await;
    assert_internal(run(&p, &snap, &mut bearer("t")).await.1).await;
    assert_eq!(idp.calls(), 2);

    idp.script(|_: &str| Reply::raw(200, "not json"));
    assert_internal(run(&p, &snap, &mut bearer("t")).await.1).await;
    assert_eq!(idp.calls(), 3);

    idp.script(|t: &str| {
        standard("slow").after(if t == "t" {
            Duration::from_secs(2)
        } else {
            Duration::ZERO
        })
    });
    assert_internal(run(&p, &snap, &mut bearer("t")).await.1).await;
    assert_eq!(idp.calls(), 4);

    idp.script(standard);
    continued(run(&p, &snap, &mut bearer("t")).await.1).await;
    continued(run(&p, &snap, &mut bearer("t")).await.1).await;
    assert_eq!(idp.calls(), 5);
}

#[tokio::test]
async fn an_unreachable_identity_server_is_not_cached() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (config, _) = config::parse(config_value(
        &format!("http://{addr}/introspect"),
        json!({}),
    ))
    .unwrap();
    let p = OAuth2Introspection::new(config).unwrap();
    let snap = snapshot(&[]);
    assert_internal(run(&p, &snap, &mut bearer("t")).await.1).await;
    assert!(p.cache.is_empty());
    // The identity server comes up on that port: the next request is authenticated.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: http::Request<Incoming>| {
                    c.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(br#"{"active":true,"client_id":"c"}"#),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    continued(run(&p, &snap, &mut bearer("t")).await.1).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_a_new_token_make_one_call() {
    let idp = Idp::start(|t: &str| match t {
        "failing" => Reply::raw(500, "x").after(Duration::from_millis(300)),
        _ => Reply::active(claims()).after(Duration::from_millis(300)),
    })
    .await;
    let p = instance(&idp, json!({}));
    let snap = snapshot(&[consumer(Some("alice"), None)]);

    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let p = p.clone();
        let snap = snap.clone();
        set.spawn(async move {
            let mut req = bearer("fresh");
            let (ctx, flow) = run(&p, &snap, &mut req).await;
            continued(flow).await;
            assert_eq!(header(&req, "x-consumer-username"), Some("alice"));
            assert!(ctx.credential.is_some());
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    assert_eq!(idp.calls(), 1);

    // A failure is shared by the requests that waited for it, and not kept afterwards.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let p = p.clone();
        let snap = snap.clone();
        set.spawn(async move {
            let (_, flow) = run(&p, &snap, &mut bearer("failing")).await;
            assert_internal(flow).await;
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    assert_eq!(idp.calls(), 2);
    assert_internal(run(&p, &snap, &mut bearer("failing")).await.1).await;
    assert_eq!(idp.calls(), 3);
    assert!(p.cache.inflight.lock().is_empty());
}

#[tokio::test]
async fn a_cancelled_caller_does_not_block_the_token() {
    let idp = Idp::start(|_: &str| Reply::active(claims()).after(Duration::from_millis(300))).await;
    let p = instance(&idp, json!({}));
    let snap = snapshot(&[]);
    // The client goes away while its introspection is in flight.
    let cancelled =
        tokio::time::timeout(Duration::from_millis(50), run(&p, &snap, &mut bearer("t"))).await;
    assert!(cancelled.is_err());
    assert!(p.cache.inflight.lock().is_empty());
    continued(run(&p, &snap, &mut bearer("t")).await.1).await;
    // The cancelled call may or may not have reached the endpoint.
    assert!((1..=2).contains(&idp.calls()));
}

#[tokio::test]
async fn the_cache_is_bounded_by_cache_size() {
    let idp = Idp::start(standard).await;
    let p = instance(&idp, json!({"cache_size": 4}));
    let snap = snapshot(&[]);
    for i in 0..50 {
        continued(run(&p, &snap, &mut bearer(&format!("t{i}"))).await.1).await;
    }
    assert!(p.cache.len() <= 4, "{} entries", p.cache.len());
    assert_eq!(idp.calls(), 50);
    // What it holds is really cached (a cache that stored nothing would pass the bound): the
    // newest token again makes no call.
    continued(run(&p, &snap, &mut bearer("t49")).await.1).await;
    assert_eq!(
        idp.calls(),
        50,
        "the newest entry is answered from the cache"
    );
}

// ---------------------------------------------------------------------------------------------
// Consumers, credential, upstream headers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_valid_token_sets_every_credential_header() {
    let idp = Idp::start(standard).await;
    let p = instance(
        &idp,
        json!({"custom_claims_forward": ["my_claim", "roles", "profile", "nothing", "absent"]}),
    );
    let snap = snapshot(&[]);
    let mut req = bearer("valid");
    let (ctx, flow) = run(&p, &snap, &mut req).await;
    continued(flow).await;
    let c = claims();
    assert_eq!(header(&req, "x-credential-scope"), Some("read write"));
    assert_eq!(header(&req, "x-credential-client-id"), Some("client-1"));
    assert_eq!(header(&req, "x-credential-identifier"), Some("alice"));
    assert_eq!(header(&req, "x-credential-token-type"), Some("Bearer"));
    let exp: i64 = header(&req, "x-credential-exp").unwrap().parse().unwrap();
    assert!((exp - c["exp"].as_i64().unwrap()).abs() <= 1);
    assert!(header(&req, "x-credential-iat").is_some());
    assert!(header(&req, "x-credential-nbf").is_some());
    assert_eq!(header(&req, "x-credential-sub"), Some("client-1"));
    assert_eq!(header_all(&req, "x-credential-aud"), ["api-a", "api-b"]);
    assert_eq!(
        header(&req, "x-credential-iss"),
        Some("http://issuer.test/abc")
    );
    assert_eq!(header(&req, "x-credential-jti"), Some("jti-1"));
    assert_eq!(header(&req, "x-credential-my-claim"), Some("mine"));
    assert_eq!(header_all(&req, "x-credential-roles"), ["admin", "ops"]);
    assert_eq!(
        header(&req, "x-credential-profile"),
        Some(r#"{"team":"blue"}"#)
    );
    assert_eq!(header(&req, "x-credential-nothing"), None);
    assert_eq!(header(&req, "x-credential-absent"), None);
    assert_eq!(header(&req, "x-credential-secret-claim"), None);
    assert_eq!(header(&req, "x-anonymous-consumer"), None);
    // No consumer named alice: accepted without consumer headers.
    assert_eq!(header(&req, "x-consumer-id"), None);
    assert!(ctx.consumer.is_none());
    assert!(!ctx.anonymous);
    // The credential for later plugins; the raw token is nowhere in it.
    let cred = ctx.credential.as_ref().unwrap();
    assert_eq!(cred.client_id.as_deref(), Some("client-1"));
    assert_eq!(cred.scope.as_deref(), Some("read write"));
    assert_eq!(cred.claims["jti"], "jti-1");
    assert_eq!(cred.claims["active"], true);
    assert!(!format!("{cred:?}").contains("valid"));
}

#[tokio::test]
async fn spoofed_identity_headers_are_removed() {
    let idp = Idp::start(|_: &str| Reply::active(json!({"client_id": "c"}))).await;
    let p = instance(&idp, json!({}));
    let snap = snapshot(&[]);
    let spoofed = [
        ("authorization", "Bearer valid"),
        ("x-consumer-id", "00000000-0000-0000-0000-000000000001"),
        ("x-consumer-username", "admin"),
        ("x-consumer-custom-id", "admin"),
        ("x-consumer-groups", "admins"),
        ("x-credential-scope", "admin"),
        ("x-credential-identifier", "admin"),
        ("x-credential-role", "root"),
        ("x-anonymous-consumer", "false"),
        ("x-other", "kept"),
    ];
    let mut req = request("GET", "/anything", &spoofed, "");
    continued(run(&p, &snap, &mut req).await.1).await;
    assert_eq!(identity_headers(&req), ["x-credential-client-id"]);
    assert_eq!(header(&req, "x-credential-client-id"), Some("c"));
    assert_eq!(header(&req, "x-other"), Some("kept"));

    // Also on failure paths (here: answered, so nothing reaches the upstream anyway) and with
    // the preflight bypass.
    let p = instance(&idp, json!({"run_on_preflight": false}));
    let mut req = request("OPTIONS", "/anything", &spoofed[1..], "");
    continued(run(&p, &snap, &mut req).await.1).await;
    assert!(identity_headers(&req).is_empty());
}

#[tokio::test]
async fn consumer_by_username_and_by_client_id() {
    let idp = Idp::start(standard).await;
    let alice = consumer(Some("alice"), Some("alice-custom"));
    let app = consumer(Some("the-app"), Some("client-1"));
    let snap = snapshot(&[alice.clone(), app.clone()]);

    let p = instance(&idp, json!({"consumer_by": "username"}));
    let mut req = bearer("valid");
    let (ctx, flow) = run(&p, &snap, &mut req).await;
    continued(flow).await;
    assert_eq!(ctx.consumer.as_ref().unwrap().id, alice.id);
    assert_eq!(
        header(&req, "x-consumer-id"),
        Some(alice.id.to_string().as_str())
    );
    assert_eq!(header(&req, "x-consumer-username"), Some("alice"));
    assert_eq!(header(&req, "x-consumer-custom-id"), Some("alice-custom"));

    let p = instance(&idp, json!({"consumer_by": "client_id"}));
    let mut req = bearer("valid");
    let (ctx, flow) = run(&p, &snap, &mut req).await;
    continued(flow).await;
    assert_eq!(ctx.consumer.as_ref().unwrap().id, app.id);
    assert_eq!(
        header(&req, "x-consumer-id"),
        Some(app.id.to_string().as_str())
    );
    assert_eq!(header(&req, "x-consumer-username"), Some("the-app"));
    assert_eq!(header(&req, "x-consumer-custom-id"), Some("client-1"));
    // client_id is matched against custom_id only, never against a username.
    let only_username = consumer(Some("client-1"), None);
    let (ctx, flow) = run(&p, &snapshot(&[only_username]), &mut bearer("valid")).await;
    continued(flow).await;
    assert!(ctx.consumer.is_none());
}

#[tokio::test]
async fn consumer_changes_are_seen_by_the_next_request() {
    let idp = Idp::start(standard).await;
    let p = instance(&idp, json!({"consumer_by": "client_id"}));

    // No consumer yet: accepted without consumer headers.
    let mut req = bearer("valid");
    let (ctx, flow) = run(&p, &snapshot(&[]), &mut req).await;
    continued(flow).await;
    assert!(ctx.consumer.is_none());
    assert_eq!(header(&req, "x-consumer-id"), None);

    // Created.
    let mut c = consumer(Some("first-name"), Some("client-1"));
    let mut req = bearer("valid");
    let (ctx, flow) = run(&p, &snapshot(&[c.clone()]), &mut req).await;
    continued(flow).await;
    assert_eq!(ctx.consumer.as_ref().unwrap().id, c.id);
    assert_eq!(header(&req, "x-consumer-username"), Some("first-name"));

    // Changed.
    c.username = Some("second-name".into());
    let mut req = bearer("valid");
    continued(run(&p, &snapshot(&[c.clone()]), &mut req).await.1).await;
    assert_eq!(header(&req, "x-consumer-username"), Some("second-name"));
    c.username = None;
    let mut req = bearer("valid");
    continued(run(&p, &snapshot(&[c.clone()]), &mut req).await.1).await;
    assert_eq!(header(&req, "x-consumer-username"), None);
    assert_eq!(header(&req, "x-consumer-custom-id"), Some("client-1"));

    // Deleted.
    let mut req = bearer("valid");
    let (ctx, flow) = run(&p, &snapshot(&[]), &mut req).await;
    continued(flow).await;
    assert!(ctx.consumer.is_none());
    assert_eq!(header(&req, "x-consumer-id"), None);

    // All from one introspection call.
    assert_eq!(idp.calls(), 1);
}

#[tokio::test]
async fn the_matched_consumer_selects_consumer_scoped_plugins() {
    let idp = Idp::start(|t: &str| Reply::active(json!({"client_id": t, "username": t}))).await;
    let alice = consumer(Some("alice"), None);
    let mut e = Entities::default();
    let svc = e.service(json!({"name": "svc", "host": "upstream.test"}));
    e.route(json!({"name": "r", "paths": ["/anything"], "service": {"id": svc}}));
    e.consumer(&alice);
    e.plugin(json!({"name": NAME, "config": config_value(&idp.url, json!({}))}));
    e.plugin(json!({
        "name": "request-termination",
        "consumer": {"id": alice.id},
        "config": {"status_code": 418, "message": "alice only"}
    }));
    let mut cache = BuildCache::new();
    let snap = e.build(&mut cache);

    let mut req = bearer("alice");
    let (ctx, flow) = run_chain(&snap, &mut req).await;
    let resp = responded(flow);
    assert_eq!(resp.status(), 418);
    assert_eq!(body_json(resp.into_body()).await["message"], "alice only");
    assert_eq!(ctx.consumer.as_ref().unwrap().id, alice.id);

    let mut req = bearer("bob");
    let (ctx, flow) = run_chain(&snap, &mut req).await;
    continued(flow).await;
    assert!(ctx.consumer.is_none());

    // A snapshot rebuilt for an unrelated change keeps the instance, and so its cache.
    e.consumer(&consumer(Some("carol"), None));
    let snap2 = e.build(&mut cache);
    continued(run_chain(&snap2, &mut bearer("bob")).await.1).await;
    assert_eq!(idp.calls(), 2);
}

// ---------------------------------------------------------------------------------------------
// Anonymous
// ---------------------------------------------------------------------------------------------

async fn assert_anonymous(
    p: &OAuth2Introspection,
    snap: &Arc<Snapshot>,
    anon: &Consumer,
    mut req: ProxyRequest,
) {
    let (ctx, flow) = run(p, snap, &mut req).await;
    continued(flow).await;
    assert_eq!(ctx.consumer.as_ref().unwrap().id, anon.id);
    assert!(ctx.anonymous);
    assert!(ctx.credential.is_none());
    assert_eq!(header(&req, "x-anonymous-consumer"), Some("true"));
    assert_eq!(
        header(&req, "x-consumer-id"),
        Some(anon.id.to_string().as_str())
    );
    assert_eq!(header(&req, "x-consumer-username"), Some("anonymous"));
    assert_eq!(header(&req, "x-consumer-custom-id"), None);
    assert!(
        identity_headers(&req)
            .iter()
            .all(|h| !h.starts_with("x-credential-")),
        "{:?}",
        identity_headers(&req)
    );
}

#[tokio::test]
async fn anonymous_by_id_and_by_username_on_every_failure() {
    let idp = Idp::start(standard).await;
    let anon = consumer(Some("anonymous"), None);
    let snap = snapshot(std::slice::from_ref(&anon));
    for value in [anon.id.to_string(), "anonymous".to_owned()] {
        let p = instance(&idp, json!({"anonymous": value, "timeout": 200}));
        assert_anonymous(
            &p,
            &snap,
            &anon,
            request("GET", "/anything", &[("x-credential-scope", "admin")], ""),
        )
        .await;
        assert_anonymous(&p, &snap, &anon, bearer("inactive")).await;
        assert_anonymous(&p, &snap, &anon, bearer("boom")).await;
        assert_anonymous(&p, &snap, &anon, bearer("slow")).await;
        // A valid token still authenticates normally.
        let mut req = bearer("valid");
        let (ctx, flow) = run(&p, &snap, &mut req).await;
        continued(flow).await;
        assert!(!ctx.anonymous);
        assert!(ctx.credential.is_some());
        assert_eq!(header(&req, "x-anonymous-consumer"), None);
    }
}

#[tokio::test]
async fn an_anonymous_consumer_that_does_not_exist_is_a_500() {
    let idp = Idp::start(standard).await;
    let snap = snapshot(&[consumer(Some("someone"), None)]);
    for value in [uuid::Uuid::new_v4().to_string(), "ghost".to_owned()] {
        let p = instance(&idp, json!({"anonymous": value}));
        assert_internal(run(&p, &snap, &mut bearer("inactive")).await.1).await;
        assert_internal(run(&p, &snap, &mut request("GET", "/", &[], "")).await.1).await;
    }
}

#[tokio::test]
async fn with_anonymous_an_earlier_authentication_wins() {
    let idp = Idp::start(standard).await;
    let anon = consumer(Some("anonymous"), None);
    let snap = snapshot(std::slice::from_ref(&anon));
    let p = instance(&idp, json!({"anonymous": "anonymous"}));
    let mut earlier = ctx(&snap);
    earlier.authenticate(None, Credential::default());
    let mut req = request(
        "GET",
        "/anything",
        &[
            ("authorization", "Bearer valid"),
            ("x-credential-identifier", "from-key-auth"),
        ],
        "",
    );
    continued(p.access(&mut earlier, &mut req).await.unwrap()).await;
    assert_eq!(idp.calls(), 0);
    assert_eq!(header(&req, "authorization"), Some("Bearer valid"));
    assert_eq!(
        header(&req, "x-credential-identifier"),
        Some("from-key-auth")
    );

    // Without `anonymous` ("logical AND") the plugin runs anyway.
    let p = instance(&idp, json!({}));
    let mut ctx2 = ctx(&snap);
    ctx2.authenticate(None, Credential::default());
    let mut req = bearer("inactive");
    assert_invalid(p.access(&mut ctx2, &mut req).await.unwrap()).await;
}

// ---------------------------------------------------------------------------------------------
// Preflight
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn preflight_on_and_off() {
    let idp = Idp::start(standard).await;
    let snap = snapshot(&[]);
    let p = instance(&idp, json!({"run_on_preflight": false}));
    let (ctx, flow) = run(&p, &snap, &mut request("OPTIONS", "/anything", &[], "")).await;
    continued(flow).await;
    assert!(ctx.credential.is_none());
    // Other methods are still authenticated.
    assert_missing(
        run(&p, &snap, &mut request("GET", "/anything", &[], ""))
            .await
            .1,
    )
    .await;
    // Even with a token, OPTIONS is not introspected and the token is left alone.
    let mut req = request(
        "OPTIONS",
        "/anything",
        &[("authorization", "Bearer valid")],
        "",
    );
    continued(run(&p, &snap, &mut req).await.1).await;
    assert_eq!(header(&req, "authorization"), Some("Bearer valid"));
    assert_eq!(idp.calls(), 0);

    let p = instance(&idp, json!({"run_on_preflight": true}));
    assert_missing(
        run(&p, &snap, &mut request("OPTIONS", "/anything", &[], ""))
            .await
            .1,
    )
    .await;
    let mut req = request(
        "OPTIONS",
        "/anything",
        &[("authorization", "Bearer valid")],
        "",
    );
    let (ctx, flow) = run(&p, &snap, &mut req).await;
    continued(flow).await;
    assert!(ctx.credential.is_some());
    assert_eq!(idp.calls(), 1);
}

// ---------------------------------------------------------------------------------------------
// Token locations and hide_credentials
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn header_token_hidden_or_kept() {
    let idp = Idp::start(standard).await;
    let snap = snapshot(&[]);
    let p = instance(&idp, json!({}));
    let mut req = request("GET", "/anything", &[("authorization", "Token valid")], "");
    continued(run(&p, &snap, &mut req).await.1).await;
    assert_eq!(header(&req, "authorization"), None);

    let p = instance(&idp, json!({"hide_credentials": false}));
    let mut req = bearer("valid");
    continued(run(&p, &snap, &mut req).await.1).await;
    assert_eq!(header(&req, "authorization"), Some("Bearer valid"));
    assert_eq!(idp.seen()[0].field("token"), Some("valid"));
}

#[tokio::test]
async fn query_token_hidden_or_kept() {
    let idp = Idp::start(standard).await;
    let snap = snapshot(&[]);
    let p = instance(&idp, json!({}));
    let mut req = request(
        "GET",
        "/anything?access_token=valid%2Bq&hello=marco&x=a%20b",
        &[("authorization", "Bearer other")],
        "",
    );
    continued(run(&p, &snap, &mut req).await.1).await;
    assert_eq!(req.parts.uri.to_string(), "/anything?hello=marco&x=a%20b");
    // The parameter wins over the header, and the header is left alone (as Kong).
    assert_eq!(idp.seen()[0].field("token"), Some("valid+q"));
    assert_eq!(header(&req, "authorization"), Some("Bearer other"));

    let mut req = request("GET", "/anything?access_token=valid", &[], "");
    continued(run(&p, &snap, &mut req).await.1).await;
    assert_eq!(req.parts.uri.to_string(), "/anything");
    assert_eq!(req.parts.uri.query(), None);

    let p = instance(&idp, json!({"hide_credentials": false}));
    let mut req = request("GET", "/anything?access_token=valid&hello=marco", &[], "");
    continued(run(&p, &snap, &mut req).await.1).await;
    assert_eq!(
        req.parts.uri.to_string(),
        "/anything?access_token=valid&hello=marco"
    );
}

#[tokio::test]
async fn form_token_hidden_or_kept() {
    let idp = Idp::start(standard).await;
    let snap = snapshot(&[]);
    let form = [(
        "content-type",
        "application/x-www-form-urlencoded; charset=UTF-8",
    )];
    let body = "a=1&access_token=valid-form&b=x%20y+z";

    let p = instance(&idp, json!({}));
    let mut headers = form.to_vec();
    let len = body.len().to_string();
    headers.push(("content-length", &len));
    headers.push(("authorization", "Bearer other"));
    let mut req = request(
        "POST",
        "/anything?access_token=valid-query&q=1",
        &headers,
        body,
    );
    continued(run(&p, &snap, &mut req).await.1).await;
    // The body wins over the query and the header.
    assert_eq!(idp.seen()[0].field("token"), Some("valid-form"));
    assert_eq!(header(&req, "content-length"), Some("13"));
    assert_eq!(req.parts.uri.to_string(), "/anything?q=1");
    assert_eq!(header(&req, "authorization"), Some("Bearer other"));
    assert_eq!(
        body_string(std::mem::replace(
            &mut req.body,
            gatehouse_proxy::empty_body()
        ))
        .await,
        "a=1&b=x%20y+z"
    );

    let p = instance(&idp, json!({"hide_credentials": false}));
    let mut req = request("POST", "/anything", &headers, body);
    continued(run(&p, &snap, &mut req).await.1).await;
    assert_eq!(header(&req, "content-length"), Some(len.as_str()));
    assert_eq!(body_string(req.body).await, body);

    // A form body without the parameter is put back untouched; the header is used.
    let p = instance(&idp, json!({}));
    let mut req = request(
        "POST",
        "/anything",
        &[form[0], ("authorization", "Bearer valid")],
        "a=1&b=2",
    );
    continued(run(&p, &snap, &mut req).await.1).await;
    assert_eq!(header(&req, "authorization"), None);
    assert_eq!(body_string(req.body).await, "a=1&b=2");
}

#[tokio::test]
async fn big_form_bodies_are_not_searched_and_stream_through_intact() {
    let idp = Idp::start(standard).await;
    let snap = snapshot(&[]);
    let p = instance(&idp, json!({}));
    let filler = "x".repeat(token::MAX_FORM_BODY);
    let body = format!("access_token=in-body&pad={filler}");

    // Declared too big: not read at all.
    let len = body.len().to_string();
    let mut req = request(
        "POST",
        "/anything",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", &len),
            ("authorization", "Bearer valid"),
        ],
        &body,
    );
    continued(run(&p, &snap, &mut req).await.1).await;
    assert_eq!(idp.seen()[0].field("token"), Some("valid"));
    assert_eq!(body_string(req.body).await, body);

    // No declared length, found too big while reading: given back whole.
    let mut req = request(
        "POST",
        "/anything",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", "Bearer valid-2"),
        ],
        &body,
    );
    continued(run(&p, &snap, &mut req).await.1).await;
    assert_eq!(idp.seen()[1].field("token"), Some("valid-2"));
    assert_eq!(body_string(req.body).await, body);

    // No token anywhere else: missing.
    let mut req = request(
        "POST",
        "/anything",
        &[("content-type", "application/x-www-form-urlencoded")],
        &body,
    );
    assert_missing(run(&p, &snap, &mut req).await.1).await;
}

// ---------------------------------------------------------------------------------------------
// The raw token stays out of logs
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct LogBuf(Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn failures_are_logged_without_the_token() {
    let logs = LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let idp = Idp::start(standard).await;
    let snap = snapshot(&[]);
    let p = instance(&idp, json!({"timeout": 200}));
    assert_internal(run(&p, &snap, &mut bearer("boom-SECRET-TOKEN-1")).await.1).await;
    assert_internal(run(&p, &snap, &mut bearer("slow-SECRET-TOKEN-2")).await.1).await;
    assert_invalid(
        run(&p, &snap, &mut bearer("inactive-SECRET-TOKEN-3"))
            .await
            .1,
    )
    .await;
    let p = instance(&idp, json!({"anonymous": "ghost"}));
    assert_internal(
        run(&p, &snap, &mut bearer("inactive-SECRET-TOKEN-4"))
            .await
            .1,
    )
    .await;

    let text = String::from_utf8(logs.0.lock().clone()).unwrap();
    assert!(
        text.contains("introspection endpoint answered 500"),
        "{text}"
    );
    assert!(text.contains("timed out"), "{text}");
    assert!(text.contains("access token not active"), "{text}");
    assert!(text.contains("anonymous consumer does not exist"), "{text}");
    assert!(text.contains(TEST_REQUEST_ID), "{text}");
    assert!(!text.contains("SECRET-TOKEN"), "{text}");
    assert!(!text.contains("Y2xpZW50OnNlY3JldA=="), "{text}");
    // The identity server's error body is neither logged nor sent.
    assert!(!text.contains("10.0.0.7"), "{text}");
}

#[tokio::test]
async fn https_endpoints_use_tls_and_a_failed_handshake_is_a_500() {
    // The scripted endpoint speaks plain HTTP: the TLS handshake fails, nothing is cached and
    // the endpoint never sees a request.
    let idp = Idp::start(standard).await;
    let https_url = idp.url.replace("http://", "https://");
    let (config, _) = config::parse(config_value(&https_url, json!({}))).unwrap();
    let p = OAuth2Introspection::new(config).unwrap();
    let snap = snapshot(&[]);
    assert_internal(run(&p, &snap, &mut bearer("valid")).await.1).await;
    assert!(p.cache.is_empty());
    assert_eq!(idp.calls(), 0);

    // The same endpoint behind TLS with a certificate from a private CA the client trusts:
    // introspected over https, and the answer is used.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &key)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let plain: std::net::SocketAddr = idp
        .url
        .strip_prefix("http://")
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let Ok(mut up) = tokio::net::TcpStream::connect(plain).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    let path = idp
        .url
        .strip_prefix("http://")
        .unwrap()
        .split_once('/')
        .map_or("", |(_, p)| p);
    let url = format!("https://localhost:{port}/{path}");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (config, _) = config::parse(config_value(&url, json!({}))).unwrap();
    let p = OAuth2Introspection::with_tls(config, tls).unwrap();
    continued(run(&p, &snap, &mut bearer("valid")).await.1).await;
    assert_eq!(idp.calls(), 1, "the endpoint answered over TLS");
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// In-process endpoints
// ---------------------------------------------------------------------------------------------

/// An in-process endpoint serving `http://local.test/issuer/...`: answers `token=good` as
/// active, `token=locked` with 401, anything else as inactive; records what it was given.
#[derive(Default)]
struct FakeLocal {
    seen: parking_lot::Mutex<Vec<(String, Option<String>, String)>>,
}

#[async_trait::async_trait]
impl client::LocalIntrospection for FakeLocal {
    fn local_path(&self, url: &http::Uri) -> Option<String> {
        (url.authority().map(|a| a.as_str()) == Some("local.test"))
            .then(|| url.path().trim_start_matches("/issuer").to_owned())
    }

    async fn introspect(
        &self,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
        token_sha256: &[u8; 32],
    ) -> Result<Arc<Map<String, Value>>, http::StatusCode> {
        let form = String::from_utf8(body.to_vec()).unwrap();
        let token = form
            .strip_prefix("token=")
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        assert_eq!(
            *token_sha256,
            cache::key(token),
            "the digest is the form token's"
        );
        let auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        self.seen.lock().push((path.to_owned(), auth, form.clone()));
        match form.as_str() {
            "token=good" => Ok(Arc::new(
                json!({"active": true, "client_id": "c1", "scope": "s"})
                    .as_object()
                    .unwrap()
                    .clone(),
            )),
            "token=locked" => Err(http::StatusCode::UNAUTHORIZED),
            _ => Ok(Arc::new(
                json!({"active": false}).as_object().unwrap().clone(),
            )),
        }
    }
}

#[tokio::test]
async fn an_endpoint_served_by_this_process_is_called_without_http() {
    let fake = Arc::new(FakeLocal::default());
    let local: Arc<dyn client::LocalIntrospection> = fake.clone();
    let factory = Factory { local: Some(local) };
    // Nothing listens at local.test: every answer below comes from the in-process endpoint.
    let stored = factory
        .validate(config_value(
            "http://local.test/issuer/abc/introspect",
            json!({"ttl": 0.001}),
        ))
        .unwrap();
    let plugin = factory.build(&stored).unwrap();
    let snapshot = snapshot(&[]);

    let mut req = bearer("good");
    let mut c = ctx(&snapshot);
    continued(plugin.access(&mut c, &mut req).await.unwrap()).await;
    assert_eq!(header(&req, "x-credential-client-id"), Some("c1"));
    assert_eq!(header(&req, "x-credential-scope"), Some("s"));
    assert_eq!(
        fake.seen.lock()[0],
        (
            "/abc/introspect".to_owned(),
            Some("Basic Y2xpZW50OnNlY3JldA==".to_owned()),
            "token=good".to_owned()
        )
    );

    let mut req = bearer("other");
    let mut c = ctx(&snapshot);
    assert_invalid(plugin.access(&mut c, &mut req).await.unwrap()).await;

    // The endpoint refusing the plugin's own credentials is an identity-server failure.
    let mut req = bearer("locked");
    let mut c = ctx(&snapshot);
    assert_internal(plugin.access(&mut c, &mut req).await.unwrap()).await;
    assert_eq!(fake.seen.lock().len(), 3);

    // Another host is not served in-process.
    let (config, _) = config::parse(config_value("http://elsewhere.test/x", json!({}))).unwrap();
    let fake_dyn: Arc<dyn client::LocalIntrospection> = fake.clone();
    let remote = OAuth2Introspection::with_local(config, Some(&fake_dyn)).unwrap();
    assert!(!remote.client.is_local());
}

/// An answer is reused while the server's invalidation epoch stays where it was, whatever the
/// ttl, and asked again once it moves (a revocation at this process's own identity server).
#[tokio::test]
async fn a_moved_invalidation_epoch_asks_the_server_again() {
    let cache = cache::TokenCache::new(10, Some(Duration::from_secs(300)));
    let calls = AtomicUsize::new(0);
    let key = cache::key("a-token");
    let ask = |epoch| {
        cache.get_or_load(key, epoch, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(cache::Outcome::Inactive)
        })
    };
    ask(7).await.unwrap();
    ask(7).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the answer is cached");
    ask(8).await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the epoch moved: asked again"
    );
    ask(8).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
