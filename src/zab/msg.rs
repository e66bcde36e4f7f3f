//! The quorum-port messages between a leader and its learners (ZooKeeper's packet
//! types, `Leader.java`), as values. Encoding them for the wire is the driver's; this
//! module must not do I/O.

use super::{ServerId, Txn, Zxid};
use bytes::Bytes;

/// How a learner's log is brought to the leader's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// The learner's log is a prefix of the leader's: append what follows.
    Diff,
    /// The learner holds txns the leader does not: cut its log back to `to`, then append.
    Trunc { to: Zxid },
    /// The learner is behind the leader's oldest logged txn: replace its state by the
    /// leader's snapshot at `zxid`, then append.
    Snap { zxid: Zxid, data: Bytes },
}

/// One message on a leader-learner connection. Connections are in order (TCP); a
/// `FollowerInfo` always starts a fresh connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Learner -> leader, first on a connection (FOLLOWERINFO / OBSERVERINFO).
    FollowerInfo {
        accepted_epoch: u32,
        last_zxid: Zxid,
        observer: bool,
    },
    /// Leader -> learner: the proposed new epoch (LEADERINFO).
    LeaderInfo { new_epoch: u32 },
    /// Learner -> leader, sent only once `new_epoch` is persisted as accepted (ACKEPOCH).
    AckEpoch { current_epoch: u32, last_zxid: Zxid },
    /// Leader -> learner: DIFF/TRUNC/SNAP with the txns that follow, and how far the
    /// leader knows them committed.
    Sync {
        mode: SyncMode,
        txns: Vec<Txn>,
        commit_through: Zxid,
    },
    /// Leader -> learner: the synced history is the history of `epoch` (NEWLEADER).
    NewLeader { epoch: u32 },
    /// Learner -> leader, only once the synced history and the current epoch are durable.
    AckNewLeader { epoch: u32 },
    /// Leader -> learner: establishment is done, serve clients (UPTODATE).
    UpToDate,
    /// Leader -> follower: a batch of txns, pipelined (PROPOSAL).
    Propose { txns: Vec<Txn> },
    /// Follower -> leader: every txn through `zxid` is durable here (ACK).
    Ack { zxid: Zxid },
    /// Leader -> follower: every txn through `through` is committed (COMMIT).
    Commit { through: Zxid },
    /// Leader -> up-to-date follower: the leader's own log is durable through `through`
    /// (no ZooKeeper counterpart). Where the leader and that follower alone make a
    /// quorum, the follower commits what both logs hold without waiting for the round
    /// trip of its ACK and the leader's COMMIT (see `Peer::try_local_commit`).
    Logged { through: Zxid },
    /// Leader -> observer: committed txns (INFORM).
    Inform { txns: Vec<Txn> },
    /// Learner -> leader: client requests and session traffic for the leader's
    /// sequencer, opaque here (REQUEST, REVALIDATE and the session list of PING in
    /// ZooKeeper). The leader hands them to its driver; what they become is logged as
    /// txns and reaches the learner through the commit stream.
    Forward { payloads: Vec<Bytes> },
    /// Leader -> learner: an answer that is not a txn (REVALIDATE's), opaque here.
    Reply { payload: Bytes },
    /// Both ways: liveness (PING).
    Ping,
    /// Leader -> up-to-date learners, every tick: the voters synced with it (itself
    /// included), so that any server can say whether stopping it keeps a quorum.
    QuorumView { synced: Vec<ServerId> },
    /// Leader -> up-to-date learners: leadership is moving; forward nothing more and
    /// answer `MovingAck` (after every FORWARD sent before it, the link being in order).
    Moving,
    /// Learner -> leader: the answer to `Moving`.
    MovingAck,
    /// Leader -> up-to-date learners: the transfer announced by `Moving` is off (its
    /// target did not catch up in time, or left); this server goes on leading, so
    /// forward again.
    MovingCancelled,
    /// Leader -> the transfer's target, once the target acknowledged every txn and
    /// everything is committed: lead now (without an election).
    TakeOver,
    /// Leader -> its other up-to-date learners, with `TakeOver`: follow `leader` now.
    Moved { leader: ServerId },
    /// Learner (a voter) -> leader: hand leadership to me (`rqld`).
    RequestLeadership,
}

impl Msg {
    /// A short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::FollowerInfo { .. } => "FOLLOWERINFO",
            Msg::LeaderInfo { .. } => "LEADERINFO",
            Msg::AckEpoch { .. } => "ACKEPOCH",
            Msg::Sync {
                mode: SyncMode::Diff,
                ..
            } => "DIFF",
            Msg::Sync {
                mode: SyncMode::Trunc { .. },
                ..
            } => "TRUNC",
            Msg::Sync {
                mode: SyncMode::Snap { .. },
                ..
            } => "SNAP",
            Msg::NewLeader { .. } => "NEWLEADER",
            Msg::AckNewLeader { .. } => "ACKNEWLEADER",
            Msg::UpToDate => "UPTODATE",
            Msg::Propose { .. } => "PROPOSAL",
            Msg::Ack { .. } => "ACK",
            Msg::Commit { .. } => "COMMIT",
            Msg::Logged { .. } => "LOGGED",
            Msg::Inform { .. } => "INFORM",
            Msg::Forward { .. } => "FORWARD",
            Msg::Reply { .. } => "REPLY",
            Msg::Ping => "PING",
            Msg::QuorumView { .. } => "QUORUMVIEW",
            Msg::Moving => "MOVING",
            Msg::MovingAck => "MOVINGACK",
            Msg::MovingCancelled => "MOVINGCANCELLED",
            Msg::TakeOver => "TAKEOVER",
            Msg::Moved { .. } => "MOVED",
            Msg::RequestLeadership => "REQUESTLEADERSHIP",
        }
    }
}
