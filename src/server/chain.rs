//! The commit chain: how commits reach the shards without a queue per shard and without
//! waking a shard that has nothing waiting.
//!
//! The core appends each published [`Commit`] to one singly linked list; every shard
//! keeps a cursor (the last node it processed) and, whenever it next runs, walks from it
//! to the end, processing each commit in zxid order (watches fire, its own requests are
//! answered, its view moves). A node is written once (`next` is a `OnceLock`), before the
//! core looks at anything else, so a shard that sees a node sees every node before it,
//! complete.
//!
//! Freeing. The core's thread frees the nodes every cursor has passed
//! ([`Chain::reclaim`], at the start of each of its passes and at each append), not the
//! shard that passes a node last: what a node holds (the batch's entries, txns,
//! results, a root's tree nodes) was allocated on the core's thread, and a free on
//! another thread costs the allocator an atomic push plus the allocating core's cache
//! lines. With two shards on 2 cores, those frees were 37% of the second shard's CPU
//! (`mi_free_block_mt`, a standalone server under `zkbench run -w set -s 16 -k 16`);
//! docs/write-path.md, "Fifth round". A node a cursor still holds is left for later.
//!
//! Waking. The core wakes a shard after an append only if the commit has entries for
//! that shard's connections, if the shard holds watches (an event may be due), or if
//! the shard's cursor lags far behind (its unprocessed nodes pin memory). A shard with
//! nothing waiting reads the chain when it next runs anyway: before it serves any
//! request, so no answer on any shard can be newer than what a read sees, and at the end
//! of every loop pass.
//!
//! The watch check is a Dekker pair: the shard stores its watch count and then reads the
//! chain's end (at the end of the pass in which it registered the watch); the core links
//! the node and then reads the count, both sequentially consistent. Either the core sees
//! the watch and wakes the shard, or the shard sees the node.
//!
//! Ownership: the core's thread alone appends (it owns the tail); any number of shard
//! threads read. Lock-free: one `OnceLock::set` per commit, and loads.

use crate::sequencer::msg::Commit;
use std::sync::atomic::{fence, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// A shard whose cursor is this many commits behind the tail is woken even with nothing
/// waiting, so that the nodes it pins are freed: each holds a batch's entries and keeps
/// the roots of its commits alive. At the group-commit batch sizes measured here (tens to
/// hundreds of txns per commit) this bounds an idle shard's pinned memory to a few
/// megabytes; its wake-up costs one pass per that many commits.
pub const MAX_LAG: u64 = 1024;

/// One published commit and the link to the next.
pub struct Node {
    pub commit: Commit,
    /// The node's position in the chain (1, 2, ...; 0 is the start node).
    pub seq: u64,
    /// When the core published it (the `answered` stage starts here).
    pub published_at: Instant,
    /// When the writes it answers were handed to the log, were durable, and had a
    /// quorum (for the stage histograms and the slow-request log); `None` when it
    /// answers no write.
    pub stages: Option<Stages>,
    next: OnceLock<Arc<Node>>,
}

/// The write stages of one commit's txns. A commit may cover several log batches (a
/// follower's commit point often moves past two or three passes at once), and each
/// txn's stages are those of its own batch: the last batch's times, given to every txn,
/// would count an earlier txn's wait for the later batches as its `proposed` stage.
#[derive(Clone, Debug)]
pub struct Stages {
    /// The batches the commit covers, oldest first: the last zxid of each, when it was
    /// handed to the log and when it was durable. Not empty.
    pub batches: Vec<(i64, Instant, Instant)>,
    /// When the quorum's word came: the last peer message before the commit (standalone:
    /// none, the quorum is the durable write). A batch durable after it had its quorum
    /// when it was durable.
    pub quorum: Option<Instant>,
}

impl Stages {
    /// When the batch holding `zxid` was handed to the log, was durable, and had a
    /// quorum (never before it was durable). A zxid past every batch takes the last.
    pub fn of(&self, zxid: i64) -> [Instant; 3] {
        let batch = self
            .batches
            .iter()
            .find(|b| b.0 >= zxid)
            .or(self.batches.last())
            .expect("stages name at least one batch");
        self.times(batch)
    }

    /// One batch's times: handed to the log, durable, and quorum (never before durable).
    pub fn times(&self, &(_, appended, durable): &(i64, Instant, Instant)) -> [Instant; 3] {
        let quorum = self.quorum.filter(|q| *q > durable).unwrap_or(durable);
        [appended, durable, quorum]
    }
}

impl Node {
    /// The commit after this one, once the core has published it.
    pub fn next(&self) -> Option<&Arc<Node>> {
        self.next.get()
    }
}

impl Drop for Node {
    /// Frees the nodes after this one iteratively: a long chain dropped by the last
    /// cursor that held its head must not recurse once per node.
    fn drop(&mut self) {
        let mut next = self.next.take();
        while let Some(n) = next {
            match Arc::try_unwrap(n) {
                Ok(mut node) => next = node.next.take(),
                Err(_) => break,
            }
        }
    }
}

/// What the core knows of one shard.
#[derive(Default)]
pub struct ShardSignals {
    /// Watches the shard's connections hold (see the module header).
    pub watches: AtomicI64,
    /// The `seq` of the last node the shard processed.
    pub cursor: AtomicU64,
    /// Client connections the shard holds (the acceptor places new ones by it).
    pub conns: AtomicU64,
}

/// The core's end of the chain.
pub struct Chain {
    /// The oldest node not yet freed; nodes from here to the tail stay linked.
    head: Arc<Node>,
    tail: Arc<Node>,
}

impl Chain {
    /// A chain whose start node carries `root` at `zxid` (the recovered state); every
    /// shard's cursor starts there.
    pub fn new(start: Commit) -> Chain {
        let start = Arc::new(Node {
            commit: start,
            seq: 0,
            published_at: Instant::now(),
            stages: None,
            next: OnceLock::new(),
        });
        Chain {
            head: start.clone(),
            tail: start,
        }
    }

    /// Frees, on this (the core's) thread, the nodes from the head that no cursor holds
    /// any more (see the module header); returns how many.
    ///
    /// A node before the head is gone, so a shard can reach the head only through a
    /// count it already holds: a count of one (the chain's) means no cursor is at the
    /// head or can get there. The tail is held twice and stops the walk.
    pub fn reclaim(&mut self) -> usize {
        let mut freed = 0;
        while Arc::strong_count(&self.head) == 1 {
            let Some(next) = self.head.next().cloned() else {
                break;
            };
            // The old head's `Drop` stops at `next`, which the chain now holds.
            self.head = next;
            freed += 1;
        }
        freed
    }

    /// The node a new shard starts from.
    pub fn tail(&self) -> Arc<Node> {
        self.tail.clone()
    }

    /// Links `commit` after the tail. The caller decides whom to wake afterwards
    /// (`should_wake`), with the fence this takes between the link and those reads.
    pub fn append(&mut self, commit: Commit) -> &Arc<Node> {
        self.append_staged(commit, None)
    }

    /// `append`, with the write stages of the commit's writes.
    pub fn append_staged(&mut self, commit: Commit, stages: Option<Stages>) -> &Arc<Node> {
        // Here too, so that what the chain holds is bounded by its slowest cursor
        // whoever drives it.
        self.reclaim();
        let node = Arc::new(Node {
            commit,
            seq: self.tail.seq + 1,
            published_at: Instant::now(),
            stages,
            next: OnceLock::new(),
        });
        assert!(
            self.tail.next.set(node.clone()).is_ok(),
            "the chain's tail has a successor: two appenders"
        );
        self.tail = node;
        // Pairs with the shard's fence between storing its watch count and reading the
        // chain (`Cursor::advance`).
        fence(Ordering::SeqCst);
        &self.tail
    }

    /// Whether shard `shard` must be woken for the node just appended.
    pub fn should_wake(node: &Node, shard: usize, signals: &ShardSignals) -> bool {
        node.commit.shards & (1 << shard) != 0
            || signals.watches.load(Ordering::SeqCst) > 0
            || node
                .seq
                .saturating_sub(signals.cursor.load(Ordering::Relaxed))
                >= MAX_LAG
    }
}

/// A shard's position in the chain.
pub struct Cursor {
    node: Arc<Node>,
}

impl Cursor {
    pub fn new(start: Arc<Node>) -> Cursor {
        Cursor { node: start }
    }

    /// The last node processed.
    pub fn current(&self) -> &Arc<Node> {
        &self.node
    }

    /// The next node to process, if the core published one; `advance_to` it after
    /// processing it.
    pub fn peek(&self) -> Option<Arc<Node>> {
        // Pairs with the core's fence after a link (see the module header).
        fence(Ordering::SeqCst);
        self.node.next().cloned()
    }

    /// Moves to `node` (which must be the one `peek` returned) and tells the core.
    pub fn advance_to(&mut self, node: Arc<Node>, signals: &ShardSignals) {
        assert_eq!(node.seq, self.node.seq + 1, "cursor skipped a commit");
        signals.cursor.store(node.seq, Ordering::Relaxed);
        self.node = node;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::DataTree;

    fn commit(zxid: i64, shards: u64) -> Commit {
        Commit {
            entries: Vec::new(),
            root: Some(DataTree::new()),
            zxid,
            writes: 0,
            shards,
        }
    }

    /// Each txn gets its own batch's times; the quorum never comes before a batch's
    /// durable write, and standalone (no peer message) it is the durable write.
    #[test]
    fn stages_are_those_of_the_txns_own_batch() {
        let t0 = Instant::now();
        let at = |us| t0 + std::time::Duration::from_micros(us);
        let batches = vec![(10, at(0), at(300)), (20, at(100), at(900))];
        let s = Stages {
            batches: batches.clone(),
            quorum: Some(at(500)),
        };
        assert_eq!(s.of(3), [at(0), at(300), at(500)]);
        assert_eq!(s.of(10), [at(0), at(300), at(500)]);
        // Durable after the quorum's word: its quorum is its durable write.
        assert_eq!(s.of(11), [at(100), at(900), at(900)]);
        assert_eq!(s.of(20), [at(100), at(900), at(900)]);
        assert_eq!(s.of(21), [at(100), at(900), at(900)]);
        let standalone = Stages {
            batches,
            quorum: None,
        };
        assert_eq!(standalone.of(5), [at(0), at(300), at(300)]);
    }

    #[test]
    fn cursors_see_every_commit_in_order_and_free_what_they_passed() {
        let mut chain = Chain::new(commit(0, 0));
        let signals = ShardSignals::default();
        let mut c = Cursor::new(chain.tail());
        let first = Arc::downgrade(c.current());
        for z in 1..=5000 {
            chain.append(commit(z, 0));
        }
        let mut seen = Vec::new();
        while let Some(n) = c.peek() {
            seen.push(n.commit.zxid);
            c.advance_to(n, &signals);
        }
        assert_eq!(seen, (1..=5000).collect::<Vec<_>>());
        assert_eq!(signals.cursor.load(Ordering::Relaxed), 5000);
        // The cursor passing a node does not free it: the core does, on its thread.
        assert!(first.upgrade().is_some(), "a cursor freed the start node");
        assert_eq!(chain.reclaim(), 5000);
        assert!(first.upgrade().is_none(), "the start node is still alive");
        assert_eq!(chain.reclaim(), 0, "the node the cursor holds stays");
        // Dropping a chain of 5000 nodes does not overflow the stack.
        let mut long = Chain::new(commit(0, 0));
        for z in 1..=5000 {
            long.append(commit(z, 0));
        }
        drop(long);
    }

    #[test]
    fn appends_alone_keep_the_chain_to_what_the_slowest_cursor_has_not_passed() {
        let mut chain = Chain::new(commit(0, 0));
        let signals = ShardSignals::default();
        let mut c = Cursor::new(chain.tail());
        let mut passed = Vec::new();
        for z in 1..=100 {
            chain.append(commit(z, 0));
            let n = c.peek().unwrap();
            passed.push(Arc::downgrade(c.current()));
            c.advance_to(n, &signals);
        }
        // Every node but the cursor's (the tail) and the one the last append could not
        // yet free is gone, without a call to `reclaim`.
        let alive = passed.iter().filter(|w| w.upgrade().is_some()).count();
        assert_eq!(alive, 1, "{alive} passed nodes still held");
    }

    #[test]
    fn the_core_frees_only_what_every_cursor_passed() {
        let mut chain = Chain::new(commit(0, 0));
        let signals = ShardSignals::default();
        let mut fast = Cursor::new(chain.tail());
        let mut slow = Cursor::new(chain.tail());
        let nodes: Vec<_> = (1..=3)
            .map(|z| Arc::downgrade(chain.append(commit(z, 0))))
            .collect();
        while let Some(n) = fast.peek() {
            fast.advance_to(n, &signals);
        }
        assert_eq!(
            chain.reclaim(),
            0,
            "the slow cursor still holds the start node"
        );
        let n = slow.peek().unwrap();
        slow.advance_to(n, &signals);
        // Start node freed; node 1 is the slow cursor's.
        assert_eq!(chain.reclaim(), 1);
        assert!(nodes[0].upgrade().is_some());
        let n = slow.peek().unwrap();
        slow.advance_to(n, &signals);
        assert_eq!(chain.reclaim(), 1);
        assert!(nodes[0].upgrade().is_none(), "node 1 outlived every cursor");
        assert!(nodes[1].upgrade().is_some() && nodes[2].upgrade().is_some());
        // The tail is never freed: new shards start there.
        let n = slow.peek().unwrap();
        slow.advance_to(n, &signals);
        drop((fast, slow));
        assert_eq!(chain.reclaim(), 1);
        assert!(nodes[1].upgrade().is_none() && nodes[2].upgrade().is_some());
        assert_eq!(chain.reclaim(), 0);
    }

    #[test]
    fn wakes_only_for_entries_watches_or_lag() {
        let mut chain = Chain::new(commit(0, 0));
        let s = ShardSignals::default();
        let n = chain.append(commit(1, 0b10)).clone();
        assert!(!Chain::should_wake(&n, 0, &s), "nothing for shard 0");
        assert!(Chain::should_wake(&n, 1, &s), "shard 1 has an entry");
        s.watches.store(1, Ordering::SeqCst);
        assert!(Chain::should_wake(&n, 0, &s), "shard 0 holds a watch");
        s.watches.store(0, Ordering::SeqCst);
        let mut last = n;
        for z in 2..=(MAX_LAG as i64 + 1) {
            last = chain.append(commit(z, 0)).clone();
        }
        assert!(Chain::should_wake(&last, 0, &s), "shard 0 lags by MAX_LAG");
    }
}
