//! SQS queue URLs stay on the gateway.
//!
//! SQS answers `GetQueueUrl`, `CreateQueue`, `ListQueues` and `ListDeadLetterSourceQueues`
//! with queue URLs on its own host (`https://sqs.us-east-1.amazonaws.com/123456789012/jobs`),
//! and the JavaScript SDK (`useQueueUrlAsEndpoint`, on by default) sends every later call
//! on a queue to its URL: straight to AWS, signed with the grant's key, bypassing the
//! gateway (and failing there, unrecorded here). So those responses are rewritten to the
//! URL agents are given (`ProxyOptions::public_url`), and a request naming a queue by that
//! form (`QueueUrl` in its body or query) is mapped back to the upstream's form before it
//! is re-signed, because SQS refuses a queue URL on another host (`InvalidAddress`).
//!
//! The mapping keeps what the decision was made on: the classifier reads a queue's account
//! and name from the URL's path, which neither direction changes.

use bytes::Bytes;
use custody_sigv4::classify::Classification;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Response};
use http_body_util::BodyExt as _;

use crate::body::{ProxyBody, full};

/// Operations whose responses carry queue URLs.
const HANDS_OUT_URLS: &[&str] = &[
    "GetQueueUrl",
    "CreateQueue",
    "ListQueues",
    "ListDeadLetterSourceQueues",
];

/// Largest response rewritten (1,000 queue URLs are about 100 KB); a larger one passes as
/// it is.
const MAX_REWRITTEN: usize = 4 << 20;

/// Whether the request is an SQS call.
pub(crate) fn is_sqs(c: &Classification) -> bool {
    c.service == "sqs"
}

/// An SQS request's body after mapping, with its SHA-256 (hex) for the upstream signature.
pub(crate) struct MappedBody {
    pub(crate) bytes: Bytes,
    pub(crate) sha256: String,
}

/// Maps an SQS request naming a queue on `public` to `upstream`: a `QueueUrl` in the query
/// is rewritten in `parts`; one in the body (`body`: the whole body, already verified) is
/// returned as the new body, with `Content-Length` and a client-sent
/// `x-amz-content-sha256` in `parts` updated to it.
pub(crate) fn map_request(
    c: &Classification,
    parts: &mut http::request::Parts,
    body: Option<&[u8]>,
    public: &str,
    upstream: &str,
) -> Result<Option<MappedBody>, http::Error> {
    if !is_sqs(c) {
        return Ok(None);
    }
    if let Some(query) = parts
        .uri
        .query()
        .and_then(|q| map_form(q.as_bytes(), public, upstream))
    {
        let path_and_query = format!("{}?{query}", parts.uri.path());
        parts.uri = http::Uri::builder()
            .path_and_query(path_and_query)
            .build()?;
    }
    let Some(bytes) = body.and_then(|b| map_request_body(c, &parts.headers, b, public, upstream))
    else {
        return Ok(None);
    };
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    // A client that sent the body's hash (the JavaScript SDK does) gets it updated.
    if parts.headers.contains_key("x-amz-content-sha256")
        && let Ok(v) = http::HeaderValue::from_str(&sha256)
    {
        parts.headers.insert("x-amz-content-sha256", v);
    }
    parts.headers.insert(CONTENT_LENGTH, bytes.len().into());
    Ok(Some(MappedBody { bytes, sha256 }))
}

/// The request body with a `QueueUrl` on `public` mapped to `upstream`, or `None` when
/// nothing names the public form. JSON bodies (AWS JSON) and forms (the query protocol).
fn map_request_body(
    c: &Classification,
    headers: &HeaderMap,
    body: &[u8],
    public: &str,
    upstream: &str,
) -> Option<Bytes> {
    if !is_sqs(c) || body.is_empty() {
        return None;
    }
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if json {
        let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let url = value.get("QueueUrl")?.as_str()?;
        let mapped = to_upstream(url, public, upstream)?;
        value["QueueUrl"] = serde_json::Value::String(mapped);
        return serde_json::to_vec(&value).ok().map(Bytes::from);
    }
    map_form(body, public, upstream).map(Bytes::from)
}

/// `url` on `public` (`{public}/account/queue`), on `upstream` instead.
fn to_upstream(url: &str, public: &str, upstream: &str) -> Option<String> {
    url.strip_prefix(public)
        .filter(|rest| rest.starts_with('/'))
        .map(|rest| format!("{upstream}{rest}"))
}

/// Form-encoded pairs (a query string or a form body) with a `QueueUrl` on `public`
/// mapped to `upstream`, or `None` when none is. Only that pair is rewritten; every other
/// byte stays as the agent sent it (no decode and re-encode of values the gateway does not
/// change).
fn map_form(raw: &[u8], public: &str, upstream: &str) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut changed = false;
    let pieces: Vec<String> = text
        .split('&')
        .map(|piece| {
            let mut pairs = form_urlencoded::parse(piece.as_bytes());
            let mapped = match (pairs.next(), pairs.next()) {
                (Some((k, v)), None) if k == "QueueUrl" => to_upstream(&v, public, upstream),
                _ => None,
            };
            match mapped {
                Some(url) => {
                    changed = true;
                    form_urlencoded::Serializer::new(String::new())
                        .append_pair("QueueUrl", &url)
                        .finish()
                }
                None => piece.to_owned(),
            }
        })
        .collect();
    changed.then(|| pieces.join("&"))
}

/// Whether the response to this request carries queue URLs to rewrite.
pub(crate) fn rewrites_response(c: &Classification) -> bool {
    is_sqs(c) && HANDS_OUT_URLS.contains(&c.operation.as_str())
}

/// The response with every queue URL on `upstream` rewritten to `public`.
pub(crate) async fn map_response(
    response: Response<ProxyBody>,
    upstream: &str,
    public: &str,
) -> Result<Response<ProxyBody>, crate::body::BoxError> {
    let (mut parts, body) = response.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_REWRITTEN) {
        return Ok(Response::from_parts(parts, body));
    }
    let bytes = http_body_util::Limited::new(body, MAX_REWRITTEN)
        .collect()
        .await?
        .to_bytes();
    let rewritten = replace_origin(&bytes, upstream, public);
    parts.headers.remove(CONTENT_LENGTH);
    if let Ok(v) = http::HeaderValue::from_str(&rewritten.len().to_string()) {
        parts.headers.insert(CONTENT_LENGTH, v);
    }
    Ok(Response::from_parts(parts, full(rewritten)))
}

/// `body` with every `{from}/` replaced by `{to}/` (JSON and XML carry the URLs as they
/// are; SQS escapes neither `/` nor `:` in them).
fn replace_origin(body: &[u8], from: &str, to: &str) -> Bytes {
    let needle = format!("{from}/");
    let Ok(text) = std::str::from_utf8(body) else {
        return Bytes::copy_from_slice(body);
    };
    Bytes::from(text.replace(&needle, &format!("{to}/")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn sqs(op: &str) -> Classification {
        Classification {
            service: "sqs".into(),
            operation: op.into(),
            protocol: custody_sigv4::classify::Protocol::Json,
            actions: Vec::new(),
            mints_credentials: false,
            context: Default::default(),
        }
    }

    const PUBLIC: &str = "https://custody.internal:8432";
    const UP: &str = "https://sqs.us-east-1.amazonaws.com";

    #[test]
    fn json_and_form_bodies_name_the_queue_on_the_upstream() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, "application/x-amz-json-1.0".parse().unwrap());
        let body =
            br#"{"QueueUrl":"https://custody.internal:8432/123456789012/jobs","MessageBody":"hi"}"#;
        let out = map_request_body(&sqs("SendMessage"), &h, body, PUBLIC, UP).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["QueueUrl"], format!("{UP}/123456789012/jobs"));
        assert_eq!(v["MessageBody"], "hi");
        // Already on the upstream, or another host: left alone.
        let other = br#"{"QueueUrl":"https://evil.example/123456789012/jobs"}"#;
        assert!(map_request_body(&sqs("SendMessage"), &h, other, PUBLIC, UP).is_none());
        // A prefix of the public host is not the public host.
        let longer = br#"{"QueueUrl":"https://custody.internal:84321/1/q"}"#;
        assert!(map_request_body(&sqs("SendMessage"), &h, longer, PUBLIC, UP).is_none());

        let form = b"Action=SendMessage&QueueUrl=https%3A%2F%2Fcustody.internal%3A8432%2F123456789012%2Fjobs&MessageBody=a+b";
        let out =
            map_request_body(&sqs("SendMessage"), &HeaderMap::new(), form, PUBLIC, UP).unwrap();
        let pairs: Vec<(String, String)> = form_urlencoded::parse(&out)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(pairs[1].1, format!("{UP}/123456789012/jobs"));
        assert_eq!(pairs[2].1, "a b");
        // The other pairs keep their bytes (`a+b` is not re-encoded as `a+b`'s decoding).
        assert!(
            std::str::from_utf8(&out)
                .unwrap()
                .ends_with("&MessageBody=a+b")
        );
        let odd = b"Action=SendMessage&QueueUrl=https%3A%2F%2Fcustody.internal%3A8432%2F1%2Fq&MessageBody=%FF%20x";
        let out =
            map_request_body(&sqs("SendMessage"), &HeaderMap::new(), odd, PUBLIC, UP).unwrap();
        assert!(out.ends_with(b"&MessageBody=%FF%20x"), "{out:?}");
        // In the query (a query-protocol GET): rewritten in place, the rest left alone.
        let mut parts = http::Request::get(
            "/?Action=GetQueueAttributes&QueueUrl=https%3A%2F%2Fcustody.internal%3A8432%2F1%2Fq",
        )
        .body(())
        .unwrap()
        .into_parts()
        .0;
        let mapped = map_request(&sqs("GetQueueAttributes"), &mut parts, None, PUBLIC, UP);
        assert!(mapped.unwrap().is_none(), "no body to map");
        let query = parts.uri.query().unwrap();
        assert!(query.starts_with("Action=GetQueueAttributes&"), "{query}");
        assert!(
            query.contains("sqs.us-east-1.amazonaws.com%2F1%2Fq"),
            "{query}"
        );
        // Not SQS: never touched.
        let mut c = sqs("SendMessage");
        c.service = "sns".into();
        assert!(map_request_body(&c, &h, body, PUBLIC, UP).is_none());
    }

    #[test]
    fn responses_hand_out_the_public_url() {
        let json = br#"{"QueueUrls":["https://sqs.us-east-1.amazonaws.com/1/a","https://sqs.us-east-1.amazonaws.com/1/b"]}"#;
        let out = replace_origin(json, UP, PUBLIC);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"QueueUrls":["https://custody.internal:8432/1/a","https://custody.internal:8432/1/b"]}"#
        );
        assert!(rewrites_response(&sqs("ListQueues")));
        assert!(!rewrites_response(&sqs("SendMessage")));
    }
}
