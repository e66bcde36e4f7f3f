//! Replies too big to build on a shard's thread.
//!
//! A getChildren of a node with a million children builds a list of a million names and
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

/// One getChildren (or getChildren2, with `stat`) to answer from `view`.
pub struct BulkJob {
    pub view: DataTree,
    pub path: String,
    pub stat: Option<Stat>,
    pub xid: i32,
    pub zxid: i64,
    pub slot: usize,
    pub gen: u32,
    pub inbox: Arc<Mailbox<ToShard>>,
}

impl BulkJob {
    /// The framed reply.
    pub fn build(&self) -> Vec<u8> {
        // The shard saw the node in this view; it cannot be gone from it.
        let body = super::reads::children_body(&self.view, &self.path, self.stat.clone());
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
                let bytes = job.build();
                job.inbox.push_unbounded(ToShard::BulkReply {
                    slot: job.slot,
                    gen: job.gen,
                    bytes,
                });
            }
        })?;
    Ok(tx)
}
