//! The grant model and its lifecycle: `pending → active → revoked | expired`, or
//! `pending → denied`. Transitions are pure functions from a grant to the next grant; the
//! store applies them with compare-and-set.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::arn;
use crate::credentials::{
    AccessKeyId, AgentSecret, CredentialError, GrantId, generate_credentials,
};
use crate::scope::{PolicyTooLarge, Scope};

/// A per-task grant: who may do what, where, until when, approved by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The grant's id (also the STS `RoleSessionName`).
    pub id: GrantId,
    /// The agent identity, e.g. `agent:report-bot` (the STS `SourceIdentity`).
    pub identity: String,
    /// The task this grant authorises.
    pub task: Task,
    /// Who asked for the grant.
    pub requester: String,
    /// The role the gateway assumes to serve requests.
    pub role_arn: String,
    /// Regions requests may target; empty means any region.
    pub regions: Vec<String>,
    /// What the agent may do.
    pub scope: Scope,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Lifecycle state.
    pub status: GrantStatus,
    /// Approvals so far, in order.
    pub approvals: Vec<Approval>,
    /// Who must approve, and how many.
    pub approval_policy: ApprovalPolicy,
    /// Requests the grant serves at most (allowed or denied, counted by the gateway).
    pub request_budget: Option<u64>,
    /// The agent's access key id.
    pub access_key_id: AccessKeyId,
    /// When the grant was requested.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When `status` last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub status_changed_at: OffsetDateTime,
    /// Who made the last status change (approver, denier, revoker), if a person did.
    pub status_changed_by: Option<String>,
    /// Why, when the person who denied or revoked the grant said (at most 1 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
}

/// The task a grant serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The task's id in the caller's system.
    pub id: String,
    /// One human sentence: the authorised intent.
    pub intent: String,
}

/// Lifecycle state of a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantStatus {
    /// Waiting for approvals.
    Pending,
    /// Usable between `not_before` and `expires_at`.
    Active,
    /// The request was rejected by an approver.
    Denied,
    /// Withdrawn; takes effect on the next request.
    Revoked,
    /// Past `expires_at`.
    Expired,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who approved.
    pub approver: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// How many of which people must approve. `required == 0` issues the grant active.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// Distinct approvals needed.
    pub required: u32,
    /// The only people whose approval counts; the requester never counts.
    pub approvers: Vec<String>,
}

/// Issue-time limits set by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest lifetime for a role not listed in `max_ttl_by_role`.
    pub default_max_ttl: Duration,
    /// Longest lifetime per role ARN.
    pub max_ttl_by_role: BTreeMap<String, Duration>,
}

/// What a requester asks for; [`Grant::issue`] validates it into a pending or active grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    /// The agent identity.
    pub identity: String,
    /// The task.
    pub task: Task,
    /// Who asks.
    pub requester: String,
    /// Role to assume.
    pub role_arn: String,
    /// Allowed regions (empty: any).
    pub regions: Vec<String>,
    /// The scope.
    pub scope: Scope,
    /// Start of validity; `None` means now.
    pub not_before: Option<OffsetDateTime>,
    /// Lifetime from `not_before`.
    pub ttl: Duration,
    /// Approval rules.
    pub approval_policy: ApprovalPolicy,
    /// Optional request budget.
    pub request_budget: Option<u64>,
}

/// A newly issued grant and its secret, which is shown to the requester once.
#[derive(Debug)]
pub struct IssuedGrant {
    /// The grant (no secret inside).
    pub grant: Grant,
    /// The secret for `grant.access_key_id`.
    pub secret: AgentSecret,
}

/// Why a grant cannot be issued or a transition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// A request field is invalid.
    #[error("invalid `{field}`: {detail}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The lifetime is over the role's limit.
    #[error("ttl of {requested}s exceeds the {max}s limit for role `{role}`")]
    TtlTooLong {
        /// Requested seconds.
        requested: i64,
        /// Limit in seconds.
        max: i64,
        /// The role.
        role: String,
    },
    /// The scope does not fit in a session policy.
    #[error(transparent)]
    PolicyTooLarge(#[from] PolicyTooLarge),
    /// Credentials could not be generated.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The transition needs another status.
    #[error("grant is {status}, cannot {action}")]
    WrongStatus {
        /// Current status.
        status: GrantStatus,
        /// The refused transition.
        action: &'static str,
    },
    /// The requester tried to approve their own grant.
    #[error("`{0}` requested this grant and cannot approve it")]
    SelfApproval(String),
    /// The approver is not listed.
    #[error("`{0}` is not an approver for this grant")]
    NotAnApprover(String),
    /// The approver already approved.
    #[error("`{0}` has already approved this grant")]
    AlreadyApproved(String),
    /// The grant's lifetime is over.
    #[error("grant expired at {0}")]
    PastExpiry(String),
}

// === impl Grant ===

impl Grant {
    /// Validate a request and issue a grant with fresh credentials: `active` if no approval is
    /// required, else `pending`.
    pub fn issue(
        request: GrantRequest,
        limits: &Limits,
        now: OffsetDateTime,
    ) -> Result<IssuedGrant, GrantError> {
        let r = request;
        non_empty("identity", &r.identity)?;
        non_empty("task.id", &r.task.id)?;
        non_empty("task.intent", &r.task.intent)?;
        non_empty("requester", &r.requester)?;
        check_role(&r.role_arn)?;
        if let Some(bad) = r.regions.iter().find(|reg| {
            reg.is_empty()
                || !reg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }) {
            return Err(GrantError::Invalid {
                field: "regions",
                detail: format!("malformed region `{bad}`"),
            });
        }
        let max = limits
            .max_ttl_by_role
            .get(&r.role_arn)
            .copied()
            .unwrap_or(limits.default_max_ttl);
        if r.ttl <= Duration::ZERO {
            return Err(GrantError::Invalid {
                field: "ttl",
                detail: "must be positive".to_owned(),
            });
        }
        if r.ttl > max {
            return Err(GrantError::TtlTooLong {
                requested: r.ttl.whole_seconds(),
                max: max.whole_seconds(),
                role: r.role_arn,
            });
        }
        let policy = &r.approval_policy;
        let eligible = policy
            .approvers
            .iter()
            .filter(|a| **a != r.requester)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if usize::try_from(policy.required).map_or(true, |n| n > eligible) {
            return Err(GrantError::Invalid {
                field: "approval_policy",
                detail: format!(
                    "{} approvals required but only {eligible} eligible approvers (the requester does not count)",
                    policy.required
                ),
            });
        }
        // A scope that cannot be sent to STS would fail on the first request; refuse it now.
        r.scope.session_policy_in(&r.regions)?;
        let not_before = r.not_before.unwrap_or(now);
        let expires_at = not_before + r.ttl;
        let (access_key_id, secret) = generate_credentials()?;
        let status = if policy.required == 0 {
            GrantStatus::Active
        } else {
            GrantStatus::Pending
        };
        let grant = Grant {
            id: GrantId::generate()?,
            identity: r.identity,
            task: r.task,
            requester: r.requester,
            role_arn: r.role_arn,
            regions: r.regions,
            scope: r.scope,
            not_before,
            expires_at,
            status,
            approvals: Vec::new(),
            approval_policy: r.approval_policy,
            request_budget: r.request_budget,
            access_key_id,
            created_at: now,
            status_changed_at: now,
            status_changed_by: None,
            status_reason: None,
        };
        Ok(IssuedGrant { grant, secret })
    }

    /// The session policy for STS: the scope plus the region fence
    /// ([`Scope::session_policy_in`]).
    pub fn session_policy(&self) -> Result<String, PolicyTooLarge> {
        self.scope.session_policy_in(&self.regions)
    }

    /// Record `approver`'s approval; the grant turns active when enough have approved.
    pub fn approve(&self, approver: &str, now: OffsetDateTime) -> Result<Grant, GrantError> {
        self.require(GrantStatus::Pending, "approve")?;
        if now >= self.expires_at {
            return Err(GrantError::PastExpiry(crate::rfc3339(self.expires_at)));
        }
        if approver == self.requester {
            return Err(GrantError::SelfApproval(approver.to_owned()));
        }
        if !self.approval_policy.approvers.iter().any(|a| a == approver) {
            return Err(GrantError::NotAnApprover(approver.to_owned()));
        }
        if self.approvals.iter().any(|a| a.approver == approver) {
            return Err(GrantError::AlreadyApproved(approver.to_owned()));
        }
        let mut next = self.clone();
        next.approvals.push(Approval {
            approver: approver.to_owned(),
            at: now,
        });
        if next.approvals.len()
            >= usize::try_from(next.approval_policy.required).unwrap_or(usize::MAX)
        {
            next.set_status(GrantStatus::Active, Some(approver), now);
        }
        Ok(next)
    }

    /// Reject a pending grant; only a listed approver (not the requester) may.
    pub fn deny(&self, approver: &str, now: OffsetDateTime) -> Result<Grant, GrantError> {
        self.require(GrantStatus::Pending, "deny")?;
        if approver == self.requester {
            return Err(GrantError::SelfApproval(approver.to_owned()));
        }
        if !self.approval_policy.approvers.iter().any(|a| a == approver) {
            return Err(GrantError::NotAnApprover(approver.to_owned()));
        }
        let mut next = self.clone();
        next.set_status(GrantStatus::Denied, Some(approver), now);
        Ok(next)
    }

    /// Revoke a pending or active grant.
    pub fn revoke(&self, by: &str, now: OffsetDateTime) -> Result<Grant, GrantError> {
        if !matches!(self.status, GrantStatus::Pending | GrantStatus::Active) {
            return Err(GrantError::WrongStatus {
                status: self.status,
                action: "revoke",
            });
        }
        let mut next = self.clone();
        next.set_status(GrantStatus::Revoked, Some(by), now);
        Ok(next)
    }

    /// Mark a pending or active grant whose lifetime is over as expired.
    pub fn expire(&self, now: OffsetDateTime) -> Result<Grant, GrantError> {
        if !matches!(self.status, GrantStatus::Pending | GrantStatus::Active) {
            return Err(GrantError::WrongStatus {
                status: self.status,
                action: "expire",
            });
        }
        if now < self.expires_at {
            return Err(GrantError::Invalid {
                field: "expires_at",
                detail: format!("grant is valid until {}", crate::rfc3339(self.expires_at)),
            });
        }
        let mut next = self.clone();
        next.set_status(GrantStatus::Expired, None, now);
        Ok(next)
    }

    fn require(&self, status: GrantStatus, action: &'static str) -> Result<(), GrantError> {
        if self.status == status {
            Ok(())
        } else {
            Err(GrantError::WrongStatus {
                status: self.status,
                action,
            })
        }
    }

    fn set_status(&mut self, status: GrantStatus, by: Option<&str>, now: OffsetDateTime) {
        self.status = status;
        self.status_changed_at = now;
        self.status_changed_by = by.map(str::to_owned);
        self.status_reason = None;
    }

    /// The same grant with the reason for its last status change (cut at 1 KiB).
    pub fn with_reason(mut self, reason: Option<&str>) -> Self {
        self.status_reason = reason.map(str::trim).filter(|r| !r.is_empty()).map(|r| {
            let mut end = r.len().min(1024);
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r[..end].to_owned()
        });
        self
    }
}

fn non_empty(field: &'static str, value: &str) -> Result<(), GrantError> {
    if value.trim().is_empty() {
        Err(GrantError::Invalid {
            field,
            detail: "must not be empty".to_owned(),
        })
    } else {
        Ok(())
    }
}

fn check_role(role_arn: &str) -> Result<(), GrantError> {
    let bad = |detail: String| GrantError::Invalid {
        field: "role_arn",
        detail,
    };
    let [_, service, _, account, resource] =
        arn::split(role_arn).map_err(|e| bad(format!("malformed arn `{role_arn}`: {}", e.0)))?;
    if service != "iam" || !resource.starts_with("role/") || account.is_empty() {
        return Err(bad(format!(
            "`{role_arn}` is not an iam role arn (`arn:aws:iam::ACCOUNT:role/NAME`)"
        )));
    }
    Ok(())
}

// === impl GrantStatus ===

impl GrantStatus {
    /// Whether no further transition is possible.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Denied | Self::Revoked | Self::Expired)
    }

    /// The status as lower-case text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Denied => "denied",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

impl fmt::Display for GrantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
