//! S3 through the gateway against s3s-fs, an independent S3 server that verifies SigV4
//! itself, including aws-chunked chunk signatures: keys moto mis-signs (`+ = @ % ,`,
//! unicode), query values with `/`, spaces and `+`, bodies of 0 B, 1 B and 8 MiB + 1,
//! multipart, the Rust SDK as the agent, and a hand-built aws-chunked upload whose
//! tampered chunk must abort the upstream request.
//!
//! s3s-fs has one static key pair and no STS, so the gateway runs with
//! `broker.danger_sign_with_base_credentials` here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use custody_test_support::{AwsEnv, free_port, run_python, temp_dir};
use support::{ADMIN_TOKEN, ChildGuard, Gateway};

const AK: &str = "S3SFSACCESSKEY000001";
const SK: &str = "s3sfs-secret-key-0000000000000000000000001";

struct S3s {
    _child: ChildGuard,
    port: u16,
    _dir: tempfile::TempDir,
}

fn s3s() -> S3s {
    let dir = temp_dir().unwrap();
    std::fs::create_dir_all(dir.path().join("bucket")).unwrap();
    let port = free_port().unwrap();
    let child = Command::new("s3s-fs")
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            AK,
            "--secret-key",
            SK,
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("s3s-fs not installed (./scripts/install-test-peers.sh installs it): {e}")
        });
    // Owned from here on: dropping it (also on the panic below) stops the server.
    let server = S3s {
        _child: ChildGuard(child),
        port,
        _dir: dir,
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("s3s-fs did not start");
}

/// s3s-fs, a gateway in front of it signing with s3s-fs's key, and an agent grant over
/// `bucket`.
fn stack() -> (S3s, Gateway, AwsEnv) {
    stack_with(|_| {})
}

fn stack_with(edit: impl FnOnce(&mut String)) -> (S3s, Gateway, AwsEnv) {
    let s3 = s3s();
    let env = vec![
        ("AWS_ACCESS_KEY_ID".into(), AK.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SK.into()),
    ];
    let gw = Gateway::start_for(
        &format!("http://127.0.0.1:{}", s3.port),
        "arn:aws:iam::123456789012:role/s3s",
        env,
        |c| {
            c.push_str("\n[broker]\ndanger_sign_with_base_credentials = true\n");
            edit(c);
        },
    );
    let grant = gw.request(
        ADMIN_TOKEN,
        &[
            "--identity", "agent:uploader", "--task", "t", "--intent", "upload files", "--role", "ops", "--ttl", "30m",
            "--allow", "s3:GetObject,s3:PutObject,s3:DeleteObject,s3:ListBucket,s3:AbortMultipartUpload,s3:ListMultipartUploadParts",
            "--resource", "arn:aws:s3:::bucket", "--resource", "arn:aws:s3:::bucket/*",
            "--deny", "s3:GetObject", "--resource", "arn:aws:s3:::bucket/private/*",
        ],
    );
    let id = grant["id"].as_str().unwrap();
    let out = gw.cli(support::ALICE_TOKEN, &["grant", "approve", id]);
    assert!(out.success(), "{}", out.stderr);
    let agent = gw.agent_env(ADMIN_TOKEN, id);
    (s3, gw, agent)
}

const ODD_KEYS: &str = r#"
import boto3, json
from boto3.s3.transfer import TransferConfig
import io
s3 = boto3.client("s3")
out = {}
keys = ["a b", "a+b", "a=b", "a@b", "dir//x", "a%b", "ünï", "a~b", "a,b", "q (1) & [2].txt"]
for k in keys:
    s3.put_object(Bucket="bucket", Key="odd/" + k, Body=k.encode())
    out[k] = s3.get_object(Bucket="bucket", Key="odd/" + k)["Body"].read().decode()
for prefix in ["odd/a ", "odd/a+", "odd/dir/"]:
    out["list:" + prefix] = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="bucket", Prefix=prefix).get("Contents", []))
for name, body in [("zero", b""), ("one", b"1"), ("big", b"z" * (8 * 1024 * 1024 + 1))]:
    s3.put_object(Bucket="bucket", Key="size/" + name, Body=body)
    out["size:" + name] = s3.get_object(Bucket="bucket", Key="size/" + name)["Body"].read() == body
big = bytes(range(256)) * (9 * 1024 * 4)
s3.upload_fileobj(io.BytesIO(big), "bucket", "multi/part.bin",
                  Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
out["multipart"] = s3.get_object(Bucket="bucket", Key="multi/part.bin")["Body"].read() == big
try:
    s3.get_object(Bucket="bucket", Key="private/x")
    out["deny"] = "allowed"
except Exception as e:
    out["deny"] = str(e)
print(json.dumps(out))
"#;

#[test]
fn odd_keys_sizes_and_multipart_pass_an_independent_signature_check() {
    let (_s3, gw, agent) = stack();
    let v = support::python_json(ODD_KEYS, &agent, &gw);
    for k in [
        "a b",
        "a+b",
        "a=b",
        "a@b",
        "dir//x",
        "a%b",
        "ünï",
        "a~b",
        "a,b",
        "q (1) & [2].txt",
    ] {
        assert_eq!(v[k], k, "key `{k}`");
    }
    assert_eq!(v["list:odd/a "], serde_json::json!(["odd/a b"]));
    // s3s-fs reads `+` in a query value as a space even when sent as `%2B` (it answers
    // boto3 directly the same way); the listing passing its signature check is the point.
    assert!(v["list:odd/a+"].is_array());
    // s3s-fs keeps objects as files, so `dir//x` lists back as `dir/x` (the exact-key get
    // above returned the right body).
    assert_eq!(v["list:odd/dir/"].as_array().map(Vec::len), Some(1));
    for s in ["zero", "one", "big"] {
        assert_eq!(v[format!("size:{s}")], true, "{s}");
    }
    assert_eq!(v["multipart"], true);
    assert!(
        v["deny"].as_str().unwrap().contains("AccessDenied"),
        "{}",
        v["deny"]
    );
}

fn rust_sdk(agent: &AwsEnv) -> aws_sdk_s3::Client {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(&agent.endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            &agent.access_key_id,
            &agent.secret_access_key,
            None,
            None,
            "grant",
        ))
        .http_client(http)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[test]
fn the_rust_sdk_uploads_and_downloads_through_the_gateway() {
    let (_s3, gw, agent) = stack();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = rust_sdk(&agent);
        for (key, body) in [
            ("rust/empty", Vec::new()),
            ("rust/small", b"hello from rust".to_vec()),
            ("rust/large", vec![7u8; 3 << 20]),
        ] {
            client
                .put_object()
                .bucket("bucket")
                .key(key)
                .body(aws_sdk_s3::primitives::ByteStream::from(body.clone()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e:?}\n{}", gw.server_log()));
            let got = client
                .get_object()
                .bucket("bucket")
                .key(key)
                .send()
                .await
                .unwrap();
            let bytes = got.body.collect().await.unwrap().into_bytes();
            assert_eq!(bytes.as_ref(), body.as_slice(), "{key}");
        }
        let denied = client
            .get_object()
            .bucket("bucket")
            .key("private/x")
            .send()
            .await;
        let err = format!("{:?}", denied.unwrap_err());
        assert!(err.contains("AccessDenied"), "{err}");
    });
}

const BULK_DELETE: &str = r#"
import boto3, json
s3 = boto3.client("s3")
keys = ["bulk/" + "k" * 60 + "-%04d" % i for i in range(1000)]
for k in keys[:3]:
    s3.put_object(Bucket="bucket", Key=k, Body=b"x")
r = s3.delete_objects(Bucket="bucket", Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
left = s3.list_objects_v2(Bucket="bucket", Prefix="bulk/").get("KeyCount", 0)
print(json.dumps({"status": r["ResponseMetadata"]["HTTPStatusCode"], "left": left}))
"#;

#[test]
fn a_bulk_delete_of_a_thousand_keys_is_recorded_key_by_key_and_forwarded() {
    // S3's largest DeleteObjects: 1,000 keys. Its decision entry names every key, which
    // takes more than the 64 KiB an entry could once hold.
    let (_s3, gw, agent) = stack();
    let out = run_python(BULK_DELETE, &agent).unwrap();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}{}\n{}", out.stdout, out.stderr, gw.server_log()));
    assert_eq!(
        (v["status"].as_u64(), v["left"].as_u64()),
        (Some(200), Some(0)),
        "{v}"
    );
    let entries = gw.entries();
    let decision = entries
        .iter()
        .find(|e| e["kind"] == "request_decision" && e["operation"] == "DeleteObjects")
        .unwrap_or_else(|| panic!("no DeleteObjects decision"));
    assert_eq!(decision["allowed"], true);
    let resources: Vec<&str> = decision["access"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "s3:DeleteObject")
        .flat_map(|a| a["resources"].as_array().unwrap())
        .filter_map(|r| r.as_str())
        .collect();
    assert_eq!(resources.len(), 1000);
    assert!(resources[999].ends_with("-0999"), "{}", resources[999]);
}

/// A `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` PUT built with the `aws-sigv4` crate's own
/// signers, sent over a raw socket; `tamper` flips one byte of that chunk after signing.
fn chunked_put(
    agent: &AwsEnv,
    key: &str,
    chunks: &[Vec<u8>],
    tamper: Option<usize>,
) -> (u16, String) {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
        UriPathNormalizationMode, sign,
    };
    use aws_sigv4::sign::v4;
    let host = agent.endpoint.trim_start_matches("http://").to_owned();
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(
            &agent.access_key_id,
            &agent.secret_access_key,
            None,
            None,
            "t",
        )
        .into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let now = SystemTime::now();
    let params = |settings: SigningSettings| {
        v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .unwrap()
    };
    let decoded: usize = chunks.iter().map(Vec::len).sum();
    let frame_len = |n: usize| format!("{n:x}").len() + ";chunk-signature=".len() + 64 + 2 + n + 2;
    let content_length: usize =
        chunks.iter().map(|c| frame_len(c.len())).sum::<usize>() + frame_len(0);
    let path = format!("/bucket/{key}");
    let headers = vec![
        ("host".to_owned(), host.clone()),
        ("content-encoding".to_owned(), "aws-chunked".to_owned()),
        ("content-length".to_owned(), content_length.to_string()),
        (
            "x-amz-decoded-content-length".to_owned(),
            decoded.to_string(),
        ),
        (
            "x-amz-content-sha256".to_owned(),
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD".to_owned(),
        ),
    ];
    let signable = SignableRequest::new(
        "PUT",
        format!("http://{host}{path}"),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Precomputed("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into()),
    )
    .unwrap();
    let signing_params = params(settings).into();
    let chunk_params = params(SigningSettings::default());
    let (instructions, seed) = sign(signable, &signing_params).unwrap().into_parts();
    let mut head = format!("PUT {path} HTTP/1.1\r\nconnection: close\r\n");
    for (k, v) in &headers {
        if k != "x-amz-content-sha256" {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    for (k, v) in instructions.headers() {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut body = Vec::new();
    let mut prev = seed;
    for (i, chunk) in chunks
        .iter()
        .chain(std::iter::once(&Vec::new()))
        .enumerate()
    {
        let data = bytes::Bytes::from(chunk.clone());
        let sig = v4::sign_chunk(&data, &prev, &chunk_params)
            .unwrap()
            .into_parts()
            .1;
        let mut sent = chunk.clone();
        if tamper == Some(i) {
            sent[0] ^= 1;
        }
        body.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&sent);
        body.extend_from_slice(b"\r\n");
        prev = sig;
    }
    assert_eq!(body.len(), content_length);
    let mut stream = std::net::TcpStream::connect(&host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(&body);
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[test]
fn aws_chunked_uploads_are_verified_and_re_signed_chunk_by_chunk() {
    let (_s3, gw, agent) = stack();
    let chunks = vec![
        vec![b'a'; 64 * 1024],
        vec![b'b'; 64 * 1024],
        vec![b'c'; 1000],
    ];
    let (status, response) = chunked_put(&agent, "chunked/good.bin", &chunks, None);
    assert_eq!(status, 200, "{response}\n{}", gw.server_log());
    let check = "import boto3\nb = boto3.client('s3').get_object(Bucket='bucket', Key='chunked/good.bin')['Body'].read()\nprint(len(b), b[:1], b[65536:65537], b[-1:])";
    let out = run_python(check, &agent).unwrap();
    assert_eq!(out.stdout.trim(), "132072 b'a' b'b' b'c'", "{}", out.stderr);

    // One flipped byte in the second chunk: the gateway stops before releasing that
    // chunk, the upstream request is aborted, and s3s-fs stores nothing.
    let (status, response) = chunked_put(&agent, "chunked/bad.bin", &chunks, Some(1));
    assert_ne!(status, 200, "{response}");
    assert!(response.contains("SignatureDoesNotMatch"), "{response}");
    let out = run_python(
        "import boto3\ntry:\n    boto3.client('s3').head_object(Bucket='bucket', Key='chunked/bad.bin')\n    print('stored')\nexcept Exception as e:\n    print(e)",
        &agent,
    )
    .unwrap();
    assert!(
        out.stdout.contains("404"),
        "the tampered upload reached the store: {}",
        out.stdout
    );

    // The upload was allowed, so its outcome is in the log, and it says why the gateway
    // answered in the upstream's place.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let outcome = loop {
        let entries = gw.entries();
        let bad = entries
            .iter()
            .rfind(|e| e["kind"] == "request_decision" && e["operation"] == "PutObject")
            .map(|d| d["seq"].clone());
        let outcome = entries
            .iter()
            .find(|e| e["kind"] == "request_outcome" && Some(&e["decision_seq"]) == bad.as_ref())
            .cloned();
        match outcome {
            Some(o) => break o,
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            None => panic!("no outcome for the tampered upload in {entries:?}"),
        }
    };
    assert_eq!(outcome["status"], status, "{outcome}");
    // No upstream answered: no upstream request id (the response's is the gateway's own).
    assert!(outcome["upstream_request_id"].is_null(), "{outcome}");
    let error = outcome["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("chunk 1 signature does not match"),
        "{outcome}"
    );
    // The good upload's outcome has no error.
    let others: Vec<_> = gw
        .entries()
        .into_iter()
        .filter(|e| e["kind"] == "request_outcome" && e["seq"] != outcome["seq"])
        .filter(|e| e.get("error").is_some())
        .collect();
    assert!(others.is_empty(), "{others:?}");
}

/// A self-signed leaf certificate for 127.0.0.1 (and localhost), made with the openssl CLI.
/// `CA:FALSE`: rustls refuses a CA certificate presented as a server's own.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "keyUsage=digitalSignature",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

const TLS_UPLOADS: &str = r#"
import boto3, json, os
s3 = boto3.client("s3")
out = {"modes": []}
def record(request, **kwargs):
    if request.method == "PUT":
        out["modes"].append(request.headers.get("x-amz-content-sha256", b"").decode() if isinstance(request.headers.get("x-amz-content-sha256"), bytes) else request.headers.get("x-amz-content-sha256"))
s3.meta.events.register("before-send.s3.PutObject", record)
for name, body in [("tls/zero", b""), ("tls/small", b"over tls"), ("tls/big", b"t" * (6 * 1024 * 1024 + 3))]:
    s3.put_object(Bucket="bucket", Key=name, Body=body)
    out[name] = s3.get_object(Bucket="bucket", Key=name)["Body"].read() == body
print(json.dumps(out))
"#;

#[test]
fn tls_listener_and_streaming_unsigned_trailer_uploads() {
    let certs = temp_dir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let (_s3, gw, mut agent) = stack_with(move |c| {
        *c = c.replacen(
            "[agent]\n",
            &format!("[agent]\ntls_cert = \"{cert_s}\"\ntls_key = \"{key_s}\"\n"),
            1,
        );
        // The admin listener too: the CLI trusts the configured certificate.
        *c = c.replacen(
            "[admin]\n",
            &format!("[admin]\ntls_cert = \"{cert_s}\"\ntls_key = \"{key_s}\"\n"),
            1,
        );
    });
    assert!(agent.endpoint.starts_with("https://"), "{}", agent.endpoint);
    // boto3 over https sends uploads as aws-chunked with a CRC trailer
    // (STREAMING-UNSIGNED-PAYLOAD-TRAILER); plain http would not exercise that mode.
    let code = format!(
        "import os\nos.environ['AWS_CA_BUNDLE'] = {:?}\n{TLS_UPLOADS}",
        cert.display().to_string()
    );
    let v = support::python_json(&code, &agent, &gw);
    for k in ["tls/zero", "tls/small", "tls/big"] {
        assert_eq!(v[k], true, "{k}");
    }
    assert!(
        v["modes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        "boto3 over tls should stream with a trailer: {}",
        v["modes"]
    );
    // Plain http to the TLS listener gets nothing served.
    agent.endpoint = agent.endpoint.replace("https://", "http://");
    let out = run_python(
        "import boto3\nboto3.client('s3').get_object(Bucket='bucket', Key='tls/small')",
        &agent,
    )
    .unwrap();
    assert!(!out.success());
}
