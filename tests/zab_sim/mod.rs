//! A deterministic simulator for the replication core: whole ensembles in one thread
//! over a seeded network, disk and clock, with invariants checked after every step.
//!
//! Owns: the fault model and the oracle. Must not: use threads, real time or I/O, or
//! iterate anything in an order that is not a function of the seed (BTreeMap only).
//!
//! The model, and why:
//! - Quorum links are TCP: in order per connection, never duplicated. Faults break a
//!   connection (everything in flight on it is lost); a `FollowerInfo` opens the next
//!   one. Each end may or may not be told (`Disconnected`), so timeouts get exercised.
//! - Election notifications are delivered with random delay (so reordered), lost and
//!   duplicated: ZooKeeper's election layer re-sends over fresh connections.
//! - Each disk completes log writes and epoch writes in order after a delay; a crash
//!   loses every write that has not completed (unsynced data).
//! - Each disk holds a snapshot (zxid, data) and the log after it. A server now and then
//!   snapshots its applied state at its commit point (when its disk is idle, so that
//!   point is durable); the snapshot is a write in the log queue, and only once it is
//!   durable is the log through it dropped and the core told `Compact`. The data is
//!   the applied history itself (`encode_state`), so whoever holds or installs a
//!   snapshot can be checked to hold exactly a prefix of the committed history.
//! - Time advances only by events; servers tick every `TICK` units.
//! - Membership changes (`Options::reconfigs`): now and then the leader proposes a
//!   reconfig (a payload the simulator maps to a new ensemble: a member removed, a
//!   spare server added as voter or observer, a role flipped), checked as the server's
//!   prep checks it (at least two voters, a synced quorum of the new voters). Every
//!   server that applies it steps `Activate`, as the sequencer does; a server starts
//!   from the newer of the config it last put in force (its dynamic file) and the
//!   newest reconfig on its disk (its recovered tree), as the binary does; a removed
//!   server is stopped by the operator and a server added is started with the new
//!   config. The oracle checks that every txn, when it first commits, is durable on a
//!   quorum of the config in force before it (and a reconfig on a quorum of its new
//!   config too), on top of the checks above.

#![allow(dead_code)]

use bytes::Bytes;
use ringkeeper::zab::election::{self, Election, Notification, Timing};
use ringkeeper::zab::msg::{Msg, SyncMode};
use ringkeeper::zab::peer::{self, Action, Broken, EpochKind, Peer, Persisted};
use ringkeeper::zab::{Ensemble, ServerId, Txn, Zxid};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Simulated time units per server tick.
pub const TICK: u64 = 10;

/// Default chance per server tick of a snapshot: about one per 50 ticks of an idle disk,
/// often enough that a leader's log regularly starts after a server that was down for a
/// few hundred time units (so SNAP is common), rarely enough that DIFF stays common too.
pub const SNAPSHOT_PER_MILLE: u64 = 20;

/// Chances of a crash right after a learner sends an ACK of proposals, an ACK of
/// NEWLEADER (once per sync, so it can be likelier: a sync, SNAP above all, is where a
/// learner has the most unfinished writes) and ACKEPOCH.
pub const ACK_CRASH_PER_MILLE: u64 = 10;
pub const ACKNEWLEADER_CRASH_PER_MILLE: u64 = 100;
pub const ACKEPOCH_CRASH_PER_MILLE: u64 = 150;

/// splitmix64: tiny, seedable and good enough to pick faults; a crate would add nothing.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub voters: usize,
    pub observers: usize,
    /// Events processed while faults and writes are injected.
    pub steps: usize,
    /// Events allowed after healing for the ensemble to converge.
    pub settle_steps: usize,
    pub faults: bool,
    pub writes: bool,
    pub broken: Broken,
    /// Chance per server tick, in per mille, of snapshotting the applied state (0: never;
    /// the scenarios compact only on command).
    pub snapshot_per_mille: u64,
    /// Record a full trace (slower); failures re-run the seed with it on.
    pub trace: bool,
    /// `peer::Config::max_counter`: low values make leaders renew their epoch in place.
    pub max_counter: u32,
    /// Operators move leadership now and then (`Transfer`, `RequestLeadership`).
    pub transfers: bool,
    /// Operators change the membership now and then (see the module header).
    pub reconfigs: bool,
    /// Servers outside the first ensemble, down until a reconfig adds them.
    pub spares: usize,
}

impl Options {
    pub fn new(seed: u64, voters: usize) -> Options {
        Options {
            seed,
            voters,
            observers: 0,
            steps: 2500,
            settle_steps: 20_000,
            faults: true,
            writes: true,
            broken: Broken::default(),
            snapshot_per_mille: SNAPSHOT_PER_MILLE,
            trace: false,
            max_counter: u32::MAX,
            transfers: true,
            reconfigs: false,
            spares: 0,
        }
    }
}

#[derive(Clone, Debug)]
enum Ev {
    Tick {
        node: usize,
        inc: u64,
    },
    Net {
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
    Disconnect {
        node: usize,
        peer: usize,
        conn: u64,
    },
    LogDone {
        node: usize,
        inc: u64,
    },
    EpochDone {
        node: usize,
        inc: u64,
    },
    Restart {
        node: usize,
    },
    Heal {
        a: usize,
    },
    Write,
    /// The operator, after a reconfig committed: stops a server it no longer lists, or
    /// starts one it lists with that config.
    Operator {
        node: usize,
    },
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<Txn>),
    Truncate(Zxid),
    /// The core's SNAP install: the snapshot is replaced and the log emptied (the txns
    /// after it follow as an `Append`).
    Install(Zxid, Bytes),
    /// The driver's own snapshot of its applied state at its commit point. Not a write
    /// of the core (no `Durable`): once it is durable the log through it is dropped and
    /// the core is told `Compact`.
    Snapshot(Zxid, Bytes),
}

#[derive(Clone, Debug, Default)]
struct Disk {
    /// The durable snapshot: its zxid and data (`encode_state`).
    snapshot: Option<(Zxid, Bytes)>,
    /// Durable txns after the snapshot, in zxid order.
    log: Vec<Txn>,
    accepted: u32,
    current: u32,
}

impl Disk {
    fn snapshot_zxid(&self) -> Zxid {
        self.snapshot.as_ref().map_or(0, |s| s.0)
    }
}

struct Node {
    id: ServerId,
    up: bool,
    inc: u64,
    election: Election,
    peer: Peer,
    disk: Disk,
    /// Log writes not yet durable, in order: the core's write number (none for the
    /// driver's own snapshots) and the operation.
    log_ops: VecDeque<(Option<u64>, Op)>,
    epoch_ops: VecDeque<(EpochKind, u32)>,
    log_free_at: u64,
    epoch_free_at: u64,
    /// The replica state: the history this server has applied, from the snapshot it
    /// recovered or installed, then every `Committed`. Always a prefix of `canon`.
    applied: Vec<(Zxid, Bytes)>,
    /// The snapshot the core's in-memory log continues from, as this driver handed it
    /// over (recovered, compacted to, or installed): (zxid, data).
    base: (Zxid, Bytes),
    /// The config this server last put in force (its dynamic file): version, ensemble.
    config: (Zxid, Ensemble),
    /// Stopped by the operator for good (removed by a reconfig), until one adds it back.
    removed: bool,
    /// Started at least once (spares wait for a reconfig that adds them).
    ever_started: bool,
}

/// The connections between two servers over time. A connection is named by its
/// generation; each side sends on the one it last opened or accepted, so a leader keeps
/// writing to the old socket until it reads the FOLLOWERINFO of the new one, as a real
/// driver does.
#[derive(Clone, Copy, Debug, Default)]
struct Conn {
    latest: u64,
    /// Every generation up to this one is closed.
    dead_upto: u64,
    /// The generation each side (lower index first) uses.
    side: [u64; 2],
    last_at: [u64; 2],
}

impl Conn {
    fn alive(&self, gen: u64) -> bool {
        gen > self.dead_upto
    }
}

fn side(me: usize, other: usize) -> usize {
    usize::from(me > other)
}

/// What a run saw, for the test to report.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub events: usize,
    pub committed: usize,
    pub acked: usize,
    pub crashes: usize,
    pub elections: usize,
    pub epochs: usize,
    pub truncs: usize,
    pub diffs: usize,
    pub snaps: usize,
    /// Snapshots that became durable and were offered to the core as `Compact`.
    pub compactions: usize,
    /// Epochs a leader renewed in place: its counter ran out, or a learner had accepted
    /// a higher epoch (those are counted again in `renewals_for_learners`).
    pub renewals: usize,
    /// Renewals a leader started for a learner whose accepted epoch was above its own.
    pub renewals_for_learners: usize,
    /// Leadership transfers asked for (`Transfer`, `RequestLeadership`), hand-offs
    /// done (`TAKEOVER` sent), and epochs established by a server that took over.
    pub transfers: usize,
    pub handoffs: usize,
    pub takeover_epochs: usize,
    /// Transfers the leader called off (target gone or not ready in time) and went on
    /// leading.
    pub transfers_called_off: usize,
    /// Reconfigs proposed, and committed (first time in the history).
    pub reconfigs_proposed: usize,
    pub reconfigs_committed: usize,
    /// Servers removed and stopped, and servers added and started.
    pub removals: usize,
    pub additions: usize,
}

pub struct Sim {
    pub opts: Options,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    nodes: Vec<Node>,
    ensemble: Ensemble,
    conns: BTreeMap<(usize, usize), Conn>,
    cut: BTreeSet<(usize, usize)>,
    /// The one committed history every server's commits must be a prefix of.
    canon: Vec<(Zxid, Bytes)>,
    canon_payloads: BTreeSet<Bytes>,
    leaders: BTreeMap<u32, ServerId>,
    /// Servers that took leadership over and have not yet established (or given up).
    took_over: BTreeSet<usize>,
    origin: BTreeMap<u64, (usize, u64)>,
    acked: BTreeSet<u64>,
    next_write: u64,
    faults_on: bool,
    /// Reconfig payloads (by their write id) and the ensemble each makes.
    reconfigs: BTreeMap<u64, Ensemble>,
    pub trace: Vec<String>,
    pub stats: Stats,
}

fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

fn decode(p: &Bytes) -> u64 {
    u64::from_be_bytes(p[..8].try_into().expect("8-byte payload"))
}

impl Sim {
    pub fn new(opts: Options) -> Sim {
        let n = opts.voters + opts.observers;
        let total = n + opts.spares;
        let voters: Vec<ServerId> = (1..=opts.voters as u64).collect();
        let observers: Vec<ServerId> = (opts.voters as u64 + 1..=n as u64).collect();
        let ensemble = Ensemble::new(voters, observers);
        let mut sim = Sim {
            rng: Rng::new(opts.seed),
            faults_on: opts.faults,
            opts,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes: Vec::new(),
            ensemble: ensemble.clone(),
            conns: BTreeMap::new(),
            cut: BTreeSet::new(),
            canon: Vec::new(),
            canon_payloads: BTreeSet::new(),
            leaders: BTreeMap::new(),
            took_over: BTreeSet::new(),
            origin: BTreeMap::new(),
            acked: BTreeSet::new(),
            next_write: 1,
            reconfigs: BTreeMap::new(),
            trace: Vec::new(),
            stats: Stats::default(),
        };
        for i in 0..total {
            let id = i as u64 + 1;
            // A spare is built over the first ensemble plus itself (never started so).
            let mut first = sim.ensemble.clone();
            if !first.is_member(id) {
                first.observers.push(id);
            }
            let (election, peer) = sim.fresh(id, &Disk::default(), &first);
            sim.nodes.push(Node {
                id,
                up: false,
                inc: 0,
                election,
                peer,
                disk: Disk::default(),
                log_ops: VecDeque::new(),
                epoch_ops: VecDeque::new(),
                log_free_at: 0,
                epoch_free_at: 0,
                applied: Vec::new(),
                base: (0, Bytes::new()),
                config: (0, sim.ensemble.clone()),
                removed: false,
                ever_started: false,
            });
        }
        sim
    }

    fn fresh(&self, id: ServerId, disk: &Disk, ensemble: &Ensemble) -> (Election, Peer) {
        let timing = Timing {
            finalize_ticks: 2,
            resend_ticks: 3,
            max_resend_ticks: 24,
        };
        let election = Election::new(id, ensemble.clone(), timing);
        let cfg = peer::Config {
            my_id: id,
            ensemble: ensemble.clone(),
            init_limit: 10,
            sync_limit: 5,
            max_inflight: 64,
            max_counter: self.opts.max_counter,
            broken: self.opts.broken,
        };
        let persisted = Persisted {
            accepted_epoch: disk.accepted,
            current_epoch: disk.current,
            snapshot: disk.snapshot.clone(),
            log: disk.log.clone(),
        };
        (election, Peer::new(cfg, persisted))
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if self.opts.trace {
            let l = format!("t={:>6} {}", self.now, line());
            self.trace.push(l);
        }
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    /// Boots server `i` (0-based) from its disk.
    pub fn start(&mut self, i: usize) -> Result<(), String> {
        let node = &self.nodes[i];
        assert!(!node.up);
        if node.removed {
            return Ok(());
        }
        if !node.config.1.is_member(node.id) {
            // A spare never started, or a leader that put its own removal in force
            // while handing over and crashed before the operator stopped it: that one
            // stays down, as the operator would have it.
            if node.ever_started {
                self.nodes[i].removed = true;
            }
            return Ok(());
        }
        // The config of its dynamic file; a newer reconfig on its disk is registered
        // as pending below, as the sequencer does with its recovered tree's.
        let config = node.config.clone();
        let seen = self.disk_config(i).filter(|c| c.0 > config.0);
        let (election, peer) = self.fresh(node.id, &node.disk, &config.1);
        // Recovery loads the snapshot as the applied state; the log after it is applied
        // again as the core commits it.
        let base = node.disk.snapshot.clone().unwrap_or((0, Bytes::new()));
        let applied = decode_state(&base.1);
        self.check_prefix(i, "recovered snapshot", &applied)?;
        let node = &mut self.nodes[i];
        node.election = election;
        node.peer = peer;
        node.up = true;
        node.inc += 1;
        node.applied = applied;
        node.base = base;
        node.config = config;
        node.ever_started = true;
        let inc = node.inc;
        if let Some((zxid, ensemble)) = seen {
            // In the recovered snapshot: committed, in force; in the log: pending.
            let ev = if zxid <= self.nodes[i].peer.log_base() {
                peer::Event::Activate { zxid, ensemble }
            } else {
                peer::Event::Reconfig { zxid, ensemble }
            };
            let actions = self.nodes[i].peer.step(ev);
            for a in actions {
                self.apply(i, a)?;
            }
        }
        for j in 0..self.nodes.len() {
            if j != i {
                let c = self.conns.entry(key(i, j)).or_default();
                c.dead_upto = c.latest;
            }
        }
        self.log(|| format!("n{} start", i + 1));
        let t = self.now + 1 + (i as u64 % TICK);
        self.at(t, Ev::Tick { node: i, inc });
        self.begin_election(i)
    }

    pub fn start_all(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            if self.ensemble.is_member(self.nodes[i].id) {
                self.start(i)?;
            }
        }
        if self.opts.writes {
            let t = self.now + 50;
            self.at(t, Ev::Write);
        }
        Ok(())
    }

    /// Kills server `i`: every write not yet completed by its disk is lost.
    pub fn crash(&mut self, i: usize) {
        self.took_over.remove(&i);
        if !self.nodes[i].up {
            return;
        }
        self.stats.crashes += 1;
        let node = &mut self.nodes[i];
        node.up = false;
        node.inc += 1;
        node.log_ops.clear();
        node.epoch_ops.clear();
        self.log(|| format!("n{} crash", i + 1));
        // The kernel still delivers what the dead process had written; the peers see
        // the connection close after that.
        for j in 0..self.nodes.len() {
            if j == i {
                continue;
            }
            let c = self.conns.entry(key(i, j)).or_default();
            if c.alive(c.latest) {
                let (gen, t) = (c.latest, c.last_at[side(i, j)].max(self.now + 8) + 1);
                self.at(
                    t,
                    Ev::Disconnect {
                        node: j,
                        peer: i,
                        conn: gen,
                    },
                );
            }
        }
    }

    /// A crash at a named point, restarted later. Actions already returned by the step
    /// that crashed are dropped with the process (their node is down).
    fn crash_point(&mut self, i: usize) {
        self.crash(i);
        let t = self.now + self.rng.range(20, 300);
        self.at(t, Ev::Restart { node: i });
    }

    /// Cuts every link between `i` and the rest.
    pub fn isolate(&mut self, i: usize) {
        self.log(|| format!("n{} isolated", i + 1));
        for j in 0..self.nodes.len() {
            if j != i {
                self.cut.insert(key(i, j));
            }
        }
        self.break_all(i, false);
    }

    pub fn heal(&mut self) {
        self.log(|| "heal".to_string());
        self.cut.clear();
    }

    /// Submits `count` client writes to server `i` as one batch.
    pub fn write(&mut self, i: usize, count: usize) -> Result<(), String> {
        if !self.nodes[i].up {
            return Ok(());
        }
        let inc = self.nodes[i].inc;
        let mut batch = Vec::new();
        for _ in 0..count {
            let w = self.next_write;
            self.next_write += 1;
            self.origin.insert(w, (i, inc));
            batch.push(Bytes::copy_from_slice(&w.to_be_bytes()));
        }
        if self.nodes[i].peer.is_transferring() {
            // Handing leadership over: the core takes no client requests meanwhile.
            Ok(())
        } else if self.nodes[i].peer.established_epoch().is_some() {
            self.propose(i, batch)
        } else {
            // A learner forwards to its leader (or rejects, when not up to date).
            self.run_peer(i, peer::Event::Forward(batch))
        }
    }

    /// Leader `i` proposes `payloads` with the next zxids, as many as it has room for
    /// (the rest are dropped: their clients never hear back).
    fn propose(&mut self, i: usize, payloads: Vec<Bytes>) -> Result<(), String> {
        let p = &self.nodes[i].peer;
        let (Some(mut zxid), room) = (p.next_zxid(), p.proposal_room()) else {
            if p.established_epoch().is_some() && !p.is_renewing() {
                // The epoch's counter ran out: renew it (the writes are dropped, as a
                // leader that cannot take them now answers its clients).
                return self.run_peer(i, peer::Event::RenewEpoch);
            }
            return Ok(());
        };
        let txns: Vec<Txn> = payloads
            .into_iter()
            .take(room)
            .map(|payload| {
                let t = Txn { zxid, payload };
                zxid += 1;
                t
            })
            .collect();
        self.run_peer(i, peer::Event::Propose(txns))
    }

    fn break_all(&mut self, i: usize, always_tell: bool) {
        for j in 0..self.nodes.len() {
            if j == i {
                continue;
            }
            let k = key(i, j);
            let c = self.conns.entry(k).or_default();
            if !c.alive(c.latest) {
                continue;
            }
            c.dead_upto = c.latest;
            let gen = c.latest;
            // A dead process's sockets are reset at once; a partition is noticed, if at
            // all, only by timeouts or a late error.
            for (node, peer) in [(i, j), (j, i)] {
                if always_tell || self.rng.chance(500) {
                    let t = self.now + self.rng.range(1, 15);
                    self.at(
                        t,
                        Ev::Disconnect {
                            node,
                            peer,
                            conn: gen,
                        },
                    );
                }
            }
        }
    }

    /// An operator's `ydld` on server `i` (to the server with id `to`, or the best).
    pub fn transfer(&mut self, i: usize, to: Option<ServerId>) -> Result<(), String> {
        self.stats.transfers += 1;
        self.log(|| format!("n{} asked to yield to {to:?}", i + 1));
        self.run_peer(i, peer::Event::Transfer { to })
    }

    /// An operator's `rqld` on server `i`.
    pub fn request_leadership(&mut self, i: usize) -> Result<(), String> {
        self.stats.transfers += 1;
        self.log(|| format!("n{} requests leadership", i + 1));
        self.run_peer(i, peer::Event::RequestLeadership)
    }

    /// Closes the current connection between `i` and `j`; both ends are told.
    fn break_link(&mut self, i: usize, j: usize) {
        let k = key(i, j);
        let c = self.conns.entry(k).or_default();
        if !c.alive(c.latest) {
            return;
        }
        c.dead_upto = c.latest;
        let gen = c.latest;
        for (node, peer) in [(i, j), (j, i)] {
            let t = self.now + self.rng.range(1, 8);
            self.at(
                t,
                Ev::Disconnect {
                    node,
                    peer,
                    conn: gen,
                },
            );
        }
    }

    fn begin_election(&mut self, i: usize) -> Result<(), String> {
        let (current_epoch, last_zxid) = self.nodes[i].peer.vote_basis();
        self.run_election(
            i,
            election::Event::Start {
                last_zxid,
                current_epoch,
            },
        )
    }

    fn run_election(&mut self, i: usize, ev: election::Event) -> Result<(), String> {
        let actions = self.nodes[i].election.step(ev);
        for a in actions {
            if !self.nodes[i].up {
                break;
            }
            match a {
                election::Action::Send { to, notification } => {
                    self.send_note(i, (to - 1) as usize, notification)
                }
                election::Action::Elected {
                    leader,
                    election_epoch,
                    ..
                } => {
                    self.stats.elections += 1;
                    self.log(|| {
                        format!("n{} elected leader={leader} round={election_epoch}", i + 1)
                    });
                    let ev = if leader == self.nodes[i].id {
                        peer::Event::Lead
                    } else {
                        peer::Event::Follow { leader }
                    };
                    self.run_peer(i, ev)?;
                }
            }
        }
        Ok(())
    }

    fn send_note(&mut self, from: usize, to: usize, n: Notification) {
        if self.cut.contains(&key(from, to)) {
            return;
        }
        let (loss, dup) = if self.faults_on { (50, 30) } else { (0, 0) };
        if self.rng.chance(loss) {
            return;
        }
        let copies = if self.rng.chance(dup) { 2 } else { 1 };
        for _ in 0..copies {
            let t = self.now + self.rng.range(1, 12);
            self.at(t, Ev::Note { to, from, n });
        }
    }

    fn send_msg(&mut self, from: usize, to: usize, msg: Msg) {
        let k = key(from, to);
        let cut = self.cut.contains(&k) || !self.nodes[to].up;
        let c = self.conns.entry(k).or_default();
        if matches!(msg, Msg::FollowerInfo { .. }) {
            c.latest += 1;
            c.dead_upto = if cut { c.latest } else { c.latest - 1 };
            c.side[side(from, to)] = c.latest;
            c.last_at = [0, 0];
        }
        let gen = c.side[side(from, to)];
        if !c.alive(gen) {
            return;
        }
        if self.faults_on && self.rng.chance(4) {
            self.log(|| format!("link n{}-n{} breaks", from + 1, to + 1));
            let c = self.conns.get_mut(&k).expect("conn");
            c.dead_upto = c.latest;
            for (node, peer) in [(from, to), (to, from)] {
                if self.rng.chance(700) {
                    let t = self.now + self.rng.range(1, 15);
                    self.at(
                        t,
                        Ev::Disconnect {
                            node,
                            peer,
                            conn: gen,
                        },
                    );
                }
            }
            return;
        }
        let dir = usize::from(from > to);
        let t = self.now + self.rng.range(1, 8);
        let c = self.conns.get_mut(&k).expect("conn");
        let t = t.max(c.last_at[dir]);
        c.last_at[dir] = t;
        self.at(
            t,
            Ev::Net {
                to,
                from,
                conn: gen,
                msg,
            },
        );
    }

    fn run_peer(&mut self, i: usize, ev: peer::Event) -> Result<(), String> {
        let actions = self.nodes[i].peer.step(ev);
        for a in actions {
            self.apply(i, a)?;
        }
        // The core hands off once the transfer is ready and nothing it took is left; a
        // busy core may take a pass or two longer (then the next tick does it).
        if self.nodes[i].up && self.nodes[i].peer.transfer_ready() && self.rng.chance(600) {
            let actions = self.nodes[i].peer.step(peer::Event::HandOff);
            for a in actions {
                self.apply(i, a)?;
            }
        }
        // The replica state is exactly as far as the core's commit point (a crash midway
        // drops the rest of the actions with the process).
        let node = &self.nodes[i];
        let applied = node.applied.last().map_or(0, |e| e.0);
        if node.up && applied != node.peer.commit_zxid() {
            return Err(format!(
                "n{} applied through {} but commits through {}",
                node.id,
                zx(applied),
                zx(node.peer.commit_zxid())
            ));
        }
        Ok(())
    }

    fn apply(&mut self, i: usize, a: Action) -> Result<(), String> {
        let id = self.nodes[i].id;
        if !self.nodes[i].up {
            return Ok(());
        }
        match a {
            Action::Send { to, msg } => {
                match &msg {
                    Msg::Sync { mode, txns, .. } => {
                        match mode {
                            SyncMode::Trunc { .. } => self.stats.truncs += 1,
                            SyncMode::Snap { .. } => self.stats.snaps += 1,
                            SyncMode::Diff => self.stats.diffs += 1,
                        }
                        let n = txns.len();
                        self.log(|| {
                            format!(
                                "n{id} -> n{to} {}{} +{n} txns",
                                msg.name(),
                                sync_detail(mode)
                            )
                        });
                    }
                    Msg::Ping
                    | Msg::Ack { .. }
                    | Msg::Commit { .. }
                    | Msg::Propose { .. }
                    | Msg::QuorumView { .. } => {}
                    m => self.log(|| format!("n{id} -> n{to} {}", m.name())),
                }
                let crash = match msg {
                    Msg::Ack { .. } => ACK_CRASH_PER_MILLE,
                    Msg::AckNewLeader { .. } => ACKNEWLEADER_CRASH_PER_MILLE,
                    _ => 0,
                };
                let ack_epoch = matches!(msg, Msg::AckEpoch { .. });
                self.send_msg(i, (to - 1) as usize, msg);
                // Crash point: just after acknowledging, with the ACK in flight.
                if crash > 0 && self.faults_on && self.rng.chance(crash) {
                    self.crash_point(i);
                }
                // Crash point: just after ACKEPOCH, with any epoch write still unfinished
                // lost (a learner must not ack an epoch it could forget, then ack the same
                // epoch number from another leader).
                if ack_epoch && self.faults_on && self.rng.chance(ACKEPOCH_CRASH_PER_MILLE) {
                    self.crash_point(i);
                }
            }
            Action::Append { write, txns } => self.disk_op(i, Some(write), Op::Append(txns)),
            Action::Truncate { write, to } => self.disk_op(i, Some(write), Op::Truncate(to)),
            Action::InstallSnapshot { write, zxid, data } => {
                // The core does not emit `Committed` for what the snapshot holds: it is
                // the applied state from here on, and must be the committed history
                // through `zxid`, extending what this server applied.
                let state = decode_state(&data);
                let last = state.last().map_or(0, |e| e.0);
                if last != zxid {
                    return Err(format!(
                        "n{id} installs a snapshot labelled {} holding state through {}",
                        zx(zxid),
                        zx(last)
                    ));
                }
                self.check_prefix(i, "installed snapshot", &state)?;
                let node = &mut self.nodes[i];
                if state.len() < node.applied.len() {
                    return Err(format!(
                        "n{id} installs a snapshot at {} behind its applied {}",
                        zx(zxid),
                        zx(node.applied.last().map_or(0, |e| e.0))
                    ));
                }
                node.applied = state;
                node.base = (zxid, data.clone());
                self.disk_op(i, Some(write), Op::Install(zxid, data));
                // The sequencer takes a newer config from the installed snapshot.
                let newer = self.nodes[i]
                    .applied
                    .iter()
                    .rev()
                    .find_map(|(z, p)| self.reconfigs.get(&decode(p)).map(|e| (*z, e.clone())))
                    .filter(|(z, _)| *z > self.nodes[i].config.0);
                if let Some((zxid, ensemble)) = newer {
                    let actions = self.nodes[i]
                        .peer
                        .step(peer::Event::Activate { zxid, ensemble });
                    for a in actions {
                        self.apply(i, a)?;
                    }
                }
            }
            Action::PersistEpoch { kind, epoch } => {
                let node = &mut self.nodes[i];
                node.epoch_ops.push_back((kind, epoch));
                let t = node.epoch_free_at.max(self.now) + self.rng.range(1, 6);
                self.nodes[i].epoch_free_at = t;
                let inc = self.nodes[i].inc;
                self.at(t, Ev::EpochDone { node: i, inc });
            }
            Action::Committed { zxid, payload } => {
                // Only one newer than the config in force (the sequencer compares versions).
                let reconfig = self
                    .reconfigs
                    .get(&decode(&payload))
                    .cloned()
                    .filter(|_| zxid > self.nodes[i].config.0)
                    .map(|e| (zxid, e));
                self.check_commit(i, zxid, payload)?;
                if let Some((zxid, ensemble)) = reconfig {
                    // The sequencer puts a committed reconfig in force when it applies
                    // it (a leader's own was put in force by its peer already), in the
                    // middle of the actions of the step that committed it.
                    if self.nodes[i].up {
                        let actions = self.nodes[i]
                            .peer
                            .step(peer::Event::Activate { zxid, ensemble });
                        for a in actions {
                            self.apply(i, a)?;
                        }
                    }
                }
                // Crash point: a leader dying right after it committed.
                if self.faults_on
                    && self.nodes[i].peer.established_epoch().is_some()
                    && self.rng.chance(3)
                {
                    self.crash_point(i);
                }
            }
            Action::Established { epoch } => {
                self.stats.epochs += 1;
                if self.took_over.remove(&i) {
                    self.stats.takeover_epochs += 1;
                }
                self.log(|| format!("n{id} established epoch {epoch}"));
                if let Some(other) = self.leaders.insert(epoch, id) {
                    if other != id {
                        return Err(format!("two leaders for epoch {epoch}: n{other} and n{id}"));
                    }
                }
                // What is at or below the log's base is in the snapshot it continues from.
                let node = &self.nodes[i];
                let (log, base) = (node.peer.log(), node.peer.log_base());
                if base != node.base.0 {
                    return Err(format!(
                        "n{id}'s log starts at {} but its snapshot is at {}",
                        zx(base),
                        zx(node.base.0)
                    ));
                }
                let snap = decode_state(&node.base.1);
                for (z, p) in &self.canon {
                    let found = if *z <= base {
                        snap.binary_search_by_key(z, |e| e.0)
                            .ok()
                            .map(|k| &snap[k].1)
                    } else {
                        log.find(*z).map(|t| &t.payload)
                    };
                    if found != Some(p) {
                        return Err(format!(
                            "leader n{id} of epoch {epoch} lacks committed {z:#x}"
                        ));
                    }
                }
                self.run_election(i, election::Event::Established { epoch })?;
            }
            Action::Renewed { epoch } if self.nodes[i].peer.established_epoch().is_some() => {
                self.log(|| format!("n{id} renewed its epoch in place: {epoch}"));
                self.stats.renewals += 1;
                self.stats.epochs += 1;
                if let Some(other) = self.leaders.insert(epoch, id) {
                    if other != id {
                        return Err(format!("two leaders for epoch {epoch}: n{other} and n{id}"));
                    }
                }
                self.run_election(i, election::Event::Established { epoch })?;
            }
            Action::Renewed { epoch } => {
                self.log(|| format!("n{id} follows the renewed epoch {epoch}"));
                self.run_election(i, election::Event::Established { epoch })?;
            }
            Action::UpToDate { leader, epoch } => {
                self.log(|| format!("n{id} up to date with n{leader} epoch {epoch}"));
                self.run_election(i, election::Event::Established { epoch })?;
            }
            Action::Looking { reason } => {
                self.took_over.remove(&i);
                self.log(|| format!("n{id} looking: {reason}"));
                self.break_all(i, true);
                self.begin_election(i)?;
            }
            Action::Forwarded { payloads, .. } => self.propose(i, payloads)?,
            Action::Moved { leader, from } => {
                self.log(|| format!("n{id} moved: leader n{leader} (from n{from})"));
                if from == id {
                    self.stats.handoffs += 1;
                }
                if leader == id {
                    self.took_over.insert(i);
                    // The new leader closes its link to the old one (the old leader
                    // dials it once it sees the close), as the driver does.
                    self.break_link(i, (from - 1) as usize);
                }
                self.run_election(i, election::Event::Moved { leader })?;
            }
            Action::RenewWanted {
                learner,
                accepted_epoch,
            } => {
                // As the sequencer does at the end of its pass.
                self.log(|| {
                    format!("n{id} renews for n{learner}, which accepted epoch {accepted_epoch}")
                });
                self.stats.renewals_for_learners += 1;
                self.run_peer(i, peer::Event::RenewEpoch)?;
            }
            Action::TransferRefused { reason } => {
                if reason.contains("called off") {
                    self.stats.transfers_called_off += 1;
                }
                self.log(|| format!("n{id} transfer refused: {reason}"));
            }
            Action::Rejected { .. } | Action::Replied { .. } => {}
            Action::Activated { zxid, ensemble } => self.activated(i, zxid, ensemble)?,
            Action::ProtocolError { from, what } => {
                return Err(format!("n{id} protocol error from n{from}: {what}"))
            }
        }
        Ok(())
    }

    fn disk_op(&mut self, i: usize, write: Option<u64>, op: Op) {
        let node = &mut self.nodes[i];
        node.log_ops.push_back((write, op));
        let t = node.log_free_at.max(self.now) + self.rng.range(1, 6);
        self.nodes[i].log_free_at = t;
        let inc = self.nodes[i].inc;
        self.at(t, Ev::LogDone { node: i, inc });
    }

    /// Completes server `i`'s oldest log write on its disk.
    fn log_done(&mut self, i: usize) -> Result<(), String> {
        let id = self.nodes[i].id;
        let (write, op) = self.nodes[i].log_ops.pop_front().expect("log op");
        let disk = &mut self.nodes[i].disk;
        let last = disk.log.last().map_or(disk.snapshot_zxid(), |t| t.zxid);
        match op {
            Op::Append(txns) => {
                if txns.first().is_some_and(|t| t.zxid <= last) {
                    return Err(format!(
                        "n{id} appends {} after {}",
                        zx(txns[0].zxid),
                        zx(last)
                    ));
                }
                disk.log.extend(txns);
            }
            Op::Truncate(to) => {
                if to < disk.snapshot_zxid() {
                    return Err(format!(
                        "n{id} truncates to {} below its snapshot {}",
                        zx(to),
                        zx(disk.snapshot_zxid())
                    ));
                }
                disk.log.retain(|t| t.zxid <= to);
            }
            Op::Install(zxid, data) => {
                disk.snapshot = Some((zxid, data));
                disk.log.clear();
            }
            Op::Snapshot(zxid, data) => return self.snapshot_durable(i, zxid, data),
        }
        let write = write.expect("a core write");
        self.run_peer(i, peer::Event::Durable { write })
    }

    /// Server `i` snapshots its applied state at its commit point, if its disk is idle
    /// (so the commit point is durable) and the snapshot would be newer than its own.
    pub fn take_snapshot(&mut self, i: usize) {
        let node = &self.nodes[i];
        let z = node.peer.commit_zxid();
        if !node.up
            || !node.log_ops.is_empty()
            || z <= node.disk.snapshot_zxid()
            || !node.disk.log.iter().any(|t| t.zxid == z)
        {
            return;
        }
        let data = encode_state(&node.applied);
        self.log(|| format!("n{} snapshot at {}", i + 1, zx(z)));
        self.disk_op(i, None, Op::Snapshot(z, data));
    }

    /// The snapshot at `zxid` is durable: the log through it goes (never before, so a
    /// crash leaves either the old snapshot and the whole log or the new one and the
    /// rest), then the core may forget those txns too.
    fn snapshot_durable(&mut self, i: usize, zxid: Zxid, data: Bytes) -> Result<(), String> {
        let id = self.nodes[i].id;
        let disk = &mut self.nodes[i].disk;
        // The disk was idle when the snapshot was taken and writes complete in order, so
        // the durable history through `zxid` is still exactly what the snapshot holds.
        let mut durable = disk
            .snapshot
            .as_ref()
            .map_or_else(Vec::new, |s| decode_state(&s.1));
        durable.extend(
            disk.log
                .iter()
                .take_while(|t| t.zxid <= zxid)
                .map(|t| (t.zxid, t.payload.clone())),
        );
        if durable != decode_state(&data) {
            return Err(format!(
                "n{id}: snapshot at {} differs from its durable history",
                zx(zxid)
            ));
        }
        disk.snapshot = Some((zxid, data.clone()));
        disk.log.retain(|t| t.zxid > zxid);
        self.stats.compactions += 1;
        self.log(|| format!("n{id} snapshot at {} durable", zx(zxid)));
        let ev = peer::Event::Compact {
            through: zxid,
            snapshot: data.clone(),
        };
        self.run_peer(i, ev)?;
        // The core ignores a `Compact` while syncing; its log then still starts lower.
        let node = &mut self.nodes[i];
        if node.up && node.peer.log_base() == zxid {
            node.base = (zxid, data);
        }
        Ok(())
    }

    /// `state` (a recovered or installed snapshot) must be a prefix of the history.
    fn check_prefix(&self, i: usize, what: &str, state: &[(Zxid, Bytes)]) -> Result<(), String> {
        let k = state.len();
        if k > self.canon.len() || state != &self.canon[..k] {
            return Err(format!(
                "n{} {what} through {} is not the committed history",
                self.nodes[i].id,
                zx(state.last().map_or(0, |e| e.0))
            ));
        }
        Ok(())
    }

    /// The newest reconfig in server `i`'s durable snapshot and log: (zxid, ensemble).
    fn disk_config(&self, i: usize) -> Option<(Zxid, Ensemble)> {
        let disk = &self.nodes[i].disk;
        let mut entries: Vec<(Zxid, Bytes)> = disk
            .snapshot
            .as_ref()
            .map_or_else(Vec::new, |s| decode_state(&s.1));
        entries.extend(disk.log.iter().map(|t| (t.zxid, t.payload.clone())));
        entries
            .iter()
            .rev()
            .find_map(|(z, p)| self.reconfigs.get(&decode(p)).map(|e| (*z, e.clone())))
    }

    /// The config in force after the committed history's first `k` txns.
    fn canon_config(&self, k: usize) -> (Zxid, Ensemble) {
        self.canon[..k]
            .iter()
            .rev()
            .find_map(|(z, p)| self.reconfigs.get(&decode(p)).map(|e| (*z, e.clone())))
            .unwrap_or_else(|| (0, self.ensemble.clone()))
    }

    /// The servers holding (zxid, payload) durably: in their snapshot or log.
    fn holders(&self, zxid: Zxid, payload: &Bytes) -> Vec<ServerId> {
        self.nodes
            .iter()
            .filter(|n| {
                n.disk
                    .log
                    .iter()
                    .any(|t| t.zxid == zxid && t.payload == *payload)
                    || n.disk.snapshot.as_ref().is_some_and(|(z, data)| {
                        *z >= zxid && decode_state(data).contains(&(zxid, payload.clone()))
                    })
            })
            .map(|n| n.id)
            .collect()
    }

    /// Server `i`'s peer put `ensemble` in force.
    fn activated(&mut self, i: usize, version: Zxid, ensemble: Ensemble) -> Result<(), String> {
        let id = self.nodes[i].id;
        self.log(|| format!("n{id} activated {} {ensemble:?}", zx(version)));
        if version > self.nodes[i].config.0 {
            self.nodes[i].config = (version, ensemble.clone());
        }
        self.run_election(
            i,
            election::Event::Reconfigured {
                ensemble: ensemble.clone(),
            },
        )?;
        if !ensemble.is_member(id) && self.nodes[i].up && !self.nodes[i].peer.is_transferring() {
            // Removed: it stops serving (down here; the operator stops it for good). A
            // removed leader first hands leadership over; the operator stops it later.
            self.crash(i);
            self.nodes[i].removed = true;
        }
        Ok(())
    }

    /// The operator's part once the config `k` txns into the history is committed.
    fn operate(&mut self, j: usize) -> Result<(), String> {
        let (version, config) = self.canon_config(self.canon.len());
        let id = self.nodes[j].id;
        if !config.is_member(id) {
            if !self.nodes[j].removed || self.nodes[j].up {
                self.stats.removals += 1;
                self.log(|| format!("operator stops removed n{id}"));
                self.crash(j);
                self.nodes[j].removed = true;
            }
        } else if !self.nodes[j].up && (self.nodes[j].removed || !self.nodes[j].ever_started) {
            self.stats.additions += 1;
            self.log(|| format!("operator starts added n{id} with {}", zx(version)));
            let n = &mut self.nodes[j];
            n.removed = false;
            n.ever_started = false;
            n.config = (version, config);
            self.start(j)?;
        }
        Ok(())
    }

    /// An operator's reconfig on the leader, if there is one that can take it.
    fn inject_reconfig(&mut self) -> Result<(), String> {
        let Some(l) = self.nodes.iter().position(|x| {
            x.up && x.peer.established_epoch().is_some()
                && !x.peer.is_transferring()
                && !x.peer.reconfig_pending()
        }) else {
            return Ok(());
        };
        let p = &self.nodes[l].peer;
        let (Some(zxid), room) = (p.next_zxid(), p.proposal_room()) else {
            return Ok(());
        };
        if room == 0 || p.is_renewing() {
            return Ok(());
        }
        let cur = p.ensemble().clone();
        let ids: Vec<ServerId> = self.nodes.iter().map(|n| n.id).collect();
        let pick = ids[self.rng.range(0, ids.len() as u64 - 1) as usize];
        let (mut voters, mut observers) = (cur.voters.clone(), cur.observers.clone());
        match self.rng.range(0, 2) {
            // Remove a member (possibly the leader).
            0 if cur.is_member(pick) => {
                voters.retain(|v| *v != pick);
                observers.retain(|v| *v != pick);
            }
            // Flip a member's role.
            1 if cur.is_member(pick) => {
                if cur.is_voter(pick) {
                    voters.retain(|v| *v != pick);
                    observers.push(pick);
                } else {
                    observers.retain(|v| *v != pick);
                    voters.push(pick);
                }
            }
            // Add a server that is not a member, as voter or observer.
            _ if !cur.is_member(pick) => {
                if self.rng.chance(600) {
                    voters.push(pick);
                } else {
                    observers.push(pick);
                }
            }
            _ => return Ok(()),
        }
        // The server's prep: at least two voters, and a synced quorum of them.
        if voters.len() < 2 {
            return Ok(());
        }
        let next = Ensemble::new(voters, observers);
        let synced = self.nodes[l].peer.synced_followers();
        if !ringkeeper::zab::quorum::is_quorum(&next, synced) {
            return Ok(());
        }
        let w = self.next_write;
        self.next_write += 1;
        self.reconfigs.insert(w, next.clone());
        self.stats.reconfigs_proposed += 1;
        self.log(|| {
            format!(
                "n{} proposes reconfig {} at {}: {next:?}",
                l + 1,
                w,
                zx(zxid)
            )
        });
        self.run_peer(
            l,
            peer::Event::Reconfig {
                zxid,
                ensemble: next,
            },
        )?;
        self.propose(l, vec![Bytes::copy_from_slice(&w.to_be_bytes())])
    }

    fn check_commit(&mut self, i: usize, zxid: Zxid, payload: Bytes) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let k = node.applied.len();
        node.applied.push((zxid, payload.clone()));
        let id = node.id;
        if k < self.canon.len() {
            if self.canon[k] != (zxid, payload.clone()) {
                return Err(format!(
                    "n{id} commit #{k} is {zxid:#x}/{} but the history has {:#x}/{}",
                    decode(&payload),
                    self.canon[k].0,
                    decode(&self.canon[k].1)
                ));
            }
        } else {
            if let Some((last, _)) = self.canon.last() {
                if zxid <= *last {
                    return Err(format!("n{id} commits {zxid:#x} after {last:#x}"));
                }
            }
            if !self.canon_payloads.insert(payload.clone()) {
                return Err(format!("write {} committed twice", decode(&payload)));
            }
            // Committed means durable on a quorum of the config in force (and, for a
            // reconfig, of the config it makes as well).
            let holders = self.holders(zxid, &payload);
            let (v, before) = self.canon_config(self.canon.len());
            let mut need = vec![(v, before)];
            if let Some(next) = self.reconfigs.get(&decode(&payload)) {
                need.push((zxid, next.clone()));
                self.stats.reconfigs_committed += 1;
                for j in 0..self.nodes.len() {
                    let t = self.now + self.rng.range(1, 100);
                    self.at(t, Ev::Operator { node: j });
                }
            }
            for (v, e) in need {
                if !ringkeeper::zab::quorum::is_quorum(&e, holders.iter().copied()) {
                    return Err(format!(
                        "{zxid:#x} committed while durable only on {holders:?}, no quorum of \
                         the config {} {e:?}",
                        zx(v)
                    ));
                }
            }
            self.canon.push((zxid, payload.clone()));
            self.stats.committed += 1;
        }
        let w = decode(&payload);
        if self.origin.get(&w) == Some(&(i, self.nodes[i].inc)) && self.acked.insert(w) {
            self.stats.acked += 1;
        }
        Ok(())
    }

    /// Processes one event and checks the invariants; `Ok(false)` when nothing is left.
    pub fn step(&mut self) -> Result<bool, String> {
        let Some(((t, _), ev)) = self.queue.pop_first() else {
            return Ok(false);
        };
        self.now = self.now.max(t);
        self.stats.events += 1;
        match ev {
            Ev::Tick { node, inc } => {
                if self.nodes[node].up && self.nodes[node].inc == inc {
                    self.at(t + TICK, Ev::Tick { node, inc });
                    self.run_election(node, election::Event::Tick)?;
                    if self.nodes[node].inc == inc {
                        self.run_peer(node, peer::Event::Tick)?;
                    }
                    if self.nodes[node].up
                        && self.nodes[node].inc == inc
                        && self.nodes[node].peer.transfer_ready()
                    {
                        self.run_peer(node, peer::Event::HandOff)?;
                    }
                    let rate = self.opts.snapshot_per_mille;
                    if rate > 0 && self.rng.chance(rate) {
                        self.take_snapshot(node);
                    }
                    if node == 0 && self.faults_on {
                        self.inject_faults()?;
                    }
                }
            }
            Ev::Net {
                to,
                from,
                conn,
                msg,
            } => {
                let c = self.conns.entry(key(from, to)).or_default();
                if matches!(msg, Msg::FollowerInfo { .. }) && c.alive(conn) {
                    c.side[side(to, from)] = conn;
                }
                if self.nodes[to].up && c.alive(conn) && c.side[side(to, from)] == conn {
                    let from_id = self.nodes[from].id;
                    // The sequencer registers a reconfig among a leader's txns before
                    // its peer logs them.
                    if let Msg::Propose { txns } | Msg::Inform { txns } | Msg::Sync { txns, .. } =
                        &msg
                    {
                        if self.nodes[to].peer.following() == Some(from_id) {
                            for t in txns {
                                let seen = self.reconfigs.get(&decode(&t.payload)).cloned();
                                if let Some(e) = seen.filter(|_| t.zxid > self.nodes[to].config.0) {
                                    let ev = peer::Event::Reconfig {
                                        zxid: t.zxid,
                                        ensemble: e,
                                    };
                                    let actions = self.nodes[to].peer.step(ev);
                                    for a in actions {
                                        self.apply(to, a)?;
                                    }
                                }
                            }
                        }
                    }
                    self.run_peer(to, peer::Event::Message { from: from_id, msg })?;
                }
            }
            Ev::Note { to, from, n } => {
                if self.nodes[to].up {
                    self.log(|| format!("n{} <- n{} {:?}", to + 1, from + 1, n));
                    let from = self.nodes[from].id;
                    self.run_election(
                        to,
                        election::Event::Notification {
                            from,
                            notification: n,
                        },
                    )?;
                }
            }
            Ev::Disconnect { node, peer, conn } => {
                let c = self
                    .conns
                    .get(&key(node, peer))
                    .copied()
                    .unwrap_or_default();
                if self.nodes[node].up && c.side[side(node, peer)] == conn {
                    let peer = self.nodes[peer].id;
                    self.run_peer(node, peer::Event::Disconnected { peer })?;
                }
            }
            Ev::LogDone { node, inc } => {
                let n = &self.nodes[node];
                if n.up && n.inc == inc {
                    self.log_done(node)?;
                }
            }
            Ev::EpochDone { node, inc } => {
                let n = &mut self.nodes[node];
                if n.up && n.inc == inc {
                    let (kind, epoch) = n.epoch_ops.pop_front().expect("epoch op");
                    match kind {
                        EpochKind::Accepted => n.disk.accepted = n.disk.accepted.max(epoch),
                        EpochKind::Current => n.disk.current = n.disk.current.max(epoch),
                    }
                    self.run_peer(node, peer::Event::EpochPersisted { kind, epoch })?;
                }
            }
            Ev::Restart { node } => {
                if !self.nodes[node].up {
                    self.start(node)?;
                }
            }
            Ev::Operator { node } => self.operate(node)?,
            Ev::Heal { a } => {
                self.cut.retain(|&(x, y)| x != a && y != a);
                self.log(|| format!("n{} heals", a + 1));
            }
            Ev::Write => {
                if self.opts.writes && self.faults_on {
                    let target = self.pick_write_target();
                    let count = self.rng.range(1, 3) as usize;
                    self.write(target, count)?;
                    let t = self.now + self.rng.range(5, 30);
                    self.at(t, Ev::Write);
                }
            }
        }
        Ok(true)
    }

    fn pick_write_target(&mut self) -> usize {
        let leader = self
            .nodes
            .iter()
            .position(|n| n.up && n.peer.established_epoch().is_some());
        match leader {
            Some(l) if self.rng.chance(700) => l,
            _ => self.rng.range(0, self.nodes.len() as u64 - 1) as usize,
        }
    }

    /// Called once per tick of server 1: crashes, restarts and partitions.
    fn inject_faults(&mut self) -> Result<(), String> {
        let n = self.nodes.len() as u64;
        if self.opts.reconfigs && self.rng.chance(30) {
            self.inject_reconfig()?;
        }
        if self.opts.transfers && self.rng.chance(20) {
            // An operator moves leadership: `ydld` (to the best follower or a named
            // one) on the leader, or `rqld` on any server.
            self.stats.transfers += 1;
            let leader = self
                .nodes
                .iter()
                .position(|x| x.up && x.peer.established_epoch().is_some());
            let pick = self.rng.range(0, n - 1) as usize;
            match leader {
                Some(l) if self.rng.chance(500) => {
                    let to = if self.rng.chance(500) {
                        None
                    } else {
                        Some(self.nodes[pick].id)
                    };
                    self.log(|| format!("n{} asked to yield to {to:?}", l + 1));
                    self.run_peer(l, peer::Event::Transfer { to })?;
                }
                _ if self.nodes[pick].up => {
                    self.log(|| format!("n{} requests leadership", pick + 1));
                    self.run_peer(pick, peer::Event::RequestLeadership)?;
                }
                _ => {}
            }
        }
        if self.rng.chance(25) {
            let i = self.rng.range(0, n - 1) as usize;
            self.crash(i);
            let t = self.now + self.rng.range(20, 400);
            self.at(t, Ev::Restart { node: i });
        }
        if self.rng.chance(15) {
            let i = self.rng.range(0, n - 1) as usize;
            self.isolate(i);
            let t = self.now + self.rng.range(30, 500);
            self.at(t, Ev::Heal { a: i });
        }
        Ok(())
    }

    /// Runs the fault phase, then heals everything and waits for convergence, checking
    /// the end-state invariants.
    pub fn run(&mut self) -> Result<(), String> {
        self.start_all()?;
        for _ in 0..self.opts.steps {
            if !self.step()? {
                break;
            }
        }
        self.faults_on = false;
        self.heal();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up {
                self.start(i)?;
            }
        }
        for k in 0..self.opts.settle_steps {
            if self.converged() {
                return self.final_checks();
            }
            if self.opts.reconfigs && k % 2000 == 0 {
                self.refresh_configs()?;
            }
            if !self.step()? {
                break;
            }
        }
        Err(format!(
            "no convergence within {} events after healing",
            self.opts.settle_steps
        ))
    }

    /// The operator gives every member of the committed config that missed it (down
    /// when it was put in force) the current config files and restarts it. Our
    /// election notifications do not carry the config as ZooKeeper's do, so such a
    /// server may otherwise never find a leader its old config does not list.
    fn refresh_configs(&mut self) -> Result<(), String> {
        let (version, config) = self.canon_config(self.canon.len());
        for i in 0..self.nodes.len() {
            let n = &self.nodes[i];
            if !config.is_member(n.id) || n.config.0 >= version {
                continue;
            }
            let id = n.id;
            self.log(|| format!("operator gives n{id} the config {}", zx(version)));
            self.crash(i);
            let n = &mut self.nodes[i];
            n.config = (version, config.clone());
            n.removed = false;
            self.start(i)?;
        }
        Ok(())
    }

    /// One established leader, everyone else synced with it, all at the same commit.
    pub fn converged(&self) -> bool {
        let Some(l) = self
            .nodes
            .iter()
            .find(|n| n.up && n.peer.established_epoch().is_some())
        else {
            return false;
        };
        let commit = l.peer.commit_zxid();
        let members = self.canon_config(self.canon.len()).1;
        if !members.is_member(l.id) {
            return false;
        }
        self.nodes
            .iter()
            .filter(|n| members.is_member(n.id))
            .all(|n| {
                n.up && (n.id == l.id || n.peer.up_to_date_with() == Some(l.id))
                    && n.peer.commit_zxid() == commit
                    && n.applied.len() == self.canon.len()
            })
            && l.peer.last_zxid() == commit
    }

    fn final_checks(&self) -> Result<(), String> {
        for w in &self.acked {
            let p = Bytes::copy_from_slice(&w.to_be_bytes());
            if !self.canon_payloads.contains(&p) {
                return Err(format!("acknowledged write {w} lost"));
            }
        }
        // The core's log above its snapshot, through its commit point, is what the
        // replica applied after the snapshot.
        let members = self.canon_config(self.canon.len()).1;
        for n in self.nodes.iter().filter(|n| members.is_member(n.id)) {
            let (base, commit) = (n.peer.log_base(), n.peer.commit_zxid());
            let logged: Vec<(Zxid, Bytes)> = n
                .peer
                .log()
                .iter()
                .take_while(|t| t.zxid <= commit)
                .map(|t| (t.zxid, t.payload.clone()))
                .collect();
            let applied: Vec<(Zxid, Bytes)> =
                n.applied.iter().filter(|e| e.0 > base).cloned().collect();
            if logged != applied {
                return Err(format!(
                    "n{}: log after {} differs from the applied state",
                    n.id,
                    zx(base)
                ));
            }
        }
        // Every replica applied exactly `canon` (checked commit by commit and snapshot by
        // snapshot); compare digests too, as the driver will across processes.
        let digests: BTreeSet<u64> = self
            .nodes
            .iter()
            .filter(|n| members.is_member(n.id))
            .map(|n| digest(&n.applied))
            .collect();
        if digests.len() != 1 {
            return Err(format!("replica digests differ: {digests:?}"));
        }
        Ok(())
    }

    /// A one-line state summary per server, for scenarios.
    pub fn summary(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| {
                let role = if !n.up {
                    "down".to_string()
                } else if let Some(e) = n.peer.established_epoch() {
                    format!("leading epoch={e}")
                } else if let Some(l) = n.peer.up_to_date_with() {
                    format!("following n{l}")
                } else if n.peer.is_looking() {
                    "looking".to_string()
                } else {
                    "syncing".to_string()
                };
                let snap = match &n.disk.snapshot {
                    Some((z, _)) => format!(" snapshot={}", zx(*z)),
                    None => String::new(),
                };
                format!(
                    "n{}: {role} last={} commit={} durable_log={}{snap}",
                    n.id,
                    zx(n.peer.last_zxid()),
                    zx(n.peer.commit_zxid()),
                    n.disk.log.len()
                )
            })
            .collect()
    }

    /// The summary with the history's config and each server's, for failure reports.
    pub fn debug_state(&self) -> Vec<String> {
        let (v, c) = self.canon_config(self.canon.len());
        let mut out = vec![format!(
            "history: {} txns through {}; config in force {} {c:?}",
            self.canon.len(),
            zx(self.canon.last().map_or(0, |e| e.0)),
            zx(v)
        )];
        for (n, line) in self.nodes.iter().zip(self.summary()) {
            out.push(format!(
                "{line} applied={} config={:?}{}",
                n.applied.len(),
                n.peer.ensemble(),
                if n.removed { " removed" } else { "" }
            ));
        }
        out
    }

    pub fn run_for(&mut self, time: u64) -> Result<(), String> {
        let end = self.now + time;
        // Bounded by the events scheduled before `end`, and by a hard cap against a
        // livelock of zero-delay events (none exist, but a bug should not hang a test).
        for _ in 0..1_000_000 {
            match self.queue.first_key_value() {
                Some((&(t, _), _)) if t <= end => {
                    self.step()?;
                }
                _ => break,
            }
        }
        self.now = end;
        Ok(())
    }
}

fn sync_detail(mode: &SyncMode) -> String {
    match mode {
        SyncMode::Diff => String::new(),
        SyncMode::Trunc { to } => format!(" to={}", zx(*to)),
        SyncMode::Snap { zxid, .. } => format!(" at={}", zx(*zxid)),
    }
}

/// `epoch:counter`, the way the scenarios print zxids.
pub fn zx(z: Zxid) -> String {
    format!("{}:{}", z >> 32, z as u32)
}

/// FNV-1a over (zxid, payload) pairs: a cheap stand-in for the tree digest.
pub fn digest(state: &[(Zxid, Bytes)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (z, p) in state {
        for b in z.to_be_bytes().iter().chain(p.iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Bytes of one applied txn in a snapshot: its zxid, then its 8-byte payload.
const STATE_ENTRY: usize = 16;

/// A snapshot's data: the applied history itself, so that a snapshot can be checked
/// against the committed history (a real one holds the tree this history builds).
pub fn encode_state(state: &[(Zxid, Bytes)]) -> Bytes {
    let mut b = Vec::with_capacity(state.len() * STATE_ENTRY);
    for (z, p) in state {
        assert_eq!(p.len(), 8, "simulated payloads are write numbers");
        b.extend_from_slice(&z.to_be_bytes());
        b.extend_from_slice(p);
    }
    Bytes::from(b)
}

pub fn decode_state(data: &Bytes) -> Vec<(Zxid, Bytes)> {
    assert_eq!(
        data.len() % STATE_ENTRY,
        0,
        "snapshot data of {} bytes",
        data.len()
    );
    data.chunks(STATE_ENTRY)
        .map(|c| {
            let z = u64::from_be_bytes(c[..8].try_into().expect("8 bytes"));
            (z, Bytes::copy_from_slice(&c[8..]))
        })
        .collect()
}

/// Runs one seed; on failure re-runs it with the trace on and returns a report.
pub fn check_seed(opts: Options) -> Result<Stats, String> {
    let mut sim = Sim::new(opts.clone());
    match sim.run() {
        Ok(()) => Ok(sim.stats),
        Err(e) => {
            let mut again = Sim::new(Options {
                trace: true,
                ..opts.clone()
            });
            let replay = again.run();
            let keep = std::env::var("ZAB_TRACE_LINES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(60);
            let tail: Vec<&String> = again.trace.iter().rev().take(keep).rev().collect();
            let tail: Vec<&str> = tail.iter().map(|s| s.as_str()).collect();
            Err(format!(
                "seed {} ({} voters, {} observers) failed: {e}\nreplay: {:?}\nlast trace lines:\n{}\nstate:\n{}",
                opts.seed,
                opts.voters,
                opts.observers,
                replay.err(),
                tail.join("\n"),
                again.debug_state().join("\n")
            ))
        }
    }
}
