//! The official TypeScript and Python SDK clients talk through Warden to
//! `@modelcontextprotocol/server-everything` over Streamable HTTP:
//! initialize, list and call tools, progress notifications from a
//! long-running tool, sampling, elicitation and roots requests answered
//! mid-call, cancellation, resources, prompts, and ending the session; a
//! denied tool is neither listed nor callable.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// `get-env` returns the server's whole environment: exactly the kind of
/// tool an operator denies.
const POLICY: &str = "version: 1\ndefault: allow\ntools:\n  get-env: deny\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_client_through_warden() {
    let upstream = server_everything("peers");
    let warden = warden_in_front_of(&upstream.url, POLICY).await;
    let peers = e2e_dir().join("peers");
    let mut client = Command::new("node");
    client
        .current_dir(&peers)
        .arg("ts-client.mjs")
        .arg(format!("http://{}/mcp", warden.mcp_addr))
        .args([
            "--expect-refused",
            "get-env",
            "--expect-listed",
            "echo,get-sum",
        ]);
    let output = run_peer(client, Duration::from_secs(120)).await;
    let passed = assert_all_passed(&output, "ts-client");
    assert!(passed >= 18, "only {passed} checks ran");
    let metrics = warden.warden.metrics.encode();
    assert!(metrics.contains("reason=\"denied-by-policy\""), "{metrics}");
    warden.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_client_through_warden() {
    let upstream = server_everything("peers");
    let warden = warden_in_front_of(&upstream.url, POLICY).await;
    let peers = e2e_dir().join("peers");
    require_installed(&peers.join(".venv"), "Python packages");
    let mut client = Command::new(peers.join(".venv/bin/python"));
    client
        .current_dir(&peers)
        .arg("py-client.py")
        .arg(format!("http://{}/mcp", warden.mcp_addr))
        .args([
            "--expect-refused",
            "get-env",
            "--expect-listed",
            "echo,get-sum",
        ]);
    let output = run_peer(client, Duration::from_secs(120)).await;
    let passed = assert_all_passed(&output, "py-client");
    assert!(passed >= 18, "only {passed} checks ran");
    warden.shutdown().await;
}

/// The `warden` binary built beside this test (by `cargo test --workspace`,
/// for the warden package's own tests).
fn warden_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = dir.join("warden");
    assert!(
        binary.is_file(),
        "{} is missing: build it with `cargo build -p warden` (cargo xtask test does)",
        binary.display()
    );
    binary
}

/// A config file with one route in front of `upstream` and [`POLICY`], for
/// `warden stdio`.
fn config_file(name: &str, upstream: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("policy.yaml"), POLICY).expect("policy");
    let config = dir.join("warden.yaml");
    let text = format!(
        "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      url: {upstream}\n    policy: policy.yaml\n"
    );
    std::fs::write(&config, text).expect("config");
    config
}

/// A desktop-style client: the TypeScript SDK launches `warden stdio` as its
/// MCP server and reaches server-everything (Streamable HTTP) through it:
/// list, call, progress, sampling/elicitation/roots answered mid-call,
/// cancel, and the denied tool hidden and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_client_through_warden_stdio() {
    let upstream = server_everything("peers");
    let config = config_file("warden-e2e-stdio", &upstream.url);
    let mut client = Command::new("node");
    client
        .current_dir(e2e_dir().join("peers"))
        .arg("ts-client.mjs")
        .args([
            "--expect-refused",
            "get-env",
            "--expect-listed",
            "echo,get-sum",
            "--stdio",
        ])
        .arg(warden_binary())
        .args(["stdio", "--config"])
        .arg(&config);
    let output = run_peer(client, Duration::from_secs(120)).await;
    let passed = assert_all_passed(&output, "ts-client over stdio");
    assert!(passed >= 17, "only {passed} checks ran");
}

/// The same with the Python SDK's stdio client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_client_through_warden_stdio() {
    let upstream = server_everything("peers");
    let config = config_file("warden-e2e-pystdio", &upstream.url);
    let peers = e2e_dir().join("peers");
    require_installed(&peers.join(".venv"), "Python packages");
    let mut client = Command::new(peers.join(".venv/bin/python"));
    client
        .current_dir(&peers)
        .arg("py-client.py")
        .args([
            "--expect-refused",
            "get-env",
            "--expect-listed",
            "echo,get-sum",
            "--stdio",
        ])
        .arg(warden_binary())
        .args(["stdio", "--config"])
        .arg(&config);
    let output = run_peer(client, Duration::from_secs(120)).await;
    let passed = assert_all_passed(&output, "py-client over stdio");
    assert!(passed >= 17, "only {passed} checks ran");
}
