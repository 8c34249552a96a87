//! Keep-alive idling, policy reloads, and SIGTERM on the real binary
//! (https upstreams are in `tls.rs`).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (upstream, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .limits(|l| l.header_timeout = std::time::Duration::from_millis(300))
        .start()
        .await;
    let mut stream = tokio::net::TcpStream::connect(warden.running.mcp_addr)
        .await
        .expect("connect");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: {ACCEPT_BOTH}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buffer = vec![0u8; 4096];
    let n = stream.read(&mut buffer).await.expect("response");
    assert!(
        String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 400"),
        "a reply first"
    );
    // Then nothing: the idle connection must be closed by Warden.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "idle keep-alive connection still open after 5s"
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_calls_and_exits_cleanly() {
    // A slow upstream: every non-initialize request takes 700 ms.
    let (upstream, _) = upstream_fn(|_parts, body| async move {
        if let Some(reply) = handshake(&body) {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        json_response(&json!({"jsonrpc": "2.0", "id": id_of(&body), "result": {}}))
    })
    .await;
    let (mut child, url, _dir) = run_binary("sigterm", &upstream, "").await;
    let mut agent = Agent::new(&url);
    agent.initialize().await;
    let in_flight = tokio::spawn({
        let agent = agent.clone();
        async move {
            agent
                .post(&json!({"jsonrpc": "2.0", "id": 42, "method": "ping"}))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&child, "-TERM");
    let reply = in_flight.await.expect("task");
    assert_eq!(reply.status, StatusCode::OK, "the in-flight call finished");
    assert_eq!(reply.json()["id"], 42);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "warden exited with {status}");
}

#[tokio::test]
async fn a_changed_policy_file_takes_effect_and_a_broken_one_changes_nothing() {
    let (upstream, demo) = demo_upstream().await;
    let dir = std::env::temp_dir().join(format!("warden-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("policy.yaml");
    std::fs::write(&file, "version: 1\n").expect("write");
    let warden = WardenBuilder::new(&upstream)
        .policy_file(&file)
        .limits(|l| l.reload_interval = Duration::from_millis(50))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let note = json!({"customer_id": 1, "text": "graduated"});
    assert_refused(
        &agent.call(1, "create_note", note.clone()).await,
        "create_note",
        "not-read-only",
    );

    // Graduate create_note: no restart.
    std::fs::write(&file, "version: 1\ntools:\n  create_note: write\n").expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reply = agent.call(2, "create_note", note.clone()).await;
        if reply.json()["result"]["isError"] != true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new policy did not take effect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(demo.notes_written(), 1);

    // A broken file keeps the last good policy.
    std::fs::write(&file, "version: 1\ntools:\n  create_note: wirte\n").expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !warden
        .running
        .warden
        .metrics
        .encode()
        .contains("warden_policy_reloads_total{result=\"rejected\"} 1")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broken file was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = agent.call(3, "create_note", note).await;
    assert_eq!(
        reply.json()["result"]["content"][0]["text"],
        "Note added to Ada Lovelace."
    );
    assert_eq!(demo.notes_written(), 2);
}

#[tokio::test]
async fn a_policy_file_rewritten_in_place_is_never_applied_half_written() {
    let (upstream, demo) = demo_upstream().await;
    let dir = std::env::temp_dir().join(format!("warden-halves-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("policy.yaml");
    std::fs::write(&file, "version: 1\n").expect("write");
    let warden = WardenBuilder::new(&upstream)
        .policy_file(&file)
        .limits(|l| {
            l.reload_interval = Duration::from_millis(20);
            l.reload_settle = Duration::from_millis(400);
        })
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let agent = Arc::new(agent);
    let note = json!({"customer_id": 1, "text": "never"});
    // Past Warden's first look at the file, so the rewrite below is seen
    // by the poll.
    tokio::time::sleep(Duration::from_millis(900)).await;

    // An agent keeps trying the write tool the whole time.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (agent, stop, note) = (agent.clone(), stop.clone(), note.clone());
        tokio::spawn(async move {
            let mut tries = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tries += 1;
                let reply = agent.call(tries, "create_note", note.clone()).await;
                assert_eq!(
                    reply.json()["result"]["isError"],
                    true,
                    "create_note ran on try {tries}: a half-written policy was applied"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tries
        })
    };

    // Rewritten in place, in two halves: the first half alone is a valid,
    // permissive policy; the whole file refuses the write tool.
    let mut writer = std::fs::File::create(&file).expect("truncate");
    writer
        .write_all(b"version: 1\ndefault: allow\n")
        .expect("first half");
    writer.sync_all().expect("sync");
    tokio::time::sleep(Duration::from_millis(200)).await;
    writer
        .write_all(b"tools:\n  create_note: deny\n")
        .expect("second half");
    writer.sync_all().expect("sync");
    drop(writer);

    let applied = "warden_policy_reloads_total{result=\"applied\"} 1\n";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !warden.running.warden.metrics.encode().contains(applied) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the whole file was not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The whole file is in force: a read tool passes (default: allow) ...
    let reply = agent
        .call(9_000, "search_customers", json!({"query": "Ada"}))
        .await;
    assert_ne!(reply.json()["result"]["isError"], true, "{:?}", reply.body);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let tries = prober.await.expect("the prober saw no write run");
    assert!(tries > 10, "the write tool was tried throughout ({tries})");
    // ... and it was the only reload: the half never was.
    let metrics = warden.running.warden.metrics.encode();
    assert!(metrics.contains(applied), "{metrics}");
    assert_eq!(demo.notes_written(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child process killed when dropped, so a failing test leaves none.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;

    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `warden run` as a process in front of `upstream`, on a free port, with
/// `limits` (YAML lines under `limits:`) and the policy `version: 1` in
/// `p.yaml`; once it listens: the process, its MCP URL, its folder.
async fn run_binary(
    name: &str,
    upstream: &str,
    limits: &str,
) -> (KillOnDrop, String, std::path::PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = std::env::temp_dir().join(format!("warden-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("p.yaml"), "version: 1\n").expect("policy");
    let limits = if limits.is_empty() {
        String::new()
    } else {
        format!("limits:\n{limits}")
    };
    std::fs::write(
        dir.join("w.yaml"),
        format!(
            "version: 1\nlisten: 127.0.0.1:{port}\n{limits}routes:\n  - path: /mcp\n    upstream:\n      url: {upstream}\n    policy: p.yaml\n"
        ),
    )
    .expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "--config"])
        .arg(dir.join("w.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("warden starts");
    wait_listening(port).await;
    (
        KillOnDrop(child),
        format!("http://127.0.0.1:{port}/mcp"),
        dir,
    )
}

/// Send `signal` (e.g. `-HUP`) to a child process.
pub(crate) fn signal(child: &std::process::Child, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill {signal}");
}

#[tokio::test]
async fn sighup_applies_a_policy_file_only_once_it_holds_still() {
    let (upstream, demo) = demo_upstream().await;
    // Polling is all but off: only SIGHUP makes Warden look.
    let (mut child, url, dir) = run_binary(
        "sighup",
        &upstream,
        "  reload_interval: 1h\n  reload_settle: 300ms\n",
    )
    .await;
    let policy = dir.join("p.yaml");
    // A SIGHUP as soon as Warden listens is a reload request, not the end.
    signal(&child, "-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        child.try_wait().expect("wait").is_none(),
        "SIGHUP ended warden"
    );

    let mut agent = Agent::new(&url);
    agent.initialize().await;
    let note = json!({"customer_id": 1, "text": "never"});
    let invoice = json!({"customer_id": 1, "amount_cents": 100});
    assert_refused(
        &agent.call(1, "create_note", note.clone()).await,
        "create_note",
        "not-read-only",
    );

    // Rewritten in place, SIGHUP between the halves: the first half alone
    // (a valid, permissive policy) must not be applied.
    let mut writer = std::fs::File::create(&policy).expect("truncate");
    writer
        .write_all(b"version: 1\ndefault: allow\n")
        .expect("first half");
    writer.sync_all().expect("sync");
    signal(&child, "-HUP");
    tokio::time::sleep(Duration::from_millis(100)).await;
    writer
        .write_all(b"tools:\n  create_note: deny\n")
        .expect("second half");
    writer.sync_all().expect("sync");
    drop(writer);
    // Past the settle: neither half was taken (the file changed meanwhile).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in 2..5 {
        assert_refused(
            &agent.call(id, "create_note", note.clone()).await,
            "create_note",
            "not-read-only",
        );
    }
    assert_refused(
        &agent.call(5, "send_invoice", invoice.clone()).await,
        "send_invoice",
        "not-read-only",
    );

    // The next SIGHUP finds the whole file, stable: in force.
    signal(&child, "-HUP");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut id = 10;
    loop {
        id += 1;
        let reply = agent.call(id, "send_invoice", invoice.clone()).await;
        if reply.json()["result"]["isError"] != true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the whole file was not applied after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = agent.call(99, "create_note", note).await;
    assert_eq!(
        reply.json()["result"]["structuredContent"]["warden"]["decision"],
        "deny",
        "{:?}",
        reply.body
    );
    assert_eq!(demo.notes_written(), 0);
    signal(&child, "-TERM");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "warden exited with {status}");
    let _ = std::fs::remove_dir_all(&dir);
}
