//! The `checkpoint` file (and its copy in `checkpoint_copy_dir`), replaced atomically
//! without opening a file at the moment it matters.
//!
//! An atomic replace needs a temporary file and an fsync of the directory. Opening them
//! for every checkpoint made the log hostage to the process's descriptor limit: one
//! client holding every descriptor made a checkpoint fail, and the log with it. So the
//! directory stays open, and the temporary file for the next checkpoint is opened right
//! after the previous one (if that fails, the next checkpoint tries again, and a failure
//! then is one the log recovers from).
//!
//! For the copy, what this writer last put there is remembered by its `stat` (device,
//! inode, size, modification time; no descriptor needed): a copy that changed behind the
//! writer's back is evidence and is not overwritten.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use crate::error::LogError;
use crate::storage::LATEST_CHECKPOINT_FILE;

/// What identifies one version of a file without opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// One directory's `checkpoint` file.
#[derive(Debug)]
pub(super) struct LatestFile {
    dir: PathBuf,
    path: PathBuf,
    tmp: PathBuf,
    dir_fd: File,
    spare: Option<File>,
    /// The file this writer put there (or found and verified at start); `None` when
    /// there was none.
    mine: Option<Stamp>,
}

// === impl LatestFile ===

impl LatestFile {
    /// Opens `dir` (creating it) for checkpoints; what is there now counts as known.
    pub(super) fn open(dir: &Path) -> Result<LatestFile, LogError> {
        fs::create_dir_all(dir).map_err(|e| LogError::io("create", dir, &e))?;
        let dir_fd = File::open(dir).map_err(|e| LogError::io("open", dir, &e))?;
        let path = dir.join(LATEST_CHECKPOINT_FILE);
        let tmp = dir.join(format!(".{LATEST_CHECKPOINT_FILE}.tmp"));
        let mut f = LatestFile {
            dir: dir.to_owned(),
            mine: stamp(&path)?,
            path,
            tmp,
            dir_fd,
            spare: None,
        };
        f.spare = Some(f.open_spare()?);
        Ok(f)
    }

    /// The `checkpoint` file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `data`. With `guard`, only while it is still the file this
    /// writer last put there (or found at start).
    pub(super) fn replace(&mut self, data: &[u8], guard: bool) -> Result<(), LogError> {
        if guard && stamp(&self.path)? != self.mine {
            return Err(LogError::Corrupt {
                path: self.path.display().to_string(),
                reason: "the checkpoint copy changed behind this log's back (not the checkpoint it wrote or verified); refusing to overwrite it".into(),
            });
        }
        let spare = match self.spare.take() {
            Some(f) => f,
            None => self.open_spare()?,
        };
        let written = spare
            .set_len(0)
            .and_then(|()| spare.write_all_at(data, 0))
            .and_then(|()| spare.sync_all());
        if let Err(e) = written {
            self.spare = Some(spare);
            return Err(LogError::io("write", &self.tmp, &e));
        }
        fs::rename(&self.tmp, &self.path).map_err(|e| LogError::io("rename", &self.tmp, &e))?;
        self.dir_fd
            .sync_all()
            .map_err(|e| LogError::io("fsync", &self.dir, &e))?;
        self.mine = stamp(&self.path)?;
        // Its descriptor goes straight to the next checkpoint's temporary file, so the
        // log keeps it even when every other descriptor is taken; if that still fails,
        // the next checkpoint tries again.
        drop(spare);
        self.spare = self.open_spare().ok();
        Ok(())
    }

    fn open_spare(&self) -> Result<File, LogError> {
        OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.tmp)
            .map_err(|e| LogError::io("create", &self.tmp, &e))
    }
}

fn stamp(path: &Path) -> Result<Option<Stamp>, LogError> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LogError::io("stat", path, &e)),
    }
}
