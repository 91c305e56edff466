//! On-disk layout shared by the writer and the verifier.
//!
//! ```text
//! <dir>/log-000000.jsonl    entries, one per line; rotated by size
//! <dir>/log-000001.jsonl
//! <dir>/checkpoints.jsonl   every signed checkpoint, one `{"note": ...}` per line
//! <dir>/checkpoint          the latest signed checkpoint note (replaced atomically)
//! ```

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

/// Splits a buffer into newline-terminated lines (without the newline) and
/// the unterminated tail, if any.
pub fn split_lines(buf: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, b) in buf.iter().enumerate() {
        if *b == b'\n' {
            lines.push(&buf[start..i]);
            start = i + 1;
        }
    }
    (lines, &buf[start..])
}
