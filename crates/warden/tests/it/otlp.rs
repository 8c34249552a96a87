//! OpenTelemetry through the real proxy: a Warden with `audit.otlp`
//! exports its audit records as OTLP log records and a SERVER span per
//! `tools/call` (continuing the agent's `traceparent`) to a real OTLP/HTTP
//! receiver (`crates/e2e/peers/otlp_receiver.py`, decoding with the
//! official generated classes).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden::audit::{AuditConfig, OtlpConfig};
use warden_audit::otlp::OtlpOptions;

use crate::support::*;

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

struct Receiver {
    child: Child,
    url: String,
    out: PathBuf,
}

impl Receiver {
    fn start(dir: &Path) -> Receiver {
        let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/peers");
        let python = peers.join(".venv/bin/python");
        assert!(
            python.is_file(),
            "{} is missing: the Python peers are installed by `cargo xtask deps`",
            python.display()
        );
        let out = dir.join("received.jsonl");
        let mut child = Command::new(python)
            .arg(peers.join("otlp_receiver.py"))
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start otlp_receiver.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("READY");
        let url = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("otlp_receiver.py said {line:?}"))
            .to_owned();
        Receiver { child, url, out }
    }

    fn items(&self, signal: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
            .filter(|item| item["signal"] == signal)
            .collect()
    }

    async fn wait_for(&self, signal: &str, found: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let items = self.items(signal);
            if found(&items) {
                return items;
            }
            assert!(
                Instant::now() < deadline,
                "{signal} items so far: {items:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn audit_records_and_request_spans_reach_a_real_otlp_receiver() {
    let dir = std::env::temp_dir().join(format!("warden-it-otlp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let receiver = Receiver::start(&dir);
    let mut audit = AuditConfig::in_dir(&dir.join("audit"), "it-otlp");
    let mut options = OtlpOptions::new(receiver.url.clone(), "it-otlp");
    options.traces_interval = Duration::from_millis(100);
    audit.otlp = Some(OtlpConfig {
        options,
        spool_dir: dir.join("otlp-spool"),
        spool_max: 1 << 20,
        traces: true,
        propagate: true,
    });
    let (url, _demo) = demo_upstream().await;
    let warden = WardenBuilder::new(&url).audit(audit).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let traceparent = format!("00-{PARENT_TRACE}-00f067aa0ba902b7-01");
    let reply = agent
        .post(
            &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
            "name": "search_customers", "arguments": {"query": "ada"},
            "_meta": {"traceparent": traceparent, "warden/model": "test-model"}}}),
        )
        .await;
    assert_ne!(
        reply.response()["result"]["isError"],
        true,
        "{:?}",
        reply.body
    );
    let refused = agent
        .call(6, "create_note", json!({"customer_id": 1, "text": "x"}))
        .await;
    assert_eq!(refused.response()["result"]["isError"], true);
    warden.running.shutdown().await;

    let logs = receiver
        .wait_for("log", |items| {
            items
                .iter()
                .any(|i| i["attributes"]["warden.audit.kind"] == "checkpoint")
        })
        .await;
    let kinds: Vec<&str> = logs
        .iter()
        .filter_map(|i| i["attributes"]["warden.audit.kind"].as_str())
        .collect();
    for kind in [
        "policy_loaded",
        "session_started",
        "tool_call",
        "refusal",
        "checkpoint",
    ] {
        assert!(kinds.contains(&kind), "no {kind} log record in {kinds:?}");
    }
    let seqs: Vec<u64> = logs
        .iter()
        .filter_map(|i| i["attributes"]["warden.audit.seq"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in chain order: {seqs:?}"
    );
    let call = logs
        .iter()
        .find(|i| i["attributes"]["warden.audit.kind"] == "tool_call")
        .expect("tool_call");
    let body: warden_audit::Record =
        serde_json::from_str(call["body"].as_str().expect("body")).expect("a record");
    assert_eq!(body.trace_id.as_deref(), Some(PARENT_TRACE));
    assert_eq!(
        body.model.and_then(|m| m.name).as_deref(),
        Some("test-model")
    );

    let spans = receiver.wait_for("span", |items| items.len() >= 2).await;
    let span = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no span {name}: {spans:?}"))
    };
    let allowed = span("tools/call search_customers");
    assert_eq!(allowed["kind"], 2, "SERVER");
    assert_eq!(allowed["trace_id"], PARENT_TRACE);
    assert_eq!(
        allowed["attributes"]["gen_ai.tool.name"],
        "search_customers"
    );
    assert_eq!(allowed["attributes"]["mcp.method.name"], "tools/call");
    assert_eq!(allowed["attributes"]["warden.decision"], "allow");
    // The caller (a route without auth: anonymous) is on every span.
    assert_eq!(allowed["attributes"]["warden.principal.agent"], "anonymous");
    let refused = span("tools/call create_note");
    assert_eq!(refused["attributes"]["warden.principal.agent"], "anonymous");
    assert_eq!(refused["attributes"]["warden.decision"], "deny");
    assert_eq!(refused["attributes"]["warden.reason"], "not-read-only");
    assert_eq!(refused["attributes"]["error.type"], "tool_error");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_upstream_continues_wardens_span_and_reads_the_same_arguments() {
    let dir = std::env::temp_dir().join(format!("warden-it-otlp-prop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let receiver = Receiver::start(&dir);
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let raw_calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = calls.clone();
    let seen_raw = raw_calls.clone();
    let (url, _) = upstream_fn(move |_parts, body| {
        let seen = seen.clone();
        let seen_raw = seen_raw.clone();
        async move {
            if let Some(reply) = handshake(&body) {
                return reply;
            }
            let message: Value = serde_json::from_slice(&body).unwrap_or_default();
            let id = message["id"].clone();
            if message["method"] == "tools/list" {
                return json_response(&json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
                    {"name": "lookup", "inputSchema": {"type": "object"},
                     "annotations": {"readOnlyHint": true}}]}}));
            }
            seen_raw
                .lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&body).into_owned());
            seen.lock().expect("lock").push(message);
            json_response(&json!({"jsonrpc": "2.0", "id": id,
                "result": {"content": [{"type": "text", "text": "ok"}]}}))
        }
    })
    .await;
    let mut audit = AuditConfig::in_dir(&dir.join("audit"), "it-otlp-prop");
    let mut options = OtlpOptions::new(receiver.url.clone(), "it-otlp-prop");
    options.traces_interval = Duration::from_millis(100);
    audit.otlp = Some(OtlpConfig {
        options,
        spool_dir: dir.join("otlp-spool"),
        spool_max: 1 << 20,
        traces: true,
        propagate: true,
    });
    let warden = WardenBuilder::new(&url).audit(audit).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let arguments = json!({"q": "x", "n": [1, 2.50, {"deep": true}]});
    let traceparent = format!("00-{PARENT_TRACE}-00f067aa0ba902b7-01");
    let reply = agent
        .post(
            &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
            "name": "lookup", "arguments": arguments,
            "_meta": {"traceparent": traceparent, "tracestate": "rojo=1", "progressToken": 4}}}),
        )
        .await;
    assert_eq!(reply.response()["result"]["content"][0]["text"], "ok");
    warden.running.shutdown().await;
    let forwarded = calls.lock().expect("lock")[0].clone();
    assert_eq!(forwarded["params"]["arguments"], arguments);
    assert_eq!(
        forwarded["params"]["_meta"]["progressToken"], 4,
        "other _meta kept"
    );
    assert_eq!(forwarded["params"]["_meta"]["tracestate"], "rojo=1");
    let sent = forwarded["params"]["_meta"]["traceparent"]
        .as_str()
        .expect("a traceparent")
        .to_owned();
    let spans = receiver
        .wait_for("span", |items| {
            items.iter().any(|s| s["name"] == "tools/call lookup")
        })
        .await;
    let span = spans
        .iter()
        .find(|s| s["name"] == "tools/call lookup")
        .expect("span");
    let span_id = span["span_id"].as_str().expect("span id");
    assert_eq!(
        sent,
        format!("00-{PARENT_TRACE}-{span_id}-01"),
        "the upstream's parent is Warden's span"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
