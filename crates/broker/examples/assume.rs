//! Embedding the broker alone: credentials for one grant, from base credentials in the
//! standard AWS chain (environment, profile, web identity, ECS, instance metadata).
//!
//! ```text
//! AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… \
//! CUSTODY_ROLE_ARN=arn:aws:iam::123456789012:role/reader \
//! CUSTODY_STS_ENDPOINT=http://127.0.0.1:5000 \
//! cargo run -p custody-broker --example assume
//! ```
//!
//! Prints when the credentials expire, never the credentials themselves.

use std::time::{Duration, SystemTime};

use aws_smithy_async::time::SharedTimeSource;
use custody_broker::{BrokerConfig, GrantCredentialsRequest, RoleBroker, StsBroker};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let role_arn = std::env::var("CUSTODY_ROLE_ARN")
        .map_err(|_| "set CUSTODY_ROLE_ARN to the role the grant runs as")?;
    let config = BrokerConfig {
        endpoint: std::env::var("CUSTODY_STS_ENDPOINT").ok(),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        ..BrokerConfig::default()
    };
    let broker = StsBroker::new(config, SharedTimeSource::default()).await?;

    let req = GrantCredentialsRequest {
        grant_id: "g-example".into(),
        role_arn,
        session_policy: Some(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#
                .into(),
        ),
        source_identity: "agent:example".into(),
        task_id: "example".into(),
        expires_at: SystemTime::now() + Duration::from_secs(1800),
    };
    let creds = broker.credentials(&req).await?;
    println!("{creds:?}"); // Debug redacts the secret and omits the session token
    let again = broker.credentials(&req).await?; // served from the cache
    println!("cached: {}", again.access_key_id() == creds.access_key_id());
    broker.revoke(&req.grant_id);
    match broker.credentials(&req).await {
        Err(e) => println!("after revoke: {e} (http {})", e.http_status()),
        Ok(_) => return Err("revoked grant was served".into()),
    }
    Ok(())
}
