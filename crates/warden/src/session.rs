//! Agent sessions: Warden's own session ids, mapped to the upstream's, with
//! what Warden learned of the upstream's tools in that session.
//!
//! Warden mints its own id (128 random bits) at `initialize` and never shows
//! the agent the upstream's, so a leaked upstream id is useless against
//! Warden and an agent cannot address another agent's upstream session.
//! The table is bounded (`limits.max_sessions`) and swept: a session unused
//! for `limits.session_idle` is ended, upstream included.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use http::HeaderValue;
use tokio::time::Instant;
use warden_pipeline::{Catalogue, ListedPage};
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
    catalogue: Mutex<Catalogue>,
    /// Whether the catalogue holds the upstream's whole, current list.
    complete: AtomicBool,
    /// The revision the upstream chose in its `initialize` result.
    negotiated: std::sync::OnceLock<String>,
    /// Serializes Warden's own catalogue fetches for this session.
    pub fetch_lock: tokio::sync::Mutex<()>,
    last_used_ms: AtomicU64,
}

impl Session {
    /// The revision the upstream chose at `initialize`, once Warden has seen it.
    pub fn negotiated_version(&self) -> Option<&str> {
        self.negotiated.get().map(String::as_str)
    }

    /// Record the revision from the upstream's `initialize` result (first one wins).
    pub fn set_negotiated_version(&self, version: &str) {
        let _ = self.negotiated.set(version.to_owned());
    }

    /// What the upstream said about `tool` in this session, if known.
    pub fn facts(&self, tool: &str) -> Option<ToolFacts> {
        self.catalogue.lock().ok().and_then(|c| c.facts(tool))
    }

    /// Whether Warden holds the upstream's whole, current tool list.
    pub fn catalogue_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    /// Record a page the agent listed through Warden.
    pub fn merge_page(&self, page: &ListedPage) {
        if let Ok(mut catalogue) = self.catalogue.lock() {
            catalogue.merge(page);
        }
    }

    /// Replace the catalogue with one Warden fetched whole.
    pub fn replace_catalogue(&self, fresh: Catalogue) {
        if let Ok(mut catalogue) = self.catalogue.lock() {
            *catalogue = fresh;
            self.complete.store(true, Ordering::Release);
        }
    }

    /// The upstream said its tools changed: forget what Warden knew.
    pub fn invalidate_catalogue(&self) {
        if let Ok(mut catalogue) = self.catalogue.lock() {
            *catalogue = Catalogue::default();
            self.complete.store(false, Ordering::Release);
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

    /// Open a session on `route` mapped to the upstream's id.
    pub fn open(
        &self,
        route: usize,
        upstream_id: Option<HeaderValue>,
    ) -> Result<Arc<Session>, EdgeError> {
        if self.sessions.len() >= self.max_sessions {
            return Err(EdgeError::TooManySessions {
                limit: self.max_sessions,
            });
        }
        let id = new_session_id().ok_or(EdgeError::Internal {
            what: "the operating system's random source is unavailable",
        })?;
        let session = Arc::new(Session {
            id: id.into(),
            route,
            upstream_id,
            catalogue: Mutex::new(Catalogue::default()),
            complete: AtomicBool::new(false),
            negotiated: std::sync::OnceLock::new(),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_used_ms: AtomicU64::new(self.now_ms()),
        });
        self.sessions.insert(session.id.clone(), session.clone());
        Ok(session)
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

    #[test]
    fn ids_are_unguessable_and_distinct() {
        let store = SessionStore::new(10, Duration::from_secs(60));
        let a = store.open(0, None).expect("opens");
        let b = store.open(0, None).expect("opens");
        assert_eq!(a.id.len(), 32);
        assert!(a.id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn the_table_is_bounded() {
        let store = SessionStore::new(2, Duration::from_secs(60));
        store.open(0, None).expect("first");
        store.open(0, None).expect("second");
        assert!(matches!(
            store.open(0, None),
            Err(EdgeError::TooManySessions { limit: 2 })
        ));
    }

    #[test]
    fn sessions_belong_to_their_route() {
        let store = SessionStore::new(2, Duration::from_secs(60));
        let session = store.open(1, None).expect("opens");
        assert!(store.get(&session.id, 1).is_some());
        assert!(store.get(&session.id, 0).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_are_swept_and_used_ones_kept() {
        let store = SessionStore::new(10, Duration::from_secs(60));
        let idle = store.open(0, None).expect("opens");
        let busy = store.open(0, None).expect("opens");
        tokio::time::advance(Duration::from_secs(45)).await;
        assert!(store.get(&busy.id, 0).is_some());
        tokio::time::advance(Duration::from_secs(30)).await;
        let swept = store.sweep();
        assert_eq!(swept.len(), 1);
        assert_eq!(swept[0].id, idle.id);
        assert!(store.get(&idle.id, 0).is_none());
        assert!(store.get(&busy.id, 0).is_some());
    }

    #[test]
    fn a_list_changed_notification_forgets_the_catalogue() {
        let store = SessionStore::new(10, Duration::from_secs(60));
        let session = store.open(0, None).expect("opens");
        let mut fresh = Catalogue::default();
        fresh.merge(&ListedPage {
            tools: vec![(
                "search".into(),
                ToolFacts {
                    read_only_hint: true,
                },
            )],
            next_cursor: None,
        });
        session.replace_catalogue(fresh);
        assert!(session.catalogue_complete());
        assert!(session.facts("search").is_some());
        session.invalidate_catalogue();
        assert!(!session.catalogue_complete());
        assert!(session.facts("search").is_none());
    }
}
