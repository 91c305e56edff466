//! Outbound re-signing: the verified request, signed again with the gateway's (STS)
//! credentials for the upstream host from configuration. The head is signed with this
//! crate's canonical forms, checked byte for byte against `aws-sigv4` (which
//! [`resign_with_aws_sigv4`] calls); aws-chunked bodies are re-signed with `aws-sigv4`.
//!
//! - The path and query sent upstream are the bytes the client sent (and that were verified
//!   and classified). A presigned inbound request is forwarded header-signed: its
//!   `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`,
//!   `X-Amz-SignedHeaders`, `X-Amz-Signature`, `X-Amz-Security-Token` and
//!   `X-Amz-Content-Sha256` query parameters are dropped (the payload hash travels in the
//!   signed headers instead), every other byte of the query is kept.
//! - `Host` is set to the upstream host before signing; the agent's `Authorization`,
//!   `X-Amz-Security-Token`, `X-Amz-Date`, hop-by-hop headers and `Expect` are dropped, and so
//!   are `x-amz-*` headers the agent did not sign (AWS would reject them, so re-signing must
//!   not launder them).
//! - S3 family: single encoding, no path normalisation, `x-amz-content-sha256` signed. Other
//!   services: double encoding, normalisation.
//! - The payload hash is passed through; for signed aws-chunked bodies a [`ChunkResigner`]
//!   re-signs every chunk and the trailer with the new seed signature, keeping the framing the
//!   same length so `Content-Length` stays valid.

mod chunks;
mod head;

use std::time::SystemTime;

use aws_credential_types::Credentials;
use http::request::Parts;
use http::{HeaderMap, HeaderValue};

pub use self::chunks::{ChunkResigner, ForwardBody, ForwardError};
use self::head::{HeadSigner, Outbound, sign_head, sign_head_with_aws_sigv4};
use crate::canonical::{decode, is_s3_family};
use crate::error::ResignError;
use crate::verify::{PayloadMode, Verified, payload};

/// Where the request goes: from configuration, never from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// `https` or `http`.
    pub scheme: String,
    /// Host, with `:port` if not the scheme's default; becomes the `Host` header.
    pub host: String,
    /// Signing region.
    pub region: String,
    /// Signing name (`s3`, `sts`, ...).
    pub service: String,
}

/// The re-signed request head.
#[derive(Debug)]
pub struct Resigned {
    /// Every header to send upstream (including `Host`, `Authorization`, `X-Amz-Date`,
    /// `X-Amz-Security-Token`, and `x-amz-content-sha256` for the S3 family).
    pub headers: HeaderMap,
    /// Path and query to send upstream: as received, minus presign parameters.
    pub path_and_query: String,
    /// The new request signature.
    pub signature: String,
    /// For `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]` bodies: re-signs each chunk.
    pub chunk_resigner: Option<ChunkResigner>,
}

/// Query parameters that authenticate a presigned request (dropped when re-signing: the
/// forwarded request is header-signed).
pub(crate) const PRESIGN_PARAMS: [&str; 8] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "X-Amz-Content-Sha256",
];

/// The agent's authentication, replaced by the gateway's; with the hop-by-hop headers
/// ([`crate::fidelity::HOP_BY_HOP`]), what is not forwarded.
const REPLACED: [&str; 5] = [
    "authorization",
    "x-amz-security-token",
    "x-amz-date",
    "host",
    "expect",
];

/// Re-signs a verified request for `target` with `creds` at time `now`.
///
/// `target.region` must equal the region the agent signed (`verified.region`). The head is
/// signed by this crate (see [`resign_with_aws_sigv4`] for the `aws-sigv4` call it matches
/// byte for byte); aws-chunked bodies are re-signed with `aws-sigv4`.
pub fn resign(
    parts: &Parts,
    verified: &Verified,
    target: &UpstreamTarget,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Resigned, ResignError> {
    resign_using(parts, verified, target, creds, now, sign_head)
}

/// [`resign`] with the head signed by `aws_sigv4::http_request::sign`: the reference the
/// gateway's own head signing is checked against (tests compare the two byte for byte) and
/// measured against (`cargo bench -p custody-sigv4 --bench request_path`).
pub fn resign_with_aws_sigv4(
    parts: &Parts,
    verified: &Verified,
    target: &UpstreamTarget,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Resigned, ResignError> {
    resign_using(
        parts,
        verified,
        target,
        creds,
        now,
        sign_head_with_aws_sigv4,
    )
}

fn resign_using(
    parts: &Parts,
    verified: &Verified,
    target: &UpstreamTarget,
    creds: &Credentials,
    now: SystemTime,
    sign_head: HeadSigner,
) -> Result<Resigned, ResignError> {
    if target.scheme != "https" && target.scheme != "http" {
        return Err(ResignError::InvalidTarget(format!(
            "scheme `{}`",
            target.scheme
        )));
    }
    if target.region != verified.region {
        // The agent chose (and signed) a region; forwarding elsewhere would act on resources
        // the request was not authorised against.
        return Err(ResignError::InvalidTarget(format!(
            "region `{}` differs from the signed region `{}`",
            target.region, verified.region
        )));
    }
    let host = HeaderValue::from_str(&target.host)
        .map_err(|_| ResignError::InvalidTarget(format!("host `{}`", target.host)))?;
    let path = parts.uri.path();
    let path = if path.is_empty() { "/" } else { path };
    let path_and_query = match parts.uri.query() {
        Some(q) if verified.presigned => {
            let q = strip_presign(q);
            if q.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{q}")
            }
        }
        Some("") | None => path.to_owned(),
        Some(q) => format!("{path}?{q}"),
    };

    let s3 = is_s3_family(&target.service);
    let mut headers = forwarded_headers(parts, verified, s3);
    headers.insert(http::header::HOST, host);
    for (name, value) in &headers {
        if value.to_str().is_err() {
            return Err(ResignError::InvalidRequest(format!(
                "header `{name}` is not visible ascii"
            )));
        }
    }
    let payload_hash = match &verified.payload {
        PayloadMode::Hash(h) => h.as_str(),
        PayloadMode::Unsigned => payload::UNSIGNED,
        PayloadMode::StreamingUnsignedTrailer => payload::STREAMING_UNSIGNED_TRAILER,
        PayloadMode::StreamingSigned { trailer: false, .. } => payload::STREAMING_SIGNED,
        PayloadMode::StreamingSigned { trailer: true, .. } => payload::STREAMING_SIGNED_TRAILER,
    };
    let mut outbound = Outbound {
        method: parts.method.as_str(),
        path_and_query: &path_and_query,
        headers,
        payload_hash,
        s3,
    };
    let signature = sign_head(&mut outbound, target, creds, now)?;
    let headers = outbound.headers;

    let chunk_resigner = match verified.payload {
        PayloadMode::StreamingSigned { trailer, .. } => Some(ChunkResigner::new(
            creds,
            target,
            now,
            signature.clone(),
            trailer,
        )),
        _ => None,
    };
    Ok(Resigned {
        headers,
        path_and_query,
        signature,
        chunk_resigner,
    })
}

fn forwarded_headers(parts: &Parts, verified: &Verified, s3: bool) -> HeaderMap {
    let connection_named: Vec<String> = parts
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(parts.headers.len() + 4);
    for (name, value) in &parts.headers {
        let n = name.as_str();
        if REPLACED.contains(&n)
            || crate::fidelity::HOP_BY_HOP.contains(&n)
            || connection_named.iter().any(|c| c == n)
        {
            continue;
        }
        if n == "x-amz-content-sha256" && (s3 || verified.presigned) {
            // aws-sigv4 writes it for the S3 family.
            continue;
        }
        if n.starts_with("x-amz-") && !verified.header_is_signed(n) && n != "x-amz-content-sha256" {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The query without presign authentication parameters; the other pairs keep their bytes.
fn strip_presign(q: &str) -> String {
    q.split('&')
        .filter(|piece| {
            let k = piece.split_once('=').map_or(*piece, |(k, _)| k);
            let k = decode(k, true);
            !PRESIGN_PARAMS
                .iter()
                .chain(&crate::sigv2::SIGV2_PARAMS)
                .any(|p| p.as_bytes() == k.as_slice())
        })
        .collect::<Vec<_>>()
        .join("&")
}
