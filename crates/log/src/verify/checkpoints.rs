//! The checkpoint pass: signatures (with announced key rotations), origin,
//! roots against the entries on disk, rollback, forks, truncation.

use std::collections::{BTreeSet, HashMap};

use super::entries::Verifier;
use super::{FindingClass, VerifyOptions};
use crate::merkle::Hash;
use crate::note::{NoteVerifier, SignedCheckpoint};
use crate::storage::{self, CHECKPOINTS_FILE, CheckpointLine, LATEST_CHECKPOINT_FILE};

/// A checkpoint as found in some file.
pub(super) struct FoundCheckpoint {
    pub(super) file: String,
    pub(super) line: u64,
    pub(super) signed: SignedCheckpoint,
    pub(super) valid_sig: bool,
    pub(super) trusted_input: bool,
}

impl Verifier {
    pub(super) fn collect_checkpoints(
        &mut self,
        checkpoints: Option<&[u8]>,
        latest: Option<&[u8]>,
        opts: &VerifyOptions,
    ) -> Vec<FoundCheckpoint> {
        let mut out = Vec::new();
        if let Some(data) = checkpoints {
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
        if let Some(data) = latest {
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

    pub(super) fn push_checkpoint(
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

    pub(super) fn check_checkpoints(
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
        let mut last_time: Option<time::OffsetDateTime> = None;
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
                    // Heartbeats carry a time: it must not go backwards, and
                    // the newest one tells how fresh the log is.
                    if let Some(t) = cp.time() {
                        if let Some(prev) = last_time.filter(|p| t < *p) {
                            self.fail(
                                FindingClass::TimeBackwards,
                                &c.file,
                                c.line,
                                None,
                                format!(
                                    "checkpoint time {} is before the previous checkpoint's {}",
                                    crate::entry::format_time(t),
                                    crate::entry::format_time(prev)
                                ),
                            );
                        }
                        last_time = Some(last_time.map_or(t, |p| p.max(t)));
                    }
                }
                if max_seen.as_ref().is_none_or(|(ms, _, _)| cp.size > *ms) {
                    max_seen = Some((cp.size, c.file.clone(), c.line));
                }
            }
        }
        let log_max = max_seen.as_ref().map_or(0, |m| m.0);
        self.latest_checkpoint_at = last_time;
        self.report.latest_checkpoint_time = last_time.map(crate::entry::format_time);
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

pub(super) fn sig_ok(note: &str, key: &NoteVerifier) -> bool {
    SignedCheckpoint::open(note, key).is_ok()
}
