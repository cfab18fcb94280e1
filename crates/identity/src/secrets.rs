//! Client secrets: hashed at rest, verified in constant time, and cheap to verify again.
//!
//! A secret is stored as `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>` (600,000 iterations,
//! OWASP's figure for PBKDF2-HMAC-SHA256), so a stolen database does not reveal user-chosen
//! secrets. That costs a few hundred milliseconds, so the token endpoint would crawl if it paid
//! it per request: [`VerifiedSecrets`] remembers, per secret id, a keyed digest of the last
//! secret that verified, and a repeat presentation is checked against that in microseconds.
//! The digest key is random per process, so the in-memory cache is useless outside it.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::pbkdf2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::num::NonZeroU32;
use uuid::Uuid;

/// PBKDF2 iterations for new hashes.
pub const ITERATIONS: u32 = 600_000;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// Hashes a secret for storage.
pub fn hash(secret: &str) -> String {
    hash_with(secret, ITERATIONS)
}

fn hash_with(secret: &str, iterations: u32) -> String {
    let mut salt = [0u8; SALT_LEN];
    // SystemRandom only fails when the OS has no entropy source, which we cannot run without.
    if SystemRandom::new().fill(&mut salt).is_err() {
        salt = *Uuid::new_v4().as_bytes();
    }
    let mut out = [0u8; HASH_LEN];
    let iters = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iters,
        &salt,
        secret.as_bytes(),
        &mut out,
    );
    format!(
        "pbkdf2-sha256${iterations}${}${}",
        B64.encode(salt),
        B64.encode(out)
    )
}

/// A hash of a random secret, made once: verifying against it costs what verifying a real
/// client's secret costs, so an unknown client id is refused as slowly as a wrong secret.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash(&Uuid::new_v4().to_string()))
}

/// Checks `secret` against a stored hash, in constant time. A malformed hash never verifies.
pub fn verify(secret: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iters), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iters), Ok(salt), Ok(hash)) =
        (iters.parse::<u32>(), B64.decode(salt), B64.decode(hash))
    else {
        return false;
    };
    let Some(iters) = NonZeroU32::new(iters) else {
        return false;
    };
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iters,
        &salt,
        secret.as_bytes(),
        &hash,
    )
    .is_ok()
}

/// Remembers which secret last verified for each secret id.
pub struct VerifiedSecrets {
    key: hmac::Key,
    verified: RwLock<HashMap<Uuid, hmac::Tag>>,
}

impl Default for VerifiedSecrets {
    fn default() -> Self {
        let mut k = [0u8; 32];
        if SystemRandom::new().fill(&mut k).is_err() {
            k = [0u8; 32];
            k[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        }
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &k),
            verified: RwLock::new(HashMap::new()),
        }
    }
}

impl VerifiedSecrets {
    /// Whether `secret` matches the secret `id` with `stored` hash. A cache hit costs one HMAC;
    /// a miss runs PBKDF2 (call from a blocking context) and caches a success.
    pub fn check(&self, id: Uuid, stored: &str, secret: &str) -> bool {
        if let Some(hit) = self.cached(id, secret) {
            return hit;
        }
        if verify(secret, stored) {
            let tag = hmac::sign(&self.key, secret.as_bytes());
            self.verified.write().insert(id, tag);
            true
        } else {
            false
        }
    }

    /// `Some(true)` when `secret` is the one that last verified for `id`; `None` when unknown
    /// (a different secret may still be right: the caller then runs the full check).
    pub fn cached(&self, id: Uuid, secret: &str) -> Option<bool> {
        let map = self.verified.read();
        let known = map.get(&id)?;
        let tag = hmac::sign(&self.key, secret.as_bytes());
        verify_slices_are_equal(known.as_ref(), tag.as_ref())
            .is_ok()
            .then_some(true)
    }

    /// Forgets secrets that no longer exist or are disabled.
    pub fn retain(&self, live: impl Fn(&Uuid) -> bool) {
        self.verified.write().retain(|id, _| live(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_the_right_secret_and_hide_it() {
        let h = hash_with("s3cret", 1000);
        assert!(!h.contains("s3cret"));
        assert!(verify("s3cret", &h));
        assert!(!verify("s3cret!", &h));
        assert!(!verify("s3cret", "garbage"));
        assert!(!verify("s3cret", "pbkdf2-sha256$0$AAAA$AAAA"));
        assert_ne!(hash_with("s3cret", 1000), h, "salted");
    }

    #[test]
    fn verified_cache_answers_repeat_checks_and_forgets() {
        let cache = VerifiedSecrets::default();
        let id = Uuid::new_v4();
        let h = hash_with("abc", 1000);
        assert_eq!(cache.cached(id, "abc"), None);
        assert!(cache.check(id, &h, "abc"));
        assert_eq!(cache.cached(id, "abc"), Some(true));
        assert_eq!(cache.cached(id, "abd"), None);
        assert!(!cache.check(id, &h, "abd"));
        cache.retain(|_| false);
        assert_eq!(cache.cached(id, "abc"), None);
    }
}
