//! The Custody gateway: configuration, wiring, the admin API and CLI around the
//! `custody-*` crates. `main.rs` only parses arguments and calls [`cli::run`].
#![forbid(unsafe_code)]

pub mod adapters;
pub mod admin;
pub mod admin_client;
pub mod app;
pub mod cli;
pub mod config;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod newlog;
pub mod policy;
pub mod proofs;
pub mod refusals;
pub mod reload;
pub mod server;
pub mod wait;

pub use app::run;

/// Whether logs are JSON lines (`CUSTODY_LOG_FORMAT=json`).
pub fn json_logs() -> bool {
    std::env::var("CUSTODY_LOG_FORMAT").as_deref() == Ok("json")
}

/// Structured logs to stderr; `RUST_LOG` filters (default `info` when serving, `warn`
/// for CLI commands). `CUSTODY_LOG_FORMAT=json` switches to JSON lines.
pub fn init_tracing(serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json_logs() {
        builder.json().init();
    } else {
        builder.init();
    }
}
