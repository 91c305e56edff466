//! Real AWS clients as subprocesses: boto3 snippets and the `aws` CLI.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::HarnessError;

/// Where and as whom a client talks to AWS.
#[derive(Debug, Clone)]
pub struct AwsEnv {
    /// `AWS_ENDPOINT_URL`: the gateway (or moto directly).
    pub endpoint: String,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_DEFAULT_REGION`.
    pub region: String,
}

impl AwsEnv {
    /// An environment for `endpoint` with the given key pair in `us-east-1`.
    pub fn new(endpoint: impl Into<String>, access_key_id: &str, secret_access_key: &str) -> Self {
        Self {
            endpoint: endpoint.into(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            region: "us-east-1".into(),
        }
    }

    /// Apply this environment to a command, isolating it from the user's AWS config.
    fn apply(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_access_key)
            .env("AWS_DEFAULT_REGION", &self.region)
            .env("AWS_REGION", &self.region)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_RETRY_MODE", "standard")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
}

/// What a client process printed and how it exited.
#[derive(Debug, Clone)]
pub struct ProcOutput {
    /// Exit status (−1 if killed by a signal).
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ProcOutput {
    fn from_output(out: Output) -> Self {
        Self {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Whether the process exited 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Run a Python snippet with boto3 importable, against `env`.
///
/// The snippet sees the environment's endpoint and credentials the way an agent's SDK
/// would (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, …), so `boto3.client("s3")` just works.
pub fn run_python(code: &str, env: &AwsEnv) -> Result<ProcOutput, HarnessError> {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(code);
    env.apply(&mut cmd);
    run(cmd, "python3")
}

/// Run the `aws` CLI with `args` against `env`, optionally in `cwd`.
pub fn run_aws_cli(
    args: &[&str],
    env: &AwsEnv,
    cwd: Option<&Path>,
) -> Result<ProcOutput, HarnessError> {
    let mut cmd = Command::new("aws");
    cmd.args(args);
    env.apply(&mut cmd);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    run(cmd, "aws")
}

/// Run a node script (an ES module; its packages in `node_modules` beside it) against
/// `env`, as an agent on the AWS SDK for JavaScript would run.
pub fn run_node(script: &Path, env: &AwsEnv) -> Result<ProcOutput, HarnessError> {
    let mut cmd = Command::new("node");
    cmd.arg(script);
    env.apply(&mut cmd);
    if let Some(dir) = script.parent() {
        cmd.current_dir(dir);
    }
    run(cmd, "node")
}

fn run(mut cmd: Command, program: &str) -> Result<ProcOutput, HarnessError> {
    let out = cmd.output().map_err(|source| HarnessError::Spawn {
        program: program.into(),
        source,
    })?;
    Ok(ProcOutput::from_output(out))
}
