//! The approval store at scale: tables in one PostgreSQL schema, shared by
//! every Warden replica, with the same model and semantics as the SQLite
//! store (see [`crate::SqliteStore`]).
//!
//! **Schema.** Everything lives in one schema (default `warden`, a plain
//! lower-case name), created when missing. Every connection is opened with
//! `search_path` set to that schema alone, so the tables, and sqlx's own
//! `_sqlx_migrations` table, land there: two schemas on one database are
//! two independent queues. The migrations are embedded and run by
//! [`PostgresStore::open`] (under sqlx's advisory lock, so replicas starting
//! together migrate once).
//!
//! **Exactly once.** A decision is one transaction that first locks the
//! approval's row (`SELECT … FOR UPDATE`): two approvers deciding at once,
//! on one replica or two, are serialised by PostgreSQL and the second sees
//! the first's outcome. Claiming the run is one conditional `UPDATE`
//! (`… AND executed_ms IS NULL`), which PostgreSQL re-checks against the
//! winner's row, so exactly one claimer gets it.
//!
//! **Wakeups.** Every status change (a decision or a vote, an end, an
//! expiry, a claimed run) sends `NOTIFY` on a channel named after the schema
//! ([`PostgresStore::channel`]) with the approval's id, in the same
//! transaction, so it is delivered only once the change is committed.
//! [`PostgresStore::listen`] hands those ids to a replica, which wakes the
//! request it holds on that approval. Notifications sent while a listener's
//! connection is down are lost: waiting requests keep polling the store
//! (every 500 ms) as the fallback, so a lost wakeup only costs latency.
//!
//! **Outages.** A store that cannot be reached at open is an error (Warden
//! does not start). Later, every operation fails with
//! [`ApprovalError::Store`] within the pool's acquire timeout (5 s): held
//! calls are refused (`approval-queue-unavailable`) and nothing runs
//! unapproved. The pool reconnects by itself once the server is back.
//!
//! The connection URL may hold a password: it is never logged, and errors
//! name the server as `host:port/database` ([`crate::redact_url`]).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::broadcast;

use crate::{Approval, ApprovalError, NewApproval, Status, Verdict, Vote};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const COLUMNS: &str = "id, created_ms, expires_ms, route, upstream, tool, arguments, arguments_shown, \
     arguments_digest, rationale, agent_session, principal_agent, principal_user, policy_hash, \
     required, status, reason, decided_ms, executed_ms";

/// How long an operation waits for a connection before it fails: a held
/// call is refused this soon when PostgreSQL is away.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement may run (a decision waiting on another's row
/// lock included).
const STATEMENT_TIMEOUT_MS: &str = "10000";
/// Connections per store (the listener holds one of them).
const MAX_CONNECTIONS: u32 = 10;
/// Ids a slow [`Decisions`] reader may fall behind by before it skips
/// some (polling still sees those decisions).
const DECISIONS_BUFFER: usize = 1024;
/// The longest pause between two attempts to listen again.
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(30);

/// An approval queue in a PostgreSQL schema.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    inner: Arc<Inner>,
}

struct Inner {
    schema: String,
    channel: String,
    /// `host:port/database`, for logs and errors.
    server: String,
}

/// The ids of approvals whose status changed, on any replica sharing the
/// schema, as [`PostgresStore::listen`] receives them. Dropping it stops
/// listening.
pub struct Decisions {
    receiver: broadcast::Receiver<String>,
    task: tokio::task::JoinHandle<()>,
}

// === impl PostgresStore ===

impl PostgresStore {
    /// Connect to the database at `url`, create `schema` when missing and
    /// bring its tables up to date.
    pub async fn open(url: &str, schema: &str) -> Result<PostgresStore, ApprovalError> {
        if !crate::valid_schema(schema) {
            return Err(ApprovalError::InvalidSchema {
                schema: schema.to_owned(),
            });
        }
        let options = connect_options(url)?;
        let server = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("postgres")
        );
        // As startup parameters, so every connection (the listener's and
        // those the pool makes again after an outage) has them without a
        // round trip.
        let options = match options.get_application_name() {
            Some(_) => options,
            None => options.application_name("warden"),
        };
        let options = options.options([
            ("search_path", schema),
            ("statement_timeout", STATEMENT_TIMEOUT_MS),
        ]);
        let connect_error = |source| ApprovalError::Connect {
            server: server.clone(),
            source,
        };
        // One connection of its own first: the pool would retry a refused
        // connection until its timeout and then say only that it timed
        // out, where the operator needs the cause.
        let mut conn =
            match tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options)).await
            {
                Ok(conn) => conn.map_err(connect_error)?,
                Err(_) => {
                    return Err(connect_error(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection within {ACQUIRE_TIMEOUT:?}"),
                    ))));
                }
            };
        prepare(&mut conn, schema).await?;
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        tracing::debug!(server = %server, schema = %schema, "Approval store open in PostgreSQL.");
        Ok(PostgresStore {
            pool,
            inner: Arc::new(Inner {
                schema: schema.to_owned(),
                channel: channel_of(schema),
                server,
            }),
        })
    }

    /// The schema holding the queue.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The server, as `host:port/database` (no credentials).
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    /// The `NOTIFY` channel of this schema: `warden_approvals_<schema>`,
    /// shortened with a digest of the schema when that is over
    /// PostgreSQL's 63-byte limit for names.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Stage a held call; it starts `pending`. If the same call (agent
    /// session, tool, canonical arguments) is pending already, that one is
    /// returned: two identical calls at once attach to one approval.
    pub async fn create(&self, call: NewApproval) -> Result<Approval, ApprovalError> {
        let digest = serde_json::from_str(&call.arguments)
            .map(|value| crate::arguments_digest(&value))
            .unwrap_or_else(|_| {
                crate::arguments_digest(&serde_json::Value::String(call.arguments.clone()))
            });
        // The pending approval this call conflicts with may be decided (and
        // reported, or run) before it is read: then the call is staged
        // afresh. The last try lets a conflict be the error it is.
        const TRIES: usize = 3;
        for attempt in 1..=TRIES {
            let id = uuid::Uuid::now_v7().to_string();
            let on_conflict = if attempt < TRIES {
                "ON CONFLICT (route, agent_session, principal_agent, COALESCE(principal_user, ''), tool, arguments_digest) WHERE status = 'pending' DO NOTHING"
            } else {
                ""
            };
            let inserted: Option<String> = sqlx::query_scalar(&format!(
                "INSERT INTO approvals (id, created_ms, expires_ms, route, upstream, tool, arguments, \
                 arguments_shown, arguments_digest, rationale, agent_session, principal_agent, \
                 principal_user, policy_hash, required, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'pending') \
                 {on_conflict} RETURNING id"
            ))
            .bind(&id)
            .bind(call.created_ms)
            .bind(call.expires_ms)
            .bind(&call.route)
            .bind(&call.upstream)
            .bind(&call.tool)
            .bind(&call.arguments)
            .bind(&call.arguments_shown)
            .bind(&digest)
            .bind(&call.rationale)
            .bind(&call.agent_session)
            .bind(&call.principal_agent)
            .bind(&call.principal_user)
            .bind(&call.policy_hash)
            .bind(i32::try_from(call.required.max(1)).unwrap_or(i32::MAX))
            .fetch_optional(&self.pool)
            .await?;
            if let Some(id) = inserted {
                return self.get(&id).await;
            }
            if let Some(existing) = self.find_same_call(&call, &digest).await? {
                return Ok(existing);
            }
        }
        // Not reached: the last insert either stages the call or fails.
        Err(ApprovalError::Store(sqlx::Error::RowNotFound))
    }

    /// The agent was told the outcome of decided approval `id`.
    pub async fn mark_reported(&self, id: &str, now_ms: i64) -> Result<(), ApprovalError> {
        sqlx::query("UPDATE approvals SET reported_ms = $1 WHERE id = $2 AND reported_ms IS NULL")
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// One approval, with its votes.
    pub async fn get(&self, id: &str) -> Result<Approval, ApprovalError> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, id, false).await
    }

    /// The latest approval of the same call as `call` (route, agent
    /// session, calling agent and user, tool, and canonical arguments with
    /// SHA-256 `digest`) that a retry attaches to: pending, approved and not
    /// yet run, or decided without the agent having been told.
    pub async fn find_same_call(
        &self,
        call: &NewApproval,
        digest: &str,
    ) -> Result<Option<Approval>, ApprovalError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM approvals WHERE route = $1 AND agent_session = $2 AND principal_agent = $3 \
             AND principal_user IS NOT DISTINCT FROM $4 AND tool = $5 AND arguments_digest = $6 \
             AND (status = 'pending' OR (status = 'approved' AND executed_ms IS NULL) \
                  OR (status IN ('rejected', 'expired', 'cancelled') AND reported_ms IS NULL)) \
             ORDER BY created_ms DESC, id DESC LIMIT 1",
        )
        .bind(&call.route)
        .bind(&call.agent_session)
        .bind(&call.principal_agent)
        .bind(&call.principal_user)
        .bind(&call.tool)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        match id {
            Some(id) => Ok(Some(self.get(&id).await?)),
            None => Ok(None),
        }
    }

    /// Approvals in `status` (all with `None`), newest first, at most `limit`.
    pub async fn list(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<Approval>, ApprovalError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM approvals WHERE ($1::text IS NULL OR status = $1) \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(status.map(Status::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.get(&id).await?);
        }
        Ok(out)
    }

    /// `approver`'s decision on a pending approval, at `now_ms`: a
    /// rejection ends it; an approval counts towards `required`. The user
    /// the call acts for may not approve it unless `own_allowed`. An
    /// approval found past its time is marked expired (and the decision
    /// refused as [`ApprovalError::NotPending`]).
    pub async fn decide(
        &self,
        id: &str,
        approver: &str,
        verdict: Verdict,
        reason: Option<&str>,
        own_allowed: bool,
        now_ms: i64,
    ) -> Result<Approval, ApprovalError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let decided = decide_in(
            &mut tx,
            &self.inner.channel,
            id,
            approver,
            verdict,
            reason,
            own_allowed,
            now_ms,
        )
        .await;
        match decided {
            Ok(()) => tx.commit().await?,
            // Marking it expired is kept even though the vote is refused.
            Err(ApprovalError::NotPending {
                status: Status::Expired,
                ..
            }) => tx.commit().await?,
            Err(_) => tx.rollback().await?,
        }
        decided?;
        load(&mut conn, id, false).await
    }

    /// Hand the run of an approved call to the caller, once: `true` for
    /// exactly one caller, whatever the number of replicas asking.
    pub async fn claim_execution(&self, id: &str, now_ms: i64) -> Result<bool, ApprovalError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let done = sqlx::query(
            "UPDATE approvals SET executed_ms = $1 WHERE id = $2 AND status = 'approved' AND executed_ms IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let claimed = done.rows_affected() == 1;
        if claimed {
            notify(&mut tx, &self.inner.channel, id).await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// End a pending approval as `status` (cancelled, abandoned or
    /// expired); `false` if it was no longer pending.
    pub async fn end(&self, id: &str, status: Status, now_ms: i64) -> Result<bool, ApprovalError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let ended = end_in(&mut tx, &self.inner.channel, id, status, now_ms).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Expire every pending approval past its time; their ids.
    pub async fn expire_due(&self, now_ms: i64) -> Result<Vec<String>, ApprovalError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE approvals SET status = 'expired', decided_ms = $1 \
             WHERE status = 'pending' AND expires_ms <= $1 RETURNING id",
        )
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        if !ids.is_empty() {
            sqlx::query("SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id")
                .bind(&self.inner.channel)
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Spend a request state's `nonce` (valid until `expires_ms`): `true`
    /// the first time, `false` ever after.
    pub async fn spend_request_state(
        &self,
        nonce: &str,
        expires_ms: i64,
    ) -> Result<bool, ApprovalError> {
        let done = sqlx::query(
            "INSERT INTO spent_request_states (nonce, expires_ms) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(nonce)
        .bind(expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forget the spent nonces of states expired by `now_ms` (none of them
    /// can be presented any more).
    pub async fn forget_spent_request_states(&self, now_ms: i64) -> Result<u64, ApprovalError> {
        let done = sqlx::query("DELETE FROM spent_request_states WHERE expires_ms <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Name the channel a decision taken outside Warden came by.
    pub async fn note_decided_via(&self, id: &str, via: &str) -> Result<(), ApprovalError> {
        sqlx::query("UPDATE approvals SET decided_via = $1 WHERE id = $2")
            .bind(via)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Mark the decision on `id` as recorded in the audit trail: `true`
    /// for exactly one caller, whatever the number of replicas asking.
    pub async fn mark_decision_recorded(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, ApprovalError> {
        let done = sqlx::query(
            "UPDATE approvals SET decision_recorded_ms = $1 WHERE id = $2 AND decision_recorded_ms IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Approved or rejected approvals decided at or before
    /// `decided_before_ms` whose decision nobody recorded, oldest first, at
    /// most `limit`, each with the channel noted for it.
    pub async fn unrecorded_decisions(
        &self,
        decided_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<(Approval, Option<String>)>, ApprovalError> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT id, decided_via FROM approvals WHERE decision_recorded_ms IS NULL \
             AND status IN ('approved', 'rejected') AND decided_ms <= $1 ORDER BY decided_ms LIMIT $2",
        )
        .bind(decided_before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, via) in rows {
            out.push((self.get(&id).await?, via));
        }
        Ok(out)
    }

    /// Listen for status changes made by any store on this schema (this
    /// one included): the ids of the approvals that changed. The listener
    /// has a connection of its own; when it is lost, it reconnects and
    /// listens again by itself (logging it), and the ids notified in
    /// between are missed: a waiting request's polling still sees them.
    pub async fn listen(&self) -> Result<Decisions, ApprovalError> {
        let listener = self.subscribe().await?;
        let (sender, receiver) = broadcast::channel(DECISIONS_BUFFER);
        let task = tokio::spawn(self.clone().forward(listener, sender));
        Ok(Decisions { receiver, task })
    }

    async fn subscribe(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(&self.inner.channel).await?;
        Ok(listener)
    }

    /// Hand every notification to `sender` until nobody listens or the
    /// pool is closed; rebuild the listener when it fails.
    async fn forward(self, mut listener: PgListener, sender: broadcast::Sender<String>) {
        let mut retry = Duration::from_millis(500);
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    retry = Duration::from_millis(500);
                    if sender.send(notification.payload().to_owned()).is_err() {
                        return;
                    }
                }
                // The connection was lost and made again (PgListener
                // listens again by itself).
                Ok(None) => {
                    tracing::warn!(server = %self.inner.server, schema = %self.inner.schema, "Lost the connection listening for approval decisions; listening again (decisions in between are seen by polling).");
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(err) => {
                    tracing::warn!(server = %self.inner.server, schema = %self.inner.schema, error = %err, retry_in = ?retry, "Cannot listen for approval decisions; waiting requests poll the store meanwhile.");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(LISTEN_RETRY_MAX);
                    match self.subscribe().await {
                        Ok(again) => {
                            tracing::info!(server = %self.inner.server, schema = %self.inner.schema, "Listening for approval decisions again.");
                            listener = again;
                        }
                        Err(sqlx::Error::PoolClosed) => return,
                        // Logged on the next turn: the old listener fails
                        // again, or has recovered by itself.
                        Err(_) => {}
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.inner.server)
            .field("schema", &self.inner.schema)
            .finish()
    }
}

// === impl Decisions ===

impl Decisions {
    /// The next approval id notified; `None` once listening has stopped
    /// for good (the store's pool was closed). A reader that fell behind
    /// skips what it missed (those approvals are seen by polling).
    pub async fn next(&mut self) -> Option<String> {
        loop {
            match self.receiver.recv().await {
                Ok(id) => return Some(id),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "Approval decisions skipped by a slow reader.");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Drop for Decisions {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Parse `url` without ever showing its password in the error.
pub(crate) fn connect_options(url: &str) -> Result<PgConnectOptions, ApprovalError> {
    PgConnectOptions::from_str(url).map_err(|err| ApprovalError::InvalidUrl {
        url: crate::redact_url(url),
        reason: scrub(&err.to_string(), url),
    })
}

/// `text` with `url`'s password (from its user info or a `password=`
/// parameter), if it shows, masked.
fn scrub(text: &str, url: &str) -> String {
    let mut secrets = Vec::new();
    if let Some(rest) = url.split_once("://").map(|(_, rest)| rest)
        && let Some((userinfo, _)) = rest.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        secrets.push(password);
    }
    if let Some((_, query)) = url.split_once('?') {
        secrets.extend(query.split('&').filter_map(|p| p.strip_prefix("password=")));
    }
    secrets
        .into_iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_owned(), |text, secret| text.replace(secret, "***"))
}

/// The channel of `schema` (see [`PostgresStore::channel`]).
fn channel_of(schema: &str) -> String {
    let full = format!("warden_approvals_{schema}");
    if full.len() <= 63 {
        return full;
    }
    let digest = crate::arguments_digest(&serde_json::Value::String(schema.to_owned()));
    format!("warden_approvals_{}_{}", &schema[..28], &digest[..16])
}

/// Create `schema` when missing and apply the pending migrations. When
/// the schema is there and every migration applied, nothing is written:
/// a role without `CREATE` can start on a migrated schema.
async fn prepare(conn: &mut PgConnection, schema: &str) -> Result<(), ApprovalError> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        // Two replicas starting at once would race on `CREATE SCHEMA IF NOT
        // EXISTS` (it is not atomic); the lock is per schema and released
        // with the transaction.
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('warden_approvals.' || $1))")
            .bind(schema)
            .execute(&mut *tx)
            .await?;
        // The name was checked to be a plain lower-case identifier.
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    if pending(conn).await? {
        // `run_direct`, not `run`: `run`'s future is generic over
        // `Acquire<'a>` and rustc cannot prove it `Send` for every
        // lifetime, so `open` could not be spawned (sqlx keeps
        // `run_direct` public for this). It takes sqlx's advisory lock:
        // replicas migrate one after the other.
        MIGRATOR.run_direct(&mut *conn).await?;
    }
    Ok(())
}

/// Whether any embedded migration is missing (or differs) in the schema
/// (`search_path`).
async fn pending(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(&mut *conn)
        .await?;
    if table.is_none() {
        return Ok(true);
    }
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut *conn)
            .await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .any(|m| {
            !applied
                .iter()
                .any(|(version, checksum)| *version == m.version && **checksum == *m.checksum)
        }))
}

async fn notify(conn: &mut PgConnection, channel: &str, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn end_in(
    conn: &mut PgConnection,
    channel: &str,
    id: &str,
    status: Status,
    now_ms: i64,
) -> Result<bool, ApprovalError> {
    let done = sqlx::query(
        "UPDATE approvals SET status = $1, decided_ms = $2 WHERE id = $3 AND status = 'pending'",
    )
    .bind(status.as_str())
    .bind(now_ms)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    let ended = done.rows_affected() == 1;
    if ended {
        notify(conn, channel, id).await?;
    }
    Ok(ended)
}

#[allow(clippy::too_many_arguments)]
async fn decide_in(
    conn: &mut PgConnection,
    channel: &str,
    id: &str,
    approver: &str,
    verdict: Verdict,
    reason: Option<&str>,
    own_allowed: bool,
    now_ms: i64,
) -> Result<(), ApprovalError> {
    // The row lock: a second decider, here or on another replica, waits
    // until this transaction ends, then reads what it left.
    let current = load(conn, id, true).await?;
    if current.status != Status::Pending {
        return Err(ApprovalError::NotPending {
            id: id.to_owned(),
            status: current.status,
        });
    }
    if current.call.expires_ms <= now_ms {
        end_in(conn, channel, id, Status::Expired, now_ms).await?;
        return Err(ApprovalError::NotPending {
            id: id.to_owned(),
            status: Status::Expired,
        });
    }
    if let Some(refused) = crate::own_call(&current.call, approver, verdict, own_allowed) {
        return Err(refused);
    }
    if current.votes.iter().any(|v| v.approver == approver) {
        return Err(ApprovalError::AlreadyDecided {
            id: id.to_owned(),
            approver: approver.to_owned(),
        });
    }
    sqlx::query(
        "INSERT INTO approval_votes (approval, approver, verdict, reason, at_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(approver)
    .bind(verdict.as_str())
    .bind(reason)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    let approvals = current
        .votes
        .iter()
        .filter(|v| v.verdict == Verdict::Approve)
        .count()
        + usize::from(verdict == Verdict::Approve);
    let next = match verdict {
        Verdict::Reject => Some(Status::Rejected),
        Verdict::Approve if approvals >= current.call.required as usize => Some(Status::Approved),
        Verdict::Approve => None,
    };
    if let Some(next) = next {
        sqlx::query(
            "UPDATE approvals SET status = $1, reason = $2, decided_ms = $3 WHERE id = $4 AND status = 'pending'",
        )
        .bind(next.as_str())
        .bind(reason)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    // A vote that completes no quorum is news too: the waiting request
    // shows who has approved so far.
    notify(conn, channel, id).await?;
    Ok(())
}

/// Approval `id` with its votes; `lock` takes its row lock (inside a
/// transaction) before reading.
async fn load(conn: &mut PgConnection, id: &str, lock: bool) -> Result<Approval, ApprovalError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM approvals WHERE id = $1{lock}"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| ApprovalError::NotFound { id: id.to_owned() })?;
    let votes = sqlx::query(
        "SELECT approver, verdict, reason, at_ms FROM approval_votes WHERE approval = $1 ORDER BY at_ms, approver",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|v| Vote {
        approver: v.get("approver"),
        verdict: if v.get::<String, _>("verdict") == "reject" {
            Verdict::Reject
        } else {
            Verdict::Approve
        },
        reason: v.get("reason"),
        at_ms: v.get("at_ms"),
    })
    .collect();
    Ok(approval_of(&row, votes))
}

fn approval_of(row: &PgRow, votes: Vec<Vote>) -> Approval {
    let required: i32 = row.get("required");
    Approval {
        id: row.get("id"),
        call: NewApproval {
            route: row.get("route"),
            upstream: row.get("upstream"),
            tool: row.get("tool"),
            arguments: row.get("arguments"),
            arguments_shown: row.get("arguments_shown"),
            rationale: row.get("rationale"),
            agent_session: row.get("agent_session"),
            principal_agent: row.get("principal_agent"),
            principal_user: row.get("principal_user"),
            policy_hash: row.get("policy_hash"),
            required: u32::try_from(required).unwrap_or(1),
            created_ms: row.get("created_ms"),
            expires_ms: row.get("expires_ms"),
        },
        arguments_digest: row.get("arguments_digest"),
        status: Status::parse(row.get::<String, _>("status").as_str()).unwrap_or(Status::Pending),
        reason: row.get("reason"),
        decided_ms: row.get("decided_ms"),
        executed_ms: row.get("executed_ms"),
        votes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows_in_a_url_error() {
        let err = connect_options("postgres://warden:s3cret@db:notaport/x").expect_err("malformed");
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("db:notaport"), "{text}");
        assert_eq!(
            scrub(
                "bad s3cret and hunter2",
                "postgres://u:s3cret@h/d?password=hunter2"
            ),
            "bad *** and ***"
        );
    }

    #[test]
    fn channels_are_named_after_the_schema_within_postgres_limit() {
        assert_eq!(channel_of("warden"), "warden_approvals_warden");
        let long = "a".repeat(63);
        let channel = channel_of(&long);
        assert!(channel.len() <= 63, "{channel}");
        assert_ne!(channel, channel_of(&format!("{}b", "a".repeat(62))));
        assert_eq!(channel, channel_of(&long));
    }
}
