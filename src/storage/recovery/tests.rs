//! Recovery against an in-memory log: replay equals applying the same txns to a fresh
//! tree, corrupt snapshots fall back, gaps and log corruption refuse.

use super::*;
use crate::storage::disk::OsDisk;
use crate::storage::snapshot::tests::{apply_all, sample_txns, TempDir};
use crate::storage::snapshot::{file_name, save};
use std::fs;

/// An in-memory log: the txns it holds, an optional torn-tail note, and an optional
/// corruption error raised after delivering `fail_after` txns.
struct FakeLog {
    txns: Vec<Txn>,
    torn_note: Option<String>,
    fail_after: Option<(usize, String)>,
}

impl FakeLog {
    fn new(txns: Vec<Txn>) -> FakeLog {
        FakeLog {
            txns,
            torn_note: None,
            fail_after: None,
        }
    }
}

impl TxnSource for FakeLog {
    fn replay_after(
        &mut self,
        after: i64,
        apply: &mut dyn FnMut(&Txn) -> Result<(), String>,
    ) -> Result<LogReplay, String> {
        for (i, t) in self.txns.iter().filter(|t| t.zxid > after).enumerate() {
            if let Some((n, e)) = &self.fail_after {
                if i == *n {
                    return Err(e.clone());
                }
            }
            apply(t)?;
        }
        Ok(LogReplay {
            notes: self.torn_note.iter().cloned().collect(),
        })
    }
}

fn fresh(txns: &[Txn]) -> DataTree {
    let mut t = DataTree::new();
    apply_all(&mut t, txns);
    t
}

#[test]
fn empty_directory_and_log_give_the_fresh_tree() {
    let dir = TempDir::new("rec-empty");
    let r = recover_with(&OsDisk, &dir.0, &mut FakeLog::new(vec![])).expect("recover");
    assert_eq!(r.zxid, 0);
    assert_eq!(r.tree, DataTree::new());
    assert!(r.snapshot.is_none());
}

#[test]
fn replay_equals_applying_to_a_fresh_tree_for_every_snapshot_point() {
    let txns = sample_txns(40);
    let expected = fresh(&txns);
    // Bounded: a snapshot after every 7th txn.
    for cut in (0..=txns.len()).step_by(7) {
        let dir = TempDir::new("rec-cut");
        if cut > 0 {
            save(&OsDisk, &dir.0, &fresh(&txns[..cut])).expect("save");
        }
        let r = recover_with(&OsDisk, &dir.0, &mut FakeLog::new(txns.clone())).expect("recover");
        assert_eq!(r.replayed as usize, txns.len() - cut);
        assert_eq!(r.zxid, expected.zxid());
        assert_eq!(r.tree.digest(), expected.digest());
        assert_eq!(r.tree, expected);
        // Sessions survive the restart.
        assert_eq!(
            r.tree.sessions().collect::<Vec<_>>(),
            expected.sessions().collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_corrupt_newest_snapshot_falls_back_to_the_previous_one_plus_the_log() {
    let txns = sample_txns(40);
    let dir = TempDir::new("rec-fallback");
    let older = fresh(&txns[..20]);
    save(&OsDisk, &dir.0, &older).expect("save");
    let (newest, _, _) = save(&OsDisk, &dir.0, &fresh(&txns[..35])).expect("save");
    let mut bytes = fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&newest, &bytes).unwrap();
    let r = recover_with(&OsDisk, &dir.0, &mut FakeLog::new(txns.clone())).expect("recover");
    assert_eq!(r.snapshot, Some(dir.0.join(file_name(older.zxid()))));
    assert_eq!(r.replayed as usize, txns.len() - 20);
    assert_eq!(r.tree, fresh(&txns));
    assert_eq!(r.notes.len(), 1);
    assert!(
        r.notes[0].contains(&newest.display().to_string()),
        "{:?}",
        r.notes
    );
    assert!(r.notes[0].contains("falling back"), "{:?}", r.notes);
}

#[test]
fn an_empty_newest_snapshot_falls_back_too() {
    // A crash between create and rename cannot leave this (the rename is atomic), but a
    // disk that loses the data of a renamed file can; it must not stop recovery.
    let txns = sample_txns(10);
    let dir = TempDir::new("rec-empty-snap");
    fs::write(dir.0.join(file_name(5)), b"").unwrap();
    let r = recover_with(&OsDisk, &dir.0, &mut FakeLog::new(txns.clone())).expect("recover");
    assert!(r.snapshot.is_none());
    assert_eq!(r.tree, fresh(&txns));
}

#[test]
fn a_gap_between_snapshot_and_log_refuses() {
    let txns = sample_txns(30);
    let dir = TempDir::new("rec-gap");
    save(&OsDisk, &dir.0, &fresh(&txns[..10])).expect("save");
    // The log lost txns 11..=15 (as if purged too eagerly).
    let log: Vec<Txn> = txns.iter().filter(|t| t.zxid > 15).cloned().collect();
    let e = recover_with(&OsDisk, &dir.0, &mut FakeLog::new(log)).expect_err("gap");
    let msg = e.to_string();
    assert!(matches!(e, RecoveryError::Continuity(_)), "{msg}");
    assert!(msg.contains("0x10") && msg.contains("0xa"), "{msg}");
}

#[test]
fn all_snapshots_corrupt_and_a_log_that_does_not_start_at_one_refuses() {
    let txns = sample_txns(30);
    let dir = TempDir::new("rec-nosnap");
    let (p, _, _) = save(&OsDisk, &dir.0, &fresh(&txns[..10])).expect("save");
    fs::write(&p, b"RKSNAP").unwrap();
    let log: Vec<Txn> = txns[10..].to_vec();
    let e = recover_with(&OsDisk, &dir.0, &mut FakeLog::new(log)).expect_err("gap");
    assert!(e.to_string().contains("the empty tree"), "{e}");
}

#[test]
fn a_zxid_out_of_order_in_the_log_refuses() {
    let mut txns = sample_txns(10);
    txns.swap(4, 5);
    let dir = TempDir::new("rec-order");
    let e = recover_with(&OsDisk, &dir.0, &mut FakeLog::new(txns)).expect_err("order");
    assert!(e.to_string().contains("out of order"), "{e}");
}

#[test]
fn log_corruption_refuses_with_the_readers_message() {
    let txns = sample_txns(10);
    let dir = TempDir::new("rec-logbad");
    let mut log = FakeLog::new(txns);
    log.fail_after = Some((3, "log.1: at byte 4096: record CRC mismatch".into()));
    let e = recover_with(&OsDisk, &dir.0, &mut log).expect_err("corrupt");
    assert!(matches!(e, RecoveryError::Log(_)));
    assert!(e.to_string().contains("log.1: at byte 4096"), "{e}");
}

#[test]
fn a_torn_tail_note_is_reported() {
    let txns = sample_txns(10);
    let dir = TempDir::new("rec-torn");
    let mut log = FakeLog::new(txns.clone());
    log.torn_note = Some("truncated torn tail of log.1 at byte 8192".into());
    let r = recover_with(&OsDisk, &dir.0, &mut log).expect("recover");
    assert_eq!(
        r.notes,
        vec!["truncated torn tail of log.1 at byte 8192".to_string()]
    );
    assert_eq!(r.tree, fresh(&txns));
}

#[test]
fn follows_accepts_the_next_counter_and_a_new_epoch() {
    assert!(follows(0, 1));
    assert!(follows(5, 6));
    assert!(!follows(5, 7));
    assert!(!follows(5, 5));
    assert!(follows(0x1_0000_0009, 0x2_0000_0001));
    assert!(!follows(0x1_0000_0009, 0x2_0000_0002));
    assert!(!follows(0x2_0000_0009, 0x1_0000_0001));
}
