//! Grant-level checks in `decide` (status, window, budget, region) and the approval rules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::collections::BTreeMap;

use common::{NOW, grant, grant_json, request};
use custody_grant::{
    ApprovalPolicy, Grant, GrantError, GrantRequest, GrantStatus, Limits, Reason, Scope, Task,
    decide,
};
use time::Duration;
use time::macros::datetime;

const ALL: &str = r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

#[test]
fn grant_checks_table() {
    let base = grant_json(ALL);
    let req = request(&[("s3:GetObject", &["arn:aws:s3:::b/k"])]);
    let with = |f: &dyn Fn(&mut Grant)| {
        let mut g = base.clone();
        f(&mut g);
        g
    };
    let rows: Vec<(
        &str,
        Grant,
        custody_grant::AccessRequest,
        time::OffsetDateTime,
        &str,
    )> = vec![
        (
            "active",
            base.clone(),
            req.clone(),
            NOW,
            "allow: allowed by statement #0",
        ),
        (
            "pending",
            with(&|g| g.status = GrantStatus::Pending),
            req.clone(),
            NOW,
            "deny: grant is pending approval",
        ),
        (
            "denied",
            with(&|g| g.status = GrantStatus::Denied),
            req.clone(),
            NOW,
            "deny: grant was denied",
        ),
        (
            "revoked",
            with(&|g| g.status = GrantStatus::Revoked),
            req.clone(),
            NOW,
            "deny: grant is revoked",
        ),
        (
            "expired status",
            with(&|g| g.status = GrantStatus::Expired),
            req.clone(),
            NOW,
            "deny: grant expired at 2026-06-01T14:00:00Z",
        ),
        (
            "past expiry",
            base.clone(),
            req.clone(),
            datetime!(2026-06-01 14:00 UTC),
            "deny: grant expired at 2026-06-01T14:00:00Z",
        ),
        (
            "before not_before",
            base.clone(),
            req.clone(),
            datetime!(2026-06-01 10:59:59 UTC),
            "deny: grant is not valid before 2026-06-01T11:00:00Z",
        ),
        (
            "wrong region",
            with(&|g| g.regions = vec!["us-east-1".to_owned()]),
            req.clone(),
            NOW,
            "deny: region `eu-west-1` is not allowed by the grant",
        ),
        (
            "listed region",
            with(&|g| g.regions = vec!["us-east-1".to_owned(), "eu-west-1".to_owned()]),
            req.clone(),
            NOW,
            "allow: allowed by statement #0",
        ),
        (
            "region unknown",
            with(&|g| g.regions = vec!["us-east-1".to_owned()]),
            {
                let mut r = req.clone();
                r.region = None;
                r
            },
            NOW,
            "deny: request has no region and the grant is limited to regions",
        ),
        (
            "under budget",
            with(&|g| g.request_budget = Some(10)),
            {
                let mut r = req.clone();
                r.requests_so_far = 9;
                r
            },
            NOW,
            "allow: allowed by statement #0",
        ),
        (
            "over budget",
            with(&|g| g.request_budget = Some(10)),
            {
                let mut r = req.clone();
                r.requests_so_far = 10;
                r
            },
            NOW,
            "deny: request budget of 10 is used up (10 requests so far)",
        ),
        (
            "empty request",
            base.clone(),
            request(&[]),
            NOW,
            "deny: request names no action",
        ),
    ];
    for (name, g, r, now, want) in rows {
        assert_eq!(decide(&g, &r, now).to_string(), want, "{name}");
    }
}

#[test]
fn decision_round_trips_through_json() {
    let g = grant_json(ALL);
    let mut g2 = g.clone();
    g2.status = GrantStatus::Expired;
    for d in [
        decide(
            &g,
            &request(&[("s3:GetObject", &["arn:aws:s3:::b/k"])]),
            NOW,
        ),
        decide(
            &g2,
            &request(&[("s3:GetObject", &["arn:aws:s3:::b/k"])]),
            NOW,
        ),
    ] {
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            serde_json::from_str::<custody_grant::Decision>(&json).unwrap(),
            d,
            "{json}"
        );
    }
    // The verifier re-runs decide from the logged grant and request.
    let json = serde_json::to_string(&g).unwrap();
    let back: Grant = serde_json::from_str(&json).unwrap();
    assert_eq!(back, g);
    let req = request(&[("s3:GetObject", &["arn:aws:s3:::b/k"])]);
    let req_back = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
    assert_eq!(decide(&back, &req_back, NOW), decide(&g, &req, NOW));
}

fn ask(required: u32, approvers: &[&str]) -> GrantRequest {
    GrantRequest {
        identity: "agent:report-bot".to_owned(),
        task: Task {
            id: "T-1".to_owned(),
            intent: "read reports".to_owned(),
        },
        requester: "alice".to_owned(),
        role_arn: "arn:aws:iam::123456789012:role/reader".to_owned(),
        regions: vec!["eu-west-1".to_owned()],
        scope: Scope::from_iam_json(ALL).unwrap(),
        not_before: None,
        ttl: Duration::hours(1),
        approval_policy: ApprovalPolicy {
            required,
            approvers: approvers.iter().map(|a| (*a).to_owned()).collect(),
        },
        request_budget: None,
    }
}

fn limits() -> Limits {
    Limits {
        default_max_ttl: Duration::hours(4),
        max_ttl_by_role: BTreeMap::from([(
            "arn:aws:iam::123456789012:role/admin".to_owned(),
            Duration::minutes(15),
        )]),
    }
}

#[test]
fn approvals() {
    let issued = Grant::issue(ask(2, &["alice", "bob", "carol"]), &limits(), NOW).unwrap();
    let g = issued.grant;
    assert_eq!(g.status, GrantStatus::Pending);
    assert_eq!(g.expires_at, NOW + Duration::hours(1));
    assert!(!format!("{:?}", issued.secret).contains(issued.secret.expose_secret()));
    assert_eq!(
        g.approve("alice", NOW),
        Err(GrantError::SelfApproval("alice".to_owned()))
    );
    assert_eq!(
        g.approve("mallory", NOW),
        Err(GrantError::NotAnApprover("mallory".to_owned()))
    );
    let g = g.approve("bob", NOW).unwrap();
    assert_eq!(g.status, GrantStatus::Pending);
    assert_eq!(
        g.approve("bob", NOW),
        Err(GrantError::AlreadyApproved("bob".to_owned()))
    );
    let g = g.approve("carol", NOW).unwrap();
    assert_eq!(g.status, GrantStatus::Active);
    assert_eq!(g.approvals.len(), 2);
    assert_eq!(g.status_changed_by.as_deref(), Some("carol"));
    assert!(matches!(
        g.approve("carol", NOW),
        Err(GrantError::WrongStatus { .. })
    ));
    let r = g.revoke("dave", NOW).unwrap();
    assert_eq!(r.status, GrantStatus::Revoked);
    assert!(matches!(
        r.revoke("dave", NOW),
        Err(GrantError::WrongStatus { .. })
    ));
    assert!(matches!(
        r.expire(NOW + Duration::hours(2)),
        Err(GrantError::WrongStatus { .. })
    ));
    assert!(g.expire(NOW).is_err());
    assert_eq!(
        g.expire(NOW + Duration::hours(1)).unwrap().status,
        GrantStatus::Expired
    );
}

#[test]
fn deny_and_no_approval() {
    let g = Grant::issue(ask(1, &["bob"]), &limits(), NOW)
        .unwrap()
        .grant;
    assert!(g.deny("alice", NOW).is_err());
    assert_eq!(g.deny("bob", NOW).unwrap().status, GrantStatus::Denied);
    let g = Grant::issue(ask(0, &[]), &limits(), NOW).unwrap().grant;
    assert_eq!(g.status, GrantStatus::Active);
}

#[test]
fn issue_refuses() {
    // More approvals required than eligible approvers (the requester never counts).
    let err = Grant::issue(ask(2, &["alice", "bob"]), &limits(), NOW).unwrap_err();
    assert!(err.to_string().contains("only 1 eligible"), "{err}");
    let mut r = ask(0, &[]);
    r.role_arn = "arn:aws:iam::123456789012:role/admin".to_owned();
    let err = Grant::issue(r, &limits(), NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ttl of 3600s exceeds the 900s limit for role `arn:aws:iam::123456789012:role/admin`"
    );
    let mut r = ask(0, &[]);
    r.role_arn = "arn:aws:s3:::bucket".to_owned();
    assert!(
        Grant::issue(r, &limits(), NOW)
            .unwrap_err()
            .to_string()
            .contains("role_arn")
    );
    let mut r = ask(0, &[]);
    r.regions = vec!["EU West".to_owned()];
    assert!(Grant::issue(r, &limits(), NOW).is_err());
    let mut r = ask(0, &[]);
    r.ttl = Duration::ZERO;
    assert!(Grant::issue(r, &limits(), NOW).is_err());
}

#[test]
fn reasons_serialize_with_kind() {
    let g = grant(Scope::new(Vec::new()));
    let d = decide(&g, &request(&[("s3:GetObject", &["*"])]), NOW);
    assert!(matches!(d.reason, Reason::NotInScope { .. }));
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["reason"]["kind"], "not_in_scope");
    assert_eq!(v["allowed"], false);
}
