//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a subset")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::time::SystemTime;

use custody_sigv4::key::{SigningSecret, parse_amz_date};

/// Builds request parts from a method, a path-and-query and headers (in order, duplicates
/// appended).
pub fn parts(method: &str, target: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().method(method).uri(target);
    for (k, v) in headers {
        b = b.header(*k, http::HeaderValue::from_bytes(v.as_bytes()).unwrap());
    }
    b.body(()).unwrap().into_parts().0
}

/// A lookup that knows exactly one key.
pub fn one_key(akid: &'static str, secret: &'static str) -> impl Fn(&str) -> Option<SigningSecret> {
    move |k: &str| (k == akid).then(|| SigningSecret::new(secret))
}

/// `YYYYMMDDTHHMMSSZ` to `SystemTime`.
pub fn at(amz: &str) -> SystemTime {
    parse_amz_date(amz).unwrap()
}

/// Percent-encodes the bytes an `http::Uri` would refuse (space, non-ASCII), as a server
/// would see them on the wire.
pub fn wire_target(raw: &str) -> String {
    let mut out = String::new();
    for &b in raw.as_bytes() {
        if b == b' ' || b >= 0x80 {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// Re-signs `parts` both ways, with the crate's own head signing ([`resign`]) and with
/// `aws-sigv4` ([`resign_with_aws_sigv4`]), and returns a description of the first difference
/// (signature, path and query, or any header name or value), or `None` when they agree byte for
/// byte (both failing counts as agreeing).
///
/// [`resign`]: custody_sigv4::resign::resign
/// [`resign_with_aws_sigv4`]: custody_sigv4::resign::resign_with_aws_sigv4
pub fn resign_difference(
    parts: &http::request::Parts,
    verified: &custody_sigv4::verify::Verified,
    target: &custody_sigv4::resign::UpstreamTarget,
    creds: &aws_credential_types::Credentials,
    now: SystemTime,
) -> Option<String> {
    use custody_sigv4::resign::{resign, resign_with_aws_sigv4};
    let ours = resign(parts, verified, target, creds, now);
    let theirs = resign_with_aws_sigv4(parts, verified, target, creds, now);
    let (ours, theirs) = match (ours, theirs) {
        (Ok(o), Ok(t)) => (o, t),
        (Err(_), Err(_)) => return None,
        (o, t) => {
            return Some(format!(
                "one failed: ours {:?}, aws-sigv4 {:?}",
                o.err(),
                t.err()
            ));
        }
    };
    if ours.path_and_query != theirs.path_and_query {
        return Some(format!(
            "path and query: {} vs {}",
            ours.path_and_query, theirs.path_and_query
        ));
    }
    let list = |h: &http::HeaderMap| {
        let mut v: Vec<(String, Vec<u8>)> = h
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        v.sort();
        v
    };
    let (o, t) = (list(&ours.headers), list(&theirs.headers));
    if o != t {
        let show = |v: &[(String, Vec<u8>)]| {
            v.iter()
                .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v)))
                .collect::<Vec<_>>()
                .join("\n  ")
        };
        return Some(format!(
            "headers:\n  {}\nvs aws-sigv4:\n  {}",
            show(&o),
            show(&t)
        ));
    }
    if ours.signature != theirs.signature {
        return Some(format!(
            "signature {} vs {}",
            ours.signature, theirs.signature
        ));
    }
    None
}
