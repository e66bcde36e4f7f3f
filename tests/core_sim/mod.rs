//! A deterministic simulator of whole servers: several sequencer cores (each with its
//! ZAB peer and election) and their real shards, over a simulated log, network and
//! clock, with clients that speak the wire protocol (sessions, pings, writes, reads,
//! syncs, resumes on another server). Faults: crashes at any step (unsynced log writes,
//! epoch writes and snapshots lost), partitions, lost and delayed election
//! notifications. After every step the invariants are checked:
//!
//! - no acknowledged write lost: every write a client saw answered OK is, at its zxid,
//!   the txn of that session and xid in the one committed history;
//! - one zxid order: every server publishes strictly increasing zxids, and the same txn
//!   at the same zxid as every other server;
//! - session FIFO: a session's replies come in the order of its requests;
//! - single system image: no reply shows a client an older zxid than one it has seen,
//!   across reconnects;
//! - sync: a sync's answer, and everything after it, is at least as new as every write
//!   acknowledged to anyone before the sync was sent;
//! - ephemerals go only after their session ended: a session the client did not close
//!   is closed only once it was silent at the leader for its timeout.
//!
//! Owns: the fault model, the clients and the oracle. Must not: use threads, real time
//! or I/O, or iterate in an order that is not a function of the seed. One seed, one run.

#![allow(dead_code)]

use bytes::Bytes;
use ringkeeper::config::FourLetterWhitelist;
use ringkeeper::proto::frame;
use ringkeeper::proto::records::{
    self, CreateRequest, DeleteRequest, GetDataRequest, SetDataRequest,
};
use ringkeeper::proto::*;
use ringkeeper::sequencer::msg::{Commit, Entry, ToSeq};
use ringkeeper::sequencer::{
    self, Broken, CoreConfig, EnsembleConfig, Input, Output, Role, Sequencer,
};
use ringkeeper::server::chain::{Chain, ShardSignals};
use ringkeeper::server::mailbox::{Mailbox, Wake};
use ringkeeper::server::shard::{Net, Shard, ToShard};
use ringkeeper::server::stats::{SequencerStats, ServerState, Settings};
use ringkeeper::tree::DataTree;
use ringkeeper::txn::{Txn, TxnOp};
use ringkeeper::zab::election::{self, Election, Notification, Timing};
use ringkeeper::zab::msg::{Msg, SyncMode};
use ringkeeper::zab::peer::{self, EpochKind, Persisted};
use ringkeeper::zab::{Ensemble, ServerId, Zxid};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

/// Simulated milliseconds per `tickTime`. The core ticks its peer ten times per tick.
pub const TICK_MS: i64 = 50;
/// Every server event loop wakes at least this often (the real one ticks a tenth of a
/// tickTime).
const LOOP_TICK: u64 = 5;
const WALL_BASE: i64 = 1_700_000_000_000;

/// splitmix64: tiny, seedable, good enough to pick faults.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x2545_F491_4F6C_DD1D)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> Option<T> {
        (!v.is_empty()).then(|| v[(self.next() % v.len() as u64) as usize])
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub voters: usize,
    pub observers: usize,
    pub clients: usize,
    /// Simulated milliseconds of faults and load.
    pub duration_ms: u64,
    /// Simulated milliseconds allowed to converge once healed.
    pub settle_ms: u64,
    pub faults: bool,
    pub broken: Broken,
    /// The shards' planted bug (`Settings::broken_reads_on_old_view`).
    pub reads_on_old_view: bool,
    /// `peer::Config::max_counter` (low values make leaders renew their epochs).
    pub max_counter: u32,
    /// `localSessionsEnabled` and `localSessionsUpgradingEnabled` on every server.
    pub local_sessions: bool,
    pub local_upgrading: bool,
    pub trace: bool,
}

impl Options {
    pub fn new(seed: u64, voters: usize) -> Options {
        Options {
            seed,
            voters,
            observers: 0,
            clients: 5,
            duration_ms: 3000,
            settle_ms: 20_000,
            faults: true,
            broken: Broken::default(),
            reads_on_old_view: false,
            max_counter: u32::MAX,
            local_sessions: false,
            local_upgrading: false,
            trace: false,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub events: u64,
    pub acked_writes: u64,
    pub reads: u64,
    pub syncs: u64,
    pub sessions: u64,
    pub expired: u64,
    pub crashes: u64,
    pub elections: u64,
    pub renewals: u64,
    pub truncs: u64,
    pub snaps: u64,
    pub resumes: u64,
    pub forwarded: u64,
    /// Leadership moves seen (each server that moved counts once per move).
    pub moves: u64,
    /// With local sessions: sessions made global by an ephemeral (their CreateSession
    /// committed), and ephemerals refused with EPHEMERALONLOCALSESSION.
    pub upgrades: u64,
    pub ephemerals_refused: u64,
}

#[derive(Debug)]
enum Ev {
    /// A server's loop runs a pass (ticks and whatever queued).
    Loop {
        node: usize,
        inc: u64,
    },
    Peer {
        to: usize,
        from: usize,
        conn: u64,
        msg: Msg,
    },
    Note {
        to: usize,
        from: usize,
        n: Notification,
    },
    /// Server `node` learns its connection `conn` to `peer` broke.
    Disconnect {
        node: usize,
        inc: u64,
        peer: usize,
        conn: u64,
    },
    DiskDone {
        node: usize,
        inc: u64,
    },
    EpochDone {
        node: usize,
        inc: u64,
    },
    SnapDone {
        node: usize,
        inc: u64,
    },
    Restart {
        node: usize,
    },
    Heal,
    Client {
        c: usize,
    },
}

enum DiskOp {
    Append(Vec<ringkeeper::zab::Txn>),
    Truncate { to: i64, rebuild: bool },
    Install { zxid: i64, tree: Option<DataTree> },
}

#[derive(Clone, Default)]
struct Disk {
    /// Durable snapshots, oldest first.
    snapshots: Vec<(i64, DataTree)>,
    /// Durable log records, in zxid order.
    log: Vec<ringkeeper::zab::Txn>,
    accepted: u32,
    current: u32,
}

/// The shard's network: output per slot, and which slots the shard closed.
#[derive(Default)]
struct SimNet {
    out: BTreeMap<usize, Vec<u8>>,
    closed: BTreeSet<usize>,
}

impl Net for SimNet {
    fn send(&mut self, slot: usize, bytes: &[u8]) {
        self.out.entry(slot).or_default().extend_from_slice(bytes);
    }
    fn close(&mut self, slot: usize) {
        self.closed.insert(slot);
    }
    fn pause(&mut self, _slot: usize, _paused: bool) {}
    fn adopt(
        &mut self,
        _stream: std::net::TcpStream,
        _wire: ringkeeper::tls::Wire,
    ) -> Option<(usize, SocketAddr)> {
        unreachable!("one shard per simulated server: nothing is handed over")
    }
}

struct NoWake;
impl Wake for NoWake {
    fn wake(&self) {}
}

/// One running incarnation of a server.
struct Running {
    core: Sequencer,
    election: Election,
    shard: Shard,
    chain: Chain,
    to_core: Arc<Mailbox<ToSeq>>,
    to_shard: Arc<Mailbox<ToShard>>,
    net: SimNet,
    /// Client connections: slot -> client.
    slots: BTreeMap<usize, usize>,
    next_slot: usize,
    /// The last zxid this incarnation published (strictly increasing).
    published: i64,
    /// When the election machine last ticked.
    election_tick: u64,
    /// The zxid of the last txn this incarnation published.
    last_txn: i64,
}

struct Node {
    id: ServerId,
    inc: u64,
    run: Option<Running>,
    disk: Disk,
    disk_ops: VecDeque<DiskOp>,
    disk_free_at: u64,
    epoch_ops: VecDeque<(EpochKind, u32)>,
    epoch_free_at: u64,
    snap_ops: VecDeque<(i64, DataTree)>,
    /// SNAPs received and not yet installed: zxid -> the leader's snapshot.
    received: BTreeMap<i64, DataTree>,
    /// The quorum connection this side uses to each peer (a generation number).
    conn_to: BTreeMap<usize, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create { ephemeral: bool },
    Set,
    Delete,
    Read,
    Sync,
    Ping,
    Close,
}

#[derive(Debug, Clone)]
struct Req {
    xid: i32,
    kind: Kind,
    path: String,
    sent_at: u64,
    /// Sync: the newest write acknowledged to anyone when it was sent.
    acked_before: i64,
}

/// A path's acknowledged writes, for checking reads of it (`Sim::check_read`).
#[derive(Debug, Default)]
struct PathWrites {
    /// zxid -> whether the node exists after it.
    acked: BTreeMap<i64, bool>,
    /// It may be gone by no acknowledged write: ephemeral (its session ended), or a
    /// delete was sent (it may commit unanswered).
    may_vanish: bool,
}

#[derive(Debug)]
struct Client {
    id: usize,
    /// (session id, password, negotiated timeout), once a session exists.
    session: Option<(i64, Bytes, i32)>,
    /// (node, incarnation, slot) of the current connection.
    conn: Option<(usize, u64, usize)>,
    connecting: bool,
    inbuf: Vec<u8>,
    next_xid: i32,
    outstanding: VecDeque<Req>,
    last_zxid_seen: i64,
    /// Send time of the last request that reached the leader and was answered (a write,
    /// a sync, a resume): the leader touched the session at or after it.
    last_proof: u64,
    /// The client asked to close its session.
    closing: bool,
    /// Nodes of this session: path -> (exists, ephemeral).
    nodes: BTreeMap<String, bool>,
    next_node: u64,
    /// After a sync: every reply must be at least this new.
    floor: i64,
    last_sent: u64,
}

pub struct Sim {
    pub opts: Options,
    rng: Rng,
    pub now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    nodes: Vec<Node>,
    ensemble: Ensemble,
    clients: Vec<Client>,
    /// Links cut: (a, b) with a < b.
    cut: BTreeSet<(usize, usize)>,
    /// Connections that lost a message to a cut (sent into it, or due in it) or to a
    /// peer that was down: they deliver nothing more, as a TCP connection either
    /// delivers everything in order or breaks (its ends hear of the break through the
    /// `Disconnect` the cut scheduled, or a timeout). Without this a message lost in a
    /// cut could be followed by later ones on the same connection after a heal: a
    /// forwarded write lost while the next one arrived (seeds 13923 and, for a message
    /// sent into the cut, 117416 of longer runs).
    dead_conns: BTreeSet<u64>,
    /// The latest delivery time scheduled from one server to another (links are in
    /// order).
    link_free_at: BTreeMap<(usize, usize), u64>,
    /// The one committed history: zxid -> (session, cxid).
    canon: BTreeMap<i64, (i64, i32)>,
    /// Writes acknowledged: zxid -> (session, xid).
    acked: BTreeMap<i64, (i64, i32)>,
    /// Per path (never created twice): what reads of it must show.
    path_writes: std::collections::HashMap<String, PathWrites>,
    max_acked: i64,
    /// Sessions ended: by close txn, the first time one was published.
    closed_sessions: BTreeSet<i64>,
    /// Every session a client held: (its client, the send time of the last request
    /// that reached the leader for it and was answered, its timeout, whether the
    /// client asked to close it).
    owners: BTreeMap<i64, (usize, u64, i32, bool)>,
    pub stats: Stats,
    pub trace: Vec<String>,
    state: Arc<ServerState>,
}

fn zx(z: i64) -> String {
    format!("{:#x}", z)
}

fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Sim {
    pub fn new(opts: Options) -> Sim {
        let n = opts.voters + opts.observers;
        let voters: Vec<ServerId> = (1..=opts.voters as u64).collect();
        let observers: Vec<ServerId> = (opts.voters as u64 + 1..=n as u64).collect();
        let settings = Settings {
            max_frame: DEFAULT_MAX_BUFFER,
            super_digest: None,
            skip_acl: false,
            max_cnxns: 0,
            global_outstanding_limit: 1000,
            conn_throttle: Default::default(),
            large_requests: Default::default(),
            audit: None,
            sessionless_timeout: std::time::Duration::from_secs(10),
            fourlw_whitelist: FourLetterWhitelist::parse("srvr").0,
            conf: ringkeeper::fourlw::ConfInfo::default(),
            ops: Default::default(),
            // The simulator answers every read on the shard (no bulk-reply thread).
            bulk_children: 0,
            fsync_warning_ms: ringkeeper::config::DEFAULT_FSYNC_WARNING_THRESHOLD_MS,
            sasl: Default::default(),
            broken_reads_on_old_view: opts.reads_on_old_view,
        };
        let state = Arc::new(ServerState::new(
            settings,
            1,
            Arc::new(SequencerStats::default()),
        ));
        let mut sim = Sim {
            rng: Rng::new(opts.seed),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes: (0..n)
                .map(|i| Node {
                    id: i as ServerId + 1,
                    inc: 0,
                    run: None,
                    disk: Disk::default(),
                    disk_ops: VecDeque::new(),
                    disk_free_at: 0,
                    epoch_ops: VecDeque::new(),
                    epoch_free_at: 0,
                    snap_ops: VecDeque::new(),
                    received: BTreeMap::new(),
                    conn_to: BTreeMap::new(),
                })
                .collect(),
            ensemble: Ensemble::new(voters, observers),
            clients: (0..opts.clients)
                .map(|id| Client {
                    id,
                    session: None,
                    conn: None,
                    connecting: false,
                    inbuf: Vec::new(),
                    next_xid: 1,
                    outstanding: VecDeque::new(),
                    last_zxid_seen: 0,
                    last_proof: 0,
                    closing: false,
                    nodes: BTreeMap::new(),
                    next_node: 0,
                    floor: 0,
                    last_sent: 0,
                })
                .collect(),
            cut: BTreeSet::new(),
            dead_conns: BTreeSet::new(),
            link_free_at: BTreeMap::new(),
            canon: BTreeMap::new(),
            acked: BTreeMap::new(),
            path_writes: Default::default(),
            max_acked: 0,
            closed_sessions: BTreeSet::new(),
            owners: BTreeMap::new(),
            stats: Stats::default(),
            trace: Vec::new(),
            state,
            opts,
        };
        for i in 0..n {
            sim.start(i).expect("a fresh start cannot fail");
        }
        for c in 0..sim.clients.len() {
            let t = sim.rng.range(20, 200);
            sim.at(t, Ev::Client { c });
        }
        sim
    }

    fn log(&mut self, f: impl FnOnce() -> String) {
        if self.opts.trace {
            let line = format!("t={:>6} {}", self.now, f());
            self.trace.push(line);
        }
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    fn core_config(&self, id: ServerId, disk: &Disk) -> CoreConfig {
        let base = disk.snapshots.last().map_or(0, |s| s.0);
        let log: Vec<ringkeeper::zab::Txn> = disk
            .log
            .iter()
            .filter(|t| t.zxid as i64 > base)
            .cloned()
            .collect();
        CoreConfig {
            server_id: id as u8,
            tick_ms: TICK_MS,
            min_session_timeout_ms: 2 * TICK_MS as i32,
            max_session_timeout_ms: 20 * TICK_MS as i32,
            prep: Default::default(),
            container_check_interval_ms: 1000,
            container_max_per_check: 100,
            snapshots: Some(sequencer::SnapshotConfig {
                snap_count: 60,
                snap_size_bytes: 0,
                purge_interval_ms: 0,
                diff_size_factor: 0.33,
                seed: self.opts.seed ^ id,
            }),
            ensemble: Some(EnsembleConfig {
                peer: peer::Config {
                    my_id: id,
                    ensemble: self.ensemble.clone(),
                    init_limit: 40,
                    sync_limit: 20,
                    max_inflight: 500,
                    max_counter: self.opts.max_counter,
                    broken: Default::default(),
                },
                persisted: Persisted {
                    accepted_epoch: disk.accepted.max(disk.current),
                    current_epoch: disk.current,
                    snapshot: Some((base as Zxid, Bytes::new())),
                    log,
                },
                loaded_snapshot: disk.snapshots.last().map(|s| s.0),
                membership: Default::default(),
            }),
            max_inflight: 500,
            read_only: false,
            local_sessions: self.opts.local_sessions,
            local_upgrading: self.opts.local_upgrading,
            // Half the seeds: reads wait for the root they ask for nearly every time,
            // instead of finding the roots a recent ask keeps coming.
            roots_after_ask_ms: if self.opts.seed.is_multiple_of(2) {
                0
            } else {
                sequencer::ROOTS_AFTER_ASK_MS
            },
            // A leader's rollback replays from a root kept a few txns back, or (the
            // default) from the one it kept when it took office, on most seeds.
            rollback_root_txns: match self.opts.seed % 3 {
                0 => 1,
                1 => 5,
                _ => sequencer::ROLLBACK_ROOT_TXNS,
            },
            broken: self.opts.broken,
        }
    }

    /// Recovers a server from its disk: the newest snapshot and the log after it.
    fn recover(disk: &Disk) -> (DataTree, i64) {
        let (mut tree, base) = match disk.snapshots.last() {
            Some((z, t)) => (t.clone(), *z),
            None => (DataTree::new(), 0),
        };
        for r in &disk.log {
            if r.zxid as i64 > base {
                tree.apply(&decode(r));
            }
        }
        let z = tree.zxid();
        (tree, z)
    }

    /// Boots server `i` from its disk.
    pub fn start(&mut self, i: usize) -> Result<(), String> {
        assert!(self.nodes[i].run.is_none());
        let (tree, zxid) = Sim::recover(&self.nodes[i].disk);
        let id = self.nodes[i].id;
        let cfg = self.core_config(id, &self.nodes[i].disk);
        let core = Sequencer::new(
            cfg,
            tree.clone(),
            zxid,
            self.now as i64,
            WALL_BASE + self.now as i64,
        );
        let chain = Chain::new(Commit {
            entries: Vec::new(),
            root: Some(tree),
            zxid,
            writes: 0,
            shards: 0,
        });
        let to_core = Arc::new(Mailbox::new(1 << 16, Box::new(NoWake)));
        let to_shard = Arc::new(Mailbox::new(usize::MAX, Box::new(NoWake)));
        let shard = Shard::new(
            0,
            chain.tail(),
            Arc::new(ShardSignals::default()),
            to_core.clone(),
            to_shard.clone(),
            self.state.clone(),
        );
        let timing = Timing {
            finalize_ticks: 2,
            resend_ticks: 3,
            max_resend_ticks: 24,
        };
        let node = &mut self.nodes[i];
        node.inc += 1;
        node.run = Some(Running {
            core,
            election: Election::new(id, self.ensemble.clone(), timing),
            shard,
            chain,
            to_core,
            to_shard,
            net: SimNet::default(),
            slots: BTreeMap::new(),
            next_slot: 1,
            published: zxid,
            election_tick: self.now,
            last_txn: zxid,
        });
        node.disk_ops.clear();
        node.epoch_ops.clear();
        node.snap_ops.clear();
        node.received.clear();
        node.conn_to.clear();
        let inc = node.inc;
        self.log(|| format!("n{id} starts at {}", zx(zxid)));
        self.at(self.now + 1, Ev::Loop { node: i, inc });
        self.pass(i, Vec::new())
    }

    fn up(&self, i: usize) -> bool {
        self.nodes[i].run.is_some()
    }

    /// Crashes server `i`: everything not durable is lost, its clients and peers see
    /// their connections break.
    pub fn crash(&mut self, i: usize) {
        let Some(run) = self.nodes[i].run.take() else {
            return;
        };
        self.stats.crashes += 1;
        self.log(|| format!("n{} crash", i + 1));
        self.nodes[i].inc += 1;
        for (_, c) in run.slots {
            self.lose_connection(c);
        }
        for j in 0..self.nodes.len() {
            if j != i {
                self.break_link(i, j);
            }
        }
    }

    /// The connection between `a` and `b` breaks: each side may hear of it.
    fn break_link(&mut self, a: usize, b: usize) {
        for (me, other) in [(a, b), (b, a)] {
            if let Some(&conn) = self.nodes[me].conn_to.get(&other) {
                if self.up(me) {
                    let inc = self.nodes[me].inc;
                    let t = self.now + self.rng.range(1, 30);
                    self.at(
                        t,
                        Ev::Disconnect {
                            node: me,
                            inc,
                            peer: other,
                            conn,
                        },
                    );
                }
            }
        }
    }

    fn partition(&mut self, i: usize) {
        self.log(|| format!("n{} cut off", i + 1));
        for j in 0..self.nodes.len() {
            if j != i && self.cut.insert(key(i, j)) {
                self.break_link(i, j);
            }
        }
    }

    fn heal(&mut self) {
        self.log(|| "heal".into());
        self.cut.clear();
    }

    // ---- one server pass ----

    /// Feeds `inputs` and runs one pass of server `i`'s loop: its shard's requests go to
    /// the core (as many as it has room for), the core's outputs are carried out, and
    /// the shard's output reaches the clients.
    fn pass(&mut self, i: usize, inputs: Vec<Input>) -> Result<(), String> {
        let now = self.now as i64;
        {
            let Some(run) = self.nodes[i].run.as_mut() else {
                return Ok(());
            };
            run.core.step(Input::Time {
                now_ms: now,
                wall_ms: WALL_BASE + now,
            });
            for inp in inputs {
                run.core.step(inp);
            }
        }
        for _round in 0..64 {
            let outs = {
                let Some(run) = self.nodes[i].run.as_mut() else {
                    return Ok(());
                };
                run.shard.flush(&mut run.net);
                let room = run.core.room();
                let mut batch = Vec::new();
                run.to_core.drain_up_to(room, &mut batch);
                for m in batch {
                    run.core.step(Input::Shard(m));
                }
                run.core.end_pass();
                let mut outs = Vec::new();
                run.core.take_outputs(&mut outs);
                outs
            };
            if outs.is_empty() {
                break;
            }
            for o in outs {
                self.execute(i, o)?;
                if !self.up(i) {
                    return Ok(());
                }
            }
        }
        self.deliver_to_clients(i)
    }

    fn execute(&mut self, i: usize, out: Output) -> Result<(), String> {
        let id = self.nodes[i].id;
        match out {
            Output::Append(txns) => self.disk_op(i, DiskOp::Append(txns)),
            Output::Truncate { to, rebuild } => {
                self.stats.truncs += 1;
                self.log(|| format!("n{id} TRUNC to {} rebuild={rebuild}", zx(to)));
                self.disk_op(i, DiskOp::Truncate { to, rebuild })
            }
            Output::InstallSnapshot { zxid, .. } => {
                self.stats.snaps += 1;
                let tree = self.nodes[i].received.remove(&zxid);
                self.log(|| format!("n{id} installs SNAP {}", zx(zxid)));
                self.disk_op(i, DiskOp::Install { zxid, tree })
            }
            Output::Dial { to } => {
                let j = (to - 1) as usize;
                // A fresh connection: the old one is dropped by both ends.
                let conn = self.seq;
                self.seq += 1;
                self.nodes[i].conn_to.insert(j, conn);
            }
            Output::Send { to, msg } => self.send_peer(i, (to - 1) as usize, msg),
            Output::PersistEpoch { kind, epoch } => {
                let n = &mut self.nodes[i];
                n.epoch_ops.push_back((kind, epoch));
                let t = n.epoch_free_at.max(self.now) + self.rng.range(1, 5);
                self.nodes[i].epoch_free_at = t;
                let inc = self.nodes[i].inc;
                self.at(t, Ev::EpochDone { node: i, inc });
            }
            Output::Publish(commit) => self.publish(i, commit)?,
            Output::Close(conn) => {
                let run = self.nodes[i].run.as_mut().expect("up");
                run.to_shard.push_unbounded(ToShard::Close(conn));
                run.shard.wake(&mut run.net);
            }
            Output::CloseClients => {
                let run = self.nodes[i].run.as_mut().expect("up");
                run.to_shard.push_unbounded(ToShard::CloseClients);
                run.shard.wake(&mut run.net);
            }
            Output::Snapshot { root, zxid } => {
                let n = &mut self.nodes[i];
                n.snap_ops.push_back((zxid, root));
                let inc = n.inc;
                let t = self.now + self.rng.range(5, 40);
                self.at(t, Ev::SnapDone { node: i, inc });
            }
            Output::Purge { .. }
            | Output::Mode(_)
            | Output::Learners(_)
            | Output::PeerBase(_)
            | Output::Membership(_) => {}
            Output::StartElection {
                current_epoch,
                last_zxid,
            } => {
                // Back to the election: this server's quorum connections close.
                for j in 0..self.nodes.len() {
                    if j != i && self.nodes[i].conn_to.remove(&j).is_some() {
                        self.break_link_one_side(j, i);
                    }
                }
                self.run_election(
                    i,
                    election::Event::Start {
                        last_zxid,
                        current_epoch,
                    },
                )?;
            }
            Output::Established { epoch } => {
                self.run_election(i, election::Event::Established { epoch })?
            }
            Output::Moved { leader, from } => {
                self.stats.moves += 1;
                self.log(|| format!("n{id}: leadership moved from n{from} to n{leader}"));
                if leader == id {
                    // The new leader closes its link to the old one, which then dials it.
                    let j = (from - 1) as usize;
                    if self.nodes[i].conn_to.remove(&j).is_some() {
                        self.break_link_one_side(j, i);
                    }
                }
                self.run_election(i, election::Event::Moved { leader })?;
            }
            Output::Health(_) => {}
            Output::Log(line) => {
                if line.contains("renewed the epoch in place: leading") {
                    self.stats.renewals += 1;
                }
                self.log(|| format!("n{id}: {line}"));
            }
        }
        Ok(())
    }

    /// `j`'s end of its connection to `i` breaks (i closed it).
    fn break_link_one_side(&mut self, j: usize, i: usize) {
        if let Some(&conn) = self.nodes[j].conn_to.get(&i) {
            if self.up(j) {
                let inc = self.nodes[j].inc;
                let t = self.now + self.rng.range(1, 10);
                self.at(
                    t,
                    Ev::Disconnect {
                        node: j,
                        inc,
                        peer: i,
                        conn,
                    },
                );
            }
        }
    }

    fn send_peer(&mut self, i: usize, j: usize, msg: Msg) {
        let Some(&conn) = self.nodes[i].conn_to.get(&j) else {
            // A leader answers on the connection the learner opened (its FOLLOWERINFO
            // made it current here); without one there is no link.
            return;
        };
        if self.cut.contains(&key(i, j)) || !self.up(j) {
            // Lost, and so is everything after it on this connection: TCP never
            // delivers a later message of a connection without the earlier ones.
            self.dead_conns.insert(conn);
            return;
        }
        if let Msg::Sync {
            mode: SyncMode::Snap { zxid, .. },
            ..
        } = &msg
        {
            // The leader's snapshot file of that zxid travels with the SYNC.
            let snap = self.nodes[i]
                .disk
                .snapshots
                .iter()
                .find(|s| s.0 as u64 == *zxid)
                .map(|s| s.1.clone());
            match snap {
                Some(t) => {
                    self.nodes[j].received.insert(*zxid as i64, t);
                }
                None => return,
            }
        }
        if let Msg::Forward { payloads } = &msg {
            self.stats.forwarded += payloads.len() as u64;
        }
        // In order per connection: never before anything already in flight on it.
        let t =
            (self.now + self.rng.range(1, 4)).max(*self.link_free_at.get(&(i, j)).unwrap_or(&0));
        self.link_free_at.insert((i, j), t);
        self.at(
            t,
            Ev::Peer {
                to: j,
                from: i,
                conn,
                msg,
            },
        );
    }

    fn disk_op(&mut self, i: usize, op: DiskOp) {
        let n = &mut self.nodes[i];
        n.disk_ops.push_back(op);
        let t = n.disk_free_at.max(self.now) + self.rng.range(1, 6);
        n.disk_free_at = t;
        let inc = n.inc;
        self.at(t, Ev::DiskDone { node: i, inc });
    }

    fn publish(&mut self, i: usize, commit: Commit) -> Result<(), String> {
        let id = self.nodes[i].id;
        {
            let run = self.nodes[i].run.as_mut().expect("up");
            // A commit never goes back, except the reset after a TRUNC rebuild (no
            // entries); its txns come after every txn published before.
            if commit.zxid < run.published && !commit.entries.is_empty() {
                return Err(format!(
                    "n{id} published {} after {}",
                    zx(commit.zxid),
                    zx(run.published)
                ));
            }
            for e in &commit.entries {
                if let Entry::Txn { txn, .. } = e {
                    if txn.zxid <= run.last_txn {
                        return Err(format!(
                            "n{id} published txn {} after txn {}",
                            zx(txn.zxid),
                            zx(run.last_txn)
                        ));
                    }
                    run.last_txn = txn.zxid;
                }
            }
            if commit.entries.is_empty() {
                run.last_txn = commit.zxid;
            }
            run.published = commit.zxid;
        }
        for e in &commit.entries {
            if let Entry::Txn { txn, .. } = e {
                match self.canon.get(&txn.zxid) {
                    Some(&(s, x)) if (s, x) != (txn.session_id, txn.cxid) => {
                        return Err(format!(
                            "n{id} committed {} as session {:#x} xid {}, the history has session {s:#x} xid {x}",
                            zx(txn.zxid),
                            txn.session_id,
                            txn.cxid
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.canon.insert(txn.zxid, (txn.session_id, txn.cxid));
                        if self.opts.local_sessions && matches!(txn.op, TxnOp::CreateSession { .. })
                        {
                            // Every global session of such a run is an upgrade.
                            self.stats.upgrades += 1;
                        }
                    }
                }
                if let TxnOp::CloseSession { .. } = txn.op {
                    let (sid, z) = (txn.session_id, txn.zxid);
                    self.log(|| format!("n{id} publishes closeSession {sid:#x} at {}", zx(z)));
                    self.session_closed(txn.session_id)?;
                }
            }
        }
        let run = self.nodes[i].run.as_mut().expect("up");
        run.chain.append(commit);
        run.shard.advance(&mut run.net);
        Ok(())
    }

    /// A close txn of `session` committed: legitimate only if its client closed it, or
    /// the client proved it alive at the leader no later than a timeout ago.
    fn session_closed(&mut self, session: i64) -> Result<(), String> {
        if !self.closed_sessions.insert(session) {
            return Ok(());
        }
        let Some(&(c, proof, timeout, closing)) = self.owners.get(&session) else {
            return Ok(());
        };
        if closing {
            return Ok(());
        }
        self.stats.expired += 1;
        // The leader touched the session when it handled the proof, which was sent
        // then or before: it expires it a timeout after that, rounded up to its tick.
        if self.now < proof + timeout as u64 {
            return Err(format!(
                "session {session:#x} of client {c} expired at t={} but the client proved it alive at t={proof} (timeout {timeout})",
                self.now
            ));
        }
        Ok(())
    }

    // ---- election ----

    fn run_election(&mut self, i: usize, ev: election::Event) -> Result<(), String> {
        let actions = match self.nodes[i].run.as_mut() {
            Some(r) => r.election.step(ev),
            None => return Ok(()),
        };
        for a in actions {
            match a {
                election::Action::Send { to, notification } => {
                    let j = (to - 1) as usize;
                    if self.cut.contains(&key(i, j)) || self.rng.chance(50) {
                        continue;
                    }
                    let t = self.now + self.rng.range(1, 15);
                    self.at(
                        t,
                        Ev::Note {
                            to: j,
                            from: i,
                            n: notification,
                        },
                    );
                }
                election::Action::Elected { leader, .. } => {
                    self.stats.elections += 1;
                    self.log(|| format!("n{} elected leader={leader}", i + 1));
                    self.pass(i, vec![Input::Elected { leader }])?;
                }
            }
        }
        Ok(())
    }

    // ---- clients ----

    fn lose_connection(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        cl.conn = None;
        cl.connecting = false;
        cl.inbuf.clear();
        cl.outstanding.clear();
    }

    fn client_send(&mut self, c: usize, bytes: Vec<u8>) -> Result<(), String> {
        let Some((node, inc, slot)) = self.clients[c].conn else {
            return Ok(());
        };
        if self.nodes[node].inc != inc || !self.up(node) {
            self.lose_connection(c);
            return Ok(());
        }
        self.clients[c].last_sent = self.now;
        {
            let run = self.nodes[node].run.as_mut().expect("up");
            run.shard.data(&mut run.net, slot, &bytes);
        }
        self.pass(node, Vec::new())
    }

    fn client_step(&mut self, c: usize) -> Result<(), String> {
        // Now and then a client goes quiet for longer than its session timeout (a
        // paused process): its session must expire, and no other must.
        if let (Some((node, inc, slot)), Some((_, _, timeout))) =
            (self.clients[c].conn, self.clients[c].session.clone())
        {
            if self.rng.chance(4) && self.now < self.opts.duration_ms {
                if self.nodes[node].inc == inc {
                    if let Some(run) = self.nodes[node].run.as_mut() {
                        run.shard.closed(slot);
                        run.slots.remove(&slot);
                    }
                }
                self.log(|| format!("client {c} goes quiet"));
                self.lose_connection(c);
                let t = self.now + 2 * timeout as u64 + self.rng.range(0, 100);
                self.at(t, Ev::Client { c });
                return Ok(());
            }
        }
        let next = self.now + self.rng.range(2, 25);
        self.at(next, Ev::Client { c });
        if self.clients[c].conn.is_none() {
            return self.client_connect(c);
        }
        if self.clients[c].connecting || self.clients[c].outstanding.len() >= 3 {
            return Ok(());
        }
        let cl = &self.clients[c];
        let (_, _, timeout) = cl.session.clone().expect("connected with a session");
        if cl.closing {
            return Ok(());
        }
        let roll = self.rng.range(0, 999);
        let kind = if roll < 5 {
            Kind::Close
        } else if roll < 80 {
            Kind::Sync
        } else if roll < 330 {
            Kind::Read
        } else if roll < 900 {
            let mine: Vec<&String> = self.clients[c].nodes.keys().collect();
            if mine.is_empty() || self.rng.chance(400) {
                Kind::Create {
                    ephemeral: self.rng.chance(400),
                }
            } else if self.rng.chance(300) {
                Kind::Delete
            } else {
                Kind::Set
            }
        } else if self.now.saturating_sub(self.clients[c].last_sent) > timeout as u64 / 4 {
            Kind::Ping
        } else {
            return Ok(());
        };
        self.issue(c, kind)
    }

    fn issue(&mut self, c: usize, kind: Kind) -> Result<(), String> {
        let xid = self.clients[c].next_xid;
        self.clients[c].next_xid += 1;
        let (path, req) = match kind {
            Kind::Create { ephemeral } => {
                let cl = &mut self.clients[c];
                let p = format!("/c{}-{}", c, cl.next_node);
                cl.next_node += 1;
                let r = Request::Create {
                    op: OpCode::Create,
                    req: CreateRequest {
                        path: p.clone(),
                        data: Some(Bytes::from_static(b"v")),
                        acl: ringkeeper::tree::open_acl_unsafe(),
                        flags: if ephemeral { 1 } else { 0 },
                    },
                };
                (p, r)
            }
            Kind::Set | Kind::Delete => {
                let mine: Vec<String> = self.clients[c].nodes.keys().cloned().collect();
                let p = mine[(self.rng.next() % mine.len() as u64) as usize].clone();
                let r = if kind == Kind::Set {
                    Request::SetData(SetDataRequest {
                        path: p.clone(),
                        data: Some(Bytes::from_static(b"w")),
                        version: -1,
                    })
                } else {
                    self.path_writes.entry(p.clone()).or_default().may_vanish = true;
                    Request::Delete(DeleteRequest {
                        path: p.clone(),
                        version: -1,
                    })
                };
                (p, r)
            }
            Kind::Read => {
                let other = self.rng.range(0, self.clients.len() as u64 - 1);
                let n = self.clients[other as usize].next_node;
                let p = format!("/c{other}-{}", self.rng.range(0, n.max(1)));
                (
                    p.clone(),
                    Request::GetData(GetDataRequest {
                        path: p,
                        watch: false,
                    }),
                )
            }
            Kind::Sync => (
                "/".into(),
                Request::Sync(ringkeeper::proto::records::SyncRequest { path: "/".into() }),
            ),
            Kind::Ping => (String::new(), Request::Ping),
            Kind::Close => (String::new(), Request::CloseSession),
        };
        let xid = if kind == Kind::Ping { xid::PING } else { xid };
        if kind == Kind::Close {
            self.clients[c].closing = true;
            if let Some((s, _, _)) = &self.clients[c].session {
                if let Some(o) = self.owners.get_mut(s) {
                    o.3 = true;
                }
            }
        }
        let acked_before = self.max_acked;
        let (node, session) = (
            self.clients[c].conn.map_or(0, |x| x.0 + 1),
            self.clients[c].session.as_ref().map_or(0, |s| s.0),
        );
        self.log(|| format!("client {c} -> n{node}: {kind:?} xid {xid} session {session:#x}"));
        self.clients[c].outstanding.push_back(Req {
            xid,
            kind,
            path,
            sent_at: self.now,
            acked_before,
        });
        let mut out = Vec::new();
        frame::write_frame(&mut out, |o| req.encode(xid, o));
        self.client_send(c, out)
    }

    fn client_connect(&mut self, c: usize) -> Result<(), String> {
        let ups: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.up(i)).collect();
        let Some(node) = self.rng.pick(&ups) else {
            return Ok(());
        };
        let cl = &self.clients[c];
        let (session_id, passwd, timeout) = match &cl.session {
            Some((s, p, t)) => (*s, p.clone(), *t),
            None => (
                0,
                Bytes::from(vec![0u8; 16]),
                self.rng.range(6, 12) as i32 * TICK_MS as i32,
            ),
        };
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: cl.last_zxid_seen,
            timeout_ms: timeout,
            session_id,
            passwd: Some(passwd),
            read_only: Some(false),
        };
        let inc = self.nodes[node].inc;
        let slot = {
            let run = self.nodes[node].run.as_mut().expect("up");
            let slot = run.next_slot;
            run.next_slot += 1;
            let peer: SocketAddr = format!("127.0.0.{}:{}", c + 1, 40000 + slot)
                .parse()
                .expect("addr");
            assert!(run.shard.accepted(slot, peer, 1000));
            run.slots.insert(slot, c);
            slot
        };
        let cl = &mut self.clients[c];
        cl.conn = Some((node, inc, slot));
        cl.connecting = true;
        cl.inbuf.clear();
        self.log(|| {
            format!(
                "client {c} connects to n{} (session {session_id:#x})",
                node + 1
            )
        });
        let mut out = Vec::new();
        frame::write_frame(&mut out, |o| req.write(o));
        self.client_send(c, out)
    }

    /// Moves server `i`'s output to its clients and lets them read it.
    fn deliver_to_clients(&mut self, i: usize) -> Result<(), String> {
        let (outs, closed) = {
            let Some(run) = self.nodes[i].run.as_mut() else {
                return Ok(());
            };
            let outs = std::mem::take(&mut run.net.out);
            let closed = std::mem::take(&mut run.net.closed);
            (outs, closed)
        };
        let inc = self.nodes[i].inc;
        for (slot, bytes) in outs {
            let Some(&c) = self.nodes[i].run.as_ref().expect("up").slots.get(&slot) else {
                continue;
            };
            if self.clients[c].conn != Some((i, inc, slot)) {
                continue;
            }
            self.clients[c].inbuf.extend_from_slice(&bytes);
            self.client_read(c)?;
        }
        for slot in closed {
            let run = self.nodes[i].run.as_mut().expect("up");
            run.shard.closed(slot);
            if let Some(c) = run.slots.remove(&slot) {
                if self.clients[c].conn == Some((i, inc, slot)) {
                    self.log(|| format!("client {c}: n{} closed the connection", i + 1));
                    self.lose_connection(c);
                }
            }
        }
        Ok(())
    }

    fn client_read(&mut self, c: usize) -> Result<(), String> {
        // Bounded by the bytes buffered: each round takes one frame or stops.
        loop {
            let buf = &self.clients[c].inbuf;
            if buf.len() < 4 {
                return Ok(());
            }
            let len = i32::from_be_bytes(buf[..4].try_into().expect("4")) as usize;
            if buf.len() < 4 + len {
                return Ok(());
            }
            let f: Vec<u8> = buf[4..4 + len].to_vec();
            self.clients[c].inbuf.drain(..4 + len);
            if self.clients[c].connecting {
                self.connected(c, &f)?;
            } else {
                self.reply(c, &f)?;
            }
        }
    }

    fn connected(&mut self, c: usize, f: &[u8]) -> Result<(), String> {
        let resp = ConnectResponse::from_bytes(f).map_err(|e| format!("connect response: {e}"))?;
        let now = self.now;
        let cl = &mut self.clients[c];
        cl.connecting = false;
        if resp.session_id == 0 {
            // Expired: a new session next time.
            let old = cl.session.take();
            if let Some((s, _, _)) = old {
                if !self.closed_sessions.contains(&s) && !cl.closing {
                    // The server says expired: the close must have committed.
                    let _ = s;
                }
            }
            cl.closing = false;
            cl.nodes.clear();
            self.lose_connection(c);
            return Ok(());
        }
        let resumed = cl.session.is_some();
        cl.session = Some((
            resp.session_id,
            resp.passwd.clone().unwrap_or_default(),
            resp.timeout_ms,
        ));
        // The leader created or revalidated the session when the connect reached it.
        let sent = cl.last_sent.min(now);
        self.owners
            .entry(resp.session_id)
            .or_insert((c, sent, resp.timeout_ms, false));
        self.prove(resp.session_id, sent);
        if resumed {
            self.stats.resumes += 1;
        } else {
            self.stats.sessions += 1;
        }
        Ok(())
    }

    fn reply(&mut self, c: usize, f: &[u8]) -> Result<(), String> {
        let mut r = Reader::new(f);
        let h = ReplyHeader::read(&mut r).map_err(|e| format!("reply header: {e}"))?;
        if h.xid == xid::NOTIFICATION {
            return Ok(());
        }
        let cl = &mut self.clients[c];
        let Some(req) = cl.outstanding.pop_front() else {
            return Err(format!(
                "client {c}: reply xid {} with nothing outstanding",
                h.xid
            ));
        };
        if req.xid != h.xid {
            return Err(format!(
                "client {c}: reply xid {} but {} was sent first (session FIFO)",
                h.xid, req.xid
            ));
        }
        let code = Code::from_i32(h.err);
        if h.zxid < cl.last_zxid_seen && req.kind != Kind::Ping {
            return Err(format!(
                "client {c}: {:?} answered at zxid {} after it saw {} (single system image)",
                req.kind,
                zx(h.zxid),
                zx(cl.last_zxid_seen)
            ));
        }
        if h.zxid < cl.floor && req.kind != Kind::Ping {
            return Err(format!(
                "client {c}: {:?} answered at zxid {} after a sync answered at {}",
                req.kind,
                zx(h.zxid),
                zx(cl.floor)
            ));
        }
        cl.last_zxid_seen = cl.last_zxid_seen.max(h.zxid);
        let session = cl.session.as_ref().map_or(0, |s| s.0);
        if self.opts.trace {
            let line = format!(
                "t={:>6} client {c} <- {:?} xid {} zxid {} err {}",
                self.now,
                req.kind,
                h.xid,
                zx(h.zxid),
                h.err
            );
            self.trace.push(line);
        }
        match (req.kind, code) {
            (Kind::Create { ephemeral }, Some(Code::Ok)) => {
                let w = self.path_writes.entry(req.path.clone()).or_default();
                w.may_vanish |= ephemeral;
                w.acked.insert(h.zxid, true);
            }
            (Kind::Set | Kind::Delete, Some(Code::Ok)) => {
                let w = self.path_writes.entry(req.path.clone()).or_default();
                w.acked.insert(h.zxid, req.kind == Kind::Set);
            }
            (Kind::Read, Some(Code::Ok)) => self.check_read(c, &req, h.zxid, Some(&mut r))?,
            (Kind::Read, Some(Code::NoNode)) => self.check_read(c, &req, h.zxid, None)?,
            _ => {}
        }
        let cl = &mut self.clients[c];
        match (req.kind, code) {
            (Kind::Create { ephemeral }, Some(Code::Ok)) => {
                cl.nodes.insert(req.path.clone(), ephemeral);
                self.prove(session, req.sent_at);
                self.ack(c, session, req.xid, h.zxid)?;
            }
            (Kind::Set, Some(Code::Ok)) => {
                self.prove(session, req.sent_at);
                self.ack(c, session, req.xid, h.zxid)?;
            }
            (Kind::Delete, Some(Code::Ok)) => {
                cl.nodes.remove(&req.path);
                self.prove(session, req.sent_at);
                self.ack(c, session, req.xid, h.zxid)?;
            }
            (Kind::Delete | Kind::Set, Some(Code::NoNode)) => {
                // An ephemeral gone with an earlier session.
                cl.nodes.remove(&req.path);
            }
            (Kind::Sync, Some(Code::Ok)) => {
                self.stats.syncs += 1;
                cl.floor = cl.floor.max(req.acked_before);
                self.prove(session, req.sent_at);
                if h.zxid < req.acked_before {
                    return Err(format!(
                        "client {c}: sync answered at zxid {} but {} was acknowledged before it was sent",
                        zx(h.zxid),
                        zx(req.acked_before)
                    ));
                }
            }
            (Kind::Read, _) => self.stats.reads += 1,
            (Kind::Create { ephemeral: true }, Some(Code::EphemeralOnLocalSession))
                if self.opts.local_sessions && !self.opts.local_upgrading =>
            {
                self.stats.ephemerals_refused += 1;
            }
            (_, Some(Code::EphemeralOnLocalSession)) => {
                return Err(format!(
                    "client {c}: {:?} answered EPHEMERALONLOCALSESSION (local sessions {}, upgrading {})",
                    req.kind, self.opts.local_sessions, self.opts.local_upgrading
                ));
            }
            (Kind::Close, Some(Code::Ok)) => {
                cl.session = None;
                cl.nodes.clear();
                cl.closing = false;
            }
            _ => {}
        }
        Ok(())
    }

    /// A getData answered at `zxid` shows the node as every write acknowledged at or
    /// before that zxid left it (`r`: the reply's body, `None` for NONODE): a server
    /// whose answers carry a zxid must read a view at least that new. A read run on an
    /// older root fails here.
    fn check_read(
        &self,
        c: usize,
        req: &Req,
        zxid: i64,
        r: Option<&mut Reader<'_>>,
    ) -> Result<(), String> {
        let Some(w) = self.path_writes.get(&req.path) else {
            return Ok(());
        };
        let Some((&z, &exists)) = w.acked.range(..=zxid).next_back() else {
            return Ok(());
        };
        let stale = |what: String| {
            Err(format!(
                "client {c}: getData {} answered at zxid {} {what}, but a write acknowledged at {} left it otherwise",
                req.path,
                zx(zxid),
                zx(z)
            ))
        };
        match r {
            Some(r) => {
                let got =
                    records::GetDataResponse::read(r).map_err(|e| format!("getData reply: {e}"))?;
                if !exists {
                    return stale("found the node".into());
                }
                if got.stat.mzxid < z {
                    return stale(format!("shows mzxid {}", zx(got.stat.mzxid)));
                }
            }
            None if exists && !w.may_vanish => return stale("found no node".into()),
            None => {}
        }
        Ok(())
    }

    /// The leader handled a request of `session` sent at `at`.
    fn prove(&mut self, session: i64, at: u64) {
        if let Some(o) = self.owners.get_mut(&session) {
            o.1 = o.1.max(at);
        }
    }

    fn ack(&mut self, c: usize, session: i64, xid: i32, zxid: i64) -> Result<(), String> {
        self.stats.acked_writes += 1;
        self.max_acked = self.max_acked.max(zxid);
        if let Some(prev) = self.acked.insert(zxid, (session, xid)) {
            return Err(format!(
                "client {c}: zxid {} acknowledged twice ({prev:?} and ({session:#x}, {xid}))",
                zx(zxid)
            ));
        }
        self.check_acked(zxid)
    }

    /// An acknowledged write must be, at its zxid, that session's txn in the history.
    fn check_acked(&self, zxid: i64) -> Result<(), String> {
        let (s, x) = self.acked[&zxid];
        match self.canon.get(&zxid) {
            Some(&(cs, cx)) if (cs, cx) == (s, x) => Ok(()),
            Some(&(cs, cx)) => Err(format!(
                "acknowledged write (session {s:#x}, xid {x}) at zxid {} but the history has (session {cs:#x}, xid {cx}) there",
                zx(zxid)
            )),
            None => Err(format!(
                "acknowledged write (session {s:#x}, xid {x}) at zxid {} was never committed",
                zx(zxid)
            )),
        }
    }

    // ---- the event loop ----

    /// Processes one event and checks the invariants; `Ok(false)` when nothing is left.
    pub fn step(&mut self) -> Result<bool, String> {
        let Some(((t, _), ev)) = self.queue.pop_first() else {
            return Ok(false);
        };
        self.now = self.now.max(t);
        self.stats.events += 1;
        match ev {
            Ev::Loop { node, inc } => {
                if self.up(node) && self.nodes[node].inc == inc {
                    self.at(self.now + LOOP_TICK, Ev::Loop { node, inc });
                    let tick_election = {
                        let run = self.nodes[node].run.as_mut().expect("up");
                        run.shard.tick(&mut run.net);
                        let due = self.now >= run.election_tick + TICK_MS as u64 / 5;
                        if due {
                            run.election_tick = self.now;
                        }
                        due
                    };
                    if tick_election {
                        self.run_election(node, election::Event::Tick)?;
                    }
                    self.pass(node, Vec::new())?;
                }
            }
            Ev::Peer {
                to,
                from,
                conn,
                msg,
            } => {
                if self.dead_conns.contains(&conn) {
                    return Ok(true);
                }
                if !self.up(to) || self.cut.contains(&key(to, from)) {
                    self.dead_conns.insert(conn);
                    return Ok(true);
                }
                // The receiver takes a FOLLOWERINFO's connection as its current one
                // with the learner; other messages only on the current connection.
                let current = self.nodes[to].conn_to.get(&from).copied();
                let sender_current = self.nodes[from].conn_to.get(&to).copied();
                if sender_current != Some(conn) {
                    // The sender dropped that connection meanwhile.
                    return Ok(true);
                }
                if matches!(msg, Msg::FollowerInfo { .. }) {
                    self.nodes[to].conn_to.insert(from, conn);
                } else if current != Some(conn) {
                    return Ok(true);
                }
                self.pass(
                    to,
                    vec![Input::PeerMessage {
                        from: self.nodes[from].id,
                        msg,
                    }],
                )?;
            }
            Ev::Note { to, from, n } => {
                if self.up(to) && !self.cut.contains(&key(to, from)) {
                    let from_id = self.nodes[from].id;
                    self.run_election(
                        to,
                        election::Event::Notification {
                            from: from_id,
                            notification: n,
                        },
                    )?;
                }
            }
            Ev::Disconnect {
                node,
                inc,
                peer,
                conn,
            } => {
                if self.up(node)
                    && self.nodes[node].inc == inc
                    && self.nodes[node].conn_to.get(&peer) == Some(&conn)
                {
                    self.nodes[node].conn_to.remove(&peer);
                    let id = self.nodes[peer].id;
                    self.pass(node, vec![Input::PeerDisconnected { peer: id }])?;
                }
            }
            Ev::DiskDone { node, inc } => {
                if self.up(node) && self.nodes[node].inc == inc {
                    if let Some(op) = self.nodes[node].disk_ops.pop_front() {
                        let what = match &op {
                            DiskOp::Append(t) => format!(
                                "append {}..{}",
                                zx(t[0].zxid as i64),
                                zx(t[t.len() - 1].zxid as i64)
                            ),
                            DiskOp::Truncate { to, rebuild } => {
                                format!("truncate {} {rebuild}", zx(*to))
                            }
                            DiskOp::Install { zxid, .. } => format!("install {}", zx(*zxid)),
                        };
                        self.log(|| format!("n{} disk: {what}", node + 1));
                        let input = self.apply_disk_op(node, op)?;
                        if std::env::var("SIM_CHECK_DISK").is_ok() {
                            let d = self.nodes[node].disk.clone();
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                Sim::recover(&d)
                            }));
                            if r.is_err() {
                                return Err(format!(
                                    "n{} disk inconsistent after {what}: snapshots {:?}, log {:?}",
                                    node + 1,
                                    d.snapshots.iter().map(|s| zx(s.0)).collect::<Vec<_>>(),
                                    d.log.iter().map(|t| zx(t.zxid as i64)).collect::<Vec<_>>()
                                ));
                            }
                        }
                        self.pass(node, vec![input])?;
                    }
                }
            }
            Ev::EpochDone { node, inc } => {
                if self.up(node) && self.nodes[node].inc == inc {
                    if let Some((kind, epoch)) = self.nodes[node].epoch_ops.pop_front() {
                        let d = &mut self.nodes[node].disk;
                        match kind {
                            EpochKind::Accepted => d.accepted = d.accepted.max(epoch),
                            EpochKind::Current => d.current = d.current.max(epoch),
                        }
                        self.pass(node, vec![Input::EpochPersisted { kind, epoch }])?;
                    }
                }
            }
            Ev::SnapDone { node, inc } => {
                if self.up(node) && self.nodes[node].inc == inc {
                    if let Some((zxid, root)) = self.nodes[node].snap_ops.pop_front() {
                        self.log(|| format!("n{} snapshot {} durable", node + 1, zx(zxid)));
                        // A stand-in for the file's length (the simulated disk keeps
                        // the tree): it sizes how far back the leader's log reaches.
                        let bytes = (root.approximate_data_size().max(0) as u64)
                            + 64 * root.node_count() as u64;
                        let d = &mut self.nodes[node].disk;
                        if d.snapshots.last().is_none_or(|s| s.0 < zxid) {
                            d.snapshots.push((zxid, root));
                        }
                        if std::env::var("SIM_CHECK_DISK").is_ok() {
                            let d = self.nodes[node].disk.clone();
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                Sim::recover(&d)
                            }));
                            if r.is_err() {
                                return Err(format!("n{} disk inconsistent after snapshot {}: snapshots {:?}, log {:?}", node + 1, zx(zxid),
                                    d.snapshots.iter().map(|s| zx(s.0)).collect::<Vec<_>>(),
                                    d.log.iter().map(|t| zx(t.zxid as i64)).collect::<Vec<_>>()));
                            }
                        }
                        self.pass(node, vec![Input::SnapshotDurable { zxid, bytes }])?;
                    }
                }
            }
            Ev::Restart { node } => {
                if !self.up(node) {
                    self.start(node)?;
                }
            }
            Ev::Heal => self.heal(),
            Ev::Client { c } => {
                if self.now < self.opts.duration_ms + self.opts.settle_ms {
                    self.client_step(c)?;
                }
            }
        }
        Ok(true)
    }

    fn apply_disk_op(&mut self, i: usize, op: DiskOp) -> Result<Input, String> {
        let d = &mut self.nodes[i].disk;
        Ok(match op {
            DiskOp::Append(txns) => {
                let last = txns.last().expect("not empty").zxid as i64;
                let prev = d.log.last().map_or(0, |t| t.zxid);
                let mut p = prev as i64;
                for t in &txns {
                    let z = t.zxid as i64;
                    let base = d.snapshots.last().map_or(0, |s| s.0);
                    if !ringkeeper::storage::recovery::follows(p, z) && p >= base {
                        return Err(format!(
                            "n{} log gets {} after {}: a gap in the history",
                            i + 1,
                            zx(z),
                            zx(p)
                        ));
                    }
                    p = z;
                }
                if txns[0].zxid <= prev {
                    return Err(format!(
                        "n{} log append {} after {}",
                        i + 1,
                        zx(txns[0].zxid as i64),
                        zx(prev as i64)
                    ));
                }
                d.log.extend(txns);
                Input::LogDurable { through: last }
            }
            DiskOp::Truncate { to, rebuild } => {
                d.log.retain(|t| t.zxid as i64 <= to);
                let tree = rebuild.then(|| {
                    let (t, _) = Sim::recover(d);
                    t
                });
                Input::Truncated { to, tree }
            }
            DiskOp::Install { zxid, tree } => match tree {
                Some(t) => {
                    d.snapshots.retain(|s| s.0 < zxid);
                    d.snapshots.push((zxid, t.clone()));
                    d.log.clear();
                    Input::SnapshotInstalled { zxid, tree: t }
                }
                None => Input::SnapshotInstallFailed {
                    zxid,
                    error: "no snapshot received".into(),
                },
            },
        })
    }

    /// Injects faults now and then during the run.
    fn faults(&mut self) -> Result<(), String> {
        if !self.opts.faults || self.now >= self.opts.duration_ms {
            return Ok(());
        }
        let n = self.nodes.len();
        if self.rng.chance(2) {
            // An operator moves leadership: `ydld` on the leader, `rqld` elsewhere.
            let i = self.rng.range(0, n as u64 - 1) as usize;
            let leads = self.nodes[i]
                .run
                .as_ref()
                .is_some_and(|r| r.core.role() == ringkeeper::sequencer::Role::Leader);
            let cmd = if leads {
                ringkeeper::sequencer::LeadershipCmd::Yield(None)
            } else {
                ringkeeper::sequencer::LeadershipCmd::Request
            };
            self.pass(i, vec![Input::Leadership(cmd)])?;
        }
        if self.rng.chance(3) {
            let i = self.rng.range(0, n as u64 - 1) as usize;
            if self.up(i) {
                self.crash(i);
                let t = self.now + self.rng.range(20, 400);
                self.at(t, Ev::Restart { node: i });
            }
        }
        if self.rng.chance(2) && self.cut.is_empty() {
            let i = self.rng.range(0, n as u64 - 1) as usize;
            self.partition(i);
            let t = self.now + self.rng.range(100, 800);
            self.at(t, Ev::Heal);
        }
        Ok(())
    }

    /// Runs the seed: faults and load, then healing, then convergence.
    pub fn run(&mut self) -> Result<(), String> {
        let end = self.opts.duration_ms;
        // Bounded: every event is at a later time, and the run ends at `end + settle`.
        while self.now < end {
            if !self.step()? {
                break;
            }
            self.faults()?;
        }
        self.heal();
        for i in 0..self.nodes.len() {
            if !self.up(i) {
                self.start(i)?;
            }
        }
        let deadline = end + self.opts.settle_ms;
        // Converged and serving: a run whose faults left no write acknowledged (dense
        // crashes can keep a quorum from ever establishing an epoch) goes on until the
        // healed ensemble acknowledges one, within the same bound.
        while self.now < deadline {
            if !self.step()? {
                break;
            }
            if self.now.is_multiple_of(50) && self.converged() && self.stats.acked_writes > 0 {
                break;
            }
        }
        if !self.converged() {
            return Err(format!(
                "no convergence within {} ms after healing: {}",
                self.opts.settle_ms,
                self.describe()
            ));
        }
        // Every acknowledged write is committed where it was acknowledged.
        for z in self.acked.keys() {
            self.check_acked(*z)?;
        }
        if self.stats.acked_writes == 0 {
            return Err(format!(
                "no write was acknowledged, not even within {} ms after healing",
                self.opts.settle_ms
            ));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        for n in &self.nodes {
            match &n.run {
                Some(r) => parts.push(format!(
                    "n{} {:?} committed {}",
                    n.id,
                    r.core.role(),
                    zx(r.core.committed_zxid())
                )),
                None => parts.push(format!("n{} down", n.id)),
            }
        }
        parts.join(", ")
    }

    /// One leader, every other server a learner, all at the same committed zxid, and
    /// every acknowledged write in it.
    fn converged(&self) -> bool {
        let mut leaders = 0;
        let mut zxids = BTreeSet::new();
        for n in &self.nodes {
            let Some(r) = &n.run else { return false };
            match r.core.role() {
                Role::Leader => leaders += 1,
                Role::Learner => {}
                _ => return false,
            }
            zxids.insert(r.core.committed_zxid());
        }
        leaders == 1 && zxids.len() == 1 && *zxids.iter().next().expect("one") >= self.max_acked
    }
}

fn decode(r: &ringkeeper::zab::Txn) -> Txn {
    ringkeeper::sequencer::record_txn(r)
}

/// Runs the simulation, turning a panic (a broken assertion in the server's code) into
/// an error like any failed invariant.
pub fn run_caught(sim: &mut Sim) -> Result<(), String> {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run()));
    match r {
        Ok(r) => r,
        Err(p) => Err(format!(
            "panic at t={}: {}",
            sim.now,
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// Runs one seed, re-running it with a trace on failure. Returns the stats.
pub fn check_seed(opts: Options) -> Result<Stats, String> {
    let mut sim = Sim::new(opts.clone());
    match run_caught(&mut sim) {
        Ok(()) => Ok(sim.stats),
        Err(e) => {
            let mut traced = Sim::new(Options {
                trace: true,
                ..opts.clone()
            });
            let replay = run_caught(&mut traced).err();
            let tail: Vec<String> = traced.trace.iter().rev().take(40).rev().cloned().collect();
            Err(format!(
                "seed {} ({} voters, {} observers) failed: {e}\nreplay: {replay:?}\nlast trace lines:\n{}",
                opts.seed,
                opts.voters,
                opts.observers,
                tail.join("\n")
            ))
        }
    }
}
