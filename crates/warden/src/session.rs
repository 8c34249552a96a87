//! Agent sessions: Warden's own session ids, mapped to the upstream's, with
//! what Warden learned of the upstream's tools in that session.
//!
//! Warden mints its own id (128 random bits) at `initialize` and never shows
//! the agent the upstream's, so a leaked upstream id is useless against
//! Warden and an agent cannot address another agent's upstream session.
//! The table is bounded (`limits.max_sessions`) and swept: a session unused
//! for `limits.session_idle` is ended, upstream included.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use http::HeaderValue;
use tokio::time::Instant;
use warden_pipeline::{Catalogue, ListedPage, Principal};
use warden_policy::ToolFacts;

use crate::error::EdgeError;

/// One agent session.
pub struct Session {
    /// Warden's id for it (what the agent sends as `Mcp-Session-Id`).
    pub id: Arc<str>,
    /// Index of the route it was opened on.
    pub route: usize,
    /// The upstream's session id, if the upstream issued one.
    pub upstream_id: Option<HeaderValue>,
    /// Who opened it: only the same caller may use it.
    pub principal: Arc<Principal>,
    /// Not in the table: one caller's stateless (2026-07-28) requests.
    detached: bool,
    /// The agent's `initialize` message, kept (copied, up to
    /// [`crate::lanes::MAX_KEPT_INITIALIZE`]) only where the route has
    /// lanes to open with it.
    initialize: Option<bytes::Bytes>,
    /// The upstream sessions of lanes other than the base one.
    pub lanes: tokio::sync::Mutex<crate::lanes::LaneSessions>,
    /// Which lane a JSON-RPC id belongs to: the agent's calls in a lane
    /// (their cancellations go there) and the server's requests seen on a
    /// lane's streams (the agent's answers go there).
    message_lanes: Mutex<MessageLanes>,
    tools: Mutex<ToolKnowledge>,
    /// The revision the upstream chose in its `initialize` result.
    negotiated: std::sync::OnceLock<String>,
    /// The upstream's `initialize` result declared `tasks.list`.
    upstream_lists_tasks: std::sync::atomic::AtomicBool,
    /// The agent's `initialize` declared `elicitation` (form mode): Warden
    /// can ask the user to confirm a `confirm`-tier call.
    client_elicits: std::sync::atomic::AtomicBool,
    /// Warden's own `elicitation/create` requests awaiting the agent's
    /// answer, by JSON-RPC id.
    confirmations: Mutex<HashMap<String, tokio::sync::oneshot::Sender<serde_json::Value>>>,
    /// Serializes Warden's own catalogue fetches for this session.
    pub fetch_lock: tokio::sync::Mutex<()>,
    last_used_ms: AtomicU64,
    /// Server-to-client streams open on this session (a listening agent is
    /// not idle).
    open_streams: Arc<AtomicUsize>,
    /// The store's clock origin (tokio's clock, so tests can pause it).
    epoch: Instant,
}

/// Keeps a session marked as streaming while alive.
pub struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A route's stateless (2026-07-28) catalogues, one per calling agent, so
/// no caller's requests decide on what another caller's fetched. Bounded:
/// past [`MAX_STATELESS_CALLERS`], the least recently used goes.
pub struct StatelessSessions {
    route: usize,
    version: &'static str,
    by_agent: DashMap<Arc<str>, Arc<Session>>,
}

/// Most callers whose stateless catalogues a route keeps.
pub const MAX_STATELESS_CALLERS: usize = 4096;

impl StatelessSessions {
    /// No catalogue yet, for `route`, speaking `version`.
    pub fn new(route: usize, version: &'static str) -> StatelessSessions {
        StatelessSessions {
            route,
            version,
            by_agent: DashMap::new(),
        }
    }

    /// The catalogue `principal`'s stateless requests share (keyed by how
    /// it authenticated too: an API key's agent and a certificate naming
    /// the same agent are not one caller).
    pub fn of(&self, store: &SessionStore, principal: &Arc<Principal>) -> Arc<Session> {
        let key: Arc<str> = format!("{}:{}", principal.method.as_str(), principal.agent).into();
        if let Some(session) = self.by_agent.get(&key) {
            session
                .last_used_ms
                .store(session.now_ms(), Ordering::Relaxed);
            return session.clone();
        }
        while self.by_agent.len() >= MAX_STATELESS_CALLERS {
            let oldest = self
                .by_agent
                .iter()
                .min_by_key(|s| s.last_used_ms.load(Ordering::Relaxed))
                .map(|s| s.key().clone());
            match oldest {
                Some(agent) => {
                    self.by_agent.remove(&agent);
                }
                None => break,
            }
        }
        self.by_agent
            .entry(key)
            .or_insert_with(|| store.detached(self.route, self.version, principal.clone()))
            .clone()
    }

    /// How many callers have a catalogue.
    pub fn len(&self) -> usize {
        self.by_agent.len()
    }

    /// Whether no caller has one.
    pub fn is_empty(&self) -> bool {
        self.by_agent.is_empty()
    }
}

/// What Warden knows of the upstream's tools in one session, and how fresh.
#[derive(Default)]
struct ToolKnowledge {
    catalogue: Catalogue,
    /// The catalogue is the upstream's whole list, fetched by Warden.
    complete: bool,
    /// Bumped whenever the upstream says its tools changed, so a fetch that
    /// started before the change cannot install what it read.
    generation: u64,
    /// When the catalogue was last filled (store clock, ms).
    refreshed_ms: u64,
}

/// The answer to "what does the upstream say about this tool?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Listed, with these facts, recently enough to trust.
    Known(ToolFacts),
    /// Not in the upstream's whole, fresh list.
    Unlisted,
    /// Warden does not know well enough: fetch the catalogue.
    Unsure,
}

/// Which lane the JSON-RPC ids of a session's messages belong to, on a
/// route with credential lanes: the agent's calls (their cancellations go
/// to the lane that runs them) and the requests lanes' servers sent (the
/// agent's answers go back to the lane that asked).
#[derive(Debug, Default)]
pub struct MessageLanes {
    /// The agent's call id (JSON text) → lane, oldest first in `order`.
    calls: HashMap<Box<str>, usize>,
    order: std::collections::VecDeque<Box<str>>,
    /// The id Warden gave a lane server's request → (lane, its own id as
    /// JSON text). Each lane's server numbers its own requests, so the
    /// agent sees Warden's id (`warden-lane-N`), never two alike.
    requests: HashMap<u64, (usize, Box<str>)>,
    next: u64,
}

/// Most ids a session remembers of each kind (the oldest are forgotten).
const MAX_MESSAGE_LANES: usize = 256;
/// How the ids Warden gives lane servers' requests begin.
pub const LANE_REQUEST_PREFIX: &str = "warden-lane-";

impl Session {
    /// The agent's call `id` (JSON text) runs in `lane`.
    pub fn note_call_lane(&self, id: &str, lane: usize) {
        let mut lanes = self.message_lanes();
        if lanes.calls.insert(id.into(), lane).is_none() {
            lanes.order.push_back(id.into());
        }
        while lanes.order.len() > MAX_MESSAGE_LANES {
            if let Some(oldest) = lanes.order.pop_front() {
                lanes.calls.remove(&oldest);
            }
        }
    }

    /// The lane the agent's call `id` runs in, if noted.
    pub fn call_lane(&self, id: &str) -> Option<usize> {
        self.message_lanes().calls.get(id).copied()
    }

    /// A request `lane`'s server sent with `id` (JSON text): the id the
    /// agent sees instead.
    pub fn lane_request_id(&self, lane: usize, id: &str) -> String {
        let mut lanes = self.message_lanes();
        lanes.next += 1;
        let n = lanes.next;
        if lanes.requests.len() >= MAX_MESSAGE_LANES
            && let Some(oldest) = lanes.requests.keys().min().copied()
        {
            lanes.requests.remove(&oldest);
        }
        lanes.requests.insert(n, (lane, id.into()));
        format!("{LANE_REQUEST_PREFIX}{n}")
    }

    /// The lane and original id of the request the agent answers with
    /// `id` (JSON text), forgotten once asked.
    pub fn take_lane_request(&self, id: &str) -> Option<(usize, Box<str>)> {
        let n = id
            .strip_prefix('"')?
            .strip_suffix('"')?
            .strip_prefix(LANE_REQUEST_PREFIX)?
            .parse::<u64>()
            .ok()?;
        self.message_lanes().requests.remove(&n)
    }

    fn message_lanes(&self) -> std::sync::MutexGuard<'_, MessageLanes> {
        self.message_lanes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The agent's `initialize` message, if kept.
    pub fn initialize_message(&self) -> Option<bytes::Bytes> {
        self.initialize.clone()
    }

    /// Whether this is a caller's stateless catalogue, not an MCP session.
    pub fn is_detached(&self) -> bool {
        self.detached
    }

    /// The revision the upstream chose at `initialize`, once Warden has seen it.
    pub fn negotiated_version(&self) -> Option<&str> {
        self.negotiated.get().map(String::as_str)
    }

    /// Whether the agent can be asked to confirm a call (it declared
    /// form elicitation).
    pub fn client_elicits(&self) -> bool {
        self.client_elicits.load(Ordering::Relaxed)
    }

    /// Record whether the agent declared form elicitation.
    pub fn set_client_elicits(&self, elicits: bool) {
        self.client_elicits.store(elicits, Ordering::Relaxed);
    }

    /// Most confirmations one session waits on at once.
    const MAX_CONFIRMATIONS: usize = 64;

    /// Wait for the agent's answer to Warden's request `id`; `None` when
    /// too many are awaited already.
    pub fn await_confirmation(
        &self,
        id: &str,
    ) -> Option<tokio::sync::oneshot::Receiver<serde_json::Value>> {
        let mut waiting = self
            .confirmations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        waiting.retain(|_, sender| !sender.is_closed());
        if waiting.len() >= Self::MAX_CONFIRMATIONS {
            return None;
        }
        let (sender, receiver) = tokio::sync::oneshot::channel();
        waiting.insert(id.to_owned(), sender);
        Some(receiver)
    }

    /// Hand the agent's answer to the Warden request it answers; whether
    /// it was one (else it is the upstream's).
    pub fn answer_confirmation(&self, id: &str, answer: serde_json::Value) -> bool {
        let sender = self
            .confirmations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        match sender {
            Some(sender) => {
                // The waiting call may be gone (the agent hung up); the
                // answer is Warden's either way.
                let _ = sender.send(answer);
                true
            }
            None => false,
        }
    }

    /// Whether the upstream lists tasks of its own (`tasks/list`).
    pub fn upstream_lists_tasks(&self) -> bool {
        self.upstream_lists_tasks.load(Ordering::Relaxed)
    }

    /// Record whether the upstream lists tasks of its own.
    pub fn set_upstream_lists_tasks(&self, lists: bool) {
        self.upstream_lists_tasks.store(lists, Ordering::Relaxed);
    }

    /// Record the revision from the upstream's `initialize` result (first one wins).
    pub fn set_negotiated_version(&self, version: &str) {
        let _ = self.negotiated.set(version.to_owned());
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The `inputSchema` the upstream listed for `tool`, if Warden saw it.
    pub fn input_schema(&self, tool: &str) -> Option<Arc<str>> {
        self.tools.lock().ok()?.catalogue.input_schema(tool)
    }

    /// Whether the upstream runs `tool` as a task itself when asked.
    pub fn upstream_runs_as_task(&self, tool: &str) -> bool {
        self.tools
            .lock()
            .is_ok_and(|known| known.catalogue.runs_as_task(tool))
    }

    /// What Warden knows about `tool`, trusting nothing older than `ttl`.
    pub fn lookup(&self, tool: &str, ttl: Duration) -> Lookup {
        let now_ms = self.now_ms();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let Ok(tools) = self.tools.lock() else {
            return Lookup::Unsure;
        };
        if now_ms.saturating_sub(tools.refreshed_ms) > ttl_ms {
            return Lookup::Unsure;
        }
        match (tools.catalogue.facts(tool), tools.complete) {
            (Some(facts), _) => Lookup::Known(facts),
            (None, true) => Lookup::Unlisted,
            (None, false) => Lookup::Unsure,
        }
    }

    /// Record a page the agent listed through Warden, unless the upstream's
    /// tools changed since the list was asked for (`generation` from
    /// [`Session::begin_fetch`] at that time).
    pub fn merge_page(&self, page: &ListedPage, generation: u64) {
        let now_ms = self.now_ms();
        if let Ok(mut tools) = self.tools.lock() {
            if tools.generation != generation {
                return;
            }
            if tools.catalogue.is_empty() {
                tools.refreshed_ms = now_ms;
            }
            tools.catalogue.merge(page);
        }
    }

    /// Mark a server-to-client stream open until the guard is dropped.
    pub fn stream_opened(&self) -> StreamGuard {
        self.open_streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.open_streams.clone())
    }

    /// Start a fetch of the whole catalogue: the generation to finish it with.
    pub fn begin_fetch(&self) -> u64 {
        self.tools
            .lock()
            .map(|tools| tools.generation)
            .unwrap_or(u64::MAX)
    }

    /// Install a catalogue Warden fetched whole, unless the upstream's tools
    /// changed while it was being read.
    pub fn finish_fetch(&self, fresh: Catalogue, generation: u64) {
        let now_ms = self.now_ms();
        if let Ok(mut tools) = self.tools.lock()
            && tools.generation == generation
        {
            tools.catalogue = fresh;
            tools.complete = true;
            tools.refreshed_ms = now_ms;
        }
    }

    /// The upstream said its tools changed: forget what Warden knew.
    pub fn invalidate_catalogue(&self) {
        if let Ok(mut tools) = self.tools.lock() {
            tools.catalogue = Catalogue::default();
            tools.complete = false;
            tools.generation += 1;
        }
    }
}

/// The bounded table of live sessions.
pub struct SessionStore {
    sessions: DashMap<Arc<str>, Arc<Session>>,
    max_sessions: usize,
    idle: Duration,
    epoch: Instant,
}

impl SessionStore {
    /// A store holding at most `max_sessions`, ending those idle for `idle`.
    pub fn new(max_sessions: usize, idle: Duration) -> SessionStore {
        SessionStore {
            sessions: DashMap::new(),
            max_sessions,
            idle,
            epoch: Instant::now(),
        }
    }

    /// Open a session on `route` mapped to the upstream's id. At the limit,
    /// the least recently used session is ended to make room and returned,
    /// so that a flood of `initialize` cannot lock every agent out until the
    /// idle timeout: the agent whose session went gets a 404 and starts anew.
    pub fn open(
        &self,
        route: usize,
        upstream_id: Option<HeaderValue>,
        principal: Arc<Principal>,
        initialize: Option<bytes::Bytes>,
    ) -> Result<(Arc<Session>, Option<Arc<Session>>), EdgeError> {
        let mut evicted = None;
        // A loop, not an `if`: concurrent opens may pick the same victim.
        while self.sessions.len() >= self.max_sessions {
            match self.least_recently_used().and_then(|id| self.remove(&id)) {
                Some(session) => evicted = Some(session),
                None if self.sessions.is_empty() => break,
                None => continue,
            }
        }
        let id = new_session_id().ok_or(EdgeError::Internal {
            what: "the operating system's random source is unavailable",
        })?;
        let session = Arc::new(Session {
            id: id.into(),
            route,
            upstream_id,
            principal,
            detached: false,
            initialize,
            lanes: tokio::sync::Mutex::default(),
            message_lanes: Mutex::default(),
            tools: Mutex::new(ToolKnowledge {
                refreshed_ms: self.now_ms(),
                ..ToolKnowledge::default()
            }),
            negotiated: std::sync::OnceLock::new(),
            upstream_lists_tasks: std::sync::atomic::AtomicBool::new(false),
            client_elicits: std::sync::atomic::AtomicBool::new(false),
            confirmations: Mutex::default(),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_used_ms: AtomicU64::new(self.now_ms()),
            open_streams: Arc::new(AtomicUsize::new(0)),
            epoch: self.epoch,
        });
        self.sessions.insert(session.id.clone(), session.clone());
        Ok((session, evicted))
    }

    /// A session that is not in the table: what one caller's stateless
    /// requests on a route share (the upstream's catalogue, with its TTL
    /// and change notices). It is never swept, evicted or listed.
    pub fn detached(&self, route: usize, version: &str, principal: Arc<Principal>) -> Arc<Session> {
        let session = Session {
            id: "stateless".into(),
            route,
            upstream_id: None,
            principal,
            detached: true,
            initialize: None,
            lanes: tokio::sync::Mutex::default(),
            message_lanes: Mutex::default(),
            tools: Mutex::new(ToolKnowledge::default()),
            negotiated: std::sync::OnceLock::new(),
            upstream_lists_tasks: std::sync::atomic::AtomicBool::new(false),
            client_elicits: std::sync::atomic::AtomicBool::new(false),
            confirmations: Mutex::default(),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_used_ms: AtomicU64::new(self.now_ms()),
            open_streams: Arc::new(AtomicUsize::new(0)),
            epoch: self.epoch,
        };
        session.set_negotiated_version(version);
        Arc::new(session)
    }

    fn least_recently_used(&self) -> Option<Arc<str>> {
        self.sessions
            .iter()
            .min_by_key(|s| s.last_used_ms.load(Ordering::Relaxed))
            .map(|s| s.key().clone())
    }

    /// The live session `id` on `route`, marking it used.
    pub fn get(&self, id: &str, route: usize) -> Option<Arc<Session>> {
        let session = self.sessions.get(id)?.clone();
        if session.route != route {
            // A session belongs to the route that opened it.
            return None;
        }
        session.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        Some(session)
    }

    /// End a session; returns it if it was live.
    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.remove(id).map(|(_, s)| s)
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Remove and return every session idle for longer than the limit.
    pub fn sweep(&self) -> Vec<Arc<Session>> {
        let now = self.now_ms();
        let idle_ms = u64::try_from(self.idle.as_millis()).unwrap_or(u64::MAX);
        let expired: Vec<Arc<str>> = self
            .sessions
            .iter()
            .filter(|s| s.open_streams.load(Ordering::Relaxed) == 0)
            .filter(|s| now.saturating_sub(s.last_used_ms.load(Ordering::Relaxed)) > idle_ms)
            .map(|s| s.key().clone())
            .collect();
        expired.iter().filter_map(|id| self.remove(id)).collect()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// 128 random bits, hex-encoded: unguessable and visible-ASCII as the spec
/// asks. `None` when the OS has no random source: no id is safe then.
fn new_session_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(
        bytes
            .iter()
            .fold(String::with_capacity(32), |mut id, byte| {
                use std::fmt::Write;
                let _ = write!(id, "{byte:02x}");
                id
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ_ONLY: ToolFacts = ToolFacts {
        read_only_hint: true,
    };

    fn page(tool: &str) -> ListedPage {
        ListedPage {
            schemas: Vec::new(),
            task_tools: Vec::new(),
            tools: vec![(tool.into(), READ_ONLY)],
            next_cursor: None,
        }
    }

    fn catalogue(tool: &str) -> Catalogue {
        let mut catalogue = Catalogue::default();
        catalogue.merge(&page(tool));
        catalogue
    }

    #[test]
    fn ids_are_unguessable_and_distinct() {
        let store = SessionStore::new(10, Duration::from_secs(60));
        let (a, _) = store
            .open(0, None, Principal::anonymous(), None)
            .expect("opens");
        let (b, _) = store
            .open(0, None, Principal::anonymous(), None)
            .expect("opens");
        assert_eq!(a.id.len(), 32);
        assert!(a.id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.id, b.id);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_limit_the_least_recently_used_session_makes_room() {
        let store = SessionStore::new(2, Duration::from_secs(600));
        let (old, _) = store
            .open(0, None, Principal::anonymous(), None)
            .expect("first");
        tokio::time::advance(Duration::from_secs(1)).await;
        let (busy, _) = store
            .open(0, None, Principal::anonymous(), None)
            .expect("second");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            store.get(&old.id, 0).is_some(),
            "used again: now the freshest"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let (_third, evicted) = store
            .open(0, None, Principal::anonymous(), None)
            .expect("third");
        assert_eq!(evicted.map(|s| s.id.clone()), Some(busy.id.clone()));
        assert_eq!(store.len(), 2);
        assert!(store.get(&busy.id, 0).is_none());
        assert!(store.get(&old.id, 0).is_some());
    }

    #[test]
    fn sessions_belong_to_their_route() {
        let store = SessionStore::new(2, Duration::from_secs(60));
        let (session, _) = store
            .open(1, None, Principal::anonymous(), None)
            .expect("opens");
        assert!(store.get(&session.id, 1).is_some());
        assert!(store.get(&session.id, 0).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_are_swept_and_used_ones_kept() {
        let store = SessionStore::new(10, Duration::from_secs(60));
        let (idle, _) = store
            .open(0, None, Principal::anonymous(), None)
            .expect("opens");
        let (busy, _) = store
            .open(0, None, Principal::anonymous(), None)
            .expect("opens");
        tokio::time::advance(Duration::from_secs(45)).await;
        assert!(store.get(&busy.id, 0).is_some());
        tokio::time::advance(Duration::from_secs(30)).await;
        let swept = store.sweep();
        assert_eq!(swept.len(), 1);
        assert_eq!(swept[0].id, idle.id);
        assert!(store.get(&idle.id, 0).is_none());
        assert!(store.get(&busy.id, 0).is_some());
    }

    const TTL: Duration = Duration::from_secs(300);

    #[tokio::test(start_paused = true)]
    async fn lookups_know_listed_unlisted_and_unsure() {
        let store = SessionStore::new(10, Duration::from_secs(60));
        let (session, _) = store
            .open(0, None, Principal::anonymous(), None)
            .expect("opens");
        assert_eq!(session.lookup("search", TTL), Lookup::Unsure);
        session.merge_page(&page("search"), session.begin_fetch());
        assert_eq!(session.lookup("search", TTL), Lookup::Known(READ_ONLY));
        assert_eq!(
            session.lookup("other", TTL),
            Lookup::Unsure,
            "a partial list proves nothing"
        );
        let generation = session.begin_fetch();
        session.finish_fetch(catalogue("search"), generation);
        assert_eq!(session.lookup("other", TTL), Lookup::Unlisted);
    }

    #[tokio::test(start_paused = true)]
    async fn knowledge_older_than_the_ttl_is_not_trusted() {
        let store = SessionStore::new(10, Duration::from_secs(60));
        let (session, _) = store
            .open(0, None, Principal::anonymous(), None)
            .expect("opens");
        let generation = session.begin_fetch();
        session.finish_fetch(catalogue("search"), generation);
        tokio::time::advance(TTL).await;
        assert_eq!(session.lookup("search", TTL), Lookup::Known(READ_ONLY));
        tokio::time::advance(Duration::from_millis(2)).await;
        assert_eq!(session.lookup("search", TTL), Lookup::Unsure);
        assert_eq!(session.lookup("other", TTL), Lookup::Unsure);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_a_fetch_voids_the_fetch() {
        let store = SessionStore::new(10, Duration::from_secs(60));
        let (session, _) = store
            .open(0, None, Principal::anonymous(), None)
            .expect("opens");
        let generation = session.begin_fetch();
        session.invalidate_catalogue();
        session.finish_fetch(catalogue("search"), generation);
        assert_eq!(session.lookup("search", TTL), Lookup::Unsure);
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_changed_notification_forgets_the_catalogue() {
        let store = SessionStore::new(10, Duration::from_secs(60));
        let (session, _) = store
            .open(0, None, Principal::anonymous(), None)
            .expect("opens");
        let generation = session.begin_fetch();
        session.finish_fetch(catalogue("search"), generation);
        session.invalidate_catalogue();
        assert_eq!(session.lookup("search", TTL), Lookup::Unsure);
    }
}
