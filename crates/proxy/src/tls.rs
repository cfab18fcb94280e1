//! TLS on the proxy: the certificate a handshake gets, chosen by the client's SNI from the
//! `certificates` and `snis` of the running configuration, and the TLS listener, which
//! speaks HTTP/1.1 or HTTP/2 (by ALPN) through the same [`handle`](crate::handler::handle)
//! and plugin chain as the plain one.
//!
//! Selection follows Kong: the exact name, then the name with its first label replaced by `*`
//! (`*.example.com`), then with its last label replaced (`www.example.*`), then the SNI `*`,
//! then the node's default certificate; a handshake without SNI gets the default. A
//! certificate with a second pair (`cert_alt`/`key_alt`) serves whichever of the two the
//! client can verify (ECDSA or RSA, by the signature schemes of its ClientHello). The table
//! is part of the [`Snapshot`](crate::snapshot::Snapshot): a change applies from the next
//! handshake on.

use crate::gateway::Gateway;
use crate::handler::ConnInfo;
use crate::server::Edge;
use gatehouse_core::gateway::certificates::{Certificate, parse_chain, parse_key};
use gatehouse_listener::serve::SendTimeout;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

/// A certificate ready to serve: its pair, and its second pair of another key type.
#[derive(Debug)]
pub struct CertPair {
    primary: Arc<CertifiedKey>,
    alt: Option<Arc<CertifiedKey>>,
}

impl CertPair {
    /// A pair from PEM text: the chain (leaf first) and its private key.
    pub fn from_pem(cert: &str, key: &str) -> Result<Self, String> {
        Ok(Self {
            primary: certified(cert, key)?,
            alt: None,
        })
    }

    /// The pairs of a `certificates` entity (its keys opened).
    pub fn from_certificate(c: &Certificate) -> Result<Self, String> {
        let alt = match (&c.cert_alt, &c.key_alt) {
            (Some(cert), Some(key)) => Some(certified(cert, key)?),
            _ => None,
        };
        Ok(Self {
            primary: certified(&c.cert, &c.key)?,
            alt,
        })
    }

    /// The pair the client can verify: the first whose key signs with a scheme it offered,
    /// else the primary (the handshake then fails on the client's side, as it would have).
    fn choose(&self, offered: &[rustls::SignatureScheme]) -> Arc<CertifiedKey> {
        let Some(alt) = &self.alt else {
            return self.primary.clone();
        };
        if self.primary.key.choose_scheme(offered).is_none()
            && alt.key.choose_scheme(offered).is_some()
        {
            return alt.clone();
        }
        self.primary.clone()
    }
}

fn certified(cert: &str, key: &str) -> Result<Arc<CertifiedKey>, String> {
    let chain = parse_chain(cert)?;
    let key = parse_key(key)?;
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| format!("the key cannot sign: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

/// The certificates by SNI name, as the configuration defines them.
#[derive(Debug, Default)]
pub struct SniTable {
    exact: HashMap<Box<str>, Arc<CertPair>>,
    /// `*.example.com`, keyed without the `*`: `.example.com`.
    leading: HashMap<Box<str>, Arc<CertPair>>,
    /// `www.example.*`, keyed without the `*`: `www.example.`.
    trailing: HashMap<Box<str>, Arc<CertPair>>,
    /// The SNI `*`.
    any: Option<Arc<CertPair>>,
}

impl SniTable {
    /// Adds SNI `name` (lower case, validated by the admin API) for `pair`.
    pub fn insert(&mut self, name: &str, pair: Arc<CertPair>) {
        if name == "*" {
            self.any = Some(pair);
        } else if let Some(rest) = name.strip_prefix('*') {
            self.leading.insert(rest.into(), pair);
        } else if let Some(rest) = name.strip_suffix('*') {
            self.trailing.insert(rest.into(), pair);
        } else {
            self.exact.insert(name.into(), pair);
        }
    }

    /// Whether no SNI is configured.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.leading.is_empty()
            && self.trailing.is_empty()
            && self.any.is_none()
    }

    /// The certificate for server name `name` (any case), if an SNI covers it.
    pub fn find(&self, name: &str) -> Option<&Arc<CertPair>> {
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(p) = self.exact.get(name) {
            return Some(p);
        }
        // `*.example.com` covers one label in front of `example.com`.
        if let Some(dot) = name.find('.')
            && let Some(p) = self.leading.get(&name[dot..])
        {
            return Some(p);
        }
        if let Some(dot) = name.rfind('.')
            && let Some(p) = self.trailing.get(&name[..=dot])
        {
            return Some(p);
        }
        self.any.as_ref()
    }
}

/// Builds the SNI table of a configuration from its certificates (`id → pair`) and its SNIs
/// (`name → certificate id`); an SNI whose certificate is missing is left out.
pub fn table<'a>(
    pairs: &HashMap<Uuid, Arc<CertPair>, impl std::hash::BuildHasher>,
    snis: impl IntoIterator<Item = (&'a str, Uuid)>,
) -> SniTable {
    let mut t = SniTable::default();
    for (name, cert) in snis {
        if let Some(p) = pairs.get(&cert) {
            t.insert(name, p.clone());
        }
    }
    t
}

/// Chooses each handshake's certificate from the gateway's current configuration.
pub struct SniResolver {
    gateway: Arc<Gateway>,
    default: Arc<CertPair>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.gateway.snapshot();
        let pair = hello
            .server_name()
            .and_then(|name| snapshot.tls.find(name))
            .unwrap_or(&self.default);
        Some(pair.choose(hello.signature_schemes()))
    }
}

/// The TLS configuration of the proxy listener: TLS 1.2 and 1.3 (aws-lc-rs), ALPN `h2` then
/// `http/1.1`, certificates chosen by [`SniResolver`] with `default` as the last resort.
pub fn server_config(
    gateway: Arc<Gateway>,
    default: CertPair,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver {
            gateway,
            default: Arc::new(default),
        }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless tickets (AES-256 + HMAC, keys rotated every 6 hours) instead of rustls's
    // default 256-session memory cache, which more than ~128 concurrent clients overflow: every
    // returning client can resume, as with nginx. One ticket per handshake, as Go's server
    // sends and OpenSSL sends on resumption: each costs the client a record to decrypt and a
    // session to copy.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// Serves the proxy over TLS on `listener` until `shutdown` resolves, then waits (up to 30 s)
/// for requests in flight. A handshake must end within the listener's header timeout; one
/// that fails or stalls closes its connection and nothing else.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    edge: Edge,
    config: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (stop, stopping) = watch::channel(false);
    let live = Arc::new(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    gatehouse_listener::serve::accept_failed("proxy-tls", &e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admission = match edge.gate.admit(peer.ip()) {
            Ok(a) => a,
            Err(refusal) => {
                tracing::debug!(%peer, %refusal, "connection refused");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, gateway, limits, stopping, live) = (
            acceptor.clone(),
            gateway.clone(),
            edge.limits.clone(),
            stopping.clone(),
            live.clone(),
        );
        tokio::spawn(async move {
            let stream = SendTimeout::new(stream, limits.send_timeout);
            let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
            let tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let (_, session) = tls.get_ref();
            let h2 = session.alpn_protocol() == Some(b"h2");
            let info = ConnInfo::new(peer, local).with_tls(session.server_name());
            if h2 {
                crate::http2::serve(tls, gateway, info, limits, stopping).await;
            } else {
                serve_http1(tls, gateway, info, limits, stopping).await;
            }
            drop((admission, live));
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while Arc::strong_count(&live) > 1 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("proxy TLS shutdown: requests still running after 30 s were cut");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Serves HTTP/1.1 on a TLS connection with hyper's server (keep-alive, the listener's head
/// timeout and head size), each request through [`crate::http2::exchange`] as an HTTP/2
/// stream's is, until the client closes, the head timeout passes between requests, or the
/// proxy shuts down (the request running finishes first).
async fn serve_http1<I>(
    io: I,
    gateway: Arc<Gateway>,
    info: ConnInfo,
    limits: Arc<gatehouse_listener::Limits>,
    stopping: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .keep_alive(true);
    let info = Arc::new(info);
    let service = {
        let limits = limits.clone();
        hyper::service::service_fn(move |req| {
            let (gateway, info, limits) = (gateway.clone(), info.clone(), limits.clone());
            async move {
                let resp = crate::http2::exchange(&gateway, &info, &limits, req).await;
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let conn = builder
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    // hyper's head timeout bounds the wait between requests: no idle check of ours.
    crate::http2::drive(
        conn,
        |c| c.graceful_shutdown(),
        stopping,
        None,
        "HTTPS connection ended with an error",
    )
    .await;
}

/// The system's trusted roots (`/etc/ssl/certs` and the like, read once): what an `https`
/// service without `ca_certificates` is verified against.
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "a system root certificate could not be read");
            }
            let mut store = rustls::RootCertStore::empty();
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system root certificates loaded");
            Arc::new(store)
        })
        .clone()
}

/// What an `https` service needs from the rest of the configuration to build its TLS client.
pub struct UpstreamTlsInput<'a> {
    /// The service.
    pub service: &'a gatehouse_core::gateway::Service,
    /// PEM of the CA certificates named in `ca_certificates`, by id (a missing id trusts
    /// nothing in its place).
    pub ca: &'a dyn Fn(Uuid) -> Option<String>,
    /// The client certificate (`client_certificate`), keys opened, if the service names one.
    pub client_certificate: Option<&'a Certificate>,
}

/// The TLS client of an `https` service: verification on unless `tls_verify` is `false`,
/// against the service's `ca_certificates` or else the system roots, with at most
/// `tls_verify_depth` certificates above the leaf, presenting `client_certificate`.
pub fn upstream_tls(input: &UpstreamTlsInput<'_>) -> Result<crate::upstream::UpstreamTls, String> {
    let s = input.service;
    let host = s.host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("host {host:?} cannot be a TLS server name: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut key = format!("verify={:?};depth={:?}", s.tls_verify, s.tls_verify_depth);
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if s.tls_verify
        == Some(false)
    {
        Arc::new(NoVerification(provider.clone()))
    } else {
        let roots = match &s.ca_certificates {
            Some(ids) if !ids.is_empty() => {
                let mut store = rustls::RootCertStore::empty();
                for id in ids {
                    key.push_str(&format!(";ca={id}"));
                    let Some(pem) = (input.ca)(*id) else {
                        tracing::error!(service = %s.id, ca = %id, "CA certificate not found: it is trusted by nothing");
                        continue;
                    };
                    key.push_str(&format!("@{:x}", fxhash(&pem)));
                    for der in parse_chain(&pem)? {
                        store
                            .add(der)
                            .map_err(|e| format!("CA certificate {id}: {e}"))?;
                    }
                }
                Arc::new(store)
            }
            _ => system_roots(),
        };
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("cannot build the certificate verifier: {e}"))?;
        Arc::new(DepthLimited {
            inner,
            depth: s.tls_verify_depth,
        })
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match input.client_certificate {
        Some(c) => {
            key.push_str(&format!(";client={}@{}", c.id, c.updated_at));
            builder
                .with_client_auth_cert(parse_chain(&c.cert)?, parse_key(&c.key)?)
                .map_err(|e| format!("client certificate {}: {e}", c.id))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(crate::upstream::UpstreamTls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        name,
        key,
    })
}

/// A short fingerprint of PEM text, to tell a changed CA apart in pool keys.
fn fxhash(text: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0).build_hasher();
    h.write(text.as_bytes());
    h.finish()
}

/// Verification with a bound on the chain: nginx's `proxy_ssl_verify_depth` (Kong's
/// `tls_verify_depth`), counted as the certificates the upstream presents above its own, plus
/// the root.
#[derive(Debug)]
struct DepthLimited {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    depth: Option<u8>,
}

impl rustls::client::danger::ServerCertVerifier for DepthLimited {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Some(depth) = self.depth
            && intermediates.len() + 1 > usize::from(depth)
        {
            return Err(rustls::Error::General(format!(
                "certificate chain longer than tls_verify_depth {depth}"
            )));
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `tls_verify: false`: any certificate is accepted (the handshake's signatures are still
/// checked, so the peer holds the key of the certificate it sent).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::SignatureScheme;

    fn pair(alg: &'static rcgen::SignatureAlgorithm, name: &str) -> CertPair {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        CertPair::from_pem(&cert.pem(), &key.serialize_pem()).unwrap()
    }

    /// The name in the leaf certificate `table` serves for `sni`.
    fn served(table: &SniTable, sni: &str) -> Option<String> {
        let p = table.find(sni)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&p.primary.cert[0]).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        Some(format!("{:?}", san.value.general_names[0]))
    }

    #[test]
    fn sni_lookup_prefers_exact_then_leading_then_trailing_wildcards_then_any() {
        let mut t = SniTable::default();
        assert!(t.is_empty());
        let ec = &rcgen::PKCS_ECDSA_P256_SHA256;
        t.insert("api.example.com", Arc::new(pair(ec, "exact.test")));
        t.insert("*.example.com", Arc::new(pair(ec, "leading.test")));
        t.insert("api.example.*", Arc::new(pair(ec, "trailing.test")));
        let found = |t: &SniTable, n: &str| served(t, n).unwrap_or_default();
        assert!(found(&t, "api.example.com").contains("exact.test"));
        assert!(found(&t, "API.Example.COM.").contains("exact.test"));
        assert!(found(&t, "www.example.com").contains("leading.test"));
        // A leading wildcard covers one label only.
        assert_eq!(served(&t, "a.b.example.com"), None);
        assert!(found(&t, "api.example.org").contains("trailing.test"));
        assert_eq!(served(&t, "example.com"), None);
        t.insert("*", Arc::new(pair(ec, "any.test")));
        assert!(found(&t, "a.b.example.com").contains("any.test"));
        assert!(found(&t, "api.example.com").contains("exact.test"));
    }

    #[test]
    fn a_second_pair_serves_clients_that_cannot_verify_the_first() {
        let ecdsa = pair(&rcgen::PKCS_ECDSA_P256_SHA256, "ec.test");
        let rsa = pair(&rcgen::PKCS_RSA_SHA256, "rsa.test");
        let both = CertPair {
            primary: ecdsa.primary.clone(),
            alt: Some(rsa.primary.clone()),
        };
        let ec_only = [SignatureScheme::ECDSA_NISTP256_SHA256];
        let rsa_only = [
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PKCS1_SHA256,
        ];
        let all = [
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::RSA_PSS_SHA256,
        ];
        assert!(Arc::ptr_eq(&both.choose(&ec_only), &ecdsa.primary));
        assert!(Arc::ptr_eq(&both.choose(&rsa_only), &rsa.primary));
        assert!(Arc::ptr_eq(&both.choose(&all), &ecdsa.primary));
        // Without a second pair the first is served whatever the client offers.
        assert!(Arc::ptr_eq(&ecdsa.choose(&rsa_only), &ecdsa.primary));
    }
}
