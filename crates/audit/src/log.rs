//! The audit log: the handle the proxy reports events to, and the writer
//! that seals them into the chain and hands them to the store.
//!
//! [`AuditLog::record`] queues a record and returns at once (a read call's
//! record, a session that started). [`AuditLog::record_durable`] returns
//! only once the store holds the record durably (a write call's intent):
//! the caller forwards the call after it, and refuses the call when it
//! fails. One writer thread owns the chain and the store. It takes every
//! record queued meanwhile as one batch, appends the batch and syncs it
//! once ("group commit"), so many durable intents share one fsync and a
//! durable write does not serialize the proxy.
//!
//! When the store fails (disk full, database gone), the store rolls back to
//! what it last synced; the writer tells the durable callers of the failed
//! batch that the audit is unavailable, keeps the other records (up to
//! [`WriterOptions::max_pending`], beyond which they are dropped and
//! counted), retries with backoff, and on recovery writes a
//! [`Kind::SinkFailed`] and a [`Kind::SinkRecovered`] record saying how
//! long, why, and how many records were dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ed25519_dalek::SigningKey;
use tokio::sync::oneshot;

use crate::chain::{Chain, ChainHead, Sealed};
use crate::record::{Kind, Record};

/// Why a store could not take records.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be written, synced or read.
    #[error("{path}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The database refused or could not be reached (the message never
    /// holds the connection URL's credentials).
    #[error("database: {0}")]
    Database(String),
    /// Another store (in this or another process) has the directory open.
    #[error("{dir} is in use by another Warden audit writer{}: give every instance its own directory", holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    InUse {
        /// The directory.
        dir: String,
        /// The process holding it, when it said.
        holder: Option<u32>,
    },
    /// The local spool is full.
    #[error("the audit spool is full ({limit} bytes)")]
    SpoolFull {
        /// Its bound.
        limit: u64,
    },
}

/// Where sealed records are kept. Implemented by the file and PostgreSQL
/// stores.
pub trait Store: Send + 'static {
    /// A short name for logs and metrics (`file`, `postgres`).
    fn name(&self) -> &'static str;

    /// Where `chain` stands in the store, to continue it (`None`: empty).
    fn head(&mut self, chain: &str) -> Result<Option<ChainHead>, StoreError>;

    /// Append `batch`, in order, after everything appended before.
    fn append(&mut self, batch: &[Sealed]) -> Result<(), StoreError>;

    /// Make everything appended so far durable.
    fn sync(&mut self) -> Result<(), StoreError>;

    /// Whether the store holds enough appended records to want a sync now
    /// rather than at the next interval (the PostgreSQL store, which
    /// sends them at the sync). Records reach the store's durable form
    /// only at a sync, so a rollback can always undo what was appended.
    fn wants_sync(&self) -> bool {
        false
    }

    /// After a failed `append` or `sync`: return to what the last
    /// successful `sync` left (a store that cannot tell does nothing).
    fn rollback(&mut self) -> Result<(), StoreError>;

    /// Called when the writer wakes with nothing new (an idle writer wakes
    /// every [`TICK`]), for work of the store's own: the PostgreSQL store
    /// delivers its spool. Errors are the store's to report.
    fn tick(&mut self) {}
}

/// How often an idle writer calls [`Store::tick`].
pub const TICK: Duration = Duration::from_secs(1);

/// Told of records once the store holds them (the OTLP log exporter). Must
/// not block: it queues.
pub trait Follower: Send + 'static {
    /// `batch` is now in the store.
    fn committed(&mut self, batch: &[Sealed]);
}

/// The audit could not take a record durably: the call must not go on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("audit unavailable: {reason}")]
pub struct AuditUnavailable {
    /// Why, for logs (never shown with secrets).
    pub reason: String,
}

/// How the writer batches, syncs and signs.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// The chain's id (the instance id).
    pub instance: String,
    /// Records waiting for the writer, at most.
    pub queue: usize,
    /// Records kept while the store is failing, at most.
    pub max_pending: usize,
    /// Records not asked to be durable are synced at least this often.
    pub sync_interval: Duration,
    /// A checkpoint after this many records...
    pub checkpoint_every: u64,
    /// ... or this long after the first record not yet vouched for.
    pub checkpoint_interval: Duration,
    /// The key checkpoints are signed with.
    pub signing_key: SigningKey,
}

/// Counters of the audit log, for `/metrics`.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Records the store took.
    pub written: AtomicU64,
    /// Records dropped (queue full, or kept too long while failing).
    pub dropped: AtomicU64,
    /// Durable records refused (the calls were refused).
    pub refused: AtomicU64,
    /// Times the store failed.
    pub failures: AtomicU64,
    /// Records waiting in the writer.
    pub pending: AtomicU64,
    /// Whether the store is failing now.
    pub failing: AtomicBool,
    /// Batches synced.
    pub syncs: AtomicU64,
}

enum Entry {
    Record(
        Box<Record>,
        Option<oneshot::Sender<Result<(), AuditUnavailable>>>,
    ),
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

/// The handle events are reported to: cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Shared>,
}

struct Shared {
    sender: SyncSender<Entry>,
    instance: Arc<str>,
    stats: Arc<AuditStats>,
    writer: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Ends the writer's gathering pause early: someone waits.
    hurry: Arc<Hurry>,
}

/// How a caller who waits for the writer cuts its gathering pause short.
struct Hurry {
    asked: AtomicBool,
    writer: std::sync::OnceLock<std::thread::Thread>,
}

// === impl AuditLog ===

impl AuditLog {
    /// Start the writer over `store`, continuing the chain the store holds.
    pub fn start(
        mut store: impl Store,
        followers: Vec<Box<dyn Follower>>,
        options: WriterOptions,
    ) -> Result<AuditLog, StoreError> {
        let head = match store.head(&options.instance)? {
            Some(head) => head,
            None => Chain::empty(&options.instance).head().clone(),
        };
        let (sender, receiver) = mpsc::sync_channel(options.queue.max(1));
        let stats = Arc::new(AuditStats::default());
        let instance: Arc<str> = options.instance.as_str().into();
        let hurry = Arc::new(Hurry {
            asked: AtomicBool::new(false),
            writer: std::sync::OnceLock::new(),
        });
        let writer = Writer::new(
            Box::new(store),
            followers,
            head,
            options,
            stats.clone(),
            hurry.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("warden-audit".into())
            .spawn(move || writer.run(receiver))
            .map_err(|source| StoreError::Io {
                path: "audit writer thread".into(),
                source,
            })?;
        let _ = hurry.writer.set(thread.thread().clone());
        Ok(AuditLog {
            inner: Arc::new(Shared {
                sender,
                instance,
                stats,
                writer: std::sync::Mutex::new(Some(thread)),
                hurry,
            }),
        })
    }

    /// The instance id records are written under.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// The log's counters.
    pub fn stats(&self) -> &Arc<AuditStats> {
        &self.inner.stats
    }

    /// A record of `kind`, stamped now by this instance.
    pub fn new_record(&self, kind: Kind) -> Record {
        Record::new(kind, self.inner.instance.clone())
    }

    /// Queue `record`; returns at once. A record the full queue cannot take
    /// is dropped and counted (returns `false`).
    pub fn record(&self, record: Record) -> bool {
        match self
            .inner
            .sender
            .try_send(Entry::Record(Box::new(record), None))
        {
            Ok(()) => {
                self.inner.stats.pending.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queue `record` and wait until the store holds it durably.
    pub async fn record_durable(&self, record: Record) -> Result<(), AuditUnavailable> {
        let (done, wait) = oneshot::channel();
        let refused = |reason: &str| {
            self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
            AuditUnavailable {
                reason: reason.to_owned(),
            }
        };
        match self
            .inner
            .sender
            .try_send(Entry::Record(Box::new(record), Some(done)))
        {
            Ok(()) => {
                self.inner.stats.pending.fetch_add(1, Ordering::Relaxed);
                self.inner.hurry.ask();
            }
            Err(TrySendError::Full(_)) => return Err(refused("the audit queue is full")),
            Err(TrySendError::Disconnected(_)) => return Err(refused("the audit log is closed")),
        }
        match wait.await {
            Ok(result) => result,
            Err(_) => Err(refused("the audit writer stopped")),
        }
    }

    /// Wait until everything queued before now is in the store, synced, and
    /// vouched for by a checkpoint (so the trail verifies as it stands).
    pub async fn flush(&self) -> Result<(), AuditUnavailable> {
        let (done, wait) = oneshot::channel();
        let closed = || AuditUnavailable {
            reason: "the audit log is closed".into(),
        };
        self.inner
            .sender
            .try_send(Entry::Flush(done))
            .map_err(|_| closed())?;
        self.inner.hurry.ask();
        wait.await.map_err(|_| closed())
    }

    /// Write what is queued, seal a final checkpoint, sync, and stop the
    /// writer. Later records are dropped.
    pub fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.sender.send(Entry::Close(done)).is_ok() {
            self.inner.hurry.ask();
            let _ = wait.blocking_recv();
        }
        let thread = self.inner.writer.lock().map(|mut w| w.take());
        if let Ok(Some(thread)) = thread {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("instance", &self.inner.instance)
            .finish_non_exhaustive()
    }
}

// === impl Hurry ===

impl Hurry {
    /// Cut the writer's current (or next) gathering pause short.
    fn ask(&self) {
        self.asked.store(true, Ordering::Release);
        if let Some(writer) = self.writer.get() {
            writer.unpark();
        }
    }

    /// Pause for at most `gather`, less when someone asks.
    fn pause(&self, gather: Duration) {
        let until = Instant::now() + gather;
        loop {
            if self.asked.swap(false, Ordering::AcqRel) {
                return;
            }
            let now = Instant::now();
            if now >= until {
                return;
            }
            std::thread::park_timeout(until - now);
        }
    }
}

// === impl Writer ===

/// A record waiting to be sealed, with whoever waits for it to be durable.
enum Queued {
    Record(
        Box<Record>,
        Option<oneshot::Sender<Result<(), AuditUnavailable>>>,
    ),
    Checkpoint,
}

/// Where the chain stood at a point the writer may return to.
#[derive(Clone)]
struct Mark {
    head: ChainHead,
    /// Records sealed since the last checkpoint.
    since_checkpoint: u64,
    /// When the first of them was sealed.
    first_unvouched: Option<Instant>,
}

struct Writer {
    store: Box<dyn Store>,
    followers: Vec<Box<dyn Follower>>,
    chain: Chain,
    options: WriterOptions,
    stats: Arc<AuditStats>,
    /// Taken from the channel, not yet appended.
    queue: Vec<Queued>,
    /// Appended since the last sync: queued again after a rollback.
    unsynced: Vec<Queued>,
    /// Their sealed lines, told to the followers once synced (a rollback
    /// would otherwise show them records twice).
    unsynced_sealed: Vec<Sealed>,
    /// After the last successful append.
    appended: Mark,
    /// After the last successful sync.
    synced: Mark,
    last_sync: Instant,
    failing_since: Option<SystemTime>,
    failure_reason: String,
    dropped_while_failing: u64,
    hurry: Arc<Hurry>,
}

const MAX_BATCH: usize = 4096;
/// How long the writer gathers records nobody waits for before writing
/// them.
const GATHER: Duration = Duration::from_millis(2);
const RETRY: Duration = Duration::from_millis(500);

impl Writer {
    fn new(
        store: Box<dyn Store>,
        followers: Vec<Box<dyn Follower>>,
        head: ChainHead,
        options: WriterOptions,
        stats: Arc<AuditStats>,
        hurry: Arc<Hurry>,
    ) -> Writer {
        let mark = Mark {
            head: head.clone(),
            since_checkpoint: 0,
            first_unvouched: None,
        };
        Writer {
            store,
            followers,
            chain: Chain::new(head),
            options,
            stats,
            queue: Vec::new(),
            unsynced: Vec::new(),
            unsynced_sealed: Vec::new(),
            appended: mark.clone(),
            synced: mark,
            last_sync: Instant::now(),
            failing_since: None,
            failure_reason: String::new(),
            dropped_while_failing: 0,
            hurry,
        }
    }

    fn run(mut self, receiver: mpsc::Receiver<Entry>) {
        let mut closing = None;
        loop {
            match receiver.recv_timeout(self.next_wake()) {
                Ok(entry) => self.take(entry, &mut closing),
                Err(RecvTimeoutError::Timeout) => self.store.tick(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // An ask made before this drain is answered by it (the durable
            // record is taken now); one left set would cut the next
            // pause short for nothing.
            self.hurry.asked.store(false, Ordering::Release);
            self.drain(&receiver, &mut closing);
            // Nobody waits for what was taken (records of read calls):
            // gather for a moment before writing. Without this pause every
            // record would wake the writer, and the wake-ups cost more than
            // the writing. A batch holding a durable record is written at
            // once, and one that arrives during the pause ends it (a write
            // call's intent must not wait behind read calls' records).
            if closing.is_none()
                && !self.queue.is_empty()
                && self.queue.len() < MAX_BATCH
                && !self
                    .queue
                    .iter()
                    .any(|q| matches!(q, Queued::Record(_, Some(_))))
            {
                self.hurry.pause(GATHER);
                self.drain(&receiver, &mut closing);
            }
            if closing.is_some() {
                break;
            }
            self.write(false);
        }
        // Whatever was queued behind the close goes in too.
        while let Ok(entry) = receiver.try_recv() {
            match entry {
                Entry::Record(record, done) => self.queue.push(Queued::Record(record, done)),
                Entry::Flush(done) | Entry::Close(done) => drop(done),
            }
        }
        self.write(true);
        if let Some(done) = closing {
            let _ = done.send(());
        }
    }

    /// Take what is waiting, up to a batch.
    fn drain(
        &mut self,
        receiver: &mpsc::Receiver<Entry>,
        closing: &mut Option<oneshot::Sender<()>>,
    ) {
        while self.queue.len() < MAX_BATCH && closing.is_none() {
            match receiver.try_recv() {
                Ok(entry) => self.take(entry, closing),
                Err(_) => break,
            }
        }
    }

    fn take(&mut self, entry: Entry, closing: &mut Option<oneshot::Sender<()>>) {
        match entry {
            Entry::Record(record, done) => self.queue.push(Queued::Record(record, done)),
            Entry::Close(done) => *closing = Some(done),
            Entry::Flush(done) => {
                // Everything taken so far goes in with a checkpoint now.
                self.write(true);
                let _ = done.send(());
            }
        }
    }

    /// How long to wait for more records before syncing, checkpointing or
    /// retrying anyway.
    fn next_wake(&self) -> Duration {
        if self.failing_since.is_some() {
            return RETRY;
        }
        let mut wake = TICK;
        if !self.unsynced.is_empty() {
            wake = wake.min(
                self.options
                    .sync_interval
                    .saturating_sub(self.last_sync.elapsed()),
            );
        }
        if let Some(first) = self.appended.first_unvouched {
            wake = wake.min(
                self.options
                    .checkpoint_interval
                    .saturating_sub(first.elapsed()),
            );
        }
        wake.max(Duration::from_millis(1))
    }

    /// Append what is queued; sync when someone waits for it, at a
    /// checkpoint, at close, or when the sync interval has passed.
    fn write(&mut self, closing: bool) {
        self.stats.pending.store(
            (self.queue.len() + self.unsynced.len()) as u64,
            Ordering::Relaxed,
        );
        let unvouched = self.appended.since_checkpoint + queued_records(&self.queue);
        let checkpoint_due = unvouched > 0
            && (closing
                || unvouched >= self.options.checkpoint_every
                || self
                    .appended
                    .first_unvouched
                    .is_some_and(|t| t.elapsed() >= self.options.checkpoint_interval));
        if checkpoint_due {
            self.queue.push(Queued::Checkpoint);
        }
        let sync_due =
            !self.unsynced.is_empty() && self.last_sync.elapsed() >= self.options.sync_interval;
        let flush_due = closing && !self.unsynced.is_empty();
        if self.queue.is_empty() && !sync_due && !flush_due {
            return;
        }
        let must_sync = closing
            || sync_due
            || self.failing_since.is_some()
            || self
                .queue
                .iter()
                .any(|q| matches!(q, Queued::Record(_, Some(_)) | Queued::Checkpoint));
        let mut mark = self.appended.clone();
        let batch: Vec<Sealed> = self
            .queue
            .iter_mut()
            .map(|queued| match queued {
                Queued::Record(record, _) => {
                    mark.since_checkpoint += 1;
                    mark.first_unvouched.get_or_insert_with(Instant::now);
                    self.chain.seal_in_place(record)
                }
                Queued::Checkpoint => {
                    mark.since_checkpoint = 0;
                    mark.first_unvouched = None;
                    self.chain
                        .checkpoint(&self.options.signing_key, &self.options.instance)
                }
            })
            .collect();
        mark.head = self.chain.head().clone();
        let mut synced = must_sync;
        let result = if batch.is_empty() {
            Ok(())
        } else {
            self.store.append(&batch)
        }
        .and_then(|()| {
            synced = synced || self.store.wants_sync();
            if synced { self.store.sync() } else { Ok(()) }
        });
        match result {
            Ok(()) => self.committed(batch, mark, synced),
            Err(err) => self.failed(&err),
        }
    }

    fn committed(&mut self, batch: Vec<Sealed>, mark: Mark, synced: bool) {
        let appended = std::mem::take(&mut self.queue);
        self.stats
            .written
            .fetch_add(queued_records(&appended), Ordering::Relaxed);
        self.appended = mark;
        if synced {
            let mut held = std::mem::take(&mut self.unsynced_sealed);
            let told = if held.is_empty() {
                batch
            } else {
                held.extend(batch);
                held
            };
            if !told.is_empty() {
                for follower in &mut self.followers {
                    follower.committed(&told);
                }
            }
        } else {
            self.unsynced_sealed.extend(batch);
        }
        if synced {
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            self.last_sync = Instant::now();
            self.synced = self.appended.clone();
            self.unsynced.clear();
            for queued in appended {
                if let Queued::Record(_, Some(done)) = queued {
                    let _ = done.send(Ok(()));
                }
            }
        } else {
            self.unsynced.extend(appended);
        }
        self.stats
            .pending
            .store(self.unsynced.len() as u64, Ordering::Relaxed);
        if let Some(since) = self.failing_since.take() {
            self.recovered(since);
        }
    }

    /// The store took records again: say so on the record itself.
    fn recovered(&mut self, since: SystemTime) {
        let dropped = std::mem::take(&mut self.dropped_while_failing);
        let reason = std::mem::take(&mut self.failure_reason);
        let outage = SystemTime::now().duration_since(since).unwrap_or_default();
        tracing::warn!(
            store = self.store.name(),
            dropped,
            outage_ms = outage.as_millis() as u64,
            "Audit store recovered."
        );
        self.stats.failing.store(false, Ordering::Relaxed);
        let detail = serde_json::json!({
            "store": self.store.name(),
            "error": reason,
            "dropped": dropped,
        });
        let mut failed = Record::at(Kind::SinkFailed, self.options.instance.as_str(), since);
        failed.detail = Some(detail.clone());
        let mut back = Record::new(Kind::SinkRecovered, self.options.instance.as_str());
        back.detail = Some(serde_json::json!({
            "store": self.store.name(),
            "outage_ms": outage.as_millis() as u64,
            "dropped": dropped,
        }));
        self.queue.push(Queued::Record(Box::new(failed), None));
        self.queue.push(Queued::Record(Box::new(back), None));
        self.write(false);
    }

    fn failed(&mut self, err: &StoreError) {
        let reason = error_chain(err);
        if self.failing_since.is_none() {
            tracing::error!(store = self.store.name(), error = %reason, "Audit store failed; write calls are refused until it recovers.");
            self.failing_since = Some(SystemTime::now());
            self.failure_reason = reason;
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            self.stats.failing.store(true, Ordering::Relaxed);
        }
        if let Err(err) = self.store.rollback() {
            tracing::error!(store = self.store.name(), error = %error_chain(&err), "Audit store could not roll back a failed batch.");
        }
        // Back to what the store last synced: everything since is queued
        // again, in order, and sealed anew on the next attempt.
        self.unsynced_sealed.clear();
        let mut queue = std::mem::take(&mut self.unsynced);
        queue.append(&mut self.queue);
        self.chain = Chain::new(self.synced.head.clone());
        self.appended = self.synced.clone();
        // Nobody waits for a checkpoint; it is made again when due.
        queue.retain(|q| matches!(q, Queued::Record(..)));
        let mut kept = Vec::with_capacity(queue.len());
        for queued in queue {
            match queued {
                Queued::Record(_, Some(done)) => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    let _ = done.send(Err(AuditUnavailable {
                        reason: format!("the {} store failed", self.store.name()),
                    }));
                }
                other => kept.push(other),
            }
        }
        if kept.len() > self.options.max_pending {
            let excess = kept.len() - self.options.max_pending;
            kept.drain(..excess);
            self.dropped_while_failing += excess as u64;
            self.stats
                .dropped
                .fetch_add(excess as u64, Ordering::Relaxed);
        }
        self.stats
            .pending
            .store(kept.len() as u64, Ordering::Relaxed);
        self.queue = kept;
    }
}

fn queued_records(queue: &[Queued]) -> u64 {
    queue
        .iter()
        .filter(|q| matches!(q, Queued::Record(..)))
        .count() as u64
}

/// An error and its causes, on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
