//! Only known members: every JSON key, form parameter and `x-amz-*` header of a request
//! must be one the operation's input shape in the service model has.
//!
//! An upstream parser may honour a member this gateway's model does not know (a newer
//! API version, a lenient stand-in), and such a member can name another resource or
//! change what the call does. One rule closes that whole class: what the model does not
//! describe is refused, naming the member and the model version.

use std::collections::HashMap;

use serde_json::Value;

use super::ClassifyError;
use super::data::{OpData, Service, Shape};
use super::request::Params;

/// `x-amz-*` headers of the protocol itself (signing, streaming, SDK metadata), which
/// any request may carry.
const PROTOCOL_HEADERS: [&str; 9] = [
    "x-amz-api-version",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
    "x-amz-user-agent",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
    "x-amz-target",
    "x-amz-sdk-checksum-algorithm",
];

/// Whether `key` is a presign authentication parameter.
pub(crate) fn is_presign_key(key: &str) -> bool {
    crate::resign::PRESIGN_PARAMS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(key))
}

/// Checks a JSON body (AWS JSON, REST-JSON) against the operation's input members.
pub(crate) fn check_json(
    service: &Service,
    op: &OpData,
    body: &Value,
) -> Result<(), ClassifyError> {
    let Some(input) = &op.input else {
        return Ok(());
    };
    let checker = Checker {
        service,
        op,
        shapes: &service.data.shapes,
    };
    let Value::Object(map) = body else {
        return Err(ClassifyError::Malformed {
            part: "json body",
            reason: "not an object".into(),
        });
    };
    for (key, value) in map {
        let shape = input.get(key).ok_or_else(|| checker.unknown(key))?;
        checker.json(value, shape, key)?;
    }
    Ok(())
}

/// Checks query-protocol parameters (URL query plus form body, `Action` and `Version`
/// included) against the operation's input members; `query_wire` selects the query
/// names of a query-compatible JSON service.
pub(crate) fn check_params(
    service: &Service,
    op: &OpData,
    params: &Params,
    query_wire: bool,
) -> Result<(), ClassifyError> {
    let (input, shapes) = if query_wire && service.data.protocol == "json" {
        (op.query_input.as_ref(), &service.data.qshapes)
    } else {
        (op.input.as_ref(), &service.data.shapes)
    };
    let Some(input) = input else {
        return Ok(());
    };
    let checker = Checker {
        service,
        op,
        shapes,
    };
    for key in params.keys() {
        if key == "Action" || key == "Version" || is_presign_key(key) {
            continue;
        }
        let mut segments = key.split('.');
        let first = segments.next().unwrap_or_default();
        let shape = input.get(first).ok_or_else(|| checker.unknown(key))?;
        checker.param(shape, &mut segments, key)?;
    }
    Ok(())
}

/// Checks that the query string of a JSON-protocol request carries nothing but presign
/// authentication (the operation and its members travel in the body).
pub(crate) fn check_no_query(
    service: &Service,
    op: &OpData,
    query: &Params,
) -> Result<(), ClassifyError> {
    match query.keys().find(|k| !is_presign_key(k)) {
        Some(key) => Err(ClassifyError::UnknownParameter {
            name: key.to_owned(),
            operation: format!("{} ({})", op.name, model_name(service)),
        }),
        None => Ok(()),
    }
}

/// Checks the `x-amz-*` headers: protocol headers, or header members of the operation
/// (REST), or nothing else.
pub(crate) fn check_headers(
    service: &Service,
    op: &OpData,
    headers: &http::HeaderMap,
) -> Result<(), ClassifyError> {
    for name in headers.keys() {
        let n = name.as_str();
        if !n.starts_with("x-amz-") || PROTOCOL_HEADERS.contains(&n) {
            continue;
        }
        // Checksums of the payload, whichever algorithm the SDK chose.
        if n.starts_with("x-amz-checksum-") {
            continue;
        }
        if op.hkeys.iter().any(|h| h == n) || op.hpre.iter().any(|p| n.starts_with(p.as_str())) {
            continue;
        }
        return Err(ClassifyError::UnknownMember {
            member: format!("header {n}"),
            operation: op.name.clone(),
            model: model_name(service),
        });
    }
    Ok(())
}

/// `dynamodb 2012-08-10, botocore 1.43.11`: which model a refusal was judged by.
pub(crate) fn model_name(service: &Service) -> String {
    format!(
        "{} {}, botocore {}",
        service.data.service, service.data.api_version, service.data.botocore
    )
}

struct Checker<'a> {
    service: &'a Service,
    op: &'a OpData,
    shapes: &'a HashMap<String, Shape>,
}

// === impl Checker ===

impl Checker<'_> {
    fn unknown(&self, member: &str) -> ClassifyError {
        ClassifyError::UnknownMember {
            member: member.to_owned(),
            operation: self.op.name.clone(),
            model: model_name(self.service),
        }
    }

    fn shape(&self, name: &str) -> Result<Option<&Shape>, ClassifyError> {
        match name {
            "" | "*" => Ok(None),
            n => self
                .shapes
                .get(n)
                .map(Some)
                .ok_or_else(|| ClassifyError::Data(format!("shape `{n}` is missing"))),
        }
    }

    /// A JSON value against shape `name`; `path` names it in errors.
    fn json(&self, value: &Value, name: &str, path: &str) -> Result<(), ClassifyError> {
        if name == "*" || value.is_null() {
            return Ok(());
        }
        let wrong = |expected: &str| ClassifyError::Malformed {
            part: "json body",
            reason: format!("`{path}` is not {expected}"),
        };
        match (self.shape(name)?, value) {
            (None, Value::Object(_) | Value::Array(_)) => Err(wrong("a scalar")),
            (None, _) => Ok(()),
            (Some(Shape::Struct(members)), Value::Object(map)) => {
                for (key, v) in map {
                    let child = format!("{path}.{key}");
                    let shape = members.get(key).ok_or_else(|| self.unknown(&child))?;
                    self.json(v, shape, &child)?;
                }
                Ok(())
            }
            (Some(Shape::List(_, member, _)), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.json(item, member, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            (Some(Shape::Map(_, value_shape, ..)), Value::Object(map)) => {
                for (key, v) in map {
                    self.json(v, value_shape, &format!("{path}.{key}"))?;
                }
                Ok(())
            }
            (Some(Shape::Struct(_)), _) => Err(wrong("an object")),
            (Some(Shape::List(..)), _) => Err(wrong("a list")),
            (Some(Shape::Map(..)), _) => Err(wrong("a map")),
        }
    }

    /// The rest of a query key (`Tags.member.1.Key`) below shape `name`.
    fn param<'k>(
        &self,
        name: &str,
        segments: &mut impl Iterator<Item = &'k str>,
        key: &str,
    ) -> Result<(), ClassifyError> {
        let Some(shape) = self.shape(name)? else {
            // A scalar (or document) ends the key.
            return match segments.next() {
                None => Ok(()),
                Some(_) => Err(self.unknown(key)),
            };
        };
        match shape {
            Shape::Struct(members) => {
                let Some(seg) = segments.next() else {
                    return Err(self.unknown(key));
                };
                let child = members.get(seg).ok_or_else(|| self.unknown(key))?;
                self.param(child, segments, key)
            }
            Shape::List(_, member, segment) => {
                let Some(mut seg) = segments.next() else {
                    // `Name=`: botocore's form of an empty list.
                    return Ok(());
                };
                if let Some(expected) = segment {
                    if seg != expected {
                        return Err(self.unknown(key));
                    }
                    seg = segments.next().ok_or_else(|| self.unknown(key))?;
                }
                index(seg).ok_or_else(|| self.unknown(key))?;
                self.param(member, segments, key)
            }
            Shape::Map(_, value, key_name, value_name, flattened) => {
                let mut seg = segments.next().ok_or_else(|| self.unknown(key))?;
                if !flattened {
                    if seg != "entry" {
                        return Err(self.unknown(key));
                    }
                    seg = segments.next().ok_or_else(|| self.unknown(key))?;
                }
                index(seg).ok_or_else(|| self.unknown(key))?;
                match segments.next() {
                    Some(k) if k == key_name => match segments.next() {
                        None => Ok(()),
                        Some(_) => Err(self.unknown(key)),
                    },
                    Some(v) if v == value_name => self.param(value, segments, key),
                    _ => Err(self.unknown(key)),
                }
            }
        }
    }
}

/// A list or map index on the query wire: 1, 2, … (no sign, no leading zero).
fn index(seg: &str) -> Option<u32> {
    if seg.starts_with('0') || !seg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seg.parse().ok().filter(|n| *n >= 1)
}
