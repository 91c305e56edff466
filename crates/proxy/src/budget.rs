//! How much memory bodies whose signature is not yet known may hold, all together.
//!
//! Most services' SDKs do not send `x-amz-content-sha256`, so their signature covers the
//! body's hash and cannot be checked before the body is read. Anyone who knows an access
//! key id (it is not a secret) could otherwise make the gateway buffer `max_buffered_body`
//! per connection. Every such body takes its bytes from one shared budget before they are
//! read: with a `Content-Length`, all of it at once; without, frame by frame. A body that
//! cannot get its bytes within `wait` is refused with a throttling error (the SDK retries),
//! and the bytes return to the budget as soon as the signature has been checked.
//!
//! Bodies whose head signature is already verified (it covers `x-amz-content-sha256`) do
//! not use the budget: the agent holding the secret is known, recorded and revocable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::ProxyBody;
use crate::error::{Refusal, RefusalKind};

/// The shared budget; cheap to clone (clones share it).
#[derive(Clone)]
pub struct BodyBudget {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Arc<Semaphore>,
    total: usize,
    wait: Duration,
    refused: AtomicU64,
}

impl std::fmt::Debug for BodyBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyBudget")
            .field("total", &self.inner.total)
            .field("available", &self.inner.permits.available_permits())
            .field("wait", &self.inner.wait)
            .finish()
    }
}

impl Default for BodyBudget {
    /// 64 MiB, waiting up to 5 s.
    fn default() -> Self {
        Self::new(64 << 20, Duration::from_secs(5))
    }
}

/// Bytes held from the budget; they return when this is dropped.
#[derive(Debug, Default)]
pub struct Held(Option<OwnedSemaphorePermit>);

impl Held {
    /// Hold `other`'s bytes too (one permit however many frames a body came in: a body
    /// of one-byte chunks costs no more to hold than one frame).
    fn absorb(&mut self, other: Held) {
        match (&mut self.0, other.0) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

impl BodyBudget {
    /// A budget of `total` bytes; a body waits at most `wait` for its share.
    pub fn new(total: usize, wait: Duration) -> Self {
        // The semaphore counts in u32 steps; a budget is far below 4 GiB in practice.
        let total = total.clamp(1, u32::MAX as usize);
        Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(total)),
                total,
                wait,
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// The budget's size in bytes.
    pub fn total(&self) -> usize {
        self.inner.total
    }

    /// Bytes not held by any body right now.
    pub fn available(&self) -> usize {
        self.inner.permits.available_permits()
    }

    /// How many bodies were refused because the budget stayed exhausted.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Read `body` (at most `limit` bytes, `declared` if the head says) holding its bytes
    /// from the budget. The returned [`Held`] gives them back when dropped.
    pub async fn read(
        &self,
        body: ProxyBody,
        declared: Option<u64>,
        limit: usize,
    ) -> Result<(Bytes, Held), Refusal> {
        let limit = limit.min(self.inner.total);
        if let Some(n) = declared {
            if n > limit as u64 {
                return Err(too_large(limit));
            }
            // All at once: a body never holds part of the budget while waiting for the rest.
            let held = self.take(n as usize).await?;
            let (bytes, ()) =
                read_at_most(body, n as usize, |_| async { Ok(()) }, |(), ()| ()).await?;
            return Ok((bytes, held));
        }
        // No length: take the bytes as the frames arrive.
        read_at_most(body, limit, |n| self.take(n), Held::absorb).await
    }

    async fn take(&self, n: usize) -> Result<Held, Refusal> {
        if n == 0 {
            return Ok(Held(None));
        }
        let n = u32::try_from(n).map_err(|_| too_large(self.inner.total))?;
        let acquire = Arc::clone(&self.inner.permits).acquire_many_owned(n);
        match tokio::time::timeout(self.inner.wait, acquire).await {
            Ok(Ok(permit)) => Ok(Held(Some(permit))),
            _ => {
                self.inner.refused.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::new(
                    RefusalKind::Throttled,
                    format!(
                        "too many request bodies are waiting for their signature check \
                         (all {} bytes of the gateway's budget for them are in use); retry later",
                        self.inner.total
                    ),
                ))
            }
        }
    }
}

pub(crate) fn too_large(limit: usize) -> Refusal {
    Refusal::new(
        RefusalKind::InvalidRequest,
        format!("request body is larger than the {limit} bytes this gateway buffers for api calls"),
    )
}

/// Read `body` into one buffer, refusing past `limit`; `before_frame(len)` runs before each
/// data frame is kept (and may refuse); what it returns is folded into one value with
/// `merge`, kept with the bytes. A body whose length is known takes its buffer at that
/// size at once (growing one by doubling could hold twice the bytes).
pub(crate) async fn read_at_most<F, Fut, T: Default>(
    mut body: ProxyBody,
    limit: usize,
    mut before_frame: F,
    mut merge: impl FnMut(&mut T, T),
) -> Result<(Bytes, T), Refusal>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, Refusal>>,
{
    let mut buf = BytesMut::with_capacity(
        body.size_hint()
            .exact()
            .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX).min(limit)),
    );
    let mut kept = T::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Refusal::new(
                RefusalKind::InvalidRequest,
                format!("could not read the request body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > limit {
            return Err(too_large(limit));
        }
        let more = before_frame(data.len()).await?;
        merge(&mut kept, more);
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), kept))
}

/// The `Content-Length` a head declares, if it declares one that parses.
pub(crate) fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body of `n` one-byte frames.
    struct Drip(usize);

    impl http_body::Body for Drip {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            if self.0 == 0 {
                return Poll::Ready(None);
            }
            self.0 -= 1;
            Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"x")))))
        }
    }

    #[tokio::test]
    async fn bodies_hold_their_bytes_until_checked_and_wait_then_refuse_when_it_is_spent() {
        let budget = BodyBudget::new(1000, Duration::from_millis(200));
        // Many frames, one hold: the bytes come back at once when it is dropped.
        let (bytes, held) = budget
            .read(ProxyBody::new(Drip(600)), None, 1000)
            .await
            .unwrap();
        assert_eq!(bytes.len(), 600);
        assert!(held.0.is_some());
        assert_eq!(budget.available(), 400);
        // A declared body larger than what is left waits, then is refused.
        let refused = budget
            .read(ProxyBody::new(Drip(500)), Some(500), 1000)
            .await
            .unwrap_err();
        assert_eq!(refused.kind, RefusalKind::Throttled);
        assert_eq!(budget.refused(), 1);
        drop(held);
        assert_eq!(budget.available(), 1000);
        let (bytes, _) = budget
            .read(ProxyBody::new(Drip(500)), Some(500), 1000)
            .await
            .unwrap();
        assert_eq!(bytes.len(), 500);
        // Over the buffering limit: refused, whatever the budget.
        let too_big = budget
            .read(ProxyBody::new(Drip(1)), Some(5000), 1000)
            .await
            .unwrap_err();
        assert_eq!(too_big.kind, RefusalKind::InvalidRequest);
    }
}
