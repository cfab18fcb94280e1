//! The proxy's own HTTP/1.1 codec: message heads are parsed with `httparse` and written by
//! hand, bodies are framed here (`Content-Length`, chunked, or until close), and the I/O of an
//! exchange runs inline in the task of the request, with no task or channel per exchange.
//!
//! Parsed heads become `http` types (`Parts`, `HeaderMap`), the types plugins work with; header
//! values are slices of the buffer the head was read into, not copies.

pub mod chunked;
mod response;

pub use response::{ResponseHead, is_hop_by_hop};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// Headers per message head parsed without allocating; more are parsed from the heap.
const INLINE_HEADERS: usize = 64;
/// The most header fields a message head may have.
pub const MAX_HEADERS: usize = 512;

/// Why a message head was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    /// Not an HTTP/1.x message head.
    #[error("{0}")]
    Parse(&'static str),
    /// Larger than the limit, or more than [`MAX_HEADERS`] fields.
    #[error("message head too large")]
    TooLarge,
    /// `Content-Length` is not a number, or several disagree.
    #[error("invalid Content-Length")]
    ContentLength,
    /// A header name or value `http` refuses.
    #[error("invalid header field")]
    Header,
}

impl From<httparse::Error> for HeadError {
    fn from(e: httparse::Error) -> Self {
        match e {
            httparse::Error::TooManyHeaders => Self::TooLarge,
            other => Self::Parse(match other {
                httparse::Error::HeaderName => "invalid header name",
                httparse::Error::HeaderValue => "invalid header value",
                httparse::Error::NewLine => "invalid line ending",
                httparse::Error::Status => "invalid status",
                httparse::Error::Token => "invalid token",
                httparse::Error::Version => "invalid HTTP version",
                _ => "malformed message head",
            }),
        }
    }
}

/// Where each header's name and value lie in the head's bytes.
type FieldSpans = Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>;

fn spans(base: &[u8], headers: &[httparse::Header<'_>]) -> FieldSpans {
    let start = base.as_ptr().addr();
    headers
        .iter()
        .map(|h| {
            let n = h.name.as_ptr().addr() - start;
            let v = h.value.as_ptr().addr() - start;
            (n..n + h.name.len(), v..v + h.value.len())
        })
        .collect()
}

/// Room left in a parsed head's map for the headers the proxy adds on the way (forwarding
/// headers upstream, gateway and latency headers back): a map that has to grow rehashes.
const ADDED_HEADERS: usize = 16;

fn header_map(head: &Bytes, spans: FieldSpans) -> Result<HeaderMap, HeadError> {
    let mut map = HeaderMap::new();
    fill_header_map(&mut map, head, spans)?;
    Ok(map)
}

/// Replaces what `map` holds with the fields at `spans` of `head` (shared slices of it, not
/// copies), keeping the map's allocation.
fn fill_header_map(map: &mut HeaderMap, head: &Bytes, spans: FieldSpans) -> Result<(), HeadError> {
    map.clear();
    map.reserve(spans.len() + ADDED_HEADERS);
    for (name, value) in spans {
        let name = HeaderName::from_bytes(&head[name]).map_err(|_| HeadError::Header)?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(value)).map_err(|_| HeadError::Header)?;
        map.append(name, value);
    }
    Ok(())
}

fn version(v: Option<u8>) -> Version {
    if v == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    }
}

/// Parses a head with `$parser` (`httparse::Request` or `::Response`) into header slots on the
/// stack, or on the heap when there are more; binds the parser and its status in the caller.
macro_rules! parse_head {
    ($parser:path, $buf:expr, $msg:ident, $status:ident) => {
        let mut inline = [httparse::EMPTY_HEADER; INLINE_HEADERS];
        let mut heap;
        let mut $msg = <$parser>::new(&mut inline);
        let mut $status = $msg.parse($buf);
        if matches!($status, Err(httparse::Error::TooManyHeaders)) {
            heap = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
            $msg = <$parser>::new(&mut heap);
            $status = $msg.parse($buf);
        }
    };
}

/// The length of a complete head; `None` while it is incomplete and within `max` bytes.
fn complete_len(
    status: httparse::Result<usize>,
    buffered: usize,
    max: usize,
) -> Result<Option<usize>, HeadError> {
    match status? {
        httparse::Status::Complete(len) if len > max => Err(HeadError::TooLarge),
        httparse::Status::Complete(len) => Ok(Some(len)),
        httparse::Status::Partial if buffered > max => Err(HeadError::TooLarge),
        httparse::Status::Partial => Ok(None),
    }
}

/// Parses a response head at the front of `buf`, its fields left in the bytes they came in.
/// `Ok(None)`: incomplete (and within `max` bytes so far). On success the head's bytes are
/// taken off `buf`.
pub fn parse_response(buf: &mut BytesMut, max: usize) -> Result<Option<ResponseHead>, HeadError> {
    parse_head!(httparse::Response, buf, resp, status);
    let Some(len) = complete_len(status, buf.len(), max)? else {
        return Ok(None);
    };
    let code = StatusCode::from_u16(resp.code.unwrap_or(0))
        .map_err(|_| HeadError::Parse("invalid status code"))?;
    let version = version(resp.version);
    let spans = spans(buf, resp.headers);
    let head = buf.split_to(len).freeze();
    Ok(Some(ResponseHead::new(code, version, head, spans)))
}

/// Parses a request head at the front of `buf` into `parts`: method, URI (origin form as sent,
/// or absolute form), version, headers. `Ok(false)`: incomplete (and within `max` bytes so
/// far), `parts` untouched. On success the head's bytes are taken off `buf` and every part is
/// replaced (extensions emptied); the header map keeps its allocation, so a connection can
/// parse each of its requests into the same parts. On an error `parts` may hold some of the
/// refused head.
pub fn parse_request(
    buf: &mut BytesMut,
    max: usize,
    parts: &mut http::request::Parts,
) -> Result<bool, HeadError> {
    parse_head!(httparse::Request, buf, req, status);
    let Some(len) = complete_len(status, buf.len(), max)? else {
        return Ok(false);
    };
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| HeadError::Parse("invalid method"))?;
    let version = version(req.version);
    let target = req.path.unwrap_or("");
    let base = buf.as_ptr().addr();
    let target_span = {
        let t = target.as_ptr().addr() - base;
        t..t + target.len()
    };
    let spans = spans(buf, req.headers);
    let head = buf.split_to(len).freeze();
    parts.uri = http::Uri::from_maybe_shared(head.slice(target_span))
        .map_err(|_| HeadError::Parse("invalid request target"))?;
    fill_header_map(&mut parts.headers, &head, spans)?;
    parts.method = method;
    parts.version = version;
    parts.extensions.clear();
    Ok(true)
}

/// Whether the connection stays open after this message (RFC 9112 §9.3): HTTP/1.1 unless
/// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
pub fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let mut close = false;
    let mut keep_alive = false;
    for value in headers.get_all(header::CONNECTION) {
        connection_options(value.as_bytes(), &mut close, &mut keep_alive);
    }
    if version == Version::HTTP_10 {
        keep_alive && !close
    } else {
        !close
    }
}

/// Reads one `Connection` value: sets `close` and `keep_alive` when it has those options;
/// `true` when it also names other fields (which are then hop-by-hop too).
fn connection_options(value: &[u8], close: &mut bool, keep_alive: &mut bool) -> bool {
    let mut names = false;
    for token in value.split(|b| *b == b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            *close = true;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            *keep_alive = true;
        } else if !token.is_empty() {
            names = true;
        }
    }
    names
}

/// Whether the last transfer coding is `chunked`.
pub fn is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .is_some_and(|v| last_coding_is_chunked(v.as_bytes()))
}

fn last_coding_is_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|b| *b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// The `Content-Length`, if any: every value (and every element of a list) must be the same
/// number.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, HeadError> {
    let mut found = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        found = Some(merge_content_length(found, value.as_bytes())?);
    }
    Ok(found)
}

/// The length one more `Content-Length` value declares, given the one found before it: the
/// same number, or an error.
fn merge_content_length(found: Option<u64>, value: &[u8]) -> Result<u64, HeadError> {
    let mut found = found;
    for part in value.split(|b| *b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return Err(HeadError::ContentLength);
        }
        let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(HeadError::ContentLength);
        }
        found = Some(n);
    }
    found.ok_or(HeadError::ContentLength)
}

/// The `Content-Length` (as [`content_length`]), rewritten as one field holding the plain
/// number when the message carried a list, several fields or leading zeros: a proxy forwards a
/// single value (RFC 9110 §8.6), so the next hop cannot read it differently.
pub fn single_content_length(headers: &mut HeaderMap) -> Result<Option<u64>, HeadError> {
    let n = content_length(headers)?;
    if let Some(n) = n {
        let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
        let canonical = values.next().is_some_and(|v| {
            let b = v.as_bytes();
            b.iter().all(u8::is_ascii_digit) && (b.len() == 1 || b[0] != b'0')
        }) && values.next().is_none();
        if !canonical {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    Ok(n)
}

/// Reads what the socket has into `buf` without waiting (`WouldBlock` when nothing is there).
///
/// A read that did not fill the room in `buf` emptied the socket, so the reactor's readiness
/// is cleared with it (tokio's `AsyncRead` does the same): the next read waits for the socket
/// to become readable again instead of making a system call only to learn `EAGAIN`. That
/// call was one in two requests on a keep-alive connection.
pub fn try_read_some(stream: &tokio::net::TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    let mut read = None;
    let result = stream.try_io(tokio::io::Interest::READABLE, || {
        let room = buf.capacity() - buf.len();
        let n = stream.try_read_buf(buf)?;
        read = Some(n);
        if n > 0 && n < room {
            // Reported as WouldBlock only so that try_io clears the readiness it saw; the
            // bytes are in `buf` and counted below.
            Err(std::io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match read {
        Some(n) => Ok(n),
        None => result,
    }
}

/// Makes room for the next read into `buf`: at least 1 KiB free, growing by `chunk` when less.
pub fn reserve_read(buf: &mut BytesMut, chunk: usize) {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(chunk);
    }
}

/// Appends `name: value\r\n` for every header.
pub fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        write_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
}

/// Appends one header field, `name: value\r\n`; the caller vouches for both (a
/// [`HeaderName`] and a [`HeaderValue`], or checked with [`is_field_value`]).
///
/// Inlined: most callers pass a constant name, whose copy then needs no call.
#[inline(always)]
pub fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether `value` may be sent as a field value as it is: no control character but tab
/// (what [`HeaderValue`] accepts), so nothing in it can end the field or the head.
pub fn is_field_value(value: &[u8]) -> bool {
    // Every byte is looked at, with no early return, so that the loop vectorizes: the values
    // are short and nearly always valid.
    value.iter().fold(true, |ok, &b| {
        ok & ((b >= 0x20 && b != 0x7f) | (b == b'\t'))
    })
}

/// Appends a request line in origin form: `METHOD path[?query] HTTP/1.1\r\n`.
pub fn write_request_line(out: &mut Vec<u8>, method: &Method, path: &str, query: Option<&str>) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    if let Some(q) = query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// Appends a status line: `HTTP/1.1 <code> <reason>\r\n`.
pub fn write_status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Whether `target` may be sent as a request target as it is: visible ASCII only, so no
/// space, control character or line break can split the request line.
pub fn is_safe_target(target: &str) -> bool {
    // No early return: the loop vectorizes (see `is_field_value`).
    target
        .bytes()
        .fold(true, |ok, b| ok & (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A request head parsed into fresh parts; `Ok(None)` while incomplete.
    fn parse(buf: &mut BytesMut, max: usize) -> Result<Option<http::request::Parts>, HeadError> {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        Ok(parse_request(buf, max, &mut parts)?.then_some(parts))
    }

    #[test]
    fn parses_a_response_head_and_leaves_the_body() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nok"[..],
        );
        let parts = parse_response(&mut buf, 1024)
            .unwrap()
            .unwrap()
            .into_parts()
            .unwrap();
        assert_eq!(parts.status, 201);
        assert_eq!(parts.version, Version::HTTP_11);
        let a: Vec<_> = parts.headers.get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        assert_eq!(content_length(&parts.headers), Ok(Some(2)));
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn incomplete_heads_wait_and_oversized_ones_fail() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nA: b\r\n"[..]);
        assert!(matches!(parse_response(&mut buf, 1024), Ok(None)));
        assert!(matches!(
            parse_response(&mut buf, 10),
            Err(HeadError::TooLarge)
        ));
        let mut garbage = BytesMut::from(&b"this is not HTTP\r\n\r\n"[..]);
        assert!(matches!(
            parse_response(&mut garbage, 1024),
            Err(HeadError::Parse(_))
        ));
    }

    #[test]
    fn many_headers_parse_from_the_heap_up_to_the_limit() {
        let mut head = b"GET /x HTTP/1.1\r\n".to_vec();
        for i in 0..200 {
            head.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let parsed = parse(&mut BytesMut::from(&head[..]), 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(parsed.headers.len(), 200);
        let mut head = b"GET /x HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            head.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert_eq!(
            parse(&mut BytesMut::from(&head[..]), 1 << 20).err(),
            Some(HeadError::TooLarge)
        );
    }

    #[test]
    fn parses_a_request_head() {
        let mut buf = BytesMut::from(
            &b"POST /a/b?c=d HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"[..],
        );
        let head = parse(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri.path(), "/a/b");
        assert_eq!(head.uri.query(), Some("c=d"));
        assert_eq!(head.version, Version::HTTP_10);
        assert_eq!(head.headers["host"], "x");
        assert_eq!(&buf[..], b"abc");
    }

    #[test]
    fn a_second_head_parsed_into_the_same_parts_replaces_the_first() {
        let mut buf = BytesMut::from(
            &b"POST /first?q=1 HTTP/1.0\r\nHost: a\r\nX-Only-First: 1\r\n\r\nGET /second HTTP/1.1\r\nHost: b\r\n\r\nGET /th"[..],
        );
        let (mut parts, ()) = http::Request::new(()).into_parts();
        assert_eq!(parse_request(&mut buf, 1024, &mut parts), Ok(true));
        parts.extensions.insert(7u8);
        assert_eq!(parse_request(&mut buf, 1024, &mut parts), Ok(true));
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri, "/second");
        assert_eq!(parts.version, Version::HTTP_11);
        assert_eq!(parts.headers.len(), 1);
        assert_eq!(parts.headers["host"], "b");
        assert!(parts.extensions.is_empty());
        // Incomplete: the parts keep the second request.
        assert_eq!(parse_request(&mut buf, 1024, &mut parts), Ok(false));
        assert_eq!(parts.uri, "/second");
        assert_eq!(&buf[..], b"GET /th");
    }

    #[test]
    fn connection_semantics_follow_the_version() {
        let mut h = HeaderMap::new();
        assert!(keeps_alive(Version::HTTP_11, &h));
        assert!(!keeps_alive(Version::HTTP_10, &h));
        h.insert(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        assert!(keeps_alive(Version::HTTP_10, &h));
        h.insert(header::CONNECTION, HeaderValue::from_static("x, close"));
        assert!(!keeps_alive(Version::HTTP_11, &h));
    }

    #[test]
    fn framing_headers_are_read_strictly() {
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("5, 5"));
        assert_eq!(content_length(&h), Ok(Some(5)));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("6"));
        assert_eq!(content_length(&h), Err(HeadError::ContentLength));
        for bad in ["", "-1", "1e3", "+5", "99999999999999999999"] {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static(bad));
            assert_eq!(content_length(&h), Err(HeadError::ContentLength), "{bad}");
        }
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("05"));
        assert_eq!(single_content_length(&mut h), Ok(Some(5)));
        let all: Vec<_> = h.get_all(header::CONTENT_LENGTH).iter().collect();
        assert_eq!(all, ["5"], "forwarded as one plain value");
        let mut h = HeaderMap::new();
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("gzip, Chunked"),
        );
        assert!(is_chunked(&h));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked, gzip"),
        );
        assert!(!is_chunked(&h));
    }

    #[test]
    fn field_values_with_control_characters_are_refused() {
        assert!(is_field_value(b""));
        assert!(is_field_value(b"a b\tc~ \x80\xff"));
        for bad in [b"a\rb", b"a\nb", b"a\x00b", b"a\x7fb", b"a\x1fb"] {
            assert!(!is_field_value(bad));
        }
        // Long enough for the vectorized loop, with the bad byte in its last lane.
        let mut long = vec![b'a'; 70];
        assert!(is_field_value(&long));
        long[69] = b'\n';
        assert!(!is_field_value(&long));
    }

    #[test]
    fn targets_with_spaces_or_line_breaks_are_unsafe() {
        assert!(is_safe_target("/a/b%20c?d=e"));
        assert!(!is_safe_target("/a b"));
        assert!(!is_safe_target("/a\r\nX: y"));
        assert!(!is_safe_target("/é"));
    }
}
