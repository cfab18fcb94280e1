//! The introspection cache of one plugin instance (DESIGN §4).
//!
//! * Keys are the SHA-256 of the token: the raw token is never stored. The cache lives in the
//!   plugin instance, so two instances (two identity servers) never share results.
//! * An active result expires at `min(now + ttl, exp)`; with `ttl` 0 at `exp` only (never when
//!   the answer has no `exp`). An authoritative `active: false` expires after 5 seconds.
//!   Failures (transport, timeout, non-200, unparsable) are never stored.
//! * An answer of this process's own identity server is used only while that server's
//!   invalidation epoch is where it was when the answer was given
//!   ([`super::client::LocalIntrospection::invalidation_epoch`]): a revocation or a deleted
//!   client takes effect on the next request, whatever the `ttl`. Other servers' answers
//!   follow the `ttl` rule (their epoch is always 0).
//! * Memory is bounded: at most `cache_size` entries (quick_cache's S3-FIFO eviction).
//! * One introspection call per token at a time: concurrent misses for the same token wait for
//!   the first one's result (a failure is shared with the requests that waited for it, and
//!   still not stored).

use super::client::CallError;
use http::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
// tokio's clock (the std one outside tests): a test can move it forward instead of sleeping.
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// How long an authoritative `active: false` answer is kept.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// A cache key: SHA-256 of the token.
pub type Key = [u8; 32];

/// The cache key of `token`.
pub fn key(token: &str) -> Key {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(digest.as_ref());
    k
}

/// An active token, with everything the hot path needs precomputed.
#[derive(Debug)]
pub struct Active {
    /// Every field of the introspection answer.
    pub claims: std::sync::Arc<Map<String, Value>>,
    /// `client_id`.
    pub client_id: Option<Arc<str>>,
    /// `scope`.
    pub scope: Option<Arc<str>>,
    /// The value of the `consumer_by` field, looked up in the current snapshot per request.
    pub consumer_key: Option<String>,
    /// `exp`, Unix seconds.
    pub exp: Option<f64>,
    /// The `X-Credential-*` headers to set upstream (one entry per header line).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// What the identity server said about a token.
#[derive(Debug)]
pub enum Outcome {
    /// `active: true`.
    Active(Active),
    /// `active` false or absent.
    Inactive,
}

#[derive(Clone)]
struct Entry {
    outcome: Arc<Outcome>,
    expires: Option<Instant>,
    /// The server's invalidation epoch when the answer was asked for.
    epoch: u64,
}

/// The result of one introspection, shared by the requests that waited for it.
pub type Shared = Result<Arc<Outcome>, Arc<CallError>>;

type Flight = Arc<OnceCell<Shared>>;

/// One instance's cache.
pub struct TokenCache {
    entries: quick_cache::sync::Cache<Key, Entry>,
    pub(super) inflight: parking_lot::Mutex<HashMap<Key, Flight>>,
    ttl: Option<Duration>,
    /// How long `active: false` is kept ([`NEGATIVE_TTL`]; tests shorten it).
    pub(super) negative_ttl: Duration,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Removes a flight from the in-flight map when its last participant is done (or gone).
struct FlightGuard<'a> {
    map: &'a parking_lot::Mutex<HashMap<Key, Flight>>,
    key: Key,
    flight: Flight,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock();
        if let Some(current) = map.get(&self.key)
            && Arc::ptr_eq(current, &self.flight)
            // Finished: later requests find the result in the cache (or retry after a
            // failure). Unfinished: remove only when nobody else waits on it (the map's
            // reference and ours), e.g. the only caller was cancelled.
            && (self.flight.initialized() || Arc::strong_count(&self.flight) <= 2)
        {
            map.remove(&self.key);
        }
    }
}

impl TokenCache {
    /// A cache of at most `capacity` entries; active results kept for `ttl` (`None`: no fixed
    /// expiry).
    pub fn new(capacity: usize, ttl: Option<Duration>) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
            inflight: parking_lot::Mutex::new(HashMap::new()),
            ttl,
            negative_ttl: NEGATIVE_TTL,
        }
    }

    /// A live cached result, given when the server's invalidation epoch was `epoch`.
    pub fn get(&self, key: &Key, epoch: u64) -> Option<Arc<Outcome>> {
        let entry = self.entries.get(key)?;
        let now = Instant::now();
        let stale = |e: &Entry| e.expires.is_some_and(|x| now >= x) || e.epoch != epoch;
        if stale(&entry) {
            self.entries.remove_if(key, stale);
            return None;
        }
        Some(entry.outcome)
    }

    /// Number of live and expired-but-not-yet-evicted entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When an outcome stops being usable; `None` inside `Some` = never; outer `None` = do not
    /// store at all.
    fn expiry(&self, outcome: &Outcome, now: Instant) -> Option<Option<Instant>> {
        match outcome {
            Outcome::Inactive => Some(Some(now + self.negative_ttl)),
            Outcome::Active(a) => {
                let by_ttl = self.ttl.and_then(|t| now.checked_add(t));
                let by_exp = match a.exp {
                    None => None,
                    Some(exp) => {
                        let left = exp - unix_now();
                        if left.is_nan() || left <= 0.0 {
                            // Already past its `exp`: the endpoint's word holds for this
                            // request only.
                            return None;
                        }
                        now.checked_add(Duration::from_secs_f64(left.min(1e10)))
                    }
                };
                Some(match (by_ttl, by_exp) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                })
            }
        }
    }

    /// The cached result for `key`, or the result of `load` — run by exactly one of the
    /// requests that miss at the same time; the others wait for it. `epoch` is the server's
    /// invalidation epoch, read before `load` runs (so a change during the call leaves an
    /// entry that is asked again).
    pub async fn get_or_load<F, Fut>(&self, key: Key, epoch: u64, load: F) -> Shared
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Outcome, CallError>>,
    {
        if let Some(hit) = self.get(&key, epoch) {
            return Ok(hit);
        }
        let flight = self
            .inflight
            .lock()
            .entry(key)
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let guard = FlightGuard {
            map: &self.inflight,
            key,
            flight,
        };
        let result = guard
            .flight
            .get_or_init(|| async {
                // A flight that started just after the previous one stored its result.
                if let Some(hit) = self.get(&key, epoch) {
                    return Ok(hit);
                }
                match load().await {
                    Ok(outcome) => {
                        let outcome = Arc::new(outcome);
                        if let Some(expires) = self.expiry(&outcome, Instant::now()) {
                            self.entries.insert(
                                key,
                                Entry {
                                    outcome: outcome.clone(),
                                    expires,
                                    epoch,
                                },
                            );
                        }
                        Ok(outcome)
                    }
                    Err(e) => Err(Arc::new(e)),
                }
            })
            .await
            .clone();
        drop(guard);
        result
    }
}
