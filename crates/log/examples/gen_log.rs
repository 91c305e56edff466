//! Writes a log of N entries through the real writer, for benchmarks:
//! `gen_log <dir> <entries> [writers]`. A realistic mix: one grant activated
//! per 1000 requests, each request a decision (about 1 in 20 denied) and,
//! when allowed, an outcome. Prints the vkey to stdout and the append rate
//! to stderr.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use custody_grant::{AccessRequest, ActionRequest, Grant};
use custody_log::ed25519_dalek::SigningKey;
use custody_log::{
    EntryBody, GrantEvent, GrantEventKind, Log, LogConfig, RequestDecision, RequestOutcome, vkey,
};

fn grant(id: &str) -> Result<Grant, serde_json::Error> {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "identity": "agent:report-bot",
        "task": {"id": format!("task-{id}"), "intent": "summarise the quarterly reports"},
        "requester": "alice@example.com",
        "role_arn": "arn:aws:iam::123456789012:role/custody-reader",
        "regions": ["us-east-1"],
        "scope": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": ["arn:aws:s3:::reports", "arn:aws:s3:::reports/*"]}
        ]},
        "not_before": "2020-01-01T00:00:00Z",
        "expires_at": "2099-01-01T00:00:00Z",
        "status": "active",
        "approvals": [],
        "approval_policy": {"required": 0, "approvers": []},
        "request_budget": null,
        "access_key_id": "AKCUAAAAAAAAAAAAAAAA",
        "created_at": "2020-01-01T00:00:00Z",
        "status_changed_at": "2020-01-01T00:00:00Z",
        "status_changed_by": null
    }))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(n)) = (args.get(1), args.get(2)) else {
        return Err("usage: gen_log <dir> <entries> [writers]".into());
    };
    let total: u64 = n.parse()?;
    let writers: u64 = args.get(3).map(|w| w.parse()).transpose()?.unwrap_or(64);
    let key = SigningKey::from_bytes(&[7; 32]);
    let origin = "bench.custody.example/log";
    let mut cfg = LogConfig::new(dir, origin);
    cfg.checkpoint_every_entries = 10_000;
    let log = Arc::new(Log::open(cfg, key.clone())?);
    println!("{}", vkey(origin, &key.verifying_key()));

    let written = Arc::new(AtomicU64::new(2)); // started + close
    let start = Instant::now();
    let mut round = 0u64;
    while written.load(Ordering::Relaxed) < total {
        let id = format!("grant-{round:08}");
        let grant_seq = log
            .append(EntryBody::Grant(GrantEvent {
                event: GrantEventKind::Activated,
                grant_id: id.clone(),
                identity: "agent:report-bot".into(),
                task_id: format!("task-{id}"),
                by: "rule:auto-approve".into(),
                grant: Some(grant(&id)?),
            }))?
            .seq;
        written.fetch_add(1, Ordering::Relaxed);
        std::thread::scope(|s| {
            for w in 0..writers {
                let (log, written, id) = (Arc::clone(&log), Arc::clone(&written), id.clone());
                s.spawn(move || -> Result<(), custody_log::LogError> {
                    for i in (w..1000).step_by(writers as usize) {
                        if written.load(Ordering::Relaxed) >= total {
                            break;
                        }
                        let allowed = i % 20 != 7;
                        let request_id = format!("req-{round:08}-{i:04}");
                        let d = log.append(EntryBody::RequestDecision(RequestDecision {
                            grant_id: id.clone(),
                            identity: "agent:report-bot".into(),
                            task_id: format!("task-{id}"),
                            request_id: request_id.clone(),
                            service: "s3".into(),
                            operation: if allowed { "GetObject" } else { "PutObject" }.into(),
                            access: AccessRequest {
                                actions: vec![ActionRequest {
                                    action: if allowed {
                                        "s3:GetObject"
                                    } else {
                                        "s3:PutObject"
                                    }
                                    .into(),
                                    resources: vec![format!(
                                        "arn:aws:s3:::reports/2026/q{}/report-{i}.pdf",
                                        i % 4 + 1
                                    )],
                                    named_explicitly: false,
                                }],
                                region: Some("us-east-1".into()),
                                source_ip: "10.0.0.7".parse().ok(),
                                ..Default::default()
                            },
                            allowed,
                            reason: if allowed {
                                "allowed by statement 0"
                            } else {
                                "not in scope"
                            }
                            .into(),
                            grant_event_seq: Some(grant_seq),
                            source: "10.0.0.7:51234".into(),
                            body_sha256: None,
                        }))?;
                        written.fetch_add(1, Ordering::Relaxed);
                        if allowed {
                            log.append(EntryBody::RequestOutcome(RequestOutcome {
                                request_id,
                                decision_seq: d.seq,
                                status: 200,
                                bytes_in: 0,
                                bytes_out: 48_213,
                                upstream_request_id: Some("4442587FB7D0A2F9".into()),
                                latency_us: 2_350,
                                error: None,
                            }))?;
                            written.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                });
            }
        });
        round += 1;
    }
    let cp = log.close()?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} entries with {writers} writers in {secs:.2}s: {:.0} durable appends/s",
        cp.checkpoint.size,
        cp.checkpoint.size as f64 / secs
    );
    Ok(())
}
