//! Warden's approval queue.
//!
//! A call to an `approve`-tier tool is held: staged here as an
//! [`Approval`], bound to the exact call (tool, upstream, principal,
//! policy, and the SHA-256 of its canonical arguments), until enough
//! approvers decide, someone rejects it, it expires, or it is withdrawn.
//! Decisions are atomic: two approvers deciding at once, or two Warden
//! replicas sharing a store, never run a call twice
//! ([`SqliteStore::claim_execution`] hands the run to exactly one caller).
//!
//! Stores: SQLite (the embedded default, a file next to the audit trail)
//! and, at scale, PostgreSQL.

mod sqlite;

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use sqlite::SqliteStore;

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Waiting for approvers.
    Pending,
    /// Enough approvers approved: the call may run (once).
    Approved,
    /// An approver rejected it.
    Rejected,
    /// Nobody decided in time.
    Expired,
    /// The agent withdrew it (`notifications/cancelled`, `tasks/cancel`).
    Cancelled,
    /// The agent's connection was lost while it waited: never run later.
    Abandoned,
}

/// An approver's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the call run.
    Approve,
    /// Refuse it.
    Reject,
}

/// A call to stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApproval {
    /// The route.
    pub route: String,
    /// The upstream, as audit records name it.
    pub upstream: String,
    /// The tool.
    pub tool: String,
    /// The full arguments (JSON text), for execution.
    pub arguments: String,
    /// What approvers see (JSON text, redacted by the audit rules).
    pub arguments_shown: String,
    /// The agent's rationale (`_meta["warden/rationale"]`), if given.
    pub rationale: Option<String>,
    /// The agent session.
    pub agent_session: String,
    /// The calling agent.
    pub principal_agent: String,
    /// The user the agent acts for.
    pub principal_user: Option<String>,
    /// The policy in force (its content hash).
    pub policy_hash: String,
    /// Approvals needed.
    pub required: u32,
    /// When it was staged (ms since the epoch).
    pub created_ms: i64,
    /// When it expires (ms since the epoch).
    pub expires_ms: i64,
}

/// A staged call and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Its id (UUIDv7).
    pub id: String,
    /// What was staged.
    pub call: NewApproval,
    /// SHA-256 of the canonical arguments: an approval covers these only.
    pub arguments_digest: String,
    /// Where it stands.
    pub status: Status,
    /// A rejection's reason.
    pub reason: Option<String>,
    /// When it was decided.
    pub decided_ms: Option<i64>,
    /// When the call ran (set once).
    pub executed_ms: Option<i64>,
    /// Who decided what, in order.
    pub votes: Vec<Vote>,
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// Who.
    pub approver: String,
    /// What.
    pub verdict: Verdict,
    /// Why (required for a rejection by the channels; optional here).
    pub reason: Option<String>,
    /// When (ms since the epoch).
    pub at_ms: i64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No approval has this id.
    #[error("no approval {id}")]
    NotFound {
        /// The id.
        id: String,
    },
    /// It was decided, expired or withdrawn already.
    #[error("approval {id} is {status}, not pending")]
    NotPending {
        /// The id.
        id: String,
        /// Where it stands.
        status: Status,
    },
    /// This approver decided on it already.
    #[error("{approver} has already decided on approval {id}")]
    AlreadyDecided {
        /// The id.
        id: String,
        /// The approver.
        approver: String,
    },
    /// The user the call acts for may not approve it (four eyes).
    #[error("{approver} is the user this call acts for and may not approve it")]
    OwnCall {
        /// The approver.
        approver: String,
    },
    /// The store failed.
    #[error("approval store: {0}")]
    Store(#[from] sqlx::Error),
    /// The store's schema could not be brought up to date.
    #[error("approval store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

// === impl Status ===

impl Status {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
            Status::Abandoned => "abandoned",
        }
    }

    /// Read a stored status.
    pub fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "rejected" => Status::Rejected,
            "expired" => Status::Expired,
            "cancelled" => Status::Cancelled,
            "abandoned" => Status::Abandoned,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Verdict ===

impl Verdict {
    /// The verdict as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }
}

/// The canonical form of JSON `arguments` (keys sorted at every level, no
/// insignificant whitespace, numbers and strings as serde_json writes
/// them): two spellings of the same arguments have one form.
pub fn canonical(arguments: &Value) -> String {
    // serde_json's map is ordered by key (no `preserve_order` feature), so
    // writing a parsed value sorts every object's keys.
    arguments.to_string()
}

/// SHA-256 (lower-case hex) of the canonical form of `arguments`.
pub fn arguments_digest(arguments: &Value) -> String {
    Sha256::digest(canonical(arguments).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_same_for_every_spelling_of_the_same_arguments() {
        let a: Value =
            serde_json::from_str(r#"{"b": [1, {"y": 2, "x": 1}], "a": "é"}"#).expect("json");
        let b: Value =
            serde_json::from_str(r#"{"a":"\u00e9","b":[1,{"x":1,"y":2}]}"#).expect("json");
        assert_eq!(arguments_digest(&a), arguments_digest(&b));
        let c: Value = serde_json::from_str(r#"{"a":"é","b":[1,{"x":1,"y":3}]}"#).expect("json");
        assert_ne!(arguments_digest(&a), arguments_digest(&c));
        for status in [
            Status::Pending,
            Status::Approved,
            Status::Rejected,
            Status::Expired,
            Status::Cancelled,
            Status::Abandoned,
        ] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }
}
