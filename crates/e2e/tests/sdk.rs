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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_waits_out_an_approval_by_calling_again() {
    let peers = e2e_dir().join("peers");
    require_installed(&peers.join("node_modules"), "npm packages");
    let everything = everything_upstream("peers", UpstreamKind::StreamableHttp);
    let dir = TempDir::new("warden-e2e-approvals");
    let upstream = &everything.server.as_ref().expect("an HTTP server").url;
    let config = write_approvals_config(
        &dir.0,
        upstream,
        "version: 1\ndefault: allow\ntools:\n  get-sum: approve\n",
        "1s",
        "5s",
    );
    let warden = warden_from_file(&config).await;
    let admin = Admin::of(&warden);
    // The approver: approves what is pending, once it appears.
    let approver = tokio::spawn(async move {
        let approval = admin.pending(Duration::from_secs(30)).await;
        // Decide only after the client's first request answered "pending"
        // (the hold budget is 1 s): the approval must be found by the
        // client's retry.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let id = approval["id"].as_str().expect("id");
        admin.decide(id, "approve", None).await["status"].clone()
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
    assert_eq!(approver.await.expect("approver"), "approved");
}

/// The invoice the demo-upstream approval tests ask for, and what the demo
/// answers once it is sent.
const INVOICE: &str = r#"{"customer_id":2,"amount_cents":4200}"#;
const SENT: &str = "Invoice for $42.00 sent to grace@example.com.";

/// A Warden with an approval queue (hold budget `budget`, progress every
/// `progress`) in front of the demo upstream, `send_invoice` held for grace.
async fn held_invoices(
    budget: &str,
    progress: &str,
) -> (
    TempDir,
    std::sync::Arc<warden_demo::Demo>,
    warden::Running,
    Admin,
) {
    let dir = TempDir::new("warden-e2e-held");
    let (upstream, demo) = demo_upstream().await;
    let config = write_approvals_config(
        &dir.0,
        &upstream,
        "version: 1\ntools:\n  send_invoice:\n    tier: approve\n    approvers: [grace]\n",
        budget,
        progress,
    );
    let warden = warden_from_file(&config).await;
    let admin = Admin::of(&warden);
    (dir, demo, warden, admin)
}

/// `held_client.py` (the Python SDK 2.3.0 client on its defaults) calling
/// `send_invoice` twice, the second time when told.
fn python_held_client(warden: &warden::Running) -> LineChild {
    let peers = e2e_dir().join("peers");
    require_installed(&peers.join(".venv"), "Python packages");
    let mut command = Command::new(peers.join(".venv/bin/python"));
    command
        .current_dir(&peers)
        .arg("held_client.py")
        .arg(format!("http://{}/mcp", warden.mcp_addr))
        .args(["send_invoice", INVOICE, "--calls", "2", "--timeout", "90"]);
    LineChild::spawn(command)
}

/// The first call's result: "pending" once the hold budget ran out, with
/// the approval's id, which is the one the queue holds. (Results as the
/// 2.3.0 SDK parses them: its `CallToolResult` has `resultType`, the
/// 2026-07-28 field, defaulting to `complete` when the server sends none.)
fn pending_result(client: &mut LineChild, approval: &serde_json::Value) -> serde_json::Value {
    let first = next_seen(client, "result", Duration::from_secs(30));
    assert_eq!(first["call"], 1);
    let id = approval["id"].as_str().expect("id");
    assert_eq!(
        first["result"],
        serde_json::json!({
            "content": [{"type": "text", "text": format!("The call to 'send_invoice' is waiting for a human's approval (approval {id}). It has not run. Call the tool again with the same arguments to get the decision; approvers are not asked twice.")}],
            "isError": true,
            "resultType": "complete",
            "structuredContent": {
                "warden": {"decision": "pending", "reason": "pending-approval", "tool": "send_invoice"},
                "approval": {"id": id, "status": "pending", "expires_ms": approval["expires_ms"], "approvers": []},
            },
        })
    );
    first
}

/// A held call with the Python SDK's client (2.3.0) on its defaults: the
/// first call answers "pending" with the approval's id after the hold
/// budget; approved through the admin API, the same call again gets the
/// upstream's result, and the invoice goes out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_waits_out_an_approval_by_calling_again() {
    let (_dir, demo, warden, admin) = held_invoices("1s", "5s").await;
    let mut client = python_held_client(&warden);
    let approval = admin.pending(Duration::from_secs(30)).await;
    assert_eq!(
        approval["arguments"],
        serde_json::json!({"customer_id": 2, "amount_cents": 4200})
    );
    pending_result(&mut client, &approval);
    let id = approval["id"].as_str().expect("id");
    let decided = admin.decide(id, "approve", None).await;
    assert_eq!(decided["status"], "approved", "{decided}");
    assert_eq!(
        decided["executed_ms"],
        serde_json::Value::Null,
        "not run yet: {decided}"
    );
    assert_eq!(demo.invoices_sent(), 0);

    client.write("again\n");
    let second = next_seen(&mut client, "result", Duration::from_secs(30));
    assert_eq!(second["call"], 2);
    assert_eq!(
        second["result"],
        serde_json::json!({"content": [{"type": "text", "text": SENT}], "isError": false, "resultType": "complete",
            "_meta": {"warden/approval": {"id": id, "approvers": ["grace"]}}})
    );
    next_seen(&mut client, "done", Duration::from_secs(30));
    let status = client.finish(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{status}\n{}", client.log());

    let after = admin.get(id).await;
    assert_eq!(after["status"], "approved", "{after}");
    assert!(after["executed_ms"].is_i64(), "run once: {after}");
    assert!(admin.list(Some("pending")).await.is_empty());
    assert_eq!(demo.invoices_sent(), 1);
}

/// A held call with the Python SDK's client, rejected: the retry's result
/// is an error naming the approver and the reason; nothing ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_sees_a_rejection_naming_the_approver_and_reason() {
    let (_dir, demo, warden, admin) = held_invoices("1s", "5s").await;
    let mut client = python_held_client(&warden);
    let approval = admin.pending(Duration::from_secs(30)).await;
    pending_result(&mut client, &approval);
    let id = approval["id"].as_str().expect("id");
    let decided = admin.decide(id, "reject", Some("wrong customer")).await;
    assert_eq!(decided["status"], "rejected", "{decided}");

    client.write("again\n");
    let second = next_seen(&mut client, "result", Duration::from_secs(30));
    assert_eq!(second["call"], 2);
    assert_eq!(
        second["result"],
        serde_json::json!({
            "content": [{"type": "text", "text": "The call to 'send_invoice' was rejected by grace: wrong customer. Do not retry it as it is; change what was asked for, or ask the user."}],
            "isError": true,
            "resultType": "complete",
            "structuredContent": {
                "warden": {"decision": "rejected", "reason": "rejected-by-approver", "tool": "send_invoice"},
                "approval": {"id": id, "status": "rejected", "expires_ms": approval["expires_ms"], "approvers": ["grace"]},
            },
        })
    );
    next_seen(&mut client, "done", Duration::from_secs(30));
    let status = client.finish(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{status}\n{}", client.log());

    let after = admin.get(id).await;
    assert_eq!(after["status"], "rejected", "{after}");
    assert_eq!(after["reason"], "wrong customer", "{after}");
    assert_eq!(after["executed_ms"], serde_json::Value::Null, "{after}");
    assert_eq!(demo.invoices_sent(), 0);
}

/// A held call with the TypeScript SDK's client asking for progress
/// (`onprogress`, `resetTimeoutOnProgress: true`) with a 3 s request
/// timeout, approved only after 5 s: Warden's progress notifications keep
/// the request alive, no timeout error reaches the agent, and the same
/// request gets the upstream's result; the invoice goes out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_waits_out_an_approval_with_progress_past_its_timeout() {
    let peers = e2e_dir().join("peers");
    require_installed(&peers.join("node_modules"), "npm packages");
    let (_dir, demo, warden, admin) = held_invoices("1s", "1s").await;
    let approver = tokio::spawn(async move {
        let approval = admin.pending(Duration::from_secs(30)).await;
        // Longer than the client's request timeout, and than the budget.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let id = approval["id"].as_str().expect("id").to_owned();
        let decided = admin.decide(&id, "approve", None).await;
        assert_eq!(decided["status"], "approved", "{decided}");
        (admin, id)
    });
    let mut client = Command::new("node");
    client.current_dir(&peers).arg("approval-client.mjs").args([
        &format!("http://{}/mcp", warden.mcp_addr),
        "send_invoice",
        INVOICE,
        SENT,
        "--progress",
        "3000",
    ]);
    let output = run_peer(client, Duration::from_secs(90)).await;
    assert_all_passed(&output, "TypeScript SDK waiting with progress");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("result "))
        .and_then(|r| serde_json::from_str(r).ok())
        .expect("a result line");
    let (admin, id) = approver.await.expect("approver");
    assert_eq!(
        result,
        serde_json::json!({"content": [{"type": "text", "text": SENT}],
            "_meta": {"warden/approval": {"id": id, "approvers": ["grace"]}}})
    );
    let progress: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("progress "))
        .and_then(|r| serde_json::from_str(r).ok())
        .expect("a progress line");
    for (n, seen) in progress.as_array().expect("progress").iter().enumerate() {
        assert_eq!(
            *seen,
            serde_json::json!({"progress": n + 1, "message": "'send_invoice' is held for a human's approval; still waiting"})
        );
    }
    let after = admin.get(&id).await;
    assert_eq!(after["status"], "approved", "{after}");
    assert!(after["executed_ms"].is_i64(), "run once: {after}");
    assert_eq!(demo.invoices_sent(), 1);
}

/// `confirm-client.mjs` (the TypeScript SDK's client, declaring
/// elicitation) calling `send_invoice` at the `confirm` tier and answering
/// Warden's question with `answer`: what it was asked, and the result.
async fn typescript_confirm(answer: &str) -> (serde_json::Value, serde_json::Value, u64) {
    let peers = e2e_dir().join("peers");
    require_installed(&peers.join("node_modules"), "npm packages");
    let (upstream, demo) = demo_upstream().await;
    let warden =
        warden_in_front_of(&upstream, "version: 1\ntools:\n  send_invoice: confirm\n").await;
    let mut client = Command::new("node");
    client.current_dir(&peers).arg("confirm-client.mjs").args([
        &format!("http://{}/mcp", warden.mcp_addr),
        "send_invoice",
        r#"{"customer_id":2,"amount_cents":4200}"#,
        answer,
    ]);
    let output = run_peer(client, Duration::from_secs(60)).await;
    assert_all_passed(&output, "the TypeScript SDK confirming a call");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = |prefix: &str| -> serde_json::Value {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_else(|| panic!("a {prefix}line: {stdout}"))
    };
    (line("asked "), line("result "), demo.invoices_sent())
}

/// The `confirm` tier with a real client: the TypeScript SDK is asked
/// (form elicitation naming the tool and its arguments); ticked, the call
/// runs once and the upstream's result comes back in the same request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_user_confirms_a_call_and_it_runs() {
    let (asked, result, sent) = typescript_confirm("accept").await;
    assert_eq!(asked["mode"], "form", "{asked}");
    assert_eq!(
        asked["message"],
        "Your agent wants to run 'send_invoice' with:\n\"amount_cents\": 4200\n\"customer_id\": 2\n\nIt will not run unless you confirm."
    );
    assert_eq!(
        asked["requestedSchema"]["required"],
        serde_json::json!(["confirm"])
    );
    assert_eq!(
        result,
        serde_json::json!({"content": [{"type": "text", "text": SENT}]})
    );
    assert_eq!(sent, 1);
}

/// Declined in the client: the model reads an error result naming the
/// tool, and nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_user_declines_a_call_and_it_never_runs() {
    let (_, result, sent) = typescript_confirm("decline").await;
    assert_eq!(
        result,
        serde_json::json!({
            "content": [{"type": "text", "text": "The user declined the call to 'send_invoice'; it was not run. Do not retry it unless the user asks for it."}],
            "isError": true,
            "structuredContent": {"warden": {"decision": "declined", "reason": "declined-by-user", "tool": "send_invoice"}},
        })
    );
    assert_eq!(sent, 0);
}
