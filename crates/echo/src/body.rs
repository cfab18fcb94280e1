//! The response body type: a whole buffer, or pseudo-random bytes generated
//! chunk by chunk.
//!
//! One concrete enum instead of a boxed trait object keeps the hot path (a
//! small JSON buffer) free of an allocation and a virtual call per frame.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// The size of the chunks `/bytes` is generated and sent in: large enough to
/// keep per-frame overhead low, small enough that no response ever holds much
/// memory.
pub(crate) const RANDOM_CHUNK: usize = 64 * 1024;

/// The body of every response of the echo server.
#[derive(Debug)]
pub(crate) enum EchoBody {
    /// A buffer sent in one frame (`None` once sent, or for an empty body).
    Full(Option<Bytes>),
    /// Pseudo-random bytes made on the fly.
    Random(RandomBytes),
}

impl EchoBody {
    /// An empty body.
    pub(crate) fn empty() -> Self {
        EchoBody::Full(None)
    }

    /// A body holding `bytes`.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Self::empty()
        } else {
            EchoBody::Full(Some(bytes))
        }
    }

    /// `len` pseudo-random bytes from `seed`, in chunks of `chunk` bytes.
    ///
    /// With `sized`, the body announces its exact length (hyper then sends a
    /// `Content-Length`); without it, the length is unknown to hyper, which
    /// sends it chunked.
    pub(crate) fn random(len: u64, seed: u64, chunk: usize, sized: bool) -> Self {
        EchoBody::Random(RandomBytes {
            remaining: len,
            state: seed,
            chunk: chunk.max(1),
            sized,
        })
    }
}

/// The state of a pseudo-random body.
#[derive(Debug)]
pub(crate) struct RandomBytes {
    remaining: u64,
    state: u64,
    chunk: usize,
    sized: bool,
}

impl RandomBytes {
    /// The next chunk, at most `self.chunk` bytes and never past the end.
    fn next_chunk(&mut self) -> Bytes {
        let len = usize::try_from(self.remaining).map_or(self.chunk, |r| r.min(self.chunk));
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            let word = splitmix64(&mut self.state).to_le_bytes();
            let take = (len - buf.len()).min(word.len());
            buf.extend_from_slice(&word[..take]);
        }
        self.remaining -= len as u64;
        Bytes::from(buf)
    }
}

/// SplitMix64: tiny, fast and good enough for test payloads (not for secrets).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Body for EchoBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        // Generation is synchronous and bounded by one chunk, so every poll is
        // ready; hyper's own back-pressure (it stops polling while the socket
        // is full) keeps memory bounded.
        let frame = match self.get_mut() {
            EchoBody::Full(bytes) => bytes.take().map(Frame::data),
            EchoBody::Random(random) if random.remaining == 0 => None,
            EchoBody::Random(random) => Some(Frame::data(random.next_chunk())),
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EchoBody::Full(bytes) => bytes.is_none(),
            EchoBody::Random(random) => random.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EchoBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            EchoBody::Random(random) if random.sized => SizeHint::with_exact(random.remaining),
            EchoBody::Random(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn random_body_has_the_exact_length_and_is_reproducible() {
        for len in [0u64, 1, 7, 8, 9, 65_535, 65_536, 65_537, 200_000] {
            let body = EchoBody::random(len, 42, RANDOM_CHUNK, true);
            assert_eq!(body.size_hint().exact(), Some(len));
            let a = body.collect().await.unwrap().to_bytes();
            let b = EchoBody::random(len, 42, 1000, false)
                .collect()
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(a.len() as u64, len);
            assert_eq!(a, b, "same seed, same bytes, whatever the chunking");
        }
    }

    #[tokio::test]
    async fn unsized_random_body_has_no_exact_length() {
        let body = EchoBody::random(10, 1, 3, false);
        assert_eq!(body.size_hint().exact(), None);
    }

    #[tokio::test]
    async fn full_body() {
        let body = EchoBody::full("abc");
        assert_eq!(body.size_hint().exact(), Some(3));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");
        assert!(EchoBody::full("").is_end_stream());
    }
}
