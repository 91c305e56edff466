//! Reading segments as a stream of line chunks, with bounded memory.
//!
//! A segment is read in blocks and cut into lines; lines are packed into chunks of about
//! [`CHUNK_BYTES`] or [`CHUNK_LINES`] that the parser threads take in turn. A line longer than the entry
//! bound is not kept: its length is counted and its leaf hash computed as it streams by,
//! so a 256 MiB line (or a segment of NULs with one byte after them) costs no more memory
//! than a short one. NUL bytes that run to the end of a segment are the writer's
//! preallocated padding and are not part of the log; NULs followed by anything else are
//! content (a malformed line).

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::entry::MAX_ENTRY_BYTES;
use crate::merkle::Hash;

/// A chunk is handed on once it holds this many bytes of lines…
pub(super) const CHUNK_BYTES: usize = 1 << 20;
/// …or this many lines (each line costs a record in the parsers, however short it is).
pub(super) const CHUNK_LINES: usize = 4096;
/// How much is read from a file at once.
const BLOCK: usize = 256 << 10;

/// One line of a chunk.
pub(super) enum Line {
    /// A line within the bound: `buf[start..end]`.
    Kept(usize, usize),
    /// A line over the bound: its length and leaf hash, not its bytes.
    TooLong(u64, Hash),
}

/// Lines of one segment, in order.
pub(super) struct Chunk {
    /// Index of the segment.
    pub(super) seg: usize,
    /// Lines of the segment before this chunk's first.
    pub(super) first: u64,
    pub(super) buf: Vec<u8>,
    pub(super) lines: Vec<Line>,
    /// On the segment's last chunk: the length of an unterminated last line (0: none).
    pub(super) end: Option<u64>,
}

impl Chunk {
    fn new(seg: usize, first: u64) -> Self {
        Self {
            seg,
            first,
            buf: Vec::with_capacity(CHUNK_BYTES + BLOCK),
            lines: Vec::new(),
            end: None,
        }
    }

    /// The bytes of a kept line.
    pub(super) fn bytes(&self, start: usize, end: usize) -> &[u8] {
        &self.buf[start..end]
    }
}

/// The line being read.
struct Current {
    /// Where it starts in the chunk's buffer.
    start: usize,
    /// Its length so far (also past the bound).
    len: u64,
    /// NULs seen and not yet known to be content (they are padding if the file ends).
    nuls: u64,
    /// Once over the bound: the leaf hash so far.
    long: Option<Sha256>,
}

/// Read segment `seg` from `source`, handing on each chunk; stops early (returning
/// `false`) when `emit` does. An I/O error ends the segment with the error.
pub(super) fn read_segment(
    seg: usize,
    mut source: impl Read,
    emit: &mut dyn FnMut(Chunk) -> bool,
) -> std::io::Result<bool> {
    let mut chunk = Chunk::new(seg, 0);
    let mut cur = Current {
        start: 0,
        len: 0,
        nuls: 0,
        long: None,
    };
    let mut block = vec![0u8; BLOCK];
    loop {
        let n = match source.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut b = &block[..n];
        while !b.is_empty() {
            if cur.nuls > 0 || b[0] == 0 {
                let run = b.iter().position(|&c| c != 0).unwrap_or(b.len());
                cur.nuls += run as u64;
                b = &b[run..];
                if b.is_empty() {
                    break;
                }
                // More follows: the NULs were content.
                let nuls = std::mem::take(&mut cur.nuls);
                append_nuls(&mut chunk, &mut cur, nuls);
                continue;
            }
            match memchr::memchr2(b'\n', 0, b) {
                Some(i) if b[i] == b'\n' => {
                    append(&mut chunk, &mut cur, &b[..i]);
                    end_line(&mut chunk, &mut cur);
                    b = &b[i + 1..];
                    if chunk.buf.len() >= CHUNK_BYTES || chunk.lines.len() >= CHUNK_LINES {
                        let next = Chunk::new(seg, chunk.first + chunk.lines.len() as u64);
                        if !emit(std::mem::replace(&mut chunk, next)) {
                            return Ok(false);
                        }
                        cur.start = 0;
                    }
                }
                Some(i) => {
                    append(&mut chunk, &mut cur, &b[..i]);
                    b = &b[i..];
                }
                None => {
                    append(&mut chunk, &mut cur, b);
                    b = &[];
                }
            }
        }
    }
    // Trailing NULs are padding; what is left of the line is an unterminated tail.
    chunk.end = Some(cur.len);
    chunk.buf.truncate(cur.start);
    Ok(emit(chunk))
}

fn append(chunk: &mut Chunk, cur: &mut Current, bytes: &[u8]) {
    cur.len += bytes.len() as u64;
    if let Some(h) = &mut cur.long {
        h.update(bytes);
        return;
    }
    if cur.len > MAX_ENTRY_BYTES as u64 {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(&chunk.buf[cur.start..]);
        h.update(bytes);
        chunk.buf.truncate(cur.start);
        cur.long = Some(h);
        return;
    }
    chunk.buf.extend_from_slice(bytes);
}

fn append_nuls(chunk: &mut Chunk, cur: &mut Current, mut n: u64) {
    const ZEROS: [u8; 4096] = [0; 4096];
    while n > 0 {
        let step = n.min(ZEROS.len() as u64) as usize;
        append(chunk, cur, &ZEROS[..step]);
        n -= step as u64;
    }
}

fn end_line(chunk: &mut Chunk, cur: &mut Current) {
    let line = match cur.long.take() {
        Some(h) => Line::TooLong(cur.len, Hash(h.finalize().into())),
        None => Line::Kept(cur.start, chunk.buf.len()),
    };
    chunk.lines.push(line);
    cur.start = chunk.buf.len();
    cur.len = 0;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;
    use proptest::prelude::*;

    /// Lines and tail as the reader sees them, for comparison with the in-memory split.
    fn read_all(data: &[u8], block_reads: usize) -> (Vec<Vec<u8>>, u64) {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(out.len()).min(self.1);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut lines = Vec::new();
        let mut tail = 0;
        read_segment(0, Trickle(data, block_reads), &mut |c: Chunk| {
            for l in &c.lines {
                match l {
                    Line::Kept(s, e) => lines.push(c.bytes(*s, *e).to_vec()),
                    Line::TooLong(n, _) => lines.push(vec![b'#'; *n as usize]),
                }
            }
            if let Some(t) = c.end {
                tail = t;
            }
            true
        })
        .unwrap();
        (lines, tail)
    }

    proptest! {
        #[test]
        fn lines_match_the_in_memory_split(
            buf in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(0u8), any::<u8>()], 0..300),
            step in 1usize..40,
        ) {
            let trimmed = crate::storage::trim_padding(&buf);
            let (want, tail) = crate::storage::split_lines(trimmed);
            let (got, got_tail) = read_all(&buf, step);
            let want: Vec<Vec<u8>> = want.iter().map(|l| l.to_vec()).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(got_tail, tail.len() as u64);
        }
    }

    #[test]
    fn a_line_over_the_bound_is_counted_and_hashed_not_kept() {
        let mut data = vec![b'x'; MAX_ENTRY_BYTES + 10];
        data.push(b'\n');
        data.extend_from_slice(b"{}\n");
        let mut seen = Vec::new();
        read_segment(0, &data[..], &mut |c: Chunk| {
            assert!(c.buf.len() < 1024, "the long line is not held");
            for l in &c.lines {
                seen.push(match l {
                    Line::Kept(s, e) => format!("kept {}", e - s),
                    Line::TooLong(n, h) => {
                        let want = crate::merkle::leaf_hash(&data[..MAX_ENTRY_BYTES + 10]);
                        assert_eq!(*h, want);
                        format!("long {n}")
                    }
                });
            }
            true
        })
        .unwrap();
        assert_eq!(
            seen,
            [format!("long {}", MAX_ENTRY_BYTES + 10), "kept 2".into()]
        );
    }
}
