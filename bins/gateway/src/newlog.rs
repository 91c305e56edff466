//! `serve --new-log REASON`: the current log is moved aside as evidence and a new one, with
//! the next origin (`<origin>/2`, `/3`, …), records why and what it replaces.

use std::time::SystemTime;

use custody_log::EntryBody;
use custody_log::replace::{next_origin, set_aside as move_aside};
use time::OffsetDateTime;

use crate::app::{AppError, base_origin, effective_origin};
use crate::config::Config;
use crate::keys;

/// In the data directory: the origin the log uses since a `--new-log` start.
pub const ORIGIN_FILE: &str = "log.origin";

/// Move the log aside, switch to the next origin (recorded in [`ORIGIN_FILE`] and
/// `log.vkey`), and return the entry the new log must carry; `None` if there was no log.
pub fn set_aside(
    config: &Config,
    reason: &str,
    now: SystemTime,
) -> Result<Option<EntryBody>, AppError> {
    keys::ensure_private_dir(&config.data_dir)?;
    let (key, _) = keys::load_or_create_signing_key(&config.data_dir.join("log.key"))?;
    let old_origin = effective_origin(config);
    let verifier = custody_log::parse_vkey(&custody_log::vkey(&old_origin, &key.verifying_key()))
        .map_err(|e| AppError::Other(format!("log key: {e}")))?;
    let moved = move_aside(
        &config.log_dir(),
        &verifier,
        config.log.checkpoint_copy_dir.as_deref(),
        OffsetDateTime::from(now),
    )
    .map_err(|e| {
        AppError::Other(format!(
            "cannot move the log `{}` aside: {e}",
            config.log_dir().display()
        ))
    })?;
    let Some(old) = moved else {
        tracing::warn!("--new-log: there is no log to set aside; starting as usual");
        return Ok(None);
    };
    let new_origin = next_origin(&old_origin, &base_origin(config));
    let write = |name: &str, text: String| {
        let path = config.data_dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| AppError::Other(format!("`{}`: {e}", path.display())))
    };
    write(ORIGIN_FILE, format!("{new_origin}\n"))?;
    write(
        "log.vkey",
        format!("{}\n", custody_log::vkey(&new_origin, &key.verifying_key())),
    )?;
    tracing::warn!(
        old_origin = %old_origin,
        new_origin = %new_origin,
        moved_to = %old.moved_to.display(),
        "the log was set aside and a new one starts; auditors need the new log.vkey"
    );
    Ok(Some(EntryBody::LogReplaced {
        old_origin,
        old_dir: old.moved_to.display().to_string(),
        old_checkpoint: old.checkpoint,
        reason: reason.to_owned(),
    }))
}
