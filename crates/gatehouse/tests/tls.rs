//! TLS on the admin and identity listeners (`--admin-tls-cert/--admin-tls-key`,
//! `--identity-tls-cert/--identity-tls-key`): real HTTPS clients, `https://` issuers whose
//! tokens the gateway's introspection plugin checks in-process, and plain text refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Node, admin, auth_server_with_client, grant, token_call};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;

/// A self-signed certificate for `127.0.0.1` and `localhost` in a fresh directory: the
/// directory, the certificate and key files, and the certificate's DER.
fn certificate() -> (PathBuf, PathBuf, PathBuf, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("gh-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&key, key_pair.serialize_pem()).unwrap();
    (dir, crt, key, cert.der().to_vec())
}

#[tokio::test]
async fn admin_and_identity_serve_https_and_issue_https_issuers() {
    let (dir, crt, key, der) = certificate();
    let (crt, key) = (crt.to_str().unwrap(), key.to_str().unwrap());
    let node = Node::start(
        "serve",
        None,
        &[
            "--admin-tls-cert",
            crt,
            "--admin-tls-key",
            key,
            "--identity-tls-cert",
            crt,
            "--identity-tls-key",
            key,
        ],
    );
    assert!(node.admin.starts_with("https://"), "{:?}", node.banner);
    assert!(node.identity.starts_with("https://"), "{:?}", node.banner);
    let http = common::https_client(&[&der], &[]);
    node.ready(&http).await;

    // Plain HTTP to either listener gets no HTTP answer; a client that does not trust the
    // certificate fails its handshake. Both listeners serve on.
    for base in [&node.admin, &node.identity] {
        let plain = common::client()
            .get(format!("{}/status", base.replace("https://", "http://")))
            .send()
            .await;
        assert!(plain.is_err(), "{plain:?}");
        let stranger = common::https_client(&[], &[])
            .get(format!("{base}/status"))
            .send()
            .await;
        assert!(stranger.is_err(), "{stranger:?}");
    }

    // The walkthrough's identity steps over TLS: issuers, discovery and the token endpoint
    // are https://, and a client's secret only ever crosses TLS.
    let (server, creds) = auth_server_with_client(&http, &node.admin, "tls").await;
    let issuer = server["issuer"].as_str().unwrap().to_owned();
    assert!(
        issuer.starts_with(&format!("{}/", node.identity)),
        "{server}"
    );
    let discovery: Value = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(
        discovery["token_endpoint"],
        format!("{issuer}/oauth/token").as_str()
    );
    let (s, t) = grant(&http, &issuer, &creds).await;
    assert_eq!(s, 200, "{t}");
    let token = t["access_token"].as_str().unwrap().to_owned();
    let (s, v) = token_call(&http, &issuer, "introspect", &creds, &token).await;
    assert_eq!((s, v["active"].clone()), (200, json!(true)), "{v}");

    // The gateway introspects against the https:// issuer in-process (the identity
    // listener's certificate is not one the proxy would trust over the network).
    let upstream = gatehouse_echo::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{}:{}", creds.0, creds.1),
    );
    for (collection, body) in [
        (
            "/services",
            json!({"name": "svc", "url": format!("{}/anything", upstream.base_url())}),
        ),
        (
            "/services/svc/routes",
            json!({"name": "r", "paths": ["/p"]}),
        ),
        (
            "/routes/r/plugins",
            json!({"name": "oauth2-introspection", "config": {
                "introspection_url": format!("{issuer}/introspect"),
                "authorization_value": format!("Basic {basic}"),
            }}),
        ),
    ] {
        let (s, v) = admin(
            &http,
            Method::POST,
            format!("{}{collection}", node.admin),
            Some(body),
        )
        .await;
        assert_eq!(s, 201, "{collection}: {v}");
    }
    let through = |token: Option<&str>| {
        let mut req = common::client().get(format!("{}/p", node.proxy));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(through(None).await, 401);
    assert_eq!(through(Some(&token)).await, 200);
    assert_eq!(through(Some("garbage")).await, 401);
    drop(node);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_key_that_does_not_match_its_certificate_stops_the_start_with_a_clear_error() {
    let (dir, crt, _, _) = certificate();
    let (other_dir, _, other_key, _) = certificate();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args([
            "serve",
            "--admin-listen",
            "127.0.0.1:0",
            "--proxy-listen",
            "127.0.0.1:0",
            "--proxy-listen-tls",
            "off",
        ])
        .args(["--identity-listen", "127.0.0.1:0", "--admin-tls-cert"])
        .arg(&crt)
        .arg("--admin-tls-key")
        .arg(&other_key)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("GATEHOUSE_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot serve TLS on the admin listener"),
        "{stderr}"
    );
    // Half a pair is refused by the command line itself.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--identity-tls-cert"])
        .arg(&crt)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--identity-tls-key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(other_dir);
}
