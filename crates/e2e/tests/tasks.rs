//! A task-aware client, the official Python SDK's (`mcp` 1.30.0,
//! `session.experimental.call_tool_as_task` and friends, MCP 2025-11-25:
//! `peers/tasks/task_client.py`), through Warden to the demo server: a held
//! `send_invoice` called as a task is a `working` task naming its approver;
//! approved through the admin API, it completes with the upstream's result;
//! rejected, it fails with the approver's reason; cancelled, it is withdrawn
//! from the queue (whenever the cancel comes); a refused call and a dry run
//! called as tasks are tasks that have already ended with Warden's answer.
//! Each test asserts the exact result the agent sees, the queue after, and
//! how many invoices the upstream sent. Against server-everything, whose
//! `simulate-research-query` runs as a task of its own: the upstream's
//! task passes through untouched, and a held call to it is Warden's task
//! that, once approved, follows the upstream's task to its result.
//!
//! Each test has its own demo upstream (in process), Warden (in process,
//! ephemeral ports) and temp directory, so they run in parallel.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const POLICY: &str = "version: 1\ntools:\n  send_invoice:\n    tier: approve\n    approvers: [grace]\n  create_note: deny\n";

/// What the task of a held `send_invoice` says while it waits.
const HELD: &str = "The call to 'send_invoice' is held for a human's approval (1 needed, from grace); it has not run. Poll tasks/get, or wait on tasks/result for the outcome.";

/// The `_meta` key naming the task a result belongs to.
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// How long one step of a scenario may take on a busy machine.
const STEP: Duration = Duration::from_secs(30);

/// The invoice every test asks for, and what the demo answers once sent.
fn invoice() -> Value {
    json!({"customer_id": 2, "amount_cents": 4200})
}
const SENT: &str = "Invoice for $42.00 sent to grace@example.com.";

/// A Warden with an approval queue in front of a demo upstream.
struct Setup {
    _dir: TempDir,
    upstream: String,
    demo: Arc<warden_demo::Demo>,
    warden: warden::Running,
    admin: Admin,
}

async fn setup() -> Setup {
    require_installed(
        &e2e_dir().join("peers/tasks/.venv"),
        "the task client's Python packages",
    );
    let dir = TempDir::new("warden-e2e-tasks");
    let (upstream, demo) = demo_upstream().await;
    let config = write_approvals_config(&dir.0, &upstream, POLICY, "1s", "1s");
    let warden = warden_from_file(&config).await;
    let admin = Admin::of(&warden);
    Setup {
        _dir: dir,
        upstream,
        demo,
        warden,
        admin,
    }
}

/// `task_client.py` calling `tool` with `arguments` as a task, then `then`.
fn task_client(setup: &Setup, tool: &str, arguments: &Value, then: &str) -> LineChild {
    let peers = e2e_dir().join("peers/tasks");
    let mut command = Command::new(peers.join(".venv/bin/python"));
    command
        .current_dir(&peers)
        .arg("task_client.py")
        .arg(format!("http://{}/mcp", setup.warden.mcp_addr))
        .arg(tool)
        .arg(arguments.to_string())
        .args(["--then", then, "--ttl", "600000", "--timeout", "90"]);
    LineChild::spawn(command)
}

/// The client connected, saw Warden's task capability, and called: the
/// task it was answered with.
fn created(client: &mut LineChild) -> Value {
    let hello = next_seen(client, "initialized", STEP);
    assert_eq!(hello["protocolVersion"], "2025-11-25", "{hello}");
    assert_eq!(
        hello["tasks"],
        json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}),
        "{hello}"
    );
    let created = next_seen(client, "created", STEP);
    let task = created["task"].clone();
    let id = task["taskId"].as_str().expect("a task id");
    assert!(id.starts_with("warden-task-"), "{task}");
    assert_eq!(task["ttl"], 600_000, "{task}");
    assert_eq!(task["pollInterval"], 2000, "{task}");
    assert_eq!(
        created["meta"],
        json!({"io.modelcontextprotocol/model-immediate-response": task["statusMessage"]}),
        "{created}"
    );
    task
}

/// The client's last lines: its task list (just `task`, as it ended) and
/// a clean exit.
fn listed_and_done(client: &mut LineChild, task: &Value) {
    let listed = next_seen(client, "listed", STEP);
    assert_eq!(listed["tasks"], json!([task]), "{listed}");
    next_seen(client, "done", STEP);
    let status = client.finish(STEP).expect("the client exits");
    assert!(status.success(), "{status}\n{}", client.log());
}

/// `result` with the `_meta` naming `task_id`, as a task result carries.
/// `result` as a task's result: its `_meta` names the task and, for a
/// call that ran on an approval, the approval.
fn of_task(mut result: Value, task_id: &Value, approval: Option<Value>) -> Value {
    result["_meta"] = json!({ RELATED_TASK: {"taskId": task_id} });
    if let Some(approval) = approval {
        result["_meta"]["warden/approval"] = approval;
    }
    result
}

/// (a) Held, polled while `working`, approved through the admin API: the
/// task completes with the upstream's result; the invoice went out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_task_client_polls_a_held_call_to_its_approved_result() {
    let setup = setup().await;
    let mut client = task_client(&setup, "send_invoice", &invoice(), "poll");
    let task = created(&mut client);
    assert_eq!(task["status"], "working", "{task}");
    assert_eq!(task["statusMessage"], HELD);
    let approval = setup.admin.pending(STEP).await;
    assert_eq!(approval["tool"], "send_invoice");
    assert_eq!(approval["arguments"], invoice());
    // The client has seen its task working; nothing has run.
    let polled = next_seen(&mut client, "status", STEP);
    assert_eq!(polled["task"]["status"], "working", "{polled}");
    assert_eq!(setup.demo.invoices_sent(), 0);
    let id = approval["id"].as_str().expect("id");
    let decided = setup.admin.decide(id, "approve", None).await;
    assert_eq!(decided["status"], "approved", "{decided}");

    let ended = polled_to_the_end(&mut client, &polled["task"], true);
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(ended["statusMessage"], "'send_invoice' ran.");
    assert_eq!(ended["taskId"], task["taskId"]);
    let result = next_seen(&mut client, "result", STEP);
    assert_eq!(
        result["result"],
        of_task(
            json!({"content": [{"type": "text", "text": SENT}], "isError": false}),
            &task["taskId"],
            Some(json!({"id": id, "approvers": ["grace"]})),
        )
    );
    listed_and_done(&mut client, &ended);

    let after = setup.admin.get(id).await;
    assert_eq!(after["status"], "approved", "{after}");
    assert!(after["executed_ms"].is_i64(), "run once: {after}");
    assert_eq!(after["votes"][0]["approver"], "grace", "{after}");
    assert!(setup.admin.list(Some("pending")).await.is_empty());
    assert_eq!(setup.demo.invoices_sent(), 1);
}

/// The statuses the client polls after `first` (the `working` one it saw
/// before the decision), up to the last: each one before it is still
/// `working`, and says the call runs (once `approved`: the only change
/// of a working task's message).
fn polled_to_the_end(client: &mut LineChild, first: &Value, approved: bool) -> Value {
    assert_eq!(first["statusMessage"], HELD, "{first}");
    loop {
        let status = next_seen(client, "status", STEP);
        let task = status["task"].clone();
        if task["status"] != "working" {
            return task;
        }
        assert!(approved, "a working task changed: {task}");
        assert_eq!(
            task["statusMessage"], "'send_invoice' was approved and is running.",
            "{task}"
        );
    }
}

/// (b) Held and rejected: the task fails, its result names the approver
/// and the reason; nothing ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_task_client_sees_a_rejected_call_fail_with_the_reason() {
    let setup = setup().await;
    let mut client = task_client(&setup, "send_invoice", &invoice(), "poll");
    let task = created(&mut client);
    assert_eq!(task["status"], "working", "{task}");
    let approval = setup.admin.pending(STEP).await;
    let polled = next_seen(&mut client, "status", STEP);
    assert_eq!(polled["task"]["status"], "working", "{polled}");
    let id = approval["id"].as_str().expect("id");
    let decided = setup
        .admin
        .decide(id, "reject", Some("wrong customer"))
        .await;
    assert_eq!(decided["status"], "rejected", "{decided}");

    let ended = polled_to_the_end(&mut client, &polled["task"], false);
    let text = "The call to 'send_invoice' was rejected by grace: wrong customer. Do not retry it as it is; change what was asked for, or ask the user.";
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["statusMessage"], text);
    let result = next_seen(&mut client, "result", STEP);
    assert_eq!(
        result["result"],
        of_task(
            json!({
                "content": [{"type": "text", "text": text}],
                "isError": true,
                "structuredContent": {
                    "warden": {"decision": "rejected", "reason": "rejected-by-approver", "tool": "send_invoice"},
                    "approval": {"id": id, "status": "rejected", "expires_ms": approval["expires_ms"], "approvers": ["grace"]},
                },
            }),
            &task["taskId"],
            None
        )
    );
    listed_and_done(&mut client, &ended);

    let after = setup.admin.get(id).await;
    assert_eq!(after["status"], "rejected", "{after}");
    assert_eq!(after["reason"], "wrong customer", "{after}");
    assert_eq!(after["executed_ms"], Value::Null, "{after}");
    assert_eq!(setup.demo.invoices_sent(), 0);
}

/// (c) A tool the policy denies, called as a task: a task that has already
/// failed, whose result is Warden's refusal (the SDK parses it: no
/// validation error); nothing is queued and nothing ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_task_client_sees_a_refusal_as_a_failed_task() {
    let setup = setup().await;
    let note = json!({"customer_id": 1, "text": "call back"});
    let mut client = task_client(&setup, "create_note", &note, "poll");
    let task = created(&mut client);
    let text = "Warden refused the call to 'create_note': the policy denies this tool. Retrying will not help; ask a human operator if this action is needed.";
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["statusMessage"], text);
    let polled = next_seen(&mut client, "status", STEP);
    assert_eq!(polled["task"], task);
    let result = next_seen(&mut client, "result", STEP);
    assert_eq!(
        result["result"],
        of_task(
            json!({
                "content": [{"type": "text", "text": text}],
                "isError": true,
                "structuredContent": {"warden": {"decision": "deny", "reason": "denied-by-policy", "tool": "create_note"}},
            }),
            &task["taskId"],
            None
        )
    );
    listed_and_done(&mut client, &task);
    assert!(setup.admin.list(None).await.is_empty());
    assert_eq!(setup.demo.notes_written(), 0);
}

/// What a cancelled task's result is.
fn cancelled_result(task_id: &Value) -> Value {
    of_task(
        json!({
            "content": [{"type": "text", "text": "The task was cancelled by request; the call was not run."}],
            "isError": true,
            "structuredContent": {"warden": {"decision": "cancelled", "reason": "task-cancelled", "tool": "send_invoice"}},
        }),
        task_id,
        None,
    )
}

/// The client's cancel and what it saw after: the task cancelled, its
/// result saying so.
fn cancelled(client: &mut LineChild, task: &Value) -> Value {
    let cancelled = next_seen(client, "cancelled", STEP);
    let ended = cancelled["task"].clone();
    assert_eq!(ended["taskId"], task["taskId"]);
    assert_eq!(ended["status"], "cancelled", "{ended}");
    assert_eq!(
        ended["statusMessage"],
        "The task was cancelled by request; the call was not run."
    );
    let got = next_seen(client, "status", STEP);
    assert_eq!(got["task"], ended);
    let result = next_seen(client, "result", STEP);
    assert_eq!(result["result"], cancelled_result(&task["taskId"]));
    listed_and_done(client, &ended);
    ended
}

/// (d) A held task cancelled while its approval is pending: the approval
/// is `cancelled` in the queue, can no longer be approved, and never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_task_client_cancels_a_held_call_out_of_the_queue() {
    let setup = setup().await;
    let mut client = task_client(&setup, "send_invoice", &invoice(), "cancel-when-told");
    let task = created(&mut client);
    assert_eq!(task["status"], "working", "{task}");
    let approval = setup.admin.pending(STEP).await;
    let id = approval["id"].as_str().expect("id");
    client.write("cancel\n");
    cancelled(&mut client, &task);

    let after = setup.admin.get(id).await;
    assert_eq!(after["status"], "cancelled", "{after}");
    assert_eq!(after["executed_ms"], Value::Null, "{after}");
    let (code, late) = setup
        .admin
        .request("POST", &format!("/approvals/{id}/approve"), None)
        .await;
    assert_eq!(code, 409, "{late}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(setup.demo.invoices_sent(), 0);
}

/// (d) The same, cancelled as soon as the task was created (before Warden
/// had staged its approval): nothing is left pending or can be approved,
/// and nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_task_client_cancels_a_held_call_at_once() {
    let setup = setup().await;
    let mut client = task_client(&setup, "send_invoice", &invoice(), "cancel");
    let task = created(&mut client);
    assert_eq!(task["status"], "working", "{task}");
    cancelled(&mut client, &task);

    // Whatever the hold had done by then, it ends withdrawn: staged and
    // cancelled at once, or never staged.
    let deadline = std::time::Instant::now() + STEP;
    let queue = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let queue = setup.admin.list(None).await;
        if queue.iter().all(|a| a["status"] != "pending") {
            break queue;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still pending: {queue:?}"
        );
    };
    for approval in queue {
        assert_eq!(approval["status"], "cancelled", "{approval}");
        assert_eq!(approval["executed_ms"], Value::Null, "{approval}");
        let (code, late) = setup
            .admin
            .request(
                "POST",
                &format!(
                    "/approvals/{}/approve",
                    approval["id"].as_str().expect("id")
                ),
                None,
            )
            .await;
        assert_eq!(code, 409, "{late}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(setup.demo.invoices_sent(), 0);
}

/// (e) A dry run called as a task: a completed task whose result is the
/// DRY RUN preview (the call as an approval would run it, without
/// `params.task`); nothing is queued and nothing ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_task_client_gets_a_dry_run_as_a_completed_task() {
    let setup = setup().await;
    let mut asked = invoice();
    asked["dryRun"] = json!(true);
    let mut client = task_client(&setup, "send_invoice", &asked, "poll");
    let task = created(&mut client);
    let text = format!(
        "DRY RUN — would call 'send_invoice' on {} with {{\"amount_cents\":4200,\"customer_id\":2}}. Nothing was sent; call again without dryRun to run it.",
        setup.upstream
    );
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["statusMessage"], text);
    let polled = next_seen(&mut client, "status", STEP);
    assert_eq!(polled["task"], task);
    let result = next_seen(&mut client, "result", STEP);
    let payload = &result["result"]["structuredContent"]["payload"];
    assert!(payload["id"].is_i64(), "the SDK's request id: {payload}");
    assert_eq!(
        result["result"],
        of_task(
            json!({
                "content": [{"type": "text", "text": text}],
                "isError": false,
                "structuredContent": {
                    "payload": {"jsonrpc": "2.0", "id": payload["id"], "method": "tools/call",
                        "params": {"name": "send_invoice", "arguments": invoice()}},
                    "upstream": setup.upstream,
                    "warden": {"decision": "dry-run", "reason": "dry-run", "tool": "send_invoice"},
                },
            }),
            &task["taskId"],
            None
        )
    );
    listed_and_done(&mut client, &task);
    assert!(setup.admin.list(None).await.is_empty());
    assert_eq!(setup.demo.invoices_sent(), 0);
}

/// A Warden with an approval queue in front of server-everything, whose
/// `simulate-research-query` runs as a task of its own (`taskSupport:
/// required`), at `tier`.
async fn research_setup(tier: &str) -> (TempDir, support::Peer, warden::Running, Admin) {
    research_setup_timing_out(tier, None).await
}

/// As [`research_setup`], with the upstream's `timeout` set when given.
async fn research_setup_timing_out(
    tier: &str,
    upstream_timeout: Option<&str>,
) -> (TempDir, support::Peer, warden::Running, Admin) {
    require_installed(
        &e2e_dir().join("peers/tasks/.venv"),
        "the task client's Python packages",
    );
    let dir = TempDir::new("warden-e2e-upstream-tasks");
    let everything = server_everything("peers");
    let policy = format!("version: 1\ntools:\n  simulate-research-query: {tier}\n");
    let config = write_approvals_config(&dir.0, &everything.url, &policy, "1s", "1s");
    if let Some(timeout) = upstream_timeout {
        let text = std::fs::read_to_string(&config).expect("config");
        let timed = text.replace(
            "    policy: policy.yaml\n",
            &format!("      timeout: {timeout}\n    policy: policy.yaml\n"),
        );
        assert_ne!(text, timed, "the upstream section is where it was");
        std::fs::write(&config, timed).expect("config");
    }
    let warden = warden_from_file(&config).await;
    let admin = Admin::of(&warden);
    (dir, everything, warden, admin)
}

fn research_client(warden: &warden::Running) -> LineChild {
    let peers = e2e_dir().join("peers/tasks");
    let mut command = Command::new(peers.join(".venv/bin/python"));
    command
        .current_dir(&peers)
        .arg("task_client.py")
        .arg(format!("http://{}/mcp", warden.mcp_addr))
        .arg("simulate-research-query")
        .arg(json!({"topic": "tides"}).to_string())
        .args(["--then", "poll", "--ttl", "600000", "--timeout", "90"]);
    LineChild::spawn(command)
}

/// The research report a finished task holds, as the client saw it.
fn research_report(result: &Value) -> &str {
    let text = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("Research Report: tides"), "{result}");
    assert_eq!(result["result"]["isError"], false, "{result}");
    text
}

/// (f) The upstream's own tasks pass through Warden untouched: a tool the
/// policy lets through, which server-everything runs as a task, is the
/// upstream's task (not Warden's), polled through Warden to its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstreams_own_task_passes_through_warden_untouched() {
    let (_dir, _everything, warden, admin) = research_setup("write").await;
    let mut client = research_client(&warden);
    let created = next_seen(&mut client, "created", STEP);
    let task_id = created["task"]["taskId"].as_str().expect("a task id");
    assert!(
        !task_id.starts_with("warden-task-"),
        "the upstream's own task: {created}"
    );
    let result = next_seen(&mut client, "result", Duration::from_secs(60));
    research_report(&result);
    let listed = next_seen(&mut client, "listed", STEP);
    assert!(
        listed["tasks"].as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["taskId"] == task_id && t["status"] == "completed")),
        "{listed}"
    );
    next_seen(&mut client, "done", STEP);
    assert!(admin.list(None).await.is_empty(), "nothing was held");
}

/// (g) A held call to a tool the upstream runs as a task: Warden's task
/// while it waits; once approved, Warden forwards it as a task and follows
/// the upstream's task to its end; the client gets the report, with the
/// approval noted, and both tasks are listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_to_an_upstream_task_tool_follows_the_upstreams_task_once_approved() {
    let (_dir, _everything, warden, admin) = research_setup("approve").await;
    let mut client = research_client(&warden);
    let created = next_seen(&mut client, "created", STEP);
    let task_id = created["task"]["taskId"]
        .as_str()
        .expect("a task id")
        .to_owned();
    assert!(task_id.starts_with("warden-task-"), "{created}");
    let approval = admin.pending(STEP).await;
    assert_eq!(approval["tool"], "simulate-research-query");
    let id = approval["id"].as_str().expect("id");
    let decided = admin.decide(id, "approve", None).await;
    assert_eq!(decided["status"], "approved", "{decided}");
    let result = next_seen(&mut client, "result", Duration::from_secs(60));
    research_report(&result);
    assert_eq!(
        result["result"]["_meta"]["warden/approval"],
        json!({"id": id, "approvers": ["grace"]}),
        "{result}"
    );
    assert_eq!(
        result["result"]["_meta"][RELATED_TASK]["taskId"],
        task_id.as_str()
    );
    let listed = next_seen(&mut client, "listed", STEP);
    let tasks = listed["tasks"].as_array().cloned().unwrap_or_default();
    assert!(
        tasks
            .iter()
            .any(|t| t["taskId"] == task_id.as_str() && t["status"] == "completed"),
        "Warden's task: {listed}"
    );
    assert!(
        tasks.iter().any(|t| t["taskId"]
            .as_str()
            .is_some_and(|t| !t.starts_with("warden-task-"))),
        "and the upstream's own, after it: {listed}"
    );
    next_seen(&mut client, "done", STEP);
    let after = admin.get(id).await;
    assert!(after["executed_ms"].is_i64(), "run once: {after}");
}

/// (h) An upstream task that outlasts the upstream's `timeout`: Warden asks
/// for its result again until the task's own ttl, rather than failing a
/// task that is still running. server-everything's research query takes
/// about 4 s; the upstream timeout here is 1.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_follows_an_upstream_task_longer_than_the_upstream_timeout() {
    let (_dir, _everything, warden, admin) =
        research_setup_timing_out("approve", Some("1500ms")).await;
    let mut client = research_client(&warden);
    let created = next_seen(&mut client, "created", STEP);
    assert!(
        created["task"]["taskId"]
            .as_str()
            .is_some_and(|t| t.starts_with("warden-task-")),
        "{created}"
    );
    let approval = admin.pending(STEP).await;
    let id = approval["id"].as_str().expect("id");
    let decided = admin.decide(id, "approve", None).await;
    assert_eq!(decided["status"], "approved", "{decided}");
    let result = next_seen(&mut client, "result", Duration::from_secs(60));
    research_report(&result);
    next_seen(&mut client, "listed", STEP);
    next_seen(&mut client, "done", STEP);
}
