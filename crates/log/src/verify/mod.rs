//! Offline verification of a log directory: hash links, sequence continuity,
//! origin, time, checkpoint signatures and roots, trusted checkpoints
//! (truncation, rollback, fork), and re-evaluation of every allowed request
//! against the grant events logged before it.
//!
//! Synchronous and pure over bytes ([`verify_files`]); [`verify_dir`] reads
//! the files. Never panics on any input.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::merkle::{CompactTree, Hash};
use crate::note::NoteVerifier;
use crate::storage::{self, CHECKPOINTS_FILE, LATEST_CHECKPOINT_FILE};

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
    /// Accept a log with entries but no valid checkpoint (a crash before its first
    /// checkpoint) with a warning; by default that is a failure.
    pub allow_unsealed: bool,
    /// A latest checkpoint older than this is a failure (`Stale`): a frozen or
    /// withheld log; the gateway writes heartbeats, so a live log's is recent.
    pub stale_before: Option<time::OffsetDateTime>,
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
    /// The log has no entries, or entries but no valid checkpoint.
    Empty,
    /// The latest checkpoint is older than the verifier was told to accept.
    Stale,
    /// Entries written before a crash were sealed only after the restart (the
    /// `recovered` entry names them): not proven unedited.
    SealedLate,
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
    /// Refusals of unauthenticated requests recorded only by number
    /// (`refusals_counted` entries).
    pub refusals_counted: u64,
    /// Time of the newest checkpoint (heartbeats included): how fresh the
    /// log is; a gateway that stopped writing shows here.
    pub latest_checkpoint_time: Option<String>,
    /// Everything found, in file order.
    pub findings: Vec<Finding>,
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
        let mut data = read(&p)?;
        data.truncate(storage::trim_padding(&data).len());
        files.segments.push((storage::segment_name(i), data));
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

mod checkpoints;
mod entries;

use entries::{Rec, Verifier, parse_line};

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
        latest_checkpoint_at: None,
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
    let split: Vec<(Vec<&[u8]>, &[u8])> = files
        .segments
        .iter()
        .map(|(_, data)| storage::split_lines(data))
        .collect();
    // Chunks in log order: (segment, first line index, lines).
    const CHUNK: usize = 4096;
    let chunks: Vec<(usize, usize, &[&[u8]])> = split
        .iter()
        .enumerate()
        .flat_map(|(si, (lines, _))| {
            lines
                .chunks(CHUNK)
                .enumerate()
                .map(move |(ci, c)| (si, ci * CHUNK, c))
        })
        .collect();
    let origin = v.origin.clone();
    // Shared names: the verifier keeps the last entry's location per line.
    let names: Vec<std::sync::Arc<str>> = files
        .segments
        .iter()
        .map(|(n, _)| n.as_str().into())
        .collect();
    std::thread::scope(|s| {
        // Two parsers (hashing + JSON) run ahead of this thread, which does
        // the order-dependent checks: a pipeline over the 2 cores.
        const WORKERS: usize = 2;
        let mut rxs = Vec::new();
        for w in 0..WORKERS {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Rec>>(2);
            let (chunks, origin) = (&chunks, &origin);
            s.spawn(move || {
                for (_, _, c) in chunks.iter().skip(w).step_by(WORKERS) {
                    let recs = c.iter().map(|l| parse_line(l, origin)).collect();
                    if tx.send(recs).is_err() {
                        return;
                    }
                }
            });
            rxs.push(rx);
        }
        for (k, (si, first, c)) in chunks.iter().enumerate() {
            // A worker cannot panic on input (parse_line does not); if one
            // did, parse its chunk here rather than lose lines.
            let recs = rxs[k % WORKERS]
                .recv()
                .unwrap_or_else(|_| c.iter().map(|l| parse_line(l, &origin)).collect());
            let name = &names[*si];
            for (i, rec) in recs.into_iter().enumerate() {
                tree.push(rec.hash);
                if wanted.contains(&tree.size()) {
                    roots.insert(tree.size(), tree.root());
                }
                v.line(name, (first + i) as u64 + 1, rec);
            }
        }
    });
    for (si, ((name, _), (lines, tail))) in files.segments.iter().zip(&split).enumerate() {
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
    } else if sealed == 0 {
        let message = format!(
            "{entries} entries and no valid checkpoint: nothing here is signed by the given key"
        );
        if opts.allow_unsealed {
            v.warn(FindingClass::Empty, "", 0, None, message);
        } else {
            v.fail(FindingClass::Empty, "", 0, None, message);
        }
    }
    if let Some(limit) = opts.stale_before
        && v.latest_checkpoint_at.is_none_or(|t| t < limit)
    {
        let when = v
            .report
            .latest_checkpoint_time
            .clone()
            .unwrap_or("never".into());
        v.fail(
            FindingClass::Stale,
            "",
            0,
            None,
            format!(
                "the latest checkpoint is from {when}, before {}",
                crate::entry::format_time(limit)
            ),
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
