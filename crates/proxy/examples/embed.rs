//! Embedding the Custody request path in your own server.
//!
//! The proxy needs three things, each a trait: where grants live ([`GrantDirectory`]),
//! where decisions are recorded ([`LogSink`]) and where scoped credentials come from
//! ([`CredentialSource`]). Here: one in-memory grant, the real session log from
//! `custody-log` (through the proxy's stock `SessionLog` sink, which maps records to
//! entries exactly as the gateway does), and static upstream credentials from the
//! environment; the stack is
//! served with hyper on 127.0.0.1:8440 and forwards to `UPSTREAM` (e.g. a local S3).
//!
//! ```sh
//! UPSTREAM=http://127.0.0.1:9000 AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… \
//!     cargo run -p custody-proxy --example embed
//! ```
//! It prints the agent key pair to use with `AWS_ENDPOINT_URL=http://127.0.0.1:8440`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_credential_types::Credentials;
use custody_grant::{AgentSecret, ApprovalPolicy, Grant, GrantRequest, Limits, Scope, Task};
use custody_log::{Log, LogConfig};
use custody_proxy::session_log::SessionLog;
use custody_proxy::upstream::UpstreamConfig;
use custody_proxy::{
    BoxFuture, ClientAddr, CredentialError, CredentialSource, GrantDirectory, GrantEntry,
    ProxyOptions, Shared,
};
use tower::ServiceExt;

/// One grant, kept in memory.
struct OneGrant {
    grant: Arc<Grant>,
    secret: AgentSecret,
    uses: AtomicU64,
}

impl GrantDirectory for OneGrant {
    fn lookup(&self, access_key_id: &str) -> Option<GrantEntry> {
        (access_key_id == self.grant.access_key_id.as_str()).then(|| GrantEntry {
            grant: self.grant.clone(),
            secret: Arc::from(self.secret.expose_secret()),
            activation_seq: None,
        })
    }

    fn count_request(&self, _grant_id: &str) -> Result<u64, String> {
        Ok(self.uses.fetch_add(1, Ordering::SeqCst))
    }
}

/// Static upstream credentials (an S3-compatible store without STS).
struct StaticCredentials(Credentials);

impl CredentialSource for StaticCredentials {
    fn credentials(&self, _grant: &Grant) -> BoxFuture<'_, Result<Credentials, CredentialError>> {
        let creds = self.0.clone();
        Box::pin(async move { Ok(creds) })
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream = std::env::var("UPSTREAM").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    let creds = Credentials::new(
        std::env::var("AWS_ACCESS_KEY_ID")?,
        std::env::var("AWS_SECRET_ACCESS_KEY")?,
        None,
        None,
        "static",
    );
    let now = time::OffsetDateTime::now_utc();
    let issued = Grant::issue(
        GrantRequest {
            identity: "agent:example".into(),
            task: Task {
                id: "example".into(),
                intent: "read one bucket".into(),
            },
            requester: "operator".into(),
            role_arn: "arn:aws:iam::123456789012:role/example".into(),
            regions: vec!["us-east-1".into()],
            scope: Scope::from_cli([
                "--allow",
                "s3:GetObject,s3:ListBucket",
                "--resource",
                "arn:aws:s3:::bucket",
                "--resource",
                "arn:aws:s3:::bucket/*",
            ])?,
            not_before: None,
            ttl: time::Duration::minutes(15),
            approval_policy: ApprovalPolicy::default(),
            request_budget: None,
        },
        &Limits {
            default_max_ttl: time::Duration::hours(1),
            max_ttl_by_role: Default::default(),
        },
        now,
    )?;
    println!("AWS_ACCESS_KEY_ID={}", issued.grant.access_key_id.as_str());
    println!("AWS_SECRET_ACCESS_KEY={}", issued.secret.expose_secret());

    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let log = Arc::new(Log::open(
        LogConfig::new("example-log", "example.local/embed"),
        key,
    )?);
    let shared = Arc::new(Shared {
        grants: Arc::new(OneGrant {
            grant: Arc::new(issued.grant),
            secret: issued.secret,
            uses: AtomicU64::new(0),
        }),
        sink: Arc::new(SessionLog(log)),
        credentials: Arc::new(StaticCredentials(creds)),
        clock: aws_smithy_async::time::SharedTimeSource::default(),
        options: ProxyOptions {
            upstream: UpstreamConfig::from_endpoint(&upstream)?,
            ..ProxyOptions::default()
        },
    });
    let service = custody_proxy::request_path(shared);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:8440").await?;
    loop {
        let (stream, remote) = listener.accept().await?;
        let service = service.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let service = service.clone();
                    let (mut parts, body) = req.into_parts();
                    parts.extensions.insert(ClientAddr(remote));
                    service.oneshot(http::Request::from_parts(
                        parts,
                        custody_proxy::body::ProxyBody::new(body),
                    ))
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}
