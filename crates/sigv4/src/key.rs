//! Secrets, the grant lookup seam, SigV4 key derivation and the time formats SigV4 uses.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use time::{Month, OffsetDateTime, PrimitiveDateTime, UtcOffset};

type HmacSha256 = hmac::Hmac<Sha256>;

/// A grant's secret access key. `Debug` redacts it. Shared, not copied, when cloned.
#[derive(Clone)]
pub struct SigningSecret(Arc<str>);

impl SigningSecret {
    /// Wraps a secret access key.
    pub fn new(secret_access_key: impl Into<Arc<str>>) -> Self {
        Self(secret_access_key.into())
    }

    /// The secret itself, for deriving signing keys.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(** redacted **)")
    }
}

/// Finds the secret for an access key id (the grant store lives elsewhere).
/// Implemented for closures `Fn(&str) -> Option<SigningSecret>`.
pub trait SecretLookup {
    /// The secret of `access_key_id`, or `None` if no grant has that key.
    fn secret(&self, access_key_id: &str) -> Option<SigningSecret>;
}

impl<F> SecretLookup for F
where
    F: Fn(&str) -> Option<SigningSecret>,
{
    fn secret(&self, access_key_id: &str) -> Option<SigningSecret> {
        self(access_key_id)
    }
}

/// A derived SigV4 signing key (`kSigning`) for one date, region and service. `Debug`
/// redacts it.
#[derive(Clone)]
pub struct SigningKey([u8; 32]);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(** redacted **)")
    }
}

impl SigningKey {
    /// Derives `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
    /// `date` is `YYYYMMDD`.
    pub fn derive(secret: &SigningSecret, date: &str, region: &str, service: &str) -> Self {
        Self::derive_from(&secret.0, date, region, service)
    }

    fn derive_from(secret: &str, date: &str, region: &str, service: &str) -> Self {
        let mut k = Vec::with_capacity(4 + secret.len());
        k.extend_from_slice(b"AWS4");
        k.extend_from_slice(secret.as_bytes());
        let k_date = hmac(&k, date.as_bytes());
        let k_region = hmac(&k_date, region.as_bytes());
        let k_service = hmac(&k_region, service.as_bytes());
        Self(hmac(&k_service, b"aws4_request"))
    }

    /// [`SigningKey::derive`], remembered per thread: the same grant signs many
    /// requests with the same key each day, and the derivation is four HMACs.
    ///
    /// The key is a pure function of the four inputs, and a SHA-256 of them (each
    /// length-prefixed, so no two tuples collide by concatenation) is the cache key: a
    /// remembered key is never stale (a revoked grant is refused before its secret is
    /// looked up), and the cache holds no secret in the clear. Per thread, so no lock;
    /// emptied when it passes 256 keys.
    pub fn derive_cached(secret: &SigningSecret, date: &str, region: &str, service: &str) -> Self {
        Self::derive_cached_from(&secret.0, date, region, service)
    }

    /// [`SigningKey::derive_cached`] for a secret held elsewhere (the upstream credentials).
    pub(crate) fn derive_cached_from(
        secret: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> Self {
        thread_local! {
            static DERIVED: RefCell<HashMap<[u8; 32], SigningKey>> = RefCell::new(HashMap::new());
        }
        let mut name = Sha256::new();
        for part in [secret, date, region, service] {
            name.update((part.len() as u64).to_be_bytes());
            name.update(part.as_bytes());
        }
        let name: [u8; 32] = name.finalize().into();
        DERIVED.with(|cell| {
            let Ok(mut keys) = cell.try_borrow_mut() else {
                return Self::derive_from(secret, date, region, service);
            };
            if let Some(k) = keys.get(&name) {
                return k.clone();
            }
            let k = Self::derive_from(secret, date, region, service);
            if keys.len() >= 256 {
                keys.clear();
            }
            keys.insert(name, k.clone());
            k
        })
    }

    /// `HMAC-SHA256(key, data)`.
    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        hmac(&self.0, data)
    }
}

pub(crate) fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this never fails; the fallback keeps us panic-free.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex32(&sha256(data))
}

/// Lower-case hex of a 32-byte digest (table-driven: this runs several times per request).
pub fn hex32(d: &[u8; 32]) -> String {
    let mut out = Vec::with_capacity(64);
    push_hex32(&mut out, d);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the lower-case hex of a 32-byte digest.
fn push_hex32(out: &mut Vec<u8>, d: &[u8; 32]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in d {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// The credential scope `date/region/service/aws4_request` (`date` is `YYYYMMDD`).
pub fn credential_scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

/// A request's string to sign: the algorithm, the request time, the credential scope and
/// the hex SHA-256 of the canonical request, a line each. One buffer: it is built twice
/// for every proxied request (the check and the re-signing).
pub(crate) fn request_string_to_sign(
    amz_date: &str,
    scope: &str,
    canonical_request: &[u8],
) -> Vec<u8> {
    let mut sts = Vec::with_capacity(19 + amz_date.len() + scope.len() + 64);
    sts.extend_from_slice(b"AWS4-HMAC-SHA256\n");
    sts.extend_from_slice(amz_date.as_bytes());
    sts.push(b'\n');
    sts.extend_from_slice(scope.as_bytes());
    sts.push(b'\n');
    push_hex32(&mut sts, &sha256(canonical_request));
    sts
}

/// `sha256("")` in hex.
pub(crate) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Formats `t` as SigV4's `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(t: SystemTime) -> String {
    let t = OffsetDateTime::from(t).to_offset(UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses SigV4's `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let day = u8::try_from(num(6..8)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let tod = time::Time::from_hms(
        u8::try_from(num(9..11)?).ok()?,
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(13..15)?).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, tod).assume_utc().into())
}

/// Parses an HTTP `Date` header (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    PrimitiveDateTime::parse(s.trim(), &fmt)
        .ok()
        .map(|t| t.assume_utc().into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn amz_date_round_trips() {
        let t = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        assert!(parse_amz_date("2015083OT123600Z").is_none());
        assert!(parse_amz_date("20151330T123600Z").is_none());
        let d = parse_http_date("Sun, 30 Aug 2015 12:36:00 GMT").unwrap();
        assert_eq!(d, t);
    }

    #[test]
    fn secret_debug_redacts() {
        let s = SigningSecret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn cached_keys_equal_derived_keys_for_every_input() {
        let a = SigningSecret::new("secret-a");
        let b = SigningSecret::new("secret-b");
        let cases = [
            (&a, "20261122", "us-east-1", "s3"),
            (&b, "20261122", "us-east-1", "s3"),
            (&a, "20261123", "us-east-1", "s3"),
            (&a, "20261122", "eu-west-1", "s3"),
            (&a, "20261122", "us-east-1", "sts"),
            // Same concatenation, different parts.
            (&a, "20261122", "us-east-1s", "3"),
        ];
        for _ in 0..2 {
            for (secret, date, region, service) in cases {
                assert_eq!(
                    SigningKey::derive_cached(secret, date, region, service).0,
                    SigningKey::derive(secret, date, region, service).0,
                    "{date} {region} {service}"
                );
            }
        }
        // Past the bound it starts again, still right.
        for i in 0..300 {
            let region = format!("r{i}");
            assert_eq!(
                SigningKey::derive_cached(&a, "20261122", &region, "s3").0,
                SigningKey::derive(&a, "20261122", &region, "s3").0
            );
        }
    }
}
