//! The edge limits of one listener, their defaults, and how the defaults follow the process's
//! file-descriptor limit.
//!
//! The defaults follow Envoy's edge recommendations and nginx's where those are tighter than
//! Kong's: a request head must arrive within 30 s of its first byte, a body may not trickle
//! slower than a minimum rate, and every listener has its own connection cap, sized so that the
//! caps of all listeners together (with an upstream connection per proxied one) stay below the
//! process's descriptor limit. One flooded listener then refuses its own excess connections
//! while the others keep serving (`docs/security.md`).

use std::time::Duration;

/// Descriptors kept aside for everything that is not a client connection: the database pool,
/// data files, the identity server's and plugins' outbound connections, the listeners.
const RESERVED_FDS: u64 = 1024;

/// What one listener allows its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// How long a request head may take once its first byte arrived (nginx
    /// `client_header_timeout`). On the admin and identity listeners the wait for a keep-alive
    /// connection's next request counts against it too (hyper's rule).
    pub header_timeout: Duration,
    /// How long a keep-alive connection may wait, idle, for its next request (proxy).
    pub idle_timeout: Duration,
    /// The time a request body gets before [`Limits::body_min_rate`] extends it.
    pub body_timeout: Duration,
    /// Bytes per second of body that earn one more second (Apache `mod_reqtimeout`'s
    /// `MinRate`): a large upload at a sane speed is never cut, a trickle is cut at about
    /// [`Limits::body_timeout`]. 0: the body timeout is a fixed bound.
    pub body_min_rate: u64,
    /// How long a write may wait for the client to read (nginx `send_timeout`).
    pub send_timeout: Duration,
    /// Longest request target (path and query) accepted; longer gets 414.
    pub max_uri_len: usize,
    /// Largest request head (request line and fields) accepted; larger gets 431.
    pub max_head_bytes: usize,
    /// Connections open at once on this listener; more are closed as they are accepted.
    pub max_connections: usize,
    /// Connections open at once from one client address (IPv6: one /64); 0 for no limit.
    pub max_connections_per_ip: usize,
}

impl Limits {
    /// The defaults for a listener allowed `max_connections` connections: a quarter of them
    /// per client address.
    pub fn with_connections(max_connections: usize) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            body_min_rate: 1024,
            send_timeout: Duration::from_secs(60),
            max_uri_len: 8 * 1024,
            max_head_bytes: 64 * 1024,
            max_connections,
            max_connections_per_ip: (max_connections / 4).max(1),
        }
    }

    /// The allowance for a body of which `received` bytes have arrived, counted from the
    /// moment the body was first wanted.
    pub fn body_allowance(&self, received: u64) -> Duration {
        body_allowance(self.body_timeout, self.body_min_rate, received)
    }
}

/// `base`, plus a second for every `min_rate` bytes of `received` (none when `min_rate` is 0).
pub(crate) fn body_allowance(base: Duration, min_rate: u64, received: u64) -> Duration {
    if min_rate == 0 {
        return base;
    }
    base.saturating_add(Duration::from_secs(received / min_rate))
        .saturating_add(Duration::from_millis(
            (received % min_rate) * 1000 / min_rate,
        ))
}

/// The default connection caps of the three listeners, from the process's descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// Proxy client connections (each may hold an upstream connection too).
    pub proxy: usize,
    /// Identity (issuer endpoints) connections.
    pub identity: usize,
    /// Admin API connections.
    pub admin: usize,
}

impl ConnectionBudget {
    /// Splits `fd_limit` descriptors: [`RESERVED_FDS`] aside (a quarter of a small limit),
    /// then of the rest three eighths to proxy clients (as many again for their upstream
    /// connections), an eighth to the identity listener, and a sixteenth, at most 256, to the
    /// admin listener.
    pub fn for_fd_limit(fd_limit: u64) -> ConnectionBudget {
        let usable = fd_limit - RESERVED_FDS.min(fd_limit / 4);
        let share = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).max(4);
        ConnectionBudget {
            proxy: share(usable * 3 / 8),
            identity: share(usable / 8),
            admin: share((usable / 16).min(256)),
        }
    }

    /// The budget for this process's current descriptor limit.
    pub fn current() -> ConnectionBudget {
        ConnectionBudget::for_fd_limit(fd_limit().unwrap_or(1024))
    }
}

/// The process's soft limit on open descriptors (`RLIMIT_NOFILE`), read from
/// `/proc/self/limits`; `None` where that file does not exist or says "unlimited".
pub fn fd_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_fd_limit(&text)
}

fn parse_fd_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Parses a duration as the command line takes it: a whole number with `ms`, `s` (the
/// default), `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 30s, 500ms, 2m)"))?;
    let millis = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("'{text}': the unit must be ms, s, m or h")),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("'{text}' is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_garbage() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn the_fd_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             unlimited            unlimited            processes \n\
                    Max open files            20000                20000                files     \n";
        assert_eq!(parse_fd_limit(text), Some(20000));
        assert_eq!(
            parse_fd_limit("Max open files unlimited unlimited files"),
            None
        );
        assert_eq!(parse_fd_limit(""), None);
    }

    #[test]
    fn the_budget_keeps_every_listener_within_the_fd_limit() {
        for limit in [64, 256, 1024, 4096, 20_000, 1_048_576] {
            let b = ConnectionBudget::for_fd_limit(limit);
            // Proxy connections count twice (client and upstream side).
            let worst = 2 * b.proxy + b.identity + b.admin;
            assert!(
                worst as u64 + RESERVED_FDS.min(limit / 4) <= limit,
                "{limit}: {b:?}"
            );
            assert!(b.admin <= 256 && b.admin >= 4);
        }
        let b = ConnectionBudget::for_fd_limit(20_000);
        assert_eq!(b.proxy, 7116);
        assert_eq!(b.identity, 2372);
        assert_eq!(b.admin, 256);
    }

    #[test]
    fn a_body_earns_time_at_the_minimum_rate_only() {
        let l = Limits::with_connections(100);
        assert_eq!(l.body_allowance(0), Duration::from_secs(30));
        assert_eq!(l.body_allowance(1024), Duration::from_secs(31));
        assert_eq!(l.body_allowance(512), Duration::from_millis(30_500));
        // A client sending a byte a second has earned 30 ms after 30 s.
        assert!(l.body_allowance(30) < Duration::from_millis(30_030));
        let fixed = Limits {
            body_min_rate: 0,
            ..l
        };
        assert_eq!(fixed.body_allowance(1 << 30), Duration::from_secs(30));
    }
}
