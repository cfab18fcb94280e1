//! The per-request context every plugin phase receives: what the router matched, who was
//! authenticated so far, and typed slots plugins use to pass results to later plugins.

use crate::snapshot::{RouteRuntime, Snapshot};
use gatehouse_core::gateway::Consumer;
use http::HeaderValue;
use serde_json::{Map, Value};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A request's id: 32 lowercase hex digits like Kong's, a random per-process prefix and a
/// counter. Held inline (no allocation); reads as a `&str` wherever one is wanted.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId([u8; 32]);

impl RequestId {
    /// The next id of this process.
    pub fn next() -> Self {
        // The prefix's digits are written once; each id writes only its counter's.
        static PREFIX: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = PREFIX.get_or_init(|| hex16(rand::random()));
        let mut id = [0u8; 32];
        id[..16].copy_from_slice(prefix);
        id[16..].copy_from_slice(&hex16(COUNTER.fetch_add(1, Ordering::Relaxed)));
        Self(id)
    }

    /// The id made of `prefix` and `counter` (16 hex digits each).
    pub fn from_parts(prefix: u64, counter: u64) -> Self {
        let mut id = [0u8; 32];
        id[..16].copy_from_slice(&hex16(prefix));
        id[16..].copy_from_slice(&hex16(counter));
        Self(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only hex digits are ever stored, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.0).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// `word` as 16 lowercase hex digits.
fn hex16(word: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((word >> (60 - 4 * i)) & 0xf) as usize];
    }
    digits
}

impl std::ops::Deref for RequestId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What an authentication plugin established about the caller (never the raw token).
#[derive(Debug, Clone, Default)]
pub struct Credential {
    /// The OAuth client id, when the credential has one (shared with the plugin's cache entry,
    /// like `claims`).
    pub client_id: Option<Arc<str>>,
    /// Granted scopes, space-separated.
    pub scope: Option<Arc<str>>,
    /// Every claim the identity provider returned (introspection answer), shared with the
    /// cache entry it came from rather than copied per request.
    pub claims: Arc<Map<String, Value>>,
}

/// One request's context, owned by the request's task.
pub struct RequestCtx {
    /// The configuration this request runs on (requests in flight keep their snapshot).
    pub snapshot: Arc<Snapshot>,
    /// The matched route, once routing is done.
    pub route: Option<Arc<RouteRuntime>>,
    /// Regex captures of the matched route path (empty for prefix paths).
    pub uri_captures: gatehouse_router::Captures,
    /// The id sent upstream and to the client as `X-Gatehouse-Request-Id`.
    pub request_id: RequestId,
    /// The TCP peer.
    pub client_addr: SocketAddr,
    /// When the request arrived.
    pub started: Instant,
    /// The consumer authenticated so far; consumer-scoped plugin instances follow it.
    pub consumer: Option<Arc<Consumer>>,
    /// Whether `consumer` is an anonymous fallback rather than an authenticated identity.
    pub anonymous: bool,
    /// The credential an authentication plugin accepted.
    pub credential: Option<Credential>,
    slots: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl RequestCtx {
    /// A fresh context.
    pub fn new(snapshot: Arc<Snapshot>, request_id: RequestId, client_addr: SocketAddr) -> Self {
        Self {
            snapshot,
            route: None,
            uri_captures: gatehouse_router::Captures::default(),
            request_id,
            client_addr,
            started: Instant::now(),
            consumer: None,
            anonymous: false,
            credential: None,
            slots: HashMap::new(),
        }
    }

    /// Stores a value for later phases or plugins, one per type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.slots.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// A value stored with [`RequestCtx::insert`].
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.slots
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref())
    }

    /// Sets the authenticated consumer and credential (Kong's `kong.client.authenticate`).
    pub fn authenticate(&mut self, consumer: Option<Arc<Consumer>>, credential: Credential) {
        self.consumer = consumer;
        self.anonymous = false;
        self.credential = Some(credential);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let a = RequestId::next();
        let b = RequestId::next();
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert_eq!(id.header_value().to_str().unwrap(), id.as_str());
            assert_eq!(id.to_string(), id.as_str());
        }
        assert_eq!(a.as_str()[..16], b.as_str()[..16], "one prefix per process");
        assert_eq!(
            RequestId::from_parts(0xabc, 0x12).as_str(),
            "0000000000000abc0000000000000012"
        );
    }
}
