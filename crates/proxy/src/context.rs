//! What the layers share: the state every request uses ([`Shared`]) and what one request
//! has accumulated on its way down the stack ([`RequestCtx`], carried in the request's
//! extensions).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use aws_smithy_async::time::SharedTimeSource;
use bytes::Bytes;
use custody_grant::AccessRequest;
use custody_sigv4::classify::Classification;
use custody_sigv4::verify::Verified;

use crate::error::ErrorFormat;
use crate::seams::{CredentialSource, GrantDirectory, GrantEntry, LogSink};
use crate::upstream::UpstreamConfig;

/// Settings of the request path.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Largest body buffered for verification and classification (API calls; S3 object
    /// bodies stream and are never buffered).
    pub max_buffered_body: usize,
    /// The memory all bodies whose signature is not yet checked may hold together.
    pub unverified_bodies: crate::budget::BodyBudget,
    /// Refusals of unauthenticated requests past the first few: counted, not recorded one
    /// by one (off by default).
    pub refusals: crate::tally::RefusalTally,
    /// Request rate limits per source and per grant (none by default).
    pub rate_limits: crate::throttle::RateLimits,
    /// Told of every refusal (for metrics).
    pub observer: crate::tally::RefusalObserver,
    /// Where requests go.
    pub upstream: UpstreamConfig,
    /// The URL agents reach the gateway at (`scheme://host[:port]`, no path): SQS queue
    /// URLs in responses are rewritten to it, and mapped back in requests, so clients that
    /// send to a queue's URL stay on the gateway. `None`: queue URLs pass as they are.
    pub public_url: Option<String>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            max_buffered_body: 6 << 20,
            unverified_bodies: crate::budget::BodyBudget::default(),
            refusals: crate::tally::RefusalTally::default(),
            rate_limits: crate::throttle::RateLimits::default(),
            observer: crate::tally::RefusalObserver::default(),
            upstream: UpstreamConfig::Aws,
            public_url: None,
        }
    }
}

/// The state every request uses.
#[derive(Clone)]
pub struct Shared {
    /// Grants by access key id.
    pub grants: Arc<dyn GrantDirectory>,
    /// Where decisions and outcomes are recorded.
    pub sink: Arc<dyn LogSink>,
    /// Scoped credentials for re-signing.
    pub credentials: Arc<dyn CredentialSource>,
    /// The clock.
    pub clock: SharedTimeSource,
    /// Settings.
    pub options: ProxyOptions,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The client's address, inserted by the server into each request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// Everything one request has accumulated so far.
#[derive(Clone)]
pub struct RequestCtx {
    /// Gateway-assigned id, returned as `x-amz-request-id`.
    pub request_id: String,
    /// The client's address.
    pub source: SocketAddr,
    /// When the request arrived, by the gateway's clock.
    pub received_at: SystemTime,
    /// For latency.
    pub started: Instant,
    /// How errors must look for this request's protocol (refined as we learn more).
    pub format: ErrorFormat,
    /// The access key id the request claims (before verification).
    pub access_key_id: Option<String>,
    /// The grant named by the access key id.
    pub grant: Option<GrantEntry>,
    /// The verified signature.
    pub verified: Option<Arc<Verified>>,
    /// The request's signature was checked and is the grant's (the head's, or with the
    /// body when the signature covers it): refusals from here on are the grant holder's
    /// and always recorded in full.
    pub authenticated: bool,
    /// The buffered body, when the request's body was small enough to need buffering.
    pub buffered_body: Option<Bytes>,
    /// Hex SHA-256 of the buffered body.
    pub body_sha256: Option<String>,
    /// The whole body was buffered and checked against its signature already.
    pub body_verified: bool,
    /// What the request does.
    pub classification: Option<Arc<Classification>>,
    /// What was decided on.
    pub access: Option<AccessRequest>,
    /// Why it is allowed (statement and grant).
    pub reason: Option<String>,
    /// Sequence number of the recorded decision.
    pub decision_seq: Option<u64>,
}

impl std::fmt::Debug for RequestCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCtx")
            .field("request_id", &self.request_id)
            .field("source", &self.source)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl RequestCtx {
    /// A context for a request just received from `source`.
    pub fn new(source: SocketAddr, received_at: SystemTime) -> Self {
        Self {
            request_id: new_request_id(),
            source,
            received_at,
            started: Instant::now(),
            format: ErrorFormat::QueryXml,
            access_key_id: None,
            grant: None,
            authenticated: false,
            verified: None,
            buffered_body: None,
            body_sha256: None,
            body_verified: false,
            classification: None,
            access: None,
            reason: None,
            decision_seq: None,
        }
    }
}

/// A request id unique across restarts: a per-process prefix (start time and pid) and a
/// counter, so no syscall is spent per request. It joins a response, a log entry and an
/// upstream trace.
fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    // A per-process random prefix plus a counter: no syscall per request.
    let prefix = PREFIX.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!(
            "{:016x}",
            (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
        )
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{n:016x}")
}
