//! Credential lanes: each tool's calls carry its own credential, in an
//! upstream session of their own; the agent's credentials never reach the
//! upstream; a rotated file is read again; stdio children get only their
//! lane's secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderName, StatusCode};
use serde_json::{Value, json};
use warden::credentials::{CredentialConfig, SourceConfig};
use warden::upstream::credential::Secret;

use crate::support::*;

const POLICY: &str = "version: 1\ntools:\n  search_customers:\n    tier: read\n    credential: crm-read\n  create_note:\n    tier: write\n    credential: notes-writer\n";

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    http_method: http::Method,
    pub(crate) method: String,
    pub(crate) body: String,
    tool: Option<String>,
    session: Option<String>,
    pub(crate) authorization: Option<String>,
    pub(crate) api_key: Option<String>,
    cookie: Option<String>,
}

fn credential(
    name: &str,
    source: SourceConfig,
    header: &str,
    scheme: Option<&str>,
) -> CredentialConfig {
    CredentialConfig {
        name: name.into(),
        source,
        header: HeaderName::from_bytes(header.as_bytes()).expect("header"),
        scheme: scheme.map(str::to_owned),
        env_var: None,
    }
}

/// An MCP server that opens a new session per `initialize` and records
/// every request's credential headers.
pub(crate) async fn recording_upstream() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let sessions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let record = seen.clone();
    let (url, _) = upstream_fn(move |parts, body: Bytes| {
        let record = record.clone();
        let sessions = sessions.clone();
        async move {
            let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let method = message["method"].as_str().unwrap_or_default().to_owned();
            record.lock().expect("lock").push(Seen {
                http_method: parts.method.clone(),
                method: method.clone(),
                body: String::from_utf8_lossy(&body).into_owned(),
                tool: message["params"]["name"].as_str().map(str::to_owned),
                session: header("mcp-session-id"),
                authorization: header("authorization"),
                api_key: header("x-api-key"),
                cookie: header("cookie"),
            });
            let id = message["id"].clone();
            match method.as_str() {
                "initialize" => {
                    let n = sessions.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    let mut response = json_response(&json!({"jsonrpc": "2.0", "id": id, "result": {
                        "protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                        "serverInfo": {"name": "recording", "version": "1"}}}));
                    response.headers_mut().insert(
                        "mcp-session-id",
                        format!("up-{n}").parse().expect("header"),
                    );
                    response
                }
                "tools/list" => json_response(&json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
                    {"name": "search_customers", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
                    {"name": "create_note", "inputSchema": {"type": "object"}},
                    {"name": "echo", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
                    {"name": "explode", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
                    {"name": "ask_user", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
                    {"name": "ask_base", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}}]}})),
                "tools/call"
                    if message["params"]["name"] == "ask_user"
                        || message["params"]["name"] == "ask_base" =>
                {
                    http::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(full_body(
                        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"elicitation/create\",\"params\":{\"message\":\"Sure?\",\"requestedSchema\":{\"type\":\"object\"}}}\n\n",
                    ))
                    .expect("response")
                }
                "tools/call" if message["params"]["name"] == "explode" => http::Response::builder()
                    .status(500)
                    .body(full_body("upstream exploded"))
                    .expect("response"),
                "tools/call" => json_response(&json!({"jsonrpc": "2.0", "id": id, "result": {
                    "content": [{"type": "text", "text": "done"}]}})),
                _ if id.is_null() => http::Response::builder()
                    .status(202)
                    .body(full_body(""))
                    .expect("response"),
                _ => json_response(&json!({"jsonrpc": "2.0", "id": id, "result": {}})),
            }
        }
    })
    .await;
    (url, seen)
}

fn calls_of<'a>(seen: &'a [Seen], tool: &str) -> Vec<&'a Seen> {
    seen.iter()
        .filter(|s| s.method == "tools/call" && s.tool.as_deref() == Some(tool))
        .collect()
}

#[tokio::test]
async fn each_tool_carries_its_own_credential_in_its_own_upstream_session() {
    let (upstream, seen) = recording_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let crm_file = dir.path().join("crm-token");
    std::fs::write(&crm_file, "crm-token-1\n").expect("secret");
    let warden = WardenBuilder::new(&upstream)
        .policy(POLICY)
        .credentials(
            vec![
                credential(
                    "crm-read",
                    SourceConfig::File(crm_file.clone()),
                    "authorization",
                    Some("Bearer"),
                ),
                credential(
                    "notes-writer",
                    SourceConfig::Inline(Secret::new("notes-secret-9")),
                    "x-api-key",
                    None,
                ),
            ],
            Some("crm-read"),
        )
        .start()
        .await;
    let mut agent = Agent::with_bearer(&warden.url, "agent-own-token");
    agent
        .headers
        .push(("x-api-key".into(), "agent-own-key".into()));
    agent.headers.push(("cookie".into(), "sid=agent".into()));
    agent.initialize().await;

    // tools/list looks like one server: every tool, from the base lane.
    let listed: Vec<String> = agent.list(1).await.json()["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        listed,
        [
            "search_customers",
            "create_note",
            "echo",
            "explode",
            "ask_user",
            "ask_base"
        ]
    );

    for (id, tool) in [
        (2, "search_customers"),
        (3, "create_note"),
        (4, "echo"),
        (5, "create_note"),
    ] {
        let reply = agent.call(id, tool, json!({})).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(
            reply.json()["result"]["content"][0]["text"],
            "done",
            "{tool}: {reply:?}"
        );
    }
    // The base credential's file is rotated: the next call carries the new one.
    std::fs::write(&crm_file, "crm-token-2-rotated\n").expect("rotate");
    let reply = agent.call(6, "search_customers", json!({})).await;
    assert_eq!(reply.json()["result"]["content"][0]["text"], "done");

    let recorded = seen.clone();
    let seen = seen.lock().expect("lock").clone();
    // Nothing the agent sent as a credential reached the upstream.
    for request in &seen {
        assert_ne!(
            request.authorization.as_deref(),
            Some("Bearer agent-own-token"),
            "{request:?}"
        );
        assert_ne!(
            request.api_key.as_deref(),
            Some("agent-own-key"),
            "{request:?}"
        );
        assert_eq!(request.cookie, None, "{request:?}");
    }
    // The agent's initialize and list went through the base lane.
    let base_session = seen[0].session.clone();
    assert_eq!(seen[0].method, "initialize");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer crm-token-1"));
    // search_customers: the base lane's credential and session.
    let search = calls_of(&seen, "search_customers");
    assert_eq!(
        search[0].authorization.as_deref(),
        Some("Bearer crm-token-1")
    );
    assert_eq!(search[0].session.as_deref(), Some("up-1"));
    assert_eq!(
        search[1].authorization.as_deref(),
        Some("Bearer crm-token-2-rotated")
    );
    assert!(base_session.is_none(), "initialize carries no session");
    // create_note: its own credential, in a session opened with it, once.
    let notes = calls_of(&seen, "create_note");
    assert_eq!(notes.len(), 2);
    for call in &notes {
        assert_eq!(call.api_key.as_deref(), Some("notes-secret-9"), "{call:?}");
        assert_eq!(call.authorization, None, "{call:?}");
        assert_eq!(call.session.as_deref(), Some("up-2"), "{call:?}");
    }
    let opened: Vec<&Seen> = seen.iter().filter(|s| s.method == "initialize").collect();
    assert_eq!(
        opened.len(),
        3,
        "base, notes-writer and no-credential lanes: {opened:?}"
    );
    assert_eq!(opened[1].api_key.as_deref(), Some("notes-secret-9"));
    assert!(
        seen.iter().any(
            |s| s.method == "notifications/initialized" && s.session.as_deref() == Some("up-2")
        ),
        "the lane's session was initialized: {seen:?}"
    );
    // echo names no credential: it gets none, in a session of its own.
    let echo = calls_of(&seen, "echo");
    assert_eq!(echo[0].authorization, None);
    assert_eq!(echo[0].api_key, None);
    assert_eq!(echo[0].session.as_deref(), Some("up-3"));

    // Ending the agent's session ends every lane's upstream session.
    let delete = http::Request::delete(&warden.url)
        .header("mcp-session-id", agent.session.clone().expect("session"))
        .header("authorization", "Bearer agent-own-token")
        .body(http_body_util::Full::new(Bytes::new()))
        .expect("request");
    assert!(agent.send(delete).await.status.is_success());
    let seen = recorded.lock().expect("lock").clone();
    let mut ended: Vec<String> = seen
        .iter()
        .filter(|s| s.http_method == http::Method::DELETE)
        .filter_map(|s| s.session.clone())
        .collect();
    ended.sort();
    assert_eq!(ended, ["up-1", "up-2", "up-3"]);
}

#[tokio::test]
async fn answers_and_cancellations_go_to_the_lane_their_request_came_from() {
    let (upstream, seen) = recording_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  ask_user:\n    tier: read\n    credential: notes-writer\n  create_note:\n    tier: write\n    credential: notes-writer\n    callers: { agents: [someone-else] }\n")
        .credentials(
            vec![credential(
                "notes-writer",
                SourceConfig::Inline(Secret::new("notes-secret-9")),
                "x-api-key",
                None,
            )],
            None,
        )
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    // A refused call to a lane's tool, then its cancellation: the lane is
    // never opened, its credential never used.
    assert_refused(
        &agent.call(3, "create_note", json!({})).await,
        "create_note",
        "not-for-caller",
    );
    let cancel = |id: u64| json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}});
    assert!(agent.post(&cancel(3)).await.status.is_success());
    assert_eq!(
        seen.lock()
            .expect("lock")
            .iter()
            .filter(|s| s.method == "initialize")
            .count(),
        1,
        "no lane opened for a refused call"
    );
    // The lane's server and the base server both ask the agent something,
    // with the same id of their own.
    let lane_ask = agent.call(7, "ask_user", json!({})).await.sse_messages();
    let base_ask = agent.call(8, "ask_base", json!({})).await.sse_messages();
    assert_eq!(lane_ask[0]["method"], "elicitation/create");
    assert_eq!(
        base_ask[0]["id"], "srv-1",
        "the base server's id passes as it is"
    );
    let lane_id = lane_ask[0]["id"].as_str().expect("an id").to_owned();
    assert_ne!(
        lane_id, "srv-1",
        "two pending requests never look alike to the agent"
    );
    // Both answers, and the cancellation of the lane's call.
    for message in [
        json!({"jsonrpc": "2.0", "id": lane_id, "result": {"action": "accept", "content": {"who": "lane"}}}),
        json!({"jsonrpc": "2.0", "id": "srv-1", "result": {"action": "accept", "content": {"who": "base"}}}),
        cancel(7),
    ] {
        assert!(agent.post(&message).await.status.is_success());
    }
    let seen = seen.lock().expect("lock").clone();
    let lane_session = calls_of(&seen, "ask_user")[0].session.clone();
    assert_eq!(lane_session.as_deref(), Some("up-2"));
    let session_of = |pick: &dyn Fn(&Seen) -> bool| {
        seen.iter()
            .find(|s| pick(s))
            .and_then(|s| s.session.clone())
    };
    let lane_answer = seen
        .iter()
        .find(|s| s.body.contains("\"lane\""))
        .expect("the lane's answer arrived");
    assert_eq!(
        lane_answer.session, lane_session,
        "the answer goes to the lane that asked"
    );
    assert!(
        lane_answer.body.contains("\"srv-1\""),
        "with the server's own id: {}",
        lane_answer.body
    );
    assert_eq!(lane_answer.api_key.as_deref(), Some("notes-secret-9"));
    assert_eq!(
        session_of(&|s| s.body.contains("\"base\"")).as_deref(),
        Some("up-1"),
        "the base server's answer goes to the base lane"
    );
    let cancellations: Vec<Option<String>> = seen
        .iter()
        .filter(|s| s.method == "notifications/cancelled")
        .map(|s| s.session.clone())
        .collect();
    assert_eq!(
        cancellations,
        [Some("up-1".to_owned()), lane_session.clone()],
        "the refused call's cancellation stays in the base lane; the lane call's goes to its lane"
    );
}

#[tokio::test]
async fn a_credential_that_cannot_be_read_refuses_the_call_without_saying_the_secret() {
    let (upstream, seen) = recording_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let notes_file = dir.path().join("notes-token");
    std::fs::write(&notes_file, "notes-file-secret").expect("secret");
    let warden = WardenBuilder::new(&upstream)
        .policy(POLICY)
        .credentials(
            vec![
                credential(
                    "crm-read",
                    SourceConfig::Inline(Secret::new("crm-x")),
                    "authorization",
                    Some("Bearer"),
                ),
                credential(
                    "notes-writer",
                    SourceConfig::File(notes_file.clone()),
                    "authorization",
                    Some("Bearer"),
                ),
            ],
            None,
        )
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    std::fs::remove_file(&notes_file).expect("remove");
    let reply = agent.call(1, "create_note", json!({})).await;
    let message = assert_error(&reply, StatusCode::SERVICE_UNAVAILABLE, -32603);
    assert!(message.contains("notes-writer"), "{message}");
    assert!(!message.contains("notes-file-secret"), "{message}");
    assert!(calls_of(&seen.lock().expect("lock"), "create_note").is_empty());
    // Other lanes are unaffected.
    let read = agent.call(2, "search_customers", json!({})).await;
    assert_eq!(read.json()["result"]["content"][0]["text"], "done");
}

#[tokio::test]
async fn stdio_children_hold_only_their_own_lanes_secret() {
    let mut command = stdio_fixture(&[]);
    command.sharing = warden::config::ChildSharing::PerSession;
    let warden = WardenBuilder::with_upstream(warden::config::UpstreamConfig {
        transport: warden::config::UpstreamTransport::Stdio(command),
        timeout: std::time::Duration::from_secs(10),
        reply_timeout: std::time::Duration::from_secs(10),
        max_links: 8,
    })
    .policy("version: 1\ntools:\n  environ:\n    tier: read\n    credential: crm\n  env:\n    tier: read\n    credential: notes\n")
    .credentials(
        vec![
            CredentialConfig {
                env_var: Some("CRM_TOKEN".into()),
                ..credential("crm", SourceConfig::Inline(Secret::new("crm-child-secret")), "authorization", None)
            },
            CredentialConfig {
                env_var: Some("NOTES_TOKEN".into()),
                ..credential("notes", SourceConfig::Inline(Secret::new("notes-child-secret")), "authorization", None)
            },
        ],
        None,
    )
    .start()
    .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let text = |reply: &Reply| {
        reply.response()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let environ: HashMap<String, String> =
        serde_json::from_str(&text(&agent.call(1, "environ", json!({})).await)).expect("environ");
    assert_eq!(
        environ.get("CRM_TOKEN").map(String::as_str),
        Some("crm-child-secret")
    );
    assert!(!environ.contains_key("NOTES_TOKEN"), "{environ:?}");
    assert!(
        !environ.values().any(|v| v.contains("notes-child-secret")),
        "the crm child holds no trace of the notes secret"
    );
    // The notes lane's child holds the notes secret and not the crm one.
    let names: Vec<String> =
        serde_json::from_str(&text(&agent.call(2, "env", json!({})).await)).expect("names");
    assert!(names.contains(&"NOTES_TOKEN".to_owned()), "{names:?}");
    assert!(!names.contains(&"CRM_TOKEN".to_owned()), "{names:?}");
    // The base lane's child (initialize, tools/list, tools without a
    // credential) holds neither.
    let base: HashMap<String, String> =
        serde_json::from_str(&text(&agent.call(3, "environment", json!({})).await))
            .expect("environ");
    assert!(
        !base.contains_key("CRM_TOKEN") && !base.contains_key("NOTES_TOKEN"),
        "{base:?}"
    );
    assert!(
        !base.values().any(|v| v.contains("child-secret")),
        "the base child holds no secret: {base:?}"
    );
    let environ_again: HashMap<String, String> =
        serde_json::from_str(&text(&agent.call(4, "environ", json!({})).await)).expect("environ");
    assert_eq!(
        environ_again, environ,
        "the same child serves the lane again"
    );
}

/// A token endpoint issuing `tok-N`, valid for `lifetime` seconds, and
/// what it was asked.
async fn token_endpoint(lifetime: u64) -> (String, Arc<Mutex<Vec<String>>>) {
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = asked.clone();
    let (url, _) = upstream_fn(move |_parts, body: Bytes| {
        let record = record.clone();
        async move {
            let form = String::from_utf8_lossy(&body).into_owned();
            let n = {
                let mut asked = record.lock().expect("lock");
                asked.push(form.clone());
                asked.len()
            };
            if !form.contains("client_secret=billing-client-secret") {
                return http::Response::builder()
                    .status(401)
                    .body(full_body(r#"{"error":"invalid_client"}"#))
                    .expect("response");
            }
            json_response(
                &json!({"access_token": format!("tok-{n}"), "token_type": "Bearer",
                "expires_in": lifetime}),
            )
        }
    })
    .await;
    (url.replace("/mcp", "/oauth/token"), asked)
}

fn oauth(token_url: &str, secret_file: &std::path::Path) -> CredentialConfig {
    credential(
        "notes-writer",
        SourceConfig::OAuth {
            token_url: token_url.parse().expect("url"),
            client_id: "warden-notes".into(),
            client_secret: Box::new(SourceConfig::File(secret_file.to_path_buf())),
            scope: Some("notes.write".into()),
            resource: None,
            ca_file: None,
        },
        "authorization",
        Some("Bearer"),
    )
}

/// A Warden whose `notes-writer` credential is an OAuth grant against
/// `token_url`, and an agent with a session through it.
async fn oauth_warden(
    upstream: &str,
    token_url: &str,
    secret: &std::path::Path,
) -> (TestWarden, Agent) {
    let warden = WardenBuilder::new(upstream)
        .policy(POLICY)
        .credentials(
            vec![
                credential(
                    "crm-read",
                    SourceConfig::Inline(Secret::new("crm-x")),
                    "authorization",
                    Some("Bearer"),
                ),
                oauth(token_url, secret),
            ],
            None,
        )
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    (warden, agent)
}

#[tokio::test]
async fn an_oauth_token_is_cached_until_shortly_before_it_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "billing-client-secret\n").expect("secret");
    for (lifetime, expected_fetches) in [(3600, 1), (0, 4)] {
        let (upstream, seen) = recording_upstream().await;
        let (token_url, asked) = token_endpoint(lifetime).await;
        let (_warden, agent) = oauth_warden(&upstream, &token_url, &secret).await;
        for id in 1..=2 {
            let reply = agent.call(id, "create_note", json!({})).await;
            assert_eq!(
                reply.json()["result"]["content"][0]["text"],
                "done",
                "{reply:?}"
            );
        }
        let asked = asked.lock().expect("lock").clone();
        // The lane's initialize, its initialized notice and two calls: one
        // token while it is valid; a token that is expired when it comes
        // is fetched again each time.
        assert_eq!(asked.len(), expected_fetches, "{asked:?}");
        assert!(
            asked[0].contains("grant_type=client_credentials"),
            "{asked:?}"
        );
        assert!(asked[0].contains("client_id=warden-notes"), "{asked:?}");
        assert!(asked[0].contains("scope=notes.write"), "{asked:?}");
        let seen = seen.lock().expect("lock").clone();
        let calls = calls_of(&seen, "create_note");
        assert_eq!(calls.len(), 2);
        if lifetime > 0 {
            assert!(
                calls
                    .iter()
                    .all(|c| c.authorization.as_deref() == Some("Bearer tok-1"))
            );
        } else {
            assert_ne!(calls[0].authorization, calls[1].authorization, "{calls:?}");
        }
    }
}

#[tokio::test]
async fn a_token_endpoint_that_refuses_is_an_unavailable_credential() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "a-wrong-client-secret").expect("secret");
    let (upstream, _seen) = recording_upstream().await;
    let (token_url, _asked) = token_endpoint(3600).await;
    let (_warden, agent) = oauth_warden(&upstream, &token_url, &secret).await;
    let reply = agent.call(1, "create_note", json!({})).await;
    let message = assert_error(&reply, StatusCode::SERVICE_UNAVAILABLE, -32603);
    assert!(message.contains("notes-writer"), "{message}");
    assert!(!message.contains("a-wrong-client-secret"), "{message}");
}

#[tokio::test]
async fn an_upstream_refusing_the_credential_is_a_502_without_its_challenge() {
    let (upstream, _) = upstream_fn(|_parts, body: Bytes| async move {
        if let Some(reply) = handshake(&body) {
            return reply;
        }
        http::Response::builder()
            .status(401)
            .header(
                "www-authenticate",
                "Bearer resource_metadata=\"https://upstream.example/.well-known/oauth-protected-resource\"",
            )
            .body(full_body(r#"{"error":"invalid_token"}"#))
            .expect("response")
    })
    .await;
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ndefault: allow\n")
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let reply = agent.call(1, "anything", json!({})).await;
    let message = assert_error(&reply, StatusCode::BAD_GATEWAY, -32003);
    assert!(message.contains("refused Warden's credential"), "{message}");
    assert!(
        reply.headers.get("www-authenticate").is_none(),
        "the upstream's challenge never reaches the agent"
    );
}
