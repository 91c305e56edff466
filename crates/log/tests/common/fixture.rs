//! A realistic sealed log to tamper with.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::path::Path;

use custody_grant::{AccessRequest, ActionRequest, Grant};
use custody_log::merkle::{CompactTree, leaf_hash};
use custody_log::note::Checkpoint;
use custody_log::storage::{self, CheckpointLine};
use custody_log::{Entry, EntryBody, GrantEvent, GrantEventKind, Hash, Log, RequestDecision};
use ed25519_dalek::SigningKey;
use serde_json::json;

use super::*;

pub fn grant(status: &str) -> Grant {
    serde_json::from_value(json!({
        "id": "grant-1",
        "identity": "agent:report-bot",
        "task": {"id": "task-1", "intent": "read the reports"},
        "requester": "alice",
        "role_arn": "arn:aws:iam::123456789012:role/reader",
        "regions": ["us-east-1"],
        "scope": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::reports/*"]}
        ]},
        "not_before": "2026-01-01T00:00:00Z",
        "expires_at": "2027-01-01T00:00:00Z",
        "status": status,
        "approvals": [],
        "approval_policy": {"required": 0, "approvers": []},
        "request_budget": null,
        "access_key_id": "AKCUAAAAAAAAAAAAAAAA",
        "created_at": "2026-01-01T00:00:00Z",
        "status_changed_at": "2026-01-01T00:00:00Z",
        "status_changed_by": null
    }))
    .unwrap()
}

pub fn grant_event(event: GrantEventKind, status: &str) -> EntryBody {
    EntryBody::Grant(GrantEvent {
        event,
        grant_id: "grant-1".into(),
        identity: "agent:report-bot".into(),
        task_id: "task-1".into(),
        by: "alice".into(),
        grant: Some(grant(status)),
    })
}

pub fn decision(
    n: u64,
    action: &str,
    resource: &str,
    allowed: bool,
    grant_event_seq: u64,
) -> EntryBody {
    EntryBody::RequestDecision(RequestDecision {
        grant_id: "grant-1".into(),
        identity: "agent:report-bot".into(),
        task_id: "task-1".into(),
        request_id: format!("req-{n}"),
        service: "s3".into(),
        operation: "GetObject".into(),
        access: AccessRequest {
            actions: vec![ActionRequest {
                action: action.into(),
                resources: vec![resource.into()],
                named_explicitly: false,
            }],
            region: Some("us-east-1".into()),
            source_ip: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        },
        allowed,
        reason: if allowed {
            "allowed by statement 0".into()
        } else {
            "not in scope".into()
        },
        grant_event_seq: Some(grant_event_seq),
        source: "127.0.0.1:5555".into(),
        body_sha256: None,
    })
}

/// Builds a closed log: started, grant requested + activated, 8 requests
/// (decision + outcome each, one denied), stopped. Checkpoint every 5.
/// Returns the number of entries.
pub fn build(dir: &Path) -> u64 {
    let mut cfg = config(dir);
    cfg.checkpoint_every_entries = 5;
    let log = Log::open(cfg, key()).unwrap();
    log.append(grant_event(GrantEventKind::Requested, "pending"))
        .unwrap();
    let act = log
        .append(grant_event(GrantEventKind::Activated, "active"))
        .unwrap()
        .seq;
    for i in 0..8 {
        let (action, allowed) = if i == 4 {
            ("s3:PutObject", false)
        } else {
            ("s3:GetObject", true)
        };
        let d = log
            .append(decision(
                i,
                action,
                &format!("arn:aws:s3:::reports/r{i}"),
                allowed,
                act,
            ))
            .unwrap();
        if allowed {
            log.append(outcome(d.seq)).unwrap();
        }
    }
    log.close().unwrap();
    lines(dir).len() as u64
}

pub fn seg(dir: &Path) -> std::path::PathBuf {
    dir.join(storage::segment_name(0))
}

pub fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn write_lines(p: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    if !lines.is_empty() {
        s.push('\n');
    }
    std::fs::write(p, s).unwrap();
}

/// Rewrites a log from entries as a gateway holding `key` would: re-chained,
/// re-numbered as given, with one final checkpoint. Simulates a misbehaving
/// gateway (it has the key), not an outside attacker.
pub fn rewrite_signed(dir: &Path, entries: &[Entry], key: &SigningKey) {
    rewrite_signed_bytes(dir, entries, key, |_, line| line.into_bytes());
}

/// [`rewrite_signed`], with each encoded line passed through `mangle(index, line)` before
/// it is chained and sealed (a signer that writes other bytes than the writer would).
pub fn rewrite_signed_bytes(
    dir: &Path,
    entries: &[Entry],
    key: &SigningKey,
    mangle: impl Fn(usize, String) -> Vec<u8>,
) {
    let mut prev = Hash::default();
    let mut tree = CompactTree::new();
    let mut out: Vec<u8> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let mut e = e.clone();
        e.prev = prev;
        let line = mangle(i, e.encode().unwrap());
        prev = leaf_hash(&line);
        tree.push(prev);
        out.extend_from_slice(&line);
        out.push(b'\n');
    }
    std::fs::write(seg(dir), out).unwrap();
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size: tree.size(),
        root: tree.root(),
        extensions: vec![],
    }
    .sign(ORIGIN, key)
    .unwrap();
    let line = serde_json::to_string(&CheckpointLine {
        note: cp.note.clone(),
    })
    .unwrap();
    std::fs::write(dir.join(storage::CHECKPOINTS_FILE), format!("{line}\n")).unwrap();
    std::fs::write(dir.join(storage::LATEST_CHECKPOINT_FILE), cp.note).unwrap();
}

pub fn entries(dir: &Path) -> Vec<Entry> {
    lines(dir)
        .iter()
        .map(|l| Entry::decode(l.as_bytes()).unwrap())
        .collect()
}
