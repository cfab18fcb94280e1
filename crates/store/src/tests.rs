//! The storage suite, run against SQLite and PostgreSQL alike.
//!
//! PostgreSQL is reached at `GATEHOUSE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets a private schema, dropped at the end.
//! The suite fails, rather than skips, when PostgreSQL is unreachable.

use super::*;
use gatehouse_core::identity::*;
use gatehouse_core::list::{Filter, FilterOp, SortKey};
use gatehouse_core::validation::Labels;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;

pub(crate) fn postgres_url() -> String {
    std::env::var("GATEHOUSE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

struct Backends {
    stores: Vec<SharedStore>,
    sqlite_pool: sqlx::SqlitePool,
    pg_pool: sqlx::PgPool,
    schema: String,
    dir: std::path::PathBuf,
}

impl Backends {
    async fn new() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("gatehouse-store-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let sqlite = sqlite::SqliteStore::open(&dir.join("test.db"))
            .await
            .unwrap();
        let schema = format!("gh_{id}");
        let base = PgConnectOptions::from_str(&postgres_url()).unwrap();
        let admin = sqlx::PgPool::connect_with(base.clone())
            .await
            .expect("PostgreSQL must be reachable for the storage suite");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        let pg = postgres::PgStore::connect_with(base.options([("search_path", schema.as_str())]))
            .await
            .unwrap();
        Self {
            sqlite_pool: sqlite.pool.clone(),
            pg_pool: pg.pool.clone(),
            stores: vec![Arc::new(sqlite), Arc::new(pg)],
            schema,
            dir,
        }
    }

    async fn cleanup(self) {
        let admin =
            sqlx::PgPool::connect_with(PgConnectOptions::from_str(&postgres_url()).unwrap())
                .await
                .unwrap();
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&admin)
            .await
            .unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn server(name: &str) -> (AuthServer, SigningKey) {
    let now = Timestamp::now();
    let id = Uuid::new_v4();
    let mut labels = Labels::new();
    labels.insert("env".into(), "dev".into());
    (
        AuthServer {
            id,
            name: name.into(),
            description: "d".into(),
            audience: "http://myhttpbin.dev".into(),
            signing_algorithm: SigningAlgorithm::RS256,
            labels,
            trusted_origins: vec![],
            issuer_slug: gatehouse_core::ids::issuer_slug(),
            created_at: now,
            updated_at: now,
        },
        key(id),
    )
}

fn key(auth_server_id: Uuid) -> SigningKey {
    SigningKey {
        id: Uuid::new_v4(),
        auth_server_id,
        algorithm: SigningAlgorithm::RS256,
        encrypted_private_key: vec![1, 2, 3],
        public_jwk: "{}".into(),
        created_at: Timestamp::now(),
        retired_at: None,
    }
}

fn scope(auth_server_id: Uuid, name: &str) -> Scope {
    let now = Timestamp::now();
    Scope {
        id: Uuid::new_v4(),
        auth_server_id,
        name: name.into(),
        description: String::new(),
        default: false,
        include_in_metadata: false,
        enabled: true,
        created_at: now,
        updated_at: now,
    }
}

fn client(auth_server_id: Uuid, name: &str, allow: Vec<Uuid>) -> (Client, ClientSecret) {
    let now = Timestamp::now();
    let id = gatehouse_core::ids::client_id();
    (
        Client {
            id: id.clone(),
            auth_server_id,
            name: name.into(),
            grant_types: vec![GrantType::ClientCredentials],
            response_types: vec![ResponseType::Token],
            redirect_uris: vec![],
            login_uri: None,
            access_token_duration: 3600,
            id_token_duration: 3600,
            allow_all_scopes: false,
            allow_scopes: allow,
            labels: Labels::new(),
            token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
            created_at: now,
            updated_at: now,
        },
        secret(auth_server_id, &id, true),
    )
}

fn secret(auth_server_id: Uuid, client_id: &str, enabled: bool) -> ClientSecret {
    let now = Timestamp::now();
    ClientSecret {
        id: Uuid::new_v4(),
        auth_server_id,
        client_id: client_id.into(),
        hash: "hash".into(),
        enabled,
        created_at: now,
        updated_at: now,
    }
}

fn q() -> ListQuery {
    ListQuery::default()
}

#[tokio::test]
async fn auth_servers_crud_conflicts_and_lists() {
    let b = Backends::new().await;
    for s in &b.stores {
        let (a, k) = server("Appointments Dev");
        s.create_auth_server(&a, &k).await.unwrap();
        assert_eq!(
            s.get_auth_server(a.id).await.unwrap().unwrap(),
            a,
            "{}",
            s.backend()
        );
        let (dup, k2) = server("Appointments Dev");
        assert!(matches!(
            s.create_auth_server(&dup, &k2).await,
            Err(StoreError::Conflict)
        ));
        let (other, k3) = server("Payments");
        s.create_auth_server(&other, &k3).await.unwrap();

        let mut query = q();
        query.filters.push(Filter {
            field: "name".into(),
            op: FilterOp::Contains,
            value: "point".into(),
        });
        let page = s.list_auth_servers(&query).await.unwrap();
        assert_eq!(page.total, 1);
        assert_eq!(page.items[0].name, "Appointments Dev");
        // contains is case-sensitive in both backends
        query.filters[0].value = "POINT".into();
        assert_eq!(s.list_auth_servers(&query).await.unwrap().total, 0);

        let mut query = q();
        query.filters.push(Filter {
            field: "labels".into(),
            op: FilterOp::Eq,
            value: "env:dev".into(),
        });
        assert_eq!(s.list_auth_servers(&query).await.unwrap().total, 2);
        query.filters[0].value = "env:prod".into();
        assert_eq!(s.list_auth_servers(&query).await.unwrap().total, 0);

        let mut query = q();
        query.sort.push(SortKey {
            field: "name".into(),
            desc: true,
        });
        query.page_size = 1;
        let page = s.list_auth_servers(&query).await.unwrap();
        assert_eq!((page.total, page.items[0].name.as_str()), (2, "Payments"));
        query.page_number = 2;
        assert_eq!(
            s.list_auth_servers(&query).await.unwrap().items[0].name,
            "Appointments Dev"
        );

        let mut renamed = other.clone();
        renamed.name = "Appointments Dev".into();
        assert!(matches!(
            s.update_auth_server(&renamed, None, other.updated_at).await,
            Err(StoreError::Conflict)
        ));
        renamed.name = "Billing".into();
        renamed.updated_at = other.updated_at.plus_seconds(1);
        let k4 = key(other.id);
        s.update_auth_server(&renamed, Some(&k4), other.updated_at)
            .await
            .unwrap();
        // A write based on the old read loses, and writes nothing (no third key either).
        let mut late = other.clone();
        late.name = "Late".into();
        assert!(matches!(
            s.update_auth_server(&late, Some(&key(other.id)), other.updated_at)
                .await,
            Err(StoreError::Stale)
        ));
        assert_eq!(
            s.get_auth_server(other.id).await.unwrap().unwrap().name,
            "Billing"
        );
        let keys = s.signing_keys(other.id).await.unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.iter().filter(|k| k.retired_at.is_none()).count() == 1);
        assert_eq!(
            keys.iter().find(|k| k.retired_at.is_none()).unwrap().id,
            k4.id
        );

        // delete without force refuses while children exist
        s.create_scope(&scope(a.id, "my-scope")).await.unwrap();
        assert!(matches!(
            s.delete_auth_server(a.id, false).await,
            Err(StoreError::HasChildren)
        ));
        s.delete_auth_server(a.id, true).await.unwrap();
        assert!(s.get_auth_server(a.id).await.unwrap().is_none());
        assert!(s.all_scopes(a.id).await.unwrap().is_empty());
        assert!(matches!(
            s.delete_auth_server(a.id, true).await,
            Err(StoreError::NotFound)
        ));
        s.delete_auth_server(other.id, false).await.unwrap();
    }
    b.cleanup().await;
}

#[tokio::test]
async fn deleting_a_scope_removes_it_from_clients_and_claims() {
    let b = Backends::new().await;
    for s in &b.stores {
        let (a, k) = server("A");
        s.create_auth_server(&a, &k).await.unwrap();
        let sc = scope(a.id, "my-scope");
        let keep = scope(a.id, "other");
        s.create_scope(&sc).await.unwrap();
        s.create_scope(&keep).await.unwrap();
        assert!(matches!(
            s.create_scope(&scope(a.id, "my-scope")).await,
            Err(StoreError::Conflict)
        ));
        let (c, sec) = client(a.id, "Client", vec![sc.id, keep.id]);
        s.create_client(&c, &sec).await.unwrap();
        let now = Timestamp::now();
        let claim = Claim {
            id: Uuid::new_v4(),
            auth_server_id: a.id,
            name: "test-claim".into(),
            value: "test".into(),
            include_in_token: true,
            include_in_all_scopes: false,
            include_in_scopes: vec![sc.id],
            enabled: true,
            created_at: now,
            updated_at: now,
        };
        s.create_claim(&claim).await.unwrap();
        s.delete_scope(a.id, sc.id).await.unwrap();
        let c2 = s.get_client(a.id, &c.id).await.unwrap().unwrap();
        assert_eq!(c2.allow_scopes, vec![keep.id], "{}", s.backend());
        let claim2 = s.get_claim(a.id, claim.id).await.unwrap().unwrap();
        assert!(claim2.include_in_scopes.is_empty());
        assert!(matches!(
            s.delete_scope(a.id, sc.id).await,
            Err(StoreError::NotFound)
        ));
    }
    b.cleanup().await;
}

#[tokio::test]
async fn client_secrets_keep_at_most_two_enabled() {
    let b = Backends::new().await;
    for s in &b.stores {
        let (a, k) = server("A");
        s.create_auth_server(&a, &k).await.unwrap();
        let (c, first) = client(a.id, "Client", vec![]);
        s.create_client(&c, &first).await.unwrap();
        assert!(matches!(
            s.create_client(&c, &secret(a.id, &c.id, true)).await,
            Err(StoreError::Conflict)
        ));
        let second = secret(a.id, &c.id, true);
        s.create_secret(&second, 2).await.unwrap();
        let third = secret(a.id, &c.id, true);
        assert!(matches!(
            s.create_secret(&third, 2).await,
            Err(StoreError::TooManySecrets)
        ));
        let disabled = secret(a.id, &c.id, false);
        s.create_secret(&disabled, 2).await.unwrap();
        assert!(matches!(
            s.set_secret_enabled(a.id, &c.id, disabled.id, true, 2)
                .await,
            Err(StoreError::TooManySecrets)
        ));
        let off = s
            .set_secret_enabled(a.id, &c.id, first.id, false, 2)
            .await
            .unwrap();
        assert!(!off.enabled);
        s.set_secret_enabled(a.id, &c.id, disabled.id, true, 2)
            .await
            .unwrap();
        let mut query = q();
        query.filters.push(Filter {
            field: "enabled".into(),
            op: FilterOp::Eq,
            value: "true".into(),
        });
        assert_eq!(s.list_secrets(a.id, &c.id, &query).await.unwrap().total, 2);
        s.delete_secret(a.id, &c.id, first.id).await.unwrap();
        assert!(matches!(
            s.delete_secret(a.id, &c.id, first.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            s.create_secret(&secret(a.id, "nobody", true), 2).await,
            Err(StoreError::NotFound)
        ));
        // PUT replaces the secrets
        let replacement = secret(a.id, &c.id, true);
        assert!(!s.upsert_client(&c, &replacement).await.unwrap());
        let all = s.list_secrets(a.id, &c.id, &q()).await.unwrap();
        assert_eq!(
            all.items.iter().map(|x| x.id).collect::<Vec<_>>(),
            vec![replacement.id]
        );
        let (fresh, fresh_secret) = client(a.id, "Fresh", vec![]);
        assert!(s.upsert_client(&fresh, &fresh_secret).await.unwrap());
    }
    b.cleanup().await;
}

#[tokio::test]
async fn tokens_are_recorded_listed_and_revoked() {
    let b = Backends::new().await;
    for s in &b.stores {
        let (a, k) = server("A");
        s.create_auth_server(&a, &k).await.unwrap();
        let (c, sec) = client(a.id, "Client", vec![]);
        s.create_client(&c, &sec).await.unwrap();
        let now = Timestamp::now();
        let tokens: Vec<IssuedToken> = (0..1200)
            .map(|i| IssuedToken {
                id: Uuid::new_v4(),
                auth_server_id: a.id,
                client_id: c.id.clone(),
                granted_scope_names: vec!["my-scope".into()],
                created_at: Timestamp(now.0 + i),
                expires_at: now.plus_seconds(if i == 0 { -10 } else { 3600 }),
                revoked_at: None,
            })
            .collect();
        s.insert_tokens(&tokens).await.unwrap();
        let mut query = q();
        query.page_size = 1000;
        assert_eq!(
            s.list_tokens(a.id, &c.id, &query).await.unwrap().total,
            1200
        );
        let t = &tokens[5];
        let revoked = s.revoke_token(a.id, t.id, now).await.unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(now));
        assert_eq!(
            s.list_tokens(a.id, &c.id, &query).await.unwrap().total,
            1199
        );
        assert_eq!(
            s.revoked_tokens(now).await.unwrap(),
            vec![(t.id, t.expires_at)]
        );
        assert!(
            s.revoke_token(a.id, Uuid::new_v4(), now)
                .await
                .unwrap()
                .is_none()
        );
        let all = s.revoke_client_tokens(a.id, &c.id, now).await.unwrap();
        assert_eq!(all.len(), 1199);
        // the expired one does not count as a live revocation
        assert_eq!(s.revoked_tokens(now).await.unwrap().len(), 1199);
        assert_eq!(s.purge_expired_tokens(now).await.unwrap(), 1);
        // a token for a missing client is refused
        let mut orphan = tokens[1].clone();
        orphan.id = Uuid::new_v4();
        orphan.client_id = "missing".into();
        assert!(s.insert_tokens(&[orphan]).await.is_err());
        s.delete_client(a.id, &c.id).await.unwrap();
        assert!(s.get_token(a.id, t.id).await.unwrap().is_none());
    }
    b.cleanup().await;
}

#[tokio::test]
async fn settings_are_set_once_or_replaced() {
    let b = Backends::new().await;
    for s in &b.stores {
        assert!(s.put_setting_if_absent("admin_token", "h1").await.unwrap());
        assert!(!s.put_setting_if_absent("admin_token", "h2").await.unwrap());
        assert_eq!(
            s.get_setting("admin_token").await.unwrap().as_deref(),
            Some("h1")
        );
        s.put_setting("admin_token", "h3").await.unwrap();
        assert_eq!(
            s.get_setting("admin_token").await.unwrap().as_deref(),
            Some("h3")
        );
        assert_eq!(s.get_setting("nope").await.unwrap(), None);
    }
    b.cleanup().await;
}

fn control_plane(name: &str) -> gatehouse_core::gateway::ControlPlane {
    let now = Timestamp::now();
    gatehouse_core::gateway::ControlPlane {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        description: String::new(),
        labels: [("env".to_owned(), "dev".to_owned())].into(),
        cluster_type: "CLUSTER_TYPE_CONTROL_PLANE".into(),
        auth_type: "pinned_client_certs".into(),
        cloud_gateway: false,
        proxy_urls: vec![],
        created_at: now,
        updated_at: now,
    }
}

fn entity(
    cp: Uuid,
    kind: gatehouse_core::gateway::EntityKind,
    key: Option<&str>,
) -> gatehouse_core::gateway::CoreEntity {
    let id = Uuid::new_v4();
    gatehouse_core::gateway::CoreEntity {
        control_plane_id: cp,
        kind,
        id,
        endpoint_key: key.map(str::to_owned),
        alt_key: None,
        service_id: None,
        route_id: None,
        consumer_id: None,
        certificate_id: None,
        created_at: 1,
        body: serde_json::json!({"id": id, "name": key}),
    }
}

#[tokio::test]
async fn control_planes_crud_filters_and_cascade() {
    use gatehouse_core::gateway::EntityKind as K;
    let b = Backends::new().await;
    for s in &b.stores {
        let cp = control_plane("quickstart");
        s.create_control_plane(&cp).await.unwrap();
        assert!(matches!(
            s.create_control_plane(&control_plane("quickstart")).await,
            Err(StoreError::Conflict)
        ));
        s.create_control_plane(&control_plane("default"))
            .await
            .unwrap();
        assert_eq!(s.get_control_plane(cp.id).await.unwrap().unwrap(), cp);
        assert_eq!(
            s.control_plane_by_name("quickstart")
                .await
                .unwrap()
                .unwrap()
                .id,
            cp.id
        );
        let q = ListQuery {
            filters: vec![Filter {
                field: "name".into(),
                op: FilterOp::Contains,
                value: "quick".into(),
            }],
            ..ListQuery::default()
        };
        let page = s.list_control_planes(&q).await.unwrap();
        assert_eq!(
            (page.total, page.items[0].id),
            (1, cp.id),
            "{}",
            s.backend()
        );
        let mut changed = cp.clone();
        changed.description = "changed".into();
        changed.updated_at = cp.updated_at.plus_seconds(1);
        s.update_control_plane(&changed, cp.updated_at)
            .await
            .unwrap();
        assert!(matches!(
            s.update_control_plane(&changed, cp.updated_at).await,
            Err(StoreError::Stale)
        ));
        let mut gone = changed.clone();
        gone.id = Uuid::new_v4();
        assert!(matches!(
            s.update_control_plane(&gone, cp.updated_at).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(
            s.get_control_plane(cp.id)
                .await
                .unwrap()
                .unwrap()
                .description,
            "changed"
        );

        let svc = entity(cp.id, K::Service, Some("svc"));
        s.insert_core_entity(&svc).await.unwrap();
        s.delete_control_plane(cp.id).await.unwrap();
        assert!(s.get_control_plane(cp.id).await.unwrap().is_none());
        assert!(s.core_entities(cp.id, None).await.unwrap().is_empty());
        assert!(matches!(
            s.delete_control_plane(cp.id).await,
            Err(StoreError::NotFound)
        ));
    }
    b.cleanup().await;
}

#[tokio::test]
async fn core_entities_references_uniques_and_cascades() {
    use gatehouse_core::gateway::EntityKind as K;
    let b = Backends::new().await;
    for s in &b.stores {
        let cp = control_plane("default");
        let other = control_plane("other");
        s.create_control_plane(&cp).await.unwrap();
        s.create_control_plane(&other).await.unwrap();
        let svc = entity(cp.id, K::Service, Some("svc"));
        s.insert_core_entity(&svc).await.unwrap();
        // Same name in another control plane is fine; in the same one it is not.
        s.insert_core_entity(&entity(other.id, K::Service, Some("svc")))
            .await
            .unwrap();
        assert!(matches!(
            s.insert_core_entity(&entity(cp.id, K::Service, Some("svc")))
                .await,
            Err(StoreError::Duplicate("endpoint_key"))
        ));
        // Two unnamed entities do not collide.
        s.insert_core_entity(&entity(cp.id, K::Service, None))
            .await
            .unwrap();
        s.insert_core_entity(&entity(cp.id, K::Service, None))
            .await
            .unwrap();

        let mut route = entity(cp.id, K::Route, Some("r"));
        route.service_id = Some(Uuid::new_v4());
        assert!(matches!(
            s.insert_core_entity(&route).await,
            Err(StoreError::MissingReference(K::Service, _))
        ));
        route.service_id = Some(svc.id);
        s.insert_core_entity(&route).await.unwrap();

        let mut consumer = entity(cp.id, K::Consumer, Some("alice"));
        consumer.alt_key = Some("client-1".into());
        s.insert_core_entity(&consumer).await.unwrap();
        let mut clash = entity(cp.id, K::Consumer, Some("bob"));
        clash.alt_key = Some("client-1".into());
        assert!(matches!(
            s.insert_core_entity(&clash).await,
            Err(StoreError::Duplicate("alt_key"))
        ));
        assert_eq!(
            s.core_entity_by_alt_key(cp.id, K::Consumer, "client-1")
                .await
                .unwrap()
                .unwrap()
                .id,
            consumer.id
        );
        assert_eq!(
            s.core_entity_by_key(cp.id, K::Consumer, "alice")
                .await
                .unwrap()
                .unwrap()
                .id,
            consumer.id
        );

        let mut plugin = entity(cp.id, K::Plugin, None);
        plugin.route_id = Some(route.id);
        plugin.alt_key = Some("p:r".into());
        s.insert_core_entity(&plugin).await.unwrap();
        let mut consumer_plugin = entity(cp.id, K::Plugin, None);
        consumer_plugin.consumer_id = Some(consumer.id);
        consumer_plugin.alt_key = Some("p:c".into());
        s.insert_core_entity(&consumer_plugin).await.unwrap();

        // Update keeps its own unique values and checks the others.
        let mut renamed = route.clone();
        renamed.body = serde_json::json!({"changed": true});
        s.update_core_entity(&renamed, &route.body).await.unwrap();
        assert_eq!(
            s.get_core_entity(cp.id, K::Route, route.id)
                .await
                .unwrap()
                .unwrap()
                .body,
            serde_json::json!({"changed": true})
        );
        // A write based on what was read before that update loses, and changes nothing.
        let mut late = route.clone();
        late.body = serde_json::json!({"late": true});
        assert!(
            matches!(
                s.update_core_entity(&late, &route.body).await,
                Err(StoreError::Stale)
            ),
            "{}",
            s.backend()
        );
        assert_eq!(
            s.get_core_entity(cp.id, K::Route, route.id)
                .await
                .unwrap()
                .unwrap()
                .body,
            serde_json::json!({"changed": true})
        );
        let mut absent = route.clone();
        absent.id = Uuid::new_v4();
        absent.endpoint_key = None;
        assert!(matches!(
            s.update_core_entity(&absent, &route.body).await,
            Err(StoreError::NotFound)
        ));
        // Renaming a service to a name another one has: the unique index names the column.
        let other = entity(cp.id, K::Service, Some("other"));
        s.insert_core_entity(&other).await.unwrap();
        let mut taken = other.clone();
        taken.endpoint_key = Some("svc".into());
        assert!(matches!(
            s.update_core_entity(&taken, &other.body).await,
            Err(StoreError::Duplicate("endpoint_key"))
        ));
        s.delete_core_entity(cp.id, K::Service, other.id)
            .await
            .unwrap();

        // A service with routes cannot go; a route takes its plugins along.
        assert!(matches!(
            s.delete_core_entity(cp.id, K::Service, svc.id).await,
            Err(StoreError::HasChildren)
        ));
        s.delete_core_entity(cp.id, K::Route, route.id)
            .await
            .unwrap();
        assert!(
            s.get_core_entity(cp.id, K::Plugin, plugin.id)
                .await
                .unwrap()
                .is_none()
        );
        s.delete_core_entity(cp.id, K::Service, svc.id)
            .await
            .unwrap();
        s.delete_core_entity(cp.id, K::Consumer, consumer.id)
            .await
            .unwrap();
        assert!(
            s.get_core_entity(cp.id, K::Plugin, consumer_plugin.id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            s.delete_core_entity(cp.id, K::Consumer, consumer.id).await,
            Err(StoreError::NotFound)
        ));
        let services = s.core_entities(cp.id, Some(K::Service)).await.unwrap();
        assert_eq!(services.len(), 2, "{}", s.backend());
        assert!(
            services
                .windows(2)
                .all(|w| w[0].id.to_string() < w[1].id.to_string())
        );
    }
    b.cleanup().await;
}

#[tokio::test]
async fn every_change_is_recorded_in_order_and_issuing_tokens_is_not() {
    use crate::feed::{ChangeKind as C, ChangeRead};
    use gatehouse_core::gateway::EntityKind as K;
    let b = Backends::new().await;
    for s in &b.stores {
        let start = s.change_version().await.unwrap();
        let (a, k) = server("A");
        s.create_auth_server(&a, &k).await.unwrap();
        let (c, sec) = client(a.id, "Client", vec![]);
        s.create_client(&c, &sec).await.unwrap();
        let now = Timestamp::now();
        let tokens: Vec<IssuedToken> = (0..3)
            .map(|_| IssuedToken {
                id: Uuid::new_v4(),
                auth_server_id: a.id,
                client_id: c.id.clone(),
                granted_scope_names: vec![],
                created_at: now,
                expires_at: now.plus_seconds(600),
                revoked_at: None,
            })
            .collect();
        s.insert_tokens(&tokens).await.unwrap();
        s.revoke_token(a.id, tokens[1].id, now).await.unwrap();
        // Revoking it again changes nothing.
        s.revoke_token(a.id, tokens[1].id, now).await.unwrap();
        let cp = control_plane("feed");
        s.create_control_plane(&cp).await.unwrap();
        let svc = entity(cp.id, K::Service, Some("svc"));
        s.insert_core_entity(&svc).await.unwrap();
        s.delete_client(a.id, &c.id).await.unwrap();

        let ChangeRead::Changes(changes) = s.changes_since(start, 100).await.unwrap() else {
            panic!("unreadable changes on {}", s.backend());
        };
        let seen: Vec<(C, Uuid)> = changes.iter().map(|c| (c.kind.clone(), c.scope)).collect();
        // The client's delete cascades to its secret (and its tokens, which are no change).
        let secret_then_client = if seen[7].0 == C::Secret {
            [(C::Secret, a.id), (C::Client, a.id)]
        } else {
            [(C::Client, a.id), (C::Secret, a.id)]
        };
        let mut expected = vec![
            (C::AuthServer, a.id),
            (C::Key, a.id),
            (C::Client, a.id),
            (C::Secret, a.id),
            (C::Revocation, a.id),
            (C::ControlPlane, cp.id),
            (C::CoreEntity, cp.id),
        ];
        expected.extend(secret_then_client);
        assert_eq!(seen, expected, "{}", s.backend());
        let versions: Vec<i64> = changes.iter().map(|c| c.version).collect();
        let contiguous: Vec<i64> = (start + 1..=start + 9).collect();
        assert_eq!(versions, contiguous, "{}", s.backend());
        assert_eq!(s.change_version().await.unwrap(), start + 9);
        let revocation = &changes[4];
        assert_eq!(revocation.revoked_jti(), Some(tokens[1].id));
        assert_eq!(revocation.expires_at, Some(tokens[1].expires_at));
        assert_eq!(changes[6].entity_id, format!("services:{}", svc.id));

        // Reading from the middle, and up to date.
        let ChangeRead::Changes(tail) = s.changes_since(start + 7, 100).await.unwrap() else {
            panic!()
        };
        assert_eq!(tail.len(), 2);
        let ChangeRead::Changes(none) = s.changes_since(start + 9, 100).await.unwrap() else {
            panic!()
        };
        assert!(none.is_empty());
        // Pruning drops the rows older than the cutoff, never newer ones, never the version.
        assert_eq!(
            s.prune_changes(now.plus_seconds(-crate::feed::RETENTION_SECS))
                .await
                .unwrap(),
            0,
            "{}: rows made now are kept for the retention period",
            s.backend()
        );
        assert_eq!(s.prune_changes(now.plus_seconds(60)).await.unwrap(), 9);
        assert_eq!(s.change_version().await.unwrap(), start + 9);
    }
    b.cleanup().await;
}

#[tokio::test]
async fn postgres_announces_each_committed_change() {
    let b = Backends::new().await;
    let pg = &b.stores[1];
    let mut listener = pg.listen().await.unwrap().expect("PostgreSQL listens");
    assert!(
        b.stores[0].listen().await.unwrap().is_none(),
        "SQLite does not"
    );
    let (a, k) = server("Announced");
    pg.create_auth_server(&a, &k).await.unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), listener.next())
        .await
        .expect("a notification within 5 s")
        .unwrap();
    assert!(got);
    b.cleanup().await;
}

/// A sink that records what the feed hands it.
#[derive(Default)]
struct Recorder {
    applied: std::sync::Mutex<Vec<i64>>,
    resyncs: std::sync::atomic::AtomicUsize,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl crate::feed::ChangeSink for Recorder {
    async fn apply(&self, changes: &[crate::feed::Change]) -> Result<(), crate::feed::SinkError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.applied
            .lock()
            .unwrap()
            .extend(changes.iter().map(|c| c.version));
        Ok(())
    }

    async fn resync(&self) -> Result<(), crate::feed::SinkError> {
        self.resyncs
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_bulk_write_is_one_transaction_and_reaches_the_feed_in_one_apply() {
    use crate::CoreWrite;
    use gatehouse_core::gateway::EntityKind as K;
    use std::sync::atomic::Ordering::SeqCst;
    let b = Backends::new().await;
    for s in &b.stores {
        let cp = control_plane("bulk");
        s.create_control_plane(&cp).await.unwrap();
        let start = s.change_version().await.unwrap();
        let sink = Arc::new(Recorder::default());
        let feed = crate::feed::Feed::new(s.clone(), vec![sink.clone()], start);
        // More than one multi-row statement and more than one page of the feed; routes
        // refer to services written earlier in the same batch.
        let services: Vec<_> = (0..1200)
            .map(|i| entity(cp.id, K::Service, Some(&format!("s{i}"))))
            .collect();
        let routes: Vec<_> = services
            .iter()
            .enumerate()
            .map(|(i, svc)| {
                let mut r = entity(cp.id, K::Route, Some(&format!("r{i}")));
                r.service_id = Some(svc.id);
                r
            })
            .collect();
        // A name taken twice, deep in a run of inserts: the error names that write, and
        // nothing of the batch is kept.
        let mut clash = services.clone();
        clash[700].endpoint_key = Some("s3".into());
        let writes: Vec<CoreWrite<'_>> = clash.iter().map(CoreWrite::Insert).collect();
        let err = s.write_core_entities(&writes).await.unwrap_err();
        assert_eq!(err.0, 700, "{}", s.backend());
        assert!(
            matches!(err.1, StoreError::Duplicate("endpoint_key")),
            "{:?}",
            err.1
        );
        assert!(s.core_entities(cp.id, None).await.unwrap().is_empty());
        // A route whose service is neither in the batch nor stored is refused by index.
        let mut orphan = routes.clone();
        orphan[5].service_id = Some(Uuid::new_v4());
        let writes: Vec<CoreWrite<'_>> = services
            .iter()
            .chain(&orphan)
            .map(CoreWrite::Insert)
            .collect();
        let err = s.write_core_entities(&writes).await.unwrap_err();
        assert_eq!(err.0, 1205, "{}", s.backend());
        assert!(matches!(err.1, StoreError::MissingReference(K::Service, _)));

        let writes: Vec<CoreWrite<'_>> = services
            .iter()
            .chain(&routes)
            .map(CoreWrite::Insert)
            .collect();
        s.write_core_entities(&writes).await.unwrap();
        assert_eq!(s.core_entities(cp.id, None).await.unwrap().len(), 2400);
        feed.catch_up().await.unwrap();
        assert_eq!(sink.calls.load(SeqCst), 1, "one apply for the burst");
        // The control plane's own change (before `start`) is not replayed: 2,400 entities.
        assert_eq!(sink.applied.lock().unwrap().len(), 2400, "{}", s.backend());
        assert_eq!(feed.applied(), start + 2400);
    }
    b.cleanup().await;
}

#[tokio::test]
async fn the_feed_applies_in_order_and_rebuilds_when_it_cannot_replay() {
    use crate::feed::Feed;
    use std::sync::atomic::Ordering::SeqCst;
    let b = Backends::new().await;
    for (i, s) in b.stores.iter().enumerate() {
        let start = s.change_version().await.unwrap();
        let sink = Arc::new(Recorder::default());
        let feed = Feed::new(s.clone(), vec![sink.clone()], start);
        s.create_control_plane(&control_plane("one")).await.unwrap();
        s.create_control_plane(&control_plane("two")).await.unwrap();
        feed.catch_up().await.unwrap();
        assert_eq!(*sink.applied.lock().unwrap(), vec![start + 1, start + 2]);
        assert_eq!(feed.applied(), start + 2);
        assert_eq!(feed.health().applied_version, start + 2);
        // Nothing new: nothing applied, no rebuild.
        feed.catch_up().await.unwrap();
        assert_eq!(sink.applied.lock().unwrap().len(), 2);
        assert_eq!(sink.resyncs.load(SeqCst), 0);

        // A kind this build does not know (a newer node wrote it): rebuild, and move past it.
        sqlx_exec(
            &b,
            i,
            "UPDATE change_version SET version = version + 1 WHERE id = 1",
        )
        .await;
        sqlx_exec(
            &b,
            i,
            &format!(
                "INSERT INTO changes (version, kind, scope_id, entity_id, created_at) \
                 VALUES ({}, 'from_the_future', '{}', 'x', 0)",
                start + 3,
                Uuid::new_v4()
            ),
        )
        .await;
        feed.catch_up().await.unwrap();
        assert_eq!(sink.resyncs.load(SeqCst), 1, "{}", s.backend());
        assert_eq!(feed.applied(), start + 3);

        // Rows pruned while this node was away: rebuild rather than replay with a hole.
        let behind = Feed::new(s.clone(), vec![sink.clone()], start);
        s.create_control_plane(&control_plane("three"))
            .await
            .unwrap();
        s.prune_changes(Timestamp::now().plus_seconds(60))
            .await
            .unwrap();
        s.create_control_plane(&control_plane("four"))
            .await
            .unwrap();
        behind.catch_up().await.unwrap();
        assert_eq!(sink.resyncs.load(SeqCst), 2, "{}", s.backend());
        assert_eq!(behind.applied(), start + 5);
    }
    b.cleanup().await;
}

#[tokio::test]
async fn the_feed_finds_changes_on_its_timer_without_being_told() {
    let b = Backends::new().await;
    // SQLite: no notifications at all, so only the timer can find a write made behind the
    // feed's back (another process on the file, a restore).
    let s = &b.stores[0];
    let sink = Arc::new(Recorder::default());
    let feed = crate::feed::Feed::new(
        s.clone(),
        vec![sink.clone()],
        s.change_version().await.unwrap(),
    );
    feed.spawn(std::time::Duration::from_millis(100));
    s.create_control_plane(&control_plane("late"))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while sink.applied.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the timer never caught up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    b.cleanup().await;
}

/// Runs raw SQL on store `i` of `b` (for writing what this build never would).
async fn sqlx_exec(b: &Backends, i: usize, sql: &str) {
    match i {
        0 => sqlx::query(sql).execute(&b.sqlite_pool).await.map(drop),
        _ => sqlx::query(sql).execute(&b.pg_pool).await.map(drop),
    }
    .unwrap();
}

#[tokio::test]
async fn nodes_report_themselves_per_control_plane() {
    let b = Backends::new().await;
    for s in &b.stores {
        let (cp, other) = (Uuid::new_v4(), Uuid::new_v4());
        let node = |id: Uuid, cp: Uuid, host: &str, at: i64| NodeRecord {
            id,
            control_plane_id: cp,
            hostname: host.into(),
            version: "1.0.0".into(),
            config_hash: "a".repeat(32),
            config_version: 7,
            sync_error: None,
            created_at: at,
            last_ping: at,
        };
        let (one, two, three) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        s.record_node(&node(one, cp, "b-host", 100)).await.unwrap();
        s.record_node(&node(two, cp, "a-host", 100)).await.unwrap();
        s.record_node(&node(three, other, "c-host", 100))
            .await
            .unwrap();
        // A later report updates the row and keeps its first report's time.
        let mut later = node(one, cp, "b-host", 500);
        later.config_hash = "b".repeat(32);
        later.config_version = 9;
        later.sync_error = Some("database unavailable".into());
        s.record_node(&later).await.unwrap();
        let listed = s.nodes(cp).await.unwrap();
        assert_eq!(
            listed.iter().map(|n| n.id).collect::<Vec<_>>(),
            vec![two, one],
            "{}: this control plane's, by hostname",
            s.backend()
        );
        assert_eq!(
            listed[1],
            NodeRecord {
                created_at: 100,
                ..later
            }
        );
        // Nodes not heard from since the cutoff are forgotten.
        assert_eq!(
            s.prune_nodes(Timestamp::from_unix_seconds(200))
                .await
                .unwrap(),
            2
        );
        assert_eq!(s.nodes(cp).await.unwrap().len(), 1);
        assert!(s.nodes(other).await.unwrap().is_empty());
    }
    b.cleanup().await;
}
