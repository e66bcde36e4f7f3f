//! The transaction log writer: a [`Logger`] owns a thread that group-commits batches of
//! txns to segment files and reports, in zxid order, which are durable.
//!
//! # Contract
//!
//! * [`Logger::start`] takes the [`LogPosition`] recovery found (the reader's
//!   [`LogEnd::position`](crate::storage::reader::LogEnd)): appending resumes after
//!   `last_zxid`, in the newest segment at its end offset. Before the first write the
//!   logger zeroes the in-flight window after that offset, erasing any torn tail.
//! * [`Logger::append`] never blocks: it queues one batch (the txns of one sequencer
//!   pass, zxids consecutive) or returns [`Full`] when [`LogConfig::queue_batches`]
//!   batches wait. The logger thread coalesces waiting batches into one write of at most
//!   [`LogConfig::max_write_bytes`] (group commit: a write closes at that bound or as soon
//!   as a write slot is free, i.e. when the disk is idle), and keeps up to
//!   [`LogConfig::max_inflight_writes`] writes in flight.
//! * [`Logger::poll`] drains [`LogEvent`]s, which arrive in zxid order; `notify` is
//!   called (on the logger thread) whenever new events are ready. `Durable { through }`
//!   means every zxid up to `through` is durable: each write before it completed.
//! * A failure: `Failed { first_zxid, last_zxid, error }` for the write that failed,
//!   then for every write in flight after it (even those that completed: nothing after a
//!   hole is acknowledged) and every batch queued before the caller saw the failure (any
//!   batch that does not continue from the last durable zxid). The log is then
//!   positioned after the last durable record and the next batch starting at
//!   `last durable + 1` is written normally (the sequencer rebuilds its speculative state
//!   and re-proposes from there). ENOSPC and EIO are both handled this way; the logger
//!   retries on each new batch, so it recovers when space returns.
//!
//! # Why a failed write or datasync is never trusted later (fsyncgate)
//!
//! Linux reports a writeback error once and may mark the pages clean, so a later
//! successful fdatasync says nothing about the earlier data. Here: (1) with O_DIRECT there
//! is no page cache, a completed O_DSYNC write is on the device, and a failed one is
//! simply not acknowledged; (2) in every mode, the blocks a failed or abandoned write
//! covered (the whole span from the last durable batch to the highest byte written) are
//! rewritten with zeros and synced before anything after them is written, and the
//! re-proposed batches are written anew into them. Nothing written before the failure is
//! ever counted durable by a later sync. If the repair itself fails, the next batch fails
//! with that error and the repair is tried again.
//!
//! # Segments
//!
//! A segment is preallocated by writing zeros and syncing (writing into fallocated,
//! unwritten extents costs a metadata update per write) under the name `log.spare`; a
//! spare is kept ready by a background thread. It writes the zeros with O_DIRECT (when
//! the log does) in small chunks, paced at twice the rate the log fills its current
//! segment ([`SparePace`]), full speed while the log is idle or waits for it: writing a
//! whole segment of zeros at once queued the log's own writes behind it at the device,
//! and made the slowest writes of a loaded server several times slower. At a switch the logger waits for its
//! writes in flight (so an older segment never has a torn batch), writes the header with
//! the first zxid, syncs, renames the spare to `log.<first zxid>` and syncs the directory.
//! The server's core loop has that done on a thread of its own
//! ([`LogWriter::set_switch_notify`]): its thread also carries the quorum links and
//! clients, which need not wait for the next log write's segment.
//! The zeros are written under `log.spare.partial` and renamed to `log.spare` once
//! synced, so a complete spare is known by its name and size: a restarted server reuses
//! the one it left instead of writing another segment of zeros while it recovers and
//! rejoins (on a machine whose disk the other servers share, or its own next batches,
//! those zeros queue ahead of their writes).
//!
//! # I/O
//!
//! [`IoBackend::Uring`] writes through its own io_uring ring (the only I/O of the hot
//! path); [`IoBackend::Blocking`] writes through the [`Disk`] trait one at a time, which is
//! what the simulated disk drives. O_DIRECT is required by default: on a file system that
//! refuses it (tmpfs) start fails with a message naming the cause, unless
//! [`LogConfig::allow_buffered`] is set, which falls back to buffered I/O with the same
//! sync mode (still durable, slower) after a loud warning. Failing is the default because
//! a silent fallback would change the performance characteristics an operator chose.
//!
//! # Spacing synced writes
//!
//! Every write is synced, and some disks stall when synced writes come often: on the
//! virtual disk this was measured on, three writers at 3,300 synced 4 KiB writes a second
//! each saw 68-164 writes over 5 ms in 10 s, at 1,000 a second each 5-11. Cloud volumes
//! with an IOPS budget behave alike. With [`LogConfig::sync_interval`] set
//! (`logSyncIntervalMicros`), a write starts at least that long after the previous one
//! while writes overlap: a batch that comes while a write is in flight is held, and what
//! comes after it joins it, until the interval since the last write's start has passed
//! (or a whole write's worth waits). A batch that finds the disk idle and nothing held
//! goes at once, so a lone client's write never waits. The owner asks when to submit
//! again ([`LogWriter::hold_until`]). Zero, the default, holds nothing.

use crate::storage::aligned::{round_up, AlignedBuf};
use crate::storage::disk::{Disk, DiskFile, OpenOptions};
use crate::storage::format::{batch_disk_len, encode_batch, segment_name, SegmentHeader, BLOCK};
use crate::storage::reader::{zxid_follows, LogPosition};
use crate::storage::txn_codec::encode_txn;
use crate::txn::Txn;
use crate::zab::Txn as Record;
use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a write becomes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// O_DSYNC: a completed write is durable. The default: measured faster than
    /// write + fdatasync here (see the benchmark notes).
    Dsync,
    /// Each write followed by a linked fdatasync.
    Fdatasync,
    /// `forceSync=no`: never sync. UNSAFE: acknowledged txns can be lost on power loss
    /// (not on a process crash: the page cache survives that). For tests and benchmarks.
    None,
}

/// How the logger talks to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoBackend {
    /// Its own io_uring ring, several writes in flight. Needs a real file system.
    Uring,
    /// Blocking calls through the [`Disk`] trait, one write at a time.
    Blocking,
}

/// Settings of the log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// dataLogDir (or dataDir).
    pub dir: PathBuf,
    /// Bytes per segment file (64 MiB default); a multiple of the block size.
    pub segment_bytes: u64,
    pub sync: SyncMode,
    pub backend: IoBackend,
    /// Group-commit size bound: the most bytes one write carries (256 KiB default). A
    /// single batch larger than this is written alone.
    pub max_write_bytes: usize,
    /// Writes in flight at once (8 default: the design measured 4-16 as the useful range).
    pub max_inflight_writes: usize,
    /// The shortest time between the starts of two writes while writes overlap
    /// ([`Duration::ZERO`] default: no such bound). See "Spacing synced writes" in the
    /// module header.
    pub sync_interval: Duration,
    /// Batches that may wait in the append queue before `append` says [`Full`].
    pub queue_batches: usize,
    /// Open segments with O_DIRECT.
    pub direct: bool,
    /// Where O_DIRECT is refused, fall back to buffered I/O instead of failing.
    pub allow_buffered: bool,
    /// Prepare the spare segment on a background thread (false: inline, deterministic).
    pub background_spare: bool,
}

impl LogConfig {
    pub fn new(dir: impl Into<PathBuf>) -> LogConfig {
        LogConfig {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            sync: SyncMode::Dsync,
            backend: IoBackend::Uring,
            max_write_bytes: 256 << 10,
            max_inflight_writes: 8,
            sync_interval: Duration::ZERO,
            queue_batches: 1024,
            direct: true,
            allow_buffered: false,
            background_spare: true,
        }
    }

    /// The most bytes that can be written past the last durable batch: the reader allows
    /// a torn tail this long. The largest single write may exceed `max_write_bytes` by
    /// one batch, so the bound counts that too.
    fn window_bytes(&self) -> u64 {
        (self.max_inflight_writes as u64) * (2 * self.max_write_bytes as u64)
    }
}

/// `append` found the queue full: retry after the next event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full(pub Vec<Record>);

/// What the logger reports, in zxid order.
#[derive(Debug)]
pub enum LogEvent {
    /// Every zxid up to `through_zxid` is durable.
    Durable { through_zxid: i64 },
    /// These zxids were not written durably and never will be.
    Failed {
        first_zxid: i64,
        last_zxid: i64,
        error: io::Error,
    },
}

/// The handle the sequencer holds. Dropping it stops the thread after the queued batches
/// are written.
pub struct Logger {
    tx: Option<SyncSender<Vec<Record>>>,
    events: Arc<Mutex<VecDeque<LogEvent>>>,
    wake: Arc<dyn Fn() + Send + Sync>,
    thread: Option<JoinHandle<()>>,
}

/// The spare segment's name while it is prepared and kept ready.
pub const SPARE_NAME: &str = "log.spare";
/// Bytes of zeros written per call when preallocating or repairing.
const ZERO_CHUNK: usize = 1 << 20;
/// Bytes of zeros per write while preparing a spare next to a busy log: a write this
/// small holds the device for well under a millisecond.
const SPARE_CHUNK: usize = 256 << 10;
/// The log counts as idle when it wrote nothing for this long; the spare then goes at
/// full speed.
const SPARE_IDLE: Duration = Duration::from_millis(20);
/// How long the spare's preparation waits before looking at the log's progress again
/// (the logger wakes it at once when it needs the spare). At 1 ms the thread's wake-ups
/// were ~3% of a busy leader's CPU; 10 ms lets the log write ~100 KB meanwhile at
/// 10 MB/s, well inside the pacing's margin of half a segment.
const SPARE_WAIT: Duration = Duration::from_millis(10);

/// Paces the preparation of the spare against the log (see the module docs, "Segments").
#[derive(Debug)]
pub struct SparePace {
    /// Bytes the logger has written into its current segment.
    pub log_bytes: AtomicU64,
    /// The logger waits for the spare: no more pacing.
    pub urgent: AtomicBool,
    /// The log counts as idle after writing nothing for this long.
    pub idle_after: Duration,
    /// The preparing thread, woken when the logger turns `urgent`.
    waiter: Mutex<Option<std::thread::Thread>>,
}

impl Default for SparePace {
    fn default() -> SparePace {
        SparePace {
            log_bytes: AtomicU64::new(0),
            urgent: AtomicBool::new(false),
            idle_after: SPARE_IDLE,
            waiter: Mutex::new(None),
        }
    }
}

impl SparePace {
    /// A pace whose log counts as idle after `idle_after` without writes.
    pub fn with_idle_after(idle_after: Duration) -> SparePace {
        SparePace {
            idle_after,
            ..SparePace::default()
        }
    }

    /// The logger needs the spare now: no more pacing, and no waiting out a pause.
    pub fn hurry(&self) {
        self.urgent.store(true, Ordering::Relaxed);
        if let Some(t) = self.waiter.lock().expect("not poisoned").as_ref() {
            t.unpark();
        }
    }
}

impl Logger {
    /// Starts the logger thread. `disk` is used for everything but the io_uring writes.
    ///
    /// # Errors
    /// The directory cannot be prepared, the tail segment cannot be opened (or refuses
    /// O_DIRECT), or the io_uring ring cannot be created.
    ///
    /// # Panics
    /// If `cfg.sync_interval` is set: this thread has no timer to end a hold with (the
    /// server's core loop drives its [`LogWriter`] and has one).
    pub fn start(
        cfg: LogConfig,
        disk: Arc<dyn Disk>,
        recovered: LogPosition,
        notify: Box<dyn Fn() + Send>,
    ) -> io::Result<Logger> {
        assert!(cfg.segment_bytes.is_multiple_of(BLOCK as u64));
        assert!(cfg.segment_bytes >= 4 * BLOCK as u64);
        assert!(cfg.max_inflight_writes >= 1 && cfg.queue_batches >= 1);
        assert!(cfg.max_write_bytes >= BLOCK);
        assert!(
            cfg.sync_interval.is_zero(),
            "the logger thread does not space writes (sync_interval)"
        );
        let mut core = LogWriter::open(cfg.clone(), disk, recovered)?;
        let (tx, rx) = mpsc::sync_channel(cfg.queue_batches);
        let events = Arc::new(Mutex::new(VecDeque::new()));
        let (mut io, wake): (Box<dyn WriteIo + Send>, Arc<dyn Fn() + Send + Sync>) =
            match cfg.backend {
                IoBackend::Blocking => (Box::new(BlockingIo::default()), Arc::new(|| {})),
                IoBackend::Uring => {
                    let u = crate::storage::uring::UringIo::new(cfg.max_inflight_writes)?;
                    let efd = u.wake_fd();
                    (Box::new(u), Arc::new(move || efd.wake()))
                }
            };
        let ev = events.clone();
        let thread = std::thread::Builder::new()
            .name("rk-log".into())
            .spawn(move || {
                run_thread(&mut core, io.as_mut(), rx, &ev, notify.as_ref());
            })?;
        Ok(Logger {
            tx: Some(tx),
            events,
            wake,
            thread: Some(thread),
        })
    }

    /// Queues one batch of txns (consecutive zxids, continuing the previous batch),
    /// encoding each with the txn codec.
    ///
    /// # Errors
    /// [`Full`] with the batch (encoded) when `queue_batches` batches already wait.
    ///
    /// # Panics
    /// If the batch is empty or the logger thread died.
    pub fn append(&self, batch: Vec<Txn>) -> Result<(), Full> {
        self.append_records(batch.iter().map(encode_record).collect())
    }

    /// Queues one batch of records already encoded (consecutive zxids).
    ///
    /// # Errors
    /// [`Full`] with the batch when `queue_batches` batches already wait.
    ///
    /// # Panics
    /// If the batch is empty or the logger thread died.
    pub fn append_records(&self, batch: Vec<Record>) -> Result<(), Full> {
        assert!(!batch.is_empty(), "empty batch");
        let tx = self.tx.as_ref().expect("logger running");
        match tx.try_send(batch) {
            Ok(()) => {
                (self.wake)();
                Ok(())
            }
            Err(TrySendError::Full(b)) => Err(Full(b)),
            Err(TrySendError::Disconnected(_)) => panic!("the log thread exited"),
        }
    }

    /// Moves the ready events into `out`, in zxid order.
    pub fn poll(&self, out: &mut Vec<LogEvent>) {
        out.extend(self.events.lock().expect("log events").drain(..));
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        self.tx.take();
        (self.wake)();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One write handed to the I/O backend: `buf` at `offset` of `fd_file`, reported back
/// with its `id` (and the buffer, for reuse) once complete.
pub struct WriteReq {
    pub id: u64,
    pub fd_file: Arc<dyn DiskFile>,
    pub offset: u64,
    pub buf: AlignedBuf,
    /// Follow the write with fdatasync.
    pub datasync: bool,
    /// Records the write carries.
    pub records: usize,
}

/// The I/O backend: starts writes and reports their completions. The [`Logger`] thread
/// uses its own ring ([`IoBackend`]); the server's core loop submits the writes on its
/// own ring and hands completions to [`LogWriter::completed`] instead of reaping here.
pub trait WriteIo {
    fn submit(&mut self, req: WriteReq);
    /// Waits until at least one write completed or `wake` was called (`block`), or
    /// only collects what is ready; appends (id, result, buffer) to `out`.
    fn reap(&mut self, out: &mut Vec<(u64, io::Result<()>, AlignedBuf)>, block: bool);
    /// Whether `reap(block)` can be woken by an append; a blocking backend cannot.
    fn wakeable(&self) -> bool;
}

/// Writes (and syncs) at once on the caller's thread and reports each write on the
/// next `reap`: the [`Logger`]'s blocking backend, and a deterministic one for tests
/// that drive a [`LogWriter`] by hand.
#[derive(Default)]
pub struct BlockingIo {
    /// Writes submitted so far.
    pub submitted: usize,
    done: Vec<(u64, io::Result<()>, AlignedBuf)>,
}

impl WriteIo for BlockingIo {
    fn submit(&mut self, req: WriteReq) {
        self.submitted += 1;
        let mut r = req.fd_file.write_at(&req.buf, req.offset);
        if r.is_ok() && req.datasync {
            r = req.fd_file.sync_data();
        }
        self.done.push((req.id, r, req.buf));
    }
    fn reap(&mut self, out: &mut Vec<(u64, io::Result<()>, AlignedBuf)>, _block: bool) {
        out.append(&mut self.done);
    }
    fn wakeable(&self) -> bool {
        false
    }
}

struct Segment {
    file: Arc<dyn DiskFile>,
    first_zxid: i64,
}

struct InFlight {
    id: u64,
    first_zxid: i64,
    last_zxid: i64,
    end_offset: u64,
    result: Option<io::Result<()>>,
}

/// The group-committing log writer, as a state machine that whichever loop owns the
/// log drives: [`LogWriter::append`] queues a batch, [`LogWriter::submit`] turns queued
/// batches into writes on a [`WriteIo`] while write slots are free, and
/// [`LogWriter::completed`] takes each write's completion; [`LogEvent`]s come out in
/// zxid order. Positions are byte offsets in the current segment.
///
/// Owned by one thread (the [`Logger`] thread, or the server's core loop). Repairs
/// after a failure are blocking file operations on that thread; the spare segment is
/// prepared on a background thread. A segment switch is blocking too, unless the owner
/// gave a notifier ([`LogWriter::set_switch_notify`]): then it runs on a thread of its
/// own and the owner's loop goes on meanwhile.
pub struct LogWriter {
    cfg: LogConfig,
    disk: Arc<dyn Disk>,
    seg: Option<Segment>,
    /// Where the next write goes.
    write_off: u64,
    /// The end of the last durable write.
    durable_off: u64,
    /// The end of the highest write submitted; [durable_off, high_water) is dirty after a
    /// failure and must be zeroed before anything else is written.
    high_water: u64,
    needs_repair: bool,
    durable_zxid: i64,
    /// The last zxid handed to a write (or `durable_zxid` after a failure).
    accepted_zxid: i64,
    inflight: VecDeque<InFlight>,
    /// Set from a failure until every write in flight at that time is reported.
    failing: Option<String>,
    next_id: u64,
    /// Batches waiting for a write, oldest first. Bounded by the caller: the [`Logger`]
    /// by its channel's capacity, the core by its bound on proposals in flight.
    pending: VecDeque<Vec<Record>>,
    /// Records in `pending`.
    pending_records: usize,
    /// When the last write was handed to the disk, for `sync_interval`.
    last_issue: Option<Instant>,
    /// Pending batches are held back for `sync_interval`: from the first that came while
    /// a write was in flight until the next write starts.
    holding: bool,
    /// The writer holds its pending batches until then: the owner calls
    /// [`LogWriter::submit`] again at that time (see [`LogWriter::hold_until`]).
    hold_until: Option<Instant>,
    spare: Option<SpareState>,
    free_bufs: Vec<AlignedBuf>,
    /// Called from the switch's thread when a background switch is done; `None`: the
    /// switch blocks the owner's thread.
    switch_notify: Option<Arc<dyn Fn() + Send + Sync>>,
    /// The segment switch in progress on its own thread.
    switching: Option<Switching>,
}

/// A closed writer waits for its background threads: a spare being prepared is
/// finished at full speed (the next writer on the directory reuses a complete spare),
/// and a segment switch under way is let finish. Without this, a writer reopened on
/// the same directory (TRUNC and SNAP in place reopen the log) raced the old one's
/// threads: the old preparer's rename could take the new one's partial spare, and the
/// new writer's next switch then failed on a spare that was gone.
impl Drop for LogWriter {
    fn drop(&mut self) {
        if let Some(SpareState::Preparing(rx, pace)) = self.spare.take() {
            pace.hurry();
            let _ = rx.recv();
        }
        if let Some(sw) = self.switching.take() {
            if sw.done.is_none() {
                let _ = sw.rx.recv();
            }
        }
    }
}

/// A segment switch running on its own thread (see [`LogWriter::set_switch_notify`]).
struct Switching {
    first_zxid: i64,
    rx: Receiver<io::Result<Arc<dyn DiskFile>>>,
    /// Its result, once received.
    done: Option<io::Result<Arc<dyn DiskFile>>>,
}

enum SpareState {
    Ready,
    Preparing(Receiver<io::Result<()>>, Arc<SparePace>),
}

impl LogWriter {
    /// Opens the log at the position recovery found (see the module contract), and
    /// starts preparing the spare segment.
    ///
    /// # Errors
    /// The directory cannot be created, or the tail segment cannot be opened (or refuses
    /// O_DIRECT).
    pub fn open(cfg: LogConfig, disk: Arc<dyn Disk>, pos: LogPosition) -> io::Result<LogWriter> {
        assert!(cfg.segment_bytes.is_multiple_of(BLOCK as u64));
        assert!(cfg.segment_bytes >= 4 * BLOCK as u64);
        assert!(cfg.max_inflight_writes >= 1 && cfg.queue_batches >= 1);
        assert!(cfg.max_write_bytes >= BLOCK);
        disk.create_dir_all(&cfg.dir)?;
        let mut core = LogWriter {
            seg: None,
            write_off: 0,
            durable_off: 0,
            high_water: 0,
            needs_repair: false,
            durable_zxid: pos.last_zxid,
            accepted_zxid: pos.last_zxid,
            inflight: VecDeque::new(),
            failing: None,
            next_id: 1,
            pending: VecDeque::new(),
            pending_records: 0,
            last_issue: None,
            holding: false,
            hold_until: None,
            spare: None,
            free_bufs: Vec::new(),
            switch_notify: None,
            switching: None,
            cfg,
            disk,
        };
        // A spare left by an earlier run holds no records. One of the full size was
        // zeroed, synced and only then renamed to its name (`prepare_spare`), so it is
        // ready as it is: a restarted server does not write another segment of zeros
        // (64 MiB by default) while it recovers and rejoins. A preparation cut short
        // left only its `.partial` file.
        let spare = core.cfg.dir.join(SPARE_NAME);
        let _ = core.disk.remove(&partial_spare(&spare));
        let complete = core
            .disk
            .open(&spare, OpenOptions::read())
            .and_then(|f| f.len())
            .is_ok_and(|len| len == core.cfg.segment_bytes);
        if complete {
            core.spare = Some(SpareState::Ready);
        } else {
            let _ = core.disk.remove(&spare);
        }
        if let Some(tail) = pos.tail {
            let path = core.cfg.dir.join(segment_name(tail.first_zxid));
            let file = core.open_segment(&path)?;
            core.seg = Some(Segment {
                file: file.clone(),
                first_zxid: tail.first_zxid,
            });
            // The window the previous run wrote with is in the header: whatever a crash
            // left after the end (a torn tail) lies within it and is erased first.
            let mut block0 = AlignedBuf::zeroed(BLOCK);
            let n = file.read_at(&mut block0, 0)?;
            let header = SegmentHeader::decode(&block0[..n]).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            core.write_off = tail.end_offset;
            core.durable_off = tail.end_offset;
            let window = header.window_bytes.max(core.cfg.window_bytes());
            core.high_water = (tail.end_offset + window).min(header.segment_bytes);
            core.needs_repair = core.high_water > core.write_off;
        }
        core.ensure_spare_started();
        Ok(core)
    }

    /// Queues one batch (consecutive zxids, continuing the previous batch); it is
    /// written by a later [`LogWriter::submit`].
    ///
    /// # Panics
    /// If the batch is empty.
    pub fn append(&mut self, batch: Vec<Record>) {
        assert!(!batch.is_empty(), "empty batch");
        self.pending_records += batch.len();
        self.pending.push_back(batch);
    }

    /// Records queued and not yet handed to a write.
    pub fn pending_records(&self) -> usize {
        self.pending_records
    }

    /// Nothing queued, nothing in flight, no segment switch under way.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.inflight.is_empty() && self.switching.is_none()
    }

    /// Runs segment switches on a thread of their own, which calls `notify` when one is
    /// done; the owner then calls [`LogWriter::submit`] again. Without it a switch
    /// blocks the owner: it waits for the spare, writes and syncs the new segment's
    /// header, renames the spare and syncs the directory (0.6 ms typically, 5-10 ms on
    /// a busy disk). The server's core loop sets it, because that thread also runs
    /// the quorum links and the clients of shard 0: a blocked loop would hold back
    /// every proposal, ACK and reply, where only the log's next write has to wait.
    pub fn set_switch_notify(&mut self, notify: Arc<dyn Fn() + Send + Sync>) {
        self.switch_notify = Some(notify);
    }

    /// A segment switch is under way on its own thread.
    pub fn switching(&self) -> bool {
        self.switching.is_some()
    }

    /// Writes in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Every zxid up to this one is durable.
    pub fn durable_zxid(&self) -> i64 {
        self.durable_zxid
    }

    /// Takes the completion of write `id` (from [`WriteReq::id`]) and appends the
    /// events it releases to `out`, in zxid order.
    ///
    /// # Panics
    /// If no write `id` is in flight.
    pub fn completed(
        &mut self,
        id: u64,
        result: io::Result<()>,
        buf: AlignedBuf,
        out: &mut Vec<LogEvent>,
    ) {
        let f = self
            .inflight
            .iter_mut()
            .find(|f| f.id == id)
            .unwrap_or_else(|| panic!("completion of log write {id}, which is not in flight"));
        assert!(f.result.is_none(), "log write {id} completed twice");
        f.result = Some(result);
        self.free_bufs.push(buf);
        self.complete(out);
    }

    /// Turns queued batches into writes on `io` while write slots are free (and fails
    /// those that can no longer be written, see the module contract); events decided
    /// here go to `out`.
    pub fn submit(&mut self, io: &mut dyn WriteIo, out: &mut Vec<LogEvent>) {
        let now = if self.cfg.sync_interval.is_zero() {
            None
        } else {
            Some(Instant::now())
        };
        self.submit_ready(io, out, now);
    }

    /// [`LogWriter::submit`] at a given moment (for `sync_interval`; tests).
    pub fn submit_at(&mut self, io: &mut dyn WriteIo, out: &mut Vec<LogEvent>, now: Instant) {
        self.submit_ready(io, out, Some(now));
    }

    /// Pending batches are held back until this moment (`sync_interval`): the owner
    /// submits again then, if nothing else made it do so earlier.
    pub fn hold_until(&self) -> Option<Instant> {
        self.hold_until
    }

    /// Whether the next write waits (see "Spacing synced writes" in the module header),
    /// and until when.
    fn hold(&self, now: Option<Instant>) -> Option<Instant> {
        let now = now?;
        if self.cfg.sync_interval.is_zero() {
            return None;
        }
        // A batch alone, with the disk idle: no one to gather. It goes at once.
        if self.inflight.is_empty() && !self.holding {
            return None;
        }
        // A full write gains nothing from waiting. What is held is less than a write's
        // worth, so this walk is short.
        let (mut bytes, mut records) = (0, 0);
        for b in &self.pending {
            bytes += b.iter().map(|r| r.payload.len()).sum::<usize>();
            records += b.len();
            if batch_disk_len(bytes, records) >= self.cfg.max_write_bytes {
                return None;
            }
        }
        let at = self.last_issue? + self.cfg.sync_interval;
        (now < at).then_some(at)
    }

    fn open_segment(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        open_segment_file(self.disk.as_ref(), &self.cfg, path)
    }

    /// Reports finished writes from the front, in order.
    fn complete(&mut self, out: &mut Vec<LogEvent>) {
        while self.inflight.front().is_some_and(|f| f.result.is_some()) {
            let f = self.inflight.pop_front().expect("front");
            match (f.result.expect("result"), &self.failing) {
                (Ok(()), None) => {
                    self.durable_zxid = f.last_zxid;
                    self.durable_off = f.end_offset;
                    out.push(LogEvent::Durable {
                        through_zxid: f.last_zxid,
                    });
                }
                (Ok(()), Some(why)) => out.push(LogEvent::Failed {
                    first_zxid: f.first_zxid,
                    last_zxid: f.last_zxid,
                    error: io::Error::other(format!("an earlier log write failed: {why}")),
                }),
                (Err(e), _) => {
                    eprintln!(
                        "ringkeeper: ERROR: transaction log write of zxids {:#x}..{:#x} failed: {e}; \
                         they are not acknowledged",
                        f.first_zxid, f.last_zxid
                    );
                    if self.failing.is_none() {
                        self.failing = Some(e.to_string());
                    }
                    out.push(LogEvent::Failed {
                        first_zxid: f.first_zxid,
                        last_zxid: f.last_zxid,
                        error: e,
                    });
                }
            }
        }
        if self.failing.is_some() && self.inflight.is_empty() {
            self.reposition_after_failure();
        }
    }

    /// After a failure: the log continues right after the last durable batch, and what
    /// was written past it is zeroed before the next write (see the module docs).
    fn reposition_after_failure(&mut self) {
        self.failing = None;
        self.accepted_zxid = self.durable_zxid;
        self.write_off = self.durable_off;
        self.needs_repair = self.high_water > self.durable_off;
    }

    /// Turns pending batches into writes while slots are free.
    fn submit_ready(
        &mut self,
        io: &mut dyn WriteIo,
        out: &mut Vec<LogEvent>,
        now: Option<Instant>,
    ) {
        self.hold_until = None;
        // Bounded by the pending batches: every pass consumes at least one or stops.
        while !self.pending.is_empty() && self.failing.is_none() {
            if let Some(at) = self.hold(now) {
                self.holding = true;
                self.hold_until = Some(at);
                return;
            }
            if self.inflight.len() >= self.cfg.max_inflight_writes {
                // Whatever comes meanwhile goes with the next write.
                self.holding = !self.cfg.sync_interval.is_zero();
                return;
            }
            // A switch on its own thread: nothing is written until it is done.
            if let Some(sw) = &mut self.switching {
                if sw.done.is_none() {
                    match sw.rx.try_recv() {
                        Ok(r) => sw.done = Some(r),
                        Err(TryRecvError::Empty) => return,
                        Err(TryRecvError::Disconnected) => {
                            sw.done = Some(Err(io::Error::other("segment switch thread died")))
                        }
                    }
                }
            }
            // Batches that do not continue the log were queued before the caller saw a
            // failure: they fail too, so the log never has a gap.
            let first = self.pending[0][0].zxid as i64;
            if !zxid_follows(self.accepted_zxid, first) {
                let b = &self.pending[0];
                let last = b[b.len() - 1].zxid as i64;
                self.drop_pending(1);
                out.push(LogEvent::Failed {
                    first_zxid: first,
                    last_zxid: last,
                    error: io::Error::other(format!(
                        "queued after a failed log write (the log continues after zxid {:#x})",
                        self.durable_zxid
                    )),
                });
                continue;
            }
            let (buf, first, last, count) = self.encode_writes();
            let records: usize = self.pending.iter().take(count).map(|b| b.len()).sum();
            let len = buf.len() as u64;
            let fits = self.seg.is_some() && self.write_off + len <= self.cfg.segment_bytes;
            let prep = if len > self.cfg.segment_bytes - BLOCK as u64 {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a {len}-byte batch does not fit a {}-byte segment",
                        self.cfg.segment_bytes
                    ),
                ))
            } else if fits {
                if self.needs_repair {
                    self.repair()
                } else {
                    Ok(())
                }
            } else if !self.inflight.is_empty() {
                // A switch waits for the old segment's writes, so an older segment never
                // ends in a torn batch. Put the batches back and wait.
                self.free_bufs.push(buf);
                return;
            } else if self.switch_notify.is_some() {
                match self.switch_in_background(first) {
                    Some(r) => r,
                    None => {
                        self.free_bufs.push(buf);
                        return;
                    }
                }
            } else {
                self.switch_segment(first)
            };
            if let Err(e) = prep {
                eprintln!(
                    "ringkeeper: ERROR: transaction log cannot take zxids {first:#x}..{last:#x}: {e}"
                );
                self.drop_pending(count);
                self.free_bufs.push(buf);
                out.push(LogEvent::Failed {
                    first_zxid: first,
                    last_zxid: last,
                    error: e,
                });
                continue;
            }
            self.drop_pending(count);
            let id = self.next_id;
            self.next_id += 1;
            let offset = self.write_off;
            self.write_off += len;
            self.high_water = self.high_water.max(self.write_off);
            if let Some(SpareState::Preparing(_, pace)) = &self.spare {
                pace.log_bytes.store(self.write_off, Ordering::Relaxed);
            }
            self.accepted_zxid = last;
            self.last_issue = now;
            self.holding = false;
            self.inflight.push_back(InFlight {
                id,
                first_zxid: first,
                last_zxid: last,
                end_offset: self.write_off,
                result: None,
            });
            let seg = self.seg.as_ref().expect("segment");
            io.submit(WriteReq {
                id,
                fd_file: seg.file.clone(),
                offset,
                buf,
                datasync: self.cfg.sync == SyncMode::Fdatasync,
                records,
            });
        }
    }

    /// Frames the front pending batches (at least one, more while the write stays
    /// within `max_write_bytes`) into one buffer. Returns (buffer, first zxid, last zxid,
    /// batches taken); the batches stay in `pending` until the caller drains them.
    /// Records are written as they came: encoded once by their maker.
    fn encode_writes(&mut self) -> (AlignedBuf, i64, i64, usize) {
        let mut sizes = 0usize;
        let mut count = 0usize;
        let mut records = 0usize;
        let mut prev = self.accepted_zxid;
        for b in self.pending.iter() {
            let bytes: usize = b.iter().map(|r| r.payload.len()).sum();
            let next = batch_disk_len(sizes + bytes, records + b.len());
            if count > 0
                && (next > self.cfg.max_write_bytes || !zxid_follows(prev, b[0].zxid as i64))
            {
                break;
            }
            sizes += bytes;
            records += b.len();
            count += 1;
            prev = b[b.len() - 1].zxid as i64;
        }
        let cap = batch_disk_len(sizes, records);
        let mut buf = match self.free_bufs.pop() {
            Some(mut b) if b.capacity() >= cap => {
                b.clear();
                b
            }
            _ => AlignedBuf::with_capacity(cap.max(self.cfg.max_write_bytes)),
        };
        encode_batch(
            &mut buf,
            self.pending
                .iter()
                .take(count)
                .flatten()
                .map(|r| (r.zxid as i64, &r.payload[..])),
        );
        let first = self.pending[0][0].zxid as i64;
        let lb = &self.pending[count - 1];
        let last = lb[lb.len() - 1].zxid as i64;
        (buf, first, last, count)
    }

    /// Removes the first `count` pending batches.
    fn drop_pending(&mut self, count: usize) {
        for b in self.pending.drain(..count) {
            self.pending_records -= b.len();
        }
    }

    /// Zeroes [write_off, high_water) durably.
    fn repair(&mut self) -> io::Result<()> {
        let seg = self.seg.as_ref().expect("segment");
        zero_range(
            seg.file.as_ref(),
            self.write_off,
            self.high_water,
            self.cfg.sync,
        )?;
        eprintln!(
            "ringkeeper: transaction log {}: erased {} bytes of unacknowledged writes after offset {}",
            segment_name(seg.first_zxid),
            self.high_water - self.write_off,
            self.write_off
        );
        self.high_water = self.write_off;
        self.needs_repair = false;
        Ok(())
    }

    /// Starts segment `log.<first_zxid>` from the spare, on this thread.
    fn switch_segment(&mut self, first_zxid: i64) -> io::Result<()> {
        assert!(self.inflight.is_empty());
        // Unacknowledged bytes past the end of the old segment would make it an older
        // segment with a torn tail, which the reader rightly refuses: erase them first.
        if self.needs_repair && self.seg.is_some() {
            self.repair()?;
        }
        let file = start_segment(self.disk.as_ref(), &self.cfg, self.spare.take(), first_zxid)?;
        self.install_segment(file, first_zxid);
        Ok(())
    }

    /// Starts segment `log.<first_zxid>` on a thread of its own: `None` while it runs
    /// (the first call starts it), then its outcome, with the segment installed.
    fn switch_in_background(&mut self, first_zxid: i64) -> Option<io::Result<()>> {
        assert!(self.inflight.is_empty());
        if let Some(sw) = self.switching.take() {
            let Some(done) = sw.done else {
                self.switching = Some(sw);
                return None;
            };
            // Nothing is written, completed or failed while a switch runs, so the
            // front batch is the one the switch was started for.
            if sw.first_zxid != first_zxid {
                return Some(Err(io::Error::other(format!(
                    "segment switch for zxid {:#x}, but the next batch starts at {first_zxid:#x}",
                    sw.first_zxid
                ))));
            }
            return Some(done.map(|file| self.install_segment(file, first_zxid)));
        }
        if self.needs_repair && self.seg.is_some() {
            if let Err(e) = self.repair() {
                return Some(Err(e));
            }
        }
        let notify = self.switch_notify.clone()?;
        let (tx, rx) = mpsc::channel();
        let (disk, cfg, spare) = (self.disk.clone(), self.cfg.clone(), self.spare.take());
        let spawned = std::thread::Builder::new()
            .name("rk-log-switch".into())
            .spawn(move || {
                let _ = tx.send(start_segment(disk.as_ref(), &cfg, spare, first_zxid));
                notify();
            });
        match spawned {
            Ok(_) => {
                self.switching = Some(Switching {
                    first_zxid,
                    rx,
                    done: None,
                });
                None
            }
            // The spare went with the closure; the next switch prepares one.
            Err(e) => Some(Err(e)),
        }
    }

    /// Makes `file`, a fresh segment starting at `first_zxid`, the one written.
    fn install_segment(&mut self, file: Arc<dyn DiskFile>, first_zxid: i64) {
        self.seg = Some(Segment { file, first_zxid });
        self.write_off = BLOCK as u64;
        self.durable_off = BLOCK as u64;
        self.high_water = BLOCK as u64;
        self.needs_repair = false;
        self.ensure_spare_started();
    }

    fn ensure_spare_started(&mut self) {
        if self.spare.is_some() {
            return;
        }
        let path = self.cfg.dir.join(SPARE_NAME);
        if self.cfg.background_spare {
            let (tx, rx) = mpsc::channel();
            let disk = self.disk.clone();
            let (bytes, direct) = (self.cfg.segment_bytes, self.cfg.direct);
            let pace = Arc::new(SparePace::default());
            pace.log_bytes.store(self.write_off, Ordering::Relaxed);
            let theirs = pace.clone();
            let spawned = std::thread::Builder::new()
                .name("rk-log-spare".into())
                .spawn(move || {
                    let r = prepare_spare(disk.as_ref(), &path, bytes, direct, Some(&theirs));
                    let _ = tx.send(r);
                });
            if spawned.is_ok() {
                self.spare = Some(SpareState::Preparing(rx, pace));
            }
        } else if prepare_spare(
            self.disk.as_ref(),
            &path,
            self.cfg.segment_bytes,
            self.cfg.direct,
            None,
        )
        .is_ok()
        {
            self.spare = Some(SpareState::Ready);
        }
        // A failed preparation (ENOSPC) leaves no spare; the switch tries again and fails
        // the batch that needed it, with the error.
    }
}

/// The [`Logger`] thread: takes batches from `rx`, writes them through `io`, and
/// publishes events. Ends when the handle is dropped and everything queued is written;
/// each pass either submits, reaps or blocks, so it cannot spin without progress.
fn run_thread(
    core: &mut LogWriter,
    io: &mut dyn WriteIo,
    rx: Receiver<Vec<Record>>,
    events: &Mutex<VecDeque<LogEvent>>,
    notify: &dyn Fn(),
) {
    let mut out_events = Vec::new();
    let mut done = Vec::new();
    let mut closed = false;
    loop {
        // Take what waits in the channel (bounded by the channel's own capacity).
        loop {
            match rx.try_recv() {
                Ok(b) => core.append(b),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        core.submit(io, &mut out_events);
        // Failures decided while submitting are published before any wait.
        publish(events, &mut out_events, notify);
        if core.is_idle() && closed {
            break;
        }
        if core.inflight.is_empty() && !io.wakeable() && core.pending.is_empty() {
            // Nothing in flight and a backend that cannot be woken: block on the
            // channel itself.
            match rx.recv() {
                Ok(b) => core.append(b),
                Err(_) => closed = true,
            }
            continue;
        }
        io.reap(
            &mut done,
            !core.inflight.is_empty() || (io.wakeable() && core.pending.is_empty() && !closed),
        );
        for (id, result, buf) in done.drain(..) {
            core.completed(id, result, buf, &mut out_events);
        }
        publish(events, &mut out_events, notify);
    }
    publish(events, &mut out_events, notify);
}

/// Encodes a txn as a log record (and a quorum payload: the same bytes).
pub fn encode_record(t: &Txn) -> Record {
    let mut b = Vec::with_capacity(txn_size_hint(t));
    encode_txn(t, &mut b);
    Record {
        zxid: t.zxid as u64,
        payload: Bytes::from(b),
    }
}

/// Hands events to the caller and wakes it.
fn publish(events: &Mutex<VecDeque<LogEvent>>, out: &mut Vec<LogEvent>, notify: &dyn Fn()) {
    if !out.is_empty() {
        events.lock().expect("log events").extend(out.drain(..));
        notify();
    }
}

/// An upper bound of the encoded size of a txn, for sizing writes without encoding
/// twice; exactness is not needed, only that it is not below the truth.
pub fn txn_size_hint(t: &Txn) -> usize {
    use crate::txn::TxnOp;
    fn op(o: &TxnOp) -> usize {
        let acl = |a: &Vec<crate::proto::Acl>| {
            4 + a
                .iter()
                .map(|x| 12 + x.id.scheme.len() + x.id.id.len())
                .sum::<usize>()
        };
        4 + match o {
            TxnOp::CreateSession { .. } => 4,
            TxnOp::CloseSession { ephemerals } => {
                4 + ephemerals.iter().map(|e| 4 + e.len()).sum::<usize>()
            }
            TxnOp::Create {
                path, data, acl: a, ..
            } => 8 + path.len() + 4 + data.as_ref().map_or(0, |d| d.len()) + acl(a) + 8,
            TxnOp::Delete { path } | TxnOp::DeleteContainer { path } | TxnOp::Check { path } => {
                4 + path.len()
            }
            TxnOp::SetData { path, data, .. } => {
                4 + path.len() + 4 + data.as_ref().map_or(0, |d| d.len()) + 4
            }
            TxnOp::SetAcl { path, acl: a, .. } => 4 + path.len() + acl(a) + 4,
            TxnOp::Multi(ops) => 4 + ops.iter().map(op).sum::<usize>(),
            TxnOp::Error { multi, .. } => 4 + 1 + 4 + multi.as_ref().map_or(0, |m| 4 * m.len()),
        }
    }
    1 + 28 + op(&t.op)
}

/// Writes zeros over [0, bytes) in `SPARE_CHUNK`s, never more than twice what the log
/// has written into its current segment unless the log is idle or waiting (so the spare
/// is ready when the segment is half full), then syncs. Bounded: every wait is for the
/// log to write more (at most a segment), to go idle or to need the spare.
fn zero_paced(file: &dyn DiskFile, bytes: u64, pace: &SparePace) -> io::Result<()> {
    let zeros = AlignedBuf::zeroed(SPARE_CHUNK);
    let mut off = 0u64;
    let mut seen = pace.log_bytes.load(Ordering::Relaxed);
    let mut seen_at = Instant::now();
    *pace.waiter.lock().expect("not poisoned") = Some(std::thread::current());
    while off < bytes {
        loop {
            let now = Instant::now();
            let l = pace.log_bytes.load(Ordering::Relaxed);
            if l != seen {
                (seen, seen_at) = (l, now);
            }
            let ahead = off > l.saturating_mul(2);
            let idle = now.duration_since(seen_at) >= pace.idle_after;
            if !ahead || idle || pace.urgent.load(Ordering::Relaxed) {
                break;
            }
            // `hurry` unparks; a spurious wake-up only looks again.
            std::thread::park_timeout(SPARE_WAIT);
        }
        let n = round_up(((bytes - off) as usize).min(SPARE_CHUNK), BLOCK);
        file.write_at(&zeros[..n], off)?;
        off += n as u64;
    }
    file.sync_data()
}

/// Writes zeros over [from, to) (block-aligned) and makes them durable.
fn zero_range(file: &dyn DiskFile, from: u64, to: u64, sync: SyncMode) -> io::Result<()> {
    let zeros = AlignedBuf::zeroed(ZERO_CHUNK);
    let mut off = from;
    // Bounded: each pass advances by at least one block.
    while off < to {
        let n = ((to - off) as usize).min(ZERO_CHUNK);
        let n = round_up(n, BLOCK);
        file.write_at(&zeros[..n], off)?;
        off += n as u64;
    }
    if sync != SyncMode::None {
        file.sync_data()?;
    }
    Ok(())
}

/// Where [`prepare_spare`] writes the zeros of `spare` before it is complete.
pub fn partial_spare(spare: &Path) -> std::path::PathBuf {
    let mut name = spare.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    spare.with_file_name(name)
}

/// Opens a segment for writing as `cfg` says (O_DIRECT, O_DSYNC, the buffered fallback).
fn open_segment_file(
    disk: &dyn Disk,
    cfg: &LogConfig,
    path: &Path,
) -> io::Result<Arc<dyn DiskFile>> {
    let opts = OpenOptions {
        write: true,
        direct: cfg.direct,
        dsync: cfg.sync == SyncMode::Dsync,
        ..Default::default()
    };
    match disk.open(path, opts) {
        Ok(f) => {
            if cfg.direct && f.dio_align() > BLOCK {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "{}: direct I/O needs {}-byte alignment, the log writes {BLOCK}-byte blocks",
                        path.display(),
                        f.dio_align()
                    ),
                ));
            }
            Ok(Arc::from(f))
        }
        Err(e) if e.kind() == io::ErrorKind::Unsupported && cfg.allow_buffered => {
            eprintln!(
                "ringkeeper: WARNING: {e}; falling back to BUFFERED log writes with \
                 {:?} (durable, but slower and subject to page-cache writeback)",
                cfg.sync
            );
            Ok(Arc::from(disk.open(
                path,
                OpenOptions {
                    direct: false,
                    ..opts
                },
            )?))
        }
        Err(e) => Err(e),
    }
}

/// Makes the spare segment `log.<first_zxid>`: waits for the spare (or prepares one),
/// writes and syncs the header, renames the spare and syncs the directory. The new
/// segment is durable under its name when this returns.
fn start_segment(
    disk: &dyn Disk,
    cfg: &LogConfig,
    spare_state: Option<SpareState>,
    first_zxid: i64,
) -> io::Result<Arc<dyn DiskFile>> {
    let dir = cfg.dir.clone();
    let spare = dir.join(SPARE_NAME);
    match spare_state {
        Some(SpareState::Ready) => {}
        Some(SpareState::Preparing(rx, pace)) => {
            // Waiting for it now: it goes at full speed.
            pace.hurry();
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("spare segment thread died")),
            }
        }
        None => prepare_spare(disk, &spare, cfg.segment_bytes, cfg.direct, None)?,
    }
    let file = open_segment_file(disk, cfg, &spare)?;
    let header = SegmentHeader {
        first_zxid,
        segment_bytes: cfg.segment_bytes,
        window_bytes: cfg.window_bytes(),
    };
    file.write_at(&header.encode(), 0)?;
    if cfg.sync != SyncMode::None {
        file.sync_data()?;
    }
    let path = dir.join(segment_name(first_zxid));
    disk.rename(&spare, &path)?;
    disk.sync_dir(&dir)?;
    Ok(file)
}

/// Creates `path` afresh, filled with `bytes` zeros and synced: every block is written,
/// so later writes into it change no allocation metadata. `direct` writes them with
/// O_DIRECT (no page cache to flush in one burst at the end); `pace` spreads them out
/// while the log is busy (see [`SparePace`]). The zeros go to [`partial_spare`]`(path)`,
/// which is renamed to `path` (and the directory synced) once they are durable: a file
/// under `path` of the full size is a complete spare, which the next start reuses.
pub fn prepare_spare(
    disk: &dyn Disk,
    path: &Path,
    bytes: u64,
    direct: bool,
    pace: Option<&SparePace>,
) -> io::Result<()> {
    let partial = partial_spare(path);
    let _ = disk.remove(path);
    let _ = disk.remove(&partial);
    let opts = OpenOptions {
        direct,
        ..OpenOptions::create_new()
    };
    let file = match disk.open(&partial, opts) {
        Ok(f) => f,
        // Refused O_DIRECT (the log falls back to buffered I/O there too).
        Err(_) if direct => disk.open(&partial, OpenOptions::create_new())?,
        Err(e) => return Err(e),
    };
    let result = match pace {
        None => zero_range(file.as_ref(), 0, bytes, SyncMode::Fdatasync),
        Some(p) => zero_paced(file.as_ref(), bytes, p),
    }
    .and_then(|()| disk.rename(&partial, path))
    .and_then(|()| match path.parent() {
        Some(dir) => disk.sync_dir(dir),
        None => Ok(()),
    });
    if result.is_err() {
        // Give the space back at once: a half-made spare helps no one.
        let _ = disk.remove(&partial);
        let _ = disk.remove(path);
    }
    result
}
