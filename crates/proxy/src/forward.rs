//! The innermost service: send the re-signed request upstream with hyper and stream the
//! response back. Redirects are never followed (hyper's client does not), so an upstream
//! cannot bounce a request elsewhere.

use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::ProxyBody;
use crate::error::{Refusal, RefusalKind};
use crate::seams::BoxFuture;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Sends requests upstream over a pooled HTTP/1.1 client, TLS via rustls.
#[derive(Clone)]
pub struct Forward {
    client: Client<Connector, ProxyBody>,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward").finish_non_exhaustive()
    }
}

impl Forward {
    /// A client trusting the platform's root certificates.
    pub fn new() -> Self {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b,
            Err(e) => {
                // No usable system roots: plain-HTTP upstreams (local endpoints) still
                // work, and TLS upstreams fail with a clear handshake error.
                tracing::warn!(error = %e, "no platform root certificates; https upstreams will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map(|b| {
                        b.with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth()
                    });
                match config {
                    Ok(c) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(c),
                    Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                        rustls::ClientConfig::builder()
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth(),
                    ),
                }
            }
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.set_nodelay(true);
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self { client }
    }
}

impl Default for Forward {
    fn default() -> Self {
        Self::new()
    }
}

impl tower::Service<Request<ProxyBody>> for Forward {
    type Response = Response<ProxyBody>;
    type Error = Refusal;
    type Future = BoxFuture<'static, Result<Response<ProxyBody>, Refusal>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ProxyBody>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let response = client.request(req).await.map_err(|e| {
                Refusal::new(
                    RefusalKind::BadGateway,
                    format!("upstream request failed: {e}"),
                )
            })?;
            Ok(response.map(ProxyBody::new))
        })
    }
}
