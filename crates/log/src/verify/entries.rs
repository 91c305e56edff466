//! The entry pass: links, sequence, origin, time, and re-evaluation of
//! allowed requests against the grant events logged before them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use time::OffsetDateTime;

use super::{Finding, FindingClass, MAX_FINDINGS_PER_CLASS, Report, Severity};
use crate::entry::{self, Entry, EntryBody, GrantEventKind};
use crate::merkle::Hash;

pub(super) use super::parse::{AllowedRequest, Parsed, Rec, parse_line};
use crate::note::{NoteVerifier, parse_vkey};

/// Grant state reconstructed from the log.
pub(super) struct GrantState {
    pub(super) last_event: GrantEventKind,
    pub(super) grant: Option<custody_grant::Grant>,
}

pub(super) struct Verifier {
    pub(super) origin: String,
    pub(super) report: Report,
    pub(super) expected_seq: u64,
    pub(super) prev: Hash,
    /// File and line of the last accepted entry.
    pub(super) prev_line: Option<(Arc<str>, u64, u64)>,
    pub(super) last_time: Option<OffsetDateTime>,
    /// Runs of sequence numbers skipped over: first -> (end, exclusive; file and line
    /// where the gap was seen). At most [`MAX_GAPS`]; gaps past that are not tracked.
    pub(super) pending_missing: BTreeMap<u64, (u64, Arc<str>, u64)>,
    /// (seq, hash) of the last [`RECENT`] accepted entries, in order (seqs increasing).
    pub(super) accepted: VecDeque<(u64, Hash)>,
    pub(super) grants: HashMap<String, GrantState>,
    /// Per grant: allowed decisions so far, and the request counts its decisions used
    /// (those below its budget).
    pub(super) budget_use: HashMap<String, (u64, HashSet<u64>)>,
    /// Findings per class so far, for the cap.
    pub(super) per_class: HashMap<FindingClass, u64>,
    pub(super) grant_events: HashMap<u64, String>,
    /// Keys announced by `key_rotated` entries: (seq, verifier).
    pub(super) rotated_keys: Vec<(u64, NoteVerifier)>,
    /// Two entries claim the same seq and predecessor: the later one's
    /// location and hash, resolved by whichever the next entry links to.
    pub(super) conflict: Option<Conflict>,
    /// Largest size among validly signed checkpoints in the log's files.
    pub(super) max_checkpoint_size: u64,
    /// Time of the newest validly signed checkpoint in the log's files.
    pub(super) latest_checkpoint_at: Option<OffsetDateTime>,
}

/// Accepted entries remembered to tell a duplicate from an insertion.
pub(super) const RECENT: usize = 65_536;
/// Gaps in the sequence tracked at once.
pub(super) const MAX_GAPS: usize = 65_536;

pub(super) struct Conflict {
    pub(super) seq: u64,
    pub(super) first: (String, u64, Hash),
    pub(super) second: (String, u64, Hash),
}

impl Verifier {
    pub(super) fn new(origin: String) -> Self {
        Self {
            origin,
            report: Report::default(),
            expected_seq: 0,
            prev: Hash::default(),
            prev_line: None,
            last_time: None,
            pending_missing: BTreeMap::new(),
            accepted: VecDeque::new(),
            grants: HashMap::new(),
            budget_use: HashMap::new(),
            per_class: HashMap::new(),
            grant_events: HashMap::new(),
            rotated_keys: Vec::new(),
            conflict: None,
            max_checkpoint_size: 0,
            latest_checkpoint_at: None,
        }
    }

    pub(super) fn fail(
        &mut self,
        class: FindingClass,
        file: &str,
        line: u64,
        seq: Option<u64>,
        message: String,
    ) {
        self.push(class, Severity::Failure, file, line, seq, message);
    }

    pub(super) fn warn(
        &mut self,
        class: FindingClass,
        file: &str,
        line: u64,
        seq: Option<u64>,
        message: String,
    ) {
        self.push(class, Severity::Warning, file, line, seq, message);
    }

    /// Record a finding: a run of one class on consecutive lines becomes one finding, and
    /// past [`MAX_FINDINGS_PER_CLASS`] of a class they are only counted, so a crafted log
    /// cannot make the report (or the verifier's memory) as large as itself.
    fn push(
        &mut self,
        class: FindingClass,
        severity: Severity,
        file: &str,
        line: u64,
        seq: Option<u64>,
        message: String,
    ) {
        if let Some(last) = self.report.findings.last_mut()
            && last.class == class
            && last.severity == severity
            && line > 0
            && last.file == file
            && line == last.through_line.unwrap_or(last.line) + 1
        {
            last.through_line = Some(line);
            last.count += 1;
            return;
        }
        let n = self.per_class.entry(class).or_insert(0);
        *n += 1;
        if *n > MAX_FINDINGS_PER_CLASS {
            let e = self.report.suppressed.entry(class).or_insert((severity, 0));
            e.0 = e.0.min(severity);
            e.1 += 1;
            return;
        }
        self.report.findings.push(Finding {
            class,
            severity,
            file: file.to_owned(),
            line,
            through_line: None,
            count: 1,
            seq,
            message,
        });
    }

    pub(super) fn accepted_hash(&self, seq: u64) -> Option<Hash> {
        self.accepted
            .binary_search_by_key(&seq, |(s, _)| *s)
            .ok()
            .map(|i| self.accepted[i].1)
    }

    pub(super) fn line(&mut self, file: &Arc<str>, line: u64, rec: Rec) {
        let p = match rec.parsed {
            Ok(p) => p,
            Err(e) => {
                self.fail(FindingClass::MalformedEntry, file, line, None, e);
                return;
            }
        };
        if !p.origin_ok {
            self.fail(
                FindingClass::SplicedEntry,
                file,
                line,
                Some(p.seq),
                format!(
                    "entry belongs to another log (origin is not `{}`)",
                    self.origin
                ),
            );
            return;
        }
        // Resolve a pending same-seq conflict by the link of this entry.
        if let Some(c) = self.conflict.take() {
            let inserted = if p.prev == c.second.2 {
                Some(&c.first)
            } else if p.prev == c.first.2 {
                Some(&c.second)
            } else {
                None
            };
            let (f, l) = match inserted {
                Some(x) => (x.0.clone(), x.1),
                None => (c.second.0.clone(), c.second.1),
            };
            self.fail(
                FindingClass::InsertedEntry,
                &f,
                l,
                Some(c.seq),
                format!(
                    "seq {} appears twice with the same predecessor; this one is not in the chain",
                    c.seq
                ),
            );
            if inserted.is_some_and(|x| x.2 == c.first.2) {
                // The chain continues from the second; adopt it.
                self.prev = c.second.2;
                self.prev_line = Some((c.second.0.as_str().into(), c.second.1, c.seq));
                if let Some(last) = self.accepted.back_mut() {
                    last.1 = c.second.2;
                }
            }
        }

        if p.seq == self.expected_seq {
            if p.prev != self.prev {
                match self.prev_line.clone() {
                    Some((pf, pl, ps)) => self.fail(
                        FindingClass::ModifiedEntry,
                        &pf,
                        pl,
                        Some(ps),
                        format!(
                            "entry's hash does not match the link `prev` in seq {} ({file}:{line})",
                            p.seq
                        ),
                    ),
                    None => self.fail(
                        FindingClass::ModifiedEntry,
                        file,
                        line,
                        Some(p.seq),
                        "first entry does not link to the zero hash".into(),
                    ),
                }
            }
            self.accept(file, line, &rec.hash, p);
        } else if p.seq > self.expected_seq {
            // One run, however long: a gap costs the same memory at any size.
            if self.pending_missing.len() < MAX_GAPS {
                self.pending_missing
                    .insert(self.expected_seq, (p.seq, Arc::clone(file), line));
            }
            self.accept(file, line, &rec.hash, p);
        } else if self.take_missing(p.seq) {
            self.fail(
                FindingClass::ReorderedEntry,
                file,
                line,
                Some(p.seq),
                format!(
                    "seq {} appears after seq {}",
                    p.seq,
                    self.expected_seq.saturating_sub(1)
                ),
            );
        } else if self.accepted_hash(p.seq) == Some(rec.hash) {
            self.fail(
                FindingClass::DuplicateEntry,
                file,
                line,
                Some(p.seq),
                format!("seq {} appears again", p.seq),
            );
        } else if p.seq + 1 == self.expected_seq
            && self.accepted.len() >= 2
            && self.accepted.get(self.accepted.len() - 2).map(|a| a.1) == Some(p.prev)
        {
            // Same seq and same predecessor as the last accepted entry: one of
            // the two is not in the chain; the next entry's link tells which.
            if let Some((pf, pl, _)) = self.prev_line.clone() {
                self.conflict = Some(Conflict {
                    seq: p.seq,
                    first: (pf.to_string(), pl, self.prev),
                    second: (file.to_string(), line, rec.hash),
                });
            }
        } else {
            self.fail(
                FindingClass::InsertedEntry,
                file,
                line,
                Some(p.seq),
                format!(
                    "seq {} is out of sequence (expected {})",
                    p.seq, self.expected_seq
                ),
            );
        }
    }

    pub(super) fn accept(&mut self, file: &Arc<str>, line: u64, hash: &Hash, p: Parsed) {
        if let Some(t) = self.last_time
            && p.time < t
        {
            self.fail(
                FindingClass::TimeBackwards,
                file,
                line,
                Some(p.seq),
                format!(
                    "time {} is before the previous entry's {}",
                    entry::format_time(p.time),
                    entry::format_time(t)
                ),
            );
        }
        self.last_time = Some(self.last_time.map_or(p.time, |t| t.max(p.time)));
        self.expected_seq = p.seq.saturating_add(1);
        self.prev = *hash;
        self.prev_line = Some((Arc::clone(file), line, p.seq));
        self.accepted.push_back((p.seq, *hash));
        if self.accepted.len() > RECENT {
            self.accepted.pop_front();
        }
        let (seq, decision_count) = (p.seq, p.decision_count);
        let allowed = p.allowed.is_some();
        if let Some(full) = p.full {
            self.semantic(file, line, *full);
        }
        if let Some(a) = p.allowed {
            self.report.decisions_checked += 1;
            if let Some(why) = self.reevaluate(&a, p.time) {
                self.fail(
                    FindingClass::UnauthorizedAllow,
                    file,
                    line,
                    Some(p.seq),
                    why,
                );
            }
        }
        if let Some((g, count)) = decision_count {
            self.note_budget_use(file, line, seq, g, count, allowed);
        }
    }

    /// Whether `seq` was in a gap (it is no longer); an entry that fills a gap came
    /// out of order.
    fn take_missing(&mut self, seq: u64) -> bool {
        let Some((&start, &(end, ref file, line))) = self.pending_missing.range(..=seq).next_back()
        else {
            return false;
        };
        if seq >= end {
            return false;
        }
        let file = Arc::clone(file);
        self.pending_missing.remove(&start);
        if start < seq {
            self.pending_missing
                .insert(start, (seq, Arc::clone(&file), line));
        }
        if seq + 1 < end {
            self.pending_missing.insert(seq + 1, (end, file, line));
        }
        true
    }

    /// A decision that reached the budget check used one request count of its grant.
    /// The gateway hands each count out once, whatever order concurrent decisions reach
    /// the log in; two decisions with one count below the budget mean the budget was
    /// spent twice, or an entry was edited.
    fn note_budget_use(
        &mut self,
        file: &str,
        line: u64,
        seq: u64,
        grant: String,
        count: u64,
        allowed: bool,
    ) {
        let budget = self
            .grants
            .get(&grant)
            .and_then(|s| s.grant.as_ref())
            .and_then(|g| g.request_budget);
        let use_ = self.budget_use.entry(grant).or_default();
        if allowed {
            use_.0 += 1;
        }
        let Some(budget) = budget else { return };
        if count < budget && !use_.1.insert(count) {
            let grant = self
                .budget_use
                .iter()
                .find(|(_, u)| u.1.contains(&count))
                .map(|(g, _)| g.clone())
                .unwrap_or_default();
            self.fail(
                FindingClass::BudgetReused,
                file,
                line,
                Some(seq),
                format!(
                    "request count {count} of grant `{grant}` (budget {budget}) was already used by an earlier decision"
                ),
            );
        }
    }

    /// Grant bookkeeping and re-evaluation of allowed requests.
    pub(super) fn semantic(&mut self, file: &str, line: u64, e: Entry) {
        match e.body {
            EntryBody::Grant(g) => {
                self.grant_events.insert(e.seq, g.grant_id.clone());
                let st = self.grants.entry(g.grant_id.clone()).or_insert(GrantState {
                    last_event: g.event,
                    grant: None,
                });
                st.last_event = g.event;
                if g.grant.is_some() {
                    st.grant = g.grant;
                }
            }
            EntryBody::Recovered {
                unsealed_entries,
                unsealed_sha256,
                ..
            } if unsealed_entries > 0 => {
                // Written before a crash, sealed only after the restart: nothing proves
                // they were not edited in between.
                let first = e.seq.saturating_sub(unsealed_entries);
                self.warn(
                    FindingClass::SealedLate,
                    file,
                    line,
                    Some(e.seq),
                    format!(
                        "entries {first}..{} were written before a crash and sealed only after the restart (sha256 {unsealed_sha256})",
                        e.seq - 1
                    ),
                );
            }
            EntryBody::LogReplaced {
                old_origin,
                old_dir,
                old_checkpoint,
                reason,
            } => {
                let against = old_checkpoint
                    .as_deref()
                    .and_then(|n| crate::note::SignedCheckpoint::parse(n).ok())
                    .map_or_else(
                        || "no checkpoint of it was signed".to_owned(),
                        |(c, _)| {
                            format!(
                                "verify it against its last signed checkpoint, size {} root {}",
                                c.checkpoint.size, c.checkpoint.root
                            )
                        },
                    );
                self.warn(
                    FindingClass::ReplacesLog,
                    file,
                    line,
                    Some(e.seq),
                    format!(
                        "this log replaces `{old_origin}` (set aside in `{old_dir}`: {reason}); {against}"
                    ),
                );
            }
            EntryBody::RefusalsCounted(r) => {
                self.report.refusals_counted =
                    self.report.refusals_counted.saturating_add(r.counted);
            }
            EntryBody::KeyRotated { new_vkey, .. } => match parse_vkey(&new_vkey) {
                Ok(k) => self.rotated_keys.push((e.seq, k)),
                Err(err) => self.fail(
                    FindingClass::MalformedEntry,
                    file,
                    line,
                    Some(e.seq),
                    format!("key rotation names an invalid key: {err}"),
                ),
            },
            _ => {}
        }
    }

    /// `None` if the grant, as logged before the decision, allows it.
    pub(super) fn reevaluate(&self, d: &AllowedRequest, at: OffsetDateTime) -> Option<String> {
        let id = &d.grant_id;
        match d.grant_event_seq {
            None => {
                return Some(format!(
                    "allowed request `{}` cites no grant event",
                    d.request_id
                ));
            }
            Some(s) => match self.grant_events.get(&s) {
                Some(g) if g == id => {}
                Some(g) => return Some(format!("cites grant event {s} of another grant `{g}`")),
                None => {
                    return Some(format!(
                        "cites seq {s}, which is not an earlier grant event"
                    ));
                }
            },
        }
        let Some(st) = self.grants.get(id) else {
            return Some(format!(
                "grant `{id}` has no lifecycle entry before this request"
            ));
        };
        let Some(grant) = &st.grant else {
            return Some(format!("grant `{id}` was logged without its scope"));
        };
        let status = match st.last_event {
            GrantEventKind::Activated => custody_grant::GrantStatus::Active,
            GrantEventKind::Approved if grant.status == custody_grant::GrantStatus::Active => {
                custody_grant::GrantStatus::Active
            }
            GrantEventKind::Approved | GrantEventKind::Requested => {
                custody_grant::GrantStatus::Pending
            }
            GrantEventKind::Denied => custody_grant::GrantStatus::Denied,
            GrantEventKind::Revoked => custody_grant::GrantStatus::Revoked,
            GrantEventKind::Expired => custody_grant::GrantStatus::Expired,
        };
        if grant.identity != d.identity {
            return Some(format!(
                "grant `{id}` is for `{}`, not `{}`",
                grant.identity, d.identity
            ));
        }
        let mut g = grant.clone();
        g.status = status;
        let mut access = d.access.clone();
        // The gateway allowed at most `budget` requests in all, so however concurrent
        // decisions were ordered in the log, fewer than `budget` allowed ones come
        // before any allowed one: never trust a lower figure than that count. (Counting
        // every earlier decision instead raised false alarms: a denial whose count came
        // later can reach the log first.)
        let allowed_before = self.budget_use.get(id).map_or(0, |u| u.0);
        access.requests_so_far = access.requests_so_far.max(allowed_before);
        let decision = custody_grant::decide(&g, &access, at);
        if decision.allowed {
            None
        } else {
            let why = serde_json::to_string(&decision.reason)
                .unwrap_or_else(|_| format!("{:?}", decision.reason));
            Some(format!(
                "grant `{id}` as logged does not allow this request: {why}"
            ))
        }
    }

    pub(super) fn finish_entries(&mut self) {
        if let Some(c) = self.conflict.take() {
            // No successor to decide; report the later one.
            self.fail(
                FindingClass::InsertedEntry,
                &c.second.0,
                c.second.1,
                Some(c.seq),
                format!("seq {} appears twice with the same predecessor", c.seq),
            );
        }
        let missing = std::mem::take(&mut self.pending_missing);
        for (first, (end, file, line)) in missing {
            let message = if end - first == 1 {
                format!("seq {first} is missing before this entry")
            } else {
                format!(
                    "seqs {first}..={} ({} entries) are missing before this entry",
                    end - 1,
                    end - first
                )
            };
            self.fail(
                FindingClass::MissingEntry,
                &file,
                line,
                Some(first),
                message,
            );
        }
    }
}
