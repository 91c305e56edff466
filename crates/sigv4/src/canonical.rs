//! SigV4 canonical forms: URI path, query string and headers, rebuilt from the request
//! exactly as the client sent it.

use std::borrow::Cow;

use http::HeaderMap;

/// How the canonical URI path is derived from the raw path the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathCanonicalization {
    /// Percent-encode the (already encoded) path a second time, as every service but S3 does.
    pub double_encode: bool,
    /// Remove `.`/`..` segments and collapse `//`, as every service but S3 does.
    pub normalize: bool,
}

impl PathCanonicalization {
    /// S3 family: single encoding, no normalisation.
    pub const S3: Self = Self {
        double_encode: false,
        normalize: false,
    };
    /// Every other service: double encoding and normalisation.
    pub const DEFAULT: Self = Self {
        double_encode: true,
        normalize: true,
    };

    /// The rule for a signing name.
    pub fn for_service(signing_name: &str) -> Self {
        if is_s3_family(signing_name) {
            Self::S3
        } else {
            Self::DEFAULT
        }
    }
}

/// Whether a signing name belongs to the S3 family (single encoding, no normalisation,
/// `x-amz-content-sha256` signed).
pub fn is_s3_family(signing_name: &str) -> bool {
    matches!(
        signing_name,
        "s3" | "s3-object-lambda" | "s3express" | "s3-outposts"
    )
}

/// The canonical URI for `raw_path` (the path exactly as received, still percent-encoded).
/// Borrowed when it is the path as sent (S3).
pub fn canonical_path(raw_path: &str, rule: PathCanonicalization) -> Cow<'_, str> {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    let path: Cow<'_, str> = if rule.normalize {
        Cow::Owned(normalize_path(path))
    } else {
        Cow::Borrowed(path)
    };
    if !rule.double_encode {
        return path;
    }
    let mut out = String::with_capacity(path.len() + 8);
    for &b in path.as_bytes() {
        if b == b'/' || is_unreserved(b) {
            out.push(char::from(b));
        } else {
            push_pct(&mut out, b);
        }
    }
    Cow::Owned(out)
}

/// RFC 3986 5.2.4 dot-segment removal plus empty-segment collapsing, the way AWS services
/// (and `aws-sigv4`) normalise paths.
fn normalize_path(path: &str) -> String {
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    if !path.contains('.') && !path.contains("//") {
        return path;
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    let ends_with_slash = ["/", "/.", "/./", "/..", "/../"]
        .iter()
        .any(|s| path.ends_with(s));
    if out.is_empty() || (ends_with_slash && !out.ends_with('/')) {
        out.push('/');
    }
    out
}

/// The canonical query string: every `name[=value]` pair percent-decoded (`+` read as a
/// space when `plus_as_space`), re-encoded with SigV4's rules, sorted on the encoded form and
/// joined with `&`. Pairs whose decoded name equals `skip` are left out (the presigned
/// `X-Amz-Signature`).
pub fn canonical_query(raw_query: &str, plus_as_space: bool, skip: Option<&str>) -> String {
    canonical_query_with(raw_query, plus_as_space, skip, false)
}

/// The canonical query string of an outbound request, exactly as `aws-sigv4` computes it
/// (it reads the query with `form_urlencoded`): `+` is a space, and decoded bytes that are
/// not UTF-8 become U+FFFD before re-encoding. [`canonical_query`] keeps such bytes as sent,
/// which is what the inbound check needs; re-signing must match what the SDKs sign.
pub fn canonical_query_outbound(raw_query: &str) -> String {
    canonical_query_with(raw_query, true, None, true)
}

fn canonical_query_with(
    raw_query: &str,
    plus_as_space: bool,
    skip: Option<&str>,
    lossy_utf8: bool,
) -> String {
    let encode_decoded = |bytes: Vec<u8>| {
        if lossy_utf8 {
            encode(String::from_utf8_lossy(&bytes).as_bytes())
        } else {
            encode(&bytes)
        }
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    for piece in raw_query.split('&') {
        if piece.is_empty() {
            continue;
        }
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let k = decode(k, plus_as_space);
        if skip.is_some_and(|s| s.as_bytes() == k.as_slice()) {
            continue;
        }
        let v = decode(v, plus_as_space);
        pairs.push((encode_decoded(k), encode_decoded(v)));
    }
    pairs.sort_unstable();
    let mut out = String::with_capacity(raw_query.len() + 16);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Percent-decodes `s`; malformed escapes stay literal.
pub(crate) fn decode(s: &str, plus_as_space: bool) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_as_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// SigV4 URI encoding: unreserved bytes as is, everything else `%XX` (upper-case hex).
pub(crate) fn encode(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if is_unreserved(c) {
            out.push(char::from(c));
        } else {
            push_pct(&mut out, c);
        }
    }
    out
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~')
}

fn push_pct(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

/// Appends the canonical value of header `name` (all its values, each trimmed with inner
/// runs of spaces/tabs folded to one space, joined with `,`). Returns false if the request
/// has no such header.
pub(crate) fn push_header_value(
    out: &mut Vec<u8>,
    headers: &HeaderMap,
    name: &str,
    authority: Option<&str>,
) -> bool {
    let mut any = false;
    for v in headers.get_all(name) {
        if any {
            out.push(b',');
        }
        any = true;
        push_trimmed(out, v.as_bytes(), is_inbound_space);
    }
    if !any
        && name == "host"
        && let Some(a) = authority
    {
        push_trimmed(out, a.as_bytes(), is_inbound_space);
        return true;
    }
    any
}

/// Appends the canonical value of outbound header `name` as `aws-sigv4` computes it: every
/// value with leading and trailing spaces cut and inner runs of spaces folded to one (spaces
/// only: tabs are kept, as `aws-sigv4` keeps them), joined with `,`.
pub(crate) fn push_outbound_header_value(out: &mut Vec<u8>, headers: &HeaderMap, name: &str) {
    for (i, v) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_trimmed(out, v.as_bytes(), |c| c == b' ');
    }
}

/// What the inbound check folds as whitespace in header values.
fn is_inbound_space(c: u8) -> bool {
    c == b' ' || c == b'\t' || c == b'\r' || c == b'\n'
}

/// Appends `v` without leading or trailing `is_space` bytes, each inner run folded to one
/// space.
fn push_trimmed(out: &mut Vec<u8>, v: &[u8], is_space: impl Fn(u8) -> bool) {
    let mut pending_space = false;
    let mut started = false;
    for &c in v {
        if is_space(c) {
            pending_space = started;
            continue;
        }
        if pending_space {
            out.push(b' ');
            pending_space = false;
        }
        started = true;
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_path_is_left_alone() {
        let p = "/bucket/a%2Fb//c/../d%20e";
        assert_eq!(canonical_path(p, PathCanonicalization::S3), p);
    }

    #[test]
    fn other_paths_are_normalised_and_double_encoded() {
        let r = PathCanonicalization::DEFAULT;
        assert_eq!(canonical_path("//example//", r), "/example/");
        assert_eq!(canonical_path("/example/..", r), "/");
        assert_eq!(canonical_path("/./", r), "/");
        assert_eq!(canonical_path("", r), "/");
        assert_eq!(canonical_path("/a%3Db", r), "/a%253Db");
        assert_eq!(canonical_path("/a/b/.", r), "/a/b/");
    }

    #[test]
    fn query_rules() {
        assert_eq!(canonical_query("uploads", false, None), "uploads=");
        assert_eq!(canonical_query("b=2&a=1&a=0", false, None), "a=0&a=1&b=2");
        assert_eq!(canonical_query("p=a+b", true, None), "p=a%20b");
        assert_eq!(canonical_query("p=a+b", false, None), "p=a%2Bb");
        assert_eq!(
            canonical_query("p=a%20b&q=%zz", true, None),
            "p=a%20b&q=%25zz"
        );
        assert_eq!(
            canonical_query("X-Amz-Signature=x&a=%7e", false, Some("X-Amz-Signature")),
            "a=~"
        );
        assert_eq!(canonical_query("p=%", false, None), "p=%25");
    }

    #[test]
    fn header_values_are_trimmed_and_joined() {
        let mut h = HeaderMap::new();
        h.append("x", http::HeaderValue::from_static("  a   b  "));
        h.append("x", http::HeaderValue::from_static("c"));
        let mut out = Vec::new();
        assert!(push_header_value(&mut out, &h, "x", None));
        assert_eq!(out, b"a b,c");
    }
}
