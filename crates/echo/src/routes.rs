//! Request routing and the endpoints other than `/anything`'s JSON.
//!
//! The path is classified into a [`Route`] first (pure and unit-tested), then
//! the route is answered. Every route answers every method; `HEAD` is handled
//! once, in [`handle`], by dropping the body of the `GET`-like answer.

use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::error::Error as StdError;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body;

use crate::body::{EchoBody, RANDOM_CHUNK};
use crate::{MAX_BODY_BYTES, MAX_BYTES, MAX_DELAY_SECS, anything};

/// How much of an oversized body is read and thrown away before answering
/// `413`. Answering while the client is still sending makes many clients see
/// a reset instead of the answer; draining (without keeping anything) up to a
/// bound lets them read a clean `413`, and the bound keeps a huge upload from
/// tying up the server.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// `/stream-bytes`'s default chunk size (httpbin's).
const DEFAULT_STREAM_CHUNK: usize = 10 * 1024;

/// The largest `chunk_size` `/stream-bytes` honours.
const MAX_STREAM_CHUNK: usize = 1024 * 1024;

/// What a request asks for, decided from its path and query alone.
#[derive(Debug, PartialEq)]
pub(crate) enum Route {
    /// `/`.
    Root,
    /// `/anything` and below.
    Anything,
    /// `/status/{code}`.
    Status(StatusCode),
    /// `/delay/{seconds}`, already capped.
    Delay(Duration),
    /// `/bytes/{n}` (`chunked: false`) or `/stream-bytes/{n}` (`chunked: true`).
    Bytes {
        len: u64,
        seed: u64,
        chunk: usize,
        chunked: bool,
    },
    /// A known path with a bad parameter: `400` with this message.
    BadRequest(&'static str),
    /// `404`.
    NotFound,
}

impl Route {
    /// Classifies a request from its path and query.
    pub(crate) fn of(path: &str, query: Option<&str>) -> Route {
        if path == "/" {
            return Route::Root;
        }
        if path == "/anything" || path.starts_with("/anything/") {
            return Route::Anything;
        }
        if let Some(code) = path.strip_prefix("/status/") {
            return status(code);
        }
        if let Some(seconds) = path.strip_prefix("/delay/") {
            return delay(seconds);
        }
        if let Some(n) = path.strip_prefix("/bytes/") {
            return bytes(n, query, false);
        }
        if let Some(n) = path.strip_prefix("/stream-bytes/") {
            return bytes(n, query, true);
        }
        Route::NotFound
    }
}

fn status(code: &str) -> Route {
    // Digits only: `u16::from_str` would also take a leading `+`.
    if code.is_empty() || code.len() > 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Route::BadRequest("invalid status code");
    }
    match code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
    {
        // 1xx are interim answers: one cannot be the final answer to a request
        // (and 101 would promise a protocol switch), so they are refused.
        Some(code) if (200..=599).contains(&code.as_u16()) => Route::Status(code),
        _ => Route::BadRequest("status code must be within 200..=599"),
    }
}

fn delay(seconds: &str) -> Route {
    match seconds.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => {
            Route::Delay(Duration::from_secs_f64(s.min(MAX_DELAY_SECS)))
        }
        _ => Route::BadRequest("delay must be a non-negative number of seconds"),
    }
}

fn bytes(n: &str, query: Option<&str>, chunked: bool) -> Route {
    let Some(len) = parse_digits(n) else {
        return Route::BadRequest("byte count must be a non-negative integer");
    };
    if len > MAX_BYTES {
        return Route::BadRequest("byte count must be at most 104857600 (100 MiB)");
    }
    let mut seed = None;
    let mut chunk = if chunked {
        DEFAULT_STREAM_CHUNK
    } else {
        RANDOM_CHUNK
    };
    for (key, value) in query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
    {
        match &*key {
            "seed" => match parse_digits(&value) {
                Some(s) => seed = Some(s),
                None => return Route::BadRequest("seed must be a non-negative integer"),
            },
            "chunk_size" if chunked => match parse_digits(&value) {
                Some(c) if c > 0 => {
                    chunk =
                        usize::try_from(c).map_or(MAX_STREAM_CHUNK, |c| c.min(MAX_STREAM_CHUNK));
                }
                _ => return Route::BadRequest("chunk_size must be a positive integer"),
            },
            _ => {}
        }
    }
    // Without a seed, a fresh one: `RandomState` is std's cheap source of
    // per-instance randomness.
    let seed = seed.unwrap_or_else(|| RandomState::new().hash_one(len));
    Route::Bytes {
        len,
        seed,
        chunk,
        chunked,
    }
}

/// A decimal `u64` of digits only (no sign, no spaces).
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Answers one request. Never fails: every problem is an HTTP answer.
pub(crate) async fn handle<B>(
    req: Request<B>,
    peer: SocketAddr,
) -> Result<Response<EchoBody>, Infallible>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let head = req.method() == Method::HEAD;
    let route = Route::of(req.uri().path(), req.uri().query());
    let mut response = answer(route, req, peer).await;
    if head {
        // HEAD answers like GET without a body. The length the body would
        // have had is kept as `Content-Length` (hyper sends it as is for HEAD).
        if let Some(len) = response.body().size_hint().exact()
            && !response.headers().contains_key(CONTENT_LENGTH)
        {
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        *response.body_mut() = EchoBody::empty();
    }
    Ok(response)
}

async fn answer<B>(route: Route, req: Request<B>, peer: SocketAddr) -> Response<EchoBody>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    match route {
        Route::Root => {
            let mut response = Response::new(EchoBody::full(
                "gatehouse-echo: an httpbin-compatible echo server. Try /anything.\n",
            ));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
        Route::Anything => echo(req, peer).await,
        Route::Delay(delay) => {
            tokio::time::sleep(delay).await;
            echo(req, peer).await
        }
        Route::Status(code) => {
            let mut response = Response::new(EchoBody::empty());
            *response.status_mut() = code;
            response
        }
        Route::Bytes {
            len,
            seed,
            chunk,
            chunked,
        } => {
            let mut response = Response::new(EchoBody::random(len, seed, chunk, !chunked));
            let headers = response.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if !chunked {
                // hyper would derive it from the body's exact size; setting it
                // here keeps it for HEAD and for HTTP/2 alike.
                headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            }
            response
        }
        Route::BadRequest(message) => error(StatusCode::BAD_REQUEST, message),
        Route::NotFound => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Reads the body (capped) and answers with the httpbin JSON.
async fn echo<B>(req: Request<B>, peer: SocketAddr) -> Response<EchoBody>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let (parts, mut body) = req.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        // A client waiting for `100 Continue` has not sent the body: answer at
        // once (hyper then skips the `100`) instead of draining.
        if !parts.headers.contains_key(EXPECT) {
            drain(body).await;
        }
        return too_large();
    }
    // `Limited` borrows the body so that, past the limit, the rest of it can
    // still be drained.
    let buf = match Limited::new(&mut body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            drain(body).await;
            return too_large();
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, "could not read the request body"),
    };
    let json = anything::render(&parts, peer, &buf);
    let mut response = Response::new(EchoBody::full(json));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Reads and discards up to [`DRAIN_LIMIT`] bytes of `body`.
async fn drain<B: Body<Data = Bytes> + Unpin>(mut body: B) {
    let mut seen = 0u64;
    while seen < DRAIN_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}

fn too_large() -> Response<EchoBody> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request body is larger than 10485760 bytes (10 MiB)",
    )
}

/// A `{"message": …}` JSON answer.
fn error(status: StatusCode, message: &str) -> Response<EchoBody> {
    let mut body =
        serde_json::to_vec(&serde_json::json!({ "message": message })).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(EchoBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        assert_eq!(Route::of("/", None), Route::Root);
        assert_eq!(Route::of("/anything", None), Route::Anything);
        assert_eq!(Route::of("/anything/a/b", Some("x=1")), Route::Anything);
        assert_eq!(Route::of("/anythingelse", None), Route::NotFound);
        assert_eq!(Route::of("/nope", None), Route::NotFound);
        assert_eq!(
            Route::of("/status/418", None),
            Route::Status(StatusCode::IM_A_TEAPOT)
        );
        assert_eq!(
            Route::of("/status/599", None),
            Route::Status(StatusCode::from_u16(599).unwrap())
        );
        for bad in [
            "", "+200", "99", "100", "101", "199", "600", "1000", "abc", "20 0", "200/",
        ] {
            assert!(
                matches!(
                    Route::of(&format!("/status/{bad}"), None),
                    Route::BadRequest(_)
                ),
                "{bad}"
            );
        }
        assert_eq!(
            Route::of("/delay/0.25", None),
            Route::Delay(Duration::from_millis(250))
        );
        assert_eq!(
            Route::of("/delay/1e9", None),
            Route::Delay(Duration::from_secs(10))
        );
        for bad in ["", "-1", "NaN", "inf", "x", "1s"] {
            assert!(
                matches!(
                    Route::of(&format!("/delay/{bad}"), None),
                    Route::BadRequest(_)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn classifies_byte_routes() {
        assert_eq!(
            Route::of("/bytes/10", Some("seed=7")),
            Route::Bytes {
                len: 10,
                seed: 7,
                chunk: RANDOM_CHUNK,
                chunked: false
            }
        );
        assert_eq!(
            Route::of("/stream-bytes/10", Some("seed=7&chunk_size=3")),
            Route::Bytes {
                len: 10,
                seed: 7,
                chunk: 3,
                chunked: true
            }
        );
        assert!(matches!(
            Route::of("/bytes/104857600", None),
            Route::Bytes { len: MAX_BYTES, .. }
        ));
        for bad in [
            "/bytes/104857601",
            "/bytes/-1",
            "/bytes/",
            "/bytes/99999999999999999999999",
            "/stream-bytes/x",
        ] {
            assert!(
                matches!(Route::of(bad, None), Route::BadRequest(_)),
                "{bad}"
            );
        }
        assert!(matches!(
            Route::of("/bytes/1", Some("seed=x")),
            Route::BadRequest(_)
        ));
        assert!(matches!(
            Route::of("/stream-bytes/1", Some("chunk_size=0")),
            Route::BadRequest(_)
        ));
    }
}
