//! Signing the outbound head: with this crate's canonical forms ([`sign_head`]), or with
//! `aws-sigv4` ([`sign_head_with_aws_sigv4`], the reference the first is checked against).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::UpstreamTarget;
use crate::canonical::{
    PathCanonicalization, canonical_path, canonical_query_outbound, push_outbound_header_value,
};
use crate::error::ResignError;
use crate::key::{SigningKey, credential_scope, format_amz_date, hex32, request_string_to_sign};
use crate::verify::payload;

const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// The outbound request head as it will be sent, before its signature headers are added.
pub(super) struct Outbound<'a> {
    pub(super) method: &'a str,
    pub(super) path_and_query: &'a str,
    /// Forwarded headers plus `Host`.
    pub(super) headers: HeaderMap,
    /// The payload line of the canonical request.
    pub(super) payload_hash: &'a str,
    /// S3 family: single encoding, no normalisation, `x-amz-content-sha256` signed.
    pub(super) s3: bool,
}

/// Adds `X-Amz-Date`, `X-Amz-Security-Token`, (S3) `x-amz-content-sha256` and
/// `Authorization` to the head; returns the signature.
pub(super) type HeadSigner =
    fn(&mut Outbound<'_>, &UpstreamTarget, &Credentials, SystemTime) -> Result<String, ResignError>;

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
pub(super) fn sign_head(
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

    let scope = credential_scope(date, &target.region, &target.service);
    let string_to_sign = request_string_to_sign(&date_time, &scope, &creq);
    let key = SigningKey::derive_cached_from(
        creds.secret_access_key(),
        date,
        &target.region,
        &target.service,
    );
    let signature = hex32(&key.sign(&string_to_sign));
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
pub(super) fn sign_head_with_aws_sigv4(
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
