//! A small MCP server for Warden's demo, tests and benchmarks.
//!
//! Speaks the stateful Streamable HTTP revisions at `/mcp` (POST with JSON
//! replies, DELETE to end a session; no GET stream) and offers a customer
//! directory whose tools carry honest annotations:
//!
//! | tool | annotations |
//! |---|---|
//! | `search_customers`, `get_customer`, `echo` | `readOnlyHint: true` |
//! | `create_note` | `readOnlyHint: false`, `destructiveHint: false` |
//! | `send_invoice` | `readOnlyHint: false`, `destructiveHint: true`, `openWorldHint: true` |
//!
//! It is deliberately fast (no SSE, no allocation-heavy framework) so that
//! benchmarks measure the proxy in front of it, not it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const SUPPORTED_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];
const LATEST_VERSION: &str = "2025-11-25";
const MAX_BODY: usize = 4 << 20;

/// The demo server's state: sessions and the notes written so far.
#[derive(Default)]
pub struct Demo {
    sessions: DashMap<String, ()>,
    notes: DashMap<u64, Vec<String>>,
    invoices_sent: AtomicU64,
}

impl Demo {
    /// How many invoices `send_invoice` has "sent" (tests use it to prove a
    /// refused call never reached the upstream).
    pub fn invoices_sent(&self) -> u64 {
        self.invoices_sent.load(Ordering::Relaxed)
    }

    /// How many notes `create_note` has written.
    pub fn notes_written(&self) -> usize {
        self.notes.iter().map(|n| n.value().len()).sum()
    }
}

/// Serve the demo on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    serve_with(listener, Arc::new(Demo::default())).await
}

/// Serve the demo with shared state the caller can inspect.
pub async fn serve_with(listener: TcpListener, demo: Arc<Demo>) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let demo = demo.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(demo.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    demo: Arc<Demo>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/mcp" {
        return Ok(plain(StatusCode::NOT_FOUND, "not found"));
    }
    let session = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match *req.method() {
        Method::POST => {}
        Method::DELETE => {
            return Ok(match session.and_then(|s| demo.sessions.remove(&s)) {
                Some(_) => plain(StatusCode::OK, ""),
                None => plain(StatusCode::NOT_FOUND, "unknown session"),
            });
        }
        _ => return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "POST or DELETE")),
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return Ok(json_reply(
            StatusCode::BAD_REQUEST,
            None,
            &error(Value::Null, -32700, "parse error"),
        ));
    };
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let id = message.get("id").cloned();
    if method == "initialize" {
        let requested = message
            .pointer("/params/protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(LATEST_VERSION);
        let version = if SUPPORTED_VERSIONS.contains(&requested) {
            requested
        } else {
            LATEST_VERSION
        };
        let session_id = new_session_id();
        demo.sessions.insert(session_id.clone(), ());
        let result = json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": "warden-demo", "version": env!("CARGO_PKG_VERSION")},
        });
        return Ok(json_reply(
            StatusCode::OK,
            Some(&session_id),
            &ok(id.unwrap_or(Value::Null), result),
        ));
    }
    match &session {
        Some(s) if demo.sessions.contains_key(s) => {}
        Some(_) => return Ok(plain(StatusCode::NOT_FOUND, "unknown session")),
        None => return Ok(plain(StatusCode::BAD_REQUEST, "missing Mcp-Session-Id")),
    }
    let Some(id) = id else {
        // Notifications and responses.
        return Ok(plain(StatusCode::ACCEPTED, ""));
    };
    let reply = match method {
        "ping" => ok(id, json!({})),
        "tools/list" => ok(id, json!({"tools": tools()})),
        "tools/call" => {
            let name = message
                .pointer("/params/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let args = message
                .pointer("/params/arguments")
                .cloned()
                .unwrap_or(json!({}));
            match call_tool(&demo, name, &args) {
                Ok(result) => ok(id, result),
                Err(text) => ok(
                    id,
                    json!({"content": [{"type": "text", "text": text}], "isError": true}),
                ),
            }
        }
        other => error(id, -32601, &format!("method not found: {other}")),
    };
    Ok(json_reply(StatusCode::OK, None, &reply))
}

fn tools() -> Value {
    json!([
        {
            "name": "search_customers",
            "description": "Search the customer directory by name.",
            "inputSchema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
            "annotations": {"title": "Search customers", "readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": "get_customer",
            "description": "Fetch one customer by id.",
            "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
            "annotations": {"title": "Get customer", "readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": "echo",
            "description": "Echo a message back.",
            "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}},
            "annotations": {"title": "Echo", "readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": "create_note",
            "description": "Attach a note to a customer record.",
            "inputSchema": {"type": "object", "properties": {"customer_id": {"type": "integer"}, "text": {"type": "string"}}, "required": ["customer_id", "text"]},
            "annotations": {"title": "Create note", "readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false}
        },
        {
            "name": "send_invoice",
            "description": "Email an invoice to a customer. Cannot be undone.",
            "inputSchema": {"type": "object", "properties": {"customer_id": {"type": "integer"}, "amount_cents": {"type": "integer"}}, "required": ["customer_id", "amount_cents"]},
            "annotations": {"title": "Send invoice", "readOnlyHint": false, "destructiveHint": true, "idempotentHint": false, "openWorldHint": true}
        }
    ])
}

const CUSTOMERS: [(u64, &str, &str); 4] = [
    (1, "Ada Lovelace", "ada@example.com"),
    (2, "Grace Hopper", "grace@example.com"),
    (3, "Alan Turing", "alan@example.com"),
    (4, "Katherine Johnson", "katherine@example.com"),
];

fn call_tool(demo: &Demo, name: &str, args: &Value) -> Result<Value, String> {
    let customer = |args: &Value, key: &str| {
        let id = args
            .get(key)
            .and_then(Value::as_u64)
            .ok_or(format!("'{key}' must be a customer id"))?;
        CUSTOMERS
            .iter()
            .find(|c| c.0 == id)
            .ok_or(format!("no customer with id {id}"))
    };
    match name {
        "echo" => {
            let message = args
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(text(message))
        }
        "search_customers" => {
            let query = args
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_lowercase();
            let found: Vec<Value> = CUSTOMERS
                .iter()
                .filter(|c| c.1.to_lowercase().contains(&query))
                .map(|c| json!({"id": c.0, "name": c.1}))
                .collect();
            let summary = format!("{} customer(s) match '{query}'", found.len());
            Ok(
                json!({"content": [{"type": "text", "text": summary}], "structuredContent": {"customers": found}}),
            )
        }
        "get_customer" => {
            let c = customer(args, "id")?;
            Ok(
                json!({"content": [{"type": "text", "text": format!("{} <{}>", c.1, c.2)}], "structuredContent": {"id": c.0, "name": c.1, "email": c.2}}),
            )
        }
        "create_note" => {
            let c = customer(args, "customer_id")?;
            let note = args
                .get("text")
                .and_then(Value::as_str)
                .ok_or("'text' is required")?;
            demo.notes.entry(c.0).or_default().push(note.to_owned());
            Ok(text(&format!("Note added to {}.", c.1)))
        }
        "send_invoice" => {
            let c = customer(args, "customer_id")?;
            let cents = args
                .get("amount_cents")
                .and_then(Value::as_u64)
                .ok_or("'amount_cents' is required")?;
            demo.invoices_sent.fetch_add(1, Ordering::Relaxed);
            Ok(text(&format!(
                "Invoice for ${}.{:02} sent to {}.",
                cents / 100,
                cents % 100,
                c.2
            )))
        }
        other => Err(format!("unknown tool: {other}")),
    }
}

fn text(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}]})
}

fn ok(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn json_reply(status: StatusCode, session: Option<&str>, body: &Value) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(session) = session {
        builder = builder.header("mcp-session-id", session);
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    // The demo runs where getrandom works; a zero id would still be unique enough per process.
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
