//! The writer: durable appends, group commit, recovery, checkpoints.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::sync::Arc;

use common::*;
use custody_log::merkle::{CompactTree, leaf_hash};
use custody_log::{Entry, EntryBody, Log, SignedCheckpoint, parse_vkey, storage};

#[test]
fn appends_chain_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(config(dir.path()), key()).unwrap();
    let mut seqs = Vec::new();
    for i in 0..25 {
        seqs.push(log.append(outcome(i)).unwrap().seq);
    }
    assert_eq!(seqs, (1..26).collect::<Vec<_>>());
    let cp = log.close().unwrap();
    assert_eq!(cp.checkpoint.size, 27);
    assert!(matches!(
        log.append(outcome(0)),
        Err(custody_log::LogError::Closed)
    ));

    let lines = lines(dir.path());
    assert_eq!(lines.len(), 27);
    let mut tree = CompactTree::new();
    let mut prev = custody_log::Hash::default();
    for (i, l) in lines.iter().enumerate() {
        let e = Entry::decode(l.as_bytes()).unwrap();
        assert_eq!(e.seq, i as u64);
        assert_eq!(e.prev, prev);
        assert_eq!(e.origin, ORIGIN);
        prev = leaf_hash(l.as_bytes());
        tree.push(prev);
    }
    assert!(matches!(
        Entry::decode(lines[0].as_bytes()).unwrap().body,
        EntryBody::GatewayStarted { .. }
    ));
    assert!(matches!(
        Entry::decode(lines[26].as_bytes()).unwrap().body,
        EntryBody::GatewayStopped { .. }
    ));
    let v = parse_vkey(&custody_log::vkey(ORIGIN, &key().verifying_key())).unwrap();
    let latest = std::fs::read_to_string(dir.path().join(storage::LATEST_CHECKPOINT_FILE)).unwrap();
    let opened = SignedCheckpoint::open(&latest, &v).unwrap();
    assert_eq!(opened.checkpoint.root, tree.root());
    assert_eq!(opened.checkpoint.size, 27);
    // The first entry, sealed at open; then every 10 entries plus the final one.
    let ck = std::fs::read_to_string(dir.path().join(storage::CHECKPOINTS_FILE)).unwrap();
    assert_eq!(ck.lines().count(), 4);
}

#[test]
fn concurrent_appends_get_distinct_seqs_and_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(config(dir.path()), key()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| log.append(outcome(t * 100 + i)).unwrap().seq)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..401).collect::<Vec<_>>());
    // Group commit: with 8 threads waiting on ~ms syncs, batches form.
    let stats = log.stats();
    assert_eq!(stats.appends, 401);
    assert!(stats.syncs * 4 < stats.appends * 3, "{stats:?}");
    log.close().unwrap();
    assert_eq!(lines(dir.path()).len(), 402);
}

#[test]
fn append_async_resolves_without_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(config(dir.path()), key()).unwrap();
    let futs: Vec<_> = (0..20).map(|i| log.append_async(outcome(i))).collect();
    let seqs: Vec<u64> = futs.into_iter().map(|f| block_on(f).unwrap().seq).collect();
    assert_eq!(seqs, (1..21).collect::<Vec<_>>());
    fn is_send_static<T: Send + 'static>(_: &T) {}
    fn is_send_sync<T: Send + Sync>(_: &T) {}
    is_send_sync(&log);
    is_send_static(&log.append_async(outcome(0)));
    log.close().unwrap();
}

#[test]
fn torn_tail_is_cut_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(config(dir.path()), key()).unwrap();
        for i in 0..5 {
            log.append(outcome(i)).unwrap();
        }
        // Simulate a crash: no close, then a half-written line.
        std::mem::forget(log);
    }
    let seg = dir.path().join(storage::segment_name(0));
    let mut data = std::fs::read(&seg).unwrap();
    // Half a line right after the last entry (where the preallocated zeros were).
    data.truncate(storage::trim_padding(&data).len());
    data.extend_from_slice(b"{\"seq\":6,\"time\":\"20");
    std::fs::write(&seg, &data).unwrap();

    let log = Log::open(config(dir.path()), key()).unwrap();
    log.append(outcome(9)).unwrap();
    log.close().unwrap();
    let lines = lines(dir.path());
    let rec = Entry::decode(lines[6].as_bytes()).unwrap();
    match rec.body {
        EntryBody::Recovered {
            cut_bytes, segment, ..
        } => {
            assert_eq!(cut_bytes, 19);
            assert_eq!(segment, storage::segment_name(0));
        }
        other => panic!("expected recovery entry, got {other:?}"),
    }
    assert!(matches!(
        Entry::decode(lines[7].as_bytes()).unwrap().body,
        EntryBody::GatewayStarted { .. }
    ));
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(Entry::decode(l.as_bytes()).unwrap().seq, i as u64);
    }
}

#[test]
fn clean_reopen_has_no_recovery_entry_and_segments_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.segment_max_bytes = 1000;
    let log = Log::open(cfg.clone(), key()).unwrap();
    for i in 0..30 {
        log.append(outcome(i)).unwrap();
    }
    log.close().unwrap();
    let log = Log::open(cfg, key()).unwrap();
    log.close().unwrap();
    let segs = storage::list_segments(dir.path()).unwrap();
    assert!(segs.len() > 3, "{segs:?}");
    let lines = lines(dir.path());
    assert_eq!(lines.len(), 34);
    assert!(lines.iter().all(|l| !l.contains("\"recovered\"")));
}

#[test]
fn heartbeat_checkpoints_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.heartbeat_every = std::time::Duration::from_millis(20);
    let log = Log::open(cfg, key()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    log.close().unwrap();
    let ck = std::fs::read_to_string(dir.path().join(storage::CHECKPOINTS_FILE)).unwrap();
    assert!(ck.lines().count() >= 3, "{ck}");
}

#[test]
fn oversized_entry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(config(dir.path()), key()).unwrap();
    let big = EntryBody::GatewayStopped {
        reason: "x".repeat(custody_log::entry::MAX_ENTRY_BYTES),
    };
    assert!(log.append(big).is_err());
    assert_eq!(log.append(outcome(1)).unwrap().seq, 1);
    log.close().unwrap();
}

#[test]
fn checkpoints_are_copied_and_serve_as_trusted_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_copy_dir = Some(copy.path().join("witness"));
    let log = Log::open(cfg, key()).unwrap();
    for i in 0..12 {
        log.append(outcome(i)).unwrap();
    }
    let last = log.close().unwrap();
    let copied = std::fs::read_to_string(
        copy.path()
            .join("witness")
            .join(storage::LATEST_CHECKPOINT_FILE),
    )
    .unwrap();
    assert_eq!(copied, last.note);
    let opts = custody_log::verify::VerifyOptions {
        keys: vec![parse_vkey(&custody_log::vkey(ORIGIN, &key().verifying_key())).unwrap()],
        trusted: vec![("witness".into(), copied)],
        ..Default::default()
    };
    let r = custody_log::verify::verify_dir(dir.path(), &opts).unwrap();
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

/// The `decision_seq` of each outcome line, in log order.
fn outcome_tags(dir: &std::path::Path) -> Vec<u64> {
    lines(dir)
        .iter()
        .filter_map(|l| match Entry::decode(l.as_bytes()).unwrap().body {
            EntryBody::RequestOutcome(o) => Some(o.decision_seq),
            _ => None,
        })
        .collect()
}

#[test]
fn deferred_appends_ride_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_every_entries = 1000;
    // Long enough that only the urgent append can be what writes them.
    cfg.deferred_max_delay = std::time::Duration::from_secs(3600);
    let log = Log::open(cfg, key()).unwrap();
    let before = log.stats();
    log.append_deferred(outcome(1)).unwrap();
    log.append_deferred(outcome(2)).unwrap();
    let urgent = log.append(outcome(3)).unwrap();
    let after = log.stats();
    // One group commit wrote all three, in queue order.
    assert_eq!(after.syncs - before.syncs, 1);
    assert_eq!(after.appends - before.appends, 3);
    assert_eq!(urgent.seq, 3);
    assert_eq!(outcome_tags(dir.path()), [1, 2, 3]);
    log.close().unwrap();
}

#[test]
fn a_deferred_append_is_written_on_its_own_when_nothing_follows() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.deferred_max_delay = std::time::Duration::from_millis(5);
    let log = Log::open(cfg, key()).unwrap();
    let before = log.stats().appends;
    log.append_deferred(outcome(7)).unwrap();
    // No other append and no close: only the deadline can write it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.stats().appends == before {
        assert!(
            std::time::Instant::now() < deadline,
            "a deferred entry was never written"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(outcome_tags(dir.path()), [7]);
    // And again after the writer has gone idle (first deferred append wakes it).
    std::thread::sleep(std::time::Duration::from_millis(50));
    log.append_deferred(outcome(8)).unwrap();
    while log.stats().appends == before + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "a deferred entry after idle was never written"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(outcome_tags(dir.path()), [7, 8]);
    log.close().unwrap();
}

#[test]
fn close_writes_pending_deferred_appends_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.deferred_max_delay = std::time::Duration::from_secs(3600);
    let log = Log::open(cfg, key()).unwrap();
    for i in 0..5 {
        log.append_deferred(outcome(i)).unwrap();
    }
    let cp = log.close().unwrap();
    assert_eq!(outcome_tags(dir.path()), [0, 1, 2, 3, 4]);
    let all = lines(dir.path());
    assert_eq!(cp.checkpoint.size, all.len() as u64);
    assert!(matches!(
        Entry::decode(all.last().unwrap().as_bytes()).unwrap().body,
        EntryBody::GatewayStopped { .. }
    ));
    assert!(matches!(
        log.append_deferred(outcome(9)),
        Err(custody_log::LogError::Closed)
    ));
}

/// Copies every file of a log directory (a crash image while the log is open).
fn snapshot(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn verify_ok(dir: &std::path::Path) -> custody_log::verify::Report {
    let opts = custody_log::verify::VerifyOptions {
        keys: vec![parse_vkey(&custody_log::vkey(ORIGIN, &key().verifying_key())).unwrap()],
        ..Default::default()
    };
    let r = custody_log::verify::verify_dir(dir, &opts).unwrap();
    assert!(
        r.findings
            .iter()
            .all(|f| f.severity != custody_log::verify::Severity::Failure),
        "{:#?}",
        r.findings
    );
    r
}

#[test]
fn segments_are_preallocated_and_the_padding_is_cut_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.preallocate_bytes = 64 << 10;
    let log = Log::open(cfg, key()).unwrap();
    for i in 0..20 {
        log.append(outcome(i)).unwrap();
    }
    let seg = dir.path().join(storage::segment_name(0));
    let open = std::fs::read(&seg).unwrap();
    let content = storage::trim_padding(&open).len();
    assert!(
        open.len() >= 64 << 10 && content < 16 << 10,
        "{} bytes of entries in a {}-byte file",
        content,
        open.len()
    );
    assert!(open[content..].iter().all(|b| *b == 0));
    assert_eq!(open[content - 1], b'\n');
    // Readers see entries only, while it is open.
    assert_eq!(lines(dir.path()).len(), 21);
    assert_eq!(verify_ok(dir.path()).entries, 21);

    // A crash image taken now reopens where the entries end, with nothing cut.
    let image = tempfile::tempdir().unwrap();
    snapshot(dir.path(), image.path());
    let mut cfg2 = config(image.path());
    cfg2.preallocate_bytes = 64 << 10;
    let reopened = Log::open(cfg2, key()).unwrap();
    assert_eq!(reopened.append(outcome(99)).unwrap().seq, 23);
    reopened.close().unwrap();
    let recovered =
        lines(image.path())
            .iter()
            .find_map(|l| match Entry::decode(l.as_bytes()).unwrap().body {
                EntryBody::Recovered { cut_bytes, .. } => Some(cut_bytes),
                _ => None,
            });
    assert_eq!(recovered, Some(0), "an unclean stop, but no torn bytes");
    let closed = std::fs::read(image.path().join(storage::segment_name(0))).unwrap();
    assert_eq!(storage::trim_padding(&closed).len(), closed.len());
    assert_eq!(verify_ok(image.path()).entries, 25);

    log.close().unwrap();
    let closed = std::fs::read(&seg).unwrap();
    assert_eq!(closed.len(), storage::trim_padding(&closed).len());
    assert_eq!(closed.last(), Some(&b'\n'));
}

#[test]
fn a_torn_line_inside_the_padding_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(config(dir.path()), key()).unwrap();
    for i in 0..3 {
        log.append(outcome(i)).unwrap();
    }
    let image = tempfile::tempdir().unwrap();
    snapshot(dir.path(), image.path());
    log.close().unwrap();
    // Half an entry written over the zeros, as a crash mid-write leaves it.
    let seg = image.path().join(storage::segment_name(0));
    let mut data = std::fs::read(&seg).unwrap();
    let end = storage::trim_padding(&data).len();
    data[end..end + 9].copy_from_slice(b"{\"seq\":4,");
    std::fs::write(&seg, &data).unwrap();
    let reopened = Log::open(config(image.path()), key()).unwrap();
    reopened.close().unwrap();
    let cut =
        lines(image.path())
            .iter()
            .find_map(|l| match Entry::decode(l.as_bytes()).unwrap().body {
                EntryBody::Recovered { cut_bytes, .. } => Some(cut_bytes),
                _ => None,
            });
    assert_eq!(cut, Some(9));
    verify_ok(image.path());
}

#[test]
fn rotated_segments_hold_no_padding() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.segment_max_bytes = 1000;
    cfg.preallocate_bytes = 4096;
    let log = Log::open(cfg, key()).unwrap();
    for i in 0..30 {
        log.append(outcome(i)).unwrap();
    }
    let segs = storage::list_segments(dir.path()).unwrap();
    assert!(segs.len() > 3, "{segs:?}");
    for (_, p) in &segs[..segs.len() - 1] {
        let data = std::fs::read(p).unwrap();
        assert_eq!(data.len(), storage::trim_padding(&data).len(), "{p:?}");
        assert!(data.len() < 1000 + 600, "{p:?}: {}", data.len());
    }
    log.close().unwrap();
    verify_ok(dir.path());
}

/// Polls `fut` once, with a waker nobody keeps.
fn poll_once<F: std::future::Future>(fut: F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::pin!(fut).poll(&mut cx)
}

/// Waits up to 10 s for `done`.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[test]
fn an_append_to_an_idle_log_is_committed_by_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(config(dir.path()), key()).unwrap();
    // Let the committer go to sleep.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let before = log.stats();
    // Ready on the first poll: written and synced on this thread, no hand-off.
    let appending = log.append_async(outcome(1));
    assert!(appending.committed_inline());
    match poll_once(appending) {
        std::task::Poll::Ready(Ok(a)) => assert_eq!(a.seq, before.appends),
        other => panic!("not committed inline: {other:?}"),
    }
    assert_eq!(log.stats().syncs, before.syncs + 1);
    assert_eq!(outcome_tags(dir.path()), [1]);
    // The write + sync it took is measured, for callers choosing to commit inline.
    let took = log.recent_commit_time().expect("a commit was timed");
    assert!(took > std::time::Duration::ZERO && took < std::time::Duration::from_secs(10));
    log.close().unwrap();
    verify_ok(dir.path());
}

#[test]
fn inline_commits_keep_the_deferred_and_checkpoint_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_every_entries = 1000;
    cfg.checkpoint_every = std::time::Duration::from_millis(200);
    cfg.deferred_max_delay = std::time::Duration::from_millis(20);
    let log = Log::open(cfg, key()).unwrap();
    let checkpoints = || {
        std::fs::read_to_string(dir.path().join(storage::CHECKPOINTS_FILE))
            .unwrap_or_default()
            .lines()
            .count()
    };
    // The start is sealed, then the committer sleeps until the heartbeat (an hour).
    eventually("the start sealed", || checkpoints() >= 1);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let sealed = checkpoints();
    // An inline commit, then a deferred entry nothing follows: only the committer can
    // write it, and the inline commit must have cut its sleep short.
    log.append(outcome(1)).unwrap();
    log.append_deferred(outcome(2)).unwrap();
    eventually("the deferred entry written", || {
        outcome_tags(dir.path()) == [1, 2]
    });
    eventually("the new entries sealed", || checkpoints() > sealed);
    log.close().unwrap();
    verify_ok(dir.path());
}

#[test]
fn mixed_concurrent_appends_inline_queued_and_deferred_make_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_every_entries = 50;
    let log = Arc::new(Log::open(cfg, key()).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for i in 0..100 {
                    let n = t * 1000 + i;
                    match i % 3 {
                        0 => seqs.push(log.append(outcome(n)).unwrap().seq),
                        1 => seqs.push(block_on(log.append_async(outcome(n))).unwrap().seq),
                        _ => log.append_deferred(outcome(n)).unwrap(),
                    }
                    if i % 10 == 0 {
                        // Now and then let the committer fall asleep, so that some
                        // appends find it idle and commit inline.
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
                seqs
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    log.close().unwrap();
    let n = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "a sequence number was given twice");
    let mut tags = outcome_tags(dir.path());
    tags.sort_unstable();
    let mut want: Vec<u64> = (0..4u64)
        .flat_map(|t| (0..100).map(move |i| t * 1000 + i))
        .collect();
    want.sort_unstable();
    assert_eq!(tags, want);
    verify_ok(dir.path());
}

/// A stepping clock that panics on the first reading after the flag is set (the clock is
/// the configurable code a commit runs).
fn clock_that_can_panic() -> (custody_log::Clock, Arc<std::sync::atomic::AtomicBool>) {
    let panic_now = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let inner = stepping_clock();
    let flag = Arc::clone(&panic_now);
    let clock: custody_log::Clock = Arc::new(move || {
        assert!(
            !flag.swap(false, std::sync::atomic::Ordering::SeqCst),
            "clock broke"
        );
        inner()
    });
    (clock, panic_now)
}

#[test]
fn a_panic_during_an_inline_commit_fails_the_log_instead_of_going_on() {
    // The clock panics once, during an inline commit on this thread.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    let (clock, panic_now) = clock_that_can_panic();
    cfg.clock = clock;
    let log = Arc::new(Log::open(cfg, key()).unwrap());
    log.append(outcome(1)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    panic_now.store(true, std::sync::atomic::Ordering::SeqCst);
    let appender = Arc::clone(&log);
    let panicked = std::thread::spawn(move || appender.append(outcome(2))).join();
    assert!(panicked.is_err(), "the commit did not panic: {panicked:?}");
    // The chain state may be half-updated: nothing more goes in, and it says so.
    let next = log.append(outcome(3));
    assert!(
        matches!(&next, Err(e) if e.to_string().contains("panicked")),
        "{next:?}"
    );
    assert!(log.health().is_err());
    assert_eq!(outcome_tags(dir.path()), [1]);
}

#[test]
fn a_panic_on_the_committer_thread_fails_appends_instead_of_hanging_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Every append goes through the committer thread.
    cfg.inline_commit = false;
    let (clock, panic_now) = clock_that_can_panic();
    cfg.clock = clock;
    let log = Arc::new(Log::open(cfg, key()).unwrap());
    log.append(outcome(1)).unwrap();
    panic_now.store(true, std::sync::atomic::Ordering::SeqCst);
    // Each append on a thread of its own, so that a hang fails the test instead of
    // stalling it.
    let append = |n: u64| {
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let _ = tx.send(log.append(outcome(n)).map(|a| a.seq));
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("append {n} hung"))
    };
    let during = append(2);
    assert!(during.is_err(), "{during:?}");
    let after = append(3);
    assert!(
        matches!(&after, Err(e) if e.to_string().contains("panicked")),
        "{after:?}"
    );
    assert!(log.health().is_err());
    assert!(matches!(
        poll_once(log.append_async(outcome(4))),
        std::task::Poll::Ready(Err(_))
    ));
    assert_eq!(outcome_tags(dir.path()), [1]);
}
