//! Services beyond the hand-curated eleven, classified from botocore's models and the IAM
//! reference data alone: boto3 calls EventBridge, Step Functions, Kinesis, ECR, ECS,
//! CloudFormation, CloudWatch and IAM through the gateway, moto (signature checking and IAM
//! enforcement on) answers, and the log records each call with the action IAM evaluates.
//! A call outside the grant is denied and never reaches moto.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

use support::{ADMIN_TOKEN, BOB_TOKEN, Stack, python_json};

const CALLS: &str = r#"
import boto3, json
from botocore.exceptions import ClientError
out = {}
def call(name, fn):
    try:
        fn()
        out[name] = "ok"
    except ClientError as e:
        out[name] = e.response["Error"]["Code"]
call("events:ListRules", lambda: boto3.client("events").list_rules())
call("states:ListStateMachines", lambda: boto3.client("stepfunctions").list_state_machines())
call("kinesis:ListStreams", lambda: boto3.client("kinesis").list_streams())
call("ecr:DescribeRepositories", lambda: boto3.client("ecr").describe_repositories())
call("ecs:ListClusters", lambda: boto3.client("ecs").list_clusters())
call("cloudformation:ListStacks", lambda: boto3.client("cloudformation").list_stacks())
call("cloudwatch:ListMetrics", lambda: boto3.client("cloudwatch").list_metrics())
call("iam:ListRoles", lambda: boto3.client("iam").list_roles())
# Not in the grant: denied by the gateway.
call("events:PutRule", lambda: boto3.client("events").put_rule(Name="r", ScheduleExpression="rate(1 minute)"))
print(json.dumps(out))
"#;

const READS: &[&str] = &[
    "events:ListRules",
    "states:ListStateMachines",
    "kinesis:ListStreams",
    "ecr:DescribeRepositories",
    "ecs:ListClusters",
    "cloudformation:ListStacks",
    "cloudwatch:ListMetrics",
    "iam:ListRoles",
];

#[test]
fn services_classified_from_the_models_reach_moto_and_are_recorded() {
    let stack = Stack::start();
    let gw = &stack.gateway;
    let allow = READS.join(",");
    let grant = gw.request(
        ADMIN_TOKEN,
        &[
            "--identity",
            "agent:etl",
            "--task",
            "inventory",
            "--intent",
            "list what runs in the account",
            "--role",
            "writer",
            "--ttl",
            "30m",
            "--allow",
            &allow,
            "--resource",
            "*",
        ],
    );
    let id = grant["id"].as_str().unwrap().to_owned();
    assert!(gw.cli(BOB_TOKEN, &["grant", "approve", &id]).success());
    let env = gw.agent_env(ADMIN_TOKEN, &id);

    let v = python_json(CALLS, &env, gw);
    for action in READS {
        assert_eq!(v[*action], "ok", "{action} through the gateway: {v}");
    }
    assert_eq!(v["events:PutRule"], "AccessDeniedException", "{v}");

    // Each call is in the log with the action IAM evaluates (the IAM prefix, not the
    // signing name: CloudWatch signs as `monitoring`, Step Functions as `states`).
    let decisions: Vec<serde_json::Value> = gw
        .entries()
        .into_iter()
        .filter(|e| e["kind"] == "request_decision")
        .collect();
    for action in READS {
        let d = decisions
            .iter()
            .find(|d| d["access"]["actions"][0]["action"] == *action)
            .unwrap_or_else(|| panic!("no decision for {action}"));
        assert_eq!(d["allowed"], true, "{d}");
    }
    let put = decisions
        .iter()
        .find(|d| d["access"]["actions"][0]["action"] == "events:PutRule")
        .unwrap();
    assert_eq!(put["allowed"], false, "{put}");
    assert!(
        !gw.entries()
            .iter()
            .any(|e| e["kind"] == "request_outcome" && e["decision_seq"] == put["seq"]),
        "a denied call has no upstream outcome"
    );
}
