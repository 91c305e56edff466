//! `GET /v1/log/consistency?from=SIZE`: the running log proves that the checkpoint it
//! signed at SIZE (an auditor's or a witness's copy) is a prefix of its newest checkpoint
//! (RFC 9162 consistency proof, checkable with `custody-verify check-consistency`).

use custody_log::consistency::{ConsistencyError, make_consistency};
use custody_log::parse_vkey;
use custody_log::storage;

use crate::app::{Gateway, OpError};

/// The proof from the log's checkpoint of `from` entries to its newest.
pub fn consistency(gateway: &Gateway, query: Option<&str>) -> Result<serde_json::Value, OpError> {
    let from: u64 = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "from")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| {
            OpError::new(
                400,
                "query parameter `from` (a checkpoint size) is required",
            )
        })?;
    let key = parse_vkey(gateway.log.vkey()).map_err(|e| OpError::new(500, e.to_string()))?;
    let dir = gateway.config.log_dir();
    let data = custody_log::verify::read_checkpoints(&dir)
        .map_err(|e| OpError::new(500, e.to_string()))?
        .unwrap_or_default();
    // The latest checkpoint of that size this log's key signed.
    let old = storage::signed_checkpoints(&data, std::slice::from_ref(&key))
        .filter(|c| c.checkpoint.size == from)
        .last()
        .ok_or_else(|| {
            OpError::new(404, format!("this log signed no checkpoint of size {from}"))
        })?;
    let proof = make_consistency(&dir, &old.note, None, &[key]).map_err(|e| match e {
        ConsistencyError::Proof(_) => OpError::new(
            500,
            format!("the log on disk is not consistent with its own checkpoint: {e}"),
        ),
        e => OpError::new(500, e.to_string()),
    })?;
    serde_json::to_value(&proof).map_err(|e| OpError::new(500, e.to_string()))
}
