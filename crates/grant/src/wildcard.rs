//! IAM wildcard matching: `*` matches any run of characters (including none), `?` matches
//! exactly one character. No other character is special and there is no escaping, as in IAM.

/// Whether `pattern` could match some value of `template`, a text in which each `?` is one
/// unknown character (any value; `pattern`'s `*` and `?` keep their meaning). Byte-wise,
/// case-sensitive; O(len(pattern) × len(template)).
pub(crate) fn could_match(pattern: &str, template: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), template.as_bytes());
    // reach[j]: the pattern's first i bytes can match the template's first j bytes.
    let mut reach = vec![false; t.len() + 1];
    reach[0] = true;
    for &pc in p {
        let mut next = vec![false; t.len() + 1];
        if pc == b'*' {
            let mut any = false;
            for j in 0..=t.len() {
                any |= reach[j];
                next[j] = any;
            }
        } else {
            for j in 0..t.len() {
                next[j + 1] = reach[j] && (pc == b'?' || t[j] == b'?' || pc == t[j]);
            }
        }
        reach = next;
    }
    reach[t.len()]
}

/// Whether `text` matches `pattern`.
///
/// With `fold_case`, ASCII letters compare case-insensitively; the pattern should then already
/// be lower-case (patterns are folded once at parse time, the text on the fly).
///
/// Runs in O(len(pattern) × len(text)) in the worst case and does not allocate. `?` and the
/// backtracking of `*` always step over whole UTF-8 characters, so `?` matches one character,
/// not one byte.
pub(crate) fn matches(pattern: &str, text: &str, fold_case: bool) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position after the last `*` seen in the pattern, and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                pi += 1;
                star = Some((pi, ti));
                continue;
            }
            Some(b'?') => {
                pi += 1;
                ti += char_len(t[ti]);
                continue;
            }
            Some(&pc) => {
                let tc = if fold_case {
                    t[ti].to_ascii_lowercase()
                } else {
                    t[ti]
                };
                if pc == tc {
                    pi += 1;
                    ti += 1;
                    continue;
                }
            }
            None => {}
        }
        // Mismatch: let the last `*` swallow one more character, or fail.
        match star {
            Some((sp, st)) => {
                let next = st + char_len(t[st]);
                star = Some((sp, next));
                pi = sp;
                ti = next;
            }
            None => return false,
        }
    }
    // The text is consumed; what is left of the pattern must be only `*`s.
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// A pattern compiled for the common shapes: `*`, a literal, and a literal followed by `*`
/// avoid the general matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Glob {
    /// Only `*`s: matches everything.
    Any,
    /// No wildcard.
    Exact(String),
    /// A literal then only `*`s, e.g. `s3:get*` or `bucket/*`.
    Prefix(String),
    /// Anything else.
    General(String),
}

impl Glob {
    /// Compile `pattern` (already folded to lower case if it will be matched with
    /// `fold_case`).
    pub(crate) fn new(pattern: &str) -> Self {
        let literal = pattern.trim_end_matches('*');
        if pattern.is_empty() {
            Self::Exact(String::new())
        } else if literal.is_empty() {
            Self::Any
        } else if has_wildcard(literal) {
            Self::General(pattern.to_owned())
        } else if literal.len() == pattern.len() {
            Self::Exact(pattern.to_owned())
        } else {
            Self::Prefix(literal.to_owned())
        }
    }

    /// Whether `text` matches; see [`matches`] for `fold_case`.
    pub(crate) fn matches(&self, text: &str, fold_case: bool) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            if fold_case {
                a.eq_ignore_ascii_case(b)
            } else {
                bytes_eq(a, b)
            }
        };
        match self {
            Self::Any => true,
            Self::Exact(p) => eq(p.as_bytes(), text.as_bytes()),
            Self::Prefix(p) => text
                .as_bytes()
                .get(..p.len())
                .is_some_and(|head| eq(p.as_bytes(), head)),
            Self::General(p) => matches(p, text, fold_case),
        }
    }

    /// Whether the pattern has no wildcard.
    pub(crate) fn is_exact(&self) -> bool {
        matches!(self, Self::Exact(_))
    }
}

/// Byte equality without a call into libc: the strings compared here are short ARN
/// segments, where `memcmp`'s call overhead dominated the decision time.
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Whether `pattern` contains a wildcard character.
pub(crate) fn has_wildcard(pattern: &str) -> bool {
    pattern.bytes().any(|b| b == b'*' || b == b'?')
}

/// Length in bytes of the UTF-8 character starting with `lead`.
fn char_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::{Glob, matches};

    #[test]
    fn table() {
        let rows: &[(&str, &str, bool, bool)] = &[
            ("*", "", false, true),
            ("*", "anything", false, true),
            ("", "", false, true),
            ("", "a", false, false),
            ("a", "", false, false),
            ("s3:get*", "s3:GetObject", true, true),
            ("s3:get*", "s3:GetObject", false, false),
            ("s3:get*", "s3:PutObject", true, false),
            ("s3:?etobject", "s3:GetObject", true, true),
            ("s3:?etobject", "s3:etObject", true, false),
            ("a*b*c", "aXXbYYc", false, true),
            ("a*b*c", "aXXbYY", false, false),
            ("a*b", "abab", false, true),
            ("a**", "a", false, true),
            ("?", "é", false, true),
            ("??", "é", false, false),
            ("*?", "日本", false, true),
            ("*本", "日本", false, true),
            ("*?本", "日本", false, true),
            ("*??本", "日本", false, false),
            ("b/*", "b/k/with/slashes", false, true),
            ("b/?", "b/", false, false),
        ];
        for (i, &(pattern, text, fold, want)) in rows.iter().enumerate() {
            assert_eq!(
                matches(pattern, text, fold),
                want,
                "row {i}: `{pattern}` vs `{text}`"
            );
            // The compiled forms agree with the general matcher.
            assert_eq!(
                Glob::new(pattern).matches(text, fold),
                want,
                "row {i} compiled: `{pattern}` vs `{text}`"
            );
        }
    }

    /// A slow, obviously correct reference: recursion over characters.
    fn reference(p: &[char], t: &[char], fold: bool) -> bool {
        match (p.split_first(), t.split_first()) {
            (None, _) => t.is_empty(),
            (Some(('*', rest)), _) => {
                reference(rest, t, fold) || (!t.is_empty() && reference(p, &t[1..], fold))
            }
            (Some(_), None) => false,
            (Some(('?', rest)), Some((_, trest))) => reference(rest, trest, fold),
            (Some((pc, rest)), Some((tc, trest))) => {
                let tc = if fold { tc.to_ascii_lowercase() } else { *tc };
                *pc == tc && reference(rest, trest, fold)
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_reference(p in "[ab*?é]{0,7}", t in "[abAé]{0,8}", fold in proptest::bool::ANY) {
            let pc: Vec<char> = p.chars().collect();
            let tc: Vec<char> = t.chars().collect();
            let want = reference(&pc, &tc, fold);
            proptest::prop_assert_eq!(matches(&p, &t, fold), want);
            proptest::prop_assert_eq!(Glob::new(&p).matches(&t, fold), want);
        }
    }
}

#[cfg(test)]
mod could_match_tests {
    use super::could_match;

    #[test]
    fn unknown_characters_match_anything_one_at_a_time() {
        for (pattern, template, want) in [
            ("secret:db-??????", "secret:db-??????", true),
            ("secret:db-AbCdEf", "secret:db-??????", true),
            ("secret:db-AbCdEf", "secret:dc-??????", false),
            ("secret:db-AbCdE", "secret:db-??????", false),
            ("secret:db-*", "secret:db-??????", true),
            ("secret:*-prod-*", "secret:db-??????", true),
            ("secret:other", "secret:db-??????", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a*", "b??", false),
        ] {
            assert_eq!(
                could_match(pattern, template),
                want,
                "{pattern} / {template}"
            );
        }
    }
}
