//! End to end: the edge limits of every listener against the real binary, each with its
//! control — throttled client authentication, refusals in each API's own format, the proxy's
//! head and body limits, and a flooded listener that leaves the others serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ADMIN_TOKEN, Node, StartOptions, admin, client};
use reqwest::Method;
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An auth server with one client allowed every scope: (issuer, client id, secret).
async fn auth_server(http: &reqwest::Client, node: &Node) -> (String, String, String) {
    let (s, server) = admin(
        http,
        Method::POST,
        format!("{}/v1/auth-servers", node.admin),
        Some(json!({"name": "edge", "audience": "http://edge.test"})),
    )
    .await;
    assert_eq!(s, 201, "{server}");
    let (s, c) = admin(
        http,
        Method::POST,
        format!(
            "{}/v1/auth-servers/{}/clients",
            node.admin,
            server["id"].as_str().unwrap()
        ),
        Some(
            json!({"name": "c", "grant_types": ["client_credentials"], "allow_all_scopes": true,
                     "response_types": ["token"]}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    (
        server["issuer"].as_str().unwrap().to_owned(),
        c["id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// A client whose connections leave from `ip` (another loopback address is another client).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn token(http: &reqwest::Client, issuer: &str, id: &str, secret: &str) -> reqwest::Response {
    http.post(format!("{issuer}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap()
}

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// Sends `raw` on a new connection and reads until the server closes (at most 10 s).
async fn raw_exchange(to: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(to).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn failed_client_authentications_are_throttled_per_address() {
    let node = Node::start(
        "serve",
        None,
        &["--auth-failure-burst", "3", "--auth-failure-refill", "60s"],
    );
    let http = client();
    node.ready(&http).await;
    let (issuer, id, secret) = auth_server(&http, &node).await;
    let attacker = client_from("127.0.0.1");
    let other = client_from("127.0.0.2");

    // The burst: wrong secrets are refused as usual, each after the full PBKDF2 work.
    let mut slowest_401 = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let r = token(&attacker, &issuer, &id, "wrong").await;
        assert_eq!(r.status(), 401);
        slowest_401 = slowest_401.min(started.elapsed());
    }
    // Then the address is throttled: 429 with Retry-After, whatever the secret (it has not
    // verified before), answered without PBKDF2.
    for presented in ["wrong", secret.as_str()] {
        let started = Instant::now();
        let r = token(&attacker, &issuer, &id, presented).await;
        let took = started.elapsed();
        assert_eq!(r.status(), 429);
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
        assert!(took < slowest_401 / 2, "{took:?} vs {slowest_401:?}");
    }
    // Introspection and revocation authenticate the same way.
    let r = attacker
        .post(format!("{issuer}/introspect"))
        .basic_auth(&id, Some("wrong"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);

    // Another address has its own budget: its wrong secret is a plain 401, its right one a
    // token.
    assert_eq!(token(&other, &issuer, &id, "wrong").await.status(), 401);
    let r = token(&other, &issuer, &id, &secret).await;
    assert_eq!(r.status(), 200);
    // Once the secret has verified, it is never throttled, even from the throttled address;
    // a wrong one from there still is.
    assert_eq!(token(&attacker, &issuer, &id, &secret).await.status(), 200);
    assert_eq!(token(&attacker, &issuer, &id, "wrong").await.status(), 429);
}

#[tokio::test]
async fn an_unknown_client_id_costs_what_a_wrong_secret_costs() {
    let node = Node::start("serve", None, &["--auth-failure-burst", "0"]);
    let http = client();
    node.ready(&http).await;
    let (issuer, id, _) = auth_server(&http, &node).await;
    let known = median_refusal(&http, &issuer, &id).await;
    let unknown = median_refusal(&http, &issuer, "no-such-client").await;
    // Before the decoy, an unknown id was refused in ~1 ms and a wrong secret in ~85 ms.
    assert!(unknown * 2 > known, "unknown {unknown:?}, known {known:?}");
}

/// The median time of three refused token requests for `client_id` with a wrong secret.
async fn median_refusal(http: &reqwest::Client, issuer: &str, client_id: &str) -> Duration {
    let mut took = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(token(http, issuer, client_id, "wrong").await.status(), 401);
        took.push(started.elapsed());
    }
    took.sort();
    took[1]
}

#[tokio::test]
async fn refusals_are_in_each_apis_format() {
    let node = Node::start("serve", None, &[]);
    let http = client();
    node.ready(&http).await;
    let (issuer, _, _) = auth_server(&http, &node).await;
    let problem = "application/problem+json";

    // 405: Konnect paths answer problem+json, Kong paths Kong's message, issuer endpoints
    // OAuth's JSON.
    let r = http
        .delete(format!("{}/v1/auth-servers", node.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["content-type"], problem);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["status"].clone(), body["title"].clone()),
        (json!(405), json!("Method Not Allowed"))
    );
    let r = http
        .put(format!("{}/services", node.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Method not allowed"})
    );
    let r = http
        .get(format!("{issuer}/oauth/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");

    // 413: a 10 MB admin body (announced; refused before it is sent), a 100 KB form.
    for (path, expected) in [
        ("/v1/auth-servers", "application/problem+json"),
        ("/services", "application/json"),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            10 << 20
        );
        let answer = raw_exchange(addr(&node.admin), head.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(
            answer.contains(&format!("content-type: {expected}")),
            "{answer}"
        );
        assert!(answer.contains("Request body too large"), "{answer}");
    }
    let slug = issuer.rsplit('/').next().unwrap();
    let head = format!(
        "POST /{slug}/oauth/token HTTP/1.1\r\nhost: a\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n",
        10 << 20
    );
    let answer = raw_exchange(addr(&node.identity), head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("invalid_request"), "{answer}");
    let r = http
        .post(format!("{issuer}/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&pad={}",
            "y".repeat(100 << 10)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    // The control: a small body reaches the handler (400 for a bad request, not 413).
    let r = http
        .post(format!("{}/services", node.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "n".repeat(600), "url": "http://a.test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"]["name"], "length must be at most 512");

    // 414 and a second Host, answered before routing.
    let long = format!("{}/services?x={}", node.admin, "a".repeat(9000));
    let r = http
        .get(long)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 414);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "the request target is too long"})
    );
    let r = http
        .get(format!("{issuer}/.well-known/jwks?x={}", "a".repeat(9000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 414);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let two_hosts = raw_exchange(
        addr(&node.admin),
        b"GET /status HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(two_hosts.starts_with("HTTP/1.1 400"), "{two_hosts}");
    let one_host = raw_exchange(
        addr(&node.admin),
        b"GET /status HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(one_host.starts_with("HTTP/1.1 200"), "{one_host}");
}

#[tokio::test]
async fn the_proxy_refuses_two_hosts_long_targets_and_trickling_bodies() {
    let node = Node::start(
        "quickstart",
        None,
        &[
            "--body-timeout",
            "1s",
            "--header-timeout",
            "1s",
            "--max-uri-length",
            "1024",
        ],
    );
    let http = client();
    node.ready(&http).await;
    let proxy = addr(&node.proxy);
    let get = |target: &str, hosts: &[&str]| {
        let mut raw = format!("GET {target} HTTP/1.1\r\n");
        for h in hosts {
            raw.push_str(&format!("host: {h}\r\n"));
        }
        raw.push_str("connection: close\r\n\r\n");
        raw
    };
    let ok = raw_exchange(proxy, get("/anything", &["a"]).as_bytes()).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let two = raw_exchange(proxy, get("/anything", &["a", "b"]).as_bytes()).await;
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    let fits = raw_exchange(
        proxy,
        get(&format!("/anything?{}", "q".repeat(900)), &["a"]).as_bytes(),
    )
    .await;
    assert!(fits.starts_with("HTTP/1.1 200"), "{fits}");
    let long = raw_exchange(
        proxy,
        get(&format!("/anything?{}", "q".repeat(1100)), &["a"]).as_bytes(),
    )
    .await;
    assert!(long.starts_with("HTTP/1.1 414"), "{long}");
    assert!(long.contains("URI too long"), "{long}");

    // A body sent a byte every 200 ms: 408 once the second is used up.
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(b"POST /anything HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    for _ in 0..100 {
        if s.write_all(b"x").await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await
        {
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The control: the same body at once is echoed.
    let r = http
        .post(format!("{}/anything", node.proxy))
        .body("x".repeat(100))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Half a head is cut at the header timeout.
    let mut slow = TcpStream::connect(proxy).await.unwrap();
    slow.write_all(b"GET /anything HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// With 256 descriptors for the whole process, 300 connections to the identity listener would
/// leave none for anything else. Its cap (a share of the limit) refuses the excess at accept,
/// and the admin and proxy listeners keep answering.
#[tokio::test]
async fn a_flooded_listener_leaves_the_others_serving() {
    let node = Node::start_opts(
        "serve",
        None,
        &["--max-connections-per-ip", "0"],
        StartOptions {
            fd_limit: Some(256),
            ..StartOptions::default()
        },
    );
    let http = client();
    node.ready(&http).await;
    let identity = addr(&node.identity);
    let mut flood = Vec::new();
    for _ in 0..300 {
        match TcpStream::connect(identity).await {
            Ok(mut s) => {
                let _ = s.write_all(b"GET /x HTTP/1.1\r\n").await;
                flood.push(s);
            }
            Err(_) => break,
        }
    }
    // The excess was closed at once (a reset, as it had unread bytes), the rest held open.
    let mut closed = 0;
    for s in &mut flood {
        let mut buf = [0u8; 16];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    // 24 held (the identity listener's share of 256), the rest refused.
    assert!(
        (250..300).contains(&closed),
        "{closed} of {} were refused",
        flood.len()
    );
    // The other listeners answer while the flood holds the identity listener's share.
    let r = http
        .get(format!("{}/status", node.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/nothing-here", node.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the proxy answered (no route)");
    // And the identity listener serves again once the flood is gone.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = http
            .get(format!("{}/unknown/.well-known/jwks", node.identity))
            .send()
            .await
        {
            assert_eq!(r.status(), 404);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the identity listener did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One address holding its share of the identity listener does not lock out another.
#[tokio::test]
async fn one_address_cannot_hold_the_identity_listener() {
    let node = Node::start("serve", None, &["--identity-max-connections", "40"]);
    let http = client();
    node.ready(&http).await;
    let identity = addr(&node.identity);
    // 40 / 4 = 10 per address.
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(identity).await.unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = raw_exchange(
        identity,
        b"GET /x/.well-known/jwks HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        refused, "",
        "the eleventh from one address is closed unanswered"
    );
    let r = client_from("127.0.0.2")
        .get(format!("{}/x/.well-known/jwks", node.identity))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "another address is served");
}

/// `request-size-limiting` limits one route's bodies, announced or chunked; the route beside
/// it takes the same body.
#[tokio::test]
async fn a_route_limits_its_request_bodies() {
    let node = Node::start("serve", None, &[]);
    let http = client();
    node.ready(&http).await;
    let echo = gatehouse_echo::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (s, svc) = admin(
        &http,
        Method::POST,
        format!("{}/services", node.admin),
        Some(json!({"name": "echo", "url": format!("{}/anything", echo.base_url())})),
    )
    .await;
    assert_eq!(s, 201, "{svc}");
    for (name, path) in [("open", "/open"), ("small", "/small")] {
        let (s, r) = admin(
            &http,
            Method::POST,
            format!("{}/services/echo/routes", node.admin),
            Some(json!({"name": name, "paths": [path]})),
        )
        .await;
        assert_eq!(s, 201, "{r}");
    }
    let (s, p) = admin(
        &http,
        Method::POST,
        format!("{}/routes/small/plugins", node.admin),
        Some(json!({"name": "request-size-limiting",
                    "config": {"allowed_payload_size": 10, "size_unit": "kilobytes"}})),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    let proxy = addr(&node.proxy);
    let body = "b".repeat(20 * 1024);
    let chunked = |path: &str| {
        let mut raw = format!(
            "POST {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        for piece in body.as_bytes().chunks(4096) {
            raw.push_str(&format!(
                "{:x}\r\n{}\r\n",
                piece.len(),
                String::from_utf8_lossy(piece)
            ));
        }
        raw.push_str("0\r\n\r\n");
        raw
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http
            .post(format!("{}/open", node.proxy))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let echoed: Value = r.json().await.unwrap();
            assert_eq!(echoed["data"].as_str().map(str::len), Some(body.len()));
            break;
        }
        assert!(Instant::now() < deadline, "the routes were never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open = raw_exchange(proxy, chunked("/open").as_bytes()).await;
    assert!(open.starts_with("HTTP/1.1 200"), "{open}");

    let r = http
        .post(format!("{}/small", node.proxy))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "Request size limit exceeded"
    );
    let small = raw_exchange(proxy, chunked("/small").as_bytes()).await;
    assert!(small.starts_with("HTTP/1.1 413"), "{small}");
    assert!(small.contains("Request size limit exceeded"), "{small}");
    let r = http
        .post(format!("{}/small", node.proxy))
        .body("fits")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
