//! The start-up check: a writer never continues (and so never re-signs) a log that is
//! not the one it signed — rewritten history, deleted checkpoints, removed entries, a
//! forked or foreign checkpoint copy. A crash's unsealed tail is accepted, counted and
//! hashed in the `recovered` entry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::path::Path;

use common::*;
use custody_log::merkle::leaf_hash;
use custody_log::note::Checkpoint;
use custody_log::{Entry, EntryBody, Log, LogError, storage};
use sha2::{Digest, Sha256};

fn segment(dir: &Path) -> std::path::PathBuf {
    dir.join(storage::segment_name(0))
}

fn read_lines(dir: &Path) -> Vec<String> {
    let data = std::fs::read(segment(dir)).unwrap();
    let data = storage::trim_padding(&data);
    String::from_utf8(data.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Rewrites the segment with `edit` applied to line `at`, then re-chains every later
/// entry's `prev` (what an attacker without the key but with write access can do).
fn forge(dir: &Path, at: usize, edit: impl Fn(&str) -> String) {
    let mut lines = read_lines(dir);
    lines[at] = edit(&lines[at]);
    for i in at + 1..lines.len() {
        let prev = leaf_hash(lines[i - 1].as_bytes()).to_hex();
        let mut v: serde_json::Value = serde_json::from_str(&lines[i]).unwrap();
        v["prev"] = prev.into();
        // Keep the canonical field order: re-encode through the entry type.
        let e: Entry = serde_json::from_value(v).unwrap();
        lines[i] = e.encode().unwrap();
    }
    let mut out = lines.join("\n");
    out.push('\n');
    std::fs::write(segment(dir), out).unwrap();
}

fn widen(line: &str) -> String {
    line.replace("\"status\":200", "\"status\":201")
}

/// A closed log of a few entries.
fn sealed_log(dir: &Path) {
    let log = Log::open(config(dir), key()).unwrap();
    for i in 0..5 {
        log.append(outcome(i)).unwrap();
    }
    log.close().unwrap();
}

fn refused(dir: &Path, why: &str) -> String {
    match Log::open(config(dir), key()) {
        Err(LogError::Corrupt { reason, .. }) => {
            assert!(reason.contains(why), "expected `{why}` in: {reason}");
            reason
        }
        Err(other) => panic!("expected Corrupt `{why}`, got {other}"),
        Ok(_) => panic!("the writer continued a log that fails `{why}`"),
    }
}

#[test]
fn restarting_does_not_re_sign_rewritten_history_with_checkpoints_deleted() {
    let dir = tempfile::tempdir().unwrap();
    sealed_log(dir.path());
    forge(dir.path(), 2, widen);
    std::fs::remove_file(dir.path().join(storage::CHECKPOINTS_FILE)).unwrap();
    std::fs::remove_file(dir.path().join(storage::LATEST_CHECKPOINT_FILE)).unwrap();
    let reason = refused(dir.path(), "no checkpoint signed by this log's key");
    assert!(reason.contains("move it aside"), "{reason}");
}

#[test]
fn restarting_does_not_re_sign_history_the_copy_contradicts() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_copy_dir = Some(copy.path().to_owned());
    let log = Log::open(cfg.clone(), key()).unwrap();
    for i in 0..5 {
        log.append(outcome(i)).unwrap();
    }
    log.close().unwrap();
    let copy_before = std::fs::read(copy.path().join(storage::LATEST_CHECKPOINT_FILE)).unwrap();
    forge(dir.path(), 2, widen);
    std::fs::remove_file(dir.path().join(storage::CHECKPOINTS_FILE)).unwrap();
    std::fs::remove_file(dir.path().join(storage::LATEST_CHECKPOINT_FILE)).unwrap();
    match Log::open(cfg, key()) {
        Err(LogError::Corrupt { reason, .. }) => {
            assert!(reason.contains("signed root"), "{reason}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // The copy is left as it was: it is the evidence.
    let copy_after = std::fs::read(copy.path().join(storage::LATEST_CHECKPOINT_FILE)).unwrap();
    assert_eq!(copy_before, copy_after);
}

#[test]
fn a_re_chained_edit_under_a_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    sealed_log(dir.path());
    forge(dir.path(), 2, widen);
    refused(dir.path(), "signed root");
}

#[test]
fn an_edit_that_breaks_the_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    sealed_log(dir.path());
    let mut lines = read_lines(dir.path());
    lines[2] = widen(&lines[2]);
    std::fs::write(segment(dir.path()), lines.join("\n") + "\n").unwrap();
    refused(dir.path(), "entry 3: prev is");
}

#[test]
fn removed_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    sealed_log(dir.path());
    let lines = read_lines(dir.path());
    let kept = lines[..lines.len() - 2].join("\n") + "\n";
    std::fs::write(segment(dir.path()), kept).unwrap();
    refused(dir.path(), "entries were removed");
}

#[test]
fn a_forked_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    sealed_log(dir.path());
    // A checkpoint of the same size with another root, signed with the log's key (as a
    // second writer on another copy of the log would).
    let latest = std::fs::read_to_string(dir.path().join(storage::LATEST_CHECKPOINT_FILE)).unwrap();
    let (cp, _) = custody_log::SignedCheckpoint::parse(&latest).unwrap();
    let forked = Checkpoint {
        root: leaf_hash(b"another history"),
        ..cp.checkpoint
    }
    .sign(ORIGIN, &key())
    .unwrap();
    std::fs::write(
        copy.path().join(storage::LATEST_CHECKPOINT_FILE),
        forked.note,
    )
    .unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_copy_dir = Some(copy.path().to_owned());
    match Log::open(cfg, key()) {
        Err(LogError::Corrupt { reason, .. }) => assert!(reason.contains("a fork"), "{reason}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn a_copy_signed_by_another_key_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    sealed_log(dir.path());
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let foreign = Checkpoint {
        origin: ORIGIN.into(),
        size: 1,
        root: leaf_hash(b"x"),
        extensions: vec![],
    }
    .sign(ORIGIN, &other)
    .unwrap();
    let path = copy.path().join(storage::LATEST_CHECKPOINT_FILE);
    std::fs::write(&path, &foreign.note).unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_copy_dir = Some(copy.path().to_owned());
    match Log::open(cfg, key()) {
        Err(LogError::Corrupt { reason, .. }) => {
            assert!(reason.contains("does not verify"), "{reason}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), foreign.note);
}

#[test]
fn a_copy_changed_while_running_fails_the_log_closed() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_copy_dir = Some(copy.path().to_owned());
    let log = Log::open(cfg, key()).unwrap();
    log.append(outcome(1)).unwrap();
    log.checkpoint_now().unwrap();
    let path = copy.path().join(storage::LATEST_CHECKPOINT_FILE);
    std::fs::write(&path, "someone else's checkpoint").unwrap();
    let e = log.checkpoint_now().unwrap_err();
    assert!(e.to_string().contains("changed behind"), "{e}");
    assert!(log.append(outcome(2)).is_err(), "the log is failed closed");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "someone else's checkpoint"
    );
}

#[test]
fn an_unsealed_tail_is_accepted_and_recorded_as_sealed_late() {
    let live = tempfile::tempdir().unwrap();
    let image = tempfile::tempdir().unwrap();
    let log = Log::open(config(live.path()), key()).unwrap();
    // Sealed at open (its first entry); 3 more stay unsealed (a checkpoint every 10).
    for i in 0..3 {
        log.append(outcome(i)).unwrap();
    }
    // The crash image: what is on disk now.
    for e in std::fs::read_dir(live.path()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), image.path().join(e.file_name())).unwrap();
    }
    drop(log);
    // Entries after the last checkpoint cannot be checked; an attacker may have edited
    // them before the restart. They are accepted, but the recovery entry names them.
    forge(image.path(), 3, widen);
    let tail: Vec<String> = read_lines(image.path())[1..].to_vec();
    let mut expected = Sha256::new();
    for l in &tail {
        expected.update(l.as_bytes());
        expected.update(b"\n");
    }
    let reopened = Log::open(config(image.path()), key()).unwrap();
    reopened.close().unwrap();
    let lines = read_lines(image.path());
    let rec = lines
        .iter()
        .map(|l| Entry::decode(l.as_bytes()).unwrap())
        .find_map(|e| match e.body {
            EntryBody::Recovered {
                unsealed_entries,
                unsealed_sha256,
                ..
            } => Some((unsealed_entries, unsealed_sha256)),
            _ => None,
        })
        .expect("a recovered entry");
    assert_eq!(rec.0, 3);
    assert_eq!(rec.1, hex::encode(expected.finalize()));
}

#[test]
fn a_clean_restart_continues() {
    let dir = tempfile::tempdir().unwrap();
    sealed_log(dir.path());
    let log = Log::open(config(dir.path()), key()).unwrap();
    log.append(outcome(9)).unwrap();
    log.close().unwrap();
    assert!(
        read_lines(dir.path())
            .iter()
            .all(|l| !l.contains("\"kind\":\"recovered\"")),
        "a clean stop needs no recovery"
    );
}
