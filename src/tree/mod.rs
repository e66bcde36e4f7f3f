//! The data tree: znodes, the session table and its ephemeral index, container and TTL
//! sets, and the counters and digest that describe them. It is persistent (structurally
//! shared): `clone()` is O(1) and a clone is a frozen snapshot, so the committed root of
//! any zxid, the sequencer's speculative tree and a multi's scratch tree are all just
//! clones, and shard threads read a published root without locks.
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
//!
//! # Layout, and why
//!
//! Four persistent parts, each copy-on-write through `Arc::make_mut`, so a change copies
//! only the few small blocks on its path that an older version still shares:
//!
//! * `node`: each znode is one allocation holding its Stat (as varint deltas), ACL
//!   pointer, parent id, children list pointer, last path segment and data.
//! * `slots`: node id -> node, a 16-way radix of pointers; ids are dense and reused.
//! * `index`: full path -> node id, a hash trie of 8-byte entries (32 bits of a keyed
//!   hash and the id); a hit is confirmed by walking the parent chain.
//! * `kids`: each node's children as ids sorted by name, in chunks of 1024.
//!
//! Measured with `examples/tree_memory.rs` (1M znodes of 100 bytes, paths
//! `/bench/key-NNNNNNNN`, mimalloc as in the server), RSS growth per znode:
//!
//! | layout | bytes/znode | CPU for the 1M creates |
//! |---|---|---|
//! | rpds hash trie of `Arc<str>` -> `Arc<Znode>` with `OrdSet<Arc<str>>` children (before) | 566 | 7.9 s |
//! | this layout | 195 | 1.4 s |
//!
//! The node allocation is 155 bytes there (mimalloc's 160-byte class), the radix ~8.5,
//! the index ~12-16, the parent's children list ~4. `docs/big-trees.md` has the server's
//! figures beside ZooKeeper's.
//!
//! What was rejected: a map keyed by path strings (the path is stored again, and rpds
//! allocates an entry per key: ~100 bytes before the node); nodes inline in copy-on-write
//! pages (a write would copy a whole page, ~6 KiB, after every publish instead of one
//! node); walking the children lists for every lookup instead of a hash index (20 name
//! comparisons, each a cache miss, under a parent of 1M children); a shared ACL table
//! with reference counts (every create and delete would write to it; an `Arc` per node
//! costs 8 bytes and lists are still shared).

pub mod path;

mod index;
mod kids;
mod node;
mod slots;

use crate::proto::{perms, Acl, EventType, Id, Stat, CONTAINER_EPHEMERAL_OWNER, TTL_MASK};
use crate::txn::{Applied, OpResult, Trigger, Txn, TxnOp};
use bytes::Bytes;
use imbl::{OrdMap, OrdSet};
use index::{path_hash, Index};
use kids::{KidList, KidListBuilder};
use node::NodeBox;
use slots::Slots;
use std::sync::Arc;

pub use node::Fields;
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

/// One znode as a plain record: what a snapshot holds and what [`DataTree::restore`]
/// takes. The tree does not store it in this form (see the module header); reads get a
/// [`NodeRef`].
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
}

impl Znode {
    /// The record of a node with this data, ACL and stored fields (the inverse of
    /// [`Znode::fields`]).
    pub fn from_fields(data: Option<Bytes>, acl: AclList, f: &Fields) -> Znode {
        Znode {
            data,
            acl,
            czxid: f.czxid,
            mzxid: f.mzxid,
            ctime: f.ctime,
            mtime: f.mtime,
            version: f.version,
            cversion: f.cversion,
            aversion: f.aversion,
            ephemeral_owner: f.ephemeral_owner,
            pzxid: f.pzxid,
        }
    }

    pub fn kind(&self) -> NodeKind {
        NodeKind::of_owner(self.ephemeral_owner)
    }

    pub fn data_len(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.len())
    }

    /// The Stat of this record as a childless node (a record does not hold children).
    pub fn stat(&self) -> Stat {
        visible_stat(&self.fields(), self.data_len(), 0)
    }

    pub fn fields(&self) -> Fields {
        Fields {
            czxid: self.czxid,
            mzxid: self.mzxid,
            pzxid: self.pzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            ephemeral_owner: self.ephemeral_owner,
            version: self.version,
            cversion: self.cversion,
            aversion: self.aversion,
        }
    }
}

/// The Stat clients see (`DataNode.copyStat`) from stored fields.
fn visible_stat(f: &Fields, data_len: usize, num_children: usize) -> Stat {
    let num_children = num_children as i32;
    Stat {
        czxid: f.czxid,
        mzxid: f.mzxid,
        ctime: f.ctime,
        mtime: f.mtime,
        version: f.version,
        // Java int arithmetic: wraps rather than failing on absurd counts.
        cversion: f.cversion.wrapping_mul(2).wrapping_sub(num_children),
        aversion: f.aversion,
        ephemeral_owner: match NodeKind::of_owner(f.ephemeral_owner) {
            NodeKind::Ephemeral(s) => s,
            _ => 0,
        },
        data_length: data_len as i32,
        num_children,
        pzxid: f.pzxid,
    }
}

/// A read-only view of one znode of a tree, borrowed from it.
#[derive(Clone, Copy)]
pub struct NodeRef<'a>(&'a NodeBox);

impl<'a> NodeRef<'a> {
    /// `None` is null data.
    pub fn data(&self) -> Option<&'a [u8]> {
        self.0.data()
    }

    pub fn data_len(&self) -> usize {
        self.0.data().map_or(0, <[u8]>::len)
    }

    pub fn acl(&self) -> &'a AclList {
        self.0.acl()
    }

    /// The stored Stat fields (decoded: call once and keep the value).
    pub fn fields(&self) -> Fields {
        self.0.fields()
    }

    pub fn version(&self) -> i32 {
        self.fields().version
    }

    /// Stored cversion: children ever created here.
    pub fn cversion(&self) -> i32 {
        self.fields().cversion
    }

    pub fn aversion(&self) -> i32 {
        self.fields().aversion
    }

    pub fn kind(&self) -> NodeKind {
        NodeKind::of_owner(self.fields().ephemeral_owner)
    }

    pub fn num_children(&self) -> usize {
        self.0.num_kids()
    }

    /// The last path segment ("" for the root).
    pub fn name(&self) -> &'a str {
        // Names come from `&str` paths, so they are UTF-8.
        std::str::from_utf8(self.0.name()).expect("node names are UTF-8")
    }

    /// The Stat clients see (`DataNode.copyStat`).
    pub fn stat(&self) -> Stat {
        visible_stat(&self.fields(), self.data_len(), self.num_children())
    }

    /// The node as a plain record (data copied).
    pub fn to_znode(&self) -> Znode {
        Znode::from_fields(
            self.data().map(Bytes::copy_from_slice),
            self.acl().clone(),
            &self.fields(),
        )
    }
}

impl std::fmt::Debug for NodeRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Data longer than this is handed out as a view of the node (no copy); shorter data is
/// copied, which costs the same one allocation.
const SHARE_DATA_ABOVE: usize = 4096;

/// Keeps a node alive under a `Bytes` view of its data.
struct DataOwner(NodeBox);

impl AsRef<[u8]> for DataOwner {
    fn as_ref(&self) -> &[u8] {
        self.0.data().unwrap_or(&[])
    }
}

fn data_bytes(n: &NodeBox) -> Option<Bytes> {
    let d = n.data()?;
    Some(if d.len() > SHARE_DATA_ABOVE {
        Bytes::from_owner(DataOwner(n.clone()))
    } else {
        Bytes::copy_from_slice(d)
    })
}

/// The id of the root node.
const ROOT: u32 = 0;

/// Where a lookup found a node, to hand to [`DataTree::apply_found`] so that a write
/// validated against the tree does not look its path up again when it is applied (the
/// sequencer validates and applies each write back to back: two lookups of one path,
/// each a hash probe and a walk up the parent chain, were a tenth of a leader's work per
/// setData).
///
/// It is only a hint: it holds the node's id and the zxid of the tree it was found in,
/// and the tree uses it only if it is still at that zxid and the node there still has the
/// path's last name; otherwise it looks the path up as before. Ids are reused after a
/// delete, so a hint from an older version must not be trusted blindly.
///
/// From [`DataTree::find_fields`] it also carries the node's decoded Stat fields, which
/// apply then does not decode again (two decodings of one node's varints were ~440 of
/// a setData's ~6,000 instructions, callgrind of `examples/apply_cost`); they are used
/// under the same conditions as the id, and the node is immutable in that version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    id: u32,
    zxid: i64,
    fields: Option<Fields>,
}

/// The numbers `mntr` shows of a tree (see [`DataTree::counts`]): kept with a published
/// state whose root nobody holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// [`DataTree::node_count`].
    pub nodes: usize,
    pub ephemerals: usize,
    /// [`DataTree::approximate_data_size`].
    pub data_size: i64,
    pub sessions: usize,
}

/// The persistent data tree. See the module header.
///
/// Owned by the sequencer thread (the only writer); clones travel to shards as read
/// views and to the snapshotter. All of it is `Send + Sync` and immutable once shared.
#[derive(Clone)]
pub struct DataTree {
    slots: Slots,
    index: Index,
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

impl std::fmt::Debug for DataTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataTree")
            .field("zxid", &self.zxid)
            .field("znodes", &self.len())
            .field("sessions", &self.sessions.len())
            .field("digest", &self.digest)
            .finish()
    }
}

/// Equal content: the same znodes (path, Stat fields, data, ACL, children) and sessions
/// at the same zxid. O(n); for tests and checks.
impl PartialEq for DataTree {
    fn eq(&self, other: &DataTree) -> bool {
        if self.zxid != other.zxid
            || self.digest != other.digest
            || self.len() != other.len()
            || self.sessions != other.sessions
            || self.data_size != other.data_size
        {
            return false;
        }
        let mut same = true;
        self.walk(|path, n| {
            if !same {
                return;
            }
            same = match other.get(path) {
                Some(o) => {
                    o.fields() == n.fields()
                        && o.data() == n.data()
                        && **o.acl() == **n.acl()
                        && o.num_children() == n.num_children()
                }
                None => false,
            };
        });
        same
    }
}

impl Eq for DataTree {}

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

/// Orders paths as a depth-first walk with children by name visits them: byte order with
/// '/' below every other byte (names hold no NUL), so "/a/b" comes before "/a!".
pub fn tree_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |c: u8| if c == b'/' { 0 } else { c };
    a.bytes().map(key).cmp(b.bytes().map(key))
}

impl DataTree {
    fn empty(zxid: i64) -> DataTree {
        DataTree {
            slots: Slots::new(),
            index: Index::default(),
            sessions: OrdMap::new(),
            ephemerals: OrdMap::new(),
            containers: OrdSet::new(),
            ttls: OrdSet::new(),
            ephemeral_count: 0,
            data_size: 0,
            digest: 0,
            zxid,
            open_acl: Arc::new(open_acl_unsafe()),
        }
    }

    /// The tree of a fresh ZooKeeper 3.8/3.9 standalone server: "/", "/zookeeper",
    /// "/zookeeper/quota" and "/zookeeper/config" (ACL world:anyone READ, aversion -1,
    /// because ZooKeeper sets it with setACL version -1), all with empty (not null) data
    /// and zero stats. Checked against a real 3.8 server: `srvr` says "Node count: 5",
    /// `mntr` says approximate_data_size 44, "/" shows cversion -1, "/zookeeper" -2.
    pub fn new() -> DataTree {
        let mut b = TreeBuilder::new(0);
        let open = b.open_acl.clone();
        let zero = Fields::default();
        let config = Fields {
            aversion: -1,
            ..zero
        };
        let read: AclList = Arc::new(read_acl_unsafe());
        for (p, acl, f) in [
            ("/", &open, zero),
            ("/zookeeper", &open, zero),
            ("/zookeeper/config", &read, config),
            ("/zookeeper/quota", &open, zero),
        ] {
            b.node(p, Some(&[]), acl, &f)
                .expect("the fresh tree is valid");
        }
        b.finish().expect("the fresh tree is valid")
    }

    // ----- reads -----

    fn lookup(&self, path: &str) -> Option<u32> {
        if path.is_empty() || path == "/" {
            return Some(ROOT);
        }
        let p = path.as_bytes();
        self.index.find(path_hash(p), |id| self.matches(id, p))
    }

    /// Starts loading the node at `path` into the cache without waiting for it to
    /// arrive: the index walk and the slot, then a prefetch of the node. Called for the
    /// txns a learner is about to apply together, so that their nodes' misses overlap
    /// instead of each lookup waiting for its own. A hash collision prefetches another
    /// node, which costs nothing but the hint.
    pub fn prefetch(&self, path: &str) {
        if let Some(n) = self
            .index
            .find(path_hash(path.as_bytes()), |_| true)
            .and_then(|id| self.slots.get(id))
        {
            n.prefetch();
        }
    }

    /// Whether node `id` is at `path`: its name and each ancestor's match the segments.
    fn matches(&self, mut id: u32, mut path: &[u8]) -> bool {
        // Bound: each step consumes one segment of the finite path.
        loop {
            if id == ROOT {
                return path.is_empty();
            }
            let Some(n) = self.slots.get(id) else {
                return false;
            };
            let Some(slash) = last_name_is(path, n.name()) else {
                return false;
            };
            path = &path[..slash];
            id = n.parent();
        }
    }

    fn node(&self, id: u32) -> &NodeBox {
        self.slots
            .get(id)
            .unwrap_or_else(|| panic!("node id {id} listed but missing"))
    }

    /// The node at `path`. "" names the root too, as in ZooKeeper's node map.
    pub fn get(&self, path: &str) -> Option<NodeRef<'_>> {
        self.lookup(path).map(|id| NodeRef(self.node(id)))
    }

    /// [`DataTree::get`], and where the node is, for [`DataTree::apply_found`].
    pub fn find(&self, path: &str) -> Option<(NodeRef<'_>, Found)> {
        self.lookup(path).map(|id| {
            let found = Found {
                id,
                zxid: self.zxid,
                fields: None,
            };
            (NodeRef(self.node(id)), found)
        })
    }

    /// [`DataTree::find`], with the node's fields decoded once for the caller and for
    /// [`DataTree::apply_found`] (see [`Found`]).
    pub fn find_fields(&self, path: &str) -> Option<(NodeRef<'_>, Fields, Found)> {
        self.lookup(path).map(|id| {
            let node = NodeRef(self.node(id));
            let fields = node.fields();
            let found = Found {
                id,
                zxid: self.zxid,
                fields: Some(fields),
            };
            (node, fields, found)
        })
    }

    /// The id of the node at `path`: `found`'s when it still names that node in this
    /// version of the tree (see [`Found`]), else a lookup; and the node's fields when
    /// the hint carried them and was used.
    fn lookup_known(&self, path: &str, found: Option<Found>) -> Option<(u32, Option<Fields>)> {
        if let Some(f) = found.filter(|f| f.zxid == self.zxid) {
            // Compared from the end, without searching for the last '/' (`rsplit('/')`
            // was ~260 instructions of pattern machinery per write, callgrind).
            if self
                .slots
                .get(f.id)
                .is_some_and(|n| last_name_is(path.as_bytes(), n.name()).is_some())
            {
                debug_assert!(
                    self.matches(f.id, path.as_bytes()) || f.id == ROOT,
                    "a hint for {path} names another node"
                );
                debug_assert!(
                    f.fields.is_none() || f.fields == Some(self.node(f.id).fields()),
                    "a hint for {path} carries another node's fields"
                );
                return Some((f.id, f.fields));
            }
        }
        self.lookup(path).map(|id| (id, None))
    }

    pub fn exists(&self, path: &str) -> bool {
        self.lookup(path).is_some()
    }

    /// The Stat clients see for `path`.
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.get(path).map(|n| n.stat())
    }

    /// Data and Stat, as getData answers them.
    pub fn data(&self, path: &str) -> Option<(Option<Bytes>, Stat)> {
        let id = self.lookup(path)?;
        let n = self.node(id);
        Some((data_bytes(n), NodeRef(n).stat()))
    }

    /// ACL and Stat, as getACL answers them (before any redaction, see `acl`).
    pub fn acl(&self, path: &str) -> Option<(AclList, Stat)> {
        self.get(path).map(|n| (n.acl().clone(), n.stat()))
    }

    /// Children's names, sorted. (ZooKeeper's order is its HashSet's, which clients must
    /// not rely on; sorted is one valid order and deterministic.)
    pub fn children(&self, path: &str) -> Option<Vec<String>> {
        let n = self.node(self.lookup(path)?);
        let Some(kids) = n.kids() else {
            return Some(Vec::new());
        };
        let mut out = Vec::with_capacity(kids.len());
        for id in kids.iter() {
            out.push(String::from_utf8_lossy(self.node(id).name()).into_owned());
        }
        Some(out)
    }

    /// getAllChildrenNumber: every descendant of `path`, not counting `path` itself.
    /// For "/" that excludes the root only, as ZooKeeper's `nodes.size() - 2` does: O(1).
    pub fn all_children_number(&self, path: &str) -> Option<usize> {
        let id = self.lookup(path)?;
        if id == ROOT {
            return Some(self.len() - 1);
        }
        // Bound: each node is visited once, so the walk ends after len() steps.
        let mut count = 0usize;
        let mut stack = vec![id];
        while let Some(i) = stack.pop() {
            if let Some(k) = self.node(i).kids() {
                count += k.len();
                assert!(count <= self.len(), "cycle under {path}");
                stack.extend(k.iter().filter(|&c| self.node(c).num_kids() > 0));
            }
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
        self.len() + 1
    }

    /// The number of znodes, counting the root once.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Never true: the root always exists. Present because `len` is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum of path lengths plus data lengths (`mntr` zk_approximate_data_size).
    pub fn approximate_data_size(&self) -> i64 {
        self.data_size
    }

    pub fn ephemeral_count(&self) -> usize {
        self.ephemeral_count
    }

    /// The numbers `mntr` shows of this tree.
    pub fn counts(&self) -> Counts {
        Counts {
            nodes: self.node_count(),
            ephemerals: self.ephemeral_count,
            data_size: self.data_size,
            sessions: self.sessions.len(),
        }
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

    /// Gives this tree's `/zookeeper/config` the data and Stat of `from`'s, so that two
    /// trees of one history compare equal whatever config each member put there (for
    /// `ringkeeper data check`, which replays the log from the empty tree).
    pub fn adopt_config_node(&mut self, from: &DataTree) {
        let path = std::str::from_utf8(UNDIGESTED).expect("ascii");
        let (Some(mine), Some(theirs)) = (self.lookup(path), from.lookup(path)) else {
            return;
        };
        let t = NodeRef(from.node(theirs));
        let (data, fields) = (t.data().map(<[u8]>::to_vec), t.fields());
        let old_len = NodeRef(self.node(mine)).data_len();
        self.data_size += data.as_ref().map_or(0, Vec::len) as i64 - old_len as i64;
        self.rebuild(
            mine,
            path,
            |_, f, _| *f = fields,
            Some(data.as_deref()),
            None,
            None,
        );
    }

    /// The digest as snapshots written before `/zookeeper/config` left it stored it:
    /// [`DataTree::digest`] plus that node's hash. Loading such a snapshot accepts it.
    pub fn digest_with_config_node(&self) -> u64 {
        let path = std::str::from_utf8(UNDIGESTED).expect("ascii");
        match self.lookup(path) {
            Some(id) => {
                let n = NodeRef(self.node(id));
                self.digest
                    .wrapping_add(full_node_hash(UNDIGESTED, n.data(), n.acl(), &n.fields()))
            }
            None => self.digest,
        }
    }

    /// The digest computed from scratch, in O(n). For tests and for checking a loaded
    /// snapshot; it always equals [`DataTree::digest`] unless the tree is corrupt.
    pub fn recompute_digest(&self) -> u64 {
        let mut d = 0u64;
        self.walk(|p, n| {
            d = d.wrapping_add(node_hash(p.as_bytes(), n.data(), n.acl(), &n.fields()));
        });
        self.sessions
            .iter()
            .fold(d, |acc, (id, to)| acc.wrapping_add(session_hash(*id, *to)))
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
        if n.num_children() != 0 {
            return false;
        }
        let f = n.fields();
        let elapsed = now_ms.saturating_sub(f.mtime);
        match n.kind() {
            NodeKind::Container => {
                f.cversion > 0
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

    /// Calls `visit` with every znode and its full path, depth first, parents before
    /// their children and children by name (the root first, then [`tree_order`]): what
    /// a snapshot writes. Borrows this tree; walk a clone to keep writing meanwhile.
    pub fn walk(&self, mut visit: impl FnMut(&str, NodeRef<'_>)) {
        let mut path = String::from("/");
        let root = self.node(ROOT);
        visit("/", NodeRef(root));
        // Each frame: a children list, the chunk and position in it, and the parent
        // path's length.
        let mut stack: Vec<(&KidList, usize, usize, usize)> = Vec::new();
        if let Some(k) = root.kids() {
            stack.push((k, 0, 0, 0));
        }
        // Bound: every node is pushed and visited once.
        while let Some(top) = stack.last_mut() {
            let (list, ci, at, base) = *top;
            let Some(chunk) = list.chunk(ci) else {
                stack.pop();
                continue;
            };
            let id = chunk[at];
            if at + 1 == chunk.len() {
                top.1 += 1;
                top.2 = 0;
            } else {
                top.2 += 1;
            }
            let n = self.node(id);
            path.truncate(base);
            path.push('/');
            path.push_str(NodeRef(n).name());
            visit(&path, NodeRef(n));
            if let Some(k) = n.kids() {
                stack.push((k, 0, 0, path.len()));
            }
        }
    }

    /// Every znode with its full path as plain records, in [`DataTree::walk`] order.
    /// Copies every node: for tests and small trees; a snapshot uses `walk`.
    pub fn nodes(&self) -> Vec<(Arc<str>, Znode)> {
        let mut v = Vec::with_capacity(self.len());
        self.walk(|p, n| v.push((Arc::from(p), n.to_znode())));
        v
    }

    /// Rebuilds a tree from what a snapshot holds: every znode with its persisted fields,
    /// the live sessions, and the zxid of the last txn the content reflects. Children,
    /// the ephemeral index, container and TTL sets, counters and digest are derived, so a
    /// snapshot cannot disagree with them. Nodes may come in any order (in
    /// [`tree_order`], as [`DataTree::walk`] gives them, they are not sorted again). ACL
    /// lists equal to `world:anyone` are shared with the tree's own; the caller shares
    /// any others it can.
    ///
    /// # Errors
    /// A description of the first inconsistency: a duplicate path, a missing root, a
    /// node whose parent is missing or ephemeral, an ephemeral owned by a session that
    /// is not live, a duplicate session. The loader reports it as corruption.
    pub fn restore(
        zxid: i64,
        nodes: impl IntoIterator<Item = (Arc<str>, Znode)>,
        sessions: impl IntoIterator<Item = (i64, i32)>,
    ) -> Result<DataTree, String> {
        let mut nodes: Vec<(Arc<str>, Znode)> = nodes.into_iter().collect();
        if !nodes
            .windows(2)
            .all(|w| tree_order(&w[0].0, &w[1].0).is_lt())
        {
            nodes.sort_unstable_by(|a, b| tree_order(&a.0, &b.0));
        }
        let mut b = TreeBuilder::new(zxid);
        for (id, timeout) in sessions {
            b.session(id, timeout)?;
        }
        for (path, n) in &nodes {
            b.node(path, n.data.as_deref(), &n.acl, &n.fields())?;
        }
        b.finish()
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
        self.apply_found(txn, None)
    }

    /// [`DataTree::apply`], with where [`DataTree::find`] found the node the txn changes
    /// (a setData's, setACL's or delete's node, a create's parent) in this tree just
    /// before: that lookup is not repeated. A stale or wrong hint is not trusted (see
    /// [`Found`]); the result is the same with or without one.
    pub fn apply_found(&mut self, txn: &Txn, found: Option<Found>) -> Applied {
        assert!(
            txn.zxid > self.zxid,
            "txn zxid {:#x} not above the tree's {:#x}",
            txn.zxid,
            self.zxid
        );
        let mut triggers = Vec::new();
        let result = self.apply_op(txn, &txn.op, &mut triggers, false, found);
        self.zxid = txn.zxid;
        Applied { result, triggers }
    }

    /// Sets /zookeeper/config to `data` outside any txn, as ZooKeeper's
    /// `ZKDatabase.initConfigInZKDatabase` does at start and when a server takes a
    /// config it did not get from a reconfig txn: version -1, mzxid the config's
    /// version. The mtime is `mtime` (callers pass 0: every member then holds the same
    /// node, so replicas' digests agree; ZooKeeper puts the local clock there). Returns
    /// false, changing nothing, when the node already holds exactly this.
    pub fn set_config_node(&mut self, data: &[u8], mzxid: i64, mtime: i64) -> bool {
        const CONFIG: &str = "/zookeeper/config";
        let Some(id) = self.lookup(CONFIG) else {
            return false;
        };
        let node = NodeRef(self.node(id));
        let f = node.fields();
        if node.data() == Some(data) && f.mzxid == mzxid && f.mtime == mtime && f.version == -1 {
            return false;
        }
        let old_len = node.data_len();
        self.data_size += data.len() as i64 - old_len as i64;
        self.rebuild(
            id,
            CONFIG,
            |_, f, _| {
                f.mtime = mtime;
                f.mzxid = mzxid;
                f.version = -1;
            },
            Some(Some(data)),
            None,
            None,
        );
        true
    }

    fn apply_op(
        &mut self,
        txn: &Txn,
        op: &TxnOp,
        triggers: &mut Vec<Trigger>,
        in_multi: bool,
        found: Option<Found>,
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
                    self.delete_node(p, zxid, triggers, None);
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
                let (stat, acl, parent_acl) =
                    self.create_node(path, data, acl, *ephemeral_owner, txn, found);
                let parent = parent_of(path).expect("created path has a parent");
                triggers.push(Trigger {
                    path: path.clone(),
                    event: EventType::NodeCreated,
                    acl,
                });
                triggers.push(Trigger {
                    path: parent.to_string(),
                    event: EventType::NodeChildrenChanged,
                    acl: parent_acl,
                });
                OpResult::Created {
                    path: path.clone(),
                    stat,
                }
            }
            TxnOp::Delete { path } | TxnOp::DeleteContainer { path } => {
                self.delete_node(path, zxid, triggers, found);
                OpResult::Deleted
            }
            TxnOp::SetData {
                path,
                data,
                version,
            } => {
                let (id, known) = self.known_for_update(path, "setData", found);
                let old_len = NodeRef(self.node(id)).data_len();
                let acl = self.node(id).acl().clone();
                let new_len = data.as_ref().map_or(0, |d| d.len());
                self.data_size += new_len as i64 - old_len as i64;
                let stat = self.rebuild(
                    id,
                    path,
                    |_, f, _| {
                        f.mtime = time;
                        f.mzxid = zxid;
                        f.version = *version;
                    },
                    Some(data.as_deref()),
                    None,
                    known,
                );
                triggers.push(Trigger {
                    path: path.clone(),
                    event: EventType::NodeDataChanged,
                    acl,
                });
                OpResult::Stat(stat)
            }
            TxnOp::SetAcl {
                path,
                acl,
                aversion,
            } => {
                let id = self.id_for_update(path, "setACL", found);
                let acl = self.share_acl(acl, None);
                let stat = self.rebuild(
                    id,
                    path,
                    |_, f, _| f.aversion = *aversion,
                    None,
                    Some(acl),
                    None,
                );
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
                    .map(|op| self.apply_op(txn, op, triggers, true, None))
                    .collect();
                OpResult::Multi(results)
            }
        }
    }

    fn id_for_update(&self, path: &str, what: &str, found: Option<Found>) -> u32 {
        self.known_for_update(path, what, found).0
    }

    /// [`DataTree::id_for_update`], and the node's fields when the hint carried them.
    fn known_for_update(
        &self,
        path: &str,
        what: &str,
        found: Option<Found>,
    ) -> (u32, Option<Fields>) {
        self.lookup_known(path, found)
            .unwrap_or_else(|| panic!("{what} of missing {path}"))
    }

    /// Replaces node `id` (at `path`) by a new version: `edit` changes its fields and
    /// children (given the slot table, to read other nodes' names), `data` and `acl`
    /// replace those when given. Keeps the digest in step; returns the new visible Stat.
    /// The old node's children list is moved, not copied, when no older tree version
    /// shares the node.
    fn rebuild(
        &mut self,
        id: u32,
        path: &str,
        edit: impl FnOnce(&Slots, &mut Fields, &mut Option<Arc<KidList>>),
        data: Option<Option<&[u8]>>,
        acl: Option<AclList>,
        known: Option<Fields>,
    ) -> Stat {
        let mut old = self
            .slots
            .take(id)
            .unwrap_or_else(|| panic!("node {path} missing from its slot"));
        let mut f = known.unwrap_or_else(|| old.fields());
        self.digest =
            self.digest
                .wrapping_sub(node_hash(path.as_bytes(), old.data(), old.acl(), &f));
        let mut kids = match old.kids_mut() {
            Some(k) => k.take(),
            None => old.kids().cloned(),
        };
        edit(&self.slots, &mut f, &mut kids);
        if kids.as_ref().is_some_and(|k| k.is_empty()) {
            kids = None;
        }
        let acl = acl.unwrap_or_else(|| old.acl().clone());
        let data = data.unwrap_or_else(|| old.data());
        let new = NodeBox::new(old.parent(), acl, kids, old.name(), data, &f);
        self.digest = self
            .digest
            .wrapping_add(node_hash(path.as_bytes(), data, new.acl(), &f));
        // From the fields at hand, not decoded again from the new node.
        let stat = visible_stat(&f, data.map_or(0, <[u8]>::len), new.num_kids());
        self.slots.put(id, new);
        stat
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
        txn: &Txn,
        parent_found: Option<Found>,
    ) -> (Stat, AclList, AclList) {
        let (zxid, time) = (txn.zxid, txn.time_ms);
        let (parent_path, name) =
            split_parent(path).unwrap_or_else(|| panic!("create of {path}: no '/'"));
        assert!(
            !self.exists(path),
            "create of existing {path} at zxid {zxid:#x}"
        );
        let pid = self.id_for_update(parent_path, "create under parent", parent_found);
        let parent = NodeRef(self.node(pid));
        assert!(
            !matches!(parent.kind(), NodeKind::Ephemeral(_)),
            "create of {path} under ephemeral {parent_path}"
        );
        let parent_acl = parent.acl().clone();
        let acl = self.share_acl(acl, Some(&parent_acl));
        let kind = NodeKind::of_owner(owner);
        match kind {
            NodeKind::Ephemeral(s) => {
                assert!(
                    self.sessions.contains_key(&s),
                    "ephemeral {path} owned by dead session {s:#x}"
                );
                let mut set = self.ephemerals.get(&s).cloned().unwrap_or_default();
                set.insert(Arc::from(path));
                self.ephemerals.insert(s, set);
                self.ephemeral_count += 1;
            }
            NodeKind::Container => {
                self.containers.insert(Arc::from(path));
            }
            NodeKind::Ttl(_) => {
                self.ttls.insert(Arc::from(path));
            }
            NodeKind::Persistent => {}
        }
        let f = Fields {
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            ctime: time,
            mtime: time,
            ephemeral_owner: owner,
            version: 0,
            cversion: 0,
            aversion: 0,
        };
        let id = self.slots.alloc();
        let node = NodeBox::new(pid, acl.clone(), None, name.as_bytes(), data.as_deref(), &f);
        self.digest =
            self.digest
                .wrapping_add(node_hash(path.as_bytes(), node.data(), node.acl(), &f));
        let stat = NodeRef(&node).stat();
        self.data_size += path.len() as i64 + stat.data_length as i64;
        self.slots.put(id, node);
        self.index.insert(path_hash(path.as_bytes()), id);
        self.rebuild(
            pid,
            parent_path,
            |slots, pf, kids| {
                pf.cversion += 1;
                pf.pzxid = zxid;
                let list = Arc::make_mut(kids.get_or_insert_with(Default::default));
                list.insert(id, name.as_bytes(), |c| {
                    slots.get(c).expect("listed child exists").name()
                });
            },
            None,
            None,
            None,
        );
        (stat, acl, parent_acl)
    }

    fn delete_node(
        &mut self,
        path: &str,
        zxid: i64,
        triggers: &mut Vec<Trigger>,
        found: Option<Found>,
    ) {
        let (parent_path, name) =
            split_parent(path).unwrap_or_else(|| panic!("delete of {path}: no '/'"));
        let id = self.id_for_update(path, "delete", found);
        assert!(id != ROOT, "delete of the root");
        let node = NodeRef(self.node(id));
        assert!(
            node.num_children() == 0,
            "delete of {path} with {} children at zxid {zxid:#x}",
            node.num_children()
        );
        let f = node.fields();
        let acl = node.acl().clone();
        let hash = node_hash(path.as_bytes(), node.data(), node.acl(), &f);
        let data_len = node.data_len();
        let pid = self.node(id).parent();
        let mut removed = None;
        self.rebuild(
            pid,
            parent_path,
            |slots, pf, kids| {
                if let Some(list) = kids.as_mut() {
                    removed = Arc::make_mut(list).remove(name.as_bytes(), |c| {
                        slots.get(c).expect("listed child exists").name()
                    });
                }
                if zxid > pf.pzxid {
                    pf.pzxid = zxid;
                }
            },
            None,
            None,
            None,
        );
        assert_eq!(
            removed,
            Some(id),
            "{path} missing from its parent's children"
        );
        assert!(
            self.index.remove(path_hash(path.as_bytes()), id),
            "{path} missing from the index"
        );
        self.slots.release(id);
        self.digest = self.digest.wrapping_sub(hash);
        self.data_size -= path.len() as i64 + data_len as i64;
        match NodeKind::of_owner(f.ephemeral_owner) {
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
        let parent_acl = self.node(pid).acl().clone();
        triggers.push(Trigger {
            path: path.to_string(),
            event: EventType::NodeDeleted,
            acl,
        });
        triggers.push(Trigger {
            path: parent_path.to_string(),
            event: EventType::NodeChildrenChanged,
            acl: parent_acl,
        });
    }
}

/// One node's share of [`DataTree::digest`]: what a [`TreeBuilder::new_prehashed`]
/// caller sums.
pub fn node_digest(path: &str, data: Option<&[u8]>, acl: &[Acl], f: &Fields) -> u64 {
    node_hash(path.as_bytes(), data, acl, f)
}

/// The path index entry of node `id` at `path`, for [`PathIndex::from_entries`].
pub fn index_entry(path: &str, id: u32) -> u64 {
    (u64::from(path_hash(path.as_bytes())) << 32) | u64::from(id)
}

/// A path index built apart from its tree (see [`TreeBuilder::new_prehashed`]).
pub struct PathIndex(Index);

impl PathIndex {
    /// From the [`index_entry`] of every node but the root.
    pub fn from_entries(entries: Vec<u64>) -> PathIndex {
        PathIndex(Index::from_entries(entries))
    }
}

/// Builds a tree from nodes given in [`tree_order`] (parents before children, siblings
/// by name), as a snapshot holds them: each node is allocated once, ids are assigned in
/// order, children lists are made whole when their parent's subtree ends, and the id
/// table and path index are built in bulk at the end (the index from one sort of its
/// 8-byte entries, not an insert per path). Used by [`DataTree::restore`] and the
/// snapshot loader.
pub struct TreeBuilder {
    zxid: i64,
    /// Node digests and index entries are computed by the caller (see
    /// [`TreeBuilder::new_prehashed`]).
    prehashed: bool,
    nodes: Vec<NodeBox>,
    /// The open subtrees: (node id, its path's length, whether it is ephemeral, its
    /// children so far).
    stack: Vec<(u32, usize, bool, KidListBuilder)>,
    /// The path of the node on top of `stack`.
    path: String,
    entries: Vec<u64>,
    sessions: OrdMap<i64, i32>,
    ephemerals: Vec<(i64, Arc<str>)>,
    containers: OrdSet<Arc<str>>,
    ttls: OrdSet<Arc<str>>,
    data_size: i64,
    digest: u64,
    open_acl: AclList,
    last_acl: Option<(AclList, AclList)>,
}

impl TreeBuilder {
    pub fn new(zxid: i64) -> TreeBuilder {
        TreeBuilder {
            zxid,
            prehashed: false,
            nodes: Vec::new(),
            stack: Vec::new(),
            path: String::new(),
            entries: Vec::new(),
            sessions: OrdMap::new(),
            ephemerals: Vec::new(),
            containers: OrdSet::new(),
            ttls: OrdSet::new(),
            data_size: 0,
            digest: 0,
            open_acl: Arc::new(open_acl_unsafe()),
            last_acl: None,
        }
    }

    /// A builder that leaves the nodes' digests and the path index to the caller, who
    /// computes them with [`node_digest`] and [`PathIndex`] (on another thread: that is
    /// a third of the work) and hands them to [`TreeBuilder::finish_prehashed`].
    pub fn new_prehashed(zxid: i64) -> TreeBuilder {
        TreeBuilder {
            prehashed: true,
            ..TreeBuilder::new(zxid)
        }
    }

    /// Room for `n` nodes (a snapshot header's count), so the vectors grow once.
    pub fn reserve(&mut self, n: usize) {
        self.nodes.reserve(n);
        self.entries.reserve(n);
    }

    /// Nodes added so far.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The `world:anyone` list the tree shares; pass it (or an equal list, which is
    /// replaced by it) for open nodes.
    pub fn open_acl(&self) -> &AclList {
        &self.open_acl
    }

    /// A live session.
    ///
    /// # Errors
    /// When the session was given before.
    pub fn session(&mut self, id: i64, timeout_ms: i32) -> Result<(), String> {
        if self.sessions.insert(id, timeout_ms).is_some() {
            return Err(format!("session {id:#x} listed twice"));
        }
        self.digest = self.digest.wrapping_add(session_hash(id, timeout_ms));
        Ok(())
    }

    fn close_top(&mut self) {
        let (id, _, _, kids) = self.stack.pop().expect("an open subtree");
        if let Some(list) = kids.finish() {
            let slot = self.nodes[id as usize]
                .kids_mut()
                .expect("a node being built is not shared");
            *slot = Some(Arc::new(list));
        }
    }

    /// The next node in [`tree_order`]: the root "/" first.
    ///
    /// # Errors
    /// A node out of order or listed twice, a parent missing or ephemeral, a path that
    /// is not absolute.
    pub fn node(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: &AclList,
        f: &Fields,
    ) -> Result<(), String> {
        // The list the caller passed last, and what it resolved to: a loader passes the
        // same `Arc` for most nodes, so the lists are compared once, not per node.
        let acl = match &self.last_acl {
            Some((given, resolved)) if Arc::ptr_eq(given, acl) => resolved.clone(),
            _ => {
                let resolved = if **acl == **self.open_acl {
                    self.open_acl.clone()
                } else {
                    acl.clone()
                };
                self.last_acl = Some((acl.clone(), resolved.clone()));
                resolved
            }
        };
        let id = u32::try_from(self.nodes.len()).map_err(|_| "2^32 znodes or more".to_string())?;
        let (parent, name) = if path == "/" {
            if !self.nodes.is_empty() {
                return Err("node / listed twice".into());
            }
            (None, "")
        } else {
            if self.nodes.is_empty() {
                return Err(format!("node {path} before the root"));
            }
            let (parent_path, name) =
                split_parent(path).ok_or_else(|| format!("node {path}: not a path"))?;
            if name.is_empty() {
                return Err(format!("node {path}: empty name"));
            }
            // Close the subtrees that are not this node's ancestors.
            while let Some(&(_, len, _, _)) = self.stack.last() {
                if &self.path[..len] == parent_path {
                    break;
                }
                self.close_top();
                if let Some(&(_, l, _, _)) = self.stack.last() {
                    self.path.truncate(l);
                }
            }
            let Some((pid, _, ephemeral, kids)) = self.stack.last() else {
                return Err(format!(
                    "node {path}: parent {parent_path} missing or not before it"
                ));
            };
            if let Some(last) = kids.last() {
                if self.nodes[last as usize].name() >= name.as_bytes() {
                    return Err(format!(
                        "node {path} listed twice or out of order (after {})",
                        String::from_utf8_lossy(self.nodes[last as usize].name())
                    ));
                }
            }
            if *ephemeral {
                return Err(format!("node {path}: parent {parent_path} is ephemeral"));
            }
            (Some(*pid), name)
        };
        let node = NodeBox::new(parent.unwrap_or(ROOT), acl, None, name.as_bytes(), data, f);
        if !self.prehashed {
            self.digest = self
                .digest
                .wrapping_add(node_hash(path.as_bytes(), data, node.acl(), f));
        }
        self.data_size += path.len() as i64 + data.map_or(0, |d| d.len()) as i64;
        match NodeKind::of_owner(f.ephemeral_owner) {
            NodeKind::Ephemeral(s) => self.ephemerals.push((s, Arc::from(path))),
            NodeKind::Container => {
                self.containers.insert(Arc::from(path));
            }
            NodeKind::Ttl(_) => {
                self.ttls.insert(Arc::from(path));
            }
            NodeKind::Persistent => {}
        }
        self.nodes.push(node);
        if parent.is_some() {
            self.stack
                .last_mut()
                .expect("parent open")
                .3
                .push(id, name.as_bytes());
            if !self.prehashed {
                self.entries.push(index_entry(path, id));
            }
        }
        self.path.clear();
        self.path.push_str(path);
        let ephemeral = matches!(
            NodeKind::of_owner(f.ephemeral_owner),
            NodeKind::Ephemeral(_)
        );
        self.stack
            .push((id, path.len(), ephemeral, KidListBuilder::default()));
        Ok(())
    }

    /// The tree of a [`TreeBuilder::new_prehashed`] builder: `index` holds an entry
    /// for every node but the root, the `n`-th node given having id `n` (the root 0),
    /// and `node_digest` is the wrapping sum of every node's [`node_digest`].
    ///
    /// # Errors
    /// As [`TreeBuilder::finish`].
    pub fn finish_prehashed(
        mut self,
        index: PathIndex,
        node_digest: u64,
    ) -> Result<DataTree, String> {
        assert!(
            self.prehashed,
            "finish_prehashed of a builder that hashes itself"
        );
        self.digest = self.digest.wrapping_add(node_digest);
        self.prehashed = false;
        let mut t = self.finish()?;
        t.index = index.0;
        Ok(t)
    }

    /// The tree.
    ///
    /// # Errors
    /// No root, or an ephemeral owned by a session that is not live.
    pub fn finish(mut self) -> Result<DataTree, String> {
        if self.nodes.is_empty() {
            return Err("no root node".to_string());
        }
        while !self.stack.is_empty() {
            self.close_top();
        }
        let mut t = DataTree::empty(self.zxid);
        t.open_acl = self.open_acl;
        for (s, path) in self.ephemerals {
            if !self.sessions.contains_key(&s) {
                return Err(format!("ephemeral {path} owned by dead session {s:#x}"));
            }
            t.ephemerals.entry(s).or_default().insert(path);
            t.ephemeral_count += 1;
        }
        t.sessions = self.sessions;
        t.containers = self.containers;
        t.ttls = self.ttls;
        t.data_size = self.data_size;
        t.digest = self.digest;
        t.slots = Slots::from_vec(self.nodes);
        t.index = Index::from_entries(self.entries);
        Ok(t)
    }
}

/// Whether `path`'s last name (after its last '/') is `name`, and if so where that '/'
/// is. A node's name holds no '/', so a path that ends in "/" and the name has its last
/// '/' just there: the check compares from the end and never scans for the slash.
#[inline]
fn last_name_is(path: &[u8], name: &[u8]) -> Option<usize> {
    let slash = path.len().checked_sub(name.len() + 1)?;
    (path[slash] == b'/' && &path[slash + 1..] == name).then_some(slash)
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

/// `crc32c::crc32c_append` of two states over the same bytes, with the SSE4.2
/// instruction inlined (the crate's per-call dispatch and alignment handling took most
/// of the hashing time of a node's short fields), as two independent chains in one
/// loop: the CPU overlaps them (the instruction's latency is three cycles, its
/// throughput one), so the pair costs about what one did (node hashes were ~7% of a
/// follower's core thread under a setData load).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42_pair(a: u32, b: u32, bytes: &[u8]) -> (u32, u32) {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let (mut x, mut y) = (u64::from(!a), u64::from(!b));
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        x = _mm_crc32_u64(x, v);
        y = _mm_crc32_u64(y, v);
    }
    let (mut x, mut y) = (x as u32, y as u32);
    for &c in words.remainder() {
        x = _mm_crc32_u8(x, c);
        y = _mm_crc32_u8(y, c);
    }
    (!x, !y)
}

/// The CRC32C pair under [`NodeHasher`]: [`Sse42`] with the instruction inlined, or
/// [`Portable`] through the crate. Both give the same values.
trait CrcPair {
    /// `(crc32c_append(a, b), crc32c_append(c, b))`.
    ///
    /// # Safety
    /// [`Sse42`]'s needs a CPU with SSE4.2.
    unsafe fn pair(a: u32, c: u32, b: &[u8]) -> (u32, u32);
}

/// Only used inside [`full_node_hash_sse42`] and [`session_hash_sse42`], which run only
/// where the CPU has SSE4.2: there the whole hash, every field's CRC included, is
/// inlined into one function. A hash used to be ~12 calls of [`crc32c_sse42_pair`]
/// (a `target_feature` function cannot be inlined into a caller without the feature),
/// each with a feature check: ~1,100 instructions per node of zkbench's setData load,
/// two nodes per write (callgrind of `examples/apply_cost`).
#[cfg(target_arch = "x86_64")]
struct Sse42;

#[cfg(target_arch = "x86_64")]
impl CrcPair for Sse42 {
    #[inline(always)]
    unsafe fn pair(a: u32, c: u32, b: &[u8]) -> (u32, u32) {
        if b.len() <= 256 {
            // SAFETY: the caller's CPU has SSE4.2 (this trait's contract).
            unsafe { crc32c_sse42_pair(a, c, b) }
        } else {
            (crc32c::crc32c_append(a, b), crc32c::crc32c_append(c, b))
        }
    }
}

struct Portable;

impl CrcPair for Portable {
    #[inline(always)]
    unsafe fn pair(a: u32, c: u32, b: &[u8]) -> (u32, u32) {
        (crc32c::crc32c_append(a, b), crc32c::crc32c_append(c, b))
    }
}

impl NodeHasher {
    #[inline(always)]
    fn new<C: CrcPair>(tag: u8) -> NodeHasher {
        let mut f = NodeHasher {
            lo: 0x8422_2325,
            hi: 0xcbf2_9ce4,
        };
        // SAFETY: passed on from the caller (see `CrcPair::pair`).
        unsafe { f.bytes::<C>(&[tag]) };
        f
    }
    /// # Safety
    /// As [`CrcPair::pair`].
    #[inline(always)]
    unsafe fn bytes<C: CrcPair>(&mut self, b: &[u8]) {
        // SAFETY: passed on from the caller.
        let (lo, hi) = unsafe { C::pair(self.lo, self.hi ^ 0x9e37_79b9, b) };
        self.lo = lo;
        self.hi = hi;
    }
    /// # Safety
    /// As [`CrcPair::pair`].
    #[inline(always)]
    unsafe fn field<C: CrcPair>(&mut self, b: &[u8]) {
        // SAFETY: passed on from the caller.
        unsafe {
            self.bytes::<C>(&(b.len() as u64).to_le_bytes());
            self.bytes::<C>(b);
        }
    }
    /// # Safety
    /// As [`CrcPair::pair`].
    #[inline(always)]
    unsafe fn i64<C: CrcPair>(&mut self, v: i64) {
        // SAFETY: passed on from the caller.
        unsafe { self.bytes::<C>(&v.to_le_bytes()) }
    }
    fn finish(self) -> u64 {
        let mut z = (u64::from(self.hi) << 32) | u64::from(self.lo);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `/zookeeper/config` is left out of the digest, as ZooKeeper leaves it out of its
/// own: each member sets it at start from its config files (outside any txn), so two
/// replicas of one history may hold it at different moments.
const UNDIGESTED: &[u8] = b"/zookeeper/config";

fn node_hash(path: &[u8], data: Option<&[u8]>, acl: &[Acl], f: &Fields) -> u64 {
    if path == UNDIGESTED {
        return 0;
    }
    full_node_hash(path, data, acl, f)
}

fn full_node_hash(path: &[u8], data: Option<&[u8]>, acl: &[Acl], f: &Fields) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE4.2, checked just above.
            return unsafe { full_node_hash_sse42(path, data, acl, f) };
        }
    }
    // SAFETY: `Portable` has no requirement.
    unsafe { node_hash_with::<Portable>(path, data, acl, f) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn full_node_hash_sse42(path: &[u8], data: Option<&[u8]>, acl: &[Acl], f: &Fields) -> u64 {
    // SAFETY: the caller's CPU has SSE4.2.
    unsafe { node_hash_with::<Sse42>(path, data, acl, f) }
}

/// # Safety
/// As [`CrcPair::pair`].
#[inline(always)]
unsafe fn node_hash_with<C: CrcPair>(
    path: &[u8],
    data: Option<&[u8]>,
    acl: &[Acl],
    f: &Fields,
) -> u64 {
    let mut h = NodeHasher::new::<C>(b'n');
    // SAFETY: passed on from the caller.
    unsafe {
        h.field::<C>(path);
        match data {
            None => h.bytes::<C>(&[0]),
            Some(d) => {
                h.bytes::<C>(&[1]);
                h.field::<C>(d);
            }
        }
        h.i64::<C>(acl.len() as i64);
        for a in acl {
            h.i64::<C>(i64::from(a.perms));
            h.field::<C>(a.id.scheme.as_bytes());
            h.field::<C>(a.id.id.as_bytes());
        }
        let mut fixed = [0u8; 9 * 8];
        let values = [
            f.czxid,
            f.mzxid,
            f.ctime,
            f.mtime,
            f.ephemeral_owner,
            f.pzxid,
            i64::from(f.version),
            i64::from(f.cversion),
            i64::from(f.aversion),
        ];
        for (chunk, v) in fixed.chunks_exact_mut(8).zip(values) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        h.bytes::<C>(&fixed);
    }
    h.finish()
}

fn session_hash(id: i64, timeout_ms: i32) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE4.2, checked just above.
            return unsafe { session_hash_sse42(id, timeout_ms) };
        }
    }
    // SAFETY: `Portable` has no requirement.
    unsafe { session_hash_with::<Portable>(id, timeout_ms) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn session_hash_sse42(id: i64, timeout_ms: i32) -> u64 {
    // SAFETY: the caller's CPU has SSE4.2.
    unsafe { session_hash_with::<Sse42>(id, timeout_ms) }
}

/// # Safety
/// As [`CrcPair::pair`].
#[inline(always)]
unsafe fn session_hash_with<C: CrcPair>(id: i64, timeout_ms: i32) -> u64 {
    let mut h = NodeHasher::new::<C>(b's');
    // SAFETY: passed on from the caller.
    unsafe {
        h.i64::<C>(id);
        h.i64::<C>(i64::from(timeout_ms));
    }
    h.finish()
}

#[cfg(test)]
mod tests;
