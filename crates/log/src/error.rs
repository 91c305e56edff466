//! The log's error type.

use std::path::Path;

use crate::entry::EntryError;
use crate::note::NoteError;

/// Why a log operation failed. Cloneable: one failed group commit fails every
/// append in the batch with the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("{op} `{path}`: {message}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// An earlier write or fsync failed; the log refuses further appends
    /// until it is reopened (which recovers the tail).
    #[error("log is failed after an earlier error: {0}")]
    Failed(String),
    /// The log was closed.
    #[error("log is closed")]
    Closed,
    /// The entry could not be encoded or is too large.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// Signing or key handling failed.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The existing log on disk is not one this writer can continue.
    #[error("log `{path}` cannot be continued: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The configuration is invalid.
    #[error("invalid log configuration: {0}")]
    Config(String),
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: &Path, e: &std::io::Error) -> LogError {
        LogError::Io {
            op,
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}
