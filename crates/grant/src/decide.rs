//! The pure allow/deny decision.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::grant::{Grant, GrantStatus};
use crate::scope::{Effect, EvalContext, PreparedResource, Statement};

/// What a request needs, as classified by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccessRequest {
    /// Every IAM action the operation needs, each with its resources
    /// (CopyObject: `s3:GetObject` on the source and `s3:PutObject` on the target).
    pub actions: Vec<ActionRequest>,
    /// The region the request targets (the SigV4 scope region).
    pub region: Option<String>,
    /// The agent's address as the gateway sees it.
    pub source_ip: Option<IpAddr>,
    /// Extra condition keys, lower case, e.g. `s3:prefix`.
    #[serde(default)]
    pub context: BTreeMap<String, String>,
    /// Requests the grant served before this one (see `GrantStore::record_use`).
    #[serde(default)]
    pub requests_so_far: u64,
}

/// One IAM action and the resources it touches.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ActionRequest {
    /// The action, e.g. `s3:GetObject` (compared case-insensitively).
    pub action: String,
    /// Resource ARNs; `*` for an action without a resource. Empty is read as `["*"]`.
    pub resources: Vec<String>,
}

/// The outcome of [`decide`]: allowed or not, and why.
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

/// Actions that mint credentials or tokens: a grant covers them only by naming them
/// literally in an `Action` list, never through `*`, `sts:*` or `NotAction`.
pub const CREDENTIAL_MINTING_ACTIONS: &[&str] = &[
    "sts:assumerole",
    "sts:assumerolewithsaml",
    "sts:assumerolewithwebidentity",
    "sts:assumeroot",
    "sts:getsessiontoken",
    "sts:getfederationtoken",
    "sts:getservicebearertoken",
    "iam:createaccesskey",
    "iam:createloginprofile",
    "iam:createservicespecificcredential",
    "s3express:createsession",
    "ecr:getauthorizationtoken",
    "ecr-public:getauthorizationtoken",
    "codeartifact:getauthorizationtoken",
    "rds-db:connect",
    "redshift:getclustercredentials",
    "sso:getrolecredentials",
];

/// Decide `request` against `grant` at `now`. Pure and deterministic.
///
/// In order: grant status, validity window, budget, region, then scope — deny by default,
/// an explicit `Deny` on any pair wins, and every action/resource pair must be allowed.
/// Never fails: anything that cannot be evaluated is a deny with
/// [`Reason::MalformedRequest`].
pub fn decide(grant: &Grant, request: &AccessRequest, now: OffsetDateTime) -> Decision {
    let deny = |reason| Decision {
        allowed: false,
        reason,
    };
    match grant.status {
        GrantStatus::Active => {}
        GrantStatus::Pending => return deny(Reason::GrantPending),
        GrantStatus::Denied => return deny(Reason::GrantDenied),
        GrantStatus::Revoked => return deny(Reason::GrantRevoked),
        GrantStatus::Expired => {
            return deny(Reason::GrantExpired {
                expires_at: grant.expires_at,
            });
        }
    }
    if now < grant.not_before {
        return deny(Reason::NotYetValid {
            not_before: grant.not_before,
        });
    }
    if now >= grant.expires_at {
        return deny(Reason::GrantExpired {
            expires_at: grant.expires_at,
        });
    }
    if let Some(budget) = grant.request_budget
        && request.requests_so_far >= budget
    {
        return deny(Reason::OverBudget {
            budget,
            used: request.requests_so_far,
        });
    }
    if !grant.regions.is_empty() {
        match &request.region {
            None => return deny(Reason::RegionUnknown),
            Some(region) if !grant.regions.iter().any(|r| r == region) => {
                return deny(Reason::WrongRegion {
                    region: region.clone(),
                });
            }
            Some(_) => {}
        }
    }
    if request.actions.is_empty() {
        return deny(Reason::EmptyRequest);
    }
    match evaluate_scope(grant, request, now) {
        Ok(by) => Decision {
            allowed: true,
            reason: Reason::Allowed { by },
        },
        Err(reason) => deny(reason),
    }
}

fn evaluate_scope(
    grant: &Grant,
    request: &AccessRequest,
    now: OffsetDateTime,
) -> Result<Vec<StatementRef>, Reason> {
    let ctx = EvalContext {
        now,
        region: request.region.as_deref(),
        source_ip: request.source_ip,
        context: &request.context,
    };
    let statements = grant.scope.statements();
    let mut by = Vec::with_capacity(request.actions.len());
    // The first pair without an Allow; reported only if no pair is explicitly denied.
    let mut missing: Option<Reason> = None;
    for (ai, wanted) in request.actions.iter().enumerate() {
        let action = wanted.action.as_str();
        if !well_formed_action(action) {
            return Err(Reason::MalformedRequest {
                field: format!("actions[{ai}].action"),
                detail: format!("`{action}` is not `service:Action`"),
            });
        }
        // Fold once here; every pattern is folded at parse time.
        let mut buf = [0u8; 64];
        let owned;
        let folded: &str = match buf.get_mut(..action.len()) {
            Some(dst) => {
                dst.copy_from_slice(action.as_bytes());
                dst.make_ascii_lowercase();
                match std::str::from_utf8(dst) {
                    Ok(s) => s,
                    Err(_) => {
                        owned = action.to_ascii_lowercase();
                        &owned
                    }
                }
            }
            None => {
                owned = action.to_ascii_lowercase();
                &owned
            }
        };
        let explicit_only = CREDENTIAL_MINTING_ACTIONS.contains(&folded);
        let pair = |ri: usize, text: &str, missing: &mut Option<Reason>, by: &mut Vec<_>| {
            check_pair(
                statements,
                &ctx,
                (ai, action, folded),
                (ri, text),
                explicit_only,
            )
            .map(|outcome| match outcome {
                Ok(allowed) => by.push(allowed),
                Err(reason) => {
                    missing.get_or_insert(reason);
                }
            })
        };
        if wanted.resources.is_empty() {
            pair(0, "*", &mut missing, &mut by)?;
        }
        for (ri, text) in wanted.resources.iter().enumerate() {
            pair(ri, text, &mut missing, &mut by)?;
        }
    }
    match missing {
        Some(reason) => Err(reason),
        None => Ok(by),
    }
}

/// One action/resource pair: `Err` for a decisive deny (explicit or malformed), else
/// `Ok(Ok(statement))` when allowed or `Ok(Err(reason))` when no Allow covers it.
fn check_pair(
    statements: &[Statement],
    ctx: &EvalContext<'_>,
    (ai, action, folded): (usize, &str, &str),
    (ri, text): (usize, &str),
    explicit_only: bool,
) -> Result<Result<StatementRef, Reason>, Reason> {
    let resource = PreparedResource::new(text).map_err(|why| Reason::MalformedRequest {
        field: format!("actions[{ai}].resources[{ri}]"),
        detail: format!("malformed arn `{text}`: {why}"),
    })?;
    let mut allowed_by = None;
    let mut wildcard_only = false;
    for (index, s) in statements.iter().enumerate() {
        match s.effect() {
            Effect::Deny => {
                if s.applies(folded, &resource, ctx, false) {
                    return Err(Reason::ExplicitDeny {
                        statement: cite(index, s.sid()),
                        action: action.to_owned(),
                        resource: text.to_owned(),
                    });
                }
            }
            Effect::Allow if allowed_by.is_none() => {
                if s.applies(folded, &resource, ctx, explicit_only) {
                    allowed_by = Some(cite(index, s.sid()));
                } else if explicit_only && s.applies(folded, &resource, ctx, false) {
                    wildcard_only = true;
                }
            }
            Effect::Allow => {}
        }
    }
    Ok(allowed_by.ok_or_else(|| {
        let (action, resource) = (action.to_owned(), text.to_owned());
        if wildcard_only {
            Reason::NotNamedExplicitly { action, resource }
        } else {
            Reason::NotInScope { action, resource }
        }
    }))
}

fn cite(index: usize, sid: Option<&str>) -> StatementRef {
    StatementRef {
        index,
        sid: sid.map(str::to_owned),
    }
}

fn well_formed_action(action: &str) -> bool {
    action.split_once(':').is_some_and(|(service, name)| {
        !service.is_empty()
            && !name.is_empty()
            && service
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
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
