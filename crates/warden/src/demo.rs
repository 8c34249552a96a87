//! `warden demo`: Warden on its embedded defaults in front of the demo MCP
//! server, both in this process, with a scripted showcase: a read call
//! passing, a write refused, a held tool previewed with `dryRun`, one held
//! call approved and another rejected through the admin API (as an operator
//! would, with the demo approver's token), and the audit trail of it all.
//!
//! Everything lives in the demo's directory (a new one under the system's
//! temporary directory unless `--audit-dir` names one): the audit trail and
//! the approval queue's SQLite file. The approver's token is made afresh at
//! every start; Warden keeps only its SHA-256.

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

use crate::approvals::ApprovalsConfig;
use crate::audit::AuditConfig;
use crate::config::{Config, Limits, RouteConfig, UpstreamConfig};

/// The demo route's policy, embedded so the demo needs no file.
pub const DEMO_POLICY: &str = include_str!("../../../policies/demo.yaml");

/// The demo's one approver, whose token the demo prints.
pub const DEMO_APPROVER: &str = "demo-approver";

/// How long a held call without a progress token waits for a decision
/// before it answers "pending": short, so that nothing in the demo (nor a
/// held call of the user's own) sits for the default 45 s.
pub const DEMO_HOLD_BUDGET: Duration = Duration::from_secs(5);

/// The held tool's showcase calls: previewed, approved, rejected.
const HELD_TOOL: &str = "send_invoice";

/// Why the showcase's approver rejects the second invoice (the agent is
/// told it).
const REJECTION: &str = "Grace is billed yearly, not per call";

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
    /// The demo's directory (audit trail, approval queue) cannot be made.
    #[error("cannot create the demo's directory {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// No randomness for the approver's token.
    #[error("a fresh approver token")]
    Token(#[from] getrandom::Error),
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
    /// Where its approval queue is (a SQLite file beside the trail).
    pub approvals_store: PathBuf,
    /// The token of [`DEMO_APPROVER`], made at start: it logs in to the
    /// approvals page and decides through the admin API.
    pub approver_token: String,
}

/// A fresh directory for a demo's audit trail and approval queue, under
/// the system's temporary directory.
pub fn default_audit_dir() -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("warden-demo-{stamp}-{}", std::process::id()))
}

/// Start the demo server and Warden in front of it, auditing to
/// `audit_dir` and keeping the approval queue there, with the admin
/// listener (the approvals API and page) on `admin`.
pub async fn start(
    listen: SocketAddr,
    admin: SocketAddr,
    audit_dir: &Path,
) -> Result<RunningDemo, DemoError> {
    let demo = Arc::new(Demo::default());
    let upstream = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let upstream_addr = upstream.local_addr()?;
    tokio::spawn(warden_demo::serve_with(upstream, demo.clone()));
    let url: Uri = format!("http://{upstream_addr}/mcp")
        .parse()
        .map_err(|_| DemoError::Showcase("demo upstream url".into()))?;
    std::fs::create_dir_all(audit_dir).map_err(|source| DemoError::Dir {
        path: audit_dir.to_path_buf(),
        source,
    })?;
    let audit = AuditConfig::in_dir(audit_dir, "warden-demo");
    let approvals_store = audit_dir.join("approvals.db");
    let approver_token = warden_identity::api_key::new_key()?;
    let digest = warden_identity::api_key::parse_digest(&warden_identity::api_key::digest_hex(
        &approver_token,
    ))
    .ok_or_else(|| DemoError::Showcase("the approver token's digest".into()))?;
    let approvals = ApprovalsConfig {
        store: warden_approvals::StoreLocation::Sqlite(approvals_store.clone()),
        hold_budget: DEMO_HOLD_BUDGET,
        approvers: vec![(digest, DEMO_APPROVER.into())],
        progress_every: Duration::from_secs(5),
        identity: None,
        request_state_key: None,
        slack: None,
        webhook: None,
    };
    let config = Config {
        listen,
        admin: Some(admin),
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
        approvals: Some(approvals),
    };
    let warden = crate::start(&config).await?;
    Ok(RunningDemo {
        warden,
        demo,
        upstream_addr,
        audit,
        approvals_store,
        approver_token,
    })
}

/// Run the scripted showcase against the demo, printing what happens.
/// Returns an error if Warden did not behave as the demo promises.
pub async fn showcase(running: &RunningDemo) -> Result<(), DemoError> {
    let url = format!("http://{}/mcp", running.warden.mcp_addr);
    let admin = running
        .warden
        .admin_addr
        .ok_or_else(|| DemoError::Showcase("the demo runs without an admin listener".into()))?;
    let approver = Approver::new(admin, &running.approver_token)?;
    let mut client = McpClient::new(&url)?;
    println!();
    println!("Warden demo");
    println!(
        "  demo MCP server  http://{}/mcp   (in this process)",
        running.upstream_addr
    );
    println!("  Warden           {url}   (policy: policies/demo.yaml, read-only by default)");
    println!("  admin            http://{admin}/metrics, the approvals API and page");
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
    println!(
        "   (create_note is hidden: the policy does not allow it; send_invoice is listed, but every real call waits for a human)"
    );
    if names.contains(&"create_note")
        || !names.contains(&HELD_TOOL)
        || !names.contains(&"search_customers")
    {
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
    let refused = client
        .call(
            "create_note",
            json!({"customer_id": 1, "text": "called about invoice"}),
        )
        .await?;
    report(3, "create_note", "a write tool with no rule", &refused);
    if refused["isError"] != true || refused["structuredContent"]["warden"]["decision"] != "deny" {
        return Err(DemoError::Showcase("create_note was not refused".into()));
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

    // The held tool: previewed, then approved, then rejected.
    let invoice = json!({"customer_id": 1, "amount_cents": 990000});
    let mut preview = invoice.clone();
    preview["dryRun"] = json!(true);
    let previewed = client.call(HELD_TOOL, preview).await?;
    println!(
        "4. tools/call {HELD_TOOL} with \"dryRun\": true (a tool that needs approval) -> PREVIEW"
    );
    println!("   Warden answers: {}", text_of(&previewed));
    println!(
        "   The demo server sent {}: a preview needs neither a human nor the upstream.",
        invoices(running.demo.invoices_sent())
    );
    if previewed["isError"] == true
        || previewed["structuredContent"]["warden"]["decision"] != "dry-run"
        || !text_of(&previewed).starts_with("DRY RUN")
        || running.demo.invoices_sent() != 0
    {
        return Err(DemoError::Showcase(format!(
            "the preview was not a dry run: {previewed}"
        )));
    }

    let approved = held_call(
        &mut client,
        &approver,
        Held {
            step: 5,
            what: "the same call, for real",
            arguments: invoice,
            rationale: "Ada asked for her March invoice.",
            rejection: None,
        },
    )
    .await?;
    println!(
        "   the agent gets the upstream's answer: {}",
        text_of(&approved)
    );
    println!(
        "   The demo server sent {}: the approved call ran, once.",
        invoices(running.demo.invoices_sent())
    );
    if approved["isError"] == true || running.demo.invoices_sent() != 1 {
        return Err(DemoError::Showcase(format!(
            "the approved call did not run once: {approved}"
        )));
    }

    let rejected = held_call(
        &mut client,
        &approver,
        Held {
            step: 6,
            what: "another customer",
            arguments: json!({"customer_id": 2, "amount_cents": 4500}),
            rationale: "Grace's usage this week.",
            rejection: Some(REJECTION),
        },
    )
    .await?;
    println!("   the model reads: {}", text_of(&rejected));
    println!(
        "   The demo server still sent {}: a rejected call never reaches it.",
        invoices(running.demo.invoices_sent())
    );
    let told = text_of(&rejected);
    if rejected["isError"] != true
        || rejected["structuredContent"]["warden"]["decision"] != "rejected"
        || !told.contains(DEMO_APPROVER)
        || !told.contains(REJECTION)
        || running.demo.invoices_sent() != 1
    {
        return Err(DemoError::Showcase(format!(
            "the rejected call was not refused as rejected: {rejected}"
        )));
    }
    client.end().await?;
    verify_trail(7, running).await?;
    println!("8. The approvals page: http://{admin}/ui/   (both decisions are in its history)");
    println!(
        "   log in as {DEMO_APPROVER} with this token (made for this run; Warden keeps only its SHA-256):"
    );
    println!("   {}", running.approver_token);
    println!();
    Ok(())
}

/// What to tell the user once the showcase is over and the demo keeps
/// serving: how to hold a call of their own and decide it on the page.
pub fn try_it_yourself(running: &RunningDemo) -> String {
    let mcp = format!("http://{}/mcp", running.warden.mcp_addr);
    let headers =
        "-H 'content-type: application/json' -H 'accept: application/json, text/event-stream'";
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#;
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"{HELD_TOOL}","arguments":{{"customer_id":3,"amount_cents":4200}},"_meta":{{"progressToken":1}}}}}}"#
    );
    format!(
        "Warden keeps serving: point any MCP client at {mcp} (Ctrl-C to stop).\n\
         Hold a call of your own, then approve or reject it on the page; with a progress token it waits until you decide:\n  \
         S=$(curl -si {mcp} {headers} -d '{initialize}' | tr -d '\\r' | sed -n 's/^mcp-session-id: //Ip')\n  \
         curl -sN {mcp} {headers} -H 'mcp-protocol-version: 2025-11-25' -H \"mcp-session-id: $S\" -d '{call}'"
    )
}

/// One held call of the showcase and how the approver decides it.
struct Held {
    step: u32,
    what: &'static str,
    arguments: Value,
    rationale: &'static str,
    /// `None`: approve; `Some(reason)`: reject, telling the agent why.
    rejection: Option<&'static str>,
}

/// One held call: the agent's request waits while the approver finds it
/// in the queue and decides it through the admin API, as an operator
/// would. Returns what the agent got.
async fn held_call(
    client: &mut McpClient,
    approver: &Approver,
    held: Held,
) -> Result<Value, DemoError> {
    let mut agent = client.beside();
    let arguments = held.arguments.clone();
    let call = async move {
        agent
            .call_with_meta(
                HELD_TOOL,
                arguments,
                json!({"warden/rationale": held.rationale}),
            )
            .await
    };
    let decide = async {
        let id = approver.staged(HELD_TOOL, &held.arguments).await?;
        println!(
            "{}. tools/call {HELD_TOOL} ({}) -> HELD for approval {id}",
            held.step, held.what
        );
        let (verb, body) = match held.rejection {
            None => ("approve", None),
            Some(reason) => ("reject", Some(json!({"reason": reason}))),
        };
        println!("   the agent's request waits; the approver {verb}s it through the admin API:");
        let path = format!("/approvals/{id}/{verb}");
        let decided = approver.post(&path, body.as_ref()).await?;
        let status = decided["status"].as_str().unwrap_or("?");
        match &body {
            Some(body) => println!("   POST {}{path} {body} -> {status}", approver.base),
            None => println!("   POST {}{path} -> {status}", approver.base),
        }
        let expected = if held.rejection.is_some() {
            "rejected"
        } else {
            "approved"
        };
        if status != expected {
            return Err(DemoError::Showcase(format!(
                "approval {id} is {status}, not {expected}"
            )));
        }
        Ok(())
    };
    let (result, ()) = tokio::try_join!(call, decide)?;
    Ok(result)
}

/// The showcase's last step: the audit trail of what just happened,
/// checked as `warden audit verify` checks it.
async fn verify_trail(step: u32, running: &RunningDemo) -> Result<(), DemoError> {
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
        "{step}. Every call and decision above is on the audit trail in {}",
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

fn invoices(sent: u64) -> String {
    match sent {
        1 => "1 invoice".to_owned(),
        n => format!("{n} invoices"),
    }
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

fn report(step: u32, tool: &str, what: &str, result: &Value) {
    let text = text_of(result);
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

/// The demo approver on the admin API, as an operator's script would be.
struct Approver {
    http: Client<HttpConnector, Full<Bytes>>,
    /// `http://<admin>`.
    base: String,
    authorization: HeaderValue,
}

impl Approver {
    fn new(admin: SocketAddr, token: &str) -> Result<Approver, DemoError> {
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| DemoError::Showcase("the approver token is not a header value".into()))?;
        authorization.set_sensitive(true);
        Ok(Approver {
            http: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{admin}"),
            authorization,
        })
    }

    /// One API request; anything but `200` is the showcase failing.
    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, DemoError> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(
                body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())),
            ))
            .map_err(|e| DemoError::Showcase(e.to_string()))?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.http.request(request))
            .await
            .map_err(|_| {
                DemoError::Showcase(format!("the admin API did not answer {path} within 10s"))
            })?
            .map_err(|e| DemoError::Showcase(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| DemoError::Showcase(e.to_string()))?
            .to_bytes();
        if status != http::StatusCode::OK {
            return Err(DemoError::Showcase(format!(
                "{path}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| DemoError::Showcase(format!("{path}: unreadable reply: {e}")))
    }

    async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, DemoError> {
        self.send(http::Method::POST, path, body).await
    }

    /// The id of the pending approval of `tool` with `arguments`, once the
    /// hold has staged it (within the hold budget).
    async fn staged(&self, tool: &str, arguments: &Value) -> Result<String, DemoError> {
        let deadline = tokio::time::Instant::now() + DEMO_HOLD_BUDGET;
        loop {
            let queue = self
                .send(http::Method::GET, "/approvals?status=pending", None)
                .await?;
            let found = queue.as_array().and_then(|queue| {
                queue
                    .iter()
                    .find(|a| a["tool"] == tool && a["arguments"] == *arguments)
                    .and_then(|a| a["id"].as_str())
            });
            if let Some(id) = found {
                return Ok(id.to_owned());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DemoError::Showcase(format!(
                    "the call to {tool} was never held for approval"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

    async fn call_with_meta(
        &mut self,
        tool: &str,
        arguments: Value,
        meta: Value,
    ) -> Result<Value, DemoError> {
        self.request(
            "tools/call",
            json!({"name": tool, "arguments": arguments, "_meta": meta}),
        )
        .await
    }

    /// A second client on the same session, for a request made while this
    /// one goes on (a held call); it takes this client's next request id.
    fn beside(&mut self) -> McpClient {
        let other = McpClient {
            http: self.http.clone(),
            url: self.url.clone(),
            session: self.session.clone(),
            next_id: self.next_id,
        };
        self.next_id += 1;
        other
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

#[cfg(test)]
mod tests {
    use warden_approvals::{Status, Verdict};

    use super::*;

    fn loopback() -> SocketAddr {
        ([127, 0, 0, 1], 0).into()
    }

    /// What the showcase left behind, read from the queue, the demo server
    /// and the trail rather than from what it printed.
    #[tokio::test]
    async fn the_showcase_previews_the_held_tool_then_one_call_is_approved_and_one_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = start(loopback(), loopback(), dir.path())
            .await
            .expect("the demo starts");
        let started = std::time::Instant::now();
        showcase(&running)
            .await
            .expect("the showcase keeps its promises");
        assert!(
            started.elapsed() < DEMO_HOLD_BUDGET,
            "no held call waited out its budget: {:?}",
            started.elapsed()
        );

        // One invoice sent (the approved call), no note; the preview and the
        // rejected call never reached the server.
        assert_eq!(running.demo.invoices_sent(), 1);
        assert_eq!(running.demo.notes_written(), 0);

        // The queue is the SQLite file in the demo's directory, and holds
        // the two held calls, newest first.
        assert!(running.approvals_store.starts_with(dir.path()));
        assert!(running.approvals_store.is_file());
        let approvals = running.warden.warden.approvals.as_ref().expect("a queue");
        let queue = approvals.store.list(None, 10).await.expect("the queue");
        assert_eq!(queue.len(), 2, "{queue:?}");
        let (rejected, approved) = (&queue[0], &queue[1]);
        assert_eq!(approved.call.tool, HELD_TOOL);
        assert_eq!(approved.status, Status::Approved);
        assert!(approved.executed_ms.is_some(), "the approved call ran");
        assert_eq!(approved.votes.len(), 1);
        assert_eq!(approved.votes[0].approver, DEMO_APPROVER);
        assert_eq!(approved.votes[0].verdict, Verdict::Approve);
        assert_eq!(
            serde_json::from_str::<Value>(&approved.call.arguments).expect("json"),
            json!({"customer_id": 1, "amount_cents": 990000})
        );
        assert_eq!(rejected.status, Status::Rejected);
        assert_eq!(rejected.executed_ms, None, "a rejected call never runs");
        assert_eq!(rejected.reason.as_deref(), Some(REJECTION));
        assert_eq!(rejected.votes[0].approver, DEMO_APPROVER);
        assert_eq!(rejected.votes[0].verdict, Verdict::Reject);
        assert_ne!(rejected.arguments_digest, approved.arguments_digest);

        // The printed token is the demo approver's, and it is fresh.
        assert!(running.approver_token.starts_with("wdn_"));
        assert_eq!(
            approvals
                .approver(&running.approver_token)
                .map(|a| a.name.to_string())
                .as_deref(),
            Some(DEMO_APPROVER)
        );

        // The trail has the preview (answered by Warden, so a refusal
        // record), both decisions and the rejection the agent was told.
        let mut kinds = Vec::new();
        for file in warden_audit::file::trail_files(std::slice::from_ref(&running.audit.dir))
            .expect("trail files")
        {
            let text = std::fs::read_to_string(&file).expect("trail");
            for line in text.lines() {
                let record: Value = serde_json::from_str(line).expect("a record");
                kinds.push((
                    record["kind"].as_str().unwrap_or_default().to_owned(),
                    record["decision"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        for expected in [
            ("refusal", "dry-run"),
            ("approval_requested", "pending"),
            ("approval_decided", "approved"),
            ("approval_decided", "rejected"),
            ("refusal", "rejected"),
        ] {
            assert!(
                kinds
                    .iter()
                    .any(|(k, d)| (k.as_str(), d.as_str()) == expected),
                "{expected:?} in {kinds:?}"
            );
        }
        running.warden.shutdown().await;
    }

    #[tokio::test]
    async fn every_demo_has_its_own_approver_token() {
        let (one, two) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let first = start(loopback(), loopback(), one.path())
            .await
            .expect("starts");
        let second = start(loopback(), loopback(), two.path())
            .await
            .expect("starts");
        assert_ne!(first.approver_token, second.approver_token);
        let queue = second.warden.warden.approvals.as_ref().expect("a queue");
        assert_eq!(queue.approver(&first.approver_token), None);
        first.warden.shutdown().await;
        second.warden.shutdown().await;
    }

    #[test]
    fn the_embedded_policy_holds_only_the_irreversible_tool_for_approval() {
        use warden_policy::Tier;
        let policy = Policy::from_yaml_str(DEMO_POLICY, "policies/demo.yaml").expect("valid");
        assert_eq!(policy.rule(HELD_TOOL), Some(Tier::Approve));
        // The other write keeps no rule: refused, as the showcase shows.
        assert_eq!(policy.rule("create_note"), None);
    }
}
