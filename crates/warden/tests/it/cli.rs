//! The `warden` command as an operator runs it.

use std::path::PathBuf;
use std::process::Command;

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn every_policy_in_the_repository_is_valid() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_file("policies"))
        .expect("policies/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let output = warden()
        .args(["policy", "check"])
        .args(&files)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with(": ok")).count(),
        files.len(),
        "{stdout}"
    );
}

#[test]
fn policy_check_reports_every_error_with_line_and_column() {
    let dir = std::env::temp_dir().join(format!("warden-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 2\ndefault: maybe\ntools:\n  a: wirte\n  b: read\n",
    )
    .expect("write");
    let output = warden()
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let name = bad.display().to_string();
    assert_eq!(
        lines,
        vec![
            format!("{name}:1:10: unsupported policy version 2 (this Warden reads version 1)"),
            format!(
                "{name}:2:10: unknown default \"maybe\" (expected read-only-hint, allow or deny)"
            ),
            format!(
                "{name}:4:6: unknown tier \"wirte\" for tool \"a\" (expected read, write, confirm, approve or deny)"
            ),
        ]
    );
}

#[test]
fn the_example_deploy_config_is_valid() {
    let output = warden()
        .arg("check")
        .arg(repo_file("deploy/config/warden.yaml"))
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn check_takes_the_config_as_run_does_too() {
    let config = repo_file("deploy/config/gateway-transports.yaml");
    let by_flag = warden()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(
        by_flag.status.success(),
        "{}",
        String::from_utf8_lossy(&by_flag.stderr)
    );
    let by_env = warden()
        .arg("check")
        .env("WARDEN_CONFIG", &config)
        .output()
        .expect("runs");
    assert!(
        String::from_utf8_lossy(&by_env.stdout).contains("ok (3 route(s))"),
        "{}",
        String::from_utf8_lossy(&by_env.stderr)
    );
}

#[test]
fn the_demo_shows_a_read_passing_and_writes_refused() {
    let output = warden()
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--showcase-only",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("tools/call search_customers (a read-only tool) -> ALLOWED"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "tools/call create_note (a write tool with no rule) -> REFUSED [not-read-only]"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "tools/call send_invoice (a tool the policy denies) -> REFUSED [denied-by-policy]"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("wrote 0 notes and sent 0 invoices"),
        "{stdout}"
    );
}

#[tokio::test]
async fn approvals_can_be_listed_and_decided_from_the_command_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::write(
        dir.join("p.yaml"),
        "version: 1\ntools:\n  send_invoice:\n    tier: approve\n    approvers: [grace]\n",
    )
    .expect("policy");
    let config = dir.join("w.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nlisten: 127.0.0.1:0\napprovals:\n  store: approvals.db\n  approvers:\n    - name: grace\n      sha256: {}\n    - name: linus\n      sha256: {}\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\n",
            "ab".repeat(32),
            "cd".repeat(32)
        ),
    )
    .expect("config");
    let store = warden_approvals::SqliteStore::open(&dir.join("approvals.db"))
        .await
        .expect("store");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let held = store
        .create(warden_approvals::NewApproval {
            route: "/mcp".into(),
            upstream: "http://127.0.0.1:1/mcp".into(),
            tool: "send_invoice".into(),
            arguments: r#"{"amount_cents":5}"#.into(),
            arguments_shown: r#"{"amount_cents":5}"#.into(),
            rationale: Some("asked by the user".into()),
            agent_session: "s".into(),
            principal_agent: "billing-bot".into(),
            principal_user: None,
            policy_hash: "h".into(),
            required: 1,
            created_ms: now,
            expires_ms: now + 600_000,
        })
        .await
        .expect("staged");
    let run = |args: &[&str]| {
        let output = warden()
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, listed, _) = run(&["approvals", "list", "--status", "pending"]);
    assert!(
        ok && listed.contains(&held.id) && listed.contains("send_invoice"),
        "{listed}"
    );
    let (ok, _, refused) = run(&["approvals", "approve", &held.id, "--as", "mallory"]);
    assert!(
        !ok && refused.contains("not one of the approvers"),
        "{refused}"
    );
    let (ok, _, refused) = run(&["approvals", "approve", &held.id, "--as", "linus"]);
    assert!(!ok && refused.contains("linus may not decide"), "{refused}");
    let (ok, decided, err) = run(&["approvals", "approve", &held.id, "--as", "grace"]);
    assert!(ok, "{err}");
    assert!(decided.contains("approved"), "{decided}");
    assert_eq!(
        store.get(&held.id).await.expect("get").status,
        warden_approvals::Status::Approved
    );
    let (ok, _, again) = run(&[
        "approvals",
        "reject",
        &held.id,
        "--as",
        "grace",
        "--reason",
        "no",
    ]);
    assert!(!ok && again.contains("not pending"), "{again}");
}

#[test]
fn check_names_a_postgres_queue_without_its_password() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::write(dir.join("p.yaml"), "version: 1\n").expect("policy");
    let config = |store: &str| {
        let path = dir.join("w.yaml");
        std::fs::write(
            &path,
            format!(
                "version: 1\nlisten: 127.0.0.1:0\napprovals:\n  store: {store}\n  schema: approvals_eu\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\n"
            ),
        )
        .expect("config");
        warden().arg("check").arg(&path).output().expect("runs")
    };
    let good = config("postgres://warden:s3cret@db.internal:5432/app?sslmode=require");
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        stdout.contains(
            "approvals: PostgreSQL postgres://warden:***@db.internal:5432/app?sslmode=require, schema approvals_eu"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret"), "{stdout}");
    let bad = config("postgres://warden:s3cret@db.internal:port/app");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("w.yaml:4:10: the approval store URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
