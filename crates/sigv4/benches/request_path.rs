//! Request-path benchmarks for custody-sigv4: verify + re-sign a small S3 GET, and checking
//! aws-chunked chunk signatures. (Classification benchmarks live in their own group.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench setup fails loudly"
)]
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::hint::black_box;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use custody_sigv4::chunked::{ChunkDecoder, ChunkLimits, frame_chunk};
use custody_sigv4::key::{SigningSecret, parse_amz_date};
use custody_sigv4::resign::{UpstreamTarget, resign, resign_with_aws_sigv4};
use custody_sigv4::verify::{Verification, VerifyOptions, verify};

fn now() -> SystemTime {
    parse_amz_date("20261122T020000Z").unwrap()
}

/// A small S3 GET as the Rust SDK would sign it.
fn s3_get() -> http::request::Parts {
    let agent: Identity = Credentials::new("AKIDAGENT", "agent-secret", None, None, "b").into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&agent)
        .region("us-east-1")
        .name("s3")
        .time(now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let headers = [
        ("host", "127.0.0.1:8443"),
        ("user-agent", "aws-sdk-rust/1.0 os/linux lang/rust"),
        (
            "amz-sdk-invocation-id",
            "2b6f5c1e-4f0e-4a43-9a1b-7c0b1b1c2d3e",
        ),
        ("amz-sdk-request", "attempt=1; max=3"),
    ];
    let path = "/my-bucket/photos/2026/11/cat%20picture.jpg?versionId=3HL4kqtJlcpXroDTDmJ%2Brmmn";
    let signable = SignableRequest::new(
        "GET",
        format!("http://127.0.0.1:8443{path}"),
        headers.iter().copied(),
        SignableBody::empty(),
    )
    .unwrap();
    let (ins, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder().method("GET").uri(path);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut req = req.body(()).unwrap();
    ins.apply_to_request_http1x(&mut req);
    req.into_parts().0
}

fn sigv4_request_path(c: &mut Criterion) {
    let parts = s3_get();
    let lookup = |k: &str| (k == "AKIDAGENT").then(|| SigningSecret::new("agent-secret"));
    let options = VerifyOptions::default();
    let target = UpstreamTarget {
        scheme: "https".into(),
        host: "s3.us-east-1.amazonaws.com".into(),
        region: "us-east-1".into(),
        service: "s3".into(),
    };
    let creds = Credentials::new(
        "ASIAUPSTREAM",
        "upstream-secret",
        Some("FwoGZXIvYXdzEJr//////////wEaDM+token".into()),
        None,
        "b",
    );
    let verified = match verify(&parts, &lookup, now(), &options).unwrap() {
        Verification::Verified(v) => v,
        Verification::NeedsBody(_) => panic!("GET needs no body"),
    };

    let mut g = c.benchmark_group("sigv4_s3_get");
    g.bench_function("verify", |b| {
        b.iter(|| verify(black_box(&parts), &lookup, now(), &options).unwrap())
    });
    g.bench_function("resign", |b| {
        b.iter(|| resign(black_box(&parts), &verified, &target, &creds, now()).unwrap())
    });
    g.bench_function("resign_with_aws_sigv4", |b| {
        b.iter(|| {
            resign_with_aws_sigv4(black_box(&parts), &verified, &target, &creds, now()).unwrap()
        })
    });
    g.bench_function("verify_and_resign", |b| {
        b.iter(|| {
            let Verification::Verified(v) =
                verify(black_box(&parts), &lookup, now(), &options).unwrap()
            else {
                panic!("GET needs no body")
            };
            resign(&parts, &v, &target, &creds, now()).unwrap()
        })
    });
    g.finish();
}

fn sigv4_chunks(c: &mut Criterion) {
    let parts = s3_get();
    let lookup = |k: &str| (k == "AKIDAGENT").then(|| SigningSecret::new("agent-secret"));
    let Verification::Verified(v) =
        verify(&parts, &lookup, now(), &VerifyOptions::default()).unwrap()
    else {
        panic!("GET needs no body")
    };
    let ctx = v.chunk_context();
    let data = vec![b'a'; 64 * 1024];
    let seed = v.signature.clone();
    let sig = hex::encode(ctx.chunk_signature(&seed, &data));
    let framed = Bytes::from(frame_chunk(&data, Some(&sig)));
    let mut g = c.benchmark_group("sigv4_chunk");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("verify_64KiB_chunk", |b| {
        b.iter(|| {
            let mut d =
                ChunkDecoder::signed(ctx.clone(), &seed, false, None, ChunkLimits::default());
            black_box(d.push(&framed).unwrap())
        })
    });
    g.finish();
}

/// The classification data's first use, which criterion cannot repeat in one process:
/// timed once, before anything else touches the data, and printed. Then a DynamoDB
/// classification once its services are parsed.
fn classify_data(c: &mut Criterion) {
    use custody_sigv4::classify::{ClassifyInput, classify, services};
    let mut headers = http::HeaderMap::new();
    headers.insert("x-amz-target", "DynamoDB_20120810.GetItem".parse().unwrap());
    headers.insert(
        "content-type",
        "application/x-amz-json-1.0".parse().unwrap(),
    );
    let body = br#"{"TableName":"ledger","Key":{"pk":{"S":"q1"}}}"#;
    let input = ClassifyInput {
        method: &http::Method::POST,
        path: "/",
        query: None,
        headers: &headers,
        body: Some(body),
        signing_name: "dynamodb",
        region: "us-east-1",
        account_id: "123456789012",
    };
    let started = std::time::Instant::now();
    classify(&input).unwrap();
    let first = started.elapsed();
    let started = std::time::Instant::now();
    let all = services().unwrap();
    eprintln!(
        "classification data: first DynamoDB request (index + 2 services parsed) {first:?}; \
         the other {} services parsed {:?}",
        all.len() - 2,
        started.elapsed()
    );
    c.bench_function("classify_dynamodb_get_item", |b| {
        b.iter(|| classify(black_box(&input)).unwrap())
    });
}

criterion_group!(
    sigv4_benches,
    classify_data,
    sigv4_request_path,
    sigv4_chunks
);
criterion_main!(sigv4_benches);
