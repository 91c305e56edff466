//! The outcome of a decision and its reasons.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The outcome of [`crate::decide`]: allowed or not, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request may be forwarded.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
}

/// A statement cited by a decision: its `Sid` if it has one, and always its index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementRef {
    /// Position in the scope, from 0.
    pub index: usize,
    /// The statement's `Sid`.
    pub sid: Option<String>,
}

/// Why a request was allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// Every action/resource pair is allowed; `by` cites one statement per pair, in request
    /// order.
    Allowed {
        /// The allowing statements.
        by: Vec<StatementRef>,
    },
    /// A `Deny` statement covers a pair.
    ExplicitDeny {
        /// The denying statement.
        statement: StatementRef,
        /// The action.
        action: String,
        /// The resource.
        resource: String,
    },
    /// No `Allow` covers a pair.
    NotInScope {
        /// The action.
        action: String,
        /// The resource.
        resource: String,
    },
    /// A credential-minting action is only covered through a wildcard or `NotAction`.
    NotNamedExplicitly {
        /// The action.
        action: String,
        /// The resource.
        resource: String,
    },
    /// The grant awaits approval.
    GrantPending,
    /// The grant was rejected.
    GrantDenied,
    /// The grant was revoked.
    GrantRevoked,
    /// The grant's lifetime is over.
    GrantExpired {
        /// End of validity.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// The grant's lifetime has not started.
    NotYetValid {
        /// Start of validity.
        #[serde(with = "time::serde::rfc3339")]
        not_before: OffsetDateTime,
    },
    /// The request targets a region the grant does not list.
    WrongRegion {
        /// The requested region.
        region: String,
    },
    /// The grant lists regions but the request carries none.
    RegionUnknown,
    /// The request budget is used up.
    OverBudget {
        /// The grant's budget.
        budget: u64,
        /// Requests served before this one.
        used: u64,
    },
    /// The request names no action.
    EmptyRequest,
    /// The request could not be evaluated (an internal or classification error): denied.
    MalformedRequest {
        /// The offending field.
        field: String,
        /// What is wrong.
        detail: String,
    },
}

// === impl Decision ===

impl Decision {
    /// A deny with `reason`, e.g. for a request the gateway could not classify.
    pub fn deny(reason: Reason) -> Self {
        Self {
            allowed: false,
            reason,
        }
    }

    /// Whether the request may be forwarded.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "allow" } else { "deny" };
        write!(f, "{verdict}: {}", self.reason)
    }
}

impl fmt::Display for StatementRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sid {
            Some(sid) => write!(f, "statement `{sid}`"),
            None => write!(f, "statement #{}", self.index),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allowed { by } => {
                f.write_str("allowed by ")?;
                let mut seen: Vec<&StatementRef> = Vec::new();
                for s in by {
                    if !seen.contains(&s) {
                        seen.push(s);
                    }
                }
                for (i, s) in seen.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{s}")?;
                }
                Ok(())
            }
            Self::ExplicitDeny {
                statement,
                action,
                resource,
            } => write!(
                f,
                "`{action}` on `{resource}` is explicitly denied by {statement}"
            ),
            Self::NotInScope { action, resource } => {
                write!(f, "`{action}` on `{resource}` is not in the grant's scope")
            }
            Self::NotNamedExplicitly { action, resource } => write!(
                f,
                "`{action}` on `{resource}` mints credentials and must be named explicitly in the scope, not through a wildcard"
            ),
            Self::GrantPending => f.write_str("grant is pending approval"),
            Self::GrantDenied => f.write_str("grant was denied"),
            Self::GrantRevoked => f.write_str("grant is revoked"),
            Self::GrantExpired { expires_at } => {
                write!(f, "grant expired at {}", crate::rfc3339(*expires_at))
            }
            Self::NotYetValid { not_before } => {
                write!(
                    f,
                    "grant is not valid before {}",
                    crate::rfc3339(*not_before)
                )
            }
            Self::WrongRegion { region } => {
                write!(f, "region `{region}` is not allowed by the grant")
            }
            Self::RegionUnknown => {
                f.write_str("request has no region and the grant is limited to regions")
            }
            Self::OverBudget { budget, used } => write!(
                f,
                "request budget of {budget} is used up ({used} requests so far)"
            ),
            Self::EmptyRequest => f.write_str("request names no action"),
            Self::MalformedRequest { field, detail } => {
                write!(f, "request cannot be evaluated: `{field}`: {detail}")
            }
        }
    }
}
