//! A clock tests set and advance by hand.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// A clock that only moves when a test moves it. Clones share the same time.
#[derive(Debug, Clone)]
pub struct FixedClock {
    now: Arc<Mutex<SystemTime>>,
}

impl FixedClock {
    /// A clock stopped at `at`.
    pub fn at(at: SystemTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(at)),
        }
    }

    /// A clock stopped at `unix_seconds` after the epoch.
    pub fn at_unix(unix_seconds: u64) -> Self {
        Self::at(SystemTime::UNIX_EPOCH + Duration::from_secs(unix_seconds))
    }

    /// The clock's current time.
    pub fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The clock's current time as an `OffsetDateTime`.
    pub fn now_utc(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from(self.now())
    }

    /// Move the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Set the clock to `at`.
    pub fn set(&self, at: SystemTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

impl aws_smithy_async::time::TimeSource for FixedClock {
    fn now(&self) -> SystemTime {
        FixedClock::now(self)
    }
}
