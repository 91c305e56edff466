//! Inbound SigV4 verification: header (`Authorization: AWS4-HMAC-SHA256 ...`) and presigned
//! query authentication, for every payload mode.
//!
//! [`verify`] checks the request head. When the signature covers a body hash the client did
//! not send in `x-amz-content-sha256` (non-S3 services hash the body into the canonical
//! request), the head alone cannot be checked: [`verify`] then returns
//! [`Verification::NeedsBody`] and the caller buffers the (small, API-call) body and calls
//! [`PendingBody::finish`]. Otherwise the head is verified and the body is checked as it
//! streams with [`Verified::body_verifier`].

use std::time::{Duration, SystemTime};

use http::request::Parts;
use subtle::ConstantTimeEq;

use crate::body::BodyVerifier;
use crate::canonical::{
    PathCanonicalization, canonical_path, canonical_query, decode, is_s3_family, push_header_value,
};
use crate::chunked::{ChunkLimits, ChunkSigningContext};
use crate::error::AuthError;
use crate::key::{
    EMPTY_SHA256, SecretLookup, SigningKey, credential_scope, format_amz_date, hex32,
    parse_amz_date, parse_http_date, request_string_to_sign, sha256_hex,
};

/// The payload hash values SigV4 knows besides a hex SHA-256.
pub mod payload {
    /// `UNSIGNED-PAYLOAD`.
    pub const UNSIGNED: &str = "UNSIGNED-PAYLOAD";
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`.
    pub const STREAMING_UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`.
    pub const STREAMING_SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`.
    pub const STREAMING_SIGNED_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
}

/// How the body is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadMode {
    /// The signature covers this lower-case hex SHA-256 of the body.
    Hash(String),
    /// `UNSIGNED-PAYLOAD`: the body is not covered.
    Unsigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: aws-chunked, every chunk signed.
    StreamingSigned {
        /// `-TRAILER` variant: a signed trailer section follows the final chunk.
        trailer: bool,
        /// `x-amz-decoded-content-length`, if sent.
        decoded_len: Option<u64>,
    },
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: aws-chunked, unsigned, checksum trailers.
    StreamingUnsignedTrailer,
}

/// Verification settings.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Presigned requests are refused after this instant (the grant's expiry), whatever
    /// their `X-Amz-Expires` says.
    pub not_after: Option<SystemTime>,
    /// Allowed clock skew. Default 15 minutes.
    pub max_skew: Duration,
    /// Largest `X-Amz-Expires`. Default 7 days (the AWS maximum).
    pub max_presign_expires: Duration,
    /// Path canonicalisation; `None` (default): by signing name (S3 family single-encodes and
    /// does not normalise, the rest double-encode and normalise).
    pub path_rule: Option<PathCanonicalization>,
    /// aws-chunked limits for [`Verified::body_verifier`].
    pub chunk_limits: ChunkLimits,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            not_after: None,
            max_skew: Duration::from_secs(15 * 60),
            max_presign_expires: Duration::from_secs(7 * 24 * 3600),
            path_rule: None,
            chunk_limits: ChunkLimits::default(),
        }
    }
}

/// The outcome of checking a request head.
#[derive(Debug)]
pub enum Verification {
    /// The head is authentic.
    Verified(Verified),
    /// The signature covers the body's hash, which the client did not send: buffer the body
    /// and call [`PendingBody::finish`].
    NeedsBody(PendingBody),
}

impl Verification {
    /// The head as far as it is known: complete, or awaiting the body hash. Its access key
    /// id, region and service come from the (parsed, key-checked) credential scope.
    pub fn head(&self) -> &Verified {
        match self {
            Self::Verified(v) => v,
            Self::NeedsBody(p) => &p.verified,
        }
    }

    /// Finishes verification with the whole body at hand (buffered requests): checks the
    /// signature if it was pending, then the body against the signed hash or chunk
    /// signatures.
    pub fn with_body(self, body: &[u8]) -> Result<Verified, AuthError> {
        let verified = match self {
            Self::Verified(v) => v,
            Self::NeedsBody(p) => p.finish(body)?,
        };
        verified.check_body(body)?;
        Ok(verified)
    }
}

/// A request whose signature can only be checked once its body is known.
#[derive(Debug)]
pub struct PendingBody {
    verified: Verified,
    canonical_without_hash: Vec<u8>,
    amz_date: String,
    signature: [u8; 32],
}

impl PendingBody {
    /// The access key id the request names (already known to the lookup).
    pub fn access_key_id(&self) -> &str {
        &self.verified.access_key_id
    }

    /// Region and signing name of the credential scope (not yet authenticated).
    pub fn scope(&self) -> (&str, &str) {
        (&self.verified.region, &self.verified.service)
    }

    /// Checks the signature with the body's hash.
    pub fn finish(self, body: &[u8]) -> Result<Verified, AuthError> {
        let hash = sha256_hex(body);
        let mut creq = self.canonical_without_hash;
        creq.extend_from_slice(hash.as_bytes());
        check_signature(&self.verified, &self.amz_date, &creq, &self.signature)?;
        let mut verified = self.verified;
        verified.payload = PayloadMode::Hash(hash);
        Ok(verified)
    }
}

/// An authenticated request head.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The access key id (names the grant).
    pub access_key_id: String,
    /// Region of the credential scope.
    pub region: String,
    /// Signing name of the credential scope (`s3`, `sts`, `dynamodb`, ...).
    pub service: String,
    /// The request time (`X-Amz-Date` or `Date`).
    pub time: SystemTime,
    /// The request time as `YYYYMMDDTHHMMSSZ`.
    pub amz_date: String,
    /// How the body is protected.
    pub payload: PayloadMode,
    /// Whether the request was authenticated by presigned query parameters.
    pub presigned: bool,
    /// For presigned requests: when the URL stops being accepted (`X-Amz-Date + X-Amz-Expires`,
    /// capped by [`VerifyOptions::not_after`]).
    pub expires_at: Option<SystemTime>,
    /// The client's SignedHeaders, lower-case, in the client's order.
    pub signed_headers: Vec<String>,
    /// Authenticated by a SigV2 presigned query (`AWSAccessKeyId`, `Expires`,
    /// `Signature`), which the caller removes before classifying and forwarding
    /// ([`crate::sigv2::strip_params`]).
    pub sigv2: bool,
    /// The request (seed) signature, lower-case hex.
    pub signature: String,
    signing_key: SigningKey,
    chunk_limits: ChunkLimits,
}

impl Verified {
    /// A SigV2 presigned S3 GET or HEAD, verified by [`crate::sigv2`]: re-signed for
    /// upstream like a SigV4 request of the gateway's own (region
    /// [`crate::sigv2::SIGV2_REGION`], no body).
    pub(crate) fn new_sigv2(
        access_key_id: String,
        now: SystemTime,
        amz_date: String,
        expires_at: SystemTime,
        signature: String,
        signing_key: SigningKey,
        options: &VerifyOptions,
    ) -> Self {
        Verified {
            access_key_id,
            region: crate::sigv2::SIGV2_REGION.to_owned(),
            service: "s3".to_owned(),
            time: now,
            amz_date,
            payload: PayloadMode::Hash(EMPTY_SHA256.to_owned()),
            presigned: true,
            expires_at: Some(expires_at),
            signed_headers: Vec::new(),
            sigv2: true,
            signature,
            signing_key,
            chunk_limits: options.chunk_limits,
        }
    }

    /// The credential scope `date/region/service/aws4_request`.
    pub fn scope(&self) -> String {
        credential_scope(
            self.amz_date.get(..8).unwrap_or_default(),
            &self.region,
            &self.service,
        )
    }

    /// Whether the client signed header `name` (lower-case).
    pub fn header_is_signed(&self, name: &str) -> bool {
        self.signed_headers.iter().any(|h| h == name)
    }

    /// The context aws-chunked chunk signatures of this request are checked against.
    pub fn chunk_context(&self) -> ChunkSigningContext {
        ChunkSigningContext {
            key: self.signing_key.clone(),
            amz_date: self.amz_date.clone(),
            scope: self.scope(),
        }
    }

    /// An incremental checker for the body: hash mode holds back the latest bytes until the
    /// hash has been checked; aws-chunked modes release each chunk only once its signature
    /// has been checked.
    pub fn body_verifier(&self) -> BodyVerifier {
        BodyVerifier::new(self, self.chunk_limits)
    }

    /// Checks a whole buffered body against the payload mode.
    pub fn check_body(&self, body: &[u8]) -> Result<(), AuthError> {
        let mut v = self.body_verifier();
        v.push(bytes::Bytes::copy_from_slice(body))?;
        v.finish()?;
        Ok(())
    }
}

/// Checks the SigV4 authentication of a request head at time `now`.
///
/// `parts.uri` must be the path and query exactly as received. The access key id from the
/// request is looked up with `lookup`; the secret derives the signing key.
pub fn verify(
    parts: &Parts,
    lookup: &impl SecretLookup,
    now: SystemTime,
    options: &VerifyOptions,
) -> Result<Verification, AuthError> {
    if parts.headers.get(http::header::AUTHORIZATION).is_none()
        && let Some(query) = parts.uri.query()
        && crate::sigv2::is_presigned_v2(query)
        && query_param(query, "X-Amz-Algorithm")?.is_none()
    {
        return crate::sigv2::verify_presigned(parts, lookup, now, options)
            .map(Verification::Verified);
    }
    let auth = parse_auth(parts)?;
    let secret = lookup
        .secret(&auth.access_key_id)
        // Named in part: the agent chooses its length, and the message goes back in the
        // error it gets and into the gateway's log entry.
        .ok_or_else(|| AuthError::UnknownAccessKey(short(&auth.access_key_id).to_owned()))?;

    // Scope and time.
    let scope = || {
        format!(
            "{}/{}/{}/{}",
            auth.scope_date, auth.region, auth.service, auth.terminator
        )
    };
    if auth.terminator != "aws4_request" {
        return Err(AuthError::InvalidScope {
            scope: scope(),
            reason: "the scope must end in `aws4_request`",
        });
    }
    let time = parse_amz_date(&auth.amz_date).ok_or_else(|| {
        AuthError::IncompleteSignature(format!("invalid date `{}`", auth.amz_date))
    })?;
    if auth.amz_date.get(..8) != Some(auth.scope_date.as_str()) {
        return Err(AuthError::InvalidScope {
            scope: scope(),
            reason: "the scope date is not the request date",
        });
    }
    let skewed = || AuthError::RequestTimeTooSkewed {
        request_time: auth.amz_date.clone(),
        server_time: format_amz_date(now),
    };
    let too_late = time.checked_add(options.max_skew).is_some_and(|t| t < now);
    let too_early = now.checked_add(options.max_skew).is_some_and(|n| n < time);
    let mut expires_at = None;
    if let Some(expires) = auth.expires {
        if too_early {
            return Err(skewed());
        }
        let expires = Duration::from_secs(expires);
        if expires > options.max_presign_expires {
            return Err(AuthError::IncompleteSignature(format!(
                "X-Amz-Expires must be at most {} seconds",
                options.max_presign_expires.as_secs()
            )));
        }
        let mut at = time.checked_add(expires).unwrap_or(time);
        if let Some(na) = options.not_after {
            at = at.min(na);
        }
        if now > at {
            return Err(AuthError::PresignExpired {
                expired_at: format_amz_date(at),
            });
        }
        expires_at = Some(at);
    } else if too_late || too_early {
        return Err(skewed());
    }

    if parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes()
                .starts_with(b"application/vnd.amazon.eventstream")
        })
    {
        return Err(AuthError::NotImplemented(
            "event stream requests are not supported".to_owned(),
        ));
    }

    // Payload.
    let declared = parts
        .headers
        .get("x-amz-content-sha256")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| auth.query_content_sha256.clone());
    let payload_line;
    let payload = match declared.as_deref() {
        Some(v) => {
            payload_line = Some(v.to_owned());
            Some(payload_mode(v, parts)?)
        }
        None if auth.expires.is_some() && is_s3_family(&auth.service) => {
            payload_line = Some(payload::UNSIGNED.to_owned());
            Some(PayloadMode::Unsigned)
        }
        None if !has_body(parts) => {
            payload_line = Some(EMPTY_SHA256.to_owned());
            Some(PayloadMode::Hash(EMPTY_SHA256.to_owned()))
        }
        None => {
            payload_line = None;
            None
        }
    };

    // Canonical request (without the payload line).
    let rule = options
        .path_rule
        .unwrap_or_else(|| PathCanonicalization::for_service(&auth.service));
    let mut creq = canonical_without_payload(parts, &auth, rule)?;
    let signing_key =
        SigningKey::derive_cached(&secret, &auth.scope_date, &auth.region, &auth.service);
    let signed_headers = auth
        .signed_headers
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    let verified = Verified {
        access_key_id: auth.access_key_id.clone(),
        region: auth.region.clone(),
        service: auth.service.clone(),
        time,
        amz_date: auth.amz_date.clone(),
        payload: payload.unwrap_or(PayloadMode::Unsigned),
        presigned: auth.expires.is_some(),
        expires_at,
        signed_headers,
        sigv2: false,
        signature: hex32(&auth.signature),
        signing_key,
        chunk_limits: options.chunk_limits,
    };
    match payload_line {
        Some(line) => {
            creq.extend_from_slice(line.as_bytes());
            let first = check_signature(&verified, &auth.amz_date, &creq, &auth.signature);
            if first.is_err() && auth.query_has_plus {
                // `+` in a query is a space to form decoders (aws-sigv4, most servers) but a
                // literal plus to others (botocore sorts the raw text). Both readings come from
                // the same bytes, which are what we forward.
                let mut alt = canonical_request_head(parts, &auth, rule, false)?;
                alt.extend_from_slice(line.as_bytes());
                if check_signature(&verified, &auth.amz_date, &alt, &auth.signature).is_ok() {
                    return Ok(Verification::Verified(verified));
                }
            }
            first?;
            Ok(Verification::Verified(verified))
        }
        None => Ok(Verification::NeedsBody(PendingBody {
            verified,
            canonical_without_hash: creq,
            amz_date: auth.amz_date,
            signature: auth.signature,
        })),
    }
}

/// The canonical request the verifier computes for `parts` (for diagnostics and tests).
/// `body_hash` is used when the request does not declare its payload hash.
pub fn canonical_request(
    parts: &Parts,
    body_hash: &str,
    options: &VerifyOptions,
) -> Result<String, AuthError> {
    let auth = parse_auth(parts)?;
    let rule = options
        .path_rule
        .unwrap_or_else(|| PathCanonicalization::for_service(&auth.service));
    let mut creq = canonical_without_payload(parts, &auth, rule)?;
    let declared = parts
        .headers
        .get("x-amz-content-sha256")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or(auth.query_content_sha256);
    let line = match declared {
        Some(v) => v,
        None if auth.expires.is_some() && is_s3_family(&auth.service) => {
            payload::UNSIGNED.to_owned()
        }
        None => body_hash.to_owned(),
    };
    creq.extend_from_slice(line.as_bytes());
    Ok(String::from_utf8_lossy(&creq).into_owned())
}

// === internals ===

struct AuthParams {
    access_key_id: String,
    scope_date: String,
    region: String,
    service: String,
    terminator: String,
    signed_headers: String,
    signature: [u8; 32],
    amz_date: String,
    /// `X-Amz-Expires` for presigned requests.
    expires: Option<u64>,
    query_content_sha256: Option<String>,
    query_has_plus: bool,
}

fn parse_auth(parts: &Parts) -> Result<AuthParams, AuthError> {
    let query = parts.uri.query().unwrap_or_default();
    let header = parts.headers.get(http::header::AUTHORIZATION);
    let presign_alg = query_param(query, "X-Amz-Algorithm")?;
    let query_has_plus = query.contains('+');
    match (header, presign_alg) {
        (Some(_), Some(_)) => Err(AuthError::IncompleteSignature(
            "both an Authorization header and presigned query parameters".to_owned(),
        )),
        (None, None) => {
            if query_param(query, "AWSAccessKeyId")?.is_some() {
                return Err(AuthError::NotImplemented(
                    "signature version 2 is not supported: sign with SigV4 (boto3 presigned URLs: `Config(signature_version=\"s3v4\")`; aws cli: `aws configure set default.s3.signature_version s3v4`)".to_owned(),
                ));
            }
            if query_param(query, "X-Amz-Credential")?.is_some() {
                return Err(AuthError::IncompleteSignature(
                    "presigned query without X-Amz-Algorithm".to_owned(),
                ));
            }
            Err(AuthError::MissingAuthentication)
        }
        (Some(h), None) => {
            let h = h.to_str().map_err(|_| {
                AuthError::IncompleteSignature("Authorization is not ascii".to_owned())
            })?;
            parse_header_auth(h, parts, query_has_plus)
        }
        (None, Some(alg)) => parse_query_auth(&alg, query, query_has_plus),
    }
}

fn check_algorithm(alg: &str) -> Result<(), AuthError> {
    match alg {
        "AWS4-HMAC-SHA256" => Ok(()),
        "AWS4-ECDSA-P256-SHA256" => Err(AuthError::NotImplemented(
            "sigv4a (AWS4-ECDSA-P256-SHA256) is not supported".to_owned(),
        )),
        "AWS" => Err(AuthError::NotImplemented(
            "signature version 2 is not supported: sign with SigV4 (boto3 presigned URLs: `Config(signature_version=\"s3v4\")`; aws cli: `aws configure set default.s3.signature_version s3v4`)".to_owned(),
        )),
        other => Err(AuthError::IncompleteSignature(format!(
            "unsupported algorithm `{}`",
            other.get(..40).unwrap_or(other)
        ))),
    }
}

fn parse_header_auth(
    h: &str,
    parts: &Parts,
    query_has_plus: bool,
) -> Result<AuthParams, AuthError> {
    let h = h.trim();
    let (alg, rest) = h.split_once(' ').unwrap_or((h, ""));
    check_algorithm(alg)?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for item in rest.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (k, v) = item.split_once('=').ok_or_else(|| {
            AuthError::IncompleteSignature(format!(
                "authorization component without `=`: `{}`",
                short(item)
            ))
        })?;
        let slot = match k.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(v.trim().to_owned()).is_some() {
            return Err(AuthError::IncompleteSignature(format!(
                "duplicate `{}`",
                k.trim()
            )));
        }
    }
    let missing =
        |what: &str| AuthError::IncompleteSignature(format!("authorization header lacks {what}"));
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    let amz_date = match parts.headers.get("x-amz-date") {
        Some(v) => v
            .to_str()
            .map_err(|_| AuthError::IncompleteSignature("invalid X-Amz-Date".to_owned()))?
            .trim()
            .to_owned(),
        None => {
            let d = parts.headers.get(http::header::DATE).ok_or_else(|| {
                AuthError::IncompleteSignature("no X-Amz-Date or Date header".to_owned())
            })?;
            let t =
                d.to_str().ok().and_then(parse_http_date).ok_or_else(|| {
                    AuthError::IncompleteSignature("invalid Date header".to_owned())
                })?;
            format_amz_date(t)
        }
    };
    build_params(
        &credential,
        signed_headers,
        &signature,
        amz_date,
        None,
        None,
        query_has_plus,
    )
}

fn parse_query_auth(
    alg: &[u8],
    query: &str,
    query_has_plus: bool,
) -> Result<AuthParams, AuthError> {
    let text = |v: Vec<u8>, what: &str| {
        String::from_utf8(v)
            .map_err(|_| AuthError::IncompleteSignature(format!("{what} is not utf-8")))
    };
    check_algorithm(&text(alg.to_vec(), "X-Amz-Algorithm")?)?;
    let req = |name: &'static str| -> Result<String, AuthError> {
        let v = query_param(query, name)?.ok_or_else(|| {
            AuthError::IncompleteSignature(format!("presigned query lacks {name}"))
        })?;
        text(v, name)
    };
    let credential = req("X-Amz-Credential")?;
    let signed_headers = req("X-Amz-SignedHeaders")?;
    let signature = req("X-Amz-Signature")?;
    let amz_date = req("X-Amz-Date")?;
    let expires = req("X-Amz-Expires")?;
    if expires.is_empty() || expires.len() > 12 || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::IncompleteSignature(format!(
            "invalid X-Amz-Expires `{}`",
            short(&expires)
        )));
    }
    let expires: u64 = expires
        .parse()
        .map_err(|_| AuthError::IncompleteSignature("invalid X-Amz-Expires".to_owned()))?;
    let content = match query_param(query, "X-Amz-Content-Sha256")? {
        Some(v) => Some(text(v, "X-Amz-Content-Sha256")?),
        None => None,
    };
    build_params(
        &credential,
        signed_headers,
        &signature,
        amz_date,
        Some(expires),
        content,
        query_has_plus,
    )
}

fn build_params(
    credential: &str,
    signed_headers: String,
    signature: &str,
    amz_date: String,
    expires: Option<u64>,
    query_content_sha256: Option<String>,
    query_has_plus: bool,
) -> Result<AuthParams, AuthError> {
    let mut it = credential.split('/');
    let mut next = || it.next().map(str::to_owned);
    let (
        Some(access_key_id),
        Some(scope_date),
        Some(region),
        Some(service),
        Some(terminator),
        None,
    ) = (next(), next(), next(), next(), next(), next())
    else {
        return Err(AuthError::IncompleteSignature(format!(
            "malformed credential `{}`",
            short(credential)
        )));
    };
    if access_key_id.is_empty() || region.is_empty() || service.is_empty() {
        return Err(AuthError::IncompleteSignature(format!(
            "malformed credential `{}`",
            short(credential)
        )));
    }
    if signed_headers.is_empty()
        || !signed_headers
            .split(';')
            .all(|h| !h.is_empty() && h.bytes().all(is_token_byte))
    {
        return Err(AuthError::IncompleteSignature(format!(
            "malformed SignedHeaders `{}`",
            short(&signed_headers)
        )));
    }
    if !signed_headers
        .split(';')
        .any(|h| h.eq_ignore_ascii_case("host"))
    {
        return Err(AuthError::IncompleteSignature(
            "SignedHeaders must include host".to_owned(),
        ));
    }
    let mut sig = [0u8; 32];
    if signature.len() != 64 || hex::decode_to_slice(signature, &mut sig).is_err() {
        return Err(AuthError::IncompleteSignature(
            "signature is not 64 hex digits".to_owned(),
        ));
    }
    Ok(AuthParams {
        access_key_id,
        scope_date,
        region,
        service,
        terminator,
        signed_headers,
        signature: sig,
        amz_date,
        expires,
        query_content_sha256,
        query_has_plus,
    })
}

/// The single value of query parameter `name` (decoded), or an error if it repeats.
fn query_param(query: &str, name: &str) -> Result<Option<Vec<u8>>, AuthError> {
    let mut found = None;
    for piece in query.split('&') {
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let matches = if k.contains(['%', '+']) {
            decode(k, true) == name.as_bytes()
        } else {
            k == name
        };
        if matches {
            if found.is_some() {
                return Err(AuthError::IncompleteSignature(format!(
                    "duplicate query parameter {name}"
                )));
            }
            found = Some(decode(v, true));
        }
    }
    Ok(found)
}

fn payload_mode(v: &str, parts: &Parts) -> Result<PayloadMode, AuthError> {
    let decoded_len = || -> Result<Option<u64>, AuthError> {
        match parts.headers.get("x-amz-decoded-content-length") {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .map(Some)
                .ok_or_else(|| {
                    AuthError::IncompleteSignature(
                        "invalid x-amz-decoded-content-length".to_owned(),
                    )
                }),
        }
    };
    Ok(match v {
        payload::UNSIGNED => PayloadMode::Unsigned,
        payload::STREAMING_UNSIGNED_TRAILER => PayloadMode::StreamingUnsignedTrailer,
        payload::STREAMING_SIGNED => PayloadMode::StreamingSigned {
            trailer: false,
            decoded_len: decoded_len()?,
        },
        payload::STREAMING_SIGNED_TRAILER => PayloadMode::StreamingSigned {
            trailer: true,
            decoded_len: decoded_len()?,
        },
        v if v.starts_with("STREAMING-AWS4-ECDSA-P256-SHA256") => {
            return Err(AuthError::NotImplemented(
                "sigv4a streaming payloads are not supported".to_owned(),
            ));
        }
        "STREAMING-AWS4-HMAC-SHA256-EVENTS" => {
            return Err(AuthError::NotImplemented(
                "event stream payloads are not supported".to_owned(),
            ));
        }
        v if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            PayloadMode::Hash(v.to_ascii_lowercase())
        }
        other => {
            return Err(AuthError::IncompleteSignature(format!(
                "invalid x-amz-content-sha256 `{}`",
                short(other)
            )));
        }
    })
}

fn has_body(parts: &Parts) -> bool {
    if parts.headers.contains_key(http::header::TRANSFER_ENCODING) {
        return true;
    }
    match parts.headers.get(http::header::CONTENT_LENGTH) {
        None => false,
        Some(v) => v.as_bytes() != b"0",
    }
}

fn canonical_without_payload(
    parts: &Parts,
    auth: &AuthParams,
    rule: PathCanonicalization,
) -> Result<Vec<u8>, AuthError> {
    canonical_request_head(parts, auth, rule, true)
}

/// Method, path, query, headers and SignedHeaders lines, each followed by `\n`.
fn canonical_request_head(
    parts: &Parts,
    auth: &AuthParams,
    rule: PathCanonicalization,
    plus_as_space: bool,
) -> Result<Vec<u8>, AuthError> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_path(parts.uri.path(), rule).as_bytes());
    out.push(b'\n');
    let skip = auth.expires.map(|_| "X-Amz-Signature");
    out.extend_from_slice(
        canonical_query(parts.uri.query().unwrap_or_default(), plus_as_space, skip).as_bytes(),
    );
    out.push(b'\n');
    let authority = parts.uri.authority().map(|a| a.as_str());
    for name in auth.signed_headers.split(';') {
        // SDKs send the names lower-case already: copy only when they are not.
        let lower = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(name.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(name)
        };
        out.extend_from_slice(lower.as_bytes());
        out.push(b':');
        push_header_value(&mut out, &parts.headers, &lower, authority);
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(auth.signed_headers.as_bytes());
    out.push(b'\n');
    Ok(out)
}

fn check_signature(
    verified: &Verified,
    amz_date: &str,
    creq: &[u8],
    given: &[u8; 32],
) -> Result<(), AuthError> {
    let sts = request_string_to_sign(amz_date, &verified.scope(), creq);
    let expected = verified.signing_key.sign(&sts);
    if bool::from(expected.ct_eq(given)) {
        Ok(())
    } else {
        Err(AuthError::SignatureDoesNotMatch {
            access_key_id: verified.access_key_id.clone(),
        })
    }
}

/// RFC 9110 `tchar`: the bytes a header name may contain.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn short(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}
