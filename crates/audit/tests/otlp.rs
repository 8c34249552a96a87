//! OTLP export against a real receiver: `crates/e2e/peers/otlp_receiver.py`
//! decodes what Warden sends with the official generated classes
//! (`opentelemetry-proto` 1.45.2) and writes each item as a JSON line.
//!
//! Audit log records arrive with their fields, once each, in chain order,
//! through an endpoint that fails, one that hangs, one that refuses a batch
//! as malformed, and a restart over a spool that holds records. Spans carry
//! the MCP conventions' names and attributes and continue the agent's
//! trace; the duration histograms arrive with the conventions' buckets.
//!
//! The receiver runs from the peers' venv (`cargo xtask deps`); each test
//! has its own receiver on a free port, so they run in parallel.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_audit::otlp::metrics::BOUNDS;
use warden_audit::otlp::{
    OtlpLogs, OtlpLogsOptions, OtlpOptions, Outcome, RequestSpan, Telemetry, Transport,
};
use warden_audit::record::{Kind, Record};
use warden_audit::spool::Spool;
use warden_audit::{Chain, Follower, Sealed};

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// The receiver, killed when dropped.
struct Receiver {
    child: Child,
    url: String,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start(args: &[&str]) -> Receiver {
        let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/peers");
        let python = peers.join(".venv/bin/python");
        assert!(
            python.is_file(),
            "{} is missing: the Python peers are installed by `cargo xtask deps` (or `cargo xtask test`)",
            python.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("items.jsonl");
        let mut child = Command::new(python)
            .arg(peers.join("otlp_receiver.py"))
            .arg("--out")
            .arg(&out)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start otlp_receiver.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read READY");
        let url = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("otlp_receiver.py said {line:?}"))
            .to_owned();
        Receiver {
            child,
            url,
            out,
            _dir: dir,
        }
    }

    /// Every item received of `signal`, in arrival order.
    fn items(&self, signal: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
            .filter(|item| item["signal"] == signal)
            .collect()
    }

    /// Wait until `count` items of `signal` arrived (and a little longer,
    /// to see any that should not have).
    fn wait_for(&self, signal: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let items = self.items(signal);
            if items.len() >= count {
                std::thread::sleep(Duration::from_millis(300));
                return self.items(signal);
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} {signal} items arrived",
                items.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// POST /control...: change the receiver's outage switches.
    fn control(&self, path_and_query: &str) {
        let address = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("connect to the receiver");
        write!(
            stream,
            "POST {path_and_query} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("send control");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "{answer}"
        );
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn options(receiver: &Receiver) -> OtlpLogsOptions {
    let mut otlp = OtlpOptions::new(&receiver.url, "warden-test-1");
    otlp.timeout = Duration::from_millis(500);
    let mut options = OtlpLogsOptions::new(otlp);
    options.max_batch = 16;
    options.retry_initial = Duration::from_millis(50);
    options.retry_max = Duration::from_millis(200);
    options
}

/// `count` sealed records continuing `chain`: tool calls, every third a
/// refusal.
fn seal(chain: &mut Chain, count: usize) -> Vec<Sealed> {
    (0..count)
        .map(|i| {
            let kind = if i % 3 == 2 {
                Kind::Refusal
            } else {
                Kind::ToolCall
            };
            let mut record = Record::new(kind, "warden-test-1");
            record.tool = Some(format!("tool-{i}"));
            record.decision = Some(
                if kind == Kind::Refusal {
                    "deny"
                } else {
                    "allow"
                }
                .into(),
            );
            record.mcp_session = Some("session-1".into());
            chain.seal(record)
        })
        .collect()
}

fn seqs(items: &[Value]) -> Vec<u64> {
    items
        .iter()
        .map(|item| {
            item["attributes"]["warden.audit.seq"]
                .as_u64()
                .expect("warden.audit.seq")
        })
        .collect()
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn audit_records_arrive_as_log_records_in_order_with_their_fields() {
    let receiver = Receiver::start(&[]);
    let spool = tempfile::tempdir().expect("tempdir");
    let mut logs = OtlpLogs::start(
        options(&receiver),
        Box::new(Spool::open(spool.path(), 1 << 20).expect("spool")),
    )
    .expect("start");
    let mut chain = Chain::empty("warden-test-1");
    let batches = [seal(&mut chain, 5), seal(&mut chain, 20)];
    for batch in &batches {
        logs.committed(batch);
    }
    let items = receiver.wait_for("log", 25);
    assert_eq!(seqs(&items), (1..=25).collect::<Vec<_>>());
    let sealed: Vec<&Sealed> = batches.iter().flatten().collect();
    for (item, sealed) in items.iter().zip(&sealed) {
        let record: Record = serde_json::from_str(&sealed.line).expect("record");
        assert_eq!(item["body"], sealed.line.as_str(), "the body is the line");
        let attributes = &item["attributes"];
        assert_eq!(attributes["warden.audit.hash"], sealed.hash.as_str());
        assert_eq!(attributes["warden.audit.chain"], "warden-test-1");
        assert_eq!(attributes["log.record.uid"], record.id.to_string().as_str());
        assert_eq!(
            attributes["gen_ai.tool.name"],
            record.tool.as_deref().expect("tool")
        );
        assert_eq!(attributes["mcp.session.id"], "session-1");
        let refusal = record.kind == Kind::Refusal;
        assert_eq!(
            attributes["warden.audit.kind"],
            if refusal { "refusal" } else { "tool_call" }
        );
        assert_eq!(
            attributes["warden.decision"],
            if refusal { "deny" } else { "allow" }
        );
        assert_eq!(item["severity_text"], if refusal { "WARN" } else { "INFO" });
        assert_eq!(item["severity_number"], if refusal { 13 } else { 9 });
        let time = humantime::parse_rfc3339(&record.time).expect("time");
        let nanos = time
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as u64;
        assert_eq!(item["time_unix_nano"], nanos);
        assert!(item["observed_time_unix_nano"].as_u64() >= Some(nanos));
        assert_eq!(item["resource"]["service.name"], "warden");
        assert_eq!(item["resource"]["service.instance.id"], "warden-test-1");
        assert_eq!(item["scope"], "warden.audit");
    }
    let stats = logs.stats();
    assert_eq!(stats.exported.load(Ordering::Relaxed), 25);
    assert_eq!(stats.spooled.load(Ordering::Relaxed), 0);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    logs.handle().close();
}

#[test]
fn an_endpoint_failing_then_recovering_loses_and_duplicates_nothing() {
    let receiver = Receiver::start(&["--fail", "4", "--status", "503"]);
    let spool = tempfile::tempdir().expect("tempdir");
    let mut logs = OtlpLogs::start(
        options(&receiver),
        Box::new(Spool::open(spool.path(), 1 << 20).expect("spool")),
    )
    .expect("start");
    let mut chain = Chain::empty("warden-test-1");
    for _ in 0..10 {
        logs.committed(&seal(&mut chain, 10));
        std::thread::sleep(Duration::from_millis(10));
    }
    let items = receiver.wait_for("log", 100);
    assert_eq!(
        seqs(&items),
        (1..=100).collect::<Vec<_>>(),
        "all, once, in order"
    );
    let stats = logs.stats();
    wait_until("the spool to drain", || {
        stats.spool_bytes.load(Ordering::Relaxed) == 0
    });
    assert_eq!(stats.failures.load(Ordering::Relaxed), 4);
    assert!(stats.spooled.load(Ordering::Relaxed) > 0);
    assert_eq!(stats.exported.load(Ordering::Relaxed), 100);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    assert!(!stats.failing.load(Ordering::Relaxed));
    logs.handle().close();
}

#[test]
fn a_hanging_endpoint_times_out_and_the_spooled_records_come_later() {
    let receiver = Receiver::start(&["--hang", "2", "--hang-seconds", "5"]);
    let spool = tempfile::tempdir().expect("tempdir");
    let mut logs = OtlpLogs::start(
        options(&receiver),
        Box::new(Spool::open(spool.path(), 1 << 20).expect("spool")),
    )
    .expect("start");
    let mut chain = Chain::empty("warden-test-1");
    let started = Instant::now();
    logs.committed(&seal(&mut chain, 8));
    wait_until("the first timeout", || {
        logs.stats().failures.load(Ordering::Relaxed) >= 1
    });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "gave up on the hanging endpoint after its timeout"
    );
    logs.committed(&seal(&mut chain, 8));
    let items = receiver.wait_for("log", 16);
    assert_eq!(seqs(&items), (1..=16).collect::<Vec<_>>());
    let stats = logs.stats();
    assert_eq!(stats.failures.load(Ordering::Relaxed), 2);
    assert_eq!(stats.spooled.load(Ordering::Relaxed), 16);
    assert_eq!(stats.exported.load(Ordering::Relaxed), 16);
    logs.handle().close();
}

#[test]
fn a_restart_delivers_what_the_spool_holds_first() {
    let receiver = Receiver::start(&["--fail", "1000000"]);
    let spool = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::empty("warden-test-1");
    {
        let mut logs = OtlpLogs::start(
            options(&receiver),
            Box::new(Spool::open(spool.path(), 1 << 20).expect("spool")),
        )
        .expect("start");
        logs.committed(&seal(&mut chain, 12));
        logs.committed(&seal(&mut chain, 18));
        let stats = logs.stats().clone();
        wait_until("all 30 spooled", || {
            stats.spooled.load(Ordering::Relaxed) == 30
        });
        logs.handle().close();
        assert_eq!(stats.exported.load(Ordering::Relaxed), 0);
    }
    assert!(receiver.items("log").is_empty());
    receiver.control("/control/clear");
    let mut logs = OtlpLogs::start(
        options(&receiver),
        Box::new(Spool::open(spool.path(), 1 << 20).expect("spool")),
    )
    .expect("restart");
    logs.committed(&seal(&mut chain, 5));
    let items = receiver.wait_for("log", 35);
    assert_eq!(
        seqs(&items),
        (1..=35).collect::<Vec<_>>(),
        "the spool first, then the new records"
    );
    wait_until("the spool to drain", || {
        logs.stats().spool_bytes.load(Ordering::Relaxed) == 0
    });
    logs.handle().close();
}

#[test]
fn a_batch_refused_as_malformed_is_dropped_and_counted_not_retried() {
    let receiver = Receiver::start(&["--reject", "1"]);
    let mut logs = OtlpLogs::start(
        options(&receiver),
        Box::new(warden_audit::otlp::MemorySpool::new(1 << 20)),
    )
    .expect("start");
    let mut chain = Chain::empty("warden-test-1");
    logs.committed(&seal(&mut chain, 6));
    wait_until("the refused batch to be dropped", || {
        logs.stats().dropped.load(Ordering::Relaxed) == 6
    });
    logs.committed(&seal(&mut chain, 4));
    let items = receiver.wait_for("log", 4);
    assert_eq!(seqs(&items), vec![7, 8, 9, 10]);
    assert_eq!(logs.stats().failures.load(Ordering::Relaxed), 0);
    logs.handle().close();
}

fn telemetry(receiver: &Receiver) -> Telemetry {
    let mut options = OtlpOptions::new(&receiver.url, "warden-test-1");
    options.timeout = Duration::from_secs(2);
    Telemetry::new(options).expect("telemetry")
}

#[test]
fn request_spans_follow_the_mcp_conventions_and_continue_the_agents_trace() {
    let receiver = Receiver::start(&[]);
    let telemetry = telemetry(&receiver);
    let traceparent = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    let call = telemetry.request_span(RequestSpan {
        method: "tools/call",
        tool: Some("search"),
        session: Some("session-1"),
        agent: None,
        user: None,
        protocol_version: Some("2025-06-18"),
        request_id: Some("7"),
        transport: Transport::Tcp,
        traceparent: Some(&traceparent),
        tracestate: Some("rojo=00f067aa0ba902b7"),
    });
    let upstream = call.traceparent().expect("a child context");
    assert!(
        upstream.starts_with(&format!("00-{PARENT_TRACE}-")),
        "{upstream}"
    );
    assert!(!upstream.contains(PARENT_SPAN), "{upstream}");
    assert_eq!(call.tracestate(), Some("rojo=00f067aa0ba902b7"));
    call.end(Outcome {
        error_type: Some("tool_error"),
        decision: Some("allow"),
        reason: Some("read-only"),
        upstream_duration: Some(Duration::from_millis(3)),
        ..Outcome::default()
    });
    let list = telemetry.request_span(RequestSpan {
        method: "tools/list",
        tool: None,
        session: None,
        agent: None,
        user: None,
        protocol_version: None,
        request_id: Some("8"),
        transport: Transport::Pipe,
        traceparent: None,
        tracestate: None,
    });
    let own_trace = list.trace_id().expect("a new trace");
    list.end(Outcome::default());
    let refused = telemetry.request_span(RequestSpan {
        method: "tools/call",
        tool: Some("delete_repo"),
        session: None,
        agent: None,
        user: None,
        protocol_version: None,
        request_id: Some("9"),
        transport: Transport::Tcp,
        traceparent: Some("not a traceparent"),
        tracestate: None,
    });
    refused.end(Outcome {
        error_type: Some("-32602"),
        error_message: Some("bad arguments"),
        decision: Some("deny"),
        ..Outcome::default()
    });
    telemetry.flush();
    let spans = receiver.wait_for("span", 3);
    assert_eq!(spans.len(), 3);
    let by_name = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no span {name}: {spans:?}"))
    };

    let call = by_name("tools/call search");
    assert_eq!(call["kind"], 2, "SERVER");
    assert_eq!(call["trace_id"], PARENT_TRACE);
    assert_eq!(call["parent_span_id"], PARENT_SPAN);
    assert_eq!(call["trace_state"], "rojo=00f067aa0ba902b7");
    assert!(upstream.contains(call["span_id"].as_str().expect("span id")));
    let attributes = &call["attributes"];
    assert_eq!(attributes["mcp.method.name"], "tools/call");
    assert_eq!(attributes["gen_ai.tool.name"], "search");
    assert_eq!(attributes["gen_ai.operation.name"], "execute_tool");
    assert_eq!(attributes["mcp.session.id"], "session-1");
    assert_eq!(attributes["mcp.protocol.version"], "2025-06-18");
    assert_eq!(attributes["jsonrpc.request.id"], "7");
    assert_eq!(attributes["network.transport"], "tcp");
    assert_eq!(attributes["error.type"], "tool_error");
    assert_eq!(attributes["warden.decision"], "allow");
    assert_eq!(attributes["warden.reason"], "read-only");
    assert_eq!(call["status"]["code"], 2, "ERROR with error.type");
    assert!(call["end_time_unix_nano"].as_u64() >= call["start_time_unix_nano"].as_u64());
    assert_eq!(call["resource"]["service.name"], "warden");

    let list = by_name("tools/list");
    assert_eq!(list["trace_id"], own_trace.as_str());
    assert_eq!(list["parent_span_id"], "");
    let attributes = list["attributes"].as_object().expect("attributes");
    assert_eq!(attributes["network.transport"], "pipe");
    for absent in [
        "gen_ai.tool.name",
        "gen_ai.operation.name",
        "error.type",
        "mcp.session.id",
    ] {
        assert!(!attributes.contains_key(absent), "{absent}: {attributes:?}");
    }
    assert_eq!(list["status"]["code"], 0);

    let refused = by_name("tools/call delete_repo");
    assert_ne!(
        refused["trace_id"], PARENT_TRACE,
        "an invalid traceparent starts a new trace"
    );
    assert_eq!(refused["parent_span_id"], "");
    assert_eq!(refused["attributes"]["error.type"], "-32602");
    assert_eq!(refused["attributes"]["rpc.response.status_code"], "-32602");
    assert_eq!(refused["status"]["message"], "bad arguments");

    let stats = telemetry.stats().expect("stats");
    assert_eq!(stats.spans_exported.load(Ordering::Relaxed), 3);
    telemetry.shutdown();
}

#[test]
fn an_unsampled_parent_is_continued_but_not_exported() {
    let receiver = Receiver::start(&[]);
    let telemetry = telemetry(&receiver);
    let traceparent = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-00");
    let span = telemetry.request_span(RequestSpan {
        method: "tools/call",
        tool: Some("search"),
        session: None,
        agent: None,
        user: None,
        protocol_version: None,
        request_id: Some("1"),
        transport: Transport::Tcp,
        traceparent: Some(&traceparent),
        tracestate: None,
    });
    let upstream = span.traceparent().expect("propagated");
    assert!(upstream.ends_with("-00"), "{upstream}");
    span.end(Outcome::default());
    telemetry.flush();
    let metrics = receiver.wait_for("metric", 1);
    assert_eq!(metrics[0]["count"], 1, "still counted");
    assert!(receiver.items("span").is_empty());
    telemetry.shutdown();
}

#[test]
fn operation_durations_arrive_as_the_conventions_histograms() {
    let receiver = Receiver::start(&[]);
    let telemetry = telemetry(&receiver);
    for (tool, error, upstream) in [
        ("search", None, Some(Duration::from_millis(15))),
        ("search", None, Some(Duration::from_millis(30))),
        ("delete_repo", Some("-32001"), None),
    ] {
        let span = telemetry.request_span(RequestSpan {
            method: "tools/call",
            tool: Some(tool),
            session: Some("s"),
            agent: None,
            user: None,
            protocol_version: Some("2025-06-18"),
            request_id: Some("1"),
            transport: Transport::Tcp,
            traceparent: None,
            tracestate: None,
        });
        span.end(Outcome {
            error_type: error,
            upstream_duration: upstream,
            ..Outcome::default()
        });
    }
    telemetry.flush();
    let metrics = receiver.wait_for("metric", 3);
    let point = |name: &str, tool: &str| {
        metrics
            .iter()
            .find(|m| m["name"] == name && m["attributes"]["gen_ai.tool.name"] == tool)
            .unwrap_or_else(|| panic!("no {name} for {tool}: {metrics:?}"))
    };
    let server = point("mcp.server.operation.duration", "search");
    assert_eq!(server["unit"], "s");
    assert_eq!(server["type"], "histogram");
    assert_eq!(server["temporality"], 2, "cumulative");
    assert_eq!(server["count"], 2);
    assert_eq!(server["explicit_bounds"], serde_json::json!(BOUNDS));
    assert_eq!(server["attributes"]["mcp.method.name"], "tools/call");
    assert_eq!(
        server["attributes"]["gen_ai.operation.name"],
        "execute_tool"
    );
    assert_eq!(server["attributes"]["network.transport"], "tcp");
    assert_eq!(server["attributes"]["mcp.protocol.version"], "2025-06-18");
    assert!(
        server["attributes"].get("mcp.session.id").is_none(),
        "not a metric label"
    );

    let client = point("mcp.client.operation.duration", "search");
    assert_eq!(client["count"], 2);
    let buckets: Vec<u64> = client["bucket_counts"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b.as_u64().expect("count"))
        .collect();
    assert_eq!(buckets[1], 1, "15 ms in (0.01, 0.02]");
    assert_eq!(buckets[2], 1, "30 ms in (0.02, 0.05]");
    assert!((client["sum"].as_f64().expect("sum") - 0.045).abs() < 1e-9);

    let failed = point("mcp.server.operation.duration", "delete_repo");
    assert_eq!(failed["attributes"]["error.type"], "-32001");
    assert!(
        !metrics
            .iter()
            .any(|m| m["name"] == "mcp.client.operation.duration"
                && m["attributes"]["gen_ai.tool.name"] == "delete_repo"),
        "not forwarded, no client duration"
    );
    telemetry.shutdown();
}
