//! Byte encodings of what servers say to each other: election notifications (election
//! port) and ZAB messages (quorum port). Servers of one ensemble all run RingKeeper, so
//! these are our own compact frames, not ZooKeeper's (its clients never see them).
//!
//! Every frame is `u32 length (big endian) | body`. A connection opens with a hello:
//! `u32 magic | u64 sender myid`, so the acceptor knows who speaks before the first frame.
//! Decoding checks every length against the bytes present and never panics: a peer that
//! sends garbage gets its connection closed, nothing more.
//!
//! A SYNC carrying a snapshot (SNAP) is the one message that spans several frames, since
//! a snapshot can exceed any one frame: the SYNC frame gives the snapshot's zxid and
//! length in place of its bytes, and the bytes follow at once in chunk frames
//! (`tag 16 | offset u64 | u32 length | bytes`), each non-empty, at most
//! [`MAX_SNAP_CHUNK`] bytes, at consecutive offsets from 0, until the length is reached.
//! Nothing else may come between them. [`MsgAssembler`] checks them and refuses any
//! other order, handing the bytes to a [`SnapSink`] as they arrive: a learner's
//! [`FileSink`] streams them to a file in dataDir, so it holds one chunk, not the
//! snapshot. The sender streams them from the snapshot file ([`encode_msg`] for the
//! SYNC frame, [`encode_snap_chunk`] for each chunk).

use crate::storage::disk::Disk;
use crate::storage::snapshot;
use crate::zab::election::{Notification, State, Vote};
use crate::zab::msg::{Msg, SyncMode};
use crate::zab::{ServerId, Txn};
use bytes::Bytes;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// The first word of an election connection's hello.
pub const ELECTION_MAGIC: u32 = 0x524b_454c; // "RKEL"
/// The first word of a quorum connection's hello.
pub const QUORUM_MAGIC: u32 = 0x524b_5155; // "RKQU"

/// The largest election frame: a notification is 30 bytes; anything bigger is garbage.
pub const MAX_ELECTION_FRAME: usize = 64;
/// The largest quorum frame: a SYNC carries a learner's whole missing history, and a
/// PROPOSAL one sequencer pass; ZooKeeper bounds a packet by jute.maxbuffer (1 MiB) but
/// sends a DIFF as many packets. 256 MiB bounds what a bad length can make us allocate.
pub const MAX_QUORUM_FRAME: usize = 256 << 20;
/// Snapshot bytes per chunk frame a sender writes: large enough that framing costs
/// nothing, small enough that the buffer is irrelevant and a learner's connection never
/// holds one huge write.
pub const SNAP_CHUNK: usize = 1 << 20;
/// The most snapshot bytes a chunk frame may carry (a receiver accepts any size up to
/// this; senders use [`SNAP_CHUNK`]).
pub const MAX_SNAP_CHUNK: usize = MAX_QUORUM_FRAME - SNAP_CHUNK_OVERHEAD;
/// Tag, offset and length of a chunk frame.
const SNAP_CHUNK_OVERHEAD: usize = 1 + 8 + 4;
/// The tag of a snapshot chunk frame.
const TAG_SNAP_CHUNK: u8 = 16;
/// Bytes a receiver reserves up front for a snapshot, whatever length the SYNC claims:
/// memory then grows with the bytes that really arrive, so a lying length costs nothing.
const SNAP_RESERVE: usize = 64 << 20;
const _: () = assert!(SNAP_CHUNK <= MAX_SNAP_CHUNK && SNAP_CHUNK > 0);

/// Writes a connection's hello.
pub fn write_hello(w: &mut impl Write, magic: u32, my_id: ServerId) -> io::Result<()> {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&magic.to_be_bytes());
    b[4..].copy_from_slice(&my_id.to_be_bytes());
    w.write_all(&b)
}

/// Reads a hello; the sender's myid.
///
/// # Errors
/// On EOF, a socket error, or a magic that is not `magic`.
pub fn read_hello(r: &mut impl Read, magic: u32) -> io::Result<ServerId> {
    let mut b = [0u8; 12];
    r.read_exact(&mut b)?;
    let got = u32::from_be_bytes(b[..4].try_into().expect("4 bytes"));
    if got != magic {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad hello magic {got:#x}"),
        ));
    }
    Ok(u64::from_be_bytes(b[4..].try_into().expect("8 bytes")))
}

/// Writes one length-prefixed frame.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).expect("frame under 4 GiB");
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf)
}

/// Reads one frame of at most `max` bytes.
///
/// # Errors
/// On EOF, a socket error, or a length above `max`.
pub fn read_frame(r: &mut impl Read, max: usize) -> io::Result<Vec<u8>> {
    let mut l = [0u8; 4];
    r.read_exact(&mut l)?;
    let len = u32::from_be_bytes(l) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes, more than {max}"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

fn state_byte(s: State) -> u8 {
    match s {
        State::Looking => 0,
        State::Following => 1,
        State::Leading => 2,
        State::Observing => 3,
    }
}

/// Encodes a notification: state, vote presence, vote (epoch, zxid, leader), round.
pub fn encode_notification(n: &Notification) -> Vec<u8> {
    let mut b = Vec::with_capacity(30);
    b.push(state_byte(n.state));
    match n.vote {
        None => b.extend_from_slice(&[0u8; 21]),
        Some(v) => {
            b.push(1);
            b.extend_from_slice(&v.epoch.to_be_bytes());
            b.extend_from_slice(&v.zxid.to_be_bytes());
            b.extend_from_slice(&v.leader.to_be_bytes());
        }
    }
    b.extend_from_slice(&n.election_epoch.to_be_bytes());
    b
}

/// Decodes a notification; `None` for anything malformed.
pub fn decode_notification(b: &[u8]) -> Option<Notification> {
    let mut c = Cursor {
        b,
        at: 0,
        shared: None,
    };
    let state = match c.u8()? {
        0 => State::Looking,
        1 => State::Following,
        2 => State::Leading,
        3 => State::Observing,
        _ => return None,
    };
    let has = c.u8()?;
    let epoch = c.u32()?;
    let zxid = c.u64()?;
    let leader = c.u64()?;
    let vote = match has {
        0 => None,
        1 => Some(Vote {
            epoch,
            zxid,
            leader,
        }),
        _ => return None,
    };
    let election_epoch = c.u64()?;
    c.end()?;
    Some(Notification {
        vote,
        state,
        election_epoch,
    })
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
    /// `b` as shared bytes, when the caller has them: payloads are then slices of it
    /// rather than copies (one allocation per frame instead of one per txn).
    shared: Option<&'a Bytes>,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let n = self.u32()? as usize;
        let start = self.at;
        let shared = self.shared;
        let s = self.take(n)?;
        Some(match shared {
            Some(all) => all.slice(start..start + n),
            None => Bytes::copy_from_slice(s),
        })
    }
    fn txns(&mut self) -> Option<Vec<Txn>> {
        let n = self.u32()? as usize;
        // Each txn takes at least 12 bytes: a count beyond what remains is garbage, and
        // checking it first keeps a bad count from reserving memory.
        if n > (self.b.len() - self.at) / 12 {
            return None;
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let zxid = self.u64()?;
            let payload = self.bytes()?;
            v.push(Txn { zxid, payload });
        }
        Some(v)
    }
    fn payloads(&mut self) -> Option<Vec<Bytes>> {
        let n = self.u32()? as usize;
        // Each payload takes at least its 4-byte length (see `txns`).
        if n > (self.b.len() - self.at) / 4 {
            return None;
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.bytes()?);
        }
        Some(v)
    }
    fn end(&self) -> Option<()> {
        (self.at == self.b.len()).then_some(())
    }
}

fn put_bytes(b: &mut Vec<u8>, p: &[u8]) {
    b.extend_from_slice(&u32::try_from(p.len()).expect("under 4 GiB").to_be_bytes());
    b.extend_from_slice(p);
}

fn put_txns(b: &mut Vec<u8>, txns: &[Txn]) {
    b.extend_from_slice(&(txns.len() as u32).to_be_bytes());
    for t in txns {
        b.extend_from_slice(&t.zxid.to_be_bytes());
        put_bytes(b, &t.payload);
    }
}

/// Encodes a ZAB message's frame: one tag byte, then its fields in declaration order.
/// For a SYNC with a snapshot this is only the first frame: it carries the snapshot's
/// length, and the bytes must follow as [`encode_snap_chunk`] frames ([`encode_frames`]
/// makes them all; a sender streaming from a file makes them itself).
pub fn encode_msg(m: &Msg) -> Vec<u8> {
    let mut b = Vec::new();
    match m {
        Msg::FollowerInfo {
            accepted_epoch,
            last_zxid,
            observer,
        } => {
            b.push(1);
            b.extend_from_slice(&accepted_epoch.to_be_bytes());
            b.extend_from_slice(&last_zxid.to_be_bytes());
            b.push(*observer as u8);
        }
        Msg::LeaderInfo { new_epoch } => {
            b.push(2);
            b.extend_from_slice(&new_epoch.to_be_bytes());
        }
        Msg::AckEpoch {
            current_epoch,
            last_zxid,
        } => {
            b.push(3);
            b.extend_from_slice(&current_epoch.to_be_bytes());
            b.extend_from_slice(&last_zxid.to_be_bytes());
        }
        Msg::Sync {
            mode,
            txns,
            commit_through,
        } => {
            b.push(4);
            match mode {
                SyncMode::Diff => b.push(0),
                SyncMode::Trunc { to } => {
                    b.push(1);
                    b.extend_from_slice(&to.to_be_bytes());
                }
                SyncMode::Snap { zxid, data } => {
                    // The bytes follow in chunk frames (see the module header).
                    b.push(2);
                    b.extend_from_slice(&zxid.to_be_bytes());
                    b.extend_from_slice(&(data.len() as u64).to_be_bytes());
                }
            }
            put_txns(&mut b, txns);
            b.extend_from_slice(&commit_through.to_be_bytes());
        }
        Msg::NewLeader { epoch } => {
            b.push(5);
            b.extend_from_slice(&epoch.to_be_bytes());
        }
        Msg::AckNewLeader { epoch } => {
            b.push(6);
            b.extend_from_slice(&epoch.to_be_bytes());
        }
        Msg::UpToDate => b.push(7),
        Msg::Propose { txns } => {
            b.push(8);
            put_txns(&mut b, txns);
        }
        Msg::Ack { zxid } => {
            b.push(9);
            b.extend_from_slice(&zxid.to_be_bytes());
        }
        Msg::Commit { through } => {
            b.push(10);
            b.extend_from_slice(&through.to_be_bytes());
        }
        Msg::Logged { through } => {
            b.push(24);
            b.extend_from_slice(&through.to_be_bytes());
        }
        Msg::Inform { txns } => {
            b.push(11);
            put_txns(&mut b, txns);
        }
        Msg::Ping => b.push(13),
        Msg::Forward { payloads } => {
            b.push(14);
            b.extend_from_slice(&(payloads.len() as u32).to_be_bytes());
            for p in payloads {
                put_bytes(&mut b, p);
            }
        }
        Msg::Reply { payload } => {
            b.push(15);
            put_bytes(&mut b, payload);
        }
        // 16 is a snapshot chunk (`TAG_SNAP_CHUNK`).
        Msg::QuorumView { synced } => {
            b.push(17);
            b.extend_from_slice(&(synced.len() as u32).to_be_bytes());
            for id in synced {
                b.extend_from_slice(&id.to_be_bytes());
            }
        }
        Msg::Moving => b.push(18),
        Msg::MovingAck => b.push(19),
        Msg::TakeOver => b.push(20),
        Msg::Moved { leader } => {
            b.push(21);
            b.extend_from_slice(&leader.to_be_bytes());
        }
        Msg::RequestLeadership => b.push(22),
        Msg::MovingCancelled => b.push(23),
    }
    b
}

/// The SYNC frame of a SNAP whose `snapshot_len` snapshot bytes follow in chunk frames:
/// the same bytes as [`encode_msg`] of that SYNC, for a sender that streams the snapshot
/// from a file instead of holding it.
pub fn encode_snap_sync(
    zxid: u64,
    snapshot_len: u64,
    txns: &[Txn],
    commit_through: u64,
) -> Vec<u8> {
    let mut b = vec![4, 2];
    b.extend_from_slice(&zxid.to_be_bytes());
    b.extend_from_slice(&snapshot_len.to_be_bytes());
    put_txns(&mut b, txns);
    b.extend_from_slice(&commit_through.to_be_bytes());
    b
}

/// Every frame of `m`: [`encode_msg`], then for a SYNC with a snapshot its chunks.
pub fn encode_frames(m: &Msg) -> Vec<Vec<u8>> {
    let mut frames = vec![encode_msg(m)];
    if let Msg::Sync {
        mode: SyncMode::Snap { data, .. },
        ..
    } = m
    {
        for (i, chunk) in data.chunks(SNAP_CHUNK).enumerate() {
            frames.push(encode_snap_chunk((i * SNAP_CHUNK) as u64, chunk));
        }
    }
    frames
}

/// Encodes one chunk frame of a snapshot: `bytes` start at `offset` of the snapshot.
///
/// # Panics
/// If `bytes` is empty or longer than [`MAX_SNAP_CHUNK`] (a receiver would refuse it).
pub fn encode_snap_chunk(offset: u64, bytes: &[u8]) -> Vec<u8> {
    assert!(!bytes.is_empty() && bytes.len() <= MAX_SNAP_CHUNK);
    let mut b = Vec::with_capacity(SNAP_CHUNK_OVERHEAD + bytes.len());
    b.push(TAG_SNAP_CHUNK);
    b.extend_from_slice(&offset.to_be_bytes());
    put_bytes(&mut b, bytes);
    b
}

/// A SYNC whose snapshot bytes are still arriving (into the assembler's sink).
#[derive(Debug)]
struct PendingSnap {
    zxid: u64,
    len: u64,
    /// Snapshot bytes received so far: the next chunk's offset.
    received: u64,
    txns: Vec<Txn>,
    commit_through: u64,
}

/// What one frame holds.
enum Frame {
    Msg(Msg),
    /// A SYNC announcing a snapshot of `len` bytes in chunk frames to follow.
    SnapSync(PendingSnap),
    Chunk {
        offset: u64,
        bytes: Vec<u8>,
    },
}

/// Where a SNAP's snapshot bytes go while they arrive. [`MsgAssembler`] checks the
/// chunks (order, lengths, nothing in between) and calls `begin`, then `append` for
/// each chunk in order with exactly `len` bytes in all, then `finish`; or `abort` at
/// the first error. An error of the sink's is the connection's protocol error.
pub trait SnapSink {
    /// A snapshot of `zxid`, `len` (> 0) bytes, begins.
    fn begin(&mut self, zxid: u64, len: u64) -> Result<(), String>;
    /// The next bytes of the snapshot.
    fn append(&mut self, bytes: &[u8]) -> Result<(), String>;
    /// Every byte arrived: the SNAP's `data` for the peer (the snapshot, or a handle
    /// to it). On error the sink has forgotten the snapshot.
    fn finish(&mut self) -> Result<Bytes, String>;
    /// The snapshot will not complete: forget what arrived. Idempotent.
    fn abort(&mut self);
}

/// Keeps a snapshot in memory: the SNAP's `data` is the snapshot itself.
#[derive(Debug, Default)]
pub struct MemSink {
    data: Vec<u8>,
}

impl SnapSink for MemSink {
    fn begin(&mut self, _zxid: u64, len: u64) -> Result<(), String> {
        self.data = Vec::with_capacity(len.min(SNAP_RESERVE as u64) as usize);
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    fn finish(&mut self) -> Result<Bytes, String> {
        Ok(Bytes::from(std::mem::take(&mut self.data)))
    }

    fn abort(&mut self) {
        self.data = Vec::new();
    }
}

/// Streams a snapshot to `snapshot.<zxid hex>.<conn>.recv` in the snapshot directory
/// ([`snapshot::SnapshotReceiver`]): a learner holds one chunk of it, not the whole.
/// On `finish` the file is datasynced and checked completely (every record and both
/// CRCs, the rebuilt tree's digest, its zxid equal to the SNAP's); the SNAP's `data`
/// is then the file's name in that directory, which the driver installs. A snapshot
/// that fails, or a transfer cut short (the sink dropped with its connection), leaves
/// no file.
pub struct FileSink {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// Who sends, for the log line of a checked snapshot.
    from: ServerId,
    /// The connection's number, which names its file.
    conn: u64,
    receiving: Option<snapshot::SnapshotReceiver>,
}

impl FileSink {
    pub fn new(disk: Arc<dyn Disk>, dir: PathBuf, from: ServerId, conn: u64) -> FileSink {
        FileSink {
            disk,
            dir,
            from,
            conn,
            receiving: None,
        }
    }
}

impl SnapSink for FileSink {
    fn begin(&mut self, zxid: u64, len: u64) -> Result<(), String> {
        assert!(
            self.receiving.is_none(),
            "a snapshot begins while receiving"
        );
        let r = snapshot::SnapshotReceiver::begin(
            self.disk.clone(),
            &self.dir,
            zxid as i64,
            self.conn,
            len,
        )
        .map_err(|e| format!("cannot receive the snapshot of SNAP at {zxid:#x}: {e}"))?;
        self.receiving = Some(r);
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), String> {
        let r = self.receiving.as_mut().expect("append without begin");
        r.append(bytes).map_err(|e| {
            self.receiving = None;
            format!("cannot receive a snapshot: {e}")
        })
    }

    fn finish(&mut self) -> Result<Bytes, String> {
        let r = self.receiving.take().expect("finish without begin");
        match r.finish() {
            Ok((path, h)) => {
                eprintln!(
                    "ringkeeper: SNAP from server {}: snapshot {:#x} received and checked in {}: {} znodes, digest {:#018x}",
                    self.from,
                    h.zxid,
                    path.display(),
                    h.node_count,
                    h.digest
                );
                let name = path.file_name().expect("a file name").to_string_lossy();
                Ok(Bytes::from(name.into_owned()))
            }
            Err(e) => Err(format!("a bad snapshot ({e}), removed, nothing installed")),
        }
    }

    fn abort(&mut self) {
        self.receiving = None;
    }
}

/// Reassembles a quorum connection's frames into messages (one per connection, fed
/// every frame in order). Only a SYNC with a snapshot spans frames; its bytes go to the
/// sink `S` as they arrive, and the message's snapshot `data` is what the sink returns.
#[derive(Default)]
pub struct MsgAssembler<S: SnapSink = MemSink> {
    pending: Option<PendingSnap>,
    sink: S,
}

impl<S: SnapSink> MsgAssembler<S> {
    /// An assembler whose snapshots go to `sink`.
    pub fn new(sink: S) -> MsgAssembler<S> {
        MsgAssembler {
            pending: None,
            sink,
        }
    }

    /// Takes the next frame's body: `Ok(Some)` when it completes a message, `Ok(None)`
    /// when a snapshot needs more chunks.
    ///
    /// # Errors
    /// A frame that does not decode, a chunk that is empty, out of order, beyond the
    /// announced length or without a SYNC before it, any other frame while a
    /// snapshot's chunks are due, or the sink's error. The sink has forgotten the
    /// snapshot then, and the connection must be closed: the stream can no longer be
    /// trusted.
    pub fn push(&mut self, body: &[u8]) -> Result<Option<Msg>, String> {
        self.push_cursor(Cursor {
            b: body,
            at: 0,
            shared: None,
        })
    }

    /// As `push`, for a frame body the caller holds as shared bytes: the message's
    /// payloads are slices of it, not copies.
    ///
    /// # Errors
    /// As `push`.
    pub fn push_shared(&mut self, body: &Bytes) -> Result<Option<Msg>, String> {
        self.push_cursor(Cursor {
            b: body,
            at: 0,
            shared: Some(body),
        })
    }

    fn push_cursor(&mut self, c: Cursor<'_>) -> Result<Option<Msg>, String> {
        let r = self.push_frame(c);
        if r.is_err() {
            self.pending = None;
            self.sink.abort();
        }
        r
    }

    fn push_frame(&mut self, c: Cursor<'_>) -> Result<Option<Msg>, String> {
        let body = c.b;
        let frame = decode_frame_in(c).ok_or_else(|| match body.first() {
            Some(tag) => format!("malformed frame (tag {tag}, {} bytes)", body.len()),
            None => "empty frame".to_string(),
        })?;
        match (self.pending.as_mut(), frame) {
            (None, Frame::Msg(m)) => Ok(Some(m)),
            (None, Frame::SnapSync(p)) => {
                if p.len == 0 {
                    return Err(format!("SNAP at {:#x} with an empty snapshot", p.zxid));
                }
                self.sink.begin(p.zxid, p.len)?;
                self.pending = Some(p);
                Ok(None)
            }
            (None, Frame::Chunk { offset, .. }) => {
                Err(format!("snapshot chunk at offset {offset} without a SNAP"))
            }
            (Some(p), Frame::Chunk { offset, bytes }) => {
                let have = p.received;
                if offset != have {
                    return Err(format!(
                        "snapshot chunk at offset {offset}, expected {have} (of {})",
                        p.len
                    ));
                }
                if bytes.is_empty() || have + bytes.len() as u64 > p.len {
                    return Err(format!(
                        "snapshot chunk of {} bytes at offset {offset} of a {}-byte snapshot",
                        bytes.len(),
                        p.len
                    ));
                }
                self.sink.append(&bytes)?;
                p.received += bytes.len() as u64;
                if p.received < p.len {
                    return Ok(None);
                }
                let p = self.pending.take().expect("pending");
                let data = self.sink.finish()?;
                Ok(Some(Msg::Sync {
                    mode: SyncMode::Snap { zxid: p.zxid, data },
                    txns: p.txns,
                    commit_through: p.commit_through,
                }))
            }
            (Some(p), _) => Err(format!(
                "a frame other than a snapshot chunk after {} of {} snapshot bytes",
                p.received, p.len
            )),
        }
    }

    /// True between messages (no snapshot half received).
    pub fn is_idle(&self) -> bool {
        self.pending.is_none()
    }
}

/// Decodes a message that fits one frame; `None` for anything malformed, and for the
/// frames of a snapshot (which need [`MsgAssembler`]).
pub fn decode_msg(b: &[u8]) -> Option<Msg> {
    match decode_frame(b)? {
        Frame::Msg(m) => Some(m),
        Frame::SnapSync(_) | Frame::Chunk { .. } => None,
    }
}

fn decode_frame(b: &[u8]) -> Option<Frame> {
    decode_frame_in(Cursor {
        b,
        at: 0,
        shared: None,
    })
}

fn decode_frame_in(mut c: Cursor<'_>) -> Option<Frame> {
    let m = match c.u8()? {
        1 => Msg::FollowerInfo {
            accepted_epoch: c.u32()?,
            last_zxid: c.u64()?,
            observer: match c.u8()? {
                0 => false,
                1 => true,
                _ => return None,
            },
        },
        2 => Msg::LeaderInfo {
            new_epoch: c.u32()?,
        },
        3 => Msg::AckEpoch {
            current_epoch: c.u32()?,
            last_zxid: c.u64()?,
        },
        4 => {
            let mode = match c.u8()? {
                0 => SyncMode::Diff,
                1 => SyncMode::Trunc { to: c.u64()? },
                2 => {
                    let (zxid, len) = (c.u64()?, c.u64()?);
                    let (txns, commit_through) = (c.txns()?, c.u64()?);
                    c.end()?;
                    return Some(Frame::SnapSync(PendingSnap {
                        zxid,
                        len,
                        received: 0,
                        txns,
                        commit_through,
                    }));
                }
                _ => return None,
            };
            Msg::Sync {
                mode,
                txns: c.txns()?,
                commit_through: c.u64()?,
            }
        }
        5 => Msg::NewLeader { epoch: c.u32()? },
        6 => Msg::AckNewLeader { epoch: c.u32()? },
        7 => Msg::UpToDate,
        8 => Msg::Propose { txns: c.txns()? },
        9 => Msg::Ack { zxid: c.u64()? },
        10 => Msg::Commit { through: c.u64()? },
        11 => Msg::Inform { txns: c.txns()? },
        // 12 was REQUEST (a single txn payload from a learner), replaced by FORWARD.
        13 => Msg::Ping,
        14 => Msg::Forward {
            payloads: c.payloads()?,
        },
        15 => Msg::Reply {
            payload: c.bytes()?,
        },
        17 => {
            let n = c.u32()? as usize;
            // Each id is 8 bytes: a count beyond the frame is refused before allocating.
            if n > c.b.len().saturating_sub(c.at) / 8 {
                return None;
            }
            let mut synced = Vec::with_capacity(n);
            for _ in 0..n {
                synced.push(c.u64()?);
            }
            Msg::QuorumView { synced }
        }
        18 => Msg::Moving,
        19 => Msg::MovingAck,
        20 => Msg::TakeOver,
        21 => Msg::Moved { leader: c.u64()? },
        22 => Msg::RequestLeadership,
        23 => Msg::MovingCancelled,
        24 => Msg::Logged { through: c.u64()? },
        TAG_SNAP_CHUNK => {
            let offset = c.u64()?;
            let n = c.u32()? as usize;
            let bytes = c.take(n)?.to_vec();
            c.end()?;
            return Some(Frame::Chunk { offset, bytes });
        }
        _ => return None,
    };
    c.end()?;
    Some(Frame::Msg(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_round_trip() {
        for n in [
            Notification {
                vote: None,
                state: State::Observing,
                election_epoch: 3,
            },
            Notification {
                vote: Some(Vote {
                    epoch: 7,
                    zxid: 0x7_0000_0009,
                    leader: 2,
                }),
                state: State::Leading,
                election_epoch: u64::MAX,
            },
        ] {
            let b = encode_notification(&n);
            assert!(b.len() <= MAX_ELECTION_FRAME);
            assert_eq!(decode_notification(&b), Some(n));
            assert_eq!(decode_notification(&b[..b.len() - 1]), None);
        }
    }

    #[test]
    fn messages_round_trip_and_truncations_fail() {
        let txns = vec![
            Txn {
                zxid: 0x1_0000_0001,
                payload: Bytes::from_static(b"abc"),
            },
            Txn {
                zxid: 0x1_0000_0002,
                payload: Bytes::new(),
            },
        ];
        let msgs = vec![
            Msg::FollowerInfo {
                accepted_epoch: 1,
                last_zxid: 5,
                observer: true,
            },
            Msg::LeaderInfo { new_epoch: 2 },
            Msg::AckEpoch {
                current_epoch: 1,
                last_zxid: 9,
            },
            Msg::Sync {
                mode: SyncMode::Trunc { to: 8 },
                txns: vec![],
                commit_through: 8,
            },
            Msg::NewLeader { epoch: 2 },
            Msg::AckNewLeader { epoch: 2 },
            Msg::UpToDate,
            Msg::Propose { txns: txns.clone() },
            Msg::Ack { zxid: 3 },
            Msg::Commit { through: 3 },
            Msg::Logged { through: 3 },
            Msg::Inform { txns },
            Msg::Ping,
            Msg::Forward {
                payloads: vec![Bytes::from_static(b"a"), Bytes::new()],
            },
            Msg::Reply {
                payload: Bytes::from_static(b"ok"),
            },
            Msg::QuorumView {
                synced: vec![1, 3, 200],
            },
            Msg::QuorumView { synced: vec![] },
            Msg::Moving,
            Msg::MovingAck,
            Msg::TakeOver,
            Msg::Moved { leader: 3 },
            Msg::RequestLeadership,
            Msg::MovingCancelled,
        ];
        // A view's count beyond its bytes is refused, not allocated.
        assert_eq!(decode_msg(&[17, 0xff, 0xff, 0xff, 0xff]), None);
        for m in msgs {
            let b = encode_msg(&m);
            assert_eq!(decode_msg(&b).as_ref(), Some(&m), "{}", m.name());
            assert_eq!(encode_frames(&m), vec![b.clone()]);
            let mut a = MsgAssembler::<MemSink>::default();
            assert_eq!(a.push(&b), Ok(Some(m.clone())));
            for cut in 0..b.len() {
                assert_eq!(decode_msg(&b[..cut]), None, "{} cut at {cut}", m.name());
                assert!(MsgAssembler::<MemSink>::default().push(&b[..cut]).is_err());
            }
        }
    }

    fn snap_sync(data: Vec<u8>) -> Msg {
        Msg::Sync {
            mode: SyncMode::Snap {
                zxid: 0x3_0000_0007,
                data: Bytes::from(data),
            },
            txns: vec![Txn {
                zxid: 0x3_0000_0008,
                payload: Bytes::from_static(b"after"),
            }],
            commit_through: 0x3_0000_0008,
        }
    }

    /// Feeds every frame; the message once complete, and checks nothing completes early.
    fn assemble(frames: &[Vec<u8>]) -> Result<Msg, String> {
        let mut a = MsgAssembler::<MemSink>::default();
        for (i, f) in frames.iter().enumerate() {
            match a.push(f)? {
                Some(m) if i + 1 == frames.len() && a.is_idle() => return Ok(m),
                Some(m) => return Err(format!("{} complete at frame {i}", m.name())),
                None => assert!(!a.is_idle()),
            }
        }
        Err("incomplete".into())
    }

    #[test]
    fn a_snapshot_larger_than_a_chunk_spans_frames_and_round_trips() {
        // Sizes around the chunk boundary: one byte, exactly one chunk, one byte more,
        // several chunks with a short last one.
        for len in [1, SNAP_CHUNK, SNAP_CHUNK + 1, 3 * SNAP_CHUNK + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let m = snap_sync(data);
            let frames = encode_frames(&m);
            assert_eq!(frames.len(), 1 + len.div_ceil(SNAP_CHUNK), "{len}");
            assert!(frames.iter().all(|f| f.len() <= MAX_QUORUM_FRAME));
            assert_eq!(assemble(&frames), Ok(m.clone()), "{len}");
            // The SYNC frame alone is not a message.
            assert_eq!(decode_msg(&frames[0]), None);
            let Msg::Sync {
                txns,
                commit_through,
                ..
            } = &m
            else {
                unreachable!()
            };
            assert_eq!(
                encode_snap_sync(0x3_0000_0007, len as u64, txns, *commit_through),
                frames[0]
            );
        }
    }

    /// Frame sequences a receiver must refuse, around a SNAP of three chunks (the
    /// last short) of 7s.
    fn malformed_snapshot_cases() -> Vec<(&'static str, Vec<Vec<u8>>)> {
        let m = snap_sync(vec![7u8; 2 * SNAP_CHUNK + 5]);
        let frames = encode_frames(&m);
        let (sync, c0, c1, c2) = (&frames[0], &frames[1], &frames[2], &frames[3]);
        let ping = encode_msg(&Msg::Ping);
        vec![
            ("chunk without a SNAP", vec![c0.clone()]),
            ("chunks out of order", vec![sync.clone(), c1.clone()]),
            ("chunk repeated", vec![sync.clone(), c0.clone(), c0.clone()]),
            (
                "a message between chunks",
                vec![sync.clone(), c0.clone(), ping.clone()],
            ),
            (
                "a second SNAP between chunks",
                vec![sync.clone(), sync.clone()],
            ),
            (
                "truncated chunk",
                vec![sync.clone(), c0[..c0.len() - 1].to_vec()],
            ),
            (
                "chunk with trailing bytes",
                vec![sync.clone(), [c0.clone(), vec![0]].concat()],
            ),
            ("empty chunk", vec![sync.clone(), encode_empty_chunk(0)]),
            ("chunk past the length", {
                let mut last = c2.clone();
                last.extend_from_slice(&[1, 2]);
                // Fix the length field to cover the extra bytes: a well-formed frame that
                // overruns the announced snapshot.
                let n = (c2.len() - SNAP_CHUNK_OVERHEAD + 2) as u32;
                last[9..13].copy_from_slice(&n.to_be_bytes());
                vec![sync.clone(), c0.clone(), c1.clone(), last]
            }),
            ("empty snapshot", encode_frames(&snap_sync(Vec::new()))),
            ("unknown tag", vec![vec![99]]),
            ("empty frame", vec![vec![]]),
        ]
    }

    #[test]
    fn malformed_snapshot_frames_are_errors() {
        let m = snap_sync(vec![7u8; 2 * SNAP_CHUNK + 5]);
        let frames = encode_frames(&m);
        let (sync, c0) = (&frames[0], &frames[1]);
        for (what, frames) in malformed_snapshot_cases() {
            let mut a = MsgAssembler::<MemSink>::default();
            let r: Result<Vec<_>, _> = frames.iter().map(|f| a.push(f)).collect();
            assert!(r.is_err(), "{what}: {r:?}");
        }
        // A SNAP claiming more bytes than ever come stays incomplete (the connection's
        // end closes it) and reserves no more than SNAP_RESERVE.
        let mut huge = sync.clone();
        let at = 1 + 1 + 8;
        huge[at..at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        let mut a = MsgAssembler::<MemSink>::default();
        assert_eq!(a.push(&huge), Ok(None));
        assert_eq!(a.push(c0), Ok(None));
        assert!(!a.is_idle());
    }

    fn encode_empty_chunk(offset: u64) -> Vec<u8> {
        let mut b = vec![TAG_SNAP_CHUNK];
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b
    }

    fn file_sink(dir: &std::path::Path) -> MsgAssembler<FileSink> {
        let disk: Arc<dyn Disk> = Arc::new(crate::storage::OsDisk);
        MsgAssembler::new(FileSink::new(disk, dir.to_path_buf(), 2, 5))
    }

    fn file_names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// The frames of a SNAP of `data` at `zxid` in chunks of `chunk` bytes.
    fn snap_frames(zxid: u64, data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let mut frames = vec![encode_snap_sync(zxid, data.len() as u64, &[], zxid)];
        for (i, c) in data.chunks(chunk).enumerate() {
            frames.push(encode_snap_chunk((i * chunk) as u64, c));
        }
        frames
    }

    #[test]
    fn a_file_sink_streams_a_snapshot_to_a_checked_file() {
        use crate::storage::snapshot::tests::{sample_tree, TempDir};
        let dir = TempDir::new("file-sink");
        let tree = sample_tree(300);
        let zxid = tree.zxid() as u64;
        let mut data = Vec::new();
        snapshot::write_to(&tree, &mut data).unwrap();
        let frames = snap_frames(zxid, &data, 1000);
        assert!(frames.len() > 4, "several chunks");
        let mut a = file_sink(&dir.0);
        let mut got = None;
        for (i, f) in frames.iter().enumerate() {
            got = a.push(f).expect("accepted");
            assert_eq!(got.is_some(), i + 1 == frames.len());
            // One file, growing, while the snapshot arrives.
            assert_eq!(
                file_names(&dir.0),
                vec![snapshot::received_name(zxid as i64, 5)]
            );
        }
        assert!(a.is_idle());
        let Some(Msg::Sync {
            mode:
                SyncMode::Snap {
                    zxid: z,
                    data: handle,
                },
            ..
        }) = got
        else {
            panic!("not a SNAP: {got:?}")
        };
        assert_eq!(z, zxid);
        let name = snapshot::received_name(zxid as i64, 5);
        assert_eq!(&handle[..], name.as_bytes());
        drop(a);
        assert_eq!(std::fs::read(dir.0.join(&name)).unwrap(), data);

        // A corrupt snapshot (a byte flipped) or one of another zxid, every chunk in
        // order: refused when complete, and nothing is left (the good one stays).
        let mut bad = data.clone();
        bad[data.len() / 2] ^= 1;
        for (z, bytes) in [(zxid + 1, &bad), (zxid + 1, &data)] {
            let mut a = file_sink(&dir.0);
            let frames = snap_frames(z, bytes, 1000);
            let (last, rest) = frames.split_last().unwrap();
            for f in rest {
                assert_eq!(a.push(f), Ok(None));
            }
            assert!(a.push(last).is_err());
            assert!(file_names(&dir.0).is_empty(), "{:?}", file_names(&dir.0));
        }
    }

    #[test]
    fn malformed_snapshot_frames_leave_no_received_file() {
        use crate::storage::snapshot::tests::TempDir;
        let dir = TempDir::new("file-sink-bad");
        for (what, frames) in malformed_snapshot_cases() {
            let mut a = file_sink(&dir.0);
            let r: Result<Vec<_>, _> = frames.iter().map(|f| a.push(f)).collect();
            assert!(r.is_err(), "{what}: {r:?}");
            assert!(
                file_names(&dir.0).is_empty(),
                "{what}: {:?}",
                file_names(&dir.0)
            );
        }
        // A connection that ends mid-snapshot (early end) leaves nothing either.
        let frames = encode_frames(&snap_sync(vec![7u8; 2 * SNAP_CHUNK + 5]));
        let mut a = file_sink(&dir.0);
        assert_eq!(a.push(&frames[0]), Ok(None));
        assert_eq!(a.push(&frames[1]), Ok(None));
        assert_eq!(file_names(&dir.0).len(), 1);
        drop(a);
        assert!(file_names(&dir.0).is_empty());
    }
}
