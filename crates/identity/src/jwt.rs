//! JWS compact serialisation: minting and checking the access tokens (RFC 7515/7519).

use crate::keys::{KeyError, LoadedKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use gatehouse_core::identity::SigningAlgorithm;
use uuid::Uuid;

/// Signs `claims` with `key`: header `{"typ":"JWT","alg":…,"kid":…}`.
pub fn sign(key: &LoadedKey, claims: &serde_json::Value) -> Result<String, SignError> {
    let header =
        serde_json::json!({"typ": "JWT", "alg": key.algorithm.as_str(), "kid": key.id.to_string()});
    let mut out = String::with_capacity(512);
    out.push_str(&B64URL.encode(header.to_string()));
    out.push('.');
    out.push_str(&B64URL.encode(claims.to_string()));
    // Refuse before spending a signature on what could never be read back.
    if out.len() > MAX_TOKEN {
        return Err(SignError::TooLong(out.len()));
    }
    let sig = key.sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&B64URL.encode(sig));
    if out.len() > MAX_TOKEN {
        return Err(SignError::TooLong(out.len()));
    }
    Ok(out)
}

/// The longest compact JWS that [`parse`] reads, and so the longest [`sign`] makes: a token
/// must fit in a request head behind the gateway, and one the introspection endpoint refuses
/// would be issued but never honoured.
pub const MAX_TOKEN: usize = 16 * 1024;

/// Why [`sign`] made no token.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key could not sign.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The claims make a token longer than [`MAX_TOKEN`] bytes.
    #[error(
        "the claims make a token of at least {0} bytes, longer than the {MAX_TOKEN}-byte limit"
    )]
    TooLong(usize),
}

/// A token whose structure was parsed but whose signature is not yet checked.
pub struct Parsed<'a> {
    /// `header.payload`, the signed bytes.
    pub signing_input: &'a str,
    /// The header's `alg`.
    pub alg: SigningAlgorithm,
    /// The header's `kid`.
    pub kid: Uuid,
    /// The signature.
    pub signature: Vec<u8>,
    /// The payload, decoded.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// Parses a compact JWS; `None` for anything malformed (never panics on garbage).
pub fn parse(token: &str) -> Option<Parsed<'_>> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: serde_json::Value = serde_json::from_slice(&B64URL.decode(h).ok()?).ok()?;
    if header
        .get("typ")
        .and_then(|t| t.as_str())
        .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
        return None;
    }
    let alg = SigningAlgorithm::parse(header.get("alg")?.as_str()?)?;
    let kid = Uuid::parse_str(header.get("kid")?.as_str()?).ok()?;
    let claims = match serde_json::from_slice(&B64URL.decode(p).ok()?).ok()? {
        serde_json::Value::Object(m) => m,
        _ => return None,
    };
    Some(Parsed {
        signing_input: &token[..h.len() + 1 + p.len()],
        alg,
        kid,
        signature: B64URL.decode(s).ok()?,
        claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{MasterKey, generate};

    #[test]
    fn round_trip_and_garbage() {
        let m = MasterKey::parse(&"11".repeat(32)).unwrap();
        let (_, key) = generate(&m, Uuid::new_v4(), SigningAlgorithm::EdDSA).unwrap();
        let t = sign(&key, &serde_json::json!({"sub": "x"})).unwrap();
        let p = parse(&t).unwrap();
        assert_eq!(p.kid, key.id);
        assert!(key.verify(p.alg, p.signing_input.as_bytes(), &p.signature));
        assert_eq!(p.claims["sub"], "x");
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            "eyJhbGciOiJub25lIn0.e30.",
            &t[1..],
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
