//! Benchmarks of the issuer endpoints through their axum router (no sockets): the
//! client_credentials grant for each key type, including the durable token record with group
//! commit on SQLite, and introspection of an active token.
//!
//! The auth servers, scopes, claims and clients are created through the admin API exactly as in
//! the seed's walkthrough. Run with `cargo bench -p gatehouse-admin --bench issuer`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_admin::auth::{AdminAuth, token_digest_hex};
use gatehouse_admin::{AdminState, router};
use gatehouse_identity::Identity;
use gatehouse_identity::keys::MasterKey;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tower::ServiceExt;

const TOKEN: &str = "bench-admin-token";

async fn send(app: &Router, req: Request<Body>) -> Value {
    let resp = app.clone().oneshot(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

async fn admin_post(app: &Router, uri: &str, body: Value) -> Value {
    let req = Request::post(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, req).await
}

fn form(uri: &str, body: String) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

/// One auth server with the walkthrough's scope, claim and client; returns the issuer path and
/// the client's form credentials.
async fn walkthrough_server(admin: &Router, name: &str, algorithm: &str) -> (String, String) {
    let server = admin_post(
        admin,
        "/v1/auth-servers",
        json!({"name": name, "audience": "http://myhttpbin.dev",
               "signing_algorithm": algorithm}),
    )
    .await;
    let id = server["id"].as_str().unwrap().to_owned();
    let path = url::Url::parse(server["issuer"].as_str().unwrap())
        .unwrap()
        .path()
        .to_owned();
    let scope = admin_post(
        admin,
        &format!("/v1/auth-servers/{id}/scopes"),
        json!({"name": "my-scope", "description": "bench", "default": false,
               "include_in_metadata": false, "enabled": true}),
    )
    .await;
    admin_post(
        admin,
        &format!("/v1/auth-servers/{id}/claims"),
        json!({"name": "test-claim", "value": "test", "include_in_token": true,
               "include_in_all_scopes": false, "include_in_scopes": [scope["id"]], "enabled": true}),
    )
    .await;
    let client = admin_post(
        admin,
        &format!("/v1/auth-servers/{id}/clients"),
        json!({"name": "Client", "grant_types": ["client_credentials"], "allow_all_scopes": false,
               "allow_scopes": [scope["id"]], "access_token_duration": 3600,
               "id_token_duration": 3600, "response_types": ["id_token", "token"]}),
    )
    .await;
    let creds = format!(
        "client_id={}&client_secret={}",
        client["id"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap()
    );
    (path, creds)
}

fn issuer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("gatehouse-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (admin, issuer_app) = rt.block_on(async {
        let store = gatehouse_store::open(&dir.join("bench.db").display().to_string())
            .await
            .unwrap();
        let version = store.change_version().await.unwrap();
        let identity = Identity::load(
            store.clone(),
            MasterKey::parse(&"42".repeat(32)).unwrap(),
            "http://127.0.0.1:8002",
        )
        .await
        .unwrap();
        let feed = gatehouse_admin::sync::follow(store, identity.clone(), None, version)
            .await
            .unwrap()
            .feed;
        let state = AdminState {
            identity: identity.clone(),
            ready: Arc::new(AtomicBool::new(true)),
            gateway: gatehouse_admin::GatewayAdmin {
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
        let auth = AdminAuth::from_hex_digests([token_digest_hex(TOKEN).as_str()]);
        (
            router(state, auth),
            gatehouse_identity::http::router(identity),
        )
    });

    let mut group = c.benchmark_group("oauth_token");
    for algorithm in ["RS256", "ES256", "EdDSA"] {
        let (path, creds) = rt.block_on(walkthrough_server(
            &admin,
            &format!("token {algorithm}"),
            algorithm,
        ));
        let uri = format!("{path}/oauth/token");
        let body = format!("grant_type=client_credentials&{creds}&scope=my-scope");
        // The first call pays for PBKDF2; the benchmark measures the steady state after it.
        rt.block_on(send(&issuer_app, form(&uri, body.clone())));
        group.bench_function(algorithm, |b| {
            b.to_async(&rt)
                .iter(|| send(&issuer_app, form(&uri, body.clone())))
        });
    }
    group.finish();

    let (path, creds) = rt.block_on(walkthrough_server(&admin, "introspection", "RS256"));
    let token_body = format!("grant_type=client_credentials&{creds}&scope=my-scope");
    let token = rt.block_on(send(
        &issuer_app,
        form(&format!("{path}/oauth/token"), token_body),
    ))["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let uri = format!("{path}/introspect");
    let body = format!("token={token}&{creds}");
    let answer = rt.block_on(send(&issuer_app, form(&uri, body.clone())));
    assert_eq!(answer["active"], true);
    c.bench_function("introspect/active_cached", |b| {
        b.to_async(&rt)
            .iter(|| send(&issuer_app, form(&uri, body.clone())))
    });
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, issuer);
criterion_main!(benches);
