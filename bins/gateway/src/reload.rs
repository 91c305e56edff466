//! `SIGHUP`: re-read the configuration file and take its people, agents and roles (who may
//! ask, approve and be granted) without a restart. The new file is validated whole first;
//! a file that does not load keeps the running directory and says why. A reload that takes
//! is recorded in the log (`config_reloaded`: the file's hash and the names now
//! configured) before it takes effect. Everything else in the file (listeners, upstream,
//! log, limits) needs a restart, and a reload that changed it says so.

use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use crate::app::Gateway;
use crate::config::{AgentConfig, Config, PersonConfig, RoleConfig};

/// The reloadable part of the configuration.
#[derive(Debug, Clone)]
pub struct Directory {
    /// People (approvers, requesters).
    pub people: Vec<PersonConfig>,
    /// Agent identities.
    pub agents: Vec<AgentConfig>,
    /// Roles that may be granted.
    pub roles: Vec<RoleConfig>,
}

impl Directory {
    /// The directory a configuration names.
    pub fn of(config: &Config) -> Self {
        Self {
            people: config.people.clone(),
            agents: config.agents.clone(),
            roles: config.roles.clone(),
        }
    }

    /// A role by name.
    pub fn role(&self, name: &str) -> Option<&RoleConfig> {
        self.roles.iter().find(|r| r.name == name)
    }
}

/// The running directory, swapped whole by a reload.
#[derive(Debug)]
pub struct Live(RwLock<Arc<Directory>>);

impl Live {
    /// Starts with `directory`.
    pub fn new(directory: Directory) -> Self {
        Self(RwLock::new(Arc::new(directory)))
    }

    /// The current directory (a snapshot: a reload does not change it under the caller).
    pub fn get(&self) -> Arc<Directory> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn set(&self, directory: Directory) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(directory);
    }
}

/// Re-reads the configuration file; what changed, or why nothing did.
pub fn reload(gateway: &Gateway) -> Result<String, String> {
    let Some(path) = gateway.config.path.clone() else {
        return Err(
            "the gateway runs on its embedded defaults: there is no file to re-read".into(),
        );
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let config = Config::parse(&text, &path).map_err(|e| e.to_string())?;
    let directory = Directory::of(&config);
    let names = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
    let body = custody_log::EntryBody::ConfigReloaded {
        path: path.display().to_string(),
        sha256: hex::encode(Sha256::digest(text.as_bytes())),
        people: names(directory.people.iter().map(|p| p.name.as_str()).collect()),
        agents: names(
            directory
                .agents
                .iter()
                .map(|a| a.identity.as_str())
                .collect(),
        ),
        roles: names(directory.roles.iter().map(|r| r.name.as_str()).collect()),
    };
    // Recorded before it takes effect, like every change of who may do what.
    gateway
        .log
        .append(body)
        .map_err(|e| format!("not recorded in the log, so not applied: {e}"))?;
    let summary = format!(
        "{} people, {} agents, {} roles",
        directory.people.len(),
        directory.agents.len(),
        directory.roles.len()
    );
    gateway.directory.set(directory);
    let restart = if restart_needed(&gateway.config, &config) {
        "; other settings changed too and take effect at the next restart"
    } else {
        ""
    };
    Ok(format!("{summary}{restart}"))
}

/// Whether anything but people, agents and roles differs (compared as loaded).
fn restart_needed(running: &Config, new: &Config) -> bool {
    let rest = |c: &Config| {
        let mut c = c.clone();
        c.people.clear();
        c.agents.clear();
        c.roles.clear();
        format!("{c:?}")
    };
    rest(running) != rest(new)
}

/// Listens for `SIGHUP` from now on (registered at once: from here a SIGHUP no longer
/// ends the process); then [`on_sighup`] reloads on each.
pub fn listen() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: configuration reload is off");
            None
        }
    }
}

/// Reloads on every `SIGHUP` until `shutdown`.
pub async fn on_sighup(
    gateway: Arc<Gateway>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    hup: Option<tokio::signal::unix::Signal>,
) {
    let Some(mut hup) = hup else { return };
    loop {
        tokio::select! {
            _ = hup.recv() => match reload(&gateway) {
                Ok(what) => tracing::info!("configuration reloaded: {what}"),
                Err(why) => tracing::error!("configuration reload refused, the running people, agents and roles stay: {why}"),
            },
            _ = shutdown.changed() => return,
        }
    }
}
