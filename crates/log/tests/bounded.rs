//! The verifier is bounded by design: crafted inputs cost it findings, not memory or time
//! in proportion to what they claim, and it reads only regular files of the log directory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::fixture::{build, decision, grant, rewrite_signed, seg};
use common::*;
use custody_log::verify::{FindingClass as C, MAX_FINDINGS_PER_CLASS, VerifyError, verify_dir};
use custody_log::{Entry, EntryBody, GrantEvent, GrantEventKind, Hash};

/// A line that parses as an entry of this log with `seq`.
fn entry_line(seq: u64) -> String {
    Entry {
        seq,
        time: time::macros::datetime!(2026-12-01 00:00 UTC),
        origin: ORIGIN.into(),
        prev: Hash::default(),
        body: EntryBody::GatewayStopped { reason: "x".into() },
    }
    .encode()
    .unwrap()
}

#[test]
fn sequence_jumps_are_one_finding_per_run_not_one_per_missing_number() {
    let dir = tempfile::tempdir().unwrap();
    // 3,000 lines whose sequence numbers jump by 20,000: 60 million "missing" entries.
    let text: String = (0..3000u64)
        .map(|i| entry_line(i * 20_000) + "\n")
        .collect();
    std::fs::write(seg(dir.path()), text).unwrap();
    let started = Instant::now();
    let r = verify(dir.path());
    eprintln!("{:?} for {} findings", started.elapsed(), r.findings.len());
    let missing: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.class == C::MissingEntry)
        .collect();
    // Each gap is one run; the runs sit on consecutive lines, so they are one finding.
    assert_eq!(missing.len(), 1, "{missing:#?}");
    assert_eq!(missing[0].count, 2999);
    assert_eq!(missing[0].through_line, Some(3000));
    assert!(
        missing[0].message.contains("(19999 entries)"),
        "{}",
        missing[0].message
    );
    assert!(r.findings.len() as u64 <= 8 * MAX_FINDINGS_PER_CLASS);
}

#[test]
fn empty_lines_and_overlong_lines_are_findings_not_memory() {
    let dir = tempfile::tempdir().unwrap();
    // 256 Ki empty lines, then a line of 32 MiB (the release-build figures for 16 MiB
    // and more are in docs/benchmarks.md: `benches/verify-crafted.sh`).
    let mut data = vec![b'\n'; 1 << 18];
    data.extend(std::iter::repeat_n(b'x', 32 << 20));
    data.push(b'\n');
    std::fs::write(seg(dir.path()), &data).unwrap();
    drop(data);
    let r = verify(dir.path());
    let malformed: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.class == C::MalformedEntry)
        .collect();
    // One run: the empty lines and the long one after them.
    assert_eq!(malformed.len(), 1, "{malformed:#?}");
    assert_eq!(malformed[0].count, (1 << 18) + 1);
    assert!(r.finding_count() > 1 << 18);
    assert!(r.failed(false));
    let long = tempfile::tempdir().unwrap();
    let mut data = entry_line(0).into_bytes();
    data.push(b'\n');
    data.extend(std::iter::repeat_n(b'y', 10 << 20));
    data.push(b'\n');
    std::fs::write(seg(long.path()), &data).unwrap();
    let r = verify(long.path());
    assert!(
        r.findings
            .iter()
            .any(|f| f.class == C::MalformedEntry && f.message.contains("not read whole")),
        "{:#?}",
        r.findings
    );
}

#[test]
fn many_distinct_findings_are_capped_per_class_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    // Malformed lines separated by good ones: no run to coalesce.
    let text: String = (0..1000u64)
        .map(|i| format!("{}\nnot json {i}\n", entry_line(2 * i)))
        .collect();
    std::fs::write(seg(dir.path()), text).unwrap();
    let r = verify(dir.path());
    let kept = r
        .findings
        .iter()
        .filter(|f| f.class == C::MalformedEntry)
        .count() as u64;
    assert_eq!(kept, MAX_FINDINGS_PER_CLASS);
    assert_eq!(
        r.suppressed[&C::MalformedEntry].1,
        1000 - MAX_FINDINGS_PER_CLASS
    );
    assert!(r.failed(false));
}

#[cfg(unix)]
#[test]
fn fifos_devices_and_links_out_of_the_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    // A FIFO as a segment would hang a reader that opens it.
    let fifo = dir.path().join("log-000001.jsonl");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let d = dir.path().to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(verify_dir(&d, &opts()).map(|_| ()));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the verifier does not hang on a FIFO");
    assert!(
        matches!(result, Err(VerifyError::NotRegular { .. })),
        "{result:?}"
    );
    std::fs::remove_file(&fifo).unwrap();

    // A link to a device, and a link to a file outside the directory.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x"), entry_line(0) + "\n").unwrap();
    for target in [Path::new("/dev/zero"), &outside.path().join("x")] {
        let link = dir.path().join("log-000001.jsonl");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).unwrap();
        let err = verify_dir(dir.path(), &opts()).unwrap_err();
        assert!(
            matches!(err, VerifyError::NotRegular { .. }),
            "{target:?}: {err}"
        );
        assert!(err.to_string().contains("log-000001.jsonl"), "{err}");
    }
    // A link inside the directory to one of its own files is read.
    let link = dir.path().join("log-000001.jsonl");
    std::fs::remove_file(&link).unwrap();
    std::fs::rename(seg(dir.path()), dir.path().join("real")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("real"), seg(dir.path())).unwrap();
    assert!(!verify(dir.path()).failed(false));
}

/// Decisions under a budget of 5, as concurrent requests reach the log: counts taken in
/// one order, entries written in another.
fn budget_log(dir: &Path, counts: &[(u64, bool)]) {
    let mut g = grant("active");
    g.request_budget = Some(5);
    let mut entries = vec![Entry {
        seq: 0,
        time: time::macros::datetime!(2026-12-01 00:00 UTC),
        origin: ORIGIN.into(),
        prev: Hash::default(),
        body: EntryBody::Grant(GrantEvent {
            event: GrantEventKind::Activated,
            grant_id: "grant-1".into(),
            identity: "agent:report-bot".into(),
            task_id: "task-1".into(),
            by: "alice".into(),
            grant: Some(g),
        }),
    }];
    for (i, (count, allowed)) in counts.iter().enumerate() {
        let mut body = decision(
            i as u64,
            "s3:GetObject",
            "arn:aws:s3:::reports/a",
            *allowed,
            0,
        );
        if let EntryBody::RequestDecision(d) = &mut body {
            d.access.requests_so_far = *count;
        }
        entries.push(Entry {
            seq: i as u64 + 1,
            time: time::macros::datetime!(2026-12-01 00:00 UTC)
                + time::Duration::seconds(i as i64 + 1),
            origin: ORIGIN.into(),
            prev: Hash::default(),
            body,
        });
    }
    rewrite_signed(dir, &entries, &key());
}

#[test]
fn budgets_are_judged_by_the_counts_the_gateway_handed_out() {
    // The over-budget denials reached the log before the last allowed request: no alarm.
    let dir = tempfile::tempdir().unwrap();
    budget_log(
        dir.path(),
        &[
            (5, false),
            (6, false),
            (0, true),
            (1, true),
            (3, true),
            (2, true),
            (4, true),
        ],
    );
    let r = verify(dir.path());
    assert!(!r.failed(false), "{:#?}", r.findings);
    // A sixth allowed request: caught, whatever count it claims.
    let dir = tempfile::tempdir().unwrap();
    budget_log(
        dir.path(),
        &[
            (0, true),
            (1, true),
            (2, true),
            (3, true),
            (4, true),
            (9, true),
        ],
    );
    let r = verify(dir.path());
    assert!(
        r.classes().contains(&C::UnauthorizedAllow),
        "{:#?}",
        r.findings
    );
    let dir = tempfile::tempdir().unwrap();
    budget_log(dir.path(), &[(5, false), (0, true), (1, true), (1, true)]);
    let r = verify(dir.path());
    assert!(r.classes().contains(&C::BudgetReused), "{:#?}", r.findings);
}
