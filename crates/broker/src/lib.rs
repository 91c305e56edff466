//! Custody STS role broker: scoped, short-lived AssumeRole credentials per grant, with
//! caching, refresh ahead of expiry and one call in flight per grant.
//!
//! This is Custody's *second fence*. The gateway decides every request itself, and then
//! re-signs the allowed ones with credentials that AWS scopes to the grant: the grant's
//! role, narrowed by the grant's rendered scope passed as the STS session policy. Even if
//! the gateway's own decision were wrong, AWS enforces the grant.
//!
//! - [`RoleBroker`] is the seam the proxy uses (dyn-compatible, so `Arc<dyn RoleBroker>`
//!   works): [`RoleBroker::credentials`] for a [`GrantCredentialsRequest`] and
//!   [`RoleBroker::revoke`] to drop a grant's cached credentials at once.
//! - [`StsBroker`] implements it on `aws-sdk-sts`. Each AssumeRole carries
//!   - `Policy` = the grant's rendered session policy,
//!   - `SourceIdentity` = the agent identity ([`sanitize::source_identity`]),
//!   - session tags [`TASK_TAG_KEY`] and [`GRANT_TAG_KEY`] ([`sanitize::tag_value`]),
//!   - `RoleSessionName` = the grant id ([`sanitize::session_name`]), so CloudTrail lines up
//!     with the session log,
//!   - `DurationSeconds` = the grant's remaining lifetime, clamped to what STS accepts.
//!
//! Credentials are cached per grant, refreshed [`BrokerConfig::refresh_margin`] ahead of
//! their expiry, never served at or past the grant's expiry, and dropped when the grant is
//! revoked. Secrets are redacted in `Debug` (`aws_credential_types::Credentials` does this)
//! and never logged.
//!
//! # Embedding the broker alone
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//!
//! use aws_smithy_async::time::SharedTimeSource;
//! use custody_broker::{BrokerConfig, GrantCredentialsRequest, RoleBroker, StsBroker};
//!
//! # async fn example() -> Result<(), custody_broker::BrokerError> {
//! let config = BrokerConfig {
//!     // A VPC endpoint, or an AWS-compatible server; `None` means the regional STS.
//!     endpoint: Some("https://sts.eu-west-1.amazonaws.com".into()),
//!     region: "eu-west-1".into(),
//!     refresh_margin: Duration::from_secs(300),
//!     ..BrokerConfig::default()
//! };
//! // Base credentials come from the standard AWS chain (env, profile, web identity, ECS, IMDS).
//! let broker: Arc<dyn RoleBroker> =
//!     Arc::new(StsBroker::new(config, SharedTimeSource::default()).await?);
//!
//! let req = GrantCredentialsRequest {
//!     grant_id: "g-01hzy3".into(),
//!     role_arn: "arn:aws:iam::123456789012:role/agent-reader".into(),
//!     session_policy: Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::reports/*"}]}"#.into()),
//!     source_identity: "agent:report-bot".into(),
//!     task_id: "weekly-report".into(),
//!     expires_at: SystemTime::now() + Duration::from_secs(3600),
//! };
//! let creds = broker.credentials(&req).await?; // sign the upstream request with these
//! assert!(creds.expiry().is_some_and(|at| at <= req.expires_at));
//!
//! broker.revoke(&req.grant_id); // the grant was revoked: never serve its credentials again
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod cache;
mod classify;
mod error;
pub mod sanitize;
mod sts;

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

pub use aws_credential_types::Credentials;
pub use error::BrokerError;
pub use sts::{BrokerConfig, MAX_POLICY_CHARS, MAX_SESSION_SECS, MIN_SESSION_SECS, StsBroker};

/// Session tag key carrying the task id (value sanitised with [`sanitize::tag_value`]).
pub const TASK_TAG_KEY: &str = "custody:task";
/// Session tag key carrying the grant id (value sanitised with [`sanitize::tag_value`]).
pub const GRANT_TAG_KEY: &str = "custody:grant";

/// What the broker needs to know about a grant to get credentials for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantCredentialsRequest {
    /// The grant's id: the cache key, the `RoleSessionName` and the `custody:grant` tag.
    pub grant_id: String,
    /// The IAM role the grant runs as.
    pub role_arn: String,
    /// The grant's scope rendered as an IAM session policy (JSON), if any.
    pub session_policy: Option<String>,
    /// The agent identity, sent as `SourceIdentity`.
    pub source_identity: String,
    /// The task the grant was issued for, sent as the `custody:task` tag.
    pub task_id: String,
    /// When the grant ends; credentials are never served at or after this instant.
    pub expires_at: SystemTime,
}

/// The future [`RoleBroker::credentials`] returns.
pub type CredentialsFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Credentials, BrokerError>> + Send + 'a>>;

/// Credentials for grants: the seam between the proxy and STS.
///
/// Dyn-compatible, so the proxy can hold an `Arc<dyn RoleBroker>`.
pub trait RoleBroker: Send + Sync {
    /// Credentials scoped to the grant, valid at least until the caller signs with them.
    ///
    /// The returned credentials' expiry is never later than [`GrantCredentialsRequest::expires_at`].
    /// On error nothing must be forwarded: the caller fails the request
    /// ([`BrokerError::http_status`]).
    fn credentials<'a>(&'a self, req: &'a GrantCredentialsRequest) -> CredentialsFuture<'a>;

    /// Forget the grant's credentials now and never serve credentials for it again.
    fn revoke(&self, grant_id: &str);
}

impl<B: RoleBroker + ?Sized> RoleBroker for std::sync::Arc<B> {
    fn credentials<'a>(&'a self, req: &'a GrantCredentialsRequest) -> CredentialsFuture<'a> {
        (**self).credentials(req)
    }

    fn revoke(&self, grant_id: &str) {
        (**self).revoke(grant_id);
    }
}
