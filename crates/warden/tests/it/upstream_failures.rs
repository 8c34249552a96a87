//! An upstream that is down, slow, or answers garbage gets the agent a clear
//! gateway error; Warden keeps serving everyone else and drains on shutdown.

use std::time::Duration;

use http::{Response, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_down_upstream_is_a_502_and_other_routes_keep_working() {
    // Bind then drop: nothing listens on that port any more.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dead_url = format!("http://{}/mcp", dead.local_addr().expect("addr"));
    drop(dead);
    let (live, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&dead_url)
        .route("/live", &live)
        .start()
        .await;

    let agent = Agent::new(&warden.url);
    let reply = agent.post(&initialize_request(json!("init-1"))).await;
    let message = assert_error(&reply, StatusCode::BAD_GATEWAY, -32001);
    assert_eq!(
        message,
        "Warden: the upstream MCP server for /mcp is unreachable or dropped the connection"
    );
    assert_eq!(
        reply.json()["id"],
        "init-1",
        "the error answers the request's id"
    );
    assert!(
        !message.contains("127.0.0.1"),
        "no upstream address leaks to the agent"
    );

    let mut other = Agent::new(&warden.url.replace("/mcp", "/live"));
    other.initialize().await;
    assert_eq!(
        other
            .call(1, "echo", json!({"message": "fine"}))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_slow_upstream_is_a_504() {
    let (upstream, _) = upstream_fn(|_parts, body| async move {
        if let Some(reply) = handshake(&body) {
            return reply;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        json_response(&json!({}))
    })
    .await;
    let warden = WardenBuilder::new(&upstream)
        .upstream_timeout(Duration::from_millis(300))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let reply = agent
        .post(&json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}))
        .await;
    let message = assert_error(&reply, StatusCode::GATEWAY_TIMEOUT, -32002);
    assert_eq!(
        message,
        "Warden: the upstream MCP server for /mcp did not answer within 0s"
    );
    assert_eq!(reply.json()["id"], 3);
}

#[tokio::test]
async fn garbage_where_warden_must_read_is_a_502() {
    let (upstream, _) = upstream_fn(|_parts, body| async move {
        if let Some(reply) = handshake(&body) {
            return reply;
        }
        Response::builder()
            .header("content-type", "application/json")
            .body(full_body("<html>proxy error</html>"))
            .expect("response")
    })
    .await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    // tools/list: Warden must read it to filter it.
    let message = assert_error(&agent.list(4).await, StatusCode::BAD_GATEWAY, -32003);
    assert!(
        message.contains("sent an invalid reply: tools/list reply is not valid JSON"),
        "{message}"
    );
    // tools/call of an unlisted tool: Warden must read the catalogue to decide.
    let message = assert_error(
        &agent.call(5, "anything", json!({})).await,
        StatusCode::BAD_GATEWAY,
        -32003,
    );
    assert!(message.contains("invalid reply"), "{message}");
    // Anything else is not Warden's to judge: relayed as the upstream sent it.
    let ping = agent
        .post(&json!({"jsonrpc": "2.0", "id": 6, "method": "ping"}))
        .await;
    assert_eq!(ping.status, StatusCode::OK);
    assert_eq!(ping.body.as_ref(), b"<html>proxy error</html>");
}

#[tokio::test]
async fn an_upstream_that_dies_mid_stream_ends_the_agent_stream() {
    let (upstream, _) = upstream_fn(|_parts, body| async move {
        if let Some(reply) = handshake(&body) {
            return reply;
        }
        // One event, then the upstream fails mid-stream.
        type Chunk =
            Result<hyper::body::Frame<bytes::Bytes>, Box<dyn std::error::Error + Send + Sync>>;
        let chunks = futures_util::stream::unfold(0, |step| async move {
            match step {
                0 => Some((
                    Ok(hyper::body::Frame::data(bytes::Bytes::from_static(
                        b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n",
                    ))) as Chunk,
                    1,
                )),
                1 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Some((Err("upstream crashed".into()), 2))
                }
                _ => None,
            }
        });
        use http_body_util::BodyExt;
        let mut response = Response::new(http_body_util::StreamBody::new(chunks).boxed_unsync());
        response
            .headers_mut()
            .insert("content-type", "text/event-stream".parse().expect("header"));
        response
    })
    .await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let request = agent
        .post_request("")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            json!({"jsonrpc": "2.0", "id": 1, "method": "resources/list"}).to_string(),
        )))
        .expect("request");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .expect("head in time")
        .expect("head");
    use http_body_util::BodyExt;
    let outcome = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
        .await
        .expect("the agent's stream ends instead of hanging");
    assert!(
        outcome.is_err(),
        "a truncated upstream stream is not passed off as complete"
    );
    // And Warden is fine.
    assert_eq!(
        agent
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/x"}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn shutdown_drains_in_flight_calls() {
    let (upstream, _) = upstream_fn(|_parts, body| async move {
        if let Some(reply) = handshake(&body) {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        json_response(&json!({"jsonrpc": "2.0", "id": id_of(&body), "result": {}}))
    })
    .await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let in_flight = tokio::spawn({
        let agent = agent.clone();
        async move {
            agent
                .post(&json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = warden.running.mcp_addr;
    warden.running.shutdown().await;
    let reply = in_flight.await.expect("task");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["id"], 9);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
