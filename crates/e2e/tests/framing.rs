//! Framing on line-delimited links (security issue #8): a message Warden
//! judged as one must reach a stdio peer as one line, whatever raw line
//! breaks its bytes hold.
//!
//! JSON allows raw CR and LF as white space between tokens, so one valid
//! message can hold a complete second message on a line of its own. Line
//! readers disagree on where a line ends: the Python SDK reads stdin through
//! a universal-newline `TextIOWrapper` (LF, CR and CRLF), the TypeScript
//! SDK's `ReadBuffer` splits on LF. If Warden wrote such bytes unchanged to
//! a stdio child, the child would run the inner `tools/call`, a call Warden
//! never judged.
//!
//! The peers are real SDK servers that record what they execute
//! (`RECORD_FILE`) and tee the raw bytes they read (`RAW_FILE`), without
//! replacing the SDK's own line reader: `peers/recording_server.py` (Python
//! `mcp` 2.3.0) and `peers/recording-server.mjs` (TypeScript SDK 1.32.2).
//! Both list `echo` (read-only: it answers its arguments as JSON text) and
//! `wipe` (destructive). Warden's default policy (`version: 1`) allows
//! `echo` and refuses and hides `wipe`.
//!
//! - Control: the smuggling bytes fed to each server directly make it run
//!   `wipe` (Python: LF, CR and CRLF; TypeScript: LF and CRLF), so the
//!   attack is real and the servers' readers split as claimed.
//! - Streamable HTTP -> stdio child, per-session and `sessions: shared`, and
//!   the stateless (2026-07-28) channel; and `warden stdio` -> stdio child,
//!   including lines where a bare CR separates two messages. Each smuggling
//!   shape (in a notification, in a `ping`'s params, in an allowed `echo`'s
//!   arguments; LF, CR, CRLF; with strings holding U+2028, U+2029, U+0085;
//!   smuggling `wipe`, and `initialize` + `wipe`) is sent to one Warden and
//!   one server per mode. From the server's own record: `wipe` never runs,
//!   every `echo` ran with exactly the arguments sent, every line of what
//!   the server read parses as one JSON message.
//! - `warden stdio` <- upstream: `peers/smuggling_upstream.py` answers with
//!   raw CRs wrapping forged messages; the real SDK clients
//!   (`peers/framing_client.py`, `peers/framing-client.mjs`) launching
//!   `warden stdio` must see the genuine answers only.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Warden's default policy: read-only-hinted tools only (`wipe` refused).
const POLICY: &str = "version: 1\n";

/// The handshake revision the HTTP and stdio agents ask for.
const REVISION: &str = "2025-06-18";

/// The stateless revision.
const STATELESS: &str = "2026-07-28";

/// How long any one reply may take.
const REPLY: Duration = Duration::from_secs(20);

/// The raw line ends a message is smuggled between.
const ENDS: [(&str, &str); 3] = [("lf", "\n"), ("cr", "\r"), ("crlf", "\r\n")];

/// Characters some line readers (`str.splitlines`, ECMAScript line
/// terminators) also end lines at, in strings where JSON allows them raw.
const ODD: &str = "line\u{2028}separator\u{2029}paragraph\u{0085}next";

// === the servers ===

/// The SDK a recording server is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sdk {
    Python,
    TypeScript,
}

impl Sdk {
    fn name(self) -> &'static str {
        match self {
            Sdk::Python => "python",
            Sdk::TypeScript => "ts",
        }
    }

    /// The program and arguments that start its recording server.
    fn server(self) -> (PathBuf, Vec<PathBuf>) {
        let peers = peers();
        match self {
            Sdk::Python => (
                peers.join(".venv/bin/python"),
                vec![peers.join("recording_server.py")],
            ),
            Sdk::TypeScript => (on_path("node"), vec![peers.join("recording-server.mjs")]),
        }
    }

    /// Whether its stdin reader ends a line at this line end: Python's
    /// universal newlines at all three, the TypeScript SDK at LF only.
    fn splits_at(self, end: &str) -> bool {
        match self {
            Sdk::Python => true,
            Sdk::TypeScript => end.contains('\n'),
        }
    }
}

/// The peers' folder, with both SDKs installed.
fn peers() -> PathBuf {
    let peers = e2e_dir().join("peers");
    require_installed(&peers.join(".venv"), "Python packages");
    require_installed(&peers.join("node_modules"), "npm packages");
    peers
}

/// A recording server's files: what it executed, what it read.
struct Recorder {
    dir: TempDir,
}

impl Recorder {
    fn new(name: &str) -> Recorder {
        Recorder {
            dir: TempDir::new(name),
        }
    }

    fn record_file(&self) -> PathBuf {
        self.dir.0.join("calls.jsonl")
    }

    fn raw_file(&self) -> PathBuf {
        self.dir.0.join("stdin.raw")
    }

    /// Every tool call the server executed, `{"tool", "arguments"}`.
    fn calls(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.record_file()).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("record line {l:?} is not JSON: {e}"))
            })
            .collect()
    }

    /// Every byte the server read on stdin.
    fn raw(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.raw_file()).unwrap_or_default()).into_owned()
    }

    /// The `upstream:` block that has Warden start `sdk`'s server.
    fn upstream(&self, sdk: Sdk, shared: bool) -> EverythingUpstream {
        let (program, args) = sdk.server();
        let args: Vec<String> = args
            .iter()
            .map(|a| yaml_str(&a.display().to_string()))
            .collect();
        let mut yaml = format!(
            "      command: {}\n      args: [{}]\n      inherit_env: [PATH, HOME]\n      env: {{RECORD_FILE: {}, RAW_FILE: {}}}\n      cwd: {}\n",
            yaml_str(&program.display().to_string()),
            args.join(", "),
            yaml_str(&self.record_file().display().to_string()),
            yaml_str(&self.raw_file().display().to_string()),
            yaml_str(&peers().display().to_string()),
        );
        if shared {
            yaml.push_str("      sessions: shared\n");
        }
        EverythingUpstream { server: None, yaml }
    }
}

// === the messages ===

fn request(id: u64, method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{{params}}}}}"#)
}

fn notification(method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{{{params}}}}}"#)
}

/// A `tools/call` of `wipe`, marked with the shape that carries it.
fn wipe(shape: &str, id: u64) -> String {
    request(
        id,
        "tools/call",
        &format!(r#""name":"wipe","arguments":{{"shape":"{shape}"}}"#),
    )
}

/// A complete `initialize` request.
fn initialize(id: u64) -> String {
    request(
        id,
        "initialize",
        &format!(
            r#""protocolVersion":"{REVISION}","capabilities":{{}},"clientInfo":{{"name":"smuggler","version":"1"}}"#
        ),
    )
}

/// An `echo` call whose arguments object holds `arguments` (JSON members).
fn echo(id: u64, arguments: &str, extra_params: &str) -> String {
    request(
        id,
        "tools/call",
        &format!(r#""name":"echo","arguments":{{{arguments}}}{extra_params}"#),
    )
}

/// A JSON string literal.
fn string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Notification,
    Ping,
    Echo,
}

/// One message as sent: its exact text (without the final LF).
#[derive(Debug, Clone)]
struct Shape {
    name: String,
    kind: Kind,
    /// The request id (requests only).
    id: Option<u64>,
    text: String,
    /// The ids of the `wipe` calls smuggled inside.
    wipes: Vec<u64>,
    /// Whether it also smuggles an `initialize`.
    smuggles_initialize: bool,
}

impl Shape {
    /// The message as a JSON value (any JSON parser skips the raw breaks).
    fn value(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("shape {} is not valid JSON: {e}", self.name))
    }

    /// An `echo`'s arguments, as sent.
    fn arguments(&self) -> Option<Value> {
        (self.kind == Kind::Echo).then(|| self.value()["params"]["arguments"].clone())
    }
}

/// Hands out ids from `next`.
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// The smuggling shapes of a session: in a notification, in a `ping`'s
/// params, in an `echo`'s arguments, with each line end; `initialize` +
/// `wipe` variants; strings holding U+2028, U+2029 and U+0085; and a plain
/// `echo` of those strings. `initialize` variants come last.
fn session_shapes(ids: &mut Ids) -> Vec<Shape> {
    let mut shapes = Vec::new();
    let mut later = Vec::new();
    for (end_name, e) in ENDS {
        let name = format!("note-{end_name}");
        let w = ids.next();
        shapes.push(Shape {
            text: notification(
                "notifications/x-note",
                &format!(r#""p":{e}{}{e}"#, wipe(&name, w)),
            ),
            name,
            kind: Kind::Notification,
            id: None,
            wipes: vec![w],
            smuggles_initialize: false,
        });

        let name = format!("ping-{end_name}");
        let (id, w) = (ids.next(), ids.next());
        shapes.push(Shape {
            text: request(id, "ping", &format!(r#""p":{e}{}{e}"#, wipe(&name, w))),
            name,
            kind: Kind::Ping,
            id: Some(id),
            wipes: vec![w],
            smuggles_initialize: false,
        });

        let name = format!("echo-{end_name}");
        let (id, w) = (ids.next(), ids.next());
        shapes.push(Shape {
            text: echo(
                id,
                &format!(r#""tag":"{name}",{e}"payload":{e}{}{e}"#, wipe(&name, w)),
                "",
            ),
            name,
            kind: Kind::Echo,
            id: Some(id),
            wipes: vec![w],
            smuggles_initialize: false,
        });

        let name = format!("echo-strings-{end_name}");
        let (id, w) = (ids.next(), ids.next());
        shapes.push(Shape {
            text: echo(
                id,
                &format!(
                    r#""tag":"{name}","text":{odd},{e}"payload":{e}{wipe}{e},"nested":{{{odd}:[{odd}]}}"#,
                    odd = string(ODD),
                    wipe = wipe(&name, w),
                ),
                "",
            ),
            name,
            kind: Kind::Echo,
            id: Some(id),
            wipes: vec![w],
            smuggles_initialize: false,
        });

        let name = format!("note-initialize-{end_name}");
        let (i, w) = (ids.next(), ids.next());
        later.push(Shape {
            text: notification(
                "notifications/x-note",
                &format!(
                    r#""p":{e}{}{e},"q":{e}{}{e}"#,
                    initialize(i),
                    wipe(&name, w)
                ),
            ),
            name,
            kind: Kind::Notification,
            id: None,
            wipes: vec![w],
            smuggles_initialize: true,
        });

        let name = format!("echo-initialize-{end_name}");
        let (id, i, w) = (ids.next(), ids.next(), ids.next());
        later.push(Shape {
            text: echo(
                id,
                &format!(
                    r#""tag":"{name}","payload":{e}{}{e},"more":{e}{}{e}"#,
                    initialize(i),
                    wipe(&name, w)
                ),
                "",
            ),
            name,
            kind: Kind::Echo,
            id: Some(id),
            wipes: vec![w],
            smuggles_initialize: true,
        });
    }
    let name = "echo-strings-plain".to_owned();
    let id = ids.next();
    shapes.push(Shape {
        text: echo(
            id,
            &format!(
                r#""tag":"{name}","text":{odd},"list":[{odd},"\u2028 escaped too"]"#,
                odd = string(ODD)
            ),
            "",
        ),
        name,
        kind: Kind::Echo,
        id: Some(id),
        wipes: Vec::new(),
        smuggles_initialize: false,
    });
    shapes.extend(later);
    shapes
}

/// A stateless request's `_meta` member (JSON text, with its comma).
fn stateless_meta() -> String {
    format!(
        r#","_meta":{{"io.modelcontextprotocol/protocolVersion":"{STATELESS}","io.modelcontextprotocol/clientCapabilities":{{}},"io.modelcontextprotocol/clientInfo":{{"name":"warden-e2e-framing","version":"1"}}}}"#
    )
}

/// The headers of a stateless `echo` call.
fn stateless_headers() -> Vec<(&'static str, String)> {
    vec![
        ("MCP-Protocol-Version", STATELESS.to_owned()),
        ("Mcp-Method", "tools/call".to_owned()),
        ("Mcp-Name", "echo".to_owned()),
    ]
}

/// Stateless `echo` calls smuggling `initialize` + `wipe`, one per line
/// end, and one with the odd strings.
fn stateless_shapes(ids: &mut Ids) -> Vec<Shape> {
    let mut shapes = Vec::new();
    for (end_name, e) in ENDS {
        let name = format!("stateless-{end_name}");
        let (id, i, w) = (ids.next(), ids.next(), ids.next());
        shapes.push(Shape {
            text: echo(
                id,
                &format!(
                    r#""tag":"{name}","text":{odd},{e}"payload":{e}{init}{e},"more":{e}{wipe}{e}"#,
                    odd = string(ODD),
                    init = initialize(i),
                    wipe = wipe(&name, w),
                ),
                &stateless_meta(),
            ),
            name,
            kind: Kind::Echo,
            id: Some(id),
            wipes: vec![w],
            smuggles_initialize: true,
        });
    }
    shapes
}

// === what the server saw ===

/// `text` split into lines the way Python's universal newlines do (LF, CR,
/// CRLF), without their ends.
fn python_lines(text: &str) -> Vec<&str> {
    split_lines(text, |c| c == '\n' || c == '\r')
}

/// `text` split the way `str.splitlines` does: also at VT, FF, FS, GS, RS,
/// U+0085, U+2028 and U+2029 (what Warden's framing promises, too).
fn splitlines(text: &str) -> Vec<&str> {
    split_lines(text, |c| {
        matches!(
            c,
            '\n' | '\r'
                | '\u{0b}'
                | '\u{0c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        )
    })
}

fn split_lines(text: &str, is_end: impl Fn(char) -> bool) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if is_end(c) {
            lines.push(&text[start..at]);
            let mut next = at + c.len_utf8();
            if c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n') {
                chars.next();
                next += 1;
            }
            start = next;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

fn preview(text: &str) -> String {
    let text: String = text.chars().take(160).collect();
    format!("{text:?}")
}

/// What the test expects the server to have seen.
struct Expect<'a> {
    /// Every message sent whole (its `echo` arguments are what may run).
    sent: &'a [Shape],
    /// Tags of the `echo` calls that must have run exactly once.
    must_run: Vec<String>,
    /// How many `initialize` requests the server may read as lines of
    /// their own (Warden's own; `None`: not checked).
    initializes: Option<usize>,
    /// Messages that must have reached the server (as one line each, with
    /// the same method and params).
    forwarded: Vec<&'a Shape>,
}

/// Check the server's own record against `expect`; the failures, each in
/// a sentence.
fn check_server(recorder: &Recorder, expect: &Expect<'_>) -> Vec<String> {
    let mut failures = Vec::new();
    let calls = recorder.calls();
    for call in &calls {
        if call["tool"] == "wipe" {
            failures.push(format!(
                "the server ran a smuggled `wipe` that Warden never judged: {call}"
            ));
        }
    }
    let sent: HashMap<String, Value> = expect
        .sent
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.arguments()?)))
        .collect();
    let mut ran: HashMap<String, usize> = HashMap::new();
    for call in calls.iter().filter(|c| c["tool"] == "echo") {
        let arguments = &call["arguments"];
        let tag = arguments["tag"].as_str().unwrap_or_default().to_owned();
        *ran.entry(tag.clone()).or_default() += 1;
        match sent.get(&tag) {
            None => failures.push(format!(
                "the server ran an `echo` with arguments never sent: {arguments}"
            )),
            Some(original) if original != arguments => failures.push(format!(
                "`echo` {tag} ran with changed arguments: sent {original}, executed {arguments}"
            )),
            Some(_) => {}
        }
    }
    for tag in &expect.must_run {
        let n = ran.get(tag).copied().unwrap_or_default();
        if n != 1 {
            failures.push(format!("`echo` {tag} ran {n} times, not once"));
        }
    }

    let raw = recorder.raw();
    let mut lines = Vec::new();
    for (how, split) in [
        ("Python's universal newlines", python_lines(&raw)),
        ("str.splitlines", splitlines(&raw)),
    ] {
        let mut broken = Vec::new();
        for line in split.iter().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(value) if value.is_object() => {
                    if how.starts_with("Python") {
                        lines.push(value);
                    }
                }
                _ => broken.push(preview(line)),
            }
        }
        if !broken.is_empty() {
            failures.push(format!(
                "split with {how}, {} lines the server read are not one JSON message (fragments), e.g. {}",
                broken.len(),
                broken[..broken.len().min(4)].join(", ")
            ));
        }
    }
    if let Some(expected) = expect.initializes {
        let n = lines.iter().filter(|l| l["method"] == "initialize").count();
        if n != expected {
            failures.push(format!(
                "the server read {n} `initialize` requests as lines of their own, not {expected}"
            ));
        }
    }
    for shape in &expect.forwarded {
        let value = shape.value();
        let arrived = lines
            .iter()
            .any(|l| l["method"] == value["method"] && l["params"] == value["params"]);
        if !arrived {
            failures.push(format!(
                "{} did not reach the server as one line (split on the way, or never sent on)",
                shape.name
            ));
        }
    }
    failures
}

fn echoed(reply: &Value) -> Option<Value> {
    let text = reply["result"]["content"][0]["text"].as_str()?;
    serde_json::from_str(text).ok()
}

/// Whether `reply` is Warden's policy refusal: an `isError` result with
/// `structuredContent.warden.decision`.
fn is_refusal(reply: &Value) -> bool {
    reply["result"]["isError"] == true
        && !reply["result"]["structuredContent"]["warden"]["decision"].is_null()
}

/// Check the agent-side answer to `shape`.
fn check_answer(shape: &Shape, answer: Option<&Value>, failures: &mut Vec<String>) {
    let name = &shape.name;
    match (shape.kind, answer) {
        (Kind::Notification, _) => {}
        (_, None) => failures.push(format!("{name}: no answer")),
        (Kind::Ping, Some(reply)) => {
            if reply["id"] != json!(shape.id) || reply["result"] != json!({}) {
                failures.push(format!("{name}: ping's answer is {reply}, want {{}}"));
            }
        }
        (Kind::Echo, Some(reply)) => {
            let sent = shape.arguments();
            if reply["id"] != json!(shape.id)
                || echoed(reply) != sent
                || reply["result"]["isError"] == true
            {
                failures.push(format!(
                    "{name}: the agent got {reply}, want the echo of {}",
                    sent.unwrap_or_default()
                ));
            }
        }
    }
}

// === a raw HTTP agent ===

/// An HTTP reply: status, headers (lower-case names), decoded body.
struct HttpReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The JSON-RPC messages of the body: one JSON body, or the events of
    /// an SSE stream.
    fn messages(&self) -> Vec<Value> {
        let text = String::from_utf8_lossy(&self.body);
        let parse = |data: &str| {
            serde_json::from_str::<Value>(data).unwrap_or_else(|_| json!({"not-json": data}))
        };
        if self
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"))
        {
            let mut messages = Vec::new();
            let mut data: Option<String> = None;
            for line in python_lines(&text).into_iter().chain([""]) {
                if line.is_empty() {
                    if let Some(data) = data.take() {
                        messages.push(parse(&data));
                    }
                } else if let Some(value) = line.strip_prefix("data:") {
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match data.as_mut() {
                        Some(data) => {
                            data.push('\n');
                            data.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    }
                }
            }
            messages
        } else if text.trim().is_empty() {
            Vec::new()
        } else {
            match parse(&text) {
                Value::Array(messages) => messages,
                message => vec![message],
            }
        }
    }

    /// The response to request `id`, if the reply holds one.
    fn response(&self, id: Option<u64>) -> Option<Value> {
        let id = json!(id?);
        self.messages()
            .into_iter()
            .find(|m| m["id"] == id && m.get("method").is_none())
    }
}

/// POST `body` (exact bytes) to `addr`'s `/mcp` with `headers`, over a
/// fresh HTTP/1.1 connection, and read the whole reply; `None` if it is not
/// complete within `REPLY`.
async fn post(addr: SocketAddr, headers: &[(&str, String)], body: Vec<u8>) -> Option<HttpReply> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.flush().await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = tokio::time::timeout(REPLY, exchange).await.ok()?;
    Some(parse_reply(&reply.expect("HTTP exchange")))
}

fn parse_reply(reply: &[u8]) -> HttpReply {
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(reply)));
    let head = String::from_utf8_lossy(&reply[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = reply[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpReply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..end]);
        let size = size.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            break;
        };
        if size == 0 || body.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[(end + 4 + size).min(body.len())..];
    }
    out
}

/// The channels Warden reaches a stdio child on from HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    PerSession,
    Shared,
    Stateless,
}

/// One Warden (HTTP listener) in front of `sdk`'s recording server in
/// `mode`; every shape sent on one session. The failures.
async fn through_http(sdk: Sdk, mode: Mode) -> Vec<String> {
    let label = format!("{} {mode:?}", sdk.name());
    let recorder = Recorder::new(&format!("warden-e2e-framing-{}-{mode:?}", sdk.name()));
    let config = write_config(
        &recorder.dir.0,
        &recorder.upstream(sdk, mode == Mode::Shared),
        POLICY,
    );
    let warden = warden_from_file(&config).await;
    let addr = warden.mcp_addr;
    let mut failures = Vec::new();
    let mut ids = Ids(100);
    let mut headers: Vec<(&'static str, String)> = Vec::new();
    let shapes;
    if mode == Mode::Stateless {
        headers = stateless_headers();
        shapes = stateless_shapes(&mut ids);
    } else {
        let init = post(addr, &[], initialize(1).into_bytes())
            .await
            .unwrap_or_else(|| panic!("{label}: initialize got no reply"));
        let session = init
            .header("mcp-session-id")
            .unwrap_or_else(|| panic!("{label}: no session: {:?}", init.messages()))
            .to_owned();
        assert!(
            init.response(Some(1))
                .is_some_and(|r| r["result"].is_object()),
            "{label}: initialize failed: {:?}",
            init.messages()
        );
        headers.push(("Mcp-Session-Id", session));
        headers.push(("MCP-Protocol-Version", REVISION.to_owned()));
        let initialized = notification("notifications/initialized", "");
        let reply = post(addr, &headers, initialized.into_bytes()).await;
        assert_eq!(
            reply.map(|r| r.status),
            Some(202),
            "{label}: notifications/initialized"
        );
        shapes = session_shapes(&mut ids);
    }
    // Side by side (a message whose answer the child lost must not hold up
    // the rest), the `initialize` variants after the others.
    let (first, later): (Vec<&Shape>, Vec<&Shape>) =
        shapes.iter().partition(|s| !s.smuggles_initialize);
    for batch in [first, later] {
        let posts: Vec<_> = batch
            .iter()
            .map(|shape| {
                let (headers, body) = (headers.clone(), shape.text.clone().into_bytes());
                tokio::spawn(async move { post(addr, &headers, body).await })
            })
            .collect();
        for (shape, posted) in batch.iter().zip(posts) {
            let Some(reply) = posted.await.expect("post task") else {
                failures.push(format!("{}: no HTTP reply within {REPLY:?}", shape.name));
                continue;
            };
            let answer = reply.response(shape.id);
            if mode == Mode::Stateless {
                // The child is never initialized: the SDK may refuse the
                // call. If it ran it, the agent gets exactly the echo.
                println!("{label}: {} -> {} {answer:?}", shape.name, reply.status);
                if answer
                    .as_ref()
                    .is_some_and(|a| a["result"].is_object() && a["result"]["isError"] != true)
                {
                    check_answer(shape, answer.as_ref(), &mut failures);
                }
                continue;
            }
            if shape.kind == Kind::Notification && reply.status != 202 {
                failures.push(format!(
                    "{}: answered {} {:?}, want 202",
                    shape.name,
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                ));
            }
            check_answer(shape, answer.as_ref(), &mut failures);
        }
    }
    // A last call, answered after every line before it was read; then a
    // moment for anything smuggled to run.
    let sentinel_id = ids.next();
    let meta = if mode == Mode::Stateless {
        stateless_meta()
    } else {
        String::new()
    };
    let sentinel = Shape {
        name: "sentinel".to_owned(),
        kind: Kind::Echo,
        id: Some(sentinel_id),
        text: echo(sentinel_id, r#""tag":"sentinel""#, &meta),
        wipes: Vec::new(),
        smuggles_initialize: false,
    };
    match post(addr, &headers, sentinel.text.clone().into_bytes()).await {
        Some(reply) if mode != Mode::Stateless => {
            check_answer(
                &sentinel,
                reply.response(sentinel.id).as_ref(),
                &mut failures,
            );
        }
        Some(_) => {}
        None => failures.push(format!("sentinel: no HTTP reply within {REPLY:?}")),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut sent = shapes.clone();
    sent.push(sentinel.clone());
    let must_run = match mode {
        Mode::Stateless => Vec::new(),
        _ => sent
            .iter()
            .filter(|s| s.kind == Kind::Echo)
            .map(|s| s.name.clone())
            .collect(),
    };
    let expect = Expect {
        sent: &sent,
        must_run,
        initializes: Some(if mode == Mode::Stateless { 0 } else { 1 }),
        forwarded: sent.iter().collect(),
    };
    failures.extend(check_server(&recorder, &expect));
    if tokio::time::timeout(Duration::from_secs(10), warden.shutdown())
        .await
        .is_err()
    {
        println!("{label}: Warden took more than 10 s to shut down");
    }
    failures
        .into_iter()
        .map(|f| format!("[{label}] {f}"))
        .collect()
}

async fn behind_warden_http(sdk: Sdk) {
    let started = Instant::now();
    let (per_session, shared, stateless) = tokio::join!(
        through_http(sdk, Mode::PerSession),
        through_http(sdk, Mode::Shared),
        through_http(sdk, Mode::Stateless),
    );
    let failures: Vec<String> = [per_session, shared, stateless].concat();
    println!("{} over HTTP: {:.1?}", sdk.name(), started.elapsed());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// === a raw stdio agent ===

/// `warden stdio --config F` (the built binary) in front of `sdk`'s
/// recording server, fed raw lines: bare CRs between messages, and every
/// shape. The failures.
fn through_warden_stdio(sdk: Sdk) -> Vec<String> {
    let label = format!("{} warden stdio", sdk.name());
    let recorder = Recorder::new(&format!("warden-e2e-framing-{}-stdio", sdk.name()));
    let config = write_config(&recorder.dir.0, &recorder.upstream(sdk, false), POLICY);
    let mut agent = LineChild::spawn(warden_stdio(&config));
    let mut failures = Vec::new();

    agent.write(&(initialize(1) + "\n"));
    let init = agent.responses(&[1], Instant::now() + REPLY);
    assert!(
        init.get(&1).is_some_and(|r| r["result"].is_object()),
        "{label}: initialize failed: {:?}\n{}",
        agent.seen,
        agent.log()
    );
    agent.write(&(notification("notifications/initialized", "") + "\n"));

    // Bare CRs between whole messages: each part is a line of its own,
    // judged on its own; the `wipe` after a CR is refused by policy.
    let mut sent = Vec::new();
    let pair_echo = Shape {
        name: "cr-pair-echo".to_owned(),
        kind: Kind::Echo,
        id: Some(10),
        text: echo(10, r#""tag":"cr-pair-echo","text":"before a CR""#, ""),
        wipes: Vec::new(),
        smuggles_initialize: false,
    };
    let ping = Shape {
        name: "cr-pair-ping".to_owned(),
        kind: Kind::Ping,
        id: Some(13),
        text: request(13, "ping", ""),
        wipes: Vec::new(),
        smuggles_initialize: false,
    };
    let second_echo = Shape {
        name: "cr-pair-second-echo".to_owned(),
        kind: Kind::Echo,
        id: Some(14),
        text: echo(
            14,
            &format!(r#""tag":"cr-pair-second-echo","text":{}"#, string(ODD)),
            "",
        ),
        wipes: Vec::new(),
        smuggles_initialize: false,
    };
    let note = notification("notifications/x-note", r#""p":1"#);
    agent.write(&format!("{}\r{}\n", pair_echo.text, wipe("cr-pair", 11)));
    agent.write(&format!("{note}\r{}\r\n", wipe("cr-after-note", 12)));
    agent.write(&format!("{}\r{}\r", ping.text, second_echo.text));
    let mut refused_ids = vec![11, 12];
    sent.extend([pair_echo, ping, second_echo]);

    // Every shape, as one line each (raw breaks inside included): each
    // part of a broken line is judged on its own.
    let mut ids = Ids(100);
    let shapes = session_shapes(&mut ids);
    for shape in &shapes {
        agent.write(&format!("{}\n", shape.text));
        refused_ids.extend(&shape.wipes);
    }
    let sentinel_id = ids.next();
    let sentinel = Shape {
        name: "sentinel".to_owned(),
        kind: Kind::Echo,
        id: Some(sentinel_id),
        text: echo(sentinel_id, r#""tag":"sentinel""#, ""),
        wipes: Vec::new(),
        smuggles_initialize: false,
    };
    agent.write(&format!("{}\n", sentinel.text));

    // Whole messages: the CR pairs, what holds no raw break, the sentinel.
    let whole: Vec<Shape> = sent
        .iter()
        .cloned()
        .chain(
            shapes
                .iter()
                .filter(|s| !s.text.contains(['\r', '\n']))
                .cloned(),
        )
        .chain([sentinel.clone()])
        .collect();
    let mut wanted: Vec<u64> = whole.iter().filter_map(|s| s.id).collect();
    wanted.extend(&refused_ids);
    let answers = agent.responses(&wanted, Instant::now() + REPLY);
    for shape in &whole {
        check_answer(
            shape,
            shape.id.and_then(|id| answers.get(&id)),
            &mut failures,
        );
    }
    for id in &refused_ids {
        match answers.get(id) {
            Some(reply) if is_refusal(reply) => {}
            Some(reply) => failures.push(format!(
                "the `wipe` {id} on a line of its own was not refused by policy: {reply}"
            )),
            None => failures.push(format!(
                "the `wipe` {id} on a line of its own got no answer (it must be judged and refused)"
            )),
        }
    }
    for message in &agent.seen {
        if message.get("not-json").is_some() {
            failures.push(format!(
                "warden stdio wrote a line that is not JSON: {message}"
            ));
        }
    }
    std::thread::sleep(Duration::from_millis(500));

    let all: Vec<Shape> = shapes
        .iter()
        .cloned()
        .chain(whole.iter().cloned())
        .collect();
    let expect = Expect {
        sent: &all,
        must_run: whole
            .iter()
            .filter(|s| s.kind == Kind::Echo)
            .map(|s| s.name.clone())
            .collect(),
        // A smuggled `initialize` on a line of its own is one Warden judged.
        initializes: None,
        forwarded: whole.iter().filter(|s| s.kind != Kind::Ping).collect(),
    };
    failures.extend(check_server(&recorder, &expect));
    if !failures.is_empty() {
        println!("{label}: warden log:\n{}", agent.log());
    }
    let closing = Instant::now();
    let exit = agent.finish(Duration::from_secs(10));
    println!(
        "{label}: exit {exit:?} {:.1?} after stdin closed",
        closing.elapsed()
    );
    failures
        .into_iter()
        .map(|f| format!("[{label}] {f}"))
        .collect()
}

fn behind_warden_stdio(sdk: Sdk) {
    let started = Instant::now();
    let failures = through_warden_stdio(sdk);
    println!(
        "{} behind warden stdio: {:.1?}",
        sdk.name(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// === the control: the servers fed directly ===

/// Feed `sdk`'s server the smuggling bytes directly (no Warden): it must
/// run the smuggled `wipe` for every line end its reader splits at, and
/// its tee must have recorded exactly the bytes written.
fn fed_directly(sdk: Sdk) {
    let recorder = Recorder::new(&format!("warden-e2e-framing-{}-direct", sdk.name()));
    let (program, args) = sdk.server();
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(peers())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("RECORD_FILE", recorder.record_file())
        .env("RAW_FILE", recorder.raw_file());
    let mut server = LineChild::spawn(command);
    let mut written = String::new();
    let mut write = |server: &mut LineChild, text: String| {
        server.write(&text);
        written.push_str(&text);
    };
    write(&mut server, initialize(1) + "\n");
    let init = server.responses(&[1], Instant::now() + REPLY);
    assert!(
        init.contains_key(&1),
        "{sdk:?}: no initialize result: {}",
        server.log()
    );
    write(
        &mut server,
        notification("notifications/initialized", "") + "\n",
    );
    let mut ids = Ids(100);
    let shapes: Vec<Shape> = session_shapes(&mut ids)
        .into_iter()
        .filter(|s| !s.smuggles_initialize && !s.wipes.is_empty())
        .collect();
    for shape in &shapes {
        write(&mut server, format!("{}\n", shape.text));
    }
    write(&mut server, echo(2, r#""tag":"sentinel""#, "") + "\n");
    let answers = server.responses(&[2], Instant::now() + REPLY);
    assert!(
        answers.contains_key(&2),
        "{sdk:?}: no sentinel answer: {}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    let _ = server.finish(Duration::from_secs(5));

    let mut wiped: Vec<String> = recorder
        .calls()
        .iter()
        .filter(|c| c["tool"] == "wipe")
        .filter_map(|c| c["arguments"]["shape"].as_str().map(str::to_owned))
        .collect();
    wiped.sort();
    let mut expected: Vec<String> = shapes
        .iter()
        .filter(|s| {
            let end = s.name.rsplit('-').next().unwrap_or_default();
            ENDS.iter().any(|(n, e)| *n == end && sdk.splits_at(e))
        })
        .map(|s| s.name.clone())
        .collect();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(
        wiped, expected,
        "{sdk:?}: the smuggled `wipe` calls the server ran when fed directly"
    );
    assert_eq!(
        recorder.raw(),
        written,
        "{sdk:?}: the tee did not record exactly the bytes written"
    );
}

// === warden stdio <- a malicious upstream ===

/// The config of `warden stdio` in front of `smuggling_upstream.py`.
fn smuggler_config(dir: &TempDir) -> PathBuf {
    let peers = peers();
    let upstream = EverythingUpstream {
        server: None,
        yaml: format!(
            "      command: {}\n      args: [{}]\n      inherit_env: [PATH, HOME]\n",
            yaml_str(&peers.join(".venv/bin/python").display().to_string()),
            yaml_str(&peers.join("smuggling_upstream.py").display().to_string()),
        ),
    };
    write_config(&dir.0, &upstream, POLICY)
}

/// `sdk`'s framing client launching `command`.
fn framing_client(sdk: Sdk, command: &[&std::ffi::OsStr]) -> Command {
    let peers = peers();
    let mut client = match sdk {
        Sdk::Python => {
            let mut c = Command::new(peers.join(".venv/bin/python"));
            c.arg("framing_client.py");
            c
        }
        Sdk::TypeScript => {
            let mut c = Command::new(on_path("node"));
            c.arg("framing-client.mjs");
            c
        }
    };
    client
        .current_dir(&peers)
        .args(["--timeout", "15", "--"])
        .args(command);
    client
}

async fn client_behind_warden_stdio(sdk: Sdk) {
    let started = Instant::now();
    let peers = peers();
    // Control: the upstream's forgeries, with LF for CR (what a relay that
    // turned CR into LF would deliver), fool the client read directly, so
    // its checks can fail.
    let python = peers.join(".venv/bin/python");
    let script = peers.join("smuggling_upstream.py");
    let control = framing_client(
        sdk,
        &[
            python.as_os_str(),
            script.as_os_str(),
            "--break".as_ref(),
            "lf".as_ref(),
        ],
    );
    let output = run_peer(control, Duration::from_secs(60)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    for check in [
        "tools-list",
        "call-echo",
        "no-forged-request",
        "no-stray-lines",
    ] {
        assert!(
            stdout.contains(&format!("FAIL {check}:")),
            "{sdk:?} control: the forged messages did not fail {check}:\n{stdout}"
        );
    }

    let dir = TempDir::new(&format!("warden-e2e-framing-{}-client", sdk.name()));
    let config = smuggler_config(&dir);
    let warden = warden_binary();
    let client = framing_client(
        sdk,
        &[
            warden.as_os_str(),
            "stdio".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
    );
    let output = run_peer(client, Duration::from_secs(60)).await;
    let passed = assert_all_passed(
        &output,
        &format!("{} framing client behind warden stdio", sdk.name()),
    );
    assert_eq!(passed, 6, "{sdk:?}: every check runs");
    println!("{} client: {:.1?}", sdk.name(), started.elapsed());
}

// === the tests ===

#[test]
fn python_server_runs_a_smuggled_call_when_fed_directly() {
    fed_directly(Sdk::Python);
}

#[test]
fn ts_server_runs_a_smuggled_call_when_fed_directly() {
    fed_directly(Sdk::TypeScript);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_server_behind_warden_http_runs_only_judged_calls() {
    behind_warden_http(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_server_behind_warden_http_runs_only_judged_calls() {
    behind_warden_http(Sdk::TypeScript).await;
}

#[test]
fn python_server_behind_warden_stdio_runs_only_judged_calls() {
    behind_warden_stdio(Sdk::Python);
}

#[test]
fn ts_server_behind_warden_stdio_runs_only_judged_calls() {
    behind_warden_stdio(Sdk::TypeScript);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_behind_warden_stdio_sees_no_forged_message() {
    client_behind_warden_stdio(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_client_behind_warden_stdio_sees_no_forged_message() {
    client_behind_warden_stdio(Sdk::TypeScript).await;
}
