//! Custody proxy: tower layers that authenticate, classify, authorize, record, re-sign and
//! forward agent requests to AWS.
//!
//! The request path, in [`stack::request_path`]:
//!
//! 1. [`authenticate::Authenticate`]: SigV4 verification against the grant's secret.
//! 2. [`classify::Classify`]: service, operation, IAM actions and resources.
//! 3. [`authorize::Authorize`]: the grant's decision.
//! 4. [`record::Record`]: the decision, durable in the log before forwarding.
//! 5. [`resign::Resign`]: scoped credentials, upstream from configuration, streamed body
//!    checks; SQS queue URLs mapped between the agent's endpoint and the upstream's.
//! 6. [`forward::Forward`]: hyper client, no redirects.
//!
//! The proxy depends on traits ([`seams`]) for the grant store, the log and the broker;
//! `session_log` (feature `session-log`, on by default) is the `LogSink` over the
//! session log from `custody-log`.
#![forbid(unsafe_code)]

pub mod authenticate;
pub mod authorize;
pub mod body;
pub mod budget;
pub mod classify;
pub mod context;
pub mod error;
pub mod forward;
mod queue_urls;
pub mod record;
pub mod resign;
pub mod seams;
#[cfg(feature = "session-log")]
pub mod session_log;
pub mod stack;
mod stage;
pub mod tally;
pub mod throttle;
pub mod upstream;

pub use context::{ClientAddr, ProxyOptions, Shared};
pub use error::{AnsweredByGateway, ErrorFormat, Refusal, RefusalKind};
pub use seams::{
    BoxFuture, CredentialError, CredentialSource, DecisionRecord, GrantDirectory, GrantEntry,
    LogSink, OutcomeRecord, SinkError,
};
pub use stack::request_path;
