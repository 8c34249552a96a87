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
                ApprovalError::OwnCall { .. } => StatusCode::FORBIDDEN,
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
    if let Some(audit) = &warden.audit
        && decided.status != Status::Pending
    {
        let mut record = audit.new_record(warden_audit::Kind::ApprovalDecided);
        record.route = Some(decided.call.route.as_str().into());
        record.tool = Some(decided.call.tool.clone());
        record.decision = Some(decided.status.as_str().to_owned().into());
        record.reason = decided.reason.clone().map(Into::into);
        record.approval = Some(warden_audit::record::ApprovalField {
            id: decided.id.clone(),
            approver: Some(recorded_as.clone()),
        });
        audit.record(record);
    }
    tracing::info!(approval = %id, approver = %recorded_as, status = decided.status.as_str(), "Approval decided.");
    Ok(decided)
}

/// Milliseconds since the epoch, as the store keeps time.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
