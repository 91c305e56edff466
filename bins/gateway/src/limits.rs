//! Bounds on what an unauthenticated client can hold: how many connections a listener
//! keeps open, how long a connection may take to say anything, and how slowly a request
//! body may arrive.
//!
//! - [`Gate`]: at most `max` open connections per listener; past it the listener stops
//!   accepting until one closes (the kernel's backlog holds the rest), says so once in the
//!   log and counts it in `custody_connection_limit_waits_total{listener}`. The agent and
//!   admin listeners have separate gates, so a flood of agent connections cannot lock the
//!   operator out, and the caps stay below the descriptor limit so the log always has the
//!   descriptors it needs.
//! - [`FirstBytes`]: a connection that sends nothing is closed after the header timeout
//!   (hyper's own header timeout covers slow request heads and idle keep-alive, but not
//!   the bytes hyper reads to tell HTTP/1.1 from HTTP/2).
//! - [`SlowBody`]: a request body that stalls for `idle`, or averages under `min_rate`
//!   bytes/s over more than `idle` of waiting for the agent, ends with an error: the request is refused (buffered
//!   bodies) or its upstream request aborted (streamed ones).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Descriptors kept free for everything that is not an agent connection: the log's
/// files, the admin listener, upstream connections, the grant store.
pub const RESERVED_DESCRIPTORS: u64 = 512;

/// The default agent connection cap for a descriptor limit: each agent connection may
/// also hold an upstream connection, so half of what is left after the reserve, and at
/// most 10,000.
pub fn default_agent_connections(nofile: u64) -> usize {
    let spare = nofile.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    usize::try_from(spare.clamp(16, 10_000)).unwrap_or(10_000)
}

/// Raises the soft open-files limit to the hard limit and returns the limit in force.
pub fn raise_nofile_limit() -> u64 {
    // `rlimit` wraps getrlimit/setrlimit safely; this crate forbids `unsafe`.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// A listener's connection cap.
pub struct Gate {
    permits: Arc<Semaphore>,
    max: usize,
    listener: &'static str,
    waits: Counter,
    saturated: AtomicBool,
}

// === impl Gate ===

impl Gate {
    /// A cap of `max` open connections for `listener`; `waits` counts the times a new
    /// connection had to wait for one to close.
    pub fn new(max: usize, listener: &'static str, waits: Counter) -> Arc<Self> {
        Arc::new(Gate {
            permits: Arc::new(Semaphore::new(max.max(1))),
            max,
            listener,
            waits,
            saturated: AtomicBool::new(false),
        })
    }

    /// Waits until another connection may be open; the permit is held for its life.
    pub async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            if self.saturated.swap(false, Ordering::Relaxed) {
                tracing::info!(
                    listener = self.listener,
                    "connection limit no longer reached"
                );
            }
            return Some(p);
        }
        self.waits.inc();
        if !self.saturated.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                listener = self.listener,
                max = self.max,
                "connection limit reached: new connections wait until one closes (limits.max_{}_connections)",
                self.listener
            );
        }
        self.permits.clone().acquire_owned().await.ok()
    }
}

pin_project_lite::pin_project! {
    /// A stream that fails its reads with `TimedOut` if no byte arrives within `timeout`
    /// of the connection opening; once one has, it is the stream itself.
    pub struct FirstBytes<S> {
        #[pin]
        inner: S,
        deadline: Pin<Box<Sleep>>,
        seen: bool,
    }
}

// === impl FirstBytes ===

impl<S> FirstBytes<S> {
    /// Wraps a just-accepted stream.
    pub fn new(inner: S, timeout: Duration) -> Self {
        FirstBytes {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            seen: false,
        }
    }
}

impl<S: AsyncRead> AsyncRead for FirstBytes<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if *this.seen {
            return this.inner.poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    *this.seen = true;
                }
                Poll::Ready(r)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within the header timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite> AsyncWrite for FirstBytes<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How slowly a request body may arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    /// Longest wait for the next part of the body.
    pub idle: Duration,
    /// Least average bytes per second once `idle` has passed since the first wait.
    pub min_rate: u64,
}

pin_project_lite::pin_project! {
    /// A request body held to a [`BodyPace`]. Only time spent waiting on the agent
    /// counts: while the upstream is not ready for more (backpressure), the body is not
    /// polled and no clock runs against the agent.
    pub struct SlowBody<B> {
        #[pin]
        inner: B,
        // The idle deadline, made the first time the agent keeps the body waiting: a
        // body that is empty or already buffered by the kernel never needs a timer.
        stall: Option<Pin<Box<Sleep>>>,
        pace: BodyPace,
        // When the current wait for the agent began, if one is under way.
        waiting_since: Option<Instant>,
        // Time spent waiting for the agent so far.
        waited: Duration,
        bytes: u64,
    }
}

// === impl SlowBody ===

impl<B> SlowBody<B> {
    /// Wraps a request body.
    pub fn new(inner: B, pace: BodyPace) -> Self {
        SlowBody {
            inner,
            stall: None,
            pace,
            waiting_since: None,
            waited: Duration::ZERO,
            bytes: 0,
        }
    }
}

impl<B> Body for SlowBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let since = match *this.waiting_since {
            Some(t) => t,
            None => {
                // A new wait for the agent: its own deadline.
                let now = Instant::now();
                *this.waiting_since = Some(now);
                if let Some(stall) = this.stall.as_mut() {
                    stall.as_mut().reset(now + this.pace.idle);
                }
                now
            }
        };
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.waiting_since = None;
                *this.waited += since.elapsed();
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.len() as u64;
                }
                if *this.waited > this.pace.idle {
                    let rate = *this.bytes as f64 / this.waited.as_secs_f64();
                    if rate < this.pace.min_rate as f64 {
                        return Poll::Ready(Some(Err(format!(
                            "request body arrives at {rate:.0} bytes/s, under the minimum of {} (limits.min_body_rate)",
                            this.pace.min_rate
                        )
                        .into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this
                .stall
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(since + this.pace.idle)))
                .as_mut()
                .poll(cx)
            {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "request body stalled: nothing for {} s (limits.body_idle_timeout_ms)",
                    this.pace.idle.as_secs()
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "tests fail loudly"
    )]
    use std::collections::VecDeque;

    use http_body_util::BodyExt;

    use super::*;

    /// A body that yields each chunk after its delay (measured from when it is asked for).
    struct Timed {
        chunks: VecDeque<(Duration, &'static [u8])>,
        sleep: Option<Pin<Box<Sleep>>>,
    }

    impl Body for Timed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let Some((delay, data)) = self.chunks.front().copied() else {
                return Poll::Ready(None);
            };
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
            self.chunks.pop_front();
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(data)))))
        }
    }

    fn body(chunks: &[(u64, &'static [u8])]) -> SlowBody<Timed> {
        let pace = BodyPace {
            idle: Duration::from_millis(200),
            min_rate: 1000,
        };
        let chunks = chunks
            .iter()
            .map(|(ms, d)| (Duration::from_millis(*ms), *d))
            .collect();
        SlowBody::new(
            Timed {
                chunks,
                sleep: None,
            },
            pace,
        )
    }

    #[tokio::test]
    async fn a_stalled_body_ends_with_why() {
        let e = body(&[(0, b"abc"), (60_000, b"never")])
            .collect()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("stalled"), "{e}");
    }

    #[tokio::test]
    async fn a_trickle_under_the_minimum_rate_ends_with_why() {
        let trickle: Vec<(u64, &'static [u8])> = (0..20).map(|_| (50, &b"x"[..])).collect();
        let e = body(&trickle).collect().await.unwrap_err();
        assert!(e.to_string().contains("under the minimum"), "{e}");
    }

    #[tokio::test]
    async fn time_the_agent_is_not_asked_for_more_does_not_count() {
        let mut b = body(&[(0, &[b'x'; 2000][..]), (50, b"y")]);
        assert!(b.frame().await.unwrap().is_ok());
        // The upstream holds off (backpressure) for longer than the idle timeout.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(b.frame().await.unwrap().is_ok());
        assert!(b.frame().await.is_none());
    }
}
