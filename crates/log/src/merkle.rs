//! RFC 6962 Merkle tree hashing: leaf and node hashes, an incremental tree for
//! appenders, and inclusion proofs.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, a node hash or a tree root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

/// The hash of an empty tree, `SHA-256("")` (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// The RFC 6962 leaf hash: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    Hash(h.finalize().into())
}

/// The RFC 6962 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 1;
    buf[1..33].copy_from_slice(&left.0);
    buf[33..].copy_from_slice(&right.0);
    Hash(Sha256::digest(buf).into())
}

/// An append-only Merkle tree that keeps only the roots of its perfect
/// subtrees (a "compact range"), enough to compute the root after each append.
#[derive(Clone, Debug, Default)]
pub struct CompactTree {
    size: u64,
    // Roots of the perfect subtrees, largest (leftmost) first.
    nodes: Vec<Hash>,
}

/// Why an inclusion proof did not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for the index and size.
    #[error("proof has the wrong length for leaf {index} of {size}")]
    WrongLength {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// A consistency proof's sizes are not `0 <= old <= new`.
    #[error("no consistency proof from size {old} to size {new}")]
    SizesOutOfOrder {
        /// The older tree's size.
        old: u64,
        /// The newer tree's size.
        new: u64,
    },
    /// A consistency proof does not prove that the older tree is a prefix of the newer.
    #[error("consistency proof from size {old} to {new} does not hold: {why}")]
    Inconsistent {
        /// The older tree's size.
        old: u64,
        /// The newer tree's size.
        new: u64,
        /// Which check failed.
        why: &'static str,
    },
    /// The recomputed root differs from the expected root.
    #[error("recomputed root `{computed}` differs from `{expected}`")]
    RootMismatch {
        /// Root computed from the proof.
        computed: Hash,
        /// Root the proof was checked against.
        expected: Hash,
    },
}

// === impl Hash ===

impl Hash {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Hash> {
        // Hot in the verifier (one per entry): a table, no branches per digit.
        const INVALID: u8 = 0xff;
        const TABLE: [u8; 256] = {
            let mut t = [INVALID; 256];
            let mut i = 0;
            while i < 10 {
                t[b'0' as usize + i] = i as u8;
                i += 1;
            }
            let mut i = 0;
            while i < 6 {
                t[b'a' as usize + i] = 10 + i as u8;
                t[b'A' as usize + i] = 10 + i as u8;
                i += 1;
            }
            t
        };
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        let mut bad = 0u8;
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            let (hi, lo) = (TABLE[pair[0] as usize], TABLE[pair[1] as usize]);
            bad |= (hi | lo) & 0xf0;
            *o = (hi << 4) | (lo & 0x0f);
        }
        (bad == 0).then_some(Hash(out))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Hash, E> {
                Hash::from_hex(s).ok_or_else(|| E::custom("expected 64 hex digits"))
            }
        }
        // The verifier decodes one of these per entry: avoid an allocation.
        d.deserialize_str(V)
    }
}

// === impl CompactTree ===

impl CompactTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut n = self.size;
        while n & 1 == 1 {
            // A perfect subtree of the same height is on the left: merge.
            if let Some(left) = self.nodes.pop() {
                h = node_hash(&left, &h);
            }
            n >>= 1;
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// The root of the leaves `[a, b)` when that range is a run of this tree's perfect
    /// subtrees; `None` otherwise.
    fn range_root(&self, a: u64, b: u64) -> Option<Hash> {
        let mut start = 0u64;
        let mut covered = 0u64;
        let mut run: Vec<&Hash> = Vec::new();
        for (node, len) in self.nodes.iter().zip(subtree_sizes(self.size)) {
            let end = start + len;
            if start >= a && end <= b {
                run.push(node);
                covered += len;
            } else if start < b && end > a {
                return None; // the range splits this subtree
            }
            start = end;
        }
        if covered != b - a {
            return None;
        }
        let mut iter = run.into_iter().rev();
        let mut r = *iter.next()?;
        for left in iter {
            r = node_hash(left, &r);
        }
        Some(r)
    }

    /// The current root (RFC 6962 MTH).
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        let mut r = *last;
        for left in iter {
            r = node_hash(left, &r);
        }
        r
    }
}

/// The sizes of the perfect subtrees of a tree of `size` leaves, largest (leftmost) first:
/// the set bits of `size`, high to low.
fn subtree_sizes(size: u64) -> impl Iterator<Item = u64> {
    (0..64u32)
        .rev()
        .map(|bit| 1u64 << bit)
        .filter(move |b| size & b != 0)
}

// === Inclusion proofs ===

/// The root of `leaves` (RFC 6962 MTH).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// Largest power of two strictly less than `n` (n >= 2).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The inclusion proof of leaf `index` in the tree made of `leaves`
/// (RFC 6962 §2.1.1 PATH). `None` if `index` is out of range.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Option<Vec<Hash>> {
    let index = usize::try_from(index).ok()?;
    if index >= leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    path(leaves, index, &mut out);
    Some(out)
}

fn path(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if m < k {
        path(&leaves[..k], m, out);
        out.push(root_of(&leaves[k..]));
    } else {
        path(&leaves[k..], m - k, out);
        out.push(root_of(&leaves[..k]));
    }
}

/// Computes the root implied by an inclusion proof (RFC 9162 §2.1.3.2).
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongLength { index, size });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength { index, size });
    }
    Ok(r)
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves with `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion_proof(index, size, leaf, proof)?;
    if computed != *root {
        return Err(ProofError::RootMismatch {
            computed,
            expected: *root,
        });
    }
    Ok(())
}

// === Consistency proofs ===

/// The consistency proof that the tree of the first `old_size` leaves is a prefix of the
/// tree of all `leaves` (RFC 9162 §2.1.4.1, `PROOF(m, D[n])`). Empty when `old_size` is 0
/// or all of `leaves`; `None` if `old_size` is larger than the tree.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Option<Vec<Hash>> {
    let n = leaves.len() as u64;
    let ranges = consistency_ranges(old_size, n)?;
    Some(
        ranges
            .iter()
            .map(|&(a, b)| root_of(&leaves[a as usize..b as usize]))
            .collect(),
    )
}

/// The leaf ranges `[start, end)` whose roots make up `PROOF(m, D[n])`, in proof order;
/// they are disjoint. `None` if `m > n`.
pub fn consistency_ranges(m: u64, n: u64) -> Option<Vec<(u64, u64)>> {
    if m > n {
        return None;
    }
    let mut out = Vec::new();
    if m > 0 && m < n {
        subproof_ranges(m, 0, n, true, &mut out);
    }
    Some(out)
}

fn subproof_ranges(m: u64, start: u64, n: u64, whole: bool, out: &mut Vec<(u64, u64)>) {
    if m == n {
        if !whole {
            out.push((start, start + n));
        }
        return;
    }
    let k = split_point(n as usize) as u64;
    if m <= k {
        subproof_ranges(m, start, k, whole, out);
        out.push((start + k, start + n));
    } else {
        subproof_ranges(m - k, start + k, n - k, false, out);
        out.push((start, start + k));
    }
}

/// The consistency proof from the tree `old` (its compact range: the roots of its perfect
/// subtrees) to that tree with `appended` added, without the older leaves: every proof
/// range below `old.size()` is a run of `old`'s perfect subtrees (RFC 9162's decomposition
/// never splits one), so the compact range is all a writer must keep between checkpoints.
/// `None` only if that did not hold (a bug, not an input).
pub fn consistency_proof_extending(old: &CompactTree, appended: &[Hash]) -> Option<Vec<Hash>> {
    let m = old.size;
    let n = m + appended.len() as u64;
    consistency_ranges(m, n)?
        .into_iter()
        .map(|(a, b)| {
            if a >= m {
                let (a, b) = (usize::try_from(a - m).ok()?, usize::try_from(b - m).ok()?);
                Some(root_of(appended.get(a..b)?))
            } else {
                old.range_root(a, b)
            }
        })
        .collect()
}

/// A consistency proof made from the leaves as they stream by, holding one compact tree
/// per proof range (O(log n) hashes), not the leaves.
#[derive(Debug)]
pub struct ConsistencyBuilder {
    /// (start, end, position in the proof), by start.
    ranges: Vec<(u64, u64, usize)>,
    trees: Vec<CompactTree>,
    next: u64,
    at: usize,
}

impl ConsistencyBuilder {
    /// For `PROOF(m, D[n])`; `None` if `m > n`.
    pub fn new(m: u64, n: u64) -> Option<Self> {
        let ranges = consistency_ranges(m, n)?;
        let trees = ranges.iter().map(|_| CompactTree::new()).collect();
        let mut ranges: Vec<(u64, u64, usize)> = ranges
            .into_iter()
            .enumerate()
            .map(|(i, (a, b))| (a, b, i))
            .collect();
        ranges.sort_unstable();
        Some(Self {
            ranges,
            trees,
            next: 0,
            at: 0,
        })
    }

    /// The next leaf, in order from leaf 0.
    pub fn push(&mut self, leaf: Hash) {
        let index = self.next;
        self.next += 1;
        while self.ranges.get(self.at).is_some_and(|r| r.1 <= index) {
            self.at += 1;
        }
        if let Some(&(start, _, slot)) = self.ranges.get(self.at)
            && start <= index
        {
            self.trees[slot].push(leaf);
        }
    }

    /// Leaves pushed so far.
    pub fn pushed(&self) -> u64 {
        self.next
    }

    /// The proof, once every leaf of the newer tree was pushed.
    pub fn finish(self) -> Vec<Hash> {
        self.trees.iter().map(CompactTree::root).collect()
    }
}

/// Checks that the tree of `old_size` leaves with `old_root` is a prefix of the tree of
/// `new_size` leaves with `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let (old, new) = (old_size, new_size);
    let bad = |why| ProofError::Inconsistent { old, new, why };
    if old > new {
        return Err(ProofError::SizesOutOfOrder { old, new });
    }
    if old == new {
        return match (proof.is_empty(), old_root == new_root) {
            (true, true) => Ok(()),
            (false, _) => Err(bad("trees of one size need an empty proof")),
            (true, false) => Err(bad("two roots for one size")),
        };
    }
    if old == 0 {
        // Every tree extends the empty one.
        return if proof.is_empty() && *old_root == empty_root() {
            Ok(())
        } else {
            Err(bad(
                "the empty tree's proof is empty and its root is SHA-256(\"\")",
            ))
        };
    }
    if proof.is_empty() {
        return Err(bad("the proof is empty"));
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(bad("the proof is too long"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(bad("the proof is too short"));
    }
    if fr != *old_root {
        return Err(bad("it does not lead to the older root"));
    }
    if sr != *new_root {
        return Err(bad("it does not lead to the newer root"));
    }
    Ok(())
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

    // The leaves and roots of the RFC 6962 reference test data
    // (certificate-transparency-go merkletree tests).
    fn leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect()
    }
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn empty_tree_root() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(CompactTree::new().root(), empty_root());
    }

    #[test]
    fn reference_roots_incremental_and_recursive() {
        let l = leaves();
        let mut t = CompactTree::new();
        for (i, leaf) in l.iter().enumerate() {
            t.push(*leaf);
            assert_eq!(t.root().to_hex(), ROOTS[i], "size {}", i + 1);
            assert_eq!(root_of(&l[..=i]).to_hex(), ROOTS[i]);
        }
    }

    #[test]
    fn inclusion_proofs_check_for_every_leaf_and_size() {
        let mut l = leaves();
        for i in 0..30u8 {
            l.push(leaf_hash(&[i]));
        }
        for size in 1..=l.len() {
            let root = root_of(&l[..size]);
            for index in 0..size {
                let proof = inclusion_proof(&l[..size], index as u64).unwrap();
                verify_inclusion(index as u64, size as u64, &l[index], &proof, &root).unwrap();
                // A wrong leaf or a wrong index fails.
                let other = l[(index + 1) % size];
                if other != l[index] {
                    assert!(
                        verify_inclusion(index as u64, size as u64, &other, &proof, &root).is_err()
                    );
                }
                if size > 1 {
                    let wrong = (index + 1) % size;
                    assert!(
                        verify_inclusion(wrong as u64, size as u64, &l[index], &proof, &root)
                            .is_err()
                    );
                }
            }
            assert!(inclusion_proof(&l[..size], size as u64).is_none());
        }
    }

    #[test]
    fn reference_inclusion_proof() {
        // RFC 6962 reference: leaf 0 of 8.
        let l = leaves();
        let proof: Vec<String> = inclusion_proof(&l, 0)
            .unwrap()
            .iter()
            .map(Hash::to_hex)
            .collect();
        assert_eq!(
            proof,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        );
    }

    #[test]
    fn reference_consistency_proofs() {
        // RFC 6962 reference vectors (generated by the certificate-transparency C++
        // implementation, as published with certificate-transparency-go).
        let l = leaves();
        for (m, n, want) in [
            (1u64, 1u64, vec![]),
            (
                1,
                8,
                vec![
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                vec![
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                vec![
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ] {
            let proof = consistency_proof(&l[..n as usize], m).unwrap();
            let hex: Vec<String> = proof.iter().map(Hash::to_hex).collect();
            assert_eq!(hex, want, "{m} -> {n}");
            let (old, new) = (
                Hash::from_hex(ROOTS[m as usize - 1]).unwrap(),
                Hash::from_hex(ROOTS[n as usize - 1]).unwrap(),
            );
            verify_consistency(m, n, &old, &new, &proof).unwrap();
        }
    }

    #[test]
    fn consistency_proofs_hold_for_every_pair_and_only_for_them() {
        let mut l = leaves();
        for i in 0..40u8 {
            l.push(leaf_hash(&[i]));
        }
        // Another history that agrees with `l` on the first 20 leaves only.
        let mut forked = l.clone();
        forked[20] = leaf_hash(b"forged");
        for n in 0..=l.len() {
            let new_root = root_of(&l[..n]);
            for m in 0..=n {
                let old_root = root_of(&l[..m]);
                let proof = consistency_proof(&l[..n], m as u64).unwrap();
                verify_consistency(m as u64, n as u64, &old_root, &new_root, &proof).unwrap();
                // Made from the leaves as they stream by (and more after them): the same.
                let mut streamed = ConsistencyBuilder::new(m as u64, n as u64).unwrap();
                for leaf in &l {
                    streamed.push(*leaf);
                }
                assert_eq!(streamed.finish(), proof, "{m} -> {n}");
                // Made from the older tree's compact range and the leaves since: the same.
                let mut older = CompactTree::new();
                for leaf in &l[..m] {
                    older.push(*leaf);
                }
                assert_eq!(
                    consistency_proof_extending(&older, &l[m..n]),
                    Some(proof.clone()),
                    "{m} -> {n} from the compact range"
                );
                // Any hash of the proof changed, or a root, or a size: refused.
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i].0[0] ^= 1;
                    assert!(
                        verify_consistency(m as u64, n as u64, &old_root, &new_root, &bad).is_err(),
                        "{m} -> {n}, hash {i}"
                    );
                }
                if m > 0 && m < n {
                    let mut other = old_root;
                    other.0[31] ^= 1;
                    assert!(
                        verify_consistency(m as u64, n as u64, &other, &new_root, &proof).is_err()
                    );
                    assert!(
                        verify_consistency(m as u64 - 1, n as u64, &old_root, &new_root, &proof)
                            .is_err()
                    );
                    let mut truncated = proof.clone();
                    truncated.pop();
                    assert!(
                        verify_consistency(m as u64, n as u64, &old_root, &new_root, &truncated)
                            .is_err()
                    );
                }
                // A newer tree whose history was rewritten below the old size does not
                // extend it, whatever proof its holder makes.
                if m > 20 && n > m {
                    let forged_root = root_of(&forked[..n]);
                    let forged_proof = consistency_proof(&forked[..n], m as u64).unwrap();
                    assert!(
                        verify_consistency(
                            m as u64,
                            n as u64,
                            &old_root,
                            &forged_root,
                            &forged_proof
                        )
                        .is_err(),
                        "{m} -> {n}"
                    );
                }
            }
            assert!(consistency_proof(&l[..n], n as u64 + 1).is_none());
        }
        assert!(matches!(
            verify_consistency(5, 4, &l[0], &l[1], &[]),
            Err(ProofError::SizesOutOfOrder { .. })
        ));
    }
}
