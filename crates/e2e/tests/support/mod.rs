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
    let dir = e2e_dir().join(folder);
    require_installed(&dir.join("node_modules"), "npm packages");
    let mut child = Command::new("bash")
        .arg(dir.join("start-everything.sh"))
        .arg("0")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server-everything");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("READY ") {
                let _ = sender.send(url.trim().to_owned());
            }
        }
    });
    let url = receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("server-everything printed READY within 60s");
    Peer { child, url }
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
