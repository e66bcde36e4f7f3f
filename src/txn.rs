//! Transactions: the deterministic effects the sequencer produces from validated write
//! requests. A follower, or a replay of the log, applies them without validating again,
//! and applying the same txns to the same tree always yields the same tree.
//!
//! Everything a txn needs that is not in the tree (its zxid, the time, the final path of
//! a sequential node, the session's ephemerals) is chosen once by the sequencer and
//! stored in the txn. Pure: no I/O, no clock.

use crate::proto::{Acl, Code, EventType, Stat};
use bytes::Bytes;

/// One committed change. `zxid` is `(epoch << 32) | counter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// The session that issued the request (the session created or closed, for session txns).
    pub session_id: i64,
    /// The client's xid of the request, kept for the log dump and duplicate detection.
    pub cxid: i32,
    pub zxid: i64,
    /// Milliseconds since the Unix epoch, chosen by the sequencer: becomes ctime/mtime.
    pub time_ms: i64,
    pub op: TxnOp,
}

/// The effect of a txn. Every variant is a change that the sequencer already validated
/// against the tree it will be applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// A new session with this negotiated timeout (the id is `Txn::session_id`).
    CreateSession {
        timeout_ms: i32,
    },
    /// Ends the session and deletes its ephemerals, listed in sorted order.
    CloseSession {
        ephemerals: Vec<String>,
    },
    /// Creates `path` (already carrying its sequential suffix).
    Create {
        path: String,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        /// 0, a session id (ephemeral), `CONTAINER_EPHEMERAL_OWNER`, or a TTL encoding.
        ephemeral_owner: i64,
    },
    Delete {
        path: String,
    },
    /// Deletes an empty container or an expired TTL node (server-initiated).
    DeleteContainer {
        path: String,
    },
    /// Sets data; `version` is the node's new version.
    SetData {
        path: String,
        data: Option<Bytes>,
        version: i32,
    },
    /// Sets the ACL; `aversion` is the node's new aversion.
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        aversion: i32,
    },
    /// A version check inside a multi; no effect on the tree.
    Check {
        path: String,
    },
    /// The ops of a multi that succeeded as a whole, applied in order.
    Multi(Vec<TxnOp>),
    /// No effect on the tree: a request forwarded by another server that failed
    /// validation (`code`; a failed multi's per-op codes in `multi`), or a forwarded
    /// `sync` (`code` is `Ok`). It is logged and committed like any txn so that its
    /// answer reaches the client, on the server it is connected to, in order with that
    /// session's other requests and after everything committed before it (ZooKeeper's
    /// ErrorTxn plays the same part).
    Error {
        code: Code,
        multi: Option<Vec<Code>>,
    },
}

/// What applying one op produced, for the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// Session txns.
    Done,
    /// A created node: its final path and Stat (create answers the path, create2 both).
    Created {
        path: String,
        stat: Stat,
    },
    Deleted,
    /// setData / setACL: the node's new Stat.
    Stat(Stat),
    Checked,
    Multi(Vec<OpResult>),
    /// A failed op inside a failed multi (produced by validation, never by apply).
    Error(Code),
}

/// A watch trigger produced by applying a txn: `event` happened at `path`.
///
/// Create yields `NodeCreated` on the path and `NodeChildrenChanged` on the parent;
/// delete yields `NodeDeleted` on the path and `NodeChildrenChanged` on the parent;
/// setData yields `NodeDataChanged`. The watch manager decides which watches fire.
///
/// `acl` is the ACL a watcher must be able to READ under to be told (ZooKeeper's
/// `WatchManager.triggerWatch(.., acl)` since 3.9.2, CVE-2024-23944): the node's own
/// for NodeCreated, NodeDataChanged and NodeDeleted (as it was when deleted), the
/// parent's for NodeChildrenChanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub path: String,
    pub event: EventType,
    pub acl: std::sync::Arc<Vec<Acl>>,
}

/// The result of applying one txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub result: OpResult,
    pub triggers: Vec<Trigger>,
}
