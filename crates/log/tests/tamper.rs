//! The tamper suite: one test per class of tampering; each must be reported
//! with the right class and location, and the untouched log must pass.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::path::Path;

use common::fixture::*;
use common::*;
use custody_log::note::Checkpoint;
use custody_log::storage::{self, CHECKPOINTS_FILE, CheckpointLine, LATEST_CHECKPOINT_FILE};
use custody_log::verify::{FindingClass as C, Report, verify_dir};
use custody_log::{Entry, EntryBody, GrantEventKind, Log, SignedCheckpoint, vkey};
use ed25519_dalek::SigningKey;

const SEG: &str = "log-000000.jsonl";

fn verify_trusting(dir: &Path, note: &str) -> Report {
    let mut o = opts();
    o.trusted.push(("trusted.note".into(), note.to_owned()));
    verify_dir(dir, &o).unwrap()
}

#[track_caller]
fn assert_finding(r: &Report, class: C, file: &str, line: u64) {
    assert!(r.failed(false), "expected a failure: {:#?}", r.findings);
    assert!(
        r.has(class, file, line),
        "expected {class:?} at {file}:{line}, got {:#?}",
        r.findings
    );
}

fn fresh() -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().unwrap();
    let n = build(dir.path());
    (dir, n)
}

fn checkpoint_notes(dir: &Path) -> Vec<String> {
    read_lines(&dir.join(CHECKPOINTS_FILE))
        .iter()
        .map(|l| serde_json::from_str::<CheckpointLine>(l).unwrap().note)
        .collect()
}

fn checkpoint_line(note: &str) -> String {
    serde_json::to_string(&CheckpointLine {
        note: note.to_owned(),
    })
    .unwrap()
}

#[test]
fn untouched_log_is_intact() {
    let (dir, n) = fresh();
    assert_eq!(n, 19);
    let r = verify(dir.path());
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.entries, 19);
    assert_eq!(r.sealed_size, 19);
    assert_eq!(r.decisions_checked, 7);
    // And against its own latest checkpoint as the trusted one.
    let latest = std::fs::read_to_string(dir.path().join(LATEST_CHECKPOINT_FILE)).unwrap();
    assert!(verify_trusting(dir.path(), &latest).findings.is_empty());
}

#[test]
fn flipped_byte_in_an_entry() {
    let (dir, _) = fresh();
    let mut lines = read_lines(&seg(dir.path()));
    // Line 6 is seq 5 (a decision); change its request id.
    assert!(lines[5].contains("\"req-1\""));
    lines[5] = lines[5].replace("\"req-1\"", "\"req-7\"");
    write_lines(&seg(dir.path()), &lines);
    let r = verify(dir.path());
    assert_finding(&r, C::ModifiedEntry, SEG, 6);
    assert!(r.classes().contains(&C::CheckpointMismatch));
}

#[test]
fn flipped_byte_that_breaks_the_json() {
    let (dir, _) = fresh();
    let p = seg(dir.path());
    let mut data = std::fs::read(&p).unwrap();
    let lines = read_lines(&p);
    let offset: usize = lines[..3].iter().map(|l| l.len() + 1).sum();
    data[offset] ^= 0x01; // `{` of line 4 becomes `z`
    std::fs::write(&p, data).unwrap();
    let r = verify(dir.path());
    assert_finding(&r, C::MalformedEntry, SEG, 4);
}

#[test]
fn deleted_entry() {
    let (dir, _) = fresh();
    let mut lines = read_lines(&seg(dir.path()));
    lines.remove(7); // seq 7
    write_lines(&seg(dir.path()), &lines);
    let r = verify(dir.path());
    assert_finding(&r, C::MissingEntry, SEG, 8);
    assert!(
        r.findings
            .iter()
            .any(|f| f.class == C::MissingEntry && f.seq == Some(7))
    );
}

#[test]
fn inserted_entry() {
    let (dir, _) = fresh();
    let mut lines = read_lines(&seg(dir.path()));
    // A forged allowed decision with seq 9 linking to seq 8, before the real seq 9.
    let real = Entry::decode(lines[9].as_bytes()).unwrap();
    let forged = Entry {
        body: decision(99, "s3:GetObject", "arn:aws:s3:::reports/secret", true, 2),
        ..real
    };
    lines.insert(9, forged.encode().unwrap());
    write_lines(&seg(dir.path()), &lines);
    let r = verify(dir.path());
    assert_finding(&r, C::InsertedEntry, SEG, 10);
}

#[test]
fn duplicated_entry() {
    let (dir, _) = fresh();
    let mut lines = read_lines(&seg(dir.path()));
    let copy = lines[4].clone();
    lines.insert(5, copy);
    write_lines(&seg(dir.path()), &lines);
    let r = verify(dir.path());
    assert_finding(&r, C::DuplicateEntry, SEG, 6);
}

#[test]
fn reordered_entries() {
    let (dir, _) = fresh();
    let mut lines = read_lines(&seg(dir.path()));
    lines.swap(11, 12);
    write_lines(&seg(dir.path()), &lines);
    let r = verify(dir.path());
    assert_finding(&r, C::ReorderedEntry, SEG, 13);
}

#[test]
fn truncated_tail_with_checkpoints_left() {
    let (dir, _) = fresh();
    let mut lines = read_lines(&seg(dir.path()));
    lines.truncate(16);
    write_lines(&seg(dir.path()), &lines);
    let r = verify(dir.path());
    // The last checkpoint (size 19) is line 5 of checkpoints.jsonl (the first seals
    // the log's first entry at open).
    assert_finding(&r, C::Truncated, CHECKPOINTS_FILE, 5);
}

#[test]
fn truncated_tail_with_checkpoints_removed_caught_by_trusted_checkpoint() {
    let (dir, _) = fresh();
    let trusted = std::fs::read_to_string(dir.path().join(LATEST_CHECKPOINT_FILE)).unwrap();
    let mut lines = read_lines(&seg(dir.path()));
    lines.truncate(15);
    write_lines(&seg(dir.path()), &lines);
    // Keep only checkpoints up to size 15 and make it the latest.
    let notes = checkpoint_notes(dir.path());
    let kept: Vec<String> = notes[..3].iter().map(|n| checkpoint_line(n)).collect();
    write_lines(&dir.path().join(CHECKPOINTS_FILE), &kept);
    std::fs::write(dir.path().join(LATEST_CHECKPOINT_FILE), &notes[2]).unwrap();
    // Without the trusted checkpoint the cut is invisible...
    assert!(!verify(dir.path()).failed(false));
    // ...with it, it is caught.
    let r = verify_trusting(dir.path(), &trusted);
    assert_finding(&r, C::Truncated, "trusted.note", 1);
}

#[test]
fn replayed_older_checkpoint() {
    let (dir, _) = fresh();
    let notes = checkpoint_notes(dir.path());
    let mut lines = read_lines(&dir.path().join(CHECKPOINTS_FILE));
    lines.push(checkpoint_line(&notes[1]));
    write_lines(&dir.path().join(CHECKPOINTS_FILE), &lines);
    std::fs::write(dir.path().join(LATEST_CHECKPOINT_FILE), &notes[1]).unwrap();
    let r = verify(dir.path());
    assert_finding(&r, C::Rollback, CHECKPOINTS_FILE, 6);
    assert_finding(&r, C::Rollback, LATEST_CHECKPOINT_FILE, 1);
}

#[test]
fn rolled_back_log_against_trusted_checkpoint() {
    // The whole directory is replaced by an older copy of itself.
    let (dir, _) = fresh();
    let old = tempfile::tempdir().unwrap();
    for f in [SEG, CHECKPOINTS_FILE, LATEST_CHECKPOINT_FILE] {
        std::fs::copy(dir.path().join(f), old.path().join(f)).unwrap();
    }
    let log = Log::open(config(dir.path()), key()).unwrap();
    log.append(outcome(1)).unwrap();
    let trusted = log.close().unwrap();
    let r = verify_trusting(old.path(), &trusted.note);
    assert_finding(&r, C::Rollback, "trusted.note", 1);
    assert!(r.classes().contains(&C::Truncated));
}

#[test]
fn forked_checkpoint() {
    // The gateway (it has the key) rewrote history: a second log with the
    // same origin and key but different entries from seq 3 on.
    let (dir, _) = fresh();
    let fork = tempfile::tempdir().unwrap();
    let mut entries = entries(dir.path());
    entries[3].body = decision(0, "s3:GetObject", "arn:aws:s3:::reports/other", true, 2);
    rewrite_signed(fork.path(), &entries, &key());
    let forked = std::fs::read_to_string(fork.path().join(LATEST_CHECKPOINT_FILE)).unwrap();
    // Given as the trusted checkpoint: same size, different root.
    let r = verify_trusting(dir.path(), &forked);
    assert_finding(&r, C::Fork, "trusted.note", 1);
    // Slipped into the log's own checkpoints.
    let mut lines = read_lines(&dir.path().join(CHECKPOINTS_FILE));
    lines.push(checkpoint_line(&forked));
    write_lines(&dir.path().join(CHECKPOINTS_FILE), &lines);
    let r = verify(dir.path());
    assert_finding(&r, C::Fork, CHECKPOINTS_FILE, 6);
}

#[test]
fn checkpoint_signed_by_another_key() {
    let (dir, _) = fresh();
    let notes = checkpoint_notes(dir.path());
    let (cp, _) = SignedCheckpoint::parse(&notes[3]).unwrap();
    let other = SigningKey::from_bytes(&[9; 32]);
    let forged = cp.checkpoint.sign(ORIGIN, &other).unwrap();
    let mut lines = read_lines(&dir.path().join(CHECKPOINTS_FILE));
    lines[3] = checkpoint_line(&forged.note);
    write_lines(&dir.path().join(CHECKPOINTS_FILE), &lines);
    let r = verify(dir.path());
    assert_finding(&r, C::BadSignature, CHECKPOINTS_FILE, 4);
}

#[test]
fn entry_spliced_from_another_log() {
    let (dir, _) = fresh();
    let other = tempfile::tempdir().unwrap();
    let mut cfg = config(other.path());
    cfg.origin = "other.test/log".into();
    let log = Log::open(cfg, key()).unwrap();
    log.append(decision(
        1,
        "s3:GetObject",
        "arn:aws:s3:::reports/x",
        true,
        0,
    ))
    .unwrap();
    log.close().unwrap();
    let foreign = read_lines(&seg(other.path()))[1].clone();
    let mut lines = read_lines(&seg(dir.path()));
    lines.insert(6, foreign);
    write_lines(&seg(dir.path()), &lines);
    let r = verify(dir.path());
    assert_finding(&r, C::SplicedEntry, SEG, 7);
}

#[test]
fn torn_write_below_a_checkpoint() {
    let (dir, _) = fresh();
    let p = seg(dir.path());
    let lines = read_lines(&p);
    let keep: usize = lines[..12].iter().map(|l| l.len() + 1).sum::<usize>() + 20;
    let data = std::fs::read(&p).unwrap();
    std::fs::write(&p, &data[..keep]).unwrap();
    let r = verify(dir.path());
    assert_finding(&r, C::TornWrite, SEG, 13);
}

#[test]
fn torn_tail_after_the_last_checkpoint_is_a_warning() {
    let (dir, _) = fresh();
    let p = seg(dir.path());
    let mut data = std::fs::read(&p).unwrap();
    data.extend_from_slice(b"{\"seq\":19,\"ti");
    std::fs::write(&p, data).unwrap();
    let r = verify(dir.path());
    assert!(!r.failed(false), "{:#?}", r.findings);
    assert!(r.has(C::TornTail, SEG, 20));
    assert!(r.failed(true));
}

#[test]
fn unsealed_tail_is_a_warning_and_a_failure_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_every_entries = 1000;
    let log = Log::open(cfg, key()).unwrap();
    log.checkpoint_now().unwrap();
    for i in 0..3 {
        log.append(outcome(i)).unwrap();
    }
    std::mem::forget(log); // crash: no final checkpoint
    let r = verify(dir.path());
    assert!(!r.failed(false), "{:#?}", r.findings);
    assert!(r.has(C::UnsealedTail, SEG, 2));
    assert!(r.failed(true));
}

#[test]
fn time_going_backwards() {
    let (dir, _) = fresh();
    let mut entries = entries(dir.path());
    entries[8].time = entries[7].time - time::Duration::seconds(5);
    rewrite_signed(dir.path(), &entries, &key());
    let r = verify(dir.path());
    assert_finding(&r, C::TimeBackwards, SEG, 9);
    assert_eq!(r.classes().len(), 1, "{:#?}", r.findings);
}

#[test]
fn allowed_request_outside_its_grant() {
    let (dir, _) = fresh();
    let mut entries = entries(dir.path());
    // seq 9 allowed s3:GetObject on reports/r3; make it s3:DeleteObject.
    entries[9].body = decision(3, "s3:DeleteObject", "arn:aws:s3:::reports/r3", true, 2);
    rewrite_signed(dir.path(), &entries, &key());
    let r = verify(dir.path());
    assert_finding(&r, C::UnauthorizedAllow, SEG, 10);
    assert_eq!(r.classes().len(), 1, "{:#?}", r.findings);
}

#[test]
fn allowed_request_after_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(config(dir.path()), key()).unwrap();
    let act = log
        .append(grant_event(GrantEventKind::Activated, "active"))
        .unwrap()
        .seq;
    log.append(decision(
        0,
        "s3:GetObject",
        "arn:aws:s3:::reports/a",
        true,
        act,
    ))
    .unwrap();
    let rev = log
        .append(grant_event(GrantEventKind::Revoked, "revoked"))
        .unwrap()
        .seq;
    log.append(decision(
        1,
        "s3:GetObject",
        "arn:aws:s3:::reports/a",
        true,
        rev,
    ))
    .unwrap();
    log.close().unwrap();
    let r = verify(dir.path());
    assert_finding(&r, C::UnauthorizedAllow, SEG, 5);
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
}

#[test]
fn key_rotation_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(config(dir.path()), key()).unwrap();
    log.append(outcome(1)).unwrap();
    log.rotate_key(SigningKey::from_bytes(&[5; 32])).unwrap();
    log.append(outcome(2)).unwrap();
    log.close().unwrap();
    let r = verify(dir.path());
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    // A key nobody announced is still rejected.
    let mut lines = read_lines(&dir.path().join(CHECKPOINTS_FILE));
    let (cp, _) = SignedCheckpoint::parse(
        &serde_json::from_str::<CheckpointLine>(&lines[0])
            .unwrap()
            .note,
    )
    .unwrap();
    let rogue = cp
        .checkpoint
        .sign(ORIGIN, &SigningKey::from_bytes(&[6; 32]))
        .unwrap();
    lines.push(checkpoint_line(&rogue.note));
    write_lines(&dir.path().join(CHECKPOINTS_FILE), &lines);
    let n = lines.len() as u64;
    assert_finding(&verify(dir.path()), C::BadSignature, CHECKPOINTS_FILE, n);
}

#[test]
fn empty_checkpoint_and_start_entry_shapes() {
    // Sanity: the started entry names the vkey the checkpoints verify under.
    let (dir, _) = fresh();
    let first = Entry::decode(read_lines(&seg(dir.path()))[0].as_bytes()).unwrap();
    match first.body {
        EntryBody::GatewayStarted { vkey: v, .. } => {
            assert_eq!(v, vkey(ORIGIN, &key().verifying_key()))
        }
        other => panic!("{other:?}"),
    }
    assert!(Checkpoint::parse("x\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n").is_ok());
    let _ = storage::segment_name(1);
}

#[test]
fn checkpoint_time_going_backwards() {
    let (dir, _) = fresh();
    let notes = checkpoint_notes(dir.path());
    // Re-sign the last checkpoint (the gateway has the key) with an earlier time.
    let (cp, _) = SignedCheckpoint::parse(&notes[3]).unwrap();
    let mut body = cp.checkpoint.clone();
    body.extensions = vec!["time 2020-01-01T00:00:00.000000Z".into()];
    let older = body.sign(ORIGIN, &key()).unwrap();
    let mut lines = read_lines(&dir.path().join(CHECKPOINTS_FILE));
    lines[3] = checkpoint_line(&older.note);
    write_lines(&dir.path().join(CHECKPOINTS_FILE), &lines);
    std::fs::write(dir.path().join(LATEST_CHECKPOINT_FILE), &older.note).unwrap();
    let r = verify(dir.path());
    assert_finding(&r, C::TimeBackwards, CHECKPOINTS_FILE, 4);
    assert!(verify(fresh().0.path()).latest_checkpoint_time.is_some());
}

#[test]
fn multi_segment_log_and_a_deleted_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.segment_max_bytes = 1500;
    let log = Log::open(cfg, key()).unwrap();
    for i in 0..40 {
        log.append(outcome(i)).unwrap();
    }
    log.close().unwrap();
    let segs = storage::list_segments(dir.path()).unwrap();
    assert!(segs.len() >= 4, "{segs:?}");
    let r = verify(dir.path());
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.entries, 42);

    std::fs::remove_file(&segs[1].1).unwrap();
    let r = verify(dir.path());
    let third = storage::segment_name(segs[2].0);
    assert_finding(&r, C::MissingEntry, &third, 1);
}

#[test]
fn a_re_signed_log_in_other_bytes_than_the_writers_is_refused() {
    let (dir, _) = fresh();
    let entries = entries(dir.path());
    // The signed control: the same entries, re-signed canonically, verify.
    rewrite_signed(dir.path(), &entries, &key());
    assert!(!verify(dir.path()).failed(false));
    // Header fields out of order (line 4), a time in another format (line 5), invalid
    // UTF-8 in a field the header check does not read (line 6), a grant event with its
    // fields reordered (line 2).
    rewrite_signed_bytes(dir.path(), &entries, &key(), |i, line| match i {
        // Re-encoded by another serializer: keys in alphabetical order.
        3 => {
            serde_json::to_vec(&serde_json::from_str::<serde_json::Value>(&line).unwrap()).unwrap()
        }
        // A space after a colon.
        4 => line.replacen("{\"seq\":", "{\"seq\": ", 1).into_bytes(),
        // A byte that is not UTF-8 inside a string the header check does not read.
        5 => {
            let mut b = line.into_bytes();
            let at = b.windows(10).position(|w| w == b"\"reason\":\"").unwrap() + 10;
            b[at] = 0xff;
            b
        }
        // A grant event with a space before its kind (the header's last field).
        1 => line.replacen(",\"kind\"", ", \"kind\"", 1).into_bytes(),
        _ => line.into_bytes(),
    });
    for (i, e) in entries.iter().enumerate() {
        assert!(
            i != 5 || matches!(e.body, EntryBody::RequestDecision(_)),
            "line 6 is a decision: {e:?}"
        );
    }
    let r = verify(dir.path());
    for line in [2, 4, 5, 6] {
        assert!(
            r.has(C::MalformedEntry, SEG, line),
            "line {line}: {:#?}",
            r.findings
        );
    }
}

#[test]
fn entries_written_before_a_field_was_added_still_verify() {
    // A `recovered` entry as writers before `unsealed_entries` existed wrote it: the same
    // header, a body without the two fields (they default on decode).
    let (dir, _) = fresh();
    let mut entries = entries(dir.path());
    let at = 3;
    entries.insert(
        at,
        Entry {
            seq: 0,
            time: entries[at - 1].time,
            origin: ORIGIN.into(),
            prev: Default::default(),
            body: EntryBody::Recovered {
                segment: SEG.into(),
                cut_bytes: 0,
                cut_sha256: String::new(),
                unsealed_entries: 0,
                unsealed_sha256: String::new(),
            },
        },
    );
    for (i, e) in entries.iter_mut().enumerate() {
        e.seq = i as u64;
    }
    rewrite_signed_bytes(dir.path(), &entries, &key(), |i, line| {
        if i == at {
            let cut = line.find(",\"unsealed_entries\"").unwrap();
            format!("{}}}", &line[..cut]).into_bytes()
        } else {
            line.into_bytes()
        }
    });
    let text = std::fs::read_to_string(seg(dir.path())).unwrap();
    assert!(!text.lines().nth(at).unwrap().contains("unsealed"));
    let r = verify(dir.path());
    assert!(!r.failed(false), "{:#?}", r.findings);
}
