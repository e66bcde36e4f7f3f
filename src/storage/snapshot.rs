//! Snapshots: the committed tree of one zxid, serialized as a stream, checksummed, and
//! written to `snapshot.<zxid hex>` in dataDir through a temporary file, a datasync, an
//! atomic rename and a directory sync. Also the snapshot policy (when to take one), the
//! background snapshotter thread and the purge of old snapshots and logs.
//!
//! Unlike ZooKeeper's fuzzy snapshots (serialized while the tree keeps changing, so the
//! log must be replayed over them tolerantly), a RingKeeper snapshot is an exact root:
//! the tree is persistent, so a clone of the committed root at zxid Z is frozen and is
//! serialized while the sequencer goes on. Recovery replays strictly after Z.
//!
//! # Format (version 2, all integers little-endian)
//!
//! ```text
//! header   magic "RKSNAP\0\x01" (8) | version u32 (2) | flags u32 (0) | zxid i64
//!          | node_count u64 | session_count u64 | digest u64 | data_size i64
//!          | header_crc u32 (CRC32C of the header bytes before it)
//! frames   payload_len u32 | payload_crc u32 (CRC32C of the payload) | payload
//!          (records; no record spans two frames; a frame closes at ~1 MiB)
//! end      payload_len 0 | CRC32C of every frame's CRC (u32 each, in order)
//! records  one tag byte each, then:
//!          'A' acl definition: index u32 | count u32 | count x (perms i32 | scheme str | id str)
//!          'N' node: path str | data (u8 0 = null, or 1 + bytes) | acl index u32
//!              | czxid mzxid ctime mtime i64 | version cversion aversion i32
//!              | ephemeral_owner pzxid i64
//!          'S' session: id i64 | timeout i32
//! str, bytes: u32 length, then the bytes
//! ```
//!
//! Nodes come in tree order ([`DataTree::walk`]: parents first, siblings by name), so
//! the loader builds the tree in one sequential pass ([`TreeBuilder`]): no path is
//! looked up to find its parent, children lists arrive sorted, and the path index is
//! built from one sort of 8-byte entries. Each frame is checked against its CRC before
//! any of its records is used, so an error names the frame's offset; the end frame's
//! CRC of CRCs catches a lost or misplaced frame.
//!
//! An ACL list is defined once, before the first node that uses it, so the writer needs
//! no pass over the tree before streaming it. Children are not stored: they are derived
//! from the paths on load. The header repeats the counts and the digest so that a loaded
//! tree is checked against what the writer saw, and so that `dump` can summarize a file
//! from its first bytes.
//!
//! # Version 1
//!
//! The previous format had the same header (version 1) and records, not framed, in the
//! order of a hash map, ended by an 'E' record and a CRC32C of the whole file. It is
//! still read ([`READABLE_VERSIONS`]): the loader gathers its nodes, sorts them into
//! tree order and builds as for version 2, so data directories of earlier releases
//! recover; the next snapshot is written in version 2. A version this build does not
//! know is refused with a message naming it.

use super::aligned::{AlignedBuf, BUF_ALIGN};
use super::disk::{Disk, DiskFile, OpenOptions};
use crate::proto::{Acl, Id};
use crate::tree::{
    index_entry, node_digest, AclList, DataTree, Fields, PathIndex, TreeBuilder, Znode,
};
use bytes::Bytes;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The first eight bytes of every snapshot; the last byte is the format's major version.
pub const MAGIC: [u8; 8] = *b"RKSNAP\0\x01";
/// The format version written.
pub const VERSION: u32 = 2;
/// The format versions read: 1 (before the chunked format) and 2.
pub const READABLE_VERSIONS: [u32; 2] = [1, 2];
/// The file name prefix; the rest is the zxid in lower-case hex, as ZooKeeper names them.
pub const SNAPSHOT_PREFIX: &str = "snapshot.";
/// The suffix of a snapshot being written. Such a file is never read as a snapshot; a
/// crash leaves it behind and [`purge`] removes it.
pub const TEMP_SUFFIX: &str = ".tmp";
/// The suffix of a snapshot being received from a leader ([`SnapshotReceiver`]). Such a
/// file is never read as a snapshot until installed; a leftover is removed at start and
/// when the next SNAP begins ([`remove_received`]), not by [`purge`].
pub const RECV_SUFFIX: &str = ".recv";
/// The header's size in bytes, its CRC included.
pub const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 4;

/// Longest string or byte field accepted on load. A znode's data is bounded by
/// jute.maxbuffer (1 MiB by default, configurable); a larger length than this is a
/// corrupt length field, and refusing it before reading keeps a bad length from making
/// the loader allocate or read gigabytes.
pub const MAX_FIELD_LEN: u32 = 1 << 30;
/// Most ACL entries in one list: far more than any real ACL, small enough to allocate.
pub const MAX_ACL_ENTRIES: u32 = 1 << 16;
/// Buffer between the serializer and the file: large writes keep the snapshot thread's
/// syscalls few, small enough to be irrelevant to memory.
const IO_BUFFER: usize = 1 << 20;
const _: () = assert!(
    IO_BUFFER.is_multiple_of(BUF_ALIGN),
    "whole direct-I/O blocks"
);

const TAG_ACL: u8 = b'A';
const TAG_NODE: u8 = b'N';
const TAG_SESSION: u8 = b'S';
const TAG_END: u8 = b'E';

/// What a snapshot's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub version: u32,
    /// The zxid of the last txn the snapshot reflects.
    pub zxid: i64,
    /// Znodes, counting the root once ([`DataTree::len`]).
    pub node_count: u64,
    pub session_count: u64,
    /// [`DataTree::digest`] of the tree written.
    pub digest: u64,
    /// [`DataTree::approximate_data_size`] of the tree written.
    pub data_size: i64,
}

/// Why a snapshot could not be read or written.
#[derive(Debug)]
pub enum SnapshotError {
    /// The file system failed (open, read, write, sync, rename).
    Io { path: PathBuf, error: io::Error },
    /// The bytes are not a valid snapshot: `what` was found at byte `offset`.
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
}

impl SnapshotError {
    fn with_path(self, p: &Path) -> SnapshotError {
        match self {
            SnapshotError::Io { error, .. } => SnapshotError::Io {
                path: p.to_path_buf(),
                error,
            },
            SnapshotError::Corrupt { offset, what, .. } => SnapshotError::Corrupt {
                path: p.to_path_buf(),
                offset,
                what,
            },
        }
    }
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Io { path, error } => {
                write!(f, "snapshot {}: {error}", path.display())
            }
            SnapshotError::Corrupt { path, offset, what } => {
                write!(f, "snapshot {}: at byte {offset}: {what}", path.display())
            }
        }
    }
}

impl std::error::Error for SnapshotError {}

/// The file name of the snapshot of `zxid`.
pub fn file_name(zxid: i64) -> String {
    format!("{SNAPSHOT_PREFIX}{zxid:x}")
}

/// The zxid a snapshot file name carries, or `None` if it is not a snapshot's name
/// (temporary files included).
pub fn zxid_of_name(name: &str) -> Option<i64> {
    let hex = name.strip_prefix(SNAPSHOT_PREFIX)?;
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(|z| z as i64)
}

/// The file names in `dir`; a missing directory holds none.
fn names(disk: &dyn Disk, dir: &Path) -> io::Result<Vec<String>> {
    match disk.list(dir) {
        Ok(v) => Ok(v),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The snapshots in `dir` as (zxid, path), newest first.
///
/// # Errors
/// When `dir` cannot be listed. A missing directory holds no snapshots.
pub fn list(disk: &dyn Disk, dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut v = Vec::new();
    for name in names(disk, dir)? {
        if let Some(z) = zxid_of_name(&name) {
            v.push((z, dir.join(name)));
        }
    }
    v.sort_by_key(|(z, _)| std::cmp::Reverse(*z));
    Ok(v)
}

/// The snapshot's way to its file: a buffer of [`IO_BUFFER`] bytes, written out whole.
///
/// On a file system that takes O_DIRECT (ext4, xfs) the file is opened with it and each
/// full buffer goes straight from this buffer to the device: no copy into the page
/// cache, no dirty pages to write back, no cached pages to drop afterwards. That work
/// (ext4's buffered write path, `sync_file_range`, `posix_fadvise`) was ~36% of the
/// snapshot thread's CPU (perf of a 1M-znode snapshot), CPU taken from the writes of the
/// second the snapshot runs in. The tail is written padded to the device's alignment and
/// the file cut back to its length. Where O_DIRECT is refused (tmpfs), the same buffers
/// go through the page cache with write-behind ([`FileWriter::write_behind`]).
struct FileWriter<'a> {
    file: &'a dyn DiskFile,
    /// The device's direct-I/O alignment when the file is open O_DIRECT.
    direct: Option<usize>,
    buf: AlignedBuf,
    /// Bytes in the file before `buf`: whole buffers, so always aligned.
    flushed: u64,
    /// Write-behind (buffered files only): bytes before `started` have been handed to
    /// the device, bytes before `settled` have reached it and left the page cache.
    started: u64,
    settled: u64,
    /// Pacing (`snapshotWriteRate`): bytes per second, 0 for none, since `began`. Read
    /// at each buffer: a stopping server sets it to 0 to finish the snapshot at once.
    rate: Option<&'a AtomicU64>,
    began: std::time::Instant,
    /// This thread's CPU time at `began` (see [`SNAPSHOT_CPU_SHARE`]).
    cpu_began: f64,
}

/// Longest single sleep of the pacing, so that a stop (which clears the rate) is not
/// kept waiting.
const PACE_SLICE: std::time::Duration = std::time::Duration::from_millis(50);

/// The most of one core a paced snapshot takes, averaged from its start: 10%, one
/// twentieth of a 2-core machine, so that the seconds a snapshot runs in lose at most
/// a few percent of their CPU to it (issue 10's bound is 10% on their p99). A
/// 1M-znode tree then takes ~2 s on an idle machine (the byte rate's pace) and ~4 s
/// beside a write load that fills the cores.
pub const SNAPSHOT_CPU_SHARE: f64 = 0.10;

/// The calling thread's CPU time (user and system), in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

impl FileWriter<'_> {
    /// `direct`: the file was opened O_DIRECT (its [`DiskFile::dio_align`] applies).
    fn new<'a>(
        file: &'a dyn DiskFile,
        direct: bool,
        rate: Option<&'a AtomicU64>,
    ) -> FileWriter<'a> {
        FileWriter {
            file,
            direct: direct.then(|| file.dio_align()),
            buf: AlignedBuf::with_capacity(IO_BUFFER),
            flushed: 0,
            started: 0,
            settled: 0,
            rate,
            began: std::time::Instant::now(),
            cpu_began: thread_cpu_seconds(),
        }
    }

    /// Bytes written so far, buffered ones included.
    fn offset(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    /// Writes the full buffer out, then paces.
    fn write_buffer(&mut self) -> io::Result<()> {
        self.file.write_at(&self.buf, self.flushed)?;
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
        if self.direct.is_none() {
            self.write_behind();
        }
        self.pace();
        Ok(())
    }

    /// Writes what is left (a direct file: padded to its alignment, then cut back to
    /// the length written) and returns the file's length. Not yet durable: the caller
    /// syncs.
    fn finish(mut self) -> io::Result<u64> {
        let len = self.offset();
        if self.buf.is_empty() {
            return Ok(len);
        }
        match self.direct {
            Some(align) => {
                self.buf.pad_to(align);
                self.file.write_at(&self.buf, self.flushed)?;
                self.file.set_len(len)?;
            }
            None => self.file.write_at(&self.buf, self.flushed)?,
        }
        Ok(len)
    }

    /// Sleeps until the bytes written so far are due at `rate`, and until the thread's
    /// CPU time so far is at most [`SNAPSHOT_CPU_SHARE`] of the time since it began. A
    /// snapshot written at full speed takes a core and the disk's queue for its whole
    /// length at once, and the writes of that second wait behind it; paced, the same
    /// work is spread thin. The byte rate bounds the disk's share; the CPU share bounds
    /// what the writes of any second lose to the serializer, whatever a node costs on
    /// this machine and under this load (a 1M-znode snapshot took 0.18 s of CPU on an
    /// idle machine and 0.4 s beside a write load that filled both cores, where the
    /// cache misses of walking the tree grow). A sleep, never a spin: the thread takes
    /// nothing while it waits. A rate of 0 turns both off.
    fn pace(&self) {
        // Bounded: each round sleeps at most PACE_SLICE or ends (the rate is read again,
        // so a stop that clears it ends the wait within a slice).
        loop {
            let rate = self.rate.map_or(0, |r| r.load(Ordering::Relaxed));
            if rate == 0 {
                return;
            }
            let by_bytes = self.offset() as f64 / rate as f64;
            let by_cpu = (thread_cpu_seconds() - self.cpu_began) / SNAPSHOT_CPU_SHARE;
            let due = std::time::Duration::from_secs_f64(by_bytes.max(by_cpu));
            match due.checked_sub(self.began.elapsed()) {
                Some(ahead) if !ahead.is_zero() => std::thread::sleep(ahead.min(PACE_SLICE)),
                _ => return,
            }
        }
    }

    /// A buffered file keeps at most two buffers of the snapshot between the page cache
    /// and the device. Without it the whole snapshot (130 MB for a million znodes) sits
    /// dirty until the final datasync, which hands it to the device at once: the log's
    /// own durable writes then queue behind it, and one write waited 218-436 ms in each
    /// snapshot (perf/snapshot-seconds.py). Here each buffer is started at once and the
    /// one before it waited for, so the final datasync has little left to do and the
    /// log's writes wait behind at most a few MB; the written pages are dropped from the
    /// cache (a snapshot is read back only at the next start). 1 MiB buffers kept the
    /// p99 of a snapshot's seconds at 7.4-8.0 ms where 4 MiB raised it to 11.6-12.2 ms
    /// (the log's writes queued behind 8 MiB).
    fn write_behind(&mut self) {
        let Some(fd) = self.file.raw_fd() else {
            return;
        };
        // Failures here are not errors of the snapshot: the final datasync decides.
        unsafe {
            libc::sync_file_range(
                fd,
                self.started as i64,
                (self.flushed - self.started) as i64,
                libc::SYNC_FILE_RANGE_WRITE,
            );
            if self.started > self.settled {
                let (from, len) = (self.settled as i64, (self.started - self.settled) as i64);
                libc::sync_file_range(
                    fd,
                    from,
                    len,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                );
                libc::posix_fadvise(fd, from, len, libc::POSIX_FADV_DONTNEED);
            }
        }
        self.settled = self.started;
        self.started = self.flushed;
    }
}

/// Buffers; the bytes reach the file when a buffer fills and at [`FileWriter::finish`].
/// `flush` writes nothing: a direct file takes only whole aligned blocks before the end.
impl Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.buf.capacity() - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == self.buf.capacity() {
            self.write_buffer()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `Read` over a [`DiskFile`] from a running offset.
struct FileReader<'a> {
    file: &'a dyn DiskFile,
    offset: u64,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

// ----- writing -----

/// Appends little-endian fields to a frame's payload.
struct Payload(Vec<u8>);

impl Payload {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        // A field longer than the loader accepts would make an unreadable snapshot:
        // refuse to write it rather than find out at recovery.
        let len = u32::try_from(b.len())
            .ok()
            .filter(|l| *l <= MAX_FIELD_LEN)
            .ok_or_else(|| io::Error::other(format!("field of {} bytes too long", b.len())))?;
        self.u32(len);
        self.0.extend_from_slice(b);
        Ok(())
    }
}

fn header_bytes(h: &SnapshotHeader) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN);
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&h.version.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&h.zxid.to_le_bytes());
    b.extend_from_slice(&h.node_count.to_le_bytes());
    b.extend_from_slice(&h.session_count.to_le_bytes());
    b.extend_from_slice(&h.digest.to_le_bytes());
    b.extend_from_slice(&h.data_size.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(b.len(), HEADER_LEN);
    b
}

/// Frames of records on their way to `out`: a frame is written when its payload
/// reaches [`FRAME_TARGET`].
struct FrameWriter<W: Write> {
    out: W,
    payload: Payload,
    /// CRC32C of the frames' CRCs so far, for the end frame.
    crcs: u32,
    written: u64,
}

impl<W: Write> FrameWriter<W> {
    fn flush_frame(&mut self) -> io::Result<()> {
        if self.payload.0.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(self.payload.0.len())
            .ok()
            .filter(|l| *l <= MAX_FRAME)
            .ok_or_else(|| io::Error::other("snapshot record too long for a frame"))?;
        let crc = crc32c::crc32c(&self.payload.0);
        self.crcs = crc32c::crc32c_append(self.crcs, &crc.to_le_bytes());
        let mut fh = [0u8; FRAME_HEADER_LEN];
        fh[..4].copy_from_slice(&len.to_le_bytes());
        fh[4..].copy_from_slice(&crc.to_le_bytes());
        self.out.write_all(&fh)?;
        self.out.write_all(&self.payload.0)?;
        self.written += (FRAME_HEADER_LEN + self.payload.0.len()) as u64;
        self.payload.0.clear();
        Ok(())
    }

    fn record_done(&mut self) -> io::Result<()> {
        if self.payload.0.len() >= FRAME_TARGET {
            self.flush_frame()?;
        }
        Ok(())
    }
}

/// Serializes `tree` to `out` as one snapshot in the current format ([`VERSION`]),
/// streaming: nothing but the ACL index and one frame (~1 MiB) is held beside the tree.
/// Nodes go in [`DataTree::walk`] order, so the loader builds the tree in one pass.
/// Returns the header written and the number of bytes.
///
/// # Errors
/// When `out` fails, or a field is longer than [`MAX_FIELD_LEN`].
pub fn write_to<W: Write>(tree: &DataTree, out: W) -> io::Result<(SnapshotHeader, u64)> {
    write_counting(tree, out, None)
}

/// [`write_to`], storing the number of znodes written so far in `written` after each
/// frame (what [`Busy`] reports).
fn write_counting<W: Write>(
    tree: &DataTree,
    out: W,
    written: Option<&AtomicU64>,
) -> io::Result<(SnapshotHeader, u64)> {
    let header = SnapshotHeader {
        version: VERSION,
        zxid: tree.zxid(),
        node_count: tree.len() as u64,
        session_count: tree.session_count() as u64,
        digest: tree.digest(),
        data_size: tree.approximate_data_size(),
    };
    let mut w = FrameWriter {
        out,
        payload: Payload(Vec::with_capacity(FRAME_TARGET + (64 << 10))),
        crcs: 0,
        written: 0,
    };
    w.out.write_all(&header_bytes(&header))?;
    w.written += HEADER_LEN as u64;
    // ACL lists are shared by `Arc` in the tree, so the pointer identifies a list; the
    // tree outlives this map, so no pointer is reused while it is alive.
    let mut acl_index: HashMap<*const Vec<Acl>, u32> = HashMap::new();
    // Most nodes share their neighbour's list: the last one found skips the map (its
    // hashing was ~8% of a snapshot's CPU).
    let mut last_acl: Option<(*const Vec<Acl>, u32)> = None;
    let mut nodes = 0u64;
    let mut failed: Option<io::Error> = None;
    tree.walk(|path, node| {
        if failed.is_some() {
            return;
        }
        let r = (|| {
            let key = Arc::as_ptr(node.acl());
            let index = match last_acl {
                Some((k, i)) if k == key => i,
                _ => {
                    let i = match acl_index.get(&key) {
                        Some(i) => *i,
                        None => {
                            let i =
                                u32::try_from(acl_index.len()).expect("fewer than 2^32 ACL lists");
                            write_acl(&mut w.payload, i, node.acl())?;
                            acl_index.insert(key, i);
                            i
                        }
                    };
                    last_acl = Some((key, i));
                    i
                }
            };
            write_node(&mut w.payload, path, node.data(), &node.fields(), index)?;
            nodes += 1;
            if w.payload.0.len() >= FRAME_TARGET {
                if let Some(c) = written {
                    c.store(nodes, Ordering::Relaxed);
                }
            }
            w.record_done()
        })();
        if let Err(e) = r {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    assert_eq!(nodes, header.node_count, "tree changed while written");
    let mut sessions = 0u64;
    for (id, timeout) in tree.sessions() {
        w.payload.u8(TAG_SESSION);
        w.payload.i64(id);
        w.payload.i32(timeout);
        sessions += 1;
        w.record_done()?;
    }
    assert_eq!(sessions, header.session_count, "tree changed while written");
    w.flush_frame()?;
    let mut end = [0u8; FRAME_HEADER_LEN];
    end[4..].copy_from_slice(&w.crcs.to_le_bytes());
    w.out.write_all(&end)?;
    w.out.flush()?;
    Ok((header, w.written + FRAME_HEADER_LEN as u64))
}

fn write_acl(w: &mut Payload, index: u32, acl: &[Acl]) -> io::Result<()> {
    let count = u32::try_from(acl.len())
        .ok()
        .filter(|c| *c <= MAX_ACL_ENTRIES)
        .ok_or_else(|| io::Error::other(format!("ACL of {} entries too long", acl.len())))?;
    w.u8(TAG_ACL);
    w.u32(index);
    w.u32(count);
    for a in acl {
        w.i32(a.perms);
        w.bytes(a.id.scheme.as_bytes())?;
        w.bytes(a.id.id.as_bytes())?;
    }
    Ok(())
}

fn write_node(
    w: &mut Payload,
    path: &str,
    data: Option<&[u8]>,
    f: &Fields,
    acl: u32,
) -> io::Result<()> {
    w.u8(TAG_NODE);
    w.bytes(path.as_bytes())?;
    match data {
        None => w.u8(0),
        Some(d) => {
            w.u8(1);
            w.bytes(d)?;
        }
    }
    w.u32(acl);
    for v in [f.czxid, f.mzxid, f.ctime, f.mtime] {
        w.i64(v);
    }
    for v in [f.version, f.cversion, f.aversion] {
        w.i32(v);
    }
    w.i64(f.ephemeral_owner);
    w.i64(f.pzxid);
    Ok(())
}

/// Writes the snapshot of `tree` into `dir` as `snapshot.<zxid hex>`: to a temporary
/// file, datasynced, renamed over the final name, then the directory synced, so that
/// after a crash the final name holds either nothing or the whole snapshot.
///
/// # Errors
/// Any file-system failure; the temporary file is removed when possible.
pub fn save(
    disk: &dyn Disk,
    dir: &Path,
    tree: &DataTree,
) -> Result<(PathBuf, SnapshotHeader, u64), SnapshotError> {
    save_counting(disk, dir, tree, None, None)
}

/// As [`save`], counting znodes written into `written` and paced at `rate` bytes per
/// second (none or 0: as fast as it goes).
fn save_counting(
    disk: &dyn Disk,
    dir: &Path,
    tree: &DataTree,
    written: Option<&AtomicU64>,
    rate: Option<&AtomicU64>,
) -> Result<(PathBuf, SnapshotHeader, u64), SnapshotError> {
    let (path, (header, len)) = write_file(disk, dir, tree.zxid(), rate, |out| {
        write_counting(tree, out, written)
    })?;
    Ok((path, header, len))
}

/// Writes `snapshot.<zxid hex>` in `dir` with `body`: to a temporary file (a leftover of
/// an earlier crash at the same zxid is replaced), datasynced, renamed over the final
/// name, then the directory synced. On failure the temporary file is removed when
/// possible (a leftover is harmless: never read, and purged).
fn write_file<T>(
    disk: &dyn Disk,
    dir: &Path,
    zxid: i64,
    rate: Option<&AtomicU64>,
    body: impl FnOnce(&mut FileWriter<'_>) -> io::Result<T>,
) -> Result<(PathBuf, T), SnapshotError> {
    let final_path = dir.join(file_name(zxid));
    let temp_path = dir.join(format!("{}{TEMP_SUFFIX}", file_name(zxid)));
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |error| SnapshotError::Io { path: p, error }
    };
    let result = (|| {
        match disk.remove(&temp_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&temp_path)(e)),
            _ => {}
        }
        let (file, direct) = open_for_snapshot(disk, &temp_path).map_err(io_err(&temp_path))?;
        let mut out = FileWriter::new(&*file, direct, rate);
        let value = body(&mut out).map_err(io_err(&temp_path))?;
        out.finish().map_err(io_err(&temp_path))?;
        file.sync_data().map_err(io_err(&temp_path))?;
        drop(file);
        disk.rename(&temp_path, &final_path)
            .map_err(io_err(&final_path))?;
        disk.sync_dir(dir).map_err(io_err(dir))?;
        Ok((final_path.clone(), value))
    })();
    if result.is_err() {
        let _ = disk.remove(&temp_path);
    }
    result
}

/// Creates the temporary file O_DIRECT where the file system allows it (see
/// [`FileWriter`]), else buffered. Returns the file and whether it is direct.
fn open_for_snapshot(disk: &dyn Disk, path: &Path) -> io::Result<(Box<dyn DiskFile>, bool)> {
    let direct = OpenOptions {
        direct: true,
        ..OpenOptions::create_new()
    };
    match disk.open(path, direct) {
        // Buffers (and their 1 MiB length) are aligned to BUF_ALIGN, and alignments are
        // powers of two: a device that needs more than BUF_ALIGN is written buffered.
        Ok(f) if f.dio_align() <= BUF_ALIGN => return Ok((f, true)),
        Ok(f) => drop(f),
        // The refusal may come after the file was created (open(2) creates, then checks
        // the flag).
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {}
        Err(e) => return Err(e),
    }
    // Buffered, from nothing.
    match disk.remove(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    Ok((disk.open(path, OpenOptions::create_new())?, false))
}

// ----- the previous format (version 1), kept for tests of old data directories -----

/// A writer that keeps the CRC32C of everything written through it.
struct CrcWriter<W: Write> {
    inner: W,
    crc: u32,
    written: u64,
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, b);
        self.written += b.len() as u64;
        self.inner.write_all(b)
    }
    fn u8(&mut self, v: u8) -> io::Result<()> {
        self.put(&[v])
    }
    fn u32(&mut self, v: u32) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }
    fn i32(&mut self, v: i32) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }
    fn i64(&mut self, v: i64) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }
    fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        // A field longer than the loader accepts would make an unreadable snapshot:
        // refuse to write it rather than find out at recovery.
        let len = u32::try_from(b.len())
            .ok()
            .filter(|l| *l <= MAX_FIELD_LEN)
            .ok_or_else(|| io::Error::other(format!("field of {} bytes too long", b.len())))?;
        self.u32(len)?;
        self.put(b)
    }
}

/// Serializes `tree` to `out` in the previous format, version 1 (one CRC over the
/// whole file, nodes in any order). RingKeeper no longer writes it; it is here so that
/// tests can make the data directories of earlier releases and check they still load.
/// Returns the header written and the number of bytes.
///
/// # Errors
/// When `out` fails, or a field is longer than [`MAX_FIELD_LEN`].
pub fn write_v1_to<W: Write>(tree: &DataTree, out: W) -> io::Result<(SnapshotHeader, u64)> {
    let header = SnapshotHeader {
        version: 1,
        zxid: tree.zxid(),
        node_count: tree.len() as u64,
        session_count: tree.session_count() as u64,
        digest: tree.digest(),
        data_size: tree.approximate_data_size(),
    };
    let mut w = CrcWriter {
        inner: out,
        crc: 0,
        written: 0,
    };
    w.put(&header_bytes(&header))?;
    // ACL lists are shared by `Arc` in the tree, so the pointer identifies a list; the
    // tree outlives this map, so no pointer is reused while it is alive.
    let mut acl_index: HashMap<*const Vec<Acl>, u32> = HashMap::new();
    let mut nodes = 0u64;
    // Version 1 wrote nodes in the order of its hash map; reversed tree order stands
    // for "not sorted" here, so the loader's sorting is exercised.
    for (path, node) in tree.nodes().into_iter().rev() {
        let key = Arc::as_ptr(&node.acl);
        let index = match acl_index.get(&key) {
            Some(i) => *i,
            None => {
                let i = u32::try_from(acl_index.len()).expect("fewer than 2^32 ACL lists");
                write_acl_v1(&mut w, i, &node.acl)?;
                acl_index.insert(key, i);
                i
            }
        };
        write_node_v1(&mut w, &path, &node, index)?;
        nodes += 1;
    }
    assert_eq!(nodes, header.node_count, "tree changed while written");
    let mut sessions = 0u64;
    for (id, timeout) in tree.sessions() {
        w.u8(TAG_SESSION)?;
        w.i64(id)?;
        w.i32(timeout)?;
        sessions += 1;
    }
    assert_eq!(sessions, header.session_count, "tree changed while written");
    w.u8(TAG_END)?;
    let crc = w.crc;
    w.inner.write_all(&crc.to_le_bytes())?;
    w.inner.flush()?;
    Ok((header, w.written + 4))
}

fn write_acl_v1<W: Write>(w: &mut CrcWriter<W>, index: u32, acl: &[Acl]) -> io::Result<()> {
    let count = u32::try_from(acl.len())
        .ok()
        .filter(|c| *c <= MAX_ACL_ENTRIES)
        .ok_or_else(|| io::Error::other(format!("ACL of {} entries too long", acl.len())))?;
    w.u8(TAG_ACL)?;
    w.u32(index)?;
    w.u32(count)?;
    for a in acl {
        w.i32(a.perms)?;
        w.bytes(a.id.scheme.as_bytes())?;
        w.bytes(a.id.id.as_bytes())?;
    }
    Ok(())
}

fn write_node_v1<W: Write>(
    w: &mut CrcWriter<W>,
    path: &str,
    n: &Znode,
    acl: u32,
) -> io::Result<()> {
    w.u8(TAG_NODE)?;
    w.bytes(path.as_bytes())?;
    match &n.data {
        None => w.u8(0)?,
        Some(d) => {
            w.u8(1)?;
            w.bytes(d)?;
        }
    }
    w.u32(acl)?;
    for v in [n.czxid, n.mzxid, n.ctime, n.mtime] {
        w.i64(v)?;
    }
    for v in [n.version, n.cversion, n.aversion] {
        w.i32(v)?;
    }
    w.i64(n.ephemeral_owner)?;
    w.i64(n.pzxid)
}

// ----- reading -----

/// A frame's header: payload length u32, payload CRC32C u32.
const FRAME_HEADER_LEN: usize = 8;
/// The writer closes a frame once its payload reaches this size.
const FRAME_TARGET: usize = 1 << 20;
/// Frame buffers a loader keeps for reuse: more than the hasher's queue holds.
const FRAME_POOL: usize = 8;
/// Longest frame payload accepted: one record with a field of [`MAX_FIELD_LEN`] and
/// room to spare. A longer length is a corrupt length field.
const MAX_FRAME: u32 = MAX_FIELD_LEN + (1 << 20);

/// One record of a snapshot, as [`scan`] reports it.
#[derive(Debug)]
pub enum Record<'a> {
    Acl { index: u32, acl: &'a AclList },
    Node { path: &'a str, node: &'a Znode },
    Session { id: i64, timeout_ms: i32 },
}

/// A record parsed in place from a version-2 frame.
enum Raw<'a> {
    Acl(Vec<Acl>),
    Node {
        path: &'a str,
        data: Option<&'a [u8]>,
        acl: u32,
        fields: Fields,
    },
    Session(i64, i32),
}

/// Reads fields from a frame's payload; `base` is the payload's offset in the file, so
/// errors name file offsets.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
    base: u64,
}

impl<'a> Cursor<'a> {
    fn corrupt(&self, what: impl Into<String>) -> SnapshotError {
        SnapshotError::Corrupt {
            path: PathBuf::new(),
            offset: self.base + self.at as u64,
            what: what.into(),
        }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], SnapshotError> {
        match self.b.get(self.at..self.at + n) {
            Some(s) => {
                self.at += n;
                Ok(s)
            }
            None => Err(self.corrupt(format!("frame ends inside {what}"))),
        }
    }
    fn u8(&mut self, what: &str) -> Result<u8, SnapshotError> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }
    fn i32(&mut self, what: &str) -> Result<i32, SnapshotError> {
        Ok(i32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }
    fn i64(&mut self, what: &str) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }
    fn bytes(&mut self, what: &str) -> Result<&'a [u8], SnapshotError> {
        let len = self.u32(what)?;
        if len > MAX_FIELD_LEN {
            return Err(self.corrupt(format!("{what}: length {len} above {MAX_FIELD_LEN}")));
        }
        self.take(len as usize, what)
    }
    fn str(&mut self, what: &str) -> Result<&'a str, SnapshotError> {
        let at = self.at;
        let b = self.bytes(what)?;
        std::str::from_utf8(b).map_err(|_| SnapshotError::Corrupt {
            path: PathBuf::new(),
            offset: self.base + at as u64,
            what: format!("{what}: not UTF-8"),
        })
    }

    /// The next record (the caller checked there are bytes left).
    fn record(&mut self) -> Result<Raw<'a>, SnapshotError> {
        let at = self.at;
        match self.u8("a record tag")? {
            TAG_ACL => {
                let _index = self.u32("an ACL index")?;
                let count = self.u32("an ACL length")?;
                if count > MAX_ACL_ENTRIES {
                    self.at = at;
                    return Err(self.corrupt(format!("ACL of {count} entries")));
                }
                let mut list = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let perms = self.i32("ACL perms")?;
                    let scheme = self.str("ACL scheme")?.to_string();
                    let id = self.str("ACL id")?.to_string();
                    list.push(Acl {
                        perms,
                        id: Id { scheme, id },
                    });
                }
                Ok(Raw::Acl(list))
            }
            TAG_NODE => {
                let path = self.str("a node path")?;
                let data = match self.u8("a data flag")? {
                    0 => None,
                    1 => Some(self.bytes("node data")?),
                    f => {
                        self.at = at;
                        return Err(self.corrupt(format!("{path}: data flag {f}, expected 0 or 1")));
                    }
                };
                let acl = self.u32("an ACL index")?;
                let czxid = self.i64("czxid")?;
                let mzxid = self.i64("mzxid")?;
                let ctime = self.i64("ctime")?;
                let mtime = self.i64("mtime")?;
                let version = self.i32("version")?;
                let cversion = self.i32("cversion")?;
                let aversion = self.i32("aversion")?;
                let ephemeral_owner = self.i64("ephemeralOwner")?;
                let pzxid = self.i64("pzxid")?;
                Ok(Raw::Node {
                    path,
                    data,
                    acl,
                    fields: Fields {
                        czxid,
                        mzxid,
                        pzxid,
                        ctime,
                        mtime,
                        ephemeral_owner,
                        version,
                        cversion,
                        aversion,
                    },
                })
            }
            TAG_SESSION => {
                let id = self.i64("a session id")?;
                let timeout = self.i32("a session timeout")?;
                Ok(Raw::Session(id, timeout))
            }
            t => {
                self.at = at;
                Err(self.corrupt(format!("record tag {t:#04x}, expected A, N or S")))
            }
        }
    }
}

/// How far a load has come, reported after each frame (about every MiB).
#[derive(Debug, Clone, Copy)]
pub struct LoadProgress {
    pub nodes: u64,
    /// The header's node count.
    pub node_count: u64,
    pub bytes: u64,
    /// The file's length, when known.
    pub total_bytes: Option<u64>,
    pub elapsed: std::time::Duration,
}

impl LoadProgress {
    /// "N/M znodes (P%), R MB/s, ~T s left".
    pub fn describe(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-6);
        let frac = if self.node_count == 0 {
            1.0
        } else {
            self.nodes as f64 / self.node_count as f64
        };
        let left = if frac > 0.0 {
            secs / frac - secs
        } else {
            f64::NAN
        };
        format!(
            "{}/{} znodes ({:.0}%), {:.0} MB/s, ~{:.1} s left",
            self.nodes,
            self.node_count,
            frac * 100.0,
            self.bytes as f64 / secs / 1e6,
            left.max(0.0)
        )
    }
}

/// Where the records of a snapshot go as it is read.
trait Sink {
    fn acl(&mut self, index: u32, acl: &AclList) -> Result<(), String>;
    fn node(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: &AclList,
        f: &Fields,
    ) -> Result<(), String>;
    fn session(&mut self, id: i64, timeout_ms: i32) -> Result<(), String>;
}

/// Reads the header from `r`: magic, CRC, and a version this build reads.
fn read_header<R: Read>(r: &mut CrcReader<R>) -> Result<SnapshotHeader, SnapshotError> {
    let mut hb = [0u8; HEADER_LEN];
    r.fill(&mut hb, "the header")?;
    if hb[..8] != MAGIC {
        let what = if &hb[..4] == b"ZKSN" {
            "an Apache ZooKeeper snapshot, not a RingKeeper one: import the ZooKeeper data \
             directory rather than copying its files"
                .to_string()
        } else {
            format!("bad magic {:02x?}, expected {:02x?}", &hb[..8], MAGIC)
        };
        return Err(SnapshotError::Corrupt {
            path: PathBuf::new(),
            offset: 0,
            what,
        });
    }
    let le_u32 = |at: usize| u32::from_le_bytes(hb[at..at + 4].try_into().expect("4 bytes"));
    let le_u64 = |at: usize| u64::from_le_bytes(hb[at..at + 8].try_into().expect("8 bytes"));
    let header_crc = le_u32(HEADER_LEN - 4);
    let actual = crc32c::crc32c(&hb[..HEADER_LEN - 4]);
    if header_crc != actual {
        return Err(SnapshotError::Corrupt {
            path: PathBuf::new(),
            offset: (HEADER_LEN - 4) as u64,
            what: format!("header CRC {actual:#010x}, expected {header_crc:#010x}"),
        });
    }
    let header = SnapshotHeader {
        version: le_u32(8),
        zxid: le_u64(16) as i64,
        node_count: le_u64(24),
        session_count: le_u64(32),
        digest: le_u64(40),
        data_size: le_u64(48) as i64,
    };
    if !READABLE_VERSIONS.contains(&header.version) {
        return Err(SnapshotError::Corrupt {
            path: PathBuf::new(),
            offset: 8,
            what: format!(
                "snapshot format version {} is not one this build reads ({READABLE_VERSIONS:?}): \
                 it was written by a newer RingKeeper; run that release, or move the file \
                 out of the data directory to recover from an older snapshot and the log",
                header.version
            ),
        });
    }
    if le_u32(12) != 0 {
        return Err(SnapshotError::Corrupt {
            path: PathBuf::new(),
            offset: 12,
            what: format!("flags {:#x}, expected 0", le_u32(12)),
        });
    }
    Ok(header)
}

/// The frames of a version-2 snapshot after its header, each checked against its CRC
/// before any of its records reach `sink`; then the end frame, the counts, and that
/// nothing follows. `progress` is called after each frame.
fn scan_v2<R: Read>(
    r: &mut CrcReader<R>,
    header: &SnapshotHeader,
    sink: &mut dyn Sink,
    progress: &mut dyn FnMut(u64, u64),
    frames: &mut dyn FnMut(&Arc<Vec<u8>>, u64),
) -> Result<(), SnapshotError> {
    let mut acls: Vec<AclList> = Vec::new();
    let (mut nodes, mut sessions) = (0u64, 0u64);
    let mut crcs = 0u32;
    let mut pool: Vec<Arc<Vec<u8>>> = Vec::new();
    // Bound: every frame consumes at least its header of a finite file.
    loop {
        let frame_at = r.offset;
        let len = r.u32("a frame length")?;
        let crc = r.u32("a frame CRC")?;
        if len == 0 {
            if crc != crcs {
                return Err(SnapshotError::Corrupt {
                    path: PathBuf::new(),
                    offset: frame_at,
                    what: format!(
                        "end frame says the frames' CRCs sum to {crc:#010x}, they sum to {crcs:#010x} \
                         (a frame is missing or out of place)"
                    ),
                });
            }
            break;
        }
        if len > MAX_FRAME {
            return Err(SnapshotError::Corrupt {
                path: PathBuf::new(),
                offset: frame_at,
                what: format!("frame length {len} above {MAX_FRAME}"),
            });
        }
        // A buffer of an earlier frame that nobody holds any more (the hasher is done
        // with it), else a new one: fresh 1 MiB buffers per frame cost page faults,
        // a tenth of a load's time in perf.
        let mut payload = match pool.iter().position(|a| Arc::strong_count(a) == 1) {
            Some(i) => {
                let mut a = pool.swap_remove(i);
                let v = Arc::get_mut(&mut a).expect("no other holder");
                v.clear();
                v.resize(len as usize, 0);
                a
            }
            None => Arc::new(vec![0u8; len as usize]),
        };
        r.fill(
            Arc::get_mut(&mut payload).expect("no other holder yet"),
            "a frame",
        )?;
        let actual = crc32c::crc32c(&payload);
        if actual != crc {
            return Err(SnapshotError::Corrupt {
                path: PathBuf::new(),
                offset: frame_at,
                what: format!(
                    "frame of {len} bytes: CRC {actual:#010x}, its header says {crc:#010x}"
                ),
            });
        }
        crcs = crc32c::crc32c_append(crcs, &crc.to_le_bytes());
        let base = frame_at + FRAME_HEADER_LEN as u64;
        frames(&payload, base);
        let mut c = Cursor {
            b: &payload,
            at: 0,
            base,
        };
        while c.at < c.b.len() {
            let rec_at = c.base + c.at as u64;
            let bad = |what: String| SnapshotError::Corrupt {
                path: PathBuf::new(),
                offset: rec_at,
                what,
            };
            match c.record()? {
                Raw::Acl(list) => {
                    let index = acls.len() as u32;
                    acls.push(Arc::new(list));
                    sink.acl(index, acls.last().expect("just pushed"))
                        .map_err(bad)?;
                }
                Raw::Node {
                    path,
                    data,
                    acl,
                    fields,
                } => {
                    nodes += 1;
                    if nodes > header.node_count {
                        return Err(bad(format!(
                            "more nodes than the header's {}",
                            header.node_count
                        )));
                    }
                    let acl = acls
                        .get(acl as usize)
                        .ok_or_else(|| bad(format!("{path}: ACL {acl} not defined")))?;
                    sink.node(path, data, acl, &fields).map_err(bad)?;
                }
                Raw::Session(id, timeout) => {
                    sessions += 1;
                    if sessions > header.session_count {
                        return Err(bad(format!(
                            "more sessions than the header's {}",
                            header.session_count
                        )));
                    }
                    sink.session(id, timeout).map_err(bad)?;
                }
            }
        }
        progress(nodes, r.offset);
        if pool.len() < FRAME_POOL {
            pool.push(payload);
        }
    }
    if nodes != header.node_count || sessions != header.session_count {
        return Err(r.corrupt(format!(
            "{nodes} nodes and {sessions} sessions, header says {} and {}",
            header.node_count, header.session_count
        )));
    }
    let mut extra = [0u8; 1];
    match r.inner.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(r.corrupt("bytes after the end frame")),
        Err(error) => Err(SnapshotError::Io {
            path: PathBuf::new(),
            error,
        }),
    }
}

/// The nodes' digests and path index entries of a version-2 snapshot's frames, as the
/// loader's builder numbers the nodes (the root 0): the [`TreeBuilder::new_prehashed`]
/// half of a load. `None` on a record the loader's own scan refuses as well.
fn hash_frames(
    frames: mpsc::Receiver<(Arc<Vec<u8>>, u64)>,
    hint: usize,
) -> Option<(PathIndex, u64)> {
    let mut acls: Vec<Vec<Acl>> = Vec::new();
    let mut entries: Vec<u64> = Vec::with_capacity(hint);
    let mut digest = 0u64;
    let mut id = 0u32;
    for (payload, base) in frames {
        let mut c = Cursor {
            b: &payload,
            at: 0,
            base,
        };
        while c.at < c.b.len() {
            match c.record().ok()? {
                Raw::Acl(list) => acls.push(list),
                Raw::Node {
                    path,
                    data,
                    acl,
                    fields,
                } => {
                    let acl = acls.get(acl as usize)?;
                    digest = digest.wrapping_add(node_digest(path, data, acl, &fields));
                    if id > 0 {
                        entries.push(index_entry(path, id));
                    }
                    id = id.checked_add(1)?;
                }
                Raw::Session(..) => {}
            }
        }
    }
    Some((PathIndex::from_entries(entries), digest))
}

/// Hands records to a [`scan`] visitor as [`Record`]s.
struct VisitSink<'v>(&'v mut dyn FnMut(Record<'_>) -> Result<(), String>);

impl Sink for VisitSink<'_> {
    fn acl(&mut self, index: u32, acl: &AclList) -> Result<(), String> {
        (self.0)(Record::Acl { index, acl })
    }
    fn node(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: &AclList,
        f: &Fields,
    ) -> Result<(), String> {
        let node = Znode::from_fields(data.map(Bytes::copy_from_slice), acl.clone(), f);
        (self.0)(Record::Node { path, node: &node })
    }
    fn session(&mut self, id: i64, timeout_ms: i32) -> Result<(), String> {
        (self.0)(Record::Session { id, timeout_ms })
    }
}

/// Builds the tree straight from a version-2 snapshot's records.
struct BuildSink(TreeBuilder);

impl Sink for BuildSink {
    fn acl(&mut self, _: u32, _: &AclList) -> Result<(), String> {
        Ok(())
    }
    fn node(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: &AclList,
        f: &Fields,
    ) -> Result<(), String> {
        self.0.node(path, data, acl, f)
    }
    fn session(&mut self, id: i64, timeout_ms: i32) -> Result<(), String> {
        self.0.session(id, timeout_ms)
    }
}

/// Reads a snapshot (either version) from `input`, checking its structure and its
/// checksums, and calls `visit` with each record as it is read. In version 2 each frame
/// is checked before its records are reported; in version 1 records are reported before
/// the file's checksum is known. Either way a caller must discard what it built if this
/// returns an error.
///
/// # Errors
/// [`SnapshotError::Corrupt`] (with an empty path) naming the byte offset and what was
/// expected; [`SnapshotError::Io`] when reading fails.
pub fn scan<R: Read>(
    input: R,
    mut visit: impl FnMut(Record<'_>) -> Result<(), String>,
) -> Result<SnapshotHeader, SnapshotError> {
    let mut r = CrcReader {
        inner: input,
        crc: 0,
        offset: 0,
    };
    let header = read_header(&mut r)?;
    if header.version == 1 {
        return scan_v1(r, header, &mut visit);
    }
    scan_v2(
        &mut r,
        &header,
        &mut VisitSink(&mut visit),
        &mut |_, _| {},
        &mut |_, _| {},
    )?;
    Ok(header)
}

/// Reads a whole snapshot from `input` into a tree, verifying the checksums, the counts
/// and that the rebuilt tree's digest equals the one recorded when it was written.
///
/// # Errors
/// As [`scan`]; also a tree that [`DataTree::restore`] refuses or whose digest differs.
pub fn read_from<R: Read>(input: R) -> Result<DataTree, SnapshotError> {
    read_with_progress(input, None, &mut |_| {}).map(|(t, _)| t)
}

/// [`read_from`], calling `progress` after each frame of a version-2 snapshot, and
/// returning the header too. `total_bytes` (the file's length) only feeds the reports.
///
/// # Errors
/// As [`read_from`].
pub fn read_with_progress<R: Read>(
    input: R,
    total_bytes: Option<u64>,
    progress: &mut dyn FnMut(&LoadProgress),
) -> Result<(DataTree, SnapshotHeader), SnapshotError> {
    let started = std::time::Instant::now();
    let mut r = CrcReader {
        inner: input,
        crc: 0,
        offset: 0,
    };
    let header = read_header(&mut r)?;
    let corrupt = |what: String| SnapshotError::Corrupt {
        path: PathBuf::new(),
        offset: HEADER_LEN as u64,
        what,
    };
    let tree = if header.version == 1 {
        // The previous format holds nodes in hash order: gather, sort, build.
        let mut nodes: Vec<(Arc<str>, Znode)> = Vec::new();
        let mut sessions: Vec<(i64, i32)> = Vec::new();
        scan_v1(r, header, &mut |rec| {
            match rec {
                Record::Acl { .. } => {}
                Record::Node { path, node } => nodes.push((Arc::from(path), node.clone())),
                Record::Session { id, timeout_ms } => sessions.push((id, timeout_ms)),
            }
            Ok(())
        })?;
        let tree = DataTree::restore(header.zxid, nodes, sessions).map_err(corrupt)?;
        progress(&LoadProgress {
            nodes: header.node_count,
            node_count: header.node_count,
            bytes: total_bytes.unwrap_or(0),
            total_bytes,
            elapsed: started.elapsed(),
        });
        tree
    } else {
        // Reserve from the header's count, within reason: a corrupt count must not make
        // the loader allocate gigabytes up front.
        let hint = header.node_count.min(1 << 24) as usize;
        std::thread::scope(|scope| -> Result<DataTree, SnapshotError> {
            // A second thread takes each checked frame and computes what does not need
            // the tree: the nodes' digests and the path index (a third of the work).
            let (tx, rx) = mpsc::sync_channel::<(Arc<Vec<u8>>, u64)>(4);
            let hasher = std::thread::Builder::new()
                .name("snapshot-hash".into())
                .spawn_scoped(scope, move || hash_frames(rx, hint))
                .ok();
            let mut tx = hasher.as_ref().map(|_| tx);
            let mut b = if hasher.is_some() {
                TreeBuilder::new_prehashed(header.zxid)
            } else {
                TreeBuilder::new(header.zxid)
            };
            b.reserve(hint);
            let mut sink = BuildSink(b);
            let scanned = scan_v2(
                &mut r,
                &header,
                &mut sink,
                &mut |nodes, bytes| {
                    progress(&LoadProgress {
                        nodes,
                        node_count: header.node_count,
                        bytes,
                        total_bytes,
                        elapsed: started.elapsed(),
                    })
                },
                &mut |payload, base| {
                    if let Some(t) = &tx {
                        // The hasher only stops early on a record the scan refuses too.
                        let _ = t.send((payload.clone(), base));
                    }
                },
            );
            tx.take();
            let hashed = hasher.map(|h| h.join().expect("the snapshot hasher does not panic"));
            scanned?;
            match hashed {
                None => sink.0.finish(),
                Some(Some((index, digest))) => sink.0.finish_prehashed(index, digest),
                Some(None) => Err("the hasher refused a record the scan accepted".into()),
            }
            .map_err(corrupt)
        })?
    };
    // Snapshots written before /zookeeper/config left the digest count it in.
    let digest_ok =
        tree.digest() == header.digest || tree.digest_with_config_node() == header.digest;
    if !digest_ok || tree.approximate_data_size() != header.data_size {
        return Err(corrupt(format!(
            "tree digest {:#018x} size {}, header says {:#018x} and {}",
            tree.digest(),
            tree.approximate_data_size(),
            header.digest,
            header.data_size
        )));
    }
    Ok((tree, header))
}

/// Loads the snapshot file at `path`.
///
/// # Errors
/// As [`read_from`], naming `path`.
pub fn load(disk: &dyn Disk, path: &Path) -> Result<DataTree, SnapshotError> {
    load_with_progress(disk, path, &mut |_| {}).map(|(t, _)| t)
}

/// [`load`], calling `progress` about every MiB (the caller decides what to print), and
/// returning the header too.
///
/// # Errors
/// As [`read_from`], naming `path`.
pub fn load_with_progress(
    disk: &dyn Disk,
    path: &Path,
    progress: &mut dyn FnMut(&LoadProgress),
) -> Result<(DataTree, SnapshotHeader), SnapshotError> {
    let file = disk
        .open(path, OpenOptions::read())
        .map_err(|error| SnapshotError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    let total = file.len().ok();
    let input = FileReader {
        file: &*file,
        offset: 0,
    };
    read_with_progress(BufReader::with_capacity(IO_BUFFER, input), total, progress)
        .map_err(|e| e.with_path(path))
}

/// Checks the snapshot file at `path` without building a tree: header, records,
/// checksums and counts.
///
/// # Errors
/// As [`scan`], naming `path`.
pub fn verify(disk: &dyn Disk, path: &Path) -> Result<SnapshotHeader, SnapshotError> {
    scan_file(disk, path, |_| Ok(()))
}

/// [`scan`] of the snapshot file at `path`.
///
/// # Errors
/// As [`scan`], naming `path`.
pub fn scan_file(
    disk: &dyn Disk,
    path: &Path,
    visit: impl FnMut(Record<'_>) -> Result<(), String>,
) -> Result<SnapshotHeader, SnapshotError> {
    let file = disk
        .open(path, OpenOptions::read())
        .map_err(|error| SnapshotError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    let input = FileReader {
        file: &*file,
        offset: 0,
    };
    scan(BufReader::with_capacity(IO_BUFFER, input), visit).map_err(|e| e.with_path(path))
}

/// A reader that keeps the CRC32C of everything read through it and the offset.
struct CrcReader<R: Read> {
    inner: R,
    crc: u32,
    offset: u64,
}

impl<R: Read> CrcReader<R> {
    fn corrupt(&self, what: impl Into<String>) -> SnapshotError {
        SnapshotError::Corrupt {
            path: PathBuf::new(),
            offset: self.offset,
            what: what.into(),
        }
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), SnapshotError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.crc = crc32c::crc32c_append(self.crc, buf);
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(self.corrupt(format!("file ends inside {what}")))
            }
            Err(error) => Err(SnapshotError::Io {
                path: PathBuf::new(),
                error,
            }),
        }
    }
    fn u8(&mut self, what: &str) -> Result<u8, SnapshotError> {
        let mut b = [0u8; 1];
        self.fill(&mut b, what)?;
        Ok(b[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32, SnapshotError> {
        let mut b = [0u8; 4];
        self.fill(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }
    fn i32(&mut self, what: &str) -> Result<i32, SnapshotError> {
        let mut b = [0u8; 4];
        self.fill(&mut b, what)?;
        Ok(i32::from_le_bytes(b))
    }
    fn i64(&mut self, what: &str) -> Result<i64, SnapshotError> {
        let mut b = [0u8; 8];
        self.fill(&mut b, what)?;
        Ok(i64::from_le_bytes(b))
    }
    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, SnapshotError> {
        let len = self.u32(what)?;
        if len > MAX_FIELD_LEN {
            return Err(self.corrupt(format!("{what}: length {len} above {MAX_FIELD_LEN}")));
        }
        let mut v = vec![0u8; len as usize];
        self.fill(&mut v, what)?;
        Ok(v)
    }
    fn string(&mut self, what: &str) -> Result<String, SnapshotError> {
        let at = self.offset;
        String::from_utf8(self.bytes(what)?).map_err(|_| SnapshotError::Corrupt {
            path: PathBuf::new(),
            offset: at,
            what: format!("{what}: not UTF-8"),
        })
    }
}

/// The records and trailer of a version-1 snapshot, after its header.
fn scan_v1<R: Read>(
    mut r: CrcReader<R>,
    header: SnapshotHeader,
    visit: &mut dyn FnMut(Record<'_>) -> Result<(), String>,
) -> Result<SnapshotHeader, SnapshotError> {
    let mut acls: Vec<AclList> = Vec::new();
    let (mut nodes, mut sessions) = (0u64, 0u64);
    // Bound: every record consumes at least one byte of a finite file, and the counts
    // are checked against the header as they grow, so the loop ends.
    loop {
        let at = r.offset;
        let bad = |what: String| SnapshotError::Corrupt {
            path: PathBuf::new(),
            offset: at,
            what,
        };
        match r.u8("a record tag")? {
            TAG_ACL => {
                let index = r.u32("an ACL index")?;
                if index as usize != acls.len() {
                    return Err(bad(format!(
                        "ACL definition {index}, expected {}",
                        acls.len()
                    )));
                }
                let count = r.u32("an ACL length")?;
                if count > MAX_ACL_ENTRIES {
                    return Err(bad(format!("ACL of {count} entries")));
                }
                let mut list = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let perms = r.i32("ACL perms")?;
                    let scheme = r.string("ACL scheme")?;
                    let id = r.string("ACL id")?;
                    list.push(Acl {
                        perms,
                        id: Id { scheme, id },
                    });
                }
                acls.push(Arc::new(list));
                visit(Record::Acl {
                    index,
                    acl: acls.last().expect("just pushed"),
                })
                .map_err(bad)?;
            }
            TAG_NODE => {
                nodes += 1;
                if nodes > header.node_count {
                    return Err(bad(format!(
                        "more nodes than the header's {}",
                        header.node_count
                    )));
                }
                let path = r.string("a node path")?;
                let data = match r.u8("a data flag")? {
                    0 => None,
                    1 => Some(Bytes::from(r.bytes("node data")?)),
                    f => return Err(bad(format!("{path}: data flag {f}, expected 0 or 1"))),
                };
                let acl_at = r.u32("an ACL index")?;
                let acl = acls
                    .get(acl_at as usize)
                    .ok_or_else(|| bad(format!("{path}: ACL {acl_at} not defined")))?
                    .clone();
                let czxid = r.i64("czxid")?;
                let mzxid = r.i64("mzxid")?;
                let ctime = r.i64("ctime")?;
                let mtime = r.i64("mtime")?;
                let version = r.i32("version")?;
                let cversion = r.i32("cversion")?;
                let aversion = r.i32("aversion")?;
                let ephemeral_owner = r.i64("ephemeralOwner")?;
                let pzxid = r.i64("pzxid")?;
                let node = Znode {
                    data,
                    acl,
                    czxid,
                    mzxid,
                    ctime,
                    mtime,
                    version,
                    cversion,
                    aversion,
                    ephemeral_owner,
                    pzxid,
                };
                visit(Record::Node {
                    path: &path,
                    node: &node,
                })
                .map_err(bad)?;
            }
            TAG_SESSION => {
                sessions += 1;
                if sessions > header.session_count {
                    return Err(bad(format!(
                        "more sessions than the header's {}",
                        header.session_count
                    )));
                }
                let id = r.i64("a session id")?;
                let timeout_ms = r.i32("a session timeout")?;
                visit(Record::Session { id, timeout_ms }).map_err(bad)?;
            }
            TAG_END => break,
            t => return Err(bad(format!("record tag {t:#04x}, expected A, N, S or E"))),
        }
    }
    if nodes != header.node_count || sessions != header.session_count {
        return Err(r.corrupt(format!(
            "{nodes} nodes and {sessions} sessions, header says {} and {}",
            header.node_count, header.session_count
        )));
    }
    let expected = r.crc;
    let at = r.offset;
    let crc = r.u32("the trailer CRC")?;
    if crc != expected {
        return Err(SnapshotError::Corrupt {
            path: PathBuf::new(),
            offset: at,
            what: format!("file CRC {expected:#010x}, trailer says {crc:#010x}"),
        });
    }
    let mut extra = [0u8; 1];
    match r.inner.read(&mut extra) {
        Ok(0) => Ok(header),
        Ok(_) => Err(r.corrupt("bytes after the trailer")),
        Err(error) => Err(SnapshotError::Io {
            path: PathBuf::new(),
            error,
        }),
    }
}

// ----- receiving and installing a leader's snapshot -----

/// The name of the snapshot of `zxid` being received from a leader on the connection
/// numbered `conn`: `snapshot.<zxid hex>.<conn>.recv`. The connection's number keeps
/// the file of a superseded connection's reader, still running, apart from the current
/// one's. [`zxid_of_name`] refuses it, so recovery, [`list`], `data check` and `dump`
/// never read it, and [`purge`] leaves it alone (it may be arriving while autopurge
/// runs); [`remove_received`] removes leftovers.
pub fn received_name(zxid: i64, conn: u64) -> String {
    format!("{}.{conn}{RECV_SUFFIX}", file_name(zxid))
}

/// The zxid a [`received_name`] carries, or `None` if `name` is not one.
pub fn zxid_of_received_name(name: &str) -> Option<i64> {
    let rest = name
        .strip_prefix(SNAPSHOT_PREFIX)?
        .strip_suffix(RECV_SUFFIX)?;
    let (hex, conn) = rest.split_once('.')?;
    if conn.is_empty() || !conn.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    zxid_of_name(&format!("{SNAPSHOT_PREFIX}{hex}"))
}

/// Removes every snapshot being received (`snapshot.*.recv`) in `dir`: leftovers of a
/// transfer a crash or a closed connection cut short. Called at start and when a SNAP
/// begins, when no other transfer can be writing one.
///
/// # Errors
/// The first listing or removal failure.
pub fn remove_received(disk: &dyn Disk, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for name in names(disk, dir)? {
        if name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(RECV_SUFFIX) {
            let p = dir.join(&name);
            match disk.remove(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => removed.push(p),
            }
        }
    }
    Ok(removed)
}

/// A leader's snapshot arriving in order into `snapshot.<zxid hex>.<conn>.recv` in the
/// snapshot directory, so a learner holds one chunk of it at a time, not the snapshot.
///
/// Owned by the connection's reader thread. Done means [`finish`](Self::finish)
/// returned `Ok`: the file is datasynced and checked as recovery would load it, and
/// stays for [`install_received`]. Until then dropping the receiver removes the file:
/// a transfer cut short or refused leaves nothing (a crash may leave the file, which
/// nothing reads and [`remove_received`] removes).
pub struct SnapshotReceiver {
    disk: Arc<dyn Disk>,
    path: PathBuf,
    zxid: i64,
    /// The length the leader announced; the bytes written never exceed it.
    len: u64,
    written: u64,
    /// `None` once finished (or failed): nothing left to remove on drop.
    file: Option<Box<dyn DiskFile>>,
}

impl SnapshotReceiver {
    /// Starts receiving the snapshot of `zxid`, `len` bytes, on the connection numbered
    /// `conn` into `dir`: removes any leftover `.recv` file there, then creates this one.
    ///
    /// # Panics
    /// If `len` is 0 (the caller refuses an empty snapshot).
    ///
    /// # Errors
    /// Any file-system failure, naming the file.
    pub fn begin(
        disk: Arc<dyn Disk>,
        dir: &Path,
        zxid: i64,
        conn: u64,
        len: u64,
    ) -> Result<SnapshotReceiver, SnapshotError> {
        assert!(len > 0, "receiving an empty snapshot");
        let path = dir.join(received_name(zxid, conn));
        remove_received(&*disk, dir).map_err(|error| SnapshotError::Io {
            path: dir.to_path_buf(),
            error,
        })?;
        let file = disk
            .open(&path, OpenOptions::create_new())
            .map_err(|error| SnapshotError::Io {
                path: path.clone(),
                error,
            })?;
        Ok(SnapshotReceiver {
            disk,
            path,
            zxid,
            len,
            written: 0,
            file: Some(file),
        })
    }

    /// Appends the next bytes of the snapshot.
    ///
    /// # Panics
    /// If the bytes overrun the announced length or the receiver failed before (the
    /// caller checks chunks against the length and stops at the first error).
    ///
    /// # Errors
    /// A write failure (the file is removed).
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        assert!(
            self.written + bytes.len() as u64 <= self.len,
            "snapshot bytes past the announced {}: {} + {}",
            self.len,
            self.written,
            bytes.len()
        );
        let file = self.file.as_ref().expect("append after a failure");
        if let Err(error) = file.write_at(bytes, self.written) {
            self.discard();
            return Err(SnapshotError::Io {
                path: self.path.clone(),
                error,
            });
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// The announced length has arrived: datasyncs the file, then checks it as
    /// recovery would load it (header, every record, both CRCs, the counts, the rebuilt
    /// tree's digest) and that it is the snapshot of the SNAP's zxid. Returns its path
    /// and header; the file stays for [`install_received`].
    ///
    /// # Panics
    /// If fewer bytes than announced were appended.
    ///
    /// # Errors
    /// A sync failure or a bad snapshot; the file is removed.
    pub fn finish(mut self) -> Result<(PathBuf, SnapshotHeader), SnapshotError> {
        assert_eq!(self.written, self.len, "snapshot finished early");
        let file = self.file.as_ref().expect("finish after a failure");
        let checked = file
            .sync_data()
            .map_err(|error| SnapshotError::Io {
                path: self.path.clone(),
                error,
            })
            .and_then(|()| validate_file(&*self.disk, &self.path, self.zxid));
        match checked {
            Ok(header) => {
                self.file = None;
                Ok((self.path.clone(), header))
            }
            Err(e) => {
                self.discard();
                Err(e)
            }
        }
    }

    /// Closes and removes the file.
    fn discard(&mut self) {
        if self.file.take().is_some() {
            let _ = self.disk.remove(&self.path);
        }
    }
}

impl Drop for SnapshotReceiver {
    fn drop(&mut self) {
        self.discard();
    }
}

/// Checks the snapshot file at `path` (one received from a leader) as recovery would
/// load it: header, every record, both CRCs, the counts, the rebuilt tree's digest, and
/// that the snapshot is of `zxid`. The file is read through the snapshot reader a
/// buffer at a time; the tree it builds is dropped. Nothing is written.
///
/// # Errors
/// [`SnapshotError::Corrupt`] naming what is wrong, or the read failure.
pub fn validate_file(
    disk: &dyn Disk,
    path: &Path,
    zxid: i64,
) -> Result<SnapshotHeader, SnapshotError> {
    let (tree, header) = load_with_progress(disk, path, &mut |_| {})?;
    if tree.zxid() != zxid {
        return Err(SnapshotError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            what: format!("snapshot of zxid {:#x}, expected {zxid:#x}", tree.zxid()),
        });
    }
    Ok(header)
}

/// What [`install_received`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Installed {
    pub path: PathBuf,
    /// The installed snapshot's length in bytes.
    pub len: u64,
    /// Snapshots newer than the installed one (of the history it replaces).
    pub snapshots_removed: Vec<PathBuf>,
    pub logs_removed: Vec<PathBuf>,
}

/// Makes `received` (a snapshot of `zxid` in `snap_dir` that
/// [`SnapshotReceiver::finish`] datasynced and checked) the newest state, so that
/// recovery loads it and nothing of the history it replaces: first every snapshot newer
/// than `zxid` is removed, then `received` is renamed to `snapshot.<zxid hex>` and the
/// directory synced, then every log segment in `log_dir` is removed. After a crash at
/// any point recovery finds either the old state or the new one: the old history's
/// snapshots and logs are all below `zxid` (a learner is sent a snapshot only when its
/// last zxid is below it), so with the new snapshot present a leftover segment holds
/// nothing after it; a `.recv` file left behind is never read.
///
/// The caller must have stopped every writer of these directories (the log writer, and
/// any snapshot in flight must be older than `zxid`).
///
/// # Errors
/// Any file-system failure, naming the file. A missing or empty `received` fails
/// before anything changed.
pub fn install_received(
    disk: &dyn Disk,
    snap_dir: &Path,
    log_dir: &Path,
    zxid: i64,
    received: &Path,
) -> Result<Installed, SnapshotError> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |error| SnapshotError::Io { path: p, error }
    };
    assert_eq!(
        received.parent(),
        Some(snap_dir),
        "a received snapshot outside the snapshot directory"
    );
    let len = disk
        .open(received, OpenOptions::read())
        .and_then(|f| f.len())
        .map_err(io_err(received))?;
    if len == 0 {
        return Err(io_err(received)(io::Error::new(
            io::ErrorKind::InvalidData,
            "empty received snapshot",
        )));
    }
    let mut done = Installed {
        len,
        ..Installed::default()
    };
    for (z, p) in list(disk, snap_dir).map_err(io_err(snap_dir))? {
        if z > zxid {
            disk.remove(&p).map_err(io_err(&p))?;
            done.snapshots_removed.push(p);
        }
    }
    let final_path = snap_dir.join(file_name(zxid));
    disk.rename(received, &final_path)
        .map_err(io_err(&final_path))?;
    disk.sync_dir(snap_dir).map_err(io_err(snap_dir))?;
    for (_, p) in list_logs(disk, log_dir).map_err(io_err(log_dir))? {
        disk.remove(&p).map_err(io_err(&p))?;
        done.logs_removed.push(p);
    }
    disk.sync_dir(log_dir).map_err(io_err(log_dir))?;
    done.path = final_path;
    Ok(done)
}

// ----- policy -----

/// When to take a snapshot, as ZooKeeper's `SyncRequestProcessor.shouldSnapshot`: after
/// a random number of txns in [snap_count/2 + 1, snap_count], or a random number of log
/// bytes in [snap_size/2 + 1, snap_size], whichever comes first. The randomness keeps
/// the servers of an ensemble from snapshotting at the same moment.
#[derive(Debug, Clone)]
pub struct SnapPolicy {
    /// ZooKeeper's `snapCount` (default 100 000); at least 2.
    pub snap_count: u64,
    /// ZooKeeper's `snapSizeLimitInKb` in bytes (default 4 GiB); 0 disables the rule.
    pub snap_size_bytes: u64,
    txns: u64,
    bytes: u64,
    txn_roll: u64,
    byte_roll: u64,
    rng: u64,
}

/// ZooKeeper's default `snapCount`.
pub const DEFAULT_SNAP_COUNT: u64 = 100_000;
/// ZooKeeper's default `snapSizeLimitInKb` (4 GiB).
pub const DEFAULT_SNAP_SIZE_BYTES: u64 = 4 << 30;

impl SnapPolicy {
    /// A policy; `seed` feeds the random points (the caller picks it, e.g. from the
    /// server id and start time, so pure code never reads a clock).
    ///
    /// # Panics
    /// If `snap_count < 2`: ZooKeeper refuses it too.
    pub fn new(snap_count: u64, snap_size_bytes: u64, seed: u64) -> SnapPolicy {
        assert!(snap_count >= 2, "snapCount {snap_count} below 2");
        let mut p = SnapPolicy {
            snap_count,
            snap_size_bytes,
            txns: 0,
            bytes: 0,
            txn_roll: 0,
            byte_roll: 0,
            rng: seed | 1,
        };
        p.reroll();
        p
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic per seed, good enough to spread snapshot points.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn reroll(&mut self) {
        self.txn_roll = self.next_random() % (self.snap_count / 2);
        self.byte_roll = match self.snap_size_bytes / 2 {
            0 => 0,
            half => self.next_random() % half,
        };
    }

    /// Counts one logged txn of `bytes` bytes; true when a snapshot is due. The caller
    /// then offers one (taken or skipped as too busy) and calls [`SnapPolicy::reset`].
    pub fn record(&mut self, bytes: u64) -> bool {
        self.txns += 1;
        self.bytes += bytes;
        self.txns > self.snap_count / 2 + self.txn_roll
            || (self.snap_size_bytes > 0 && self.bytes > self.snap_size_bytes / 2 + self.byte_roll)
    }

    /// Starts counting towards the next snapshot, at a new random point.
    pub fn reset(&mut self) {
        self.txns = 0;
        self.bytes = 0;
        self.reroll();
    }
}

// ----- the snapshotter thread -----

/// How far the snapshot thread's niceness is above the process's: well below the sequencer and the shards, so a
/// snapshot takes only CPU they leave idle (a snapshot must not stall writes). Its I/O
/// is in the idle class too (`lower_priority`).
pub const SNAPSHOT_NICE: i32 = 10;

/// What happened to a snapshot offered to [`Snapshotter::offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The thread took it.
    Taken,
    /// One is still being written: skipped, as ZooKeeper's "Too busy to snap, skipping".
    /// [`Snapshotter::try_offer`] says how far behind.
    TooBusy,
}

/// A snapshot offer refused because an earlier one is still being written: what is
/// being written and how far behind the skipped zxid it is. From
/// [`Snapshotter::try_offer`]; [`Busy::describe`] is the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    /// The zxid offered and skipped.
    pub offered_zxid: i64,
    /// The zxid of the snapshot being written.
    pub in_progress_zxid: i64,
    /// Txns between the two when they are of one epoch (the counters' difference);
    /// `None` across an epoch change, where counters restart.
    pub behind_txns: Option<u64>,
    /// How long the snapshot being written has run.
    pub running_for: std::time::Duration,
    /// Znodes of it written so far (updated about every MiB), and its total.
    pub written_nodes: u64,
    pub total_nodes: u64,
    /// Offers skipped since the last one taken, this one included.
    pub skipped_in_a_row: u64,
}

impl Busy {
    /// "too busy to snap, skipping zxid Z: snapshot of zxid Y still being written
    /// (N txns behind, K offers skipped in a row, running for T s, W/M znodes written)".
    pub fn describe(&self) -> String {
        let behind = match self.behind_txns {
            Some(n) => format!("{n} txns behind"),
            None => "an epoch behind".to_string(),
        };
        format!(
            "too busy to snap, skipping zxid {:#x}: snapshot of zxid {:#x} still being written \
             ({behind}, {} offers skipped in a row, running for {:.1} s, {}/{} znodes written)",
            self.offered_zxid,
            self.in_progress_zxid,
            self.skipped_in_a_row,
            self.running_for.as_secs_f64(),
            self.written_nodes,
            self.total_nodes
        )
    }
}

/// The snapshot being written, for [`Busy`].
#[derive(Debug)]
struct InFlight {
    zxid: i64,
    nodes: u64,
    started: std::time::Instant,
}

/// Counters of a [`Snapshotter`], readable from any thread.
#[derive(Debug, Default)]
pub struct SnapshotterStats {
    pub taken: AtomicU64,
    pub skipped_busy: AtomicU64,
    pub failed: AtomicU64,
    /// The zxid of the newest snapshot written (0 if none yet).
    pub last_zxid: AtomicU64,
    /// Offers skipped since the last one taken (0 after a taken one).
    pub skipped_in_a_row: AtomicU64,
    /// The txns behind of the last skipped offer (see [`Busy::behind_txns`]; 0 when
    /// unknown).
    pub last_skip_behind_txns: AtomicU64,
    pub last_duration_us: AtomicU64,
    pub last_bytes: AtomicU64,
}

/// A background thread that writes snapshots of the roots handed to it, one at a time.
///
/// Owned by the sequencer thread, which calls [`Snapshotter::offer`] with the committed
/// root of a zxid. A root is a clone of a persistent tree, so handing it over copies
/// nothing and the sequencer keeps applying txns while it is written. At most one
/// snapshot is in flight; an offer meanwhile is refused ([`Offer::TooBusy`]). "Done"
/// means durable: renamed and the directory synced.
pub struct Snapshotter {
    jobs: Option<mpsc::SyncSender<DataTree>>,
    busy: Arc<AtomicBool>,
    /// The snapshot being written (set by `offer`, cleared with `busy`).
    in_flight: Arc<Mutex<Option<InFlight>>>,
    /// Znodes of it written so far.
    written: Arc<AtomicU64>,
    /// Bytes per second the next snapshots are paced at (`snapshotWriteRate`; 0: none).
    write_rate: Arc<AtomicU64>,
    pub stats: Arc<SnapshotterStats>,
    /// The last failure, for the log line the owner prints and for tests.
    pub last_error: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Snapshotter {
    /// Starts the thread, writing into `dir`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(disk: Arc<dyn Disk>, dir: PathBuf) -> io::Result<Snapshotter> {
        Snapshotter::start_notifying(disk, dir, Box::new(|_, _| {}))
    }

    /// [`Snapshotter::start`], calling `on_saved(zxid, file length)` on the snapshot thread after
    /// each snapshot is durable (renamed and its directory synced), never for a failed
    /// one. The replication loop compacts its log on it.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start_notifying(
        disk: Arc<dyn Disk>,
        dir: PathBuf,
        on_saved: Box<dyn Fn(i64, u64) + Send>,
    ) -> io::Result<Snapshotter> {
        // Capacity one plus the busy flag: the flag is what refuses a second job; the
        // channel slot only carries the accepted one.
        let (tx, rx) = mpsc::sync_channel::<DataTree>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(SnapshotterStats::default());
        let last_error = Arc::new(Mutex::new(None));
        let in_flight: Arc<Mutex<Option<InFlight>>> = Arc::new(Mutex::new(None));
        let written = Arc::new(AtomicU64::new(0));
        let write_rate = Arc::new(AtomicU64::new(0));
        let thread = {
            let (busy, stats, last_error) = (busy.clone(), stats.clone(), last_error.clone());
            let (in_flight, written) = (in_flight.clone(), written.clone());
            let write_rate = write_rate.clone();
            std::thread::Builder::new()
                .name("snapshot".into())
                .spawn(move || {
                    lower_priority();
                    while let Ok(tree) = rx.recv() {
                        let started = std::time::Instant::now();
                        let rate = Some(&*write_rate);
                        match save_counting(&*disk, &dir, &tree, Some(&written), rate) {
                            Ok((path, header, len)) => {
                                let took = started.elapsed();
                                stats.taken.fetch_add(1, Ordering::Relaxed);
                                stats.last_zxid.store(header.zxid as u64, Ordering::Relaxed);
                                stats.last_bytes.store(len, Ordering::Relaxed);
                                stats
                                    .last_duration_us
                                    .store(took.as_micros() as u64, Ordering::Relaxed);
                                // One line per snapshot, as ZooKeeper's "Snapshotting"
                                // line, with what an operator needs: how long it took.
                                let secs = took.as_secs_f64().max(1e-6);
                                eprintln!(
                                    "ringkeeper: snapshot {} written: zxid {:#x}, {} znodes, {len} bytes in {} ms ({:.0} MB/s)",
                                    path.display(),
                                    header.zxid,
                                    header.node_count,
                                    took.as_millis(),
                                    len as f64 / secs / 1e6
                                );
                                on_saved(header.zxid, len);
                            }
                            Err(e) => {
                                stats.failed.fetch_add(1, Ordering::Relaxed);
                                eprintln!("ringkeeper: snapshot failed: {e}");
                                *last_error.lock().expect("not poisoned") = Some(e.to_string());
                            }
                        }
                        // Dropped before the flag clears, so at most one extra root is
                        // alive at a time.
                        drop(tree);
                        *in_flight.lock().expect("not poisoned") = None;
                        busy.store(false, Ordering::Release);
                    }
                })?
        };
        Ok(Snapshotter {
            jobs: Some(tx),
            busy,
            in_flight,
            written,
            write_rate,
            stats,
            last_error,
            thread: Some(thread),
        })
    }

    /// Paces the snapshots written from now on at `bytes_per_sec` (0: as fast as they
    /// go); see `FileWriter::pace`.
    pub fn set_write_rate(&self, bytes_per_sec: u64) {
        self.write_rate.store(bytes_per_sec, Ordering::Relaxed);
    }

    /// Offers the committed root of `zxid` for a snapshot. A skipped offer is also
    /// counted in [`SnapshotterStats`] (`skipped_in_a_row`, `last_skip_behind_txns`).
    /// [`Snapshotter::try_offer`] says how far behind a skipped one is; prefer it.
    ///
    /// # Panics
    /// If `root` is not the tree of `zxid`.
    pub fn offer(&self, root: DataTree, zxid: i64) -> Offer {
        match self.try_offer(root, zxid) {
            Ok(()) => Offer::Taken,
            Err(_) => Offer::TooBusy,
        }
    }

    /// Offers the committed root of `zxid` for a snapshot: `Ok` when the thread took it,
    /// or the [`Busy`] report of the snapshot still being written, which the caller logs
    /// ([`Busy::describe`]) and may act on (e.g. offer again soon rather than after
    /// another snapCount when `behind_txns` is large).
    ///
    /// # Errors
    /// [`Busy`] when an earlier snapshot is still being written (nothing is queued).
    ///
    /// # Panics
    /// If `root` is not the tree of `zxid`.
    pub fn try_offer(&self, root: DataTree, zxid: i64) -> Result<(), Busy> {
        assert_eq!(root.zxid(), zxid, "offered root is not the tree of zxid");
        if self
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            self.stats.skipped_busy.fetch_add(1, Ordering::Relaxed);
            let in_a_row = self.stats.skipped_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
            let flight = self.in_flight.lock().expect("not poisoned");
            // The flag is set before `in_flight` and cleared after it: a skip that sees
            // no record raced with the end of a snapshot.
            let (in_progress_zxid, total_nodes, running_for) = match &*flight {
                Some(f) => (f.zxid, f.nodes, f.started.elapsed()),
                None => (zxid, 0, std::time::Duration::ZERO),
            };
            drop(flight);
            let epoch = |z: i64| (z as u64) >> 32;
            let behind_txns = (epoch(zxid) == epoch(in_progress_zxid))
                .then(|| (zxid as u64).saturating_sub(in_progress_zxid as u64));
            self.stats
                .last_skip_behind_txns
                .store(behind_txns.unwrap_or(0), Ordering::Relaxed);
            return Err(Busy {
                offered_zxid: zxid,
                in_progress_zxid,
                behind_txns,
                running_for,
                written_nodes: self.written.load(Ordering::Relaxed),
                total_nodes,
                skipped_in_a_row: in_a_row,
            });
        }
        self.stats.skipped_in_a_row.store(0, Ordering::Relaxed);
        self.written.store(0, Ordering::Relaxed);
        *self.in_flight.lock().expect("not poisoned") = Some(InFlight {
            zxid,
            nodes: root.len() as u64,
            started: std::time::Instant::now(),
        });
        let jobs = self.jobs.as_ref().expect("running");
        // The flag was clear, so the thread has taken any earlier job out of the slot.
        jobs.try_send(root)
            .expect("snapshot thread alive with an empty slot");
        Ok(())
    }

    /// True while a snapshot is being written.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Finishes the snapshot in flight, if any, and stops the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.jobs = None;
        // A paced snapshot in progress finishes at full speed: a stopping server does
        // not wait out its pacing.
        self.write_rate.store(0, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Snapshotter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Lowers the calling thread's CPU priority by [`SNAPSHOT_NICE`] and puts its I/O in the
/// idle class. Written O_DIRECT, the snapshot's writes are synchronous requests of the
/// thread's class (buffered write-back was async and came after the log's by itself).
/// Measured under a 16x16 write load (perf/snapshot-seconds.py, 3 rounds each, the same
/// hour): the p99 of a snapshot's first second over the second before was 1.57 direct
/// at the default class, 1.17 direct at idle, 1.20 buffered.
fn lower_priority() {
    crate::sched::lower_thread_nice(SNAPSHOT_NICE, "snapshot thread");
    crate::sched::set_thread_io_idle("snapshot thread");
}

// ----- purge -----

/// The log segment file name prefix; the rest is the first zxid the segment holds, in
/// hex, as ZooKeeper's `log.<zxid>`.
pub const LOG_PREFIX: &str = "log.";
/// ZooKeeper's floor on `autopurge.snapRetainCount`.
pub const MIN_RETAIN_COUNT: usize = 3;

/// What [`purge`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PurgeReport {
    pub snapshots: Vec<PathBuf>,
    pub logs: Vec<PathBuf>,
    pub temps: Vec<PathBuf>,
}

/// The log segments in `dir` as (first zxid, path), oldest first.
///
/// # Errors
/// When `dir` cannot be listed. A missing directory holds no segments.
pub fn list_logs(disk: &dyn Disk, dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut v = Vec::new();
    for name in names(disk, dir)? {
        let Some(hex) = name.strip_prefix(LOG_PREFIX) else {
            continue;
        };
        if let Ok(z) = u64::from_str_radix(hex, 16) {
            v.push((z as i64, dir.join(&name)));
        }
    }
    v.sort_by_key(|(z, _)| *z);
    Ok(v)
}

/// Keeps the newest `retain_count` snapshots (at least [`MIN_RETAIN_COUNT`]) and the
/// log segments needed to recover from the oldest of them, and removes the rest, as
/// ZooKeeper's `PurgeTxnLog.purge`: a segment is kept if it starts after that snapshot's
/// zxid, or is the newest one starting at or before it (it may hold the txns right
/// after). Leftover temporary snapshot files are removed too. The server calls this
/// every `autopurge.purgeInterval` hours (0 = never).
///
/// `protect` names a snapshot that must survive: the one a leader sends as SNAP to
/// learners behind its replication log (the newest the loop was told is durable, or
/// the log's base before the first of a run). It is always among the newest two, so
/// the newest three already keep it; `protect` makes that a guarantee rather than a
/// coincidence: when it is older than the oldest kept, every snapshot from it on, and
/// the logs they need, are kept.
///
/// # Errors
/// The first listing or removal failure.
pub fn purge(
    disk: &dyn Disk,
    snap_dir: &Path,
    log_dir: &Path,
    retain_count: usize,
    protect: Option<i64>,
) -> io::Result<PurgeReport> {
    let mut retain = retain_count.max(MIN_RETAIN_COUNT);
    let mut report = PurgeReport::default();
    for name in names(disk, snap_dir)? {
        if name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(TEMP_SUFFIX) {
            let p = snap_dir.join(&name);
            disk.remove(&p)?;
            report.temps.push(p);
        }
    }
    let snaps = list(disk, snap_dir)?;
    if let Some(i) = protect.and_then(|p| snaps.iter().position(|(z, _)| *z == p)) {
        if i >= retain {
            eprintln!(
                "ringkeeper: autopurge: keeping snapshot {:#x}, the replication base, beyond the newest {retain}",
                snaps[i].0
            );
        }
        retain = retain.max(i + 1);
    }
    if snaps.len() <= retain {
        return Ok(report);
    }
    let oldest_kept = snaps[retain - 1].0;
    let logs = list_logs(disk, log_dir)?;
    // The newest segment starting at or before the oldest kept snapshot's zxid may hold
    // the txns right after it; everything older is covered by that snapshot.
    let keep_from = logs
        .iter()
        .rposition(|(z, _)| *z <= oldest_kept)
        .unwrap_or(0);
    for (_, p) in &logs[..keep_from] {
        disk.remove(p)?;
        report.logs.push(p.clone());
    }
    for (z, p) in &snaps[retain..] {
        assert_ne!(Some(*z), protect, "purge removing the protected snapshot");
        disk.remove(p)?;
        report.snapshots.push(p.clone());
    }
    disk.sync_dir(snap_dir)?;
    if log_dir != snap_dir {
        disk.sync_dir(log_dir)?;
    }
    Ok(report)
}

#[cfg(test)]
pub(crate) mod tests;
