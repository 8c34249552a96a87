//! One approver's decision on a held call: the single path every channel
//! (the JSON API, the approvals page) goes through, so the rules, the
//! wake-up and the audit record cannot drift apart.
//!
//! In order: a rejection needs a reason; the approval must exist; the rule
//! in force for its tool says who may decide it (and whether the user the
//! call acts for may); the store records the vote atomically; a request
//! waiting on the approval is woken; a decision that ends the approval is
//! recorded in the audit trail.

use http::StatusCode;
use warden_approvals::{Approval, ApprovalError, Status, Verdict};

use crate::approvals::Approver;
use crate::proxy::Warden;

/// Why a decision was not taken. Nothing was decided in any case.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    /// This Warden has no `approvals` section.
    #[error("this Warden has no approvals section: no call is ever held")]
    NoQueue,
    /// A rejection without a reason (or only white space).
    #[error("a rejection needs a reason")]
    ReasonRequired,
    /// The tool's rule names its approvers, and this one is not among them.
    #[error("{approver} may not decide calls to {tool}")]
    NotAnApprover {
        /// Who tried.
        approver: String,
        /// The held call's tool.
        tool: String,
    },
    /// The approval's route is not one this Warden serves (its config
    /// changed): nobody here can say who may decide it.
    #[error(
        "approval {id} belongs to route {route}, which this Warden does not serve; decide it on a Warden that does"
    )]
    UnknownRoute {
        /// The approval.
        id: String,
        /// Its route.
        route: String,
    },
    /// No approval has this id.
    #[error("no such approval")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The store refused or failed (not pending, already voted, own call, …).
    #[error(transparent)]
    Store(ApprovalError),
}

impl DecisionError {
    /// The HTTP status this failure answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            DecisionError::NoQueue | DecisionError::NotFound { .. } => StatusCode::NOT_FOUND,
            DecisionError::ReasonRequired => StatusCode::BAD_REQUEST,
            DecisionError::NotAnApprover { .. } => StatusCode::FORBIDDEN,
            DecisionError::UnknownRoute { .. } => StatusCode::CONFLICT,
            DecisionError::Store(err) => match err {
                ApprovalError::NotFound { .. } => StatusCode::NOT_FOUND,
                ApprovalError::NotPending { .. } | ApprovalError::AlreadyDecided { .. } => {
                    StatusCode::CONFLICT
                }
                ApprovalError::OwnCall { .. } | ApprovalError::AgentsOwnCall { .. } => {
                    StatusCode::FORBIDDEN
                }
                ApprovalError::Store(_)
                | ApprovalError::Migrate(_)
                | ApprovalError::Connect { .. }
                | ApprovalError::InvalidUrl { .. }
                | ApprovalError::InvalidSchema { .. } => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }
}

impl From<ApprovalError> for DecisionError {
    fn from(err: ApprovalError) -> DecisionError {
        match err {
            ApprovalError::NotFound { id } => DecisionError::NotFound { id },
            other => DecisionError::Store(other),
        }
    }
}

/// `approver`'s `verdict` on approval `id` (the tool's rule names who
/// may decide: by name, or by group for approvers from the identity layer), with an optional `reason`
/// (required, and not blank, for a rejection), however it came (the API,
/// the page, Slack, the webhook: `via` names the last two on the audit
/// record). Answers the approval as it stands after the vote.
pub async fn decide(
    warden: &Warden,
    approver: &Approver,
    id: &str,
    verdict: Verdict,
    reason: Option<&str>,
    via: Option<&str>,
) -> Result<Approval, DecisionError> {
    let approvals = warden.approvals.as_ref().ok_or(DecisionError::NoQueue)?;
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if verdict == Verdict::Reject && reason.is_none() {
        return Err(DecisionError::ReasonRequired);
    }
    let held = approvals.store.get(id).await?;
    // The rule in force says who may approve, and whether the user the
    // call acts for may.
    let rule = warden
        .routes
        .iter()
        .find(|r| *r.path == held.call.route)
        .map(|r| r.policy.load().hold_of(&held.call.tool))
        .ok_or_else(|| DecisionError::UnknownRoute {
            id: held.id.clone(),
            route: held.call.route.clone(),
        })?;
    if !approver.may_decide(&rule) {
        return Err(DecisionError::NotAnApprover {
            approver: approver.name.to_string(),
            tool: held.call.tool,
        });
    }
    let approver = &*approver.name;
    let decided = approvals
        .store
        .decide(id, approver, verdict, reason, rule.allow_own, now_ms())
        .await?;
    approvals.wakeups.wake(id);
    // The channel it came by, when not the API or the page: `grace (slack)`.
    let recorded_as = via.map_or_else(|| approver.to_owned(), |via| format!("{approver} ({via})"));
    if decided.status != Status::Pending {
        // Claimed before it is written (with or without a trail here): a
        // sweep on any replica then leaves it alone, whatever its clock.
        let claimed = match approvals.store.mark_decision_recorded(id, now_ms()).await {
            Ok(claimed) => claimed,
            Err(err) => {
                // Better twice on the record than not at all.
                tracing::warn!(approval = %id, error = %err, "Cannot note in the approval store that a decision is recorded; a sweep may record it a second time.");
                true
            }
        };
        if let Some(audit) = &warden.audit
            && claimed
        {
            audit.record(decision_record(audit, &decided, recorded_as.clone()));
        }
    }
    tracing::info!(approval = %id, approver = %recorded_as, status = decided.status.as_str(), "Approval decided.");
    Ok(decided)
}

/// How long a decision may stay unrecorded before a sweep takes it for one
/// no Warden will record (the live path records it within milliseconds).
pub const RECORD_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Most decisions one sweep records.
const RECORDED_PER_SWEEP: u32 = 100;

/// The `approval_decided` record of `decided`, decided by `approver` (with
/// the channel, as `grace (slack)`).
fn decision_record(
    audit: &warden_audit::AuditLog,
    decided: &Approval,
    approver: String,
) -> warden_audit::Record {
    warden_pipeline::approval_record(
        audit,
        warden_audit::Kind::ApprovalDecided,
        decided,
        decided.status.as_str(),
        Some(approver),
    )
}

/// Record the decisions no Warden recorded: those taken in the store by
/// `warden approvals approve|reject --as` (named `grace (cli)`), and any a
/// Warden stopped between the vote and claiming its record (`grace
/// (recorded late)`). Each is claimed in the store before it is written,
/// so one replica records it, once. Called by the sweeper.
pub async fn record_decisions_taken_elsewhere(warden: &Warden) {
    let (Some(approvals), Some(audit)) = (&warden.approvals, &warden.audit) else {
        return;
    };
    let before = now_ms() - i64::try_from(RECORD_GRACE.as_millis()).unwrap_or(i64::MAX);
    let found = match approvals
        .store
        .unrecorded_decisions(before, RECORDED_PER_SWEEP)
        .await
    {
        Ok(found) => found,
        Err(err) => {
            tracing::warn!(error = %err, "Cannot look for decisions no Warden recorded.");
            return;
        }
    };
    for (decided, via) in found {
        match approvals
            .store
            .mark_decision_recorded(&decided.id, now_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(err) => {
                tracing::warn!(approval = %decided.id, error = %err, "Cannot claim a decision to record it.");
                continue;
            }
        }
        // The vote that ended it: the last one.
        let approver = decided
            .votes
            .last()
            .map_or("unknown", |v| v.approver.as_str());
        let via = via.as_deref().unwrap_or("recorded late");
        let recorded_as = format!("{approver} ({via})");
        tracing::info!(approval = %decided.id, approver = %recorded_as, status = decided.status.as_str(), "A decision taken outside this Warden's API is now in the audit trail.");
        audit.record(decision_record(audit, &decided, recorded_as));
        // A request held here on it (SQLite has no notifications).
        approvals.wakeups.wake(&decided.id);
    }
}

/// Milliseconds since the epoch, as the store keeps time.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
