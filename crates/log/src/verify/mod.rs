//! Offline verification of a log directory: hash links, sequence continuity,
//! origin, time, checkpoint signatures and roots, trusted checkpoints
//! (truncation, rollback, fork), and re-evaluation of every allowed request
//! against the grant events logged before it.
//!
//! Synchronous and pure over bytes ([`verify_files`]); [`verify_dir`] reads
//! the files. Never panics on any input.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::merkle::{CompactTree, Hash};
use crate::note::NoteVerifier;

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
    /// This log replaces another one that could not be continued (a `log_replaced`
    /// entry): the old log must be audited on its own.
    ReplacesLog,
    /// Two decisions of one grant carry the same request count below its budget: the
    /// budget was spent twice, or an entry was edited.
    BudgetReused,
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
    /// The last line of a run of findings of this class on consecutive lines (one
    /// finding stands for the run; `message` is the first one's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through_line: Option<u64>,
    /// How many findings this one stands for (1 unless it is a run).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u64,
    /// Sequence number concerned, when known.
    pub seq: Option<u64>,
    /// What is wrong.
    pub message: String,
}

fn one() -> u64 {
    1
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

/// Findings kept per class; past this, only counted ([`Report::suppressed`]).
pub const MAX_FINDINGS_PER_CLASS: u64 = 100;

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
    /// Everything found, in file order (runs on consecutive lines coalesced, at most
    /// [`MAX_FINDINGS_PER_CLASS`] per class).
    pub findings: Vec<Finding>,
    /// Findings past [`MAX_FINDINGS_PER_CLASS`] of a class: counted, not kept.
    #[serde(default)]
    pub suppressed: BTreeMap<FindingClass, (Severity, u64)>,
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
    /// A log file is not a regular file in the log directory (a FIFO, a device, a link
    /// elsewhere): not read.
    #[error("refusing to read `{path}`: {why}")]
    NotRegular {
        /// The file.
        path: String,
        /// What it is instead.
        why: String,
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
            .map(|f| f.severity)
            .chain(self.suppressed.values().map(|(s, _)| *s))
            .any(|s| s == Severity::Failure || strict)
    }

    /// Has a finding of `class` at `file`:`line` (or a run that covers it).
    pub fn has(&self, class: FindingClass, file: &str, line: u64) -> bool {
        self.findings.iter().any(|f| {
            f.class == class
                && f.file == file
                && (f.line..=f.through_line.unwrap_or(f.line)).contains(&line)
        })
    }

    /// Findings of every kind, counting runs and suppressed ones.
    pub fn finding_count(&self) -> u64 {
        self.findings.iter().map(|f| f.count).sum::<u64>()
            + self.suppressed.values().map(|(_, n)| n).sum::<u64>()
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
        if let Some(through) = self.through_line {
            write!(f, "-{through} ({} findings, the first:)", self.count)?;
        }
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

/// Reads and verifies a log directory, streaming the segments: memory stays bounded by
/// the chunks in flight, the tree frontier and per-grant state, whatever the log's size.
pub fn verify_dir(dir: &Path, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let opened = open_dir(dir)?;
    let inputs = opened
        .segments
        .into_iter()
        .map(|(name, _, file)| Input {
            name: name.as_str().into(),
            read: Box::new(file),
        })
        .collect();
    verify_inputs(
        inputs,
        opened.checkpoints.as_deref(),
        opened.latest.as_deref(),
        opts,
    )
}

// === The verifier ===

mod checkpoints;
mod entries;
mod files;
mod lines;
mod parse;

use files::open_dir;
pub use files::{LogFiles, read_checkpoints, read_dir, stream_leaves};

use entries::{Rec, Verifier, parse_line};

/// One segment to verify: its name and its bytes as a stream.
struct Input<'a> {
    name: Arc<str>,
    read: Box<dyn Read + Send + 'a>,
}

/// Verifies the files of a log against `opts`.
pub fn verify_files(files: &LogFiles, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let inputs = files
        .segments
        .iter()
        .map(|(name, data)| Input {
            name: name.as_str().into(),
            read: Box::new(&data[..]),
        })
        .collect();
    verify_inputs(
        inputs,
        files.checkpoints.as_deref(),
        files.latest.as_deref(),
        opts,
    )
}

/// Parser threads: two, ahead of the thread doing the order-dependent checks (the
/// machine this is tuned on has two cores; the reader mostly waits on the page cache).
const WORKERS: usize = 2;

/// What a parser hands on for one chunk.
struct Parsed {
    seg: usize,
    first: u64,
    end: Option<u64>,
    recs: Vec<Rec>,
}

fn parse_chunk(c: lines::Chunk, origin: &str, origin_json: &str) -> Parsed {
    let recs = c
        .lines
        .iter()
        .map(|l| match l {
            lines::Line::Kept(s, e) => parse_line(c.bytes(*s, *e), origin, origin_json),
            lines::Line::TooLong(n, hash) => Rec {
                hash: *hash,
                parsed: Err(format!(
                    "line of {n} bytes exceeds the entry limit of {} bytes (not read whole)",
                    crate::entry::MAX_ENTRY_BYTES
                )),
            },
        })
        .collect();
    Parsed {
        seg: c.seg,
        first: c.first,
        end: c.end,
        recs,
    }
}

fn verify_inputs(
    inputs: Vec<Input<'_>>,
    checkpoints: Option<&[u8]>,
    latest: Option<&[u8]>,
    opts: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let origin = match (&opts.origin, opts.keys.first()) {
        (Some(o), _) => o.clone(),
        (None, Some(k)) => k.name.clone(),
        (None, None) => return Err(VerifyError::NoKey),
    };
    let mut v = Verifier::new(origin.clone());
    // Every line's header is compared with the writer's encoding of it: the origin's
    // part, once.
    let origin_json = serde_json::Value::String(origin.clone()).to_string();

    // Checkpoints first, unverified, to know which tree sizes need a root.
    let mut cps = v.collect_checkpoints(checkpoints, latest, opts);
    let wanted: BTreeSet<u64> = cps.iter().map(|c| c.signed.checkpoint.size).collect();

    // Entries, streamed: a reader cuts chunks of lines, parsers hash and decode them,
    // this thread does the checks that depend on order.
    let mut tree = CompactTree::new();
    let mut roots: HashMap<u64, Hash> = HashMap::new();
    if wanted.contains(&0) {
        roots.insert(0, tree.root());
    }
    let names: Vec<Arc<str>> = inputs.iter().map(|i| Arc::clone(&i.name)).collect();
    let nseg = names.len();
    let mut seg_lines = vec![0u64; nseg];
    let mut torn: Option<(Arc<str>, u64, u64, bool)> = None;
    let read_result = std::thread::scope(|s| {
        let mut work_txs = Vec::new();
        let mut result_rxs = Vec::new();
        for _ in 0..WORKERS {
            let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<lines::Chunk>(1);
            let (result_tx, result_rx) = std::sync::mpsc::sync_channel::<Parsed>(1);
            let (origin, origin_json) = (&origin, &origin_json);
            s.spawn(move || {
                for chunk in work_rx {
                    if result_tx
                        .send(parse_chunk(chunk, origin, origin_json))
                        .is_err()
                    {
                        return;
                    }
                }
            });
            work_txs.push(work_tx);
            result_rxs.push(result_rx);
        }
        let reader = s.spawn(move || {
            let mut k = 0usize;
            for (i, input) in inputs.into_iter().enumerate() {
                let mut emit = |c: lines::Chunk| {
                    let sent = work_txs[k % WORKERS].send(c).is_ok();
                    k += 1;
                    sent
                };
                match lines::read_segment(i, input.read, &mut emit) {
                    Ok(true) => {}
                    Ok(false) => return Ok(()),
                    Err(e) => return Err((input.name, e)),
                }
            }
            Ok(())
        });
        // Chunk k went to parser k % WORKERS; when that parser's results end, so do
        // the chunks.
        let mut k = 0usize;
        while let Ok(p) = result_rxs[k % WORKERS].recv() {
            k += 1;
            let name = &names[p.seg];
            let n = p.recs.len() as u64;
            for (i, rec) in p.recs.into_iter().enumerate() {
                tree.push(rec.hash);
                if wanted.contains(&tree.size()) {
                    roots.insert(tree.size(), tree.root());
                }
                v.line(name, p.first + i as u64 + 1, rec);
            }
            seg_lines[p.seg] = p.first + n;
            if let Some(tail) = p.end.filter(|t| *t > 0) {
                torn = Some((Arc::clone(name), p.first + n + 1, tail, p.seg + 1 == nseg));
            }
        }
        reader.join().unwrap_or(Ok(()))
    });
    if let Err((name, source)) = read_result {
        return Err(VerifyError::Read {
            path: name.to_string(),
            source,
        });
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
        let (file, line) = locate(&names, &seg_lines, sealed);
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

/// File and line of leaf `index`, from the complete lines of each segment.
fn locate(names: &[Arc<str>], seg_lines: &[u64], index: u64) -> (String, u64) {
    let mut remaining = index;
    for (name, n) in names.iter().zip(seg_lines) {
        if remaining < *n {
            return (name.to_string(), remaining + 1);
        }
        remaining -= n;
    }
    (names.last().map(|n| n.to_string()).unwrap_or_default(), 0)
}
