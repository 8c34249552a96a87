//! The SQL side of the PostgreSQL store: connecting, migrating, inserting
//! a batch, reading a chain's head. Every error leaving this module names
//! the server as `host:port/database` at most, never the URL.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

use crate::chain::ChainHead;
use crate::log::StoreError;

/// The migrations, embedded from `crates/audit/migrations/postgres`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// A batch could not be delivered.
#[derive(Debug)]
pub enum Failure {
    /// The server is unreachable, went away, or timed out: try later (the
    /// batch may or may not have been committed).
    Unreachable(String),
    /// The server refused the batch (a permission, a conflicting record,
    /// a malformed line): trying again will not help by itself.
    Refused(String),
}

/// A parsed connection target, and how to describe it safely.
#[derive(Clone)]
pub struct Target {
    pub options: PgConnectOptions,
    /// `host:port/database`, for logs and errors.
    pub name: String,
}

/// One row to insert: the record's line, its hash and the columns copied
/// from it.
pub struct Row<'a> {
    pub line: &'a str,
    pub hash: Cow<'a, str>,
    columns: Columns<'a>,
}

#[derive(Deserialize)]
struct Columns<'a> {
    #[serde(borrow)]
    chain: Cow<'a, str>,
    seq: i64,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    route: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    mcp_session: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    agent_session: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    principal: Option<Principal<'a>>,
    #[serde(default, borrow)]
    tool: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    decision: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Principal<'a> {
    #[serde(default, borrow)]
    agent: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    user: Option<Cow<'a, str>>,
}

// === impl Target ===

impl Target {
    /// Parse `url` for `schema` (already checked to be a plain name).
    pub fn parse(
        url: &str,
        schema: &str,
        statement_timeout: Duration,
    ) -> Result<Target, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|err| {
            StoreError::Database(format!(
                "the PostgreSQL URL is malformed ({}); expected postgres://user[:password]@host[:port]/database",
                scrub(&err.to_string(), url)
            ))
        })?;
        let name = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("postgres")
        );
        let options = options.application_name("warden").options([
            ("search_path", schema.to_owned()),
            (
                "statement_timeout",
                statement_timeout.as_millis().max(1).to_string(),
            ),
        ]);
        Ok(Target { options, name })
    }

    /// A pool that connects when first used (at most two connections: the
    /// writer uses one at a time).
    pub fn pool(&self, connect_timeout: Duration) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .min_connections(0)
            .acquire_timeout(connect_timeout)
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(self.options.clone())
    }

    /// One connection, for a command (verify, query, migrate).
    pub async fn connect(&self, timeout: Duration) -> Result<PgConnection, StoreError> {
        match tokio::time::timeout(timeout, PgConnection::connect_with(&self.options)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(self.error(&err)),
            Err(_) => Err(StoreError::Database(format!(
                "{}: no connection within {timeout:?}",
                self.name
            ))),
        }
    }

    /// `err` as a store error naming the server, without the URL.
    pub fn error(&self, err: &sqlx::Error) -> StoreError {
        StoreError::Database(format!("{}: {}", self.name, describe(err)))
    }

    /// `err` as a delivery failure.
    pub fn failure(&self, err: &sqlx::Error) -> Failure {
        let text = format!("{}: {}", self.name, describe(err));
        if is_unreachable(err) {
            Failure::Unreachable(text)
        } else {
            Failure::Refused(text)
        }
    }
}

// === impl Row ===

impl<'a> Row<'a> {
    /// The row for `line`, whose hash is `hash` (computed when `None`).
    pub fn parse(line: &'a str, hash: Option<&'a str>) -> Result<Row<'a>, String> {
        let columns: Columns<'a> = serde_json::from_str(line)
            .map_err(|err| format!("a sealed line is not an audit record ({err})"))?;
        let hash = match hash {
            Some(hash) => Cow::Borrowed(hash),
            None => Cow::Owned(crate::chain::line_hash(line)),
        };
        Ok(Row {
            line,
            hash,
            columns,
        })
    }

    /// The record's chain.
    pub fn chain(&self) -> &str {
        &self.columns.chain
    }

    /// The record's seq.
    pub fn seq(&self) -> u64 {
        u64::try_from(self.columns.seq).unwrap_or(0)
    }
}

/// Create `schema` when missing and apply the migrations not yet applied.
/// Nothing is changed (and no privilege beyond reading is needed) when all
/// are applied, so the runtime role can start on a migrated schema.
pub async fn prepare(conn: &mut PgConnection, schema: &str) -> Result<Prepared, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(&mut *conn)
            .await?;
    }
    if !pending(conn).await? {
        return Ok(Prepared::AlreadyApplied);
    }
    MIGRATOR.run(&mut *conn).await?;
    Ok(Prepared::Migrated)
}

/// What preparing the schema (checking and running migrations) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// Every migration was applied already.
    AlreadyApplied,
    /// Migrations were applied now.
    Migrated,
}

/// Whether any embedded migration is missing (or differs) in the schema.
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

/// Insert `rows` in one statement (so in one transaction, and one round
/// trip); a row already there with the same hash is skipped (a batch sent
/// again), one with another hash refuses the whole batch.
///
/// The conflict check runs in the same statement: the rows the insert
/// skipped (an anti join with what it returned) are compared with the
/// table as it was before the insert (its `NOT EXISTS` reads that
/// snapshot, by primary key), and `audit_records_conflict` is called only
/// for a row whose record there differs or is not yet visible. It looks
/// again with a snapshot of its own (the same batch committed meanwhile by
/// an earlier attempt is fine) and raises (SQLSTATE `WA001`) when the
/// record differs, which undoes the statement's inserts too. (A `CASE` over `EXISTS`
/// subqueries planned the check of skipped rows as a hash of the whole
/// table.)
pub async fn insert(conn: &mut PgConnection, rows: &[Row<'_>]) -> Result<(), InsertError> {
    let result = sqlx::query(
        "WITH batch AS ( \
           SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
             $12::text[], $13::text[], $14::text[], $15::text[]) \
             AS b(chain, seq, id, time, kind, route, mcp_session, agent_session, \
                  principal_agent, principal_user, tool, decision, reason, hash, line)), \
         inserted AS ( \
           INSERT INTO audit_records (chain, seq, id, time, kind, route, mcp_session, agent_session, \
             principal_agent, principal_user, tool, decision, reason, hash, line) \
           SELECT chain, seq, id::uuid, time::timestamptz, kind, route, mcp_session, agent_session, \
             principal_agent, principal_user, tool, decision, reason, hash, line FROM batch \
           ON CONFLICT (chain, seq) DO NOTHING RETURNING chain, seq) \
         SELECT audit_records_conflict(b.chain, b.seq, b.hash) FROM batch b \
         LEFT JOIN inserted i ON i.chain = b.chain AND i.seq = b.seq \
         WHERE i.seq IS NULL \
           AND NOT EXISTS (SELECT 1 FROM audit_records a \
                           WHERE a.chain = b.chain AND a.seq = b.seq AND a.hash = b.hash)",
    )
    .bind(texts(rows, |r| &r.columns.chain))
    .bind(rows.iter().map(|r| r.columns.seq).collect::<Vec<_>>())
    .bind(texts(rows, |r| &r.columns.id))
    .bind(texts(rows, |r| &r.columns.time))
    .bind(texts(rows, |r| &r.columns.kind))
    .bind(column(rows, |r| r.columns.route.as_deref()))
    .bind(column(rows, |r| r.columns.mcp_session.as_deref()))
    .bind(column(rows, |r| r.columns.agent_session.as_deref()))
    .bind(column(rows, |r| {
        r.columns.principal.as_ref().and_then(|p| p.agent.as_deref())
    }))
    .bind(column(rows, |r| {
        r.columns.principal.as_ref().and_then(|p| p.user.as_deref())
    }))
    .bind(column(rows, |r| r.columns.tool.as_deref()))
    .bind(column(rows, |r| r.columns.decision.as_deref()))
    .bind(column(rows, |r| r.columns.reason.as_deref()))
    .bind(texts(rows, |r| &r.hash))
    .bind(texts(rows, |r| r.line))
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some(CONFLICT) => {
            // The message is the function's: "chain C already holds another
            // record at seq N".
            let message = err.message().to_owned();
            let (chain, seq) = conflict_position(&message, rows);
            Err(InsertError::Conflict { chain, seq })
        }
        Err(err) => Err(InsertError::Sql(err)),
    }
}

/// One text column of `rows`, borrowed from them.
fn texts<'r, 'a>(rows: &'r [Row<'a>], field: fn(&'r Row<'a>) -> &'r str) -> Vec<&'r str> {
    rows.iter().map(field).collect()
}

/// One nullable text column of `rows`, borrowed from them.
fn column<'r, 'a>(
    rows: &'r [Row<'a>],
    field: fn(&'r Row<'a>) -> Option<&'r str>,
) -> Vec<Option<&'r str>> {
    rows.iter().map(field).collect()
}

/// The SQLSTATE `audit_records_conflict` raises.
const CONFLICT: &str = "WA001";

/// The (chain, seq) a conflict message names, found among `rows`.
fn conflict_position(message: &str, rows: &[Row<'_>]) -> (String, u64) {
    rows.iter()
        .find(|r| {
            message.ends_with(&format!(" at seq {}", r.columns.seq))
                && message.starts_with(&format!("chain {} ", r.columns.chain))
        })
        .map(|r| (r.columns.chain.to_string(), r.seq()))
        .unwrap_or_else(|| (message.to_owned(), 0))
}

/// Why [`insert`] failed.
#[derive(Debug)]
pub enum InsertError {
    /// The database failed.
    Sql(sqlx::Error),
    /// The table holds another record at this position.
    Conflict { chain: String, seq: u64 },
}

impl From<sqlx::Error> for InsertError {
    fn from(err: sqlx::Error) -> InsertError {
        InsertError::Sql(err)
    }
}

/// The last record of `chain` in the table.
pub async fn head(conn: &mut PgConnection, chain: &str) -> Result<Option<ChainHead>, sqlx::Error> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT seq, hash FROM audit_records WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(chain)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(seq, hash)| ChainHead {
        chain: chain.to_owned(),
        seq: u64::try_from(seq).unwrap_or(0),
        hash,
    }))
}

/// Whether `err` says the server is away (or too slow), not that it
/// refused: SQLSTATE class 08 (connection exception), 57P01-57P03
/// (shutting down, cannot connect now), 53300 (too many connections),
/// 57014 (statement timeout), and every I/O, TLS or pool failure.
pub fn is_unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300" | "57014")
        }),
        _ => false,
    }
}

/// What `err` says, with the causes, never the URL.
fn describe(err: &sqlx::Error) -> String {
    let mut text = match err {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::PoolTimedOut => "no connection could be made in time".to_owned(),
        other => other.to_string(),
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `text` with the password of `url` (if it shows) masked.
pub fn scrub(text: &str, url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return text.to_owned();
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return text.to_owned();
    };
    match userinfo.split_once(':') {
        Some((_, password)) if !password.is_empty() => text.replace(password, "***"),
        _ => text.to_owned(),
    }
}

/// Whether `schema` is a plain lower-case SQL name (so it needs no quoting
/// anywhere and cannot smuggle SQL).
pub fn valid_schema(schema: &str) -> bool {
    let mut chars = schema.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63
        && !schema.starts_with("pg_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows_in_an_error() {
        let url = "postgres://warden:s3cret@db.internal:5433/audit";
        assert_eq!(
            scrub("bad value near s3cret@db", url),
            "bad value near ***@db"
        );
        let target = Target::parse(url, "audit", Duration::from_secs(5)).expect("parse");
        assert_eq!(target.name, "db.internal:5433/audit");
        let err = Target::parse(
            "postgres://warden:s3cret@db:notaport/x",
            "audit",
            Duration::from_secs(5),
        )
        .err()
        .expect("malformed");
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("malformed"), "{text}");
    }

    #[test]
    fn schemas_are_plain_names() {
        assert!(valid_schema("warden_audit"));
        assert!(valid_schema("_a1"));
        assert!(!valid_schema(""));
        assert!(!valid_schema("Audit"));
        assert!(!valid_schema("a;drop"));
        assert!(!valid_schema("1a"));
        assert!(!valid_schema("pg_catalog"));
        assert!(!valid_schema(&"a".repeat(64)));
    }

    #[test]
    fn columns_are_read_from_the_line() {
        let line = r#"{"v":1,"id":"0190a5a0-0000-7000-8000-000000000000","time":"2026-01-01T00:00:00.000000Z","instance":"w","kind":"tool_call","principal":{"agent":"a"},"tool":"t","chain":"w","seq":3,"prev":"x"}"#;
        let row = Row::parse(line, None).expect("row");
        assert_eq!((row.chain(), row.seq()), ("w", 3));
        assert_eq!(row.hash, crate::chain::line_hash(line));
        assert!(Row::parse("{}", None).is_err());
    }
}
