//! Certificates, SNIs and CA certificates in the Kong Admin API's shape.
//!
//! A certificate is a PEM chain and its private key, with an optional second pair
//! (`cert_alt`/`key_alt`) of another key type so that one entity can serve both ECDSA and RSA
//! clients. SNIs are the host names a certificate answers for (exact or one wildcard label).
//! CA certificates are trust anchors that services name to verify their upstreams.
//!
//! Validation parses the PEM, checks that each key matches its certificate, and (for CA
//! certificates) that the certificate is a current CA. The private keys are plain here; the
//! admin layer seals them before they are stored.

use super::{CoreEntity, EntityKind, ForeignKey, entity_reader, to_value};
use crate::kong_schema::{FieldErrors, KongReader};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The most PEM text one certificate or key field may hold (a long chain fits easily).
pub const MAX_PEM_BYTES: usize = 64 * 1024;

/// The public-key algorithm of a certificate, which decides the clients it can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA.
    Rsa,
    /// ECDSA on a named curve.
    Ecdsa,
    /// Ed25519 or Ed448.
    EdDsa,
    /// Any other algorithm (refused: the proxy could not sign with it).
    Other,
}

/// A parsed certificate chain: the DER certificates, leaf first.
pub fn parse_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(format!("PEM text longer than {MAX_PEM_BYTES} bytes"));
    }
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("PEM could not be read ({e})"))?;
    if chain.is_empty() {
        return Err("no PEM CERTIFICATE block found".to_owned());
    }
    for (i, der) in chain.iter().enumerate() {
        x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("certificate {} of the chain is not X.509 ({e})", i + 1))?;
    }
    Ok(chain)
}

/// A parsed private key (PKCS#8, PKCS#1 RSA or SEC1 EC, in PEM).
pub fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(format!("PEM text longer than {MAX_PEM_BYTES} bytes"));
    }
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key block found".to_owned(),
        other => format!("PEM could not be read ({other})"),
    })?;
    rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|_| "unsupported key type or size".to_owned())?;
    Ok(key)
}

/// The key type of a DER certificate.
pub fn key_type(cert: &CertificateDer<'_>) -> KeyType {
    const RSA: &str = "1.2.840.113549.1.1.1";
    const EC: &str = "1.2.840.10045.2.1";
    const ED25519: &str = "1.3.101.112";
    const ED448: &str = "1.3.101.113";
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return KeyType::Other;
    };
    match parsed
        .tbs_certificate
        .subject_pki
        .algorithm
        .algorithm
        .to_id_string()
        .as_str()
    {
        RSA => KeyType::Rsa,
        EC => KeyType::Ecdsa,
        ED25519 | ED448 => KeyType::EdDsa,
        _ => KeyType::Other,
    }
}

/// Whether `key`'s public half is the one `cert` certifies.
pub fn key_matches(cert: &CertificateDer<'_>, key: &PrivateKeyDer<'_>) -> bool {
    let Ok(signer) = rustls::crypto::aws_lc_rs::sign::any_supported_type(key) else {
        return false;
    };
    let Some(public) = signer.public_key() else {
        return false;
    };
    x509_parser::parse_x509_certificate(cert)
        .is_ok_and(|(_, c)| c.tbs_certificate.subject_pki.raw == public.as_ref())
}

/// A certificate: a PEM chain and its key, optionally a second pair of another key type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    /// Id.
    pub id: Uuid,
    /// PEM chain, leaf first.
    pub cert: String,
    /// PEM private key of `cert` (sealed at rest by the admin layer).
    pub key: String,
    /// Second PEM chain, of another key type than `cert`.
    pub cert_alt: Option<String>,
    /// PEM private key of `cert_alt`.
    pub key_alt: Option<String>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// A validated certificate and the SNI names its body listed (Kong's virtual `snis` field:
/// `None` when absent, which leaves the certificate's SNIs as they are).
pub struct CertificateInput {
    /// The certificate.
    pub certificate: Certificate,
    /// The names `snis` listed.
    pub snis: Option<Vec<String>>,
}

fn read_chain(
    r: &mut KongReader,
    field: &str,
    required: bool,
) -> Option<(String, CertificateDer<'static>)> {
    let pem = if required {
        r.required_string(field)?
    } else {
        r.string(field)?
    };
    match parse_chain(&pem) {
        Ok(mut chain) => Some((pem, chain.swap_remove(0))),
        Err(e) => {
            r.errors.add(field, format!("invalid certificate: {e}"));
            None
        }
    }
}

fn read_key(
    r: &mut KongReader,
    field: &str,
    required: bool,
) -> Option<(String, PrivateKeyDer<'static>)> {
    let pem = if required {
        r.required_string(field)?
    } else {
        r.string(field)?
    };
    match parse_key(&pem) {
        Ok(key) => Some((pem, key)),
        Err(e) => {
            r.errors.add(field, format!("invalid key: {e}"));
            None
        }
    }
}

impl Certificate {
    /// Validates a request body into a certificate (and the `snis` it lists).
    pub fn from_input(
        id: Uuid,
        input: Value,
        created_at: i64,
        now: i64,
    ) -> Result<CertificateInput, FieldErrors> {
        let mut r = entity_reader(input)?;
        let cert = read_chain(&mut r, "cert", true);
        let key = read_key(&mut r, "key", true);
        let has_alt = (r.has("cert_alt"), r.has("key_alt"));
        let cert_alt = read_chain(&mut r, "cert_alt", false);
        let key_alt = read_key(&mut r, "key_alt", false);
        let snis = read_sni_names(&mut r);
        let tags = r.tags();
        if has_alt.0 != has_alt.1 {
            r.errors
                .entity("all or none of these fields must be set: 'cert_alt', 'key_alt'");
        }
        if let (Some((_, c)), Some((_, k))) = (&cert, &key)
            && !key_matches(c, k)
        {
            r.errors.entity("certificate does not match key");
        }
        if let (Some((_, c)), Some((_, k))) = (&cert_alt, &key_alt)
            && !key_matches(c, k)
        {
            r.errors
                .entity("alternative certificate does not match key");
        }
        if let (Some((_, c)), Some((_, a)), Some(_)) = (&cert, &cert_alt, &key_alt)
            && key_type(c) == key_type(a)
        {
            r.errors.entity(
                "certificate and alternative certificate need to have different type (e.g. RSA and ECDSA), the provided certificates were both of the same type",
            );
        }
        r.finish()?;
        let (Some((cert, _)), Some((key, _))) = (cert, key) else {
            // Unreachable: a missing or invalid pair recorded an error above.
            let mut e = FieldErrors::new();
            e.add("cert", "required field missing");
            return Err(e);
        };
        Ok(CertificateInput {
            certificate: Self {
                id,
                cert,
                key,
                cert_alt: cert_alt.map(|(p, _)| p),
                key_alt: key_alt.map(|(p, _)| p),
                tags,
                created_at,
                updated_at: now,
            },
            snis,
        })
    }

    /// The stored form.
    pub fn to_entity(&self, control_plane_id: Uuid) -> CoreEntity {
        CoreEntity {
            control_plane_id,
            kind: EntityKind::Certificate,
            id: self.id,
            endpoint_key: None,
            alt_key: None,
            service_id: None,
            route_id: None,
            consumer_id: None,
            certificate_id: None,
            created_at: self.created_at,
            body: to_value(self),
        }
    }
}

fn read_sni_names(r: &mut KongReader) -> Option<Vec<String>> {
    let names = r.strings("snis", false)?;
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        match validate_sni_name(&name) {
            Ok(n) if out.contains(&n) => {
                r.errors.add("snis", format!("{name} is duplicated"));
                return None;
            }
            Ok(n) => out.push(n),
            Err(e) => {
                r.errors.add("snis", e);
                return None;
            }
        }
    }
    Some(out)
}

/// Validates an SNI name as Kong's `wildcard_host` does (a host name without port, not an IP,
/// with at most one `*` as its leftmost or rightmost character; `*` alone matches every name)
/// and returns it in lower case, the form handshakes are matched in.
pub fn validate_sni_name(name: &str) -> Result<String, String> {
    if name == "*" {
        return Ok(name.to_owned());
    }
    if let Some(at) = name.find('*') {
        if at != 0 && at + 1 != name.len() {
            return Err("wildcard must be leftmost or rightmost character".to_owned());
        }
        if name.matches('*').count() > 1 {
            return Err("only one wildcard must be specified".to_owned());
        }
    }
    let probe = name.replacen('*', "wildcard", 1);
    gatehouse_router::validate_route_sni(&probe)?;
    Ok(name.to_ascii_lowercase())
}

/// An SNI: a host name that selects a certificate during the TLS handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sni {
    /// Id.
    pub id: Uuid,
    /// Host name, lower case; `*.example.com` and `example.*` are wildcards.
    pub name: String,
    /// The certificate it selects.
    pub certificate: ForeignKey,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

impl Sni {
    /// Validates a request body into an SNI.
    pub fn from_input(
        id: Uuid,
        input: Value,
        created_at: i64,
        now: i64,
    ) -> Result<Self, FieldErrors> {
        let mut r = entity_reader(input)?;
        let name = r
            .required_string("name")
            .and_then(|n| match validate_sni_name(&n) {
                Ok(n) => Some(n),
                Err(e) => {
                    r.errors.add("name", e);
                    None
                }
            });
        let certificate = if r.has("certificate") {
            r.foreign("certificate")
        } else {
            r.ignore("certificate");
            r.errors.add("certificate", "required field missing");
            None
        };
        let tags = r.tags();
        r.finish()?;
        let (Some(name), Some(certificate)) = (name, certificate) else {
            let mut e = FieldErrors::new();
            e.add("name", "required field missing");
            return Err(e);
        };
        Ok(Self {
            id,
            name,
            certificate: ForeignKey { id: certificate },
            tags,
            created_at,
            updated_at: now,
        })
    }

    /// The stored form.
    pub fn to_entity(&self, control_plane_id: Uuid) -> CoreEntity {
        CoreEntity {
            control_plane_id,
            kind: EntityKind::Sni,
            id: self.id,
            endpoint_key: Some(self.name.clone()),
            alt_key: None,
            service_id: None,
            route_id: None,
            consumer_id: None,
            certificate_id: Some(self.certificate.id),
            created_at: self.created_at,
            body: to_value(self),
        }
    }
}

/// A CA certificate: a trust anchor for verifying upstreams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaCertificate {
    /// Id.
    pub id: Uuid,
    /// One PEM certificate with the CA basic constraint.
    pub cert: String,
    /// SHA-256 of the DER certificate, hex; unique per control plane.
    pub cert_digest: String,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

impl CaCertificate {
    /// Validates a request body into a CA certificate (`cert_digest` is computed; a client
    /// may send it back as read from a GET).
    pub fn from_input(
        id: Uuid,
        input: Value,
        created_at: i64,
        now: i64,
    ) -> Result<Self, FieldErrors> {
        let mut r = entity_reader(input)?;
        r.ignore("cert_digest");
        let cert = r.required_string("cert");
        let tags = r.tags();
        let mut digest = None;
        if let Some(pem) = &cert {
            match parse_chain(pem) {
                Err(e) => r.errors.add("cert", format!("invalid certificate: {e}")),
                Ok(chain) if chain.len() > 1 => r
                    .errors
                    .entity("please submit only one certificate at a time"),
                Ok(chain) => match check_ca(&chain[0], now) {
                    Err(e) => r.errors.entity(e),
                    Ok(()) => digest = Some(sha256_hex(&chain[0])),
                },
            }
        }
        r.finish()?;
        let (Some(cert), Some(cert_digest)) = (cert, digest) else {
            let mut e = FieldErrors::new();
            e.add("cert", "required field missing");
            return Err(e);
        };
        Ok(Self {
            id,
            cert,
            cert_digest,
            tags,
            created_at,
            updated_at: now,
        })
    }

    /// The stored form (the digest is the unique alternate key).
    pub fn to_entity(&self, control_plane_id: Uuid) -> CoreEntity {
        CoreEntity {
            control_plane_id,
            kind: EntityKind::CaCertificate,
            id: self.id,
            endpoint_key: None,
            alt_key: Some(self.cert_digest.clone()),
            service_id: None,
            route_id: None,
            consumer_id: None,
            certificate_id: None,
            created_at: self.created_at,
            body: to_value(self),
        }
    }
}

fn check_ca(der: &CertificateDer<'_>, now: i64) -> Result<(), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("invalid certificate: {e}"))?;
    let validity = cert.validity();
    if now > validity.not_after.timestamp() {
        return Err("certificate expired, \"Not After\" time is in the past".to_owned());
    }
    if now < validity.not_before.timestamp() {
        return Err(
            "certificate is not yet valid, \"Not Before\" time is in the future".to_owned(),
        );
    }
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if !is_ca {
        return Err(
            "certificate does not appear to be a CA because it is missing the \"CA\" basic constraint"
                .to_owned(),
        );
    }
    Ok(())
}

fn sha256_hex(der: &[u8]) -> String {
    use std::fmt::Write;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
