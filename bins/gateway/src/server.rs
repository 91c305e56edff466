//! Listeners: accept TCP (optionally TLS), serve HTTP/1.1 with hyper, stop gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use custody_proxy::body::ProxyBody;

/// The remote address of the connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// Errors setting up a listener.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A TLS certificate or key could not be loaded.
    #[error("tls: `{path}`: {reason}")]
    Tls {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Load a rustls server config from PEM files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    let tls_err = |path: &Path, reason: String| ServerError::Tls {
        path: path.display().to_string(),
        reason,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| tls_err(cert, e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(cert, "no certificate in file".into()));
    }
    let key_pem = std::fs::read(key).map_err(|e| tls_err(key, e.to_string()))?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| tls_err(key, e.to_string()))?
        .ok_or_else(|| tls_err(key, "no private key in file".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls_err(key, e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Bind `addr` `n` times: one listener, or `n` with `SO_REUSEPORT` (the kernel spreads
/// new connections over them), for `n` single-threaded runtimes. Returned as std listeners
/// so that each can be registered with the runtime that serves it ([`bind_tokio`]).
pub fn bind_shared(addr: SocketAddr, n: usize) -> Result<Vec<std::net::TcpListener>, ServerError> {
    let err = |addr: SocketAddr| move |source: std::io::Error| ServerError::Bind { addr, source };
    let mut out: Vec<std::net::TcpListener> = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        // After the first, bind the port it got (the address may say port 0).
        let at = match out.first() {
            Some(l) => l.local_addr().map_err(err(addr))?,
            None => addr,
        };
        let socket = if at.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(err(at))?;
        socket.set_reuseaddr(true).map_err(err(at))?;
        if n > 1 {
            socket.set_reuseport(true).map_err(err(at))?;
        }
        socket.bind(at).map_err(err(at))?;
        let listener = socket.listen(1024).map_err(err(at))?;
        out.push(listener.into_std().map_err(err(at))?);
    }
    Ok(out)
}

/// Register a std listener with the current runtime.
pub fn bind_tokio(listener: std::net::TcpListener) -> Result<TcpListener, ServerError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Bind `addr` once, on the current runtime.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let listener = bind_shared(addr, 1)?
        .pop()
        .ok_or_else(|| ServerError::Bind {
            addr,
            source: std::io::ErrorKind::AddrNotAvailable.into(),
        })?;
    bind_tokio(listener)
}

/// Serve `handler` on `listener` until `shutdown` turns true, then drain open
/// connections for up to `drain`.
pub async fn serve<H, F>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) where
    H: Fn(Request<Incoming>, RemoteAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let fut = handler(req, RemoteAddr(remote));
            async move { Ok::<_, Infallible>(fut.await) }
        });
        // HTTP/1.1 and HTTP/2 are both accepted so that HTTP/2 requests get a clear answer
        // (the agent handler refuses them) instead of a dropped connection.
        let builder =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        match &tls {
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %remote, "connection ended with error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match acceptor.accept(stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(error = %e, %remote, "tls handshake failed");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(error = %e, %remote, "connection ended with error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {drain:?}; closing them");
    }
}
