//! The session log from `custody-log` as the proxy's [`LogSink`] (feature `session-log`,
//! on by default): one mapping from the proxy's records to log entries, for the gateway
//! and for anyone embedding the request path.

use std::borrow::Cow;
use std::sync::Arc;

use custody_grant::AccessRequest;
use custody_log::{EntryBody, Log, RequestDecisionRef, RequestOutcome};

use crate::seams::{BoxFuture, DecisionRecord, LogSink, OutcomeRecord, SinkError};

/// A decision record as its log entry. The entry borrows the record's fields (nothing is
/// copied per request); only a decision for an unknown access key id gets a reason of
/// its own, naming the key, since no grant id does.
pub struct DecisionEntry<'a> {
    record: &'a DecisionRecord,
    reason: Cow<'a, str>,
    access: Cow<'a, AccessRequest>,
}

/// A denial whose resources take more bytes than this is recorded with each action's
/// first [`SUMMARY_KEEP`] resources, a count and a SHA-256 over all of them: every denial
/// must be recorded, and an entry is at most `MAX_ENTRY_BYTES` (2 MiB). Allowed decisions
/// are recorded whole (the verifier re-evaluates them), or refused if they cannot be.
pub const SUMMARY_ABOVE_BYTES: usize = 256 * 1024;
/// Resources kept per action in a summarised denial.
pub const SUMMARY_KEEP: usize = 32;

impl<'a> DecisionEntry<'a> {
    /// The entry for `record`.
    pub fn new(record: &'a DecisionRecord) -> Self {
        let reason = match (&record.grant, &record.access_key_id) {
            (None, Some(akid)) => Cow::Owned(format!("{} (access key id `{akid}`)", record.reason)),
            _ => Cow::Borrowed(record.reason.as_str()),
        };
        let size: usize = record
            .access
            .actions
            .iter()
            .flat_map(|a| &a.resources)
            .map(String::len)
            .sum();
        let access = if !record.allowed && size > SUMMARY_ABOVE_BYTES {
            Cow::Owned(summarised(&record.access))
        } else {
            Cow::Borrowed(&record.access)
        };
        Self {
            record,
            reason,
            access,
        }
    }

    /// The `request_decision` body to append.
    pub fn body(&self) -> RequestDecisionRef<'_> {
        let r = self.record;
        let (grant_id, identity, task_id) = match &r.grant {
            Some(g) => (g.id.as_str(), g.identity.as_str(), g.task.id.as_str()),
            None => ("", "", ""),
        };
        RequestDecisionRef {
            grant_id,
            identity,
            task_id,
            request_id: &r.request_id,
            service: r.service.as_deref().unwrap_or_default(),
            operation: r.operation.as_deref().unwrap_or_default(),
            access: &self.access,
            allowed: r.allowed,
            reason: &self.reason,
            grant_event_seq: r.grant_event_seq,
            source: &r.source,
            body_sha256: r.body_sha256.as_deref(),
        }
    }
}

/// Each action's first [`SUMMARY_KEEP`] resources, then one line naming how many more
/// there were and the SHA-256 (hex) of all of them, each followed by a newline.
fn summarised(access: &AccessRequest) -> AccessRequest {
    use sha2::{Digest, Sha256};
    let mut out = access.clone();
    for a in &mut out.actions {
        if a.resources.len() <= SUMMARY_KEEP {
            continue;
        }
        let mut h = Sha256::new();
        for r in &a.resources {
            h.update(r.as_bytes());
            h.update(b"\n");
        }
        let more = a.resources.len() - SUMMARY_KEEP;
        a.resources.truncate(SUMMARY_KEEP);
        a.resources.push(format!(
            "... {more} more resources (sha256 of all {} resources, one per line: {})",
            more + SUMMARY_KEEP,
            hex::encode(h.finalize())
        ));
    }
    out
}

/// An outcome record as its `request_outcome` entry.
pub fn outcome_entry(r: OutcomeRecord) -> EntryBody {
    EntryBody::RequestOutcome(RequestOutcome {
        request_id: r.request_id,
        decision_seq: r.decision_seq,
        status: r.status,
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        upstream_request_id: r.upstream_request_id,
        latency_us: r.latency_us,
        error: r.error,
    })
}

/// The session log as a [`LogSink`]: a decision is durable (written and `fdatasync`ed)
/// before its future resolves, so before the proxy forwards; an outcome rides the next
/// group commit (`Log::append_deferred`), and a failure to write it fails the log, which
/// [`Log::health`] and every later decision report.
#[derive(Clone)]
pub struct SessionLog(pub Arc<Log>);

impl LogSink for SessionLog {
    fn record_decision(&self, r: DecisionRecord) -> BoxFuture<'static, Result<u64, SinkError>> {
        let fut = self.0.append_async(DecisionEntry::new(&r).body());
        Box::pin(async move {
            fut.await
                .map(|a| a.seq)
                .map_err(|e| SinkError(e.to_string()))
        })
    }

    fn record_outcome(&self, r: OutcomeRecord) {
        let decision_seq = r.decision_seq;
        if let Err(e) = self.0.append_deferred(outcome_entry(r)) {
            tracing::error!(error = %e, decision_seq, "could not record request outcome");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "tests fail loudly"
    )]
    use std::time::SystemTime;

    use custody_grant::{AccessRequest, ApprovalPolicy, Grant, GrantRequest, Limits, Scope, Task};
    use custody_log::{Entry, LogConfig, RequestDecision, storage};

    use super::*;

    fn grant() -> Arc<Grant> {
        let issued = Grant::issue(
            GrantRequest {
                identity: "agent:a".into(),
                task: Task {
                    id: "task-1".into(),
                    intent: "read".into(),
                },
                requester: "op".into(),
                role_arn: "arn:aws:iam::123456789012:role/r".into(),
                regions: vec!["us-east-1".into()],
                scope: Scope::from_cli(["--allow", "s3:GetObject", "--resource", "*"]).unwrap(),
                not_before: None,
                ttl: time::Duration::minutes(5),
                approval_policy: ApprovalPolicy::default(),
                request_budget: None,
            },
            &Limits {
                default_max_ttl: time::Duration::hours(1),
                max_ttl_by_role: Default::default(),
            },
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        Arc::new(issued.grant)
    }

    fn record(grant: Option<Arc<Grant>>, allowed: bool) -> DecisionRecord {
        DecisionRecord {
            request_id: "req-1".into(),
            received_at: SystemTime::now(),
            grant,
            access_key_id: Some("AKIAUNKNOWN000000000".into()),
            grant_event_seq: Some(3),
            service: Some("s3".into()),
            operation: Some("GetObject".into()),
            access: AccessRequest {
                region: Some("us-east-1".into()),
                ..Default::default()
            },
            allowed,
            reason: "because \"quoted\"".into(),
            source: "192.0.2.7:4711".parse().unwrap(),
            body_sha256: None,
        }
    }

    /// Every entry body in the log at `dir`, in order.
    fn bodies(dir: &std::path::Path) -> Vec<EntryBody> {
        let mut out = Vec::new();
        for (_, path) in storage::list_segments(dir).unwrap() {
            let data = std::fs::read(path).unwrap();
            for line in storage::split_lines(storage::trim_padding(&data)).0 {
                out.push(Entry::decode(line).unwrap().body);
            }
        }
        out
    }

    #[tokio::test]
    async fn records_become_entries_with_the_grant_or_the_unknown_key_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let log = Arc::new(Log::open(LogConfig::new(dir.path(), "custody.test/log"), key).unwrap());
        let sink = SessionLog(Arc::clone(&log));
        let g = grant();
        let known = sink
            .record_decision(record(Some(Arc::clone(&g)), true))
            .await
            .unwrap();
        let unknown = sink.record_decision(record(None, false)).await.unwrap();
        assert!(unknown > known);
        sink.record_outcome(OutcomeRecord {
            request_id: "req-1".into(),
            decision_seq: known,
            grant_id: g.id.as_str().into(),
            status: 200,
            bytes_in: 0,
            bytes_out: 5,
            upstream_request_id: None,
            latency_us: 9,
            error: Some("response not read to the end".into()),
        });
        log.close().unwrap();

        let bodies = bodies(dir.path());
        let d: Vec<&RequestDecision> = bodies
            .iter()
            .filter_map(|b| match b {
                EntryBody::RequestDecision(d) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(d.len(), 2);
        assert_eq!(
            (
                d[0].grant_id.as_str(),
                d[0].identity.as_str(),
                d[0].task_id.as_str()
            ),
            (g.id.as_str(), "agent:a", "task-1")
        );
        assert_eq!(d[0].reason, "because \"quoted\"");
        assert_eq!(d[0].source, "192.0.2.7:4711");
        assert_eq!(
            (d[0].service.as_str(), d[0].operation.as_str()),
            ("s3", "GetObject")
        );
        assert!(d[0].allowed);
        // No grant matched: the entry names the key the request claimed.
        assert_eq!(d[1].grant_id, "");
        assert_eq!(
            d[1].reason,
            "because \"quoted\" (access key id `AKIAUNKNOWN000000000`)"
        );
        // The outcome was written by the close at the latest.
        let outcome = bodies
            .iter()
            .find_map(|b| match b {
                EntryBody::RequestOutcome(o) => Some(o),
                _ => None,
            })
            .expect("an outcome entry");
        assert_eq!((outcome.decision_seq, outcome.bytes_out), (known, 5));
        assert_eq!(
            outcome.error.as_deref(),
            Some("response not read to the end")
        );
    }

    #[test]
    fn a_denial_too_large_to_record_whole_is_summarised_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let log = Arc::new(Log::open(LogConfig::new(dir.path(), "summary.test/log"), key).unwrap());
        // 10,000 keys of 300 bytes: 3 MB of resources, past the 2 MiB entry bound.
        let resources: Vec<String> = (0..10_000)
            .map(|i| format!("arn:aws:s3:::b/{i:0>280}"))
            .collect();
        let mut denied = record(Some(grant()), false);
        denied.access.actions = vec![custody_grant::ActionRequest {
            action: "s3:DeleteObject".into(),
            resources: resources.clone(),
            named_explicitly: false,
        }];
        let mut allowed = denied.clone();
        allowed.allowed = true;
        let sink = SessionLog(log.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(sink.record_decision(denied)).unwrap();
        // An allowed decision is never summarised: it cannot be recorded, so it is refused.
        assert!(rt.block_on(sink.record_decision(allowed)).is_err());
        log.close().unwrap();
        let text = std::fs::read_to_string(dir.path().join(storage::segment_name(0))).unwrap();
        let d: Vec<RequestDecision> = text
            .lines()
            .filter_map(|l| {
                match Entry::decode(l.trim_end_matches('\0').as_bytes())
                    .ok()?
                    .body
                {
                    EntryBody::RequestDecision(d) => Some(d),
                    _ => None,
                }
            })
            .collect();
        assert_eq!(d.len(), 1);
        let kept = &d[0].access.actions[0].resources;
        assert_eq!(kept.len(), SUMMARY_KEEP + 1);
        assert_eq!(kept[..SUMMARY_KEEP], resources[..SUMMARY_KEEP]);
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for r in &resources {
            h.update(r.as_bytes());
            h.update(b"\n");
        }
        let last = kept.last().unwrap();
        assert!(last.contains("9968 more resources"), "{last}");
        assert!(last.contains(&hex::encode(h.finalize())), "{last}");
    }
}
