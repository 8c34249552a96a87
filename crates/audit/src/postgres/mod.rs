//! The PostgreSQL audit store: one table shared by every replica, one
//! chain per instance, append-only by trigger, with a local spool for
//! outages.
//!
//! [`PostgresStore`] is a [`Store`]: the audit writer thread calls it, so it
//! is synchronous and owns a current-thread tokio runtime it blocks on.
//! `append` holds records until `sync` (made early by the writer once
//! `DELIVER_ROWS`, 2000, wait),
//! which sends them as one multi-row `INSERT ... ON CONFLICT (chain, seq)
//! DO NOTHING` in one transaction. The server commits once per sync (per
//! group of durable intents, or per `sync_interval` for records nobody
//! waits for), not once per batch. A batch sent again after a lost
//! acknowledgement is not duplicated, and a row already there with another
//! hash refuses the batch (two writers on one chain, or a wrong head).
//!
//! **Outages.** When PostgreSQL cannot be reached (or a statement times
//! out), the batch goes to the [`Spool`] in `spool_dir` instead, and so
//! does every later batch while the spool holds anything, so order is
//! kept. `sync` fsyncs the spool, so a durable intent still succeeds while
//! the spool has room; once it is full, `sync` fails with
//! [`StoreError::SpoolFull`] and the writer refuses durable records (write
//! calls fail closed). The spool is delivered, oldest first, on each
//! delivery and on the writer's idle tick, at most once a second while the
//! server stays away; one line is logged when spooling starts and one when
//! the spool is delivered. After a restart the spool is found and
//! delivered first, and [`Store::head`] takes its last line as the chain's
//! head.
//!
//! **At start.** A malformed URL or schema name, or a server that answers
//! but refuses (authentication, permissions, a migration that fails), is
//! an error from [`PostgresStore::open`]. A server that cannot be reached
//! is not: the store logs it and spools. It must still learn where its
//! chain stands: from the spool, else from the table, else from the file
//! `head` the store keeps in `spool_dir` (updated as records are
//! delivered); with none of them (a new instance whose server was never
//! reached), [`Store::head`] fails with a clear error and Warden does not
//! start.
//!
//! **Migrations** are embedded and applied at open, in `schema` (created
//! when missing); when all are applied nothing is changed, so a runtime
//! role holding only INSERT and SELECT can start (see
//! `docs/audit-postgres-role.sql` and [`migrate`]).
//!
//! The connection URL holds a password: it is never logged, and errors
//! name the server as `host:port/database` at most.

mod read;
mod sql;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPool;
use tokio::runtime::Runtime;

pub use read::{query_postgres, verify_postgres};
pub use sql::Prepared;

use crate::chain::{ChainHead, Sealed, line_hash};
use crate::log::{Store, StoreError};
use crate::spool::Spool;
use sql::{Failure, InsertError, Row, Target};

/// Where and how the PostgreSQL store writes.
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database?sslmode=...`. Holds a
    /// secret: never logged.
    pub url: String,
    /// The schema holding the table (a plain lower-case name; created when
    /// missing).
    pub schema: String,
    /// The local spool for outages: one folder per instance, on a disk
    /// that survives restarts.
    pub spool_dir: PathBuf,
    /// The spool's bound; past it durable records are refused.
    pub spool_max_bytes: u64,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How long one statement may run (server side, and the client gives
    /// up shortly after).
    pub statement_timeout: Duration,
}

/// The store's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct PostgresStats {
    /// Records put in the spool.
    pub spooled: AtomicU64,
    /// Records delivered to PostgreSQL (straight or from the spool).
    pub delivered: AtomicU64,
    /// Bytes in the spool now.
    pub spool_bytes: AtomicU64,
    /// Whether PostgreSQL is failing now (records are spooled).
    pub failing: AtomicBool,
}

/// The PostgreSQL store (see the module docs).
pub struct PostgresStore {
    // The pool is dropped before the runtime it was made on.
    pool: PgPool,
    runtime: OwnRuntime,
    target: Target,
    schema: String,
    connect_timeout: Duration,
    statement_timeout: Duration,
    spool: Spool,
    stats: Arc<PostgresStats>,
    /// The schema was checked (and migrated) on this run.
    prepared: bool,
    /// While failing: when to try the server again.
    retry_at: Option<Instant>,
    /// The last record delivered, per chain, and whether `head` says so.
    delivered: HashMap<String, ChainHead>,
    head_written: bool,
    /// Records spooled since spooling started, for the log line.
    spooled_run: u64,
    /// Appended, not yet delivered or spooled.
    pending: Vec<Sealed>,
}

/// A runtime dropped without blocking (the store may be dropped inside
/// another runtime, e.g. by a test that failed to start the writer).
struct OwnRuntime(Option<Runtime>);

const RETRY: Duration = Duration::from_secs(1);
/// Lines per spool delivery, and about as many bytes.
const DRAIN_LINES: usize = 2000;
const DRAIN_BYTES: u64 = 4 << 20;
/// One drain holds the writer at most this long before it goes on.
const DRAIN_BUDGET: Duration = Duration::from_millis(200);
const HEAD_FILE: &str = "head";
/// The store asks for a sync once this many appended records wait.
const DELIVER_ROWS: usize = 2000;

#[derive(Serialize, Deserialize)]
struct HeadFile {
    chain: String,
    seq: u64,
    hash: String,
}

// === impl PostgresOptions ===

impl PostgresOptions {
    /// Options with the defaults: a 256 MiB spool, 5 s to connect, 10 s a
    /// statement.
    pub fn new(
        url: impl Into<String>,
        schema: impl Into<String>,
        spool_dir: impl Into<PathBuf>,
    ) -> PostgresOptions {
        PostgresOptions {
            url: url.into(),
            schema: schema.into(),
            spool_dir: spool_dir.into(),
            spool_max_bytes: 256 << 20,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }

    fn target(&self) -> Result<Target, StoreError> {
        if !sql::valid_schema(&self.schema) {
            return Err(StoreError::Database(format!(
                "the audit schema {:?} is not a plain lower-case name (letters, digits, _; at most 63; not pg_...)",
                self.schema
            )));
        }
        Target::parse(&self.url, &self.schema, self.statement_timeout)
    }
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &"<secret>")
            .field("schema", &self.schema)
            .field("spool_dir", &self.spool_dir)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

// === impl PostgresStore ===

impl PostgresStore {
    /// Open the store: check the options, open the spool, and connect and
    /// migrate (an unreachable server is logged and left for later; see
    /// the module docs for what fails).
    pub fn open(options: &PostgresOptions) -> Result<PostgresStore, StoreError> {
        let target = options.target()?;
        let runtime = OwnRuntime::new()?;
        let pool = {
            let _enter = runtime.get().enter();
            target.pool(options.connect_timeout)
        };
        let spool = Spool::open(&options.spool_dir, options.spool_max_bytes)?;
        let stats = Arc::new(PostgresStats::default());
        stats.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        let mut store = PostgresStore {
            pool,
            runtime,
            target,
            schema: options.schema.clone(),
            connect_timeout: options.connect_timeout,
            statement_timeout: options.statement_timeout,
            spool,
            stats,
            prepared: false,
            retry_at: None,
            delivered: HashMap::new(),
            head_written: true,
            spooled_run: 0,
            pending: Vec::new(),
        };
        match store.prepare() {
            Ok(()) => {}
            Err(Failure::Unreachable(reason)) => store.start_spooling(&reason),
            Err(Failure::Refused(reason)) => return Err(StoreError::Database(reason)),
        }
        if !store.spool.is_empty() {
            tracing::warn!(
                server = %store.target.name,
                spool = %store.spool.dir().display(),
                bytes = store.spool.bytes(),
                "Audit spool found from an earlier run; it is delivered before new records."
            );
            store.stats.failing.store(true, Ordering::Relaxed);
        }
        Ok(store)
    }

    /// The store's counters (take them before handing the store to the
    /// writer).
    pub fn stats(&self) -> Arc<PostgresStats> {
        self.stats.clone()
    }

    /// `host:port/database`, for logs.
    pub fn server(&self) -> &str {
        &self.target.name
    }

    /// Check the schema and apply pending migrations, once per run.
    fn prepare(&mut self) -> Result<(), Failure> {
        if self.prepared {
            return Ok(());
        }
        let (pool, schema, target) = (&self.pool, &self.schema, &self.target);
        let budget = self.connect_timeout + self.statement_timeout;
        let result = block_on(self.runtime.get(), move || async move {
            let work = async {
                let mut conn = pool.acquire().await?;
                sql::prepare(&mut conn, schema).await
            };
            match tokio::time::timeout(budget, work).await {
                Ok(Ok(done)) => Ok(done),
                Ok(Err(err)) => Err(migration_failure(target, &err)),
                Err(_) => Err(Failure::Unreachable(format!(
                    "{}: no answer within {budget:?}",
                    target.name
                ))),
            }
        })?;
        if result == Prepared::Migrated {
            tracing::info!(server = %self.target.name, schema = %self.schema, "Audit schema migrated.");
        }
        self.prepared = true;
        Ok(())
    }

    /// Deliver `rows` to PostgreSQL (after preparing, when not yet done).
    fn deliver(&mut self, rows: &[Row<'_>]) -> Result<(), Failure> {
        self.prepare()?;
        let (pool, target) = (&self.pool, &self.target);
        let budget = self.connect_timeout + self.statement_timeout + Duration::from_secs(1);
        block_on(self.runtime.get(), move || async move {
            let work = async {
                let mut conn = pool.acquire().await.map_err(InsertError::Sql)?;
                sql::insert(&mut conn, rows).await
            };
            match tokio::time::timeout(budget, work).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(InsertError::Sql(err))) => Err(target.failure(&err)),
                Ok(Err(InsertError::Conflict { chain, seq })) => Err(Failure::Refused(format!(
                    "{}: chain {chain} already holds another record at seq {seq} (two instances writing one chain, or the table was restored from an older copy)",
                    target.name
                ))),
                Err(_) => Err(Failure::Unreachable(format!(
                    "{}: no answer within {budget:?}",
                    target.name
                ))),
            }
        })
    }

    /// Whether the server may be tried now.
    fn may_try(&self) -> bool {
        self.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    fn start_spooling(&mut self, reason: &str) {
        if self.retry_at.is_none() {
            tracing::warn!(
                server = %self.target.name,
                spool = %self.spool.dir().display(),
                error = %reason,
                "PostgreSQL is unreachable; audit records are spooled to local disk until it answers."
            );
            self.spooled_run = 0;
        }
        self.stats.failing.store(true, Ordering::Relaxed);
        self.retry_at = Some(Instant::now() + RETRY);
    }

    fn delivered(&mut self, rows: &[Row<'_>]) {
        self.stats
            .delivered
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        if let Some(last) = rows.last() {
            self.delivered.insert(
                last.chain().to_owned(),
                ChainHead {
                    chain: last.chain().to_owned(),
                    seq: last.seq(),
                    hash: last.hash.to_string(),
                },
            );
            self.head_written = false;
        }
    }

    /// Deliver the spool, oldest first, for at most [`DRAIN_BUDGET`].
    fn drain(&mut self) {
        if self.spool.is_empty() || !self.may_try() {
            return;
        }
        let started = Instant::now();
        let mut moved = 0u64;
        while started.elapsed() < DRAIN_BUDGET {
            let lines = match self.spool.peek(DRAIN_LINES, DRAIN_BYTES) {
                Ok(lines) => lines,
                Err(err) => {
                    tracing::error!(error = %crate::log::error_chain(&err), "Audit spool could not be read.");
                    self.retry_at = Some(Instant::now() + RETRY);
                    return;
                }
            };
            if lines.is_empty() {
                break;
            }
            let rows: Result<Vec<Row<'_>>, String> =
                lines.iter().map(|line| Row::parse(line, None)).collect();
            let result = match rows {
                Ok(rows) => self.deliver(&rows).map(|()| {
                    self.delivered(&rows);
                    rows.len()
                }),
                Err(reason) => Err(Failure::Refused(format!(
                    "{}: {reason}",
                    self.spool.dir().display()
                ))),
            };
            match result {
                Ok(count) => {
                    moved += count as u64;
                    if let Err(err) = self.spool.ack(count) {
                        tracing::error!(error = %crate::log::error_chain(&err), "Audit spool could not be advanced; its records may be delivered again.");
                    }
                    self.stats
                        .spool_bytes
                        .store(self.spool.bytes(), Ordering::Relaxed);
                }
                Err(Failure::Unreachable(reason)) => {
                    self.start_spooling(&reason);
                    return;
                }
                Err(Failure::Refused(reason)) => {
                    // Nothing to do but say so, and try again later: the
                    // spool keeps the records, in order.
                    tracing::error!(server = %self.target.name, error = %reason, "PostgreSQL refused spooled audit records; they stay in the spool.");
                    self.stats.failing.store(true, Ordering::Relaxed);
                    self.retry_at = Some(Instant::now() + RETRY);
                    return;
                }
            }
        }
        if self.spool.is_empty() {
            tracing::warn!(
                server = %self.target.name,
                records = moved,
                spooled = self.spooled_run,
                "Audit spool delivered to PostgreSQL; records go straight to it again."
            );
            self.retry_at = None;
            self.spooled_run = 0;
            self.stats.failing.store(false, Ordering::Relaxed);
        }
    }

    /// Deliver `batch` now, or spool it when the server is away (or the
    /// spool still holds older records).
    fn put(&mut self, batch: &[Sealed]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.drain();
        if self.spool.is_empty() && self.may_try() {
            let rows: Result<Vec<Row<'_>>, String> = batch
                .iter()
                .map(|s| Row::parse(&s.line, Some(&s.hash)))
                .collect();
            let rows = rows.map_err(StoreError::Database)?;
            match self.deliver(&rows) {
                Ok(()) => {
                    self.delivered(&rows);
                    if self.retry_at.take().is_some() {
                        tracing::warn!(server = %self.target.name, "PostgreSQL answers again; audit records go straight to it.");
                        self.stats.failing.store(false, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                Err(Failure::Unreachable(reason)) => self.start_spooling(&reason),
                Err(Failure::Refused(reason)) => {
                    tracing::error!(server = %self.target.name, error = %reason, "PostgreSQL refused audit records.");
                    return Err(StoreError::Database(reason));
                }
            }
        }
        let lines: Vec<String> = batch.iter().map(|s| s.line.clone()).collect();
        self.spool.push(&lines)?;
        self.stats
            .spooled
            .fetch_add(lines.len() as u64, Ordering::Relaxed);
        self.spooled_run += lines.len() as u64;
        self.stats
            .spool_bytes
            .store(self.spool.bytes(), Ordering::Relaxed);
        Ok(())
    }

    /// Deliver (or spool) what was appended since the last delivery.
    fn put_pending(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let result = self.put(&pending);
        // The buffer is kept for the next batches (its records are in the
        // store or the spool now, or the writer rolls back).
        self.pending = pending;
        self.pending.clear();
        result
    }

    fn write_head(&mut self) {
        if self.head_written {
            return;
        }
        let path = self.spool.dir().join(HEAD_FILE);
        let temporary = self.spool.dir().join("head.new");
        let heads: Vec<HeadFile> = self
            .delivered
            .values()
            .map(|h| HeadFile {
                chain: h.chain.clone(),
                seq: h.seq,
                hash: h.hash.clone(),
            })
            .collect();
        let text = serde_json::to_string(&heads).unwrap_or_default();
        let written =
            std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, &path));
        match written {
            Ok(()) => self.head_written = true,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "Could not note the audit chain's head.");
            }
        }
    }

    fn head_from_file(&self, chain: &str) -> Option<ChainHead> {
        read_head_file(self.spool.dir(), chain)
    }
}

fn read_head_file(dir: &Path, chain: &str) -> Option<ChainHead> {
    let text = std::fs::read_to_string(dir.join(HEAD_FILE)).ok()?;
    let heads: Vec<HeadFile> = serde_json::from_str(&text).ok()?;
    heads
        .into_iter()
        .find(|h| h.chain == chain)
        .map(|h| ChainHead {
            chain: h.chain,
            seq: h.seq,
            hash: h.hash,
        })
}

fn migration_failure(target: &Target, err: &sqlx::Error) -> Failure {
    match err {
        sqlx::Error::Migrate(migrate) => Failure::Refused(format!(
            "{}: the audit schema could not be migrated ({migrate}); run `warden audit migrate` with the owner role",
            target.name
        )),
        other => target.failure(other),
    }
}

impl Store for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn head(&mut self, chain: &str) -> Result<Option<ChainHead>, StoreError> {
        if let Some(line) = self.spool.last_line()? {
            let row = Row::parse(&line, None).map_err(|reason| {
                StoreError::Database(format!("{}: {reason}", self.spool.dir().display()))
            })?;
            if row.chain() != chain {
                return Err(StoreError::Database(format!(
                    "the audit spool {} holds chain {}, not {chain}: one spool folder per instance",
                    self.spool.dir().display(),
                    row.chain()
                )));
            }
            return Ok(Some(ChainHead {
                chain: chain.to_owned(),
                seq: row.seq(),
                hash: line_hash(&line),
            }));
        }
        let asked = match self.prepare() {
            Ok(()) => {
                let (pool, target) = (&self.pool, &self.target);
                let budget = self.connect_timeout + self.statement_timeout;
                block_on(self.runtime.get(), move || async move {
                    let work = async {
                        let mut conn = pool.acquire().await?;
                        sql::head(&mut conn, chain).await
                    };
                    match tokio::time::timeout(budget, work).await {
                        Ok(Ok(head)) => Ok(head),
                        Ok(Err(err)) => Err(target.failure(&err)),
                        Err(_) => Err(Failure::Unreachable(format!(
                            "{}: no answer within {budget:?}",
                            target.name
                        ))),
                    }
                })
            }
            Err(failure) => Err(failure),
        };
        match asked {
            Ok(head) => {
                if let Some(head) = &head {
                    self.delivered.insert(chain.to_owned(), head.clone());
                    self.head_written = false;
                    self.write_head();
                }
                Ok(head)
            }
            Err(Failure::Refused(reason)) => Err(StoreError::Database(reason)),
            Err(Failure::Unreachable(reason)) => {
                self.start_spooling(&reason);
                match self.head_from_file(chain) {
                    Some(head) => {
                        tracing::warn!(
                            chain,
                            seq = head.seq,
                            "Audit chain continued from the head noted locally; PostgreSQL is checked when it answers."
                        );
                        Ok(Some(head))
                    }
                    None => Err(StoreError::Database(format!(
                        "{reason}; and neither the spool nor {} says where audit chain {chain} stands: Warden must reach PostgreSQL once before it can start without it",
                        self.spool.dir().join(HEAD_FILE).display()
                    ))),
                }
            }
        }
    }

    fn append(&mut self, batch: &[Sealed]) -> Result<(), StoreError> {
        // Held until `sync` (which the writer makes early once a
        // delivery's worth has gathered, see `wants_sync`): one
        // transaction, and one commit on the server, for every record
        // appended between two syncs, and nothing committed that a
        // rollback would have to take back.
        self.pending.extend_from_slice(batch);
        Ok(())
    }

    fn wants_sync(&self) -> bool {
        self.pending.len() >= DELIVER_ROWS
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.put_pending()?;
        self.spool.sync()?;
        self.drain();
        self.write_head();
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        self.pending.clear();
        let result = self.spool.rollback();
        self.stats
            .spool_bytes
            .store(self.spool.bytes(), Ordering::Relaxed);
        result
    }

    fn tick(&mut self) {
        self.drain();
        self.write_head();
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.target.name)
            .field("schema", &self.schema)
            .field("spool", &self.spool.dir())
            .finish_non_exhaustive()
    }
}

/// Create `schema` when missing and apply every pending migration, as the
/// owner role (`warden audit migrate`). Safe to run again.
pub fn migrate(options: &PostgresOptions) -> Result<Prepared, StoreError> {
    let target = options.target()?;
    let runtime = OwnRuntime::new()?;
    let timeout = options.connect_timeout;
    block_on(runtime.get(), || async {
        let mut conn = target.connect(timeout).await?;
        sql::prepare(&mut conn, &options.schema)
            .await
            .map_err(|err| match migration_failure(&target, &err) {
                Failure::Unreachable(text) | Failure::Refused(text) => StoreError::Database(text),
            })
    })
}

// === impl OwnRuntime ===

impl OwnRuntime {
    fn new() -> Result<OwnRuntime, StoreError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("warden-audit-pg")
            .build()
            .map(|rt| OwnRuntime(Some(rt)))
            .map_err(|source| StoreError::Io {
                path: "audit PostgreSQL runtime".into(),
                source,
            })
    }

    fn get(&self) -> &Runtime {
        // Only `drop` takes it out.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("runtime taken before drop"))
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Run the future `make` makes on `runtime`, from a thread of its own
/// when the caller is inside another runtime already (where blocking is
/// not allowed). The future is made on the thread that runs it, so it
/// need not be `Send` (sqlx's migrator's is not).
fn block_on<M, F>(runtime: &Runtime, make: M) -> F::Output
where
    M: FnOnce() -> F + Send,
    F: std::future::Future,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime.block_on(make());
    }
    std::thread::scope(
        |scope| match scope.spawn(|| runtime.block_on(make())).join() {
            Ok(output) => output,
            Err(panic) => std::panic::resume_unwind(panic),
        },
    )
}
