//! `custody-gateway`: serve the gateway, manage grants, generate keys.
//!
//! Thin: parse the command line, set up tracing, call the library.

use std::process::ExitCode;

use clap::Parser;

use custody_gateway::cli::{Cli, Command};

/// mimalloc rather than glibc's allocator: the request path allocates and frees many
/// short-lived buffers and boxed futures of a few KiB on two threads, where glibc spent
/// ~13% of the gateway's CPU (much of it in `malloc_consolidate`); see docs/benchmarks.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    custody_gateway::init_tracing(matches!(cli.command, Command::Serve(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("custody-gateway: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(custody_gateway::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custody-gateway: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
