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

/// The index and text of the first line at or after `from` containing
/// `needle`: the showcase's steps are checked in the order it prints them.
fn line_with<'a>(lines: &[&'a str], from: usize, needle: &str) -> (usize, &'a str) {
    lines
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, line)| line.contains(needle))
        .map(|(i, line)| (i, *line))
        .unwrap_or_else(|| panic!("{needle:?} after line {from} in:\n{}", lines.join("\n")))
}

/// The approval id a showcase line names (`… HELD for approval <id>`).
fn held_id(line: &str) -> &str {
    line.rsplit(' ').next().expect("an id")
}

#[test]
fn the_demo_shows_a_read_passing_a_write_refused_and_a_held_tool_previewed_approved_and_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = warden()
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--showcase-only",
            "--audit-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let (at, listed) = line_with(&lines, 0, "1. tools/list through Warden shows:");
    assert!(
        listed.contains("send_invoice") && !listed.contains("create_note"),
        "{listed}"
    );
    let (at, _) = line_with(
        &lines,
        at,
        "tools/call search_customers (a read-only tool) -> ALLOWED",
    );
    let (at, _) = line_with(
        &lines,
        at,
        "tools/call create_note (a write tool with no rule) -> REFUSED [not-read-only]",
    );
    let (at, _) = line_with(&lines, at, "wrote 0 notes and sent 0 invoices");

    // (a) The preview: Warden's DRY RUN text, nothing sent.
    let (at, _) = line_with(
        &lines,
        at,
        r#"4. tools/call send_invoice with "dryRun": true (a tool that needs approval) -> PREVIEW"#,
    );
    let (at, preview) = line_with(&lines, at, "Warden answers: DRY RUN");
    assert!(
        preview.contains(r#"would call 'send_invoice' on http://127.0.0.1:"#)
            && preview.contains(r#"{"amount_cents":990000,"customer_id":1}"#)
            && preview.contains("Nothing was sent"),
        "{preview}"
    );
    assert!(
        !preview.contains("dryRun\":true"),
        "the flag is not forwarded: {preview}"
    );
    let (at, _) = line_with(&lines, at, "The demo server sent 0 invoices:");

    // (b) Held, approved through the admin API: the upstream's answer, one invoice.
    let (at, held) = line_with(
        &lines,
        at,
        "5. tools/call send_invoice (the same call, for real) -> HELD for approval ",
    );
    let approved_id = held_id(held);
    let (at, post) = line_with(&lines, at, "   POST http://127.0.0.1:");
    assert!(
        post.ends_with(&format!("/approvals/{approved_id}/approve -> approved")),
        "{post}"
    );
    let (at, _) = line_with(
        &lines,
        at,
        "the agent gets the upstream's answer: Invoice for $9900.00 sent to ada@example.com.",
    );
    let (at, _) = line_with(&lines, at, "The demo server sent 1 invoice:");

    // (c) Another held call, rejected with a reason: the agent is told who
    // and why, and the count stays.
    let (at, held) = line_with(
        &lines,
        at,
        "6. tools/call send_invoice (another customer) -> HELD for approval ",
    );
    let rejected_id = held_id(held);
    assert_ne!(rejected_id, approved_id);
    let (at, post) = line_with(&lines, at, "   POST http://127.0.0.1:");
    assert!(
        post.contains(&format!("/approvals/{rejected_id}/reject {{\"reason\":"))
            && post.ends_with("-> rejected"),
        "{post}"
    );
    let reason = post
        .split("{\"reason\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the reason");
    let (at, told) = line_with(&lines, at, "the model reads: ");
    assert!(
        told.contains(&format!(
            "The call to 'send_invoice' was rejected by demo-approver: {reason}"
        )),
        "{told}"
    );
    let (at, _) = line_with(&lines, at, "The demo server still sent 1 invoice:");

    let (at, _) = line_with(&lines, at, "is on the audit trail in");
    let (at, _) = line_with(&lines, at, "verified: ");
    let (at, page) = line_with(&lines, at, "8. The approvals page: http://127.0.0.1:");
    let port: u16 = page
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .expect("a port");
    assert_ne!(port, 0, "{page}");
    assert!(
        page.contains(&format!("http://127.0.0.1:{port}/ui/")),
        "{page}"
    );
    let (at, _) = line_with(&lines, at, "log in as demo-approver with this token");
    assert!(
        lines[at + 1].trim().starts_with("wdn_"),
        "{}",
        lines[at + 1]
    );
    assert!(
        dir.path().join("approvals.db").is_file(),
        "the queue is in the demo's directory"
    );
}

/// The demo, once its showcase is over, keeps serving: the printed token
/// logs in to the printed page, which shows the showcase's decisions, and
/// a held call of one's own, made as the printed hint says, waits until it
/// is approved on the page.
#[tokio::test]
async fn the_demo_keeps_its_approvals_page_usable_with_the_printed_token() {
    use std::io::BufRead;

    use crate::approvals::in_background;
    use crate::approvals_page::{Browser, text};
    use crate::support::Agent;

    /// The demo process, stopped however the test ends.
    struct Demo(std::process::Child);
    impl Drop for Demo {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let mut demo = Demo(
        warden()
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--audit-dir",
            ])
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starts"),
    );
    // Everything up to the hint's last line (the demo then serves).
    let mut printed = Vec::new();
    let mut stdout = std::io::BufReader::new(demo.0.stdout.take().expect("stdout"));
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("stdout") == 0 {
            panic!("the demo ended early:\n{}", printed.join(""));
        }
        let last = line.trim_start().starts_with("curl -sN ");
        printed.push(line);
        if last {
            break;
        }
    }
    let lines: Vec<&str> = printed.iter().map(|l| l.trim_end()).collect();
    let (at, page) = line_with(&lines, 0, "The approvals page: http://");
    let admin: std::net::SocketAddr = page
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .expect("the page's address");
    let (at, _) = line_with(&lines, at, "with this token");
    let token = lines[at + 1].trim();
    let (at, serving) = line_with(&lines, at, "Warden keeps serving: point any MCP client at ");
    let mcp = serving
        .split(" at ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("the MCP url");
    let (_, hint) = line_with(&lines, at, "curl -sN ");
    let call: serde_json::Value = hint
        .split(" -d '")
        .nth(1)
        .and_then(|rest| rest.strip_suffix('\''))
        .and_then(|json| serde_json::from_str(json).ok())
        .expect("the hint's call is JSON");
    assert!(
        call["params"]["_meta"]["progressToken"].is_number(),
        "the hint's call waits for the decision: {call}"
    );

    let mut browser = Browser::at(admin);
    let csrf = browser.log_in(token).await;
    let history = text(&browser.get("/ui/history").await);
    assert!(
        history.contains("demo-approver (approve)") && history.contains("demo-approver (reject)"),
        "{history}"
    );

    // A held call of one's own, decided on the page.
    let mut agent = Agent::new(mcp);
    agent.initialize().await;
    let waiting = in_background(&agent, call.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let id = loop {
        let pending = text(&browser.get("/ui/").await);
        if let Some(rest) = pending.split(r#"href="/ui/approvals/"#).nth(1) {
            break rest.split('"').next().expect("an id").to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never held: {pending}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let reply = browser
        .post(
            &format!("/ui/approvals/{id}/approve"),
            &[("csrf", &csrf), ("reason", "tried it myself")],
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(
        reply.status,
        http::StatusCode::SEE_OTHER,
        "{}",
        text(&reply)
    );
    let outcome = waiting.await.expect("the held call returns");
    let last = outcome.sse_messages().pop().expect("an outcome");
    assert_eq!(last["id"], call["id"], "{last}");
    assert_eq!(last["result"]["isError"], serde_json::Value::Null, "{last}");
    assert!(
        last["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Invoice for ")),
        "{last}"
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

#[test]
fn check_reads_the_shared_request_state_key_and_refuses_a_short_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::write(dir.join("p.yaml"), "version: 1\n").expect("policy");
    let path = dir.join("w.yaml");
    std::fs::write(
        &path,
        "version: 1\nlisten: 127.0.0.1:0\napprovals:\n  request_state_key: {env: WARDEN_IT_STATE_KEY}\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\n",
    )
    .expect("config");
    let check = |key: Option<&str>| {
        let mut command = warden();
        command
            .arg("check")
            .arg(&path)
            .env_remove("WARDEN_IT_STATE_KEY");
        if let Some(key) = key {
            command.env("WARDEN_IT_STATE_KEY", key);
        }
        let output = command.output().expect("runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, said) = check(None);
    assert!(
        !ok && said.contains("WARDEN_IT_STATE_KEY is not set"),
        "{said}"
    );
    let (ok, said) = check(Some("too-short-a-key"));
    assert!(!ok && said.contains("at least 32 characters"), "{said}");
    assert!(
        !said.contains("too-short-a-key"),
        "the key is never shown: {said}"
    );
    let (ok, said) = check(Some(&"k".repeat(64)));
    assert!(ok, "{said}");
}
