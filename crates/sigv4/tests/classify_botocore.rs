//! Coverage: every operation of every classified service, serialised by botocore itself
//! (`tools/gen_vectors.py`), must classify to the right operation with at least one
//! action. Needs `python3` with the pinned botocore (CI installs it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use custody_sigv4::classify::{ClassifyError, ClassifyInput, classify, needs_body};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;

/// Operations that are *expected* to be denied, with the reason. They still run: the test
/// checks they fail the way this list says.
///
/// Besides these, two kinds of refusal are expected wherever they occur, and counted:
/// an operation whose name is no action of its service's IAM prefix in the Service
/// Authorization Reference (which action AWS checks is not known), and a request that
/// two services signing with one name would both answer at different endpoints (the
/// gateway, one endpoint for every service, cannot tell which the client meant).
const EXCLUDED: &[(&str, &str, &str)] = &[
    (
        "s3",
        "ListDirectoryBuckets",
        "signed for `s3express` (directory buckets), a signing name outside the allowlist",
    ),
    (
        "s3",
        "WriteGetObjectResponse",
        "signed for `s3-object-lambda`, a signing name outside the allowlist",
    ),
];

/// Operations botocore's model has but botocore cannot serialise, with why.
const NOT_BUILT: &[(&str, &str)] = &[
    // Bidirectional event streams botocore does not implement.
    ("bedrock-runtime", "InvokeModelWithBidirectionalStream"),
    ("connecthealth", "StartMedicalScribeListeningSession"),
    ("lexv2-runtime", "StartConversation"),
    ("polly", "StartSpeechSynthesisStream"),
    ("qbusiness", "Chat"),
    // `Predict` needs the model's own `PredictEndpoint` URL.
    ("machinelearning", "Predict"),
    // CloudFront KeyValueStore resolves its endpoint from a real KVS ARN.
    ("cloudfront-keyvaluestore", "DeleteKey"),
    ("cloudfront-keyvaluestore", "DescribeKeyValueStore"),
    ("cloudfront-keyvaluestore", "GetKey"),
    ("cloudfront-keyvaluestore", "ListKeys"),
    ("cloudfront-keyvaluestore", "PutKey"),
    ("cloudfront-keyvaluestore", "UpdateKeys"),
];

#[derive(Deserialize)]
struct Vectors {
    botocore: String,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    service: String,
    operation: String,
    protocol: String,
    method: Option<String>,
    url: Option<String>,
    headers: Option<Vec<(String, String)>>,
    body: Option<String>,
    signing_name: Option<String>,
    error: Option<String>,
}

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .args(args)
        .current_dir(crate_dir())
        .output()
        .expect("python3 with botocore is needed for the classification coverage tests")
}

/// `alias → operation` from the overrides: a deprecated twin may classify as its successor.
fn aliases() -> BTreeMap<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../data/overrides.json")).unwrap();
    let mut out = BTreeMap::new();
    for (_, svc) in v["services"].as_object().unwrap() {
        if let Some(a) = svc.get("aliases").and_then(|a| a.as_object()) {
            for (k, t) in a {
                out.insert(k.clone(), t.as_str().unwrap().to_owned());
            }
        }
    }
    out
}

#[test]
fn classify_every_botocore_operation() {
    let out = python(&["tools/gen_vectors.py"]);
    assert!(
        out.status.success(),
        "gen_vectors.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vectors: Vectors = serde_json::from_slice(&out.stdout).unwrap();
    let data_version = include_str!("../data/s3.json")
        .split("\"botocore\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap();
    assert_eq!(
        vectors.botocore, data_version,
        "installed botocore differs from the one the data was generated with"
    );
    let aliases = aliases();
    let mut failures = Vec::new();
    let (mut ok, mut excluded) = (0usize, 0usize);
    // service → (classified, all, no IAM action, ambiguous, botocore could not build)
    let mut per_service: BTreeMap<String, [usize; 5]> = BTreeMap::new();
    // Operations classified as minting credentials or tokens.
    let mut minting: Vec<String> = Vec::new();
    // `CUSTODY_CLASSIFY_DUMP=path` writes every classification there, for review.
    let mut dump = String::new();
    for v in &vectors.vectors {
        let label = format!("{} {} ({})", v.service, v.operation, v.protocol);
        let entry = per_service.entry(v.service.clone()).or_default();
        entry[1] += 1;
        if let Some(e) = &v.error {
            // Operations botocore has in its model but cannot serialise (bidirectional
            // streams it does not implement, an endpoint rule that wants a real ARN):
            // no request to classify.
            if NOT_BUILT
                .iter()
                .any(|(s, o)| *s == v.service && *o == v.operation)
            {
                entry[4] += 1;
                excluded += 1;
            } else {
                failures.push(format!("{label}: botocore could not build it: {e}"));
            }
            continue;
        }
        let url = v.url.as_deref().unwrap();
        let after_scheme = &url[url.find("://").unwrap() + 3..];
        let path_and_query = &after_scheme[after_scheme.find('/').unwrap()..];
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut headers = HeaderMap::new();
        for (k, val) in v.headers.as_deref().unwrap() {
            let bytes: Vec<u8> = val.chars().map(|c| c as u8).collect();
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(&bytes).unwrap(),
            );
        }
        let method = Method::from_bytes(v.method.as_deref().unwrap().as_bytes()).unwrap();
        let body = hex::decode(v.body.as_deref().unwrap()).unwrap();
        // Unsigned operations (sts:AssumeRoleWithSAML/WebIdentity) carry no scope.
        let signing_name = v.signing_name.clone().unwrap_or_else(|| v.service.clone());
        // Give the body only when the proxy would have buffered it.
        let give_body = needs_body(&signing_name, &method, &headers, path, query);
        let input = ClassifyInput {
            method: &method,
            path,
            query,
            headers: &headers,
            body: give_body.then_some(body.as_slice()),
            signing_name: &signing_name,
            region: "us-east-1",
            account_id: "123456789012",
        };
        let result = classify(&input);
        if let Some((_, _, why)) = EXCLUDED
            .iter()
            .find(|(s, o, _)| *s == v.service && *o == v.operation)
        {
            match result {
                Err(ClassifyError::UnknownService { .. }) => excluded += 1,
                other => failures.push(format!(
                    "{label}: excluded ({why}) but classified as {other:?}"
                )),
            }
            continue;
        }
        if let Ok(c) = &result
            && c.mints_credentials
        {
            minting.push(format!("{}:{}", v.service, v.operation));
        }
        if let Ok(c) = &result {
            for a in &c.actions {
                dump.push_str(&format!(
                    "{label}\t{}\t{}\t{}\n",
                    a.action,
                    a.resources.join(" "),
                    if c.mints_credentials { "MINTS" } else { "" }
                ));
            }
        }
        match result {
            Err(ClassifyError::Unrecognised { reason, .. })
                if reason.contains("Service Authorization Reference") =>
            {
                entry[2] += 1;
                excluded += 1;
            }
            Err(ClassifyError::Ambiguous { .. }) => {
                entry[3] += 1;
                excluded += 1;
            }
            Ok(c)
                if !c
                    .actions
                    .iter()
                    .all(|a| custody_grant::iam::lookup(&a.action).is_some()) =>
            {
                failures.push(format!(
                    "{label}: an action is not in the IAM reference: {c:?}"
                ));
            }
            Ok(c) => {
                let expected = aliases.get(&v.operation).unwrap_or(&v.operation);
                let sane = !c.actions.is_empty()
                    && c.actions.iter().all(|a| {
                        a.action.contains(':')
                            && !a.resources.is_empty()
                            && a.resources
                                .iter()
                                .all(|r| r == "*" || r.starts_with("arn:"))
                    });
                if (c.operation == v.operation || &c.operation == expected) && sane {
                    ok += 1;
                    entry[0] += 1;
                } else {
                    failures.push(format!("{label}: classified as {c:?}"));
                }
            }
            Err(e) => failures.push(format!(
                "{label}: {e} [{} {path_and_query}]",
                v.method.as_deref().unwrap()
            )),
        }
    }
    if let Ok(path) = std::env::var("CUSTODY_CLASSIFY_DUMP") {
        std::fs::write(path, dump).unwrap();
    }
    let total = vectors.vectors.len() - excluded;
    let mut table = String::from(
        "| service | operations | classified | no IAM action | ambiguous | not built by botocore |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for (service, [good, all, noaction, ambiguous, unbuilt]) in &per_service {
        println!("  {service:<16} {good}/{all}");
        table.push_str(&format!(
            "| {service} | {all} | {good} | {noaction} | {ambiguous} | {unbuilt} |\n"
        ));
    }
    let sum = |i: usize| per_service.values().map(|e| e[i]).sum::<usize>();
    table.push_str(&format!(
        "| **{} services** | **{}** | **{}** | **{}** | **{}** | **{}** |\n",
        per_service.len(),
        sum(1),
        sum(0),
        sum(2),
        sum(3),
        sum(4)
    ));
    // `CUSTODY_SERVICES_TABLE=path` writes the per-service counts (docs/services.md).
    if let Ok(path) = std::env::var("CUSTODY_SERVICES_TABLE") {
        std::fs::write(path, &table).unwrap();
    }
    println!(
        "classified {ok}/{total} operations ({:.1}%), {excluded} excluded as expected denials",
        100.0 * ok as f64 / total as f64
    );
    // Operations that hand out AWS credentials (found by their output shape) or tokens
    // (the reviewed list), in services classified from the models alone: a grant must name
    // them literally, never through a wildcard.
    for op in [
        "deadline:AssumeQueueRoleForUser",
        "eks-auth:AssumeRoleForPodIdentity",
        "codepipeline:PollForJobs",
        "datazone:GetEnvironmentCredentials",
        "lakeformation:GetTemporaryGlueTableCredentials",
        "ecs:ExecuteCommand",
        "mwaa:CreateCliToken",
        "ec2:CreateKeyPair",
        "sts:AssumeRole",
    ] {
        assert!(
            minting.iter().any(|m| m == op),
            "{op} is not classified as minting credentials"
        );
    }
    assert!(
        !minting
            .iter()
            .any(|m| m == "dynamodb:GetItem" || m == "s3:GetObject"),
        "{minting:?}"
    );
    assert!(
        failures.is_empty(),
        "{} operations not classified:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn classify_data_is_fresh() {
    let out = python(&["tools/gen_classify_data.py", "--check"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
