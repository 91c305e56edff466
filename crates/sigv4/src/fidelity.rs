//! What reaches the upstream is what was verified and classified: the transport-level
//! half of "one reading, or refused" (the classifier holds the protocol-level half).
//!
//! The gateway rebuilds the upstream request from the agent's: it drops the hop-by-hop
//! headers, replaces the authentication and re-frames the body. Each rule here makes sure
//! that rebuilding cannot change what the request means:
//!
//! - `Connection` may name only hop-by-hop headers (and the `close` / `keep-alive`
//!   options). A header it names is dropped on the way; naming `X-Amz-Target` would
//!   let the classifier read one operation and the upstream another.
//! - No header appears twice: two parsers may keep the first, the last, or both.
//! - A signed header is never dropped: the client must not sign a hop-by-hop header.
//! - Every `x-amz-*` header is signed (AWS requires it of S3, and an unsigned one is one
//!   the gateway would have to drop or launder).
//! - aws-chunked payload modes (`STREAMING-*`) only on the S3 family, which decodes
//!   them; another service would read the chunk framing (and what its extensions carry)
//!   as the body.

use http::HeaderMap;
use http::request::Parts;

use crate::canonical::is_s3_family;
use crate::verify::{PayloadMode, Verified};

/// Why a request cannot be forwarded faithfully. Every variant means: refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FidelityError {
    /// `Connection` names something other than a hop-by-hop header or option.
    #[error(
        "`Connection` names `{token}`, which is not a hop-by-hop header: it would be dropped after it was read"
    )]
    ConnectionToken {
        /// The token as sent (lower case).
        token: String,
    },
    /// A header appears more than once.
    #[error("header `{name}` appears more than once: parsers may read either")]
    DuplicateHeader {
        /// Header name.
        name: String,
    },
    /// The client signed a header that is not forwarded (hop-by-hop).
    #[error("header `{name}` is signed but hop-by-hop: it cannot be forwarded as signed")]
    SignedHopByHop {
        /// Header name.
        name: String,
    },
    /// An `x-amz-*` header the client did not sign.
    #[error("header `{name}` is not signed: every `x-amz-*` header must be")]
    UnsignedAmzHeader {
        /// Header name.
        name: String,
    },
    /// An aws-chunked payload mode for a service that does not decode it.
    #[error("payload mode `{mode}` is only accepted for s3, not for `{service}`")]
    StreamingPayload {
        /// The `x-amz-content-sha256` value.
        mode: &'static str,
        /// The signing name.
        service: String,
    },
}

/// Headers that live for one hop, dropped when the request is rebuilt upstream.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `Connection` options that are not header names.
const CONNECTION_OPTIONS: [&str; 2] = ["close", "keep-alive"];

/// Checks the request head against the rules in the module docs. `verified` is the head
/// as far as verification got (its signed headers, service and payload mode are known
/// even while the signature waits for the body).
pub fn check_head(parts: &Parts, verified: &Verified) -> Result<(), FidelityError> {
    check_connection(&parts.headers)?;
    check_duplicates(&parts.headers)?;
    for name in &verified.signed_headers {
        if HOP_BY_HOP.contains(&name.as_str()) {
            return Err(FidelityError::SignedHopByHop { name: name.clone() });
        }
    }
    for name in parts.headers.keys() {
        let n = name.as_str();
        if n.starts_with("x-amz-") && !verified.header_is_signed(n) && !presign_exempt(verified, n)
        {
            return Err(FidelityError::UnsignedAmzHeader { name: n.to_owned() });
        }
    }
    let streaming = match verified.payload {
        PayloadMode::StreamingSigned { trailer: false, .. } => {
            Some(crate::verify::payload::STREAMING_SIGNED)
        }
        PayloadMode::StreamingSigned { trailer: true, .. } => {
            Some(crate::verify::payload::STREAMING_SIGNED_TRAILER)
        }
        PayloadMode::StreamingUnsignedTrailer => {
            Some(crate::verify::payload::STREAMING_UNSIGNED_TRAILER)
        }
        PayloadMode::Hash(_) | PayloadMode::Unsigned => None,
    };
    if let Some(mode) = streaming
        && !is_s3_family(&verified.service)
    {
        return Err(FidelityError::StreamingPayload {
            mode,
            service: verified.service.clone(),
        });
    }
    Ok(())
}

/// A presigned URL signs the payload hash in its query; a client may still send it as a
/// header, which the gateway replaces when it re-signs.
fn presign_exempt(verified: &Verified, name: &str) -> bool {
    verified.presigned && name == "x-amz-content-sha256"
}

fn check_connection(headers: &HeaderMap) -> Result<(), FidelityError> {
    for value in headers.get_all(http::header::CONNECTION) {
        let Ok(text) = value.to_str() else {
            return Err(FidelityError::ConnectionToken {
                token: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            });
        };
        for token in text.split(',').map(|t| t.trim().to_ascii_lowercase()) {
            if token.is_empty()
                || CONNECTION_OPTIONS.contains(&token.as_str())
                || HOP_BY_HOP.contains(&token.as_str())
            {
                continue;
            }
            return Err(FidelityError::ConnectionToken { token });
        }
    }
    Ok(())
}

fn check_duplicates(headers: &HeaderMap) -> Result<(), FidelityError> {
    for name in headers.keys() {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(FidelityError::DuplicateHeader {
                name: name.as_str().to_owned(),
            });
        }
    }
    Ok(())
}
