//! IAM matching semantics, one row per case: the policy, the request, and the expected
//! decision with its reason (the `Display` of the whole decision).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use common::{NOW, grant_json, request};
use custody_grant::decide;

struct Row {
    name: &'static str,
    policy: &'static str,
    actions: &'static [(&'static str, &'static [&'static str])],
    ip: Option<&'static str>,
    region: Option<&'static str>,
    prefix: Option<&'static str>,
    want: &'static str,
}

const READ: &str = r#"{"Version":"2012-10-17","Statement":{"Sid":"Read","Effect":"Allow","Action":"s3:Get*","Resource":"arn:aws:s3:::b/*"}}"#;
const ALL_BUT_KEEP: &str = r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Effect":"Deny","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::b/keep/*"}]}"#;
const DENY_FIRST: &str = r#"{"Statement":[{"Sid":"No","Effect":"Deny","Action":"s3:getobject","Resource":"*"},{"Sid":"Yes","Effect":"Allow","Action":"*","Resource":"*"}]}"#;
const NOT_ACTION: &str =
    r#"{"Statement":[{"Effect":"Allow","NotAction":["iam:*","s3:Delete*"],"Resource":"*"}]}"#;
const NOT_RESOURCE: &str = r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","NotResource":"arn:aws:s3:::b/private/*"}]}"#;
const ONLY_B: &str = r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"OnlyB","Effect":"Deny","Action":"s3:*","NotResource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]}]}"#;
const COPY: &str = r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::src/*"},{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::dst/*"}]}"#;
const QMARK: &str = r#"{"Statement":[{"Effect":"Allow","Action":"s3:?etObject","Resource":"arn:aws:s3:::b/file-?.txt"}]}"#;
const PREFIX: &str = r#"{"Statement":[{"Sid":"Home","Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::b","Condition":{"StringLike":{"s3:prefix":["home/alice/*","shared/"]}}}]}"#;
const FROM_VPN: &str = r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.0.2.7"]}}}]}"#;
const OFFICE_ONLY: &str = r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"OfficeOnly","Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#;
const EU_ONLY: &str = r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:requestedregion":["eu-west-1","eu-central-1"]}}}]}"#;
const BEFORE_ONE: &str = r#"{"Statement":[{"Sid":"Morning","Effect":"Allow","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"2026-06-01T13:00:00Z"}}},{"Sid":"Late","Effect":"Allow","Action":"ec2:*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2026-06-01T13:00:00Z"}}}]}"#;
const STS_STAR: &str =
    r#"{"Statement":[{"Effect":"Allow","Action":["sts:*","s3:*"],"Resource":"*"}]}"#;
const STS_NAMED: &str = r#"{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"arn:aws:iam::123456789012:role/x"}]}"#;
const EMPTY: &str = r#"{"Version":"2012-10-17","Statement":[]}"#;
const PROD_GUARD: &str = r#"{"Statement":[{"Effect":"Allow","Action":"ec2:*","Resource":"*"},{"Sid":"Prod","Effect":"Deny","Action":"ec2:TerminateInstances","Resource":"arn:aws:ec2:us-east-1:123456789012:instance/i-prod"}]}"#;
const PROD_FROM_OFFICE: &str = r#"{"Statement":[{"Effect":"Allow","Action":"ec2:*","Resource":"*"},{"Sid":"Prod","Effect":"Deny","Action":"ec2:TerminateInstances","Resource":"arn:aws:ec2:us-east-1:123456789012:instance/i-prod","Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#;
const DENY_NOT_ALL: &str = r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"Never","Effect":"Deny","Action":"s3:*","NotResource":"*"}]}"#;
const BLOCKED_NET: &str = r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"Blocked","Effect":"Deny","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}}]}"#;
const SECRETS_BUT_HOLDOUT: &str = r#"{"Statement":[{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"},{"Sid":"Holdout","Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"arn:aws:secretsmanager:us-east-1:123456789012:secret:holdout-secret-??????"}]}"#;
const ONE_SECRET: &str = r#"{"Statement":[{"Sid":"Db","Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-??????"}]}"#;
const ONE_SECRET_EXACT: &str = r#"{"Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"}]}"#;
const KEYS_BUT_ONE: &str = r#"{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Sid":"Prod","Effect":"Deny","Action":"kms:Encrypt","Resource":"arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}]}"#;
const ANY_KEY: &str = r#"{"Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"arn:aws:kms:us-east-1:123456789012:key/*"}]}"#;
const UPPER_DENY: &str = r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"Keep","Effect":"Deny","Action":"s3:DeleteObject","Resource":"arn:AWS:S3:::b/keep/*"}]}"#;
const UPPER_ALLOW: &str =
    r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:AWS:s3:::b/*"}]}"#;
const TABLES: &str = r#"{"Statement":[{"Effect":"Allow","Action":"dynamodb:*","Resource":"arn:aws:dynamodb:*:123456789012:table/orders*"}]}"#;

const ROWS: &[Row] = &[
    Row {
        name: "prefix wildcard allows",
        policy: READ,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/k"])],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement `Read`",
    },
    Row {
        name: "action names are case-insensitive",
        policy: READ,
        actions: &[("S3:GETOBJECT", &["arn:aws:s3:::b/k"])],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement `Read`",
    },
    Row {
        name: "arns are case-sensitive",
        policy: READ,
        actions: &[("s3:GetObject", &["arn:aws:s3:::B/k"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `arn:aws:s3:::B/k` is not in the grant's scope",
    },
    Row {
        name: "other action is not in scope",
        policy: READ,
        actions: &[("s3:PutObject", &["arn:aws:s3:::b/k"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:PutObject` on `arn:aws:s3:::b/k` is not in the grant's scope",
    },
    Row {
        name: "b/* does not cover the bucket",
        policy: READ,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `arn:aws:s3:::b` is not in the grant's scope",
    },
    Row {
        name: "an arn pattern does not cover resource *",
        policy: READ,
        actions: &[("s3:GetObject", &["*"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `*` is not in the grant's scope",
    },
    Row {
        name: "resource part matches across / and :",
        policy: READ,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/a/b:c"])],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement `Read`",
    },
    Row {
        name: "explicit deny wins over a broad allow",
        policy: ALL_BUT_KEEP,
        actions: &[("s3:DeleteObject", &["arn:aws:s3:::b/keep/x"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:DeleteObject` on `arn:aws:s3:::b/keep/x` is explicitly denied by statement #1",
    },
    Row {
        name: "deny does not reach other keys",
        policy: ALL_BUT_KEEP,
        actions: &[("s3:DeleteObject", &["arn:aws:s3:::b/other"])],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "deny wins whatever the order",
        policy: DENY_FIRST,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/k"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `arn:aws:s3:::b/k` is explicitly denied by statement `No`",
    },
    Row {
        name: "deny on one pair denies the request",
        policy: DENY_FIRST,
        actions: &[
            ("s3:PutObject", &["arn:aws:s3:::b/k"]),
            ("s3:GetObject", &["arn:aws:s3:::b/k"]),
        ],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `arn:aws:s3:::b/k` is explicitly denied by statement `No`",
    },
    Row {
        name: "notaction allows the rest",
        policy: NOT_ACTION,
        actions: &[("ec2:DescribeInstances", &["*"])],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "notaction excludes by wildcard",
        policy: NOT_ACTION,
        actions: &[("iam:CreateUser", &["*"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `iam:CreateUser` on `*` is not in the grant's scope",
    },
    Row {
        name: "notaction is case-insensitive",
        policy: NOT_ACTION,
        actions: &[("s3:deleteobject", &["arn:aws:s3:::b/k"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:deleteobject` on `arn:aws:s3:::b/k` is not in the grant's scope",
    },
    Row {
        name: "notresource allows elsewhere",
        policy: NOT_RESOURCE,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/public/x"])],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "notresource excludes",
        policy: NOT_RESOURCE,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/private/x"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `arn:aws:s3:::b/private/x` is not in the grant's scope",
    },
    Row {
        name: "deny with notresource fences a bucket",
        policy: ONLY_B,
        actions: &[("s3:GetObject", &["arn:aws:s3:::other/k"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `arn:aws:s3:::other/k` is explicitly denied by statement `OnlyB`",
    },
    Row {
        name: "inside the fence",
        policy: ONLY_B,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/k"])],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "copy needs both actions",
        policy: COPY,
        actions: &[
            ("s3:GetObject", &["arn:aws:s3:::src/a"]),
            ("s3:PutObject", &["arn:aws:s3:::dst/a"]),
        ],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0, statement #1",
    },
    Row {
        name: "copy onto the source is refused",
        policy: COPY,
        actions: &[
            ("s3:GetObject", &["arn:aws:s3:::src/a"]),
            ("s3:PutObject", &["arn:aws:s3:::src/a"]),
        ],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:PutObject` on `arn:aws:s3:::src/a` is not in the grant's scope",
    },
    Row {
        name: "every resource of an action counts",
        policy: COPY,
        actions: &[(
            "s3:GetObject",
            &["arn:aws:s3:::src/a", "arn:aws:s3:::dst/a"],
        )],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `arn:aws:s3:::dst/a` is not in the grant's scope",
    },
    Row {
        name: "? is one character",
        policy: QMARK,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/file-1.txt"])],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "? is not two characters",
        policy: QMARK,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/file-10.txt"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `arn:aws:s3:::b/file-10.txt` is not in the grant's scope",
    },
    Row {
        name: "region wildcard stays in its segment",
        policy: TABLES,
        actions: &[(
            "dynamodb:GetItem",
            &["arn:aws:dynamodb:eu-west-1:123456789012:table/orders-2026"],
        )],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "account segment is matched on its own",
        policy: TABLES,
        actions: &[(
            "dynamodb:GetItem",
            &["arn:aws:dynamodb:eu-west-1:999:123456789012:table/orders"],
        )],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `dynamodb:GetItem` on `arn:aws:dynamodb:eu-west-1:999:123456789012:table/orders` is not in the grant's scope",
    },
    Row {
        name: "s3 prefix condition matches",
        policy: PREFIX,
        actions: &[("s3:ListBucket", &["arn:aws:s3:::b"])],
        ip: None,
        region: None,
        prefix: Some("home/alice/docs/"),
        want: "allow: allowed by statement `Home`",
    },
    Row {
        name: "s3 prefix values are alternatives",
        policy: PREFIX,
        actions: &[("s3:ListBucket", &["arn:aws:s3:::b"])],
        ip: None,
        region: None,
        prefix: Some("shared/"),
        want: "allow: allowed by statement `Home`",
    },
    Row {
        name: "s3 prefix condition fails",
        policy: PREFIX,
        actions: &[("s3:ListBucket", &["arn:aws:s3:::b"])],
        ip: None,
        region: None,
        prefix: Some("home/bob/"),
        want: "deny: `s3:ListBucket` on `arn:aws:s3:::b` is not in the grant's scope",
    },
    Row {
        name: "missing key fails a positive operator",
        policy: PREFIX,
        actions: &[("s3:ListBucket", &["arn:aws:s3:::b"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:ListBucket` on `arn:aws:s3:::b` is not in the grant's scope",
    },
    Row {
        name: "source ip in cidr",
        policy: FROM_VPN,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/k"])],
        ip: Some("10.1.2.3"),
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "source ip single address",
        policy: FROM_VPN,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/k"])],
        ip: Some("192.0.2.7"),
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "source ip outside",
        policy: FROM_VPN,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/k"])],
        ip: Some("192.0.2.8"),
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `arn:aws:s3:::b/k` is not in the grant's scope",
    },
    Row {
        name: "source ip unknown",
        policy: FROM_VPN,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/k"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `arn:aws:s3:::b/k` is not in the grant's scope",
    },
    Row {
        name: "notipaddress deny spares the office",
        policy: OFFICE_ONLY,
        actions: &[("ec2:RunInstances", &["*"])],
        ip: Some("10.0.0.1"),
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "notipaddress deny hits outside",
        policy: OFFICE_ONLY,
        actions: &[("ec2:RunInstances", &["*"])],
        ip: Some("8.8.8.8"),
        region: None,
        prefix: None,
        want: "deny: `ec2:RunInstances` on `*` is explicitly denied by statement `OfficeOnly`",
    },
    Row {
        name: "missing key makes a negated operator true",
        policy: OFFICE_ONLY,
        actions: &[("ec2:RunInstances", &["*"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `ec2:RunInstances` on `*` is explicitly denied by statement `OfficeOnly`",
    },
    Row {
        name: "requested region condition (key case-insensitive)",
        policy: EU_ONLY,
        actions: &[("sqs:SendMessage", &["arn:aws:sqs:eu-central-1:1:q"])],
        ip: None,
        region: Some("eu-central-1"),
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "requested region condition fails",
        policy: EU_ONLY,
        actions: &[("sqs:SendMessage", &["arn:aws:sqs:us-east-1:1:q"])],
        ip: None,
        region: Some("us-east-1"),
        prefix: None,
        want: "deny: `sqs:SendMessage` on `arn:aws:sqs:us-east-1:1:q` is not in the grant's scope",
    },
    Row {
        name: "time window open",
        policy: BEFORE_ONE,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/k"])],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement `Morning`",
    },
    Row {
        name: "credential minting needs its name",
        policy: STS_STAR,
        actions: &[("sts:AssumeRole", &["arn:aws:iam::123456789012:role/x"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `sts:AssumeRole` on `arn:aws:iam::123456789012:role/x` mints credentials and must be named explicitly in the scope, not through a wildcard",
    },
    Row {
        name: "credential minting named literally",
        policy: STS_NAMED,
        actions: &[("sts:assumerole", &["arn:aws:iam::123456789012:role/x"])],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "no statements deny",
        policy: EMPTY,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/k"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `arn:aws:s3:::b/k` is not in the grant's scope",
    },
    Row {
        name: "empty resource list reads as *",
        policy: ALL_BUT_KEEP,
        actions: &[("s3:ListAllMyBuckets", &[])],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "malformed request arn denies",
        policy: ALL_BUT_KEEP,
        actions: &[("s3:GetObject", &["b/k"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: request cannot be evaluated: `actions[0].resources[0]`: malformed arn `b/k`: an arn starts with `arn:`",
    },
    Row {
        name: "wildcard in request action denies",
        policy: ALL_BUT_KEEP,
        actions: &[("s3:*", &["*"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: request cannot be evaluated: `actions[0].action`: `s3:*` is not `service:Action`",
    },
    // An unknown resource (`*`) could be any resource: an Allow must cover them all, a
    // Deny that could match one applies.
    Row {
        name: "a deny on one resource applies to an unknown resource",
        policy: PROD_GUARD,
        actions: &[("ec2:TerminateInstances", &["*"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `ec2:TerminateInstances` on `*` is explicitly denied by statement `Prod`",
    },
    Row {
        name: "a known other resource is not denied",
        policy: PROD_GUARD,
        actions: &[(
            "ec2:TerminateInstances",
            &["arn:aws:ec2:us-east-1:123456789012:instance/i-dev"],
        )],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "a conditioned deny on one resource applies to an unknown resource from outside",
        policy: PROD_FROM_OFFICE,
        actions: &[("ec2:TerminateInstances", &["*"])],
        ip: Some("198.51.100.7"),
        region: None,
        prefix: None,
        want: "deny: `ec2:TerminateInstances` on `*` is explicitly denied by statement `Prod`",
    },
    Row {
        name: "…and not from inside",
        policy: PROD_FROM_OFFICE,
        actions: &[("ec2:TerminateInstances", &["*"])],
        ip: Some("10.1.2.3"),
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "an allow with notresource does not cover an unknown resource",
        policy: NOT_RESOURCE,
        actions: &[("s3:GetObject", &["*"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `*` is not in the grant's scope",
    },
    Row {
        name: "a deny with notresource * never applies",
        policy: DENY_NOT_ALL,
        actions: &[("s3:ListAllMyBuckets", &["*"])],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "a deny with notresource applies to an unknown resource",
        policy: ONLY_B,
        actions: &[("s3:ListAllMyBuckets", &["*"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:ListAllMyBuckets` on `*` is explicitly denied by statement `OnlyB`",
    },
    Row {
        name: "an ipv4-mapped ipv6 source is its ipv4 address",
        policy: BLOCKED_NET,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/k"])],
        ip: Some("::ffff:203.0.113.9"),
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `arn:aws:s3:::b/k` is explicitly denied by statement `Blocked`",
    },
    Row {
        name: "…and an allow from inside holds for it",
        policy: FROM_VPN,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/k"])],
        ip: Some("::ffff:10.9.8.7"),
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    // A secret named without its suffix, a key named by an alias: `?` are unknown
    // characters, decided over every value they could take.
    Row {
        name: "a deny on the suffix form stops a call by name",
        policy: SECRETS_BUT_HOLDOUT,
        actions: &[(
            "secretsmanager:GetSecretValue",
            &["arn:aws:secretsmanager:us-east-1:123456789012:secret:holdout-secret-??????"],
        )],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `secretsmanager:GetSecretValue` on `arn:aws:secretsmanager:us-east-1:123456789012:secret:holdout-secret-??????` is explicitly denied by statement `Holdout`",
    },
    Row {
        name: "…and not another secret",
        policy: SECRETS_BUT_HOLDOUT,
        actions: &[(
            "secretsmanager:GetSecretValue",
            &["arn:aws:secretsmanager:us-east-1:123456789012:secret:other-??????"],
        )],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    Row {
        name: "an allow on the suffix form covers a call by name",
        policy: ONE_SECRET,
        actions: &[(
            "secretsmanager:GetSecretValue",
            &["arn:aws:secretsmanager:us-east-1:123456789012:secret:db-??????"],
        )],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement `Db`",
    },
    Row {
        name: "an allow on one full arn does not cover a call by name",
        policy: ONE_SECRET_EXACT,
        actions: &[(
            "secretsmanager:GetSecretValue",
            &["arn:aws:secretsmanager:us-east-1:123456789012:secret:db-??????"],
        )],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `secretsmanager:GetSecretValue` on `arn:aws:secretsmanager:us-east-1:123456789012:secret:db-??????` is not in the grant's scope",
    },
    Row {
        name: "a deny on one key stops a call through an alias",
        policy: KEYS_BUT_ONE,
        actions: &[(
            "kms:Encrypt",
            &["arn:aws:kms:us-east-1:123456789012:key/????????????????????????????????????"],
        )],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `kms:Encrypt` on `arn:aws:kms:us-east-1:123456789012:key/????????????????????????????????????` is explicitly denied by statement `Prod`",
    },
    Row {
        name: "an allow on every key covers a call through an alias",
        policy: ANY_KEY,
        actions: &[(
            "kms:Encrypt",
            &["arn:aws:kms:us-east-1:123456789012:key/????????????????????????????????????"],
        )],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement #0",
    },
    // Upper-case partition/service/region/account segments: a Deny matches as if they were
    // lower case, an Allow does not (either way, never looser than IAM might be).
    Row {
        name: "a deny with upper-case arn segments still denies",
        policy: UPPER_DENY,
        actions: &[("s3:DeleteObject", &["arn:aws:s3:::b/keep/x"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:DeleteObject` on `arn:aws:s3:::b/keep/x` is explicitly denied by statement `Keep`",
    },
    Row {
        name: "an allow with upper-case arn segments allows nothing",
        policy: UPPER_ALLOW,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/k"])],
        ip: None,
        region: None,
        prefix: None,
        want: "deny: `s3:GetObject` on `arn:aws:s3:::b/k` is not in the grant's scope",
    },
    Row {
        name: "a question mark in an s3 key is a character, not an unknown",
        policy: READ,
        actions: &[("s3:GetObject", &["arn:aws:s3:::b/what?"])],
        ip: None,
        region: None,
        prefix: None,
        want: "allow: allowed by statement `Read`",
    },
];

#[test]
fn wildcards_in_the_service_prefix_are_refused() {
    for action in [
        "s*:GetObject",
        "*:DescribeInstances",
        "lambd?:InvokeFunction",
    ] {
        let json =
            format!(r#"{{"Statement":[{{"Effect":"Allow","Action":"{action}","Resource":"*"}}]}}"#);
        let err = custody_grant::Scope::from_iam_json(&json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in the service prefix"), "{action}: {err}");
    }
}

#[test]
fn iam_matching_table() {
    let mut failures = Vec::new();
    for row in ROWS {
        let grant = grant_json(row.policy);
        let mut req = request(row.actions);
        if let Some(region) = row.region {
            req.region = Some(region.to_owned());
        }
        req.source_ip = row.ip.map(|ip| ip.parse().unwrap());
        if let Some(prefix) = row.prefix {
            req.context
                .insert("s3:prefix".to_owned(), prefix.to_owned());
        }
        let got = decide(&grant, &req, NOW).to_string();
        if got != row.want {
            failures.push(format!(
                "{}:\n   got  {got}\n   want {}",
                row.name, row.want
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn time_window_closes() {
    let grant = grant_json(BEFORE_ONE);
    let later = time::macros::datetime!(2026-06-01 13:30 UTC);
    let req = request(&[("s3:GetObject", &["arn:aws:s3:::b/k"])]);
    assert_eq!(
        decide(&grant, &req, later).to_string(),
        "deny: `s3:GetObject` on `arn:aws:s3:::b/k` is not in the grant's scope"
    );
    let req = request(&[("ec2:DescribeInstances", &["*"])]);
    assert_eq!(
        decide(&grant, &req, later).to_string(),
        "allow: allowed by statement `Late`"
    );
}

#[test]
fn a_request_flagged_named_explicitly_needs_the_literal_action() {
    // The caller (the proxy's classifier) knows this call mints a token although its
    // action is not on custody-grant's list: a wildcard must not cover it.
    let mut req = request(&[("ssm:StartSession", &["*"])]);
    req.actions[0].named_explicitly = true;
    let wildcard =
        grant_json(r#"{"Statement":[{"Effect":"Allow","Action":"ssm:*","Resource":"*"}]}"#);
    assert_eq!(
        decide(&wildcard, &req, NOW).to_string(),
        "deny: `ssm:StartSession` on `*` mints credentials and must be named explicitly in the scope, not through a wildcard"
    );
    let named = grant_json(
        r#"{"Statement":[{"Effect":"Allow","Action":"ssm:StartSession","Resource":"*"}]}"#,
    );
    assert!(decide(&named, &req, NOW).allowed);
    // Unflagged, the wildcard covers it as IAM would.
    req.actions[0].named_explicitly = false;
    assert!(decide(&wildcard, &req, NOW).allowed);
}
