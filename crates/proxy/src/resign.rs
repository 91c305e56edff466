//! Layer 5: re-sign for upstream. Scoped credentials for the grant from the
//! [`CredentialSource`](crate::seams::CredentialSource), the upstream endpoint from
//! configuration (never from the request), the signature from `custody_sigv4::resign`.
//! The body is verified as it is forwarded: each aws-chunked chunk is checked, then
//! re-signed; a hash body's last bytes are held until the hash matches. A bad body aborts
//! the upstream request, so the upstream never sees it whole.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use custody_sigv4::resign::{ForwardBody, UpstreamTarget, resign};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body::{Body, Frame};
use tower::{Layer, Service};

use custody_sigv4::verify::PayloadMode;

use crate::body::{BoxError, CountingBody, ProxyBody};
use crate::context::{RequestCtx, Shared};
use crate::error::{Refusal, RefusalKind};
use crate::queue_urls;
use crate::record::BytesIn;
use crate::seams::BoxFuture;

/// Re-signs and hands the request to the forwarder; see the module docs.
#[derive(Clone, Debug)]
pub struct Resign<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Resign<S> {
    /// The layer.
    pub fn layer(shared: Arc<Shared>) -> impl Layer<S, Service = Self> + Clone {
        tower::layer::layer_fn(move |inner| Self {
            inner,
            shared: shared.clone(),
        })
    }
}

impl<S> Service<Request<ProxyBody>> for Resign<S>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = Refusal>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Response<ProxyBody>, std::convert::Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, mut req: Request<ProxyBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            // Taken out, not copied: the upstream request is built anew, without them.
            let Some(ctx) = req.extensions_mut().remove::<RequestCtx>() else {
                return Ok(crate::classify::missing_context());
            };
            let bytes_in = req.extensions_mut().remove::<BytesIn>().unwrap_or_default();
            let format = ctx.format;
            let request_id = ctx.request_id.clone();
            // Where queue URLs are rewritten to and from (SQS only; see `queue_urls`).
            let urls = match (&shared.options.public_url, &ctx.classification) {
                (Some(public), Some(c)) if queue_urls::rewrites_response(c) => Some(public.clone()),
                _ => None,
            };
            match prepare(&shared, &ctx, req, bytes_in).await {
                Ok((upstream_req, body_failure)) => {
                    // Only for responses that hand queue URLs out.
                    let urls = urls.map(|public| (public, origin_of(upstream_req.uri())));
                    match inner.call(upstream_req).await {
                        Ok(resp) => match urls {
                            Some((public, upstream_origin)) => {
                                Ok(queue_urls::map_response(resp, &upstream_origin, &public)
                                    .await
                                    .unwrap_or_else(|e| {
                                        Refusal::new(
                                            RefusalKind::BadGateway,
                                            format!("the upstream response did not arrive: {e}"),
                                        )
                                        .into_recorded_response(format, &request_id)
                                    }))
                            }
                            None => Ok(resp),
                        },
                        Err(refusal) => {
                            // If the agent's body failed verification, say so; else the upstream
                            // is at fault.
                            let failure = body_failure
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .take();
                            let refusal = match failure {
                                Some((kind, message)) => Refusal::new(kind, message),
                                None => refusal,
                            };
                            Ok(refusal.into_recorded_response(format, &request_id))
                        }
                    }
                }
                Err(refusal) => Ok(refusal.into_recorded_response(format, &request_id)),
            }
        })
    }
}

/// `scheme://authority` of an absolute URI.
fn origin_of(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map_or("", |a| a.as_str())
    )
}

/// Why the agent's body, not the upstream, ended the exchange: a body that failed its
/// signature check, or one that failed to arrive (stalled, too slow, cut off).
type BodyFailure = Arc<Mutex<Option<(RefusalKind, String)>>>;

async fn prepare(
    shared: &Shared,
    ctx: &RequestCtx,
    req: Request<ProxyBody>,
    bytes_in: BytesIn,
) -> Result<(Request<ProxyBody>, BodyFailure), Refusal> {
    let (Some(entry), Some(verified), Some(classification)) =
        (&ctx.grant, &ctx.verified, &ctx.classification)
    else {
        return Err(Refusal::new(
            RefusalKind::AccessDenied,
            "request reached re-signing unauthenticated or unclassified",
        ));
    };
    let target = shared.options.upstream.target(
        &classification.service,
        &verified.service,
        &verified.region,
    )?;
    let credentials = shared
        .credentials
        .credentials(&entry.grant)
        .await
        .map_err(|e| {
            Refusal::new(
                RefusalKind::ServiceUnavailable,
                format!("nothing was forwarded: {e}"),
            )
        })?;
    let (mut parts, mut body) = req.into_parts();
    // A queue named on the agent's endpoint is named on the upstream's (SQS refuses a
    // queue URL on another host). The body was verified whole; the upstream signature
    // covers the mapped body.
    let mut mapped_verified: Option<custody_sigv4::verify::Verified> = None;
    if let Some(public) = &shared.options.public_url
        && queue_urls::is_sqs(classification)
    {
        let upstream = format!("{}://{}", target.scheme, target.authority);
        let verified_body = ctx.buffered_body.as_deref().filter(|_| ctx.body_verified);
        let mapped =
            queue_urls::map_request(classification, &mut parts, verified_body, public, &upstream)
                .map_err(|e| Refusal::new(RefusalKind::InvalidRequest, e.to_string()))?;
        if let Some(mapped) = mapped {
            let mut v = custody_sigv4::verify::Verified::clone(verified);
            v.payload = PayloadMode::Hash(mapped.sha256);
            mapped_verified = Some(v);
            body = crate::body::full(mapped.bytes);
        }
    }
    let verified = mapped_verified.as_ref().unwrap_or(verified);
    let sigv4_target = UpstreamTarget {
        scheme: target.scheme.as_str().to_owned(),
        host: target.authority.as_str().to_owned(),
        region: target.region,
        service: target.signing_name,
    };
    let now = shared.clock.now();
    let resigned = resign(&parts, verified, &sigv4_target, &credentials, now).map_err(|e| {
        Refusal::new(
            RefusalKind::InvalidRequest,
            format!("cannot re-sign the request: {e}"),
        )
    })?;
    let bad_url = |e: &dyn std::fmt::Display| {
        Refusal::new(
            RefusalKind::InvalidRequest,
            format!("cannot build the upstream url: {e}"),
        )
    };
    // From its parsed parts: only the path and query are new.
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(target.scheme);
    uri.authority = Some(target.authority);
    uri.path_and_query = Some(
        PathAndQuery::from_maybe_shared(Bytes::from(resigned.path_and_query))
            .map_err(|e| bad_url(&e))?,
    );
    let uri = Uri::from_parts(uri).map_err(|e| bad_url(&e))?;
    let failure: BodyFailure = Arc::default();
    let body = match resigned.chunk_resigner {
        // Buffered and checked whole by the authenticate layer, nothing to re-frame: send
        // the bytes as they are rather than hashing them a second time.
        None if ctx.body_verified => ProxyBody::new(CountingBody::new(body, bytes_in.0)),
        resigner => ProxyBody::new(CountingBody::new(
            ResignedBody {
                inner: body,
                forward: ForwardBody::new(verified, resigner),
                done: false,
                failure: failure.clone(),
            },
            bytes_in.0,
        )),
    };
    let mut upstream = Request::new(body);
    *upstream.method_mut() = parts.method;
    *upstream.uri_mut() = uri;
    *upstream.headers_mut() = resigned.headers;
    Ok((upstream, failure))
}

pin_project_lite::pin_project! {
    /// The agent's body as it goes upstream: verified, re-signed where chunked.
    struct ResignedBody {
        #[pin]
        inner: ProxyBody,
        forward: ForwardBody,
        done: bool,
        failure: BodyFailure,
    }
}

impl Body for ResignedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            let step = match std::task::ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.forward.push(data),
                    // Trailers outside aws-chunked are covered by no signature: dropped.
                    Err(_) => continue,
                },
                Some(Err(e)) => {
                    *this.done = true;
                    *this.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some((
                        RefusalKind::InvalidRequest,
                        format!("the request body did not arrive: {e}"),
                    ));
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    *this.done = true;
                    this.forward.finish()
                }
            };
            match step {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Err(e) => {
                    *this.done = true;
                    let message = e.to_string();
                    *this.failure.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some((RefusalKind::SignatureDoesNotMatch, message.clone()));
                    tracing::warn!(error = %message, "aborting upstream request: body failed verification");
                    return Poll::Ready(Some(Err(message.into())));
                }
            }
        }
    }
}
