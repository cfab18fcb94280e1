//! Component tests: the admin router through `tower::ServiceExt::oneshot`, on SQLite, with the
//! issuer router beside it to check that management writes reach the token endpoint at once.

use crate::auth::{AdminAuth, token_digest_hex};
use crate::{AdminState, router};
use axum::Router;
use axum::body::Body;
use gatehouse_identity::Identity;
use gatehouse_identity::keys::MasterKey;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tower::ServiceExt;

const TOKEN: &str = "admin-test-token";

struct Env {
    admin: Router,
    issuer: Router,
    identity: Arc<Identity>,
    _dir: std::path::PathBuf,
}

async fn env() -> Env {
    let dir =
        std::env::temp_dir().join(format!("gatehouse-admin-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    node(dir).await
}

/// A node on the database in `dir`: a second call on the same `dir` is another node sharing it.
async fn node(dir: std::path::PathBuf) -> Env {
    let store = gatehouse_store::open(&dir.join("t.db").display().to_string())
        .await
        .unwrap();
    let version = store.change_version().await.unwrap();
    let identity = Identity::load(
        store.clone(),
        MasterKey::parse(&"42".repeat(32)).unwrap(),
        "http://id.test",
    )
    .await
    .unwrap();
    let feed = crate::sync::follow(store, identity.clone(), None, version)
        .await
        .unwrap()
        .feed;
    let state = AdminState {
        identity: identity.clone(),
        ready: Arc::new(AtomicBool::new(true)),
        gateway: crate::GatewayAdmin {
            registry: Arc::new(gatehouse_proxy::plugin::Registry::new()),
            default_control_plane: uuid::Uuid::nil(),
            served_control_plane: None,
            admin_url: "http://admin.test".into(),
            proxy_url: None,
            db_less: false,
        },
        feed,
        cache: None,
    };
    Env {
        admin: router(
            state,
            AdminAuth::from_hex_digests([token_digest_hex(TOKEN).as_str()]),
        ),
        issuer: gatehouse_identity::http::router(identity.clone()),
        identity,
        _dir: dir,
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    call_as(app, TOKEN, method, uri, body).await
}

/// Sends `method uri` with `Bearer token` and an optional JSON body; the status and the JSON
/// answer (null when the body is not JSON). Shared by the admin suites.
pub(crate) async fn call_as(
    app: &Router,
    token: &str,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"));
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn form(app: &Router, uri: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn fields(v: &Value) -> Vec<(String, String)> {
    v["invalid_parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["field"].as_str().unwrap().to_owned(),
                p["rule"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn server(e: &Env) -> (String, String) {
    let (s, v) = call(
        &e.admin,
        "POST",
        "/v1/auth-servers",
        Some(json!({"name": "S", "audience": "aud"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let slug = v["issuer"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    (v["id"].as_str().unwrap().to_owned(), slug)
}

#[tokio::test]
async fn requires_the_admin_token_but_not_for_status() {
    let e = env().await;
    let req = Request::get("/v1/auth-servers")
        .body(Body::empty())
        .unwrap();
    let r = e.admin.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let req = Request::get("/v1/auth-servers")
        .header("authorization", "Bearer wrong")
        .body(Body::empty())
        .unwrap();
    assert_eq!(e.admin.clone().oneshot(req).await.unwrap().status(), 401);
    let req = Request::get("/status").body(Body::empty()).unwrap();
    let r = e.admin.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        body["database"],
        json!({"backend": "sqlite", "reachable": true})
    );
}

#[tokio::test]
async fn bodies_are_validated_field_by_field() {
    let e = env().await;
    let (s, v) = call(&e.admin, "POST", "/v1/auth-servers", Some(json!({"name": 1, "labels": {"kong-x": "y"}, "signing_algorithm": "HS256", "extra": true}))).await;
    assert_eq!(s, 400);
    assert_eq!(v["status"], 400);
    let f = fields(&v);
    for expected in [
        ("name", "is_string"),
        ("audience", "required"),
        ("signing_algorithm", "enum"),
        ("labels.kong-x", "is_label"),
        ("extra", "unknown_property"),
    ] {
        assert!(
            f.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {f:?}"
        );
    }
    let (s, v) = call(&e.admin, "POST", "/v1/auth-servers", Some(json!([1]))).await;
    assert_eq!(
        (s, fields(&v)[0].1.as_str()),
        (StatusCode::BAD_REQUEST, "is_object")
    );
    let req = Request::post("/v1/auth-servers")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from("{not json"))
        .unwrap();
    let r = e.admin.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), 400);

    let (a, _) = server(&e).await;
    let (s, v) = call(&e.admin, "POST", &format!("/v1/auth-servers/{a}/clients"), Some(json!({
        "name": "c", "grant_types": ["client_credentials", "password"], "response_types": ["token"],
        "access_token_duration": 59, "id_token_duration": 2_592_001, "allow_scopes": [uuid::Uuid::new_v4().to_string(), "nope"],
        "redirect_uris": ["http://insecure.example"]
    }))).await;
    assert_eq!(s, 400);
    let f = fields(&v);
    for expected in [
        ("grant_types[1]", "enum"),
        ("access_token_duration", "min"),
        ("id_token_duration", "max"),
        ("allow_scopes[1]", "is_uuid"),
        ("allow_scopes[0]", "missing_reference"),
        ("redirect_uris[0]", "is_uri"),
    ] {
        assert!(
            f.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {f:?}"
        );
    }
    let (s, v) = call(
        &e.admin,
        "POST",
        &format!("/v1/auth-servers/{a}/claims"),
        Some(json!({"name": "sub", "value": "${ nosuchfunc }"})),
    )
    .await;
    assert_eq!(s, 400);
    let f = fields(&v);
    assert!(
        f.contains(&("name".into(), "invalid".into()))
            && f.contains(&("value".into(), "invalid".into())),
        "{f:?}"
    );
}

#[tokio::test]
async fn not_found_bad_ids_conflicts_and_forced_deletes() {
    let e = env().await;
    let missing = uuid::Uuid::new_v4();
    assert_eq!(
        call(
            &e.admin,
            "GET",
            &format!("/v1/auth-servers/{missing}"),
            None
        )
        .await
        .0,
        404
    );
    let (s, v) = call(&e.admin, "GET", "/v1/auth-servers/not-a-uuid", None).await;
    assert_eq!(
        (s, fields(&v)[0].1.as_str()),
        (StatusCode::BAD_REQUEST, "is_uuid")
    );
    let (a, _) = server(&e).await;
    let (s, _) = call(
        &e.admin,
        "POST",
        &format!("/v1/auth-servers/{a}/scopes"),
        Some(json!({"name": "s1"})),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(
        call(
            &e.admin,
            "POST",
            &format!("/v1/auth-servers/{a}/scopes"),
            Some(json!({"name": "s1"}))
        )
        .await
        .0,
        409
    );
    assert_eq!(
        call(&e.admin, "DELETE", &format!("/v1/auth-servers/{a}"), None)
            .await
            .0,
        400
    );
    assert_eq!(
        call(
            &e.admin,
            "DELETE",
            &format!("/v1/auth-servers/{a}?force=maybe"),
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            &e.admin,
            "DELETE",
            &format!("/v1/auth-servers/{a}?force=true"),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(&e.admin, "GET", &format!("/v1/auth-servers/{a}"), None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn lists_filter_sort_and_page() {
    let e = env().await;
    for name in ["quickstart-a", "other", "quickstart-b"] {
        call(
            &e.admin,
            "POST",
            "/v1/auth-servers",
            Some(json!({"name": name, "audience": "x"})),
        )
        .await;
    }
    let (s, v) = call(&e.admin, "GET", "/v1/auth-servers?filter%5Bname%5D%5Bcontains%5D=quickstart&sort=name%20desc&page%5Bsize%5D=1", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        v["meta"]["page"],
        json!({"number": 1, "size": 1, "total": 2})
    );
    assert_eq!(v["data"][0]["name"], "quickstart-b");
    let (s, _) = call(
        &e.admin,
        "GET",
        "/v1/auth-servers?filter[secret][eq]=x",
        None,
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn secrets_rotate_and_management_writes_reach_the_token_endpoint() {
    let e = env().await;
    let (a, slug) = server(&e).await;
    let (_, c) = call(&e.admin, "POST", &format!("/v1/auth-servers/{a}/clients"), Some(json!({"name": "c", "grant_types": ["client_credentials"], "response_types": ["token"]}))).await;
    let (id, old) = (
        c["id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    let token_uri = format!("/{slug}/oauth/token");
    let grant = |secret: &str| {
        format!("grant_type=client_credentials&client_id={id}&client_secret={secret}")
    };
    assert_eq!(form(&e.issuer, &token_uri, &grant(&old)).await.0, 200);

    // Rotation as in Kong's how-to: list, add a chosen secret, use both, delete the old one.
    let (_, list) = call(
        &e.admin,
        "GET",
        &format!("/v1/auth-servers/{a}/clients/{id}/secrets"),
        None,
    )
    .await;
    let old_id = list["data"][0]["id"].as_str().unwrap().to_owned();
    assert!(list["data"][0].get("secret").is_none());
    let (s, new) = call(
        &e.admin,
        "POST",
        &format!("/v1/auth-servers/{a}/clients/{id}/secrets"),
        Some(json!({"secret": "new-secret", "enabled": true})),
    )
    .await;
    assert_eq!(
        (s, new["secret"].as_str()),
        (StatusCode::CREATED, Some("new-secret"))
    );
    assert_eq!(
        form(&e.issuer, &token_uri, &grant("new-secret")).await.0,
        200
    );
    assert_eq!(form(&e.issuer, &token_uri, &grant(&old)).await.0, 200);
    assert_eq!(
        call(
            &e.admin,
            "POST",
            &format!("/v1/auth-servers/{a}/clients/{id}/secrets"),
            Some(json!({}))
        )
        .await
        .0,
        403
    );
    // Disabling takes effect at once, even for a secret that verified before.
    let (s, _) = call(
        &e.admin,
        "PATCH",
        &format!("/v1/auth-servers/{a}/clients/{id}/secrets/{old_id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(form(&e.issuer, &token_uri, &grant(&old)).await.0, 401);
    assert_eq!(
        call(
            &e.admin,
            "DELETE",
            &format!("/v1/auth-servers/{a}/clients/{id}/secrets/{old_id}"),
            None
        )
        .await
        .0,
        204
    );

    // PUT upserts with a caller-chosen id and secret: 201 then 200.
    let body = json!({"name": "chosen", "grant_types": ["client_credentials"], "response_types": ["token"], "client_secret": "chosen-secret"});
    assert_eq!(
        call(
            &e.admin,
            "PUT",
            &format!("/v1/auth-servers/{a}/clients/my-client"),
            Some(body.clone())
        )
        .await
        .0,
        201
    );
    assert_eq!(
        call(
            &e.admin,
            "PUT",
            &format!("/v1/auth-servers/{a}/clients/my-client"),
            Some(body)
        )
        .await
        .0,
        200
    );
    let (s, t) = form(
        &e.issuer,
        &token_uri,
        "grant_type=client_credentials&client_id=my-client&client_secret=chosen-secret",
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        call(
            &e.admin,
            "PUT",
            &format!("/v1/auth-servers/{a}/clients/bad%20id"),
            Some(json!({}))
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn scope_and_claim_rules_shape_the_token() {
    let e = env().await;
    let (a, slug) = server(&e).await;
    let scopes_uri = format!("/v1/auth-servers/{a}/scopes");
    let (_, read) = call(&e.admin, "POST", &scopes_uri, Some(json!({"name": "read"}))).await;
    let (_, dflt) = call(
        &e.admin,
        "POST",
        &scopes_uri,
        Some(json!({"name": "default-one", "default": true})),
    )
    .await;
    let (_, off) = call(
        &e.admin,
        "POST",
        &scopes_uri,
        Some(json!({"name": "off", "enabled": false})),
    )
    .await;
    let (s, _) = call(
        &e.admin,
        "POST",
        &scopes_uri,
        Some(json!({"name": "listed", "include_in_metadata": true})),
    )
    .await;
    assert_eq!(s, 201);
    let ids = |v: &Value| v["id"].as_str().unwrap().to_owned();
    for (name, value, all, scopes) in [
        ("always", "${ upper .Client.Name }", true, vec![]),
        ("with-read", "{\"n\":1}", false, vec![ids(&read)]),
        ("no-scope", "42", false, vec![]),
    ] {
        let (s, v) = call(&e.admin, "POST", &format!("/v1/auth-servers/{a}/claims"), Some(json!({"name": name, "value": value, "include_in_token": true, "include_in_all_scopes": all, "include_in_scopes": scopes}))).await;
        assert_eq!(s, 201, "{v}");
    }
    call(&e.admin, "POST", &format!("/v1/auth-servers/{a}/claims"), Some(json!({"name": "userinfo-only", "value": "${ .AuthServer.Audience }-${ .Client.ID }", "include_in_all_scopes": true}))).await;
    let (_, c) = call(&e.admin, "POST", &format!("/v1/auth-servers/{a}/clients"), Some(json!({"name": "svc", "grant_types": ["client_credentials"], "response_types": ["token"], "allow_scopes": [ids(&read), ids(&dflt), ids(&off)]}))).await;
    let (id, secret) = (
        c["id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    let token_uri = format!("/{slug}/oauth/token");
    let payload = |t: &Value| -> Value {
        use base64::Engine;
        let p = t["access_token"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap()
    };

    let (s, t) = form(
        &e.issuer,
        &token_uri,
        &format!("grant_type=client_credentials&client_id={id}&client_secret={secret}&scope=read"),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["scope"], "read default-one");
    let p = payload(&t);
    assert_eq!(p["always"], "SVC");
    assert_eq!(p["with-read"], json!({"n": 1}));
    assert!(p.get("no-scope").is_none() && p.get("userinfo-only").is_none());

    let (_, t) = form(
        &e.issuer,
        &token_uri,
        &format!("grant_type=client_credentials&client_id={id}&client_secret={secret}"),
    )
    .await;
    let p = payload(&t);
    assert_eq!(t["scope"], "default-one");
    assert_eq!(p["no-scope"], 42);
    assert!(p.get("with-read").is_none());

    for bad in ["off", "listed", "unknown"] {
        let (s, v) = form(
            &e.issuer,
            &token_uri,
            &format!(
                "grant_type=client_credentials&client_id={id}&client_secret={secret}&scope={bad}"
            ),
        )
        .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_scope")),
            "{bad}"
        );
    }

    // userinfo serves the include_in_token:false claims.
    let req = Request::get(format!("/{slug}/userinfo"))
        .header(
            "authorization",
            format!("Bearer {}", t["access_token"].as_str().unwrap()),
        )
        .body(Body::empty())
        .unwrap();
    let r = e.issuer.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["userinfo-only"], format!("aud-{id}"));
    assert_eq!(v["sub"], id.as_str());

    // Discovery lists only include_in_metadata scopes.
    let req = Request::get(format!("/{slug}/.well-known/openid-configuration"))
        .body(Body::empty())
        .unwrap();
    let r = e.issuer.clone().oneshot(req).await.unwrap();
    let d: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(d["scopes_supported"], json!(["listed"]));

    // test-claim renders against the client.
    let (s, v) = call(&e.admin, "POST", &format!("/v1/auth-servers/{a}/clients/{id}/test-claim"), Some(json!({"who": "${ .Client.Name }", "env": "${ .Client.Labels.environment | default \"production\" }", "u": "${ uuidv4 }"}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["who"].as_str(), v["env"].as_str()),
        (Some("svc"), Some("production"))
    );
    assert!(uuid::Uuid::parse_str(v["u"].as_str().unwrap()).is_ok());
    let (s, _) = call(
        &e.admin,
        "POST",
        &format!("/v1/auth-servers/{a}/clients/{id}/test-claim"),
        Some(json!({"x": "${ broken"})),
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn changing_the_algorithm_keeps_old_tokens_valid() {
    let e = env().await;
    let (a, slug) = server(&e).await;
    let (_, c) = call(&e.admin, "POST", &format!("/v1/auth-servers/{a}/clients"), Some(json!({"name": "c", "grant_types": ["client_credentials"], "response_types": ["token"]}))).await;
    let (id, secret) = (
        c["id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    let grant = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let (_, old) = form(&e.issuer, &format!("/{slug}/oauth/token"), &grant).await;
    let (s, v) = call(
        &e.admin,
        "PATCH",
        &format!("/v1/auth-servers/{a}"),
        Some(json!({"signing_algorithm": "EdDSA"})),
    )
    .await;
    assert_eq!(
        (s, v["signing_algorithm"].as_str()),
        (StatusCode::OK, Some("EdDSA"))
    );
    let (_, new) = form(&e.issuer, &format!("/{slug}/oauth/token"), &grant).await;
    let header = |t: &Value| -> Value {
        use base64::Engine;
        let h = t["access_token"]
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(header(&new)["alg"], "EdDSA");
    let req = Request::get(format!("/{slug}/.well-known/jwks"))
        .body(Body::empty())
        .unwrap();
    let jwks: Value = serde_json::from_slice(
        &e.issuer
            .clone()
            .oneshot(req)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    for t in [&old, &new] {
        let (s, v) = form(
            &e.issuer,
            &format!("/{slug}/introspect"),
            &format!(
                "client_id={id}&client_secret={secret}&token={}",
                t["access_token"].as_str().unwrap()
            ),
        )
        .await;
        assert_eq!((s, v["active"].as_bool()), (StatusCode::OK, Some(true)));
    }
    // Revoke-all through the API.
    assert_eq!(
        call(
            &e.admin,
            "DELETE",
            &format!("/v1/auth-servers/{a}/clients/{id}/tokens"),
            None
        )
        .await
        .0,
        204
    );
    let (_, v) = form(
        &e.issuer,
        &format!("/{slug}/introspect"),
        &format!(
            "client_id={id}&client_secret={secret}&token={}",
            new["access_token"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(v["active"], false);
}

/// Claims too long for a token that introspection and the gateway could read back
/// (`jwt::MAX_TOKEN`) issue nothing; just under the limit they issue a token that is honoured.
#[tokio::test]
async fn claims_too_long_for_a_token_issue_nothing() {
    let e = env().await;
    let (a, slug) = server(&e).await;
    let (_, c) = call(&e.admin, "POST", &format!("/v1/auth-servers/{a}/clients"), Some(json!({"name": "svc", "grant_types": ["client_credentials"], "response_types": ["token"]}))).await;
    let (id, secret) = (
        c["id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    let token_uri = format!("/{slug}/oauth/token");
    let grant = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let token = || form(&e.issuer, &token_uri, &grant);
    let (_, claim) = call(&e.admin, "POST", &format!("/v1/auth-servers/{a}/claims"), Some(json!({"name": "big", "value": "x".repeat(13_000), "include_in_token": true, "include_in_all_scopes": true}))).await;
    let (s, v) = token().await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("server_error")),
        "{v}"
    );

    // Just under the limit: issued, and introspection reads it back.
    let claim_uri = format!(
        "/v1/auth-servers/{a}/claims/{}",
        claim["id"].as_str().unwrap()
    );
    let (s, _) = call(
        &e.admin,
        "PATCH",
        &claim_uri,
        Some(json!({"value": "x".repeat(11_500)})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, t) = token().await;
    assert_eq!(s, 200, "{t}");
    let access = t["access_token"].as_str().unwrap();
    assert!(
        (15_000..=gatehouse_identity::jwt::MAX_TOKEN).contains(&access.len()),
        "{}",
        access.len()
    );
    let (s, v) = form(
        &e.issuer,
        &format!("/{slug}/introspect"),
        &format!("client_id={id}&client_secret={secret}&token={access}"),
    )
    .await;
    assert_eq!(
        (s, v["active"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    assert_eq!(v["big"].as_str().map(str::len), Some(11_500));
}

/// The verification cache keeps live tokens only: a token checked after its revocation
/// leaves nothing behind (expiry goes the same way, `Identity::may_keep`) (a soak issuing and revoking thousands of tokens
/// grew memory by every one of them).
#[tokio::test]
async fn a_client_deleted_by_another_node_fails_only_its_own_tokens() {
    let e = env().await;
    let (a, slug) = server(&e).await;
    let mut creds = Vec::new();
    for name in ["keep", "gone"] {
        let (s, c) = call(&e.admin, "POST", &format!("/v1/auth-servers/{a}/clients"), Some(json!({"name": name, "grant_types": ["client_credentials"], "response_types": ["token"]}))).await;
        assert_eq!(s, 201, "{c}");
        creds.push((
            c["id"].as_str().unwrap().to_owned(),
            format!(
                "grant_type=client_credentials&client_id={}&client_secret={}",
                c["id"].as_str().unwrap(),
                c["client_secret"].as_str().unwrap()
            ),
        ));
    }
    let uri = format!("/{slug}/oauth/token");
    // Both clients get tokens (and their secrets are verified once, so the burst below takes
    // the fast path and its tokens reach the writer together).
    for (_, body) in &creds {
        let (s, v) = form(&e.issuer, &uri, body).await;
        assert_eq!(s, 200, "{v}");
    }
    // Another node on the same database deletes "gone"; this node has not heard of it.
    let other = node(e._dir.clone()).await;
    let (s, v) = call(
        &other.admin,
        "DELETE",
        &format!("/v1/auth-servers/{a}/clients/{}", creds[1].0),
        None,
    )
    .await;
    assert_eq!(s, 204, "{v}");

    // 290 requests of "keep" and 10 of "gone" at once, sharing the writer's batches.
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..300 {
        let (issuer, uri) = (e.issuer.clone(), uri.clone());
        let (gone, body) = (i % 30 == 7, creds[usize::from(i % 30 == 7)].1.clone());
        burst.spawn(async move { (gone, form(&issuer, &uri, &body).await) });
    }
    let (mut kept, mut refused) = (0, 0);
    while let Some(done) = burst.join_next().await {
        let (gone, (s, v)) = done.unwrap();
        if gone {
            assert_eq!(s, 401, "{v}");
            assert_eq!(v["error"], "invalid_client");
            refused += 1;
        } else {
            assert_eq!(s, 200, "{v}");
            kept += 1;
        }
    }
    assert_eq!((kept, refused), (290, 10));
    // The kept tokens were recorded: the other node lists them (one from before, 290 now).
    let (s, v) = call(
        &other.admin,
        "GET",
        &format!(
            "/v1/auth-servers/{a}/clients/{}/tokens?page%5Bsize%5D=1",
            creds[0].0
        ),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["meta"]["page"]["total"], 291, "{v}");
}

#[tokio::test]
async fn the_verification_cache_forgets_revoked_tokens() {
    let e = env().await;
    let (a, slug) = server(&e).await;
    let (_, c) = call(&e.admin, "POST", &format!("/v1/auth-servers/{a}/clients"), Some(json!({"name": "svc", "grant_types": ["client_credentials"], "response_types": ["token"]}))).await;
    let (id, secret) = (
        c["id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    let creds = format!("client_id={id}&client_secret={secret}");
    let (issuer, slug, creds) = (&e.issuer, slug.as_str(), creds.as_str());
    let issue = || async {
        let (s, t) = form(
            issuer,
            &format!("/{slug}/oauth/token"),
            &format!("grant_type=client_credentials&{creds}"),
        )
        .await;
        assert_eq!(s, 200, "{t}");
        t["access_token"].as_str().unwrap().to_owned()
    };
    let active = |token: String| async move {
        let (s, v) = form(
            issuer,
            &format!("/{slug}/introspect"),
            &format!("{creds}&token={token}"),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        v["active"].as_bool().unwrap()
    };

    // Revoked, then presented again: inactive, and not cached.
    let revoked = issue().await;
    assert!(active(revoked.clone()).await);
    assert_eq!(e.identity.cached_verifications(), 1);
    let (s, _) = form(
        issuer,
        &format!("/{slug}/revoke"),
        &format!("{creds}&token={revoked}"),
    )
    .await;
    assert_eq!(s, 200);
    assert!(!active(revoked.clone()).await);
    assert!(!active(revoked).await);
    assert_eq!(e.identity.cached_verifications(), 0);

    // All of a client's tokens revoked at once (as another node's revocation arrives: through
    // the revoked set): dropped when presented again, or by the sweep.
    let (again, idle) = (issue().await, issue().await);
    assert!(active(again.clone()).await && active(idle.clone()).await);
    assert_eq!(e.identity.cached_verifications(), 2);
    let (s, _) = call(
        &e.admin,
        "DELETE",
        &format!("/v1/auth-servers/{a}/clients/{id}/tokens"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert!(!active(again).await);
    assert_eq!(e.identity.cached_verifications(), 1);
    e.identity.forget_dead_verifications();
    assert_eq!(e.identity.cached_verifications(), 0);
}

#[tokio::test]
async fn issuer_endpoints_refuse_malformed_requests() {
    let e = env().await;
    let (a, slug) = server(&e).await;
    let (_, c) = call(
        &e.admin,
        "POST",
        &format!("/v1/auth-servers/{a}/clients"),
        Some(json!({"name": "c", "grant_types": ["implicit"], "response_types": ["token"]})),
    )
    .await;
    let (id, secret) = (
        c["id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    let uri = format!("/{slug}/oauth/token");
    let (s, v) = form(
        &e.issuer,
        &uri,
        &format!("grant_type=client_credentials&client_id={id}&client_secret={secret}"),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unauthorized_client"))
    );
    let (s, v) = form(
        &e.issuer,
        &uri,
        "grant_type=client_credentials&grant_type=client_credentials",
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (s, v) = form(&e.issuer, &uri, "scope=x").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let req = Request::post(&uri)
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(e.issuer.clone().oneshot(req).await.unwrap().status(), 400);
    let req = Request::post(&uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(vec![b'a'; 200 * 1024]))
        .unwrap();
    let r = e.issuer.clone().oneshot(req).await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let req = Request::post("/nosuchissuer123/oauth/token")
        .body(Body::empty())
        .unwrap();
    assert_eq!(e.issuer.clone().oneshot(req).await.unwrap().status(), 404);
    let (s, _) = form(&e.issuer, &format!("/{slug}/introspect"), "token=x").await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn cors_answers_trusted_origins_only() {
    let e = env().await;
    let (s, v) = call(
        &e.admin,
        "POST",
        "/v1/auth-servers",
        Some(json!({"name": "c", "audience": "a", "trusted_origins": ["https://app.example.com"]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let slug = v["issuer"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    for (origin, allowed) in [
        ("https://app.example.com", true),
        ("https://evil.example", false),
    ] {
        let req = Request::builder()
            .method("OPTIONS")
            .uri(format!("/{slug}/oauth/token"))
            .header("origin", origin)
            .body(Body::empty())
            .unwrap();
        let r = e.issuer.clone().oneshot(req).await.unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(
            r.headers().get("access-control-allow-origin").is_some(),
            allowed,
            "{origin}"
        );
    }
    let (s, _) = call(
        &e.admin,
        "POST",
        "/v1/auth-servers",
        Some(json!({"name": "d", "audience": "a", "trusted_origins": ["not a url"]})),
    )
    .await;
    assert_eq!(s, 400);
}
