//! Custody per-task grants: the scope language, the pure allow/deny decision, session-policy
//! rendering and the grant store.
//!
//! A [`Grant`] lets one agent identity do one task: a narrow [`Scope`] of IAM-style
//! statements, a few regions, a short lifetime, approvals, an optional request budget, and its
//! own AWS-shaped credential pair ([`AccessKeyId`], [`AgentSecret`]). [`decide`] is a pure
//! function of the grant, the classified request and the time; it never fails, and every
//! [`Decision`] carries its [`Reason`]. [`Scope::session_policy`] renders the scope for STS,
//! the second fence at AWS itself. [`GrantStore`] keeps grants; [`FileGrantStore`] is the
//! embedded default.
//!
//! # Semantics, briefly
//! - **Actions** are `service:Name` patterns with `*` / `?` in the name (not in the service
//!   prefix, which IAM refuses too), matched case-insensitively.
//! - **Resources** are six-part ARN patterns matched case-sensitively and per segment: a
//!   wildcard in partition, service, region or account stays inside that segment, the
//!   resource part is matched whole (across `/` and `:`). `*` alone matches everything,
//!   including the `*` of an action without a resource; no other pattern matches that `*`.
//! - **`NotAction` / `NotResource`** cover everything their list does not match.
//! - **An unknown resource** (a request resource `*`: the classifier could not name it)
//!   could be any resource, and is decided soundly over that set: an `Allow` covers it
//!   only with `Resource: "*"` (never through `NotResource`), and a `Deny` applies if it
//!   could match any resource (any `Resource`, or a `NotResource` without `*`).
//! - **Source addresses** are compared canonically: `::ffff:203.0.113.9` is `203.0.113.9`.
//! - **Conditions**: values of one key are alternatives, keys and operators all must hold; a
//!   key the request lacks fails a positive operator and satisfies a negated one (as in IAM).
//! - **Decision**: status, validity window, budget, region, then scope. An explicit `Deny`
//!   on any action/resource pair wins, every pair needs an `Allow`, and credential-minting
//!   actions ([`CREDENTIAL_MINTING_ACTIONS`]) count as allowed only when named literally.
//! - **Budget**: [`GrantStore::record_use`] returns the number of earlier requests, which
//!   goes into [`AccessRequest::requests_so_far`]; the request is allowed while that is below
//!   the budget.
//!
//! ```
//! use custody_grant::{
//!     decide, AccessRequest, ActionRequest, ApprovalPolicy, Grant, GrantRequest, Limits,
//!     Reason, Scope, Task,
//! };
//! use time::{macros::datetime, Duration};
//!
//! let scope = Scope::from_iam_json(r#"{
//!     "Version": "2012-10-17",
//!     "Statement": [
//!         {"Sid": "ReadReports", "Effect": "Allow", "Action": "s3:Get*",
//!          "Resource": "arn:aws:s3:::reports/*"},
//!         {"Sid": "NotSecrets", "Effect": "Deny", "Action": "s3:*",
//!          "Resource": "arn:aws:s3:::reports/secret/*"}
//!     ]
//! }"#)?;
//! let now = datetime!(2026-01-01 12:00 UTC);
//! let issued = Grant::issue(
//!     GrantRequest {
//!         identity: "agent:report-bot".into(),
//!         task: Task { id: "T-42".into(), intent: "Summarise last month's reports".into() },
//!         requester: "alice".into(),
//!         role_arn: "arn:aws:iam::123456789012:role/reports-reader".into(),
//!         regions: vec!["eu-west-1".into()],
//!         scope,
//!         not_before: None,
//!         ttl: Duration::hours(1),
//!         approval_policy: ApprovalPolicy { required: 1, approvers: vec!["bob".into()] },
//!         request_budget: Some(1000),
//!     },
//!     &Limits { default_max_ttl: Duration::hours(4), max_ttl_by_role: Default::default() },
//!     now,
//! )?;
//! let grant = issued.grant.approve("bob", now)?;
//!
//! let request = AccessRequest {
//!     actions: vec![ActionRequest {
//!         action: "s3:GetObject".into(),
//!         resources: vec!["arn:aws:s3:::reports/2025-12.csv".into()],
//!         named_explicitly: false,
//!     }],
//!     region: Some("eu-west-1".into()),
//!     ..AccessRequest::default()
//! };
//! let decision = decide(&grant, &request, now);
//! assert!(decision.allowed);
//! assert_eq!(decision.reason.to_string(), "allowed by statement `ReadReports`");
//!
//! let mut secret = request.clone();
//! secret.actions[0].resources[0] = "arn:aws:s3:::reports/secret/keys.txt".into();
//! let decision = decide(&grant, &secret, now);
//! assert!(!decision.allowed);
//! assert!(matches!(decision.reason, Reason::ExplicitDeny { .. }));
//!
//! // The same scope, as the session policy the broker sends to STS.
//! assert!(grant.scope.session_policy()?.starts_with(r#"{"Statement":["#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod arn;
mod credentials;
mod decide;
mod decision;
mod grant;
pub mod iam;
mod scope;
mod store;
mod wildcard;

pub use credentials::{
    ACCESS_KEY_PREFIX, AccessKeyId, AgentSecret, CredentialError, GrantId, generate_credentials,
};
pub use decide::{AccessRequest, ActionRequest, CREDENTIAL_MINTING_ACTIONS, decide};
pub use decision::{Decision, Reason, StatementRef};
pub use grant::{
    Approval, ApprovalPolicy, Grant, GrantError, GrantRequest, GrantStatus, IssuedGrant, Limits,
    Task,
};
pub use scope::{
    Condition, Effect, PolicyTooLarge, SESSION_POLICY_LIMIT, Scope, ScopeError, Statement,
};
pub use store::{
    FileGrantStore, GrantFilter, GrantStore, StoreError, USE_RESERVATION, USE_RESERVATION_MAX,
    use_reservation,
};

/// RFC 3339 text for messages (falls back to the default format, which cannot fail).
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
