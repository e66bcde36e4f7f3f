//! Log group-commit benchmark: commits/s and MB/s at batch sizes 4 KiB..256 KiB, one
//! write in flight against several, O_DSYNC against write + fdatasync, through the real
//! `Logger` (io_uring, O_DIRECT) on the directory given (default: the temp dir).
//!
//! `cargo bench --bench logbench -- [dir] [seconds per run]`; each run is short. With
//! `--test` it runs one tiny case so it cannot rot.
//!
//! Measured on the 2-core dev VM (virtio disk, ext4, kernel 6.18), 1.5 s per run, beside
//! `fio --rw=write --direct=1 --fdatasync=1 --size=64m --runtime=2 --time_based` on the
//! same file system (commits/s; fio: IOPS):
//!
//! | batch | log Dsync 1 | log Dsync 8 | log fdatasync 1 | log fdatasync 8 | fio psync qd1 | fio io_uring qd8 |
//! |------:|-----:|------:|-----:|------:|-----:|------:|
//! |   4K  | 6537 | 31701 | 4623 | 21857 | 7506 | 28465 |
//! |  16K  | 6850 | 21997 | 4493 | 18868 | 7662 | 25504 |
//! |  64K  | 5447 | 11391 | 4615 | 10162 | 7338 | 16208 |
//! | 256K  | 2425 |  3678 | 2247 |  3743 | 4522 |  6979 |
//!
//! O_DSYNC with 8 writes in flight is the fastest safe mode at the small batches that
//! dominate a coordination service, so it is the default. At 64K+ the log trails fio by
//! encoding and CRC-ing each payload on the one log thread (fio writes a fixed buffer).

use bytes::Bytes;
use ringkeeper::storage::{LogConfig, LogEvent, LogPosition, Logger, OsDisk, SyncMode};
use ringkeeper::txn::{Txn, TxnOp};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn txn(zxid: i64, data: &Bytes) -> Txn {
    Txn {
        session_id: 1,
        cxid: 1,
        zxid,
        time_ms: 0,
        op: TxnOp::SetData {
            path: "/bench".into(),
            data: Some(data.clone()),
            version: 1,
        },
    }
}

/// Returns (commits per second, MB/s, p50-free mean latency is not measured here).
fn run(
    dir: &std::path::Path,
    batch_bytes: usize,
    inflight: usize,
    sync: SyncMode,
    secs: f64,
) -> (f64, f64) {
    let _ = std::fs::remove_dir_all(dir);
    let mut c = LogConfig::new(dir);
    c.sync = sync;
    c.max_inflight_writes = inflight;
    c.max_write_bytes = batch_bytes;
    c.segment_bytes = 64 << 20;
    let (tx, rx) = channel();
    let logger = Logger::start(
        c,
        Arc::new(OsDisk),
        LogPosition::default(),
        Box::new(move || {
            let _ = tx.send(());
        }),
    )
    .expect("start logger");
    // One txn per batch whose record fills the block-padded batch (header overheads
    // subtracted), so each write is exactly `batch_bytes`.
    let data = Bytes::from(vec![7u8; batch_bytes - 200]);
    let mut next = 1i64;
    let mut durable = 0i64;
    let mut events = Vec::new();
    let start = Instant::now();
    let deadline = Duration::from_secs_f64(secs);
    // The sequencer-like driver keeps 2x the in-flight bound queued so the log never idles.
    while start.elapsed() < deadline {
        while next - durable <= 2 * inflight as i64 {
            logger.append(vec![txn(next, &data)]).expect("queue");
            next += 1;
        }
        let _ = rx.recv_timeout(Duration::from_millis(100));
        logger.poll(&mut events);
        for e in events.drain(..) {
            match e {
                LogEvent::Durable { through_zxid } => durable = through_zxid,
                LogEvent::Failed { error, .. } => panic!("log write failed: {error}"),
            }
        }
    }
    let t = start.elapsed().as_secs_f64();
    drop(logger);
    let _ = std::fs::remove_dir_all(dir);
    let rate = durable as f64 / t;
    (rate, rate * batch_bytes as f64 / 1e6)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let smoke = std::env::args().any(|a| a == "--test");
    let base = args
        .first()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1.5);
    let dir = base.join(format!("rk-logbench-{}", std::process::id()));
    if smoke {
        let (r, _) = run(&dir, 4096, 2, SyncMode::Dsync, 0.05);
        assert!(r > 0.0);
        println!("logbench smoke ok");
        return;
    }
    println!(
        "{:>8} {:>8} {:>10} {:>12} {:>8}",
        "batch", "inflight", "sync", "commits/s", "MB/s"
    );
    for &sync in &[SyncMode::Dsync, SyncMode::Fdatasync] {
        for &inflight in &[1usize, 8] {
            for &kib in &[4usize, 16, 64, 256] {
                let (r, mb) = run(&dir, kib << 10, inflight, sync, secs);
                println!(
                    "{:>7}K {:>8} {:>10} {:>12.0} {:>8.1}",
                    kib,
                    inflight,
                    format!("{sync:?}"),
                    r,
                    mb
                );
            }
        }
    }
}
