//! Deterministic mappings from Custody's identifiers to what STS accepts.
//!
//! STS restricts `SourceIdentity` and `RoleSessionName` to `[\w+=,.@-]`, 2–64 characters,
//! and session tag values to `[\p{L}\p{Z}\p{N}_.:/=+\-@]`, at most 256 characters. Agent
//! identities such as `agent:report-bot` do not fit, so the broker escapes them:
//!
//! 1. Characters in the safe set pass unchanged: ASCII letters and digits and `_ + , . @ -`
//!    for identities and session names; ASCII letters and digits and `_ . : / + - @` for tag
//!    values.
//! 2. Every other character, including `=` itself, becomes `=XX` per UTF-8 byte (uppercase
//!    hex): `agent:report-bot` → `agent=3Areport-bot`, `a=b` → `a=3Db`, `é` → `=C3=A9`.
//!    The escape is reversible, so distinct inputs give distinct outputs, and `:` can never
//!    form the reserved `aws:` prefix.
//! 3. A result shorter than 2 characters (identities, session names) is padded with `=`:
//!    `a` → `a=`, the empty string → `==`. An escape is always `=` plus two hex digits, so
//!    padding cannot be confused with one.
//! 4. A result longer than the limit is cut and ends in `==` plus the 16 lowercase hex
//!    digits of the input's 64-bit FNV-1a hash, exactly filling the limit. `==` never
//!    occurs in an untruncated result of that length, so a truncated value cannot equal an
//!    untruncated one; two truncated values collide only if their prefixes and hashes do.

/// Longest `SourceIdentity` / `RoleSessionName` STS accepts.
pub const MAX_IDENTITY_LEN: usize = 64;
/// Longest session tag value STS accepts.
pub const MAX_TAG_VALUE_LEN: usize = 256;

/// `s` as an STS `SourceIdentity` (see the module docs for the mapping).
pub fn source_identity(s: &str) -> String {
    identity_like(s)
}

/// `s` (a grant id) as an STS `RoleSessionName` (see the module docs for the mapping).
pub fn session_name(s: &str) -> String {
    identity_like(s)
}

/// `s` as an STS session tag value (see the module docs for the mapping).
pub fn tag_value(s: &str) -> String {
    let escaped = escape(s, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '+' | '-' | '@')
    });
    fit(s, escaped, MAX_TAG_VALUE_LEN)
}

fn identity_like(s: &str) -> String {
    let mut out = escape(s, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | ',' | '.' | '@' | '-')
    });
    while out.len() < 2 {
        out.push('=');
    }
    fit(s, out, MAX_IDENTITY_LEN)
}

fn escape(s: &str, safe: impl Fn(char) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if safe(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push('=');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
    out
}

/// Cut `escaped` (pure ASCII) to `limit` with a hash of the original `input` if needed.
fn fit(input: &str, mut escaped: String, limit: usize) -> String {
    if escaped.len() <= limit {
        return escaped;
    }
    let suffix = format!("=={:016x}", fnv1a64(input.as_bytes()));
    escaped.truncate(limit - suffix.len());
    escaped.push_str(&suffix);
    escaped
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_identity(s: &str) -> bool {
        (2..=64).contains(&s.len())
            && s.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
            })
    }

    #[test]
    fn agent_identities_map_readably() {
        assert_eq!(source_identity("agent:report-bot"), "agent=3Areport-bot");
        assert_eq!(source_identity("report-bot"), "report-bot");
        assert_eq!(source_identity("a=b"), "a=3Db");
        assert_eq!(source_identity("é"), "=C3=A9");
        assert_eq!(source_identity("a"), "a=");
        assert_eq!(source_identity(""), "==");
        assert!(!source_identity("aws:x").starts_with("aws:"));
    }

    #[test]
    fn mapping_is_injective_on_confusable_inputs() {
        let inputs = [
            "a:b", "a=3Ab", "a_b", "a b", "a=", "a", "", "=", "==", "a=3A",
        ];
        let mut seen = std::collections::BTreeSet::new();
        for i in inputs {
            assert!(seen.insert(source_identity(i)), "collision for {i:?}");
        }
    }

    #[test]
    fn long_inputs_are_cut_with_a_hash() {
        let long = "agent:".repeat(30);
        let a = source_identity(&long);
        assert_eq!(a.len(), 64);
        assert!(valid_identity(&a));
        assert!(a.contains("=="));
        let mut other = long.clone();
        other.push('x');
        assert_ne!(a, source_identity(&other));
        let t = tag_value(&"ü".repeat(200));
        assert_eq!(t.len(), 256);
    }

    #[test]
    fn outputs_always_fit_sts_charsets() {
        let samples = [
            "agent:report-bot",
            "",
            "x",
            "ünïcödé / spaces and \"quotes\"",
            "aws:reserved",
            "g-01HZY3K5",
            &"z".repeat(100),
        ];
        for s in samples {
            assert!(valid_identity(&source_identity(s)), "{s:?}");
            assert!(valid_identity(&session_name(s)), "{s:?}");
            let t = tag_value(s);
            assert!(t.len() <= 256);
            assert!(t.chars().all(|c| c.is_ascii_alphanumeric()
                || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')));
        }
        assert_eq!(tag_value("task 7: weekly"), "task=207:=20weekly");
        assert_eq!(tag_value("g-1"), "g-1");
    }
}
