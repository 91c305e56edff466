//! Property tests: the verifier and the aws-chunked decoder never panic on arbitrary input;
//! a framed stream decodes back to its data whatever the chunking and feeding; a re-signed
//! stream decodes with the new key to the same data and the same length.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use bytes::Bytes;
use custody_sigv4::canonical::{PathCanonicalization, canonical_path, canonical_query};
use custody_sigv4::chunked::{
    ChunkDecoder, ChunkEvent, ChunkLimits, ChunkSigningContext, frame_chunk,
};
use custody_sigv4::key::{SigningKey, SigningSecret};
use custody_sigv4::verify::{VerifyOptions, verify};
use proptest::prelude::*;

fn ctx(secret: &str) -> ChunkSigningContext {
    ChunkSigningContext {
        key: SigningKey::derive(&SigningSecret::new(secret), "20261122", "us-east-1", "s3"),
        amz_date: "20261122T020000Z".into(),
        scope: "20261122/us-east-1/s3/aws4_request".into(),
    }
}

const SEED: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Frames `data` cut at `cuts` as a signed aws-chunked stream chained from `seed`
/// (optionally with a trailer).
fn frame_signed(
    c: &ChunkSigningContext,
    seed: &str,
    data: &[u8],
    cuts: &[usize],
    trailer: bool,
) -> Vec<u8> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    for cut in cuts {
        if cut > start {
            pieces.push(&data[start..cut]);
            start = cut;
        }
    }
    if start < data.len() {
        pieces.push(&data[start..]);
    }
    let mut prev = seed.to_owned();
    let mut out = Vec::new();
    for p in pieces.into_iter().chain(std::iter::once(&[][..])) {
        let sig = hex::encode(c.chunk_signature(&prev, p));
        out.extend_from_slice(&frame_chunk(p, Some(&sig)));
        prev = sig;
    }
    if trailer {
        let t = custody_sigv4::chunked::Trailers {
            lines: vec!["x-amz-checksum-crc32:AAAAAA==".into()],
            signature_prefix: None,
        };
        let sig = hex::encode(c.trailer_signature(&prev, &t));
        out.extend_from_slice(
            format!("x-amz-checksum-crc32:AAAAAA==\r\nx-amz-trailer-signature:{sig}\r\n")
                .as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn feed(mut d: ChunkDecoder, body: &[u8], splits: &[usize]) -> Result<Vec<u8>, String> {
    let mut data = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = 1 + splits.get(i).copied().unwrap_or(rest.len()) % rest.len();
        i += 1;
        let (now, later) = rest.split_at(n.min(rest.len()));
        for ev in d.push(now).map_err(|e| e.to_string())? {
            if let ChunkEvent::Chunk(c) = ev {
                data.extend_from_slice(&c.data);
            }
        }
        rest = later;
    }
    d.finish().map_err(|e| e.to_string())?;
    Ok(data)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decoder_never_panics(input in proptest::collection::vec(any::<u8>(), 0..2048),
                            splits in proptest::collection::vec(0usize..64, 0..64),
                            signed in any::<bool>(), trailer in any::<bool>()) {
        let limits = ChunkLimits { max_chunk_size: 1024, ..ChunkLimits::default() };
        let d = if signed {
            ChunkDecoder::signed(ctx("s"), SEED, trailer, None, limits)
        } else {
            ChunkDecoder::unsigned(trailer, None, limits)
        };
        let _ = feed(d, &input, &splits);
    }

    #[test]
    fn decoder_never_panics_on_plausible_framing(
        sizes in proptest::collection::vec("[0-9a-fA-F]{0,18}", 1..4),
        exts in proptest::collection::vec("(;[a-z-]{0,16}(=[0-9a-f;=]{0,70})?){0,3}", 1..4),
        junk in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut body = Vec::new();
        for (s, e) in sizes.iter().zip(exts.iter().cycle()) {
            body.extend_from_slice(format!("{s}{e}\r\n").as_bytes());
            body.extend_from_slice(&junk);
            body.extend_from_slice(b"\r\n");
        }
        for signed in [true, false] {
            let d = if signed {
                ChunkDecoder::signed(ctx("s"), SEED, true, None, ChunkLimits::default())
            } else {
                ChunkDecoder::unsigned(true, None, ChunkLimits::default())
            };
            let _ = feed(d, &body, &[3, 1, 7]);
        }
    }

    #[test]
    fn framed_stream_round_trips(data in proptest::collection::vec(any::<u8>(), 0..5000),
                                 cuts in proptest::collection::vec(any::<usize>(), 0..6),
                                 splits in proptest::collection::vec(any::<usize>(), 0..40),
                                 trailer in any::<bool>()) {
        let c = ctx("secret");
        let body = frame_signed(&c, SEED, &data, &cuts, trailer);
        let d = ChunkDecoder::signed(c.clone(), SEED, trailer, Some(data.len() as u64), ChunkLimits::default());
        prop_assert_eq!(feed(d, &body, &splits).unwrap(), data.clone());
        // The wrong key never accepts it.
        let d = ChunkDecoder::signed(ctx("other"), SEED, trailer, None, ChunkLimits::default());
        prop_assert!(feed(d, &body, &splits).is_err());
    }

    #[test]
    fn canonical_query_is_idempotent_and_total(q in "[a-zA-Z0-9%&=+._~ /;:@!$'()*,-]{0,80}",
                                               raw in proptest::collection::vec(any::<u8>(), 0..80),
                                               plus in any::<bool>()) {
        let once = canonical_query(&q, plus, None);
        prop_assert_eq!(canonical_query(&once, plus, None), once.clone());
        prop_assert!(once.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%=&".contains(&b)));
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let _ = canonical_query(&raw, plus, Some("X-Amz-Signature"));
        for rule in [PathCanonicalization::S3, PathCanonicalization::DEFAULT] {
            let p = canonical_path(&raw, rule);
            prop_assert!(rule == PathCanonicalization::S3 || p.starts_with('/'));
        }
    }

    #[test]
    fn verifier_never_panics(method in "(GET|PUT|POST|DELETE|HEAD)",
                             path in "/[a-zA-Z0-9%/._~+=@-]{0,40}",
                             query in "[a-zA-Z0-9%&=+._~-]{0,60}",
                             auth in "(AWS4-HMAC-SHA256|AWS4-ECDSA-P256-SHA256|AWS|x)? ?(Credential=[A-Za-z0-9/_-]{0,60})?,? ?(SignedHeaders=[a-z;-]{0,30})?,? ?(Signature=[0-9a-f]{0,70})?",
                             date in "[0-9TZ]{0,18}",
                             sha in "(UNSIGNED-PAYLOAD|STREAMING-[A-Z0-9-]{0,40}|[0-9a-f]{0,64})",
                             presign in any::<bool>()) {
        let target = if presign {
            format!("{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261122%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date={date}&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=00&{query}")
        } else if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let Ok(uri) = target.parse::<http::Uri>() else { return Ok(()); };
        let mut b = http::Request::builder().method(method.as_str()).uri(uri)
            .header("host", "h").header("x-amz-date", date.as_str());
        if !presign { b = b.header("authorization", auth.as_str()); }
        if !sha.is_empty() { b = b.header("x-amz-content-sha256", sha.as_str()); }
        let Ok(req) = b.body(()) else { return Ok(()); };
        let parts = req.into_parts().0;
        let lookup = |_: &str| Some(SigningSecret::new("s"));
        if let Ok(v) = verify(&parts, &lookup, common::at("20261122T020000Z"), &VerifyOptions::default()) {
            let _ = v.with_body(b"body");
        }
    }
}

#[test]
fn resigned_stream_keeps_length_and_decodes_with_the_new_key() {
    // End to end through `resign` + `ForwardBody` is in tests/resign.rs; here the property
    // on many shapes.
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
        UriPathNormalizationMode, sign,
    };
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;
    use custody_sigv4::resign::{ForwardBody, UpstreamTarget, resign};
    use custody_sigv4::verify::Verification;

    let now = common::at("20261122T020000Z");
    proptest!(ProptestConfig { cases: 48, ..ProptestConfig::default() }, |(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(any::<usize>(), 0..5),
        trailer in any::<bool>(),
    )| {
        // Agent head, signed with aws-sigv4.
        let agent: Identity = Credentials::new("AKIDAGENT", "agent-secret", None, None, "t").into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder().identity(&agent).region("us-east-1").name("s3")
            .time(now).settings(settings).build().unwrap().into();
        let decoded = data.len().to_string();
        let mut headers = vec![("host", "gw"), ("content-encoding", "aws-chunked"), ("x-amz-decoded-content-length", decoded.as_str())];
        if trailer { headers.push(("x-amz-trailer", "x-amz-checksum-crc32")); }
        let body_kind = if trailer { SignableBody::StreamingSignedPayloadTrailer } else { SignableBody::Precomputed("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into()) };
        let signable = SignableRequest::new("PUT", "http://gw/b/k", headers.iter().copied(), body_kind).unwrap();
        let (ins, seed) = sign(signable, &params).unwrap().into_parts();
        let mut req = http::Request::builder().method("PUT").uri("/b/k");
        for (k, v) in &headers { req = req.header(*k, *v); }
        let mut req = req.body(()).unwrap();
        ins.apply_to_request_http1x(&mut req);
        let parts = req.into_parts().0;
        let lookup = |k: &str| (k == "AKIDAGENT").then(|| SigningSecret::new("agent-secret"));
        let Verification::Verified(v) = verify(&parts, &lookup, now, &VerifyOptions::default()).unwrap() else { panic!() };
        prop_assert_eq!(&v.signature, &seed);

        // Agent body, chained from the seed.
        let c = v.chunk_context();
        let body = frame_signed(&c, &seed, &data, &cuts, trailer);

        let target = UpstreamTarget { scheme: "https".into(), host: "s3.amazonaws.com".into(), region: "us-east-1".into(), service: "s3".into() };
        let sts = Credentials::new("ASIANEW", "new-secret", Some("tok".into()), None, "t");
        let r = resign(&parts, &v, &target, &sts, now).unwrap();
        let mut fb = ForwardBody::new(&v, r.chunk_resigner);
        let mut up = Vec::new();
        for piece in body.chunks(777) { up.extend_from_slice(&fb.push(Bytes::copy_from_slice(piece)).unwrap()); }
        up.extend_from_slice(&fb.finish().unwrap());
        prop_assert_eq!(up.len(), body.len());

        let mut req = http::Request::builder().method("PUT").uri(r.path_and_query.as_str()).body(()).unwrap();
        *req.headers_mut() = r.headers.clone();
        let up_parts = req.into_parts().0;
        let lookup = |k: &str| (k == "ASIANEW").then(|| SigningSecret::new("new-secret"));
        let Verification::Verified(uv) = verify(&up_parts, &lookup, now, &VerifyOptions::default()).unwrap() else { panic!() };
        let d = ChunkDecoder::signed(uv.chunk_context(), &uv.signature, trailer, Some(data.len() as u64), ChunkLimits::default());
        prop_assert_eq!(feed(d, &up, &[5, 100, 3]).unwrap(), data.clone());
    });
}

/// Differential: whatever `aws-sigv4` (the Rust SDK's signer) signs, the verifier accepts,
/// for S3 and non-S3 rules, odd paths, queries and header whitespace; and a one-byte change to
/// the path is refused.
#[test]
fn aws_sigv4_signed_requests_verify() {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
        UriPathNormalizationMode, sign,
    };
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    let now = common::at("20261122T020000Z");
    let segment = "([a-zA-Z0-9._~!$'()*,;=:@+-]|%[0-9A-F]{2}){0,8}";
    let path_strategy =
        proptest::collection::vec(segment, 1..5).prop_map(|segs| format!("/{}", segs.join("/")));
    let query_strategy = proptest::collection::vec(
        (
            // ASCII escapes only in queries: aws-sigv4 decodes query values as lossy UTF-8, so
            // a non-UTF-8 escape (`%A0`) becomes U+FFFD; SDK query values are always UTF-8.
            "([a-zA-Z0-9._~-]|%[0-7][0-9A-F]|%C3%A9){1,6}",
            proptest::option::of("([a-zA-Z0-9._~+-]|%[0-7][0-9A-F]|%C3%BC){0,6}"),
        ),
        0..4,
    );
    proptest!(ProptestConfig { cases: 256, ..ProptestConfig::default() }, |(
        path in path_strategy,
        query in query_strategy,
        value in "[a-z ]{0,12}",
        s3 in any::<bool>(),
        presign in any::<bool>(),
    )| {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| match v { Some(v) => format!("{k}={v}"), None => k.clone() })
            .collect();
        let pq = if q.is_empty() { path.clone() } else { format!("{path}?{}", q.join("&")) };
        let service = if s3 { "s3" } else { "execute-api" };
        let agent: Identity = Credentials::new("AKIDAGENT", "agent-secret", None, None, "t").into();
        let mut settings = SigningSettings::default();
        if s3 {
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        if presign {
            settings.signature_location = aws_sigv4::http_request::SignatureLocation::QueryParams;
            settings.expires_in = Some(std::time::Duration::from_secs(300));
            settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
        }
        // S3 presigns with UNSIGNED-PAYLOAD; other services hash the (empty) body.
        let body = if s3 && presign { SignableBody::UnsignedPayload } else { SignableBody::empty() };
        let params = v4::SigningParams::builder().identity(&agent).region("eu-central-1").name(service)
            .time(now).settings(settings).build().unwrap().into();
        let headers = [("host", "gw:8080"), ("x-custom", value.as_str()), ("x-custom", "second  value")];
        let Ok(signable) = SignableRequest::new("GET", format!("http://gw:8080{pq}"), headers.iter().copied(), body) else {
            return Ok(());
        };
        let Ok(out) = sign(signable, &params) else { return Ok(()); };
        let (ins, _) = out.into_parts();
        let mut req = http::Request::builder().method("GET").uri(pq.as_str());
        for (k, v) in headers { req = req.header(k, v); }
        let mut req = req.body(()).unwrap();
        ins.apply_to_request_http1x(&mut req);
        // Presigning rewrites the URI; keep path and query, as a server sees them.
        let sent = req.uri().path_and_query().unwrap().as_str().to_owned();
        *req.uri_mut() = sent.parse().unwrap();
        let parts = req.into_parts().0;
        let lookup = |k: &str| (k == "AKIDAGENT").then(|| SigningSecret::new("agent-secret"));
        let v = verify(&parts, &lookup, now, &VerifyOptions::default());
        prop_assert_eq!(v.as_ref().map(|v| v.head().presigned).unwrap_or(presign), presign);
        prop_assert!(v.is_ok(), "{} {}: {:?}", service, pq, v.err());

        // A different path (one more byte) is refused.
        let mut other = parts.clone();
        let end = sent.find('?').unwrap_or(sent.len());
        let mut changed = sent.clone();
        changed.insert(end, 'Q');
        other.uri = changed.parse().unwrap();
        prop_assert!(verify(&other, &lookup, now, &VerifyOptions::default()).is_err());
    });
}
