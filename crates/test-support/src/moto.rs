//! `moto_server` with signature checking and IAM enforcement on.
//!
//! Moto serves unauthenticated calls while its no-auth allowance
//! (`INITIAL_NO_AUTH_ACTION_COUNT`) lasts. We start it with a large allowance, run the
//! bootstrap plan, then set the allowance to zero through moto's own `/moto-api/reset-auth`
//! endpoint. That is exact where counting bootstrap calls by hand is fragile, and we prove
//! enforcement is on with an unsigned call that must be refused before returning.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{HarnessError, free_port};

/// What to create in moto before enforcement switches on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Bootstrap {
    /// IAM users (the gateway's own principal, usually one).
    pub users: Vec<UserSpec>,
    /// IAM roles the users may assume.
    pub roles: Vec<RoleSpec>,
    /// S3 buckets, each with optional objects.
    pub buckets: Vec<BucketSpec>,
    /// DynamoDB tables with a string hash key `pk`.
    pub tables: Vec<String>,
    /// SQS queue names.
    pub queues: Vec<String>,
    /// Secrets Manager secrets: name and string value.
    pub secrets: Vec<(String, String)>,
}

/// An IAM user and its inline policies.
#[derive(Debug, Clone, Serialize)]
pub struct UserSpec {
    /// User name.
    pub name: String,
    /// Inline policy documents.
    pub policies: Vec<serde_json::Value>,
}

/// An IAM role trusted by some users, with inline permission policies.
#[derive(Debug, Clone, Serialize)]
pub struct RoleSpec {
    /// Role name.
    pub name: String,
    /// Users (by name, from [`Bootstrap::users`]) the trust policy allows to assume it;
    /// empty means only a foreign account is trusted, so no bootstrapped user may.
    pub trusted_users: Vec<String>,
    /// Inline permission policy documents.
    pub policies: Vec<serde_json::Value>,
    /// The role's maximum session duration in seconds.
    pub max_session_duration: u32,
}

/// An S3 bucket and the objects to put in it.
#[derive(Debug, Clone, Serialize)]
pub struct BucketSpec {
    /// Bucket name.
    pub name: String,
    /// Objects: key to UTF-8 body.
    pub objects: BTreeMap<String, String>,
}

/// A user's access key pair as moto issued it.
#[derive(Debug, Clone, Deserialize)]
pub struct UserKey {
    /// The user's ARN.
    pub arn: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// What the bootstrap created.
#[derive(Debug, Clone, Deserialize)]
pub struct BootstrapResult {
    /// Users by name.
    pub users: BTreeMap<String, UserKey>,
    /// Role ARNs by role name.
    pub roles: BTreeMap<String, String>,
    /// Queue URLs by queue name.
    pub queues: BTreeMap<String, String>,
}

impl Bootstrap {
    /// A bootstrap with the conventional gateway user `custody-gateway`, allowed to assume
    /// any role (the roles' trust policies decide).
    pub fn with_gateway_user() -> Self {
        Self {
            users: vec![UserSpec {
                name: "custody-gateway".into(),
                policies: vec![serde_json::json!({
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Effect": "Allow",
                        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession", "sts:GetCallerIdentity"],
                        "Resource": "*"
                    }]
                })],
            }],
            ..Self::default()
        }
    }

    /// Add a role trusted by the gateway user with one inline policy.
    pub fn role(mut self, name: &str, policy: serde_json::Value) -> Self {
        self.roles.push(RoleSpec {
            name: name.into(),
            trusted_users: vec!["custody-gateway".into()],
            policies: vec![policy],
            max_session_duration: 3600,
        });
        self
    }

    /// Add a role with one inline policy that no bootstrapped user may assume (its trust
    /// policy names only a foreign account).
    pub fn untrusted_role(mut self, name: &str, policy: serde_json::Value) -> Self {
        self.roles.push(RoleSpec {
            name: name.into(),
            trusted_users: Vec::new(),
            policies: vec![policy],
            max_session_duration: 3600,
        });
        self
    }

    /// Add a bucket with objects.
    pub fn bucket(mut self, name: &str, objects: &[(&str, &str)]) -> Self {
        self.buckets.push(BucketSpec {
            name: name.into(),
            objects: objects
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        });
        self
    }

    /// Add a DynamoDB table.
    pub fn table(mut self, name: &str) -> Self {
        self.tables.push(name.into());
        self
    }

    /// Add an SQS queue.
    pub fn queue(mut self, name: &str) -> Self {
        self.queues.push(name.into());
        self
    }

    /// Add a Secrets Manager secret (its ARN gets the usual random suffix).
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.push((name.into(), value.into()));
        self
    }
}

/// A running `moto_server`, stopped by pid when dropped.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
    /// What the bootstrap created.
    pub created: BootstrapResult,
}

impl MotoServer {
    /// Start moto on a free loopback port, bootstrap it with `plan`, then switch on
    /// signature checking and IAM enforcement for every later call.
    pub fn start(plan: &Bootstrap) -> Result<Self, HarnessError> {
        let mut last_err = None;
        for _ in 0..3 {
            match Self::start_once(plan) {
                Ok(server) => return Ok(server),
                Err(e @ HarnessError::NotReady { .. }) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(HarnessError::NotReady {
            what: "moto_server".into(),
            seconds: 0,
        }))
    }

    fn start_once(plan: &Bootstrap) -> Result<Self, HarnessError> {
        let port = free_port()?;
        // `python3 -m moto.server` rather than the `moto_server` shim, so the pid we hold
        // is the server's own and killing it stops the server.
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "1000000")
            .env("MOTO_CALL_RESET_API", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                program: "python3 -m moto.server".into(),
                source,
            })?;
        let mut server = Self {
            child,
            port,
            created: BootstrapResult {
                users: BTreeMap::new(),
                roles: BTreeMap::new(),
                queues: BTreeMap::new(),
            },
        };
        server.wait_ready(Duration::from_secs(30))?;
        server.created = server.bootstrap(plan)?;
        server.enforce()?;
        Ok(server)
    }

    /// The server's endpoint URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The key pair of a bootstrapped user.
    pub fn user(&self, name: &str) -> Option<&UserKey> {
        self.created.users.get(name)
    }

    /// The ARN of a bootstrapped role.
    pub fn role_arn(&self, name: &str) -> Option<&str> {
        self.created.roles.get(name).map(String::as_str)
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), HarnessError> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                return Err(HarnessError::NotReady {
                    what: format!("moto_server (exited with {status})"),
                    seconds: start.elapsed().as_secs(),
                });
            }
            // The dashboard is served outside moto's auth counter, so polling it does not
            // use up the no-auth allowance.
            if let Ok((200, _)) = self.raw_http("GET", "/moto-api/", "") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(HarnessError::NotReady {
            what: "moto_server".into(),
            seconds: limit.as_secs(),
        })
    }

    fn bootstrap(&self, plan: &Bootstrap) -> Result<BootstrapResult, HarnessError> {
        let mut doc = serde_json::to_value(plan)?;
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("endpoint".into(), self.endpoint().into());
        }
        let script = crate::support_file("python/bootstrap.py");
        let mut child = Command::new("python3")
            .arg(script)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                program: "python3".into(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(doc.to_string().as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(HarnessError::Bootstrap {
                status: out.status.code().unwrap_or(-1),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    fn enforce(&self) -> Result<(), HarnessError> {
        let (status, body) = self.raw_http("POST", "/moto-api/reset-auth", "0")?;
        if status != 200 {
            return Err(HarnessError::EnforcementOff(format!(
                "reset-auth answered {status}: {body}"
            )));
        }
        // Prove it: an unsigned ListBuckets must now be refused.
        let (status, body) = self.raw_http("GET", "/", "")?;
        if status == 200 {
            return Err(HarnessError::EnforcementOff(body));
        }
        Ok(())
    }

    /// A minimal HTTP/1.0 exchange with the server, for harness control calls only (the
    /// tests' own calls go through real clients).
    fn raw_http(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, String), HarnessError> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Stop by pid: SIGKILL the server we started, then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
