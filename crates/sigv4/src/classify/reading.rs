//! One reading, or refused: the checks that make sure the upstream can read a request
//! only the way it was classified.
//!
//! The gateway is only as honest as its classifier's agreement with the upstream's
//! parser. Each rule here removes a way for the two to disagree:
//!
//! - AWS JSON, query and EC2 requests go to `/` (SQS: or the queue's own path, checked
//!   against `QueueUrl` by the SQS handler); AWS JSON requests carry no query string.
//! - The `Content-Type` is the protocol's: `application/x-amz-json-1.0`/`1.1` for AWS
//!   JSON, a form for a query body.
//! - One operation selector: no `Action` next to `X-Amz-Target` (URL query, an `Action`
//!   header, or a JSON body that a lenient parser could also read as a form with an
//!   `Action`), no `X-Amz-Target` on a REST request.
//! - Only members the model knows (see `members`), and no body where the operation has
//!   none.
//! - Bodies the classifier reads are classified as the upstream decodes them: no
//!   `Content-Encoding` but `identity`, `gzip` where the model has the
//!   request-compression trait, and `aws-chunked` on S3 (whose framing the caller has
//!   already removed).

use std::borrow::Cow;
use std::io::Read;

use super::dispatch::Req;
use super::members;
use super::request::{Params, content_type, header};
use super::{ClassifyError, ClassifyInput, Protocol};
use crate::body::declares_no_body;

/// Largest body a `gzip` request body may decode to; more is refused (a small
/// compressed body must not become an unbounded buffer).
pub const MAX_DECODED_BODY: u64 = 16 << 20;

/// Refuses a request the upstream could read another way than it was classified.
pub(crate) fn check(req: &Req<'_>, target: Option<&str>) -> Result<(), ClassifyError> {
    let service = req.service;
    let op = req.op;
    let input = req.input;
    let not_one = |reason: String| ClassifyError::NotOneReading {
        service: service.data.service.clone(),
        reason,
    };
    if input.headers.contains_key("action") {
        return Err(not_one(
            "an `Action` header is a second operation selector".into(),
        ));
    }
    let reads_body = match req.protocol {
        Protocol::Json => {
            root_path(req)?;
            members::check_no_query(service, op, &req.query)?;
            let Some(body) = req.body.as_deref() else {
                return Err(ClassifyError::BodyRequired {
                    operation: op.name.clone(),
                });
            };
            let versions = ["1.0", "1.1"].map(|v| format!("application/x-amz-json-{v}"));
            match content_type(input.headers)? {
                Some(ct) if versions.contains(&ct) => {}
                other => {
                    return Err(not_one(format!(
                        "content type `{}` is not `application/x-amz-json-1.0` or `-1.1`",
                        other.as_deref().unwrap_or("(none)")
                    )));
                }
            }
            if Params::form_has_key(body, "Action") {
                return Err(not_one(
                    "the json body also reads as a form with an `Action` (a second operation selector)"
                        .into(),
                ));
            }
            if let Some(json) = &req.json {
                members::check_json(service, op, json)?;
            }
            true
        }
        Protocol::Query | Protocol::Ec2 => {
            root_path(req)?;
            if input.body.is_none() && !declares_no_body(input.headers) {
                return Err(ClassifyError::BodyRequired {
                    operation: op.name.clone(),
                });
            }
            members::check_params(service, op, &req.params, true)?;
            true
        }
        Protocol::RestJson | Protocol::RestXml => {
            if target.is_some() {
                return Err(not_one("`X-Amz-Target` on a REST request".into()));
            }
            if op.nobody
                && (input.body.is_some_and(|b| !b.is_empty()) || !declares_no_body(input.headers))
            {
                return Err(not_one(format!(
                    "a request body, which `{}` does not take (the upstream could read it)",
                    op.name
                )));
            }
            if let Some(json) = &req.json {
                members::check_json(service, op, json)?;
            }
            req.json.is_some() || (input.body.is_some() && super::handlers::needs_body(op))
        }
    };
    if reads_body {
        body_encoding(req)?;
    }
    members::check_headers(service, op, input.headers)
}

/// AWS JSON, query and EC2 requests are posted to `/`; SQS also takes the queue's path,
/// which its handler checks against `QueueUrl`.
fn root_path(req: &Req<'_>) -> Result<(), ClassifyError> {
    let path = req.input.path;
    if path == "/" {
        return Ok(());
    }
    let queue_path =
        req.op.handler.as_deref() == Some("sqs") && req.op.mem.contains_key("QueueUrl");
    if queue_path {
        return Ok(());
    }
    Err(ClassifyError::NotOneReading {
        service: req.service.data.service.clone(),
        reason: format!(
            "path `{path}`: {} requests go to `/`",
            req.protocol.as_str()
        ),
    })
}

/// The `Content-Encoding` of a body the classifier reads.
fn body_encoding(req: &Req<'_>) -> Result<(), ClassifyError> {
    let Some(value) = header(req.input.headers, "content-encoding")? else {
        return Ok(());
    };
    for coding in value.split(',').map(|c| c.trim().to_ascii_lowercase()) {
        let fine = match coding.as_str() {
            "identity" => true,
            "gzip" => req.op.gzip,
            "aws-chunked" => req.service.protocol == Protocol::RestXml,
            _ => false,
        };
        if !fine {
            return Err(ClassifyError::NotOneReading {
                service: req.service.data.service.clone(),
                reason: format!(
                    "content encoding `{coding}` on a body this gateway reads for `{}` (the upstream would decode it; the gateway would not)",
                    req.op.name
                ),
            });
        }
    }
    Ok(())
}

/// The body as the upstream decodes it: `Content-Encoding: gzip` undone (whether the
/// operation may be compressed is checked once it is known), anything else as given.
pub(crate) fn decoded_body<'a>(
    input: &ClassifyInput<'a>,
) -> Result<Option<Cow<'a, [u8]>>, ClassifyError> {
    let Some(body) = input.body else {
        return Ok(None);
    };
    let gzip = header(input.headers, "content-encoding")?
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !gzip || body.is_empty() {
        return Ok(Some(Cow::Borrowed(body)));
    }
    let malformed = |reason: String| ClassifyError::Malformed {
        part: "gzip body",
        reason,
    };
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_DECODED_BODY + 1)
        .read_to_end(&mut out)
        .map_err(|e| malformed(e.to_string()))?;
    if out.len() as u64 > MAX_DECODED_BODY {
        return Err(malformed(format!(
            "decodes to more than {MAX_DECODED_BODY} bytes"
        )));
    }
    Ok(Some(Cow::Owned(out)))
}
