//! Errors of inbound verification ([`AuthError`]) and outbound re-signing ([`ResignError`]).

/// Why an inbound request failed authentication. Every variant maps to the AWS error code
/// and HTTP status an AWS service would answer with ([`AuthError::aws_code`],
/// [`AuthError::http_status`]); the message is lowercase, one line, user input in backticks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carries no SigV4 authentication at all.
    #[error("request is not signed: no `Authorization` header and no presigned query")]
    MissingAuthentication,
    /// The `Authorization` header or presigned query is malformed or incomplete.
    #[error("malformed authorization: {0}")]
    IncompleteSignature(String),
    /// The access key id names no grant.
    #[error("unknown access key id `{0}`")]
    UnknownAccessKey(String),
    /// The signature does not match the request.
    #[error("signature does not match for access key id `{access_key_id}`")]
    SignatureDoesNotMatch {
        /// The access key id the request named.
        access_key_id: String,
    },
    /// The request time is more than the allowed skew away from the gateway's clock.
    #[error("request time `{request_time}` is too far from server time `{server_time}`")]
    RequestTimeTooSkewed {
        /// `X-Amz-Date` as sent.
        request_time: String,
        /// The gateway's time, same format.
        server_time: String,
    },
    /// A presigned URL has expired (or outlives the grant).
    #[error("presigned request expired at `{expired_at}`")]
    PresignExpired {
        /// When it expired, `YYYYMMDDTHHMMSSZ`.
        expired_at: String,
    },
    /// The credential scope does not match the request (date, terminator).
    #[error("credential scope `{scope}` does not match the request: {reason}")]
    InvalidScope {
        /// The scope as sent.
        scope: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The body does not hash to the `x-amz-content-sha256` the client signed.
    #[error("body sha-256 `{computed}` does not match the signed `{signed}`")]
    ContentSha256Mismatch {
        /// The signed hash.
        signed: String,
        /// The hash of the bytes received.
        computed: String,
    },
    /// An aws-chunked chunk or trailer signature does not match.
    #[error("chunk {index} signature does not match")]
    ChunkSignatureDoesNotMatch {
        /// Zero-based index of the chunk (the trailer counts as the chunk after the last).
        index: u64,
    },
    /// The aws-chunked framing is malformed or exceeds the limits.
    #[error("malformed aws-chunked body: {0}")]
    MalformedChunk(String),
    /// The body ended early or carried more than announced.
    #[error("incomplete body: {0}")]
    IncompleteBody(String),
    /// A signing scheme or payload mode the gateway does not support (SigV4a, event streams).
    #[error("not implemented: {0}")]
    NotImplemented(String),
}

impl AuthError {
    /// The AWS error code an AWS service answers this error with.
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::MissingAuthentication => "MissingAuthenticationToken",
            Self::IncompleteSignature(_) | Self::InvalidScope { .. } => "IncompleteSignature",
            Self::UnknownAccessKey(_) => "InvalidAccessKeyId",
            Self::SignatureDoesNotMatch { .. } | Self::ChunkSignatureDoesNotMatch { .. } => {
                "SignatureDoesNotMatch"
            }
            Self::RequestTimeTooSkewed { .. } => "RequestTimeTooSkewed",
            Self::PresignExpired { .. } => "AccessDenied",
            Self::ContentSha256Mismatch { .. } => "XAmzContentSHA256Mismatch",
            Self::MalformedChunk(_) | Self::IncompleteBody(_) => "IncompleteBody",
            Self::NotImplemented(_) => "NotImplemented",
        }
    }

    /// The code query-protocol and JSON services (STS, IAM, SQS, ...) use instead of the S3
    /// one, where they differ: `InvalidClientTokenId` for an unknown key, `ExpiredToken`
    /// for an expired presigned request.
    pub fn aws_code_non_s3(&self) -> &'static str {
        match self {
            Self::UnknownAccessKey(_) => "InvalidClientTokenId",
            Self::PresignExpired { .. } => "ExpiredToken",
            other => other.aws_code(),
        }
    }

    /// The HTTP status AWS answers this error with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::MissingAuthentication
            | Self::UnknownAccessKey(_)
            | Self::SignatureDoesNotMatch { .. }
            | Self::ChunkSignatureDoesNotMatch { .. }
            | Self::RequestTimeTooSkewed { .. }
            | Self::PresignExpired { .. } => 403,
            Self::IncompleteSignature(_)
            | Self::InvalidScope { .. }
            | Self::ContentSha256Mismatch { .. }
            | Self::MalformedChunk(_)
            | Self::IncompleteBody(_) => 400,
            Self::NotImplemented(_) => 501,
        }
    }
}

/// Why a verified request could not be re-signed for upstream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResignError {
    /// The upstream target is unusable (bad host, scheme).
    #[error("invalid upstream target: {0}")]
    InvalidTarget(String),
    /// The request cannot be expressed for signing (non-UTF-8 header, bad URI).
    #[error("request cannot be re-signed: {0}")]
    InvalidRequest(String),
    /// `aws-sigv4` refused to sign.
    #[error("signing failed: {0}")]
    Signing(String),
}
