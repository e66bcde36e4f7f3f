//! Tests of the loop's start-up history and of compaction, on real files and a real
//! peer (a single-voter ensemble leads alone, so no socket is needed).

use super::*;
use crate::storage::snapshot::tests::TempDir;
use crate::storage::truncate::tests::segment;

fn repl_config(dir: &Path, recovered: Zxid, snapshot: Option<Zxid>) -> ReplConfig {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    ReplConfig {
        my_id: 1,
        ensemble: Ensemble::new(vec![1], vec![]),
        members: BTreeMap::from([(
            1,
            Member {
                quorum: addr,
                election: addr,
            },
        )]),
        data_dir: dir.to_path_buf(),
        log_dir: dir.to_path_buf(),
        tick_ms: 100,
        init_limit: 10,
        sync_limit: 5,
        recovered_zxid: recovered,
        snapshot_zxid: snapshot,
    }
}

/// A snapshot file of `zxid`: start-up only lists the names (recovery loaded them).
fn snapshot_file(dir: &Path, zxid: i64) {
    std::fs::write(dir.join(crate::storage::snapshot::file_name(zxid)), b"").unwrap();
}

fn zxids(p: &Persisted) -> (Zxid, Vec<Zxid>) {
    let base = p.snapshot.as_ref().expect("a base").0;
    (base, p.log.iter().map(|t| t.zxid).collect())
}

#[test]
fn the_peer_starts_from_a_snapshot_not_from_the_whole_log() {
    let dir = TempDir::new("repl-start");
    let d = dir.0.as_path();
    let all: Vec<i64> = (1..=30).collect();
    segment(d, 1, &[&all[..12], &all[12..]]);
    snapshot_file(d, 10);
    snapshot_file(d, 20);
    // The log reaches back to the snapshot before the loaded one: that one is the base.
    let p = logged_history(&repl_config(d, 30, Some(20)));
    assert_eq!(zxids(&p), (10, (11..=30).collect()));
    // Nothing after the loaded snapshot: the older one still is the base.
    let dir = TempDir::new("repl-start-at-snap");
    let d = dir.0.as_path();
    segment(d, 1, &[&all[..20]]);
    snapshot_file(d, 10);
    snapshot_file(d, 20);
    let p = logged_history(&repl_config(d, 20, Some(20)));
    assert_eq!(zxids(&p).0, 10);
    assert_eq!(p.log.last().map(|t| t.zxid), Some(20));
}

#[test]
fn without_the_older_snapshot_in_the_log_the_loaded_one_is_the_base() {
    let dir = TempDir::new("repl-start-purged");
    let d = dir.0.as_path();
    // As after a purge: the log starts after the older snapshot.
    let all: Vec<i64> = (15..=30).collect();
    segment(d, 15, &[&all]);
    snapshot_file(d, 10);
    snapshot_file(d, 20);
    let p = logged_history(&repl_config(d, 30, Some(20)));
    assert_eq!(zxids(&p), (20, (21..=30).collect()));
    // As after a SNAP: the loaded snapshot and no log.
    let empty = TempDir::new("repl-start-snap");
    snapshot_file(&empty.0, 0x1_0000_0040);
    let p = logged_history(&repl_config(&empty.0, 0x1_0000_0040, Some(0x1_0000_0040)));
    assert_eq!(zxids(&p), (0x1_0000_0040, vec![]));
    // No snapshot at all: the empty history is the base, the log is replayed from 1.
    let none = TempDir::new("repl-start-none");
    segment(&none.0, 1, &[&[1, 2, 3]]);
    let p = logged_history(&repl_config(&none.0, 3, None));
    assert_eq!(zxids(&p), (0, vec![1, 2, 3]));
}

/// A driver over a single-voter ensemble: it leads alone, so its actions need no
/// connection. Its election channel's receiver is returned to keep sends working.
fn lone_driver(dir: &Path) -> (Driver, Receiver<election::Input>, Arc<ReplBridge>) {
    driver_of(repl_config(dir, 0, None))
}

/// A driver of server 1 with `cfg`'s ensemble.
fn driver_of(cfg: ReplConfig) -> (Driver, Receiver<election::Input>, Arc<ReplBridge>) {
    let peer = Peer::new(
        peer::Config {
            my_id: 1,
            ensemble: cfg.ensemble.clone(),
            init_limit: 100,
            sync_limit: 50,
            max_inflight: 100_000,
            broken: Default::default(),
        },
        logged_history(&cfg),
    );
    let (election_tx, election_rx) = mpsc::channel();
    let (tx, _rx) = mpsc::channel();
    let bridge = Arc::new(ReplBridge::default());
    let settings =
        crate::server::ServerConfig::standalone("127.0.0.1:1".parse().unwrap(), 1).settings;
    let state = Arc::new(ServerState::new(settings, 1, Default::default()));
    let driver = Driver {
        peer,
        cfg,
        state,
        election: election_tx,
        links: BTreeMap::new(),
        unclaimed: HashMap::new(),
        tx,
        conns: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        follow_ups: VecDeque::new(),
        logged_last: 0,
        local_durable: 0,
        writes: VecDeque::new(),
        bridge: bridge.clone(),
        applies: Vec::new(),
        own_from: Zxid::MAX,
        lead: None,
        early_infos: Vec::new(),
        learner_counts: None,
        newest_snapshot: None,
        info_conns: BTreeMap::new(),
    };
    (driver, election_rx, bridge)
}

/// Rounds of writes with a snapshot after each, and txns per round.
const ROUNDS: u64 = 12;
const PER_ROUND: u64 = 50;

#[test]
fn each_durable_snapshot_compacts_the_peer_log_to_the_one_before() {
    let dir = TempDir::new("repl-compact");
    let (mut d, _election, bridge) = lone_driver(&dir.0);
    d.input(Input::Elected(Elected {
        leader: 1,
        state: crate::zab::election::State::Leading,
        election_epoch: 1,
    }));
    let epoch = d
        .peer
        .established_epoch()
        .expect("a lone voter leads at once");
    let mut last = crate::zab::make_zxid(epoch, 0);
    let mut snapshots = Vec::new();
    for round in 0..ROUNDS {
        let payloads = (0..PER_ROUND)
            .map(|i| bytes::Bytes::from(vec![i as u8]))
            .collect();
        d.input(Input::ClientWrite {
            first_zxid: last + 1,
            payloads,
        });
        last += PER_ROUND;
        d.input(Input::LocalDurable(last));
        assert_eq!(
            d.peer.commit_zxid(),
            last,
            "round {round}: a lone voter commits"
        );
        d.input(Input::SnapshotDurable(last));
        snapshots.push(last);
        // The base is the snapshot before the newest: the log holds one interval.
        let expected_base = if snapshots.len() >= 2 {
            snapshots[snapshots.len() - 2]
        } else {
            0
        };
        assert_eq!(d.peer.log_base(), expected_base, "round {round}");
        assert_eq!(
            bridge.peer_base(),
            Some(expected_base as i64).filter(|z| *z != 0)
        );
        assert!(d.peer.log().len() as u64 <= 2 * PER_ROUND, "round {round}");
        assert_eq!(d.peer.last_zxid(), last);
    }
    assert_eq!(d.peer.log().len() as u64, PER_ROUND);
    // A point not yet durable in the log is ignored: the base stays, and a later
    // snapshot compacts.
    let payloads = vec![
        bytes::Bytes::from_static(b"x"),
        bytes::Bytes::from_static(b"y"),
    ];
    d.input(Input::ClientWrite {
        first_zxid: last + 1,
        payloads,
    });
    d.input(Input::SnapshotDurable(last + 1));
    assert_eq!(
        d.peer.log_base(),
        last,
        "compacted to the previous snapshot"
    );
    d.input(Input::SnapshotDurable(last + 2));
    assert_eq!(d.peer.log_base(), last, "last + 1 is not durable yet");
    d.input(Input::SnapshotDurable(last + 1));
    assert_eq!(d.peer.log_base(), last, "an older snapshot changes nothing");
    d.input(Input::LocalDurable(last + 2));
    d.input(Input::SnapshotDurable(last + 3));
    assert_eq!(d.peer.log_base(), last + 2, "the next snapshot compacts");
    assert_eq!(d.peer.log().len(), 0);
}

/// A learner that dialled twice (its first connection made before it gave up on it)
/// has two connections at the leader, and their readers race: the FOLLOWERINFO of the
/// older one can reach the loop after the newer one's. The newer connection stays the
/// learner's: taking the older closed the one the learner used, and it went looking
/// ("leader connection lost"; a first epoch after a partition then ended at initLimit).
#[test]
fn a_followerinfo_from_an_older_connection_does_not_replace_the_newer() {
    let dir = TempDir::new("repl-info-order");
    let mut cfg = repl_config(&dir.0, 0, None);
    cfg.ensemble = Ensemble::new(vec![1, 2, 3], vec![]);
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    for id in [2, 3] {
        let m = Member {
            quorum: addr,
            election: addr,
        };
        cfg.members.insert(id, m);
    }
    let (mut d, _election, _bridge) = driver_of(cfg);
    d.input(Input::Elected(Elected {
        leader: 1,
        state: crate::zab::election::State::Leading,
        election_epoch: 1,
    }));
    let info = || Msg::FollowerInfo {
        accepted_epoch: 0,
        last_zxid: 0,
        observer: false,
    };
    // Conns are numbered in accept order; their queues are kept so sends succeed.
    let mut queues = Vec::new();
    for conn in [5, 6] {
        let (link, rx) = Link::new(conn, None);
        queues.push(rx);
        d.input(Input::Accepted { link });
    }
    d.input(Input::Message {
        conn: 6,
        from: 2,
        msg: info(),
    });
    assert_eq!(d.links.get(&2).map(|l| l.conn), Some(6));
    d.input(Input::Message {
        conn: 5,
        from: 2,
        msg: info(),
    });
    assert_eq!(
        d.links.get(&2).map(|l| l.conn),
        Some(6),
        "the older connection's FOLLOWERINFO replaced the newer one"
    );
    assert!(d.unclaimed.is_empty(), "the stale connection is closed");
    // A later connection of the same learner still replaces it.
    let (link, rx) = Link::new(7, None);
    queues.push(rx);
    d.input(Input::Accepted { link });
    d.input(Input::Message {
        conn: 7,
        from: 2,
        msg: info(),
    });
    assert_eq!(d.links.get(&2).map(|l| l.conn), Some(7));
}
