//! The dashboard's login sessions, kept by the hub: the cookie carries only a
//! random session id; the bureau token it stands for stays on the hub.
//!
//! Invariants: a session id is 32 random bytes from the operating system's
//! generator (via `rand`'s thread generator), shown as hex; a session ends
//! at [`SESSION_LIFETIME`] after login, after [`SESSION_IDLE`] without a
//! request, at logout, and at the first request after its token is revoked
//! (the token is authenticated again on every request); ended sessions are
//! forgotten; the hub holds at most [`MAX_SESSIONS`], the oldest giving way.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::RngCore as _;

/// How long a session lasts at most.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// How long a session lasts without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// Sessions held at most.
pub const MAX_SESSIONS: usize = 10_000;

/// One login.
#[derive(Debug)]
struct Session {
    /// The bearer token the login presented.
    token: String,
    /// When it logged in.
    created: Instant,
    /// Its last request.
    seen: Instant,
}

/// The sessions of the HTTP side.
#[derive(Debug)]
pub struct Sessions {
    /// By session id.
    sessions: Mutex<HashMap<String, Session>>,
    /// [`SESSION_LIFETIME`], shorter in tests.
    lifetime: Duration,
    /// [`SESSION_IDLE`], shorter in tests.
    idle: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(SESSION_LIFETIME, SESSION_IDLE)
    }
}

impl Sessions {
    /// Sessions ending `lifetime` after login or `idle` after their last
    /// request.
    pub fn new(lifetime: Duration, idle: Duration) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            lifetime,
            idle,
        }
    }

    /// How long a new session lasts at most, for the cookie's `Max-Age`.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Opens a session for the bearer `token` (already authenticated) and
    /// returns its id.
    pub fn open(&self, token: String) -> String {
        let mut bytes = [0_u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| self.live(s, now));
        }
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                token,
                created: now,
                seen: now,
            },
        );
        id
    }

    fn live(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.created) < self.lifetime
            && now.duration_since(session.seen) < self.idle
    }

    /// The bearer token of the live session `id`, marking it used; `None`
    /// (and the session forgotten) when it has ended.
    pub fn token(&self, id: &str) -> Option<String> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let session = sessions.get_mut(id)?;
        if !self.live(session, now) {
            sessions.remove(id);
            return None;
        }
        session.seen = now;
        Some(session.token.clone())
    }

    /// Ends the session `id` (logout, or its token refused).
    pub fn end(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_and_end() {
        let sessions = Sessions::default();
        let a = sessions.open("t.a".into());
        let b = sessions.open("t.a".into());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(sessions.token(&a).as_deref(), Some("t.a"));
        sessions.end(&a);
        assert_eq!(sessions.token(&a), None);
        assert_eq!(sessions.token("t.a"), None);
        let expired = Sessions::new(Duration::ZERO, SESSION_IDLE);
        let c = expired.open("t.c".into());
        assert_eq!(expired.token(&c), None);
        let idle = Sessions::new(SESSION_LIFETIME, Duration::ZERO);
        let d = idle.open("t.d".into());
        assert_eq!(idle.token(&d), None);
    }
}
