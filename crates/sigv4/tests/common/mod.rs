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
