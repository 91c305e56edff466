//! A recording relay between the gateway and its upstream: it keeps a copy of every
//! request exactly as the upstream receives it, then passes it on unchanged (same
//! method, path, query, headers and body bytes; only the HTTP framing is redone) and
//! streams the answer back.
//!
//! The [`oracle`](crate::oracle) re-reads these copies and compares them with what the
//! gateway's log says it decided: the evidence that what was recorded is what was done.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::HarnessError;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Captured {
    /// HTTP method.
    pub method: String,
    /// Path and query, as sent.
    pub path_and_query: String,
    /// Every header in order, repeats kept, values as bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body as received (HTTP framing removed).
    pub body: Bytes,
}

/// The relay: a loopback HTTP server in front of one upstream.
pub struct Relay {
    addr: SocketAddr,
    captured: Arc<Mutex<Vec<Captured>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type RelayBody = BoxBody<Bytes, hyper::Error>;

// === impl Relay ===

impl Relay {
    /// Starts a relay on a free loopback port in front of `upstream`
    /// (`http://host:port`).
    pub fn start(upstream: &str) -> Result<Self, HarnessError> {
        Self::spawn(Some(Arc::from(upstream.trim_end_matches('/'))))
    }

    /// Starts a relay that records and answers every request itself (`200`, `{}`), for
    /// tests that judge only what would have been forwarded.
    pub fn start_answering() -> Result<Self, HarnessError> {
        Self::spawn(None)
    }

    fn spawn(upstream: Option<Arc<str>>) -> Result<Self, HarnessError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let captured: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let store = captured.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("fidelity-relay".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let client: Client<HttpConnector, Full<Bytes>> =
                        Client::builder(TokioExecutor::new()).build_http();
                    loop {
                        let accepted = tokio::select! {
                            a = listener.accept() => a,
                            _ = &mut rx => return,
                        };
                        let Ok((stream, _)) = accepted else { continue };
                        let (client, store, upstream) =
                            (client.clone(), store.clone(), upstream.clone());
                        tokio::spawn(async move {
                            let service = service_fn(move |req| {
                                relay(req, client.clone(), store.clone(), upstream.clone())
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                });
            })?;
        Ok(Self {
            addr,
            captured,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The relay's address as an endpoint URL: configure it as the gateway's upstream.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests have been relayed so far.
    pub fn count(&self) -> usize {
        self.captured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Every request relayed so far.
    pub fn captured(&self) -> Vec<Captured> {
        self.captured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn relay(
    req: Request<Incoming>,
    client: Client<HttpConnector, Full<Bytes>>,
    store: Arc<Mutex<Vec<Captured>>>,
    upstream: Option<Arc<str>>,
) -> Result<Response<RelayBody>, Infallible> {
    let (parts, body) = req.into_parts();
    // A body the gateway aborted (it failed its signature check on the way) never
    // reaches the upstream: nothing is recorded or forwarded.
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(answer(502, "relay: the request body was aborted"));
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    store
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Captured {
            method: parts.method.as_str().to_owned(),
            path_and_query: path_and_query.clone(),
            headers,
            body: body.clone(),
        });
    let Some(upstream) = upstream else {
        return Ok(answer(200, "{}"));
    };
    let Ok(uri) = format!("{upstream}{path_and_query}").parse::<http::Uri>() else {
        return Ok(answer(502, "relay: bad upstream uri"));
    };
    let mut out = Request::new(Full::new(body));
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    let mut headers = parts.headers;
    // The body is re-framed with a length; everything else goes as received.
    headers.remove(http::header::TRANSFER_ENCODING);
    *out.headers_mut() = headers;
    match client.request(out).await {
        Ok(resp) => Ok(resp.map(|b| b.boxed())),
        Err(e) => Ok(answer(502, &format!("relay: upstream failed: {e}"))),
    }
}

fn answer(status: u16, text: &str) -> Response<RelayBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(text.to_owned()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    resp
}
