//! The hand-off between the sequencer thread and the replication loop (ensembles only).
//!
//! Replication -> sequencer: role changes, the quorum commit point, txns to log (a
//! follower's proposals) and txns to apply (committed txns the sequencer did not make).
//! Sequencer -> replication: each pass's txns (leader), local log durability and durable
//! snapshots. The sequencer drains its side once per pass; the replication loop wakes it
//! after a push. The replication log's base (the snapshot a leader sends for SNAP) is
//! published here for autopurge, which must keep that snapshot.

use super::mailbox::{Signal, Wake};
use super::replication::Input;
use crate::txn::Txn;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock};

/// Replication to sequencer.
#[derive(Debug)]
pub enum ToSeqRepl {
    /// ZAB established `epoch` with this server leading: take writes from zxid
    /// `(epoch << 32) | 1` on. Every txn of the history before it was sent as `Apply`.
    Lead { epoch: u32 },
    /// Synced with a leader: apply what it commits; client writes are not taken here.
    Follow,
    /// Back to election: no writes; the speculative tree falls back to the committed one.
    Looking,
    /// Leader: every txn through this zxid is durable on a quorum.
    Committed { through: i64 },
    /// Follower: log these proposed txns (in order).
    Append { txns: Vec<Txn> },
    /// Apply and publish these committed txns (in zxid order).
    Apply { txns: Vec<Txn> },
    /// Leader: requests an up-to-date learner forwarded (`server::forward::Fwd`, encoded).
    Forwarded {
        from: crate::zab::ServerId,
        payloads: Vec<bytes::Bytes>,
    },
    /// Learner: the leader's answer to something forwarded (`forward::Answer`, encoded).
    Answer { payload: bytes::Bytes },
    /// The replication loop is about to change the log's files (TRUNC, SNAP) and then
    /// restart the process: stop logging, wait until every log write queued or in flight
    /// has completed (the log writer thread has ended), then answer on `done` and do
    /// nothing more. Snapshots are not waited for: see `Sequencer::quiesce`.
    Quiesce { done: std::sync::mpsc::Sender<()> },
}

/// Shared by the two threads; see the module header.
#[derive(Default)]
pub struct ReplBridge {
    to_seq: Mutex<VecDeque<ToSeqRepl>>,
    seq_signal: OnceLock<Arc<Signal>>,
    to_repl: OnceLock<Sender<Input>>,
    /// The zxid of the snapshot the replication log continues from (0: none yet).
    peer_base: AtomicU64,
}

impl std::fmt::Debug for ReplBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplBridge")
    }
}

impl ReplBridge {
    /// Queues a message for the sequencer and wakes it.
    pub fn to_sequencer(&self, m: ToSeqRepl) {
        self.to_seq.lock().expect("bridge poisoned").push_back(m);
        if let Some(s) = self.seq_signal.get() {
            s.wake();
        }
    }

    /// Everything queued for the sequencer, oldest first.
    pub fn drain(&self, out: &mut Vec<ToSeqRepl>) {
        out.extend(self.to_seq.lock().expect("bridge poisoned").drain(..));
    }

    /// Sends to the replication loop (dropped before it started: it starts before any
    /// client can write).
    pub fn to_replication(&self, m: Input) {
        if let Some(tx) = self.to_repl.get() {
            let _ = tx.send(m);
        }
    }

    /// Records the replication log's base: the snapshot autopurge must keep.
    pub fn set_peer_base(&self, zxid: u64) {
        self.peer_base.store(zxid, Ordering::Release);
    }

    /// The replication log's base snapshot, if there is one.
    pub fn peer_base(&self) -> Option<i64> {
        match self.peer_base.load(Ordering::Acquire) {
            0 => None,
            z => Some(z as i64),
        }
    }

    pub fn set_sequencer_signal(&self, s: Arc<Signal>) {
        let _ = self.seq_signal.set(s);
    }

    pub fn set_replication(&self, tx: Sender<Input>) {
        let _ = self.to_repl.set(tx);
    }
}
