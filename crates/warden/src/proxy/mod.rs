//! The Streamable HTTP proxy: one handler for every request on the MCP
//! listener.
//!
//! ```text
//! request ─▶ route (path) ─▶ Host and Origin checks ─▶ authentication ─▶ method
//!   POST   ─▶ headers ─▶ body (limit, timeout) ─▶ strict parse ─▶ session
//!            ├─ initialize ─▶ upstream ─▶ mint Warden's session id
//!            ├─ tools/call ─▶ catalogue facts ─▶ pipeline ─▶ upstream | refusal
//!            ├─ tools/list ─▶ upstream ─▶ filter with the policy
//!            ├─ batch (2025-03-26 only) ─▶ each message as above, replies merged
//!            └─ anything else ─▶ upstream, bytes untouched
//!   GET    ─▶ session ─▶ upstream's SSE stream, relayed (Last-Event-ID passes)
//!   DELETE ─▶ session ─▶ upstream ─▶ session ended
//! GET /.well-known/oauth-protected-resource/… ─▶ the route's RFC 9728 metadata
//! ```
//!
//! A session is bound to the caller that opened it: a request naming it
//! must authenticate as the same agent (acting for the same user).

mod confirm;
mod post;
pub mod relay;
mod stateless;
mod tasks;

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::StreamExt;

use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode, Uri};
use warden_identity::Authenticator;
use warden_pipeline::{Pipeline, Principal, SharedPolicy};
use warden_protocol::mcp;

use crate::config::Limits;
use crate::error::EdgeError;
use crate::forward::Forward;
use crate::metrics::{ErrorLabels, Metrics, RequestLabels};
use crate::session::{Session, SessionStore, StatelessSessions};
use crate::upstream::Upstream;
use relay::{Body, json, relay};

/// A request body as any transport hands it to the handler (hyper's for
/// HTTP, a single buffer for stdio).
pub trait AgentBody:
    http_body::Body<Data = bytes::Bytes, Error: Into<relay::BoxError>> + Send + Unpin + 'static
{
}

impl<B> AgentBody for B where
    B: http_body::Body<Data = bytes::Bytes, Error: Into<relay::BoxError>> + Send + Unpin + 'static
{
}

/// One route: a path in front of one upstream, with its policy and pipeline.
pub struct Route {
    /// Position in [`Warden::routes`] (sessions remember it).
    pub index: usize,
    /// The listener path.
    pub path: Arc<str>,
    /// The upstream client.
    pub upstream: Arc<Upstream>,
    /// Where the upstream is, as logs and audit records name it.
    pub upstream_name: Arc<str>,
    /// The policy in force (hot-swappable).
    pub policy: SharedPolicy,
    /// The `tools/call` pipeline.
    pub pipeline: Pipeline<Forward, Response<Body>, EdgeError>,
    /// Allowed browser origins besides loopback ones.
    pub allowed_origins: Vec<String>,
    /// Allowed `Host` values.
    pub allowed_hosts: HostCheck,
    /// What each caller's stateless (2026-07-28) requests share: the
    /// upstream's catalogue, as a session outside the session table.
    pub stateless: StatelessSessions,
    /// Who may call the route (`None`: anyone, as `anonymous`).
    pub auth: Option<Arc<Authenticator>>,
    /// The upstream once per credential: lane 0 carries none, then one per
    /// route credential. `upstream` is the base lane's.
    pub lanes: Vec<Lane>,
    /// The lane of requests that are not tool calls (`base_credential`).
    pub base_lane: usize,
    /// This route's most frequent counters, resolved once.
    pub counters: crate::metrics::RouteCounters,
    /// The call caps' counts of this route's agent sessions.
    pub call_counts: Arc<warden_limits::CallCounts>,
}

/// One credential's way to the upstream.
pub struct Lane {
    /// The credential its requests carry (`None`: none).
    pub credential: Option<Arc<str>>,
    /// Its own upstream client (connections, children, sessions).
    pub upstream: Arc<Upstream>,
}

impl Route {
    /// Lane `index` of `session`, to find or open its upstream session.
    pub fn pending_lane(&self, session: &Arc<Session>, index: usize) -> crate::lanes::PendingLane {
        crate::lanes::PendingLane {
            session: session.clone(),
            index,
            credential: self.lanes[index]
                .credential
                .clone()
                .unwrap_or_else(|| "(none)".into()),
            route: self.path.clone(),
        }
    }

    /// The lane of a call to `tool`: its rule's credential, else none.
    pub fn lane_of_tool(&self, policy: &warden_policy::Policy, tool: &str) -> usize {
        policy
            .credential_of(tool)
            .and_then(|name| {
                self.lanes
                    .iter()
                    .position(|lane| lane.credential.as_deref() == Some(name))
            })
            .unwrap_or(0)
    }
}

/// Everything the handler shares across requests.
pub struct Warden {
    /// The approval queue, when configured.
    pub approvals: Option<Arc<crate::approvals::Approvals>>,
    /// The routes, in config order.
    pub routes: Vec<Route>,
    /// Live agent sessions.
    pub sessions: SessionStore,
    /// Exported metrics.
    pub metrics: Metrics,
    /// Listener limits.
    pub limits: Limits,
    /// The audit trail, when configured.
    pub audit: Option<warden_audit::AuditLog>,
    /// The OTLP log exporter following the trail, to close after it.
    pub otlp_logs: Option<warden_audit::otlp::OtlpLogsHandle>,
    /// Request spans and duration histograms (disabled without OTLP).
    pub telemetry: warden_audit::otlp::Telemetry,
    /// Whether a `tools/call` forwarded carries Warden's span as its
    /// `_meta.traceparent` (`audit.otlp.propagate`).
    pub telemetry_propagates: bool,
    /// The tasks Warden answers for itself (task-augmented calls it holds
    /// or refuses).
    pub tasks: crate::tasks::TaskBoard,
    /// Seals the `requestState` of 2026-07-28 confirmations.
    pub request_states: crate::request_state::RequestStates,
}

/// A failure, with the JSON-RPC id it answers when one is known.
pub(crate) struct Failure {
    error: EdgeError,
    id: Option<Arc<str>>,
}

impl From<EdgeError> for Failure {
    fn from(error: EdgeError) -> Failure {
        Failure { error, id: None }
    }
}

impl Failure {
    fn with_id(error: EdgeError, id: Arc<str>) -> Failure {
        Failure {
            error,
            id: Some(id),
        }
    }
}

impl Warden {
    /// Answer one request on the MCP listener.
    pub async fn handle<B>(self: Arc<Self>, request: Request<B>) -> Response<Body>
    where
        B: AgentBody,
    {
        let method = request.method().clone();
        if request
            .uri()
            .path()
            .starts_with(warden_identity::METADATA_PATH)
        {
            return self.resource_metadata(request.uri().path(), &method);
        }
        let Some(route) = self
            .routes
            .iter()
            .find(|r| *r.path == *request.uri().path())
        else {
            let path = request.uri().path().to_owned();
            return self.fail(None, Failure::from(EdgeError::NoRoute { path }), &method);
        };
        // `warden stdio`'s requests come from no network: no Host to check.
        let host = match request.extensions().get::<InProcess>() {
            Some(InProcess) => Ok(()),
            None => check_host(&route.allowed_hosts, request.headers()),
        };
        let checked = host.and_then(|()| check_origin(&route.allowed_origins, request.headers()));
        let caller = match checked {
            Err(err) => Err(err),
            Ok(()) => {
                let certificate = request
                    .extensions()
                    .get::<Arc<warden_identity::ClientCertificate>>()
                    .map(Arc::as_ref);
                authenticate(route, request.headers(), certificate).await
            }
        };
        let result = match caller {
            Err(err) => Err(Failure::from(err)),
            Ok(principal) => match method {
                Method::POST => post::handle(&self, route, request, principal).await,
                Method::GET => self.get(route, request, &principal).await,
                Method::DELETE => self.delete(route, request, &principal).await,
                _ => Err(Failure::from(EdgeError::MethodNotAllowed {
                    method: method.to_string(),
                })),
            },
        };
        match result {
            Ok(response) => {
                self.count_request(route, &method, response.status());
                response
            }
            Err(failure) => self.fail(Some(route), failure, &method),
        }
    }

    fn fail(&self, route: Option<&Route>, failure: Failure, method: &Method) -> Response<Body> {
        let error = failure.error;
        let status = error.status();
        if error.culprit() == crate::error::Culprit::Client {
            tracing::debug!(reason = error.reason(), error = %error, "Request refused.");
        } else {
            tracing::warn!(reason = error.reason(), error = %error, "Request failed.");
        }
        self.metrics
            .edge_errors
            .get_or_create(&ErrorLabels {
                reason: error.reason().to_owned(),
                culprit: error.culprit().as_str().to_owned(),
            })
            .inc();
        let mut response = json(status, error.body(failure.id.as_deref().unwrap_or("null")));
        if let EdgeError::MethodNotAllowed { .. } = error {
            response.headers_mut().insert(
                header::ALLOW,
                http::HeaderValue::from_static("GET, POST, DELETE"),
            );
        }
        if let (EdgeError::Unauthenticated(refusal), Some(auth)) =
            (&error, route.and_then(|r| r.auth.as_ref()))
            && let Ok(challenge) = http::HeaderValue::from_str(&auth.challenge(refusal))
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(route) = route {
            self.count_request(route, method, status);
        }
        response
    }

    fn count_request(&self, route: &Route, method: &Method, status: StatusCode) {
        if method == Method::POST && status == StatusCode::OK {
            route.counters.post_ok.inc();
            return;
        }
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                route: route.path.to_string(),
                // Any other method is an agent's free text: never a label value.
                method: match *method {
                    Method::GET | Method::POST | Method::DELETE => method.as_str(),
                    _ => "OTHER",
                }
                .to_owned(),
                status: status.as_u16(),
            })
            .inc();
    }

    /// The live session named by the request's `Mcp-Session-Id`, which
    /// must have been opened by the same caller.
    fn session(
        &self,
        route: &Route,
        headers: &HeaderMap,
        principal: &Principal,
    ) -> Result<Arc<Session>, EdgeError> {
        let id = headers
            .get(mcp::HEADER_SESSION_ID)
            .ok_or(EdgeError::MissingSession)?
            .to_str()
            .map_err(|_| EdgeError::UnknownSession)?;
        let session = self
            .sessions
            .get(id, route.index)
            .ok_or(EdgeError::UnknownSession)?;
        if !session.principal.same_caller(principal) {
            tracing::warn!(session = %session.id, agent = %principal.agent, owner = %session.principal.agent, "A caller named another caller's session.");
            return Err(EdgeError::SessionOfAnotherCaller);
        }
        Ok(session)
    }

    /// GET on the well-known path: the RFC 9728 metadata of the route whose
    /// resource it names (or, at the bare path, of the only route that
    /// publishes any).
    fn resource_metadata(&self, path: &str, method: &Method) -> Response<Body> {
        let published: Vec<&warden_identity::ProtectedResource> = self
            .routes
            .iter()
            .filter_map(|r| r.auth.as_ref().and_then(|a| a.resource()))
            .collect();
        let found =
            published
                .iter()
                .find(|r| r.metadata_path() == path)
                .or(match published.as_slice() {
                    [only] if path == warden_identity::METADATA_PATH => Some(only),
                    _ => None,
                });
        let Some(resource) = found else {
            let path = path.to_owned();
            return self.fail(None, Failure::from(EdgeError::NoRoute { path }), method);
        };
        if *method != Method::GET {
            let method_text = method.to_string();
            return self.fail(
                None,
                Failure::from(EdgeError::MethodNotAllowed {
                    method: method_text,
                }),
                method,
            );
        }
        let mut response = Response::new(relay::full(bytes::Bytes::from(resource.document())));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        // Public metadata: browser-based clients must be able to read it.
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            http::HeaderValue::from_static("*"),
        );
        response
    }

    /// The upstream no longer knows the session: end it here too, so the
    /// agent's next request gets Warden's 404 and re-initializes.
    async fn end_if_gone(&self, route: &Route, session: &Session, status: StatusCode) {
        if status == StatusCode::NOT_FOUND && self.sessions.remove(&session.id).is_some() {
            self.metrics.sessions.set(self.sessions.len() as i64);
            self.session_ended(session, "upstream-gone");
            crate::lanes::end_all(&route.lanes, session).await;
            if route.base_lane != 0 || session.upstream_id.is_some() {
                // The 404 may have come from a lane: the base session goes too.
                self.end_upstream_session(session).await;
            }
        }
    }

    /// A session has ended (`why`: `agent`, `idle`, `evicted`,
    /// `upstream-gone`): on the record, its call counts and its Warden
    /// tasks forgotten (a call still held for one is withdrawn).
    pub(crate) fn session_ended(&self, session: &Session, why: &str) {
        self.record_session(warden_audit::Kind::SessionEnded, session, why);
        if let Some(route) = self.routes.get(session.route) {
            route.call_counts.forget(&warden_limits::SessionKey {
                route: route.path.clone(),
                session: session.id.clone(),
            });
        }
        if self.tasks.end_session(session.route, &session.id) > 0 {
            self.metrics.tasks.set(self.tasks.len() as i64);
        }
    }

    /// Put a session's start or end on the audit record; `why` says what
    /// started or ended it (`initialize`, `agent`, `idle`, `evicted`,
    /// `upstream-gone`).
    pub(crate) fn record_session(&self, kind: warden_audit::Kind, session: &Session, why: &str) {
        let Some(audit) = &self.audit else { return };
        let mut record = audit.new_record(kind);
        record.route = self
            .routes
            .get(session.route)
            .map(|r| r.path.as_ref().into());
        record.upstream = self
            .routes
            .get(session.route)
            .map(|r| r.upstream_name.as_ref().into());
        record.mcp_session = Some(session.id.as_ref().into());
        record.reason = Some(why.to_owned().into());
        audit.record(record);
    }

    /// GET: the server-initiated SSE stream.
    async fn get(
        &self,
        route: &Route,
        request: Request<impl AgentBody>,
        principal: &Principal,
    ) -> Result<Response<Body>, Failure> {
        if !accepts(request.headers(), "text/event-stream") {
            return Err(EdgeError::NotAcceptable {
                needed: "text/event-stream",
            }
            .into());
        }
        let session = self.session(route, request.headers(), principal)?;
        let response = route
            .upstream
            .send(
                Method::GET,
                request.headers(),
                session.upstream_id.as_ref(),
                Default::default(),
            )
            .await?;
        self.end_if_gone(route, &session, response.status()).await;
        if !crate::upstream::is_event_stream(response.headers()) {
            return Ok(relay(response, Some(&session)));
        }
        let (mut parts, body) = response.into_parts();
        relay::clean_headers(&mut parts.headers, Some(&session));
        parts.headers.remove(header::CONTENT_LENGTH);
        let events =
            relay::filtered_get_stream(body, route.policy.load_full(), session, route.path.clone());
        Ok(relay::streaming(parts, events))
    }

    /// DELETE: the agent ends its session.
    async fn delete(
        &self,
        route: &Route,
        request: Request<impl AgentBody>,
        principal: &Principal,
    ) -> Result<Response<Body>, Failure> {
        let session = self.session(route, request.headers(), principal)?;
        let response = route
            .upstream
            .send(
                Method::DELETE,
                request.headers(),
                session.upstream_id.as_ref(),
                Default::default(),
            )
            .await?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            if self.sessions.remove(&session.id).is_some() {
                self.session_ended(&session, "agent");
            }
            crate::lanes::end_all(&route.lanes, &session).await;
            self.metrics.sessions.set(self.sessions.len() as i64);
            tracing::debug!(session = %session.id, agent = %session.principal.agent, "Session ended by the agent.");
        }
        Ok(relay(response, None))
    }

    /// Stop every route's stdio children and legacy SSE streams, and wait
    /// until they are gone (after in-flight calls have drained).
    pub async fn shutdown_upstreams(&self) {
        for lane in self.routes.iter().flat_map(|r| &r.lanes) {
            lane.upstream.shutdown().await;
        }
    }

    /// Close the audit trail (its closing checkpoint), then the OTLP
    /// exporters that follow it. Call it last, after calls have drained.
    pub async fn close_trail(self: &Arc<Self>) {
        let warden = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(audit) = &warden.audit {
                audit.close();
            }
            if let Some(otlp) = &warden.otlp_logs {
                otlp.close();
            }
            warden.telemetry.shutdown();
        })
        .await;
    }

    /// Expire the held calls nobody decided in time (their waiting
    /// requests, if any, see it themselves), and put each on the record.
    pub async fn expire_approvals(&self) {
        let Some(approvals) = &self.approvals else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        if self.request_states.is_shared()
            && let Err(err) = approvals.store.forget_spent_request_states(now).await
        {
            tracing::warn!(error = %err, "Cannot forget expired request states in the approval store.");
        }
        let expired = match approvals.store.expire_due(now).await {
            Ok(expired) => expired,
            Err(err) => {
                tracing::warn!(error = %err, "Cannot expire held calls.");
                return;
            }
        };
        for id in expired {
            approvals.wakeups.wake(&id);
            tracing::info!(approval = %id, "Held call expired: nobody decided in time.");
            if let (Some(audit), Ok(approval)) = (&self.audit, approvals.store.get(&id).await) {
                audit.record(warden_pipeline::approval_record(
                    audit,
                    warden_audit::Kind::ApprovalExpired,
                    &approval,
                    "expired",
                    None,
                ));
            }
        }
    }

    /// End sessions idle past the limit, telling their upstreams; forget
    /// the call counts of agent sessions (stateless ones included) idle as
    /// long.
    pub async fn sweep_sessions(&self) {
        let now = std::time::Instant::now();
        for route in self.routes.iter() {
            route.call_counts.sweep(self.limits.session_idle, now);
        }
        let expired = self.sessions.sweep();
        if expired.is_empty() {
            return;
        }
        self.metrics.sessions.set(self.sessions.len() as i64);
        futures_util::stream::iter(expired)
            .for_each_concurrent(8, |session| async move {
                tracing::info!(session = %session.id, agent = %session.principal.agent, "Idle session ended.");
                self.session_ended(&session, "idle");
                self.end_upstream_session(&session).await;
            })
            .await;
    }

    /// Best effort: tell the upstream a session Warden ended is over, so it
    /// frees its state too.
    pub(crate) async fn end_upstream_session(&self, session: &Session) {
        let Some(route) = self.routes.get(session.route) else {
            return;
        };
        crate::lanes::end_all(&route.lanes, session).await;
        if session.upstream_id.is_some() {
            let _ = route
                .upstream
                .send(
                    Method::DELETE,
                    &HeaderMap::new(),
                    session.upstream_id.as_ref(),
                    Default::default(),
                )
                .await;
        }
    }
}

/// Who sent a request on `route`: `anonymous` on a route without `auth`.
async fn authenticate(
    route: &Route,
    headers: &HeaderMap,
    certificate: Option<&warden_identity::ClientCertificate>,
) -> Result<Arc<Principal>, EdgeError> {
    match &route.auth {
        None => Ok(Principal::anonymous()),
        Some(auth) => Ok(auth
            .authenticate(headers, certificate, SystemTime::now())
            .await?),
    }
}

/// Marks a request made inside Warden (`warden stdio`), not received from
/// the network; only Warden can set it.
#[derive(Debug, Clone, Copy)]
pub struct InProcess;

/// Which `Host` values a route answers (DNS-rebinding protection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCheck {
    /// Any (a listener on a routable address with no `allowed_hosts`).
    Any,
    /// These, lower case: `name` allows any port, `name:port` that one.
    Only(Vec<String>),
}

/// The names a loopback listener answers to by default.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl HostCheck {
    /// A route's check: its `allowed_hosts`, else the loopback names when
    /// the listener is on loopback, else any.
    pub fn new(allowed_hosts: Option<&[String]>, listen: std::net::SocketAddr) -> HostCheck {
        match allowed_hosts {
            Some(hosts) if hosts.iter().any(|h| h == "*") => HostCheck::Any,
            Some(hosts) => HostCheck::Only(hosts.to_vec()),
            None if listen.ip().is_loopback() => {
                HostCheck::Only(LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect())
            }
            None => HostCheck::Any,
        }
    }
}

/// DNS-rebinding protection: the `Host` a request names must be one the
/// route answers to. (A rebinding page's requests carry its own name.)
fn check_host(check: &HostCheck, headers: &HeaderMap) -> Result<(), EdgeError> {
    let HostCheck::Only(allowed) = check else {
        return Ok(());
    };
    let forbidden = |host: &str| EdgeError::ForbiddenHost {
        host: host.chars().take(256).collect(),
    };
    let Some(value) = headers.get(header::HOST) else {
        return Err(forbidden("(none)"));
    };
    let Ok(host) = value.to_str() else {
        return Err(forbidden(&String::from_utf8_lossy(value.as_bytes())));
    };
    let host = host.trim();
    if allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(host_name(host)))
    {
        Ok(())
    } else {
        Err(forbidden(host))
    }
}

/// The name in a `Host` value, without its port (`[::1]:8080` → `[::1]`).
/// Anything else is compared as it is, so a malformed value (user info,
/// spaces, an empty one) matches no entry the config accepted.
fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!name.contains(':') || (name.starts_with('[') && name.ends_with(']'))) =>
        {
            name
        }
        _ => host,
    }
}

/// DNS-rebinding protection: a browser origin must be loopback or listed.
fn check_origin(allowed_origins: &[String], headers: &HeaderMap) -> Result<(), EdgeError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let text = origin.to_str().unwrap_or_default().trim_end_matches('/');
    let loopback = text.parse::<Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && matches!(uri.host(), Some("localhost" | "127.0.0.1" | "[::1]"))
    });
    if loopback || allowed_origins.iter().any(|allowed| allowed == text) {
        Ok(())
    } else {
        Err(EdgeError::ForbiddenOrigin {
            origin: String::from_utf8_lossy(origin.as_bytes()).into_owned(),
        })
    }
}

/// Whether the Accept header admits `media_type` (wildcards count).
fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let (kind, _) = media_type.split_once('/').unwrap_or((media_type, ""));
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|item| item.split(';').next().unwrap_or_default().trim())
        .any(|item| {
            item.eq_ignore_ascii_case(media_type)
                || item == "*/*"
                || item
                    .split_once('/')
                    .is_some_and(|(k, sub)| sub == "*" && k.eq_ignore_ascii_case(kind))
        })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn accept_matching_understands_lists_parameters_and_wildcards() {
        let both = headers(&[("accept", "application/json;q=0.9, text/event-stream")]);
        assert!(accepts(&both, "application/json"));
        assert!(accepts(&both, "text/event-stream"));
        assert!(accepts(&headers(&[("accept", "*/*")]), "text/event-stream"));
        assert!(accepts(
            &headers(&[("accept", "text/*")]),
            "text/event-stream"
        ));
        assert!(!accepts(
            &headers(&[("accept", "text/html")]),
            "text/event-stream"
        ));
        assert!(!accepts(&HeaderMap::new(), "application/json"));
    }

    #[test]
    fn hosts_must_be_listed_and_a_loopback_listener_allows_its_own_names() {
        let loopback = HostCheck::new(None, "127.0.0.1:8080".parse().expect("addr"));
        for ok in ["127.0.0.1:8080", "localhost:9", "LOCALHOST", "[::1]:8080"] {
            let map = headers(&[("host", ok)]);
            assert!(check_host(&loopback, &map).is_ok(), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "",
            "a b",
            "x@localhost",
            "evil.example@127.0.0.1:8080",
            "localhost:",
        ] {
            let mut map = HeaderMap::new();
            map.insert("host", HeaderValue::from_str(bad).expect("value"));
            assert!(
                matches!(
                    check_host(&loopback, &map),
                    Err(EdgeError::ForbiddenHost { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            check_host(&loopback, &HeaderMap::new()),
            Err(EdgeError::ForbiddenHost { host }) if host == "(none)"
        ));
        let routable = "0.0.0.0:8080".parse().expect("addr");
        assert_eq!(HostCheck::new(None, routable), HostCheck::Any);
        let listed = HostCheck::new(
            Some(&["mcp.example.com".to_owned(), "10.0.0.5:8080".to_owned()]),
            routable,
        );
        assert!(check_host(&listed, &headers(&[("host", "mcp.example.com:443")])).is_ok());
        assert!(check_host(&listed, &headers(&[("host", "10.0.0.5:8080")])).is_ok());
        assert!(check_host(&listed, &headers(&[("host", "10.0.0.5:9090")])).is_err());
        assert!(check_host(&listed, &headers(&[("host", "127.0.0.1:8080")])).is_err());
        let any = HostCheck::new(
            Some(&["*".to_owned()]),
            "127.0.0.1:1".parse().expect("addr"),
        );
        assert!(check_host(&any, &headers(&[("host", "anything")])).is_ok());
    }

    #[test]
    fn origins_must_be_loopback_or_listed() {
        let allowed = vec!["https://app.example.com".to_owned()];
        assert!(check_origin(&allowed, &HeaderMap::new()).is_ok());
        for ok in [
            "http://localhost:6274",
            "http://127.0.0.1:3000",
            "http://[::1]:8080",
            "https://app.example.com/",
        ] {
            let mut map = HeaderMap::new();
            map.insert("origin", HeaderValue::from_static(ok));
            assert!(check_origin(&allowed, &map).is_ok(), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "null",
            "http://localhost.evil.example",
            "https://app.example.com.evil",
        ] {
            let mut map = HeaderMap::new();
            map.insert("origin", HeaderValue::from_static(bad));
            assert!(
                matches!(
                    check_origin(&allowed, &map),
                    Err(EdgeError::ForbiddenOrigin { .. })
                ),
                "{bad}"
            );
        }
    }
}
