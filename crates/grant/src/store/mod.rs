//! Where grants live: the [`GrantStore`] trait and the embedded [`FileGrantStore`].

mod file;

use std::path::PathBuf;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::credentials::{AccessKeyId, AgentSecret, GrantId};
use crate::grant::{Grant, GrantError, GrantStatus};

pub use file::{FileGrantStore, USE_RESERVATION, USE_RESERVATION_MAX, use_reservation};

/// Storage for grants and their secrets.
///
/// Synchronous on purpose: implementations keep lookups in memory and hold locks only for
/// short critical sections, so the gateway calls them directly from async code. Every
/// mutation is a compare-and-set on the whole grant ([`GrantStore::compare_and_swap`]);
/// [`GrantStore::update`] builds read-modify-write with retries on top of it, so two
/// approvers, or an approval racing a revocation, can never lose or mix updates.
pub trait GrantStore: Send + Sync {
    /// Add a new grant with its secret. Fails if the id or access key id is taken.
    fn create(&self, grant: Grant, secret: AgentSecret) -> Result<Arc<Grant>, StoreError>;

    /// The grant with this id.
    fn get(&self, id: &GrantId) -> Result<Option<Arc<Grant>>, StoreError>;

    /// The grant and secret for an access key id (the authentication path).
    fn get_by_access_key(
        &self,
        key: &AccessKeyId,
    ) -> Result<Option<(Arc<Grant>, AgentSecret)>, StoreError>;

    /// Grants matching `filter`, ordered by id.
    fn list(&self, filter: &GrantFilter) -> Result<Vec<Arc<Grant>>, StoreError>;

    /// Replace the grant `expected.id` by `new` if and only if it still equals `expected`.
    ///
    /// Errors with [`StoreError::Conflict`] if it changed in between (re-read and retry),
    /// and [`StoreError::Immutable`] if `new` changes the id or the access key id.
    fn compare_and_swap(&self, expected: &Grant, new: Grant) -> Result<Arc<Grant>, StoreError>;

    /// Count one request against the grant's budget and return how many came before it: the
    /// value for [`crate::AccessRequest::requests_so_far`]. Call it for every request the
    /// gateway decides for the grant (allowed or denied), before deciding.
    fn record_use(&self, id: &GrantId) -> Result<u64, StoreError>;

    /// Requests counted so far.
    fn uses(&self, id: &GrantId) -> Result<u64, StoreError>;

    /// Read-modify-write with compare-and-set, retried on conflict. `change` may run more
    /// than once; it should be a pure function of the grant (like [`Grant::approve`]).
    fn update(
        &self,
        id: &GrantId,
        change: &mut dyn FnMut(&Grant) -> Result<Grant, GrantError>,
    ) -> Result<Arc<Grant>, StoreError> {
        for _ in 0..MAX_RETRIES {
            let current = self
                .get(id)?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let next = change(&current)?;
            match self.compare_and_swap(&current, next) {
                Err(StoreError::Conflict(_)) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict(id.clone()))
    }

    /// Record an approval ([`Grant::approve`]).
    fn approve(
        &self,
        id: &GrantId,
        approver: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<Grant>, StoreError> {
        self.update(id, &mut |g| g.approve(approver, now))
    }

    /// Reject a pending grant ([`Grant::deny`]).
    fn deny(
        &self,
        id: &GrantId,
        approver: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<Grant>, StoreError> {
        self.update(id, &mut |g| g.deny(approver, now))
    }

    /// Revoke a grant ([`Grant::revoke`]); takes effect on the next lookup.
    fn revoke(
        &self,
        id: &GrantId,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<Grant>, StoreError> {
        self.update(id, &mut |g| g.revoke(by, now))
    }

    /// Mark every pending or active grant past its expiry as expired; returns their ids.
    fn expire_due(&self, now: OffsetDateTime) -> Result<Vec<GrantId>, StoreError> {
        let mut expired = Vec::new();
        for g in self.list(&GrantFilter::default())? {
            if g.status.is_terminal() || g.expires_at > now {
                continue;
            }
            match self.update(&g.id, &mut |g| g.expire(now)) {
                Ok(_) => expired.push(g.id.clone()),
                // Revoked or denied in the meantime: nothing to expire.
                Err(StoreError::Transition(GrantError::WrongStatus { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(expired)
    }
}

/// How often [`GrantStore::update`] retries a conflicting compare-and-set.
const MAX_RETRIES: usize = 64;

/// Which grants [`GrantStore::list`] returns; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    /// Only grants in this status.
    pub status: Option<GrantStatus>,
    /// Only grants for this agent identity.
    pub identity: Option<String>,
    /// Only grants for this task id.
    pub task_id: Option<String>,
    /// Only grants asked for by this requester.
    pub requester: Option<String>,
}

impl GrantFilter {
    /// Whether `grant` passes the filter.
    pub fn matches(&self, grant: &Grant) -> bool {
        self.status.is_none_or(|s| grant.status == s)
            && self.identity.as_ref().is_none_or(|i| grant.identity == *i)
            && self.task_id.as_ref().is_none_or(|t| grant.task.id == *t)
            && self
                .requester
                .as_ref()
                .is_none_or(|r| grant.requester == *r)
    }
}

/// Grant store errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed.
    #[error("cannot {op} `{path}`: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store file cannot be read back; the store refuses to start empty over it.
    #[error(
        "grant store `{path}` is corrupt, refusing to start empty over it (restore it or move it away): {detail}"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No grant has this id.
    #[error("no grant `{0}`")]
    NotFound(GrantId),
    /// The id or access key id is already in use.
    #[error("grant `{0}` or its access key id already exists")]
    Duplicate(GrantId),
    /// The grant changed since it was read.
    #[error("grant `{0}` was changed concurrently, re-read and retry")]
    Conflict(GrantId),
    /// An update tried to change a field that never changes.
    #[error("grant field `{0}` cannot be changed")]
    Immutable(&'static str),
    /// The lifecycle transition was refused.
    #[error(transparent)]
    Transition(#[from] GrantError),
    /// The store could not be encoded.
    #[error("cannot encode the grant store: {0}")]
    Encode(String),
}
