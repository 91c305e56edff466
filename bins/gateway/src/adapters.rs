//! The concrete parts behind the proxy's seams: the file grant store as the
//! `GrantDirectory`, the session log as the `LogSink`, the STS broker as the
//! `CredentialSource`. Metrics are taken here, where every decision passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use custody_broker::{GrantCredentialsRequest, RoleBroker};
use custody_grant::{AccessKeyId, Grant, GrantId, GrantStore};
use custody_log::{EncodeBody, Log};
use custody_proxy::session_log::{DecisionEntry, outcome_entry};
use custody_proxy::{
    BoxFuture, CredentialError, CredentialSource, DecisionRecord, GrantDirectory, GrantEntry,
    LogSink, OutcomeRecord, SinkError,
};

use crate::metrics::Metrics;

/// Grant id → sequence number of the entry that activated it.
pub type Activations = Arc<Mutex<HashMap<String, u64>>>;

/// The grant store, as the proxy sees it.
pub struct StoreDirectory {
    /// The store.
    pub store: Arc<dyn GrantStore>,
    /// Activation entries, for the decision's link to its authorising event.
    pub activations: Activations,
}

impl GrantDirectory for StoreDirectory {
    fn lookup(&self, access_key_id: &str) -> Option<GrantEntry> {
        let key = AccessKeyId::parse(access_key_id).ok()?;
        let (grant, secret) = self.store.get_by_access_key(&key).ok()??;
        let activation_seq = self
            .activations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(grant.id.as_str())
            .copied();
        Some(GrantEntry {
            grant,
            secret: Arc::from(secret.expose_secret()),
            activation_seq,
        })
    }

    fn count_request(&self, grant_id: &str) -> Result<u64, String> {
        let id = GrantId::parse(grant_id).map_err(|e| e.to_string())?;
        self.store.record_use(&id).map_err(|e| e.to_string())
    }
}

/// The session log, as the proxy sees it.
pub struct LogAdapter {
    /// The log.
    pub log: Arc<Log>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Commit inline from any agent thread while the log's commits take less than this.
    pub inline_commit_under: Duration,
}

impl LogSink for LogAdapter {
    fn record_decision(&self, r: DecisionRecord) -> BoxFuture<'static, Result<u64, SinkError>> {
        self.metrics.count_request(r.allowed, r.service.as_deref());
        self.append(DecisionEntry::new(&r).body())
    }

    fn record_outcome(&self, r: OutcomeRecord) {
        self.metrics
            .upstream_latency
            .observe(r.latency_us as f64 / 1e6);
        let decision_seq = r.decision_seq;
        // Nothing waits on an outcome: it rides the next decision's group commit (at the
        // latest `log.outcome_max_delay_ms` later). A later write failure fails the log,
        // which /readyz and every following request see.
        if let Err(e) = self.log.append_deferred(outcome_entry(r)) {
            self.metrics.log_failures.inc();
            tracing::error!(error = %e, decision_seq, "could not record request outcome");
        }
    }
}

impl LogAdapter {
    fn append(&self, body: impl EncodeBody) -> BoxFuture<'static, Result<u64, SinkError>> {
        let started = Instant::now();
        let inline = commit_inline(
            crate::server::open_on_this_thread(),
            self.log.recent_commit_time(),
            self.inline_commit_under,
        );
        let fut = self.log.append_async_inline(body, inline);
        let inline_done = fut.committed_inline();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            match fut.await {
                Ok(appended) => {
                    metrics.log_append.observe(started.elapsed().as_secs_f64());
                    if inline_done {
                        metrics.log_commits_inline.inc();
                    } else {
                        metrics.log_commits_committer.inc();
                    }
                    Ok(appended.seq)
                }
                Err(e) => {
                    metrics.log_failures.inc();
                    Err(SinkError(e.to_string()))
                }
            }
        })
    }
}

/// Whether a request's decision entry may be committed inline by its own agent thread
/// (when the committer is idle): when no other connection there would wait for the sync
/// (`open` is the thread's open connections, `None` off the agent threads), or when the
/// log's commits take less than `under`, less than the two thread hand-offs an inline
/// commit spares. Otherwise the committer syncs while the thread serves its other
/// connections.
fn commit_inline(open: Option<i64>, recent: Option<Duration>, under: Duration) -> bool {
    match open {
        None => false,
        Some(open) => open == 1 || recent.is_some_and(|t| t < under),
    }
}

/// The STS broker, as the proxy sees it.
pub struct BrokerSource {
    /// The broker.
    pub broker: Arc<dyn RoleBroker>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Broker requests already built, by grant id: a grant's role, identity, task, expiry
    /// and scope never change, and rendering the session policy (and copying it and the
    /// rest into a request) per request showed up in profiles.
    pub requests: Mutex<HashMap<String, Arc<GrantCredentialsRequest>>>,
}

impl BrokerSource {
    /// A source over `broker`.
    pub fn new(broker: Arc<dyn RoleBroker>, metrics: Arc<Metrics>) -> Self {
        Self {
            broker,
            metrics,
            requests: Mutex::new(HashMap::new()),
        }
    }

    fn request_for(
        &self,
        grant: &Grant,
    ) -> Result<Arc<GrantCredentialsRequest>, custody_grant::PolicyTooLarge> {
        let id = grant.id.as_str();
        if let Some(r) = self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
        {
            return Ok(Arc::clone(r));
        }
        let request = Arc::new(GrantCredentialsRequest {
            grant_id: id.to_owned(),
            role_arn: grant.role_arn.clone(),
            session_policy: Some(grant.session_policy()?),
            source_identity: grant.identity.clone(),
            task_id: grant.task.id.clone(),
            expires_at: grant.expires_at.into(),
        });
        let mut cache = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded: forget everything rather than grow without limit.
        if cache.len() >= 10_000 {
            cache.clear();
        }
        cache.insert(id.to_owned(), Arc::clone(&request));
        Ok(request)
    }
}

impl CredentialSource for BrokerSource {
    fn credentials(&self, grant: &Grant) -> BoxFuture<'_, Result<Credentials, CredentialError>> {
        let request = self.request_for(grant).map_err(|e| CredentialError {
            grant_id: grant.id.as_str().to_owned(),
            message: e.to_string(),
            retryable: false,
        });
        Box::pin(async move {
            let request = request?;
            let result = self.broker.credentials(&request).await;
            match &result {
                Ok(_) => self.metrics.broker_calls_ok.inc(),
                Err(_) => self.metrics.broker_calls_error.inc(),
            };
            result.map_err(|e| CredentialError {
                grant_id: request.grant_id.clone(),
                message: e.to_string(),
                retryable: e.is_retryable(),
            })
        })
    }
}

/// Signs with the gateway's own base credentials (`[broker]
/// danger_sign_with_base_credentials`): no STS, no session policy at the upstream.
pub struct BaseCredentials {
    /// The credentials, from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
    /// `AWS_SESSION_TOKEN`.
    pub credentials: Credentials,
}

impl BaseCredentials {
    /// Read the base credentials from the environment.
    pub fn from_env() -> Result<Self, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err("`broker.danger_sign_with_base_credentials` needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment".into());
        };
        Ok(Self {
            credentials: Credentials::new(
                key,
                secret,
                var("AWS_SESSION_TOKEN"),
                None,
                "custody-base",
            ),
        })
    }
}

impl RoleBroker for BaseCredentials {
    fn credentials<'a>(
        &'a self,
        _req: &'a GrantCredentialsRequest,
    ) -> custody_broker::CredentialsFuture<'a> {
        let creds = self.credentials.clone();
        Box::pin(async move { Ok(creds) })
    }

    fn revoke(&self, _grant_id: &str) {}
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "tests fail loudly"
    )]
    use super::*;
    use std::time::SystemTime;

    /// Records the requests it is asked for; fails for grants whose task is `fail`.
    #[derive(Default)]
    struct Recording(Mutex<Vec<GrantCredentialsRequest>>);

    impl RoleBroker for Recording {
        fn credentials<'a>(
            &'a self,
            req: &'a GrantCredentialsRequest,
        ) -> custody_broker::CredentialsFuture<'a> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(req.clone());
            let fail = req.task_id == "fail";
            Box::pin(async move {
                if fail {
                    Err(custody_broker::BrokerError::Revoked {
                        grant_id: req.grant_id.clone(),
                    })
                } else {
                    Ok(Credentials::new("ASIA", "secret", None, None, "test"))
                }
            })
        }

        fn revoke(&self, _grant_id: &str) {}
    }

    fn grant(identity: &str, task: &str, role: &str, statement_sid: &str) -> Grant {
        let scope = custody_grant::Scope::from_iam_json(&format!(
            r#"{{"Version": "2012-10-17", "Statement": [{{"Sid": "{statement_sid}",
                "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}}]}}"#
        ))
        .expect("scope");
        let now = time::OffsetDateTime::now_utc();
        Grant::issue(
            custody_grant::GrantRequest {
                identity: identity.into(),
                task: custody_grant::Task {
                    id: task.into(),
                    intent: "test".into(),
                },
                requester: "alice".into(),
                role_arn: role.into(),
                regions: vec!["us-east-1".into()],
                scope,
                not_before: None,
                ttl: time::Duration::minutes(30),
                approval_policy: custody_grant::ApprovalPolicy {
                    required: 0,
                    approvers: Vec::new(),
                },
                request_budget: None,
            },
            &custody_grant::Limits {
                default_max_ttl: time::Duration::hours(1),
                max_ttl_by_role: Default::default(),
            },
            now,
        )
        .expect("issue")
        .grant
    }

    /// Broker requests are built once per grant and reused, and each grant's request is its
    /// own (ids, role, identity, task, expiry, session policy), however the calls
    /// interleave; both results are counted.
    #[tokio::test]
    async fn broker_requests_are_built_once_per_grant_and_never_mixed_up() {
        let broker = Arc::new(Recording::default());
        let metrics = Arc::new(Metrics::new());
        let source = BrokerSource::new(broker.clone(), metrics.clone());
        let a = grant("agent:a", "t-a", "arn:aws:iam::123456789012:role/a", "ForA");
        let b = grant("agent:b", "t-b", "arn:aws:iam::123456789012:role/b", "ForB");
        let failing = grant(
            "agent:c",
            "fail",
            "arn:aws:iam::123456789012:role/c",
            "ForC",
        );
        for g in [&a, &b, &a, &b, &a] {
            source.credentials(g).await.expect("credentials");
        }
        let err = source.credentials(&failing).await.expect_err("refused");
        assert_eq!(err.grant_id, failing.id.as_str());
        assert!(!err.retryable);

        let seen = broker
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert_eq!(seen.len(), 6);
        for (req, g) in seen.iter().zip([&a, &b, &a, &b, &a, &failing]) {
            assert_eq!(req.grant_id, g.id.as_str());
            assert_eq!(req.role_arn, g.role_arn);
            assert_eq!(req.source_identity, g.identity);
            assert_eq!(req.task_id, g.task.id);
            assert_eq!(req.expires_at, SystemTime::from(g.expires_at));
            assert_eq!(
                req.session_policy.as_deref(),
                Some(g.session_policy().expect("policy").as_str())
            );
        }
        assert_eq!(
            source
                .requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            3
        );
        assert_eq!(metrics.broker_calls_ok.get(), 5);
        assert_eq!(metrics.broker_calls_error.get(), 1);
    }

    #[test]
    fn inline_commits_for_a_lone_connection_or_a_fast_log_on_agent_threads_only() {
        let ms = Duration::from_millis;
        let under = Duration::from_micros(50);
        let fast = Some(Duration::from_micros(10));
        let slow = Some(ms(2));
        let cases = [
            // Off the agent threads: never, however fast the log.
            (None, fast, under, false),
            // Alone on its thread: whatever the log's speed, even before any commit.
            (Some(1), slow, under, true),
            (Some(1), None, under, true),
            // With other connections: only while commits are quicker than `under`.
            (Some(3), fast, under, true),
            (Some(3), slow, under, false),
            (Some(3), None, under, false),
            (Some(3), fast, Duration::ZERO, false),
        ];
        for (open, recent, under, want) in cases {
            assert_eq!(
                commit_inline(open, recent, under),
                want,
                "{open:?} {recent:?} {under:?}"
            );
        }
    }
}
