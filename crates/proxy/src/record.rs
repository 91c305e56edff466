//! Layer 4: the evidence. An allowed decision is appended to the session log and must be
//! durable before anything is forwarded; if it cannot be written the agent gets a 503 and
//! nothing leaves the gateway (fail closed). Denials are recorded too, by [`refuse`].
//! The outcome is recorded when the response ends.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use custody_grant::AccessRequest;
use http::{HeaderValue, Request, Response};

use crate::stage::{Inner, stage};

use crate::body::{OutcomeBody, OutcomeState, ProxyBody};
use crate::classify::missing_context;
use crate::context::{RequestCtx, Shared};
use crate::error::{AnsweredByGateway, Refusal, RefusalKind};
use crate::seams::{DecisionRecord, OutcomeRecord};

/// Bytes forwarded upstream for this request, counted by the re-sign layer.
#[derive(Debug, Clone, Default)]
pub struct BytesIn(pub Arc<AtomicU64>);

stage! {
    /// Records allowed decisions before forwarding; see the module docs.
    Record, record
}

async fn record<S: Inner>(
    shared: Arc<Shared>,
    mut req: Request<ProxyBody>,
    mut inner: S,
) -> Result<Response<ProxyBody>, Infallible> {
    let Some(mut ctx) = req.extensions_mut().remove::<RequestCtx>() else {
        return Ok(missing_context());
    };
    let reason = ctx.reason.take().unwrap_or_else(|| "allowed".into());
    let record = decision_record(&mut ctx, true, reason);
    let seq = match shared.sink.record_decision(record).await {
        Ok(seq) => seq,
        Err(e) => {
            tracing::error!(error = %e, request_id = %ctx.request_id, "refusing request: decision not recorded");
            let refusal = Refusal::new(
                RefusalKind::ServiceUnavailable,
                format!("the gateway cannot record this request, so it forwards nothing: {e}"),
            );
            return Ok(refusal.into_response(ctx.format, &ctx.request_id));
        }
    };
    ctx.decision_seq = Some(seq);
    let bytes_in = BytesIn::default();
    req.extensions_mut().insert(bytes_in.clone());
    let request_id = ctx.request_id.clone();
    let started = ctx.started;
    let grant_id = ctx
        .grant
        .as_ref()
        .map(|g| g.grant.id.as_str().to_owned())
        .unwrap_or_default();
    req.extensions_mut().insert(ctx);
    let response = inner.call(req).await?;
    let (mut parts, body) = response.into_parts();
    // A response the gateway made itself after this decision says why, in the outcome,
    // and has no upstream request id (its request id header is the gateway's own).
    let answered = parts.extensions.remove::<AnsweredByGateway>().map(|a| a.0);
    let upstream_request_id = ["x-amz-request-id", "x-amzn-requestid"]
        .iter()
        .find_map(|h| parts.headers.get(*h))
        .filter(|_| answered.is_none())
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let state = OutcomeState {
        sink: shared.sink.clone(),
        record: OutcomeRecord {
            request_id: request_id.clone(),
            decision_seq: seq,
            grant_id,
            status: parts.status.as_u16(),
            bytes_in: 0,
            bytes_out: 0,
            upstream_request_id,
            latency_us: 0,
            error: answered,
        },
        bytes_in: bytes_in.0,
        started,
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        parts.headers.insert("x-custody-request-id", v);
    }
    Ok(Response::from_parts(
        parts,
        ProxyBody::new(OutcomeBody::new(body, state)),
    ))
}

/// Record a denial and answer it. Nothing is forwarded. If the denial cannot be recorded
/// the agent is still refused (with the same answer); the sink's health reports the
/// failure.
pub async fn refuse(shared: &Shared, mut ctx: RequestCtx, refusal: Refusal) -> Response<ProxyBody> {
    // Nobody has proven who sent it, or it is refused for coming too fast: past the
    // first few like it, only counted.
    if (!ctx.authenticated || refusal.kind == crate::error::RefusalKind::Throttled)
        && !shared.options.refusals.admit(
            ctx.source.ip(),
            refusal.kind,
            ctx.grant.as_ref().map(|e| e.grant.id.as_str()),
            &refusal.message,
            ctx.received_at,
        )
    {
        shared.options.observer.refused(refusal.kind, false);
        tracing::debug!(request_id = %ctx.request_id, reason = %refusal.message, "denied (counted)");
        return refusal.into_response(ctx.format, &ctx.request_id);
    }
    shared.options.observer.refused(refusal.kind, true);
    let record = decision_record(&mut ctx, false, refusal.message.clone());
    if let Err(e) = shared.sink.record_decision(record).await {
        tracing::error!(error = %e, request_id = %ctx.request_id, "could not record a denial");
    }
    tracing::info!(request_id = %ctx.request_id, reason = %refusal.message, "denied");
    refusal.into_response(ctx.format, &ctx.request_id)
}

/// The decision as the sink records it. Takes the access request out of `ctx` (nothing
/// after the record reads it) rather than copying it.
fn decision_record(ctx: &mut RequestCtx, allowed: bool, reason: String) -> DecisionRecord {
    DecisionRecord {
        request_id: ctx.request_id.clone(),
        received_at: ctx.received_at,
        grant: ctx.grant.as_ref().map(|e| e.grant.clone()),
        access_key_id: ctx.access_key_id.clone(),
        grant_event_seq: ctx.grant.as_ref().and_then(|e| e.activation_seq),
        service: ctx
            .classification
            .as_ref()
            .map(|c| c.service.clone())
            .or_else(|| ctx.verified.as_ref().map(|v| v.service.clone())),
        operation: ctx.classification.as_ref().map(|c| c.operation.clone()),
        access: ctx.access.take().unwrap_or_else(|| AccessRequest {
            actions: Vec::new(),
            region: ctx.verified.as_ref().map(|v| v.region.clone()),
            source_ip: Some(ctx.source.ip()),
            context: Default::default(),
            requests_so_far: 0,
        }),
        allowed,
        reason,
        source: ctx.source,
        body_sha256: ctx.body_sha256.clone(),
    }
}
