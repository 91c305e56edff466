//! S3's request-time rules: `versionId` actions, copy sources, ACL/tagging/lock headers,
//! `DeleteObjects` keys from the XML body and `s3:prefix`-style condition context.
//!
//! The action name for each operation comes from `data/overrides.json`; this module adds
//! what depends on the request itself.

use super::data::OpData;
use super::dispatch::{Req, amz_value};
use super::request::Params;
use super::resources::ArnCtx;
use super::route::decode;
use super::{ActionOnResources, Classification, ClassifyError};

/// Whether the operation's classification reads the body (`DeleteObjects` keys).
pub(crate) fn needs_body(op: &OpData) -> bool {
    op.name == "DeleteObjects"
}

/// Operations that write an object and honour ACL, tagging and object-lock headers.
const OBJECT_WRITES: &[&str] = &["PutObject", "CopyObject", "CreateMultipartUpload"];

/// Applies S3's request-time rules.
pub(crate) fn apply(
    req: &Req<'_>,
    ctx: ArnCtx<'_>,
    cls: &mut Classification,
) -> Result<(), ClassifyError> {
    let op = req.op;
    let p = ctx.partition;
    // S3 Control signs as `s3` too; its requests carry the account in this header. Its
    // routes (`/v20180820/...`) would otherwise parse as a bucket named `v20180820`.
    if req.input.headers.contains_key("x-amz-account-id") {
        return Err(ClassifyError::Unrecognised {
            service: "s3".into(),
            reason: "an s3control request (`x-amz-account-id`), which is not classified".into(),
        });
    }
    let label = |name: &str| {
        req.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let bucket = label("Bucket");
    if let Some(b) = bucket
        && let Err(why) = bucket_name(b)
    {
        // An S3-compatible upstream may serve its own APIs under paths no bucket can
        // have; and a name S3 could not create is not one the grant was written for.
        return Err(ClassifyError::InvalidParameter {
            name: format!("Bucket ({why})"),
            value: b.to_owned(),
        });
    }
    let target = cls
        .actions
        .first()
        .map(|a| a.resources.clone())
        .unwrap_or_default();
    let amz = |name: &str| amz_value(req.input.headers, &req.query, name);

    if let Some(version) = req.query.get("versionId")? {
        cls.context
            .insert("s3:VersionId".into(), version.to_owned());
        if let (Some(va), Some(first)) = (&op.version_action, cls.actions.first_mut()) {
            first.action = va.clone();
        }
    }
    match op.name.as_str() {
        "CopyObject" | "UploadPartCopy" => {
            let raw = amz("x-amz-copy-source")?.ok_or_else(|| ClassifyError::Unrecognised {
                service: "s3".into(),
                reason: format!("`{}` without `x-amz-copy-source`", op.name),
            })?;
            let (action, arn) = copy_source(raw, p)?;
            cls.context
                .insert("s3:x-amz-copy-source".into(), raw.to_owned());
            cls.actions.push(ActionOnResources {
                action: action.into(),
                resources: vec![arn],
            });
        }
        "DeleteObjects" => {
            let body = req
                .body
                .as_deref()
                .ok_or_else(|| ClassifyError::BodyRequired {
                    operation: op.name.clone(),
                })?;
            let b = bucket.unwrap_or_default();
            let mut plain = Vec::new();
            let mut versioned = Vec::new();
            for (key, version) in delete_keys(body)? {
                let arn = format!("arn:{p}:s3:::{b}/{key}");
                let list = if version { &mut versioned } else { &mut plain };
                if !list.contains(&arn) {
                    list.push(arn);
                }
            }
            cls.actions.clear();
            for (action, resources) in [
                ("s3:DeleteObject", plain),
                ("s3:DeleteObjectVersion", versioned),
            ] {
                if !resources.is_empty() {
                    cls.actions.push(ActionOnResources {
                        action: action.into(),
                        resources,
                    });
                }
            }
        }
        "ListObjects" | "ListObjectsV2" | "ListObjectVersions" | "ListMultipartUploads" => {
            for (param, key) in [
                ("prefix", "s3:prefix"),
                ("delimiter", "s3:delimiter"),
                ("max-keys", "s3:max-keys"),
            ] {
                if let Some(v) = req.query.get(param)? {
                    cls.context.insert(key.into(), v.to_owned());
                }
            }
        }
        "CreateSession" => {
            let b = bucket.unwrap_or_default();
            cls.actions = vec![ActionOnResources {
                action: "s3express:CreateSession".into(),
                resources: vec![format!(
                    "arn:{p}:s3express:{}:{}:bucket/{b}",
                    ctx.region, ctx.account
                )],
            }];
        }
        _ => {}
    }

    let has_grant = req
        .input
        .headers
        .keys()
        .map(|k| k.as_str())
        .chain(req.query.keys())
        .any(|k| {
            k.get(..12)
                .is_some_and(|p| p.eq_ignore_ascii_case("x-amz-grant-"))
                && k.len() > 12
        });
    let acl = amz("x-amz-acl")?;
    if let Some(acl) = acl {
        cls.context.insert("s3:x-amz-acl".into(), acl.to_owned());
    }
    let mut extra: Vec<&str> = Vec::new();
    if OBJECT_WRITES.contains(&op.name.as_str()) {
        if acl.is_some() || has_grant {
            extra.push("s3:PutObjectAcl");
        }
        if amz("x-amz-tagging")?.is_some() {
            extra.push("s3:PutObjectTagging");
        }
        if amz("x-amz-object-lock-mode")?.is_some()
            || amz("x-amz-object-lock-retain-until-date")?.is_some()
        {
            extra.push("s3:PutObjectRetention");
        }
        if amz("x-amz-object-lock-legal-hold")?.is_some() {
            extra.push("s3:PutObjectLegalHold");
        }
    }
    if op.name == "CreateBucket" {
        if acl.is_some() || has_grant {
            extra.push("s3:PutBucketAcl");
        }
        if amz("x-amz-bucket-object-lock-enabled")?.is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            extra.push("s3:PutBucketObjectLockConfiguration");
            extra.push("s3:PutBucketVersioning");
        }
        if amz("x-amz-object-ownership")?.is_some() {
            extra.push("s3:PutBucketOwnershipControls");
        }
    }
    if matches!(
        op.name.as_str(),
        "DeleteObject" | "DeleteObjects" | "PutObjectRetention"
    ) && amz("x-amz-bypass-governance-retention")?
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        extra.push("s3:BypassGovernanceRetention");
    }
    for action in extra {
        let resources = if op.name == "DeleteObjects" {
            cls.actions
                .iter()
                .flat_map(|a| a.resources.clone())
                .collect()
        } else {
            target.clone()
        };
        cls.actions.push(ActionOnResources {
            action: action.into(),
            resources,
        });
    }
    Ok(())
}

/// Parses `x-amz-copy-source`: `[/]bucket/key[?versionId=v]` (URL-encoded) or an access
/// point ARN `arn:…:accesspoint/name/object/key`. Returns the read action and the source ARN.
/// S3's bucket naming rules for general purpose buckets: 3–63 characters of lower-case
/// letters, digits, `.` and `-`, starting and ending with a letter or digit, no `..`,
/// not an IPv4 address, and none of the prefixes and suffixes S3 reserves (access point
/// aliases, directory and table buckets, which IAM evaluates as other resources).
pub(crate) fn bucket_name(name: &str) -> Result<(), &'static str> {
    const RESERVED_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const RESERVED_SUFFIXES: [&str; 5] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];
    let bytes = name.as_bytes();
    if !(3..=63).contains(&bytes.len()) {
        return Err("not 3 to 63 characters");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
    {
        return Err("only lower-case letters, digits, `.` and `-`");
    }
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !edge(bytes.first()) || !edge(bytes.last()) {
        return Err("must start and end with a letter or digit");
    }
    if name.contains("..") {
        return Err("two adjacent periods");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("formatted as an ip address");
    }
    if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        || RESERVED_SUFFIXES.iter().any(|s| name.ends_with(s))
    {
        return Err("a prefix or suffix s3 reserves");
    }
    Ok(())
}

fn copy_source(raw: &str, partition: &str) -> Result<(&'static str, String), ClassifyError> {
    let invalid = || ClassifyError::InvalidParameter {
        name: "x-amz-copy-source".into(),
        value: raw.to_owned(),
    };
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let mut version = false;
    if let Some(q) = query {
        let params = Params::parse(q.as_bytes());
        if let Some(dup) = params.first_duplicate() {
            return Err(ClassifyError::DuplicateParameter {
                name: dup.to_owned(),
            });
        }
        if params.keys().any(|k| k != "versionId") {
            return Err(invalid());
        }
        version = params.get("versionId")?.is_some();
    }
    let path = decode(path)?;
    let path = path.strip_prefix('/').unwrap_or(&path);
    let arn = if path.starts_with("arn:") {
        if !path.contains("/object/") {
            return Err(invalid());
        }
        path.to_owned()
    } else {
        match path.split_once('/') {
            Some((b, k)) if bucket_name(b).is_ok() && !k.is_empty() => {
                format!("arn:{partition}:s3:::{b}/{k}")
            }
            _ => return Err(invalid()),
        }
    };
    let action = if version {
        "s3:GetObjectVersion"
    } else {
        "s3:GetObject"
    };
    Ok((action, arn))
}

/// The `(key, has version)` pairs of a `DeleteObjects` body:
/// `<Delete><Object><Key>k</Key><VersionId>v</VersionId></Object>…<Quiet/></Delete>`.
/// DTDs are refused by the parser (no entity expansion).
fn delete_keys(body: &[u8]) -> Result<Vec<(String, bool)>, ClassifyError> {
    let malformed = |reason: String| ClassifyError::Malformed {
        part: "xml body",
        reason,
    };
    let text = std::str::from_utf8(body).map_err(|e| malformed(e.to_string()))?;
    let doc = roxmltree::Document::parse(text).map_err(|e| malformed(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "Delete" {
        return Err(malformed("root element is not `Delete`".into()));
    }
    let mut out = Vec::new();
    for child in root.children().filter(roxmltree::Node::is_element) {
        match child.tag_name().name() {
            "Quiet" => {}
            "Object" => {
                let mut key = None;
                let mut version = None;
                for field in child.children().filter(roxmltree::Node::is_element) {
                    let slot = match field.tag_name().name() {
                        "Key" => &mut key,
                        "VersionId" => &mut version,
                        "ETag" | "LastModifiedTime" | "Size" => continue,
                        other => return Err(malformed(format!("unexpected element `{other}`"))),
                    };
                    if slot.is_some() {
                        return Err(ClassifyError::DuplicateParameter {
                            name: field.tag_name().name().to_owned(),
                        });
                    }
                    if field.children().any(|n| !n.is_text()) {
                        return Err(malformed("element inside `Key` or `VersionId`".into()));
                    }
                    let value: String = field.children().filter_map(|n| n.text()).collect();
                    *slot = Some(value);
                }
                let key = key
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| malformed("`Object` without `Key`".into()))?;
                if key.len() > 1024 {
                    return Err(malformed(
                        "a key longer than 1024 bytes (s3's limit)".into(),
                    ));
                }
                if out.len() == 1000 {
                    return Err(malformed("more than 1000 objects (s3's limit)".into()));
                }
                out.push((key, version.is_some()));
            }
            other => return Err(malformed(format!("unexpected element `{other}`"))),
        }
    }
    if out.is_empty() {
        return Err(malformed("no `Object` to delete".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "tests fail loudly"
    )]
    use super::*;

    #[test]
    fn copy_sources() {
        assert_eq!(
            copy_source("/src/a%20b/c.txt", "aws").unwrap(),
            ("s3:GetObject", "arn:aws:s3:::src/a b/c.txt".to_owned())
        );
        assert_eq!(
            copy_source("src/k?versionId=v1", "aws").unwrap(),
            ("s3:GetObjectVersion", "arn:aws:s3:::src/k".to_owned())
        );
        assert!(copy_source("src", "aws").is_err());
        assert!(copy_source("src/k?versionId=1&versionId=2", "aws").is_err());
        assert!(copy_source("src/k?acl", "aws").is_err());
    }

    #[test]
    fn delete_bodies() {
        let body = br#"<?xml version="1.0"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a&amp;b</Key></Object><Object><Key>c</Key><VersionId>v</VersionId></Object><Quiet>true</Quiet></Delete>"#;
        assert_eq!(
            delete_keys(body).unwrap(),
            vec![("a&b".to_owned(), false), ("c".to_owned(), true)]
        );
        assert!(
            delete_keys(b"<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>").is_err()
        );
        assert!(delete_keys(b"<Delete></Delete>").is_err());
        assert!(
            delete_keys(
                b"<!DOCTYPE x [<!ENTITY e \"x\">]><Delete><Object><Key>&e;</Key></Object></Delete>"
            )
            .is_err()
        );
        assert!(delete_keys(b"not xml").is_err());
    }

    #[test]
    fn delete_bodies_within_s3s_limits() {
        let body = |n: usize, key: &str| {
            let objects: String = (0..n)
                .map(|i| format!("<Object><Key>{key}{i}</Key></Object>"))
                .collect();
            format!("<Delete>{objects}</Delete>")
        };
        assert_eq!(delete_keys(body(1000, "k").as_bytes()).unwrap().len(), 1000);
        assert!(delete_keys(body(1001, "k").as_bytes()).is_err());
        assert!(delete_keys(body(1, &"k".repeat(1025)).as_bytes()).is_err());
    }
}
