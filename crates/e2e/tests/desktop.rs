//! A desktop-style client, no SDK: the built `warden` binary runs as
//! `warden stdio --config F` (a child process speaking newline-delimited
//! JSON-RPC on stdin/stdout, as a desktop app launches its MCP servers),
//! with server-everything as a stdio upstream that Warden spawns itself.
//! The test writes raw JSON-RPC lines and reads every line back:
//! initialize, tools/list (the denied tool hidden), calls, a refusal,
//! progress notifications, a server-to-client request (sampling) answered
//! mid-call, and a cancellation that reaches the upstream (no result for the
//! cancelled request ever arrives, and the session goes on).

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// `get-env` returns the server's whole environment: denied.
const POLICY: &str = "version: 1\ndefault: allow\ntools:\n  get-env: deny\n";

/// How long any single reply may take.
const REPLY: Duration = Duration::from_secs(20);

/// `warden stdio` as a child: its stdin, and its stdout lines parsed.
struct Desktop {
    warden: LineChild,
    _dir: TempDir,
}

impl Desktop {
    /// Launch `warden stdio` in front of server-everything over stdio.
    fn launch(name: &str) -> Desktop {
        let upstream = everything_upstream("peers", UpstreamKind::Stdio);
        let dir = TempDir::new(name);
        let config = write_config(&dir.0, &upstream, POLICY);
        Desktop {
            warden: LineChild::spawn(warden_stdio(&config)),
            _dir: dir,
        }
    }

    /// Write one message as one line.
    fn send(&mut self, message: Value) {
        self.warden.write(&format!("{message}\n"));
    }

    /// The next line, or `None` at `deadline` (or when stdout closed).
    fn next_until(&mut self, deadline: Instant) -> Option<Value> {
        let message = self.warden.next_until(deadline)?;
        assert!(
            message.get("not-json").is_none(),
            "warden wrote a line that is not JSON: {message}"
        );
        assert_eq!(message["jsonrpc"], "2.0", "{message}");
        Some(message)
    }

    /// Read until the response to request `id`, handing every other message
    /// (notifications, server-to-client requests) to `other`.
    fn response(&mut self, id: u64, mut other: impl FnMut(&mut Self, &Value)) -> Value {
        let deadline = Instant::now() + REPLY;
        loop {
            let Some(message) = self.next_until(deadline) else {
                panic!(
                    "no response to request {id} within {REPLY:?}; read so far: {:#?}\nwarden log:\n{}",
                    self.warden.seen,
                    self.warden.log()
                );
            };
            if message["id"] == id && message.get("method").is_none() {
                return message;
            }
            other(self, &message);
        }
    }

    /// Send request `id` and read until its response.
    fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.response(id, |_, _| {})
    }

    /// `initialize` (declaring sampling) and `notifications/initialized`.
    fn handshake(&mut self) -> Value {
        let initialized = self.request(
            1,
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {"sampling": {}},
                "clientInfo": {"name": "warden-e2e-desktop", "version": "1"},
            }),
        );
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        initialized
    }
}

fn text_of(reply: &Value) -> String {
    reply["result"]["content"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|c| c["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn call(name: &str, arguments: Value) -> Value {
    json!({"name": name, "arguments": arguments})
}

/// The processes whose parent is `pid` (Linux: from `/proc/*/stat`).
#[cfg(target_os = "linux")]
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // pid (comm) state ppid ...; comm may hold spaces.
                    let after = &stat[stat.rfind(')')? + 1..];
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

#[test]
fn desktop_client_through_warden_stdio_to_a_stdio_upstream() {
    let mut desktop = Desktop::launch("warden-e2e-desktop");

    // ---- initialize: server-everything's own answer, through Warden.
    let initialized = desktop.handshake();
    assert_eq!(
        initialized["result"]["serverInfo"]["name"], "mcp-servers/everything",
        "{initialized}"
    );
    assert!(
        initialized["result"]["capabilities"]["tools"].is_object(),
        "{initialized}"
    );

    // ---- tools/list: the denied tool is hidden; trigger-sampling-request
    // is listed only because the client's sampling capability reached the
    // upstream.
    let listed = desktop.request(2, "tools/list", json!({}));
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {listed}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for wanted in [
        "echo",
        "get-sum",
        "trigger-long-running-operation",
        "trigger-sampling-request",
    ] {
        assert!(names.contains(&wanted), "{wanted} not listed: {names:?}");
    }
    assert!(!names.contains(&"get-env"), "get-env is listed: {names:?}");

    // ---- a plain call, and a refused one.
    let echoed = desktop.request(
        3,
        "tools/call",
        call("echo", json!({"message": "from the desktop"})),
    );
    assert_eq!(text_of(&echoed), "Echo: from the desktop", "{echoed}");
    let refused = desktop.request(4, "tools/call", call("get-env", json!({})));
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    assert!(
        !refused["result"]["structuredContent"]["warden"]["decision"].is_null(),
        "{refused}"
    );

    // ---- progress: notifications for our token arrive before the result.
    desktop.send(json!({
        "jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {
            "name": "trigger-long-running-operation",
            "arguments": {"duration": 1, "steps": 3},
            "_meta": {"progressToken": "desktop-progress"},
        },
    }));
    let mut progress = Vec::new();
    let finished = desktop.response(5, |_, message| {
        if message["method"] == "notifications/progress"
            && message["params"]["progressToken"] == "desktop-progress"
        {
            progress.push(message["params"]["progress"].as_f64().expect("progress"));
        }
    });
    assert!(
        text_of(&finished).contains("Long running operation completed"),
        "{finished}"
    );
    assert_eq!(progress, vec![1.0, 2.0, 3.0], "progress for token");

    // ---- a server-to-client request mid-call: sampling/createMessage,
    // answered by the client; the tool's result carries the answer.
    desktop.send(json!({
        "jsonrpc": "2.0", "id": 6, "method": "tools/call",
        "params": call("trigger-sampling-request", json!({"prompt": "desktop prompt", "maxTokens": 16})),
    }));
    let mut sampling_requests = 0;
    let sampled = desktop.response(6, |desktop, message| {
        if message["method"] == "sampling/createMessage" {
            sampling_requests += 1;
            assert!(
                message["id"].is_string() || message["id"].is_number(),
                "{message}"
            );
            assert!(
                message["params"]["messages"]
                    .to_string()
                    .contains("desktop prompt"),
                "the sampling request lost the prompt: {message}"
            );
            desktop.send(json!({
                "jsonrpc": "2.0",
                "id": message["id"],
                "result": {
                    "role": "assistant",
                    "content": {"type": "text", "text": "sampled by the desktop"},
                    "model": "warden-e2e-stub",
                    "stopReason": "endTurn",
                },
            }));
        }
    });
    assert_eq!(sampling_requests, 1, "sampling/createMessage requests seen");
    assert!(
        text_of(&sampled).contains("sampled by the desktop"),
        "{sampled}"
    );

    // ---- cancel: start a 3 s call, cancel it after its first progress;
    // the session goes on, and no result for it ever arrives (server-
    // everything drops the response of a request it saw cancelled, so a
    // late result would mean the cancel never reached it).
    let started = Instant::now();
    desktop.send(json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {
            "name": "trigger-long-running-operation",
            "arguments": {"duration": 3, "steps": 6},
            "_meta": {"progressToken": "desktop-cancel"},
        },
    }));
    let deadline = Instant::now() + REPLY;
    loop {
        let message = desktop.next_until(deadline).unwrap_or_else(|| {
            panic!(
                "no progress for the call to cancel: {:#?}",
                desktop.warden.seen
            )
        });
        assert_ne!(
            message["id"], 7,
            "the call ended before it was cancelled: {message}"
        );
        if message["params"]["progressToken"] == "desktop-cancel" {
            break;
        }
    }
    desktop.send(json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 7, "reason": "the desktop user pressed stop"},
    }));
    let after = desktop.request(8, "tools/call", call("get-sum", json!({"a": 19, "b": 23})));
    assert!(text_of(&after).contains("42"), "{after}");
    let quiet_until = started + Duration::from_millis(3000 + 1500);
    while desktop.next_until(quiet_until).is_some() {}
    let late: Vec<&Value> = desktop
        .warden
        .seen
        .iter()
        .filter(|m| m["id"] == 7 && m.get("method").is_none())
        .collect();
    assert!(
        late.is_empty(),
        "a response for the cancelled request arrived: {late:?}"
    );

    // ---- the end. `warden stdio` should exit once stdin closes; it does
    // not yet while the cancelled call (which the upstream never answers)
    // is in flight: see `warden_stdio_exits_when_stdin_closes_after_a_cancel`.
    // Here Warden is killed after a grace period, as a desktop client would.
    let _ = desktop.warden.finish(Duration::from_secs(3));
}

/// Closing stdin ends `warden stdio` (exit 0) and its stdio upstream.
#[test]
fn warden_stdio_exits_when_stdin_closes_and_stops_its_upstream() {
    let mut desktop = Desktop::launch("warden-e2e-desktop-eof");
    desktop.handshake();
    let echoed = desktop.request(2, "tools/call", call("echo", json!({"message": "bye"})));
    assert_eq!(text_of(&echoed), "Echo: bye", "{echoed}");
    #[cfg(target_os = "linux")]
    let upstream = children_of(desktop.warden.id());
    #[cfg(target_os = "linux")]
    assert_eq!(upstream.len(), 1, "one upstream child: {upstream:?}");
    let status = desktop
        .warden
        .finish(Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "warden stdio still runs 10 s after stdin closed:\n{}",
                desktop.warden.log()
            )
        });
    assert!(status.success(), "exit {status}\n{}", desktop.warden.log());
    #[cfg(target_os = "linux")]
    {
        let proc = format!("/proc/{}", upstream[0]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::path::Path::new(&proc).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !std::path::Path::new(&proc).exists(),
            "the upstream child {} outlived warden stdio",
            upstream[0]
        );
    }
}

/// Suspected Warden bug: after the client cancels a call that the upstream
/// then never answers (as the spec allows, and as server-everything does),
/// closing stdin does not end `warden stdio`: it waits for that call's reply
/// forever (`stdio::serve` awaits every in-flight request task before it
/// ends the session). Desktop clients (both SDKs) kill it after ~2 s.
/// Same with Streamable HTTP, legacy SSE and stdio upstreams.
#[test]
fn warden_stdio_exits_when_stdin_closes_after_a_cancel() {
    let mut desktop = Desktop::launch("warden-e2e-desktop-cancel-eof");
    desktop.handshake();
    desktop.send(json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {
            "name": "trigger-long-running-operation",
            "arguments": {"duration": 2, "steps": 4},
            "_meta": {"progressToken": "t"},
        },
    }));
    let deadline = Instant::now() + REPLY;
    while desktop
        .next_until(deadline)
        .is_some_and(|m| m["params"]["progressToken"] != "t")
    {}
    desktop.send(json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 2},
    }));
    // Long past the operation's end (2 s), there is still nothing to wait for.
    let status = desktop
        .warden
        .finish(Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "warden stdio still runs 10 s after stdin closed:\n{}",
                desktop.warden.log()
            )
        });
    assert!(status.success(), "exit {status}");
}
