#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::test_support::*;
use gatehouse_proxy::snapshot::BuildCache;
use serde_json::json;

fn instance(config: Value) -> Arc<dyn Plugin> {
    let stored = Factory.validate(config).unwrap();
    Factory.build(&stored).unwrap()
}

async fn run(p: &Arc<dyn Plugin>, req: &mut ProxyRequest) -> Flow {
    let snap = snapshot(&[]);
    let mut ctx = ctx(&snap);
    p.access(&mut ctx, req).await.unwrap()
}

#[test]
fn defaults_and_identity() {
    assert_eq!(
        Factory.validate(json!({})).unwrap(),
        json!({
            "status_code": 503, "message": null, "content_type": null, "body": null,
            "echo": false, "trigger": null
        })
    );
    assert_eq!(Factory.name(), "request-termination");
    assert_eq!(Factory.priority(), 2);
    assert!(Factory.allows_consumer());
    let schema = Factory.schema();
    assert_eq!(
        schema["fields"][1]["config"]["fields"][0]["status_code"]["default"],
        503
    );
}

#[test]
fn invalid_configs() {
    let err = |c: Value| Factory.validate(c).unwrap_err().into_value();
    assert_eq!(
        err(json!({"status_code": 99}))["status_code"],
        "value should be between 100 and 599"
    );
    assert_eq!(
        err(json!({"message": "m", "body": "b"}))["@entity"],
        json!(["message cannot be used with content_type or body"])
    );
    assert_eq!(
        err(json!({"content_type": "text/html"}))["@entity"],
        json!(["content_type requires a body"])
    );
    assert_eq!(
        err(json!({"echo": true, "body": "b"}))["@entity"],
        json!(["echo cannot be used with content_type and body"])
    );
    assert_eq!(
        err(json!({"trigger": "bad name"}))["trigger"],
        "bad header name 'bad name', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
    );
    assert_eq!(err(json!({"other": 1}))["other"], "unknown field");
    // Empty strings count as absent (Kong's is_present).
    assert!(
        Factory
            .validate(json!({"message": "", "body": "b"}))
            .is_ok()
    );
}

#[tokio::test]
async fn default_message_follows_accept() {
    let p = instance(json!({}));
    let resp = responded(run(&p, &mut request("GET", "/", &[], "")).await);
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        body_json(resp.into_body()).await,
        json!({"message": "The upstream server is currently unavailable", "request_id": TEST_REQUEST_ID})
    );
    let resp = responded(
        run(
            &p,
            &mut request("GET", "/", &[("accept", "text/plain")], ""),
        )
        .await,
    );
    assert_eq!(
        body_string(resp.into_body()).await,
        format!("The upstream server is currently unavailable\nrequest_id: {TEST_REQUEST_ID}\n")
    );

    let p = instance(json!({"status_code": 403, "message": "So long"}));
    let resp = responded(run(&p, &mut request("GET", "/", &[], "")).await);
    assert_eq!(resp.status(), 403);
    assert_eq!(body_json(resp.into_body()).await["message"], "So long");

    for (status, message) in [
        (404, "Not found"),
        (429, "Too many requests"),
        (599, "The upstream server responded with 599"),
        (200, "OK"),
    ] {
        let p = instance(json!({"status_code": status}));
        let resp = responded(run(&p, &mut request("GET", "/", &[], "")).await);
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(body_json(resp.into_body()).await["message"], message);
    }
}

#[tokio::test]
async fn raw_body_with_its_content_type() {
    let p =
        instance(json!({"status_code": 200, "body": "<h1>bye</h1>", "content_type": "text/html"}));
    let resp = responded(run(&p, &mut request("GET", "/", &[], "")).await);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html");
    assert_eq!(body_string(resp.into_body()).await, "<h1>bye</h1>");

    let p = instance(json!({"body": "plain"}));
    let resp = responded(run(&p, &mut request("GET", "/", &[], "")).await);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(body_string(resp.into_body()).await, "plain");
}

#[tokio::test]
async fn trigger_by_header_or_query() {
    let p = instance(json!({"trigger": "X-Debug", "status_code": 418}));
    continued(run(&p, &mut request("GET", "/?other=1", &[], "")).await).await;
    let resp = responded(run(&p, &mut request("GET", "/", &[("x-debug", "1")], "")).await);
    assert_eq!(resp.status(), 418);
    let resp = responded(run(&p, &mut request("GET", "/?X-Debug", &[], "")).await);
    assert_eq!(resp.status(), 418);
}

#[tokio::test]
async fn echo_describes_the_request_and_the_match() {
    let mut e = Entities::default();
    let svc = e.service(json!({"name": "svc", "host": "upstream.test", "port": 8080}));
    let route = e.route(json!({"name": "r", "paths": ["/echo"], "service": {"id": svc}}));
    e.plugin(json!({
        "name": NAME,
        "route": {"id": route},
        "config": {"echo": true, "status_code": 200, "trigger": "x-echo"}
    }));
    let snap = e.build(&mut BuildCache::new());
    let mut req = request(
        "POST",
        "/echo/a?x=1&x=2&flag&name=a%20b",
        &[
            ("host", "gw.test:8000"),
            ("x-echo", "yes"),
            ("x-multi", "1"),
        ],
        "",
    );
    req.parts.headers.append("x-multi", "2".parse().unwrap());
    let (_, flow) = run_chain(&snap, &mut req).await;
    let resp = responded(flow);
    assert_eq!(resp.status(), 200);
    let v = body_json(resp.into_body()).await;
    assert_eq!(v["message"], "OK");
    assert_eq!(v["request"]["method"], "POST");
    assert_eq!(v["request"]["path"], "/echo/a");
    assert_eq!(v["request"]["host"], "gw.test");
    assert_eq!(v["request"]["port"], 8000);
    assert_eq!(
        v["request"]["query"],
        json!({"x": ["1", "2"], "flag": true, "name": "a b"})
    );
    assert_eq!(v["request"]["headers"]["x-echo"], "yes");
    assert_eq!(v["request"]["headers"]["x-multi"], json!(["1", "2"]));
    assert_eq!(v["matched_route"]["name"], "r");
    assert_eq!(v["matched_service"]["name"], "svc");
    assert_eq!(v["matched_service"]["port"], 8080);
}

#[tokio::test]
async fn the_most_specific_instance_applies() {
    // Global 503, route-scoped 418 on route A, service-scoped 451 on service S (route B).
    let mut e = Entities::default();
    let s1 = e.service(json!({"name": "s1", "host": "one.test"}));
    let s2 = e.service(json!({"name": "s2", "host": "two.test"}));
    let ra = e.route(json!({"name": "a", "paths": ["/a"], "service": {"id": s1}}));
    e.route(json!({"name": "b", "paths": ["/b"], "service": {"id": s2}}));
    e.route(json!({"name": "c", "paths": ["/c"], "service": {"id": s1}}));
    e.plugin(json!({"name": NAME}));
    e.plugin(json!({"name": NAME, "route": {"id": ra}, "config": {"status_code": 418}}));
    e.plugin(json!({"name": NAME, "service": {"id": s2}, "config": {"status_code": 451}}));
    let snap = e.build(&mut BuildCache::new());
    let status_for = |path: &str| {
        let snap = snap.clone();
        let path = path.to_owned();
        async move {
            let m = snap
                .router
                .find(&gatehouse_router::RequestView {
                    method: &http::Method::GET,
                    host: None,
                    path: &path,
                    headers: &http::HeaderMap::new(),
                    sni: None,
                    websocket: false,
                })
                .unwrap();
            let route = snap.routes[m.route_id as usize].clone();
            let slot = &route.plugins[0];
            let inst = slot.resolve(None).unwrap().clone();
            let mut c = ctx(&snap);
            c.route = Some(route.clone());
            let flow = inst
                .plugin
                .access(&mut c, &mut request("GET", &path, &[], ""))
                .await
                .unwrap();
            responded(flow).status().as_u16()
        }
    };
    assert_eq!(status_for("/a").await, 418);
    assert_eq!(status_for("/b").await, 451);
    assert_eq!(status_for("/c").await, 503);
}
