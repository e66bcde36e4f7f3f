//! The sequencer thread: the only writer of the tree.
//!
//! Each pass it takes every shard's batch, validates writes against the speculative tree
//! (`prep`), assigns zxids, applies the txns, expires sessions by tick, reaps empty
//! containers and expired TTL nodes, and publishes one [`Commit`] to every shard.
//!
//! Durability: each pass's txns go to the [`Logger`] as one batch, and the pass's
//! entries wait in `pending` (with the tree root after them) until the logger reports
//! them durable; then they are published, in zxid order. Entries without txns (failed
//! validation, syncs, resumes) wait behind the txns before them, so every answer leaves
//! in order. Without storage (tests), a batch is durable as soon as it is applied.
//!
//! A log write that fails (ENOSPC, EIO) fails every write it covered and every write
//! after it that was not yet durable: their clients get SYSTEMERROR, the speculative
//! tree is rebuilt from the last published root, and new writes fail at once until the
//! logger has accounted for every batch sent before the failure. Then writing resumes,
//! so the server recovers when space returns. Reads are served throughout.

use super::bridge::{ReplBridge, ToSeqRepl};
use super::mailbox::{Mailbox, Signal};
use super::msg::*;
use crate::prep::{self, Caller, PrepConfig, PrepError};
use crate::proto::{Code, OpCode, Request};
use crate::session::{self, SessionTracker};
use crate::storage::snapshot::{self, SnapPolicy, Snapshotter};
use crate::storage::{Disk, LogConfig, LogEvent, LogPosition, Logger};
use crate::tree::DataTree;
use crate::txn::{Txn, TxnOp};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
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
    /// The durable log and snapshots; `None` keeps data in memory only (tests).
    pub storage: Option<StorageConfig>,
    /// The replication loop of an ensemble; `None` is standalone.
    pub repl: Option<Arc<ReplBridge>>,
}

/// What this sequencer may do, set by the replication loop (always `Standalone` without
/// one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Standalone,
    /// Electing or syncing: no client writes or sessions; committed txns are applied.
    Looking,
    /// Takes writes; publishes a pass once the quorum committed it.
    Leader,
    /// Applies what the leader commits. Client writes and session traffic are refused
    /// (the client moves to another server) until forwarding is built.
    Follower,
}

/// Where and how the sequencer persists.
#[derive(Clone)]
pub struct StorageConfig {
    pub disk: Arc<dyn Disk>,
    pub log: LogConfig,
    /// Where the log resumes (from recovery).
    pub position: LogPosition,
    /// dataDir: snapshots.
    pub snap_dir: PathBuf,
    /// `snapCount`: a snapshot after a random number of txns in [snapCount/2+1, snapCount].
    pub snap_count: u64,
    /// `snapSizeLimitInKb` in bytes (0: off): log bytes between snapshots.
    pub snap_size_bytes: u64,
    /// `autopurge.snapRetainCount` (at least 3).
    pub snap_retain_count: usize,
    /// `autopurge.purgeInterval` in ms (0: off).
    pub purge_interval_ms: i64,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("log", &self.log)
            .field("position", &self.position)
            .field("snap_dir", &self.snap_dir)
            .finish()
    }
}

/// The persisting side of the sequencer: log writer, snapshot thread and policy.
struct Storage {
    logger: Logger,
    snapshotter: Snapshotter,
    policy: SnapPolicy,
    cfg: StorageConfig,
    next_purge_ms: i64,
}

/// One pass's entries waiting until every txn up to `last_zxid` is durable.
struct Pending {
    last_zxid: i64,
    entries: Vec<Entry>,
    root: DataTree,
    /// When the pass was handed to the log (the `logged` stage starts here).
    appended_at: Instant,
    /// Client writes in the pass (samples for the `logged` and `committed` stages).
    writes: u64,
}

/// State shared with the four-letter words and metrics.
#[derive(Debug, Default)]
pub struct SequencerStats {
    /// Write-stage and read latency histograms (shared with the shards).
    pub metrics: super::metrics::Metrics,
    pub last_zxid: AtomicI64,
    /// The zxid of the newest commit handed (or being handed) to the shards.
    pub published_zxid: AtomicI64,
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
    storage: Option<Storage>,
    /// Txns of the current pass, for the log.
    log_batch: Vec<Txn>,
    /// Batches the logger had no room for, retried in order before any newer one.
    unlogged: VecDeque<Vec<crate::zab::Txn>>,
    /// Passes waiting for durability, oldest first.
    pending: VecDeque<Pending>,
    /// Every zxid up to this one is durable.
    durable_zxid: i64,
    /// The highest zxid handed to the logger.
    appended_zxid: i64,
    /// The root and zxid last published (always durable).
    committed: (DataTree, i64),
    /// After a log failure: writes fail until the logger has reported on every batch up
    /// to this zxid (all sent before the failure).
    failed_until: Option<i64>,
    log_events: Vec<LogEvent>,
    role: Role,
    /// Leader: every txn through this zxid is committed by a quorum.
    quorum_committed: i64,
    /// Leader: this pass's txns, encoded for ZAB.
    repl_batch: Vec<bytes::Bytes>,
    repl_inbox: Vec<ToSeqRepl>,
    /// When log events were last taken in (the end of the `logged` stage).
    durable_seen_at: Instant,
    /// Rate limit of the log-failure error line, and failures since it was printed.
    last_log_error: Option<Instant>,
    log_failures: u64,
    /// A log write failed and none has succeeded since.
    log_recovering: bool,
    /// Learner: requests forwarded to the leader, by (session, xid), answered when the
    /// txn the leader made of them is applied here.
    forwarded: HashMap<(i64, i32), Waiting>,
    /// Learner: resumes the leader is asked about, by token.
    revalidating: HashMap<i64, (ConnRef, i64)>,
    next_token: i64,
    /// Learner: sessions touched by clients since the last report to the leader.
    touched: Vec<i64>,
    /// Learner: this pass's payloads for the leader.
    fwd_out: Vec<bytes::Bytes>,
    /// Logging stopped for a restart (`ToSeqRepl::Quiesce`): passes do nothing.
    quiesced: bool,
}

/// A forwarded request waiting for its txn.
struct Waiting {
    origin: Origin,
    /// A sync's path: its txn is answered as a sync.
    sync_path: Option<String>,
}

/// The least time between two log-failure error lines.
const LOG_ERROR_INTERVAL: Duration = Duration::from_secs(5);

/// The origin of a new session's CreateSession txn: the connect on `conn`.
fn session_origin(conn: ConnRef) -> Origin {
    Origin {
        conn,
        xid: 0,
        op: OpCode::CreateSession,
        received: Instant::now(),
    }
}

/// Whether a resuming connect carries the session's password.
fn password_ok(req: &crate::proto::ConnectRequest) -> bool {
    req.passwd
        .as_deref()
        .is_some_and(|p| p == session::password(req.session_id))
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
    ) -> std::io::Result<Self> {
        let storage = match &cfg.storage {
            None => None,
            Some(sc) => {
                let wake = signal.clone();
                let logger = Logger::start(
                    sc.log.clone(),
                    sc.disk.clone(),
                    sc.position,
                    Box::new(move || super::mailbox::Wake::wake(&wake)),
                )?;
                // The replication loop compacts its log on every durable snapshot.
                let bridge = cfg.repl.clone();
                let snapshotter = Snapshotter::start_notifying(
                    sc.disk.clone(),
                    sc.snap_dir.clone(),
                    Box::new(move |zxid| {
                        if let Some(b) = &bridge {
                            b.to_replication(super::replication::Input::SnapshotDurable(
                                zxid as u64,
                            ));
                        }
                    }),
                )?;
                Some(Storage {
                    logger,
                    snapshotter,
                    policy: SnapPolicy::new(sc.snap_count, sc.snap_size_bytes, wall_ms() as u64),
                    cfg: sc.clone(),
                    next_purge_ms: sc.purge_interval_ms,
                })
            }
        };
        let mut sessions = SessionTracker::new(cfg.server_id, wall_ms(), cfg.tick_ms);
        // Sessions restored with the tree get a full timeout from now, as ZooKeeper does
        // at start.
        for (id, timeout) in tree.sessions() {
            sessions.add(id, timeout, 0);
        }
        stats.last_zxid.store(zxid, Ordering::Relaxed);
        let committed = (tree.clone(), zxid);
        let role = match &cfg.repl {
            None => Role::Standalone,
            Some(b) => {
                b.set_sequencer_signal(signal.clone());
                Role::Looking
            }
        };
        Ok(Sequencer {
            role,
            quorum_committed: zxid,
            repl_batch: Vec::new(),
            repl_inbox: Vec::new(),
            next_reap_ms: cfg.container_check_interval_ms,
            next_tick_ms: cfg.tick_ms,
            clock_offset_ms: 0,
            batch: Vec::new(),
            storage,
            log_batch: Vec::new(),
            unlogged: VecDeque::new(),
            pending: VecDeque::new(),
            durable_zxid: zxid,
            appended_zxid: zxid,
            committed,
            failed_until: None,
            log_events: Vec::new(),
            durable_seen_at: Instant::now(),
            last_log_error: None,
            log_failures: 0,
            log_recovering: false,
            forwarded: HashMap::new(),
            revalidating: HashMap::new(),
            next_token: 1,
            touched: Vec::new(),
            fwd_out: Vec::new(),
            quiesced: false,
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
        })
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
        if self.quiesced {
            // The process is about to restart (see `quiesce`): nothing is taken in,
            // logged or published any more.
            return;
        }
        if let Some(b) = self.cfg.repl.clone() {
            let mut inbox = std::mem::take(&mut self.repl_inbox);
            b.drain(&mut inbox);
            for m in inbox.drain(..) {
                if self.quiesced {
                    break;
                }
                self.replication(m);
            }
            self.repl_inbox = inbox;
            if self.quiesced {
                // Not even this pass ends: without the log, `end_pass` would count
                // everything durable.
                return;
            }
        }
        let mut batch = std::mem::take(&mut self.batch);
        for i in 0..self.inboxes.len() {
            self.inboxes[i].drain_into(&mut batch);
            for msg in batch.drain(..) {
                self.handle(msg);
            }
        }
        self.batch = batch;
        let now = self.now_ms();
        // While the log is failing, nothing that needs a txn is started: expiry and
        // reaping wait (sessions live a little longer; nothing is lost).
        let writable =
            self.failed_until.is_none() && matches!(self.role, Role::Standalone | Role::Leader);
        if now >= self.next_tick_ms && writable {
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
        if now >= self.next_reap_ms && writable {
            self.reap();
            self.next_reap_ms = now + self.cfg.container_check_interval_ms;
        }
        self.end_pass();
        self.purge_if_due(now);
    }

    /// Moves the sequencer's clock, for deterministic tests.
    pub fn advance_clock_for_test(&mut self, ms: i64) {
        self.clock_offset_ms += ms;
    }

    fn handle(&mut self, msg: ToSeq) {
        if self.role == Role::Follower {
            self.handle_as_learner(msg);
            return;
        }
        if self.role == Role::Looking {
            match msg {
                // Not serving writes or sessions here: the client tries another server.
                ToSeq::Connect { conn, .. } => self.entries.push(Entry::Connect {
                    conn,
                    outcome: ConnectOutcome::Refused,
                }),
                ToSeq::Request { origin, .. } => self.entries.push(Entry::Failed {
                    origin,
                    zxid: self.zxid,
                    error: PrepError {
                        code: Code::ConnectionLoss,
                        multi: None,
                    },
                }),
                ToSeq::Touch(_) | ToSeq::Detached { .. } => {}
            }
            return;
        }
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

    /// A learner serves reads itself (the shards do) and hands the rest to the leader;
    /// see `forward`.
    fn handle_as_learner(&mut self, msg: ToSeq) {
        use super::forward::Fwd;
        match msg {
            ToSeq::Connect { conn, req, .. } => {
                if self.refused_as_behind(conn, &req) {
                    return;
                }
                if req.session_id == 0 {
                    let timeout_ms = self.clamp_timeout(req.timeout_ms);
                    let session_id = self.sessions.next_session_id();
                    let origin = session_origin(conn);
                    self.forwarded.insert(
                        (session_id, 0),
                        Waiting {
                            origin,
                            sync_path: None,
                        },
                    );
                    self.fwd_out.push(
                        Fwd::CreateSession {
                            session_id,
                            timeout_ms,
                        }
                        .encode(),
                    );
                    return;
                }
                let id = req.session_id;
                if !password_ok(&req) || self.tree.session_timeout(id).is_none() {
                    self.entries.push(Entry::Connect {
                        conn,
                        outcome: ConnectOutcome::Expired,
                    });
                    return;
                }
                let token = self.next_token;
                self.next_token += 1;
                self.revalidating.insert(token, (conn, id));
                self.fwd_out.push(
                    Fwd::Revalidate {
                        session_id: id,
                        token,
                    }
                    .encode(),
                );
            }
            ToSeq::Request {
                origin,
                session_id,
                req,
                ids,
            } => {
                let sync_path = match &req {
                    Request::Sync(s) => Some(s.path.clone()),
                    _ => None,
                };
                let key = (session_id, origin.xid);
                if self.forwarded.contains_key(&key) {
                    // A client reusing an xid in flight: the txns could not be told apart.
                    self.entries.push(Entry::Failed {
                        origin,
                        zxid: self.zxid,
                        error: Code::BadArguments.into(),
                    });
                    return;
                }
                self.forwarded.insert(key, Waiting { origin, sync_path });
                self.fwd_out.push(
                    Fwd::Request {
                        session_id,
                        xid: origin.xid,
                        ids: ids.to_vec(),
                        req,
                    }
                    .encode(),
                );
            }
            ToSeq::Touch(ids) => self.touched.extend(ids),
            ToSeq::Detached { .. } => {}
        }
    }

    /// Leader: requests a learner forwarded.
    fn forwarded(&mut self, from: crate::zab::ServerId, payloads: Vec<bytes::Bytes>) {
        use super::forward::{Answer, Fwd};
        if self.role != Role::Leader {
            // A leader that stepped down: the learner answers its clients when it
            // hears of the election.
            return;
        }
        for p in payloads {
            let fwd = match Fwd::decode(&p) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("ringkeeper: dropping a forward from server {from}: {e}");
                    continue;
                }
            };
            let now = self.now_ms();
            match fwd {
                Fwd::Request {
                    session_id,
                    xid,
                    ids,
                    req,
                } => self.remote_request(session_id, xid, req, &ids),
                Fwd::CreateSession {
                    session_id,
                    timeout_ms,
                } => {
                    if self.failed_until.is_some()
                        || self.tree.session_timeout(session_id).is_some()
                    {
                        // The learner's client times out and retries.
                        continue;
                    }
                    let timeout_ms = self.clamp_timeout(timeout_ms);
                    self.commit_op(session_id, 0, TxnOp::CreateSession { timeout_ms }, None);
                    self.sessions.add(session_id, timeout_ms, now);
                }
                Fwd::Revalidate { session_id, token } => {
                    let timeout_ms = self
                        .tree
                        .session_timeout(session_id)
                        .filter(|_| self.sessions.touch(session_id, now));
                    if let Some(b) = &self.cfg.repl {
                        b.to_replication(super::replication::Input::Reply {
                            to: from,
                            payload: Answer::Revalidated { token, timeout_ms }.encode(),
                        });
                    }
                }
                Fwd::Touch(ids) => {
                    for id in ids {
                        self.sessions.touch(id, now);
                    }
                }
            }
        }
    }

    /// Leader: a forwarded client request. Whatever the outcome it becomes a txn, so the
    /// answer reaches the learner's client in order (see `TxnOp::Error`).
    fn remote_request(
        &mut self,
        session_id: i64,
        xid: i32,
        req: Request,
        ids: &[crate::proto::Id],
    ) {
        let now = self.now_ms();
        if self.failed_until.is_some() {
            // Nothing can be logged: the learner's client times out and retries.
            return;
        }
        let error = |code: Code| TxnOp::Error { code, multi: None };
        if !self.sessions.touch(session_id, now) {
            self.commit_op(session_id, xid, error(Code::SessionExpired), None);
            return;
        }
        if let Request::Sync(_) = &req {
            self.commit_op(session_id, xid, error(Code::Ok), None);
            return;
        }
        if matches!(req, Request::CloseSession) {
            self.sessions.set_closing(session_id);
        }
        let caller = Caller { session_id, ids };
        let op = match prep::prep(&self.tree, &self.cfg.prep, &caller, &req, wall_ms()) {
            Ok(op) => op,
            Err(e) => TxnOp::Error {
                code: e.code,
                multi: e.multi.map(|rs| {
                    rs.into_iter()
                        .map(|r| match r {
                            crate::txn::OpResult::Error(c) => c,
                            other => panic!("a failed multi's result {other:?} is not an error"),
                        })
                        .collect()
                }),
            },
        };
        self.commit_op(session_id, xid, op, None);
    }

    /// Learner: the entry that answers `txn` here, if one of our clients waits for it.
    fn learner_entry(&mut self, txn: Txn, applied: crate::txn::Applied) -> Entry {
        let Some(w) = self.forwarded.remove(&(txn.session_id, txn.cxid)) else {
            return Entry::Txn {
                txn,
                applied,
                origin: None,
            };
        };
        match (&txn.op, w.sync_path) {
            (TxnOp::Error { .. }, Some(path)) => Entry::Sync {
                origin: w.origin,
                zxid: txn.zxid,
                path,
            },
            (TxnOp::Error { code, multi }, None) => Entry::Failed {
                origin: w.origin,
                zxid: txn.zxid,
                error: PrepError {
                    code: *code,
                    multi: multi
                        .as_ref()
                        .map(|m| m.iter().map(|c| crate::txn::OpResult::Error(*c)).collect()),
                },
            },
            _ => Entry::Txn {
                txn,
                applied,
                origin: Some(w.origin),
            },
        }
    }

    /// Learner: the leader is gone; nothing forwarded will be answered by it. Clients
    /// get CONNECTIONLOSS (the write may still commit under the next leader: a client
    /// cannot know either way, as in ZooKeeper).
    fn fail_forwarded(&mut self) {
        let mut waiting: Vec<Waiting> = self.forwarded.drain().map(|(_, w)| w).collect();
        waiting.sort_by_key(|w| (w.origin.conn, w.origin.xid));
        for w in waiting {
            self.entries.push(if w.origin.op == OpCode::CreateSession {
                Entry::Connect {
                    conn: w.origin.conn,
                    outcome: ConnectOutcome::Refused,
                }
            } else {
                Entry::Failed {
                    origin: w.origin,
                    zxid: self.zxid,
                    error: Code::ConnectionLoss.into(),
                }
            });
        }
        let mut conns: Vec<ConnRef> = self.revalidating.drain().map(|(_, (c, _))| c).collect();
        conns.sort();
        for conn in conns {
            self.entries.push(Entry::Connect {
                conn,
                outcome: ConnectOutcome::Refused,
            });
        }
        self.touched.clear();
        self.fwd_out.clear();
    }

    fn clamp_timeout(&self, requested: i32) -> i32 {
        requested.clamp(
            self.cfg.min_session_timeout_ms,
            self.cfg.max_session_timeout_ms,
        )
    }

    /// Refuses a connect from a client that has seen a newer state than ours (it must
    /// not see an older one here; ZooKeeper closes the connection, and the client tries
    /// another server). Returns whether it was refused.
    fn refused_as_behind(&mut self, conn: ConnRef, req: &crate::proto::ConnectRequest) -> bool {
        if req.last_zxid_seen <= self.zxid {
            return false;
        }
        eprintln!(
            "ringkeeper: refusing session request: client has seen zxid {:#x}, our last zxid is {:#x}",
            req.last_zxid_seen, self.zxid
        );
        self.entries.push(Entry::Connect {
            conn,
            outcome: ConnectOutcome::Refused,
        });
        true
    }

    fn connect(&mut self, conn: ConnRef, req: crate::proto::ConnectRequest) {
        if self.refused_as_behind(conn, &req) {
            return;
        }
        if req.session_id == 0 && self.failed_until.is_some() {
            // A new session needs a txn, and the log is failing: the client retries.
            self.entries.push(Entry::Connect {
                conn,
                outcome: ConnectOutcome::Refused,
            });
            return;
        }
        if req.session_id == 0 {
            let timeout_ms = self.clamp_timeout(req.timeout_ms);
            let id = self.sessions.next_session_id();
            let origin = session_origin(conn);
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
        let outcome = match self.tree.session_timeout(id) {
            Some(timeout_ms) if password_ok(&req) && self.sessions.touch(id, now) => {
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
        let taken = Instant::now();
        self.stats
            .metrics
            .queued
            .record(taken.saturating_duration_since(origin.received));
        self.request_inner(origin, session_id, req, ids);
        self.stats.metrics.sequenced.record(taken.elapsed());
    }

    fn request_inner(
        &mut self,
        origin: Origin,
        session_id: i64,
        req: Request,
        ids: &[crate::proto::Id],
    ) {
        let now = self.now_ms();
        if self.failed_until.is_some() && !matches!(req, Request::Sync(_)) {
            // The log is failing: answer at once instead of queueing writes that would
            // fail too.
            self.entries.push(Entry::Failed {
                origin,
                zxid: self.zxid,
                error: PrepError {
                    code: Code::SystemError,
                    multi: None,
                },
            });
            return;
        }
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
        if self.storage.is_some() {
            self.log_batch.push(txn.clone());
        }
        if self.role == Role::Leader {
            let mut b = Vec::new();
            crate::storage::txn_codec::encode_txn(&txn, &mut b);
            self.repl_batch.push(b.into());
        }
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

    /// Ends a pass: its entries wait for durability, its txns go to the log, and every
    /// pass now durable is published.
    fn end_pass(&mut self) {
        if !self.entries.is_empty() {
            let writes = self
                .entries
                .iter()
                .filter(|e| {
                    matches!(e, Entry::Txn { origin: Some(o), .. } if o.op != OpCode::CreateSession)
                })
                .count() as u64;
            self.pending.push_back(Pending {
                last_zxid: self.zxid,
                entries: std::mem::take(&mut self.entries),
                root: self.tree.clone(),
                appended_at: Instant::now(),
                writes,
            });
        }
        if self.role == Role::Follower && !self.touched.is_empty() {
            let mut ids = std::mem::take(&mut self.touched);
            ids.sort_unstable();
            ids.dedup();
            self.fwd_out.push(super::forward::Fwd::Touch(ids).encode());
        }
        if !self.fwd_out.is_empty() {
            let payloads = std::mem::take(&mut self.fwd_out);
            if let Some(b) = &self.cfg.repl {
                b.to_replication(super::replication::Input::Forward(payloads));
            }
        }
        if !self.repl_batch.is_empty() {
            let payloads = std::mem::take(&mut self.repl_batch);
            let last = self.zxid;
            let first = last - payloads.len() as i64 + 1;
            if let Some(b) = &self.cfg.repl {
                b.to_replication(super::replication::Input::ClientWrite {
                    first_zxid: first as u64,
                    payloads,
                });
            }
        }
        match &mut self.storage {
            None => self.durable_zxid = self.zxid,
            Some(st) => {
                if !self.log_batch.is_empty() {
                    self.appended_zxid = self.zxid;
                    self.unlogged.push_back(
                        std::mem::take(&mut self.log_batch)
                            .iter()
                            .map(crate::storage::log::encode_record)
                            .collect(),
                    );
                }
                while let Some(b) = self.unlogged.pop_front() {
                    if let Err(full) = st.logger.append_records(b) {
                        // Retried when the logger reports progress (it wakes us).
                        self.unlogged.push_front(full.0);
                        break;
                    }
                }
                st.logger.poll(&mut self.log_events);
            }
        }
        let mut events = std::mem::take(&mut self.log_events);
        if !events.is_empty() {
            self.durable_seen_at = Instant::now();
        }
        for ev in events.drain(..) {
            match ev {
                LogEvent::Durable { through_zxid } => {
                    self.durable_zxid = self.durable_zxid.max(through_zxid);
                    if self.log_recovering {
                        eprintln!(
                            "ringkeeper: the transaction log is writable again: durable through zxid {through_zxid:#x}"
                        );
                        self.log_recovering = false;
                    }
                    if let Some(b) = &self.cfg.repl {
                        b.to_replication(super::replication::Input::LocalDurable(
                            through_zxid as u64,
                        ));
                    }
                }
                LogEvent::Failed {
                    first_zxid,
                    last_zxid,
                    error,
                } => self.log_failed(first_zxid, last_zxid, error),
            }
        }
        self.log_events = events;
        self.publish_durable();
    }

    /// Carries out what the replication loop says (see [`ToSeqRepl`]).
    fn replication(&mut self, m: ToSeqRepl) {
        match m {
            ToSeqRepl::Lead { epoch } => {
                self.abandon_uncommitted();
                self.role = Role::Leader;
                self.zxid = crate::zab::make_zxid(epoch, 0) as i64;
                self.quorum_committed = self.zxid;
                // Sessions created through other leaders are tracked from now, with a
                // full timeout, as ZooKeeper's new leader does.
                self.rebuild_sessions();
                eprintln!("ringkeeper: sequencer leads epoch {epoch}");
            }
            ToSeqRepl::Follow => {
                self.abandon_uncommitted();
                self.fail_forwarded();
                self.role = Role::Follower;
            }
            ToSeqRepl::Looking => {
                self.abandon_uncommitted();
                self.fail_forwarded();
                // No longer serving: clients must move to a server that does (a
                // minority server may stay looking for good). Their pending requests
                // end with the connection, which clients report as CONNECTIONLOSS.
                if self.role != Role::Looking {
                    for out in &self.outboxes {
                        out.push_unbounded(ToShard::CloseClients);
                    }
                }
                self.role = Role::Looking;
            }
            ToSeqRepl::Quiesce { done } => self.quiesce(done),
            ToSeqRepl::Forwarded { from, payloads } => self.forwarded(from, payloads),
            ToSeqRepl::Answer { payload } => match super::forward::Answer::decode(&payload) {
                Ok(super::forward::Answer::Revalidated { token, timeout_ms }) => {
                    if let Some((conn, session_id)) = self.revalidating.remove(&token) {
                        let outcome = match timeout_ms {
                            Some(timeout_ms) => ConnectOutcome::Resumed {
                                session_id,
                                timeout_ms,
                            },
                            None => ConnectOutcome::Expired,
                        };
                        self.entries.push(Entry::Connect { conn, outcome });
                    }
                }
                Err(e) => eprintln!("ringkeeper: dropping an answer from the leader: {e}"),
            },
            ToSeqRepl::Committed { through } => {
                self.quorum_committed = self.quorum_committed.max(through);
            }
            ToSeqRepl::Append { txns } => {
                if self.storage.is_some() && !txns.is_empty() {
                    self.appended_zxid = txns.last().expect("not empty").zxid;
                    self.unlogged.push_back(
                        txns.iter()
                            .map(crate::storage::log::encode_record)
                            .collect(),
                    );
                } else if let (None, Some(t)) = (&self.storage, txns.last()) {
                    if let Some(b) = &self.cfg.repl {
                        b.to_replication(super::replication::Input::LocalDurable(t.zxid as u64));
                    }
                }
            }
            ToSeqRepl::Apply { txns } => {
                assert!(
                    self.role != Role::Leader || txns.iter().all(|t| t.zxid <= self.zxid),
                    "a leader applies only the history before its epoch"
                );
                for txn in txns {
                    assert!(
                        txn.zxid > self.zxid,
                        "apply out of order: {:#x} after {:#x}",
                        txn.zxid,
                        self.zxid
                    );
                    self.zxid = txn.zxid;
                    let applied = self.tree.apply(&txn);
                    if let TxnOp::CloseSession { .. } = txn.op {
                        self.sessions.remove(txn.session_id);
                        self.owners.remove(&txn.session_id);
                    }
                    let entry = self.learner_entry(txn, applied);
                    self.entries.push(entry);
                }
            }
        }
    }

    /// Stops logging for good and waits for the log: dropping the [`Logger`] writes the
    /// batches already queued to it and joins its thread, so when `done` is answered no
    /// log write is in flight and none will start (batches not yet handed to it are
    /// dropped: nothing reported them durable). The replication loop then cuts or
    /// replaces the log files and restarts the process; until then every pass does
    /// nothing, so no answer leaves for a write that the restart may forget.
    ///
    /// A snapshot being written is not waited for (it can take long): it is of a root
    /// this server committed, so at or below its commit point, which a TRUNC never cuts
    /// and a SNAP's zxid is above. What it leaves (an older snapshot, a temporary file
    /// that purge removes) is consistent with what the loop writes.
    fn quiesce(&mut self, done: std::sync::mpsc::Sender<()>) {
        self.quiesced = true;
        if let Some(st) = self.storage.take() {
            let Storage {
                logger,
                snapshotter,
                ..
            } = st;
            drop(logger);
            // Not joined (see above); the restart ends the thread.
            std::mem::forget(snapshotter);
        }
        let _ = done.send(());
    }

    /// Leaving the leader role: passes not committed by a quorum are answered with
    /// CONNECTIONLOSS (they may still commit under the next leader, as in ZooKeeper,
    /// where a client cannot know either), and the tree falls back to the committed one.
    fn abandon_uncommitted(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        self.publish_durable();
        let mut converted = Vec::new();
        for p in self.pending.drain(..) {
            for e in p.entries {
                converted.push(match e {
                    Entry::Txn { origin, .. } => match origin {
                        None => continue,
                        Some(o) if o.op == OpCode::CreateSession => Entry::Connect {
                            conn: o.conn,
                            outcome: ConnectOutcome::Refused,
                        },
                        Some(o) => Entry::Failed {
                            origin: o,
                            zxid: self.committed.1,
                            error: PrepError {
                                code: Code::ConnectionLoss,
                                multi: None,
                            },
                        },
                    },
                    other => other,
                });
            }
        }
        self.tree = self.committed.0.clone();
        self.zxid = self.committed.1;
        if !converted.is_empty() {
            self.pending.push_back(Pending {
                last_zxid: self.zxid,
                entries: converted,
                root: self.tree.clone(),
                appended_at: Instant::now(),
                writes: 0,
            });
        }
        self.rebuild_sessions();
    }

    /// A log write failed: see the module header.
    fn log_failed(&mut self, first: i64, last: i64, error: std::io::Error) {
        // While a disk stays full every write fails: one line per LOG_ERROR_INTERVAL,
        // with the count of failures it stands for, is loud enough.
        self.log_failures += 1;
        if self
            .last_log_error
            .is_none_or(|t| t.elapsed() >= LOG_ERROR_INTERVAL)
        {
            eprintln!(
                "ringkeeper: ERROR: writing the transaction log failed for zxids {first:#x}..={last:#x}: {error}; \
                 those writes are answered SYSTEMERROR, reads go on, writing is retried with the next write \
                 ({} failed log writes since the last report)",
                self.log_failures
            );
            self.last_log_error = Some(Instant::now());
            self.log_failures = 0;
        }
        self.log_recovering = true;
        if self.failed_until.is_none() {
            self.failed_until = Some(self.appended_zxid);
            self.unlogged.clear();
            let durable = self.durable_zxid;
            let mut converted = Vec::new();
            for p in self.pending.iter_mut() {
                for e in p.entries.drain(..) {
                    converted.push(match e {
                        Entry::Txn { txn, origin, .. } if txn.zxid > durable => match origin {
                            None => continue,
                            Some(o) if o.op == OpCode::CreateSession => Entry::Connect {
                                conn: o.conn,
                                outcome: ConnectOutcome::Refused,
                            },
                            Some(o) => Entry::Failed {
                                origin: o,
                                zxid: durable,
                                error: PrepError {
                                    code: Code::SystemError,
                                    multi: None,
                                },
                            },
                        },
                        other => other,
                    });
                }
            }
            // Whatever was durable before the failure is published first; the rest is
            // answered as failed, on the last durable root.
            self.publish_durable();
            self.pending.clear();
            self.tree = self.committed.0.clone();
            self.zxid = self.committed.1;
            assert_eq!(self.zxid, durable, "published through the durable zxid");
            if !converted.is_empty() {
                self.pending.push_back(Pending {
                    last_zxid: durable,
                    entries: converted,
                    root: self.tree.clone(),
                    appended_at: Instant::now(),
                    writes: 0,
                });
            }
            self.rebuild_sessions();
        }
        if self.failed_until.is_some_and(|until| last >= until) {
            // Every batch sent before the failure is accounted for: the next write tries
            // the disk again (it says so when one succeeds).
            self.failed_until = None;
        }
    }

    /// After a rollback: the tracker and owners follow the tree's sessions again.
    fn rebuild_sessions(&mut self) {
        let now = self.now_ms();
        let live: HashMap<i64, i32> = self.tree.sessions().collect();
        let tracked: Vec<i64> = self
            .sessions
            .by_expiry()
            .into_iter()
            .flat_map(|(_, ids)| ids)
            .collect();
        for id in tracked {
            if !live.contains_key(&id) {
                self.sessions.remove(id);
            }
        }
        for (id, timeout) in &live {
            if !self.sessions.is_alive(*id) {
                self.sessions.remove(*id);
                self.sessions.add(*id, *timeout, now);
            }
        }
        self.owners.retain(|id, _| live.contains_key(id));
    }

    /// Publishes, in order, every pending pass whose txns are all durable.
    fn publish_durable(&mut self) {
        // A leader answers once a quorum (its own log counted when durable) has a txn;
        // a follower publishes committed txns as it applies them.
        let limit = match self.role {
            Role::Standalone => self.durable_zxid,
            Role::Leader => self.quorum_committed,
            Role::Looking | Role::Follower => self.zxid,
        };
        while self.pending.front().is_some_and(|p| p.last_zxid <= limit) {
            let p = self.pending.pop_front().expect("front exists");
            let now = Instant::now();
            let m = &self.stats.metrics;
            if self.storage.is_some() {
                let durable_at = self.durable_seen_at.max(p.appended_at);
                m.logged.record_n(durable_at - p.appended_at, p.writes);
                m.committed.record_n(now - durable_at, p.writes);
            } else {
                m.logged.record_n(Duration::ZERO, p.writes);
                m.committed.record_n(now - p.appended_at, p.writes);
            }
            let snapshot_due = self.count_for_snapshot(&p.entries);
            self.committed = (p.root.clone(), p.last_zxid);
            let commit = Arc::new(Commit {
                entries: p.entries,
                root: p.root,
                zxid: p.last_zxid,
                published_at: now,
            });
            // Announced before it is handed out: a shard that answers a write of this
            // commit does so after this store, so any other shard that then gets a read
            // sees the announcement and catches up first (see `Shard::catch_up`).
            self.stats
                .published_zxid
                .store(commit.zxid, Ordering::Release);
            for out in &self.outboxes {
                out.push_unbounded(ToShard::Commit(commit.clone()));
            }
            if snapshot_due {
                self.offer_snapshot();
            }
        }
        self.stats
            .last_zxid
            .store(self.committed.1, Ordering::Relaxed);
        self.stats
            .sessions
            .store(self.sessions.len() as i64, Ordering::Relaxed);
    }

    /// Counts a pass's committed txns toward the snapshot policy, each with its log
    /// size; returns whether a snapshot is due.
    fn count_for_snapshot(&mut self, entries: &[Entry]) -> bool {
        let Some(st) = &mut self.storage else {
            return false;
        };
        let mut due = false;
        for e in entries {
            if let Entry::Txn { txn, .. } = e {
                due |= st
                    .policy
                    .record(crate::storage::log::txn_size_hint(txn) as u64);
            }
        }
        due
    }

    /// Offers the committed root to the snapshot thread and starts counting anew.
    fn offer_snapshot(&mut self) {
        let Some(st) = &mut self.storage else {
            return;
        };
        let (root, zxid) = (self.committed.0.clone(), self.committed.1);
        if st.snapshotter.offer(root, zxid) == snapshot::Offer::TooBusy {
            eprintln!("ringkeeper: too busy to snap, skipping (zxid {zxid:#x})");
        }
        st.policy.reset();
    }

    /// `autopurge`: keeps the newest snapshots and the logs they need.
    fn purge_if_due(&mut self, now: i64) {
        let Some(st) = &mut self.storage else {
            return;
        };
        if st.cfg.purge_interval_ms <= 0 || now < st.next_purge_ms {
            return;
        }
        st.next_purge_ms = now + st.cfg.purge_interval_ms;
        match snapshot::purge(
            &*st.cfg.disk,
            &st.cfg.snap_dir,
            &st.cfg.log.dir,
            st.cfg.snap_retain_count,
            self.cfg.repl.as_ref().and_then(|b| b.peer_base()),
        ) {
            Ok(r) => eprintln!("ringkeeper: autopurge: {r:?}"),
            Err(e) => eprintln!("ringkeeper: autopurge failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::snapshot::tests::{sample_txns, TempDir};
    use crate::storage::{IoBackend, LogReader, OsDisk};

    fn logged(dir: &std::path::Path) -> Vec<i64> {
        let mut v = Vec::new();
        LogReader::open(Arc::new(OsDisk), dir)
            .unwrap()
            .replay(0, |rec| {
                v.push(rec.txn.zxid);
                Ok(())
            })
            .unwrap();
        v
    }

    /// A sequencer of an ensemble member with a real log (blocking I/O, 256 KiB
    /// segments) and snapshots in `dir`; the replication loop's side of its bridge is
    /// the returned receiver.
    fn ensemble_sequencer(
        dir: &std::path::Path,
        snap_count: u64,
        snap_size_bytes: u64,
    ) -> (
        Sequencer,
        Arc<ReplBridge>,
        std::sync::mpsc::Receiver<super::super::replication::Input>,
    ) {
        let mut log = LogConfig::new(dir);
        log.segment_bytes = 256 << 10;
        log.backend = IoBackend::Blocking;
        log.allow_buffered = true;
        log.background_spare = false;
        let bridge = Arc::new(ReplBridge::default());
        let (to_repl, from_seq) = std::sync::mpsc::channel();
        bridge.set_replication(to_repl);
        let mut cfg =
            crate::server::ServerConfig::standalone("127.0.0.1:1".parse().unwrap(), 1).sequencer;
        cfg.repl = Some(bridge.clone());
        cfg.storage = Some(StorageConfig {
            disk: Arc::new(OsDisk),
            log,
            position: LogPosition::default(),
            snap_dir: dir.to_path_buf(),
            snap_count,
            snap_size_bytes,
            snap_retain_count: 3,
            purge_interval_ms: 0,
        });
        let seq = Sequencer::new(
            cfg,
            DataTree::new(),
            0,
            Vec::new(),
            Vec::new(),
            Arc::new(Signal::default()),
            Arc::new(SequencerStats::default()),
        )
        .expect("sequencer");
        (seq, bridge, from_seq)
    }

    /// A learner's sequencer with a real log: the txns handed to the log writer before a
    /// Quiesce are on disk when it is answered, and nothing is logged after it.
    #[test]
    fn quiesce_answers_after_the_queued_log_writes_and_then_logs_nothing() {
        let dir = TempDir::new("seq-quiesce");
        let (mut seq, bridge, from_seq) = ensemble_sequencer(&dir.0, 100_000, 0);
        let txns = sample_txns(40);
        let (first, later) = txns.split_at(20);
        bridge.to_sequencer(ToSeqRepl::Append {
            txns: first.to_vec(),
        });
        seq.step();
        let (done, answered) = std::sync::mpsc::channel();
        bridge.to_sequencer(ToSeqRepl::Quiesce { done });
        seq.step();
        answered.try_recv().expect("answered within the pass");
        let last = first.last().unwrap().zxid;
        assert_eq!(logged(&dir.0), (1..=last).collect::<Vec<_>>());
        bridge.to_sequencer(ToSeqRepl::Append {
            txns: later.to_vec(),
        });
        seq.step();
        seq.step();
        assert_eq!(logged(&dir.0).last(), Some(&last), "logged after quiesce");
        let durable: Vec<u64> = from_seq
            .try_iter()
            .filter_map(|i| match i {
                super::super::replication::Input::LocalDurable(z) => Some(z),
                _ => None,
            })
            .collect();
        assert!(durable.iter().all(|z| *z <= last as u64), "{durable:?}");
    }

    /// `snapSizeLimitInKb`: with the txn count rule out of reach, a learner applying
    /// 1 KiB creates snapshots once the log bytes pass the size rule (each txn counts
    /// with its encoded size, not an average).
    #[test]
    fn snapshots_follow_the_log_size_rule() {
        let dir = TempDir::new("seq-snapsize");
        let (mut seq, bridge, _from_seq) = ensemble_sequencer(&dir.0, 1_000_000, 64 << 10);
        bridge.to_sequencer(ToSeqRepl::Follow);
        seq.step();
        let txns: Vec<Txn> = (1..=200i64)
            .map(|z| Txn {
                session_id: 0,
                cxid: z as i32,
                zxid: z,
                time_ms: 1_700_000_000_000 + z,
                op: TxnOp::Create {
                    path: format!("/n{z}"),
                    data: Some(bytes::Bytes::from(vec![b'x'; 1024])),
                    acl: crate::tree::open_acl_unsafe(),
                    ephemeral_owner: 0,
                },
            })
            .collect();
        for chunk in txns.chunks(20) {
            bridge.to_sequencer(ToSeqRepl::Append {
                txns: chunk.to_vec(),
            });
            bridge.to_sequencer(ToSeqRepl::Apply {
                txns: chunk.to_vec(),
            });
            seq.step();
        }
        // The snapshot thread writes in the background: wait for it, bounded.
        let until = std::time::Instant::now() + Duration::from_secs(20);
        let mut snaps = Vec::new();
        while snaps.is_empty() && std::time::Instant::now() < until {
            seq.step();
            snaps = snapshot::list(&OsDisk, &dir.0).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!snaps.is_empty(), "no snapshot after 200 KiB of log");
    }
}
