//! Durable appends per second with 1, 8 and 64 concurrent writers (group
//! commit: one fdatasync per batch), and verification throughput.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark setup fails loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_main};
use custody_log::{EntryBody, Log, LogConfig, RequestOutcome};
use ed25519_dalek::SigningKey;

fn body(n: u64) -> EntryBody {
    EntryBody::RequestOutcome(RequestOutcome {
        request_id: format!("req-{n:016x}"),
        decision_seq: n,
        status: 200,
        bytes_in: 1024,
        bytes_out: 4096,
        upstream_request_id: Some("EXAMPLE0REQUEST0ID".into()),
        latency_us: 1500,
        error: None,
    })
}

fn appends(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable_append");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for writers in [1u64, 8, 64] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = LogConfig::new(dir.path(), "bench.custody/log");
        cfg.checkpoint_every_entries = 10_000;
        let log = Arc::new(Log::open(cfg, SigningKey::from_bytes(&[1; 32])).unwrap());
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(writers);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for w in 0..writers {
                        let log = Arc::clone(&log);
                        s.spawn(move || {
                            for i in 0..per {
                                log.append(body(w * per + i)).unwrap();
                            }
                        });
                    }
                });
                // Scale to the requested count.
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per * writers) as f64)
            });
        });
        log.close().unwrap();
    }
    g.finish();
}

mod group {
    #![allow(missing_docs, reason = "criterion macro output")]
    criterion::criterion_group!(benches, super::appends);
}
use group::benches;

criterion_main!(benches);
