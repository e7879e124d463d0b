//! Session affinity: a session (an `x-session-id`, the `user` field) stays
//! on the replica that served it until `ttl_ms` after its last request;
//! bounded in entries, the oldest sessions forgotten first.

use super::generations::Generations;

/// Sessions and the replica each is bound to, with its expiry.
pub struct Sessions {
    bound: Generations<(u32, u64)>,
    ttl_ms: u64,
}

impl Sessions {
    /// At most `max_sessions`, each kept `ttl_ms` after its last request.
    pub fn new(max_sessions: u64, ttl_ms: u64) -> Self {
        Self {
            bound: Generations::new(max_sessions),
            ttl_ms,
        }
    }

    /// The replica `session` is bound to at `now_ms`, unless expired.
    pub fn replica(&self, session: u64, now_ms: u64) -> Option<usize> {
        let (replica, expires) = self.bound.get(session)?;
        (now_ms < expires).then_some(replica as usize)
    }

    /// Binds `session` to `replica` from `now_ms` on.
    pub fn bind(&mut self, session: u64, replica: usize, now_ms: u64) {
        let replica = u32::try_from(replica).unwrap_or(u32::MAX);
        self.bound
            .insert(session, (replica, now_ms.saturating_add(self.ttl_ms)));
    }

    /// Sessions remembered (expired ones until they are dropped).
    pub fn len(&self) -> usize {
        self.bound.len()
    }

    /// True when none is remembered.
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty()
    }

    /// Bytes held.
    pub fn allocated_bytes(&self) -> usize {
        self.bound.allocated_bytes()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_session_stays_bound_until_its_ttl_after_its_last_request() {
        let mut sessions = Sessions::new(100, 1_000);
        sessions.bind(7, 2, 10_000);
        assert_eq!(sessions.replica(7, 10_999), Some(2));
        assert_eq!(sessions.replica(7, 11_000), None, "expired");
        sessions.bind(7, 1, 10_500); // a request on another replica rebinds
        assert_eq!(sessions.replica(7, 11_200), Some(1));
        assert_eq!(sessions.replica(8, 0), None);
    }

    #[test]
    fn sessions_are_bounded() {
        let mut sessions = Sessions::new(64, 60_000);
        for s in 0..10_000_u64 {
            sessions.bind(s.wrapping_mul(0x9E37_79B9_7F4A_7C15), 0, 0);
        }
        assert!(sessions.len() <= 64);
        assert!(!sessions.is_empty());
    }
}
