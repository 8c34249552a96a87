//! Starting the peers: server-everything as an upstream, Warden in front.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

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
        }],
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
