//! The policy gate: refuses a call the policy does not allow.
//!
//! Sits first among the deciding layers (after audit, which must see every
//! call): nothing downstream should spend a rate-limit slot, an approver's
//! attention or an upstream round-trip on a call the policy refuses anyway.
//! It reads the current policy snapshot (hot-reloadable) and asks the pure
//! [`Policy::decide`]; a refusal never reaches the upstream.

use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use futures_util::future::{Either, Ready, ready};
use tower::{Layer, Service};
use warden_policy::{Decision, Policy};

use crate::call::{Refusal, ToolCall, ToolOutcome};

/// The policy in force for a route, swapped atomically on reload.
pub type SharedPolicy = Arc<ArcSwap<Policy>>;

/// Builds [`PolicyGate`]s over one route's policy.
#[derive(Clone)]
pub struct PolicyGateLayer {
    policy: SharedPolicy,
}

impl PolicyGateLayer {
    /// A gate enforcing `policy` (and whatever it is swapped to later).
    pub fn new(policy: SharedPolicy) -> PolicyGateLayer {
        PolicyGateLayer { policy }
    }
}

impl<S> Layer<S> for PolicyGateLayer {
    type Service = PolicyGate<S>;

    fn layer(&self, inner: S) -> PolicyGate<S> {
        PolicyGate {
            policy: self.policy.clone(),
            inner,
        }
    }
}

/// Refuses calls the policy does not allow; passes the rest inward.
#[derive(Clone)]
pub struct PolicyGate<S> {
    policy: SharedPolicy,
    inner: S,
}

// === impl PolicyGate ===

impl<S, C, R> Service<ToolCall<C>> for PolicyGate<S>
where
    S: Service<ToolCall<C>, Response = ToolOutcome<R>>,
{
    type Response = ToolOutcome<R>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<ToolOutcome<R>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ToolCall<C>) -> Self::Future {
        let caller = crate::caller_of(&call.principal);
        match self
            .policy
            .load()
            .decide(&call.tool, call.facts.as_ref(), &caller)
        {
            Decision::Allow { .. } => Either::Left(self.inner.call(call)),
            Decision::Deny { reason } => {
                tracing::info!(tool = %call.tool, session = %call.session, agent = %call.principal.agent, reason = reason.code(), "Call refused by policy.");
                Either::Right(ready(Ok(ToolOutcome::Refused(Refusal::denied(
                    &call.tool, reason,
                )))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use tower::{ServiceExt, service_fn};
    use warden_policy::{Tier, ToolFacts};

    use super::*;

    fn call(tool: &str, read_only: Option<bool>) -> ToolCall<()> {
        ToolCall {
            route: "/mcp".into(),
            session: "s1".into(),
            mcp_session: None,
            id: "1".into(),
            tool: tool.to_owned(),
            facts: read_only.map(|read_only_hint| ToolFacts { read_only_hint }),
            arguments: None,
            principal: crate::Principal::anonymous(),
            dry_run: crate::dry_run::DryRun::No,
            input_schema: None,
            as_task: None,
            confirmed: false,
            approval_note: Default::default(),
            meta: crate::CallMeta::default(),
            tap: crate::ReplyTap::default(),
            message: Bytes::from_static(b"{}"),
            context: (),
        }
    }

    fn gate(
        policy: Policy,
    ) -> (
        PolicyGate<
            impl Service<
                ToolCall<()>,
                Response = ToolOutcome<&'static str>,
                Error = Infallible,
                Future: Send,
            > + Clone,
        >,
        SharedPolicy,
    ) {
        let shared: SharedPolicy = Arc::new(ArcSwap::from_pointee(policy));
        let upstream = service_fn(|_call: ToolCall<()>| async {
            Ok::<_, Infallible>(ToolOutcome::Forwarded("upstream ran it"))
        });
        (PolicyGateLayer::new(shared.clone()).layer(upstream), shared)
    }

    #[tokio::test]
    async fn allowed_calls_reach_the_upstream() {
        let (gate, _) = gate(Policy::default());
        let outcome = gate
            .oneshot(call("search", Some(true)))
            .await
            .expect("infallible");
        assert!(matches!(outcome, ToolOutcome::Forwarded("upstream ran it")));
    }

    #[tokio::test]
    async fn refused_calls_never_reach_the_upstream() {
        let (gate, _) = gate(Policy::default());
        match gate
            .oneshot(call("create_note", Some(false)))
            .await
            .expect("infallible")
        {
            ToolOutcome::Refused(refusal) => {
                assert_eq!(refusal.reason, "not-read-only");
                assert_eq!(refusal.tool, "create_note");
            }
            ToolOutcome::Forwarded(_) => panic!("a mutating tool reached the upstream"),
        }
    }

    #[tokio::test]
    async fn unlisted_tools_are_refused_even_when_a_rule_grants_them() {
        let (gate, _) = gate(Policy::default().with_rule("ghost", Tier::Write));
        match gate.oneshot(call("ghost", None)).await.expect("infallible") {
            ToolOutcome::Refused(refusal) => assert_eq!(refusal.reason, "unknown-tool"),
            ToolOutcome::Forwarded(_) => panic!("an unlisted tool reached the upstream"),
        }
    }

    #[tokio::test]
    async fn a_reloaded_policy_takes_effect_on_the_next_call() {
        let (gate, shared) = gate(Policy::default());
        assert!(matches!(
            gate.clone().oneshot(call("create_note", Some(false))).await,
            Ok(ToolOutcome::Refused(_))
        ));
        shared.store(Arc::new(
            Policy::default().with_rule("create_note", Tier::Write),
        ));
        assert!(matches!(
            gate.oneshot(call("create_note", Some(false))).await,
            Ok(ToolOutcome::Forwarded(_))
        ));
    }
}
