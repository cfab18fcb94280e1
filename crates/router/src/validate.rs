//! Field validation for the admin layer (spec B.3), with Kong's error
//! wording (`kong/db/schema/typedefs.lua`, `kong/tools/ip.lua`,
//! `kong/db/schema/entities/routes.lua`).
//!
//! [`Router::build`](crate::Router::build) re-checks what it needs to stay
//! panic-free (regexes, hosts, header names, methods), so a configuration
//! that skipped these helpers still fails cleanly.

use crate::host::{HostError, HostType, parse_host_with_optional_port};
use crate::path::{PathError, kong_normalize};

/// Translates a Kong regex path (without its `~`) into the pattern the
/// router compiles: anchored at the start only, like PCRE's `a` flag.
/// `(?<name>…)` needs no rewriting: the `regex` crate accepts it.
pub(crate) fn anchored_regex_source(re: &str) -> String {
    format!("^(?:{re})")
}

/// Compiles a regex path body (text after `~`) exactly as the router does.
pub(crate) fn compile_path_regex(re: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&anchored_regex_source(re))
        .map_err(|e| format!("invalid regex: '{re}' ({})", regex_error_summary(&e)))
}

/// The regex crate's syntax errors span several lines (pattern, caret,
/// message); an API error message wants the one line that explains.
pub(crate) fn regex_error_summary(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(
            || text.split_whitespace().collect::<Vec<_>>().join(" "),
            str::to_owned,
        )
}

/// Kong's "invalid url-encoded value" check: returns the offending `%`
/// and up to two following characters.
fn bad_percent(p: &str) -> Option<&str> {
    let bytes = p.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                let end = p[i..]
                    .char_indices()
                    .nth(3)
                    .map_or(p.len(), |(off, _)| i + off);
                return Some(&p[i..end]);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    None
}

/// Validates one entry of a route's `paths`.
///
/// * must start with `/` (prefix path) or `~/` (regex path);
/// * must not contain `//` ("must not have empty segments");
/// * `%` escapes must be well formed;
/// * a prefix path must already be normalized: `non-normalized path,
///   consider use '<normalized>' instead` (Kong's wording, including its
///   grammar);
/// * a regex path must compile (Rust `regex` syntax, which accepts Kong's
///   PCRE-style `(?<name>…)`; look-around and back-references are refused).
///
/// # Errors
/// The message Kong would return for the first failed rule.
pub fn validate_route_path(p: &str) -> Result<(), String> {
    if !(p.starts_with('/') || p.starts_with("~/")) {
        return Err("should start with: / (fixed path) or ~/ (regex path)".to_owned());
    }
    if p.contains("//") {
        return Err("must not have empty segments".to_owned());
    }
    if let Some(bad) = bad_percent(p) {
        return Err(format!("invalid url-encoded value: '{bad}'"));
    }
    if let Some(re) = p.strip_prefix('~') {
        return compile_path_regex(re).map(|_| ());
    }
    if p.contains('\0') {
        return Err(format!(
            "invalid path: '{}' (contains a NUL byte)",
            p.escape_default()
        ));
    }
    match kong_normalize(p) {
        Ok(n) if n == p => Ok(()),
        Ok(n) => Err(format!("non-normalized path, consider use '{n}' instead")),
        Err(PathError::Nul) => Err(format!("invalid url-encoded value: '{}'", "%00")),
        Err(e) => Err(e.to_string()),
    }
}

/// Validates one entry of a route's `hosts`: a hostname, IPv4 or IPv6
/// address with an optional `:port` (1-65535), and at most one `*`, only as
/// the whole leftmost (`*.example.com`) or rightmost (`example.*`) label.
///
/// # Errors
/// Kong's messages: "invalid wildcard: must have at most one wildcard",
/// "invalid wildcard: must be placed at leftmost or rightmost label",
/// "invalid hostname: …", "invalid ipv4 address: …",
/// "invalid ipv6 address: …", "invalid port number".
pub fn validate_route_host(h: &str) -> Result<(), String> {
    let stars = h.bytes().filter(|&b| b == b'*').count();
    if stars > 1 {
        return Err("invalid wildcard: must have at most one wildcard".to_owned());
    }
    // Kong's patterns `^%*%.`, `%.%*$`: a rightmost wildcard cannot carry a
    // port, a leftmost one can.
    if stars == 1 && !(h.starts_with("*.") || h.ends_with(".*")) {
        return Err("invalid wildcard: must be placed at leftmost or rightmost label".to_owned());
    }
    // Kong validates the wildcard form by substituting a label for `*`.
    let probe = h.replacen('*', "abc", 1);
    match parse_host_with_optional_port(&probe) {
        Ok(_) => Ok(()),
        Err(HostError::Port) => Err(HostError::Port.message()),
        // Report the host as the operator wrote it, not the probe.
        Err(HostError::Invalid(m)) => Err(m.replace(&probe, h)),
    }
}

/// Validates a route header name (a key of `headers`): Kong allows
/// `A-Z a-z 0-9 _ -` (a strict subset of RFC 7230 `token`) and refuses
/// `host`, which must be routed with `hosts`.
///
/// # Errors
/// "no header name provided", "bad header name '…', allowed characters are
/// A-Z, a-z, 0-9, '_', and '-'", or "cannot contain 'host' header, which
/// must be specified in the 'hosts' attribute".
pub fn validate_header_name(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("no header name provided".to_owned());
    }
    if !n
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "bad header name '{n}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
        ));
    }
    if n.eq_ignore_ascii_case("host") {
        return Err(
            "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
                .to_owned(),
        );
    }
    Ok(())
}

/// Validates one value of a route header condition: a value starting with
/// `~*` is a case-insensitive regex and must compile (the router refuses
/// the whole configuration otherwise); any other value is accepted.
///
/// # Errors
/// "invalid regex: '…' (…)".
pub fn validate_header_value(v: &str) -> Result<(), String> {
    match v.strip_prefix("~*") {
        Some(re) => compile_header_regex(re).map(|_| ()),
        None => Ok(()),
    }
}

/// Compiles a `~*` header value body exactly as the router does.
pub(crate) fn compile_header_regex(re: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::RegexBuilder::new(re)
        .case_insensitive(true)
        .build()
        .map_err(|e| format!("invalid regex: '{re}' ({})", regex_error_summary(&e)))
}

/// Validates one entry of a route's `methods`: uppercase ASCII letters only
/// (Kong's `^%u+$`).
///
/// # Errors
/// "invalid value: …" (Kong's schema wording for a failed `match`).
pub fn validate_route_method(m: &str) -> Result<(), String> {
    if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!("invalid value: {m}"))
    }
}

/// Validates one entry of a route's `snis`: a hostname without port, not an
/// IP address (Kong's `validate_sni`).
///
/// # Errors
/// "invalid value: …", "must not be an IP" or "must not have a port".
pub fn validate_route_sni(s: &str) -> Result<(), String> {
    match parse_host_with_optional_port(s) {
        Err(HostError::Port) => Err("must not have a port".to_owned()),
        Err(HostError::Invalid(_)) => Err(format!("invalid value: {s}")),
        Ok(h) if h.kind != HostType::Name => Err("must not be an IP".to_owned()),
        Ok(h) if h.port.is_some() => Err("must not have a port".to_owned()),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn paths() {
        assert_eq!(validate_route_path("/"), Ok(()));
        assert_eq!(validate_route_path("/foo/bar/"), Ok(()));
        assert_eq!(validate_route_path("/a%2Fb"), Ok(()));
        assert_eq!(validate_route_path("/café"), Ok(()));
        assert_eq!(validate_route_path(r"~/v(?<ver>\d+)/(\w+)$"), Ok(()));
        assert_eq!(validate_route_path(r"~/v(?P<ver>\d+)"), Ok(()));
        assert_eq!(
            validate_route_path("foo").unwrap_err(),
            "should start with: / (fixed path) or ~/ (regex path)"
        );
        assert_eq!(
            validate_route_path("~foo").unwrap_err(),
            "should start with: / (fixed path) or ~/ (regex path)"
        );
        assert_eq!(
            validate_route_path("/a//b").unwrap_err(),
            "must not have empty segments"
        );
        assert_eq!(
            validate_route_path("~/a//b").unwrap_err(),
            "must not have empty segments"
        );
        assert_eq!(
            validate_route_path("/a%zzb").unwrap_err(),
            "invalid url-encoded value: '%zz'"
        );
        assert_eq!(
            validate_route_path("/a%").unwrap_err(),
            "invalid url-encoded value: '%'"
        );
        assert_eq!(
            validate_route_path("/a/../b").unwrap_err(),
            "non-normalized path, consider use '/b' instead"
        );
        assert_eq!(
            validate_route_path("/%7efoo").unwrap_err(),
            "non-normalized path, consider use '/~foo' instead"
        );
        assert_eq!(
            validate_route_path("/a%2fb").unwrap_err(),
            "non-normalized path, consider use '/a%2Fb' instead"
        );
        assert_eq!(
            validate_route_path("/caf%C3%A9").unwrap_err(),
            "non-normalized path, consider use '/café' instead"
        );
        let err = validate_route_path("~/a(").unwrap_err();
        assert!(err.starts_with("invalid regex: '/a(' ("), "{err}");
        assert!(!err.contains('\n'), "{err}");
        // PCRE look-around is not supported by the regex engine.
        assert!(validate_route_path("~/(?=a)").is_err());
    }

    #[test]
    fn hosts() {
        for ok in [
            "example.com",
            "Example.COM:8080",
            "*.example.com",
            "*.example.com:443",
            "example.*",
            "localhost",
            "1.2.3.4",
            "1.2.3.4:80",
            "::1",
            "[::1]",
            "[::1]:8000",
            "my_host.local.",
            "-x.example.com",
        ] {
            assert_eq!(validate_route_host(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            validate_route_host("*.*.example.com").unwrap_err(),
            "invalid wildcard: must have at most one wildcard"
        );
        assert_eq!(
            validate_route_host("ex*ample.com").unwrap_err(),
            "invalid wildcard: must be placed at leftmost or rightmost label"
        );
        assert_eq!(
            validate_route_host("*example.com").unwrap_err(),
            "invalid wildcard: must be placed at leftmost or rightmost label"
        );
        assert_eq!(
            validate_route_host("a.*.com").unwrap_err(),
            "invalid wildcard: must be placed at leftmost or rightmost label"
        );
        assert_eq!(
            validate_route_host("example.com:0").unwrap_err(),
            "invalid port number"
        );
        assert_eq!(
            validate_route_host("example.com:65536").unwrap_err(),
            "invalid port number"
        );
        assert_eq!(
            validate_route_host("1.2.3.4:70000").unwrap_err(),
            "invalid port number"
        );
        assert_eq!(
            validate_route_host("ex ample.com").unwrap_err(),
            "invalid hostname: ex ample.com"
        );
        assert_eq!(
            validate_route_host("a..b").unwrap_err(),
            "invalid hostname: a..b"
        );
        assert_eq!(
            validate_route_host("a-.b").unwrap_err(),
            "invalid hostname: a-.b"
        );
        assert_eq!(
            validate_route_host(".a.b").unwrap_err(),
            "invalid hostname: .a.b"
        );
        assert_eq!(
            validate_route_host("*.a..b").unwrap_err(),
            "invalid hostname: *.a..b"
        );
        assert_eq!(
            validate_route_host("a:b").unwrap_err(),
            "invalid hostname: a:b"
        );
        assert_eq!(validate_route_host("").unwrap_err(), "invalid hostname: ");
        assert_eq!(
            validate_route_host("256.1.1.1").unwrap_err(),
            "invalid ipv4 address: 256.1.1.1"
        );
        assert_eq!(
            validate_route_host("1.2.3").unwrap_err(),
            "invalid ipv4 address: 1.2.3"
        );
        assert_eq!(
            validate_route_host("[::g]").unwrap_err(),
            "invalid ipv6 address: [::g]"
        );
        assert_eq!(
            validate_route_host("[::1]x").unwrap_err(),
            "invalid ipv6 address: [::1]x"
        );
    }

    #[test]
    fn header_names() {
        assert_eq!(validate_header_name("X-Version_2"), Ok(()));
        assert_eq!(
            validate_header_name("").unwrap_err(),
            "no header name provided"
        );
        assert_eq!(
            validate_header_name("Host").unwrap_err(),
            "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
        );
        assert_eq!(
            validate_header_name("x foo").unwrap_err(),
            "bad header name 'x foo', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
        );
        assert!(validate_header_name("x:y").is_err());
        assert!(validate_header_name("hosts").is_ok());
    }

    #[test]
    fn header_values() {
        assert_eq!(validate_header_value("anything at all"), Ok(()));
        assert_eq!(validate_header_value(r"~*^v\d+$"), Ok(()));
        let err = validate_header_value("~*(").unwrap_err();
        assert!(err.starts_with("invalid regex: '(' ("), "{err}");
    }

    #[test]
    fn methods_and_snis() {
        assert_eq!(validate_route_method("GET"), Ok(()));
        assert_eq!(
            validate_route_method("get").unwrap_err(),
            "invalid value: get"
        );
        assert!(validate_route_method("").is_err());
        assert_eq!(validate_route_sni("example.com"), Ok(()));
        assert_eq!(
            validate_route_sni("1.2.3.4").unwrap_err(),
            "must not be an IP"
        );
        assert_eq!(
            validate_route_sni("example.com:443").unwrap_err(),
            "must not have a port"
        );
        assert_eq!(
            validate_route_sni("bad host").unwrap_err(),
            "invalid value: bad host"
        );
    }
}
