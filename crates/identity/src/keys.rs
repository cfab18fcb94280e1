//! Signing keys: generation per algorithm, encryption at rest, JWK publication, sign and verify.
//!
//! Private keys are PKCS#8 documents sealed with AES-256-GCM under the [`MasterKey`], which lives
//! outside the database (`GATEHOUSE_MASTER_KEY` or a 0600 file in the data directory), so a
//! stolen database does not yield signing keys. RSA keys are 2048-bit and serve all six RSA
//! algorithms; ES256 uses P-256; EdDSA uses Ed25519.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use gatehouse_core::Timestamp;
use gatehouse_core::identity::{SigningAlgorithm, SigningKey};
use uuid::Uuid;

/// Key handling failures. None of them carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The master key is not 32 bytes of base64 or hex.
    #[error("the master key must be 32 bytes, given as 64 hex digits or base64")]
    BadMasterKey,
    /// A stored key could not be decrypted (wrong master key?) or parsed.
    #[error(
        "a stored signing key could not be decrypted or parsed; is the master key the one it was sealed with?"
    )]
    Unseal,
    /// The crypto library failed.
    #[error("key generation or signing failed")]
    Crypto,
}

/// The key that seals private keys at rest.
pub struct MasterKey(LessSafeKey);

impl MasterKey {
    /// From 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| KeyError::BadMasterKey)?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// From 64 hex digits or base64 (standard or URL-safe) of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| KeyError::BadMasterKey)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| B64URL.decode(text.trim_end_matches('=')))
                .map_err(|_| KeyError::BadMasterKey)?
        };
        if bytes.len() != 32 {
            return Err(KeyError::BadMasterKey);
        }
        Self::from_bytes(&bytes)
    }

    /// 32 fresh random bytes, hex-encoded, for a new key file.
    pub fn generate_hex() -> Result<String, KeyError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyError::Crypto)?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Seals `plaintext`; the output is `nonce || ciphertext || tag`. `aad` binds the blob to
    /// its owner (the key id), so a blob moved to another row does not open.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyError::Crypto)?;
        let mut buf = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| KeyError::Crypto)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens what [`MasterKey::seal`] produced.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(KeyError::Unseal);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Unseal)?;
        let mut buf = ct.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| KeyError::Unseal)?;
        Ok(plain.to_vec())
    }
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A decrypted key, ready to sign and verify.
pub struct LoadedKey {
    /// The `kid`.
    pub id: Uuid,
    /// The algorithm tokens are signed with.
    pub algorithm: SigningAlgorithm,
    /// The public JWK.
    pub jwk: serde_json::Value,
    /// Retirement time, if retired.
    pub retired_at: Option<Timestamp>,
    signer: Signer,
    public: Vec<u8>,
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn rsa_padding(alg: SigningAlgorithm) -> &'static dyn signature::RsaEncoding {
    match alg {
        SigningAlgorithm::RS384 => &signature::RSA_PKCS1_SHA384,
        SigningAlgorithm::RS512 => &signature::RSA_PKCS1_SHA512,
        SigningAlgorithm::PS256 => &signature::RSA_PSS_SHA256,
        SigningAlgorithm::PS384 => &signature::RSA_PSS_SHA384,
        SigningAlgorithm::PS512 => &signature::RSA_PSS_SHA512,
        _ => &signature::RSA_PKCS1_SHA256,
    }
}

fn verification(alg: SigningAlgorithm) -> &'static dyn signature::VerificationAlgorithm {
    match alg {
        SigningAlgorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        SigningAlgorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        SigningAlgorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        SigningAlgorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        SigningAlgorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        SigningAlgorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        SigningAlgorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        SigningAlgorithm::EdDSA => &signature::ED25519,
    }
}

impl LoadedKey {
    fn from_pkcs8(
        id: Uuid,
        algorithm: SigningAlgorithm,
        pkcs8: &[u8],
        retired_at: Option<Timestamp>,
    ) -> Result<Self, KeyError> {
        let kid = id.to_string();
        let (signer, public, jwk) = match algorithm {
            a if a.is_rsa() => {
                let kp = RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::Unseal)?;
                let public = kp.public_key().as_ref().to_vec();
                let n = B64URL.encode(kp.public_key().modulus().big_endian_without_leading_zero());
                let e = B64URL.encode(kp.public_key().exponent().big_endian_without_leading_zero());
                let jwk = serde_json::json!({
                    "kty": "RSA", "use": "sig", "alg": a.as_str(), "kid": kid, "n": n, "e": e,
                });
                (Signer::Rsa(kp), public, jwk)
            }
            SigningAlgorithm::ES256 => {
                let kp =
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                        .map_err(|_| KeyError::Unseal)?;
                let public = kp.public_key().as_ref().to_vec();
                // Uncompressed point: 0x04 || X (32) || Y (32).
                if public.len() != 65 {
                    return Err(KeyError::Unseal);
                }
                let jwk = serde_json::json!({
                    "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                    "x": B64URL.encode(&public[1..33]), "y": B64URL.encode(&public[33..65]),
                });
                (Signer::Ec(kp), public, jwk)
            }
            _ => {
                let kp = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::Unseal)?;
                let public = kp.public_key().as_ref().to_vec();
                let jwk = serde_json::json!({
                    "kty": "OKP", "use": "sig", "alg": "EdDSA", "kid": kid, "crv": "Ed25519",
                    "x": B64URL.encode(&public),
                });
                (Signer::Ed(kp), public, jwk)
            }
        };
        Ok(Self {
            id,
            algorithm,
            jwk,
            retired_at,
            signer,
            public,
        })
    }

    /// Decrypts a stored key.
    pub fn unseal(master: &MasterKey, stored: &SigningKey) -> Result<Self, KeyError> {
        let pkcs8 = master.open(stored.id.as_bytes(), &stored.encrypted_private_key)?;
        Self::from_pkcs8(stored.id, stored.algorithm, &pkcs8, stored.retired_at)
    }

    /// Signs `message` with the key's algorithm; the result is the JWS signature bytes.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.signer {
            Signer::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(
                    rsa_padding(self.algorithm),
                    &SystemRandom::new(),
                    message,
                    &mut sig,
                )
                .map_err(|_| KeyError::Crypto)?;
                Ok(sig)
            }
            Signer::Ec(kp) => kp
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto),
            Signer::Ed(kp) => Ok(kp.sign(message).as_ref().to_vec()),
        }
    }

    /// Checks a signature made with `alg` by this key. An `alg` the key was not made for fails.
    pub fn verify(&self, alg: SigningAlgorithm, message: &[u8], sig: &[u8]) -> bool {
        let compatible = match &self.signer {
            Signer::Rsa(_) => alg.is_rsa(),
            Signer::Ec(_) => alg == SigningAlgorithm::ES256,
            Signer::Ed(_) => alg == SigningAlgorithm::EdDSA,
        };
        compatible
            && signature::UnparsedPublicKey::new(verification(alg), &self.public)
                .verify(message, sig)
                .is_ok()
    }
}

/// Generates a key for `algorithm` and seals it; returns the record to store and the loaded key.
pub fn generate(
    master: &MasterKey,
    auth_server_id: Uuid,
    algorithm: SigningAlgorithm,
) -> Result<(SigningKey, LoadedKey), KeyError> {
    let pkcs8: Vec<u8> = match algorithm {
        a if a.is_rsa() => {
            let kp = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| KeyError::Crypto)?;
            let der = kp.as_der().map_err(|_| KeyError::Crypto)?;
            der.as_ref().to_vec()
        }
        SigningAlgorithm::ES256 => {
            EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|kp| kp.to_pkcs8v1())
                .map_err(|_| KeyError::Crypto)?
                .as_ref()
                .to_vec()
        }
        _ => Ed25519KeyPair::generate()
            .and_then(|kp| kp.to_pkcs8v1())
            .map_err(|_| KeyError::Crypto)?
            .as_ref()
            .to_vec(),
    };
    let id = Uuid::new_v4();
    let loaded = LoadedKey::from_pkcs8(id, algorithm, &pkcs8, None)?;
    let record = SigningKey {
        id,
        auth_server_id,
        algorithm,
        encrypted_private_key: master.seal(id.as_bytes(), &pkcs8)?,
        public_jwk: loaded.jwk.to_string(),
        created_at: Timestamp::now(),
        retired_at: None,
    };
    Ok((record, loaded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::parse(&MasterKey::generate_hex().unwrap()).unwrap()
    }

    #[test]
    fn every_algorithm_signs_and_verifies_after_a_round_trip_through_storage() {
        let m = master();
        for alg in SigningAlgorithm::ALL {
            let (record, _) = generate(&m, Uuid::new_v4(), alg).unwrap();
            assert!(
                !record
                    .encrypted_private_key
                    .windows(4)
                    .any(|w| w == b"\x30\x82\x04\xbd")
            );
            let key = LoadedKey::unseal(&m, &record).unwrap();
            let sig = key.sign(b"header.payload").unwrap();
            assert!(key.verify(alg, b"header.payload", &sig), "{alg:?}");
            assert!(!key.verify(alg, b"header.payloaX", &sig), "{alg:?}");
            assert_eq!(key.jwk["kid"], record.id.to_string());
            assert_eq!(key.jwk["alg"], alg.as_str());
        }
    }

    #[test]
    fn a_key_does_not_open_under_another_master_key_or_row() {
        let m = master();
        let (record, _) = generate(&m, Uuid::new_v4(), SigningAlgorithm::ES256).unwrap();
        assert!(matches!(
            LoadedKey::unseal(&master(), &record),
            Err(KeyError::Unseal)
        ));
        let mut moved = record.clone();
        moved.id = Uuid::new_v4();
        assert!(matches!(
            LoadedKey::unseal(&m, &moved),
            Err(KeyError::Unseal)
        ));
    }

    #[test]
    fn master_keys_parse_from_hex_and_base64_only_at_32_bytes() {
        assert!(MasterKey::parse(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_ok());
        assert!(MasterKey::parse("short").is_err());
        assert!(MasterKey::parse(&"ab".repeat(16)).is_err());
    }

    #[test]
    fn an_rsa_key_refuses_an_ec_algorithm() {
        let m = master();
        let (_, key) = generate(&m, Uuid::new_v4(), SigningAlgorithm::RS256).unwrap();
        let sig = key.sign(b"x").unwrap();
        assert!(!key.verify(SigningAlgorithm::ES256, b"x", &sig));
        assert!(!key.verify(SigningAlgorithm::RS384, b"x", &sig));
    }
}
