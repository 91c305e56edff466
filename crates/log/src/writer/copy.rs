//! The checkpoint copy in `checkpoint_copy_dir` is replaced only by a checkpoint proven
//! consistent with the one it holds.
//!
//! At start the copy's checkpoint was checked against the log (its root recomputed from
//! the entries, see `startup`), so the tree as reopened extends it. From then on the
//! writer keeps the compact range of the tree the copy was last written at and the leaf
//! hashes appended since (one checkpoint interval: appends are refused while a checkpoint
//! cannot be written), and before each replacement makes the RFC 9162 consistency proof
//! from that tree to the new one and checks it. A tree that does not extend what the copy
//! holds (whatever the cause) never reaches the copy: the checkpoint fails, the log takes
//! no appends until one succeeds, and `health` says why. The copy also refuses a file
//! changed behind the writer's back (see [`LatestFile`]).

use crate::error::LogError;
use crate::merkle::{CompactTree, Hash, consistency_proof_extending, verify_consistency};

use super::latest::LatestFile;

/// The copy's `checkpoint` file and what the writer must prove before replacing it.
#[derive(Debug)]
pub(super) struct CopyTarget {
    file: LatestFile,
    /// The tree the copy holds a checkpoint of (or, right after start, a tree proven by
    /// recomputation to extend it).
    base: CompactTree,
    /// Leaf hashes appended since `base`.
    since: Vec<Hash>,
}

impl CopyTarget {
    /// `file` holds a checkpoint that `tree` was verified to extend (or none).
    pub(super) fn new(file: LatestFile, tree: &CompactTree) -> Self {
        CopyTarget {
            file,
            base: tree.clone(),
            since: Vec::new(),
        }
    }

    /// A leaf appended to the log.
    pub(super) fn push(&mut self, leaf: Hash) {
        self.since.push(leaf);
    }

    /// Replaces the copy with `note`, the checkpoint of `tree`, once the consistency
    /// proof from the copy's tree to `tree` holds.
    pub(super) fn replace(&mut self, note: &str, tree: &CompactTree) -> Result<(), LogError> {
        let (old, new) = (self.base.size(), tree.size());
        let refuse = |why: String| LogError::Corrupt {
            path: self.file.path().display().to_string(),
            reason: format!(
                "refusing to replace the checkpoint copy (size {old}) with the checkpoint of size {new}: {why}"
            ),
        };
        if old + self.since.len() as u64 != new {
            return Err(refuse(format!(
                "{} entries were appended since the copy, not {}",
                self.since.len(),
                new.saturating_sub(old)
            )));
        }
        let proof = consistency_proof_extending(&self.base, &self.since)
            .ok_or_else(|| refuse("no consistency proof could be made".into()))?;
        verify_consistency(old, new, &self.base.root(), &tree.root(), &proof)
            .map_err(|e| refuse(e.to_string()))?;
        self.file.replace(note.as_bytes(), true)?;
        self.base = tree.clone();
        self.since.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;
    use crate::merkle::leaf_hash;

    fn tree(leaves: &[Hash]) -> CompactTree {
        let mut t = CompactTree::new();
        for l in leaves {
            t.push(*l);
        }
        t
    }

    #[test]
    fn a_tree_that_extends_the_copy_replaces_it_and_one_that_does_not_never_does() {
        let dir = tempfile::tempdir().unwrap();
        let leaves: Vec<Hash> = (0..40u8).map(|i| leaf_hash(&[i])).collect();
        let mut copy = CopyTarget::new(LatestFile::open(dir.path()).unwrap(), &tree(&leaves[..7]));
        for l in &leaves[7..20] {
            copy.push(*l);
        }
        copy.replace("note 20\n", &tree(&leaves[..20])).unwrap();
        let path = dir.path().join(crate::storage::LATEST_CHECKPOINT_FILE);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "note 20\n");

        // The writer's tree was rewritten below the copy's size: refused, copy kept.
        let mut forked = leaves[..33].to_vec();
        forked[11] = leaf_hash(b"forged");
        for l in &leaves[20..33] {
            copy.push(*l);
        }
        let e = copy.replace("note 33\n", &tree(&forked)).unwrap_err();
        assert!(
            e.to_string().contains("does not lead to the newer root"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "note 20\n");
        // A tree whose size does not match the leaves appended since: refused.
        let e = copy.replace("note 34\n", &tree(&leaves[..34])).unwrap_err();
        assert!(e.to_string().contains("13 entries were appended"), "{e}");
        // The honest tree still goes through.
        copy.replace("note 33\n", &tree(&leaves[..33])).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "note 33\n");
    }
}
