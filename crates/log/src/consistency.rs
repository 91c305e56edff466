//! Consistency proofs between two signed checkpoints (RFC 9162 §2.1.4): proof that the
//! log an older checkpoint signed is a prefix of the log a newer one signs, checkable by
//! someone who holds only the two checkpoints (an auditor who kept an old one, a
//! witness), not the log.

use serde::{Deserialize, Serialize};

use crate::merkle::{ConsistencyBuilder, Hash, verify_consistency};
use crate::note::{NoteVerifier, SignedCheckpoint};
use crate::storage::{self, CheckpointLine};

/// Two signed checkpoints of one log and the proof that the newer extends the older.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The older signed checkpoint note.
    pub old: String,
    /// The newer signed checkpoint note.
    pub new: String,
    /// RFC 9162 consistency proof from the older tree to the newer.
    pub proof: Vec<Hash>,
}

/// Why a proof could not be made, or does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsistencyError {
    /// A checkpoint is malformed or not signed by a trusted key.
    #[error("{which} checkpoint: {why}")]
    Checkpoint {
        /// `old` or `new`.
        which: &'static str,
        /// Why.
        why: String,
    },
    /// The two checkpoints are of different logs.
    #[error("the checkpoints are of different logs (`{0}` and `{1}`)")]
    Origins(String, String),
    /// The log on disk does not hold what the newer checkpoint covers.
    #[error("the log holds {have} entries; the newer checkpoint covers {want}")]
    Short {
        /// Entries on disk.
        have: u64,
        /// Entries the checkpoint covers.
        want: u64,
    },
    /// The log on disk has no signed checkpoint to prove against.
    #[error("the log has no checkpoint signed by a trusted key")]
    NoCheckpoint,
    /// The proof does not hold.
    #[error("{0}")]
    Proof(String),
    /// The log could not be read.
    #[error("{0}")]
    Read(String),
}

fn open(
    note: &str,
    keys: &[NoteVerifier],
    which: &'static str,
) -> Result<SignedCheckpoint, ConsistencyError> {
    keys.iter()
        .find_map(|k| SignedCheckpoint::open(note, k).ok())
        .ok_or_else(|| ConsistencyError::Checkpoint {
            which,
            why: "not signed by a trusted key (or malformed)".into(),
        })
}

/// Proves that `old` (a signed checkpoint note an auditor kept) is consistent with `new`,
/// or, without `new`, with the newest checkpoint in the log's `checkpoints.jsonl` that a
/// key in `keys` signed. The proof is made from the entries in the log directory `dir`,
/// streamed (memory: a chunk of lines and O(log n) hashes), and checked before it is
/// returned: a log rewritten below the older checkpoint yields no proof.
pub fn make_consistency(
    dir: &std::path::Path,
    old: &str,
    new: Option<&str>,
    keys: &[NoteVerifier],
) -> Result<ConsistencyProof, ConsistencyError> {
    let old_cp = open(old, keys, "old")?;
    // The checkpoint files first (small), then the entries.
    let mut count = 0u64;
    let checkpoints = crate::verify::stream_leaves(dir, &mut |_| count += 1)
        .map_err(|e| ConsistencyError::Read(e.to_string()))?;
    let new_note = match new {
        Some(n) => n.to_owned(),
        None => newest_checkpoint(checkpoints.as_deref(), keys)?,
    };
    let new_cp = open(&new_note, keys, "new")?;
    let want = new_cp.checkpoint.size;
    if want > count {
        return Err(ConsistencyError::Short { have: count, want });
    }
    if old_cp.checkpoint.size > want {
        return Err(ConsistencyError::Proof(format!(
            "the older checkpoint covers {} entries, more than the newer's {want}",
            old_cp.checkpoint.size
        )));
    }
    let mut builder = ConsistencyBuilder::new(old_cp.checkpoint.size, want)
        .ok_or(ConsistencyError::Short { have: count, want })?;
    crate::verify::stream_leaves(dir, &mut |leaf| builder.push(leaf))
        .map_err(|e| ConsistencyError::Read(e.to_string()))?;
    let made = ConsistencyProof {
        old: old.to_owned(),
        new: new_note,
        proof: builder.finish(),
    };
    check_consistency(&made, keys)?;
    Ok(made)
}

fn newest_checkpoint(
    checkpoints: Option<&[u8]>,
    keys: &[NoteVerifier],
) -> Result<String, ConsistencyError> {
    let data = checkpoints.unwrap_or_default();
    storage::split_lines(data)
        .0
        .into_iter()
        .filter_map(|l| serde_json::from_slice::<CheckpointLine>(l).ok())
        .filter_map(|l| {
            keys.iter()
                .find_map(|k| SignedCheckpoint::open(&l.note, k).ok())
        })
        .max_by_key(|cp| cp.checkpoint.size)
        .map(|cp| cp.note)
        .ok_or(ConsistencyError::NoCheckpoint)
}

/// Checks a consistency proof without the log: both checkpoints signed by a key in
/// `keys`, of one origin, and the proof leads from the older root to the newer. Returns
/// the two sizes.
pub fn check_consistency(
    p: &ConsistencyProof,
    keys: &[NoteVerifier],
) -> Result<(u64, u64), ConsistencyError> {
    let old = open(&p.old, keys, "old")?.checkpoint;
    let new = open(&p.new, keys, "new")?.checkpoint;
    if old.origin != new.origin {
        return Err(ConsistencyError::Origins(old.origin, new.origin));
    }
    verify_consistency(old.size, new.size, &old.root, &new.root, &p.proof)
        .map_err(|e| ConsistencyError::Proof(e.to_string()))?;
    Ok((old.size, new.size))
}
