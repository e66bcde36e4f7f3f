//! The ZAB peer: one server's leader, follower and observer state machines for
//! discovery, synchronization and broadcast (ZooKeeper's `Leader`, `LearnerHandler`,
//! `Learner`, `Follower`, `Observer`).
//!
//! Owns: the in-memory log (txns after the snapshot base, with which log writes are
//! durable), the commit point, the persisted epochs as last reported, and per-learner
//! progress on a leader. Must not: touch files or sockets (log writes and epoch writes
//! are `Action`s whose completion comes back as `Durable` / `EpochPersisted`), read the
//! clock (`Tick`), or interpret payloads.
//!
//! The orderings ZooKeeper has lost data over (ZOOKEEPER-3911 and kin) are explicit
//! waits here, each on a completion event, never on the sending of an action:
//! - a follower sends ACKEPOCH only after `EpochPersisted{Accepted}`;
//! - a follower writes its current epoch only after `Durable` covers every log write of
//!   the sync, and sends ACK of NEWLEADER only after `EpochPersisted{Current}`;
//! - an ACK names the highest *durable* zxid, and the leader counts its own log only as
//!   far as it is durable.

use super::msg::{Msg, SyncMode};
use super::quorum::{is_quorum, quorum_zxid};
use super::txns::Txns;
use super::{counter_of, epoch_of, make_zxid, Ensemble, ServerId, Txn, Zxid};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// A learner waiting for LEADERINFO reconnects this many times per initLimit (a leader
/// that had not finished its own election may have dropped the first connection), so
/// it waits `init_limit / FOLLOWER_INFO_TRIES` ticks (at least one) between attempts.
///
/// Relative to initLimit, not a fixed tick count: LEADERINFO legitimately takes a
/// leader's election, FOLLOWERINFOs from a quorum and a synced accepted-epoch write, and
/// each reconnect restarts this learner's discovery at the leader. A fixed 2 ticks was
/// a fifth of initLimit in the simulator but 40 ms under the server's driver (which
/// ticks the peer ten times per tickTime): under load no learner kept a connection long
/// enough to get its LEADERINFO, and the epoch ended at initLimit.
const FOLLOWER_INFO_TRIES: u64 = 5;

/// Ticks a leader waits for a transfer to become ready (its target caught up, every
/// learner answered `Moving`) before it calls the transfer off and goes on leading (at
/// most syncLimit). The target was chosen up to date and the leader takes no new
/// requests meanwhile, so it needs only the last pass's txns: two ticks are far more
/// than that takes unless the target stalls.
const TRANSFER_LIMIT_TICKS: u64 = 2;

/// Deliberately broken behaviours, for proving that the simulator catches them. Never
/// set outside tests; every field defaults to correct behaviour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Broken {
    /// ACK proposals and NEWLEADER as soon as the txns are appended, before `Durable`.
    pub ack_before_durable: bool,
    /// Send ACKEPOCH before the accepted epoch is persisted.
    pub ackepoch_before_persist: bool,
    /// After a SNAP, ACK NEWLEADER without waiting for the snapshot and the txns after
    /// it to be durable (ZOOKEEPER-3104: NEWLEADER acked before the snapshot is synced).
    pub snap_ack_before_durable: bool,
    /// A follower commits through the leader's `Logged` alone, before its own log is
    /// durable there (so the leader and it are not yet a quorum of copies).
    pub local_commit_before_durable: bool,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub my_id: ServerId,
    pub ensemble: Ensemble,
    /// Ticks a leader has to establish, and a learner to sync (ZooKeeper's `initLimit`).
    pub init_limit: u64,
    /// Ticks of silence after which a link is considered lost (`syncLimit`).
    pub sync_limit: u64,
    /// Proposed but uncommitted txns a leader accepts before rejecting writes: bounds
    /// the memory a slow quorum can pin (etcd's `MaxInflightMsgs` plays the same role).
    pub max_inflight: usize,
    /// The last counter an epoch's zxids use before the leader renews its epoch
    /// (`Event::RenewEpoch`): `u32::MAX` as in ZooKeeper. Tests lower it to reach the
    /// renewal in a few txns; nothing else depends on its value.
    pub max_counter: u32,
    pub broken: Broken,
}

/// Which epoch file a `PersistEpoch` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochKind {
    Accepted,
    Current,
}

/// What the driver recovered from disk at start.
#[derive(Clone, Debug, Default)]
pub struct Persisted {
    pub accepted_epoch: u32,
    pub current_epoch: u32,
    /// The snapshot the log continues from: its zxid and opaque bytes.
    pub snapshot: Option<(Zxid, Bytes)>,
    /// Durable txns after the snapshot, in zxid order.
    pub log: Vec<Txn>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Election chose this server to lead.
    Lead,
    /// Election chose `leader`; this server follows (or observes, if it is an observer).
    Follow {
        leader: ServerId,
    },
    Message {
        from: ServerId,
        msg: Msg,
    },
    /// The connection to `peer` broke (only the connection current when it broke).
    Disconnected {
        peer: ServerId,
    },
    Tick,
    /// Every log write with id <= `write` is durable (log writes complete in order).
    Durable {
        write: u64,
    },
    EpochPersisted {
        kind: EpochKind,
        epoch: u32,
    },
    /// Leader: a batch of txns to propose, with the zxids the caller assigned: they
    /// continue the log (`Peer::next_zxid` first) within the established epoch, and fit
    /// `Peer::proposal_room`. The caller is the only owner of the counter; the peer
    /// checks that the batch continues its log and panics on a batch that does not (a
    /// bug of the caller, like any broken precondition).
    Propose(Vec<Txn>),
    /// The driver holds a durable snapshot of the committed state at `through`: the log
    /// may forget the txns up to it. Learners behind `through` are then sent a SNAP with
    /// `snapshot` (opaque; a driver may pass a handle and supply the bytes when it sends).
    /// Ignored unless `through` is a committed, durable zxid of the log above its base;
    /// in particular a learner that is syncing keeps its log whole.
    Compact {
        through: Zxid,
        snapshot: Bytes,
    },
    /// The driver holds a durable snapshot of the committed state at `zxid` (opaque
    /// `snapshot`, as for `Compact`). A learner behind the log's base is sent the
    /// newest such snapshot in the log and the txns after it, rather than the base's
    /// snapshot and every txn after the base. Ignored unless `zxid` is committed,
    /// durable and in the log above the current one. A driver that never reports
    /// snapshots this way sends SNAPs of the base.
    Snapshotted {
        zxid: Zxid,
        snapshot: Bytes,
    },
    /// The driver cannot carry on in this role (a SNAP that would not install, a TRUNC
    /// a leader should not have asked): back to the election.
    Abandon {
        reason: &'static str,
    },
    /// A log write failed: the log on disk ends at `durable`. The in-memory log is cut
    /// back to it (nothing after it may be claimed in an election or acknowledged), the
    /// writes in flight are forgotten, and this server goes back to the election.
    LogFailed {
        durable: Zxid,
    },
    /// Leader: the epoch's zxid counter is exhausted. Once every proposal is committed,
    /// the leader renews its epoch in place with its up-to-date learners (see
    /// `Action::Renewed`); new proposals wait until then.
    RenewEpoch,
    /// Learner: requests for the leader's driver (sent as one `Forward` when this
    /// learner is up to date, else each comes back `Rejected`).
    Forward(Vec<Bytes>),
    /// Leader: an answer for learner `to` (dropped unless it is up to date: a learner
    /// that reconnects has forgotten what it asked).
    Reply {
        to: ServerId,
        payload: Bytes,
    },
    /// Leader: hand leadership to `to` (a synced voter), or to the most up-to-date
    /// synced voter (`ydld`). The leader tells its learners to stop forwarding
    /// (`Msg::Moving`) and waits until each has answered, everything is committed and
    /// the target acknowledged it all (`Peer::transfer_ready`); the caller then steps
    /// `HandOff`. Not ready within two ticks, or the target gone: the transfer is
    /// called off (`Msg::MovingCancelled`) and this server leads on.
    Transfer {
        to: Option<ServerId>,
    },
    /// Leader: the caller has proposed everything it took before the transfer (nothing
    /// forwarded is left waiting): if `Peer::transfer_ready`, the target is told to lead
    /// (`Msg::TakeOver`), the other learners to follow it (`Msg::Moved`), and this
    /// server follows it.
    HandOff,
    /// Learner (a voter): ask the leader to hand leadership to this server (`rqld`).
    RequestLeadership,
    /// The txn `zxid`, which this server is about to log (a leader proposing it, a
    /// learner receiving it, a server recovering it), is a reconfig to `ensemble`: see
    /// `pending_config`. When the commit point passes `zxid`, `ensemble` is in force
    /// (`Action::Activated`); if the log is cut below it, it is forgotten.
    Reconfig {
        zxid: Zxid,
        ensemble: Ensemble,
    },
    /// Learner (or a leader applying its history): a committed reconfig put
    /// `ensemble` in force. A server no longer in it, or whose role changed, leaves
    /// its role (`Action::Looking`); a leader drops the learners it no longer has.
    Activate {
        zxid: Zxid,
        ensemble: Ensemble,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Send {
        to: ServerId,
        msg: Msg,
    },
    /// Log writes, to be carried out in `write` order; completion is `Durable`.
    Append {
        write: u64,
        txns: Vec<Txn>,
    },
    Truncate {
        write: u64,
        to: Zxid,
    },
    InstallSnapshot {
        write: u64,
        zxid: Zxid,
        data: Bytes,
    },
    /// Write an epoch file (write, sync, rename); completion is `EpochPersisted`.
    PersistEpoch {
        kind: EpochKind,
        epoch: u32,
    },
    /// Apply this txn: emitted once per incarnation per txn, in zxid order.
    Committed {
        zxid: Zxid,
        payload: Bytes,
    },
    /// This leader has a quorum synced to its history for `epoch` and takes writes.
    Established {
        epoch: u32,
    },
    /// A reconfig put `ensemble` in force here (see `Event::Activate`).
    Activated {
        zxid: Zxid,
        ensemble: Ensemble,
    },
    /// The epoch was renewed in place: on the leader, a quorum accepted `epoch` and
    /// acknowledged NEWLEADER for it, with the same history, and proposals continue from
    /// `(epoch, 1)`; on a learner, it acknowledged NEWLEADER of `epoch` (the election's
    /// vote moves to it, as at establishment).
    Renewed {
        epoch: u32,
    },
    /// Leader: `learner` connected with an accepted epoch above this leader's, so it
    /// cannot take this epoch (it refuses a LEADERINFO below its accepted epoch, as
    /// ZooKeeper's learner does) and would retry for as long as this leader leads. The
    /// driver renews the epoch in place (`Event::RenewEpoch`) as when the counter runs
    /// out; the renewed epoch is above `accepted_epoch`, and the learner's next try
    /// joins it.
    RenewWanted {
        learner: ServerId,
        accepted_epoch: u32,
    },
    /// This learner is synced with `leader` and may serve clients.
    UpToDate {
        leader: ServerId,
        epoch: u32,
    },
    /// Back to election: the driver starts `election` with `Peer::vote_basis` and closes
    /// this server's quorum connections.
    Looking {
        reason: &'static str,
    },
    /// Learner: a forward that this server cannot send now (not up to date).
    Rejected {
        payload: Bytes,
    },
    /// Leader: requests an up-to-date learner forwarded, for the driver.
    Forwarded {
        from: ServerId,
        payloads: Vec<Bytes>,
    },
    /// Learner: the leader's answer to something forwarded.
    Replied {
        payload: Bytes,
    },
    /// A peer broke the protocol; this server went back to LOOKING. Always a bug.
    ProtocolError {
        from: ServerId,
        what: String,
    },
    /// Leadership moved from `from` to `leader` without an election: this server now
    /// leads (`leader` is us: discovery with the learners that dial in) or follows
    /// `leader` (a FOLLOWERINFO to it follows). The driver tells its election that it
    /// is LEADING/FOLLOWING `leader`, and the new leader closes its link to `from` (so
    /// that the old leader dials it).
    Moved {
        leader: ServerId,
        from: ServerId,
    },
    /// A leadership transfer was refused (not leading, no synced voter to take over).
    TransferRefused {
        reason: String,
    },
}

/// How many learners a leader has, and where they stand (ZooKeeper's leader-only `mntr`
/// keys `learners`, `synced_followers`, `synced_observers`, `pending_syncs`,
/// `quorum_size`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LearnerCounts {
    /// Learners connected (a FOLLOWERINFO received), in any stage.
    pub learners: usize,
    /// Voting followers up to date.
    pub synced_followers: usize,
    /// Observers up to date.
    pub synced_observers: usize,
    /// Learners sent their sync, not yet up to date.
    pub pending_syncs: usize,
    /// Voting members of the ensemble.
    pub quorum_size: usize,
}

/// The in-memory log and its durability.
#[derive(Clone, Debug)]
struct Log {
    base: Zxid,
    snapshot: Bytes,
    /// The newest durable snapshot at or above `base` (`Event::Snapshotted`; `base`
    /// until one is reported): what a learner behind `base` is sent as its SNAP, so
    /// it applies the fewest txns after it.
    snap_zxid: Zxid,
    snap_data: Bytes,
    entries: Txns,
    issued: u64,
    durable_write: u64,
    /// Issued, not yet durable writes: (write id, last zxid of the log after it).
    pending: VecDeque<(u64, Zxid)>,
    /// Every entry of the current log at or below this zxid is durable.
    durable_zxid: Zxid,
}

impl Log {
    fn last(&self) -> Zxid {
        self.entries.last().map_or(self.base, |t| t.zxid)
    }

    fn contains(&self, zxid: Zxid) -> bool {
        zxid == self.base || self.entries.find(zxid).is_some()
    }

    /// Index of the first entry with a zxid above `zxid`.
    fn after(&self, zxid: Zxid) -> usize {
        self.entries.after(zxid)
    }

    fn append(&mut self, txns: Vec<Txn>, out: &mut Vec<Action>) {
        if txns.is_empty() {
            return;
        }
        let mut prev = self.last();
        for t in &txns {
            assert!(
                t.zxid > prev,
                "append out of order: {:#x} after {:#x}",
                t.zxid,
                prev
            );
            prev = t.zxid;
        }
        self.entries.extend(txns.iter().cloned());
        self.issued += 1;
        self.pending.push_back((self.issued, self.last()));
        out.push(Action::Append {
            write: self.issued,
            txns,
        });
    }

    fn truncate(&mut self, to: Zxid, out: &mut Vec<Action>) {
        assert!(to >= self.base, "truncate below the snapshot");
        let keep = self.after(to);
        self.entries.truncate(keep);
        // Writes still in flight may complete with entries that are now cut away; what
        // they make durable is only what survives the cut.
        for p in self.pending.iter_mut() {
            p.1 = p.1.min(to);
        }
        self.durable_zxid = self.durable_zxid.min(to);
        if self.snap_zxid > to {
            // Never: a learner cuts nothing it knows committed, and the snapshot is of a
            // committed state. Kept consistent all the same.
            self.snap_zxid = self.base;
            self.snap_data = self.snapshot.clone();
        }
        self.issued += 1;
        self.pending.push_back((self.issued, self.last()));
        out.push(Action::Truncate {
            write: self.issued,
            to,
        });
    }

    fn install_snapshot(&mut self, zxid: Zxid, data: Bytes, out: &mut Vec<Action>) {
        self.entries.clear();
        self.base = zxid;
        self.snapshot = data.clone();
        self.snap_zxid = zxid;
        self.snap_data = data.clone();
        for p in self.pending.iter_mut() {
            p.1 = 0;
        }
        self.durable_zxid = 0;
        self.issued += 1;
        self.pending.push_back((self.issued, zxid));
        out.push(Action::InstallSnapshot {
            write: self.issued,
            zxid,
            data,
        });
    }

    /// Forgets the entries up to `through`, which becomes the base, with `snapshot` as
    /// the state there. The caller checked that `through` is in the log, committed and
    /// durable.
    fn compact(&mut self, through: Zxid, snapshot: Bytes) {
        let keep = self.after(through);
        self.entries.forget_first(keep);
        self.base = through;
        // A big tree's snapshot is gigabytes: its last holder frees it on the reaper.
        if self.snap_zxid <= through {
            self.snap_zxid = through;
            crate::reaper::drop_later(std::mem::replace(&mut self.snap_data, snapshot.clone()));
        }
        crate::reaper::drop_later(std::mem::replace(&mut self.snapshot, snapshot));
    }

    fn on_durable(&mut self, write: u64) {
        while let Some(&(w, z)) = self.pending.front() {
            if w > write {
                break;
            }
            self.pending.pop_front();
            self.durable_write = w;
            self.durable_zxid = z;
        }
    }
}

/// Whether `next` may directly follow `prev` in a history: the next counter of the same
/// epoch, or the first zxid of a later epoch (counters restart at 1 in a new epoch).
pub fn follows(prev: Zxid, next: Zxid) -> bool {
    next == prev + 1 || (epoch_of(next) > epoch_of(prev) && counter_of(next) == 1)
}

/// What is wrong with appending `txns` after `last`, if anything: every txn must follow
/// the one before it. A leader sends its log in order over an ordered link, so a gap or
/// a repeat is a lying (or broken) leader, never something to log.
fn gap(last: Zxid, txns: &[Txn]) -> Option<String> {
    let mut prev = last;
    for t in txns {
        if !follows(prev, t.zxid) {
            return Some(format!("{:#x} does not follow {prev:#x}", t.zxid));
        }
        prev = t.zxid;
    }
    None
}

/// Where a learner stands, seen from the leader. Order matters: later stages compare
/// greater.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Info,
    LeaderInfoSent,
    AckedEpoch,
    NewLeaderSent,
    Synced,
    UpToDate,
}

#[derive(Clone, Debug)]
struct Learner {
    observer: bool,
    stage: Stage,
    accepted_epoch: u32,
    last_zxid: Zxid,
    /// The last zxid of the history this learner was sent in its sync.
    sync_last: Zxid,
    acked: Zxid,
    last_heard: u64,
    /// The epoch its LEADERINFO announced: its NEWLEADER names the same one, and only
    /// its ACKNEWLEADER counts (the leader's epoch may renew meanwhile).
    epoch: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum LeaderPhase {
    Discovery,
    AwaitAcceptedPersist,
    AwaitEpochAcks,
    AwaitCurrentPersist,
    Syncing,
    Established,
}

#[derive(Clone, Debug)]
struct Leader {
    phase: LeaderPhase,
    epoch: u32,
    started: u64,
    learners: BTreeMap<ServerId, Learner>,
    /// The last zxid of the history this epoch starts from.
    initial_last: Zxid,
    /// An epoch renewal in progress (see `Event::RenewEpoch`).
    renewal: Option<Renewal>,
    /// A leadership transfer in progress (see `Event::Transfer`).
    transfer: Option<Transfer>,
    /// The synced voters last sent as `QuorumView`, and the learners that have it.
    view_sent: Vec<ServerId>,
    view_told: Vec<ServerId>,
    /// The highest zxid sent as `Logged` (see `tell_logged`).
    logged_sent: Zxid,
    /// The highest accepted epoch a learner brought above this leader's epoch: the next
    /// renewal goes above it (see `Action::RenewWanted`).
    epoch_floor: u32,
}

/// A leader handing its leadership over.
#[derive(Clone, Debug)]
struct Transfer {
    target: ServerId,
    started: u64,
    /// Up-to-date learners that have not answered `Moving` yet.
    waiting: Vec<ServerId>,
}

/// A leader's in-place epoch renewal: discovery and synchronization again, with the
/// learners already up to date, over their open connections and with the same history.
#[derive(Clone, Debug)]
struct Renewal {
    stage: RenewStage,
    /// The new epoch (once chosen).
    epoch: u32,
    started: u64,
    acked_epoch: Vec<ServerId>,
    acked_newleader: Vec<ServerId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[allow(clippy::enum_variant_names)] // each stage waits for something: the prefix says so
enum RenewStage {
    /// Waiting for every proposal of the old epoch to commit.
    AwaitCommitted,
    AwaitAcceptedPersist,
    /// LEADERINFO sent to the up-to-date learners.
    AwaitEpochAcks,
    AwaitCurrentPersist,
    /// NEWLEADER sent to those that acknowledged the epoch.
    AwaitNewLeaderAcks,
}

/// A learner's side of its leader's epoch renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // each stage waits for something: the prefix says so
enum LearnerRenewal {
    AwaitAcceptPersist {
        epoch: u32,
    },
    AwaitNewLeader {
        epoch: u32,
    },
    /// NEWLEADER received: waiting for log write `write` and the current epoch.
    AwaitDurable {
        epoch: u32,
        write: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FStage {
    /// A leader that handed off: waiting for the new leader to close the old link (or a
    /// couple of ticks) before dialling it, so that its TAKEOVER is read first.
    AwaitHandOff,
    AwaitLeaderInfo,
    AwaitAcceptPersist,
    AwaitSync,
    AwaitNewLeader,
    AwaitNewLeaderDurable,
    Synced,
    UpToDate,
}

#[derive(Clone, Debug)]
struct Follower {
    leader: ServerId,
    observer: bool,
    stage: FStage,
    epoch: u32,
    last_heard: u64,
    sync_write: u64,
    /// The current-epoch write of this sync was issued.
    current_persist_sent: bool,
    ack_sent: Zxid,
    info_sent: u64,
    /// The leader's epoch renewal, while one runs.
    renewal: Option<LearnerRenewal>,
    /// Since when leadership is moving (`Msg::Moving`): nothing is forwarded meanwhile.
    moving: Option<u64>,
    /// The leader's last `QuorumView`.
    view: Vec<ServerId>,
    /// How far the leader's own log is durable, as its `Logged` said.
    leader_logged: Zxid,
    /// FOLLOWERINFOs from other servers (the newest each), replayed if this server takes
    /// over: a learner told to follow it may dial before its TAKEOVER arrives.
    early_infos: BTreeMap<ServerId, Msg>,
}

#[derive(Clone, Debug)]
enum Role {
    Looking,
    Leading(Leader),
    Following(Follower),
}

/// One server's ZAB state. Owned by the replication loop; single-threaded.
#[derive(Clone, Debug)]
pub struct Peer {
    cfg: Config,
    /// A reconfig in this server's log and not yet committed (ZooKeeper's
    /// `lastSeenQuorumVerifier`): its zxid and the ensemble it makes. While it is
    /// pending, a leader's commits and its NEWLEADER quorum need a quorum of both
    /// ensembles (ZooKeeper's pair of QuorumVerifiers), so the two configs' quorums
    /// overlap; when this server's commit point passes it, it is in force.
    pending_config: Option<(Zxid, Ensemble)>,
    /// The pending config the commit point passed during this step: put in force once
    /// the step's own handling is done (it may end this server's role).
    activate_due: Option<(Zxid, Ensemble)>,
    /// The zxid of the reconfig that made the ensemble in force (0: the config files'
    /// as given at start); an older one is never put in force again (a learner applies
    /// a reconfig its commit point already put in force).
    config_version: Zxid,
    accepted_epoch: u32,
    current_epoch: u32,
    log: Log,
    commit: Zxid,
    now: u64,
    role: Role,
}

impl Peer {
    /// A peer in LOOKING state over what the disk held. Everything recovered counts as
    /// durable; nothing after the snapshot counts as committed until a leader says so.
    pub fn new(cfg: Config, persisted: Persisted) -> Peer {
        assert!(cfg.ensemble.is_member(cfg.my_id));
        assert!(cfg.sync_limit >= 1 && cfg.init_limit >= cfg.sync_limit);
        assert!(persisted.accepted_epoch >= persisted.current_epoch);
        let (base, snapshot) = persisted.snapshot.unwrap_or((0, Bytes::new()));
        let log = Log {
            base,
            snap_zxid: base,
            snap_data: snapshot.clone(),
            snapshot,
            entries: Txns::from_vec(persisted.log),
            issued: 0,
            durable_write: 0,
            pending: VecDeque::new(),
            durable_zxid: 0,
        };
        let mut prev = base;
        for t in log.entries.iter() {
            assert!(t.zxid > prev, "recovered log out of order");
            prev = t.zxid;
        }
        let durable_zxid = log.last();
        Peer {
            pending_config: None,
            activate_due: None,
            config_version: 0,
            cfg,
            accepted_epoch: persisted.accepted_epoch,
            current_epoch: persisted.current_epoch,
            log: Log {
                durable_zxid,
                ..log
            },
            commit: base,
            now: 0,
            role: Role::Looking,
        }
    }

    /// (current epoch, last zxid): what this server stands on in an election and in
    /// ACKEPOCH.
    ///
    /// A follower logs proposals of a new epoch while its current-epoch write may still
    /// be in flight (and a crash can keep the log but lose that write), so the log can
    /// be ahead of the epoch file. A proposal of epoch `e` exists only once `e` was
    /// established by a quorum, so the log's own epoch is as good a witness as the file.
    pub fn vote_basis(&self) -> (u32, Zxid) {
        let last = self.log.last();
        (self.current_epoch.max(epoch_of(last)), last)
    }

    pub fn my_id(&self) -> ServerId {
        self.cfg.my_id
    }

    pub fn last_zxid(&self) -> Zxid {
        self.log.last()
    }

    pub fn commit_zxid(&self) -> Zxid {
        self.commit
    }

    pub fn accepted_epoch(&self) -> u32 {
        self.accepted_epoch
    }

    pub fn current_epoch(&self) -> u32 {
        self.current_epoch
    }

    /// The in-memory log after the snapshot base (for checks and tests).
    pub fn log(&self) -> &Txns {
        &self.log.entries
    }

    /// The zxid the in-memory log continues from (its snapshot's).
    pub fn log_base(&self) -> Zxid {
        self.log.base
    }

    /// The snapshot a learner behind the log's base is sent (`Event::Snapshotted`).
    pub fn snap_source(&self) -> Zxid {
        self.log.snap_zxid
    }

    pub fn is_looking(&self) -> bool {
        matches!(self.role, Role::Looking)
    }

    /// The epoch this server leads with a quorum, if it does.
    pub fn established_epoch(&self) -> Option<u32> {
        match &self.role {
            Role::Leading(l) if l.phase == LeaderPhase::Established => Some(l.epoch),
            _ => None,
        }
    }

    /// A leader's view of its learners, for monitoring (`mntr`); `None` unless leading.
    pub fn learner_counts(&self) -> Option<LearnerCounts> {
        let Role::Leading(l) = &self.role else {
            return None;
        };
        let mut c = LearnerCounts {
            learners: l.learners.len(),
            quorum_size: self.cfg.ensemble.voters.len(),
            ..LearnerCounts::default()
        };
        for x in l.learners.values() {
            match (x.stage, x.observer) {
                (Stage::UpToDate, false) => c.synced_followers += 1,
                (Stage::UpToDate, true) => c.synced_observers += 1,
                (Stage::NewLeaderSent | Stage::Synced, _) => c.pending_syncs += 1,
                _ => {}
            }
        }
        Some(c)
    }

    /// A leader's observers that are up to date (ZooKeeper's `observingLearners`: the
    /// AdminServer's `observers`); empty unless leading.
    pub fn synced_observers(&self) -> Vec<ServerId> {
        let Role::Leading(l) = &self.role else {
            return Vec::new();
        };
        l.learners
            .iter()
            .filter(|(_, x)| x.observer && x.stage == Stage::UpToDate)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether this server votes (else it observes).
    pub fn is_voter(&self) -> bool {
        self.cfg.ensemble.is_voter(self.cfg.my_id)
    }

    /// Whether an epoch renewal is in progress on this leader.
    pub fn is_renewing(&self) -> bool {
        matches!(&self.role, Role::Leading(l) if l.renewal.is_some())
    }

    /// Whether this leader is handing its leadership over (its caller takes no new
    /// client requests meanwhile; forwarded ones are still proposed).
    pub fn is_transferring(&self) -> bool {
        matches!(&self.role, Role::Leading(l) if l.transfer.is_some())
    }

    /// Whether this learner's leader is moving (it forwards nothing meanwhile), or this
    /// server just handed its leadership off and is not yet following the new leader.
    pub fn is_moving(&self) -> bool {
        matches!(&self.role, Role::Following(f) if f.moving.is_some() || f.stage == FStage::AwaitHandOff)
    }

    /// Leader: the transfer may complete now (`Event::HandOff`): every learner answered
    /// `Moving`, everything in the log is durable and committed, and the target, still
    /// up to date, acknowledged all of it.
    pub fn transfer_ready(&self) -> bool {
        let Role::Leading(l) = &self.role else {
            return false;
        };
        let Some(t) = &l.transfer else {
            return false;
        };
        let last = self.log.last();
        t.waiting.is_empty()
            && self.commit >= last
            && self.log.durable_zxid >= last
            && l.learners
                .get(&t.target)
                .is_some_and(|x| x.stage == Stage::UpToDate && x.acked >= last)
    }

    /// The voters synced with the leader, the leader included (sorted): live on a
    /// leader of an established epoch, the leader's last word on an up-to-date learner;
    /// `None` otherwise (looking, syncing, or no view heard yet).
    pub fn quorum_view(&self) -> Option<Vec<ServerId>> {
        match &self.role {
            Role::Leading(l) if l.phase == LeaderPhase::Established => Some(self.synced_voters(l)),
            Role::Following(f) if f.stage == FStage::UpToDate && !f.view.is_empty() => {
                Some(f.view.clone())
            }
            _ => None,
        }
    }

    /// Leader: the learners synced as followers (not observers), this server included
    /// (ZooKeeper's `Leader.isQuorumSynced` counts these against a new config); empty
    /// when not leading an established epoch.
    pub fn synced_followers(&self) -> Vec<ServerId> {
        match &self.role {
            Role::Leading(l) if l.phase == LeaderPhase::Established => l
                .learners
                .iter()
                .filter(|(_, x)| x.stage == Stage::UpToDate && !x.observer)
                .map(|(id, _)| *id)
                .chain([self.cfg.my_id])
                .collect(),
            _ => Vec::new(),
        }
    }

    fn synced_voters(&self, l: &Leader) -> Vec<ServerId> {
        let mut v: Vec<ServerId> = l
            .learners
            .iter()
            .filter(|(id, x)| x.stage == Stage::UpToDate && self.cfg.ensemble.is_voter(**id))
            .map(|(id, _)| *id)
            .chain([self.cfg.my_id])
            .collect();
        v.sort_unstable();
        v
    }

    /// Leader: a reconfig is proposed and not yet committed (`Event::Reconfig`).
    pub fn reconfig_pending(&self) -> bool {
        self.pending_config.is_some()
    }

    /// The ensemble this peer works with.
    pub fn ensemble(&self) -> &Ensemble {
        &self.cfg.ensemble
    }

    /// The leader this learner follows (or observes), synced or still syncing.
    pub fn following(&self) -> Option<ServerId> {
        match &self.role {
            Role::Following(f) => Some(f.leader),
            _ => None,
        }
    }

    /// The leader this learner is synced with, if it is.
    pub fn up_to_date_with(&self) -> Option<ServerId> {
        match &self.role {
            Role::Following(f) if f.stage == FStage::UpToDate => Some(f.leader),
            _ => None,
        }
    }

    pub fn step(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Lead => self.on_lead(&mut out),
            Event::Follow { leader } => self.on_follow(leader, &mut out),
            Event::Message { from, msg } => match self.role {
                Role::Leading(_) => self.leader_message(from, msg, &mut out),
                Role::Following(_) => self.follower_message(from, msg, &mut out),
                Role::Looking => {}
            },
            Event::Disconnected { peer } => match &mut self.role {
                Role::Leading(l) => {
                    l.learners.remove(&peer);
                    if let Some(t) = &mut l.transfer {
                        t.waiting.retain(|x| *x != peer);
                    }
                }
                Role::Following(f) if f.leader == peer && f.stage == FStage::AwaitHandOff => {
                    // The new leader closed the old link: its TAKEOVER was read.
                    f.stage = FStage::AwaitLeaderInfo;
                    self.send_follower_info(&mut out);
                }
                Role::Following(f) if f.leader == peer => {
                    self.go_looking("leader connection lost", &mut out)
                }
                Role::Following(f) => {
                    f.early_infos.remove(&peer);
                }
                _ => {}
            },
            Event::Tick => self.on_tick(&mut out),
            Event::Durable { write } => {
                self.log.on_durable(write);
                self.progress(&mut out);
            }
            Event::EpochPersisted { kind, epoch } => {
                match kind {
                    EpochKind::Accepted => self.accepted_epoch = self.accepted_epoch.max(epoch),
                    EpochKind::Current => self.current_epoch = self.current_epoch.max(epoch),
                }
                self.progress(&mut out);
            }
            Event::Propose(txns) => self.propose(txns, &mut out),
            Event::Compact { through, snapshot } => {
                let syncing = matches!(&self.role, Role::Following(f) if f.stage < FStage::Synced);
                if through > self.log.base
                    && through <= self.commit
                    && through <= self.log.durable_zxid
                    && self.log.contains(through)
                    && !syncing
                {
                    self.log.compact(through, snapshot);
                }
            }
            Event::Snapshotted { zxid, snapshot } => {
                if zxid > self.log.snap_zxid
                    && zxid <= self.commit
                    && zxid <= self.log.durable_zxid
                    && self.log.contains(zxid)
                {
                    self.log.snap_zxid = zxid;
                    self.log.snap_data = snapshot;
                }
            }
            Event::Forward(payloads) => self.forward(payloads, &mut out),
            Event::Abandon { reason } => {
                if !matches!(self.role, Role::Looking) {
                    self.go_looking(reason, &mut out);
                }
            }
            Event::LogFailed { durable } => {
                assert!(durable >= self.log.base, "durable below the snapshot");
                let keep = self.log.after(durable);
                self.log.entries.truncate(keep);
                if self.log.snap_zxid > durable {
                    self.log.snap_zxid = self.log.base;
                    self.log.snap_data = self.log.snapshot.clone();
                }
                self.log.pending.clear();
                self.log.durable_zxid = self.log.last();
                self.commit = self.commit.min(self.log.last());
                self.forget_cut_config();
                if !matches!(self.role, Role::Looking) {
                    self.go_looking("a log write failed", &mut out);
                }
            }
            Event::RenewEpoch => {
                let commit = self.commit;
                let now = self.now;
                if let Role::Leading(l) = &mut self.role {
                    if l.phase == LeaderPhase::Established && l.renewal.is_none() {
                        l.renewal = Some(Renewal {
                            stage: RenewStage::AwaitCommitted,
                            epoch: 0,
                            started: now,
                            acked_epoch: Vec::new(),
                            acked_newleader: Vec::new(),
                        });
                        let _ = commit;
                        self.advance_renewal(&mut out);
                    }
                }
            }
            Event::Transfer { to } => self.start_transfer(to, &mut out),
            Event::Reconfig { zxid, ensemble } => {
                if zxid > self.commit && zxid > self.config_version {
                    self.pending_config = Some((zxid, ensemble));
                }
            }
            Event::Activate { zxid, ensemble } => self.activate(zxid, ensemble, &mut out),
            Event::HandOff => self.hand_off(&mut out),
            Event::RequestLeadership => match &self.role {
                Role::Following(f)
                    if f.stage == FStage::UpToDate && !f.observer && f.moving.is_none() =>
                {
                    out.push(Action::Send {
                        to: f.leader,
                        msg: Msg::RequestLeadership,
                    });
                }
                Role::Leading(_) => out.push(Action::TransferRefused {
                    reason: "this server is the leader already".into(),
                }),
                _ => out.push(Action::TransferRefused {
                    reason: "this server is not a synced voting follower".into(),
                }),
            },
            Event::Reply { to, payload } => {
                if let Role::Leading(l) = &self.role {
                    if l.learners
                        .get(&to)
                        .is_some_and(|x| x.stage == Stage::UpToDate)
                    {
                        out.push(Action::Send {
                            to,
                            msg: Msg::Reply { payload },
                        });
                    }
                }
            }
        }
        if let Some((zxid, next)) = self.activate_due.take() {
            self.activate(zxid, next, &mut out);
        }
        out
    }

    /// Puts `ensemble` in force (see `Event::Activate`).
    fn activate(&mut self, zxid: Zxid, ensemble: Ensemble, out: &mut Vec<Action>) {
        if zxid < self.config_version {
            return;
        }
        if self.pending_config.as_ref().is_some_and(|p| p.0 <= zxid) {
            self.pending_config = None;
        }
        self.config_version = zxid;
        if ensemble == self.cfg.ensemble {
            // Only addresses changed: nothing to do here, but the caller moves on.
            out.push(Action::Activated { zxid, ensemble });
            return;
        }
        let old = std::mem::replace(&mut self.cfg.ensemble, ensemble);
        let me = self.cfg.my_id;
        let new = &self.cfg.ensemble;
        if let Role::Leading(l) = &mut self.role {
            // Learners removed, or whose role changed, reconnect (or stay away): their
            // FOLLOWERINFO said the old role. Dropped before a removed leader hands
            // over too: a learner the same reconfig removed leaves its role and never
            // answers MOVING, so waiting for it would stall the hand-off until syncLimit.
            l.learners
                .retain(|id, x| new.is_member(*id) && x.observer != new.is_voter(*id));
        }
        if !new.is_member(me) {
            out.push(Action::Activated {
                zxid,
                ensemble: new.clone(),
            });
            if !self.hand_over_leadership(out) && !matches!(self.role, Role::Looking) {
                self.go_looking("removed from the configuration", out);
            }
            return;
        }
        let role_changed = old.is_voter(me) != new.is_voter(me);
        out.push(Action::Activated {
            zxid,
            ensemble: new.clone(),
        });
        if role_changed && !self.hand_over_leadership(out) && !matches!(self.role, Role::Looking) {
            self.go_looking("the reconfiguration changed this server's role", out);
        }
    }

    /// A leader that a reconfig made a non-voter hands leadership to the most
    /// up-to-date synced voter of the new config (ZooKeeper's designated leader), so the
    /// others need no election; then it follows that one (and, not a member, is
    /// refused and stays out). False when it is not an established leader or no voter
    /// is synced (then it leaves its role and the others elect).
    fn hand_over_leadership(&mut self, out: &mut Vec<Action>) -> bool {
        match &self.role {
            Role::Leading(l) if l.phase == LeaderPhase::Established && l.transfer.is_none() => {}
            _ => return false,
        }
        let mut refused = Vec::new();
        self.start_transfer(None, &mut refused);
        let started = matches!(&self.role, Role::Leading(l) if l.transfer.is_some());
        if started {
            out.extend(refused);
        }
        started
    }

    fn go_looking(&mut self, reason: &'static str, out: &mut Vec<Action>) {
        self.role = Role::Looking;
        out.push(Action::Looking { reason });
    }

    fn protocol_error(&mut self, from: ServerId, what: String, out: &mut Vec<Action>) {
        out.push(Action::ProtocolError { from, what });
        self.go_looking("protocol error", out);
    }

    fn commit_to(&mut self, through: Zxid, out: &mut Vec<Action>) {
        if through <= self.commit {
            return;
        }
        assert!(
            through <= self.log.last(),
            "commit {through:#x} beyond log {:#x}",
            self.log.last()
        );
        let from = self.log.after(self.commit);
        let to = self.log.after(through);
        out.reserve(to - from);
        for t in self.log.entries.range(from, to) {
            out.push(Action::Committed {
                zxid: t.zxid,
                payload: t.payload.clone(),
            });
        }
        self.commit = through;
        if let Some((zxid, next)) = self.pending_config.clone() {
            if through >= zxid {
                self.pending_config = None;
                self.activate_due = Some((zxid, next));
            }
        }
    }

    /// A pending reconfig whose txn a TRUNC or a failed write cut from the log never
    /// happened here. Asked after a sync's txns are appended: the caller registers a
    /// reconfig among them before the peer takes the message, and the cut may lie
    /// below it.
    fn forget_cut_config(&mut self) {
        if self
            .pending_config
            .as_ref()
            .is_some_and(|(zxid, _)| *zxid > self.log.base && !self.log.contains(*zxid))
        {
            self.pending_config = None;
        }
    }

    /// Re-evaluates the waits that completions (durable, persisted) may have released.
    fn progress(&mut self, out: &mut Vec<Action>) {
        match self.role {
            Role::Leading(_) => {
                self.advance_leader(out);
                self.try_commit(out);
                self.tell_logged(out);
                self.advance_renewal(out);
            }
            Role::Following(_) => {
                self.learner_renewal(out);
                self.follower_after_persist(out);
                self.try_ack_newleader(out);
                self.try_ack(out);
                self.try_local_commit(out);
            }
            Role::Looking => {}
        }
    }

    // ---- leader ----

    fn on_lead(&mut self, out: &mut Vec<Action>) {
        if !self.cfg.ensemble.is_voter(self.cfg.my_id) {
            // An election that named this server while it is no voter (its config
            // changed under the election): elect again rather than wait forever.
            self.go_looking("elected, but not a voter of this config", out);
            return;
        }
        self.role = Role::Leading(Leader {
            phase: LeaderPhase::Discovery,
            epoch: 0,
            started: self.now,
            learners: BTreeMap::new(),
            initial_last: 0,
            renewal: None,
            transfer: None,
            view_sent: Vec::new(),
            view_told: Vec::new(),
            logged_sent: 0,
            epoch_floor: 0,
        });
        self.advance_leader(out);
    }

    fn leader(&mut self) -> &mut Leader {
        match &mut self.role {
            Role::Leading(l) => l,
            _ => unreachable!("not leading"),
        }
    }

    fn advance_leader(&mut self, out: &mut Vec<Action>) {
        let me = self.cfg.my_id;
        let Role::Leading(l) = &mut self.role else {
            return;
        };
        if l.phase == LeaderPhase::Discovery {
            let ids = l.learners.keys().copied().chain([me]);
            if is_quorum(&self.cfg.ensemble, ids) {
                let max_accepted = l
                    .learners
                    .values()
                    .map(|x| x.accepted_epoch)
                    .max()
                    .unwrap_or(0);
                l.epoch = self.accepted_epoch.max(max_accepted) + 1;
                l.phase = LeaderPhase::AwaitAcceptedPersist;
                out.push(Action::PersistEpoch {
                    kind: EpochKind::Accepted,
                    epoch: l.epoch,
                });
            }
        }
        if l.phase == LeaderPhase::AwaitAcceptedPersist && self.accepted_epoch >= l.epoch {
            if self.accepted_epoch > l.epoch {
                // Another leader's epoch got persisted meanwhile: ours is stale.
                self.go_looking("accepted a newer epoch", out);
                return;
            }
            l.phase = LeaderPhase::AwaitEpochAcks;
        }
        if l.phase >= LeaderPhase::AwaitEpochAcks {
            for (&id, x) in l.learners.iter_mut() {
                if x.stage == Stage::Info {
                    x.stage = Stage::LeaderInfoSent;
                    x.epoch = l.epoch;
                    out.push(Action::Send {
                        to: id,
                        msg: Msg::LeaderInfo { new_epoch: l.epoch },
                    });
                }
            }
        }
        if l.phase == LeaderPhase::AwaitEpochAcks {
            let acked = l
                .learners
                .iter()
                .filter(|(_, x)| x.stage >= Stage::AckedEpoch)
                .map(|(id, _)| *id);
            // The current epoch outranks every longer history of an older epoch in the
            // next election, so it is written only once this leader's own history is
            // durable: a crash losing txns still in flight from its follower days would
            // otherwise let it win with a shorter log and TRUNC committed txns away (the
            // leader's side of ZOOKEEPER-4643; the follower's waits in `apply_sync`).
            let own_durable = self.log.durable_zxid >= self.log.last();
            if own_durable && is_quorum(&self.cfg.ensemble, acked.chain([me])) {
                l.phase = LeaderPhase::AwaitCurrentPersist;
                out.push(Action::PersistEpoch {
                    kind: EpochKind::Current,
                    epoch: l.epoch,
                });
            }
        }
        if l.phase == LeaderPhase::AwaitCurrentPersist && self.current_epoch >= l.epoch {
            l.phase = LeaderPhase::Syncing;
            l.initial_last = self.log.last();
        }
        if l.phase >= LeaderPhase::Syncing {
            let established = l.phase == LeaderPhase::Established;
            let ready: Vec<ServerId> = l
                .learners
                .iter()
                .filter(|(_, x)| x.stage == Stage::AckedEpoch && (!x.observer || established))
                .map(|(id, _)| *id)
                .collect();
            for id in ready {
                self.sync_learner(id, out);
            }
        }
        let Role::Leading(l) = &mut self.role else {
            return;
        };
        if l.phase == LeaderPhase::Syncing {
            let self_ready =
                self.log.durable_zxid >= l.initial_last && self.current_epoch == l.epoch;
            let synced: Vec<ServerId> = l
                .learners
                .iter()
                .filter(|(_, x)| x.stage >= Stage::Synced && !x.observer)
                .map(|(id, _)| *id)
                .chain([me])
                .collect();
            // A reconfig in the history commits with it: a quorum of its config too.
            let both = is_quorum(&self.cfg.ensemble, synced.iter().copied())
                && self
                    .pending_config
                    .as_ref()
                    .is_none_or(|(_, next)| is_quorum(next, synced.iter().copied()));
            if self_ready && both {
                self.establish(out);
            }
        }
    }

    fn establish(&mut self, out: &mut Vec<Action>) {
        let l = self.leader();
        l.phase = LeaderPhase::Established;
        let (epoch, initial_last) = (l.epoch, l.initial_last);
        // The whole initial history is on a quorum's disks now, so it is committed; its
        // commits come before `Established`, so that a driver taking writes from then on
        // has applied the history first. A reconfig in it is put in force at the end of
        // the step, once the learners are told (it may take this leader's role away).
        self.commit_to(initial_last, out);
        out.push(Action::Established { epoch });
        let commit = self.commit;
        let l = self.leader();
        for (&id, x) in l.learners.iter_mut() {
            if x.stage == Stage::Synced {
                if !x.observer {
                    out.push(Action::Send {
                        to: id,
                        msg: Msg::Commit { through: commit },
                    });
                }
                out.push(Action::Send {
                    to: id,
                    msg: Msg::UpToDate,
                });
                x.stage = Stage::UpToDate;
            }
        }
        // Observers waited for establishment so that they are only sent committed txns.
        self.advance_leader(out);
    }

    /// DIFF, TRUNC or SNAP from the learner's last zxid, then NEWLEADER.
    fn sync_learner(&mut self, id: ServerId, out: &mut Vec<Action>) {
        let commit = self.commit;
        let log = &self.log;
        let Role::Leading(l) = &mut self.role else {
            return;
        };
        let x = l.learners.get_mut(&id).expect("learner");
        // Observers are sent only committed txns; later ones reach them as INFORM.
        let cap = if x.observer { commit } else { log.last() };
        let f = x.last_zxid;
        let (mode, from) = if f < log.base {
            // The newest snapshot the log holds, not the base's: the learner then applies
            // at most the txns since that snapshot (ZooKeeper serializes its current tree
            // for a SNAP, with the same effect).
            (
                SyncMode::Snap {
                    zxid: log.snap_zxid,
                    data: log.snap_data.clone(),
                },
                log.snap_zxid,
            )
        } else if f <= cap && log.contains(f) {
            // Logs match up to a shared zxid (one proposer per epoch, in-order links).
            (SyncMode::Diff, f)
        } else {
            // The learner has txns we lack: cut back to our last zxid below its own.
            // Zxids increase: the last entry below `f` and at or below `cap`.
            let below = f
                .checked_sub(1)
                .and_then(|z| log.after(z.min(cap)).checked_sub(1))
                .map(|k| log.entries[k].zxid);
            let to = below.unwrap_or(log.base);
            (SyncMode::Trunc { to }, to)
        };
        let txns = log.entries.to_vec(log.after(from), log.after(cap));
        x.stage = Stage::NewLeaderSent;
        x.sync_last = cap;
        out.push(Action::Send {
            to: id,
            msg: Msg::Sync {
                mode,
                txns,
                commit_through: commit.min(cap),
            },
        });
        out.push(Action::Send {
            to: id,
            msg: Msg::NewLeader { epoch: x.epoch },
        });
    }

    fn leader_message(&mut self, from: ServerId, msg: Msg, out: &mut Vec<Action>) {
        let now = self.now;
        let (current_epoch, last) = self.vote_basis();
        let ensemble = self.cfg.ensemble.clone();
        let me = self.cfg.my_id;
        let l = self.leader();
        if let Msg::FollowerInfo {
            accepted_epoch,
            last_zxid,
            observer,
        } = msg
        {
            // A member is taken in the role it says it has, even when that is not its
            // role here (a learner that has not seen a reconfig yet): it syncs, and
            // the reconfig it then applies moves it to its role. Acks count only from
            // voters of this leader's config that joined as followers.
            if !ensemble.is_member(from) || from == me {
                return;
            }
            // A FOLLOWERINFO opens a new connection: whatever we knew of it is gone.
            l.view_told.retain(|id| *id != from);
            l.learners.insert(
                from,
                Learner {
                    observer,
                    stage: Stage::Info,
                    accepted_epoch,
                    last_zxid,
                    sync_last: 0,
                    acked: 0,
                    epoch: 0,
                    last_heard: now,
                },
            );
            // A learner whose accepted epoch is above ours refuses our LEADERINFO and
            // comes back for as long as we lead: an election it lost while a leader
            // that never established had it accept a higher epoch. Ask for a renewal
            // above it. (Not for an epoch this far up: a renewal must be able to add
            // one, and no honest learner gets there.)
            if l.phase == LeaderPhase::Established
                && l.renewal.is_none()
                && l.transfer.is_none()
                && accepted_epoch > l.epoch
                && accepted_epoch < u32::MAX - 1
            {
                l.epoch_floor = l.epoch_floor.max(accepted_epoch);
                out.push(Action::RenewWanted {
                    learner: from,
                    accepted_epoch,
                });
            }
            self.advance_leader(out);
            return;
        }
        let epoch = l.epoch;
        let established = l.phase == LeaderPhase::Established;
        let Some(x) = l.learners.get_mut(&from) else {
            return;
        };
        x.last_heard = now;
        let renewing = l.renewal.as_ref().map(|r| (r.stage, r.epoch));
        match msg {
            Msg::AckEpoch { .. } if x.stage == Stage::UpToDate && renewing.is_none() => {
                // Its part of a renewal that completed without it.
                out.push(Action::Send {
                    to: from,
                    msg: Msg::NewLeader { epoch },
                });
            }
            Msg::AckEpoch { last_zxid, .. }
                if x.stage == Stage::UpToDate
                    && renewing.is_some_and(|(s, _)| s >= RenewStage::AwaitEpochAcks) =>
            {
                let r = l.renewal.as_mut().expect("renewing");
                // Observers take part too; the quorum counts voters only.
                if last_zxid == last && !r.acked_epoch.contains(&from) {
                    r.acked_epoch.push(from);
                    if r.stage == RenewStage::AwaitNewLeaderAcks {
                        // Late: NEWLEADER went to the others already.
                        out.push(Action::Send {
                            to: from,
                            msg: Msg::NewLeader { epoch: r.epoch },
                        });
                    }
                }
                self.advance_renewal(out);
            }
            Msg::AckNewLeader { epoch: e }
                if x.stage == Stage::UpToDate
                    && renewing
                        .is_some_and(|(s, re)| s == RenewStage::AwaitNewLeaderAcks && re == e) =>
            {
                let r = l.renewal.as_mut().expect("renewing");
                if r.acked_epoch.contains(&from) && !r.acked_newleader.contains(&from) {
                    r.acked_newleader.push(from);
                    x.epoch = e;
                }
                self.advance_renewal(out);
            }
            Msg::AckNewLeader { epoch: e }
                if x.stage == Stage::UpToDate && renewing.is_none() && e == epoch =>
            {
                // A learner's late part of a renewal: it follows the new epoch now.
                x.epoch = e;
            }
            Msg::AckEpoch {
                current_epoch: theirs,
                last_zxid,
            } if x.stage == Stage::LeaderInfoSent => {
                if theirs > current_epoch || (theirs == current_epoch && last_zxid > last) {
                    // The election picked us over a server with more history: step down
                    // so the next round can pick it (ZooKeeper's waitForEpochAck check).
                    self.go_looking("a follower is ahead", out);
                    return;
                }
                x.stage = Stage::AckedEpoch;
                x.last_zxid = last_zxid;
                self.advance_leader(out);
            }
            Msg::AckNewLeader { epoch: e } if x.stage == Stage::NewLeaderSent && e == x.epoch => {
                x.stage = Stage::Synced;
                x.acked = x.acked.max(x.sync_last);
                if self.established_epoch().is_some() {
                    let commit = self.commit;
                    let l = self.leader();
                    let x = l.learners.get_mut(&from).expect("learner");
                    if !x.observer {
                        out.push(Action::Send {
                            to: from,
                            msg: Msg::Commit { through: commit },
                        });
                    }
                    out.push(Action::Send {
                        to: from,
                        msg: Msg::UpToDate,
                    });
                    x.stage = Stage::UpToDate;
                    if x.epoch < l.epoch && l.renewal.is_none() {
                        // It synced into the epoch that a renewal replaced meanwhile:
                        // it takes its part of that renewal now (see `advance_renewal`).
                        out.push(Action::Send {
                            to: from,
                            msg: Msg::LeaderInfo { new_epoch: l.epoch },
                        });
                    }
                    self.try_commit(out);
                } else {
                    self.advance_leader(out);
                }
            }
            Msg::Ack { zxid } if x.stage >= Stage::Synced && !x.observer => {
                if zxid > last {
                    self.protocol_error(
                        from,
                        format!("ACK {zxid:#x} beyond leader log {last:#x}"),
                        out,
                    );
                    return;
                }
                x.acked = x.acked.max(zxid);
                self.try_commit(out);
            }
            // Only from a learner that is serving clients of this epoch: a learner still
            // syncing has no clients, and one of an older connection is gone.
            Msg::Forward { payloads } if x.stage == Stage::UpToDate && established => {
                out.push(Action::Forwarded { from, payloads });
            }
            Msg::MovingAck => {
                if let Some(t) = &mut l.transfer {
                    t.waiting.retain(|id| *id != from);
                }
            }
            Msg::RequestLeadership if x.stage == Stage::UpToDate && established => {
                self.start_transfer(Some(from), out);
            }
            Msg::Ping => {}
            _ => {}
        }
    }

    /// Begins handing leadership to `to` (or the most up-to-date synced voter).
    fn start_transfer(&mut self, to: Option<ServerId>, out: &mut Vec<Action>) {
        let now = self.now;
        let ensemble = self.cfg.ensemble.clone();
        let refuse = |out: &mut Vec<Action>, reason: &str| {
            out.push(Action::TransferRefused {
                reason: reason.to_string(),
            })
        };
        let Role::Leading(l) = &mut self.role else {
            return refuse(out, "this server is not the leader");
        };
        if l.phase != LeaderPhase::Established || l.renewal.is_some() {
            return refuse(out, "the leader's epoch is not established");
        }
        if l.transfer.is_some() {
            return refuse(out, "a leadership transfer is already under way");
        }
        let mut candidates = l
            .learners
            .iter()
            .filter(|(id, x)| x.stage == Stage::UpToDate && ensemble.is_voter(**id));
        // The most up-to-date: the highest acknowledged zxid, then the lowest id.
        let target = match to {
            Some(t) => candidates.find(|(id, _)| **id == t).map(|(id, _)| *id),
            None => candidates
                .max_by_key(|(id, x)| (x.acked, std::cmp::Reverse(**id)))
                .map(|(id, _)| *id),
        };
        let Some(target) = target else {
            return refuse(out, "no synced voting follower to take over");
        };
        let waiting: Vec<ServerId> = l
            .learners
            .iter()
            .filter(|(_, x)| x.stage == Stage::UpToDate)
            .map(|(id, _)| *id)
            .collect();
        for &id in &waiting {
            out.push(Action::Send {
                to: id,
                msg: Msg::Moving,
            });
        }
        l.transfer = Some(Transfer {
            target,
            started: now,
            waiting,
        });
    }

    /// Calls off a transfer that has not handed off yet (no TAKEOVER sent, so no other
    /// server leads or will): the learners told `Moving` forward again, and this server
    /// goes on leading, which costs the clients the wait so far instead of an election.
    /// A leader that a reconfig removed (or made an observer) must not lead on: it goes
    /// looking, as before, and leaves its role.
    fn cancel_transfer(&mut self, why: &str, out: &mut Vec<Action>) {
        let me = self.cfg.my_id;
        if !self.cfg.ensemble.is_voter(me) {
            self.go_looking(
                "a leadership transfer away from a removed leader failed",
                out,
            );
            return;
        }
        let Role::Leading(l) = &mut self.role else {
            return;
        };
        let Some(t) = l.transfer.take() else {
            return;
        };
        for (&id, x) in &l.learners {
            if x.stage == Stage::UpToDate {
                out.push(Action::Send {
                    to: id,
                    msg: Msg::MovingCancelled,
                });
            }
        }
        out.push(Action::TransferRefused {
            reason: format!(
                "the leadership transfer to server {} was called off ({why}); still leading",
                t.target
            ),
        });
    }

    /// Completes a transfer that is ready: TAKEOVER to the target, MOVED to the other
    /// up-to-date learners, and this server follows the target.
    fn hand_off(&mut self, out: &mut Vec<Action>) {
        if !self.transfer_ready() {
            return;
        }
        let (me, now) = (self.cfg.my_id, self.now);
        let Role::Leading(l) = &self.role else {
            return;
        };
        let target = l.transfer.as_ref().expect("ready").target;
        for (&id, x) in &l.learners {
            if x.stage == Stage::UpToDate && id != target {
                out.push(Action::Send {
                    to: id,
                    msg: Msg::Moved { leader: target },
                });
            }
        }
        out.push(Action::Send {
            to: target,
            msg: Msg::TakeOver,
        });
        out.push(Action::Moved {
            leader: target,
            from: me,
        });
        self.role = Role::Following(Follower {
            leader: target,
            observer: false,
            stage: FStage::AwaitHandOff,
            epoch: 0,
            last_heard: now,
            sync_write: 0,
            current_persist_sent: false,
            ack_sent: 0,
            info_sent: now,
            renewal: None,
            moving: None,
            view: Vec::new(),
            leader_logged: 0,
            early_infos: BTreeMap::new(),
        });
    }

    /// Moves a leader's epoch renewal on as far as its waits allow.
    fn advance_renewal(&mut self, out: &mut Vec<Action>) {
        let me = self.cfg.my_id;
        let (commit, last, durable) = (self.commit, self.log.last(), self.log.durable_zxid);
        let (accepted, current) = (self.accepted_epoch, self.current_epoch);
        let Role::Leading(l) = &mut self.role else {
            return;
        };
        let Some(r) = &mut l.renewal else {
            return;
        };
        if r.stage == RenewStage::AwaitCommitted && commit == last && durable >= last {
            r.epoch = accepted.max(l.epoch).max(l.epoch_floor) + 1;
            r.stage = RenewStage::AwaitAcceptedPersist;
            out.push(Action::PersistEpoch {
                kind: EpochKind::Accepted,
                epoch: r.epoch,
            });
        }
        if r.stage == RenewStage::AwaitAcceptedPersist && accepted >= r.epoch {
            if accepted > r.epoch {
                self.go_looking("accepted a newer epoch while renewing", out);
                return;
            }
            r.stage = RenewStage::AwaitEpochAcks;
            for (&id, x) in &l.learners {
                if x.stage == Stage::UpToDate {
                    out.push(Action::Send {
                        to: id,
                        msg: Msg::LeaderInfo { new_epoch: r.epoch },
                    });
                }
            }
        }
        if r.stage == RenewStage::AwaitEpochAcks
            && is_quorum(
                &self.cfg.ensemble,
                r.acked_epoch.iter().copied().chain([me]),
            )
        {
            r.stage = RenewStage::AwaitCurrentPersist;
            out.push(Action::PersistEpoch {
                kind: EpochKind::Current,
                epoch: r.epoch,
            });
        }
        if r.stage == RenewStage::AwaitCurrentPersist && current >= r.epoch {
            r.stage = RenewStage::AwaitNewLeaderAcks;
            for &id in &r.acked_epoch {
                out.push(Action::Send {
                    to: id,
                    msg: Msg::NewLeader { epoch: r.epoch },
                });
            }
        }
        if r.stage == RenewStage::AwaitNewLeaderAcks
            && is_quorum(
                &self.cfg.ensemble,
                r.acked_newleader.iter().copied().chain([me]),
            )
        {
            let epoch = r.epoch;
            let kept_epoch = std::mem::take(&mut r.acked_epoch);
            // Learners that have not acknowledged yet stay: a late ACKEPOCH is answered
            // with NEWLEADER, a late ACKNEWLEADER is taken as is. Dropping them would
            // cost their clients their connections for being a moment slower. A learner
            // that follows the new epoch's proposals before it persisted the epoch is
            // ranked by its log's epoch in an election (`vote_basis`), as a follower
            // whose epoch write is in flight always is.
            l.epoch = epoch;
            l.renewal = None;
            // Learners that became up to date during the renewal (after its LEADERINFO
            // went out) take their part now; until each has, the election would hear
            // two epochs for one leader, and a restarted server could not join it.
            for (&id, x) in &l.learners {
                if x.stage == Stage::UpToDate && x.epoch < epoch && !kept_epoch.contains(&id) {
                    out.push(Action::Send {
                        to: id,
                        msg: Msg::LeaderInfo { new_epoch: epoch },
                    });
                }
            }
            out.push(Action::Renewed { epoch });
        }
    }

    /// Moves a learner's part of its leader's epoch renewal on.
    fn learner_renewal(&mut self, out: &mut Vec<Action>) {
        let (accepted, current) = (self.accepted_epoch, self.current_epoch);
        let durable = self.log.durable_write;
        let last = self.log.last();
        let vote_epoch = self.vote_basis().0;
        let f = self.follower();
        let leader = f.leader;
        match f.renewal {
            Some(LearnerRenewal::AwaitAcceptPersist { epoch }) if accepted >= epoch => {
                f.renewal = Some(LearnerRenewal::AwaitNewLeader { epoch });
                out.push(Action::Send {
                    to: leader,
                    msg: Msg::AckEpoch {
                        current_epoch: vote_epoch,
                        last_zxid: last,
                    },
                });
            }
            Some(LearnerRenewal::AwaitDurable { epoch, write }) if durable >= write => {
                if current < epoch {
                    if !f.current_persist_sent {
                        f.current_persist_sent = true;
                        out.push(Action::PersistEpoch {
                            kind: EpochKind::Current,
                            epoch,
                        });
                    }
                    return;
                }
                f.renewal = None;
                f.epoch = epoch;
                out.push(Action::Send {
                    to: leader,
                    msg: Msg::AckNewLeader { epoch },
                });
                out.push(Action::Renewed { epoch });
            }
            _ => {}
        }
    }

    fn try_commit(&mut self, out: &mut Vec<Action>) {
        let me = self.cfg.my_id;
        let own = self.log.durable_zxid;
        let Role::Leading(l) = &self.role else { return };
        if l.phase != LeaderPhase::Established {
            return;
        }
        let acks: Vec<(ServerId, Zxid)> = l
            .learners
            .iter()
            .filter(|(_, x)| x.stage >= Stage::Synced && !x.observer)
            .map(|(id, x)| (*id, x.acked))
            .chain([(me, own)])
            .collect();
        let mut q = quorum_zxid(&self.cfg.ensemble, acks.iter().copied());
        if let Some((_, next)) = &self.pending_config {
            q = q.min(quorum_zxid(next, acks.iter().copied()));
        }
        if q <= self.commit {
            return;
        }
        let first = self.log.after(self.commit);
        self.commit_to(q, out);
        let Role::Leading(l) = &self.role else { return };
        // The txns newly committed, for observers (INFORM carries them); followers
        // get a COMMIT of the zxid alone, so without observers nothing is copied.
        let newly: Vec<Txn> = if l
            .learners
            .values()
            .any(|x| x.observer && x.stage >= Stage::NewLeaderSent)
        {
            self.log.entries.to_vec(first, self.log.after(q))
        } else {
            Vec::new()
        };
        for (&id, x) in &l.learners {
            if x.stage < Stage::NewLeaderSent {
                continue;
            }
            let msg = if x.observer {
                Msg::Inform {
                    txns: newly.clone(),
                }
            } else {
                Msg::Commit { through: q }
            };
            out.push(Action::Send { to: id, msg });
        }
        // A renewal waits for the old epoch's last commit.
        self.advance_renewal(out);
    }

    /// Leader: tells each up-to-date follower that makes a quorum with this server alone
    /// how far this server's own log is durable (`Msg::Logged`), when that is beyond the
    /// commit point. In a three-voter ensemble a follower then commits what both logs
    /// hold as soon as its own write is durable (`try_local_commit`): a write that came
    /// through it is answered without the round trip of its ACK to here and the COMMIT
    /// back. Not sent while a reconfig is pending (its commits need a quorum of two
    /// configs), during an epoch renewal, or when the commit point already covers the
    /// log (the COMMIT says more).
    fn tell_logged(&mut self, out: &mut Vec<Action>) {
        let me = self.cfg.my_id;
        let own = self.log.durable_zxid;
        if own <= self.commit || self.pending_config.is_some() {
            return;
        }
        let Role::Leading(l) = &mut self.role else {
            return;
        };
        if l.phase != LeaderPhase::Established
            || l.renewal.is_some()
            || own <= l.logged_sent
            || epoch_of(own) != l.epoch
        {
            return;
        }
        l.logged_sent = own;
        for (&id, x) in &l.learners {
            if x.stage == Stage::UpToDate
                && !x.observer
                && x.acked < own
                && is_quorum(&self.cfg.ensemble, [me, id])
            {
                out.push(Action::Send {
                    to: id,
                    msg: Msg::Logged { through: own },
                });
            }
        }
    }

    fn forward(&mut self, payloads: Vec<Bytes>, out: &mut Vec<Action>) {
        match &self.role {
            Role::Following(f) if f.stage == FStage::UpToDate && f.moving.is_none() => {
                out.push(Action::Send {
                    to: f.leader,
                    msg: Msg::Forward { payloads },
                })
            }
            _ => out.extend(
                payloads
                    .into_iter()
                    .map(|payload| Action::Rejected { payload }),
            ),
        }
    }

    fn propose(&mut self, txns: Vec<Txn>, out: &mut Vec<Action>) {
        if txns.is_empty() {
            return;
        }
        let room = self.proposal_room();
        assert!(
            txns.len() <= room,
            "proposing {} txns with room for {room}",
            txns.len()
        );
        let first = self
            .next_zxid()
            .expect("proposals only from an established leader");
        for (t, expect) in txns.iter().zip(first..) {
            assert_eq!(
                t.zxid, expect,
                "proposal {:#x} does not continue the log (expected {expect:#x})",
                t.zxid
            );
        }
        // One log write and one PROPOSAL per follower for the whole batch.
        self.log.append(txns.clone(), out);
        let Role::Leading(l) = &self.role else { return };
        for (&id, x) in &l.learners {
            if x.stage >= Stage::NewLeaderSent && !x.observer {
                out.push(Action::Send {
                    to: id,
                    msg: Msg::Propose { txns: txns.clone() },
                });
            }
        }
    }

    /// An established leader's next zxid: the one after its log's last in its epoch.
    /// `None` unless this server leads an established epoch (and is not renewing it), or
    /// when the epoch's counter is exhausted (`Config::max_counter`: the zxid after
    /// `(epoch, 0xffffffff)` would be another epoch's).
    pub fn next_zxid(&self) -> Option<Zxid> {
        if self.is_renewing() {
            return None;
        }
        let epoch = self.established_epoch()?;
        let last = self.log.last();
        if epoch_of(last) != epoch {
            return Some(make_zxid(epoch, 1));
        }
        if counter_of(last) >= self.cfg.max_counter {
            return None;
        }
        Some(last + 1)
    }

    /// How many more txns an established leader may propose now: proposed and not yet
    /// committed txns are bounded by `Config::max_inflight` (and by what is left of the
    /// epoch's counter). 0 unless leading an established epoch.
    pub fn proposal_room(&self) -> usize {
        let Some(next) = self.next_zxid() else {
            return 0;
        };
        let inflight = self.log.entries.len() - self.log.after(self.commit);
        let counter_left = u64::from(self.cfg.max_counter.saturating_sub(counter_of(next))) + 1;
        self.cfg
            .max_inflight
            .saturating_sub(inflight)
            .min(usize::try_from(counter_left).unwrap_or(usize::MAX))
    }

    // ---- learner ----

    fn on_follow(&mut self, leader: ServerId, out: &mut Vec<Action>) {
        // A leader outside our config is one a quorum of our voters follow (the
        // election checked): a reconfig we have not put in force yet added it.
        if leader == self.cfg.my_id {
            return;
        }
        let observer = !self.cfg.ensemble.is_voter(self.cfg.my_id);
        self.role = Role::Following(Follower {
            leader,
            observer,
            stage: FStage::AwaitLeaderInfo,
            epoch: 0,
            last_heard: self.now,
            sync_write: 0,
            current_persist_sent: false,
            ack_sent: 0,
            info_sent: self.now,
            renewal: None,
            moving: None,
            view: Vec::new(),
            leader_logged: 0,
            early_infos: BTreeMap::new(),
        });
        self.send_follower_info(out);
    }

    fn send_follower_info(&mut self, out: &mut Vec<Action>) {
        let (accepted_epoch, last_zxid, now) = (self.accepted_epoch, self.log.last(), self.now);
        let f = self.follower();
        f.info_sent = now;
        let msg = Msg::FollowerInfo {
            accepted_epoch,
            last_zxid,
            observer: f.observer,
        };
        out.push(Action::Send { to: f.leader, msg });
    }

    fn follower(&mut self) -> &mut Follower {
        match &mut self.role {
            Role::Following(f) => f,
            _ => unreachable!("not following"),
        }
    }

    fn follower_message(&mut self, from: ServerId, msg: Msg, out: &mut Vec<Action>) {
        let now = self.now;
        let broken = self.cfg.broken;
        let accepted = self.accepted_epoch;
        let me = self.cfg.my_id;
        let f = self.follower();
        if from != f.leader {
            if let Msg::FollowerInfo { .. } = msg {
                f.early_infos.insert(from, msg);
            }
            return;
        }
        // A FOLLOWERINFO from the server this one follows says that server follows too
        // (the elections disagreed): nothing was heard from a leader. Counted, two
        // servers following each other would keep each other past initLimit forever.
        if !matches!(msg, Msg::FollowerInfo { .. }) {
            f.last_heard = now;
        }
        let (leader, stage) = (f.leader, f.stage);
        if stage == FStage::AwaitHandOff {
            // The target's answers to our leadership (ACK, ACKNEWLEADER, FORWARD, ...)
            // still in flight on the old link: that leadership is over.
            return;
        }
        match msg {
            Msg::Ping => out.push(Action::Send {
                to: leader,
                msg: Msg::Ping,
            }),
            Msg::QuorumView { synced } => {
                if stage == FStage::UpToDate {
                    f.view = synced;
                }
            }
            Msg::Moving => {
                if stage == FStage::UpToDate {
                    f.moving.get_or_insert(now);
                    out.push(Action::Send {
                        to: leader,
                        msg: Msg::MovingAck,
                    });
                }
            }
            Msg::TakeOver if stage == FStage::UpToDate && !f.observer => {
                let infos = std::mem::take(&mut f.early_infos);
                out.push(Action::Moved { leader: me, from });
                self.on_lead(out);
                for (id, info) in infos {
                    if matches!(self.role, Role::Leading(_)) {
                        self.leader_message(id, info, out);
                    }
                }
            }
            Msg::Moved { leader: to } if stage == FStage::UpToDate && to != from && to != me => {
                if !self.cfg.ensemble.is_voter(to) {
                    self.protocol_error(from, format!("MOVED to non-voter {to}"), out);
                    return;
                }
                out.push(Action::Moved { leader: to, from });
                self.on_follow(to, out);
            }
            // After the `Moving` it cancels: the link is in order.
            Msg::MovingCancelled => f.moving = None,
            Msg::TakeOver | Msg::Moved { .. } | Msg::MovingAck | Msg::RequestLeadership => {
                // Not in a state to act on it (still syncing, an observer told to lead):
                // the transfer times out and an election follows.
            }
            Msg::LeaderInfo { new_epoch } if stage == FStage::UpToDate => {
                // The leader renews its epoch in place (its counter ran out).
                let same = |r: LearnerRenewal| match r {
                    LearnerRenewal::AwaitAcceptPersist { epoch }
                    | LearnerRenewal::AwaitNewLeader { epoch }
                    | LearnerRenewal::AwaitDurable { epoch, .. } => epoch == new_epoch,
                };
                if f.renewal.is_some_and(same) {
                    // The leader asked again (it completed without us): we are on it.
                    return;
                }
                if new_epoch <= f.epoch || f.renewal.is_some() {
                    let what = format!("LEADERINFO {new_epoch} while up to date in {}", f.epoch);
                    self.protocol_error(from, what, out);
                    return;
                }
                f.renewal = Some(LearnerRenewal::AwaitAcceptPersist { epoch: new_epoch });
                f.current_persist_sent = false;
                if accepted < new_epoch {
                    out.push(Action::PersistEpoch {
                        kind: EpochKind::Accepted,
                        epoch: new_epoch,
                    });
                }
                self.learner_renewal(out);
            }
            Msg::NewLeader { epoch }
                if stage == FStage::UpToDate
                    && f.renewal == Some(LearnerRenewal::AwaitNewLeader { epoch }) =>
            {
                // Everything the leader proposed before is in this server's log (the
                // link is in order): durable, it acknowledges the new epoch.
                let write = self.log.issued;
                let f = self.follower();
                f.renewal = Some(LearnerRenewal::AwaitDurable { epoch, write });
                self.learner_renewal(out);
            }
            Msg::LeaderInfo { new_epoch } if stage == FStage::AwaitLeaderInfo => {
                f.epoch = new_epoch;
                if new_epoch < accepted {
                    self.go_looking("leader proposes an epoch below the accepted one", out);
                } else if new_epoch == accepted || broken.ackepoch_before_persist {
                    if new_epoch > accepted {
                        out.push(Action::PersistEpoch {
                            kind: EpochKind::Accepted,
                            epoch: new_epoch,
                        });
                    }
                    f.stage = FStage::AwaitSync;
                    let (current_epoch, last_zxid) = self.vote_basis();
                    out.push(Action::Send {
                        to: leader,
                        msg: Msg::AckEpoch {
                            current_epoch,
                            last_zxid,
                        },
                    });
                } else {
                    f.stage = FStage::AwaitAcceptPersist;
                    out.push(Action::PersistEpoch {
                        kind: EpochKind::Accepted,
                        epoch: new_epoch,
                    });
                }
            }
            Msg::Sync {
                mode,
                txns,
                commit_through,
            } if stage == FStage::AwaitSync => {
                self.apply_sync(from, mode, txns, commit_through, out);
            }
            Msg::NewLeader { epoch } if stage == FStage::AwaitNewLeader => {
                if epoch != f.epoch {
                    let what = format!("NEWLEADER {epoch} after LEADERINFO {}", f.epoch);
                    self.protocol_error(from, what, out);
                    return;
                }
                f.stage = FStage::AwaitNewLeaderDurable;
                self.try_ack_newleader(out);
            }
            Msg::Propose { txns } if stage >= FStage::AwaitNewLeaderDurable && !f.observer => {
                if let Some(what) = gap(self.log.last(), &txns) {
                    self.protocol_error(from, format!("PROPOSAL {what}"), out);
                    return;
                }
                self.log.append(txns, out);
                self.try_ack(out);
            }
            Msg::Commit { through } if stage >= FStage::AwaitNewLeader && !f.observer => {
                if through > self.log.last() {
                    self.protocol_error(from, format!("COMMIT {through:#x} beyond log"), out);
                    return;
                }
                self.commit_to(through, out);
            }
            Msg::Logged { through } if stage == FStage::UpToDate && !f.observer => {
                if through > self.log.last() {
                    self.protocol_error(from, format!("LOGGED {through:#x} beyond log"), out);
                    return;
                }
                let f = self.follower();
                f.leader_logged = f.leader_logged.max(through);
                self.try_local_commit(out);
            }
            Msg::Inform { txns } if stage >= FStage::AwaitNewLeader && f.observer => {
                // What the sync already brought may come again; what is new must continue
                // the log, as a PROPOSAL must: a gap would be applied as if nothing were
                // missing, and the observer's tree would part from the leader's.
                let fresh: Vec<Txn> = txns
                    .into_iter()
                    .filter(|t| t.zxid > self.log.last())
                    .collect();
                if let Some(what) = gap(self.log.last(), &fresh) {
                    self.protocol_error(from, format!("INFORM {what}"), out);
                    return;
                }
                self.log.append(fresh, out);
                let last = self.log.last();
                self.commit_to(last, out);
            }
            Msg::Reply { payload } if stage == FStage::UpToDate => {
                out.push(Action::Replied { payload });
            }
            Msg::UpToDate if stage == FStage::Synced => {
                f.stage = FStage::UpToDate;
                let epoch = f.epoch;
                out.push(Action::UpToDate { leader, epoch });
            }
            // Elections can disagree for a while (two servers each following the
            // other); a learner refuses connections, and initLimit ends the standoff.
            Msg::FollowerInfo { .. } => {}
            other => {
                if !matches!(other, Msg::Ping) {
                    self.protocol_error(
                        from,
                        format!("unexpected {} in {stage:?}", other.name()),
                        out,
                    );
                }
            }
        }
    }

    fn apply_sync(
        &mut self,
        from: ServerId,
        mode: SyncMode,
        txns: Vec<Txn>,
        commit_through: Zxid,
        out: &mut Vec<Action>,
    ) {
        let before_sync = self.log.issued;
        let snap = matches!(mode, SyncMode::Snap { .. });
        match mode {
            SyncMode::Diff => {}
            SyncMode::Trunc { to } => {
                if to < self.commit {
                    // Never cut away what this server has applied as committed.
                    let what = format!("TRUNC to {to:#x} below commit {:#x}", self.commit);
                    self.protocol_error(from, what, out);
                    return;
                }
                self.log.truncate(to, out);
            }
            SyncMode::Snap { zxid, data } => {
                if zxid < self.commit {
                    self.protocol_error(from, format!("SNAP at {zxid:#x} below commit"), out);
                    return;
                }
                self.log.install_snapshot(zxid, data, out);
                // A pending reconfig the snapshot covers is in it (then the driver takes
                // it from the snapshot's state) or was never committed.
                if self.pending_config.as_ref().is_some_and(|p| p.0 <= zxid) {
                    self.pending_config = None;
                }
                // The snapshot replaces the applied state; the driver loads it as applied.
                self.commit = zxid;
            }
        }
        if let Some(what) = gap(self.log.last(), &txns) {
            self.forget_cut_config();
            self.protocol_error(from, format!("sync txns {what}"), out);
            return;
        }
        self.log.append(txns, out);
        self.forget_cut_config();
        let sync_write = if snap && self.cfg.broken.snap_ack_before_durable {
            before_sync
        } else {
            self.log.issued
        };
        let through = commit_through.min(self.log.last());
        self.commit_to(through, out);
        let f = self.follower();
        f.sync_write = sync_write;
        f.stage = FStage::AwaitNewLeader;
    }

    fn follower_after_persist(&mut self, out: &mut Vec<Action>) {
        let accepted = self.accepted_epoch;
        let (current_epoch, last_zxid) = self.vote_basis();
        let f = self.follower();
        if f.stage == FStage::AwaitAcceptPersist && accepted >= f.epoch {
            f.stage = FStage::AwaitSync;
            let leader = f.leader;
            out.push(Action::Send {
                to: leader,
                msg: Msg::AckEpoch {
                    current_epoch,
                    last_zxid,
                },
            });
        }
    }

    fn try_ack_newleader(&mut self, out: &mut Vec<Action>) {
        let durable = self.log.durable_write;
        let current = self.current_epoch;
        let broken = self.cfg.broken.ack_before_durable;
        let f = self.follower();
        if f.stage != FStage::AwaitNewLeaderDurable {
            return;
        }
        if durable < f.sync_write && !broken {
            return;
        }
        // Elections rank the current epoch first: persisted before the synced history is
        // durable, a crash could leave this server outranking the servers holding txns
        // it lost, and elected it would truncate them away (ZOOKEEPER-4643).
        if current < f.epoch {
            if !f.current_persist_sent {
                f.current_persist_sent = true;
                let epoch = f.epoch;
                out.push(Action::PersistEpoch {
                    kind: EpochKind::Current,
                    epoch,
                });
            }
            return;
        }
        f.stage = FStage::Synced;
        let (leader, epoch) = (f.leader, f.epoch);
        out.push(Action::Send {
            to: leader,
            msg: Msg::AckNewLeader { epoch },
        });
        self.try_ack(out);
    }

    fn try_ack(&mut self, out: &mut Vec<Action>) {
        let z = if self.cfg.broken.ack_before_durable {
            self.log.last()
        } else {
            self.log.durable_zxid
        };
        let f = self.follower();
        if f.observer || f.stage < FStage::Synced || z <= f.ack_sent {
            return;
        }
        f.ack_sent = z;
        let leader = f.leader;
        out.push(Action::Send {
            to: leader,
            msg: Msg::Ack { zxid: z },
        });
    }

    /// Follower: commits what a quorum is known to hold durably from what this server
    /// knows alone: its own durable log and the leader's (`Msg::Logged`). Both logs are
    /// prefixes of the leader's history of this epoch, so a zxid both hold durably, where
    /// the two make a quorum, is on a quorum's disks: exactly what the leader's own
    /// commit rule asks. Only for zxids of the established epoch (all of its history
    /// before them committed when the epoch was established), never while a reconfig is
    /// pending or the epoch renews: there the leader's COMMIT alone decides.
    fn try_local_commit(&mut self, out: &mut Vec<Action>) {
        let me = self.cfg.my_id;
        let own = if self.cfg.broken.local_commit_before_durable {
            self.log.last()
        } else {
            self.log.durable_zxid
        };
        let Role::Following(f) = &self.role else {
            return;
        };
        if f.observer
            || f.stage != FStage::UpToDate
            || f.renewal.is_some()
            || f.leader_logged == 0
            || self.pending_config.is_some()
        {
            return;
        }
        let q = quorum_zxid(&self.cfg.ensemble, [(me, own), (f.leader, f.leader_logged)]);
        if q > self.commit && epoch_of(q) == f.epoch {
            self.commit_to(q, out);
        }
    }

    // ---- time ----

    fn on_tick(&mut self, out: &mut Vec<Action>) {
        self.now += 1;
        let now = self.now;
        let (init, sync) = (self.cfg.init_limit, self.cfg.sync_limit);
        let transfer_ready = self.transfer_ready();
        match &mut self.role {
            Role::Looking => {}
            Role::Following(f) => {
                let limit = if f.stage == FStage::UpToDate {
                    sync
                } else {
                    init
                };
                if f.moving.is_some_and(|at| now - at > sync) {
                    self.go_looking("leadership transfer did not complete", out);
                } else if f.stage == FStage::AwaitHandOff {
                    // The new leader's close of the old link did not arrive: dial anyway.
                    if now - f.info_sent >= 2 {
                        f.stage = FStage::AwaitLeaderInfo;
                        self.send_follower_info(out);
                    }
                } else if now - f.last_heard > limit {
                    self.go_looking("leader silent", out);
                } else if f.stage == FStage::AwaitLeaderInfo
                    && now - f.info_sent >= (init / FOLLOWER_INFO_TRIES).max(1)
                {
                    // The leader may have dropped the first connection because it had not
                    // finished its own election yet: connect again, as ZooKeeper's learner
                    // retries connectToLeader.
                    self.send_follower_info(out);
                }
            }
            Role::Leading(l) => {
                let established = l.phase == LeaderPhase::Established;
                if l.renewal.as_ref().is_some_and(|r| now - r.started > init) {
                    self.go_looking("epoch renewal not acknowledged within initLimit", out);
                    return;
                }
                if !established && now - l.started > init {
                    self.go_looking("not established within initLimit", out);
                    return;
                }
                let late = l
                    .transfer
                    .as_ref()
                    .is_some_and(|t| now - t.started > TRANSFER_LIMIT_TICKS.min(sync));
                // A transfer that is ready is handed off by the caller after this tick.
                if late && !transfer_ready {
                    self.cancel_transfer("it did not become ready within two ticks", out);
                    return;
                }
                l.learners.retain(|_, x| {
                    let limit = if established && x.stage == Stage::UpToDate {
                        sync
                    } else {
                        init
                    };
                    now - x.last_heard <= limit
                });
                if let Some(t) = &mut l.transfer {
                    t.waiting.retain(|id| l.learners.contains_key(id));
                    if !l.learners.contains_key(&t.target) {
                        self.cancel_transfer("its target is gone", out);
                        return;
                    }
                }
                for &id in l.learners.keys() {
                    out.push(Action::Send {
                        to: id,
                        msg: Msg::Ping,
                    });
                }
                if established {
                    // The synced voters, for every server's health answer: sent when
                    // they change, and to each learner that has not had them yet.
                    let Role::Leading(l) = &self.role else {
                        unreachable!()
                    };
                    let synced = self.synced_voters(l);
                    let Role::Leading(l) = &mut self.role else {
                        unreachable!()
                    };
                    if synced != l.view_sent {
                        l.view_sent = synced;
                        l.view_told.clear();
                    }
                    for (&id, x) in &l.learners {
                        if x.stage == Stage::UpToDate && !l.view_told.contains(&id) {
                            l.view_told.push(id);
                            out.push(Action::Send {
                                to: id,
                                msg: Msg::QuorumView {
                                    synced: l.view_sent.clone(),
                                },
                            });
                        }
                    }
                }
                let Role::Leading(l) = &mut self.role else {
                    unreachable!()
                };
                if established {
                    let live = l
                        .learners
                        .iter()
                        .filter(|(_, x)| x.stage >= Stage::Synced && !x.observer)
                        .map(|(id, _)| *id);
                    if !is_quorum(&self.cfg.ensemble, live.chain([self.cfg.my_id])) {
                        self.go_looking("lost a quorum of followers", out);
                    }
                }
            }
        }
    }
}
