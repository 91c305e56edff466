//! Log entries: one canonical JSON object per line.
//!
//! The bytes of a line (without its newline) are what is hashed: the leaf hash
//! is `SHA-256(0x00 || line)` and the next entry's `prev` is that leaf hash, so
//! the hash chain and the Merkle tree cover exactly what is on disk.

use std::io::Write as _;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::merkle::Hash;

/// Largest encoded entry in bytes, newline excluded. Request bodies are never stored (a
/// digest may be), but a decision names every resource it covers: S3's largest
/// DeleteObjects (1,000 keys of up to 1,024 bytes, each as an ARN) takes about 1.1 MiB.
/// This leaves room for that, and bounds what a reader must hold for one line.
pub const MAX_ENTRY_BYTES: usize = 2 * 1024 * 1024;

/// One log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Sequence number, from 0, one per entry across all segments.
    pub seq: u64,
    /// When the writer stamped the entry (UTC, microseconds).
    #[serde(with = "time_format")]
    pub time: OffsetDateTime,
    /// The log's name; an entry from another log has another origin.
    pub origin: String,
    /// Leaf hash of the previous entry (all zeros for the first entry).
    pub prev: Hash,
    /// What happened.
    #[serde(flatten)]
    pub body: EntryBody,
}

/// What an entry records. Serialised with a `kind` tag in snake case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "an entry is built, encoded and dropped one at a time; boxing the grant would cost every grant event an allocation for nothing"
)]
pub enum EntryBody {
    /// The gateway opened the log.
    GatewayStarted {
        /// Software name and version.
        software: String,
        /// The verifier key (note `vkey` format) that signs checkpoints.
        vkey: String,
    },
    /// The gateway closed the log cleanly.
    GatewayStopped {
        /// Why (e.g. `shutdown`).
        reason: String,
    },
    /// A grant lifecycle event.
    Grant(GrantEvent),
    /// A decision about one request, written before anything is forwarded.
    RequestDecision(RequestDecision),
    /// How a forwarded request ended.
    RequestOutcome(RequestOutcome),
    /// The checkpoint signing key changed; later checkpoints are signed with
    /// `new_vkey`. Written and sealed under the old key.
    KeyRotated {
        /// The old verifier key.
        old_vkey: String,
        /// The new verifier key.
        new_vkey: String,
    },
    /// Refusals of unauthenticated requests counted instead of recorded one by one: past
    /// the first few from one source for one reason in a window, only their number is
    /// kept, so an unauthenticated flood cannot grow the log without bound.
    RefusalsCounted(RefusalsCounted),
    /// This log replaces another that could not be continued (written right after the
    /// new log's `gateway_started`).
    LogReplaced {
        /// The old log's origin.
        old_origin: String,
        /// Where the old log's directory was moved, as evidence.
        old_dir: String,
        /// The largest checkpoint of the old log the key signed (the signed note), if any:
        /// what to verify the old log against.
        old_checkpoint: Option<String>,
        /// Why, as the operator gave it.
        reason: String,
    },
    /// The log was reopened after an unclean stop.
    Recovered {
        /// Segment file whose torn tail was cut (empty if nothing was cut).
        segment: String,
        /// Bytes cut from the end of that segment.
        cut_bytes: u64,
        /// SHA-256 (hex) of the cut bytes.
        cut_sha256: String,
        /// Entries found after the last checkpoint this log's key signed: written before
        /// the stop but sealed only now, by the checkpoint after this entry.
        #[serde(default)]
        unsealed_entries: u64,
        /// SHA-256 (hex) of those entries' lines, each with its newline (of nothing when
        /// there are none).
        #[serde(default = "empty_sha256")]
        unsealed_sha256: String,
    },
    /// The running gateway re-read its configuration (SIGHUP): who may ask, approve and
    /// be granted from here on.
    ConfigReloaded {
        /// The configuration file.
        path: String,
        /// SHA-256 (hex) of its contents as read.
        sha256: String,
        /// The people (names) now configured.
        people: Vec<String>,
        /// The agent identities now configured.
        agents: Vec<String>,
        /// The roles (names) now configured.
        roles: Vec<String>,
    },
}

fn empty_sha256() -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b""))
}

/// Refusals from one source for one reason within one window, counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalsCounted {
    /// The refused client's IP address, or `*` for sources past the per-window cap on
    /// distinct sources.
    pub source_ip: String,
    /// The AWS error code the refusals were answered with (e.g. `SignatureDoesNotMatch`).
    pub code: String,
    /// The grant whose access key id the requests named, if they named one.
    pub grant_id: Option<String>,
    /// Refusals in the window recorded as their own `request_decision` entries.
    pub recorded: u64,
    /// Refusals in the window recorded only here, by number.
    pub counted: u64,
    /// The first counted refusal (gateway clock).
    #[serde(with = "time_format")]
    pub first: OffsetDateTime,
    /// The last counted refusal.
    #[serde(with = "time_format")]
    pub last: OffsetDateTime,
    /// The reason the first counted refusal was given (cut at 256 bytes).
    pub example: String,
}

/// Grant lifecycle event kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantEventKind {
    /// An agent or operator asked for a grant.
    Requested,
    /// A person or rule approved it.
    Approved,
    /// It became usable.
    Activated,
    /// It was refused.
    Denied,
    /// It was revoked before expiry.
    Revoked,
    /// Its lifetime ended.
    Expired,
}

/// A grant lifecycle entry. Carries the grant (scope included, never the
/// secret) so that the authorised intent is in the log itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrantEvent {
    /// Which event.
    pub event: GrantEventKind,
    /// Grant ID.
    pub grant_id: String,
    /// The identity the grant is for.
    pub identity: String,
    /// The task the grant is for.
    pub task_id: String,
    /// Who or which rule caused the event.
    pub by: String,
    /// The grant as it stands after the event (scope included; a grant
    /// holds no secret). Needed on `activated` so the verifier can
    /// re-evaluate later decisions.
    pub grant: Option<custody_grant::Grant>,
}

/// A decision about one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestDecision {
    /// Grant the request was made under (empty if none matched).
    pub grant_id: String,
    /// Identity.
    pub identity: String,
    /// Task.
    pub task_id: String,
    /// Gateway-assigned request ID.
    pub request_id: String,
    /// AWS service (signing name).
    pub service: String,
    /// Operation name.
    pub operation: String,
    /// IAM actions with their resources, region, source IP, request count.
    pub access: custody_grant::AccessRequest,
    /// Whether the request was allowed.
    pub allowed: bool,
    /// Why.
    pub reason: String,
    /// Sequence number of the grant event this decision relied on.
    pub grant_event_seq: Option<u64>,
    /// Source address of the caller.
    pub source: String,
    /// SHA-256 (hex) of the request body, if computed.
    pub body_sha256: Option<String>,
}

/// A [`RequestDecision`] over borrowed fields, for a caller that holds them already (the
/// gateway, once per request): it encodes to exactly the bytes of
/// `EntryBody::RequestDecision` with the same fields, without copying any of them
/// (the source address is written as it is formatted).
#[derive(Clone, Copy, Serialize)]
#[serde(tag = "kind", rename = "request_decision")]
pub struct RequestDecisionRef<'a> {
    /// Grant the request was made under (empty if none matched).
    pub grant_id: &'a str,
    /// Identity.
    pub identity: &'a str,
    /// Task.
    pub task_id: &'a str,
    /// Gateway-assigned request ID.
    pub request_id: &'a str,
    /// AWS service (signing name).
    pub service: &'a str,
    /// Operation name.
    pub operation: &'a str,
    /// IAM actions with their resources, region, source IP, request count.
    pub access: &'a custody_grant::AccessRequest,
    /// Whether the request was allowed.
    pub allowed: bool,
    /// Why.
    pub reason: &'a str,
    /// Sequence number of the grant event this decision relied on.
    pub grant_event_seq: Option<u64>,
    /// Source address of the caller.
    #[serde(serialize_with = "display")]
    pub source: &'a (dyn std::fmt::Display + Sync),
    /// SHA-256 (hex) of the request body, if computed.
    pub body_sha256: Option<&'a str>,
}

fn display<S: serde::Serializer>(
    v: &&(dyn std::fmt::Display + Sync),
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(*v)
}

/// An entry body the log can append: [`EntryBody`], or [`RequestDecisionRef`] for the
/// gateway's per-request decisions. Sealed: every body a log holds decodes as an
/// [`EntryBody`].
pub trait EncodeBody: sealed::Sealed {
    /// The body as a JSON object (`{"kind":...}`), for the writer to splice into an
    /// entry after the header fields. Callers do this on their own thread so the single
    /// committer thread only stitches bytes.
    fn encode_body(&self) -> Result<String, EntryError>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::EntryBody {}
    impl Sealed for super::RequestDecisionRef<'_> {}
}

impl EncodeBody for EntryBody {
    fn encode_body(&self) -> Result<String, EntryError> {
        encode_json(self)
    }
}

impl EncodeBody for RequestDecisionRef<'_> {
    fn encode_body(&self) -> Result<String, EntryError> {
        encode_json(self)
    }
}

/// A request entry's body is some 400 to 900 bytes: one allocation of this size instead
/// of `to_string`'s growth from 128 bytes.
const BODY_CAPACITY: usize = 1024;

fn encode_json<T: Serialize + ?Sized>(v: &T) -> Result<String, EntryError> {
    let mut out = Vec::with_capacity(BODY_CAPACITY);
    serde_json::to_writer(&mut out, v).map_err(|e| EntryError::Json(e.to_string()))?;
    if out.len() > MAX_ENTRY_BYTES {
        return Err(EntryError::TooLarge {
            size: out.len(),
            max: MAX_ENTRY_BYTES,
        });
    }
    String::from_utf8(out).map_err(|e| EntryError::Json(e.to_string()))
}

/// How a forwarded request ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestOutcome {
    /// Gateway-assigned request ID.
    pub request_id: String,
    /// Sequence number of the decision entry.
    pub decision_seq: u64,
    /// HTTP status returned.
    pub status: u16,
    /// Request bytes forwarded upstream.
    pub bytes_in: u64,
    /// Response bytes returned.
    pub bytes_out: u64,
    /// Upstream (AWS) request ID.
    pub upstream_request_id: Option<String>,
    /// Total latency in microseconds.
    pub latency_us: u64,
    /// Why the exchange did not complete: the gateway answered in the upstream's place
    /// after the decision (the agent's body failed its signature check, no credentials,
    /// the upstream unreachable), the upstream's response body failed, or the agent
    /// stopped reading before the end. Absent (not `null`) when it completed, so entries
    /// written before this field existed read the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why an entry could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The encoded entry exceeds [`MAX_ENTRY_BYTES`].
    #[error("entry of {size} bytes exceeds the {max} byte limit")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// JSON (de)serialisation failed.
    #[error("invalid entry json: {0}")]
    Json(String),
}

// === impl EntryBody ===

impl EntryBody {
    /// The `kind` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            EntryBody::GatewayStarted { .. } => "gateway_started",
            EntryBody::GatewayStopped { .. } => "gateway_stopped",
            EntryBody::Grant(_) => "grant",
            EntryBody::RequestDecision(_) => "request_decision",
            EntryBody::RequestOutcome(_) => "request_outcome",
            EntryBody::KeyRotated { .. } => "key_rotated",
            EntryBody::Recovered { .. } => "recovered",
            EntryBody::RefusalsCounted(_) => "refusals_counted",
            EntryBody::LogReplaced { .. } => "log_replaced",
            EntryBody::ConfigReloaded { .. } => "config_reloaded",
        }
    }

    /// Encodes the body as a JSON object (`{"kind":...}`); the writer splices it
    /// into the entry after the header fields (see [`EncodeBody`]).
    pub fn encode(&self) -> Result<String, EntryError> {
        self.encode_body()
    }

    /// Grant ID, identity and task ID, where the entry has them.
    pub fn subject(&self) -> Option<(&str, &str, &str)> {
        match self {
            EntryBody::Grant(g) => Some((&g.grant_id, &g.identity, &g.task_id)),
            EntryBody::RequestDecision(d) => Some((&d.grant_id, &d.identity, &d.task_id)),
            _ => None,
        }
    }
}

// === impl Entry ===

impl Entry {
    /// Encodes the entry as one line (without the newline).
    pub fn encode(&self) -> Result<String, EntryError> {
        let body = self.body.encode()?;
        encode_with_body(self.seq, self.time, &self.origin, &self.prev, &body)
    }

    /// Decodes one line (without its newline).
    pub fn decode(line: &[u8]) -> Result<Entry, EntryError> {
        if line.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge {
                size: line.len(),
                max: MAX_ENTRY_BYTES,
            });
        }
        serde_json::from_slice(line).map_err(|e| EntryError::Json(e.to_string()))
    }
}

/// Builds an entry line from header fields and an encoded body
/// ([`EntryBody::encode`]). Equal to `serde_json::to_string(&entry)`.
pub fn encode_with_body(
    seq: u64,
    time: OffsetDateTime,
    origin: &str,
    prev: &Hash,
    body: &str,
) -> Result<String, EntryError> {
    let origin = json_string(origin)?;
    let mut out = Vec::with_capacity(body.len() + origin.len() + 140);
    encode_into(&mut out, seq, &format_time(time), &origin, prev, body)?;
    String::from_utf8(out).map_err(|e| EntryError::Json(e.to_string()))
}

/// `s` as a JSON string literal (for [`encode_into`]'s `origin_json`).
pub fn json_string(s: &str) -> Result<String, EntryError> {
    serde_json::to_string(s).map_err(|e| EntryError::Json(e.to_string()))
}

/// Appends an entry line (without its newline) to `out`: the committer's form of
/// [`encode_with_body`], writing into its batch buffer with the parts it shares across a
/// batch (`time` from [`format_time`], `origin_json` from [`json_string`]) formatted
/// once. On error `out` is left as it was.
pub fn encode_into(
    out: &mut Vec<u8>,
    seq: u64,
    time: &str,
    origin_json: &str,
    prev: &Hash,
    body: &str,
) -> Result<(), EntryError> {
    let fields = body
        .strip_prefix('{')
        .ok_or_else(|| EntryError::Json("body is not an object".into()))?;
    let start = out.len();
    // Writing into a Vec cannot fail; the error arm only keeps this panic-free.
    write!(out, "{{\"seq\":{seq},\"time\":\"").map_err(|e| EntryError::Json(e.to_string()))?;
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\",\"origin\":");
    out.extend_from_slice(origin_json.as_bytes());
    out.extend_from_slice(b",\"prev\":\"");
    let mut prev_hex = [0u8; 64];
    hex::encode_to_slice(prev.0, &mut prev_hex).map_err(|e| EntryError::Json(e.to_string()))?;
    out.extend_from_slice(&prev_hex);
    out.extend_from_slice(b"\",");
    out.extend_from_slice(fields.as_bytes());
    let size = out.len() - start;
    if size > MAX_ENTRY_BYTES {
        out.truncate(start);
        return Err(EntryError::TooLarge {
            size,
            max: MAX_ENTRY_BYTES,
        });
    }
    Ok(())
}

// === Time ===

const TIME_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Formats a time as the log does: UTC, microseconds, `Z`.
///
/// Written out digit by digit for years 0–9999 (every entry carries a time, and `time`'s
/// general formatter showed in the gateway's profile at ~1% of a request); other years go
/// through `TIME_FORMAT`, which the fast path equals (a property test checks it).
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let Ok(year) = u32::try_from(t.year()) else {
        return format_time_slow(t);
    };
    if year > 9999 {
        return format_time_slow(t);
    }
    let mut out = [0u8; 27];
    let fields: [(usize, u32, usize); 7] = [
        (0, year, 4),
        (5, u32::from(u8::from(t.month())), 2),
        (8, u32::from(t.day()), 2),
        (11, u32::from(t.hour()), 2),
        (14, u32::from(t.minute()), 2),
        (17, u32::from(t.second()), 2),
        (20, t.microsecond(), 6),
    ];
    for (at, mut value, width) in fields {
        for slot in out.iter_mut().skip(at).take(width).rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    for (at, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        if let Some(slot) = out.get_mut(at) {
            *slot = sep;
        }
    }
    String::from_utf8(out.to_vec()).unwrap_or_else(|_| format_time_slow(t))
}

fn format_time_slow(t: OffsetDateTime) -> String {
    t.format(TIME_FORMAT)
        .unwrap_or_else(|_| String::from("invalid-time"))
}

/// Parses a time in the log's format.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    time::PrimitiveDateTime::parse(s, TIME_FORMAT).map(time::PrimitiveDateTime::assume_utc)
}

/// Truncates a time to whole microseconds, the log's resolution.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let ns = t.nanosecond();
    t.replace_nanosecond(ns - ns % 1000).unwrap_or(t)
}

mod time_format {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        super::parse_time(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "tests fail loudly"
    )]
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample_bodies() -> Vec<EntryBody> {
        vec![
            EntryBody::GatewayStarted {
                software: "custody 0.1.0".into(),
                vkey: "x+00000000+AA==".into(),
            },
            EntryBody::Grant(GrantEvent {
                event: GrantEventKind::Activated,
                grant_id: "g-1".into(),
                identity: "alice".into(),
                task_id: "t-1".into(),
                by: "rule:auto".into(),
                grant: None,
            }),
            EntryBody::RequestDecision(RequestDecision {
                grant_id: "g-1".into(),
                identity: "alice".into(),
                task_id: "t-1".into(),
                request_id: "r-1".into(),
                service: "s3".into(),
                operation: "GetObject".into(),
                access: custody_grant::AccessRequest {
                    actions: vec![custody_grant::ActionRequest {
                        action: "s3:GetObject".into(),
                        resources: vec!["arn:aws:s3:::b/k".into()],
                        named_explicitly: false,
                    }],
                    region: Some("us-east-1".into()),
                    ..Default::default()
                },
                allowed: true,
                reason: "allowed by statement 0 \"quoted\"\nnewline".into(),
                grant_event_seq: Some(1),
                source: "127.0.0.1".into(),
                body_sha256: None,
            }),
            EntryBody::RequestOutcome(RequestOutcome {
                request_id: "r-1".into(),
                decision_seq: 2,
                status: 200,
                bytes_in: 0,
                bytes_out: 12,
                upstream_request_id: Some("ABC".into()),
                latency_us: 1234,
                error: None,
            }),
            EntryBody::RequestOutcome(RequestOutcome {
                request_id: "r-2".into(),
                decision_seq: 3,
                status: 200,
                bytes_in: 0,
                bytes_out: 4,
                upstream_request_id: None,
                latency_us: 99,
                error: Some("response not read to the end".into()),
            }),
            EntryBody::Recovered {
                segment: "log-000000.jsonl".into(),
                cut_bytes: 3,
                cut_sha256: "00".into(),
                unsealed_entries: 2,
                unsealed_sha256: "11".into(),
            },
        ]
    }

    #[test]
    fn stitched_encoding_equals_serde_encoding() {
        let t = parse_time("2026-11-22T01:40:00.123456Z").unwrap();
        for (i, body) in sample_bodies().into_iter().enumerate() {
            let e = Entry {
                seq: i as u64,
                time: t,
                origin: "custody.test/log".into(),
                prev: Hash([i as u8; 32]),
                body,
            };
            let line = e.encode().unwrap();
            assert_eq!(line, serde_json::to_string(&e).unwrap());
            assert!(!line.contains('\n'));
            assert_eq!(Entry::decode(line.as_bytes()).unwrap(), e);
        }
    }

    #[test]
    fn grant_entry_kind_and_event() {
        let body = &sample_bodies()[1];
        let v: serde_json::Value = serde_json::from_str(&body.encode().unwrap()).unwrap();
        assert_eq!(v["kind"], "grant");
        assert_eq!(v["event"], "activated");
    }

    fn decision_ref(d: &RequestDecision) -> RequestDecisionRef<'_> {
        RequestDecisionRef {
            grant_id: &d.grant_id,
            identity: &d.identity,
            task_id: &d.task_id,
            request_id: &d.request_id,
            service: &d.service,
            operation: &d.operation,
            access: &d.access,
            allowed: d.allowed,
            reason: &d.reason,
            grant_event_seq: d.grant_event_seq,
            source: &d.source,
            body_sha256: d.body_sha256.as_deref(),
        }
    }

    prop_compose! {
        fn arb_decision()(
            ids in proptest::collection::vec(".*", 6),
            reason in ".*",
            allowed in any::<bool>(),
            grant_event_seq in any::<Option<u64>>(),
            source in ".*",
            body_sha256 in proptest::option::of("[0-9a-f]{64}"),
            actions in proptest::collection::vec(("[a-z0-9]+:[A-Za-z]+", proptest::collection::vec(".*", 0..3), any::<bool>()), 0..3),
            region in proptest::option::of("[a-z0-9-]{0,20}"),
            source_ip in proptest::option::of(any::<std::net::IpAddr>()),
            context in proptest::collection::btree_map("[a-z0-9:]{1,12}", ".*", 0..3),
            requests_so_far in any::<u64>(),
        ) -> RequestDecision {
            let [grant_id, identity, task_id, request_id, service, operation]: [String; 6] =
                ids.try_into().unwrap();
            RequestDecision {
                grant_id, identity, task_id, request_id, service, operation,
                access: custody_grant::AccessRequest {
                    actions: actions.into_iter().map(|(action, resources, named_explicitly)| {
                        custody_grant::ActionRequest { action, resources, named_explicitly }
                    }).collect(),
                    region, source_ip, context, requests_so_far,
                },
                allowed, reason, grant_event_seq, source, body_sha256,
            }
        }
    }

    #[test]
    fn the_largest_bulk_delete_fits_and_anything_past_the_bound_is_refused() {
        let EntryBody::RequestDecision(mut d) = sample_bodies()[2].clone() else {
            panic!("sample 2 is a decision")
        };
        // S3's largest DeleteObjects: 1,000 keys of 1,024 bytes, each named as an ARN.
        d.access.actions = vec![custody_grant::ActionRequest {
            action: "s3:DeleteObject".into(),
            resources: (0..1000)
                .map(|i| format!("arn:aws:s3:::{}/{:01024}", "b".repeat(63), i))
                .collect(),
            named_explicitly: false,
        }];
        let body = EntryBody::RequestDecision(d.clone());
        let encoded = body.encode().unwrap();
        assert!(encoded.len() > 1 << 20, "{}", encoded.len());
        // Past the bound: refused with the sizes, not written.
        d.reason = "x".repeat(MAX_ENTRY_BYTES);
        match EntryBody::RequestDecision(d).encode() {
            Err(EntryError::TooLarge { size, max }) => {
                assert!(size > max);
                assert_eq!(max, MAX_ENTRY_BYTES);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_borrowed_decision_encodes_like_the_owned_one() {
        let EntryBody::RequestDecision(d) = &sample_bodies()[2] else {
            panic!("sample 2 is a decision")
        };
        let borrowed = decision_ref(d).encode_body().unwrap();
        assert_eq!(borrowed, sample_bodies()[2].encode().unwrap());
        // A source given as an address is written as it formats.
        let addr: std::net::SocketAddr = "[::1]:4711".parse().unwrap();
        let with_addr = RequestDecisionRef {
            source: &addr,
            ..decision_ref(d)
        };
        let owned = RequestDecision {
            source: "[::1]:4711".into(),
            ..d.clone()
        };
        assert_eq!(
            with_addr.encode_body().unwrap(),
            EntryBody::RequestDecision(owned).encode().unwrap()
        );
    }

    proptest! {
        /// The digit-by-digit time format equals `time`'s for any time, before and after
        /// 1970, to the last microsecond, years before 0 included (those take `time`'s path).
        #[test]
        fn fast_time_format_equals_time_crate(nanos in -377_705_116_800_000_000_000i128..253_402_300_800_000_000_000) {
            let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap();
            prop_assert_eq!(format_time(t), format_time_slow(t));
        }

        /// Byte for byte: the log's hash chain covers these bytes, and the verifier decodes
        /// them as an owned [`EntryBody`].
        #[test]
        fn borrowed_decisions_encode_like_owned_ones(d in arb_decision()) {
            let borrowed = decision_ref(&d).encode_body().unwrap();
            let owned = EntryBody::RequestDecision(d);
            prop_assert_eq!(&borrowed, &owned.encode().unwrap());
            prop_assert_eq!(serde_json::from_str::<EntryBody>(&borrowed).unwrap(), owned);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Entry::decode(&bytes);
        }

        #[test]
        fn round_trips(seq in any::<u64>(), micros in 0i64..4_000_000_000_000_000, reason in ".*", status in any::<u16>(), allowed in any::<bool>(), prev in any::<[u8; 32]>(), origin in "[^\\s+]{1,30}") {
            let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).unwrap();
            let body = if allowed {
                EntryBody::GatewayStopped { reason }
            } else {
                EntryBody::RequestOutcome(RequestOutcome { request_id: reason, decision_seq: seq, status, bytes_in: 1, bytes_out: 2, upstream_request_id: None, latency_us: 3, error: (status % 2 == 0).then(|| "upstream body failed".to_owned()) })
            };
            let e = Entry { seq, time, origin, prev: Hash(prev), body };
            let line = e.encode().unwrap();
            // The committer's hand-stitched line is exactly serde's.
            prop_assert_eq!(&line, &serde_json::to_string(&e).unwrap());
            prop_assert_eq!(Entry::decode(line.as_bytes()).unwrap(), e);
        }
    }
}
