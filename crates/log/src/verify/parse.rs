//! One line, parsed on a parser thread: its leaf hash, the header every line carries in
//! the writer's canonical form, and what the ordered checks need of it.

use std::borrow::Cow;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::entry::{self, Entry};
use crate::merkle::{Hash, leaf_hash};

/// The parts of an entry every line needs, decoded in one pass.
#[derive(Deserialize)]
pub(super) struct Head<'a> {
    seq: u64,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    origin: Cow<'a, str>,
    prev: Hash,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    allowed: Option<bool>,
    #[serde(default, borrow)]
    grant_id: Option<Cow<'a, str>>,
    // Request decision fields, decoded in the same pass (the hot path: no
    // second parse of allowed decisions).
    #[serde(default, borrow)]
    identity: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(default)]
    grant_event_seq: Option<u64>,
    #[serde(default)]
    access: Option<custody_grant::AccessRequest>,
}

/// What re-evaluating an allowed request needs.
pub(super) struct AllowedRequest {
    pub(super) grant_id: String,
    pub(super) identity: String,
    pub(super) request_id: String,
    pub(super) grant_event_seq: Option<u64>,
    pub(super) access: custody_grant::AccessRequest,
}

pub(super) const KINDS: [&str; 10] = [
    "config_reloaded",
    "log_replaced",
    "refusals_counted",
    "gateway_started",
    "gateway_stopped",
    "grant",
    "request_decision",
    "request_outcome",
    "key_rotated",
    "recovered",
];

/// One line after the parallel phase.
pub(super) struct Rec {
    pub(super) hash: Hash,
    pub(super) parsed: Result<Parsed, String>,
}

pub(super) struct Parsed {
    pub(super) seq: u64,
    pub(super) time: OffsetDateTime,
    pub(super) origin_ok: bool,
    pub(super) prev: Hash,
    /// Grant and request count of a request decision that reached the budget check
    /// (it names actions): every such decision used one count of its grant's budget.
    pub(super) decision_count: Option<(String, u64)>,
    /// Full entry for grant events, key rotations and recoveries.
    pub(super) full: Option<Box<Entry>>,
    /// An allowed request to re-evaluate.
    pub(super) allowed: Option<Box<AllowedRequest>>,
}

/// `origin_json` is `origin` as a JSON string (encoded once by the caller, not per line).
pub(super) fn parse_line(line: &[u8], origin: &str, origin_json: &str) -> Rec {
    let hash = leaf_hash(line);
    let parsed = (|| {
        if line.len() > entry::MAX_ENTRY_BYTES {
            return Err(format!(
                "line of {} bytes exceeds the entry limit",
                line.len()
            ));
        }
        let head: Head<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let time =
            entry::parse_time(&head.time).map_err(|e| format!("bad time `{}`: {e}", head.time))?;
        if !KINDS.contains(&head.kind.as_ref()) {
            return Err(format!("unknown entry kind `{}`", head.kind));
        }
        let this_origin;
        let header_origin = if head.origin == origin {
            origin_json
        } else {
            this_origin = entry::json_string(&head.origin).map_err(|e| e.to_string())?;
            &this_origin
        };
        canonical_header(line, &head, time, header_origin)?;
        let full = match head.kind.as_ref() {
            // The body is not re-encoded and compared: entries written before a field was
            // added (with a default) encode differently today, and an old log must verify.
            "grant" | "key_rotated" | "recovered" | "refusals_counted" | "log_replaced" => {
                Some(Box::new(Entry::decode(line).map_err(|e| e.to_string())?))
            }
            _ => None,
        };
        let is_decision = head.kind == "request_decision";
        let decision_count = match (&head.grant_id, &head.access) {
            (Some(g), Some(a)) if is_decision && !g.is_empty() && !a.actions.is_empty() => {
                Some((g.to_string(), a.requests_so_far))
            }
            _ => None,
        };
        let allowed = if is_decision {
            let allowed = head.allowed.ok_or("decision without `allowed`")?;
            match (
                allowed,
                head.grant_id,
                head.identity,
                head.request_id,
                head.access,
            ) {
                (false, ..) => None,
                (true, Some(g), Some(identity), Some(request_id), Some(access)) => {
                    Some(Box::new(AllowedRequest {
                        grant_id: g.into_owned(),
                        identity: identity.into_owned(),
                        request_id: request_id.into_owned(),
                        grant_event_seq: head.grant_event_seq,
                        access,
                    }))
                }
                _ => return Err("allowed decision is missing fields".into()),
            }
        } else {
            None
        };
        Ok(Parsed {
            decision_count,
            seq: head.seq,
            time,
            origin_ok: head.origin == origin,
            prev: head.prev,
            full,
            allowed,
        })
    })();
    Rec { hash, parsed }
}

/// Every line must be UTF-8 and begin with the header exactly as the writer encodes it
/// (`{"seq":…,"time":"…","origin":…,"prev":"…","kind":"…"`): one entry has one encoding,
/// so a re-signed log cannot carry the same entries in other bytes.
/// `origin_json`: the line's origin as a JSON string; `head.kind` is one of [`KINDS`]
/// (checked before), so it needs no escaping.
fn canonical_header(
    line: &[u8],
    head: &Head<'_>,
    time: OffsetDateTime,
    origin_json: &str,
) -> Result<(), String> {
    if std::str::from_utf8(line).is_err() {
        return Err("not valid UTF-8".into());
    }
    let mut want = Vec::with_capacity(200);
    entry::encode_into(
        &mut want,
        head.seq,
        &entry::format_time(time),
        origin_json,
        &head.prev,
        &format!("{{\"kind\":\"{}\"}}", head.kind),
    )
    .map_err(|e| e.to_string())?;
    // Without the closing brace: the body's other fields follow.
    let prefix = &want[..want.len() - 1];
    if !line.starts_with(prefix) || !matches!(line.get(prefix.len()), Some(b',' | b'}')) {
        return Err("header not in the writer's canonical encoding (field order, time format or spacing differ)".into());
    }
    Ok(())
}
