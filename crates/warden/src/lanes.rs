//! Credential lanes at run time: a session's upstream session in a lane
//! other than its base one, opened on the lane's first allowed call (the
//! forwarder asks, after every layer has let the call through, so a call
//! the policy refuses never makes Warden use the lane's credential) and
//! ended with the session.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap, HeaderValue};
use warden_protocol::mcp;

use crate::error::EdgeError;
use crate::proxy::relay::{self, Body};
use crate::session::Session;
use crate::upstream::{MAX_INSPECTED_REPLY, Upstream};

/// Largest `initialize` message a session keeps to open its other lanes
/// with (what clients send is a few hundred bytes).
pub const MAX_KEPT_INITIALIZE: usize = 64 << 10;

/// A session's lanes other than the base one.
#[derive(Debug, Default)]
pub struct LaneSessions {
    /// Lane index → the upstream's session id (`None`: it issued none).
    open: HashMap<usize, Option<HeaderValue>>,
    /// The session has ended: no lane may open any more.
    closed: bool,
}

/// A call's lane, to open (if need be) just before it is forwarded.
#[derive(Clone)]
pub struct PendingLane {
    /// The agent session.
    pub session: Arc<Session>,
    /// The lane's index on its route.
    pub index: usize,
    /// The lane's credential name (for logs and errors).
    pub credential: Arc<str>,
    /// The route (for errors).
    pub route: Arc<str>,
}

// === impl PendingLane ===

impl PendingLane {
    /// The lane's upstream session for this agent session: the one opened
    /// before, or a new one (the agent's own `initialize`, then
    /// `notifications/initialized`, both through the lane).
    pub async fn session_id(&self, upstream: &Upstream) -> Result<Option<HeaderValue>, EdgeError> {
        let mut lanes = self.session.lanes.lock().await;
        if lanes.closed {
            return Err(EdgeError::UnknownSession);
        }
        if let Some(id) = lanes.open.get(&self.index) {
            return Ok(id.clone());
        }
        let Some(initialize) = self.session.initialize_message() else {
            return Err(EdgeError::UpstreamInvalid {
                route: self.route.to_string(),
                detail: format!(
                    "the agent's initialize is larger than {MAX_KEPT_INITIALIZE} bytes, too large to open credential {}'s session with",
                    self.credential
                ),
            });
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        let response = upstream
            .send(Method::POST, &headers, None, initialize)
            .await?;
        let status = response.status();
        let id = response.headers().get(mcp::HEADER_SESSION_ID).cloned();
        let opened = async {
            self.read(upstream, response.into_body(), "initialize")
                .await?;
            if !status.is_success() {
                return Err(EdgeError::UpstreamInvalid {
                    route: self.route.to_string(),
                    detail: format!(
                        "the initialize of credential {}'s session was answered HTTP {status}",
                        self.credential
                    ),
                });
            }
            if let Some(version) = self
                .session
                .negotiated_version()
                .and_then(|v| HeaderValue::from_str(v).ok())
            {
                headers.insert(mcp::HEADER_PROTOCOL_VERSION, version);
            }
            let initialized =
                Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
            let response = upstream
                .send(Method::POST, &headers, id.as_ref(), initialized)
                .await?;
            self.read(upstream, response.into_body(), "notifications/initialized")
                .await
                .map(|_| ())
        };
        if let Err(err) = opened.await {
            // Half open: end what the upstream started, keep nothing.
            if let Some(id) = &id {
                end(upstream, id).await;
            }
            return Err(err);
        }
        tracing::debug!(session = %self.session.id, agent = %self.session.principal.agent, credential = %self.credential, "Lane session opened.");
        lanes.open.insert(self.index, id.clone());
        Ok(id)
    }

    /// [`PendingLane::session_id`] in a task of its own: if the agent hangs
    /// up meanwhile, the lane still ends up open and noted (or ended), not
    /// half open and forgotten.
    pub async fn session_id_in_task(
        &self,
        upstream: Arc<Upstream>,
    ) -> Result<Option<HeaderValue>, EdgeError> {
        let pending = self.clone();
        tokio::spawn(async move { pending.session_id(&upstream).await })
            .await
            .unwrap_or(Err(EdgeError::Internal {
                what: "opening a credential lane's session failed",
            }))
    }

    /// The lane's upstream session for this agent session if it is open
    /// (never opens one: a message that is not an allowed call must not
    /// make Warden use the lane's credential).
    pub async fn open_session_id(&self) -> Option<Option<HeaderValue>> {
        let lanes = self.session.lanes.lock().await;
        if lanes.closed {
            return None;
        }
        lanes.open.get(&self.index).cloned()
    }

    async fn read(&self, upstream: &Upstream, body: Body, what: &str) -> Result<Bytes, EdgeError> {
        let timeout = upstream.timeout();
        match tokio::time::timeout(timeout, relay::collect_capped(body, MAX_INSPECTED_REPLY)).await
        {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(err)) => Err(EdgeError::UpstreamInvalid {
                route: self.route.to_string(),
                detail: format!("reading the {what} reply failed: {err}"),
            }),
            Err(_) => Err(EdgeError::UpstreamTimeout {
                route: self.route.to_string(),
                seconds: timeout.as_secs(),
            }),
        }
    }
}

/// End a session's lanes: no more may open, and each one opened is told
/// (DELETE with its upstream session id).
pub async fn end_all(lanes: &[crate::proxy::Lane], session: &Session) {
    let opened: Vec<(usize, HeaderValue)> = {
        let mut held = session.lanes.lock().await;
        held.closed = true;
        held.open
            .drain()
            .filter_map(|(lane, id)| id.map(|id| (lane, id)))
            .collect()
    };
    // Told apart from the request that ends the session: a client that
    // hangs up right after its DELETE must not leave lanes open.
    let ends: Vec<_> = opened
        .into_iter()
        .filter_map(|(index, id)| {
            let upstream = lanes.get(index)?.upstream.clone();
            Some(tokio::spawn(async move { end(&upstream, &id).await }))
        })
        .collect();
    for handle in ends {
        let _ = handle.await;
    }
}

async fn end(upstream: &Upstream, id: &HeaderValue) {
    let _ = upstream
        .send(
            Method::DELETE,
            &HeaderMap::new(),
            Some(id),
            Default::default(),
        )
        .await;
}
