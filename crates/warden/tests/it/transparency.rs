//! What Warden has no policy about passes unchanged: streams, ids, fields,
//! status codes, server-to-client traffic. Session ids are Warden's own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::*;

/// What a scripted upstream saw.
#[derive(Default, Clone)]
struct Seen {
    requests: Arc<Mutex<Vec<(http::request::Parts, Bytes)>>>,
}

impl Seen {
    fn all(&self) -> Vec<(http::request::Parts, Bytes)> {
        self.requests.lock().expect("lock").clone()
    }
}

fn tools_list_reply(body: &Bytes, read_only: bool) -> Response<TestBody> {
    let id = serde_json::from_slice::<Value>(body)
        .map(|v| v["id"].clone())
        .unwrap_or(Value::Null);
    json_response(&json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
        {"name": "stream", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
        {"name": "flip", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": read_only}}
    ]}}))
}

#[tokio::test]
async fn sse_replies_are_relayed_as_they_arrive_with_every_field() {
    let (release, released) = tokio::sync::watch::channel(false);
    let (upstream, _) = upstream_fn(move |_parts, body| {
        let mut released = released.clone();
        async move {
            match method_of(&body).as_str() {
                "initialize" => handshake(&body).expect("initialize"),
                "tools/list" => tools_list_reply(&body, true),
                "tools/call" => {
                    let (sender, receiver) = mpsc::channel(4);
                    tokio::spawn(async move {
                        let _ = sender
                            .send(Bytes::from_static(b"id: ev-1\nretry: 1500\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"p\",\"progress\":1}}\n\n"))
                            .await;
                        let _ = released.wait_for(|go| *go).await;
                        let _ = sender
                            .send(Bytes::from_static(b"id: ev-2\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"call-1\",\"result\":{\"content\":[],\"isError\":true}}\n\n"))
                            .await;
                    });
                    sse_response(receiver)
                }
                _ => Response::builder().status(202).body(full_body("")).expect("response"),
            }
        }
    })
    .await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let request = agent
        .post_request("")
        .body(Full::new(Bytes::from(
            json!({"jsonrpc": "2.0", "id": "call-1", "method": "tools/call", "params": {"name": "stream", "arguments": {}}}).to_string(),
        )))
        .expect("request");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    // The first event arrives while the upstream is still holding the result.
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first event relayed before the stream ended")
        .expect("a frame")
        .expect("ok frame")
        .into_data()
        .expect("data");
    let text = String::from_utf8_lossy(&first);
    assert!(
        text.contains("id: ev-1\nretry: 1500\nevent: message\n"),
        "{text}"
    );
    let _ = release.send(true);
    let rest = body.collect().await.expect("rest").to_bytes();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("id: ev-2\n"), "{rest}");
    assert!(
        rest.contains(r#""id":"call-1","result":{"content":[],"isError":true}"#),
        "{rest}"
    );
}

#[tokio::test]
async fn sessions_headers_and_bytes_are_mapped_exactly() {
    let seen = Seen::default();
    let recorder = seen.clone();
    let (upstream, upstream_addr) = upstream_fn(move |parts, body| {
        let recorder = recorder.clone();
        async move {
            recorder.requests.lock().expect("lock").push((parts.clone(), body.clone()));
            match method_of(&body).as_str() {
                "initialize" => handshake(&body).expect("initialize"),
                "tools/list" => tools_list_reply(&body, true),
                "ping" => {
                    let mut response = json_response(&json!({"jsonrpc": "2.0", "id": 12345678901234567u64,
                        "error": {"code": -32042, "message": "custom", "data": {"detail": [1, 2]}}}));
                    response.headers_mut().insert("mcp-session-id", UPSTREAM_SESSION.parse().expect("header"));
                    response
                }
                _ if parts.method == http::Method::DELETE => Response::builder().status(200).body(full_body("")).expect("response"),
                _ => Response::builder().status(202).body(full_body("")).expect("response"),
            }
        }
    })
    .await;
    let warden = WardenBuilder::new(&upstream)
        .forward_headers(&["x-custom"])
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    let init = agent.initialize().await;
    let session = init.session().expect("Warden issued a session");
    assert_ne!(session, UPSTREAM_SESSION);
    assert_eq!(session.len(), 32);

    let ping = r#"{"jsonrpc":"2.0","id":12345678901234567,"method":"ping","params":{"x-unknown":[true,null]}}"#;
    let mut request = agent
        .post_request("")
        .body(Full::new(Bytes::from_static(ping.as_bytes())))
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        "Bearer agent-token".parse().expect("header"),
    );
    request
        .headers_mut()
        .insert("origin", "http://localhost:6274".parse().expect("header"));
    request
        .headers_mut()
        .insert("x-custom", "kept".parse().expect("header"));
    for (name, value) in [
        ("x-api-key", "agent-key"),
        ("cookie", "sid=agent"),
        ("proxy-authorization", "Basic YWdlbnQ6c2VjcmV0"),
        ("x-unlisted", "dropped"),
    ] {
        request
            .headers_mut()
            .insert(name, value.parse().expect("header"));
    }
    let reply = agent.send(request).await;
    // The upstream's error, data and the big integer id arrive unchanged.
    assert_eq!(
        String::from_utf8_lossy(&reply.body),
        r#"{"error":{"code":-32042,"data":{"detail":[1,2]},"message":"custom"},"id":12345678901234567,"jsonrpc":"2.0"}"#
    );
    assert_eq!(
        reply.session().as_deref(),
        Some(session.as_str()),
        "the upstream's id never reaches the agent"
    );

    let all = seen.all();
    let (parts, body) = all
        .iter()
        .find(|(_, b)| method_of(b) == "ping")
        .expect("ping reached upstream");
    assert_eq!(body.as_ref(), ping.as_bytes(), "bytes forwarded unchanged");
    assert_eq!(parts.headers["mcp-session-id"], UPSTREAM_SESSION);
    assert_eq!(
        parts.headers["host"],
        upstream_addr.to_string().as_str(),
        "Host is the upstream's own"
    );
    assert_eq!(parts.headers["origin"], "http://localhost:6274");
    assert_eq!(parts.headers["x-custom"], "kept");
    assert_eq!(parts.headers["mcp-protocol-version"], "2025-11-25");
    for name in [
        "authorization",
        "x-api-key",
        "cookie",
        "proxy-authorization",
        "x-unlisted",
    ] {
        assert!(
            parts.headers.get(name).is_none(),
            "{name}: only the allow-listed headers reach the upstream"
        );
    }

    // Notifications and responses from the agent: 202 relayed.
    let answer = agent
        .post(&json!({"jsonrpc": "2.0", "id": "server-req-1", "result": {"roots": []}}))
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert!(
        seen.all().iter().any(|(_, b)| b.as_ref()
            == br#"{"id":"server-req-1","jsonrpc":"2.0","result":{"roots":[]}}"#)
    );
}

#[tokio::test]
async fn get_streams_carry_last_event_id_and_list_changed_refreshes_the_catalogue() {
    let seen = Seen::default();
    let recorder = seen.clone();
    let flips = Arc::new(Mutex::new(false));
    let flipped = flips.clone();
    let (notify, notifications) = mpsc::channel::<Bytes>(4);
    let notifications = Arc::new(tokio::sync::Mutex::new(Some(notifications)));
    let (upstream, _) = upstream_fn(move |parts, body| {
        let recorder = recorder.clone();
        let flipped = flipped.clone();
        let notifications = notifications.clone();
        async move {
            recorder.requests.lock().expect("lock").push((parts.clone(), body.clone()));
            if parts.method == http::Method::GET {
                let receiver = notifications.lock().await.take().expect("one GET stream");
                return sse_response(receiver);
            }
            match method_of(&body).as_str() {
                "initialize" => handshake(&body).expect("initialize"),
                // `flip` is read-only until the upstream changes its mind.
                "tools/list" => tools_list_reply(&body, !*flipped.lock().expect("lock")),
                "tools/call" => json_response(&json!({"jsonrpc": "2.0", "id": 5, "result": {"content": [{"type": "text", "text": "flipped"}]}})),
                _ => Response::builder().status(202).body(full_body("")).expect("response"),
            }
        }
    })
    .await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    assert_eq!(
        agent.list(1).await.json()["result"]["tools"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        agent.call(5, "flip", json!({})).await.json()["result"]["content"][0]["text"],
        "flipped"
    );

    let get = Request::get(&warden.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", agent.session.clone().expect("session"))
        .header("last-event-id", "ev-41")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(get).await.expect("GET stream");
    assert_eq!(response.status(), StatusCode::OK);
    let get_seen = seen
        .all()
        .into_iter()
        .find(|(p, _)| p.method == http::Method::GET)
        .expect("GET reached upstream");
    assert_eq!(get_seen.0.headers["last-event-id"], "ev-41");
    assert_eq!(get_seen.0.headers["mcp-session-id"], UPSTREAM_SESSION);

    // The upstream now marks `flip` as mutating and says so on the GET stream.
    *flips.lock().expect("lock") = true;
    notify
        .send(Bytes::from_static(b"id: ev-42\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n"))
        .await
        .expect("send");
    let mut body = response.into_body().into_data_stream();
    let relayed = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("notification relayed")
        .expect("chunk")
        .expect("ok");
    assert!(String::from_utf8_lossy(&relayed).contains("list_changed"));
    // Warden forgot the old annotations: the next call is judged afresh.
    assert_refused(
        &agent.call(6, "flip", json!({})).await,
        "flip",
        "not-read-only",
    );
}

#[tokio::test]
async fn upstream_status_codes_pass_through() {
    let (upstream, _) = upstream_fn(|_parts, body| async move {
        match method_of(&body).as_str() {
            "initialize" => handshake(&body).expect("initialize"),
            "notifications/initialized" => Response::builder().status(202).body(full_body("")).expect("response"),
            _ => Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .header("content-type", "application/json")
                .body(full_body(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"upstream says no"}}"#))
                .expect("response"),
        }
    })
    .await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let reply = agent
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "resources/list"}))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["message"], "upstream says no");
}

#[tokio::test]
async fn warden_states_the_content_type_itself() {
    let seen = Seen::default();
    let recorder = seen.clone();
    let (upstream, _) = upstream_fn(move |parts, body| {
        let recorder = recorder.clone();
        async move {
            recorder
                .requests
                .lock()
                .expect("lock")
                .push((parts.clone(), body.clone()));
            match method_of(&body).as_str() {
                "initialize" => handshake(&body).expect("initialize"),
                _ => Response::builder()
                    .status(202)
                    .body(full_body(""))
                    .expect("response"),
            }
        }
    })
    .await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let before = seen.all().len();
    // A charset parameter written with spaces must not slip past the check
    // and reach an upstream that would decode the body as UTF-7.
    for content_type in [
        "application/json; charset = utf-7",
        "application/json;charset =utf-7",
    ] {
        let mut request = agent
            .post_request("")
            .body(Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","method":"notifications/x"}"#,
            )))
            .expect("request");
        request
            .headers_mut()
            .insert("content-type", content_type.parse().expect("header"));
        let reply = agent.send(request).await;
        assert_eq!(
            reply.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
    }
    assert_eq!(seen.all().len(), before, "nothing reached the upstream");
    let mut request = agent
        .post_request("")
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/x"}"#,
        )))
        .expect("request");
    request.headers_mut().insert(
        "content-type",
        "application/json; charset=\"UTF-8\""
            .parse()
            .expect("header"),
    );
    assert_eq!(agent.send(request).await.status, StatusCode::ACCEPTED);
    let all = seen.all();
    let (parts, _) = all.last().expect("forwarded");
    let types: Vec<_> = parts.headers.get_all("content-type").iter().collect();
    assert_eq!(types, vec!["application/json"]);
}

/// An SSE body of fixed events.
fn sse_body(text: &'static str) -> Response<TestBody> {
    let mut response = Response::new(full_body(text));
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().expect("header"));
    response
}

const REPLAYED_LIST: &str = concat!(
    "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"stream\",\"annotations\":{\"readOnlyHint\":true}},{\"name\":\"flip\",\"annotations\":{\"readOnlyHint\":false}}]}}\n\n",
    "id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{\"tools\":[{\"name\":\"flip\",\"description\":\"\\ud83d\"}]}}\n\n",
    "id: 3\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"hi\"}}\n\n",
    "id: 4\ndata: [{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"tools\":[{\"name\":\"flip\",\"annotations\":{\"readOnlyHint\":false}}]}}]\n\n",
);

#[tokio::test]
async fn a_tools_list_replayed_on_the_get_stream_is_filtered_too() {
    let (upstream, _) = upstream_fn(|parts, body| async move {
        if parts.method == http::Method::GET {
            return sse_body(REPLAYED_LIST);
        }
        match method_of(&body).as_str() {
            "initialize" => handshake(&body).expect("initialize"),
            _ => Response::builder()
                .status(202)
                .body(full_body(""))
                .expect("response"),
        }
    })
    .await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let get = Request::get(&warden.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", agent.session.clone().expect("session"))
        .header("last-event-id", "0")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let reply = agent.send(get).await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    let messages = reply.sse_messages();
    assert_eq!(messages.len(), 2, "{text}");
    let names: Vec<&str> = messages[0]["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["stream"], "the denied tool is hidden on replay");
    assert!(
        !text.contains("\\ud83d"),
        "the unreadable list was dropped: {text}"
    );
    assert!(
        text.contains("id: 1\n") && text.contains("id: 3\n"),
        "event ids kept: {text}"
    );
    assert!(
        !text.contains("flip"),
        "a list of tools inside a batch is not shown unfiltered: {text}"
    );
    assert_eq!(messages[1]["method"], "notifications/message");
}

#[tokio::test]
async fn an_unreadable_streamed_tools_list_becomes_an_error_not_an_unfiltered_list() {
    let (upstream, _) = upstream_fn(|_parts, body| async move {
        match method_of(&body).as_str() {
            "initialize" => handshake(&body).expect("initialize"),
            "tools/list" => sse_body(
                "data: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"tools\":[{\"name\":\"flip\",\"description\":\"\\ud83d\"}]}}\n\n",
            ),
            _ => Response::builder().status(202).body(full_body("")).expect("response"),
        }
    })
    .await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let reply = agent.list(4).await;
    let messages = reply.sse_messages();
    assert_eq!(messages.len(), 1, "{:?}", reply.body);
    assert_eq!(messages[0]["id"], 4);
    assert_eq!(messages[0]["error"]["code"], -32003);
    assert!(
        messages[0]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("tools/list reply is not valid JSON"))
    );
}

#[tokio::test]
async fn a_streamed_tools_list_after_a_priming_event_is_filtered_not_refused() {
    // The TypeScript SDK server opens every 2025-11-25 SSE reply with an event
    // that has an id and empty data, so that clients can resume.
    let (upstream, _) = upstream_fn(|_parts, body| async move {
        match method_of(&body).as_str() {
            "initialize" => handshake(&body).expect("initialize"),
            "tools/list" => sse_body(concat!(
                "id: prime-1\ndata: \n\n",
                "id: ev-2\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"tools\":[",
                "{\"name\":\"stream\",\"annotations\":{\"readOnlyHint\":true}},",
                "{\"name\":\"flip\",\"annotations\":{\"readOnlyHint\":false}}]}}\n\n",
            )),
            _ => Response::builder()
                .status(202)
                .body(full_body(""))
                .expect("response"),
        }
    })
    .await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let reply = agent.list(4).await;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(
        text.starts_with("id: prime-1\ndata: \n\n"),
        "priming event kept first: {text}"
    );
    let messages = reply.sse_messages();
    assert_eq!(messages.len(), 1, "{text}");
    let names: Vec<&str> = messages[0]["result"]["tools"]
        .as_array()
        .expect("a tool list, not an error")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["stream"]);
}

#[tokio::test]
async fn a_session_listening_on_its_get_stream_is_not_idle() {
    let (hold, held) = tokio::sync::watch::channel(false);
    let (upstream, _) = upstream_fn(move |parts, body| {
        let mut held = held.clone();
        async move {
            if parts.method == http::Method::GET {
                let (sender, receiver) = mpsc::channel(1);
                tokio::spawn(async move {
                    let _ = held.wait_for(|done| *done).await;
                    drop(sender);
                });
                return sse_response(receiver);
            }
            handshake(&body).unwrap_or_else(|| {
                json_response(&json!({"jsonrpc": "2.0", "id": id_of(&body), "result": {}}))
            })
        }
    })
    .await;
    let warden = WardenBuilder::new(&upstream)
        .limits(|l| l.session_idle = Duration::from_millis(200))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let stream = agent.open_get_stream().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        warden.running.warden.sessions.len(),
        1,
        "a listening agent keeps its session"
    );
    // Stream over: the session is idle again and goes.
    let _ = hold.send(true);
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while warden.running.warden.sessions.len() == 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle session was not swept"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
