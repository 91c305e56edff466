//! The embedded default store: one JSON file, held in memory, rewritten atomically on each
//! mutation.
//!
//! Durability: a write goes to `<file>.tmp` (created fresh, mode 0600), is fsynced, renamed
//! over the file, and the directory is fsynced; the rename is the commit point, so a crash
//! leaves either the old or the new file, and a leftover temp file is discarded at open. A
//! main file that does not parse is refused with [`StoreError::Corrupt`], never replaced by an
//! empty store. One process should own a store file at a time.
//!
//! Request counting: counts live in memory; the file holds a reservation that is always at
//! least the count handed out. When a count passes its reservation, the store reserves
//! [`use_reservation`] more and writes the file before answering. After a crash the count
//! restarts from the reservation, so a budget can be under-used by up to that many requests
//! (at most 1/64 of it, or [`USE_RESERVATION`]) but never exceeded (fail closed). Dropping
//! the store writes the exact counts.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};

use super::{GrantFilter, GrantStore, StoreError};
use crate::credentials::{AccessKeyId, AgentSecret, GrantId};
use crate::grant::Grant;

/// The fewest requests the file store reserves per write (see the module docs).
pub const USE_RESERVATION: u64 = 64;

/// The most: what a grant without a request budget reserves per write. Its count is then
/// informational, and rewriting the whole store file every few dozen requests (two fsyncs
/// on the request path) was the largest stall in the gateway's load profile.
pub const USE_RESERVATION_MAX: u64 = 65_536;

/// How many requests the file store reserves per write for a grant with this budget: 1/64
/// of the budget, within [`USE_RESERVATION`]..=[`USE_RESERVATION_MAX`]. So a crash can cost
/// a budgeted grant at most that share of its budget (never more requests than allowed),
/// and a busy grant's count is written every 1/64 of its budget rather than every 64
/// requests.
pub fn use_reservation(request_budget: Option<u64>) -> u64 {
    match request_budget {
        Some(budget) => (budget / 64).clamp(USE_RESERVATION, USE_RESERVATION_MAX),
        None => USE_RESERVATION_MAX,
    }
}

const FORMAT: &str = "custody-grant-store/1";

/// A [`GrantStore`] backed by one JSON file (mode 0600; it holds the agents' secrets).
pub struct FileGrantStore {
    path: PathBuf,
    tmp: PathBuf,
    state: RwLock<State>,
    /// Serialises writers, so each file write contains every earlier mutation.
    writer: Mutex<()>,
}

#[derive(Default)]
struct State {
    by_id: HashMap<GrantId, Entry>,
    by_key: HashMap<AccessKeyId, GrantId>,
}

struct Entry {
    grant: Arc<Grant>,
    secret: AgentSecret,
    uses: AtomicU64,
    /// The count persisted in the file; `uses` may not pass it before it is raised.
    reserved: AtomicU64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileImage {
    format: String,
    grants: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    grant: Grant,
    secret: String,
    uses: u64,
}

// === impl FileGrantStore ===

impl FileGrantStore {
    /// Open the store at `path`, creating nothing until the first mutation. A missing file is
    /// an empty store; a leftover temp file from an interrupted write is removed; a file that
    /// does not parse is refused.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let tmp = tmp_path(&path);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    op: "remove leftover temp file",
                    path: tmp,
                    source,
                });
            }
        }
        let state = match fs::read(&path) {
            Ok(bytes) => load(&path, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => State::default(),
            Err(source) => {
                return Err(StoreError::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        Ok(Self {
            path,
            tmp,
            state: RwLock::new(state),
            writer: Mutex::new(()),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write the exact request counts (instead of their reservations), if they differ.
    /// Needs exclusive access: with concurrent `record_use` calls, lowering a reservation
    /// could race a count being handed out.
    fn flush_exact(&mut self) -> Result<(), StoreError> {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let mut dirty = false;
        for e in state.by_id.values_mut() {
            let uses = *e.uses.get_mut();
            dirty |= std::mem::replace(e.reserved.get_mut(), uses) != uses;
        }
        if !dirty {
            return Ok(());
        }
        let bytes = encode(state, None)?;
        self.write_file(&bytes)
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // State is only changed after the file write succeeded, under the write lock, by
        // code that does not panic midway; a poisoned lock still guards a consistent state.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Atomically replace the file with `bytes`.
    fn write_file(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { op, path, source }
        };
        match fs::remove_file(&self.tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove stale temp file", &self.tmp)(e)),
        }
        // `create_new` with mode 0600: never reuse (or follow) a file someone else created.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.tmp)
            .map_err(io("create", &self.tmp))?;
        f.write_all(bytes).map_err(io("write", &self.tmp))?;
        f.sync_all().map_err(io("fsync", &self.tmp))?;
        drop(f);
        fs::rename(&self.tmp, &self.path).map_err(io("rename temp file over", &self.path))?;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync directory", &dir))
    }

    /// Under the writer lock: encode the state with `change` applied, write it, then apply
    /// `change` in memory.
    fn mutate<T>(
        &self,
        check: impl FnOnce(&State) -> Result<(), StoreError>,
        change: impl FnOnce(&mut State) -> T,
        preview: impl FnOnce(&State) -> Result<Vec<u8>, StoreError>,
    ) -> Result<T, StoreError> {
        let _w = self.lock_writer();
        let bytes = {
            let state = self.read();
            check(&state)?;
            preview(&state)?
        };
        self.write_file(&bytes)?;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        Ok(change(&mut state))
    }
}

impl std::fmt::Debug for FileGrantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the entries: they hold secrets.
        f.debug_struct("FileGrantStore")
            .field("path", &self.path)
            .field("grants", &self.read().by_id.len())
            .finish_non_exhaustive()
    }
}

impl Drop for FileGrantStore {
    fn drop(&mut self) {
        // Best effort: without it, counts restart from their (higher) reservations.
        let _ = self.flush_exact();
    }
}

impl GrantStore for FileGrantStore {
    fn create(&self, grant: Grant, secret: AgentSecret) -> Result<Arc<Grant>, StoreError> {
        let grant = Arc::new(grant);
        let id = grant.id.clone();
        let key = grant.access_key_id.clone();
        let entry = FileEntry {
            grant: (*grant).clone(),
            secret: secret.expose_secret().to_owned(),
            uses: 0,
        };
        self.mutate(
            |s| {
                if s.by_id.contains_key(&id) || s.by_key.contains_key(&key) {
                    Err(StoreError::Duplicate(id.clone()))
                } else {
                    Ok(())
                }
            },
            |s| {
                s.by_key.insert(key.clone(), id.clone());
                s.by_id.insert(
                    id.clone(),
                    Entry {
                        grant: Arc::clone(&grant),
                        secret,
                        uses: AtomicU64::new(0),
                        reserved: AtomicU64::new(0),
                    },
                );
                Arc::clone(&grant)
            },
            |s| encode(s, Some(Extra::Add(&entry))),
        )
    }

    fn get(&self, id: &GrantId) -> Result<Option<Arc<Grant>>, StoreError> {
        Ok(self.read().by_id.get(id).map(|e| Arc::clone(&e.grant)))
    }

    fn get_by_access_key(
        &self,
        key: &AccessKeyId,
    ) -> Result<Option<(Arc<Grant>, AgentSecret)>, StoreError> {
        let state = self.read();
        Ok(state
            .by_key
            .get(key)
            .and_then(|id| state.by_id.get(id))
            .map(|e| (Arc::clone(&e.grant), e.secret.clone())))
    }

    fn list(&self, filter: &GrantFilter) -> Result<Vec<Arc<Grant>>, StoreError> {
        let state = self.read();
        let mut out: Vec<Arc<Grant>> = state
            .by_id
            .values()
            .filter(|e| filter.matches(&e.grant))
            .map(|e| Arc::clone(&e.grant))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn compare_and_swap(&self, expected: &Grant, new: Grant) -> Result<Arc<Grant>, StoreError> {
        if new.id != expected.id {
            return Err(StoreError::Immutable("id"));
        }
        if new.access_key_id != expected.access_key_id {
            return Err(StoreError::Immutable("access_key_id"));
        }
        let id = expected.id.clone();
        let new = Arc::new(new);
        self.mutate(
            |s| match s.by_id.get(&id) {
                None => Err(StoreError::NotFound(id.clone())),
                Some(e) if *e.grant != *expected => Err(StoreError::Conflict(id.clone())),
                Some(_) => Ok(()),
            },
            |s| {
                if let Some(e) = s.by_id.get_mut(&id) {
                    e.grant = Arc::clone(&new);
                }
                Arc::clone(&new)
            },
            |s| encode(s, Some(Extra::Replace(&new))),
        )
    }

    fn record_use(&self, id: &GrantId) -> Result<u64, StoreError> {
        let (before, covered) = {
            let state = self.read();
            let e = state
                .by_id
                .get(id)
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let before = e.uses.fetch_add(1, Ordering::SeqCst);
            (before, before < e.reserved.load(Ordering::SeqCst))
        };
        if covered {
            return Ok(before);
        }
        // Raise the reservation and persist it before handing the count out.
        let _w = self.lock_writer();
        let state = self.read();
        let e = state
            .by_id
            .get(id)
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        let used = e.uses.load(Ordering::SeqCst);
        if used > e.reserved.load(Ordering::SeqCst) {
            let reserve = used.saturating_add(use_reservation(e.grant.request_budget));
            let bytes = encode(&state, Some(Extra::Reserve(id, reserve)))?;
            self.write_file(&bytes)?;
            e.reserved.store(reserve, Ordering::SeqCst);
        }
        Ok(before)
    }

    fn uses(&self, id: &GrantId) -> Result<u64, StoreError> {
        self.read()
            .by_id
            .get(id)
            .map(|e| e.uses.load(Ordering::SeqCst))
            .ok_or_else(|| StoreError::NotFound(id.clone()))
    }
}

/// A change applied on top of the state while encoding it.
enum Extra<'a> {
    Add(&'a FileEntry),
    Replace(&'a Grant),
    Reserve(&'a GrantId, u64),
}

fn encode(state: &State, extra: Option<Extra<'_>>) -> Result<Vec<u8>, StoreError> {
    // Borrowed mirror of `FileEntry`, so encoding does not clone every grant.
    #[derive(Serialize)]
    struct Out<'a> {
        grant: &'a Grant,
        secret: &'a str,
        uses: u64,
    }
    #[derive(Serialize)]
    struct Image<'a> {
        format: &'a str,
        grants: Vec<Out<'a>>,
    }
    let mut grants: Vec<Out<'_>> = state
        .by_id
        .values()
        .map(|e| {
            let grant: &Grant = match &extra {
                Some(Extra::Replace(g)) if g.id == e.grant.id => g,
                _ => &e.grant,
            };
            let uses = match &extra {
                Some(Extra::Reserve(id, n)) if **id == e.grant.id => *n,
                _ => e.reserved.load(Ordering::SeqCst),
            };
            Out {
                grant,
                secret: e.secret.expose_secret(),
                uses,
            }
        })
        .collect();
    if let Some(Extra::Add(new)) = &extra {
        grants.push(Out {
            grant: &new.grant,
            secret: &new.secret,
            uses: new.uses,
        });
    }
    grants.sort_by(|a, b| a.grant.id.cmp(&b.grant.id));
    let mut bytes = serde_json::to_vec_pretty(&Image {
        format: FORMAT,
        grants,
    })
    .map_err(|e| StoreError::Encode(e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn load(path: &Path, bytes: &[u8]) -> Result<State, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let image: FileImage = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if image.format != FORMAT {
        return Err(corrupt(format!(
            "unknown format `{}`, expected `{FORMAT}`",
            image.format
        )));
    }
    let mut state = State::default();
    for entry in image.grants {
        let id = entry.grant.id.clone();
        let secret = AgentSecret::from_exposed(entry.secret)
            .map_err(|e| corrupt(format!("grant `{id}`: {e}")))?;
        if state
            .by_key
            .insert(entry.grant.access_key_id.clone(), id.clone())
            .is_some()
        {
            return Err(corrupt(format!(
                "access key id `{}` appears twice",
                entry.grant.access_key_id
            )));
        }
        let e = Entry {
            grant: Arc::new(entry.grant),
            secret,
            uses: AtomicU64::new(entry.uses),
            reserved: AtomicU64::new(entry.uses),
        };
        if state.by_id.insert(id.clone(), e).is_some() {
            return Err(corrupt(format!("grant `{id}` appears twice")));
        }
    }
    Ok(state)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}
