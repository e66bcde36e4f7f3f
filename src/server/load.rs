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
use std::hash::Hash;
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
}

/// A space-saving top-K sketch keyed by `Q`.
#[derive(Debug, Clone)]
pub struct TopK<Q: Eq + Hash + Clone> {
    index: HashMap<Q, usize>,
    entries: Vec<(Q, Counts)>,
}

impl<Q: Eq + Hash + Clone> Default for TopK<Q> {
    fn default() -> Self {
        TopK {
            index: HashMap::with_capacity(K),
            entries: Vec::with_capacity(K),
        }
    }
}

impl<Q: Eq + Hash + Clone> TopK<Q> {
    /// The entry of `key`, entering it (space-saving) when it is new: `ops` > 0
    /// requests admit a newcomer; other events (bytes out, watches) only update keys
    /// already counted.
    fn slot<B>(&mut self, key: &B, admit: bool) -> Option<&mut Counts>
    where
        Q: std::borrow::Borrow<B>,
        B: Hash + Eq + ?Sized + ToOwned<Owned = Q>,
    {
        if let Some(&i) = self.index.get(key) {
            return Some(&mut self.entries[i].1);
        }
        if !admit {
            return None;
        }
        if self.entries.len() < K {
            self.index.insert(key.to_owned(), self.entries.len());
            self.entries.push((key.to_owned(), Counts::default()));
            return Some(&mut self.entries.last_mut().expect("just pushed").1);
        }
        let (i, _) = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, c))| c.ops)
            .expect("K > 0");
        let floor = self.entries[i].1.ops;
        let old = self.entries[i].0.clone();
        self.index.remove::<Q>(&old);
        self.index.insert(key.to_owned(), i);
        self.entries[i] = (
            key.to_owned(),
            Counts {
                ops: floor,
                error: floor,
                ..Counts::default()
            },
        );
        Some(&mut self.entries[i].1)
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
    pub namespaces: HashMap<String, [ByteSummary; 2]>,
    pub ops: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub watches: u64,
    pub sessions: TopK<i64>,
    pub clients: TopK<IpAddr>,
    pub paths: TopK<String>,
}

impl Load {
    /// A request of `bytes` (its frame) from `session` at `ip`, on `path` if it has one.
    pub fn request(&mut self, session: i64, ip: IpAddr, path: Option<&str>, bytes: usize) {
        let b = bytes as u64;
        self.ops += 1;
        self.bytes_in += b;
        let bump = |c: Option<&mut Counts>| {
            if let Some(c) = c {
                c.ops += 1;
                c.bytes_in += b;
            }
        };
        bump(self.sessions.slot(&session, true));
        bump(self.clients.slot(&ip, true));
        bump(self.paths.slot(prefix(path.unwrap_or("(none)")), true));
    }

    /// A reply of `bytes` to `session` at `ip` (for `path`, when known).
    pub fn response(&mut self, session: i64, ip: IpAddr, path: Option<&str>, bytes: usize) {
        let b = bytes as u64;
        self.bytes_out += b;
        if let Some(c) = self.sessions.slot(&session, false) {
            c.bytes_out += b;
        }
        if let Some(c) = self.clients.slot(&ip, false) {
            c.bytes_out += b;
        }
        if let Some(p) = path {
            if let Some(c) = self.paths.slot(prefix(p), false) {
                c.bytes_out += b;
            }
        }
    }

    /// Bytes of a read (0) or a write (1) under `path`'s namespace.
    pub fn namespace_bytes(&mut self, path: &str, write: bool, bytes: usize) {
        let Some(ns) = top_namespace(path) else {
            return;
        };
        let n = (path.len() + bytes) as u64;
        if let Some(v) = self.namespaces.get_mut(ns) {
            v[write as usize].record(n);
        } else if self.namespaces.len() < MAX_NAMESPACES {
            let mut v = [ByteSummary::default(); 2];
            v[write as usize].record(n);
            self.namespaces.insert(ns.to_string(), v);
        }
    }

    /// A watch of `session` at `ip` fired for `path`.
    pub fn watch_fired(&mut self, session: i64, ip: IpAddr, path: &str) {
        self.watches += 1;
        if let Some(c) = self.sessions.slot(&session, false) {
            c.watches += 1;
        }
        if let Some(c) = self.clients.slot(&ip, false) {
            c.watches += 1;
        }
        if let Some(c) = self.paths.slot(prefix(path), false) {
            c.watches += 1;
        }
    }
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

fn merge<Q: Eq + Hash + Clone>(
    parts: &[&TopK<Q>],
    name: impl Fn(&Q) -> String,
) -> Vec<(String, Counts)> {
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
        for (k, v) in &l.namespaces {
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
        for i in 0..100_000i64 {
            // One hot session in five requests; the rest are all different.
            let s = if i % 5 == 0 { 7 } else { 1000 + i };
            let p = if i % 5 == 0 {
                "/hot/x".to_string()
            } else {
                format!("/cold/{i}/x")
            };
            l.request(s, ip, Some(&p), 10);
        }
        assert_eq!(l.sessions.entries().len(), K);
        assert_eq!(l.paths.entries().len(), K);
        let m = merged(&[&l]);
        assert_eq!(m.sessions[0].0, "0x7");
        assert!(m.sessions[0].1.ops >= 20_000);
        assert_eq!(m.paths[0].0, "/hot/x");
        assert_eq!(m.ops, 100_000);
        let text = m.text();
        assert!(text.starts_with("ops\t100000\n"));
        assert!(text.contains("\npath\t/hot/x\t"));
    }
}
