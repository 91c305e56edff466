//! The AWS SDK for JavaScript v3 as the agent, with default client settings
//! (`tests/peers/js-sdk/agent.mjs`; `scripts/install-test-peers.sh` installs the packages):
//! S3 put/get/list, a lib-storage multipart upload, a presigned GET, DynamoDB, and SQS,
//! whose client sends every call on a queue to the queue's URL. Every call goes through
//! the gateway and is in the log; the queue URL the agent is handed is the gateway's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

use std::path::Path;

use custody_test_support::run_node;
use support::{ADMIN_TOKEN, BOB_TOKEN, Stack};

#[test]
fn the_javascript_sdk_with_default_settings_stays_on_the_gateway() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/js-sdk/agent.mjs");
    assert!(
        script
            .with_file_name("node_modules")
            .join("@aws-sdk/client-sqs")
            .is_dir(),
        "the JavaScript SDK peer is not installed: run scripts/install-test-peers.sh"
    );
    let stack = Stack::start();
    let gw = &stack.gateway;
    let grant = gw.request(
        ADMIN_TOKEN,
        &[
            "--identity", "agent:etl",
            "--task", "js",
            "--intent", "exercise the javascript sdk",
            "--role", "writer",
            "--ttl", "30m",
            "--allow", "s3:GetObject,s3:PutObject,s3:ListBucket,s3:AbortMultipartUpload,s3:ListMultipartUploadParts",
            "--resource", "arn:aws:s3:::reports",
            "--resource", "arn:aws:s3:::reports/*",
            "--allow", "dynamodb:GetItem,dynamodb:PutItem",
            "--resource", "arn:aws:dynamodb:us-east-1:123456789012:table/ledger",
            "--allow", "sqs:SendMessage,sqs:ReceiveMessage,sqs:GetQueueUrl",
            "--resource", "arn:aws:sqs:us-east-1:123456789012:jobs",
        ],
    );
    let id = grant["id"].as_str().unwrap().to_owned();
    assert!(gw.cli(BOB_TOKEN, &["grant", "approve", &id]).success());
    let env = gw.agent_env(ADMIN_TOKEN, &id);

    let out = run_node(&script, &env).unwrap();
    assert!(
        out.success(),
        "node agent failed: {}\n{}",
        out.stderr,
        gw.server_log()
    );
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["get"], "hello from js", "{v}");
    assert_eq!(v["big"], 11 * 1024 * 1024, "{v}");
    assert_eq!(
        v["listed"],
        serde_json::json!(["js/big.bin", "js/hello.txt"]),
        "{v}"
    );
    assert_eq!(v["presigned"], "hello from js", "{v}");
    assert_eq!(v["item"], "7", "{v}");
    assert_eq!(v["message"], "from js", "{v}");
    assert_eq!(v["denied"], "AccessDeniedException", "{v}");
    let gateway = gw.agent_url();
    assert_eq!(
        v["queue_url"],
        format!("{gateway}/123456789012/jobs"),
        "{v}"
    );
    assert_eq!(
        format!("http://{}", v["presigned_host"].as_str().unwrap()),
        gateway,
        "{v}"
    );

    // Every call is in the log: the ones a default SQS client sends to the queue URL too.
    let decisions: Vec<serde_json::Value> = gw
        .entries()
        .into_iter()
        .filter(|e| e["kind"] == "request_decision" && e["grant_id"] == id.as_str())
        .collect();
    let ops: Vec<&str> = decisions
        .iter()
        .filter_map(|d| d["operation"].as_str())
        .collect();
    for op in [
        "PutObject",
        "GetObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "ListObjectsV2",
        "PutItem",
        "GetItem",
        "GetQueueUrl",
        "SendMessage",
        "ReceiveMessage",
    ] {
        assert!(ops.contains(&op), "{op} is not in the log: {ops:?}");
    }
    // What the upstream received: every SQS call names the queue on the upstream's host,
    // never the gateway's (SQS refuses a queue URL on another host), and each request the
    // upstream got is a decision the log allowed (the fidelity oracle).
    let relay = gw.relay.endpoint();
    let sqs_bodies: Vec<String> = gw
        .forwarded()
        .iter()
        .map(|c| String::from_utf8_lossy(&c.body).into_owned())
        .filter(|b| b.contains("QueueUrl"))
        .collect();
    assert!(
        sqs_bodies.len() >= 2,
        "SendMessage and ReceiveMessage: {sqs_bodies:?}"
    );
    for b in &sqs_bodies {
        let v: serde_json::Value = serde_json::from_str(b).unwrap();
        assert_eq!(v["QueueUrl"], format!("{relay}/123456789012/jobs"), "{b}");
    }
    let checked = gw.check_fidelity().unwrap_or_else(|e| panic!("{e:?}"));
    assert!(checked > 10, "{checked} forwarded requests checked");
    let sends = decisions
        .iter()
        .find(|d| d["operation"] == "SendMessage")
        .unwrap();
    assert_eq!(sends["allowed"], true, "{sends}");
    assert_eq!(
        sends["access"]["actions"][0]["resources"][0],
        "arn:aws:sqs:us-east-1:123456789012:jobs"
    );
}
