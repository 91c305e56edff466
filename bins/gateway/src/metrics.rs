//! Prometheus metrics served on the admin listener at `/metrics`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Service names with series of their own in `custody_requests_total`.
pub const MAX_SERVICE_LABELS: usize = 256;

/// Labels for the request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `allowed` or `denied`.
    pub decision: String,
    /// Service signing name, or `unknown`.
    pub service: String,
}

/// Labels for per-listener series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `agent` or `admin`.
    pub listener: String,
}

/// Labels for refusals.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The refusal class (`Throttled`, `SignatureDoesNotMatch`, …).
    pub code: String,
    /// `full` (its own log entry) or `counted` (in a `refusals_counted` entry).
    pub recorded: String,
}

/// Labels for broker calls.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: String,
}

/// Labels for per-thread gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThreadLabels {
    /// The agent thread's index (`custody-agent-N`).
    pub thread: String,
}

/// Labels for log commits.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitLabels {
    /// `inline` (written and synced by the request's own thread) or `committer`.
    pub how: String,
}

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Requests by decision and service (count with [`Metrics::count_request`]).
    pub requests: Family<RequestLabels, Counter>,
    /// `requests`' series by service name: `[denied, allowed]`, so that counting a
    /// request looks up a borrowed name instead of building two label strings.
    requests_by_service: RwLock<HashMap<String, [Counter; 2]>>,
    /// Seconds from receipt to the end of a forwarded response.
    pub upstream_latency: Histogram,
    /// Seconds for a durable log append.
    pub log_append: Histogram,
    /// Credential lookups through the broker that succeeded
    /// (`custody_broker_calls_total{result="ok"}`).
    pub broker_calls_ok: Counter,
    /// … and that failed (`{result="error"}`).
    pub broker_calls_error: Counter,
    /// Failed log appends (each one refused a request or lost an outcome).
    pub log_failures: Counter,
    /// Open agent connections per agent thread.
    pub agent_connections: Family<ThreadLabels, Gauge>,
    /// Awaited log appends made durable by the request's own agent thread
    /// (`custody_log_commits_total{how="inline"}`; failures are `log_failures`).
    pub log_commits_inline: Counter,
    /// … and by the log's committer thread (`{how="committer"}`).
    pub log_commits_committer: Counter,
    /// New agent connections that waited for the connection cap
    /// (`custody_connection_limit_waits_total{listener="agent"}`).
    pub connection_limit_waits_agent: Counter,
    /// … on the admin listener (`{listener="admin"}`).
    pub connection_limit_waits_admin: Counter,
    /// Refusals by class and how they were recorded.
    pub refusals: Family<RefusalLabels, Counter>,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("custody");
        let requests = Family::<RequestLabels, Counter>::default();
        let upstream_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let log_append = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        let broker_calls = Family::<ResultLabels, Counter>::default();
        let log_failures = Counter::default();
        let agent_connections = Family::<ThreadLabels, Gauge>::default();
        let log_commits = Family::<CommitLabels, Counter>::default();
        // Per-request series resolved once here, not by label on the hot path.
        let [log_commits_inline, log_commits_committer] = ["inline", "committer"].map(|how| {
            log_commits
                .get_or_create(&CommitLabels { how: how.into() })
                .clone()
        });
        let limit_waits = Family::<ListenerLabels, Counter>::default();
        let [connection_limit_waits_agent, connection_limit_waits_admin] =
            ["agent", "admin"].map(|listener| {
                limit_waits
                    .get_or_create(&ListenerLabels {
                        listener: listener.into(),
                    })
                    .clone()
            });
        registry.register(
            "connection_limit_waits",
            "New connections that waited because the listener was at its connection cap (limits.max_*_connections)",
            limit_waits,
        );
        let [broker_calls_ok, broker_calls_error] = ["ok", "error"].map(|result| {
            broker_calls
                .get_or_create(&ResultLabels {
                    result: result.into(),
                })
                .clone()
        });
        registry.register(
            "requests",
            "Agent requests by decision and service (at most 256 service names; the rest count as `other`)",
            requests.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time from receipt to the end of a forwarded response",
            upstream_latency.clone(),
        );
        registry.register(
            "log_append_seconds",
            "Time a request waits for its decision entry to be durable (deferred outcome entries are not timed)",
            log_append.clone(),
        );
        registry.register(
            "broker_calls",
            "Credential requests to the broker by result",
            broker_calls.clone(),
        );
        registry.register(
            "log_append_failures",
            "Log appends that failed",
            log_failures.clone(),
        );
        registry.register(
            "agent_connections",
            "Open agent connections on each agent thread (none with `[agent] threads = 0`)",
            agent_connections.clone(),
        );
        registry.register(
            "log_commits",
            "Awaited log appends (decision entries) made durable, by who wrote and synced them: `inline` on the request's own agent thread, or the log's `committer` thread",
            log_commits.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "refusals",
            "Requests the gateway refused, by class (`Throttled` for rate limits and the unverified-body budget) and whether each was recorded in `full` or `counted` (limits.refusals_recorded_per_*)",
            refusals.clone(),
        );
        Self {
            refusals,
            registry: Mutex::new(registry),
            requests,
            requests_by_service: RwLock::default(),
            upstream_latency,
            log_append,
            broker_calls_ok,
            broker_calls_error,
            log_failures,
            agent_connections,
            log_commits_inline,
            log_commits_committer,
            connection_limit_waits_agent,
            connection_limit_waits_admin,
        }
    }

    /// Counts a request in `custody_requests_total{decision, service}` (`unknown` when
    /// no service is known). At most [`MAX_SERVICE_LABELS`] service names get series of
    /// their own, the rest count as `other`: the name is the agent's to choose until the
    /// request is classified, and series are never freed.
    pub fn count_request(&self, allowed: bool, service: Option<&str>) {
        self.count_requests(allowed, service, 1);
    }

    /// [`Metrics::count_request`] for `n` requests at once.
    pub fn count_requests(&self, allowed: bool, service: Option<&str>, n: u64) {
        let service = service.unwrap_or("unknown");
        let pick = usize::from(allowed);
        if let Some(series) = self
            .requests_by_service
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
        {
            series[pick].inc_by(n);
            return;
        }
        let mut by_service = self
            .requests_by_service
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let service = if by_service.len() < MAX_SERVICE_LABELS || by_service.contains_key(service) {
            service
        } else {
            "other"
        };
        let series = by_service.entry(service.to_owned()).or_insert_with(|| {
            ["denied", "allowed"].map(|decision| {
                self.requests
                    .get_or_create(&RequestLabels {
                        decision: decision.into(),
                        service: service.into(),
                    })
                    .clone()
            })
        });
        series[pick].inc_by(n);
    }

    /// Counts a refusal in `custody_refusals_total{code, recorded}`.
    pub fn count_refusal(&self, code: &str, recorded_in_full: bool) {
        self.refusals
            .get_or_create(&RefusalLabels {
                code: code.to_owned(),
                recorded: if recorded_in_full { "full" } else { "counted" }.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition format 0.0.4, what `/metrics` serves unless
    /// OpenMetrics is asked for: the OpenMetrics text with no `# EOF` and `# UNIT` lines,
    /// and each counter's `HELP` and `TYPE` naming its `_total` samples (in OpenMetrics
    /// they name the family). Written by hand: prometheus-client encodes OpenMetrics only.
    pub fn render_prometheus_text(&self) -> String {
        let open = self.render();
        let mut out = String::with_capacity(open.len());
        let mut help: Option<&str> = None;
        for line in open.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            if line.starts_with("# HELP ") {
                if let Some(h) = help.replace(line) {
                    out.push_str(h);
                    out.push('\n');
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                let counter = kind == "counter" && !name.ends_with("_total");
                if let Some(h) = help.take() {
                    match (
                        counter,
                        h.strip_prefix("# HELP ").and_then(|r| r.split_once(' ')),
                    ) {
                        (true, Some((n, text))) => {
                            out.push_str(&format!("# HELP {n}_total {text}\n"));
                        }
                        _ => {
                            out.push_str(h);
                            out.push('\n');
                        }
                    }
                }
                if counter {
                    out.push_str(&format!("# TYPE {name}_total counter\n"));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
                continue;
            }
            if let Some(h) = help.take() {
                out.push_str(h);
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    fn series(m: &Metrics, decision: &str, service: &str) -> Option<u64> {
        let want =
            format!("custody_requests_total{{decision=\"{decision}\",service=\"{service}\"}} ");
        m.render()
            .lines()
            .find_map(|l| l.strip_prefix(&want))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn requests_are_counted_by_decision_and_service() {
        let m = Metrics::new();
        m.count_request(true, Some("s3"));
        m.count_request(true, Some("s3"));
        m.count_request(false, Some("s3"));
        m.count_request(false, None);
        assert_eq!(series(&m, "allowed", "s3"), Some(2));
        assert_eq!(series(&m, "denied", "s3"), Some(1));
        assert_eq!(series(&m, "denied", "unknown"), Some(1));
        assert_eq!(series(&m, "allowed", "unknown"), Some(0));
    }

    #[test]
    fn service_names_past_the_cap_count_as_other() {
        let m = Metrics::new();
        for i in 0..MAX_SERVICE_LABELS + 50 {
            m.count_request(false, Some(&format!("svc{i}")));
        }
        // A name seen before the cap keeps its series.
        m.count_request(true, Some("svc0"));
        let rendered = m.render();
        let names = rendered
            .lines()
            .filter(|l| l.starts_with("custody_requests_total{decision=\"denied\""))
            .count();
        assert_eq!(names, MAX_SERVICE_LABELS + 1);
        assert_eq!(series(&m, "denied", "other"), Some(50));
        assert_eq!(series(&m, "allowed", "svc0"), Some(1));
        assert_eq!(
            series(&m, "denied", &format!("svc{}", MAX_SERVICE_LABELS)),
            None
        );
    }

    #[test]
    fn the_classic_text_names_counter_samples_and_has_no_eof() {
        let m = Metrics::new();
        m.count_request(true, Some("s3"));
        m.count_refusal("Throttled", false);
        let text = m.render_prometheus_text();
        assert!(
            text.contains("# TYPE custody_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP custody_requests_total Agent requests"),
            "{text}"
        );
        assert!(text.contains("# TYPE custody_upstream_latency_seconds histogram\n"));
        assert!(!text.contains("# EOF"));
        assert!(
            text.contains("custody_refusals_total{code=\"Throttled\",recorded=\"counted\"} 1\n")
        );
        // Every sample line of the OpenMetrics form is there, unchanged.
        let open = m.render();
        for line in open.lines().filter(|l| !l.starts_with('#')) {
            assert!(text.contains(line), "{line}");
        }
    }
}
