//! The command line: `serve`, `keygen`, `agent-token`, and `grant …` (a client of the
//! admin API, so the CLI works the same against a local or a remote gateway).

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::admin_client::AdminClient;
use crate::config::Config;

/// Custody gateway: AI agents use AWS through per-task grants, never holding AWS keys.
#[derive(Debug, Parser)]
#[command(name = "custody-gateway", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (agent and admin listeners).
    Serve(ServeArgs),
    /// Create the log signing key if missing and print its public verifier key.
    Keygen(ConfigArg),
    /// Print a new agent bearer token and the `token_sha256` line for the config.
    AgentToken {
        /// The agent identity, e.g. `agent:report-bot`.
        #[arg(long)]
        identity: String,
    },
    /// Manage grants through the admin API.
    #[command(subcommand)]
    Grant(Box<GrantCommand>),
}

/// `--config`.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file (TOML). Without it, embedded defaults are used.
    #[arg(long, short = 'c', env = "CUSTODY_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    /// Configuration.
    pub config: ConfigArg,
    /// Do not continue the current log: move it aside as evidence and start a new one
    /// (a new origin, `<origin>/2`, …) whose first entries record REASON, where the old
    /// log went and its last signed checkpoint. For a log the start-up check refuses.
    #[arg(long, value_name = "REASON")]
    pub new_log: Option<String>,
}

/// Where the admin API is and how to authenticate.
#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    /// Configuration (for the admin address and the generated token file).
    pub config: ConfigArg,
    /// Admin API base URL (default: from the config's `admin.listen`).
    #[arg(long, env = "CUSTODY_ADMIN_URL")]
    pub admin_url: Option<String>,
    /// Bearer token (admin, person or agent). Default: `<data_dir>/admin.token`.
    #[arg(long, env = "CUSTODY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `grant` subcommands.
#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Request a grant for an agent identity and task.
    Request(Box<RequestArgs>),
    /// Approve a pending grant.
    Approve {
        /// Grant id.
        id: String,
        #[command(flatten)]
        /// Admin API.
        admin: AdminArgs,
    },
    /// Deny a pending grant.
    Deny {
        /// Grant id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        /// Admin API.
        admin: AdminArgs,
    },
    /// Revoke a grant; takes effect on the agent's next request.
    Revoke {
        /// Grant id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        /// Admin API.
        admin: AdminArgs,
    },
    /// List grants.
    List {
        /// Only this identity's grants.
        #[arg(long)]
        identity: Option<String>,
        /// Only grants in this status (pending, active, denied, revoked, expired).
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        /// Admin API.
        admin: AdminArgs,
    },
    /// Show one grant.
    Show {
        /// Grant id.
        id: String,
        #[command(flatten)]
        /// Admin API.
        admin: AdminArgs,
    },
    /// Wait until a grant is decided: exits 0 once it is active, 1 if it is denied,
    /// expired or revoked, or still pending when the timeout passes (printing the grant).
    Wait {
        /// Grant id.
        id: String,
        /// How long to wait, e.g. `10m`, `1h`.
        #[arg(long, default_value = "15m")]
        timeout: String,
        #[command(flatten)]
        /// Admin API.
        admin: AdminArgs,
    },
    /// Fetch a grant's agent credentials (the secret is released once).
    Credentials {
        /// Grant id.
        id: String,
        /// Wait for the grant to be approved first (as `grant wait`), up to `--timeout`.
        #[arg(long)]
        wait: bool,
        /// With `--wait`: how long to wait.
        #[arg(long, default_value = "15m", requires = "wait")]
        timeout: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CredFormat::Env)]
        format: CredFormat,
        /// Keep the fetched credentials in this file (mode 0600) and answer from it on
        /// later calls: what `credential_process` needs, since the secret is released once.
        #[arg(long)]
        cache: Option<PathBuf>,
        #[command(flatten)]
        /// Admin API.
        admin: AdminArgs,
    },
}

/// `grant request` options.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The agent identity the grant is for, e.g. `agent:report-bot` (agents' own tokens
    /// may only name themselves).
    #[arg(long)]
    pub identity: Option<String>,
    /// Task id.
    #[arg(long)]
    pub task: String,
    /// The authorised intent, one human sentence.
    #[arg(long)]
    pub intent: String,
    /// Role name from the config's `[[roles]]`.
    #[arg(long)]
    pub role: String,
    /// Lifetime, e.g. `15m`, `1h`, `900s`.
    #[arg(long, default_value = "15m")]
    pub ttl: String,
    /// Allowed actions (repeat); applies to the `--resource`s given.
    #[arg(long)]
    pub allow: Vec<String>,
    /// Denied actions (repeat).
    #[arg(long)]
    pub deny: Vec<String>,
    /// Resources (ARNs, wildcards allowed) for the statements (repeat).
    #[arg(long)]
    pub resource: Vec<String>,
    /// An IAM policy JSON file instead of `--allow/--deny/--resource`.
    #[arg(long, conflicts_with_all = ["allow", "deny", "resource"])]
    pub policy_file: Option<PathBuf>,
    /// Regions the grant may use (repeat).
    #[arg(long)]
    pub region: Vec<String>,
    /// Stop the grant after this many requests.
    #[arg(long)]
    pub budget: Option<u64>,
    #[command(flatten)]
    /// Admin API.
    pub admin: AdminArgs,
}

/// Credential output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CredFormat {
    /// `export AWS_…=…` lines for a shell.
    Env,
    /// The raw JSON.
    Json,
    /// The `credential_process` JSON (Version 1).
    CredentialProcess,
}

/// A CLI failure, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or configuration (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The gateway failed to start or run (exit 1).
    #[error("{0}")]
    Runtime(String),
    /// The admin API refused or failed (exit 1).
    #[error("{0}")]
    Api(String),
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Runtime(_) | Self::Api(_) => 1,
        }
    }
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => {
            let config = load(&args.config)?;
            crate::run(config, args.new_log)
                .await
                .map_err(|e| CliError::Runtime(e.to_string()))
        }
        Command::Keygen(args) => {
            let config = load(&args)?;
            let vkey = crate::app::keygen(&config).map_err(|e| CliError::Runtime(e.to_string()))?;
            println!("{vkey}");
            Ok(())
        }
        Command::AgentToken { identity } => {
            let token = crate::keys::random_token();
            let digest = crate::admin::token_sha256(&token);
            println!("# give this token to the agent runtime for `{identity}` (shown once):");
            println!("{token}");
            println!("# and add this to custody.toml:");
            println!("[[agents]]\nidentity = {identity:?}\ntoken_sha256 = \"{digest}\"");
            Ok(())
        }
        Command::Grant(cmd) => grant(*cmd).await,
    }
}

fn load(arg: &ConfigArg) -> Result<Config, CliError> {
    Config::load(arg.config.as_deref()).map_err(|e| CliError::Usage(e.to_string()))
}

fn client(args: &AdminArgs) -> Result<AdminClient, CliError> {
    let config = load(&args.config)?;
    let scheme = if config.admin.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let base = args
        .admin_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}", config.admin.listen));
    let token = match &args.token {
        Some(t) => t.clone(),
        None => crate::app::admin_token(&config).map_err(|e| {
            CliError::Usage(format!("no token: pass --token or set CUSTODY_TOKEN ({e})"))
        })?,
    };
    Ok(AdminClient::new(base, token).trust(config.admin.tls_cert.clone()))
}

async fn grant(cmd: GrantCommand) -> Result<(), CliError> {
    let api = |e: crate::admin_client::ClientError| CliError::Api(e.to_string());
    match cmd {
        GrantCommand::Request(args) => {
            let scope = request_scope(&args)?;
            let body = json!({
                "identity": args.identity,
                "task_id": args.task,
                "intent": args.intent,
                "role": args.role,
                "ttl_secs": parse_duration(&args.ttl)?,
                "scope": scope,
                "regions": args.region,
                "request_budget": args.budget,
            });
            let v = client(&args.admin)?
                .post("/v1/grants", &body)
                .await
                .map_err(api)?;
            print_json(&v);
        }
        GrantCommand::Approve { id, admin } => {
            let v = client(&admin)?
                .post(&format!("/v1/grants/{id}/approve"), &json!({}))
                .await
                .map_err(api)?;
            print_json(&v);
        }
        GrantCommand::Deny { id, reason, admin } => {
            let v = client(&admin)?
                .post(
                    &format!("/v1/grants/{id}/deny"),
                    &json!({ "reason": reason }),
                )
                .await
                .map_err(api)?;
            print_json(&v);
        }
        GrantCommand::Revoke { id, reason, admin } => {
            let v = client(&admin)?
                .post(
                    &format!("/v1/grants/{id}/revoke"),
                    &json!({ "reason": reason }),
                )
                .await
                .map_err(api)?;
            print_json(&v);
        }
        GrantCommand::List {
            identity,
            status,
            admin,
        } => {
            let mut path = "/v1/grants".to_owned();
            let mut sep = '?';
            for (k, v) in [("identity", identity), ("status", status)] {
                if let Some(v) = v {
                    path.push(sep);
                    path.push_str(&format!("{k}={}", crate::admin::query_escape(&v)));
                    sep = '&';
                }
            }
            let v = client(&admin)?.get(&path).await.map_err(api)?;
            print_json(&v);
        }
        GrantCommand::Show { id, admin } => {
            let mut v = client(&admin)?
                .get(&format!("/v1/grants/{id}"))
                .await
                .map_err(api)?;
            if let Some(scope) = v
                .get("scope")
                .and_then(|s| custody_grant::Scope::from_iam_json(&s.to_string()).ok())
            {
                v["allow_expansion"] = allow_expansion(&scope);
            }
            print_json(&v);
        }
        GrantCommand::Wait { id, timeout, admin } => {
            let v = wait_decided(&client(&admin)?, &id, &timeout).await?;
            print_json(&v);
            active_or_why(&v)?;
        }
        GrantCommand::Credentials {
            id,
            wait,
            timeout,
            format,
            cache,
            admin,
        } => {
            let creds = match cache.as_deref().filter(|p| p.exists()) {
                Some(path) => read_cache(path)?,
                None => {
                    if wait {
                        let v = wait_decided(&client(&admin)?, &id, &timeout).await?;
                        active_or_why(&v)?;
                    }
                    let v = client(&admin)?
                        .post(&format!("/v1/grants/{id}/credentials"), &json!({}))
                        .await
                        .map_err(api)?;
                    if let Some(path) = &cache {
                        crate::keys::write_secret(path, v.to_string().as_bytes())
                            .map_err(|e| CliError::Runtime(e.to_string()))?;
                    }
                    v
                }
            };
            print_credentials(&creds, format)?;
        }
    }
    Ok(())
}

/// Long-polls the gateway until the grant is no longer pending or `total` passes; the grant.
async fn wait_decided(client: &AdminClient, id: &str, total: &str) -> Result<Value, CliError> {
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_secs(parse_duration(total)?);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // One request waits at most as long as the gateway allows; then ask again.
        let secs = left.as_secs().min(crate::wait::MAX_WAIT.as_secs());
        let v = client
            .get(&format!("/v1/grants/{id}/wait?timeout={secs}"))
            .await
            .map_err(|e| CliError::Api(e.to_string()))?;
        if v["status"] != "pending" || left.is_zero() {
            return Ok(v);
        }
    }
}

/// `Ok` for an active grant, else the one-line reason it is not.
fn active_or_why(grant: &Value) -> Result<(), CliError> {
    let status = grant["status"].as_str().unwrap_or("unknown");
    if status == "active" {
        return Ok(());
    }
    let id = grant["id"].as_str().unwrap_or("?");
    let why = match (status, grant["status_reason"].as_str()) {
        ("pending", _) => "still pending: no decision before the timeout".to_owned(),
        (s, Some(reason)) if !reason.is_empty() => format!("{s}: {reason}"),
        (s, _) => s.to_owned(),
    };
    Err(CliError::Api(format!("grant `{id}` is {why}")))
}

fn request_scope(args: &RequestArgs) -> Result<Value, CliError> {
    if let Some(path) = &args.policy_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("`{}`: {e}", path.display())))?;
        let scope = custody_grant::Scope::from_iam_json(&text)
            .map_err(|e| CliError::Usage(format!("`{}`: {e}", path.display())))?;
        return serde_json::to_value(&scope).map_err(|e| CliError::Usage(e.to_string()));
    }
    if args.allow.is_empty() && args.deny.is_empty() {
        return Err(CliError::Usage(
            "a grant needs a scope: `--allow ACTION --resource ARN …` or `--policy-file`".into(),
        ));
    }
    // Statement order matters (`--resource` applies to the `--allow`/`--deny` before it)
    // and clap keeps each flag's values apart, so re-read them in command-line order.
    let ordered = scope_flags(std::env::args());
    let scope =
        custody_grant::Scope::from_cli(&ordered).map_err(|e| CliError::Usage(e.to_string()))?;
    serde_json::to_value(&scope).map_err(|e| CliError::Usage(e.to_string()))
}

/// The scope flags (`--allow`, `--deny`, `--resource`, with their values) in the order given.
pub fn scope_flags(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let flag = arg.split_once('=').map_or(arg.as_str(), |(f, _)| f);
        if matches!(flag, "--allow" | "--deny" | "--resource") {
            if arg.contains('=') {
                out.push(arg);
            } else if let Some(value) = args.next() {
                out.push(arg);
                out.push(value);
            }
        }
    }
    out
}

/// `15m`, `1h`, `900s`, `900` → seconds.
pub fn parse_duration(text: &str) -> Result<u64, CliError> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| {
        CliError::Usage(format!(
            "duration `{text}` is not like `15m`, `1h` or `900s`"
        ))
    })?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(CliError::Usage(format!(
                "duration `{text}` has unknown unit `{unit}` (s, m, h, d)"
            )));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| CliError::Usage(format!("duration `{text}` is too long")))
}

fn read_cache(path: &Path) -> Result<Value, CliError> {
    let text = crate::keys::read_secret(path).map_err(|e| CliError::Runtime(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| CliError::Runtime(format!("`{}`: {e}", path.display())))
}

/// What each `Allow` pattern of `scope` matches in the AWS Service Authorization Reference:
/// how many actions at each access level, and the first 50 of them.
fn allow_expansion(scope: &custody_grant::Scope) -> Value {
    const SHOWN: usize = 50;
    let rows: Vec<Value> = crate::policy::expansions(scope)
        .into_iter()
        .map(|e| {
            let mut levels = serde_json::Map::new();
            for a in &e.actions {
                let n = levels.entry(a.level.name()).or_insert(Value::from(0u64));
                *n = Value::from(n.as_u64().unwrap_or(0) + 1);
            }
            serde_json::json!({
                "pattern": e.pattern,
                "matches": e.actions.len(),
                "levels": levels,
                "actions": e.actions.iter().take(SHOWN).map(|a| format!("{} ({})", a.full_name(), a.level)).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "source": custody_grant::iam::source(), "allows": rows })
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn print_credentials(creds: &Value, format: CredFormat) -> Result<(), CliError> {
    let field = |k: &str| {
        creds[k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CliError::Api(format!("credentials response has no `{k}`")))
    };
    match format {
        CredFormat::Json => print_json(creds),
        CredFormat::Env => {
            println!(
                "export AWS_ENDPOINT_URL={}",
                shell_quote(&field("endpoint")?)
            );
            println!(
                "export AWS_ACCESS_KEY_ID={}",
                shell_quote(&field("access_key_id")?)
            );
            println!(
                "export AWS_SECRET_ACCESS_KEY={}",
                shell_quote(&field("secret_access_key")?)
            );
            println!(
                "export AWS_DEFAULT_REGION={}",
                shell_quote(&field("region")?)
            );
        }
        CredFormat::CredentialProcess => {
            let v = json!({
                "Version": 1,
                "AccessKeyId": field("access_key_id")?,
                "SecretAccessKey": field("secret_access_key")?,
                "Expiration": field("expiration")?,
            });
            println!("{v}");
        }
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:=+@".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("900").unwrap(), 900);
        assert_eq!(parse_duration("2h").unwrap(), 7200);
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn scope_flags_keep_their_order() {
        let args = [
            "custody-gateway",
            "grant",
            "request",
            "--allow",
            "s3:GetObject",
            "--task",
            "t",
            "--resource",
            "arn:aws:s3:::b/*",
            "--deny=s3:GetObject",
            "--resource",
            "arn:aws:s3:::b/secret/*",
        ];
        let got = scope_flags(args.iter().map(|s| s.to_string()));
        assert_eq!(
            got,
            [
                "--allow",
                "s3:GetObject",
                "--resource",
                "arn:aws:s3:::b/*",
                "--deny=s3:GetObject",
                "--resource",
                "arn:aws:s3:::b/secret/*"
            ]
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc/DEF+1="), "abc/DEF+1=");
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
    }
}
