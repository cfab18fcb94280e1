//! TLS for the admin and identity listeners: a rustls server configuration (aws-lc-rs, TLS
//! 1.2 and 1.3 only, HTTP/1.1 by ALPN) read from a PEM certificate chain and private key.

pub use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Why a listener's certificate or key cannot be used. Never shows key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read, or holds no PEM block of the expected kind.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the pair: the key does not match the certificate, or is of a kind it
    /// does not sign with.
    #[error("{cert} and {key}: {reason}")]
    Pair {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// rustls's reason.
        reason: String,
    },
}

/// The server configuration of a listener serving `cert` (PEM: the certificate first, then
/// any intermediates) with `key` (PEM: PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let file_error = |path: &Path, reason: String| TlsError::File {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(cert, "no CERTIFICATE block".into()));
    }
    // The error of a key file never quotes its content.
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_error(key, format!("no usable private key ({})", kind_of(&e))))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let pair_error = |reason: String| TlsError::Pair {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        reason,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| pair_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| pair_error(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn kind_of(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error;
    match e {
        Error::NoItemsFound => "no PRIVATE KEY block",
        Error::Io(_) => "cannot be read",
        _ => "malformed PEM",
    }
}
