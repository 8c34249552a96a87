//! The official TypeScript and Python SDK clients talk through Warden to
//! `@modelcontextprotocol/server-everything`, over every pairing of the
//! agent side (the SDK's Streamable HTTP client to Warden's listener, or its
//! stdio client launching `warden stdio`) and the upstream side (Warden
//! reaching server-everything over Streamable HTTP, legacy HTTP+SSE, or as a
//! stdio child it spawns): initialize, list and call tools, progress
//! notifications from a long-running tool, sampling, elicitation and roots
//! requests answered mid-call, cancellation, resources, prompts, and ending
//! the session; a denied tool is neither listed nor callable.
//!
//! Each test has its own upstream (ephemeral port or child), its own Warden
//! (ephemeral port, or a `warden stdio` child) and its own temp directory,
//! so they run in parallel.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// `get-env` returns the server's whole environment: exactly the kind of
/// tool an operator denies.
const POLICY: &str = "version: 1\ndefault: allow\ntools:\n  get-env: deny\n";

/// How the SDK client reaches Warden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agent {
    /// The SDK's Streamable HTTP client, to Warden's listener (in process).
    StreamableHttp,
    /// The SDK's stdio client, launching `warden stdio --config F`.
    Stdio,
}

/// Which SDK's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sdk {
    TypeScript,
    Python,
}

/// Run one SDK client through Warden, `agent` side × `upstream` side, and
/// require every check to pass.
async fn sdk_through_warden(sdk: Sdk, agent: Agent, upstream: UpstreamKind) {
    let name = format!("{sdk:?} client, agent {agent:?}, upstream {upstream:?}");
    let peers = e2e_dir().join("peers");
    let everything = everything_upstream("peers", upstream);
    let dir = TempDir::new("warden-e2e-sdk");
    let config = write_config(&dir.0, &everything, POLICY);
    let mut client = match sdk {
        Sdk::TypeScript => Command::new("node"),
        Sdk::Python => {
            require_installed(&peers.join(".venv"), "Python packages");
            Command::new(peers.join(".venv/bin/python"))
        }
    };
    client.current_dir(&peers).arg(match sdk {
        Sdk::TypeScript => "ts-client.mjs",
        Sdk::Python => "py-client.py",
    });
    let checks = [
        "--expect-refused",
        "get-env",
        "--expect-listed",
        "echo,get-sum",
    ];
    let started = std::time::Instant::now();
    match agent {
        Agent::StreamableHttp => {
            let warden = warden_from_file(&config).await;
            client
                .arg(format!("http://{}/mcp", warden.mcp_addr))
                .args(checks);
            let output = run_peer(client, Duration::from_secs(120)).await;
            let passed = assert_all_passed(&output, &name);
            // The HTTP session checks (terminate, terminate-confirmed) run too.
            assert!(passed >= 20, "{name}: only {passed} checks ran");
            let metrics = warden.warden.metrics.encode();
            assert!(
                metrics.contains("reason=\"denied-by-policy\""),
                "{name}: {metrics}"
            );
            warden.shutdown().await;
        }
        Agent::Stdio => {
            client
                .args(checks)
                .arg("--stdio")
                .arg(warden_binary())
                .args(["stdio", "--config"])
                .arg(&config);
            let output = run_peer(client, Duration::from_secs(120)).await;
            let passed = assert_all_passed(&output, &name);
            assert!(passed >= 20, "{name}: only {passed} checks ran");
        }
    }
    println!("{name}: {:.1?}", started.elapsed());
}

// ---- TypeScript SDK client: all six pairings.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_http_to_warden_to_streamable_http_upstream() {
    sdk_through_warden(
        Sdk::TypeScript,
        Agent::StreamableHttp,
        UpstreamKind::StreamableHttp,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_http_to_warden_to_stdio_upstream() {
    sdk_through_warden(Sdk::TypeScript, Agent::StreamableHttp, UpstreamKind::Stdio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_http_to_warden_to_legacy_sse_upstream() {
    sdk_through_warden(
        Sdk::TypeScript,
        Agent::StreamableHttp,
        UpstreamKind::LegacySse,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_stdio_to_warden_to_streamable_http_upstream() {
    sdk_through_warden(Sdk::TypeScript, Agent::Stdio, UpstreamKind::StreamableHttp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_stdio_to_warden_to_stdio_upstream() {
    sdk_through_warden(Sdk::TypeScript, Agent::Stdio, UpstreamKind::Stdio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_stdio_to_warden_to_legacy_sse_upstream() {
    sdk_through_warden(Sdk::TypeScript, Agent::Stdio, UpstreamKind::LegacySse).await;
}

// ---- Python SDK client: all six pairings.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_to_warden_to_streamable_http_upstream() {
    sdk_through_warden(
        Sdk::Python,
        Agent::StreamableHttp,
        UpstreamKind::StreamableHttp,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_to_warden_to_stdio_upstream() {
    sdk_through_warden(Sdk::Python, Agent::StreamableHttp, UpstreamKind::Stdio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_to_warden_to_legacy_sse_upstream() {
    sdk_through_warden(Sdk::Python, Agent::StreamableHttp, UpstreamKind::LegacySse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_stdio_to_warden_to_streamable_http_upstream() {
    sdk_through_warden(Sdk::Python, Agent::Stdio, UpstreamKind::StreamableHttp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_stdio_to_warden_to_stdio_upstream() {
    sdk_through_warden(Sdk::Python, Agent::Stdio, UpstreamKind::Stdio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_stdio_to_warden_to_legacy_sse_upstream() {
    sdk_through_warden(Sdk::Python, Agent::Stdio, UpstreamKind::LegacySse).await;
}

/// A port free right now on loopback (for a peer that must be told its
/// address before it starts, and for a resource URL Warden must publish).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// MCP's authorization flow through Warden as the resource server: the
/// TypeScript SDK's client is refused with 401, reads Warden's RFC 9728
/// metadata, registers with and is authorized by a small authorization
/// server, gets a token for Warden's resource, and then lists and calls
/// tools; Warden checks the token against the AS's JWKS.
#[tokio::test]
async fn the_typescript_sdk_authorizes_through_warden_as_the_resource_server() {
    let peers = e2e_dir().join("peers");
    require_installed(&peers.join("node_modules"), "npm packages");
    let everything = everything_upstream("peers", UpstreamKind::StreamableHttp);
    let dir = TempDir::new("warden-e2e-oauth");
    std::fs::write(dir.0.join("policy.yaml"), POLICY).expect("policy");
    let (as_port, warden_port) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{as_port}");
    let resource = format!("http://127.0.0.1:{warden_port}/mcp");
    let config = dir.0.join("warden.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nlisten: 127.0.0.1:{warden_port}\nroutes:\n  - path: /mcp\n    upstream:\n{}    policy: policy.yaml\n    auth:\n      methods:\n        - jwt:\n            issuer: {issuer}\n            jwks_url: {issuer}/jwks.json\n            algorithms: [ES256]\n            claims: {{ agent: client_id, user: sub, groups: scope }}\n      oauth:\n        resource: {resource}\n        authorization_servers: [{issuer}]\n        scopes_supported: [mcp]\n",
            everything.yaml
        ),
    )
    .expect("config");
    let _warden = warden_from_file(&config).await;
    let mut client = Command::new("node");
    client.current_dir(&peers).arg("oauth-flow.mjs").args([
        "--as-port",
        &as_port.to_string(),
        "--url",
        &resource,
    ]);
    let output = run_peer(client, Duration::from_secs(90)).await;
    let passed = assert_all_passed(&output, "TypeScript SDK OAuth flow");
    assert!(passed >= 10, "only {passed} checks ran");
}

/// A held call with the TypeScript SDK's client on its defaults: Warden
/// answers "pending" within its hold budget (no timeout error), the client
/// calls again, an approver approves through the admin API, and the same
/// call then runs once.
#[tokio::test]
async fn the_typescript_sdk_waits_out_an_approval_by_calling_again() {
    let peers = e2e_dir().join("peers");
    require_installed(&peers.join("node_modules"), "npm packages");
    let everything = everything_upstream("peers", UpstreamKind::StreamableHttp);
    let dir = TempDir::new("warden-e2e-approvals");
    std::fs::write(
        dir.0.join("policy.yaml"),
        "version: 1\ndefault: allow\ntools:\n  get-sum: approve\n",
    )
    .expect("policy");
    let token = "wdn_e2e-approver-token-000000000000000000000";
    let digest = {
        use std::fmt::Write;
        let bytes = <sha2_digest::Sha256 as sha2_digest::Digest>::digest(token.as_bytes());
        bytes.iter().fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
    };
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = dir.0.join("warden.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:{admin_port}\napprovals:\n  hold_budget: 1s\n  approvers:\n    - name: grace\n      sha256: {digest}\nroutes:\n  - path: /mcp\n    upstream:\n{}    policy: policy.yaml\n",
            everything.yaml
        ),
    )
    .expect("config");
    let warden = warden_from_file(&config).await;
    // The approver: approves whatever is pending, once it appears.
    let approver = tokio::spawn(async move {
        let client = hyper_util_client();
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Some(list) = admin_json(
                &client,
                admin_port,
                "GET",
                "/approvals?status=pending",
                token,
            )
            .await
            else {
                continue;
            };
            if let Some(id) = list.get(0).and_then(|a| a["id"].as_str()) {
                // Decide only after the client's first request answered
                // "pending" (the hold budget is 1 s): the approval must be
                // found by the client's retry.
                tokio::time::sleep(Duration::from_millis(2500)).await;
                let decided = admin_json(
                    &client,
                    admin_port,
                    "POST",
                    &format!("/approvals/{id}/approve"),
                    token,
                )
                .await;
                return decided.map(|d| d["status"].as_str().unwrap_or_default().to_owned());
            }
        }
        None
    });
    let mut client = Command::new("node");
    client.current_dir(&peers).arg("approval-client.mjs").args([
        &format!("http://{}/mcp", warden.mcp_addr),
        "get-sum",
        r#"{"a":1,"b":2}"#,
        "The sum of 1 and 2 is 3.",
    ]);
    let output = run_peer(client, Duration::from_secs(90)).await;
    assert_all_passed(&output, "TypeScript SDK and an approval");
    assert_eq!(
        approver.await.expect("approver").as_deref(),
        Some("approved")
    );
}

fn hyper_util_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

async fn admin_json(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    port: u16,
    method: &str,
    path: &str,
    token: &str,
) -> Option<serde_json::Value> {
    use http_body_util::BodyExt;
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .ok()?;
    let response = client.request(request).await.ok()?;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}
