//! Every bad input gets a clear error, and Warden keeps serving.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

async fn warden_with_session() -> (TestWarden, Agent) {
    let (upstream, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    (warden, agent)
}

#[tokio::test]
async fn malformed_json_is_a_parse_error() {
    let (_warden, agent) = warden_with_session().await;
    for body in [
        "{",
        "not json",
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"} {"#,
        "",
    ] {
        let message = assert_error(&agent.post_raw(body).await, StatusCode::BAD_REQUEST, -32700);
        assert!(
            message.starts_with("Warden: malformed JSON"),
            "{body}: {message}"
        );
    }
    // ...and the session still works.
    assert_eq!(
        agent
            .call(9, "echo", json!({"message": "still here"}))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn json_that_is_not_json_rpc_is_an_invalid_request() {
    let (_warden, agent) = warden_with_session().await;
    for (body, fragment) in [
        ("[]", "empty batch"),
        ("42", "a message must be a JSON object"),
        (r#"{"id":1,"method":"ping"}"#, "\"jsonrpc\" must be \"2.0\""),
        (
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            "\"id\" must be a string or an integer",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            "tools/call needs \"params\"",
        ),
    ] {
        let message = assert_error(&agent.post_raw(body).await, StatusCode::BAD_REQUEST, -32600);
        assert!(message.contains(fragment), "{body}: {message}");
    }
}

#[tokio::test]
async fn wrong_content_type_accept_or_encoding_are_refused() {
    let (_warden, agent) = warden_with_session().await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let with = |name: &str, value: &str| {
        let mut request = agent
            .post_request(body.clone())
            .body(Full::new(Bytes::from(body.clone())))
            .expect("request");
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
        request
    };
    let message = assert_error(
        &agent.send(with("content-type", "text/plain")).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        -32600,
    );
    assert!(
        message.contains("Content-Type must be application/json"),
        "{message}"
    );
    assert_error(
        &agent
            .send(with("content-type", "application/json; charset=utf-16"))
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        -32600,
    );
    let message = assert_error(
        &agent.send(with("accept", "application/json")).await,
        StatusCode::NOT_ACCEPTABLE,
        -32600,
    );
    assert!(
        message.contains("Accept must include application/json and text/event-stream"),
        "{message}"
    );
    let message = assert_error(
        &agent.send(with("content-encoding", "gzip")).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        -32600,
    );
    assert!(
        message.contains("Content-Encoding gzip is not supported"),
        "{message}"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_and_a_one_mebibyte_body_passes() {
    let (upstream, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .limits(|l| l.max_body = 2 << 20)
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let big = "x".repeat(1 << 20);
    let echoed = agent.call(1, "echo", json!({"message": big})).await;
    assert_eq!(echoed.status, StatusCode::OK);
    assert_eq!(
        echoed.json()["result"]["content"][0]["text"]
            .as_str()
            .map(str::len),
        Some(1 << 20)
    );
    let huge = "x".repeat(3 << 20);
    let message = assert_error(
        &agent.call(2, "echo", json!({"message": huge})).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        -32600,
    );
    assert!(
        message.contains("exceeds the limit of 2097152 bytes"),
        "{message}"
    );
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused() {
    let (upstream, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .limits(|l| l.max_body = 1024)
        .start()
        .await;
    let mut stream = tokio::net::TcpStream::connect(warden.running.mcp_addr)
        .await
        .expect("connect");
    let chunk = "a".repeat(2000);
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: {ACCEPT_BOTH}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut response))
        .await
        .expect("answered")
        .expect("read");
    let text = String::from_utf8_lossy(&response[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("exceeds the limit of 1024 bytes"), "{text}");
}

#[tokio::test]
async fn a_slow_body_times_out_with_408() {
    let (upstream, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .limits(|l| l.body_timeout = Duration::from_millis(300))
        .start()
        .await;
    let mut stream = tokio::net::TcpStream::connect(warden.running.mcp_addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: {ACCEPT_BOTH}\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\""
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut response))
        .await
        .expect("answered")
        .expect("read");
    let text = String::from_utf8_lossy(&response[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.contains("did not arrive within the body timeout"),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_that_never_sends_headers_is_disconnected() {
    let (upstream, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .limits(|l| l.header_timeout = Duration::from_millis(300))
        .start()
        .await;
    let mut stream = tokio::net::TcpStream::connect(warden.running.mcp_addr)
        .await
        .expect("connect");
    stream
        .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("Warden closed the connection within 5s");
    // Closed (0 bytes) or answered 408 and closed: either way, not held open.
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => assert!(
            String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 408"),
            "{:?}",
            &buffer[..n]
        ),
    }
}

#[tokio::test]
async fn sessions_missing_unknown_and_ended() {
    let (warden, mut agent) = warden_with_session().await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});

    let anonymous = Agent::new(&warden.url);
    let message = assert_error(
        &anonymous.post(&ping).await,
        StatusCode::BAD_REQUEST,
        -32600,
    );
    assert!(message.contains("missing Mcp-Session-Id"), "{message}");

    let mut stranger = Agent::new(&warden.url);
    stranger.session = Some("00000000000000000000000000000000".into());
    let message = assert_error(&stranger.post(&ping).await, StatusCode::NOT_FOUND, -32600);
    assert!(message.contains("unknown or expired session"), "{message}");

    let ended = agent
        .send(
            Request::delete(&warden.url)
                .header("mcp-session-id", agent.session.clone().expect("session"))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
    assert_eq!(ended.status, StatusCode::OK);
    assert_error(&agent.post(&ping).await, StatusCode::NOT_FOUND, -32600);
    // A new initialize starts afresh.
    agent.session = None;
    agent.initialize().await;
    assert_eq!(agent.post(&ping).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_paths_methods_and_origins() {
    let (warden, agent) = warden_with_session().await;
    let mut elsewhere = agent.clone();
    elsewhere.url = warden.url.replace("/mcp", "/nope");
    let message = assert_error(
        &elsewhere
            .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            .await,
        StatusCode::NOT_FOUND,
        -32600,
    );
    assert!(message.contains("no MCP route at /nope"), "{message}");

    let put = agent
        .send(
            Request::put(&warden.url)
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
    assert_error(&put, StatusCode::METHOD_NOT_ALLOWED, -32600);
    assert_eq!(
        put.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, POST, DELETE")
    );

    let refused = ping_with(&agent, "origin", "https://evil.example").await;
    let message = assert_error(&refused, StatusCode::FORBIDDEN, -32600);
    assert!(
        message.contains("Origin https://evil.example is not allowed"),
        "{message}"
    );
}

#[tokio::test]
async fn a_listed_origin_is_allowed() {
    let (upstream, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .allowed_origin("https://app.example.com")
        .start()
        .await;
    let agent = Agent::new(&warden.url);
    let mut request = agent
        .post_request("")
        .body(Full::new(Bytes::from(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).to_string(),
        )))
        .expect("request");
    request
        .headers_mut()
        .insert("origin", "https://app.example.com".parse().expect("origin"));
    assert_eq!(agent.send(request).await.status, StatusCode::OK);
}

/// A ping with `value` as its `name` header (set, not added).
async fn ping_with(agent: &Agent, name: &'static str, value: &str) -> Reply {
    let mut request = agent
        .post_request("")
        .body(Full::new(Bytes::from(
            json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string(),
        )))
        .expect("request");
    request
        .headers_mut()
        .insert(name, value.parse().expect("header value"));
    agent.send(request).await
}

async fn ping_with_host(agent: &Agent, host: &str) -> Reply {
    ping_with(agent, "host", host).await
}

#[tokio::test]
async fn a_loopback_listener_refuses_a_host_it_does_not_answer_to() {
    // A DNS-rebinding page reaches the loopback listener under its own
    // name; Warden replaces Host on the way out, so only it can tell.
    let (warden, agent) = warden_with_session().await;
    let port = warden
        .url
        .rsplit(':')
        .next()
        .expect("port")
        .split('/')
        .next()
        .expect("port");
    let refused = ping_with_host(&agent, &format!("evil.example:{port}")).await;
    let message = assert_error(&refused, StatusCode::FORBIDDEN, -32600);
    assert!(
        message.contains(&format!("Host evil.example:{port} is not allowed")),
        "{message}"
    );
    for ok in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let reply = ping_with_host(&agent, &ok).await;
        assert_eq!(reply.status, StatusCode::OK, "{ok}: {reply:?}");
    }
}

#[tokio::test]
async fn listed_hosts_replace_the_loopback_names() {
    let (upstream, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .allowed_hosts(&["mcp.example.com"])
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    let refused = agent
        .send(
            agent
                .post_request("")
                .body(Full::new(Bytes::from(
                    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).to_string(),
                )))
                .expect("request"),
        )
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, -32600);
    // The listed name passes the Host check (and meets the next one: this
    // session was never opened).
    agent.session = Some("none".into());
    let reply = ping_with_host(&agent, "mcp.example.com:8443").await;
    assert_error(&reply, StatusCode::NOT_FOUND, -32600);
}

#[tokio::test]
async fn get_needs_an_event_stream_accept_and_a_session() {
    let (warden, agent) = warden_with_session().await;
    let get = |accept: &str, session: Option<&str>| {
        let mut builder = Request::get(&warden.url).header("accept", accept);
        if let Some(session) = session {
            builder = builder.header("mcp-session-id", session);
        }
        builder.body(Full::new(Bytes::new())).expect("request")
    };
    assert_error(
        &agent
            .send(get("application/json", agent.session.as_deref()))
            .await,
        StatusCode::NOT_ACCEPTABLE,
        -32600,
    );
    assert_error(
        &agent.send(get("text/event-stream", None)).await,
        StatusCode::BAD_REQUEST,
        -32600,
    );
    assert_error(
        &agent.send(get("text/event-stream", Some("feedface"))).await,
        StatusCode::NOT_FOUND,
        -32600,
    );
    // The demo server has no GET stream: its 405 is relayed as is.
    assert_eq!(
        agent
            .send(get("text/event-stream", agent.session.as_deref()))
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn at_the_session_limit_the_least_recently_used_session_makes_room() {
    let (upstream, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .limits(|l| l.max_sessions = 2)
        .start()
        .await;
    let mut oldest = Agent::new(&warden.url);
    oldest.initialize().await;
    let mut recent = Agent::new(&warden.url);
    recent.initialize().await;
    let mut third = Agent::new(&warden.url);
    third.initialize().await;
    assert_eq!(warden.running.warden.sessions.len(), 2);
    // The oldest agent must start over; the others carry on.
    let message = assert_error(&oldest.list(1).await, StatusCode::NOT_FOUND, -32600);
    assert!(message.contains("unknown or expired session"), "{message}");
    assert_eq!(recent.list(2).await.status, StatusCode::OK);
    assert_eq!(third.list(3).await.status, StatusCode::OK);
    let metrics = warden.running.warden.metrics.encode();
    assert!(
        metrics.contains("warden_sessions_evicted_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn idle_sessions_are_ended() {
    let (upstream, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .limits(|l| l.session_idle = Duration::from_millis(200))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    assert_eq!(warden.running.warden.sessions.len(), 1);
    // The sweeper runs every 100 ms at this idle limit.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while warden.running.warden.sessions.len() == 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(warden.running.warden.sessions.len(), 0);
    assert_error(&agent.list(1).await, StatusCode::NOT_FOUND, -32600);
}
