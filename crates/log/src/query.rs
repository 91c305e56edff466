//! Auditors' queries: the transcript of a task or identity, denied attempts,
//! a time range.

use std::collections::HashSet;

use time::OffsetDateTime;

use crate::entry::{Entry, EntryBody, GrantEventKind};
use crate::storage;
use crate::verify::LogFiles;

/// Which entries to select. Empty fields select everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only entries of this task (request outcomes follow their decisions).
    pub task: Option<String>,
    /// Only entries of this identity.
    pub identity: Option<String>,
    /// Only denied requests and denied grants.
    pub denied_only: bool,
    /// Only entries at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only entries before this time.
    pub until: Option<OffsetDateTime>,
}

/// A selected entry and where it is.
#[derive(Clone, Debug)]
pub struct Hit {
    /// Segment file.
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// The raw line.
    pub raw: String,
    /// The decoded entry.
    pub entry: Entry,
}

/// Runs `filter` over every decodable entry, in log order. Lines that do not
/// decode are skipped (the verifier reports them).
pub fn select(files: &LogFiles, filter: &Filter) -> Vec<Hit> {
    let mut out = Vec::new();
    // Request IDs of selected decisions, so their outcomes come along.
    let mut requests: HashSet<String> = HashSet::new();
    for (name, data) in &files.segments {
        for (i, l) in storage::split_lines(data).0.into_iter().enumerate() {
            let Ok(e) = Entry::decode(l) else { continue };
            if filter.since.is_some_and(|s| e.time < s) || filter.until.is_some_and(|u| e.time >= u)
            {
                continue;
            }
            let keep = match &e.body {
                EntryBody::RequestOutcome(o) => {
                    !filter.denied_only && requests.contains(&o.request_id)
                }
                body => {
                    let subject = body.subject();
                    let who = filter
                        .identity
                        .as_ref()
                        .is_none_or(|id| subject.is_some_and(|s| s.1 == id));
                    let task = filter
                        .task
                        .as_ref()
                        .is_none_or(|t| subject.is_some_and(|s| s.2 == t));
                    let denied = !filter.denied_only
                        || match body {
                            EntryBody::RequestDecision(d) => !d.allowed,
                            EntryBody::Grant(g) => g.event == GrantEventKind::Denied,
                            EntryBody::RefusalsCounted(_) => true,
                            _ => false,
                        };
                    let everything = filter.identity.is_none() && filter.task.is_none();
                    (who && task && denied) && (everything || subject.is_some())
                }
            };
            if keep {
                if let EntryBody::RequestDecision(d) = &e.body {
                    requests.insert(d.request_id.clone());
                }
                out.push(Hit {
                    file: name.clone(),
                    line: i as u64 + 1,
                    raw: String::from_utf8_lossy(l).into_owned(),
                    entry: e,
                });
            }
        }
    }
    out
}

/// A one-line human summary of an entry.
pub fn summary(e: &Entry) -> String {
    let t = crate::entry::format_time(e.time);
    let what = match &e.body {
        EntryBody::GatewayStarted { software, .. } => format!("gateway started ({software})"),
        EntryBody::GatewayStopped { reason } => format!("gateway stopped ({reason})"),
        EntryBody::Grant(g) => {
            let line = format!(
                "grant {} {:?} identity={} task={} by={}",
                g.grant_id, g.event, g.identity, g.task_id, g.by
            )
            .to_lowercase();
            match g.grant.as_ref().and_then(|g| g.status_reason.as_deref()) {
                Some(reason) => format!("{line} reason={reason:?}"),
                None => line,
            }
        }
        EntryBody::RequestDecision(d) => {
            let actions: Vec<String> = d
                .access
                .actions
                .iter()
                .map(|a| format!("{} on {}", a.action, a.resources.join(",")))
                .collect();
            format!(
                "{} {}:{} identity={} task={} grant={} request={} [{}] from {}: {}",
                if d.allowed { "ALLOW" } else { "DENY" },
                d.service,
                d.operation,
                d.identity,
                d.task_id,
                d.grant_id,
                d.request_id,
                actions.join("; "),
                d.source,
                d.reason
            )
        }
        EntryBody::RequestOutcome(o) => format!(
            "outcome request={} decision={} status={} in={} out={} latency={}us{}",
            o.request_id,
            o.decision_seq,
            o.status,
            o.bytes_in,
            o.bytes_out,
            o.latency_us,
            o.error
                .as_deref()
                .map(|e| format!(" error={e:?}"))
                .unwrap_or_default()
        ),
        EntryBody::KeyRotated { new_vkey, .. } => format!("key rotated to {new_vkey}"),
        EntryBody::LogReplaced {
            old_origin,
            old_dir,
            reason,
            ..
        } => format!("replaces log {old_origin} (set aside in {old_dir}): {reason}"),
        EntryBody::RefusalsCounted(r) => format!(
            "DENY x{} {} from {}{} between {} and {} (and {} recorded one by one): {}",
            r.counted,
            r.code,
            r.source_ip,
            r.grant_id
                .as_deref()
                .map(|g| format!(" under grant {g}"))
                .unwrap_or_default(),
            crate::entry::format_time(r.first),
            crate::entry::format_time(r.last),
            r.recorded,
            r.example
        ),
        EntryBody::Recovered {
            segment,
            cut_bytes,
            unsealed_entries,
            ..
        } => format!(
            "recovered after crash (cut {cut_bytes} bytes from {segment}; {unsealed_entries} entries written before the crash sealed late)"
        ),
        EntryBody::ConfigReloaded {
            path,
            people,
            agents,
            roles,
            ..
        } => format!(
            "configuration reloaded from {path} (people: {}; agents: {}; roles: {})",
            people.join(", "),
            agents.join(", "),
            roles.join(", ")
        ),
    };
    format!("{} {t} {what}", e.seq)
}
