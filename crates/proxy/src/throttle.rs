//! Request rate limits: a token bucket per source address (checked before anything else,
//! so it also bounds what strangers make the gateway verify) and one per grant (checked
//! once the signature is verified, so nobody but the grant's holder can spend its
//! tokens). Both are off unless configured. A refused request gets the protocol's
//! throttling error, which SDKs retry with backoff, and is recorded (counted past the
//! first few per window, like other floods: see [`crate::tally`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// One limit: `rate` requests per second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size.
    pub burst: f64,
}

/// Buckets are forgotten once full again: past this many keys, the full ones are swept,
/// and if more than half are still in use, all are (their sources start again with a
/// full burst). The map stays bounded whatever the number of sources, and a sweep costs
/// at most one pass per `SWEEP_AT / 2` new sources.
const SWEEP_AT: usize = 4096;

struct Buckets<K> {
    rate: Rate,
    map: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(rate: Rate) -> Self {
        Self {
            rate,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Take a token for `key`; `false` if its bucket is empty.
    fn take(&self, key: &K, now: Instant) -> bool {
        let Rate { per_second, burst } = self.rate;
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= SWEEP_AT && !map.contains_key(key) {
            // A bucket that has refilled holds nothing a new one would not.
            map.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second < burst
            });
            if map.len() > SWEEP_AT / 2 {
                map.clear();
            }
        }
        let (tokens, at) = map.entry(key.clone()).or_insert((burst, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The configured limits; clones share their buckets. The default limits nothing.
#[derive(Clone, Default)]
pub struct RateLimits {
    per_source: Option<Arc<Buckets<IpAddr>>>,
    per_grant: Option<Arc<Buckets<String>>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("per_source", &self.per_source.as_ref().map(|b| b.rate))
            .field("per_grant", &self.per_grant.as_ref().map(|b| b.rate))
            .finish()
    }
}

impl RateLimits {
    /// Limits per source address and per grant (`None`: no limit).
    pub fn new(per_source: Option<Rate>, per_grant: Option<Rate>) -> Self {
        Self {
            per_source: per_source.map(|r| Arc::new(Buckets::new(r))),
            per_grant: per_grant.map(|r| Arc::new(Buckets::new(r))),
        }
    }

    /// Whether `source` may send another request now.
    pub fn source_allows(&self, source: IpAddr) -> bool {
        self.per_source
            .as_ref()
            .is_none_or(|b| b.take(&source, Instant::now()))
    }

    /// Whether the grant `grant_id` may make another request now.
    pub fn grant_allows(&self, grant_id: &str) -> bool {
        self.per_grant
            .as_ref()
            .is_none_or(|b| b.take(&grant_id.to_owned(), Instant::now()))
    }

    /// The per-source limit, if any.
    pub fn per_source(&self) -> Option<Rate> {
        self.per_source.as_ref().map(|b| b.rate)
    }

    /// The per-grant limit, if any.
    pub fn per_grant(&self) -> Option<Rate> {
        self.per_grant.as_ref().map(|b| b.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let b = Buckets::new(Rate {
            per_second: 10.0,
            burst: 3.0,
        });
        let t0 = Instant::now();
        assert!((0..3).all(|_| b.take(&1, t0)));
        assert!(!b.take(&1, t0));
        // Another key has its own bucket.
        assert!(b.take(&2, t0));
        // 100 ms later, one more token.
        assert!(b.take(&1, t0 + Duration::from_millis(100)));
        assert!(!b.take(&1, t0 + Duration::from_millis(100)));
        // Never more than the burst, however long the wait.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(&1, later)).count(), 3);
    }

    #[test]
    fn full_buckets_are_swept_so_sources_cannot_grow_the_map() {
        let b = Buckets::new(Rate {
            per_second: 1000.0,
            burst: 1.0,
        });
        let t0 = Instant::now();
        for i in 0..(SWEEP_AT as u32 * 3) {
            b.take(&i, t0 + Duration::from_millis(u64::from(i)));
        }
        assert!(b.map.lock().unwrap_or_else(PoisonError::into_inner).len() <= SWEEP_AT);
        // Sources that never refill: swept all at once.
        for i in 0..(SWEEP_AT as u32 * 3) {
            b.take(&i, t0);
        }
        assert!(b.map.lock().unwrap_or_else(PoisonError::into_inner).len() <= SWEEP_AT);
    }

    #[test]
    fn no_limit_by_default() {
        let l = RateLimits::default();
        assert!((0..10_000).all(|_| l.source_allows(IpAddr::from([1, 2, 3, 4]))));
        assert!((0..10_000).all(|_| l.grant_allows("g")));
    }
}
