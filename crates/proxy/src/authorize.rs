//! Layer 3: may it? The grant decides (`custody_grant::decide`): status, window, region,
//! budget, scope. Calls that mint credentials are denied unless the grant names their
//! action outright, wildcards not counting.

use std::convert::Infallible;
use std::sync::Arc;

use custody_grant::{AccessRequest, ActionRequest, decide};
use http::{Request, Response};

use crate::stage::{Inner, stage};

use crate::body::ProxyBody;
use crate::classify::missing_context;
use crate::context::{RequestCtx, Shared};
use crate::error::{Refusal, RefusalKind};
use crate::record::refuse;

stage! {
    /// Decides requests against their grant; see the module docs.
    Authorize, authorize
}

async fn authorize<S: Inner>(
    shared: Arc<Shared>,
    mut req: Request<ProxyBody>,
    mut inner: S,
) -> Result<Response<ProxyBody>, Infallible> {
    let Some(mut ctx) = req.extensions_mut().remove::<RequestCtx>() else {
        return Ok(missing_context());
    };
    let (Some(entry), Some(verified), Some(class)) =
        (&ctx.grant, &ctx.verified, &ctx.classification)
    else {
        return Ok(refuse(
            &shared,
            ctx,
            Refusal::new(
                RefusalKind::AccessDenied,
                "request reached authorization unclassified",
            ),
        )
        .await);
    };
    let grant = entry.grant.clone();
    let requests_so_far = match shared.grants.count_request(grant.id.as_str()) {
        Ok(n) => n,
        Err(e) => {
            let refusal = Refusal::new(
                RefusalKind::ServiceUnavailable,
                format!(
                    "cannot count requests for grant `{}`: {e}",
                    grant.id.as_str()
                ),
            );
            return Ok(refuse(&shared, ctx, refusal).await);
        }
    };
    let access = AccessRequest {
        actions: class
            .actions
            .iter()
            .map(|a| ActionRequest {
                action: a.action.clone(),
                resources: a.resources.clone(),
                // The classifier knows minting calls custody-grant's list does not name
                // (an EKS token presign, an SSM session): those need naming too.
                named_explicitly: class.mints_credentials,
            })
            .collect(),
        region: Some(verified.region.clone()),
        source_ip: Some(ctx.source.ip()),
        context: class.context.clone(),
        requests_so_far,
    };
    let now = time::OffsetDateTime::from(shared.clock.now());
    let decision = decide(&grant, &access, now);
    ctx.access = Some(access);
    if !decision.allowed {
        let reason = decision.reason.to_string();
        let first_action = ctx
            .access
            .as_ref()
            .and_then(|a| a.actions.first())
            .map(|a| a.action.as_str());
        // Name the action and resource once: the reason often already does.
        let message = if first_action.is_some_and(|a| reason.contains(a)) {
            format!(
                "grant `{}` for `{}`: {reason}",
                grant.id.as_str(),
                grant.identity
            )
        } else {
            format!(
                "grant `{}` for `{}` denies {}: {reason}",
                grant.id.as_str(),
                grant.identity,
                describe(ctx.access.as_ref())
            )
        };
        return Ok(refuse(
            &shared,
            ctx,
            Refusal::new(RefusalKind::AccessDenied, message),
        )
        .await);
    }
    ctx.reason = Some(decision.reason.to_string());
    req.extensions_mut().insert(ctx);
    inner.call(req).await
}

/// `` `s3:GetObject` on `arn:aws:s3:::b/k` `` for messages.
fn describe(access: Option<&AccessRequest>) -> String {
    let Some(access) = access else {
        return "the request".into();
    };
    let parts: Vec<String> = access
        .actions
        .iter()
        .map(|a| format!("`{}` on `{}`", a.action, a.resources.join("`, `")))
        .collect();
    if parts.is_empty() {
        "the request".into()
    } else {
        parts.join(" and ")
    }
}
