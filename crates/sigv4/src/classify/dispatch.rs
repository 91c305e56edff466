//! From request to operation: pick the service by signing name and protocol hints, find
//! the operation (`X-Amz-Target`, `Action=`, or REST route), then derive actions and
//! resources from the operation's data and, where needed, its handler.

use std::collections::BTreeMap;

use http::HeaderMap;
use serde_json::Value;

use super::data::{Loc, OpData, Service, registry};
use super::json::parse_strict;
use super::reading;
use super::request::{Params, content_type, header};
use super::resources::{ArnCtx, MemberValue, eval_groups, partition};
use super::route::{Template, split_path};
use super::{
    ActionOnResources, Classification, ClassifyError, ClassifyInput, ErrorFormat, Protocol,
    handlers,
};

/// A request with its operation found and its parameters parsed.
pub(crate) struct Req<'a> {
    pub(crate) input: &'a ClassifyInput<'a>,
    pub(crate) service: &'static Service,
    pub(crate) op: &'static OpData,
    /// The protocol the request arrived in (legacy SQS query requests: `Query`).
    pub(crate) protocol: Protocol,
    /// Query-protocol parameters: query string plus form body.
    pub(crate) params: Params,
    /// The URL query string.
    pub(crate) query: Params,
    /// Decoded URI labels of REST requests.
    pub(crate) labels: Labels,
    /// Parsed JSON body (JSON protocols, and REST-JSON operations with body members).
    pub(crate) json: Option<Value>,
    /// Member values a handler supplies instead of the request's (SQS queue URL in path).
    pub(crate) overrides: Vec<(String, MemberValue)>,
    /// The body as the upstream decodes it (`Content-Encoding: gzip` undone).
    pub(crate) body: Option<std::borrow::Cow<'a, [u8]>>,
}

/// See [`super::classify`].
pub(crate) fn classify(input: &ClassifyInput<'_>) -> Result<Classification, ClassifyError> {
    let mut req = find_operation(input)?;
    if req.op.noaction {
        return Err(ClassifyError::Unrecognised {
            service: req.service.data.service.clone(),
            reason: format!(
                "`{}` is not an action of `{}` in the IAM Service Authorization Reference, so which action AWS checks for it is not known",
                req.op.name, req.service.data.iam_prefix
            ),
        });
    }
    handlers::prepare(&mut req)?;
    let ctx = ArnCtx {
        partition: partition(input.region),
        region: input.region,
        account: input.account_id,
    };
    let resources = eval_groups(&req.op.res, ctx, &mut |name| req.member(name))?;
    let mut cls = Classification {
        service: req.service.data.service.clone(),
        operation: req.op.name.clone(),
        protocol: req.protocol,
        actions: vec![ActionOnResources {
            action: req.op.action.clone(),
            resources,
        }],
        mints_credentials: req.op.mints,
        context: BTreeMap::new(),
    };
    handlers::apply(&req, ctx, &mut cls)?;
    Ok(cls)
}

/// See [`super::needs_body`].
pub(crate) fn needs_body(
    signing_name: &str,
    method: &http::Method,
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
) -> bool {
    let Ok(services) = registry().by_signing_name(signing_name) else {
        return false;
    };
    let query = Params::parse(query.unwrap_or_default().as_bytes());
    // With several services under one signing name, buffer if any of them would read it.
    services.into_iter().any(|service| match service.protocol {
        Protocol::Json | Protocol::Query | Protocol::Ec2 => true,
        Protocol::RestJson | Protocol::RestXml => {
            match route(service, method, path, &query, headers) {
                Ok((op, _)) => {
                    handlers::needs_body(op)
                        || op.input.is_some()
                        || op.mem.values().any(|(loc, _)| *loc == Loc::Body)
                }
                Err(_) => false,
            }
        }
    })
}

/// See [`super::error_format`].
pub(crate) fn error_format(signing_name: &str, headers: &HeaderMap) -> ErrorFormat {
    let json_hint = headers.contains_key("x-amz-target")
        || headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    let service = registry()
        .by_signing_name(signing_name)
        .ok()
        .and_then(|services| services.into_iter().next());
    match service {
        Some(s) if s.protocol == Protocol::Json && s.data.query_compatible && !json_hint => {
            ErrorFormat::Xml
        }
        Some(s) => s.protocol.error_format(),
        None if json_hint => ErrorFormat::Json,
        None => ErrorFormat::Xml,
    }
}

/// Finds the service and operation and parses what the rest of classification reads.
fn find_operation<'a>(input: &'a ClassifyInput<'a>) -> Result<Req<'a>, ClassifyError> {
    let candidates = registry().by_signing_name(input.signing_name)?;
    let query = Params::parse(input.query.unwrap_or_default().as_bytes());
    let target = header(input.headers, "x-amz-target")?;
    let body = reading::decoded_body(input)?;
    let unrecognised = |service: &Service, reason: String| ClassifyError::Unrecognised {
        service: service.data.service.clone(),
        reason,
    };
    // Several services may share a signing name: the protocol hints pick one.
    let service = match candidates.as_slice() {
        [] => {
            return Err(ClassifyError::UnknownService {
                signing_name: input.signing_name.to_owned(),
            });
        }
        [one] => *one,
        many => pick_service(many, input, body.as_deref(), target, &query)?,
    };
    let mut req = Req {
        input,
        service,
        op: service
            .data
            .operations
            .first()
            .ok_or_else(|| ClassifyError::Data("service without operations".into()))?,
        protocol: service.protocol,
        params: Params::default(),
        query,
        labels: Vec::new(),
        json: None,
        overrides: Vec::new(),
        body,
    };
    match service.protocol {
        Protocol::Json => match target {
            Some(target) => {
                if req.query.contains("Action") {
                    return Err(unrecognised(
                        service,
                        "both `X-Amz-Target` and an `Action` parameter".into(),
                    ));
                }
                let (prefix, name) = target.rsplit_once('.').ok_or_else(|| {
                    unrecognised(
                        service,
                        format!("`X-Amz-Target` `{target}` has no operation"),
                    )
                })?;
                if Some(prefix) != service.data.target_prefix.as_deref() {
                    return Err(unrecognised(
                        service,
                        format!("`X-Amz-Target` prefix `{prefix}` is not this service's"),
                    ));
                }
                req.op = service
                    .op(name)
                    .ok_or_else(|| ClassifyError::UnknownOperation {
                        service: service.data.service.clone(),
                        operation: name.to_owned(),
                    })?;
                // Absent body: members read from it fail with `BodyRequired` later.
                req.json = req.body.as_deref().map(json_body).transpose()?;
            }
            None if service.data.query_compatible => query_operation(&mut req)?,
            None => {
                return Err(unrecognised(service, "no `X-Amz-Target` header".into()));
            }
        },
        Protocol::Query | Protocol::Ec2 => {
            if target.is_some() {
                return Err(unrecognised(
                    service,
                    "`X-Amz-Target` on a query-protocol service".into(),
                ));
            }
            query_operation(&mut req)?;
        }
        Protocol::RestJson | Protocol::RestXml => {
            let (op, labels) = route(service, input.method, input.path, &req.query, input.headers)?;
            req.op = op;
            req.labels = labels;
            if service.protocol == Protocol::RestJson && op.input.is_some() {
                req.json = req.body.as_deref().map(json_body).transpose()?;
            }
        }
    }
    reading::check(&req, target)?;
    Ok(req)
}

/// Chooses among services sharing a signing name by protocol hints: an `X-Amz-Target`
/// with the service's prefix, an `Action` parameter (query string or form body) for
/// query services, a matching route for REST services. Exactly one must fit.
fn pick_service(
    candidates: &[&'static Service],
    input: &ClassifyInput<'_>,
    body: Option<&[u8]>,
    target: Option<&str>,
    query: &Params,
) -> Result<&'static Service, ClassifyError> {
    let form_action = query.contains("Action")
        || (body.is_some_and(|b| !b.is_empty())
            && matches!(
                content_type(input.headers).ok().flatten().as_deref(),
                None | Some("application/x-www-form-urlencoded")
            )
            && body.is_some_and(|b| Params::form_has_key(b, "Action")));
    let fits = |s: &&'static Service| match s.protocol {
        Protocol::Json => match (target, &s.data.target_prefix) {
            (Some(t), Some(p)) => t.rsplit_once('.').is_some_and(|(tp, _)| tp == p),
            (None, _) => s.data.query_compatible && form_action,
            _ => false,
        },
        Protocol::Query | Protocol::Ec2 => target.is_none() && form_action,
        Protocol::RestJson | Protocol::RestXml => {
            target.is_none()
                && !form_action
                && route(s, input.method, input.path, query, input.headers).is_ok()
        }
    };
    let mut fitting: Vec<&'static Service> = candidates.iter().copied().filter(fits).collect();
    // Services may share a target prefix (Timestream's query and write APIs): then the
    // operation must be the service's too.
    if fitting.len() > 1
        && let Some((_, op)) = target.and_then(|t| t.rsplit_once('.'))
    {
        fitting.retain(|s| s.protocol != Protocol::Json || s.op(op).is_some());
    }
    // Query services sharing a signing name (Elastic Load Balancing's two APIs) are told
    // apart by the `Version` parameter every query request carries.
    if fitting.len() > 1
        && fitting
            .iter()
            .all(|s| matches!(s.protocol, Protocol::Query))
    {
        let version = query_version(query, body, input.headers);
        fitting.retain(|s| version.as_deref() == Some(s.data.api_version.as_str()));
    }
    // REST services that share an endpoint and an IAM prefix and answer a request with the
    // same operation (Wisdom and its successor Q in Connect, Greengrass v1 and v2) are
    // one upstream and one action: the larger model reads it.
    if fitting.len() > 1
        && fitting
            .iter()
            .all(|s| matches!(s.protocol, Protocol::RestJson | Protocol::RestXml))
    {
        let op_of = |s: &'static Service| {
            route(s, input.method, input.path, query, input.headers)
                .ok()
                .map(|(op, _)| op.name.clone())
        };
        let first = fitting[0];
        let same = fitting.iter().all(|s| {
            s.data.endpoint_prefix == first.data.endpoint_prefix
                && s.data.iam_prefix == first.data.iam_prefix
                && op_of(s).is_some()
                && op_of(s) == op_of(first)
        });
        if same {
            fitting.sort_by_key(|s| std::cmp::Reverse(s.data.operations.len()));
            fitting.truncate(1);
        }
    }
    let mut fitting = fitting.into_iter();
    match (fitting.next(), fitting.next()) {
        (Some(one), None) => Ok(one),
        (Some(a), Some(b)) => Err(ClassifyError::Ambiguous {
            first: a.data.service.clone(),
            second: b.data.service.clone(),
        }),
        (None, _) => Err(ClassifyError::Unrecognised {
            service: input.signing_name.to_owned(),
            reason: "no service signing as this name fits the request's protocol".into(),
        }),
    }
}

/// The `Version` parameter of a query request (query string or form body), if it has
/// exactly one.
fn query_version(query: &Params, body: Option<&[u8]>, headers: &HeaderMap) -> Option<String> {
    let mut found = query.get_all("Version");
    if let Some(body) = body.filter(|b| !b.is_empty())
        && matches!(
            content_type(headers).ok().flatten().as_deref(),
            None | Some("application/x-www-form-urlencoded")
        )
    {
        found.extend(Params::parse(body).get_all("Version"));
    }
    match found.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// Query protocol: `Action` from the query string and/or a form body, exactly once.
fn query_operation(req: &mut Req<'_>) -> Result<(), ClassifyError> {
    let service = req.service;
    let mut params = req.query.clone();
    if let Some(body) = req.body.as_deref().filter(|b| !b.is_empty()) {
        match content_type(req.input.headers)?.as_deref() {
            Some("application/x-www-form-urlencoded") => params.extend(Params::parse(body)),
            other => {
                return Err(ClassifyError::NotOneReading {
                    service: service.data.service.clone(),
                    reason: format!(
                        "content type `{}` is not a form, which a query request's body must be",
                        other.unwrap_or("(none)")
                    ),
                });
            }
        }
    }
    if let Some(dup) = params.first_duplicate() {
        return Err(ClassifyError::DuplicateParameter {
            name: dup.to_owned(),
        });
    }
    let action = params
        .get("Action")?
        .ok_or_else(|| ClassifyError::Unrecognised {
            service: service.data.service.clone(),
            reason: "no `Action` parameter".into(),
        })?;
    req.op = service
        .op(action)
        .ok_or_else(|| ClassifyError::UnknownOperation {
            service: service.data.service.clone(),
            operation: action.to_owned(),
        })?;
    if service.protocol == Protocol::Json {
        req.protocol = Protocol::Query;
    }
    req.params = params;
    Ok(())
}

/// Parses a JSON body strictly; an empty body is `{}`.
fn json_body(body: &[u8]) -> Result<Value, ClassifyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    let v = parse_strict(body)?;
    if !v.is_object() {
        return Err(ClassifyError::Malformed {
            part: "json body",
            reason: "not an object".into(),
        });
    }
    Ok(v)
}

/// Decoded URI label values, `(label, value)`.
pub(crate) type Labels = Vec<(String, String)>;

/// Matches a REST request against the service's routes.
pub(crate) fn route(
    service: &'static Service,
    method: &http::Method,
    path: &str,
    query: &Params,
    headers: &HeaderMap,
) -> Result<(&'static OpData, Labels), ClassifyError> {
    let raw = split_path(path)?;
    let xid = query.get("x-id")?;
    // (specificity, operation, template): more discriminators, then more literal segments,
    // then not a deprecated alias. Labels are decoded for the chosen operation only: one
    // S3 object path has the shape of a dozen operations told apart by query keys, and
    // decoding the labels of each showed in profiles.
    let mut best: Vec<((usize, usize, bool), &'static OpData, &'static Template)> = Vec::new();
    let mut first_shape: Option<&'static Template> = None;
    for (i, template) in service.routes(method.as_str()) {
        let Some(op) = service.data.operations.get(*i) else {
            continue;
        };
        if !template.shape_matches(&raw) {
            continue;
        }
        first_shape.get_or_insert(template);
        let mut disc_ok = true;
        for (k, v) in &op.disc {
            let ok = match v {
                None => query.contains(k),
                Some(v) => query.get(k)? == Some(v.as_str()),
            };
            disc_ok &= ok;
        }
        if !disc_ok {
            continue;
        }
        if let Some(h) = &op.requires_header
            && amz_value(headers, query, h)?.is_none()
        {
            continue;
        }
        if let Some(h) = &op.forbids_header
            && amz_value(headers, query, h)?.is_some()
        {
            continue;
        }
        if xid.is_some_and(|x| x != op.name) {
            continue;
        }
        let score = (op.disc.len(), template.literals(), op.alias.is_none());
        best.push((score, op, template));
    }
    best.sort_by_key(|b| std::cmp::Reverse(b.0));
    let mut it = best.into_iter();
    let Some((score, op, template)) = it.next() else {
        // A path whose labels do not decode is malformed, whatever it matches or not.
        if let Some(t) = first_shape {
            t.labels(&raw)?;
        }
        return Err(ClassifyError::Unrecognised {
            service: service.data.service.clone(),
            reason: format!("no operation matches `{method} {path}`"),
        });
    };
    let labels = template.labels(&raw)?;
    if let Some((next, other, _)) = it.next()
        && next == score
    {
        return Err(ClassifyError::Ambiguous {
            first: op.name.clone(),
            second: other.name.clone(),
        });
    }
    // S3 names subresources with query keys, REST-JSON services members: a key we do
    // not know could make the upstream do something other than what we classified.
    if let Some(dup) = query.first_duplicate() {
        return Err(ClassifyError::DuplicateParameter {
            name: dup.to_owned(),
        });
    }
    for k in query.keys() {
        let known = op.disc.iter().any(|(d, _)| d == k)
            || op.qkeys.iter().any(|q| q == k)
            || k == "x-id"
            || k.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("x-amz-"));
        if !known {
            return Err(ClassifyError::UnknownParameter {
                name: k.to_owned(),
                operation: op.name.clone(),
            });
        }
    }
    Ok((op, labels))
}

/// An `x-amz-*` value that S3 accepts as a header or (presigned) as a query parameter;
/// an error if given more than once.
pub(crate) fn amz_value<'h>(
    headers: &'h HeaderMap,
    query: &'h Params,
    name: &str,
) -> Result<Option<&'h str>, ClassifyError> {
    let h = header(headers, name)?;
    let mut q = None;
    for k in query.keys() {
        if k.eq_ignore_ascii_case(name) {
            if q.is_some() || h.is_some() {
                return Err(ClassifyError::DuplicateParameter {
                    name: name.to_owned(),
                });
            }
            q = query.get(k)?;
        }
    }
    Ok(h.or(q))
}

// === impl Req ===

impl Req<'_> {
    /// The value of an input member, from wherever the operation's data says it travels.
    pub(crate) fn member(&self, name: &str) -> Result<Option<MemberValue>, ClassifyError> {
        if let Some((_, v)) = self.overrides.iter().find(|(n, _)| n == name) {
            return Ok(Some(v.clone()));
        }
        let Some((loc, wire)) = self.op.mem.get(name) else {
            return Ok(None);
        };
        let one = |v: Option<&str>| v.map(|s| MemberValue::One(s.to_owned()));
        match loc {
            Loc::Uri => Ok(self
                .labels
                .iter()
                .find(|(n, _)| n == wire)
                .map(|(_, v)| MemberValue::One(v.clone()))),
            Loc::Query => Ok(one(self.query.get(wire)?)),
            Loc::Header => Ok(one(header(self.input.headers, wire)?)),
            Loc::Xml => Ok(None),
            Loc::Body => match self.protocol {
                Protocol::Query | Protocol::Ec2 => match self.params.get(wire)? {
                    Some(v) => Ok(Some(MemberValue::One(v.to_owned()))),
                    // A list member: `Wire.1…` (EC2) or `Wire.member.1…` (query).
                    None => Ok(self
                        .params
                        .list(wire)
                        .or_else(|| self.params.list(&format!("{wire}.member")))
                        .map(MemberValue::Many)),
                },
                Protocol::Json | Protocol::RestJson | Protocol::RestXml => {
                    let Some(json) = &self.json else {
                        return Err(ClassifyError::BodyRequired {
                            operation: self.op.name.clone(),
                        });
                    };
                    json_member(json, wire)
                }
            },
        }
    }
}

/// A top-level JSON member as a value: strings and numbers, or a list of them.
pub(crate) fn json_member(json: &Value, key: &str) -> Result<Option<MemberValue>, ClassifyError> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let invalid = |v: &Value| ClassifyError::InvalidParameter {
        name: key.to_owned(),
        value: v.to_string(),
    };
    match json.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| scalar(i).ok_or_else(|| invalid(i)))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| Some(MemberValue::Many(v))),
        Some(v) => scalar(v)
            .map(MemberValue::One)
            .map(Some)
            .ok_or_else(|| invalid(v)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "tests fail loudly"
    )]
    use super::*;
    use crate::classify::data::{Embedded, Registry};

    /// Four services sharing the signing name `svc`, one per protocol family.
    fn shared() -> Vec<&'static Service> {
        let op = r#"[{"name":"Op","action":"svc:Op"}]"#;
        let rest = |path: &str| {
            format!(r#"[{{"name":"Op","action":"svc:Op","method":"GET","path":"{path}"}}]"#)
        };
        let files = [
            format!(
                r#"{{"service":"a-json","protocol":"json","signing_name":"svc","target_prefix":"AJ","operations":{op}}}"#
            ),
            format!(
                r#"{{"service":"b-query","protocol":"query","signing_name":"svc","operations":{op}}}"#
            ),
            format!(
                r#"{{"service":"c-rest","protocol":"rest-json","signing_name":"svc","operations":{}}}"#,
                rest("/things")
            ),
            format!(
                r#"{{"service":"d-rest","protocol":"rest-json","signing_name":"svc","operations":{}}}"#,
                rest("/other/{Id}")
            ),
        ];
        let files: Vec<Embedded> = files
            .into_iter()
            .map(|f| Embedded {
                name: "t",
                signing_name: "svc",
                endpoint_prefix: "svc",
                global_host: "",
                json: Box::leak(f.into_boxed_str()),
            })
            .collect();
        let registry: &'static Registry = Box::leak(Box::new(Registry::new(&files)));
        registry.by_signing_name("svc").unwrap()
    }

    fn pick(
        method: Method,
        path: &str,
        hdrs: &[(&'static str, &str)],
        body: Option<&[u8]>,
    ) -> Result<String, ClassifyError> {
        let mut headers = HeaderMap::new();
        for (k, v) in hdrs {
            headers.insert(*k, v.parse().unwrap());
        }
        let (path, q) = path.split_once('?').unwrap_or((path, ""));
        let input = ClassifyInput {
            method: &method,
            path,
            query: Some(q),
            headers: &headers,
            body,
            signing_name: "svc",
            region: "us-east-1",
            account_id: "1",
        };
        let target = header(&headers, "x-amz-target").unwrap();
        pick_service(
            &shared(),
            &input,
            body,
            target,
            &Params::parse(q.as_bytes()),
        )
        .map(|s| s.data.service.clone())
    }

    use http::Method;

    #[test]
    fn protocol_hints_pick_among_services_sharing_a_signing_name() {
        assert_eq!(
            pick(Method::POST, "/", &[("x-amz-target", "AJ.Op")], Some(b"{}")).unwrap(),
            "a-json"
        );
        assert_eq!(
            pick(Method::GET, "/?Action=Op", &[], None).unwrap(),
            "b-query"
        );
        assert_eq!(
            pick(Method::POST, "/", &[], Some(b"Action=Op")).unwrap(),
            "b-query"
        );
        assert_eq!(pick(Method::GET, "/things", &[], None).unwrap(), "c-rest");
        assert_eq!(pick(Method::GET, "/other/x", &[], None).unwrap(), "d-rest");
        assert!(pick(Method::POST, "/", &[("x-amz-target", "ZZ.Op")], None).is_err());
        assert!(pick(Method::GET, "/nothing", &[], None).is_err());
    }
}
