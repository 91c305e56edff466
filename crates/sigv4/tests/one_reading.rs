//! One reading, or refused: the classifier's protocol-level rules (paths, content types,
//! one operation selector, only known members, bodies, encodings, resource
//! alternatives, bucket names) and the transport rules of `fidelity::check_head`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use custody_sigv4::classify::{Classification, ClassifyError, ClassifyInput, classify};
use custody_sigv4::fidelity::{FidelityError, check_head};
use custody_sigv4::verify::{Verification, VerifyOptions, verify};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

fn run(
    signing: &str,
    method: &str,
    target: &str,
    hdrs: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Classification, ClassifyError> {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut h = HeaderMap::new();
    for (k, v) in hdrs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    classify(&ClassifyInput {
        method: &method,
        path,
        query,
        headers: &h,
        body,
        signing_name: signing,
        region: "us-east-1",
        account_id: "111122223333",
    })
}

const JSON: (&str, &str) = ("content-type", "application/x-amz-json-1.0");
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const GET_ITEM: &str = r#"{"TableName":"t","Key":{"pk":{"S":"a"}}}"#;

fn ddb(
    op: &str,
    extra: &[(&str, &str)],
    path: &str,
    body: &str,
) -> Result<Classification, ClassifyError> {
    let target = format!("DynamoDB_20120810.{op}");
    let mut h = vec![("x-amz-target", target.as_str()), JSON];
    h.extend_from_slice(extra);
    run("dynamodb", "POST", path, &h, Some(body.as_bytes()))
}

fn not_one(r: Result<Classification, ClassifyError>, why: &str) {
    match r {
        Err(ClassifyError::NotOneReading { reason, .. }) => {
            assert!(reason.contains(why), "expected `{why}` in `{reason}`");
        }
        other => panic!("expected NotOneReading `{why}`, got {other:?}"),
    }
}

#[test]
fn json_protocol_requests_go_to_the_root_without_a_query() {
    assert!(ddb("GetItem", &[], "/", GET_ITEM).is_ok());
    not_one(
        ddb("GetItem", &[], "/moto-api/data.json", GET_ITEM),
        "go to `/`",
    );
    not_one(ddb("GetItem", &[], "//", GET_ITEM), "go to `/`");
    assert!(matches!(
        ddb("GetItem", &[], "/?TableName=other", GET_ITEM),
        Err(ClassifyError::UnknownParameter { .. })
    ));
    // Presign authentication in the query is not a member.
    assert!(ddb("GetItem", &[], "/?X-Amz-Signature=00", GET_ITEM).is_ok());
}

#[test]
fn the_content_type_is_the_protocols() {
    not_one(
        run(
            "dynamodb",
            "POST",
            "/",
            &[("x-amz-target", "DynamoDB_20120810.GetItem"), FORM],
            Some(GET_ITEM.as_bytes()),
        ),
        "content type",
    );
    not_one(
        run(
            "dynamodb",
            "POST",
            "/",
            &[("x-amz-target", "DynamoDB_20120810.GetItem")],
            Some(GET_ITEM.as_bytes()),
        ),
        "(none)",
    );
    assert!(
        run(
            "dynamodb",
            "POST",
            "/",
            &[
                ("x-amz-target", "DynamoDB_20120810.GetItem"),
                ("content-type", "application/x-amz-json-1.1; charset=utf-8")
            ],
            Some(GET_ITEM.as_bytes())
        )
        .is_ok()
    );
    // A query body without a form content type.
    not_one(
        run(
            "sts",
            "POST",
            "/",
            &[],
            Some(b"Action=GetCallerIdentity&Version=2011-06-15"),
        ),
        "not a form",
    );
    assert!(
        run(
            "sts",
            "POST",
            "/",
            &[FORM],
            Some(b"Action=GetCallerIdentity&Version=2011-06-15")
        )
        .is_ok()
    );
}

#[test]
fn one_operation_selector() {
    not_one(
        ddb(
            "GetItem",
            &[],
            "/",
            r#"{"TableName":"t","Key":{"pk":{"S":"&Action=BatchWriteItem&"}}}"#,
        ),
        "reads as a form",
    );
    not_one(
        ddb("GetItem", &[("action", "Scan")], "/", GET_ITEM),
        "`Action` header",
    );
    not_one(
        run(
            "s3",
            "GET",
            "/bucket/key",
            &[("x-amz-target", "DynamoDB_20120810.Scan")],
            None,
        ),
        "`X-Amz-Target` on a REST request",
    );
}

#[test]
fn only_members_the_model_knows() {
    let e = ddb(
        "GetItem",
        &[],
        "/",
        r#"{"TableName":"t","Key":{},"Tables":["x"]}"#,
    )
    .unwrap_err();
    assert!(matches!(e, ClassifyError::UnknownMember { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("`Tables` is not a member of `GetItem`"),
        "{text}"
    );
    assert!(text.contains("dynamodb 2012-08-10, botocore 1."), "{text}");
    // Nested: a structure inside a map value.
    let e = ddb(
        "GetItem",
        &[],
        "/",
        r#"{"TableName":"t","Key":{"pk":{"S":"a","T":"x"}}}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`Key.pk.T`"), "{e}");
    // Documents and map keys are free; a scalar must not be an object.
    assert!(matches!(
        ddb("GetItem", &[], "/", r#"{"TableName":{"x":1},"Key":{}}"#),
        Err(ClassifyError::Malformed { .. })
    ));
    // Query protocol, nested wire names: lists are `.member.N`, structures `.Name`.
    let tags = "Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::1:role/r&RoleSessionName=s&Tags.member.1.Key=k&Tags.member.1.Value=v";
    assert!(run("sts", "POST", "/", &[FORM], Some(tags.as_bytes())).is_ok());
    for bad in [
        "&Tags.member.0.Key=k",
        "&Tags.1.Key=k",
        "&Tags.member.1.Evil=k",
        "&Tags.member.1.Key.x=k",
        "&Evil=1",
    ] {
        let body = format!("{tags}{bad}");
        let r = run("sts", "POST", "/", &[FORM], Some(body.as_bytes()));
        assert!(
            matches!(r, Err(ClassifyError::UnknownMember { .. })),
            "{bad}: {r:?}"
        );
    }
    // EC2 lists are `Name.N`.
    let ec2 = "Action=TerminateInstances&Version=2016-11-15&InstanceId.1=i-1&InstanceId.2=i-2";
    assert!(run("ec2", "POST", "/", &[FORM], Some(ec2.as_bytes())).is_ok());
    let r = run(
        "ec2",
        "POST",
        "/",
        &[FORM],
        Some(b"Action=TerminateInstances&InstanceId.member.1=i-1"),
    );
    assert!(
        matches!(r, Err(ClassifyError::UnknownMember { .. })),
        "{r:?}"
    );
    // REST: unknown `x-amz-*` headers and query keys.
    let r = run("s3", "GET", "/bucket/key", &[("x-amz-evil", "1")], None);
    assert!(
        matches!(r, Err(ClassifyError::UnknownMember { .. })),
        "{r:?}"
    );
    assert!(
        run(
            "s3",
            "PUT",
            "/bucket/key",
            &[
                ("x-amz-meta-owner", "me"),
                ("x-amz-checksum-crc32", "AAAAAA==")
            ],
            None
        )
        .is_ok()
    );
    let r = run("lambda", "GET", "/2015-03-31/functions/f?Evil=1", &[], None);
    assert!(
        matches!(r, Err(ClassifyError::UnknownParameter { .. })),
        "{r:?}"
    );
}

#[test]
fn no_body_where_the_operation_takes_none() {
    not_one(
        run(
            "s3",
            "GET",
            "/bucket/key",
            &[FORM, ("content-length", "13")],
            Some(b"versionId=old"),
        ),
        "does not take",
    );
    // Streamed (not buffered): the headers say there is a body.
    not_one(
        run(
            "s3",
            "GET",
            "/bucket/key",
            &[("content-length", "13")],
            None,
        ),
        "does not take",
    );
    not_one(
        run(
            "s3",
            "DELETE",
            "/bucket/key",
            &[("transfer-encoding", "chunked")],
            None,
        ),
        "does not take",
    );
    assert!(run("s3", "GET", "/bucket/key", &[("content-length", "0")], None).is_ok());
    assert!(
        run(
            "s3",
            "PUT",
            "/bucket/key",
            &[("content-length", "13")],
            None
        )
        .is_ok()
    );
}

#[test]
fn encodings_of_bodies_the_classifier_reads() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, GET_ITEM.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let h = [
        ("x-amz-target", "DynamoDB_20120810.GetItem"),
        JSON,
        ("content-encoding", "gzip"),
    ];
    not_one(
        run("dynamodb", "POST", "/", &h, Some(&gz)),
        "content encoding `gzip`",
    );
    not_one(
        ddb("GetItem", &[("content-encoding", "br")], "/", GET_ITEM),
        "content encoding `br`",
    );
    assert!(
        ddb(
            "GetItem",
            &[("content-encoding", "identity")],
            "/",
            GET_ITEM
        )
        .is_ok()
    );
    // Where the classifier does not read the body, Content-Encoding is object metadata.
    assert!(
        run(
            "s3",
            "PUT",
            "/bucket/key",
            &[("content-encoding", "gzip"), ("content-length", "3")],
            None
        )
        .is_ok()
    );
    // A gzip body that is not gzip is malformed; one that inflates past the bound too.
    let r = ddb("GetItem", &[("content-encoding", "gzip")], "/", "not gzip");
    assert!(matches!(r, Err(ClassifyError::Malformed { .. })), "{r:?}");
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut bomb, &vec![b' '; 17 << 20]).unwrap();
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 100_000);
    let h = [
        ("x-amz-target", "DynamoDB_20120810.GetItem"),
        JSON,
        ("content-encoding", "gzip"),
    ];
    let r = run("dynamodb", "POST", "/", &h, Some(&bomb));
    match r {
        Err(ClassifyError::Malformed { reason, .. }) => {
            assert!(reason.contains("more than"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_alternative_resource_member_is_decided_on() {
    let topic = "arn:aws:sns:us-east-1:111122223333:granted";
    let other = "arn:aws:sns:us-east-1:111122223333:other";
    let body =
        format!("Action=Publish&Version=2010-03-31&Message=m&TopicArn={topic}&TargetArn={other}");
    let c = run("sns", "POST", "/", &[FORM], Some(body.as_bytes())).unwrap();
    assert_eq!(c.actions[0].resources, [topic, other]);
    let body = format!(
        "Action=Publish&Version=2010-03-31&Message=m&TopicArn={topic}&PhoneNumber=%2B15555550100"
    );
    let c = run("sns", "POST", "/", &[FORM], Some(body.as_bytes())).unwrap();
    assert_eq!(
        c.actions[0].resources,
        ["*"],
        "a phone number is its own resource"
    );
    let body = format!("Action=Publish&Version=2010-03-31&Message=m&TopicArn={topic}");
    let c = run("sns", "POST", "/", &[FORM], Some(body.as_bytes())).unwrap();
    assert_eq!(c.actions[0].resources, [topic]);
    // A less specific alternative of the same resource is not a second one.
    let c = run("s3", "GET", "/bucket/dir/key", &[], None).unwrap();
    assert_eq!(c.actions[0].resources, ["arn:aws:s3:::bucket/dir/key"]);
    // CloudWatch Logs: a name and an identifier naming different groups.
    let body = r#"{"logGroupName":"a","logGroupIdentifier":"b"}"#;
    let h = [
        ("x-amz-target", "Logs_20140328.DescribeLogStreams"),
        ("content-type", "application/x-amz-json-1.1"),
    ];
    let c = run("logs", "POST", "/", &h, Some(body.as_bytes())).unwrap();
    assert_eq!(c.actions[0].resources.len(), 2, "{:?}", c.actions);
}

#[test]
fn bucket_names_follow_s3s_rules() {
    for bad in [
        "Reports",
        "ab",
        "a_b",
        "-ab",
        "ab-",
        "a..b",
        "192.168.1.1",
        "xn--ab",
        "x-s3alias",
        "b--x-s3",
        &"a".repeat(64),
    ] {
        let r = run("s3", "GET", &format!("/{bad}/key"), &[], None);
        assert!(
            matches!(r, Err(ClassifyError::InvalidParameter { .. })),
            "{bad}: {r:?}"
        );
    }
    for good in ["abc", "my.bucket-1", "moto-api"] {
        assert!(
            run("s3", "GET", &format!("/{good}/key"), &[], None).is_ok(),
            "{good}"
        );
    }
    // The copy source's bucket too.
    let r = run(
        "s3",
        "PUT",
        "/bucket/key",
        &[("x-amz-copy-source", "/Other/key")],
        None,
    );
    assert!(
        matches!(r, Err(ClassifyError::InvalidParameter { .. })),
        "{r:?}"
    );
}

// === fidelity::check_head ===

const AKID: &str = "AKIDFIDELITY";
const SECRET: &str = "fidelity-secret";

/// Signs with aws-sigv4 (signing `sign`), then adds `late` unsigned, and checks the head.
fn head(
    service: &str,
    sign: &[(&str, &str)],
    late: &[(&str, &str)],
    payload: Option<&str>,
) -> Result<(), FidelityError> {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        SignableBody, SignableRequest, SigningSettings, sign as sign_request,
    };
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;
    let now = common::at("20261207T120000Z");
    let identity: Identity = Credentials::new(AKID, SECRET, None, None, "t").into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(vec![]);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(now)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let mut headers: Vec<(&str, &str)> = vec![("host", "gw")];
    headers.extend_from_slice(sign);
    if let Some(p) = payload {
        headers.push(("x-amz-content-sha256", p));
    }
    let body = match payload {
        Some(p) => SignableBody::Precomputed(p.to_owned()),
        None => SignableBody::Bytes(b""),
    };
    let signable =
        SignableRequest::new("POST", "http://gw/", headers.iter().copied(), body).unwrap();
    let (ins, _) = sign_request(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder().method("POST").uri("/");
    for (k, v) in headers.iter().chain(late) {
        req = req.header(*k, *v);
    }
    let mut req = req.body(()).unwrap();
    ins.apply_to_request_http1x(&mut req);
    let parts = req.into_parts().0;
    let lookup = common::one_key(AKID, SECRET);
    let v = verify(&parts, &lookup, now, &VerifyOptions::default()).unwrap();
    let head = match &v {
        Verification::Verified(v) => v,
        Verification::NeedsBody(_) => v.head(),
    };
    check_head(&parts, head)
}

#[test]
fn connection_may_name_only_hop_by_hop_headers() {
    let t = [("x-amz-target", "AmazonSQS.SendMessage")];
    assert!(
        head(
            "sqs",
            &t,
            &[("connection", "keep-alive, te"), ("te", "trailers")],
            None
        )
        .is_ok()
    );
    assert!(head("sqs", &t, &[("connection", "close")], None).is_ok());
    assert_eq!(
        head(
            "sqs",
            &t,
            &[("connection", "keep-alive, X-Amz-Target")],
            None
        ),
        Err(FidelityError::ConnectionToken {
            token: "x-amz-target".into()
        })
    );
    assert!(matches!(
        head("sqs", &t, &[("connection", "content-type")], None),
        Err(FidelityError::ConnectionToken { .. })
    ));
}

#[test]
fn duplicates_signed_hop_by_hop_and_unsigned_amz_headers_are_refused() {
    let both = [
        ("x-amz-target", "AmazonSQS.SendMessage"),
        ("x-amz-target", "AmazonSQS.ReceiveMessage"),
    ];
    assert!(matches!(
        head("sqs", &both, &[], None),
        Err(FidelityError::DuplicateHeader { .. })
    ));
    assert!(matches!(
        head(
            "sqs",
            &[
                ("x-amz-target", "AmazonSQS.SendMessage"),
                ("connection", "keep-alive")
            ],
            &[],
            None
        ),
        Err(FidelityError::SignedHopByHop { .. })
    ));
    assert_eq!(
        head(
            "s3",
            &[],
            &[("x-amz-copy-source", "b/k")],
            Some("UNSIGNED-PAYLOAD")
        ),
        Err(FidelityError::UnsignedAmzHeader {
            name: "x-amz-copy-source".into()
        })
    );
    assert!(
        head(
            "s3",
            &[("x-amz-copy-source", "b/k")],
            &[("user-agent", "x")],
            Some("UNSIGNED-PAYLOAD")
        )
        .is_ok()
    );
}

#[test]
fn aws_chunked_only_for_s3() {
    let chunked = Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    assert!(head("s3", &[("content-encoding", "aws-chunked")], &[], chunked).is_ok());
    assert!(matches!(
        head(
            "dynamodb",
            &[("content-encoding", "aws-chunked")],
            &[],
            chunked
        ),
        Err(FidelityError::StreamingPayload { .. })
    ));
}
