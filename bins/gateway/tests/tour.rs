//! The README tour as a test: a read-only grant for one bucket, the aws CLI and boto3 as
//! the agent, allowed and denied calls, revocation, and the verifier's verdict.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

use custody_test_support::{run_aws_cli, run_python};
use support::{ADMIN_TOKEN, Stack, assert_denied};

/// List the `q1` prefix (moto refuses even boto3's own signature when a query value holds
/// `/`, so the prefix has none).
const LIST_Q1: &[&str] = &[
    "s3api",
    "list-objects-v2",
    "--bucket",
    "reports",
    "--prefix",
    "q1",
];

#[test]
fn tour_allowed_denied_revoked_verified() {
    let witness = custody_test_support::temp_dir().unwrap();
    let witness_dir = witness.path().to_path_buf();
    let mut stack = Stack::start_with(|c| {
        *c = c.replacen(
            "[log]\n",
            &format!(
                "[log]\ncheckpoint_copy_dir = \"{}\"\n",
                witness_dir.display()
            ),
            1,
        );
    });
    let gw = &stack.gateway;
    let grant = gw.request(
        ADMIN_TOKEN,
        &[
            "--identity",
            "agent:report-bot",
            "--task",
            "q-report",
            "--intent",
            "summarise the quarterly reports",
            "--role",
            "reader",
            "--ttl",
            "15m",
            "--allow",
            "s3:GetObject,s3:ListBucket",
            "--resource",
            "arn:aws:s3:::reports",
            "--resource",
            "arn:aws:s3:::reports/*",
        ],
    );
    assert_eq!(
        grant["status"], "active",
        "read-only, 15 minutes: approved by rule: {grant}"
    );
    let id = grant["id"].as_str().unwrap();
    let env = gw.agent_env(ADMIN_TOKEN, id);

    // Allowed: list and get, through moto's own signature check. (moto rejects even
    // boto3's own signature when a query value holds `/`, so the prefix has none.)
    let out = run_aws_cli(LIST_Q1, &env, None).unwrap();
    assert!(
        out.success(),
        "list failed: {}\n{}",
        out.stderr,
        gw.server_log()
    );
    assert!(out.stdout.contains("q1/summary.txt"), "{}", out.stdout);
    let out = run_aws_cli(
        &["s3", "cp", "s3://reports/q1/summary.txt", "-"],
        &env,
        None,
    )
    .unwrap();
    assert!(out.success(), "get failed: {}", out.stderr);
    assert_eq!(out.stdout, "q1 numbers");

    // Denied by the gateway: a put, another bucket, DynamoDB.
    let out = run_aws_cli(&["s3", "cp", "-", "s3://reports/new.txt"], &env, None).unwrap();
    assert_denied(&out, "AccessDenied");
    let out = run_aws_cli(&["s3", "cp", "s3://other/x.txt", "-"], &env, None).unwrap();
    assert!(!out.success());
    let out = run_aws_cli(
        &[
            "dynamodb",
            "get-item",
            "--table-name",
            "ledger",
            "--key",
            r#"{"pk":{"S":"1"}}"#,
        ],
        &env,
        None,
    )
    .unwrap();
    assert_denied(&out, "AccessDenied");

    // boto3 too, and the denial names the grant and the action.
    let out = run_python(
        "import boto3\ns3 = boto3.client('s3')\ntry:\n    s3.put_object(Bucket='reports', Key='x', Body=b'1')\nexcept Exception as e:\n    print(e)\n",
        &env,
    )
    .unwrap();
    assert!(
        out.stdout.contains("AccessDenied")
            && out.stdout.contains(id)
            && out.stdout.contains("s3:PutObject"),
        "{}",
        out.stdout
    );

    // Revoke: the very next call is denied.
    let out = gw.cli(
        ADMIN_TOKEN,
        &["grant", "revoke", id, "--reason", "task done"],
    );
    assert!(out.success(), "{}", out.stderr);
    let out = run_aws_cli(LIST_Q1, &env, None).unwrap();
    assert_denied(&out, "AccessDenied");
    assert!(out.stderr.contains("revoked"), "{}", out.stderr);

    // The log verifies, and the task's transcript shows the story.
    std::thread::sleep(std::time::Duration::from_millis(400));
    let out = gw.verify(&[]);
    assert_eq!(out.status, 0, "verify: {}\n{}", out.stdout, out.stderr);
    let entries = gw.entries();
    let decisions: Vec<_> = entries
        .iter()
        .filter(|e| e["kind"] == "request_decision")
        .collect();
    assert!(
        decisions
            .iter()
            .any(|e| e["allowed"] == true && e["operation"] == "GetObject"),
        "{decisions:?}"
    );
    assert!(
        decisions
            .iter()
            .any(|e| e["allowed"] == false && e["operation"] == "PutObject")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "grant" && e["event"] == "revoked")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "request_outcome" && e["status"] == 200)
    );

    // The auditor's copy: checkpoints copied out where the gateway host cannot rewrite
    // them. An operator who cuts the log's tail is caught against it.
    let trusted = witness.path().join("checkpoint");
    assert!(trusted.exists(), "no checkpoint copied out");
    let kept = witness.path().join("trusted.note");
    std::fs::copy(&trusted, &kept).unwrap();
    stack.gateway.kill9();
    let gw = &stack.gateway;
    let out = gw.verify(&["--trusted-checkpoint", kept.to_str().unwrap()]);
    assert_eq!(out.status, 0, "{}{}", out.stdout, out.stderr);
    let segment = gw.log_dir().join("log-000000.jsonl");
    let text = std::fs::read_to_string(&segment).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines[..lines.len() - 3].join("\n") + "\n";
    std::fs::write(&segment, cut).unwrap();
    let _ = std::fs::remove_file(gw.log_dir().join("checkpoint"));
    let _ = std::fs::remove_file(gw.log_dir().join("checkpoints.jsonl"));
    let out = gw.verify(&["--trusted-checkpoint", kept.to_str().unwrap(), "--json"]);
    assert_eq!(
        out.status, 1,
        "truncation against the trusted checkpoint must fail: {}{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("truncat"), "{}", out.stdout);
}

#[test]
fn the_tour_script_runs_clean() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new("bash")
        .arg("examples/tour.sh")
        .current_dir(&root)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "examples/tour.sh exited {:?}\n{stdout}\n{stderr}",
        out.status.code()
    );
    // It showed what it says it shows.
    assert!(stdout.contains("revenue up 12%"), "{stdout}");
    assert!(stdout.contains("AccessDenied"), "{stdout}");
    assert!(stdout.contains("intact:"), "{stdout}");
    assert!(stdout.contains("reason=\"report done\""), "{stdout}");
}
