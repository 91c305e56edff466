//! Consistency proofs between two signed checkpoints (RFC 9162 §2.1.4): proof that the
//! log an older checkpoint signed is a prefix of the log a newer one signs, checkable by
//! someone who holds only the two checkpoints (an auditor who kept an old one, a
//! witness), not the log.

use serde::{Deserialize, Serialize};

use crate::merkle::{ConsistencyBuilder, Hash, verify_consistency};
use crate::note::{NoteVerifier, SignedCheckpoint};
use crate::storage;

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
    let read = |e: crate::verify::VerifyError| ConsistencyError::Read(e.to_string());
    // The checkpoints first, then the entries: every checkpoint read covers entries that
    // are there to stream.
    let new_note = match new {
        Some(n) => n.to_owned(),
        None => newest_checkpoint(&crate::verify::read_checkpoints(dir).map_err(read)?, keys)?,
    };
    let new_cp = open(&new_note, keys, "new")?;
    let want = new_cp.checkpoint.size;
    if old_cp.checkpoint.size > want {
        return Err(ConsistencyError::Proof(format!(
            "the older checkpoint covers {} entries, more than the newer's {want}",
            old_cp.checkpoint.size
        )));
    }
    let mut builder = ConsistencyBuilder::new(old_cp.checkpoint.size, want)
        .ok_or(ConsistencyError::Short { have: 0, want })?;
    // One pass over the entries.
    let have = crate::verify::stream_leaves(dir, &mut |leaf| builder.push(leaf)).map_err(read)?;
    if want > have {
        return Err(ConsistencyError::Short { have, want });
    }
    let made = ConsistencyProof {
        old: old.to_owned(),
        new: new_note,
        proof: builder.finish(),
    };
    check_consistency(&made, keys)?;
    Ok(made)
}

fn newest_checkpoint(
    checkpoints: &Option<Vec<u8>>,
    keys: &[NoteVerifier],
) -> Result<String, ConsistencyError> {
    storage::signed_checkpoints(checkpoints.as_deref().unwrap_or_default(), keys)
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
