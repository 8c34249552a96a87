//! Warden's limits on runaway agents: the pure decisions of the limits
//! stage, which sits after the policy and before dry runs and approval
//! holds (a runaway loop must not flood the approvers).
//!
//! So far: per agent session, how many calls of one tool and how many
//! calls in all it may make ([`caps`]). Rates, duplicate and loop
//! detection, circuit breakers and the Redis backend follow (issue 12).

pub mod caps;

pub use caps::{CallCounts, Cap, CapSettings, SessionKey, Tripped};
