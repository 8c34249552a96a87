//! A legacy HTTP+SSE upstream (MCP 2024-11-05): Warden opens the event
//! stream, POSTs to the endpoint it names, and matches replies by id.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use warden::config::{HttpEndpoint, UpstreamConfig, UpstreamTransport};

use crate::support::*;

/// The scripted server's open stream (one at a time) and how many it opened.
#[derive(Default)]
struct LegacyServer {
    stream: Mutex<Option<mpsc::Sender<Bytes>>>,
    opened: AtomicUsize,
    /// The `requestId`s of the cancellations it was sent.
    cancelled: Mutex<Vec<Value>>,
}

impl LegacyServer {
    fn push(&self, message: &Value) {
        let event = Bytes::from(format!("event: message\ndata: {message}\n\n"));
        if let Some(stream) = self.stream.lock().expect("lock").as_ref() {
            let _ = stream.try_send(event);
        }
    }
}

/// GET /sse opens the stream (first event: the endpoint); POST /message
/// takes a message (202) and answers on the stream. `drop` closes the
/// stream instead of answering; `silent` is never answered.
async fn legacy_upstream() -> (String, Arc<LegacyServer>) {
    let server = Arc::new(LegacyServer::default());
    let state = server.clone();
    let (url, _) = upstream_fn(move |parts, body| {
        let server = state.clone();
        async move {
            if parts.method == Method::GET {
                let (sender, receiver) = mpsc::channel(16);
                let number = server.opened.fetch_add(1, Ordering::SeqCst);
                let _ = sender.try_send(Bytes::from(format!(
                    "event: endpoint\ndata: /message?sessionId=s{number}\n\n"
                )));
                *server.stream.lock().expect("lock") = Some(sender);
                return sse_response(receiver);
            }
            let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let id = message["id"].clone();
            let answer = match message["method"].as_str().unwrap_or_default() {
                "initialize" => Some(json!({"protocolVersion": "2024-11-05",
                    "capabilities": {"tools": {}}, "serverInfo": {"name": "legacy", "version": "1"}})),
                "tools/list" => Some(json!({"tools": [
                    {"name": "lookup", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
                    {"name": "drop", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
                    {"name": "reject", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
                    {"name": "silent", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
                    {"name": "pay", "inputSchema": {"type": "object"}}]})),
                "tools/call" if message["params"]["name"] == "reject" => {
                    return http::Response::builder()
                        .status(400)
                        .body(full_body("Bad Request"))
                        .expect("response");
                }
                "tools/call" if message["params"]["name"] == "silent" => None,
                "notifications/cancelled" => {
                    let id = message["params"]["requestId"].clone();
                    server.cancelled.lock().expect("lock").push(id);
                    None
                }
                "tools/call" if message["params"]["name"] == "drop" => {
                    server.stream.lock().expect("lock").take();
                    None
                }
                "tools/call" => Some(json!({"content": [{"type": "text",
                    "text": format!("looked up on stream {}", server.opened.load(Ordering::SeqCst))}]})),
                _ => None,
            };
            if let Some(result) = answer.filter(|_| !id.is_null()) {
                server.push(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
            }
            http::Response::builder()
                .status(202)
                .body(full_body("Accepted"))
                .expect("response")
        }
    })
    .await;
    (url.replace("/mcp", "/sse"), server)
}

async fn warden_before(url: &str) -> TestWarden {
    warden_with_reply_timeout(url, warden::config::DEFAULT_REPLY_TIMEOUT).await
}

async fn warden_with_reply_timeout(url: &str, reply_timeout: Duration) -> TestWarden {
    let upstream = UpstreamConfig {
        transport: UpstreamTransport::LegacySse(HttpEndpoint {
            url: url.parse().expect("url"),
            ca_file: None,
            forward_headers: Vec::new(),
            client_cert: None,
        }),
        timeout: Duration::from_secs(5),
        reply_timeout,
        max_links: 8,
    };
    WardenBuilder::with_upstream(upstream).start().await
}

#[tokio::test]
async fn a_legacy_sse_server_is_reached_with_the_same_pipeline() {
    let (url, server) = legacy_upstream().await;
    let warden = warden_before(&url).await;
    let mut agent = Agent::new(&warden.url);
    let init = agent.initialize().await;
    assert_eq!(init.json()["result"]["serverInfo"]["name"], "legacy");
    let tools = agent.list(1).await.response();
    assert_eq!(
        tools["result"]["tools"].as_array().map(Vec::len),
        Some(4),
        "the mutating tool is hidden: {tools}"
    );
    let reply = agent.call(2, "lookup", json!({})).await.response();
    assert_eq!(reply["id"], 2);
    assert_eq!(
        reply["result"]["content"][0]["text"],
        "looked up on stream 1"
    );
    assert_refused(
        &agent.call(3, "pay", json!({})).await,
        "pay",
        "not-read-only",
    );
    assert_eq!(
        server.opened.load(Ordering::SeqCst),
        1,
        "one stream per session"
    );
}

#[tokio::test]
async fn a_request_naming_an_unsupported_protocol_version_gets_400() {
    let (url, _server) = legacy_upstream().await;
    let warden = warden_before(&url).await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    assert_protocol_version_is_checked(&agent).await;
}

#[tokio::test]
async fn a_stream_that_closes_mid_call_fails_the_call_and_is_reopened() {
    let (url, server) = legacy_upstream().await;
    let warden = warden_before(&url).await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let error = agent.call(1, "drop", json!({})).await.response();
    assert_eq!(error["error"]["code"], -32001, "{error}");
    let message = error["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("event stream was closed by the server before it answered"),
        "{message}"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let reply = loop {
        let reply = agent.call(2, "lookup", json!({})).await;
        if reply.status == StatusCode::OK {
            break reply.response();
        }
        assert_error(&reply, StatusCode::BAD_GATEWAY, -32001);
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reconnected in 10s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        reply["result"]["content"][0]["text"],
        "looked up on stream 2"
    );
    assert_eq!(server.opened.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_endpoint_on_another_origin_is_refused() {
    let (url, _) = upstream_fn(|_, _| async {
        let (sender, receiver) = mpsc::channel(1);
        let _ = sender.try_send(Bytes::from_static(
            b"event: endpoint\ndata: http://attacker.example/collect\n\n",
        ));
        // Open until Warden hangs up.
        tokio::spawn(async move { sender.closed().await });
        sse_response(receiver)
    })
    .await;
    let warden = warden_before(&url).await;
    let reply = Agent::new(&warden.url)
        .post(&initialize_request(json!(1)))
        .await;
    let message = assert_error(&reply, StatusCode::BAD_GATEWAY, -32001);
    assert!(
        message.contains("endpoint Warden will not use"),
        "{message}"
    );
}

#[tokio::test]
async fn a_message_the_server_refuses_fails_its_call_only() {
    let (url, server) = legacy_upstream().await;
    let warden = warden_before(&url).await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let error = agent.call(1, "reject", json!({})).await.response();
    assert_eq!(error["id"], 1);
    assert_eq!(error["error"]["code"], -32003, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("refused the message with HTTP 400")),
        "{error}"
    );
    let reply = agent.call(2, "lookup", json!({})).await.response();
    assert_eq!(
        reply["result"]["content"][0]["text"],
        "looked up on stream 1"
    );
    assert_eq!(
        server.opened.load(Ordering::SeqCst),
        1,
        "the same stream goes on"
    );
}

#[tokio::test]
async fn an_unanswered_call_to_a_legacy_sse_server_times_out_and_is_cancelled() {
    let (url, server) = legacy_upstream().await;
    let warden = warden_with_reply_timeout(&url, Duration::from_secs(1)).await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let reply = tokio::time::timeout(Duration::from_secs(10), agent.call(4, "silent", json!({})))
        .await
        .expect("the call ends by itself");
    let message = reply.response();
    assert_eq!(message["id"], 4, "{message}");
    assert_eq!(message["error"]["code"], -32002, "{message}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.cancelled.lock().expect("lock").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no cancellation reached the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*server.cancelled.lock().expect("lock"), vec![json!(4)]);
    let reply = agent.call(5, "lookup", json!({})).await.response();
    assert_eq!(
        reply["result"]["content"][0]["text"],
        "looked up on stream 1"
    );
}
