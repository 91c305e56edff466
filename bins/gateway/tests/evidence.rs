//! The evidence survives its own gateway: with write access to the log directory and no
//! key, rewriting history and deleting the checkpoints does not get the forgery signed
//! by the next start, and a crash's unsealed tail is named as sealed late.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use custody_test_support::run_aws_cli;
use sha2::{Digest, Sha256};
use support::{ADMIN_TOKEN, Gateway, Stack};

/// One allowed read and one denied write, then the gateway's log on disk.
fn some_history(stack: &Stack) {
    let gw = &stack.gateway;
    let grant = gw.request_reader("agent:x", "t", &[]);
    let env = gw.agent_env(ADMIN_TOKEN, grant["id"].as_str().unwrap());
    let get = ["s3", "cp", "s3://reports/q1/summary.txt", "-"];
    assert!(run_aws_cli(&get, &env, None).unwrap().success());
    let put = [
        "s3api",
        "put-object",
        "--bucket",
        "reports",
        "--key",
        "new.txt",
    ];
    assert!(!run_aws_cli(&put, &env, None).unwrap().success());
}

fn leaf(line: &str) -> String {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(line.as_bytes());
    hex::encode(h.finalize())
}

/// Flips the first denied decision to allowed and re-chains every later entry, as an
/// attacker with write access but no key can.
fn flip_a_denial(log_dir: &Path) {
    let seg = log_dir.join("log-000000.jsonl");
    let text = std::fs::read_to_string(&seg).unwrap();
    let mut lines: Vec<String> = text
        .trim_end_matches('\0')
        .lines()
        .map(str::to_owned)
        .collect();
    let at = lines
        .iter()
        .position(|l| {
            l.contains("\"kind\":\"request_decision\"") && l.contains("\"allowed\":false")
        })
        .expect("a denied decision");
    for i in at..lines.len() {
        if i == at {
            lines[i] = lines[i].replace("\"allowed\":false", "\"allowed\":true");
        } else {
            let v: serde_json::Value = serde_json::from_str(&lines[i]).unwrap();
            let old = v["prev"].as_str().unwrap().to_owned();
            lines[i] = lines[i].replacen(&old, &leaf(&lines[i - 1]), 1);
        }
    }
    std::fs::write(&seg, lines.join("\n") + "\n").unwrap();
}

/// Starts the gateway binary on its config and expects it to refuse: returns its output.
fn refused_start(gw: &Gateway) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_custody-gateway"))
        .args(["serve", "--config"])
        .arg(&gw.config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", gw.dir.path())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(gw.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the gateway started on a forged log");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the gateway started on a forged log");
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// A stack whose log copies each checkpoint to a directory of its own: that directory
/// (kept alive), its path, the stack.
fn stack_with_checkpoint_copy() -> (tempfile::TempDir, String, Stack) {
    let copy = tempfile::tempdir().unwrap();
    let copy_dir = copy.path().display().to_string();
    let stack = Stack::start_with(|c| {
        *c = c.replace(
            "[log]\n",
            &format!("[log]\ncheckpoint_copy_dir = \"{copy_dir}\"\n"),
        );
    });
    (copy, copy_dir, stack)
}

#[test]
fn a_restart_does_not_re_sign_forged_history() {
    let (copy, copy_dir, mut stack) = stack_with_checkpoint_copy();
    some_history(&stack);
    assert!(stack.gateway.terminate().unwrap().success());
    let copy_note = std::fs::read(copy.path().join("checkpoint")).unwrap();

    // The forgery: a denial turned into an allowed request, re-chained, and the log's own
    // checkpoints deleted.
    let log_dir = stack.gateway.log_dir();
    flip_a_denial(&log_dir);
    std::fs::remove_file(log_dir.join("checkpoints.jsonl")).unwrap();
    std::fs::remove_file(log_dir.join("checkpoint")).unwrap();
    let out = refused_start(&stack.gateway);
    assert!(out.contains("cannot be continued"), "{out}");
    assert!(out.contains("signed root"), "{out}");
    assert!(
        out.contains(&copy_dir),
        "the refusal names the copy it checked: {out}"
    );
    // The copy kept outside is untouched, and the verifier catches the forgery with it.
    assert_eq!(
        std::fs::read(copy.path().join("checkpoint")).unwrap(),
        copy_note
    );
    let trusted = copy.path().join("checkpoint").display().to_string();
    let verdict = stack.gateway.verify(&["--trusted-checkpoint", &trusted]);
    assert_eq!(verdict.status, 1, "{}", verdict.stdout);

    // Without a copy, a log whose checkpoints are gone is not continued either.
    std::fs::remove_dir_all(copy.path()).unwrap();
    let config = std::fs::read_to_string(&stack.gateway.config).unwrap();
    let config = config.replace(&format!("checkpoint_copy_dir = \"{copy_dir}\"\n"), "");
    std::fs::write(&stack.gateway.config, config).unwrap();
    let out = refused_start(&stack.gateway);
    assert!(
        out.contains("no checkpoint signed by this log's key"),
        "{out}"
    );
}

#[test]
fn entries_edited_after_a_crash_are_named_as_sealed_late() {
    // Checkpoints far apart, so the requests stay unsealed until the crash.
    let mut stack = Stack::start_with(|c| {
        *c = c.replace(
            "checkpoint_interval_ms = 200\nheartbeat_interval_ms = 1000",
            "checkpoint_interval_ms = 600000\nheartbeat_interval_ms = 600000",
        );
    });
    some_history(&stack);
    stack.gateway.kill9();
    let log_dir = stack.gateway.log_dir();
    flip_a_denial(&log_dir);
    stack.gateway.spawn();
    let start = Instant::now();
    while stack.gateway.admin_get("/readyz").0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            stack.gateway.server_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = stack.gateway.terminate().unwrap();
    assert!(
        stopped.success(),
        "{stopped:?}: {}",
        stack.gateway.server_log()
    );
    let out = stack.gateway.verify(&["--json"]);
    let late: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|f| f["class"] == "sealed_late")
        .collect();
    let kinds: Vec<String> = stack
        .gateway
        .entries()
        .iter()
        .map(|e| format!("{} {} {}", e["seq"], e["kind"], e["unsealed_entries"]))
        .collect();
    assert_eq!(late.len(), 1, "{}\n{kinds:?}", out.stdout);
    assert!(
        late[0]["message"]
            .as_str()
            .unwrap()
            .contains("before a crash"),
        "{late:?}"
    );
    // A warning: `--strict` fails on it.
    assert_eq!(stack.gateway.verify(&["--strict"]).status, 1);
}

#[test]
fn a_refused_log_is_set_aside_and_the_new_log_says_what_it_replaces() {
    let (_copy, _, mut stack) = stack_with_checkpoint_copy();
    some_history(&stack);
    assert!(stack.gateway.terminate().unwrap().success());
    let data = stack.gateway.data_dir();
    let old_vkey = std::fs::read_to_string(data.join("log.vkey")).unwrap();
    let old_origin = old_vkey.split('+').next().unwrap().to_owned();
    let log_dir = stack.gateway.log_dir();
    flip_a_denial(&log_dir);
    std::fs::remove_file(log_dir.join("checkpoint")).unwrap();
    let refused = refused_start(&stack.gateway);
    assert!(refused.contains("cannot be continued"), "{refused}");
    assert!(
        refused.contains("serve --new-log"),
        "the refusal says what to do: {refused}"
    );

    // The operator starts a new log instead.
    stack.gateway.serve_args = vec![
        "--new-log".into(),
        "forged history found by the start-up check".into(),
    ];
    stack.gateway.spawn();
    some_history(&stack);
    assert!(stack.gateway.terminate().unwrap().success());

    // A new origin, a new vkey line for it (same key), the old log kept as evidence.
    let new_origin = std::fs::read_to_string(data.join("log.origin")).unwrap();
    assert_eq!(new_origin.trim(), format!("{old_origin}/2"));
    let new_vkey = std::fs::read_to_string(data.join("log.vkey")).unwrap();
    assert!(
        new_vkey.starts_with(&format!("{old_origin}/2+")),
        "{new_vkey}"
    );
    let moved: Vec<_> = std::fs::read_dir(log_dir.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("log.replaced-"))
        .collect();
    assert_eq!(moved.len(), 1);
    let old_dir = moved[0].path();
    assert!(old_dir.join("log-000000.jsonl").exists());

    // The new log's second entry says what it replaces and against what to check it.
    let entries = stack.gateway.entries();
    assert_eq!(entries[0]["kind"], "gateway_started");
    let replaced = &entries[1];
    assert_eq!(replaced["kind"], "log_replaced", "{replaced}");
    assert_eq!(replaced["old_origin"], old_origin.as_str());
    assert_eq!(
        replaced["reason"],
        "forged history found by the start-up check"
    );
    assert_eq!(replaced["old_dir"], old_dir.display().to_string());
    let old_checkpoint = replaced["old_checkpoint"].as_str().unwrap();
    assert!(old_checkpoint.starts_with(&format!("{old_origin}\n")));

    // The new log verifies, naming what it replaces; the old one, checked against the
    // checkpoint the new log recorded, shows the forgery.
    let v = stack.gateway.verify(&[]);
    assert_eq!(v.status, 0, "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains("WARN replaces_log"), "{}", v.stdout);
    let old_key = stack.gateway.dir.path().join("old.vkey");
    std::fs::write(&old_key, &old_vkey).unwrap();
    let trusted = stack.gateway.dir.path().join("old.note");
    std::fs::write(&trusted, old_checkpoint).unwrap();
    let out = Command::new(support::verify_bin())
        .arg(&old_dir)
        .arg("--key")
        .arg(&old_key)
        .arg("--trusted-checkpoint")
        .arg(&trusted)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_running_log_proves_an_old_checkpoint_consistent_with_its_newest() {
    let stack = Stack::start();
    some_history(&stack);
    let gw = &stack.gateway;
    // An auditor kept an early checkpoint (the log seals its first entry at once).
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(gw.log_dir().join("checkpoints.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let size: u64 = first["note"]
        .as_str()
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    some_history(&stack);
    std::thread::sleep(Duration::from_millis(500));
    let get = |path: &str, token: &str| {
        let out = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import urllib.request,urllib.error,sys\nr=urllib.request.Request('http://127.0.0.1:{}{path}',headers={{'Authorization':'Bearer {token}'}})\ntry:\n  sys.stdout.write(urllib.request.urlopen(r).read().decode())\nexcept urllib.error.HTTPError as e:\n  sys.stdout.write(str(e.code))",
                gw.admin_port
            ))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let proof = get(&format!("/v1/log/consistency?from={size}"), ADMIN_TOKEN);
    let v: serde_json::Value =
        serde_json::from_str(&proof).unwrap_or_else(|e| panic!("{e}: {proof}"));
    assert_eq!(v["old"], first["note"]);
    let file = gw.dir.path().join("proof.json");
    std::fs::write(&file, &proof).unwrap();
    let out = Command::new(support::verify_bin())
        .arg("check-consistency")
        .arg(&file)
        .arg("--key")
        .arg(gw.data_dir().join("log.vkey"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.starts_with(&format!("consistent: the log of size {size} is a prefix")),
        "{said}"
    );
    // No checkpoint of that size: 404; agents may not ask.
    assert_eq!(get("/v1/log/consistency?from=999999", ADMIN_TOKEN), "404");
    assert_eq!(
        get("/v1/log/consistency?from=1", support::AGENT_TOKEN),
        "403"
    );
}
