//! Fail closed: when the disk refuses a write (here a file-size limit, which
//! fails `write` with EFBIG like a full disk fails it with ENOSPC), `append`
//! returns an error, the log reports itself unhealthy and refuses further
//! appends, and no half entry is left for a later append to build on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::process::Command;

use common::*;
use custody_log::verify::{Severity, VerifyOptions, verify_dir};
use custody_log::{Entry, Log, LogError, parse_vkey, vkey};

const CHILD_ENV: &str = "CUSTODY_LOG_DISK_FULL_CHILD_DIR";

#[test]
fn disk_full_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let log = Log::open(config(std::path::Path::new(&dir)), key()).unwrap();
    let mut last_ok = None;
    let err = loop {
        match log.append(outcome(7)) {
            Ok(a) => last_ok = Some(a.seq),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, LogError::Io { .. }), "{err}");
    assert!(log.health().is_err());
    assert!(matches!(log.append(outcome(8)), Err(LogError::Failed(_))));
    println!("LAST_OK {}", last_ok.unwrap());
    std::mem::forget(log);
}

#[test]
fn a_failed_write_is_an_error_and_leaves_no_half_entry() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // Ignored signals stay ignored across exec: EFBIG instead of SIGXFSZ.
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 40; exec \"$0\" --exact disk_full_child --nocapture --test-threads=1")
        .arg(&exe)
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last_ok: u64 = stdout
        .lines()
        .find_map(|l| l.split_once("LAST_OK ").map(|(_, n)| n))
        .unwrap_or_else(|| panic!("no LAST_OK in {stdout}"))
        .trim()
        .parse()
        .unwrap();

    // Every line on disk is whole; the acknowledged entries are all there.
    let seg = std::fs::read(dir.path().join("log-000000.jsonl")).unwrap();
    assert_eq!(seg.last(), Some(&b'\n'));
    let lines = lines(dir.path());
    assert_eq!(lines.len() as u64, last_ok + 1);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(Entry::decode(l.as_bytes()).unwrap().seq, i as u64);
    }
    let opts = VerifyOptions {
        keys: vec![parse_vkey(&vkey(ORIGIN, &key().verifying_key())).unwrap()],
        ..Default::default()
    };
    let r = verify_dir(dir.path(), &opts).unwrap();
    assert!(
        r.findings.iter().all(|f| f.severity == Severity::Warning),
        "{:#?}",
        r.findings
    );
    // Reopened with room again, the chain continues.
    let log = Log::open(config(dir.path()), key()).unwrap();
    assert_eq!(log.append(outcome(9)).unwrap().seq, last_ok + 3);
    log.close().unwrap();
    let r = verify_dir(dir.path(), &opts).unwrap();
    assert!(
        r.findings
            .iter()
            .all(|f| f.class == custody_log::verify::FindingClass::SealedLate),
        "{:#?}",
        r.findings
    );
}
