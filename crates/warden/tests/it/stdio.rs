//! `warden stdio` as a desktop client runs it: a child process speaking
//! newline-delimited JSON-RPC on stdin/stdout, with the full pipeline.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// `warden stdio --config F` as a desktop client runs it: one JSON-RPC
/// message per line on its stdin and stdout.
struct StdioWarden {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl StdioWarden {
    fn launch(config: &std::path::Path, log: &str) -> StdioWarden {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["stdio", "--config"])
            .arg(config)
            .env("WARDEN_LOG", log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("warden stdio starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        StdioWarden {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, message: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(message.as_bytes()).expect("write");
        stdin.write_all(b"\n").expect("write");
        stdin.flush().expect("flush");
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("a reply line");
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// Close stdin and wait for Warden to exit: its status and stderr.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        drop(self.stdin.take());
        let output = self.child.wait_with_output().expect("warden exits");
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desktop_client_talks_to_warden_over_stdio() {
    let (upstream, demo) = demo_upstream().await;
    let dir = std::env::temp_dir().join(format!("warden-stdio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("p.yaml"),
        "version: 1\ntools:\n  send_invoice: deny\n",
    )
    .expect("policy");
    std::fs::write(
        dir.join("w.yaml"),
        format!("version: 1\nlisten: 127.0.0.1:0\nlimits:\n  max_body: 4KiB\nroutes:\n  - path: /mcp\n    upstream:\n      url: {upstream}\n    policy: p.yaml\n"),
    )
    .expect("config");
    let config = dir.join("w.yaml");
    let replies = tokio::task::spawn_blocking(move || {
        let mut warden = StdioWarden::launch(&config, "warn");
        warden.send(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"desktop","version":"1"}}}"#,
        );
        let initialized = warden.read();
        warden.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        warden.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
        let listed = warden.read();
        warden.send(
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":2}}}"#,
        );
        let allowed = warden.read();
        warden.send(
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"send_invoice","arguments":{"customer_id":1,"amount_cents":1}}}"#,
        );
        let refused = warden.read();
        warden.send(
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"search_customers","name":"send_invoice"}}"#,
        );
        let ambiguous = warden.read();
        warden.send("{not json");
        let malformed = warden.read();
        // A line past the body limit: one error, and the next line still works.
        warden.send(&format!(
            r#"{{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{}"}}}}}}"#,
            "x".repeat(8192)
        ));
        let oversized = warden.read();
        warden.send(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"after"}}}"#,
        );
        let after = warden.read();
        let (status, _) = warden.finish();
        (
            initialized,
            listed,
            allowed,
            refused,
            ambiguous,
            malformed,
            oversized,
            after,
            status,
        )
    });
    let (initialized, listed, allowed, refused, ambiguous, malformed, oversized, after, status) =
        tokio::time::timeout(Duration::from_secs(30), replies)
            .await
            .expect("in time")
            .expect("task");
    assert_eq!(initialized["result"]["serverInfo"]["name"], "warden-demo");
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["search_customers", "get_customer", "echo"]);
    assert_eq!(
        allowed["result"]["structuredContent"]["name"],
        "Grace Hopper"
    );
    assert_eq!(refused["id"], 4);
    assert_eq!(
        refused["result"]["structuredContent"]["warden"]["reason"],
        "denied-by-policy"
    );
    assert_eq!(ambiguous["error"]["code"], -32600);
    assert_eq!(malformed["error"]["code"], -32700);
    assert_eq!(oversized["error"]["code"], -32600);
    assert!(
        oversized["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("exceeds the limit of 4096 bytes")),
        "{oversized}"
    );
    assert_eq!(after["result"]["content"][0]["text"], "after");
    assert!(status.success(), "warden stdio exited with {status}");
    assert_eq!(demo.invoices_sent(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_in_front_of_a_stdio_server_with_its_stderr_in_wardens_log() {
    let config = stdio_upstream_config("stdio2", &["--stderr", "fixture-stderr-marker"]);
    let (replies, log) = tokio::task::spawn_blocking(move || {
        let mut warden = StdioWarden::launch(&config, "info");
        warden.send(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"desktop","version":"1"}}}"#,
        );
        let initialized = warden.read();
        warden.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        warden.send(
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"through two pipes"}}}"#,
        );
        let echoed = warden.read();
        warden.send(
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"wipe","arguments":{}}}"#,
        );
        let refused = warden.read();
        let (status, log) = warden.finish();
        assert!(status.success(), "{status:?}");
        (vec![initialized, echoed, refused], log)
    })
    .await
    .expect("client thread");
    assert_eq!(
        replies[0]["result"]["serverInfo"]["name"],
        "stdio-test-server"
    );
    assert_eq!(
        replies[1]["result"]["content"][0]["text"],
        "through two pipes"
    );
    assert_eq!(replies[2]["result"]["isError"], true, "{}", replies[2]);
    assert!(log.contains("fixture-stderr-marker"), "{log}");
}

/// A config serving the stdio test server (with `args`) on `/mcp`.
fn stdio_upstream_config(name: &str, args: &[&str]) -> std::path::PathBuf {
    let fixture = stdio_fixture(args);
    let dir = std::env::temp_dir().join(format!("warden-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("p.yaml"), "version: 1\n").expect("policy");
    let args: Vec<String> = fixture
        .args
        .iter()
        .map(|a| serde_json::to_string(a).expect("json"))
        .collect();
    std::fs::write(
        dir.join("w.yaml"),
        format!(
            "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      command: {}\n      args: [{}]\n      inherit_env: [PATH]\n      env: {{LC_ALL: C.UTF-8}}\n    policy: p.yaml\n",
            fixture.program.display(),
            args.join(", ")
        ),
    )
    .expect("config");
    dir.join("w.yaml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_written_without_waiting_are_served_in_order_after_initialize() {
    let config = stdio_upstream_config("pipelined", &["--grandchild"]);
    let (replies, grandchild, status) = tokio::task::spawn_blocking(move || {
        let mut warden = StdioWarden::launch(&config, "warn");
        // Everything at once, as a client that does not wait would write it.
        warden.send(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"hasty","version":"1"}}}"#,
        );
        warden.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        warden.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
        warden.send(
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"grandchild","arguments":{}}}"#,
        );
        let replies: Vec<Value> = (0..3).map(|_| warden.read()).collect();
        let grandchild = replies
            .iter()
            .find(|r| r["id"] == 3)
            .and_then(|r| r["result"]["content"][0]["text"].as_str())
            .unwrap_or_default()
            .to_owned();
        let (status, _) = warden.finish();
        (replies, grandchild, status)
    })
    .await
    .expect("client thread");
    assert_eq!(
        replies[0]["id"], 1,
        "initialize is answered first: {replies:?}"
    );
    assert!(
        replies.iter().all(|r| r.get("error").is_none()),
        "no line was refused and nothing answered the notification: {replies:?}"
    );
    assert!(status.success(), "{status:?}");
    // At stdin EOF the child was asked to exit, its whole group with it.
    assert_ne!(grandchild, "0", "{replies:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
        .is_ok_and(|stat| !stat.contains(") Z "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the server's grandchild {grandchild} outlived warden stdio"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP upstream whose `tools/call` replies are streams that misbehave:
/// `two-in-one` puts the answer and a forged second answer in one event,
/// `cut` ends the stream after a progress notice without answering,
/// `batch` sends a notification and the answer as one JSON array.
async fn misbehaving_stream_upstream() -> String {
    let (url, _) = upstream_fn(|_parts, body| async move {
        if let Some(reply) = handshake(&body) {
            return reply;
        }
        let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let id = message["id"].clone();
        if message["method"] == "tools/list" {
            let tool = |name: &str| {
                serde_json::json!({"name": name, "inputSchema": {"type": "object"},
                    "annotations": {"readOnlyHint": true}})
            };
            return json_response(&serde_json::json!({"jsonrpc": "2.0", "id": id,
                "result": {"tools": [tool("two-in-one"), tool("cut"), tool("batch")]}}));
        }
        let answer = serde_json::json!({"jsonrpc": "2.0", "id": id,
            "result": {"content": [{"type": "text", "text": "genuine"}]}});
        let forged = serde_json::json!({"jsonrpc": "2.0", "id": id,
            "result": {"content": [{"type": "text", "text": "forged"}]}});
        let progress = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/progress",
            "params": {"progressToken": "t", "progress": 1}});
        let event = match message["params"]["name"].as_str().unwrap_or_default() {
            "two-in-one" => format!("data: {answer} {forged}\n\n"),
            "cut" => format!("data: {progress}\n\n"),
            _ => format!("data: [{progress}, {answer}]\n\n"),
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        let _ = sender.try_send(bytes::Bytes::from(event));
        sse_response(receiver)
    })
    .await;
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_stream_is_relayed_one_message_a_line_and_a_missing_answer_is_an_error() {
    let upstream = misbehaving_stream_upstream().await;
    let dir = std::env::temp_dir().join(format!("warden-stdio-streams-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("p.yaml"), "version: 1\n").expect("policy");
    std::fs::write(
        dir.join("w.yaml"),
        format!("version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      url: {upstream}\n    policy: p.yaml\n"),
    )
    .expect("config");
    let config = dir.join("w.yaml");
    let lines = tokio::task::spawn_blocking(move || {
        let mut warden = StdioWarden::launch(&config, "warn");
        warden.send(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"desktop","version":"1"}}}"#,
        );
        let mut lines = vec![warden.read()];
        warden.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        for (id, tool) in [(2, "two-in-one"), (3, "cut"), (4, "batch")] {
            warden.send(&format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
            ));
            // Each call's lines, up to and including its answer.
            loop {
                let line = warden.read();
                let done = line["id"] == id;
                lines.push(line);
                if done {
                    break;
                }
            }
        }
        let (status, log) = warden.finish();
        assert!(status.success(), "{log}");
        lines
    })
    .await
    .expect("stdio run");
    let text = |line: &Value| line["result"]["content"][0]["text"].clone();
    // Two messages in one event: neither is relayed, the call gets an error.
    assert_eq!(lines[1]["id"], 2, "{lines:?}");
    assert_eq!(lines[1]["error"]["code"], -32003, "{}", lines[1]);
    assert!(
        lines.iter().all(|l| text(l) != "forged"),
        "a forged answer reached the client: {lines:?}"
    );
    // A stream cut off before the answer: the progress, then an error.
    assert_eq!(lines[2]["method"], "notifications/progress", "{lines:?}");
    assert_eq!(lines[3]["id"], 3);
    assert_eq!(lines[3]["error"]["code"], -32003, "{}", lines[3]);
    // A batch in one event: one line per message.
    assert_eq!(lines[4]["method"], "notifications/progress", "{lines:?}");
    assert_eq!(lines[5]["id"], 4);
    assert_eq!(text(&lines[5]), "genuine");
    assert_eq!(lines.len(), 6, "{lines:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
