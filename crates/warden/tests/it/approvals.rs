//! Approval holds through Warden: a held call answers "pending" after the
//! hold budget, an approver decides through the admin API, the same call
//! again gets the outcome (run once), a rejection names the approver and
//! the reason, an undecided call expires, and bad tokens are refused.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use warden::approvals::ApprovalsConfig;

use crate::support::*;

pub(crate) const GRACE: &str = "wdn_approver-grace-token-0123456789abcdefghijkl";
pub(crate) const LINUS: &str = "wdn_approver-linus-token-0123456789abcdefghijkl";

pub(crate) fn approvals(dir: &std::path::Path, budget: Duration) -> ApprovalsConfig {
    let digest = |token: &str| {
        warden_identity::api_key::parse_digest(&warden_identity::api_key::digest_hex(token))
            .expect("hex")
    };
    ApprovalsConfig {
        store: warden_approvals::StoreLocation::Sqlite(dir.join("approvals.db")),
        hold_budget: budget,
        approvers: vec![
            (digest(GRACE), "grace".into()),
            (digest(LINUS), "linus".into()),
        ],
        progress_every: Duration::from_millis(100),
        identity: None,
        request_state_key: None,
        slack: None,
        webhook: None,
    }
}

/// An admin API request as `token`.
pub(crate) async fn admin(
    warden: &TestWarden,
    method: http::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let addr = warden.running.admin_addr.expect("admin listener");
    let url = format!("http://{addr}{path}");
    let request = Request::builder()
        .method(method)
        .uri(&url)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(
            body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())),
        ))
        .expect("request");
    let reply = Agent::new(&url).send(request).await;
    (
        reply.status,
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    )
}

/// Send `message` on `agent`'s session from a task of its own (it waits
/// on a hold), returning the reply when it comes.
pub(crate) fn in_background(agent: &Agent, message: Value) -> tokio::task::JoinHandle<Reply> {
    let (url, session) = (agent.url.clone(), agent.session.clone());
    tokio::spawn(async move {
        let mut agent = Agent::new(&url);
        agent.session = session;
        agent.post(&message).await
    })
}

/// The id of the first pending approval, once one is staged (10 s at most).
pub(crate) async fn staged(warden: &TestWarden, token: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, queue) = admin(
            warden,
            http::Method::GET,
            "/approvals?status=pending",
            token,
            None,
        )
        .await;
        if let Some(id) = queue.get(0).and_then(|a| a["id"].as_str()) {
            return id.to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "never staged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn call_of(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}})
}

pub(crate) fn invoice(amount: u64) -> Value {
    json!({"customer_id": 1, "amount_cents": amount})
}

pub(crate) fn warden_result(reply: &Reply) -> Value {
    reply.json()["result"].clone()
}

#[tokio::test]
async fn a_held_call_is_pending_then_approved_then_runs_once_when_called_again() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice:\n    tier: approve\n    timeout: 10m\n")
        .approvals(approvals(tmp.path(), Duration::from_millis(300)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;

    let pending = warden_result(&agent.call(1, "send_invoice", invoice(500)).await);
    assert_eq!(pending["isError"], true, "{pending}");
    let held = &pending["structuredContent"];
    assert_eq!(held["warden"]["decision"], "pending");
    assert_eq!(held["warden"]["reason"], "pending-approval");
    let id = held["approval"]["id"]
        .as_str()
        .expect("an approval id")
        .to_owned();
    assert!(
        pending["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains(&id))
    );
    assert_eq!(demo.invoices_sent(), 0);

    // The same call again attaches to the same approval: asked once.
    let again = warden_result(&agent.call(2, "send_invoice", invoice(500)).await);
    assert_eq!(again["structuredContent"]["approval"]["id"], id.as_str());
    let (status, queue) = admin(
        &warden,
        http::Method::GET,
        "/approvals?status=pending",
        GRACE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let queue = queue.as_array().expect("a list").clone();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["tool"], "send_invoice");
    assert_eq!(queue[0]["arguments"], invoice(500));

    // Approved through the admin API; the same call now runs, once.
    let (status, decided) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{id}/approve"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["status"], "approved");
    let ran = warden_result(&agent.call(3, "send_invoice", invoice(500)).await);
    assert_eq!(ran["isError"], Value::Null, "{ran}");
    assert_eq!(
        ran["_meta"]["warden/approval"],
        json!({"id": id, "approvers": ["grace"]}),
        "the approver is noted: {ran}"
    );
    assert_eq!(demo.invoices_sent(), 1);
    // Not twice: the next identical call is a new approval.
    let next = warden_result(&agent.call(4, "send_invoice", invoice(500)).await);
    assert_eq!(next["structuredContent"]["warden"]["decision"], "pending");
    assert_ne!(next["structuredContent"]["approval"]["id"], id.as_str());
    assert_eq!(demo.invoices_sent(), 1);
    // An approval never covers other arguments.
    let other = warden_result(&agent.call(5, "send_invoice", invoice(999)).await);
    assert_eq!(other["structuredContent"]["warden"]["decision"], "pending");
    assert_eq!(demo.invoices_sent(), 1);
}

#[tokio::test]
async fn a_waiting_call_is_woken_by_a_rejection_naming_the_approver_and_reason() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let trail = tmp.path().join("audit");
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice:\n    tier: approve\n    approvers: [linus]\n")
        .approvals(approvals(tmp.path(), Duration::from_secs(20)))
        .audit(warden::audit::AuditConfig::in_dir(&trail, "it"))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let waiting = in_background(&agent, call_of(1, "send_invoice", invoice(700)));
    let id = staged(&warden, LINUS).await;
    // grace is not among this tool's approvers; a bad token is nobody.
    let (status, _) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{id}/approve"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{id}/approve"),
        "wdn_nobody",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{id}/reject"),
        LINUS,
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a rejection needs a reason"
    );
    let started = std::time::Instant::now();
    let (status, decided) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{id}/reject"),
        LINUS,
        Some(json!({"reason": "wrong customer"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let reply = waiting.await.expect("the call returns");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken, not left to its budget"
    );
    let result = warden_result(&reply);
    assert_eq!(result["isError"], true);
    assert_eq!(
        result["structuredContent"]["warden"]["decision"],
        "rejected"
    );
    let text = result["content"][0]["text"].as_str().expect("text");
    assert!(
        text.contains("linus") && text.contains("wrong customer"),
        "{text}"
    );
    assert_eq!(demo.invoices_sent(), 0);
    // Decided once: a second decision is a conflict.
    let (status, _) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{id}/approve"),
        LINUS,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn an_undecided_call_expires_and_without_a_queue_it_is_refused() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice:\n    tier: approve\n    timeout: 200ms\n")
        .approvals(approvals(tmp.path(), Duration::from_secs(5)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let expired = warden_result(&agent.call(1, "send_invoice", invoice(1)).await);
    assert_eq!(
        expired["structuredContent"]["warden"]["decision"], "expired",
        "{expired}"
    );
    assert_eq!(demo.invoices_sent(), 0);

    let unqueued = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice: approve\n")
        .start()
        .await;
    let mut agent = Agent::new(&unqueued.url);
    agent.initialize().await;
    let refused = warden_result(&agent.call(1, "send_invoice", invoice(1)).await);
    assert_eq!(
        refused["structuredContent"]["warden"]["reason"], "no-approval-queue",
        "{refused}"
    );
    assert_eq!(demo.invoices_sent(), 0);
}

#[tokio::test]
async fn a_cancellation_withdraws_the_held_call_and_it_never_runs() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice: approve\n")
        .approvals(approvals(tmp.path(), Duration::from_secs(20)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let waiting = in_background(&agent, call_of(41, "send_invoice", invoice(3)));
    let id = staged(&warden, GRACE).await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 41, "reason": "the user changed their mind"}});
    assert!(agent.post(&cancel).await.status.is_success());
    let result = warden_result(&waiting.await.expect("returns"));
    assert_eq!(
        result["structuredContent"]["warden"]["decision"], "cancelled",
        "{result}"
    );
    let (_, approval) = admin(
        &warden,
        http::Method::GET,
        &format!("/approvals/{id}"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(approval["status"], "cancelled");
    // A late approval cannot bring it back.
    let (status, _) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{id}/approve"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(demo.invoices_sent(), 0);
}

#[tokio::test]
async fn a_call_with_a_progress_token_hears_it_waits_past_the_budget_then_gets_its_result() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice: approve\n")
        .approvals(approvals(tmp.path(), Duration::from_millis(300)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let waiting = in_background(
        &agent,
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
            "name": "send_invoice", "arguments": invoice(42), "_meta": {"progressToken": "p-9"}}}),
    );
    let id = staged(&warden, GRACE).await;
    // Past the budget it still waits: it was told so by progress.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "a call with a progress token is not answered pending"
    );
    let (status, _) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{id}/approve"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let reply = waiting.await.expect("returns");
    let messages = reply.sse_messages();
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(progress.len() >= 3, "{messages:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "p-9")
    );
    let counts: Vec<u64> = progress
        .iter()
        .filter_map(|p| p["params"]["progress"].as_u64())
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] < w[1]),
        "progress only grows: {counts:?}"
    );
    let last = messages.last().expect("an outcome");
    assert_eq!(last["id"], 9);
    assert_eq!(last["result"]["isError"], Value::Null, "{last}");
    assert_eq!(
        last["result"]["_meta"]["warden/approval"]["id"],
        id.as_str()
    );
    assert_eq!(demo.invoices_sent(), 1);
}

#[tokio::test]
async fn approvers_see_the_arguments_redacted_and_the_run_gets_them_whole() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice: approve\nredact:\n  tools:\n    send_invoice:\n      arguments:\n        /amount_cents: mask\n")
        .approvals(approvals(tmp.path(), Duration::from_millis(200)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let pending = warden_result(&agent.call(1, "send_invoice", invoice(123_456)).await);
    let id = pending["structuredContent"]["approval"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, shown) = admin(
        &warden,
        http::Method::GET,
        &format!("/approvals/{id}"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(shown["arguments"]["customer_id"], 1);
    assert_ne!(shown["arguments"]["amount_cents"], 123_456, "{shown}");
    assert!(!shown.to_string().contains("123456"), "{shown}");
    let (status, _) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{id}/approve"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let ran = warden_result(&agent.call(2, "send_invoice", invoice(123_456)).await);
    assert_eq!(ran["isError"], Value::Null, "{ran}");
    assert_eq!(demo.invoices_sent(), 1);
}

#[tokio::test]
async fn a_retry_after_a_rejection_hears_it_once_then_asks_anew() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice: approve\n")
        .approvals(approvals(tmp.path(), Duration::from_millis(200)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let first = warden_result(&agent.call(1, "send_invoice", invoice(8)).await);
    let id = first["structuredContent"]["approval"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, _) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{id}/reject"),
        GRACE,
        Some(json!({"reason": "not today"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let told = warden_result(&agent.call(2, "send_invoice", invoice(8)).await);
    assert_eq!(
        told["structuredContent"]["warden"]["decision"], "rejected",
        "{told}"
    );
    assert_eq!(told["structuredContent"]["approval"]["id"], id.as_str());
    let anew = warden_result(&agent.call(3, "send_invoice", invoice(8)).await);
    assert_eq!(anew["structuredContent"]["warden"]["decision"], "pending");
    assert_ne!(anew["structuredContent"]["approval"]["id"], id.as_str());
    let (status, _) = admin(
        &warden,
        http::Method::GET,
        "/approvals?status=sideways",
        GRACE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(demo.invoices_sent(), 0);
}

#[tokio::test]
async fn bad_requests_to_the_approvals_api_get_clear_errors_and_change_nothing() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice: approve\n")
        .approvals(approvals(tmp.path(), Duration::from_millis(100)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let held = warden_result(&agent.call(1, "send_invoice", invoice(5)).await);
    let id = held["structuredContent"]["approval"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let addr = warden.running.admin_addr.expect("admin");
    let post = |path: String, body: Bytes| {
        let url = format!("http://{addr}{path}");
        async move {
            let request = Request::post(&url)
                .header("authorization", format!("Bearer {GRACE}"))
                .body(Full::new(body))
                .expect("request");
            let reply = Agent::new(&url).send(request).await;
            (
                reply.status,
                String::from_utf8_lossy(&reply.body).into_owned(),
            )
        }
    };
    let path = format!("/approvals/{id}/reject");
    let (status, text) = post(path.clone(), Bytes::from_static(b"not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("must be JSON"), "{text}");
    // Past the admin listener's body limit (64 KiB): 413, from the layer.
    let (status, text) = post(path.clone(), Bytes::from(vec![b'a'; 70 << 10])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text.contains("length limit exceeded"), "{text}");
    let (status, _) = post("/approvals/no-such-id/approve".into(), Bytes::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post(format!("/approvals/{id}/sideways"), Bytes::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nothing was decided by any of it.
    let (_, approval) = admin(
        &warden,
        http::Method::GET,
        &format!("/approvals/{id}"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(approval["status"], "pending");
    assert!(approval["votes"].as_array().is_some_and(Vec::is_empty));
    assert_eq!(demo.invoices_sent(), 0);
}

/// The last JSON-RPC message of a reply, JSON or SSE.
fn last_message(reply: &Reply) -> Value {
    if reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"))
    {
        reply.sse_messages().pop().expect("a message")
    } else {
        reply.json()
    }
}

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[tokio::test]
async fn a_task_augmented_held_call_is_a_warden_task_until_decided() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        .policy(
            "version: 1\ntools:\n  send_invoice:\n    tier: approve\n    approvers: [grace]\n  create_note: deny\n",
        )
        .approvals(approvals(tmp.path(), Duration::from_millis(200)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    let hello = agent.initialize().await.json();
    assert_eq!(
        hello["result"]["capabilities"]["tasks"]["requests"]["tools"]["call"],
        json!({}),
        "{hello}"
    );
    let listed = agent.list(1).await.json();
    let tools = listed["result"]["tools"].as_array().expect("tools");
    let held = tools
        .iter()
        .find(|t| t["name"] == "send_invoice")
        .expect("listed");
    assert_eq!(held["execution"]["taskSupport"], "optional");
    let read = tools
        .iter()
        .find(|t| t["name"] == "search_customers")
        .expect("listed");
    assert!(read.get("execution").is_none(), "{read}");

    // Answered at once, well within the hold budget's reach, with a task.
    let task_call = |id: u64, amount: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "send_invoice", "arguments": invoice(amount), "task": {"ttl": 600_000}}})
    };
    let created = agent.post(&task_call(2, 42)).await.json();
    let task = &created["result"]["task"];
    assert_eq!(task["status"], "working", "{created}");
    assert_eq!(task["ttl"], 600_000);
    let task_id = task["taskId"].as_str().expect("task id").to_owned();
    assert!(task_id.starts_with("warden-task-"));
    assert!(
        task["statusMessage"]
            .as_str()
            .is_some_and(|m| m.contains("grace")),
        "{task}"
    );
    // Still working after the budget: a task waits for the decision.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got = agent
        .post(&request(3, "tasks/get", json!({"taskId": task_id})))
        .await
        .json();
    assert_eq!(got["result"]["status"], "working", "{got}");
    let listed = agent
        .post(&request(4, "tasks/list", json!({})))
        .await
        .json();
    assert_eq!(listed["result"]["tasks"][0]["taskId"], task_id.as_str());
    // Another session sees nothing of it.
    let mut stranger = Agent::new(&warden.url);
    stranger.initialize().await;
    let foreign = stranger
        .post(&request(5, "tasks/get", json!({"taskId": task_id})))
        .await
        .json();
    assert_eq!(foreign["error"]["code"], -32602, "{foreign}");
    assert_eq!(demo.invoices_sent(), 0);

    // tasks/result waits; the approval completes it with the upstream's result.
    let waiting = in_background(
        &agent,
        request(6, "tasks/result", json!({"taskId": task_id})),
    );
    let approval = staged(&warden, GRACE).await;
    let (status, _) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{approval}/approve"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let result = last_message(&waiting.await.expect("returns"));
    assert_eq!(result["id"], 6, "{result}");
    assert_eq!(result["result"]["isError"], Value::Null, "{result}");
    assert_eq!(
        result["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        task_id.as_str()
    );
    assert_eq!(
        result["result"]["_meta"]["warden/approval"]["approvers"],
        json!(["grace"])
    );
    assert_eq!(demo.invoices_sent(), 1);
    let done = agent
        .post(&request(7, "tasks/get", json!({"taskId": task_id})))
        .await
        .json();
    assert_eq!(done["result"]["status"], "completed", "{done}");
    let late = agent
        .post(&request(8, "tasks/cancel", json!({"taskId": task_id})))
        .await
        .json();
    assert_eq!(late["error"]["code"], -32602, "a terminal task: {late}");

    // tasks/cancel withdraws a held task's approval: it never runs.
    let created = agent.post(&task_call(9, 43)).await.json();
    let second = created["result"]["task"]["taskId"]
        .as_str()
        .expect("task id")
        .to_owned();
    let approval = staged(&warden, GRACE).await;
    let cancelled = agent
        .post(&request(10, "tasks/cancel", json!({"taskId": second})))
        .await
        .json();
    assert_eq!(cancelled["result"]["status"], "cancelled", "{cancelled}");
    let (_, queued) = admin(
        &warden,
        http::Method::GET,
        &format!("/approvals/{approval}"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(queued["status"], "cancelled");
    let outcome = last_message(
        &agent
            .post(&request(11, "tasks/result", json!({"taskId": second})))
            .await,
    );
    assert_eq!(outcome["result"]["isError"], true, "{outcome}");
    assert_eq!(
        outcome["result"]["structuredContent"]["warden"],
        json!({"decision": "cancelled", "reason": "task-cancelled", "tool": "send_invoice"}),
        "{outcome}"
    );
    assert_eq!(demo.invoices_sent(), 1);

    // A refusal of a task-augmented call is a task that has already failed.
    let refused = agent
        .post(
            &json!({"jsonrpc": "2.0", "id": 12, "method": "tools/call", "params": {
            "name": "create_note", "arguments": {"text": "x"}, "task": {}}}),
        )
        .await
        .json();
    let task = &refused["result"]["task"];
    assert_eq!(task["status"], "failed", "{refused}");
    let answer = agent
        .post(&request(
            13,
            "tasks/result",
            json!({"taskId": task["taskId"]}),
        ))
        .await
        .json();
    assert_eq!(
        answer["result"]["structuredContent"]["warden"]["decision"], "deny",
        "{answer}"
    );
    let metrics = warden.running.warden.metrics.encode();
    assert!(metrics.contains("warden_tasks 3"), "{metrics}");
    // Unknown Warden task ids are invalid params, not forwarded.
    let unknown = agent
        .post(&request(
            14,
            "tasks/get",
            json!({"taskId": "warden-task-nope"}),
        ))
        .await
        .json();
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
}

/// The next JSON-RPC message on an SSE body (10 s at most).
async fn next_message(body: &mut hyper::body::Incoming, buffer: &mut String) -> Value {
    use http_body_util::BodyExt;
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:"))
                && let Ok(message) = serde_json::from_str(data.trim())
            {
                return message;
            }
            continue;
        }
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            buffer.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

#[tokio::test]
async fn a_confirm_tier_call_runs_only_when_the_user_ticks_yes_in_their_client() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let trail = tmp.path().join("audit");
    let warden = WardenBuilder::new(&upstream)
        .policy(
            "version: 1\ntools:\n  send_invoice: confirm\n  create_note:\n    tier: confirm\n    fallback: approve\n",
        )
        .approvals(approvals(tmp.path(), Duration::from_millis(300)))
        .audit(warden::audit::AuditConfig::in_dir(&trail, "it"))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize_with(json!({"elicitation": {}})).await;

    // Asked first; ticked; then the call runs and its result follows.
    let mut body = agent
        .post_streaming(&call_of(1, "send_invoice", invoice(250)))
        .await;
    let mut buffer = String::new();
    let asked = next_message(&mut body, &mut buffer).await;
    assert_eq!(asked["method"], "elicitation/create", "{asked}");
    let message = asked["params"]["message"].as_str().expect("message");
    assert!(
        message.contains("'send_invoice'") && message.contains("\"amount_cents\": 250"),
        "{message}"
    );
    assert_eq!(asked["params"]["mode"], "form");
    assert_eq!(demo.invoices_sent(), 0, "nothing runs before the answer");
    let yes = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"confirm": true}}});
    assert_eq!(agent.post(&yes).await.status, StatusCode::ACCEPTED);
    let result = next_message(&mut body, &mut buffer).await;
    assert_eq!(result["id"], 1, "{result}");
    assert_eq!(result["result"]["isError"], Value::Null, "{result}");
    assert_eq!(demo.invoices_sent(), 1);

    // Declined: an error result the model can read, nothing runs.
    let mut body = agent
        .post_streaming(&call_of(2, "send_invoice", invoice(251)))
        .await;
    let mut buffer = String::new();
    let asked = next_message(&mut body, &mut buffer).await;
    let no = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "decline"}});
    assert_eq!(agent.post(&no).await.status, StatusCode::ACCEPTED);
    let result = next_message(&mut body, &mut buffer).await;
    assert_eq!(result["result"]["isError"], true, "{result}");
    assert_eq!(
        result["result"]["structuredContent"]["warden"]["reason"],
        "declined-by-user"
    );
    // An answer nobody waits for any more is not Warden's to take: it goes on.
    assert_eq!(demo.invoices_sent(), 1);

    // A client without elicitation: refused, or held, as the rule falls back.
    let mut plain = Agent::new(&warden.url);
    plain.initialize().await;
    let refused = warden_result(&plain.call(3, "send_invoice", invoice(252)).await);
    assert_eq!(
        refused["structuredContent"]["warden"]["reason"], "confirmation-required",
        "{refused}"
    );
    let held = warden_result(&plain.call(4, "create_note", json!({"text": "hi"})).await);
    assert_eq!(
        held["structuredContent"]["warden"]["reason"], "pending-approval",
        "{held}"
    );
    assert_eq!(demo.invoices_sent(), 1);
    drop(warden);
    let records = std::fs::read_dir(&trail)
        .expect("trail")
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        records.contains("\"confirmed\""),
        "the confirmation is on the record"
    );
    assert!(
        records.contains("\"declined-by-user\""),
        "so is the decline"
    );
}

#[tokio::test]
async fn the_cli_decides_through_the_admin_api_with_the_token_from_the_environment() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice: approve\n")
        .approvals(approvals(tmp.path(), Duration::from_secs(20)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let waiting = in_background(&agent, call_of(1, "send_invoice", invoice(9)));
    let id = staged(&warden, GRACE).await;
    let admin_url = format!("http://{}", warden.running.admin_addr.expect("admin"));
    // Run on the runtime (the in-process Warden must keep answering).
    let cli = async |token: &str, args: &[&str]| {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(args)
            .env("WARDEN_APPROVER_TOKEN", token)
            .env_remove("WARDEN_CONFIG")
            .output()
            .await
            .expect("runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let args = [
        "approvals",
        "reject",
        &id,
        "--admin",
        &admin_url,
        "--reason",
        "not today",
    ];
    let (ok, _, refused) = cli("wdn_nobody", &args).await;
    assert!(!ok && refused.contains("401"), "{refused}");
    assert!(
        !refused.contains("wdn_nobody"),
        "the token is never echoed: {refused}"
    );
    // An id that would bend the path, or a token sent in the clear off
    // loopback, is refused before any request.
    let bent = format!("{id}/approve?");
    let (ok, _, refused) = cli(
        LINUS,
        &[
            "approvals",
            "reject",
            &bent,
            "--admin",
            &admin_url,
            "--reason",
            "x",
        ],
    )
    .await;
    assert!(!ok && refused.contains("not an approval id"), "{refused}");
    let (ok, _, refused) = cli(
        LINUS,
        &[
            "approvals",
            "approve",
            &id,
            "--admin",
            "http://warden-admin.example:9090",
        ],
    )
    .await;
    assert!(!ok && refused.contains("in the clear"), "{refused}");
    let (ok, said, err) = cli(LINUS, &args).await;
    assert!(ok, "{err}");
    assert!(said.contains("rejected"), "{said}");
    let result = warden_result(&waiting.await.expect("returns"));
    let text = result["content"][0]["text"].as_str().expect("text");
    assert!(
        text.contains("linus") && text.contains("not today"),
        "{text}"
    );
    assert_eq!(demo.invoices_sent(), 0);
}

#[tokio::test]
async fn an_agent_that_hangs_up_abandons_its_approval_and_the_call_never_runs() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let trail = tmp.path().join("audit");
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice: approve\n")
        .approvals(approvals(tmp.path(), Duration::from_secs(20)))
        .audit(warden::audit::AuditConfig::in_dir(&trail, "it"))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    for (n, progress) in [(1u64, false), (2, true)] {
        let mut call = call_of(n, "send_invoice", invoice(n));
        if progress {
            call["params"]["_meta"] = json!({"progressToken": "p"});
        }
        let waiting = in_background(&agent, call);
        let id = staged(&warden, GRACE).await;
        // The agent's client gives up: its connection goes.
        waiting.abort();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, approval) = admin(
                &warden,
                http::Method::GET,
                &format!("/approvals/{id}"),
                GRACE,
                None,
            )
            .await;
            if approval["status"] == "abandoned" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never abandoned (progress: {progress}): {approval}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Never run later behind anyone's back.
        let (status, _) = admin(
            &warden,
            http::Method::POST,
            &format!("/approvals/{id}/approve"),
            GRACE,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(demo.invoices_sent(), 0);
    drop(warden);
    let records = std::fs::read_dir(&trail)
        .expect("trail")
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert_eq!(
        records.matches("\"abandoned\"").count(),
        2,
        "each abandonment is on the record"
    );
}

/// A task cancelled as soon as it was created, before its hold had
/// staged the approval, is withdrawn all the same: no approval is left
/// pending, none can be approved, and the call never runs.
#[tokio::test]
async fn a_task_cancelled_at_once_is_never_held_nor_run() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice:\n    tier: approve\n")
        .approvals(approvals(tmp.path(), Duration::from_millis(200)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    for round in 0..5u64 {
        let created = agent
            .post(&json!({"jsonrpc": "2.0", "id": 10 * round + 1, "method": "tools/call", "params": {
                "name": "send_invoice", "arguments": invoice(100 + round), "task": {"ttl": 60_000}}}))
            .await
            .json();
        let task_id = created["result"]["task"]["taskId"]
            .as_str()
            .unwrap_or_else(|| panic!("a task: {created}"))
            .to_owned();
        let cancelled = agent
            .post(&request(
                10 * round + 2,
                "tasks/cancel",
                json!({"taskId": task_id}),
            ))
            .await
            .json();
        assert_eq!(cancelled["result"]["status"], "cancelled", "{cancelled}");
    }
    // Whatever the hold had done when the cancel came, it ends withdrawn.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let queue = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, queue) = admin(&warden, http::Method::GET, "/approvals", GRACE, None).await;
        let queue = queue.as_array().cloned().unwrap_or_default();
        if queue.iter().all(|a| a["status"] != "pending") {
            break queue;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still pending after the tasks were cancelled: {queue:?}"
        );
    };
    for approval in &queue {
        assert_eq!(approval["status"], "cancelled", "{approval}");
        assert_eq!(approval["executed_ms"], Value::Null, "{approval}");
        let (status, _) = admin(
            &warden,
            http::Method::POST,
            &format!(
                "/approvals/{}/approve",
                approval["id"].as_str().expect("id")
            ),
            GRACE,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(demo.invoices_sent(), 0);
}

/// A dry run of a held tool sent as a task previews the call an approval
/// would run: without `params.task`, since Warden, not the upstream, owns
/// a held call's task.
#[tokio::test]
async fn a_dry_run_of_a_held_task_previews_the_call_without_the_task() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice: approve\n  create_note: write\n")
        .approvals(approvals(tmp.path(), Duration::from_millis(200)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let preview = |id: u64, tool: &str, arguments: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": tool, "arguments": arguments, "task": {"ttl": 60_000}}})
    };
    let mut dry = invoice(500);
    dry["dryRun"] = json!(true);
    let created = agent.post(&preview(2, "send_invoice", dry)).await.json();
    assert_eq!(
        created["result"]["task"]["status"], "completed",
        "{created}"
    );
    let task_id = created["result"]["task"]["taskId"].clone();
    let answer = agent
        .post(&request(3, "tasks/result", json!({"taskId": task_id})))
        .await
        .json();
    let payload = &answer["result"]["structuredContent"]["payload"];
    assert_eq!(
        payload["params"],
        json!({"name": "send_invoice", "arguments": invoice(500)}),
        "{answer}"
    );
    // A tool the upstream runs itself keeps its task in the preview: the
    // upstream gets it.
    let note = json!({"customer_id": 1, "text": "hi", "dryRun": true});
    let created = agent.post(&preview(4, "create_note", note)).await.json();
    let task_id = created["result"]["task"]["taskId"].clone();
    let answer = agent
        .post(&request(5, "tasks/result", json!({"taskId": task_id})))
        .await
        .json();
    assert_eq!(
        answer["result"]["structuredContent"]["payload"]["params"]["task"],
        json!({"ttl": 60_000}),
        "{answer}"
    );
    assert_eq!(demo.invoices_sent(), 0);
    assert_eq!(demo.notes_written(), 0);
}

/// `warden approvals approve --as` decides in the store, where the CLI has
/// no trail to write: the running Warden's sweep records the decision
/// (`grace (cli)`), once, and the held call it wakes runs.
#[tokio::test]
async fn a_decision_taken_in_the_store_by_the_cli_is_recorded_by_the_running_warden() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let trail = tmp.path().join("audit");
    let policy = "version: 1\ntools:\n  send_invoice:\n    tier: approve\n    approvers: [grace]\n";
    let warden = WardenBuilder::new(&upstream)
        .policy(policy)
        .approvals(approvals(tmp.path(), Duration::from_secs(30)))
        .audit(warden::audit::AuditConfig::in_dir(&trail, "it"))
        // The sweeper runs every session_idle / 4.
        .limits(|limits| limits.session_idle = Duration::from_secs(2))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    // One decided through the API first: recorded there and then, and
    // never again by a sweep.
    let through_api = in_background(&agent, call_of(1, "send_invoice", invoice(41)));
    let api_id = staged(&warden, GRACE).await;
    let (status, _) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{api_id}/approve"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    through_api.await.expect("returns");
    let waiting = in_background(&agent, call_of(2, "send_invoice", invoice(42)));
    let id = staged(&warden, GRACE).await;
    assert_ne!(id, api_id);

    // The operator's config on the same host: the same store and policy.
    std::fs::write(tmp.path().join("p.yaml"), policy).expect("policy");
    let config = tmp.path().join("w.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nlisten: 127.0.0.1:0\napprovals:\n  store: approvals.db\n  approvers:\n    - name: grace\n      sha256: {}\nroutes:\n  - path: /mcp\n    upstream:\n      url: {upstream}\n    policy: p.yaml\n",
            warden_identity::api_key::digest_hex(GRACE)
        ),
    )
    .expect("config");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["approvals", "approve", &id, "--as", "grace", "--config"])
        .arg(&config)
        .env_remove("WARDEN_CONFIG")
        .output()
        .await
        .expect("runs");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("grace (cli)"),
        "the operator is told how it is recorded: {said}"
    );

    // The held call sees the decision (by polling the store) and runs.
    let ran = warden_result(&waiting.await.expect("returns"));
    assert_eq!(ran["isError"], Value::Null, "{ran}");
    assert_eq!(demo.invoices_sent(), 2);

    // Within the grace and a sweep or two, the decision is on the record.
    let deadline =
        tokio::time::Instant::now() + warden::admin::RECORD_GRACE + Duration::from_secs(10);
    let decided = loop {
        let decided: Vec<_> = crate::audit_trail::records(&trail)
            .into_iter()
            .filter(|r| r.kind == warden_audit::Kind::ApprovalDecided)
            .collect();
        if decided.len() > 1 || tokio::time::Instant::now() > deadline {
            break decided;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let of = |id: &str| {
        decided
            .iter()
            .filter(|r| r.approval.as_ref().is_some_and(|a| a.id == id))
            .collect::<Vec<_>>()
    };
    assert_eq!(of(&api_id).len(), 1, "the API's decision once: {decided:?}");
    assert_eq!(
        of(&api_id)[0]
            .approval
            .as_ref()
            .and_then(|a| a.approver.as_deref()),
        Some("grace")
    );
    assert_eq!(of(&id).len(), 1, "the CLI's decision once: {decided:?}");
    let record = of(&id)[0];
    let approval = record.approval.as_ref().expect("approval field");
    assert_eq!(approval.id, id);
    assert_eq!(approval.approver.as_deref(), Some("grace (cli)"));
    assert_eq!(record.decision.as_deref(), Some("approved"));
    assert_eq!(record.tool.as_deref(), Some("send_invoice"));
    // Later sweeps do not record it again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = crate::audit_trail::records(&trail)
        .into_iter()
        .filter(|r| r.kind == warden_audit::Kind::ApprovalDecided)
        .count();
    assert_eq!(again, 2);
}

/// A held task belongs to its MCP session: when the agent ends the
/// session, nobody can read the task any more, so its held call is
/// withdrawn and never runs, even if an approver approves later.
#[tokio::test]
async fn ending_the_session_withdraws_its_held_task_and_the_call_never_runs() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice: approve\n")
        .approvals(approvals(tmp.path(), Duration::from_millis(200)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let created = agent
        .post(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "send_invoice", "arguments": invoice(77), "task": {"ttl": 600_000}}}),
        )
        .await
        .json();
    assert_eq!(created["result"]["task"]["status"], "working", "{created}");
    let id = staged(&warden, GRACE).await;
    assert_eq!(warden.running.warden.tasks.len(), 1);

    let session = agent.session.clone().expect("a session");
    let ended = agent
        .send(
            Request::delete(&agent.url)
                .header("mcp-session-id", &session)
                .header("mcp-protocol-version", "2025-11-25")
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
    assert!(ended.status.is_success(), "{ended:?}");
    assert_eq!(
        warden.running.warden.tasks.len(),
        0,
        "the session's tasks are forgotten"
    );

    // The approval is withdrawn (by the hold, at once): an approver's
    // late approval finds it cancelled, and the call never runs.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        let (_, approval) = admin(
            &warden,
            http::Method::GET,
            &format!("/approvals/{id}"),
            GRACE,
            None,
        )
        .await;
        if approval["status"] != "pending" || tokio::time::Instant::now() > deadline {
            break approval["status"].clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, "cancelled");
    let (status, body) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{id}/approve"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(demo.invoices_sent(), 0);
}

/// `tasks/list` pages Warden's own tasks first; the upstream's first page
/// follows on Warden's last, with its `nextCursor`, so none of the
/// upstream's later pages is lost.
#[tokio::test]
async fn tasks_list_pages_wardens_tasks_then_the_upstreams_without_losing_its_cursor() {
    let (upstream, _) = upstream_fn(|_parts, body| async move {
        let id = id_of(&body);
        let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match method_of(&body).as_str() {
            "initialize" => {
                let mut response = json_response(&json!({"jsonrpc": "2.0", "id": id, "result": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {"tools": {}, "tasks": {"list": {}}},
                    "serverInfo": {"name": "tasks-upstream", "version": "1"}}}));
                response
                    .headers_mut()
                    .insert("mcp-session-id", "up-session".parse().expect("header"));
                response
            }
            "tools/list" => json_response(&json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
                {"name": "send_invoice", "inputSchema": {"type": "object"}}]}})),
            "tasks/list" => {
                assert!(
                    message["params"]["cursor"]
                        .as_str()
                        .is_none_or(|c| !c.starts_with("warden-task-")),
                    "Warden's cursor never reaches the upstream: {message}"
                );
                if message["params"]["cursor"] == "up-2" {
                    json_response(&json!({"jsonrpc": "2.0", "id": id, "result": {
                        "tasks": [{"taskId": "up-b", "status": "completed"}]}}))
                } else {
                    json_response(&json!({"jsonrpc": "2.0", "id": id, "result": {
                        "tasks": [{"taskId": "up-a", "status": "working"}], "nextCursor": "up-2"}}))
                }
            }
            _ => handshake(&body).unwrap_or_else(|| {
                json_response(&json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}}))
            }),
        }
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        // 51 calls of one tool in one session: past the default call cap.
        .policy("version: 1\nlimits:\n  tool_calls: unlimited\ntools:\n  send_invoice: approve\n")
        .approvals(approvals(tmp.path(), Duration::from_millis(200)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    agent.list(1).await;
    // One more than a page of Warden's own tasks.
    for n in 0..51u64 {
        let created = agent
            .post(
                &json!({"jsonrpc": "2.0", "id": 100 + n, "method": "tools/call", "params": {
                "name": "send_invoice", "arguments": invoice(n + 1), "task": {"ttl": 600_000}}}),
            )
            .await
            .json();
        assert_eq!(created["result"]["task"]["status"], "working", "{created}");
    }
    let page = |cursor: Option<&str>| {
        let params = cursor.map_or_else(|| json!({}), |c| json!({"cursor": c}));
        let agent = agent.clone();
        async move { agent.post(&request(2, "tasks/list", params)).await.json()["result"].clone() }
    };
    let ids = |page: &Value| -> Vec<String> {
        page["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| t["taskId"].as_str().expect("id").to_owned())
            .collect()
    };
    let first = page(None).await;
    assert_eq!(ids(&first).len(), 50, "{first}");
    assert!(ids(&first).iter().all(|t| t.starts_with("warden-task-")));
    let cursor = first["nextCursor"].as_str().expect("more").to_owned();
    let second = page(Some(&cursor)).await;
    let listed = ids(&second);
    assert_eq!(listed.len(), 2, "{second}");
    assert!(listed[0].starts_with("warden-task-"));
    assert_eq!(
        listed[1], "up-a",
        "the upstream's first page follows Warden's last"
    );
    assert_eq!(second["nextCursor"], "up-2", "{second}");
    let third = page(Some("up-2")).await;
    assert_eq!(ids(&third), ["up-b"]);
    assert!(third.get("nextCursor").is_none(), "{third}");
}
