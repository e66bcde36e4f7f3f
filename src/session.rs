//! The session tracker: which sessions are alive, when each expires, and their
//! passwords. Expiry works in tick buckets as ZooKeeper's `ExpiryQueue` does: a touched
//! session moves to the bucket `roundUp(now + timeout, tick)`, and a tick expires whole
//! buckets, so expiry costs nothing per session per tick.
//!
//! Sessions themselves are created and closed by txns (so every replica agrees); this
//! tracker is the leader's soft state about liveness. Pure: time arrives as `now_ms`.

use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The length of a session password on the wire.
pub const PASSWORD_LEN: usize = 16;

/// Keys session passwords. Only servers check passwords, and a client may resume on any
/// server of the ensemble, so every server derives the same password from the id.
const PASSWORD_SECRET: &[u8] = b"ringkeeper session password v1";

/// The password of a session: a keyed hash of its id, identical on every server.
pub fn password(session_id: i64) -> [u8; PASSWORD_LEN] {
    let mut h = Sha1::new();
    h.update(PASSWORD_SECRET);
    h.update(session_id.to_be_bytes());
    let d = h.finalize();
    let mut p = [0u8; PASSWORD_LEN];
    p.copy_from_slice(&d[..PASSWORD_LEN]);
    p
}

/// The first session id of a server: `((now_ms << 24) >>> 8) | (server_id << 56)`, so ids
/// from different servers and different starts do not collide (ZooKeeper's rule).
pub fn initial_session_id(server_id: u8, now_ms: i64) -> i64 {
    let t = ((now_ms << 24) as u64 >> 8) as i64;
    t | ((server_id as i64) << 56)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    timeout_ms: i32,
    /// The bucket (a multiple of the tick) in which the session expires.
    expires_at_ms: i64,
    /// Set once expiry or close has begun: the session may no longer be touched.
    closing: bool,
}

/// Liveness of every session, by expiry bucket.
#[derive(Debug)]
pub struct SessionTracker {
    tick_ms: i64,
    sessions: HashMap<i64, Entry>,
    buckets: BTreeMap<i64, HashSet<i64>>,
    next_id: i64,
}

impl SessionTracker {
    /// # Panics
    /// If `tick_ms` is not positive.
    pub fn new(server_id: u8, now_ms: i64, tick_ms: i64) -> Self {
        assert!(tick_ms > 0, "tick must be positive, got {tick_ms}");
        SessionTracker {
            tick_ms,
            sessions: HashMap::new(),
            buckets: BTreeMap::new(),
            next_id: initial_session_id(server_id, now_ms),
        }
    }

    /// A fresh session id (not yet tracked: `add` it when its txn commits).
    pub fn next_session_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Makes sure ids handed out later exceed `id` (after loading sessions from disk).
    pub fn observe_id(&mut self, id: i64) {
        if id >= self.next_id && (id >> 56) == (self.next_id >> 56) {
            self.next_id = id + 1;
        }
    }

    fn bucket(&self, now_ms: i64, timeout_ms: i32) -> i64 {
        let t = now_ms + timeout_ms as i64;
        (t / self.tick_ms + 1) * self.tick_ms
    }

    fn place(&mut self, id: i64, at: i64) {
        let e = self
            .sessions
            .get_mut(&id)
            .expect("placing an untracked session");
        if e.expires_at_ms == at {
            return;
        }
        if let Some(b) = self.buckets.get_mut(&e.expires_at_ms) {
            b.remove(&id);
            if b.is_empty() {
                self.buckets.remove(&e.expires_at_ms);
            }
        }
        e.expires_at_ms = at;
        self.buckets.entry(at).or_default().insert(id);
    }

    /// Tracks a session (created, or loaded at start) as alive from `now_ms`.
    pub fn add(&mut self, id: i64, timeout_ms: i32, now_ms: i64) {
        self.sessions.insert(
            id,
            Entry {
                timeout_ms,
                expires_at_ms: i64::MIN,
                closing: false,
            },
        );
        let at = self.bucket(now_ms, timeout_ms);
        self.place(id, at);
        self.observe_id(id);
    }

    /// Records activity; false if the session is unknown or closing (the caller answers
    /// SESSIONEXPIRED).
    pub fn touch(&mut self, id: i64, now_ms: i64) -> bool {
        let Some(e) = self.sessions.get(&id) else {
            return false;
        };
        if e.closing {
            return false;
        }
        let at = self.bucket(now_ms, e.timeout_ms);
        // Buckets only move forward: a touch never shortens a session's life.
        if at > e.expires_at_ms {
            self.place(id, at);
        }
        true
    }

    pub fn is_alive(&self, id: i64) -> bool {
        self.sessions.get(&id).is_some_and(|e| !e.closing)
    }

    pub fn timeout_ms(&self, id: i64) -> Option<i32> {
        self.sessions.get(&id).map(|e| e.timeout_ms)
    }

    /// Marks a session as closing (its closeSession txn is on its way).
    pub fn set_closing(&mut self, id: i64) {
        if let Some(e) = self.sessions.get_mut(&id) {
            e.closing = true;
        }
    }

    /// Forgets a session (its closeSession txn was applied).
    pub fn remove(&mut self, id: i64) {
        if let Some(e) = self.sessions.remove(&id) {
            if let Some(b) = self.buckets.get_mut(&e.expires_at_ms) {
                b.remove(&id);
                if b.is_empty() {
                    self.buckets.remove(&e.expires_at_ms);
                }
            }
        }
    }

    /// The sessions whose bucket has passed at `now_ms`, marked closing, in id order.
    pub fn expire(&mut self, now_ms: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let due: Vec<i64> = self.buckets.range(..=now_ms).map(|(k, _)| *k).collect();
        for k in due {
            for id in self.buckets.remove(&k).unwrap_or_default() {
                let e = self
                    .sessions
                    .get_mut(&id)
                    .expect("bucketed session untracked");
                if !e.closing {
                    e.closing = true;
                    out.push(id);
                }
                // Keep it tracked (closing) until its close txn applies.
                e.expires_at_ms = i64::MIN;
            }
        }
        out.sort_unstable();
        out
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Sessions by expiry bucket, for the `dump` four-letter word.
    pub fn by_expiry(&self) -> Vec<(i64, Vec<i64>)> {
        self.buckets
            .iter()
            .map(|(k, v)| {
                let mut ids: Vec<i64> = v.iter().copied().collect();
                ids.sort_unstable();
                (*k, ids)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_stable_and_distinct() {
        assert_eq!(password(42), password(42));
        assert_ne!(password(42), password(43));
    }

    #[test]
    fn session_ids_carry_server_id_and_increase() {
        let mut t = SessionTracker::new(3, 1_700_000_000_000, 2000);
        let a = t.next_session_id();
        let b = t.next_session_id();
        assert_eq!(a >> 56, 3);
        assert_eq!(b, a + 1);
    }

    #[test]
    fn expires_after_timeout_rounded_to_tick() {
        let mut t = SessionTracker::new(0, 0, 1000);
        t.add(1, 4000, 0);
        // Bucket = (0 + 4000) / 1000 + 1 ticks = 5000.
        assert!(t.expire(4999).is_empty());
        assert_eq!(t.expire(5000), vec![1]);
        assert!(!t.touch(1, 5001), "an expiring session cannot be revived");
        assert!(t.expire(100_000).is_empty());
        t.remove(1);
        assert!(t.is_empty());
    }

    #[test]
    fn touch_postpones_expiry() {
        let mut t = SessionTracker::new(0, 0, 1000);
        t.add(1, 4000, 0);
        t.add(2, 4000, 0);
        assert!(t.touch(1, 3500));
        assert_eq!(t.expire(5000), vec![2]);
        assert!(t.expire(7999).is_empty());
        assert_eq!(t.expire(8000), vec![1]);
    }

    #[test]
    fn touch_of_unknown_session_fails() {
        let mut t = SessionTracker::new(0, 0, 1000);
        assert!(!t.touch(99, 0));
    }
}
