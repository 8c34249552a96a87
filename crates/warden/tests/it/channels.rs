//! Approvers' channels through Warden: a fake Slack (an incoming-webhook
//! receiver on loopback) gets the message with the buttons when a call is
//! held, and a click signed as Slack signs it approves the call, which
//! then runs; a generic webhook receiver gets the signed JSON, and a signed
//! decision rejects the call. Wrong secrets, stale timestamps, replays,
//! tampered bodies and unmapped users decide nothing. Failed deliveries
//! are retried, then counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use sha2::Sha256;
use warden::channels::{SlackConfig, WebhookConfig};
use warden::credentials::SourceConfig;
use warden_audit::Kind;
use warden_upstream::credential::Secret;

use crate::approvals::{
    GRACE, admin, approvals, call_of, in_background, invoice, staged, warden_result,
};
use crate::audit_trail::{flushed, metric, until};
use crate::support::*;

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const WEBHOOK_SECRET: &str = "whsec-3c1b9f0e7a5d4c2b8e6f1a0d";
const GRACE_IN_SLACK: &str = "U012GRACE";
const POLICY: &str = "version: 1\ntools:\n  send_invoice:\n    tier: approve\n    timeout: 10m\n    approvers: [grace]\n";

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Post {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Post {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON post")
    }
}

/// A local HTTP server standing for Slack or a webhook receiver: it keeps
/// every request, answers the first `failures` with 503, then 200 `ok`.
#[derive(Clone)]
struct Receiver {
    base: String,
    posts: Arc<Mutex<Vec<Post>>>,
}

impl Receiver {
    async fn start(failures: usize) -> Receiver {
        let posts: Arc<Mutex<Vec<Post>>> = Arc::default();
        let kept = posts.clone();
        let (_, addr) = upstream_fn(move |parts: http::request::Parts, body: Bytes| {
            let kept = kept.clone();
            async move {
                let mut kept = kept.lock().expect("posts");
                kept.push(Post {
                    path: parts.uri.path().to_owned(),
                    headers: parts.headers,
                    body,
                });
                let status = if kept.len() <= failures { 503 } else { 200 };
                http::Response::builder()
                    .status(status)
                    .body(full_body("ok"))
                    .expect("response")
            }
        })
        .await;
        Receiver {
            base: format!("http://{addr}"),
            posts,
        }
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().expect("posts").clone()
    }

    /// The posts to paths starting with `prefix`.
    fn to(&self, prefix: &str) -> Vec<Post> {
        self.posts()
            .into_iter()
            .filter(|p| p.path.starts_with(prefix))
            .collect()
    }

    /// Wait for `count` posts to paths starting with `prefix`.
    async fn wait_for(&self, prefix: &str, count: usize) -> Vec<Post> {
        until(&format!("{count} post(s) to {prefix}"), async || {
            let posts = self.to(prefix);
            (posts.len() >= count).then_some(posts)
        })
        .await
    }
}

fn inline(value: &str) -> SourceConfig {
    SourceConfig::Inline(Secret::new(value))
}

fn slack(receiver: &Receiver) -> SlackConfig {
    SlackConfig {
        webhook_url: inline(&format!("{}/services/T000/B000/XXXX", receiver.base)),
        signing_secret: inline(SIGNING_SECRET),
        users: HashMap::from([(GRACE_IN_SLACK.to_owned(), "grace".to_owned())]),
    }
}

fn webhook(receiver: &Receiver) -> WebhookConfig {
    WebhookConfig {
        url: format!("{}/warden", receiver.base).parse().expect("url"),
        secret: inline(WEBHOOK_SECRET),
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .expect("clock")
}

/// HMAC-SHA256 of `message` under `secret`, in hex: computed here, apart
/// from Warden's code, as a receiver would.
fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Slack's signature of `body` sent at `timestamp`.
fn slack_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("v0:{timestamp}:").into_bytes();
    signed.extend_from_slice(body);
    format!("v0={}", hmac_hex(secret, &signed))
}

/// Warden's webhook signature of `body` sent at `timestamp`.
fn warden_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    format!("v1={}", hmac_hex(secret, &signed))
}

/// `application/x-www-form-urlencoded`, as Slack encodes the payload.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A click on one of Warden's buttons, as Slack posts it: a form whose
/// `payload` is a `block_actions` interaction.
fn click(user: &str, action: &str, approval: &str, response_url: &str) -> Vec<u8> {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": "someone", "name": "someone", "team_id": "T000"},
        "api_app_id": "A000", "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": "1764590400.000100",
            "channel_id": "C000", "is_ephemeral": false},
        "trigger_id": "1764590400.1.abc",
        "team": {"id": "T000", "domain": "example"},
        "enterprise": null, "is_enterprise_install": false,
        "channel": {"id": "C000", "name": "approvals"},
        "message": {"type": "message", "text": "Approval needed", "ts": "1764590400.000100"},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [{"action_id": action, "block_id": "warden_approval",
            "text": {"type": "plain_text", "text": "Approve", "emoji": true},
            "value": approval, "style": "primary", "type": "button",
            "action_ts": "1764590401.000200"}]
    });
    format!("payload={}", form_encode(&payload.to_string())).into_bytes()
}

/// POST `body` to the admin listener's `path` with `headers`.
async fn callback(
    warden: &TestWarden,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let addr = warden.running.admin_addr.expect("admin listener");
    let url = format!("http://{addr}{path}");
    let mut request = Request::post(&url).header(
        "content-type",
        if path.contains("slack") {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        },
    );
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let reply = Agent::new(&url)
        .send(request.body(Full::new(Bytes::from(body))).expect("request"))
        .await;
    (
        reply.status,
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    )
}

/// A Slack interaction signed with `secret` at `timestamp`.
async fn slack_callback(
    warden: &TestWarden,
    secret: &str,
    timestamp: i64,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let signature = slack_signature(secret, timestamp, &body);
    callback(
        warden,
        "/approvals/slack/interactions",
        &[
            ("x-slack-request-timestamp", timestamp.to_string()),
            ("x-slack-signature", signature),
        ],
        body,
    )
    .await
}

/// A webhook decision signed with `secret` at `timestamp`.
async fn webhook_callback(
    warden: &TestWarden,
    secret: &str,
    timestamp: i64,
    decision: &Value,
) -> (StatusCode, Value) {
    let body = decision.to_string().into_bytes();
    let signature = warden_signature(secret, timestamp, &body);
    callback(
        warden,
        "/approvals/webhook/decisions",
        &[
            ("x-warden-timestamp", timestamp.to_string()),
            ("x-warden-signature", signature),
        ],
        body,
    )
    .await
}

async fn status_of(warden: &TestWarden, id: &str) -> String {
    let (_, approval) = admin(
        warden,
        http::Method::GET,
        &format!("/approvals/{id}"),
        GRACE,
        None,
    )
    .await;
    approval["status"].as_str().unwrap_or_default().to_owned()
}

fn sample(warden: &TestWarden, name: &str, channel: &str, result: &str) -> Option<f64> {
    metric(
        &warden.running.warden.metrics.encode(),
        &format!("{name}{{channel=\"{channel}\",result=\"{result}\"}}"),
    )
}

#[tokio::test]
async fn slack_gets_the_buttons_and_a_signed_click_approves_the_held_call_which_runs() {
    let (upstream, demo) = demo_upstream().await;
    let slack_server = Receiver::start(0).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let trail = tmp.path().join("audit");
    let mut config = approvals(tmp.path(), Duration::from_secs(20));
    config.slack = Some(slack(&slack_server));
    let warden = WardenBuilder::new(&upstream)
        .policy(POLICY)
        .approvals(config)
        .audit(warden::audit::AuditConfig::in_dir(&trail, "it"))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let waiting = in_background(&agent, call_of(1, "send_invoice", invoice(700)));

    // The message: the call, and two buttons carrying the approval's id.
    let posted = slack_server.wait_for("/services/", 1).await;
    let message = posted[0].json();
    assert_eq!(
        posted[0].headers["content-type"], "application/json",
        "{message}"
    );
    let blocks = message["blocks"].as_array().expect("blocks");
    assert_eq!(
        blocks[0]["text"]["text"], "Approval needed: send_invoice",
        "{message}"
    );
    let text = message.to_string();
    assert!(
        text.contains("amount_cents") && text.contains("700"),
        "{text}"
    );
    let actions = blocks.last().expect("blocks");
    assert_eq!(actions["type"], "actions");
    let buttons = actions["elements"].as_array().expect("buttons");
    assert_eq!(
        (
            buttons[0]["text"]["text"].as_str(),
            buttons[0]["style"].as_str()
        ),
        (Some("Approve"), Some("primary"))
    );
    assert_eq!(
        (
            buttons[1]["text"]["text"].as_str(),
            buttons[1]["style"].as_str()
        ),
        (Some("Reject"), Some("danger"))
    );
    let id = buttons[0]["value"].as_str().expect("an id").to_owned();
    assert_eq!(buttons[1]["value"], id.as_str());
    assert_eq!(staged(&warden, GRACE).await, id);

    let response_url = format!("{}/actions/T000/1/hook", slack_server.base);
    let approve = click(GRACE_IN_SLACK, "warden_approve", &id, &response_url);
    let now = now_secs();

    // Refused, nothing decided: a wrong secret, a stale timestamp, a
    // tampered body, no signature, a malformed one.
    let (status, said) = slack_callback(
        &warden,
        "0000000000wrongsecret0000000000",
        now,
        approve.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{said}");
    let (status, said) =
        slack_callback(&warden, SIGNING_SECRET, now - 6 * 60, approve.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{said}");
    assert!(
        said["error"]
            .as_str()
            .is_some_and(|e| e.contains("timestamp")),
        "{said}"
    );
    let signature = slack_signature(SIGNING_SECRET, now, &approve);
    let tampered = click(
        GRACE_IN_SLACK,
        "warden_approve",
        "another-approval",
        &response_url,
    );
    for (headers, body) in [
        (
            vec![
                ("x-slack-request-timestamp", now.to_string()),
                ("x-slack-signature", signature.clone()),
            ],
            tampered,
        ),
        (vec![], approve.clone()),
        (
            vec![
                ("x-slack-request-timestamp", now.to_string()),
                ("x-slack-signature", "v0=not-hex".to_owned()),
            ],
            approve.clone(),
        ),
    ] {
        let (status, said) =
            callback(&warden, "/approvals/slack/interactions", &headers, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{said}");
    }
    // Signed, but by a Slack user no approver is mapped to.
    let stranger = click("U999STRANGER", "warden_approve", &id, &response_url);
    let (status, said) = slack_callback(&warden, SIGNING_SECRET, now, stranger).await;
    assert_eq!(status, StatusCode::OK, "{said}");
    assert_eq!(said["response_type"], "ephemeral");
    assert!(
        said["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Nothing was decided") && t.contains("U999STRANGER")),
        "{said}"
    );
    assert_eq!(status_of(&warden, &id).await, "pending");
    assert_eq!(demo.invoices_sent(), 0);

    // Signed by Slack's scheme, by grace: approved, and answered at once.
    let started = tokio::time::Instant::now();
    let (status, said) = slack_callback(&warden, SIGNING_SECRET, now, approve.clone()).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(status, StatusCode::OK, "{said}");
    assert!(
        said["text"]
            .as_str()
            .is_some_and(|t| t.contains("Approved") && t.contains("grace")),
        "{said}"
    );
    // The same request again is a replay: refused.
    let (status, said) = callback(
        &warden,
        "/approvals/slack/interactions",
        &[
            ("x-slack-request-timestamp", now.to_string()),
            ("x-slack-signature", signature),
        ],
        approve,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{said}");

    // The held call runs, once, and the agent gets the upstream's result.
    let ran = warden_result(&waiting.await.expect("the call"));
    assert_eq!(ran["isError"], Value::Null, "{ran}");
    assert!(ran["content"][0]["text"].is_string(), "{ran}");
    assert_eq!(demo.invoices_sent(), 1);
    assert_eq!(status_of(&warden, &id).await, "approved");

    // Slack's message is replaced: the outcome instead of the buttons;
    // the stranger was told alone.
    let follow_ups = slack_server.wait_for("/actions/", 2).await;
    let replaced = follow_ups
        .iter()
        .map(Post::json)
        .find(|m| m["replace_original"] == true)
        .expect("the message replaced");
    assert!(
        !replaced.to_string().contains("warden_approve"),
        "{replaced}"
    );
    assert!(replaced.to_string().contains("Approved"), "{replaced}");
    assert!(follow_ups.iter().map(Post::json).any(|m| {
        m["response_type"] == "ephemeral"
            && m["text"]
                .as_str()
                .is_some_and(|t| t.contains("U999STRANGER"))
    }));

    // On the record: requested, then decided by grace through Slack.
    let records = flushed(&warden, &trail).await;
    let of = |kind: Kind| {
        records
            .iter()
            .filter(|r| r.kind == kind && r.approval.as_ref().is_some_and(|a| a.id == id))
            .collect::<Vec<_>>()
    };
    assert_eq!(of(Kind::ApprovalRequested).len(), 1);
    let decided = of(Kind::ApprovalDecided);
    assert_eq!(decided.len(), 1, "{decided:#?}");
    assert_eq!(
        decided[0]
            .approval
            .as_ref()
            .and_then(|a| a.approver.as_deref()),
        Some("grace (slack)")
    );
    assert_eq!(
        sample(
            &warden,
            "warden_approval_notifications_total",
            "slack",
            "delivered"
        ),
        Some(1.0)
    );
    for (result, count) in [
        ("bad_signature", 4.0),
        ("stale", 1.0),
        ("unmapped_user", 1.0),
        ("decided", 1.0),
        ("replayed", 1.0),
    ] {
        assert_eq!(
            sample(&warden, "warden_approval_callbacks_total", "slack", result),
            Some(count),
            "{result}"
        );
    }
}

#[tokio::test]
async fn the_webhook_gets_signed_json_and_a_signed_decision_rejects_the_call() {
    let (upstream, demo) = demo_upstream().await;
    let receiver = Receiver::start(0).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let trail = tmp.path().join("audit");
    let mut config = approvals(tmp.path(), Duration::from_secs(20));
    config.webhook = Some(webhook(&receiver));
    let warden = WardenBuilder::new(&upstream)
        .policy(POLICY)
        .approvals(config)
        .audit(warden::audit::AuditConfig::in_dir(&trail, "it"))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let waiting = in_background(&agent, call_of(1, "send_invoice", invoice(900)));

    // The signed JSON, checked as a receiver would.
    let posted = receiver.wait_for("/warden", 1).await;
    let post = &posted[0];
    let timestamp = post.headers["x-warden-timestamp"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let age = now_secs() - timestamp.parse::<i64>().expect("unix seconds");
    assert!((0..60).contains(&age), "{age}");
    let expected = warden_signature(WEBHOOK_SECRET, timestamp.parse().expect("ts"), &post.body);
    assert_eq!(post.headers["x-warden-signature"], expected.as_str());
    let event = post.json();
    assert_eq!(event["type"], "approval.requested");
    let approval = &event["approval"];
    let id = approval["id"].as_str().expect("id").to_owned();
    assert_eq!(approval["tool"], "send_invoice");
    assert_eq!(approval["route"], "/mcp");
    assert_eq!(approval["upstream"], upstream.as_str());
    assert_eq!(approval["arguments"], invoice(900));
    assert_eq!(approval["agent"], "anonymous");
    assert_eq!(approval["approvals_required"], 1);
    assert!(approval["expires_ms"].as_i64().is_some_and(|e| e > 0));
    assert!(approval.get("rationale").is_some() && approval.get("on_behalf_of").is_some());

    let reject = json!({"approval_id": id, "verdict": "reject", "approver": "grace",
        "reason": "wrong customer"});
    let now = now_secs();
    // Refused, nothing decided: a wrong secret, stale, a tampered body,
    // an approver who is not configured, one the rule does not allow.
    let (status, _) = webhook_callback(&warden, "not-the-secret", now, &reject).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = webhook_callback(&warden, WEBHOOK_SECRET, now - 301, &reject).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let body = reject.to_string().into_bytes();
    let signature = warden_signature(WEBHOOK_SECRET, now, &body);
    let tampered = reject.to_string().replace("reject", "approve").into_bytes();
    let (status, _) = callback(
        &warden,
        "/approvals/webhook/decisions",
        &[
            ("x-warden-timestamp", now.to_string()),
            ("x-warden-signature", signature.clone()),
        ],
        tampered,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mallory = json!({"approval_id": id, "verdict": "approve", "approver": "mallory"});
    let (status, said) = webhook_callback(&warden, WEBHOOK_SECRET, now, &mallory).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{said}");
    let linus = json!({"approval_id": id, "verdict": "approve", "approver": "linus"});
    let (status, said) = webhook_callback(&warden, WEBHOOK_SECRET, now, &linus).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{said}");
    assert_eq!(said["error"], "linus may not decide calls to send_invoice");
    let (status, said) = webhook_callback(
        &warden,
        WEBHOOK_SECRET,
        now,
        &json!({"approval_id": id, "verdict": "reject", "approver": "grace"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{said}");
    assert_eq!(status_of(&warden, &id).await, "pending");

    // Signed and allowed: rejected.
    let (status, said) = callback(
        &warden,
        "/approvals/webhook/decisions",
        &[
            ("x-warden-timestamp", now.to_string()),
            ("x-warden-signature", signature.clone()),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{said}");
    assert_eq!(said["status"], "rejected");
    // Replayed: refused.
    let (status, _) = callback(
        &warden,
        "/approvals/webhook/decisions",
        &[
            ("x-warden-timestamp", now.to_string()),
            ("x-warden-signature", signature),
        ],
        body,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The agent hears the rejection, naming the approver and the reason.
    let rejected = warden_result(&waiting.await.expect("the call"));
    assert_eq!(rejected["isError"], true, "{rejected}");
    assert_eq!(
        rejected["structuredContent"]["warden"]["decision"],
        "rejected"
    );
    let text = rejected["content"][0]["text"].as_str().expect("text");
    assert!(
        text.contains("grace") && text.contains("wrong customer"),
        "{text}"
    );
    assert_eq!(demo.invoices_sent(), 0);

    let records = flushed(&warden, &trail).await;
    let decided: Vec<_> = records
        .iter()
        .filter(|r| r.kind == Kind::ApprovalDecided)
        .collect();
    assert_eq!(decided.len(), 1, "{decided:#?}");
    assert_eq!(
        decided[0]
            .approval
            .as_ref()
            .and_then(|a| a.approver.as_deref()),
        Some("grace (webhook)")
    );
    // No Slack here: its endpoint is not served.
    let (status, _) =
        slack_callback(&warden, SIGNING_SECRET, now, b"payload=%7B%7D".to_vec()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn failed_deliveries_are_retried_then_counted_and_the_call_stays_decidable() {
    let (upstream, demo) = demo_upstream().await;
    // Slack always fails; the webhook receiver fails twice, then takes it.
    let down = Receiver::start(usize::MAX).await;
    let flaky = Receiver::start(2).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = approvals(tmp.path(), Duration::from_millis(300));
    config.slack = Some(slack(&down));
    config.webhook = Some(webhook(&flaky));
    let warden = WardenBuilder::new(&upstream)
        .policy(POLICY)
        .approvals(config)
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    // Answered after the budget, whatever the channels do.
    let pending = warden_result(&agent.call(1, "send_invoice", invoice(300)).await);
    assert_eq!(
        pending["structuredContent"]["warden"]["decision"],
        "pending"
    );
    let id = pending["structuredContent"]["approval"]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let attempts = flaky.wait_for("/warden", 3).await;
    for post in &attempts {
        let timestamp = post.headers["x-warden-timestamp"].to_str().expect("ts");
        assert_eq!(
            post.headers["x-warden-signature"],
            warden_signature(WEBHOOK_SECRET, timestamp.parse().expect("ts"), &post.body).as_str(),
            "every attempt is signed"
        );
    }
    until("the webhook counted delivered", async || {
        sample(
            &warden,
            "warden_approval_notifications_total",
            "webhook",
            "delivered",
        )
    })
    .await;
    until("Slack counted failed", async || {
        sample(
            &warden,
            "warden_approval_notifications_total",
            "slack",
            "failed",
        )
    })
    .await;
    assert_eq!(down.to("/services/").len(), 3, "three attempts at Slack");
    assert_eq!(flaky.to("/warden").len(), 3, "told once delivered");

    // Still held, and still decided through the API.
    assert_eq!(status_of(&warden, &id).await, "pending");
    let (status, _) = admin(
        &warden,
        http::Method::POST,
        &format!("/approvals/{id}/approve"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let ran = warden_result(&agent.call(2, "send_invoice", invoice(300)).await);
    assert_eq!(ran["isError"], Value::Null, "{ran}");
    assert_eq!(demo.invoices_sent(), 1);
}
