//! Replies too big to build on a shard's thread.
//!
//! A getChildren of a node with a million children (or a multiRead listing one) builds a list of a million names and
//! a reply of tens of megabytes: ~90 ms of work. Built on the shard's thread, every other
//! connection of that shard would wait that long. The shard does what must stay in order
//! there (NONODE, the ACL check, the watch), hands the rest to this thread with its view
//! (a tree version: one pointer), and the connection waits as if a write were in flight:
//! its later requests queue and what the shard would send it meanwhile (watch events) is
//! held, so the client sees the reply first, as it would have. The finished reply comes
//! back through the shard's mailbox, which wakes the shard.
//!
//! One thread per server: big lists are rare, and one being built must not take more than
//! one core from the shards.

use super::mailbox::Mailbox;
use super::shard::ToShard;
use crate::proto::frame;
use crate::proto::*;
use crate::tree::DataTree;
use std::sync::mpsc;
use std::sync::Arc;

/// What a bulk job lists.
#[derive(Debug)]
pub enum BulkWhat {
    /// A getChildren (or getChildren2, with `stat`).
    Children { path: String, stat: Option<Stat> },
    /// A multiRead whose getChildren ops together list more than `bulkReadChildren`
    /// names; its checks and watches are done (`reads::multi_read_prelude`).
    MultiRead(Vec<super::reads::MultiPart>),
}

/// One reply to build from `view`.
pub struct BulkJob {
    pub view: DataTree,
    pub what: BulkWhat,
    pub xid: i32,
    pub zxid: i64,
    pub slot: usize,
    pub gen: u32,
    pub inbox: Arc<Mailbox<ToShard>>,
}

impl BulkWhat {
    /// The reply's body, listed from `view` (on the shard when small, else here).
    pub fn body(self, view: &DataTree) -> Vec<u8> {
        // The shard saw the nodes in this view; they cannot be gone from it.
        match self {
            BulkWhat::Children { path, stat } => super::reads::children_body(view, &path, stat),
            BulkWhat::MultiRead(parts) => super::reads::multi_read_body(view, parts),
        }
    }
}

impl BulkJob {
    /// The framed reply.
    pub fn build(self) -> Vec<u8> {
        let body = self.what.body(&self.view);
        let mut out = Vec::with_capacity(body.len() + 20);
        frame::write_reply(&mut out, self.xid, self.zxid, Code::Ok, |o| {
            o.extend_from_slice(&body)
        });
        out
    }
}

/// Starts the bulk-reply thread; it ends when every sender is dropped.
pub fn spawn() -> std::io::Result<mpsc::Sender<BulkJob>> {
    let (tx, rx) = mpsc::channel::<BulkJob>();
    std::thread::Builder::new()
        .name("rk-bulk".into())
        .spawn(move || {
            for job in rx {
                let (inbox, slot, gen) = (job.inbox.clone(), job.slot, job.gen);
                let bytes = job.build();
                inbox.push_unbounded(ToShard::BulkReply { slot, gen, bytes });
            }
        })?;
    Ok(tx)
}
