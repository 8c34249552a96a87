//! The stateless revision (MCP 2026-07-28): no initialize, no session,
//! `_meta` on every request, and `Mcp-Method`/`Mcp-Name` headers that must
//! say what the body says.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use warden::config::UpstreamConfig;

use crate::support::*;

const REVISION: &str = "2026-07-28";

/// What the scripted stateless upstream received: headers and body.
type Seen = Arc<Mutex<Vec<(http::HeaderMap, Value)>>>;

fn result(id: &Value, result: Value) -> Response {
    json_response(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

type Response = http::Response<TestBody>;

/// A 2026-07-28 server: `lookup` (read-only) asks for a confirmation with a
/// multi-round-trip `input_required` result, then answers; `pay` mutates.
async fn stateless_upstream() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let (url, _) = upstream_fn(move |parts, body| {
        let log = log.clone();
        async move {
            let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            log.lock()
                .expect("lock")
                .push((parts.headers.clone(), message.clone()));
            let id = &message["id"];
            match message["method"].as_str().unwrap_or_default() {
                "server/discover" => result(
                    id,
                    json!({"resultType": "complete", "supportedVersions": [REVISION],
                        "capabilities": {"tools": {}}, "ttlMs": 1000, "cacheScope": "public"}),
                ),
                "tools/list" => result(
                    id,
                    json!({"resultType": "complete", "tools": [
                        {"name": "lookup", "inputSchema": {"type": "object"},
                         "annotations": {"readOnlyHint": true}},
                        {"name": "pay", "inputSchema": {"type": "object"}}]}),
                ),
                "tools/call" => {
                    let params = &message["params"];
                    match (&params["inputResponses"], &params["requestState"]) {
                        (Value::Null, _) => result(
                            id,
                            json!({"resultType": "input_required",
                                "inputRequests": {"confirm": {"method": "elicitation/create",
                                    "params": {"mode": "form", "message": "Sure?",
                                        "requestedSchema": {"type": "object"}}}},
                                "requestState": "opaque-state-1"}),
                        ),
                        (responses, state) => result(
                            id,
                            json!({"resultType": "complete", "content": [{"type": "text",
                                "text": format!("confirmed {} with {}", responses["confirm"]["action"], state)}]}),
                        ),
                    }
                }
                _ => json_response(
                    &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}}),
                ),
            }
        }
    })
    .await;
    (url, seen)
}

fn meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": REVISION,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "warden-it", "version": "1"}})
}

/// A stateless POST with these extra headers (name, value).
async fn post(agent: &Agent, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut builder = Request::post(&agent.url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    agent
        .send(
            builder
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("request"),
        )
        .await
}

/// A well-formed stateless `tools/call`.
async fn call(agent: &Agent, id: u64, tool: &str, extra: Value) -> Reply {
    let mut params = json!({"name": tool, "arguments": {}, "_meta": meta()});
    if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
        params.extend(extra.clone());
    }
    post(
        agent,
        &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}),
        &[
            ("mcp-protocol-version", REVISION),
            ("mcp-method", "tools/call"),
            ("mcp-name", tool),
        ],
    )
    .await
}

fn calls_seen(seen: &Seen) -> usize {
    seen.lock()
        .expect("lock")
        .iter()
        .filter(|(_, m)| m["method"] == "tools/call")
        .count()
}

#[tokio::test]
async fn stateless_requests_pass_with_headers_and_meta_and_without_a_session() {
    let (url, seen) = stateless_upstream().await;
    let warden = WardenBuilder::new(&url).start().await;
    let agent = Agent::new(&warden.url);
    let discover = json!({"jsonrpc": "2.0", "id": "d", "method": "server/discover",
        "params": {"_meta": meta()}});
    let reply = post(
        &agent,
        &discover,
        &[
            ("mcp-protocol-version", REVISION),
            ("mcp-method", "server/discover"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.json()["result"]["supportedVersions"][0], REVISION);
    assert!(reply.session().is_none(), "no session is minted");
    let (headers, body) = seen.lock().expect("lock")[0].clone();
    assert_eq!(body, discover, "the body reaches the upstream as sent");
    assert_eq!(headers["mcp-method"], "server/discover");
    assert_eq!(headers["mcp-protocol-version"], REVISION);
    assert!(headers.get("mcp-session-id").is_none());
}

#[tokio::test]
async fn a_header_that_disagrees_with_the_body_is_refused_before_the_upstream() {
    let (url, seen) = stateless_upstream().await;
    let warden = WardenBuilder::new(&url)
        .policy("version: 1\ndefault: allow\n")
        .start()
        .await;
    let agent = Agent::new(&warden.url);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "pay", "arguments": {}, "_meta": meta()}});
    let cases: [(&str, Vec<(&str, &str)>); 6] = [
        (
            "Mcp-Name names another tool than the body",
            vec![
                ("mcp-protocol-version", REVISION),
                ("mcp-method", "tools/call"),
                ("mcp-name", "lookup"),
            ],
        ),
        (
            "Mcp-Name is missing",
            vec![
                ("mcp-protocol-version", REVISION),
                ("mcp-method", "tools/call"),
            ],
        ),
        (
            "Mcp-Method is missing",
            vec![("mcp-protocol-version", REVISION), ("mcp-name", "pay")],
        ),
        (
            "Mcp-Method disagrees",
            vec![
                ("mcp-protocol-version", REVISION),
                ("mcp-method", "tools/list"),
                ("mcp-name", "pay"),
            ],
        ),
        (
            "MCP-Protocol-Version disagrees with _meta",
            vec![
                ("mcp-protocol-version", "2025-11-25"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "pay"),
            ],
        ),
        (
            "Mcp-Name sent twice",
            vec![
                ("mcp-protocol-version", REVISION),
                ("mcp-method", "tools/call"),
                ("mcp-name", "pay"),
                ("mcp-name", "lookup"),
            ],
        ),
    ];
    for (case, headers) in cases {
        let reply = post(&agent, &body, &headers).await;
        let message = assert_error(&reply, StatusCode::BAD_REQUEST, -32020);
        assert!(message.contains("header"), "{case}: {message}");
        if case == "Mcp-Name is missing" {
            assert!(
                message.contains("required on a stateless tools/call request"),
                "{message}"
            );
        }
        assert_eq!(reply.json()["id"], 1, "{case}");
    }
    assert_eq!(
        calls_seen(&seen),
        0,
        "no refused request reached the upstream"
    );

    // The spec's base64 form of the same name matches.
    let encoded = post(
        &agent,
        &body,
        &[
            ("mcp-protocol-version", REVISION),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?cGF5?="),
        ],
    )
    .await;
    assert_eq!(encoded.status, StatusCode::OK, "{:?}", encoded.body);
    assert_eq!(calls_seen(&seen), 1);
}

#[tokio::test]
async fn stateless_calls_and_lists_are_judged_by_the_policy() {
    let (url, seen) = stateless_upstream().await;
    let warden = WardenBuilder::new(&url).start().await;
    let agent = Agent::new(&warden.url);
    let refused = call(&agent, 1, "pay", json!({})).await;
    assert_refused(&refused, "pay", "not-read-only");
    assert_eq!(
        refused.json()["result"]["resultType"],
        "complete",
        "the revision requires resultType on every result, Warden's own too"
    );
    assert_refused(
        &call(&agent, 2, "nosuch", json!({})).await,
        "nosuch",
        "unknown-tool",
    );
    assert_eq!(
        calls_seen(&seen),
        0,
        "refused calls never reach the upstream"
    );
    let list = post(
        &agent,
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": meta()}}),
        &[
            ("mcp-protocol-version", REVISION),
            ("mcp-method", "tools/list"),
        ],
    )
    .await;
    let tools = list.json()["result"]["tools"].clone();
    assert_eq!(tools.as_array().map(Vec::len), Some(1), "{tools}");
    assert_eq!(tools[0]["name"], "lookup");
    // Warden's own catalogue fetch spoke the stateless revision too.
    let fetch = seen
        .lock()
        .expect("lock")
        .iter()
        .find(|(_, m)| {
            m["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("warden-catalogue"))
        })
        .cloned()
        .expect("Warden fetched the catalogue");
    assert_eq!(fetch.0["mcp-method"], "tools/list");
    assert_eq!(
        fetch.1["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
        REVISION
    );
}

#[tokio::test]
async fn an_input_required_result_and_its_retry_pass_intact_and_the_retry_is_judged_again() {
    let (url, seen) = stateless_upstream().await;
    let warden = WardenBuilder::new(&url).start().await;
    let agent = Agent::new(&warden.url);
    let first = call(&agent, 1, "lookup", json!({})).await;
    let result = &first.json()["result"];
    assert_eq!(result["resultType"], "input_required");
    assert_eq!(result["requestState"], "opaque-state-1");
    assert_eq!(
        result["inputRequests"]["confirm"]["method"],
        "elicitation/create"
    );

    let retry = call(
        &agent,
        2,
        "lookup",
        json!({"inputResponses": {"confirm": {"action": "accept", "content": {}}},
            "requestState": "opaque-state-1"}),
    )
    .await;
    assert_eq!(
        retry.json()["result"]["content"][0]["text"],
        "confirmed \"accept\" with \"opaque-state-1\""
    );
    let retried = seen
        .lock()
        .expect("lock")
        .iter()
        .rfind(|(_, m)| m["method"] == "tools/call")
        .cloned()
        .expect("retry reached upstream");
    assert_eq!(
        retried.1["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"],
        json!({"elicitation": {}}),
        "the client's capabilities pass as sent"
    );
    // A retry is a call like any other: a mutating tool's retry is refused.
    assert_refused(
        &call(&agent, 3, "pay", json!({"requestState": "opaque-state-1"})).await,
        "pay",
        "not-read-only",
    );
    let metrics = warden.running.warden.metrics.encode();
    assert!(metrics.contains("decision=\"allow\""), "{metrics}");
}

#[tokio::test]
async fn unsupported_versions_missing_meta_and_client_responses_are_clear_errors() {
    let (url, seen) = stateless_upstream().await;
    let warden = WardenBuilder::new(&url).start().await;
    let agent = Agent::new(&warden.url);
    let mut future = meta();
    future["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let reply = post(
        &agent,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": future}}),
        &[("mcp-protocol-version", "2099-01-01"), ("mcp-method", "server/discover")],
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, -32022);
    let data = &reply.json()["error"]["data"];
    assert_eq!(data["requested"], "2099-01-01");
    assert!(
        data["supported"]
            .as_array()
            .is_some_and(|v| v.contains(&json!(REVISION)) && v.contains(&json!("2025-11-25"))),
        "{data}"
    );

    let reply = post(
        &agent,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "server/discover", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": REVISION}}}),
        &[
            ("mcp-protocol-version", REVISION),
            ("mcp-method", "server/discover"),
        ],
    )
    .await;
    let message = assert_error(&reply, StatusCode::BAD_REQUEST, -32602);
    assert!(message.contains("clientCapabilities"), "{message}");

    let reply = post(
        &agent,
        &json!({"jsonrpc": "2.0", "id": 3, "result": {}}),
        &[("mcp-protocol-version", REVISION)],
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, -32600);
    assert!(
        seen.lock().expect("lock").is_empty(),
        "nothing reached the upstream"
    );

    // The stateless revision has no batches.
    let batch = json!([{"jsonrpc": "2.0", "id": 5, "method": "server/discover",
        "params": {"_meta": meta()}}]);
    let reply = post(&agent, &batch, &[("mcp-protocol-version", REVISION)]).await;
    let message = assert_error(&reply, StatusCode::BAD_REQUEST, -32600);
    assert!(message.contains("no batches"), "{message}");
    assert!(
        seen.lock().expect("lock").is_empty(),
        "nothing reached the upstream"
    );

    // Without a stateless marker, a sessionless request is still the
    // stateful revisions' missing session.
    let reply = Agent::new(&warden.url)
        .post(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}))
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, -32600);
}

#[tokio::test]
async fn stateless_requests_reach_a_stdio_server_on_a_channel_of_their_own() {
    let warden = WardenBuilder::with_upstream(UpstreamConfig::stdio(stdio_fixture(&[])))
        .start()
        .await;
    let agent = Agent::new(&warden.url);
    let reply = call(&agent, 41, "echo", json!({"arguments": {"text": "modern"}})).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let message = reply
        .sse_messages()
        .into_iter()
        .find(|m| m.get("result").is_some())
        .expect("a result");
    assert_eq!(message["id"], 41, "the agent's id comes back");
    assert_eq!(message["result"]["content"][0]["text"], "modern");
    assert_refused(
        &call(&agent, 42, "wipe", json!({})).await,
        "wipe",
        "not-read-only",
    );
}

#[tokio::test]
async fn a_list_changed_notice_on_a_listen_stream_refreshes_what_stateless_calls_are_judged_on() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures_util::StreamExt;

    let read_only = Arc::new(AtomicBool::new(false));
    let (notify, notices) = tokio::sync::mpsc::channel::<Bytes>(4);
    let notices = Arc::new(tokio::sync::Mutex::new(Some(notices)));
    let flag = read_only.clone();
    let (url, _) = upstream_fn(move |_, body| {
        let (flag, notices) = (flag.clone(), notices.clone());
        async move {
            let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let id = message["id"].clone();
            match message["method"].as_str().unwrap_or_default() {
                "subscriptions/listen" => {
                    let receiver = notices.lock().await.take().expect("one listen stream");
                    sse_response(receiver)
                }
                "tools/list" => result(
                    &id,
                    json!({"resultType": "complete", "tools": [{"name": "pay",
                        "inputSchema": {"type": "object"},
                        "annotations": {"readOnlyHint": flag.load(Ordering::SeqCst)}}]}),
                ),
                _ => result(
                    &id,
                    json!({"resultType": "complete", "content": [{"type": "text", "text": "paid"}]}),
                ),
            }
        }
    })
    .await;
    let warden = WardenBuilder::new(&url).start().await;
    let agent = Agent::new(&warden.url);
    assert_refused(
        &call(&agent, 1, "pay", json!({})).await,
        "pay",
        "not-read-only",
    );

    let mut events = listen(&warden.url, "listen-1").await;
    for notice in [
        json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
            "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": "listen-1"},
                "notifications": {"toolsListChanged": true}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
            "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": "listen-1"}}}),
    ] {
        if notice["method"] == "notifications/tools/list_changed" {
            // The upstream now says `pay` is read-only, and says so.
            read_only.store(true, Ordering::SeqCst);
        }
        notify
            .send(Bytes::from(format!("data: {notice}\n\n")))
            .await
            .expect("send");
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
            .await
            .expect("relayed within 5s")
            .expect("chunk")
            .expect("ok");
        let text = String::from_utf8_lossy(&chunk).into_owned();
        assert!(
            text.contains(notice["method"].as_str().expect("method")),
            "{text}"
        );
    }
    let reply = call(&agent, 2, "pay", json!({})).await;
    assert_eq!(reply.json()["result"]["content"][0]["text"], "paid");
}

#[tokio::test]
async fn closing_a_stateless_calls_stream_cancels_it_on_a_stdio_server() {
    let warden = WardenBuilder::with_upstream(UpstreamConfig::stdio(stdio_fixture(&[])))
        .start()
        .await;
    let agent = Agent::new(&warden.url);
    // The agent gives up on a slow call: its stream is closed, which is how
    // the stateless revision cancels on HTTP.
    let slow = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        call(&agent, 1, "slow", json!({})),
    )
    .await;
    assert!(slow.is_err(), "the slow call was still running");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let reply = call(&agent, 2, "cancelled", json!({})).await;
        let message = reply
            .sse_messages()
            .into_iter()
            .find(|m| m.get("result").is_some())
            .expect("a result");
        let text = message["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let ids: Vec<Value> = serde_json::from_str(&text).expect("json list");
        if ids.len() == 1 {
            assert!(
                ids[0].as_str().is_some_and(|id| id.starts_with("warden-")),
                "{ids:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no cancellation reached the server"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_listen_stream_on_a_stdio_server_carries_its_notices_under_the_agents_id() {
    let warden = WardenBuilder::with_upstream(UpstreamConfig::stdio(stdio_fixture(&[])))
        .start()
        .await;
    let mut body = listen(&warden.url, "mine-7").await;
    let seen = read_events(&mut body, 2).await;
    let notices: Vec<Value> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    assert_eq!(
        notices[0]["method"],
        "notifications/subscriptions/acknowledged"
    );
    assert_eq!(notices[1]["method"], "notifications/tools/list_changed");
    for notice in &notices {
        assert_eq!(
            notice["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "mine-7",
            "the server saw Warden's id, the agent gets its own back: {notice}"
        );
    }
}

/// Read a stream until it has carried `count` events (5 s at most); the
/// text read.
async fn read_events(
    body: &mut http_body_util::BodyDataStream<hyper::body::Incoming>,
    count: usize,
) -> String {
    use futures_util::StreamExt;

    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while seen.matches("data:").count() < count {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("{count} events within 5s: {seen}"))
            .expect("chunk")
            .expect("ok");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

/// Open a stateless `subscriptions/listen` stream (for tool list changes)
/// with request id `id`; its body, unread.
async fn listen(url: &str, id: &str) -> http_body_util::BodyDataStream<hyper::body::Incoming> {
    use http_body_util::BodyExt;

    let request = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("mcp-protocol-version", REVISION)
        .header("mcp-method", "subscriptions/listen")
        .body(Full::new(Bytes::from(
            json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen",
                "params": {"_meta": meta(), "notifications": {"toolsListChanged": true}}})
            .to_string(),
        )))
        .expect("request");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let stream = client.request(request).await.expect("listen stream");
    assert_eq!(stream.status(), StatusCode::OK);
    stream.into_body().into_data_stream()
}

#[tokio::test]
async fn an_unanswered_stateless_call_on_a_stdio_server_times_out() {
    let mut upstream = UpstreamConfig::stdio(stdio_fixture(&[]));
    upstream.reply_timeout = std::time::Duration::from_secs(1);
    let warden = WardenBuilder::with_upstream(upstream).start().await;
    let agent = Agent::new(&warden.url);
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        call(&agent, 5, "silent", json!({})),
    )
    .await
    .expect("the call ends by itself");
    let message = reply.response();
    assert_eq!(message["id"], 5, "{message}");
    assert_eq!(message["error"]["code"], -32002, "{message}");
    let reply = call(&agent, 6, "echo", json!({"arguments": {"text": "on"}})).await;
    assert_eq!(reply.response()["result"]["content"][0]["text"], "on");
}

#[tokio::test]
async fn a_listen_stream_outlives_the_reply_timeout() {
    use futures_util::StreamExt;

    let mut upstream = UpstreamConfig::stdio(stdio_fixture(&[]));
    upstream.reply_timeout = std::time::Duration::from_millis(500);
    let warden = WardenBuilder::with_upstream(upstream).start().await;
    let mut body = listen(&warden.url, "long-1").await;
    let seen = read_events(&mut body, 2).await;
    // A listen stream is answered only when it ends: past the reply
    // timeout it is still open, and carries no timeout error.
    let after = tokio::time::timeout(std::time::Duration::from_millis(1500), body.next()).await;
    assert!(
        after.is_err(),
        "the listen stream ended or carried more: {:?}",
        after.map(|c| c.map(|c| c.map(|c| String::from_utf8_lossy(&c).into_owned())))
    );
    assert!(!seen.contains("-32002"), "{seen}");
}

#[tokio::test]
async fn a_stateless_calls_own_agent_session_claim_must_be_valid_text() {
    let (url, _) = stateless_upstream().await;
    let warden = WardenBuilder::new(&url).start().await;
    let agent = Agent::new(&warden.url);
    let with_claim = |claim: Value| {
        let mut meta = meta();
        meta["warden/agentSession"] = claim;
        json!({"_meta": meta})
    };
    let reply = call(&agent, 1, "lookup", with_claim(json!("run-7"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    for claim in [
        json!(42),
        json!({"id": "run-7"}),
        json!(""),
        json!("x".repeat(129)),
    ] {
        let reply = call(&agent, 2, "lookup", with_claim(claim.clone())).await;
        let message = assert_error(&reply, StatusCode::BAD_REQUEST, -32600);
        assert!(
            message.contains("invalid agent session id"),
            "{claim}: {message}"
        );
    }
}

#[tokio::test]
async fn a_confirm_tier_stateless_call_asks_with_a_sealed_state_that_works_once_for_that_call() {
    let (url, seen) = stateless_upstream().await;
    let warden = WardenBuilder::new(&url)
        .policy("version: 1\ntools:\n  pay: confirm\n")
        .start()
        .await;
    let agent = Agent::new(&warden.url);
    let asked = call(&agent, 1, "pay", json!({"arguments": {"amount": 5}}))
        .await
        .json();
    let result = &asked["result"];
    assert_eq!(result["resultType"], "input_required", "{asked}");
    let request = &result["inputRequests"]["warden_confirm"];
    assert_eq!(request["method"], "elicitation/create");
    assert!(
        request["params"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'pay'") && m.contains("\"amount\": 5")),
        "{request}"
    );
    let state = result["requestState"].as_str().expect("state").to_owned();
    assert!(state.starts_with("warden1."));
    assert_eq!(calls_seen(&seen), 0, "asked before anything runs");

    let yes = json!({"warden_confirm": {"action": "accept", "content": {"confirm": true}}});
    // The state covers these arguments only, and cannot be altered.
    let other = call(
        &agent,
        2,
        "pay",
        json!({"arguments": {"amount": 6}, "inputResponses": yes, "requestState": state}),
    )
    .await;
    assert_refused(&other, "pay", "confirmation-invalid");
    let mut forged = state.clone();
    forged.pop();
    forged.push(if state.ends_with('A') { 'B' } else { 'A' });
    let altered = call(
        &agent,
        3,
        "pay",
        json!({"arguments": {"amount": 5}, "inputResponses": yes, "requestState": forged}),
    )
    .await;
    assert_refused(&altered, "pay", "confirmation-invalid");
    assert_eq!(calls_seen(&seen), 0);

    // Confirmed: runs, without Warden's state reaching the upstream.
    let ran = call(
        &agent,
        4,
        "pay",
        json!({"arguments": {"amount": 5}, "inputResponses": yes, "requestState": state}),
    )
    .await
    .json();
    assert!(ran["result"]["isError"].is_null(), "{ran}");
    assert_eq!(calls_seen(&seen), 1);
    let forwarded = seen
        .lock()
        .expect("lock")
        .iter()
        .rfind(|(_, m)| m["method"] == "tools/call")
        .cloned()
        .expect("forwarded");
    assert!(
        forwarded.1["params"].get("requestState").is_none(),
        "{}",
        forwarded.1
    );
    assert!(forwarded.1["params"].get("inputResponses").is_none());
    // Once only.
    let replayed = call(
        &agent,
        5,
        "pay",
        json!({"arguments": {"amount": 5}, "inputResponses": yes, "requestState": state}),
    )
    .await;
    assert_refused(&replayed, "pay", "confirmation-replayed");

    // Declined: an error result, nothing runs.
    let asked = call(&agent, 6, "pay", json!({"arguments": {"amount": 5}}))
        .await
        .json();
    let state = asked["result"]["requestState"]
        .as_str()
        .expect("state")
        .to_owned();
    let declined = call(
        &agent,
        7,
        "pay",
        json!({"arguments": {"amount": 5}, "requestState": state,
            "inputResponses": {"warden_confirm": {"action": "decline"}}}),
    )
    .await
    .json();
    assert_eq!(declined["result"]["isError"], true, "{declined}");
    let warden_said = &declined["result"]["structuredContent"]["warden"];
    assert_eq!(warden_said["decision"], "declined");
    assert_eq!(warden_said["reason"], "declined-by-user");
    assert_eq!(calls_seen(&seen), 1);

    // A client without elicitation is refused (the rule's fallback).
    let mut no_elicitation = meta();
    no_elicitation["io.modelcontextprotocol/clientCapabilities"] = json!({});
    let refused = call(
        &agent,
        8,
        "pay",
        json!({"arguments": {"amount": 5}, "_meta": no_elicitation}),
    )
    .await;
    assert_refused(&refused, "pay", "confirmation-required");
}

/// A stateless `tasks/*` request naming `task_id`.
async fn task_request(agent: &Agent, id: u64, method: &str, task_id: &str) -> Value {
    post(
        agent,
        &json!({"jsonrpc": "2.0", "id": id, "method": method,
            "params": {"taskId": task_id, "_meta": meta()}}),
        &[
            ("mcp-protocol-version", REVISION),
            ("mcp-method", method),
            ("mcp-name", task_id),
        ],
    )
    .await
    .json()
}

#[tokio::test]
async fn a_held_stateless_call_is_a_task_for_a_client_declaring_the_tasks_extension() {
    use crate::approvals::{GRACE, admin, approvals, staged};
    let (url, seen) = stateless_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&url)
        .policy("version: 1\ntools:\n  pay: approve\n")
        .approvals(approvals(tmp.path(), std::time::Duration::from_millis(200)))
        .start()
        .await;
    let agent = Agent::new(&warden.url);
    let mut with_tasks = meta();
    with_tasks["io.modelcontextprotocol/clientCapabilities"]["extensions"] =
        json!({"io.modelcontextprotocol/tasks": {}});
    let created = call(
        &agent,
        1,
        "pay",
        json!({"arguments": {"amount": 5}, "_meta": with_tasks}),
    )
    .await
    .json();
    let task = &created["result"];
    assert_eq!(task["resultType"], "task", "{created}");
    assert_eq!(task["status"], "working");
    assert!(
        task["ttlMs"].is_u64() && task["pollIntervalMs"].is_u64(),
        "{task}"
    );
    let task_id = task["taskId"].as_str().expect("task id").to_owned();
    let polled = task_request(&agent, 2, "tasks/get", &task_id).await;
    assert_eq!(polled["result"]["resultType"], "complete", "{polled}");
    assert_eq!(polled["result"]["status"], "working");
    assert_eq!(calls_seen(&seen), 0);

    let approval = staged(&warden, GRACE).await;
    let (status, _) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{approval}/approve"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let done = loop {
        let polled = task_request(&agent, 3, "tasks/get", &task_id).await;
        if polled["result"]["status"] != "working" {
            break polled;
        }
        assert!(tokio::time::Instant::now() < deadline, "never completed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(done["result"]["status"], "completed", "{done}");
    // The upstream (a 2026-07-28 server) asked its own question: that is
    // the call's result, inline.
    assert_eq!(
        done["result"]["result"]["resultType"], "input_required",
        "{done}"
    );
    assert_eq!(calls_seen(&seen), 1);
    // No tasks/result in the extension; cancelling an ended task is a no-op.
    let missing = task_request(&agent, 4, "tasks/result", &task_id).await;
    assert_eq!(missing["error"]["code"], -32601, "{missing}");
    let cancelled = task_request(&agent, 5, "tasks/cancel", &task_id).await;
    assert_eq!(cancelled["result"]["resultType"], "complete", "{cancelled}");

    // Without the extension declared, the same call is held the plain way.
    let pending = call(&agent, 6, "pay", json!({"arguments": {"amount": 7}}))
        .await
        .json();
    assert_eq!(
        pending["result"]["structuredContent"]["warden"]["reason"], "pending-approval",
        "{pending}"
    );
}

/// Replicas sharing `approvals.request_state_key` and one approval store:
/// a confirmation asked by one is answered on another, and the state is
/// accepted once across both; a replica without the key cannot open it.
#[tokio::test]
async fn replicas_sharing_a_request_state_key_accept_a_confirmation_once_between_them() {
    let (url, seen) = stateless_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let shared = |key: Option<&str>| {
        let mut settings =
            crate::approvals::approvals(tmp.path(), std::time::Duration::from_secs(1));
        settings.request_state_key = key.map(|k| {
            warden::credentials::SourceConfig::Inline(warden_upstream::credential::Secret::new(k))
        });
        settings
    };
    const KEY: &str = "4f1d0c8a9e2b7f6a5d3c1e0b9a8f7e6d5c4b3a2918f7e6d5";
    let mut replicas = Vec::new();
    for key in [Some(KEY), Some(KEY), None] {
        replicas.push(
            WardenBuilder::new(&url)
                .policy("version: 1\ntools:\n  pay: confirm\n")
                .approvals(shared(key))
                .start()
                .await,
        );
    }
    let on = |n: usize| Agent::new(&replicas[n].url);
    let asked = call(&on(0), 1, "pay", json!({"arguments": {"amount": 5}}))
        .await
        .json();
    let state = asked["result"]["requestState"]
        .as_str()
        .expect("state")
        .to_owned();
    let yes = json!({"warden_confirm": {"action": "accept", "content": {"confirm": true}}});
    let retry = json!({"arguments": {"amount": 5}, "inputResponses": yes, "requestState": state});

    // The replica without the key cannot open it.
    assert_refused(
        &call(&on(2), 2, "pay", retry.clone()).await,
        "pay",
        "confirmation-invalid",
    );
    // Answered on the other replica: confirmed, and it runs.
    let ran = call(&on(1), 3, "pay", retry.clone()).await.json();
    assert!(ran["result"]["isError"].is_null(), "{ran}");
    assert_eq!(calls_seen(&seen), 1);
    // Once: neither the asking replica nor the answering one takes it again.
    for n in [0, 1] {
        assert_refused(
            &call(&on(n), 4, "pay", retry.clone()).await,
            "pay",
            "confirmation-replayed",
        );
    }
    assert_eq!(calls_seen(&seen), 1);
}
