//! Inclusion receipts: a self-contained proof that an entry is in the tree of
//! a signed checkpoint, checkable without the log.

use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::merkle::{Hash, inclusion_proof, leaf_hash, verify_inclusion};
use crate::note::{NoteVerifier, SignedCheckpoint};
use crate::storage;
use crate::verify::LogFiles;

/// An entry, its inclusion proof and the signed checkpoint it leads to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Leaf index of the entry (its sequence number in an intact log).
    pub leaf_index: u64,
    /// The entry line exactly as logged (without newline).
    pub entry: String,
    /// RFC 6962 inclusion proof, leaf to root.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note whose root the proof leads to.
    pub checkpoint: String,
}

/// Why a receipt could not be made or does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// No valid checkpoint covers the entry.
    #[error("no checkpoint signed by a trusted key covers leaf {0}")]
    NotSealed(u64),
    /// The log has no such entry.
    #[error("the log has no entry {0}")]
    NoSuchEntry(u64),
    /// The checkpoint is malformed or not signed by a trusted key.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The proof does not lead to the checkpoint's root.
    #[error("proof: {0}")]
    Proof(String),
    /// The entry does not decode or does not match the receipt.
    #[error("entry: {0}")]
    Entry(String),
}

/// Makes a receipt for leaf `index` against the newest checkpoint in
/// `checkpoints.jsonl` that a key in `keys` signed and that covers it and
/// matches the entries on disk.
pub fn make_receipt(
    files: &LogFiles,
    index: u64,
    keys: &[NoteVerifier],
) -> Result<Receipt, ReceiptError> {
    let mut leaves = Vec::new();
    let mut entry_line: Option<String> = None;
    for (_, data) in &files.segments {
        let (lines, _) = storage::split_lines(data);
        for l in lines {
            if leaves.len() as u64 == index {
                entry_line = Some(String::from_utf8_lossy(l).into_owned());
            }
            leaves.push(leaf_hash(l));
        }
    }
    let entry = entry_line.ok_or(ReceiptError::NoSuchEntry(index))?;
    // The largest that covers the entry (the first of that size).
    let cp = storage::signed_checkpoints(files.checkpoints.as_deref().unwrap_or_default(), keys)
        .filter(|cp| cp.checkpoint.size > index && cp.checkpoint.size <= leaves.len() as u64)
        .reduce(|best, cp| {
            if cp.checkpoint.size > best.checkpoint.size {
                cp
            } else {
                best
            }
        })
        .ok_or(ReceiptError::NotSealed(index))?;
    let size = usize::try_from(cp.checkpoint.size).map_err(|_| ReceiptError::NotSealed(index))?;
    let proof = inclusion_proof(&leaves[..size], index).ok_or(ReceiptError::NoSuchEntry(index))?;
    let receipt = Receipt {
        leaf_index: index,
        entry,
        proof,
        checkpoint: cp.note,
    };
    // Never hand out a receipt that does not check (e.g. entries modified
    // below the checkpoint).
    check_receipt(&receipt, keys)?;
    Ok(receipt)
}

/// Checks a receipt: the checkpoint is signed by one of `keys`, the proof
/// leads from the entry's leaf hash to its root, and the entry decodes with
/// the checkpoint's origin. Returns the entry.
pub fn check_receipt(r: &Receipt, keys: &[NoteVerifier]) -> Result<Entry, ReceiptError> {
    let cp = keys
        .iter()
        .find_map(|k| SignedCheckpoint::open(&r.checkpoint, k).ok())
        .ok_or_else(|| ReceiptError::Checkpoint("not signed by a trusted key".into()))?;
    let leaf = leaf_hash(r.entry.as_bytes());
    verify_inclusion(
        r.leaf_index,
        cp.checkpoint.size,
        &leaf,
        &r.proof,
        &cp.checkpoint.root,
    )
    .map_err(|e| ReceiptError::Proof(e.to_string()))?;
    let e = Entry::decode(r.entry.as_bytes()).map_err(|e| ReceiptError::Entry(e.to_string()))?;
    if e.origin != cp.checkpoint.origin {
        return Err(ReceiptError::Entry(format!(
            "entry origin `{}` is not the checkpoint's `{}`",
            e.origin, cp.checkpoint.origin
        )));
    }
    Ok(e)
}
