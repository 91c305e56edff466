//! Re-signing aws-chunked bodies chunk by chunk, and the body forwarder that verifies a
//! body as it streams and re-frames it for the upstream.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::SigningSettings;
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::{Bytes, BytesMut};

use super::UpstreamTarget;
use crate::body::{BodyPart, BodyVerifier};
use crate::chunked::{ChunkEvent, DecodedChunk, Trailers};
use crate::error::{AuthError, ResignError};
use crate::verify::Verified;

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
    /// Chains from `seed`, the re-signed head's signature.
    pub(super) fn new(
        creds: &Credentials,
        target: &UpstreamTarget,
        time: SystemTime,
        seed: String,
        trailer: bool,
    ) -> Self {
        Self {
            identity: creds.clone().into(),
            region: target.region.clone(),
            service: target.service.clone(),
            time,
            running: seed,
            trailer,
        }
    }

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
    /// Pairs the body verifier of `verified` with the chunk re-signer from
    /// [`resign`](super::resign).
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
