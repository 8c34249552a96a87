//! `warden audit verify` and `warden audit query`, run as an operator runs
//! them, over trails written by the audit writer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use warden_audit::chain::{load_or_create_key, public_key_text};
use warden_audit::{AuditLog, FileOptions, FileStore, Kind, WriterOptions};

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
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

fn trail_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
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
