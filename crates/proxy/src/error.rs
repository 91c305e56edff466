//! Refusals and how they reach the agent: AWS-shaped errors in the protocol's own format.
//!
//! SDKs decide whether to retry, refresh credentials or fail from the error code and
//! status, so every refusal carries an AWS code the SDK knows, and a message that names the
//! grant, the action and the resource where there is one.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// Why the gateway refused a request, in the terms an AWS SDK understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// The access key id names no grant.
    UnknownAccessKey,
    /// The signature (or a chunk signature, or the body hash) does not match.
    SignatureDoesNotMatch,
    /// `X-Amz-Date` is more than 15 minutes from the gateway's clock.
    RequestTimeTooSkewed,
    /// A presigned URL has expired, or the grant it was made with has.
    ExpiredToken,
    /// The `Authorization` header or presigned query is malformed or missing.
    IncompleteSignature,
    /// The grant does not allow the request (or the request could not be classified).
    AccessDenied,
    /// The request is malformed beyond authentication (body, parameters).
    InvalidRequest,
    /// The request uses a feature the gateway does not support (SigV4a, event streams…).
    NotImplemented,
    /// The gateway cannot record or forward right now (log down, broker down): nothing was
    /// forwarded; the SDK may retry.
    ServiceUnavailable,
    /// Too many requests (a rate limit, or too many unauthenticated bodies in flight):
    /// nothing was forwarded; the SDK retries with backoff.
    Throttled,
    /// The upstream could not be reached after the decision was recorded.
    BadGateway,
}

impl RefusalKind {
    /// A stable name for the class, as the log records it (`UnknownAccessKey`, …).
    pub fn name(self) -> &'static str {
        use RefusalKind::*;
        match self {
            UnknownAccessKey => "UnknownAccessKey",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            RequestTimeTooSkewed => "RequestTimeTooSkewed",
            ExpiredToken => "ExpiredToken",
            IncompleteSignature => "IncompleteSignature",
            AccessDenied => "AccessDenied",
            InvalidRequest => "InvalidRequest",
            NotImplemented => "NotImplemented",
            ServiceUnavailable => "ServiceUnavailable",
            Throttled => "Throttled",
            BadGateway => "BadGateway",
        }
    }
}

/// How the agent's protocol expects errors to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    /// S3's REST-XML: `<Error><Code>…</Code>…</Error>`.
    S3Xml,
    /// Query and EC2 protocols: `<ErrorResponse><Error>…</Error></ErrorResponse>`.
    QueryXml,
    /// awsJson and restJson: `{"__type": …, "message": …}` plus `x-amzn-ErrorType`.
    Json,
}

/// The longest refusal message, in bytes; longer ones are cut.
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// A refusal: what the agent is told and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The class of refusal.
    pub kind: RefusalKind,
    /// One lowercase line saying why, naming grant, action and resource where known.
    pub message: String,
}

/// A response extension: the gateway answered the agent itself after the decision was
/// recorded (no credentials for the grant, the agent's body failed its signature check,
/// the upstream could not be reached), with this message. The outcome entry carries it as
/// its `error`, so the log says why an allowed request got no upstream answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnsweredByGateway(pub String);

impl Refusal {
    /// A refusal of `kind` with `message`.
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Self {
        let mut message = message.into();
        // A message may quote what the agent sent; it goes back to the agent and into the
        // log, so its length is the gateway's choice, not the agent's.
        if message.len() > MAX_MESSAGE_BYTES {
            let mut cut = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("… (cut)");
        }
        Self { kind, message }
    }

    /// The HTTP status for this refusal in `format`.
    pub fn status(&self, format: ErrorFormat) -> StatusCode {
        use RefusalKind::*;
        match (self.kind, format) {
            (ServiceUnavailable, _) => StatusCode::SERVICE_UNAVAILABLE,
            // S3 says SlowDown with 503; JSON and query services throttle with 400.
            (Throttled, ErrorFormat::S3Xml) => StatusCode::SERVICE_UNAVAILABLE,
            (Throttled, _) => StatusCode::BAD_REQUEST,
            (BadGateway, _) => StatusCode::BAD_GATEWAY,
            (NotImplemented, _) => StatusCode::NOT_IMPLEMENTED,
            (InvalidRequest | IncompleteSignature, _) => StatusCode::BAD_REQUEST,
            // JSON services answer client errors with 400, REST-XML and query with 403.
            (_, ErrorFormat::Json) => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// The AWS error code for this refusal in `format`.
    pub fn code(&self, format: ErrorFormat) -> &'static str {
        use RefusalKind::*;
        match (self.kind, format) {
            (UnknownAccessKey, ErrorFormat::S3Xml) => "InvalidAccessKeyId",
            (UnknownAccessKey, ErrorFormat::QueryXml) => "InvalidClientTokenId",
            (UnknownAccessKey, ErrorFormat::Json) => "UnrecognizedClientException",
            (SignatureDoesNotMatch, ErrorFormat::Json) => "InvalidSignatureException",
            (SignatureDoesNotMatch, _) => "SignatureDoesNotMatch",
            (RequestTimeTooSkewed, _) => "RequestTimeTooSkewed",
            (ExpiredToken, ErrorFormat::S3Xml) => "AccessDenied",
            (ExpiredToken, _) => "ExpiredTokenException",
            (IncompleteSignature, ErrorFormat::Json) => "IncompleteSignatureException",
            (IncompleteSignature, _) => "IncompleteSignature",
            (AccessDenied, ErrorFormat::Json) => "AccessDeniedException",
            (AccessDenied, _) => "AccessDenied",
            (InvalidRequest, ErrorFormat::Json) => "ValidationException",
            (InvalidRequest, _) => "InvalidRequest",
            (NotImplemented, _) => "NotImplemented",
            (ServiceUnavailable, ErrorFormat::Json) => "ServiceUnavailableException",
            (ServiceUnavailable, _) => "ServiceUnavailable",
            (Throttled, ErrorFormat::S3Xml) => "SlowDown",
            (Throttled, ErrorFormat::Json) => "ThrottlingException",
            (Throttled, ErrorFormat::QueryXml) => "Throttling",
            (BadGateway, _) => "BadGateway",
        }
    }

    /// Render as a response of the stack's body type.
    pub fn into_response(
        self,
        format: ErrorFormat,
        request_id: &str,
    ) -> Response<crate::body::ProxyBody> {
        self.render(format, request_id).map(crate::body::full)
    }

    /// [`Refusal::into_response`] for a refusal made after the decision was recorded: the
    /// response also carries the message as [`AnsweredByGateway`], for the outcome entry.
    pub fn into_recorded_response(
        self,
        format: ErrorFormat,
        request_id: &str,
    ) -> Response<crate::body::ProxyBody> {
        let message = AnsweredByGateway(self.message.clone());
        let mut response = self.into_response(format, request_id);
        response.extensions_mut().insert(message);
        response
    }

    /// Render as an HTTP response in `format`, tagged with the gateway's `request_id`.
    pub fn render(&self, format: ErrorFormat, request_id: &str) -> Response<Bytes> {
        let status = self.status(format);
        let code = self.code(format);
        let (content_type, body) = match format {
            ErrorFormat::S3Xml => (
                "application/xml",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message><RequestId>{}</RequestId></Error>",
                    xml_escape(&self.message),
                    xml_escape(request_id)
                ),
            ),
            ErrorFormat::QueryXml => (
                "text/xml",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Type>{}</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                    if status.is_server_error() { "Receiver" } else { "Sender" },
                    xml_escape(&self.message),
                    xml_escape(request_id)
                ),
            ),
            ErrorFormat::Json => (
                "application/x-amz-json-1.1",
                serde_json::json!({ "__type": code, "message": self.message, "Message": self.message }).to_string(),
            ),
        };
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert("x-amzn-requestid", v.clone());
            headers.insert("x-amz-request-id", v);
        }
        if format == ErrorFormat::Json {
            headers.insert("x-amzn-errortype", HeaderValue::from_static(code));
        }
        response
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn s3_denial_is_rest_xml_with_escaped_message() {
        let r = Refusal::new(
            RefusalKind::AccessDenied,
            "grant `g1` does not allow `s3:PutObject` on `arn:aws:s3:::b/<x>`",
        );
        let resp: Response<Bytes> = r.render(ErrorFormat::S3Xml, "req-1");
        assert_eq!(resp.status(), 403);
        let body = String::from_utf8(resp.body().to_vec()).unwrap();
        assert!(body.contains("<Code>AccessDenied</Code>"));
        assert!(body.contains("b/&lt;x&gt;"));
        assert!(body.contains("<RequestId>req-1</RequestId>"));
    }

    #[test]
    fn json_denial_carries_type_header_and_exception_code() {
        let r = Refusal::new(RefusalKind::AccessDenied, "no");
        let resp: Response<Bytes> = r.render(ErrorFormat::Json, "req-2");
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.headers()["x-amzn-errortype"], "AccessDeniedException");
        let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(v["__type"], "AccessDeniedException");
    }

    #[test]
    fn unavailable_is_503_in_every_format() {
        for f in [ErrorFormat::S3Xml, ErrorFormat::QueryXml, ErrorFormat::Json] {
            let r = Refusal::new(RefusalKind::ServiceUnavailable, "log down");
            assert_eq!(r.status(f), 503);
        }
    }

    #[test]
    fn a_message_quoting_the_agent_is_cut_to_its_bound() {
        let r = Refusal::new(
            RefusalKind::AccessDenied,
            format!("value `{}`", "é".repeat(5000)),
        );
        assert!(r.message.len() <= MAX_MESSAGE_BYTES + "… (cut)".len());
        assert!(r.message.ends_with("… (cut)"));
    }
}
