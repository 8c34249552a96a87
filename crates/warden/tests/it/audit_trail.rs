//! The audit trail through the real proxy: a client call in, the records
//! read back from the `.jsonl` files, and the trail verified with its key.
//! HTTP sessions, the stateless revision, `warden stdio`, redaction, a full
//! disk (a small tmpfs) and bad audit config.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use warden::audit::AuditConfig;
use warden_audit::record::AnswerKind;
use warden_audit::{AuditLog, ChainSummary, Kind, Phase, Record};
use warden_pipeline::ReadCalls;

use crate::support::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

// === reading the trail ===

/// Every record in `dir`'s trail files, in chain order (one chain: the
/// file names sort by first seq).
pub(crate) fn records(dir: &Path) -> Vec<Record> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("audit dir {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("trail file");
        for line in text.lines() {
            out.push(
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{}: not a record ({e}): {line}", file.display())),
            );
        }
    }
    out
}

/// The records of `kind`.
fn of_kind(records: &[Record], kind: Kind) -> Vec<&Record> {
    records.iter().filter(|r| r.kind == kind).collect()
}

/// The one record of `kind` for `tool` (panics on none or several).
fn one_for<'a>(records: &'a [Record], kind: Kind, tool: &str) -> &'a Record {
    let found: Vec<&Record> = records
        .iter()
        .filter(|r| r.kind == kind && r.tool.as_deref() == Some(tool))
        .collect();
    assert_eq!(found.len(), 1, "one {kind:?} for {tool}: {found:#?}");
    found[0]
}

/// Verify `dir` with the key Warden made there: one chain, every
/// checkpoint signed by that key.
fn verify(dir: &Path) -> ChainSummary {
    let (key, made) =
        warden_audit::chain::load_or_create_key(&dir.join("audit.key")).expect("audit key");
    assert!(!made, "Warden made the key in {}", dir.display());
    let report = warden_audit::verify_files(&[dir.to_path_buf()], Some(key.verifying_key()))
        .expect("trail readable");
    assert_eq!(report.chains.len(), 1, "{report:#?}");
    let chain = report.chains.into_iter().next().expect("chain");
    let summary = chain
        .outcome
        .unwrap_or_else(|problem| panic!("trail does not verify: {problem:?}"));
    assert!(
        matches!(summary.signatures, warden_audit::Signatures::Checked { .. }),
        "{summary}"
    );
    summary
}

fn audit_log(warden: &TestWarden) -> &AuditLog {
    warden.running.warden.audit.as_ref().expect("audit is on")
}

/// Everything queued so far, durable, read back.
pub(crate) async fn flushed(warden: &TestWarden, dir: &Path) -> Vec<Record> {
    audit_log(warden).flush().await.expect("flush");
    records(dir)
}

/// The value of the sample `name` (no labels) in the `/metrics` text.
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn metrics(warden: &TestWarden) -> String {
    warden.running.warden.metrics.encode()
}

/// Poll `check` every 20ms for up to 10s.
pub(crate) async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn result_of(reply: &Reply) -> Value {
    reply.response()["result"].clone()
}

// === HTTP, session-ful ===

const DEMO_POLICY: &str = "version: 1\ntools:\n  create_note: write\n  send_invoice: deny\n";

#[tokio::test]
async fn every_call_decision_and_session_event_is_on_a_trail_that_verifies() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let policy_file = tmp.path().join("policy.yaml");
    std::fs::write(&policy_file, DEMO_POLICY).expect("policy");
    let warden = WardenBuilder::new(&upstream)
        .policy_file(&policy_file)
        .limits(|l| {
            l.reload_interval = Duration::from_millis(50);
            l.reload_settle = Duration::from_millis(100);
        })
        .audit(AuditConfig::in_dir(&dir, "it"))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let session = agent.session.clone().expect("session");

    // A read call with everything `_meta` can say about it.
    let read = agent
        .post(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "search_customers", "arguments": {"query": "ada"},
            "_meta": {
                "warden/model": "claude-x", "warden/modelVersion": "2026-01",
                "warden/conversation": "conv-17", "warden/rationale": "the user asked for Ada",
                "traceparent": format!("00-{TRACE_ID}-00f067aa0ba902b7-01")}}}),
        )
        .await;
    assert_eq!(result_of(&read)["isError"], Value::Null, "{read:?}");
    let write = agent
        .call(
            2,
            "create_note",
            json!({"customer_id": 1, "text": "called"}),
        )
        .await;
    assert_eq!(
        result_of(&write)["content"][0]["text"],
        "Note added to Ada Lovelace."
    );
    assert_eq!(demo.notes_written(), 1);
    let denied = agent
        .call(
            3,
            "send_invoice",
            json!({"customer_id": 1, "amount_cents": 100}),
        )
        .await;
    let denied_reason = result_of(&denied)["structuredContent"]["warden"]["reason"]
        .as_str()
        .expect("a refusal reason")
        .to_owned();
    assert_refused(&denied, "send_invoice", &denied_reason);
    assert_eq!(demo.invoices_sent(), 0);

    // A changed policy file is a new policy on the record.
    std::fs::write(&policy_file, format!("{DEMO_POLICY}  echo: deny\n")).expect("policy");
    until("the reloaded policy on the record", async || {
        let found = flushed(&warden, &dir).await;
        of_kind(&found, Kind::PolicyLoaded)
            .iter()
            .any(|r| r.reason.as_deref() == Some("reload"))
            .then_some(())
    })
    .await;
    let after_reload = agent.call(4, "echo", json!({"message": "hi"})).await;
    assert_refused(&after_reload, "echo", &denied_reason);

    let delete = Request::delete(&agent.url)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", &agent.protocol_version)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let ended = agent.send(delete).await;
    assert!(ended.status.is_success(), "{ended:?}");

    let found = flushed(&warden, &dir).await;
    // Policies: the first at start, the second on reload, each by its hash.
    let loaded = of_kind(&found, Kind::PolicyLoaded);
    assert_eq!(loaded.len(), 2, "{loaded:#?}");
    assert_eq!(loaded[0].reason.as_deref(), Some("start"));
    assert_eq!(loaded[1].reason.as_deref(), Some("reload"));
    assert_eq!(loaded[0].route.as_deref(), Some("/mcp"));
    let (first_hash, second_hash) = (
        loaded[0].policy_hash.clone().expect("hash"),
        loaded[1].policy_hash.clone().expect("hash"),
    );
    assert_eq!(first_hash.len(), 64, "{first_hash}");
    assert_ne!(first_hash, second_hash);

    let started = of_kind(&found, Kind::SessionStarted);
    assert_eq!(started.len(), 1, "{started:#?}");
    assert_eq!(started[0].mcp_session.as_deref(), Some(session.as_str()));
    assert_eq!(started[0].reason.as_deref(), Some("initialize"));

    // The read call: one record, at its reply, with what the call said.
    let record = one_for(&found, Kind::ToolCall, "search_customers");
    assert_eq!(record.phase, None);
    assert_eq!(record.tier.as_deref(), Some("read"));
    assert_eq!(record.decision.as_deref(), Some("allow"));
    assert_eq!(record.route.as_deref(), Some("/mcp"));
    assert_eq!(record.upstream.as_deref(), Some(upstream.as_str()));
    assert_eq!(record.mcp_session.as_deref(), Some(session.as_str()));
    assert_eq!(record.request_id.as_deref(), Some("1"));
    assert_eq!(record.policy_hash.as_deref(), Some(&*first_hash));
    assert_eq!(
        record.principal.as_ref().map(|p| p.agent.as_str()),
        Some("anonymous")
    );
    let model = record.model.as_ref().expect("model");
    assert_eq!(
        (model.name.as_deref(), model.version.as_deref()),
        (Some("claude-x"), Some("2026-01"))
    );
    assert_eq!(record.conversation.as_deref(), Some("conv-17"));
    assert_eq!(record.rationale.as_deref(), Some("the user asked for Ada"));
    assert_eq!(record.trace_id.as_deref(), Some(TRACE_ID));
    assert_eq!(
        record.arguments.as_ref().map(|a| a.get()),
        Some(r#"{"query":"ada"}"#)
    );
    assert!(record.latency_us.is_some(), "{record:?}");
    assert_eq!(record.is_error, Some(false));
    let result = record.result.as_ref().expect("result");
    assert_eq!(result.answer, AnswerKind::Result);
    let reply_text = std::str::from_utf8(&read.body).expect("utf-8");
    assert_eq!(result.size, Some(read.body.len() as u64));
    assert_eq!(
        result.digest.as_deref(),
        Some(warden_audit::chain::line_hash(reply_text).as_str()),
        "the digest is the SHA-256 of the response the agent got"
    );
    let body: Value =
        serde_json::from_str(result.body.as_ref().expect("body").get()).expect("body json");
    assert_eq!(body, result_of(&read));

    // The write call: a durable intent, then its outcome naming it.
    let writes: Vec<&Record> = found
        .iter()
        .filter(|r| r.tool.as_deref() == Some("create_note"))
        .collect();
    assert_eq!(writes.len(), 2, "{writes:#?}");
    let (intent, outcome) = (writes[0], writes[1]);
    assert_eq!(
        (intent.kind, intent.phase),
        (Kind::ToolCall, Some(Phase::Intent))
    );
    assert_eq!(intent.tier.as_deref(), Some("write"));
    assert_eq!(intent.decision.as_deref(), Some("allow"));
    assert!(intent.result.is_none(), "{intent:?}");
    assert_eq!(
        (outcome.kind, outcome.phase),
        (Kind::ToolCall, Some(Phase::Outcome))
    );
    assert_eq!(outcome.intent, Some(intent.id));
    assert!(outcome.id > intent.id && outcome.seq > intent.seq);
    assert_eq!(outcome.is_error, Some(false));
    assert!(outcome.latency_us.is_some(), "{outcome:?}");

    // The denied call: a refusal with the policy's reason, never forwarded.
    let refusal = one_for(&found, Kind::Refusal, "send_invoice");
    assert_eq!(refusal.decision.as_deref(), Some("deny"));
    assert_eq!(refusal.reason.as_deref(), Some(denied_reason.as_str()));
    assert!(refusal.result.is_none(), "{refusal:?}");
    assert!(
        found
            .iter()
            .all(|r| !(r.kind == Kind::ToolCall && r.tool.as_deref() == Some("send_invoice"))),
        "a denied call has no tool_call record"
    );
    // Decided under the reloaded policy, and on the record with its hash.
    let after = one_for(&found, Kind::Refusal, "echo");
    assert_eq!(after.policy_hash.as_deref(), Some(&*second_hash));

    let ended = of_kind(&found, Kind::SessionEnded);
    assert_eq!(ended.len(), 1, "{ended:#?}");
    assert_eq!(ended[0].mcp_session.as_deref(), Some(session.as_str()));
    assert_eq!(ended[0].reason.as_deref(), Some("agent"));

    // Every record is this instance's, in one chain with no gap.
    assert!(
        found
            .iter()
            .all(|r| &*r.instance == "it" && &*r.chain == "it")
    );
    assert!(found.windows(2).all(|w| w[1].seq == w[0].seq + 1));

    let text = metrics(&warden);
    let written = metric(&text, "warden_audit_records_written_total")
        .or_else(|| metric(&text, "warden_audit_records_written"))
        .unwrap_or_else(|| panic!("no warden_audit_records_written in\n{text}"));
    let sealed = found.iter().filter(|r| r.kind != Kind::Checkpoint).count();
    assert_eq!(
        written, sealed as f64,
        "checkpoints are not counted\n{text}"
    );
    assert_eq!(metric(&text, "warden_audit_store_failing"), Some(0.0));

    warden.running.shutdown().await;
    let summary = verify(&dir);
    let all = records(&dir);
    let last = all.last().expect("records");
    assert_eq!(last.kind, Kind::Checkpoint, "the trail ends vouched for");
    assert_eq!(summary.last_seq, last.seq);
    assert_eq!(
        summary.records + summary.checkpoints,
        all.len() as u64,
        "{summary}"
    );
}

// === the stateless revision ===

const REVISION: &str = "2026-07-28";

/// A 2026-07-28 server with one read-only tool, `lookup`, that answers at
/// once.
async fn stateless_upstream() -> String {
    let (url, _) = upstream_fn(|_parts, body| async move {
        let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let id = &message["id"];
        let result = match message["method"].as_str().unwrap_or_default() {
            "server/discover" => json!({"resultType": "complete",
                "supportedVersions": [REVISION], "capabilities": {"tools": {}},
                "ttlMs": 1000, "cacheScope": "public"}),
            "tools/list" => json!({"resultType": "complete", "tools": [
                {"name": "lookup", "inputSchema": {"type": "object"},
                 "annotations": {"readOnlyHint": true}}]}),
            "tools/call" => json!({"resultType": "complete",
                "content": [{"type": "text", "text": "found"}]}),
            _ => {
                return json_response(&json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32601, "message": "no"}}));
            }
        };
        json_response(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
    })
    .await;
    url
}

#[tokio::test]
async fn a_stateless_call_is_recorded_under_its_agent_session_and_no_mcp_session() {
    let upstream = stateless_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let warden = WardenBuilder::new(&upstream)
        .audit(AuditConfig::in_dir(&dir, "it"))
        .start()
        .await;
    let agent = Agent::new(&warden.url);
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "lookup", "arguments": {"q": 1},
        "_meta": {"io.modelcontextprotocol/protocolVersion": REVISION,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "warden-it", "version": "1"},
            "warden/model": "stateless-model"}}});
    let request = Request::post(&agent.url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("mcp-protocol-version", REVISION)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "lookup")
        .header("warden-agent-session", "run-42")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let reply = agent.send(request).await;
    assert_eq!(result_of(&reply)["content"][0]["text"], "found");
    assert!(reply.session().is_none());

    warden.running.shutdown().await;
    verify(&dir);
    let found = records(&dir);
    let record = one_for(&found, Kind::ToolCall, "lookup");
    assert_eq!(record.mcp_session, None, "{record:?}");
    assert_eq!(record.agent_session.as_deref(), Some("run-42"));
    assert_eq!(record.decision.as_deref(), Some("allow"));
    assert_eq!(record.request_id.as_deref(), Some("9"));
    assert_eq!(
        record.model.as_ref().and_then(|m| m.name.as_deref()),
        Some("stateless-model")
    );
    assert_eq!(
        record.result.as_ref().map(|r| r.answer),
        Some(AnswerKind::Result)
    );
    assert!(
        of_kind(&found, Kind::SessionStarted).is_empty(),
        "no session was opened: {found:#?}"
    );
}

// === warden stdio ===

// `warden stdio` closes its trail at exit: every record and the closing
// checkpoint are on it (before that was fixed the writer raced the exit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_stdio_is_on_the_trail_after_warden_stdio_exits() {
    let (upstream, _demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("p.yaml"), "version: 1\n").expect("policy");
    let config = tmp.path().join("w.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      url: {upstream}\n    policy: p.yaml\naudit:\n  dir: trail\n  instance: stdio-it\n"
        ),
    )
    .expect("config");
    let run = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["stdio", "--config"])
            .arg(&config)
            .env("WARDEN_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("warden stdio starts");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut exchange = |line: &str, answered: bool| {
            stdin.write_all(line.as_bytes()).expect("write");
            stdin.write_all(b"\n").expect("write");
            stdin.flush().expect("flush");
            answered.then(|| {
                let mut reply = String::new();
                stdout.read_line(&mut reply).expect("a reply line");
                serde_json::from_str::<Value>(&reply)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {reply:?}"))
            })
        };
        exchange(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"desktop","version":"1"}}}"#,
            true,
        );
        exchange(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            false,
        );
        let reply = exchange(
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":2}}}"#,
            true,
        );
        drop(stdin);
        let output = child.wait_with_output().expect("warden exits");
        (reply, output)
    });
    let (reply, output) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("in time")
        .expect("task");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    let reply = reply.expect("answered");
    assert_eq!(
        reply["result"]["structuredContent"]["name"], "Grace Hopper",
        "{reply}"
    );

    let dir = tmp.path().join("trail");
    let found = records(&dir);
    let record = one_for(&found, Kind::ToolCall, "get_customer");
    assert_eq!(&*record.instance, "stdio-it");
    assert_eq!(record.tier.as_deref(), Some("read"));
    assert_eq!(
        record.arguments.as_ref().map(|a| a.get()),
        Some(r#"{"id":2}"#)
    );
    assert_eq!(
        record.result.as_ref().map(|r| r.answer),
        Some(AnswerKind::Result)
    );
    let started = of_kind(&found, Kind::SessionStarted);
    assert_eq!(started.len(), 1, "{found:#?}");
    assert_eq!(record.mcp_session, started[0].mcp_session);
    assert_eq!(
        of_kind(&found, Kind::SessionEnded)
            .iter()
            .map(|r| r.reason.as_deref())
            .collect::<Vec<_>>(),
        [Some("agent")],
        "stdin closed ends the session"
    );
    assert_eq!(
        found.last().map(|r| r.kind),
        Some(Kind::Checkpoint),
        "a clean exit closes the trail with a checkpoint: {stderr}"
    );
    verify(&dir);
}

// === redaction ===

#[tokio::test]
async fn redaction_changes_the_record_and_never_the_bytes_forwarded_or_returned() {
    const ARGUMENTS: &str = r#"{"query":  "ada@example.com", "limit": 2}"#;
    const RESULT: &str = r#"{"content":[{"type":"text","text":"Ada <ada@example.com>, boss grace@example.com"}],"structuredContent":{"email":"ada@example.com", "id": 1}}"#;
    let requests: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let seen = requests.clone();
    let (upstream, _) = upstream_fn(move |_parts, body: Bytes| {
        let seen = seen.clone();
        async move {
            if let Some(response) = handshake(&body) {
                return response;
            }
            seen.lock().expect("lock").push(body.clone());
            let id = id_of(&body);
            let result = match method_of(&body).as_str() {
                "tools/list" => json!({"tools": [{"name": "search_customers",
                    "inputSchema": {"type": "object"},
                    "annotations": {"readOnlyHint": true}}]})
                .to_string(),
                _ => RESULT.to_owned(),
            };
            let mut response = http::Response::new(full_body(format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#
            )));
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().expect("header"));
            response
        }
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let warden = WardenBuilder::new(&upstream)
        .policy(
            "version: 1\nredact:\n  detectors: [email]\n  tools:\n    search_customers:\n      arguments:\n        /query: mask\n",
        )
        .audit(AuditConfig::in_dir(&dir, "it"))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let sent = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"search_customers","arguments":{ARGUMENTS}}}}}"#
    );
    let reply = agent.post_raw(sent.clone()).await;
    assert_eq!(reply.status, StatusCode::OK);

    let forwarded: Vec<Bytes> = requests
        .lock()
        .expect("lock")
        .iter()
        .filter(|b| method_of(b) == "tools/call")
        .cloned()
        .collect();
    assert_eq!(
        forwarded,
        [Bytes::from(sent)],
        "the upstream got the agent's bytes"
    );
    assert_eq!(
        std::str::from_utf8(&reply.body).expect("utf-8"),
        format!(r#"{{"jsonrpc":"2.0","id":5,"result":{RESULT}}}"#),
        "the agent got the upstream's bytes"
    );

    warden.running.shutdown().await;
    verify(&dir);
    let found = records(&dir);
    let record = one_for(&found, Kind::ToolCall, "search_customers");
    let arguments: Value =
        serde_json::from_str(record.arguments.as_ref().expect("arguments").get()).expect("json");
    assert_eq!(arguments, json!({"query": "***", "limit": 2}));
    let body = record
        .result
        .as_ref()
        .and_then(|r| r.body.as_ref())
        .expect("result body")
        .get()
        .to_owned();
    assert!(!body.contains("@example.com"), "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        body["content"][0]["text"],
        "Ada <[redacted:email]>, boss [redacted:email]"
    );
    assert_eq!(body["structuredContent"]["email"], "[redacted:email]");
    assert_eq!(body["structuredContent"]["id"], 1);
    let rules: Vec<(&str, &str)> = record
        .redacted
        .iter()
        .map(|r| (r.path.as_str(), r.rule.as_str()))
        .collect();
    assert!(rules.contains(&("/arguments/query", "mask")), "{rules:?}");
    assert!(
        rules.contains(&("/result/content/0/text", "detector:email")),
        "{rules:?}"
    );
    assert!(
        rules.contains(&("/result/structuredContent/email", "detector:email")),
        "{rules:?}"
    );
    // The digest is of the response as sent, not of the redacted copy.
    assert_eq!(
        record.result.as_ref().and_then(|r| r.digest.clone()),
        Some(warden_audit::chain::line_hash(
            std::str::from_utf8(&reply.body).expect("utf-8")
        ))
    );
}

// === a full disk ===

/// A tmpfs mounted for one test, unmounted (lazily) when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status();
        match status {
            Ok(status) if status.success() => Tmpfs {
                path: path.to_path_buf(),
            },
            other => panic!(
                "this test needs root: it mounts a {size} tmpfs at {} to fill it (mount: {other:?})",
                path.display()
            ),
        }
    }

    /// Fill the tmpfs with a file until it is full.
    fn fill(&self) -> PathBuf {
        let ballast = self.path.join("ballast");
        let mut file = std::fs::File::create(&ballast).expect("ballast");
        let chunk = [0u8; 4096];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::StorageFull => return ballast,
                Err(err) => panic!("filling {}: {err}", ballast.display()),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A Warden auditing to a 128k tmpfs, in front of the demo, with
/// `create_note` at write.
async fn on_a_small_disk(
    read_calls: ReadCalls,
) -> (
    tempfile::TempDir,
    Tmpfs,
    TestWarden,
    Agent,
    Arc<warden_demo::Demo>,
) {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let disk = Tmpfs::mount(&tmp.path().join("audit"), "128k");
    let mut config = AuditConfig::in_dir(&disk.path, "it");
    config.read_calls = read_calls;
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  create_note: write\n")
        .audit(config)
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    (tmp, disk, warden, agent, demo)
}

fn failing(warden: &TestWarden) -> bool {
    audit_log(warden).stats().failing.load(Ordering::Relaxed)
}

/// After the disk is filled: read calls (whose records take what room the
/// trail's last page had left) until the store reports it is failing.
/// Every read until then is answered, forwarded or (fail-closed, racing
/// the store's failure) refused as audit-unavailable.
async fn read_until_the_store_fails(warden: &TestWarden, agent: &Agent) {
    for id in 100..164 {
        if failing(warden) {
            return;
        }
        let reply = agent
            .call(id, "search_customers", json!({"query": "ada"}))
            .await;
        let result = result_of(&reply);
        if result["isError"] == true {
            assert_refused(&reply, "search_customers", "audit-unavailable");
        }
        audit_log(warden).flush().await.expect("flush");
    }
    assert!(failing(warden), "the store never failed on a full disk");
}

#[tokio::test]
async fn a_write_call_is_refused_unrun_while_the_store_is_full_and_runs_again_once_it_recovers() {
    let (_tmp, disk, warden, agent, demo) = on_a_small_disk(ReadCalls::FailOpen).await;
    audit_log(&warden).flush().await.expect("flush");
    let ballast = disk.fill();
    read_until_the_store_fails(&warden, &agent).await;

    let refused = agent
        .call(1, "create_note", json!({"customer_id": 1, "text": "lost?"}))
        .await;
    assert_refused(&refused, "create_note", "audit-unavailable");
    assert_eq!(demo.notes_written(), 0, "an unrecorded write never runs");
    // fail-open: reads go on.
    let read = agent
        .call(2, "search_customers", json!({"query": "grace"}))
        .await;
    assert_eq!(result_of(&read)["isError"], Value::Null, "{read:?}");
    let text = metrics(&warden);
    assert_eq!(
        metric(&text, "warden_audit_store_failing"),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(&text, "warden_audit_refused_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );

    std::fs::remove_file(&ballast).expect("remove ballast");
    until("the store to recover", async || {
        (!failing(&warden)).then_some(())
    })
    .await;
    let passed = agent
        .call(
            3,
            "create_note",
            json!({"customer_id": 1, "text": "recorded"}),
        )
        .await;
    assert_eq!(
        result_of(&passed)["content"][0]["text"],
        "Note added to Ada Lovelace."
    );
    assert_eq!(demo.notes_written(), 1);
    let text = metrics(&warden);
    assert_eq!(
        metric(&text, "warden_audit_store_failing"),
        Some(0.0),
        "{text}"
    );

    warden.running.shutdown().await;
    verify(&disk.path);
    let found = records(&disk.path);
    let failed = of_kind(&found, Kind::SinkFailed);
    let recovered = of_kind(&found, Kind::SinkRecovered);
    assert_eq!((failed.len(), recovered.len()), (1, 1), "{found:#?}");
    assert_eq!(
        failed[0].detail.as_ref().map(|d| d["store"].clone()),
        Some(json!("file"))
    );
    assert!(failed[0].seq < recovered[0].seq);
    let refusal = one_for(&found, Kind::Refusal, "create_note");
    assert_eq!(refusal.reason.as_deref(), Some("audit-unavailable"));
    // Only the write that ran has an intent, and its outcome names it.
    let intents: Vec<&Record> = found
        .iter()
        .filter(|r| r.phase == Some(Phase::Intent))
        .collect();
    assert_eq!(intents.len(), 1, "{intents:#?}");
    let outcome = found
        .iter()
        .find(|r| r.phase == Some(Phase::Outcome))
        .expect("outcome");
    assert_eq!(outcome.intent, Some(intents[0].id));
    assert!(intents[0].seq > recovered[0].seq);
}

#[tokio::test]
async fn fail_closed_read_calls_are_refused_while_the_store_is_full() {
    let (_tmp, disk, warden, agent, demo) = on_a_small_disk(ReadCalls::FailClosed).await;
    audit_log(&warden).flush().await.expect("flush");
    let ballast = disk.fill();
    read_until_the_store_fails(&warden, &agent).await;

    let refused = agent
        .call(1, "search_customers", json!({"query": "ada"}))
        .await;
    assert_refused(&refused, "search_customers", "audit-unavailable");
    assert_eq!(demo.notes_written(), 0);

    std::fs::remove_file(&ballast).expect("remove ballast");
    until("the store to recover", async || {
        (!failing(&warden)).then_some(())
    })
    .await;
    let read = agent
        .call(2, "search_customers", json!({"query": "ada"}))
        .await;
    assert_eq!(result_of(&read)["isError"], Value::Null, "{read:?}");
    warden.running.shutdown().await;
    verify(&disk.path);
    let found = records(&disk.path);
    assert!(
        found.iter().any(|r| r.kind == Kind::Refusal
            && r.tool.as_deref() == Some("search_customers")
            && r.reason.as_deref() == Some("audit-unavailable")),
        "{found:#?}"
    );
}

// === bad input at start ===

#[tokio::test]
async fn an_audit_dir_that_cannot_be_created_fails_start_naming_the_path() {
    let (upstream, _demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, "not a directory").expect("file");
    std::fs::write(tmp.path().join("p.yaml"), "version: 1\n").expect("policy");
    let config = warden::config::Config::from_yaml_str(
        &format!(
            "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      url: {upstream}\n    policy: p.yaml\naudit:\n  dir: a-file/audit\n"
        ),
        "w.yaml",
        tmp.path(),
    )
    .expect("config is valid");
    let err = match warden::start(&config).await {
        Ok(_) => panic!("Warden started with an audit dir under a regular file"),
        Err(err) => anyhow::Error::from(err),
    };
    let text = format!("{err:#}");
    let dir = blocker.join("audit");
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(text.contains("Not a directory"), "{text}");
}

#[test]
fn an_unknown_read_calls_mode_is_reported_at_its_line_and_column() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("p.yaml"), "version: 1\n").expect("policy");
    let err = warden::config::Config::from_yaml_str(
        "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\naudit:\n  read_calls: sometimes\n",
        "w.yaml",
        tmp.path(),
    )
    .expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("w.yaml:9:15"), "{text}");
    assert!(text.contains("sometimes"), "{text}");
    assert!(text.contains("fail-open or fail-closed"), "{text}");
}

#[test]
fn a_hash_redaction_rule_without_a_redaction_key_is_a_config_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join("p.yaml"),
        "version: 1\nredact:\n  tools:\n    search_customers:\n      arguments:\n        /query: hash\n",
    )
    .expect("policy");
    let config = |audit: &str| {
        warden::config::Config::from_yaml_str(
            &format!(
                "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\naudit:\n  dir: trail\n{audit}"
            ),
            "w.yaml",
            tmp.path(),
        )
    };
    let err = config("").expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("redaction_key_file"), "{text}");
    assert!(text.contains("w.yaml:7:13"), "{text}");
    // With the key configured, the same policy loads.
    config("  redaction_key_file: redaction.key\n").expect("loads with a key");
}
