//! `warden audit verify`, `warden audit query` and `warden audit migrate`,
//! run as an operator runs them, over trails written by the audit writer:
//! JSON Lines files, and the PostgreSQL table on the real server at
//! 127.0.0.1:5432 (trust auth, database `test`; each test in a schema of
//! its own, a random name dropped at the end; SQL run with `psql`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use warden_audit::chain::{load_or_create_key, public_key_text};
use warden_audit::{
    AuditLog, FileOptions, FileStore, Kind, PostgresOptions, PostgresStore, WriterOptions,
};

/// The environment variable `--postgres` falls back to.
const POSTGRES_URL_ENV: &str = "WARDEN_AUDIT_POSTGRES_URL";

fn warden() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
    // A URL in the test's own environment would change what is read.
    command.env_remove(POSTGRES_URL_ENV);
    command
}

/// A directory of its own under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("warden-audit-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("trail")).expect("dir");
        TempDir(dir)
    }

    /// Where the trail is written.
    fn path(&self) -> PathBuf {
        self.0.join("trail")
    }

    /// The public key the trail's checkpoints are signed with.
    fn public_key(&self) -> String {
        let (key, _) = load_or_create_key(&self.0.join("audit.key")).expect("key");
        public_key_text(&key)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 60 tool calls (every third a denied `delete`) in rotated files, signed
/// with the key in `dir`.
fn write_trail(temp: &TempDir) {
    let dir = &temp.path();
    let (key, _) = load_or_create_key(&temp.0.join("audit.key")).expect("key");
    let store = FileStore::open(FileOptions {
        dir: dir.to_path_buf(),
        max_file_size: 4096,
        max_file_age: Duration::from_secs(3600),
    })
    .expect("open");
    let log = AuditLog::start(
        store,
        Vec::new(),
        WriterOptions {
            instance: "warden-cli".into(),
            queue: 10_000,
            max_pending: 10_000,
            sync_interval: Duration::from_millis(5),
            checkpoint_every: 10,
            checkpoint_interval: Duration::from_secs(3600),
            signing_key: key,
        },
    )
    .expect("start");
    for i in 0..60 {
        let mut record = log.new_record(Kind::ToolCall);
        record.tool = Some(if i % 3 == 0 { "delete" } else { "search" }.into());
        record.decision = Some(if i % 3 == 0 { "deny" } else { "allow" }.into());
        record.route = Some("/mcp".into());
        assert!(log.record(record));
    }
    log.close();
}

/// The trail's `*.jsonl` files in `dir` (not its lock).
fn trail_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn audit_verify_passes_a_good_trail_and_says_whether_signatures_were_checked() {
    let dir = TempDir::new("good");
    write_trail(&dir);
    let output = warden()
        .args(["audit", "verify"])
        .arg(dir.path())
        .args(["--public-key", &dir.public_key()])
        .output()
        .expect("runs");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("chain warden-cli: ok, 60 records"),
        "{stdout}"
    );
    assert!(stdout.contains("signatures checked"), "{stdout}");

    let key_file = dir.0.join("audit.pub");
    std::fs::write(&key_file, format!("{}\n", dir.public_key())).expect("key");
    let output = warden()
        .args(["audit", "verify"])
        .arg(dir.path())
        .arg("--public-key-file")
        .arg(&key_file)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));

    let output = warden()
        .args(["audit", "verify"])
        .arg(dir.path())
        .output()
        .expect("runs");
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout.contains("signatures NOT checked"), "{stdout}");

    let output = warden()
        .args(["audit", "verify"])
        .arg(dir.path())
        .args(["--public-key", "not-a-key"])
        .output()
        .expect("runs");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("public key"), "{stderr}");
}

#[test]
fn audit_verify_fails_a_tampered_trail_and_names_the_line() {
    let dir = TempDir::new("tampered");
    write_trail(&dir);
    let files = trail_files(&dir.path());
    assert!(!files.is_empty(), "{files:?}");
    let path = &files[0];
    let content = std::fs::read_to_string(path).expect("read");
    let edited = content.replacen(r#""decision":"deny""#, r#""decision":"allow""#, 1);
    assert_ne!(edited, content);
    let line = content
        .lines()
        .position(|l| l.contains(r#""decision":"deny""#))
        .expect("a denied call")
        + 1;
    std::fs::write(path, edited).expect("write");
    let output = warden()
        .args(["audit", "verify"])
        .arg(dir.path())
        .args(["--public-key", &dir.public_key()])
        .output()
        .expect("runs");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("{}:{line}", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("changed after it was written"), "{stderr}");
}

#[test]
fn audit_query_prints_the_matching_records() {
    let dir = TempDir::new("query");
    write_trail(&dir);
    let output = warden()
        .args(["audit", "query"])
        .arg(dir.path())
        .args([
            "--tool",
            "delete",
            "--decision",
            "deny",
            "--format",
            "jsonl",
        ])
        .output()
        .expect("runs");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(records.len(), 20, "{stdout}");
    assert!(records.iter().all(|r| r["tool"] == "delete"));

    let output = warden()
        .args(["audit", "query"])
        .arg(dir.path())
        .args(["--kind", "tool_call", "--since", "2000-01-01"])
        .output()
        .expect("runs");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let mut rows = stdout.lines();
    assert!(
        rows.next().is_some_and(|h| h.starts_with("TIME")),
        "{stdout}"
    );
    assert_eq!(rows.clone().count(), 60, "{stdout}");
    assert!(rows.all(|r| r.contains("tool_call") && r.contains("/mcp")));

    let output = warden()
        .args(["audit", "query"])
        .arg(dir.path())
        .args(["--since", "last tuesday"])
        .output()
        .expect("runs");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a time"), "{stderr}");
}

// === PostgreSQL ===

const PG_HOST: &str = "127.0.0.1";
const PG_PORT: u16 = 5432;
const PG_USER: &str = "postgres";
const PG_DATABASE: &str = "test";

/// A schema of the test's own (a random name), dropped when the test ends.
struct Schema {
    name: String,
    /// Holds the signing key and the store's spool.
    dir: tempfile::TempDir,
}

impl Schema {
    fn new() -> Schema {
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).expect("random");
        let name = format!(
            "warden_cli_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        Schema {
            name,
            dir: tempfile::tempdir().expect("dir"),
        }
    }

    fn url(&self) -> String {
        format!("postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}")
    }

    /// The signing key's file (created by the first writer).
    fn key_file(&self) -> PathBuf {
        self.dir.path().join("audit.key")
    }

    /// The public key the chains' checkpoints are signed with.
    fn public_key(&self) -> String {
        let (key, _) = load_or_create_key(&self.key_file()).expect("key");
        public_key_text(&key)
    }

    /// What `psql` prints for `sql` (unaligned, tuples only); panics when
    /// the server refuses it.
    fn psql(&self, sql: &str) -> String {
        let output = psql(sql);
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "psql {sql}: {stdout}{stderr}");
        stdout
    }

    /// `warden audit <command> --postgres URL --schema S <args>`.
    fn warden(&self, command: &str, args: &[&str]) -> Output {
        warden()
            .args([
                "audit",
                command,
                "--postgres",
                &self.url(),
                "--schema",
                &self.name,
            ])
            .args(args)
            .output()
            .expect("runs")
    }

    /// Write `calls` tool calls from instance `instance` into the table
    /// (tool `delete` for every third, denied; `search` otherwise) and close
    /// the log; returns the ids of the `delete` calls.
    fn write_chain(&self, instance: &str, calls: u64) -> Vec<String> {
        let spool = self.dir.path().join(format!("spool-{instance}"));
        std::fs::create_dir_all(&spool).expect("spool");
        let mut options = PostgresOptions::new(self.url(), &self.name, spool);
        options.connect_timeout = Duration::from_secs(5);
        let store = PostgresStore::open(&options).expect("open");
        let log = AuditLog::start(
            store,
            Vec::new(),
            WriterOptions {
                instance: instance.into(),
                queue: 10_000,
                max_pending: 10_000,
                sync_interval: Duration::from_millis(5),
                checkpoint_every: 5,
                checkpoint_interval: Duration::from_secs(3600),
                signing_key: load_or_create_key(&self.key_file()).expect("key").0,
            },
        )
        .expect("start");
        let mut deletes = Vec::new();
        for i in 0..calls {
            let mut record = log.new_record(Kind::ToolCall);
            let delete = i % 3 == 0;
            record.tool = Some(if delete { "delete" } else { "search" }.into());
            record.decision = Some(if delete { "deny" } else { "allow" }.into());
            record.route = Some("/mcp".into());
            if delete {
                deletes.push(record.id.to_string());
            }
            assert!(log.record(record));
        }
        log.close();
        deletes
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

fn psql(sql: &str) -> Output {
    Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", PG_HOST, "-p", &PG_PORT.to_string()])
        .args(["-U", PG_USER, "-d", PG_DATABASE, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("psql runs")
}

/// The records' lines in the table, as JSON, in `warden audit query`'s order.
fn table_lines(schema: &Schema, filter: &str) -> Vec<serde_json::Value> {
    schema
        .psql(&format!(
            "SELECT line FROM {}.audit_records WHERE {filter} ORDER BY time, chain, seq",
            schema.name
        ))
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

#[test]
fn audit_migrate_creates_the_table_and_can_run_again() {
    let schema = Schema::new();
    let exists = format!(
        "SELECT to_regclass('{}.audit_records') IS NOT NULL",
        schema.name
    );
    assert_eq!(schema.psql(&exists).trim(), "f");

    let output = schema.warden("migrate", &[]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("audit table ready (Migrated)"), "{stdout}");
    assert_eq!(schema.psql(&exists).trim(), "t");
    let migrations = format!("SELECT count(*) FROM {}._sqlx_migrations", schema.name);
    let applied = schema.psql(&migrations);

    // Again, with the URL from the environment: nothing left to apply.
    let output = warden()
        .args(["audit", "migrate", "--schema", &schema.name])
        .env(POSTGRES_URL_ENV, schema.url())
        .output()
        .expect("runs");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("audit table ready (AlreadyApplied)"),
        "{stdout}"
    );
    assert_eq!(schema.psql(&migrations), applied);

    // The table is the one the writer uses.
    schema.write_chain("w1", 3);
    let output = schema.warden("verify", &["--public-key", &schema.public_key()]);
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
}

#[test]
fn audit_verify_postgres_passes_every_chain_with_the_url_from_a_flag_or_the_environment() {
    let schema = Schema::new();
    schema.write_chain("w1", 12);
    schema.write_chain("w2", 7);
    let key = schema.public_key();
    let check = |output: &Output| {
        let (stdout, stderr) = text(output);
        assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
        assert!(stdout.contains("chain w1: ok, 12 records"), "{stdout}");
        assert!(stdout.contains("chain w2: ok, 7 records"), "{stdout}");
        assert_eq!(
            stdout.matches("checkpoint signatures checked").count(),
            2,
            "{stdout}"
        );
    };
    check(&schema.warden("verify", &["--public-key", &key]));
    check(
        &warden()
            .args([
                "audit",
                "verify",
                "--schema",
                &schema.name,
                "--public-key",
                &key,
            ])
            .env(POSTGRES_URL_ENV, schema.url())
            .output()
            .expect("runs"),
    );

    // Another key: the checkpoints were not signed by it.
    let other = tempfile::tempdir().expect("dir");
    let (other, _) = load_or_create_key(&other.path().join("other.key")).expect("key");
    let output = schema.warden("verify", &["--public-key", &public_key_text(&other)]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("chain w1: "), "{stderr}");
    assert!(stderr.contains("chain w2: "), "{stderr}");

    // A schema without the table cannot be read.
    let output = warden()
        .args(["audit", "verify", "--postgres", &schema.url()])
        .args(["--schema", &format!("{}_none", schema.name)])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2), "{:?}", text(&output));
}

#[test]
fn audit_verify_postgres_fails_a_changed_row_and_names_it() {
    let schema = Schema::new();
    schema.write_chain("w1", 12);
    schema.write_chain("w2", 7);
    let table = format!("{}.audit_records", schema.name);
    let update = format!(
        "UPDATE {table} SET line = replace(line, '\"route\":\"/mcp\"', '\"route\":\"/other\"') \
         WHERE chain = 'w1' AND seq = 4 AND kind = 'tool_call' RETURNING seq"
    );
    // The trigger refuses the edit...
    let output = psql(&update);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("append-only"), "{stderr}");
    // ...until the owner drops it.
    schema.psql(&format!(
        "ALTER TABLE {table} DISABLE TRIGGER audit_records_no_update_or_delete"
    ));
    assert_eq!(schema.psql(&update).trim(), "4");

    let output = schema.warden("verify", &["--public-key", &schema.public_key()]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    let expected = format!(
        "chain w1: {PG_HOST}:{PG_PORT}/{PG_DATABASE}/{table} row 4 (seq 4): the record was changed after it was written"
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stdout.contains("chain w1"), "{stdout}");
    assert!(stdout.contains("chain w2: ok, 7 records"), "{stdout}");
}

#[test]
fn audit_query_postgres_prints_exactly_the_matching_records() {
    let schema = Schema::new();
    let mut deletes = schema.write_chain("w1", 12);
    deletes.extend(schema.write_chain("w2", 7));
    assert_eq!(deletes.len(), 7);

    let output = schema.warden("query", &["--tool", "delete", "--format", "jsonl"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    deletes.sort();
    assert_eq!(ids, deletes, "{stdout}");
    assert!(records.iter().all(|r| r["tool"] == "delete"), "{stdout}");
    // The records as stored, field for field, in the table's order.
    assert_eq!(records, table_lines(&schema, "tool = 'delete'"));

    // Filters combine; nothing matching prints nothing.
    let output = schema.warden(
        "query",
        &[
            "--tool",
            "search",
            "--decision",
            "allow",
            "--format",
            "jsonl",
        ],
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 12, "{stdout}");
    let output = schema.warden("query", &["--tool", "delete", "--decision", "allow"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "only the header: {stdout}");
}

#[test]
fn an_unreachable_postgres_exits_2_without_printing_the_password() {
    let url = "postgres://postgres:s3cret@127.0.0.1:1/test";
    let check = |what: &str, output: Output| {
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{what}: {stdout}{stderr}");
        assert!(!stderr.is_empty(), "{what}: says why");
        assert!(!stderr.contains("s3cret"), "{what}: {stderr}");
        assert!(!stdout.contains("s3cret"), "{what}: {stdout}");
        stderr
    };
    for command in ["migrate", "verify", "query"] {
        let stderr = check(
            command,
            warden()
                .args(["audit", command, "--postgres", url])
                .output()
                .expect("runs"),
        );
        assert!(stderr.contains("127.0.0.1:1/test"), "{command}: {stderr}");
        check(
            command,
            warden()
                .args(["audit", command])
                .env(POSTGRES_URL_ENV, url)
                .output()
                .expect("runs"),
        );
    }
    // A malformed URL, and a URL given with files, are refused as clearly.
    check(
        "malformed",
        warden()
            .args(["audit", "verify", "--postgres"])
            .arg("postgres://postgres:s3cret@127.0.0.1:port/test")
            .output()
            .expect("runs"),
    );
    check(
        "with files",
        warden()
            .args(["audit", "query", "some-dir", "--postgres", url])
            .output()
            .expect("runs"),
    );
}
