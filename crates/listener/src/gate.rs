//! Connection accounting for one listener: a cap on connections open at once, and a cap per
//! client address, so that one address cannot take every slot (nor every descriptor) from the
//! others.
//!
//! A connection is counted from its accept until its [`Admission`] is dropped. Refused
//! connections are closed at once, before a byte is read: they cost a descriptor for a moment
//! and nothing else. The per-address map is touched once per connection, never per request.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The listener has [`ConnectionGate::max_total`] connections open.
    #[error("the listener's connection limit is reached")]
    Full,
    /// The client's address has its share open.
    #[error("the client address's connection limit is reached")]
    PerAddress,
}

/// The connections of one listener (shared by the proxy's workers).
#[derive(Debug)]
pub struct ConnectionGate {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<AddressKey, usize>>,
    refused: AtomicU64,
}

/// A client address as the per-address cap counts it: an IPv4 address (also when written as
/// IPv4-mapped IPv6), or an IPv6 /64, the smallest block a host is usually given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u8; 8]),
}

impl AddressKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(v4) => AddressKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    AddressKey::V6Prefix([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

/// One admitted connection; dropping it frees its slot.
#[derive(Debug)]
pub struct Admission {
    gate: Arc<ConnectionGate>,
    key: Option<AddressKey>,
}

impl ConnectionGate {
    /// A gate allowing `max_total` connections, `max_per_ip` of them (0: any number) from one
    /// address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionGate> {
        Arc::new(ConnectionGate {
            max_total: max_total.max(1),
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        })
    }

    /// The listener's cap.
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Connections refused since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts a new connection from `ip`, or says why it must be closed.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let reserved = self.total.fetch_add(1, Ordering::AcqRel);
        if reserved >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Full);
        }
        if self.max_per_ip == 0 {
            return Ok(Admission {
                gate: self.clone(),
                key: None,
            });
        }
        let key = AddressKey::of(ip);
        let mut map = self.per_ip.lock();
        let n = map.entry(key).or_insert(0);
        if *n >= self.max_per_ip {
            drop(map);
            self.total.fetch_sub(1, Ordering::AcqRel);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        Ok(Admission {
            gate: self.clone(),
            key: Some(key),
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut map = self.gate.per_ip.lock();
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
        self.gate.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn one_address_cannot_take_every_slot() {
        let gate = ConnectionGate::new(4, 2);
        let a1 = gate.admit(ip("10.0.0.1"));
        let a2 = gate.admit(ip("10.0.0.1"));
        assert!(a1.is_ok() && a2.is_ok());
        assert_eq!(gate.admit(ip("10.0.0.1")).err(), Some(Refusal::PerAddress));
        // The IPv4-mapped form is the same client.
        assert_eq!(
            gate.admit(ip("::ffff:10.0.0.1")).err(),
            Some(Refusal::PerAddress)
        );
        let b1 = gate.admit(ip("10.0.0.2"));
        let b2 = gate.admit(ip("10.0.0.2"));
        assert!(b1.is_ok() && b2.is_ok());
        assert_eq!(gate.open(), 4);
        assert_eq!(gate.admit(ip("10.0.0.3")).err(), Some(Refusal::Full));
        assert_eq!(gate.refused(), 3);
        drop(a1);
        assert_eq!(gate.open(), 3);
        assert!(gate.admit(ip("10.0.0.1")).is_ok());
        drop((a2, b1, b2));
        assert_eq!(gate.open(), 0);
        assert!(
            gate.per_ip.lock().is_empty(),
            "freed addresses leave the map"
        );
    }

    #[test]
    fn an_ipv6_64_counts_as_one_address() {
        let gate = ConnectionGate::new(100, 1);
        let _a = gate.admit(ip("2001:db8:1:2::1")).map_err(|e| e.to_string());
        assert_eq!(
            gate.admit(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Refusal::PerAddress)
        );
        assert!(gate.admit(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn zero_per_address_means_only_the_total_counts() {
        let gate = ConnectionGate::new(3, 0);
        let held: Vec<_> = (0..3).map(|_| gate.admit(ip("127.0.0.1"))).collect();
        assert!(held.iter().all(Result::is_ok));
        assert_eq!(gate.admit(ip("127.0.0.1")).err(), Some(Refusal::Full));
    }
}
