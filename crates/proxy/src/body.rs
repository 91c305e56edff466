//! Body types and wrappers: one boxed body type through the stack, a byte counter for
//! what went upstream, and the response wrapper that records the outcome when the
//! response ends (or is cut off).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use crate::seams::{LogSink, OutcomeRecord};

/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type used through the stack, for requests and responses.
///
/// A struct rather than a type alias: with the alias, the trait object's lifetime shows
/// up in service bounds and defeats `Send` inference for the layers' futures.
pub struct ProxyBody {
    inner: UnsyncBoxBody<Bytes, BoxError>,
}

impl ProxyBody {
    /// Box `body`.
    pub fn new<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            inner: body.map_err(Into::into).boxed_unsync(),
        }
    }
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBody").finish_non_exhaustive()
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    ProxyBody::new(http_body_util::Full::new(bytes.into()))
}

/// An empty body.
pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

pin_project_lite::pin_project! {
    /// Counts the data bytes that pass through it into a shared counter.
    pub struct CountingBody<B> {
        #[pin]
        inner: B,
        count: Arc<AtomicU64>,
    }
}

impl<B> CountingBody<B> {
    /// Count `inner`'s bytes into `count`.
    pub fn new(inner: B, count: Arc<AtomicU64>) -> Self {
        Self { inner, count }
    }
}

impl<B: Body<Data = Bytes>> Body for CountingBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the outcome record needs, captured when the response head arrives.
pub struct OutcomeState {
    /// The sink to record into.
    pub sink: Arc<dyn LogSink>,
    /// The record with everything but the byte counts and latency filled in (`error`: set
    /// when the gateway answered in the upstream's place).
    pub record: OutcomeRecord,
    /// Bytes forwarded upstream, counted by a [`CountingBody`] on the request.
    pub bytes_in: Arc<AtomicU64>,
    /// When the request was received.
    pub started: Instant,
}

impl OutcomeState {
    fn finish(self, bytes_out: u64, error: Option<String>) {
        let mut record = self.record;
        record.bytes_in = self.bytes_in.load(Ordering::Relaxed);
        record.bytes_out = bytes_out;
        record.latency_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        // The gateway's own answer (already in the record) says more than how its body
        // ended.
        record.error = record.error.or(error);
        // The response is already on its way; the outcome is evidence, not a gate. A
        // failed append shows up in the sink's health (and so in /readyz).
        self.sink.record_outcome(record);
    }
}

pin_project_lite::pin_project! {
    /// A response body that records the request's outcome when it ends, fails or is
    /// dropped before the end.
    pub struct OutcomeBody {
        #[pin]
        inner: ProxyBody,
        bytes_out: u64,
        state: Option<OutcomeState>,
    }

    impl PinnedDrop for OutcomeBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(state) = this.state.take() {
                // hyper stops polling a body that says it has ended (its length is known
                // and all of it was taken) and drops it without the final `None`: that
                // body was sent whole. Otherwise the agent went away before the end.
                let error = (!this.inner.is_end_stream())
                    .then(|| "response not read to the end".to_owned());
                state.finish(*this.bytes_out, error);
            }
        }
    }
}

impl OutcomeBody {
    /// Wrap `inner`, recording into `state` at the end.
    pub fn new(inner: ProxyBody, state: OutcomeState) -> Self {
        Self {
            inner,
            bytes_out: 0,
            state: Some(state),
        }
    }
}

impl Body for OutcomeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(state) = this.state.take() {
                    state.finish(*this.bytes_out, Some(format!("response body failed: {e}")));
                }
            }
            Poll::Ready(None) => {
                if let Some(state) = this.state.take() {
                    state.finish(*this.bytes_out, None);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
