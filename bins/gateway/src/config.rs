//! `custody.toml`: every key optional, every default embedded, unknown keys refused.
//!
//! Each key is documented in `docs/configuration.md`; keep the two in step.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where grants, the log and keys live.
    pub data_dir: PathBuf,
    /// The listener agents talk to (SigV4 requests).
    pub agent: Listener,
    /// The listener operators and agent runtimes talk to (admin API, health, metrics).
    pub admin: AdminConfig,
    /// Where requests go.
    pub upstream: UpstreamSection,
    /// How scoped credentials are obtained.
    pub broker: BrokerSection,
    /// The session log.
    pub log: LogSection,
    /// Roles that may be granted.
    pub roles: Vec<RoleConfig>,
    /// People (approvers, requesters) with their own admin-API tokens.
    pub people: Vec<PersonConfig>,
    /// Agent identities allowed to request grants for themselves.
    pub agents: Vec<AgentConfig>,
    /// Request-path limits.
    pub limits: Limits,
    /// What read-only rules may approve on their own.
    pub approval: ApprovalSection,
    /// The file this was read from (`None`: the embedded defaults); SIGHUP re-reads it.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// What read-only rules (`roles[].auto_approve_read_only_ttl_secs`) may approve.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalSection {
    /// Reads never approved automatically (IAM action patterns, expanded against the
    /// AWS Service Authorization Reference data).
    pub sensitive_reads: Vec<String>,
}

impl Default for ApprovalSection {
    fn default() -> Self {
        Self {
            sensitive_reads: crate::policy::SENSITIVE_READS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

/// A listener address with optional TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listener {
    /// Address to bind, e.g. `127.0.0.1:8432`.
    pub listen: SocketAddr,
    /// PEM certificate chain; TLS is on when both this and `tls_key` are set.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// The URL agents are given as their endpoint (`AWS_ENDPOINT_URL`), e.g.
    /// `https://custody.internal:8432`, when it is not the listen address (a load
    /// balancer, a DNS name, a listener on all interfaces). Agent listener only.
    pub public_url: Option<String>,
    /// Agent threads: N threads of their own, each a single-threaded runtime with its own
    /// upstream connection pool, each new connection given to the one with the fewest open,
    /// so a connection's work never crosses threads. 0: agent requests run on the shared
    /// multi-threaded runtime instead. Unset: one per core ([`Listener::agent_threads`]).
    pub threads: Option<usize>,
}

/// The admin listener and its authentication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// PEM certificate chain for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// The admin bearer token. Prefer `token_env` or `token_file`; if none is set the
    /// gateway generates a random token into `<data_dir>/admin.token` (mode 0600).
    pub token: Option<String>,
    /// Name of an environment variable holding the admin token.
    pub token_env: Option<String>,
    /// A file holding the admin token.
    pub token_file: Option<PathBuf>,
}

/// Upstream settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSection {
    /// Send every service to this AWS-compatible endpoint instead of AWS.
    pub endpoint: Option<String>,
    /// Default region for grants that name none.
    pub region: String,
}

/// Broker settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSection {
    /// STS endpoint override (defaults to the upstream endpoint override, else AWS).
    pub endpoint: Option<String>,
    /// Region for STS calls (defaults to the upstream region).
    pub region: Option<String>,
    /// Refresh credentials this many seconds before they expire.
    pub refresh_margin_secs: u64,
    /// Sign upstream requests with the gateway's own base credentials instead of
    /// assuming the grant's role: for S3-compatible stores without STS. The gateway's
    /// decision is then the only fence (no session policy at the upstream).
    pub danger_sign_with_base_credentials: bool,
}

/// Log settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Log directory (default `<data_dir>/log`).
    pub dir: Option<PathBuf>,
    /// The log's origin line in checkpoints (default `custody.local/<hostname>`).
    pub origin: Option<String>,
    /// Write a checkpoint at least every this many entries.
    pub checkpoint_every_entries: u64,
    /// … and at least every this many milliseconds while entries arrive.
    pub checkpoint_interval_ms: u64,
    /// Heartbeat checkpoint when idle, every this many milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Rotate segments at this size.
    pub segment_max_bytes: u64,
    /// Grow the current segment this many zero bytes at a time, ahead of the entries
    /// (0 = grow with each append).
    pub preallocate_bytes: u64,
    /// A request's outcome entry (written after its response) waits at most this long to
    /// share the next decision's group commit before it is written on its own.
    pub outcome_max_delay_ms: u64,
    /// When the log's committer thread is idle, the request's own thread writes and
    /// syncs its decision entry (one hand-off less each way): if its connection is alone
    /// on its agent thread, or whatever the thread holds while the log's commits take
    /// less than `inline_commit_under_us`.
    pub inline_commit: bool,
    /// See `inline_commit`; 0: only for a connection alone on its thread.
    pub inline_commit_under_us: u64,
    /// Also copy every checkpoint into this directory (mount something the gateway host
    /// cannot rewrite, e.g. a bucket with Object Lock).
    pub checkpoint_copy_dir: Option<PathBuf>,
}

/// A role that may be granted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Short name used in grant requests.
    pub name: String,
    /// The IAM role the gateway assumes for grants on it.
    pub arn: String,
    /// Longest grant lifetime, in seconds.
    #[serde(default = "default_max_ttl")]
    pub max_ttl_secs: u64,
    /// How many distinct approvers a grant needs (0 = no approval).
    #[serde(default = "one")]
    pub approvals_required: u32,
    /// Approve automatically when the scope is read-only and the TTL is at most this many
    /// seconds (0 = never).
    #[serde(default)]
    pub auto_approve_read_only_ttl_secs: u64,
    /// Regions grants on this role may use (empty = the upstream region).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Who may approve grants on this role (names from `[[people]]`, or `admin` for the
    /// admin token). Empty = every person and `admin`.
    #[serde(default)]
    pub approvers: Vec<String>,
}

/// A person with their own token: may request grants and, where a role lists them,
/// approve or deny them. Their name is what the log records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonConfig {
    /// The person's name, e.g. `alice`.
    pub name: String,
    /// SHA-256 (hex) of the person's bearer token.
    pub token_sha256: String,
}

/// An agent identity that may request grants for itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The identity, e.g. `agent:report-bot`.
    pub identity: String,
    /// SHA-256 (hex) of the agent's bearer token, so the config holds no secret.
    pub token_sha256: String,
}

/// Request-path limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest body buffered for classification (JSON and query protocols), in bytes.
    pub max_buffered_body: usize,
    /// How often expired grants are swept, in milliseconds.
    pub expiry_sweep_ms: u64,
    /// Open agent connections at most; 0: derived from the open-files limit.
    pub max_agent_connections: usize,
    /// Open admin connections at most.
    pub max_admin_connections: usize,
    /// How long a connection may take to send its first bytes, each request head, or
    /// a TLS handshake, and how long an idle keep-alive connection stays, in ms.
    pub header_read_timeout_ms: u64,
    /// Longest wait for the next part of a request body, in ms.
    pub body_idle_timeout_ms: u64,
    /// Least average request-body rate, in bytes/s, once `body_idle_timeout_ms` has passed.
    pub min_body_rate: u64,
    /// Bytes all request bodies whose signature is not yet checked may hold together.
    pub max_unverified_body_bytes: usize,
    /// How long such a body waits for its share before it is refused, in ms.
    pub unverified_body_wait_ms: u64,
    /// The window unauthenticated refusals are counted over, in ms.
    pub refusal_window_ms: u64,
    /// Unauthenticated refusals recorded in full per source, reason and window.
    pub refusals_recorded_per_source: u32,
    /// Unauthenticated refusals recorded in full per window, all sources together.
    pub refusals_recorded_per_window: u32,
    /// Requests per second one source address may send on average; 0: no limit.
    pub rate_per_source: f64,
    /// … and at once; 0: one second's worth.
    pub burst_per_source: u32,
    /// Requests per second one grant may make on average; 0: no limit.
    pub rate_per_grant: f64,
    /// … and at once; 0: one second's worth.
    pub burst_per_grant: u32,
}

impl Limits {
    /// The request rate limits these settings ask for.
    pub fn rate_limits(&self) -> custody_proxy::throttle::RateLimits {
        let rate = |per_second: f64, burst: u32| {
            (per_second > 0.0).then(|| custody_proxy::throttle::Rate {
                per_second,
                burst: if burst == 0 {
                    per_second.max(1.0)
                } else {
                    f64::from(burst)
                },
            })
        };
        custody_proxy::throttle::RateLimits::new(
            rate(self.rate_per_source, self.burst_per_source),
            rate(self.rate_per_grant, self.burst_per_grant),
        )
    }
}

fn default_max_ttl() -> u64 {
    3600
}

fn one() -> u32 {
    1
}

/// A config that could not be loaded: which file, and why (toml names the key and line).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown or mistyped key.
    #[error("config `{path}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's account, naming the key.
        message: String,
    },
    /// A value is well-formed but unusable.
    #[error("config `{path}`: key `{key}`: {reason}")]
    Invalid {
        /// The file (or `<defaults>`).
        path: PathBuf,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// The most agent threads a configuration may ask for.
pub const MAX_AGENT_THREADS: usize = 256;

// === impl Listener ===

impl Listener {
    /// How many agent threads to run: `threads` when set, else one per core the process
    /// may use (0 means the shared runtime).
    pub fn agent_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_AGENT_THREADS)
        })
    }
}

// === impl Config ===

impl Default for Config {
    fn default() -> Self {
        Self {
            path: None,
            data_dir: PathBuf::from("custody-data"),
            agent: Listener {
                listen: SocketAddr::from(([127, 0, 0, 1], 8432)),
                tls_cert: None,
                tls_key: None,
                public_url: None,
                threads: None,
            },
            admin: AdminConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8433)),
                tls_cert: None,
                tls_key: None,
                token: None,
                token_env: None,
                token_file: None,
            },
            upstream: UpstreamSection::default(),
            broker: BrokerSection::default(),
            log: LogSection::default(),
            roles: Vec::new(),
            people: Vec::new(),
            agents: Vec::new(),
            limits: Limits::default(),
            approval: ApprovalSection::default(),
        }
    }
}

impl Default for UpstreamSection {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".into(),
        }
    }
}

impl Default for BrokerSection {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            refresh_margin_secs: 300,
            danger_sign_with_base_credentials: false,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            dir: None,
            origin: None,
            checkpoint_every_entries: 1000,
            checkpoint_interval_ms: 1000,
            heartbeat_interval_ms: 60_000,
            segment_max_bytes: 64 << 20,
            preallocate_bytes: 1 << 20,
            outcome_max_delay_ms: 5,
            inline_commit: true,
            inline_commit_under_us: 50,
            checkpoint_copy_dir: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_buffered_body: 6 << 20,
            expiry_sweep_ms: 1000,
            max_agent_connections: 0,
            max_admin_connections: 64,
            header_read_timeout_ms: 20_000,
            body_idle_timeout_ms: 30_000,
            min_body_rate: 1024,
            max_unverified_body_bytes: 64 << 20,
            unverified_body_wait_ms: 5_000,
            refusal_window_ms: 10_000,
            refusals_recorded_per_source: 5,
            refusals_recorded_per_window: 100,
            rate_per_source: 0.0,
            burst_per_source: 0,
            rate_per_grant: 0.0,
            burst_per_grant: 0,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Config::default().admin
    }
}

impl Default for Listener {
    fn default() -> Self {
        Config::default().agent
    }
}

impl Config {
    /// Load `path`, or the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            let config = Self::default();
            config.validate(Path::new("<defaults>"))?;
            return Ok(config);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        config.path = Some(path.to_owned());
        Ok(config)
    }

    /// Parse config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().replace('\n', " ").trim().to_owned(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            reason,
        };
        if self.agent.listen == self.admin.listen {
            return Err(invalid(
                "admin.listen",
                "must differ from `agent.listen`: agents and admins never share a port".into(),
            ));
        }
        for (key, l) in [
            ("agent", (&self.agent.tls_cert, &self.agent.tls_key)),
            ("admin", (&self.admin.tls_cert, &self.admin.tls_key)),
        ] {
            if l.0.is_some() != l.1.is_some() {
                return Err(invalid(
                    &format!("{key}.tls_cert"),
                    "`tls_cert` and `tls_key` must be set together".into(),
                ));
            }
        }
        if let Some(url) = &self.agent.public_url {
            let ok = url.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.authority().is_some()
                    && matches!(u.path(), "" | "/")
                    && u.query().is_none()
            });
            if !ok {
                return Err(invalid(
                    "agent.public_url",
                    format!("`{url}` is not an http(s) URL of a host (and port), without a path"),
                ));
            }
        }
        if let Some(endpoint) = &self.upstream.endpoint {
            custody_proxy::upstream::UpstreamConfig::from_endpoint(endpoint)
                .map_err(|e| invalid("upstream.endpoint", e))?;
        }
        if let Some(endpoint) = &self.broker.endpoint {
            custody_proxy::upstream::UpstreamConfig::from_endpoint(endpoint)
                .map_err(|e| invalid("broker.endpoint", e))?;
        }
        if self.limits.max_admin_connections == 0 {
            return Err(invalid(
                "limits.max_admin_connections",
                "must be at least 1".into(),
            ));
        }
        if self.limits.max_unverified_body_bytes < self.limits.max_buffered_body
            || self.limits.max_unverified_body_bytes > u32::MAX as usize
        {
            return Err(invalid(
                "limits.max_unverified_body_bytes",
                format!(
                    "must be at least `limits.max_buffered_body` ({}) and below 4 GiB",
                    self.limits.max_buffered_body
                ),
            ));
        }
        for (key, rate) in [
            ("limits.rate_per_source", self.limits.rate_per_source),
            ("limits.rate_per_grant", self.limits.rate_per_grant),
        ] {
            if !rate.is_finite() || rate < 0.0 {
                return Err(invalid(
                    key,
                    "must be a number of requests per second, or 0 for no limit".into(),
                ));
            }
        }
        for (key, ms) in [
            ("limits.refusal_window_ms", self.limits.refusal_window_ms),
            (
                "limits.unverified_body_wait_ms",
                self.limits.unverified_body_wait_ms,
            ),
            (
                "limits.header_read_timeout_ms",
                self.limits.header_read_timeout_ms,
            ),
            (
                "limits.body_idle_timeout_ms",
                self.limits.body_idle_timeout_ms,
            ),
        ] {
            if !(100..=3_600_000).contains(&ms) {
                return Err(invalid(key, "must be between 100 and 3600000".into()));
            }
        }
        if self.log.checkpoint_every_entries == 0 {
            return Err(invalid(
                "log.checkpoint_every_entries",
                "must be at least 1".into(),
            ));
        }
        if self.agent.threads.is_some_and(|n| n > MAX_AGENT_THREADS) {
            return Err(invalid(
                "agent.threads",
                format!("must be at most {MAX_AGENT_THREADS}"),
            ));
        }
        if self.log.outcome_max_delay_ms > 60_000 {
            return Err(invalid(
                "log.outcome_max_delay_ms",
                "must be at most 60000 (outcomes would stay unwritten too long)".into(),
            ));
        }
        if self.log.inline_commit_under_us > 1_000 {
            return Err(invalid(
                "log.inline_commit_under_us",
                "must be at most 1000 (an inline commit holds up the other connections on its agent thread for that long)".into(),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, role) in self.roles.iter().enumerate() {
            if !names.insert(role.name.as_str()) {
                return Err(invalid(
                    &format!("roles[{i}].name"),
                    format!("duplicate role `{}`", role.name),
                ));
            }
            if !role.arn.starts_with("arn:") || !role.arn.contains(":role/") {
                return Err(invalid(
                    &format!("roles[{i}].arn"),
                    format!("`{}` is not an IAM role arn", role.arn),
                ));
            }
            if !(900..=43_200).contains(&role.max_ttl_secs) {
                return Err(invalid(
                    &format!("roles[{i}].max_ttl_secs"),
                    format!(
                        "{} is outside what STS accepts (900 to 43200)",
                        role.max_ttl_secs
                    ),
                ));
            }
        }
        let is_sha = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        for (i, agent) in self.agents.iter().enumerate() {
            if !is_sha(&agent.token_sha256) {
                return Err(invalid(
                    &format!("agents[{i}].token_sha256"),
                    "must be 64 hex digits (sha-256 of the token)".into(),
                ));
            }
        }
        for (i, person) in self.people.iter().enumerate() {
            if !is_sha(&person.token_sha256) {
                return Err(invalid(
                    &format!("people[{i}].token_sha256"),
                    "must be 64 hex digits (sha-256 of the token)".into(),
                ));
            }
            if person.name == "admin" || person.name.is_empty() {
                return Err(invalid(
                    &format!("people[{i}].name"),
                    format!("`{}` is reserved or empty", person.name),
                ));
            }
        }
        for (i, role) in self.roles.iter().enumerate() {
            for a in &role.approvers {
                if a != "admin" && !self.people.iter().any(|p| &p.name == a) {
                    return Err(invalid(
                        &format!("roles[{i}].approvers"),
                        format!("`{a}` is not in `[[people]]`"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The log directory.
    pub fn log_dir(&self) -> PathBuf {
        self.log
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("log"))
    }

    /// A role by name.
    pub fn role(&self, name: &str) -> Option<&RoleConfig> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// The checkpoint interval.
    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.log.checkpoint_interval_ms)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = Config::load(None).unwrap();
        assert!(c.agent.listen.ip().is_loopback());
        assert!(c.admin.listen.ip().is_loopback());
        assert_eq!(c.data_dir, PathBuf::from("custody-data"));
    }

    #[test]
    fn unknown_key_names_the_file_and_key() {
        let err = Config::parse("[log]\ncheckpoint_every = 5\n", Path::new("c.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("c.toml") && msg.contains("checkpoint_every"),
            "{msg}"
        );
    }

    #[test]
    fn bad_role_arn_names_the_key() {
        let text = "[[roles]]\nname = \"r\"\narn = \"not-an-arn\"\n";
        let msg = Config::parse(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("roles[0].arn") && msg.contains("not-an-arn"),
            "{msg}"
        );
    }

    #[test]
    fn shared_port_is_refused() {
        let text = "[agent]\nlisten = \"127.0.0.1:9000\"\n[admin]\nlisten = \"127.0.0.1:9000\"\n";
        let msg = Config::parse(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("admin.listen"), "{msg}");
    }

    #[test]
    fn log_tuning_is_read_and_bounded() {
        let c = Config::parse(
            "[log]\noutcome_max_delay_ms = 0\npreallocate_bytes = 0\ninline_commit = false\ninline_commit_under_us = 0\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            (
                c.log.outcome_max_delay_ms,
                c.log.preallocate_bytes,
                c.log.inline_commit,
                c.log.inline_commit_under_us
            ),
            (0, 0, false, 0)
        );
        let d = Config::load(None).unwrap();
        assert_eq!(
            (
                d.log.outcome_max_delay_ms,
                d.log.preallocate_bytes,
                d.log.inline_commit,
                d.log.inline_commit_under_us
            ),
            (5, 1 << 20, true, 50)
        );
        for (toml, key) in [
            ("outcome_max_delay_ms = 600000", "log.outcome_max_delay_ms"),
            (
                "inline_commit_under_us = 5000",
                "log.inline_commit_under_us",
            ),
        ] {
            let msg = Config::parse(&format!("[log]\n{toml}\n"), Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains("c.toml") && msg.contains(key), "{msg}");
        }
    }

    #[test]
    fn the_agent_public_url_must_be_a_host_url() {
        let c = Config::parse(
            "[agent]\npublic_url = \"https://custody.internal:8432\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            c.agent.public_url.as_deref(),
            Some("https://custody.internal:8432")
        );
        for bad in [
            "custody.internal:8432",
            "ftp://x",
            "https://x/path",
            "http://",
        ] {
            let msg = Config::parse(
                &format!("[agent]\npublic_url = \"{bad}\"\n"),
                Path::new("c.toml"),
            )
            .unwrap_err()
            .to_string();
            assert!(msg.contains("agent.public_url"), "{bad}: {msg}");
        }
    }

    #[test]
    fn hostile_client_limits_are_read_and_bounded() {
        let d = Config::load(None).unwrap();
        assert!(d.limits.rate_limits().per_source().is_none());
        assert!(d.limits.rate_limits().per_grant().is_none());
        let c = Config::parse(
            "[limits]\nrate_per_grant = 0.5\nrate_per_source = 200\nburst_per_source = 20\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let r = c.limits.rate_limits();
        assert_eq!(
            r.per_grant().map(|r| (r.per_second, r.burst)),
            Some((0.5, 1.0))
        );
        assert_eq!(
            r.per_source().map(|r| (r.per_second, r.burst)),
            Some((200.0, 20.0))
        );
        for (toml, key) in [
            ("rate_per_source = -1", "limits.rate_per_source"),
            ("rate_per_grant = nan", "limits.rate_per_grant"),
            (
                "max_unverified_body_bytes = 1024",
                "limits.max_unverified_body_bytes",
            ),
            ("refusal_window_ms = 0", "limits.refusal_window_ms"),
        ] {
            let msg = Config::parse(&format!("[limits]\n{toml}\n"), Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains("c.toml") && msg.contains(key), "{msg}");
        }
    }

    #[test]
    fn agent_threads_default_to_one_per_core() {
        let cores = std::thread::available_parallelism().unwrap().get();
        let d = Config::load(None).unwrap();
        assert_eq!((d.agent.threads, d.agent.agent_threads()), (None, cores));
        for (n, want) in [(0, 0), (3, 3)] {
            let c =
                Config::parse(&format!("[agent]\nthreads = {n}\n"), Path::new("c.toml")).unwrap();
            assert_eq!(c.agent.agent_threads(), want);
        }
        let msg = Config::parse("[agent]\nthreads = 257\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("agent.threads") && msg.contains("at most 256"),
            "{msg}"
        );
    }
}
