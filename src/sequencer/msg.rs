//! Messages between the shards and the sequencer core.
//!
//! Shards send their [`ToSeq`] messages in one batch per loop pass; the core publishes
//! [`Commit`]s, which every shard processes in zxid order (the commit chain,
//! `server::chain`): it fires the watches of its own connections, answers its own
//! requests and moves its view to the commit's root. [`ToShard`] carries the rest.

use crate::prep::PrepError;
use crate::proto::{ConnectRequest, Id, OpCode, Request};
use crate::tree::DataTree;
use crate::txn::{Applied, Txn};
use std::sync::Arc;
use std::time::Instant;

pub type ShardId = usize;

/// A connection of one shard: its slab slot and the slot's generation, so a reply for a
/// closed connection is never delivered to a newer one in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnRef {
    pub shard: ShardId,
    pub slot: usize,
    pub gen: u32,
}

/// Where a request came from and how to answer it.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub conn: ConnRef,
    pub xid: i32,
    pub op: OpCode,
    /// When the shard decoded the request, for latency accounting.
    pub received: Instant,
}

/// Shard to sequencer.
#[derive(Debug)]
pub enum ToSeq {
    /// A connect handshake (new session when `req.session_id == 0`, else a resume).
    Connect {
        conn: ConnRef,
        req: ConnectRequest,
        /// When the shard decoded it, for latency accounting.
        received: Instant,
    },
    /// A write (or sync, or closeSession) of an established session.
    Request {
        origin: Origin,
        session_id: i64,
        req: Request,
        /// The connection's authenticated ids, for ACL checks.
        ids: Arc<Vec<Id>>,
    },
    /// Sessions with client activity since the last report (pings and requests).
    Touch(Vec<i64>),
    /// A connection bound to `session_id` closed (the session lives on until it expires).
    Detached { conn: ConnRef, session_id: i64 },
    /// The shard has a read (or a four-letter word) that needs a root newer than the last
    /// one published: a learner publishes roots only when asked (see [`Commit::root`]).
    WantRoot,
}

/// How a connect handshake ended.
#[derive(Debug, Clone)]
pub enum ConnectOutcome {
    /// A resumed session: answer with its timeout and password.
    Resumed { session_id: i64, timeout_ms: i32 },
    /// The session is unknown, expired or the password is wrong: answer with a zero
    /// session (the client reports Expired), then close.
    Expired,
    /// The client has seen a newer zxid than this server has (it must try another
    /// server): close without an answer, as ZooKeeper does.
    Refused,
    /// A read-only session on a server cut off from its quorum (`readonlymode.enabled`):
    /// answered with the readOnly flag set; its writes get NOTREADONLY in the shard.
    ReadOnly { session_id: i64, timeout_ms: i32 },
}

/// One element of the commit stream.
#[derive(Debug)]
pub enum Entry {
    /// A committed txn: applied to the tree, with its reply and watch triggers.
    Txn {
        txn: Txn,
        applied: Applied,
        origin: Option<Origin>,
    },
    /// A write that failed validation: only its origin cares.
    Failed {
        origin: Origin,
        zxid: i64,
        error: PrepError,
    },
    /// A sync: answered once every earlier commit is in the view.
    Sync {
        origin: Origin,
        zxid: i64,
        path: String,
    },
    /// A connect that did not create a session.
    Connect {
        conn: ConnRef,
        outcome: ConnectOutcome,
    },
}

/// A batch of the commit stream and the tree root after it.
#[derive(Debug)]
pub struct Commit {
    pub entries: Vec<Entry>,
    /// The tree after this commit, left out unless a shard asked for one
    /// (`ToSeq::WantRoot`) since the last: a root kept by anyone makes the next pass copy
    /// every leaf it writes (see `docs/write-path.md`, "Roots on request"). A leader or
    /// a standalone server also keeps one every few thousand txns, to roll back to.
    pub root: Option<DataTree>,
    pub zxid: i64,
    /// Client writes answered by it (samples for the write-stage histograms).
    pub writes: u64,
    /// Bit `i` set: some entry is for a connection of shard `i` (which is woken).
    pub shards: u64,
}
