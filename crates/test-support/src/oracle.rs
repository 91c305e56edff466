//! The fidelity oracle: re-reads every request the upstream received (from the
//! [`Relay`](crate::relay::Relay)) and checks it against the decision the gateway's log
//! holds for it.
//!
//! For each relayed request it builds the upstream's view (hop-by-hop headers and the
//! headers `Connection` names removed, `gzip` and aws-chunked bodies decoded, as an
//! upstream would), classifies that view with the project's classifier, and requires an
//! allowed `request_decision` entry with the same service, operation, actions,
//! resources and condition context. It also reads the request the way a lenient
//! upstream does (moto takes an `Action` from the URL query or from any body that parses
//! as a form, ahead of `X-Amz-Target`), and requires that reading to agree.

use std::collections::BTreeMap;
use std::io::Read;

use custody_sigv4::classify::{ClassifyInput, Protocol, classify};

use crate::relay::Captured;

/// What the upstream's view of one request reads as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// Service name.
    pub service: String,
    /// Operation name.
    pub operation: String,
    /// `(action, resources)` in order.
    pub actions: Vec<(String, Vec<String>)>,
    /// Condition-key context.
    pub context: BTreeMap<String, String>,
}

/// Headers an HTTP server does not pass on to the application's reading of a request.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// Reads one relayed request as the upstream would: `Err` says why it has no single
/// reading (which is itself a fidelity failure: the gateway forwarded it).
pub fn read_upstream(c: &Captured, account: &str) -> Result<Reading, String> {
    let connection_named: Vec<String> = c
        .headers
        .iter()
        .filter(|(k, _)| k == "connection")
        .flat_map(|(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut headers = http::HeaderMap::new();
    for (k, v) in &c.headers {
        if HOP_BY_HOP.contains(&k.as_str()) || connection_named.contains(k) {
            continue;
        }
        let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
        let value = http::HeaderValue::from_bytes(v).map_err(|e| e.to_string())?;
        headers.append(name, value);
    }
    let mut body = c.body.to_vec();
    let streaming = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    if streaming {
        body = dechunk(&body)?;
    }
    let encodings: Vec<String> = headers
        .get_all("content-encoding")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    if encodings.iter().any(|e| e == "gzip") && !body.is_empty() {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip body: {e}"))?;
        body = out;
    }
    if streaming || encodings.iter().any(|e| e == "gzip") {
        // Decoded: the upstream's reader sees plain bytes.
        let rest: Vec<&str> = encodings
            .iter()
            .map(String::as_str)
            .filter(|e| *e != "gzip" && *e != "aws-chunked")
            .collect();
        headers.remove("content-encoding");
        if !rest.is_empty() {
            let v = http::HeaderValue::from_str(&rest.join(",")).map_err(|e| e.to_string())?;
            headers.insert("content-encoding", v);
        }
        headers.insert(http::header::CONTENT_LENGTH, body.len().into());
    }
    let (signing_name, region) = scope(&headers)?;
    let (path, query) = match c.path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (c.path_and_query.as_str(), None),
    };
    let method = http::Method::from_bytes(c.method.as_bytes()).map_err(|e| e.to_string())?;
    let input = ClassifyInput {
        method: &method,
        path,
        query,
        headers: &headers,
        body: Some(&body),
        signing_name: &signing_name,
        region: &region,
        account_id: account,
    };
    let cls = classify(&input).map_err(|e| format!("upstream view has no reading: {e}"))?;
    if !matches!(cls.protocol, Protocol::RestJson | Protocol::RestXml) {
        // A lenient upstream's operation selector.
        let mut lenient: Vec<String> = form_actions(query.unwrap_or_default().as_bytes());
        lenient.extend(form_actions(&body));
        if let Some(other) = lenient.iter().find(|a| **a != cls.operation) {
            return Err(format!(
                "a lenient upstream reads operation `{other}`, the classifier `{}`",
                cls.operation
            ));
        }
    }
    Ok(Reading {
        service: cls.service,
        operation: cls.operation,
        actions: cls
            .actions
            .into_iter()
            .map(|a| (a.action, a.resources))
            .collect(),
        context: cls.context,
    })
}

/// The reading a `request_decision` log entry records.
pub fn recorded(entry: &serde_json::Value) -> Option<Reading> {
    let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let actions = entry["access"]["actions"]
        .as_array()?
        .iter()
        .map(|a| {
            let resources = a["resources"]
                .as_array()
                .map(|r| r.iter().filter_map(s).collect())
                .unwrap_or_default();
            Some((s(&a["action"])?, resources))
        })
        .collect::<Option<Vec<_>>>()?;
    let context = entry["access"]["context"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), s(v)?)))
                .collect()
        })
        .unwrap_or_default();
    Some(Reading {
        service: s(&entry["service"])?,
        operation: s(&entry["operation"])?,
        actions,
        context,
    })
}

/// Checks every relayed request against the log's allowed decisions, one decision per
/// request. `is_gateway_own` marks requests the gateway makes for itself (the broker's
/// `AssumeRole`), which have no decision. Returns the number of requests checked, or
/// every mismatch.
pub fn check(
    captured: &[Captured],
    entries: &[serde_json::Value],
    account: &str,
    is_gateway_own: impl Fn(&Captured, &Reading) -> bool,
) -> Result<usize, Vec<String>> {
    let mut allowed: Vec<Option<Reading>> = entries
        .iter()
        .filter(|e| e["kind"] == "request_decision" && e["allowed"] == true)
        .map(recorded)
        .collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    for c in captured {
        let reading = match read_upstream(c, account) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{} {}: {e}", c.method, c.path_and_query));
                continue;
            }
        };
        let slot = allowed.iter_mut().find(|d| d.as_ref() == Some(&reading));
        match slot {
            Some(slot) => {
                *slot = None;
                checked += 1;
            }
            None if is_gateway_own(c, &reading) => {}
            None => problems.push(format!(
                "{} {}: upstream executed {reading:?}, which no allowed decision in the log records",
                c.method, c.path_and_query
            )),
        }
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(problems)
    }
}

/// `Action` values of a form (or of anything that parses as one).
fn form_actions(raw: &[u8]) -> Vec<String> {
    form_urlencoded::parse(raw)
        .filter(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// Signing name and region from the `Authorization` header's credential scope.
fn scope(headers: &http::HeaderMap) -> Result<(String, String), String> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("no authorization header")?;
    let cred = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split([',', ' ']).next())
        .ok_or("no credential in the authorization header")?;
    let parts: Vec<&str> = cred.split('/').collect();
    match parts.as_slice() {
        [_, _, region, service, "aws4_request"] => {
            Ok(((*service).to_owned(), (*region).to_owned()))
        }
        _ => Err(format!("credential scope `{cred}`")),
    }
}

/// Removes aws-chunked framing (`<hex size>[;ext…]\r\n<data>\r\n`, a zero-size chunk,
/// then trailers), as S3 does. Written here rather than taken from custody-sigv4 so the
/// oracle does not share the gateway's decoder.
fn dechunk(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut rest = raw;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("aws-chunked: no chunk header line")?;
        let line = std::str::from_utf8(&rest[..line_end]).map_err(|e| e.to_string())?;
        let size_hex = line.split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_hex, 16).map_err(|e| format!("chunk size: {e}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let data = rest.get(..size).ok_or("aws-chunked: short chunk")?;
        out.extend_from_slice(data);
        rest = rest
            .get(size + 2..)
            .ok_or("aws-chunked: chunk not terminated")?;
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
    use std::io::Write;

    use super::*;

    const ACCOUNT: &str = "123456789012";

    fn captured(
        service: &str,
        target: Option<&str>,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Captured {
        let mut headers = vec![
            (
                "authorization".to_owned(),
                format!(
                    "AWS4-HMAC-SHA256 Credential=ASIA/20261207/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00"
                )
                .into_bytes(),
            ),
            ("content-type".to_owned(), b"application/x-amz-json-1.0".to_vec()),
        ];
        if let Some(t) = target {
            headers.push(("x-amz-target".to_owned(), t.as_bytes().to_vec()));
        }
        for (k, v) in extra {
            headers.push(((*k).to_owned(), v.as_bytes().to_vec()));
        }
        Captured {
            method: "POST".into(),
            path_and_query: "/".into(),
            headers,
            body: bytes::Bytes::copy_from_slice(body),
        }
    }

    fn decision(service: &str, op: &str, action: &str, resource: &str) -> serde_json::Value {
        serde_json::json!({
            "kind": "request_decision", "allowed": true, "service": service, "operation": op,
            "access": {"actions": [{"action": action, "resources": [resource]}], "context": {}}
        })
    }

    const LEDGER: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/ledger";
    const GET: &[u8] = br#"{"TableName":"ledger","Key":{"pk":{"S":"a"}}}"#;

    fn get_item_decision() -> Vec<serde_json::Value> {
        vec![decision("dynamodb", "GetItem", "dynamodb:GetItem", LEDGER)]
    }

    #[test]
    fn a_faithful_request_matches_its_decision_once() {
        let c = captured("dynamodb", Some("DynamoDB_20120810.GetItem"), &[], GET);
        assert_eq!(
            check(
                std::slice::from_ref(&c),
                &get_item_decision(),
                ACCOUNT,
                |_, _| false
            ),
            Ok(1)
        );
        // One decision serves one request.
        assert!(check(&[c.clone(), c], &get_item_decision(), ACCOUNT, |_, _| false).is_err());
    }

    #[test]
    fn another_resource_or_operation_is_a_mismatch() {
        let other = br#"{"TableName":"other","Key":{"pk":{"S":"a"}}}"#;
        let c = captured("dynamodb", Some("DynamoDB_20120810.GetItem"), &[], other);
        assert!(check(&[c], &get_item_decision(), ACCOUNT, |_, _| false).is_err());
        let scan = captured(
            "dynamodb",
            Some("DynamoDB_20120810.Scan"),
            &[],
            br#"{"TableName":"ledger"}"#,
        );
        assert!(check(&[scan], &get_item_decision(), ACCOUNT, |_, _| false).is_err());
    }

    #[test]
    fn a_header_connection_names_is_not_read() {
        // The gateway decided SendMessage by X-Amz-Target; Connection makes the upstream
        // drop it and read the body another way.
        let queue = "arn:aws:sqs:us-east-1:123456789012:jobs";
        let c = captured(
            "sqs",
            Some("AmazonSQS.SendMessage"),
            &[("connection", "keep-alive, x-amz-target")],
            br#"{"QueueUrl":"http://localhost/123456789012/jobs","MessageBody":"m"}"#,
        );
        let d = vec![decision("sqs", "SendMessage", "sqs:SendMessage", queue)];
        let problems = check(&[c], &d, ACCOUNT, |_, _| false).unwrap_err();
        assert!(problems[0].contains("no reading"), "{problems:?}");
    }

    #[test]
    fn a_lenient_parsers_action_is_a_second_reading() {
        let smuggled = br#"{"TableName":"ledger","Key":{"pk":{"S":"a"}},"ProjectionExpression":"&Action=BatchGetItem&"}"#;
        let c = captured("dynamodb", Some("DynamoDB_20120810.GetItem"), &[], smuggled);
        // The project's classifier refuses it outright; either way it is a mismatch.
        assert!(check(&[c], &get_item_decision(), ACCOUNT, |_, _| false).is_err());
        let form = captured(
            "dynamodb",
            Some("DynamoDB_20120810.GetItem"),
            &[],
            b"Action=BatchGetItem",
        );
        assert!(read_upstream(&form, ACCOUNT).is_err());
    }

    #[test]
    fn compressed_and_chunked_bodies_are_read_decoded() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(br#"{"TableName":"other","Key":{"pk":{"S":"a"}}}"#)
            .unwrap();
        let c = captured(
            "dynamodb",
            Some("DynamoDB_20120810.GetItem"),
            &[("content-encoding", "gzip")],
            &gz.finish().unwrap(),
        );
        let r = read_upstream(&c, ACCOUNT);
        // Read decoded it names `other`, so it cannot match the `ledger` decision.
        assert!(
            check(&[c], &get_item_decision(), ACCOUNT, |_, _| false).is_err(),
            "{r:?}"
        );
        assert_eq!(
            dechunk(b"3;chunk-signature=aa\r\nabc\r\n0\r\n\r\n").unwrap(),
            b"abc"
        );
        assert!(dechunk(b"5\r\nabc").is_err());
    }

    #[test]
    fn the_gateways_own_calls_are_skipped_only_when_marked() {
        let c = captured("dynamodb", Some("DynamoDB_20120810.GetItem"), &[], GET);
        assert_eq!(
            check(std::slice::from_ref(&c), &[], ACCOUNT, |_, r| r.operation
                == "GetItem"),
            Ok(0)
        );
        assert!(check(&[c], &[], ACCOUNT, |_, _| false).is_err());
    }
}
