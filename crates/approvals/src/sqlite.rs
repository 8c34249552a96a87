//! The embedded approval store: one SQLite file (WAL), migrations run at
//! open. Every decision is one `BEGIN IMMEDIATE` transaction, so two
//! approvers deciding at once are serialised by SQLite itself.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, SqliteConnection};

use crate::{Approval, ApprovalError, NewApproval, Status, Verdict, Vote};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// An approval queue in a SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

const COLUMNS: &str = "id, created_ms, expires_ms, route, upstream, tool, arguments, arguments_shown, \
     arguments_digest, rationale, agent_session, principal_agent, principal_user, policy_hash, \
     required, status, reason, decided_ms, executed_ms";

// === impl SqliteStore ===

impl SqliteStore {
    /// Open (or create) the queue at `path` and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore, ApprovalError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        // `run_direct` keeps `open` spawnable (see the PostgreSQL store).
        MIGRATOR.run_direct(&mut *pool.acquire().await?).await?;
        Ok(SqliteStore { pool })
    }

    /// Stage a held call; it starts `pending`. If the same call (agent
    /// session, tool, canonical arguments) is pending already, that one is
    /// returned: two identical calls at once attach to one approval.
    pub async fn create(&self, call: NewApproval) -> Result<Approval, ApprovalError> {
        let id = uuid::Uuid::now_v7().to_string();
        let digest = serde_json::from_str(&call.arguments)
            .map(|value| crate::arguments_digest(&value))
            .unwrap_or_else(|_| {
                crate::arguments_digest(&serde_json::Value::String(call.arguments.clone()))
            });
        let inserted = sqlx::query(
            "INSERT INTO approvals (id, created_ms, expires_ms, route, upstream, tool, arguments, \
             arguments_shown, arguments_digest, rationale, agent_session, principal_agent, \
             principal_user, policy_hash, required, status) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
        )
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
        .bind(i64::from(call.required.max(1)))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => self.get(&id).await,
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
                match self.find_same_call(&call, &digest).await? {
                    Some(existing) => Ok(existing),
                    None => Err(sqlx::Error::Database(err).into()),
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The agent was told the outcome of decided approval `id`.
    pub async fn mark_reported(&self, id: &str, now_ms: i64) -> Result<(), ApprovalError> {
        sqlx::query("UPDATE approvals SET reported_ms = ? WHERE id = ? AND reported_ms IS NULL")
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// One approval, with its votes.
    pub async fn get(&self, id: &str) -> Result<Approval, ApprovalError> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, id).await
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
            "SELECT id FROM approvals WHERE route = ? AND agent_session = ? AND principal_agent = ? AND principal_user IS ? \
             AND tool = ? AND arguments_digest = ? \
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
        let ids: Vec<String> = match status {
            Some(status) => {
                sqlx::query_scalar(
                    "SELECT id FROM approvals WHERE status = ? ORDER BY id DESC LIMIT ?",
                )
                .bind(status.as_str())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_scalar("SELECT id FROM approvals ORDER BY id DESC LIMIT ?")
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.get(&id).await?);
        }
        Ok(out)
    }

    /// `approver`'s decision on a pending approval, at `now_ms`: a
    /// rejection ends it; an approval counts towards `required`. The user
    /// the call acts for may not approve it unless `own_allowed`.
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
        // Taken before reading: a second decider waits for this one.
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let decided = decide_in(
            &mut conn,
            id,
            approver,
            verdict,
            reason,
            own_allowed,
            now_ms,
        )
        .await;
        let end = if decided.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        sqlx::query(end).execute(&mut *conn).await?;
        if let Err(ApprovalError::NotPending {
            status: Status::Expired,
            ..
        }) = &decided
        {
            self.end(id, Status::Expired, now_ms).await?;
        }
        decided?;
        self.get(id).await
    }

    /// Hand the run of an approved call to the caller, once: `true` for
    /// exactly one caller, whatever the number of replicas asking.
    pub async fn claim_execution(&self, id: &str, now_ms: i64) -> Result<bool, ApprovalError> {
        let done = sqlx::query(
            "UPDATE approvals SET executed_ms = ? WHERE id = ? AND status = 'approved' AND executed_ms IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// End a pending approval as `status` (cancelled, abandoned or
    /// expired); `false` if it was no longer pending.
    pub async fn end(&self, id: &str, status: Status, now_ms: i64) -> Result<bool, ApprovalError> {
        let done = sqlx::query(
            "UPDATE approvals SET status = ?, decided_ms = ? WHERE id = ? AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Spend a request state's `nonce` (valid until `expires_ms`): `true`
    /// the first time, `false` ever after.
    pub async fn spend_request_state(
        &self,
        nonce: &str,
        expires_ms: i64,
    ) -> Result<bool, ApprovalError> {
        let done = sqlx::query(
            "INSERT INTO spent_request_states (nonce, expires_ms) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING",
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
        let done = sqlx::query("DELETE FROM spent_request_states WHERE expires_ms <= ?")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Name the channel a decision taken outside Warden came by.
    pub async fn note_decided_via(&self, id: &str, via: &str) -> Result<(), ApprovalError> {
        sqlx::query("UPDATE approvals SET decided_via = ? WHERE id = ?")
            .bind(via)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Mark the decision on `id` as recorded in the audit trail: `true`
    /// for exactly one caller.
    pub async fn mark_decision_recorded(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, ApprovalError> {
        let done = sqlx::query(
            "UPDATE approvals SET decision_recorded_ms = ? WHERE id = ? AND decision_recorded_ms IS NULL",
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
             AND status IN ('approved', 'rejected') AND decided_ms <= ? ORDER BY decided_ms LIMIT ?",
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

    /// Expire every pending approval past its time; their ids.
    pub async fn expire_due(&self, now_ms: i64) -> Result<Vec<String>, ApprovalError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE approvals SET status = 'expired', decided_ms = ? \
             WHERE status = 'pending' AND expires_ms <= ? RETURNING id",
        )
        .bind(now_ms)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }
}

async fn decide_in(
    conn: &mut SqliteConnection,
    id: &str,
    approver: &str,
    verdict: Verdict,
    reason: Option<&str>,
    own_allowed: bool,
    now_ms: i64,
) -> Result<(), ApprovalError> {
    let current = load(conn, id).await?;
    if current.status != Status::Pending {
        return Err(ApprovalError::NotPending {
            id: id.to_owned(),
            status: current.status,
        });
    }
    if current.call.expires_ms <= now_ms {
        // Marked expired by the caller, after this transaction rolls back.
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
    sqlx::query("INSERT INTO approval_votes (approval, approver, verdict, reason, at_ms) VALUES (?, ?, ?, ?, ?)")
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
        sqlx::query("UPDATE approvals SET status = ?, reason = ?, decided_ms = ? WHERE id = ? AND status = 'pending'")
            .bind(next.as_str())
            .bind(reason)
            .bind(now_ms)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn load(conn: &mut SqliteConnection, id: &str) -> Result<Approval, ApprovalError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ApprovalError::NotFound { id: id.to_owned() })?;
    let votes = sqlx::query(
        "SELECT approver, verdict, reason, at_ms FROM approval_votes WHERE approval = ? ORDER BY at_ms, approver",
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
    let required: i64 = row.get("required");
    Ok(Approval {
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
    })
}
