//! Properties of `decide` and the scope parser over generated policies and requests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use common::{NOW, grant};
use custody_grant::{AccessRequest, ActionRequest, GrantStatus, Scope, decide};
use proptest::prelude::*;
use serde_json::{Value, json};
use time::Duration;

/// Action patterns over a small alphabet, so that they often match the requests.
fn action_pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("*".to_owned()),
        6 => "(s3|sqs|s\\*|\\*):[aAbB*?]{1,3}",
        1 => ".{0,8}",
    ]
}

fn resource_pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("*".to_owned()),
        6 => "arn:aws:(s3|sqs|s\\*):[e*?]{0,2}:[1*]{0,2}:[xy/:*?]{1,4}",
        1 => ".{0,12}",
    ]
}

fn request_action() -> impl Strategy<Value = String> {
    prop_oneof![6 => "(s3|sqs|S3):[aAbB]{1,2}", 1 => ".{0,10}"]
}

fn request_resource() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("*".to_owned()),
        6 => "arn:aws:(s3|sqs):e?:1?:[xy/:]{1,3}",
        1 => ".{0,16}",
    ]
}

fn condition() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))),
        1 => Just(Some(json!({"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.0.2.1"]}}))),
        1 => Just(Some(json!({"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}))),
        1 => Just(Some(json!({"StringNotLike": {"s3:prefix": "x*"}}))),
        1 => Just(Some(json!({"DateLessThan": {"aws:CurrentTime": "2026-06-01T12:30:00Z"}}))),
    ]
}

fn statement(effect: &'static str) -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        prop::collection::vec(action_pattern(), 1..3),
        any::<bool>(),
        prop::collection::vec(resource_pattern(), 1..3),
        condition(),
    )
        .prop_map(
            move |(not_action, actions, not_resource, resources, condition)| {
                let mut s = serde_json::Map::new();
                s.insert("Effect".to_owned(), json!(effect));
                s.insert(
                    if not_action { "NotAction" } else { "Action" }.to_owned(),
                    json!(actions),
                );
                s.insert(
                    if not_resource {
                        "NotResource"
                    } else {
                        "Resource"
                    }
                    .to_owned(),
                    json!(resources),
                );
                if let Some(c) = condition {
                    s.insert("Condition".to_owned(), c);
                }
                Value::Object(s)
            },
        )
}

fn any_statement() -> impl Strategy<Value = Value> {
    prop_oneof![statement("Allow"), statement("Deny")]
}

fn access_request() -> impl Strategy<Value = AccessRequest> {
    (
        prop::collection::vec(
            (
                request_action(),
                prop::collection::vec(request_resource(), 0..3),
            ),
            1..3,
        ),
        prop::option::of(prop_oneof![
            Just("eu-west-1".to_owned()),
            Just("us-east-1".to_owned())
        ]),
        prop::option::of(prop_oneof![
            Just("10.1.2.3"),
            Just("192.0.2.1"),
            Just("::1")
        ]),
        prop::option::of(prop_oneof![Just("xyz"), Just("abc")]),
        0u64..20,
    )
        .prop_map(|(actions, region, ip, prefix, used)| AccessRequest {
            actions: actions
                .into_iter()
                .map(|(action, resources)| ActionRequest {
                    action,
                    resources,
                    named_explicitly: false,
                })
                .collect(),
            region,
            source_ip: ip.map(|ip| ip.parse().unwrap()),
            context: prefix
                .map(|p| {
                    [("s3:prefix".to_owned(), p.to_owned())]
                        .into_iter()
                        .collect()
                })
                .unwrap_or_default(),
            requests_so_far: used,
        })
}

/// The statements that parse (arbitrary patterns are often malformed on purpose).
fn scope_of(statements: &[Value]) -> Scope {
    let ok: Vec<Value> = statements
        .iter()
        .filter(|s| Scope::from_iam_json(&json!({"Statement": [s]}).to_string()).is_ok())
        .cloned()
        .collect();
    Scope::from_iam_json(&json!({"Statement": ok}).to_string()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decide_never_panics(statements in prop::collection::vec(any_statement(), 0..6), req in access_request(), minutes in -180i64..180) {
        let mut g = grant(scope_of(&statements));
        g.request_budget = Some(10);
        let _ = decide(&g, &req, NOW + Duration::minutes(minutes));
    }

    #[test]
    fn no_allow_never_allows(statements in prop::collection::vec(statement("Deny"), 0..6), req in access_request()) {
        let g = grant(scope_of(&statements));
        prop_assert!(!decide(&g, &req, NOW).allowed);
    }

    #[test]
    fn adding_a_deny_never_allows_more(
        statements in prop::collection::vec(any_statement(), 0..6),
        deny in statement("Deny"),
        at in 0usize..7,
        req in access_request(),
    ) {
        let before = scope_of(&statements);
        let mut with_deny: Vec<Value> = serde_json::to_value(&before).unwrap()["Statement"].as_array().unwrap().clone();
        let after = if Scope::from_iam_json(&json!({"Statement": [&deny]}).to_string()).is_ok() {
            with_deny.insert(at.min(with_deny.len()), deny);
            scope_of(&with_deny)
        } else {
            before.clone()
        };
        let d1 = decide(&grant(before), &req, NOW);
        let d2 = decide(&grant(after), &req, NOW);
        prop_assert!(d1.allowed || !d2.allowed, "deny turned into allow: {} -> {}", d1, d2);
    }

    #[test]
    fn expired_or_revoked_never_allows(
        statements in prop::collection::vec(any_statement(), 0..4),
        req in access_request(),
        status in prop_oneof![Just(GrantStatus::Revoked), Just(GrantStatus::Expired), Just(GrantStatus::Denied), Just(GrantStatus::Pending)],
        late in 0i64..10_000,
    ) {
        let mut all = statements.clone();
        all.push(json!({"Effect": "Allow", "Action": "*", "Resource": "*"}));
        let mut g = grant(scope_of(&all));
        let active_but_late = g.clone();
        g.status = status;
        prop_assert!(!decide(&g, &req, NOW).allowed);
        let at = active_but_late.expires_at + Duration::seconds(late);
        prop_assert!(!decide(&active_but_late, &req, at).allowed);
    }

    #[test]
    fn parser_never_panics(text in ".{0,200}") {
        let _ = Scope::from_iam_json(&text);
    }

    #[test]
    fn parser_round_trips(statements in prop::collection::vec(any_statement(), 0..6)) {
        let scope = scope_of(&statements);
        let json = serde_json::to_string(&scope).unwrap();
        let back = Scope::from_iam_json(&json).unwrap();
        prop_assert_eq!(&back, &scope);
        // The session policy is the same policy minus source-address conditions.
        if let Ok(policy) = scope.session_policy() {
            prop_assert!(Scope::from_iam_json(&policy).is_ok());
        }
    }

    #[test]
    fn cli_never_panics(args in prop::collection::vec(prop_oneof![Just("--allow".to_owned()), Just("--deny".to_owned()), Just("--resource".to_owned()), Just("--sid".to_owned()), ".{0,12}"], 0..8)) {
        let _ = Scope::from_cli(&args);
    }
}

/// Guard against vacuous properties: the generators must produce allowed requests too.
#[test]
fn generators_exercise_allows_and_denies() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (
        prop::collection::vec(any_statement(), 1..6),
        access_request(),
    );
    let (mut allowed, mut explicit) = (0, 0);
    for _ in 0..2000 {
        let (statements, req) = strategy.new_tree(&mut runner).unwrap().current();
        let d = decide(&grant(scope_of(&statements)), &req, NOW);
        allowed += usize::from(d.allowed);
        explicit += usize::from(matches!(
            d.reason,
            custody_grant::Reason::ExplicitDeny { .. }
        ));
    }
    assert!(allowed > 50, "only {allowed} of 2000 allowed");
    assert!(explicit > 50, "only {explicit} of 2000 explicitly denied");
}
