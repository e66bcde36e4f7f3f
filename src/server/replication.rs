//! The replication loop: drives `zab::peer::Peer` over TCP on the quorum port, and glues
//! it to the election (docs/replication.md, "Glue the driver owns").
//!
//! Owns: the peer state machine, the quorum connections (a leader accepts learners on its
//! quorum port; a learner dials the leader), the epoch files, the peer clock, and the
//! server's reported mode. Must not: decide anything about the protocol (the peer does)
//! or touch the tree.
//!
//! Connections. Every quorum connection has a reader thread (frames -> `Input::Message`)
//! and a writer thread fed by a bounded queue, so the loop never blocks on a socket. A
//! connection is named by a number; the loop keeps, per peer, the one that is current
//! (a learner's: the one it dialled last; a leader's: the newest connection, in the
//! learner's dialling order, that brought a FOLLOWERINFO, see `Link`) and reports
//! `Disconnected` only for that one, as the core requires.
//!
//! Time. The peer counts ticks; we tick it `PEER_TICKS_PER_TICK` times per `tickTime`
//! and scale initLimit and syncLimit by the same factor, so the limits mean what they
//! mean in ZooKeeper while pings, retries and failure detection run at a tenth of a tick.
//!
//! The log. The sequencer's group-committed log is the peer's log: on the leader the
//! sequencer logs each pass itself and hands the same txns over as a `ClientWrite`; on a
//! learner the peer's `Append`s go to the sequencer to be logged. Either way the sequencer
//! reports `LocalDurable(zxid)`, which this loop turns into the peer's `Durable{write}`
//! (a write is durable once the log is durable through its last zxid).
//!
//! Compaction. The peer's in-memory log starts at a base that is one of this server's
//! snapshot files (`logged_history`). Each time the sequencer's snapshotter reports a
//! snapshot durable (`Input::SnapshotDurable`), the loop compacts the peer's log to the
//! snapshot before it, so the log spans one to two snapshot intervals (snapCount and
//! the snapshot size policy bound it) and a learner a little behind the newest snapshot
//! still gets a DIFF. The base is published on the bridge, and autopurge keeps it.
//!
//! Rejoining. A leader sends DIFF or TRUNC to a learner inside its log and SNAP to one
//! behind its base: the SYNC's snapshot bytes are the base's snapshot file, which the
//! connection's writer thread streams in chunk frames (`peer_wire`), so reading it
//! delays nothing else; a missing file closes that learner's connection (it retries).
//! A learner's reader thread writes the chunks as they arrive to
//! `snapshot.<zxid>.<conn>.recv` in dataDir (`peer_wire::FileSink`), then datasyncs
//! and checks that file completely (`snapshot::validate_file`: CRCs, structure,
//! digest, zxid) before the peer sees the SYNC, whose snapshot bytes are then only the
//! file's name; a bad one is removed and closes the connection, so the learner goes
//! back to looking.
//! Changing the log's files (a TRUNC below what this server logged, or installing a
//! SNAP over a different log) first stops the sequencer's log writer and waits for
//! every write in flight (`ToSeqRepl::Quiesce`), then cuts the log
//! (`truncate_and_restart`) or renames the received snapshot into place and removes
//! the log (`install_and_restart`), then restarts the process in place: recovery
//! rebuilds the tree, and the server rejoins by DIFF.

use super::bridge::{ReplBridge, ToSeqRepl};
use super::election::{self, Elected};
use super::peer_wire::{self, MAX_QUORUM_FRAME, QUORUM_MAGIC};
use super::stats::{ServerState, MODE_FOLLOWER, MODE_LEADER, MODE_LOOKING, MODE_OBSERVER};
use crate::zab::msg::{Msg, SyncMode};
use crate::zab::peer::{self, EpochKind, Peer, Persisted};
use crate::zab::{Ensemble, ServerId, Zxid};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Peer ticks per `tickTime` (see the module header).
pub const PEER_TICKS_PER_TICK: u64 = 10;
/// Messages queued for one connection's writer. A follower this far behind is not
/// keeping up; its connection is closed and it resyncs (ZooKeeper's learner queue is
/// unbounded and lets a slow follower exhaust the leader's heap).
const QUORUM_SEND_QUEUE: usize = 4096;
/// How long a learner waits for a connection to the leader per attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Attempts to reach the leader before the connection counts as broken. The elected
/// leader may not listen yet (it is still deciding); ZooKeeper's learner retries 5 times
/// a second apart, we retry faster because the election here decides in 200 ms.
const CONNECT_ATTEMPTS: u32 = 20;
const CONNECT_RETRY: Duration = Duration::from_millis(50);
/// A write that takes longer means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a TRUNC or SNAP waits for the sequencer's log writer to finish its queued
/// and in-flight writes: at most `LogConfig::queue_batches` batches, group-committed in
/// a few large writes, seconds at worst; a log stuck for a minute is a failing disk, and
/// stopping (a supervisor restarts the server) is better than cutting files under a
/// write.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(60);
/// Events the loop handles before reading its channel again: the actions of one step can
/// produce follow-up events (a durable log write, a persisted epoch); they are bounded
/// because every follow-up answers an action of the step before, and a step emits few.
const MAX_FOLLOW_UPS: usize = 1 << 16;
/// The accepted and current epoch files, named as ZooKeeper names them in dataDir.
pub const ACCEPTED_EPOCH_FILE: &str = "acceptedEpoch";
pub const CURRENT_EPOCH_FILE: &str = "currentEpoch";

/// One member's addresses.
#[derive(Debug, Clone)]
pub struct Member {
    pub quorum: SocketAddr,
    pub election: SocketAddr,
}

/// What the replication loop needs from zoo.cfg.
#[derive(Debug, Clone)]
pub struct ReplConfig {
    pub my_id: ServerId,
    pub ensemble: Ensemble,
    /// Every member, this server included.
    pub members: BTreeMap<ServerId, Member>,
    pub data_dir: PathBuf,
    /// dataLogDir: the log the peer starts from, and cuts on TRUNC.
    pub log_dir: PathBuf,
    pub tick_ms: u64,
    pub init_limit: u64,
    pub sync_limit: u64,
    /// The last zxid recovered from this server's data directory.
    pub recovered_zxid: Zxid,
    /// The snapshot recovery loaded (`None`: it replayed from the empty tree).
    pub snapshot_zxid: Option<Zxid>,
}

/// Everything that reaches the loop.
#[derive(Debug)]
pub enum Input {
    Elected(Elected),
    /// A learner's connection was accepted (leader side).
    Accepted {
        link: Link,
    },
    Message {
        conn: u64,
        from: ServerId,
        msg: Msg,
    },
    Closed {
        conn: u64,
        from: ServerId,
    },
    /// Leader's sequencer: one pass's txns, encoded, with zxids from `first_zxid` on.
    ClientWrite {
        first_zxid: Zxid,
        payloads: Vec<bytes::Bytes>,
    },
    /// The sequencer's log is durable through this zxid.
    LocalDurable(Zxid),
    /// The snapshotter made the snapshot of this (committed) zxid durable.
    SnapshotDurable(Zxid),
    /// Learner's sequencer: requests for the leader (`forward::Fwd`, encoded).
    Forward(Vec<bytes::Bytes>),
    /// Leader's sequencer: an answer for learner `to` (`forward::Answer`, encoded).
    Reply {
        to: ServerId,
        payload: bytes::Bytes,
    },
}

impl From<Elected> for Input {
    fn from(e: Elected) -> Input {
        Input::Elected(e)
    }
}

/// One quorum connection as the loop sees it: its number, its peer, its writer's queue
/// and a handle to shut it down.
///
/// Numbers are taken from one counter. The accept thread takes one per connection after
/// its hello, in the order the connections were accepted; for connections from one
/// learner that is the order the learner dialled them, because a dialled link that is
/// dropped before its connection is made never sends a hello (`superseded`).
#[derive(Debug)]
pub struct Link {
    conn: u64,
    out: SyncSender<Msg>,
    stream: Option<TcpStream>,
    /// Set when the loop drops the link: a writer still dialling gives up.
    superseded: Arc<AtomicBool>,
}

impl Link {
    fn new(conn: u64, stream: Option<TcpStream>) -> (Link, Receiver<Msg>) {
        let (out, rx) = mpsc::sync_channel::<Msg>(QUORUM_SEND_QUEUE);
        let link = Link {
            conn,
            out,
            stream,
            superseded: Arc::default(),
        };
        (link, rx)
    }

    fn close(&self) {
        if let Some(s) = &self.stream {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.superseded.store(true, Ordering::Release);
        self.close();
    }
}

/// Reads an epoch file; a missing file is epoch 0 (a fresh server).
///
/// # Errors
/// When the file exists but cannot be read or does not hold a number.
pub fn read_epoch(dir: &Path, name: &str) -> std::io::Result<u32> {
    match std::fs::read_to_string(dir.join(name)) {
        Ok(s) => s.trim().parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{name}: {e}: {s:?}"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Writes an epoch file durably: temporary file, fsync, rename, fsync of the directory,
/// so that after a crash the file holds either the old epoch or the new one, and the new
/// one only if this returned.
///
/// # Errors
/// Any I/O failure; the caller must not acknowledge the epoch then.
pub fn write_epoch(dir: &Path, name: &str, epoch: u32) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("{epoch}\n").as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// A running replication loop.
pub struct Handle {
    pub quorum_addr: SocketAddr,
    pub election_addr: SocketAddr,
}

/// Binds the quorum and election ports and starts the loop and the election.
///
/// # Errors
/// A port that cannot be bound, or epoch files that cannot be read.
pub fn start(
    cfg: ReplConfig,
    state: Arc<ServerState>,
    bridge: Arc<ReplBridge>,
) -> std::io::Result<Handle> {
    let me = cfg
        .members
        .get(&cfg.my_id)
        .expect("myid is a member")
        .clone();
    let (tx, rx) = mpsc::channel::<Input>();
    bridge.set_replication(tx.clone());
    let listener = TcpListener::bind(me.quorum)?;
    let quorum_addr = listener.local_addr()?;
    let peers: BTreeMap<ServerId, SocketAddr> = cfg
        .members
        .iter()
        .filter(|(id, _)| **id != cfg.my_id)
        .map(|(id, m)| (*id, m.election))
        .collect();
    let election = election::start(
        cfg.my_id,
        cfg.ensemble.clone(),
        me.election,
        peers,
        tx.clone(),
    )?;
    let accepted_epoch = read_epoch(&cfg.data_dir, ACCEPTED_EPOCH_FILE)?;
    let current_epoch = read_epoch(&cfg.data_dir, CURRENT_EPOCH_FILE)?;
    let persisted = Persisted {
        accepted_epoch: accepted_epoch.max(current_epoch),
        current_epoch,
        ..logged_history(&cfg)
    };
    let peer = Peer::new(
        peer::Config {
            my_id: cfg.my_id,
            ensemble: cfg.ensemble.clone(),
            init_limit: cfg.init_limit.max(1) * PEER_TICKS_PER_TICK,
            sync_limit: cfg.sync_limit.max(1) * PEER_TICKS_PER_TICK,
            max_inflight: 100_000,
            broken: Default::default(),
        },
        persisted,
    );
    // A snapshot a crash cut short while it arrived: never read, removed before any
    // connection can receive another.
    match crate::storage::snapshot::remove_received(&crate::storage::OsDisk, &cfg.data_dir) {
        Ok(removed) if !removed.is_empty() => {
            eprintln!("ringkeeper: removed snapshots left half received: {removed:?}")
        }
        Ok(_) => {}
        Err(e) => eprintln!("ringkeeper: cannot remove snapshots left half received: {e}"),
    }
    let conns = Arc::new(std::sync::atomic::AtomicU64::new(1));
    {
        let (tx, conns, my_id) = (tx.clone(), conns.clone(), cfg.my_id);
        let members: Vec<ServerId> = cfg.members.keys().copied().collect();
        let snap_dir = cfg.data_dir.clone();
        std::thread::Builder::new()
            .name("quorum-accept".into())
            .spawn(move || accept_loop(listener, my_id, snap_dir, members, conns, tx))?;
    }
    let election_addr = election.local_addr;
    let recovered_zxid = cfg.recovered_zxid;
    bridge.set_peer_base(peer.log_base());
    eprintln!(
        "ringkeeper: replication log from snapshot {:#x}: {} txns through {:#x}",
        peer.log_base(),
        peer.log().len(),
        peer.last_zxid()
    );
    let newest_snapshot = cfg.snapshot_zxid;
    let mut driver = Driver {
        peer,
        cfg,
        state,
        election: election.input,
        links: BTreeMap::new(),
        unclaimed: HashMap::new(),
        tx,
        conns,
        follow_ups: VecDeque::new(),
        logged_last: recovered_zxid,
        local_durable: recovered_zxid,
        writes: VecDeque::new(),
        bridge,
        applies: Vec::new(),
        own_from: Zxid::MAX,
        lead: None,
        early_infos: Vec::new(),
        learner_counts: None,
        newest_snapshot,
        info_conns: BTreeMap::new(),
    };
    std::thread::Builder::new()
        .name("replication".into())
        .spawn(move || driver.run(rx))?;
    Ok(Handle {
        quorum_addr,
        election_addr,
    })
}

/// The history the peer starts from: a base that is a snapshot file of this server,
/// and the log's txns after it (a leader sends DIFF or TRUNC inside that log, and SNAP
/// of the base to a learner behind it).
///
/// The base is the snapshot before the one recovery loaded when the log still reaches
/// back to it (holds that snapshot's own zxid and every txn after it), as the loop
/// compacts at run time (see `Driver::snapshot_durable`): a learner slightly behind the
/// newest snapshot still gets a DIFF. Otherwise it is the snapshot recovery loaded,
/// whose txns after it recovery has just replayed. Never the whole log: memory is
/// bounded by the snapshot policy from the start. The base counts as committed, as it
/// must: only committed roots are snapshotted.
///
/// Every txn here is already applied to the recovered tree: the driver skips their
/// commits (`applied_at_start`).
fn logged_history(cfg: &ReplConfig) -> Persisted {
    let recovered = cfg.recovered_zxid;
    let loaded = cfg.snapshot_zxid.unwrap_or(0);
    let older = match crate::storage::snapshot::list(&crate::storage::OsDisk, &cfg.data_dir) {
        Ok(v) => v
            .into_iter()
            .map(|(z, _)| z as u64)
            .find(|z| *z < loaded && *z > 0),
        Err(e) => {
            eprintln!("ringkeeper: cannot list the snapshots for replication: {e}");
            None
        }
    };
    if let Some(base) = older {
        // A log that does not reach back is usual (after a purge or a SNAP): the
        // loaded snapshot is the base then.
        if let Ok(log) = logged_after(cfg, base, true) {
            return Persisted {
                snapshot: Some((base, bytes::Bytes::new())),
                log,
                ..Persisted::default()
            };
        }
    }
    if recovered == loaded {
        return Persisted {
            snapshot: Some((loaded, bytes::Bytes::new())),
            ..Persisted::default()
        };
    }
    match logged_after(cfg, loaded, false) {
        Ok(log) => Persisted {
            snapshot: Some((loaded, bytes::Bytes::new())),
            log,
            ..Persisted::default()
        },
        Err(e) => {
            // Recovery read the same log a moment ago, so this is a disk failing now.
            // The tree is at `recovered`: the peer must not claim less. A learner
            // behind it is refused SNAP (no snapshot file of that zxid) until the next
            // snapshot moves the base; it retries meanwhile.
            eprintln!(
                "ringkeeper: cannot read the log for replication ({e}); starting from zxid {recovered:#x}, \
                 which has no snapshot file: learners behind it cannot sync until the next snapshot"
            );
            Persisted {
                snapshot: Some((recovered, bytes::Bytes::new())),
                ..Persisted::default()
            }
        }
    }
}

/// The logged txns after `base` through the recovered zxid, each following the one
/// before (`recovery::follows`). With `holds_base`, the log must also hold `base`
/// itself, which proves that the first txn after it is its successor.
///
/// # Errors
/// A log that does not reach back, has a gap, or does not end at the recovered zxid.
fn logged_after(
    cfg: &ReplConfig,
    base: Zxid,
    holds_base: bool,
) -> Result<Vec<crate::zab::Txn>, String> {
    let reader = crate::storage::LogReader::open(Arc::new(crate::storage::OsDisk), &cfg.log_dir)
        .map_err(|e| e.to_string())?;
    let mut log = Vec::new();
    let mut first = None;
    let mut prev = base as i64;
    let from = if holds_base { base } else { base + 1 };
    reader
        .replay(from as i64, |rec| {
            let z = rec.txn.zxid;
            if first.is_none() {
                first = Some(z);
                if holds_base {
                    return Ok(());
                }
            }
            if !crate::storage::recovery::follows(prev, z) {
                return Err(crate::storage::LogError::Corrupt {
                    file: rec.file.to_path_buf(),
                    offset: rec.offset,
                    expected: format!("a txn after {prev:#x}, found {z:#x}"),
                });
            }
            prev = z;
            let mut b = Vec::new();
            crate::storage::txn_codec::encode_txn(&rec.txn, &mut b);
            log.push(crate::zab::Txn {
                zxid: z as u64,
                payload: b.into(),
            });
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    if holds_base && first != Some(base as i64) {
        return Err(format!("the log does not hold zxid {base:#x}"));
    }
    if prev as u64 != cfg.recovered_zxid {
        return Err(format!(
            "the log after {base:#x} ends at {prev:#x}, recovery at {:#x}",
            cfg.recovered_zxid
        ));
    }
    Ok(log)
}

/// Cuts this server's log back to `to` and starts the server again in the same process
/// (same pid, same arguments): recovery then rebuilds the tree and the log position
/// from the shortened log, and the server rejoins with a DIFF. Restarting is how the
/// tree, the shards' views and the logger all forget the cut txns at once, as ZooKeeper
/// reloads its whole database after a truncation.
///
/// The ZAB core only asks for a TRUNC at or above this server's commit point, so no
/// committed txn is cut.
fn truncate_and_restart(log_dir: &Path, to: Zxid) -> ! {
    match crate::storage::truncate::truncate_log(log_dir, to as i64) {
        Ok(t) => eprintln!(
            "ringkeeper: TRUNC: cut the log back to zxid {to:#x} ({} records, {} segments); restarting to recover from it",
            t.records_cut, t.segments_deleted
        ),
        Err(e) => {
            eprintln!("ringkeeper: FATAL: TRUNC to {to:#x} failed: {e}; stopping");
            std::process::exit(3);
        }
    }
    restart_in_place()
}

fn restart_in_place() -> ! {
    use std::os::unix::process::CommandExt;
    // Every descriptor (rings, sockets, log files) closes on exec, so the restarted
    // server can bind its ports again. CLOSE_RANGE_CLOEXEC marks them all at once.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors of
    // this process; no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        eprintln!(
            "ringkeeper: FATAL: cannot mark descriptors close-on-exec for the restart: {}; stopping",
            std::io::Error::last_os_error()
        );
        std::process::exit(3);
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let e = std::process::Command::new("/proc/self/exe")
        .args(args)
        .exec();
    eprintln!("ringkeeper: FATAL: restart failed: {e}; stopping");
    std::process::exit(3);
}

fn accept_loop(
    listener: TcpListener,
    my_id: ServerId,
    snap_dir: PathBuf,
    members: Vec<ServerId>,
    conns: Arc<std::sync::atomic::AtomicU64>,
    tx: Sender<Input>,
) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(WRITE_TIMEOUT));
        let Ok(from) = peer_wire::read_hello(&mut stream, QUORUM_MAGIC) else {
            continue;
        };
        if from == my_id || !members.contains(&from) {
            continue;
        }
        let _ = stream.set_read_timeout(None);
        let conn = conns.fetch_add(1, Ordering::Relaxed);
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let (link, rx) = Link::new(conn, Some(handle));
        let superseded = link.superseded.clone();
        // Queued before the reader starts: the loop looks the connection's FOLLOWERINFO
        // up among the unclaimed links, and a FOLLOWERINFO that overtook its `Accepted`
        // was dropped (the learner then waited for its next attempt).
        if tx.send(Input::Accepted { link }).is_err() {
            return;
        }
        let dial = Dial::Accepted(stream);
        if let Err(e) = spawn_link(conn, from, dial, rx, superseded, my_id, &snap_dir, &tx) {
            eprintln!("ringkeeper: quorum: cannot serve server {from}: {e}");
            let _ = tx.send(Input::Closed { conn, from });
        }
    }
}

enum Dial {
    Accepted(TcpStream),
    Connect(SocketAddr),
}

/// Starts a connection's writer (which dials first, for an outgoing one) and reader;
/// the writer sends what `rx` (the link's queue) gives it. The writer reads SNAP's
/// snapshot files from `snap_dir`, and the reader receives a SNAP's snapshot there.
#[allow(clippy::too_many_arguments)]
fn spawn_link(
    conn: u64,
    peer: ServerId,
    dial: Dial,
    rx: Receiver<Msg>,
    superseded: Arc<AtomicBool>,
    my_id: ServerId,
    snap_dir: &Path,
    tx: &Sender<Input>,
) -> std::io::Result<()> {
    let (snap_dir, tx) = (snap_dir.to_path_buf(), tx.clone());
    std::thread::Builder::new()
        .name(format!("quorum-{peer}-{conn}"))
        .spawn(move || {
            let stream = match dial {
                Dial::Accepted(s) => Some(s),
                Dial::Connect(addr) => connect(addr, my_id, &superseded),
            };
            let Some(mut stream) = stream else {
                let _ = tx.send(Input::Closed { conn, from: peer });
                return;
            };
            let _ = stream.set_nodelay(true);
            let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
            let reader = stream.try_clone().map(|r| {
                let (tx, snap_dir) = (tx.clone(), snap_dir.clone());
                std::thread::Builder::new()
                    .name(format!("quorum-recv-{peer}-{conn}"))
                    .spawn(move || read_loop(conn, peer, r, snap_dir, tx))
            });
            if !matches!(reader, Ok(Ok(_))) {
                let _ = tx.send(Input::Closed { conn, from: peer });
                return;
            }
            write_loop(&mut stream, rx, peer, &snap_dir);
            // The loop dropped the link or a write failed: closing the socket ends the
            // reader, which reports the connection closed exactly once.
            let _ = stream.shutdown(Shutdown::Both);
        })?;
    Ok(())
}

/// Dials the leader; `None` when every attempt failed or the loop dropped the link
/// meanwhile (the learner dialled again).
///
/// A dropped link's connection never sends its hello, so the leader never numbers it:
/// its handshake, if it completes, completes after the link was dropped, and the
/// leader would number it after the learner's newer connection and take its queued
/// FOLLOWERINFO for the learner's latest (then close the newer one, which the learner
/// counts as losing its leader). Checked after the connection is made: one made before
/// the link was dropped was accepted before the newer one, so the leader numbers it
/// lower and ignores its FOLLOWERINFO (`Driver::input`).
fn connect(addr: SocketAddr, my_id: ServerId, superseded: &AtomicBool) -> Option<TcpStream> {
    for _ in 0..CONNECT_ATTEMPTS {
        if superseded.load(Ordering::Acquire) {
            return None;
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            if superseded.load(Ordering::Acquire) {
                return None;
            }
            if peer_wire::write_hello(&mut s, QUORUM_MAGIC, my_id).is_ok() {
                return Some(s);
            }
        }
        std::thread::sleep(CONNECT_RETRY);
    }
    None
}

fn write_loop(stream: &mut TcpStream, rx: Receiver<Msg>, peer: ServerId, snap_dir: &Path) {
    let mut buf = Vec::new();
    while let Ok(first) = rx.recv() {
        // Everything queued goes out in one write: a batch of PROPOSALs and COMMITs is
        // one syscall, not one per message.
        buf.clear();
        for m in std::iter::once(first).chain(rx.try_iter().take(QUORUM_SEND_QUEUE)) {
            if let Msg::Sync {
                mode: SyncMode::Snap { zxid, .. },
                txns,
                commit_through,
            } = &m
            {
                // The core's snapshot bytes are a handle: the file is the snapshot.
                if stream.write_all(&buf).is_err() {
                    return;
                }
                buf.clear();
                match send_snapshot(stream, snap_dir, *zxid, txns, *commit_through) {
                    Ok(len) => eprintln!(
                        "ringkeeper: SNAP to server {peer}: sent snapshot {zxid:#x} ({len} bytes) and {} txns after it",
                        txns.len()
                    ),
                    Err(SnapSendError::Socket) => return,
                    Err(SnapSendError::File(why)) => {
                        eprintln!(
                            "ringkeeper: SNAP to server {peer}: {why}; closing its connection so that it retries"
                        );
                        return;
                    }
                }
                continue;
            }
            let body = peer_wire::encode_msg(&m);
            buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
            buf.extend_from_slice(&body);
        }
        if stream.write_all(&buf).is_err() {
            return;
        }
    }
}

enum SnapSendError {
    /// The connection failed; its reader reports it.
    Socket,
    /// The snapshot file cannot be read as it was listed.
    File(String),
}

/// Sends a SYNC with the snapshot file of `zxid`: the SYNC frame with the file's length,
/// then the file in chunk frames of [`peer_wire::SNAP_CHUNK`] bytes. The file is read
/// a chunk at a time, so a snapshot of any size costs one chunk of memory here.
fn send_snapshot(
    stream: &mut TcpStream,
    snap_dir: &Path,
    zxid: Zxid,
    txns: &[crate::zab::Txn],
    commit_through: Zxid,
) -> Result<u64, SnapSendError> {
    use std::io::Read;
    let path = snap_dir.join(crate::storage::snapshot::file_name(zxid as i64));
    let file_err = |e: std::io::Error| SnapSendError::File(format!("{}: {e}", path.display()));
    let mut file = std::fs::File::open(&path).map_err(file_err)?;
    let len = file.metadata().map_err(file_err)?.len();
    if len == 0 {
        return Err(SnapSendError::File(format!("{} is empty", path.display())));
    }
    let sync = peer_wire::encode_snap_sync(zxid, len, txns, commit_through);
    peer_wire::write_frame(stream, &sync).map_err(|_| SnapSendError::Socket)?;
    let mut chunk = vec![0u8; peer_wire::SNAP_CHUNK];
    let mut offset = 0u64;
    // Bounded by the file's length: each round sends at least one byte or fails.
    while offset < len {
        let n = (len - offset).min(peer_wire::SNAP_CHUNK as u64) as usize;
        file.read_exact(&mut chunk[..n]).map_err(file_err)?;
        let frame = peer_wire::encode_snap_chunk(offset, &chunk[..n]);
        peer_wire::write_frame(stream, &frame).map_err(|_| SnapSendError::Socket)?;
        offset += n as u64;
    }
    Ok(len)
}

/// Reads a connection's messages. A SNAP's snapshot goes to `snap_dir` as it arrives
/// (`peer_wire::FileSink`) and is checked completely there, off the replication loop,
/// before the peer sees the SYNC: a bad one ends the connection, nothing installed.
fn read_loop(
    conn: u64,
    from: ServerId,
    mut stream: TcpStream,
    snap_dir: PathBuf,
    tx: Sender<Input>,
) {
    let mut r = std::io::BufReader::new(&mut stream);
    let sink = peer_wire::FileSink::new(Arc::new(crate::storage::OsDisk), snap_dir, from, conn);
    let mut frames = peer_wire::MsgAssembler::new(sink);
    loop {
        let body = match peer_wire::read_frame(&mut r, MAX_QUORUM_FRAME) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                eprintln!(
                    "ringkeeper: protocol error from server {from}: {e}; closing the connection"
                );
                break;
            }
            Err(_) => break,
        };
        let msg = match frames.push(&body) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(what) => {
                eprintln!(
                    "ringkeeper: protocol error from server {from}: {what}; closing the connection"
                );
                break;
            }
        };
        if tx.send(Input::Message { conn, from, msg }).is_err() {
            return;
        }
    }
    let _ = r.get_mut().shutdown(Shutdown::Both);
    let _ = tx.send(Input::Closed { conn, from });
}

struct Driver {
    peer: Peer,
    cfg: ReplConfig,
    state: Arc<ServerState>,
    election: Sender<election::Input>,
    /// The current connection per peer.
    links: BTreeMap<ServerId, Link>,
    /// Accepted connections whose FOLLOWERINFO has not arrived yet.
    unclaimed: HashMap<u64, Link>,
    tx: Sender<Input>,
    conns: Arc<std::sync::atomic::AtomicU64>,
    follow_ups: VecDeque<peer::Event>,
    /// The last zxid handed to the sequencer's log (or recovered from it).
    logged_last: Zxid,
    /// The sequencer's log is durable through this zxid.
    local_durable: Zxid,
    /// Log writes of the peer not yet durable: (write, its last zxid), in order.
    writes: VecDeque<(u64, Zxid)>,
    bridge: Arc<ReplBridge>,
    /// Committed txns the sequencer must apply (history it did not make), this step.
    applies: Vec<crate::txn::Txn>,
    /// Leading: the first zxid of our epoch; committed txns below it are history.
    own_from: Zxid,
    /// Established in this step: tell the sequencer after the history's applies.
    lead: Option<u32>,
    /// FOLLOWERINFOs that arrived while this server was still electing, replayed if it
    /// is elected (one per learner, on its current connection). At most one per member.
    early_infos: Vec<(ServerId, u64, Msg)>,
    /// What `publish_learner_counts` last published.
    learner_counts: Option<peer::LearnerCounts>,
    /// The newest durable snapshot of this server: the next compaction's point.
    newest_snapshot: Option<Zxid>,
    /// Per member, the newest connection that brought us a FOLLOWERINFO: one from an
    /// older connection is stale. At most one entry per member.
    info_conns: BTreeMap<ServerId, u64>,
}

impl Driver {
    fn run(&mut self, rx: Receiver<Input>) {
        let tick = Duration::from_millis((self.cfg.tick_ms / PEER_TICKS_PER_TICK).max(1));
        self.start_looking("start");
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(input) => self.input(input),
                Err(RecvTimeoutError::Timeout) => {
                    next_tick += tick;
                    self.step(peer::Event::Tick);
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Elected(e) => {
                let lead = e.leader == self.cfg.my_id;
                let event = if lead {
                    peer::Event::Lead
                } else {
                    peer::Event::Follow { leader: e.leader }
                };
                self.step(event);
                // Learners that finished the election first already said FOLLOWERINFO.
                for (from, conn, msg) in std::mem::take(&mut self.early_infos) {
                    if lead && self.links.get(&from).is_some_and(|l| l.conn == conn) {
                        self.step(peer::Event::Message { from, msg });
                    }
                }
            }
            Input::Accepted { link } => {
                self.unclaimed.insert(link.conn, link);
            }
            Input::Message { conn, from, msg } => {
                if matches!(msg, Msg::FollowerInfo { .. }) {
                    // This connection becomes the learner's current one; the old one, if
                    // any, is closed without a Disconnected (the core already forgot it
                    // on the new FOLLOWERINFO).
                    let Some(link) = self.unclaimed.remove(&conn) else {
                        return;
                    };
                    // Unless the learner has dialled since: each connection has its own
                    // reader thread, so a FOLLOWERINFO can reach us after the one of the
                    // learner's next connection. Taking it would close the connection
                    // the learner uses, and the learner would go looking ("leader
                    // connection lost"); this one, dropping here, it has closed already.
                    // Numbers follow the learner's dialling order (`Link`).
                    let newest = self.info_conns.entry(from).or_insert(conn);
                    if conn < *newest {
                        return;
                    }
                    *newest = conn;
                    self.links.insert(from, link);
                    if self.peer.is_looking() {
                        // A learner that concluded the election before us: the core
                        // ignores messages while looking, and dropping this one would
                        // leave the learner waiting for LEADERINFO until initLimit, and
                        // our own initLimit would send everyone back to the election,
                        // over and over (seen with 3 and 5 servers after a leader kill).
                        self.early_infos.retain(|(id, _, _)| *id != from);
                        self.early_infos.push((from, conn, msg));
                        return;
                    }
                }
                if self.links.get(&from).is_some_and(|l| l.conn == conn) {
                    self.step(peer::Event::Message { from, msg });
                }
            }
            Input::Closed { conn, from } => {
                self.unclaimed.remove(&conn);
                if self.links.get(&from).is_some_and(|l| l.conn == conn) {
                    self.links.remove(&from);
                    self.step(peer::Event::Disconnected { peer: from });
                }
            }
            Input::ClientWrite {
                first_zxid,
                payloads,
            } => {
                // Passes of an epoch we no longer lead are dropped: the sequencer has
                // been told (Looking) and answers them itself.
                if self.peer.established_epoch() != Some(crate::zab::epoch_of(first_zxid)) {
                    return;
                }
                let (epoch, last) = (crate::zab::epoch_of(first_zxid), self.peer.last_zxid());
                let next = if crate::zab::epoch_of(last) == epoch {
                    last + 1
                } else {
                    crate::zab::make_zxid(epoch, 1)
                };
                assert_eq!(
                    first_zxid, next,
                    "sequencer and peer disagree on the next zxid"
                );
                let txns = payloads
                    .into_iter()
                    .zip(first_zxid..)
                    .map(|(payload, zxid)| crate::zab::Txn { zxid, payload })
                    .collect();
                self.step(peer::Event::Propose(txns));
            }
            // What the peer rejects (not up to date any more) is answered by the
            // sequencer when it hears `Looking`, which is on its way.
            Input::Forward(payloads) => self.step(peer::Event::Forward(payloads)),
            Input::Reply { to, payload } => self.step(peer::Event::Reply { to, payload }),
            Input::SnapshotDurable(z) => self.snapshot_durable(z),
            Input::LocalDurable(z) => {
                self.local_durable = self.local_durable.max(z);
                self.release_durable_later();
                if let Some(event) = self.follow_ups.pop_front() {
                    self.step(event);
                }
            }
        }
    }

    /// A snapshot of `zxid` is durable: compacts the peer's log to the snapshot before
    /// it (the previous durable one), so the log keeps one to two snapshot intervals of
    /// txns. Compacting to the newest instead would bound memory tighter but send a SNAP
    /// to a learner only slightly behind; keeping more would grow memory with no bound
    /// that snapCount sets. The base is always the newest or the second newest snapshot
    /// file, which autopurge (keeping at least 3) keeps; it is also published so that
    /// purge keeps it explicitly.
    ///
    /// The core ignores a point that is not committed and durable in its log (e.g. a
    /// learner still syncing): the base then stays, and the next snapshot tries again.
    fn snapshot_durable(&mut self, zxid: Zxid) {
        let previous = self.newest_snapshot;
        if previous.is_some_and(|p| p >= zxid) {
            // Committed roots only grow; a snapshot of the same root again changes nothing.
            return;
        }
        self.newest_snapshot = Some(zxid);
        let Some(through) = previous.filter(|p| *p > self.peer.log_base()) else {
            return;
        };
        let before = self.peer.log_base();
        self.step(peer::Event::Compact {
            through,
            snapshot: bytes::Bytes::new(),
        });
        let base = self.peer.log_base();
        if base != before {
            assert_eq!(base, through, "compacted to another point");
            self.bridge.set_peer_base(base);
            eprintln!(
                "ringkeeper: replication log compacted to snapshot {base:#x}: {} txns kept, through {:#x}",
                self.peer.log().len(),
                self.peer.last_zxid()
            );
        }
    }

    /// Stops the sequencer's log writer and waits until every log write queued or in
    /// flight has completed (`ToSeqRepl::Quiesce`), so that the log's files can change
    /// under nobody. Only a restart follows: the sequencer does nothing more.
    fn quiesce_log(&self, why: &str) {
        let (done, rx) = mpsc::channel();
        self.bridge.to_sequencer(ToSeqRepl::Quiesce { done });
        if let Err(e) = rx.recv_timeout(QUIESCE_TIMEOUT) {
            eprintln!(
                "ringkeeper: FATAL: {why}: the log writer did not stop within {QUIESCE_TIMEOUT:?} ({e}); stopping"
            );
            std::process::exit(3);
        }
    }

    /// Installs a leader's snapshot of `zxid`, which the connection's reader received
    /// and checked as `received` (a file name in dataDir), over this server's different
    /// history and restarts in place: recovery loads it, the peer starts with it as
    /// base, and the leader sends a DIFF.
    fn install_and_restart(&self, zxid: Zxid, received: &[u8]) -> ! {
        self.quiesce_log("SNAP");
        let received = self.received_path(zxid, received);
        match crate::storage::snapshot::install_received(
            &crate::storage::OsDisk,
            &self.cfg.data_dir,
            &self.cfg.log_dir,
            zxid as i64,
            &received,
        ) {
            Ok(done) => eprintln!(
                "ringkeeper: SNAP: installed snapshot {} of zxid {zxid:#x} ({} bytes) over a log ending at {:#x}; \
                 removed {} log segments and {} newer snapshots; restarting to recover from it",
                done.path.display(),
                done.len,
                self.logged_last,
                done.logs_removed.len(),
                done.snapshots_removed.len()
            ),
            Err(e) => {
                eprintln!("ringkeeper: FATAL: SNAP at {zxid:#x}: installing failed: {e}; stopping");
                std::process::exit(3);
            }
        }
        restart_in_place()
    }

    /// The received snapshot file a SNAP's `data` names (`peer_wire::FileSink`).
    ///
    /// # Panics
    /// If `data` is not the name of a `.recv` file of `zxid`: only the reader's sink
    /// makes a SNAP's data on a learner.
    fn received_path(&self, zxid: Zxid, data: &[u8]) -> PathBuf {
        let name = std::str::from_utf8(data).unwrap_or_default();
        assert_eq!(
            crate::storage::snapshot::zxid_of_received_name(name),
            Some(zxid as i64),
            "SNAP at {zxid:#x}: data {data:?} is not the name of its received file"
        );
        self.cfg.data_dir.join(name)
    }

    /// Steps the peer with `event` and carries out its actions, and those of every
    /// follow-up event they cause.
    fn step(&mut self, event: peer::Event) {
        self.follow_ups.push_back(event);
        for _ in 0..MAX_FOLLOW_UPS {
            let Some(event) = self.follow_ups.pop_front() else {
                self.publish_learner_counts();
                return;
            };
            for action in self.peer.step(event) {
                self.execute(action);
            }
            self.flush_to_sequencer();
        }
        panic!("replication: more than {MAX_FOLLOW_UPS} follow-up events in one step");
    }

    /// Tells the four-letter words how many learners an established leader has (`mntr`'s
    /// leader-only keys), when that changed.
    fn publish_learner_counts(&mut self) {
        let counts = self
            .peer
            .learner_counts()
            .filter(|_| self.peer.established_epoch().is_some());
        if counts != self.learner_counts {
            self.learner_counts = counts;
            self.state.set_leading(counts);
        }
    }

    fn execute(&mut self, action: peer::Action) {
        use peer::Action as A;
        match action {
            A::Send { to, msg } => {
                if let Msg::FollowerInfo { .. } = msg {
                    self.dial(to);
                }
                let full = match self.links.get(&to) {
                    Some(l) => matches!(l.out.try_send(msg), Err(TrySendError::Full(_))),
                    None => false,
                };
                if full {
                    // A peer this far behind resyncs on a fresh connection; closing
                    // reports Disconnected through its reader.
                    if let Some(l) = self.links.get(&to) {
                        l.close();
                    }
                }
            }
            A::Append { write, txns } => {
                let last = txns.last().expect("appends are not empty").zxid;
                if self.peer.established_epoch().is_none() {
                    // A learner's proposals: the sequencer logs them.
                    let decoded = txns
                        .iter()
                        .map(|t| self.decode(t.zxid, &t.payload))
                        .collect();
                    self.bridge
                        .to_sequencer(ToSeqRepl::Append { txns: decoded });
                }
                // On the leader the sequencer logged these itself before handing them over.
                self.logged_last = last;
                self.writes.push_back((write, last));
                self.release_durable_later();
            }
            A::Truncate { write, to } => {
                if to < self.logged_last {
                    self.quiesce_log("TRUNC");
                    truncate_and_restart(&self.cfg.log_dir, to);
                }
                self.writes.push_back((write, to));
                self.release_durable_later();
            }
            A::InstallSnapshot { write, zxid, data } => {
                if zxid != self.logged_last {
                    self.install_and_restart(zxid, &data);
                }
                // This server already logged exactly that history: the received copy
                // is not needed (its next SNAP or start would remove it anyway).
                let received = self.received_path(zxid, &data);
                if let Err(e) = std::fs::remove_file(&received) {
                    eprintln!(
                        "ringkeeper: SNAP at {zxid:#x}: cannot remove {}: {e}",
                        received.display()
                    );
                }
                self.writes.push_back((write, zxid));
                self.release_durable_later();
            }
            A::PersistEpoch { kind, epoch } => {
                let name = match kind {
                    EpochKind::Accepted => ACCEPTED_EPOCH_FILE,
                    EpochKind::Current => CURRENT_EPOCH_FILE,
                };
                match write_epoch(&self.cfg.data_dir, name, epoch) {
                    Ok(()) => self
                        .follow_ups
                        .push_back(peer::Event::EpochPersisted { kind, epoch }),
                    // Never acknowledged: the peer waits, and initLimit sends it back to
                    // the election, which retries.
                    Err(e) => eprintln!("ringkeeper: cannot persist {name} {epoch}: {e}"),
                }
            }
            A::Committed { zxid, payload } => {
                if zxid <= self.cfg.recovered_zxid {
                    // Applied at start: recovery replayed the whole log.
                } else if zxid >= self.own_from {
                    // Ours: the sequencer holds its pass and publishes it now.
                    self.bridge.to_sequencer(ToSeqRepl::Committed {
                        through: zxid as i64,
                    });
                } else {
                    let t = self.decode(zxid, &payload);
                    self.applies.push(t);
                }
            }
            A::Established { epoch } => {
                self.own_from = crate::zab::make_zxid(epoch, 1);
                self.lead = Some(epoch);
                let _ = self.election.send(election::Input::Established { epoch });
                self.state.set_mode(MODE_LEADER);
                eprintln!(
                    "ringkeeper: leading epoch {epoch} (last zxid {:#x})",
                    self.peer.last_zxid()
                );
            }
            A::UpToDate { leader, epoch } => {
                let _ = self.election.send(election::Input::Established { epoch });
                self.flush_to_sequencer();
                self.bridge.to_sequencer(ToSeqRepl::Follow);
                let observer = !self.cfg.ensemble.is_voter(self.cfg.my_id);
                self.state.set_mode(if observer {
                    MODE_OBSERVER
                } else {
                    MODE_FOLLOWER
                });
                eprintln!("ringkeeper: following {leader} in epoch {epoch}");
            }
            A::Looking { reason } => self.start_looking(reason),
            A::Rejected { .. } => {}
            A::Forwarded { from, payloads } => self
                .bridge
                .to_sequencer(ToSeqRepl::Forwarded { from, payloads }),
            A::Replied { payload } => self.bridge.to_sequencer(ToSeqRepl::Answer { payload }),
            A::ProtocolError { from, what } => {
                eprintln!("ringkeeper: protocol error from server {from}: {what}")
            }
        }
    }

    fn dial(&mut self, to: ServerId) {
        let Some(m) = self.cfg.members.get(&to) else {
            return;
        };
        let conn = self.conns.fetch_add(1, Ordering::Relaxed);
        let (link, rx) = Link::new(conn, None);
        let (superseded, dial) = (link.superseded.clone(), Dial::Connect(m.quorum));
        // The old link, if any, is dropped here: its writer stops dialling.
        self.links.insert(to, link);
        let (my_id, dir) = (self.cfg.my_id, &self.cfg.data_dir);
        if let Err(e) = spawn_link(conn, to, dial, rx, superseded, my_id, dir, &self.tx) {
            eprintln!("ringkeeper: quorum: cannot dial server {to}: {e}");
            let _ = self.tx.send(Input::Closed { conn, from: to });
        }
    }

    /// Sends this step's applies, then a pending `Lead`, to the sequencer.
    fn flush_to_sequencer(&mut self) {
        if !self.applies.is_empty() {
            let txns = std::mem::take(&mut self.applies);
            self.bridge.to_sequencer(ToSeqRepl::Apply { txns });
        }
        if let Some(epoch) = self.lead.take() {
            self.bridge.to_sequencer(ToSeqRepl::Lead { epoch });
        }
    }

    /// Queues `Durable` for every peer log write the local log now covers; the step
    /// loop delivers it after the current actions (a step must not recurse).
    fn release_durable_later(&mut self) {
        let mut through = None;
        while let Some(&(w, last)) = self.writes.front() {
            if last > self.local_durable {
                break;
            }
            self.writes.pop_front();
            through = Some(w);
        }
        if let Some(write) = through {
            self.follow_ups.push_back(peer::Event::Durable { write });
        }
    }

    /// Decodes a txn payload. The leader encoded it from a txn it applied, so a payload
    /// that does not decode, or names another zxid, is a bug or a lying peer: stop.
    fn decode(&self, zxid: Zxid, payload: &[u8]) -> crate::txn::Txn {
        match crate::storage::txn_codec::decode_txn(payload) {
            Ok(t) if t.zxid as u64 == zxid => t,
            Ok(t) => panic!("payload of zxid {zxid:#x} holds zxid {:#x}", t.zxid),
            Err(e) => panic!("payload of zxid {zxid:#x} does not decode: {e:?}"),
        }
    }

    fn start_looking(&mut self, reason: &str) {
        self.own_from = Zxid::MAX;
        self.lead = None;
        // `writes` is kept: the peer still waits for those log writes (its write ids run
        // on across roles), and the sequencer still logs them. Dropping them left a
        // server that had appended txns not yet durable at a leader's death waiting
        // forever: elected, it never counted its own log durable, and as a learner it
        // never ACKed NEWLEADER, so every later epoch ended at initLimit.
        self.flush_to_sequencer();
        self.bridge.to_sequencer(ToSeqRepl::Looking);
        self.state.set_mode(MODE_LOOKING);
        self.links.clear();
        self.unclaimed.clear();
        self.early_infos.clear();
        let (current_epoch, last_zxid) = self.peer.vote_basis();
        eprintln!(
            "ringkeeper: looking ({reason}); vote basis epoch {current_epoch}, zxid {last_zxid:#x}"
        );
        let _ = self.election.send(election::Input::Start {
            last_zxid,
            current_epoch,
        });
    }
}

#[cfg(test)]
mod tests;
