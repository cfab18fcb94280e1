//! End to end: the identity half of the seed walkthrough against the real `gatehouse serve`
//! binary on ephemeral ports, with the seed's own request bodies, on SQLite and PostgreSQL.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use serde_json::{Value, json};

mod common;

use common::{ADMIN_TOKEN, Node};

async fn post_json(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = http
        .post(url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn token(http: &reqwest::Client, issuer: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = http
        .post(format!("{issuer}/oauth/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn introspect(
    http: &reqwest::Client,
    issuer: &str,
    id: &str,
    secret: &str,
    token: &str,
) -> Value {
    let r = http
        .post(format!("{issuer}/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn walkthrough(database: Option<&str>) {
    let node = Node::start("serve", database, &[]);
    let http = common::client();
    let admin = node.admin.clone();
    node.ready(&http).await;

    // The admin API requires the token.
    let r = http
        .get(format!("{admin}/v1/auth-servers"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // 1. Auth server (seed body).
    let (s, server) = post_json(
        &http,
        format!("{admin}/v1/auth-servers"),
        json!({
            "name": "Appointments Dev", "audience": "http://myhttpbin.dev",
            "description": "Auth server for the Appointment dev environment"
        }),
    )
    .await;
    assert_eq!(s, 201, "{server}");
    let as_id = server["id"].as_str().unwrap().to_owned();
    let issuer = server["issuer"].as_str().unwrap().to_owned();
    let slug = issuer.rsplit('/').next().unwrap();
    assert_eq!(slug.len(), 16);
    assert!(
        slug.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    let (s, _) = post_json(
        &http,
        format!("{admin}/v1/auth-servers"),
        json!({"name": "Appointments Dev", "audience": "x"}),
    )
    .await;
    assert_eq!(s, 409);

    // 2. Scope, claim, client (seed bodies).
    let (s, scope) = post_json(
        &http,
        format!("{admin}/v1/auth-servers/{as_id}/scopes"),
        json!({
            "name": "my-scope", "description": "Scope to test Kong Identity", "default": false,
            "include_in_metadata": false, "enabled": true
        }),
    )
    .await;
    assert_eq!(s, 201, "{scope}");
    let scope_id = scope["id"].as_str().unwrap().to_owned();
    let (s, claim) = post_json(&http, format!("{admin}/v1/auth-servers/{as_id}/claims"), json!({
        "name": "test-claim", "value": "test", "include_in_token": true, "include_in_all_scopes": false,
        "include_in_scopes": [scope_id], "enabled": true
    })).await;
    assert_eq!(s, 201, "{claim}");
    let (s, client) = post_json(
        &http,
        format!("{admin}/v1/auth-servers/{as_id}/clients"),
        json!({
            "name": "Client", "grant_types": ["client_credentials"], "allow_all_scopes": false,
            "allow_scopes": [scope_id], "access_token_duration": 3600, "id_token_duration": 3600,
            "response_types": ["id_token", "token"]
        }),
    )
    .await;
    assert_eq!(s, 201, "{client}");
    let client_id = client["id"].as_str().unwrap().to_owned();
    let secret = client["client_secret"].as_str().unwrap().to_owned();
    // The secret is shown once only.
    let r: Value = http
        .get(format!(
            "{admin}/v1/auth-servers/{as_id}/clients/{client_id}"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r.get("client_secret").is_none());

    // 3. The token (seed form), then the JWT checked with an independent JOSE library.
    let (s, t) = token(
        &http,
        &issuer,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("scope", "my-scope"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 3600);
    assert_eq!(t["scope"], "my-scope");
    let access = t["access_token"].as_str().unwrap().to_owned();
    let jwks: jsonwebtoken::jwk::JwkSet = http
        .get(format!("{issuer}/.well-known/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(&access).unwrap();
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid is published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["http://myhttpbin.dev"]);
    validation.set_issuer(&[issuer.as_str()]);
    let decoded = jsonwebtoken::decode::<Value>(
        &access,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap();
    let c = decoded.claims;
    assert_eq!(c["aud"], json!(["http://myhttpbin.dev"]));
    assert_eq!(c["client_id"], client_id.as_str());
    assert_eq!(c["sub"], client_id.as_str());
    assert_eq!(c["scope"], "my-scope");
    assert_eq!(c["test-claim"], "test");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(c["nbf"], c["iat"]);

    // Basic client auth works too; without the scope the scoped claim is absent.
    let r = http
        .post(format!("{issuer}/oauth/token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let plain: Value = r.json().await.unwrap();
    assert!(plain.get("scope").is_none());
    let payload = plain["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert!(payload.get("test-claim").is_none());
    assert_eq!(payload["scope"], "");

    // Token endpoint errors.
    let (s, e) = token(
        &http,
        &issuer,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    let (s, e) = token(
        &http,
        &issuer,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("scope", "nope"),
        ],
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_scope")));
    let (s, e) = token(
        &http,
        &issuer,
        &[
            ("grant_type", "password"),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let r = http
        .post(format!("{issuer}/oauth/token"))
        .header("authorization", "Basic !!!")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // 4. Introspection: active with the seed's forwarded members; garbage is inactive.
    let i = introspect(&http, &issuer, &client_id, &secret, &access).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["client_id"], client_id.as_str());
    assert_eq!(i["scope"], "my-scope");
    assert_eq!(i["test-claim"], "test");
    assert_eq!(i["token_type"], "Bearer");
    for k in ["exp", "iat", "nbf", "sub", "aud", "iss", "jti"] {
        assert!(i.get(k).is_some(), "{k}");
    }
    assert_eq!(
        introspect(&http, &issuer, &client_id, &secret, "garbage.token.here").await,
        json!({"active": false})
    );
    let r = http
        .post(format!("{issuer}/introspect"))
        .basic_auth(&client_id, Some("wrong"))
        .form(&[("token", &access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A token of another auth server is not active here.
    let (_, other) = post_json(
        &http,
        format!("{admin}/v1/auth-servers"),
        json!({"name": "Other", "audience": "other"}),
    )
    .await;
    let other_issuer = other["issuer"].as_str().unwrap().to_owned();
    let (_, oc) = post_json(
        &http,
        format!(
            "{admin}/v1/auth-servers/{}/clients",
            other["id"].as_str().unwrap()
        ),
        json!({
            "name": "c", "grant_types": ["client_credentials"], "response_types": ["token"]
        }),
    )
    .await;
    let (s, ot) = token(
        &http,
        &other_issuer,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", oc["id"].as_str().unwrap()),
            ("client_secret", oc["client_secret"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        introspect(
            &http,
            &issuer,
            &client_id,
            &secret,
            ot["access_token"].as_str().unwrap()
        )
        .await["active"],
        false
    );

    // 5. Revocation through the tokens API is visible to introspection at once.
    let tokens: Value = http
        .get(format!(
            "{admin}/v1/auth-servers/{as_id}/clients/{client_id}/tokens"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["meta"]["page"]["total"], 2);
    let jti = c["jti"].as_str().unwrap();
    assert!(
        tokens["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == jti)
    );
    let r = http
        .delete(format!(
            "{admin}/v1/auth-servers/{as_id}/clients/{client_id}/tokens/{jti}"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        introspect(&http, &issuer, &client_id, &secret, &access).await,
        json!({"active": false})
    );

    // RFC 7009 revocation by the client.
    let fresh = plain["access_token"].as_str().unwrap();
    assert_eq!(
        introspect(&http, &issuer, &client_id, &secret, fresh).await["active"],
        true
    );
    let r = http
        .post(format!("{issuer}/revoke"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("token", fresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        introspect(&http, &issuer, &client_id, &secret, fresh).await["active"],
        false
    );

    // Discovery advertises the endpoints under the issuer.
    let d: Value = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], issuer.as_str());
    assert_eq!(d["token_endpoint"], format!("{issuer}/oauth/token"));
    assert_eq!(d["introspection_endpoint"], format!("{issuer}/introspect"));
    let m: Value = http
        .get(format!(
            "{}/.well-known/oauth-authorization-server/{slug}",
            issuer.trim_end_matches(&format!("/{slug}"))
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m, d);

    // Deleting the client invalidates its tokens.
    let (_, t2) = token(
        &http,
        &issuer,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ],
    )
    .await;
    let t2 = t2["access_token"].as_str().unwrap().to_owned();
    let (_, c2) = post_json(&http, format!("{admin}/v1/auth-servers/{as_id}/clients"), json!({"name": "Introspector", "grant_types": ["client_credentials"], "response_types": ["token"]})).await;
    let (c2_id, c2_secret) = (
        c2["id"].as_str().unwrap().to_owned(),
        c2["client_secret"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        introspect(&http, &issuer, &c2_id, &c2_secret, &t2).await["active"],
        true,
        "any client of the auth server may introspect"
    );
    let r = http
        .delete(format!(
            "{admin}/v1/auth-servers/{as_id}/clients/{client_id}"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        introspect(&http, &issuer, &c2_id, &c2_secret, &t2).await["active"],
        false
    );
}

#[tokio::test]
async fn seed_identity_steps_on_sqlite() {
    walkthrough(None).await;
}

#[tokio::test]
async fn seed_identity_steps_on_postgres() {
    let schema = common::PgSchema::create().await;
    walkthrough(Some(&schema.url)).await;
    schema.drop().await;
}
