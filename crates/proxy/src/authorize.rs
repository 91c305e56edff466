//! Layer 3: may it? The grant decides (`custody_grant::decide`): status, window, region,
//! budget, scope. Calls that mint credentials are denied unless the grant names their
//! action outright, wildcards not counting.

use std::convert::Infallible;
use std::sync::Arc;

use custody_grant::{AccessRequest, ActionRequest, Grant, decide};
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
            })
            .collect(),
        region: Some(verified.region.clone()),
        source_ip: Some(ctx.source.ip()),
        context: class.context.clone(),
        requests_so_far,
    };
    let mints = class.mints_credentials;
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
    if mints && let Some(action) = unnamed_minting_action(&grant, ctx.access.as_ref()) {
        let message = format!(
            "grant `{}` does not name `{action}` explicitly; calls that mint credentials need it named, wildcards do not count",
            grant.id.as_str()
        );
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

/// The first action of a credential-minting request that no `Allow` statement of the
/// grant names literally (case-insensitive, no wildcard).
fn unnamed_minting_action(grant: &Grant, access: Option<&AccessRequest>) -> Option<String> {
    let scope = serde_json::to_value(&grant.scope).ok()?;
    let statements = match &scope["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    let named = |action: &str| {
        statements.iter().any(|s| {
            s["Effect"] == "Allow"
                && match &s["Action"] {
                    serde_json::Value::String(a) => a.eq_ignore_ascii_case(action),
                    serde_json::Value::Array(list) => list
                        .iter()
                        .any(|a| a.as_str().is_some_and(|a| a.eq_ignore_ascii_case(action))),
                    _ => false,
                }
        })
    };
    access?
        .actions
        .iter()
        .find(|a| !named(&a.action))
        .map(|a| a.action.clone())
}
