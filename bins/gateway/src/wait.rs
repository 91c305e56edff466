//! Agents that wait: `GET /v1/grants/{id}/wait?timeout=SECS` answers when the grant is no
//! longer pending (approved and active, denied, expired, revoked) or when the timeout
//! passes, whichever is first, with the grant as `grant show` has it. Every lifecycle
//! change bumps a generation counter ([`Changes`]) that waiters watch, so a decision
//! reaches them at once, without polling the store.

use std::time::Duration;

use custody_grant::{Grant, GrantStatus};
use tokio::sync::watch;

use crate::app::{Gateway, OpError, Principal};

/// Longest one wait may last (the CLI waits longer by asking again).
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// The wait when `timeout` is not given.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// The lifecycle generation: bumped after every grant change.
#[derive(Debug)]
pub struct Changes(watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Self(watch::channel(0).0)
    }
}

impl Changes {
    /// A grant changed (requested, approved, denied, revoked, expired).
    pub fn bump(&self) {
        self.0.send_modify(|g| *g = g.wrapping_add(1));
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// `timeout=SECS` from the query (at most [`MAX_WAIT`]).
pub fn timeout_from(query: Option<&str>) -> Result<Duration, OpError> {
    let mut timeout = DEFAULT_WAIT;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "timeout" => {
                let secs: u64 = v.parse().map_err(|_| {
                    OpError::new(400, format!("`timeout={v}` is not a number of seconds"))
                })?;
                timeout = Duration::from_secs(secs).min(MAX_WAIT);
            }
            other => {
                return Err(OpError::new(
                    400,
                    format!("unknown query parameter `{other}` (timeout)"),
                ));
            }
        }
    }
    Ok(timeout)
}

/// The grant once it is no longer pending, or as it is when `timeout` passes.
pub async fn until_decided(
    gateway: &Gateway,
    who: &Principal,
    id: &str,
    timeout: Duration,
) -> Result<Grant, OpError> {
    let deadline = tokio::time::Instant::now() + timeout;
    // Subscribed before the first look: a change between the look and the wait is seen.
    let mut changes = gateway.changes.subscribe();
    loop {
        let grant = gateway.show_grant(who, id)?;
        if grant.status != GrantStatus::Pending {
            return Ok(grant);
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            // Timed out, or the gateway is shutting down: the grant as it is.
            Ok(Err(_)) | Err(_) => return gateway.show_grant(who, id),
        }
    }
}
