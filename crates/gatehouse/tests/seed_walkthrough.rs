//! The user's walkthrough (Kong's "Configure the OAuth 2.0 Introspection plugin with Kong
//! Identity", `shared/seed/`) end to end against the real `gatehouse quickstart` binary, step by
//! step with the seed's request bodies, as the README tells a newcomer to run it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine;
use common::{Node, admin, client};
use reqwest::Method;
use serde_json::{Value, json};

struct Issued {
    server_id: String,
    issuer: String,
    client_id: String,
    secret: String,
}

/// Steps 1–2 of the seed: auth server, scope, claim, client.
async fn identity_setup(http: &reqwest::Client, base: &str, name: &str) -> Issued {
    let (s, server) = admin(
        http,
        Method::POST,
        format!("{base}/v1/auth-servers"),
        Some(json!({"name": name, "audience": "http://myhttpbin.dev",
                    "description": "Auth server for the Appointment dev environment"})),
    )
    .await;
    assert_eq!(s, 201, "{server}");
    let server_id = server["id"].as_str().unwrap().to_owned();
    let (s, scope) = admin(
        http,
        Method::POST,
        format!("{base}/v1/auth-servers/{server_id}/scopes"),
        Some(
            json!({"name": "my-scope", "description": "Scope to test Kong Identity",
                    "default": false, "include_in_metadata": false, "enabled": true}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{scope}");
    let scope_id = scope["id"].as_str().unwrap().to_owned();
    let (s, claim) = admin(
        http,
        Method::POST,
        format!("{base}/v1/auth-servers/{server_id}/claims"),
        Some(
            json!({"name": "test-claim", "value": "test", "include_in_token": true,
                    "include_in_all_scopes": false, "include_in_scopes": [scope_id],
                    "enabled": true}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{claim}");
    let (s, c) = admin(
        http,
        Method::POST,
        format!("{base}/v1/auth-servers/{server_id}/clients"),
        Some(
            json!({"name": "Client", "grant_types": ["client_credentials"],
                    "allow_all_scopes": false, "allow_scopes": [scope_id],
                    "access_token_duration": 3600, "id_token_duration": 3600,
                    "response_types": ["id_token", "token"]}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    Issued {
        server_id,
        issuer: server["issuer"].as_str().unwrap().to_owned(),
        client_id: c["id"].as_str().unwrap().to_owned(),
        secret: c["client_secret"].as_str().unwrap().to_owned(),
    }
}

/// Step 6: a token from `oauth/token` with the seed's form.
async fn token(http: &reqwest::Client, i: &Issued) -> String {
    let r = http
        .post(format!("{}/oauth/token", i.issuer))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", i.client_id.as_str()),
            ("client_secret", i.secret.as_str()),
            ("scope", "my-scope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    t["access_token"].as_str().unwrap().to_owned()
}

/// Step 4: the id of the quickstart's control plane, found by name with the seed's filter.
async fn quickstart_control_plane(http: &reqwest::Client, base: &str) -> String {
    let (s, cps) = admin(
        http,
        Method::GET,
        format!("{base}/v2/control-planes?filter%5Bname%5D%5Bcontains%5D=quickstart"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{cps}");
    cps["data"][0]["id"].as_str().unwrap().to_owned()
}

async fn anything(http: &reqwest::Client, proxy: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut req = http.get(format!("{proxy}/anything"));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn walkthrough(database: Option<&str>) {
    let node = Node::start("quickstart", database, &[]);
    let http = client();
    node.ready(&http).await;
    let base = node.admin.clone();
    let proxy = node.proxy.clone();
    // The quickstart prints the three exports of the README.
    for export in [
        "KONNECT_TOKEN",
        "KONNECT_CONTROL_PLANE_URL",
        "KONNECT_PROXY_URL",
    ] {
        assert!(
            node.banner
                .iter()
                .any(|l| l.starts_with(&format!("export {export}="))),
            "{export} missing from {:?}",
            node.banner
        );
    }

    // Steps 1–2.
    let issued = identity_setup(&http, &base, "Appointments Dev").await;

    // Step 3: the Basic credentials, as `echo -n "$CLIENT_ID:$CLIENT_SECRET" | base64`.
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", issued.client_id, issued.secret));

    // Step 4: the control plane, found by name.
    let cp = quickstart_control_plane(&http, &base).await;

    // Before the plugin, the route is open.
    let (s, _) = anything(&http, &proxy, None).await;
    assert_eq!(s, 200);

    // Step 5: the plugin, globally, with the seed's body (the claim to forward named).
    let (s, plugin) = admin(
        &http,
        Method::POST,
        format!("{base}/v2/control-planes/{cp}/core-entities/plugins/"),
        Some(json!({"name": "oauth2-introspection", "config": {
            "introspection_url": format!("{}/introspect", issued.issuer),
            "authorization_value": format!("Basic {encoded}"),
            "consumer_by": "client_id",
            "custom_claims_forward": ["test-claim"],
        }})),
    )
    .await;
    assert_eq!(s, 201, "{plugin}");
    let plugin_id = plugin["id"].as_str().unwrap().to_owned();

    // Step 6 and 7: token, then the service through the proxy.
    let access = token(&http, &issued).await;
    let (s, echo) = anything(&http, &proxy, Some(&access)).await;
    assert_eq!(s, 200, "{echo}");
    let h = &echo["headers"];
    assert_eq!(h["X-Credential-Client-Id"], issued.client_id.as_str());
    assert_eq!(h["X-Credential-Scope"], "my-scope");
    assert_eq!(h["X-Credential-Test-Claim"], "test");
    assert!(h.get("Authorization").is_none(), "hide_credentials: {h}");

    // No token, a garbage token: 401 with the plugin's errors.
    let (s, e) = anything(&http, &proxy, None).await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_request")));
    let (s, e) = anything(&http, &proxy, Some("not-a-token")).await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_token")));

    // A token of another auth server is not active for this one.
    let other = identity_setup(&http, &base, "Another Server").await;
    let foreign = token(&http, &other).await;
    let (s, _) = anything(&http, &proxy, Some(&foreign)).await;
    assert_eq!(s, 401);

    // The plugin's own credentials are checked even though this process answers the call
    // itself (no HTTP): wrong ones are an identity-server failure, 500.
    let patch = |value: String| {
        admin(
            &http,
            Method::PATCH,
            format!("{base}/v2/control-planes/{cp}/core-entities/plugins/{plugin_id}"),
            Some(json!({"config": {"authorization_value": value}})),
        )
    };
    let (s, _) = patch(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("nobody:wrong")
    ))
    .await;
    assert_eq!(s, 200);
    let unseen = token(&http, &issued).await;
    let (s, e) = anything(&http, &proxy, Some(&unseen)).await;
    assert_eq!(
        (s, e["message"].as_str()),
        (500, Some("An unexpected error occurred"))
    );
    let (s, _) = patch(format!("Basic {encoded}")).await;
    assert_eq!(s, 200);
    let (s, _) = anything(&http, &proxy, Some(&unseen)).await;
    assert_eq!(s, 200);

    // A revoked token stops working at once, whatever the plugin's ttl: the answers of this
    // process's own identity server are asked again after any revocation.
    let (s, _) = admin(
        &http,
        Method::PATCH,
        format!("{base}/v2/control-planes/{cp}/core-entities/plugins/{plugin_id}"),
        Some(json!({"config": {"ttl": 300}})),
    )
    .await;
    assert_eq!(s, 200);
    let (fresh, spared) = (token(&http, &issued).await, token(&http, &issued).await);
    for t in [&fresh, &spared] {
        let (s, _) = anything(&http, &proxy, Some(t)).await;
        assert_eq!(s, 200);
    }
    // Revoked through the management API: the next request is refused.
    let jti = |t: &str| -> String {
        let payload = t.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        claims["jti"].as_str().unwrap().to_owned()
    };
    let (s, _) = admin(
        &http,
        Method::DELETE,
        format!(
            "{base}/v1/auth-servers/{}/clients/{}/tokens/{}",
            issued.server_id,
            issued.client_id,
            jti(&fresh)
        ),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = anything(&http, &proxy, Some(&fresh)).await;
    assert_eq!(s, 401, "a revoked token was served from the plugin's cache");
    // The control: the token not revoked is still served.
    let (s, _) = anything(&http, &proxy, Some(&spared)).await;
    assert_eq!(s, 200);
    // Revoked by its client (RFC 7009): the same.
    let r = http
        .post(format!("{}/revoke", issued.issuer))
        .basic_auth(&issued.client_id, Some(&issued.secret))
        .form(&[("token", spared.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = anything(&http, &proxy, Some(&spared)).await;
    assert_eq!(s, 401);
    // A deleted client's tokens stop at once too.
    let (s, c) = admin(
        &http,
        Method::POST,
        format!("{base}/v1/auth-servers/{}/clients", issued.server_id),
        Some(
            json!({"name": "Short-lived", "grant_types": ["client_credentials"],
                    "response_types": ["token"], "allow_all_scopes": true}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let doomed = Issued {
        client_id: c["id"].as_str().unwrap().to_owned(),
        secret: c["client_secret"].as_str().unwrap().to_owned(),
        server_id: issued.server_id.clone(),
        issuer: issued.issuer.clone(),
    };
    let theirs = token(&http, &doomed).await;
    let (s, _) = anything(&http, &proxy, Some(&theirs)).await;
    assert_eq!(s, 200);
    let (s, _) = admin(
        &http,
        Method::DELETE,
        format!(
            "{base}/v1/auth-servers/{}/clients/{}",
            issued.server_id, doomed.client_id
        ),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = anything(&http, &proxy, Some(&theirs)).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn seed_walkthrough_on_sqlite() {
    walkthrough(None).await;
}

#[tokio::test]
async fn seed_walkthrough_on_postgres() {
    let schema = common::PgSchema::create().await;
    walkthrough(Some(&schema.url)).await;
    schema.drop().await;
}

/// The gateway answers its own identity server's introspection URL in-process (no HTTP); the
/// upstream must see exactly what it sees when the same server is asked over HTTP.
#[tokio::test]
async fn in_process_introspection_forwards_what_http_introspection_does() {
    let node = Node::start("quickstart", None, &[]);
    let http = client();
    node.ready(&http).await;
    let base = node.admin.clone();
    let issued = identity_setup(&http, &base, "Local and remote").await;
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", issued.client_id, issued.secret));
    // The same listener under its IPv4-mapped IPv6 address is not one of this process's
    // issuer URLs (those are the public URL, 127.0.0.1 and localhost), so the plugin calls it
    // over HTTP.
    let over_http = issued
        .issuer
        .replacen("://127.0.0.1:", "://[::ffff:127.0.0.1]:", 1);
    assert_ne!(over_http, issued.issuer, "issuer {}", issued.issuer);
    let entities = format!(
        "{base}/v2/control-planes/{}/core-entities",
        quickstart_control_plane(&http, &base).await
    );
    for (name, issuer) in [("local", &issued.issuer), ("remote", &over_http)] {
        let (s, r) = admin(
            &http,
            Method::POST,
            format!("{entities}/routes"),
            Some(json!({"name": name, "paths": [format!("/{name}")],
                        "service": {"name": "example-service"}})),
        )
        .await;
        assert_eq!(s, 201, "{r}");
        let (s, p) = admin(
            &http,
            Method::POST,
            format!("{entities}/plugins"),
            Some(
                json!({"name": "oauth2-introspection", "route": {"name": name}, "config": {
                    "introspection_url": format!("{issuer}/introspect"),
                    "authorization_value": format!("Basic {encoded}"),
                    "consumer_by": "client_id",
                    "custom_claims_forward": ["test-claim", "client_id"],
                }}),
            ),
        )
        .await;
        assert_eq!(s, 201, "{p}");
    }

    let access = token(&http, &issued).await;
    let identity_port: u16 = node
        .identity
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap();
    let mut seen = Vec::new();
    for name in ["local", "remote"] {
        let r = http
            .get(format!("{}/{name}", node.proxy))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        // Which path the call took: the node's own connections to its identity listener
        // (the plugin keeps the one it used) exist after the HTTP call only.
        let outbound = node.outbound_connections(identity_port);
        match name {
            "local" => assert_eq!(outbound, 0, "the in-process call made no connection"),
            _ => assert!(
                outbound >= 1,
                "the HTTP call connected to the identity listener"
            ),
        }
        let echo: Value = r.json().await.unwrap();
        let credential: Vec<(String, Value)> = echo["headers"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-credential-"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        seen.push(credential);

        let garbage = http
            .get(format!("{}/{name}", node.proxy))
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap();
        assert_eq!(garbage.status(), 401, "{name}");
    }
    let names: Vec<&str> = seen[0].iter().map(|(k, _)| k.as_str()).collect();
    for expected in [
        "x-credential-client-id",
        "x-credential-scope",
        "x-credential-test-claim",
        "x-credential-token-type",
        "x-credential-exp",
        "x-credential-jti",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    assert_eq!(seen[0], seen[1], "in-process and HTTP introspection differ");
}
