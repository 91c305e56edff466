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
use crate::storage::{self, CHECKPOINTS_FILE, LATEST_CHECKPOINT_FILE};

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
    let copy_note = copy_dir.map(|c| c.join(LATEST_CHECKPOINT_FILE));
    let mut found: Vec<SignedCheckpoint> = [Some(dir.join(LATEST_CHECKPOINT_FILE)), copy_note]
        .into_iter()
        .flatten()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|n| SignedCheckpoint::open(&n, key).ok())
        .collect();
    let data = std::fs::read(dir.join(CHECKPOINTS_FILE)).unwrap_or_default();
    found.extend(storage::signed_checkpoints(
        &data,
        std::slice::from_ref(key),
    ));
    let checkpoint = found
        .into_iter()
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
