//! Run the real `custody-gateway` binary in front of a real moto server.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the harness"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use custody_test_support::relay::{Captured, Relay};
use custody_test_support::{
    AwsEnv, Bootstrap, MotoServer, ProcOutput, free_port, oracle, temp_dir,
};
use sha2::{Digest, Sha256};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const ALICE_TOKEN: &str = "alice-token-0123456789";
pub const BOB_TOKEN: &str = "bob-token-0123456789";
pub const AGENT_TOKEN: &str = "report-bot-token-0123456789";

/// A moto server bootstrapped for the gateway, and the gateway running in front of it.
pub struct Stack {
    pub moto: MotoServer,
    pub gateway: Gateway,
}

/// The gateway process.
pub struct Gateway {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub agent_port: u16,
    pub admin_port: u16,
    pub env: Vec<(String, String)>,
    /// Run the gateway in its own mount namespace with the log directory on a tmpfs of
    /// this many bytes (so a test can fill the disk with [`Gateway::fill_log_disk`]).
    pub log_tmpfs: Option<u64>,
    /// Extra arguments to `serve` (e.g. `--new-log REASON`).
    pub serve_args: Vec<String>,
    /// The recording relay between the gateway and its upstream: when the gateway is
    /// dropped at the end of a passing test, the fidelity oracle checks every request the
    /// upstream received against the log's decisions.
    pub relay: Relay,
    /// Account of the granted role (ARNs of resources named without one).
    pub account: String,
    /// The gateway's own access key id (its broker's `AssumeRole` calls are its own).
    pub own_key: String,
}

fn sha(t: &str) -> String {
    hex::encode(Sha256::digest(t.as_bytes()))
}

/// moto with the gateway user, a permissive `agent` role (the grant and the session policy
/// narrow it), a `reports` bucket, a `ledger` table and a `jobs` queue.
pub fn moto() -> MotoServer {
    let plan = Bootstrap::with_gateway_user()
        .role(
            "agent",
            serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["s3:*", "dynamodb:*", "sqs:*", "secretsmanager:*", "ec2:*", "sts:GetCallerIdentity", "events:*", "states:*", "kinesis:*", "ecr:*", "ecs:*", "cloudformation:*", "cloudwatch:*", "monitoring:ListMetrics", "iam:ListRoles"], "Resource": "*"}]
            }),
        )
        .bucket(
            "reports",
            &[("q1/summary.txt", "q1 numbers"), ("q2/summary.txt", "q2 numbers"), ("secret/keys.txt", "do not read")],
        )
        .bucket("other", &[("x.txt", "other bucket")])
        .table("ledger")
        .queue("jobs")
        .secret("db-password", "hunter2")
        .secret("holdout-secret", "do not read");
    MotoServer::start(&plan).unwrap_or_else(|e| panic!("moto: {e}"))
}

impl Stack {
    /// moto plus a gateway configured for it.
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// As [`Stack::start`], with a hook to edit the config text.
    pub fn start_with(edit: impl FnOnce(&mut String)) -> Self {
        let moto = moto();
        let gateway = Gateway::start(&moto, edit);
        Self { moto, gateway }
    }
}

impl Gateway {
    pub fn start(moto: &MotoServer, edit: impl FnOnce(&mut String)) -> Self {
        let role = moto
            .role_arn("agent")
            .unwrap_or_else(|| panic!("no role"))
            .to_owned();
        let gw = moto
            .user("custody-gateway")
            .unwrap_or_else(|| panic!("no gateway user"));
        let env = vec![
            ("AWS_ACCESS_KEY_ID".to_owned(), gw.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                gw.secret_access_key.clone(),
            ),
        ];
        Self::start_for(&moto.endpoint(), &role, env, edit)
    }

    /// A gateway in front of `endpoint`, granting `role`, with `env` (its own AWS
    /// credentials) in its environment.
    pub fn start_for(
        endpoint: &str,
        role: &str,
        env: Vec<(String, String)>,
        edit: impl FnOnce(&mut String),
    ) -> Self {
        let dir = temp_dir().unwrap_or_else(|e| panic!("{e}"));
        // Every end-to-end request passes the recording relay on its way upstream.
        let relay = Relay::start(endpoint).unwrap_or_else(|e| panic!("relay: {e}"));
        let endpoint = relay.endpoint();
        let account = role.split(':').nth(4).unwrap_or_default().to_owned();
        let own_key = env
            .iter()
            .find(|(k, _)| k == "AWS_ACCESS_KEY_ID")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let agent_port = free_port().unwrap_or_else(|e| panic!("{e}"));
        // Two free ports, distinct: the OS may hand the same one out twice in a row.
        let admin_port = loop {
            let p = free_port().unwrap_or_else(|e| panic!("{e}"));
            if p != agent_port {
                break p;
            }
        };
        let mut config = format!(
            r#"data_dir = "{data}"

[agent]
listen = "127.0.0.1:{agent_port}"

[admin]
listen = "127.0.0.1:{admin_port}"
token = "{ADMIN_TOKEN}"

[upstream]
endpoint = "{endpoint}"
region = "us-east-1"

[log]
checkpoint_interval_ms = 200
heartbeat_interval_ms = 1000

[limits]
expiry_sweep_ms = 200

[[people]]
name = "alice"
token_sha256 = "{alice}"

[[people]]
name = "bob"
token_sha256 = "{bob}"

[[agents]]
identity = "agent:report-bot"
token_sha256 = "{agent}"

[[roles]]
name = "reader"
arn = "{role}"
max_ttl_secs = 3600
auto_approve_read_only_ttl_secs = 900

[[roles]]
name = "writer"
arn = "{role}"
max_ttl_secs = 3600
approvals_required = 1
approvers = ["bob"]

[[roles]]
name = "ops"
arn = "{role}"
max_ttl_secs = 3600
approvals_required = 1
"#,
            data = dir.path().join("data").display(),
            alice = sha(ALICE_TOKEN),
            bob = sha(BOB_TOKEN),
            agent = sha(AGENT_TOKEN),
        );
        edit(&mut config);
        let config_path = dir.path().join("custody.toml");
        std::fs::write(&config_path, config).unwrap_or_else(|e| panic!("{e}"));
        let mut g = Self {
            child: None,
            dir,
            config: config_path,
            agent_port,
            admin_port,
            env,
            log_tmpfs: None,
            serve_args: Vec::new(),
            relay,
            account,
            own_key,
        };
        g.spawn();
        g
    }

    /// The requests the upstream received on agents' behalf (not the broker's own).
    pub fn forwarded(&self) -> Vec<Captured> {
        let mut all = self.relay.captured();
        all.retain(|c| credential_key(c).as_deref() != Some(&self.own_key));
        all
    }

    /// The fidelity oracle over everything relayed so far: each request the upstream
    /// received, read as the upstream reads it, must be an allowed decision in the log.
    /// Returns how many requests it checked.
    pub fn check_fidelity(&self) -> Result<usize, Vec<String>> {
        let own = |c: &Captured, r: &oracle::Reading| {
            r.operation == "AssumeRole" && credential_key(c).as_deref() == Some(&self.own_key)
        };
        // Logs set aside by `--new-log` recorded what was forwarded before them.
        let mut entries = self.entries();
        let log_dir = self.log_dir();
        let set_aside = format!(
            "{}.replaced-",
            log_dir.file_name().unwrap_or_default().to_string_lossy()
        );
        if let Some(parent) = log_dir.parent()
            && let Ok(rd) = std::fs::read_dir(parent)
        {
            for e in rd.filter_map(Result::ok) {
                if e.file_name().to_string_lossy().starts_with(&set_aside) {
                    entries.extend(entries_in(&e.path()));
                }
            }
        }
        oracle::check(&self.relay.captured(), &entries, &self.account, own)
    }

    /// Start (or restart) the gateway process and wait until it is ready.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gateway.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        let err = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let gateway = std::env::var("CUSTODY_TEST_GATEWAY_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_custody-gateway").to_owned());
        let mut cmd = match self.log_tmpfs {
            None => {
                let mut c = Command::new(gateway);
                c.args(["serve", "--config"])
                    .arg(&self.config)
                    .args(&self.serve_args);
                c
            }
            Some(bytes) => {
                let log_dir = self.log_dir();
                std::fs::create_dir_all(&log_dir).unwrap_or_else(|e| panic!("{e}"));
                let mut c = Command::new("unshare");
                c.args(["-m", "sh", "-c"]).arg(format!(
                    "mount -t tmpfs -o size={bytes} none '{}' && exec '{gateway}' serve --config '{}'",
                    log_dir.display(),
                    self.config.display()
                ));
                c
            }
        };
        let child = cmd
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn gateway: {e}"));
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("gateway exited early ({status}): {}", self.server_log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.admin_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.agent_port)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway did not start: {}", self.server_log());
    }

    /// Fill the gateway's log tmpfs (see `log_tmpfs`) to the last byte, from inside its
    /// mount namespace.
    pub fn fill_log_disk(&self) {
        let pid = self
            .child
            .as_ref()
            .map(|c| c.id())
            .unwrap_or_else(|| panic!("not running"));
        let filler = self.log_dir().join("filler");
        let out = Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "dd", "if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", filler.display()))
            .output()
            .unwrap_or_else(|e| panic!("nsenter: {e}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("No space left"),
            "the disk did not fill: {err}"
        );
    }

    /// GET a path on the admin listener; (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.admin_port))
            .unwrap_or_else(|e| panic!("{e}"));
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap_or_else(|e| panic!("{e}"));
        let mut text = String::new();
        s.read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{e}"));
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// The value of one series in `/metrics`, e.g. `custody_agent_connections{thread="0"}`;
    /// panics when it is absent.
    pub fn metric(&self, series: &str) -> u64 {
        let (status, metrics) = self.admin_get("/metrics");
        assert_eq!(status, 200, "{metrics}");
        let prefix = format!("{series} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{series}: {e}"))
    }

    /// SIGKILL the gateway.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the gateway and wait for it to exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.data_dir().join("log")
    }

    pub fn agent_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.agent_port)
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// `custody-gateway ARGS --config <config>` with `token`, not yet started.
    pub fn cli_command(&self, token: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_custody-gateway"));
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .env("CUSTODY_TOKEN", token);
        cmd
    }

    /// Run `custody-gateway ARGS --config <config>` with `token`.
    pub fn cli(&self, token: &str, args: &[&str]) -> ProcOutput {
        let out = self
            .cli_command(token, args)
            .output()
            .unwrap_or_else(|e| panic!("cli: {e}"));
        ProcOutput {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `grant request …` as `token`; returns the grant JSON.
    pub fn request(&self, token: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["grant", "request"];
        all.extend_from_slice(args);
        let out = self.cli(token, &all);
        assert!(
            out.success(),
            "grant request failed: {}\n{}",
            out.stderr,
            self.server_log()
        );
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
    }

    /// Request (as admin) a grant on role `reader` for `s3:GetObject` on everything, which
    /// the role auto-approves; `extra` (`--ttl`, `--budget`, …) goes before the scope.
    pub fn request_reader(&self, identity: &str, task: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec![
            "--identity",
            identity,
            "--task",
            task,
            "--intent",
            "i",
            "--role",
            "reader",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--allow", "s3:GetObject", "--resource", "*"]);
        self.request(ADMIN_TOKEN, &args)
    }

    /// The agent environment for a grant: fetch its credentials once.
    pub fn agent_env(&self, token: &str, grant_id: &str) -> AwsEnv {
        let out = self.cli(
            token,
            &["grant", "credentials", grant_id, "--format", "json"],
        );
        assert!(out.success(), "credentials failed: {}", out.stderr);
        let v: serde_json::Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
        let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("no {k}")).to_owned();
        AwsEnv::new(s("endpoint"), &s("access_key_id"), &s("secret_access_key"))
    }

    /// Run custody-verify on the log directory.
    pub fn verify(&self, extra: &[&str]) -> ProcOutput {
        let out = Command::new(verify_bin())
            .arg(self.log_dir())
            .arg("--key")
            .arg(self.data_dir().join("log.vkey"))
            .args(extra)
            .output()
            .unwrap_or_else(|e| panic!("custody-verify: {e}"));
        ProcOutput {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// All log entries, parsed.
    pub fn entries(&self) -> Vec<serde_json::Value> {
        if let (Some(_), Some(child)) = (self.log_tmpfs, self.child.as_ref()) {
            // The log lives on a tmpfs only the gateway's mount namespace sees.
            let out = Command::new("nsenter")
                .args(["-t", &child.id().to_string(), "-m", "sh", "-c"])
                .arg(format!("cat '{}'/log-*.jsonl", self.log_dir().display()))
                .output()
                .unwrap_or_else(|e| panic!("nsenter: {e}"));
            return String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
        }
        entries_in(&self.log_dir())
    }
}

/// The entries of the log in `dir`, parsed.
fn entries_in(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("log-"))
    });
    files.sort();
    files
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // A passing test also passes the oracle; a failing one has already said why.
        let verdict = (!std::thread::panicking()).then(|| self.check_fidelity());
        self.kill9();
        if let Some(Err(problems)) = verdict {
            panic!(
                "fidelity oracle: {} request(s) the upstream executed differ from the log:\n{}",
                problems.len(),
                problems.join("\n")
            );
        }
    }
}

/// The access key id in a relayed request's `Authorization` header.
fn credential_key(c: &Captured) -> Option<String> {
    let (_, auth) = c.headers.iter().find(|(k, _)| k == "authorization")?;
    let auth = String::from_utf8_lossy(auth);
    let cred = auth.split("Credential=").nth(1)?;
    cred.split('/').next().map(str::to_owned)
}

/// The `custody-verify` binary, built next to this test's binary.
pub fn verify_bin() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_custody-gateway"));
    exe.with_file_name("custody-verify")
}

/// Run a boto3 snippet that prints one JSON document; fail with the gateway's log if it
/// does not run cleanly.
pub fn python_json(code: &str, env: &AwsEnv, gateway: &Gateway) -> serde_json::Value {
    let out = custody_test_support::run_python(code, env).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.success(),
        "boto3 failed: {}\n{}",
        out.stderr,
        gateway.server_log()
    );
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

pub fn assert_denied(out: &ProcOutput, code: &str) {
    assert!(
        !out.success(),
        "expected a denial, got success: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains(code),
        "expected `{code}`, got: {}",
        out.stderr
    );
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// A peer process (a test upstream), stopped by pid when dropped, also when a test panics.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
