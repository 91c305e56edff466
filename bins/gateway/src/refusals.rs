//! Unauthenticated refusals past the first few per source, reason and window are counted
//! by the proxy's [`RefusalTally`]; this writes the counts to the log as
//! `refusals_counted` entries, once a window ends and at shutdown.

use std::time::Duration;

use custody_log::{EntryBody, RefusalsCounted};
use custody_proxy::tally::{CountedRefusals, RefusalTally, TallySettings};
use time::OffsetDateTime;

use crate::app::Gateway;
use crate::config::Limits;

/// The tally's settings from `[limits]`.
pub fn settings(limits: &Limits) -> TallySettings {
    TallySettings {
        window: Duration::from_millis(limits.refusal_window_ms),
        per_source: limits.refusals_recorded_per_source,
        per_window: limits.refusals_recorded_per_window,
        ..TallySettings::default()
    }
}

/// Write the counts of a window that has ended (`all`: every count held, at shutdown).
pub async fn write_counts(gateway: &Gateway, tally: &RefusalTally, all: bool) {
    let now = gateway.clock.now();
    let counts = if all {
        tally.take_all(now)
    } else {
        tally.take_due(now)
    };
    for c in counts {
        gateway.metrics.count_requests(false, None, c.counted);
        let body = entry(&c);
        if let Err(e) = gateway.log.append_async(body).await {
            // The log is failing closed and says so on /readyz; the count still reaches
            // the operator's logs.
            tracing::error!(
                error = %e,
                source = ?c.source,
                code = c.kind.name(),
                counted = c.counted,
                "could not record a count of refusals"
            );
        }
    }
}

fn entry(c: &CountedRefusals) -> EntryBody {
    EntryBody::RefusalsCounted(RefusalsCounted {
        source_ip: c.source.map_or_else(|| "*".to_owned(), |ip| ip.to_string()),
        code: c.kind.name().to_owned(),
        grant_id: c.grant_id.clone(),
        recorded: c.recorded,
        counted: c.counted,
        first: OffsetDateTime::from(c.first),
        last: OffsetDateTime::from(c.last),
        example: c.example.clone(),
    })
}
