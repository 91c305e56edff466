//! Offline verification of a log directory: hash links, sequence continuity,
//! origin, time, checkpoint signatures and roots, trusted checkpoints
//! (truncation, rollback, fork), and re-evaluation of every allowed request
//! against the grant events logged before it.
//!
//! Synchronous and pure over bytes ([`verify_files`]); [`verify_dir`] reads
//! the files. Never panics on any input.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::entry::{self, Entry, EntryBody, GrantEventKind};
use crate::merkle::{CompactTree, Hash, leaf_hash};
use crate::note::{NoteVerifier, SignedCheckpoint, parse_vkey};
use crate::storage::{self, CHECKPOINTS_FILE, CheckpointLine, LATEST_CHECKPOINT_FILE};

/// What the verifier is told to trust.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Keys whose checkpoint signatures are accepted.
    pub keys: Vec<NoteVerifier>,
    /// Expected origin; defaults to the first key's name.
    pub origin: Option<String>,
    /// Trusted checkpoints (name for findings, note text), e.g. copies kept
    /// by a witness or in write-once storage.
    pub trusted: Vec<(String, String)>,
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The log is not intact.
    Failure,
    /// Not proven tampered, but not sealed either (a failure with `--strict`).
    Warning,
}

/// The class of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingClass {
    /// A line is not a valid entry.
    MalformedEntry,
    /// An entry's bytes differ from what the next entry's link commits to.
    ModifiedEntry,
    /// Sequence numbers are missing (deleted entries).
    MissingEntry,
    /// An entry that is not part of the chain was inserted.
    InsertedEntry,
    /// An entry appears twice.
    DuplicateEntry,
    /// An entry is out of order.
    ReorderedEntry,
    /// An entry from another log (different origin).
    SplicedEntry,
    /// An entry's time is before its predecessor's.
    TimeBackwards,
    /// A partial line below a checkpoint (or in a sealed segment).
    TornWrite,
    /// A partial line at the end of the log, after the last checkpoint
    /// (a crash the writer has not yet recovered).
    TornTail,
    /// Entries after the last checkpoint.
    UnsealedTail,
    /// A checkpoint line or note is malformed.
    MalformedCheckpoint,
    /// A checkpoint is not signed by a trusted key.
    BadSignature,
    /// A checkpoint names another log.
    OriginMismatch,
    /// A checkpoint's root differs from the root of the entries on disk.
    CheckpointMismatch,
    /// Two checkpoints of the same size with different roots.
    Fork,
    /// A checkpoint older than one already seen (replayed or rolled back).
    Rollback,
    /// The log holds fewer entries than a checkpoint covers.
    Truncated,
    /// An allowed request that its grant, as logged before it, did not allow.
    UnauthorizedAllow,
    /// The log has no entries or no checkpoints at all.
    Empty,
}

/// One problem, located.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Class.
    pub class: FindingClass,
    /// Severity.
    pub severity: Severity,
    /// File name (relative to the log directory, or as given).
    pub file: String,
    /// 1-based line number (0 when the finding is about the whole file).
    pub line: u64,
    /// Sequence number concerned, when known.
    pub seq: Option<u64>,
    /// What is wrong.
    pub message: String,
}

/// The result of a verification run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Entry lines read (complete lines).
    pub entries: u64,
    /// Checkpoints with a valid signature.
    pub checkpoints: u64,
    /// Largest tree size covered by a valid checkpoint.
    pub sealed_size: u64,
    /// Allowed requests re-evaluated against their grants.
    pub decisions_checked: u64,
    /// Everything found, in file order.
    pub findings: Vec<Finding>,
}

/// One log file given to [`verify_files`].
#[derive(Clone, Copy, Debug)]
pub struct SegmentData<'a> {
    /// File name for findings.
    pub name: &'a str,
    /// Contents.
    pub data: &'a [u8],
}

/// Why verification could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The directory holds no log segments.
    #[error("no log segments in `{0}`")]
    NoSegments(String),
    /// No key or origin to verify against.
    #[error("no verifier key given")]
    NoKey,
}

// === impl Report ===

impl Report {
    /// `true` if any finding is a failure (or, with `strict`, any at all).
    pub fn failed(&self, strict: bool) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Failure || strict)
    }

    /// Has a finding of `class` at `file`:`line`.
    pub fn has(&self, class: FindingClass, file: &str, line: u64) -> bool {
        self.findings
            .iter()
            .any(|f| f.class == class && f.file == file && f.line == line)
    }

    /// Classes present.
    pub fn classes(&self) -> BTreeSet<FindingClass> {
        self.findings.iter().map(|f| f.class).collect()
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Failure => "FAIL",
            Severity::Warning => "WARN",
        };
        let class = serde_json::to_value(self.class)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        write!(f, "{sev} {class} {}:{}", self.file, self.line)?;
        if let Some(s) = self.seq {
            write!(f, " seq {s}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl FindingClass {
    /// The snake-case name used in text and JSON output.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

// === Reading a directory ===

/// The files of a log directory, read into memory.
#[derive(Clone, Debug, Default)]
pub struct LogFiles {
    /// Segments in order: (file name, contents).
    pub segments: Vec<(String, Vec<u8>)>,
    /// `checkpoints.jsonl`, if present.
    pub checkpoints: Option<Vec<u8>>,
    /// `checkpoint` (latest), if present.
    pub latest: Option<Vec<u8>>,
}

/// Reads a log directory.
pub fn read_dir(dir: &Path) -> Result<LogFiles, VerifyError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| VerifyError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let segs = storage::list_segments(dir).map_err(|source| VerifyError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    if segs.is_empty() {
        return Err(VerifyError::NoSegments(dir.display().to_string()));
    }
    let mut files = LogFiles::default();
    for (i, p) in segs {
        files.segments.push((storage::segment_name(i), read(&p)?));
    }
    let ck = dir.join(CHECKPOINTS_FILE);
    if ck.exists() {
        files.checkpoints = Some(read(&ck)?);
    }
    let latest = dir.join(LATEST_CHECKPOINT_FILE);
    if latest.exists() {
        files.latest = Some(read(&latest)?);
    }
    Ok(files)
}

/// Reads and verifies a log directory.
pub fn verify_dir(dir: &Path, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let files = read_dir(dir)?;
    verify_files(&files, opts)
}

// === The verifier ===

/// A checkpoint as found in some file.
struct FoundCheckpoint {
    file: String,
    line: u64,
    signed: SignedCheckpoint,
    valid_sig: bool,
    trusted_input: bool,
}

/// The parts of an entry every line needs, decoded without buffering.
#[derive(Deserialize)]
struct Head<'a> {
    seq: u64,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    origin: Cow<'a, str>,
    prev: Hash,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    allowed: Option<bool>,
    #[serde(default, borrow)]
    grant_id: Option<Cow<'a, str>>,
    // Request decision fields, decoded in the same pass (the hot path: no
    // second parse of allowed decisions).
    #[serde(default, borrow)]
    identity: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(default)]
    grant_event_seq: Option<u64>,
    #[serde(default)]
    access: Option<custody_grant::AccessRequest>,
}

/// What re-evaluating an allowed request needs.
struct AllowedRequest {
    grant_id: String,
    identity: String,
    request_id: String,
    grant_event_seq: Option<u64>,
    access: custody_grant::AccessRequest,
}

const KINDS: [&str; 7] = [
    "gateway_started",
    "gateway_stopped",
    "grant",
    "request_decision",
    "request_outcome",
    "key_rotated",
    "recovered",
];

/// One line after the parallel phase.
struct Rec {
    hash: Hash,
    parsed: Result<Parsed, String>,
}

struct Parsed {
    seq: u64,
    time: OffsetDateTime,
    origin_ok: bool,
    prev: Hash,
    /// Grant of a request decision (allowed or not), for budget counting.
    decision_grant: Option<String>,
    /// Full entry for grant events and key rotations.
    full: Option<Box<Entry>>,
    /// An allowed request to re-evaluate.
    allowed: Option<Box<AllowedRequest>>,
}

fn parse_line(line: &[u8], origin: &str) -> Rec {
    let hash = leaf_hash(line);
    let parsed = (|| {
        if line.len() > entry::MAX_ENTRY_BYTES {
            return Err(format!(
                "line of {} bytes exceeds the entry limit",
                line.len()
            ));
        }
        let head: Head<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let time =
            entry::parse_time(&head.time).map_err(|e| format!("bad time `{}`: {e}", head.time))?;
        if !KINDS.contains(&head.kind.as_ref()) {
            return Err(format!("unknown entry kind `{}`", head.kind));
        }
        let full = match head.kind.as_ref() {
            "grant" | "key_rotated" => {
                Some(Box::new(Entry::decode(line).map_err(|e| e.to_string())?))
            }
            _ => None,
        };
        let is_decision = head.kind == "request_decision";
        let decision_grant = if is_decision {
            head.grant_id.as_deref().map(str::to_owned)
        } else {
            None
        };
        let allowed = if is_decision {
            let allowed = head.allowed.ok_or("decision without `allowed`")?;
            match (
                allowed,
                head.grant_id,
                head.identity,
                head.request_id,
                head.access,
            ) {
                (false, ..) => None,
                (true, Some(g), Some(identity), Some(request_id), Some(access)) => {
                    Some(Box::new(AllowedRequest {
                        grant_id: g.into_owned(),
                        identity: identity.into_owned(),
                        request_id: request_id.into_owned(),
                        grant_event_seq: head.grant_event_seq,
                        access,
                    }))
                }
                _ => return Err("allowed decision is missing fields".into()),
            }
        } else {
            None
        };
        Ok(Parsed {
            decision_grant,
            seq: head.seq,
            time,
            origin_ok: head.origin == origin,
            prev: head.prev,
            full,
            allowed,
        })
    })();
    Rec { hash, parsed }
}

/// Grant state reconstructed from the log.
struct GrantState {
    last_event: GrantEventKind,
    grant: Option<custody_grant::Grant>,
}

/// Verifies the files of a log against `opts`.
pub fn verify_files(files: &LogFiles, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let origin = match (&opts.origin, opts.keys.first()) {
        (Some(o), _) => o.clone(),
        (None, Some(k)) => k.name.clone(),
        (None, None) => return Err(VerifyError::NoKey),
    };
    let mut v = Verifier {
        origin,
        report: Report::default(),
        expected_seq: 0,
        prev: Hash::default(),
        prev_line: None,
        last_time: None,
        pending_missing: BTreeMap::new(),
        accepted: Vec::new(),
        grants: HashMap::new(),
        decisions_per_grant: HashMap::new(),
        grant_events: HashMap::new(),
        rotated_keys: Vec::new(),
        conflict: None,
        max_checkpoint_size: 0,
    };

    // Checkpoints first, unverified, to know which tree sizes need a root.
    let mut cps = v.collect_checkpoints(files, opts);
    let wanted: BTreeSet<u64> = cps.iter().map(|c| c.signed.checkpoint.size).collect();

    // Entries.
    let mut tree = CompactTree::new();
    let mut roots: HashMap<u64, Hash> = HashMap::new();
    if wanted.contains(&0) {
        roots.insert(0, tree.root());
    }
    let mut torn: Option<(String, u64, usize, bool)> = None;
    let nseg = files.segments.len();
    for (si, (name, data)) in files.segments.iter().enumerate() {
        let (lines, tail) = storage::split_lines(data);
        const CHUNK: usize = 16 * 1024;
        for (ci, chunk) in lines.chunks(CHUNK).enumerate() {
            let recs = parse_parallel(chunk, &v.origin);
            for (i, rec) in recs.into_iter().enumerate() {
                let line_no = (ci * CHUNK + i) as u64 + 1;
                tree.push(rec.hash);
                if wanted.contains(&tree.size()) {
                    roots.insert(tree.size(), tree.root());
                }
                v.line(name, line_no, rec);
            }
        }
        if !tail.is_empty() {
            torn = Some((
                name.clone(),
                lines.len() as u64 + 1,
                tail.len(),
                si + 1 == nseg,
            ));
        }
    }
    v.finish_entries();
    let entries = tree.size();
    v.report.entries = entries;

    v.check_checkpoints(&mut cps, opts, &roots, entries);

    let sealed = v.report.sealed_size;
    if let Some((file, line, len, last_segment)) = torn {
        if !last_segment || v.max_checkpoint_size > entries {
            v.fail(
                FindingClass::TornWrite,
                &file,
                line,
                None,
                format!("partial line of {len} bytes below a checkpoint or in a sealed segment"),
            );
        } else {
            v.warn(
                FindingClass::TornTail,
                &file,
                line,
                None,
                format!("partial line of {len} bytes after the last entry (unrecovered crash)"),
            );
        }
    }
    if entries > sealed {
        // Locate the first unsealed entry.
        let (file, line) = locate(files, sealed);
        v.warn(
            FindingClass::UnsealedTail,
            &file,
            line,
            Some(sealed),
            format!(
                "{} entries after the last valid checkpoint (size {sealed})",
                entries - sealed
            ),
        );
    }
    if entries == 0 {
        v.fail(
            FindingClass::Empty,
            "",
            0,
            None,
            "the log has no entries".into(),
        );
    }
    Ok(v.report)
}

/// File and line of leaf `index`.
fn locate(files: &LogFiles, index: u64) -> (String, u64) {
    let mut remaining = index;
    for (name, data) in &files.segments {
        let n = data.iter().filter(|b| **b == b'\n').count() as u64;
        if remaining < n {
            return (name.clone(), remaining + 1);
        }
        remaining -= n;
    }
    let last = files
        .segments
        .last()
        .map(|(n, _)| n.clone())
        .unwrap_or_default();
    (last, 0)
}

fn parse_parallel(chunk: &[&[u8]], origin: &str) -> Vec<Rec> {
    if chunk.len() < 256 {
        return chunk.iter().map(|l| parse_line(l, origin)).collect();
    }
    let mid = chunk.len() / 2;
    let (a, b) = chunk.split_at(mid);
    std::thread::scope(|s| {
        let h = s.spawn(|| b.iter().map(|l| parse_line(l, origin)).collect::<Vec<_>>());
        let mut first: Vec<Rec> = a.iter().map(|l| parse_line(l, origin)).collect();
        match h.join() {
            Ok(second) => first.extend(second),
            // The worker cannot panic on input (parse_line does not); if it
            // did, redo its half here rather than lose lines.
            Err(_) => first.extend(b.iter().map(|l| parse_line(l, origin))),
        }
        first
    })
}

struct Verifier {
    origin: String,
    report: Report,
    expected_seq: u64,
    prev: Hash,
    /// File and line of the last accepted entry.
    prev_line: Option<(String, u64, u64)>,
    last_time: Option<OffsetDateTime>,
    /// Sequence numbers skipped over: seq -> (file, line where the gap was seen).
    pending_missing: BTreeMap<u64, (String, u64)>,
    /// (seq, hash) of accepted entries, in order (seqs increasing).
    accepted: Vec<(u64, Hash)>,
    grants: HashMap<String, GrantState>,
    decisions_per_grant: HashMap<String, u64>,
    grant_events: HashMap<u64, String>,
    /// Keys announced by `key_rotated` entries: (seq, verifier).
    rotated_keys: Vec<(u64, NoteVerifier)>,
    /// Two entries claim the same seq and predecessor: the later one's
    /// location and hash, resolved by whichever the next entry links to.
    conflict: Option<Conflict>,
    /// Largest size among validly signed checkpoints in the log's files.
    max_checkpoint_size: u64,
}

struct Conflict {
    seq: u64,
    first: (String, u64, Hash),
    second: (String, u64, Hash),
}

impl Verifier {
    fn fail(
        &mut self,
        class: FindingClass,
        file: &str,
        line: u64,
        seq: Option<u64>,
        message: String,
    ) {
        self.report.findings.push(Finding {
            class,
            severity: Severity::Failure,
            file: file.to_owned(),
            line,
            seq,
            message,
        });
    }

    fn warn(
        &mut self,
        class: FindingClass,
        file: &str,
        line: u64,
        seq: Option<u64>,
        message: String,
    ) {
        self.report.findings.push(Finding {
            class,
            severity: Severity::Warning,
            file: file.to_owned(),
            line,
            seq,
            message,
        });
    }

    fn accepted_hash(&self, seq: u64) -> Option<Hash> {
        self.accepted
            .binary_search_by_key(&seq, |(s, _)| *s)
            .ok()
            .map(|i| self.accepted[i].1)
    }

    fn line(&mut self, file: &str, line: u64, rec: Rec) {
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
                self.prev_line = Some((c.second.0.clone(), c.second.1, c.seq));
                if let Some(last) = self.accepted.last_mut() {
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
            for s in self.expected_seq..p.seq.min(self.expected_seq.saturating_add(10_000)) {
                self.pending_missing.insert(s, (file.to_owned(), line));
            }
            self.accept(file, line, &rec.hash, p);
        } else if self.pending_missing.remove(&p.seq).is_some() {
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
                    first: (pf, pl, self.prev),
                    second: (file.to_owned(), line, rec.hash),
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

    fn accept(&mut self, file: &str, line: u64, hash: &Hash, p: Parsed) {
        if let Some(t) = self.last_time {
            if p.time < t {
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
        }
        self.last_time = Some(self.last_time.map_or(p.time, |t| t.max(p.time)));
        self.expected_seq = p.seq.saturating_add(1);
        self.prev = *hash;
        self.prev_line = Some((file.to_owned(), line, p.seq));
        self.accepted.push((p.seq, *hash));
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
        // Every decision counts against the grant's budget, allowed or not.
        if let Some(g) = p.decision_grant {
            *self.decisions_per_grant.entry(g).or_insert(0) += 1;
        }
    }

    /// Grant bookkeeping and re-evaluation of allowed requests.
    fn semantic(&mut self, file: &str, line: u64, e: Entry) {
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
    fn reevaluate(&self, d: &AllowedRequest, at: OffsetDateTime) -> Option<String> {
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
        // Count earlier decisions ourselves; never trust a lower figure.
        let counted = self.decisions_per_grant.get(id).copied().unwrap_or(0);
        access.requests_so_far = access.requests_so_far.max(counted);
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

    fn finish_entries(&mut self) {
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
        for (seq, (file, line)) in missing {
            self.fail(
                FindingClass::MissingEntry,
                &file,
                line,
                Some(seq),
                format!("seq {seq} is missing before this entry"),
            );
        }
    }

    fn collect_checkpoints(
        &mut self,
        files: &LogFiles,
        opts: &VerifyOptions,
    ) -> Vec<FoundCheckpoint> {
        let mut out = Vec::new();
        if let Some(data) = &files.checkpoints {
            let (lines, tail) = storage::split_lines(data);
            for (i, l) in lines.iter().enumerate() {
                let line = i as u64 + 1;
                let note = match serde_json::from_slice::<CheckpointLine>(l) {
                    Ok(c) => c.note,
                    Err(e) => {
                        self.fail(
                            FindingClass::MalformedCheckpoint,
                            CHECKPOINTS_FILE,
                            line,
                            None,
                            e.to_string(),
                        );
                        continue;
                    }
                };
                self.push_checkpoint(&mut out, CHECKPOINTS_FILE, line, &note, false);
            }
            if !tail.is_empty() {
                self.warn(
                    FindingClass::TornTail,
                    CHECKPOINTS_FILE,
                    lines.len() as u64 + 1,
                    None,
                    format!("partial checkpoint line of {} bytes", tail.len()),
                );
            }
        }
        if let Some(data) = &files.latest {
            match std::str::from_utf8(data) {
                Ok(note) => self.push_checkpoint(&mut out, LATEST_CHECKPOINT_FILE, 1, note, false),
                Err(_) => self.fail(
                    FindingClass::MalformedCheckpoint,
                    LATEST_CHECKPOINT_FILE,
                    1,
                    None,
                    "not utf-8".into(),
                ),
            }
        }
        for (name, note) in &opts.trusted {
            self.push_checkpoint(&mut out, name, 1, note, true);
        }
        out
    }

    fn push_checkpoint(
        &mut self,
        out: &mut Vec<FoundCheckpoint>,
        file: &str,
        line: u64,
        note: &str,
        trusted: bool,
    ) {
        match SignedCheckpoint::parse(note) {
            Ok((signed, _)) => out.push(FoundCheckpoint {
                file: file.to_owned(),
                line,
                signed,
                valid_sig: false,
                trusted_input: trusted,
            }),
            Err(e) => self.fail(
                FindingClass::MalformedCheckpoint,
                file,
                line,
                None,
                e.to_string(),
            ),
        }
    }

    fn check_checkpoints(
        &mut self,
        cps: &mut [FoundCheckpoint],
        opts: &VerifyOptions,
        roots: &HashMap<u64, Hash>,
        entries: u64,
    ) {
        // Keys: the given ones, plus keys announced by rotation entries that a
        // checkpoint signed by an already trusted key covers.
        let mut keys: Vec<NoteVerifier> = opts.keys.clone();
        let mut pending_rot = self.rotated_keys.clone();
        loop {
            let mut grew = false;
            for c in cps.iter_mut().filter(|c| !c.valid_sig) {
                if keys.iter().any(|k| sig_ok(&c.signed.note, k)) {
                    c.valid_sig = true;
                    grew = true;
                }
            }
            let sealed_by_valid = cps
                .iter()
                .filter(|c| {
                    c.valid_sig
                        && roots.get(&c.signed.checkpoint.size) == Some(&c.signed.checkpoint.root)
                })
                .map(|c| c.signed.checkpoint.size)
                .max()
                .unwrap_or(0);
            let (now_ok, later): (Vec<_>, Vec<_>) = pending_rot
                .into_iter()
                .partition(|(s, _)| *s < sealed_by_valid);
            pending_rot = later;
            if !now_ok.is_empty() {
                keys.extend(now_ok.into_iter().map(|(_, k)| k));
                grew = true;
            }
            if !grew {
                break;
            }
        }

        let mut by_size: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut max_seen: Option<(u64, String, u64)> = None;
        let mut max_in_log: u64 = 0;
        for (i, c) in cps.iter().enumerate() {
            let cp = &c.signed.checkpoint;
            if cp.origin != self.origin {
                self.fail(
                    FindingClass::OriginMismatch,
                    &c.file,
                    c.line,
                    None,
                    format!("checkpoint origin `{}` is not `{}`", cp.origin, self.origin),
                );
                continue;
            }
            if !c.valid_sig {
                self.fail(
                    FindingClass::BadSignature,
                    &c.file,
                    c.line,
                    None,
                    format!(
                        "checkpoint of size {} has no valid signature by a trusted key",
                        cp.size
                    ),
                );
                continue;
            }
            self.report.checkpoints += 1;
            by_size.entry(cp.size).or_default().push(i);
            // Checkpoints in the log's own files must never go backwards.
            if !c.trusted_input {
                if let Some((ms, mf, ml)) = &max_seen {
                    let older =
                        cp.size < *ms || (c.file == LATEST_CHECKPOINT_FILE && cp.size < max_in_log);
                    if older {
                        self.fail(
                            FindingClass::Rollback,
                            &c.file,
                            c.line,
                            None,
                            format!(
                                "checkpoint of size {} comes after one of size {ms} ({mf}:{ml})",
                                cp.size
                            ),
                        );
                    }
                }
                if c.file == CHECKPOINTS_FILE {
                    max_in_log = max_in_log.max(cp.size);
                }
                if max_seen.as_ref().is_none_or(|(ms, _, _)| cp.size > *ms) {
                    max_seen = Some((cp.size, c.file.clone(), c.line));
                }
            }
        }
        let log_max = max_seen.as_ref().map_or(0, |m| m.0);
        self.max_checkpoint_size = log_max;

        // Forks: same size, different roots.
        let mut forked: BTreeSet<usize> = BTreeSet::new();
        for idxs in by_size.values() {
            let first = &cps[idxs[0]];
            for &j in &idxs[1..] {
                if cps[j].signed.checkpoint.root != first.signed.checkpoint.root {
                    // Report on the one that disagrees with the entries.
                    let size = first.signed.checkpoint.size;
                    let bad = if roots.get(&size) == Some(&first.signed.checkpoint.root) {
                        j
                    } else {
                        idxs[0]
                    };
                    forked.insert(bad);
                    let c = &cps[bad];
                    let (file, line) = (c.file.clone(), c.line);
                    self.fail(
                        FindingClass::Fork,
                        &file,
                        line,
                        None,
                        format!("two signed checkpoints of size {size} have different roots"),
                    );
                }
            }
        }

        for (i, c) in cps.iter().enumerate() {
            if !c.valid_sig || c.signed.checkpoint.origin != self.origin {
                continue;
            }
            let cp = &c.signed.checkpoint;
            let (file, line) = (c.file.clone(), c.line);
            if cp.size > entries {
                self.fail(
                    FindingClass::Truncated,
                    &file,
                    line,
                    Some(entries),
                    format!(
                        "checkpoint covers {} entries but the log holds {entries}",
                        cp.size
                    ),
                );
                if c.trusted_input && cp.size > log_max {
                    self.fail(
                        FindingClass::Rollback,
                        &file,
                        line,
                        None,
                        format!("trusted checkpoint of size {} is newer than the log's latest ({log_max})", cp.size),
                    );
                }
                continue;
            }
            if c.trusted_input && cp.size > log_max {
                self.fail(
                    FindingClass::Rollback,
                    &file,
                    line,
                    None,
                    format!(
                        "trusted checkpoint of size {} is newer than the log's latest ({log_max})",
                        cp.size
                    ),
                );
            }
            match roots.get(&cp.size) {
                Some(r) if *r == cp.root => {
                    if !c.trusted_input {
                        self.report.sealed_size = self.report.sealed_size.max(cp.size);
                    }
                }
                _ if forked.contains(&i) => {}
                _ => {
                    let class = if c.trusted_input {
                        FindingClass::Fork
                    } else {
                        FindingClass::CheckpointMismatch
                    };
                    self.fail(
                        class,
                        &file,
                        line,
                        None,
                        format!(
                            "root of the first {} entries on disk differs from the signed root",
                            cp.size
                        ),
                    );
                }
            }
        }
    }
}

fn sig_ok(note: &str, key: &NoteVerifier) -> bool {
    SignedCheckpoint::open(note, key).is_ok()
}
