//! The reply tap through the real proxy: every forwarded call's response is
//! seen as it passes (JSON or SSE, whatever the upstream's transport) and
//! timed in `warden_tool_call_duration_seconds`, by answer; refused calls
//! are never forwarded, so never timed.

use serde_json::json;
use warden::config::UpstreamConfig;

use crate::support::*;

/// The count of `warden_tool_call_duration_seconds` for `answer`.
fn timed(warden: &TestWarden, answer: &str) -> u64 {
    let metrics = warden.running.warden.metrics.encode();
    let prefix =
        format!("warden_tool_call_duration_seconds_count{{route=\"/mcp\",answer=\"{answer}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
}

/// The counts by answer are `expected` now: the tap reports a response as
/// it passes, before the agent has it.
fn assert_timed(warden: &TestWarden, expected: [(&str, u64); 4]) {
    let now: Vec<(&str, u64)> = expected
        .iter()
        .map(|(a, _)| (*a, timed(warden, a)))
        .collect();
    assert_eq!(now, expected);
}

#[tokio::test]
async fn json_replies_are_timed_by_answer_and_refusals_are_not() {
    let (url, _) = upstream_fn(|_parts, body| async move {
        if let Some(reply) = handshake(&body) {
            return reply;
        }
        let message: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let id = message["id"].clone();
        if message["method"] == "tools/list" {
            let tool = |name: &str, read_only: bool| {
                json!({"name": name, "inputSchema": {"type": "object"},
                    "annotations": {"readOnlyHint": read_only}})
            };
            return json_response(&json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
                tool("fine", true), tool("fails", true), tool("breaks", true), tool("wipe", false)]}}));
        }
        match message["params"]["name"].as_str().unwrap_or_default() {
            "fine" => json_response(&json!({"jsonrpc": "2.0", "id": id,
                "result": {"content": [{"type": "text", "text": "ok"}]}})),
            "fails" => json_response(&json!({"jsonrpc": "2.0", "id": id,
                "result": {"content": [{"type": "text", "text": "no"}], "isError": true}})),
            _ => json_response(&json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32603, "message": "broken"}})),
        }
    })
    .await;
    let warden = WardenBuilder::new(&url).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let ok = agent.call(1, "fine", json!({})).await;
    assert_eq!(
        ok.json()["result"]["content"][0]["text"],
        "ok",
        "relayed as sent"
    );
    agent.call(2, "fails", json!({})).await;
    agent.call(3, "breaks", json!({})).await;
    agent.call(4, "fine", json!({})).await;
    assert_refused(
        &agent.call(5, "wipe", json!({})).await,
        "wipe",
        "not-read-only",
    );
    assert_timed(
        &warden,
        [
            ("result", 2),
            ("tool_error", 1),
            ("error", 1),
            ("missing", 0),
        ],
    );
}

#[tokio::test]
async fn streamed_replies_from_a_stdio_server_are_timed_and_a_crash_is_an_error() {
    let warden = WardenBuilder::with_upstream(UpstreamConfig::stdio(stdio_fixture(&[])))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    // Progress notices come first: the response is found among them.
    let reply = agent
        .post(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "progress", "arguments": {}, "_meta": {"progressToken": "t"}}}),
        )
        .await;
    assert_eq!(reply.sse_messages().len(), 3, "progress, progress, result");
    agent.call(2, "echo", json!({"text": "hi"})).await;
    // The child dies mid-call: Warden's own error ends the stream.
    agent.call(3, "crash", json!({})).await;
    assert_timed(
        &warden,
        [
            ("result", 2),
            ("tool_error", 0),
            ("error", 1),
            ("missing", 0),
        ],
    );
}
