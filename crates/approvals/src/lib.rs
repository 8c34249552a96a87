//! Warden's approval queue.
//!
//! A call to an `approve`-tier tool is held: staged here as an
//! [`Approval`], bound to the exact call (tool, upstream, principal,
//! policy, and the SHA-256 of its canonical arguments), until enough
//! approvers decide, someone rejects it, it expires, or it is withdrawn.
//! Decisions are atomic: two approvers deciding at once, or two Warden
//! replicas sharing a store, never run a call twice
//! ([`Store::claim_execution`] hands the run to exactly one caller).
//!
//! Stores, behind one [`Store`] with one model and one set of semantics:
//! [`SqliteStore`] (the embedded default, a file next to the audit trail)
//! and, at scale, [`PostgresStore`] (one schema shared by every replica,
//! whose decisions reach the other replicas by `LISTEN/NOTIFY`:
//! [`Store::decisions`]). Each runs its own migrations at open.

mod postgres;
mod sqlite;

use std::fmt;
use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use postgres::{Decisions, PostgresStore};
pub use sqlite::SqliteStore;

/// The approval queue, in whichever store the configuration names. Cheap
/// to clone (the stores are connection pools).
#[derive(Clone, Debug)]
pub enum Store {
    /// A SQLite file (one host).
    Sqlite(SqliteStore),
    /// A PostgreSQL schema (any number of replicas).
    Postgres(PostgresStore),
}

/// Where the queue is.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file, created when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL database and the schema in it (created when missing).
    Postgres {
        /// `postgres://user[:password]@host[:port]/database[?…]`. May hold
        /// a secret: shown only through [`redact_url`].
        url: String,
        /// A plain lower-case name ([`valid_schema`]).
        schema: String,
    },
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Waiting for approvers.
    Pending,
    /// Enough approvers approved: the call may run (once).
    Approved,
    /// An approver rejected it.
    Rejected,
    /// Nobody decided in time.
    Expired,
    /// The agent withdrew it (`notifications/cancelled`, `tasks/cancel`).
    Cancelled,
    /// The agent's connection was lost while it waited: never run later.
    Abandoned,
}

/// An approver's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the call run.
    Approve,
    /// Refuse it.
    Reject,
}

/// A call to stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApproval {
    /// The route.
    pub route: String,
    /// The upstream, as audit records name it.
    pub upstream: String,
    /// The tool.
    pub tool: String,
    /// The full arguments (JSON text), for execution.
    pub arguments: String,
    /// What approvers see (JSON text, redacted by the audit rules).
    pub arguments_shown: String,
    /// The agent's rationale (`_meta["warden/rationale"]`), if given.
    pub rationale: Option<String>,
    /// The agent session.
    pub agent_session: String,
    /// The calling agent.
    pub principal_agent: String,
    /// The user the agent acts for.
    pub principal_user: Option<String>,
    /// The policy in force (its content hash).
    pub policy_hash: String,
    /// Approvals needed.
    pub required: u32,
    /// When it was staged (ms since the epoch).
    pub created_ms: i64,
    /// When it expires (ms since the epoch).
    pub expires_ms: i64,
}

/// A staged call and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Its id (UUIDv7).
    pub id: String,
    /// What was staged.
    pub call: NewApproval,
    /// SHA-256 of the canonical arguments: an approval covers these only.
    pub arguments_digest: String,
    /// Where it stands.
    pub status: Status,
    /// A rejection's reason.
    pub reason: Option<String>,
    /// When it was decided.
    pub decided_ms: Option<i64>,
    /// When the call ran (set once).
    pub executed_ms: Option<i64>,
    /// Who decided what, in order.
    pub votes: Vec<Vote>,
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// Who.
    pub approver: String,
    /// What.
    pub verdict: Verdict,
    /// Why (required for a rejection by the channels; optional here).
    pub reason: Option<String>,
    /// When (ms since the epoch).
    pub at_ms: i64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No approval has this id.
    #[error("no approval {id}")]
    NotFound {
        /// The id.
        id: String,
    },
    /// It was decided, expired or withdrawn already.
    #[error("approval {id} is {status}, not pending")]
    NotPending {
        /// The id.
        id: String,
        /// Where it stands.
        status: Status,
    },
    /// This approver decided on it already.
    #[error("{approver} has already decided on approval {id}")]
    AlreadyDecided {
        /// The id.
        id: String,
        /// The approver.
        approver: String,
    },
    /// The user the call acts for may not approve it (four eyes).
    #[error("{approver} is the user this call acts for and may not approve it")]
    OwnCall {
        /// The approver.
        approver: String,
    },
    /// The agent that made the call may not approve it, ever.
    #[error("{approver} is the agent that made this call and may not approve it")]
    AgentsOwnCall {
        /// The approver.
        approver: String,
    },
    /// The store failed.
    #[error("approval store: {0}")]
    Store(#[from] sqlx::Error),
    /// The store's schema could not be brought up to date.
    #[error("approval store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The PostgreSQL server could not be reached, or refused Warden, at
    /// open.
    #[error("cannot open the approval store at {server}")]
    Connect {
        /// `host:port/database` (never the URL: it may hold a password).
        server: String,
        /// The failure.
        #[source]
        source: sqlx::Error,
    },
    /// The PostgreSQL URL cannot be read.
    #[error(
        "the approval store URL {url} is malformed ({reason}); expected postgres://user[:password]@host[:port]/database"
    )]
    InvalidUrl {
        /// The URL, its password masked.
        url: String,
        /// What is wrong with it (its password masked).
        reason: String,
    },
    /// The PostgreSQL schema is not a plain lower-case name.
    #[error(
        "the approval store schema {schema:?} is not a plain lower-case name: a letter or _, then letters, digits or _, at most 63 in all, not starting with pg_"
    )]
    InvalidSchema {
        /// The name given.
        schema: String,
    },
}

/// Four eyes: why `approver` may not approve `call`, if so. The agent
/// that made it never may; the user it acts for may only when
/// `own_allowed`. Names are compared without regard to ASCII case
/// (`Ada@example.com` is `ada@example.com`). A rejection is always allowed.
fn own_call(
    call: &NewApproval,
    approver: &str,
    verdict: Verdict,
    own_allowed: bool,
) -> Option<ApprovalError> {
    if verdict != Verdict::Approve {
        return None;
    }
    if call.principal_agent.eq_ignore_ascii_case(approver) {
        return Some(ApprovalError::AgentsOwnCall {
            approver: approver.to_owned(),
        });
    }
    if !own_allowed
        && call
            .principal_user
            .as_deref()
            .is_some_and(|user| user.eq_ignore_ascii_case(approver))
    {
        return Some(ApprovalError::OwnCall {
            approver: approver.to_owned(),
        });
    }
    None
}

// === impl Store ===

/// The same call on whichever store it is.
macro_rules! on_store {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Open the queue at `location` (creating it when missing) and bring
    /// its schema up to date.
    pub async fn open(location: &StoreLocation) -> Result<Store, ApprovalError> {
        Ok(match location {
            StoreLocation::Sqlite(path) => Store::Sqlite(SqliteStore::open(path).await?),
            StoreLocation::Postgres { url, schema } => {
                Store::Postgres(PostgresStore::open(url, schema).await?)
            }
        })
    }

    /// Status changes made by other processes on this store, as they
    /// happen: `Some` for PostgreSQL (`LISTEN/NOTIFY`), `None` for SQLite
    /// (whose other processes, on the same host, are seen by polling).
    /// Either way, waiting requests keep polling as the fallback.
    pub async fn decisions(&self) -> Result<Option<Decisions>, ApprovalError> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(store) => store.listen().await.map(Some),
        }
    }

    /// Stage a held call ([`SqliteStore::create`]).
    pub async fn create(&self, call: NewApproval) -> Result<Approval, ApprovalError> {
        on_store!(self, s => s.create(call).await)
    }

    /// The agent was told the outcome of decided approval `id`.
    pub async fn mark_reported(&self, id: &str, now_ms: i64) -> Result<(), ApprovalError> {
        on_store!(self, s => s.mark_reported(id, now_ms).await)
    }

    /// One approval, with its votes.
    pub async fn get(&self, id: &str) -> Result<Approval, ApprovalError> {
        on_store!(self, s => s.get(id).await)
    }

    /// The approval a repeated call attaches to
    /// ([`SqliteStore::find_same_call`]).
    pub async fn find_same_call(
        &self,
        call: &NewApproval,
        digest: &str,
    ) -> Result<Option<Approval>, ApprovalError> {
        on_store!(self, s => s.find_same_call(call, digest).await)
    }

    /// Approvals in `status` (all with `None`), newest first, at most `limit`.
    pub async fn list(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<Approval>, ApprovalError> {
        on_store!(self, s => s.list(status, limit).await)
    }

    /// `approver`'s decision on a pending approval ([`SqliteStore::decide`]).
    pub async fn decide(
        &self,
        id: &str,
        approver: &str,
        verdict: Verdict,
        reason: Option<&str>,
        own_allowed: bool,
        now_ms: i64,
    ) -> Result<Approval, ApprovalError> {
        on_store!(self, s => s.decide(id, approver, verdict, reason, own_allowed, now_ms).await)
    }

    /// Spend a 2026-07-28 request state's `nonce` (valid until
    /// `expires_ms`): `true` the first time on any replica sharing the
    /// store, `false` ever after.
    pub async fn spend_request_state(
        &self,
        nonce: &str,
        expires_ms: i64,
    ) -> Result<bool, ApprovalError> {
        on_store!(self, s => s.spend_request_state(nonce, expires_ms).await)
    }

    /// Forget the spent nonces of states expired by `now_ms`; how many.
    pub async fn forget_spent_request_states(&self, now_ms: i64) -> Result<u64, ApprovalError> {
        on_store!(self, s => s.forget_spent_request_states(now_ms).await)
    }

    /// Name the channel a decision taken outside Warden came by (`cli`),
    /// for the audit record a sweep writes for it
    /// ([`Store::unrecorded_decisions`]).
    pub async fn note_decided_via(&self, id: &str, via: &str) -> Result<(), ApprovalError> {
        on_store!(self, s => s.note_decided_via(id, via).await)
    }

    /// Mark the decision on `id` as recorded in the audit trail: `true`
    /// for exactly one caller, whatever the number of replicas asking (the
    /// one that writes the record, when it is a sweep's).
    pub async fn mark_decision_recorded(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, ApprovalError> {
        on_store!(self, s => s.mark_decision_recorded(id, now_ms).await)
    }

    /// Approved or rejected approvals decided at or before
    /// `decided_before_ms` whose decision no Warden recorded (decided in
    /// the store by the CLI, or by a Warden stopped between the vote and
    /// the record), oldest first, at most `limit`, each with the channel
    /// [`Store::note_decided_via`] named.
    pub async fn unrecorded_decisions(
        &self,
        decided_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<(Approval, Option<String>)>, ApprovalError> {
        on_store!(self, s => s.unrecorded_decisions(decided_before_ms, limit).await)
    }

    /// Hand the run of an approved call to the caller, once: `true` for
    /// exactly one caller, whatever the number of replicas asking.
    pub async fn claim_execution(&self, id: &str, now_ms: i64) -> Result<bool, ApprovalError> {
        on_store!(self, s => s.claim_execution(id, now_ms).await)
    }

    /// End a pending approval as `status`; `false` if it was no longer
    /// pending.
    pub async fn end(&self, id: &str, status: Status, now_ms: i64) -> Result<bool, ApprovalError> {
        on_store!(self, s => s.end(id, status, now_ms).await)
    }

    /// Expire every pending approval past its time; their ids.
    pub async fn expire_due(&self, now_ms: i64) -> Result<Vec<String>, ApprovalError> {
        on_store!(self, s => s.expire_due(now_ms).await)
    }
}

// === impl StoreLocation ===

impl StoreLocation {
    /// A PostgreSQL location, checked (the URL parses, the schema is a
    /// plain name) without connecting.
    pub fn postgres(url: &str, schema: &str) -> Result<StoreLocation, ApprovalError> {
        if !valid_schema(schema) {
            return Err(ApprovalError::InvalidSchema {
                schema: schema.to_owned(),
            });
        }
        postgres::connect_options(url)?;
        Ok(StoreLocation::Postgres {
            url: url.to_owned(),
            schema: schema.to_owned(),
        })
    }

    /// Whether `text` names a PostgreSQL database (`postgres://` or
    /// `postgresql://`) rather than a SQLite file.
    pub fn is_postgres_url(text: &str) -> bool {
        let lower = text.trim_start().to_ascii_lowercase();
        lower.starts_with("postgres://") || lower.starts_with("postgresql://")
    }
}

/// The location as logs and `warden check` show it: a SQLite file's path,
/// or the PostgreSQL URL with its password masked and the schema.
impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "SQLite file {}", path.display()),
            StoreLocation::Postgres { url, schema } => {
                write!(f, "PostgreSQL {}, schema {schema}", redact_url(url))
            }
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreLocation::Postgres { url, schema } => f
                .debug_struct("Postgres")
                .field("url", &redact_url(url))
                .field("schema", schema)
                .finish(),
        }
    }
}

/// `url` with its password masked as `***`: the one in its user info
/// (`postgres://user:***@host/db`) and any `password=` parameter. When the
/// URL is too odd to tell, more is masked rather than less.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(start) = out.find("://").map(|i| i + 3)
        && let Some(at) = out[start..].rfind('@').map(|i| start + i)
        && let Some(colon) = out[start..at].find(':').map(|i| start + i)
    {
        out.replace_range(colon + 1..at, "***");
    }
    if let Some((base, query)) = out.split_once('?') {
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{base}?{}", query.join("&"));
    }
    out
}

/// Whether `schema` is a plain lower-case PostgreSQL name (so it needs no
/// quoting and cannot smuggle SQL): `[a-z_][a-z0-9_]{0,62}`, not `pg_…`
/// (PostgreSQL reserves those).
pub fn valid_schema(schema: &str) -> bool {
    let mut chars = schema.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63
        && !schema.starts_with("pg_")
}

// === impl Status ===

impl Status {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
            Status::Abandoned => "abandoned",
        }
    }

    /// Read a stored status.
    pub fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "rejected" => Status::Rejected,
            "expired" => Status::Expired,
            "cancelled" => Status::Cancelled,
            "abandoned" => Status::Abandoned,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Verdict ===

impl Verdict {
    /// The verdict as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }
}

/// The canonical form of JSON `arguments` (keys sorted at every level, no
/// insignificant whitespace, numbers and strings as serde_json writes
/// them): two spellings of the same arguments have one form.
pub fn canonical(arguments: &Value) -> String {
    // serde_json's map is ordered by key (no `preserve_order` feature), so
    // writing a parsed value sorts every object's keys.
    arguments.to_string()
}

/// SHA-256 (lower-case hex) of the canonical form of `arguments`.
pub fn arguments_digest(arguments: &Value) -> String {
    Sha256::digest(canonical(arguments).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_same_for_every_spelling_of_the_same_arguments() {
        let a: Value =
            serde_json::from_str(r#"{"b": [1, {"y": 2, "x": 1}], "a": "é"}"#).expect("json");
        let b: Value =
            serde_json::from_str(r#"{"a":"\u00e9","b":[1,{"x":1,"y":2}]}"#).expect("json");
        assert_eq!(arguments_digest(&a), arguments_digest(&b));
        let c: Value = serde_json::from_str(r#"{"a":"é","b":[1,{"x":1,"y":3}]}"#).expect("json");
        assert_ne!(arguments_digest(&a), arguments_digest(&c));
        for status in [
            Status::Pending,
            Status::Approved,
            Status::Rejected,
            Status::Expired,
            Status::Cancelled,
            Status::Abandoned,
        ] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn a_store_url_shows_without_its_password() {
        for (url, shown) in [
            (
                "postgres://warden:s3cret@db:5432/app",
                "postgres://warden:***@db:5432/app",
            ),
            ("postgresql://warden@db/app", "postgresql://warden@db/app"),
            (
                "postgres://w:p@ss/w0rd@db/app?sslmode=require&password=hunter2",
                "postgres://w:***@db/app?sslmode=require&password=***",
            ),
            (
                "postgres://db/app?Password=x",
                "postgres://db/app?Password=***",
            ),
        ] {
            assert_eq!(redact_url(url), shown);
        }
        let location = StoreLocation::postgres("postgres://u:s3cret@db/app", "warden").expect("ok");
        assert!(!location.to_string().contains("s3cret"));
        assert!(!format!("{location:?}").contains("s3cret"));
        assert!(matches!(
            StoreLocation::postgres("postgres://u:s3cret@db:port/app", "warden"),
            Err(ApprovalError::InvalidUrl { .. })
        ));
        assert!(StoreLocation::is_postgres_url("PostgreSQL://db/app"));
        assert!(!StoreLocation::is_postgres_url("./approvals.db"));
    }

    #[test]
    fn schemas_are_plain_lower_case_names() {
        for good in ["warden", "_a1", "warden_approvals", &"a".repeat(63)] {
            assert!(valid_schema(good), "{good}");
        }
        for bad in [
            "",
            "Warden",
            "a;drop",
            "1a",
            "a-b",
            "pg_catalog",
            "é",
            &"a".repeat(64),
        ] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }
}
