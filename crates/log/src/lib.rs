//! Custody session log: canonical hash-chained entries, an RFC 6962 Merkle
//! tree, Ed25519-signed C2SP checkpoints, group-committed durable appends,
//! crash recovery, inclusion receipts, consistency proofs and the offline verification
//! library.
//!
//! See `docs/log-format.md` for the format on disk.
#![forbid(unsafe_code)]

pub mod consistency;
pub mod entry;
mod error;
pub mod merkle;
pub mod note;
pub mod query;
pub mod receipt;
pub mod replace;
pub mod storage;
pub mod verify;
mod writer;

pub use ed25519_dalek;
pub use entry::{
    EncodeBody, Entry, EntryBody, GrantEvent, GrantEventKind, RefusalsCounted, RequestDecision,
    RequestDecisionRef, RequestOutcome,
};
pub use error::LogError;
pub use merkle::Hash;
pub use note::{Checkpoint, NoteVerifier, SignedCheckpoint, parse_vkey, vkey};
pub use writer::{AppendFuture, Appended, Clock, Log, LogConfig, LogStats, system_clock};
