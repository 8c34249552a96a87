//! The PostgreSQL approval store, against the machine's real server
//! (127.0.0.1:5432, database `test`): the same scenarios as SQLite's
//! (`scenarios/`), each in a schema of its own (made fresh, dropped after,
//! so tests run in parallel), plus what only PostgreSQL does: decisions
//! reaching another store's listener (another replica), and schemas on
//! one database kept apart.

mod scenarios;

use std::time::Duration;

use scenarios::{NOW, call, open};
use warden_approvals::{ApprovalError, PostgresStore, Status, Store, StoreLocation, Verdict};

const SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema of this test's own, dropped (with everything in it) when the
/// guard goes, even when the test failed.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        let schema = self.0.clone();
        // Its own thread and runtime: the test's runtime may be gone, or
        // be the one this drop blocks.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(SERVER).await?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&mut conn)
                    .await
                    .map(drop)
            })
        });
        let _ = dropped.join();
    }
}

async fn fresh() -> (StoreLocation, Schema) {
    let schema = format!("warden_t_{}", uuid::Uuid::now_v7().simple());
    (
        StoreLocation::postgres(SERVER, &schema).expect("a valid location"),
        Schema(schema),
    )
}

every_scenario!(fresh);

/// The next id `decisions` hears, within a second.
async fn heard(decisions: &mut warden_approvals::Decisions) -> String {
    tokio::time::timeout(Duration::from_secs(1), decisions.next())
        .await
        .expect("notified within a second")
        .expect("still listening")
}

#[tokio::test]
async fn a_decision_through_one_store_reaches_the_other_stores_listener_at_once() {
    let (location, _schema) = fresh().await;
    let (a, b) = (open(&location).await, open(&location).await);
    let mut decisions = b.decisions().await.expect("listens").expect("PostgreSQL");
    // A vote short of the quorum, the deciding vote, the claimed run.
    let held = a.create(call(2)).await.expect("staged");
    a.decide(&held.id, "grace", Verdict::Approve, None, false, NOW + 1)
        .await
        .expect("first vote");
    assert_eq!(heard(&mut decisions).await, held.id);
    let started = std::time::Instant::now();
    a.decide(&held.id, "linus", Verdict::Approve, None, false, NOW + 2)
        .await
        .expect("second vote");
    assert_eq!(heard(&mut decisions).await, held.id);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        b.get(&held.id).await.expect("get").status,
        Status::Approved,
        "what was heard is committed"
    );
    assert!(b.claim_execution(&held.id, NOW + 3).await.expect("claim"));
    assert_eq!(heard(&mut decisions).await, held.id);
    // A withdrawal, a sweep of the expired.
    let withdrawn = a.create(call(1)).await.expect("staged");
    assert!(
        a.end(&withdrawn.id, Status::Cancelled, NOW)
            .await
            .expect("end")
    );
    assert_eq!(heard(&mut decisions).await, withdrawn.id);
    let lapsed = a.create(call(1)).await.expect("staged");
    assert_eq!(
        a.expire_due(NOW + 600_000).await.expect("expire"),
        vec![lapsed.id.clone()]
    );
    assert_eq!(heard(&mut decisions).await, lapsed.id);
    // Nothing is said for what changed nothing, or for staging a call.
    assert!(
        !a.end(&withdrawn.id, Status::Abandoned, NOW)
            .await
            .expect("end")
    );
    assert!(!a.claim_execution(&held.id, NOW + 4).await.expect("claim"));
    let _ = a.create(call(1)).await.expect("staged");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), decisions.next())
            .await
            .is_err(),
        "no notification for a change that did not happen"
    );
}

#[tokio::test]
async fn two_schemas_on_one_database_are_two_queues() {
    let (first, _one) = fresh().await;
    let (second, _two) = fresh().await;
    let (a, b) = (open(&first).await, open(&second).await);
    let mut heard_by_b = b.decisions().await.expect("listens").expect("PostgreSQL");
    let held = a.create(call(1)).await.expect("staged");
    a.decide(
        &held.id,
        "grace",
        Verdict::Reject,
        Some("no"),
        false,
        NOW + 1,
    )
    .await
    .expect("rejected");
    assert!(b.list(None, 10).await.expect("list").is_empty());
    assert!(matches!(
        b.get(&held.id).await,
        Err(ApprovalError::NotFound { .. })
    ));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), heard_by_b.next())
            .await
            .is_err(),
        "another schema's decisions are not heard"
    );
    // Each schema has its own tables and its own migration history.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(SERVER)
        .await
        .expect("connects");
    for location in [&first, &second] {
        let StoreLocation::Postgres { schema, .. } = location else {
            unreachable!()
        };
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
        )
        .bind(schema)
        .fetch_all(&mut conn)
        .await
        .expect("tables");
        assert_eq!(
            tables,
            [
                "_sqlx_migrations",
                "approval_votes",
                "approvals",
                "spent_request_states"
            ]
        );
        let applied: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {schema}._sqlx_migrations WHERE success"
        ))
        .fetch_one(&mut conn)
        .await
        .expect("migrations");
        assert_eq!(applied, 5);
    }
    // Opening again migrates nothing and keeps what is there.
    let again = open(&first).await;
    assert_eq!(
        again.get(&held.id).await.expect("kept").status,
        Status::Rejected
    );
}

#[tokio::test]
async fn replicas_opening_a_new_schema_at_once_all_start() {
    let (location, _schema) = fresh().await;
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let location = location.clone();
            tokio::spawn(async move { Store::open(&location).await })
        })
        .collect();
    for store in opening {
        store.await.expect("task").expect("opens");
    }
}

#[tokio::test]
async fn a_bad_schema_or_an_unreachable_server_is_a_clear_error_without_the_password() {
    for schema in ["Warden", "pg_x", "a;drop table approvals", ""] {
        assert!(
            matches!(
                PostgresStore::open(SERVER, schema).await,
                Err(ApprovalError::InvalidSchema { .. })
            ),
            "{schema:?}"
        );
    }
    let err = PostgresStore::open("postgres://warden:s3cret@127.0.0.1:1/test", "warden")
        .await
        .expect_err("nothing listens on port 1");
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    assert!(matches!(err, ApprovalError::Connect { .. }), "{text}");
    assert!(text.contains("127.0.0.1:1/test"), "{text}");
    assert!(text.contains("refused"), "the cause is named: {text}");
    assert!(!text.contains("s3cret"), "{text}");
}

/// A login role of a test's own, dropped (with its grants) when the guard
/// goes.
struct Role(String);

impl Drop for Role {
    fn drop(&mut self) {
        let role = self.0.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(SERVER).await?;
                for statement in [
                    format!("DROP OWNED BY {role}"),
                    format!("DROP ROLE IF EXISTS {role}"),
                ] {
                    sqlx::query(&statement).execute(&mut conn).await?;
                }
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
    }
}

#[tokio::test]
async fn a_role_without_create_privileges_runs_on_a_migrated_schema() {
    let (location, schema) = fresh().await;
    drop(open(&location).await);
    let role = Role(format!("{}_rt", schema.0));
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(SERVER)
        .await
        .expect("connects");
    for statement in [
        format!("CREATE ROLE {} LOGIN", role.0),
        format!("GRANT USAGE ON SCHEMA {} TO {}", schema.0, role.0),
        format!(
            "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {} TO {}",
            schema.0, role.0
        ),
    ] {
        sqlx::query(&statement)
            .execute(&mut conn)
            .await
            .expect(&statement);
    }
    let url = format!("postgres://{}@127.0.0.1:5432/test", role.0);
    let store = PostgresStore::open(&url, &schema.0)
        .await
        .expect("opens without CREATE on the database or the schema");
    let held = store.create(call(1)).await.expect("staged");
    store
        .decide(&held.id, "grace", Verdict::Approve, None, false, NOW + 1)
        .await
        .expect("decided");
    assert!(
        store
            .claim_execution(&held.id, NOW + 2)
            .await
            .expect("claim")
    );
    assert_eq!(
        store.expire_due(NOW + 600_000).await.expect("sweep"),
        Vec::<String>::new()
    );
    drop(store);
    // The same role cannot make a schema of its own: a clear error.
    let err = PostgresStore::open(&url, &format!("{}_new", schema.0))
        .await
        .expect_err("no CREATE on the database");
    assert!(err.to_string().contains("permission denied"), "{err}");
}
