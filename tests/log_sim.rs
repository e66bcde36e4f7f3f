//! The log driven through the simulated disk: crashes at seeded random points, failed
//! datasyncs, ENOSPC. Deterministic per seed (blocking backend, inline spare); a failing
//! seed is printed.

mod common_log;

use common_log::*;
use ringkeeper::storage::{
    Disk, FaultOp, IoBackend, LogConfig, LogPosition, LogReader, Logger, SimDisk, SyncMode,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn cfg(dir: &Path, sync: SyncMode) -> LogConfig {
    let mut c = LogConfig::new(dir);
    c.segment_bytes = 64 << 10;
    c.sync = sync;
    c.backend = IoBackend::Blocking;
    c.max_write_bytes = 8 << 10;
    c.max_inflight_writes = 1;
    c.queue_batches = 64;
    c.direct = false;
    c.background_spare = false;
    c
}

/// Replays the whole log and returns its txns' (zxid, cxid).
fn replay(disk: &SimDisk, dir: &Path) -> (Vec<(i64, i32)>, LogPosition) {
    let reader = LogReader::open(Arc::new(disk.clone()), dir).expect("open");
    let mut got = Vec::new();
    let end = reader
        .replay(1, |r| {
            got.push((r.txn.zxid, r.txn.cxid));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("replay refused: {e}"));
    (got, end.position)
}

fn run_seed(seed: u64, sync: SyncMode) {
    let dir = PathBuf::from("/log");
    let disk = SimDisk::new(seed);
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    let mut pos = LogPosition::default();
    // The oracle of acknowledged writes: (zxid, cxid) of every txn reported durable.
    let mut acked: Vec<(i64, i32)> = Vec::new();
    for round in 0..4i32 {
        let (notify, rx) = notifier();
        let logger = Logger::start(cfg(&dir, sync), Arc::new(disk.clone()), pos, notify).unwrap();
        disk.crash_after_ops(5 + next(60));
        let mut oracle = Oracle {
            durable_through: pos.last_zxid,
            last_reported: pos.last_zxid,
            ..Default::default()
        };
        let mut sent: Vec<(i64, i32)> = Vec::new();
        let mut z = pos.last_zxid + 1;
        // Bounded: at most 40 batches per round.
        for _ in 0..40 {
            let n = 1 + next(6) as usize;
            let b = batch(z, n, round, 1 + next(3000) as usize);
            sent.extend(b.iter().map(|t| (t.zxid, t.cxid)));
            if logger.append(b).is_err() {
                break;
            }
            let last = z + n as i64 - 1;
            wait_for(&logger, &rx, &mut oracle, |o| o.settled(last));
            if !oracle.failed.is_empty() {
                break;
            }
            z = last + 1;
        }
        acked.retain(|&(zx, _)| zx <= pos.last_zxid);
        acked.extend(sent.iter().filter(|&&(zx, _)| zx <= oracle.durable_through));
        drop(logger);
        disk.crash();
        let (got, p) = replay(&disk, &dir);
        // Every acknowledged txn is there, with its content; nothing acked is missing.
        for (i, a) in acked.iter().enumerate() {
            assert_eq!(
                got.get(i),
                Some(a),
                "seed {seed} round {round}: acked txn lost"
            );
        }
        // What follows the acknowledged ones can only be txns that were sent (written but
        // not yet reported), in order.
        for g in &got[acked.len()..] {
            assert!(sent.contains(g), "seed {seed}: record never sent: {g:?}");
        }
        acked = got.clone();
        pos = p;
    }
}

#[test]
fn crash_at_random_points_keeps_every_acknowledged_txn() {
    for seed in 0..60 {
        run_seed(seed, SyncMode::Dsync);
        run_seed(seed, SyncMode::Fdatasync);
    }
}

#[test]
fn failed_datasync_is_never_acknowledged_and_the_log_recovers() {
    let dir = PathBuf::from("/log");
    let disk = SimDisk::new(11);
    let (notify, rx) = notifier();
    let logger = Logger::start(
        cfg(&dir, SyncMode::Fdatasync),
        Arc::new(disk.clone()),
        LogPosition::default(),
        notify,
    )
    .unwrap();
    let mut oracle = Oracle::default();
    logger.append(batch(1, 3, 0, 100)).unwrap();
    wait_for(&logger, &rx, &mut oracle, |o| o.settled(3));
    assert_eq!(oracle.durable_through, 3);
    // The next datasync fails: zxids 4..6 must fail, and so must 7..9 queued behind.
    disk.fail_op(FaultOp::Sync, 0, libc::EIO);
    logger.append(batch(4, 3, 0, 100)).unwrap();
    logger.append(batch(7, 3, 0, 100)).unwrap();
    wait_for(&logger, &rx, &mut oracle, |o| o.settled(9));
    assert_eq!(oracle.durable_through, 3);
    // Group commit may have put both batches in one write; either way 4..=9 failed.
    assert_eq!(oracle.failed.first().map(|f| f.0), Some(4));
    assert_eq!(oracle.failed.last().map(|f| f.1), Some(9));
    assert!(
        oracle.errors[0].contains("Input/output error"),
        "{:?}",
        oracle.errors
    );
    // The sequencer re-proposes from 4 with new content (generation 1).
    logger.append(batch(4, 2, 1, 100)).unwrap();
    let failures = oracle.failed.len();
    wait_for(&logger, &rx, &mut oracle, |o| {
        o.durable_through >= 5 || o.failed.len() > failures
    });
    assert_eq!(oracle.durable_through, 5);
    drop(logger);
    disk.crash();
    let (got, pos) = replay(&disk, &dir);
    assert_eq!(got, vec![(1, 0), (2, 0), (3, 0), (4, 1), (5, 1)]);
    assert_eq!(pos.last_zxid, 5);
}

#[test]
fn enospc_fails_the_batch_and_the_log_recovers_when_space_returns() {
    let dir = PathBuf::from("/log");
    let disk = SimDisk::new(5);
    let (notify, rx) = notifier();
    let c = cfg(&dir, SyncMode::Dsync);
    let seg = c.segment_bytes;
    let logger = Logger::start(c, Arc::new(disk.clone()), LogPosition::default(), notify).unwrap();
    let mut oracle = Oracle::default();
    logger.append(batch(1, 1, 0, 100)).unwrap();
    wait_for(&logger, &rx, &mut oracle, |o| o.settled(1));
    // Room for the current segment and its spare, nothing more: the switch after next
    // cannot prepare a new spare.
    disk.set_space_limit(Some(2 * seg));
    // Bounded: three segments' worth of 4 KiB batches at most.
    let z = append_until_enospc(&logger, &rx, &mut oracle, 2, 3 * seg / 4096);
    disk.set_space_limit(None);
    logger.append(batch(z, 1, 1, 3000)).unwrap();
    wait_for(&logger, &rx, &mut oracle, |o| {
        o.settled(z) && o.durable_through == z
    });
    drop(logger);
    let names = disk.list(&dir).unwrap();
    assert!(names.len() >= 3, "{names:?}");
    let (got, _) = replay(&disk, &dir);
    assert_eq!(got.len() as i64, z);
    assert_eq!(got.last(), Some(&(z, 1)));
}
