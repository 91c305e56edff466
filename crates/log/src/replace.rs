//! Starting a new log in place of one that cannot be continued.
//!
//! When the start-up check refuses a log (its entries do not reproduce a checkpoint the
//! key signed, checkpoints are missing, links are broken), the writer never continues it.
//! The operator may start a *new* log instead: [`set_aside`] moves the old directory aside
//! as evidence, untouched, and finds the last checkpoint of it the key signed; the new log,
//! under a new origin, records both in a `log_replaced` entry right after it starts, so an
//! auditor of the new log learns there is an old one, where it went, and which checkpoint
//! to verify it against.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::note::{NoteVerifier, SignedCheckpoint};
use crate::storage::{self, CHECKPOINTS_FILE, CheckpointLine, LATEST_CHECKPOINT_FILE};

/// The log that was set aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Predecessor {
    /// Where the old log's directory now is.
    pub moved_to: PathBuf,
    /// The largest checkpoint of it the key signed (the note), if any.
    pub checkpoint: Option<String>,
}

/// Moves the log directory `dir` aside (to `<dir>.replaced-<time>`) and finds the largest
/// checkpoint `key` signed among its files and `copy_dir`'s copy (which is renamed to
/// `checkpoint.replaced-<time>` there). `Ok(None)` when `dir` holds no log.
pub fn set_aside(
    dir: &Path,
    key: &NoteVerifier,
    copy_dir: Option<&Path>,
    now: OffsetDateTime,
) -> std::io::Result<Option<Predecessor>> {
    if storage::list_segments(dir).map_or(true, |s| s.is_empty()) {
        return Ok(None);
    }
    let mut notes: Vec<String> = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join(LATEST_CHECKPOINT_FILE)) {
        notes.push(text);
    }
    if let Some(copy) = copy_dir
        && let Ok(text) = std::fs::read_to_string(copy.join(LATEST_CHECKPOINT_FILE))
    {
        notes.push(text);
    }
    if let Ok(data) = std::fs::read(dir.join(CHECKPOINTS_FILE)) {
        notes.extend(
            storage::split_lines(&data)
                .0
                .into_iter()
                .filter_map(|l| serde_json::from_slice::<CheckpointLine>(l).ok())
                .map(|l| l.note),
        );
    }
    let checkpoint = notes
        .iter()
        .filter_map(|n| SignedCheckpoint::open(n, key).ok())
        .max_by_key(|c| c.checkpoint.size)
        .map(|c| c.note);
    let stamp = crate::entry::format_time(now).replace(':', "");
    let name = dir
        .file_name()
        .map_or_else(|| "log".into(), |n| n.to_string_lossy().into_owned());
    let moved_to = dir.with_file_name(format!("{name}.replaced-{stamp}"));
    // The copy names the old origin: the new log's start-up check would refuse it.
    if let Some(copy) = copy_dir
        && copy.join(LATEST_CHECKPOINT_FILE).exists()
    {
        std::fs::rename(
            copy.join(LATEST_CHECKPOINT_FILE),
            copy.join(format!("{LATEST_CHECKPOINT_FILE}.replaced-{stamp}")),
        )?;
        storage::sync_dir(copy)?;
    }
    std::fs::rename(dir, &moved_to)?;
    if let Some(parent) = dir.parent() {
        storage::sync_dir(parent)?;
    }
    Ok(Some(Predecessor {
        moved_to,
        checkpoint,
    }))
}

/// The origin a new log takes after `origin`: `<base>/2`, then `/3`, …
pub fn next_origin(origin: &str, base: &str) -> String {
    let n = origin
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(1);
    format!("{base}/{}", n + 1)
}

#[cfg(test)]
mod tests {
    use super::next_origin;

    #[test]
    fn origins_count_up_from_the_base() {
        assert_eq!(
            next_origin("custody.local/vm", "custody.local/vm"),
            "custody.local/vm/2"
        );
        assert_eq!(
            next_origin("custody.local/vm/2", "custody.local/vm"),
            "custody.local/vm/3"
        );
        assert_eq!(
            next_origin("other", "custody.local/vm"),
            "custody.local/vm/2"
        );
    }
}
