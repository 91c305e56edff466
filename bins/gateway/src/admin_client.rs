//! A small JSON client for the admin API, used by the CLI.

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Errors talking to the admin API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The gateway could not be reached.
    #[error(
        "cannot reach the admin api at `{url}`: {reason} (is `custody-gateway serve` running?)"
    )]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The gateway answered with an error.
    #[error("admin api refused ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The gateway's message.
        message: String,
    },
    /// The answer was not JSON.
    #[error("admin api answered something that is not json: {0}")]
    BadResponse(String),
}

/// A client bound to one admin endpoint and token.
#[derive(Debug)]
pub struct AdminClient {
    base: String,
    token: String,
    extra_root: Option<std::path::PathBuf>,
}

impl AdminClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8433`) with bearer `token`.
    pub fn new(base: String, token: String) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            extra_root: None,
        }
    }

    /// Also trust the certificate(s) in this PEM file: the admin listener's own
    /// (possibly self-signed) certificate from the config.
    pub fn trust(mut self, pem: Option<std::path::PathBuf>) -> Self {
        self.extra_root = pem;
        self
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs_or_empty() {
            let _ = roots.add(cert);
        }
        if let Some(path) = &self.extra_root {
            let pem = std::fs::read(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("`{}`: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("`{}`: {e}", path.display()))?;
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.call(Method::POST, path, Some(body.to_string())).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let connect = |reason: String| ClientError::Connect {
            url: url.clone(),
            reason,
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls_config().map_err(connect)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector({
                // hyper-rustls does the TLS; the plain connector must accept https URIs.
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http
            });
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
        let req = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| connect(e.to_string()))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| connect(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::BadResponse(e.to_string()))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|_| ClientError::BadResponse(String::from_utf8_lossy(&bytes).into_owned()))?;
        if status >= 400 {
            let message = value["message"].as_str().unwrap_or("no message").to_owned();
            return Err(ClientError::Refused { status, message });
        }
        Ok(value)
    }
}

/// The platform's root certificates, or none (plain-http admin URLs need none).
fn rustls_native_certs_or_empty() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}

/// An error and its causes on one line (`client error (Connect): tls: invalid peer
/// certificate …`), since hyper's top-level message alone does not say what failed.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
