//! The session tracker: which sessions are alive, when each expires, and their
//! passwords. Expiry works in tick buckets as ZooKeeper's `ExpiryQueue` does: a touched
//! session moves to the bucket `roundUp(now + timeout, tick)`, and a tick expires whole
//! buckets, so expiry costs nothing per session per tick.
//!
//! Sessions themselves are created and closed by txns (so every replica agrees); this
//! tracker is the leader's soft state about liveness. Pure: time arrives as `now_ms`.

use std::collections::{BTreeMap, HashMap, HashSet};

/// The length of a session password on the wire.
pub const PASSWORD_LEN: usize = 16;

/// ZooKeeper's `ZooKeeperServer.superSecret`, which seeds session passwords.
const ZK_SUPER_SECRET: i64 = 0xB341_5C00;

/// The password of a session, derived from its id exactly as ZooKeeper derives it
/// (`ZooKeeperServer.generatePasswd`: 16 bytes of `java.util.Random(id ^ superSecret)`),
/// so that every server of an ensemble agrees, and a session survives a move between
/// ZooKeeper and RingKeeper (a client keeps the password it was given and presents it
/// when it reconnects). Like ZooKeeper's, it only ties a reconnect to the session id; it
/// is no secret.
pub fn password(session_id: i64) -> [u8; PASSWORD_LEN] {
    // java.util.Random: a 48-bit linear congruential generator.
    const MULT: i64 = 0x5_DEEC_E66D;
    const MASK: i64 = (1 << 48) - 1;
    let mut seed = (session_id ^ ZK_SUPER_SECRET ^ MULT) & MASK;
    let mut p = [0u8; PASSWORD_LEN];
    for chunk in p.chunks_mut(4) {
        // nextInt() = next(32); nextBytes takes its bytes low byte first.
        seed = (seed.wrapping_mul(MULT).wrapping_add(0xB)) & MASK;
        let rnd = (seed >> 16) as i32;
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = (rnd >> (8 * i)) as u8;
        }
    }
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

    const ZK_PASSWORD_0100000000000001: [u8; 16] = [
        5, 76, 199, 74, 55, 50, 125, 178, 21, 231, 2, 226, 12, 115, 240, 5,
    ];

    #[test]
    fn passwords_are_stable_and_distinct() {
        assert_eq!(password(42), password(42));
        assert_ne!(password(42), password(43));
        // Checked against ZooKeeper's generatePasswd on a JVM:
        // new java.util.Random(id ^ 0xB3415C00L).nextBytes(b) for a 16-byte b.
        assert_eq!(
            password(0x0100_0000_0000_0001),
            ZK_PASSWORD_0100000000000001
        );
        assert_eq!(
            password(i64::MAX),
            [32, 246, 44, 181, 100, 141, 194, 215, 113, 71, 28, 138, 36, 134, 169, 238]
        );
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
