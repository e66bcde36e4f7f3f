//! The entries of a peer's in-memory log: txns in zxid order, held in chunks of a fixed
//! size so that no operation the core loop runs per write moves what is already held.
//!
//! A `Vec<Txn>` doubled its buffer as the log grew: the copy, and the fresh pages the
//! new buffer faulted in, held a leader's event loop for 12 ms when its log reached
//! 131,072 entries 3.3 s into an open-loop run at 19,447 writes/s (the writes in flight
//! waited for it, on every server). Each doubling costs twice the last, and a log that
//! keeps a big tree's DIFF window holds millions of entries. Forgetting a compacted
//! prefix (`Vec::drain`) moved every entry kept, once per snapshot. Here an append
//! writes into the last chunk or starts a new one of [`CHUNK`] entries, and forgetting
//! a prefix frees whole chunks and moves at most one chunk's entries.
//!
//! Each chunk also keeps its payloads' bytes, for the two questions a compaction asks
//! (how many bytes the log keeps, and where the newest `limit` bytes begin): walking a
//! log of 3.3 million 100-byte txns (a third of a 1 GB snapshot, the DIFF window's
//! default) for them took 22-25 ms of the leader's loop at every snapshot.

use super::{Txn, Zxid};
use std::collections::VecDeque;
use std::ops::Index;

/// Entries per chunk: 4,096 txns of 40 bytes, one 160 KiB allocation made at full size.
pub const CHUNK: usize = 4096;

/// Txns in increasing zxid order (the caller keeps the order: the peer checks it on
/// every append).
#[derive(Clone, Debug, Default)]
pub struct Txns {
    /// No chunk is empty, and every chunk but the first and the last holds exactly
    /// [`CHUNK`] entries, so an index finds its chunk by arithmetic.
    chunks: VecDeque<Chunk>,
    len: usize,
    /// The payloads' bytes, all chunks.
    bytes: u64,
}

#[derive(Clone, Debug)]
struct Chunk {
    txns: Vec<Txn>,
    /// The payloads' bytes of `txns`.
    bytes: u64,
}

fn bytes_of(txns: &[Txn]) -> u64 {
    txns.iter().map(|t| t.payload.len() as u64).sum()
}

impl Txns {
    pub fn new() -> Txns {
        Txns::default()
    }

    pub fn from_vec(txns: Vec<Txn>) -> Txns {
        let mut t = Txns::new();
        t.extend(txns);
        t
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn last(&self) -> Option<&Txn> {
        self.chunks.back().and_then(|c| c.txns.last())
    }

    /// The payloads' bytes of all the entries.
    pub fn payload_bytes(&self) -> u64 {
        self.bytes
    }

    pub fn get(&self, i: usize) -> Option<&Txn> {
        if i >= self.len {
            return None;
        }
        let (c, o) = self.locate(i);
        Some(&self.chunks[c].txns[o])
    }

    /// The chunk and offset of index `i` (`i <= len`; `len` itself may name a chunk
    /// past the last).
    fn locate(&self, i: usize) -> (usize, usize) {
        let first = self.chunks.front().map_or(0, |c| c.txns.len());
        if i < first {
            (0, i)
        } else {
            let k = i - first;
            (1 + k / CHUNK, k % CHUNK)
        }
    }

    pub fn push(&mut self, t: Txn) {
        let n = t.payload.len() as u64;
        match self.chunks.back_mut() {
            Some(c) if c.txns.len() < CHUNK => {
                c.txns.push(t);
                c.bytes += n;
            }
            _ => {
                let mut txns = Vec::with_capacity(CHUNK);
                txns.push(t);
                self.chunks.push_back(Chunk { txns, bytes: n });
            }
        }
        self.len += 1;
        self.bytes += n;
    }

    pub fn extend<I: IntoIterator<Item = Txn>>(&mut self, txns: I) {
        for t in txns {
            self.push(t);
        }
    }

    /// Keeps the first `n` entries.
    pub fn truncate(&mut self, n: usize) {
        while self.len > n {
            let back = self.chunks.back_mut().expect("entries beyond n");
            let keep = back.txns.len() - (self.len - n).min(back.txns.len());
            let cut = bytes_of(&back.txns[keep..]);
            self.len -= back.txns.len() - keep;
            self.bytes -= cut;
            back.bytes -= cut;
            back.txns.truncate(keep);
            if back.txns.is_empty() {
                self.chunks.pop_back();
            }
        }
    }

    /// Forgets the first `n` entries (all of them if there are fewer). What is forgotten
    /// is freed on the reaper thread ([`crate::reaper`]): a compaction forgets tens of
    /// thousands of entries, and dropping their payloads held the core loop for
    /// milliseconds.
    pub fn forget_first(&mut self, n: usize) {
        let mut n = n.min(self.len);
        let mut gone: Vec<Vec<Txn>> = Vec::new();
        while n > 0 {
            let front = self.chunks.front_mut().expect("entries to forget");
            if n >= front.txns.len() {
                n -= front.txns.len();
                self.len -= front.txns.len();
                self.bytes -= front.bytes;
                let chunk = self.chunks.pop_front().expect("the front chunk");
                gone.push(chunk.txns);
            } else {
                let cut = bytes_of(&front.txns[..n]);
                gone.push(front.txns.drain(..n).collect());
                front.bytes -= cut;
                self.bytes -= cut;
                self.len -= n;
                n = 0;
            }
        }
        if !gone.is_empty() {
            crate::reaper::drop_later(gone);
        }
    }

    /// Forgets every entry; as [`Txns::forget_first`], they are freed on the reaper.
    pub fn clear(&mut self) {
        let chunks = std::mem::take(&mut self.chunks);
        if !chunks.is_empty() {
            crate::reaper::drop_later(chunks);
        }
        self.len = 0;
        self.bytes = 0;
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Txn> + '_ {
        self.chunks.iter().flat_map(|c| c.txns.iter())
    }

    /// The entries with indexes `from..to`.
    pub fn range(&self, from: usize, to: usize) -> impl Iterator<Item = &Txn> + '_ {
        assert!(
            from <= to && to <= self.len,
            "range {from}..{to} of {}",
            self.len
        );
        let (c, o) = self.locate(from);
        self.chunks
            .range(c.min(self.chunks.len())..)
            .enumerate()
            .flat_map(move |(j, ch)| ch.txns[if j == 0 { o } else { 0 }..].iter())
            .take(to - from)
    }

    /// The entries with indexes `from..to`, copied (their payloads are shared).
    pub fn to_vec(&self, from: usize, to: usize) -> Vec<Txn> {
        let mut v = Vec::with_capacity(to.saturating_sub(from));
        v.extend(self.range(from, to).cloned());
        v
    }

    /// Index of the first entry with a zxid above `zxid`, searched from the end: the
    /// chunks from the last back to the one that holds the point, and in it
    /// [`after_from_end`]. The callers ask about the commit point or a learner's
    /// position, near the end of the log. Same answer as `partition_point`.
    pub fn after(&self, zxid: Zxid) -> usize {
        let mut end = self.len;
        for c in self.chunks.iter().rev() {
            let start = end - c.txns.len();
            if c.txns[0].zxid <= zxid {
                return start + after_from_end(&c.txns, zxid);
            }
            end = start;
        }
        0
    }

    /// The newest entry whose payload, with those of every entry after it, adds up to
    /// more than `limit` bytes (`None` when the whole log fits): whole chunks by their
    /// totals from the last back, then the entries of the one that crosses the limit.
    pub fn newest_over(&self, limit: u64) -> Option<&Txn> {
        let mut sum = 0u64;
        for c in self.chunks.iter().rev() {
            if sum + c.bytes <= limit {
                sum += c.bytes;
                continue;
            }
            for t in c.txns.iter().rev() {
                sum += t.payload.len() as u64;
                if sum > limit {
                    return Some(t);
                }
            }
        }
        None
    }

    /// The entry of `zxid`, if the log holds it.
    pub fn find(&self, zxid: Zxid) -> Option<&Txn> {
        let i = self.after(zxid);
        i.checked_sub(1)
            .map(|k| &self[k])
            .filter(|t| t.zxid == zxid)
    }
}

/// Index of the first of `entries` (in zxid order) with a zxid above `zxid`, searched
/// from the end: probes 1, 2, 4, ... entries back, then a binary search in the last
/// step: the points asked about sit near the end, and `Peer::proposal_room` asks for
/// every forwarded request a leader takes (a binary search over the whole log was 2.4%
/// of a leader's CPU under setData on 3 servers).
fn after_from_end(entries: &[Txn], zxid: Zxid) -> usize {
    // Every entry at `hi` or later has a zxid above `zxid`.
    let mut hi = entries.len();
    let mut step = 1;
    while hi > 0 {
        let probe = hi.saturating_sub(step);
        if entries[probe].zxid <= zxid {
            let rest = &entries[probe + 1..hi];
            return probe + 1 + rest.partition_point(|t| t.zxid <= zxid);
        }
        hi = probe;
        step = step.saturating_mul(2);
    }
    0
}

impl Index<usize> for Txns {
    type Output = Txn;

    fn index(&self, i: usize) -> &Txn {
        self.get(i)
            .unwrap_or_else(|| panic!("index {i} of {} entries", self.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Payloads of 0 to 12 bytes, so that sums by chunk and by entry differ.
    fn txn(zxid: Zxid) -> Txn {
        Txn {
            zxid,
            payload: bytes::Bytes::from(vec![0u8; (zxid % 13) as usize]),
        }
    }

    /// `Txns::newest_over` the slow way: from the newest back, the first entry at which
    /// the payloads add up to more than `limit`.
    fn newest_over_by_walking(model: &[Txn], limit: u64) -> Option<Zxid> {
        let mut sum = 0u64;
        model.iter().rev().find_map(|t| {
            sum += t.payload.len() as u64;
            (sum > limit).then_some(t.zxid)
        })
    }

    /// Zxids with gaps and an epoch change, as a log holds after renewals.
    fn zxids(n: usize) -> Vec<Zxid> {
        let mut z: Zxid = (1 << 32) | 5;
        (0..n)
            .map(|i| {
                z += if i % 7 == 0 { 3 } else { 1 };
                if i == n / 2 {
                    z = (2 << 32) | 1;
                }
                z
            })
            .collect()
    }

    #[test]
    fn after_and_find_agree_with_a_binary_search() {
        for n in [0, 1, 2, 3, 17, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            let all: Vec<Txn> = zxids(n).into_iter().map(txn).collect();
            // Also with a first chunk that is not full.
            for forget in [0, 1, CHUNK / 2] {
                let mut log = Txns::from_vec(all.clone());
                log.forget_first(forget);
                let model = &all[forget.min(n)..];
                assert_eq!(log.len(), model.len());
                let probes = model
                    .iter()
                    .flat_map(|t| [t.zxid - 1, t.zxid, t.zxid + 1])
                    .chain([0, 1 << 32, Zxid::MAX]);
                for q in probes {
                    assert_eq!(
                        log.after(q),
                        model.partition_point(|t| t.zxid <= q),
                        "{n} entries, {forget} forgotten, zxid {q:#x}"
                    );
                    assert_eq!(
                        log.find(q).map(|t| t.zxid),
                        model
                            .binary_search_by_key(&q, |t| t.zxid)
                            .ok()
                            .map(|k| model[k].zxid)
                    );
                }
            }
        }
    }

    /// What the chunks are for: an append never moves an entry already held (a `Vec`
    /// moved them all at each doubling), and forgetting a prefix moves only the
    /// entries of the chunk it ends in.
    #[test]
    fn appending_never_moves_what_is_held() {
        let mut log = Txns::new();
        log.push(txn(1));
        let first: *const Txn = &log[0];
        for z in 2..=(5 * CHUNK as Zxid) {
            log.push(txn(z));
        }
        assert!(std::ptr::eq(first, &log[0]));
        let later: *const Txn = &log[2 * CHUNK + 5];
        log.forget_first(CHUNK + 7);
        assert!(std::ptr::eq(later, &log[CHUNK - 2]));
        assert_eq!(log[CHUNK - 2].zxid, (2 * CHUNK + 6) as Zxid);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        Truncate(usize),
        Forget(usize),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (1..3 * CHUNK).prop_map(Op::Push),
            2 => (0..4 * CHUNK).prop_map(Op::Truncate),
            2 => (0..2 * CHUNK).prop_map(Op::Forget),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any sequence of appends, cuts and compactions leaves the same entries as a
        /// `Vec` would, by index, by range, forwards and backwards, and by zxid.
        #[test]
        fn behaves_as_a_vec(ops in proptest::collection::vec(op(), 1..24)) {
            let mut log = Txns::new();
            let mut model: Vec<Txn> = Vec::new();
            let mut next: Zxid = 1;
            for op in ops {
                match op {
                    Op::Push(k) => {
                        for _ in 0..k {
                            next += 1 + next % 3;
                            log.push(txn(next));
                            model.push(txn(next));
                        }
                    }
                    Op::Truncate(n) => {
                        log.truncate(n);
                        model.truncate(n);
                    }
                    Op::Forget(n) => {
                        log.forget_first(n);
                        model.drain(..n.min(model.len()));
                    }
                    Op::Clear => {
                        log.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(log.len(), model.len());
                prop_assert_eq!(log.is_empty(), model.is_empty());
                prop_assert_eq!(log.last().map(|t| t.zxid), model.last().map(|t| t.zxid));
                let all: Vec<Zxid> = log.iter().map(|t| t.zxid).collect();
                let want: Vec<Zxid> = model.iter().map(|t| t.zxid).collect();
                prop_assert_eq!(&all, &want);
                let back: Vec<Zxid> = log.iter().rev().map(|t| t.zxid).collect();
                prop_assert_eq!(back, want.iter().rev().copied().collect::<Vec<_>>());
                let n = model.len();
                for (a, b) in [(0, n), (n / 3, n / 2), (n / 2, n), (n, n), (0, 0)] {
                    let got: Vec<Zxid> = log.range(a, b).map(|t| t.zxid).collect();
                    prop_assert_eq!(&got[..], &want[a..b]);
                    prop_assert_eq!(log.to_vec(a, b).len(), b - a);
                }
                for i in [0, n / 2, n.saturating_sub(1), n] {
                    prop_assert_eq!(log.get(i).map(|t| t.zxid), model.get(i).map(|t| t.zxid));
                }
                for q in [0, want.first().copied().unwrap_or(0), want.get(n / 2).copied().unwrap_or(0), Zxid::MAX] {
                    prop_assert_eq!(log.after(q), model.partition_point(|t| t.zxid <= q));
                }
                let total: u64 = model.iter().map(|t| t.payload.len() as u64).sum();
                prop_assert_eq!(log.payload_bytes(), total);
                for limit in [0, 1, 6 * CHUNK as u64 - 1, 6 * CHUNK as u64, total / 2, total.saturating_sub(1), total, u64::MAX] {
                    prop_assert_eq!(log.newest_over(limit).map(|t| t.zxid), newest_over_by_walking(&model, limit));
                }
            }
        }
    }

    /// A payload that records the thread its memory was freed on.
    struct Owner {
        freed_on: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        bytes: [u8; 8],
    }
    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            &self.bytes
        }
    }
    impl Drop for Owner {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("").to_string();
            self.freed_on.lock().unwrap().push(name);
        }
    }

    /// A compaction's forgotten entries (whole chunks and the part of one), and a
    /// cleared log's, are freed on the reaper thread, not on the core loop: with them
    /// freed inline, this fails (the names are the test thread's).
    #[test]
    fn forgotten_entries_are_freed_off_the_calling_thread() {
        let freed_on = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut t = Txns::new();
        let n = 2 * CHUNK + 10;
        for z in 1..=n as Zxid {
            let owner = Owner {
                freed_on: freed_on.clone(),
                bytes: z.to_be_bytes(),
            };
            t.push(Txn {
                zxid: z,
                payload: bytes::Bytes::from_owner(owner),
            });
        }
        // One whole chunk and part of the next.
        let forget = CHUNK + 5;
        t.forget_first(forget);
        assert_eq!(t.len(), n - forget);
        assert_eq!(t.get(0).map(|x| x.zxid), Some(forget as Zxid + 1));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while freed_on.lock().unwrap().len() < forget && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let names = freed_on.lock().unwrap().clone();
        assert_eq!(
            names.len(),
            forget,
            "each forgotten payload freed once, no other"
        );
        // And the rest, forgotten at once (a learner's log replaced by a SNAP).
        t.clear();
        assert!(t.is_empty());
        while freed_on.lock().unwrap().len() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let names = freed_on.lock().unwrap().clone();
        assert_eq!(names.len(), n);
        assert!(
            names.iter().all(|n| n == "rk-reaper"),
            "freed on {:?}",
            names.iter().collect::<std::collections::BTreeSet<_>>()
        );
    }
}
