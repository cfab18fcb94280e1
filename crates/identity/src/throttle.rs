//! Throttling of failed client authentications, per client address.
//!
//! Every failed authentication (an unknown client id or a wrong secret) takes a token from its
//! address's bucket; an address whose bucket is empty is refused with 429 and `Retry-After`
//! before any PBKDF2 work is spent on it. Buckets refill at a steady rate. A secret that
//! verified before (the in-memory success cache) is never throttled: it costs microseconds, so
//! a legitimate client behind an attacker's address keeps working once it has authenticated.
//!
//! Addresses are grouped as the connection gate groups them (IPv6 by /64). The table is
//! bounded: full buckets are forgotten first, and beyond the bound a new address goes
//! untracked (the PBKDF2 concurrency bound still holds it).

use gatehouse_listener::gate::AddressKey;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most addresses tracked at once.
const MAX_TRACKED: usize = 100_000;

/// How failed authentications are throttled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleConfig {
    /// Failures an address may make in a burst (0: no throttling).
    pub burst: u32,
    /// One more failure is allowed every `refill`.
    pub refill: Duration,
}

impl Default for ThrottleConfig {
    /// 10 failures at once, then one a second.
    fn default() -> Self {
        ThrottleConfig {
            burst: 10,
            refill: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The failure buckets of every address.
#[derive(Debug)]
pub struct AuthThrottle {
    config: ThrottleConfig,
    buckets: Mutex<HashMap<AddressKey, Bucket>>,
}

impl AuthThrottle {
    /// An empty table.
    pub fn new(config: ThrottleConfig) -> Self {
        AuthThrottle {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let rate = 1.0 / self.config.refill.as_secs_f64().max(1e-3);
        let burst = f64::from(self.config.burst);
        (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate).min(burst)
    }

    /// `Err(retry_after)` when `ip` has no failure left to spend at `now`.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.config.burst == 0 {
            return Ok(());
        }
        let buckets = self.buckets.lock();
        let Some(b) = buckets.get(&AddressKey::of(ip)) else {
            return Ok(());
        };
        let tokens = self.refilled(*b, now);
        if tokens >= 1.0 {
            return Ok(());
        }
        let wait = (1.0 - tokens) * self.config.refill.as_secs_f64();
        Err(Duration::from_secs_f64(wait))
    }

    /// Spends one failure of `ip` at `now`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        if self.config.burst == 0 {
            return;
        }
        let burst = f64::from(self.config.burst);
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, b| self.refilled(*b, now) < burst);
            if buckets.len() >= MAX_TRACKED {
                return;
            }
        }
        let key = AddressKey::of(ip);
        let tokens = match buckets.get(&key) {
            Some(b) => self.refilled(*b, now),
            None => burst,
        };
        buckets.insert(
            key,
            Bucket {
                tokens: (tokens - 1.0).max(0.0),
                at: now,
            },
        );
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_gets_its_burst_then_one_failure_per_refill() {
        let t = AuthThrottle::new(ThrottleConfig {
            burst: 3,
            refill: Duration::from_secs(2),
        });
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.check(ip("192.0.2.1"), now), Ok(()));
            t.failed(ip("192.0.2.1"), now);
        }
        let wait = t.check(ip("192.0.2.1"), now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(2));
        // Another address is not affected.
        assert_eq!(t.check(ip("192.0.2.2"), now), Ok(()));
        // After one refill period, one more try.
        let later = now + Duration::from_secs(2);
        assert_eq!(t.check(ip("192.0.2.1"), later), Ok(()));
        t.failed(ip("192.0.2.1"), later);
        assert!(t.check(ip("192.0.2.1"), later).is_err());
        // Half a period on: a second to wait.
        let wait = t
            .check(ip("192.0.2.1"), later + Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // An IPv6 /64 is one address.
        for _ in 0..3 {
            t.failed(ip("2001:db8::1"), now);
        }
        assert!(t.check(ip("2001:db8::ffff"), now).is_err());
        assert!(t.check(ip("2001:db8:0:1::1"), now).is_ok());
    }

    #[test]
    fn zero_burst_turns_it_off() {
        let t = AuthThrottle::new(ThrottleConfig {
            burst: 0,
            refill: Duration::from_secs(1),
        });
        let now = Instant::now();
        for _ in 0..100 {
            t.failed(ip("192.0.2.1"), now);
        }
        assert_eq!(t.check(ip("192.0.2.1"), now), Ok(()));
        assert_eq!(t.tracked(), 0);
    }
}
