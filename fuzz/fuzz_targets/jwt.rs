//! `jwt`: access-token parsing (`gatehouse_identity::jwt::parse`) and signature checks
//! (`LoadedKey::verify`), composed as the identity server composes them (key found by `kid`,
//! then the signature over the signing input), with two fixed TEST-ONLY keys: Ed25519 and
//! RSA (RS256), both of which sign deterministically.
//!
//! For every input it checks that:
//! - parsing arbitrary text never panics, and a parsed token's signing input is the text
//!   before its second dot;
//! - a token that verifies is the one and only token for its signing input: its signature is
//!   what the key itself makes for those bytes (when the header's `alg` is the key's), and
//!   the signature part is the canonical Base64url of the signature bytes, so no other
//!   spelling of the same signature verifies (libFuzzer starts from real tokens signed by
//!   OpenSSL, `tools/jwt-seeds.sh`, and mutates them);
//! - a token the target signs with fuzzer-chosen claims parses back to the same key id,
//!   algorithm and claims, and verifies, or is refused as longer than `jwt::MAX_TOKEN` (which
//!   `parse` also refuses), never signed and then unreadable; after
//!   fuzzer-chosen edits (replace, insert, delete a byte), it verifies only if it is
//!   unchanged.
//!
//! Input: a control byte; even: the rest is a token. Odd: a key choice, an edit count, the
//! edits (3 bytes each), then the claim text.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use gatehouse_core::Timestamp;
use gatehouse_core::identity::{SigningAlgorithm, SigningKey};
use gatehouse_fuzz::control;
use gatehouse_identity::jwt;
use gatehouse_identity::keys::{LoadedKey, MasterKey};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use uuid::Uuid;

/// The Ed25519 TEST-ONLY key's seed (RFC 8032's first test vector); never a real key.
const ED25519_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const ED25519_KID: &str = "7b3f1c2e-0d4a-4e5b-8c6d-9e0f1a2b3c4d";
/// The RSA TEST-ONLY key (made with `openssl genpkey`), PKCS#8 DER.
const RS256_PKCS8: &[u8] = include_bytes!("../keys/rs256-TEST-ONLY.pk8");
const RS256_KID: &str = "4c3b2a19-0807-4605-a4b3-c2d1e0f9a8b7";
/// The bytes an edit may put into a token: the Base64url alphabet, the separator, and the
/// characters of the other Base64 alphabets and of padding.
const EDIT_BYTES: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+/= ";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A key as the identity server holds it: sealed with a master key, then unsealed.
fn load(master: &MasterKey, kid: &str, algorithm: SigningAlgorithm, pkcs8: &[u8]) -> LoadedKey {
    let id = Uuid::parse_str(kid).expect("kid");
    let stored = SigningKey {
        id,
        auth_server_id: Uuid::nil(),
        algorithm,
        encrypted_private_key: master.seal(id.as_bytes(), pkcs8).expect("seal"),
        public_jwk: String::new(),
        created_at: Timestamp::now(),
        retired_at: None,
    };
    LoadedKey::unseal(master, &stored)
        .unwrap_or_else(|e| panic!("test key {kid} does not load: {e:?}"))
}

fn keys() -> &'static [LoadedKey; 2] {
    static KEYS: OnceLock<[LoadedKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let master = MasterKey::parse(&"42".repeat(32)).expect("master key");
        // PKCS#8 v1 for Ed25519: a fixed DER prefix, then the seed (RFC 8410).
        let mut ed = hex("302e020100300506032b657004220420");
        ed.extend_from_slice(&hex(ED25519_SEED));
        [
            load(&master, ED25519_KID, SigningAlgorithm::EdDSA, &ed),
            load(&master, RS256_KID, SigningAlgorithm::RS256, RS256_PKCS8),
        ]
    })
}

/// Parses and verifies `token` as the identity server does; `true` when it verifies. Checks
/// the parse and, for a token that verifies, that it is the only token for its bytes.
fn verifies(token: &str) -> bool {
    let Some(parsed) = jwt::parse(token) else {
        return false;
    };
    let (signing_input, signature_text) = token
        .rsplit_once('.')
        .expect("a parsed token has three parts");
    assert_eq!(parsed.signing_input, signing_input);
    let Some(key) = keys().iter().find(|k| k.id == parsed.kid) else {
        return false;
    };
    if !key.verify(parsed.alg, signing_input.as_bytes(), &parsed.signature) {
        return false;
    }
    assert_eq!(
        B64URL.encode(&parsed.signature),
        signature_text,
        "a signature verified under a non-canonical spelling"
    );
    if parsed.alg == key.algorithm {
        let ours = key.sign(signing_input.as_bytes()).expect("sign");
        assert_eq!(
            ours, parsed.signature,
            "a signature the key would not make verified ({:?})",
            parsed.alg
        );
    }
    true
}

/// Applies `edits` (position, kind, byte) to `token`.
fn edit(token: &str, edits: &[u8]) -> String {
    let mut bytes = token.as_bytes().to_vec();
    for e in edits.chunks_exact(3) {
        let at = usize::from(e[0]) * 7 % (bytes.len() + 1);
        let byte = EDIT_BYTES[usize::from(e[2]) % EDIT_BYTES.len()];
        match e[1] % 3 {
            0 if at < bytes.len() => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            _ if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => {}
        }
    }
    String::from_utf8(bytes).expect("edits are ASCII")
}

fuzz_target!(|data: &[u8]| {
    let (ctl, rest) = control::take::<1>(data);
    if ctl[0] % 2 == 0 {
        if let Ok(token) = std::str::from_utf8(rest) {
            verifies(token);
        }
        return;
    }

    let (ctl, rest) = control::take::<2>(rest);
    let key = &keys()[usize::from(ctl[0]) % 2];
    let edits_len = (usize::from(ctl[1]) % 8 * 3).min(rest.len());
    let (edits, claim) = rest.split_at(edits_len);
    let claims = serde_json::json!({
        "iss": "https://issuer.example/fuzz",
        "sub": String::from_utf8_lossy(claim),
        "n": claim.len(),
    });
    // A token too long to read back is never made (the finding replayed from
    // `fuzz/regressions/jwt/`); any other is read back exactly.
    let token = match jwt::sign(key, &claims) {
        Ok(token) => token,
        Err(jwt::SignError::TooLong(len)) => {
            assert!(len > jwt::MAX_TOKEN, "refused a {len}-byte token");
            return;
        }
        Err(e) => panic!("sign: {e}"),
    };
    assert!(token.len() <= jwt::MAX_TOKEN, "signed a {}-byte token", token.len());
    let parsed = jwt::parse(&token).expect("a token we signed parses");
    assert_eq!(parsed.kid, key.id);
    assert_eq!(parsed.alg, key.algorithm);
    assert_eq!(serde_json::Value::Object(parsed.claims), claims);
    assert!(verifies(&token), "a token we signed does not verify");

    let edited = edit(&token, edits);
    assert_eq!(
        verifies(&edited),
        edited == token,
        "edited token {edited:?} (from {token:?})"
    );
});
