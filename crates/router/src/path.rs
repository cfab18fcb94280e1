//! Request path normalization (spec C.2) and upstream path construction
//! (spec C.4).
//!
//! Kong matches routes against a *normalized* request path and forwards that
//! normalized path (re-escaped) upstream. Kong's own pipeline is
//! `normalize` (decode every `%XX` that is not a reserved character, remove
//! dot segments, merge `//`) followed by `escape` when the path is written to
//! the wire. [`normalize_path`] produces the composition of the two directly:
//! unreserved characters are decoded, every other escape is kept (with
//! uppercase hex digits) and raw characters Kong would escape are
//! percent-encoded. The result is therefore always ASCII and safe to send
//! upstream as is, and prefix routes are compared against it after the same
//! canonicalization (see the `compile` module), which makes prefix matching
//! equivalent to Kong's.

use std::borrow::Cow;
use std::str::FromStr;

/// Why a request path could not be normalized; the proxy answers `400`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/` (origin-form paths always do).
    #[error("path must start with '/'")]
    NotAbsolute,
    /// A `%` is not followed by two hexadecimal digits.
    #[error("invalid url-encoded value at byte {offset}")]
    BadEscape {
        /// Byte offset of the offending `%` in the raw path.
        offset: usize,
    },
    /// The path contains a NUL byte, raw or as `%00`.
    #[error("path contains a NUL byte")]
    Nul,
}

/// Character classes of RFC 3986 as Kong's `kong/tools/uri.lua` uses them.
const UNRESERVED: u8 = 1;
const RESERVED: u8 = 2;

/// Kong's reserved set (`RESERVED_CHARS`), which includes `%` itself.
const RESERVED_CHARS: &[u8] = b"!*'();:@&=+$,/?%#[]";

static CLASS: [u8; 256] = build_class_table();

const fn build_class_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_' || c == b'~' {
            t[b] = UNRESERVED;
        }
        b += 1;
    }
    let mut i = 0;
    while i < RESERVED_CHARS.len() {
        t[RESERVED_CHARS[i] as usize] = RESERVED;
        i += 1;
    }
    t
}

fn is_unreserved(b: u8) -> bool {
    CLASS[b as usize] == UNRESERVED
}

fn is_reserved(b: u8) -> bool {
    CLASS[b as usize] == RESERVED
}

/// Raw characters that may appear unescaped on the wire (Kong's `escape`
/// leaves exactly unreserved + reserved characters alone).
fn is_wire_safe(b: u8) -> bool {
    CLASS[b as usize] != 0
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
    out.push(char::from(HEX_UPPER[usize::from(b & 0x0f)]));
}

/// Decodes the `%XX` at `bytes[i]`; `Err` when it is not a valid escape.
fn escape_at(bytes: &[u8], i: usize) -> Result<u8, PathError> {
    let hi = bytes.get(i + 1).copied().and_then(hex_val);
    let lo = bytes.get(i + 2).copied().and_then(hex_val);
    match (hi, lo) {
        (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
        _ => Err(PathError::BadEscape { offset: i }),
    }
}

/// Which `%XX` escapes get decoded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Decode {
    /// Wire-safe canonical form: decode unreserved only (used for matching).
    Unreserved,
    /// Kong's `normalize`: decode everything but reserved characters (used
    /// to reproduce Kong's "non-normalized path" suggestion).
    KongNormalize,
}

/// Normalizes a request path as described in spec C.2: uppercases `%xx`
/// escapes, decodes %-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`),
/// removes dot segments (RFC 3986 5.2.4) and merges repeated `/`.
///
/// Raw characters outside RFC 3986's unreserved and reserved sets (for
/// example non-ASCII UTF-8, `"`, `{`) are percent-encoded, so the result is
/// always ASCII and equals what Kong sends upstream (`escape(normalize(p))`).
/// Reserved escapes such as `%2F` are kept (uppercased) because decoding
/// them would change the path's meaning.
///
/// Returns `Cow::Borrowed` when the path is already normalized, so the common
/// case does not allocate.
///
/// # Errors
/// [`PathError`] when the path does not start with `/`, has a malformed
/// `%` escape, or contains NUL (raw or `%00`).
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    normalize_with(raw, Decode::Unreserved)
}

/// Kong's own `normalize(path, true)` (decoding "other" characters too),
/// used only to word validation errors the way Kong does.
pub(crate) fn kong_normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    normalize_with(raw, Decode::KongNormalize)
}

fn normalize_with(raw: &str, mode: Decode) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = if needs_rewrite(bytes, mode)? {
        Cow::Owned(match mode {
            Decode::Unreserved => rewrite_canonical(bytes)?,
            Decode::KongNormalize => rewrite_kong(bytes)?,
        })
    } else {
        Cow::Borrowed(raw)
    };
    if has_dot_or_empty_segments(&decoded) {
        Ok(Cow::Owned(remove_dot_segments(&decoded)))
    } else {
        Ok(decoded)
    }
}

/// Scans the path once, validating escapes and telling whether anything must
/// be decoded, uppercased or encoded.
fn needs_rewrite(bytes: &[u8], mode: Decode) -> Result<bool, PathError> {
    let mut rewrite = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0 {
            return Err(PathError::Nul);
        }
        if b == b'%' {
            let v = escape_at(bytes, i)?;
            if v == 0 {
                return Err(PathError::Nul);
            }
            let lower_hex = bytes[i + 1].is_ascii_lowercase() || bytes[i + 2].is_ascii_lowercase();
            rewrite |= lower_hex
                || match mode {
                    Decode::Unreserved => is_unreserved(v),
                    Decode::KongNormalize => !is_reserved(v),
                };
            i += 3;
            continue;
        }
        if mode == Decode::Unreserved && !is_wire_safe(b) {
            rewrite = true;
        }
        i += 1;
    }
    Ok(rewrite)
}

fn rewrite_canonical(bytes: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(bytes.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let v = escape_at(bytes, i)?;
            if is_unreserved(v) {
                out.push(char::from(v));
            } else {
                push_escaped(&mut out, v);
            }
            i += 3;
        } else {
            if is_wire_safe(b) {
                out.push(char::from(b));
            } else {
                // Each byte of a multi-byte UTF-8 character is encoded on its
                // own, exactly as Kong's `escape` does.
                push_escaped(&mut out, b);
            }
            i += 1;
        }
    }
    Ok(out)
}

fn rewrite_kong(bytes: &[u8]) -> Result<String, PathError> {
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let v = escape_at(bytes, i)?;
            // Control characters stay encoded so that a suggestion shown to
            // an operator never contains them.
            if is_reserved(v) || v < 0x20 || v == 0x7f {
                out.extend_from_slice(&[
                    b'%',
                    HEX_UPPER[usize::from(v >> 4)],
                    HEX_UPPER[usize::from(v & 0x0f)],
                ]);
            } else {
                out.push(v);
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    // Decoded bytes that do not form UTF-8 cannot live in a `str`: keep them
    // encoded (Kong would hold raw bytes there).
    let mut s = String::with_capacity(out.len());
    for chunk in out.utf8_chunks() {
        s.push_str(chunk.valid());
        for &b in chunk.invalid() {
            push_escaped(&mut s, b);
        }
    }
    Ok(s)
}

/// True when some segment is empty (other than a final one, i.e. a trailing
/// slash), `.` or `..`.
fn has_dot_or_empty_segments(path: &str) -> bool {
    let rest = path.get(1..).unwrap_or("");
    let mut segs = rest.split('/').peekable();
    while let Some(seg) = segs.next() {
        let last = segs.peek().is_none();
        match seg {
            "." | ".." => return true,
            "" if !last => return true,
            _ => {}
        }
    }
    false
}

/// RFC 3986 5.2.4 `remove_dot_segments` combined with merging of empty
/// segments (`//`), which is what Kong's `normalize(uri, true)` computes.
/// A trailing `/`, `/.` or `/..` leaves a trailing slash, as in the RFC.
fn remove_dot_segments(path: &str) -> String {
    let rest = path.get(1..).unwrap_or("");
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let mut segs = rest.split('/').peekable();
    while let Some(seg) = segs.next() {
        let last = segs.peek().is_none();
        match seg {
            "" | "." => trailing_slash = last,
            ".." => {
                out.pop();
                trailing_slash = last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        s.push('/');
    }
    s
}

/// A route's `path_handling` (spec B.3): how service path, matched route
/// path and request path are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PathHandling {
    /// Kong's default (`get_upstream_uri_v0`): avoids gluing segments
    /// together when the service path has no trailing slash.
    #[default]
    V0,
    /// Deprecated behaviour: plain concatenation, collapsing only a double
    /// slash at the junction.
    V1,
}

impl PathHandling {
    /// The configuration value, `"v0"` or `"v1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PathHandling::V0 => "v0",
            PathHandling::V1 => "v1",
        }
    }
}

impl FromStr for PathHandling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v0" => Ok(PathHandling::V0),
            "v1" => Ok(PathHandling::V1),
            other => Err(format!("expected one of: v0, v1 (got '{other}')")),
        }
    }
}

/// Kong's `sanitize_uri_postfix`: a postfix starting with a dot segment
/// would otherwise reintroduce `.`/`..` upstream.
fn sanitize_postfix(postfix: &str) -> &str {
    if postfix == "." || postfix == ".." {
        return "";
    }
    if let Some(rest) = postfix.strip_prefix("./") {
        return rest;
    }
    if let Some(rest) = postfix.strip_prefix("../") {
        return rest;
    }
    postfix
}

/// Builds the upstream request path (spec C.4; Kong's `get_upstream_uri_v0`
/// and the v1 branch of `traditional.lua` `find_match`).
///
/// * `service_path`: the Service's `path`; `None` (or empty) means `/`.
/// * `request_path`: the normalized request path, without query string.
/// * `prefix_len`: [`Match::prefix_len`](crate::Match::prefix_len), the
///   bytes of `request_path` consumed by the route path (whole regex match
///   for regex paths); `0` when the route matched without a path. A value
///   beyond the path or inside a UTF-8 character is treated like `0`.
/// * `strip_path`, `handling`: the route's settings.
///
/// The query string is not handled here; the caller appends it unchanged.
/// Note that Kong's `traditional_compatible` flavor ignores `v1` (it always
/// uses v0); callers that want that exact behaviour pass
/// [`PathHandling::V0`].
pub fn upstream_path(
    service_path: Option<&str>,
    request_path: &str,
    prefix_len: usize,
    strip_path: bool,
    handling: PathHandling,
) -> String {
    let base = match service_path {
        Some(p) if !p.is_empty() => p,
        _ => "/",
    };
    // Without a path match the postfix is the request path minus its leading
    // slash (Kong: `matches.uri_postfix or sub(req_uri, 2)`).
    let without_slash = request_path.get(1..).unwrap_or("");
    let raw_postfix = if strip_path && prefix_len > 0 {
        request_path.get(prefix_len..).unwrap_or(without_slash)
    } else {
        without_slash
    };
    let postfix = sanitize_postfix(raw_postfix);

    match handling {
        PathHandling::V1 => v1(base, request_path, postfix, strip_path),
        PathHandling::V0 => v0(base, request_path, postfix, strip_path),
    }
}

fn concat(a: &str, b: &str) -> String {
    let mut s = String::with_capacity(a.len() + b.len() + 1);
    s.push_str(a);
    s.push_str(b);
    s
}

fn v1(base: &str, request_path: &str, postfix: &str, strip_path: bool) -> String {
    if strip_path {
        match base.strip_suffix('/') {
            // Double "/" at the junction: drop the service path's.
            Some(trimmed) if postfix.starts_with('/') => concat(trimmed, postfix),
            _ => concat(base, postfix),
        }
    } else {
        // Keep the incoming path, minus its initial slash, after the base.
        concat(base, request_path.get(1..).unwrap_or(""))
    }
}

fn v0(base: &str, request_path: &str, postfix: &str, strip_path: bool) -> String {
    let request_ends_with_slash = request_path.ends_with('/');
    if let Some(base_trimmed) = base.strip_suffix('/') {
        if !strip_path {
            return concat(base, request_path.get(1..).unwrap_or(""));
        }
        if postfix.is_empty() {
            if base == "/" || request_ends_with_slash {
                base.to_owned()
            } else {
                base_trimmed.to_owned()
            }
        } else if postfix.starts_with('/') {
            concat(base_trimmed, postfix)
        } else {
            concat(base, postfix)
        }
    } else if strip_path {
        if postfix.is_empty() {
            if request_path.len() > 1 && request_ends_with_slash {
                concat(base, "/")
            } else {
                base.to_owned()
            }
        } else if postfix.starts_with('/') {
            concat(base, postfix)
        } else {
            let mut s = String::with_capacity(base.len() + postfix.len() + 1);
            s.push_str(base);
            s.push('/');
            s.push_str(postfix);
            s
        }
    } else if request_path == "/" {
        base.to_owned()
    } else {
        concat(base, request_path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn norm(p: &str) -> String {
        normalize_path(p).unwrap().into_owned()
    }

    #[test]
    fn removes_dot_segments() {
        assert_eq!(norm("/a/./b/../c"), "/a/c");
        assert_eq!(norm("/a/b/.."), "/a/");
        assert_eq!(norm("/a/b/."), "/a/b/");
        assert_eq!(norm("/.."), "/");
        assert_eq!(norm("/../a"), "/a");
        assert_eq!(norm("/a/b/../../.."), "/");
        assert_eq!(norm("/..a/.b/c."), "/..a/.b/c.");
    }

    #[test]
    fn merges_slashes() {
        assert_eq!(norm("//a///b"), "/a/b");
        assert_eq!(norm("/a//"), "/a/");
        assert_eq!(norm("//"), "/");
        assert_eq!(norm("/a//../b"), "/b");
    }

    #[test]
    fn decodes_unreserved_and_uppercases_the_rest() {
        assert_eq!(norm("/%7e"), "/~");
        assert_eq!(norm("/%41"), "/A");
        assert_eq!(norm("/a%2fb"), "/a%2Fb");
        assert_eq!(norm("/a%2Fb"), "/a%2Fb");
        assert_eq!(norm("/%20x"), "/%20x");
        assert_eq!(norm("/caf%c3%a9"), "/caf%C3%A9");
        // Encoded dots are dot segments once decoded (Kong: "/%2e./" is "/../").
        assert_eq!(norm("/a/%2e%2E/b"), "/b");
    }

    #[test]
    fn encodes_raw_characters_kong_would_escape() {
        assert_eq!(norm("/café"), "/caf%C3%A9");
        assert_eq!(norm("/a b"), "/a%20b");
        assert_eq!(norm("/{x}"), "/%7Bx%7D");
        assert_eq!(norm("/!$&'()*+,;=:@[]"), "/!$&'()*+,;=:@[]");
    }

    #[test]
    fn borrows_when_already_normalized() {
        assert!(matches!(
            normalize_path("/a/b/c/").unwrap(),
            Cow::Borrowed(_)
        ));
        assert!(matches!(normalize_path("/").unwrap(), Cow::Borrowed(_)));
        assert!(matches!(
            normalize_path("/a%2Fb").unwrap(),
            Cow::Borrowed(_)
        ));
        assert!(matches!(normalize_path("/a/./b").unwrap(), Cow::Owned(_)));
    }

    #[test]
    fn rejects_unnormalizable_paths() {
        assert_eq!(normalize_path("%zz"), Err(PathError::NotAbsolute));
        assert_eq!(
            normalize_path("/%zz"),
            Err(PathError::BadEscape { offset: 1 })
        );
        assert_eq!(
            normalize_path("/a%4"),
            Err(PathError::BadEscape { offset: 2 })
        );
        assert_eq!(
            normalize_path("/a%"),
            Err(PathError::BadEscape { offset: 2 })
        );
        assert_eq!(normalize_path(""), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("/a\0b"), Err(PathError::Nul));
        assert_eq!(normalize_path("/a%00b"), Err(PathError::Nul));
    }

    #[test]
    fn kong_normalize_decodes_others() {
        assert_eq!(kong_normalize("/caf%C3%A9").unwrap(), "/café");
        assert_eq!(kong_normalize("/a%20b").unwrap(), "/a b");
        assert_eq!(kong_normalize("/a%2fb").unwrap(), "/a%2Fb");
        assert_eq!(kong_normalize("/%FF").unwrap(), "/%FF");
        assert_eq!(kong_normalize("/café").unwrap(), "/café");
    }

    /// The 16-row example table of Kong's route documentation
    /// (service path, route path, strip_path, path_handling, request path,
    /// expected upstream path). Every row agrees with the algorithm of spec
    /// C.4 / Kong's `get_upstream_uri_v0`, so no row needed an override.
    #[test]
    fn kong_documentation_table() {
        use PathHandling::{V0, V1};
        let rows: [(&str, &str, bool, PathHandling, &str, &str); 16] = [
            ("/s", "/fv0", false, V0, "/fv0req", "/s/fv0req"),
            ("/s", "/fv0", false, V0, "/fv0/req", "/s/fv0/req"),
            ("/s", "/fv1", false, V1, "/fv1req", "/sfv1req"),
            ("/s", "/fv1", false, V1, "/fv1/req", "/sfv1/req"),
            ("/s", "/tv0", true, V0, "/tv0req", "/s/req"),
            ("/s", "/tv0", true, V0, "/tv0/req", "/s/req"),
            ("/s", "/tv1", true, V1, "/tv1req", "/sreq"),
            ("/s", "/tv1", true, V1, "/tv1/req", "/s/req"),
            ("/s", "/fv0/", false, V0, "/fv0/req", "/s/fv0/req"),
            ("/s", "/fv1/", false, V1, "/fv1/req", "/sfv1/req"),
            ("/s", "/tv0/", true, V0, "/tv0/req", "/s/req"),
            ("/s", "/tv1/", true, V1, "/tv1/req", "/sreq"),
            ("/s/", "/fv0", false, V0, "/fv0req", "/s/fv0req"),
            ("/s/", "/fv1", false, V1, "/fv1req", "/s/fv1req"),
            ("/s/", "/tv0", true, V0, "/tv0req", "/s/req"),
            ("/s/", "/tv1", true, V1, "/tv1req", "/s/req"),
        ];
        for (service, route, strip, handling, request, expected) in rows {
            assert!(request.starts_with(route));
            let got = upstream_path(Some(service), request, route.len(), strip, handling);
            assert_eq!(
                got, expected,
                "service {service} route {route} strip {strip} {handling:?} request {request}"
            );
        }
    }

    #[test]
    fn service_path_none_is_root() {
        assert_eq!(upstream_path(None, "/", 1, true, PathHandling::V0), "/");
        assert_eq!(upstream_path(Some(""), "/", 1, true, PathHandling::V0), "/");
        assert_eq!(
            upstream_path(None, "/foo/bar", 4, true, PathHandling::V0),
            "/bar"
        );
        assert_eq!(
            upstream_path(None, "/foo/bar", 4, false, PathHandling::V0),
            "/foo/bar"
        );
        assert_eq!(upstream_path(None, "/foo", 4, true, PathHandling::V0), "/");
        assert_eq!(upstream_path(None, "/foo/", 4, true, PathHandling::V0), "/");
    }

    #[test]
    fn empty_postfix_keeps_or_drops_trailing_slash() {
        let v0 = PathHandling::V0;
        // Base without trailing slash.
        assert_eq!(upstream_path(Some("/s"), "/foo", 4, true, v0), "/s");
        assert_eq!(upstream_path(Some("/s"), "/foo/", 5, true, v0), "/s/");
        // Base with trailing slash.
        assert_eq!(upstream_path(Some("/s/"), "/foo", 4, true, v0), "/s");
        assert_eq!(upstream_path(Some("/s/"), "/foo/", 5, true, v0), "/s/");
        // Route `/` and request `/`.
        assert_eq!(upstream_path(Some("/s"), "/", 1, true, v0), "/s");
        // Kong keeps the base's slash when the request ends with one.
        assert_eq!(upstream_path(Some("/s/"), "/", 1, true, v0), "/s/");
        assert_eq!(upstream_path(Some("/s"), "/", 1, false, v0), "/s");
        // v1 simply concatenates.
        assert_eq!(
            upstream_path(Some("/s"), "/foo/", 5, true, PathHandling::V1),
            "/s"
        );
    }

    #[test]
    fn postfix_is_sanitized() {
        let v0 = PathHandling::V0;
        assert_eq!(upstream_path(Some("/s"), "/foo.x", 4, true, v0), "/s/.x");
        assert_eq!(upstream_path(Some("/s"), "/fo./x", 3, true, v0), "/s/x");
        assert_eq!(upstream_path(Some("/s"), "/fo../x", 3, true, v0), "/s/x");
        assert_eq!(upstream_path(Some("/s"), "/fo..", 3, true, v0), "/s");
    }

    #[test]
    fn regex_prefix_is_the_whole_match() {
        // Route `~/api/(?<v>v\d+)` matched `/api/v2` of `/api/v2/users`.
        let req = "/api/v2/users";
        assert_eq!(
            upstream_path(Some("/s"), req, "/api/v2".len(), true, PathHandling::V0),
            "/s/users"
        );
        assert_eq!(
            upstream_path(Some("/s"), req, "/api/v2".len(), false, PathHandling::V0),
            "/s/api/v2/users"
        );
    }

    #[test]
    fn no_path_match_uses_whole_request_path() {
        assert_eq!(
            upstream_path(Some("/s"), "/a/b", 0, true, PathHandling::V0),
            "/s/a/b"
        );
        assert_eq!(
            upstream_path(Some("/s"), "/a/b", 0, true, PathHandling::V1),
            "/sa/b"
        );
        // Out-of-range prefix lengths are treated like "no path match".
        assert_eq!(
            upstream_path(Some("/s"), "/a/b", 99, true, PathHandling::V0),
            "/s/a/b"
        );
    }

    #[test]
    fn path_handling_parses() {
        assert_eq!("v0".parse::<PathHandling>(), Ok(PathHandling::V0));
        assert_eq!("v1".parse::<PathHandling>(), Ok(PathHandling::V1));
        assert!("v2".parse::<PathHandling>().is_err());
        assert_eq!(PathHandling::default().as_str(), "v0");
    }
}
