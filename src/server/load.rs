//! Load attribution: who drives a server's load. Each shard counts, for every request,
//! ops and bytes in and out, and the watches fired, per session, per client address and
//! per path prefix (the first two components: `/app/locks/lock-7` counts under
//! `/app/locks`), in bounded top-K sketches (filtered space-saving, see [`TopK`]: K
//! counters per dimension, the least-counted one replaced by a newcomer, which inherits
//! its possible over-count as its error). Memory is constant whatever the number of
//! sessions or paths; every key whose share of the ops exceeds 1/K is kept.
//!
//! A shard owns its sketches (no locks or atomics on the request path); the four-letter
//! word `load`, the AdminServer's `load` command and `ringkeeper top` read copies the
//! shards publish with their picture, merged here.

use super::json::Json;
use std::collections::HashMap;
use std::fmt::Write;
use std::net::IpAddr;

/// Counters kept per dimension (sessions, clients, path prefixes) per shard.
pub const K: usize = 32;

/// What is counted for one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub ops: u64,
    /// Over-count bound: ops this key may have inherited when it entered the sketch.
    pub error: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub watches: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.ops += o.ops;
        self.error += o.error;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.watches += o.watches;
    }

    fn is_zero(&self) -> bool {
        self.ops == 0 && self.bytes_in == 0 && self.bytes_out == 0 && self.watches == 0
    }
}

/// A 64-bit hash of a key (FxHash's multiply-rotate over 8-byte words): the sketches'
/// maps are keyed by it, so a lookup hashes the path once and allocates nothing. Two
/// keys of one hash would share a counter; with 64 bits and 32 counters that does not
/// happen in practice.
pub fn hash_bytes(b: &[u8]) -> u64 {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut h: u64 = b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(SEED);
    h ^ (h >> 29)
}

/// The hasher of maps keyed by an already mixed `u64`.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(bytes);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    /// Connection slots: spread (their high bits are a generation).
    fn write_usize(&mut self, n: usize) {
        let h = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

type IdMap = HashMap<u64, usize, std::hash::BuildHasherDefault<IdHasher>>;

/// A key a sketch can hold: its hash, and how to store and name it.
pub trait SketchKey: Clone + PartialEq {
    fn hash64(&self) -> u64;
}

impl SketchKey for i64 {
    fn hash64(&self) -> u64 {
        (*self as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (*self as u64 >> 31)
    }
}

impl SketchKey for IpAddr {
    fn hash64(&self) -> u64 {
        match self {
            IpAddr::V4(a) => hash_bytes(&a.octets()),
            IpAddr::V6(a) => hash_bytes(&a.octets()),
        }
    }
}

impl SketchKey for String {
    fn hash64(&self) -> u64 {
        hash_bytes(self.as_bytes())
    }
}

/// Filter counters per sketch (see [`TopK`]).
pub const FILTER: usize = 256;

/// A filtered space-saving top-K sketch (Homem and Carvalho, 2010): at most [`K`]
/// monitored keys, each with exact counters from the moment it entered, in front of
/// them [`FILTER`] counters indexed by key hash. A key not monitored adds its ops to
/// its filter counter; only when that counter would exceed the least monitored count
/// does the key replace the least counted one, entering with the filter's count (its
/// possible over-count, `error`), and the evicted key's count goes to its own filter
/// counter. Like plain space-saving, no key is ever under-counted and every key above
/// 1/K of the ops is monitored; unlike it, a long tail of keys seen once each (zkbench's
/// 10,000 keys, every one its own prefix) does not evict on every request: measured by
/// `cargo bench --bench observe`, the replacement that cost ~100 ns per request (min
/// scan, index remove and insert, path copy) now runs a few times in a hundred.
///
/// Each entry keeps its key's hash, so replacing one neither clones nor re-hashes the
/// old key.
#[derive(Debug, Clone)]
pub struct TopK<Q: SketchKey> {
    index: IdMap,
    entries: Vec<(Q, Counts)>,
    hashes: Vec<u64>,
    filter: Box<[u64; FILTER]>,
    /// A lower bound of the least monitored count (exact after each replacement;
    /// monitored counts only grow in between).
    floor: u64,
}

impl<Q: SketchKey> Default for TopK<Q> {
    fn default() -> Self {
        TopK {
            index: IdMap::with_capacity_and_hasher(2 * K, Default::default()),
            entries: Vec::with_capacity(K),
            hashes: Vec::with_capacity(K),
            filter: Box::new([0; FILTER]),
            floor: 0,
        }
    }
}

impl<Q: SketchKey> TopK<Q> {
    /// The counters of the key of hash `h`, if it is counted.
    fn get_mut(&mut self, h: u64) -> Option<&mut Counts> {
        let i = *self.index.get(&h)?;
        Some(&mut self.entries[i].1)
    }

    /// The filter counter of hash `h` (its high bits: the index map uses the low).
    fn bucket(h: u64) -> usize {
        (h >> 56) as usize % FILTER
    }

    /// Adds `c` to the key of hash `h` (made by `make` when it enters the sketch,
    /// with the storage of the key it replaces, if any).
    fn add(&mut self, h: u64, c: &Counts, make: impl FnOnce(Option<Q>) -> Q) {
        if let Some(i) = self.index.get(&h) {
            self.entries[*i].1.add(c);
            return;
        }
        if self.entries.len() < K {
            self.index.insert(h, self.entries.len());
            self.entries.push((make(None), *c));
            self.hashes.push(h);
            return;
        }
        let b = Self::bucket(h);
        let alpha = self.filter[b];
        if alpha + c.ops <= self.floor {
            self.filter[b] = alpha + c.ops;
            return;
        }
        // The cached floor may be stale (monitored counts grew): find the least now.
        let mut i = 0;
        let mut floor = u64::MAX;
        for (j, (_, c)) in self.entries.iter().enumerate() {
            if c.ops < floor {
                floor = c.ops;
                i = j;
            }
        }
        self.floor = floor;
        if alpha + c.ops <= floor {
            self.filter[b] = alpha + c.ops;
            return;
        }
        let old_h = self.hashes[i];
        // Every filter counter is at most the floor (a key that would pass it enters
        // instead), so this only raises the evicted key's counter: no key in that
        // bucket can be under-counted when it enters later.
        let ob = Self::bucket(old_h);
        self.filter[ob] = self.filter[ob].max(floor);
        self.index.remove(&old_h);
        self.index.insert(h, i);
        self.hashes[i] = h;
        let mut n = *c;
        n.ops += alpha;
        n.error = alpha;
        // The old key's storage is handed over (a path's String buffer is reused):
        // taken out by swap_remove, the new entry pushed, and swapped back into place,
        // so every other entry keeps its index.
        let (old, _) = self.entries.swap_remove(i);
        self.entries.push((make(Some(old)), n));
        let last = self.entries.len() - 1;
        self.entries.swap(i, last);
    }

    pub fn entries(&self) -> &[(Q, Counts)] {
        &self.entries
    }
}

/// The path prefix a request counts under: its first two components.
pub fn prefix(path: &str) -> &str {
    let mut slashes = 0;
    for (i, b) in path.bytes().enumerate() {
        if b == b'/' {
            slashes += 1;
            if slashes == 3 {
                return &path[..i];
            }
        }
    }
    path
}

/// Namespaces (first path components) whose bytes are summarised, per shard: ZooKeeper
/// keeps every one; beyond this many new ones are not counted.
pub const MAX_NAMESPACES: usize = 64;

/// count, sum, min, max of bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteSummary {
    pub count: u64,
    pub sum: u64,
    pub min: u64,
    pub max: u64,
}

impl ByteSummary {
    fn record(&mut self, n: u64) {
        self.min = if self.count == 0 { n } else { self.min.min(n) };
        self.max = self.max.max(n);
        self.count += 1;
        self.sum += n;
    }

    fn merge(&mut self, o: &ByteSummary) {
        if o.count == 0 {
            return;
        }
        self.min = if self.count == 0 {
            o.min
        } else {
            self.min.min(o.min)
        };
        self.max = self.max.max(o.max);
        self.count += o.count;
        self.sum += o.sum;
    }
}

/// The top namespace of `path` (`/app/x` -> `app`), as ZooKeeper's
/// `PathUtils.getTopNamespace`; `None` for `/`.
pub fn top_namespace(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let end = rest.bytes().position(|b| b == b'/').unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// One shard's sketches.
#[derive(Debug, Clone, Default)]
pub struct Load {
    /// ZooKeeper's `read_per_namespace` and `write_per_namespace`: bytes (path and
    /// data) per read and per write, by top namespace, in order of first use.
    pub namespaces: Vec<(String, [ByteSummary; 2])>,
    /// Namespace hash -> index in `namespaces` (no SipHash, no allocation on the
    /// request path).
    ns_index: IdMap,
    /// The namespace used last: most requests name the one before them (checked by a
    /// byte comparison, without hashing).
    ns_last: usize,
    pub ops: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub watches: u64,
    pub sessions: TopK<i64>,
    pub clients: TopK<IpAddr>,
    pub paths: TopK<String>,
}

impl Load {
    /// A connection's counts since it was last folded in: its session and client
    /// address get them (the request path counts per connection, in plain fields).
    pub fn fold(&mut self, session: i64, ip: IpAddr, c: &Counts) {
        if c.is_zero() {
            return;
        }
        self.ops += c.ops;
        self.bytes_in += c.bytes_in;
        self.bytes_out += c.bytes_out;
        self.watches += c.watches;
        self.sessions.add(session.hash64(), c, |_| session);
        self.clients.add(ip.hash64(), c, |_| ip);
    }

    /// A request of `bytes` on `path`: its prefix is counted.
    pub fn path_request(&mut self, path: &str, bytes: usize) {
        let p = prefix(path);
        let c = Counts {
            ops: 1,
            bytes_in: bytes as u64,
            ..Counts::default()
        };
        self.paths.add(hash_bytes(p.as_bytes()), &c, |old| {
            let mut s = old.unwrap_or_default();
            s.clear();
            s.push_str(p);
            s
        });
    }

    /// A reply of `bytes` for `path`, counted if its prefix is counted.
    pub fn path_response(&mut self, path: &str, bytes: usize) {
        if let Some(c) = self.paths.get_mut(hash_bytes(prefix(path).as_bytes())) {
            c.bytes_out += bytes as u64;
        }
    }

    /// A watch fired for `path`, counted if its prefix is counted.
    pub fn path_watch(&mut self, path: &str) {
        if let Some(c) = self.paths.get_mut(hash_bytes(prefix(path).as_bytes())) {
            c.watches += 1;
        }
    }

    /// Bytes of a read (0) or a write (1) under `path`'s namespace.
    pub fn namespace_bytes(&mut self, path: &str, write: bool, bytes: usize) {
        let Some(ns) = top_namespace(path) else {
            return;
        };
        let n = (path.len() + bytes) as u64;
        let i = match self.namespaces.get(self.ns_last) {
            Some((last, _)) if last == ns => self.ns_last,
            _ => match self.ns_index.get(&hash_bytes(ns.as_bytes())) {
                Some(&i) => i,
                None if self.namespaces.len() < MAX_NAMESPACES => {
                    self.ns_index
                        .insert(hash_bytes(ns.as_bytes()), self.namespaces.len());
                    self.namespaces
                        .push((ns.to_string(), [ByteSummary::default(); 2]));
                    self.namespaces.len() - 1
                }
                None => return,
            },
        };
        self.ns_last = i;
        self.namespaces[i].1[write as usize].record(n);
    }
}

/// A connection's counts not yet folded into the sketches.
#[derive(Debug, Clone, Copy)]
pub struct ConnCounts {
    pub session: i64,
    pub ip: IpAddr,
    pub counts: Counts,
}

/// The shards' sketches merged: per key, the sums over shards, heaviest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    /// By namespace, sorted: (reads, writes).
    pub namespaces: Vec<(String, ByteSummary, ByteSummary)>,
    pub ops: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub watches: u64,
    pub sessions: Vec<(String, Counts)>,
    pub clients: Vec<(String, Counts)>,
    pub paths: Vec<(String, Counts)>,
}

fn merge<Q: SketchKey>(parts: &[&TopK<Q>], name: impl Fn(&Q) -> String) -> Vec<(String, Counts)> {
    let mut m: HashMap<String, Counts> = HashMap::new();
    for p in parts {
        for (k, c) in p.entries() {
            m.entry(name(k)).or_default().add(c);
        }
    }
    let mut v: Vec<(String, Counts)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.ops.cmp(&a.1.ops).then(a.0.cmp(&b.0)));
    v.truncate(K);
    v
}

/// Merges the shards' loads.
pub fn merged(loads: &[&Load]) -> Merged {
    Merged {
        namespaces: merge_namespaces(loads.iter().map(|l| l.namespaces.as_slice())),
        ops: loads.iter().map(|l| l.ops).sum(),
        bytes_in: loads.iter().map(|l| l.bytes_in).sum(),
        bytes_out: loads.iter().map(|l| l.bytes_out).sum(),
        watches: loads.iter().map(|l| l.watches).sum(),
        sessions: merge(
            &loads.iter().map(|l| &l.sessions).collect::<Vec<_>>(),
            |s| format!("0x{:x}", *s as u64),
        ),
        clients: merge(
            &loads.iter().map(|l| &l.clients).collect::<Vec<_>>(),
            |ip| ip.to_string(),
        ),
        paths: merge(&loads.iter().map(|l| &l.paths).collect::<Vec<_>>(), |p| {
            p.clone()
        }),
    }
}

/// Shards' namespace summaries merged by namespace, in name order: (namespace, reads,
/// writes).
pub fn merge_namespaces<'a>(
    shards: impl IntoIterator<Item = &'a [(String, [ByteSummary; 2])]>,
) -> Vec<(String, ByteSummary, ByteSummary)> {
    let mut ns: std::collections::BTreeMap<&str, [ByteSummary; 2]> = Default::default();
    for l in shards {
        for (k, v) in l {
            let e = ns.entry(k.as_str()).or_default();
            e[0].merge(&v[0]);
            e[1].merge(&v[1]);
        }
    }
    ns.into_iter()
        .map(|(k, [r, w])| (k.to_string(), r, w))
        .collect()
}

impl Merged {
    /// The four-letter word `load`: totals, then one line per key:
    /// `kind TAB key TAB ops TAB error TAB bytes_in TAB bytes_out TAB watches`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "ops\t{}", self.ops);
        let _ = writeln!(out, "bytes_in\t{}", self.bytes_in);
        let _ = writeln!(out, "bytes_out\t{}", self.bytes_out);
        let _ = writeln!(out, "watches\t{}", self.watches);
        for (kind, v) in [
            ("session", &self.sessions),
            ("client", &self.clients),
            ("path", &self.paths),
        ] {
            for (k, c) in v {
                let _ = writeln!(
                    out,
                    "{kind}\t{k}\t{}\t{}\t{}\t{}\t{}",
                    c.ops, c.error, c.bytes_in, c.bytes_out, c.watches
                );
            }
        }
        out
    }

    pub fn json(&self) -> Json {
        let list = |v: &Vec<(String, Counts)>| {
            Json::Arr(
                v.iter()
                    .map(|(k, c)| {
                        Json::obj([
                            ("key", Json::str(k.clone())),
                            ("ops", Json::Int(c.ops as i64)),
                            ("error", Json::Int(c.error as i64)),
                            ("bytes_in", Json::Int(c.bytes_in as i64)),
                            ("bytes_out", Json::Int(c.bytes_out as i64)),
                            ("watches", Json::Int(c.watches as i64)),
                        ])
                    })
                    .collect(),
            )
        };
        Json::obj([
            ("ops", Json::Int(self.ops as i64)),
            ("bytes_in", Json::Int(self.bytes_in as i64)),
            ("bytes_out", Json::Int(self.bytes_out as i64)),
            ("watches", Json::Int(self.watches as i64)),
            ("sessions", list(&self.sessions)),
            ("clients", list(&self.clients)),
            ("paths", list(&self.paths)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_the_first_two_components() {
        assert_eq!(prefix("/a/b/c/d"), "/a/b");
        assert_eq!(prefix("/a/b"), "/a/b");
        assert_eq!(prefix("/a"), "/a");
        assert_eq!(prefix("/"), "/");
    }

    #[test]
    fn a_heavy_key_survives_a_flood_of_light_ones() {
        let mut l = Load::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let one = Counts {
            ops: 1,
            bytes_in: 10,
            ..Counts::default()
        };
        for i in 0..100_000i64 {
            // One hot session in five requests; the rest are all different.
            let s = if i % 5 == 0 { 7 } else { 1000 + i };
            let p = if i % 5 == 0 {
                "/hot/x".to_string()
            } else {
                format!("/cold/{i}/x")
            };
            l.fold(s, ip, &one);
            l.path_request(&p, 10);
        }
        l.path_response("/hot/x/y", 5);
        l.path_watch("/hot/x");
        assert_eq!(l.sessions.entries().len(), K);
        assert_eq!(l.paths.entries().len(), K);
        let m = merged(&[&l]);
        assert_eq!(m.sessions[0].0, "0x7");
        assert!(m.sessions[0].1.ops >= 20_000);
        assert_eq!(m.paths[0].0, "/hot/x");
        assert_eq!(m.paths[0].1.bytes_out, 5);
        assert_eq!(m.paths[0].1.watches, 1);
        assert_eq!(m.clients.len(), 1);
        assert_eq!(m.ops, 100_000);
        let text = m.text();
        assert!(text.starts_with("ops\t100000\n"));
        assert!(text.contains("\npath\t/hot/x\t"));
    }

    #[test]
    fn monitored_counts_bound_the_true_counts() {
        // A skewed stream over 2,000 keys (a few heavy, a long tail), in varying
        // weights as folds send them: every monitored key's count is at least its true
        // count, and its count less its error at most that (space-saving's guarantee,
        // which the filter must keep), and every key above 1/K of the total is kept.
        let mut t: TopK<i64> = TopK::default();
        let mut truth: HashMap<i64, u64> = HashMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut total = 0;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = if x.is_multiple_of(4) {
                (x >> 8) % 4
            } else {
                100 + (x >> 8) % 2_000
            } as i64;
            let w = 1 + i % 3;
            total += w;
            *truth.entry(key).or_default() += w;
            let c = Counts {
                ops: w,
                ..Counts::default()
            };
            t.add(key.hash64(), &c, |_| key);
        }
        for (k, c) in t.entries() {
            let real = truth[k];
            assert!(c.ops >= real, "key {k}: {} < true {real}", c.ops);
            assert!(c.ops - c.error <= real, "key {k}: {c:?} vs true {real}");
        }
        for (k, n) in &truth {
            if *n > total / K as u64 {
                assert!(
                    t.entries().iter().any(|(q, _)| q == k),
                    "heavy key {k} kept"
                );
            }
        }
    }

    #[test]
    fn hashes_differ_for_near_keys() {
        assert_ne!(hash_bytes(b"/a/b"), hash_bytes(b"/a/c"));
        assert_ne!(hash_bytes(b"/abcdefgh"), hash_bytes(b"/abcdefgi"));
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
    }
}
