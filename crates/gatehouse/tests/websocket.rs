//! WebSockets through the proxy: an `Upgrade: websocket` request runs the plugin chain (here
//! `oauth2-introspection`) like any other, and once the upstream switches protocols the
//! proxy relays frames both ways, on the plain listener and on the TLS one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// tungstenite's handshake callback returns its error response by value.
#![allow(clippy::result_large_err)]

mod common;

use common::{Node, admin, auth_server_with_client, client, grant};
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A WebSocket echo server: answers every text message with `echo: <text>`, and records the
/// `X-Credential-Client-Id` of each upgrade request it accepted.
async fn ws_echo() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let callback =
                    |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                        let who = req
                            .headers()
                            .get("x-credential-client-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        record.lock().unwrap().push(who);
                        Ok(resp)
                    };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    let reply = match msg {
                        Message::Text(t) => Message::text(format!("echo: {}", t.as_str())),
                        Message::Close(_) => return,
                        _ => continue,
                    };
                    if ws.send(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Sends two messages on `ws` and checks the echoes.
async fn talk<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for text in ["hello", "again"] {
        ws.send(Message::text(text)).await.unwrap();
        let got = ws.next().await.unwrap().unwrap();
        assert_eq!(got, Message::text(format!("echo: {text}")));
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn websockets_pass_the_introspection_plugin_then_relay_both_ways() {
    let (upstream, seen) = ws_echo().await;
    let node = Node::start("serve", None, &[]);
    let http = client();
    node.ready(&http).await;
    let (server, creds) = auth_server_with_client(&http, &node.admin, "ws").await;
    let issuer = server["issuer"].as_str().unwrap().to_owned();
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{}:{}", creds.0, creds.1),
    );
    node.create_all(
        &http,
        &[
            (
                "/services",
                json!({"name": "ws", "url": format!("http://{upstream}/socket")}),
            ),
            (
                "/services/ws/routes",
                json!({"name": "ws", "paths": ["/ws"]}),
            ),
        ],
    )
    .await;
    let proxy = node.proxy.strip_prefix("http://").unwrap().to_owned();
    let connect = |token: Option<String>| {
        let url = format!("ws://{proxy}/ws");
        async move {
            let mut req = url.into_client_request().unwrap();
            if let Some(t) = token {
                req.headers_mut()
                    .insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
            let addr = req.uri().authority().unwrap().as_str().to_owned();
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio_tungstenite::client_async(req, tcp).await
        }
    };
    // Before the plugin: the upgrade goes through and frames flow both ways.
    let (mut ws, resp) = connect(None).await.expect("the upgrade is proxied");
    assert_eq!(resp.status(), 101);
    talk(&mut ws).await;

    // With the plugin: no token, no upgrade.
    let (s, v) = admin(
        &http,
        Method::POST,
        format!("{}/routes/ws/plugins", node.admin),
        Some(json!({"name": "oauth2-introspection", "config": {
            "introspection_url": format!("{issuer}/introspect"),
            "authorization_value": format!("Basic {basic}"),
        }})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    match connect(None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }
    // A token: upgraded, and the upstream saw who the client is.
    let (s, t) = grant(&http, &issuer, &creds).await;
    assert_eq!(s, 200, "{t}");
    let token = t["access_token"].as_str().unwrap().to_owned();
    let (mut ws, _) = connect(Some(token.clone()))
        .await
        .expect("authorised upgrade");
    talk(&mut ws).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1], creds.0, "{seen:?}");

    // Over the TLS listener (wss), through hyper's HTTP/1.1 server.
    let tls_addr = node.proxy_tls_addr();
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(node.trusting_default_cert()))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut req = format!("wss://localhost:{}/ws", tls_addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls)
        .await
        .expect("the upgrade is proxied over TLS");
    assert_eq!(resp.status(), 101);
    talk(&mut ws).await;

    // A relay that carries nothing for the service's read_timeout is closed.
    let (s, _) = admin(
        &http,
        Method::PATCH,
        format!("{}/services/ws", node.admin),
        Some(json!({"read_timeout": 300})),
    )
    .await;
    assert_eq!(s, 200);
    let (mut ws, _) = connect(Some(token)).await.expect("authorised upgrade");
    ws.send(Message::text("still there")).await.unwrap();
    let got = ws.next().await.unwrap().unwrap();
    assert_eq!(got, Message::text("echo: still there"));
    let quiet = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("the idle relay is closed well before 5 s");
    assert!(!matches!(quiet, Some(Ok(Message::Text(_)))), "{quiet:?}");
}

/// Kong Enterprise's `ws`/`wss` protocols: a `ws` route takes WebSocket handshakes only, a
/// `wss` route only over TLS, and a `wss` service reaches its upstream over TLS.
#[tokio::test]
async fn ws_and_wss_protocols_route_handshakes_and_reach_tls_upstreams() {
    let (upstream, seen) = ws_echo().await;
    let node = Node::start("serve", None, &[]);
    let http = client();
    node.ready(&http).await;
    let tls_port = node
        .proxy_tls
        .as_deref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let post = |collection: &str, body: serde_json::Value| {
        let url = format!("{}{collection}", node.admin);
        let http = http.clone();
        async move { admin(&http, Method::POST, url, Some(body)).await }
    };
    // Mixing the HTTP and WebSocket protocol sets is refused, as in Kong.
    let (s, v) = post(
        "/routes",
        json!({"protocols": ["http", "ws"], "paths": ["/mixed"]}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        v["fields"]["protocols"],
        "these sets are mutually exclusive: ('http', 'https'), ('ws', 'wss')",
        "{v}"
    );
    // Upstream TLS settings need a TLS protocol.
    let (s, v) = post(
        "/services",
        json!({"url": format!("ws://{upstream}"), "tls_verify": false}),
    )
    .await;
    assert_eq!(s, 400, "{v}");

    let (s, v) = post(
        "/services",
        json!({"name": "plain", "url": format!("ws://{upstream}/socket")}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["protocol"], "ws", "{v}");
    for (name, protocols, path) in [("live", ["ws"], "/live"), ("secure", ["wss"], "/secure")] {
        let (s, v) = post(
            "/services/plain/routes",
            json!({"name": name, "protocols": protocols, "paths": [path]}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    // A wss service whose upstream is this node's own TLS listener, where `/live` leads on to
    // the echo: it only works if the service really speaks TLS.
    let (s, v) = post(
        "/services",
        json!({"name": "looped", "url": format!("wss://localhost:{tls_port}/live"), "tls_verify": false}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(
        "/services/looped/routes",
        json!({"name": "loop", "protocols": ["ws"], "paths": ["/loop"]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");

    let proxy = node.proxy.strip_prefix("http://").unwrap().to_owned();
    let connect = |path: &'static str| {
        let url = format!("ws://{proxy}{path}");
        async move {
            let req = url.into_client_request().unwrap();
            let addr = req.uri().authority().unwrap().as_str().to_owned();
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio_tungstenite::client_async(req, tcp).await
        }
    };
    let (mut ws, resp) = connect("/live").await.expect("a ws route takes handshakes");
    assert_eq!(resp.status(), 101);
    talk(&mut ws).await;
    // The same path without the handshake matches no route.
    let r = http
        .get(format!("{}/live", node.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["message"],
        "no Route matched with those values"
    );
    // A wss-only route over plain text is refused like an https-only one.
    match connect("/secure").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 426),
        other => panic!("expected a 426, got {other:?}"),
    }
    // Through the wss service: two hops, one of them TLS, and frames still flow.
    let before = seen.lock().unwrap().len();
    let (mut ws, resp) = connect("/loop")
        .await
        .expect("a wss service reaches its upstream over TLS");
    assert_eq!(resp.status(), 101);
    talk(&mut ws).await;
    assert_eq!(seen.lock().unwrap().len(), before + 1);
}

/// Bad input after the close handshake: a frame sent after `Close` is the client's problem
/// alone. Its relay ends (the echo closes its side), and the next client is served.
#[tokio::test]
async fn a_frame_after_close_ends_only_its_own_relay() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (upstream, _) = ws_echo().await;
    let node = Node::start("serve", None, &[]);
    let http = client();
    node.ready(&http).await;
    node.create_all(
        &http,
        &[
            (
                "/services",
                json!({"name": "ws", "url": format!("ws://{upstream}/")}),
            ),
            (
                "/services/ws/routes",
                json!({"protocols": ["ws"], "paths": ["/ws"]}),
            ),
        ],
    )
    .await;
    let proxy = node.proxy.strip_prefix("http://").unwrap().to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&proxy).await.unwrap();
    tcp.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {proxy}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // A masked Close frame with no payload, then (breaking RFC 6455 §5.5.1) a masked text
    // frame "hi".
    tcp.write_all(&[0x88, 0x80, 1, 2, 3, 4]).await.unwrap();
    tcp.write_all(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2])
        .await
        .unwrap();
    // The echo drops the connection on Close; the proxy ends the relay (EOF or a reset,
    // well within the 60 s idle timeout) and nothing is echoed after the close.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut rest),
    )
    .await
    .expect("the relay ends once the upstream has closed");
    assert!(
        !rest.windows(2).any(|w| w == b"hi"),
        "nothing was echoed after the close: {rest:?}"
    );
    // Others are served.
    let req = format!("ws://{proxy}/ws").into_client_request().unwrap();
    let tcp = tokio::net::TcpStream::connect(&proxy).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    talk(&mut ws).await;
}
