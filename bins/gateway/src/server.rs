//! Listeners: accept TCP (optionally TLS), serve HTTP/1.1 with hyper, stop gracefully.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

use custody_proxy::body::ProxyBody;

use crate::limits::{FirstBytes, Gate};

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

/// Bind `addr` once, as a std listener (registered later with the runtime that accepts on
/// it, [`bind_tokio`]).
pub fn bind_std(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    let err = |source: std::io::Error| ServerError::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(1024).map_err(err)?.into_std().map_err(err)
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
    bind_tokio(bind_std(addr)?)
}

/// What one listener's connections are held to.
#[derive(Clone)]
pub struct ConnectionLimits {
    /// The cap on open connections.
    pub gate: Arc<Gate>,
    /// How long a connection may take to send its first bytes and each request head
    /// (and so how long an idle keep-alive connection stays open); also the TLS
    /// handshake's limit.
    pub header_timeout: Duration,
}

/// Serve `handler` on `listener` until `shutdown` turns true, then drain open
/// connections for up to `drain`.
pub async fn serve<H, F>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
    limits: ConnectionLimits,
) where
    H: Fn(Request<Incoming>, RemoteAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        let (permit, (stream, remote)) = tokio::select! {
            admitted = admit_and_accept(&limits.gate, &listener) => admitted,
            _ = shutdown.changed() => break,
        };
        spawn_connection(
            stream,
            remote,
            tls.as_ref(),
            handler.clone(),
            &graceful,
            permit,
            limits.header_timeout,
        );
    }
    drop(listener);
    drain_connections(graceful, drain).await;
}

/// A permit under the listener's cap, then the next connection.
async fn admit_and_accept(
    gate: &Gate,
    listener: &TcpListener,
) -> (
    Option<OwnedSemaphorePermit>,
    (tokio::net::TcpStream, SocketAddr),
) {
    let permit = gate.admit().await;
    (permit, accept(listener).await)
}

/// One thread serving connections handed to it by [`dispatch`]: the receiving end of a
/// lane.
pub struct LaneReceiver {
    streams: mpsc::UnboundedReceiver<Handed>,
    open: Gauge,
}

/// The sending end of a lane, held by [`dispatch`].
pub struct Lane {
    streams: mpsc::UnboundedSender<Handed>,
    open: Gauge,
}

/// A connection handed to a lane, with its place under the listener's cap.
type Handed = (
    std::net::TcpStream,
    SocketAddr,
    Option<OwnedSemaphorePermit>,
);

/// A lane to one serving thread; `open` counts the connections it holds (the dispatcher
/// reads it to pick the least loaded lane, and it is exported as a metric).
pub fn lane(open: Gauge) -> (Lane, LaneReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Lane {
            streams: tx,
            open: open.clone(),
        },
        LaneReceiver { streams: rx, open },
    )
}

/// Accept on `listener` until `shutdown` turns true and hand each connection to the lane
/// with the fewest open connections (ties taken in turn). One acceptor instead of a
/// `SO_REUSEPORT` listener per thread: the kernel's address hash can put several busy
/// connections on one thread while another idles, and with no work stealing between
/// the threads that imbalance would last as long as the connections.
pub async fn dispatch(
    listener: TcpListener,
    lanes: Vec<Lane>,
    mut shutdown: watch::Receiver<bool>,
    gate: Arc<Gate>,
) {
    let mut turn = 0usize;
    loop {
        let (permit, (stream, remote)) = tokio::select! {
            admitted = admit_and_accept(&gate, &listener) => admitted,
            _ = shutdown.changed() => break,
        };
        // Registered with the chosen thread's runtime there, so out of this one first.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, %remote, "cannot hand over a connection");
                continue;
            }
        };
        let n = lanes.len();
        let Some(lane) = (0..n)
            .map(|k| &lanes[(turn + k) % n])
            .min_by_key(|lane| lane.open.get())
        else {
            break;
        };
        turn = turn.wrapping_add(1);
        lane.open.inc();
        if lane.streams.send((stream, remote, permit)).is_err() {
            // That thread has stopped (only while shutting down).
            lane.open.dec();
        }
    }
}

/// Serve the connections arriving on `lane` until `shutdown` turns true or the dispatcher
/// stops, then drain them for up to `drain`. Runs on the thread that owns the lane.
pub async fn serve_lane<H, F>(
    mut lane: LaneReceiver,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
    header_timeout: Duration,
) where
    H: Fn(Request<Incoming>, RemoteAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    LANE_OPEN.with(|open| *open.borrow_mut() = Some(lane.open.clone()));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote, permit) = tokio::select! {
            next = lane.streams.recv() => match next {
                Some(handed) => handed,
                None => break,
            },
            _ = shutdown.changed() => break,
        };
        // Counted open by the dispatcher; uncounted (and its place under the cap freed)
        // when the connection task ends.
        let open = (OpenConnection(lane.open.clone()), permit);
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, %remote, "cannot take over a connection");
                continue;
            }
        };
        spawn_connection(
            stream,
            remote,
            tls.as_ref(),
            handler.clone(),
            &graceful,
            open,
            header_timeout,
        );
    }
    drop(lane);
    drain_connections(graceful, drain).await;
}

thread_local! {
    /// The open-connection count of the lane this thread serves; set on agent threads
    /// only (by [`serve_lane`]).
    static LANE_OPEN: RefCell<Option<Gauge>> = const { RefCell::new(None) };
}

/// On an agent thread, its open connections (those being served and those handed to it
/// and not yet taken over); `None` off the agent threads. A request is alone on its
/// thread when this is 1 (HTTP/1.1: one request at a time per connection).
pub fn open_on_this_thread() -> Option<i64> {
    LANE_OPEN.with(|open| open.borrow().as_ref().map(Gauge::get))
}

/// Decrements a lane's open-connection gauge when dropped.
struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The next connection; accept errors (e.g. out of file descriptors) are logged and
/// retried after a pause rather than ending the listener.
async fn accept(listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                return (stream, remote);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serve one connection on the current runtime (after the TLS handshake when `tls` is
/// set), watched by `graceful`; `guard` is dropped when the connection ends.
fn spawn_connection<H, F, G>(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    handler: H,
    graceful: &GracefulShutdown,
    guard: G,
    header_timeout: Duration,
) where
    H: Fn(Request<Incoming>, RemoteAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
    G: Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let fut = handler(req, RemoteAddr(remote));
        async move { Ok::<_, Infallible>(fut.await) }
    });
    // HTTP/1.1 and HTTP/2 are both accepted so that HTTP/2 requests get a clear answer
    // (the agent handler refuses them) instead of a dropped connection.
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    // A slow request head (or a keep-alive connection idle for that long) is closed.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(8)
        .keep_alive_interval(Some(header_timeout))
        .keep_alive_timeout(header_timeout);
    // Saying nothing at all is bounded too (hyper reads some bytes before its timers).
    let stream = FirstBytes::new(stream, header_timeout);
    match tls {
        None => {
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, %remote, "connection ended with error");
                }
                drop(guard);
            });
        }
        Some(acceptor) => {
            let acceptor = acceptor.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(header_timeout, acceptor.accept(stream));
                let stream = match handshake.await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, %remote, "tls handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "tls handshake timed out");
                        return;
                    }
                };
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(error = %e, %remote, "connection ended with error");
                }
                drop(guard);
            });
        }
    }
}

/// Wait up to `drain` for the connections watched by `graceful` to finish.
async fn drain_connections(graceful: GracefulShutdown, drain: Duration) {
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {drain:?}; closing them");
    }
}
