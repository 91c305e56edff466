//! Re-signing round trips: a client request signed with `aws-sigv4` is verified, re-signed for
//! the upstream with new (STS-style) credentials, and the result verified again with the new
//! credentials by our verifier; S3 paths stay byte-identical.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use custody_sigv4::key::{SigningSecret, sha256_hex};
use custody_sigv4::resign::{ForwardBody, UpstreamTarget, resign};
use custody_sigv4::verify::{PayloadMode, Verification, Verified, VerifyOptions, verify};

const AGENT_AKID: &str = "AKIDAGENT0000000001";
const AGENT_SECRET: &str = "agent/secret+key/0000000000000000000000";
const STS_AKID: &str = "ASIASTS00000000000001";
const STS_SECRET: &str = "sts/secret/key/000000000000000000000000";

fn now() -> SystemTime {
    common::at("20261122T020000Z")
}

fn sts_creds() -> Credentials {
    Credentials::new(
        STS_AKID,
        STS_SECRET,
        Some("session-token-xyz".into()),
        None,
        "test",
    )
}

/// Signs like an SDK would: `aws-sigv4` with the service's settings.
fn client_sign(
    method: &str,
    host: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: SignableBody<'_>,
    service: &str,
    presign: bool,
) -> http::request::Parts {
    let creds = Credentials::new(AGENT_AKID, AGENT_SECRET, None, None, "agent");
    let identity: Identity = creds.into();
    let mut settings = SigningSettings::default();
    if service == "s3" {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        if !presign {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
    }
    if presign {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(900));
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let mut all: Vec<(&str, &str)> = vec![("host", host)];
    all.extend_from_slice(headers);
    let uri = format!("http://{host}{path_and_query}");
    let signable = SignableRequest::new(method, uri.clone(), all.iter().copied(), body).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder().method(method).uri(path_and_query);
    for (k, v) in &all {
        req = req.header(*k, *v);
    }
    let mut req = req.body(()).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    // apply_to_request rewrites the URI for presigning: keep only path and query, as a
    // server sees it.
    let pq = req.uri().path_and_query().unwrap().as_str().to_owned();
    *req.uri_mut() = pq.parse().unwrap();
    req.into_parts().0
}

fn verify_agent_head(parts: &http::request::Parts) -> Verified {
    let lookup = common::one_key(AGENT_AKID, AGENT_SECRET);
    match verify(parts, &lookup, now(), &VerifyOptions::default()).unwrap() {
        Verification::Verified(v) => v,
        Verification::NeedsBody(_) => panic!("head should verify alone"),
    }
}

fn verify_agent(parts: &http::request::Parts, body: &[u8]) -> Verified {
    let lookup = common::one_key(AGENT_AKID, AGENT_SECRET);
    verify(parts, &lookup, now(), &VerifyOptions::default())
        .unwrap()
        .with_body(body)
        .unwrap()
}

/// Turns the re-signed head back into request parts and verifies it with the STS key.
fn verify_upstream(
    method: &http::Method,
    resigned: &custody_sigv4::resign::Resigned,
    body: &[u8],
) -> Verified {
    let mut req = http::Request::builder()
        .method(method.clone())
        .uri(resigned.path_and_query.as_str())
        .body(())
        .unwrap();
    *req.headers_mut() = resigned.headers.clone();
    let parts = req.into_parts().0;
    let lookup = move |k: &str| (k == STS_AKID).then(|| SigningSecret::new(STS_SECRET));
    let v = verify(&parts, &lookup, now(), &VerifyOptions::default()).unwrap();
    v.with_body(body).unwrap()
}

fn s3_target() -> UpstreamTarget {
    UpstreamTarget {
        scheme: "https".into(),
        host: "s3.us-east-1.amazonaws.com".into(),
        region: "us-east-1".into(),
        service: "s3".into(),
    }
}

#[test]
fn s3_get_with_odd_key_round_trips_and_keeps_the_path() {
    let path =
        "/bucket/a%2Fb//c/../d%20e%2Bf%3Dg%40h%25i/%C3%BCn%C3%AF?list-type=2&prefix=a%20b&uploads";
    let parts = client_sign(
        "GET",
        "127.0.0.1:8443",
        path,
        &[],
        SignableBody::empty(),
        "s3",
        false,
    );
    let v = verify_agent(&parts, b"");
    assert_eq!(v.service, "s3");
    let r = resign(&parts, &v, &s3_target(), &sts_creds(), now()).unwrap();
    assert_eq!(
        r.path_and_query, path,
        "the S3 path is forwarded byte for byte"
    );
    assert_eq!(r.headers["host"], "s3.us-east-1.amazonaws.com");
    assert_eq!(r.headers["x-amz-security-token"], "session-token-xyz");
    assert!(r.chunk_resigner.is_none());
    let up = verify_upstream(&parts.method, &r, b"");
    assert_eq!(up.access_key_id, STS_AKID);
    assert!(up.header_is_signed("x-amz-security-token"));
}

#[test]
fn s3_put_with_body_hash_round_trips() {
    let body = b"hello world";
    let hash = sha256_hex(body);
    let parts = client_sign(
        "PUT",
        "gw.local:9000",
        "/bucket/key+with%3Dodd@chars",
        &[
            ("content-length", "11"),
            ("content-type", "text/plain"),
            ("x-amz-meta-a", "1"),
        ],
        SignableBody::Bytes(body),
        "s3",
        false,
    );
    let v = verify_agent(&parts, body);
    assert_eq!(v.payload, PayloadMode::Hash(hash.clone()));
    let r = resign(&parts, &v, &s3_target(), &sts_creds(), now()).unwrap();
    assert_eq!(r.headers["x-amz-content-sha256"], hash.as_str());
    assert_eq!(r.headers["x-amz-meta-a"], "1");
    verify_upstream(&parts.method, &r, body);

    // A tampered body fails at the final check, and its last bytes are never released.
    let mut fb = ForwardBody::new(&v, r.chunk_resigner);
    assert!(fb.push(Bytes::from_static(b"hello ")).unwrap().is_empty());
    assert_eq!(
        fb.push(Bytes::from_static(b"worle")).unwrap(),
        Bytes::from_static(b"hello ")
    );
    assert!(fb.finish().is_err());
}

#[test]
fn non_s3_post_is_normalised_and_round_trips() {
    let body = b"Action=GetCallerIdentity&Version=2011-06-15";
    let parts = client_sign(
        "POST",
        "gateway:8080",
        "/",
        &[
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("content-length", "43"),
        ],
        SignableBody::Bytes(body),
        "sts",
        false,
    );
    let lookup = common::one_key(AGENT_AKID, AGENT_SECRET);
    // No x-amz-content-sha256: the body hash is inside the signature.
    let Verification::NeedsBody(pending) =
        verify(&parts, &lookup, now(), &VerifyOptions::default()).unwrap()
    else {
        panic!("sts signs the body hash without sending it");
    };
    assert!(
        pending
            .finish(b"Action=GetCallerIdentity&Version=2011-06-16")
            .is_err()
    );
    let v = verify_agent(&parts, body);
    let target = UpstreamTarget {
        scheme: "https".into(),
        host: "sts.amazonaws.com".into(),
        region: "us-east-1".into(),
        service: "sts".into(),
    };
    let r = resign(&parts, &v, &target, &sts_creds(), now()).unwrap();
    assert!(!r.headers.contains_key("x-amz-content-sha256"));
    verify_upstream(&parts.method, &r, body);
}

#[test]
fn presigned_get_is_forwarded_header_signed() {
    let parts = client_sign(
        "GET",
        "gw:1",
        "/bucket/dir//file.txt?versionId=abc",
        &[],
        SignableBody::UnsignedPayload,
        "s3",
        true,
    );
    assert!(parts.uri.query().unwrap().contains("X-Amz-Signature="));
    let v = verify_agent(&parts, b"");
    assert!(v.presigned);
    let r = resign(&parts, &v, &s3_target(), &sts_creds(), now()).unwrap();
    assert_eq!(r.path_and_query, "/bucket/dir//file.txt?versionId=abc");
    assert!(r.headers.contains_key("authorization"));
    assert_eq!(r.headers["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
    let up = verify_upstream(&parts.method, &r, b"");
    assert!(!up.presigned);

    // Expired (15 min URL, 16 min later) and capped by the grant's expiry.
    let lookup = common::one_key(AGENT_AKID, AGENT_SECRET);
    let later = now() + Duration::from_secs(16 * 60);
    let e = verify(&parts, &lookup, later, &VerifyOptions::default()).unwrap_err();
    assert_eq!(e.aws_code(), "AccessDenied");
    let capped = VerifyOptions {
        not_after: Some(now() + Duration::from_secs(60)),
        ..VerifyOptions::default()
    };
    let e = verify(&parts, &lookup, now() + Duration::from_secs(120), &capped).unwrap_err();
    assert_eq!(e.aws_code_non_s3(), "ExpiredToken");
}

#[test]
fn unsigned_x_amz_headers_and_hop_by_hop_headers_are_not_forwarded() {
    let mut parts = client_sign(
        "GET",
        "gw:1",
        "/bucket/k",
        &[],
        SignableBody::empty(),
        "s3",
        false,
    );
    let v = verify_agent(&parts, b"");
    parts
        .headers
        .insert("x-amz-acl", "public-read".parse().unwrap());
    parts
        .headers
        .insert("connection", "keep-alive, x-foo".parse().unwrap());
    parts.headers.insert("x-foo", "1".parse().unwrap());
    parts.headers.insert("te", "trailers".parse().unwrap());
    parts
        .headers
        .insert("user-agent", "agent/1".parse().unwrap());
    let r = resign(&parts, &v, &s3_target(), &sts_creds(), now()).unwrap();
    for h in ["x-amz-acl", "connection", "x-foo", "te"] {
        assert!(!r.headers.contains_key(h), "{h} forwarded");
    }
    assert_eq!(r.headers["user-agent"], "agent/1");
    assert_eq!(r.headers.get_all("authorization").iter().count(), 1);
    assert_eq!(r.headers.get_all("x-amz-date").iter().count(), 1);
}

#[test]
fn streaming_signed_body_is_resigned_chunk_by_chunk_with_the_same_length() {
    // Client side: a signed aws-chunked upload of 3 chunks.
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let decoded_len = data.len().to_string();
    let pieces: Vec<&[u8]> = vec![&data[..65536], &data[65536..69000], &data[69000..]];
    let framed_len: usize = pieces
        .iter()
        .map(|p| format!("{:x}", p.len()).len() + 17 + 64 + 2 + p.len() + 2)
        .sum::<usize>()
        + 1
        + 17
        + 64
        + 2
        + 2;
    let content_length = framed_len.to_string();
    let parts = client_sign(
        "PUT",
        "gw:1",
        "/bucket/big%20object",
        &[
            ("content-encoding", "aws-chunked"),
            ("content-length", &content_length),
            ("x-amz-decoded-content-length", &decoded_len),
        ],
        SignableBody::Precomputed("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into()),
        "s3",
        false,
    );
    let v = verify_agent_head(&parts);
    let creds = Credentials::new(AGENT_AKID, AGENT_SECRET, None, None, "agent");
    let identity: Identity = creds.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(now())
        .settings(SigningSettings::default())
        .build()
        .unwrap();
    let mut running = v.signature.clone();
    let mut body = Vec::new();
    for p in pieces.iter().copied().chain(std::iter::once(&[][..])) {
        let (_, sig) = v4::sign_chunk(&Bytes::copy_from_slice(p), &running, &params)
            .unwrap()
            .into_parts();
        body.extend_from_slice(&custody_sigv4::chunked::frame_chunk(p, Some(&sig)));
        running = sig;
    }
    body.extend_from_slice(b"\r\n");
    assert_eq!(body.len(), framed_len);

    // Gateway: verify, re-sign head and body.
    let r = resign(&parts, &v, &s3_target(), &sts_creds(), now()).unwrap();
    let mut fb = ForwardBody::new(&v, r.chunk_resigner);
    let mut upstream_body = Vec::new();
    for piece in body.chunks(4000) {
        upstream_body.extend_from_slice(&fb.push(Bytes::copy_from_slice(piece)).unwrap());
    }
    upstream_body.extend_from_slice(&fb.finish().unwrap());
    assert_eq!(upstream_body.len(), body.len(), "framing keeps its length");
    assert_ne!(upstream_body, body, "chunk signatures changed");
    assert_eq!(r.headers["content-length"], content_length.as_str());

    // Upstream: the new head and the new chunk signatures verify with the STS key.
    let mut req = http::Request::builder()
        .method("PUT")
        .uri(r.path_and_query.as_str())
        .body(())
        .unwrap();
    *req.headers_mut() = r.headers.clone();
    let up_parts = req.into_parts().0;
    let lookup = move |k: &str| (k == STS_AKID).then(|| SigningSecret::new(STS_SECRET));
    let up = verify(&up_parts, &lookup, now(), &VerifyOptions::default())
        .unwrap()
        .with_body(&upstream_body)
        .unwrap();
    assert_eq!(
        up.payload,
        PayloadMode::StreamingSigned {
            trailer: false,
            decoded_len: Some(70_000)
        }
    );

    // A tampered chunk makes the gateway stop before releasing it.
    let mut bad = body.clone();
    bad[100] ^= 1;
    let v2 = verify_agent_head(&parts);
    let r2 = resign(&parts, &v2, &s3_target(), &sts_creds(), now()).unwrap();
    let mut fb = ForwardBody::new(&v2, r2.chunk_resigner);
    let out = fb.push(Bytes::from(bad)).map(|b| b.len());
    assert!(out.is_err(), "tampered first chunk released: {out:?}");
}

#[test]
fn forwarding_to_another_region_is_refused() {
    let parts = client_sign(
        "GET",
        "gw:1",
        "/bucket/k",
        &[],
        SignableBody::empty(),
        "s3",
        false,
    );
    let v = verify_agent(&parts, b"");
    let mut t = s3_target();
    t.region = "eu-west-1".into();
    let e = resign(&parts, &v, &t, &sts_creds(), now()).unwrap_err();
    assert!(e.to_string().contains("region"), "{e}");
}

/// An inbound request signed with the verifier's own canonical form (so any path, query and
/// header bytes the verifier accepts can be generated, including query escapes that are not
/// UTF-8, which `aws-sigv4` would not sign as sent), verified.
fn self_signed(
    pq: &str,
    headers: &[(&str, &str)],
    service: &str,
    payload: &str,
) -> Option<(http::request::Parts, Verified)> {
    use custody_sigv4::key::SigningKey;
    use custody_sigv4::verify::canonical_request;
    let date = "20261122T020000Z";
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.extend([
        ("host", "gw:8080"),
        ("x-amz-date", date),
        ("x-amz-content-sha256", payload),
    ]);
    let mut names: Vec<&str> = all.iter().map(|(k, _)| *k).collect();
    names.sort_unstable();
    names.dedup();
    let scope = format!("20261122/us-east-1/{service}/aws4_request");
    let auth = |sig: &str| {
        format!(
            "AWS4-HMAC-SHA256 Credential={AGENT_AKID}/{scope}, SignedHeaders={}, Signature={sig}",
            names.join(";")
        )
    };
    let placeholder = auth(&"0".repeat(64));
    let mut with_auth = all.clone();
    with_auth.push(("authorization", &placeholder));
    let parts = common::parts("GET", pq, &with_auth);
    let creq = canonical_request(&parts, &sha256_hex(b""), &VerifyOptions::default()).ok()?;
    let sts = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        sha256_hex(creq.as_bytes())
    );
    let key = SigningKey::derive(
        &SigningSecret::new(AGENT_SECRET),
        "20261122",
        "us-east-1",
        service,
    );
    let real = auth(&hex::encode(key.sign(sts.as_bytes())));
    let mut with_auth = all;
    with_auth.push(("authorization", &real));
    let parts = common::parts("GET", pq, &with_auth);
    let verified = verify_agent(&parts, b"");
    Some((parts, verified))
}

/// Differential: the crate's own head signing equals `aws-sigv4`'s byte for byte (every header
/// name and value, the path and query, the signature) over generated requests: S3 and other
/// signing rules, dot segments and empty segments, escapes in paths and queries (non-UTF-8
/// ones included), `+`, repeated and empty query pairs, header values with runs of spaces and
/// tabs, repeated headers, headers left unsigned (`user-agent`), payload modes, with and
/// without a session token.
#[test]
fn own_head_signing_matches_aws_sigv4() {
    use proptest::prelude::*;
    let segment = "([a-zA-Z0-9._~!$'()*,;=:@+-]|%[0-9A-F]{2}|\\.|\\.\\.){0,6}";
    let path_strategy =
        proptest::collection::vec(segment, 1..5).prop_map(|segs| format!("/{}", segs.join("/")));
    let piece = "([a-zA-Z0-9._~+-]|%[0-9A-F]{2}|%C3%BC){0,6}";
    let query_strategy = proptest::collection::vec((piece, proptest::option::of(piece)), 0..5)
        .prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k,
                })
                .collect::<Vec<_>>()
                .join("&")
        });
    proptest!(ProptestConfig { cases: 512, ..ProptestConfig::default() }, |(
        path in path_strategy,
        query in query_strategy,
        meta in "[ a-z\t]{0,10}",
        service in prop::sample::select(vec!["s3", "dynamodb", "execute-api", "sqs"]),
        unsigned_payload in any::<bool>(),
        token in any::<bool>(),
        extra in any::<bool>(),
    )| {
        let pq = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let mut headers = vec![("x-amz-meta-a", meta.as_str()), ("content-type", "text/plain")];
        if extra {
            headers.extend([("user-agent", "agent/1.0  (x)"), ("x-amz-meta-b", " one  two "), ("x-amz-meta-b", "three")]);
        }
        let payload = if unsigned_payload && service == "s3" {
            "UNSIGNED-PAYLOAD".to_owned()
        } else {
            sha256_hex(b"")
        };
        let Some((parts, verified)) = self_signed(&pq, &headers, service, &payload) else {
            return Ok(());
        };
        let target = UpstreamTarget {
            scheme: "https".into(),
            host: "upstream.example:8443".into(),
            region: "us-east-1".into(),
            service: service.into(),
        };
        let creds = Credentials::new(STS_AKID, STS_SECRET, token.then(|| "session/token+1".to_owned()), None, "t");
        let diff = common::resign_difference(&parts, &verified, &target, &creds, now());
        prop_assert!(diff.is_none(), "{} {}: {}", service, pq, diff.unwrap_or_default());
    });
}
