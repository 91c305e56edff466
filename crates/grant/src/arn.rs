//! ARN patterns as written in a policy's `Resource` / `NotResource`, and their matching.
//!
//! Matching is segment-aware, like IAM: an ARN is `arn:partition:service:region:account:resource`;
//! a wildcard in the partition, service, region or account segment matches within that segment
//! only, while the resource segment (which may itself contain `:` and `/`) is matched as a whole,
//! so `arn:aws:s3:::b/*` covers `arn:aws:s3:::b/a/b:c`. Matching is case-sensitive, as in IAM.
//! The pattern `*` alone matches every resource, including the `*` a request carries for an
//! action that has no resource; any other pattern never matches that `*`.

use crate::wildcard::{self, Glob};

/// A parsed `Resource` entry: `*` or a six-part ARN that may contain `*` / `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArnPattern {
    /// The entry exactly as written (rendered back unchanged).
    pub(crate) text: String,
    kind: Kind,
    /// When the partition, service, region or account segment holds upper-case letters:
    /// the pattern with them in lower case (see [`ArnPattern::broad`]).
    folded: Option<Box<ArnPattern>>,
    /// A wildcard in the resource-type part of the resource segment (see
    /// [`ArnPattern::matches_strict`]).
    wild_type: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Any,
    /// No wildcard anywhere: compared as a whole.
    Literal,
    /// Partition, service, region, account and resource, each compiled.
    Segments(Box<[Glob; 5]>),
}

/// Why an ARN (pattern) is malformed. Displayed after the field name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MalformedArn(pub(crate) &'static str);

/// The segments of a concrete ARN: partition, service, region, account, resource.
pub(crate) type Segments<'a> = [&'a str; 5];

/// Services whose resource names cannot contain `?`: in a request resource of theirs, a
/// `?` is a character the gateway does not know (a Secrets Manager secret named without
/// its six-character suffix, a KMS key named by an alias).
pub(crate) const TEMPLATE_SERVICES: &[&str] = &["secretsmanager", "kms"];

/// In a template resource, the stand-in for an unknown character when asking whether a
/// pattern covers every value: no policy pattern can hold it (control characters are
/// refused), so only a wildcard matches it.
pub(crate) const UNKNOWN: char = '\u{1}';

/// The resource-type part of an ARN's resource segment: up to and including the first `/`
/// or `:` (`instance/` of `instance/i-1`, `function:` of `function:f:1`); empty when there
/// is neither, and for S3 bucket and object ARNs (no region, no account), whose resource
/// segment is a bucket name.
pub(crate) fn type_part<'a>(segments: &Segments<'a>) -> &'a str {
    let [_, service, region, account, resource] = *segments;
    if service == "s3" && region.is_empty() && account.is_empty() {
        return "";
    }
    resource.find(['/', ':']).map_or("", |i| &resource[..=i])
}

/// Split `arn:partition:service:region:account:resource` into its five segments after `arn`.
pub(crate) fn split(arn: &str) -> Result<Segments<'_>, MalformedArn> {
    let Some(rest) = arn.strip_prefix("arn:") else {
        return Err(MalformedArn("an arn starts with `arn:`"));
    };
    // The first four `:` end partition, service, region and account; the resource keeps
    // any further `:`.
    let mut cuts = [0usize; 4];
    let mut found = 0;
    for (i, b) in rest.bytes().enumerate() {
        if b == b':' {
            if let Some(cut) = cuts.get_mut(found) {
                *cut = i;
            }
            found += 1;
            if found == cuts.len() {
                break;
            }
        }
    }
    let parts = (found == cuts.len())
        .then(|| {
            let [a, b, c, d] = cuts;
            Some([
                rest.get(..a)?,
                rest.get(a + 1..b)?,
                rest.get(b + 1..c)?,
                rest.get(c + 1..d)?,
                rest.get(d + 1..)?,
            ])
        })
        .flatten();
    let Some([partition, service, region, account, resource]) = parts else {
        return Err(MalformedArn(
            "an arn has six colon-separated parts: arn:partition:service:region:account:resource",
        ));
    };
    if partition.is_empty() {
        return Err(MalformedArn("the partition is empty"));
    }
    if service.is_empty() {
        return Err(MalformedArn("the service is empty"));
    }
    if resource.is_empty() {
        return Err(MalformedArn("the resource part is empty"));
    }
    Ok([partition, service, region, account, resource])
}

// === impl ArnPattern ===

impl ArnPattern {
    /// Parse a policy `Resource` entry.
    pub(crate) fn parse(text: &str) -> Result<Self, MalformedArn> {
        if text.chars().any(char::is_control) {
            return Err(MalformedArn("an arn holds no control characters"));
        }
        let kind = if text == "*" {
            Kind::Any
        } else {
            let segments = split(text)?;
            if wildcard::has_wildcard(text) {
                Kind::Segments(Box::new(segments.map(Glob::new)))
            } else {
                Kind::Literal
            }
        };
        let folded = match split(text) {
            Ok([p, s, r, a, res])
                if [p, s, r, a]
                    .iter()
                    .any(|x| x.bytes().any(|b| b.is_ascii_uppercase())) =>
            {
                let lower = format!(
                    "arn:{}:{}:{}:{}:{res}",
                    p.to_ascii_lowercase(),
                    s.to_ascii_lowercase(),
                    r.to_ascii_lowercase(),
                    a.to_ascii_lowercase()
                );
                Some(Box::new(Self::parse(&lower)?))
            }
            _ => None,
        };
        Ok(Self {
            text: text.to_owned(),
            wild_type: split(text)
                .is_ok_and(|segments| wildcard::has_wildcard(type_part(&segments))),
            kind,
            folded,
        })
    }

    /// Whether this pattern matches a request resource as IAM reads it where matching
    /// less could only make a decision stricter (an `Allow`'s `Resource`, a `Deny`'s
    /// `NotResource`): as [`ArnPattern::matches`], except that a wildcard in the resource
    /// type (`inst?nce/i-1`, `*/i-1`, `key*:x`) matches nothing. AWS documents a wildcard
    /// there as incorrect usage, and the independent evaluator the differential test runs
    /// (`@cloud-copilot/iam-simulate`) compares that part literally; wherever matching more
    /// is the stricter reading, [`ArnPattern::broad`] still matches it as a glob.
    pub(crate) fn matches_strict(&self, resource: &str, segments: Option<&Segments<'_>>) -> bool {
        !self.wild_type && self.matches(resource, segments)
    }

    /// The pattern matching as much as IAM might: with the partition, service, region
    /// and account segments in lower case. Patterns compare case-sensitively and request
    /// resources name those segments in lower case, so `arn:AWS:S3:::b/*` matches nothing;
    /// whether IAM folds them is not settled here, so wherever matching more could only
    /// make a decision stricter (a `Deny`'s `Resource`, an `Allow`'s `NotResource`) the
    /// broad pattern is used, and the exact one elsewhere.
    pub(crate) fn broad(&self) -> &ArnPattern {
        self.folded.as_deref().unwrap_or(self)
    }

    /// Whether this pattern could match some value of a request resource `template`
    /// (split into segments), whose `?` are unknown characters.
    pub(crate) fn could_match(&self, template: &Segments<'_>) -> bool {
        match &self.kind {
            Kind::Any => true,
            Kind::Literal | Kind::Segments(_) => split(&self.text).is_ok_and(|want| {
                want.iter()
                    .zip(template)
                    .all(|(w, t)| wildcard::could_match(w, t))
            }),
        }
    }

    /// Whether this pattern is `*`, matching every resource.
    pub(crate) fn is_any(&self) -> bool {
        matches!(self.kind, Kind::Any)
    }

    /// Whether this pattern matches a request resource: `*` or an already split ARN
    /// (`None` for the request's `*`).
    pub(crate) fn matches(&self, resource: &str, segments: Option<&Segments<'_>>) -> bool {
        match (&self.kind, segments) {
            (Kind::Any, _) => true,
            (_, None) => false,
            (Kind::Literal, Some(_)) => {
                wildcard::bytes_eq(self.text.as_bytes(), resource.as_bytes())
            }
            // The resource part first: it is the segment most likely to differ.
            (Kind::Segments(want), Some(have)) => [4, 1, 3, 2, 0].iter().all(|&i| {
                matches!((want.get(i), have.get(i)), (Some(w), Some(h)) if w.matches(h, false))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ArnPattern, split};

    fn m(pattern: &str, resource: &str) -> bool {
        let p = ArnPattern::parse(pattern).unwrap_or_else(|e| unreachable!("{pattern}: {e:?}"));
        let segs = if resource == "*" {
            None
        } else {
            Some(split(resource).unwrap_or_else(|e| unreachable!("{resource}: {e:?}")))
        };
        p.matches(resource, segs.as_ref())
    }

    #[test]
    fn segment_aware() {
        let rows = [
            ("*", "arn:aws:s3:::b/k", true),
            ("*", "*", true),
            ("arn:aws:s3:::*", "*", false),
            ("arn:aws:s3:::b/*", "arn:aws:s3:::b/a/b:c", true),
            ("arn:aws:s3:::b/*", "arn:aws:s3:::B/k", false),
            ("arn:aws:s3:::b", "arn:aws:s3:::b", true),
            ("arn:aws:s3:::b", "arn:aws:s3:::b/k", false),
            ("arn:aws:s3:::b?", "arn:aws:s3:::bb", true),
            // A wildcard in the region segment stays in it.
            (
                "arn:aws:dynamodb:*:123:table/t",
                "arn:aws:dynamodb:eu-west-1:123:table/t",
                true,
            ),
            // A plain glob would let `*` swallow `us-east-1:999`; IAM does not.
            (
                "arn:aws:sqs:*:123:q",
                "arn:aws:sqs:us-east-1:999:123:q",
                false,
            ),
            (
                "arn:aws:sqs:us-*-1:*:q",
                "arn:aws:sqs:us-east-1:123456789012:q",
                true,
            ),
            (
                "arn:aws:sqs:us-*-1:*:q",
                "arn:aws:sqs:eu-west-1:123456789012:q",
                false,
            ),
            ("arn:*:s3:::b/*", "arn:aws-cn:s3:::b/x", true),
            // An empty segment only matches an empty segment.
            ("arn:aws:s3:::b/*", "arn:aws:s3:eu-west-1::b/x", false),
            ("arn:aws:sqs::*:q*", "arn:aws:sqs:eu-west-1:1:q", false),
        ];
        for (pattern, resource, want) in rows {
            assert_eq!(m(pattern, resource), want, "`{pattern}` vs `{resource}`");
        }
    }

    #[test]
    fn a_wildcard_in_the_resource_type_matches_nothing_strictly() {
        let strict = |pattern: &str, resource: &str| {
            let p = ArnPattern::parse(pattern).unwrap_or_else(|e| unreachable!("{e:?}"));
            let segs = split(resource).unwrap_or_else(|e| unreachable!("{e:?}"));
            (
                p.matches_strict(resource, Some(&segs)),
                p.broad().matches(resource, Some(&segs)),
            )
        };
        let i = "arn:aws:ec2:us-east-1:1:instance/i-1";
        // (pattern, strictly, broadly)
        for (pattern, want) in [
            ("arn:aws:ec2:us-east-1:1:inst?nce/i-1", (false, true)),
            ("arn:aws:ec2:us-east-1:1:*/i-1", (false, true)),
            ("arn:aws:ec2:us-east-1:1:instance/*", (true, true)),
            ("arn:aws:ec2:us-east-1:1:instance/?-1", (true, true)),
            // No `/` or `:` in the pattern's resource: no resource-type part to hold it.
            ("arn:aws:ec2:us-east-1:1:inst*", (true, true)),
            ("arn:aws:ec2:us-east-1:1:*", (true, true)),
        ] {
            assert_eq!(strict(pattern, i), want, "`{pattern}`");
        }
        // S3 bucket and object ARNs have no resource-type part.
        assert_eq!(
            strict("arn:aws:s3:::b?/k", "arn:aws:s3:::bb/k"),
            (true, true)
        );
        assert_eq!(
            strict("arn:aws:lambda:r:1:f*:x", "arn:aws:lambda:r:1:function:x"),
            (false, true)
        );
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "s3:::b",
            "arn:aws:s3",
            "arn:aws:s3:::",
            "arn::s3:::b",
            "arn:aws::::b",
        ] {
            assert!(ArnPattern::parse(bad).is_err(), "`{bad}` should be refused");
        }
    }
}
