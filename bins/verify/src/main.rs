//! `custody-verify`: checks a Custody log offline and answers auditors'
//! queries. Exit codes: 0 intact, 1 integrity failure, 2 could not run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use custody_log::consistency;
use custody_log::note::{NoteVerifier, parse_vkey};
use custody_log::query::{self, Filter};
use custody_log::receipt::{self, Receipt};
use custody_log::verify::{self, Severity, VerifyOptions};

/// Verify a Custody session log.
#[derive(Parser, Debug)]
#[command(
    name = "custody-verify",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// The log directory.
    #[arg(required = true)]
    log_dir: Option<PathBuf>,
    #[command(flatten)]
    keys: KeyArgs,
    /// A checkpoint kept outside the gateway's reach (repeatable).
    #[arg(long = "trusted-checkpoint")]
    trusted: Vec<PathBuf>,
    /// Expected origin (default: the key's name).
    #[arg(long)]
    origin: Option<String>,
    /// JSON output: one finding per line, then a summary line.
    #[arg(long)]
    json: bool,
    /// Treat warnings (unsealed tail) as failures.
    #[arg(long)]
    strict: bool,
    /// Accept a log with entries but no valid checkpoint (a crash before the first
    /// checkpoint) with a warning; by default it fails.
    #[arg(long)]
    allow_unsealed: bool,
    /// Fail if the latest checkpoint is older than this (`90s`, `15m`, `2h`, `1d`): a
    /// live gateway writes heartbeat checkpoints, so a stale one means a frozen log.
    #[arg(long, value_parser = parse_age)]
    max_age: Option<time::Duration>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(clap::Args, Debug)]
struct KeyArgs {
    /// File holding the log's verifier key (note vkey format), repeatable.
    #[arg(long = "key")]
    key: Vec<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print entries: a task's or identity's transcript, denied attempts, a time range.
    Query {
        /// The log directory.
        log_dir: PathBuf,
        /// Only this task.
        #[arg(long)]
        task: Option<String>,
        /// Only this identity.
        #[arg(long)]
        identity: Option<String>,
        /// Only denied requests and grants.
        #[arg(long)]
        denied: bool,
        /// From this time (RFC 3339, inclusive).
        #[arg(long)]
        since: Option<String>,
        /// Until this time (RFC 3339, exclusive).
        #[arg(long)]
        until: Option<String>,
        /// Print the raw entry lines (JSON lines).
        #[arg(long)]
        json: bool,
    },
    /// Print an inclusion receipt for entry `seq` against the newest checkpoint.
    Prove {
        /// The log directory.
        log_dir: PathBuf,
        /// Leaf index (sequence number).
        seq: u64,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Check an inclusion receipt without the log.
    CheckProof {
        /// The receipt (JSON).
        receipt: PathBuf,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Prove from the log that a checkpoint you kept is consistent with the log's newest
    /// checkpoint (or with `--new`): RFC 9162 consistency proof, as JSON.
    Consistency {
        /// The log directory.
        log_dir: PathBuf,
        /// The older signed checkpoint note (a file).
        old: PathBuf,
        /// The newer signed checkpoint note; default: the newest in the log.
        #[arg(long)]
        new: Option<PathBuf>,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Check a consistency proof without the log.
    CheckConsistency {
        /// The proof (JSON, as `consistency` prints it).
        proof: PathBuf,
        #[command(flatten)]
        keys: KeyArgs,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("custody-verify: {msg}");
            ExitCode::from(2)
        }
    }
}

/// `println!` that ends quietly with `code` when stdout is gone (`custody-verify … | head
/// -1`): the verdict is known before anything is printed, so it is still the exit code.
macro_rules! out {
    ($code:expr; $($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, $($arg)*).and_then(|()| stdout.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok($code);
            }
            return Err(format!("cannot write to stdout: {e}"));
        }
    }};
}

fn run(cli: Cli) -> Result<u8, String> {
    match cli.cmd {
        None => {
            let dir = cli.log_dir.ok_or("missing log directory")?;
            let keys = load_keys(&cli.keys)?;
            let mut trusted = Vec::new();
            for p in &cli.trusted {
                trusted.push((p.display().to_string(), read_text(p)?));
            }
            let opts = VerifyOptions {
                keys,
                origin: cli.origin,
                trusted,
                allow_unsealed: cli.allow_unsealed,
                stale_before: cli.max_age.map(|age| time::OffsetDateTime::now_utc() - age),
            };
            let report = verify::verify_dir(&dir, &opts).map_err(|e| e.to_string())?;
            let failed = report.failed(cli.strict);
            if cli.json {
                for f in &report.findings {
                    out!(u8::from(failed); "{}", serde_json::to_string(f).map_err(|e| e.to_string())?);
                }
                let summary = serde_json::json!({
                    "summary": if failed { "failed" } else { "intact" },
                    "entries": report.entries,
                    "checkpoints": report.checkpoints,
                    "sealed_size": report.sealed_size,
                    "decisions_checked": report.decisions_checked,
                    "refusals_counted": report.refusals_counted,
                    "latest_checkpoint_time": report.latest_checkpoint_time,
                    "failures": report.findings.iter().filter(|f| f.severity == Severity::Failure).map(|f| f.count).sum::<u64>()
                        + report.suppressed.values().filter(|(s, _)| *s == Severity::Failure).map(|(_, n)| n).sum::<u64>(),
                    "warnings": report.findings.iter().filter(|f| f.severity == Severity::Warning).map(|f| f.count).sum::<u64>()
                        + report.suppressed.values().filter(|(s, _)| *s == Severity::Warning).map(|(_, n)| n).sum::<u64>(),
                    "not_listed": report.suppressed.iter().map(|(c, (_, n))| (c.name(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
                });
                out!(u8::from(failed); "{summary}");
            } else {
                for f in &report.findings {
                    out!(u8::from(failed); "{f}");
                }
                for (class, (severity, n)) in &report.suppressed {
                    let sev = if *severity == Severity::Failure {
                        "FAIL"
                    } else {
                        "WARN"
                    };
                    out!(u8::from(failed);
                        "{sev} {}: {n} more findings of this class not listed (the first {} are)",
                        class.name(),
                        verify::MAX_FINDINGS_PER_CLASS
                    );
                }
                out!(u8::from(failed);
                    "{}: {} entries, {} checkpoints, sealed through {}, {} allowed requests re-evaluated, {} findings",
                    if failed { "FAILED" } else { "intact" },
                    report.entries,
                    report.checkpoints,
                    report.sealed_size,
                    report.decisions_checked,
                    report.finding_count()
                );
                if let Some(t) = &report.latest_checkpoint_time {
                    out!(u8::from(failed); "latest checkpoint: {t}");
                }
                if report.refusals_counted > 0 {
                    out!(u8::from(failed);
                        "{} refusals of unauthenticated requests recorded by number only (refusals_counted entries)",
                        report.refusals_counted
                    );
                }
            }
            Ok(u8::from(failed))
        }
        Some(Cmd::Query {
            log_dir,
            task,
            identity,
            denied,
            since,
            until,
            json,
        }) => {
            let parse = |s: Option<String>| -> Result<_, String> {
                s.map(|s| {
                    time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                        .map_err(|e| format!("invalid time `{s}`: {e}"))
                })
                .transpose()
            };
            let filter = Filter {
                task,
                identity,
                denied_only: denied,
                since: parse(since)?,
                until: parse(until)?,
            };
            let files = verify::read_dir(&log_dir).map_err(|e| e.to_string())?;
            for hit in query::select(&files, &filter) {
                if json {
                    out!(0; "{}", hit.raw);
                } else {
                    out!(0; "{}:{} {}", hit.file, hit.line, query::summary(&hit.entry));
                }
            }
            Ok(0)
        }
        Some(Cmd::Prove { log_dir, seq, keys }) => {
            let keys = load_keys(&keys)?;
            let files = verify::read_dir(&log_dir).map_err(|e| e.to_string())?;
            match receipt::make_receipt(&files, seq, &keys) {
                Ok(r) => {
                    out!(0; "{}", serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?);
                    Ok(0)
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Some(Cmd::Consistency {
            log_dir,
            old,
            new,
            keys,
        }) => {
            let keys = load_keys(&keys)?;
            let old = read_text(&old)?;
            let new = new.map(|p| read_text(&p)).transpose()?;
            match consistency::make_consistency(&log_dir, &old, new.as_deref(), &keys) {
                Ok(p) => {
                    out!(0; "{}", serde_json::to_string_pretty(&p).map_err(|e| e.to_string())?);
                    Ok(0)
                }
                // The log does not extend the checkpoint: that is the finding, exit 1.
                Err(e @ consistency::ConsistencyError::Proof(_)) => {
                    out!(1; "INCONSISTENT: {e}");
                    Ok(1)
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Some(Cmd::CheckConsistency { proof: path, keys }) => {
            let keys = load_keys(&keys)?;
            let text = read_text(&path)?;
            let p: consistency::ConsistencyProof = match serde_json::from_str(&text) {
                Ok(p) => p,
                Err(e) => {
                    out!(1; "INVALID: malformed consistency proof `{}`: {e}", path.display());
                    return Ok(1);
                }
            };
            match consistency::check_consistency(&p, &keys) {
                Ok((old, new)) => {
                    out!(0; "consistent: the log of size {old} is a prefix of the log of size {new}");
                    Ok(0)
                }
                Err(e) => {
                    out!(1; "INCONSISTENT: {e}");
                    Ok(1)
                }
            }
        }
        Some(Cmd::CheckProof {
            receipt: path,
            keys,
        }) => {
            let keys = load_keys(&keys)?;
            let text = read_text(&path)?;
            // A receipt that does not parse is an invalid receipt (exit 1), as documented.
            let r: Receipt = match serde_json::from_str(&text) {
                Ok(r) => r,
                Err(e) => {
                    out!(1; "INVALID: malformed receipt `{}`: {e}", path.display());
                    return Ok(1);
                }
            };
            match receipt::check_receipt(&r, &keys) {
                Ok(e) => {
                    out!(0; "valid: {}", query::summary(&e));
                    Ok(0)
                }
                Err(e) => {
                    out!(1; "INVALID: {e}");
                    Ok(1)
                }
            }
        }
    }
}

fn read_text(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("cannot read `{}`: {e}", p.display()))
}

fn load_keys(args: &KeyArgs) -> Result<Vec<NoteVerifier>, String> {
    if args.key.is_empty() {
        return Err("`--key <vkey-file>` is required".into());
    }
    args.key
        .iter()
        .map(|p| {
            let text = read_text(p)?;
            parse_vkey(text.trim()).map_err(|e| format!("`{}`: {e}", p.display()))
        })
        .collect()
}

/// `90s`, `15m`, `2h`, `1d` (a bare number is seconds).
fn parse_age(s: &str) -> Result<time::Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n.parse().map_err(|_| format!("invalid age `{s}`"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("invalid age `{s}` (use s, m, h or d)")),
    };
    Ok(time::Duration::seconds(secs))
}
