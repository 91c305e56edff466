//! Shared test helpers.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

pub mod fixture;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use custody_log::{EntryBody, LogConfig, RequestOutcome};
use ed25519_dalek::SigningKey;
use time::OffsetDateTime;

pub const ORIGIN: &str = "custody.test/log";

pub fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// A clock that advances one millisecond per reading from a fixed start.
pub fn stepping_clock() -> custody_log::Clock {
    let t = Arc::new(AtomicI64::new(1_795_000_000_000));
    Arc::new(move || {
        let ms = t.fetch_add(1, Ordering::Relaxed);
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
    })
}

/// Verifier options trusting this log's key.
pub fn opts() -> custody_log::verify::VerifyOptions {
    custody_log::verify::VerifyOptions {
        keys: vec![
            custody_log::parse_vkey(&custody_log::vkey(ORIGIN, &key().verifying_key())).unwrap(),
        ],
        ..Default::default()
    }
}

/// Verify the log in `dir` with [`opts`].
pub fn verify(dir: &Path) -> custody_log::verify::Report {
    custody_log::verify::verify_dir(dir, &opts()).unwrap()
}

pub fn config(dir: &Path) -> LogConfig {
    let mut c = LogConfig::new(dir, ORIGIN);
    c.checkpoint_every_entries = 10;
    c.checkpoint_every = Duration::from_secs(3600);
    c.heartbeat_every = Duration::from_secs(3600);
    c.clock = stepping_clock();
    c
}

pub fn outcome(n: u64) -> EntryBody {
    EntryBody::RequestOutcome(RequestOutcome {
        request_id: format!("r-{n}"),
        decision_seq: n,
        status: 200,
        bytes_in: n,
        bytes_out: 2 * n,
        upstream_request_id: None,
        latency_us: 10,
        error: None,
    })
}

/// Runs a future to completion on this thread (no async runtime).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Parker(Mutex<bool>, Condvar);
    impl Wake for Parker {
        fn wake(self: Arc<Self>) {
            *self.0.lock().unwrap() = true;
            self.1.notify_one();
        }
    }
    let parker = Arc::new(Parker(Mutex::new(false), Condvar::new()));
    let waker = Waker::from(Arc::clone(&parker));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        let mut woken = parker.0.lock().unwrap();
        while !*woken {
            woken = parker.1.wait(woken).unwrap();
        }
        *woken = false;
    }
}

pub fn lines(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (_, p) in custody_log::storage::list_segments(dir).unwrap() {
        let data = std::fs::read(p).unwrap();
        let s = std::str::from_utf8(custody_log::storage::trim_padding(&data)).unwrap();
        out.extend(s.lines().map(str::to_owned));
    }
    out
}
