//! The `tools/call` pipeline, assembled in one place, outermost first.
//!
//! ```text
//! tools/call ─▶ [ audit ─▶ policy ─▶ limits ─▶ dry-run ─▶ approval ] ─▶ upstream forwarder (credentials)
//! ```
//!
//! The breaker, still to come, goes next to the upstream (see
//! `docs/pipeline.md`), so it measures the upstream and nothing else.

use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder};

use crate::approval::HoldLayer;
use crate::audit::AuditLayer;
use crate::call::{ToolCall, ToolOutcome};
use crate::dry_run::DryRunLayer;
use crate::limits::LimitsLayer;
use crate::policy_gate::{PolicyGateLayer, SharedPolicy};

/// A built pipeline: cheap to clone, one per route.
pub type Pipeline<C, R, E> = BoxCloneSyncService<ToolCall<C>, ToolOutcome<R>, E>;

/// Build a route's pipeline in front of its upstream forwarder.
pub fn build<S, C, R>(
    audit: AuditLayer,
    policy: SharedPolicy,
    limits: LimitsLayer,
    dry_run: DryRunLayer,
    hold: HoldLayer,
    upstream: S,
) -> Pipeline<C, R, S::Error>
where
    S: Service<ToolCall<C>, Response = ToolOutcome<R>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    C: Send + 'static,
    R: Send + 'static,
{
    let stack = ServiceBuilder::new()
        // Audit outermost: it sees every call, refused or not, and records
        // a write's intent durably before anything below can forward it.
        .layer(audit)
        // Policy first among the deciding layers: nothing below should
        // spend effort on a call it refuses.
        .layer(PolicyGateLayer::new(policy))
        // Limits after the policy (a refused call spends no slot) and
        // before previews and holds: a runaway loop must not flood the
        // approvers.
        .layer(limits)
        // Dry runs after the policy (a refused tool is refused, preview or
        // not) and before any hold: a preview needs neither a human nor
        // the upstream.
        .layer(dry_run)
        // The human decision after the preview (which needs none) and
        // before the upstream: a held call runs once, as it was approved.
        .layer(hold)
        .service(upstream);
    BoxCloneSyncService::new(stack)
}
