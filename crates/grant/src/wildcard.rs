//! IAM wildcard matching: `*` matches any run of characters (including none), `?` matches
//! exactly one character. No other character is special and there is no escaping, as in IAM.

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
    use super::matches;

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
        }
    }
}
