//! Reading the table back: `warden audit verify` and `warden audit query`
//! against PostgreSQL. Both are synchronous (they run their own runtime,
//! like the store) and read with the runtime role's SELECT only.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use futures_util::TryStreamExt;
use sqlx::PgConnection;

use super::{OwnRuntime, PostgresOptions, block_on};
use crate::query::{Filter, QueryError, kind_name};
use crate::record::Record;
use crate::verify::{ChainReport, ChainVerifier, Location, Report, VerifyError};

const CONNECT: Duration = Duration::from_secs(10);

/// Verify every chain in `schema`'s table: each chain's `line`s, by seq,
/// fed to a [`ChainVerifier`] (checkpoint signatures checked against
/// `key` when given). A problem names the row as `<table> row <seq>`.
pub fn verify_postgres(
    url: &str,
    schema: &str,
    key: Option<VerifyingKey>,
) -> Result<Report, VerifyError> {
    let options = PostgresOptions::new(url, schema, "");
    let target = options.target()?;
    let runtime = OwnRuntime::new()?;
    let table: Arc<str> = format!("{}/{schema}.audit_records", target.name).into();
    block_on(runtime.get(), || async {
        let mut conn = target.connect(CONNECT).await?;
        let chains = chains(&mut conn).await.map_err(|e| target.error(&e))?;
        if chains.is_empty() {
            return Err(VerifyError::Empty {
                paths: table.to_string(),
            });
        }
        let mut reports = Vec::with_capacity(chains.len());
        for chain in chains {
            let mut verifier = ChainVerifier::new(key);
            let mut rows = sqlx::query_as::<_, (i64, String)>(
                "SELECT seq, line FROM audit_records WHERE chain = $1 ORDER BY seq",
            )
            .bind(&chain)
            .fetch(&mut conn);
            let mut failed = None;
            while let Some((seq, line)) = rows.try_next().await.map_err(|e| target.error(&e))? {
                let at = Location::row(table.clone(), seq);
                if let Err(problem) = verifier.feed(&at, &line) {
                    failed = Some(problem);
                    break;
                }
            }
            drop(rows);
            let outcome = match failed {
                Some(problem) => Err(problem),
                None => verifier.finish(),
            };
            reports.push(ChainReport {
                chain,
                files: Vec::new(),
                outcome,
            });
        }
        Ok(Report { chains: reports })
    })
}

/// The chains in the table, in order (a skip scan over the primary key).
async fn chains(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE c(chain) AS ( \
             SELECT min(chain) FROM audit_records \
             UNION ALL \
             SELECT (SELECT min(chain) FROM audit_records WHERE chain > c.chain) FROM c WHERE c.chain IS NOT NULL) \
         SELECT chain FROM c WHERE chain IS NOT NULL",
    )
    .fetch_all(conn)
    .await
}

/// The records of `schema`'s table that `filter` matches, by time, each
/// handed to `each` as it is read (a row whose line is not a record is
/// handed over as an error, and the reading goes on). Returns how many
/// rows matched.
pub fn query_postgres(
    url: &str,
    schema: &str,
    filter: &Filter,
    mut each: impl FnMut(Result<Record, QueryError>) + Send,
) -> Result<u64, QueryError> {
    let options = PostgresOptions::new(url, schema, "");
    let target = options.target()?;
    let runtime = OwnRuntime::new()?;
    let table = format!("{}/{schema}.audit_records", target.name);
    let (sql, binds) = where_clause(filter);
    block_on(runtime.get(), || async {
        let mut conn = target.connect(CONNECT).await?;
        let mut query = sqlx::query_as::<_, (String, i64, String)>(&sql);
        for bind in &binds {
            query = query.bind(bind);
        }
        let mut rows = query.fetch(&mut conn);
        let mut count = 0;
        while let Some((chain, seq, line)) = rows
            .try_next()
            .await
            .map_err(|e| QueryError::Store(target.error(&e)))?
        {
            count += 1;
            each(
                serde_json::from_str(&line).map_err(|err| QueryError::Malformed {
                    file: format!("{table} chain {chain}"),
                    line: u64::try_from(seq).unwrap_or(0),
                    error: err.to_string(),
                }),
            );
        }
        Ok(count)
    })
}

/// The query for `filter`, and its parameters (all text).
fn where_clause(filter: &Filter) -> (String, Vec<String>) {
    // Records' own text form of `time`, for bounds given as a prefix.
    const TIME_TEXT: &str = r#"to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#;
    let full = "2026-01-01T00:00:00.000000Z".len();
    let mut clauses = Vec::new();
    let mut binds = Vec::new();
    let mut bind = |value: &str| {
        binds.push(value.to_owned());
        format!("${}", binds.len())
    };
    if let Some(since) = &filter.since {
        let n = bind(since);
        clauses.push(if since.len() == full {
            format!("time >= {n}::timestamptz")
        } else {
            format!("{TIME_TEXT} >= {n}")
        });
    }
    if let Some(until) = &filter.until {
        let n = bind(until);
        clauses.push(if until.len() == full {
            format!("time < {n}::timestamptz")
        } else {
            format!("{TIME_TEXT} < {n}")
        });
    }
    if let Some(session) = &filter.session {
        let n = bind(session);
        clauses.push(format!("(mcp_session = {n} OR agent_session = {n})"));
    }
    if let Some(principal) = &filter.principal {
        let n = bind(principal);
        clauses.push(format!("(principal_agent = {n} OR principal_user = {n})"));
    }
    if let Some(tool) = &filter.tool {
        let n = bind(tool);
        clauses.push(format!("tool = {n}"));
    }
    if let Some(decision) = &filter.decision {
        let n = bind(decision);
        clauses.push(format!("decision = {n}"));
    }
    if let Some(kind) = filter.kind {
        let n = bind(&kind_name(kind));
        clauses.push(format!("kind = {n}"));
    }
    let mut sql = "SELECT chain, seq, line FROM audit_records".to_owned();
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY time, chain, seq");
    (sql, binds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Kind;

    #[test]
    fn a_filter_becomes_one_where_clause_with_text_parameters() {
        let filter = Filter {
            since: Some("2026-05-01T00:00:00.000000Z".into()),
            until: Some("2026-05-02".into()),
            session: Some("s".into()),
            kind: Some(Kind::ToolCall),
            ..Filter::default()
        };
        let (sql, binds) = where_clause(&filter);
        assert!(sql.contains("time >= $1::timestamptz"), "{sql}");
        assert!(sql.contains("\"Z\"') < $2"), "{sql}");
        assert!(
            sql.contains("(mcp_session = $3 OR agent_session = $3)"),
            "{sql}"
        );
        assert!(sql.contains("kind = $4"), "{sql}");
        assert_eq!(binds[3], "tool_call");
        let (sql, binds) = where_clause(&Filter::default());
        assert!(!sql.contains("WHERE"));
        assert!(binds.is_empty());
    }
}
