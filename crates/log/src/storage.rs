//! On-disk layout shared by the writer and the verifier.
//!
//! ```text
//! <dir>/log-000000.jsonl    entries, one per line; rotated by size
//! <dir>/log-000001.jsonl
//! <dir>/checkpoints.jsonl   every signed checkpoint, one `{"note": ...}` per line
//! <dir>/checkpoint          the latest signed checkpoint note (replaced atomically)
//! ```
//!
//! The segment being written may end in a run of NUL bytes: space the writer allocated
//! ahead (so that an `fdatasync` after an append flushes data only, with no file-size
//! change to journal). A clean close or a rotation cuts it; readers ignore it
//! ([`trim_padding`]). A NUL byte never occurs inside an entry line.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File of all checkpoints.
pub const CHECKPOINTS_FILE: &str = "checkpoints.jsonl";
/// File of the latest checkpoint note.
pub const LATEST_CHECKPOINT_FILE: &str = "checkpoint";

/// One line of `checkpoints.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointLine {
    /// The signed note (C2SP signed-note carrying a tlog-checkpoint).
    pub note: String,
}

/// The checkpoints of a `checkpoints.jsonl` (its bytes) that one of `keys` signed, in file
/// order. Lines that do not parse or verify are skipped here (the verifier reports them).
pub fn signed_checkpoints<'a>(
    data: &'a [u8],
    keys: &'a [crate::note::NoteVerifier],
) -> impl Iterator<Item = crate::note::SignedCheckpoint> + 'a {
    split_lines(data)
        .0
        .into_iter()
        .filter_map(|l| serde_json::from_slice::<CheckpointLine>(l).ok())
        .filter_map(move |l| {
            keys.iter()
                .find_map(|k| crate::note::SignedCheckpoint::open(&l.note, k).ok())
        })
}

/// The file name of segment `index`.
pub fn segment_name(index: u32) -> String {
    format!("log-{index:06}.jsonl")
}

/// Parses a segment file name.
pub fn parse_segment_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("log-")?.strip_suffix(".jsonl")?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segments in `dir`, ordered by index.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        if let Some(i) = e.file_name().to_str().and_then(parse_segment_name) {
            out.push((i, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Fsyncs a directory so that created or renamed entries in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Writes `data` to `dir/name` atomically (temp file, fsync, rename, fsync dir).
pub fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// A segment's contents without the preallocated NUL padding at its end.
pub fn trim_padding(buf: &[u8]) -> &[u8] {
    let end = buf.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    &buf[..end]
}

/// Splits a buffer into newline-terminated lines (without the newline) and
/// the unterminated tail, if any.
pub fn split_lines(buf: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut lines = Vec::with_capacity(buf.len() / 256);
    let mut start = 0;
    for i in newlines(buf) {
        lines.push(&buf[start..i]);
        start = i + 1;
    }
    (lines, &buf[start..])
}

/// Positions of `\n` in `buf`, eight bytes at a time (the verifier's only
/// serial pass over every byte).
fn newlines(buf: &[u8]) -> impl Iterator<Item = usize> + '_ {
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let words = buf.chunks_exact(8);
    let rest_start = buf.len() - words.remainder().len();
    let mut out = Vec::new();
    for (w, chunk) in words.enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ NL;
        // Exact zero-byte test: no false positives.
        let mut found = !((x & !HIGHS).wrapping_add(!HIGHS) | x) & HIGHS;
        while found != 0 {
            out.push(w * 8 + (found.trailing_zeros() / 8) as usize);
            found &= found - 1;
        }
    }
    for (i, b) in buf[rest_start..].iter().enumerate() {
        if *b == b'\n' {
            out.push(rest_start + i);
        }
    }
    out.into_iter()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "tests fail loudly"
    )]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn split_lines_matches_the_naive_split(buf in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(0x0au8 ^ 0x80), Just(0x8a), Just(0x0b), any::<u8>()], 0..100)) {
            let (lines, tail) = split_lines(&buf);
            let mut parts: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
            let last = parts.pop().unwrap();
            prop_assert_eq!(lines, parts);
            prop_assert_eq!(tail, last);
        }
    }
}
