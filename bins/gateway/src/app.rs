//! The gateway assembled: data directory, keys, grant store, session log, broker, the
//! proxy's request path, the admin API, the expiry sweeper and graceful shutdown.
//!
//! Grant lifecycle changes follow one rule: a change that *gives* power (activation) is
//! logged before the store makes it usable; a change that *takes* power away (revocation,
//! expiry) is made in the store first and logged after. Either way the log never shows a
//! request allowed under a grant it does not show as active.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource};
use custody_broker::{BrokerConfig, RoleBroker, StsBroker};
use custody_grant::{
    ApprovalPolicy, FileGrantStore, Grant, GrantId, GrantRequest, GrantStatus, GrantStore, Limits,
    Scope, Task,
};
use custody_log::{EntryBody, GrantEvent, GrantEventKind, Log, LogConfig};
use custody_proxy::upstream::UpstreamConfig;
use custody_proxy::{ClientAddr, ProxyOptions, Shared};
use http::Request;
use time::OffsetDateTime;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::adapters::{Activations, BrokerSource, LogAdapter, StoreDirectory};
use crate::config::{Config, RoleConfig};
use crate::keys;
use crate::limits::{BodyPace, Gate};
use crate::metrics::Metrics;
use crate::server::{self, RemoteAddr};

/// Errors starting or running the gateway.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A key or token file.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// The grant store.
    #[error("grant store: {0}")]
    Store(#[from] custody_grant::StoreError),
    /// The session log.
    #[error("session log: {0}")]
    Log(#[from] custody_log::LogError),
    /// The broker.
    #[error("broker: {0}")]
    Broker(#[from] custody_broker::BrokerError),
    /// A listener.
    #[error(transparent)]
    Server(#[from] server::ServerError),
    /// Anything else at start-up.
    #[error("{0}")]
    Other(String),
}

/// Who is calling the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator's admin token.
    Admin,
    /// A person from `[[people]]`.
    Person(String),
    /// An agent identity from `[[agents]]`.
    Agent(String),
}

impl Principal {
    /// The name the log records.
    pub fn name(&self) -> &str {
        match self {
            Self::Admin => "admin",
            Self::Person(n) | Self::Agent(n) => n,
        }
    }
}

/// A refused lifecycle operation: HTTP status and message.
#[derive(Debug, Clone)]
pub struct OpError {
    /// HTTP status for the admin API.
    pub status: u16,
    /// Lowercase one-line message.
    pub message: String,
}

impl OpError {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// What a grant request asks for (the admin API's body).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantAsk {
    /// Agent identity (agents may omit it: they ask for themselves).
    pub identity: Option<String>,
    /// Task id.
    pub task_id: String,
    /// One sentence: the authorised intent.
    pub intent: String,
    /// Role name from the config.
    pub role: String,
    /// Lifetime in seconds.
    pub ttl_secs: u64,
    /// The scope as IAM policy JSON.
    pub scope: serde_json::Value,
    /// Regions (default: the role's, else the upstream region).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Request budget.
    #[serde(default)]
    pub request_budget: Option<u64>,
}

/// The running gateway's state, shared by the admin API, the sweeper and the proxy.
pub struct Gateway {
    /// Configuration.
    pub config: Config,
    /// Grants.
    pub store: Arc<dyn GrantStore>,
    /// The session log.
    pub log: Arc<Log>,
    /// The broker.
    pub broker: Arc<dyn RoleBroker>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The clock.
    pub clock: SharedTimeSource,
    /// Activation entry per grant.
    pub activations: Activations,
    /// The admin token.
    admin_token: String,
    /// Serialises lifecycle changes so log order and store order agree.
    lifecycle: tokio::sync::Mutex<()>,
    /// Grants whose credentials were already released.
    released: Mutex<BTreeSet<String>>,
    /// Where `released` is kept.
    released_path: PathBuf,
    /// The agent endpoint URL handed out with credentials.
    pub agent_url: String,
    /// The cap on open agent connections (configured, or derived from the open-files
    /// limit, which start-up raises to its hard limit).
    pub agent_connection_cap: usize,
    /// The memory shared by request bodies whose signature is not yet checked (one
    /// budget for every agent thread).
    unverified_bodies: custody_proxy::budget::BodyBudget,
    /// Unauthenticated refusals past the first few, counted (one tally for every agent
    /// thread); [`crate::refusals`] writes the counts.
    pub refusals: custody_proxy::tally::RefusalTally,
    /// Request rate limits, shared by every agent thread.
    rate_limits: custody_proxy::throttle::RateLimits,
    /// Grant lifecycle changes, watched by agents waiting for a decision.
    pub changes: crate::wait::Changes,
    /// People, agents and roles: reloaded on SIGHUP ([`crate::reload`]).
    pub directory: crate::reload::Live,
    /// Held for the process's life: one gateway per data directory.
    _data_lock: std::fs::File,
}

// === impl Gateway ===

impl Gateway {
    /// Open everything under the config's data directory.
    pub async fn open(config: Config, clock: SharedTimeSource) -> Result<Arc<Self>, AppError> {
        keys::ensure_private_dir(&config.data_dir)?;
        let data_lock = lock_data_dir(&config.data_dir)?;
        let (signing_key, created) = keys::load_or_create_signing_key(&key_path(&config))?;
        let origin = effective_origin(&config);
        let vkey = custody_log::vkey(&origin, &signing_key.verifying_key());
        let vkey_path = config.data_dir.join("log.vkey");
        if created || !vkey_path.exists() {
            std::fs::write(&vkey_path, format!("{vkey}\n"))
                .map_err(|e| AppError::Other(format!("`{}`: {e}", vkey_path.display())))?;
        }
        let admin_token = admin_token(&config)?;
        let store: Arc<dyn GrantStore> =
            Arc::new(FileGrantStore::open(config.data_dir.join("grants.json"))?);

        let log_clock_source = clock.clone();
        let mut log_config = LogConfig::new(config.log_dir(), origin);
        log_config.checkpoint_every_entries = config.log.checkpoint_every_entries;
        log_config.checkpoint_every = Duration::from_millis(config.log.checkpoint_interval_ms);
        log_config.heartbeat_every = Duration::from_millis(config.log.heartbeat_interval_ms);
        log_config.segment_max_bytes = config.log.segment_max_bytes;
        log_config.preallocate_bytes = config.log.preallocate_bytes;
        log_config.deferred_max_delay = Duration::from_millis(config.log.outcome_max_delay_ms);
        log_config.inline_commit = config.log.inline_commit;
        log_config.checkpoint_copy_dir = config.log.checkpoint_copy_dir.clone();
        log_config.clock = Arc::new(move || OffsetDateTime::from(log_clock_source.now()));
        let log = Arc::new(Log::open(log_config, signing_key).map_err(|e| match e {
            custody_log::LogError::Corrupt { .. } => AppError::Other(format!(
                "session log: {e}. Nothing was appended. Keep the directory as evidence; \
                 `custody-gateway serve --new-log \"<what happened>\"` moves it aside and starts a \
                 new log that records where it went and its last signed checkpoint"
            )),
            e => AppError::Log(e),
        })?);

        let broker_config = BrokerConfig {
            endpoint: config
                .broker
                .endpoint
                .clone()
                .or_else(|| config.upstream.endpoint.clone()),
            region: config
                .broker
                .region
                .clone()
                .unwrap_or_else(|| config.upstream.region.clone()),
            refresh_margin: Duration::from_secs(config.broker.refresh_margin_secs),
            ..BrokerConfig::default()
        };
        let broker: Arc<dyn RoleBroker> = if config.broker.danger_sign_with_base_credentials {
            tracing::warn!(
                "broker.danger_sign_with_base_credentials is on: upstream requests are signed with the gateway's own credentials, without a session policy"
            );
            Arc::new(crate::adapters::BaseCredentials::from_env().map_err(AppError::Other)?)
        } else {
            Arc::new(StsBroker::new(broker_config, clock.clone()).await?)
        };

        let activations = rebuild_activations(&config.log_dir(), store.as_ref());
        let released_path = config.data_dir.join("credentials-released");
        let released = read_released(&released_path)?;
        let scheme = if config.agent.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let agent_url = agent_url(&config, scheme);
        let nofile = crate::limits::raise_nofile_limit();
        let agent_connection_cap = match config.limits.max_agent_connections {
            0 => crate::limits::default_agent_connections(nofile),
            n => n,
        };
        tracing::info!(
            open_files = nofile,
            max_agent_connections = agent_connection_cap,
            max_admin_connections = config.limits.max_admin_connections,
            "connection limits"
        );
        if (agent_connection_cap as u64).saturating_mul(2) + crate::limits::RESERVED_DESCRIPTORS
            > nofile
        {
            tracing::warn!(
                open_files = nofile,
                max_agent_connections = agent_connection_cap,
                "limits.max_agent_connections can exhaust the open-files limit (each agent connection may hold an upstream one too)"
            );
        }
        let unverified_bodies = custody_proxy::budget::BodyBudget::new(
            config.limits.max_unverified_body_bytes,
            Duration::from_millis(config.limits.unverified_body_wait_ms),
        );
        let refusals = custody_proxy::tally::RefusalTally::new(
            crate::refusals::settings(&config.limits),
            clock.now(),
        );
        if config.roles.is_empty() {
            tracing::warn!(
                "no [[roles]] configured: every grant request will be refused until one is added to the config (then SIGHUP the gateway, or restart it); see docs/configuration.md"
            );
        }
        let rate_limits = config.limits.rate_limits();
        let directory = crate::reload::Live::new(crate::reload::Directory::of(&config));
        Ok(Arc::new(Self {
            config,
            store,
            log,
            broker,
            metrics: Arc::new(Metrics::new()),
            clock,
            activations: Arc::new(Mutex::new(activations)),
            admin_token,
            lifecycle: tokio::sync::Mutex::new(()),
            released: Mutex::new(released),
            released_path,
            agent_url,
            agent_connection_cap,
            unverified_bodies,
            refusals,
            rate_limits,
            changes: crate::wait::Changes::default(),
            directory,
            _data_lock: data_lock,
        }))
    }

    /// How slowly an agent's request body may arrive.
    pub fn body_pace(&self) -> BodyPace {
        BodyPace {
            idle: Duration::from_millis(self.config.limits.body_idle_timeout_ms),
            min_rate: self.config.limits.min_body_rate,
        }
    }

    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from(self.clock.now())
    }

    /// The proxy's shared state for this gateway.
    pub fn proxy_shared(&self) -> Result<Arc<Shared>, AppError> {
        let upstream = match &self.config.upstream.endpoint {
            Some(e) => UpstreamConfig::from_endpoint(e).map_err(AppError::Other)?,
            None => UpstreamConfig::Aws,
        };
        Ok(Arc::new(Shared {
            grants: Arc::new(StoreDirectory {
                store: self.store.clone(),
                activations: self.activations.clone(),
            }),
            sink: Arc::new(LogAdapter {
                log: self.log.clone(),
                metrics: self.metrics.clone(),
                inline_commit_under: Duration::from_micros(self.config.log.inline_commit_under_us),
            }),
            credentials: Arc::new(BrokerSource::new(self.broker.clone(), self.metrics.clone())),
            clock: self.clock.clone(),
            options: ProxyOptions {
                max_buffered_body: self.config.limits.max_buffered_body,
                unverified_bodies: self.unverified_bodies.clone(),
                refusals: self.refusals.clone(),
                rate_limits: self.rate_limits.clone(),
                observer: {
                    let metrics = self.metrics.clone();
                    custody_proxy::tally::RefusalObserver::new(move |kind, full| {
                        metrics.count_refusal(kind.name(), full);
                    })
                },
                upstream,
                // Queue URLs handed to agents point at the gateway, as their endpoint does.
                public_url: Some(self.agent_url.clone()),
            },
        }))
    }

    /// Who a bearer token belongs to.
    pub fn principal(&self, token: &str) -> Option<Principal> {
        use subtle::ConstantTimeEq;
        if bool::from(token.as_bytes().ct_eq(self.admin_token.as_bytes())) {
            return Some(Principal::Admin);
        }
        let digest = crate::admin::token_sha256(token);
        let same = |h: &str| bool::from(h.to_ascii_lowercase().as_bytes().ct_eq(digest.as_bytes()));
        let directory = self.directory.get();
        if let Some(p) = directory.people.iter().find(|p| same(&p.token_sha256)) {
            return Some(Principal::Person(p.name.clone()));
        }
        directory
            .agents
            .iter()
            .find(|a| same(&a.token_sha256))
            .map(|a| Principal::Agent(a.identity.clone()))
    }

    fn role(&self, name: &str) -> Result<RoleConfig, OpError> {
        let directory = self.directory.get();
        directory.role(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = directory.roles.iter().map(|r| r.name.as_str()).collect();
            OpError::new(
                400,
                format!("unknown role `{name}` (configured: {})", known.join(", ")),
            )
        })
    }

    fn append(&self, kind: GrantEventKind, grant: &Grant, by: &str) -> Result<u64, OpError> {
        let body = EntryBody::Grant(GrantEvent {
            event: kind,
            grant_id: grant.id.as_str().to_owned(),
            identity: grant.identity.clone(),
            task_id: grant.task.id.clone(),
            by: by.to_owned(),
            grant: Some(grant.clone()),
        });
        self.log.append(body).map(|a| a.seq).map_err(|e| {
            OpError::new(
                503,
                format!("cannot record the change in the session log, so it was not made: {e}"),
            )
        })
    }

    fn note_activation(&self, grant: &Grant, seq: u64) {
        self.activations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(grant.id.as_str().to_owned(), seq);
    }

    /// Request a grant.
    pub async fn request_grant(&self, who: &Principal, ask: GrantAsk) -> Result<Grant, OpError> {
        let identity = match (who, &ask.identity) {
            (Principal::Agent(me), Some(asked)) if asked != me => {
                return Err(OpError::new(
                    403,
                    format!("agent `{me}` may only request grants for itself, not `{asked}`"),
                ));
            }
            (Principal::Agent(me), _) => me.clone(),
            (_, Some(identity)) => identity.clone(),
            (_, None) => return Err(OpError::new(400, "`identity` is required")),
        };
        let role = self.role(&ask.role)?;
        let scope = Scope::from_iam_json(&ask.scope.to_string())
            .map_err(|e| OpError::new(400, format!("scope: {e}")))?;
        // Every action pattern must name something AWS has: a typo would allow (or deny)
        // nothing without anyone noticing.
        if let Some(why) = scope
            .statements()
            .iter()
            .filter_map(|s| s.action_patterns())
            .flatten()
            .find_map(custody_grant::iam::unknown_pattern)
        {
            return Err(OpError::new(400, format!("scope: {why}")));
        }
        let mut auto = role.auto_approve_read_only_ttl_secs > 0
            && ask.ttl_secs <= role.auto_approve_read_only_ttl_secs;
        if auto
            && let Some(why) =
                crate::policy::auto_approval_refusal(&scope, &self.config.approval.sensitive_reads)
        {
            tracing::info!(role = %role.name, reason = %why, "not approved by the read-only rule: {why}");
            auto = false;
        }
        let approvers = if role.approvers.is_empty() {
            let mut all: Vec<String> = self
                .directory
                .get()
                .people
                .iter()
                .map(|p| p.name.clone())
                .collect();
            all.push("admin".into());
            all
        } else {
            role.approvers.clone()
        };
        let regions = if !ask.regions.is_empty() {
            ask.regions.clone()
        } else if !role.regions.is_empty() {
            role.regions.clone()
        } else {
            vec![self.config.upstream.region.clone()]
        };
        if let Some(r) = regions
            .iter()
            .find(|r| !role.regions.is_empty() && !role.regions.contains(r))
        {
            return Err(OpError::new(
                400,
                format!("region `{r}` is not allowed for role `{}`", role.name),
            ));
        }
        let request = GrantRequest {
            identity,
            task: Task {
                id: ask.task_id,
                intent: ask.intent,
            },
            requester: who.name().to_owned(),
            role_arn: role.arn.clone(),
            regions,
            scope,
            not_before: None,
            ttl: time::Duration::seconds(i64::try_from(ask.ttl_secs).unwrap_or(i64::MAX)),
            approval_policy: ApprovalPolicy {
                required: if auto { 0 } else { role.approvals_required },
                approvers,
            },
            request_budget: ask.request_budget,
        };
        let limits = Limits {
            default_max_ttl: time::Duration::seconds(
                i64::try_from(role.max_ttl_secs).unwrap_or(i64::MAX),
            ),
            max_ttl_by_role: Default::default(),
        };
        let _guard = self.lifecycle.lock().await;
        let issued = Grant::issue(request, &limits, self.now())
            .map_err(|e| OpError::new(400, e.to_string()))?;
        let grant = issued.grant;
        self.append(GrantEventKind::Requested, &grant, who.name())?;
        if grant.status == GrantStatus::Active {
            let rule = if auto {
                format!(
                    "rule:auto-approve-read-only-ttl<={}s",
                    role.auto_approve_read_only_ttl_secs
                )
            } else {
                format!("rule:role-{}-needs-no-approval", role.name)
            };
            self.append(GrantEventKind::Approved, &grant, &rule)?;
            let seq = self.append(GrantEventKind::Activated, &grant, &rule)?;
            self.note_activation(&grant, seq);
        }
        match self.store.create(grant.clone(), issued.secret) {
            Ok(g) => {
                self.changes.bump();
                Ok((*g).clone())
            }
            Err(e) => {
                // Logged as requested (maybe active) but not stored: close it in the log.
                let _ = self.append(
                    GrantEventKind::Revoked,
                    &grant,
                    "gateway:store-write-failed",
                );
                Err(OpError::new(503, format!("cannot store the grant: {e}")))
            }
        }
    }

    /// Approve (`approve = true`) or deny a pending grant.
    pub async fn decide_grant(
        &self,
        who: &Principal,
        id: &str,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<Grant, OpError> {
        if matches!(who, Principal::Agent(_)) {
            return Err(OpError::new(403, "agents cannot approve or deny grants"));
        }
        let id = parse_id(id)?;
        let _guard = self.lifecycle.lock().await;
        let current = self.get_grant(&id)?;
        let now = self.now();
        let next = if approve {
            current.approve(who.name(), now)
        } else {
            current.deny(who.name(), now).map(|g| g.with_reason(reason))
        }
        .map_err(|e| OpError::new(409, e.to_string()))?;
        if approve {
            self.append(GrantEventKind::Approved, &next, who.name())?;
            if next.status == GrantStatus::Active {
                let seq = self.append(GrantEventKind::Activated, &next, who.name())?;
                self.note_activation(&next, seq);
            }
        } else {
            self.append(GrantEventKind::Denied, &next, who.name())?;
        }
        let stored = self
            .store
            .compare_and_swap(&current, next)
            .map(|g| (*g).clone())
            .map_err(|e| OpError::new(409, e.to_string()));
        self.changes.bump();
        stored
    }

    /// Revoke a grant; the next request under it is denied.
    pub async fn revoke_grant(
        &self,
        who: &Principal,
        id: &str,
        reason: Option<&str>,
    ) -> Result<Grant, OpError> {
        let id = parse_id(id)?;
        let _guard = self.lifecycle.lock().await;
        let current = self.get_grant(&id)?;
        if let Principal::Agent(me) = who
            && &current.identity != me
        {
            return Err(OpError::new(404, format!("no grant `{}`", id.as_str())));
        }
        let now = self.now();
        let next = self
            .store
            .update(&id, &mut |g| {
                g.revoke(who.name(), now).map(|n| n.with_reason(reason))
            })
            .map_err(|e| OpError::new(409, e.to_string()))?;
        // Power removed first; now the record and the credential cache.
        self.broker.revoke(id.as_str());
        if let Err(e) = self.append(GrantEventKind::Revoked, &next, who.name()) {
            tracing::error!(grant = id.as_str(), error = %e.message, "revoked, but the revocation is not in the log");
        }
        self.changes.bump();
        Ok((*next).clone())
    }

    /// Expire every grant past its lifetime; log each.
    pub async fn sweep_expired(&self) {
        let _guard = self.lifecycle.lock().await;
        let expired = match self.store.expire_due(self.now()) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "expiry sweep failed");
                return;
            }
        };
        for id in expired {
            self.broker.revoke(id.as_str());
            if let Ok(Some(g)) = self.store.get(&id)
                && let Err(e) = self.append(GrantEventKind::Expired, &g, "gateway:expiry-sweep")
            {
                tracing::error!(grant = id.as_str(), error = %e.message, "expired, but not in the log");
            }
        }
        self.changes.bump();
    }

    /// A grant, visible to `who`.
    pub fn show_grant(&self, who: &Principal, id: &str) -> Result<Grant, OpError> {
        let id = parse_id(id)?;
        let grant = self.get_grant(&id)?;
        if let Principal::Agent(me) = who
            && &grant.identity != me
        {
            return Err(OpError::new(404, format!("no grant `{}`", id.as_str())));
        }
        Ok(grant)
    }

    /// Grants visible to `who`, filtered.
    pub fn list_grants(
        &self,
        who: &Principal,
        identity: Option<String>,
        status: Option<GrantStatus>,
    ) -> Result<Vec<Grant>, OpError> {
        let identity = match who {
            Principal::Agent(me) => {
                if identity.as_ref().is_some_and(|i| i != me) {
                    return Err(OpError::new(
                        403,
                        format!("agent `{me}` may only list its own grants"),
                    ));
                }
                Some(me.clone())
            }
            _ => identity,
        };
        let filter = custody_grant::GrantFilter {
            status,
            identity,
            ..Default::default()
        };
        self.store
            .list(&filter)
            .map(|v| v.into_iter().map(|g| (*g).clone()).collect())
            .map_err(|e| OpError::new(500, e.to_string()))
    }

    /// Release a grant's agent credentials, once.
    pub async fn release_credentials(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<serde_json::Value, OpError> {
        let grant = self.show_grant(who, id)?;
        if matches!(
            grant.status,
            GrantStatus::Denied | GrantStatus::Revoked | GrantStatus::Expired
        ) {
            return Err(OpError::new(
                409,
                format!("grant `{id}` is {}", grant.status.as_str()),
            ));
        }
        let _guard = self.lifecycle.lock().await;
        {
            let released = self.released.lock().unwrap_or_else(PoisonError::into_inner);
            if released.contains(grant.id.as_str()) {
                return Err(OpError::new(
                    410,
                    format!(
                        "the credentials of grant `{id}` were already released; they are shown once (request a new grant)"
                    ),
                ));
            }
        }
        let (_, secret) = self
            .store
            .get_by_access_key(&grant.access_key_id)
            .map_err(|e| OpError::new(500, e.to_string()))?
            .ok_or_else(|| OpError::new(404, format!("no credentials for grant `{id}`")))?;
        // Persist "released" before showing the secret: a crash in between loses the
        // secret, never releases it twice.
        let mut set = self
            .released
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        set.insert(grant.id.as_str().to_owned());
        write_released(&self.released_path, &set).map_err(|e| OpError::new(503, e.to_string()))?;
        *self.released.lock().unwrap_or_else(PoisonError::into_inner) = set;
        let expiration = grant
            .expires_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Ok(serde_json::json!({
            "grant_id": grant.id.as_str(),
            "access_key_id": grant.access_key_id.as_str(),
            "secret_access_key": secret.expose_secret(),
            "expiration": expiration,
            "endpoint": self.agent_url,
            "region": grant.regions.first().cloned().unwrap_or_else(|| self.config.upstream.region.clone()),
        }))
    }

    /// Whether the grant's credentials were released.
    pub fn credentials_released(&self, id: &str) -> bool {
        self.released
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }

    fn get_grant(&self, id: &GrantId) -> Result<Grant, OpError> {
        self.store
            .get(id)
            .map_err(|e| OpError::new(500, e.to_string()))?
            .map(|g| (*g).clone())
            .ok_or_else(|| OpError::new(404, format!("no grant `{}`", id.as_str())))
    }
}

/// After a restart: the activation entry of every active grant, read back from the log, so
/// request decisions keep naming the event that authorised them. Reads the segments once
/// (only when some grant is active); unreadable entries are skipped, the verifier reports
/// them.
fn rebuild_activations(log_dir: &Path, store: &dyn GrantStore) -> HashMap<String, u64> {
    let mut map = HashMap::new();
    let filter = custody_grant::GrantFilter {
        status: Some(GrantStatus::Active),
        ..Default::default()
    };
    let active: BTreeSet<String> = match store.list(&filter) {
        Ok(list) => list.iter().map(|g| g.id.as_str().to_owned()).collect(),
        Err(_) => return map,
    };
    if active.is_empty() {
        return map;
    }
    let Ok(files) = custody_log::verify::read_dir(log_dir) else {
        return map;
    };
    for (_, data) in &files.segments {
        for line in custody_log::storage::split_lines(data).0 {
            let Ok(entry) = custody_log::Entry::decode(line) else {
                continue;
            };
            if let EntryBody::Grant(ev) = &entry.body
                && ev.event == GrantEventKind::Activated
                && active.contains(&ev.grant_id)
            {
                map.insert(ev.grant_id.clone(), entry.seq);
            }
        }
    }
    map
}

/// Take the data directory's lock, so a second gateway on the same grant store and log
/// (which would corrupt both) refuses to start instead. Released when the process exits,
/// however it exits.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, AppError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("gateway.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| AppError::Other(format!("`{}`: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(AppError::Other(format!(
                "data directory `{}` is in use by another custody-gateway (pid {}); one gateway per data directory",
                dir.display(),
                holder.trim()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(AppError::Other(format!(
                "cannot lock `{}`: {e}",
                path.display()
            )));
        }
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(file)
}

fn parse_id(id: &str) -> Result<GrantId, OpError> {
    GrantId::parse(id).map_err(|e| OpError::new(400, format!("grant id `{id}`: {e}")))
}

fn key_path(config: &Config) -> PathBuf {
    config.data_dir.join("log.key")
}

fn default_origin() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_else(|| "localhost".into());
    format!("custody.local/{host}")
}

fn read_released(path: &Path) -> Result<BTreeSet<String>, AppError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(AppError::Other(format!("`{}`: {e}", path.display()))),
    }
}

fn write_released(path: &Path, set: &BTreeSet<String>) -> Result<(), keys::KeyError> {
    let mut text = String::new();
    for id in set {
        text.push_str(id);
        text.push('\n');
    }
    keys::write_secret(path, text.as_bytes())
}

/// The admin token: config, environment, file, or generated into `<data_dir>/admin.token`.
pub fn admin_token(config: &Config) -> Result<String, AppError> {
    if let Some(t) = &config.admin.token {
        return Ok(t.clone());
    }
    if let Some(var) = &config.admin.token_env {
        return std::env::var(var).map_err(|_| {
            AppError::Other(format!(
                "config key `admin.token_env`: environment variable `{var}` is not set"
            ))
        });
    }
    if let Some(path) = &config.admin.token_file {
        return Ok(keys::read_secret(path)?);
    }
    keys::ensure_private_dir(&config.data_dir)?;
    Ok(keys::load_or_create_token(
        &config.data_dir.join("admin.token"),
    )?)
}

/// `keygen`: create the log key if missing and return its verifier key.
pub fn keygen(config: &Config) -> Result<String, AppError> {
    keys::ensure_private_dir(&config.data_dir)?;
    let (key, _) = keys::load_or_create_signing_key(&key_path(config))?;
    let origin = effective_origin(config);
    let vkey = custody_log::vkey(&origin, &key.verifying_key());
    let path = config.data_dir.join("log.vkey");
    std::fs::write(&path, format!("{vkey}\n"))
        .map_err(|e| AppError::Other(format!("`{}`: {e}", path.display())))?;
    Ok(vkey)
}

/// The endpoint agents are given: `agent.public_url`, else the listen address, with an
/// all-interfaces address (`0.0.0.0`, `::`) replaced by loopback (a client cannot connect
/// to `0.0.0.0`) and a warning that remote agents need `public_url`.
fn agent_url(config: &Config, scheme: &str) -> String {
    if let Some(url) = &config.agent.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let mut listen = config.agent.listen;
    if listen.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if listen.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        tracing::warn!(
            listen = %config.agent.listen,
            "agent.listen is on all interfaces: agents are given {} as their endpoint; set agent.public_url to the address remote agents use",
            std::net::SocketAddr::new(loopback, listen.port())
        );
        listen.set_ip(loopback);
    }
    format!("{scheme}://{listen}")
}

/// The log's origin: the one a `--new-log` start recorded in `<data_dir>/log.origin`, else
/// `log.origin` from the config, else one made from the host name.
pub fn effective_origin(config: &Config) -> String {
    std::fs::read_to_string(config.data_dir.join(crate::newlog::ORIGIN_FILE))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| base_origin(config))
}

/// The origin the config names (or the host-name default), before any `--new-log`.
pub fn base_origin(config: &Config) -> String {
    config.log.origin.clone().unwrap_or_else(default_origin)
}

/// Run the gateway until SIGTERM or SIGINT; with `new_log`, first set the current log
/// aside and start a new one that records why ([`crate::newlog`]).
pub async fn run(config: Config, new_log: Option<String>) -> Result<(), AppError> {
    // Before anything listens: a SIGTERM that arrives as the listeners come up must stop
    // the gateway cleanly (final checkpoint, stop entry), not kill it.
    let signals = wait_for_signal();
    // Likewise SIGHUP, whose default would end the process: from here it reloads.
    let hup = crate::reload::listen();
    let clock = SharedTimeSource::new(SystemTimeSource::new());
    let replaced = match &new_log {
        Some(reason) => crate::newlog::set_aside(&config, reason, clock.now())?,
        None => None,
    };
    let gateway = Gateway::open(config, clock).await?;
    if let Some(entry) = replaced {
        gateway
            .log
            .append(entry)
            .map_err(|e| AppError::Other(format!("cannot record the replaced log: {e}")))?;
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let reloads = tokio::spawn(crate::reload::on_sighup(
        gateway.clone(),
        shutdown_rx.clone(),
        hup,
    ));
    let handles = start(gateway.clone(), shutdown_rx).await?;
    let admin_url = format!(
        "{}://{}",
        if gateway.config.admin.tls_cert.is_some() {
            "https"
        } else {
            "http"
        },
        handles.admin_addr
    );
    let vkey = gateway.config.data_dir.join("log.vkey");
    if crate::json_logs() {
        // Every line JSON: the banner is a log event like the rest.
        tracing::info!(
            agents = %gateway.agent_url,
            admin = %admin_url,
            admin_token = %token_hint(&gateway.config),
            log_key = %vkey.display(),
            "custody-gateway serving"
        );
    } else {
        eprintln!(
            "custody-gateway: agents → {}  admin → {admin_url}  admin token: {}  log key: {}",
            gateway.agent_url,
            token_hint(&gateway.config),
            vkey.display(),
        );
    }
    signals.await;
    tracing::info!("shutting down: draining connections");
    let _ = shutdown_tx.send(true);
    handles.join().await;
    let _ = reloads.await;
    // Every refusal is an entry or in a count, also those of the last window.
    crate::refusals::write_counts(&gateway, &gateway.refusals, true).await;
    gateway.log.close()?;
    tracing::info!("stopped: final checkpoint written");
    Ok(())
}

fn token_hint(config: &Config) -> String {
    if config.admin.token.is_some() {
        "from config".into()
    } else if let Some(v) = &config.admin.token_env {
        format!("${v}")
    } else if let Some(p) = &config.admin.token_file {
        p.display().to_string()
    } else {
        config.data_dir.join("admin.token").display().to_string()
    }
}

/// The running listeners and background tasks.
pub struct Handles {
    /// Where the agent listener is bound.
    pub agent_addr: std::net::SocketAddr,
    /// Where the admin listener is bound.
    pub admin_addr: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The agent threads (`[agent] threads`), each running its own runtime.
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Handles {
    /// Wait for every listener to drain and every task and agent thread to stop.
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        for t in self.threads {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Bind the listeners and start serving; stops when `shutdown` turns true.
pub async fn start(
    gateway: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
) -> Result<Handles, AppError> {
    let config = &gateway.config;
    let agent_tls = match (&config.agent.tls_cert, &config.agent.tls_key) {
        (Some(c), Some(k)) => Some(server::tls_acceptor(c, k)?),
        _ => None,
    };
    let admin_tls = match (&config.admin.tls_cert, &config.admin.tls_key) {
        (Some(c), Some(k)) => Some(server::tls_acceptor(c, k)?),
        _ => None,
    };
    let agent_listener = server::bind(config.agent.listen)?;
    let admin_listener = server::bind(config.admin.listen)?;
    let agent_addr = agent_listener
        .local_addr()
        .map_err(|e| AppError::Other(e.to_string()))?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|e| AppError::Other(e.to_string()))?;

    let admin_gateway = gateway.clone();
    let admin_handler = move |req: Request<hyper::body::Incoming>, _remote: RemoteAddr| {
        let gateway = admin_gateway.clone();
        async move { crate::admin::handle(gateway, req).await }
    };
    let drain = Duration::from_secs(10);
    let header_timeout = Duration::from_millis(config.limits.header_read_timeout_ms);
    let admin_limits = server::ConnectionLimits {
        gate: Gate::new(
            config.limits.max_admin_connections,
            "admin",
            gateway.metrics.connection_limit_waits_admin.clone(),
        ),
        header_timeout,
    };
    let agent_gate = Gate::new(
        gateway.agent_connection_cap,
        "agent",
        gateway.metrics.connection_limit_waits_agent.clone(),
    );
    let mut tasks = vec![tokio::spawn(server::serve(
        admin_listener,
        admin_tls,
        admin_handler,
        shutdown.clone(),
        drain,
        admin_limits,
    ))];
    let mut threads = Vec::new();
    let n_threads = config.agent.agent_threads();
    if n_threads == 0 {
        tasks.push(tokio::spawn(server::serve(
            agent_listener,
            agent_tls,
            make_agent_handler(gateway.proxy_shared()?, gateway.body_pace()),
            shutdown.clone(),
            drain,
            server::ConnectionLimits {
                gate: agent_gate,
                header_timeout,
            },
        )));
    } else {
        let mut lanes = Vec::with_capacity(n_threads);
        for i in 0..n_threads {
            let open = gateway
                .metrics
                .agent_connections
                .get_or_create(&crate::metrics::ThreadLabels {
                    thread: i.to_string(),
                })
                .clone();
            let (lane, receiver) = server::lane(open);
            lanes.push(lane);
            // Each its own request path, so each its own upstream connection pool, on a
            // single-threaded runtime of its own; built here, so that a failure stops
            // the start instead of a thread.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| AppError::Other(format!("cannot start an agent runtime: {e}")))?;
            let serve = server::serve_lane(
                receiver,
                agent_tls.clone(),
                make_agent_handler(gateway.proxy_shared()?, gateway.body_pace()),
                shutdown.clone(),
                drain,
                header_timeout,
            );
            let thread = std::thread::Builder::new()
                .name(format!("custody-agent-{i}"))
                .spawn(move || runtime.block_on(serve))
                .map_err(|e| AppError::Other(format!("cannot start an agent thread: {e}")))?;
            threads.push(thread);
        }
        tasks.push(tokio::spawn(server::dispatch(
            agent_listener,
            lanes,
            shutdown.clone(),
            agent_gate,
        )));
    }
    let sweeper = gateway.clone();
    let shutdown_for_counts = shutdown.clone();
    let mut stop = shutdown;
    let every = Duration::from_millis(gateway.config.limits.expiry_sweep_ms.max(50));
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => sweeper.sweep_expired().await,
                _ = stop.changed() => break,
            }
        }
    }));
    let counter = gateway.clone();
    let mut stop = shutdown_for_counts;
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    crate::refusals::write_counts(&counter, &counter.refusals, false).await;
                }
                _ = stop.changed() => break,
            }
        }
    }));
    Ok(Handles {
        agent_addr,
        admin_addr,
        tasks,
        threads,
    })
}

/// What the agent handler returns (boxed: a closure's future cannot be named).
type AgentFuture =
    custody_proxy::BoxFuture<'static, http::Response<custody_proxy::body::ProxyBody>>;

/// The agent listener's handler: HTTP/2 refused, everything else through the request path.
fn make_agent_handler(
    proxy: Arc<Shared>,
    pace: BodyPace,
) -> impl Fn(Request<hyper::body::Incoming>, RemoteAddr) -> AgentFuture + Clone + Send + Sync + 'static
{
    let service = custody_proxy::request_path(proxy.clone());
    move |req: Request<hyper::body::Incoming>, remote: RemoteAddr| {
        let service = service.clone();
        let proxy = proxy.clone();
        Box::pin(async move {
            if req.version() == http::Version::HTTP_2 {
                // Refused, and recorded like every other refusal.
                let ctx = custody_proxy::context::RequestCtx::new(remote.0, proxy.clock.now());
                let refusal = custody_proxy::Refusal::new(
                    custody_proxy::RefusalKind::NotImplemented,
                    "http/2 (and its bidirectional event streams) is not supported by this gateway; use http/1.1",
                );
                return custody_proxy::record::refuse(&proxy, ctx, refusal).await;
            }
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ClientAddr(remote.0));
            let body = crate::limits::SlowBody::new(body, pace);
            let req = Request::from_parts(parts, custody_proxy::body::ProxyBody::new(body));
            match service.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        })
    }
}

/// SIGTERM or SIGINT. The SIGTERM handler is installed when this is called (not when
/// the future is first polled), so the caller can install it before it starts serving.
fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = ctrl_c.await;
    }
}
