//! Building resource ARNs from ARN templates and member values.

use super::ClassifyError;
use super::data::{ResAlt, Transform};

/// A member's value: one string, or a list (for `each` templates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemberValue {
    One(String),
    Many(Vec<String>),
}

/// Where ARNs are built: partition, region and the account of resources named without one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArnCtx<'a> {
    pub(crate) partition: &'static str,
    pub(crate) region: &'a str,
    pub(crate) account: &'a str,
}

/// Looks up a member's value in the request.
pub(crate) type Lookup<'l> = dyn FnMut(&str) -> Result<Option<MemberValue>, ClassifyError> + 'l;

/// The AWS partition a region belongs to.
pub(crate) fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eusc-") {
        "aws-eusc"
    } else {
        "aws"
    }
}

/// Evaluates resource groups. In a group, the first alternative whose members are all
/// present names the resource; a later alternative that is present too names another
/// one unless its members are a subset of those already used (`{Bucket}` after
/// `{Bucket}/{Key}` is the same resource, less specific). So a request that names a
/// resource through two alternative members (SNS `TopicArn` and `TargetArn`, CloudWatch
/// Logs `logGroupName` and `logGroupIdentifier`) is authorised on both: whichever the
/// upstream reads, it was decided on. `*` when no group yields anything.
pub(crate) fn eval_groups(
    groups: &[Vec<ResAlt>],
    ctx: ArnCtx<'_>,
    lookup: &mut Lookup<'_>,
) -> Result<Vec<String>, ClassifyError> {
    let mut out: Vec<String> = Vec::new();
    for group in groups {
        let mut used: Vec<&str> = Vec::new();
        for alt in group {
            let names = alt_members(alt);
            if !used.is_empty() && names.iter().all(|n| used.contains(n)) {
                continue;
            }
            if let Some(arns) = eval_alt(alt, ctx, lookup)? {
                for a in arns {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
                used.extend(names);
            }
        }
    }
    if out.is_empty() || out.iter().any(|a| a == "*") {
        out = vec!["*".to_owned()];
    }
    Ok(out)
}

/// The members an alternative reads: its placeholders and its `if` member.
fn alt_members(alt: &ResAlt) -> Vec<&str> {
    let mut names = placeholders(&alt.t);
    names.extend(alt.if_member.as_deref());
    names
}

/// Evaluates one alternative; `None` when one of its members is absent.
fn eval_alt(
    alt: &ResAlt,
    ctx: ArnCtx<'_>,
    lookup: &mut Lookup<'_>,
) -> Result<Option<Vec<String>>, ClassifyError> {
    if let Some(member) = &alt.if_member {
        match lookup(member)? {
            None => return Ok(None),
            Some(MemberValue::One(v)) if v.is_empty() => return Ok(None),
            Some(_) => {}
        }
    }
    let names = placeholders(&alt.t);
    let mut values: Vec<(&str, MemberValue)> = Vec::with_capacity(names.len());
    for name in &names {
        match lookup(name)? {
            Some(MemberValue::One(v)) if v.is_empty() => return Ok(None),
            Some(MemberValue::Many(v)) if v.is_empty() => return Ok(None),
            Some(v) => values.push((name, v)),
            None => return Ok(None),
        }
    }
    if let Some(tr) = alt.tr {
        let Some((name, value)) = values.first() else {
            return Ok(None);
        };
        let items = match value {
            MemberValue::One(v) => vec![v.clone()],
            MemberValue::Many(v) => v.clone(),
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(transform(tr, name, &item, ctx, lookup)?);
        }
        return Ok(Some(out));
    }
    if alt.each {
        let Some((name, MemberValue::Many(items))) = values.first() else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let one = [(*name, MemberValue::One(item.clone()))];
            out.push(fill(alt, &one, ctx)?);
        }
        return Ok(Some(out));
    }
    Ok(Some(vec![fill(alt, &values, ctx)?]))
}

/// Substitutes values into the template, honouring the `arn` pass-through member.
fn fill(
    alt: &ResAlt,
    values: &[(&str, MemberValue)],
    ctx: ArnCtx<'_>,
) -> Result<String, ClassifyError> {
    let get = |name: &str| -> Result<String, ClassifyError> {
        match values.iter().find(|(n, _)| *n == name) {
            Some((_, MemberValue::One(v))) => Ok(v.clone()),
            Some((_, MemberValue::Many(v))) => Err(ClassifyError::InvalidParameter {
                name: name.to_owned(),
                value: v.join(","),
            }),
            None => Ok(String::new()),
        }
    };
    let mut template = alt.t.as_str();
    let mut out = String::new();
    if let Some(arn_member) = &alt.arn {
        let value = get(arn_member)?;
        let placeholder = format!("{{{arn_member}}}");
        if value.starts_with("arn:") {
            // The member already is an ARN: it stands for the template up to its placeholder.
            let after = template
                .find(&placeholder)
                .map_or("", |i| &template[i + placeholder.len()..]);
            out.push_str(&value);
            template = after;
        } else if template == placeholder {
            // A pure pass-through member that is not an ARN: AWS will reject it, and we
            // cannot name a resource narrower than everything.
            return Ok("*".to_owned());
        }
    }
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(ClassifyError::Data(format!(
                "unclosed placeholder in `{}`",
                alt.t
            )));
        };
        let name = &after[..close];
        match name {
            "partition" => out.push_str(ctx.partition),
            "region" => out.push_str(ctx.region),
            "account" => out.push_str(ctx.account),
            member => out.push_str(&get(member)?),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Member placeholders of a template (not `partition`, `region`, `account`).
fn placeholders(t: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        if !matches!(name, "partition" | "region" | "account") {
            out.push(name);
        }
        rest = &after[close + 1..];
    }
    out
}

fn transform(
    tr: Transform,
    name: &str,
    value: &str,
    ctx: ArnCtx<'_>,
    lookup: &mut Lookup<'_>,
) -> Result<String, ClassifyError> {
    let p = ctx.partition;
    let (region, account) = (ctx.region, ctx.account);
    let invalid = || ClassifyError::InvalidParameter {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    match tr {
        Transform::SqsQueueUrl => {
            let (queue_account, queue) = sqs_queue_url(value).ok_or_else(invalid)?;
            Ok(format!("arn:{p}:sqs:{region}:{queue_account}:{queue}"))
        }
        Transform::KmsKey => Ok(kms_key(value, ctx)),
        Transform::SecretsmanagerSecret => Ok(secret_arn(value, ctx)),
        Transform::SsmParameter => {
            if value.starts_with("arn:") {
                return Ok(value.to_owned());
            }
            // `name:3` / `name:label` select a version; IAM checks the parameter itself.
            let name = value.split(':').next().unwrap_or_default();
            let name = name.strip_prefix('/').unwrap_or(name);
            Ok(format!("arn:{p}:ssm:{region}:{account}:parameter/{name}"))
        }
        Transform::LambdaFunction => {
            let qualifier = match lookup("Qualifier")? {
                Some(MemberValue::One(q)) if !q.is_empty() => Some(q),
                _ => None,
            };
            lambda_function(value, qualifier.as_deref(), ctx).ok_or_else(invalid)
        }
    }
}

/// A KMS key id as IAM evaluates it: the key. An alias (`alias/x` or an alias ARN) names a
/// key the gateway does not know, so it becomes the key ARN with its 36-character id
/// unknown (`key/` and 36 `?`, see `custody_grant`'s template resources): a grant must
/// allow every key the alias could point to, and a `Deny` on any key applies.
pub(crate) fn kms_key(value: &str, ctx: ArnCtx<'_>) -> String {
    let (p, region, account) = (ctx.partition, ctx.region, ctx.account);
    let unknown_key = |region: &str, account: &str| {
        format!("arn:{p}:kms:{region}:{account}:key/{}", "?".repeat(36))
    };
    if let Some(rest) = value.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        return match parts.as_slice() {
            [_, "kms", r, a, res] if res.starts_with("alias/") => unknown_key(r, a),
            _ => value.to_owned(),
        };
    }
    if value.starts_with("alias/") {
        unknown_key(region, account)
    } else {
        format!("arn:{p}:kms:{region}:{account}:key/{value}")
    }
}

/// A Secrets Manager `SecretId` as IAM evaluates it: the secret's full ARN, whose name
/// ends in `-` and six random characters. Called by name (or by a partial ARN without the
/// suffix), the suffix is unknown: `NAME-??????` (see `custody_grant`'s template
/// resources). A full ARN is taken as it is.
pub(crate) fn secret_arn(value: &str, ctx: ArnCtx<'_>) -> String {
    let full = |arn: &str| {
        arn.rsplit_once('-').is_some_and(|(_, suffix)| {
            suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    };
    if value.starts_with("arn:") {
        return if full(value) {
            value.to_owned()
        } else {
            format!("{value}-??????")
        };
    }
    format!(
        "arn:{}:secretsmanager:{}:{}:secret:{value}-??????",
        ctx.partition, ctx.region, ctx.account
    )
}

/// `(account, queue name)` of a queue URL `scheme://host/account/name`; also accepts the
/// path alone (legacy query requests post to the queue's path).
pub(crate) fn sqs_queue_url(url: &str) -> Option<(String, String)> {
    let path = match url.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => url,
    };
    let mut segs = path.strip_prefix('/')?.split('/');
    let (account, name) = (segs.next()?, segs.next()?);
    let valid = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    };
    (segs.next().is_none() && valid(account) && valid(name))
        .then(|| (account.to_owned(), name.to_owned()))
}

/// The function ARN IAM evaluates for a Lambda `FunctionName` (name, `name:qualifier`,
/// partial ARN `account:function:name` or full ARN) and an optional `Qualifier`.
fn lambda_function(value: &str, qualifier: Option<&str>, ctx: ArnCtx<'_>) -> Option<String> {
    let (p, region) = (ctx.partition, ctx.region);
    let parts: Vec<&str> = value.split(':').collect();
    let (account, name, embedded) = match parts.as_slice() {
        ["arn", _, "lambda", _, account, "function", name] => (*account, *name, None),
        ["arn", _, "lambda", _, account, "function", name, q] => (*account, *name, Some(*q)),
        [account, "function", name] => (*account, *name, None),
        [account, "function", name, q] => (*account, *name, Some(*q)),
        [name] => (ctx.account, *name, None),
        [name, q] => (ctx.account, *name, Some(*q)),
        _ => return None,
    };
    if name.is_empty() || account.is_empty() {
        return None;
    }
    let region = match parts.as_slice() {
        ["arn", _, _, r, ..] => *r,
        _ => region,
    };
    let qualifier = match (embedded, qualifier) {
        (Some(a), Some(b)) if a != b => return None,
        (Some(q), _) | (None, Some(q)) => Some(q),
        (None, None) => None,
    };
    Some(match qualifier {
        Some(q) => format!("arn:{p}:lambda:{region}:{account}:function:{name}:{q}"),
        None => format!("arn:{p}:lambda:{region}:{account}:function:{name}"),
    })
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

    const CTX: ArnCtx<'static> = ArnCtx {
        partition: "aws",
        region: "us-east-1",
        account: "111122223333",
    };

    #[test]
    fn queue_urls() {
        assert_eq!(
            sqs_queue_url("https://sqs.us-east-1.amazonaws.com/123456789012/q1"),
            Some(("123456789012".into(), "q1".into()))
        );
        assert_eq!(
            sqs_queue_url("/123456789012/q.fifo"),
            Some(("123456789012".into(), "q.fifo".into()))
        );
        assert_eq!(sqs_queue_url("https://h/1/q/extra"), None);
        assert_eq!(sqs_queue_url("https://h/"), None);
        assert_eq!(sqs_queue_url("q"), None);
    }

    #[test]
    fn lambda_names() {
        let f = |v, q| lambda_function(v, q, CTX);
        assert_eq!(
            f("fn", None).unwrap(),
            "arn:aws:lambda:us-east-1:111122223333:function:fn"
        );
        assert_eq!(
            f("fn:prod", None).unwrap(),
            "arn:aws:lambda:us-east-1:111122223333:function:fn:prod"
        );
        assert_eq!(
            f("fn", Some("2")).unwrap(),
            "arn:aws:lambda:us-east-1:111122223333:function:fn:2"
        );
        assert_eq!(
            f("444455556666:function:fn", None).unwrap(),
            "arn:aws:lambda:us-east-1:444455556666:function:fn"
        );
        assert_eq!(
            f("arn:aws:lambda:eu-west-1:444455556666:function:fn", None).unwrap(),
            "arn:aws:lambda:eu-west-1:444455556666:function:fn"
        );
        assert!(f("fn:a", Some("b")).is_none());
        assert!(f("a:b:c:d:e", None).is_none());
    }

    #[test]
    fn partitions() {
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition("eu-west-1"), "aws");
    }
}
