//! Random identifiers: issuer slugs, client ids and generated secrets.
//!
//! Kong Identity hands out 16 lowercase alphanumerics for issuer hosts and client ids and 24 for
//! generated client secrets; we keep those shapes so scripts that check them keep working.

use rand::Rng;
use rand::distr::Alphanumeric;

/// Length of an issuer slug (the last path segment of an issuer URL).
pub const ISSUER_SLUG_LEN: usize = 16;
/// Length of a generated client id.
pub const CLIENT_ID_LEN: usize = 16;
/// Length of a generated client secret (≈124 bits of entropy).
pub const CLIENT_SECRET_LEN: usize = 24;

/// `len` random characters from `[a-z0-9]`, drawn from the operating system's CSPRNG.
pub fn lower_alnum(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| {
            // Alphanumeric yields [A-Za-z0-9]; lower-casing would bias towards letters, so
            // redraw until the character is already lowercase or a digit.
            loop {
                let c = char::from(rng.sample(Alphanumeric));
                if c.is_ascii_lowercase() || c.is_ascii_digit() {
                    break c;
                }
            }
        })
        .collect()
}

/// A fresh issuer slug.
pub fn issuer_slug() -> String {
    lower_alnum(ISSUER_SLUG_LEN)
}

/// A fresh client id.
pub fn client_id() -> String {
    lower_alnum(CLIENT_ID_LEN)
}

/// A fresh client secret.
pub fn client_secret() -> String {
    lower_alnum(CLIENT_SECRET_LEN)
}

/// Whether `s` has the shape of an issuer slug.
pub fn is_issuer_slug(s: &str) -> bool {
    s.len() == ISSUER_SLUG_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_kong_identity_shapes() {
        let slug = issuer_slug();
        assert!(is_issuer_slug(&slug), "{slug}");
        assert_eq!(client_id().len(), 16);
        let secret = client_secret();
        assert_eq!(secret.len(), 24);
        assert!(
            secret
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(client_secret(), secret);
    }

    #[test]
    fn slug_shape_is_checked() {
        assert!(!is_issuer_slug("ABCDEFGHIJKLMNOP"));
        assert!(!is_issuer_slug("short"));
        assert!(is_issuer_slug("hw8bfcjlw0woj0bj"));
    }
}
