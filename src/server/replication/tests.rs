//! Tests of the peer's start-up history, on real files. Compaction and the links'
//! connection rules are tested with the core (`sequencer::tests`) and the core loop.

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
        max_counter: u32::MAX,
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
