//! REST URI templates (`/{Bucket}/{Key+}`, `/2015-03-31/functions/{FunctionName}`) and
//! matching raw request paths against them.
//!
//! Paths are matched as received: split on `/` without normalisation (S3 keys may contain
//! `//`, `..` and `%2F`), then each label is percent-decoded on its own; a greedy label
//! (`{Key+}`) takes the raw rest of the path and decodes it as a whole.

use percent_encoding::percent_decode_str;

use super::ClassifyError;

/// One path segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Literal(String),
    Label(String),
    Greedy(String),
}

/// A parsed URI template path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    segs: Vec<Seg>,
}

impl Template {
    /// Parses a path template (no query part).
    pub(crate) fn parse(path: &str) -> Result<Self, String> {
        let rest = path
            .strip_prefix('/')
            .ok_or_else(|| format!("template `{path}` does not start with `/`"))?;
        let mut segs = Vec::new();
        if !rest.is_empty() {
            for s in rest.split('/') {
                let seg = match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(label) => match label.strip_suffix('+') {
                        Some(greedy) => Seg::Greedy(greedy.to_owned()),
                        None => Seg::Label(label.to_owned()),
                    },
                    None if s.contains('{') => {
                        return Err(format!("template `{path}` has a partial label"));
                    }
                    None => Seg::Literal(s.to_owned()),
                };
                segs.push(seg);
            }
        }
        if segs.iter().filter(|s| matches!(s, Seg::Greedy(_))).count() > 1 {
            return Err(format!("template `{path}` has two greedy labels"));
        }
        Ok(Template { segs })
    }

    /// Number of literal segments: more literals is a more specific route.
    pub(crate) fn literals(&self) -> usize {
        self.segs
            .iter()
            .filter(|s| matches!(s, Seg::Literal(_)))
            .count()
    }

    /// The decoded label values of `raw`, which has this template's shape
    /// ([`Template::shape_matches`]; checked first, without allocating: most candidate
    /// templates fail on a literal or a discriminator).
    pub(crate) fn labels(&self, raw: &[&str]) -> Result<Vec<(String, String)>, ClassifyError> {
        let mut labels = Vec::new();
        for (i, seg) in self.segs.iter().enumerate() {
            match seg {
                Seg::Literal(_) => {}
                Seg::Label(name) => {
                    if let Some(v) = raw.get(i) {
                        labels.push((name.clone(), decode(v)?));
                    }
                }
                Seg::Greedy(name) => {
                    // It takes what the segments after it leave (`/portals/{arn+}/x`).
                    let after = self.segs.len() - i - 1;
                    let end = raw.len().saturating_sub(after);
                    let rest = raw.get(i..end).unwrap_or_default().join("/");
                    labels.push((name.clone(), decode(&rest)?));
                    for (seg, v) in self.segs[i + 1..]
                        .iter()
                        .zip(raw.get(end..).unwrap_or_default())
                    {
                        if let Seg::Label(name) = seg {
                            labels.push((name.clone(), decode(v)?));
                        }
                    }
                    break;
                }
            }
        }
        Ok(labels)
    }

    /// Whether `raw` has this template's shape: literals equal, labels non-empty, a greedy
    /// label with something to take, and no extra segments (but one trailing slash).
    pub(crate) fn shape_matches(&self, raw: &[&str]) -> bool {
        for (i, seg) in self.segs.iter().enumerate() {
            match seg {
                Seg::Literal(l) => {
                    if raw.get(i) != Some(&l.as_str()) {
                        return false;
                    }
                }
                Seg::Label(_) => {
                    if raw.get(i).is_none_or(|v| v.is_empty()) {
                        return false;
                    }
                }
                Seg::Greedy(_) => {
                    // The segments after a greedy label match the end of the path.
                    let after = &self.segs[i + 1..];
                    let Some(end) = raw.len().checked_sub(after.len()) else {
                        return false;
                    };
                    let tail_ok = after.iter().zip(&raw[end..]).all(|(seg, v)| match seg {
                        Seg::Literal(l) => v == l,
                        Seg::Label(_) => !v.is_empty(),
                        Seg::Greedy(_) => false,
                    });
                    let rest = raw.get(i..end).unwrap_or_default();
                    // `join("/")` of these is empty only for no segments or one empty one.
                    return tail_ok
                        && !(rest.is_empty() || (rest.len() == 1 && rest[0].is_empty()));
                }
            }
        }
        // A single trailing slash is allowed (`/bucket/` is the bucket).
        let n = self.segs.len();
        raw.len() == n || (raw.len() == n + 1 && raw.last() == Some(&""))
    }
}

/// Splits a raw request path into raw segments.
pub(crate) fn split_path(path: &str) -> Result<Vec<&str>, ClassifyError> {
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| ClassifyError::Malformed {
            part: "path",
            reason: format!("`{path}` does not start with `/`"),
        })?;
    Ok(if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    })
}

/// Percent-decodes a path piece (no `+` → space: that is a query convention).
pub(crate) fn decode(raw: &str) -> Result<String, ClassifyError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ClassifyError::Malformed {
            part: "path",
            reason: format!("`{raw}` is not utf-8 once percent-decoded"),
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

    fn m(t: &str, p: &str) -> Option<Vec<(String, String)>> {
        let t = Template::parse(t).unwrap();
        let raw = split_path(p).unwrap();
        t.shape_matches(&raw).then(|| t.labels(&raw).unwrap())
    }

    #[test]
    fn a_greedy_label_before_literals_takes_what_they_leave() {
        let t = Template::parse("/portals/{portalArn+}/browserSettings").unwrap();
        let raw = split_path("/portals/arn:aws:x:r:1:portal/a/b/browserSettings").unwrap();
        assert!(t.shape_matches(&raw));
        assert_eq!(
            t.labels(&raw).unwrap(),
            vec![(
                "portalArn".to_owned(),
                "arn:aws:x:r:1:portal/a/b".to_owned()
            )]
        );
        for bad in [
            "/portals/browserSettings",
            "/portals/x/other",
            "/portals/x/browserSettings/y",
        ] {
            assert!(!t.shape_matches(&split_path(bad).unwrap()), "{bad}");
        }
        assert!(Template::parse("/{a+}/{b+}").is_err());
    }

    #[test]
    fn greedy_keeps_slashes_and_dots() {
        let l = m("/{Bucket}/{Key+}", "/b//a/../c%2Fd%20e").unwrap();
        assert_eq!(l[0], ("Bucket".into(), "b".into()));
        assert_eq!(l[1], ("Key".into(), "/a/../c/d e".into()));
        assert!(m("/{Bucket}/{Key+}", "/b/").is_none());
        assert!(m("/{Bucket}/{Key+}", "/b").is_none());
    }

    #[test]
    fn labels_literals_and_trailing_slash() {
        assert!(m("/{Bucket}", "/b/").is_some());
        assert!(m("/{Bucket}", "/").is_none());
        assert!(m("/", "/").is_some());
        let l = m(
            "/2015-03-31/functions/{FunctionName}/invocations",
            "/2015-03-31/functions/f%3A1/invocations",
        )
        .unwrap();
        assert_eq!(l[0].1, "f:1");
        assert!(
            m(
                "/2015-03-31/functions/{FunctionName}",
                "/2015-03-31/functions/f/invocations"
            )
            .is_none()
        );
        assert!(Template::parse("/{A+}/{B+}").is_err());
    }
}
