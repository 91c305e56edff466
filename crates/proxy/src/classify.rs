//! Layer 2: what the request does. Service, operation, IAM actions and resource ARNs from
//! the generated service-model tables. A request that cannot be classified is denied,
//! never guessed.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use custody_sigv4::classify::{ClassifyInput, classify};
use http::{Request, Response};
use tower::{Layer, Service};

use crate::body::ProxyBody;
use crate::context::{RequestCtx, Shared};
use crate::error::{ErrorFormat, Refusal, RefusalKind};
use crate::record::refuse;
use crate::seams::BoxFuture;

/// Classifies verified requests; see the module docs.
#[derive(Clone, Debug)]
pub struct Classify<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Classify<S> {
    /// The layer.
    pub fn layer(shared: Arc<Shared>) -> impl Layer<S, Service = Self> + Clone {
        tower::layer::layer_fn(move |inner| Self {
            inner,
            shared: shared.clone(),
        })
    }
}

impl<S> Service<Request<ProxyBody>> for Classify<S>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<ProxyBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ProxyBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let Some(mut ctx) = req.extensions_mut().remove::<RequestCtx>() else {
                return Ok(missing_context());
            };
            let result = match (&ctx.verified, &ctx.grant) {
                (Some(verified), Some(entry)) => {
                    let account = account_of(&entry.grant.role_arn);
                    let input = ClassifyInput {
                        method: req.method(),
                        path: req.uri().path(),
                        query: req.uri().query(),
                        headers: req.headers(),
                        body: ctx.buffered_body.as_deref(),
                        signing_name: &verified.service,
                        region: &verified.region,
                        account_id: account,
                    };
                    classify(&input)
                        .map_err(|e| Refusal::new(RefusalKind::AccessDenied, e.to_string()))
                }
                _ => Err(Refusal::new(
                    RefusalKind::AccessDenied,
                    "request reached classification unauthenticated",
                )),
            };
            match result {
                Ok(c) => {
                    ctx.format = match (c.protocol.error_format(), ctx.format) {
                        (custody_sigv4::classify::ErrorFormat::Json, _) => ErrorFormat::Json,
                        (_, ErrorFormat::S3Xml) => ErrorFormat::S3Xml,
                        _ => ErrorFormat::QueryXml,
                    };
                    ctx.classification = Some(Arc::new(c));
                    req.extensions_mut().insert(ctx);
                    inner.call(req).await
                }
                Err(refusal) => Ok(refuse(&shared, ctx, refusal).await),
            }
        })
    }
}

/// The account id in an ARN (`arn:aws:iam::123456789012:role/x` → `123456789012`).
pub fn account_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or("")
}

/// A request without the context the first layer adds: a wiring defect, refused.
pub(crate) fn missing_context() -> Response<ProxyBody> {
    Refusal::new(
        RefusalKind::AccessDenied,
        "request context missing (gateway wiring defect)",
    )
    .into_response(ErrorFormat::QueryXml, "none")
}
