//! Mapping STS failures to what the broker does next and what it tells the caller.

use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::{BrokerError, GrantCredentialsRequest};

/// How one failed AssumeRole attempt is handled.
pub(crate) enum Failure {
    /// Try again after a backoff, then give up with this error.
    Transient(BrokerError),
    /// The role refused the session length: ask for less.
    DurationTooLong,
    /// Give up now.
    Final(BrokerError),
}

/// How to handle a failed AssumeRole attempt for `req` (`attempts` calls so far) against
/// `endpoint`.
pub(crate) fn classify(
    req: &GrantCredentialsRequest,
    endpoint: &str,
    attempts: u32,
    err: SdkError<AssumeRoleError, aws_smithy_runtime_api::http::Response>,
) -> Failure {
    let unavailable = |message: String| BrokerError::Unavailable {
        endpoint: endpoint.to_owned(),
        attempts,
        message,
    };
    let (code, message, status) = match &err {
        SdkError::ServiceError(ctx) => {
            let (code, message) = match ctx.err().code() {
                Some(code) if !code.is_empty() => (
                    code.to_owned(),
                    ctx.err().message().unwrap_or_default().to_owned(),
                ),
                _ => raw_error(ctx.raw()),
            };
            (code, message, ctx.raw().status().as_u16())
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            return Failure::Transient(unavailable(DisplayErrorContext(&err).to_string()));
        }
        SdkError::ResponseError(ctx) if ctx.raw().status().is_server_error() => {
            return Failure::Transient(unavailable(DisplayErrorContext(&err).to_string()));
        }
        _ => {
            return Failure::Final(BrokerError::Rejected {
                role: req.role_arn.clone(),
                code: "Unhandled".into(),
                message: DisplayErrorContext(&err).to_string(),
            });
        }
    };
    match code.as_str() {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "SlowDown"
        | "PriorRequestNotComplete" => Failure::Transient(BrokerError::Throttled {
            grant_id: req.grant_id.clone(),
            attempts,
        }),
        _ if status == 429 => Failure::Transient(BrokerError::Throttled {
            grant_id: req.grant_id.clone(),
            attempts,
        }),
        _ if status >= 500 => Failure::Transient(unavailable(format!("{code}: {message}"))),
        "AccessDenied" | "AccessDeniedException" => Failure::Final(BrokerError::RoleNotTrusted {
            role: req.role_arn.clone(),
            message,
        }),
        "PackedPolicyTooLarge" | "PackedPolicyTooLargeException" => {
            Failure::Final(BrokerError::PolicyTooLarge {
                grant_id: req.grant_id.clone(),
                size: req.session_policy.as_ref().map_or(0, |p| p.chars().count()),
            })
        }
        "ValidationError" if message.contains("MaxSessionDuration") => Failure::DurationTooLong,
        "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "ExpiredToken" => Failure::Final(BrokerError::Config(format!(
            "sts rejected the gateway's base credentials: {code}: {message}"
        ))),
        _ => Failure::Final(BrokerError::Rejected {
            role: req.role_arn.clone(),
            code,
            message,
        }),
    }
}

/// Code and message from an error body the SDK could not parse. AWS-compatible servers
/// (moto, for one) wrap query-protocol errors as `<ErrorResponse><Errors><Error>`, which the
/// SDK does not read; the code is also in the `x-amzn-ErrorType` header some send.
fn raw_error(raw: &aws_smithy_runtime_api::http::Response) -> (String, String) {
    let body = raw
        .body()
        .bytes()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let element = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = body.find(&open)? + open.len();
        let len = body[start..].find(&close)?;
        Some(body[start..start + len].trim().to_owned())
    };
    let code = element("Code")
        .or_else(|| {
            raw.headers()
                .get("x-amzn-errortype")
                .map(|v| v.split(':').next().unwrap_or_default().to_owned())
        })
        .unwrap_or_default();
    (code, element("Message").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

    use std::time::SystemTime;

    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    fn req() -> GrantCredentialsRequest {
        GrantCredentialsRequest {
            grant_id: "g-1".into(),
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            session_policy: None,
            source_identity: "a".into(),
            task_id: "t".into(),
            expires_at: SystemTime::UNIX_EPOCH,
        }
    }

    /// A service error as the SDK reports it: parsed metadata (possibly empty) and raw body.
    fn service(status: u16, code: Option<&str>, body: &str) -> Failure {
        let mut meta = ErrorMetadata::builder();
        if let Some(code) = code {
            meta = meta.code(code).message("said sts");
        }
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
        classify(
            &req(),
            "http://sts.test",
            2,
            SdkError::service_error(AssumeRoleError::generic(meta.build()), raw),
        )
    }

    #[test]
    fn throttling_and_outages_are_transient() {
        assert!(matches!(
            service(400, Some("Throttling"), ""),
            Failure::Transient(BrokerError::Throttled { attempts: 2, .. })
        ));
        assert!(matches!(
            service(429, Some("Whatever"), ""),
            Failure::Transient(BrokerError::Throttled { .. })
        ));
        assert!(matches!(
            service(503, Some("ServiceUnavailable"), ""),
            Failure::Transient(BrokerError::Unavailable { .. })
        ));
    }

    #[test]
    fn final_errors_say_what_happened() {
        match service(403, Some("AccessDenied"), "") {
            Failure::Final(BrokerError::RoleNotTrusted { role, message }) => {
                assert_eq!(role, req().role_arn);
                assert_eq!(message, "said sts");
            }
            _ => panic!("expected RoleNotTrusted"),
        }
        assert!(matches!(
            service(403, Some("InvalidClientTokenId"), ""),
            Failure::Final(BrokerError::Config(_))
        ));
        assert!(matches!(
            service(400, Some("MalformedPolicyDocument"), ""),
            Failure::Final(BrokerError::Rejected { .. })
        ));
        assert!(matches!(
            service(400, Some("ValidationError"), ""),
            Failure::Final(BrokerError::Rejected { .. })
        ));
    }

    #[test]
    fn wrapped_error_bodies_from_compatible_servers_are_read() {
        let body = "<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: x is not authorized</Message><Type>Sender</Type></Error></Errors></ErrorResponse>";
        match service(403, None, body) {
            Failure::Final(BrokerError::RoleNotTrusted { message, .. }) => {
                assert_eq!(message, "User: x is not authorized");
            }
            _ => panic!("expected RoleNotTrusted"),
        }
    }
}
