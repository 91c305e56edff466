//! `StsBroker` against moto's STS with signature checking and IAM enforcement on, behind a
//! recording relay so the AssumeRole parameters are asserted on the wire.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_smithy_async::time::SharedTimeSource;
use custody_broker::{
    BrokerConfig, BrokerError, Credentials, GrantCredentialsRequest, RoleBroker, StsBroker,
};
use custody_test_support::{AwsEnv, Bootstrap, FixedClock, MotoServer, run_python};
use support::{Action, Relay, sts_error};

const GATEWAY: &str = "custody-gateway";

fn reader_policy() -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": ["arn:aws:s3:::reports", "arn:aws:s3:::reports/*"]
        }]
    })
}

fn session_policy() -> String {
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::reports/k"}]}"#.into()
}

fn start_moto(plan: &Bootstrap) -> MotoServer {
    MotoServer::start(plan).expect("moto starts (run the README's test command)")
}

fn gateway_keys(moto: &MotoServer) -> Credentials {
    let user = moto.user(GATEWAY).unwrap();
    Credentials::new(
        &user.access_key_id,
        &user.secret_access_key,
        None,
        None,
        "moto-gateway-user",
    )
}

fn fast_retries(endpoint: String) -> BrokerConfig {
    BrokerConfig {
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        retry_base_delay: Duration::from_millis(10),
        retry_max_delay: Duration::from_millis(50),
        ..BrokerConfig::default()
    }
}

async fn broker(config: BrokerConfig, base: Credentials, clock: &FixedClock) -> StsBroker {
    StsBroker::with_credentials(config, base, SharedTimeSource::new(clock.clone()))
        .await
        .unwrap()
}

fn grant(id: &str, role_arn: &str, expires_at: SystemTime) -> GrantCredentialsRequest {
    GrantCredentialsRequest {
        grant_id: id.into(),
        role_arn: role_arn.into(),
        session_policy: Some(session_policy()),
        source_identity: "agent:report-bot".into(),
        task_id: "weekly report".into(),
        expires_at,
    }
}

/// Run boto3 against moto with the assumed-role credentials.
fn s3_as(moto: &MotoServer, creds: &Credentials) -> String {
    let code = format!(
        r#"
import boto3
s3 = boto3.client("s3", aws_access_key_id="{}", aws_secret_access_key="{}", aws_session_token="{}")
print("GET", s3.get_object(Bucket="reports", Key="k")["Body"].read().decode())
try:
    s3.put_object(Bucket="reports", Key="new", Body=b"x")
    print("PUT allowed")
except Exception as e:
    print("PUT denied", e.response["Error"]["Code"])
"#,
        creds.access_key_id(),
        creds.secret_access_key(),
        creds.session_token().unwrap(),
    );
    let env = AwsEnv::new(moto.endpoint(), "unused", "unused");
    let out = run_python(&code, &env).unwrap();
    assert!(out.success(), "boto3 failed: {}", out.stderr);
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assumed_credentials_work_and_the_wire_request_carries_the_grant() {
    let moto = start_moto(
        &Bootstrap::with_gateway_user()
            .role("reader", reader_policy())
            .untrusted_role("locked", reader_policy())
            .bucket("reports", &[("k", "v")]),
    );
    let relay = Relay::start(moto.port()).await;
    let clock = FixedClock::at(SystemTime::now());
    let broker = broker(fast_retries(relay.endpoint()), gateway_keys(&moto), &clock).await;
    let role = moto.role_arn("reader").unwrap().to_owned();
    let req = grant("g-01HZY3", &role, clock.now() + Duration::from_secs(7200));

    let creds = broker.credentials(&req).await.unwrap();

    // Moto enforces the role's permissions on the assumed-role credentials.
    let out = s3_as(&moto, &creds);
    assert!(out.contains("GET v"), "{out}");
    assert!(out.contains("PUT denied AccessDenied"), "{out}");
    assert!(creds.expiry().unwrap() <= req.expires_at);

    // What moto ignores is asserted on the request as it went over the wire.
    let requests = relay.requests();
    assert_eq!(requests.len(), 1);
    let auth = requests[0].header("authorization").unwrap();
    let gateway_key = &moto.user(GATEWAY).unwrap().access_key_id;
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={gateway_key}/")),
        "{auth}"
    );
    let form = requests[0].form();
    let expected: Vec<(&str, String)> = vec![
        ("Action", "AssumeRole".into()),
        ("DurationSeconds", "7200".into()),
        ("Policy", session_policy()),
        ("RoleArn", role.clone()),
        ("RoleSessionName", "g-01HZY3".into()),
        ("SourceIdentity", "agent=3Areport-bot".into()),
        ("Tags.member.1.Key", "custody:task".into()),
        ("Tags.member.1.Value", "weekly=20report".into()),
        ("Tags.member.2.Key", "custody:grant".into()),
        ("Tags.member.2.Value", "g-01HZY3".into()),
        ("Version", "2011-06-15".into()),
    ];
    let expected: std::collections::BTreeMap<String, String> = expected
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(form, expected);

    // Secrets never show in Debug output.
    let shown = format!("{creds:?} {broker:?}");
    assert!(!shown.contains(creds.secret_access_key()), "{shown}");
    assert!(!shown.contains(creds.session_token().unwrap()), "{shown}");
    assert!(!shown.contains(&moto.user(GATEWAY).unwrap().secret_access_key));

    // A role whose trust policy does not name the gateway: a clear, final error.
    let locked = moto.role_arn("locked").unwrap().to_owned();
    let err = broker
        .credentials(&grant("g-locked", &locked, req.expires_at))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BrokerError::RoleNotTrusted { role, message } if *role == locked && message.contains("not authorized")),
        "{err:?}"
    );
    assert_eq!(err.http_status(), 403);
    assert!(!err.is_retryable());
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "role `{locked}` does not trust the gateway principal"
        )),
        "{msg}"
    );
    assert_eq!(
        relay.assume_role_calls().len(),
        2,
        "access denied is not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_requests_for_one_grant_make_one_assume_role() {
    let moto = start_moto(&Bootstrap::with_gateway_user().role("reader", reader_policy()));
    // Hold each AssumeRole a while, so all hundred requests arrive while it is in flight.
    let relay = Relay::scripted(
        moto.port(),
        Arc::new(|_, _| Action::ForwardAfter(Duration::from_millis(300))),
    )
    .await;
    let clock = FixedClock::at(SystemTime::now());
    let broker: Arc<dyn RoleBroker> =
        Arc::new(broker(fast_retries(relay.endpoint()), gateway_keys(&moto), &clock).await);
    let role = moto.role_arn("reader").unwrap().to_owned();
    let req = Arc::new(grant(
        "g-busy",
        &role,
        clock.now() + Duration::from_secs(3600),
    ));

    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let broker = Arc::clone(&broker);
            let req = Arc::clone(&req);
            tokio::spawn(async move { broker.credentials(&req).await })
        })
        .collect();
    let mut keys = std::collections::BTreeSet::new();
    for task in tasks {
        keys.insert(task.await.unwrap().unwrap().access_key_id().to_owned());
    }
    assert_eq!(keys.len(), 1, "every request got the same credentials");
    assert_eq!(relay.assume_role_calls().len(), 1);

    // Another grant is another call.
    broker
        .credentials(&grant("g-other", &role, req.expires_at))
        .await
        .unwrap();
    assert_eq!(relay.assume_role_calls().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_refresh_ahead_of_expiry_and_never_outlive_the_grant() {
    let moto = start_moto(&Bootstrap::with_gateway_user().role("reader", reader_policy()));
    let relay = Relay::start(moto.port()).await;
    let clock = FixedClock::at(SystemTime::now());
    let config = BrokerConfig {
        refresh_margin: Duration::from_secs(300),
        max_session_duration: Duration::from_secs(3600),
        ..fast_retries(relay.endpoint())
    };
    let broker = broker(config, gateway_keys(&moto), &clock).await;
    let role = moto.role_arn("reader").unwrap().to_owned();
    let start = clock.now();
    let req = grant("g-long", &role, start + Duration::from_secs(3 * 3600));

    let first = broker.credentials(&req).await.unwrap();
    let calls = relay.assume_role_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0]["DurationSeconds"], "3600",
        "clamped to the configured maximum"
    );
    let first_expiry = first.expiry().unwrap();

    // Just before the refresh margin: served from the cache.
    clock.advance(Duration::from_secs(3600 - 300 - 5));
    let again = broker.credentials(&req).await.unwrap();
    assert_eq!(again.access_key_id(), first.access_key_id());
    assert_eq!(relay.assume_role_calls().len(), 1);

    // Inside the margin, while the old credentials are still valid: refreshed.
    clock.advance(Duration::from_secs(10));
    assert!(clock.now() < first_expiry);
    let refreshed = broker.credentials(&req).await.unwrap();
    assert_ne!(refreshed.access_key_id(), first.access_key_id());
    let calls = relay.assume_role_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["DurationSeconds"], "3600");
    assert!(refreshed.expiry().unwrap() <= req.expires_at);

    // A grant with ten minutes left: STS's 900 s minimum is asked for, but the credentials
    // are handed out only until the grant ends. (Moto dates credentials by the real clock,
    // so the fixed clock goes back to it first.)
    clock.set(SystemTime::now());
    let short = grant("g-short", &role, clock.now() + Duration::from_secs(600));
    let creds = broker.credentials(&short).await.unwrap();
    let calls = relay.assume_role_calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[2]["DurationSeconds"], "900");
    assert_eq!(creds.expiry(), Some(short.expires_at));
    clock.advance(Duration::from_secs(599));
    broker.credentials(&short).await.unwrap();
    clock.advance(Duration::from_secs(1));
    let err = broker.credentials(&short).await.unwrap_err();
    assert!(matches!(err, BrokerError::GrantExpired { .. }), "{err:?}");
    assert_eq!(
        relay.assume_role_calls().len(),
        3,
        "nothing fetched past the grant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_is_no_longer_served() {
    let moto = start_moto(&Bootstrap::with_gateway_user().role("reader", reader_policy()));
    // The second grant's AssumeRole is held long enough to revoke while it is in flight.
    let relay = Relay::scripted(
        moto.port(),
        Arc::new(|req, _| {
            if req.form().get("RoleSessionName").map(String::as_str) == Some("g-inflight") {
                Action::ForwardAfter(Duration::from_millis(500))
            } else {
                Action::Forward
            }
        }),
    )
    .await;
    let clock = FixedClock::at(SystemTime::now());
    let broker =
        Arc::new(broker(fast_retries(relay.endpoint()), gateway_keys(&moto), &clock).await);
    let role = moto.role_arn("reader").unwrap().to_owned();
    let expires = clock.now() + Duration::from_secs(3600);

    let req = grant("g-revoked", &role, expires);
    broker.credentials(&req).await.unwrap();
    broker.credentials(&req).await.unwrap();
    assert_eq!(relay.assume_role_calls().len(), 1);
    broker.revoke("g-revoked");
    let err = broker.credentials(&req).await.unwrap_err();
    assert!(matches!(err, BrokerError::Revoked { .. }), "{err:?}");
    assert_eq!(err.http_status(), 403);
    assert_eq!(
        relay.assume_role_calls().len(),
        1,
        "no new AssumeRole for it either"
    );

    // Revoked while its AssumeRole is in flight: the fresh credentials are not served.
    let inflight = grant("g-inflight", &role, expires);
    let task = {
        let broker = Arc::clone(&broker);
        tokio::spawn(async move { broker.credentials(&inflight).await })
    };
    while relay.assume_role_calls().len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    broker.revoke("g-inflight");
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, BrokerError::Revoked { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_errors_are_retried_learned_or_reported() {
    let moto = start_moto(&Bootstrap::with_gateway_user().role("reader", reader_policy()));
    let clock = FixedClock::at(SystemTime::now());
    let role = moto.role_arn("reader").unwrap().to_owned();
    let expires = clock.now() + Duration::from_secs(7200);

    // Throttled twice, then moto answers: retried with backoff, the third call succeeds.
    let relay = Relay::scripted(
        moto.port(),
        Arc::new(|_, i| {
            if i < 2 {
                Action::Respond(400, sts_error("Throttling", "Rate exceeded"))
            } else {
                Action::Forward
            }
        }),
    )
    .await;
    let b = broker(fast_retries(relay.endpoint()), gateway_keys(&moto), &clock).await;
    b.credentials(&grant("g-throttled", &role, expires))
        .await
        .unwrap();
    let calls = relay.assume_role_calls();
    assert_eq!(calls.len(), 3);
    assert!(
        calls.iter().all(|c| *c == calls[0]),
        "retries repeat the same request"
    );

    // A role whose MaxSessionDuration is below what the grant needs: asked again with 1 h,
    // and the next grant for that role asks for 1 h straight away.
    let relay = Relay::scripted(
        moto.port(),
        Arc::new(|req, _| {
            let asked: u32 = req.form()["DurationSeconds"].parse().unwrap();
            if asked > 3600 {
                Action::Respond(
                    400,
                    sts_error(
                        "ValidationError",
                        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
                    ),
                )
            } else {
                Action::Forward
            }
        }),
    )
    .await;
    let b = broker(fast_retries(relay.endpoint()), gateway_keys(&moto), &clock).await;
    b.credentials(&grant("g-long-1", &role, expires))
        .await
        .unwrap();
    b.credentials(&grant("g-long-2", &role, expires))
        .await
        .unwrap();
    let asked: Vec<String> = relay
        .assume_role_calls()
        .iter()
        .map(|c| c["DurationSeconds"].clone())
        .collect();
    assert_eq!(asked, ["7200", "3600", "3600"]);

    // STS throttles a refresh ahead of expiry: the current credentials are still valid, so
    // they are served, and STS is left alone for a while rather than asked per request.
    let relay = Relay::scripted(
        moto.port(),
        Arc::new(|_, i| {
            if i == 0 {
                Action::Forward
            } else {
                Action::Respond(400, sts_error("Throttling", "Rate exceeded"))
            }
        }),
    )
    .await;
    let config = BrokerConfig {
        max_retries: 1,
        max_session_duration: Duration::from_secs(3600),
        ..fast_retries(relay.endpoint())
    };
    let own_clock = FixedClock::at(SystemTime::now());
    let b = broker(config, gateway_keys(&moto), &own_clock).await;
    let req = grant(
        "g-refresh-throttled",
        &role,
        own_clock.now() + Duration::from_secs(7200),
    );
    let first = b.credentials(&req).await.unwrap();
    own_clock.advance(Duration::from_secs(3600 - 200));
    let served = b.credentials(&req).await.unwrap();
    assert_eq!(served.access_key_id(), first.access_key_id());
    assert_eq!(
        relay.assume_role_calls().len(),
        3,
        "one call, then a refresh and its retry"
    );
    b.credentials(&req).await.unwrap();
    assert_eq!(relay.assume_role_calls().len(), 3, "the next refresh waits");
    own_clock.advance(Duration::from_secs(11));
    b.credentials(&req).await.unwrap();
    assert_eq!(relay.assume_role_calls().len(), 5, "then tries again");

    // Policy plus tags too large once packed: reported, not retried.
    let relay = Relay::scripted(
        moto.port(),
        Arc::new(|_, _| {
            Action::Respond(
                400,
                sts_error(
                    "PackedPolicyTooLarge",
                    "Packed policy consumes 112% of allotted space",
                ),
            )
        }),
    )
    .await;
    let b = broker(fast_retries(relay.endpoint()), gateway_keys(&moto), &clock).await;
    let err = b
        .credentials(&grant("g-big", &role, expires))
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::PolicyTooLarge { .. }), "{err:?}");
    assert_eq!(relay.assume_role_calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_without_moto_fail_closed() {
    let clock = FixedClock::at(SystemTime::now());
    let keys = Credentials::new("AKIDEXAMPLE", "not-a-real-secret", None, None, "test");
    let role = "arn:aws:iam::123456789012:role/reader";
    let expires = clock.now() + Duration::from_secs(3600);

    // Nothing listens: 503 after the bounded retries.
    let closed = custody_test_support::free_port().unwrap();
    let config = BrokerConfig {
        max_retries: 2,
        ..fast_retries(format!("http://127.0.0.1:{closed}"))
    };
    let b = broker(config, keys.clone(), &clock).await;
    let err = b
        .credentials(&grant("g-down", role, expires))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BrokerError::Unavailable { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(err.http_status(), 503);
    assert!(err.is_retryable());

    // Throttled on every call: gives up after the bounded retries.
    let relay = Relay::scripted(
        closed,
        Arc::new(|_, _| Action::Respond(400, sts_error("Throttling", "Rate exceeded"))),
    )
    .await;
    let config = BrokerConfig {
        max_retries: 2,
        ..fast_retries(relay.endpoint())
    };
    let b = broker(config, keys.clone(), &clock).await;
    let err = b
        .credentials(&grant("g-slow", role, expires))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BrokerError::Throttled { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(err.http_status(), 503);
    assert_eq!(relay.assume_role_calls().len(), 3);

    // Refused before any call: a policy over STS's plain-text limit, an expired grant.
    let relay = Relay::start(closed).await;
    let b = broker(fast_retries(relay.endpoint()), keys, &clock).await;
    let mut big = grant("g-huge", role, expires);
    big.session_policy = Some("x".repeat(3000));
    let err = b.credentials(&big).await.unwrap_err();
    assert!(
        matches!(err, BrokerError::PolicyTooLarge { size: 3000, .. }),
        "{err:?}"
    );
    let err = b
        .credentials(&grant("g-old", role, clock.now()))
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::GrantExpired { .. }), "{err:?}");
    assert!(relay.requests().is_empty());
}
