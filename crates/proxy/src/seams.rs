//! The traits the proxy is built on. The gateway supplies implementations (the grant
//! store, the session log, the STS broker); tests and embedders can supply their own.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use custody_grant::{AccessRequest, Grant};

/// A boxed, sendable future, so the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A grant found by the access key id an agent signed with.
#[derive(Clone)]
pub struct GrantEntry {
    /// The grant (never carries the secret).
    pub grant: Arc<Grant>,
    /// The grant's signing secret, used only to verify the agent's signatures.
    pub secret: Arc<str>,
    /// Sequence number of the log entry that made the grant active, for the decision's
    /// link to its authorising event.
    pub activation_seq: Option<u64>,
}

impl std::fmt::Debug for GrantEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantEntry")
            .field("grant", &self.grant.id)
            .field("secret", &"<redacted>")
            .field("activation_seq", &self.activation_seq)
            .finish()
    }
}

/// Looks grants up by access key id and counts their use (for request budgets).
pub trait GrantDirectory: Send + Sync {
    /// The grant whose access key id is `access_key_id`, whatever its status (the decision
    /// reports revoked, expired or pending grants with the right reason).
    fn lookup(&self, access_key_id: &str) -> Option<GrantEntry>;

    /// Count one request against the grant and return how many came before it. An error
    /// (the count cannot be kept) denies the request.
    fn count_request(&self, grant_id: &str) -> Result<u64, String>;
}

/// One request decision, recorded before anything is forwarded.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    /// Gateway-assigned request id (also returned to the agent as `x-amz-request-id`).
    pub request_id: String,
    /// When the gateway received the request.
    pub received_at: SystemTime,
    /// The grant, when the request named a known one.
    pub grant: Option<Arc<Grant>>,
    /// The access key id the request was signed with, as claimed (may be unknown).
    pub access_key_id: Option<String>,
    /// The activation entry the decision relied on.
    pub grant_event_seq: Option<u64>,
    /// Service signing name, when known.
    pub service: Option<String>,
    /// Operation name, when classified.
    pub operation: Option<String>,
    /// The actions and resources decided on (empty if the request never got that far).
    pub access: AccessRequest,
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Why, in one line.
    pub reason: String,
    /// The agent's address.
    pub source: SocketAddr,
    /// SHA-256 of a buffered request body, hex; never the body itself.
    pub body_sha256: Option<String>,
}

/// The outcome of a forwarded request, recorded when its response ends.
#[derive(Debug, Clone)]
pub struct OutcomeRecord {
    /// The request id of the decision.
    pub request_id: String,
    /// Sequence number of the decision entry.
    pub decision_seq: u64,
    /// The grant.
    pub grant_id: String,
    /// Status sent to the agent.
    pub status: u16,
    /// Request body bytes forwarded upstream.
    pub bytes_in: u64,
    /// Response body bytes returned to the agent.
    pub bytes_out: u64,
    /// The upstream's request id header, if any.
    pub upstream_request_id: Option<String>,
    /// Microseconds from receipt to the end of the response.
    pub latency_us: u64,
    /// Set when the exchange failed part-way (upstream error, body aborted).
    pub error: Option<String>,
}

/// Why a record could not be written. The proxy refuses to forward on this.
#[derive(Debug, Clone, thiserror::Error)]
#[error("session log: {0}")]
pub struct SinkError(pub String);

/// Where decisions and outcomes are recorded. An allowed decision must be durable when
/// `record_decision` resolves; the proxy forwards nothing before that.
pub trait LogSink: Send + Sync {
    /// Append a decision; resolves with its sequence number once durable.
    fn record_decision(&self, record: DecisionRecord)
    -> BoxFuture<'static, Result<u64, SinkError>>;

    /// Queue an outcome. Called when the response has ended (so nothing waits on it) from
    /// inside a body's poll or drop: it must return at once, never block on I/O. The sink
    /// makes it durable soon after (e.g. with its next group commit) and reports a failure
    /// through its own health, which fails the gateway closed.
    fn record_outcome(&self, record: OutcomeRecord);
}

/// Why scoped credentials could not be had. The proxy answers 503 and forwards nothing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no credentials for grant `{grant_id}`: {message}")]
pub struct CredentialError {
    /// The grant.
    pub grant_id: String,
    /// What went wrong and what to do.
    pub message: String,
    /// Whether a retry may succeed (throttling, network): answered 503 so SDKs retry;
    /// otherwise (role not trusted, policy too large) answered as access denied.
    pub retryable: bool,
}

/// Scoped, short-lived AWS credentials for a grant (the STS broker in the gateway).
pub trait CredentialSource: Send + Sync {
    /// Credentials to re-sign a request under `grant` with.
    fn credentials(&self, grant: &Grant) -> BoxFuture<'_, Result<Credentials, CredentialError>>;
}
