//! A request body with a deadline that the body earns by arriving: [`DeadlineBody`], and
//! [`failure`], which tells an API's body extractor why reading a body failed, so that it can
//! answer 408, 413 or 400 in its own format.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The client did not send its body fast enough ([`crate::Limits::body_allowance`]).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// The body is longer than its route allows (`request-size-limiting`).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body is larger than {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// Larger than the endpoint reads (413).
    TooLarge,
    /// Too slow (408).
    TimedOut,
    /// Cut or malformed (400).
    Broken,
}

/// Classifies an error met while reading a body, looking through its chain of sources.
pub fn failure(err: &(dyn std::error::Error + 'static)) -> BodyFailure {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<BodyTimedOut>() {
            return BodyFailure::TimedOut;
        }
        if e.is::<BodyTooLarge>() {
            return BodyFailure::TooLarge;
        }
        if e.is::<http_body_util::LengthLimitError>() {
            return BodyFailure::TooLarge;
        }
        current = e.source();
    }
    BodyFailure::Broken
}

/// A body that fails with [`BodyTooLarge`] as soon as more than `max` bytes have arrived, for
/// bodies whose length is not announced (chunked).
pub struct CappedBody<B> {
    inner: B,
    max: u64,
    seen: u64,
    failed: bool,
}

impl<B> CappedBody<B> {
    /// `inner`, allowed `max` bytes.
    pub fn new(inner: B, max: u64) -> Self {
        CappedBody {
            inner,
            max,
            seen: 0,
            failed: false,
        }
    }
}

impl<B> Body for CappedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.max {
                        this.failed = true;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(this.max)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `headers` announce a body longer than `max` bytes (`Content-Length`): such a
/// request is refused before its body is read, as nginx's `client_max_body_size` does.
pub fn announced_too_large(headers: &http::HeaderMap, max: usize) -> bool {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > max as u64)
}

/// Why axum's body extractor failed: axum itself knows a body over the route's limit (its
/// rejection answers 413); the rest is classified by [`failure`].
pub fn rejection_failure(r: &axum::extract::rejection::BytesRejection) -> BodyFailure {
    if r.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
        BodyFailure::TooLarge
    } else {
        failure(r)
    }
}

/// A body that fails with [`BodyTimedOut`] when it has not ended by `started + allowance`,
/// where `started` is when the body was first wanted and the allowance grows with what
/// arrived. The timer exists only while the body waits.
pub struct DeadlineBody<B> {
    inner: B,
    started: Option<Instant>,
    received: u64,
    base: Duration,
    min_rate: u64,
    sleep: Option<Pin<Box<Sleep>>>,
    failed: bool,
}

impl<B> DeadlineBody<B> {
    /// `inner` with the body limits of `limits`, counted from its first poll.
    pub fn new(inner: B, limits: &crate::Limits) -> Self {
        DeadlineBody {
            inner,
            started: None,
            received: 0,
            base: limits.body_timeout,
            min_rate: limits.body_min_rate,
            sleep: None,
            failed: false,
        }
    }

    fn deadline(&self, started: Instant) -> Instant {
        started + crate::limits::body_allowance(self.base, self.min_rate, self.received)
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        let started = *this.started.get_or_insert_with(Instant::now);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.sleep = None;
                Poll::Ready(None)
            }
            Poll::Pending => loop {
                let deadline = this.deadline(started);
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() < deadline {
                    // What arrived since the timer was set earned more time.
                    sleep.as_mut().reset(deadline);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if Instant::now() >= this.deadline(started) {
                    this.failed = true;
                    this.sleep = None;
                    return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use http_body_util::channel::Channel;

    fn limits(secs: u64, rate: u64) -> crate::Limits {
        crate::Limits {
            body_timeout: Duration::from_secs(secs),
            body_min_rate: rate,
            ..crate::Limits::with_connections(1)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_at_the_timeout_and_a_steady_upload_is_not() {
        // A byte a second: cut after 10 s (and a few ms earned), not later.
        let (mut tx, rx) = Channel::<Bytes, std::convert::Infallible>::new(1);
        let mut body = DeadlineBody::new(rx, &limits(10, 100));
        let started = Instant::now();
        let sender = tokio::spawn(async move {
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx.send_data(Bytes::from_static(b"x")).await.is_err() {
                    return;
                }
            }
        });
        let mut got = 0;
        let err = loop {
            match body.frame().await {
                Some(Ok(_)) => got += 1,
                Some(Err(e)) => break e,
                None => panic!("the body ended"),
            }
        };
        assert_eq!(failure(&*err), BodyFailure::TimedOut);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(10) && took < Duration::from_secs(11),
            "{took:?}"
        );
        assert_eq!(got, 10);
        sender.abort();

        // 200 bytes a second against a minimum of 100: 60 s of upload goes through.
        let (mut tx, rx) = Channel::<Bytes, std::convert::Infallible>::new(1);
        let body = DeadlineBody::new(rx, &limits(10, 100));
        tokio::spawn(async move {
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = tx.send_data(Bytes::from(vec![b'y'; 200])).await;
            }
        });
        let all = body.collect().await.map(|b| b.to_bytes().len());
        assert_eq!(all.ok(), Some(12_000));
    }

    #[test]
    fn failures_are_found_through_the_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped")]
        struct Wrapper(#[source] BodyTimedOut);
        assert_eq!(failure(&Wrapper(BodyTimedOut)), BodyFailure::TimedOut);
        assert_eq!(
            failure(&std::io::Error::other("reset")),
            BodyFailure::Broken
        );
    }
}
