//! Crash test: a child process appending under load is killed with SIGKILL
//! repeatedly; after each kill the log verifies and every acknowledged
//! append is there. The child is this test binary re-executed with an
//! environment variable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use custody_log::verify::{Severity, VerifyOptions, verify_dir};
use custody_log::{Entry, Log, parse_vkey, vkey};

const CHILD_ENV: &str = "CUSTODY_LOG_CRASH_CHILD_DIR";

/// In the child: append from 4 threads forever, printing each acknowledged seq.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut cfg = config(std::path::Path::new(&dir));
    cfg.clock = custody_log::system_clock();
    cfg.checkpoint_every_entries = 50;
    cfg.segment_max_bytes = 64 * 1024;
    let log = Arc::new(Log::open(cfg, key()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0u64.. {
                    let a = log.append(outcome(t * 1_000_000 + i)).unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {}", a.seq).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_append() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = VerifyOptions {
        keys: vec![parse_vkey(&vkey(ORIGIN, &key().verifying_key())).unwrap()],
        ..Default::default()
    };
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    for cycle in 0..5u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut seen = 0;
        let target = 100 + cycle * 37;
        let start = Instant::now();
        while seen < target && start.elapsed() < Duration::from_secs(20) {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(s) = line.trim().strip_prefix("ACK ") {
                acked.insert(s.parse().unwrap());
                seen += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acks already in the pipe count too.
        for l in reader.lines() {
            if let Some(s) = l.unwrap().trim().strip_prefix("ACK ") {
                acked.insert(s.parse().unwrap());
            }
        }
        assert!(seen >= target, "child produced only {seen} acks");

        let r = verify_dir(dir.path(), &opts).unwrap();
        assert!(
            r.findings.iter().all(|f| f.severity == Severity::Warning),
            "cycle {cycle}: {:#?}",
            r.findings
        );
        let on_disk: Vec<Entry> = lines(dir.path())
            .iter()
            .map(|l| Entry::decode(l.as_bytes()).unwrap())
            .collect();
        for s in &acked {
            let e = on_disk
                .get(*s as usize)
                .unwrap_or_else(|| panic!("acked seq {s} lost in cycle {cycle}"));
            assert_eq!(e.seq, *s);
        }
    }
    // A final clean open recovers and seals everything.
    let log = Log::open(config(dir.path()), key()).unwrap();
    log.close().unwrap();
    let r = verify_dir(dir.path(), &opts).unwrap();
    // Sealed now; what each crash left unsealed is named as sealed late.
    assert!(
        r.findings
            .iter()
            .all(|f| f.class == custody_log::verify::FindingClass::SealedLate),
        "{:#?}",
        r.findings
    );
    let recovered = lines(dir.path())
        .iter()
        .filter(|l| l.contains("\"kind\":\"recovered\""))
        .count();
    assert_eq!(recovered, 5);
}
