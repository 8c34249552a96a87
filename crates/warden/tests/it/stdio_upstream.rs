//! A stdio upstream: Warden starts the server as a child process and
//! reaches it through the same proxy and pipeline as an HTTP one.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use warden::config::{ChildSharing, UpstreamConfig};

use crate::support::*;

async fn warden_on(args: &[&str], sharing: ChildSharing) -> TestWarden {
    let mut command = stdio_fixture(args);
    command.sharing = sharing;
    WardenBuilder::with_upstream(UpstreamConfig::stdio(command))
        .upstream_timeout(Duration::from_secs(10))
        .start()
        .await
}

async fn agent_for(warden: &TestWarden) -> Agent {
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    agent
}

/// The text of a tool result (JSON or the response event of a stream).
fn result_text(reply: &Reply) -> String {
    let message = reply.response();
    message["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no result text: {message}"))
        .to_owned()
}

async fn pid(agent: &Agent, id: u64) -> String {
    result_text(&agent.call(id, "pid", json!({})).await)
}

#[tokio::test]
async fn list_call_and_progress_reach_a_stdio_server_through_the_pipeline() {
    let warden = warden_on(&[], ChildSharing::PerSession).await;
    let agent = agent_for(&warden).await;
    let tools = agent.list(1).await.response();
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"progress"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"wipe"),
        "a mutating tool is hidden by the default policy: {names:?}"
    );
    assert_refused(
        &agent.call(2, "wipe", json!({})).await,
        "wipe",
        "not-read-only",
    );
    assert_eq!(
        result_text(&agent.call(3, "echo", json!({"text": "hi"})).await),
        "hi"
    );

    let reply = agent
        .post(
            &json!({"jsonrpc": "2.0", "id": "p-1", "method": "tools/call", "params": {
            "name": "progress", "arguments": {}, "_meta": {"progressToken": "tok-9"}}}),
        )
        .await;
    let messages = reply.sse_messages();
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 2, "{messages:?}");
    assert!(
        progress
            .iter()
            .all(|m| m["params"]["progressToken"] == "tok-9")
    );
    let last = messages.last().expect("messages");
    assert_eq!(last["id"], "p-1");
    assert_eq!(last["result"]["content"][0]["text"], "progress done");
}

#[tokio::test]
async fn a_request_naming_an_unsupported_protocol_version_gets_400() {
    for sharing in [ChildSharing::PerSession, ChildSharing::Shared] {
        let warden = warden_on(&[], sharing).await;
        let agent = agent_for(&warden).await;
        assert_protocol_version_is_checked(&agent).await;
    }
}

#[tokio::test]
async fn a_reply_stream_can_be_resumed_with_last_event_id() {
    let warden = warden_on(&[], ChildSharing::PerSession).await;
    let agent = agent_for(&warden).await;
    let call = json!({"jsonrpc": "2.0", "id": "r-1", "method": "tools/call", "params": {
        "name": "progress", "arguments": {}, "_meta": {"progressToken": "tok-r"}}});
    let events = agent.post(&call).await.sse_events_with_ids();
    assert_eq!(
        events.len(),
        3,
        "two progress notifications and the result: {events:?}"
    );
    let ids: Vec<&str> = events
        .iter()
        .map(|(id, _)| id.as_deref().expect("every event has an id"))
        .collect();
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "ids are unique: {ids:?}");
    // The agent saw the first event, then lost the connection: it resumes
    // after it and gets exactly the rest, the result included.
    let resumed = agent.resume(ids[0]).await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert_eq!(resumed.sse_events_with_ids(), events[1..].to_vec());
    // After the last one there is nothing more, and the stream ends.
    let after_last = agent.resume(ids[2]).await;
    assert_eq!(after_last.sse_events_with_ids(), Vec::new());
    // Another session cannot resume this one's stream.
    let other = agent_for(&warden).await;
    let foreign = tokio::time::timeout(Duration::from_millis(500), other.resume(ids[0])).await;
    if let Ok(reply) = foreign {
        assert!(
            reply.sse_events_with_ids().is_empty(),
            "another session's events: {reply:?}"
        );
    }
}

#[tokio::test]
async fn a_reply_larger_than_the_replay_log_still_reaches_the_agent() {
    // The log keeps 1 MiB per session for resumption; live delivery does
    // not depend on it.
    let warden = warden_on(&[], ChildSharing::PerSession).await;
    let agent = agent_for(&warden).await;
    let text = "x".repeat(3 << 19);
    let reply = agent.call(1, "echo", json!({"text": text})).await;
    assert_eq!(result_text(&reply).len(), text.len());
}

#[tokio::test]
async fn a_reply_the_server_sends_after_the_agent_hung_up_is_kept_for_resumption() {
    let warden = warden_on(&[], ChildSharing::PerSession).await;
    let agent = agent_for(&warden).await;
    // `slow` with a progress token sends a progress notice at once and
    // its result 5 s later. The agent reads the notice (and its id), then
    // hangs up, before the result exists.
    let call = json!({"jsonrpc": "2.0", "id": "s-1", "method": "tools/call", "params": {
        "name": "slow", "arguments": {}, "_meta": {"progressToken": "tok-s"}}});
    let request = agent
        .post_request(call.to_string())
        .body(Full::new(Bytes::from(call.to_string())))
        .expect("request");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let response = client.request(request).await.expect("response head");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the progress notice within 10 s")
            .expect("a frame")
            .expect("ok");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(seen.contains("notifications/progress"), "{seen}");
    let id = seen
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .expect("the notice has an id")
        .trim()
        .to_owned();
    drop(body);
    drop(client);
    // Resumed after the notice: the result, which came after the hang-up.
    let resumed = agent.resume(&id).await;
    let messages: Vec<Value> = resumed
        .sse_events_with_ids()
        .into_iter()
        .map(|(_, message)| message)
        .collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["id"], "s-1");
    assert_eq!(messages[0]["result"]["content"][0]["text"], "slow done");
}

#[tokio::test]
async fn a_server_request_reaches_the_agent_and_its_answer_reaches_the_server() {
    let warden = warden_on(&[], ChildSharing::PerSession).await;
    let agent = agent_for(&warden).await;
    let mut events = agent.open_get_stream().await.into_data_stream();

    let caller = agent.clone();
    let call = tokio::spawn(async move { caller.call(7, "ask", json!({})).await });
    let chunk = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("a server request within 10s")
        .expect("chunk")
        .expect("ok");
    let text = String::from_utf8_lossy(&chunk).into_owned();
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .expect("an event");
    let request: Value = serde_json::from_str(data.trim()).expect("json");
    assert_eq!(request["method"], "sampling/createMessage");
    let answered = agent
        .post(&json!({"jsonrpc": "2.0", "id": request["id"], "result": {
            "role": "assistant", "model": "test", "content": {"type": "text", "text": "pong"}}}))
        .await;
    assert_eq!(answered.status, StatusCode::ACCEPTED);
    let reply = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("call ends")
        .expect("task");
    assert_eq!(result_text(&reply), "client said: pong");
}

#[tokio::test]
async fn the_child_gets_only_the_environment_the_config_names() {
    let mut command = stdio_fixture(&[]);
    command.env.push(("NAMED_IN_CONFIG".into(), "yes".into()));
    let warden = WardenBuilder::with_upstream(UpstreamConfig::stdio(command))
        .start()
        .await;
    let agent = agent_for(&warden).await;
    let names: Vec<String> =
        serde_json::from_str(&result_text(&agent.call(1, "env", json!({})).await)).expect("json");
    assert_eq!(names, vec!["LC_ALL", "NAMED_IN_CONFIG", "PATH"]);
    assert!(
        std::env::var_os("HOME").is_some() || std::env::var_os("CARGO").is_some(),
        "the test itself runs with more variables than the child got"
    );
}

#[tokio::test]
async fn a_child_that_crashes_mid_call_fails_that_call_clearly_and_is_restarted() {
    let warden = warden_on(&[], ChildSharing::PerSession).await;
    let agent = agent_for(&warden).await;
    let first = pid(&agent, 1).await;

    let reply = agent.call(2, "crash", json!({})).await;
    let error = reply.response();
    assert_eq!(error["id"], 2);
    assert_eq!(error["error"]["code"], -32001, "{error}");
    let message = error["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("exited") && message.contains("before it answered"),
        "{message}"
    );

    // Restarted after a short backoff, with the session's initialize
    // replayed: the same agent session goes on without a new handshake.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        let reply = agent.call(3, "pid", json!({})).await;
        if reply.status == StatusCode::OK {
            break result_text(&reply);
        }
        let message = assert_error(&reply, StatusCode::BAD_GATEWAY, -32001);
        assert!(message.contains("Warden restarts it"), "{message}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "not restarted in 10s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(first, second, "a new process serves the session");
    let metrics = warden.running.warden.metrics.encode();
    assert!(
        metrics.contains(r#"warden_upstream_link_events_total{route="/mcp",event="closed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"warden_upstream_links{route="/mcp"} 1"#),
        "{metrics}"
    );
    assert_eq!(
        result_text(&agent.call(4, "echo", json!({"text": "back"})).await),
        "back"
    );
}

#[tokio::test]
async fn garbage_on_stdout_fails_the_call_in_flight_and_the_child_keeps_serving() {
    let warden = warden_on(&["--banner"], ChildSharing::PerSession).await;
    // The banner before initialize is logged and skipped: nothing was in flight.
    let agent = agent_for(&warden).await;
    let before = pid(&agent, 1).await;
    let error = agent.call(2, "garbage", json!({})).await.response();
    assert_eq!(error["error"]["code"], -32003, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a JSON-RPC message")),
        "{error}"
    );
    assert!(
        !error.to_string().contains("this is not JSON-RPC"),
        "what the child printed stays in the log"
    );
    assert_eq!(pid(&agent, 3).await, before, "the same child goes on");
}

#[tokio::test]
async fn a_server_that_cannot_start_or_exits_at_once_is_a_clear_502_and_warden_goes_on() {
    let mut missing = stdio_fixture(&[]);
    missing.program = "/nonexistent/mcp-server".into();
    let warden = WardenBuilder::with_upstream(UpstreamConfig::stdio(missing))
        .route("/other", &demo_upstream().await.0)
        .start()
        .await;
    let reply = Agent::new(&warden.url)
        .post(&initialize_request(json!(1)))
        .await;
    let message = assert_error(&reply, StatusCode::BAD_GATEWAY, -32001);
    assert!(message.contains("could not be started"), "{message}");
    let metrics = warden.running.warden.metrics.encode();
    assert!(
        metrics
            .contains(r#"warden_upstream_link_events_total{route="/mcp",event="start_failed"} 1"#),
        "{metrics}"
    );
    let mut other = Agent::new(&warden.url.replace("/mcp", "/other"));
    other.initialize().await;

    let warden = warden_on(&["--exit-at-start"], ChildSharing::PerSession).await;
    // Every attempt names the exit, however the exit races the write.
    for attempt in 0..4 {
        let reply = Agent::new(&warden.url)
            .post(&initialize_request(json!(attempt)))
            .await;
        let message = assert_error(&reply, StatusCode::BAD_GATEWAY, -32001);
        assert!(
            message.contains("exited (exit status: 3)") && message.contains("before it answered"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn sessions_get_a_child_each_by_default_and_delete_stops_it() {
    let warden = warden_on(&[], ChildSharing::PerSession).await;
    let (a, b) = (agent_for(&warden).await, agent_for(&warden).await);
    let (pid_a, pid_b) = (pid(&a, 1).await, pid(&b, 1).await);
    assert_ne!(pid_a, pid_b);

    let delete = Request::delete(&warden.url)
        .header("mcp-session-id", a.session.clone().expect("session"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(a.send(delete).await.status, StatusCode::OK);
    let proc = format!("/proc/{pid_a}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&proc).exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "child {pid_a} still running 5s after DELETE"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        pid(&b, 2).await,
        pid_b,
        "the other session's child is untouched"
    );
}

#[tokio::test]
async fn a_shared_child_serves_every_session_without_mixing_their_ids() {
    let warden = warden_on(&[], ChildSharing::Shared).await;
    let (a, b) = (agent_for(&warden).await, agent_for(&warden).await);
    assert_eq!(pid(&a, 1).await, pid(&b, 1).await, "one child for both");

    // The same id and progress token in flight from both sessions at once.
    let call = |agent: &Agent, text: &str| {
        let agent = agent.clone();
        let text = text.to_owned();
        async move {
            agent
                .post(
                    &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
                    "name": "echo", "arguments": {"text": text}, "_meta": {"progressToken": 1}}}),
                )
                .await
        }
    };
    let (reply_a, reply_b) = tokio::join!(call(&a, "from a"), call(&b, "from b"));
    let (reply_a, reply_b) = (reply_a.response(), reply_b.response());
    assert_eq!(reply_a["id"], 5);
    assert_eq!(reply_a["result"]["content"][0]["text"], "from a");
    assert_eq!(reply_b["id"], 5);
    assert_eq!(reply_b["result"]["content"][0]["text"], "from b");

    let progress = a
        .post(
            &json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {
            "name": "progress", "arguments": {}, "_meta": {"progressToken": "mine"}}}),
        )
        .await
        .sse_messages();
    assert!(
        progress
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .all(|m| m["params"]["progressToken"] == "mine"),
        "{progress:?}"
    );

    // Ending one session leaves the shared child to the other.
    let delete = Request::delete(&warden.url)
        .header("mcp-session-id", a.session.clone().expect("session"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(a.send(delete).await.status, StatusCode::OK);
    assert_eq!(
        result_text(&b.call(7, "echo", json!({"text": "still here"})).await),
        "still here"
    );
}

#[tokio::test]
async fn children_are_bounded_by_max_links_with_a_clear_503() {
    let mut upstream = UpstreamConfig::stdio(stdio_fixture(&[]));
    upstream.max_links = 1;
    let warden = WardenBuilder::with_upstream(upstream).start().await;
    let first = agent_for(&warden).await;
    let reply = Agent::new(&warden.url)
        .post(&initialize_request(json!(1)))
        .await;
    let message = assert_error(&reply, StatusCode::SERVICE_UNAVAILABLE, -32001);
    assert!(message.contains("max_links"), "{message}");

    let delete = Request::delete(&warden.url)
        .header("mcp-session-id", first.session.clone().expect("session"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(first.send(delete).await.status, StatusCode::OK);
    let next = agent_for(&warden).await;
    assert_eq!(
        result_text(&next.call(1, "echo", json!({"text": "room again"})).await),
        "room again"
    );
}

#[tokio::test]
async fn a_shared_child_cannot_ask_one_session_and_hear_from_another() {
    let warden = warden_on(&[], ChildSharing::Shared).await;
    let (a, b) = (agent_for(&warden).await, agent_for(&warden).await);
    // B forges answers to requests the server might have asked A.
    for n in 0..8 {
        let forged = b
            .post(
                &json!({"jsonrpc": "2.0", "id": format!("ask-\"warden-{n}\""),
                "result": {"role": "assistant", "model": "x",
                    "content": {"type": "text", "text": "forged by b"}}}),
            )
            .await;
        assert_eq!(forged.status, StatusCode::ACCEPTED);
    }
    // A shared server cannot ask any client anything: Warden refuses its
    // request rather than guess which session it is for.
    assert_eq!(
        result_text(&a.call(9, "ask", json!({})).await),
        "client said: no answer"
    );
}

#[tokio::test]
async fn an_initialize_the_agent_gives_up_on_leaves_no_child_behind() {
    let warden = warden_on(&["--silent-initialize"], ChildSharing::PerSession).await;
    for attempt in 0..3 {
        let agent = Agent::new(&warden.url);
        let gave_up = tokio::time::timeout(
            Duration::from_millis(300),
            agent.post(&initialize_request(json!(attempt))),
        )
        .await;
        assert!(gave_up.is_err(), "the server never answers initialize");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = warden.running.warden.metrics.encode();
        if metrics.contains(r#"warden_upstream_links{route="/mcp"} 0"#) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "children still running: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_crash_that_leaves_a_grandchild_holding_stdout_is_still_a_crash() {
    let warden = warden_on(&["--grandchild"], ChildSharing::PerSession).await;
    let agent = agent_for(&warden).await;
    let grandchild = result_text(&agent.call(1, "grandchild", json!({})).await);
    assert_ne!(grandchild, "0");
    let error = agent.call(2, "crash", json!({})).await.response();
    assert_eq!(error["error"]["code"], -32001, "{error}");
    let proc = format!("/proc/{grandchild}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("{proc}/stat")).is_ok_and(|stat| !stat.contains(") Z ")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the grandchild {grandchild} outlived its group"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = agent.call(3, "echo", json!({"text": "restarted"})).await;
        if reply.status == StatusCode::OK {
            assert_eq!(result_text(&reply), "restarted");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not restarted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A call to `silent` (never answered) ends with a timeout error within
/// `reply_timeout`, the server is told to stop working on it, and the
/// session goes on.
async fn assert_unanswered_call_times_out(sharing: ChildSharing) {
    let mut command = stdio_fixture(&[]);
    command.sharing = sharing;
    let warden = WardenBuilder::with_upstream(UpstreamConfig::stdio(command))
        .reply_timeout(Duration::from_secs(1))
        .start()
        .await;
    let agent = agent_for(&warden).await;
    let started = std::time::Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(10), agent.call(7, "silent", json!({})))
        .await
        .expect("the call ends by itself");
    let waited = started.elapsed();
    let message = reply.response();
    assert_eq!(message["id"], 7, "{message}");
    assert_eq!(message["error"]["code"], -32002, "{message}");
    let text = message["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains("did not answer within 1s"), "{text}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "ended after {waited:?}"
    );
    // The server heard that Warden gave up on it.
    let cancelled: Vec<Value> =
        serde_json::from_str(&result_text(&agent.call(8, "cancelled", json!({})).await))
            .expect("a JSON list");
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    // The server's own id for the call: the agent's on a per-session
    // child, Warden's rewritten one on a shared child.
    match sharing {
        ChildSharing::PerSession => assert_eq!(cancelled[0], 7),
        ChildSharing::Shared => assert!(
            cancelled[0]
                .as_str()
                .is_some_and(|id| id.starts_with("warden-")),
            "{cancelled:?}"
        ),
    }
    assert_eq!(
        result_text(&agent.call(9, "echo", json!({"text": "still here"})).await),
        "still here"
    );
}

#[tokio::test]
async fn an_unanswered_call_times_out_on_a_per_session_child() {
    assert_unanswered_call_times_out(ChildSharing::PerSession).await;
}

#[tokio::test]
async fn an_unanswered_call_times_out_on_a_shared_child() {
    assert_unanswered_call_times_out(ChildSharing::Shared).await;
}
