//! Unit tests of the core's rules that do not need a network: durability before an
//! answer, backpressure, log failures, and a one-voter ensemble renewing its epoch.
//! Whole ensembles with faults run in `tests/server_sim.rs`.

use super::*;
use crate::proto::records::{CreateRequest, SetDataRequest};
use crate::zab::Ensemble as Members;
use std::sync::Arc;
use std::time::Instant;

fn config() -> CoreConfig {
    CoreConfig {
        server_id: 1,
        tick_ms: 2000,
        min_session_timeout_ms: 4000,
        max_session_timeout_ms: 40_000,
        prep: PrepConfig::default(),
        container_check_interval_ms: 60_000,
        container_max_per_check: 100,
        snapshots: None,
        ensemble: None,
        max_inflight: MAX_INFLIGHT,
        read_only: false,
        local_sessions: false,
        local_upgrading: false,
        roots_after_ask_ms: ROOTS_AFTER_ASK_MS,
        rollback_root_txns: ROLLBACK_ROOT_TXNS,
        broken: Broken::default(),
    }
}

fn conn(slot: usize) -> ConnRef {
    ConnRef {
        shard: 0,
        slot,
        gen: 1,
    }
}

fn connect(slot: usize) -> Input {
    Input::Shard(ToSeq::Connect {
        conn: conn(slot),
        req: ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms: 10_000,
            session_id: 0,
            passwd: None,
            read_only: None,
        },
        received: Instant::now(),
    })
}

fn origin(slot: usize, xid: i32, op: OpCode) -> Origin {
    Origin {
        conn: conn(slot),
        xid,
        op,
        received: Instant::now(),
    }
}

fn create(slot: usize, session_id: i64, xid: i32, path: &str) -> Input {
    Input::Shard(ToSeq::Request {
        origin: origin(slot, xid, OpCode::Create),
        session_id,
        req: Request::Create {
            op: OpCode::Create,
            req: CreateRequest {
                path: path.into(),
                data: Some(bytes::Bytes::from_static(b"x")),
                acl: crate::tree::open_acl_unsafe(),
                flags: 0,
            },
        },
        ids: Arc::new(Vec::new()),
    })
}

fn set(slot: usize, session_id: i64, xid: i32, path: &str) -> Input {
    Input::Shard(ToSeq::Request {
        origin: origin(slot, xid, OpCode::SetData),
        session_id,
        req: Request::SetData(SetDataRequest {
            path: path.into(),
            data: Some(bytes::Bytes::from_static(b"y")),
            version: -1,
        }),
        ids: Arc::new(Vec::new()),
    })
}

/// Runs a pass over `inputs` and returns its outputs.
fn pass(core: &mut Sequencer, now_ms: i64, inputs: Vec<Input>) -> Vec<Output> {
    core.step(Input::Time {
        now_ms,
        wall_ms: 1_700_000_000_000 + now_ms,
    });
    for i in inputs {
        core.step(i);
    }
    core.end_pass();
    let mut out = Vec::new();
    core.take_outputs(&mut out);
    out
}

fn appended(out: &[Output]) -> Vec<i64> {
    out.iter()
        .filter_map(|o| match o {
            Output::Append(t) => Some(t.iter().map(|x| x.zxid as i64).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn published(out: &[Output]) -> Vec<&Commit> {
    out.iter()
        .filter_map(|o| match o {
            Output::Publish(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// A new standalone session, made durable: its id.
fn session(core: &mut Sequencer, slot: usize) -> i64 {
    let out = pass(core, 0, vec![connect(slot)]);
    let z = *appended(&out).last().expect("a createSession txn");
    let out = pass(core, 0, vec![Input::LogDurable { through: z }]);
    let c = published(&out);
    match &c[0].entries[0] {
        Entry::Txn { txn, .. } => txn.session_id,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_write_is_answered_only_once_durable_and_in_order() {
    let mut core = Sequencer::new(config(), DataTree::new(), 0, 0, 1_700_000_000_000);
    let s = session(&mut core, 1);
    let out = pass(
        &mut core,
        10,
        vec![create(1, s, 1, "/a"), create(1, s, 2, "/b")],
    );
    let zxids = appended(&out);
    assert_eq!(zxids.len(), 2, "both txns logged in one batch: {out:?}");
    assert!(published(&out).is_empty(), "answered before durable");
    // Durable through the first only: nothing of the pass is published (a pass waits
    // for its last txn).
    let out = pass(&mut core, 11, vec![Input::LogDurable { through: zxids[0] }]);
    assert!(published(&out).is_empty());
    let out = pass(&mut core, 12, vec![Input::LogDurable { through: zxids[1] }]);
    let c = published(&out);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].zxid, zxids[1]);
    assert_eq!(c[0].writes, 2);
    assert_eq!(c[0].shards, 1, "for shard 0");
    assert!(c[0].root.is_none(), "a root nobody asked for");
    // Asked while idle: a root of the published state at once.
    let out = pass(&mut core, 13, vec![Input::Shard(ToSeq::WantRoot)]);
    let c = published(&out);
    assert_eq!((c.len(), c[0].zxid), (1, zxids[1]), "{out:?}");
    let root = c[0].root.as_ref().expect("the asked root");
    assert!(root.exists("/a") && root.exists("/b"));
}

#[test]
fn a_full_pipeline_holds_requests_back_instead_of_dropping_them() {
    let mut cfg = config();
    cfg.max_inflight = 3;
    let mut core = Sequencer::new(cfg, DataTree::new(), 0, 0, 1_700_000_000_000);
    let s = session(&mut core, 1);
    assert_eq!(core.room(), 3);
    let out = pass(
        &mut core,
        1,
        vec![
            create(1, s, 1, "/a"),
            create(1, s, 2, "/b"),
            create(1, s, 3, "/c"),
        ],
    );
    assert_eq!(appended(&out).len(), 3);
    assert_eq!(core.room(), 0, "three txns in flight fill the pipeline");
    let last = *appended(&out).last().unwrap();
    let out = pass(&mut core, 2, vec![Input::LogDurable { through: last }]);
    assert_eq!(published(&out).len(), 1);
    assert_eq!(core.room(), 3, "durable txns make room again");
}

#[test]
fn a_failed_log_write_fails_its_writes_and_rolls_the_tree_back() {
    let mut core = Sequencer::new(config(), DataTree::new(), 0, 0, 1_700_000_000_000);
    let s = session(&mut core, 1);
    let out = pass(&mut core, 1, vec![create(1, s, 1, "/a")]);
    let a = appended(&out)[0];
    let out = pass(&mut core, 2, vec![Input::LogDurable { through: a }]);
    assert_eq!(published(&out).len(), 1);
    let out = pass(
        &mut core,
        3,
        vec![set(1, s, 2, "/a"), create(1, s, 3, "/b")],
    );
    let zs = appended(&out);
    let out = pass(
        &mut core,
        4,
        vec![Input::LogFailed {
            first: zs[0],
            last: zs[1],
            error: "ENOSPC".into(),
        }],
    );
    let c = published(&out);
    assert_eq!(c.len(), 1, "{out:?}");
    let codes: Vec<Code> = c[0]
        .entries
        .iter()
        .map(|e| match e {
            Entry::Failed { error, .. } => error.code,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(codes, vec![Code::SystemError, Code::SystemError]);
    // The published state, rebuilt from the root kept when the session was made and
    // the txn published since without one (the create of /a).
    let root = c[0].root.as_ref().expect("a root");
    assert!(root.exists("/a"), "the durable create is replayed");
    assert!(!root.exists("/b"), "the failed create is not in the tree");
    assert_eq!(
        root.data("/a").map(|(_, s)| s.version),
        Some(0),
        "nor the failed set"
    );
    assert_eq!(core.last_zxid(), a, "the speculative tree fell back");
    // Writing resumes: the next write takes the zxid after the last durable one.
    let out = pass(&mut core, 5, vec![create(1, s, 4, "/c")]);
    assert_eq!(appended(&out), vec![a + 1]);
}

#[test]
fn time_never_goes_back() {
    let mut core = Sequencer::new(config(), DataTree::new(), 0, 0, 1_700_000_000_000);
    pass(&mut core, 100, vec![]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pass(&mut core, 50, vec![]);
    }));
    assert!(r.is_err(), "a clock going back is a bug of the driver");
}

/// A one-voter ensemble leads alone: its epoch files and log are instantaneous here.
fn lone_leader(max_counter: u32) -> Sequencer {
    let mut cfg = config();
    cfg.ensemble = Some(member_1_of(vec![1], 50, max_counter));
    lone_leader_with(cfg)
}

fn lone_leader_with(cfg: CoreConfig) -> Sequencer {
    let mut core = Sequencer::new(cfg, DataTree::new(), 0, 0, 1_700_000_000_000);
    let mut out = pass(&mut core, 0, vec![Input::Elected { leader: 1 }]);
    // Carry out epoch writes until established (bounded).
    for t in 1..20 {
        let inputs: Vec<Input> = out
            .iter()
            .filter_map(|o| match o {
                Output::PersistEpoch { kind, epoch } => Some(Input::EpochPersisted {
                    kind: *kind,
                    epoch: *epoch,
                }),
                Output::Append(txns) => Some(Input::LogDurable {
                    through: txns.last().unwrap().zxid as i64,
                }),
                _ => None,
            })
            .collect();
        if core.role() == Role::Leader && inputs.is_empty() {
            break;
        }
        out = pass(&mut core, t, inputs);
    }
    assert_eq!(core.role(), Role::Leader);
    core
}

/// Drives a lone leader: feeds back durability and epoch writes, returns what it
/// published and every zxid it logged.
fn drive(core: &mut Sequencer, t: &mut i64, inputs: Vec<Input>) -> (Vec<i64>, Vec<Output>) {
    let mut out = pass(core, *t, inputs);
    let mut all = Vec::new();
    let mut logged = Vec::new();
    for _ in 0..20 {
        *t += 1;
        logged.extend(appended(&out));
        let feed: Vec<Input> = out
            .iter()
            .filter_map(|o| match o {
                Output::PersistEpoch { kind, epoch } => Some(Input::EpochPersisted {
                    kind: *kind,
                    epoch: *epoch,
                }),
                Output::Append(txns) => Some(Input::LogDurable {
                    through: txns.last().unwrap().zxid as i64,
                }),
                _ => None,
            })
            .collect();
        all.append(&mut out);
        if feed.is_empty() {
            break;
        }
        out = pass(core, *t, feed);
    }
    (logged, all)
}

#[test]
fn a_leader_at_the_end_of_its_epoch_renews_it_in_place_and_loses_no_write() {
    // Epochs of 5 zxids: the sixth txn needs the next epoch.
    let mut core = lone_leader(5);
    let mut t = 100;
    let (logged, _) = drive(&mut core, &mut t, vec![connect(1)]);
    let s = core.committed_root().sessions().next().unwrap().0;
    let epoch = epoch_of(logged[0] as u64);
    let mut all_logged = logged;
    let mut answered = 0;
    for i in 0..12 {
        let path = format!("/n{i}");
        // The driver offers requests only while the core has room.
        let mut held = vec![create(1, s, i + 1, &path)];
        for _ in 0..10 {
            if core.room() > 0 {
                break;
            }
            let (l, _) = drive(&mut core, &mut t, vec![]);
            all_logged.extend(l);
        }
        assert!(core.room() > 0, "the renewal did not finish");
        let (l, out) = drive(&mut core, &mut t, std::mem::take(&mut held));
        all_logged.extend(l);
        for c in published(&out) {
            answered += c.writes;
        }
    }
    // Flush what is left.
    let (l, out) = drive(&mut core, &mut t, vec![]);
    all_logged.extend(l);
    for c in published(&out) {
        answered += c.writes;
    }
    assert_eq!(answered, 12, "every write answered once");
    for i in 0..12 {
        assert!(core.committed_root().exists(&format!("/n{i}")));
    }
    // The zxids moved to later epochs with counters from 1, never past 5.
    let epochs: std::collections::BTreeSet<u32> =
        all_logged.iter().map(|z| epoch_of(*z as u64)).collect();
    assert!(epochs.len() >= 3, "renewed at least twice: {epochs:?}");
    assert!(epochs.iter().all(|e| *e >= epoch));
    assert!(all_logged
        .iter()
        .all(|z| (1..=5).contains(&crate::zab::counter_of(*z as u64))));
    let mut sorted = all_logged.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, all_logged, "one zxid order");
}

#[test]
fn a_leader_keeps_no_root_nobody_asked_for_and_still_rolls_back_exactly() {
    let mut cfg = config();
    cfg.ensemble = Some(member_1_of(vec![1], 50, u32::MAX));
    cfg.rollback_root_txns = 3;
    let mut core = lone_leader_with(cfg);
    let mut t = 100;
    let out = settle(&mut core, &mut t, vec![connect(1)]);
    assert!(published(&out).iter().all(|c| c.root.is_none()), "{out:?}");
    let s = core.committed_root().sessions().next().unwrap().0;
    // Four writes, one a pass: the third txn (with the session's) keeps a root, to roll
    // back to; the others keep none.
    let mut roots = Vec::new();
    for i in 0..4 {
        let out = settle(
            &mut core,
            &mut t,
            vec![create(1, s, i + 1, &format!("/n{i}"))],
        );
        roots.extend(published(&out).iter().map(|c| c.root.is_some()));
    }
    assert_eq!(roots, vec![false, true, false, false]);
    // A fifth is logged, not durable, when the log fails: the leader rolls back to the
    // published state, rebuilt from its last root and the txns committed since.
    let (z, out) = a_create_the_log_fails(&mut core, t, create(1, s, 5, "/n4"));
    assert_eq!(core.role(), Role::Looking, "{out:?}");
    assert_eq!(failed_codes(&out), vec![Code::ConnectionLoss]);
    assert_eq!(core.last_zxid(), z - 1);
    let root = core.committed_root();
    assert_eq!(root.zxid(), z - 1);
    assert!((0..4).all(|i| root.exists(&format!("/n{i}"))));
    assert!(!root.exists("/n4"), "the write never committed");
}

#[test]
fn a_leaders_rollback_replays_from_its_newest_snapshot_after_the_log_is_compacted() {
    let mut cfg = config();
    cfg.ensemble = Some(member_1_of(vec![1], 50, u32::MAX));
    cfg.snapshots = Some(SnapshotConfig {
        snap_count: 4,
        snap_size_bytes: 0,
        purge_interval_ms: 0,
        diff_size_factor: -1.0,
        seed: 1,
    });
    let mut core = lone_leader_with(cfg);
    let mut t = 100;
    settle(&mut core, &mut t, vec![connect(1)]);
    let s = core.committed_root().sessions().next().unwrap().0;
    // Writes until three snapshots were taken and made durable: the in-memory log is
    // compacted to the second one. No shard asks for roots, and none falls due
    // (`rollback_root_txns` is 4,096), so the snapshots are the leader's newest roots.
    let mut snapshots = Vec::new();
    let mut i = 0;
    while snapshots.len() < 3 {
        let out = settle(
            &mut core,
            &mut t,
            vec![create(1, s, i + 1, &format!("/n{i}"))],
        );
        i += 1;
        assert!(i < 100, "no snapshots");
        for o in &out {
            if let Output::Snapshot { zxid, .. } = o {
                snapshots.push(*zxid);
                let durable = Input::SnapshotDurable {
                    zxid: *zxid,
                    bytes: 1000,
                };
                settle(&mut core, &mut t, vec![durable]);
            }
        }
    }
    let base = core.peer().unwrap().log_base() as i64;
    assert_eq!(
        base, snapshots[1],
        "compacted to the snapshot before the newest"
    );
    // Two more writes, then one the log fails: the rollback replays from the newest
    // snapshot's root, not from the root the leader took office with (its txns are gone).
    for j in i..i + 2 {
        settle(
            &mut core,
            &mut t,
            vec![create(1, s, j + 1, &format!("/n{j}"))],
        );
    }
    a_create_the_log_fails(&mut core, t, create(1, s, i + 3, "/last"));
    assert_eq!(core.role(), Role::Looking);
    let root = core.committed_root();
    assert!((0..i + 2).all(|j| root.exists(&format!("/n{j}"))));
    assert!(!root.exists("/last"));
}

/// A pass taking `create`, then the failure of its log write (before it is durable):
/// the create's zxid, and what the failure's pass output.
fn a_create_the_log_fails(core: &mut Sequencer, t: i64, create: Input) -> (i64, Vec<Output>) {
    let z = appended(&pass(core, t, vec![create]));
    assert_eq!(z.len(), 1);
    let failed = Input::LogFailed {
        first: z[0],
        last: z[0],
        error: "EIO".into(),
    };
    (z[0], pass(core, t + 1, vec![failed]))
}

/// Carries out the core's epoch writes and log appends until it asks for none, and
/// returns everything it output.
fn settle(core: &mut Sequencer, t: &mut i64, inputs: Vec<Input>) -> Vec<Output> {
    drive(core, t, inputs).1
}

/// A follower of server 2 in a three-voter ensemble, synced by an empty DIFF.
fn follower_of_2() -> (Sequencer, i64) {
    follower_of_2_with(config(), 50)
}

/// `sync_limit` in peer ticks (a tenth of a tick): how long the follower keeps its
/// leader without hearing from it.
fn follower_of_2_with(mut cfg: CoreConfig, sync_limit: u64) -> (Sequencer, i64) {
    cfg.ensemble = Some(member_1_of(vec![1, 2, 3], sync_limit, u32::MAX));
    let mut core = Sequencer::new(cfg, DataTree::new(), 0, 0, 1_700_000_000_000);
    let mut t = 1;
    let from_2 = |msg| Input::PeerMessage { from: 2, msg };
    settle(&mut core, &mut t, vec![Input::Elected { leader: 2 }]);
    settle(
        &mut core,
        &mut t,
        vec![from_2(Msg::LeaderInfo { new_epoch: 1 })],
    );
    settle(
        &mut core,
        &mut t,
        vec![from_2(Msg::Sync {
            mode: crate::zab::msg::SyncMode::Diff,
            txns: vec![],
            commit_through: 0,
        })],
    );
    settle(&mut core, &mut t, vec![from_2(Msg::NewLeader { epoch: 1 })]);
    let out = settle(&mut core, &mut t, vec![from_2(Msg::UpToDate)]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Mode(Mode::Follower))),
        "{out:?}"
    );
    (core, t)
}

fn encoded(txn: &Txn) -> zab::Txn {
    let r = crate::storage::log::encode_record(txn);
    zab::Txn {
        zxid: r.zxid,
        payload: r.payload,
    }
}

/// A txn of no session at `zxid`.
fn txn_at(zxid: u64, op: TxnOp) -> Txn {
    Txn {
        session_id: 0,
        cxid: 0,
        zxid: zxid as i64,
        time_ms: 1,
        op,
    }
}

fn create_op(path: &str, data: Option<&'static [u8]>) -> TxnOp {
    TxnOp::Create {
        path: path.into(),
        data: data.map(bytes::Bytes::from_static),
        acl: crate::tree::open_acl_unsafe(),
        ephemeral_owner: 0,
    }
}

/// Leader 2 proposes `txn` to the follower.
fn propose_from_2(core: &mut Sequencer, t: &mut i64, txn: &Txn) -> Vec<Output> {
    let msg = Msg::Propose {
        txns: vec![encoded(txn)],
    };
    settle(core, t, vec![Input::PeerMessage { from: 2, msg }])
}

/// Leader 2 commits through `zxid`, with `more` inputs in the same pass.
fn commit_from_2(core: &mut Sequencer, t: &mut i64, zxid: u64, more: Vec<Input>) -> Vec<Output> {
    let msg = Msg::Commit { through: zxid };
    let mut inputs = more;
    inputs.push(Input::PeerMessage { from: 2, msg });
    settle(core, t, inputs)
}

#[test]
fn a_follower_applies_the_leaders_proposals_once_committed() {
    let (mut core, mut t) = follower_of_2();
    let zxid = (1u64 << 32) | 1;
    propose_from_2(
        &mut core,
        &mut t,
        &txn_at(zxid, create_op("/a", Some(b"x"))),
    );
    assert!(!core.committed_root().exists("/a"));
    commit_from_2(&mut core, &mut t, zxid, vec![]);
    assert_eq!(
        core.committed_root().data("/a").map(|(d, _)| d),
        Some(Some(bytes::Bytes::from_static(b"x")))
    );
}

/// A create of `path` at `zxid`, proposed and committed by leader 2.
fn commit_create_from_2(core: &mut Sequencer, t: &mut i64, zxid: u64, path: &str) -> Vec<Output> {
    propose_from_2(core, t, &txn_at(zxid, create_op(path, None)));
    commit_from_2(core, t, zxid, vec![])
}

#[test]
fn a_follower_publishes_a_root_only_when_a_shard_asks() {
    let (mut core, mut t) = follower_of_2();
    let epoch = 1u64 << 32;
    // Nobody asked: the commit carries no root (no second handle on the tree).
    let out = commit_create_from_2(&mut core, &mut t, epoch | 1, "/a");
    let c = published(&out);
    assert_eq!(c.len(), 1);
    assert!(c[0].root.is_none(), "a root nobody asked for");
    assert!(core.committed_root().exists("/a"));
    // Asked while idle: a root of the published state at once, with no entries.
    let out = settle(&mut core, &mut t, vec![Input::Shard(ToSeq::WantRoot)]);
    let c = published(&out);
    assert_eq!(c.len(), 1, "{out:?}");
    assert_eq!(c[0].zxid, (epoch | 1) as i64);
    assert!(c[0].entries.is_empty());
    assert!(c[0].root.as_ref().expect("the asked root").exists("/a"));
    // For a while after an ask every commit carries one (that shard's clients read).
    let out = commit_create_from_2(&mut core, &mut t, epoch | 2, "/b");
    assert!(!published(&out).is_empty());
    assert!(published(&out).iter().all(|c| c.root.is_some()));
    // Once that while has passed without an ask, none again.
    t += ROOTS_AFTER_ASK_MS;
    let out = commit_create_from_2(&mut core, &mut t, epoch | 3, "/c");
    assert!(!published(&out).is_empty());
    assert!(published(&out).iter().all(|c| c.root.is_none()));
    // Asked in the pass that applies a commit: that commit carries it, and only it.
    let delete = TxnOp::Delete { path: "/a".into() };
    propose_from_2(&mut core, &mut t, &txn_at(epoch | 4, delete));
    let ask = vec![Input::Shard(ToSeq::WantRoot)];
    let out = commit_from_2(&mut core, &mut t, epoch | 4, ask);
    let c = published(&out);
    assert_eq!(c.len(), 1, "{out:?}");
    assert_eq!(c[0].zxid, (epoch | 4) as i64);
    let root = c[0].root.as_ref().expect("the asked root");
    assert!(!root.exists("/a") && root.exists("/b") && root.exists("/c"));
}

#[test]
fn a_proposal_that_does_not_decode_makes_the_follower_leave_its_leader() {
    let (mut core, mut t) = follower_of_2();
    let zxid = (1u64 << 32) | 1;
    let mut bad = encoded(&Txn {
        session_id: 0,
        cxid: 0,
        zxid: zxid as i64,
        time_ms: 1,
        op: TxnOp::Delete { path: "/a".into() },
    });
    // Cut short: the bytes a lying or broken leader could send.
    bad.payload = bad.payload.slice(..bad.payload.len() - 3);
    let out = settle(
        &mut core,
        &mut t,
        vec![Input::PeerMessage {
            from: 2,
            msg: Msg::Propose { txns: vec![bad] },
        }],
    );
    let logged: Vec<&String> = out
        .iter()
        .filter_map(|o| match o {
            Output::Log(l) => Some(l),
            _ => None,
        })
        .collect();
    assert!(
        logged
            .iter()
            .any(|l| l.contains("protocol error from leader 2") && l.contains("does not decode")),
        "{logged:?}"
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::StartElection { .. })),
        "{out:?}"
    );
    assert!(
        !out.iter().any(|o| matches!(o, Output::Append(_))),
        "nothing of it is logged: {out:?}"
    );
    assert_eq!(core.role(), Role::Looking);
}

fn connect_ro(slot: usize, read_only: Option<bool>) -> Input {
    Input::Shard(ToSeq::Connect {
        conn: conn(slot),
        req: ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms: 10_000,
            session_id: 0,
            passwd: None,
            read_only,
        },
        received: Instant::now(),
    })
}

/// Every entry the core published in `out`, in order.
fn published_entries(out: &[Output]) -> impl Iterator<Item = &Entry> {
    out.iter()
        .filter_map(|o| match o {
            Output::Publish(c) => Some(c.entries.iter()),
            _ => None,
        })
        .flatten()
}

/// Server 1's ensemble config among `voters` (no observers): initLimit is
/// `sync_limit` but at least 100 ticks, nothing persisted yet.
fn member_1_of(voters: Vec<u64>, sync_limit: u64, max_counter: u32) -> EnsembleConfig {
    EnsembleConfig {
        peer: peer::Config {
            my_id: 1,
            ensemble: Members::new(voters, vec![]),
            init_limit: sync_limit.max(100),
            sync_limit,
            max_inflight: 1000,
            max_counter,
            broken: Default::default(),
        },
        persisted: peer::Persisted::default(),
        loaded_snapshot: None,
        membership: Default::default(),
    }
}

fn connect_outcomes(out: &[Output]) -> Vec<ConnectOutcome> {
    published_entries(out)
        .filter_map(|e| match e {
            Entry::Connect { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_member_without_a_quorum_serves_read_only_sessions_after_the_delay() {
    let mut cfg = config();
    cfg.read_only = true;
    cfg.ensemble = Some(member_1_of(vec![1, 2, 3], 50, u32::MAX));
    let mut core = Sequencer::new(cfg, DataTree::new(), 0, 0, 1_700_000_000_000);
    // Before the delay: a read-only client is refused like any other.
    let out = pass(&mut core, 1000, vec![connect_ro(1, Some(true))]);
    assert!(matches!(
        connect_outcomes(&out)[..],
        [ConnectOutcome::Refused]
    ));
    let out = pass(&mut core, READ_ONLY_DELAY_MS + 1, vec![]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Mode(Mode::ReadOnly))),
        "{out:?}"
    );
    let out = pass(
        &mut core,
        READ_ONLY_DELAY_MS + 2,
        vec![connect_ro(2, Some(true)), connect_ro(3, None)],
    );
    let got = connect_outcomes(&out);
    assert!(
        matches!(
            got[..],
            [
                ConnectOutcome::ReadOnly {
                    timeout_ms: 10_000,
                    ..
                },
                ConnectOutcome::Refused
            ]
        ),
        "{got:?}"
    );
    // An election decides: the mode ends and its clients are closed.
    let out = pass(
        &mut core,
        READ_ONLY_DELAY_MS + 3,
        vec![Input::Elected { leader: 2 }],
    );
    assert!(
        out.iter().any(|o| matches!(o, Output::CloseClients)),
        "{out:?}"
    );
    let out = pass(
        &mut core,
        READ_ONLY_DELAY_MS + 4,
        vec![connect_ro(4, Some(true))],
    );
    assert!(matches!(
        connect_outcomes(&out)[..],
        [ConnectOutcome::Refused]
    ));
}

#[test]
fn a_follower_holds_requests_while_leadership_moves_and_keeps_its_clients() {
    let (mut core, mut t) = follower_of_2();
    assert!(core.room() > 0);
    let from_2 = |msg| Input::PeerMessage { from: 2, msg };
    let out = settle(&mut core, &mut t, vec![from_2(Msg::Moving)]);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Send {
                to: 2,
                msg: Msg::MovingAck
            }
        )),
        "{out:?}"
    );
    assert_eq!(core.room(), 0, "requests wait while leadership moves");
    let out = settle(&mut core, &mut t, vec![from_2(Msg::Moved { leader: 3 })]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Moved { leader: 3, from: 2 })),
        "{out:?}"
    );
    assert!(out.iter().any(|o| matches!(o, Output::Dial { to: 3 })));
    assert!(
        !out.iter().any(|o| matches!(o, Output::CloseClients)),
        "clients keep their connections: {out:?}"
    );
    assert_eq!(
        core.room(),
        0,
        "still held until synced with the new leader"
    );
}

/// A request taken in the pass that also brought the leader's MOVING: the peer refuses
/// to forward while leadership moves. The request was dropped there (left waiting for
/// an answer that never came) and, when the move was called off, the session's next
/// request went ahead of it. It is kept and forwarded first once the move is off.
#[test]
fn a_forward_refused_while_leadership_moves_goes_first_when_the_move_is_off() {
    let (mut core, mut t) = follower_of_2();
    let from_2 = |msg| Input::PeerMessage { from: 2, msg };
    let sid = 0x1234;
    let out = settle(
        &mut core,
        &mut t,
        vec![set(1, sid, 1, "/a"), from_2(Msg::Moving)],
    );
    let sent = |out: &[Output]| -> Vec<i32> {
        forwards(out)
            .into_iter()
            .filter_map(|f| match f {
                Fwd::Request { xid, .. } => Some(xid),
                _ => None,
            })
            .collect()
    };
    assert_eq!(sent(&out), Vec::<i32>::new(), "forwarded while moving");
    let out = settle(&mut core, &mut t, vec![from_2(Msg::MovingCancelled)]);
    assert_eq!(sent(&out), vec![1], "the refused request is forwarded");
    let out = settle(&mut core, &mut t, vec![set(1, sid, 2, "/a")]);
    assert_eq!(sent(&out), vec![2]);
}

// ---- local sessions ----

fn local_cfg(upgrading: bool) -> CoreConfig {
    let mut cfg = config();
    cfg.local_sessions = true;
    cfg.local_upgrading = upgrading;
    cfg
}

/// What the core sent the leader in FORWARDs, decoded.
fn forwards(out: &[Output]) -> Vec<Fwd> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                msg: Msg::Forward { payloads },
                ..
            } => Some(
                payloads
                    .iter()
                    .map(|p| Fwd::decode(p).expect("a forward decodes")),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

fn failed_codes(out: &[Output]) -> Vec<Code> {
    published_entries(out)
        .filter_map(|e| match e {
            Entry::Failed { error, .. } => Some(error.code),
            _ => None,
        })
        .collect()
}

fn ephemeral(slot: usize, session_id: i64, xid: i32, path: &str) -> Input {
    Input::Shard(ToSeq::Request {
        origin: origin(slot, xid, OpCode::Create),
        session_id,
        req: Request::Create {
            op: OpCode::Create,
            req: CreateRequest {
                path: path.into(),
                data: None,
                acl: crate::tree::open_acl_unsafe(),
                flags: 1,
            },
        },
        ids: Arc::new(Vec::new()),
    })
}

fn request(slot: usize, session_id: i64, xid: i32, req: Request) -> Input {
    Input::Shard(ToSeq::Request {
        origin: origin(slot, xid, req.op()),
        session_id,
        req,
        ids: Arc::new(Vec::new()),
    })
}

/// The session a connect on a learner got, answered without the leader.
fn local_session(core: &mut Sequencer, t: &mut i64, slot: usize) -> i64 {
    let out = settle(core, t, vec![connect(slot)]);
    assert!(
        forwards(&out).is_empty(),
        "a local session is not forwarded: {out:?}"
    );
    match connect_outcomes(&out)[..] {
        [ConnectOutcome::Resumed {
            session_id,
            timeout_ms: 10_000,
        }] => session_id,
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn a_followers_local_session_never_reaches_the_leader_until_it_writes() {
    let (mut core, mut t) = follower_of_2_with(local_cfg(true), 50);
    let s = local_session(&mut core, &mut t, 1);
    assert_eq!(s >> 56, 1, "the id carries this server's id");
    assert_eq!(core.local_session_count(), 1);
    // Touches stay here.
    let out = settle(&mut core, &mut t, vec![Input::Shard(ToSeq::Touch(vec![s]))]);
    assert!(forwards(&out).is_empty(), "{out:?}");
    // A persistent create is forwarded as the local session's request.
    let out = settle(&mut core, &mut t, vec![create(1, s, 1, "/p")]);
    assert!(
        matches!(&forwards(&out)[..], [Fwd::Request { session_id, xid: 1, .. }] if *session_id == s),
        "{out:?}"
    );
    // closeSession ends it here, with nothing forwarded; it is answered after the
    // create the leader still holds (session FIFO).
    let out = settle(
        &mut core,
        &mut t,
        vec![request(1, s, 2, Request::CloseSession)],
    );
    assert!(forwards(&out).is_empty(), "{out:?}");
    assert!(
        failed_codes(&out).is_empty(),
        "answered before the create: {out:?}"
    );
    assert_eq!(core.local_session_count(), 0);
    let zxid = (1u64 << 32) | 1;
    let txn = Txn {
        session_id: s,
        cxid: 1,
        zxid: zxid as i64,
        time_ms: 1,
        op: TxnOp::Create {
            path: "/p".into(),
            data: Some(bytes::Bytes::from_static(b"x")),
            acl: crate::tree::open_acl_unsafe(),
            ephemeral_owner: 0,
        },
    };
    let from_2 = |msg| Input::PeerMessage { from: 2, msg };
    settle(
        &mut core,
        &mut t,
        vec![from_2(Msg::Propose {
            txns: vec![encoded(&txn)],
        })],
    );
    let out = settle(
        &mut core,
        &mut t,
        vec![from_2(Msg::Commit { through: zxid })],
    );
    let order: Vec<i32> = published_entries(&out)
        .filter_map(|e| match e {
            Entry::Txn {
                origin: Some(o), ..
            }
            | Entry::Failed { origin: o, .. } => Some(o.xid),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec![1, 2], "the create, then the close: {out:?}");
    assert_eq!(failed_codes(&out), vec![Code::Ok]);
}

#[test]
fn an_ephemeral_upgrades_a_local_session_before_its_create() {
    let (mut core, mut t) = follower_of_2_with(local_cfg(true), 50);
    let s = local_session(&mut core, &mut t, 1);
    let out = settle(&mut core, &mut t, vec![ephemeral(1, s, 1, "/e")]);
    let fwd = forwards(&out);
    assert!(
        matches!(
            &fwd[..],
            [
                Fwd::CreateSession { session_id: a, timeout_ms: 10_000 },
                Fwd::Request { session_id: b, xid: 1, .. },
            ] if *a == s && *b == s
        ),
        "{fwd:?}"
    );
    assert_eq!(core.local_session_count(), 0, "the session is global now");
    // Its touches now go to the leader, which owns it.
    let out = settle(&mut core, &mut t, vec![Input::Shard(ToSeq::Touch(vec![s]))]);
    assert!(
        matches!(&forwards(&out)[..], [Fwd::Touch(ids)] if ids == &vec![s]),
        "{out:?}"
    );
}

fn ephemeral_multi(path: &str) -> Request {
    Request::Multi(vec![crate::proto::MultiOp::Create {
        op: OpCode::Create2,
        req: CreateRequest {
            path: path.into(),
            data: None,
            acl: crate::tree::open_acl_unsafe(),
            flags: 3,
        },
    }])
}

fn failed_errors(out: &[Output]) -> Vec<PrepError> {
    published_entries(out)
        .filter_map(|e| match e {
            Entry::Failed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn without_upgrading_a_followers_ephemeral_is_ephemeral_on_local_session() {
    let (mut core, mut t) = follower_of_2_with(local_cfg(false), 50);
    let s = local_session(&mut core, &mut t, 1);
    let out = settle(
        &mut core,
        &mut t,
        vec![
            ephemeral(1, s, 1, "/e"),
            request(1, s, 2, ephemeral_multi("/m")),
        ],
    );
    // Sent on, as ZooKeeper's follower does: the leader's error txns keep the session's
    // answers in order.
    let fwd = forwards(&out);
    assert!(
        matches!(
            &fwd[..],
            [Fwd::Request { xid: 1, .. }, Fwd::Request { xid: 2, .. }]
        ),
        "{fwd:?}"
    );
    assert_eq!(core.local_session_count(), 1, "still a local session");
    // The leader cannot know the session: its error txns say SESSIONEXPIRED.
    let error = |zxid: u64, cxid: i32, multi: Option<Vec<Code>>| Txn {
        session_id: s,
        cxid,
        zxid: zxid as i64,
        time_ms: 1,
        op: TxnOp::Error {
            code: Code::SessionExpired,
            multi,
        },
    };
    let (z1, z2) = ((1u64 << 32) | 1, (1u64 << 32) | 2);
    let from_2 = |msg| Input::PeerMessage { from: 2, msg };
    settle(
        &mut core,
        &mut t,
        vec![from_2(Msg::Propose {
            txns: vec![
                encoded(&error(z1, 1, None)),
                encoded(&error(z2, 2, Some(vec![Code::SessionExpired]))),
            ],
        })],
    );
    let out = settle(&mut core, &mut t, vec![from_2(Msg::Commit { through: z2 })]);
    // The create is EPHEMERALONLOCALSESSION to the client (the follower's own
    // exception); the multi gets the leader's per-op results, as ZooKeeper's
    // FinalRequestProcessor gives a multi.
    let errs = failed_errors(&out);
    assert_eq!(errs.len(), 2, "{out:?}");
    assert_eq!(errs[0].code, Code::EphemeralOnLocalSession);
    assert_eq!(errs[1].code, Code::SessionExpired);
    assert_eq!(
        errs[1].multi,
        Some(vec![crate::txn::OpResult::Error(Code::SessionExpired)])
    );
}

#[test]
fn without_upgrading_a_leaders_local_session_gets_ephemeral_on_local_session() {
    let mut cfg = config();
    cfg.ensemble = Some(member_1_of(vec![1], 50, u32::MAX));
    cfg.local_sessions = true;
    let mut core = Sequencer::new(cfg, DataTree::new(), 0, 0, 1_700_000_000_000);
    let mut t = 0;
    drive(&mut core, &mut t, vec![Input::Elected { leader: 1 }]);
    let (_, out) = drive(&mut core, &mut t, vec![connect(1)]);
    let s = match connect_outcomes(&out)[..] {
        [ConnectOutcome::Resumed { session_id, .. }] => session_id,
        ref other => panic!("{other:?}"),
    };
    let (logged, out) = drive(
        &mut core,
        &mut t,
        vec![
            ephemeral(1, s, 1, "/e"),
            request(1, s, 2, ephemeral_multi("/m")),
        ],
    );
    assert!(logged.is_empty(), "{logged:?}");
    let errs = failed_errors(&out);
    assert_eq!(errs.len(), 2, "{out:?}");
    assert_eq!(errs[0].code, Code::EphemeralOnLocalSession);
    assert_eq!(
        errs[1].multi,
        Some(vec![crate::txn::OpResult::Error(
            Code::EphemeralOnLocalSession
        )])
    );
    assert_eq!(core.local_session_count(), 1);
    assert!(!core.committed_root().exists("/e"));
}

#[test]
fn a_local_session_expires_on_its_own_server_and_cannot_be_resumed() {
    let (mut core, mut t) = follower_of_2_with(local_cfg(true), 10_000);
    let s = local_session(&mut core, &mut t, 1);
    // Kept alive by touches...
    for _ in 0..3 {
        t += 5000;
        settle(&mut core, &mut t, vec![Input::Shard(ToSeq::Touch(vec![s]))]);
    }
    assert_eq!(core.local_session_count(), 1);
    // ...and expired without them: its connection is closed.
    t += 14_000;
    let out = pass(&mut core, t, vec![]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close(c) if *c == conn(1))),
        "{out:?}"
    );
    assert_eq!(core.local_session_count(), 0);
    assert_eq!(core.expired_total(), 1);
    // A reconnect with it is no local session any more: the leader is asked (and it
    // knows only global sessions).
    let resume = Input::Shard(ToSeq::Connect {
        conn: conn(2),
        req: ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms: 10_000,
            session_id: s,
            passwd: Some(session::password(s).to_vec().into()),
            read_only: None,
        },
        received: Instant::now(),
    });
    let out = settle(&mut core, &mut t, vec![resume]);
    assert!(
        matches!(&forwards(&out)[..], [Fwd::Revalidate { session_id, .. }] if *session_id == s),
        "{out:?}"
    );
}

#[test]
fn a_leaders_local_session_makes_no_txn_until_it_needs_a_global_one() {
    let mut cfg = config();
    cfg.ensemble = Some(member_1_of(vec![1], 50, u32::MAX));
    cfg.local_sessions = true;
    cfg.local_upgrading = true;
    let mut core = Sequencer::new(cfg, DataTree::new(), 0, 0, 1_700_000_000_000);
    let mut t = 0;
    drive(&mut core, &mut t, vec![Input::Elected { leader: 1 }]);
    assert_eq!(core.role(), Role::Leader);
    let (logged, out) = drive(&mut core, &mut t, vec![connect(1)]);
    assert!(logged.is_empty(), "no createSession txn: {logged:?}");
    let s = match connect_outcomes(&out)[..] {
        [ConnectOutcome::Resumed { session_id, .. }] => session_id,
        ref other => panic!("{other:?}"),
    };
    assert_eq!(core.committed_root().sessions().count(), 0);
    // A persistent node: one txn, the session stays local.
    let (logged, _) = drive(&mut core, &mut t, vec![create(1, s, 1, "/p")]);
    assert_eq!(logged.len(), 1);
    assert!(core.committed_root().exists("/p"));
    // An ephemeral: a CreateSession txn, then the create, owned by the session.
    let (logged, _) = drive(&mut core, &mut t, vec![ephemeral(1, s, 2, "/e")]);
    assert_eq!(logged.len(), 2);
    assert!(core.committed_root().sessions().any(|(id, _)| id == s));
    assert_eq!(core.local_session_count(), 0);
    assert!(core.committed_root().exists("/e"));
}

#[test]
fn a_standalone_server_ignores_local_sessions_as_zookeeper_does() {
    let mut core = Sequencer::new(local_cfg(true), DataTree::new(), 0, 0, 1_700_000_000_000);
    let out = pass(&mut core, 0, vec![connect(1)]);
    assert_eq!(appended(&out).len(), 1, "a createSession txn: {out:?}");
    assert_eq!(core.local_session_count(), 0);
}

#[test]
fn an_upgrade_at_the_epochs_last_zxid_is_connection_loss_then_works_in_the_next() {
    // Epochs of 5 zxids: after four creates only the fifth is left, and an upgrade
    // needs two (its CreateSession, then the create).
    let mut cfg = config();
    cfg.ensemble = Some(member_1_of(vec![1], 50, 5));
    cfg.local_sessions = true;
    cfg.local_upgrading = true;
    let mut core = Sequencer::new(cfg, DataTree::new(), 0, 0, 1_700_000_000_000);
    let mut t = 0;
    drive(&mut core, &mut t, vec![Input::Elected { leader: 1 }]);
    let (_, out) = drive(&mut core, &mut t, vec![connect(1)]);
    let s = match connect_outcomes(&out)[..] {
        [ConnectOutcome::Resumed { session_id, .. }] => session_id,
        ref other => panic!("{other:?}"),
    };
    for i in 1..=4 {
        drive(&mut core, &mut t, vec![create(1, s, i, &format!("/p{i}"))]);
    }
    let epoch = epoch_of(core.last_zxid() as u64);
    assert_eq!(core.last_zxid() as u64 & 0xffff_ffff, 4);
    assert_eq!(core.room(), 1, "the epoch's last zxid is still taken");
    let (logged, out) = drive(&mut core, &mut t, vec![ephemeral(1, s, 5, "/e")]);
    assert!(logged.is_empty(), "{logged:?}");
    assert_eq!(failed_codes(&out), vec![Code::ConnectionLoss]);
    assert_eq!(core.local_session_count(), 1, "still local for the retry");
    // The last zxid goes to a create; the epoch renews; the retry upgrades.
    drive(&mut core, &mut t, vec![create(1, s, 6, "/p5")]);
    let (logged, _) = drive(&mut core, &mut t, vec![ephemeral(1, s, 7, "/e")]);
    assert_eq!(logged.len(), 2, "CreateSession and the create: {logged:?}");
    assert!(epoch_of(core.last_zxid() as u64) > epoch);
    assert!(core.committed_root().exists("/e"));
    assert_eq!(core.local_session_count(), 0);
}

/// `snapshotSizeFactor`: the leader's log keeps the newest txns whose payloads add up
/// to at most factor x the snapshot's bytes (ZooKeeper's limit on a DIFF from its txn
/// log); negative turns the rule off; 0 (ZooKeeper: no limit) means the snapshot's size,
/// since ours is kept in memory.
#[test]
fn diff_window_reaches_back_as_far_as_the_size_factor_allows() {
    let log = zab::txns::Txns::from_vec(
        (1..=10)
            .map(|c| zab::Txn {
                zxid: make_zxid(1, c),
                payload: Bytes::from(vec![0u8; 100]),
            })
            .collect(),
    );
    let base = make_zxid(1, 0);
    // 0.33 x 1000 bytes: the newest three txns (300 bytes) fit, the fourth does not.
    assert_eq!(
        diff_window_start(&log, base, 0.33, 1000),
        Some(make_zxid(1, 7))
    );
    assert_eq!(diff_window_start(&log, base, 1.0, 100_000), Some(base));
    assert_eq!(
        diff_window_start(&log, base, 0.0, 500),
        Some(make_zxid(1, 5))
    );
    assert_eq!(diff_window_start(&log, base, -1.0, 100_000), None);
    assert_eq!(
        diff_window_start(&zab::txns::Txns::new(), base, 0.33, 0),
        Some(base)
    );
}
