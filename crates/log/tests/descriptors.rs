//! The log survives descriptor exhaustion and transient failures: it keeps the
//! descriptors it needs open (the `checkpoint` file's next temporary file, its
//! directory), and when a checkpoint still cannot be written it refuses appends only
//! while the cause lasts, then recovers by itself: nothing was half-written. (Alone in
//! its test binary: it fills the process's descriptor table.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use custody_log::verify::{Severity, VerifyOptions, verify_dir};
use custody_log::{Log, parse_vkey, storage, vkey};

fn verified_tags(dir: &std::path::Path) -> Vec<u64> {
    let opts = VerifyOptions {
        keys: vec![parse_vkey(&vkey(ORIGIN, &key().verifying_key())).unwrap()],
        ..Default::default()
    };
    let r = verify_dir(dir, &opts).unwrap();
    assert!(
        r.findings.iter().all(|f| f.severity == Severity::Warning),
        "{:#?}",
        r.findings
    );
    lines(dir)
        .iter()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["bytes_in"].as_u64()
        })
        .collect()
}

#[test]
fn descriptor_exhaustion_and_a_transient_failure_do_not_fail_the_log_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // A checkpoint after every append.
    cfg.checkpoint_every_entries = 1;
    let log = Log::open(cfg, key()).unwrap();
    log.append(outcome(1)).unwrap();

    // Somebody else takes every free descriptor: appends and their checkpoints go on.
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, 256, hard).unwrap();
    let mut filler = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        filler.push(f);
    }
    for i in 2..6 {
        log.append(outcome(i)).unwrap();
        // Acknowledged before its checkpoint is written: wait for that checkpoint too.
        log.checkpoint_now().unwrap();
        assert!(log.health().is_ok(), "{:?}", log.health());
        assert!(
            std::fs::File::open("/dev/null").is_err(),
            "the table stays full"
        );
    }
    drop(filler);
    // An append is acknowledged before the checkpoint after it is written: wait for that
    // one (a checkpoint now is queued behind it) before tampering with its files.
    log.checkpoint_now().unwrap();

    // A transient failure: the next checkpoint's temporary file cannot be put in place
    // (a directory took its name). The append's entry is written; after it the log
    // refuses appends and says why...
    let tmp = dir
        .path()
        .join(format!(".{}.tmp", storage::LATEST_CHECKPOINT_FILE));
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    log.append(outcome(6)).unwrap();
    // The append is acknowledged before its checkpoint is attempted: wait for that.
    let start = Instant::now();
    while log.health().is_ok() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let why = log.health().unwrap_err().to_string();
    assert!(why.contains(".checkpoint.tmp"), "{why}");
    let refused = log.append(outcome(7)).unwrap_err().to_string();
    assert!(refused.contains("cannot seal"), "{refused}");

    // ...only while the cause lasts: the committer retries and the log recovers.
    std::fs::remove_dir(&tmp).unwrap();
    let start = Instant::now();
    while log.health().is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            log.health()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    log.append(outcome(8)).unwrap();
    log.close().unwrap();
    assert_eq!(
        verified_tags(dir.path()),
        [1, 2, 3, 4, 5, 6, 8],
        "every acknowledged append, and only those"
    );
}
