//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! - [`control`]: how a target takes a few bytes of its input to steer itself (where to split
//!   the stream, which limit to use) and keeps the rest as the message.
//! - [`chunked`]: the body check both HTTP/1.1 targets run on what follows a head: the
//!   proxy's [`ChunkedDecoder`](gatehouse_proxy::h1::chunked::ChunkedDecoder) fed in one
//!   piece, byte by byte and at fuzzer-chosen cuts, and compared with a reference decoder
//!   written here from RFC 9112 §7.1.
//! - [`fields`]: a reference reader of a message head's field lines, to check the header map
//!   the proxy builds from `httparse`'s output.

pub mod chunked;
pub mod control;
pub mod fields;
