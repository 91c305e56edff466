//! The harness's own proof: moto judges signatures and IAM policy independently of us.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use custody_test_support::{AwsEnv, Bootstrap, MotoServer, run_aws_cli, run_python};

fn server() -> MotoServer {
    let plan = Bootstrap::with_gateway_user()
        .role(
            "reader",
            serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]
            }),
        )
        .bucket("harness-bucket", &[("hello.txt", "hello from moto")]);
    match MotoServer::start(&plan) {
        Ok(s) => s,
        Err(e) => panic!("moto harness failed to start: {e}"),
    }
}

const ASSUME_AND_GET: &str = r#"
import boto3
sts = boto3.client("sts")
creds = sts.assume_role(RoleArn="ROLE", RoleSessionName="harness")["Credentials"]
s3 = boto3.client("s3", aws_access_key_id=creds["AccessKeyId"],
                  aws_secret_access_key=creds["SecretAccessKey"],
                  aws_session_token=creds["SessionToken"])
print(s3.get_object(Bucket="harness-bucket", Key="hello.txt")["Body"].read().decode())
"#;

#[test]
fn correctly_signed_call_succeeds_and_wrong_signature_is_refused() {
    let moto = server();
    let Some(gw) = moto.user("custody-gateway") else {
        panic!("bootstrap did not create the gateway user")
    };
    let Some(role) = moto.role_arn("reader") else {
        panic!("bootstrap did not create the role")
    };

    // Correctly signed by boto3 with the gateway user's key: AssumeRole, then use the
    // assumed-role credentials for a GetObject the role allows.
    let env = AwsEnv::new(moto.endpoint(), &gw.access_key_id, &gw.secret_access_key);
    let ok = run_python(
        &ASSUME_AND_GET.replace("\"ROLE\"", &format!("{role:?}")),
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(ok.success(), "signed call failed: {}", ok.stderr);
    assert_eq!(ok.stdout.trim(), "hello from moto");

    // Same key id, wrong secret: moto's own signature check refuses it.
    let bad = AwsEnv::new(
        moto.endpoint(),
        &gw.access_key_id,
        "wrong-secret-wrong-secret-wrong-secret00",
    );
    let out =
        run_aws_cli(&["sts", "get-caller-identity"], &bad, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !out.success(),
        "a wrong signature was accepted: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("SignatureDoesNotMatch"),
        "expected SignatureDoesNotMatch, got: {}",
        out.stderr
    );
}

#[test]
fn iam_enforcement_is_on_after_bootstrap() {
    let moto = server();
    let Some(gw) = moto.user("custody-gateway") else {
        panic!("bootstrap did not create the gateway user")
    };
    // The gateway user's own policy allows only STS calls: reading S3 directly is denied.
    let env = AwsEnv::new(moto.endpoint(), &gw.access_key_id, &gw.secret_access_key);
    let out = run_aws_cli(
        &["s3api", "list-objects-v2", "--bucket", "harness-bucket"],
        &env,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.success(), "IAM enforcement is off: {}", out.stdout);
    assert!(
        out.stderr.contains("AccessDenied"),
        "expected AccessDenied, got: {}",
        out.stderr
    );
}
