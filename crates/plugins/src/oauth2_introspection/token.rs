//! Finding the access token in a request (spec A.3 step 1, DESIGN §4) and hiding it
//! (spec A.8).
//!
//! Order: the `access_token` parameter of a form body (`application/x-www-form-urlencoded`, at
//! most [`MAX_FORM_BODY`] bytes), then of the query string, then `Authorization: Bearer <t>` or
//! `Token <t>`. No other body is ever buffered: unlike Kong, JSON and multipart bodies are not
//! searched for a token (so the 400 Kong gives for a JSON body that is not an object cannot
//! happen here), and a bigger form body streams through unsearched.

use bytes::{Bytes, BytesMut};
use gatehouse_proxy::{ProxyBody, ProxyRequest};
use http::HeaderMap;
use http::header::{self, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Largest form body searched for `access_token`.
pub const MAX_FORM_BODY: usize = 64 * 1024;

const PARAM: &str = "access_token";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's body could not be read (it went away mid-body).
#[derive(Debug)]
pub struct BodyError(pub BoxError);

/// Where the token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The form body or the query string.
    Params,
    /// The `Authorization` header.
    Header,
}

/// A body made of bytes already read, then whatever is left of the original stream, then the
/// trailers read with the bytes: how a buffered form body is put back.
struct Replay {
    data: Option<Bytes>,
    rest: Option<ProxyBody>,
    trailers: Option<HeaderMap>,
}

impl Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take()
            && !data.is_empty()
        {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(rest) = this.rest.as_mut() {
            match Pin::new(rest).poll_frame(cx) {
                Poll::Ready(None) => this.rest = None,
                other => return other,
            }
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.as_ref().is_none_or(Bytes::is_empty)
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self.data.as_ref().map_or(0, |d| d.len() as u64);
        match &self.rest {
            None => SizeHint::with_exact(buffered),
            Some(rest) => {
                let hint = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(hint.lower().saturating_add(buffered));
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper.saturating_add(buffered));
                }
                out
            }
        }
    }
}

fn replay(data: Bytes, rest: Option<ProxyBody>, trailers: Option<HeaderMap>) -> ProxyBody {
    Replay {
        data: Some(data),
        rest,
        trailers,
    }
    .boxed_unsync()
}

/// Whether the request declares a form body small enough to search.
fn searchable_form(headers: &HeaderMap) -> bool {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let declared_ok = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_none_or(|n| n <= MAX_FORM_BODY as u64);
    is_form && declared_ok
}

/// A form body read in full, or the body given back untouched because it is too big.
enum Read {
    Complete(Bytes, Option<HeaderMap>),
    TooBig(ProxyBody),
}

async fn read_bounded(mut body: ProxyBody, limit: usize) -> Result<Read, BodyError> {
    let mut buf = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError)?;
        match frame.into_data() {
            Ok(data) => {
                buf.extend_from_slice(&data);
                if buf.len() > limit {
                    return Ok(Read::TooBig(replay(buf.freeze(), Some(body), None)));
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    Ok(Read::Complete(buf.freeze(), trailers))
}

/// The first value of `access_token` in urlencoded `params`.
fn find_param(params: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(params)
        .find(|(k, _)| k == PARAM)
        .map(|(_, v)| v.into_owned())
}

/// `params` without any `access_token` pair; the other pairs keep their exact encoding.
fn without_param(params: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(params.len());
    for piece in params.split(|b| *b == b'&') {
        let is_token = url::form_urlencoded::parse(piece)
            .next()
            .is_some_and(|(k, _)| k == PARAM);
        if is_token {
            continue;
        }
        if !out.is_empty() {
            out.push(b'&');
        }
        out.extend_from_slice(piece);
    }
    out
}

/// The token of an `Authorization: Bearer|Token <token>` header (exactly two parts).
fn header_token(headers: &HeaderMap) -> Option<String> {
    // Byte-wise, with searches that take the ~300–800 bytes of a JWT a word at a time: a
    // character-by-character split was 9 % of a cached request's instructions.
    let value = headers.get(header::AUTHORIZATION)?.as_bytes().trim_ascii();
    let gap = value.iter().position(|b| *b == b' ' || *b == b'\t')?;
    let (scheme, rest) = value.split_at(gap);
    let token = rest.trim_ascii_start();
    if !(scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"token")) {
        return None;
    }
    // One token after the scheme: visible ASCII only (no space or tab within).
    if !is_visible_ascii(token) {
        return None;
    }
    std::str::from_utf8(token).ok().map(str::to_owned)
}

/// Whether every byte is visible ASCII (`!` to `~`), in one vectorised pass.
fn is_visible_ascii(bytes: &[u8]) -> bool {
    super::every_byte(bytes, |b| b.wrapping_sub(0x21) <= 0x7e - 0x21)
}

fn remove_query_param(req: &mut ProxyRequest) {
    let Some(query) = req.parts.uri.query() else {
        return;
    };
    let kept = without_param(query.as_bytes());
    let path = req.parts.uri.path();
    let pq = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", String::from_utf8_lossy(&kept))
    };
    let mut parts = req.parts.uri.clone().into_parts();
    if let Ok(pq) = pq.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            req.parts.uri = uri;
        }
    }
}

/// Finds the request's token; with `hide`, removes it from where it was found (every
/// `access_token` parameter of the query and the form body when it came from parameters, the
/// `Authorization` header when it came from there). `None`: no token at all.
pub async fn take(
    req: &mut ProxyRequest,
    hide: bool,
) -> Result<Option<(String, Source)>, BodyError> {
    let mut form: Option<(Bytes, Option<HeaderMap>)> = None;
    if searchable_form(&req.parts.headers) && !req.body.is_end_stream() {
        let body = std::mem::replace(&mut req.body, gatehouse_proxy::empty_body());
        match read_bounded(body, MAX_FORM_BODY).await? {
            Read::Complete(data, trailers) => form = Some((data, trailers)),
            Read::TooBig(body) => req.body = body,
        }
    }

    // Parameters: the body wins over the query (Kong merges them, the body last).
    let from_params = form
        .as_ref()
        .and_then(|(data, _)| find_param(data))
        .or_else(|| req.parts.uri.query().and_then(|q| find_param(q.as_bytes())));

    if let Some(token) = from_params {
        if hide {
            remove_query_param(req);
        }
        if let Some((data, trailers)) = form {
            if hide {
                let kept = Bytes::from(without_param(&data));
                let h = &mut req.parts.headers;
                h.remove(header::TRANSFER_ENCODING);
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(kept.len()));
                req.body = replay(kept, None, trailers);
            } else {
                req.body = replay(data, None, trailers);
            }
        }
        return Ok(Some((token, Source::Params)));
    }
    if let Some((data, trailers)) = form {
        req.body = replay(data, None, trailers);
    }

    let token = header_token(&req.parts.headers);
    if token.is_some() && hide {
        req.parts.headers.remove(header::AUTHORIZATION);
    }
    Ok(token.map(|t| (t, Source::Header)))
}

#[cfg(test)]
mod unit {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn params_are_found_and_removed_keeping_other_encodings() {
        assert_eq!(
            find_param(b"a=1&access_token=t%2Bk&b=2").as_deref(),
            Some("t+k")
        );
        assert_eq!(find_param(b"a=1").as_deref(), None);
        assert_eq!(
            without_param(b"a=x%20y+z&access_token=t&b=2&access_token=u"),
            b"a=x%20y+z&b=2".to_vec()
        );
        assert_eq!(without_param(b"access_token=t"), b"".to_vec());
        assert_eq!(without_param(b"acc%65ss_token=t&c"), b"c".to_vec());
    }

    #[test]
    fn authorization_header_schemes() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            header_token(&m)
        };
        assert_eq!(h("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(h("bearer  abc").as_deref(), Some("abc"));
        assert_eq!(h("Token abc").as_deref(), Some("abc"));
        assert_eq!(h("Basic abc"), None);
        assert_eq!(h("Bearer a b"), None);
        assert_eq!(h("Bearer a\tb"), None);
        assert_eq!(h("Bearer"), None);
        assert_eq!(h("Bearer "), None);
        assert_eq!(h(" \tBearer\t abc \t").as_deref(), Some("abc"));
        assert_eq!(h("Bearerabc"), None);
        let mut m = HeaderMap::new();
        m.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer ab\xc3\xa9").unwrap(),
        );
        assert_eq!(header_token(&m), None, "visible ASCII only");
    }

    #[test]
    fn visible_ascii_in_every_position() {
        let token: Vec<u8> = (0x21..=0x7e).cycle().take(100).collect();
        assert!(is_visible_ascii(&token));
        assert!(is_visible_ascii(b""));
        for bad in [b' ', b'\t', 0x7f, 0x80, 0xff, 0x00, 0x20] {
            for at in [0, 5, 15, 16, 31, 32, 47, 99] {
                let mut t = token.clone();
                t[at] = bad;
                assert!(!is_visible_ascii(&t), "byte {bad:#x} at {at}");
            }
        }
    }
}
