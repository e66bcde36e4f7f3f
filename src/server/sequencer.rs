//! The sequencer thread: the only writer of the tree.
//!
//! Each pass it takes every shard's batch, validates writes against the speculative tree
//! (`prep`), assigns zxids, applies the txns, expires sessions by tick, reaps empty
//! containers and expired TTL nodes, and publishes one [`Commit`] to every shard.
//!
//! Standalone without storage, a txn is committed as soon as it is applied. The seam for
//! the log is [`Sequencer::publish`]: storage makes a batch durable there before the
//! commit leaves, and replication waits for a quorum there.

use super::mailbox::{Mailbox, Signal};
use super::msg::*;
use crate::prep::{self, Caller, PrepConfig, PrepError};
use crate::proto::{Code, OpCode, Request};
use crate::session::{self, SessionTracker};
use crate::tree::DataTree;
use crate::txn::{Txn, TxnOp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Settings the sequencer needs.
#[derive(Debug, Clone)]
pub struct SequencerConfig {
    pub server_id: u8,
    pub tick_ms: i64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub prep: PrepConfig,
    /// How often empty containers and expired TTL nodes are looked for
    /// (`znode.container.checkIntervalMs`).
    pub container_check_interval_ms: i64,
    /// The most containers/TTL nodes deleted per check (`znode.container.maxPerMinute`
    /// spirit: a burst of reaping must not crowd out client writes).
    pub container_max_per_check: usize,
}

/// State shared with the four-letter words and metrics.
#[derive(Debug, Default)]
pub struct SequencerStats {
    pub last_zxid: AtomicI64,
    pub sessions: AtomicI64,
    /// Sessions by expiry time (wall clock ms), refreshed every tick, for `dump`.
    expiry: std::sync::Mutex<Vec<(i64, Vec<i64>)>>,
}

impl SequencerStats {
    pub fn expiry(&self) -> Vec<(i64, Vec<i64>)> {
        self.expiry.lock().expect("expiry poisoned").clone()
    }
}

pub struct Sequencer {
    cfg: SequencerConfig,
    tree: DataTree,
    zxid: i64,
    sessions: SessionTracker,
    /// The connection each session is attached to, to close the old one on a move.
    owners: HashMap<i64, ConnRef>,
    inboxes: Vec<Arc<Mailbox<ToSeq>>>,
    outboxes: Vec<Arc<Mailbox<ToShard>>>,
    signal: Arc<Signal>,
    entries: Vec<Entry>,
    started: Instant,
    next_reap_ms: i64,
    next_tick_ms: i64,
    /// Added to the monotonic clock; only tests move it.
    clock_offset_ms: i64,
    batch: Vec<ToSeq>,
    stats: Arc<SequencerStats>,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Sequencer {
    pub fn new(
        cfg: SequencerConfig,
        tree: DataTree,
        zxid: i64,
        inboxes: Vec<Arc<Mailbox<ToSeq>>>,
        outboxes: Vec<Arc<Mailbox<ToShard>>>,
        signal: Arc<Signal>,
        stats: Arc<SequencerStats>,
    ) -> Self {
        let mut sessions = SessionTracker::new(cfg.server_id, wall_ms(), cfg.tick_ms);
        // Sessions restored with the tree get a full timeout from now, as ZooKeeper does
        // at start.
        for (id, timeout) in tree.sessions() {
            sessions.add(id, timeout, 0);
        }
        stats.last_zxid.store(zxid, Ordering::Relaxed);
        Sequencer {
            next_reap_ms: cfg.container_check_interval_ms,
            next_tick_ms: cfg.tick_ms,
            clock_offset_ms: 0,
            batch: Vec::new(),
            cfg,
            tree,
            zxid,
            sessions,
            owners: HashMap::new(),
            inboxes,
            outboxes,
            signal,
            entries: Vec::new(),
            started: Instant::now(),
            stats,
        }
    }

    fn now_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64 + self.clock_offset_ms
    }

    /// Runs until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        // Wake at least every half tick so expiry lags by at most half a tick.
        let wait = Duration::from_millis((self.cfg.tick_ms / 2).max(1) as u64);
        while !stop.load(Ordering::Acquire) {
            self.signal.wait(wait);
            self.step();
        }
    }

    /// One pass: every shard's requests, then expiry and reaping when due, then one
    /// commit to every shard.
    pub fn step(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        for i in 0..self.inboxes.len() {
            self.inboxes[i].drain_into(&mut batch);
            for msg in batch.drain(..) {
                self.handle(msg);
            }
        }
        self.batch = batch;
        let now = self.now_ms();
        if now >= self.next_tick_ms {
            self.expire(now);
            self.next_tick_ms = now + self.cfg.tick_ms;
            // Bucket times are on the monotonic clock; `dump` prints wall clock.
            let offset = wall_ms() - now;
            *self.stats.expiry.lock().expect("expiry poisoned") = self
                .sessions
                .by_expiry()
                .into_iter()
                .map(|(at, ids)| (at + offset, ids))
                .collect();
        }
        if now >= self.next_reap_ms {
            self.reap();
            self.next_reap_ms = now + self.cfg.container_check_interval_ms;
        }
        self.publish();
    }

    /// Moves the sequencer's clock, for deterministic tests.
    pub fn advance_clock_for_test(&mut self, ms: i64) {
        self.clock_offset_ms += ms;
    }

    fn handle(&mut self, msg: ToSeq) {
        match msg {
            ToSeq::Connect { conn, req, .. } => self.connect(conn, req),
            ToSeq::Request {
                origin,
                session_id,
                req,
                ids,
            } => self.request(origin, session_id, req, &ids),
            ToSeq::Touch(ids) => {
                let now = self.now_ms();
                for id in ids {
                    self.sessions.touch(id, now);
                }
            }
            ToSeq::Detached { conn, session_id } => {
                if self.owners.get(&session_id) == Some(&conn) {
                    self.owners.remove(&session_id);
                }
            }
        }
    }

    fn clamp_timeout(&self, requested: i32) -> i32 {
        requested.clamp(
            self.cfg.min_session_timeout_ms,
            self.cfg.max_session_timeout_ms,
        )
    }

    fn connect(&mut self, conn: ConnRef, req: crate::proto::ConnectRequest) {
        if req.last_zxid_seen > self.zxid {
            // The client saw a newer state than ours: it must not see an older one here.
            eprintln!(
                "ringkeeper: refusing session request: client has seen zxid {:#x}, our last zxid is {:#x}",
                req.last_zxid_seen, self.zxid
            );
            self.entries.push(Entry::Connect {
                conn,
                outcome: ConnectOutcome::Refused,
            });
            return;
        }
        if req.session_id == 0 {
            let timeout_ms = self.clamp_timeout(req.timeout_ms);
            let id = self.sessions.next_session_id();
            let origin = Origin {
                conn,
                xid: 0,
                op: OpCode::CreateSession,
                received: Instant::now(),
            };
            self.owners.insert(id, conn);
            self.commit_op(id, 0, TxnOp::CreateSession { timeout_ms }, Some(origin));
            self.sessions.add(id, timeout_ms, self.now_ms());
            return;
        }
        let id = req.session_id;
        let now = self.now_ms();
        // ZooKeeper closes the session's current connection before it checks the
        // password: a resume attempt always moves the session off its old connection.
        if let Some(old) = self.owners.remove(&id) {
            if old != conn {
                self.outboxes[old.shard].push_unbounded(ToShard::Close(old));
            }
        }
        let password_ok = req
            .passwd
            .as_deref()
            .is_some_and(|p| p == session::password(id));
        let outcome = match self.tree.session_timeout(id) {
            Some(timeout_ms) if password_ok && self.sessions.touch(id, now) => {
                self.owners.insert(id, conn);
                ConnectOutcome::Resumed {
                    session_id: id,
                    timeout_ms,
                }
            }
            _ => ConnectOutcome::Expired,
        };
        self.entries.push(Entry::Connect { conn, outcome });
    }

    fn request(&mut self, origin: Origin, session_id: i64, req: Request, ids: &[crate::proto::Id]) {
        let now = self.now_ms();
        if !self.sessions.touch(session_id, now) {
            self.entries.push(Entry::Failed {
                origin,
                zxid: self.zxid,
                error: PrepError {
                    code: Code::SessionExpired,
                    multi: None,
                },
            });
            return;
        }
        if let Request::Sync(s) = &req {
            self.entries.push(Entry::Sync {
                origin,
                zxid: self.zxid,
                path: s.path.clone(),
            });
            return;
        }
        if matches!(req, Request::CloseSession) {
            self.sessions.set_closing(session_id);
        }
        let caller = Caller { session_id, ids };
        match prep::prep(&self.tree, &self.cfg.prep, &caller, &req, wall_ms()) {
            Ok(op) => self.commit_op(session_id, origin.xid, op, Some(origin)),
            Err(error) => self.entries.push(Entry::Failed {
                origin,
                zxid: self.zxid,
                error,
            }),
        }
    }

    /// Assigns the next zxid to `op`, applies it and queues its entry.
    fn commit_op(&mut self, session_id: i64, cxid: i32, op: TxnOp, origin: Option<Origin>) {
        self.zxid += 1;
        let closes = matches!(op, TxnOp::CloseSession { .. });
        let txn = Txn {
            session_id,
            cxid,
            zxid: self.zxid,
            time_ms: wall_ms(),
            op,
        };
        let applied = self.tree.apply(&txn);
        if closes {
            self.sessions.remove(session_id);
            self.owners.remove(&session_id);
        }
        self.entries.push(Entry::Txn {
            txn,
            applied,
            origin,
        });
    }

    fn expire(&mut self, now: i64) {
        for id in self.sessions.expire(now) {
            match prep::prep_close_session(&self.tree, id) {
                Ok(op) => self.commit_op(id, 0, op, None),
                Err(e) => panic!("closing expired session {id:#x} failed validation: {e:?}"),
            }
        }
    }

    fn reap(&mut self) {
        let now = wall_ms();
        let candidates = self
            .tree
            .reap_candidates(now, self.cfg.prep.container_max_never_used_ms);
        for path in candidates
            .into_iter()
            .take(self.cfg.container_max_per_check)
        {
            // Re-validated: a child may have been created since the scan.
            if let Ok(op) = prep::prep_reap(&self.tree, &self.cfg.prep, &path, now) {
                self.commit_op(0, 0, op, None);
            }
        }
    }

    /// Sends the pass's entries to every shard. Storage and replication hook in here.
    fn publish(&mut self) {
        if self.entries.is_empty() {
            return;
        }
        self.stats.last_zxid.store(self.zxid, Ordering::Relaxed);
        self.stats
            .sessions
            .store(self.sessions.len() as i64, Ordering::Relaxed);
        let commit = Arc::new(Commit {
            entries: std::mem::take(&mut self.entries),
            root: self.tree.clone(),
            zxid: self.zxid,
        });
        for out in &self.outboxes {
            out.push_unbounded(ToShard::Commit(commit.clone()));
        }
    }
}
