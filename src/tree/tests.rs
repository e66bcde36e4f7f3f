//! Unit tests of txn application: each pins one ZooKeeper Stat or bookkeeping rule.

use super::*;
use crate::proto::{EventType, CONTAINER_EPHEMERAL_OWNER};
use crate::txn::{OpResult, Txn, TxnOp};

const S1: i64 = 0x0100_0000_0000_0001;

struct Seq {
    tree: DataTree,
    zxid: i64,
}

impl Seq {
    fn new() -> Seq {
        Seq {
            tree: DataTree::new(),
            zxid: 0,
        }
    }
    fn run(&mut self, session_id: i64, op: TxnOp) -> Applied {
        self.zxid += 1;
        let txn = Txn {
            session_id,
            cxid: 0,
            zxid: self.zxid,
            time_ms: 1000 + self.zxid,
            op,
        };
        self.tree.apply(&txn)
    }
    fn create(&mut self, path: &str, owner: i64) -> Applied {
        self.run(
            S1,
            TxnOp::Create {
                path: path.into(),
                data: Some(Bytes::from_static(b"d")),
                acl: open_acl_unsafe(),
                ephemeral_owner: owner,
            },
        )
    }
    fn delete(&mut self, path: &str) -> Applied {
        self.run(S1, TxnOp::Delete { path: path.into() })
    }
}

#[test]
fn fresh_tree_matches_a_fresh_zookeeper() {
    let t = DataTree::new();
    assert_eq!(t.node_count(), 5);
    assert_eq!(t.approximate_data_size(), 44);
    assert_eq!(t.children("/").unwrap(), vec!["zookeeper"]);
    assert_eq!(t.children("/zookeeper").unwrap(), vec!["config", "quota"]);
    let root = t.stat("/").unwrap();
    assert_eq!((root.cversion, root.num_children), (-1, 1));
    assert_eq!(t.stat("/zookeeper").unwrap().cversion, -2);
    let (acl, st) = t.acl("/zookeeper/config").unwrap();
    assert_eq!(*acl, read_acl_unsafe());
    assert_eq!(st.aversion, -1);
    assert_eq!(t.data("/").unwrap().0, Some(Bytes::new()));
    assert_eq!(t.get("").unwrap().num_children(), 1, "\"\" names the root");
    assert_eq!(t.all_children_number("/"), Some(3));
    assert_eq!(t.digest(), t.recompute_digest());
}

#[test]
fn create_sets_node_and_parent_stats() {
    let mut s = Seq::new();
    s.create("/p", 0);
    let a = s.create("/p/a", 0);
    let st = s.tree.stat("/p/a").unwrap();
    assert_eq!(
        a.result,
        OpResult::Created {
            path: "/p/a".into(),
            stat: st.clone()
        }
    );
    assert_eq!((st.czxid, st.mzxid, st.pzxid), (2, 2, 2));
    assert_eq!((st.ctime, st.mtime), (1002, 1002));
    assert_eq!((st.version, st.cversion, st.aversion), (0, 0, 0));
    assert_eq!(st.data_length, 1);
    let p = s.tree.stat("/p").unwrap();
    assert_eq!((p.cversion, p.pzxid, p.num_children, p.mzxid), (1, 2, 1, 1));
    assert_eq!(
        a.triggers,
        vec![
            Trigger {
                path: "/p/a".into(),
                event: EventType::NodeCreated,
                acl: Arc::new(open_acl_unsafe()),
            },
            Trigger {
                path: "/p".into(),
                event: EventType::NodeChildrenChanged,
                acl: Arc::new(open_acl_unsafe()),
            },
        ]
    );
}

#[test]
fn visible_cversion_counts_creates_and_deletes() {
    // Real ZooKeeper 3.8: two creates and one delete under /p show cversion 3, pzxid of
    // the delete, and the next sequential suffix is 2 (the stored create count).
    let mut s = Seq::new();
    s.create("/p", 0);
    s.create("/p/a", 0);
    s.create("/p/b", 0);
    let d = s.delete("/p/a");
    let p = s.tree.stat("/p").unwrap();
    assert_eq!((p.cversion, p.pzxid, p.num_children), (3, 4, 1));
    assert_eq!(s.tree.get("/p").unwrap().cversion(), 2);
    assert_eq!(
        d.triggers,
        vec![
            Trigger {
                path: "/p/a".into(),
                event: EventType::NodeDeleted,
                acl: Arc::new(open_acl_unsafe()),
            },
            Trigger {
                path: "/p".into(),
                event: EventType::NodeChildrenChanged,
                acl: Arc::new(open_acl_unsafe()),
            },
        ]
    );
    assert_eq!(d.result, OpResult::Deleted);
}

#[test]
fn root_children_trigger_on_slash() {
    let mut s = Seq::new();
    let a = s.create("/x", 0);
    assert_eq!(a.triggers[1].path, "/");
    let d = s.delete("/x");
    assert_eq!(d.triggers[1].path, "/");
}

#[test]
fn set_data_and_set_acl_touch_only_their_fields() {
    let mut s = Seq::new();
    s.create("/n", 0);
    let r = s.run(
        S1,
        TxnOp::SetData {
            path: "/n".into(),
            data: None,
            version: 1,
        },
    );
    let st = s.tree.stat("/n").unwrap();
    assert_eq!(r.result, OpResult::Stat(st.clone()));
    assert_eq!(
        (st.version, st.mzxid, st.mtime, st.czxid, st.data_length),
        (1, 2, 1002, 1, 0)
    );
    assert_eq!(s.tree.data("/n").unwrap().0, None, "null data stays null");
    assert_eq!(
        r.triggers,
        vec![Trigger {
            path: "/n".into(),
            event: EventType::NodeDataChanged,
            acl: Arc::new(open_acl_unsafe()),
        }]
    );
    let acl = read_acl_unsafe();
    let r = s.run(
        S1,
        TxnOp::SetAcl {
            path: "/n".into(),
            acl: acl.clone(),
            aversion: 1,
        },
    );
    let st2 = s.tree.stat("/n").unwrap();
    assert_eq!(r.result, OpResult::Stat(st2.clone()));
    assert!(r.triggers.is_empty());
    assert_eq!((st2.aversion, st2.mzxid, st2.version), (1, 2, 1));
    assert_eq!(*s.tree.acl("/n").unwrap().0, acl);
    assert_eq!(s.tree.digest(), s.tree.recompute_digest());
}

#[test]
fn ephemerals_are_indexed_and_deleted_by_close_session() {
    let mut s = Seq::new();
    s.run(S1, TxnOp::CreateSession { timeout_ms: 30_000 });
    s.create("/p", 0);
    s.create("/p/e2", S1);
    s.create("/e1", S1);
    assert_eq!(s.tree.ephemerals_of(S1), vec!["/e1", "/p/e2"]);
    assert_eq!(s.tree.ephemerals_with_prefix(S1, "/p"), vec!["/p/e2"]);
    assert_eq!(
        s.tree.ephemerals_with_prefix(S1, " / "),
        vec!["/e1", "/p/e2"]
    );
    assert_eq!(s.tree.ephemeral_count(), 2);
    assert_eq!(s.tree.stat("/e1").unwrap().ephemeral_owner, S1);
    let r = s.run(
        S1,
        TxnOp::CloseSession {
            ephemerals: s.tree.ephemerals_of(S1),
        },
    );
    assert_eq!(r.result, OpResult::Done);
    assert!(!s.tree.exists("/e1") && !s.tree.exists("/p/e2"));
    assert_eq!(s.tree.ephemeral_count(), 0);
    assert_eq!(s.tree.session_timeout(S1), None);
    assert_eq!(s.tree.stat("/p").unwrap().pzxid, s.zxid);
    assert_eq!(r.triggers.len(), 4);
    assert_eq!(s.tree.digest(), s.tree.recompute_digest());
}

#[test]
fn containers_and_ttls_show_owner_zero_and_are_reaped_by_rule() {
    let mut s = Seq::new();
    s.create("/c", CONTAINER_EPHEMERAL_OWNER);
    s.create("/t", ttl_owner(100));
    assert_eq!(s.tree.stat("/c").unwrap().ephemeral_owner, 0);
    assert_eq!(s.tree.stat("/t").unwrap().ephemeral_owner, 0);
    assert_eq!(s.tree.containers(), vec!["/c"]);
    assert_eq!(s.tree.ttls(), vec!["/t"]);
    // ctime of /t is 1002: expired only once more than 100 ms have passed.
    assert!(s.tree.reap_candidates(1102, 0).is_empty());
    assert_eq!(s.tree.reap_candidates(1103, 0), vec!["/t"]);
    // A container that never had children is kept unless the never-used rule is on.
    assert_eq!(s.tree.reap_candidates(1103, 50), vec!["/c", "/t"]);
    s.create("/c/x", 0);
    assert!(!s.tree.is_reap_candidate("/c", 9999, 0), "not empty");
    s.delete("/c/x");
    assert!(
        s.tree.is_reap_candidate("/c", 0, 0),
        "had children, now empty"
    );
    s.run(S1, TxnOp::DeleteContainer { path: "/c".into() });
    assert!(s.tree.containers().is_empty());
}

#[test]
fn multi_applies_in_order_with_one_zxid() {
    let mut s = Seq::new();
    let r = s.run(
        S1,
        TxnOp::Multi(vec![
            TxnOp::Create {
                path: "/m".into(),
                data: None,
                acl: open_acl_unsafe(),
                ephemeral_owner: 0,
            },
            TxnOp::Check { path: "/m".into() },
            TxnOp::SetData {
                path: "/m".into(),
                data: Some(Bytes::from_static(b"x")),
                version: 1,
            },
            TxnOp::Delete { path: "/m".into() },
        ]),
    );
    let OpResult::Multi(rs) = r.result else {
        panic!("not a multi result")
    };
    assert_eq!(rs.len(), 4);
    assert!(matches!(&rs[0], OpResult::Created { stat, .. } if stat.czxid == 1));
    assert_eq!(rs[1], OpResult::Checked);
    assert!(matches!(&rs[2], OpResult::Stat(st) if st.version == 1 && st.mzxid == 1));
    assert_eq!(rs[3], OpResult::Deleted);
    assert!(!s.tree.exists("/m"));
    assert_eq!(r.triggers.len(), 5);
    assert_eq!(s.tree.zxid(), 1);
}

#[test]
fn a_clone_is_a_frozen_snapshot() {
    let mut s = Seq::new();
    s.create("/a", 0);
    let snap = s.tree.clone();
    let digest = snap.digest();
    s.create("/a/b", 0);
    s.run(
        S1,
        TxnOp::SetData {
            path: "/a".into(),
            data: None,
            version: 1,
        },
    );
    assert!(!snap.exists("/a/b"));
    assert_eq!(snap.stat("/a").unwrap().version, 0);
    assert_eq!(snap.digest(), digest);
    assert_ne!(s.tree.digest(), digest);
}

#[test]
fn identical_acls_are_shared() {
    let mut s = Seq::new();
    s.create("/a", 0);
    s.create("/b", 0);
    let a = s.tree.get("/a").unwrap().acl().clone();
    let b = s.tree.get("/b").unwrap().acl().clone();
    assert!(Arc::ptr_eq(&a, &b));
}

#[test]
fn all_children_number_counts_descendants() {
    let mut s = Seq::new();
    s.create("/a", 0);
    s.create("/a/b", 0);
    s.create("/a/b/c", 0);
    s.create("/ab", 0);
    assert_eq!(s.tree.all_children_number("/a"), Some(2));
    assert_eq!(s.tree.all_children_number("/"), Some(7));
    assert_eq!(s.tree.all_children_number("/nope"), None);
}

#[test]
fn ttl_owner_round_trips_and_kinds_classify() {
    assert_eq!(NodeKind::of_owner(ttl_owner(5)), NodeKind::Ttl(5));
    assert_eq!(
        NodeKind::of_owner(ttl_owner(crate::proto::MAX_TTL_MS)),
        NodeKind::Ttl(crate::proto::MAX_TTL_MS)
    );
    assert_eq!(NodeKind::of_owner(0), NodeKind::Persistent);
    assert_eq!(NodeKind::of_owner(i64::MIN), NodeKind::Container);
    assert_eq!(NodeKind::of_owner(S1), NodeKind::Ephemeral(S1));
    // Extended mask with reserved bits set is not a TTL.
    let odd = TTL_MASK | (1 << 40);
    assert_eq!(NodeKind::of_owner(odd), NodeKind::Ephemeral(odd));
}

#[test]
#[should_panic(expected = "create of existing /a")]
fn create_of_existing_path_panics() {
    let mut s = Seq::new();
    s.create("/a", 0);
    s.create("/a", 0);
}

#[test]
#[should_panic(expected = "dead session")]
fn ephemeral_of_unknown_session_panics() {
    let mut s = Seq::new();
    s.create("/e", S1);
}

#[test]
#[should_panic(expected = "with 1 children")]
fn delete_of_non_empty_panics() {
    let mut s = Seq::new();
    s.create("/a", 0);
    s.create("/a/b", 0);
    s.delete("/a");
}

#[test]
fn inlined_crc32c_equals_the_crate() {
    let data: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for seed in [0u32, 1, 0x8422_2325, 0xcbf2_9ce4 ^ 0x9e37_79b9, u32::MAX] {
        for len in 0..data.len() {
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("sse4.2") && len <= 256 {
                let other = seed.rotate_left(7) ^ 0x9e37_79b9;
                // SAFETY: the CPU has SSE4.2, checked just above.
                let pair = unsafe { super::crc32c_sse42_pair(seed, other, &data[..len]) };
                assert_eq!(
                    pair,
                    (
                        crc32c::crc32c_append(seed, &data[..len]),
                        crc32c::crc32c_append(other, &data[..len])
                    ),
                    "pair, seed {seed:#x} len {len}"
                );
            }
        }
    }
}

/// The digest is stored in snapshots and compared between replicas: the inlined hash
/// must give exactly what the crate-only one does, for every field length (the long
/// data goes to the crate in both), and what it gave before it was inlined (pinned).
#[test]
fn inlined_node_hash_equals_the_portable_one() {
    use super::{full_node_hash, node_hash_with, session_hash, session_hash_with, Portable};
    let bytes: Vec<u8> = (0..700u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let acls = [
        vec![],
        open_acl_unsafe().to_vec(),
        vec![
            Acl {
                perms: 31,
                id: crate::proto::Id {
                    scheme: "digest".into(),
                    id: "user:0123456789abcdefghijklmno=".into(),
                },
            },
            Acl {
                perms: 1,
                id: crate::proto::Id {
                    scheme: "ip".into(),
                    id: "127.0.0.1/8".into(),
                },
            },
        ],
    ];
    let mut f = Fields {
        czxid: 0x1_0000_0002,
        mzxid: 0x7fff_ffff_ffff_fff0,
        pzxid: -1,
        ctime: 1_733_390_000_000,
        mtime: 1_733_390_000_123,
        ephemeral_owner: 0x0100_0000_0000_0001,
        version: 7,
        cversion: -3,
        aversion: i32::MAX,
    };
    for (i, len) in (0..300).chain([511, 512, 513, 699]).enumerate() {
        let path = &bytes[i % 50..i % 50 + (i % 40)];
        f.version = i as i32;
        for acl in &acls {
            for data in [None, Some(&bytes[..len])] {
                // SAFETY: `Portable` has no requirement.
                let portable = unsafe { node_hash_with::<Portable>(path, data, acl, &f) };
                assert_eq!(full_node_hash(path, data, acl, &f), portable, "len {len}");
            }
        }
        let id = (i as i64).wrapping_mul(0x1e37_79b9_7f4a_7c15);
        // SAFETY: as above.
        let portable = unsafe { session_hash_with::<Portable>(id, i as i32) };
        assert_eq!(session_hash(id, i as i32), portable);
    }
    // Values of the hash before it was inlined.
    f.version = 7;
    assert_eq!(
        full_node_hash(b"/zkbench/key-00000001", Some(b"data"), &acls[1], &f),
        PINNED_NODE
    );
    assert_eq!(session_hash(0x0100_0000_0000_0001, 30_000), PINNED_SESSION);
}

const PINNED_NODE: u64 = 5425144434188636829;
const PINNED_SESSION: u64 = 11281288572682040478;

#[test]
fn triggers_carry_the_acl_a_watcher_must_read() {
    // ZooKeeper's DataTree (3.9.2+, CVE-2024-23944): the node's ACL for its own events
    // (a deleted node's as it was), the parent's for NodeChildrenChanged.
    let mut s = Seq::new();
    let secret = vec![Acl {
        perms: crate::proto::perms::WRITE | crate::proto::perms::CREATE,
        id: crate::proto::Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }];
    let c = s.run(
        S1,
        TxnOp::Create {
            path: "/p".into(),
            data: None,
            acl: secret.clone(),
            ephemeral_owner: 0,
        },
    );
    assert_eq!(
        *c.triggers[0].acl, secret,
        "NodeCreated: the new node's ACL"
    );
    assert_eq!(
        *c.triggers[1].acl,
        open_acl_unsafe(),
        "children of /: the root's"
    );
    let c = s.create("/p/a", 0);
    assert_eq!(*c.triggers[0].acl, open_acl_unsafe());
    assert_eq!(
        *c.triggers[1].acl, secret,
        "NodeChildrenChanged: the parent's ACL"
    );
    let w = s.run(
        S1,
        TxnOp::SetData {
            path: "/p".into(),
            data: None,
            version: 1,
        },
    );
    assert_eq!(*w.triggers[0].acl, secret);
    let d = s.delete("/p/a");
    assert_eq!(
        *d.triggers[0].acl,
        open_acl_unsafe(),
        "the deleted node's ACL"
    );
    assert_eq!(*d.triggers[1].acl, secret);
    let d = s.delete("/p");
    assert_eq!(*d.triggers[0].acl, secret);
}

#[test]
fn a_found_node_is_applied_without_a_lookup_and_a_stale_hint_is_ignored() {
    let mut s = Seq::new();
    s.create("/a", 0);
    s.create("/b", 0);
    let txn = |zxid, op| Txn {
        session_id: S1,
        cxid: 0,
        zxid,
        time_ms: 5000,
        op,
    };
    let set = |path: &str| TxnOp::SetData {
        path: path.into(),
        data: Some(Bytes::from_static(b"new")),
        version: 1,
    };
    // A fresh hint: the same result as a plain apply.
    let mut plain = s.tree.clone();
    let (_, found) = s.tree.find("/a").unwrap();
    let t = txn(10, set("/a"));
    assert_eq!(s.tree.apply_found(&t, Some(found)), plain.apply(&t));
    assert!(s.tree == plain);
    // With the node's fields decoded at validation, the same again.
    let (_, fields, found) = s.tree.find_fields("/a").unwrap();
    assert_eq!(fields, s.tree.get("/a").unwrap().fields());
    let t = txn(11, set("/a"));
    assert_eq!(s.tree.apply_found(&t, Some(found)), plain.apply(&t));
    assert!(s.tree == plain);
    assert_eq!(s.tree.recompute_digest(), s.tree.digest());
    // A hint from an older version: /a's id was freed and reused by /c, so the hint
    // now names another node; the tree looks the path up instead of trusting it.
    let (_, stale) = s.tree.find("/b").unwrap();
    s.zxid = 11;
    s.delete("/b");
    s.create("/c", 0);
    let (_, c) = s.tree.find("/c").unwrap();
    assert_eq!(
        c,
        Found {
            id: stale.id,
            zxid: s.tree.zxid(),
            fields: None,
        },
        "the id is reused"
    );
    let mut plain = s.tree.clone();
    let t = txn(20, set("/a"));
    let stale_here = Found {
        id: stale.id,
        zxid: s.tree.zxid(),
        fields: None,
    };
    assert_eq!(s.tree.apply_found(&t, Some(stale_here)), plain.apply(&t));
    assert_eq!(s.tree.get("/a").unwrap().data(), Some(&b"new"[..]));
    assert_eq!(s.tree.get("/c").unwrap().data(), Some(&b"d"[..]));
    // A hint whose zxid is not the tree's is not used either, and a create takes
    // its parent's hint.
    let (_, root) = s.tree.find("/").unwrap();
    let t = txn(
        21,
        TxnOp::Create {
            path: "/d".into(),
            data: None,
            acl: open_acl_unsafe(),
            ephemeral_owner: 0,
        },
    );
    assert_eq!(s.tree.apply_found(&t, Some(root)), plain.apply(&t));
    assert!(s.tree == plain);
    assert_eq!(s.tree.recompute_digest(), s.tree.digest());
}
