//! The innermost service of every route's pipeline: hands an allowed
//! `tools/call` to the upstream and returns the upstream's reply untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Method, Response};
use tower::Service;
use warden_pipeline::{ToolCall, ToolOutcome};

use crate::error::EdgeError;
use crate::proxy::relay::Body;
use crate::upstream::Upstream;

/// What the forwarder needs beyond the call itself.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The agent's request headers (filtered again when sent).
    pub headers: Arc<HeaderMap>,
    /// The upstream's session id for this agent session.
    pub upstream_session: Option<HeaderValue>,
}

/// Sends allowed calls to one route's upstream.
#[derive(Clone)]
pub struct Forwarder {
    upstream: Arc<Upstream>,
}

impl Forwarder {
    /// A forwarder to `upstream`.
    pub fn new(upstream: Arc<Upstream>) -> Forwarder {
        Forwarder { upstream }
    }
}

// === impl Forwarder ===

impl Service<ToolCall<Forward>> for Forwarder {
    type Response = ToolOutcome<Response<Body>>;
    type Error = EdgeError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, EdgeError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), EdgeError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ToolCall<Forward>) -> Self::Future {
        let upstream = self.upstream.clone();
        Box::pin(async move {
            let context = call.context;
            upstream
                .send(
                    Method::POST,
                    &context.headers,
                    context.upstream_session.as_ref(),
                    call.message,
                )
                .await
                .map(ToolOutcome::Forwarded)
        })
    }
}
