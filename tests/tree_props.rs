//! Property tests of the data tree: random request sequences go through `prep` and
//! `apply` as the sequencer would run them, and the tree's invariants are checked after
//! every step, plus the snapshot property (a clone never changes) and deterministic
//! replay (the same txns on a fresh tree give an equal tree).

use bytes::Bytes;
use proptest::prelude::*;
use ringkeeper::prep::{
    prep, prep_close_session, prep_create_session, prep_reap, Caller, PrepConfig,
};
use ringkeeper::proto::records::*;
use ringkeeper::proto::request::{MultiOp, Request};
use ringkeeper::proto::{perms, EventType, OpCode, Stat};
use ringkeeper::tree::{open_acl_unsafe, DataTree, NodeKind};
use ringkeeper::txn::{Txn, TxnOp};

/// The session ids requests come from; a small pool so closes hit sessions with nodes.
const SESSIONS: [i64; 3] = [
    0x0100_0000_0000_0001,
    0x0100_0000_0000_0002,
    0x0200_0000_0000_0003,
];
const NAMES: [&str; 4] = ["a", "b", "c", "s-"];

#[derive(Debug, Clone)]
enum Action {
    OpenSession(usize),
    CloseSession(usize),
    Write { session: usize, op: WriteOp },
    Multi { session: usize, ops: Vec<WriteOp> },
    Reap,
}

#[derive(Debug, Clone)]
enum WriteOp {
    /// Under the `parent`-th existing node; `kind` 0..=6 are create flags with opcode
    /// create, 7 is createContainer, 8 createTTL (persistent sequential TTL).
    Create {
        parent: usize,
        name: usize,
        kind: u8,
        null_data: bool,
    },
    Delete {
        node: usize,
        version: i32,
    },
    SetData {
        node: usize,
        version: i32,
        len: usize,
    },
    SetAcl {
        node: usize,
        version: i32,
        read_only: bool,
    },
    Check {
        node: usize,
        version: i32,
    },
}

fn write_op() -> impl Strategy<Value = WriteOp> {
    prop_oneof![
        4 => (any::<usize>(), 0..NAMES.len(), 0u8..9, any::<bool>())
            .prop_map(|(parent, name, kind, null_data)| WriteOp::Create { parent, name, kind, null_data }),
        2 => (any::<usize>(), -1i32..2).prop_map(|(node, version)| WriteOp::Delete { node, version }),
        2 => (any::<usize>(), -1i32..2, 0usize..4).prop_map(|(node, version, len)| WriteOp::SetData { node, version, len }),
        1 => (any::<usize>(), -1i32..2, any::<bool>())
            .prop_map(|(node, version, read_only)| WriteOp::SetAcl { node, version, read_only }),
        1 => (any::<usize>(), -1i32..2).prop_map(|(node, version)| WriteOp::Check { node, version }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    let s = 0..SESSIONS.len();
    prop_oneof![
        2 => s.clone().prop_map(Action::OpenSession),
        1 => s.clone().prop_map(Action::CloseSession),
        8 => (s.clone(), write_op()).prop_map(|(session, op)| Action::Write { session, op }),
        2 => (s, prop::collection::vec(write_op(), 0..4)).prop_map(|(session, ops)| Action::Multi { session, ops }),
        1 => Just(Action::Reap),
    ]
}

/// Every path in the tree, sorted, found by walking children from the root.
fn all_paths(t: &DataTree) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec!["/".to_string()];
    while let Some(p) = stack.pop() {
        assert!(
            out.len() <= t.len(),
            "walk found more nodes than the tree holds"
        );
        for c in t.children(&p).expect("walked node exists") {
            stack.push(if p == "/" {
                format!("/{c}")
            } else {
                format!("{p}/{c}")
            });
        }
        out.push(p);
    }
    out.sort();
    out
}

fn pick(paths: &[String], i: usize) -> String {
    paths[i % paths.len()].clone()
}

/// A request for `op`, choosing among the tree's current paths so ops mostly hit
/// real nodes (and sometimes reserved ones, which must be refused).
fn to_request(op: &WriteOp, paths: &[String]) -> MultiOp {
    match *op {
        WriteOp::Create {
            parent,
            name,
            kind,
            null_data,
        } => {
            let parent = pick(paths, parent);
            let path = if parent == "/" {
                format!("/{}", NAMES[name])
            } else {
                format!("{parent}/{}", NAMES[name])
            };
            let data = (!null_data).then(|| Bytes::from_static(b"xy"));
            let acl = open_acl_unsafe();
            match kind {
                0..=6 => MultiOp::Create {
                    op: OpCode::Create,
                    req: CreateRequest {
                        path,
                        data,
                        acl,
                        flags: i32::from(kind),
                    },
                },
                7 => MultiOp::Create {
                    op: OpCode::CreateContainer,
                    req: CreateRequest {
                        path,
                        data,
                        acl,
                        flags: 4,
                    },
                },
                _ => MultiOp::CreateTtl(CreateTtlRequest {
                    path,
                    data,
                    acl,
                    flags: 6,
                    ttl: 50,
                }),
            }
        }
        WriteOp::Delete { node, version } => MultiOp::Delete(DeleteRequest {
            path: pick(paths, node),
            version,
        }),
        WriteOp::SetData { node, version, len } => MultiOp::SetData(SetDataRequest {
            path: pick(paths, node),
            data: Some(Bytes::from(vec![7u8; len])),
            version,
        }),
        WriteOp::SetAcl { node, version, .. } | WriteOp::Check { node, version } => {
            MultiOp::Check(CheckVersionRequest {
                path: pick(paths, node),
                version,
            })
        }
    }
}

fn single(op: &WriteOp, paths: &[String]) -> Request {
    if let WriteOp::SetAcl {
        node,
        version,
        read_only,
    } = *op
    {
        let mut acl = open_acl_unsafe();
        if read_only {
            acl[0].perms = perms::READ | perms::ADMIN;
        }
        return Request::SetAcl(SetAclRequest {
            path: pick(paths, node),
            acl,
            version,
        });
    }
    match to_request(op, paths) {
        MultiOp::Create { op, req } => Request::Create { op, req },
        MultiOp::CreateTtl(r) => Request::CreateTtl(r),
        MultiOp::Delete(r) => Request::Delete(r),
        MultiOp::SetData(r) => Request::SetData(r),
        MultiOp::Check(r) => Request::Check(r),
        other => unreachable!("{other:?}"),
    }
}

/// What a snapshot shows: every node's path, Stat, data and ACL, and the sessions.
type Listing = (Vec<(String, Stat, Option<Bytes>, usize)>, Vec<(i64, i32)>);

fn listing(t: &DataTree) -> Listing {
    let nodes = all_paths(t)
        .into_iter()
        .map(|p| {
            let n = t.get(&p).unwrap();
            (
                p.clone(),
                n.stat(),
                n.data().map(Bytes::copy_from_slice),
                n.acl().len(),
            )
        })
        .collect();
    (nodes, t.sessions().collect())
}

fn check_invariants(t: &DataTree) {
    let paths = all_paths(t);
    assert_eq!(
        paths.len(),
        t.len(),
        "every node is reachable from the root"
    );
    assert_eq!(t.node_count(), paths.len() + 1);
    let mut data_size = 0i64;
    let mut ephemerals = 0usize;
    for p in &paths {
        let n = t.get(p).unwrap();
        let st = n.stat();
        data_size += p.len() as i64 + n.data_len() as i64;
        assert_eq!(st.num_children as usize, n.num_children(), "{p}");
        assert_eq!(st.data_length as usize, n.data_len(), "{p}");
        assert!(st.pzxid >= st.czxid && st.mzxid >= st.czxid, "{p}: {st:?}");
        if p != "/" && !p.starts_with("/zookeeper") {
            // Stored cversion counts creates, so it covers the children still present.
            assert!(n.cversion() as usize >= n.num_children(), "{p}");
        }
        let names = t.children(p).expect("listed node exists");
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted, "{p}: children sorted by name, once each");
        assert_eq!(names.len(), n.num_children(), "{p}");
        for name in &names {
            let cp = if p == "/" {
                format!("/{name}")
            } else {
                format!("{p}/{name}")
            };
            let child = t.get(&cp).expect("a listed child exists at its path");
            assert_eq!(child.name(), name);
            assert!(
                n.fields().pzxid >= child.fields().czxid,
                "parent {p} pzxid older than child {cp}"
            );
        }
        match n.kind() {
            NodeKind::Ephemeral(s) => {
                ephemerals += 1;
                assert!(
                    t.session_timeout(s).is_some(),
                    "{p} owned by dead session {s:#x}"
                );
                assert!(t.ephemerals_of(s).contains(p), "{p} not indexed");
                assert_eq!(n.num_children(), 0, "ephemeral {p} has children");
            }
            NodeKind::Container => assert!(t.containers().contains(p)),
            NodeKind::Ttl(_) => assert!(t.ttls().contains(p)),
            NodeKind::Persistent => {}
        }
    }
    assert_eq!(t.ephemeral_count(), ephemerals);
    let indexed: usize = t.sessions().map(|(s, _)| t.ephemerals_of(s).len()).sum();
    assert_eq!(indexed, ephemerals, "index lists only live sessions' nodes");
    assert_eq!(t.approximate_data_size(), data_size);
    assert_eq!(t.digest(), t.recompute_digest());
}

/// Parent stat rules for a committed single create or delete: visible cversion +1,
/// pzxid = the txn's zxid.
fn check_parent_rule(before: &DataTree, after: &DataTree, txn: &Txn) {
    let path = match &txn.op {
        TxnOp::Create { path, .. } | TxnOp::Delete { path } | TxnOp::DeleteContainer { path } => {
            path
        }
        _ => return,
    };
    let parent = ringkeeper::tree::parent_of(path).unwrap();
    let (b, a) = (before.stat(parent).unwrap(), after.stat(parent).unwrap());
    assert_eq!(
        a.cversion,
        b.cversion + 1,
        "{parent} cversion after {:?}",
        txn.op
    );
    assert_eq!(a.pzxid, txn.zxid);
    assert_eq!(a.mzxid, b.mzxid, "children changes leave mzxid");
    assert_eq!(a.version, b.version);
}

struct Run {
    tree: DataTree,
    log: Vec<Txn>,
    snapshots: Vec<(DataTree, Listing)>,
    cfg: PrepConfig,
    step: i64,
}

impl Run {
    fn commit(&mut self, session_id: i64, op: TxnOp) {
        let txn = Txn {
            session_id,
            cxid: self.log.len() as i32,
            zxid: self.tree.zxid() + 1,
            time_ms: self.step * 10,
            op,
        };
        let before = self.tree.clone();
        let applied = self.tree.apply(&txn);
        check_parent_rule(&before, &self.tree, &txn);
        // The last created/deleted event of each path says what the txn left there (a
        // multi may delete a node and create it again, firing both).
        let mut last = std::collections::BTreeMap::new();
        for trig in &applied.triggers {
            if matches!(trig.event, EventType::NodeCreated | EventType::NodeDeleted) {
                last.insert(trig.path.clone(), trig.event);
            }
        }
        for (path, event) in last {
            assert_eq!(
                self.tree.exists(&path),
                event == EventType::NodeCreated,
                "{path} after {event:?} in {:?}",
                txn.op
            );
        }
        self.log.push(txn);
    }

    fn step(&mut self, a: &Action) {
        self.step += 1;
        let paths = all_paths(&self.tree);
        let now = self.step * 10;
        match a {
            Action::OpenSession(s) => {
                if let Ok(op) = prep_create_session(&self.tree, SESSIONS[*s], 30_000) {
                    self.commit(SESSIONS[*s], op);
                }
            }
            Action::CloseSession(s) => {
                if let Ok(op) = prep_close_session(&self.tree, SESSIONS[*s]) {
                    self.commit(SESSIONS[*s], op);
                    assert!(self.tree.ephemerals_of(SESSIONS[*s]).is_empty());
                }
            }
            Action::Write { session, op } => {
                let req = single(op, &paths);
                let caller = Caller {
                    session_id: SESSIONS[*session],
                    ids: &[],
                    local: false,
                    no_ephemeral: false,
                };
                if let Ok(op) = prep(&self.tree, &self.cfg, &caller, &req, now) {
                    self.commit(SESSIONS[*session], op);
                }
            }
            Action::Multi { session, ops } => {
                let req = Request::Multi(ops.iter().map(|o| to_request(o, &paths)).collect());
                let caller = Caller {
                    session_id: SESSIONS[*session],
                    ids: &[],
                    local: false,
                    no_ephemeral: false,
                };
                match prep(&self.tree, &self.cfg, &caller, &req, now) {
                    Ok(op) => self.commit(SESSIONS[*session], op),
                    Err(e) => {
                        let results = e.multi.expect("a failed multi has per-op results");
                        assert_eq!(results.len(), ops.len());
                    }
                }
            }
            Action::Reap => {
                for p in self.tree.reap_candidates(now, 0) {
                    let op =
                        prep_reap(&self.tree, &self.cfg, &p, now).expect("candidate passes prep");
                    self.commit(0, op);
                }
            }
        }
        check_invariants(&self.tree);
        let l = listing(&self.tree);
        self.snapshots.push((self.tree.clone(), l));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_keep_the_invariants(actions in prop::collection::vec(action(), 1..40)) {
        let mut run = Run {
            tree: DataTree::new(),
            log: vec![],
            snapshots: vec![],
            cfg: PrepConfig { extended_types_enabled: true, ..PrepConfig::default() },
            step: 0,
        };
        for a in &actions {
            run.step(a);
        }
        // Snapshot property: later applies never changed an earlier clone.
        for (snap, l) in &run.snapshots {
            prop_assert_eq!(&listing(snap), l);
            prop_assert_eq!(snap.digest(), snap.recompute_digest());
        }
        // Replay: the same txns on a fresh tree give an equal tree.
        let mut replica = DataTree::new();
        for txn in &run.log {
            replica.apply(txn);
        }
        prop_assert_eq!(replica.digest(), run.tree.digest());
        prop_assert!(replica == run.tree);
    }
}

#[test]
fn digest_distinguishes_trees_that_differ_in_one_field() {
    let mut a = DataTree::new();
    let mut b = DataTree::new();
    let mk = |data: &'static [u8]| Txn {
        session_id: 0,
        cxid: 0,
        zxid: 1,
        time_ms: 5,
        op: TxnOp::Create {
            path: "/x".into(),
            data: Some(Bytes::from_static(data)),
            acl: open_acl_unsafe(),
            ephemeral_owner: 0,
        },
    };
    a.apply(&mk(b"1"));
    b.apply(&mk(b"2"));
    assert_ne!(a.digest(), b.digest());
    assert_ne!(a.digest(), DataTree::new().digest());
}

/// One step of the model test: create or delete a child (by number) under one of a few
/// parents, or set its data. Parents get up to 3000 children, so children lists split
/// into several chunks (1024 ids each) and freed node ids are reused.
#[derive(Debug, Clone)]
enum Step {
    Create {
        parent: u8,
        child: u16,
        len: u8,
    },
    Delete {
        parent: u8,
        child: u16,
    },
    Set {
        parent: u8,
        child: u16,
        len: u8,
    },
    /// Create children `from..from + count` that are missing (a burst, so that lists
    /// pass a chunk's 1024 ids).
    Fill {
        parent: u8,
        from: u16,
        count: u16,
    },
    /// Keep a frozen copy of the tree here, checked at the end.
    Freeze,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..3, 0u16..3000, any::<u8>()).prop_map(|(parent, child, len)| Step::Create { parent, child, len }),
        3 => (0u8..3, 0u16..3000).prop_map(|(parent, child)| Step::Delete { parent, child }),
        2 => (0u8..3, 0u16..3000, any::<u8>()).prop_map(|(parent, child, len)| Step::Set { parent, child, len }),
        1 => (0u8..3, 0u16..3000, 0u16..1500).prop_map(|(parent, from, count)| Step::Fill { parent, from, count }),
        1 => Just(Step::Freeze),
    ]
}

type Model = std::collections::BTreeMap<String, Vec<u8>>;

/// The tree against a plain map of path -> data: the same nodes, data, children (sorted,
/// through the chunked lists), counts; a frozen clone still equal to the model of its
/// moment; and a snapshot (format 2, and the previous format 1) loading back equal.
fn check_against(t: &DataTree, m: &Model) {
    assert_eq!(
        t.len(),
        m.len() + 7,
        "the 4 nodes of a fresh tree and /p0, /p1, /p2"
    );
    for (p, d) in m {
        let n = t.get(p).unwrap_or_else(|| panic!("{p} missing"));
        assert_eq!(n.data(), Some(&d[..]), "{p}");
    }
    for parent in 0..3 {
        let pp = format!("/p{parent}");
        let want: Vec<String> = m
            .keys()
            .filter_map(|k| k.strip_prefix(&format!("{pp}/")).map(str::to_string))
            .collect();
        assert_eq!(t.children(&pp).unwrap(), want, "{pp}");
        assert_eq!(t.all_children_number(&pp), Some(want.len()));
    }
    assert_eq!(t.all_children_number("/"), Some(t.len() - 1));
    assert_eq!(t.digest(), t.recompute_digest());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn the_tree_matches_a_map_model(steps in prop::collection::vec(step(), 1..400)) {
        let mut t = DataTree::new();
        let mut m = Model::new();
        let mut zxid = 0i64;
        let mut frozen: Vec<(DataTree, Model)> = Vec::new();
        let mut run = |t: &mut DataTree, op: TxnOp| {
            zxid += 1;
            t.apply(&Txn { session_id: 0, cxid: 0, zxid, time_ms: zxid * 10, op });
        };
        for p in 0..3 {
            run(&mut t, TxnOp::Create {
                path: format!("/p{p}"),
                data: None,
                acl: open_acl_unsafe(),
                ephemeral_owner: 0,
            });
        }
        for s in steps {
            match s {
                Step::Create { parent, child, len } => {
                    let path = format!("/p{parent}/c{child:05}");
                    if let std::collections::btree_map::Entry::Vacant(e) = m.entry(path.clone()) {
                        let data = vec![len; len as usize];
                        e.insert(data.clone());
                        run(&mut t, TxnOp::Create {
                            path,
                            data: Some(Bytes::from(data)),
                            acl: open_acl_unsafe(),
                            ephemeral_owner: 0,
                        });
                    }
                }
                Step::Delete { parent, child } => {
                    let path = format!("/p{parent}/c{child:05}");
                    if m.remove(&path).is_some() {
                        run(&mut t, TxnOp::Delete { path });
                    }
                }
                Step::Set { parent, child, len } => {
                    let path = format!("/p{parent}/c{child:05}");
                    if let Some(d) = m.get_mut(&path) {
                        *d = vec![len ^ 0x5a; len as usize / 2];
                        run(&mut t, TxnOp::SetData {
                            path,
                            data: Some(Bytes::from(d.clone())),
                            version: 1,
                        });
                    }
                }
                Step::Fill { parent, from, count } => {
                    for child in from..from.saturating_add(count).min(3000) {
                        let path = format!("/p{parent}/c{child:05}");
                        if let std::collections::btree_map::Entry::Vacant(e) = m.entry(path.clone()) {
                            e.insert(Vec::new());
                            run(&mut t, TxnOp::Create {
                                path,
                                data: Some(Bytes::new()),
                                acl: open_acl_unsafe(),
                                ephemeral_owner: 0,
                            });
                        }
                    }
                }
                Step::Freeze => frozen.push((t.clone(), m.clone())),
            }
        }
        check_against(&t, &m);
        // The last few frozen copies (checking each costs as much as the tree).
        for (ft, fm) in frozen.iter().rev().take(3) {
            check_against(ft, fm);
        }
        let mut v2 = Vec::new();
        ringkeeper::storage::snapshot::write_to(&t, &mut v2).unwrap();
        let loaded = ringkeeper::storage::snapshot::read_from(&v2[..]).unwrap();
        prop_assert!(loaded == t);
        check_against(&loaded, &m);
        let mut v1 = Vec::new();
        ringkeeper::storage::snapshot::write_v1_to(&t, &mut v1).unwrap();
        prop_assert!(ringkeeper::storage::snapshot::read_from(&v1[..]).unwrap() == t);
        prop_assert!(DataTree::restore(t.zxid(), t.nodes(), t.sessions()).unwrap() == t);
    }
}
