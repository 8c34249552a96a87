//! No secret ever leaves Warden but where it is meant to go: a whole
//! session through the real binary (allowed calls, refused calls, a bad
//! key, an upstream that fails, a policy reload, a metrics scrape,
//! `warden check`, shutdown) with known secrets, then every output stream
//! and every file Warden wrote searched for them.

use std::process::{Command, Stdio};
use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use crate::credentials::recording_upstream;
use crate::lifecycle::{KillOnDrop, signal};
use crate::support::*;

const AGENT_KEY: &str = "wdn_agent-key-7f3a9c1e5b2d4f608a1c3e5f7b9d1f3a";
const ENV_SECRET: &str = "env-secret-4b8d2f6a0c1e3g5i7k9m";
const FILE_SECRET: &str = "file-secret-9z7x5v3t1r8p6n4l2j";
const ROTATED_SECRET: &str = "file-secret-rotated-0q2w4e6r8t";
const POLICY: &str = "version: 1\ntools:\n  search_customers:\n    tier: read\n    credential: crm\n  explode:\n    tier: read\n    credential: crm\n  create_note:\n    tier: write\n    credential: notes\n  echo: deny\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn a_whole_session_leaves_no_secret_in_any_output_or_file() {
    let (upstream, seen) = recording_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("out");
    std::fs::write(dir.join("crm-token"), format!("{FILE_SECRET}\n")).expect("secret");
    std::fs::write(dir.join("p.yaml"), POLICY).expect("policy");
    let (port, admin) = (free_port(), free_port());
    let config = dir.join("w.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nlisten: 127.0.0.1:{port}\nadmin: 127.0.0.1:{admin}\nlimits:\n  reload_interval: 50ms\n  reload_settle: 100ms\naudit:\n  dir: out/audit\n  signing_key: out/audit.key\nroutes:\n  - path: /mcp\n    upstream:\n      url: {upstream}\n    policy: p.yaml\n    auth:\n      methods:\n        - api_key:\n            keys:\n              - agent: notes-bot\n                sha256: {}\n    credentials:\n      crm:\n        file: crm-token\n      notes:\n        env: WARDEN_TEST_NOTES_SECRET\n        header: x-api-key\n    base_credential: crm\n",
            warden_identity::api_key::digest_hex(AGENT_KEY)
        ),
    )
    .expect("config");
    let stdout = std::fs::File::create(out.join("stdout")).expect("stdout");
    let stderr = std::fs::File::create(out.join("stderr")).expect("stderr");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["run", "--config"])
            .arg(&config)
            .env("WARDEN_LOG", "debug")
            .env("WARDEN_TEST_NOTES_SECRET", ENV_SECRET)
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("warden starts"),
    );
    wait_listening(port).await;
    let url = format!("http://127.0.0.1:{port}/mcp");

    // Allowed calls through both lanes, a refused one, an upstream failure.
    let mut agent = Agent::with_bearer(&url, AGENT_KEY);
    agent.initialize().await;
    assert_eq!(agent.list(1).await.status, StatusCode::OK);
    let read = agent
        .call(2, "search_customers", json!({"query": "ada"}))
        .await;
    assert_eq!(
        read.json()["result"]["content"][0]["text"],
        "done",
        "{read:?}"
    );
    let write = agent.call(3, "create_note", json!({"text": "x"})).await;
    assert_eq!(
        write.json()["result"]["content"][0]["text"],
        "done",
        "{write:?}"
    );
    assert_refused(
        &agent.call(4, "echo", json!({})).await,
        "echo",
        "denied-by-policy",
    );
    let failed = agent.call(5, "explode", json!({})).await;
    assert!(
        failed.status.is_server_error() || failed.json()["error"].is_object(),
        "{failed:?}"
    );
    // A wrong key.
    let wrong = Agent::with_bearer(&url, &format!("{AGENT_KEY}0"));
    assert_eq!(
        wrong
            .post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // The credential file is rotated, and the policy reloaded.
    std::fs::write(dir.join("crm-token"), format!("{ROTATED_SECRET}\n")).expect("rotate");
    std::fs::write(
        dir.join("p.yaml"),
        format!("{POLICY}  send_invoice: deny\n"),
    )
    .expect("reload");
    let metrics_url = format!("http://127.0.0.1:{admin}/metrics");
    let mut metrics = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !metrics.contains("warden_policy_reloads_total{result=\"applied\"} 1\n") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the policy was not reloaded: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let reply = Agent::new(&metrics_url)
            .send(
                http::Request::get(&metrics_url)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("request"),
            )
            .await;
        metrics = String::from_utf8_lossy(&reply.body).into_owned();
    }
    let again = agent
        .call(6, "search_customers", json!({"query": "ada"}))
        .await;
    assert_eq!(again.json()["result"]["content"][0]["text"], "done");

    // `warden check` reads every secret too.
    let check = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["check"])
        .arg(&config)
        .env("WARDEN_TEST_NOTES_SECRET", ENV_SECRET)
        .output()
        .expect("check runs");
    assert!(check.status.success(), "{check:?}");
    std::fs::write(out.join("check"), [check.stdout, check.stderr].concat()).expect("check out");
    std::fs::write(out.join("metrics"), &metrics).expect("metrics");

    signal(&child, "-TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while child.0.try_wait().expect("wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "warden did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The secrets were in play: the upstream received both credentials.
    let seen = seen.lock().expect("lock").clone();
    assert!(
        seen.iter()
            .any(|s| s.authorization.as_deref() == Some(&format!("Bearer {FILE_SECRET}")))
    );
    assert!(
        seen.iter()
            .any(|s| s.authorization.as_deref() == Some(&format!("Bearer {ROTATED_SECRET}")))
    );
    assert!(
        seen.iter()
            .any(|s| s.api_key.as_deref() == Some(ENV_SECRET))
    );
    // And nowhere else: logs (at debug), the audit trail and its key, the
    // metrics, `warden check`.
    let written = files(&out);
    assert!(written.len() >= 5, "{written:?}");
    let logs = std::fs::read_to_string(out.join("stderr")).expect("logs");
    assert!(
        logs.contains("Policy reloaded."),
        "the logs were captured: {logs}"
    );
    for file in &written {
        let bytes = std::fs::read(file).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        for secret in [AGENT_KEY, ENV_SECRET, FILE_SECRET, ROTATED_SECRET] {
            assert!(
                !text.contains(secret),
                "{} holds a secret ({}…)",
                file.display(),
                &secret[..8]
            );
        }
    }
}
