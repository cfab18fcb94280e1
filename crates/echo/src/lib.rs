//! An httpbin-compatible echo server.
//!
//! It is the upstream of Gatehouse's quickstart (`gatehouse echo`, listening on
//! `127.0.0.1:8080`), of the end-to-end tests (which assert which headers
//! reached the upstream) and of the proxy benchmarks. For the last reason it
//! is written on hyper 1 directly and does no per-request work beyond parsing
//! the request and building the JSON answer: it must never be the bottleneck.
//!
//! # Endpoints
//!
//! Every endpoint answers every method; `HEAD` answers like `GET` without a
//! body (the `Content-Length` is kept).
//!
//! | path | answer |
//! | --- | --- |
//! | `/` | `200`, a short `text/plain` banner |
//! | `/anything`, `/anything/{anything…}` | `200`, the request echoed as httpbin's JSON: `args`, `data`, `files`, `form`, `headers`, `json`, `method`, `origin`, `url` |
//! | `/status/{code}` | that status with an empty body; `code` in `200..=599`; `1xx` (informational, which cannot be a final answer) and anything else give `400` |
//! | `/delay/{seconds}` | sleeps `min(seconds, 10)` (fractions allowed), then answers like `/anything` |
//! | `/bytes/{n}` | `n` pseudo-random bytes (`n` ≤ 100 MiB), streamed with a `Content-Length`; `?seed=` makes them reproducible |
//! | `/stream-bytes/{n}` | the same, sent chunked (no `Content-Length`); `?chunk_size=` (default 10240) and `?seed=` |
//! | anything else | `404` with `{"message":"not found"}` |
//!
//! Errors are `4xx` with a JSON body `{"message": …}`; bad input never panics.
//!
//! # How `/anything` reports the request
//!
//! * `args`: the query parameters, percent-decoded (invalid UTF-8 is replaced
//!   by U+FFFD); a key seen once maps to a string, several times to an array
//!   of strings in order. Keys are sorted, as in httpbin.
//! * `headers`: every request header, its name in httpbin's Title-Case
//!   (`x-credential-client-id` → `X-Credential-Client-Id`); a header sent on
//!   several lines maps to an array of the values in order — they are *not*
//!   joined, so tests see multi-valued headers exactly as received. Values
//!   that are not UTF-8 are read as Latin-1. Over HTTP/2 the `:authority`
//!   pseudo-header is reported as `Host` when no `host` header was sent.
//! * `data`: the body as a string, or `data:application/octet-stream;base64,…`
//!   when it is not UTF-8; `""` for form bodies.
//! * `form`: the fields of an `application/x-www-form-urlencoded` or
//!   `multipart/form-data` body; `files`: the file parts of a multipart body
//!   (name → content, or a `data:` URL when the content is not UTF-8). A
//!   multipart body that does not parse is reported in `data` instead.
//! * `json`: the body parsed as JSON whatever its content type, else `null`.
//! * `method`: as received.
//! * `origin`: the IP address of the TCP peer. `X-Forwarded-For` is **not**
//!   trusted: behind a proxy (Gatehouse) the origin is the proxy, which is
//!   what httpbin would say with nothing in front of it, and lets tests check
//!   the forwarding headers separately.
//! * `url`: `http://` + the `Host` header + the path and query as received.
//!
//! Bodies of `/anything` and `/delay` are capped at [`MAX_BODY_BYTES`];
//! larger ones get `413`.
//!
//! # Running it
//!
//! [`serve`] runs on a listener until a shutdown future resolves, then shuts
//! down gracefully; [`spawn`] binds and runs it in the background, which is
//! what tests want:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let echo = gatehouse_echo::spawn("127.0.0.1:0".parse().unwrap()).await?;
//! let url = format!("http://{}/anything", echo.addr);
//! // ... send requests to `url` ...
//! echo.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod anything;
mod body;
mod multipart;
mod routes;
mod server;

pub use server::{EchoServer, serve, spawn};

/// The largest request body `/anything` and `/delay` accept; larger gets `413`.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The largest count `/bytes/{n}` and `/stream-bytes/{n}` accept; larger gets `400`.
pub const MAX_BYTES: u64 = 100 * 1024 * 1024;

/// The longest `/delay/{seconds}` sleeps, in seconds; longer requests are cut to it.
pub const MAX_DELAY_SECS: f64 = 10.0;
