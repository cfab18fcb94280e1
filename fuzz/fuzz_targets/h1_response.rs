//! `h1_response`: the proxy's HTTP/1.1 response head parser (`h1::parse_response` and the
//! `ResponseHead` it returns), fed one byte stream split at fuzzer-chosen points.
//!
//! For every input it checks that:
//! - the head parses the same however the stream is split: an incomplete prefix, then more
//!   bytes, gives the same head (every accessor, the forwarded fields, the `http` parts) and
//!   the same leftover bytes, or the same refusal, as the whole stream at once;
//! - what the head's one pass over its field names learned agrees with the shared helpers
//!   run on a map of all its field lines (read by `src/fields.rs`): `content_length`,
//!   `transfer_coding_chunked` (`is_chunked`), `keeps_alive`, `declared_length`, `Server`,
//!   `Date`;
//! - a forwardable head forwards exactly its fields less the hop-by-hop ones (RFC 9110
//!   §7.6.1, listed here) and `Content-Length`, in the upstream's order and spelling, and is
//!   forwardable unless it has a `Via`, more than 64 fields, or a `Connection` naming fields;
//! - `into_parts` holds every field but the framing ones, plus one plain `Content-Length`
//!   when the length is valid and there is no `Transfer-Encoding`;
//! - under the proxy's framing rule (mirrored from `upstream.rs`), a chunked body decodes the
//!   same in one piece, one byte at a time, at fuzzer-chosen cuts and in a reference decoder
//!   (`src/chunked.rs`).
//!
//! Input: 10 control bytes (the head limit, whether the request was HEAD, two cut points in
//! the stream, two in the body), then the stream.
#![no_main]

use bytes::BytesMut;
use gatehouse_fuzz::{chunked, control, fields};
use gatehouse_proxy::h1::{self, HeadError, ResponseHead};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version, header};
use libfuzzer_sys::fuzz_target;

/// Head limits: tiny ones reach the `TooLarge` paths; the last is the proxy's
/// (`upstream::MAX_RESPONSE_HEAD`).
const LIMITS: [usize; 4] = [16, 200, 4096, 64 * 1024];

/// Hop-by-hop fields (RFC 9110 §7.6.1, with the obsolete `Keep-Alive` and
/// `Proxy-Connection`), `Connection` and `Transfer-Encoding` among them.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

type Fields = Vec<(HeaderName, HeaderValue)>;

/// Everything a parsed response head tells, comparable.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: StatusCode,
    version: Version,
    content_length: Result<Option<u64>, HeadError>,
    declared_length: Option<u64>,
    chunked: Option<bool>,
    keeps_alive: bool,
    forwardable: bool,
    server: bool,
    date: bool,
    forwarded: Vec<(Vec<u8>, Vec<u8>)>,
    parts: Result<(StatusCode, Version, Fields), HeadError>,
}

impl Head {
    fn of(head: ResponseHead) -> Self {
        Self {
            status: head.status,
            version: head.version,
            content_length: head.content_length(),
            declared_length: head.declared_length(),
            chunked: head.transfer_coding_chunked(),
            keeps_alive: head.keeps_alive(),
            forwardable: head.forwardable(),
            server: head.has_server(),
            date: head.has_date(),
            forwarded: head
                .forwarded_fields()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect(),
            parts: head.into_parts().map(|p| {
                let fields = p.headers.iter().map(|(n, v)| (n.clone(), v.clone()));
                (p.status, p.version, fields.collect())
            }),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Parse {
    /// A head, and the bytes after it.
    Parsed(Box<Head>, Vec<u8>),
    Incomplete,
    Refused(HeadError),
}

fn parse_in_pieces(pieces: &[&[u8]], max: usize) -> Parse {
    let mut buf = BytesMut::new();
    for (i, piece) in pieces.iter().enumerate() {
        buf.extend_from_slice(piece);
        let buffered = buf.len();
        match h1::parse_response(&mut buf, max) {
            Ok(None) => assert_eq!(buf.len(), buffered, "an incomplete head consumed bytes"),
            Ok(Some(head)) => {
                let mut rest = buf.to_vec();
                for later in &pieces[i + 1..] {
                    rest.extend_from_slice(later);
                }
                return Parse::Parsed(Box::new(Head::of(head)), rest);
            }
            Err(e) => return Parse::Refused(e),
        }
    }
    Parse::Incomplete
}

/// How the proxy frames a response body: `upstream.rs`'s `response_framing`, mirrored (it
/// is private there).
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    Close,
    Refused,
}

fn response_framing(head: &Head, head_method: bool) -> Framing {
    if head_method
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED
    {
        return Framing::Length(0);
    }
    match head.chunked {
        Some(true) => Framing::Chunked,
        Some(false) => Framing::Close,
        None => match head.content_length {
            Ok(Some(n)) => Framing::Length(n),
            Ok(None) => Framing::Close,
            Err(_) => Framing::Refused,
        },
    }
}

/// Whether a `Connection` value names anything but `close` and `keep-alive`.
fn names_fields(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .any(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case(b"close")
                && !t.eq_ignore_ascii_case(b"keep-alive")
        })
}

fn is(name: &[u8], field: &str) -> bool {
    name.eq_ignore_ascii_case(field.as_bytes())
}

/// Checks `head` against the field lines of `head_bytes`.
fn check_against_fields(head: &Head, head_bytes: &[u8]) {
    let wire = fields::read(head_bytes);
    let mut all = HeaderMap::new();
    for f in &wire {
        let name = HeaderName::from_bytes(f.name).expect("httparse took an invalid name");
        let value = HeaderValue::from_bytes(f.value).expect("httparse took an invalid value");
        all.append(name, value);
    }
    fields::assert_map_holds(&all, &wire);

    assert_eq!(head.content_length, h1::content_length(&all));
    let has_te = all.contains_key(header::TRANSFER_ENCODING);
    assert_eq!(head.chunked, has_te.then(|| h1::is_chunked(&all)));
    assert_eq!(head.keeps_alive, h1::keeps_alive(head.version, &all));
    let declared = if has_te {
        None
    } else {
        head.content_length.clone().ok().flatten()
    };
    assert_eq!(head.declared_length, declared);
    assert_eq!(head.server, all.contains_key(header::SERVER));
    assert_eq!(head.date, all.contains_key(header::DATE));

    for f in &wire {
        let hop = HOP_BY_HOP.iter().any(|h| is(f.name, h));
        assert_eq!(
            h1::is_hop_by_hop(f.name),
            hop,
            "{:?}",
            String::from_utf8_lossy(f.name)
        );
    }
    let needs_map = wire.len() > 64
        || wire.iter().any(|f| is(f.name, "via"))
        || wire
            .iter()
            .any(|f| is(f.name, "connection") && names_fields(f.value));
    assert_eq!(head.forwardable, !needs_map);
    if head.forwardable {
        let kept: Vec<(Vec<u8>, Vec<u8>)> = wire
            .iter()
            .filter(|f| !HOP_BY_HOP.iter().any(|h| is(f.name, h)) && !is(f.name, "content-length"))
            .map(|f| (f.name.to_vec(), f.value.to_vec()))
            .collect();
        assert_eq!(head.forwarded, kept, "forwarded fields");
    }

    let mut expected = HeaderMap::new();
    for (name, value) in &all {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            expected.append(name.clone(), value.clone());
        }
    }
    if !has_te && let Ok(Some(n)) = head.content_length {
        expected.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let (status, version, parts) = head
        .parts
        .as_ref()
        .expect("into_parts refused a parsed head");
    assert_eq!((*status, *version), (head.status, head.version));
    let got: HeaderMap = parts.iter().cloned().collect();
    assert_eq!(got, expected, "into_parts");
}

fuzz_target!(|data: &[u8]| {
    let (ctl, stream) = control::take::<10>(data);
    let max = LIMITS[usize::from(ctl[0]) % LIMITS.len()];
    let head_method = ctl[1] & 1 == 1;
    let cuts = control::cuts(&ctl[2..6], stream.len());

    let mut buf = BytesMut::from(stream);
    let whole = match h1::parse_response(&mut buf, max) {
        Ok(Some(head)) => Parse::Parsed(Box::new(Head::of(head)), buf.to_vec()),
        Ok(None) => {
            assert_eq!(buf.len(), stream.len());
            Parse::Incomplete
        }
        Err(e) => Parse::Refused(e),
    };
    let split = parse_in_pieces(&control::pieces(stream, &cuts), max);
    match (&whole, &split) {
        (Parse::Refused(a), Parse::Refused(b)) if a != b => {
            // Which reason depends on how much was buffered when the head first outgrew the
            // limit; only that may differ.
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
    let head_bytes = &stream[..stream.len() - rest.len()];
    assert!(
        head_bytes.len() <= max,
        "a head over the limit was accepted"
    );
    check_against_fields(&head, head_bytes);

    if response_framing(&head, head_method) == Framing::Chunked {
        let cuts = control::cuts(&ctl[6..10], rest.len());
        chunked::check(&rest, &cuts);
    }
});
