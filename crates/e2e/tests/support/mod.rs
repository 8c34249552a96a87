//! Starting the peers: server-everything as an upstream, Warden in front.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden::config::{Config, Limits, RouteConfig, UpstreamConfig};
use warden_policy::Policy;

/// The e2e crate's folder.
pub fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fail with instructions when the pinned peers are not installed.
pub fn require_installed(dir: &Path, what: &str) {
    assert!(
        dir.is_dir(),
        "{} is missing: {what} are installed by `cargo xtask deps` (or `cargo xtask test`)",
        dir.display()
    );
}

/// A child process killed when dropped.
pub struct Peer {
    child: Child,
    pub url: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start server-everything (Streamable HTTP) on a free loopback port.
pub fn server_everything(folder: &str) -> Peer {
    start_everything(folder, &[])
}

/// Start server-everything in its legacy HTTP+SSE mode (MCP 2024-11-05) on a
/// free loopback port; the peer's `url` is the event stream's (`/sse`).
pub fn server_everything_sse(folder: &str) -> Peer {
    start_everything(folder, &["--sse"])
}

fn start_everything(folder: &str, options: &[&str]) -> Peer {
    let dir = e2e_dir().join(folder);
    require_installed(&dir.join("node_modules"), "npm packages");
    let mut command = Command::new("bash");
    command
        .arg(dir.join("start-everything.sh"))
        .args(options)
        .arg("0")
        .current_dir(&dir);
    start_peer(command, "server-everything")
}

/// Start a peer server that prints `READY URL` on stdout once it accepts
/// connections (its stderr is discarded); killed when the `Peer` drops.
pub fn start_peer(mut command: Command, what: &str) -> Peer {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("READY ") {
                let _ = sender.send(url.trim().to_owned());
            }
        }
    });
    match receiver.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => Peer { child, url },
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not print READY within 60s");
        }
    }
}

/// A child process on pipes, killed when dropped: text is written to its
/// stdin, its stdout is read as lines, each parsed as JSON (a line that is
/// not becomes `{"not-json": LINE, "parse-error": WHY}`), and its stderr is
/// kept for failure messages.
///
/// A line ends at LF only, and nothing is stripped from it (not even a CR
/// before the LF): the framing tests need a bare CR to stay inside its line.
/// (A CR before the LF is JSON white space, so a message still parses.)
pub struct LineChild {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    /// Every line read so far (by [`LineChild::next_until`]), in order.
    pub seen: Vec<Value>,
    log: Arc<Mutex<String>>,
}

impl LineChild {
    /// Spawn `command` with all three of its standard streams piped.
    pub fn spawn(mut command: Command) -> LineChild {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).into_owned();
                let value = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|e| json!({"not-json": line, "parse-error": e.to_string()}));
                if sender.send(value).is_err() {
                    break;
                }
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        LineChild {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            log,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What the child wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Write `text` to the child's stdin, as it is (no line end added).
    pub fn write(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(text.as_bytes())
            .expect("write to the child");
        stdin.flush().expect("flush");
    }

    /// The next line (also kept in `seen`), or `None` at `deadline` (or
    /// once stdout closed).
    pub fn next_until(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(message) => {
                self.seen.push(message.clone());
                Some(message)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Read until every id in `ids` has a response (or `deadline`); the
    /// responses by id, those seen before included.
    pub fn responses(&mut self, ids: &[u64], deadline: Instant) -> HashMap<u64, Value> {
        fn response_id(message: &Value) -> Option<u64> {
            message["id"]
                .as_u64()
                .filter(|_| message.get("method").is_none())
        }
        let mut found: HashMap<u64, Value> = self
            .seen
            .iter()
            .filter_map(|message| Some((response_id(message)?, message.clone())))
            .collect();
        while ids.iter().any(|id| !found.contains_key(id)) {
            let Some(message) = self.next_until(deadline) else {
                break;
            };
            if let Some(id) = response_id(&message) {
                found.insert(id, message);
            }
        }
        found
    }

    /// Close stdin and wait up to `limit` for the child to exit: its exit
    /// status, or `None` (and the child killed) when it still ran.
    pub fn finish(&mut self, limit: Duration) -> Option<ExitStatus> {
        drop(self.stdin.take());
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `warden stdio --config CONFIG` (the built binary) with what a desktop app
/// passes: a small environment (PATH, HOME, `WARDEN_LOG=info`), from which
/// Warden resolves nothing else (a config names its commands by path).
pub fn warden_stdio(config: &Path) -> Command {
    let mut command = Command::new(warden_binary());
    command
        .args(["stdio", "--config"])
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("WARDEN_LOG", "info");
    command
}

/// Start Warden in front of `upstream` with `policy` (YAML).
pub async fn warden_in_front_of(upstream: &str, policy: &str) -> warden::Running {
    let config = Config {
        listen: ([127, 0, 0, 1], 0).into(),
        admin: None,
        workers: 2,
        limits: Limits::default(),
        routes: vec![RouteConfig {
            path: "/mcp".into(),
            upstream: UpstreamConfig::new(upstream.parse().expect("upstream url")),
            policy: Policy::from_yaml_str(policy, "e2e policy").expect("valid policy"),
            policy_origin: "e2e".into(),
            policy_file: None,
            allowed_origins: Vec::new(),
            allowed_hosts: None,
            auth: None,
            credentials: Vec::new(),
            base_credential: None,
        }],
        audit: None,
        tls: None,
        admin_tls: None,
        approvals: None,
    };
    warden::start(&config).await.expect("warden starts")
}

/// Run a peer program to completion (off the async runtime), with a time limit.
pub async fn run_peer(mut command: Command, limit: Duration) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start peer");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if child.try_wait().expect("wait").is_some() {
                return child.wait_with_output().expect("output");
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let output = child.wait_with_output().expect("output");
                panic!(
                    "peer ran past {limit:?}:\n{}\n{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("peer task")
}

/// Assert a peer's checks all passed, printing its output either way.
pub fn assert_all_passed(output: &Output, name: &str) -> usize {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("--- {name} stdout ---\n{stdout}\n--- {name} stderr ---\n{stderr}");
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.ends_with(" failed") && l.contains(" passed, "))
        .unwrap_or_else(|| panic!("{name} printed no summary line"));
    let passed: usize = summary
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(summary.ends_with(", 0 failed"), "{name}: {summary}");
    assert!(
        output.status.success(),
        "{name} exited with {}",
        output.status
    );
    assert!(passed > 0, "{name} ran no check");
    passed
}

/// The `warden` binary built beside the test (by `cargo test --workspace`,
/// for the warden package's own tests, or `cargo build -p warden`).
pub fn warden_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = dir.join("warden");
    assert!(
        binary.is_file(),
        "{} is missing: build it with `cargo build -p warden` (cargo xtask test does)",
        binary.display()
    );
    binary
}

/// The absolute path of `program` on this process's `PATH`.
pub fn on_path(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

/// A YAML string literal (double-quoted, JSON escapes are valid YAML).
pub fn yaml_str(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// The transport Warden uses to reach server-everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// Streamable HTTP, on a loopback port.
    StreamableHttp,
    /// Legacy HTTP+SSE (2024-11-05), on a loopback port.
    LegacySse,
    /// A child process Warden spawns (one per agent session), over stdio.
    Stdio,
}

/// server-everything as an upstream: the running server (HTTP kinds), and
/// the `upstream:` block of a Warden config that reaches it.
pub struct EverythingUpstream {
    /// The HTTP server, killed on drop; `None` for stdio (Warden starts it).
    pub server: Option<Peer>,
    /// The YAML mapping under `upstream:`, each line indented by 6 spaces
    /// (for `routes: - path: ... upstream:`).
    pub yaml: String,
}

/// Make server-everything available over `kind` (peers in `folder`).
pub fn everything_upstream(folder: &str, kind: UpstreamKind) -> EverythingUpstream {
    match kind {
        UpstreamKind::StreamableHttp => {
            let server = server_everything(folder);
            let yaml = format!("      url: {}\n", yaml_str(&server.url));
            EverythingUpstream {
                server: Some(server),
                yaml,
            }
        }
        UpstreamKind::LegacySse => {
            let server = server_everything_sse(folder);
            let yaml = format!(
                "      url: {}\n      transport: sse\n",
                yaml_str(&server.url)
            );
            EverythingUpstream {
                server: Some(server),
                yaml,
            }
        }
        UpstreamKind::Stdio => {
            let dir = e2e_dir().join(folder);
            require_installed(&dir.join("node_modules"), "npm packages");
            let entry =
                dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
            assert!(entry.is_file(), "{} is missing", entry.display());
            // `node dist/index.js stdio` is server-everything's stdio mode.
            // The child gets only the environment named here: PATH (node
            // may spawn helpers) and HOME.
            let yaml = format!(
                "      command: {}\n      args: [{}, stdio]\n      inherit_env: [PATH, HOME]\n      cwd: {}\n",
                yaml_str(&on_path("node").display().to_string()),
                yaml_str(&entry.display().to_string()),
                yaml_str(&dir.display().to_string()),
            );
            EverythingUpstream { server: None, yaml }
        }
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory named after `name`, this process and a counter.
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Write a Warden config file (one route `/mcp` in front of `upstream`,
/// with `policy`) into `dir`; returns its path.
pub fn write_config(dir: &Path, upstream: &EverythingUpstream, policy: &str) -> PathBuf {
    std::fs::write(dir.join("policy.yaml"), policy).expect("policy");
    let config = dir.join("warden.yaml");
    let text = format!(
        "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n{}    policy: policy.yaml\n",
        upstream.yaml
    );
    std::fs::write(&config, text).expect("config");
    config
}

/// Start Warden in process from a config file (its listener on a free
/// loopback port, as the file says).
pub async fn warden_from_file(config: &Path) -> warden::Running {
    let config = Config::from_file(config).expect("valid config");
    warden::start(&config).await.expect("warden starts")
}

/// The demo MCP server (`warden-demo`: `send_invoice`, `create_note`, ...)
/// in process on a free loopback port: its URL, and its state (how many
/// invoices it sent, notes it wrote), to prove what ran upstream.
pub async fn demo_upstream() -> (String, Arc<warden_demo::Demo>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let demo = Arc::new(warden_demo::Demo::default());
    tokio::spawn(warden_demo::serve_with(listener, demo.clone()));
    (format!("http://{addr}/mcp"), demo)
}

/// The approver the approval tests configure: `grace`, with this token.
pub const APPROVER_TOKEN: &str = "wdn_e2e-approver-token-000000000000000000000";

/// SHA-256 of `text`, in lowercase hex (an approver token's digest).
pub fn sha256_hex(text: &str) -> String {
    use std::fmt::Write;
    let bytes = <sha2_digest::Sha256 as sha2_digest::Digest>::digest(text.as_bytes());
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Write a Warden config with an approval queue (store in `dir`, approver
/// `grace` holding [`APPROVER_TOKEN`], the given hold budget and progress
/// interval, e.g. `"1s"`), an admin listener on a free port, and one route
/// `/mcp` in front of `upstream_url` with `policy`; returns its path.
pub fn write_approvals_config(
    dir: &Path,
    upstream_url: &str,
    policy: &str,
    hold_budget: &str,
    progress_every: &str,
) -> PathBuf {
    std::fs::write(dir.join("policy.yaml"), policy).expect("policy");
    let config = dir.join("warden.yaml");
    let text = format!(
        "version: 1\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:0\napprovals:\n  hold_budget: {hold_budget}\n  progress_every: {progress_every}\n  approvers:\n    - name: grace\n      sha256: {}\nroutes:\n  - path: /mcp\n    upstream:\n      url: {}\n    policy: policy.yaml\n",
        sha256_hex(APPROVER_TOKEN),
        yaml_str(upstream_url),
    );
    std::fs::write(&config, text).expect("config");
    config
}

/// Warden's approvals API, as approver `grace`.
pub struct Admin {
    addr: std::net::SocketAddr,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

impl Admin {
    /// The admin API of `warden` (which must have an admin listener).
    pub fn of(warden: &warden::Running) -> Admin {
        Admin {
            addr: warden.admin_addr.expect("an admin listener"),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        }
    }

    /// `method path` with `body` (JSON), as grace: the status and the JSON
    /// answer (`null` if it is none).
    pub async fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        use http_body_util::BodyExt;
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("authorization", format!("Bearer {APPROVER_TOKEN}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(
                body.map_or_else(bytes::Bytes::new, |b| bytes::Bytes::from(b.to_string())),
            ))
            .expect("request");
        let response = self.client.request(request).await.expect("admin API");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// The whole queue, or the approvals with `status`.
    pub async fn list(&self, status: Option<&str>) -> Vec<Value> {
        let path = status.map_or_else(
            || "/approvals".to_owned(),
            |s| format!("/approvals?status={s}"),
        );
        let (code, list) = self.request("GET", &path, None).await;
        assert_eq!(code, 200, "GET {path}: {list}");
        list.as_array().cloned().unwrap_or_default()
    }

    /// One approval.
    pub async fn get(&self, id: &str) -> Value {
        let (code, approval) = self.request("GET", &format!("/approvals/{id}"), None).await;
        assert_eq!(code, 200, "GET /approvals/{id}: {approval}");
        approval
    }

    /// The one pending approval, once it is staged (within `limit`).
    pub async fn pending(&self, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let pending = self.list(Some("pending")).await;
            match pending.as_slice() {
                [one] => return one.clone(),
                [] => {}
                more => panic!("more than one approval pending: {more:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "no approval was staged within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Approve (`"approve"`) or reject (`"reject"`, with `reason`) approval
    /// `id`: the approval as the API answers.
    pub async fn decide(&self, id: &str, verdict: &str, reason: Option<&str>) -> Value {
        let body = reason.map(|r| json!({ "reason": r }));
        let (code, approval) = self
            .request("POST", &format!("/approvals/{id}/{verdict}"), body)
            .await;
        assert_eq!(code, 200, "POST /approvals/{id}/{verdict}: {approval}");
        approval
    }
}

/// The next line of `peer` whose `seen` is `kind` (lines of other kinds
/// before it are kept in `peer.seen`), read without blocking the runtime's
/// other tasks (the demo upstream runs on them). Fails on an `error` line,
/// or when none comes within `limit`, with what the peer said.
pub fn next_seen(peer: &mut LineChild, kind: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let line = tokio::task::block_in_place(|| peer.next_until(deadline));
        let Some(line) = line else {
            panic!(
                "no {kind:?} line within {limit:?}; lines: {:?}\nstderr:\n{}",
                peer.seen,
                peer.log()
            );
        };
        assert_ne!(
            line["seen"],
            "error",
            "the peer failed: {line}\nstderr:\n{}",
            peer.log()
        );
        if line["seen"] == kind {
            return line;
        }
    }
}
