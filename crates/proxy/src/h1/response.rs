//! An upstream response head kept in the bytes it arrived in.
//!
//! Most responses go back to the client with their header fields as the upstream sent them,
//! less this hop's own. Parsing every field into a `HeaderMap` only to write it out again was
//! about a third of the proxy's work per request, so a [`ResponseHead`] keeps the head's bytes
//! and where each field lies, and learns in one pass over the names what the proxy needs: the
//! body's framing, whether the connection stays open, which fields are hop-by-hop, and whether
//! `Server`, `Date` or `Via` are there. A plugin that changes response headers gets them as a
//! map ([`ResponseHead::into_parts`]); so do the rare responses that need more than fields
//! left out ([`ResponseHead::forwardable`]).

use super::{FieldSpans, HeadError, header_map};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{StatusCode, Version};

/// Fields past this index are not tracked in [`Scan::dropped`]; a head with more goes through
/// the map.
const TRACKED_FIELDS: usize = 64;

/// What a field's name makes it, for the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Hop-by-hop (RFC 9110 §7.6.1), never forwarded: `Keep-Alive`, `TE`, `Upgrade`, …
    Hop,
    Connection,
    ContentLength,
    TransferEncoding,
    Via,
    Server,
    Date,
    Other,
}

/// A field name's kind: the length picks the few candidates, one case-insensitive compare
/// settles it.
fn kind(name: &[u8]) -> Kind {
    // The arm's length is `name`'s; every byte is compared with no early return, so the
    // compare vectorizes.
    let is = |s: &str| {
        name.iter()
            .zip(s.as_bytes())
            .fold(true, |same, (a, b)| same & (a.to_ascii_lowercase() == *b))
    };
    match name.len() {
        2 if is("te") => Kind::Hop,
        3 if is("via") => Kind::Via,
        4 if is("date") => Kind::Date,
        6 if is("server") => Kind::Server,
        7 if is("trailer") || is("upgrade") => Kind::Hop,
        10 if is("connection") => Kind::Connection,
        10 if is("keep-alive") => Kind::Hop,
        14 if is("content-length") => Kind::ContentLength,
        16 if is("proxy-connection") => Kind::Hop,
        17 if is("transfer-encoding") => Kind::TransferEncoding,
        18 if is("proxy-authenticate") => Kind::Hop,
        19 if is("proxy-authorization") => Kind::Hop,
        _ => Kind::Other,
    }
}

/// Whether a field with this name is hop-by-hop (RFC 9110 §7.6.1), `Connection` and
/// `Transfer-Encoding` included: never forwarded as it is, in either direction.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    matches!(
        kind(name),
        Kind::Hop | Kind::Connection | Kind::TransferEncoding
    )
}

/// What one pass over a head's fields found.
#[derive(Debug, Default)]
struct Scan {
    /// Bit `i` set: field `i` is not forwarded as it is (hop-by-hop, or framing, which the
    /// proxy writes itself).
    dropped: u64,
    /// The `Content-Length` fields' common value; an error when they disagree or are not
    /// numbers.
    content_length: Option<Result<u64, HeadError>>,
    /// `Transfer-Encoding` is present; `chunked` whether its last coding is chunked.
    transfer_encoding: bool,
    chunked: bool,
    /// `Connection` options.
    close: bool,
    keep_alive: bool,
    /// The head needs the map: `Connection` names other fields, there is a `Via` to extend,
    /// or there are more fields than [`TRACKED_FIELDS`].
    needs_map: bool,
    server: bool,
    date: bool,
}

fn scan(bytes: &[u8], fields: &FieldSpans) -> Scan {
    let mut s = Scan {
        needs_map: fields.len() > TRACKED_FIELDS,
        ..Scan::default()
    };
    for (i, (name, value)) in fields.iter().enumerate() {
        let value = &bytes[value.clone()];
        let kind = kind(&bytes[name.clone()]);
        match kind {
            Kind::Other => continue,
            Kind::Hop => {}
            Kind::Connection => {
                if super::connection_options(value, &mut s.close, &mut s.keep_alive) {
                    s.needs_map = true;
                }
            }
            Kind::ContentLength => {
                s.content_length = Some(match s.content_length.take() {
                    Some(Err(e)) => Err(e),
                    Some(Ok(n)) => super::merge_content_length(Some(n), value),
                    None => super::merge_content_length(None, value),
                });
            }
            Kind::TransferEncoding => {
                s.transfer_encoding = true;
                s.chunked = super::last_coding_is_chunked(value);
            }
            Kind::Via => {
                s.needs_map = true;
                continue;
            }
            Kind::Server => {
                s.server = true;
                continue;
            }
            Kind::Date => {
                s.date = true;
                continue;
            }
        }
        if i < TRACKED_FIELDS {
            s.dropped |= 1 << i;
        }
    }
    s
}

/// A response head: status, version, and the header fields in the bytes they arrived in.
#[derive(Debug)]
pub struct ResponseHead {
    /// The status code.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    bytes: Bytes,
    fields: FieldSpans,
    scan: Scan,
}

impl ResponseHead {
    pub(super) fn new(
        status: StatusCode,
        version: Version,
        bytes: Bytes,
        fields: FieldSpans,
    ) -> Self {
        let scan = scan(&bytes, &fields);
        Self {
            status,
            version,
            bytes,
            fields,
            scan,
        }
    }

    /// The `Content-Length`, if any (every field and list element the same number).
    pub fn content_length(&self) -> Result<Option<u64>, HeadError> {
        self.scan.content_length.clone().transpose()
    }

    /// The length to announce when the response goes on: its valid `Content-Length`, unless
    /// it came with `Transfer-Encoding` (the proxy takes the body apart and frames it anew,
    /// so that length may not describe what is sent).
    pub fn declared_length(&self) -> Option<u64> {
        if self.scan.transfer_encoding {
            return None;
        }
        self.content_length().ok().flatten()
    }

    /// `None` without `Transfer-Encoding`; otherwise whether its last coding is `chunked`.
    pub fn transfer_coding_chunked(&self) -> Option<bool> {
        self.scan.transfer_encoding.then_some(self.scan.chunked)
    }

    /// Whether the connection stays open after this response (as [`super::keeps_alive`]).
    pub fn keeps_alive(&self) -> bool {
        if self.version == Version::HTTP_10 {
            self.scan.keep_alive && !self.scan.close
        } else {
            !self.scan.close
        }
    }

    /// Whether the head can go to the client as its fields less the hop-by-hop and framing
    /// ones ([`Self::forwarded_fields`]). Otherwise it needs the map: `Connection` names
    /// further hop-by-hop fields, a `Via` is to be extended, or it has a great many fields.
    pub fn forwardable(&self) -> bool {
        !self.scan.needs_map
    }

    /// Whether the upstream sent `Server`.
    pub fn has_server(&self) -> bool {
        self.scan.server
    }

    /// Whether the upstream sent `Date`.
    pub fn has_date(&self) -> bool {
        self.scan.date
    }

    /// The fields that go to the client as they are, as `(name, value)` in the upstream's
    /// order and spelling: all but the hop-by-hop and framing ones. Meaningful when
    /// [`Self::forwardable`].
    pub fn forwarded_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let dropped = self.scan.dropped;
        self.fields
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i >= TRACKED_FIELDS || dropped & (1 << i) == 0)
            .map(|(_, (name, value))| (&self.bytes[name.clone()], &self.bytes[value.clone()]))
    }

    /// The head as `http` parts. `Transfer-Encoding` is left out (the proxy frames the body
    /// itself) and so is `Content-Length` next to it; a valid `Content-Length` becomes one
    /// plain value. Hop-by-hop fields stay: the caller removes them.
    pub fn into_parts(self) -> Result<http::response::Parts, HeadError> {
        let framing =
            |name: &[u8]| matches!(kind(name), Kind::ContentLength | Kind::TransferEncoding);
        let fields: FieldSpans = self
            .fields
            .into_iter()
            .filter(|(name, _)| !framing(&self.bytes[name.clone()]))
            .collect();
        let mut headers = header_map(&self.bytes, fields)?;
        if !self.scan.transfer_encoding
            && let Some(Ok(n)) = self.scan.content_length
        {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = self.status;
        parts.version = self.version;
        parts.headers = headers;
        Ok(parts)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::parse_response;
    use bytes::BytesMut;
    use http::Version;

    fn head(raw: &str) -> super::ResponseHead {
        parse_response(&mut BytesMut::from(raw.as_bytes()), 1 << 16)
            .unwrap()
            .unwrap()
    }

    fn forwarded(h: &super::ResponseHead) -> Vec<(String, String)> {
        h.forwarded_fields()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn hop_by_hop_and_framing_fields_are_not_forwarded() {
        let h = head(
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: x\r\nContent-Type: text/plain\r\n\
             Content-Length: 12\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
             Trailer: a\r\nUpgrade: h2c\r\nTE: trailers\r\nProxy-Connection: x\r\n\
             Proxy-Authenticate: Basic\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
        );
        assert!(h.forwardable());
        assert!(h.has_server() && h.has_date());
        assert_eq!(h.content_length(), Ok(Some(12)));
        assert_eq!(h.transfer_coding_chunked(), None);
        assert!(h.keeps_alive());
        let kept = forwarded(&h);
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Server", "Date", "Content-Type", "X-A", "x-a"]);
        for name in [
            "connection",
            "Transfer-Encoding",
            "te",
            "Upgrade",
            "proxy-authorization",
        ] {
            assert!(super::is_hop_by_hop(name.as_bytes()), "{name}");
        }
        for name in ["content-length", "x-a", "via", "tee"] {
            assert!(!super::is_hop_by_hop(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn field_kinds_are_told_apart_in_any_case_and_not_by_length_alone() {
        use super::{Kind, kind};
        for (name, want) in [
            ("te", Kind::Hop),
            ("via", Kind::Via),
            ("date", Kind::Date),
            ("server", Kind::Server),
            ("trailer", Kind::Hop),
            ("upgrade", Kind::Hop),
            ("connection", Kind::Connection),
            ("keep-alive", Kind::Hop),
            ("content-length", Kind::ContentLength),
            ("proxy-connection", Kind::Hop),
            ("transfer-encoding", Kind::TransferEncoding),
            ("proxy-authenticate", Kind::Hop),
            ("proxy-authorization", Kind::Hop),
        ] {
            assert_eq!(kind(name.as_bytes()), want, "{name}");
            assert_eq!(kind(name.to_ascii_uppercase().as_bytes()), want, "{name}");
            // The same length, one byte off at either end.
            let mut last = name.as_bytes().to_vec();
            *last.last_mut().unwrap() = b'x';
            assert_eq!(kind(&last), Kind::Other, "{name}");
            let mut first = name.as_bytes().to_vec();
            first[0] = b'x';
            assert_eq!(kind(&first), Kind::Other, "{name}");
        }
    }

    #[test]
    fn framing_and_connection_are_read_from_the_fields() {
        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\
             Connection: close\r\n\r\n",
        );
        assert_eq!(h.transfer_coding_chunked(), Some(true));
        assert_eq!(h.declared_length(), None, "not next to Transfer-Encoding");
        assert!(!h.keeps_alive());
        assert!(forwarded(&h).is_empty());
        let parts = h.into_parts().unwrap();
        assert!(!parts.headers.contains_key("transfer-encoding"));
        assert!(
            !parts.headers.contains_key("content-length"),
            "not next to Transfer-Encoding"
        );

        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\ncontent-length: 05\r\n\r\n");
        assert_eq!(h.content_length(), Ok(Some(5)));
        let parts = h.into_parts().unwrap();
        let all: Vec<_> = parts.headers.get_all("content-length").iter().collect();
        assert_eq!(all, ["5"], "one plain value");

        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        assert!(h.content_length().is_err());

        let h = head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n");
        assert_eq!(h.version, Version::HTTP_10);
        assert!(h.keeps_alive());
        assert!(!head("HTTP/1.0 200 OK\r\n\r\n").keeps_alive());
    }

    #[test]
    fn heads_that_need_more_than_dropping_fields_go_through_the_map() {
        assert!(
            !head("HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\n\r\n").forwardable()
        );
        assert!(!head("HTTP/1.1 200 OK\r\nVia: 1.1 cache\r\n\r\n").forwardable());
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..65 {
            many.push_str(&format!("h{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert!(!head(&many).forwardable());
        assert!(head("HTTP/1.1 200 OK\r\nConnection: close, keep-alive\r\n\r\n").forwardable());
    }
}
