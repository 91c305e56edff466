//! A request body of any length generated as it is sent: one 1 MiB block, repeated, so a
//! 1 GiB upload costs the generator 1 MiB of memory.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};

const BLOCK: usize = 1 << 20;

/// `len` bytes of a repeating pattern.
#[derive(Debug)]
pub struct Generated {
    block: Bytes,
    remaining: u64,
}

impl Generated {
    /// A body of exactly `len` bytes.
    pub fn new(len: u64) -> Self {
        let block: Vec<u8> = (0..BLOCK)
            .map(|i| u8::try_from(i % 251).unwrap_or(0))
            .collect();
        Self {
            block: Bytes::from(block),
            remaining: len,
        }
    }

    /// The hex SHA-256 of the whole body, computed by generating it once.
    pub fn sha256_hex(mut self) -> String {
        let mut hasher = Sha256::new();
        while let Some(chunk) = self.next_chunk() {
            hasher.update(&chunk);
        }
        hex::encode(hasher.finalize())
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let n = usize::try_from(self.remaining.min(BLOCK as u64)).unwrap_or(BLOCK);
        self.remaining -= n as u64;
        Some(self.block.slice(..n))
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.next_chunk().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
