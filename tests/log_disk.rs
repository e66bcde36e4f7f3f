//! The log on the real file system through io_uring with O_DIRECT: round trip, torn
//! tails at every byte offset, a flipped byte refused, ENOSPC on a loop-mounted ext4.

mod common_log;

use common_log::*;
use ringkeeper::storage::{
    IoBackend, LogConfig, LogError, LogPosition, LogReader, Logger, OsDisk, SyncMode,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rk-log-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cfg(dir: &Path) -> LogConfig {
    let mut c = LogConfig::new(dir);
    c.segment_bytes = 256 << 10;
    c.max_write_bytes = 16 << 10;
    c.max_inflight_writes = 2;
    c.sync = SyncMode::Dsync;
    c.backend = IoBackend::Uring;
    c
}

/// Writes `batches` batches of 3 txns through io_uring and waits until all are durable.
fn write_log(dir: &Path, c: LogConfig, batches: i64) {
    let (notify, rx) = notifier();
    let logger = Logger::start(c, Arc::new(OsDisk), LogPosition::default(), notify).unwrap();
    let mut oracle = Oracle::default();
    for b in 0..batches {
        logger.append(batch(1 + 3 * b, 3, 0, 500)).unwrap();
    }
    let last = 3 * batches;
    wait_for(&logger, &rx, &mut oracle, |o| o.settled(last));
    assert_eq!(oracle.durable_through, last, "{:?}", oracle.errors);
    let _ = dir;
}

fn replay_all(dir: &Path) -> Result<(Vec<i64>, ringkeeper::storage::LogEnd), LogError> {
    let reader = LogReader::open(Arc::new(OsDisk), dir)?;
    let mut z = Vec::new();
    let end = reader.replay(1, |r| {
        z.push(r.txn.zxid);
        Ok(())
    })?;
    Ok((z, end))
}

#[test]
fn uring_round_trip_across_segments() {
    let dir = temp_dir("rt");
    // 200 batches of ~1.6 KiB records: several 256 KiB segments.
    write_log(&dir, cfg(&dir), 200);
    let (z, end) = replay_all(&dir).unwrap();
    assert_eq!(z, (1..=600).collect::<Vec<_>>());
    assert!(end.torn.is_none());
    assert!(
        LogReader::open(Arc::new(OsDisk), &dir)
            .unwrap()
            .segments()
            .len()
            > 1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncating_the_newest_segment_anywhere_recovers_a_prefix() {
    let dir = temp_dir("trunc");
    write_log(&dir, cfg(&dir), 6);
    let reader = LogReader::open(Arc::new(OsDisk), &dir).unwrap();
    let seg = reader.segments().pop().unwrap();
    let image = std::fs::read(&seg).unwrap();
    let (_, end) = replay_all(&dir).unwrap();
    let data_end = end.position.tail.unwrap().end_offset as usize;
    // Every byte offset within the last two batches (each padded to a 4 KiB block).
    let from = data_end - 2 * 4096;
    let mut prev_len = 0;
    for cut in from..=data_end {
        std::fs::write(&seg, &image[..cut]).unwrap();
        let (z, _) = replay_all(&dir).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        // A prefix, whole batches only, never shrinking as the cut moves on.
        assert_eq!(z, (1..=z.len() as i64).collect::<Vec<_>>(), "cut {cut}");
        assert!(z.len() >= prev_len, "cut {cut}");
        prev_len = z.len();
    }
    assert_eq!(prev_len, 18);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_flipped_byte_in_an_earlier_record_is_refused_with_file_and_offset() {
    let dir = temp_dir("flip");
    write_log(&dir, cfg(&dir), 200);
    let reader = LogReader::open(Arc::new(OsDisk), &dir).unwrap();
    let first = reader.segments()[0].clone();
    // The fifth record of the oldest segment: a record with many after it.
    let mut offsets = Vec::new();
    reader
        .replay(1, |r| {
            if r.file == first {
                offsets.push(r.offset);
            }
            Ok(())
        })
        .unwrap();
    let rec = offsets[4] as usize;
    let mut image = std::fs::read(&first).unwrap();
    image[rec + 16 + 10] ^= 0x20;
    std::fs::write(&first, &image).unwrap();
    let err = replay_all(&dir).unwrap_err().to_string();
    assert!(
        err.contains(first.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
    assert!(err.contains(&format!("offset {rec}:")), "{err}");
    assert!(err.contains("expected record crc32c"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Unmounts and deletes the loop-mounted image on every exit path.
struct LoopFs {
    mnt: PathBuf,
    img: PathBuf,
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = std::fs::remove_dir(&self.mnt);
        let _ = std::fs::remove_file(&self.img);
        if let Some(base) = self.img.parent() {
            let _ = std::fs::remove_dir(base);
        }
    }
}

fn loop_ext4(name: &str, mib: u64) -> Option<LoopFs> {
    let base = temp_dir(name);
    let img = base.join("fs.img");
    let mnt = base.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(mib << 20).unwrap();
    let ok = |c: &mut Command| c.output().map(|o| o.status.success()).unwrap_or(false);
    if !ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img)) {
        eprintln!("SKIP: mkfs.ext4 unavailable");
        return None;
    }
    if !ok(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img)
        .arg(&mnt))
    {
        eprintln!("SKIP: cannot loop-mount (not root?)");
        let _ = std::fs::remove_file(&img);
        return None;
    }
    Some(LoopFs { mnt, img })
}

#[test]
fn enospc_on_a_small_ext4_fails_the_batch_and_recovers_when_space_returns() {
    let Some(fs) = loop_ext4("enospc", 16) else {
        return;
    };
    let dir = fs.mnt.join("log");
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = cfg(&dir);
    c.segment_bytes = 2 << 20;
    c.background_spare = false;
    let (notify, rx) = notifier();
    let logger = Logger::start(c, Arc::new(OsDisk), LogPosition::default(), notify).unwrap();
    let mut oracle = Oracle::default();
    logger.append(batch(1, 1, 0, 100)).unwrap();
    wait_for(&logger, &rx, &mut oracle, |o| o.settled(1));
    assert_eq!(oracle.durable_through, 1);
    // Fill the file system: the spare after the next switch cannot be made.
    let filler = fs.mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![1u8; 1 << 20];
        // Bounded by the image size.
        for _ in 0..32 {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = f.sync_all();
    }
    // Bounded: three segments of 4 KiB batches.
    let z = append_until_enospc(&logger, &rx, &mut oracle, 2, 3 * 512);
    std::fs::remove_file(&filler).unwrap();
    logger.append(batch(z, 1, 1, 3000)).unwrap();
    wait_for(&logger, &rx, &mut oracle, |o| {
        o.durable_through == z || o.failed.len() > 1
    });
    assert_eq!(oracle.durable_through, z, "{:?}", oracle.errors);
    drop(logger);
    let (zs, _) = replay_all(&dir).unwrap();
    assert_eq!(zs, (1..=z).collect::<Vec<_>>());
}

/// The spare segment's zeros are paced against the log: while the log is busy they stay
/// within twice what the log wrote into its segment (plus one chunk), they follow the
/// log as it writes more, and they go at full speed once the logger needs the spare.
/// (The idle rule is switched off here so that a slow machine cannot release the pace.)
#[test]
fn spare_zeros_are_paced_against_the_log_and_hurried_when_needed() {
    use ringkeeper::storage::log::{prepare_spare, SparePace};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    const CHUNK: u64 = 256 << 10;
    const SEGMENT: u64 = 8 << 20;
    let dir = temp_dir("spare-pace");
    let path = dir.join("log.spare");
    let pace = Arc::new(SparePace::with_idle_after(Duration::from_secs(3600)));
    pace.log_bytes.store(100 << 10, Ordering::Relaxed);
    let worker = {
        let (pace, path) = (pace.clone(), path.clone());
        std::thread::spawn(move || prepare_spare(&OsDisk, &path, SEGMENT, false, Some(&pace)))
    };
    // The zeros go to the partial file until they are complete.
    let partial = ringkeeper::storage::log::partial_spare(&path);
    let len = || std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    // Waits (bounded) until the spare has at least `want` bytes.
    let reach = |want: u64| {
        let until = Instant::now() + Duration::from_secs(30);
        while len() < want && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            len() >= want,
            "spare stuck at {} bytes, wanted {want}",
            len()
        );
    };
    for log in [100u64 << 10, 1 << 20] {
        pace.log_bytes.store(log, Ordering::Relaxed);
        reach(2 * log);
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            len() <= 2 * log + CHUNK,
            "spare ran ahead of a busy log: {} bytes for {log} logged",
            len()
        );
    }
    pace.hurry();
    worker.join().unwrap().unwrap();
    // Complete: renamed to the spare's name.
    assert!(!partial.exists());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), SEGMENT);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A complete spare segment left by an earlier run is reused as it is (the same file,
/// not another segment of zeros written while a restarted server recovers); a leftover
/// `.partial` file is removed; a spare of the wrong size is prepared anew.
#[test]
fn a_restart_reuses_a_complete_spare_and_replaces_a_short_one() {
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, Instant};
    let dir = temp_dir("spare-reuse");
    let c = cfg(&dir);
    let segment = c.segment_bytes;
    write_log(&dir, c, 20);
    let spare = dir.join("log.spare");
    let partial = ringkeeper::storage::log::partial_spare(&spare);
    // Waits (bounded) until a complete spare is there; its inode and change time (an
    // inode number can be reused by a file made anew, its change time not).
    let complete_spare = || {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(m) = std::fs::metadata(&spare) {
                if m.len() == segment {
                    return (m.ino(), m.ctime(), m.ctime_nsec());
                }
            }
            assert!(Instant::now() < until, "no complete spare");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // Appends one batch after what the log holds, through a new logger.
    let restart_and_append = |first: i64| {
        let (_, end) = replay_all(&dir).unwrap();
        let (notify, rx) = notifier();
        let logger = Logger::start(cfg(&dir), Arc::new(OsDisk), end.position, notify).unwrap();
        let mut oracle = Oracle::default();
        logger.append(batch(first, 3, 0, 500)).unwrap();
        wait_for(&logger, &rx, &mut oracle, |o| o.settled(first + 2));
        assert_eq!(oracle.durable_through, first + 2, "{:?}", oracle.errors);
    };
    let ino = complete_spare();
    std::fs::write(&partial, b"left by a preparation cut short").unwrap();
    restart_and_append(61);
    assert_eq!(complete_spare(), ino, "the complete spare was rewritten");
    assert!(
        !partial.exists(),
        "the leftover partial spare is still there"
    );

    // A short spare (a file of the wrong size) is replaced by a complete one.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&spare)
        .unwrap();
    f.set_len(segment / 2).unwrap();
    drop(f);
    restart_and_append(64);
    assert_ne!(complete_spare(), ino, "a short spare was kept");
    let (z, end) = replay_all(&dir).unwrap();
    assert_eq!(z, (1..=66).collect::<Vec<_>>());
    assert!(end.torn.is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The real file system, except that the rename of the spare into a new segment waits
/// until the test opens the gate: a segment switch that stays in progress.
#[derive(Default)]
struct GatedDisk {
    gate: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl GatedDisk {
    fn open_gate(&self) {
        let (open, cv) = &*self.gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

impl ringkeeper::storage::Disk for GatedDisk {
    fn open(
        &self,
        path: &Path,
        opts: ringkeeper::storage::OpenOptions,
    ) -> std::io::Result<Box<dyn ringkeeper::storage::DiskFile>> {
        OsDisk.open(path, opts)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        OsDisk.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        if from.file_name().is_some_and(|n| n == "log.spare") {
            let (open, cv) = &*self.gate;
            let mut g = open.lock().unwrap();
            while !*g {
                g = cv.wait(g).unwrap();
            }
        }
        OsDisk.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        OsDisk.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        OsDisk.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        OsDisk.create_dir_all(dir)
    }
}

/// With a notifier (as the server's core loop sets), a segment switch runs on its own
/// thread: `submit` returns while the switch is stuck at its rename, nothing is written
/// meanwhile, and the batches that waited are written into the new segment once it is
/// done. Before, the switch's header sync, rename and directory sync ran on the loop's
/// thread, which also carries the quorum links and shard 0's clients.
#[test]
fn a_segment_switch_runs_off_the_writers_thread_and_the_batches_wait_for_it() {
    use ringkeeper::storage::log::{encode_record, LogWriter, WriteIo};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    let dir = temp_dir("bgswitch");
    let disk = Arc::new(GatedDisk::default());
    let mut w = LogWriter::open(cfg(&dir), disk.clone(), LogPosition::default()).unwrap();
    let (tx, switched) = std::sync::mpsc::channel();
    w.set_switch_notify(Arc::new(move || {
        let _ = tx.send(());
    }));
    // A writer that blocked in the switch would never return from `submit`: open the
    // gate after a minute at most, and say so, so that the test fails instead of hanging.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog_fired = Arc::new(AtomicBool::new(false));
    {
        let (disk, fired) = (disk.clone(), watchdog_fired.clone());
        std::thread::spawn(move || {
            if done_rx.recv_timeout(Duration::from_secs(60)).is_err() {
                fired.store(true, Ordering::SeqCst);
                disk.open_gate();
            }
        });
    }
    let records = |first: i64| batch(first, 3, 0, 200).iter().map(encode_record).collect();
    let mut io = ringkeeper::storage::log::BlockingIo::default();
    let mut events = Vec::new();
    // The first batch needs the first segment: the switch starts and `submit` returns.
    w.append(records(1));
    w.submit(&mut io, &mut events);
    assert!(
        !watchdog_fired.load(Ordering::SeqCst),
        "submit blocked in the switch"
    );
    assert!(w.switching() && !w.is_idle());
    // More batches wait behind the switch; nothing is written.
    w.append(records(4));
    w.submit(&mut io, &mut events);
    assert!(
        !watchdog_fired.load(Ordering::SeqCst),
        "submit blocked in the switch"
    );
    assert_eq!(
        io.submitted, 0,
        "a batch was written before its segment existed"
    );
    assert!(events.is_empty(), "{events:?}");
    // Let the switch finish: it says so, and the waiting batches are written.
    disk.open_gate();
    switched
        .recv_timeout(Duration::from_secs(60))
        .expect("the switch thread notifies when it is done");
    w.submit(&mut io, &mut events);
    assert!(!w.switching());
    assert_eq!(io.submitted, 1, "both waiting batches go out in one write");
    let mut done = Vec::new();
    io.reap(&mut done, false);
    for (id, r, buf) in done {
        w.completed(id, r, buf, &mut events);
    }
    assert!(
        matches!(
            events.as_slice(),
            [ringkeeper::storage::LogEvent::Durable { through_zxid: 6 }]
        ),
        "{events:?}"
    );
    assert!(w.is_idle());
    let _ = done_tx.send(());
    drop(w);
    let (z, _) = replay_all(&dir).unwrap();
    assert_eq!(z, (1..=6).collect::<Vec<i64>>());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A closed writer finishes the spare it is preparing and waits for that thread:
/// nothing of it is left running to race a writer reopened on the same directory (TRUNC
/// and SNAP in place reopen the log), which then makes its own spares and switches
/// segments as usual. Before, the old thread went on writing after the writer was
/// gone, and its rename could take the new writer's partial spare.
#[test]
fn a_closed_writer_finishes_its_spare_and_a_reopened_one_switches_as_usual() {
    use ringkeeper::storage::log::{partial_spare, LogWriter, SPARE_NAME};
    let dir = temp_dir("spare-drop");
    let mut big = cfg(&dir);
    // A spare that takes a while: far from done when the writer is closed at once.
    big.segment_bytes = 32 << 20;
    let w = LogWriter::open(big, Arc::new(OsDisk), LogPosition::default()).unwrap();
    drop(w);
    let spare = dir.join(SPARE_NAME);
    assert!(
        !partial_spare(&spare).exists(),
        "the closed writer's spare is still being written"
    );
    assert_eq!(std::fs::metadata(&spare).unwrap().len(), 32 << 20);
    // Reopened with small segments (the spare of the wrong size is made anew):
    // several switches, each from a spare of its own.
    write_log(&dir, cfg(&dir), 200);
    let (z, _) = replay_all(&dir).unwrap();
    assert_eq!(z, (1..=600).collect::<Vec<i64>>());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Completes every write `io` finished, as the owner's loop would on its completions.
fn complete_all(
    w: &mut ringkeeper::storage::log::LogWriter,
    io: &mut ringkeeper::storage::log::BlockingIo,
    events: &mut Vec<ringkeeper::storage::LogEvent>,
) {
    use ringkeeper::storage::log::WriteIo;
    let mut done = Vec::new();
    io.reap(&mut done, false);
    for (id, r, buf) in done {
        w.completed(id, r, buf, events);
    }
}

/// `logSyncIntervalMicros`: a batch alone with the disk idle is written at once; batches
/// that come while a write is in flight wait until the interval since that write's
/// start has passed, and go together; a write's worth waiting goes at once.
#[test]
fn overlapping_writes_start_no_closer_than_the_sync_interval() {
    use ringkeeper::storage::log::{encode_record, BlockingIo, LogWriter};
    use ringkeeper::storage::LogEvent;
    use std::time::{Duration, Instant};
    let dir = temp_dir("sync-interval");
    let mut c = cfg(&dir);
    c.max_inflight_writes = 8;
    c.sync_interval = Duration::from_millis(1);
    let max_write = c.max_write_bytes;
    let mut w = LogWriter::open(c, Arc::new(OsDisk), LogPosition::default()).unwrap();
    let records = |first: i64, n: usize, len: usize| {
        batch(first, n, 0, len)
            .iter()
            .map(encode_record)
            .collect::<Vec<_>>()
    };
    let (mut io, mut events) = (BlockingIo::default(), Vec::new());
    let us = Duration::from_micros;
    let t0 = Instant::now();
    // Alone, the disk idle: at once.
    w.append(records(1, 3, 100));
    w.submit_at(&mut io, &mut events, t0);
    assert_eq!((io.submitted, w.hold_until()), (1, None));
    // While it is in flight: held until a millisecond after it started.
    w.append(records(4, 3, 100));
    w.submit_at(&mut io, &mut events, t0 + us(100));
    assert_eq!((io.submitted, w.hold_until()), (1, Some(t0 + us(1000))));
    // The first completes; a batch after it joins the held one instead of going alone.
    complete_all(&mut w, &mut io, &mut events);
    assert!(matches!(
        events.as_slice(),
        [LogEvent::Durable { through_zxid: 3 }]
    ));
    w.append(records(7, 3, 100));
    w.submit_at(&mut io, &mut events, t0 + us(500));
    assert_eq!((io.submitted, w.hold_until()), (1, Some(t0 + us(1000))));
    // At its time both go in one write.
    w.submit_at(&mut io, &mut events, t0 + us(1000));
    assert_eq!((io.submitted, w.hold_until()), (2, None));
    complete_all(&mut w, &mut io, &mut events);
    assert!(matches!(
        events.last(),
        Some(LogEvent::Durable { through_zxid: 9 })
    ));
    // Nothing in flight, nothing held: the next goes at once, however soon.
    w.append(records(10, 3, 100));
    w.submit_at(&mut io, &mut events, t0 + us(1100));
    assert_eq!((io.submitted, w.hold_until()), (3, None));
    // A write's worth waiting does not wait for the interval.
    let n = max_write / 100 + 1;
    w.append(records(13, n, 100));
    w.submit_at(&mut io, &mut events, t0 + us(1200));
    assert_eq!((io.submitted, w.hold_until()), (4, None));
    complete_all(&mut w, &mut io, &mut events);
    let through = 12 + n as i64;
    assert!(matches!(
        events.last(),
        Some(LogEvent::Durable { through_zxid }) if *through_zxid == through
    ));
}

/// Without a sync interval (the default), a batch that comes while a write is in flight
/// is written at once in a free slot, as before.
#[test]
fn without_a_sync_interval_overlapping_writes_go_at_once() {
    use ringkeeper::storage::log::{encode_record, BlockingIo, LogWriter};
    use std::time::Instant;
    let dir = temp_dir("no-sync-interval");
    let mut w = LogWriter::open(cfg(&dir), Arc::new(OsDisk), LogPosition::default()).unwrap();
    let records = |first: i64| batch(first, 3, 0, 100).iter().map(encode_record).collect();
    let (mut io, mut events) = (BlockingIo::default(), Vec::new());
    let t0 = Instant::now();
    w.append(records(1));
    w.submit_at(&mut io, &mut events, t0);
    w.append(records(4));
    w.submit_at(&mut io, &mut events, t0);
    assert_eq!((io.submitted, w.hold_until()), (2, None));
}

/// The logger thread has no timer to end a hold with: it refuses a sync interval rather
/// than hold a batch until the next one happens to come.
#[test]
#[should_panic(expected = "does not space writes")]
fn the_logger_thread_refuses_a_sync_interval() {
    let dir = temp_dir("logger-interval");
    let mut c = cfg(&dir);
    c.sync_interval = std::time::Duration::from_millis(1);
    let (notify, _rx) = notifier();
    let _ = Logger::start(c, Arc::new(OsDisk), LogPosition::default(), notify);
}
