//! Verification edge cases: every AuthError class with its AWS code and status, `Date`
//! instead of `X-Amz-Date`, skew, scope, presign limits, unsupported schemes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use custody_sigv4::error::AuthError;
use custody_sigv4::key::{SigningKey, SigningSecret, sha256_hex};
use custody_sigv4::verify::{Verification, VerifyOptions, verify};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn lookup() -> impl Fn(&str) -> Option<SigningSecret> {
    common::one_key(AKID, SECRET)
}

/// Signs a canonical request written out by hand (independent of the verifier's builder).
fn sign(creq: &str, amz_date: &str, region: &str, service: &str) -> String {
    let date = &amz_date[..8];
    let key = SigningKey::derive(&SigningSecret::new(SECRET), date, region, service);
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        sha256_hex(creq.as_bytes())
    );
    hex::encode(key.sign(sts.as_bytes()))
}

fn err(parts: &http::request::Parts, now: &str, options: &VerifyOptions) -> AuthError {
    verify(parts, &lookup(), common::at(now), options).unwrap_err()
}

fn vanilla(amz_date: &str, scope_date: &str) -> http::request::Parts {
    let creq = format!(
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:{amz_date}\n\nhost;x-amz-date\n{}",
        sha256_hex(b"")
    );
    let sig = sign(&creq, amz_date, "us-east-1", "service");
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/{scope_date}/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"
    );
    common::parts(
        "GET",
        "/",
        &[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", amz_date),
            ("authorization", &auth),
        ],
    )
}

#[test]
fn date_header_user_agent_and_duplicates_are_signed_verbatim() {
    // The client signed `Date` (no X-Amz-Date), user-agent, content-length, expect, and a
    // repeated header with odd whitespace.
    let creq = format!(
        "PUT\n/bucket/key\n\ncontent-length:0\ndate:Sun, 22 Nov 2026 02:00:00 GMT\nexpect:100-continue\nhost:gw:8080\nuser-agent:agent/1.0 (x y)\nx-amz-content-sha256:{e}\nx-amz-meta-a:one two,three\n\ncontent-length;date;expect;host;user-agent;x-amz-content-sha256;x-amz-meta-a\n{e}",
        e = sha256_hex(b"")
    );
    let sig = sign(&creq, "20261122T020000Z", "eu-west-1", "s3");
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/20261122/eu-west-1/s3/aws4_request,SignedHeaders=content-length;date;expect;host;user-agent;x-amz-content-sha256;x-amz-meta-a,Signature={sig}"
    );
    let e = sha256_hex(b"");
    let parts = common::parts(
        "PUT",
        "/bucket/key",
        &[
            ("host", "gw:8080"),
            ("date", "Sun, 22 Nov 2026 02:00:00 GMT"),
            ("user-agent", "agent/1.0  (x   y) "),
            ("content-length", "0"),
            ("expect", "100-continue"),
            ("x-amz-content-sha256", &e),
            ("x-amz-meta-a", "  one \t two"),
            ("x-amz-meta-a", "three"),
            ("authorization", &auth),
        ],
    );
    let v = verify(
        &parts,
        &lookup(),
        common::at("20261122T020500Z"),
        &VerifyOptions::default(),
    )
    .unwrap();
    let Verification::Verified(v) = v else {
        panic!("no body needed")
    };
    assert_eq!((v.region.as_str(), v.service.as_str()), ("eu-west-1", "s3"));
    assert_eq!(v.amz_date, "20261122T020000Z");
}

#[test]
fn skew_is_fifteen_minutes_either_way() {
    let parts = vanilla("20150830T123600Z", "20150830");
    let o = VerifyOptions::default();
    for ok in ["20150830T125000Z", "20150830T122100Z"] {
        verify(&parts, &lookup(), common::at(ok), &o).unwrap();
    }
    for bad in ["20150830T125200Z", "20150830T121900Z"] {
        let e = err(&parts, bad, &o);
        assert_eq!(
            (e.aws_code(), e.http_status()),
            ("RequestTimeTooSkewed", 403),
            "{e}"
        );
    }
}

#[test]
fn scope_date_must_be_the_request_date() {
    let parts = vanilla("20150830T123600Z", "20150831");
    let e = err(&parts, "20150830T123600Z", &VerifyOptions::default());
    assert_eq!(e.aws_code(), "IncompleteSignature");
}

#[test]
fn unknown_key_missing_auth_and_malformed_auth() {
    let mut parts = vanilla("20150830T123600Z", "20150830");
    let o = VerifyOptions::default();
    let nobody = |_: &str| None::<SigningSecret>;
    let e = verify(&parts, &nobody, common::at("20150830T123600Z"), &o).unwrap_err();
    assert_eq!(
        (e.aws_code(), e.aws_code_non_s3(), e.http_status()),
        ("InvalidAccessKeyId", "InvalidClientTokenId", 403)
    );
    assert_eq!(e.to_string(), "unknown access key id `AKIDEXAMPLE`");

    // An access key id of any length is named only in part: the message goes back in the
    // agent's error and into the gateway's log entry.
    let long = "A".repeat(100_000);
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={long}/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
        "0".repeat(64)
    );
    let mut huge = vanilla("20150830T123600Z", "20150830");
    huge.headers.insert("authorization", auth.parse().unwrap());
    let e = verify(&huge, &nobody, common::at("20150830T123600Z"), &o).unwrap_err();
    assert_eq!(e.aws_code(), "InvalidAccessKeyId");
    assert_eq!(
        e.to_string(),
        format!("unknown access key id `{}`", &long[..64])
    );

    parts.headers.insert(
        "authorization",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
            .parse()
            .unwrap(),
    );
    assert_eq!(
        err(&parts, "20150830T123600Z", &o).aws_code(),
        "IncompleteSignature"
    );
    parts.headers.insert("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=x-amz-date, Signature=00".parse().unwrap());
    assert_eq!(
        err(&parts, "20150830T123600Z", &o).aws_code(),
        "IncompleteSignature"
    );
    parts.headers.remove("authorization");
    let e = err(&parts, "20150830T123600Z", &o);
    assert_eq!(
        (e.aws_code(), e.http_status()),
        ("MissingAuthenticationToken", 403)
    );
}

#[test]
fn sigv4a_sigv2_and_event_streams_are_not_implemented() {
    let o = VerifyOptions::default();
    let a = common::parts(
        "GET",
        "/",
        &[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            ("x-amz-region-set", "*"),
            (
                "authorization",
                "AWS4-ECDSA-P256-SHA256 Credential=AKIDEXAMPLE/20150830/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-region-set, Signature=3045022100",
            ),
        ],
    );
    let e = err(&a, "20150830T123600Z", &o);
    assert_eq!((e.aws_code(), e.http_status()), ("NotImplemented", 501));
    let v2 = common::parts(
        "GET",
        "/",
        &[
            ("host", "h"),
            ("authorization", "AWS AKIDEXAMPLE:c2lnbmF0dXJl"),
        ],
    );
    assert_eq!(
        err(&v2, "20150830T123600Z", &o).aws_code(),
        "NotImplemented"
    );

    let mut ev = vanilla("20150830T123600Z", "20150830");
    ev.headers.insert(
        "content-type",
        "application/vnd.amazon.eventstream".parse().unwrap(),
    );
    assert_eq!(
        err(&ev, "20150830T123600Z", &o).aws_code(),
        "NotImplemented"
    );
    let mut ev = vanilla("20150830T123600Z", "20150830");
    ev.headers.insert(
        "x-amz-content-sha256",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD".parse().unwrap(),
    );
    assert_eq!(
        err(&ev, "20150830T123600Z", &o).aws_code(),
        "NotImplemented"
    );
}

fn presigned(expires: u64) -> http::request::Parts {
    let q = format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={AKID}%2F20150830%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host"
    );
    let creq = format!("GET\n/b/k\n{q}\nhost:example.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD");
    let sig = sign(&creq, "20150830T123600Z", "us-east-1", "s3");
    common::parts(
        "GET",
        &format!("/b/k?{q}&X-Amz-Signature={sig}"),
        &[("host", "example.amazonaws.com")],
    )
}

#[test]
fn presign_expiry_limits() {
    let o = VerifyOptions::default();
    let week = 7 * 24 * 3600;
    verify(
        &presigned(week),
        &lookup(),
        common::at("20150906T123500Z"),
        &o,
    )
    .unwrap();
    let e = err(&presigned(week), "20150906T123700Z", &o);
    assert_eq!(
        (e.aws_code(), e.aws_code_non_s3(), e.http_status()),
        ("AccessDenied", "ExpiredToken", 403)
    );
    assert_eq!(
        err(&presigned(week + 1), "20150830T123600Z", &o).aws_code(),
        "IncompleteSignature"
    );
    // Capped by the grant's expiry.
    let capped = VerifyOptions {
        not_after: Some(common::at("20150830T130000Z")),
        ..VerifyOptions::default()
    };
    verify(
        &presigned(3600),
        &lookup(),
        common::at("20150830T125900Z"),
        &capped,
    )
    .unwrap();
    assert_eq!(
        err(&presigned(3600), "20150830T130100Z", &capped).aws_code(),
        "AccessDenied"
    );
    // Not yet valid: more than the skew in the future.
    assert_eq!(
        err(&presigned(3600), "20150830T120000Z", &o).aws_code(),
        "RequestTimeTooSkewed"
    );
}

#[test]
fn header_and_query_auth_together_are_refused() {
    let mut p = presigned(60);
    p.headers.insert(
        "authorization",
        "AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=host, Signature=00"
            .parse()
            .unwrap(),
    );
    assert_eq!(
        err(&p, "20150830T123600Z", &VerifyOptions::default()).aws_code(),
        "IncompleteSignature"
    );
}

#[test]
fn secrets_and_keys_are_redacted_in_debug() {
    let p = presigned(60);
    let v = verify(
        &p,
        &lookup(),
        common::at("20150830T123600Z"),
        &VerifyOptions::default(),
    )
    .unwrap();
    let dbg = format!("{v:?}");
    assert!(!dbg.contains(SECRET));
    assert!(dbg.contains("redacted"));
}

#[test]
fn raw_plus_in_query_verifies_as_space_or_as_plus() {
    // aws-sigv4 reads a raw `+` as a space (`%20`), botocore-style signers as a literal `%2B`.
    for canonical_value in ["a%20b", "a%2Bb"] {
        let creq = format!(
            "GET\n/b\nprefix={canonical_value}\nhost:h\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{}",
            sha256_hex(b"")
        );
        let sig = sign(&creq, "20150830T123600Z", "us-east-1", "s3");
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={AKID}/20150830/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"
        );
        let parts = common::parts(
            "GET",
            "/b?prefix=a+b",
            &[
                ("host", "h"),
                ("x-amz-date", "20150830T123600Z"),
                ("authorization", &auth),
            ],
        );
        verify(
            &parts,
            &lookup(),
            common::at("20150830T123600Z"),
            &VerifyOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{canonical_value}: {e}"));
        // ...but not as anything else.
        let other = common::parts(
            "GET",
            "/b?prefix=a-b",
            &[
                ("host", "h"),
                ("x-amz-date", "20150830T123600Z"),
                ("authorization", &auth),
            ],
        );
        assert!(
            verify(
                &other,
                &lookup(),
                common::at("20150830T123600Z"),
                &VerifyOptions::default()
            )
            .is_err()
        );
    }
}
