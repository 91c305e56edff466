//! Per-grant credential slots: the cached credentials, the single-flight lock, revocation.
//!
//! The map lock is a short `std` mutex (lookups only). Each grant's slot has its own
//! `tokio` mutex held across the AssumeRole call, so exactly one call per grant is in
//! flight however many requests arrive; the others wait for it and reuse its result.
//! Revocation marks the slot under the same lock that guards its credentials, so a request
//! either read them before the revocation or sees the revocation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;

use crate::{BrokerError, GrantCredentialsRequest};

/// How often expired grants are swept from the map.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Credentials as STS issued them for one grant.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    /// The credentials, with STS's own expiry.
    pub(crate) creds: Credentials,
    /// When STS says they expire.
    pub(crate) sts_expiry: SystemTime,
    /// When to fetch new ones.
    pub(crate) refresh_at: SystemTime,
    /// What they were issued for; a request that differs gets new ones.
    pub(crate) issued_for: Fingerprint,
}

/// The parts of a request that shape the credentials STS issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    role_arn: String,
    session_policy: Option<String>,
    source_identity: String,
    task_id: String,
}

impl Fingerprint {
    pub(crate) fn of(req: &GrantCredentialsRequest) -> Self {
        Self {
            role_arn: req.role_arn.clone(),
            session_policy: req.session_policy.clone(),
            source_identity: req.source_identity.clone(),
            task_id: req.task_id.clone(),
        }
    }

    /// Whether `req` would be issued the same credentials (compared in place: this runs
    /// on every request, and the session policy can be kilobytes).
    fn is_for(&self, req: &GrantCredentialsRequest) -> bool {
        self.role_arn == req.role_arn
            && self.session_policy == req.session_policy
            && self.source_identity == req.source_identity
            && self.task_id == req.task_id
    }
}

impl Cached {
    /// Whether these can be handed out for `req` at `now` (ignoring the refresh time).
    pub(crate) fn usable_for(
        &self,
        req: &GrantCredentialsRequest,
        now: SystemTime,
        min_validity: Duration,
    ) -> bool {
        self.issued_for.is_for(req) && now < req.expires_at && now + min_validity < self.sts_expiry
    }

    /// The credentials to hand out for `req`: expiry capped at the grant's. Shared (not
    /// copied) when the stored ones already carry that expiry, as they do when stored for
    /// the same grant (`StsBroker::assume` caps them).
    pub(crate) fn serve(&self, req: &GrantCredentialsRequest) -> Credentials {
        let expiry = self.sts_expiry.min(req.expires_at);
        let mut creds = self.creds.clone();
        if creds.expiry() != Some(expiry) {
            *creds.expiry_mut() = Some(expiry);
        }
        creds
    }
}

/// One grant's slot.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Held for the duration of an AssumeRole call for this grant.
    pub(crate) flight: tokio::sync::Mutex<()>,
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    /// Shared with the requests reading it: a lookup is a reference count.
    current: Option<Arc<Cached>>,
    revoked: bool,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached credentials, or `Revoked` if the grant was revoked.
    pub(crate) fn current(&self, grant_id: &str) -> Result<Option<Arc<Cached>>, BrokerError> {
        let state = self.state();
        if state.revoked {
            return Err(BrokerError::Revoked {
                grant_id: grant_id.to_owned(),
            });
        }
        Ok(state.current.clone())
    }

    /// Store fresh credentials, unless the grant was revoked meanwhile.
    pub(crate) fn store(&self, grant_id: &str, cached: Cached) -> Result<(), BrokerError> {
        let mut state = self.state();
        if state.revoked {
            return Err(BrokerError::Revoked {
                grant_id: grant_id.to_owned(),
            });
        }
        state.current = Some(Arc::new(cached));
        Ok(())
    }

    /// After a failed refresh ahead of expiry, wait until `until` before trying again, so
    /// a struggling STS is not asked on every request.
    pub(crate) fn postpone_refresh(&self, until: SystemTime) {
        if let Some(current) = self.state().current.as_mut() {
            let current = Arc::make_mut(current);
            current.refresh_at = current.refresh_at.max(until);
        }
    }

    fn revoke(&self) {
        let mut state = self.state();
        state.revoked = true;
        state.current = None;
    }
}

/// All grants' slots.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    slots: HashMap<String, Entry>,
    /// Revoked grant ids, with the grant's expiry when known (then swept after it).
    revoked: HashMap<String, Option<SystemTime>>,
    next_sweep: Option<SystemTime>,
}

#[derive(Debug)]
struct Entry {
    slot: Arc<Slot>,
    grant_expires_at: SystemTime,
}

impl Cache {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The grant's slot, created if new; `Revoked` if the grant was revoked.
    pub(crate) fn slot(
        &self,
        req: &GrantCredentialsRequest,
        now: SystemTime,
    ) -> Result<Arc<Slot>, BrokerError> {
        let mut inner = self.inner();
        if inner.next_sweep.is_none_or(|at| now >= at) {
            inner.sweep(now);
            inner.next_sweep = Some(now + SWEEP_EVERY);
        }
        if inner.revoked.contains_key(&req.grant_id) {
            return Err(BrokerError::Revoked {
                grant_id: req.grant_id.clone(),
            });
        }
        // Looked up before inserting: the map's key is only copied for a new grant.
        if let Some(entry) = inner.slots.get_mut(&req.grant_id) {
            entry.grant_expires_at = req.expires_at;
            return Ok(Arc::clone(&entry.slot));
        }
        let slot = Arc::new(Slot::default());
        inner.slots.insert(
            req.grant_id.clone(),
            Entry {
                slot: Arc::clone(&slot),
                grant_expires_at: req.expires_at,
            },
        );
        Ok(slot)
    }

    /// Drop the grant's credentials and refuse it from now on.
    pub(crate) fn revoke(&self, grant_id: &str) {
        let mut inner = self.inner();
        let known_expiry = inner.slots.remove(grant_id).map(|entry| {
            entry.slot.revoke();
            entry.grant_expires_at
        });
        inner.revoked.insert(grant_id.to_owned(), known_expiry);
    }

    /// How many grants have a slot (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.inner().slots.len()
    }
}

impl Inner {
    /// Forget grants that have expired: nothing can be served for them anyway.
    fn sweep(&mut self, now: SystemTime) {
        self.slots.retain(|_, e| now < e.grant_expires_at);
        self.revoked.retain(|_, exp| exp.is_none_or(|at| now < at));
    }
}
