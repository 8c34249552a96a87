//! The PostgreSQL store against the real server on 127.0.0.1:5432 (trust
//! auth, database `test`). Each test writes in a schema of its own (a
//! random name, dropped at the end), so the tests run in parallel. Outages
//! are made with a TCP proxy the test controls, between the store and the
//! server.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::net::{TcpSocket, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use warden_audit::record::PrincipalField;
use warden_audit::{
    AuditLog, Kind, PostgresOptions, PostgresStats, PostgresStore, Store, StoreError,
    WriterOptions, verify_postgres,
};

const SERVER: &str = "127.0.0.1:5432";
const DATABASE: &str = "test";
const CHILD: &str = "WARDEN_AUDIT_PG_CHILD";

// === helpers ===

/// A schema of the test's own, dropped when the test ends.
struct Schema {
    name: String,
    runtime: Runtime,
}

impl Schema {
    fn new() -> Schema {
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).expect("random");
        let name = format!(
            "warden_t_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        Schema {
            name,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@{SERVER}/{DATABASE}")
    }

    fn options(&self, url: &str, spool: &Path) -> PostgresOptions {
        let mut options = PostgresOptions::new(url, &self.name, spool);
        options.connect_timeout = Duration::from_secs(2);
        options.statement_timeout = Duration::from_secs(5);
        options
    }

    async fn connect(&self) -> PgConnection {
        let options = PgConnectOptions::from_str(&self.url())
            .expect("url")
            .options([("search_path", self.name.as_str())]);
        PgConnection::connect_with(&options).await.expect("connect")
    }

    /// Run `sql`; the server's error message when it refuses.
    fn execute(&self, sql: &str) -> Result<(), String> {
        self.runtime.block_on(async {
            let mut conn = self.connect().await;
            sqlx::raw_sql(sql)
                .execute(&mut conn)
                .await
                .map(|_| ())
                .map_err(|err| match err.as_database_error() {
                    Some(db) => db.message().to_owned(),
                    None => err.to_string(),
                })
        })
    }

    fn count(&self, sql: &str) -> i64 {
        self.runtime.block_on(async {
            let mut conn = self.connect().await;
            sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .expect(sql)
        })
    }

    fn strings(&self, sql: &str) -> Vec<String> {
        self.runtime.block_on(async {
            let mut conn = self.connect().await;
            sqlx::query_scalar(sql)
                .fetch_all(&mut conn)
                .await
                .expect(sql)
        })
    }

    /// Every chain in the table verifies; returns (chain, last seq) each.
    fn verify(&self) -> Vec<(String, u64)> {
        let report = verify_postgres(&self.url(), &self.name, None).expect("verify");
        report
            .chains
            .iter()
            .map(|chain| match &chain.outcome {
                Ok(summary) => (chain.chain.clone(), summary.last_seq),
                Err(problem) => panic!("chain {} does not verify: {problem}", chain.chain),
            })
            .collect()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let _ = self.execute(&sql);
    }
}

fn writer_options(instance: &str) -> WriterOptions {
    WriterOptions {
        instance: instance.to_owned(),
        queue: 100_000,
        max_pending: 100_000,
        sync_interval: Duration::from_millis(50),
        checkpoint_every: 100,
        checkpoint_interval: Duration::from_secs(1),
        signing_key: SigningKey::from_bytes(&[7; 32]),
    }
}

/// A tool call record from `log`; returns its id.
fn call(log: &AuditLog, n: u64) -> warden_audit::Record {
    let mut record = log.new_record(Kind::ToolCall);
    record.tool = Some(format!("tool-{}", n % 5));
    record.agent_session = Some("session-1".into());
    record.decision = Some("allow".into());
    record.principal = Some(PrincipalField {
        agent: "agent-a".into(),
        user: Some("user-u".into()),
    });
    record
}

fn start(options: &PostgresOptions, instance: &str) -> (AuditLog, Arc<PostgresStats>) {
    let store = PostgresStore::open(options).expect("open");
    let stats = store.stats();
    let log = AuditLog::start(store, Vec::new(), writer_options(instance)).expect("start");
    (log, stats)
}

/// Write `count` records, every third durable; returns their ids.
fn write(log: &AuditLog, runtime: &Runtime, count: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        let record = call(log, n);
        ids.push(record.id.to_string());
        if n % 3 == 0 {
            runtime
                .block_on(log.record_durable(record))
                .expect("durable record");
        } else {
            assert!(log.record(record), "queued");
        }
    }
    ids
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tool_call_ids(schema: &Schema) -> Vec<String> {
    schema.strings("SELECT id::text FROM audit_records WHERE kind = 'tool_call'")
}

/// Every id of `sent` is in the table exactly once, and nothing else is.
fn assert_all_once(schema: &Schema, sent: &[String]) {
    let stored = tool_call_ids(schema);
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "a record was stored twice");
    let sent: HashSet<&String> = sent.iter().collect();
    let lost = sent.difference(&unique).count();
    let extra = unique.difference(&sent).count();
    assert_eq!((lost, extra), (0, 0), "lost, unexpected");
}

/// A TCP proxy in front of the server that the test can cut (close every
/// connection and refuse new ones) and restore.
struct Proxy {
    port: u16,
    state: watch::Sender<State>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Up,
    Down,
    Stop,
}

impl Proxy {
    fn start() -> Proxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let (state, watch) = watch::channel(State::Up);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(serve(port, watch));
        });
        let proxy = Proxy {
            port,
            state,
            thread: Some(thread),
        };
        wait_for("the proxy", Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        proxy
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    fn cut(&self) {
        self.state.send_replace(State::Down);
        wait_for("the cut", Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
        });
    }

    fn restore(&self) {
        self.state.send_replace(State::Up);
        wait_for("the proxy back", Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.send_replace(State::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(port: u16, mut state: watch::Receiver<State>) {
    loop {
        let now = *state.borrow_and_update();
        match now {
            State::Stop => return,
            State::Down => {
                if state.changed().await.is_err() {
                    return;
                }
                continue;
            }
            State::Up => {}
        }
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket
            .bind(([127, 0, 0, 1], port).into())
            .expect("bind proxy");
        let listener = socket.listen(64).expect("listen");
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut client, _)) = accepted else { continue };
                    let mut cut = state.clone();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(SERVER).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.wait_for(|s| *s != State::Up) => {}
                        }
                    });
                }
                changed = state.changed() => {
                    if changed.is_err() || *state.borrow() != State::Up {
                        break;
                    }
                }
            }
        }
    }
}

// === tests ===

#[test]
fn records_arrive_durable_and_not_with_their_columns() {
    let schema = Schema::new();
    let spool = tempfile::tempdir().expect("dir");
    let runtime = Runtime::new().expect("runtime");
    let (log, stats) = start(&schema.options(&schema.url(), spool.path()), "w1");
    let ids = write(&log, &runtime, 30);
    log.close();
    assert_all_once(&schema, &ids);
    assert_eq!(
        schema.count(
            "SELECT count(*) FROM audit_records WHERE tool = 'tool-1' AND principal_agent = 'agent-a' \
             AND principal_user = 'user-u' AND agent_session = 'session-1' AND decision = 'allow'"
        ),
        6
    );
    assert_eq!(
        schema.count("SELECT count(*) FROM audit_records WHERE hash IS NULL OR line IS NULL"),
        0
    );
    let chains = schema.verify();
    assert_eq!(chains.len(), 1);
    assert_eq!(chains[0].0, "w1");
    assert_eq!(stats.spooled.load(Ordering::Relaxed), 0);
    assert!(stats.delivered.load(Ordering::Relaxed) >= 30);
}

#[test]
fn update_delete_and_truncate_are_refused_by_the_database() {
    let schema = Schema::new();
    let spool = tempfile::tempdir().expect("dir");
    let runtime = Runtime::new().expect("runtime");
    let (log, _) = start(&schema.options(&schema.url(), spool.path()), "w1");
    write(&log, &runtime, 3);
    log.close();
    for sql in [
        "UPDATE audit_records SET tool = 'other'",
        "DELETE FROM audit_records WHERE seq = 1",
        "TRUNCATE audit_records",
    ] {
        let err = schema.execute(sql).expect_err(sql);
        assert!(
            err.contains("warden audit records are append-only"),
            "{sql}: {err}"
        );
    }
    assert_eq!(schema.count("SELECT count(*) FROM audit_records"), 4);
    schema.verify();
}

#[test]
fn a_restart_continues_the_chain_and_skips_applied_migrations() {
    let schema = Schema::new();
    let spool = tempfile::tempdir().expect("dir");
    let runtime = Runtime::new().expect("runtime");
    let options = schema.options(&schema.url(), spool.path());
    let (log, _) = start(&options, "w1");
    let mut ids = write(&log, &runtime, 10);
    log.close();
    let migrations = schema.count("SELECT count(*) FROM _sqlx_migrations");
    let (log, _) = start(&options, "w1");
    ids.extend(write(&log, &runtime, 10));
    log.close();
    assert_eq!(
        schema.count("SELECT count(*) FROM _sqlx_migrations"),
        migrations
    );
    assert_all_once(&schema, &ids);
    let chains = schema.verify();
    // 20 calls and two closing checkpoints, in one unbroken chain.
    assert_eq!(chains, vec![("w1".to_owned(), 22)]);
}

/// Two writers in this process and two in child processes, one table.
#[test]
fn four_writers_share_one_table_and_every_chain_verifies() {
    let schema = Schema::new();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().expect("dir")).collect();
    // The table exists before the children race to migrate.
    PostgresStore::open(&schema.options(&schema.url(), dirs[0].path())).expect("open");
    let children: Vec<_> = (2..4)
        .map(|i| {
            Command::new(std::env::current_exe().expect("exe"))
                .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
                .env(
                    CHILD,
                    format!("{}|w{i}|{}", schema.name, dirs[i].path().display()),
                )
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let options = schema.options(&schema.url(), dirs[i].path());
            std::thread::spawn(move || {
                let runtime = Runtime::new().expect("runtime");
                let (log, _) = start(&options, &format!("w{i}"));
                let ids = write(&log, &runtime, 200);
                log.close();
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for thread in threads {
        ids.extend(thread.join().expect("writer"));
    }
    for child in children {
        let output = child.wait_with_output().expect("child");
        assert!(
            output.status.success(),
            "a child writer failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stored = tool_call_ids(&schema);
    assert_eq!(stored.len(), 800, "every writer's records");
    let stored: HashSet<String> = stored.into_iter().collect();
    assert!(ids.iter().all(|id| stored.contains(id)));
    let chains = schema.verify();
    let names: Vec<&str> = chains.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(names, ["w0", "w1", "w2", "w3"]);
}

/// Run by `four_writers_share_one_table_and_every_chain_verifies` in a
/// child process; does nothing otherwise.
#[test]
fn child_writer() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let parts: Vec<&str> = spec.splitn(3, '|').collect();
    let (schema, instance, spool) = (parts[0], parts[1], parts[2]);
    let mut options = PostgresOptions::new(
        format!("postgres://postgres@{SERVER}/{DATABASE}"),
        schema,
        spool,
    );
    options.connect_timeout = Duration::from_secs(2);
    let runtime = Runtime::new().expect("runtime");
    let (log, _) = start(&options, instance);
    write(&log, &runtime, 200);
    log.close();
}

#[test]
fn an_outage_loses_nothing_duplicates_nothing_and_the_spool_drains() {
    let schema = Schema::new();
    let proxy = Proxy::start();
    let spool = tempfile::tempdir().expect("dir");
    let runtime = Runtime::new().expect("runtime");
    let (log, stats) = start(&schema.options(&proxy.url(), spool.path()), "w1");
    let mut ids = Vec::new();
    for n in 0..900u64 {
        if n == 300 {
            proxy.cut();
        }
        if n == 600 {
            proxy.restore();
        }
        if n == 450 {
            assert!(stats.failing.load(Ordering::Relaxed), "spooling");
            assert!(stats.spool_bytes.load(Ordering::Relaxed) > 0);
        }
        let record = call(&log, n);
        ids.push(record.id.to_string());
        if n % 3 == 0 {
            // Durable intents still succeed while the spool has room.
            runtime
                .block_on(log.record_durable(record))
                .expect("durable record during the outage");
        } else {
            assert!(log.record(record));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    wait_for("the spool to drain", Duration::from_secs(30), || {
        stats.spool_bytes.load(Ordering::Relaxed) == 0 && !stats.failing.load(Ordering::Relaxed)
    });
    log.close();
    assert!(
        stats.spooled.load(Ordering::Relaxed) > 0,
        "records were spooled"
    );
    assert_eq!(log.stats().refused.load(Ordering::Relaxed), 0);
    assert_eq!(log.stats().dropped.load(Ordering::Relaxed), 0);
    assert_all_once(&schema, &ids);
    assert_eq!(schema.verify().len(), 1);
    let segments = std::fs::read_dir(spool.path())
        .expect("spool")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .count();
    assert_eq!(segments, 0, "the spool is empty on disk");
}

#[test]
fn a_restart_during_an_outage_continues_from_the_spool_and_delivers_it() {
    let schema = Schema::new();
    let proxy = Proxy::start();
    let spool = tempfile::tempdir().expect("dir");
    let runtime = Runtime::new().expect("runtime");
    let options = schema.options(&proxy.url(), spool.path());
    let (log, _) = start(&options, "w1");
    let mut ids = write(&log, &runtime, 20);
    proxy.cut();
    ids.extend(write(&log, &runtime, 20));
    log.close();
    let delivered = tool_call_ids(&schema).len();
    assert!(delivered < 40, "the outage's records were spooled");
    // Started again while the server is still away: the chain goes on
    // from the spool's last line.
    let (log, stats) = start(&options, "w1");
    assert!(stats.failing.load(Ordering::Relaxed));
    ids.extend(write(&log, &runtime, 20));
    proxy.restore();
    wait_for("the spool to drain", Duration::from_secs(30), || {
        stats.spool_bytes.load(Ordering::Relaxed) == 0
    });
    ids.extend(write(&log, &runtime, 5));
    log.close();
    assert_all_once(&schema, &ids);
    assert_eq!(schema.verify().len(), 1);
}

#[test]
fn a_restart_with_a_spool_delivers_it_once_the_server_answers() {
    let schema = Schema::new();
    let proxy = Proxy::start();
    let spool = tempfile::tempdir().expect("dir");
    let runtime = Runtime::new().expect("runtime");
    let options = schema.options(&proxy.url(), spool.path());
    let (log, _) = start(&options, "w1");
    let mut ids = write(&log, &runtime, 5);
    proxy.cut();
    ids.extend(write(&log, &runtime, 30));
    log.close();
    proxy.restore();
    let (log, stats) = start(&options, "w1");
    wait_for("the spool to drain", Duration::from_secs(30), || {
        stats.spool_bytes.load(Ordering::Relaxed) == 0
    });
    ids.extend(write(&log, &runtime, 5));
    log.close();
    assert_all_once(&schema, &ids);
    assert_eq!(schema.verify().len(), 1);
}

#[test]
fn a_full_spool_refuses_durable_records_until_the_server_is_back() {
    let schema = Schema::new();
    let proxy = Proxy::start();
    let spool = tempfile::tempdir().expect("dir");
    let runtime = Runtime::new().expect("runtime");
    let mut options = schema.options(&proxy.url(), spool.path());
    options.spool_max_bytes = 8 << 10;
    let (log, stats) = start(&options, "w1");
    let mut ids = write(&log, &runtime, 3);
    proxy.cut();
    let mut refused = 0;
    for n in 0..60 {
        let record = call(&log, n);
        let id = record.id.to_string();
        match runtime.block_on(log.record_durable(record)) {
            Ok(()) => ids.push(id),
            Err(err) => {
                assert!(err.reason.contains("postgres"), "{err}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the full spool refused durable records");
    assert!(stats.spool_bytes.load(Ordering::Relaxed) <= 8 << 10);
    proxy.restore();
    wait_for("the spool to drain", Duration::from_secs(30), || {
        stats.spool_bytes.load(Ordering::Relaxed) == 0
    });
    // Durable records pass again.
    let record = call(&log, 99);
    ids.push(record.id.to_string());
    runtime
        .block_on(log.record_durable(record))
        .expect("durable record after the outage");
    log.close();
    // Every acknowledged record is there; the refused ones are not.
    let stored: HashSet<String> = tool_call_ids(&schema).into_iter().collect();
    assert!(ids.iter().all(|id| stored.contains(id)));
    assert_eq!(stored.len(), ids.len());
    assert_eq!(schema.verify().len(), 1);
}

#[test]
fn a_batch_sent_again_is_skipped_and_one_that_conflicts_is_refused_whole() {
    let schema = Schema::new();
    let spool = tempfile::tempdir().expect("dir");
    let options = schema.options(&schema.url(), spool.path());
    let mut store = PostgresStore::open(&options).expect("open");
    assert_eq!(store.head("w1").expect("head"), None);
    let mut chain = warden_audit::Chain::empty("w1");
    let first: Vec<_> = (0..3)
        .map(|_| chain.seal(warden_audit::Record::new(Kind::SessionStarted, "w1")))
        .collect();
    store.append(&first).expect("append");
    store.sync().expect("sync");
    // The same records again (an acknowledgement lost): nothing doubles.
    store.append(&first).expect("append again");
    store.sync().expect("the same records are skipped");
    assert_eq!(schema.count("SELECT count(*) FROM audit_records"), 3);

    // Another writer on the same chain, from the same head: its seq 1..3
    // are other records, and seq 4 is new. The whole batch is refused,
    // seq 4 included.
    let other_spool = tempfile::tempdir().expect("dir");
    let mut other =
        PostgresStore::open(&schema.options(&schema.url(), other_spool.path())).expect("open");
    let mut forked = warden_audit::Chain::empty("w1");
    let fork: Vec<_> = (0..4)
        .map(|_| forked.seal(warden_audit::Record::new(Kind::SessionEnded, "w1")))
        .collect();
    other.append(&fork).expect("held until the sync");
    let err = other.sync().expect_err("a conflicting batch is refused");
    assert!(
        err.to_string()
            .contains("chain w1 already holds another record at seq 1"),
        "{err}"
    );
    assert_eq!(schema.count("SELECT count(*) FROM audit_records"), 3);
    assert_eq!(
        schema.count("SELECT count(*) FROM audit_records WHERE kind = 'session_ended'"),
        0
    );
    let hashes: Vec<String> = first.iter().map(|s| s.hash.clone()).collect();
    assert_eq!(
        schema.strings("SELECT hash FROM audit_records ORDER BY seq"),
        hashes
    );
}

#[test]
fn a_delivery_s_worth_of_records_is_synced_without_waiting_for_the_interval() {
    // Records nobody waits for are held until a sync; the store asks for
    // one once 2000 wait, so they reach the table (as a sync of the
    // writer, which a rollback then never has to take back) long before
    // the hour this writer would otherwise wait.
    let schema = Schema::new();
    let spool = tempfile::tempdir().expect("dir");
    let store = PostgresStore::open(&schema.options(&schema.url(), spool.path())).expect("open");
    let mut options = writer_options("w1");
    options.sync_interval = Duration::from_secs(3600);
    options.checkpoint_every = u64::MAX;
    options.checkpoint_interval = Duration::from_secs(3600);
    let log = AuditLog::start(store, Vec::new(), options).expect("start");
    for n in 0..2500 {
        assert!(log.record(call(&log, n)), "queued");
    }
    wait_for("2000 rows", Duration::from_secs(20), || {
        schema.count("SELECT count(*) FROM audit_records") >= 2000
    });
    // The rows are visible at the commit; the writer counts the sync just
    // after it.
    wait_for("the sync counted", Duration::from_secs(5), || {
        log.stats().syncs.load(Ordering::Relaxed) >= 1
    });
    log.close();
    assert_eq!(schema.verify(), vec![("w1".to_owned(), 2501)]);
}

#[test]
fn the_store_refuses_a_spool_past_its_bound_with_spool_full() {
    let schema = Schema::new();
    let proxy = Proxy::start();
    let spool = tempfile::tempdir().expect("dir");
    let mut options = schema.options(&proxy.url(), spool.path());
    options.spool_max_bytes = 1000;
    let mut store = PostgresStore::open(&options).expect("open");
    let head = store.head("w1").expect("head");
    assert_eq!(head, None);
    proxy.cut();
    let mut chain = warden_audit::Chain::empty("w1");
    let batch: Vec<_> = (0..20)
        .map(|_| chain.seal(warden_audit::Record::new(Kind::SessionStarted, "w1")))
        .collect();
    store.append(&batch[..2]).expect("spooled");
    store.sync().expect("synced to the spool");
    // Appended records wait for the sync, which finds the spool full.
    store.append(&batch[2..]).expect("held until the sync");
    assert!(matches!(
        store.sync(),
        Err(StoreError::SpoolFull { limit: 1000 })
    ));
    store.rollback().expect("rollback");
    // The spool's tail is the chain's head.
    let head = store.head("w1").expect("head").expect("some");
    assert_eq!((head.seq, head.hash.as_str()), (2, batch[1].hash.as_str()));
}

#[test]
fn a_closed_port_at_start_spools_when_the_head_is_known_and_fails_clearly_when_not() {
    let schema = Schema::new();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("postgres://postgres:s3cret@127.0.0.1:{closed}/{DATABASE}");
    // A new instance whose server was never reached cannot know its head.
    let fresh = tempfile::tempdir().expect("dir");
    let store = PostgresStore::open(&schema.options(&url, fresh.path())).expect("open spools");
    let err = AuditLog::start(store, Vec::new(), writer_options("w1")).expect_err("no head");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{closed}/test")), "{text}");
    assert!(text.contains("must reach PostgreSQL once"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");

    // An instance that ran before knows its head and spools.
    let known = tempfile::tempdir().expect("dir");
    let runtime = Runtime::new().expect("runtime");
    let (log, _) = start(&schema.options(&schema.url(), known.path()), "w2");
    let mut ids = write(&log, &runtime, 4);
    log.close();
    let (log, stats) = start(&schema.options(&url, known.path()), "w2");
    ids.extend(write(&log, &runtime, 4));
    log.close();
    assert!(stats.failing.load(Ordering::Relaxed));
    assert!(stats.spooled.load(Ordering::Relaxed) >= 4);
    // Back to the right address: the spool is delivered.
    let (log, stats) = start(&schema.options(&schema.url(), known.path()), "w2");
    wait_for("the spool to drain", Duration::from_secs(30), || {
        stats.spool_bytes.load(Ordering::Relaxed) == 0
    });
    log.close();
    assert_all_once(&schema, &ids);
    assert_eq!(schema.verify().len(), 1);
}

#[test]
fn a_malformed_url_or_schema_is_a_clear_error_at_open() {
    let spool = tempfile::tempdir().expect("dir");
    let bad_url = PostgresOptions::new("postgres://u:s3cret@host:port/db", "audit", spool.path());
    let text = PostgresStore::open(&bad_url)
        .expect_err("malformed")
        .to_string();
    assert!(text.contains("malformed"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    let bad_schema = PostgresOptions::new(
        format!("postgres://postgres@{SERVER}/{DATABASE}"),
        "Audit; DROP",
        spool.path(),
    );
    let text = PostgresStore::open(&bad_schema)
        .expect_err("schema")
        .to_string();
    assert!(text.contains("plain lower-case name"), "{text}");
    assert!(!format!("{bad_url:?}").contains("s3cret"));
}

/// docs/audit-postgres-role.sql, with this test's role and schema names,
/// split at its `-- step:` lines.
fn role_script(schema: &Schema, owner: &str, writer: &str) -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/audit-postgres-role.sql");
    let text = std::fs::read_to_string(path).expect("role script");
    let text = text
        .replace("warden_owner", owner)
        .replace("warden_writer", writer)
        .replace("warden_audit", &schema.name);
    let mut steps = Vec::new();
    for part in text.split("-- step: ").skip(1) {
        let (name, body) = part.split_once('\n').unwrap_or((part, ""));
        let name = name.split_whitespace().next().unwrap_or("").to_owned();
        steps.push((name, body.to_owned()));
    }
    steps
}

/// Roles are the cluster's: the test's two have random names and are
/// dropped at the end.
struct Roles<'a> {
    schema: &'a Schema,
    names: [String; 2],
}

impl Drop for Roles<'_> {
    fn drop(&mut self) {
        let _ = self.schema.execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.schema.name
        ));
        for name in &self.names {
            let _ = self
                .schema
                .execute(&format!("DROP OWNED BY {name}; DROP ROLE IF EXISTS {name}"));
        }
    }
}

#[test]
fn the_documented_runtime_role_starts_writes_and_cannot_change_a_record() {
    let schema = Schema::new();
    let owner = format!("{}_owner", schema.name);
    let writer = format!("{}_writer", schema.name);
    let _roles = Roles {
        schema: &schema,
        names: [writer.clone(), owner.clone()],
    };
    let steps = role_script(&schema, &owner, &writer);
    let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["roles", "migrate", "grants"]);
    schema.execute(&steps[0].1).expect("roles");
    let spool = tempfile::tempdir().expect("dir");
    let as_role = |role: &str| format!("postgres://{role}:pw@{SERVER}/{DATABASE}");

    // Before the migration, the writer may not apply it, and says so.
    let text = PostgresStore::open(&schema.options(&as_role(&writer), spool.path()))
        .expect_err("writer cannot migrate")
        .to_string();
    assert!(text.contains("warden audit migrate"), "{text}");

    let migrated = warden_audit::postgres::migrate(&schema.options(&as_role(&owner), spool.path()))
        .expect("owner migrates");
    assert_eq!(migrated, warden_audit::postgres::Prepared::Migrated);
    schema.runtime.block_on(async {
        let options = PgConnectOptions::from_str(&as_role(&owner)).expect("url");
        let mut conn = PgConnection::connect_with(&options).await.expect("owner");
        sqlx::raw_sql(&steps[2].1)
            .execute(&mut conn)
            .await
            .expect("grants");
    });

    let runtime = Runtime::new().expect("runtime");
    let (log, _) = start(&schema.options(&as_role(&writer), spool.path()), "w1");
    let ids = write(&log, &runtime, 6);
    log.close();
    assert_all_once(&schema, &ids);
    let report = verify_postgres(&as_role(&writer), &schema.name, None).expect("writer verifies");
    assert!(report.is_ok());
    let refused = schema.runtime.block_on(async {
        let options = PgConnectOptions::from_str(&as_role(&writer))
            .expect("url")
            .options([("search_path", schema.name.as_str())]);
        let mut conn = PgConnection::connect_with(&options).await.expect("writer");
        let mut refused = Vec::new();
        for sql in [
            "UPDATE audit_records SET tool = 'x'",
            "DELETE FROM audit_records",
            "TRUNCATE audit_records",
            "DROP TRIGGER audit_records_no_truncate ON audit_records",
            "CREATE TABLE other (x int)",
        ] {
            let err = sqlx::raw_sql(sql).execute(&mut conn).await.expect_err(sql);
            let db = err.as_database_error().map(|d| d.message().to_owned());
            refused.push(db.unwrap_or_default());
        }
        refused
    });
    for message in refused {
        assert!(
            message.contains("permission denied") || message.contains("must be owner"),
            "{message}"
        );
    }
}

#[test]
fn query_postgres_applies_the_filter_in_sql() {
    let schema = Schema::new();
    let spool = tempfile::tempdir().expect("dir");
    let runtime = Runtime::new().expect("runtime");
    let (log, _) = start(&schema.options(&schema.url(), spool.path()), "w1");
    write(&log, &runtime, 10);
    log.close();
    let run = |filter: &warden_audit::Filter| {
        let mut tools = Vec::new();
        let count = warden_audit::query_postgres(&schema.url(), &schema.name, filter, |record| {
            tools.push(record.expect("record").tool.unwrap_or_default());
        })
        .expect("query");
        (count, tools)
    };
    let (count, tools) = run(&warden_audit::Filter {
        tool: Some("tool-1".into()),
        principal: Some("user-u".into()),
        since: Some("2000-01".into()),
        ..Default::default()
    });
    assert_eq!((count, tools), (2, vec!["tool-1".to_owned(); 2]));
    let (count, _) = run(&warden_audit::Filter {
        kind: Some(Kind::Checkpoint),
        ..Default::default()
    });
    assert_eq!(count, 1);
    let (count, _) = run(&warden_audit::Filter {
        until: Some("2000-01-01T00:00:00.000000Z".into()),
        ..Default::default()
    });
    assert_eq!(count, 0);
}
