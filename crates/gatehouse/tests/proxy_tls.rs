//! The proxy's TLS listener (`--proxy-listen-tls`): certificates chosen by SNI from the
//! `certificates` and `snis` entities (exact, then wildcard, then the default certificate made
//! in the data directory), HTTP/1.1 and HTTP/2 by ALPN, `https` routes, and bad handshakes
//! that close only their own connection.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Node, admin, client};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A private CA and a leaf it signs for `names`: (CA DER, leaf PEM, leaf key PEM).
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gatehouse test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf for `names`, signed by this CA: (certificate PEM, key PEM).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// An HTTPS client that trusts `roots` only and connects every name in `names` to `addr`.
fn https_client(roots: &[&[u8]], names: &[&str], addr: SocketAddr) -> reqwest::Client {
    let resolve: Vec<(&str, SocketAddr)> = names.iter().map(|n| (*n, addr)).collect();
    common::https_client(roots, &resolve)
}

/// The DER of the first certificate in PEM text.
fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// `GET https://<name>:<port>/tls/...` through `http`: the status and the echoed request, or
/// the client's error (a certificate the client does not trust).
async fn get(
    http: &reqwest::Client,
    name: &str,
    port: u16,
    path: &str,
) -> Result<(u16, Value), String> {
    let r = http
        .get(format!("https://{name}:{port}{path}"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn the_tls_listener_serves_certificates_by_sni_and_https_routes() {
    let upstream = gatehouse_echo::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let node = Node::start("serve", None, &[]);
    let plain = client();
    node.ready(&plain).await;
    let tls_url = node.proxy_tls.clone().expect("the TLS listener is printed");
    let addr: SocketAddr = tls_url
        .strip_prefix("https://")
        .unwrap()
        .replace("localhost", "127.0.0.1")
        .parse()
        .unwrap();
    let port = addr.port();
    let (s, _) = admin(
        &plain,
        Method::POST,
        format!("{}/services", node.admin),
        Some(json!({"name": "echo", "url": format!("{}/anything", upstream.base_url())})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = admin(
        &plain,
        Method::POST,
        format!("{}/routes", node.admin),
        Some(json!({"name": "both", "paths": ["/tls"], "service": {"name": "echo"}})),
    )
    .await;
    assert_eq!(s, 201);

    // Before any certificate: the default one made in the data directory, for `localhost`.
    let default_pem = std::fs::read_to_string(node.dir.join("proxy-default.crt")).unwrap();
    let trusts_default = https_client(&[&der(&default_pem)], &[], addr);
    let (status, echoed) = get(&trusts_default, "localhost", port, "/tls/a")
        .await
        .unwrap();
    assert_eq!(status, 200, "{echoed}");
    assert_eq!(echoed["headers"]["X-Forwarded-Proto"], "https", "{echoed}");
    assert_eq!(
        echoed["headers"]["X-Forwarded-Port"],
        port.to_string(),
        "{echoed}"
    );

    // A certificate with an exact and a wildcard SNI, signed by a CA only this client trusts.
    let ca = Ca::new();
    let (leaf, key) = ca.leaf(&["api.example.test", "*.wild.test"]);
    let names = ["api.example.test", "x.wild.test", "other.test"];
    let trusts_ca = https_client(&[ca.cert.der()], &names, addr);
    let before = get(&trusts_ca, "api.example.test", port, "/tls/b").await;
    assert!(
        before.is_err(),
        "the default certificate is not the CA's: {before:?}"
    );
    let (s, cert) = admin(
        &plain,
        Method::POST,
        format!("{}/certificates", node.admin),
        Some(json!({"cert": leaf, "key": key, "snis": ["api.example.test", "*.wild.test"]})),
    )
    .await;
    assert_eq!(s, 201, "{cert}");
    // The next handshake gets it: exact name, then the wildcard.
    let (status, _) = get(&trusts_ca, "api.example.test", port, "/tls/c")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, _) = get(&trusts_ca, "x.wild.test", port, "/tls/d")
        .await
        .unwrap();
    assert_eq!(status, 200);
    // A route with `snis` matches the handshake's server name.
    let (s, _) = admin(
        &plain,
        Method::POST,
        format!("{}/routes", node.admin),
        Some(
            json!({"name": "by-sni", "paths": ["/by-sni"], "protocols": ["https"],
                    "snis": ["x.wild.test"], "service": {"name": "echo"}}),
        ),
    )
    .await;
    assert_eq!(s, 201);
    let (status, _) = get(&trusts_ca, "x.wild.test", port, "/by-sni")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, _) = get(&trusts_ca, "api.example.test", port, "/by-sni")
        .await
        .unwrap();
    assert_eq!(status, 404);
    // A name no SNI covers still gets the default certificate, which this client refuses.
    let other = get(&trusts_ca, "other.test", port, "/tls/e").await;
    assert!(other.is_err(), "{other:?}");

    // HTTP/2 by ALPN, with curl (a client of another TLS stack).
    let ca_file = node.dir.join("test-ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let mut curl = std::process::Command::new("curl");
    curl.args([
        "-sS",
        "--noproxy",
        "*",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
    ])
    .arg("--cacert")
    .arg(&ca_file)
    .args(["--resolve", &format!("api.example.test:{port}:127.0.0.1")])
    .arg(format!("https://api.example.test:{port}/tls/h2"));
    // Off the test's runtime: the echo upstream runs on it.
    let out = tokio::task::spawn_blocking(move || curl.output())
        .await
        .unwrap()
        .expect("curl is installed (.ci/run installs it)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An https-only route: refused (426) or redirected over plain http, served over TLS.
    let (s, _) = admin(
        &plain,
        Method::POST,
        format!("{}/routes", node.admin),
        Some(
            json!({"name": "secure", "paths": ["/secure"], "protocols": ["https"],
                    "service": {"name": "echo"}}),
        ),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = admin(
        &plain,
        Method::POST,
        format!("{}/routes", node.admin),
        Some(
            json!({"name": "moved", "paths": ["/moved"], "protocols": ["https"],
                    "https_redirect_status_code": 308, "service": {"name": "echo"}}),
        ),
    )
    .await;
    assert_eq!(s, 201);
    let r = plain
        .get(format!("{}/secure", node.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 426);
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(format!("{}/moved/x?q=1", node.proxy))
        .header("host", "api.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        "https://api.example.test/moved/x?q=1"
    );
    let (status, echoed) = get(&trusts_ca, "api.example.test", port, "/secure/y")
        .await
        .unwrap();
    assert_eq!(status, 200, "{echoed}");

    // Deleting the certificate takes it out of the next handshake.
    let id = cert["id"].as_str().unwrap();
    let (s, _) = admin(
        &plain,
        Method::DELETE,
        format!("{}/certificates/{id}", node.admin),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let fresh = https_client(&[ca.cert.der()], &names, addr);
    let after = get(&fresh, "api.example.test", port, "/tls/f").await;
    assert!(after.is_err(), "{after:?}");
    let (status, _) = get(&trusts_default, "localhost", port, "/tls/g")
        .await
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_handshakes_close_their_own_connection_only() {
    let node = Node::start("quickstart", None, &["--header-timeout", "1s"]);
    node.ready(&client()).await;
    let tls_url = node.proxy_tls.clone().unwrap();
    let addr: SocketAddr = tls_url
        .strip_prefix("https://")
        .unwrap()
        .replace("localhost", "127.0.0.1")
        .parse()
        .unwrap();
    // Plain HTTP sent to the TLS port: closed, nothing served.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /anything HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // A handshake that stalls after its first bytes is cut at the header timeout.
    let mut stalled = std::net::TcpStream::connect(addr).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40]).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = stalled.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server closed the stalled handshake");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // The listener still serves a real client.
    let default_pem = std::fs::read_to_string(node.dir.join("proxy-default.crt")).unwrap();
    let http = https_client(&[&der(&default_pem)], &[], addr);
    let (status, echoed) = get(&http, "localhost", addr.port(), "/anything/ok")
        .await
        .unwrap();
    assert_eq!(status, 200, "{echoed}");
}

/// A TLS upstream for the tests: terminates TLS with `leaf` (optionally requiring a client
/// certificate signed by `client_ca`) and relays the plain bytes to `to`. Counts handshakes,
/// and those that presented a client certificate.
struct TlsUpstream {
    port: u16,
    handshakes: Arc<std::sync::atomic::AtomicUsize>,
    with_client_cert: Arc<std::sync::atomic::AtomicUsize>,
}

async fn tls_upstream(
    leaf: &(String, String),
    client_ca: Option<&[u8]>,
    to: SocketAddr,
) -> TlsUpstream {
    use rustls::pki_types::pem::PemObject;
    use std::sync::atomic::Ordering;
    let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(leaf.0.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.1.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(der) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
                .unwrap();
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let config = Arc::new(builder.with_single_cert(chain, key).unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let with_client_cert = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (h, c) = (handshakes.clone(), with_client_cert.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, h, c) = (acceptor.clone(), h.clone(), c.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                h.fetch_add(1, Ordering::SeqCst);
                if tls.get_ref().1.peer_certificates().is_some() {
                    c.fetch_add(1, Ordering::SeqCst);
                }
                let Ok(mut plain) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    TlsUpstream {
        port,
        handshakes,
        with_client_cert,
    }
}

#[tokio::test]
async fn https_upstreams_are_verified_pooled_and_may_get_a_client_certificate() {
    use std::sync::atomic::Ordering;
    let echo = gatehouse_echo::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let echo_addr: SocketAddr = echo
        .base_url()
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    let ca = Ca::new();
    let leaf = ca.leaf(&["localhost"]);
    let upstream = tls_upstream(&leaf, None, echo_addr).await;
    let node = Node::start("serve", None, &[]);
    let http = client();
    node.ready(&http).await;
    let call = |method: Method, path: String, body: Option<Value>| {
        let http = http.clone();
        let url = format!("{}{path}", node.admin);
        async move { admin(&http, method, url, body).await }
    };
    let through = |path: &'static str| {
        let http = http.clone();
        let url = format!("{}{path}", node.proxy);
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, ca_entity) = call(
        Method::POST,
        "/ca_certificates".into(),
        Some(json!({"cert": ca.cert.pem()})),
    )
    .await;
    assert_eq!(s, 201, "{ca_entity}");
    let ca_id = ca_entity["id"].as_str().unwrap().to_owned();

    // TLS settings need an https service (Kong's conditional check).
    let (s, err) = call(
        Method::POST,
        "/services".into(),
        Some(json!({"name": "plain", "url": "http://localhost:1", "tls_verify": true})),
    )
    .await;
    assert_eq!(s, 400, "{err}");
    assert_eq!(err["fields"]["tls_verify"], "value must be null", "{err}");

    // Verified against the service's CA: served, over one pooled connection.
    let url = format!("https://localhost:{}/anything", upstream.port);
    let (s, svc) = call(
        Method::POST,
        "/services".into(),
        Some(json!({"name": "secure", "url": url, "ca_certificates": [ca_id]})),
    )
    .await;
    assert_eq!(s, 201, "{svc}");
    let (s, _) = call(
        Method::POST,
        "/routes".into(),
        Some(json!({"name": "up", "paths": ["/up"], "service": {"name": "secure"}})),
    )
    .await;
    assert_eq!(s, 201);
    for i in 0..3 {
        let (status, body) = through("/up/x").await;
        assert_eq!(status, 200, "request {i}: {body}");
        let echoed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            echoed["headers"]["Host"],
            format!("localhost:{}", upstream.port)
        );
    }
    assert_eq!(upstream.handshakes.load(Ordering::SeqCst), 1, "kept alive");

    // Against the system roots, the private CA does not verify: 502, cause in the log only.
    let (s, _) = call(
        Method::PATCH,
        "/services/secure".into(),
        Some(json!({"ca_certificates": null})),
    )
    .await;
    assert_eq!(s, 200);
    let (status, body) = through("/up/y").await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains("certificate"), "{body}");
    // tls_verify false accepts it.
    let (s, _) = call(
        Method::PATCH,
        "/services/secure".into(),
        Some(json!({"tls_verify": false})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(through("/up/z").await.0, 200);

    // mTLS: an upstream that requires a client certificate from the CA.
    let mtls = tls_upstream(&leaf, Some(ca.cert.der()), echo_addr).await;
    let client_leaf = ca.leaf(&["gatehouse.client.test"]);
    let (s, client_cert) = call(
        Method::POST,
        "/certificates".into(),
        Some(json!({"cert": client_leaf.0, "key": client_leaf.1})),
    )
    .await;
    assert_eq!(s, 201, "{client_cert}");
    let client_id = client_cert["id"].as_str().unwrap().to_owned();
    let url = format!("https://localhost:{}/anything", mtls.port);
    let (s, _) = call(
        Method::POST,
        "/services".into(),
        Some(json!({"name": "mutual", "url": url, "ca_certificates": [ca_id]})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = call(
        Method::POST,
        "/routes".into(),
        Some(json!({"name": "m", "paths": ["/mutual"], "service": {"name": "mutual"}})),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(through("/mutual").await.0, 502, "no client certificate");
    let (s, _) = call(
        Method::PATCH,
        "/services/mutual".into(),
        Some(json!({"client_certificate": {"id": client_id}})),
    )
    .await;
    assert_eq!(s, 200);
    let (status, body) = through("/mutual").await;
    assert_eq!(status, 200, "{body}");
    assert!(mtls.with_client_cert.load(Ordering::SeqCst) >= 1);
    // A certificate a service presents cannot be deleted from under it.
    let (s, err) = call(Method::DELETE, format!("/certificates/{client_id}"), None).await;
    assert_eq!(s, 400, "{err}");
    assert_eq!(
        err["message"],
        "an existing 'services' entity references this 'certificates' entity"
    );
    // Nor a CA certificate a service trusts.
    let (s, err) = call(Method::DELETE, format!("/ca_certificates/{ca_id}"), None).await;
    assert_eq!(s, 400, "{err}");
    let (s, _) = call(Method::DELETE, "/services/mutual".into(), None).await;
    assert_eq!(s, 400, "the route still uses it");
    let (s, _) = call(Method::DELETE, "/routes/m".into(), None).await;
    assert_eq!(s, 204);
    let (s, _) = call(Method::DELETE, "/services/mutual".into(), None).await;
    assert_eq!(s, 204);
    let (s, _) = call(Method::DELETE, format!("/ca_certificates/{ca_id}"), None).await;
    assert_eq!(s, 204, "no service trusts it any more");
    let (s, _) = call(Method::DELETE, format!("/certificates/{client_id}"), None).await;
    assert_eq!(s, 204);
}

/// Session resumption does not depend on a bounded server cache: 300 returning clients (more
/// than rustls's default 256-session store holds, at two tickets each) all resume.
#[tokio::test]
async fn returning_clients_resume_their_tls_sessions() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = Node::start("quickstart", None, &[]);
    node.ready(&client()).await;
    let addr = node.proxy_tls_addr();
    // One client per config: each keeps its own session store.
    let clients: Vec<tokio_rustls::TlsConnector> = (0..300)
        .map(|_| tokio_rustls::TlsConnector::from(Arc::new(node.trusting_default_cert())))
        .collect();
    // A request per connection, read to the end so that the tickets are taken in; returns
    // whether the handshake resumed a session.
    let visit = |connector: tokio_rustls::TlsConnector| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        tls.write_all(
            b"GET /status-of-nothing HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        tls.flush().await.unwrap();
        let mut reply = Vec::new();
        let _ = tls.read_to_end(&mut reply).await;
        assert!(
            reply.starts_with(b"HTTP/1.1 404"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        resumed
    };
    let mut first = 0;
    for batch in clients.chunks(50) {
        let done = futures::future::join_all(batch.iter().cloned().map(visit)).await;
        first += done.iter().filter(|r| **r).count();
    }
    assert_eq!(first, 0, "a first visit has nothing to resume");
    let mut again = 0;
    for batch in clients.chunks(50) {
        let done = futures::future::join_all(batch.iter().cloned().map(visit)).await;
        again += done.iter().filter(|r| **r).count();
    }
    assert_eq!(again, clients.len(), "every returning client resumed");
}
