//! Reading a log directory: only regular files of the directory, opened so that nothing
//! can be swapped in between the check and the read; in memory ([`read_dir`], for queries
//! and tests) or streamed ([`stream_leaves`]; the verifier streams too).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{VerifyError, lines};
use crate::merkle::Hash;
use crate::storage::{self, CHECKPOINTS_FILE, LATEST_CHECKPOINT_FILE};

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

/// Reads a log directory into memory (for queries and tests; [`verify_dir`](super::verify_dir) streams).
pub fn read_dir(dir: &Path) -> Result<LogFiles, VerifyError> {
    let opened = open_dir(dir)?;
    let mut files = LogFiles {
        checkpoints: opened.checkpoints,
        latest: opened.latest,
        ..LogFiles::default()
    };
    for (name, path, mut file) in opened.segments {
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|source| VerifyError::Read {
                path: path.display().to_string(),
                source,
            })?;
        data.truncate(storage::trim_padding(&data).len());
        files.segments.push((name, data));
    }
    Ok(files)
}

/// A log directory's files, opened: segments as regular files to stream, the checkpoint
/// files read.
pub(super) struct Opened {
    pub(super) segments: Vec<(String, PathBuf, std::fs::File)>,
    pub(super) checkpoints: Option<Vec<u8>>,
    pub(super) latest: Option<Vec<u8>>,
}

pub(super) fn open_dir(dir: &Path) -> Result<Opened, VerifyError> {
    let segs = storage::list_segments(dir).map_err(|source| VerifyError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    if segs.is_empty() {
        return Err(VerifyError::NoSegments(dir.display().to_string()));
    }
    let mut segments = Vec::new();
    for (i, p) in segs {
        let file = open_regular(dir, &p)?;
        segments.push((storage::segment_name(i), p, file));
    }
    Ok(Opened {
        segments,
        checkpoints: read_small(dir, CHECKPOINTS_FILE)?,
        latest: read_small(dir, LATEST_CHECKPOINT_FILE)?,
    })
}

/// `checkpoints.jsonl` of the log in `dir`, if there is one (a regular file of the
/// directory, as every file the verifier reads).
pub fn read_checkpoints(dir: &Path) -> Result<Option<Vec<u8>>, VerifyError> {
    read_small(dir, CHECKPOINTS_FILE)
}

fn read_small(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, VerifyError> {
    let p = dir.join(name);
    if std::fs::symlink_metadata(&p).is_err() {
        return Ok(None);
    }
    let mut data = Vec::new();
    open_regular(dir, &p)?
        .read_to_end(&mut data)
        .map_err(|source| VerifyError::Read {
            path: p.display().to_string(),
            source,
        })?;
    Ok(Some(data))
}

/// Opens `path` for reading only if it is a regular file in `dir` (a link to one in `dir`
/// is followed): never a FIFO (which would hang the reader), a device (`/dev/zero` never
/// ends) or a file elsewhere. Opened without blocking, then checked on the open file, so
/// nothing can be swapped in between.
fn open_regular(dir: &Path, path: &Path) -> Result<std::fs::File, VerifyError> {
    let refuse = |why: String| VerifyError::NotRegular {
        path: path.display().to_string(),
        why,
    };
    let read_err = |source| VerifyError::Read {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(read_err)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::canonicalize(path).map_err(read_err)?;
        let home = std::fs::canonicalize(dir).map_err(read_err)?;
        if target.parent() != Some(home.as_path()) {
            return Err(refuse(format!(
                "a link to `{}`, outside the log directory",
                target.display()
            )));
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(read_err)?;
    let kind = file.metadata().map_err(read_err)?.file_type();
    if !kind.is_file() {
        return Err(refuse(format!("not a regular file ({kind:?})")));
    }
    Ok(file)
}

/// Every leaf hash of the log in `dir`, in order, streamed (the memory of one chunk of
/// lines, whatever the log's size); returns how many there were. For proofs.
pub fn stream_leaves(dir: &Path, each: &mut dyn FnMut(Hash)) -> Result<u64, VerifyError> {
    let opened = open_dir(dir)?;
    let mut count = 0u64;
    for (i, (_, path, file)) in opened.segments.into_iter().enumerate() {
        lines::read_segment(i, file, &mut |c: lines::Chunk| {
            count += c.lines.len() as u64;
            for l in &c.lines {
                each(match l {
                    lines::Line::Kept(s, e) => crate::merkle::leaf_hash(c.bytes(*s, *e)),
                    lines::Line::TooLong(_, h) => *h,
                });
            }
            true
        })
        .map_err(|source| VerifyError::Read {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(count)
}
