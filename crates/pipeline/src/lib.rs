//! Warden's `tools/call` pipeline.
//!
//! Every `tools/call`, whatever transport it arrived on, becomes a
//! [`ToolCall`] and passes through one tower stack, assembled in
//! [`stack::build`], outermost first. Each layer either passes the call inward
//! or answers it with a [`ToolOutcome::Refused`]: a refusal is an `Ok`
//! outcome (an `isError` tool result the model can read), never an `Err`.
//! `Err` is reserved for the upstream failing to answer at all.
//!
//! The innermost service is the transport's forwarder, supplied by the
//! caller; `C` is whatever context it needs (the upstream session, headers)
//! and `R` is its reply type. Layers never look inside either.
//!
//! [`facts`] reads what a call says about itself (model, conversation,
//! rationale, trace context) and names its [`Principal`].
//!
//! [`tap`] tells layers what became of a forwarded call (its response,
//! size, digest, latency) without buffering the reply.
//!
//! [`catalogue`] holds the upstream's tool catalogue and filters `tools/list`
//! replies with the same policy the stack enforces.

pub mod agent_session;
pub mod approval;
pub mod audit;
pub mod call;
pub mod catalogue;
pub mod dry_run;
pub mod facts;
pub mod limits;
pub mod policy_gate;
pub mod stack;
pub mod tap;

pub use approval::{HoldLayer, HoldSettings, OnRequested, Wakeups, approval_record};
pub use audit::{AuditLayer, AuditSettings, ReadCalls};
pub use call::{
    ApprovalNote, Refusal, TaskCancel, TaskCanceller, ToolCall, ToolOutcome, task_cancel,
};
pub use catalogue::{
    Catalogue, CatalogueError, ListReply, ListedPage, filter_tools_list, read_page,
};
pub use dry_run::{DryRun, DryRunLayer};
pub use facts::{CallMeta, FactHeaders, MetaText, Principal};
pub use limits::LimitsLayer;
pub use policy_gate::{PolicyGate, PolicyGateLayer, SharedPolicy};
pub use stack::{Pipeline, build};
pub use tap::{Answer, ReplySummary, ReplyTap, ReplyWatch};

/// How policy rules see `principal`.
pub fn caller_of(principal: &Principal) -> warden_policy::Caller<'_> {
    warden_policy::Caller {
        agent: &principal.agent,
        groups: &principal.groups,
    }
}
