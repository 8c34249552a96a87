//! `warden demo`: Warden on its embedded defaults in front of the demo MCP
//! server, both in this process, with a scripted showcase that shows a read
//! call passing and write calls refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use warden_demo::Demo;
use warden_policy::Policy;

use crate::audit::AuditConfig;
use crate::config::{Config, Limits, RouteConfig, UpstreamConfig};

/// The demo route's policy, embedded so the demo needs no file.
pub const DEMO_POLICY: &str = include_str!("../../../policies/demo.yaml");

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The embedded policy is invalid (a build defect).
    #[error("embedded demo policy")]
    Policy(#[from] warden_policy::PolicyError),
    /// A listener could not be bound.
    #[error(transparent)]
    Start(#[from] crate::StartError),
    /// The demo server could not listen.
    #[error("demo MCP server")]
    Io(#[from] std::io::Error),
    /// The showcase client failed.
    #[error("showcase: {0}")]
    Showcase(String),
}

/// A running demo: the demo server, Warden in front of it.
pub struct RunningDemo {
    /// Warden.
    pub warden: crate::Running,
    /// The demo server's state (how many invoices it sent…).
    pub demo: Arc<Demo>,
    /// The demo server's address.
    pub upstream_addr: SocketAddr,
    /// Where its audit trail is.
    pub audit: AuditConfig,
}

/// A fresh directory for a demo's audit trail, under the system's
/// temporary directory.
pub fn default_audit_dir() -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("warden-demo-{stamp}-{}", std::process::id()))
}

/// Start the demo server and Warden in front of it, auditing to
/// `audit_dir`.
pub async fn start(
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    audit_dir: &Path,
) -> Result<RunningDemo, DemoError> {
    let demo = Arc::new(Demo::default());
    let upstream = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let upstream_addr = upstream.local_addr()?;
    tokio::spawn(warden_demo::serve_with(upstream, demo.clone()));
    let url: Uri = format!("http://{upstream_addr}/mcp")
        .parse()
        .map_err(|_| DemoError::Showcase("demo upstream url".into()))?;
    let audit = AuditConfig::in_dir(audit_dir, "warden-demo");
    let config = Config {
        listen,
        admin,
        workers: crate::config::default_workers(),
        limits: Limits::default(),
        routes: vec![RouteConfig {
            path: "/mcp".into(),
            upstream: UpstreamConfig::new(url),
            policy: Policy::from_yaml_str(DEMO_POLICY, "policies/demo.yaml (embedded)")?,
            policy_origin: "policies/demo.yaml (embedded)".into(),
            policy_file: None,
            allowed_origins: Vec::new(),
            allowed_hosts: None,
            auth: None,
            credentials: Vec::new(),
            base_credential: None,
        }],
        audit: Some(audit.clone()),
        tls: None,
        admin_tls: None,
        approvals: None,
    };
    let warden = crate::start(&config).await?;
    Ok(RunningDemo {
        warden,
        demo,
        upstream_addr,
        audit,
    })
}

/// Run the scripted showcase against the demo, printing what happens.
/// Returns an error if Warden did not behave as the demo promises.
pub async fn showcase(running: &RunningDemo) -> Result<(), DemoError> {
    let url = format!("http://{}/mcp", running.warden.mcp_addr);
    let mut client = McpClient::new(&url)?;
    println!();
    println!("Warden demo");
    println!(
        "  demo MCP server  http://{}/mcp   (in this process)",
        running.upstream_addr
    );
    println!("  Warden           {url}   (policy: policies/demo.yaml, read-only by default)");
    if let Some(admin) = running.warden.admin_addr {
        println!("  admin            http://{admin}/metrics");
    }
    println!();
    client
        .request(
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "warden-demo-showcase", "version": env!("CARGO_PKG_VERSION")}
            }),
        )
        .await?;
    client.notify("notifications/initialized").await?;

    let listed = client.request("tools/list", json!({})).await?;
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .map(|tools| tools.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    println!("1. tools/list through Warden shows: {}", names.join(", "));
    println!("   (create_note and send_invoice are hidden: the policy does not allow them)");
    if names.contains(&"send_invoice") || !names.contains(&"search_customers") {
        return Err(DemoError::Showcase(format!(
            "unexpected tool list: {names:?}"
        )));
    }

    let read = client
        .call("search_customers", json!({"query": "ada"}))
        .await?;
    report(2, "search_customers", "a read-only tool", &read);
    if read["isError"] == true {
        return Err(DemoError::Showcase("the read call was refused".into()));
    }
    for (step, tool, args, what) in [
        (
            3,
            "create_note",
            json!({"customer_id": 1, "text": "called about invoice"}),
            "a write tool with no rule",
        ),
        (
            4,
            "send_invoice",
            json!({"customer_id": 1, "amount_cents": 990000}),
            "a tool the policy denies",
        ),
    ] {
        let refused = client.call(tool, args).await?;
        report(step, tool, what, &refused);
        if refused["isError"] != true
            || refused["structuredContent"]["warden"]["decision"] != "deny"
        {
            return Err(DemoError::Showcase(format!("{tool} was not refused")));
        }
    }
    println!(
        "   The demo server wrote {} notes and sent {} invoices: refused calls never reach it.",
        running.demo.notes_written(),
        running.demo.invoices_sent()
    );
    if running.demo.invoices_sent() != 0 || running.demo.notes_written() != 0 {
        return Err(DemoError::Showcase(
            "a refused call reached the upstream".into(),
        ));
    }
    client.end().await?;
    verify_trail(running).await?;
    println!();
    Ok(())
}

/// The showcase's last step: the audit trail of what just happened,
/// checked as `warden audit verify` checks it.
async fn verify_trail(running: &RunningDemo) -> Result<(), DemoError> {
    let audit = running
        .warden
        .warden
        .audit
        .as_ref()
        .ok_or_else(|| DemoError::Showcase("the demo runs without an audit trail".into()))?;
    audit
        .flush()
        .await
        .map_err(|e| DemoError::Showcase(e.to_string()))?;
    let (key, _) = warden_audit::chain::load_or_create_key(&running.audit.signing_key)
        .map_err(|e| DemoError::Showcase(e.to_string()))?;
    let public_key = warden_audit::chain::public_key_text(&key);
    let report = warden_audit::verify::verify_files(
        std::slice::from_ref(&running.audit.dir),
        Some(key.verifying_key()),
    )
    .map_err(|e| DemoError::Showcase(e.to_string()))?;
    println!(
        "5. Every call above, refused or not, is on the audit trail in {}",
        running.audit.dir.display()
    );
    for chain in &report.chains {
        match &chain.outcome {
            Ok(summary) => println!("   verified: {summary}"),
            Err(problem) => println!("   VERIFY FAILED: {problem}"),
        }
    }
    println!(
        "   check it yourself: warden audit verify {} --public-key {public_key}",
        running.audit.dir.display()
    );
    if !report.is_ok() {
        return Err(DemoError::Showcase("the audit trail did not verify".into()));
    }
    Ok(())
}

fn report(step: u32, tool: &str, what: &str, result: &Value) {
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    if result["isError"] == true {
        let reason = result["structuredContent"]["warden"]["reason"]
            .as_str()
            .unwrap_or("?");
        println!("{step}. tools/call {tool} ({what}) -> REFUSED [{reason}]");
        println!("   the model reads: {text}");
    } else {
        println!("{step}. tools/call {tool} ({what}) -> ALLOWED");
        println!("   the upstream answered: {text}");
    }
}

/// A minimal MCP client for the showcase (JSON or SSE replies).
struct McpClient {
    http: Client<HttpConnector, Full<Bytes>>,
    url: Uri,
    session: Option<HeaderValue>,
    next_id: u64,
}

impl McpClient {
    fn new(url: &str) -> Result<McpClient, DemoError> {
        Ok(McpClient {
            http: Client::builder(TokioExecutor::new()).build_http(),
            url: url
                .parse()
                .map_err(|_| DemoError::Showcase(format!("bad url {url}")))?,
            session: None,
            next_id: 1,
        })
    }

    async fn post(&mut self, body: Value) -> Result<(http::StatusCode, Bytes), DemoError> {
        let mut request = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| DemoError::Showcase(e.to_string()))?;
        if let Some(session) = &self.session {
            request
                .headers_mut()
                .insert("mcp-session-id", session.clone());
            request.headers_mut().insert(
                "mcp-protocol-version",
                HeaderValue::from_static("2025-11-25"),
            );
        }
        let response = tokio::time::timeout(Duration::from_secs(10), self.http.request(request))
            .await
            .map_err(|_| DemoError::Showcase("Warden did not answer within 10s".into()))?
            .map_err(|e| DemoError::Showcase(e.to_string()))?;
        if let Some(session) = response.headers().get("mcp-session-id") {
            self.session = Some(session.clone());
        }
        let status = response.status();
        let is_sse = crate::upstream::is_event_stream(response.headers());
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| DemoError::Showcase(e.to_string()))?
            .to_bytes();
        if !is_sse {
            return Ok((status, bytes));
        }
        let data = String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(str::trim)
            .find(|data| data.contains("\"result\"") || data.contains("\"error\""))
            .unwrap_or_default()
            .to_owned();
        Ok((status, Bytes::from(data)))
    }

    async fn request(&mut self, method: &str, params: Value) -> Result<Value, DemoError> {
        let id = self.next_id;
        self.next_id += 1;
        let (status, bytes) = self
            .post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        let reply: Value = serde_json::from_slice(&bytes).map_err(|e| {
            DemoError::Showcase(format!("{method}: HTTP {status}, unreadable reply: {e}"))
        })?;
        if let Some(error) = reply.get("error") {
            return Err(DemoError::Showcase(format!("{method}: {error}")));
        }
        Ok(reply["result"].clone())
    }

    async fn notify(&mut self, method: &str) -> Result<(), DemoError> {
        self.post(json!({"jsonrpc": "2.0", "method": method}))
            .await
            .map(|_| ())
    }

    async fn call(&mut self, tool: &str, arguments: Value) -> Result<Value, DemoError> {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
    }

    async fn end(&mut self) -> Result<(), DemoError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let request = Request::delete(self.url.clone())
            .header("mcp-session-id", session)
            .body(Full::new(Bytes::new()))
            .map_err(|e| DemoError::Showcase(e.to_string()))?;
        self.http
            .request(request)
            .await
            .map(|_| ())
            .map_err(|e| DemoError::Showcase(e.to_string()))
    }
}
