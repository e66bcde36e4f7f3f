//! The data tree: znodes, the session table and its ephemeral index, container and TTL
//! sets, and the counters and digest that describe them. It is persistent (structurally
//! shared, built on `imbl`): `clone()` is O(1) and a clone is a frozen snapshot, so the
//! committed root of any zxid, the sequencer's speculative tree and a multi's scratch
//! tree are all just clones.
//!
//! The tree applies validated txns with ZooKeeper's exact Stat rules (`DataTree.java`,
//! `DataNode.copyStat`). It must not validate requests (that is `prep`), read the clock
//! (time comes in the txn), know about connections or watches (it returns triggers), or
//! do any I/O.
//!
//! Stored versus visible Stat: like ZooKeeper, a node stores `cversion` as the number of
//! children ever created under it (the sequential suffix is taken from it), and shows
//! clients `2 * cversion - numChildren`, the number of child creates plus deletes. And
//! containers and TTL nodes show `ephemeralOwner` 0 to clients.

pub mod path;

use crate::proto::{perms, Acl, EventType, Id, Stat, CONTAINER_EPHEMERAL_OWNER, TTL_MASK};
use crate::txn::{Applied, OpResult, Trigger, Txn, TxnOp};
use bytes::Bytes;
use imbl::{OrdMap, OrdSet};
use std::sync::Arc;

pub use path::{parent_of, split_parent, validate_path, validate_sequential_prefix, InvalidPath};

/// A shared, immutable ACL list: identical lists are stored once where the tree can tell.
pub type AclList = Arc<Vec<Acl>>;

/// Bits 40..56 of an extended `ephemeralOwner` (`EphemeralType.RESERVED_BITS_MASK`):
/// zero for TTL, the only extended type.
const EXTENDED_RESERVED_BITS: i64 = 0x00ff_ff00_0000_0000;

/// The TTL value bits of a TTL node's `ephemeralOwner` (`EXTENDED_FEATURE_VALUE_MASK`).
const TTL_VALUE_BITS: i64 = !(TTL_MASK | EXTENDED_RESERVED_BITS);

const _: () = assert!(TTL_VALUE_BITS == crate::proto::MAX_TTL_MS);

/// What a node's `ephemeralOwner` makes it (`EphemeralType.get`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Persistent,
    /// Owned by this session; deleted when it closes.
    Ephemeral(i64),
    Container,
    /// Deleted once unmodified and childless for this many milliseconds.
    Ttl(i64),
}

impl NodeKind {
    /// Classifies an `ephemeralOwner` as ZooKeeper does with extended types enabled.
    ///
    /// RingKeeper classifies the same way whether or not TTL nodes may be created, so the
    /// tree never depends on configuration. The cost: a session id whose high byte is 0xFF
    /// and whose next 16 bits are zero would read as a TTL; session ids carry the server
    /// id in the high byte, which is why ZooKeeper requires server ids <= 254 for
    /// extended types, and why RingKeeper requires it always.
    pub fn of_owner(owner: i64) -> NodeKind {
        if owner == 0 {
            NodeKind::Persistent
        } else if owner == CONTAINER_EPHEMERAL_OWNER {
            NodeKind::Container
        } else if owner & TTL_MASK == TTL_MASK && owner & EXTENDED_RESERVED_BITS == 0 {
            NodeKind::Ttl(owner & TTL_VALUE_BITS)
        } else {
            NodeKind::Ephemeral(owner)
        }
    }
}

/// The `ephemeralOwner` that encodes a TTL node (`EphemeralType.TTL.toEphemeralOwner`).
///
/// # Panics
/// If `ttl_ms` is not in `1..=MAX_TTL_MS`; `prep` rejects those with BADARGUMENTS.
pub fn ttl_owner(ttl_ms: i64) -> i64 {
    assert!(
        ttl_ms > 0 && ttl_ms <= crate::proto::MAX_TTL_MS,
        "ttl {ttl_ms} out of range"
    );
    TTL_MASK | ttl_ms
}

/// One znode: its data, ACL, persisted stat fields and children's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Znode {
    /// `None` is ZooKeeper's null data, distinct from empty data.
    pub data: Option<Bytes>,
    pub acl: AclList,
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    /// Stored cversion: children ever created here (see the module header).
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
    /// Children's names (the last path segment), sorted.
    pub children: Children,
}

/// A znode's children, as their full paths: the same `Arc` as the child's key in the
/// tree, so a child costs no second string, and sorted by full path is sorted by name
/// (they share the parent's prefix). Most znodes are leaves, and an empty persistent set
/// still allocates a whole B-tree node (about 1.5 KiB), so a leaf holds no set at all.
/// Measured with `examples/tree_memory.rs` (100k znodes of 100 bytes): 2920 bytes per
/// znode with an empty set per leaf and a hash trie of paths, 552 with these sets
/// elided and an ordered map, less again with shared child paths.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Children(Option<OrdSet<Arc<str>>>);

impl Children {
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The children's full paths, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().flat_map(|s| s.iter())
    }

    /// The children's names (last path segments), sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.iter()
            .map(|p| p.rsplit_once('/').map_or(&**p, |(_, name)| name))
    }

    pub fn contains(&self, path: &str) -> bool {
        self.0.as_ref().is_some_and(|s| s.contains(path))
    }

    pub fn insert(&mut self, path: Arc<str>) {
        self.0.get_or_insert_with(OrdSet::new).insert(path);
    }

    /// Removes the child at `path`; the set is dropped with its last child. Returns
    /// whether it was there.
    pub fn remove(&mut self, path: &str) -> bool {
        let Some(set) = self.0.as_mut() else {
            return false;
        };
        let removed = set.remove(path).is_some();
        if set.is_empty() {
            self.0 = None;
        }
        removed
    }
}

impl Znode {
    fn fresh(acl: AclList) -> Znode {
        Znode {
            data: Some(Bytes::new()),
            acl,
            czxid: 0,
            mzxid: 0,
            ctime: 0,
            mtime: 0,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            pzxid: 0,
            children: Children::default(),
        }
    }

    pub fn kind(&self) -> NodeKind {
        NodeKind::of_owner(self.ephemeral_owner)
    }

    pub fn data_len(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.len())
    }

    /// The Stat clients see (`DataNode.copyStat`).
    pub fn stat(&self) -> Stat {
        let num_children = self.children.len() as i32;
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            // Java int arithmetic: wraps rather than failing on absurd counts.
            cversion: self.cversion.wrapping_mul(2).wrapping_sub(num_children),
            aversion: self.aversion,
            ephemeral_owner: match self.kind() {
                NodeKind::Ephemeral(s) => s,
                _ => 0,
            },
            data_length: self.data_len() as i32,
            num_children,
            pzxid: self.pzxid,
        }
    }
}

/// The persistent data tree. See the module header.
///
/// Owned by the sequencer thread (the only writer); clones travel to shards as read
/// views and to the snapshotter. All of it is `Send + Sync` and immutable once shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataTree {
    /// Every znode by full path; the root is "/".
    nodes: rpds::HashTrieMapSync<Arc<str>, Arc<Znode>>,
    /// Live sessions: id -> negotiated timeout.
    sessions: OrdMap<i64, i32>,
    /// Session -> paths of its ephemerals. A session with none has no entry.
    ephemerals: OrdMap<i64, OrdSet<Arc<str>>>,
    containers: OrdSet<Arc<str>>,
    ttls: OrdSet<Arc<str>>,
    ephemeral_count: usize,
    /// Sum over nodes of path length plus data length (`DataTree.approximateDataSize`).
    data_size: i64,
    /// Wrapping sum of every node's and session's hash; see [`DataTree::digest`].
    digest: u64,
    /// The zxid of the last applied txn (0 for a fresh tree).
    zxid: i64,
    /// `world:anyone` with all permissions, shared by every node that carries it.
    open_acl: AclList,
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<DataTree>();
};

/// `ZooDefs.Ids.OPEN_ACL_UNSAFE`.
pub fn open_acl_unsafe() -> Vec<Acl> {
    vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

/// `ZooDefs.Ids.READ_ACL_UNSAFE`, the ACL of /zookeeper/config.
pub fn read_acl_unsafe() -> Vec<Acl> {
    vec![Acl {
        perms: perms::READ,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

/// The reserved nodes a fresh ZooKeeper has; clients may not delete them
/// (`DataTree.isSpecialPath`).
pub const SPECIAL_PATHS: [&str; 4] = ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"];

impl Default for DataTree {
    fn default() -> Self {
        DataTree::new()
    }
}

impl DataTree {
    /// The tree of a fresh ZooKeeper 3.8/3.9 standalone server: "/", "/zookeeper",
    /// "/zookeeper/quota" and "/zookeeper/config" (ACL world:anyone READ, aversion -1,
    /// because ZooKeeper sets it with setACL version -1), all with empty (not null) data
    /// and zero stats. Checked against a real 3.8 server: `srvr` says "Node count: 5",
    /// `mntr` says approximate_data_size 44, "/" shows cversion -1, "/zookeeper" -2.
    pub fn new() -> DataTree {
        let open_acl: AclList = Arc::new(open_acl_unsafe());
        let mut t = DataTree {
            nodes: rpds::HashTrieMap::new_sync(),
            sessions: OrdMap::new(),
            ephemerals: OrdMap::new(),
            containers: OrdSet::new(),
            ttls: OrdSet::new(),
            ephemeral_count: 0,
            data_size: 0,
            digest: 0,
            zxid: 0,
            open_acl: open_acl.clone(),
        };
        let mut root = Znode::fresh(open_acl.clone());
        root.children.insert("/zookeeper".into());
        let mut zookeeper = Znode::fresh(open_acl.clone());
        zookeeper.children.insert("/zookeeper/quota".into());
        zookeeper.children.insert("/zookeeper/config".into());
        let quota = Znode::fresh(open_acl.clone());
        let mut config = Znode::fresh(Arc::new(read_acl_unsafe()));
        config.aversion = -1;
        for (p, n) in [
            ("/", root),
            ("/zookeeper", zookeeper),
            ("/zookeeper/quota", quota),
            ("/zookeeper/config", config),
        ] {
            t.data_size += p.len() as i64 + n.data_len() as i64;
            t.put(&Arc::from(p), n);
        }
        t
    }

    // ----- reads -----

    /// The node at `path`. "" names the root too, as in ZooKeeper's node map.
    pub fn get(&self, path: &str) -> Option<&Znode> {
        let key = if path.is_empty() { "/" } else { path };
        self.nodes.get(key).map(|n| &**n)
    }

    pub fn exists(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// The Stat clients see for `path`.
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.get(path).map(Znode::stat)
    }

    /// Data and Stat, as getData answers them.
    pub fn data(&self, path: &str) -> Option<(Option<Bytes>, Stat)> {
        self.get(path).map(|n| (n.data.clone(), n.stat()))
    }

    /// ACL and Stat, as getACL answers them (before any redaction, see `acl`).
    pub fn acl(&self, path: &str) -> Option<(AclList, Stat)> {
        self.get(path).map(|n| (n.acl.clone(), n.stat()))
    }

    /// Children's names, sorted. (ZooKeeper's order is its HashSet's, which clients must
    /// not rely on; sorted is one valid order and deterministic.)
    pub fn children(&self, path: &str) -> Option<Vec<String>> {
        self.get(path)
            .map(|n| n.children.names().map(str::to_string).collect())
    }

    /// getAllChildrenNumber: every descendant of `path`, not counting `path` itself.
    /// For "/" that excludes the root only, as ZooKeeper's `nodes.size() - 2` does.
    pub fn all_children_number(&self, path: &str) -> Option<usize> {
        let node = self.get(path)?;
        if path == "/" {
            return Some(self.nodes.size() - 1);
        }
        // Bound: each node is visited once, so the walk ends after nodes.len() steps.
        let mut count = 0usize;
        let mut stack: Vec<Arc<str>> = node.children.iter().cloned().collect();
        while let Some(p) = stack.pop() {
            count += 1;
            assert!(count <= self.nodes.size(), "cycle under {path}");
            let n = self
                .get(&p)
                .unwrap_or_else(|| panic!("child {p} listed but missing"));
            stack.extend(n.children.iter().cloned());
        }
        Some(count)
    }

    /// The session's ephemerals, sorted (also what a closeSession txn lists).
    pub fn ephemerals_of(&self, session_id: i64) -> Vec<String> {
        self.ephemerals
            .get(&session_id)
            .map(|s| s.iter().map(|p| p.to_string()).collect())
            .unwrap_or_default()
    }

    /// getEphemerals: the session's ephemerals whose path starts with `prefix` (a string
    /// prefix, not a path prefix, as in `FinalRequestProcessor`); a blank prefix or "/"
    /// (after trimming) means all of them.
    pub fn ephemerals_with_prefix(&self, session_id: i64, prefix: &str) -> Vec<String> {
        let t = prefix.trim();
        let mut all = self.ephemerals_of(session_id);
        if !(t.is_empty() || t == "/") {
            all.retain(|p| p.starts_with(prefix));
        }
        all
    }

    /// The negotiated timeout of a live session.
    pub fn session_timeout(&self, session_id: i64) -> Option<i32> {
        self.sessions.get(&session_id).copied()
    }

    /// Live sessions and their timeouts, by id.
    pub fn sessions(&self) -> impl Iterator<Item = (i64, i32)> + '_ {
        self.sessions.iter().map(|(k, v)| (*k, *v))
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// ZooKeeper's node count (`srvr` "Node count", `mntr` zk_znode_count): one more than
    /// the number of znodes, because ZooKeeper's node map holds the root twice, as ""
    /// and "/". A fresh tree says 5.
    pub fn node_count(&self) -> usize {
        self.nodes.size() + 1
    }

    /// The number of znodes, counting the root once.
    pub fn len(&self) -> usize {
        self.nodes.size()
    }

    /// Never true: the root always exists. Present because `len` is.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Sum of path lengths plus data lengths (`mntr` zk_approximate_data_size).
    pub fn approximate_data_size(&self) -> i64 {
        self.data_size
    }

    pub fn ephemeral_count(&self) -> usize {
        self.ephemeral_count
    }

    /// Container nodes' paths, sorted.
    pub fn containers(&self) -> Vec<String> {
        self.containers.iter().map(|p| p.to_string()).collect()
    }

    /// TTL nodes' paths, sorted.
    pub fn ttls(&self) -> Vec<String> {
        self.ttls.iter().map(|p| p.to_string()).collect()
    }

    /// The zxid of the last txn applied (0 for a fresh tree).
    pub fn zxid(&self) -> i64 {
        self.zxid
    }

    /// A digest of the whole content: the wrapping sum of a 64-bit hash of each node
    /// (path, data, ACL, persisted stat) and of each session (id, timeout). Kept up to
    /// date incrementally; equal trees have equal digests on every platform, so replicas
    /// can compare it. Not ZooKeeper's digest (which is CRC32-based and not on the wire).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The digest computed from scratch, in O(n). For tests and for checking a loaded
    /// snapshot; it always equals [`DataTree::digest`] unless the tree is corrupt.
    pub fn recompute_digest(&self) -> u64 {
        let nodes = self
            .nodes
            .iter()
            .fold(0u64, |acc, (p, n)| acc.wrapping_add(node_hash(p, n)));
        self.sessions.iter().fold(nodes, |acc, (id, to)| {
            acc.wrapping_add(session_hash(*id, *to))
        })
    }

    /// Whether the node at `path` may be reaped now (`ContainerManager.getCandidates`):
    /// an empty container that has had children (stored cversion > 0), or that never had
    /// any and was last modified more than `container_max_never_used_ms` ago (0 disables
    /// that rule, ZooKeeper's default); or an empty TTL node whose TTL has passed since
    /// its mtime. "Passed" is strict, as in ZooKeeper (`elapsed > ttl`).
    pub fn is_reap_candidate(
        &self,
        path: &str,
        now_ms: i64,
        container_max_never_used_ms: i64,
    ) -> bool {
        let Some(n) = self.get(path) else {
            return false;
        };
        if !n.children.is_empty() {
            return false;
        }
        let elapsed = now_ms.saturating_sub(n.mtime);
        match n.kind() {
            NodeKind::Container => {
                n.cversion > 0
                    || (container_max_never_used_ms != 0 && elapsed > container_max_never_used_ms)
            }
            NodeKind::Ttl(ttl) => ttl != 0 && elapsed > ttl,
            NodeKind::Persistent | NodeKind::Ephemeral(_) => false,
        }
    }

    /// Every node [`DataTree::is_reap_candidate`] accepts, sorted: what the container
    /// manager turns into deleteContainer requests.
    pub fn reap_candidates(&self, now_ms: i64, container_max_never_used_ms: i64) -> Vec<String> {
        let mut v: Vec<String> = self
            .containers
            .iter()
            .chain(self.ttls.iter())
            .filter(|p| self.is_reap_candidate(p, now_ms, container_max_never_used_ms))
            .map(|p| p.to_string())
            .collect();
        v.sort();
        v
    }

    /// Every znode with its full path, in no particular order: what a snapshot writes.
    /// The iterator borrows this tree; iterate a clone to keep writing meanwhile.
    pub fn nodes(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Znode>)> + '_ {
        self.nodes.iter()
    }

    /// Rebuilds a tree from what a snapshot holds: every znode with its persisted fields
    /// (children sets empty: they are derived from the paths), the live sessions, and
    /// the zxid of the last txn the content reflects. The ephemeral index, container and
    /// TTL sets, counters and digest are derived, so a snapshot cannot disagree with them.
    /// Nodes may come in any order. ACL lists equal to `world:anyone` are shared with the
    /// tree's own; the caller shares any others it can.
    ///
    /// # Errors
    /// A description of the first inconsistency: a duplicate path, a missing root, a
    /// node whose parent is missing or ephemeral, a node given with children, an
    /// ephemeral owned by a session that is not live, a duplicate session. The loader
    /// reports it as corruption.
    pub fn restore(
        zxid: i64,
        nodes: impl IntoIterator<Item = (Arc<str>, Znode)>,
        sessions: impl IntoIterator<Item = (i64, i32)>,
    ) -> Result<DataTree, String> {
        let open_acl: AclList = Arc::new(open_acl_unsafe());
        let mut t = DataTree {
            nodes: rpds::HashTrieMap::new_sync(),
            sessions: OrdMap::new(),
            ephemerals: OrdMap::new(),
            containers: OrdSet::new(),
            ttls: OrdSet::new(),
            ephemeral_count: 0,
            data_size: 0,
            digest: 0,
            zxid,
            open_acl: open_acl.clone(),
        };
        for (id, timeout) in sessions {
            if t.sessions.insert(id, timeout).is_some() {
                return Err(format!("session {id:#x} listed twice"));
            }
            t.digest = t.digest.wrapping_add(session_hash(id, timeout));
        }
        // Staged in a vector with a std index by path (sized once from the iterator's
        // hint: a snapshot passes a vector), so that children can be gathered per parent
        // before any persistent set is built; moved into the persistent map at the end.
        let nodes = nodes.into_iter();
        let hint = nodes.size_hint().0;
        let mut staged: Vec<(Arc<str>, Znode)> = Vec::with_capacity(hint);
        let mut index: std::collections::HashMap<Arc<str>, usize> =
            std::collections::HashMap::with_capacity(hint);
        for (path, mut node) in nodes {
            if !node.children.is_empty() {
                return Err(format!("node {path} given with children"));
            }
            if *node.acl == *open_acl {
                node.acl = open_acl.clone();
            }
            if index.insert(path.clone(), staged.len()).is_some() {
                return Err(format!("node {path} listed twice"));
            }
            staged.push((path, node));
        }
        if !index.contains_key("/") {
            return Err("no root node".to_string());
        }
        // Each parent's children, gathered first and sorted once, then put into its set in
        // ascending order: inserting 1M children one by one in hash order into their
        // parents' B-trees took 3.3 s of a 5.7 s restore (1M znodes, 1000 per parent);
        // an ascending insert touches only the rightmost, cached, path of the B-tree.
        let mut children: Vec<Vec<Arc<str>>> = Vec::new();
        children.resize_with(staged.len(), Vec::new);
        for (path, _) in &staged {
            if &**path == "/" {
                continue;
            }
            let (parent, _) =
                split_parent(path).ok_or_else(|| format!("node {path}: not a path"))?;
            let &p = index
                .get(parent)
                .ok_or_else(|| format!("node {path}: parent {parent} missing"))?;
            if matches!(staged[p].1.kind(), NodeKind::Ephemeral(_)) {
                return Err(format!("node {path}: parent {parent} is ephemeral"));
            }
            children[p].push(path.clone());
        }
        drop(index);
        // Inserted in the hash trie's own order: it takes its 6-bit digits from the low
        // end of the path's hash, so sorting by the bit-reversed hash puts keys that share
        // trie nodes next to each other and each insert finds its path in cache. In hash
        // order the inserts took 1.6 s of the rest (1M znodes), mostly cache misses.
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        let mut order: Vec<(u64, usize)> = staged
            .iter()
            .enumerate()
            .map(|(i, (path, _))| (hasher.hash_one(path).reverse_bits(), i))
            .collect();
        order.sort_unstable();
        t.nodes = rpds::HashTrieMap::new_with_hasher_and_ptr_kind(hasher);
        let mut staged: Vec<Option<(Arc<str>, Znode)>> = staged.into_iter().map(Some).collect();
        for (_, i) in order {
            let (path, mut node) = staged[i].take().expect("each index once");
            let mut kids = std::mem::take(&mut children[i]);
            if !kids.is_empty() {
                // Paths are unique (checked above), so an unstable sort is exact.
                kids.sort_unstable();
                node.children = Children(Some(kids.into_iter().collect()));
            }
            match node.kind() {
                NodeKind::Ephemeral(s) => {
                    if !t.sessions.contains_key(&s) {
                        return Err(format!("ephemeral {path} owned by dead session {s:#x}"));
                    }
                    t.ephemerals.entry(s).or_default().insert(path.clone());
                    t.ephemeral_count += 1;
                }
                NodeKind::Container => {
                    t.containers.insert(path.clone());
                }
                NodeKind::Ttl(_) => {
                    t.ttls.insert(path.clone());
                }
                NodeKind::Persistent => {}
            }
            t.data_size += path.len() as i64 + node.data_len() as i64;
            t.digest = t.digest.wrapping_add(node_hash(&path, &node));
            t.nodes.insert_mut(path, Arc::new(node));
        }
        Ok(t)
    }

    // ----- writes -----

    /// Applies one validated txn and returns the reply's result and the watch triggers.
    ///
    /// Stat rules (ZooKeeper's `DataTree.createNode/deleteNode/setData/setACL`):
    /// - create: the node gets czxid = mzxid = pzxid = zxid, ctime = mtime = time,
    ///   versions 0; the parent's stored cversion goes up by one and its pzxid becomes
    ///   zxid. Triggers NodeCreated on the path, NodeChildrenChanged on the parent.
    /// - delete (and deleteContainer): the parent's pzxid becomes zxid; its stored
    ///   cversion is unchanged (its visible cversion still rises, since it is
    ///   2 * cversion - numChildren). Triggers NodeDeleted, parent NodeChildrenChanged.
    /// - setData: data, mtime = time, mzxid = zxid, version from the txn.
    ///   Triggers NodeDataChanged.
    /// - setACL: the ACL and aversion from the txn; nothing else, no trigger.
    /// - check: nothing. closeSession: deletes the listed ephemerals as deletes do and
    ///   ends the session. multi: its ops in order, all with this txn's zxid and time.
    ///
    /// # Panics
    /// If the txn does not fit the tree: a create whose path exists or whose parent is
    /// missing or ephemeral, a delete of a missing or non-empty node, an ephemeral owned
    /// by a session that is not live, a closeSession whose list differs from the
    /// session's ephemerals, a duplicate or unknown session, a zxid not above the last
    /// one, a nested multi. Each is a sequencer bug or a corrupt log. Panicking rather
    /// than tolerating is deliberate: ZooKeeper tolerates such txns because it replays
    /// logs over *fuzzy* snapshots; RingKeeper snapshots an exact root of one zxid and
    /// replays strictly after it, so a misfit is never expected and must not be hidden.
    pub fn apply(&mut self, txn: &Txn) -> Applied {
        assert!(
            txn.zxid > self.zxid,
            "txn zxid {:#x} not above the tree's {:#x}",
            txn.zxid,
            self.zxid
        );
        let mut triggers = Vec::new();
        let result = self.apply_op(txn, &txn.op, &mut triggers, false);
        self.zxid = txn.zxid;
        Applied { result, triggers }
    }

    fn apply_op(
        &mut self,
        txn: &Txn,
        op: &TxnOp,
        triggers: &mut Vec<Trigger>,
        in_multi: bool,
    ) -> OpResult {
        let (zxid, time) = (txn.zxid, txn.time_ms);
        match op {
            TxnOp::CreateSession { timeout_ms } => {
                let sid = txn.session_id;
                assert!(!in_multi, "createSession inside a multi");
                assert!(
                    !self.sessions.contains_key(&sid),
                    "createSession {sid:#x}: session exists"
                );
                self.sessions.insert(sid, *timeout_ms);
                self.digest = self.digest.wrapping_add(session_hash(sid, *timeout_ms));
                OpResult::Done
            }
            TxnOp::CloseSession { ephemerals } => {
                let sid = txn.session_id;
                assert!(!in_multi, "closeSession inside a multi");
                let timeout = self
                    .sessions
                    .get(&sid)
                    .copied()
                    .unwrap_or_else(|| panic!("closeSession {sid:#x}: no such session"));
                let mut listed = ephemerals.clone();
                listed.sort();
                assert_eq!(
                    listed,
                    self.ephemerals_of(sid),
                    "closeSession {sid:#x}: txn's ephemerals differ from the tree's"
                );
                for p in ephemerals {
                    self.delete_node(p, zxid, triggers);
                }
                self.sessions.remove(&sid);
                self.digest = self.digest.wrapping_sub(session_hash(sid, timeout));
                OpResult::Done
            }
            TxnOp::Create {
                path,
                data,
                acl,
                ephemeral_owner,
            } => {
                let stat = self.create_node(path, data, acl, *ephemeral_owner, zxid, time);
                let parent = parent_of(path).expect("created path has a parent");
                triggers.push(Trigger {
                    path: path.clone(),
                    event: EventType::NodeCreated,
                });
                triggers.push(Trigger {
                    path: parent.to_string(),
                    event: EventType::NodeChildrenChanged,
                });
                OpResult::Created {
                    path: path.clone(),
                    stat,
                }
            }
            TxnOp::Delete { path } | TxnOp::DeleteContainer { path } => {
                self.delete_node(path, zxid, triggers);
                OpResult::Deleted
            }
            TxnOp::SetData {
                path,
                data,
                version,
            } => {
                let (key, old) = self.node_for_update(path, "setData");
                let mut n = (*old).clone();
                let new_len = data.as_ref().map_or(0, |d| d.len());
                self.data_size += new_len as i64 - n.data_len() as i64;
                n.data = data.clone();
                n.mtime = time;
                n.mzxid = zxid;
                n.version = *version;
                let stat = n.stat();
                self.put(&key, n);
                triggers.push(Trigger {
                    path: path.clone(),
                    event: EventType::NodeDataChanged,
                });
                OpResult::Stat(stat)
            }
            TxnOp::SetAcl {
                path,
                acl,
                aversion,
            } => {
                let (key, old) = self.node_for_update(path, "setACL");
                let mut n = (*old).clone();
                n.acl = self.share_acl(acl, None);
                n.aversion = *aversion;
                let stat = n.stat();
                self.put(&key, n);
                OpResult::Stat(stat)
            }
            TxnOp::Check { path } => {
                assert!(
                    self.exists(path),
                    "check of missing {path} at zxid {zxid:#x}"
                );
                OpResult::Checked
            }
            TxnOp::Error { code, .. } => {
                assert!(!in_multi, "error txn inside a multi at zxid {zxid:#x}");
                OpResult::Error(*code)
            }
            TxnOp::Multi(ops) => {
                assert!(!in_multi, "nested multi at zxid {zxid:#x}");
                let results = ops
                    .iter()
                    .map(|op| self.apply_op(txn, op, triggers, true))
                    .collect();
                OpResult::Multi(results)
            }
        }
    }

    fn node_for_update(&self, path: &str, what: &str) -> (Arc<str>, Arc<Znode>) {
        let (k, n) = self
            .nodes
            .get_key_value(path)
            .unwrap_or_else(|| panic!("{what} of missing {path}"));
        (k.clone(), n.clone())
    }

    /// Returns an `Arc` for `acl`, reusing the open ACL's or `like`'s when equal, so the
    /// common cases (every node world:anyone, children inheriting the parent's list)
    /// store one list.
    fn share_acl(&self, acl: &[Acl], like: Option<&AclList>) -> AclList {
        if **self.open_acl == *acl {
            return self.open_acl.clone();
        }
        if let Some(l) = like {
            if ***l == *acl {
                return l.clone();
            }
        }
        Arc::new(acl.to_vec())
    }

    fn create_node(
        &mut self,
        path: &str,
        data: &Option<Bytes>,
        acl: &[Acl],
        owner: i64,
        zxid: i64,
        time: i64,
    ) -> Stat {
        let (parent_path, _) =
            split_parent(path).unwrap_or_else(|| panic!("create of {path}: no '/'"));
        assert!(
            !self.nodes.contains_key(path),
            "create of existing {path} at zxid {zxid:#x}"
        );
        let (pkey, parent) = self.node_for_update(parent_path, "create under parent");
        assert!(
            !matches!(parent.kind(), NodeKind::Ephemeral(_)),
            "create of {path} under ephemeral {parent_path}"
        );
        let kind = NodeKind::of_owner(owner);
        let key: Arc<str> = Arc::from(path);
        match kind {
            NodeKind::Ephemeral(s) => {
                assert!(
                    self.sessions.contains_key(&s),
                    "ephemeral {path} owned by dead session {s:#x}"
                );
                let mut set = self.ephemerals.get(&s).cloned().unwrap_or_default();
                set.insert(key.clone());
                self.ephemerals.insert(s, set);
                self.ephemeral_count += 1;
            }
            NodeKind::Container => {
                self.containers.insert(key.clone());
            }
            NodeKind::Ttl(_) => {
                self.ttls.insert(key.clone());
            }
            NodeKind::Persistent => {}
        }
        let mut p = (*parent).clone();
        p.cversion += 1;
        p.pzxid = zxid;
        p.children.insert(key.clone());
        let acl = self.share_acl(acl, Some(&parent.acl));
        self.put(&pkey, p);
        let node = Znode {
            data: data.clone(),
            acl,
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: zxid,
            children: Children::default(),
        };
        self.data_size += path.len() as i64 + node.data_len() as i64;
        let stat = node.stat();
        self.put(&key, node);
        stat
    }

    fn delete_node(&mut self, path: &str, zxid: i64, triggers: &mut Vec<Trigger>) {
        let (parent_path, _) =
            split_parent(path).unwrap_or_else(|| panic!("delete of {path}: no '/'"));
        let (key, node) = self.node_for_update(path, "delete");
        assert!(
            node.children.is_empty(),
            "delete of {path} with {} children at zxid {zxid:#x}",
            node.children.len()
        );
        assert!(path != "/", "delete of the root");
        let (pkey, parent) = self.node_for_update(parent_path, "delete under parent");
        let mut p = (*parent).clone();
        let removed = p.children.remove(path);
        assert!(removed, "{path} missing from its parent's children");
        if zxid > p.pzxid {
            p.pzxid = zxid;
        }
        self.put(&pkey, p);
        self.nodes.remove_mut(path);
        self.digest = self.digest.wrapping_sub(node_hash(&key, &node));
        self.data_size -= path.len() as i64 + node.data_len() as i64;
        match node.kind() {
            NodeKind::Ephemeral(s) => {
                let mut set = self
                    .ephemerals
                    .get(&s)
                    .cloned()
                    .unwrap_or_else(|| panic!("ephemeral {path} not indexed for {s:#x}"));
                assert!(set.remove(path).is_some(), "ephemeral {path} not indexed");
                if set.is_empty() {
                    self.ephemerals.remove(&s);
                } else {
                    self.ephemerals.insert(s, set);
                }
                self.ephemeral_count -= 1;
            }
            NodeKind::Container => {
                self.containers.remove(path);
            }
            NodeKind::Ttl(_) => {
                self.ttls.remove(path);
            }
            NodeKind::Persistent => {}
        }
        triggers.push(Trigger {
            path: path.to_string(),
            event: EventType::NodeDeleted,
        });
        triggers.push(Trigger {
            path: parent_path.to_string(),
            event: EventType::NodeChildrenChanged,
        });
    }

    /// Stores `node` at `key`, keeping the digest in step.
    fn put(&mut self, key: &Arc<str>, node: Znode) {
        let h = node_hash(key, &node);
        if let Some(old) = self.nodes.get(key) {
            self.digest = self.digest.wrapping_sub(node_hash(key, old));
        }
        self.nodes.insert_mut(key.clone(), Arc::new(node));
        self.digest = self.digest.wrapping_add(h);
    }
}

/// A 64-bit hash of a length-prefixed encoding: two CRC32C lanes with different seeds
/// (hardware-accelerated where the CPU has it, the same value everywhere), then a
/// SplitMix64 finalizer so that the wrapping sum of many hashes stays well spread.
/// Defined here, not by `std::hash`, because it must be the same on every build and
/// platform. It replaced a byte-at-a-time FNV-1a that took 8.5% of the server's CPU
/// under a setData load (perf, zkbench set 16x16): every update hashes the old and
/// the new node, data included.
struct NodeHasher {
    lo: u32,
    hi: u32,
}

impl NodeHasher {
    fn new(tag: u8) -> NodeHasher {
        let mut f = NodeHasher {
            lo: 0x8422_2325,
            hi: 0xcbf2_9ce4,
        };
        f.bytes(&[tag]);
        f
    }
    fn bytes(&mut self, b: &[u8]) {
        self.lo = crc32c::crc32c_append(self.lo, b);
        self.hi = crc32c::crc32c_append(self.hi ^ 0x9e37_79b9, b);
    }
    fn field(&mut self, b: &[u8]) {
        self.bytes(&(b.len() as u64).to_le_bytes());
        self.bytes(b);
    }
    fn i64(&mut self, v: i64) {
        self.bytes(&v.to_le_bytes());
    }
    fn finish(self) -> u64 {
        let mut z = (u64::from(self.hi) << 32) | u64::from(self.lo);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn node_hash(path: &str, n: &Znode) -> u64 {
    let mut h = NodeHasher::new(b'n');
    h.field(path.as_bytes());
    match &n.data {
        None => h.bytes(&[0]),
        Some(d) => {
            h.bytes(&[1]);
            h.field(d);
        }
    }
    h.i64(n.acl.len() as i64);
    for a in n.acl.iter() {
        h.i64(i64::from(a.perms));
        h.field(a.id.scheme.as_bytes());
        h.field(a.id.id.as_bytes());
    }
    let mut fixed = [0u8; 9 * 8];
    let values = [
        n.czxid,
        n.mzxid,
        n.ctime,
        n.mtime,
        n.ephemeral_owner,
        n.pzxid,
        i64::from(n.version),
        i64::from(n.cversion),
        i64::from(n.aversion),
    ];
    for (chunk, v) in fixed.chunks_exact_mut(8).zip(values) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    h.bytes(&fixed);
    h.finish()
}

fn session_hash(id: i64, timeout_ms: i32) -> u64 {
    let mut h = NodeHasher::new(b's');
    h.i64(id);
    h.i64(i64::from(timeout_ms));
    h.finish()
}

#[cfg(test)]
mod tests;
