//! Incremental, push-based aws-chunked decoder that checks every chunk signature before it
//! releases the chunk.
//!
//! Feed it arbitrary byte slices ([`ChunkDecoder::push`]); it returns the chunks completed
//! (and verified) so far. It never buffers more than one chunk plus one framing line, rejects
//! chunk sizes above [`ChunkLimits::max_chunk_size`], never panics, and once it has failed it
//! keeps failing.

use bytes::Bytes;
use subtle::ConstantTimeEq;

use crate::error::AuthError;
use crate::key::{EMPTY_SHA256, SigningKey, hex32, sha256, sha256_hex};

/// Limits on aws-chunked framing.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    /// Largest chunk accepted (SDKs use 64 KiB to 8 MiB). Default 16 MiB.
    pub max_chunk_size: u64,
    /// Longest chunk-size or trailer line. Default 4 KiB.
    pub max_line: usize,
    /// Total bytes of trailer lines. Default 16 KiB.
    pub max_trailer_bytes: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self {
            max_chunk_size: 16 * 1024 * 1024,
            max_line: 4096,
            max_trailer_bytes: 16 * 1024,
        }
    }
}

/// What a chunk signature is checked against: the request's signing key, `X-Amz-Date` and
/// credential scope.
#[derive(Debug, Clone)]
pub struct ChunkSigningContext {
    /// The signing key of the request.
    pub key: SigningKey,
    /// The request's `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`).
    pub amz_date: String,
    /// The credential scope `date/region/service/aws4_request`.
    pub scope: String,
}

impl ChunkSigningContext {
    /// The signature of one chunk given the previous signature.
    pub fn chunk_signature(&self, previous: &str, data: &[u8]) -> [u8; 32] {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            previous,
            EMPTY_SHA256,
            sha256_hex(data)
        );
        self.key.sign(sts.as_bytes())
    }

    /// The signature of the trailer section given the last chunk's signature.
    pub fn trailer_signature(&self, previous: &str, trailers: &Trailers) -> [u8; 32] {
        let sts = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            previous,
            hex32(&sha256(&trailers.canonical()))
        );
        self.key.sign(sts.as_bytes())
    }
}

/// One decoded (and, for signed streams, verified) chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedChunk {
    /// The chunk data (empty for the final chunk).
    pub data: Bytes,
    /// The chunk-size field exactly as sent (hex).
    pub size_field: String,
    /// The chunk extensions exactly as sent, without the leading `;`; the
    /// `chunk-signature=...` one is included as sent.
    pub extensions: Vec<String>,
    /// Index of the `chunk-signature` extension in `extensions`, if any.
    pub signature_index: Option<usize>,
}

impl DecodedChunk {
    /// Whether this is the final, zero-length chunk.
    pub fn is_final(&self) -> bool {
        self.data.is_empty()
    }
}

/// The trailer section after the final chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trailers {
    /// Trailer lines exactly as sent (`name:value`, no CRLF), without the signature line.
    pub lines: Vec<String>,
    /// The `x-amz-trailer-signature` line up to the signature value (`x-amz-trailer-signature:`),
    /// if present.
    pub signature_prefix: Option<String>,
}

impl Trailers {
    /// Canonical form the trailer signature covers: lower-case names sorted, values trimmed,
    /// `name:value\n` each.
    pub fn canonical(&self) -> Vec<u8> {
        let mut pairs: Vec<(String, &str)> = self
            .lines
            .iter()
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or((l.as_str(), ""));
                (n.trim().to_ascii_lowercase(), v.trim())
            })
            .collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        for (n, v) in pairs {
            out.extend_from_slice(n.as_bytes());
            out.push(b':');
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// Trailer name/value pairs (names lower-cased, values trimmed).
    pub fn pairs(&self) -> impl Iterator<Item = (String, &str)> {
        self.lines.iter().map(|l| {
            let (n, v) = l.split_once(':').unwrap_or((l.as_str(), ""));
            (n.trim().to_ascii_lowercase(), v.trim())
        })
    }
}

/// One event of the decoded stream, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkEvent {
    /// A whole, verified chunk (the final zero-length chunk too).
    Chunk(DecodedChunk),
    /// The verified trailer section (trailer modes only).
    Trailers(Trailers),
    /// The stream is complete and well-formed.
    End,
}

/// The push-based aws-chunked decoder.
#[derive(Debug)]
pub struct ChunkDecoder {
    signing: Option<(ChunkSigningContext, String)>,
    trailer: bool,
    decoded_len: Option<u64>,
    limits: ChunkLimits,
    state: State,
    line: Vec<u8>,
    data: Vec<u8>,
    decoded: u64,
    index: u64,
    pending: Option<DecodedChunk>,
    pending_sig: Option<[u8; 32]>,
    trailers: Trailers,
    trailer_sig: Option<[u8; 32]>,
    trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SizeLine,
    Data { remaining: u64 },
    DataCr,
    DataLf,
    TrailerLine,
    Done,
    Failed,
}

impl ChunkDecoder {
    /// A decoder for `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: every chunk signature is
    /// chained from `seed_signature` and checked with `ctx`.
    pub fn signed(
        ctx: ChunkSigningContext,
        seed_signature: &str,
        trailer: bool,
        decoded_len: Option<u64>,
        limits: ChunkLimits,
    ) -> Self {
        Self::new(
            Some((ctx, seed_signature.to_owned())),
            trailer,
            decoded_len,
            limits,
        )
    }

    /// A decoder for unsigned aws-chunked framing (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`).
    pub fn unsigned(trailer: bool, decoded_len: Option<u64>, limits: ChunkLimits) -> Self {
        Self::new(None, trailer, decoded_len, limits)
    }

    fn new(
        signing: Option<(ChunkSigningContext, String)>,
        trailer: bool,
        decoded_len: Option<u64>,
        limits: ChunkLimits,
    ) -> Self {
        Self {
            signing,
            trailer,
            decoded_len,
            limits,
            state: State::SizeLine,
            line: Vec::new(),
            data: Vec::new(),
            decoded: 0,
            index: 0,
            pending: None,
            pending_sig: None,
            trailers: Trailers::default(),
            trailer_sig: None,
            trailer_bytes: 0,
        }
    }

    /// Whether the stream has ended well-formed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, mut input: &[u8]) -> Result<Vec<ChunkEvent>, AuthError> {
        let mut events = Vec::new();
        if self.state == State::Failed {
            return Err(AuthError::MalformedChunk(
                "decoder already failed".to_owned(),
            ));
        }
        while !input.is_empty() {
            let step = self.step(input, &mut events);
            match step {
                Ok(used) => input = input.get(used..).unwrap_or_default(),
                Err(e) => {
                    self.state = State::Failed;
                    return Err(e);
                }
            }
        }
        Ok(events)
    }

    /// Declares the end of input; fails unless the stream ended well-formed.
    pub fn finish(&mut self) -> Result<(), AuthError> {
        if self.state == State::Done {
            Ok(())
        } else {
            self.state = State::Failed;
            Err(AuthError::IncompleteBody(
                "aws-chunked body ended before its final chunk".to_owned(),
            ))
        }
    }

    fn step(&mut self, input: &[u8], events: &mut Vec<ChunkEvent>) -> Result<usize, AuthError> {
        match self.state {
            State::SizeLine | State::TrailerLine => {
                let (used, complete) = self.take_line(input)?;
                if complete {
                    let line = std::mem::take(&mut self.line);
                    if self.state == State::SizeLine {
                        self.size_line(&line, events)?;
                    } else {
                        self.trailer_line(&line, events)?;
                    }
                }
                Ok(used)
            }
            State::Data { remaining } => {
                let n = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                let part = input.get(..n).unwrap_or_default();
                self.data.extend_from_slice(part);
                let left = remaining.saturating_sub(n as u64);
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining: left }
                };
                Ok(n)
            }
            State::DataCr => {
                if input.first() != Some(&b'\r') {
                    return Err(malformed("chunk data not followed by CRLF"));
                }
                self.state = State::DataLf;
                Ok(1)
            }
            State::DataLf => {
                if input.first() != Some(&b'\n') {
                    return Err(malformed("chunk data not followed by CRLF"));
                }
                self.release_chunk(events)?;
                self.state = State::SizeLine;
                Ok(1)
            }
            State::Done => Err(malformed("data after the end of the aws-chunked body")),
            State::Failed => Err(malformed("decoder already failed")),
        }
    }

    /// Accumulates a CRLF-terminated line into `self.line` (without the CRLF).
    fn take_line(&mut self, input: &[u8]) -> Result<(usize, bool), AuthError> {
        let pos = input.iter().position(|&b| b == b'\n');
        let (part, used, complete) = match pos {
            Some(p) => (input.get(..p).unwrap_or_default(), p + 1, true),
            None => (input, input.len(), false),
        };
        if self.line.len() + part.len() > self.limits.max_line {
            return Err(malformed("framing line too long"));
        }
        self.line.extend_from_slice(part);
        if complete && self.line.pop() != Some(b'\r') {
            return Err(malformed("framing line not terminated by CRLF"));
        }
        Ok((used, complete))
    }

    fn size_line(&mut self, line: &[u8], events: &mut Vec<ChunkEvent>) -> Result<(), AuthError> {
        let line = std::str::from_utf8(line).map_err(|_| malformed("chunk header is not utf-8"))?;
        let mut parts = line.split(';');
        let size_field = parts.next().unwrap_or_default();
        if size_field.is_empty()
            || size_field.len() > 16
            || !size_field.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(AuthError::MalformedChunk(format!(
                "invalid chunk size `{}`",
                truncate(size_field)
            )));
        }
        let size =
            u64::from_str_radix(size_field, 16).map_err(|_| malformed("invalid chunk size"))?;
        if size > self.limits.max_chunk_size {
            return Err(AuthError::MalformedChunk(format!(
                "chunk size {size} exceeds the limit of {}",
                self.limits.max_chunk_size
            )));
        }
        let mut extensions = Vec::new();
        let mut signature_index = None;
        let mut signature = None;
        for ext in parts {
            let (name, value) = ext.split_once('=').unwrap_or((ext, ""));
            if name != "chunk-signature" {
                // No client sends other extensions; an upstream that does not decode
                // aws-chunked would read whatever they carry.
                return Err(AuthError::MalformedChunk(format!(
                    "chunk extension `{}` is not accepted (only `chunk-signature`)",
                    truncate(name)
                )));
            }
            if signature_index.is_some() {
                return Err(malformed("duplicate chunk-signature"));
            }
            signature_index = Some(extensions.len());
            signature = Some(parse_sig(value.trim())?);
            extensions.push(ext.to_owned());
        }
        if self.signing.is_some() && signature.is_none() {
            return Err(malformed("chunk without chunk-signature"));
        }
        if let Some(expected) = self.decoded_len
            && self.decoded.saturating_add(size) > expected
        {
            return Err(AuthError::IncompleteBody(format!(
                "aws-chunked body is longer than x-amz-decoded-content-length {expected}"
            )));
        }
        self.pending = Some(DecodedChunk {
            data: Bytes::new(),
            size_field: size_field.to_owned(),
            extensions,
            signature_index,
        });
        self.pending_sig = signature;
        if size == 0 {
            if let Some(expected) = self.decoded_len
                && self.decoded != expected
            {
                return Err(AuthError::IncompleteBody(format!(
                    "aws-chunked body carried {} bytes, x-amz-decoded-content-length says {expected}",
                    self.decoded
                )));
            }
            self.release_chunk(events)?;
            self.state = State::TrailerLine;
        } else {
            self.data = Vec::with_capacity(usize::try_from(size.min(64 * 1024)).unwrap_or(0));
            self.state = State::Data { remaining: size };
        }
        Ok(())
    }

    fn release_chunk(&mut self, events: &mut Vec<ChunkEvent>) -> Result<(), AuthError> {
        let data = std::mem::take(&mut self.data);
        if let Some((ctx, previous)) = &mut self.signing {
            let expected = ctx.chunk_signature(previous, &data);
            let given = self.pending_sig.take().unwrap_or([0; 32]);
            if !bool::from(expected.ct_eq(&given)) {
                return Err(AuthError::ChunkSignatureDoesNotMatch { index: self.index });
            }
            *previous = hex32(&given);
        }
        self.index += 1;
        self.decoded = self.decoded.saturating_add(data.len() as u64);
        let mut chunk = self.pending.take().unwrap_or(DecodedChunk {
            data: Bytes::new(),
            size_field: String::new(),
            extensions: Vec::new(),
            signature_index: None,
        });
        chunk.data = Bytes::from(data);
        events.push(ChunkEvent::Chunk(chunk));
        Ok(())
    }

    fn trailer_line(&mut self, line: &[u8], events: &mut Vec<ChunkEvent>) -> Result<(), AuthError> {
        if line.is_empty() {
            return self.end_trailers(events);
        }
        if !self.trailer {
            return Err(malformed(
                "trailer after the final chunk of a stream without trailers",
            ));
        }
        if self.trailer_sig.is_some() || self.trailers.signature_prefix.is_some() {
            return Err(malformed("trailer after x-amz-trailer-signature"));
        }
        self.trailer_bytes += line.len();
        if self.trailer_bytes > self.limits.max_trailer_bytes {
            return Err(malformed("trailers too large"));
        }
        let line = std::str::from_utf8(line).map_err(|_| malformed("trailer is not utf-8"))?;
        let Some((name, value)) = line.split_once(':') else {
            return Err(malformed("trailer line without `:`"));
        };
        if name.trim().eq_ignore_ascii_case("x-amz-trailer-signature") {
            let v = value.trim_start();
            let prefix_len = line.len() - v.len();
            self.trailers.signature_prefix =
                Some(line.get(..prefix_len).unwrap_or_default().to_owned());
            self.trailer_sig = Some(parse_sig(v.trim_end())?);
        } else {
            self.trailers.lines.push(line.to_owned());
        }
        Ok(())
    }

    fn end_trailers(&mut self, events: &mut Vec<ChunkEvent>) -> Result<(), AuthError> {
        if self.trailer {
            if let Some((ctx, previous)) = &self.signing {
                let Some(given) = self.trailer_sig else {
                    return Err(malformed("missing x-amz-trailer-signature"));
                };
                let expected = ctx.trailer_signature(previous, &self.trailers);
                if !bool::from(expected.ct_eq(&given)) {
                    return Err(AuthError::ChunkSignatureDoesNotMatch { index: self.index });
                }
            }
            events.push(ChunkEvent::Trailers(std::mem::take(&mut self.trailers)));
        }
        events.push(ChunkEvent::End);
        self.state = State::Done;
        Ok(())
    }
}

fn parse_sig(v: &str) -> Result<[u8; 32], AuthError> {
    let mut out = [0u8; 32];
    if v.len() != 64 || hex::decode_to_slice(v, &mut out).is_err() {
        return Err(malformed("signature is not 64 hex digits"));
    }
    Ok(out)
}

fn malformed(what: &str) -> AuthError {
    AuthError::MalformedChunk(what.to_owned())
}

fn truncate(s: &str) -> &str {
    s.get(..32).unwrap_or(s)
}

/// Frames `data` as one aws-chunked chunk with `signature` (`None`: unsigned framing).
pub fn frame_chunk(data: &[u8], signature: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 100);
    out.extend_from_slice(format!("{:x}", data.len()).as_bytes());
    if let Some(sig) = signature {
        out.extend_from_slice(b";chunk-signature=");
        out.extend_from_slice(sig.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !data.is_empty() {
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out
}
