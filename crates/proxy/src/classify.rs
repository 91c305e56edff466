//! Layer 2: what the request does. Service, operation, IAM actions and resource ARNs from
//! the generated service-model tables. A request that cannot be classified is denied,
//! never guessed.

use std::convert::Infallible;
use std::sync::Arc;

use custody_sigv4::classify::{ClassifyInput, classify};
use http::{Request, Response};

use crate::stage::{Inner, stage};

use crate::body::ProxyBody;
use crate::context::{RequestCtx, Shared};
use crate::error::{ErrorFormat, Refusal, RefusalKind};
use crate::record::refuse;

stage! {
    /// Classifies verified requests; see the module docs.
    Classify, classify_request
}

async fn classify_request<S: Inner>(
    shared: Arc<Shared>,
    mut req: Request<ProxyBody>,
    mut inner: S,
) -> Result<Response<ProxyBody>, Infallible> {
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
            classify(&input).map_err(|e| Refusal::new(RefusalKind::AccessDenied, e.to_string()))
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
