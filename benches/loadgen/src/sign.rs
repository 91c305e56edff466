//! SigV4 signing as an agent's SDK does it: per request, with the current time, a
//! path-style S3 URL and `x-amz-content-sha256`.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderName, HeaderValue, Request};

/// The SHA-256 of an empty body, what a GET is signed with.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The payload marker for a body the signature does not cover.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Who signs, and for which region and service.
#[derive(Clone)]
pub struct Signer {
    identity: Identity,
    region: String,
    service: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for `access_key_id`/`secret` in `region` for `service` (`s3`).
    pub fn new(access_key_id: &str, secret: &str, region: &str, service: &str) -> Self {
        let creds = Credentials::new(access_key_id, secret, None, None, "custody-loadgen");
        Self {
            identity: creds.into(),
            region: region.to_owned(),
            service: service.to_owned(),
        }
    }

    /// Adds `host`, `x-amz-date`, `x-amz-content-sha256` and `authorization` to `req`,
    /// signed at `now` for the body hash `payload` (hex, or [`UNSIGNED_PAYLOAD`]).
    pub fn sign<B>(
        &self,
        req: &mut Request<B>,
        authority: &str,
        payload: &str,
        now: SystemTime,
    ) -> Result<(), String> {
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let body = if payload == UNSIGNED_PAYLOAD {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Precomputed(payload.to_owned())
        };
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let url = format!("http://{authority}{path}");
        let headers = [("host", authority)];
        let signable = SignableRequest::new(req.method().as_str(), url, headers.into_iter(), body)
            .map_err(|e| format!("signable request: {e}"))?;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(&self.service)
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| format!("signing params: {e}"))?;
        let (instructions, _signature) = sign(signable, &params.into())
            .map_err(|e| format!("signing: {e}"))?
            .into_parts();
        let (new_headers, _query) = instructions.into_parts();
        let map = req.headers_mut();
        map.insert(
            http::header::HOST,
            HeaderValue::from_str(authority).map_err(|e| format!("host: {e}"))?,
        );
        for h in new_headers {
            let value = HeaderValue::from_str(h.value())
                .map_err(|e| format!("header `{}`: {e}", h.name()))?;
            map.insert(HeaderName::from_static(h.name()), value);
        }
        Ok(())
    }
}
