//! `router_path`: request path normalisation (`gatehouse_router::normalize_path`), prefix
//! route matching on its result, and upstream path construction (`upstream_path`).
//!
//! For every input it checks that:
//! - `normalize_path` agrees with the reference normaliser below, written from what
//!   `crates/router/src/path.rs` documents: the path must start with `/`; NUL (raw or `%00`)
//!   and malformed escapes are refused, the first problem from the left deciding the error;
//!   escapes of unreserved characters are decoded, other escapes uppercased, raw characters
//!   outside RFC 3986's unreserved and Kong's reserved sets percent-encoded; then runs of `/`
//!   are merged and dot segments removed as RFC 3986 §5.2.4 says;
//! - the result is ASCII, starts with `/`, has no empty, `.` or `..` segment, is borrowed
//!   exactly when nothing changed, and normalises to itself (idempotence);
//! - a prefix route whose path is a normalised prefix of the result matches it, and reports
//!   that prefix's length; a longer route that is not a prefix never wins;
//! - the upstream path built from it, for several service paths, both `strip_path` values and
//!   both `path_handling`s, never has a `.` or `..` segment (which the upstream would resolve,
//!   escaping the service's path).
//!
//! Input: 2 control bytes (where to cut the route's prefix, which upstream variant), then the
//! path (invalid UTF-8 is replaced, as the path of a `http::Uri` is text).
#![no_main]

use gatehouse_fuzz::control;
use gatehouse_router::{
    PathError, PathHandling, RequestView, RouteSpec, Router, normalize_path, upstream_path,
    validate_route_path,
};
use libfuzzer_sys::fuzz_target;
use std::borrow::Cow;

/// RFC 3986 unreserved characters.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// Kong's reserved characters (`kong/tools/uri.lua`), `%` aside: a raw `%` always starts an
/// escape.
fn is_reserved(b: u8) -> bool {
    b"!*'();:@&=+$,/?#[]".contains(&b)
}

fn push_escape(out: &mut String, b: u8) {
    out.push_str(&format!("%{b:02X}"));
}

/// The reference normaliser.
fn reference(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut canonical = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0 => return Err(PathError::Nul),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or(PathError::BadEscape { offset: i })?;
                let Ok(v) = u8::from_str_radix(hex, 16) else {
                    return Err(PathError::BadEscape { offset: i });
                };
                if v == 0 {
                    return Err(PathError::Nul);
                }
                if is_unreserved(v) {
                    canonical.push(char::from(v));
                } else {
                    push_escape(&mut canonical, v);
                }
                i += 3;
            }
            b if is_unreserved(b) || is_reserved(b) => {
                canonical.push(char::from(b));
                i += 1;
            }
            b => {
                push_escape(&mut canonical, b);
                i += 1;
            }
        }
    }
    let mut merged = String::with_capacity(canonical.len());
    for c in canonical.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    Ok(remove_dot_segments(&merged))
}

/// RFC 3986 §5.2.4, step by step, on a path that starts with `/`.
fn remove_dot_segments(path: &str) -> String {
    fn pop_segment(out: &mut String) {
        let at = out.rfind('/').unwrap_or(0);
        out.truncate(at);
    }
    let mut input: &str = path;
    let mut out = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest; // A
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest; // A
        } else if input.starts_with("/./") {
            input = &input[2..]; // B
        } else if input == "/." {
            input = "/"; // B
        } else if input.starts_with("/../") {
            input = &input[3..]; // C
            pop_segment(&mut out);
        } else if input == "/.." {
            input = "/"; // C
            pop_segment(&mut out);
        } else if input == "." || input == ".." {
            input = ""; // D
        } else {
            // E: the first segment, with its leading "/", moves to the output.
            let end = input[1..].find('/').map_or(input.len(), |i| i + 1);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    if out.is_empty() { "/".to_owned() } else { out }
}

/// Whether some segment of `path` is `.` or `..`.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|s| s == "." || s == "..")
}

fuzz_target!(|data: &[u8]| {
    let (ctl, rest) = control::take::<2>(data);
    let raw = String::from_utf8_lossy(rest);
    let ours = normalize_path(&raw);
    let theirs = reference(&raw);
    assert_eq!(
        ours.as_deref().map_err(Clone::clone),
        theirs.as_deref().map_err(Clone::clone),
        "normalize_path vs the reference for {raw:?}"
    );
    let Ok(path) = ours else {
        return;
    };
    assert_eq!(
        matches!(path, Cow::Borrowed(_)),
        path == raw,
        "borrowed exactly when unchanged"
    );
    assert!(path.is_ascii() && path.starts_with('/'), "{path:?}");
    assert!(!path.contains("//"), "empty segment in {path:?}");
    assert!(!has_dot_segment(&path), "dot segment in {path:?}");
    match normalize_path(&path) {
        Ok(Cow::Borrowed(again)) => assert_eq!(again, &*path),
        other => panic!("not idempotent: {path:?} normalises to {other:?}"),
    }

    // A prefix route whose path is a normalised prefix of the request's matches it.
    let cut = 1 + usize::from(ctl[0]) % path.len();
    let prefix = &path[..cut];
    let longer = format!("{path}x");
    if validate_route_path(prefix).is_ok()
        && matches!(normalize_path(prefix), Ok(Cow::Borrowed(_)))
        && validate_route_path(&longer).is_ok()
    {
        let routes = [
            RouteSpec {
                id: 1,
                paths: vec![prefix.to_owned()],
                ..RouteSpec::default()
            },
            RouteSpec {
                id: 2,
                paths: vec![longer.clone()],
                ..RouteSpec::default()
            },
        ];
        let router = Router::build(&routes).expect("valid routes refused");
        let headers = http::HeaderMap::new();
        let request = RequestView {
            method: &http::Method::GET,
            host: Some("example.com"),
            path: &path,
            headers: &headers,
            sni: None,
            websocket: false,
        };
        let m = router.find(&request).expect("a prefix route did not match");
        assert_eq!(m.route_id, 1, "{longer:?} matched {path:?}");
        assert_eq!(m.matched_path, Some(prefix));
        assert_eq!(m.prefix_len, prefix.len());
    }

    // The upstream path has no dot segment, whatever the route consumed.
    let services = [None, Some("/"), Some("/s"), Some("/s/")];
    let service = services[usize::from(ctl[1]) % services.len()];
    for strip in [false, true] {
        for handling in [PathHandling::V0, PathHandling::V1] {
            let upstream = upstream_path(service, &path, cut, strip, handling);
            assert!(
                !has_dot_segment(&upstream),
                "upstream {upstream:?} from {path:?} (service {service:?}, consumed {cut}, \
                 strip {strip}, {handling:?})"
            );
        }
    }
});
