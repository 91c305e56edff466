//! Test harness for Custody's end-to-end tests.
//!
//! Every end-to-end test talks to real peers: [`MotoServer`] runs `moto_server` on a free
//! loopback port with signature checking and IAM enforcement on (after a bootstrap that
//! creates the gateway's IAM user, the agent roles and whatever buckets, tables and queues
//! a test needs), and [`run_python`] / [`run_aws_cli`] run boto3 snippets and the `aws`
//! CLI as a real client would. [`relay::Relay`] sits between the gateway and its upstream
//! and keeps what the upstream received; [`oracle::check`] re-reads each of those
//! requests and requires the allowed decision the log holds for it. [`FixedClock`], [`test_signing_key`] and [`temp_dir`] give
//! tests a fixed time, throwaway Ed25519 keys and scratch directories.
//!
//! The harness is test-only code, so it reports setup failures as [`HarnessError`]s that
//! tests unwrap: a missing peer must fail the test loudly, never skip it.

mod clock;
mod moto;
pub mod oracle;
mod python;
pub mod relay;

pub use clock::FixedClock;
pub use moto::{Bootstrap, BootstrapResult, MotoServer, RoleSpec, UserKey, UserSpec};
pub use python::{AwsEnv, ProcOutput, run_aws_cli, run_node, run_python};

use std::path::PathBuf;

/// The account id moto uses for every resource it creates.
pub const MOTO_ACCOUNT_ID: &str = "123456789012";

/// Errors while setting up or talking to a test peer.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A peer program could not be started (not installed, or not on `PATH`).
    #[error(
        "could not start `{program}`: {source} (run the README's test command, which installs the test peers)"
    )]
    Spawn {
        /// The program that failed to start.
        program: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A peer started but never answered.
    #[error("`{what}` did not become ready within {seconds} s")]
    NotReady {
        /// What was being waited for.
        what: String,
        /// How long we waited.
        seconds: u64,
    },
    /// The bootstrap script failed.
    #[error("moto bootstrap failed (exit {status}): {stderr}")]
    Bootstrap {
        /// Exit status of the script.
        status: i32,
        /// What the script printed on stderr.
        stderr: String,
    },
    /// An I/O error talking to a peer or writing scratch files.
    #[error("harness i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// JSON produced by a peer could not be parsed.
    #[error("harness could not parse peer output: {0}")]
    Json(#[from] serde_json::Error),
    /// Enforcement did not switch on.
    #[error("moto still serves unsigned requests after bootstrap: {0}")]
    EnforcementOff(String),
}

/// A fresh scratch directory, removed when the returned guard drops.
pub fn temp_dir() -> Result<tempfile::TempDir, HarnessError> {
    Ok(tempfile::Builder::new().prefix("custody-test-").tempdir()?)
}

/// A throwaway Ed25519 signing key derived from `seed`, so tests are reproducible.
pub fn test_signing_key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

/// Path of a file shipped with this crate (the Python helpers).
pub fn support_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A free TCP port on 127.0.0.1, chosen by the kernel.
///
/// The port is released before it is returned, so another process could take it; callers
/// that start a peer on it retry on a bind failure.
pub fn free_port() -> Result<u16, HarnessError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
