//! The audit trail in PostgreSQL, through the real proxy: calls in, rows
//! out, every chain verifies; a server that refuses at start is a clear
//! error that never shows the URL's password. Each test has its own schema
//! on the machine's server (127.0.0.1:5432), dropped afterwards.

use serde_json::json;
use warden::audit::AuditConfig;
use warden_audit::Kind;
use warden_audit::postgres::PostgresOptions;

use crate::support::{POSTGRES as SERVER, *};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_the_proxy_land_in_postgres_and_the_chain_verifies() {
    let schema = PgSchema::new("proxy");
    let dir = std::env::temp_dir().join(format!("warden-it-pg-{}", schema.0));
    let mut audit = AuditConfig::in_dir(&dir, "it-pg");
    audit.postgres = Some(PostgresOptions::new(SERVER, &schema.0, dir.join("spool")));
    let (url, demo) = demo_upstream().await;
    let warden = WardenBuilder::new(&url)
        .policy("version: 1\ntools:\n  create_note: write\n")
        .audit(audit.clone())
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let read = agent
        .call(2, "search_customers", json!({"query": "ada"}))
        .await;
    assert_ne!(read.response()["result"]["isError"], true);
    let write = agent
        .call(3, "create_note", json!({"customer_id": 1, "text": "pg"}))
        .await;
    assert_ne!(write.response()["result"]["isError"], true);
    assert_eq!(demo.notes_written(), 1);
    let refused = agent
        .call(4, "send_invoice", json!({"customer_id": 1}))
        .await;
    assert_eq!(refused.response()["result"]["isError"], true);
    warden.running.shutdown().await;

    let (key, _) =
        warden_audit::chain::load_or_create_key(&audit.signing_key).expect("the signing key");
    let report = tokio::task::spawn_blocking({
        let schema = schema.0.clone();
        move || warden_audit::postgres::verify_postgres(SERVER, &schema, Some(key.verifying_key()))
    })
    .await
    .expect("join")
    .expect("verify");
    assert!(report.is_ok(), "{report:?}");
    let records = tokio::task::spawn_blocking({
        let schema = schema.0.clone();
        move || {
            let mut records = Vec::new();
            warden_audit::postgres::query_postgres(
                SERVER,
                &schema,
                &warden_audit::Filter::default(),
                |record| records.push(record.expect("a record")),
            )
            .expect("query");
            records
        }
    })
    .await
    .expect("join");
    let kinds: Vec<Kind> = records.iter().map(|r| r.kind).collect();
    for kind in [
        Kind::PolicyLoaded,
        Kind::SessionStarted,
        Kind::ToolCall,
        Kind::Refusal,
        Kind::Checkpoint,
    ] {
        assert!(kinds.contains(&kind), "no {kind:?} in {kinds:?}");
    }
    let intent = records
        .iter()
        .find(|r| r.phase == Some(warden_audit::Phase::Intent))
        .expect("the write's intent");
    let outcome = records
        .iter()
        .find(|r| r.intent == Some(intent.id))
        .expect("its outcome");
    assert_eq!(outcome.tool.as_deref(), Some("create_note"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_postgres_that_refuses_at_first_start_is_a_clear_error_without_the_password() {
    let dir = std::env::temp_dir().join(format!("warden-it-pg-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut audit = AuditConfig::in_dir(&dir, "it-pg-refused");
    let mut postgres = PostgresOptions::new(
        "postgres://postgres:s3cret@127.0.0.1:1/test",
        "warden_audit",
        dir.join("spool"),
    );
    postgres.connect_timeout = std::time::Duration::from_secs(1);
    audit.postgres = Some(postgres);
    let (url, _demo) = demo_upstream().await;
    let config = warden::Config {
        listen: ([127, 0, 0, 1], 0).into(),
        admin: None,
        workers: 1,
        limits: Default::default(),
        routes: vec![warden::config::RouteConfig {
            path: "/mcp".into(),
            upstream: warden::config::UpstreamConfig::new(url.parse().expect("url")),
            policy: warden_policy::Policy::default(),
            policy_origin: "test".into(),
            policy_file: None,
            allowed_origins: Vec::new(),
            allowed_hosts: None,
            auth: None,
            credentials: Vec::new(),
            base_credential: None,
        }],
        audit: Some(audit),
        tls: None,
        admin_tls: None,
        approvals: None,
    };
    let err = match warden::start(&config).await {
        Ok(_) => panic!("Warden started with an audit store it never reached"),
        Err(err) => err,
    };
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("s3cret"), "the password leaked: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}
