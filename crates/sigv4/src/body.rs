//! Incremental body checking ([`BodyVerifier`]): the proxy feeds the body as it streams and
//! forwards only what the verifier releases.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::chunked::{ChunkDecoder, ChunkEvent, ChunkLimits};
use crate::error::AuthError;
use crate::verify::{PayloadMode, Verified};

/// Whether a request's headers say it has no body: no `Transfer-Encoding`, and no
/// `Content-Length` or `Content-Length: 0`.
pub fn declares_no_body(headers: &http::HeaderMap) -> bool {
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        return false;
    }
    match headers.get(http::header::CONTENT_LENGTH) {
        Some(v) => v.as_bytes() == b"0",
        None => true,
    }
}

/// What the verifier releases, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPart {
    /// Body bytes to forward unchanged (hash and unsigned modes).
    Raw(Bytes),
    /// An aws-chunked event whose signature has been checked (signed streaming modes).
    Chunked(ChunkEvent),
}

/// Checks a body against the payload mode of a [`Verified`] request.
///
/// - `Hash`: hashes as it goes and holds back the most recent slice; [`BodyVerifier::finish`]
///   releases it only if the hash matches, so a forged body never reaches upstream whole.
/// - `StreamingSigned`: decodes aws-chunked and releases each chunk once its signature checks.
/// - `Unsigned`, `StreamingUnsignedTrailer`: releases bytes unchanged.
#[derive(Debug)]
pub struct BodyVerifier {
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    PassThrough,
    Hash {
        hasher: Sha256,
        expected: [u8; 32],
        expected_hex: String,
        held: Option<Bytes>,
    },
    Chunked(Box<ChunkDecoder>),
    Failed,
}

impl BodyVerifier {
    pub(crate) fn new(verified: &Verified, limits: ChunkLimits) -> Self {
        let mode = match &verified.payload {
            PayloadMode::Hash(h) => {
                let mut expected = [0u8; 32];
                if hex::decode_to_slice(h, &mut expected).is_err() {
                    Mode::Failed
                } else {
                    Mode::Hash {
                        hasher: Sha256::new(),
                        expected,
                        expected_hex: h.clone(),
                        held: None,
                    }
                }
            }
            PayloadMode::Unsigned | PayloadMode::StreamingUnsignedTrailer => Mode::PassThrough,
            PayloadMode::StreamingSigned {
                trailer,
                decoded_len,
            } => Mode::Chunked(Box::new(ChunkDecoder::signed(
                verified.chunk_context(),
                &verified.signature,
                *trailer,
                *decoded_len,
                limits,
            ))),
        };
        Self { mode }
    }

    /// Feeds the next body bytes; returns what may be forwarded now.
    pub fn push(&mut self, data: Bytes) -> Result<Vec<BodyPart>, AuthError> {
        match &mut self.mode {
            Mode::PassThrough => Ok(if data.is_empty() {
                Vec::new()
            } else {
                vec![BodyPart::Raw(data)]
            }),
            Mode::Hash { hasher, held, .. } => {
                if data.is_empty() {
                    return Ok(Vec::new());
                }
                hasher.update(&data);
                Ok(held.replace(data).map(BodyPart::Raw).into_iter().collect())
            }
            Mode::Chunked(d) => match d.push(&data) {
                Ok(events) => Ok(events.into_iter().map(BodyPart::Chunked).collect()),
                Err(e) => {
                    self.mode = Mode::Failed;
                    Err(e)
                }
            },
            Mode::Failed => Err(AuthError::IncompleteBody(
                "body verification already failed".to_owned(),
            )),
        }
    }

    /// Declares the end of the body; returns the last bytes to forward if everything checks.
    pub fn finish(&mut self) -> Result<Vec<BodyPart>, AuthError> {
        match std::mem::replace(&mut self.mode, Mode::Failed) {
            Mode::PassThrough => {
                self.mode = Mode::PassThrough;
                Ok(Vec::new())
            }
            Mode::Hash {
                hasher,
                expected,
                expected_hex,
                held,
            } => {
                let got: [u8; 32] = hasher.finalize().into();
                if bool::from(got.ct_eq(&expected)) {
                    Ok(held.map(BodyPart::Raw).into_iter().collect())
                } else {
                    Err(AuthError::ContentSha256Mismatch {
                        signed: expected_hex,
                        computed: hex::encode(got),
                    })
                }
            }
            Mode::Chunked(mut d) => {
                d.finish()?;
                self.mode = Mode::Chunked(d);
                Ok(Vec::new())
            }
            Mode::Failed => Err(AuthError::IncompleteBody(
                "body verification already failed".to_owned(),
            )),
        }
    }
}
