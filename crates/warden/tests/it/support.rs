//! A small builder language for "a Warden in front of this upstream", and a
//! raw HTTP client that can send what a well-behaved SDK never would.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warden::config::{
    ChildSharing, Config, Limits, RouteConfig, StdioCommand, UpstreamConfig, UpstreamTransport,
};
use warden_demo::Demo;
use warden_policy::Policy;

pub type TestBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A Warden under test, with the pieces around it.
pub struct TestWarden {
    pub running: warden::Running,
    pub url: String,
}

/// Builder: `WardenBuilder::new(upstream_url).policy(..).start()`.
pub struct WardenBuilder {
    routes: Vec<RouteConfig>,
    limits: Limits,
    audit: Option<warden::audit::AuditConfig>,
    tls: Option<warden::tls::ListenerTls>,
    admin_tls: Option<warden::tls::ListenerTls>,
    approvals: Option<warden::approvals::ApprovalsConfig>,
}

impl WardenBuilder {
    pub fn new(upstream: &str) -> WardenBuilder {
        WardenBuilder {
            routes: vec![route("/mcp", upstream, Policy::default())],
            limits: Limits::default(),
            audit: None,
            tls: None,
            admin_tls: None,
            approvals: None,
        }
    }

    /// An approval queue for `approve`-tier tools.
    pub fn approvals(mut self, approvals: warden::approvals::ApprovalsConfig) -> WardenBuilder {
        self.approvals = Some(approvals);
        self
    }

    /// TLS on the admin listener.
    pub fn admin_tls(mut self, tls: warden::tls::ListenerTls) -> WardenBuilder {
        self.admin_tls = Some(tls);
        self
    }

    /// TLS on the MCP listener.
    pub fn tls(mut self, tls: warden::tls::ListenerTls) -> WardenBuilder {
        self.tls = Some(tls);
        self
    }

    /// Upstream mTLS: the certificate the first route presents.
    pub fn upstream_client_cert(
        mut self,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> WardenBuilder {
        if let UpstreamTransport::StreamableHttp(endpoint) = &mut self.routes[0].upstream.transport
        {
            endpoint.client_cert = Some((cert.to_path_buf(), key.to_path_buf()));
        }
        self
    }

    /// A Warden in front of any upstream (stdio, legacy SSE).
    pub fn with_upstream(upstream: UpstreamConfig) -> WardenBuilder {
        let mut builder = WardenBuilder::new("http://127.0.0.1:1/mcp");
        builder.routes[0].upstream = upstream;
        builder
    }

    pub fn policy(mut self, yaml: &str) -> WardenBuilder {
        self.routes[0].policy =
            Policy::from_yaml_str(yaml, "test policy").expect("test policy is valid");
        self
    }

    /// Use (and watch) a policy file.
    pub fn policy_file(mut self, file: &std::path::Path) -> WardenBuilder {
        self.routes[0].policy = Policy::from_file(file).expect("test policy file is valid");
        self.routes[0].policy_file = Some(file.to_path_buf());
        self
    }

    pub fn route(mut self, path: &str, upstream: &str) -> WardenBuilder {
        self.routes.push(route(path, upstream, Policy::default()));
        self
    }

    pub fn upstream_timeout(mut self, timeout: Duration) -> WardenBuilder {
        self.routes[0].upstream.timeout = timeout;
        self
    }

    pub fn reply_timeout(mut self, timeout: Duration) -> WardenBuilder {
        self.routes[0].upstream.reply_timeout = timeout;
        self
    }

    pub fn ca_file(mut self, path: &std::path::Path) -> WardenBuilder {
        if let UpstreamTransport::StreamableHttp(endpoint) = &mut self.routes[0].upstream.transport
        {
            endpoint.ca_file = Some(path.to_path_buf());
        }
        self
    }

    pub fn allowed_origin(mut self, origin: &str) -> WardenBuilder {
        self.routes[0].allowed_origins.push(origin.to_owned());
        self
    }

    /// The first route's credentials (the policy gives them to tools).
    pub fn credentials(
        mut self,
        credentials: Vec<warden::credentials::CredentialConfig>,
        base: Option<&str>,
    ) -> WardenBuilder {
        self.routes[0].credentials = credentials;
        self.routes[0].base_credential = base.map(str::to_owned);
        self
    }

    /// Agent headers the first route's HTTP upstream also receives.
    pub fn forward_headers(mut self, names: &[&str]) -> WardenBuilder {
        if let UpstreamTransport::StreamableHttp(endpoint) = &mut self.routes[0].upstream.transport
        {
            endpoint.forward_headers = names
                .iter()
                .map(|n| http::HeaderName::from_bytes(n.as_bytes()).expect("header name"))
                .collect();
        }
        self
    }

    /// Who may call the first route.
    pub fn auth(mut self, auth: warden::auth::AuthConfig) -> WardenBuilder {
        self.routes[0].auth = Some(auth);
        self
    }

    pub fn allowed_hosts(mut self, hosts: &[&str]) -> WardenBuilder {
        self.routes[0].allowed_hosts = Some(hosts.iter().map(|h| (*h).to_owned()).collect());
        self
    }

    /// Audit to `audit` (e.g. `AuditConfig::in_dir`).
    pub fn audit(mut self, audit: warden::audit::AuditConfig) -> WardenBuilder {
        self.audit = Some(audit);
        self
    }

    pub fn limits(mut self, edit: impl FnOnce(&mut Limits)) -> WardenBuilder {
        edit(&mut self.limits);
        self
    }

    pub async fn start(self) -> TestWarden {
        let config = Config {
            listen: ([127, 0, 0, 1], 0).into(),
            admin: Some(([127, 0, 0, 1], 0).into()),
            workers: 2,
            limits: self.limits,
            routes: self.routes,
            audit: self.audit,
            tls: self.tls,
            admin_tls: self.admin_tls,
            approvals: self.approvals,
        };
        let running = warden::start(&config).await.expect("warden starts");
        let url = format!("http://{}/mcp", running.mcp_addr);
        TestWarden { running, url }
    }
}

fn route(path: &str, upstream: &str, policy: Policy) -> RouteConfig {
    RouteConfig {
        path: path.to_owned(),
        upstream: UpstreamConfig::new(upstream.parse().expect("upstream url")),
        policy,
        policy_origin: "test".into(),
        policy_file: None,
        allowed_origins: Vec::new(),
        allowed_hosts: None,
        auth: None,
        credentials: Vec::new(),
        base_credential: None,
    }
}

/// The stdio test server (`tests/fixtures/stdio_server.py`) run by python3,
/// with `args`, and only `LC_ALL` and `PATH` in its environment.
pub fn stdio_fixture(args: &[&str]) -> StdioCommand {
    let path = std::env::var_os("PATH").expect("PATH");
    // The interpreter itself, not a version manager's shim in front of it
    // (a shim would add variables of its own to the child's environment).
    let python = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    let python = String::from_utf8_lossy(&python.stdout).trim().to_owned();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stdio_server.py"
    );
    StdioCommand {
        program: python.into(),
        args: std::iter::once(script)
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect(),
        env: vec![
            ("LC_ALL".into(), "C.UTF-8".into()),
            ("PATH".into(), path.to_string_lossy().into_owned()),
        ],
        cwd: None,
        sharing: ChildSharing::PerSession,
        secrets: Vec::new(),
    }
}

/// The demo MCP server on an ephemeral port, with its state.
pub async fn demo_upstream() -> (String, Arc<Demo>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let demo = Arc::new(Demo::default());
    tokio::spawn(warden_demo::serve_with(listener, demo.clone()));
    (format!("http://{addr}/mcp"), demo)
}

/// An upstream answering every request with `handler`.
pub async fn upstream_fn<F, Fut>(handler: F) -> (String, SocketAddr)
where
    F: Fn(http::request::Parts, Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        Ok::<_, Infallible>(handler(parts, body).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}/mcp"), addr)
}

/// An SSE response whose chunks are what `receiver` yields, until it closes.
pub fn sse_response(receiver: tokio::sync::mpsc::Receiver<Bytes>) -> Response<TestBody> {
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| {
            (
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http_body::Frame::data(chunk)),
                receiver,
            )
        })
    });
    let mut response = Response::new(http_body_util::StreamBody::new(stream).boxed_unsync());
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().expect("header"));
    response
}

pub fn full_body(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn json_response(value: &Value) -> Response<TestBody> {
    let mut response = Response::new(full_body(value.to_string()));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    response
}

/// A reply as the agent saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "reply is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The JSON-RPC messages in an SSE body.
    pub fn sse_messages(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.body)
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str(data.trim()).ok())
            .collect()
    }

    /// The events of an SSE reply: (`id`, the message).
    pub fn sse_events_with_ids(&self) -> Vec<(Option<String>, Value)> {
        String::from_utf8_lossy(&self.body)
            .split("\n\n")
            .filter_map(|block| {
                let id = block
                    .lines()
                    .find_map(|l| l.strip_prefix("id:"))
                    .map(|id| id.trim().to_owned());
                let data = block.lines().find_map(|l| l.strip_prefix("data:"))?;
                Some((id, serde_json::from_str(data.trim()).ok()?))
            })
            .collect()
    }

    /// The response message of a 200 reply, JSON or the response event of
    /// an SSE stream.
    pub fn response(&self) -> Value {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        if self.body.starts_with(b"{") {
            return self.json();
        }
        self.sse_messages()
            .into_iter()
            .find(|m| m.get("method").is_none())
            .expect("a response event")
    }

    pub fn session(&self) -> Option<String> {
        self.headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A raw MCP-over-HTTP client.
#[derive(Clone)]
pub struct Agent {
    http: Client<HttpConnector, Full<Bytes>>,
    pub url: String,
    pub session: Option<String>,
    pub protocol_version: String,
    /// Sent with every request (e.g. `authorization`).
    pub headers: Vec<(String, String)>,
}

pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";

impl Agent {
    pub fn new(url: &str) -> Agent {
        Agent {
            http: Client::builder(TokioExecutor::new()).build_http(),
            url: url.to_owned(),
            session: None,
            protocol_version: "2025-11-25".into(),
            headers: Vec::new(),
        }
    }

    /// An agent sending `Authorization: Bearer <token>`.
    pub fn with_bearer(url: &str, token: &str) -> Agent {
        let mut agent = Agent::new(url);
        agent
            .headers
            .push(("authorization".into(), format!("Bearer {token}")));
        agent
    }

    fn with_own_headers(&self, mut builder: http::request::Builder) -> http::request::Builder {
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder
    }

    /// Send a request exactly as built.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        let response = tokio::time::timeout(Duration::from_secs(20), self.http.request(request))
            .await
            .expect("Warden answered within 20s")
            .expect("HTTP exchange");
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(20), body.collect())
            .await
            .expect("body within 20s")
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// A POST with the headers a well-behaved client sends.
    pub fn post_request(&self, body: impl Into<Bytes>) -> http::request::Builder {
        let mut builder = Request::post(&self.url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT_BOTH);
        if let Some(session) = &self.session {
            builder = builder
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", &self.protocol_version);
        }
        let _ = body;
        self.with_own_headers(builder)
    }

    pub async fn post_raw(&self, body: impl Into<Bytes>) -> Reply {
        let body = body.into();
        let request = self
            .post_request(body.clone())
            .body(Full::new(body))
            .expect("request");
        self.send(request).await
    }

    pub async fn post(&self, message: &Value) -> Reply {
        self.post_raw(message.to_string()).await
    }

    /// GET the session's stream resuming after `last_event_id`, read to
    /// its end.
    pub async fn resume(&self, last_event_id: &str) -> Reply {
        let get = self
            .with_own_headers(Request::get(&self.url))
            .header("accept", "text/event-stream")
            .header("mcp-session-id", self.session.clone().expect("session"))
            .header("mcp-protocol-version", &self.protocol_version)
            .header("last-event-id", last_event_id)
            .body(Full::new(Bytes::new()))
            .expect("request");
        self.send(get).await
    }

    /// POST `message` and hand back the reply's body unread (a stream
    /// the test reads as it goes).
    pub async fn post_streaming(&self, message: &Value) -> Incoming {
        let body = Bytes::from(message.to_string());
        let request = self
            .post_request(body.clone())
            .body(Full::new(body))
            .expect("request");
        let response = self.http.request(request).await.expect("POST");
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body()
    }

    /// Open the session's GET stream (status checked), left unread.
    pub async fn open_get_stream(&self) -> Incoming {
        let get = self
            .with_own_headers(Request::get(&self.url))
            .header("accept", "text/event-stream")
            .header("mcp-session-id", self.session.clone().expect("session"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = self.http.request(get).await.expect("GET stream");
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body()
    }

    pub async fn initialize(&mut self) -> Reply {
        self.initialize_with(json!({})).await
    }

    pub async fn initialize_with(&mut self, capabilities: Value) -> Reply {
        let reply = self
            .post(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": self.protocol_version,
                    "capabilities": capabilities,
                    "clientInfo": {"name": "warden-it", "version": "1"}
                }}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "initialize: {:?}", reply.body);
        self.session = reply.session();
        let notified = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(notified.status, StatusCode::ACCEPTED);
        reply
    }

    pub async fn call(&self, id: u64, tool: &str, arguments: Value) -> Reply {
        self.post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}))
            .await
    }

    pub async fn list(&self, id: u64) -> Reply {
        self.post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}}))
            .await
    }
}

/// Assert a reply is a JSON-RPC error with this HTTP status and code, and
/// return its message.
pub fn assert_error(reply: &Reply, status: StatusCode, code: i64) -> String {
    assert_eq!(
        reply.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&reply.body)
    );
    let value = reply.json();
    assert_eq!(value["jsonrpc"], "2.0");
    assert_eq!(value["error"]["code"], code, "{value}");
    value["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned()
}

/// Assert a reply is Warden's refusal of `tool` for `reason`.
pub fn assert_refused(reply: &Reply, tool: &str, reason: &str) {
    assert_eq!(reply.status, StatusCode::OK);
    let value = reply.json();
    let result = &value["result"];
    assert_eq!(result["isError"], true, "{value}");
    assert_eq!(
        result["structuredContent"]["warden"]["decision"], "deny",
        "{value}"
    );
    assert_eq!(
        result["structuredContent"]["warden"]["reason"], reason,
        "{value}"
    );
    assert_eq!(
        result["structuredContent"]["warden"]["tool"], tool,
        "{value}"
    );
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains(tool))
    );
}

/// The upstream's session id in scripted upstreams (never shown to agents).
pub const UPSTREAM_SESSION: &str = "upstream-secret-session";

/// The JSON-RPC id of a request body (`null` when absent or unreadable).
pub fn id_of(body: &Bytes) -> Value {
    serde_json::from_slice::<Value>(body)
        .map(|v| v["id"].clone())
        .unwrap_or(Value::Null)
}

/// The JSON-RPC method of a request body (empty when absent).
pub fn method_of(body: &Bytes) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["method"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What every scripted upstream answers the same way: `initialize` (with an
/// upstream session id) and messages without an id (202). `None` for the
/// rest, which the test scripts itself.
pub fn handshake(body: &Bytes) -> Option<Response<TestBody>> {
    if method_of(body) == "initialize" {
        let mut response = json_response(&json!({"jsonrpc": "2.0", "id": id_of(body), "result": {
            "protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
            "serverInfo": {"name": "scripted", "version": "1"}}}));
        response
            .headers_mut()
            .insert("mcp-session-id", UPSTREAM_SESSION.parse().expect("header"));
        return Some(response);
    }
    id_of(body).is_null().then(|| {
        Response::builder()
            .status(202)
            .body(full_body(""))
            .expect("response")
    })
}

/// An `initialize` request with this id.
pub fn initialize_request(id: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "warden-it", "version": "1"}}})
}

/// After `initialize`, a request whose `MCP-Protocol-Version` names no
/// stateful revision is answered 400 (as a Streamable HTTP server must),
/// one naming a stateful revision, or none, goes through. For upstreams
/// behind a bridge, which never see the agent's headers.
pub async fn assert_protocol_version_is_checked(agent: &Agent) {
    let list = json!({"jsonrpc": "2.0", "id": "v-1", "method": "tools/list"});
    for bad in ["1999-01-01", "2026-07-28", "latest"] {
        let mut wrong = agent.clone();
        wrong.protocol_version = bad.into();
        let reply = wrong.post(&list).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {reply:?}");
        let error = &reply.json()["error"];
        assert_eq!(error["data"]["requested"], bad, "{error}");
        assert_eq!(
            error["data"]["supported"],
            json!(["2025-11-25", "2025-06-18", "2025-03-26"]),
            "a session can use only the stateful revisions: {error}"
        );
    }
    for good in ["2025-03-26", "2025-06-18", "2025-11-25"] {
        let mut right = agent.clone();
        right.protocol_version = good.into();
        let reply = right.post(&list).await;
        assert_eq!(reply.status, StatusCode::OK, "{good}: {reply:?}");
        assert!(reply.response()["result"]["tools"].is_array(), "{good}");
    }
    let mut bare = agent
        .post_request(list.to_string())
        .body(Full::new(Bytes::from(list.to_string())))
        .expect("request");
    bare.headers_mut().remove("mcp-protocol-version");
    let reply = agent.send(bare).await;
    assert_eq!(reply.status, StatusCode::OK, "no header means 2025-03-26");
}

/// Wait (up to 10 s) until something listens on loopback `port`.
pub async fn wait_listening(port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The machine's PostgreSQL server (trust auth), for the tests of the
/// PostgreSQL audit table and approval queue.
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema of a test's own on [`POSTGRES`] (`warden_it_<tag>_<random>`),
/// dropped with everything in it when the guard goes.
pub struct PgSchema(pub String);

impl PgSchema {
    pub fn new(tag: &str) -> PgSchema {
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).expect("random");
        let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        PgSchema(format!("warden_it_{tag}_{suffix}"))
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .env("PGOPTIONS", "-c client_min_messages=warning")
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-c",
            ])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0))
            .status();
    }
}
