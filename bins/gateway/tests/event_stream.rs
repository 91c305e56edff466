//! A response event stream through the gateway: boto3's Bedrock Runtime `converse_stream`
//! (an ordinary signed JSON request whose response is `application/vnd.amazon.eventstream`)
//! is verified, classified as `bedrock:InvokeModelWithResponseStream` (the action IAM
//! checks for it), recorded, re-signed and forwarded; the upstream's event frames come back
//! untouched (boto3 checks each frame's CRCs) and the outcome is recorded.
//!
//! moto does not serve Bedrock Runtime: the upstream is `tests/peers/eventstream_upstream.py`,
//! which checks the gateway's signature with botocore's signer and streams real frames. The
//! gateway signs with that upstream's one key (`broker.danger_sign_with_base_credentials`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use custody_test_support::free_port;
use support::{ADMIN_TOKEN, ALICE_TOKEN, ChildGuard, Gateway, python_json};

const AK: &str = "AKIDEVENTSTREAMTEST1";
const SK: &str = "event-stream-upstream-secret";

struct Upstream {
    _child: ChildGuard,
    port: u16,
}

fn upstream() -> Upstream {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/peers/eventstream_upstream.py"
    );
    let port = free_port().unwrap();
    let mut child = Command::new("python3")
        .args([script, &port.to_string(), AK, SK])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let up = Upstream {
        _child: ChildGuard(child),
        port,
    };
    assert_eq!(
        line.trim(),
        "ready",
        "the event-stream upstream did not start"
    );
    up
}

const CONVERSE: &str = r#"
import boto3, json
from botocore.exceptions import ClientError
out = {"text": "", "events": []}
br = boto3.client("bedrock-runtime")
resp = br.converse_stream(
    modelId="anthropic.claude-3-haiku-20240307-v1:0",
    messages=[{"role": "user", "content": [{"text": "hi"}]}],
)
for event in resp["stream"]:
    name = next(iter(event))
    out["events"].append(name)
    if name == "contentBlockDelta":
        out["text"] += event[name]["delta"]["text"]
try:
    br.invoke_model(modelId="m", body=b"{}")
    out["invoke_model"] = "ok"
except ClientError as e:
    out["invoke_model"] = e.response["Error"]["Code"]
print(json.dumps(out))
"#;

#[test]
fn a_response_event_stream_comes_back_untouched_and_is_recorded() {
    let up = upstream();
    let gw = Gateway::start_for(
        &format!("http://127.0.0.1:{}", up.port),
        "arn:aws:iam::123456789012:role/bedrock",
        vec![
            ("AWS_ACCESS_KEY_ID".into(), AK.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SK.into()),
        ],
        |c| c.push_str("\n[broker]\ndanger_sign_with_base_credentials = true\n"),
    );
    let grant = gw.request(
        ADMIN_TOKEN,
        &[
            "--identity",
            "agent:chat",
            "--task",
            "t",
            "--intent",
            "ask a model",
            "--role",
            "ops",
            "--ttl",
            "30m",
            "--allow",
            "bedrock:InvokeModelWithResponseStream",
            "--resource",
            "*",
        ],
    );
    let id = grant["id"].as_str().unwrap();
    assert!(gw.cli(ALICE_TOKEN, &["grant", "approve", id]).success());
    let env = gw.agent_env(ADMIN_TOKEN, id);

    let v = python_json(CONVERSE, &env, &gw);
    assert_eq!(v["text"], "Hello from the stream", "{v}");
    assert_eq!(
        v["events"],
        serde_json::json!([
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]),
        "{v}"
    );
    // `InvokeModel` is another action, not in the grant.
    assert_eq!(v["invoke_model"], "AccessDeniedException", "{v}");

    let entries = gw.entries();
    let decision = entries
        .iter()
        .find(|e| e["kind"] == "request_decision" && e["operation"] == "ConverseStream")
        .unwrap();
    assert_eq!(decision["allowed"], true, "{decision}");
    assert_eq!(
        decision["access"]["actions"][0]["action"],
        "bedrock:InvokeModelWithResponseStream"
    );
    let outcome = entries
        .iter()
        .find(|e| e["kind"] == "request_outcome" && e["decision_seq"] == decision["seq"])
        .unwrap();
    assert_eq!(outcome["status"], 200, "{outcome}");
    assert!(
        outcome["bytes_out"].as_u64().unwrap() > 300,
        "the stream's bytes are counted: {outcome}"
    );
}
