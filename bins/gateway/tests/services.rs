//! The request path against moto (signature checking and IAM enforcement on) with boto3
//! and the aws CLI as the agent: S3, DynamoDB, SQS and STS calls inside the grant
//! succeed through moto's own signature check; calls outside it are denied by the
//! gateway and never reach moto; bad signatures, skewed clocks and unknown keys get the
//! AWS errors SDKs expect.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

use custody_test_support::{AwsEnv, run_aws_cli};
use support::{ADMIN_TOKEN, BOB_TOKEN, Stack, python_json};

/// A writer grant (approved by bob) over the test resources; returns the agent env.
fn writer_grant(stack: &Stack) -> (String, AwsEnv) {
    let gw = &stack.gateway;
    let queue_arn = "arn:aws:sqs:us-east-1:123456789012:jobs";
    let grant = gw.request(
        ADMIN_TOKEN,
        &[
            "--identity", "agent:etl",
            "--task", "etl-42",
            "--intent", "load the quarterly numbers into the ledger",
            "--role", "writer",
            "--ttl", "30m",
            "--allow", "s3:GetObject,s3:PutObject,s3:ListBucket,s3:AbortMultipartUpload,s3:ListMultipartUploadParts",
            "--resource", "arn:aws:s3:::reports",
            "--resource", "arn:aws:s3:::reports/*",
            "--allow", "s3:DeleteObject",
            "--resource", "arn:aws:s3:::reports/in/*",
            "--allow", "dynamodb:GetItem,dynamodb:PutItem,dynamodb:BatchWriteItem",
            "--resource", "arn:aws:dynamodb:us-east-1:123456789012:table/ledger",
            "--allow", "sqs:SendMessage,sqs:ReceiveMessage,sqs:GetQueueUrl",
            "--resource", queue_arn,
            "--allow", "sts:GetCallerIdentity",
            "--resource", "*",
        ],
    );
    assert_eq!(
        grant["status"], "pending",
        "a writer grant waits for approval: {grant}"
    );
    let id = grant["id"].as_str().unwrap().to_owned();
    let approved = gw.cli(BOB_TOKEN, &["grant", "approve", &id]);
    assert!(approved.success(), "{}", approved.stderr);
    let env = gw.agent_env(ADMIN_TOKEN, &id);
    (id, env)
}

const ALLOWED: &str = r#"
import boto3, json
from boto3.s3.transfer import TransferConfig
out = {}
s3 = boto3.client("s3")
s3.put_object(Bucket="reports", Key="in/small.txt", Body=b"hello")
s3.put_object(Bucket="reports", Key="in/empty.txt", Body=b"")
s3.put_object(Bucket="reports", Key="in/one.bin", Body=b"x")
for key in ["a b.txt", "a~b.txt", "dir//double.txt", "x/../dots.txt"]:
    s3.put_object(Bucket="reports", Key=key, Body=key.encode())
    out["key:" + key] = s3.get_object(Bucket="reports", Key=key)["Body"].read().decode()
out["small"] = s3.get_object(Bucket="reports", Key="in/small.txt")["Body"].read().decode()
out["empty"] = len(s3.get_object(Bucket="reports", Key="in/empty.txt")["Body"].read())
out["one"] = s3.get_object(Bucket="reports", Key="in/one.bin")["Body"].read().decode()
big = bytes(range(256)) * (8 * 1024 * 4) + b"!"   # 8 MiB + 1
import io
s3.upload_fileobj(io.BytesIO(big), "reports", "in/big.bin",
                  Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
got = s3.get_object(Bucket="reports", Key="in/big.bin")["Body"].read()
out["big_ok"] = got == big
out["listed"] = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="reports", Prefix="in")["Contents"])
ddb = boto3.client("dynamodb")
ddb.put_item(TableName="ledger", Item={"pk": {"S": "q1"}, "total": {"N": "42"}})
out["item"] = ddb.get_item(TableName="ledger", Key={"pk": {"S": "q1"}})["Item"]["total"]["N"]
sqs = boto3.client("sqs")
url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
out["queue_url"] = url
sqs.send_message(QueueUrl=url, MessageBody="job 1 + 1 = 2")
msgs = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", [])
out["message"] = msgs[0]["Body"] if msgs else None
out["caller"] = boto3.client("sts").get_caller_identity()["Arn"]
# A presigned URL made with the grant's key works through the gateway; tampering fails.
import urllib.request, urllib.error
from botocore.config import Config
v2 = s3.generate_presigned_url("get_object", Params={"Bucket": "reports", "Key": "in/small.txt"}, ExpiresIn=300)
try:
    urllib.request.urlopen(v2)
    out["presigned_v2"] = "ok"
except urllib.error.HTTPError as e:
    out["presigned_v2"] = str(e.code) + " " + e.read().decode()
s3v4 = boto3.client("s3", config=Config(signature_version="s3v4"))
url = s3v4.generate_presigned_url("get_object", Params={"Bucket": "reports", "Key": "in/small.txt"}, ExpiresIn=300)
out["presigned"] = urllib.request.urlopen(url).read().decode()
try:
    urllib.request.urlopen(url.replace("in/small.txt", "in/one.bin"))
    out["presigned_tampered"] = "ok"
except urllib.error.HTTPError as e:
    out["presigned_tampered"] = str(e.code) + " " + e.read().decode()
print(json.dumps(out))
"#;

#[test]
fn calls_inside_the_grant_succeed_through_moto() {
    let stack = Stack::start();
    let (_id, env) = writer_grant(&stack);
    let v = python_json(ALLOWED, &env, &stack.gateway);
    assert_eq!(v["small"], "hello");
    assert_eq!(v["empty"], 0);
    assert_eq!(v["one"], "x");
    assert_eq!(v["big_ok"], true, "8 MiB + 1 multipart upload round-trips");
    for key in ["a b.txt", "a~b.txt", "dir//double.txt", "x/../dots.txt"] {
        assert_eq!(v[format!("key:{key}")], key);
    }
    assert_eq!(
        v["listed"],
        serde_json::json!(["in/big.bin", "in/empty.txt", "in/one.bin", "in/small.txt"])
    );
    assert_eq!(v["item"], "42");
    assert_eq!(v["message"], "job 1 + 1 = 2");
    // The queue URL handed out is on the gateway (not moto's host), and calls naming the
    // queue by it were mapped back for the upstream.
    assert_eq!(
        v["queue_url"],
        format!("{}/123456789012/jobs", stack.gateway.agent_url()),
        "{v}"
    );
    assert!(
        v["caller"].as_str().unwrap().contains("assumed-role/agent"),
        "{}",
        v["caller"]
    );
    assert_eq!(v["presigned"], "hello");
    // boto3's default presign (SigV2) works too: verified and re-signed with SigV4.
    assert_eq!(v["presigned_v2"], "ok", "{v}");
    let tampered = v["presigned_tampered"].as_str().unwrap();
    assert!(
        tampered.starts_with("403") && tampered.contains("SignatureDoesNotMatch"),
        "{tampered}"
    );

    // The aws CLI too.
    let out = run_aws_cli(
        &[
            "s3api",
            "head-object",
            "--bucket",
            "reports",
            "--key",
            "in/small.txt",
        ],
        &env,
        None,
    )
    .unwrap();
    assert!(out.success(), "{}", out.stderr);
    // aws CLI v1's `sqs` commands ignore AWS_ENDPOINT_URL; name the endpoint.
    let out = run_aws_cli(
        &[
            "sqs",
            "get-queue-url",
            "--queue-name",
            "jobs",
            "--endpoint-url",
            &env.endpoint,
        ],
        &env,
        None,
    )
    .unwrap();
    assert!(out.success(), "{}", out.stderr);

    // Every allowed decision is in the log with its outcome.
    let entries = stack.gateway.entries();
    let allowed = entries
        .iter()
        .filter(|e| e["kind"] == "request_decision" && e["allowed"] == true)
        .count();
    let outcomes = entries
        .iter()
        .filter(|e| e["kind"] == "request_outcome")
        .count();
    assert!(allowed >= 15, "{allowed} allowed decisions");
    assert!(
        outcomes >= allowed - 1,
        "{outcomes} outcomes for {allowed} allowed decisions"
    );
}

const DENIED: &str = r#"
import boto3, json
from botocore.exceptions import ClientError
out = {}
def code(f):
    try:
        f(); return "ok"
    except ClientError as e:
        return e.response["Error"]["Code"] + " | " + e.response["Error"].get("Message", "")
s3 = boto3.client("s3")
ddb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
out["delete"] = code(lambda: s3.delete_object(Bucket="reports", Key="q1/summary.txt"))
out["other_bucket"] = code(lambda: s3.get_object(Bucket="other", Key="x.txt"))
out["ddb_delete"] = code(lambda: ddb.delete_item(TableName="ledger", Key={"pk": {"S": "q1"}}))
out["ddb_scan"] = code(lambda: ddb.scan(TableName="ledger"))
out["sqs_purge"] = code(lambda: sqs.purge_queue(QueueUrl=sqs.get_queue_url(QueueName="jobs")["QueueUrl"]))
out["assume"] = code(lambda: boto3.client("sts").assume_role(RoleArn="arn:aws:iam::123456789012:role/agent", RoleSessionName="escape"))
# CopyObject needs s3:GetObject on its source too (from the x-amz-copy-source header).
out["copy_in"] = code(lambda: s3.copy_object(Bucket="reports", Key="in/copy.txt", CopySource={"Bucket": "other", "Key": "x.txt"}))
# Resources in bodies: one key of a batch delete outside the grant denies the whole batch.
out["batch_delete"] = code(lambda: s3.delete_objects(Bucket="reports", Delete={"Objects": [{"Key": "in/tmp.txt"}, {"Key": "q1/summary.txt"}]}))
out["batch_write"] = code(lambda: ddb.batch_write_item(RequestItems={
    "ledger": [{"PutRequest": {"Item": {"pk": {"S": "ok"}}}}],
    "payroll": [{"PutRequest": {"Item": {"pk": {"S": "sneaky"}}}}]}))
# Still there: the denied delete never reached moto.
out["still_there"] = s3.get_object(Bucket="reports", Key="q1/summary.txt")["Body"].read().decode()
print(json.dumps(out))
"#;

#[test]
fn calls_outside_the_grant_are_denied_and_never_forwarded() {
    let stack = Stack::start();
    let (id, env) = writer_grant(&stack);
    let v = python_json(DENIED, &env, &stack.gateway);
    for (k, code, action) in [
        ("delete", "AccessDenied", "s3:DeleteObject"),
        ("other_bucket", "AccessDenied", "s3:GetObject"),
        ("ddb_delete", "AccessDeniedException", "dynamodb:DeleteItem"),
        ("ddb_scan", "AccessDeniedException", "dynamodb:Scan"),
        ("sqs_purge", "AccessDenied", "sqs:PurgeQueue"),
        ("assume", "AccessDenied", "sts:AssumeRole"),
        (
            "batch_delete",
            "AccessDenied",
            "arn:aws:s3:::reports/q1/summary.txt",
        ),
        ("batch_write", "AccessDeniedException", "table/payroll"),
    ] {
        let got = v[k].as_str().unwrap();
        assert!(got.starts_with(code), "{k}: {got}");
        assert!(
            got.contains(&id) && got.contains(action),
            "{k} should name the grant and action: {got}"
        );
    }
    assert_eq!(v["still_there"], "q1 numbers");
    let entries = stack.gateway.entries();
    let denied: Vec<_> = entries
        .iter()
        .filter(|e| e["kind"] == "request_decision" && e["allowed"] == false)
        .collect();
    assert_eq!(denied.len(), 9, "{denied:#?}");
    // Denials have no outcome: nothing was forwarded.
    let denied_ids: Vec<_> = denied.iter().map(|e| e["request_id"].clone()).collect();
    assert!(
        !entries
            .iter()
            .any(|e| e["kind"] == "request_outcome" && denied_ids.contains(&e["request_id"]))
    );
}

const AUTH_ERRORS: &str = r#"
import boto3, datetime, json, os
import botocore.auth
from botocore.exceptions import ClientError
out = {}
def code(f):
    try:
        f(); return "ok"
    except ClientError as e:
        return e.response["Error"]["Code"] + " | " + e.response["Error"].get("Message", "")
good_key = os.environ["AWS_ACCESS_KEY_ID"]
bad_secret = boto3.Session(aws_access_key_id=good_key, aws_secret_access_key="x" * 40)
unknown = boto3.Session(aws_access_key_id="AKCUNOSUCHKEY0000000", aws_secret_access_key="y" * 40)
for name, sess in [("bad_sig", bad_secret), ("unknown", unknown)]:
    out[name + "_s3"] = code(lambda: sess.client("s3").get_object(Bucket="reports", Key="q1/summary.txt"))
    out[name + "_sts"] = code(lambda: sess.client("sts").get_caller_identity())
    out[name + "_ddb"] = code(lambda: sess.client("dynamodb").get_item(TableName="ledger", Key={"pk": {"S": "q1"}}))
real = datetime.datetime
class Skewed(real):
    @classmethod
    def utcnow(cls):
        return real.utcnow() - datetime.timedelta(minutes=20)
    @classmethod
    def now(cls, tz=None):
        return real.now(tz) - datetime.timedelta(minutes=20)
botocore.auth.datetime.datetime = Skewed
out["skew_s3"] = code(lambda: boto3.client("s3").get_object(Bucket="reports", Key="q1/summary.txt"))
out["skew_sts"] = code(lambda: boto3.client("sts").get_caller_identity())
# SigV4a: refused as not implemented, not as a wrong signature.
import urllib.request, urllib.error
amz = real.utcnow().strftime("%Y%m%dT%H%M%SZ")
req = urllib.request.Request(os.environ["AWS_ENDPOINT_URL"] + "/reports/q1/summary.txt", headers={
    "Authorization": "AWS4-ECDSA-P256-SHA256 Credential=" + good_key + "/" + amz[:8] + "/s3/aws4_request, SignedHeaders=host;x-amz-date;x-amz-region-set, Signature=3045022100ab",
    "X-Amz-Date": amz, "X-Amz-Region-Set": "*", "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
try:
    urllib.request.urlopen(req)
    out["sigv4a"] = "ok"
except urllib.error.HTTPError as e:
    out["sigv4a"] = str(e.code) + " " + e.read().decode()
# An access key id of 100,000 characters: refused, recorded, and named only in part (in
# the answer and in the log entry).
req = urllib.request.Request(os.environ["AWS_ENDPOINT_URL"] + "/reports/q1/summary.txt", headers={
    "Authorization": "AWS4-HMAC-SHA256 Credential=" + "A" * 100000 + "/" + amz[:8] + "/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    "X-Amz-Date": amz, "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
try:
    urllib.request.urlopen(req)
    out["huge_key"] = "ok"
except urllib.error.HTTPError as e:
    out["huge_key"] = str(e.code) + " " + e.read().decode()
print(json.dumps(out))
"#;

#[test]
fn bad_signatures_unknown_keys_and_skew_get_aws_errors() {
    let stack = Stack::start();
    let (_id, env) = writer_grant(&stack);
    let v = python_json(AUTH_ERRORS, &env, &stack.gateway);
    for (k, code) in [
        ("bad_sig_s3", "SignatureDoesNotMatch"),
        ("bad_sig_sts", "SignatureDoesNotMatch"),
        ("bad_sig_ddb", "InvalidSignatureException"),
        ("unknown_s3", "InvalidAccessKeyId"),
        ("unknown_sts", "InvalidClientTokenId"),
        ("unknown_ddb", "UnrecognizedClientException"),
        ("skew_s3", "RequestTimeTooSkewed"),
        ("skew_sts", "RequestTimeTooSkewed"),
    ] {
        let got = v[k].as_str().unwrap();
        assert!(got.starts_with(code), "{k}: expected {code}, got {got}");
    }
    let sigv4a = v["sigv4a"].as_str().unwrap();
    assert!(
        sigv4a.starts_with("501") && sigv4a.contains("NotImplemented"),
        "{sigv4a}"
    );
    let huge = v["huge_key"].as_str().unwrap();
    assert!(
        huge.starts_with("403") && huge.contains("InvalidAccessKeyId") && huge.len() < 1000,
        "{}",
        &huge[..huge.len().min(300)]
    );
    // Each refusal is recorded (the huge key's too), and none was forwarded.
    let entries = stack.gateway.entries();
    let denied: Vec<_> = entries
        .iter()
        .filter(|e| e["kind"] == "request_decision" && e["allowed"] == false)
        .collect();
    assert_eq!(denied.len(), 10, "{denied:#?}");
    let named = format!("unknown access key id `{}`", "A".repeat(64));
    assert!(
        denied.iter().any(|e| e["reason"] == named.as_str()),
        "{denied:#?}"
    );
}

/// A grant for `agent:etl` on role `writer` (approved by bob): `args` are its scope.
fn scoped_grant(stack: &Stack, args: &[&str]) -> AwsEnv {
    let gw = &stack.gateway;
    let mut all = vec![
        "--identity",
        "agent:etl",
        "--task",
        "secrets",
        "--intent",
        "read the database password",
        "--role",
        "writer",
    ];
    all.extend_from_slice(args);
    let grant = gw.request(ADMIN_TOKEN, &all);
    let id = grant["id"].as_str().unwrap().to_owned();
    assert!(gw.cli(BOB_TOKEN, &["grant", "approve", &id]).success());
    gw.agent_env(ADMIN_TOKEN, &id)
}

const READ_TWO_SECRETS: &str = r#"
import boto3, json
sm = boto3.client("secretsmanager")
out = {}
for name in ["db-password", "holdout-secret"]:
    try:
        out[name] = sm.get_secret_value(SecretId=name)["SecretString"]
    except Exception as e:
        out[name] = e.response["Error"]["Code"]
print(json.dumps(out))
"#;

#[test]
fn secrets_called_by_name_are_decided_on_the_arn_iam_evaluates() {
    let stack = Stack::start();
    let gw = &stack.gateway;
    let secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:";
    // An Allow on the form AWS documents (`NAME-??????`) covers a call by name.
    let env = scoped_grant(
        &stack,
        &[
            "--allow",
            "secretsmanager:GetSecretValue",
            "--resource",
            &format!("{secret}db-password-??????"),
        ],
    );
    let v = python_json(READ_TWO_SECRETS, &env, gw);
    assert_eq!(v["db-password"], "hunter2", "{v}");
    assert_eq!(v["holdout-secret"], "AccessDeniedException", "{v}");
    // A Deny on that form stops a call by name, under an Allow on everything.
    let env = scoped_grant(
        &stack,
        &[
            "--allow",
            "secretsmanager:*",
            "--resource",
            "*",
            "--deny",
            "secretsmanager:GetSecretValue",
            "--resource",
            &format!("{secret}holdout-secret-??????"),
        ],
    );
    let v = python_json(READ_TWO_SECRETS, &env, gw);
    assert_eq!(v["db-password"], "hunter2", "{v}");
    assert_eq!(v["holdout-secret"], "AccessDeniedException", "{v}");
    // The log says why, with the resource as it was decided on.
    let denied = gw
        .entries()
        .into_iter()
        .rfind(|e| e["kind"] == "request_decision" && e["allowed"] == false)
        .unwrap();
    assert!(
        denied["reason"]
            .as_str()
            .unwrap()
            .contains("holdout-secret-??????` is explicitly denied"),
        "{denied}"
    );
}

#[test]
fn sigv2_presigned_urls_are_verified_reresigned_and_recorded() {
    let stack = Stack::start();
    let gw = &stack.gateway;
    let grant = gw.request_reader("agent:x", "t", &[]);
    let id = grant["id"].as_str().unwrap().to_owned();
    let env = gw.agent_env(ADMIN_TOKEN, &id);
    // boto3 presigns S3 with SigV2 query auth unless told otherwise; so does `aws s3 presign`.
    let v = python_json(
        r#"
import boto3, json, time, urllib.request, urllib.error
s3 = boto3.client("s3")
out = {}
def fetch(url, method="GET"):
    try:
        r = urllib.request.urlopen(urllib.request.Request(url, method=method))
        return [r.status, r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode()]
url = s3.generate_presigned_url("get_object", Params={"Bucket": "reports", "Key": "q1/summary.txt"}, ExpiresIn=300)
out["v2"] = "AWSAccessKeyId=" in url and "X-Amz-" not in url
out["get"] = fetch(url)
out["tampered"] = fetch(url.replace("q1/summary", "q2/summary"))
# Signed fine, but outside the grant (a listing; the grant reads objects only).
out["outside"] = fetch(s3.generate_presigned_url("list_objects_v2", Params={"Bucket": "reports"}))
short = s3.generate_presigned_url("get_object", Params={"Bucket": "reports", "Key": "q1/summary.txt"}, ExpiresIn=1)
time.sleep(2.5)
out["expired"] = fetch(short)
put = s3.generate_presigned_url("put_object", Params={"Bucket": "reports", "Key": "up.txt"})
out["put"] = fetch(put, "PUT")
out["later"] = url
print(json.dumps(out))
"#,
        &env,
        gw,
    );
    assert_eq!(v["v2"], true, "{v}");
    assert_eq!(v["get"], serde_json::json!([200, "q1 numbers"]), "{v}");
    assert_eq!(v["tampered"][0], 403, "{v}");
    assert!(
        v["tampered"][1]
            .as_str()
            .unwrap()
            .contains("SignatureDoesNotMatch"),
        "{v}"
    );
    assert_eq!(v["outside"][0], 403, "{v}");
    assert!(
        v["outside"][1].as_str().unwrap().contains("AccessDenied"),
        "{v}"
    );
    assert_eq!(v["expired"][0], 403, "{v}");
    assert!(v["expired"][1].as_str().unwrap().contains("expired"), "{v}");
    assert_eq!(v["put"][0], 501, "{v}");
    assert!(v["put"][1].as_str().unwrap().contains("s3v4"), "{v}");

    // The aws CLI's presign, fetched with curl.
    let out = run_aws_cli(
        &["s3", "presign", "s3://reports/q2/summary.txt"],
        &env,
        None,
    )
    .unwrap();
    assert!(out.success(), "{}", out.stderr);
    let url = out.stdout.trim().to_owned();
    assert!(url.contains("AWSAccessKeyId="), "{url}");
    let curl = std::process::Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", &url])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "q2 numbers\n200",
        "curl of `aws s3 presign`"
    );

    // Revoked: the same URL is refused, and recorded against the grant.
    assert!(
        gw.cli(ADMIN_TOKEN, &["grant", "revoke", &id, "--reason", "done"])
            .success()
    );
    let later = v["later"].as_str().unwrap();
    let curl = std::process::Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", later])
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&curl.stdout).into_owned();
    assert!(
        got.ends_with("403") && got.contains("AccessDenied"),
        "{got}"
    );

    let decisions: Vec<serde_json::Value> = gw
        .entries()
        .into_iter()
        .filter(|e| e["kind"] == "request_decision")
        .collect();
    for d in &decisions {
        assert_eq!(
            d["grant_id"],
            id.as_str(),
            "every SigV2 request is recorded against its grant: {d}"
        );
    }
    let allowed: Vec<&serde_json::Value> =
        decisions.iter().filter(|d| d["allowed"] == true).collect();
    assert_eq!(
        allowed.len(),
        2,
        "the boto3 and the CLI GETs: {decisions:?}"
    );
    assert!(
        allowed.iter().all(|d| d["operation"] == "GetObject"),
        "{allowed:?}"
    );
    let reasons: Vec<&str> = decisions
        .iter()
        .filter(|d| d["allowed"] == false)
        .filter_map(|d| d["reason"].as_str())
        .collect();
    for needle in ["expired", "revoked", "s3v4", "signature"] {
        assert!(
            reasons.iter().any(|r| r.to_lowercase().contains(needle)),
            "no refusal saying `{needle}`: {reasons:?}"
        );
    }
}

#[test]
fn a_deny_on_one_instance_stops_its_termination_and_no_other() {
    let stack = Stack::start();
    let gw = &stack.gateway;
    let env = scoped_grant(&stack, &["--allow", "ec2:*", "--resource", "*"]);
    let v = python_json(
        r#"
import boto3, json
ec2 = boto3.client("ec2")
image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
ids = [i["InstanceId"] for i in ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2)["Instances"]]
print(json.dumps(ids))
"#,
        &env,
        gw,
    );
    let ids: Vec<String> = serde_json::from_value(v).unwrap();
    // Now deny terminating the first one only.
    let (prod, dev) = (&ids[0], &ids[1]);
    let env = scoped_grant(
        &stack,
        &[
            "--allow",
            "ec2:*",
            "--resource",
            "*",
            "--deny",
            "ec2:TerminateInstances",
            "--resource",
            &format!("arn:aws:ec2:us-east-1:123456789012:instance/{prod}"),
        ],
    );
    let v = python_json(
        &format!(
            r#"
import boto3, json
ec2 = boto3.client("ec2")
out = {{}}
for name, i in [("dev", "{dev}"), ("prod", "{prod}"), ("both", None)]:
    try:
        ids = [i] if i else ["{dev}", "{prod}"]
        ec2.terminate_instances(InstanceIds=ids)
        out[name] = "terminated"
    except Exception as e:
        out[name] = e.response["Error"]["Code"]
print(json.dumps(out))
"#
        ),
        &env,
        gw,
    );
    assert_eq!(v["dev"], "terminated", "{v}");
    assert_eq!(v["prod"], "AccessDenied", "{v}");
    assert_eq!(v["both"], "AccessDenied", "{v}");
}
