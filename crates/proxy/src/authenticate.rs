//! Layer 1: who is asking. Verifies the SigV4 signature against the grant named by the
//! access key id. Bodies the classifier needs (API calls) are buffered, up to a limit, and
//! checked whole here; object bodies stream and are checked as they are forwarded.

use std::cell::RefCell;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use custody_sigv4::body::BodyPart;
use custody_sigv4::chunked::ChunkEvent;
use custody_sigv4::error::AuthError;
use custody_sigv4::key::SigningSecret;
use custody_sigv4::verify::{PayloadMode, Verification, VerifyOptions, verify};
use http::{HeaderMap, Request, Response};
use sha2::{Digest, Sha256};

use crate::stage::{Inner, stage};

use crate::body::{ProxyBody, full};
use crate::context::{ClientAddr, RequestCtx, Shared};
use crate::error::{ErrorFormat, Refusal, RefusalKind};
use crate::record::refuse;
use crate::seams::GrantEntry;

stage! {
    /// Verifies the agent's signature; see the module docs.
    Authenticate, authenticate
}

async fn authenticate<S: Inner>(
    shared: Arc<Shared>,
    req: Request<ProxyBody>,
    mut inner: S,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let source = parts
        .extensions
        .get::<ClientAddr>()
        .map(|a| a.0)
        .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let now = shared.clock.now();
    let mut ctx = RequestCtx::new(source, now);
    if !shared.options.rate_limits.source_allows(source.ip()) {
        ctx.format = early_format(&parts.headers, parts.uri.query());
        let response = refuse(&shared, ctx, throttled("this address")).await;
        return Ok(unread_body(response, &parts.headers));
    }

    let (verification, entry) = match check_head(&shared, &parts, now) {
        Ok(ok) => ok,
        Err((e, entry)) => {
            // Only a refusal needs the format guessed before the scope is parsed.
            ctx.format = early_format(&parts.headers, parts.uri.query());
            ctx.access_key_id = entry
                .as_ref()
                .map(|e| e.grant.access_key_id.as_str().to_owned());
            ctx.grant = entry;
            let response = refuse(&shared, ctx, auth_refusal(&e)).await;
            return Ok(unread_body(response, &parts.headers));
        }
    };
    ctx.access_key_id = Some(entry.grant.access_key_id.as_str().to_owned());
    ctx.grant = Some(entry);
    // A SigV2 presigned URL's own parameters authenticated it and go no further: what is
    // classified is what is forwarded (re-signed with SigV4), without them.
    if verification.head().sigv2
        && let Some(query) = parts.uri.query()
    {
        let stripped = custody_sigv4::sigv2::strip_params(query);
        let path_and_query = if stripped.is_empty() {
            parts.uri.path().to_owned()
        } else {
            format!("{}?{stripped}", parts.uri.path())
        };
        match http::Uri::builder().path_and_query(path_and_query).build() {
            Ok(uri) => parts.uri = uri,
            Err(e) => {
                let refusal = Refusal::new(RefusalKind::InvalidRequest, e.to_string());
                return Ok(refuse(&shared, ctx, refusal).await);
            }
        }
    }

    // The scope's service is known (not yet authenticated) even when the signature still
    // waits for the body.
    let signing_name = verification.head().service.clone();
    let pending = matches!(verification, Verification::NeedsBody(_));
    ctx.authenticated = !pending;
    ctx.format = format_for(&signing_name, &parts.headers);
    // What is forwarded must be what is verified and classified: a head the rebuilding
    // for upstream could change the meaning of is refused before any body is read.
    if let Err(e) = custody_sigv4::fidelity::check_head(&parts, verification.head()) {
        let response = refuse(
            &shared,
            ctx,
            Refusal::new(RefusalKind::InvalidRequest, format!("request refused: {e}")),
        )
        .await;
        return Ok(unread_body(response, &parts.headers));
    }
    // A request without a body is "buffered" for free; asking the classifier first would
    // route the request twice.
    let buffer = pending
        || custody_sigv4::body::declares_no_body(&parts.headers)
        || custody_sigv4::classify::needs_body(
            &signing_name,
            &parts.method,
            &parts.headers,
            parts.uri.path(),
            parts.uri.query(),
        );

    let body = if buffer {
        let limit = shared.options.max_buffered_body;
        let declared = crate::budget::declared_length(&parts.headers);
        // Known to be too large: refused before a byte of it is read.
        if declared.is_some_and(|n| n > limit as u64) {
            let response = refuse(&shared, ctx, crate::budget::too_large(limit)).await;
            return Ok(unread_body(response, &parts.headers));
        }
        // Until the signature is checked, anyone knowing the key id could be sending this
        // body: it holds its bytes from the shared budget for such bodies.
        let read = if pending {
            shared
                .options
                .unverified_bodies
                .read(body, declared, limit)
                .await
                .map(|(b, held)| (b, Some(held)))
        } else {
            crate::budget::read_at_most(body, limit, |_| async { Ok(()) }, |(), ()| ())
                .await
                .map(|(b, ())| (b, None))
        };
        let (bytes, held) = match read {
            Ok(b) => b,
            Err(refusal) => {
                let response = refuse(&shared, ctx, refusal).await;
                return Ok(unread_body(response, &parts.headers));
            }
        };
        let verified = verification.with_body(&bytes);
        drop(held);
        let verified = match verified {
            Ok(v) => v,
            Err(e) => return Ok(refuse(&shared, ctx, auth_refusal(&e)).await),
        };
        ctx.authenticated = true;
        if !bytes.is_empty() {
            // The verified hash is the body's digest already; hash again only when the
            // payload mode carried none.
            ctx.body_sha256 = Some(match &verified.payload {
                PayloadMode::Hash(h) => h.to_ascii_lowercase(),
                _ => hex::encode(Sha256::digest(&bytes)),
            });
        }
        // Classification reads the payload: for aws-chunked bodies, the decoded
        // chunk data. What goes upstream is the body as received, verified again
        // and re-signed chunk by chunk by the re-sign layer.
        let payload = match decoded_payload(&verified, &bytes) {
            Ok(p) => p,
            Err(e) => return Ok(refuse(&shared, ctx, auth_refusal(&e)).await),
        };
        ctx.buffered_body = Some(payload);
        ctx.body_verified = true;
        ctx.verified = Some(Arc::new(verified));
        full(bytes)
    } else {
        let Verification::Verified(verified) = verification else {
            // `pending` forces buffering above.
            return Ok(refuse(
                &shared,
                ctx,
                Refusal::new(
                    RefusalKind::SignatureDoesNotMatch,
                    "signature needs the body",
                ),
            )
            .await);
        };
        // Streamed bodies are checked as they are forwarded (re-sign layer): each
        // chunk, or the whole-body hash, before the bytes it covers leave.
        ctx.verified = Some(Arc::new(verified));
        body
    };
    // Only the grant's holder can spend its tokens: checked once the signature is.
    if let Some(entry) = &ctx.grant
        && !shared
            .options
            .rate_limits
            .grant_allows(entry.grant.id.as_str())
    {
        let who = format!("grant `{}`", entry.grant.id.as_str());
        return Ok(refuse(&shared, ctx, throttled(&who)).await);
    }
    parts.extensions.insert(ctx);
    inner.call(Request::from_parts(parts, body)).await
}

/// A refusal sent before the request's body was read: the server closes the connection
/// after it (the unread bytes make it unusable), so the response says so. Without
/// `Connection: close` a client would put the connection back in its pool and its next
/// request could be written into a socket the gateway is closing: lost, unanswered.
fn unread_body(
    mut response: Response<ProxyBody>,
    request: &http::HeaderMap,
) -> Response<ProxyBody> {
    if !custody_sigv4::body::declares_no_body(request) {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

fn throttled(who: &str) -> Refusal {
    Refusal::new(
        RefusalKind::Throttled,
        format!(
            "rate exceeded: {who} is sending requests faster than this gateway allows; retry with backoff"
        ),
    )
}

/// Verify the head; on failure also return the grant entry if the key named one (so the
/// denial is recorded against it).
fn check_head(
    shared: &Shared,
    parts: &http::request::Parts,
    now: std::time::SystemTime,
) -> Result<(Verification, GrantEntry), (AuthError, Option<GrantEntry>)> {
    let found: RefCell<Option<GrantEntry>> = RefCell::new(None);
    let lookup = |akid: &str| {
        let entry = shared.grants.lookup(akid)?;
        let secret = SigningSecret::new(Arc::clone(&entry.secret));
        *found.borrow_mut() = Some(entry);
        Some(secret)
    };
    let result = verify(parts, &lookup, now, &VerifyOptions::default());
    let mut entry = found.into_inner();
    if entry.is_none()
        && matches!(result, Err(AuthError::NotImplemented(_)))
        && let Some(akid) = sigv2_access_key(parts)
    {
        // A SigV2 request names its key too: its refusal is recorded against that grant
        // (as a bad SigV4 signature is), so the operator sees whose client needs fixing.
        entry = shared.grants.lookup(&akid);
    }
    match (result, entry) {
        (Ok(v), Some(entry)) => Ok((v, entry)),
        (Ok(_), None) => Err((AuthError::MissingAuthentication, None)),
        (Err(e), entry) => Err((e, entry)),
    }
}

/// The access key id a SigV2 request names: `AWSAccessKeyId` in a presigned query, or
/// `Authorization: AWS <key>:<signature>`.
fn sigv2_access_key(parts: &http::request::Parts) -> Option<String> {
    let from_header = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("AWS "))
        .and_then(|v| v.split(':').next());
    let from_query = || {
        parts.uri.query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("AWSAccessKeyId="))
        })
    };
    from_header
        .or_else(from_query)
        .filter(|k| !k.is_empty() && k.len() <= 128)
        .map(str::to_owned)
}

/// The error format before anything is verified: by the signing name in the credential
/// scope if one can be read, else XML.
fn early_format(headers: &HeaderMap, query: Option<&str>) -> ErrorFormat {
    match scope_service(headers, query) {
        Some(s) => format_for(&s, headers),
        None => ErrorFormat::QueryXml,
    }
}

/// The service named in the credential scope, read leniently; only used to choose an
/// error format or whether to buffer — the signature check parses it strictly.
fn scope_service(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .or_else(|| query.and_then(|q| q.split("X-Amz-Credential=").nth(1)))
        .and_then(|c| {
            let c = c.split([',', '&', ' ']).next().unwrap_or("");
            let c = c.replace("%2F", "/").replace("%2f", "/");
            c.split('/').nth(3).map(str::to_owned)
        })
}

/// The error format for a signing name.
pub fn format_for(signing_name: &str, headers: &HeaderMap) -> ErrorFormat {
    use custody_sigv4::classify::ErrorFormat as F;
    match custody_sigv4::classify::error_format(signing_name, headers) {
        F::Json => ErrorFormat::Json,
        F::Xml if custody_sigv4::canonical::is_s3_family(signing_name) => ErrorFormat::S3Xml,
        F::Xml => ErrorFormat::QueryXml,
    }
}

/// Map a verification failure to what the agent is told.
pub fn auth_refusal(e: &AuthError) -> Refusal {
    let kind = match e {
        AuthError::MissingAuthentication
        | AuthError::IncompleteSignature(_)
        | AuthError::InvalidScope { .. } => RefusalKind::IncompleteSignature,
        AuthError::UnknownAccessKey(_) => RefusalKind::UnknownAccessKey,
        AuthError::SignatureDoesNotMatch { .. }
        | AuthError::ChunkSignatureDoesNotMatch { .. }
        | AuthError::ContentSha256Mismatch { .. } => RefusalKind::SignatureDoesNotMatch,
        AuthError::RequestTimeTooSkewed { .. } => RefusalKind::RequestTimeTooSkewed,
        AuthError::PresignExpired { .. } => RefusalKind::ExpiredToken,
        AuthError::MalformedChunk(_) | AuthError::IncompleteBody(_) => RefusalKind::InvalidRequest,
        AuthError::NotImplemented(_) => RefusalKind::NotImplemented,
        _ => RefusalKind::SignatureDoesNotMatch,
    };
    Refusal::new(kind, e.to_string())
}

/// The payload of a buffered body as classification reads it: the decoded chunk data for
/// aws-chunked bodies (checking every chunk signature), else the bytes themselves.
fn decoded_payload(
    verified: &custody_sigv4::verify::Verified,
    bytes: &Bytes,
) -> Result<Bytes, AuthError> {
    if !matches!(
        verified.payload,
        PayloadMode::StreamingSigned { .. } | PayloadMode::StreamingUnsignedTrailer
    ) {
        return Ok(bytes.clone());
    }
    let mut verifier = verified.body_verifier();
    let mut parts = verifier.push(bytes.clone())?;
    parts.extend(verifier.finish()?);
    if matches!(verified.payload, PayloadMode::StreamingUnsignedTrailer) {
        // Unsigned aws-chunked passes through the verifier raw; decode its framing here.
        let mut decoder =
            custody_sigv4::chunked::ChunkDecoder::unsigned(true, None, Default::default());
        let mut payload = Vec::new();
        for ev in decoder.push(bytes)? {
            if let ChunkEvent::Chunk(c) = ev {
                payload.extend_from_slice(&c.data);
            }
        }
        decoder.finish()?;
        return Ok(Bytes::from(payload));
    }
    let mut payload = Vec::new();
    for part in parts {
        match part {
            BodyPart::Chunked(ChunkEvent::Chunk(c)) => payload.extend_from_slice(&c.data),
            BodyPart::Raw(b) => payload.extend_from_slice(&b),
            BodyPart::Chunked(_) => {}
        }
    }
    Ok(Bytes::from(payload))
}
