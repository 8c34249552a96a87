//! The generic webhook: the signed JSON Warden posts when a call is held,
//! and the signed decision callback it takes.

use serde::Deserialize;
use serde_json::{Value, json};
use warden_approvals::{Approval, Verdict};

/// A decision sent back to `POST /approvals/webhook/decisions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The approval.
    pub approval_id: String,
    /// Approve or reject.
    pub verdict: Verdict,
    /// The configured approver deciding.
    pub approver: String,
    /// Why (required for a rejection).
    pub reason: Option<String>,
}

/// Why a decision body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// Not the JSON object described.
    #[error(
        "the body must be JSON: {{\"approval_id\": \"…\", \"verdict\": \"approve\"|\"reject\", \"approver\": \"<configured name>\", \"reason\": \"…\"}} ({detail})"
    )]
    Unreadable {
        /// What serde said (a field name, a type; never a secret).
        detail: String,
    },
    /// A rejection without a reason.
    #[error("a rejection needs a reason")]
    NoReason,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecision {
    approval_id: String,
    verdict: RawVerdict,
    approver: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawVerdict {
    Approve,
    Reject,
}

/// The body of `approval.requested`: what approvers need to decide, the
/// arguments as redacted for approvers.
pub fn requested(approval: &Approval) -> Value {
    let call = &approval.call;
    json!({
        "type": "approval.requested",
        "approval": {
            "id": approval.id,
            "tool": call.tool,
            "upstream": call.upstream,
            "route": call.route,
            "arguments": serde_json::from_str::<Value>(&call.arguments_shown).unwrap_or(Value::Null),
            "rationale": call.rationale,
            "agent": call.principal_agent,
            "on_behalf_of": call.principal_user,
            "expires_ms": call.expires_ms,
            "approvals_required": call.required,
        }
    })
}

/// Read a decision body (already verified as signed).
pub fn decision(body: &[u8]) -> Result<Decision, DecisionError> {
    let raw: RawDecision =
        serde_json::from_slice(body).map_err(|err| DecisionError::Unreadable {
            // serde's message names the field or type; the input is not
            // echoed beyond that.
            detail: err.to_string().chars().take(200).collect(),
        })?;
    let reason = raw.reason.filter(|r| !r.trim().is_empty());
    let verdict = match raw.verdict {
        RawVerdict::Approve => Verdict::Approve,
        RawVerdict::Reject => Verdict::Reject,
    };
    if verdict == Verdict::Reject && reason.is_none() {
        return Err(DecisionError::NoReason);
    }
    Ok(Decision {
        approval_id: raw.approval_id,
        verdict,
        approver: raw.approver,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_read_strictly() {
        assert_eq!(
            decision(br#"{"approval_id":"a","verdict":"reject","approver":"grace","reason":"no"}"#),
            Ok(Decision {
                approval_id: "a".into(),
                verdict: Verdict::Reject,
                approver: "grace".into(),
                reason: Some("no".into()),
            })
        );
        assert_eq!(
            decision(br#"{"approval_id":"a","verdict":"approve","approver":"grace"}"#)
                .map(|d| d.verdict),
            Ok(Verdict::Approve)
        );
        assert_eq!(
            decision(br#"{"approval_id":"a","verdict":"reject","approver":"grace","reason":"  "}"#),
            Err(DecisionError::NoReason)
        );
        for bad in [
            &br#"{"approval_id":"a","verdict":"maybe","approver":"grace"}"#[..],
            br#"{"approval_id":"a","verdict":"approve"}"#,
            br#"{"approval_id":"a","verdict":"approve","approver":"grace","extra":1}"#,
            b"not json",
        ] {
            assert!(
                matches!(decision(bad), Err(DecisionError::Unreadable { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
