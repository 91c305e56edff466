//! The committer thread: group commit, checkpoints, segment rotation, and
//! the scan that reopens a log after a crash.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::copy::CopyTarget;
use super::latest::LatestFile;
use super::startup::{Scan, Trusted};
use super::{Appended, Counters, Item, LogConfig, Op, Queue, Reply, Shared, Slot, lock};
use crate::entry::{self, Entry, EntryBody};
use crate::error::LogError;
use crate::merkle::{CompactTree, Hash, leaf_hash};
use crate::note::{Checkpoint, SignedCheckpoint, parse_vkey, vkey};
use crate::storage::{self, CHECKPOINTS_FILE, CheckpointLine};

pub(super) struct Writer {
    pub(super) counters: Arc<Counters>,
    cfg: LogConfig,
    key: SigningKey,
    pub(super) vkey: String,
    seg_index: u32,
    seg_path: PathBuf,
    seg: File,
    /// Bytes of entries in the segment: where the next batch goes.
    seg_len: u64,
    /// The segment file's size: entries, then preallocated zeros.
    seg_alloc: u64,
    next_seq: u64,
    prev: Hash,
    last_time: Option<OffsetDateTime>,
    /// Time of the last checkpoint; checkpoint times never go backwards either.
    last_checkpoint_time: Option<OffsetDateTime>,
    tree: CompactTree,
    ckpt_path: PathBuf,
    ckpt: File,
    ckpt_len: u64,
    sealed_size: u64,
    last_checkpoint_at: Instant,
    first_unsealed_at: Option<Instant>,
    failed: Option<LogError>,
    /// The `checkpoint` file, replaced with descriptors opened ahead.
    latest: LatestFile,
    /// Its copy in `checkpoint_copy_dir`: overwritten only while it still holds what this
    /// writer put there (or found there, verified, at start), and only with a checkpoint
    /// proven consistent with it.
    copy: Option<CopyTarget>,
    /// Set while a checkpoint cannot be written (no descriptor, no space): nothing was
    /// half-written, so the log retries instead of failing for good, and refuses appends
    /// until a checkpoint succeeds.
    unsealable: Option<LogError>,
    buf: Vec<u8>,
    /// `cfg.origin` as a JSON string, as every entry line carries it.
    origin_json: String,
}

impl Writer {
    /// Scans the existing log, cuts a torn tail, and returns the writer plus
    /// the `recovered` entry to write if the last run did not stop cleanly.
    pub(super) fn open(
        cfg: LogConfig,
        key: SigningKey,
    ) -> Result<(Writer, Option<EntryBody>), LogError> {
        let dir = cfg.dir.clone();
        let vkey = vkey(&cfg.origin, &key.verifying_key());
        let verifier = parse_vkey(&vkey)?;
        // Checkpoints first: the entries are checked against them as they are read.
        let ckpt_path = dir.join(CHECKPOINTS_FILE);
        let mut ckpt_data = Vec::new();
        if let Ok(mut f) = File::open(&ckpt_path) {
            f.read_to_end(&mut ckpt_data)
                .map_err(|e| LogError::io("read", &ckpt_path, &e))?;
        }
        let (ck_lines, ck_tail) = storage::split_lines(&ckpt_data);
        let trusted = Trusted::gather(
            &dir,
            &ck_lines,
            cfg.checkpoint_copy_dir.as_deref(),
            &verifier,
        )?;
        let mut scan = Scan::new(&trusted, &cfg.origin, &dir);

        let segments = storage::list_segments(&dir).map_err(|e| LogError::io("list", &dir, &e))?;
        let mut tree = CompactTree::new();
        let mut prev = Hash::default();
        let mut last: Option<Entry> = None;
        let mut cut: Option<(String, Vec<u8>)> = None;
        // Bytes of entries in the last segment (without a torn tail or padding).
        let mut last_len = 0;
        let n = segments.len();
        for (i, (_, path)) in segments.iter().enumerate() {
            let file_data = fs::read(path).map_err(|e| LogError::io("read", path, &e))?;
            let data = storage::trim_padding(&file_data);
            let (lines, tail) = storage::split_lines(data);
            last_len = (data.len() - tail.len()) as u64;
            for line in &lines {
                let h = leaf_hash(line);
                tree.push(h);
                last = Some(scan.line(path, line, &prev, &tree)?);
                prev = h;
            }
            if !tail.is_empty() {
                if i + 1 != n {
                    return Err(LogError::Corrupt {
                        path: path.display().to_string(),
                        reason: "segment before the last ends in a partial line".into(),
                    });
                }
                let name = path
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                cut = Some((name, tail.to_vec()));
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| LogError::io("open", path, &e))?;
                f.set_len(last_len)
                    .map_err(|e| LogError::io("truncate", path, &e))?;
                f.sync_all().map_err(|e| LogError::io("fsync", path, &e))?;
            }
        }
        let (seg_index, seg_path) = match segments.last() {
            Some((i, p)) => (*i, p.clone()),
            None => (0, dir.join(storage::segment_name(0))),
        };
        let seg = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&seg_path)
            .map_err(|e| LogError::io("open", &seg_path, &e))?;
        if segments.is_empty() {
            storage::sync_dir(&dir).map_err(|e| LogError::io("fsync", &dir, &e))?;
        }
        // Entries end where the padding (if any) begins; a torn tail was cut above.
        let seg_alloc = seg
            .metadata()
            .map_err(|e| LogError::io("stat", &seg_path, &e))?
            .len();
        let seg_len = last_len;

        trusted.check_size(&dir, tree.size())?;
        let (unsealed_entries, unsealed_sha256) = scan.unsealed();
        let latest = LatestFile::open(&dir)?;
        // The copy verified (or is absent): from here on it is this writer's to replace.
        let copy = match &cfg.checkpoint_copy_dir {
            Some(d) => Some(CopyTarget::new(LatestFile::open(d)?, &tree)),
            None => None,
        };

        // Checkpoints: cut a torn last line the same way; remember the size sealed.
        let mut sealed_size = 0;
        let mut last_checkpoint_time = None;
        if let Some(line) = ck_lines.last()
            && let Ok(l) = serde_json::from_slice::<CheckpointLine>(line)
            && let Ok((cp, _)) = SignedCheckpoint::parse(&l.note)
        {
            sealed_size = cp.checkpoint.size;
            last_checkpoint_time = cp.checkpoint.time();
        }
        let ckpt = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ckpt_path)
            .map_err(|e| LogError::io("open", &ckpt_path, &e))?;
        let ckpt_len = (ckpt_data.len() - ck_tail.len()) as u64;
        if !ck_tail.is_empty() {
            ckpt.set_len(ckpt_len)
                .map_err(|e| LogError::io("truncate", &ckpt_path, &e))?;
            ckpt.sync_all()
                .map_err(|e| LogError::io("fsync", &ckpt_path, &e))?;
        }
        storage::sync_dir(&dir).map_err(|e| LogError::io("fsync", &dir, &e))?;

        let unclean = last
            .as_ref()
            .is_some_and(|e| !matches!(e.body, EntryBody::GatewayStopped { .. }));
        let recovery = if unclean || cut.is_some() || unsealed_entries > 0 {
            let (segment, bytes) = cut.unwrap_or_default();
            Some(EntryBody::Recovered {
                segment,
                cut_bytes: bytes.len() as u64,
                cut_sha256: hex::encode(Sha256::digest(&bytes)),
                unsealed_entries,
                unsealed_sha256,
            })
        } else {
            None
        };
        let size = tree.size();
        Ok((
            Writer {
                counters: Arc::default(),
                key,
                vkey,
                seg_index,
                seg_path,
                seg,
                seg_len,
                seg_alloc,
                next_seq: size,
                prev,
                last_time: last.map(|e| e.time),
                last_checkpoint_time,
                tree,
                ckpt_path,
                ckpt,
                ckpt_len,
                sealed_size: sealed_size.min(size),
                last_checkpoint_at: Instant::now(),
                first_unsealed_at: (sealed_size < size).then(Instant::now),
                failed: None,
                latest,
                copy,
                unsealable: None,
                buf: Vec::with_capacity(1 << 16),
                origin_json: entry::json_string(&cfg.origin)?,
                cfg,
            },
            recovery,
        ))
    }

    /// The committer thread: takes what is queued, writes it, and writes timed
    /// checkpoints, until the log is closed.
    pub(super) fn run(writer: &Mutex<Writer>, shared: &Shared) {
        let mut batch: Vec<Item> = Vec::new();
        loop {
            // Read from the writer before the queue is locked: the writer may be busy
            // with an inline commit, and appenders must not wait for it on the queue.
            let (due, linger) = {
                let w = lock_writer(writer, shared);
                (Instant::now() + w.next_deadline(), w.cfg.deferred_max_delay)
            };
            {
                let mut q = lock(&shared.queue);
                let mut take = ready(&mut q);
                let now = Instant::now();
                if !take && now < due {
                    // While lingering (after a batch), deferred appends are queued without
                    // a wake-up and taken at the latest when it ends.
                    let until = q.linger_until.map_or(due, |t| due.min(t));
                    q.sleeping = true;
                    q.sleep_until = Some(until);
                    let (guard, _) = shared
                        .wake
                        .wait_timeout(q, until - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    q = guard;
                    q.sleeping = false;
                    q.sleep_until = None;
                    // Woken (or timed out): decide once more; if there is nothing to
                    // take, the loop recomputes the deadline (an inline commit may have
                    // moved it) and gives the timed checkpoint its turn.
                    take = ready(&mut q);
                }
                if take {
                    batch.extend(q.items.drain(..));
                    q.urgent = 0;
                }
            }
            let mut w = lock_writer(writer, shared);
            if !batch.is_empty() {
                let closing = w.process(&mut batch, shared);
                if closing {
                    // Fail anything that raced in after the close.
                    let rest: Vec<Item> = lock(&shared.queue).items.drain(..).collect();
                    for item in rest {
                        item.reply.fail(LogError::Closed);
                    }
                    return;
                }
                lock(&shared.queue).linger(linger);
            }
            if w.failed.is_none() {
                if w.unsealable.is_some() {
                    w.try_reseal(shared);
                } else if let Err(e) = w.timed_checkpoint() {
                    w.unseal_failed(shared, e);
                }
            }
        }
    }

    /// The longest a deferred append waits for a batch.
    pub(super) fn deferred_max_delay(&self) -> Duration {
        self.cfg.deferred_max_delay
    }

    /// Time until the next checkpoint or heartbeat is due.
    pub(super) fn next_deadline(&self) -> Duration {
        if self.failed.is_some() {
            // No timed checkpoint is written once failed; only queued work (errors to
            // hand out, the close) wakes the committer.
            return Duration::from_secs(3600);
        }
        if self.unsealable.is_some() {
            // Retry the checkpoint soon: appends are refused until it is written.
            return Duration::from_millis(250);
        }
        let heartbeat = self
            .cfg
            .heartbeat_every
            .saturating_sub(self.last_checkpoint_at.elapsed());
        let sealing = match self.first_unsealed_at {
            Some(t) => self.cfg.checkpoint_every.saturating_sub(t.elapsed()),
            None => heartbeat,
        };
        heartbeat.min(sealing).max(Duration::from_millis(1))
    }

    fn timed_checkpoint(&mut self) -> Result<(), LogError> {
        let unsealed = self.tree.size() - self.sealed_size;
        let due = unsealed >= self.cfg.checkpoint_every_entries
            || self
                .first_unsealed_at
                .is_some_and(|t| t.elapsed() >= self.cfg.checkpoint_every)
            || self.last_checkpoint_at.elapsed() >= self.cfg.heartbeat_every;
        if due {
            self.write_checkpoint()?;
        }
        Ok(())
    }

    /// Handles one batch. Returns `true` when the log was closed.
    pub(super) fn process(&mut self, batch: &mut Vec<Item>, shared: &Shared) -> bool {
        // Appends up to the first control operation go in one group commit.
        let mut closing = false;
        let mut pending: Vec<Item> = Vec::new();
        for item in batch.drain(..) {
            match item.op {
                Op::Append(_) => pending.push(item),
                _ => {
                    self.commit(&mut pending, shared);
                    closing |= self.control(item, shared);
                }
            }
        }
        self.commit(&mut pending, shared);
        closing
    }

    fn control(&mut self, item: Item, shared: &Shared) -> bool {
        let Reply::Checkpoint(slot) = item.reply else {
            return false;
        };
        if let Some(e) = &self.failed {
            slot.complete(Err(LogError::Failed(e.to_string())));
            return matches!(item.op, Op::Close);
        }
        let closing = matches!(item.op, Op::Close);
        let result = match item.op {
            Op::Append(_) | Op::Checkpoint => {
                // Recoverable: a failed checkpoint leaves nothing half-written.
                slot.complete(self.seal(shared));
                return false;
            }
            Op::RotateKey(key) => self.rotate_key(*key, shared),
            Op::Close => self
                .append_internal(&EntryBody::GatewayStopped {
                    reason: "shutdown".into(),
                })
                .and_then(|_| self.write_checkpoint())
                .and_then(|cp| self.cut_padding().map(|()| cp)),
        };
        if let Err(e) = &result {
            self.fail(shared, e.clone());
        }
        slot.complete(result);
        closing
    }

    fn rotate_key(
        &mut self,
        key: SigningKey,
        _shared: &Shared,
    ) -> Result<SignedCheckpoint, LogError> {
        let new_vkey = vkey(&self.cfg.origin, &key.verifying_key());
        self.append_internal(&EntryBody::KeyRotated {
            old_vkey: self.vkey.clone(),
            new_vkey: new_vkey.clone(),
        })?;
        self.write_checkpoint()?;
        self.key = key;
        self.vkey = new_vkey;
        self.write_checkpoint()
    }

    fn append_internal(&mut self, body: &EntryBody) -> Result<Appended, LogError> {
        let encoded = body.encode()?;
        let slot = Arc::new(Slot::<Appended>::new());
        let mut one = vec![Item {
            op: Op::Append(encoded),
            reply: Reply::Appended(super::Replier(Arc::clone(&slot))),
        }];
        let dummy = Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            health: Mutex::new(None),
        };
        self.commit(&mut one, &dummy);
        slot.wait()
    }

    /// Writes and syncs a batch of appends, then replies to each.
    fn commit(&mut self, items: &mut Vec<Item>, shared: &Shared) {
        if items.is_empty() {
            return;
        }
        if let Some(e) = &self.failed {
            let msg = e.to_string();
            for item in items.drain(..) {
                item.reply.fail(LogError::Failed(msg.clone()));
            }
            return;
        }
        if self.unsealable.is_some() && !self.try_reseal(shared) {
            let msg = self
                .unsealable
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            for item in items.drain(..) {
                item.reply.fail(LogError::Failed(format!(
                    "the log cannot seal its entries right now (retrying): {msg}"
                )));
            }
            return;
        }
        self.buf.clear();
        let mut results: Vec<Result<Appended, LogError>> = Vec::with_capacity(items.len());
        let mut leaves: Vec<Hash> = Vec::with_capacity(items.len());
        let (seq0, prev0, time0) = (self.next_seq, self.prev, self.last_time);
        let now = entry::truncate_to_micros((self.cfg.clock)());
        // Times never go backwards in the log, even if the clock does.
        let time = match self.last_time {
            Some(t) if t > now => t,
            _ => now,
        };
        // One time per batch: formatted once, like the origin (once per writer).
        let time_text = entry::format_time(time);
        for item in items.iter() {
            let Op::Append(body) = &item.op else { continue };
            let start = self.buf.len();
            match entry::encode_into(
                &mut self.buf,
                self.next_seq,
                &time_text,
                &self.origin_json,
                &self.prev,
                body,
            ) {
                Ok(()) => {
                    let h = leaf_hash(&self.buf[start..]);
                    self.buf.push(b'\n');
                    results.push(Ok(Appended {
                        seq: self.next_seq,
                        leaf_hash: h,
                    }));
                    leaves.push(h);
                    self.next_seq += 1;
                    self.prev = h;
                    self.last_time = Some(time);
                }
                Err(e) => results.push(Err(e.into())),
            }
        }
        let written = if self.buf.is_empty() {
            Ok(())
        } else {
            self.preallocate(self.seg_len + self.buf.len() as u64)
                .and_then(|()| {
                    let started = Instant::now();
                    self.seg
                        .write_all_at(&self.buf, self.seg_len)
                        .map_err(|e| LogError::io("write", &self.seg_path, &e))?;
                    self.seg
                        .sync_data()
                        .map_err(|e| LogError::io("fdatasync", &self.seg_path, &e))?;
                    self.counters.observe_commit(started.elapsed());
                    Ok(())
                })
        };
        match written {
            Ok(()) => {
                self.seg_len += self.buf.len() as u64;
                if !self.buf.is_empty() {
                    self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .appends
                        .fetch_add(leaves.len() as u64, Ordering::Relaxed);
                }
                for h in leaves {
                    self.tree.push(h);
                    if let Some(copy) = &mut self.copy {
                        copy.push(h);
                    }
                }
                if self.first_unsealed_at.is_none() && self.tree.size() > self.sealed_size {
                    self.first_unsealed_at = Some(Instant::now());
                }
                for (item, r) in items.drain(..).zip(results) {
                    if let Reply::Appended(slot) = item.reply {
                        slot.complete(r);
                    }
                }
                if self.seg_len >= self.cfg.segment_max_bytes {
                    if let Err(e) = self.rotate_segment() {
                        self.fail(shared, e);
                    }
                } else if self.tree.size() - self.sealed_size >= self.cfg.checkpoint_every_entries {
                    // A failure is recorded by `seal` (appends refused until it passes).
                    let _ = self.seal(shared);
                }
            }
            Err(e) => {
                // Never leave a half entry that a later append would build on.
                let _ = self.seg.set_len(self.seg_len);
                let _ = self.seg.sync_all();
                self.seg_alloc = self.seg_len;
                self.next_seq = seq0;
                self.prev = prev0;
                self.last_time = time0;
                self.fail(shared, e.clone());
                for item in items.drain(..) {
                    item.reply.fail(e.clone());
                }
            }
        }
    }

    /// A checkpoint could not be written, but nothing was half-written: appends are
    /// refused (and `health` says why) until one is.
    fn unseal_failed(&mut self, shared: &Shared, e: LogError) {
        if self.failed.is_none() {
            self.unsealable = Some(e.clone());
            *lock(&shared.health) = Some(e);
        }
    }

    /// A checkpoint was written: the log takes appends again.
    fn resealed(&mut self, shared: &Shared) {
        if self.unsealable.take().is_some() && self.failed.is_none() {
            *lock(&shared.health) = None;
        }
    }

    /// Writes a checkpoint, recoverably: a failure (nothing half-written) makes the log
    /// unsealable, refusing appends until a later checkpoint succeeds; a success ends that.
    fn seal(&mut self, shared: &Shared) -> Result<SignedCheckpoint, LogError> {
        let result = self.write_checkpoint();
        match &result {
            Ok(_) => self.resealed(shared),
            Err(e) => self.unseal_failed(shared, e.clone()),
        }
        result
    }

    /// Retries the checkpoint that could not be written; whether it now has been.
    fn try_reseal(&mut self, shared: &Shared) -> bool {
        self.seal(shared).is_ok()
    }

    fn fail(&mut self, shared: &Shared, e: LogError) {
        if self.failed.is_none() {
            self.failed = Some(e.clone());
            *lock(&shared.health) = Some(e);
        }
    }

    fn rotate_segment(&mut self) -> Result<(), LogError> {
        self.write_checkpoint()?;
        // A finished segment holds entries only.
        self.cut_padding()?;
        let next = self.seg_index + 1;
        let path = self.cfg.dir.join(storage::segment_name(next));
        let f = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| LogError::io("create", &path, &e))?;
        storage::sync_dir(&self.cfg.dir).map_err(|e| LogError::io("fsync", &self.cfg.dir, &e))?;
        self.seg = f;
        self.seg_index = next;
        self.seg_path = path;
        self.seg_len = 0;
        self.seg_alloc = 0;
        Ok(())
    }

    /// Makes sure the segment file extends to at least `end`, by writing zeros
    /// `preallocate_bytes` at a time. Written, not `fallocate`d: space allocated
    /// but unwritten would still need a journalled extent conversion on the
    /// first write into it. The zeros become durable with the batch's sync.
    fn preallocate(&mut self, end: u64) -> Result<(), LogError> {
        // Zero-initialised statics live in .bss: no 64 KiB in the binary.
        static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
        if end <= self.seg_alloc || self.cfg.preallocate_bytes == 0 {
            return Ok(());
        }
        // Never far past the rotation point: the padding is cut there anyway.
        let target = (end + self.cfg.preallocate_bytes).min(end.max(self.cfg.segment_max_bytes));
        let mut at = self.seg_alloc.max(self.seg_len);
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64) as usize;
            // `write_at`, not `write_all_at`: a short write near a full disk still counts.
            let written = match self.seg.write_at(&ZEROS[..n], at) {
                Ok(0) => Err(std::io::Error::from(std::io::ErrorKind::WriteZero)),
                Ok(k) => Ok(k),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
                Err(e) => Err(e),
            };
            if let Err(e) = written.map(|k| at += k as u64) {
                if at >= end {
                    // A nearly full disk: the batch fits, the room ahead does not. Write
                    // the batch; the next one tries again (and fails closed if it must).
                    break;
                }
                return Err(LogError::io("preallocate", &self.seg_path, &e));
            }
        }
        self.seg_alloc = at;
        Ok(())
    }

    /// Cuts the preallocated zeros after the last entry (on close and rotation).
    fn cut_padding(&mut self) -> Result<(), LogError> {
        if self.seg_alloc > self.seg_len {
            self.seg
                .set_len(self.seg_len)
                .and_then(|()| self.seg.sync_all())
                .map_err(|e| LogError::io("truncate", &self.seg_path, &e))?;
            self.seg_alloc = self.seg_len;
        }
        Ok(())
    }

    fn write_checkpoint(&mut self) -> Result<SignedCheckpoint, LogError> {
        let clock = entry::truncate_to_micros((self.cfg.clock)());
        let now = self.last_checkpoint_time.map_or(clock, |t| t.max(clock));
        self.last_checkpoint_time = Some(now);
        let cp = Checkpoint {
            origin: self.cfg.origin.clone(),
            size: self.tree.size(),
            root: self.tree.root(),
            extensions: vec![format!("time {}", entry::format_time(now))],
        };
        let signed = cp.sign(&self.cfg.origin, &self.key)?;
        let mut line = serde_json::to_vec(&CheckpointLine {
            note: signed.note.clone(),
        })
        .map_err(|e| LogError::Failed(format!("encode checkpoint: {e}")))?;
        line.push(b'\n');
        // The latest-checkpoint files first: a crash between the two writes
        // must leave `checkpoint` ahead of `checkpoints.jsonl`, never behind
        // it (behind is what a replayed checkpoint looks like).
        self.latest.replace(signed.note.as_bytes(), false)?;
        if let Some(copy) = &mut self.copy {
            copy.replace(&signed.note, &self.tree)?;
        }
        let path = self.ckpt_path.clone();
        let r = self
            .ckpt
            .write_all(&line)
            .and_then(|()| self.ckpt.sync_data())
            .map_err(|e| LogError::io("write", &path, &e));
        if let Err(e) = r {
            let _ = self.ckpt.set_len(self.ckpt_len);
            return Err(e);
        }
        self.ckpt_len += line.len() as u64;
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.sealed_size = cp.size;
        self.last_checkpoint_at = Instant::now();
        self.first_unsealed_at = None;
        Ok(signed)
    }
}

/// Locks the writer. A panic while it was held (in a commit, on the committer thread or
/// on a caller committing inline) may have left its chain state half-updated, so the
/// log is failed then: nothing more is appended to an uncertain chain, and appenders
/// get the error (the gateway fails closed).
pub(super) fn lock_writer<'a>(
    writer: &'a Mutex<Writer>,
    shared: &Shared,
) -> MutexGuard<'a, Writer> {
    match writer.lock() {
        Ok(w) => w,
        Err(poisoned) => {
            let mut w = poisoned.into_inner();
            w.fail(
                shared,
                LogError::Failed("a commit panicked; the log takes no more entries".into()),
            );
            w
        }
    }
}

/// Whether the committer should take the queue now: something urgent is queued, or
/// deferred entries are and their lingering time is over. Ends the lingering state
/// once it is over.
fn ready(q: &mut Queue) -> bool {
    if q.linger_until.is_some_and(|t| Instant::now() >= t) {
        // From now on the first deferred append wakes the committer.
        q.linger_until = None;
    }
    q.urgent > 0 || (!q.items.is_empty() && q.linger_until.is_none())
}
