//! The pure allow/deny decision.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::decision::{Decision, Reason, StatementRef};
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
    /// Covered only when the scope names the action literally, as for
    /// [`CREDENTIAL_MINTING_ACTIONS`]: set by a caller that knows the request mints
    /// credentials or tokens although its action is not on that list (an EKS token
    /// presign, an SSM session).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub named_explicitly: bool,
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
        // `::ffff:203.0.113.9` is 203.0.113.9, as IAM sees a dual-stack client.
        source_ip: request.source_ip.map(|ip| ip.to_canonical()),
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
        let explicit_only = wanted.named_explicitly || CREDENTIAL_MINTING_ACTIONS.contains(&folded);
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
