//! Table tests for the classification hard cases (design.md hard cases 1, 4, 5, 10–14).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

/// Named `classify` so `cargo test -p custody-sigv4 classify` selects these tests.
mod classify {
    use custody_sigv4::classify::{
        ActionOnResources, Classification, ClassifyError, ClassifyInput, ErrorFormat, Protocol,
        classify, error_format, needs_body,
    };
    use http::{HeaderMap, HeaderName, HeaderValue, Method};

    const ACCOUNT: &str = "111122223333";

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// Classifies `method path?query` for `signing` in us-east-1.
    fn run(
        signing: &str,
        method: &str,
        target: &str,
        hdrs: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Classification, ClassifyError> {
        run_in(signing, "us-east-1", method, target, hdrs, body)
    }

    fn run_in(
        signing: &str,
        region: &str,
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
        let h = headers(hdrs);
        classify(&ClassifyInput {
            method: &method,
            path,
            query,
            headers: &h,
            body,
            signing_name: signing,
            region,
            account_id: ACCOUNT,
        })
    }

    fn s3(
        method: &str,
        target: &str,
        hdrs: &[(&str, &str)],
    ) -> Result<Classification, ClassifyError> {
        run("s3", method, target, hdrs, None)
    }

    fn json(signing: &str, target: &str, body: &str) -> Result<Classification, ClassifyError> {
        run(
            signing,
            "POST",
            "/",
            &[
                ("x-amz-target", target),
                ("content-type", "application/x-amz-json-1.0"),
            ],
            Some(body.as_bytes()),
        )
    }

    fn form(signing: &str, body: &str) -> Result<Classification, ClassifyError> {
        run(
            signing,
            "POST",
            "/",
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            Some(body.as_bytes()),
        )
    }

    fn aor(action: &str, resources: &[&str]) -> ActionOnResources {
        ActionOnResources {
            action: action.into(),
            resources: resources.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn actions(c: &Classification) -> Vec<(&str, Vec<&str>)> {
        c.actions
            .iter()
            .map(|a| {
                (
                    a.action.as_str(),
                    a.resources.iter().map(String::as_str).collect(),
                )
            })
            .collect()
    }

    const OBJ: &str = "arn:aws:s3:::bucket/dir/key.txt";
    const BUCKET: &str = "arn:aws:s3:::bucket";

    // --- S3 -------------------------------------------------------------------------------

    #[test]
    fn s3_object_reads_and_versions() {
        let c = s3("GET", "/bucket/dir/key.txt", &[]).unwrap();
        assert_eq!(
            (c.service.as_str(), c.operation.as_str()),
            ("s3", "GetObject")
        );
        assert_eq!(c.protocol, Protocol::RestXml);
        assert_eq!(c.actions, vec![aor("s3:GetObject", &[OBJ])]);
        assert!(!c.mints_credentials);

        let c = s3(
            "GET",
            "/bucket/dir/key.txt?versionId=v1&x-id=GetObject",
            &[],
        )
        .unwrap();
        assert_eq!(c.actions, vec![aor("s3:GetObjectVersion", &[OBJ])]);
        assert_eq!(
            c.context.get("s3:VersionId").map(String::as_str),
            Some("v1")
        );

        let c = s3("HEAD", "/bucket/dir/key.txt", &[]).unwrap();
        assert_eq!(
            (c.operation.as_str(), actions(&c)),
            ("HeadObject", vec![("s3:GetObject", vec![OBJ])])
        );
        let c = s3("HEAD", "/bucket/dir/key.txt?versionId=v", &[]).unwrap();
        assert_eq!(c.actions, vec![aor("s3:GetObjectVersion", &[OBJ])]);
        let c = s3("HEAD", "/bucket", &[]).unwrap();
        assert_eq!(
            (c.operation.as_str(), actions(&c)),
            ("HeadBucket", vec![("s3:ListBucket", vec![BUCKET])])
        );

        let c = s3("DELETE", "/bucket/dir/key.txt?versionId=v", &[]).unwrap();
        assert_eq!(c.actions, vec![aor("s3:DeleteObjectVersion", &[OBJ])]);
        let c = s3("GET", "/bucket/dir/key.txt?tagging&versionId=v", &[]).unwrap();
        assert_eq!(c.actions, vec![aor("s3:GetObjectVersionTagging", &[OBJ])]);
    }

    #[test]
    fn s3_lists() {
        let c = s3(
            "GET",
            "/bucket?list-type=2&prefix=dir%2F&delimiter=%2F",
            &[],
        )
        .unwrap();
        assert_eq!(c.operation, "ListObjectsV2");
        assert_eq!(c.actions, vec![aor("s3:ListBucket", &[BUCKET])]);
        assert_eq!(c.context.get("s3:prefix").map(String::as_str), Some("dir/"));
        assert_eq!(c.context.get("s3:delimiter").map(String::as_str), Some("/"));
        let c = s3("GET", "/bucket/", &[]).unwrap();
        assert_eq!(
            (c.operation.as_str(), actions(&c)),
            ("ListObjects", vec![("s3:ListBucket", vec![BUCKET])])
        );
        assert!(c.context.is_empty());
        let c = s3("GET", "/", &[]).unwrap();
        assert_eq!(
            (c.operation.as_str(), actions(&c)),
            ("ListBuckets", vec![("s3:ListAllMyBuckets", vec!["*"])])
        );
        let c = s3("GET", "/bucket?versions", &[]).unwrap();
        assert_eq!(c.actions, vec![aor("s3:ListBucketVersions", &[BUCKET])]);
        let c = s3("GET", "/bucket?uploads", &[]).unwrap();
        assert_eq!(
            c.actions,
            vec![aor("s3:ListBucketMultipartUploads", &[BUCKET])]
        );
    }

    #[test]
    fn s3_bucket_subresources_use_iam_names() {
        for (q, action) in [
            ("policy", "s3:GetBucketPolicy"),
            ("location", "s3:GetBucketLocation"),
            ("acl", "s3:GetBucketAcl"),
            ("cors", "s3:GetBucketCORS"),
            ("lifecycle", "s3:GetLifecycleConfiguration"),
            ("encryption", "s3:GetEncryptionConfiguration"),
            ("replication", "s3:GetReplicationConfiguration"),
            ("publicAccessBlock", "s3:GetBucketPublicAccessBlock"),
            ("object-lock", "s3:GetBucketObjectLockConfiguration"),
        ] {
            let c = s3("GET", &format!("/bucket?{q}"), &[]).unwrap();
            assert_eq!(c.actions, vec![aor(action, &[BUCKET])], "?{q}");
        }
        let c = s3("PUT", "/bucket?policy", &[]).unwrap();
        assert_eq!(c.actions, vec![aor("s3:PutBucketPolicy", &[BUCKET])]);
        let c = s3("DELETE", "/bucket?cors", &[]).unwrap();
        assert_eq!(c.actions, vec![aor("s3:PutBucketCORS", &[BUCKET])]);
    }

    #[test]
    fn s3_copy_needs_read_on_source() {
        let c = s3(
            "PUT",
            "/bucket/dir/key.txt",
            &[("x-amz-copy-source", "/src/a%20b%2Bc.txt?versionId=3")],
        )
        .unwrap();
        assert_eq!(c.operation, "CopyObject");
        assert_eq!(
            c.actions,
            vec![
                aor("s3:PutObject", &[OBJ]),
                aor("s3:GetObjectVersion", &["arn:aws:s3:::src/a b+c.txt"])
            ]
        );
        let c = s3(
            "PUT",
            "/bucket/dir/key.txt?partNumber=2&uploadId=u",
            &[("x-amz-copy-source", "src/k")],
        )
        .unwrap();
        assert_eq!(c.operation, "UploadPartCopy");
        assert_eq!(
            c.actions,
            vec![
                aor("s3:PutObject", &[OBJ]),
                aor("s3:GetObject", &["arn:aws:s3:::src/k"])
            ]
        );
        // Copy with new tags and an ACL needs those actions too.
        let c = s3(
            "PUT",
            "/bucket/dir/key.txt",
            &[
                ("x-amz-copy-source", "src/k"),
                ("x-amz-tagging", "a=b"),
                ("x-amz-acl", "private"),
            ],
        )
        .unwrap();
        let names: Vec<_> = c.actions.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(
            names,
            [
                "s3:PutObject",
                "s3:GetObject",
                "s3:PutObjectAcl",
                "s3:PutObjectTagging"
            ]
        );
        // x-id says PutObject but the copy header makes it a copy: two parsers would disagree.
        assert!(
            s3(
                "PUT",
                "/bucket/k?x-id=PutObject",
                &[("x-amz-copy-source", "src/k")]
            )
            .is_err()
        );
        assert!(s3("PUT", "/bucket/k", &[("x-amz-copy-source", "nokey")]).is_err());
        assert!(matches!(
            s3(
                "PUT",
                "/bucket/k",
                &[("x-amz-copy-source", "a/b"), ("x-amz-copy-source", "c/d")]
            ),
            Err(ClassifyError::DuplicateParameter { .. })
        ));
    }

    #[test]
    fn s3_multipart() {
        for (method, target, op, action) in [
            (
                "POST",
                "/bucket/dir/key.txt?uploads",
                "CreateMultipartUpload",
                "s3:PutObject",
            ),
            (
                "PUT",
                "/bucket/dir/key.txt?partNumber=1&uploadId=u",
                "UploadPart",
                "s3:PutObject",
            ),
            (
                "POST",
                "/bucket/dir/key.txt?uploadId=u",
                "CompleteMultipartUpload",
                "s3:PutObject",
            ),
            (
                "DELETE",
                "/bucket/dir/key.txt?uploadId=u",
                "AbortMultipartUpload",
                "s3:AbortMultipartUpload",
            ),
            (
                "GET",
                "/bucket/dir/key.txt?uploadId=u",
                "ListParts",
                "s3:ListMultipartUploadParts",
            ),
        ] {
            let c = s3(method, target, &[]).unwrap();
            assert_eq!(c.operation, op, "{method} {target}");
            assert_eq!(c.actions, vec![aor(action, &[OBJ])], "{method} {target}");
        }
    }

    #[test]
    fn s3_put_object_headers_add_actions() {
        let c = s3("PUT", "/bucket/dir/key.txt", &[]).unwrap();
        assert_eq!(c.actions, vec![aor("s3:PutObject", &[OBJ])]);
        let c = s3(
            "PUT",
            "/bucket/dir/key.txt",
            &[("x-amz-acl", "public-read"), ("x-amz-tagging", "k=v")],
        )
        .unwrap();
        assert_eq!(
            c.actions,
            vec![
                aor("s3:PutObject", &[OBJ]),
                aor("s3:PutObjectAcl", &[OBJ]),
                aor("s3:PutObjectTagging", &[OBJ])
            ]
        );
        assert_eq!(
            c.context.get("s3:x-amz-acl").map(String::as_str),
            Some("public-read")
        );
        let c = s3(
            "PUT",
            "/bucket/dir/key.txt",
            &[("x-amz-grant-read", "id=abc")],
        )
        .unwrap();
        assert_eq!(c.actions[1], aor("s3:PutObjectAcl", &[OBJ]));
        // Presigned URLs carry x-amz-* values in the query.
        let c = s3("PUT", "/bucket/dir/key.txt?x-amz-acl=public-read", &[]).unwrap();
        assert_eq!(c.actions[1], aor("s3:PutObjectAcl", &[OBJ]));
        let c = s3(
            "POST",
            "/bucket/dir/key.txt?uploads",
            &[("x-amz-tagging", "k=v")],
        )
        .unwrap();
        assert_eq!(c.actions[1], aor("s3:PutObjectTagging", &[OBJ]));
    }

    #[test]
    fn s3_delete_objects_reads_every_key_from_the_body() {
        let body = br#"<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a.txt</Key></Object><Object><Key>dir/b &amp; c</Key><VersionId>v</VersionId></Object><Quiet>true</Quiet></Delete>"#;
        let c = run("s3", "POST", "/bucket?delete", &[], Some(body)).unwrap();
        assert_eq!(c.operation, "DeleteObjects");
        assert_eq!(
            c.actions,
            vec![
                aor("s3:DeleteObject", &["arn:aws:s3:::bucket/a.txt"]),
                aor("s3:DeleteObjectVersion", &["arn:aws:s3:::bucket/dir/b & c"])
            ]
        );
        assert!(matches!(
            run("s3", "POST", "/bucket?delete", &[], None),
            Err(ClassifyError::BodyRequired { .. })
        ));
        assert!(run("s3", "POST", "/bucket?delete", &[], Some(b"<Delete/>")).is_err());
        assert!(run("s3", "POST", "/bucket?delete", &[], Some(b"{}")).is_err());
    }

    #[test]
    fn s3_needs_body_only_where_classification_reads_it() {
        let h = HeaderMap::new();
        assert!(needs_body(
            "s3",
            &Method::POST,
            &h,
            "/bucket",
            Some("delete")
        ));
        assert!(!needs_body("s3", &Method::PUT, &h, "/bucket/key", None));
        assert!(!needs_body(
            "s3",
            &Method::PUT,
            &h,
            "/bucket/key",
            Some("partNumber=1&uploadId=u")
        ));
        assert!(!needs_body(
            "lambda",
            &Method::POST,
            &h,
            "/2015-03-31/functions/f/invocations",
            None
        ));
        assert!(needs_body(
            "lambda",
            &Method::POST,
            &h,
            "/2015-03-31/functions",
            None
        ));
        assert!(needs_body("dynamodb", &Method::POST, &h, "/", None));
        assert!(needs_body("sts", &Method::POST, &h, "/", None));
        assert!(!needs_body("nope", &Method::POST, &h, "/", None));
    }

    #[test]
    fn s3_keys_are_not_normalised() {
        let c = s3("GET", "/bucket/a%2Fb/../c%20d+e@%3D//f", &[]).unwrap();
        assert_eq!(
            c.actions[0].resources,
            ["arn:aws:s3:::bucket/a/b/../c d+e@=//f"]
        );
        let c = s3("GET", "/bucket/%E2%9C%93.txt", &[]).unwrap();
        assert_eq!(c.actions[0].resources, ["arn:aws:s3:::bucket/✓.txt"]);
        assert!(matches!(
            s3("GET", "/bucket/%FF", &[]),
            Err(ClassifyError::Malformed { .. })
        ));
        // Malformed also when no operation survives the query keys, and before the
        // query keys are judged.
        for bad in [
            "/bucket/%FF?x-id=NoSuchOperation",
            "/bucket/%FF?newSubresource",
        ] {
            assert!(
                matches!(s3("GET", bad, &[]), Err(ClassifyError::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn s3_refuses_what_it_cannot_be_sure_of() {
        // A query key no operation knows could be a subresource S3 acts on.
        assert!(matches!(
            s3("GET", "/bucket/key?newSubresource", &[]),
            Err(ClassifyError::UnknownParameter { .. })
        ));
        // Two subresources: which one S3 picks is not ours to guess.
        assert!(matches!(
            s3("GET", "/bucket?acl&policy", &[]),
            Err(ClassifyError::Ambiguous { .. })
        ));
        assert!(matches!(
            s3("GET", "/bucket/key?versionId=1&versionId=2", &[]),
            Err(ClassifyError::DuplicateParameter { .. })
        ));
        assert!(s3("GET", "/bucket/key?x-id=PutObject", &[]).is_err());
        // s3control shares the signing name and is not classified.
        assert!(
            s3(
                "GET",
                "/v20180820/configuration/publicAccessBlock",
                &[("x-amz-account-id", ACCOUNT)]
            )
            .is_err()
        );
        assert!(s3("PATCH", "/bucket/key", &[]).is_err());
        assert!(s3("GET", "nope", &[]).is_err());
    }

    #[test]
    fn s3_create_session_mints_and_partitions() {
        let c = s3("GET", "/bucket?session", &[]).unwrap();
        assert!(c.mints_credentials);
        assert_eq!(c.actions[0].action, "s3express:CreateSession");
        let c = run_in("s3", "cn-north-1", "GET", "/bucket/k", &[], None).unwrap();
        assert_eq!(c.actions[0].resources, ["arn:aws-cn:s3:::bucket/k"]);
    }

    // --- DynamoDB ---------------------------------------------------------------------------

    const T: &str = "arn:aws:dynamodb:us-east-1:111122223333:table/";

    #[test]
    fn dynamodb_single_table_and_index() {
        let c = json(
            "dynamodb",
            "DynamoDB_20120810.GetItem",
            r#"{"TableName":"users","Key":{}}"#,
        )
        .unwrap();
        assert_eq!(c.protocol, Protocol::Json);
        assert_eq!(
            c.actions,
            vec![aor("dynamodb:GetItem", &[&format!("{T}users")])]
        );
        let c = json(
            "dynamodb",
            "DynamoDB_20120810.Query",
            r#"{"TableName":"users","IndexName":"byEmail"}"#,
        )
        .unwrap();
        assert_eq!(c.actions[0].resources, [format!("{T}users/index/byEmail")]);
        let arn = "arn:aws:dynamodb:eu-west-1:444455556666:table/other";
        let c = json(
            "dynamodb",
            "DynamoDB_20120810.PutItem",
            &format!(r#"{{"TableName":"{arn}"}}"#),
        )
        .unwrap();
        assert_eq!(c.actions[0].resources, [arn]);
        let c = json("dynamodb", "DynamoDB_20120810.ListTables", "{}").unwrap();
        assert_eq!(c.actions, vec![aor("dynamodb:ListTables", &["*"])]);
    }

    #[test]
    fn dynamodb_batch_and_transact_name_every_table() {
        let c = json(
            "dynamodb",
            "DynamoDB_20120810.BatchGetItem",
            r#"{"RequestItems":{"a":{"Keys":[]},"b":{"Keys":[]}}}"#,
        )
        .unwrap();
        assert_eq!(
            c.actions,
            vec![aor(
                "dynamodb:BatchGetItem",
                &[&format!("{T}a"), &format!("{T}b")]
            )]
        );
        let c = json(
        "dynamodb",
        "DynamoDB_20120810.TransactWriteItems",
        r#"{"TransactItems":[{"Put":{"TableName":"a"}},{"Update":{"TableName":"b"}},{"Delete":{"TableName":"a"}},{"ConditionCheck":{"TableName":"c"}},{"Put":{"TableName":"c"}}]}"#,
    )
    .unwrap();
        assert_eq!(
            c.actions,
            vec![
                aor("dynamodb:PutItem", &[&format!("{T}a"), &format!("{T}c")]),
                aor("dynamodb:UpdateItem", &[&format!("{T}b")]),
                aor("dynamodb:DeleteItem", &[&format!("{T}a")]),
                aor("dynamodb:ConditionCheckItem", &[&format!("{T}c")]),
            ]
        );
        let c = json(
            "dynamodb",
            "DynamoDB_20120810.TransactGetItems",
            r#"{"TransactItems":[{"Get":{"TableName":"a"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.actions,
            vec![aor("dynamodb:GetItem", &[&format!("{T}a")])]
        );
        // An item naming two operations, or none, is refused.
        assert!(
            json(
                "dynamodb",
                "DynamoDB_20120810.TransactWriteItems",
                r#"{"TransactItems":[{"Put":{"TableName":"a"},"Delete":{"TableName":"b"}}]}"#
            )
            .is_err()
        );
        assert!(
            json(
                "dynamodb",
                "DynamoDB_20120810.BatchWriteItem",
                r#"{"RequestItems":{}}"#
            )
            .is_err()
        );
        let c = json(
            "dynamodb",
            "DynamoDB_20120810.ExecuteStatement",
            r#"{"Statement":"update \"t\" set a=1"}"#,
        )
        .unwrap();
        assert_eq!(c.actions, vec![aor("dynamodb:PartiQLUpdate", &["*"])]);
    }

    #[test]
    fn json_parser_differentials_and_errors() {
        assert_eq!(
            json(
                "dynamodb",
                "DynamoDB_20120810.GetItem",
                r#"{"TableName":"a","TableName":"b"}"#
            ),
            Err(ClassifyError::DuplicateJsonKey {
                key: "TableName".into()
            })
        );
        assert!(matches!(
            json(
                "dynamodb",
                "DynamoDB_20120810.BatchGetItem",
                r#"{"RequestItems":{"a":{},"a":{}}}"#
            ),
            Err(ClassifyError::DuplicateJsonKey { .. })
        ));
        assert!(matches!(
            json("dynamodb", "DynamoDB_20120810.GetItem", r#"{"TableName":"#),
            Err(ClassifyError::Malformed { .. })
        ));
        assert!(matches!(
            json("dynamodb", "DynamoDB_20120810.GetItem", r#"["TableName"]"#),
            Err(ClassifyError::Malformed { .. })
        ));
        assert!(matches!(
            json(
                "dynamodb",
                "DynamoDB_20120810.GetItem",
                r#"{"TableName":["a","b"]}"#
            ),
            Err(ClassifyError::Malformed { .. })
        ));
        let e = json("dynamodb", "DynamoDB_20120810.DropEverything", "{}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot classify: unknown operation `DropEverything` for service `dynamodb`"
        );
        assert!(matches!(
            json("dynamodb", "AmazonSQS.GetItem", "{}"),
            Err(ClassifyError::Unrecognised { .. })
        ));
        assert!(matches!(
            run("dynamodb", "POST", "/", &[], Some(b"{}")),
            Err(ClassifyError::Unrecognised { .. })
        ));
        assert!(matches!(
            run(
                "dynamodb",
                "POST",
                "/",
                &[("x-amz-target", "DynamoDB_20120810.GetItem")],
                None
            ),
            Err(ClassifyError::BodyRequired { .. })
        ));
        assert!(matches!(
            run("nope", "GET", "/", &[], None),
            Err(ClassifyError::UnknownService { .. })
        ));
    }

    // --- SQS: JSON and legacy query shapes --------------------------------------------------

    const QURL: &str = "https://sqs.us-east-1.amazonaws.com/444455556666/jobs";
    const QARN: &str = "arn:aws:sqs:us-east-1:444455556666:jobs";

    #[test]
    fn sqs_json_and_query_shapes_agree() {
        let j = json(
            "sqs",
            "AmazonSQS.SendMessage",
            &format!(r#"{{"QueueUrl":"{QURL}","MessageBody":"x"}}"#),
        )
        .unwrap();
        assert_eq!(
            (j.protocol, actions(&j)),
            (Protocol::Json, vec![("sqs:SendMessage", vec![QARN])])
        );
        let enc: String = form_urlencoded::byte_serialize(QURL.as_bytes()).collect();
        let q = form(
            "sqs",
            &format!("Action=SendMessage&Version=2012-11-05&QueueUrl={enc}&MessageBody=x"),
        )
        .unwrap();
        assert_eq!(q.protocol, Protocol::Query);
        assert_eq!(
            (q.operation.as_str(), &q.actions),
            (j.operation.as_str(), &j.actions)
        );
        // Legacy clients post to the queue's path and leave QueueUrl out.
        let p = run(
            "sqs",
            "POST",
            "/444455556666/jobs",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(b"Action=SendMessage&MessageBody=x"),
        )
        .unwrap();
        assert_eq!(p.actions, j.actions);
        // Path and QueueUrl naming different queues is refused.
        assert!(
            run(
                "sqs",
                "POST",
                "/444455556666/other",
                &[],
                Some(format!("Action=SendMessage&QueueUrl={enc}").as_bytes())
            )
            .is_err()
        );
        let c = json(
            "sqs",
            "AmazonSQS.SendMessageBatch",
            &format!(r#"{{"QueueUrl":"{QURL}","Entries":[]}}"#),
        )
        .unwrap();
        assert_eq!(c.actions, vec![aor("sqs:SendMessage", &[QARN])]);
        let c = json("sqs", "AmazonSQS.CreateQueue", r#"{"QueueName":"new"}"#).unwrap();
        assert_eq!(
            c.actions,
            vec![aor(
                "sqs:CreateQueue",
                &["arn:aws:sqs:us-east-1:111122223333:new"]
            )]
        );
        let c = json("sqs", "AmazonSQS.ListQueues", "{}").unwrap();
        assert_eq!(c.actions, vec![aor("sqs:ListQueues", &["*"])]);
        assert!(
            json(
                "sqs",
                "AmazonSQS.SendMessage",
                r#"{"QueueUrl":"https://h/a/b/c"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn duplicate_action_is_refused() {
        // In the query string and the body.
        assert_eq!(
            run(
                "sqs",
                "POST",
                "/?Action=ListQueues",
                &[("content-type", "application/x-www-form-urlencoded")],
                Some(b"Action=DeleteQueue&QueueUrl=https%3A%2F%2Fh%2F1%2Fq")
            ),
            Err(ClassifyError::DuplicateParameter {
                name: "Action".into()
            })
        );
        // Twice in the body, and twice in the query.
        assert!(matches!(
            form("sts", "Action=GetCallerIdentity&Action=AssumeRole"),
            Err(ClassifyError::DuplicateParameter { .. })
        ));
        assert!(matches!(
            run(
                "sts",
                "GET",
                "/?Action=GetCallerIdentity&Action=GetSessionToken",
                &[],
                None
            ),
            Err(ClassifyError::DuplicateParameter { .. })
        ));
        // Any repeated parameter (RoleArn twice) could be read differently upstream.
        assert!(matches!(
            form(
                "sts",
                "Action=AssumeRole&RoleArn=arn:aws:iam::1:role/a&RoleArn=arn:aws:iam::1:role/b"
            ),
            Err(ClassifyError::DuplicateParameter { .. })
        ));
        // Both protocol hints at once.
        assert!(
            run(
                "sqs",
                "POST",
                "/?Action=ListQueues",
                &[("x-amz-target", "AmazonSQS.ListQueues")],
                Some(b"{}")
            )
            .is_err()
        );
        // A body that is not a form on a query service.
        assert!(matches!(
            run(
                "sts",
                "POST",
                "/",
                &[("content-type", "application/json")],
                Some(b"Action=GetCallerIdentity")
            ),
            Err(ClassifyError::NotOneReading { .. })
        ));
        assert!(matches!(
            form("sts", "Version=2011-06-15"),
            Err(ClassifyError::Unrecognised { .. })
        ));
        assert!(matches!(
            form("sts", "Action=Nope"),
            Err(ClassifyError::UnknownOperation { .. })
        ));
    }

    #[test]
    fn error_formats() {
        assert_eq!(
            error_format("sqs", &headers(&[("x-amz-target", "AmazonSQS.ListQueues")])),
            ErrorFormat::Json
        );
        assert_eq!(error_format("sqs", &headers(&[])), ErrorFormat::Xml);
        assert_eq!(error_format("dynamodb", &headers(&[])), ErrorFormat::Json);
        assert_eq!(error_format("lambda", &headers(&[])), ErrorFormat::Json);
        assert_eq!(error_format("s3", &headers(&[])), ErrorFormat::Xml);
        assert_eq!(error_format("sts", &headers(&[])), ErrorFormat::Xml);
        assert_eq!(error_format("ec2", &headers(&[])), ErrorFormat::Xml);
        assert_eq!(error_format("unknown", &headers(&[])), ErrorFormat::Xml);
        assert_eq!(
            error_format(
                "unknown",
                &headers(&[("content-type", "application/x-amz-json-1.1")])
            ),
            ErrorFormat::Json
        );
        assert_eq!(Protocol::RestJson.error_format(), ErrorFormat::Json);
    }

    // --- STS and credential minting ---------------------------------------------------------

    #[test]
    fn credential_minting_is_flagged() {
        let c = form(
        "sts",
        "Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A444455556666%3Arole%2Fr&RoleSessionName=s",
    )
    .unwrap();
        assert!(c.mints_credentials);
        assert_eq!(
            c.actions,
            vec![aor("sts:AssumeRole", &["arn:aws:iam::444455556666:role/r"])]
        );
        for action in ["GetSessionToken", "GetFederationToken&Name=bob"] {
            assert!(
                form("sts", &format!("Action={action}"))
                    .unwrap()
                    .mints_credentials,
                "{action}"
            );
        }
        let c = form("sts", "Action=GetFederationToken&Name=bob").unwrap();
        assert_eq!(
            c.actions[0].resources,
            ["arn:aws:sts::111122223333:federated-user/bob"]
        );
        let c = run(
            "sts",
            "GET",
            "/?Action=GetCallerIdentity&Version=2011-06-15",
            &[],
            None,
        )
        .unwrap();
        assert!(!c.mints_credentials);
        assert_eq!(c.actions, vec![aor("sts:GetCallerIdentity", &["*"])]);
        // `aws eks get-token`: a presigned GetCallerIdentity with x-k8s-aws-id is a bearer token.
        let c = run(
            "sts",
            "GET",
            "/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            &[("x-k8s-aws-id", "cluster")],
            None,
        )
        .unwrap();
        assert!(c.mints_credentials);
        let c = json("ssm", "AmazonSSM.StartSession", r#"{"Target":"i-1"}"#).unwrap();
        assert!(c.mints_credentials);
        let c = json("ssm", "AmazonSSM.GetParameter", r#"{"Name":"/app/db:3"}"#).unwrap();
        assert!(!c.mints_credentials);
        assert_eq!(
            c.actions[0].resources,
            ["arn:aws:ssm:us-east-1:111122223333:parameter/app/db"]
        );
    }

    // --- Other services ---------------------------------------------------------------------

    #[test]
    fn lambda_function_names() {
        let c = run(
            "lambda",
            "POST",
            "/2015-03-31/functions/fn%3Aprod/invocations",
            &[],
            None,
        )
        .unwrap();
        assert_eq!(
            (c.protocol, c.operation.as_str()),
            (Protocol::RestJson, "Invoke")
        );
        assert_eq!(
            c.actions,
            vec![aor(
                "lambda:InvokeFunction",
                &["arn:aws:lambda:us-east-1:111122223333:function:fn:prod"]
            )]
        );
        let c = run(
            "lambda",
            "GET",
            "/2015-03-31/functions/fn?Qualifier=3",
            &[],
            None,
        )
        .unwrap();
        assert_eq!(
            c.actions,
            vec![aor(
                "lambda:GetFunction",
                &["arn:aws:lambda:us-east-1:111122223333:function:fn:3"]
            )]
        );
        let c = run(
            "lambda",
            "POST",
            "/2015-03-31/functions",
            &[],
            Some(br#"{"FunctionName":"new","Role":"r"}"#),
        )
        .unwrap();
        assert_eq!(
            c.actions,
            vec![aor(
                "lambda:CreateFunction",
                &["arn:aws:lambda:us-east-1:111122223333:function:new"]
            )]
        );
        assert!(matches!(
            run("lambda", "POST", "/2015-03-31/functions", &[], None),
            Err(ClassifyError::BodyRequired { .. })
        ));
        let c = run("lambda", "GET", "/2015-03-31/functions", &[], None).unwrap();
        assert_eq!(c.actions, vec![aor("lambda:ListFunctions", &["*"])]);
        assert!(run("lambda", "GET", "/2015-03-31/nothing", &[], None).is_err());
    }

    #[test]
    fn kms_secrets_sns_logs_ec2() {
        let k = "arn:aws:kms:us-east-1:111122223333:";
        let c = json(
            "kms",
            "TrentService.Encrypt",
            r#"{"KeyId":"alias/app","Plaintext":"eA=="}"#,
        )
        .unwrap();
        // IAM evaluates the key the alias points to, which the gateway does not know: a
        // key ARN with its 36-character id unknown.
        let any_key = format!("{k}key/{}", "?".repeat(36));
        assert_eq!(c.actions, vec![aor("kms:Encrypt", &[&any_key])]);
        let c = json(
            "kms",
            "TrentService.Encrypt",
            &format!(r#"{{"KeyId":"{k}alias/app","Plaintext":"eA=="}}"#),
        )
        .unwrap();
        assert_eq!(c.actions, vec![aor("kms:Encrypt", &[&any_key])]);
        let c = json(
            "kms",
            "TrentService.Decrypt",
            r#"{"CiphertextBlob":"eA=="}"#,
        )
        .unwrap();
        assert_eq!(c.actions, vec![aor("kms:Decrypt", &["*"])]);
        let c = json(
            "kms",
            "TrentService.ReEncrypt",
            r#"{"CiphertextBlob":"eA==","DestinationKeyId":"k2"}"#,
        )
        .unwrap();
        assert_eq!(
            c.actions,
            vec![
                aor("kms:ReEncryptFrom", &["*"]),
                aor("kms:ReEncryptTo", &[&format!("{k}key/k2")])
            ]
        );
        let arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf";
        let c = json(
            "secretsmanager",
            "secretsmanager.GetSecretValue",
            &format!(r#"{{"SecretId":"{arn}"}}"#),
        )
        .unwrap();
        assert_eq!(
            c.actions,
            vec![aor("secretsmanager:GetSecretValue", &[arn])]
        );
        // By name, or by a partial ARN: the six-character suffix IAM evaluates is unknown.
        let s = "arn:aws:secretsmanager:us-east-1:111122223333:secret:";
        for id in ["db", &format!("{s}db")] {
            let c = json(
                "secretsmanager",
                "secretsmanager.GetSecretValue",
                &format!(r#"{{"SecretId":"{id}"}}"#),
            )
            .unwrap();
            assert_eq!(
                c.actions,
                vec![aor(
                    "secretsmanager:GetSecretValue",
                    &[&format!("{s}db-??????")]
                )]
            );
        }
        let c = json(
            "secretsmanager",
            "secretsmanager.BatchGetSecretValue",
            r#"{"SecretIdList":["a","b"]}"#,
        )
        .unwrap();
        assert_eq!(
            c.actions[1].resources,
            vec![format!("{s}a-??????"), format!("{s}b-??????")]
        );
        let topic = "arn:aws:sns:us-east-1:111122223333:t";
        let c = form("sns", &format!("Action=Publish&TopicArn={topic}&Message=m")).unwrap();
        assert_eq!(c.actions, vec![aor("sns:Publish", &[topic])]);
        let c = json(
            "logs",
            "Logs_20140328.PutLogEvents",
            r#"{"logGroupName":"/app","logStreamName":"s","logEvents":[]}"#,
        )
        .unwrap();
        assert_eq!(
            c.actions[0].resources,
            ["arn:aws:logs:us-east-1:111122223333:log-group:/app:log-stream:s"]
        );
        let c = json(
            "logs",
            "Logs_20140328.StartQuery",
            r#"{"logGroupNames":["/a","/b"],"queryString":"q","startTime":1,"endTime":2}"#,
        )
        .unwrap();
        assert_eq!(
            c.actions[0].resources,
            [
                "arn:aws:logs:us-east-1:111122223333:log-group:/a",
                "arn:aws:logs:us-east-1:111122223333:log-group:/b"
            ]
        );
        let c = form("ec2", "Action=DescribeInstances&Version=2016-11-15").unwrap();
        assert_eq!(
            (c.protocol, actions(&c)),
            (Protocol::Ec2, vec![("ec2:DescribeInstances", vec!["*"])])
        );
        // The instances, volumes, … IAM evaluates, where the operation names them and
        // they are all the resources the Service Authorization Reference lists for it.
        let i = "arn:aws:ec2:us-east-1:111122223333:instance/";
        let c = form(
            "ec2",
            "Action=TerminateInstances&Version=2016-11-15&InstanceId.2=i-b&InstanceId.1=i-a",
        )
        .unwrap();
        assert_eq!(
            actions(&c),
            vec![(
                "ec2:TerminateInstances",
                vec![format!("{i}i-a").as_str(), format!("{i}i-b").as_str()]
            )]
        );
        let c = form(
            "ec2",
            "Action=AttachVolume&Version=2016-11-15&InstanceId=i-a&VolumeId=vol-1&Device=/dev/sdf",
        )
        .unwrap();
        assert_eq!(
            actions(&c),
            vec![(
                "ec2:AttachVolume",
                vec![
                    format!("{i}i-a").as_str(),
                    "arn:aws:ec2:us-east-1:111122223333:volume/vol-1"
                ]
            )]
        );
        // By name, a security group has no ARN the request gives: unknown.
        let c = form(
            "ec2",
            "Action=DeleteSecurityGroup&Version=2016-11-15&GroupName=web",
        )
        .unwrap();
        assert_eq!(actions(&c), vec![("ec2:DeleteSecurityGroup", vec!["*"])]);
    }
}
