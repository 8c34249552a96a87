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
    columns: Columns,
}

#[derive(Deserialize)]
struct Columns {
    chain: String,
    seq: i64,
    id: String,
    time: String,
    kind: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    mcp_session: Option<String>,
    #[serde(default)]
    agent_session: Option<String>,
    #[serde(default)]
    principal: Option<Principal>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    decision: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct Principal {
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    user: Option<String>,
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
        let columns: Columns = serde_json::from_str(line)
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

/// Insert `rows` in one transaction; a row already there with the same
/// hash is skipped (a batch sent again), one with another hash refuses the
/// whole batch.
pub async fn insert(conn: &mut PgConnection, rows: &[Row<'_>]) -> Result<(), InsertError> {
    let mut tx = conn.begin().await?;
    let column = |f: fn(&Row<'_>) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let inserted: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO audit_records (chain, seq, id, time, kind, route, mcp_session, agent_session, \
         principal_agent, principal_user, tool, decision, reason, hash, line) \
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[]::uuid[], $4::text[]::timestamptz[], \
         $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
         $12::text[], $13::text[], $14::text[], $15::text[]) \
         ON CONFLICT (chain, seq) DO NOTHING RETURNING chain, seq",
    )
    .bind(rows.iter().map(|r| r.columns.chain.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.columns.seq).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.columns.id.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.columns.time.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.columns.kind.clone()).collect::<Vec<_>>())
    .bind(column(|r| r.columns.route.clone()))
    .bind(column(|r| r.columns.mcp_session.clone()))
    .bind(column(|r| r.columns.agent_session.clone()))
    .bind(column(|r| {
        r.columns.principal.as_ref().and_then(|p| p.agent.clone())
    }))
    .bind(column(|r| {
        r.columns.principal.as_ref().and_then(|p| p.user.clone())
    }))
    .bind(column(|r| r.columns.tool.clone()))
    .bind(column(|r| r.columns.decision.clone()))
    .bind(column(|r| r.columns.reason.clone()))
    .bind(rows.iter().map(|r| r.hash.to_string()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.line.to_owned()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    if inserted.len() < rows.len() {
        // Rows already there: the same records sent again (a lost
        // acknowledgement, a spool delivered twice), or another record
        // under the same position, which must not pass unnoticed.
        let skipped: Vec<&Row<'_>> = rows
            .iter()
            .filter(|r| {
                !inserted
                    .iter()
                    .any(|(chain, seq)| *chain == r.columns.chain && *seq == r.columns.seq)
            })
            .collect();
        let present: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT a.chain, a.seq, a.hash FROM audit_records a \
             JOIN UNNEST($1::text[], $2::int8[]) AS k(chain, seq) USING (chain, seq)",
        )
        .bind(
            skipped
                .iter()
                .map(|r| r.columns.chain.clone())
                .collect::<Vec<_>>(),
        )
        .bind(skipped.iter().map(|r| r.columns.seq).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        for row in skipped {
            let held = present
                .iter()
                .find(|(chain, seq, _)| *chain == row.columns.chain && *seq == row.columns.seq);
            if held.is_none_or(|(_, _, hash)| *hash != row.hash) {
                return Err(InsertError::Conflict {
                    chain: row.columns.chain.clone(),
                    seq: row.seq(),
                });
            }
        }
    }
    tx.commit().await?;
    Ok(())
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
