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
use crate::canonical::{
    PathCanonicalization, canonical_path, canonical_query_outbound, decode, is_s3_family,
    push_outbound_header_value,
};
use crate::chunked::{ChunkEvent, DecodedChunk, Trailers};
use crate::error::{AuthError, ResignError};
use crate::key::{SigningKey, format_amz_date, hex32, sha256_hex};
use crate::verify::{PayloadMode, Verified, payload};

const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

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

/// The outbound request head as it will be sent, before its signature headers are added.
struct Outbound<'a> {
    method: &'a str,
    path_and_query: &'a str,
    /// Forwarded headers plus `Host`.
    headers: HeaderMap,
    /// The payload line of the canonical request.
    payload_hash: &'a str,
    /// S3 family: single encoding, no normalisation, `x-amz-content-sha256` signed.
    s3: bool,
}

/// Adds `X-Amz-Date`, `X-Amz-Security-Token`, (S3) `x-amz-content-sha256` and
/// `Authorization` to the head; returns the signature.
type HeadSigner =
    fn(&mut Outbound<'_>, &UpstreamTarget, &Credentials, SystemTime) -> Result<String, ResignError>;

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
        PayloadMode::StreamingSigned { trailer, .. } => Some(ChunkResigner {
            identity: creds.clone().into(),
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

/// Headers `aws-sigv4` leaves out of the signature by default (and so do we): they change
/// in transit or carry the signature itself.
const UNSIGNED_HEADERS: [&str; 4] = [
    "authorization",
    "user-agent",
    "x-amzn-trace-id",
    "transfer-encoding",
];

/// Signs the outbound head with this crate's canonical forms and the per-thread signing-key
/// cache: the same canonical request, string to sign and headers as `aws-sigv4`'s `sign`
/// with the settings of [`sign_head_with_aws_sigv4`] (tests compare the two byte for byte,
/// on the AWS suite's requests and on generated ones).
///
/// Written here rather than calling `aws-sigv4` for every request because that call was the
/// largest single piece of the gateway's profile (8.6% of its CPU at 32 connections, about
/// 5 µs of a 60 µs request): per call it derives the signing key (four HMACs), copies every
/// header into a second map and builds its canonical request from owned strings. The
/// canonical forms themselves are the ones the inbound check already needs, which
/// `aws-sigv4` does not offer (it signs; it does not verify a client's `SignedHeaders`).
fn sign_head(
    out: &mut Outbound<'_>,
    target: &UpstreamTarget,
    creds: &Credentials,
    now: SystemTime,
) -> Result<String, ResignError> {
    let date_time = format_amz_date(now);
    let date = date_time.get(..8).unwrap_or_default();
    out.headers
        .insert(X_AMZ_DATE, header_value(&date_time, "x-amz-date")?);
    if out.s3 {
        out.headers.insert(
            X_AMZ_CONTENT_SHA256,
            header_value(out.payload_hash, "x-amz-content-sha256")?,
        );
    }
    if let Some(token) = creds.session_token() {
        let mut value = header_value(token, "x-amz-security-token")?;
        value.set_sensitive(true);
        out.headers.insert(X_AMZ_SECURITY_TOKEN, value);
    }

    let mut names: Vec<&str> = out
        .headers
        .keys()
        .map(HeaderName::as_str)
        .filter(|n| !UNSIGNED_HEADERS.contains(n))
        .collect();
    names.sort_unstable();
    let signed_headers = names.join(";");

    let (path, query) = out
        .path_and_query
        .split_once('?')
        .unwrap_or((out.path_and_query, ""));
    let rule = if out.s3 {
        PathCanonicalization::S3
    } else {
        PathCanonicalization::DEFAULT
    };
    let mut creq = Vec::with_capacity(256 + 64 * names.len());
    creq.extend_from_slice(out.method.as_bytes());
    creq.push(b'\n');
    creq.extend_from_slice(canonical_path(path, rule).as_bytes());
    creq.push(b'\n');
    creq.extend_from_slice(canonical_query_outbound(query).as_bytes());
    creq.push(b'\n');
    for name in &names {
        creq.extend_from_slice(name.as_bytes());
        creq.push(b':');
        push_outbound_header_value(&mut creq, &out.headers, name);
        creq.push(b'\n');
    }
    creq.push(b'\n');
    creq.extend_from_slice(signed_headers.as_bytes());
    creq.push(b'\n');
    creq.extend_from_slice(out.payload_hash.as_bytes());

    let scope = format!("{date}/{}/{}/aws4_request", target.region, target.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
        sha256_hex(&creq)
    );
    let key = SigningKey::derive_cached_from(
        creds.secret_access_key(),
        date,
        &target.region,
        &target.service,
    );
    let signature = hex32(&key.sign(string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id()
    );
    let mut value = header_value(&authorization, "authorization")?;
    value.set_sensitive(true);
    out.headers.insert(http::header::AUTHORIZATION, value);
    Ok(signature)
}

fn header_value(value: &str, name: &str) -> Result<HeaderValue, ResignError> {
    HeaderValue::from_str(value)
        .map_err(|_| ResignError::Signing(format!("bad header value for `{name}`")))
}

/// Signs the outbound head with `aws_sigv4::http_request::sign`.
fn sign_head_with_aws_sigv4(
    out: &mut Outbound<'_>,
    target: &UpstreamTarget,
    creds: &Credentials,
    now: SystemTime,
) -> Result<String, ResignError> {
    let mut settings = SigningSettings::default();
    if out.s3 {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    } else {
        settings.percent_encoding_mode = PercentEncodingMode::Double;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Enabled;
        settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    }
    let body = match out.payload_hash {
        payload::UNSIGNED => SignableBody::UnsignedPayload,
        payload::STREAMING_UNSIGNED_TRAILER => SignableBody::StreamingUnsignedPayloadTrailer,
        payload::STREAMING_SIGNED_TRAILER => SignableBody::StreamingSignedPayloadTrailer,
        hash => SignableBody::Precomputed(hash.to_owned()),
    };
    let mut pairs = Vec::with_capacity(out.headers.len());
    for (name, value) in &out.headers {
        let value = value.to_str().map_err(|_| {
            ResignError::InvalidRequest(format!("header `{name}` is not visible ascii"))
        })?;
        pairs.push((name.as_str(), value));
    }
    let uri = format!("{}://{}{}", target.scheme, target.host, out.path_and_query);
    let signable = SignableRequest::new(out.method, uri, pairs.into_iter(), body)
        .map_err(|e| ResignError::InvalidRequest(e.to_string()))?;
    let identity: Identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&target.region)
        .name(&target.service)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| ResignError::Signing(e.to_string()))?;
    let (instructions, signature) = sign(signable, &params.into())
        .map_err(|e| ResignError::Signing(e.to_string()))?
        .into_parts();
    let (new_headers, _params) = instructions.into_parts();
    for h in new_headers {
        let mut value = header_value(h.value(), h.name())?;
        value.set_sensitive(h.sensitive());
        out.headers.insert(HeaderName::from_static(h.name()), value);
    }
    Ok(signature)
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
