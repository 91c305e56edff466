//! Shared fixtures for the integration tests.
#![allow(dead_code, reason = "each test file uses a subset")]

use custody_grant::{
    AccessKeyId, AccessRequest, ActionRequest, ApprovalPolicy, Grant, GrantId, GrantStatus, Scope,
    Task,
};
use time::OffsetDateTime;
use time::macros::datetime;

/// The fixed clock of the tests.
pub const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

/// An active grant valid 11:00–14:00 on `NOW`'s day with the given scope, any region.
pub fn grant(scope: Scope) -> Grant {
    Grant {
        id: GrantId::parse("grant-test").unwrap(),
        identity: "agent:report-bot".to_owned(),
        task: Task {
            id: "T-1".to_owned(),
            intent: "read the reports".to_owned(),
        },
        requester: "alice".to_owned(),
        role_arn: "arn:aws:iam::123456789012:role/reader".to_owned(),
        regions: Vec::new(),
        scope,
        not_before: datetime!(2026-06-01 11:00 UTC),
        expires_at: datetime!(2026-06-01 14:00 UTC),
        status: GrantStatus::Active,
        approvals: Vec::new(),
        approval_policy: ApprovalPolicy::default(),
        request_budget: None,
        access_key_id: AccessKeyId::parse("AKCUTESTTESTTESTTEST").unwrap(),
        created_at: datetime!(2026-06-01 10:00 UTC),
        status_changed_at: datetime!(2026-06-01 10:00 UTC),
        status_changed_by: None,
        status_reason: None,
    }
}

/// A grant from IAM JSON.
pub fn grant_json(policy: &str) -> Grant {
    grant(Scope::from_iam_json(policy).unwrap_or_else(|e| panic!("{policy}: {e}")))
}

/// A request for `(action, resources)` pairs in `eu-west-1`.
pub fn request(pairs: &[(&str, &[&str])]) -> AccessRequest {
    AccessRequest {
        actions: pairs
            .iter()
            .map(|(action, resources)| ActionRequest {
                action: (*action).to_owned(),
                resources: resources.iter().map(|r| (*r).to_owned()).collect(),
                named_explicitly: false,
            })
            .collect(),
        region: Some("eu-west-1".to_owned()),
        ..AccessRequest::default()
    }
}
