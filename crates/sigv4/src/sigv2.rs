//! SigV2 presigned S3 URLs: `…?AWSAccessKeyId=…&Expires=…&Signature=…`, what boto3's
//! `generate_presigned_url` and `aws s3 presign` make unless told to use SigV4.
//!
//! Only `GET` and `HEAD` (reading an object through a shared link) are accepted; the URL is
//! checked the way S3 checks it (HMAC-SHA1 with the grant's secret over the string to sign
//! of the S3 REST authentication guide: method, `Content-MD5`, `Content-Type`, `Expires`, the
//! `x-amz-*` headers, the resource with its sub-resources), `Expires` is enforced (and
//! capped by the grant's expiry), and the request is then re-signed with SigV4 like any
//! other: nothing SigV2 leaves the gateway. Header-authenticated SigV2 stays refused.
//!
//! Written by hand: SigV2 is a deprecated scheme no maintained crate verifies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use http::request::Parts;
use percent_encoding::percent_decode_str;
use sha1::Sha1;
use subtle::ConstantTimeEq as _;

use crate::error::AuthError;
use crate::key::{SecretLookup, SigningKey, format_amz_date};
use crate::verify::{Verified, VerifyOptions};

/// The query parameters of a SigV2 presigned URL (dropped when re-signing).
pub(crate) const SIGV2_PARAMS: [&str; 3] = ["AWSAccessKeyId", "Expires", "Signature"];

/// The region a SigV2 request (which names none) is forwarded to and re-signed for.
pub const SIGV2_REGION: &str = "us-east-1";

/// Sub-resources and response overrides that the SigV2 string to sign covers: botocore's
/// `HmacV1Auth.QSAOfInterest`, which is what SigV2 clients sign.
const SUBRESOURCES: [&str; 35] = [
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// Listing parameters SigV2 does not sign (S3 reads them unsigned too): a URL holder may
/// change them, within the operation and bucket the signature names.
const UNSIGNED_LISTING: [&str; 16] = [
    "continuation-token",
    "delimiter",
    "encoding-type",
    "fetch-owner",
    "key-marker",
    "list-type",
    "marker",
    "max-keys",
    "max-parts",
    "max-uploads",
    "part-number-marker",
    "prefix",
    "start-after",
    "upload-id-marker",
    "version-id-marker",
    "x-id",
];

/// `query` without the SigV2 presign parameters (as raw `&`-separated pieces, each kept
/// byte for byte): what a SigV2-verified request is classified and forwarded with.
pub fn strip_params(query: &str) -> String {
    query
        .split('&')
        .filter(|piece| {
            let key = piece.split_once('=').map_or(*piece, |(k, _)| k);
            let key = percent_decode_str(key).decode_utf8_lossy();
            !SIGV2_PARAMS.contains(&key.as_ref())
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether the request carries SigV2 presign parameters.
pub(crate) fn is_presigned_v2(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "AWSAccessKeyId")
}

/// Verifies a SigV2 presigned S3 request; the result is re-signed with SigV4 as usual.
pub(crate) fn verify_presigned(
    parts: &Parts,
    lookup: &impl SecretLookup,
    now: SystemTime,
    options: &VerifyOptions,
) -> Result<Verified, AuthError> {
    if parts.method != http::Method::GET && parts.method != http::Method::HEAD {
        return Err(AuthError::NotImplemented(format!(
            "signature version 2 is accepted for presigned GET and HEAD only, not {}: sign with SigV4 (boto3: `Config(signature_version=\"s3v4\")`)",
            parts.method
        )));
    }
    let query = parts.uri.query().unwrap_or_default();
    let one = |name: &str| -> Result<String, AuthError> {
        let mut values = form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == name);
        match (values.next(), values.next()) {
            (Some((_, v)), None) => Ok(v.into_owned()),
            (None, _) => Err(AuthError::IncompleteSignature(format!(
                "signature version 2 query without `{name}`"
            ))),
            (Some(_), Some(_)) => Err(AuthError::IncompleteSignature(format!(
                "`{name}` appears more than once"
            ))),
        }
    };
    let access_key_id = one("AWSAccessKeyId")?;
    let expires_text = one("Expires")?;
    let signature = one("Signature")?;
    let expires: u64 = expires_text.parse().map_err(|_| {
        AuthError::IncompleteSignature(format!("`Expires={expires_text}` is not a time"))
    })?;
    // Every other parameter is one the signature covers, or a listing parameter S3 leaves
    // unsigned too; anything else (a sub-resource this list does not know, an `x-amz-*`
    // parameter) would reach the upstream unsigned: refused. Names are compared decoded,
    // as the classifier and S3 read them.
    for (key, _) in form_urlencoded::parse(query.as_bytes()) {
        let key = key.as_ref();
        if !(SIGV2_PARAMS.contains(&key)
            || SUBRESOURCES.contains(&key)
            || UNSIGNED_LISTING.contains(&key))
        {
            return Err(AuthError::NotImplemented(format!(
                "query parameter `{key}` is not covered by a signature version 2 presigned URL: sign with SigV4 (boto3: `Config(signature_version=\"s3v4\")`)"
            )));
        }
    }
    let secret = lookup
        .secret(&access_key_id)
        .ok_or_else(|| AuthError::UnknownAccessKey(short(&access_key_id).to_owned()))?;

    let given = base64::engine::general_purpose::STANDARD
        .decode(signature.as_bytes())
        .unwrap_or_default();
    let matches = |resource_path: &str| -> Result<bool, AuthError> {
        let expected = sign(
            &string_to_sign(parts, resource_path, &expires_text)?,
            secret.expose(),
        );
        Ok(bool::from(given.ct_eq(&expected)))
    };
    // A bucket's resource is `/bucket/` to botocore (and virtual-hosted S3), `/bucket` as
    // a path-style request spells it: either names the same bucket.
    let path = parts.uri.path();
    let bucket_only = path.len() > 1 && !path[1..].contains('/');
    let signed = matches(path)? || (bucket_only && matches(&format!("{path}/"))?);
    if !signed {
        return Err(AuthError::SignatureDoesNotMatch {
            access_key_id: access_key_id.clone(),
        });
    }
    // Checked: a hostile `Expires` far past any representable time is refused, not a panic.
    let mut expires_at = UNIX_EPOCH
        .checked_add(Duration::from_secs(expires))
        .ok_or_else(|| {
            AuthError::IncompleteSignature(format!("`Expires={expires}` is out of range"))
        })?;
    if now > expires_at {
        return Err(AuthError::PresignExpired {
            expired_at: format_amz_date(expires_at),
        });
    }
    if let Some(cap) = options.not_after {
        if now > cap {
            return Err(AuthError::PresignExpired {
                expired_at: format_amz_date(cap),
            });
        }
        expires_at = expires_at.min(cap);
    }
    let amz_date = format_amz_date(now);
    let signing_key = SigningKey::derive_cached(&secret, &amz_date[..8], SIGV2_REGION, "s3");
    Ok(Verified::new_sigv2(
        access_key_id,
        now,
        amz_date,
        expires_at,
        signature,
        signing_key,
        options,
    ))
}

/// `METHOD\nContent-MD5\nContent-Type\nExpires\n{x-amz-* headers}{resource}`.
fn string_to_sign(parts: &Parts, path: &str, expires: &str) -> Result<String, AuthError> {
    let header = |name: &str| -> Result<String, AuthError> {
        match parts.headers.get(name) {
            None => Ok(String::new()),
            Some(v) => v
                .to_str()
                .map(str::to_owned)
                .map_err(|_| AuthError::IncompleteSignature(format!("`{name}` is not ascii"))),
        }
    };
    let mut out = format!(
        "{}\n{}\n{}\n{expires}\n",
        parts.method,
        header("content-md5")?,
        header("content-type")?
    );
    let mut amz: Vec<(String, String)> = Vec::new();
    for (name, value) in &parts.headers {
        let name = name.as_str();
        if name.starts_with("x-amz-") {
            let value = value
                .to_str()
                .map_err(|_| AuthError::IncompleteSignature(format!("`{name}` is not ascii")))?
                .trim()
                .to_owned();
            match amz.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => {
                    v.push(',');
                    v.push_str(&value);
                }
                None => amz.push((name.to_owned(), value)),
            }
        }
    }
    amz.sort();
    for (name, value) in amz {
        out.push_str(&format!("{name}:{value}\n"));
    }
    // The path as sent (path-style: `/bucket/key`, percent-encoded as the client sent it).
    out.push_str(path);
    let mut subs: Vec<(String, Option<String>)> = Vec::new();
    for piece in parts.uri.query().unwrap_or_default().split('&') {
        let (k, v) = match piece.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (piece, None),
        };
        // Decoded, as S3 and the classifier read the name (`version%49d` is `versionId`).
        let k = percent_decode_str(k).decode_utf8_lossy();
        if SUBRESOURCES.contains(&k.as_ref()) {
            let v = v.map(|v| percent_decode_str(v).decode_utf8_lossy().into_owned());
            subs.push((k.into_owned(), v));
        }
    }
    subs.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (k, v)) in subs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        if let Some(v) = v {
            out.push('=');
            out.push_str(v);
        }
    }
    Ok(out)
}

fn sign(string_to_sign: &str, secret: &str) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret.as_bytes()) else {
        return Vec::new();
    };
    mac.update(string_to_sign.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn short(s: &str) -> &str {
    s.get(..s.len().min(32)).unwrap_or(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str) -> Parts {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn check(method: &str, uri: &str, at: u64) -> Result<Verified, AuthError> {
        let lookup =
            |k: &str| (k == "AKIAIOSFODNN7EXAMPLE").then(|| crate::key::SigningSecret::new(SECRET));
        let now = UNIX_EPOCH + Duration::from_secs(at);
        verify_presigned(&parts(method, uri), &lookup, now, &VerifyOptions::default())
    }

    /// URLs signed by botocore's own `HmacV1QueryAuth` (an implementation independent of
    /// this one), with `Expires=1141889120`.
    const BOTOCORE: [&str; 2] = [
        "/awsexamplebucket1/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=mi%2Bpm7K7iCx46UlaDc8X8pxyzFc%3D&Expires=1141889120",
        "/b/a%20b/k?versionId=3&response-content-type=text%2Fplain&prefix=1&AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NTI61g9SVD%2BSaGw0u%2FDc9hENQ%2Fk%3D&Expires=1141889120",
    ];

    #[test]
    fn urls_botocore_signs_verify_and_nothing_else_does() {
        for uri in BOTOCORE {
            let v = check("GET", uri, 1_141_889_000).unwrap();
            assert!(v.sigv2 && v.presigned, "{uri}");
            assert_eq!(v.access_key_id, "AKIAIOSFODNN7EXAMPLE");
            // Expired: refused, as S3 would.
            assert!(matches!(
                check("GET", uri, 1_141_889_121),
                Err(AuthError::PresignExpired { .. })
            ));
            // Another method, a changed path or sub-resource, another expiry: refused.
            assert!(check("DELETE", uri, 1_141_889_000).is_err());
            assert!(matches!(
                check(
                    "GET",
                    &uri.replacen("/k?", "/K?", 1).replacen(".jpg", ".png", 1),
                    1_141_889_000
                ),
                Err(AuthError::SignatureDoesNotMatch { .. })
            ));
            assert!(matches!(
                check(
                    "GET",
                    &uri.replace("Expires=1141889120", "Expires=1141889999"),
                    1_141_889_000
                ),
                Err(AuthError::SignatureDoesNotMatch { .. })
            ));
        }
        assert!(matches!(
            check(
                "GET",
                &BOTOCORE[1].replace("versionId=3", "versionId=4"),
                1_141_889_000
            ),
            Err(AuthError::SignatureDoesNotMatch { .. })
        ));
        // A listing parameter is not signed (by S3 either): changing it keeps the signature.
        assert!(
            check(
                "GET",
                &BOTOCORE[1].replace("prefix=1", "prefix=2"),
                1_141_889_000
            )
            .is_ok()
        );
        // A parameter neither signed nor a listing parameter: refused (it would reach S3
        // unsigned), whatever the signature.
        assert!(matches!(
            check(
                "GET",
                &BOTOCORE[1].replace("prefix=1", "x=1"),
                1_141_889_000
            ),
            Err(AuthError::NotImplemented(_))
        ));
        // A sub-resource spelled encoded is the sub-resource: signed as such, so adding
        // one to a URL that did not sign it fails.
        assert!(matches!(
            check(
                "GET",
                &format!("{}&version%49d=OLD", BOTOCORE[0]),
                1_141_889_000
            ),
            Err(AuthError::SignatureDoesNotMatch { .. })
        ));
        for added in [
            "&legal-hold",
            "&x-amz-request-payer=requester",
            "&retention",
        ] {
            assert!(
                check("GET", &format!("{}{added}", BOTOCORE[0]), 1_141_889_000).is_err(),
                "{added}"
            );
        }
        // A key no grant has.
        assert!(matches!(
            check(
                "GET",
                &BOTOCORE[0].replace("AKIAIOSFODNN7EXAMPLE", "AKIDOTHER"),
                1_141_889_000
            ),
            Err(AuthError::UnknownAccessKey(_))
        ));
        // An `Expires` past any representable time: refused (before the signature even
        // matters), never a panic.
        assert!(
            check(
                "GET",
                &BOTOCORE[0].replace("Expires=1141889120", "Expires=18446744073709551615"),
                1_141_889_000
            )
            .is_err()
        );
        // Twice the same parameter: refused, whatever the values.
        assert!(
            check(
                "GET",
                &format!("{}&Expires=1141889120", BOTOCORE[0]),
                1_141_889_000
            )
            .is_err()
        );
    }

    #[test]
    fn a_bucket_signed_as_botocore_signs_it_verifies() {
        // botocore's presigned `list_objects_v2` (key `AKIDX`, secret `s`): the resource it
        // signs is `/reports/`, the path it sends `/reports`.
        let lookup = |k: &str| (k == "AKIDX").then(|| crate::key::SigningSecret::new("s"));
        let uri = "/reports?list-type=2&encoding-type=url&AWSAccessKeyId=AKIDX&Signature=xvICRZKKeYf0Gdn6xGrRThUK%2F4c%3D&Expires=1796699959";
        let now = UNIX_EPOCH + Duration::from_secs(1_796_699_000);
        let opts = VerifyOptions::default();
        assert!(verify_presigned(&parts("GET", uri), &lookup, now, &opts).is_ok());
        let other = uri.replace("/reports?", "/report?");
        assert!(verify_presigned(&parts("GET", &other), &lookup, now, &opts).is_err());
    }

    #[test]
    fn its_parameters_are_stripped_for_classification_and_forwarding() {
        assert_eq!(
            strip_params("versionId=3&AWSAccessKeyId=A&Signature=s%3D&Expires=1&x=1"),
            "versionId=3&x=1"
        );
        assert_eq!(strip_params("AWSAccessKey%49d=A&Expires=1&Signature=s"), "");
    }
}
