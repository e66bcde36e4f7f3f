//! The sequencer core: the only writer of the tree, and the owner of ZAB on this server.
//!
//! A pure state machine. [`Input`]s go in (shard batches, the time of the pass, log
//! durability and failures, peer messages, election results, epoch writes, snapshot
//! completions), [`Output`]s come out (append these records, send this message, publish
//! this commit, close this connection, persist this epoch, snapshot this root, purge,
//! start an election). No socket, file, thread or clock here: the driver in
//! `server::core_loop` carries the outputs out on its io_uring ring, and the simulator in
//! `tests/server_sim/` runs several of these over a simulated log, network and clock.
//!
//! # One pass
//!
//! The driver feeds a pass's inputs with [`Sequencer::step`] and then calls
//! [`Sequencer::end_pass`]: the pass's txns become one log batch (and, on a leader, one
//! PROPOSAL per follower: the same bytes), its answers wait in `pending` behind the txns
//! before them, and every pending pass whose txns are now safe is published as one
//! [`Commit`]. Safe means durable on this server (standalone), committed by a quorum
//! (leader), or committed by the leader (learner, which applies on COMMIT).
//!
//! # Roles
//!
//! - **Standalone**: validates writes (`prep`) against the speculative tree, assigns
//!   zxids, applies, logs, answers once durable.
//! - **Leader** (an ensemble's, once ZAB established its epoch): the same, and each pass's
//!   txns are proposed through the [`Peer`]; answers leave on quorum commit. The zxid
//!   counter is `zxid` here; the peer checks that every proposal continues its log.
//! - **Follower / observer**: serves reads (the shards do), hands writes, syncs, new
//!   sessions, resumes and session liveness to the leader (`forward`), logs proposals,
//!   applies committed txns, and answers its own clients when the txn the leader made
//!   of their request is applied here.
//! - **Looking**: electing or syncing; no client writes or sessions.
//!
//! # Local sessions
//!
//! With `localSessionsEnabled` a member's new sessions are local (ZooKeeper's
//! LocalSessionTracker): made, touched, expired and closed by this core alone, with no
//! txn and nothing forwarded, so clients that only read cost the leader nothing. A
//! create of an ephemeral makes the session global first (a CreateSession ahead of the
//! request, ZooKeeper's upgrade) or fails with EPHEMERALONLOCALSESSION without
//! `localSessionsUpgradingEnabled`. The leader takes another server's unknown session
//! for a local one (the id's top byte says whose). docs/replication.md has the rules.
//!
//! # Encoding once
//!
//! A txn is encoded once (the txn codec) by the server that makes it. Those bytes are the
//! log record, the PROPOSAL payload and the in-memory ZAB log entry; a learner logs the
//! bytes it received and decodes each txn once, when it applies it.
//!
//! # Backpressure
//!
//! [`Sequencer::room`] says how many more requests the core takes this pass: bounded by
//! the proposals and log records in flight (`CoreConfig::max_inflight`), by the epoch's
//! zxid counter, and zero while the log is failing or the server does not serve. The
//! driver leaves what does not fit in the shards' mailboxes; a shard whose mailbox is
//! full stops reading its clients. A write is never dropped.
//!
//! # Failures of the log
//!
//! Standalone: a failed write fails every write it covered and every later one not yet
//! durable (SYSTEMERROR), the speculative tree falls back to the published state, new
//! writes fail at once until the log writer has reported on every batch sent before the
//! failure; then writing resumes. Ensemble: the txns may already be on other servers (a
//! leader proposed them; a learner received them), so nothing can be answered as failed:
//! the server cuts its in-memory log back to what is durable and goes back to the
//! election (clients get CONNECTIONLOSS, and a write may still commit, as ZooKeeper's
//! clients know).
//!
//! # The epoch's last zxid
//!
//! A zxid's counter is 32 bits. When a leader's counter runs out, ZooKeeper forces a new
//! election. Here the leader renews its epoch in place ([`peer::Event::RenewEpoch`]):
//! once every proposal of the old epoch is committed it runs discovery and
//! synchronization again with its synced followers over the open connections (a new
//! accepted epoch on a quorum, an empty DIFF, NEWLEADER acknowledged by a quorum), and
//! proposes from `(epoch + 1, 1)`. Clients keep their connections; writes wait a few
//! fsyncs and round trips instead of an election.

pub mod forward;
pub mod msg;
mod reconfig;

use crate::prep::{self, Caller, PrepConfig, PrepError};
use crate::proto::{Code, ConnectRequest, CreateMode, MultiOp, OpCode, Request};
use crate::session::{self, SessionTracker};
use crate::storage::snapshot::SnapPolicy;
use crate::tree::{Counts, DataTree};
use crate::txn::{Applied, Txn, TxnOp};
use crate::zab::msg::Msg;
use crate::zab::peer::{self, EpochKind, LearnerCounts, Peer};
use crate::zab::{self, epoch_of, make_zxid, ServerId, Zxid};
use bytes::Bytes;
use forward::{Answer, Fwd};
use msg::*;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Peer ticks per `tickTime`: pings, retries and failure detection run at a tenth of a
/// tick, while initLimit and syncLimit (scaled by the same factor) mean what they mean
/// in ZooKeeper.
pub const PEER_TICKS_PER_TICK: i64 = 10;

/// The most proposals (leader) or log records (standalone) in flight before the core
/// stops taking requests: bounds the memory a slow disk or a slow quorum can pin. At the
/// measured group-commit rates (tens of thousands of commits per second, 100-byte txns)
/// this is well over a second of work, so it only binds when the disk or the quorum
/// stalls, and then it turns into backpressure on the clients.
pub const MAX_INFLIGHT: usize = 100_000;

/// How long a member looks for a quorum before it serves read-only clients (ZooKeeper's
/// QuorumPeer waits `max(2000, tickTime)` before it starts its ReadOnlyZooKeeperServer).
pub const READ_ONLY_DELAY_MS: i64 = 2000;

/// How the server persists snapshots; `None` in `CoreConfig` means no snapshots (tests).
#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    /// `snapCount`: a snapshot after a random number of txns in [snapCount/2+1, snapCount].
    pub snap_count: u64,
    /// `snapSizeLimitInKb` in bytes (0: off): log bytes between snapshots.
    pub snap_size_bytes: u64,
    /// `autopurge.purgeInterval` in ms (0: off).
    pub purge_interval_ms: i64,
    /// `snapshotSizeFactor`: how far back the leader's in-memory log reaches for a DIFF,
    /// as a fraction of the newest snapshot's size (see `Sequencer::snapshot_durable`);
    /// negative: only the snapCount floor (ZooKeeper: DIFF from the txn log disabled).
    pub diff_size_factor: f64,
    /// Seeds the snapshot policy's random points.
    pub seed: u64,
}

/// An ensemble member's replication settings and what its disk held.
#[derive(Debug, Clone)]
pub struct EnsembleConfig {
    pub peer: peer::Config,
    /// The epochs and the ZAB log the peer starts from (`server::replication`).
    pub persisted: peer::Persisted,
    /// The snapshot recovery loaded (the first compaction's point).
    pub loaded_snapshot: Option<i64>,
    /// The server list as data (`/zookeeper/config`, the dynamic files).
    pub membership: Membership,
}

/// The ensemble's server list as ZooKeeper's dynamic configuration sees it: the
/// `server.N` lines, the config's version, and whether `reconfigEnabled` is set. The
/// peer works with the ids; this keeps the lines (addresses, client ports) that
/// `/zookeeper/config` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub servers: BTreeMap<u64, crate::config::ServerSpec>,
    pub version: u64,
    pub reconfig_enabled: bool,
    /// `standaloneEnabled`: a new config then needs at least two participants.
    pub standalone_enabled: bool,
}

impl Membership {
    /// The data of `/zookeeper/config`.
    pub fn text(&self) -> String {
        crate::dynconfig::config_text(&self.servers, self.version)
    }
}

/// Deliberately broken behaviours of the core, for proving that the server simulator
/// (`tests/server_sim.rs`) catches them. Never set outside tests; every field defaults
/// to correct behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Broken {
    /// A learner answers a forwarded write as done when it forwards it, before the
    /// leader committed it.
    pub answer_forward_early: bool,
    /// A learner expires sessions by its own clock and tells the leader to close them
    /// (it hears only its own clients, so it expires sessions alive elsewhere).
    pub learner_expires_sessions: bool,
    /// A learner answers a sync at once, without waiting to reach the leader's zxid.
    pub sync_answered_early: bool,
    /// A leader that rolls back takes its newest held root as the published state,
    /// without replaying the txns committed since it was kept.
    pub rollback_skips_replay: bool,
}

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// This server's id (0 standalone): the top byte of the session ids it makes.
    pub server_id: u8,
    pub tick_ms: i64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub prep: PrepConfig,
    /// How often empty containers and expired TTL nodes are looked for
    /// (`znode.container.checkIntervalMs`).
    pub container_check_interval_ms: i64,
    /// The most containers and TTL nodes deleted per check: a burst of reaping must not
    /// crowd out client writes.
    pub container_max_per_check: usize,
    pub snapshots: Option<SnapshotConfig>,
    /// `None`: standalone.
    pub ensemble: Option<EnsembleConfig>,
    /// See [`MAX_INFLIGHT`].
    pub max_inflight: usize,
    /// `readonlymode.enabled`: an ensemble member that has been looking for
    /// [`READ_ONLY_DELAY_MS`] (at least a tick) serves read-only sessions.
    pub read_only: bool,
    /// `localSessionsEnabled` (ensemble members only; standalone ignores it, as
    /// ZooKeeper's standalone server does): new sessions are local, see `local`.
    pub local_sessions: bool,
    /// `localSessionsUpgradingEnabled`: a local session that creates an ephemeral
    /// becomes global first; without it the create is EPHEMERALONLOCALSESSION.
    pub local_upgrading: bool,
    /// How long a learner publishes a root every pass after a shard asked for one
    /// ([`ROOTS_AFTER_ASK_MS`]; see `Commit::root`). The simulator also runs with 0, so
    /// that nearly every read on a learner waits for the root it asks for.
    pub roots_after_ask_ms: i64,
    /// A leader or a standalone server keeps a pass's root after at most this many
    /// txns (or [`ROLLBACK_ROOT_BYTES`] of records) without one
    /// ([`ROLLBACK_ROOT_TXNS`]): a rollback replays at most that many, and the nodes
    /// replaced since are kept alive for it.
    pub rollback_root_txns: usize,
    pub broken: Broken,
}

/// What this server is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Standalone,
    /// Electing or syncing: no client writes or sessions.
    Looking,
    /// Leads an established epoch.
    Leader,
    /// Synced with a leader (a follower or an observer).
    Learner,
}

/// One input of a pass.
#[derive(Debug)]
pub enum Input {
    /// A message from a shard.
    Shard(ToSeq),
    /// The pass's time: `now_ms` a monotonic clock (expiry, ticks), `wall_ms` the wall
    /// clock a txn made in this pass carries (ctime, mtime). The driver gives it once
    /// per pass, before anything else.
    Time {
        now_ms: i64,
        wall_ms: i64,
    },
    /// Every record up to `through` is durable in this server's log.
    LogDurable {
        through: i64,
    },
    /// Records `first..=last` were not written durably and never will be.
    LogFailed {
        first: i64,
        last: i64,
        error: String,
    },
    /// The snapshot of this committed zxid is durable; its file is `bytes` long.
    SnapshotDurable {
        zxid: i64,
        bytes: u64,
    },
    /// The election chose `leader` (this server, or another it follows).
    Elected {
        leader: ServerId,
    },
    PeerMessage {
        from: ServerId,
        msg: Msg,
    },
    /// The current connection to `peer` broke.
    PeerDisconnected {
        peer: ServerId,
    },
    EpochPersisted {
        kind: EpochKind,
        epoch: u32,
    },
    /// A TRUNC's cut of the log's files is done (`Output::Truncate`), with the tree
    /// recovered from what is left when the core asked for it.
    Truncated {
        to: i64,
        tree: Option<DataTree>,
    },
    /// A SNAP's snapshot is installed as this server's state (`Output::InstallSnapshot`),
    /// loaded as `tree`, and the log is empty after it.
    SnapshotInstalled {
        zxid: i64,
        tree: DataTree,
    },
    /// Installing it failed: this server goes back to the election.
    SnapshotInstallFailed {
        zxid: i64,
        error: String,
    },
    /// An operator's leadership command (`ydld`, `rqld`, a leader's SIGTERM).
    Leadership(LeadershipCmd),
}

/// What an operator asks of leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadershipCmd {
    /// Leader: hand leadership to this server, or to the most up-to-date synced voter
    /// (`None`). Client requests wait meanwhile (reads are served).
    Yield(Option<ServerId>),
    /// Follower: ask the leader to hand leadership to this server.
    Request,
}

/// What a server can say about its part in the quorum (the health answers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    /// Leading an established epoch, or a learner up to date with such a leader.
    pub serving: bool,
    /// Voters synced with the leader, the leader included (empty: unknown).
    pub synced_voters: Vec<ServerId>,
    /// Voters in the ensemble, and how many make a quorum.
    pub voters: usize,
    pub quorum: usize,
    /// This server votes.
    pub voter: bool,
    /// A leadership transfer is under way here.
    pub transferring: bool,
}

/// One action for the driver, in the order they must be carried out.
#[derive(Debug)]
pub enum Output {
    /// Log these records (zxids consecutive, continuing the previous batch); completion is
    /// `LogDurable` or `LogFailed`.
    Append(Vec<zab::Txn>),
    /// Learner: cut the log back to `to` once every earlier write is done (files and
    /// writer); completion is `Truncated`, with the tree recovered from the cut data
    /// directory when `rebuild` (recovery at start applied txns above `to`: only then
    /// does the applied tree hold txns a TRUNC removes, since the peer never cuts below
    /// what it knows committed; ZooKeeper reloads its database there too).
    Truncate {
        to: i64,
        rebuild: bool,
    },
    /// Learner: install the received snapshot file `received` (a name in dataDir) of
    /// `zxid` as this server's state, once every earlier write is done: newer
    /// snapshots and the log go, the log continues after `zxid`; completion is
    /// `SnapshotInstalled` with the loaded tree.
    InstallSnapshot {
        zxid: i64,
        received: Bytes,
    },
    /// Learner: open a fresh connection to the leader (the next `Send` to it is the
    /// FOLLOWERINFO that starts it).
    Dial {
        to: ServerId,
    },
    Send {
        to: ServerId,
        msg: Msg,
    },
    /// Write an epoch file durably; completion is `EpochPersisted`.
    PersistEpoch {
        kind: EpochKind,
        epoch: u32,
    },
    /// Hand this commit to every shard.
    Publish(Commit),
    /// Close this client connection (its session moved or closed).
    Close(ConnRef),
    /// This server stopped serving: close every client connection.
    CloseClients,
    /// Snapshot this committed root in the background; `SnapshotDurable` when done.
    Snapshot {
        root: DataTree,
        zxid: i64,
    },
    /// autopurge: keep the newest snapshots and the logs they need, and `keep` (the ZAB
    /// log's base, which a SNAP sends) if any.
    Purge {
        keep: Option<i64>,
    },
    /// Start the election with this vote basis; the quorum connections close.
    StartElection {
        current_epoch: u32,
        last_zxid: Zxid,
    },
    /// ZAB established `epoch` (this server leads or follows it): the election idles.
    Established {
        epoch: u32,
    },
    /// The server's mode changed.
    Mode(Mode),
    /// A config with a new version is in force (with `reconfigEnabled`): the driver
    /// writes its dynamic file and points zoo.cfg at it.
    Membership(Membership),
    /// A leader's learners changed (`mntr`'s leader keys); `None` when not leading.
    Learners(Option<LearnerCounts>),
    /// The ZAB log's base moved (autopurge must keep that snapshot).
    PeerBase(i64),
    /// Something an operator should read.
    Log(String),
    /// Leadership moved from `from` to `leader` without an election: the election
    /// reports it; if `leader` is this server, its link to `from` closes (the old
    /// leader dials this one once it sees that close).
    Moved {
        leader: ServerId,
        from: ServerId,
    },
    /// The health view changed (checked every peer tick).
    Health(Health),
}

/// The mode `srvr` and `mntr` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    Looking,
    Leader,
    Follower,
    Observer,
    /// Cut off from the quorum, serving read-only sessions.
    ReadOnly,
}

/// One pass's entries waiting until every txn up to `last_zxid` is safe.
struct Pending {
    last_zxid: i64,
    entries: Vec<Entry>,
    /// `None`: a pass no shard asked a root for, on a learner or a leader (see
    /// `Commit::root` and `Sequencer::pass_root`).
    root: Option<DataTree>,
    /// The tree's numbers after the pass.
    counts: Counts,
    /// Leader, standalone: the pass's txns, for `Sequencer::replay` once published
    /// without a root.
    records: Vec<zab::Txn>,
    /// Client writes in the pass (samples for the write-stage histograms).
    writes: u64,
    shards: u64,
}

/// A forwarded request waiting for its txn (learner).
struct Waiting {
    origin: Origin,
    /// A sync's path: its txn is answered as a sync.
    sync_path: Option<String>,
    /// The code its error txn is answered with here, whatever the leader's code: a
    /// local session's ephemeral create without upgrading is EPHEMERALONLOCALSESSION to
    /// the client (ZooKeeper's follower sets the exception on its own request and still
    /// sends it on; the leader, which cannot know the session, logs SESSIONEXPIRED).
    error: Option<Code>,
}

/// A log operation of the ZAB peer not yet complete, in issue order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerWrite {
    /// Records through this zxid: complete once the log is durable through it.
    Append { write: u64, last: Zxid },
    /// A TRUNC or a SNAP install: complete on its own input.
    Barrier { write: u64 },
}

/// Learner: a TRUNC or SNAP the driver is carrying out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Barrier {
    Truncate { to: i64 },
    Install { zxid: i64 },
}

/// The ensemble side of the core.
struct Ensemble {
    peer: Peer,
    /// Log operations of the peer not yet complete.
    writes: VecDeque<PeerWrite>,
    /// The barrier being carried out (at most one: the peer issues one per sync).
    barrier: Option<Barrier>,
    /// Leading: the first zxid of our epoch; committed txns below it are history.
    own_from: Zxid,
    /// Leader: every txn through this zxid is committed by a quorum.
    quorum_committed: i64,
    /// FOLLOWERINFOs that arrived while this server was still electing, replayed if it
    /// is elected: a learner that finished the election first already said it. One per
    /// learner (the newest).
    early_infos: BTreeMap<ServerId, Msg>,
    /// The newest durable snapshot: the next compaction's point.
    newest_snapshot: Option<i64>,
    /// What `Output::Learners` last said.
    learner_counts: Option<LearnerCounts>,
    /// Peer ticks run so far (one per `tick_ms / PEER_TICKS_PER_TICK` of `now_ms`).
    next_peer_tick_ms: i64,
    /// Learner: requests forwarded to the leader, by (session, xid), answered when the
    /// txn the leader made of them is applied here.
    forwarded: HashMap<(i64, i32), Waiting>,
    /// Learner: resumes the leader is asked about, by token.
    revalidating: HashMap<i64, (ConnRef, i64)>,
    /// Learner: closeSessions of local sessions that still had requests forwarded, by
    /// session: answered once those are (session FIFO, as ZooKeeper's CommitProcessor
    /// keeps a session's requests in order).
    held_closes: HashMap<i64, Origin>,
    next_token: i64,
    /// Learner: sessions touched by clients since the last report to the leader.
    touched: Vec<i64>,
    /// Learner: this pass's payloads for the leader.
    fwd_out: Vec<Bytes>,
    /// Learner: payloads the peer refused to forward (`Action::Rejected`: leadership
    /// began to move, or the learner re-synced in place, in the pass that took them).
    /// Sent first, before anything newer, once the peer forwards again, so a session's
    /// requests stay in order; answered as lost with the rest when the leader is.
    refused: Vec<Bytes>,
    /// Leader: the epoch's counter ran out; the epoch is being renewed.
    renewing: bool,
    /// Leader: a learner that cannot join this epoch asked for a renewal (its id and
    /// accepted epoch), carried out at the end of the pass (`peer::Action::RenewWanted`).
    renew_for: Option<(ServerId, u32)>,
    /// What `Output::Health` last said.
    health: Health,
    /// Leader: forwarded payloads waiting for room to make their txns, in arrival order
    /// (a learner's requests keep their order).
    deferred: VecDeque<(ServerId, Bytes)>,
    /// Learner: txns committed while a TRUNC or SNAP is being carried out, applied in
    /// order once it is (they follow the state it leaves).
    after_barrier: Vec<(Zxid, Bytes)>,
    /// Learner: the leader's txns decoded when they arrived (each is checked then, so a
    /// payload that does not decode is refused before it is logged), in zxid order,
    /// taken again when they commit. May hold txns that never commit (a leader change
    /// cut them): a commit drops those before it, and leaving the role drops all.
    decoded: VecDeque<Txn>,
}

/// How long a learner publishes a root every pass after a shard asked for one: while
/// its clients read, as often as before roots were on request; a second after their
/// last read, not at all.
pub const ROOTS_AFTER_ASK_MS: i64 = 1000;

/// See `CoreConfig::rollback_root_txns`: a rollback replays at most a few ms of txns,
/// and a leader or standalone server copies each leaf its writes touch about once per
/// this many txns, instead of once per pass.
pub const ROLLBACK_ROOT_TXNS: usize = 4096;

/// A leader or a standalone server keeps a pass's root after at most this many bytes of
/// records without one:
/// the nodes replaced since stay alive for a rollback, and large ones must not pile up.
pub const ROLLBACK_ROOT_BYTES: usize = 8 << 20;

/// Most bytes a pass's record buffer (`Sequencer::pass_buf`) starts with.
const PASS_BUF_START_MAX: usize = 256 << 10;

/// The sequencer core. See the module header.
pub struct Sequencer {
    cfg: CoreConfig,
    role: Role,
    /// The speculative tree (leader, standalone) or the applied tree (learner).
    tree: DataTree,
    /// The zxid of `tree`'s last txn.
    zxid: i64,
    /// The zxid last published (always safe).
    committed_zxid: i64,
    /// The numbers `mntr` shows of the published state.
    committed_counts: Counts,
    /// The newest root this core holds of a published state, and its zxid (at most
    /// `committed_zxid`): what a leader's tree falls back to. Every root kept makes the
    /// next pass copy each leaf it writes, so only some passes keep one (`pass_root`):
    ///
    /// - `None` on a learner: its tree is the published state once a pass is published
    ///   (learners apply only committed txns).
    /// - On a leader or a standalone server it may be older than `committed_zxid`:
    ///   `replay` holds every txn since (`committed_root` replays them).
    held: Option<(DataTree, i64)>,
    /// Leader, standalone: the txns published since `held`'s zxid, in order.
    replay: Vec<zab::Txn>,
    /// Leader, standalone: txns and record bytes made since the last pass that kept a
    /// root (see
    /// `CoreConfig::rollback_root_txns`).
    since_root: (usize, usize),
    /// A snapshot is due and waits for a root of a published state.
    snapshot_wanted: bool,
    /// A shard asked for a root (`ToSeq::WantRoot`) that no commit has carried yet.
    want_root: bool,
    /// Until then (the core's clock) every pass publishes a root: a shard asked
    /// recently, so its clients read, and each of their reads after a write would
    /// otherwise wait a pass for the root it asks for.
    roots_until_ms: i64,
    sessions: SessionTracker,
    /// The connection each session is attached to, to close the old one on a move.
    owners: HashMap<i64, ConnRef>,
    /// This pass's entries and txns.
    entries: Vec<Entry>,
    /// This pass's txns: (zxid, where its record ends in `pass_buf`), each record encoded
    /// after the one before it. At the end of the pass the buffer is sliced into the
    /// txns' payloads: one allocation and one shared count a pass, where a `Vec` per
    /// record cost an allocation, and another to make it shareable the first time the
    /// log, the in-memory ZAB log or a PROPOSAL took a copy (~3% of a leader's CPU under
    /// setData on 3 servers).
    pass_txns: Vec<(u64, usize)>,
    pass_buf: Vec<u8>,
    pending: VecDeque<Pending>,
    /// Standalone: every record up to this zxid is durable.
    durable_zxid: i64,
    /// Standalone: the highest zxid handed to the log.
    appended_zxid: i64,
    /// Standalone, after a log failure: writes fail until the log writer has reported on
    /// every batch up to this zxid (all sent before the failure).
    failed_until: Option<i64>,
    log_recovering: bool,
    now_ms: i64,
    wall_ms: i64,
    time_set: bool,
    next_tick_ms: i64,
    next_reap_ms: i64,
    next_purge_ms: i64,
    policy: Option<SnapPolicy>,
    ens: Option<Ensemble>,
    /// The server list in force, in an ensemble (see [`Membership`]).
    membership: Option<Membership>,
    /// A reconfig committed or proposed and not yet in force here: the server list it
    /// makes (see `reconfig`).
    reconfig_next: Option<Membership>,
    out: Vec<Output>,
    /// Requests taken this pass (see `room`).
    taken: usize,
    /// Expired sessions whose close txn waits for room, oldest first.
    expiring: VecDeque<i64>,
    /// Sessions expired since start (ZooKeeper's `stale_sessions_expired`).
    expired_total: u64,
    /// Since when this member is looking (the read-only mode's clock).
    looking_since: i64,
    /// Serving read-only sessions (`CoreConfig::read_only`, cut off from the quorum).
    read_only: bool,
    /// The read-only sessions made here (id -> timeout), forgotten with the mode.
    ro_sessions: HashMap<i64, i32>,
    /// Local sessions (`CoreConfig::local_sessions`): made, touched, expired and closed
    /// by this server alone, with no txn and nothing sent to the leader (ZooKeeper's
    /// LocalSessionTracker). Their ids come from `sessions`' generator, so a local id
    /// never equals a global one this server made, and the top byte (this server's id)
    /// tells the leader whose they are. Forgotten when this server stops serving (the
    /// clients are closed then, and ZooKeeper's next ZooKeeperServer starts empty).
    local: SessionTracker,
    /// The connection each local session is attached to: expiry closes it.
    local_owners: HashMap<i64, ConnRef>,
}

/// The origin of a new session's CreateSession txn: the connect on `conn`.
fn session_origin(conn: ConnRef, received: std::time::Instant) -> Origin {
    Origin {
        conn,
        xid: 0,
        op: OpCode::CreateSession,
        received,
    }
}

/// Whether a resuming connect carries the session's password.
fn password_ok(req: &ConnectRequest) -> bool {
    req.passwd
        .as_deref()
        .is_some_and(|p| p == session::password(req.session_id))
}

/// Whether `req` needs a global session: a create of an ephemeral, alone or in a multi.
/// These are the requests ZooKeeper's `checkUpgradeSession` looks at (create and create2,
/// also inside a multi); the other creates never make an ephemeral.
fn needs_global(req: &Request) -> bool {
    let ephemeral = |op: OpCode, flags: i32| {
        matches!(op, OpCode::Create | OpCode::Create2)
            && CreateMode::from_flags(flags).is_some_and(|m| m.is_ephemeral())
    };
    match req {
        Request::Create { op, req } => ephemeral(*op, req.flags),
        Request::Multi(ops) => ops
            .iter()
            .any(|o| matches!(o, MultiOp::Create { op, req } if ephemeral(*op, req.flags))),
        _ => false,
    }
}

/// What becomes of a local session's request before it is made a txn or forwarded.
enum LocalStep {
    /// Answered here (closeSession).
    Done,
    /// It needs a global session and upgrading is off: its create of an ephemeral fails
    /// with EPHEMERALONLOCALSESSION.
    NoUpgrade,
    /// Goes on as a request of a local session.
    Go,
    /// The session must become global first: a CreateSession of this timeout goes
    /// before the request (ZooKeeper's upgrade).
    Upgrade(i32),
}

/// Decodes a txn payload of `zxid`. The maker encoded it from a txn it applied, and the
/// log or the link checked its bytes: a payload that does not decode, or names another
/// zxid, is a bug or a lying peer, and stopping beats applying garbage.
fn decode(zxid: Zxid, payload: &Bytes) -> Txn {
    match crate::storage::txn_codec::decode_txn_shared(payload) {
        Ok(t) if t.zxid as u64 == zxid => t,
        Ok(t) => panic!("payload of zxid {zxid:#x} holds zxid {:#x}", t.zxid),
        Err(e) => panic!("payload of zxid {zxid:#x} does not decode: {e:?}"),
    }
}

/// Where the log must start for a DIFF to reach as far back as `snapshotSizeFactor`
/// allows: the zxid after which the newest txns of `log` (whose base is `base`) add up
/// to at most `factor` x `snapshot_bytes` payload bytes (`base` when the whole log fits),
/// or `None` when the factor turns the rule off (negative). ZooKeeper's factor 0
/// ("no size limit") would keep an in-memory log without bound: here it means the
/// snapshot's size (factor 1).
fn diff_window_start(
    log: &zab::txns::Txns,
    base: Zxid,
    factor: f64,
    snapshot_bytes: u64,
) -> Option<Zxid> {
    if factor < 0.0 {
        return None;
    }
    let factor = if factor == 0.0 { 1.0 } else { factor };
    let limit = (snapshot_bytes as f64 * factor) as u64;
    // From the newest back, the first txn that no longer fits.
    Some(log.newest_over(limit).map_or(base, |t| t.zxid))
}

fn bit(shard: usize) -> u64 {
    assert!(shard < 64, "at most 64 shards");
    1 << shard
}

impl Sequencer {
    /// A core over the recovered `tree` at `zxid` (`start_ms`: the monotonic clock at
    /// start, for the session id generator and the first ticks).
    pub fn new(cfg: CoreConfig, tree: DataTree, zxid: i64, start_ms: i64, wall_ms: i64) -> Self {
        let mut sessions = SessionTracker::new(cfg.server_id, wall_ms, cfg.tick_ms);
        // Sessions restored with the tree get a full timeout from now, as ZooKeeper does
        // at start.
        for (id, timeout) in tree.sessions() {
            sessions.observe_id(id);
            sessions.add(id, timeout, start_ms);
        }
        let policy = cfg
            .snapshots
            .as_ref()
            .map(|s| SnapPolicy::new(s.snap_count, s.snap_size_bytes, s.seed));
        let ens = cfg.ensemble.clone().map(|e| {
            let peer = Peer::new(e.peer, e.persisted);
            Ensemble {
                writes: VecDeque::new(),
                barrier: None,
                own_from: Zxid::MAX,
                quorum_committed: zxid,
                early_infos: BTreeMap::new(),
                newest_snapshot: e.loaded_snapshot,
                learner_counts: None,
                next_peer_tick_ms: start_ms,
                forwarded: HashMap::new(),
                revalidating: HashMap::new(),
                held_closes: HashMap::new(),
                next_token: 1,
                touched: Vec::new(),
                fwd_out: Vec::new(),
                refused: Vec::new(),
                renewing: false,
                renew_for: None,
                health: Health::default(),
                deferred: VecDeque::new(),
                after_barrier: Vec::new(),
                decoded: VecDeque::new(),
                peer,
            }
        });
        let role = if ens.is_some() {
            Role::Looking
        } else {
            Role::Standalone
        };
        let purge = cfg.snapshots.as_ref().map_or(0, |s| s.purge_interval_ms);
        let mut core = Sequencer {
            role,
            committed_zxid: zxid,
            committed_counts: tree.counts(),
            held: Some((tree.clone(), zxid)),
            replay: Vec::new(),
            since_root: (0, 0),
            snapshot_wanted: false,
            want_root: false,
            roots_until_ms: 0,
            sessions,
            owners: HashMap::new(),
            entries: Vec::new(),
            pass_txns: Vec::new(),
            pass_buf: Vec::new(),
            pending: VecDeque::new(),
            durable_zxid: zxid,
            appended_zxid: zxid,
            failed_until: None,
            log_recovering: false,
            now_ms: start_ms,
            wall_ms,
            time_set: false,
            next_tick_ms: start_ms + cfg.tick_ms,
            next_reap_ms: start_ms + cfg.container_check_interval_ms,
            next_purge_ms: start_ms + purge,
            policy,
            membership: cfg.ensemble.as_ref().map(|e| e.membership.clone()),
            reconfig_next: None,
            ens,
            out: Vec::new(),
            taken: 0,
            expiring: VecDeque::new(),
            expired_total: 0,
            looking_since: start_ms,
            read_only: false,
            ro_sessions: HashMap::new(),
            local: SessionTracker::new(cfg.server_id, wall_ms, cfg.tick_ms),
            local_owners: HashMap::new(),
            tree,
            zxid,
            cfg,
        };
        // A reconfig in the recovered tree that is newer than the config files: logged,
        // perhaps committed, not known to be in force (see `reconfig`).
        let logged = core
            .tree
            .data("/zookeeper/config")
            .and_then(|(d, _)| d)
            .map(|d| String::from_utf8_lossy(&d).into_owned());
        if let Some(text) = logged {
            core.seen_config(&text);
        }
        if let Some(e) = &core.ens {
            let base = e.peer.log_base() as i64;
            let (current_epoch, last_zxid) = e.peer.vote_basis();
            core.out.push(Output::PeerBase(base));
            core.out.push(Output::Mode(Mode::Looking));
            core.out.push(Output::Log(format!(
                "replication log from snapshot {base:#x}: {} txns through {:#x}",
                e.peer.log().len(),
                e.peer.last_zxid()
            )));
            core.out.push(Output::StartElection {
                current_epoch,
                last_zxid,
            });
        } else {
            core.out.push(Output::Mode(Mode::Standalone));
        }
        core
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The zxid of the last txn made or applied here.
    pub fn last_zxid(&self) -> i64 {
        self.zxid
    }

    /// The zxid last published.
    pub fn committed_zxid(&self) -> i64 {
        self.committed_zxid
    }

    /// The numbers `mntr` shows of the published state.
    pub fn committed_counts(&self) -> Counts {
        self.committed_counts
    }

    /// The published state's root, if one is at hand: held, or the tree itself when
    /// nothing runs ahead of what is published.
    fn root_at_committed(&self) -> Option<DataTree> {
        match &self.held {
            Some((root, at)) if *at == self.committed_zxid => Some(root.clone()),
            _ if self.zxid == self.committed_zxid => Some(self.tree.clone()),
            _ => None,
        }
    }

    /// The root last published. On a leader or a standalone server whose newest held
    /// root is older, it is rebuilt: that root with the txns published since replayed
    /// onto it (at most `CoreConfig::rollback_root_txns` of them).
    pub fn committed_root(&self) -> DataTree {
        if let Some(root) = self.root_at_committed() {
            return root;
        }
        let Some((base, _)) = &self.held else {
            // A learner: its tree holds only committed txns.
            return self.tree.clone();
        };
        let mut tree = base.clone();
        if self.cfg.broken.rollback_skips_replay {
            return tree;
        }
        for t in &self.replay {
            tree.apply(&decode(t.zxid, &t.payload));
        }
        assert_eq!(
            tree.zxid(),
            self.committed_zxid,
            "replayed through the published zxid"
        );
        tree
    }

    /// A shard asked for a root: the next commit carries one, and every pass for a
    /// while after (`CoreConfig::roots_after_ask_ms`).
    fn want_root(&mut self) {
        self.want_root = true;
        self.roots_until_ms = self.now_ms + self.cfg.roots_after_ask_ms;
    }

    /// Leaving the learner's role: the published state gets a handle of its own, to fall
    /// back to while the tree runs ahead of it (a leader's speculative txns). A learner
    /// applies only committed txns, so its tree is that state, including what this pass
    /// applied (published at its end).
    fn hold_committed_root(&mut self) {
        if self.held.is_none() {
            self.hold_tree_as_published();
        }
    }

    /// `root`, the published state at `at`, is the newest root held: nothing is left to
    /// replay onto it.
    fn hold(&mut self, root: DataTree, at: i64) {
        self.held = Some((root, at));
        self.replay.clear();
    }

    /// The tree is the published state (nothing runs ahead of it): held as such.
    fn hold_tree_as_published(&mut self) {
        self.hold(self.tree.clone(), self.zxid);
        self.committed_zxid = self.zxid;
        self.committed_counts = self.tree.counts();
        self.since_root = (0, 0);
    }

    /// The root for a pass ending now, or `None` when nobody needs one: a learner's
    /// shards did not ask; a leader's or a standalone server's did not, no snapshot
    /// waits, and its last root is recent enough to roll back from
    /// (`CoreConfig::rollback_root_txns`).
    fn pass_root(&mut self) -> Option<DataTree> {
        let asked = self.want_root || self.now_ms < self.roots_until_ms;
        let needed = match self.role {
            Role::Learner => asked,
            Role::Leader | Role::Standalone => {
                self.since_root.0 += self.pass_txns.len();
                self.since_root.1 += self.pass_buf.len();
                asked
                    || self.snapshot_wanted
                    || self.since_root.0 >= self.cfg.rollback_root_txns
                    || self.since_root.1 >= ROLLBACK_ROOT_BYTES
            }
            Role::Looking => true,
        };
        if !needed {
            return None;
        }
        self.want_root = false;
        self.since_root = (0, 0);
        Some(self.tree.clone())
    }

    /// Sessions tracked for expiry (leader, standalone).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions this core expired since it started.
    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }

    /// Sessions by expiry time (monotonic ms), for `dump`.
    pub fn expiry(&self) -> Vec<(i64, Vec<i64>)> {
        self.sessions.by_expiry()
    }

    /// The ZAB peer, in an ensemble.
    pub fn peer(&self) -> Option<&Peer> {
        self.ens.as_ref().map(|e| &e.peer)
    }

    /// How many more shard messages this pass may take (each makes at most one txn).
    /// Zero holds requests back (in the shards' mailboxes): while the pipeline is full,
    /// or while a leader renews its epoch.
    pub fn room(&self) -> usize {
        let inflight = match self.role {
            // The log is failing: every request is answered at once with an error.
            Role::Standalone if self.failed_until.is_some() => return usize::MAX,
            Role::Standalone => (self.zxid - self.durable_zxid).max(0) as usize,
            Role::Leader => {
                let p = &self.ens.as_ref().expect("leader has a peer").peer;
                if p.is_transferring() {
                    // Handing leadership over: requests wait for the new leader.
                    return 0;
                }
                // Room left after this pass's txns, which are proposed at its end; 0
                // while the epoch renews (its zxids ran out).
                let room = p.proposal_room().saturating_sub(self.pass_txns.len());
                // With local sessions a request may make two txns (an upgrade's
                // CreateSession, then its own). Not below one: the epoch's last zxid
                // must still be used, or its renewal would never begin.
                return if self.local_enabled() && room > 1 {
                    room / 2
                } else {
                    room
                };
            }
            // A learner forwards: bounded by the leader's answers outstanding. While
            // leadership moves (or this learner is not yet synced with the leader it
            // moved to), requests wait in the shards.
            Role::Learner => match &self.ens {
                Some(e) if e.peer.is_moving() || e.peer.up_to_date_with().is_none() => return 0,
                Some(e) => e.forwarded.len(),
                None => 0,
            },
            // Refused at once: never held back.
            Role::Looking => return usize::MAX,
        };
        self.cfg
            .max_inflight
            .saturating_sub(inflight)
            .saturating_sub(self.taken)
    }

    /// How many more txns this pass may make (for the core's own: expiries, reaping,
    /// forwarded requests).
    fn txn_room(&self) -> usize {
        match self.role {
            Role::Standalone if self.failed_until.is_some() => 0,
            Role::Standalone => self
                .cfg
                .max_inflight
                .saturating_sub((self.zxid - self.durable_zxid).max(0) as usize),
            Role::Leader => self
                .ens
                .as_ref()
                .expect("leader has a peer")
                .peer
                .proposal_room()
                .saturating_sub(self.pass_txns.len()),
            Role::Learner | Role::Looking => 0,
        }
    }

    /// Moves this pass's outputs into `out`.
    pub fn take_outputs(&mut self, out: &mut Vec<Output>) {
        out.append(&mut self.out);
    }

    /// Feeds one input. See the module header for passes.
    pub fn step(&mut self, input: Input) {
        match input {
            Input::Time { now_ms, wall_ms } => self.time(now_ms, wall_ms),
            Input::Shard(m) => self.shard(m),
            Input::LogDurable { through } => self.log_durable(through),
            Input::LogFailed { first, last, error } => self.log_failed(first, last, &error),
            Input::SnapshotDurable { zxid, bytes } => self.snapshot_durable(zxid, bytes),
            Input::Elected { leader } => self.elected(leader),
            Input::PeerMessage { from, msg } => self.peer_message(from, msg),
            Input::PeerDisconnected { peer } => {
                if let Some(e) = &mut self.ens {
                    e.early_infos.remove(&peer);
                }
                self.peer_step(peer::Event::Disconnected { peer });
            }
            Input::EpochPersisted { kind, epoch } => {
                self.peer_step(peer::Event::EpochPersisted { kind, epoch })
            }
            Input::Truncated { to, tree } => self.barrier_done(Barrier::Truncate { to }, tree),
            Input::SnapshotInstalled { zxid, tree } => {
                self.barrier_done(Barrier::Install { zxid }, Some(tree))
            }
            Input::Leadership(cmd) => {
                let ev = match cmd {
                    LeadershipCmd::Yield(to) => peer::Event::Transfer { to },
                    LeadershipCmd::Request => peer::Event::RequestLeadership,
                };
                self.peer_step(ev);
            }
            Input::SnapshotInstallFailed { zxid, error } => {
                self.out.push(Output::Log(format!(
                    "SNAP at {zxid:#x}: installing the leader's snapshot failed: {error}"
                )));
                if let Some(e) = &mut self.ens {
                    e.barrier = None;
                }
                self.peer_step(peer::Event::Abandon {
                    reason: "installing a snapshot failed",
                });
            }
        }
    }

    // ---- time ----

    fn time(&mut self, now_ms: i64, wall_ms: i64) {
        assert!(
            !self.time_set || now_ms >= self.now_ms,
            "time went back: {now_ms} after {}",
            self.now_ms
        );
        self.now_ms = now_ms;
        self.wall_ms = wall_ms;
        self.time_set = true;
        // Peer ticks: as many as are due (a slow pass runs them back to back, so a
        // stalled loop is not mistaken for a silent peer by less than it stalled).
        let peer_tick = (self.cfg.tick_ms / PEER_TICKS_PER_TICK).max(1);
        let mut due = 0;
        if let Some(e) = &mut self.ens {
            while e.next_peer_tick_ms <= now_ms && due < 1000 {
                e.next_peer_tick_ms += peer_tick;
                due += 1;
            }
            if e.next_peer_tick_ms <= now_ms {
                // More than 1000 ticks behind (a suspended process): do not replay them.
                e.next_peer_tick_ms = now_ms + peer_tick;
            }
        }
        for _ in 0..due {
            self.peer_step(peer::Event::Tick);
        }
        if due > 0 {
            self.check_health();
            self.check_read_only();
        }
        let writable = self.failed_until.is_none()
            && matches!(self.role, Role::Standalone | Role::Leader)
            && !self.ens.as_ref().is_some_and(|e| e.renewing);
        if matches!(self.role, Role::Leader | Role::Learner) {
            self.expire_local();
        }
        if now_ms >= self.next_tick_ms && writable {
            self.expire();
            self.next_tick_ms = now_ms + self.cfg.tick_ms;
        }
        if self.cfg.broken.learner_expires_sessions
            && self.role == Role::Learner
            && now_ms >= self.next_tick_ms
        {
            self.next_tick_ms = now_ms + self.cfg.tick_ms;
            for id in self.sessions.expire(now_ms) {
                let e = self.ens.as_mut().expect("learner has a peer");
                e.fwd_out.push(
                    Fwd::Request {
                        session_id: id,
                        xid: 0,
                        ids: Vec::new(),
                        req: Request::CloseSession,
                    }
                    .encode(),
                );
            }
        }
        if now_ms >= self.next_reap_ms && writable {
            self.reap();
            self.next_reap_ms = now_ms + self.cfg.container_check_interval_ms;
        }
        let purge = self
            .cfg
            .snapshots
            .as_ref()
            .map_or(0, |s| s.purge_interval_ms);
        if purge > 0 && now_ms >= self.next_purge_ms {
            self.next_purge_ms = now_ms + purge;
            // The snapshot a SNAP sends (the newest, which purge keeps anyway, or the
            // base before the first snapshot of this run).
            let keep = self
                .ens
                .as_ref()
                .map(|e| e.peer.snap_source() as i64)
                .filter(|b| *b > 0);
            self.out.push(Output::Purge { keep });
        }
    }

    // ---- client traffic ----

    fn shard(&mut self, m: ToSeq) {
        self.taken += 1;
        match self.role {
            Role::Learner => self.shard_as_learner(m),
            Role::Looking => match m {
                ToSeq::Connect { conn, req, .. }
                    if self.read_only && req.read_only == Some(true) =>
                {
                    self.connect_read_only(conn, req)
                }
                // Not serving writes or sessions here: the client tries another server.
                ToSeq::Connect { conn, .. } => self.entries.push(Entry::Connect {
                    conn,
                    outcome: ConnectOutcome::Refused,
                }),
                ToSeq::Request { origin, .. } => self.entries.push(Entry::Failed {
                    origin,
                    zxid: self.zxid,
                    error: Code::ConnectionLoss.into(),
                }),
                ToSeq::Touch(_) | ToSeq::Detached { .. } => {}
                ToSeq::WantRoot => self.want_root(),
            },
            Role::Standalone | Role::Leader => match m {
                ToSeq::Connect {
                    conn,
                    req,
                    received,
                } => self.connect(conn, req, received),
                ToSeq::Request {
                    origin,
                    session_id,
                    req,
                    ids,
                } => self.request(origin, session_id, req, &ids),
                ToSeq::Touch(ids) => {
                    for id in ids {
                        if !self.local.touch(id, self.now_ms) {
                            self.sessions.touch(id, self.now_ms);
                        }
                    }
                }
                ToSeq::Detached { conn, session_id } => {
                    if self.owners.get(&session_id) == Some(&conn) {
                        self.owners.remove(&session_id);
                    }
                    self.local_detached(conn, session_id);
                }
                ToSeq::WantRoot => self.want_root(),
            },
        }
    }

    /// A read-only client's handshake while this member is cut off from its quorum: a
    /// new session of this server alone (never logged; it ends with the mode), or a
    /// session this server knows (from its tree, or made here) resumed read-only.
    fn connect_read_only(&mut self, conn: ConnRef, req: ConnectRequest) {
        if self.refused_as_behind(conn, &req) {
            return;
        }
        let timeout_ms = self.clamp_timeout(req.timeout_ms);
        let outcome = if req.session_id == 0 {
            let session_id = self.sessions.next_session_id();
            self.ro_sessions.insert(session_id, timeout_ms);
            ConnectOutcome::ReadOnly {
                session_id,
                timeout_ms,
            }
        } else if password_ok(&req)
            && (self.ro_sessions.contains_key(&req.session_id)
                || self.tree.sessions().any(|(id, _)| id == req.session_id))
        {
            ConnectOutcome::ReadOnly {
                session_id: req.session_id,
                timeout_ms,
            }
        } else {
            ConnectOutcome::Expired
        };
        self.entries.push(Entry::Connect { conn, outcome });
    }

    /// Read-only mode starts once this member has looked for a quorum long enough.
    fn check_read_only(&mut self) {
        if !self.cfg.read_only || self.ens.is_none() || self.read_only {
            return;
        }
        let delay = READ_ONLY_DELAY_MS.max(self.cfg.tick_ms);
        if self.role == Role::Looking && self.now_ms - self.looking_since >= delay {
            self.read_only = true;
            self.out.push(Output::Mode(Mode::ReadOnly));
            self.out.push(Output::Log(format!(
                "no quorum for {delay} ms: serving read-only clients"
            )));
        }
    }

    /// Read-only mode ends when an election decides: its clients are closed, so they
    /// reconnect for read-write sessions (ZooKeeper shuts its read-only server down).
    fn leave_read_only(&mut self) {
        if self.read_only {
            self.read_only = false;
            self.ro_sessions.clear();
            self.out.push(Output::CloseClients);
            self.out.push(Output::Mode(Mode::Looking));
            self.out.push(Output::Log(
                "a leader is elected: read-only clients closed".to_string(),
            ));
        }
    }

    // ---- local sessions ----

    /// Whether new sessions are local here: `localSessionsEnabled` on an ensemble
    /// member. ZooKeeper's standalone server has no local sessions whatever the key
    /// says, and neither has ours.
    fn local_enabled(&self) -> bool {
        self.cfg.local_sessions && self.ens.is_some()
    }

    /// Local sessions by expiry bucket (monotonic ms) for `dump`; `None` when this
    /// server makes no local sessions.
    pub fn local_expiry(&self) -> Option<Vec<(i64, Vec<i64>)>> {
        self.local_enabled().then(|| self.local.by_expiry())
    }

    /// The local sessions this server tracks (`mntr`'s `zk_local_sessions`).
    pub fn local_session_count(&self) -> usize {
        self.local.len()
    }

    /// A new local session on `conn`, answered at once: no txn, nothing forwarded, so
    /// a client that only reads never costs the leader anything.
    fn connect_local(&mut self, conn: ConnRef, timeout_ms: i32) {
        let session_id = self.sessions.next_session_id();
        self.local.add(session_id, timeout_ms, self.now_ms);
        self.local_owners.insert(session_id, conn);
        self.entries.push(Entry::Connect {
            conn,
            outcome: ConnectOutcome::Resumed {
                session_id,
                timeout_ms,
            },
        });
    }

    /// A reconnect with one of this server's local sessions, resumed (or refused on a
    /// wrong password) here. False if the id is not a local session of this server: a
    /// leader then looks in its tree, a learner asks the leader, and the leader knows
    /// only global sessions, so another server's local session is expired there, as in
    /// ZooKeeper.
    fn resume_local(&mut self, conn: ConnRef, req: &ConnectRequest) -> bool {
        let id = req.session_id;
        let Some(timeout_ms) = self
            .local
            .timeout_ms(id)
            .filter(|_| self.local.is_alive(id))
        else {
            return false;
        };
        // As for a global session: the old connection goes first, whatever the password.
        if let Some(old) = self.local_owners.remove(&id) {
            if old != conn {
                self.out.push(Output::Close(old));
            }
        }
        let outcome = if password_ok(req) && self.local.touch(id, self.now_ms) {
            self.local_owners.insert(id, conn);
            ConnectOutcome::Resumed {
                session_id: id,
                timeout_ms,
            }
        } else {
            ConnectOutcome::Expired
        };
        self.entries.push(Entry::Connect { conn, outcome });
        true
    }

    /// A request of a live local session, before it becomes a txn (leader) or a
    /// FORWARD (learner). closeSession ends the session here (no txn: ZooKeeper marks
    /// it a local request, which PrepRequestProcessor and the learners' request
    /// processors pass by). A create of an ephemeral needs a global session: with
    /// `localSessionsUpgradingEnabled` the session is upgraded (`Upgrade`: the caller
    /// makes or forwards the CreateSession, `upgrade_local`), else the create fails
    /// with EPHEMERALONLOCALSESSION (`NoUpgrade`; the caller answers it where
    /// ZooKeeper does).
    fn local_step(&mut self, origin: Origin, session_id: i64, req: &Request) -> LocalStep {
        if matches!(req, Request::CloseSession) {
            self.local.remove(session_id);
            self.local_owners.remove(&session_id);
            let learner = self.role == Role::Learner;
            if let Some(e) = self.ens.as_mut().filter(|_| learner) {
                if e.forwarded.keys().any(|(s, _)| *s == session_id) {
                    // Its earlier writes are still at the leader: answered after them.
                    e.held_closes.insert(session_id, origin);
                    return LocalStep::Done;
                }
            }
            self.fail(origin, Code::Ok);
            return LocalStep::Done;
        }
        if !needs_global(req) {
            return LocalStep::Go;
        }
        if !self.cfg.local_upgrading {
            return LocalStep::NoUpgrade;
        }
        let timeout_ms = self
            .local
            .timeout_ms(session_id)
            .expect("a live local session has a timeout");
        LocalStep::Upgrade(timeout_ms)
    }

    /// The session leaves the local tracker: it is global from its CreateSession on
    /// (ZooKeeper's `upgradeSession` takes it out before that commits).
    fn upgrade_local(&mut self, session_id: i64) {
        self.local.remove(session_id);
        self.local_owners.remove(&session_id);
        self.out.push(Output::Log(format!(
            "upgrading local session {session_id:#x} to a global session"
        )));
    }

    fn local_detached(&mut self, conn: ConnRef, session_id: i64) {
        if self.local_owners.get(&session_id) == Some(&conn) {
            self.local_owners.remove(&session_id);
        }
    }

    /// Local sessions expire by this server's clock (it alone hears their clients):
    /// the session is forgotten and its connection closed, and a reconnect finds it
    /// expired. No txn: a local session holds no ephemerals.
    fn expire_local(&mut self) {
        for id in self.local.expire(self.now_ms) {
            self.local.remove(id);
            self.expired_total += 1;
            if let Some(conn) = self.local_owners.remove(&id) {
                self.out.push(Output::Close(conn));
            }
        }
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
    fn refused_as_behind(&mut self, conn: ConnRef, req: &ConnectRequest) -> bool {
        if req.last_zxid_seen <= self.zxid {
            return false;
        }
        self.out.push(Output::Log(format!(
            "refusing session request: client has seen zxid {:#x}, our last zxid is {:#x}",
            req.last_zxid_seen, self.zxid
        )));
        self.entries.push(Entry::Connect {
            conn,
            outcome: ConnectOutcome::Refused,
        });
        true
    }

    fn connect(&mut self, conn: ConnRef, req: ConnectRequest, received: std::time::Instant) {
        if self.refused_as_behind(conn, &req) {
            return;
        }
        if req.session_id == 0 {
            if self.failed_until.is_some() {
                // A new session needs a txn, and the log is failing: the client retries.
                self.entries.push(Entry::Connect {
                    conn,
                    outcome: ConnectOutcome::Refused,
                });
                return;
            }
            let timeout_ms = self.clamp_timeout(req.timeout_ms);
            if self.local_enabled() {
                self.connect_local(conn, timeout_ms);
                return;
            }
            let id = self.sessions.next_session_id();
            self.owners.insert(id, conn);
            let origin = session_origin(conn, received);
            self.make_txn(id, 0, TxnOp::CreateSession { timeout_ms }, Some(origin));
            self.sessions.add(id, timeout_ms, self.now_ms);
            return;
        }
        if self.resume_local(conn, &req) {
            return;
        }
        let id = req.session_id;
        // ZooKeeper closes the session's current connection before it checks the
        // password: a resume attempt always moves the session off its old connection.
        if let Some(old) = self.owners.remove(&id) {
            if old != conn {
                self.out.push(Output::Close(old));
            }
        }
        let outcome = match self.tree.session_timeout(id) {
            Some(timeout_ms) if password_ok(&req) && self.sessions.touch(id, self.now_ms) => {
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
        if self.failed_until.is_some() && !matches!(req, Request::Sync(_)) {
            // The log is failing: answer at once instead of queueing writes that would
            // fail too.
            self.fail(origin, Code::SystemError);
            return;
        }
        if self.ens.as_ref().is_some_and(|e| e.renewing) {
            // Not taken while the epoch renews (`room` is 0); a shard's batch taken
            // before that is answered as a leader change would answer it.
            self.fail(origin, Code::ConnectionLoss);
            return;
        }
        let mut local = self.local.touch(session_id, self.now_ms);
        if !local && !self.sessions.touch(session_id, self.now_ms) {
            self.fail(origin, Code::SessionExpired);
            return;
        }
        let mut no_ephemeral = false;
        if local {
            match self.local_step(origin, session_id, &req) {
                LocalStep::Done => return,
                LocalStep::Go => {}
                // Prep fails the ephemeral (in a multi, that op) with -120, as
                // ZooKeeper's PrepRequestProcessor throws the upgrade's exception.
                LocalStep::NoUpgrade => no_ephemeral = true,
                LocalStep::Upgrade(_) if self.txn_room() < 2 => {
                    // Only the epoch's last zxid is left (`room`): no room for both
                    // txns. ZooKeeper would force an election here, which its clients
                    // see as a lost connection; the request is not made and the
                    // session stays local for the client's retry.
                    self.fail(origin, Code::ConnectionLoss);
                    return;
                }
                LocalStep::Upgrade(timeout_ms) => {
                    self.upgrade_local(session_id);
                    // Logged and proposed like any new session, before the request
                    // that needs it (LeaderRequestProcessor's upgrade request).
                    self.make_txn(session_id, 0, TxnOp::CreateSession { timeout_ms }, None);
                    self.sessions.add(session_id, timeout_ms, self.now_ms);
                    self.owners.insert(session_id, origin.conn);
                    local = false;
                }
            }
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
        let caller = Caller {
            session_id,
            ids,
            local,
            no_ephemeral,
        };
        // The node the write changes, as validation found it: applied without a
        // second lookup of its path (`tree::Found`).
        let prepped = match &req {
            Request::Reconfig(r) => self.prep_reconfig(&caller, r).map(|op| (op, None)),
            _ => prep::prep_found(&self.tree, &self.cfg.prep, &caller, &req, self.wall_ms),
        };
        match prepped {
            Ok((op, found)) => self.make_txn_found(session_id, origin.xid, op, Some(origin), found),
            Err(error) => self.entries.push(Entry::Failed {
                origin,
                zxid: self.zxid,
                error,
            }),
        }
    }

    fn fail(&mut self, origin: Origin, code: Code) {
        self.entries.push(Entry::Failed {
            origin,
            zxid: self.zxid,
            error: code.into(),
        });
    }

    /// The zxid the next txn made here gets.
    fn next_zxid(&self) -> i64 {
        match (&self.ens, self.role) {
            (Some(e), Role::Leader) => {
                let next = if epoch_of(self.zxid as u64) == epoch_of(e.own_from) {
                    self.zxid as u64 + 1
                } else {
                    e.own_from
                };
                assert_eq!(
                    epoch_of(next),
                    epoch_of(e.own_from),
                    "the epoch's zxids ran out: room() holds requests back first"
                );
                next as i64
            }
            (None, Role::Standalone) => self.zxid + 1,
            (_, role) => panic!("a txn made as {role:?}"),
        }
    }

    /// Assigns the next zxid to `op`, applies it, encodes it once and queues its entry.
    fn make_txn(&mut self, session_id: i64, cxid: i32, op: TxnOp, origin: Option<Origin>) {
        self.make_txn_found(session_id, cxid, op, origin, None);
    }

    /// [`Sequencer::make_txn`] for an op `prep` validated against the tree just now,
    /// with where it found the node the op changes.
    fn make_txn_found(
        &mut self,
        session_id: i64,
        cxid: i32,
        op: TxnOp,
        origin: Option<Origin>,
        found: Option<crate::tree::Found>,
    ) {
        let zxid = self.next_zxid();
        self.zxid = zxid;
        let closes = matches!(op, TxnOp::CloseSession { .. });
        let txn = Txn {
            session_id,
            cxid,
            zxid,
            time_ms: self.wall_ms,
            op,
        };
        let applied = self.tree.apply_found(&txn, found);
        crate::storage::txn_codec::encode_txn(&txn, &mut self.pass_buf);
        self.pass_txns.push((zxid as u64, self.pass_buf.len()));
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

    fn expire(&mut self) {
        let before = self.expiring.len();
        self.expiring.extend(self.sessions.expire(self.now_ms));
        self.expired_total += (self.expiring.len() - before) as u64;
        self.close_expired();
    }

    /// Makes the close txns of expired sessions, as many as there is room for.
    fn close_expired(&mut self) {
        while self.txn_room() > 0 {
            let Some(id) = self.expiring.pop_front() else {
                return;
            };
            // An error means it closed meanwhile (by its client, or before a rollback
            // re-tracked it).
            if let Ok(op) = prep::prep_close_session(&self.tree, id) {
                self.make_txn(id, 0, op, None);
            }
        }
    }

    fn reap(&mut self) {
        let candidates = self
            .tree
            .reap_candidates(self.wall_ms, self.cfg.prep.container_max_never_used_ms);
        let room = self.txn_room();
        for path in candidates
            .into_iter()
            .take(self.cfg.container_max_per_check.min(room))
        {
            // Re-validated: a child may have been created since the scan.
            if let Ok(op) = prep::prep_reap(&self.tree, &self.cfg.prep, &path, self.wall_ms) {
                self.make_txn(0, 0, op, None);
            }
        }
    }

    // ---- learner: forwarding ----

    /// A learner serves reads itself (the shards do) and hands the rest to the leader.
    fn shard_as_learner(&mut self, m: ToSeq) {
        match m {
            ToSeq::Connect {
                conn,
                req,
                received,
            } => {
                if self.refused_as_behind(conn, &req) {
                    return;
                }
                if req.session_id == 0 && self.local_enabled() {
                    let timeout_ms = self.clamp_timeout(req.timeout_ms);
                    self.connect_local(conn, timeout_ms);
                    return;
                }
                if self.resume_local(conn, &req) {
                    return;
                }
                let e = self.ens.as_mut().expect("learner has a peer");
                if req.session_id == 0 {
                    let timeout_ms = req.timeout_ms.clamp(
                        self.cfg.min_session_timeout_ms,
                        self.cfg.max_session_timeout_ms,
                    );
                    let session_id = self.sessions.next_session_id();
                    e.forwarded.insert(
                        (session_id, 0),
                        Waiting {
                            origin: session_origin(conn, received),
                            sync_path: None,
                            error: None,
                        },
                    );
                    e.fwd_out.push(
                        Fwd::CreateSession {
                            session_id,
                            timeout_ms,
                        }
                        .encode(),
                    );
                    return;
                }
                let id = req.session_id;
                // The leader owns session liveness: a session this server has not
                // applied yet (made on another server a moment ago) is asked about like
                // any other. Only a wrong password is answered here.
                if !password_ok(&req) {
                    self.entries.push(Entry::Connect {
                        conn,
                        outcome: ConnectOutcome::Expired,
                    });
                    return;
                }
                let token = e.next_token;
                e.next_token += 1;
                e.revalidating.insert(token, (conn, id));
                e.fwd_out.push(
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
                let mut local_error = None;
                if self.local.touch(session_id, self.now_ms) {
                    match self.local_step(origin, session_id, &req) {
                        LocalStep::Done => return,
                        LocalStep::Go => {}
                        // Sent on all the same, as ZooKeeper's follower does (the
                        // leader's error txn keeps the session's answers in order and
                        // takes a zxid there too). A multi is answered with the leader's
                        // per-op results: ZooKeeper's FinalRequestProcessor does not
                        // throw a multi's own exception.
                        LocalStep::NoUpgrade => {
                            if !matches!(req, Request::Multi(_)) {
                                local_error = Some(Code::EphemeralOnLocalSession);
                            }
                        }
                        // The leader makes the CreateSession txn; the request follows
                        // it in the same FORWARD, so it runs on a global session
                        // (FollowerRequestProcessor queues the upgrade request first).
                        LocalStep::Upgrade(timeout_ms) => {
                            self.upgrade_local(session_id);
                            self.ens.as_mut().expect("learner has a peer").fwd_out.push(
                                Fwd::CreateSession {
                                    session_id,
                                    timeout_ms,
                                }
                                .encode(),
                            )
                        }
                    }
                }
                let sync_path = match &req {
                    Request::Sync(s) => Some(s.path.clone()),
                    _ => None,
                };
                if let (true, Some(path)) = (self.cfg.broken.sync_answered_early, &sync_path) {
                    self.entries.push(Entry::Sync {
                        origin,
                        zxid: self.zxid,
                        path: path.clone(),
                    });
                    return;
                }
                if self.cfg.broken.answer_forward_early && sync_path.is_none() {
                    // Answered now; the forward below still makes its txn, unmatched.
                    self.entries.push(Entry::Failed {
                        origin,
                        zxid: self.zxid,
                        error: Code::Ok.into(),
                    });
                    let e = self.ens.as_mut().expect("learner has a peer");
                    e.fwd_out
                        .push(Fwd::encode_request(session_id, origin.xid, &ids, &req));
                    return;
                }
                let key = (session_id, origin.xid);
                let e = self.ens.as_mut().expect("learner has a peer");
                if e.forwarded.contains_key(&key) {
                    // A client reusing an xid in flight: the txns could not be told apart.
                    self.fail(origin, Code::BadArguments);
                    return;
                }
                e.forwarded.insert(
                    key,
                    Waiting {
                        origin,
                        sync_path,
                        error: local_error,
                    },
                );
                e.fwd_out
                    .push(Fwd::encode_request(session_id, origin.xid, &ids, &req));
            }
            ToSeq::Touch(mut ids) => {
                if self.cfg.broken.learner_expires_sessions {
                    for id in &ids {
                        self.sessions.touch(*id, self.now_ms);
                    }
                }
                // Local sessions live here alone: the leader never hears of them
                // (LearnerSessionTracker touches only global sessions for the ping).
                let (local, now) = (&mut self.local, self.now_ms);
                ids.retain(|id| !local.touch(*id, now));
                self.ens
                    .as_mut()
                    .expect("learner has a peer")
                    .touched
                    .extend(ids)
            }
            ToSeq::Detached { conn, session_id } => self.local_detached(conn, session_id),
            ToSeq::WantRoot => self.want_root(),
        }
    }

    /// Leader: requests a learner forwarded. They make txns as room allows, in order;
    /// the rest wait for later passes (`drain_forwarded`).
    fn forwarded(&mut self, from: ServerId, payloads: Vec<Bytes>) {
        if self.role != Role::Leader {
            // A leader that stepped down: the learner answers its clients when it hears
            // of the election.
            return;
        }
        let e = self.ens.as_mut().expect("leader has a peer");
        e.deferred.extend(payloads.into_iter().map(|p| (from, p)));
        self.drain_forwarded();
    }

    fn drain_forwarded(&mut self) {
        // Bounded by the deferred queue: each round takes one payload or stops.
        while self.txn_room() > 0 {
            let Some((from, p)) = self.ens.as_mut().and_then(|e| e.deferred.pop_front()) else {
                return;
            };
            self.forwarded_one(from, p);
        }
    }

    fn forwarded_one(&mut self, from: ServerId, p: Bytes) {
        let fwd = match Fwd::decode_shared(&p) {
            Ok(f) => f,
            Err(e) => {
                self.out.push(Output::Log(format!(
                    "dropping a forward from server {from}: {e}"
                )));
                return;
            }
        };
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
                if self.tree.session_timeout(session_id).is_some() {
                    // A retry of one already made: the learner's client retries.
                    return;
                }
                let timeout_ms = self.clamp_timeout(timeout_ms);
                self.make_txn(session_id, 0, TxnOp::CreateSession { timeout_ms }, None);
                self.sessions.add(session_id, timeout_ms, self.now_ms);
            }
            Fwd::Revalidate { session_id, token } => {
                let timeout_ms = self
                    .tree
                    .session_timeout(session_id)
                    .filter(|_| self.sessions.touch(session_id, self.now_ms));
                let payload = Answer::Revalidated { token, timeout_ms }.encode();
                self.peer_step(peer::Event::Reply { to: from, payload });
            }
            Fwd::Touch(ids) => {
                for id in ids {
                    self.sessions.touch(id, self.now_ms);
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
        let error = |code: Code| TxnOp::Error { code, multi: None };
        let known = self.sessions.touch(session_id, self.now_ms);
        // ZooKeeper's LeaderSessionTracker.checkSession: with local sessions on, a
        // session the leader neither tracks nor made (its id's top byte names another
        // server) is that server's local session, and its writes go through; an
        // ephemeral still needs a global session (prep checks it strictly).
        let other_local =
            !known && self.cfg.local_sessions && (session_id >> 56) as u8 != self.cfg.server_id;
        if !known && !other_local {
            self.make_txn(session_id, xid, error(Code::SessionExpired), None);
            return;
        }
        if let Request::Sync(_) = &req {
            // A txn of its own, so that the learner answers it once it applied every
            // txn this leader made before it.
            self.make_txn(session_id, xid, error(Code::Ok), None);
            return;
        }
        if matches!(req, Request::CloseSession) {
            self.sessions.set_closing(session_id);
        }
        let caller = Caller {
            session_id,
            ids,
            local: other_local,
            no_ephemeral: false,
        };
        let prepped = match &req {
            Request::Reconfig(r) => self.prep_reconfig(&caller, r).map(|op| (op, None)),
            _ => prep::prep_found(&self.tree, &self.cfg.prep, &caller, &req, self.wall_ms),
        };
        let (op, found) = match prepped {
            Ok(prepped) => prepped,
            Err(e) => (
                TxnOp::Error {
                    code: e.code,
                    multi: e.multi.map(|rs| {
                        rs.into_iter()
                            .map(|r| match r {
                                crate::txn::OpResult::Error(c) => c,
                                other => {
                                    panic!("a failed multi's result {other:?} is not an error")
                                }
                            })
                            .collect()
                    }),
                },
                None,
            ),
        };
        self.make_txn_found(session_id, xid, op, None, found);
    }

    /// Learner: the entry that answers `txn` here, if one of our clients waits for it.
    fn learner_entry(&mut self, txn: Txn, applied: Applied) -> Entry {
        let w = self
            .ens
            .as_mut()
            .and_then(|e| e.forwarded.remove(&(txn.session_id, txn.cxid)));
        let Some(w) = w else {
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
                    code: w.error.unwrap_or(*code),
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
        let Some(e) = self.ens.as_mut() else {
            return;
        };
        let mut waiting: Vec<Waiting> = e.forwarded.drain().map(|(_, w)| w).collect();
        waiting.extend(e.held_closes.drain().map(|(_, origin)| Waiting {
            origin,
            sync_path: None,
            error: None,
        }));
        waiting.sort_by_key(|w| (w.origin.conn, w.origin.xid));
        let mut conns: Vec<ConnRef> = e.revalidating.drain().map(|(_, (c, _))| c).collect();
        conns.sort();
        e.touched.clear();
        e.fwd_out.clear();
        e.refused.clear();
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
        for conn in conns {
            self.entries.push(Entry::Connect {
                conn,
                outcome: ConnectOutcome::Refused,
            });
        }
    }

    fn answer(&mut self, payload: Bytes) {
        match Answer::decode(&payload) {
            Ok(Answer::Revalidated { token, timeout_ms }) => {
                let waiting = self
                    .ens
                    .as_mut()
                    .and_then(|e| e.revalidating.remove(&token));
                if let Some((conn, session_id)) = waiting {
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
            Err(e) => self.out.push(Output::Log(format!(
                "dropping an answer from the leader: {e}"
            ))),
        }
    }

    // ---- the end of a pass ----

    /// Ends a pass: its txns go to the log (and, leading, to the followers), its
    /// entries wait until safe, and every pending pass now safe is published.
    pub fn end_pass(&mut self) {
        self.taken = 0;
        if self.role == Role::Leader {
            self.drain_forwarded();
        }
        if matches!(self.role, Role::Leader | Role::Standalone) {
            self.close_expired();
        }
        if !self.entries.is_empty() {
            let mut writes = 0;
            let mut shards = 0;
            for e in &self.entries {
                match e {
                    Entry::Txn {
                        origin: Some(o), ..
                    } => {
                        shards |= bit(o.conn.shard);
                        writes += u64::from(o.op != OpCode::CreateSession);
                    }
                    Entry::Txn { origin: None, .. } => {}
                    Entry::Failed { origin, .. } | Entry::Sync { origin, .. } => {
                        shards |= bit(origin.conn.shard)
                    }
                    Entry::Connect { conn, .. } => shards |= bit(conn.shard),
                }
            }
            // The next pass's vector starts as large as this one's ended: a busy
            // server's passes are alike, and growing one by doubling costs a few copies.
            let n = self.entries.len();
            let root = self.pass_root();
            let entries = std::mem::replace(&mut self.entries, Vec::with_capacity(n));
            self.push_pending(entries, root, writes, shards);
        }
        if !self.pass_txns.is_empty() {
            // The next pass's buffer starts about as large as this one ended (passes
            // of a busy server are alike), within a bound: a pass that carried one
            // large txn must not make every later buffer large.
            let size = self.pass_buf.len();
            let next = (size + size / 4).min(PASS_BUF_START_MAX);
            let mut full = std::mem::replace(&mut self.pass_buf, Vec::with_capacity(next));
            // The in-memory ZAB log keeps the buffer until its txns are compacted away
            // (one or two snapshot intervals): spare room is given back first.
            if full.capacity() - full.len() > full.len() / 2 + 4096 {
                full.shrink_to_fit();
            }
            let buf = Bytes::from(full);
            let mut start = 0;
            let txns: Vec<zab::Txn> = self
                .pass_txns
                .drain(..)
                .map(|(zxid, end)| {
                    let payload = buf.slice(start..end);
                    start = end;
                    zab::Txn { zxid, payload }
                })
                .collect();
            // A pass with txns has entries: it is the last pending one. Only a pass
            // published without a root is replayed (`publish_safe`).
            let pass = self.pending.back_mut().expect("the pass of these txns");
            if pass.root.is_none() {
                pass.records = txns.clone();
            }
            match self.role {
                Role::Standalone => {
                    self.appended_zxid = self.zxid;
                    self.out.push(Output::Append(txns));
                }
                Role::Leader => self.peer_step(peer::Event::Propose(txns)),
                role => panic!("txns made as {role:?}"),
            }
        }
        if self.role == Role::Leader {
            let e = self.ens.as_mut().expect("leader has a peer");
            let wanted = e.renew_for.take();
            if !e.renewing && (e.peer.next_zxid().is_none() || wanted.is_some()) {
                // The epoch's zxids ran out, or a learner cannot join it: renew it in
                // place (see the module header). Requests wait meanwhile (`room` is 0).
                e.renewing = true;
                let epoch = e.peer.established_epoch().unwrap_or(0);
                self.out.push(Output::Log(match wanted {
                    Some((learner, accepted)) if e.peer.next_zxid().is_some() => format!(
                        "server {learner} has accepted epoch {accepted}, above this leader's \
                         {epoch}, and cannot join it: renewing the epoch in place"
                    ),
                    _ => format!(
                        "the zxids of epoch {epoch} ran out at {:#x}: renewing the epoch in place",
                        self.zxid
                    ),
                }));
                self.peer_step(peer::Event::RenewEpoch);
            }
        }
        if let Some(e) = &mut self.ens {
            if self.role == Role::Learner && !e.touched.is_empty() {
                let mut ids = std::mem::take(&mut e.touched);
                ids.sort_unstable();
                ids.dedup();
                e.fwd_out.push(Fwd::Touch(ids).encode());
            }
            if !e.refused.is_empty() && !e.peer.is_moving() && e.peer.up_to_date_with().is_some() {
                // Refused earlier (the session's older requests): they go first.
                let newer = std::mem::take(&mut e.fwd_out);
                e.fwd_out = std::mem::take(&mut e.refused);
                e.fwd_out.extend(newer);
            }
            if !e.fwd_out.is_empty() {
                let payloads = std::mem::take(&mut e.fwd_out);
                self.peer_step(peer::Event::Forward(payloads));
            }
        }
        self.publish_safe();
        if self.role == Role::Leader {
            let e = self.ens.as_ref().expect("leader has a peer");
            if e.deferred.is_empty() && self.pending.is_empty() && e.peer.transfer_ready() {
                // Everything taken before the transfer is committed and answered.
                self.peer_step(peer::Event::HandOff);
            }
        }
    }

    /// Emits `Output::Health` when what the health answers say changed.
    fn check_health(&mut self) {
        let role = self.role;
        let Some(e) = &mut self.ens else {
            return;
        };
        let p = &e.peer;
        let h = Health {
            serving: matches!(role, Role::Leader | Role::Learner)
                && (p.established_epoch().is_some() || p.up_to_date_with().is_some()),
            synced_voters: p.quorum_view().unwrap_or_default(),
            voters: p.ensemble().voters.len(),
            quorum: p.ensemble().quorum_size(),
            voter: p.is_voter(),
            transferring: p.is_transferring() || p.is_moving(),
        };
        if h != e.health {
            e.health = h.clone();
            self.out.push(Output::Health(h));
        }
    }

    /// Publishes, in order, every pending pass whose txns are all safe.
    fn publish_safe(&mut self) {
        let limit = match self.role {
            Role::Standalone => self.durable_zxid,
            Role::Leader => self.ens.as_ref().map_or(0, |e| e.quorum_committed),
            // Learners publish what they applied; it is committed.
            Role::Looking | Role::Learner => self.zxid,
        };
        while self.pending.front().is_some_and(|p| p.last_zxid <= limit) {
            let p = self.pending.pop_front().expect("front exists");
            self.snapshot_wanted |= self.count_for_snapshot(&p.entries);
            self.committed_zxid = p.last_zxid;
            self.committed_counts = p.counts;
            if self.role == Role::Learner && p.last_zxid == self.zxid {
                // A learner publishes each pass at its end (`limit` is `zxid`): its tree
                // is the published state, held by no second handle.
                self.held = None;
            } else if let Some(root) = &p.root {
                self.hold(root.clone(), p.last_zxid);
            } else {
                // A leader's or standalone server's pass without a root: a rollback
                // replays it.
                self.replay.extend(p.records);
            }
            self.out.push(Output::Publish(Commit {
                entries: p.entries,
                root: p.root,
                zxid: p.last_zxid,
                writes: p.writes,
                shards: p.shards,
            }));
            if self.snapshot_wanted {
                // Else the next pass keeps a root (`pass_root`), snapshotted once published.
                if let Some(root) = self.root_at_committed() {
                    self.snapshot_wanted = false;
                    if self.held.is_some() {
                        // A rollback starts from here, with nothing to replay.
                        self.hold(root.clone(), self.committed_zxid);
                    }
                    self.out.push(Output::Snapshot {
                        root,
                        zxid: self.committed_zxid,
                    });
                    if let Some(p) = &mut self.policy {
                        p.reset();
                    }
                }
            }
        }
        // A shard waits for a root and no pass carried one: the published state's
        // (nothing is pending, so nothing runs ahead of it).
        if self.want_root && self.pending.is_empty() {
            self.want_root = false;
            self.out.push(Output::Publish(Commit {
                entries: Vec::new(),
                root: Some(self.committed_root()),
                zxid: self.committed_zxid,
                writes: 0,
                shards: 0,
            }));
        }
    }

    /// Queues a pass ending at the tree's zxid, to publish once its txns are safe.
    fn push_pending(
        &mut self,
        entries: Vec<Entry>,
        root: Option<DataTree>,
        writes: u64,
        shards: u64,
    ) {
        self.pending.push_back(Pending {
            last_zxid: self.zxid,
            entries,
            root,
            counts: self.tree.counts(),
            records: Vec::new(),
            writes,
            shards,
        });
    }

    /// Counts a pass's committed txns toward the snapshot policy, each with its log
    /// size; returns whether a snapshot is due.
    fn count_for_snapshot(&mut self, entries: &[Entry]) -> bool {
        let Some(policy) = &mut self.policy else {
            return false;
        };
        let mut due = false;
        for e in entries {
            if let Entry::Txn { txn, .. } = e {
                due |= policy.record(crate::storage::log::txn_size_hint(txn) as u64);
            }
        }
        due
    }

    // ---- the log ----

    fn log_durable(&mut self, through: i64) {
        self.durable_zxid = self.durable_zxid.max(through);
        if self.log_recovering {
            self.out.push(Output::Log(format!(
                "the transaction log is writable again: durable through zxid {through:#x}"
            )));
            self.log_recovering = false;
        }
        if self.failed_until.is_some_and(|until| through >= until) {
            self.failed_until = None;
        }
        let Some(e) = &mut self.ens else {
            return;
        };
        let mut released = None;
        while let Some(PeerWrite::Append { write, last }) = e.writes.front().copied() {
            if last as i64 > through {
                break;
            }
            e.writes.pop_front();
            released = Some(write);
        }
        if let Some(write) = released {
            self.peer_step(peer::Event::Durable { write });
        }
    }

    /// A log write failed: see the module header.
    fn log_failed(&mut self, first: i64, last: i64, error: &str) {
        self.out.push(Output::Log(format!(
            "ERROR: writing the transaction log failed for zxids {first:#x}..={last:#x}: {error}"
        )));
        self.log_recovering = true;
        if self.ens.is_some() {
            self.failed_until = None;
            let durable = self.durable_zxid;
            self.ens.as_mut().expect("ensemble").writes.clear();
            self.peer_step(peer::Event::LogFailed {
                durable: durable as u64,
            });
            return;
        }
        if self.failed_until.is_none() {
            self.failed_until = Some(self.appended_zxid);
            self.abandon_unsafe(Code::SystemError);
        }
        if self.failed_until.is_some_and(|until| last >= until) {
            // Every batch sent before the failure is accounted for: the next write tries
            // the disk again (it says so when one succeeds).
            self.failed_until = None;
        }
    }

    /// Publishes everything safe, and answers every request of the
    /// passes still pending, and of the current pass, with `code` (connects are
    /// refused); the speculative tree rolls back to the last published root.
    ///
    /// Every request of an unsafe pass fails, not just its writes: a validation error
    /// or a sync there was decided against a tree that held the unsafe txns, so its
    /// answer (and its zxid) could show a client a state that is rolled back now. The
    /// client retries, as after ZooKeeper's leader drops its connections.
    fn abandon_unsafe(&mut self, code: Code) {
        self.publish_safe();
        let at = self.committed_zxid;
        let fail = |e: Entry| -> Option<Entry> {
            match e {
                Entry::Txn { origin: None, .. } => None,
                Entry::Txn {
                    origin: Some(o), ..
                } if o.op == OpCode::CreateSession => Some(Entry::Connect {
                    conn: o.conn,
                    outcome: ConnectOutcome::Refused,
                }),
                Entry::Txn {
                    origin: Some(origin),
                    ..
                }
                | Entry::Failed { origin, .. }
                | Entry::Sync { origin, .. } => Some(Entry::Failed {
                    origin,
                    zxid: at,
                    error: code.into(),
                }),
                Entry::Connect { conn, .. } => Some(Entry::Connect {
                    conn,
                    outcome: ConnectOutcome::Refused,
                }),
            }
        };
        let mut converted = Vec::new();
        for p in self.pending.drain(..) {
            converted.extend(p.entries.into_iter().filter_map(fail));
        }
        converted.extend(self.entries.drain(..).filter_map(fail));
        self.pass_txns.clear();
        self.pass_buf.clear();
        self.tree = self.committed_root();
        self.zxid = at;
        self.hold_tree_as_published();
        let mut shards = 0;
        for e in &converted {
            shards |= match e {
                Entry::Failed { origin, .. } | Entry::Sync { origin, .. } => bit(origin.conn.shard),
                Entry::Connect { conn, .. } => bit(conn.shard),
                Entry::Txn { .. } => 0,
            };
        }
        if !converted.is_empty() {
            self.push_pending(converted, Some(self.tree.clone()), 0, shards);
        }
        self.rebuild_sessions();
        self.publish_safe();
    }

    /// After a rollback or a new leadership: the tracker and owners follow the tree's
    /// sessions again, each live one with a full timeout from now.
    fn rebuild_sessions(&mut self) {
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
            self.sessions.observe_id(*id);
            if !self.sessions.is_alive(*id) {
                self.sessions.remove(*id);
                self.sessions.add(*id, *timeout, self.now_ms);
            }
        }
        self.owners.retain(|id, _| live.contains_key(id));
    }

    // ---- snapshots ----

    /// A snapshot of `zxid` (`bytes` long) is durable. The peer sends it to learners
    /// behind its log's base (`Event::Snapshotted`), and the log forgets what no DIFF
    /// needs any more: it keeps at least the txns after the snapshot before this one
    /// (the floor, one to two snapshot intervals), and further back as many txns as fit
    /// in `snapshotSizeFactor` x this snapshot's size. That is ZooKeeper's rule for
    /// syncing from its on-disk txn log (`ZKDatabase.calculateTxnLogSizeLimit`): a DIFF
    /// that costs more bytes than a third of a snapshot is worse than the snapshot.
    /// We keep those txns in memory (they are already there: the log holds them until
    /// compaction), so a DIFF never reads the disk and never stalls the loop; the
    /// memory this costs is bounded by the same fraction of the snapshot.
    fn snapshot_durable(&mut self, zxid: i64, bytes: u64) {
        let factor = self
            .cfg
            .snapshots
            .as_ref()
            .map_or(-1.0, |s| s.diff_size_factor);
        let Some(e) = &mut self.ens else {
            return;
        };
        let previous = e.newest_snapshot;
        if previous.is_some_and(|p| p >= zxid) {
            // Committed roots only grow; the same root again changes nothing.
            return;
        }
        e.newest_snapshot = Some(zxid);
        self.peer_step(peer::Event::Snapshotted {
            zxid: zxid as u64,
            snapshot: Bytes::new(),
        });
        let e = self.ens.as_ref().expect("ensemble");
        let before = e.peer.log_base();
        let Some(floor) = previous.map(|p| p as u64).filter(|p| *p > before) else {
            return;
        };
        let through = match diff_window_start(e.peer.log(), before, factor, bytes) {
            Some(z) => z.min(floor),
            None => floor,
        };
        if through <= before {
            return;
        }
        // The core ignores a point that is not committed and durable in its log (a
        // learner still syncing): the base stays, and the next snapshot tries again.
        self.peer_step(peer::Event::Compact {
            through,
            snapshot: Bytes::new(),
        });
        let e = self.ens.as_ref().expect("ensemble");
        let base = e.peer.log_base();
        if base != before {
            assert_eq!(base, through, "compacted to another point");
            let log = e.peer.log();
            let kept = log.payload_bytes();
            self.out.push(Output::PeerBase(base as i64));
            self.out.push(Output::Log(format!(
                "replication log compacted to {base:#x}: {} txns ({kept} bytes) kept, through {:#x}; SNAPs send snapshot {zxid:#x}",
                log.len(),
                e.peer.last_zxid()
            )));
        }
    }

    // ---- ZAB ----

    fn elected(&mut self, leader: ServerId) {
        if self.ens.is_none() {
            return;
        }
        self.leave_read_only();
        let Some(e) = &mut self.ens else {
            return;
        };
        let me = e.peer.my_id();
        if leader == me {
            self.peer_step(peer::Event::Lead);
            // Learners that finished the election first already said FOLLOWERINFO.
            let infos = std::mem::take(&mut self.ens.as_mut().expect("ensemble").early_infos);
            for (from, msg) in infos {
                self.peer_step(peer::Event::Message { from, msg });
            }
        } else {
            self.ens.as_mut().expect("ensemble").early_infos.clear();
            self.peer_step(peer::Event::Follow { leader });
        }
    }

    fn peer_message(&mut self, from: ServerId, msg: Msg) {
        let Some(e) = &mut self.ens else {
            return;
        };
        if e.peer.is_looking() && matches!(msg, Msg::FollowerInfo { .. }) {
            // A learner that concluded the election before us: replayed if we lead
            // (dropping it would leave the learner waiting for LEADERINFO until
            // initLimit, and every epoch would start with a lost initLimit).
            e.early_infos.insert(from, msg);
            return;
        }
        if let Msg::Propose { txns } | Msg::Inform { txns } | Msg::Sync { txns, .. } = &msg {
            if e.peer.following() == Some(from) && !txns.is_empty() {
                // Checked before the peer logs or acknowledges them: a leader that sends
                // bytes that are not a txn (a bug, a corrupted stream, a peer that lies)
                // is left, with the reason, instead of crashing this server when the
                // txn commits.
                let mut fresh = Vec::with_capacity(txns.len());
                for t in txns {
                    match crate::storage::txn_codec::decode_txn_shared(&t.payload) {
                        Ok(d) if d.zxid as u64 == t.zxid => fresh.push(d),
                        Ok(d) => {
                            let what = format!(
                                "{} of zxid {:#x} holds a txn of zxid {:#x}",
                                msg.name(),
                                t.zxid,
                                d.zxid
                            );
                            return self.refuse_leader(from, what);
                        }
                        Err(err) => {
                            let what = format!(
                                "{} of zxid {:#x} does not decode: {err}",
                                msg.name(),
                                t.zxid
                            );
                            return self.refuse_leader(from, what);
                        }
                    }
                }
                self.logged_txns(&fresh);
                let e = self.ens.as_mut().expect("ensemble");
                if matches!(msg, Msg::Sync { .. }) {
                    e.decoded.clear();
                }
                if e.decoded.back().is_some_and(|b| b.zxid >= fresh[0].zxid) {
                    // Not after what is held: a new stream of txns.
                    e.decoded.clear();
                }
                e.decoded.extend(fresh);
            }
        }
        self.peer_step(peer::Event::Message { from, msg });
    }

    /// The leader sent what cannot be a txn: leave it (a new election follows).
    fn refuse_leader(&mut self, from: ServerId, what: String) {
        self.out.push(Output::Log(format!(
            "protocol error from leader {from}: {what}; leaving it"
        )));
        if let Some(e) = &mut self.ens {
            e.decoded.clear();
        }
        self.peer_step(peer::Event::Abandon {
            reason: "the leader sent a txn that does not decode",
        });
    }

    /// Steps the peer and carries out its actions.
    fn peer_step(&mut self, event: peer::Event) {
        let Some(e) = &mut self.ens else {
            return;
        };
        let actions = e.peer.step(event);
        self.prefetch_committed(&actions);
        for a in actions {
            self.peer_action(a);
        }
        let e = self.ens.as_mut().expect("ensemble");
        let counts = e
            .peer
            .learner_counts()
            .filter(|_| e.peer.established_epoch().is_some());
        if counts != e.learner_counts {
            e.learner_counts = counts;
            self.out.push(Output::Learners(counts));
        }
    }

    /// A learner about to apply several committed txns asks for their nodes first
    /// (`DataTree::prefetch`), so that the cache misses of their lookups overlap instead
    /// of each apply waiting for its own. One txn alone gains nothing from it.
    fn prefetch_committed(&self, actions: &[peer::Action]) {
        let Some(e) = &self.ens else {
            return;
        };
        let mut committed = actions.iter().filter_map(|a| match a {
            peer::Action::Committed { zxid, .. } => Some(*zxid as i64),
            _ => None,
        });
        let (Some(_), Some(last)) = (committed.next(), committed.last()) else {
            return;
        };
        if last <= self.zxid {
            // A leader's own txns: applied when they were made.
            return;
        }
        for d in e.decoded.iter().take_while(|d| d.zxid <= last) {
            if d.zxid <= self.zxid {
                continue;
            }
            match &d.op {
                TxnOp::SetData { path, .. }
                | TxnOp::SetAcl { path, .. }
                | TxnOp::Delete { path } => self.tree.prefetch(path),
                TxnOp::Create { path, .. } => {
                    if let Some(i) = path.rfind('/') {
                        self.tree.prefetch(&path[..i]);
                    }
                }
                _ => {}
            }
        }
    }

    fn peer_action(&mut self, action: peer::Action) {
        use peer::Action as A;
        match action {
            A::Send { to, msg } => {
                if matches!(msg, Msg::FollowerInfo { .. }) {
                    self.out.push(Output::Dial { to });
                }
                self.out.push(Output::Send { to, msg });
            }
            A::Append { write, txns } => {
                let e = self.ens.as_mut().expect("ensemble");
                let last = txns.last().expect("appends are not empty").zxid;
                e.writes.push_back(PeerWrite::Append { write, last });
                self.out.push(Output::Append(txns));
            }
            A::Truncate { write, to } => self.truncate(write, to),
            A::InstallSnapshot { write, zxid, data } => {
                let e = self.ens.as_mut().expect("ensemble");
                e.writes.push_back(PeerWrite::Barrier { write });
                assert!(e.barrier.is_none(), "one TRUNC or SNAP at a time");
                e.barrier = Some(Barrier::Install { zxid: zxid as i64 });
                self.out.push(Output::InstallSnapshot {
                    zxid: zxid as i64,
                    received: data,
                });
            }
            A::PersistEpoch { kind, epoch } => self.out.push(Output::PersistEpoch { kind, epoch }),
            A::Committed { zxid, payload } => self.committed_txn(zxid, payload),
            A::Established { epoch } => self.established(epoch),
            A::Activated { zxid, ensemble } => self.activated(zxid, ensemble),
            A::Renewed { epoch } => {
                let e = self.ens.as_mut().expect("ensemble");
                self.out.push(Output::Established { epoch });
                if self.role == Role::Leader {
                    e.renewing = false;
                    e.own_from = make_zxid(epoch, 1);
                    self.out.push(Output::Log(format!(
                        "renewed the epoch in place: leading epoch {epoch} from zxid {:#x}",
                        e.own_from
                    )));
                } else {
                    self.out.push(Output::Log(format!(
                        "the leader renewed its epoch in place: following epoch {epoch}"
                    )));
                }
            }
            A::UpToDate { leader, epoch } => {
                self.role = Role::Learner;
                self.version_established_config(epoch);
                let e = self.ens.as_mut().expect("ensemble");
                let observer = !e.peer.is_voter();
                self.out.push(Output::Established { epoch });
                self.out.push(Output::Mode(if observer {
                    Mode::Observer
                } else {
                    Mode::Follower
                }));
                self.out
                    .push(Output::Log(format!("following {leader} in epoch {epoch}")));
            }
            A::Looking { reason } => self.looking(reason),
            A::Rejected { payload } => {
                // A forward the peer could not send now. Kept, in order: if the leader
                // is lost, `fail_forwarded` answers its request; if the move is called
                // off, `end_pass` sends it before anything newer.
                if let Some(e) = self.ens.as_mut() {
                    e.refused.push(payload);
                }
            }
            A::Forwarded { from, payloads } => self.forwarded(from, payloads),
            A::Replied { payload } => self.answer(payload),
            A::ProtocolError { from, what } => self.out.push(Output::Log(format!(
                "protocol error from server {from}: {what}"
            ))),
            A::Moved { leader, from } => self.moved(leader, from),
            A::TransferRefused { reason } => self.out.push(Output::Log(format!(
                "leadership transfer refused: {reason}"
            ))),
            A::RenewWanted {
                learner,
                accepted_epoch,
            } => {
                if let Some(e) = self.ens.as_mut() {
                    e.renew_for = Some((learner, accepted_epoch));
                }
            }
        }
    }

    /// Leadership moved from `from` to `leader` without an election. Clients keep their
    /// connections: their requests wait in the shards (`room` is 0) until this server
    /// leads or is synced with the new leader.
    fn moved(&mut self, leader: ServerId, from: ServerId) {
        let me = self.ens.as_ref().expect("ensemble").peer.my_id();
        if self.role == Role::Leader {
            // Handed off: everything taken was committed and answered first
            // (`end_pass`); anything left would be a bug, answered as a lost leadership.
            if !self.pending.is_empty() || !self.entries.is_empty() {
                self.abandon_unsafe(Code::ConnectionLoss);
            }
            self.out
                .push(Output::Log(format!("handed leadership to server {leader}")));
        } else if leader == me {
            self.out.push(Output::Log(format!(
                "taking leadership over from server {from}"
            )));
        } else {
            self.out.push(Output::Log(format!(
                "leadership moved from server {from} to server {leader}"
            )));
        }
        // Requests forwarded to the old leader were all answered before it handed off;
        // any left are answered as lost, as when a leader dies.
        self.fail_forwarded();
        let e = self.ens.as_mut().expect("ensemble");
        e.own_from = Zxid::MAX;
        e.renewing = false;
        e.renew_for = None;
        e.deferred.clear();
        e.decoded.clear();
        self.expiring.clear();
        self.role = Role::Learner;
        self.out.push(Output::Moved { leader, from });
    }

    /// A committed txn from the peer.
    fn committed_txn(&mut self, zxid: Zxid, payload: Bytes) {
        let e = self.ens.as_mut().expect("ensemble");
        if e.barrier.is_some() {
            // The state these follow is not in place yet.
            e.after_barrier.push((zxid, payload));
            return;
        }
        if zxid as i64 <= self.zxid {
            if zxid >= e.own_from {
                // One we made as leader: its pass is published once safe.
                e.quorum_committed = e.quorum_committed.max(zxid as i64);
            }
            // Else history applied at start: recovery replayed the whole log.
            return;
        }
        let txn = loop {
            match e.decoded.front() {
                Some(d) if (d.zxid as u64) < zxid => {
                    e.decoded.pop_front();
                }
                Some(d) if d.zxid as u64 == zxid => {
                    break e.decoded.pop_front().expect("front");
                }
                // Sent before this role, or held back by a barrier: decoded here.
                _ => break decode(zxid, &payload),
            }
        };
        self.zxid = txn.zxid;
        let applied = self.tree.apply(&txn);
        self.applied_config_txn(&txn);
        if let TxnOp::CloseSession { .. } = txn.op {
            self.sessions.remove(txn.session_id);
            self.owners.remove(&txn.session_id);
        }
        if let TxnOp::CreateSession { timeout_ms } = txn.op {
            self.sessions.observe_id(txn.session_id);
            if self.cfg.broken.learner_expires_sessions {
                self.sessions.add(txn.session_id, timeout_ms, self.now_ms);
            }
        }
        let session_id = txn.session_id;
        let entry = self.learner_entry(txn, applied);
        self.entries.push(entry);
        self.release_held_close(session_id);
    }

    /// Answers a local session's held closeSession once nothing it forwarded waits.
    fn release_held_close(&mut self, session_id: i64) {
        let Some(e) = self.ens.as_mut() else {
            return;
        };
        if !e.held_closes.contains_key(&session_id)
            || e.forwarded.keys().any(|(s, _)| *s == session_id)
        {
            return;
        }
        let origin = e.held_closes.remove(&session_id).expect("checked above");
        self.fail(origin, Code::Ok);
    }

    fn established(&mut self, epoch: u32) {
        let e = self.ens.as_mut().expect("ensemble");
        e.own_from = make_zxid(epoch, 1);
        // Every txn of the history before the epoch was committed (and applied) by the
        // actions before this one.
        assert_eq!(
            self.zxid as u64,
            e.peer.last_zxid(),
            "history applied through the log's end"
        );
        e.quorum_committed = self.zxid;
        // The tree holds only committed txns here, some perhaps applied in this very
        // pass (the history a sync brought), which no root holds yet: a rollback must
        // not start from an older one.
        self.hold_tree_as_published();
        self.role = Role::Leader;
        // Every session is tracked from now, with a full timeout, as ZooKeeper's new
        // leader does: whatever this server's tracker held (from its start, or an
        // earlier leadership) says nothing of the touches other leaders saw since.
        let tracked: Vec<i64> = self
            .sessions
            .by_expiry()
            .into_iter()
            .flat_map(|(_, ids)| ids)
            .collect();
        for id in tracked {
            self.sessions.remove(id);
        }
        self.rebuild_sessions();
        self.version_established_config(epoch);
        self.out.push(Output::Established { epoch });
        self.out.push(Output::Mode(Mode::Leader));
        self.out.push(Output::Log(format!(
            "leading epoch {epoch} (last zxid {:#x})",
            self.zxid
        )));
    }

    /// With `reconfigEnabled`, the first config established has version 0 (the
    /// server lines of zoo.cfg): it takes the epoch's first zxid as its version, on the
    /// leader when it establishes and on each learner at UPTODATE, as ZooKeeper's
    /// `Leader.lead` does with the NEWLEADER zxid, and `/zookeeper/config` shows it.
    fn version_established_config(&mut self, epoch: u32) {
        let Some(m) = self.membership.as_mut() else {
            return;
        };
        if !m.reconfig_enabled || m.version != 0 {
            return;
        }
        m.version = make_zxid(epoch, 0);
        let m = m.clone();
        self.set_config_node(&m);
        self.out.push(Output::Log(format!(
            "the configuration established in epoch {epoch} has version {:x}",
            m.version
        )));
        self.out.push(Output::Membership(m));
    }

    /// Puts `m` in `/zookeeper/config` outside any txn and publishes the tree.
    fn set_config_node(&mut self, m: &Membership) {
        if self
            .tree
            .set_config_node(m.text().as_bytes(), m.version as i64, 0)
        {
            self.push_pending(Vec::new(), Some(self.tree.clone()), 0, 0);
        }
    }

    fn looking(&mut self, reason: &str) {
        let was = self.role;
        if was == Role::Leader {
            // Answers of txns not yet committed by a quorum: CONNECTIONLOSS (they may
            // still commit under the next leader, as in ZooKeeper, where a client
            // cannot know either), and the tree falls back to the committed one.
            self.abandon_unsafe(Code::ConnectionLoss);
        }
        self.hold_committed_root();
        self.fail_forwarded();
        let e = self.ens.as_mut().expect("ensemble");
        e.own_from = Zxid::MAX;
        e.renewing = false;
        e.renew_for = None;
        e.early_infos.clear();
        e.decoded.clear();
        // Forwards not yet made into txns are lost with the leadership, as the
        // learners' clients learn from their servers' election (CONNECTIONLOSS).
        e.deferred.clear();
        // A TRUNC or SNAP in progress still completes (its files are changing); what
        // was committed after it stays to be applied then.
        self.expiring.clear();
        // Writes of the peer not yet durable stay: the peer still waits for them (its
        // write ids run on across roles), and the log still writes them.
        self.role = Role::Looking;
        // Local sessions end with this server's serving (its clients are closed).
        let ids: Vec<i64> = self
            .local
            .by_expiry()
            .into_iter()
            .flat_map(|(_, v)| v)
            .collect();
        for id in ids {
            self.local.remove(id);
        }
        self.local_owners.clear();
        if was != Role::Looking {
            self.looking_since = self.now_ms;
            // No longer serving: clients must move to a server that does. Their pending
            // requests end with the connection, which clients report as CONNECTIONLOSS.
            self.out.push(Output::CloseClients);
        }
        let (current_epoch, last_zxid) = e.peer.vote_basis();
        self.out.push(Output::Mode(Mode::Looking));
        if self.removed() {
            // No member talks to it any more: it waits, serving nobody, to be stopped
            // (or added back by a later reconfig it would learn on its next start).
            self.out.push(Output::Log(format!(
                "not a member of the configuration in force ({reason}): no election, no clients"
            )));
            return;
        }
        self.out.push(Output::Log(format!(
            "looking ({reason}); vote basis epoch {current_epoch}, zxid {last_zxid:#x}"
        )));
        self.out.push(Output::StartElection {
            current_epoch,
            last_zxid,
        });
    }

    /// A TRUNC: the log is cut back to `to` (the driver, once every earlier write is
    /// done); if recovery applied txns above `to`, the tree comes back rebuilt.
    fn truncate(&mut self, write: u64, to: Zxid) {
        let to = to as i64;
        let e = self.ens.as_mut().expect("ensemble");
        e.writes.push_back(PeerWrite::Barrier { write });
        assert!(e.barrier.is_none(), "one TRUNC or SNAP at a time");
        e.barrier = Some(Barrier::Truncate { to });
        self.out.push(Output::Truncate {
            to,
            rebuild: to < self.zxid,
        });
    }

    /// A TRUNC or SNAP finished on disk; `tree` is the state it leaves (a SNAP's
    /// snapshot, or a TRUNC's rebuilt tree).
    fn barrier_done(&mut self, done: Barrier, tree: Option<DataTree>) {
        let e = self.ens.as_mut().expect("ensemble");
        assert_eq!(
            e.barrier,
            Some(done),
            "completion of a barrier not in progress"
        );
        e.barrier = None;
        let at = match done {
            Barrier::Truncate { to } => to,
            Barrier::Install { zxid } => zxid,
        };
        if let Some(tree) = tree {
            if tree.zxid() != at {
                // A TRUNC above the snapshot recovery loaded can always be rebuilt; a
                // tree of another zxid means the directory changed under us.
                let what = format!(
                    "the state rebuilt for {done:?} is of zxid {:#x}",
                    tree.zxid()
                );
                self.out.push(Output::Log(what));
                self.peer_step(peer::Event::Abandon {
                    reason: "rebuilt state of the wrong zxid",
                });
                return;
            }
            if matches!(done, Barrier::Install { .. }) {
                self.ens.as_mut().expect("ensemble").newest_snapshot = Some(at);
                self.out.push(Output::PeerBase(at));
            }
            self.tree = tree;
            self.zxid = at;
            self.hold_tree_as_published();
            self.rebuild_sessions();
            self.installed_tree_config();
            // The shards' views move with it (a syncing learner serves no clients).
            self.push_pending(Vec::new(), Some(self.tree.clone()), 0, 0);
            self.out.push(Output::Log(format!(
                "{done:?}: the tree is now the state at zxid {at:#x} ({} znodes)",
                self.tree.len()
            )));
        } else {
            assert!(
                matches!(done, Barrier::Truncate { .. }) && at >= self.zxid,
                "{done:?} without the state it leaves"
            );
        }
        let durable = match done {
            Barrier::Truncate { to } => to.min(self.durable_zxid),
            Barrier::Install { zxid } => zxid,
        };
        self.durable_zxid = durable;
        // Release the barrier and every append behind it that is already durable.
        let e = self.ens.as_mut().expect("ensemble");
        let mut released = None;
        while let Some(w) = e.writes.front().copied() {
            match w {
                PeerWrite::Barrier { write } if released.is_none() => {
                    e.writes.pop_front();
                    released = Some(write);
                }
                PeerWrite::Append { write, last } if last as i64 <= durable => {
                    e.writes.pop_front();
                    released = Some(write);
                }
                _ => break,
            }
        }
        let waiting = std::mem::take(&mut self.ens.as_mut().expect("ensemble").after_barrier);
        for (zxid, payload) in waiting {
            self.committed_txn(zxid, payload);
        }
        if let Some(write) = released {
            self.peer_step(peer::Event::Durable { write });
        }
    }
}

/// The ZAB-facing view of a log record, for tests: the txn a record holds.
pub fn record_txn(r: &zab::Txn) -> Txn {
    decode(r.zxid, &r.payload)
}

#[cfg(test)]
mod tests;
