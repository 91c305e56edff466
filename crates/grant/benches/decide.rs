//! Decisions per second for a 1-statement and a 25-statement grant.
//!
//! `cargo bench -p custody-grant --bench decide`; criterion reports time per decision and,
//! through `Throughput::Elements(1)`, decisions per second.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark setup fails loudly"
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_main};
use custody_grant::{
    AccessKeyId, AccessRequest, ActionRequest, ApprovalPolicy, Grant, GrantId, GrantStatus, Scope,
    Task, decide,
};
use time::macros::datetime;

fn grant(scope: Scope) -> Grant {
    Grant {
        id: GrantId::parse("grant-bench").unwrap(),
        identity: "agent:bench".to_owned(),
        task: Task {
            id: "B-1".to_owned(),
            intent: "benchmark".to_owned(),
        },
        requester: "alice".to_owned(),
        role_arn: "arn:aws:iam::123456789012:role/bench".to_owned(),
        regions: vec!["eu-west-1".to_owned(), "us-east-1".to_owned()],
        scope,
        not_before: datetime!(2026-06-01 11:00 UTC),
        expires_at: datetime!(2026-06-01 14:00 UTC),
        status: GrantStatus::Active,
        approvals: Vec::new(),
        approval_policy: ApprovalPolicy::default(),
        request_budget: Some(1_000_000),
        access_key_id: AccessKeyId::parse("AKCUBENCHBENCHBENCH0").unwrap(),
        created_at: datetime!(2026-06-01 10:00 UTC),
        status_changed_at: datetime!(2026-06-01 10:00 UTC),
        status_changed_by: None,
        status_reason: None,
    }
}

/// 25 statements: 20 allows over different services and buckets (a few with conditions) and
/// 5 denies; the benchmarked request is allowed by the 24th, so every statement is examined.
fn scope_25() -> Scope {
    let mut statements = Vec::new();
    for i in 0..18 {
        statements.push(format!(
            r#"{{"Sid":"Read{i}","Effect":"Allow","Action":["s3:GetObject","s3:GetObjectVersion","s3:ListBucket"],"Resource":["arn:aws:s3:::bucket-{i}","arn:aws:s3:::bucket-{i}/reports/*"]}}"#
        ));
    }
    statements.push(r#"{"Sid":"Queue","Effect":"Allow","Action":"sqs:*","Resource":"arn:aws:sqs:*:123456789012:jobs-*","Condition":{"StringEquals":{"aws:RequestedRegion":["eu-west-1","us-east-1"]}}}"#.to_owned());
    statements.push(r#"{"Sid":"Tables","Effect":"Allow","Action":["dynamodb:GetItem","dynamodb:Query"],"Resource":"arn:aws:dynamodb:eu-west-1:123456789012:table/orders*"}"#.to_owned());
    statements.push(r#"{"Sid":"NoDelete","Effect":"Deny","Action":["s3:Delete*","s3:PutBucket*"],"Resource":"*"}"#.to_owned());
    statements.push(r#"{"Sid":"NoSecrets","Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::*/secret/*"}"#.to_owned());
    statements.push(r#"{"Sid":"NoIam","Effect":"Deny","NotAction":["s3:*","sqs:*","dynamodb:*"],"Resource":"*"}"#.to_owned());
    statements.push(r#"{"Sid":"Write","Effect":"Allow","Action":["s3:PutObject","s3:GetObject"],"Resource":"arn:aws:s3:::out/runs/*","Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.0.2.0/24"]}}}"#.to_owned());
    statements.push(r#"{"Sid":"Office","Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":["10.0.0.0/8","192.0.2.0/24"]}}}"#.to_owned());
    let json = format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        statements.join(",")
    );
    let scope = Scope::from_iam_json(&json).unwrap();
    assert_eq!(scope.statements().len(), 25);
    scope
}

fn request(action: &str, resource: &str) -> AccessRequest {
    AccessRequest {
        actions: vec![ActionRequest {
            action: action.to_owned(),
            resources: vec![resource.to_owned()],
            named_explicitly: false,
        }],
        region: Some("eu-west-1".to_owned()),
        source_ip: Some("10.1.2.3".parse().unwrap()),
        requests_so_far: 41,
        ..AccessRequest::default()
    }
}

fn bench(c: &mut Criterion) {
    // First use of the IAM reference data: index every service, then parse one, then all.
    let t = std::time::Instant::now();
    let one_service = custody_grant::iam::lookup("s3:GetObject").is_some();
    let first = t.elapsed();
    let t = std::time::Instant::now();
    let all = custody_grant::iam::expand("*").len();
    println!(
        "iam data first use: index + s3 {first:?} ({one_service}), the other services {:?} ({all} actions, {} bytes embedded)",
        t.elapsed(),
        custody_grant::iam::embedded_bytes()
    );
    c.bench_function("iam expand s3:Get*", |b| {
        b.iter(|| custody_grant::iam::expand(black_box("s3:Get*")).len())
    });
    let now = datetime!(2026-06-01 12:00 UTC);
    let one = grant(
        Scope::from_cli(["--allow", "s3:Get*", "--resource", "arn:aws:s3:::reports/*"]).unwrap(),
    );
    let many = grant(scope_25());
    let get = request("s3:GetObject", "arn:aws:s3:::reports/2026/05.csv");
    let put = request("s3:PutObject", "arn:aws:s3:::out/runs/42/result.json");
    let outside = request("s3:GetObject", "arn:aws:s3:::elsewhere/k");
    let mut copy = put.clone();
    copy.actions.insert(
        0,
        ActionRequest {
            action: "s3:GetObject".to_owned(),
            resources: vec!["arn:aws:s3:::bucket-17/reports/a.csv".to_owned()],
            named_explicitly: false,
        },
    );
    assert!(decide(&one, &get, now).allowed);
    assert!(decide(&many, &put, now).allowed);
    assert!(!decide(&many, &outside, now).allowed);
    assert!(decide(&many, &copy, now).allowed);

    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(1));
    g.bench_function("1 statement, allowed", |b| {
        b.iter(|| decide(black_box(&one), black_box(&get), now))
    });
    g.bench_function("25 statements, allowed by the 24th", |b| {
        b.iter(|| decide(black_box(&many), black_box(&put), now))
    });
    g.bench_function("25 statements, not in scope", |b| {
        b.iter(|| decide(black_box(&many), black_box(&outside), now))
    });
    g.bench_function("25 statements, copy (2 actions)", |b| {
        b.iter(|| decide(black_box(&many), black_box(&copy), now))
    });
    g.finish();
}

mod group {
    // Private, so the generated `pub fn` needs no docs.
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
