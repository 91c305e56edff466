//! Our Merkle tree, inclusion and consistency proofs against an independent RFC 6962 /
//! RFC 9162 implementation: the `ct-merkle` crate (its own tree, its own proof builder and
//! its own verifier, sharing no code with ours). Both directions: what we make, it accepts;
//! what it makes, we accept; what either rejects, both reject.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use common::fixture::*;
use common::*;
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof as CtConsistency, InclusionProof as CtInclusion, RootHash};
use custody_log::consistency::make_consistency;
use custody_log::merkle::{
    CompactTree, Hash, consistency_proof, consistency_proof_extending, inclusion_proof, leaf_hash,
    root_of, verify_consistency, verify_inclusion,
};
use custody_log::receipt::make_receipt;
use custody_log::storage::CheckpointLine;
use custody_log::verify::read_dir;
use custody_log::{SignedCheckpoint, parse_vkey, vkey};
use sha2::Sha256;

type CtTree = MemoryBackedTree<Sha256, Vec<u8>>;

fn bytes(proof: &[Hash]) -> Vec<u8> {
    proof.iter().flat_map(|h| h.0).collect()
}

fn hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks(32)
        .map(|c| Hash(c.try_into().unwrap()))
        .collect()
}

fn ct_root(root: &Hash, size: u64) -> RootHash<Sha256> {
    RootHash::new(root.0.into(), size)
}

/// Leaves of varied length, as log lines are.
fn values(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{{\"seq\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 7)).into_bytes())
        .collect()
}

#[test]
fn roots_agree_for_every_size() {
    let vals = values(300);
    let mut theirs = CtTree::new();
    let mut ours = CompactTree::new();
    for v in &vals {
        theirs.push(v.clone());
        ours.push(leaf_hash(v));
        assert_eq!(
            theirs.root().as_bytes().as_slice(),
            &ours.root().0,
            "size {}",
            ours.size()
        );
    }
}

#[test]
fn consistency_proofs_agree_both_ways_for_every_pair() {
    let vals = values(72);
    let leaves: Vec<Hash> = vals.iter().map(|v| leaf_hash(v)).collect();
    let mut theirs = CtTree::new();
    for n in 1..=vals.len() {
        theirs.push(vals[n - 1].clone());
        let new_root = root_of(&leaves[..n]);
        for m in 1..n {
            let old_root = root_of(&leaves[..m]);
            let ours = consistency_proof(&leaves[..n], m as u64).unwrap();
            let their_proof = theirs.prove_consistency(n - m);
            assert_eq!(their_proof.as_bytes(), bytes(&ours), "{m} -> {n}");

            // Ours (also as the writer makes it, from the compact range) checked by theirs.
            let mut older = CompactTree::new();
            for l in &leaves[..m] {
                older.push(*l);
            }
            let extending = consistency_proof_extending(&older, &leaves[m..n]).unwrap();
            assert_eq!(extending, ours);
            let parsed = CtConsistency::<Sha256>::try_from_bytes(bytes(&ours)).unwrap();
            ct_root(&new_root, n as u64)
                .verify_consistency(&ct_root(&old_root, m as u64), &parsed)
                .unwrap_or_else(|e| panic!("{m} -> {n}: ct-merkle refused ours: {e:?}"));
            // Theirs checked by ours.
            verify_consistency(
                m as u64,
                n as u64,
                &old_root,
                &new_root,
                &hashes(their_proof.as_bytes()),
            )
            .unwrap();

            // A changed hash, or the older root of another history: both refuse.
            for i in 0..ours.len() {
                let mut bad = ours.clone();
                bad[i].0[5] ^= 0x40;
                let parsed = CtConsistency::<Sha256>::try_from_bytes(bytes(&bad)).unwrap();
                assert!(
                    ct_root(&new_root, n as u64)
                        .verify_consistency(&ct_root(&old_root, m as u64), &parsed)
                        .is_err()
                );
                assert!(
                    verify_consistency(m as u64, n as u64, &old_root, &new_root, &bad).is_err()
                );
            }
            let mut forked = leaves[..m].to_vec();
            forked[m / 2] = leaf_hash(b"forged");
            let forked_root = root_of(&forked);
            let parsed = CtConsistency::<Sha256>::try_from_bytes(bytes(&ours)).unwrap();
            assert!(
                ct_root(&new_root, n as u64)
                    .verify_consistency(&ct_root(&forked_root, m as u64), &parsed)
                    .is_err()
            );
            assert!(
                verify_consistency(m as u64, n as u64, &forked_root, &new_root, &ours).is_err()
            );
        }
    }
}

#[test]
fn inclusion_proofs_agree_both_ways() {
    let vals = values(70);
    let leaves: Vec<Hash> = vals.iter().map(|v| leaf_hash(v)).collect();
    let mut theirs = CtTree::new();
    for n in 1..=vals.len() {
        theirs.push(vals[n - 1].clone());
        let root = root_of(&leaves[..n]);
        for i in 0..n {
            let ours = inclusion_proof(&leaves[..n], i as u64).unwrap();
            let their_proof = theirs.prove_inclusion(i);
            assert_eq!(their_proof.as_bytes(), bytes(&ours), "leaf {i} of {n}");
            let parsed = CtInclusion::<Sha256>::try_from_bytes(bytes(&ours)).unwrap();
            ct_root(&root, n as u64)
                .verify_inclusion(&vals[i], i as u64, &parsed)
                .unwrap();
            verify_inclusion(
                i as u64,
                n as u64,
                &leaves[i],
                &hashes(their_proof.as_bytes()),
                &root,
            )
            .unwrap();
        }
    }
}

/// What the log hands an auditor (receipts, consistency proofs between its signed
/// checkpoints) checks with the independent implementation too.
#[test]
fn receipts_and_consistency_proofs_from_a_real_log_check_independently() {
    let dir = tempfile::tempdir().unwrap();
    let n = build(dir.path());
    let keys = vec![parse_vkey(&vkey(ORIGIN, &key().verifying_key())).unwrap()];
    let files = read_dir(dir.path()).unwrap();
    for seq in 0..n {
        let r = make_receipt(&files, seq, &keys).unwrap();
        let cp = SignedCheckpoint::open(&r.checkpoint, &keys[0]).unwrap();
        let parsed = CtInclusion::<Sha256>::try_from_bytes(bytes(&r.proof)).unwrap();
        ct_root(&cp.checkpoint.root, cp.checkpoint.size)
            .verify_inclusion(&r.entry.as_bytes(), seq, &parsed)
            .unwrap_or_else(|e| panic!("receipt {seq}: {e:?}"));
    }
    let notes: Vec<String> = String::from_utf8(files.checkpoints.unwrap())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<CheckpointLine>(l).unwrap().note)
        .collect();
    assert!(notes.len() >= 3, "the fixture seals every 5 entries");
    let mut checked = 0;
    for (i, old) in notes.iter().enumerate() {
        for new in &notes[i..] {
            let p = make_consistency(dir.path(), old, Some(new), &keys).unwrap();
            let (o, nw) = (
                SignedCheckpoint::open(&p.old, &keys[0]).unwrap().checkpoint,
                SignedCheckpoint::open(&p.new, &keys[0]).unwrap().checkpoint,
            );
            if o.size == 0 || o.size == nw.size {
                continue; // ct-merkle has no proof from the empty tree or to itself
            }
            let parsed = CtConsistency::<Sha256>::try_from_bytes(bytes(&p.proof)).unwrap();
            ct_root(&nw.root, nw.size)
                .verify_consistency(&ct_root(&o.root, o.size), &parsed)
                .unwrap_or_else(|e| panic!("{} -> {}: {e:?}", o.size, nw.size));
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked} proofs checked");
}
