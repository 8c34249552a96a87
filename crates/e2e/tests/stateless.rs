//! MCP's stateless revision 2026-07-28 end to end, with the official Python
//! SDK (`mcp` 2.3.0) on both sides: `peers/stateless_server.py` serves it
//! over Streamable HTTP, `peers/stateless_client.py` speaks it (pinned to
//! 2026-07-28: `server/discover`, no `initialize`, no session). The client
//! runs once against the server alone, proving its checks, and once through
//! Warden with the default policy (`version: 1`: tools without
//! `readOnlyHint: true` are hidden and refused): discovery, the filtered
//! `tools/list`, a read-only call, a refused `transfer_funds`, an
//! elicitation answered over the multi-round-trip `input_required` flow, a
//! `subscriptions/listen` stream that gets `tools/list_changed` after a tool
//! is added (and the added tool is then listed and callable), and the
//! `HeaderMismatch` / unsupported-version refusals.
//!
//! Each test has its own server (ephemeral port) and its own Warden, so they
//! run in parallel.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::*;

/// Warden's default policy: read-only-hinted tools only.
const POLICY: &str = "version: 1\n";

/// The checks every run passes at least: 15 direct; through Warden
/// `call-transfer_funds` is a skip and `refused-wire` (15), plus
/// `refused-call` (16), replace it.
const MIN_CHECKS: usize = 15;

/// The peers' folder, with the Python SDK installed.
fn peers() -> PathBuf {
    let peers = e2e_dir().join("peers");
    require_installed(&peers.join(".venv"), "Python packages");
    peers
}

/// Start `stateless_server.py` on a free loopback port.
fn stateless_server() -> Peer {
    let peers = peers();
    let mut command = Command::new(peers.join(".venv/bin/python"));
    command
        .arg("stateless_server.py")
        .arg("0")
        .current_dir(&peers);
    start_peer(command, "stateless_server.py")
}

/// The client, against `url`, with `checks` (its flags).
fn client(url: &str, checks: &[&str]) -> Command {
    let peers = peers();
    let mut command = Command::new(peers.join(".venv/bin/python"));
    command
        .current_dir(&peers)
        .arg("stateless_client.py")
        .arg(url)
        .args(checks);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_stateless_client_direct_to_server() {
    let started = std::time::Instant::now();
    let server = stateless_server();
    let command = client(
        &server.url,
        &["--expect-listed", "lookup,confirm_lookup,transfer_funds"],
    );
    let output = run_peer(command, Duration::from_secs(120)).await;
    let passed = assert_all_passed(&output, "stateless client, direct");
    assert!(passed >= MIN_CHECKS, "direct: only {passed} checks ran");
    println!("direct: {:.1?}", started.elapsed());
}

/// The client's expectations through Warden with the default policy.
const THROUGH_WARDEN: &[&str] = &[
    "--expect-listed",
    "lookup,confirm_lookup",
    "--expect-hidden",
    "transfer_funds",
    "--expect-refused",
    "transfer_funds",
];

/// Run the client through Warden (default policy) with `THROUGH_WARDEN` and
/// `extra` flags; require every check to pass, and Warden's metrics to show
/// a call denied by policy.
async fn through_warden(name: &str, extra: &[&str]) -> String {
    let started = std::time::Instant::now();
    let server = stateless_server();
    let warden = warden_in_front_of(&server.url, POLICY).await;
    let mut command = client(&format!("http://{}/mcp", warden.mcp_addr), THROUGH_WARDEN);
    command.args(extra);
    let output = run_peer(command, Duration::from_secs(120)).await;
    let passed = assert_all_passed(&output, name);
    assert!(passed >= MIN_CHECKS, "{name}: only {passed} checks ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        stdout.contains("PASS refused-wire transfer_funds"),
        "{name}: the refusal was not checked:\n{stdout}"
    );
    // The default policy refuses transfer_funds as not read-only.
    let metrics = warden.warden.metrics.encode();
    let denied: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("warden_tool_calls_total{") && l.contains("decision=\"deny\""))
        .filter(|l| l.contains("reason=\"not-read-only\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        denied >= 1,
        "{name}: no tool call denied as not-read-only in Warden's metrics:\n{metrics}"
    );
    warden.shutdown().await;
    println!("{name}: {:.1?}", started.elapsed());
    stdout
}

/// Every check through Warden, the SDK's own parse of Warden's refusal
/// included (a 2026-07-28 result must carry `resultType`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_stateless_client_through_warden() {
    let stdout = through_warden("stateless client, through Warden", &[]).await;
    assert!(
        stdout.contains("PASS refused-call transfer_funds"),
        "the SDK refusal check did not run:\n{stdout}"
    );
}
