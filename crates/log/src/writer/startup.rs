//! The start-up check: before a writer appends to an existing log it proves that the log
//! on disk is the one it signed. Without it, anyone who can write the log directory (but
//! has no key) could rewrite history, delete the checkpoints and let the next start sign
//! the forgery.
//!
//! - Every checkpoint the writer can find (its `checkpoints.jsonl`, its `checkpoint`
//!   file, and the copy in `checkpoint_copy_dir`, which the gateway host should not be
//!   able to rewrite) is verified with the writer's own key; checkpoints by another key
//!   (before a key rotation) are not trusted and not used. The copy must verify.
//! - Two trusted checkpoints of one size with different roots are a fork.
//! - While the entries are re-read: sequence numbers count up from 0, each `prev` is the
//!   previous line's leaf hash, every entry has this log's origin, and at the size of
//!   every trusted checkpoint the recomputed root equals the signed one.
//! - The log must hold at least the entries of the largest trusted checkpoint, and a
//!   non-empty log must have a trusted checkpoint at all (the writer seals its first
//!   entry at once, so only a log whose checkpoints were deleted lacks one).
//!
//! A log that fails is not continued: the error names the file, the size and both roots,
//! and says how to start a new log. Entries after the last trusted checkpoint (an
//! unsealed tail after a crash) are accepted, and counted and hashed in the `recovered`
//! entry, so an auditor sees they were sealed late.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::entry::Entry;
use crate::error::LogError;
use crate::merkle::{CompactTree, Hash};
use crate::note::{NoteVerifier, SignedCheckpoint};
use crate::storage::{CheckpointLine, LATEST_CHECKPOINT_FILE};

/// What to do when the check fails, said once in every refusal.
const HOW_TO_RECOVER: &str = "the log was changed after it was signed; keep this directory as evidence, move it aside and start the gateway again to begin a new log";

/// The checkpoints a writer trusts: signed with its own key, by size.
#[derive(Debug, Default)]
pub(super) struct Trusted {
    /// size → (root, where it was found).
    by_size: BTreeMap<u64, (Hash, String)>,
}

/// Re-reads entries one by one against the chain and the trusted checkpoints.
pub(super) struct Scan<'t> {
    trusted: &'t Trusted,
    origin: &'t str,
    dir: &'t Path,
    /// SHA-256 over the lines after the largest trusted size (the unsealed tail).
    tail_hash: Sha256,
    tail_count: u64,
}

// === impl Trusted ===

impl Trusted {
    /// Gathers and verifies every checkpoint the writer can find.
    pub(super) fn gather(
        dir: &Path,
        checkpoint_lines: &[&[u8]],
        copy_dir: Option<&Path>,
        verifier: &NoteVerifier,
    ) -> Result<Trusted, LogError> {
        let mut trusted = Trusted::default();
        for (i, line) in checkpoint_lines.iter().enumerate() {
            let Ok(l) = serde_json::from_slice::<CheckpointLine>(line) else {
                continue;
            };
            if let Ok(cp) = SignedCheckpoint::open(&l.note, verifier) {
                trusted.add(dir, &cp, format!("checkpoints.jsonl line {}", i + 1))?;
            }
        }
        let latest = dir.join(LATEST_CHECKPOINT_FILE);
        if let Ok(note) = std::fs::read_to_string(&latest)
            && let Ok(cp) = SignedCheckpoint::open(&note, verifier)
        {
            trusted.add(dir, &cp, latest.display().to_string())?;
        }
        if let Some(copy) = copy_dir {
            let path = copy.join(LATEST_CHECKPOINT_FILE);
            match std::fs::read_to_string(&path) {
                Ok(note) => {
                    let cp = SignedCheckpoint::open(&note, verifier).map_err(|e| {
                        LogError::Corrupt {
                            path: path.display().to_string(),
                            reason: format!(
                                "the checkpoint copy does not verify with this log's key ({e}); refusing to overwrite it"
                            ),
                        }
                    })?;
                    trusted.add(dir, &cp, path.display().to_string())?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("read", &path, &e)),
            }
        }
        Ok(trusted)
    }

    fn add(&mut self, dir: &Path, cp: &SignedCheckpoint, source: String) -> Result<(), LogError> {
        let (size, root) = (cp.checkpoint.size, cp.checkpoint.root);
        match self.by_size.get(&size) {
            Some((other, other_source)) if *other != root => Err(LogError::Corrupt {
                path: dir.display().to_string(),
                reason: format!(
                    "two checkpoints of size {size} disagree: root {} in {other_source}, {} in {source} (a fork)",
                    other.to_hex(),
                    root.to_hex()
                ),
            }),
            Some(_) => Ok(()),
            None => {
                self.by_size.insert(size, (root, source));
                Ok(())
            }
        }
    }

    /// The largest trusted size (0 when there is none).
    pub(super) fn sealed_size(&self) -> u64 {
        self.by_size.keys().next_back().copied().unwrap_or(0)
    }

    /// After the scan: the log holds every trusted checkpoint's entries, and a
    /// non-empty log has at least one.
    pub(super) fn check_size(&self, dir: &Path, size: u64) -> Result<(), LogError> {
        if let Some((&max, (_, source))) = self.by_size.iter().next_back()
            && max > size
        {
            return Err(LogError::Corrupt {
                path: dir.display().to_string(),
                reason: format!(
                    "the log holds {size} entries but {source} is signed at size {max}: entries were removed; {HOW_TO_RECOVER}"
                ),
            });
        }
        if size > 0 && self.by_size.is_empty() {
            return Err(LogError::Corrupt {
                path: dir.display().to_string(),
                reason: format!(
                    "the log holds {size} entries and no checkpoint signed by this log's key (checkpoints deleted, or another key); {HOW_TO_RECOVER}"
                ),
            });
        }
        Ok(())
    }
}

// === impl Scan ===

impl<'t> Scan<'t> {
    pub(super) fn new(trusted: &'t Trusted, origin: &'t str, dir: &'t Path) -> Self {
        Scan {
            trusted,
            origin,
            dir,
            tail_hash: Sha256::new(),
            tail_count: 0,
        }
    }

    /// Checks the next line (whose leaf hash is already pushed onto `tree`) and returns
    /// its entry; `prev` is the leaf hash of the line before it.
    pub(super) fn line(
        &mut self,
        path: &Path,
        line: &[u8],
        prev: &Hash,
        tree: &CompactTree,
    ) -> Result<Entry, LogError> {
        let seq = tree.size() - 1;
        let corrupt = |reason: String| LogError::Corrupt {
            path: path.display().to_string(),
            reason: format!("entry {seq}: {reason}; {HOW_TO_RECOVER}"),
        };
        let e = Entry::decode(line).map_err(|e| corrupt(format!("does not decode: {e}")))?;
        if e.seq != seq {
            return Err(corrupt(format!("has seq {}", e.seq)));
        }
        if e.prev != *prev {
            return Err(corrupt(format!(
                "prev is {}, the previous entry's hash is {}",
                e.prev.to_hex(),
                prev.to_hex()
            )));
        }
        if e.origin != self.origin {
            return Err(corrupt(format!(
                "origin is `{}`, not `{}`",
                e.origin, self.origin
            )));
        }
        if let Some((root, source)) = self.trusted.by_size.get(&tree.size()) {
            let recomputed = tree.root();
            if recomputed != *root {
                return Err(LogError::Corrupt {
                    path: self.dir.display().to_string(),
                    reason: format!(
                        "entries 0..{} hash to root {} but {source} signed root {}; {HOW_TO_RECOVER}",
                        tree.size(),
                        recomputed.to_hex(),
                        root.to_hex()
                    ),
                });
            }
        }
        if tree.size() > self.trusted.sealed_size() {
            self.tail_hash.update(line);
            self.tail_hash.update(b"\n");
            self.tail_count += 1;
        }
        Ok(e)
    }

    /// The unsealed tail: how many entries follow the last trusted checkpoint, and the
    /// SHA-256 (hex) of their lines, each with its newline.
    pub(super) fn unsealed(self) -> (u64, String) {
        (self.tail_count, hex::encode(self.tail_hash.finalize()))
    }
}
