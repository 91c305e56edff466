//! Inclusion receipts and the verifier's robustness on arbitrary input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use common::fixture::*;
use common::*;
use custody_log::merkle::Hash;
use custody_log::receipt::{ReceiptError, check_receipt, make_receipt};
use custody_log::verify::{LogFiles, VerifyOptions, read_dir, verify_files};
use custody_log::{parse_vkey, vkey};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

fn keys() -> Vec<custody_log::NoteVerifier> {
    vec![parse_vkey(&vkey(ORIGIN, &key().verifying_key())).unwrap()]
}

#[test]
fn receipts_for_every_entry_check_without_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let n = build(dir.path());
    let files = read_dir(dir.path()).unwrap();
    for seq in 0..n {
        let r = make_receipt(&files, seq, &keys()).unwrap();
        // Round-trips through JSON, the form an auditor keeps.
        let r: custody_log::receipt::Receipt =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        let e = check_receipt(&r, &keys()).unwrap();
        assert_eq!(e.seq, seq);
        if seq % 9 != 0 {
            continue; // the negative checks cost signature checks; a few suffice
        }

        let mut bad = r.clone();
        bad.entry = bad.entry.replacen("\"seq\"", "\"seq\" ", 1);
        assert!(matches!(
            check_receipt(&bad, &keys()),
            Err(ReceiptError::Proof(_))
        ));
        let mut bad = r.clone();
        if let Some(h) = bad.proof.first_mut() {
            h.0[0] ^= 1;
            assert!(check_receipt(&bad, &keys()).is_err());
        }
        let other = vec![
            parse_vkey(&vkey(
                ORIGIN,
                &SigningKey::from_bytes(&[3; 32]).verifying_key(),
            ))
            .unwrap(),
        ];
        assert!(matches!(
            check_receipt(&r, &other),
            Err(ReceiptError::Checkpoint(_))
        ));
    }
    assert!(matches!(
        make_receipt(&files, n, &keys()),
        Err(ReceiptError::NoSuchEntry(_))
    ));
    let _ = Hash::default();
}

#[test]
fn unsealed_entries_get_no_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_every_entries = 1000;
    let log = custody_log::Log::open(cfg, key()).unwrap();
    log.checkpoint_now().unwrap();
    log.append(outcome(1)).unwrap();
    let files = read_dir(dir.path()).unwrap();
    assert!(make_receipt(&files, 0, &keys()).is_ok());
    assert!(matches!(
        make_receipt(&files, 1, &keys()),
        Err(ReceiptError::NotSealed(1))
    ));
    log.close().unwrap();
}

fn base_log() -> &'static LogFiles {
    static BASE: std::sync::OnceLock<LogFiles> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path());
        read_dir(dir.path()).unwrap()
    })
}

fn mutate(base: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut d = base.to_vec();
    for (i, b) in edits {
        if !d.is_empty() {
            let n = d.len();
            d[i % n] = *b;
        }
    }
    let keep = d.len().saturating_sub(cut % (d.len() + 1));
    d.truncate(keep);
    d
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn verifier_never_panics_on_arbitrary_bytes(
        seg in proptest::collection::vec(any::<u8>(), 0..2048),
        ck in proptest::collection::vec(any::<u8>(), 0..1024),
        latest in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let files = LogFiles { segments: vec![("log-000000.jsonl".into(), seg)], checkpoints: Some(ck), latest: Some(latest) };
        let opts = VerifyOptions { keys: keys(), ..Default::default() };
        let _ = verify_files(&files, &opts);
        let _ = custody_log::query::select(&files, &custody_log::query::Filter::default());
    }

    #[test]
    fn verifier_never_panics_on_mutated_logs(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8), cut in any::<usize>(), ck_cut in any::<usize>()) {
        // Mutations of a real log reach deeper code than random bytes.
        let base = base_log();
        let files = LogFiles {
            segments: vec![("log-000000.jsonl".into(), mutate(&base.segments[0].1, &edits, cut))],
            checkpoints: base.checkpoints.as_ref().map(|c| mutate(c, &edits[..edits.len().min(2)], ck_cut)),
            latest: base.latest.clone(),
        };
        let opts = VerifyOptions { keys: keys(), ..Default::default() };
        let r = verify_files(&files, &opts).unwrap();
        if !edits.is_empty() || cut % (base.segments[0].1.len() + 1) != 0 {
            // Any real change below the final checkpoint is a failure.
            let changed = files.segments[0].1 != base.segments[0].1;
            prop_assert!(!changed || r.failed(true));
        }
    }
}
