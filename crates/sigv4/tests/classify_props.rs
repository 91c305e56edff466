//! Property tests: classification never panics, whatever the request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use custody_sigv4::classify::{ClassifyInput, classify, error_format, needs_body};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;

const SIGNING: &[&str] = &[
    "s3",
    "sts",
    "dynamodb",
    "sqs",
    "sns",
    "lambda",
    "secretsmanager",
    "kms",
    "ssm",
    "logs",
    "ec2",
    "unknown",
    "",
];
const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "X"];
const HEADERS: &[&str] = &[
    "x-amz-target",
    "content-type",
    "x-amz-copy-source",
    "x-amz-acl",
    "x-amz-tagging",
    "x-amz-grant-read",
    "x-k8s-aws-id",
    "x-amz-account-id",
    "x-amz-object-lock-mode",
];
const TARGETS: &[&str] = &[
    "DynamoDB_20120810.BatchGetItem",
    "DynamoDB_20120810.TransactWriteItems",
    "DynamoDB_20120810.ExecuteStatement",
    "AmazonSQS.SendMessage",
    "TrentService.ReEncrypt",
    "secretsmanager.BatchGetSecretValue",
    "AmazonSSM.GetParameters",
    "Logs_20140328.PutLogEvents",
    "x",
    ".",
    "",
];

/// Path pieces that reach the interesting routes plus arbitrary text.
fn path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("bucket".to_owned()),
        Just("2015-03-31".to_owned()),
        Just("functions".to_owned()),
        Just("".to_owned()),
        Just("%FF".to_owned()),
        Just("%2F".to_owned()),
        "[a-z0-9%.:+@=]{0,8}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..5).prop_map(|v| format!("/{}", v.join("/")))
}

fn query() -> impl Strategy<Value = Option<String>> {
    let pair = prop_oneof![
        Just("delete".to_owned()),
        Just("uploads".to_owned()),
        Just("versionId=v".to_owned()),
        Just("uploadId=u&partNumber=1".to_owned()),
        Just("list-type=2".to_owned()),
        Just("x-id=GetObject".to_owned()),
        Just("Action=SendMessage".to_owned()),
        Just("Action=AssumeRole".to_owned()),
        "[A-Za-z%=&+-]{0,12}",
        Just("x-amz-grant-\u{e9}\u{e9}=1".to_owned()),
        Just("aaaaaaaaaaa%C3%A9=1".to_owned()),
        Just("%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9=1".to_owned()),
        any::<String>(),
    ];
    prop::option::of(prop::collection::vec(pair, 0..4).prop_map(|v| v.join("&")))
}

fn body() -> impl Strategy<Value = Option<Vec<u8>>> {
    let json = prop_oneof![
        Just(r#"{"RequestItems":{"a":{}}}"#.to_owned()),
        Just(r#"{"TransactItems":[{"Put":{"TableName":1}}]}"#.to_owned()),
        Just(r#"{"TransactItems":[{}]}"#.to_owned()),
        Just(r#"{"Statement":""}"#.to_owned()),
        Just(r#"{"Statements":[{"Statement":5}]}"#.to_owned()),
        Just(r#"{"QueueUrl":"https://h/1/q","SecretIdList":[1],"Names":[null]}"#.to_owned()),
        Just("<Delete><Object><Key>k</Key></Object></Delete>".to_owned()),
        Just("Action=SendMessage&QueueUrl=%2F1%2Fq".to_owned()),
        "[{}\\[\\]\":,a-zA-Z0-9<>/=&]{0,40}",
    ]
    .prop_map(String::into_bytes);
    prop::option::of(prop_oneof![json, prop::collection::vec(any::<u8>(), 0..64)])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn classify_never_panics(
        signing in prop::sample::select(SIGNING),
        method in prop::sample::select(METHODS),
        path in path(),
        query in query(),
        hdrs in prop::collection::vec(
            (prop::sample::select(HEADERS), prop_oneof![prop::sample::select(TARGETS).prop_map(str::to_owned), "[ -~]{0,20}"]),
            0..4,
        ),
        body in body(),
        region in prop_oneof![Just("us-east-1".to_owned()), "[a-z-]{0,12}"],
    ) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut headers = HeaderMap::new();
        for (k, v) in &hdrs {
            if let Ok(v) = HeaderValue::from_str(v) {
                headers.append(HeaderName::from_static(k), v);
            }
        }
        let input = ClassifyInput {
            method: &method,
            path: &path,
            query: query.as_deref(),
            headers: &headers,
            body: body.as_deref(),
            signing_name: signing,
            region: &region,
            account_id: "123456789012",
        };
        let _ = needs_body(signing, &method, &headers, &path, query.as_deref());
        let _ = error_format(signing, &headers);
        if let Ok(c) = classify(&input) {
            // Whatever classifies names at least one action, each with resources.
            prop_assert!(!c.actions.is_empty());
            prop_assert!(c.actions.iter().all(|a| !a.resources.is_empty()));
        }
    }
}
