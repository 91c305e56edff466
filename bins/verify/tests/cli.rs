//! The `custody-verify` binary: exit codes, text and JSON output, queries,
//! receipts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::process::{Command, Output};

use custody_grant::{AccessRequest, ActionRequest};
use custody_log::ed25519_dalek::SigningKey;
use custody_log::{EntryBody, Log, LogConfig, RequestDecision, RequestOutcome, vkey};

const ORIGIN: &str = "cli.test/log";

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custody-verify"))
        .args(args)
        .output()
        .unwrap()
}

fn decision(n: u64, identity: &str, task: &str, allowed: bool) -> EntryBody {
    EntryBody::RequestDecision(RequestDecision {
        grant_id: String::new(),
        identity: identity.into(),
        task_id: task.into(),
        request_id: format!("req-{n}"),
        service: "s3".into(),
        operation: "GetObject".into(),
        access: AccessRequest {
            actions: vec![ActionRequest {
                action: "s3:GetObject".into(),
                resources: vec!["arn:aws:s3:::b/k".into()],
                named_explicitly: false,
            }],
            ..Default::default()
        },
        allowed,
        reason: "no grant".into(),
        grant_event_seq: None,
        source: "127.0.0.1".into(),
        body_sha256: None,
    })
}

/// A log with denied requests from two identities, plus the vkey file.
fn setup(dir: &Path) -> (String, String) {
    setup_with(dir, "agent:b")
}

/// [`setup`] with another second identity (another history under the same key).
fn setup_with(dir: &Path, second: &str) -> (String, String) {
    let key = SigningKey::from_bytes(&[11; 32]);
    let log_dir = dir.join("log");
    let mut cfg = LogConfig::new(&log_dir, ORIGIN);
    cfg.checkpoint_every_entries = 4;
    let log = Log::open(cfg, key.clone()).unwrap();
    for (i, who) in ["agent:a", second, "agent:a"].iter().enumerate() {
        let d = log
            .append(decision(i as u64, who, &format!("task-{who}"), false))
            .unwrap();
        log.append(EntryBody::RequestOutcome(RequestOutcome {
            request_id: format!("req-{i}"),
            decision_seq: d.seq,
            status: 403,
            bytes_in: 0,
            bytes_out: 0,
            upstream_request_id: None,
            latency_us: 5,
            error: None,
        }))
        .unwrap();
    }
    log.close().unwrap();
    let key_file = dir.join("log.vkey");
    std::fs::write(&key_file, vkey(ORIGIN, &key.verifying_key()) + "\n").unwrap();
    (
        log_dir.display().to_string(),
        key_file.display().to_string(),
    )
}

#[test]
fn intact_log_exits_zero_in_text_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, key) = setup(tmp.path());
    let out = run(&[&dir, "--key", &key]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("intact: 8 entries"));
    let out = run(&[&dir, "--key", &key, "--json", "--strict"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"], "intact");
    assert_eq!(v["entries"], 8);
}

#[test]
fn tampered_log_exits_one_and_names_the_place() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, key) = setup(tmp.path());
    let seg = Path::new(&dir).join("log-000000.jsonl");
    let text = std::fs::read_to_string(&seg)
        .unwrap()
        .replacen("agent:b", "agent:c", 1);
    std::fs::write(&seg, text).unwrap();
    let out = run(&[&dir, "--key", &key]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL modified_entry log-000000.jsonl:4 seq 3"),
        "{stdout}"
    );
    let out = run(&[&dir, "--key", &key, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["class"], "modified_entry");
    assert_eq!(first["file"], "log-000000.jsonl");
    assert_eq!(first["line"], 4);
    assert_eq!(first["seq"], 3);
}

#[test]
fn could_not_run_exits_two() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, key) = setup(tmp.path());
    assert_eq!(run(&[&dir]).status.code(), Some(2)); // no key
    assert_eq!(
        run(&["/nonexistent/log", "--key", &key]).status.code(),
        Some(2)
    );
    let bad_key = tmp.path().join("bad.vkey");
    std::fs::write(&bad_key, "not a key").unwrap();
    assert_eq!(
        run(&[&dir, "--key", &bad_key.display().to_string()])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&["--bogus-flag"]).status.code(), Some(2));
}

#[test]
fn queries_select_by_identity_task_denied_and_time() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = setup(tmp.path());
    let out = run(&["query", &dir, "--identity", "agent:a", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Two decisions of agent:a and their outcomes.
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["identity"], "agent:a");
    assert_eq!(lines[1]["kind"], "request_outcome");
    let out = run(&["query", &dir, "--task", "task-agent:b"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let out = run(&["query", &dir, "--denied"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.lines().all(|l| l.contains(" DENY s3:GetObject")),
        "{text}"
    );
    let out = run(&["query", &dir, "--until", "2000-01-01T00:00:00Z"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 0);
    assert_eq!(
        run(&["query", &dir, "--since", "yesterday"]).status.code(),
        Some(2)
    );
}

#[test]
fn prove_and_check_proof() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, key) = setup(tmp.path());
    let out = run(&["prove", &dir, "3", "--key", &key]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let receipt = tmp.path().join("receipt.json");
    std::fs::write(&receipt, &out.stdout).unwrap();
    // The log is not needed any more.
    std::fs::remove_dir_all(&dir).unwrap();
    let out = run(&["check-proof", &receipt.display().to_string(), "--key", &key]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valid: 3 "));
    let text = std::fs::read_to_string(&receipt)
        .unwrap()
        .replacen("agent:b", "agent:x", 1);
    std::fs::write(&receipt, text).unwrap();
    let out = run(&["check-proof", &receipt.display().to_string(), "--key", &key]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_log_without_a_valid_checkpoint_fails_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, key) = setup(tmp.path());
    for f in ["checkpoints.jsonl", "checkpoint"] {
        std::fs::remove_file(Path::new(&dir).join(f)).unwrap();
    }
    let out = run(&[&dir, "--key", &key]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL empty"), "{stdout}");
    assert!(stdout.contains("no valid checkpoint"), "{stdout}");
    let out = run(&[&dir, "--key", &key, "--allow-unsealed"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("WARN empty"), "{stdout}");
}

#[test]
fn a_stale_latest_checkpoint_fails_when_an_age_is_given() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, key) = setup(tmp.path());
    let out = run(&[&dir, "--key", &key, "--max-age", "1h"]);
    assert_eq!(out.status.code(), Some(0));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = run(&[&dir, "--key", &key, "--max-age", "1s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("stale"), "{stdout}");
    let out = run(&[&dir, "--key", &key, "--max-age", "soon"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, key) = setup(tmp.path());
    // `custody-verify … | head -0`: the reader is gone before anything is written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_custody-verify"))
        .args([&dir, "--key", &key])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_malformed_receipt_is_invalid_with_exit_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, key) = setup(tmp.path());
    let receipt = tmp.path().join("receipt.json");
    std::fs::write(&receipt, "{not json").unwrap();
    let out = run(&["check-proof", receipt.to_str().unwrap(), "--key", &key]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("INVALID: malformed receipt"));
}

/// Append `n` more denied decisions to the log in `log_dir`.
fn extend(log_dir: &str, n: u64) {
    let mut cfg = LogConfig::new(log_dir, ORIGIN);
    cfg.checkpoint_every_entries = 4;
    let log = Log::open(cfg, SigningKey::from_bytes(&[11; 32])).unwrap();
    for i in 0..n {
        log.append(decision(100 + i, "agent:c", "task-c", false))
            .unwrap();
    }
    log.close().unwrap();
}

#[test]
fn a_kept_checkpoint_is_proven_consistent_with_the_grown_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, key) = setup(tmp.path());
    // An auditor keeps today's checkpoint; the log grows.
    let old = tmp.path().join("old.note");
    std::fs::copy(Path::new(&dir).join("checkpoint"), &old).unwrap();
    let old = old.display().to_string();
    extend(&dir, 9);
    let out = run(&["consistency", &dir, &old, "--key", &key]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let proof_file = tmp.path().join("proof.json");
    std::fs::write(&proof_file, &out.stdout).unwrap();
    let proof = proof_file.display().to_string();
    // Checked without the log.
    let moved = tmp.path().join("elsewhere");
    std::fs::rename(&dir, &moved).unwrap();
    let out = run(&["check-consistency", &proof, "--key", &key]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.starts_with("consistent: the log of size "), "{said}");
    // A changed proof hash: inconsistent, exit 1.
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&proof_file).unwrap()).unwrap();
    let first = v["proof"][0].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if first.starts_with('0') { "1" } else { "0" },
        &first[1..]
    );
    std::fs::write(
        &proof_file,
        serde_json::to_string(&v).unwrap().replace(&first, &flipped),
    )
    .unwrap();
    let out = run(&["check-consistency", &proof, "--key", &key]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("INCONSISTENT"));
    // A log rewritten below the kept checkpoint (by someone holding the key): no proof.
    let forged = tempfile::tempdir().unwrap();
    let (forged_dir, _) = setup_with(forged.path(), "agent:z");
    extend(&forged_dir, 9);
    let out = run(&["consistency", &forged_dir, &old, "--key", &key]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("INCONSISTENT"));
}
