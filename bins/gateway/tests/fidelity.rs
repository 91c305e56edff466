//! Request fidelity against a lenient upstream: every way the attack review made moto
//! execute something other than what the log records is refused, recorded as a denial
//! with its reason, and never reaches the upstream (the recording relay sees nothing of
//! it). The legitimate form of each request goes through, and at the end the fidelity
//! oracle checks every request moto received against the log.
//!
//! The attack requests are signed with the grant's key by botocore's own SigV4 signer
//! and sent with urllib3, so the gateway sees a correctly signed hostile request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

use custody_test_support::AwsEnv;
use support::{ADMIN_TOKEN, BOB_TOKEN, Gateway, Stack, python_json};

/// A grant on the test table, the `jobs` queue, one SNS topic and the reports bucket.
fn grant(gw: &Gateway) -> AwsEnv {
    let grant = gw.request(
        ADMIN_TOKEN,
        &[
            "--identity",
            "agent:fidelity",
            "--task",
            "fidelity",
            "--intent",
            "attack the classifier",
            "--role",
            "writer",
            "--allow",
            "dynamodb:GetItem",
            "--resource",
            "arn:aws:dynamodb:us-east-1:123456789012:table/ledger",
            "--allow",
            "sqs:SendMessage,sqs:GetQueueUrl",
            "--resource",
            "arn:aws:sqs:us-east-1:123456789012:jobs",
            "--allow",
            "sns:Publish",
            "--resource",
            "arn:aws:sns:us-east-1:123456789012:granted",
            "--allow",
            "s3:GetObject",
            "--resource",
            "arn:aws:s3:::reports/*",
        ],
    );
    let id = grant["id"].as_str().unwrap().to_owned();
    assert!(gw.cli(BOB_TOKEN, &["grant", "approve", &id]).success());
    gw.agent_env(ADMIN_TOKEN, &id)
}

/// Sends signed requests built by the test cases below; prints `[[status, body], …]`.
/// `sign` lists the headers added before signing, `late` those added after (unsigned),
/// `raw` a body sent as is.
const SENDER: &str = r#"
import os, json, gzip, urllib3, botocore.auth, botocore.awsrequest, botocore.credentials
ep = os.environ["AWS_ENDPOINT_URL"]
creds = botocore.credentials.Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
http = urllib3.PoolManager()
def send(service, method, path, sign, body=b"", late=None, payload_hash=None, sign_hop=False):
    req = botocore.awsrequest.AWSRequest(method=method, url=ep + path, data=body, headers=dict(sign))
    if payload_hash:
        req.headers["X-Amz-Content-SHA256"] = payload_hash
    auth = botocore.auth.SigV4Auth(creds, service, "us-east-1")
    if payload_hash:
        auth.payload = lambda request: payload_hash
    skip = botocore.auth.SIGNED_HEADERS_BLACKLIST
    saved = list(skip)
    if sign_hop:
        # A client that signs `Connection` (botocore does not).
        skip.remove("connection")
    try:
        auth.add_auth(req)
    finally:
        skip[:] = saved
    p = req.prepare()
    headers = dict(p.headers)
    headers.update(late or {})
    r = http.request(method, p.url, body=p.body, headers=headers, retries=False)
    return [r.status, r.data.decode(errors="replace")]
J = {"Content-Type": "application/x-amz-json-1.0"}
def target(op, prefix="DynamoDB_20120810"):
    return dict(J, **{"X-Amz-Target": prefix + "." + op})
get_item = json.dumps({"TableName": "ledger", "Key": {"pk": {"S": "q1"}}}).encode()
scan_other = json.dumps({"TableName": "other"}).encode()
queue = "http://localhost/123456789012/jobs"
send_msg = json.dumps({"QueueUrl": queue, "MessageBody": "hello"}).encode()
out = {}
"#;

const CASES: &str = r#"
# The legitimate forms, forwarded.
out["get_item"] = send("dynamodb", "POST", "/", target("GetItem"), get_item)
out["send_message"] = send("sqs", "POST", "/", target("SendMessage", "AmazonSQS"), send_msg)
# 1. The path of a JSON-protocol request (moto's admin API answers any request).
out["moto_api"] = send("dynamodb", "POST", "/moto-api/data.json", target("GetItem"), get_item)
out["moto_reset"] = send("dynamodb", "POST", "/moto-api/reset", target("GetItem"), get_item)
out["json_action"] = send("dynamodb", "POST", "/?Action=Scan", target("GetItem"), get_item)
out["json_query"] = send("dynamodb", "POST", "/?TableName=other", target("GetItem"), get_item)
# 2. Connection naming the header the operation was classified by.
out["connection"] = send("sqs", "POST", "/", target("SendMessage", "AmazonSQS"),
    b"Action=ReceiveMessage&QueueUrl=" + queue.encode(),
    late={"Connection": "keep-alive, x-amz-target"})
out["connection_signed"] = send("sqs", "POST", "/",
    dict(target("SendMessage", "AmazonSQS"), Connection="keep-alive"), send_msg, sign_hop=True)
# 3. A form inside a JSON body.
smuggled = json.dumps({"TableName": "ledger", "Key": {"pk": {"S": "q1"}},
    "ProjectionExpression": "&Action=BatchGetItem&RequestItems=other&"}).encode()
out["form_in_json"] = send("dynamodb", "POST", "/", target("GetItem"), smuggled)
# 4. A compressed body: the classifier must not read other bytes than the upstream.
out["gzip"] = send("dynamodb", "POST", "/", dict(target("Scan"), **{"Content-Encoding": "gzip"}),
    gzip.compress(scan_other))
out["gzip_disguised"] = send("dynamodb", "POST", "/", dict(target("GetItem"), **{"Content-Encoding": "gzip"}),
    gzip.compress(get_item))
# 5. aws-chunked framing for a service that does not decode it.
framed = b"%x;x=&Action=Scan&TableName=other\r\n" % len(get_item) + get_item + b"\r\n0\r\n\r\n"
out["chunked_json"] = send("dynamodb", "POST", "/", dict(target("GetItem"), **{"Content-Encoding": "aws-chunked"}),
    framed, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
# 6. Resource alternatives: every named resource is decided on.
topic = "arn:aws:sns:us-east-1:123456789012:granted"
other = "arn:aws:sns:us-east-1:123456789012:other"
F = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
out["sns_target"] = send("sns", "POST", "/", F,
    ("Action=Publish&Version=2010-03-31&Message=m&TopicArn=" + topic + "&TargetArn=" + other).encode())
out["sns_phone"] = send("sns", "POST", "/", F,
    ("Action=Publish&Version=2010-03-31&Message=m&TopicArn=" + topic + "&PhoneNumber=%2B15555550100").encode())
# 7. A body where the operation takes none (a lenient S3 reads versionId from it).
out["s3_get_body"] = send("s3", "GET", "/reports/q1/summary.txt",
    {"Content-Type": "application/x-www-form-urlencoded"}, b"versionId=old", payload_hash=None)
# Members the model does not have, a second selector, headers.
out["unknown_member"] = send("dynamodb", "POST", "/", target("GetItem"),
    json.dumps({"TableName": "ledger", "Key": {"pk": {"S": "q1"}}, "TableNames": ["other"]}).encode())
out["nested_unknown"] = send("dynamodb", "POST", "/", target("GetItem"),
    json.dumps({"TableName": "ledger", "Key": {"pk": {"S": "q1", "Table": "other"}}}).encode())
out["action_header"] = send("dynamodb", "POST", "/", dict(target("GetItem"), Action="Scan"), get_item)
out["duplicate_target"] = send("dynamodb", "POST", "/", target("GetItem"), get_item,
    late={"x-amz-target": "DynamoDB_20120810.GetItem"})
out["unsigned_amz"] = send("s3", "GET", "/reports/q1/summary.txt", {}, b"",
    late={"x-amz-copy-source": "other/x.txt"})
out["target_on_s3"] = send("s3", "GET", "/reports/q1/summary.txt",
    {"X-Amz-Target": "DynamoDB_20120810.Scan"}, b"")
out["bad_bucket"] = send("s3", "GET", "/Reports/q1/summary.txt", {}, b"")
out["form_content_type"] = send("dynamodb", "POST", "/",
    dict(target("GetItem"), **{"Content-Type": "application/x-www-form-urlencoded"}), get_item)
print(json.dumps(out))
"#;

#[test]
fn every_request_has_one_reading_or_is_refused_and_recorded() {
    let stack = Stack::start();
    let gw = &stack.gateway;
    let env = grant(gw);
    let before = gw.forwarded().len();
    let v = python_json(&format!("{SENDER}{CASES}"), &env, gw);
    let status = |k: &str| v[k][0].as_u64().unwrap_or_else(|| panic!("no {k}: {v}"));
    let body = |k: &str| v[k][1].as_str().unwrap().to_owned();

    // The legitimate forms go through.
    assert_eq!(status("get_item"), 200, "{}", body("get_item"));
    assert_eq!(status("send_message"), 200, "{}", body("send_message"));
    let relayed = gw.forwarded();
    let forwarded: Vec<String> = relayed[before..]
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                c.method,
                c.path_and_query,
                String::from_utf8_lossy(&c.body)
            )
        })
        .collect();
    assert_eq!(
        forwarded.len(),
        2,
        "only the two legitimate requests reach the upstream: {forwarded:?}"
    );

    // Each attack is refused with the reason in the answer…
    let refused: &[(&str, &str)] = &[
        ("moto_api", "requests go to `/`"),
        ("moto_reset", "requests go to `/`"),
        ("json_action", "both `X-Amz-Target` and an `Action`"),
        ("json_query", "unknown query parameter `TableName`"),
        ("connection", "`Connection` names `x-amz-target`"),
        ("connection_signed", "`connection` is signed but hop-by-hop"),
        ("form_in_json", "also reads as a form with an `Action`"),
        ("gzip", "content encoding `gzip`"),
        ("gzip_disguised", "content encoding `gzip`"),
        ("chunked_json", "only accepted for s3"),
        ("sns_target", "arn:aws:sns:us-east-1:123456789012:other"),
        ("sns_phone", "sns:Publish"),
        ("s3_get_body", "does not take"),
        (
            "unknown_member",
            "`TableNames` is not a member of `GetItem`",
        ),
        (
            "nested_unknown",
            "`Key.pk.Table` is not a member of `GetItem`",
        ),
        ("action_header", "`Action` header"),
        ("duplicate_target", "appears more than once"),
        ("unsigned_amz", "`x-amz-copy-source` is not signed"),
        ("target_on_s3", "`X-Amz-Target` on a REST request"),
        ("bad_bucket", "Bucket (only lower-case"),
        ("form_content_type", "is not `application/x-amz-json-1.0`"),
    ];
    for (case, why) in refused {
        let (s, b) = (status(case), body(case));
        assert!((400..500).contains(&s), "{case}: status {s}: {b}");
        assert!(b.contains(why), "{case}: expected `{why}` in: {b}");
    }
    // …and recorded as a denial with that reason.
    let denials: Vec<String> = gw
        .entries()
        .iter()
        .filter(|e| e["kind"] == "request_decision" && e["allowed"] == false)
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    for (case, why) in refused {
        assert!(
            denials.iter().any(|r| r.contains(why)),
            "{case}: no denial recorded with `{why}`: {denials:#?}"
        );
    }
    // The model version is named where a member is refused.
    assert!(body("unknown_member").contains("dynamodb 2012-08-10, botocore"));
    // The oracle agrees with the log on everything moto received (also run at drop).
    let checked = gw.check_fidelity().unwrap_or_else(|p| panic!("{p:#?}"));
    assert!(checked >= 2, "the oracle checked {checked} requests");
}
