//! The admin API (JSON over HTTP, bearer tokens) and the health and metrics endpoints,
//! on the admin listener only. Agents' SigV4 credentials are not accepted here, and
//! bearer tokens are not accepted on the agent listener.
//!
//! | method and path | who | what |
//! |---|---|---|
//! | `GET /healthz` | anyone | the process is up |
//! | `GET /readyz` | anyone | the log can be appended (else 503 and why) |
//! | `GET /v1/log/consistency?from=SIZE` | admin, person | consistency proof from the log's checkpoint of SIZE to its newest |
//! | `GET /metrics` | anyone | Prometheus text 0.0.4, or OpenMetrics when `Accept` asks |
//! | `POST /v1/grants` | admin, person, agent (for itself) | request a grant |
//! | `GET /v1/grants[?identity=&status=]` | admin, person; agent (own) | list |
//! | `GET /v1/grants/{id}` | admin, person; agent (own) | show |
//! | `POST /v1/grants/{id}/approve` | listed approvers | approve |
//! | `POST /v1/grants/{id}/deny` | listed approvers | deny |
//! | `POST /v1/grants/{id}/revoke` | admin, person; agent (own) | revoke |
//! | `POST /v1/grants/{id}/credentials` | admin, person; agent (own) | the agent key pair, once |

use std::sync::Arc;

use bytes::Bytes;
use custody_grant::{Grant, GrantStatus};
use custody_proxy::body::{ProxyBody, full};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use crate::app::{Gateway, GrantAsk, OpError, Principal};

/// Largest admin request body.
const MAX_BODY: usize = 256 * 1024;

/// Hex SHA-256 of a bearer token, as stored in the config.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Percent-escape a query value.
pub fn query_escape(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Handle one admin request.
pub async fn handle(
    gateway: Arc<Gateway>,
    req: Request<hyper::body::Incoming>,
) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    match (&parts.method, path.as_str()) {
        (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            return match gateway.log.health() {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(e) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("not ready: session log cannot be appended: {e}\n"),
                ),
            };
        }
        (&Method::GET, "/metrics") => {
            // Content negotiation: OpenMetrics when the scraper asks for it, else the
            // classic text format every Prometheus-compatible parser reads.
            let openmetrics = parts
                .headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("application/openmetrics-text"));
            let (body, content_type) = if openmetrics {
                (
                    gateway.metrics.render(),
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            } else {
                (
                    gateway.metrics.render_prometheus_text(),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            };
            let mut resp = text(StatusCode::OK, &body);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(content_type),
            );
            return resp;
        }
        _ => {}
    }
    let Some(principal) = bearer(&parts.headers).and_then(|t| gateway.principal(t)) else {
        return error(OpError {
            status: 401,
            message: "missing or unknown bearer token".into(),
        });
    };
    let bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return error(OpError {
                status: 400,
                message: format!("cannot read the request body: {e}"),
            });
        }
    };
    let result = route(
        &gateway,
        &principal,
        &parts.method,
        &path,
        parts.uri.query(),
        bytes,
    )
    .await;
    match result {
        Ok((status, value)) => json(status, &value),
        Err(e) => error(e),
    }
}

async fn route(
    gateway: &Gateway,
    who: &Principal,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: Bytes,
) -> Result<(StatusCode, serde_json::Value), OpError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["v1", "grants"]) => {
            let ask: GrantAsk = serde_json::from_slice(&body).map_err(|e| OpError {
                status: 400,
                message: format!("grant request: {e}"),
            })?;
            let grant = gateway.request_grant(who, ask).await?;
            Ok((StatusCode::CREATED, view(gateway, &grant)))
        }
        (&Method::GET, ["v1", "grants"]) => {
            let mut identity = None;
            let mut status = None;
            for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
                match k.as_ref() {
                    "identity" => identity = Some(v.into_owned()),
                    "status" => status = Some(parse_status(&v)?),
                    other => {
                        return Err(OpError {
                            status: 400,
                            message: format!(
                                "unknown query parameter `{other}` (identity, status)"
                            ),
                        });
                    }
                }
            }
            let grants = gateway.list_grants(who, identity, status)?;
            let list: Vec<serde_json::Value> = grants.iter().map(|g| view(gateway, g)).collect();
            Ok((StatusCode::OK, serde_json::json!({ "grants": list })))
        }
        (&Method::GET, ["v1", "log", "consistency"]) => {
            if matches!(who, Principal::Agent(_)) {
                return Err(OpError {
                    status: 403,
                    message: "agents cannot ask for log proofs".into(),
                });
            }
            // Reads the whole log (streamed): let the runtime move other work away.
            let proof = tokio::task::block_in_place(|| crate::proofs::consistency(gateway, query))?;
            Ok((StatusCode::OK, proof))
        }
        (&Method::GET, ["v1", "grants", id, "wait"]) => {
            let timeout = crate::wait::timeout_from(query)?;
            let grant = crate::wait::until_decided(gateway, who, id, timeout).await?;
            Ok((StatusCode::OK, view(gateway, &grant)))
        }
        (&Method::GET, ["v1", "grants", id]) => {
            Ok((StatusCode::OK, view(gateway, &gateway.show_grant(who, id)?)))
        }
        (&Method::POST, ["v1", "grants", id, "approve"]) => Ok((
            StatusCode::OK,
            view(gateway, &gateway.decide_grant(who, id, true, None).await?),
        )),
        (&Method::POST, ["v1", "grants", id, "deny"]) => {
            let reason = reason(&body)?;
            Ok((
                StatusCode::OK,
                view(
                    gateway,
                    &gateway
                        .decide_grant(who, id, false, reason.as_deref())
                        .await?,
                ),
            ))
        }
        (&Method::POST, ["v1", "grants", id, "revoke"]) => {
            let reason = reason(&body)?;
            Ok((
                StatusCode::OK,
                view(
                    gateway,
                    &gateway.revoke_grant(who, id, reason.as_deref()).await?,
                ),
            ))
        }
        (&Method::POST, ["v1", "grants", id, "credentials"]) => {
            Ok((StatusCode::OK, gateway.release_credentials(who, id).await?))
        }
        _ => Err(OpError {
            status: 404,
            message: format!("no admin endpoint `{method} {path}`"),
        }),
    }
}

fn parse_status(s: &str) -> Result<GrantStatus, OpError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| OpError {
        status: 400,
        message: format!("unknown status `{s}` (pending, active, denied, revoked, expired)"),
    })
}

/// The optional `{"reason": "…"}` of a deny or revoke (an empty body has none).
fn reason(body: &[u8]) -> Result<Option<String>, OpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        reason: Option<String>,
    }
    serde_json::from_slice::<Body>(body)
        .map(|b| b.reason)
        .map_err(|e| OpError {
            status: 400,
            message: format!("body: {e} (expected {{\"reason\": \"…\"}})"),
        })
}

fn view(gateway: &Gateway, grant: &Grant) -> serde_json::Value {
    let mut v = serde_json::to_value(grant).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "credentials_released".into(),
            gateway.credentials_released(grant.id.as_str()).into(),
        );
    }
    v
}

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(e: OpError) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(
        status,
        &serde_json::json!({ "error": status.canonical_reason().unwrap_or("error"), "message": e.message }),
    )
}

fn text(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body.to_owned()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
