//! The durable, group-committed writer.
//!
//! Callers encode their entry body on their own thread and queue it; one
//! committer thread takes everything queued, stamps sequence numbers, times
//! and hash links, writes the batch with one `write` and makes it durable with
//! one `fdatasync`, then wakes every caller in the batch. While it syncs, the
//! next batch queues up. Checkpoints are written by the same thread.
//!
//! Inline commits ([`LogConfig::inline_commit`]): when the committer is idle and
//! nothing urgent is queued, an append is written and synced by the calling thread
//! itself (with any deferred entries waiting), sparing the two thread hand-offs of a
//! queued append; concurrent appends still queue for the committer, which groups them.
//!
//! Deferred appends ([`Log::append_deferred`]) are for entries nobody waits on
//! (a request's outcome, written after the response is on its way): they do not
//! wake the committer but ride the next batch, or are written on their own once
//! they have waited [`LogConfig::deferred_max_delay`]. Under load that halves the
//! hand-offs and syncs per request; when idle it costs one late write.
//!
//! Fail closed: if a write or sync fails, the segment is cut back to the last
//! durable length, every caller in the batch gets the error, and the log
//! refuses all later appends (and `health` reports it) until it is reopened.

mod commit;
mod copy;
mod latest;
mod startup;

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use time::OffsetDateTime;

use crate::entry::{EncodeBody, EntryBody};
use crate::error::LogError;
use crate::merkle::Hash;
use crate::note::SignedCheckpoint;

/// A clock returning the current time; entries are stamped with it.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// Log configuration.
#[derive(Clone)]
pub struct LogConfig {
    /// Directory holding segments and checkpoints.
    pub dir: PathBuf,
    /// The log's name: the checkpoint origin line, the key name and every
    /// entry's `origin`. No whitespace or `+`.
    pub origin: String,
    /// Write a checkpoint once this many entries are unsealed.
    pub checkpoint_every_entries: u64,
    /// Write a checkpoint once the oldest unsealed entry is this old.
    pub checkpoint_every: Duration,
    /// Write a heartbeat checkpoint when none was written for this long,
    /// even with no new entries.
    pub heartbeat_every: Duration,
    /// Start a new segment once the current one reaches this size.
    pub segment_max_bytes: u64,
    /// Extend the current segment by this many zero bytes at a time, ahead of
    /// the entries (0: grow it with every append). Overwriting allocated space
    /// makes each group commit's `fdatasync` a data flush with no file-size
    /// change to journal; the padding is cut on close and rotation, and readers
    /// ignore it.
    pub preallocate_bytes: u64,
    /// Also write the latest checkpoint here (a place the gateway host
    /// cannot rewrite, in production).
    pub checkpoint_copy_dir: Option<PathBuf>,
    /// Source of entry times (tests use a fixed clock).
    pub clock: Clock,
    /// Longest time a [`Log::append_deferred`] entry waits for a batch to ride
    /// with before it is written on its own (zero: written at once).
    pub deferred_max_delay: Duration,
    /// Let an append find the committer idle and write and sync its entry on the
    /// calling thread (blocking it for the sync, as [`Log::append`] blocks anyway;
    /// from [`Log::append_async`] it blocks the polling thread).
    pub inline_commit: bool,
}

/// A durable append: the entry's sequence number and leaf hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number (also the leaf index in the Merkle tree).
    pub seq: u64,
    /// RFC 6962 leaf hash of the entry line.
    pub leaf_hash: Hash,
}

/// Counters since [`Log::open`], for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Entries made durable.
    pub appends: u64,
    /// `fdatasync`s of entry batches (group commits).
    pub syncs: u64,
    /// Checkpoints written (heartbeats included).
    pub checkpoints: u64,
}

/// An open log. `Send + Sync`; share it in an `Arc`.
pub struct Log {
    shared: Arc<Shared>,
    /// The writer: held by the committer thread for each batch, or by a caller
    /// committing inline.
    writer: Arc<Mutex<Writer>>,
    inline_commit: bool,
    counters: Arc<Counters>,
    thread: Mutex<Option<JoinHandle<()>>>,
    origin: String,
    vkey: String,
}

/// The future returned by [`Log::append_async`]. Resolves when the entry is
/// durable; the committer thread wakes it.
pub struct AppendFuture {
    inner: AppendFutureInner,
}

enum AppendFutureInner {
    Ready(Option<Result<Appended, LogError>>),
    Waiting(Arc<Slot<Appended>>),
}

// === impl LogConfig ===

impl LogConfig {
    /// A configuration with defaults: a checkpoint every 1000 entries or
    /// 1 s, a heartbeat every 60 s, 64 MiB segments preallocated 1 MiB at a
    /// time, the system clock, deferred entries written within 5 ms.
    pub fn new(dir: impl Into<PathBuf>, origin: impl Into<String>) -> Self {
        LogConfig {
            dir: dir.into(),
            origin: origin.into(),
            checkpoint_every_entries: 1000,
            checkpoint_every: Duration::from_secs(1),
            heartbeat_every: Duration::from_secs(60),
            segment_max_bytes: 64 << 20,
            preallocate_bytes: 1 << 20,
            checkpoint_copy_dir: None,
            clock: system_clock(),
            deferred_max_delay: Duration::from_millis(5),
            inline_commit: true,
        }
    }
}

impl fmt::Debug for LogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogConfig")
            .field("dir", &self.dir)
            .field("origin", &self.origin)
            .field("checkpoint_every_entries", &self.checkpoint_every_entries)
            .field("checkpoint_every", &self.checkpoint_every)
            .field("heartbeat_every", &self.heartbeat_every)
            .field("segment_max_bytes", &self.segment_max_bytes)
            .field("preallocate_bytes", &self.preallocate_bytes)
            .field("checkpoint_copy_dir", &self.checkpoint_copy_dir)
            .field("deferred_max_delay", &self.deferred_max_delay)
            .field("inline_commit", &self.inline_commit)
            .finish_non_exhaustive()
    }
}

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

// === impl Log ===

impl Log {
    /// Opens (or creates) the log in `config.dir`: cuts a torn last line,
    /// records a `recovered` entry if the last run did not stop cleanly, and
    /// writes a `gateway_started` entry. Returns once those are durable.
    pub fn open(config: LogConfig, key: SigningKey) -> Result<Log, LogError> {
        if config.origin.is_empty() || config.origin.chars().any(|c| c == '+' || c.is_whitespace())
        {
            return Err(LogError::Config(format!(
                "invalid origin `{}`",
                config.origin
            )));
        }
        if config.checkpoint_every_entries == 0 {
            return Err(LogError::Config(
                "checkpoint_every_entries must be at least 1".into(),
            ));
        }
        fs::create_dir_all(&config.dir).map_err(|e| LogError::io("create", &config.dir, &e))?;
        let (writer, recovery) = Writer::open(config.clone(), key)?;
        let origin = config.origin.clone();
        let vkey = writer.vkey.clone();
        let counters = Arc::clone(&writer.counters);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            health: Mutex::new(None),
        });
        let writer = Arc::new(Mutex::new(writer));
        let (thread_shared, thread_writer) = (Arc::clone(&shared), Arc::clone(&writer));
        let thread = std::thread::Builder::new()
            .name("custody-log-commit".into())
            .spawn(move || {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    Writer::run(&thread_writer, &thread_shared);
                }));
                if run.is_err() {
                    committer_died(&thread_shared);
                }
            })
            .map_err(|e| LogError::Failed(format!("cannot start committer thread: {e}")))?;
        let log = Log {
            shared,
            writer,
            inline_commit: config.inline_commit,
            counters,
            thread: Mutex::new(Some(thread)),
            origin,
            vkey: vkey.clone(),
        };
        if let Some(body) = recovery {
            log.append(body)?;
        }
        log.append(EntryBody::GatewayStarted {
            software: concat!("custody-log ", env!("CARGO_PKG_VERSION")).into(),
            vkey,
        })?;
        // Sealed at once: a log on disk always has a checkpoint of its own (but for a
        // crash in the next moment), so the next start can tell a log whose checkpoints
        // were deleted from a fresh one.
        log.checkpoint_now()?;
        Ok(log)
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key of the signing key given to [`Log::open`] (after
    /// [`Log::rotate_key`], the new one is in the `key_rotated` entry).
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// Appends an entry and returns once it is on disk (`fdatasync`).
    /// Concurrent appends share one sync. An error means the entry is not
    /// in the log and must not be acted on.
    pub fn append(&self, body: impl EncodeBody) -> Result<Appended, LogError> {
        let encoded = match self.try_inline(body.encode_body()?, true) {
            Ok(done) => return done,
            Err(encoded) => encoded,
        };
        let slot = self.submit(Op::Append(encoded))?;
        slot.wait()
    }

    /// Queues an entry that nothing waits on and returns at once: it is
    /// written with the next group commit, or on its own within
    /// [`LogConfig::deferred_max_delay`], and always before a later
    /// [`Log::close`] completes. An error here means it was not queued; a
    /// failure to write it later fails the log like any other (see
    /// [`Log::health`]).
    pub fn append_deferred(&self, body: impl EncodeBody) -> Result<(), LogError> {
        let encoded = body.encode_body()?;
        self.enqueue(Item {
            op: Op::Append(encoded),
            reply: Reply::Deferred,
        })
    }

    /// Like [`Log::append`], as a future woken by the committer thread. With
    /// [`LogConfig::inline_commit`] and the committer idle, the entry is written and
    /// synced here, on the calling thread, and the future is ready at once.
    pub fn append_async(&self, body: impl EncodeBody) -> AppendFuture {
        self.append_async_inline(body, true)
    }

    /// [`Log::append_async`], saying whether this call may commit inline: pass `false`
    /// when blocking the calling thread for a sync would hold up other work on it
    /// (e.g. other requests served by the same single-threaded runtime).
    pub fn append_async_inline(&self, body: impl EncodeBody, inline: bool) -> AppendFuture {
        let inner = match body.encode_body().map_err(LogError::from) {
            Err(e) => AppendFutureInner::Ready(Some(Err(e))),
            Ok(encoded) => match self.try_inline(encoded, inline) {
                Ok(done) => AppendFutureInner::Ready(Some(done)),
                Err(encoded) => match self.submit(Op::Append(encoded)) {
                    Ok(slot) => AppendFutureInner::Waiting(slot),
                    Err(e) => AppendFutureInner::Ready(Some(Err(e))),
                },
            },
        };
        AppendFuture { inner }
    }

    /// Writes a checkpoint now (even if nothing changed) and returns it.
    pub fn checkpoint_now(&self) -> Result<SignedCheckpoint, LogError> {
        let slot = self.submit(Op::Checkpoint)?;
        slot.wait()
    }

    /// Switches the checkpoint signing key: appends a `key_rotated` entry,
    /// seals it with a checkpoint under the old key, then writes a checkpoint
    /// of the same tree under the new key, which is returned.
    pub fn rotate_key(&self, new_key: SigningKey) -> Result<SignedCheckpoint, LogError> {
        let slot = self.submit(Op::RotateKey(Box::new(new_key)))?;
        slot.wait()
    }

    /// Closes the log: appends `gateway_stopped`, writes a final checkpoint
    /// and stops the committer. Later calls return [`LogError::Closed`].
    pub fn close(&self) -> Result<SignedCheckpoint, LogError> {
        let slot = self.submit(Op::Close)?;
        let result = slot.wait();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        result
    }

    /// Appends, group commits and checkpoints since open.
    pub fn stats(&self) -> LogStats {
        LogStats {
            appends: self.counters.appends.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            checkpoints: self.counters.checkpoints.load(Ordering::Relaxed),
        }
    }

    /// How long a group commit's write and `fdatasync` take on this log's storage: a
    /// moving average over recent commits (each weighs 1/8), `None` before the first.
    /// Tells a caller whether committing inline would block it for long (now and then a
    /// commit also writes a checkpoint or starts a segment, which takes longer).
    pub fn recent_commit_time(&self) -> Option<Duration> {
        match self.counters.commit_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// `Ok` while the log accepts appends; the error that failed it otherwise.
    pub fn health(&self) -> Result<(), LogError> {
        match &*lock(&self.shared.health) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Commit `encoded` on this thread if the committer is asleep with nothing urgent
    /// queued and the writer is free; otherwise hand `encoded` back to be queued.
    ///
    /// Deferred entries waiting in the queue go first, in the same batch. The
    /// committer keeps its promises: it is woken if its sleep would outlast the
    /// deferred entries' lingering time or the next checkpoint this commit made due.
    fn try_inline(
        &self,
        encoded: String,
        allowed: bool,
    ) -> Result<Result<Appended, LogError>, String> {
        if !(allowed && self.inline_commit) {
            return Err(encoded);
        }
        let mut q = lock(&self.shared.queue);
        if q.closed || !q.sleeping || q.urgent > 0 {
            return Err(encoded);
        }
        // Queue, then writer: the committer does take the queue while it holds the writer
        // (after a batch, and to fail leftovers on close), so this must only *try* the
        // writer; blocking here could deadlock. A poisoned writer is left to the
        // committer, which fails the log (`commit::lock_writer`).
        let Ok(mut w) = self.writer.try_lock() else {
            return Err(encoded);
        };
        // Only deferred appends are queued (nothing urgent): no control operations.
        let mut batch: Vec<Item> = q.items.drain(..).collect();
        drop(q);
        let slot = Arc::new(Slot::<Appended>::new());
        batch.push(Item {
            op: Op::Append(encoded),
            reply: Reply::Appended(Replier(Arc::clone(&slot))),
        });
        w.process(&mut batch, &self.shared);
        let due = Instant::now() + w.next_deadline();
        let linger = w.deferred_max_delay();
        drop(w);

        let mut q = lock(&self.shared.queue);
        q.linger(linger);
        let needed = q.linger_until.map_or(due, |t| due.min(t));
        let wake = q.sleeping && q.sleep_until.is_none_or(|t| t > needed);
        if wake {
            q.sleeping = false;
        }
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(slot.wait())
    }

    fn submit<T>(&self, make: Op) -> Result<Arc<Slot<T>>, LogError>
    where
        Slot<T>: IntoReply,
    {
        let slot = Arc::new(Slot::<T>::new());
        self.enqueue(Item {
            op: make,
            reply: Slot::<T>::reply(&slot),
        })?;
        Ok(slot)
    }

    fn enqueue(&self, item: Item) -> Result<(), LogError> {
        let mut q = lock(&self.shared.queue);
        if q.closed {
            // Closed by `close`, or failed for good (the committer died).
            return Err(lock(&self.shared.health)
                .clone()
                .unwrap_or(LogError::Closed));
        }
        if matches!(item.op, Op::Close) {
            q.closed = true;
        }
        // The committer drains the whole queue under this lock and sleeps until an
        // urgent item is queued (or, when not lingering after a batch, any item). Only a
        // push that finds it asleep wakes it (a notify is a syscall even with nobody
        // waiting); pushes while it writes ride the next batch, which it takes before it
        // sleeps again.
        let deferred = item.reply.is_deferred();
        let wake = q.sleeping && (!deferred || q.linger_until.is_none());
        if wake {
            q.sleeping = false;
        }
        if !deferred {
            q.urgent += 1;
        }
        q.items.push_back(item);
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if lock(&self.thread).is_some() {
            let _ = self.close();
        }
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

// === impl AppendFuture ===

impl AppendFuture {
    /// Before it is polled: whether the entry was already written and synced on the
    /// calling thread (an inline commit), so that the future is ready at once.
    pub fn committed_inline(&self) -> bool {
        matches!(self.inner, AppendFutureInner::Ready(Some(Ok(_))))
    }
}

impl Future for AppendFuture {
    type Output = Result<Appended, LogError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.inner {
            AppendFutureInner::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(LogError::Closed))),
            AppendFutureInner::Waiting(slot) => {
                let mut st = lock(&slot.state);
                match st.result.take() {
                    Some(r) => Poll::Ready(r),
                    None => {
                        st.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            }
        }
    }
}

impl fmt::Debug for AppendFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppendFuture")
    }
}

// === Queue and completion slots ===

#[derive(Default)]
struct Counters {
    appends: AtomicU64,
    syncs: AtomicU64,
    checkpoints: AtomicU64,
    /// Moving average of a group commit's write + `fdatasync`, in ns; 0 before the first.
    commit_ns: AtomicU64,
}

impl Counters {
    /// Folds one commit's write + sync time into the moving average (weight 1/8).
    fn observe_commit(&self, took: Duration) {
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        // Only the writer's holder calls this, so load-then-store does not race.
        let old = self.commit_ns.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.commit_ns.store(new, Ordering::Relaxed);
    }
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    health: Mutex<Option<LogError>>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    /// Queued items someone waits for (all but deferred appends).
    urgent: usize,
    /// Set after a batch, to `deferred_max_delay` later: until then the committer
    /// will look at the queue again without being woken (deferred appends queue
    /// silently). `None`: not lingering.
    linger_until: Option<Instant>,
    /// The committer is waiting on the condvar (and nobody has woken it yet).
    sleeping: bool,
    /// When the sleeping committer wakes on its own.
    sleep_until: Option<Instant>,
    closed: bool,
}

enum Op {
    Append(String),
    Checkpoint,
    RotateKey(Box<SigningKey>),
    Close,
}

struct Item {
    op: Op,
    reply: Reply,
}

enum Reply {
    Appended(Replier<Appended>),
    Checkpoint(Replier<SignedCheckpoint>),
    /// A deferred append: nobody waits; a failure shows in the log's health.
    Deferred,
}

struct Slot<T> {
    state: Mutex<SlotState<T>>,
    done: Condvar,
    /// A result was delivered (it may since have been taken by the waiter).
    completed: AtomicBool,
}

/// The committing side's handle on a [`Slot`]: if it is dropped without a result (a
/// panic unwound the batch holding it, or its queue was dropped), the waiter gets an
/// error instead of waiting forever.
struct Replier<T>(Arc<Slot<T>>);

impl<T> Replier<T> {
    fn complete(&self, r: Result<T, LogError>) {
        self.0.complete(r);
    }
}

impl<T> Drop for Replier<T> {
    fn drop(&mut self) {
        if !self.0.completed.load(Ordering::Acquire) {
            self.0.complete(Err(LogError::Failed(
                "the log's committer stopped before this entry was written".into(),
            )));
        }
    }
}

struct SlotState<T> {
    result: Option<Result<T, LogError>>,
    waker: Option<Waker>,
    /// A thread is blocked in [`Slot::wait`] (the condvar is signalled only then:
    /// an async waiter is woken through its waker alone).
    blocked: bool,
}

trait IntoReply {
    fn reply(slot: &Arc<Self>) -> Reply;
}

impl IntoReply for Slot<Appended> {
    fn reply(slot: &Arc<Self>) -> Reply {
        Reply::Appended(Replier(Arc::clone(slot)))
    }
}

impl IntoReply for Slot<SignedCheckpoint> {
    fn reply(slot: &Arc<Self>) -> Reply {
        Reply::Checkpoint(Replier(Arc::clone(slot)))
    }
}

impl<T> Slot<T> {
    fn new() -> Self {
        Slot {
            state: Mutex::new(SlotState {
                result: None,
                waker: None,
                blocked: false,
            }),
            done: Condvar::new(),
            completed: AtomicBool::new(false),
        }
    }

    fn complete(&self, r: Result<T, LogError>) {
        let (waker, blocked) = {
            let mut st = lock(&self.state);
            st.result = Some(r);
            self.completed.store(true, Ordering::Release);
            (st.waker.take(), st.blocked)
        };
        if blocked {
            self.done.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn wait(&self) -> Result<T, LogError> {
        let mut st = lock(&self.state);
        loop {
            if let Some(r) = st.result.take() {
                return r;
            }
            st.blocked = true;
            st = self
                .done
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

impl Reply {
    fn fail(self, e: LogError) {
        match self {
            Reply::Appended(s) => s.complete(Err(e)),
            Reply::Checkpoint(s) => s.complete(Err(e)),
            Reply::Deferred => {}
        }
    }

    fn is_deferred(&self) -> bool {
        matches!(self, Reply::Deferred)
    }
}

impl Queue {
    /// A batch was just written: linger for `delay` (no-op when zero).
    fn linger(&mut self, delay: Duration) {
        if delay > Duration::ZERO {
            self.linger_until = Some(Instant::now() + delay);
        }
    }
}

/// The committer thread panicked (a bug): the log is failed for good. Queued entries
/// are dropped (their waiters get an error), later appends are refused with the reason,
/// and `close` reports it.
fn committer_died(shared: &Shared) {
    let e = LogError::Failed(
        "the log's committer thread panicked; the log takes no more entries".into(),
    );
    {
        let mut health = lock(&shared.health);
        if health.is_none() {
            *health = Some(e);
        }
    }
    let dropped: Vec<Item> = {
        let mut q = lock(&shared.queue);
        q.closed = true;
        q.urgent = 0;
        q.items.drain(..).collect()
    };
    drop(dropped);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge the log; the data under these locks
    // stays consistent because every critical section is a plain update.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

use commit::Writer;
