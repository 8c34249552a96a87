//! The approvals page's sessions: who logged in, until when, and the
//! token their forms must carry.
//!
//! A session id is 256 random bits from the OS's CSPRNG, handed to the
//! browser once as a cookie and kept here only as its SHA-256: the map's
//! lookups then say nothing about the ids it holds, and a memory dump
//! holds no cookie. The map is bounded ([`MAX_SESSIONS`]); a login when it
//! is full first drops expired sessions, then the oldest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::approvals::Approver;
use sha2::{Digest, Sha256};

/// How long a login lasts.
pub const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

/// Most sessions kept at once.
pub const MAX_SESSIONS: usize = 1024;

/// One logged-in approver.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who logged in (their name as votes record it, and their groups).
    pub approver: Approver,
    /// The token every form of this session carries.
    pub csrf: Arc<str>,
    expires: Instant,
}

/// Every live session, by the SHA-256 of its id.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

// === impl Sessions ===

impl Sessions {
    /// A new session for `approver` from `now`: its id (for the cookie,
    /// never kept) and the session.
    pub fn open(
        &self,
        approver: Approver,
        now: Instant,
    ) -> Result<(String, Session), getrandom::Error> {
        let id = random_token()?;
        let session = Session {
            approver,
            csrf: random_token()?.into(),
            expires: now + LIFETIME,
        };
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live.len() >= MAX_SESSIONS {
            live.retain(|_, s| s.expires > now);
        }
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(key, _)| *key)
        {
            live.remove(&oldest);
        }
        live.insert(key(&id), session.clone());
        Ok((id, session))
    }

    /// The live session `id` names at `now`, if any (an expired one is
    /// dropped).
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let key = key(id);
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        match live.get(&key) {
            Some(session) if session.expires > now => Some(session.clone()),
            Some(_) => {
                live.remove(&key);
                None
            }
            None => None,
        }
    }

    /// End session `id` (logout).
    pub fn close(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(id));
    }

    /// How many sessions are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_until_it_expires_or_is_closed() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let (id, session) = sessions
            .open(Approver::named("grace"), start)
            .expect("random");
        assert_eq!(id.len(), 43, "256 bits, base64url");
        assert_eq!(session.csrf.len(), 43);
        assert_ne!(&*session.csrf, id.as_str());
        let found = sessions
            .get(&id, start + Duration::from_secs(60))
            .expect("live");
        assert_eq!(&*found.approver.name, "grace");
        assert!(sessions.get("not-an-id", start).is_none());
        assert!(sessions.get(&id, start + LIFETIME).is_none(), "expired");
        assert_eq!(sessions.len(), 0, "an expired session is dropped");
        let (id, _) = sessions
            .open(Approver::named("grace"), start)
            .expect("random");
        sessions.close(&id);
        assert!(sessions.get(&id, start).is_none());
    }

    #[test]
    fn a_full_map_drops_the_expired_then_the_oldest() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let (first, _) = sessions
            .open(Approver::named("first"), start)
            .expect("random");
        let mut last = String::new();
        for n in 1..MAX_SESSIONS {
            let at = start + Duration::from_secs(u64::try_from(n).expect("small"));
            last = sessions
                .open(Approver::named("more"), at)
                .expect("random")
                .0;
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        let later = start + Duration::from_secs(5000);
        let (newest, _) = sessions
            .open(Approver::named("newest"), later)
            .expect("random");
        assert_eq!(sessions.len(), MAX_SESSIONS, "bounded");
        assert!(sessions.get(&first, later).is_none(), "the oldest went");
        assert!(sessions.get(&last, later).is_some());
        assert!(sessions.get(&newest, later).is_some());
        // Past everyone's lifetime, a login clears the expired ones.
        let much_later = start + LIFETIME + Duration::from_secs(6000);
        sessions
            .open(Approver::named("again"), much_later)
            .expect("random");
        assert_eq!(sessions.len(), 1, "every expired session went");
    }
}
