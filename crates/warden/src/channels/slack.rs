//! Slack: the message approvers get (Block Kit, with Approve and Reject
//! buttons), and what Slack sends back when one is clicked.
//!
//! Everything a message shows that the agent wrote (the tool's
//! arguments, the rationale) is escaped for Slack's `mrkdwn` (`&`, `<`,
//! `>`), so an agent cannot make it ping a channel or show a disguised
//! link, and cut to Slack's limits, so a long call cannot make Slack
//! refuse the message.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Value, json};
use warden_approvals::{Approval, Status};

/// The buttons' `action_id`s.
pub const APPROVE_ACTION: &str = "warden_approve";
/// See [`APPROVE_ACTION`].
pub const REJECT_ACTION: &str = "warden_reject";

/// Slack's limit on a header block's text.
const HEADER_MAX: usize = 150;
/// Slack's limit on a section's text.
const SECTION_MAX: usize = 3000;
/// Slack's limit on a section field's text.
const FIELD_MAX: usize = 2000;
/// What of a section the arguments may take (the rest: title, fences,
/// the truncation note).
const ARGUMENTS_MAX: usize = SECTION_MAX - 200;

/// A button click, as read from Slack's `block_actions` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    /// The Slack member who clicked.
    pub user: String,
    /// Approve or reject.
    pub approve: bool,
    /// The approval (the button's `value`).
    pub approval: String,
    /// Where Slack takes follow-up messages for this click.
    pub response_url: Option<String>,
}

/// Why a payload is not a click on Warden's buttons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// No `payload=` form field, or not JSON.
    #[error("the body must be a form with payload=<JSON>, as Slack sends interactions")]
    Unreadable,
    /// Another kind of interaction.
    #[error("only block_actions interactions are taken (got {kind})")]
    NotBlockActions {
        /// The payload's `type`.
        kind: String,
    },
    /// No action Warden knows.
    #[error("no warden_approve or warden_reject action with an approval id")]
    NoAction,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: Option<User>,
    #[serde(default)]
    actions: Vec<Action>,
    response_url: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: String,
}

#[derive(Deserialize)]
struct Action {
    action_id: String,
    value: Option<String>,
}

/// Escape `text` for `mrkdwn` and cut it to `max` characters (after
/// escaping, never inside an entity). Returns the text and whether it was
/// cut.
pub fn escape_within(text: &str, max: usize) -> (String, bool) {
    let escape = |c: char| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    };
    let width = |c: char| escape(c).map_or(1, str::len);
    if text.chars().map(width).sum::<usize>() <= max {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match escape(c) {
                Some(entity) => out.push_str(entity),
                None => out.push(c),
            }
        }
        return (out, false);
    }
    let mut out = String::with_capacity(max);
    let mut used = 0;
    for c in text.chars() {
        // One character is kept for the ellipsis.
        if used + width(c) > max.saturating_sub(1) {
            break;
        }
        match escape(c) {
            Some(entity) => out.push_str(entity),
            None => out.push(c),
        }
        used += width(c);
    }
    out.push('\u{2026}');
    (out, true)
}

fn plain(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('\u{2026}');
    cut
}

fn expiry(expires_ms: i64) -> String {
    let seconds = expires_ms.div_euclid(1000);
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    // Slack shows the date in each reader's time zone; the fallback is UTC.
    format!(
        "<!date^{seconds}^{{date_short_pretty}} {{time}}|{}>",
        humantime::format_rfc3339_seconds(at)
    )
}

fn field(title: &str, value: &str) -> Value {
    let (value, _) = escape_within(value, FIELD_MAX - title.len() - 8);
    json!({"type": "mrkdwn", "text": format!("*{title}*\n{value}")})
}

/// The message for `approval`: what is asked, and the buttons while it is
/// pending; once decided (`outcome`, mrkdwn made by [`outcome()`]), the
/// same message with the outcome in place of the buttons (it replaces the
/// original).
pub fn message(approval: &Approval, outcome: Option<&str>) -> Value {
    let call = &approval.call;
    let title = plain(&format!("Approval needed: {}", call.tool), HEADER_MAX);
    let fields = vec![
        field("Agent", &call.principal_agent),
        field(
            "On behalf of",
            call.principal_user.as_deref().unwrap_or("(nobody)"),
        ),
        field(
            "Route",
            &format!("{} \u{2192} {}", call.route, call.upstream),
        ),
        field("Approvals needed", &call.required.to_string()),
    ];
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title, "emoji": false}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(rationale) = &call.rationale {
        let (text, _) = escape_within(rationale, SECTION_MAX - 20);
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Rationale*\n{text}")}}));
    }
    // Pretty-printed when it parses (it is the redacted, canonical JSON).
    let shown = serde_json::from_str::<Value>(&call.arguments_shown)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| call.arguments_shown.clone());
    // A fence inside would end the code block early.
    let shown = shown.replace("```", "`\u{200b}`\u{200b}`");
    let (arguments, cut) = escape_within(&shown, ARGUMENTS_MAX);
    let note = if cut {
        format!(
            "\n_Cut to fit Slack: the whole (redacted) arguments are in Warden's API, approval {}._",
            approval.id
        )
    } else {
        String::new()
    };
    blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
        "text": format!("*Arguments (redacted)*\n```{arguments}```{note}")}}));
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
        "text": format!("Approval `{}` \u{b7} expires {}", approval.id, expiry(call.expires_ms))}]}));
    match outcome {
        None => blocks.push(
            json!({"type": "actions", "block_id": "warden_approval", "elements": [
                {"type": "button", "action_id": APPROVE_ACTION, "style": "primary",
                 "text": {"type": "plain_text", "text": "Approve"}, "value": approval.id},
                {"type": "button", "action_id": REJECT_ACTION, "style": "danger",
                 "text": {"type": "plain_text", "text": "Reject"}, "value": approval.id},
            ]}),
        ),
        Some(outcome) => {
            // Made by `outcome`, names escaped there: cut, not escaped again.
            let text = plain(outcome, SECTION_MAX);
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
        }
    }
    // The notification's text, where blocks are not shown: mrkdwn too, so
    // a tool named `<!channel>` must not ping anyone.
    let (agent, _) = escape_within(&call.principal_agent, 200);
    let (tool, _) = escape_within(&call.tool, 200);
    json!({
        "text": plain(&format!("Approval needed: {tool} by {agent} (approval {})", approval.id), 1000),
        "blocks": blocks,
    })
}

/// What an approval's status says after a vote from Slack.
pub fn outcome(approval: &Approval, approver: &str) -> String {
    // Names from an identity provider are anyone's to choose.
    let (approver, _) = escape_within(approver, 200);
    match approval.status {
        Status::Approved => format!("\u{2705} *Approved* in Slack by {approver}."),
        Status::Rejected => format!("\u{274c} *Rejected* in Slack by {approver}."),
        Status::Pending => format!(
            "Approval recorded for {approver}: {} of {} needed so far.",
            approval
                .votes
                .iter()
                .filter(|v| v.verdict == warden_approvals::Verdict::Approve)
                .count(),
            approval.call.required
        ),
        other => format!("This approval is {other}."),
    }
}

/// The ephemeral answer (only the clicker sees it).
pub fn ephemeral(text: &str) -> Value {
    json!({"response_type": "ephemeral", "replace_original": false, "text": plain(text, 3000)})
}

/// `application/x-www-form-urlencoded`: the value of `key`, decoded.
pub fn form_value(body: &[u8], key: &str) -> Option<String> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let mut halves = pair.splitn(2, |b| *b == b'=');
        let name = halves.next()?;
        let value = halves.next().unwrap_or_default();
        (decode(name)? == key).then(|| decode(value)).flatten()
    })
}

fn decode(text: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Read a click on Warden's buttons from an interaction's form body.
pub fn click(body: &[u8]) -> Result<Click, PayloadError> {
    let payload = form_value(body, "payload").ok_or(PayloadError::Unreadable)?;
    let payload: Payload = serde_json::from_str(&payload).map_err(|_| PayloadError::Unreadable)?;
    if payload.kind != "block_actions" {
        return Err(PayloadError::NotBlockActions {
            kind: plain(&payload.kind, 40),
        });
    }
    let user = payload.user.ok_or(PayloadError::Unreadable)?.id;
    let (approve, approval) = payload
        .actions
        .iter()
        .find_map(|action| {
            let approve = match action.action_id.as_str() {
                APPROVE_ACTION => true,
                REJECT_ACTION => false,
                _ => return None,
            };
            let value = action.value.as_deref()?.trim();
            (!value.is_empty()).then(|| (approve, value.to_owned()))
        })
        .ok_or(PayloadError::NoAction)?;
    Ok(Click {
        user,
        approve,
        approval,
        response_url: payload.response_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_approvals::NewApproval;

    fn approval(arguments: &str, rationale: Option<&str>) -> Approval {
        Approval {
            id: "0193a1c2-7d4e-7b1a-9f00-3c5d2e8a4b61".into(),
            call: NewApproval {
                route: "/mcp".into(),
                upstream: "https://billing.example/mcp".into(),
                tool: "send_invoice".into(),
                arguments: arguments.into(),
                arguments_shown: arguments.into(),
                rationale: rationale.map(str::to_owned),
                agent_session: "s".into(),
                principal_agent: "billing-bot".into(),
                principal_user: Some("ada@example.com".into()),
                policy_hash: "h".into(),
                required: 1,
                created_ms: 1_764_590_400_000,
                expires_ms: 1_764_592_200_000,
            },
            arguments_digest: "d".into(),
            status: Status::Pending,
            reason: None,
            decided_ms: None,
            executed_ms: None,
            votes: Vec::new(),
        }
    }

    fn texts(message: &Value) -> String {
        message.to_string()
    }

    #[test]
    fn the_message_shows_the_call_and_carries_the_id_in_both_buttons() {
        let held = approval(
            r#"{"amount_cents":500,"customer_id":1}"#,
            Some("The user asked."),
        );
        let message = message(&held, None);
        let blocks = message["blocks"].as_array().expect("blocks");
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["text"], "Approval needed: send_invoice");
        let all = texts(&message);
        for shown in [
            "billing-bot",
            "ada@example.com",
            "The user asked.",
            "amount_cents",
            "<!date^1764592200^",
            "2025-12-01T12:30:00Z",
        ] {
            assert!(all.contains(shown), "{shown} in {all}");
        }
        let actions = blocks.last().expect("actions");
        assert_eq!(actions["type"], "actions");
        let buttons = actions["elements"].as_array().expect("buttons");
        assert_eq!(buttons[0]["action_id"], APPROVE_ACTION);
        assert_eq!(buttons[0]["style"], "primary");
        assert_eq!(buttons[1]["action_id"], REJECT_ACTION);
        assert_eq!(buttons[1]["style"], "danger");
        for button in buttons {
            assert_eq!(button["value"], held.id);
        }
        // Decided: the outcome replaces the buttons.
        let decided = super::message(&held, Some("Approved by grace"));
        let last = decided["blocks"]
            .as_array()
            .expect("blocks")
            .last()
            .cloned();
        assert_eq!(last.expect("block")["type"], "section");
        assert!(!texts(&decided).contains(APPROVE_ACTION));
    }

    #[test]
    fn tool_and_approver_names_cannot_mention_anyone() {
        let mut held = approval("{}", None);
        held.call.tool = "<!here>".into();
        let message = message(&held, None);
        // The notification text is mrkdwn; the header is plain text.
        let text = message["text"].as_str().expect("text");
        assert!(
            text.starts_with("Approval needed: &lt;!here&gt; by billing-bot"),
            "{text}"
        );
        assert_eq!(message["blocks"][0]["text"]["type"], "plain_text");
        held.status = Status::Approved;
        let said = outcome(&held, "<!channel> & co");
        assert!(!said.contains("<!channel>"), "{said}");
        assert!(said.contains("&lt;!channel&gt; &amp; co"), "{said}");
        // The message replaced with it shows it escaped once.
        let replaced = super::message(&held, Some(&said)).to_string();
        assert!(replaced.contains("&lt;!channel&gt; &amp; co"), "{replaced}");
        assert!(!replaced.contains("&amp;lt;"), "escaped twice: {replaced}");
    }

    #[test]
    fn what_the_agent_wrote_is_escaped_and_cut_to_slacks_limits() {
        let long = "x".repeat(10_000);
        let held = approval(
            &format!(r#"{{"body":"<!channel> & ``` <https://evil.example|bank>","pad":"{long}"}}"#),
            Some(&format!("<@U0ADMIN> please {long}")),
        );
        let message = message(&held, None);
        let all = texts(&message);
        assert!(!all.contains("<!channel>"), "{all}");
        assert!(!all.contains("<@U0ADMIN>"));
        assert!(!all.contains("<https://evil"));
        assert!(all.contains("&lt;!channel&gt; &amp;"));
        for block in message["blocks"].as_array().expect("blocks") {
            if let Some(text) = block["text"]["text"].as_str() {
                let limit = if block["type"] == "header" {
                    HEADER_MAX
                } else {
                    SECTION_MAX
                };
                assert!(
                    text.chars().count() <= limit,
                    "{} chars",
                    text.chars().count()
                );
            }
        }
        let arguments = message["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .filter_map(|b| b["text"]["text"].as_str())
            .find(|t| t.starts_with("*Arguments"))
            .expect("arguments")
            .to_owned();
        // One fence opens, one closes: the agent's fence cannot close it.
        assert_eq!(arguments.matches("```").count(), 2, "{arguments}");
        assert!(arguments.contains("Cut to fit Slack"));
        let mut header = approval("{}", None);
        header.call.tool = "t".repeat(500);
        let title = super::message(&header, None)["blocks"][0]["text"]["text"]
            .as_str()
            .expect("title")
            .chars()
            .count();
        assert!(title <= HEADER_MAX);
    }

    #[test]
    fn escaping_never_cuts_an_entity() {
        let (text, cut) = escape_within("<<<<", 9);
        assert!(cut);
        assert_eq!(text, "&lt;&lt;\u{2026}");
        assert_eq!(escape_within("a<b", 10), ("a&lt;b".to_owned(), false));
    }

    /// A `block_actions` payload as Slack sends it (trimmed to what a
    /// click on a button carries).
    fn slack_form(payload: &Value) -> Vec<u8> {
        let encoded: String = payload
            .to_string()
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        format!("payload={encoded}").into_bytes()
    }

    #[test]
    fn a_click_is_read_from_slacks_form_body() {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": "U012ABCDEF", "username": "grace", "team_id": "T0001"},
            "api_app_id": "A0001", "token": "legacy", "trigger_id": "1.2.3",
            "team": {"id": "T0001", "domain": "example"},
            "container": {"type": "message", "message_ts": "1.2", "channel_id": "C1"},
            "channel": {"id": "C1", "name": "approvals"},
            "response_url": "https://hooks.slack.com/actions/T0001/1/abc",
            "actions": [{"action_id": REJECT_ACTION, "block_id": "warden_approval",
                "text": {"type": "plain_text", "text": "Reject"}, "value": "0193-id",
                "style": "danger", "type": "button", "action_ts": "1.3"}]
        });
        let click = click(&slack_form(&payload)).expect("a click");
        assert_eq!(
            click,
            Click {
                user: "U012ABCDEF".into(),
                approve: false,
                approval: "0193-id".into(),
                response_url: Some("https://hooks.slack.com/actions/T0001/1/abc".into()),
            }
        );
        assert_eq!(
            super::click(b"payload=%7Bnot"),
            Err(PayloadError::Unreadable)
        );
        assert_eq!(super::click(b"other=1"), Err(PayloadError::Unreadable));
        assert_eq!(
            super::click(&slack_form(
                &json!({"type": "view_submission", "user": {"id": "U1"}})
            )),
            Err(PayloadError::NotBlockActions {
                kind: "view_submission".into()
            })
        );
        assert_eq!(
            super::click(&slack_form(
                &json!({"type": "block_actions", "user": {"id": "U1"},
                "actions": [{"action_id": "something_else", "value": "x"}]})
            )),
            Err(PayloadError::NoAction)
        );
        assert_eq!(
            form_value(b"a=1&payload=x+y%21", "payload").as_deref(),
            Some("x y!")
        );
    }
}
