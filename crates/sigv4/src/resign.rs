//! Outbound re-signing with `aws-sigv4`: the verified request, signed again with the
//! gateway's (STS) credentials for the upstream host from configuration.
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

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::body::{BodyPart, BodyVerifier};
use crate::canonical::{decode, is_s3_family};
use crate::chunked::{ChunkEvent, DecodedChunk, Trailers};
use crate::error::{AuthError, ResignError};
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

const PRESIGN_PARAMS: [&str; 8] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "X-Amz-Content-Sha256",
];

const DROPPED: [&str; 14] = [
    "authorization",
    "x-amz-security-token",
    "x-amz-date",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// Re-signs a verified request for `target` with `creds` at time `now`.
///
/// `target.region` must equal the region the agent signed (`verified.region`).
pub fn resign(
    parts: &Parts,
    verified: &Verified,
    target: &UpstreamTarget,
    creds: &Credentials,
    now: SystemTime,
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
        Some(q) => {
            let q = if verified.presigned {
                strip_presign(q)
            } else {
                q.to_owned()
            };
            if q.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{q}")
            }
        }
        None => path.to_owned(),
    };

    let s3 = is_s3_family(&target.service);
    let mut headers = forwarded_headers(parts, verified, s3);
    headers.insert(http::header::HOST, host);

    let mut settings = SigningSettings::default();
    if s3 {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    } else {
        settings.percent_encoding_mode = PercentEncodingMode::Double;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Enabled;
        settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    }
    let body = match &verified.payload {
        PayloadMode::Hash(h) => SignableBody::Precomputed(h.clone()),
        PayloadMode::Unsigned => SignableBody::UnsignedPayload,
        PayloadMode::StreamingUnsignedTrailer => SignableBody::StreamingUnsignedPayloadTrailer,
        PayloadMode::StreamingSigned { trailer: false, .. } => {
            SignableBody::Precomputed(payload::STREAMING_SIGNED.to_owned())
        }
        PayloadMode::StreamingSigned { trailer: true, .. } => {
            SignableBody::StreamingSignedPayloadTrailer
        }
    };

    let mut pairs = Vec::with_capacity(headers.len());
    for (name, value) in &headers {
        let value = value.to_str().map_err(|_| {
            ResignError::InvalidRequest(format!("header `{name}` is not visible ascii"))
        })?;
        pairs.push((name.as_str(), value));
    }
    let uri = format!("{}://{}{}", target.scheme, target.host, path_and_query);
    let signable = SignableRequest::new(parts.method.as_str(), uri, pairs.into_iter(), body)
        .map_err(|e| ResignError::InvalidRequest(e.to_string()))?;
    let identity: Identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&target.region)
        .name(&target.service)
        .time(now)
        .settings(settings.clone())
        .build()
        .map_err(|e| ResignError::Signing(e.to_string()))?;
    let (instructions, signature) = sign(signable, &params.into())
        .map_err(|e| ResignError::Signing(e.to_string()))?
        .into_parts();
    let (new_headers, _params) = instructions.into_parts();
    for h in new_headers {
        let mut value = HeaderValue::from_str(h.value())
            .map_err(|_| ResignError::Signing(format!("bad header value for `{}`", h.name())))?;
        value.set_sensitive(h.sensitive());
        headers.insert(HeaderName::from_static(h.name()), value);
    }

    let chunk_resigner = match verified.payload {
        PayloadMode::StreamingSigned { trailer, .. } => Some(ChunkResigner {
            identity,
            region: target.region.clone(),
            service: target.service.clone(),
            time: now,
            running: signature.clone(),
            trailer,
        }),
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
        if DROPPED.contains(&n) || connection_named.iter().any(|c| c == n) {
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
            !PRESIGN_PARAMS.iter().any(|p| p.as_bytes() == k.as_slice())
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Re-signs a verified aws-chunked stream chunk by chunk with the gateway's credentials,
/// keeping every frame the same length.
#[derive(Debug)]
pub struct ChunkResigner {
    identity: Identity,
    region: String,
    service: String,
    time: SystemTime,
    running: String,
    trailer: bool,
}

impl ChunkResigner {
    /// The bytes to send upstream for one verified event.
    pub fn frame(&mut self, event: &ChunkEvent) -> Result<Bytes, ResignError> {
        let settings = SigningSettings::default();
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(&self.service)
            .time(self.time)
            .settings(settings)
            .build()
            .map_err(|e| ResignError::Signing(e.to_string()))?;
        match event {
            ChunkEvent::Chunk(chunk) => {
                let (_, sig) = v4::sign_chunk(&chunk.data, &self.running, &params)
                    .map_err(|e| ResignError::Signing(e.to_string()))?
                    .into_parts();
                let out = frame_signed_chunk(chunk, &sig);
                self.running = sig;
                Ok(out)
            }
            ChunkEvent::Trailers(t) => {
                let mut headers = aws_smithy_runtime_api::http::Headers::new();
                for (name, value) in t.pairs() {
                    headers
                        .try_append(name, value.to_owned())
                        .map_err(|e| ResignError::InvalidRequest(format!("trailer: {e}")))?;
                }
                let (_, sig) = v4::sign_trailer(&headers, &self.running, &params)
                    .map_err(|e| ResignError::Signing(e.to_string()))?
                    .into_parts();
                let out = frame_trailers(t, &sig);
                self.running = sig;
                Ok(out)
            }
            ChunkEvent::End if !self.trailer => Ok(Bytes::from_static(b"\r\n")),
            ChunkEvent::End => Ok(Bytes::new()),
        }
    }
}

fn frame_signed_chunk(chunk: &DecodedChunk, sig: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(chunk.data.len() + 100);
    out.extend_from_slice(chunk.size_field.as_bytes());
    for (i, ext) in chunk.extensions.iter().enumerate() {
        out.extend_from_slice(b";");
        if Some(i) == chunk.signature_index {
            out.extend_from_slice(b"chunk-signature=");
            out.extend_from_slice(sig.as_bytes());
        } else {
            out.extend_from_slice(ext.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    if !chunk.is_final() {
        out.extend_from_slice(&chunk.data);
        out.extend_from_slice(b"\r\n");
    }
    out.freeze()
}

fn frame_trailers(t: &Trailers, sig: &str) -> Bytes {
    let mut out = BytesMut::new();
    for line in &t.lines {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        t.signature_prefix
            .as_deref()
            .unwrap_or("x-amz-trailer-signature:")
            .as_bytes(),
    );
    out.extend_from_slice(sig.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.freeze()
}

/// Verifies a body as it streams and produces the bytes to forward upstream: the verifier
/// and, for signed aws-chunked bodies, the chunk re-signer in one.
#[derive(Debug)]
pub struct ForwardBody {
    verifier: BodyVerifier,
    resigner: Option<ChunkResigner>,
}

/// An error while forwarding a body: the inbound body failed verification, or re-signing
/// failed. Either way the upstream request must be aborted.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The agent's body failed verification.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Re-signing a chunk failed.
    #[error(transparent)]
    Resign(#[from] ResignError),
}

impl ForwardBody {
    /// Pairs the body verifier of `verified` with the chunk re-signer from [`resign`].
    pub fn new(verified: &Verified, resigner: Option<ChunkResigner>) -> Self {
        Self {
            verifier: verified.body_verifier(),
            resigner,
        }
    }

    /// Feeds inbound bytes; returns the bytes to send upstream now (possibly empty).
    pub fn push(&mut self, data: Bytes) -> Result<Bytes, ForwardError> {
        let parts = self.verifier.push(data)?;
        self.render(parts)
    }

    /// Ends the inbound body; returns the last bytes to send upstream.
    pub fn finish(&mut self) -> Result<Bytes, ForwardError> {
        let parts = self.verifier.finish()?;
        self.render(parts)
    }

    fn render(&mut self, parts: Vec<BodyPart>) -> Result<Bytes, ForwardError> {
        if let [BodyPart::Raw(b)] = parts.as_slice() {
            return Ok(b.clone());
        }
        let mut out = BytesMut::new();
        for part in parts {
            match part {
                BodyPart::Raw(b) => out.extend_from_slice(&b),
                BodyPart::Chunked(ev) => match &mut self.resigner {
                    Some(r) => out.extend_from_slice(&r.frame(&ev)?),
                    None => {
                        return Err(ResignError::InvalidRequest(
                            "signed aws-chunked body without a chunk re-signer".to_owned(),
                        )
                        .into());
                    }
                },
            }
        }
        Ok(out.freeze())
    }
}
