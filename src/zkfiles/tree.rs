//! ZooKeeper's data tree as a model: loaded from a snapshot, it replays txns exactly as
//! ZooKeeper's `DataTree.processTxn` and `FileTxnSnapLog.processTransaction` do at start,
//! then converts into RingKeeper's [`DataTree`].
//!
//! Why a model and not RingKeeper's tree: ZooKeeper's snapshots are *fuzzy* (written
//! while txns were applied), so the txns after a snapshot's zxid may already be in it,
//! partly. ZooKeeper replays them tolerantly: a create of an existing node, a delete of a
//! missing one are ignored (with its fix-ups of the parent's cversion and pzxid), where
//! RingKeeper's tree refuses any misfit. The model does what ZooKeeper does, with
//! ZooKeeper's own tree digest kept alongside, and checks itself against the digests
//! ZooKeeper recorded (in the snapshot and, since 3.6, in each log record): equal digests
//! mean the replay produced ZooKeeper's tree, field for field.

use crate::proto::{Acl, Id};
use crate::tree::{AclList, DataTree, Znode};
use crate::zkfiles::checksum::{node_digest, DIGEST_VERSION};
use crate::zkfiles::txn::{op, ZkOp, ZkTxn};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// `data.StatPersisted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatPersisted {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
}

/// A node's ACL: a list, or a snapshot's ACL index that its ACL cache lacks (ZooKeeper
/// tolerates that until a replayed create of the node sets it; see `create_node`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclRef {
    List(AclList),
    Missing(i64),
}

/// One node of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkNode {
    pub data: Option<Bytes>,
    pub acl: AclRef,
    pub stat: StatPersisted,
    /// Children's names, as ZooKeeper's `DataNode` keeps them.
    pub children: HashSet<Box<str>>,
}

/// The snapshot's `ZxidDigest`: the tree digest at `zxid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZxidDigest {
    pub zxid: i64,
    pub version: i32,
    pub digest: i64,
}

/// What the digest checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestReport {
    /// Digests recorded by ZooKeeper that the model's tree was compared with.
    pub checked: u64,
    /// (zxid, ZooKeeper's digest, the model's) for each comparison that differed.
    pub mismatches: Vec<(i64, i64, i64)>,
}

/// `OPEN_ACL_UNSAFE`.
fn open_acl() -> Vec<Acl> {
    vec![Acl {
        perms: crate::proto::perms::ALL,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

/// ZooKeeper's tree, sessions and digest. Node keys are ZooKeeper's: the root is "".
#[derive(Debug, Clone)]
pub struct ZkTree {
    nodes: HashMap<Box<str>, ZkNode>,
    sessions: BTreeMap<i64, i32>,
    ephemerals: HashMap<i64, HashSet<Box<str>>>,
    digest: i64,
    last_zxid: i64,
    acls: HashMap<AclKey, AclList>,
    /// The snapshot's digest, while the replay has not reached its zxid (ZooKeeper's
    /// "fuzzy state", in which per-txn digests are not compared).
    pending_snapshot_digest: Option<ZxidDigest>,
    pub report: DigestReport,
}

/// An ACL list as a hashable value (the records do not derive `Hash`).
pub type AclKey = Vec<(i32, String, String)>;

/// The [`AclKey`] of a list.
pub fn acl_key(acl: &[Acl]) -> AclKey {
    acl.iter()
        .map(|a| (a.perms, a.id.scheme.clone(), a.id.id.clone()))
        .collect()
}

/// The key of `path`: "/" is the root, "".
fn key(path: &str) -> &str {
    if path == "/" {
        ""
    } else {
        path
    }
}

fn split(path: &str) -> Option<(&str, &str)> {
    let i = path.rfind('/')?;
    Some((&path[..i], &path[i + 1..]))
}

impl Default for ZkTree {
    fn default() -> Self {
        ZkTree::empty()
    }
}

impl ZkTree {
    /// A tree with no nodes at all (a snapshot's nodes are inserted next).
    pub fn empty() -> ZkTree {
        ZkTree {
            nodes: HashMap::new(),
            sessions: BTreeMap::new(),
            ephemerals: HashMap::new(),
            digest: 0,
            last_zxid: 0,
            acls: HashMap::new(),
            pending_snapshot_digest: None,
            report: DigestReport::default(),
        }
    }

    /// The tree a fresh ZooKeeper 3.5+ starts from: "", /zookeeper, /zookeeper/quota and
    /// /zookeeper/config (READ for anyone, aversion -1 once its ACL is set at start).
    pub fn fresh() -> ZkTree {
        let mut t = ZkTree::empty();
        let open = t.intern(&open_acl());
        let mut read = open_acl();
        read[0].perms = crate::proto::perms::READ;
        let read = t.intern(&read);
        let plain = |acl: &AclList| ZkNode {
            data: Some(Bytes::new()),
            acl: AclRef::List(acl.clone()),
            stat: StatPersisted::default(),
            children: HashSet::new(),
        };
        t.insert_loaded("", plain(&open)).expect("root");
        t.insert_loaded("/zookeeper", plain(&open)).expect("zk");
        t.insert_loaded("/zookeeper/quota", plain(&open))
            .expect("quota");
        let mut config = plain(&read);
        config.stat.aversion = -1;
        t.insert_loaded("/zookeeper/config", config)
            .expect("config");
        t
    }

    /// A shared list for `acl`.
    pub fn intern(&mut self, acl: &[Acl]) -> AclList {
        let k = acl_key(acl);
        if let Some(a) = self.acls.get(&k) {
            return a.clone();
        }
        let a: AclList = Arc::new(acl.to_vec());
        self.acls.insert(k, a.clone());
        a
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&ZkNode> {
        self.nodes.get(key(path))
    }

    pub fn sessions(&self) -> &BTreeMap<i64, i32> {
        &self.sessions
    }

    pub fn add_session(&mut self, id: i64, timeout: i32) {
        self.sessions.insert(id, timeout);
    }

    /// ZooKeeper's tree digest (the wrapping sum of node digests).
    pub fn digest(&self) -> i64 {
        self.digest
    }

    /// The zxid of the last txn applied (the snapshot's, before any).
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    fn node_digest(path: &str, n: &ZkNode) -> i64 {
        node_digest(path, n.data.as_deref(), &n.stat)
    }

    fn put(&mut self, path: &str, n: ZkNode) {
        self.digest = self.digest.wrapping_add(Self::node_digest(path, &n));
        if let Some(old) = self.nodes.insert(path.into(), n) {
            self.digest = self.digest.wrapping_sub(Self::node_digest(path, &old));
        }
    }

    /// Applies `f` to the node at `key`, keeping the digest (preChange/postChange).
    fn change(&mut self, k: &str, f: impl FnOnce(&mut ZkNode)) -> bool {
        let Some(n) = self.nodes.get_mut(k) else {
            return false;
        };
        let before = node_digest(k, n.data.as_deref(), &n.stat);
        f(n);
        let after = node_digest(k, n.data.as_deref(), &n.stat);
        self.digest = self.digest.wrapping_sub(before).wrapping_add(after);
        true
    }

    fn index_ephemeral(&mut self, path: &str, owner: i64) {
        if let crate::tree::NodeKind::Ephemeral(s) = crate::tree::NodeKind::of_owner(owner) {
            self.ephemerals.entry(s).or_default().insert(path.into());
        }
    }

    /// Inserts a node read from a snapshot, as `DataTree.deserialize` does: its parent
    /// must already be there (a snapshot lists parents first).
    ///
    /// # Errors
    /// A node whose parent has not been read.
    pub fn insert_loaded(&mut self, path: &str, node: ZkNode) -> Result<(), String> {
        if let Some((parent, name)) = split(path) {
            let Some(p) = self.nodes.get_mut(parent) else {
                return Err(format!(
                    "node {path} comes before its parent {:?}",
                    if parent.is_empty() { "/" } else { parent }
                ));
            };
            p.children.insert(name.into());
            self.index_ephemeral(path, node.stat.ephemeral_owner);
        } else if !path.is_empty() {
            return Err(format!("node path {path:?} does not start with '/'"));
        }
        self.put(path, node);
        Ok(())
    }

    /// Sets what a snapshot says: its zxid, and its digest to check the replay against.
    pub fn loaded(&mut self, snapshot_zxid: i64, digest: Option<ZxidDigest>) {
        self.last_zxid = snapshot_zxid;
        // `DataTree.deserializeZxidDigest` and `FileSnap.deserialize`: an empty digest,
        // or one older than the snapshot, is not compared; one of the snapshot's zxid
        // is compared now; a newer one when the replay reaches it.
        self.pending_snapshot_digest = digest.filter(|d| d.zxid > 0 && d.zxid >= snapshot_zxid);
        self.compare_snapshot_digest(snapshot_zxid);
    }

    fn compare_snapshot_digest(&mut self, zxid: i64) {
        let Some(d) = self.pending_snapshot_digest else {
            return;
        };
        if zxid == d.zxid {
            if d.version == DIGEST_VERSION {
                self.report.checked += 1;
                if d.digest != self.digest {
                    self.report.mismatches.push((zxid, d.digest, self.digest));
                }
            }
            self.pending_snapshot_digest = None;
        }
    }

    // ----- replay (DataTree.processTxn) -----

    /// Applies one logged txn as ZooKeeper does when it replays its log at start
    /// (`FileTxnSnapLog.processTransaction`, then `DataTree.compareDigest`).
    pub fn apply(&mut self, t: &ZkTxn) {
        match &t.op {
            ZkOp::CreateSession { timeout } => {
                self.sessions.insert(t.hdr.client_id, *timeout);
            }
            ZkOp::CloseSession { .. } => {
                self.sessions.remove(&t.hdr.client_id);
            }
            _ => {}
        }
        self.process(t.hdr.kind, &t.op, t);
        if t.hdr.zxid > self.last_zxid {
            self.last_zxid = t.hdr.zxid;
        }
        if self.pending_snapshot_digest.is_some() {
            self.compare_snapshot_digest(t.hdr.zxid);
        }
        // compareDigest: only outside the fuzzy state, for the same digest version.
        if let Some(d) = t.digest {
            if self.pending_snapshot_digest.is_none() && d.version == DIGEST_VERSION {
                self.report.checked += 1;
                if d.tree_digest != self.digest {
                    self.report
                        .mismatches
                        .push((t.hdr.zxid, d.tree_digest, self.digest));
                }
            }
        }
    }

    /// `processTxn` for one op; returns ZooKeeper's error code (0 for success).
    fn process(&mut self, kind: i32, o: &ZkOp, t: &ZkTxn) -> i32 {
        const NONODE: i32 = -101;
        const NODEEXISTS: i32 = -110;
        let (sid, zxid, time) = (t.hdr.client_id, t.hdr.zxid, t.hdr.time);
        let rc = match o {
            ZkOp::CreateSession { .. } | ZkOp::Check { .. } => 0,
            ZkOp::Error { err } => *err,
            ZkOp::Create {
                path,
                data,
                acl,
                ephemeral,
                parent_cversion,
            } => {
                let owner = if *ephemeral { sid } else { 0 };
                self.create_node(path, data, acl, owner, *parent_cversion, zxid, time)
            }
            ZkOp::CreateTtl {
                path,
                data,
                acl,
                parent_cversion,
                ttl,
            } => {
                let owner = crate::proto::TTL_MASK | (ttl & crate::proto::MAX_TTL_MS);
                self.create_node(path, data, acl, owner, *parent_cversion, zxid, time)
            }
            ZkOp::CreateContainer {
                path,
                data,
                acl,
                parent_cversion,
            } => {
                let owner = crate::proto::CONTAINER_EPHEMERAL_OWNER;
                self.create_node(path, data, acl, owner, *parent_cversion, zxid, time)
            }
            ZkOp::Delete { path } => self.delete_node(path, zxid),
            ZkOp::SetData {
                path,
                data,
                version,
            } => {
                let k = key(path);
                let ok = self.change(k, |n| {
                    n.data = data.clone();
                    n.stat.mtime = time;
                    n.stat.mzxid = zxid;
                    n.stat.version = *version;
                });
                if ok {
                    0
                } else {
                    NONODE
                }
            }
            ZkOp::SetAcl { path, acl, version } => {
                let list = self.intern(acl);
                let ok = self.change(key(path), |n| {
                    n.stat.aversion = *version;
                    n.acl = AclRef::List(list);
                });
                if ok {
                    0
                } else {
                    NONODE
                }
            }
            ZkOp::CloseSession { paths } => {
                // killSession: the session's ephemerals as the tree knows them, and the
                // paths the txn lists (3.6+), each deleted, missing ones ignored.
                let local = self.ephemerals.remove(&sid);
                if let Some(paths) = paths {
                    for p in paths {
                        self.delete_node(p, zxid);
                    }
                }
                if let Some(mut local) = local {
                    if let Some(paths) = paths {
                        for p in paths {
                            local.remove(p.as_str());
                        }
                    }
                    let mut rest: Vec<Box<str>> = local.into_iter().collect();
                    rest.sort();
                    for p in rest {
                        self.delete_node(&p, zxid);
                    }
                }
                0
            }
            ZkOp::Multi(ops) => {
                let failed = ops.iter().any(|(k, _)| *k == op::ERROR);
                let mut err = 0;
                for (k, o) in ops {
                    let sub_rc = if failed {
                        // A failed multi applies nothing; its ops are all error txns.
                        0
                    } else {
                        self.process(*k, o, t)
                    };
                    if sub_rc != 0 && err == 0 {
                        err = sub_rc;
                    }
                }
                err
            }
        };
        // A create that found its node already there (a fuzzy snapshot caught a later
        // state): ZooKeeper still moves the parent's cversion and pzxid forward. Only
        // for the `create` type, as in ZooKeeper.
        if kind == op::CREATE && rc == NODEEXISTS {
            if let ZkOp::Create {
                path,
                parent_cversion,
                ..
            } = o
            {
                if let Some((parent, _)) = split(path) {
                    self.set_cversion_pzxid(parent, *parent_cversion, zxid);
                }
            }
        }
        rc
    }

    /// `DataTree.setCversionPzxid`.
    fn set_cversion_pzxid(&mut self, path: &str, cversion: i32, zxid: i64) {
        let path = path.strip_suffix('/').unwrap_or(path);
        let k = key(path).to_string();
        let Some(n) = self.nodes.get(k.as_str()) else {
            return;
        };
        let new = if cversion == -1 {
            n.stat.cversion + 1
        } else {
            cversion
        };
        if new > n.stat.cversion {
            self.change(&k, |n| {
                n.stat.cversion = new;
                n.stat.pzxid = zxid;
            });
        }
    }

    /// `DataTree.createNode`; returns 0, NONODE (-101) or NODEEXISTS (-110).
    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &mut self,
        path: &str,
        data: &Option<Bytes>,
        acl: &[Acl],
        owner: i64,
        parent_cversion: i32,
        zxid: i64,
        time: i64,
    ) -> i32 {
        let Some((parent, name)) = split(path) else {
            return -101;
        };
        if !self.nodes.contains_key(parent) {
            return -101;
        }
        let list = self.intern(acl);
        if let Some(existing) = self.nodes.get_mut(path) {
            // ZooKeeper sets the ACL of the node it found (the ACL cache of a fuzzy
            // snapshot may lack it), then reports NODEEXISTS.
            existing.acl = AclRef::List(list);
            return -110;
        }
        let mut cv = parent_cversion;
        let name: Box<str> = name.into();
        self.change(parent, |p| {
            if cv == -1 {
                cv = p.stat.cversion + 1;
            }
            if cv > p.stat.cversion {
                p.stat.cversion = cv;
                p.stat.pzxid = zxid;
            }
            p.children.insert(name);
        });
        let node = ZkNode {
            data: data.clone(),
            acl: AclRef::List(list),
            stat: StatPersisted {
                czxid: zxid,
                mzxid: zxid,
                ctime: time,
                mtime: time,
                version: 0,
                cversion: 0,
                aversion: 0,
                ephemeral_owner: owner,
                pzxid: zxid,
            },
            children: HashSet::new(),
        };
        self.index_ephemeral(path, owner);
        self.put(path, node);
        0
    }

    /// `DataTree.deleteNode`: the parent's pzxid moves even when the node is gone.
    fn delete_node(&mut self, path: &str, zxid: i64) -> i32 {
        let Some((parent, name)) = split(path) else {
            return -101;
        };
        let parent_there = self.change(parent, |p| {
            p.children.remove(name);
            if zxid > p.stat.pzxid {
                p.stat.pzxid = zxid;
            }
        });
        if !parent_there {
            return -101;
        }
        let Some(node) = self.nodes.remove(path) else {
            return -101;
        };
        self.digest = self.digest.wrapping_sub(Self::node_digest(path, &node));
        if let crate::tree::NodeKind::Ephemeral(s) =
            crate::tree::NodeKind::of_owner(node.stat.ephemeral_owner)
        {
            if let Some(set) = self.ephemerals.get_mut(&s) {
                set.remove(path);
            }
        }
        0
    }

    /// `ZooKeeperServer.loadData`'s clean-up: the ephemerals of sessions that are not
    /// live are deleted, at the last zxid. Returns their paths.
    pub fn kill_dead_sessions(&mut self) -> Vec<String> {
        let mut dead: Vec<i64> = self
            .ephemerals
            .iter()
            .filter(|(s, set)| !set.is_empty() && !self.sessions.contains_key(s))
            .map(|(s, _)| *s)
            .collect();
        dead.sort();
        let zxid = self.last_zxid;
        let mut removed = Vec::new();
        for s in dead {
            let mut paths: Vec<Box<str>> = self
                .ephemerals
                .remove(&s)
                .map(|set| set.into_iter().collect())
                .unwrap_or_default();
            paths.sort();
            for p in paths {
                if self.delete_node(&p, zxid) == 0 {
                    removed.push(p.to_string());
                }
            }
        }
        removed
    }

    /// Sets /zookeeper/config to what a fresh RingKeeper tree holds (empty data, zero
    /// stats, READ for anyone, aversion -1), creating it if the snapshot lacks it (a 3.4
    /// snapshot). ZooKeeper rewrites this node at each server's start from that server's
    /// own configuration, so its content is local to a server (and differs between the
    /// servers of one ensemble); RingKeeper replicates it as any node, so every server
    /// must start with the same. Returns whether anything changed.
    pub fn reset_config_node(&mut self) -> bool {
        const CONFIG: &str = "/zookeeper/config";
        if !self.nodes.contains_key("/zookeeper") {
            return false;
        }
        let mut read = open_acl();
        read[0].perms = crate::proto::perms::READ;
        let acl = AclRef::List(self.intern(&read));
        let fresh = ZkNode {
            data: Some(Bytes::new()),
            acl,
            stat: StatPersisted {
                aversion: -1,
                ..StatPersisted::default()
            },
            children: HashSet::new(),
        };
        match self.nodes.get(CONFIG) {
            Some(n) if n.data == fresh.data && n.acl == fresh.acl && n.stat == fresh.stat => false,
            Some(n) if !n.children.is_empty() => false,
            Some(_) => {
                self.put(CONFIG, fresh);
                true
            }
            None => {
                self.insert_loaded(CONFIG, fresh)
                    .expect("/zookeeper exists");
                true
            }
        }
    }

    // ----- conversion -----

    /// Every node reachable from the root through children (what ZooKeeper's next
    /// snapshot would hold), with RingKeeper's paths ("/" for the root), in preorder.
    ///
    /// # Errors
    /// A node whose ACL index the snapshot's ACL cache lacks and no replayed txn set.
    pub fn reachable(&self) -> Result<Vec<(String, &ZkNode)>, String> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let root = self.nodes.get("").ok_or("the tree has no root node")?;
        let mut stack: Vec<(String, &ZkNode)> = vec![(String::new(), root)];
        while let Some((path, n)) = stack.pop() {
            if let AclRef::Missing(i) = n.acl {
                return Err(format!(
                    "node {} refers to ACL {i}, which the snapshot's ACL cache lacks",
                    if path.is_empty() { "/" } else { &path }
                ));
            }
            let mut names: Vec<&str> = n.children.iter().map(|c| &**c).collect();
            names.sort_unstable_by(|a, b| b.cmp(a));
            for c in names {
                let child = format!("{path}/{c}");
                if let Some(cn) = self.nodes.get(child.as_str()) {
                    stack.push((child, cn));
                }
            }
            out.push((if path.is_empty() { "/".into() } else { path }, n));
        }
        Ok(out)
    }

    /// RingKeeper's tree of this content at `last_zxid`.
    ///
    /// # Errors
    /// What [`ZkTree::reachable`] or [`DataTree::restore`] refuses.
    pub fn to_data_tree(&self) -> Result<DataTree, String> {
        let nodes = self.reachable()?;
        let mut staged = Vec::with_capacity(nodes.len());
        for (path, n) in nodes {
            let AclRef::List(acl) = &n.acl else {
                unreachable!("reachable() refuses missing ACLs")
            };
            let s = n.stat;
            staged.push((
                Arc::<str>::from(path),
                Znode {
                    data: n.data.clone(),
                    acl: acl.clone(),
                    czxid: s.czxid,
                    mzxid: s.mzxid,
                    ctime: s.ctime,
                    mtime: s.mtime,
                    version: s.version,
                    cversion: s.cversion,
                    aversion: s.aversion,
                    ephemeral_owner: s.ephemeral_owner,
                    pzxid: s.pzxid,
                },
            ));
        }
        DataTree::restore(
            self.last_zxid,
            staged,
            self.sessions.iter().map(|(k, v)| (*k, *v)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zkfiles::txn::{TxnDigest, TxnHeader};

    fn txn(kind: i32, zxid: i64, sid: i64, o: ZkOp) -> ZkTxn {
        ZkTxn {
            hdr: TxnHeader {
                client_id: sid,
                cxid: 0,
                zxid,
                time: 1000 + zxid,
                kind,
            },
            op: o,
            digest: None,
        }
    }

    fn create(path: &str, pcv: i32, ephemeral: bool) -> ZkOp {
        ZkOp::Create {
            path: path.into(),
            data: Some(Bytes::from(path.to_string())),
            acl: open_acl(),
            ephemeral,
            parent_cversion: pcv,
        }
    }

    #[test]
    fn replay_builds_zookeepers_stats() {
        let mut t = ZkTree::fresh();
        t.loaded(0, None);
        t.apply(&txn(
            op::CREATE_SESSION,
            1,
            7,
            ZkOp::CreateSession { timeout: 9000 },
        ));
        t.apply(&txn(op::CREATE, 2, 7, create("/a", 1, false)));
        t.apply(&txn(op::CREATE, 3, 7, create("/a/e", 1, true)));
        t.apply(&txn(
            op::SET_DATA,
            4,
            7,
            ZkOp::SetData {
                path: "/a".into(),
                data: None,
                version: 1,
            },
        ));
        t.apply(&txn(
            op::DELETE,
            5,
            7,
            ZkOp::Delete {
                path: "/a/e".into(),
            },
        ));
        let a = t.get("/a").unwrap();
        assert_eq!(a.stat.cversion, 1);
        assert_eq!(a.stat.pzxid, 5);
        assert_eq!((a.stat.mzxid, a.stat.version, a.data.clone()), (4, 1, None));
        let root = t.get("/").unwrap();
        assert_eq!((root.stat.cversion, root.stat.pzxid), (1, 2));
        let dt = t.to_data_tree().unwrap();
        assert_eq!(dt.zxid(), 5);
        assert_eq!(dt.session_timeout(7), Some(9000));
        assert_eq!(dt.stat("/a").unwrap().cversion, 2);
    }

    #[test]
    fn fuzzy_replay_tolerates_what_zookeeper_tolerates() {
        // The snapshot already holds /a (created at 2) and the parent's cversion 1.
        let mut t = ZkTree::fresh();
        t.loaded(0, None);
        t.apply(&txn(op::CREATE, 2, 1, create("/a", 1, false)));
        let before = t.digest();
        // Replaying zxid 2 again: NODEEXISTS, parent cversion already 1: no change.
        t.apply(&txn(op::CREATE, 2, 1, create("/a", 1, false)));
        assert_eq!(t.digest(), before);
        // A create whose node exists but whose parentCVersion is ahead moves the parent.
        t.apply(&txn(op::CREATE, 3, 1, create("/a", 5, false)));
        assert_eq!(t.get("/").unwrap().stat.cversion, 5);
        assert_eq!(t.get("/").unwrap().stat.pzxid, 3);
        // Deleting a missing node still moves the parent's pzxid.
        t.apply(&txn(
            op::DELETE,
            4,
            1,
            ZkOp::Delete {
                path: "/gone".into(),
            },
        ));
        assert_eq!(t.get("/").unwrap().stat.pzxid, 4);
        // A multi with an error op applies nothing.
        let d = t.digest();
        t.apply(&txn(
            op::MULTI,
            5,
            1,
            ZkOp::Multi(vec![
                (op::CREATE, create("/m", 6, false)),
                (op::ERROR, ZkOp::Error { err: -110 }),
            ]),
        ));
        assert_eq!(t.digest(), d);
        assert!(t.get("/m").is_none());
    }

    #[test]
    fn close_session_and_dead_sessions() {
        let mut t = ZkTree::fresh();
        t.loaded(0, None);
        t.apply(&txn(
            op::CREATE_SESSION,
            1,
            7,
            ZkOp::CreateSession { timeout: 1 },
        ));
        t.apply(&txn(
            op::CREATE_SESSION,
            2,
            8,
            ZkOp::CreateSession { timeout: 1 },
        ));
        t.apply(&txn(op::CREATE, 3, 7, create("/e7", 1, true)));
        t.apply(&txn(op::CREATE, 4, 8, create("/e8", 2, true)));
        // A 3.4-style close (no paths) removes the session's ephemerals all the same.
        t.apply(&txn(
            op::CLOSE_SESSION,
            5,
            7,
            ZkOp::CloseSession { paths: None },
        ));
        assert!(t.get("/e7").is_none());
        // A session missing from the table (as after a snapshot without it).
        t.sessions.remove(&8);
        assert_eq!(t.kill_dead_sessions(), vec!["/e8".to_string()]);
        assert_eq!(t.get("/").unwrap().stat.pzxid, 5);
        t.to_data_tree().unwrap();
    }

    #[test]
    fn digests_are_checked_after_the_fuzzy_range() {
        let mut t = ZkTree::fresh();
        t.loaded(0, None);
        let mut c = txn(op::CREATE, 1, 1, create("/a", 1, false));
        let mut probe = t.clone();
        probe.apply(&c);
        c.digest = Some(TxnDigest {
            version: 2,
            tree_digest: probe.digest(),
        });
        t.apply(&c);
        assert_eq!(t.report.checked, 1);
        assert!(t.report.mismatches.is_empty());
        let mut bad = txn(op::DELETE, 2, 1, ZkOp::Delete { path: "/a".into() });
        bad.digest = Some(TxnDigest {
            version: 2,
            tree_digest: 42,
        });
        t.apply(&bad);
        assert_eq!(t.report.mismatches.len(), 1);
        // Pending snapshot digest: per-txn digests are not compared until its zxid.
        let mut u = ZkTree::fresh();
        u.loaded(
            0,
            Some(ZxidDigest {
                zxid: 2,
                version: 2,
                digest: 99,
            }),
        );
        u.apply(&bad);
        // The snapshot's digest at its zxid, then (out of the fuzzy state) the txn's own.
        assert_eq!(u.report.checked, 2);
        assert_eq!(u.report.mismatches[0], (2, 99, u.digest()));
    }
}
