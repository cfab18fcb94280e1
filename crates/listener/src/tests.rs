//! The router listener against real sockets: slow heads and bodies, connection caps, a client
//! that does not read, and the refusals rendered by the role.

use crate::Limits;
use crate::body::{BodyFailure, failure};
use crate::gate::ConnectionGate;
use crate::serve::{EdgeError, RouterListener};
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn test_limits() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(800),
        body_timeout: Duration::from_millis(800),
        body_min_rate: 1000,
        send_timeout: Duration::from_millis(800),
        max_uri_len: 64,
        ..Limits::with_connections(8)
    }
}

async fn read_body(body: axum::body::Body) -> Response {
    match body.collect().await {
        Ok(b) => format!("got {}", b.to_bytes().len()).into_response(),
        Err(e) => match failure(&e) {
            BodyFailure::TimedOut => StatusCode::REQUEST_TIMEOUT.into_response(),
            BodyFailure::TooLarge => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
            BodyFailure::Broken => StatusCode::BAD_REQUEST.into_response(),
        },
    }
}

/// A listener with `limits` and a gate of `per_ip` connections per address; a route that
/// answers, one that reads its body, one with a large answer.
async fn spawn(limits: Limits, per_ip: usize) -> (SocketAddr, Arc<ConnectionGate>) {
    spawn_with(limits, per_ip, None).await
}

/// [`spawn`], over TLS when `tls` is given.
async fn spawn_with(
    limits: Limits,
    per_ip: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (SocketAddr, Arc<ConnectionGate>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = ConnectionGate::new(limits.max_connections, per_ip);
    let router = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/upload", post(read_body))
        .route(
            "/large",
            get(|| async { vec![b'z'; 16 << 20].into_response() }),
        );
    let serving = RouterListener {
        listener,
        router,
        limits,
        gate: gate.clone(),
        render: Arc::new(|uri: &http::Uri, e: EdgeError| {
            (
                e.status(),
                format!(
                    "{{\"refused\":\"{}\",\"path_len\":{}}}",
                    e.message(),
                    uri.path().len()
                ),
            )
                .into_response()
        }),
        role: "test",
        tls,
    };
    tokio::spawn(serving.serve(std::future::pending()));
    (addr, gate)
}

/// Sends `raw` and reads until the server closes; the answer's bytes.
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

const HELLO: &[u8] = b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_cut_at_the_header_timeout() {
    let (addr, gate) = spawn(test_limits(), 0).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut closed_after = None;
    for b in
        b"GET /hello HTTP/1.1\r\nhost: x\r\nx-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"
    {
        if slow.write_all(&[*b]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // Meanwhile the listener serves others.
        if started.elapsed() < Duration::from_millis(300) {
            assert!(exchange(addr, HELLO).await.ends_with("hello"));
        }
        let mut probe = [0u8; 64];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(100), slow.read(&mut probe)).await
        {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let took = closed_after.expect("the slow head was never cut");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    // The slot is given back.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gate.open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gate.open(), 0);
}

#[tokio::test]
async fn a_trickling_body_gets_408_and_a_steady_one_goes_through() {
    let (addr, _) = spawn(test_limits(), 0).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    for _ in 0..100 {
        if s.write_all(b"x").await.is_err() {
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await
        {
            out.extend_from_slice(&buf[..n]);
            if n == 0 || out.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // 4 KB at ~8 KB/s (above the 1 KB/s minimum): read whole, though it takes longer than the
    // base timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 8192\r\n\r\n",
    )
    .await
    .unwrap();
    let started = Instant::now();
    for _ in 0..64 {
        s.write_all(&[b'y'; 128]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(16)).await;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(started.elapsed() > Duration::from_millis(900));
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("got 8192"),
        "{text}"
    );
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let (addr, gate) = spawn(test_limits(), 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // A started head keeps the connection busy (and counted).
        s.write_all(b"GET /hel").await.unwrap();
        held.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while gate.open() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The third from the same address is closed without an answer.
    let refused = exchange(addr, HELLO).await;
    assert_eq!(refused, "");
    assert_eq!(gate.refused(), 1);
    // One closes: the address may connect again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    while gate.open() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(exchange(addr, HELLO).await.ends_with("hello"));
}

#[tokio::test]
async fn refusals_are_rendered_by_the_role() {
    let (addr, _) = spawn(test_limits(), 0).await;
    let long = format!(
        "GET /{} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "a".repeat(100)
    );
    let text = exchange(addr, long.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 414"), "{text}");
    assert!(
        text.contains(r#""refused":"the request target is too long","path_len":101"#),
        "{text}"
    );

    let text = exchange(
        addr,
        b"GET /hello HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("more than one Host field"), "{text}");
    let text = exchange(addr, b"GET /hello HTTP/1.1\r\nconnection: close\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("needs a Host field"), "{text}");
    // HTTP/1.0 needs none.
    let text = exchange(addr, b"GET /hello HTTP/1.0\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    // The control: one Host, a short target.
    assert!(exchange(addr, HELLO).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_after_the_send_timeout() {
    let (addr, gate) = spawn(test_limits(), 0).await;
    // 16 MB is more than loopback's socket buffers hold, so the server's writes block.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /large HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while gate.open() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(gate.open(), 1);
    // Never read: the server gives up on the write and frees the slot.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gate.open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gate.open(), 0, "the connection outlived the send timeout");
    drop(s);
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// A self-signed certificate for `localhost` written to `dir`: (cert path, key path, cert DER).
fn self_signed(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
    (cert_path, key_path, cert.der().to_vec())
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gh-listener-tls-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// `GET /hello` over TLS trusting `root`: the answer's bytes, or the handshake's error.
async fn hello_over_tls(addr: SocketAddr, root: &[u8]) -> Result<String, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(root.to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(HELLO).await?;
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn tls_serves_https_and_drops_plain_text_garbage_and_strangers() {
    let dir = temp_dir();
    let (cert, key, der) = self_signed(&dir, "server");
    let (_, _, other) = self_signed(&dir, "other");
    let config = crate::tls::server_config(&cert, &key).unwrap();
    let (addr, gate) = spawn_with(test_limits(), 0, Some(config)).await;

    let answer = hello_over_tls(addr, &der).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");

    // Plain HTTP and garbage get no HTTP answer, and the listener serves on.
    let plain = exchange(addr, HELLO).await;
    assert!(
        !plain.contains("HTTP/1.1") && !plain.contains("hello"),
        "{plain:?}"
    );
    let garbage = exchange(addr, &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5]).await;
    assert!(!garbage.contains("hello"), "{garbage:?}");
    // A client that does not trust the certificate fails its handshake.
    assert!(hello_over_tls(addr, &other).await.is_err());
    assert!(hello_over_tls(addr, &der).await.unwrap().ends_with("hello"));

    let deadline = Instant::now() + Duration::from_secs(5);
    while gate.open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gate.open(), 0, "every connection gave its slot back");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_stalled_handshake_is_cut_at_the_header_timeout() {
    let dir = temp_dir();
    let (cert, key, der) = self_signed(&dir, "server");
    let config = crate::tls::server_config(&cert, &key).unwrap();
    let (addr, gate) = spawn_with(test_limits(), 0, Some(config)).await;
    // The first bytes of a ClientHello, then nothing.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf)).await;
    let took = started.elapsed();
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    // Others were served meanwhile, and the slot is given back.
    assert!(hello_over_tls(addr, &der).await.unwrap().ends_with("hello"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while gate.open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gate.open(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_key_of_another_certificate_or_a_file_without_pem_is_refused_without_showing_it() {
    let dir = temp_dir();
    let (cert, _, _) = self_signed(&dir, "a");
    let (_, other_key, _) = self_signed(&dir, "b");
    let err = crate::tls::server_config(&cert, &other_key).err().unwrap();
    assert!(matches!(err, crate::tls::TlsError::Pair { .. }), "{err}");

    let secret = dir.join("not-a-key.pem");
    std::fs::write(&secret, "hunter2-is-not-pem").unwrap();
    let err = crate::tls::server_config(&cert, &secret)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no PRIVATE KEY block") && !err.contains("hunter2"),
        "{err}"
    );
    let err = crate::tls::server_config(&dir.join("missing.crt"), &secret)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing.crt"), "{err}");
    let err = crate::tls::server_config(&secret, &secret)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no CERTIFICATE block") || err.contains("not-a-key.pem"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
