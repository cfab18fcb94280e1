//! Component tests of the gateway half of the admin API — control planes (Konnect format) and
//! core entities (Kong format, under Konnect paths and Kong's root paths) — through
//! `oneshot`, each run on SQLite and on PostgreSQL (a private schema per run).

use crate::auth::{AdminAuth, token_digest_hex};
use crate::{AdminState, GatewayAdmin, router};
use axum::Router;
use axum::body::Body;
use gatehouse_core::gateway::EntityKind;
use gatehouse_identity::Identity;
use gatehouse_identity::keys::MasterKey;
use gatehouse_proxy::gateway::Gateway;
use gatehouse_store::SharedStore;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tower::ServiceExt;
use uuid::Uuid;

const TOKEN: &str = "gateway-admin-token";

pub(crate) struct Env {
    app: Router,
    pub(crate) store: SharedStore,
    gateway: Arc<Gateway>,
    source: Arc<crate::sync::StoreSource>,
    pub(crate) default_cp: Uuid,
    pub(crate) backend: &'static str,
}

fn postgres_url() -> String {
    std::env::var("GATEHOUSE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The stores every test runs on: a fresh SQLite file and a fresh PostgreSQL schema, both
/// removed once the test's loop over them ends.
pub(crate) struct Stores {
    stores: Vec<SharedStore>,
    cleanup: Cleanup,
}

/// Removes a test's SQLite directory and PostgreSQL schema when dropped.
pub(crate) struct Cleanup {
    dir: std::path::PathBuf,
    schema: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let schema = std::mem::take(&mut self.schema);
        // Drop cannot await: the schema goes on a thread of its own with its own runtime, and
        // that thread is not joined. Joining would block the test's runtime, so a transaction
        // the test dropped could never send the ROLLBACK sqlx queues for it on the runtime; its
        // locks would then hold the DROP forever (seen in CI). Unjoined, the DROP waits until
        // the test's connections close; only a schema of the binary's last tests may be left
        // when the process exits first.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&postgres_url()).await?;
                sqlx::query("SET lock_timeout = '30s'")
                    .execute(&mut conn)
                    .await?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
            .map_err(std::io::Error::other)
        });
    }
}

impl Stores {
    /// The SQLite store alone, and what removes its data (keep it while the store is used).
    pub(crate) fn sqlite(mut self) -> (SharedStore, Cleanup) {
        (self.stores.remove(0), self.cleanup)
    }
}

impl IntoIterator for Stores {
    type Item = SharedStore;
    type IntoIter = StoresIter;

    fn into_iter(self) -> StoresIter {
        StoresIter {
            stores: self.stores.into_iter(),
            _cleanup: self.cleanup,
        }
    }
}

/// The stores one after the other; the last one's data is removed with the iterator.
pub(crate) struct StoresIter {
    stores: std::vec::IntoIter<SharedStore>,
    _cleanup: Cleanup,
}

impl Iterator for StoresIter {
    type Item = SharedStore;

    fn next(&mut self) -> Option<SharedStore> {
        self.stores.next()
    }
}

/// [`Stores`] for one test.
pub(crate) async fn stores() -> Stores {
    let dir = std::env::temp_dir().join(format!("gatehouse-gw-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = gatehouse_store::open(&dir.join("t.db").display().to_string())
        .await
        .unwrap();
    let schema = format!("gw_{}", Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&postgres_url())
        .await
        .expect("PostgreSQL must be reachable for the admin suite");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if postgres_url().contains('?') {
        '&'
    } else {
        '?'
    };
    let pg = gatehouse_store::open(&format!(
        "{}{sep}options=-c%20search_path%3D{schema}",
        postgres_url()
    ))
    .await
    .unwrap();
    Stores {
        stores: vec![sqlite, pg],
        cleanup: Cleanup { dir, schema },
    }
}

pub(crate) async fn env(store: SharedStore) -> Env {
    let version = store.change_version().await.unwrap();
    let identity = Identity::load(
        store.clone(),
        MasterKey::parse(&"42".repeat(32)).unwrap(),
        "http://id.test",
    )
    .await
    .unwrap();
    let default_cp = crate::control_planes::ensure(&store, "default")
        .await
        .unwrap();
    let registry = Arc::new(gatehouse_plugins::registry());
    let gateway = Gateway::new(registry.clone(), default_cp);
    let following = crate::sync::follow(
        store.clone(),
        identity.clone(),
        Some(gateway.clone()),
        version,
    )
    .await
    .unwrap();
    let feed = following.feed;
    let cache = crate::cache::ConfigCache::new(
        None,
        crate::cache::NodeSettings {
            control_plane: None,
            default_control_plane: default_cp,
            admin_token_digests: Vec::new(),
        },
        feed.clone(),
        identity.clone(),
        following.source.clone(),
    );
    cache.spawn();
    let state = AdminState {
        identity,
        ready: Arc::new(AtomicBool::new(true)),
        gateway: GatewayAdmin {
            registry,
            default_control_plane: default_cp,
            served_control_plane: Some(default_cp),
            admin_url: "http://admin.test".into(),
            proxy_url: None,
            db_less: false,
        },
        feed,
        cache: Some(cache),
    };
    Env {
        app: router(
            state,
            AdminAuth::from_hex_digests([token_digest_hex(TOKEN).as_str()]),
        ),
        backend: store.backend(),
        store,
        gateway,
        source: following.source.unwrap(),
        default_cp,
    }
}

impl Env {
    pub(crate) async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
        let (status, body) = crate::tests::call_as(&self.app, TOKEN, method, uri, body).await;
        (status.as_u16(), body)
    }
}

#[tokio::test]
async fn control_planes_konnect_api() {
    for store in stores().await {
        let e = env(store).await;
        let b = e.backend;
        let (s, cp) = e
            .call(
                "POST",
                "/v2/control-planes",
                Some(json!({"name": "quickstart", "labels": {"env": "dev"}})),
            )
            .await;
        assert_eq!(s, 201, "{b}: {cp}");
        assert_eq!(cp["config"]["cluster_type"], "CLUSTER_TYPE_CONTROL_PLANE");
        assert!(cp["created_at"].as_str().unwrap().contains('T'));
        let id = cp["id"].as_str().unwrap().to_owned();
        let (s, dup) = e
            .call(
                "POST",
                "/v2/control-planes",
                Some(json!({"name": "quickstart"})),
            )
            .await;
        assert_eq!((s, dup["status"].as_i64()), (409, Some(409)), "{b}");

        let (s, list) = e
            .call(
                "GET",
                "/v2/control-planes?filter%5Bname%5D%5Bcontains%5D=quickstart",
                None,
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(list["data"].as_array().unwrap().len(), 1, "{b}");
        assert_eq!(list["data"][0]["id"], id.as_str());
        assert_eq!(list["meta"]["page"]["total"], 1);
        let (_, list) = e
            .call(
                "GET",
                "/v2/control-planes?filter[name][neq]=quickstart",
                None,
            )
            .await;
        assert_eq!(list["data"][0]["name"], "default", "{b}");
        let (_, list) = e
            .call(
                "GET",
                &format!("/v2/control-planes?filter[id][eq]={id}"),
                None,
            )
            .await;
        assert_eq!(list["meta"]["page"]["total"], 1);
        let (_, list) = e
            .call("GET", "/v2/control-planes?labels=env:dev", None)
            .await;
        assert_eq!(list["meta"]["page"]["total"], 1, "{b}");
        let (_, list) = e
            .call(
                "GET",
                "/v2/control-planes?sort=name%20desc&page[size]=1",
                None,
            )
            .await;
        assert_eq!(list["data"][0]["name"], "quickstart");
        assert_eq!(list["meta"]["page"]["size"], 1);

        let (s, bad) = e
            .call(
                "POST",
                "/v2/control-planes",
                Some(json!({"name": "x", "cluster_type": "NOPE", "color": "red"})),
            )
            .await;
        assert_eq!(s, 400);
        let fields: Vec<&str> = bad["invalid_parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&"cluster_type") && fields.contains(&"color"),
            "{bad}"
        );

        let (s, patched) = e
            .call(
                "PATCH",
                &format!("/v2/control-planes/{id}"),
                Some(json!({"description": "walkthrough", "labels": {"env": null, "team": "a"}})),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(patched["description"], "walkthrough");
        assert_eq!(patched["labels"], json!({"team": "a"}));
        let (s, _) = e
            .call(
                "GET",
                &format!("/v2/control-planes/{}", Uuid::new_v4()),
                None,
            )
            .await;
        assert_eq!(s, 404);
        let (s, _) = e
            .call(
                "DELETE",
                &format!("/v2/control-planes/{}", e.default_cp),
                None,
            )
            .await;
        assert_eq!(s, 409, "the served control plane cannot be deleted");
        let (s, _) = e
            .call("DELETE", &format!("/v2/control-planes/{id}"), None)
            .await;
        assert_eq!(s, 204);
        let (s, _) = e
            .call("GET", &format!("/v2/control-planes/{id}"), None)
            .await;
        assert_eq!(s, 404);
    }
}

#[tokio::test]
async fn core_entities_under_konnect_paths() {
    for store in stores().await {
        let e = env(store).await;
        let b = e.backend;
        let base = format!("/v2/control-planes/{}/core-entities", e.default_cp);
        let (s, svc) = e
            .call(
                "POST",
                &format!("{base}/services"),
                Some(
                    json!({"name": "example-service", "url": "http://127.0.0.1:8080/anything",
                            "tags": ["a", "b"]}),
                ),
            )
            .await;
        assert_eq!(s, 201, "{b}: {svc}");
        assert_eq!(
            (svc["host"].as_str(), svc["port"].as_i64()),
            (Some("127.0.0.1"), Some(8080))
        );
        assert!(svc["created_at"].is_i64() && svc.get("url").is_none());
        let sid = svc["id"].as_str().unwrap().to_owned();

        let (s, route) = e
            .call(
                "POST",
                &format!("{base}/services/example-service/routes"),
                Some(json!({"name": "example-route", "paths": ["/anything"]})),
            )
            .await;
        assert_eq!(s, 201, "{b}: {route}");
        assert_eq!(route["service"]["id"], sid.as_str());
        assert_eq!(route["protocols"], json!(["http", "https"]));
        // The write is live in the proxy's snapshot when the response is sent.
        assert_eq!(e.gateway.snapshot().routes.len(), 1, "{b}");

        for i in 0..3 {
            let (s, _) = e
                .call(
                    "POST",
                    &format!("{base}/services"),
                    Some(json!({"name": format!("svc-{i}"), "host": "upstream.test",
                                "tags": if i == 0 { json!(["a"]) } else { json!(["b"]) }})),
                )
                .await;
            assert_eq!(s, 201);
        }
        // Pagination: size/offset/next until the end.
        let mut seen = 0;
        let mut next = format!("{base}/services?size=2");
        loop {
            let (s, page) = e.call("GET", &next, None).await;
            assert_eq!(s, 200, "{b}: {page}");
            seen += page["data"].as_array().unwrap().len();
            match page["next"].as_str() {
                Some(n) => {
                    assert!(page["offset"].is_string());
                    next = n.to_owned();
                }
                None => break,
            }
        }
        assert_eq!(seen, 4, "{b}");
        let (_, tagged) = e
            .call("GET", &format!("{base}/services?tags=a,b"), None)
            .await;
        assert_eq!(tagged["data"].as_array().unwrap().len(), 1);
        let (_, tagged) = e
            .call("GET", &format!("{base}/services?tags=a/b"), None)
            .await;
        assert_eq!(tagged["data"].as_array().unwrap().len(), 4);
        let (_, named) = e
            .call(
                "GET",
                &format!("{base}/services?filter[name][contains]=svc-"),
                None,
            )
            .await;
        assert_eq!(named["data"].as_array().unwrap().len(), 3);
        let (s, bad) = e
            .call("GET", &format!("{base}/services?size=x"), None)
            .await;
        assert_eq!((s, bad["code"].as_i64()), (400, Some(9)));
        let (s, bad) = e
            .call("GET", &format!("{base}/services?offset=%%%"), None)
            .await;
        assert_eq!((s, bad["code"].as_i64()), (400, Some(7)));

        // PUT upserts by name: creates, then replaces.
        let (s, put) = e
            .call(
                "PUT",
                &format!("{base}/services/put-me"),
                Some(json!({"host": "a.test"})),
            )
            .await;
        assert_eq!(
            (s, put["name"].as_str()),
            (200, Some("put-me")),
            "{b}: {put}"
        );
        let (s, put2) = e
            .call(
                "PUT",
                &format!("{base}/services/put-me"),
                Some(json!({"host": "b.test"})),
            )
            .await;
        assert_eq!((s, put2["id"].clone()), (200, put["id"].clone()));
        assert_eq!(put2["host"], "b.test");
        let (s, patched) = e
            .call(
                "PATCH",
                &format!("{base}/services/put-me"),
                Some(json!({"port": 9000})),
            )
            .await;
        assert_eq!(
            (s, patched["port"].as_i64(), patched["host"].as_str()),
            (200, Some(9000), Some("b.test"))
        );

        // Errors in Kong's format.
        let (s, err) = e
            .call(
                "POST",
                &format!("{base}/services"),
                Some(json!({"port": "80", "nope": 1})),
            )
            .await;
        assert_eq!(
            (s, err["code"].as_i64(), err["name"].as_str()),
            (400, Some(2), Some("schema violation"))
        );
        assert_eq!(err["fields"]["host"], "required field missing");
        assert_eq!(err["fields"]["port"], "expected an integer");
        assert_eq!(err["fields"]["nope"], "unknown field");
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .starts_with("3 schema violations (")
        );
        let (s, err) = e
            .call(
                "POST",
                &format!("{base}/services"),
                Some(json!({"name": "svc-0", "host": "x.test"})),
            )
            .await;
        assert_eq!((s, err["code"].as_i64()), (409, Some(5)), "{b}: {err}");
        assert_eq!(err["fields"]["name"], "svc-0");
        let ghost = Uuid::new_v4();
        let (s, err) = e
            .call(
                "POST",
                &format!("{base}/routes"),
                Some(json!({"paths": ["/x"], "service": {"id": ghost}})),
            )
            .await;
        assert_eq!((s, err["code"].as_i64()), (400, Some(4)), "{b}: {err}");
        assert_eq!(err["fields"]["service"]["id"], ghost.to_string());
        let (s, err) = e
            .call(
                "POST",
                &format!("{base}/routes"),
                Some(json!({"paths": ["~/(bad"]})),
            )
            .await;
        assert_eq!((s, err["code"].as_i64()), (400, Some(2)));
        assert!(err["fields"]["paths"].is_string());
        let (s, err) = e
            .call(
                "POST",
                &format!("{base}/routes"),
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(s, 400);
        assert!(
            err["fields"]["@entity"][0]
                .as_str()
                .unwrap()
                .starts_with("must set one of")
        );
        let (s, err) = e
            .call("DELETE", &format!("{base}/services/{sid}"), None)
            .await;
        assert_eq!(
            (s, err["code"].as_i64()),
            (400, Some(4)),
            "a service with routes stays"
        );

        // Nested item of another parent: 404; top-level DELETE of nothing: 204.
        let (s, _) = e
            .call(
                "GET",
                &format!("{base}/services/svc-0/routes/example-route"),
                None,
            )
            .await;
        assert_eq!(s, 404);
        let (s, svc_of_route) = e
            .call("GET", &format!("{base}/routes/example-route/service"), None)
            .await;
        assert_eq!((s, svc_of_route["id"].as_str()), (200, Some(sid.as_str())));
        let (s, _) = e
            .call("DELETE", &format!("{base}/routes/{}", Uuid::new_v4()), None)
            .await;
        assert_eq!(s, 204);
        let (s, _) = e
            .call(
                "DELETE",
                &format!("{base}/services/{sid}/routes/{}", Uuid::new_v4()),
                None,
            )
            .await;
        assert_eq!(s, 404);
        let (s, _) = e
            .call(
                "DELETE",
                &format!("{base}/services/{sid}/routes/example-route"),
                None,
            )
            .await;
        assert_eq!(s, 204);
        assert_eq!(e.gateway.snapshot().routes.len(), 0);
        let (s, _) = e
            .call("DELETE", &format!("{base}/services/{sid}"), None)
            .await;
        assert_eq!(s, 204);
        let (s, nf) = e.call("GET", &format!("{base}/services/{sid}"), None).await;
        assert_eq!((s, nf["message"].as_str()), (404, Some("Not found")));
        let (s, _) = e
            .call(
                "GET",
                &format!(
                    "/v2/control-planes/{}/core-entities/services",
                    Uuid::new_v4()
                ),
                None,
            )
            .await;
        assert_eq!(s, 404);
    }
}

#[tokio::test]
async fn kong_root_paths_consumers_and_plugins() {
    for store in stores().await {
        let e = env(store).await;
        let b = e.backend;
        let (s, info) = e.call("GET", "/", None).await;
        assert_eq!(s, 200);
        assert!(info["plugins"]["available_on_server"]["oauth2-introspection"]["priority"] == 1700);
        let (s, enabled) = e.call("GET", "/plugins/enabled", None).await;
        assert_eq!(s, 200);
        assert!(
            enabled["enabled_plugins"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "oauth2-introspection")
        );
        let (s, schema) = e
            .call("GET", "/schemas/plugins/oauth2-introspection", None)
            .await;
        assert_eq!(s, 200);
        assert!(schema["fields"].is_array());
        let (s, _) = e.call("GET", "/schemas/plugins/nope", None).await;
        assert_eq!(s, 400);

        let (s, c) = e
            .call("POST", "/consumers", Some(json!({"custom_id": "client-1"})))
            .await;
        assert_eq!(s, 201, "{b}: {c}");
        let (s, err) = e
            .call("POST", "/consumers", Some(json!({"tags": ["x"]})))
            .await;
        assert_eq!((s, err["code"].as_i64()), (400, Some(2)));
        let (s, err) = e
            .call("POST", "/consumers", Some(json!({"custom_id": "client-1"})))
            .await;
        assert_eq!(
            (s, err["fields"]["custom_id"].as_str()),
            (409, Some("client-1")),
            "{b}"
        );
        let (s, found) = e.call("GET", "/consumers?custom_id=client-1", None).await;
        assert_eq!(s, 200);
        assert_eq!(found["data"][0]["id"], c["id"]);
        let (s, _) = e.call("GET", "/consumers?custom_id=", None).await;
        assert_eq!(s, 400);
        let (s, alice) = e.call("PUT", "/consumers/alice", Some(json!({}))).await;
        assert_eq!(
            (s, alice["username"].as_str()),
            (200, Some("alice")),
            "{b}: {alice}"
        );

        let (s, svc) = e
            .call(
                "POST",
                "/services",
                Some(json!({"name": "s", "host": "up.test"})),
            )
            .await;
        assert_eq!(s, 201);
        let (s, _) = e
            .call(
                "POST",
                "/routes",
                Some(json!({"name": "r", "paths": ["/r"], "service": {"name": "s"}})),
            )
            .await;
        assert_eq!(s, 201, "references by name resolve");
        let (s, err) = e
            .call(
                "POST",
                "/routes",
                Some(json!({"paths": ["/r2"], "service": {"name": "ghost"}})),
            )
            .await;
        assert_eq!((s, err["code"].as_i64()), (400, Some(4)));

        // Plugins: unknown name, bad config, duplicate scope, consumer scope refused.
        let (s, err) = e
            .call("POST", "/plugins", Some(json!({"name": "no-such-plugin"})))
            .await;
        assert_eq!(s, 400);
        assert!(
            err["fields"]["name"]
                .as_str()
                .unwrap()
                .contains("no-such-plugin")
        );
        let (s, err) = e
            .call("POST", "/plugins", Some(json!({"name": "oauth2-introspection",
                                                   "config": {"authorization_value": "Basic x", "bogus": 1}})))
            .await;
        assert_eq!(s, 400, "{err}");
        assert_eq!(
            err["fields"]["config"]["introspection_url"],
            "required field missing"
        );
        assert_eq!(err["fields"]["config"]["bogus"], "unknown field");
        let config = json!({"introspection_url": "http://127.0.0.1:8002/abc/introspect",
                            "authorization_value": "Basic c2VjcmV0",
                            "consumer_by": "client_id", "custom_claims_forward": ["Claim"]});
        let (s, p) = e
            .call(
                "POST",
                "/plugins",
                Some(json!({"name": "oauth2-introspection", "config": config})),
            )
            .await;
        assert_eq!(s, 201, "{b}: {p}");
        assert_eq!(p["config"]["authorization_value"], "Basic c2VjcmV0");
        assert_eq!(p["config"]["hide_credentials"], true);
        assert_eq!(p["config"]["ttl"], 30);
        // The secret is sealed at rest.
        let stored = e
            .store
            .get_core_entity(
                e.default_cp,
                EntityKind::Plugin,
                Uuid::parse_str(p["id"].as_str().unwrap()).unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        let at_rest = stored.body["config"]["authorization_value"]
            .as_str()
            .unwrap();
        assert!(
            at_rest.starts_with("gatehouse-sealed:v1:") && !at_rest.contains("c2VjcmV0"),
            "{at_rest}"
        );
        let (s, err) = e
            .call(
                "POST",
                "/plugins",
                Some(json!({"name": "oauth2-introspection", "config": config})),
            )
            .await;
        assert_eq!(
            (s, err["code"].as_i64()),
            (409, Some(5)),
            "one instance per scope"
        );
        let (s, scoped) = e
            .call(
                "POST",
                &format!("/services/{}/plugins", svc["id"].as_str().unwrap()),
                Some(json!({"name": "oauth2-introspection", "config": config})),
            )
            .await;
        assert_eq!(
            (s, scoped["service"]["id"].clone()),
            (201, svc["id"].clone())
        );
        let (s, err) = e
            .call(
                "POST",
                "/consumers/alice/plugins",
                Some(json!({"name": "oauth2-introspection", "config": config})),
            )
            .await;
        assert_eq!(s, 400, "{err}");
        assert!(err["fields"]["consumer"].is_string());
        let (s, list) = e.call("GET", "/services/s/plugins", None).await;
        assert_eq!((s, list["data"].as_array().unwrap().len()), (200, 1));
        let (s, patched) = e
            .call(
                "PATCH",
                &format!("/plugins/{}", p["id"].as_str().unwrap()),
                Some(json!({"config": {"ttl": 5}, "enabled": false})),
            )
            .await;
        assert_eq!(s, 200, "{patched}");
        assert_eq!(
            (
                patched["config"]["ttl"].as_f64(),
                patched["enabled"].as_bool()
            ),
            (Some(5.0), Some(false))
        );
        assert_eq!(
            patched["config"]["consumer_by"], "client_id",
            "PATCH merges config"
        );
        // Deleting a consumer takes its plugins; deleting the service its scoped plugins.
        let (s, _) = e.call("DELETE", "/routes/r", None).await;
        assert_eq!(s, 204);
        let (s, _) = e.call("DELETE", "/services/s", None).await;
        assert_eq!(s, 204);
        let (_, list) = e.call("GET", "/plugins", None).await;
        assert_eq!(list["data"].as_array().unwrap().len(), 1, "{b}");
    }
}

#[tokio::test]
async fn authentication_errors_use_each_apis_format() {
    let (store, _cleanup) = stores().await.sqlite();
    let e = env(store).await;
    let send = |uri: &'static str| {
        let app = e.app.clone();
        async move {
            let resp = app
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
            let body: Value =
                serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes())
                    .unwrap();
            (status, ct, body)
        }
    };
    let (s, ct, body) = send("/services").await;
    assert_eq!((s, body["message"].as_str()), (401, Some("Unauthorized")));
    assert!(ct.starts_with("application/json"));
    let (s, ct, _) = send("/v2/control-planes").await;
    assert_eq!(s, 401);
    assert!(ct.starts_with("application/problem+json"));
}

#[tokio::test]
async fn filters_survive_pagination_and_served_planes_keep_their_names() {
    for store in stores().await {
        let e = env(store).await;
        for name in ["keep-1", "keep-2", "keep-3", "other"] {
            let (s, _) = e
                .call(
                    "POST",
                    "/services",
                    Some(json!({"name": name, "host": "h.test"})),
                )
                .await;
            assert_eq!(s, 201);
        }
        let mut next = "/services?filter%5Bname%5D%5Bcontains%5D=keep&size=1".to_owned();
        let mut names = Vec::new();
        loop {
            let (s, page) = e.call("GET", &next, None).await;
            assert_eq!(s, 200, "{page}");
            for item in page["data"].as_array().unwrap() {
                names.push(item["name"].as_str().unwrap().to_owned());
            }
            match page["next"].as_str() {
                Some(n) => next = n.to_owned(),
                None => break,
            }
        }
        names.sort();
        assert_eq!(names, ["keep-1", "keep-2", "keep-3"], "{}", e.backend);

        let (s, _) = e
            .call(
                "PATCH",
                &format!("/v2/control-planes/{}", e.default_cp),
                Some(json!({"name": "renamed"})),
            )
            .await;
        assert_eq!(s, 409);
        let (s, _) = e
            .call(
                "POST",
                "/v2/control-planes/%FF/core-entities/services",
                Some(json!({"host": "h"})),
            )
            .await;
        let (_, list) = e.call("GET", "/services", None).await;
        assert_eq!(
            s, 404,
            "an undecodable control plane id names nothing: {list}"
        );
    }
}

#[tokio::test]
async fn nested_plugin_paths_under_routes_and_consumers() {
    for store in stores().await {
        let e = env(store).await;
        let b = e.backend;
        let (s, _) = e
            .call(
                "POST",
                "/services",
                Some(json!({"name": "s", "host": "h.test"})),
            )
            .await;
        assert_eq!(s, 201);
        let (s, route) = e
            .call(
                "POST",
                "/services/s/routes",
                Some(json!({"name": "r", "paths": ["/r"]})),
            )
            .await;
        assert_eq!(s, 201);
        let (s, consumer) = e
            .call("POST", "/consumers", Some(json!({"username": "alice"})))
            .await;
        assert_eq!(s, 201);
        let term = json!({"name": "request-termination", "config": {"status_code": 418}});
        let (s, on_route) = e
            .call("POST", "/routes/r/plugins", Some(term.clone()))
            .await;
        assert_eq!(s, 201, "{b}: {on_route}");
        assert_eq!(on_route["route"]["id"], route["id"]);
        let (s, on_consumer) = e
            .call("POST", "/consumers/alice/plugins", Some(term.clone()))
            .await;
        assert_eq!(s, 201, "{b}: {on_consumer}");
        assert_eq!(on_consumer["consumer"]["id"], consumer["id"]);
        let pid = on_route["id"].as_str().unwrap();
        let (s, got) = e
            .call("GET", &format!("/routes/r/plugins/{pid}"), None)
            .await;
        assert_eq!((s, got["id"].as_str()), (200, Some(pid)));
        let (s, _) = e
            .call("GET", &format!("/consumers/alice/plugins/{pid}"), None)
            .await;
        assert_eq!(s, 404, "a plugin of another parent");
        let (s, list) = e.call("GET", "/consumers/alice/plugins", None).await;
        assert_eq!((s, list["data"].as_array().unwrap().len()), (200, 1));
        let (s, put) = e
            .call(
                "PUT",
                &format!("/routes/r/plugins/{pid}"),
                Some(json!({"name": "request-termination", "config": {"status_code": 503}})),
            )
            .await;
        assert_eq!(
            (s, put["config"]["status_code"].as_i64()),
            (200, Some(503)),
            "{put}"
        );
        assert_eq!(
            put["route"]["id"], route["id"],
            "PUT under a route keeps the scope"
        );
        let (s, _) = e
            .call("DELETE", &format!("/routes/r/plugins/{pid}"), None)
            .await;
        assert_eq!(s, 204);
        let (s, _) = e.call("GET", &format!("/plugins/{pid}"), None).await;
        assert_eq!(s, 404);
        let (s, _) = e.call("GET", "/routes/nope/plugins", None).await;
        assert_eq!(s, 404, "unknown parent");
        // Deleting the consumer takes its plugin.
        let (s, _) = e.call("DELETE", "/consumers/alice", None).await;
        assert_eq!(s, 204);
        let (_, all) = e.call("GET", "/plugins", None).await;
        assert!(all["data"].as_array().unwrap().is_empty(), "{b}: {all}");
    }
}

/// `configuration_hash` from `/status`, once it differs from `not` (within 5 s).
async fn hash_other_than(e: &Env, not: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let (s, v) = e.call("GET", "/status", None).await;
        assert_eq!(s, 200);
        let hash = v["configuration_hash"].as_str().unwrap().to_owned();
        if hash != not {
            return hash;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the hash stayed {not}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_configuration_hash_follows_what_is_served() {
    for store in stores().await {
        let e = env(store).await;
        let b = e.backend;
        let empty = hash_other_than(&e, crate::cache::NO_HASH).await;
        assert_eq!(empty.len(), 32, "{b}");
        let (s, _) = e
            .call(
                "POST",
                "/services",
                Some(json!({"name": "hashed", "url": "http://example.test"})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let with_service = hash_other_than(&e, &empty).await;
        // The same content hashes the same: removing the service gives the first hash back.
        let (s, _) = e.call("DELETE", "/services/hashed", None).await;
        assert_eq!(s, 204, "{b}");
        assert_eq!(hash_other_than(&e, &with_service).await, empty, "{b}");
    }
}

#[tokio::test]
async fn the_nodes_list_says_which_node_lags_or_is_gone() {
    for store in stores().await {
        let e = env(store).await;
        let b = e.backend;
        let now = gatehouse_core::Timestamp::now().unix_seconds();
        let current = e.store.change_version().await.unwrap();
        let node = |host: &str, last_ping: i64, version: i64, error: Option<&str>| {
            gatehouse_store::NodeRecord {
                id: Uuid::new_v4(),
                control_plane_id: e.default_cp,
                hostname: host.into(),
                version: "0.1.0".into(),
                config_hash: "c".repeat(32),
                config_version: version,
                sync_error: error.map(str::to_owned),
                created_at: now - 100,
                last_ping,
            }
        };
        let healthy = node("a-healthy", now, current, None);
        let gone = node("b-gone", now - 3600, current, None);
        let lagging = node(
            "c-lagging",
            now,
            current - 1,
            Some("applying changes failed"),
        );
        for n in [&healthy, &gone, &lagging] {
            e.store.record_node(n).await.unwrap();
        }
        let (s, v) = e
            .call(
                "GET",
                &format!("/v2/control-planes/{}/nodes", e.default_cp),
                None,
            )
            .await;
        assert_eq!(s, 200, "{b}: {v}");
        assert_eq!(v["page"]["total"], 3, "{b}");
        let items = v["items"].as_array().unwrap();
        let by_host = |h: &str| items.iter().find(|i| i["hostname"] == h).unwrap().clone();
        let h = by_host("a-healthy");
        assert_eq!(h["id"], healthy.id.to_string());
        assert_eq!(h["connection_state"]["is_connected"], true);
        assert_eq!(
            (h["lagging"].clone(), h["sync_error"].clone()),
            (json!(false), Value::Null)
        );
        assert_eq!(h["config_hash"], "c".repeat(32));
        assert_eq!(h["last_ping"], now);
        assert_eq!(h["created_at"], now - 100);
        assert_eq!(
            by_host("b-gone")["connection_state"]["is_connected"],
            false,
            "{b}"
        );
        let l = by_host("c-lagging");
        assert_eq!(l["lagging"], true, "{b}");
        assert_eq!(l["sync_error"], "applying changes failed");
        // Another control plane's list is empty; an unknown one is 404.
        let (s, other) = e
            .call("POST", "/v2/control-planes", Some(json!({"name": "other"})))
            .await;
        assert_eq!(s, 201);
        let (s, v) = e
            .call(
                "GET",
                &format!("/v2/control-planes/{}/nodes", other["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!((s, v["items"].clone()), (200, json!([])), "{b}");
        let (s, _) = e
            .call("GET", "/v2/control-planes/not-a-uuid/nodes", None)
            .await;
        assert_eq!(s, 404);
    }
}

#[tokio::test]
async fn changes_are_applied_one_entity_at_a_time_and_end_where_a_full_read_does() {
    for store in stores().await {
        let e = env(store).await;
        let b = e.backend;
        // The set the source holds, and what reading the control plane whole gives.
        let check = |step: &str| {
            let held: Vec<_> = e
                .source
                .entities()
                .values()
                .map(|e| (**e).clone())
                .collect();
            let store = e.store.clone();
            let cp = e.default_cp;
            let step = step.to_owned();
            async move {
                let whole = store.core_entities(cp, None).await.unwrap();
                assert_eq!(held, whole, "{b}: after {step}");
            }
        };
        check("the start").await;
        for (method, uri, body) in [
            (
                "POST",
                "/services",
                json!({"name": "s", "url": "http://127.0.0.1:9/"}),
            ),
            (
                "POST",
                "/services/s/routes",
                json!({"name": "r", "paths": ["/r"]}),
            ),
            (
                "POST",
                "/routes/r/plugins",
                json!({"name": "request-termination",
                                                 "config": {"status_code": 418}}),
            ),
            ("POST", "/consumers", json!({"username": "u"})),
            ("PATCH", "/routes/r", json!({"paths": ["/r2"]})),
        ] {
            let (s, v) = e.call(method, uri, Some(body)).await;
            assert!(s == 200 || s == 201, "{b}: {method} {uri}: {s} {v}");
            check(&format!("{method} {uri}")).await;
        }
        assert_eq!(e.source.entities().len(), 4, "{b}");
        // A full read (a resync) of an unchanged configuration rebuilds nothing: the route's
        // runtime is the very one served before, and the set is the same.
        let before = e.gateway.snapshot().routes[0].clone();
        e.source.load().await.unwrap();
        check("a full read").await;
        assert!(Arc::ptr_eq(&before, &e.gateway.snapshot().routes[0]), "{b}");
        // Changed behind the source's back (as another node's write whose notice was lost),
        // a full read picks the change up.
        let route_id = before.route.id;
        let mut changed = e
            .store
            .get_core_entity(e.default_cp, EntityKind::Route, route_id)
            .await
            .unwrap()
            .unwrap();
        let read = changed.body.clone();
        changed.body["paths"] = json!(["/r3"]);
        e.store.update_core_entity(&changed, &read).await.unwrap();
        e.source.load().await.unwrap();
        let after = e.gateway.snapshot().routes[0].clone();
        assert!(!Arc::ptr_eq(&before, &after), "{b}");
        assert_eq!(after.route.paths, Some(vec!["/r3".to_owned()]), "{b}");
        // Deleting the route takes its plugin along: both leave the set.
        let (s, _) = e.call("DELETE", "/routes/r", None).await;
        assert_eq!(s, 204);
        check("DELETE /routes/r").await;
        assert_eq!(e.source.entities().len(), 2, "{b}");
        assert_eq!(e.gateway.snapshot().routes.len(), 0, "{b}");
    }
}
