//! The scope language: strict parsing (errors name the field), the CLI form, round trips and
//! the session policy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use custody_grant::{Effect, PolicyTooLarge, SESSION_POLICY_LIMIT, Scope, ScopeError};

#[test]
fn refusals_name_the_field() {
    let rows: &[(&str, &str)] = &[
        (
            "not json",
            "policy is not valid json: expected ident at line 1 column 2",
        ),
        (
            r#"{"Statement":[],"Extra":1}"#,
            "unknown field `Extra` in `policy`",
        ),
        (
            r#"{"Version":"2020-01-01","Statement":[]}"#,
            "`Version`: unsupported policy version `2020-01-01`, use `2012-10-17`",
        ),
        (r#"{"Version":"2012-10-17"}"#, "`Statement` is missing"),
        (
            r#"{"Statement":"x"}"#,
            "`Statement` must be an object or an array of objects",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Principal":"*"}]}"#,
            "unknown field `Principal` in `Statement[0]`",
        ),
        (
            r#"{"Statement":[{"Action":"s3:GetObject","Resource":"*"}]}"#,
            "`Statement[0].Effect` is missing",
        ),
        (
            r#"{"Statement":[{"Effect":"allow","Action":"s3:GetObject","Resource":"*"}]}"#,
            "`Statement[0].Effect`: effect `allow` must be `Allow` or `Deny`",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
            "`Statement[0].Action` is missing",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","NotAction":"s3:PutObject","Resource":"*"}]}"#,
            "`Statement[0]`: has both `Action` and `NotAction`",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject"}]}"#,
            "`Statement[0].Resource` is missing",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":[],"Resource":"*"}]}"#,
            "`Statement[0].Action`: is an empty list",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":["s3:GetObject",3],"Resource":"*"}]}"#,
            "`Statement[0].Action[1]` must be a string",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"GetObject","Resource":"*"}]}"#,
            "`Statement[0].Action`: malformed action `GetObject`: expected `*` or `service:Action` (wildcards `*` `?` allowed in the action name, not in the service prefix)",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":["*","arn:aws:s3"]}]}"#,
            "`Statement[0].Resource[1]`: malformed arn `arn:aws:s3`: an arn has six colon-separated parts: arn:partition:service:region:account:resource",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","NotResource":"bucket/*"}]}"#,
            "`Statement[0].NotResource`: malformed arn `bucket/*`: an arn starts with `arn:`",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::${aws:username}/*"}]}"#,
            "`Statement[0].Resource`: policy variables are not supported: `arn:aws:s3:::${aws:username}/*`",
        ),
        (
            r#"{"Statement":[{"Sid":"has space","Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#,
            "`Statement[0].Sid`: sid `has space` must be ascii letters and digits",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}]}"#,
            "`Statement[0].Condition.Bool`: unsupported condition operator `Bool`",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/team":"x"}}}]}"#,
            "`Statement[0].Condition.StringEquals.aws:PrincipalTag/team`: unsupported condition key `aws:PrincipalTag/team`",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"IpAddress":{"aws:RequestedRegion":"eu-west-1"}}}]}"#,
            "`Statement[0].Condition.IpAddress.aws:RequestedRegion`: operator `IpAddress` cannot test key `aws:RequestedRegion`",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.300/8"}}}]}"#,
            "`Statement[0].Condition.IpAddress.aws:SourceIp`: `10.0.0.300/8` is not an ip address or cidr block",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"tomorrow"}}}]}"#,
            "`Statement[0].Condition.DateLessThan.aws:CurrentTime`: `tomorrow` is not an rfc 3339 date or epoch seconds",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"StringLike":{"s3:prefix":[]}}}]}"#,
            "`Statement[0].Condition.StringLike.s3:prefix`: no values",
        ),
    ];
    for (json, want) in rows {
        let err = Scope::from_iam_json(json).unwrap_err();
        assert_eq!(err.to_string(), *want, "{json}");
    }
}

#[test]
fn duplicate_keys_are_refused() {
    let json = r#"{"Statement":[{"Effect":"Deny","Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    let err = Scope::from_iam_json(json).unwrap_err();
    assert!(matches!(err, ScopeError::Json(_)), "{err}");
    assert!(err.to_string().contains("duplicate key `Effect`"), "{err}");
}

#[test]
fn accepts_the_pasted_shapes() {
    let single = Scope::from_iam_json(
        r#"{"Version":"2012-10-17","Id":"p1","Statement":{"Sid":"A1","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
    )
    .unwrap();
    assert_eq!(single.statements().len(), 1);
    assert_eq!(single.statements()[0].sid(), Some("A1"));
    assert_eq!(single.statements()[0].effect(), Effect::Allow);
    let conds = Scope::from_iam_json(
        r#"{"Statement":[{"Effect":"Allow","Action":["s3:ListBucket"],"Resource":["arn:aws:s3:::b"],
            "Condition":{"StringLike":{"s3:prefix":["a/*","b/*"]},"IpAddress":{"aws:SourceIp":"10.0.0.0/8"},
                         "DateGreaterThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"},"StringEquals":{"aws:RequestedRegion":"eu-west-1"}}}]}"#,
    )
    .unwrap();
    let c = conds.statements()[0].conditions();
    assert_eq!(c.len(), 4);
    assert!(c.iter().any(|c| c.operator_name() == "StringLike"
        && c.key() == "s3:prefix"
        && c.values().len() == 2));
}

#[test]
fn json_round_trip() {
    let json = r#"{"Statement":[{"Action":"s3:Get*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"},"StringLike":{"s3:prefix":["a/*","b/*"]}},"Effect":"Allow","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"],"Sid":"Read"},{"Effect":"Deny","NotAction":"s3:GetObject","NotResource":"arn:aws:s3:::b/*"}],"Version":"2012-10-17"}"#;
    let scope = Scope::from_iam_json(json).unwrap();
    let out = serde_json::to_string(&scope).unwrap();
    assert_eq!(out, json);
    let back: Scope = serde_json::from_str(&out).unwrap();
    assert_eq!(back, scope);
    // Deserialising through serde is as strict as from_iam_json.
    let bad = r#"{"Statement":[{"Effect":"Allow","Action":"s3:Get*","Resource":"*","Nope":1}]}"#;
    let err = serde_json::from_str::<Scope>(bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown field `Nope` in `Statement[0]`"),
        "{err}"
    );
}

#[test]
fn cli_form() {
    let scope = Scope::from_cli([
        "--allow",
        "s3:GetObject,s3:ListBucket",
        "--resource",
        "arn:aws:s3:::b",
        "--resource=arn:aws:s3:::b/*",
        "--sid",
        "Read",
        "--deny",
        "s3:GetObject",
        "--resource",
        "arn:aws:s3:::b/secret/*",
    ])
    .unwrap();
    assert_eq!(
        serde_json::to_string(&scope).unwrap(),
        r#"{"Statement":[{"Action":["s3:GetObject","s3:ListBucket"],"Effect":"Allow","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"],"Sid":"Read"},{"Action":"s3:GetObject","Effect":"Deny","Resource":"arn:aws:s3:::b/secret/*"}],"Version":"2012-10-17"}"#
    );
    let rows: &[(&[&str], &str)] = &[
        (
            &[],
            "scope arguments: no statements: use `--allow ACTION --resource ARN`",
        ),
        (
            &["--allow", "s3:GetObject"],
            "scope arguments: `--allow s3:GetObject` needs at least one `--resource` (use `--resource '*'` for actions without one)",
        ),
        (
            &["--resource", "*"],
            "scope arguments: `--resource *` must follow `--allow` or `--deny`",
        ),
        (&["--allow"], "scope arguments: `--allow` needs a value"),
        (
            &["--grant", "x"],
            "scope arguments: unknown argument `--grant`",
        ),
        (
            &["--deny", "s3:GetObject", "--resource", "arn:aws:s3"],
            "scope arguments: `--deny s3:GetObject` (statement 0): `Resource[0]`: malformed arn `arn:aws:s3`: an arn has six colon-separated parts: arn:partition:service:region:account:resource",
        ),
        (
            &["--allow", "s3:GetObject", "--resource", "*", "--sid", "a-b"],
            "scope arguments: `--allow s3:GetObject`: sid `a-b` must be ascii letters and digits",
        ),
    ];
    for (args, want) in rows {
        assert_eq!(
            Scope::from_cli(*args).unwrap_err().to_string(),
            *want,
            "{args:?}"
        );
    }
}

#[test]
fn session_policy_is_minified_and_drops_source_ip() {
    let scope = Scope::from_iam_json(
        r#"{"Statement":[
            {"Sid":"Read","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*",
             "Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"},"StringEquals":{"aws:RequestedRegion":"eu-west-1"}}},
            {"Sid":"Office","Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}},
            {"Sid":"Keep","Effect":"Deny","Action":"s3:DeleteObject","Resource":"*"}]}"#,
    )
    .unwrap();
    assert_eq!(
        scope.session_policy().unwrap(),
        r#"{"Statement":[{"Action":"s3:GetObject","Condition":{"StringEquals":{"aws:RequestedRegion":"eu-west-1"}},"Effect":"Allow","Resource":"arn:aws:s3:::b/*","Sid":"Read"},{"Action":"s3:DeleteObject","Effect":"Deny","Resource":"*","Sid":"Keep"}],"Version":"2012-10-17"}"#
    );
}

#[test]
fn session_policy_too_large_says_so() {
    let resources: Vec<String> = (0..60)
        .map(|i| format!("arn:aws:s3:::bucket-number-{i}/*"))
        .collect();
    let scope = Scope::from_cli([
        "--allow".to_owned(),
        "s3:GetObject".to_owned(),
        "--resource".to_owned(),
        resources.join(","),
    ])
    .unwrap();
    let err = scope.session_policy().unwrap_err();
    let size = serde_json::to_string(&scope).unwrap().len();
    assert_eq!(
        err,
        PolicyTooLarge {
            size,
            limit: SESSION_POLICY_LIMIT
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "session policy is {size} characters, over the 2048-character limit of sts assumerole"
        )
    );
}

#[test]
fn grant_session_policy_fences_regions() {
    let scope =
        Scope::from_cli(["--allow", "s3:GetObject", "--resource", "arn:aws:s3:::b/*"]).unwrap();
    assert_eq!(
        scope
            .session_policy_in(&["eu-west-1".to_owned(), "eu-central-1".to_owned()])
            .unwrap(),
        r#"{"Statement":[{"Action":"s3:GetObject","Effect":"Allow","Resource":"arn:aws:s3:::b/*"},{"Action":"*","Condition":{"StringNotEquals":{"aws:RequestedRegion":["eu-west-1","eu-central-1"]}},"Effect":"Deny","Resource":"*","Sid":"CustodyRegions"}],"Version":"2012-10-17"}"#
    );
    assert_eq!(
        scope.session_policy_in(&[]).unwrap(),
        scope.session_policy().unwrap()
    );
    // The fence is itself a valid scope statement.
    let fenced =
        Scope::from_iam_json(&scope.session_policy_in(&["eu-west-1".to_owned()]).unwrap()).unwrap();
    assert_eq!(fenced.statements().len(), 2);
}

#[test]
fn action_covers_names_the_pattern_that_lets_an_action_through() {
    let scope = custody_grant::Scope::from_iam_json(
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":["s3:Get*","sts:GetCallerIdentity"],"Resource":"*"},
            {"Effect":"Allow","NotAction":"iam:*","Resource":"*"}]}"#,
    )
    .unwrap();
    let [first, second] = scope.statements() else {
        panic!("two statements")
    };
    assert_eq!(first.action_covers("S3:GetObject"), Some("s3:Get*"));
    assert_eq!(first.action_covers("sts:getsessiontoken"), None);
    assert_eq!(
        second.action_covers("sts:GetSessionToken"),
        Some("NotAction")
    );
    assert_eq!(second.action_covers("iam:CreateAccessKey"), None);
}
