//! Approval holds: a call to an `approve`-tier tool waits for a human.
//!
//! The call is staged in the approval queue (`warden_approvals`), bound to
//! its exact arguments (the SHA-256 of their canonical form), and the
//! agent's request waits for a decision, up to the route's hold budget
//! (default 45 s, under common client timeouts). Then:
//!
//! - approved: the call runs, once (the store hands the run to exactly one
//!   request, whatever the replicas);
//! - rejected, expired or withdrawn: an `isError` result saying so, naming
//!   the approver and the reason;
//! - still pending after the budget (for a call without a progress token;
//!   one with a token is streamed progress notifications and waits until a
//!   decision or the expiry): an `isError` result with the approval's id; the same
//!   call again (same agent session, tool and canonical arguments) attaches
//!   to the same approval, so approvers are never asked twice, and gets the
//!   outcome once decided.
//!
//! A request dropped while it waits (the agent hung up) marks its approval
//! `abandoned`: it is never run later behind anyone's back. A call that
//! runs as a Warden task is withdrawn when its task is cancelled, whether
//! the cancel comes before the approval is staged (nothing is staged),
//! while it waits, or once it is approved but not yet run. Decisions taken
//! in this process wake the waiting request at once ([`Wakeups`]); so do
//! another replica's when the store reports them (PostgreSQL's
//! `LISTEN/NOTIFY`, forwarded into [`Wakeups::wake`] by the binary). The
//! request also polls the store every 500 ms, so a decision is seen
//! whatever the store and even when a notification is lost.
//!
//! It sits after dry-run (a preview needs no human) and before the
//! upstream.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tower::{Layer, Service};
use warden_approvals::{Approval, NewApproval, Status, Store};
use warden_policy::{Decision, Tier};

use crate::call::{Refusal, TaskCancel, ToolCall, ToolOutcome};
use crate::policy_gate::SharedPolicy;

/// How often a waiting request looks at the store for a decision taken
/// elsewhere (another replica, the CLI) that no wakeup reported: the
/// fallback of every store.
const POLL: Duration = Duration::from_millis(500);

/// Wakes the requests waiting on an approval when it is decided here.
#[derive(Debug, Default)]
pub struct Wakeups {
    waiting: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// (agent session, JSON-RPC id of the held call) → approval: what a
    /// `notifications/cancelled` withdraws.
    held: Mutex<HashMap<(String, String), String>>,
}

/// What the hold layer needs.
pub struct HoldSettings {
    /// The queue.
    pub store: Store,
    /// Decisions taken in this process.
    pub wakeups: Arc<Wakeups>,
    /// The route.
    pub route: Arc<str>,
    /// The upstream, as records name it.
    pub upstream: Arc<str>,
    /// How long a request waits before it is answered "pending".
    pub budget: Duration,
    /// Where requests, expiries and abandonments are recorded.
    pub audit: Option<warden_audit::AuditLog>,
    /// The HMAC key of the policy's `hash` redaction rules, if any.
    pub redaction_key: Option<Vec<u8>>,
    /// Told of each new approval once it is staged and recorded (the
    /// approvers' channels: Slack, a webhook). It must return at once:
    /// it runs on the held request's path.
    pub on_requested: Option<OnRequested>,
}

/// What [`HoldSettings::on_requested`] calls with each new approval.
pub type OnRequested = Arc<dyn Fn(&Approval) + Send + Sync>;

impl HoldSettings {
    /// Put an approval event on the audit trail.
    fn record(&self, kind: warden_audit::Kind, approval: &Approval, decision: &str) {
        let Some(audit) = &self.audit else { return };
        audit.record(approval_record(audit, kind, approval, decision, None));
    }
}

/// The audit record of an event in `approval`'s life (`kind`, with its
/// `decision`: `pending`, `approved`, `rejected`, `expired`, `cancelled`,
/// `abandoned`), naming the `approver` who decided it, when one did: the
/// one shape every place that records approvals (the hold, the admin API,
/// the sweeps, a withdrawal) writes.
pub fn approval_record(
    audit: &warden_audit::AuditLog,
    kind: warden_audit::Kind,
    approval: &Approval,
    decision: &str,
    approver: Option<String>,
) -> warden_audit::Record {
    let mut record = audit.new_record(kind);
    record.route = Some(approval.call.route.as_str().into());
    record.upstream = Some(approval.call.upstream.as_str().into());
    record.tool = Some(approval.call.tool.clone());
    record.agent_session = Some(approval.call.agent_session.as_str().into());
    record.decision = Some(decision.to_owned().into());
    record.reason = approval.reason.clone().map(Into::into);
    record.principal = Some(warden_audit::record::PrincipalField {
        agent: approval.call.principal_agent.clone(),
        user: approval.call.principal_user.clone(),
    });
    record.approval = Some(warden_audit::record::ApprovalField {
        id: approval.id.clone(),
        approver,
    });
    record
}

/// Builds [`HoldGate`]s.
#[derive(Clone)]
pub struct HoldLayer {
    policy: SharedPolicy,
    settings: Option<Arc<HoldSettings>>,
}

/// Holds `approve`-tier calls; passes every other call on.
#[derive(Clone)]
pub struct HoldGate<S> {
    inner: S,
    policy: SharedPolicy,
    settings: Option<Arc<HoldSettings>>,
}

// === impl Wakeups ===

impl Wakeups {
    /// Wake whoever waits on approval `id` (a decision here, or one another
    /// replica's store reported).
    pub fn wake(&self, id: &str) {
        if let Some(notify) = self.lock().get(id) {
            notify.notify_waiters();
        }
    }

    /// The approval the call `request_id` of `agent_session` waits on, if
    /// it waits on one now.
    pub fn held_by(&self, agent_session: &str, request_id: &str) -> Option<String> {
        self.held_calls()
            .get(&(agent_session.to_owned(), request_id.to_owned()))
            .cloned()
    }

    fn held_calls(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), String>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn subscribe(&self, id: &str) -> Arc<tokio::sync::Notify> {
        self.lock().entry(id.to_owned()).or_default().clone()
    }

    fn forget(&self, id: &str) {
        let mut waiting = self.lock();
        if waiting.get(id).is_some_and(|n| Arc::strong_count(n) <= 1) {
            waiting.remove(id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Notify>>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// === impl HoldLayer ===

impl HoldLayer {
    /// Holds the calls `policy` sets to `approve`, with `settings`; with
    /// none (no approval queue configured) such calls are refused: they
    /// must never run unapproved.
    pub fn new(policy: SharedPolicy, settings: Option<Arc<HoldSettings>>) -> HoldLayer {
        HoldLayer { policy, settings }
    }
}

impl<S> Layer<S> for HoldLayer {
    type Service = HoldGate<S>;

    fn layer(&self, inner: S) -> HoldGate<S> {
        HoldGate {
            inner,
            policy: self.policy.clone(),
            settings: self.settings.clone(),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn answer(
    tool: &str,
    decision: &'static str,
    reason: &'static str,
    message: String,
    approval: Option<&Approval>,
) -> Refusal {
    let details = approval.map(|a| {
        let mut details = serde_json::Map::new();
        details.insert(
            "approval".into(),
            json!({
                "id": a.id,
                "status": a.status.as_str(),
                "expires_ms": a.call.expires_ms,
                "approvers": a.votes.iter().map(|v| v.approver.clone()).collect::<Vec<_>>(),
            }),
        );
        details
    });
    Refusal {
        decision,
        reason,
        tool: tool.to_owned(),
        message,
        is_error: true,
        details,
    }
}

/// Marks the approval abandoned if the request waiting on it is dropped
/// before it ends.
struct AbandonOnDrop {
    settings: Arc<HoldSettings>,
    id: Option<String>,
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let settings = self.settings.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Ok(true) = settings.store.end(&id, Status::Abandoned, now_ms()).await {
                        tracing::info!(approval = %id, "The agent hung up while its call was held; the approval is abandoned.");
                        if let Ok(approval) = settings.store.get(&id).await {
                            settings.record(warden_audit::Kind::ApprovalDecided, &approval, "abandoned");
                        }
                    }
                });
            }
        }
    }
}

// === impl HoldGate ===

impl<S, C, R> Service<ToolCall<C>> for HoldGate<S>
where
    S: Service<ToolCall<C>, Response = ToolOutcome<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    C: Send + 'static,
    R: Send + 'static,
{
    type Response = ToolOutcome<R>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<ToolOutcome<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ToolCall<C>) -> Self::Future {
        // The service that was made ready is the one that must be called.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let gate = gate_of(&call, &self.policy);
        if gate == Gate::NeedsConfirmation {
            let tool = call.tool.clone();
            return Box::pin(async move {
                Ok(ToolOutcome::Refused(answer(
                    &tool,
                    "deny",
                    "confirmation-required",
                    format!(
                        "Warden refused the call to '{tool}': the user you act for must confirm it \
                         in their own client, and this client cannot be asked (it declared no \
                         elicitation). It was not run; ask the user to run it themselves."
                    ),
                    None,
                )))
            });
        }
        let held = gate == Gate::Hold;
        let Some(settings) = self.settings.clone() else {
            return Box::pin(async move {
                if held {
                    let tool = call.tool.clone();
                    return Ok(ToolOutcome::Refused(answer(
                        &tool,
                        "deny",
                        "no-approval-queue",
                        format!(
                            "Warden refused the call to '{tool}': it needs a human's approval and \
                             this Warden has no approval queue configured. Retrying will not help; \
                             ask an operator."
                        ),
                        None,
                    )));
                }
                inner.call(call).await
            });
        };
        let policy = self.policy.load_full();
        Box::pin(async move {
            if !held {
                return inner.call(call).await;
            }
            let asked = Asked::of(&call);
            match hold(&settings, &policy, &asked).await {
                Ok(Held::Run(note)) => {
                    call.approval_note.set(note);
                    inner.call(call).await
                }
                Ok(Held::Answer(refusal)) => Ok(ToolOutcome::Refused(refusal)),
                Err(err) => {
                    tracing::error!(tool = %call.tool, error = %err, "Approval queue failed; the held call is refused.");
                    let tool = call.tool.clone();
                    Ok(ToolOutcome::Refused(answer(
                        &tool,
                        "deny",
                        "approval-queue-unavailable",
                        format!(
                            "Warden refused the call to '{tool}': it needs a human's approval and \
                             the approval queue is unavailable, so it was not run. Retry later."
                        ),
                        None,
                    )))
                }
            }
        })
    }
}

/// What the hold layer does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Passes on (not held, or a `confirm`-tier call the user confirmed).
    Pass,
    /// Held for approval.
    Hold,
    /// A `confirm`-tier call nobody could confirm, whose rule falls back
    /// to a refusal.
    NeedsConfirmation,
}

fn gate_of<C>(call: &ToolCall<C>, policy: &SharedPolicy) -> Gate {
    if call.dry_run != crate::dry_run::DryRun::No {
        return Gate::Pass;
    }
    let policy = policy.load();
    match policy.decide(
        &call.tool,
        call.facts.as_ref(),
        &crate::caller_of(&call.principal),
    ) {
        Decision::Allow {
            tier: Tier::Approve,
        } => Gate::Hold,
        Decision::Allow {
            tier: Tier::Confirm,
        } if !call.confirmed => match policy.hold_of(&call.tool).fallback {
            warden_policy::ConfirmFallback::Approve => Gate::Hold,
            warden_policy::ConfirmFallback::Deny => Gate::NeedsConfirmation,
        },
        _ => Gate::Pass,
    }
}

enum Held {
    /// Run it; the note says who approved it.
    Run(Value),
    Answer(Refusal),
}

/// The arguments as approvers see them: redacted by the policy's
/// `redact:` rules, as the audit trail records them (the full arguments
/// stay in the queue, for the run).
fn shown_arguments(
    settings: &HoldSettings,
    policy: &warden_policy::Policy,
    tool: &str,
    arguments: &Value,
) -> String {
    let canonical = warden_approvals::canonical(arguments);
    let redactor = match warden_audit::redact::Redactor::new(
        policy.redaction(),
        settings.redaction_key.clone(),
    ) {
        Ok(redactor) => redactor,
        // Unreadable rules show nothing rather than everything.
        Err(_) => return "null".to_owned(),
    };
    if redactor.is_noop_for(tool) {
        return canonical;
    }
    let Ok(raw) = serde_json::value::RawValue::from_string(canonical) else {
        return "null".to_owned();
    };
    redactor
        .redact(tool, Some(&raw), None)
        .arguments
        .map_or_else(|| "null".to_owned(), |shown| shown.get().to_owned())
}

/// Time until `approval` expires (plus a moment, so the loop sees it expire).
fn current_left(approval: &Approval) -> Duration {
    let left = approval.call.expires_ms.saturating_sub(now_ms()).max(0);
    Duration::from_millis(u64::try_from(left).unwrap_or(0)) + POLL
}

/// What the queue needs of a call (owned: a call is not `Sync`).
struct Asked {
    tool: String,
    session: String,
    request_id: String,
    arguments: Value,
    rationale: Option<String>,
    agent: String,
    user: Option<String>,
    /// The agent gets progress notifications while it waits, or polls a
    /// task: it waits until a decision or the expiry, not just the hold
    /// budget.
    progress: bool,
    /// The task the call runs as, if it does: its cancellation withdraws
    /// the call.
    task: Option<TaskCancel>,
}

impl Asked {
    fn of<C>(call: &ToolCall<C>) -> Asked {
        Asked {
            tool: call.tool.clone(),
            session: call.session.to_string(),
            request_id: call.id.to_string(),
            arguments: call
                .arguments
                .as_deref()
                .and_then(|a| serde_json::from_str(a.get()).ok())
                .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
            rationale: call.meta.rationale.clone(),
            agent: call.principal.agent.to_string(),
            user: call.principal.on_behalf_of.as_deref().map(str::to_owned),
            progress: call.meta.progress_token.is_some() || call.as_task.is_some(),
            task: call.as_task.clone(),
        }
    }
}

/// Resolves once `task` is cancelled; never without a task.
async fn cancelled(task: &mut Option<TaskCancel>) {
    match task {
        Some(task) => task.cancelled().await,
        None => std::future::pending().await,
    }
}

async fn hold(
    settings: &Arc<HoldSettings>,
    policy: &warden_policy::Policy,
    call: &Asked,
) -> Result<Held, warden_approvals::ApprovalError> {
    let tool = &call.tool;
    let mut task = call.task.clone();
    let withdrawn = |task: &Option<TaskCancel>| task.as_ref().is_some_and(TaskCancel::is_cancelled);
    if withdrawn(&task) {
        // Its task was cancelled before the call was held: no approver is
        // asked.
        return Ok(Held::Answer(answer(
            tool,
            "cancelled",
            "approval-cancelled",
            format!("The call to '{tool}' was withdrawn before it was held; it was not run."),
            None,
        )));
    }
    let rule = policy.hold_of(&call.tool);
    let value = &call.arguments;
    let digest = warden_approvals::arguments_digest(value);
    let now = now_ms();
    // The call as it would be staged; the same call (this route, agent
    // session, caller, tool and arguments) attaches to its approval.
    let asked = || NewApproval {
        route: settings.route.to_string(),
        upstream: settings.upstream.to_string(),
        tool: call.tool.clone(),
        arguments: warden_approvals::canonical(value),
        arguments_shown: String::new(),
        rationale: call.rationale.clone(),
        agent_session: call.session.clone(),
        principal_agent: call.agent.clone(),
        principal_user: call.user.clone(),
        policy_hash: policy.content_hash(),
        required: rule.approvals,
        created_ms: now,
        expires_ms: now.saturating_add(i64::try_from(rule.timeout.as_millis()).unwrap_or(i64::MAX)),
    };
    let approval = match settings.store.find_same_call(&asked(), &digest).await? {
        Some(existing) => existing,
        None => {
            let staged = settings
                .store
                .create(NewApproval {
                    arguments_shown: shown_arguments(settings, policy, &call.tool, value),
                    ..asked()
                })
                .await?;
            tracing::info!(tool = %call.tool, session = %call.session, agent = %call.agent, approval = %staged.id, "Call held for approval.");
            settings.record(warden_audit::Kind::ApprovalRequested, &staged, "pending");
            if let Some(notify) = &settings.on_requested {
                notify(&staged);
            }
            staged
        }
    };
    let id = approval.id.clone();
    let wakeup = settings.wakeups.subscribe(&id);
    let held_key = (call.session.clone(), call.request_id.clone());
    settings
        .wakeups
        .held_calls()
        .insert(held_key.clone(), id.clone());
    let mut guard = AbandonOnDrop {
        settings: settings.clone(),
        id: Some(id.clone()),
    };
    let budget = if call.progress {
        let left = current_left(&approval);
        left.max(settings.budget)
    } else {
        settings.budget
    };
    let deadline = tokio::time::Instant::now() + budget;
    let mut current = approval;
    let outcome = loop {
        if current.status == Status::Pending && withdrawn(&task) {
            // The task was cancelled (`tasks/cancel` withdraws a waiting
            // call itself; this covers a cancel that came before the call
            // waited here).
            if settings.store.end(&id, Status::Cancelled, now_ms()).await? {
                tracing::info!(approval = %id, session = %call.session, "The agent withdrew its held call.");
                settings.record(warden_audit::Kind::ApprovalDecided, &current, "cancelled");
            }
            current = settings.store.get(&id).await?;
        }
        if current.status == Status::Pending && current.call.expires_ms <= now_ms() {
            if settings.store.end(&id, Status::Expired, now_ms()).await? {
                settings.record(warden_audit::Kind::ApprovalExpired, &current, "expired");
            }
            current = settings.store.get(&id).await?;
        }
        if current.status != Status::Pending {
            break current;
        }
        let notified = wakeup.notified();
        tokio::select! {
            () = notified => {}
            () = cancelled(&mut task) => {}
            () = tokio::time::sleep(POLL) => {}
            () = tokio::time::sleep_until(deadline) => {
                current = settings.store.get(&id).await?;
                if current.status == Status::Pending {
                    break current;
                }
            }
        }
        current = settings.store.get(&id).await?;
    };
    // Ended by an outcome or the budget, not by a hang-up.
    guard.id = None;
    drop(guard);
    drop(wakeup);
    settings.wakeups.forget(&id);
    settings.wakeups.held_calls().remove(&held_key);
    if matches!(
        outcome.status,
        Status::Rejected | Status::Expired | Status::Cancelled | Status::Abandoned
    ) {
        // Told now: the same call again is a new approval.
        settings.store.mark_reported(&id, now_ms()).await?;
    }
    let last = outcome.votes.last();
    let by = last.map_or_else(|| "an approver".to_owned(), |v| v.approver.clone());
    Ok(match outcome.status {
        // Approved, but its task was cancelled before it ran (or it came
        // to an identical call's approval already approved): not run.
        Status::Approved if withdrawn(&task) => Held::Answer(answer(
            tool,
            "cancelled",
            "approval-cancelled",
            format!(
                "The call to '{tool}' was withdrawn before it ran (approval {id}); it was not run."
            ),
            Some(&outcome),
        )),
        Status::Approved => {
            if settings.store.claim_execution(&id, now_ms()).await? {
                tracing::info!(tool = %tool, approval = %id, approver = %by, "Held call approved; it runs now.");
                Held::Run(json!({
                    "id": id,
                    "approvers": outcome.votes.iter().map(|v| v.approver.clone()).collect::<Vec<_>>(),
                }))
            } else {
                Held::Answer(answer(
                    tool,
                    "approved",
                    "already-run",
                    format!(
                        "The call to '{tool}' was approved by {by} and has already run (approval {id}); it is not run twice."
                    ),
                    Some(&outcome),
                ))
            }
        }
        Status::Rejected => Held::Answer(answer(
            tool,
            "rejected",
            "rejected-by-approver",
            format!(
                "The call to '{tool}' was rejected by {by}{}. Do not retry it as it is; change what was asked for, or ask the user.",
                outcome
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            Some(&outcome),
        )),
        Status::Expired => Held::Answer(answer(
            tool,
            "expired",
            "approval-expired",
            format!(
                "The call to '{tool}' needed a human's approval and nobody decided in time (approval {id}); it was not run. Ask the user before trying again."
            ),
            Some(&outcome),
        )),
        Status::Cancelled | Status::Abandoned => Held::Answer(answer(
            tool,
            "cancelled",
            "approval-cancelled",
            format!(
                "The call to '{tool}' was withdrawn before anyone approved it (approval {id}); it was not run."
            ),
            Some(&outcome),
        )),
        Status::Pending => Held::Answer(answer(
            tool,
            "pending",
            "pending-approval",
            format!(
                "The call to '{tool}' is waiting for a human's approval (approval {id}). It has not run. \
                 Call the tool again with the same arguments to get the decision; approvers are not asked twice."
            ),
            Some(&outcome),
        )),
    })
}
