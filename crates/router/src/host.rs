//! Host syntax (Kong's `kong/tools/ip.lua` `normalize_ip`), route host
//! patterns and splitting of the request's `Host` header.

use std::net::Ipv6Addr;

/// What kind of address a host string is, decided like Kong's
/// `hostname_type`: by exclusion, not by validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostType {
    Name,
    Ipv4,
    Ipv6,
}

/// A syntactically valid host with an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedHost<'a> {
    pub(crate) kind: HostType,
    /// The host without port; IPv6 without brackets.
    pub(crate) name: &'a str,
    pub(crate) port: Option<u16>,
}

/// Why a host string is invalid; the message is Kong's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostError {
    /// Port out of range (Kong: "invalid port number").
    Port,
    /// Anything else, already worded ("invalid hostname: x", ...).
    Invalid(String),
}

impl HostError {
    pub(crate) fn message(self) -> String {
        match self {
            HostError::Port => "invalid port number".to_owned(),
            HostError::Invalid(m) => m,
        }
    }
}

/// Kong's `hostname_type`: more than one colon is IPv6; only digits, dots
/// (and at most one colon) is IPv4; anything else is a name.
fn hostname_type(s: &str) -> HostType {
    let colons = s.bytes().filter(|&b| b == b':').count();
    if colons > 1 {
        return HostType::Ipv6;
    }
    let mut digits_and_dots = s.bytes().filter(|&b| b != b':').peekable();
    if digits_and_dots.peek().is_some() && digits_and_dots.all(|b| b.is_ascii_digit() || b == b'.')
    {
        HostType::Ipv4
    } else {
        HostType::Name
    }
}

/// Ports are 1-65535; `0` is refused because no client can reach it.
fn parse_port(digits: &str) -> Result<u16, HostError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::Port);
    }
    match digits.parse::<u16>() {
        Ok(0) | Err(_) => Err(HostError::Port),
        Ok(p) => Ok(p),
    }
}

/// Validates `host[:port]` (also `ipv4[:port]`, `ipv6`, `[ipv6][:port]`),
/// with the error messages of Kong's `normalize_ip`.
pub(crate) fn parse_host_with_optional_port(s: &str) -> Result<ParsedHost<'_>, HostError> {
    match hostname_type(s) {
        HostType::Ipv6 => parse_ipv6(s),
        HostType::Ipv4 => parse_ipv4(s),
        HostType::Name => parse_name(s),
    }
}

fn parse_ipv6(s: &str) -> Result<ParsedHost<'_>, HostError> {
    let invalid = || HostError::Invalid(format!("invalid ipv6 address: {s}"));
    let (addr, port) = if let Some(inner) = s.strip_prefix('[') {
        let (addr, rest) = inner.split_once(']').ok_or_else(invalid)?;
        let port = match rest {
            "" => None,
            r => Some(parse_port(r.strip_prefix(':').ok_or_else(invalid)?)?),
        };
        (addr, port)
    } else {
        (s, None)
    };
    addr.parse::<Ipv6Addr>().map_err(|_| invalid())?;
    Ok(ParsedHost {
        kind: HostType::Ipv6,
        name: addr,
        port,
    })
}

fn parse_ipv4(s: &str) -> Result<ParsedHost<'_>, HostError> {
    let invalid = || HostError::Invalid(format!("invalid ipv4 address: {s}"));
    let (addr, port) = match s.split_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let mut octets = 0;
    for part in addr.split('.') {
        octets += 1;
        let ok = (1..=3).contains(&part.len()) && part.parse::<u16>().is_ok_and(|v| v <= 255);
        if !ok {
            return Err(invalid());
        }
    }
    if octets != 4 {
        return Err(invalid());
    }
    let port = match port {
        None => None,
        Some("") => return Err(invalid()),
        Some(p) => Some(parse_port(p)?),
    };
    Ok(ParsedHost {
        kind: HostType::Ipv4,
        name: addr,
        port,
    })
}

fn parse_name(s: &str) -> Result<ParsedHost<'_>, HostError> {
    let invalid = || HostError::Invalid(format!("invalid hostname: {s}"));
    // Kong: a trailing `:digits` is the port; any other colon makes the name
    // invalid.
    let (name, port) = match s.rsplit_once(':') {
        Some((n, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (n, Some(parse_port(p)?))
        }
        _ => (s, None),
    };
    let chars_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !chars_ok {
        return Err(invalid());
    }
    // No empty label except a final one (FQDN trailing dot); no label ending
    // with '-' (a leading '-' is allowed, as in Kong, for punycode).
    let labels: Vec<&str> = name.split('.').collect();
    let n = labels.len();
    for (i, label) in labels.iter().enumerate() {
        if label.ends_with('-') || (label.is_empty() && i + 1 != n) {
            return Err(invalid());
        }
    }
    Ok(ParsedHost {
        kind: HostType::Name,
        name,
        port,
    })
}

/// How a route host is matched against the request host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostKind {
    /// Exact, case-insensitive (stored lowercase, IPv6 without brackets).
    Exact(Box<str>),
    /// `*.example.com`: the request host ends with `.example.com`.
    Suffix(Box<str>),
    /// `example.*`: the request host starts with `example.`.
    Prefix(Box<str>),
}

/// One compiled entry of a route's `hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    pub(crate) kind: HostKind,
    /// `None` accepts any port (or none); `Some(p)` requires the `Host`
    /// header to carry port `p`.
    pub(crate) port: Option<u16>,
}

impl HostPattern {
    /// Parses and validates a route host (see
    /// [`validate_route_host`](crate::validate_route_host)).
    pub(crate) fn parse(h: &str) -> Result<HostPattern, String> {
        crate::validate::validate_route_host(h)?;
        let probe = h.replacen('*', "wildcard", 1);
        let parsed = parse_host_with_optional_port(&probe).map_err(HostError::message)?;
        let name = parsed.name.to_ascii_lowercase();
        let kind = if let Some(rest) = name.strip_prefix("wildcard.") {
            if h.starts_with('*') {
                HostKind::Suffix(format!(".{rest}").into())
            } else {
                HostKind::Exact(name.into())
            }
        } else if h.contains('*') {
            match name.strip_suffix("wildcard") {
                Some(prefix) => HostKind::Prefix(prefix.into()),
                None => HostKind::Exact(name.into()),
            }
        } else {
            HostKind::Exact(name.into())
        };
        Ok(HostPattern {
            kind,
            port: parsed.port,
        })
    }

    /// True for `*.x` / `x.*` patterns.
    pub(crate) fn is_wildcard(&self) -> bool {
        !matches!(self.kind, HostKind::Exact(_))
    }

    /// Matches a request host (as split by [`split_request_host`]).
    pub(crate) fn matches(&self, name: &str, port: Option<u16>) -> bool {
        if self.port.is_some() && self.port != port {
            return false;
        }
        let (n, p) = (name.as_bytes(), &self.kind);
        match p {
            HostKind::Exact(e) => n.eq_ignore_ascii_case(e.as_bytes()),
            HostKind::Suffix(s) => {
                n.len() >= s.len() && n[n.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
            HostKind::Prefix(s) => {
                n.len() >= s.len() && n[..s.len()].eq_ignore_ascii_case(s.as_bytes())
            }
        }
    }
}

/// Splits a `Host` header value into name and port without allocating:
/// `example.com:8080` → (`example.com`, 8080), `[::1]:80` → (`::1`, 80).
/// A suffix that is not a valid port stays part of the name, so such a
/// header can only match a route host written the same way.
pub(crate) fn split_request_host(h: &str) -> (&str, Option<u16>) {
    if let Some(inner) = h.strip_prefix('[') {
        if let Some((addr, rest)) = inner.split_once(']') {
            return match rest.strip_prefix(':').map(parse_port) {
                Some(Ok(p)) => (addr, Some(p)),
                _ if rest.is_empty() => (addr, None),
                _ => (h, None),
            };
        }
        return (h, None);
    }
    // A port has at most 5 digits, so its colon is among the last 6 bytes;
    // scanning only those keeps this cheap for the common port-less header.
    let bytes = h.as_bytes();
    let tail_start = bytes.len().saturating_sub(6);
    let Some(colon) = bytes[tail_start..]
        .iter()
        .rposition(|&b| b == b':')
        .map(|i| tail_start + i)
    else {
        return (h, None);
    };
    let (name, p) = (&h[..colon], &h[colon + 1..]);
    match parse_port(p) {
        // A bare IPv6 literal has several colons and no port.
        Ok(_) if name.contains(':') => (h, None),
        Ok(port) => (name, Some(port)),
        Err(_) => (h, None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn splits_request_hosts() {
        assert_eq!(split_request_host("example.com"), ("example.com", None));
        assert_eq!(
            split_request_host("example.com:8080"),
            ("example.com", Some(8080))
        );
        assert_eq!(split_request_host("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_request_host("[::1]"), ("::1", None));
        assert_eq!(split_request_host("::1"), ("::1", None));
        assert_eq!(split_request_host("a:b"), ("a:b", None));
        assert_eq!(split_request_host("a:99999"), ("a:99999", None));
        assert_eq!(split_request_host("a:123456"), ("a:123456", None));
        assert_eq!(split_request_host("fe80::1234"), ("fe80::1234", None));
        assert_eq!(split_request_host(":80"), ("", Some(80)));
        assert_eq!(split_request_host(""), ("", None));
    }

    #[test]
    fn parses_patterns() {
        let p = HostPattern::parse("*.Example.com").unwrap();
        assert_eq!(p.kind, HostKind::Suffix(".example.com".into()));
        assert_eq!(p.port, None);
        let p = HostPattern::parse("example.*:8080");
        // Kong only allows a rightmost wildcard when nothing follows it.
        assert!(p.is_err());
        let p = HostPattern::parse("*.example.com:8080").unwrap();
        assert_eq!(p.port, Some(8080));
        let p = HostPattern::parse("example.*").unwrap();
        assert_eq!(p.kind, HostKind::Prefix("example.".into()));
        let p = HostPattern::parse("[::1]:8000").unwrap();
        assert_eq!(p.kind, HostKind::Exact("::1".into()));
        assert_eq!(p.port, Some(8000));
    }

    #[test]
    fn matches_case_insensitively() {
        let p = HostPattern::parse("*.example.com").unwrap();
        assert!(p.matches("A.EXAMPLE.com", None));
        assert!(p.matches("a.b.example.com", Some(1)));
        assert!(!p.matches("example.com", None));
        let p = HostPattern::parse("example.*").unwrap();
        assert!(p.matches("Example.org", None));
        assert!(!p.matches("example", None));
    }
}
