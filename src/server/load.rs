//! Load attribution: who drives a server's load. Each shard counts, for every request,
//! ops and bytes in and out, and the watches fired, per session, per client address and
//! per path prefix (the first two components: `/app/locks/lock-7` counts under
//! `/app/locks`), in bounded top-K sketches (Metwally et al.'s space-saving: K counters
//! per dimension, the least-counted one replaced by a newcomer, which inherits its count
//! as its possible error). Memory is constant whatever the number of sessions or paths;
//! every key whose share of the ops exceeds 1/K is kept.
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

/// A space-saving top-K sketch: at most [`K`] counters; a newcomer replaces the least
/// counted key and inherits its count (as its `error`).
#[derive(Debug, Clone)]
pub struct TopK<Q: SketchKey> {
    index: IdMap,
    entries: Vec<(Q, Counts)>,
}

impl<Q: SketchKey> Default for TopK<Q> {
    fn default() -> Self {
        TopK {
            index: IdMap::with_capacity_and_hasher(2 * K, Default::default()),
            entries: Vec::with_capacity(K),
        }
    }
}

impl<Q: SketchKey> TopK<Q> {
    /// The counters of the key of hash `h`, if it is counted.
    fn get_mut(&mut self, h: u64) -> Option<&mut Counts> {
        let i = *self.index.get(&h)?;
        Some(&mut self.entries[i].1)
    }

    /// Adds `c` to the key of hash `h` (made by `make` when it enters the sketch,
    /// replacing the least counted one when all K are taken: space-saving).
    fn add(&mut self, h: u64, c: &Counts, make: impl FnOnce(Option<Q>) -> Q) {
        if let Some(i) = self.index.get(&h) {
            self.entries[*i].1.add(c);
            return;
        }
        if self.entries.len() < K {
            self.index.insert(h, self.entries.len());
            self.entries.push((make(None), *c));
            return;
        }
        let (i, _) = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, c))| c.ops)
            .expect("K > 0");
        let floor = self.entries[i].1.ops;
        let old = self.entries[i].0.clone();
        self.index.remove(&old.hash64());
        self.index.insert(h, i);
        let mut n = *c;
        n.ops += floor;
        n.error = floor;
        // The old key's storage is handed over (a path's String buffer is reused).
        let (k, _) = std::mem::replace(&mut self.entries[i], (old, Counts::default()));
        self.entries[i] = (make(Some(k)), n);
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
    let ns = rest.split('/').next().unwrap_or("");
    (!ns.is_empty()).then_some(ns)
}

/// One shard's sketches.
#[derive(Debug, Clone, Default)]
pub struct Load {
    /// ZooKeeper's `read_per_namespace` and `write_per_namespace`: bytes (path and
    /// data) per read and per write, by top namespace.
    /// Keyed by the namespace's hash (no SipHash, no allocation on the request path).
    pub namespaces:
        HashMap<u64, (String, [ByteSummary; 2]), std::hash::BuildHasherDefault<IdHasher>>,
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
        let h = hash_bytes(ns.as_bytes());
        if let Some((_, v)) = self.namespaces.get_mut(&h) {
            v[write as usize].record(n);
        } else if self.namespaces.len() < MAX_NAMESPACES {
            let mut v = [ByteSummary::default(); 2];
            v[write as usize].record(n);
            self.namespaces.insert(h, (ns.to_string(), v));
        }
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
    let mut ns: std::collections::BTreeMap<String, [ByteSummary; 2]> = Default::default();
    for l in loads {
        for (k, v) in l.namespaces.values() {
            let e = ns.entry(k.clone()).or_default();
            e[0].merge(&v[0]);
            e[1].merge(&v[1]);
        }
    }
    Merged {
        namespaces: ns.into_iter().map(|(k, [r, w])| (k, r, w)).collect(),
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
    fn hashes_differ_for_near_keys() {
        assert_ne!(hash_bytes(b"/a/b"), hash_bytes(b"/a/c"));
        assert_ne!(hash_bytes(b"/abcdefgh"), hash_bytes(b"/abcdefgi"));
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
    }
}
