//! The limits stage: per agent session call caps.
//!
//! After the policy (a refused call spends no slot) and before dry runs
//! and approval holds (a runaway loop must not flood the approvers, and a
//! preview is a call too). The caps come from the policy in force
//! ([`warden_policy::Policy::call_caps`]); the counts outlive reloads, so
//! new caps apply to the calls already made. A call over a cap never goes
//! further: the agent gets an `isError` result naming the cap, the count
//! and that retrying will not help.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::{Either, Ready, ready};
use tower::{Layer, Service};
use warden_limits::{CallCounts, SessionKey};

use crate::call::{Refusal, ToolCall, ToolOutcome};
use crate::policy_gate::SharedPolicy;

/// Builds [`LimitsGate`]s over one route's policy and the call counts.
#[derive(Clone)]
pub struct LimitsLayer {
    policy: SharedPolicy,
    counts: Arc<CallCounts>,
}

impl LimitsLayer {
    /// Caps from `policy` (whatever it is swapped to later), counted in
    /// `counts` (shared by the route's calls; forget a session's there when
    /// it ends).
    pub fn new(policy: SharedPolicy, counts: Arc<CallCounts>) -> LimitsLayer {
        LimitsLayer { policy, counts }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = LimitsGate<S>;

    fn layer(&self, inner: S) -> LimitsGate<S> {
        LimitsGate {
            policy: self.policy.clone(),
            counts: self.counts.clone(),
            inner,
        }
    }
}

/// Refuses calls over a cap; passes the rest inward.
#[derive(Clone)]
pub struct LimitsGate<S> {
    policy: SharedPolicy,
    counts: Arc<CallCounts>,
    inner: S,
}

impl<S, C, R> Service<ToolCall<C>> for LimitsGate<S>
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
        let caps = self.policy.load().call_caps(&call.tool);
        let key = SessionKey {
            route: call.route.clone(),
            session: call.session.clone(),
        };
        match self.counts.admit(&key, &call.tool, caps, Instant::now()) {
            Ok(()) => Either::Left(self.inner.call(call)),
            Err(tripped) => {
                tracing::info!(tool = %call.tool, session = %call.session, agent = %call.principal.agent, limit = tripped.code(), "Call refused: over a call cap.");
                Either::Right(ready(Ok(ToolOutcome::Refused(Refusal::limited(
                    &call.tool, &tripped,
                )))))
            }
        }
    }
}
