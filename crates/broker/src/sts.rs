//! [`StsBroker`]: [`RoleBroker`] on `aws-sdk-sts` AssumeRole.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_sdk_sts::operation::assume_role::AssumeRoleOutput;
use aws_sdk_sts::types::Tag;
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_http_client::tls;

use crate::cache::{Cache, Cached, Fingerprint};
use crate::classify::{Failure, classify};
use crate::{
    BrokerError, CredentialsFuture, GRANT_TAG_KEY, GrantCredentialsRequest, RoleBroker,
    TASK_TAG_KEY, sanitize,
};

/// Shortest session STS issues (`DurationSeconds` minimum).
pub const MIN_SESSION_SECS: u32 = 900;
/// Longest session STS issues for any role (`DurationSeconds` maximum).
pub const MAX_SESSION_SECS: u32 = 43_200;
/// Every role accepts sessions this long: the smallest `MaxSessionDuration` IAM allows.
const SAFE_SESSION_SECS: u32 = 3_600;
/// After a failed refresh ahead of expiry, serve the current credentials this long before
/// asking STS again (the bounded retries already happened inside the failed refresh).
const REFRESH_RETRY_AFTER: Duration = Duration::from_secs(10);
/// Longest session policy STS accepts, in characters (plain text, before packing).
pub const MAX_POLICY_CHARS: usize = 2_048;
/// Credentials this close to their STS expiry are not handed out: the signed request
/// still has to reach AWS.
const MIN_VALIDITY: Duration = Duration::from_secs(15);

/// How the broker reaches STS and how it caches and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// STS endpoint override: an AWS-compatible server, a VPC endpoint. `None` means the
    /// SDK's regional STS endpoint.
    pub endpoint: Option<String>,
    /// The region STS calls are signed for.
    pub region: String,
    /// Fetch new credentials this long before the current ones expire (capped at half
    /// their lifetime, so short sessions are not refreshed on every request).
    pub refresh_margin: Duration,
    /// Retries after a throttled or failed AssumeRole (so at most `max_retries + 1` calls).
    pub max_retries: u32,
    /// First retry delay; doubles per retry, with jitter (half fixed, half random).
    pub retry_base_delay: Duration,
    /// Upper bound of one retry delay.
    pub retry_max_delay: Duration,
    /// TCP connect timeout to STS.
    pub connect_timeout: Duration,
    /// Timeout of one AssumeRole attempt.
    pub attempt_timeout: Duration,
    /// Longest session to ask for before a role's own maximum is learned (clamped to
    /// 900 s–12 h). A role that allows less is asked again with 1 h, and remembered.
    pub max_session_duration: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".into(),
            refresh_margin: Duration::from_secs(300),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(10),
            max_session_duration: Duration::from_secs(u64::from(MAX_SESSION_SECS)),
        }
    }
}

/// A [`RoleBroker`] calling STS AssumeRole with base credentials of the gateway's own
/// principal.
pub struct StsBroker {
    client: aws_sdk_sts::Client,
    config: BrokerConfig,
    time: SharedTimeSource,
    cache: Cache,
    /// Roles that refused the session length we asked for: the length to ask for instead.
    role_max: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for StsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsBroker")
            .field("config", &self.config)
            .field("grants_cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

// === impl StsBroker ===

impl StsBroker {
    /// A broker whose base credentials come from the standard AWS chain (environment,
    /// profile, web identity, ECS, instance metadata).
    pub async fn new(config: BrokerConfig, time: SharedTimeSource) -> Result<Self, BrokerError> {
        Self::build(config, time, None).await
    }

    /// A broker with explicit base credentials (the gateway principal's key pair).
    pub async fn with_credentials(
        config: BrokerConfig,
        base: Credentials,
        time: SharedTimeSource,
    ) -> Result<Self, BrokerError> {
        Self::build(config, time, Some(base)).await
    }

    /// A broker on an STS client you built yourself (custom interceptors, HTTP client).
    /// `config.endpoint`, `region`, `connect_timeout` and `attempt_timeout` are not applied
    /// to it; the client's own retries should be off, since the broker retries itself.
    pub fn from_client(
        client: aws_sdk_sts::Client,
        config: BrokerConfig,
        time: SharedTimeSource,
    ) -> Self {
        Self {
            client,
            config,
            time,
            cache: Cache::default(),
            role_max: Mutex::new(HashMap::new()),
        }
    }

    async fn build(
        config: BrokerConfig,
        time: SharedTimeSource,
        base: Option<Credentials>,
    ) -> Result<Self, BrokerError> {
        // Default HTTPS client features are off in the workspace: choose rustls + ring here.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .http_client(http)
            .time_source(time.clone())
            // The broker retries itself, bounded, with jitter, and knows what is retryable.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(config.connect_timeout)
                    .operation_attempt_timeout(config.attempt_timeout)
                    .build(),
            );
        if let Some(base) = base {
            loader = loader.credentials_provider(base);
        }
        let sdk = loader.load().await;
        if sdk.credentials_provider().is_none() {
            return Err(BrokerError::Config(
                "no base credentials for the gateway principal".into(),
            ));
        }
        let mut sts = aws_sdk_sts::config::Builder::from(&sdk);
        if let Some(endpoint) = &config.endpoint {
            sts = sts.endpoint_url(endpoint.clone());
        }
        Ok(Self::from_client(
            aws_sdk_sts::Client::from_conf(sts.build()),
            config,
            time,
        ))
    }

    /// The broker's configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    async fn get(&self, req: &GrantCredentialsRequest) -> Result<Credentials, BrokerError> {
        let now = self.time.now();
        if now >= req.expires_at {
            return Err(BrokerError::GrantExpired {
                grant_id: req.grant_id.clone(),
            });
        }
        let slot = self.cache.slot(req, now)?;

        // Fast path: fresh credentials, or usable ones while another request refreshes.
        let mut held = None;
        if let Some(cached) = slot.current(&req.grant_id)?
            && cached.usable_for(req, now, MIN_VALIDITY)
        {
            if now < cached.refresh_at {
                return Ok(cached.serve(req));
            }
            match slot.flight.try_lock() {
                Ok(guard) => held = Some(guard),
                Err(_) => return Ok(cached.serve(req)),
            }
        }

        let _flight = match held {
            Some(guard) => guard,
            None => slot.flight.lock().await,
        };
        // Whoever held the lock before us may have refreshed already.
        let now = self.time.now();
        let previous = slot.current(&req.grant_id)?;
        if let Some(cached) = &previous
            && cached.usable_for(req, now, MIN_VALIDITY)
            && now < cached.refresh_at
        {
            return Ok(cached.serve(req));
        }
        match self.assume(req, now).await {
            Ok(cached) => {
                let creds = cached.serve(req);
                slot.store(&req.grant_id, cached)?;
                Ok(creds)
            }
            Err(err) => {
                // A failed refresh ahead of expiry is not yet an outage for this grant.
                let now = self.time.now();
                if let Some(cached) = previous.filter(|c| c.usable_for(req, now, MIN_VALIDITY)) {
                    tracing::warn!(grant = %req.grant_id, error = %err, "credential refresh failed; serving current credentials until they expire");
                    slot.current(&req.grant_id)?;
                    slot.postpone_refresh(now + REFRESH_RETRY_AFTER);
                    return Ok(cached.serve(req));
                }
                Err(err)
            }
        }
    }

    /// The `DurationSeconds` to ask for: the grant's remaining lifetime, clamped.
    fn duration_for(&self, req: &GrantCredentialsRequest, now: SystemTime) -> u32 {
        let remaining = req.expires_at.duration_since(now).unwrap_or_default();
        let remaining = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
        let configured = u32::try_from(self.config.max_session_duration.as_secs())
            .unwrap_or(MAX_SESSION_SECS)
            .clamp(MIN_SESSION_SECS, MAX_SESSION_SECS);
        let cap = self
            .role_max
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&req.role_arn)
            .copied()
            .unwrap_or(configured)
            .min(configured);
        u32::try_from(remaining)
            .unwrap_or(u32::MAX)
            .clamp(MIN_SESSION_SECS, cap.max(MIN_SESSION_SECS))
    }

    async fn assume(
        &self,
        req: &GrantCredentialsRequest,
        now: SystemTime,
    ) -> Result<Cached, BrokerError> {
        if let Some(policy) = &req.session_policy {
            let size = policy.chars().count();
            if size > MAX_POLICY_CHARS {
                return Err(BrokerError::PolicyTooLarge {
                    grant_id: req.grant_id.clone(),
                    size,
                });
            }
        }
        let tags = [
            (TASK_TAG_KEY, sanitize::tag_value(&req.task_id)),
            (GRANT_TAG_KEY, sanitize::tag_value(&req.grant_id)),
        ]
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| BrokerError::InvalidRequest {
                    grant_id: req.grant_id.clone(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
        let session_name = sanitize::session_name(&req.grant_id);
        let source_identity = sanitize::source_identity(&req.source_identity);

        let mut duration = self.duration_for(req, now);
        let mut attempts = 0u32;
        let mut retries = 0u32;
        loop {
            attempts += 1;
            let result = self
                .client
                .assume_role()
                .role_arn(&req.role_arn)
                .role_session_name(&session_name)
                .set_policy(req.session_policy.clone())
                .source_identity(&source_identity)
                .set_tags(Some(tags.clone()))
                .duration_seconds(i32::try_from(duration).unwrap_or(i32::MAX))
                .send()
                .await;
            let failure = match result {
                Ok(out) => return self.cached_from(req, out),
                Err(err) => classify(req, &self.endpoint(), attempts, err),
            };
            match failure {
                Failure::DurationTooLong if duration > SAFE_SESSION_SECS => {
                    tracing::info!(role = %req.role_arn, asked = duration, "role refuses this session length; asking for 1 h and remembering");
                    self.role_max
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(req.role_arn.clone(), SAFE_SESSION_SECS);
                    duration = SAFE_SESSION_SECS;
                }
                Failure::DurationTooLong => {
                    return Err(BrokerError::Rejected {
                        role: req.role_arn.clone(),
                        code: "ValidationError".into(),
                        message: format!("role refuses a {duration} s session"),
                    });
                }
                Failure::Transient(err) if retries < self.config.max_retries => {
                    retries += 1;
                    let delay = self.backoff(retries);
                    tracing::warn!(grant = %req.grant_id, attempt = attempts, error = %err, delay_ms = delay.as_millis(), "assume-role failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Failure::Transient(err) | Failure::Final(err) => return Err(err),
            }
        }
    }

    /// Delay before retry `n` (1-based): half of `base * 2^(n-1)` (capped) fixed, the other
    /// half random, so concurrent brokers spread out but still back off.
    fn backoff(&self, n: u32) -> Duration {
        let exp = self
            .config
            .retry_base_delay
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(self.config.retry_max_delay);
        let half = exp / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::random_range(0..=jitter_ms))
    }

    fn cached_from(
        &self,
        req: &GrantCredentialsRequest,
        out: AssumeRoleOutput,
    ) -> Result<Cached, BrokerError> {
        let issued = self.time.now();
        let Some(c) = out.credentials else {
            return Err(BrokerError::Rejected {
                role: req.role_arn.clone(),
                code: "MissingCredentials".into(),
                message: "assume-role answered without credentials".into(),
            });
        };
        let sts_expiry = SystemTime::try_from(c.expiration).map_err(|e| BrokerError::Rejected {
            role: req.role_arn.clone(),
            code: "BadExpiration".into(),
            message: e.to_string(),
        })?;
        let lifetime = sts_expiry.duration_since(issued).unwrap_or_default();
        let margin = self.config.refresh_margin.min(lifetime / 2);
        let refresh_at = sts_expiry.checked_sub(margin).unwrap_or(sts_expiry);
        tracing::info!(grant = %req.grant_id, role = %req.role_arn, lifetime_s = lifetime.as_secs(), "assumed role for grant");
        Ok(Cached {
            // Capped for the grant as stored, so that serving them to its requests shares
            // them rather than copying them to change the expiry.
            creds: Credentials::new(
                c.access_key_id,
                c.secret_access_key,
                Some(c.session_token),
                Some(sts_expiry.min(req.expires_at)),
                "custody-broker",
            ),
            sts_expiry,
            refresh_at,
            issued_for: Fingerprint::of(req),
        })
    }

    fn endpoint(&self) -> String {
        self.config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("sts.{}.amazonaws.com", self.config.region))
    }
}

impl RoleBroker for StsBroker {
    fn credentials<'a>(&'a self, req: &'a GrantCredentialsRequest) -> CredentialsFuture<'a> {
        Box::pin(self.get(req))
    }

    fn revoke(&self, grant_id: &str) {
        self.cache.revoke(grant_id);
        tracing::info!(grant = %grant_id, "grant revoked; cached credentials dropped");
    }
}
