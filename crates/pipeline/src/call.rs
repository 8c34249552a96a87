//! The message the pipeline carries and the outcomes it can have.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use serde_json::value::RawValue;
use warden_policy::{DenyReason, ToolFacts};
use warden_protocol::mcp;

use crate::facts::{CallMeta, Principal};
use crate::tap::ReplyTap;

/// One `tools/call` request on its way to the upstream.
#[derive(Debug)]
pub struct ToolCall<C> {
    /// The route (listener path) it arrived on.
    pub route: Arc<str>,
    /// The agent session it belongs to (see `docs/sessions.md`).
    pub session: Arc<str>,
    /// Warden's MCP session id (`None` in the stateless revision).
    pub mcp_session: Option<Arc<str>>,
    /// The JSON-RPC `id`, as JSON text.
    pub id: Arc<str>,
    /// The tool the agent asked for.
    pub tool: String,
    /// What the upstream's catalogue says about the tool (`None`: not listed).
    pub facts: Option<ToolFacts>,
    /// The `arguments` object as the strict parser read it: the value the
    /// upstream will read (`None` when the call sent none).
    pub arguments: Option<Box<RawValue>>,
    /// Who makes the call.
    pub principal: Arc<Principal>,
    /// Whether the call asks for a dry run (`dryRun` is already off
    /// `arguments` and `message`).
    pub dry_run: crate::dry_run::DryRun,
    /// The tool's `inputSchema` as the upstream listed it (JSON text).
    pub input_schema: Option<Arc<str>>,
    /// `Some` when the call runs as a task Warden answers for (the agent
    /// was answered at once and polls): a hold waits for the decision or
    /// the expiry, never answers "pending", and withdraws its approval
    /// when the agent cancels the task, even before the approval exists.
    pub as_task: Option<TaskCancel>,
    /// The user the agent acts for confirmed this call in their own client
    /// (a `confirm`-tier call Warden asked about through elicitation).
    pub confirmed: bool,
    /// Set by the hold layer when the call runs on an approval: what the
    /// result's `_meta["warden/approval"]` tells the agent.
    pub approval_note: ApprovalNote,
    /// What the call says about itself (model, conversation, trace...).
    pub meta: CallMeta,
    /// Where layers ask to be told what became of the call once forwarded.
    pub tap: ReplyTap,
    /// The message exactly as it will reach the upstream.
    pub message: Bytes,
    /// What the transport's forwarder needs (upstream session, headers).
    pub context: C,
}

/// Who approved a held call, for the result's `_meta` (shared between the
/// layer that knows and the transport that writes the reply). The default
/// takes no note and costs nothing: the transport makes a [`ApprovalNote::slot`]
/// only for a call it expects to be held.
#[derive(Debug, Clone, Default)]
pub struct ApprovalNote(Option<Arc<std::sync::OnceLock<serde_json::Value>>>);

impl ApprovalNote {
    /// `_meta` key of the note on an approved call's result.
    pub const META_KEY: &'static str = "warden/approval";

    /// A note that can be taken.
    pub fn slot() -> ApprovalNote {
        ApprovalNote(Some(Arc::default()))
    }

    /// Note the approval (the first note stays; none without a slot).
    pub fn set(&self, note: serde_json::Value) {
        if let Some(slot) = &self.0 {
            let _ = slot.set(note);
        }
    }

    /// The note, if the call ran on an approval.
    pub fn get(&self) -> Option<&serde_json::Value> {
        self.0.as_ref().and_then(|slot| slot.get())
    }
}

/// Whether the agent has cancelled the task a call runs as
/// (`tasks/cancel`): the call's half of [`task_cancel`].
#[derive(Debug, Clone)]
pub struct TaskCancel(tokio::sync::watch::Receiver<bool>);

/// Cancels the call a task runs: the task's half of [`task_cancel`].
#[derive(Debug)]
pub struct TaskCanceller(tokio::sync::watch::Sender<bool>);

/// A task's cancellation: the task keeps the [`TaskCanceller`], its call
/// carries the [`TaskCancel`]. A cancel is seen by the call whenever it
/// looks, so one that comes before the call is held is not lost.
pub fn task_cancel() -> (TaskCanceller, TaskCancel) {
    let (sender, receiver) = tokio::sync::watch::channel(false);
    (TaskCanceller(sender), TaskCancel(receiver))
}

/// What became of a call.
#[derive(Debug)]
pub enum ToolOutcome<R> {
    /// The upstream received the call; this is its reply.
    Forwarded(R),
    /// A layer answered instead of the upstream.
    Refused(Refusal),
}

/// A refusal, or another answer of Warden's own instead of the upstream's
/// (a dry run): the decision, its machine-readable reason and a sentence
/// the model can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The decision that was taken (`deny`, `dry-run`, later `rejected`…).
    pub decision: &'static str,
    /// A stable reason code, e.g. `not-read-only`.
    pub reason: &'static str,
    /// The tool that was refused.
    pub tool: String,
    /// The sentence shown to the model.
    pub message: String,
    /// Whether the result is an error (`true` for every refusal; a valid
    /// dry run is not one).
    pub is_error: bool,
    /// More for `structuredContent`, beside `warden` (a dry run's payload).
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Refusal {
    /// The policy's refusal of `tool` for `reason`.
    pub fn denied(tool: &str, reason: DenyReason) -> Refusal {
        Refusal {
            decision: "deny",
            reason: reason.code(),
            tool: tool.to_owned(),
            message: reason.explain(tool),
            is_error: true,
            details: None,
        }
    }

    /// The refusal of a call whose record the audit trail cannot take: a
    /// write is never run unrecorded.
    pub fn audit_unavailable(tool: &str) -> Refusal {
        Refusal {
            decision: "deny",
            reason: "audit-unavailable",
            tool: tool.to_owned(),
            message: format!(
                "Warden refused the call to '{tool}': the audit trail is unavailable, so the \
                 call cannot be recorded and was not run. Retry later; if this persists, \
                 ask an operator to check Warden's audit store."
            ),
            is_error: true,
            details: None,
        }
    }

    /// A call over a cap ([`warden_limits::Tripped`]): the limit's fields
    /// ride in `structuredContent.warden`, beside the decision.
    pub fn limited(tool: &str, tripped: &warden_limits::Tripped) -> Refusal {
        let mut details = serde_json::Map::new();
        details.insert("warden".into(), serde_json::Value::Object(tripped.fields()));
        Refusal {
            decision: "limited",
            reason: tripped.code(),
            tool: tool.to_owned(),
            message: tripped.explain(),
            is_error: true,
            details: Some(details),
        }
    }

    /// The refusal as a JSON-RPC response carrying an `isError` tool result,
    /// shaped for the protocol `revision` the call was made in. A `warden`
    /// object in [`Refusal::details`] adds its fields to Warden's own.
    pub fn to_response(&self, id_json: &str, revision: &str) -> Bytes {
        let mut structured = self.details.clone().unwrap_or_default();
        let mut warden = match structured.remove("warden") {
            Some(serde_json::Value::Object(fields)) => fields,
            _ => serde_json::Map::new(),
        };
        warden.insert("decision".into(), json!(self.decision));
        warden.insert("reason".into(), json!(self.reason));
        warden.insert("tool".into(), json!(self.tool));
        structured.insert("warden".into(), serde_json::Value::Object(warden));
        mcp::tool_result_response(
            id_json,
            &self.message,
            serde_json::Value::Object(structured),
            self.is_error,
            revision,
        )
    }
}

// === impl TaskCanceller ===

impl TaskCanceller {
    /// Cancel the task's call (once is enough; again changes nothing).
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

// === impl TaskCancel ===

impl TaskCancel {
    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the task is cancelled (at once if it already is;
    /// never if the task ends without being cancelled).
    pub async fn cancelled(&mut self) {
        if self.0.wait_for(|cancelled| *cancelled).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_cancel_is_seen_whenever_the_call_looks() {
        let (canceller, mut cancel) = task_cancel();
        assert!(!cancel.is_cancelled());
        // Cancelled before the call waits: the wait ends at once.
        canceller.cancel();
        assert!(cancel.is_cancelled());
        tokio::time::timeout(std::time::Duration::from_secs(1), cancel.cancelled())
            .await
            .expect("seen at once");
        // A task forgotten uncancelled never cancels its call.
        let (canceller, mut cancel) = task_cancel();
        drop(canceller);
        assert!(!cancel.is_cancelled());
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), cancel.cancelled()).await;
        assert!(waited.is_err(), "not cancelled");
    }

    #[test]
    fn a_refusal_is_a_structured_tool_result() {
        let refusal = Refusal::denied("send_invoice", DenyReason::DeniedByRule);
        let body = refusal.to_response("12", mcp::DEFAULT_PROTOCOL_VERSION);
        let value: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(value["id"], 12);
        assert_eq!(value["result"]["isError"], true);
        let warden = &value["result"]["structuredContent"]["warden"];
        assert_eq!(warden["decision"], "deny");
        assert_eq!(warden["reason"], "denied-by-policy");
        assert_eq!(warden["tool"], "send_invoice");
        assert!(
            value["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("'send_invoice'"))
        );
    }
}
