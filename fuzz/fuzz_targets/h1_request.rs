//! `h1_request`: the proxy's HTTP/1.1 request head parser (`h1::parse_request`) and the
//! chunked decoder behind it, fed one byte stream split at fuzzer-chosen points.
//!
//! For every input it checks that:
//! - the head parses the same however the stream is split: an incomplete prefix, then more
//!   bytes, into parts that held an earlier request, gives the same method, target, version,
//!   fields and leftover bytes (or the same refusal) as the whole stream at once;
//! - an incomplete head leaves the parts untouched and the buffer unread;
//! - the header map holds exactly the head's field lines (`src/fields.rs` reads them);
//! - the head written back the way the proxy writes one upstream (`write_request_line`,
//!   `write_headers`) parses to the same method, path, query and fields;
//! - `single_content_length` leaves one plain value, the number `content_length` read, and a
//!   body framed by length has every `Content-Length` element equal to that number;
//! - under the proxy's framing rule (mirrored from `server.rs`), a chunked body decodes the
//!   same in one piece, one byte at a time, at fuzzer-chosen cuts and in a reference decoder
//!   (`src/chunked.rs`): two parsers never disagree on where a body ends.
//!
//! Input: 9 control bytes (the head limit, two cut points in the stream, two in the body),
//! then the stream.
#![no_main]

use bytes::BytesMut;
use gatehouse_fuzz::{chunked, control, fields};
use gatehouse_proxy::h1::{self, HeadError};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Uri, Version, header};
use libfuzzer_sys::fuzz_target;

/// Head limits: tiny ones reach the `TooLarge` paths; the last is the proxy's default
/// (`Limits::max_head_bytes`).
const LIMITS: [usize; 4] = [16, 200, 4096, 64 * 1024];

/// A parsed request head, comparable.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    /// The map's entries in its iteration order.
    fields: Vec<(HeaderName, HeaderValue)>,
    extensions: usize,
}

impl Head {
    fn of(parts: &Parts) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            fields: parts
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            extensions: parts.extensions.len(),
        }
    }
}

/// What parsing the stream came to.
#[derive(Debug, PartialEq, Eq)]
enum Parse {
    /// A head, and the bytes after it.
    Parsed(Head, Vec<u8>),
    Incomplete,
    Refused(HeadError),
}

fn fresh_parts() -> Parts {
    http::Request::new(()).into_parts().0
}

/// Parts that held an earlier request on the same connection, as the proxy reuses them.
fn used_parts() -> Parts {
    let mut parts = fresh_parts();
    let mut buf = BytesMut::from(&b"POST /old?q=1 HTTP/1.0\r\nHost: old\r\nX-Old: 1\r\n\r\n"[..]);
    assert_eq!(h1::parse_request(&mut buf, 1024, &mut parts), Ok(true));
    parts.extensions.insert(7u32);
    parts
}

/// Feeds `pieces` one after the other, parsing after each as the connection does.
fn parse_in_pieces(pieces: &[&[u8]], max: usize) -> (Parse, Parts) {
    let mut parts = used_parts();
    let untouched = Head::of(&parts);
    let mut buf = BytesMut::new();
    for (i, piece) in pieces.iter().enumerate() {
        buf.extend_from_slice(piece);
        let buffered = buf.len();
        match h1::parse_request(&mut buf, max, &mut parts) {
            Ok(false) => {
                assert_eq!(buf.len(), buffered, "an incomplete head consumed bytes");
                assert_eq!(
                    Head::of(&parts),
                    untouched,
                    "an incomplete head changed the parts"
                );
            }
            Ok(true) => {
                let mut rest = buf.to_vec();
                for later in &pieces[i + 1..] {
                    rest.extend_from_slice(later);
                }
                return (Parse::Parsed(Head::of(&parts), rest), parts);
            }
            Err(e) => return (Parse::Refused(e), parts),
        }
    }
    (Parse::Incomplete, parts)
}

/// How the proxy frames a request body: `server.rs`'s `request_framing`, mirrored (it is
/// private there). `Transfer-Encoding` with `Content-Length`, on HTTP/1.0 or not ending in
/// chunked is refused; so is a `Content-Length` that is not one number.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Refused,
}

fn request_framing(parts: &mut Parts) -> Framing {
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        if parts.version != Version::HTTP_11
            || parts.headers.contains_key(header::CONTENT_LENGTH)
            || !h1::is_chunked(&parts.headers)
        {
            return Framing::Refused;
        }
        return Framing::Chunked;
    }
    let read = h1::content_length(&parts.headers);
    let single = h1::single_content_length(&mut parts.headers);
    assert_eq!(read, single, "single_content_length read another length");
    if let Ok(Some(n)) = single {
        let values: Vec<&[u8]> = parts
            .headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        assert_eq!(values, [n.to_string().as_bytes()], "not one plain value");
    }
    match single {
        Ok(Some(0) | None) => Framing::None,
        Ok(Some(n)) => Framing::Length(n),
        Err(_) => Framing::Refused,
    }
}

/// Every element of every `Content-Length` line on the wire, if all are plain decimal numbers.
fn wire_lengths(fields: &[fields::Field<'_>]) -> Option<Vec<u64>> {
    fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(b"content-length"))
        .flat_map(|f| f.value.split(|&b| b == b','))
        .map(|e| {
            let e = e.trim_ascii();
            if e.is_empty() || !e.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(e).ok()?.parse().ok()
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let (ctl, stream) = control::take::<9>(data);
    let max = LIMITS[usize::from(ctl[0]) % LIMITS.len()];
    let cuts = control::cuts(&ctl[1..5], stream.len());

    let mut buf = BytesMut::from(stream);
    let mut parts = fresh_parts();
    let whole = match h1::parse_request(&mut buf, max, &mut parts) {
        Ok(true) => Parse::Parsed(Head::of(&parts), buf.to_vec()),
        Ok(false) => {
            assert_eq!(buf.len(), stream.len());
            Parse::Incomplete
        }
        Err(e) => Parse::Refused(e),
    };
    let (split, _) = parse_in_pieces(&control::pieces(stream, &cuts), max);
    match (&whole, &split) {
        (Parse::Refused(a), Parse::Refused(b)) if a != b => {
            // Both refuse; which reason depends on how much was buffered when the head first
            // outgrew the limit (a later byte may be malformed too). Only that may differ.
            assert!(
                *a == HeadError::TooLarge || *b == HeadError::TooLarge,
                "refused for {a:?} in one piece, {b:?} cut at {cuts:?}"
            );
        }
        _ => assert_eq!(whole, split, "one piece vs cut at {cuts:?}"),
    }

    let Parse::Parsed(head, rest) = whole else {
        return;
    };
    assert_eq!(head.extensions, 0);
    let head_bytes = &stream[..stream.len() - rest.len()];
    assert!(
        head_bytes.len() <= max,
        "a head over the limit was accepted"
    );

    // The map holds the head's field lines.
    let wire = fields::read(head_bytes);
    fields::assert_map_holds(&parts.headers, &wire);

    // Written back as the proxy writes a request upstream, it reads the same.
    let path = parts.uri.path();
    let query = parts.uri.query();
    if path.starts_with('/') && h1::is_safe_target(path) && query.is_none_or(h1::is_safe_target) {
        let mut out = Vec::new();
        h1::write_request_line(&mut out, &parts.method, path, query);
        h1::write_headers(&mut out, &parts.headers);
        out.extend_from_slice(b"\r\n");
        let mut again = fresh_parts();
        let mut out_buf = BytesMut::from(&out[..]);
        assert_eq!(
            h1::parse_request(&mut out_buf, out.len(), &mut again),
            Ok(true),
            "the re-serialised head does not parse: {:?}",
            String::from_utf8_lossy(&out)
        );
        assert!(out_buf.is_empty());
        assert_eq!(again.method, parts.method);
        assert_eq!(again.uri.path(), path);
        assert_eq!(again.uri.query(), query);
        assert_eq!(again.version, Version::HTTP_11);
        assert_eq!(again.headers, parts.headers, "fields changed on the way");
    }

    // Where the body ends.
    match request_framing(&mut parts) {
        Framing::Chunked => {
            let cuts = control::cuts(&ctl[5..9], rest.len());
            chunked::check(&rest, &cuts);
        }
        Framing::Length(n) => {
            let lengths = wire_lengths(&wire).expect("framed by a length that is not a number");
            assert!(!lengths.is_empty() && lengths.iter().all(|&l| l == n));
        }
        Framing::None => {
            let lengths = wire_lengths(&wire).expect("a length that is not a number was taken");
            assert!(
                lengths.iter().all(|&l| l == 0),
                "a declared body was ignored"
            );
        }
        Framing::Refused => {}
    }
});
