//! The core loop: shard 0's io_uring loop also drives the sequencer core, its log
//! writes and its peer connections. One write on a leader is shard -> core -> shard on
//! this thread (or one hand-off from another shard), plus the disk and the wire: no
//! logger, replication, reader or writer threads sit on the write path.
//!
//! Why shard 0's thread and not a thread of its own: the core's work per write is a few
//! microseconds, and every hand-off between threads costs a wake-up (a context switch
//! when the other side sleeps). On the core's own shard a request is decoded, sequenced,
//! logged (the O_DIRECT write is submitted on the same ring) and answered without
//! leaving the thread: one session writing one request at a time costs two voluntary
//! context switches per write (waiting for the client, waiting for the disk). New
//! connections go to the shard with the fewest, ties to this one, so a lone client lands
//! here. See docs/write-path.md for the measurements behind this split.
//!
//! Each pass of the loop: the reactor dispatches completions (client bytes to the shard,
//! quorum bytes to the peer links, log writes to the log writer, which reports durability
//! to the core); then `end_pass` hands every shard's requests to the core (as many as
//! `Sequencer::room` allows: the rest wait in the shards' mailboxes), ends the core's
//! pass and carries out its outputs: log batches go to the log writer and their writes
//! onto this ring, peer messages into the links' output, commits onto the commit chain
//! (waking only the shards they concern), and the rest to the threads that own it.
//!
//! Work that blocks on the disk for long stays off this thread: epoch files, TRUNC and
//! SNAP installation, and purges run in order on the storage worker thread; a leader's
//! snapshot for a SNAP is read by a streaming thread; dialling the leader happens on a
//! short-lived thread; snapshots are written by the snapshotter. Each reports back
//! through the loop's inbox, which wakes the loop.

use super::chain::{Chain, ShardSignals, Stages};
use super::driver::{OpsNet, REFUSED_REPORT_INTERVAL};
use super::election;
use super::mailbox::{Mailbox, Wake};
use super::peer_wire::{self, FileSink, MsgAssembler, MAX_QUORUM_FRAME, QUORUM_MAGIC};
use super::replication::{write_epoch, Member, ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE};
use super::shard::Shard;
use super::shard::ToShard;
use super::stats::MODE_STANDALONE;
use super::stats::{
    ServerState, MODE_FOLLOWER, MODE_LEADER, MODE_LOOKING, MODE_OBSERVER, MODE_READ_ONLY,
};
use crate::io::{self, CloseReason, Handler, ListenerId, Ops, Reactor, Status, Token};
use crate::sequencer::msg::{Commit, ConnRef, ToSeq};
use crate::sequencer::{Input, Mode, Output, Sequencer};
use crate::storage::log::{LogWriter, WriteIo, WriteReq};
use crate::storage::snapshot::{self, Snapshotter};
use crate::storage::{Disk, LogConfig, LogEvent, LogPosition};
use crate::tls::{TlsConns, Wire};
use crate::tree::DataTree;
use crate::zab::msg::{Msg, SyncMode as ZabSync};
use crate::zab::peer::EpochKind;
use crate::zab::ServerId;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Rounds of "carry out the outputs, feed what they produced" per pass. Each round
/// answers inputs the previous one caused (a durable log write, an epoch written); a
/// pass needs two or three. The bound turns a feedback loop (a bug) into a panic
/// rather than a hung server.
const MAX_ROUNDS: usize = 64;
/// Unsent bytes on a peer link above which a snapshot being streamed waits: the
/// streaming thread reads ahead at most a few chunks, the socket takes them as the
/// learner reads.
const LINK_SNAP_HIGH: usize = 4 * peer_wire::SNAP_CHUNK;
/// Unsent bytes on a peer link beyond which the peer is not keeping up: the link is
/// closed and the peer resyncs (ZooKeeper's learner queue is unbounded and lets a slow
/// follower exhaust the leader's memory).
const LINK_MAX_UNSENT: usize = 256 << 20;
/// Chunks a snapshot's streaming thread reads ahead of the socket.
const SNAP_READ_AHEAD: usize = 4;
/// How long a learner waits for a connection to the leader per attempt, how often it
/// tries, and how long between attempts. The elected leader may not listen yet (it is
/// still deciding); ZooKeeper's learner retries 5 times a second apart, we retry faster
/// because the election here decides in 200 ms.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const CONNECT_ATTEMPTS: u32 = 20;
const CONNECT_RETRY: Duration = Duration::from_millis(50);

/// What other threads tell the loop (through its inbox, which wakes it).
pub enum LoopMsg {
    Elected(ServerId),
    /// A snapshot is durable: its zxid and its file's length.
    SnapshotDurable(i64, u64),
    /// A learner's dial of `conn` to `to` ended (`None`: every attempt failed).
    Dialed {
        to: ServerId,
        conn: u64,
        stream: Option<TcpStream>,
        /// The TLS session the dial thread opened on it (`sslQuorum`).
        tls: Option<Box<rustls::ClientConnection>>,
    },
    /// A storage job finished.
    Job(JobDone),
    /// A snapshot's streaming thread read more (the links pump at the end of the pass).
    SnapshotRead,
    /// The log writer's segment switch finished on its thread (the pass's end submits
    /// the writes that waited for it).
    LogSwitched,
    /// An operator's leadership command (`rqld`, `ydld`, SIGTERM on a leader).
    Leadership(crate::sequencer::LeadershipCmd),
}

/// Work for the storage worker, run in order.
enum Job {
    Epoch {
        kind: EpochKind,
        epoch: u32,
    },
    /// Cut the log back to `to`; with `rebuild`, recover the tree from what is left.
    Truncate {
        to: i64,
        rebuild: bool,
    },
    /// Install the received snapshot `received` of `zxid`.
    Install {
        zxid: i64,
        received: PathBuf,
    },
    Purge {
        keep: Option<i64>,
    },
}

/// A storage job's outcome.
pub enum JobDone {
    Epoch {
        kind: EpochKind,
        epoch: u32,
        result: std::io::Result<()>,
    },
    Truncated {
        to: i64,
        result: Result<(Option<DataTree>, LogPosition), String>,
    },
    Installed {
        zxid: i64,
        result: Result<DataTree, String>,
    },
    Purged(String),
}

/// The log and snapshot directories and settings.
#[derive(Clone)]
pub struct StorageSetup {
    pub disk: Arc<dyn Disk>,
    pub log: LogConfig,
    /// Where the log resumes (from recovery).
    pub position: LogPosition,
    /// dataDir: snapshots, epoch files.
    pub data_dir: PathBuf,
    /// `autopurge.snapRetainCount`.
    pub snap_retain_count: usize,
    /// `snapshotWriteRate`, in bytes per second (0: no limit).
    pub snapshot_write_rate: u64,
}

/// An ensemble member's network side.
pub struct EnsembleSetup {
    pub my_id: ServerId,
    pub members: BTreeMap<ServerId, Member>,
    pub ensemble: crate::zab::Ensemble,
    /// Where this server writes its dynamic config files (`reconfigEnabled` and a
    /// zoo.cfg to edit); `None` writes nothing.
    pub config_files: Option<crate::dynconfig::Files>,
    /// The config in force at start, as `/zookeeper/config` holds it (`conf`).
    pub membership: String,
    /// `sslQuorum=true`: election and quorum connections speak TLS.
    pub tls: Option<Arc<crate::tls::QuorumTls>>,
}

/// Everything the core loop owns besides shard 0.
pub struct CoreSetup {
    pub seq: Sequencer,
    /// `None`: in memory only (tests): every batch is durable at once.
    pub storage: Option<StorageSetup>,
    pub ensemble: Option<EnsembleSetup>,
    /// Every shard's mailbox to the core (shard 0's included), by shard.
    pub to_core: Vec<Arc<Mailbox<ToSeq>>>,
    /// Every shard's control mailbox, by shard.
    pub to_shards: Vec<Arc<Mailbox<ToShard>>>,
    /// Every shard's chain signals, by shard.
    pub signals: Vec<Arc<ShardSignals>>,
    /// Every shard's waker, by shard (shard 0's is this loop's own).
    pub wakers: Vec<Arc<super::LateWake>>,
    pub chain: Chain,
    pub inbox: Arc<Mailbox<LoopMsg>>,
    pub state: Arc<ServerState>,
    /// The origin of the core's monotonic clock (the core was made at 0).
    pub started: Instant,
    pub tick_ms: i64,
}

// ---- the log on this ring ----

/// The log writer and its writes in flight on this ring.
struct LogSide {
    writer: LogWriter,
    setup: StorageSetup,
    /// Writes in the kernel, by id: the request owns its buffer until completion.
    inflight: HashMap<u64, Flight>,
    /// Log operations not yet handed to the writer, in order: appends wait behind a
    /// TRUNC or SNAP that waits for the writer to drain.
    queue: VecDeque<LogOp>,
    /// A TRUNC or SNAP is with the storage worker.
    barrier: bool,
}

struct Flight {
    req: WriteReq,
    write: Option<i32>,
    sync: Option<i32>,
}

enum LogOp {
    Append(Vec<crate::zab::Txn>),
    Truncate { to: i64, rebuild: bool },
    Install { zxid: i64, received: PathBuf },
}

/// The txns a commit covers (its entries), when it carries any.
fn covering_txns(commit: &Commit) -> Option<u64> {
    let n = commit
        .entries
        .iter()
        .filter(|e| matches!(e, crate::sequencer::msg::Entry::Txn { .. }))
        .count() as u64;
    (n > 0).then_some(n)
}

/// The writer's view of this ring.
struct RingIo<'a> {
    ops: &'a mut Ops,
    inflight: &'a mut HashMap<u64, Flight>,
    metrics: &'a super::metrics::Metrics,
}

impl WriteIo for RingIo<'_> {
    fn submit(&mut self, req: WriteReq) {
        let fd = req
            .fd_file
            .raw_fd()
            .expect("the core loop writes the log to a real file");
        let (id, ptr, len, offset, sync) = (
            req.id,
            req.buf.as_ptr(),
            req.buf.len(),
            req.offset,
            req.datasync,
        );
        self.metrics.log_writes.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .log_records
            .fetch_add(req.records as u64, Ordering::Relaxed);
        self.metrics.zk.sync_batch_size.record(req.records as u64);
        // SAFETY: the buffer is heap memory owned by `req`, which stays in `inflight`
        // (moving the request does not move its heap buffer) until both completions of
        // this id arrive in `on_file`; the file handle in `req` keeps `fd` open as long.
        unsafe { self.ops.write_at(fd, ptr, len, offset, id, sync) };
        self.inflight.insert(
            id,
            Flight {
                req,
                write: None,
                sync: if sync { None } else { Some(0) },
            },
        );
    }

    fn reap(
        &mut self,
        _out: &mut Vec<(
            u64,
            std::io::Result<()>,
            crate::storage::aligned::AlignedBuf,
        )>,
        _block: bool,
    ) {
        unreachable!("completions arrive through Handler::on_file");
    }

    fn wakeable(&self) -> bool {
        true
    }
}

/// Turns a write's or sync's result into an error that says what failed.
fn file_result(res: i32, len: usize, what: &str) -> std::io::Result<()> {
    if res < 0 {
        let e = std::io::Error::from_raw_os_error(-res);
        let hint = match -res {
            libc::ENOSPC => "no space left on the log device",
            libc::EIO => "I/O error on the log device",
            libc::EINVAL => "invalid argument (direct I/O alignment?)",
            libc::ECANCELED => "cancelled after the linked write failed",
            _ => "log write failed",
        };
        return Err(std::io::Error::new(
            e.kind(),
            format!("{what}: {hint}: {e}"),
        ));
    }
    if what == "log write" && res as usize != len {
        // A short O_DIRECT write happens when the device fills mid-write; the tail
        // never reached the disk, so the batch is not durable.
        return Err(std::io::Error::other(format!(
            "short log write: {res} of {len} bytes"
        )));
    }
    Ok(())
}

// ---- peer links on this ring ----

/// One quorum connection.
struct Link {
    /// The connection's number: links of one learner are numbered in its dialling
    /// order, so an older connection's FOLLOWERINFO never displaces a newer one.
    conn: u64,
    /// The server at the other end (`None` until an accepted link's hello arrived).
    peer: Option<ServerId>,
    inbuf: Vec<u8>,
    frames: MsgAssembler<FileSink>,
    /// Frames waiting behind a snapshot being streamed.
    out: VecDeque<OutFrame>,
    /// What the AdminServer's `observers` shows of a learner's link.
    stats: LinkStats,
}

/// A link's counts, as ZooKeeper's `LearnerHandler` keeps them for
/// `getLearnerHandlerInfo`. A frame here is one ZooKeeper packet, except that a
/// PROPOSAL or INFORM frame may carry several txns (the leader batches them).
#[derive(Debug, Clone)]
struct LinkStats {
    /// When the link was made, wall clock ms.
    established_ms: i64,
    packets_received: u64,
    packets_sent: u64,
    /// Client requests the learner forwarded (ZooKeeper's REQUEST packets).
    requests: u64,
    /// The zxid of the last frame queued to the peer that names one (-1: none yet).
    last_zxid: i64,
}

impl LinkStats {
    fn new() -> Self {
        LinkStats {
            established_ms: wall_ms(),
            packets_received: 0,
            packets_sent: 0,
            requests: 0,
            last_zxid: -1,
        }
    }
}

/// The zxid a message to a learner names, if any (ZooKeeper records it as the
/// handler's `lastZxid` when it is positive).
fn msg_zxid(msg: &Msg) -> Option<i64> {
    let z = match msg {
        Msg::Propose { txns } | Msg::Inform { txns } => txns.last()?.zxid,
        Msg::Commit { through } => *through,
        _ => return None,
    };
    Some(z as i64).filter(|z| *z > 0)
}

enum OutFrame {
    Bytes(bytes::Bytes),
    /// A snapshot's frames from its streaming thread.
    Snapshot(mpsc::Receiver<Result<Vec<u8>, String>>),
}

/// A learner's link to the leader that is still being dialled.
struct Dialing {
    conn: u64,
    superseded: Arc<AtomicBool>,
    queued: Vec<OutFrame>,
}

/// Every quorum connection of this server.
struct Links {
    my_id: ServerId,
    members: BTreeMap<ServerId, Member>,
    listener: ListenerId,
    snap_dir: PathBuf,
    disk: Arc<dyn Disk>,
    next_conn: u64,
    by_token: HashMap<Token, Link>,
    /// The current link per peer (only its messages reach the core, and only its loss
    /// is reported).
    current: BTreeMap<ServerId, Token>,
    dialing: BTreeMap<ServerId, Dialing>,
    /// Per member, the newest connection that brought a FOLLOWERINFO.
    info_conns: BTreeMap<ServerId, u64>,
    /// The last PROPOSAL encoded: (first zxid, last zxid, frame), sent as is to every
    /// follower.
    last_propose: Option<(u64, u64, bytes::Bytes)>,
    /// `sslQuorum`: the TLS configuration, each link's TLS session (the record layer
    /// between the ring's buffers and the link, as for clients), and the sessions dial
    /// threads opened, until their sockets are adopted.
    tls_cfg: Option<Arc<crate::tls::QuorumTls>>,
    tls: HashMap<Token, rustls::Connection>,
    dialed_tls: HashMap<(ServerId, u64), Box<rustls::ClientConnection>>,
}

/// Queues bytes on a link: encrypted first when the link speaks TLS.
fn link_send(tls: &mut HashMap<Token, rustls::Connection>, ops: &mut Ops, token: Token, b: &[u8]) {
    let Some(c) = tls.get_mut(&token) else {
        ops.send(token, b);
        return;
    };
    let _ = std::io::Write::write_all(&mut c.writer(), b);
    let mut out = Vec::with_capacity(b.len() + 64);
    while c.wants_write() {
        if c.write_tls(&mut out).is_err() {
            break;
        }
    }
    ops.send(token, &out);
}

/// Decrypts bytes received on a TLS link (sending any records the session owes the
/// peer); `Err` with rustls' reason when the session failed.
fn link_receive(
    tls: &mut HashMap<Token, rustls::Connection>,
    ops: &mut Ops,
    token: Token,
    data: &[u8],
) -> Result<Option<Vec<u8>>, String> {
    let Some(c) = tls.get_mut(&token) else {
        return Ok(None);
    };
    let mut plain = Vec::new();
    let mut rd = data;
    let mut out = Vec::new();
    let r = (|| {
        while !rd.is_empty() {
            c.read_tls(&mut rd).map_err(|e| e.to_string())?;
            let st = c.process_new_packets().map_err(|e| e.to_string())?;
            let n = st.plaintext_bytes_to_read();
            if n > 0 {
                let at = plain.len();
                plain.resize(at + n, 0);
                std::io::Read::read_exact(&mut c.reader(), &mut plain[at..])
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })();
    while c.wants_write() {
        if c.write_tls(&mut out).is_err() {
            break;
        }
    }
    if !out.is_empty() {
        ops.send(token, &out);
    }
    r.map(|()| Some(plain))
}

fn frame_bytes(body: &[u8]) -> bytes::Bytes {
    let mut b = Vec::with_capacity(4 + body.len());
    b.extend_from_slice(&(body.len() as u32).to_be_bytes());
    b.extend_from_slice(body);
    b.into()
}

impl Links {
    fn is_link(&self, token: Token) -> bool {
        self.by_token.contains_key(&token)
    }

    fn accepted(&mut self, token: Token) -> bool {
        if let Some(cfg) = &self.tls_cfg {
            match rustls::ServerConnection::new(cfg.server()) {
                Ok(c) => {
                    self.tls.insert(token, rustls::Connection::Server(c));
                }
                Err(e) => {
                    eprintln!("ringkeeper: quorum: cannot start TLS: {e}");
                    return false;
                }
            }
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        self.by_token.insert(
            token,
            Link {
                conn,
                peer: None,
                inbuf: Vec::new(),
                frames: MsgAssembler::new(FileSink::new(
                    self.disk.clone(),
                    self.snap_dir.clone(),
                    0,
                    conn,
                )),
                out: VecDeque::new(),
                stats: LinkStats::new(),
            },
        );
        true
    }

    /// Bytes on a link: whole messages for the core, in order. Returns false when the
    /// link must close (a protocol error, which it logs).
    fn data(&mut self, token: Token, bytes: &[u8], msgs: &mut Vec<(ServerId, Msg)>) -> bool {
        let Some(link) = self.by_token.get_mut(&token) else {
            return true;
        };
        link.inbuf.extend_from_slice(bytes);
        let mut at = 0;
        if link.peer.is_none() {
            if link.inbuf.len() < 12 {
                return true;
            }
            let from = match peer_wire::read_hello(&mut &link.inbuf[..12], QUORUM_MAGIC) {
                Ok(id) => id,
                Err(e) => {
                    eprintln!("ringkeeper: quorum: refusing a connection: {e}");
                    return false;
                }
            };
            if from == self.my_id || !self.members.contains_key(&from) {
                eprintln!("ringkeeper: quorum: refusing a connection from unknown server {from}");
                return false;
            }
            link.peer = Some(from);
            link.frames = MsgAssembler::new(FileSink::new(
                self.disk.clone(),
                self.snap_dir.clone(),
                from,
                link.conn,
            ));
            at = 12;
        }
        let from = link.peer.expect("hello read");
        // Bounded by the bytes buffered: each round consumes a frame or stops.
        loop {
            let rest = &link.inbuf[at..];
            if rest.len() < 4 {
                break;
            }
            let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            if len > MAX_QUORUM_FRAME {
                eprintln!(
                    "ringkeeper: protocol error from server {from}: frame of {len} bytes, more than {MAX_QUORUM_FRAME}; closing the connection"
                );
                return false;
            }
            if rest.len() < 4 + len {
                break;
            }
            // One copy of the frame, shared by its payloads (a PROPOSAL's txns).
            let body = bytes::Bytes::copy_from_slice(&rest[4..4 + len]);
            link.stats.packets_received += 1;
            match link.frames.push_shared(&body) {
                Ok(Some(m)) => {
                    if let Msg::Forward { payloads } = &m {
                        link.stats.requests += payloads.len() as u64;
                    }
                    msgs.push((from, m))
                }
                Ok(None) => {}
                Err(what) => {
                    eprintln!(
                        "ringkeeper: protocol error from server {from}: {what}; closing the connection"
                    );
                    return false;
                }
            }
            at += 4 + len;
        }
        link.inbuf.drain(..at);
        true
    }

    /// Whether a message from `token` reaches the core; a FOLLOWERINFO makes its link
    /// the peer's current one (closing the one before, without a loss reported).
    fn admit(&mut self, ops: &mut Ops, token: Token, from: ServerId, msg: &Msg) -> bool {
        let Some(link) = self.by_token.get(&token) else {
            return false;
        };
        let conn = link.conn;
        if matches!(msg, Msg::FollowerInfo { .. }) {
            let newest = self.info_conns.entry(from).or_insert(conn);
            if conn < *newest {
                // The learner has dialled since: this older connection is dead to it.
                return false;
            }
            *newest = conn;
            if let Some(old) = self.current.insert(from, token) {
                if old != token {
                    ops.close(old);
                }
            }
            return true;
        }
        self.current.get(&from) == Some(&token)
    }

    /// A link closed; the peer whose current link it was, if any.
    fn closed(&mut self, token: Token) -> Option<ServerId> {
        self.tls.remove(&token);
        let link = self.by_token.remove(&token)?;
        let from = link.peer?;
        if self.current.get(&from) == Some(&token) {
            self.current.remove(&from);
            return Some(from);
        }
        None
    }

    /// Learner: a fresh connection to `to` (the old one, if any, is dropped without a
    /// loss reported: the core already started over with a FOLLOWERINFO).
    fn dial(&mut self, ops: &mut Ops, to: ServerId, inbox: &Arc<Mailbox<LoopMsg>>) {
        let Some(m) = self.members.get(&to) else {
            return;
        };
        if let Some(old) = self.current.remove(&to) {
            ops.close(old);
        }
        if let Some(d) = self.dialing.remove(&to) {
            d.superseded.store(true, Ordering::Release);
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        let superseded = Arc::new(AtomicBool::new(false));
        self.dialing.insert(
            to,
            Dialing {
                conn,
                superseded: superseded.clone(),
                queued: Vec::new(),
            },
        );
        let (addr, my_id, theirs) = (m.quorum, self.my_id, inbox.clone());
        let tls = self.tls_cfg.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("quorum-dial-{to}"))
            .spawn(move || {
                let (stream, tls) = match connect(addr, my_id, &superseded, tls.as_deref()) {
                    Some((s, t)) => (Some(s), t),
                    None => (None, None),
                };
                theirs.push_unbounded(LoopMsg::Dialed {
                    to,
                    conn,
                    stream,
                    tls,
                });
            });
        if let Err(e) = spawned {
            eprintln!("ringkeeper: quorum: cannot dial server {to}: {e}");
            inbox.push_unbounded(LoopMsg::Dialed {
                to,
                conn,
                stream: None,
                tls: None,
            });
        }
    }

    /// A dial ended: `adopted` is the connection on the ring (or why there is none).
    /// The link becomes the current one, or its loss is reported: `Some(to)` when the
    /// core must hear of it. A dial superseded by a later one is dropped.
    fn dialed(
        &mut self,
        ops: &mut Ops,
        to: ServerId,
        conn: u64,
        adopted: Option<std::io::Result<Token>>,
    ) -> Option<ServerId> {
        let tls = self.dialed_tls.remove(&(to, conn));
        if let (Some(Ok(t)), Some(c)) = (&adopted, tls) {
            self.tls.insert(*t, rustls::Connection::Client(*c));
        }
        if self.dialing.get(&to).map(|d| d.conn) != Some(conn) {
            if let Some(Ok(t)) = adopted {
                ops.abort(t);
            }
            return None;
        }
        let d = self.dialing.remove(&to).expect("checked");
        let token = match adopted {
            None => return Some(to),
            Some(Err(e)) => {
                eprintln!("ringkeeper: quorum: cannot use the connection to server {to}: {e}");
                return Some(to);
            }
            Some(Ok(t)) => t,
        };
        self.by_token.insert(
            token,
            Link {
                conn,
                peer: Some(to),
                inbuf: Vec::new(),
                frames: MsgAssembler::new(FileSink::new(
                    self.disk.clone(),
                    self.snap_dir.clone(),
                    to,
                    conn,
                )),
                out: d.queued.into_iter().collect(),
                stats: LinkStats::new(),
            },
        );
        self.current.insert(to, token);
        self.pump(ops, token);
        None
    }

    /// Queues `msg` for `to` on its current link (or the one being dialled); dropped
    /// without a link (the core's timeouts cover it).
    fn send(&mut self, ops: &mut Ops, to: ServerId, msg: &Msg, inbox: &Arc<Mailbox<LoopMsg>>) {
        let frame = match msg {
            Msg::Sync {
                mode: ZabSync::Snap { zxid, .. },
                txns,
                commit_through,
            } => {
                // The core's snapshot bytes are a handle: the file is the snapshot.
                let (tx, rx) = mpsc::sync_channel(SNAP_READ_AHEAD);
                let path = self.snap_dir.join(snapshot::file_name(*zxid as i64));
                let sync_of = (*zxid, txns.clone(), *commit_through);
                let inbox = inbox.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("snap-send-{to}"))
                    .spawn(move || stream_snapshot(to, &path, sync_of, &tx, &inbox));
                if let Err(e) = spawned {
                    eprintln!("ringkeeper: SNAP to server {to}: cannot start streaming: {e}");
                    return;
                }
                OutFrame::Snapshot(rx)
            }
            Msg::Sync {
                mode: mode @ (ZabSync::Diff | ZabSync::Trunc { .. }),
                txns,
                ..
            } => {
                // One line per learner synced, as the SNAP's: which sync it got is what
                // an operator (and the tests) look for after a restart.
                let what = match mode {
                    ZabSync::Trunc { to } => format!("TRUNC to {to:#x} then"),
                    _ => "DIFF:".to_string(),
                };
                match (txns.first(), txns.last()) {
                    (Some(f), Some(l)) => eprintln!(
                        "ringkeeper: sync of server {to}: {what} {} txns {:#x}..{:#x}",
                        txns.len(),
                        f.zxid,
                        l.zxid
                    ),
                    _ => eprintln!("ringkeeper: sync of server {to}: {what} 0 txns"),
                }
                OutFrame::Bytes(frame_bytes(&peer_wire::encode_msg(msg)))
            }
            Msg::Propose { txns } => {
                let (first, last) = (txns[0].zxid, txns[txns.len() - 1].zxid);
                match &self.last_propose {
                    Some((f, l, b)) if *f == first && *l == last => OutFrame::Bytes(b.clone()),
                    _ => {
                        let b = frame_bytes(&peer_wire::encode_msg(msg));
                        self.last_propose = Some((first, last, b.clone()));
                        OutFrame::Bytes(b)
                    }
                }
            }
            _ => OutFrame::Bytes(frame_bytes(&peer_wire::encode_msg(msg))),
        };
        if let Some(&token) = self.current.get(&to) {
            if let Some(link) = self.by_token.get_mut(&token) {
                link.stats.packets_sent += 1;
                if let Some(z) = msg_zxid(msg) {
                    link.stats.last_zxid = z;
                }
                link.out.push_back(frame);
                self.pump(ops, token);
            }
        } else if let Some(d) = self.dialing.get_mut(&to) {
            d.queued.push(frame);
        }
    }

    /// Moves a link's queued frames into its socket output, up to a snapshot that
    /// waits for its streaming thread.
    fn pump(&mut self, ops: &mut Ops, token: Token) {
        let Some(link) = self.by_token.get_mut(&token) else {
            return;
        };
        // Bounded by the frames queued and the read-ahead of a snapshot.
        while let Some(front) = link.out.front_mut() {
            match front {
                OutFrame::Bytes(b) => {
                    link_send(&mut self.tls, ops, token, b);
                    link.out.pop_front();
                }
                OutFrame::Snapshot(rx) => {
                    if ops.output_len(token).unwrap_or(0) > LINK_SNAP_HIGH {
                        return;
                    }
                    match rx.try_recv() {
                        Ok(Ok(frame)) => {
                            link_send(&mut self.tls, ops, token, &frame);
                        }
                        Ok(Err(why)) => {
                            eprintln!(
                                "ringkeeper: SNAP to server {:?}: {why}; closing its connection so that it retries",
                                link.peer
                            );
                            ops.close(token);
                            link.out.clear();
                            return;
                        }
                        Err(mpsc::TryRecvError::Empty) => return,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            link.out.pop_front();
                        }
                    }
                }
            }
        }
        if ops.output_len(token).unwrap_or(0) > LINK_MAX_UNSENT {
            eprintln!(
                "ringkeeper: quorum: server {:?} is not reading ({} bytes unsent); closing its connection so that it resyncs",
                link.peer,
                ops.output_len(token).unwrap_or(0)
            );
            ops.abort(token);
        }
    }

    /// `observer_connection_stat_reset`: as ZooKeeper's
    /// `LearnerHandler.resetObserverConnectionStats`, zeroes the packet and request
    /// counts of these learners' current links and forgets their last zxid.
    fn reset_stats(&mut self, sids: &[ServerId]) {
        for sid in sids {
            let Some(token) = self.current.get(sid) else {
                continue;
            };
            if let Some(link) = self.by_token.get_mut(token) {
                link.stats = LinkStats {
                    established_ms: link.stats.established_ms,
                    ..LinkStats::new()
                };
            }
        }
    }

    /// The AdminServer's entry for learner `sid`'s current link, if it has one.
    fn learner_info(&self, ops: &Ops, sid: ServerId) -> Option<super::stats::LearnerInfo> {
        let token = *self.current.get(&sid)?;
        let link = self.by_token.get(&token)?;
        let queued: usize = link
            .out
            .iter()
            .map(|f| match f {
                OutFrame::Bytes(b) => b.len(),
                OutFrame::Snapshot(_) => 0,
            })
            .sum();
        Some(super::stats::LearnerInfo {
            remote: ops.peer_addr(token),
            sid,
            established_ms: link.stats.established_ms,
            queued_packets: link.out.len(),
            queued_bytes: queued + ops.output_len(token).unwrap_or(0),
            packets_received: link.stats.packets_received,
            packets_sent: link.stats.packets_sent,
            requests: link.stats.requests,
            last_zxid: link.stats.last_zxid,
        })
    }

    /// Pumps every link with a snapshot streaming (its thread may have read more).
    fn pump_all(&mut self, ops: &mut Ops) {
        let streaming: Vec<Token> = self
            .by_token
            .iter()
            .filter(|(_, l)| l.out.iter().any(|f| matches!(f, OutFrame::Snapshot(_))))
            .map(|(t, _)| *t)
            .collect();
        for t in streaming {
            self.pump(ops, t);
        }
    }

    /// Closes the current link to `peer` (no loss is reported).
    fn drop_peer(&mut self, ops: &mut Ops, peer: ServerId) {
        if let Some(t) = self.current.remove(&peer) {
            ops.close(t);
        }
    }

    /// Closes every link (back to the election): no loss is reported.
    fn close_all(&mut self, ops: &mut Ops) {
        for (&t, _) in self.by_token.iter() {
            ops.close(t);
        }
        self.current.clear();
        for (_, d) in std::mem::take(&mut self.dialing) {
            d.superseded.store(true, Ordering::Release);
        }
    }
}

/// Reads the snapshot file at `path` and sends its SYNC frame, then its chunk frames
/// (all length-prefixed), through `tx`; an error ends the stream.
fn stream_snapshot(
    to: ServerId,
    path: &std::path::Path,
    (zxid, txns, commit_through): (u64, Vec<crate::zab::Txn>, u64),
    tx: &mpsc::SyncSender<Result<Vec<u8>, String>>,
    inbox: &Mailbox<LoopMsg>,
) {
    use std::io::Read;
    // Every frame handed over wakes the loop, which moves it to the socket.
    let send = |frame: Result<Vec<u8>, String>| {
        let ok = tx.send(frame).is_ok();
        inbox.push_unbounded(LoopMsg::SnapshotRead);
        ok
    };
    let fail = |e: std::io::Error| Err(format!("{}: {e}", path.display()));
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            send(fail(e));
            return;
        }
    };
    let len = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            send(fail(e));
            return;
        }
    };
    if len == 0 {
        send(Err(format!("{} is empty", path.display())));
        return;
    }
    let sync = peer_wire::encode_snap_sync(zxid, len, &txns, commit_through);
    if !send(Ok(frame_bytes(&sync).to_vec())) {
        return;
    }
    let mut chunk = vec![0u8; peer_wire::SNAP_CHUNK];
    let mut offset = 0u64;
    // Bounded by the file's length: each round sends at least one byte or stops.
    while offset < len {
        let n = (len - offset).min(peer_wire::SNAP_CHUNK as u64) as usize;
        if let Err(e) = file.read_exact(&mut chunk[..n]) {
            send(fail(e));
            return;
        }
        let frame = frame_bytes(&peer_wire::encode_snap_chunk(offset, &chunk[..n]));
        if !send(Ok(frame.to_vec())) {
            return;
        }
        offset += n as u64;
    }
    eprintln!(
        "ringkeeper: SNAP to server {to}: sent snapshot {zxid:#x} ({len} bytes) and {} txns after it",
        txns.len()
    );
}

/// Dials the leader; `None` when every attempt failed or the loop dialled again
/// meanwhile. A dropped dial never sends its hello, so the leader never numbers it.
/// A connected socket and, with `sslQuorum`, its TLS session.
type Connected = (TcpStream, Option<Box<rustls::ClientConnection>>);

fn connect(
    addr: SocketAddr,
    my_id: ServerId,
    superseded: &AtomicBool,
    tls: Option<&crate::tls::QuorumTls>,
) -> Option<Connected> {
    let mut last_error = None;
    for _ in 0..CONNECT_ATTEMPTS {
        if superseded.load(Ordering::Acquire) {
            return None;
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            if superseded.load(Ordering::Acquire) {
                return None;
            }
            let Some(t) = tls else {
                if peer_wire::write_hello(&mut s, QUORUM_MAGIC, my_id).is_ok() {
                    return Some((s, None));
                }
                std::thread::sleep(CONNECT_RETRY);
                continue;
            };
            // TLS: the handshake and the hello on the blocking socket, bounded by its
            // timeouts; the loop adopts the socket with the session.
            let r = (|| {
                s.set_read_timeout(Some(CONNECT_TIMEOUT * 4))?;
                s.set_write_timeout(Some(CONNECT_TIMEOUT * 4))?;
                let mut c =
                    rustls::ClientConnection::new(t.client(), crate::tls::server_name(addr))
                        .map_err(std::io::Error::other)?;
                crate::tls::handshake(&mut c, &mut s)?;
                peer_wire::write_hello(&mut c.writer(), QUORUM_MAGIC, my_id)?;
                while c.wants_write() {
                    c.write_tls(&mut s)?;
                }
                s.set_read_timeout(None)?;
                s.set_write_timeout(None)?;
                Ok::<_, std::io::Error>(c)
            })();
            match r {
                Ok(c) => return Some((s, Some(Box::new(c)))),
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        eprintln!(
                            "ringkeeper: quorum: TLS handshake with the leader at {addr} failed: {text}"
                        );
                    }
                    last_error = Some(text);
                }
            }
        }
        std::thread::sleep(CONNECT_RETRY);
    }
    None
}

/// Opens the log writer on this loop's ring. Its segment switches run on a thread of
/// their own and wake the loop through the inbox when done: a switch's blocking file
/// operations (header sync, rename, directory sync) on this thread would hold back
/// every proposal, ACK and reply while they last, where only the log's next write has
/// to wait for them (and a leader commits with its followers' ACKs meanwhile).
fn open_log_writer(
    st: &StorageSetup,
    pos: LogPosition,
    inbox: &Arc<Mailbox<LoopMsg>>,
) -> std::io::Result<LogWriter> {
    let mut w = LogWriter::open(st.log.clone(), st.disk.clone(), pos)?;
    // A log whose spare is made inline (a deterministic test) switches inline too.
    if st.log.background_spare {
        let inbox = inbox.clone();
        w.set_switch_notify(Arc::new(move || inbox.push_unbounded(LoopMsg::LogSwitched)));
    }
    Ok(w)
}

// ---- the storage worker ----

/// Runs storage jobs in order on its own thread and reports each to the loop.
struct Worker {
    tx: mpsc::Sender<Job>,
}

impl Worker {
    fn start(
        storage: Option<StorageSetup>,
        inbox: Arc<Mailbox<LoopMsg>>,
    ) -> std::io::Result<Worker> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("rk-storage".into())
            .spawn(move || {
                for job in rx {
                    let done = run_job(storage.as_ref(), job);
                    inbox.push_unbounded(LoopMsg::Job(done));
                }
            })?;
        Ok(Worker { tx })
    }

    fn run(&self, job: Job) {
        self.tx
            .send(job)
            .expect("the storage worker runs as long as the loop");
    }
}

fn run_job(st: Option<&StorageSetup>, job: Job) -> JobDone {
    match job {
        Job::Epoch { kind, epoch } => {
            let name = match kind {
                EpochKind::Accepted => ACCEPTED_EPOCH_FILE,
                EpochKind::Current => CURRENT_EPOCH_FILE,
            };
            let result = match st {
                Some(st) => write_epoch(&st.data_dir, name, epoch),
                None => Ok(()),
            };
            JobDone::Epoch {
                kind,
                epoch,
                result,
            }
        }
        Job::Truncate { to, rebuild } => {
            let Some(st) = st else {
                return JobDone::Truncated {
                    to,
                    result: Err("no data directory to truncate".into()),
                };
            };
            let result = truncate(st, to, rebuild);
            JobDone::Truncated { to, result }
        }
        Job::Install { zxid, received } => {
            let Some(st) = st else {
                return JobDone::Installed {
                    zxid,
                    result: Err("no data directory to install into".into()),
                };
            };
            JobDone::Installed {
                zxid,
                result: install(st, zxid, &received),
            }
        }
        Job::Purge { keep } => {
            let Some(st) = st else {
                return JobDone::Purged("no data directory".into());
            };
            JobDone::Purged(
                match snapshot::purge(
                    &*st.disk,
                    &st.data_dir,
                    &st.log.dir,
                    st.snap_retain_count,
                    keep,
                ) {
                    Ok(r) => format!("autopurge: {r:?}"),
                    Err(e) => format!("autopurge failed: {e}"),
                },
            )
        }
    }
}

/// Cuts the log back to `to` and says where it continues; with `rebuild`, recovers the
/// tree from the snapshots and what is left of the log (ZooKeeper reloads its database
/// after a truncation too), which builds it once.
fn truncate(
    st: &StorageSetup,
    to: i64,
    rebuild: bool,
) -> Result<(Option<DataTree>, LogPosition), String> {
    let t = crate::storage::truncate::truncate_log(&st.log.dir, to)
        .map_err(|e| format!("TRUNC to {to:#x}: {e}"))?;
    eprintln!(
        "ringkeeper: TRUNC: cut the log back to zxid {to:#x} ({} records, {} segments)",
        t.records_cut, t.segments_deleted
    );
    if rebuild {
        let started = Instant::now();
        let opened = crate::storage::open::open(st.disk.clone(), &st.data_dir, &st.log.dir)
            .map_err(|e| format!("recovering after TRUNC to {to:#x}: {e}"))?;
        eprintln!(
            "ringkeeper: TRUNC: rebuilt the tree at zxid {:#x} ({} znodes) in {:.3} s",
            opened.zxid,
            opened.tree.len(),
            started.elapsed().as_secs_f64()
        );
        return Ok((Some(opened.tree), opened.position));
    }
    let reader = crate::storage::LogReader::open(st.disk.clone(), &st.log.dir)
        .map_err(|e| format!("after TRUNC to {to:#x}: {e}"))?;
    let end = reader
        .replay(to, |_| Ok(()))
        .map_err(|e| format!("after TRUNC to {to:#x}: {e}"))?;
    let mut pos = end.position;
    if pos.last_zxid < to {
        pos = LogPosition {
            last_zxid: to,
            tail: None,
        };
    }
    Ok((None, pos))
}

/// Installs a received snapshot: datasyncs it, loads it (every CRC, the digest, the
/// zxid), then makes it the newest state (`snapshot::install_received`). The tree is
/// built once, here.
fn install(st: &StorageSetup, zxid: i64, received: &std::path::Path) -> Result<DataTree, String> {
    let started = Instant::now();
    let checked = (|| {
        std::fs::File::open(received)
            .and_then(|f| f.sync_data())
            .map_err(|e| format!("{}: {e}", received.display()))?;
        let tree = snapshot::load(&*st.disk, received).map_err(|e| e.to_string())?;
        if tree.zxid() != zxid {
            return Err(format!(
                "{}: a snapshot of zxid {:#x}, expected {zxid:#x}",
                received.display(),
                tree.zxid()
            ));
        }
        Ok(tree)
    })();
    let tree = match checked {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_file(received);
            return Err(format!("a bad snapshot ({e}), removed, nothing installed"));
        }
    };
    let done = snapshot::install_received(&*st.disk, &st.data_dir, &st.log.dir, zxid, received)
        .map_err(|e| format!("installing {}: {e}", received.display()))?;
    eprintln!(
        "ringkeeper: SNAP: installed snapshot {} of zxid {zxid:#x} ({} bytes, {} znodes) in {:.3} s; \
         removed {} log segments and {} newer snapshots",
        done.path.display(),
        done.len,
        tree.len(),
        started.elapsed().as_secs_f64(),
        done.logs_removed.len(),
        done.snapshots_removed.len()
    );
    Ok(tree)
}

// ---- the handler ----

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Shard 0 and the core on one ring.
pub struct CoreLoop {
    shard: Shard,
    seq: Sequencer,
    log: Option<LogSide>,
    links: Option<Links>,
    client_listener: ListenerId,
    /// Where `client_listener` listens: a reconfig that gives this server another
    /// client address moves it there (`rebind_to`, carried out between passes).
    client_addr: SocketAddr,
    rebind_to: Option<SocketAddr>,
    /// `secureClientPort`'s listener (TLS only), if any.
    secure_listener: Option<ListenerId>,
    /// How connections on `client_listener` speak: plaintext, or either under
    /// `client.portUnification`.
    client_wire: Wire,
    /// The record layer of this loop's TLS connections (when TLS is configured).
    tls: Option<TlsConns>,
    to_core: Vec<Arc<Mailbox<ToSeq>>>,
    to_shards: Vec<Arc<Mailbox<ToShard>>>,
    signals: Vec<Arc<ShardSignals>>,
    wakers: Vec<Arc<super::LateWake>>,
    chain: Chain,
    inbox: Arc<Mailbox<LoopMsg>>,
    inbox_buf: Vec<LoopMsg>,
    batch: Vec<ToSeq>,
    outputs: Vec<Output>,
    state: Arc<ServerState>,
    snapshotter: Option<Snapshotter>,
    election: Option<election::Handle>,
    worker: Worker,
    stop: Arc<AtomicBool>,
    max_conns_per_ip: usize,
    /// The monotonic origin of the core's clock.
    started: Instant,
    /// The core was given this pass's time.
    timed: bool,
    /// Streams accepted on a listener, waiting to be adopted (peer links dialled).
    to_adopt: Vec<(ServerId, u64, TcpStream)>,
    /// Log events decided outside a completion, fed at the end of the pass.
    log_events: Vec<LogEvent>,
    /// The zxid of the last snapshot the snapshotter took.
    /// Batches handed to the log, oldest first: (last zxid, appended, durable), for the
    /// `logged` and `committed` stages. Bounded by the batches not yet published.
    appends: VecDeque<(i64, Instant, Option<Instant>)>,
    /// When the last quorum-port message was fed to the core: a commit it caused
    /// ended its `replicated` stage then.
    peer_input_at: Option<Instant>,
    /// Operator-facing timers: since when this server is not serving (an election or
    /// a sync), and since when the snapshot in progress was offered.
    looking_since: Option<Instant>,
    snapshot_since: Option<Instant>,
    /// See [`EnsembleSetup::config_files`].
    config_files: Option<crate::dynconfig::Files>,
}

impl CoreLoop {
    fn now_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    /// Feeds one input, giving the core the pass's time first.
    fn input(&mut self, input: Input) {
        self.ensure_time();
        self.seq.step(input);
    }

    fn log_event(&mut self, ev: LogEvent) {
        match ev {
            LogEvent::Durable { through_zxid } => {
                let now = Instant::now();
                let mut first = true;
                for a in self.appends.iter_mut() {
                    if a.0 > through_zxid {
                        break;
                    }
                    if a.2.is_none() && first {
                        // One sample per log write, as ZooKeeper's fsynctime.
                        first = false;
                        let ms = now.saturating_duration_since(a.1).as_millis() as u64;
                        let zk = &self.state.seq.metrics.zk;
                        zk.fsynctime.record(ms);
                        let threshold = self.state.settings.fsync_warning_ms;
                        if ms as i64 > threshold {
                            zk.fsync_threshold_exceed.inc();
                            eprintln!(
                                "ringkeeper: warning: a txn log write (through zxid {through_zxid:#x}) took {ms} ms to be durable, more than fsync.warningthresholdms ({threshold} ms): the writes in it waited as long; see what else uses the log's disk ({})",
                                self.state.settings.conf.data_log_dir
                            );
                        }
                    }
                    a.2.get_or_insert(now);
                }
                self.input(Input::LogDurable {
                    through: through_zxid,
                });
            }
            LogEvent::Failed {
                first_zxid,
                last_zxid,
                error,
            } => {
                self.appends.retain(|a| a.0 < first_zxid);
                self.input(Input::LogFailed {
                    first: first_zxid,
                    last: last_zxid,
                    error: error.to_string(),
                })
            }
        }
    }

    /// Moves queued log operations to the writer (and barriers to the worker) as far
    /// as they may go, and submits the writer's writes on the ring.
    fn pump_log(&mut self, ops: &mut Ops) {
        let Some(l) = &mut self.log else {
            return;
        };
        // Bounded by the queue: each round takes an operation or stops.
        while !l.barrier {
            match l.queue.front() {
                None => break,
                Some(LogOp::Append(_)) => {
                    let Some(LogOp::Append(txns)) = l.queue.pop_front() else {
                        unreachable!()
                    };
                    l.writer.append(txns);
                }
                Some(_) if !l.writer.is_idle() => break,
                Some(_) => {
                    let job = match l.queue.pop_front().expect("front") {
                        LogOp::Truncate { to, rebuild } => Job::Truncate { to, rebuild },
                        LogOp::Install { zxid, received } => Job::Install { zxid, received },
                        LogOp::Append(_) => unreachable!(),
                    };
                    l.barrier = true;
                    self.worker.run(job);
                }
            }
        }
        let mut io = RingIo {
            ops,
            inflight: &mut l.inflight,
            metrics: &self.state.seq.metrics,
        };
        l.writer.submit(&mut io, &mut self.log_events);
        if let Some(at) = l.writer.hold_until() {
            ops.wake_at(at);
        }
    }

    /// Carries out one output of the core.
    fn execute(&mut self, ops: &mut Ops, out: Output) {
        match out {
            Output::Append(txns) => {
                let last = txns.last().expect("appends are not empty").zxid as i64;
                self.appends.push_back((last, Instant::now(), None));
                self.count_appended(&txns);
                match &mut self.log {
                    Some(l) => l.queue.push_back(LogOp::Append(txns)),
                    // In memory only: durable at once.
                    None => self
                        .log_events
                        .push(LogEvent::Durable { through_zxid: last }),
                }
            }
            Output::Truncate { to, rebuild } => match &mut self.log {
                Some(l) => l.queue.push_back(LogOp::Truncate { to, rebuild }),
                None => self.input(Input::Truncated { to, tree: None }),
            },
            Output::InstallSnapshot { zxid, received } => {
                let name = String::from_utf8_lossy(&received).into_owned();
                let ok = snapshot::zxid_of_received_name(&name) == Some(zxid);
                match (&mut self.log, ok) {
                    (Some(l), true) => {
                        let path = l.setup.data_dir.join(&name);
                        l.queue.push_back(LogOp::Install {
                            zxid,
                            received: path,
                        });
                    }
                    _ => self.input(Input::SnapshotInstallFailed {
                        zxid,
                        error: format!("no received snapshot file ({name:?})"),
                    }),
                }
            }
            Output::Dial { to } => {
                if let Some(links) = &mut self.links {
                    links.dial(ops, to, &self.inbox);
                }
            }
            Output::Send { to, msg } => {
                if let Msg::Sync { mode, .. } = &msg {
                    let zk = &self.state.seq.metrics.zk;
                    match mode {
                        ZabSync::Snap { .. } => zk.snap_syncs.inc(),
                        _ => zk.diff_syncs.inc(),
                    }
                }
                if let Some(links) = &mut self.links {
                    links.send(ops, to, &msg, &self.inbox);
                }
            }
            Output::PersistEpoch { kind, epoch } => self.worker.run(Job::Epoch { kind, epoch }),
            Output::Publish(commit) => self.publish(ops, commit),
            Output::Close(conn) => self.close_conn(ops, conn),
            Output::CloseClients => {
                for (i, b) in self.to_shards.iter().enumerate() {
                    if i == 0 {
                        continue;
                    }
                    b.push_unbounded(ToShard::CloseClients);
                }
                self.to_shards[0].push_unbounded(ToShard::CloseClients);
                self.shard.wake(&mut OpsNet(ops, self.tls.as_mut()));
            }
            Output::Snapshot { root, zxid } => self.offer_snapshot(root, zxid),
            Output::Purge { keep } => self.worker.run(Job::Purge { keep }),
            Output::StartElection {
                current_epoch,
                last_zxid,
            } => {
                if let Some(links) = &mut self.links {
                    links.close_all(ops);
                }
                if let Some(e) = &self.election {
                    let _ = e.input.send(election::Input::Start {
                        last_zxid,
                        current_epoch,
                    });
                }
            }
            Output::Established { epoch } => {
                if let Some(e) = &self.election {
                    let _ = e.input.send(election::Input::Established { epoch });
                }
            }
            Output::Mode(m) => self.mode_changed(m),
            Output::Learners(c) => self.state.set_leading(c),
            Output::PeerBase(_) => {}
            Output::Moved { leader, from } => {
                // A hand-off changes the leader without a change of mode here.
                self.publish_leader(Some(leader));
                if let Some(e) = &self.election {
                    let _ = e.input.send(election::Input::Moved { leader });
                }
                let me = self.links.as_ref().map(|l| l.my_id);
                if me == Some(leader) {
                    // The old leader dials us once it sees this link close, after our
                    // TAKEOVER was read.
                    if let Some(links) = &mut self.links {
                        links.drop_peer(ops, from);
                    }
                }
            }
            Output::Health(h) => self.state.set_health(h),
            Output::Log(line) => eprintln!("ringkeeper: {line}"),
            Output::Membership(m) => {
                self.state.set_membership(m.text());
                self.reconfigure_links(&m);
                self.rebind_to = self.moved_client_address(&m);
                // A config file that cannot be written costs the next start its newer
                // config (it starts from the older one and learns the newer from the
                // leader), not the running server: ZooKeeper logs it the same way.
                if let Some(f) = &self.config_files {
                    match f.activate(&m.servers, m.version) {
                        Ok(p) => eprintln!(
                            "ringkeeper: wrote the configuration version {:x} to {}",
                            m.version,
                            p.display()
                        ),
                        Err(e) => eprintln!(
                            "ringkeeper: cannot write the configuration version {:x} next to {}: {e}",
                            m.version,
                            f.config_path.display()
                        ),
                    }
                }
            }
        }
    }

    /// Records the election and unavailability times ZooKeeper reports, and the role.
    fn mode_changed(&mut self, m: Mode) {
        let zk = &self.state.seq.metrics.zk;
        match (m, self.looking_since) {
            (Mode::Looking, None) => {
                zk.looking.inc();
                self.looking_since = Some(Instant::now());
            }
            (Mode::Looking, Some(_)) => {}
            (_, Some(t)) => {
                self.looking_since = None;
                let ms = t.elapsed().as_millis() as u64;
                zk.election_time.record(ms);
                zk.unavailable_time.record(ms);
                match m {
                    Mode::Follower => {
                        zk.leader_unavailable_time.record(ms);
                        zk.follower_sync_time.record(ms);
                    }
                    Mode::Observer => zk.observer_sync_time.record(ms),
                    _ => {}
                }
            }
            (_, None) => {}
        }
        // ZooKeeper sets the leader's id when a server leads or has connected to its
        // leader, and clears it when looking.
        let leader = match m {
            Mode::Leader => self.seq.peer().map(|p| p.my_id()),
            Mode::Follower | Mode::Observer => self.seq.peer().and_then(|p| p.following()),
            Mode::Standalone | Mode::Looking | Mode::ReadOnly => None,
        };
        self.publish_leader(leader);
        self.state.set_mode(match m {
            Mode::Standalone => MODE_STANDALONE,
            Mode::Looking => MODE_LOOKING,
            Mode::Leader => MODE_LEADER,
            Mode::Follower => MODE_FOLLOWER,
            Mode::Observer => MODE_OBSERVER,
            Mode::ReadOnly => MODE_READ_ONLY,
        });
    }

    /// Publishes the leader for the AdminServer: its id and its quorum address's host.
    fn publish_leader(&self, leader: Option<ServerId>) {
        self.state.set_leader(leader.map(|id| {
            let ip = self
                .links
                .as_ref()
                .and_then(|l| l.members.get(&id))
                .map_or(String::new(), |m| m.quorum.ip().to_string());
            (id, ip)
        }));
    }

    /// A new config is in force: the quorum links and the election learn its members'
    /// addresses (host names resolve here, as at start; one that does not resolve
    /// leaves that member unreachable and is logged).
    /// The client address a config in force gives this server, when it is not where
    /// the client listener is (ZooKeeper's `QuorumPeer.processReconfig` reconfigures
    /// its connection factory then). A line without a client address (the port from
    /// `clientPort`) moves nothing.
    fn moved_client_address(&self, m: &crate::sequencer::Membership) -> Option<SocketAddr> {
        let me = self.links.as_ref()?.my_id;
        let client = m.servers.get(&me)?.client.as_ref()?;
        let to = std::net::ToSocketAddrs::to_socket_addrs(&(client.host.as_str(), client.port))
            .ok()
            .and_then(|mut a| a.next());
        match to {
            Some(to) if to != self.client_addr => Some(to),
            Some(_) => None,
            None => {
                eprintln!(
                    "ringkeeper: the new configuration's client address {client} does not \
                     resolve: still serving clients on {}",
                    self.client_addr
                );
                None
            }
        }
    }

    /// Moves the client listener where `rebind_to` says (between passes: it needs the
    /// reactor). Connections accepted on the old address stay, as ZooKeeper's
    /// `NIOServerCnxnFactory.reconfigure` keeps them; if the new address cannot be
    /// bound, the server goes on listening on the old one and says so.
    fn rebind(&mut self, reactor: &mut Reactor) {
        let Some(to) = self.rebind_to.take() else {
            return;
        };
        match reactor.relisten(self.client_listener, to, io::LISTEN_BACKLOG) {
            Ok(bound) => {
                eprintln!(
                    "ringkeeper: serving clients on {bound} (the configuration moved the \
                     client address from {})",
                    self.client_addr
                );
                self.client_addr = bound;
            }
            Err(e) => eprintln!(
                "ringkeeper: cannot listen on {to}, the configuration's client address: {e}; \
                 still serving clients on {}",
                self.client_addr
            ),
        }
    }

    fn reconfigure_links(&mut self, m: &crate::sequencer::Membership) {
        let mut members = BTreeMap::new();
        for (id, s) in &m.servers {
            let resolve = |port: u16| {
                std::net::ToSocketAddrs::to_socket_addrs(&(s.host.as_str(), port))
                    .ok()
                    .and_then(|mut a| a.next())
            };
            match (resolve(s.quorum_port), resolve(s.election_port)) {
                (Some(quorum), Some(election)) => {
                    members.insert(*id, Member { quorum, election });
                }
                _ => eprintln!(
                    "ringkeeper: server.{id}'s host {} does not resolve: it stays unreachable",
                    s.host
                ),
            }
        }
        let Ok(ensemble) = crate::dynconfig::ensemble_of(&m.servers) else {
            return;
        };
        if let Some(links) = &mut self.links {
            let my_id = links.my_id;
            if let Some(e) = &self.election {
                let peers = members
                    .iter()
                    .filter(|(id, _)| **id != my_id)
                    .map(|(id, m)| (*id, m.election))
                    .collect();
                let _ = e
                    .input
                    .send(election::Input::Reconfigure { ensemble, peers });
            }
            links.members = members;
        }
    }

    /// Counts the txns handed to the log: a leader's proposals, a learner's received
    /// proposals, and their sizes.
    fn count_appended(&self, txns: &[crate::zab::Txn]) {
        let zk = &self.state.seq.metrics.zk;
        let counter = match self.state.mode() {
            Some(crate::fourlw::Mode::Leader) => &zk.proposals,
            Some(crate::fourlw::Mode::Follower | crate::fourlw::Mode::Observer) => {
                &zk.learner_proposals_received
            }
            _ => return,
        };
        counter.add(txns.len() as u64);
        if let Some(t) = txns.last() {
            zk.proposal_size.record(t.payload.len() as u64);
        }
    }

    fn close_conn(&mut self, ops: &mut Ops, conn: ConnRef) {
        self.to_shards[conn.shard].push_unbounded(ToShard::Close(conn));
        if conn.shard == 0 {
            self.shard.wake(&mut OpsNet(ops, self.tls.as_mut()));
        } else {
            Wake::wake(&self.wakers[conn.shard]);
        }
    }

    fn publish(&mut self, ops: &mut Ops, commit: Commit) {
        // The write stages of this commit, batch by batch (a pass's own writes are
        // logged as one batch): from each batch's append to durable, from there to the
        // quorum, and from there to now.
        let now = Instant::now();
        let mut batches = Vec::new();
        while let Some(&(last, appended, durable)) =
            self.appends.front().filter(|a| a.0 <= commit.zxid)
        {
            self.appends.pop_front();
            batches.push((last, appended, durable.unwrap_or(now)));
        }
        let m = &self.state.seq.metrics;
        let mut stages = None;
        if !batches.is_empty() && commit.writes > 0 {
            // The quorum's last ack (or the leader's COMMIT) arrived with the last peer
            // message, when that came after the local write; standalone it is at once.
            let st = Stages {
                batches,
                quorum: self.peer_input_at.filter(|t| *t <= now),
            };
            let leader = self.state.mode() == Some(crate::fourlw::Mode::Leader);
            // The commit's writes, shared out newest batch first by the zxids each
            // holds (a batch's session txns counted as writes: close enough for a
            // histogram); the oldest takes what is left.
            let mut left = commit.writes;
            let mut newer = commit.zxid;
            for (i, batch) in st.batches.iter().enumerate().rev() {
                let n = if i == 0 {
                    left
                } else {
                    left.min((newer - batch.0) as u64)
                };
                newer = batch.0;
                left -= n;
                let [appended, durable, quorum] = st.times(batch);
                m.logged.record_n(durable - appended, n);
                m.replicated.record_n(quorum - durable, n);
                m.committed.record_n(now - quorum, n);
                if leader && n > 0 {
                    m.zk.proposal_latency.record(quorum - appended);
                }
            }
            stages = Some(st);
        }
        if let Some(covered) = covering_txns(&commit) {
            match self.state.mode() {
                Some(crate::fourlw::Mode::Leader) => m.zk.commits.add(covered),
                Some(crate::fourlw::Mode::Follower | crate::fourlw::Mode::Observer) => {
                    m.zk.learner_commits_received.add(covered)
                }
                _ => {}
            }
        }
        let zxid = commit.zxid;
        let node = self.chain.append_staged(commit, stages).clone();
        self.state.seq.last_zxid.store(zxid, Ordering::Relaxed);
        self.state.seq.published_zxid.store(zxid, Ordering::Release);
        // The numbers `mntr` shows, from the published state (the shards may hold an
        // older root: they get a newer one when a read needs it).
        self.state
            .publish_counts(&self.seq.committed_counts(), self.seq.committed_zxid());
        for i in 1..self.signals.len() {
            if Chain::should_wake(&node, i, &self.signals[i]) {
                Wake::wake(&self.wakers[i]);
            }
        }
        // This shard reads it now (its answers leave with this pass).
        self.shard.advance(&mut OpsNet(ops, self.tls.as_mut()));
    }

    fn offer_snapshot(&mut self, root: DataTree, zxid: i64) {
        let Some(s) = &self.snapshotter else {
            return;
        };
        match s.try_offer(root, zxid) {
            Ok(()) => self.snapshot_since = Some(Instant::now()),
            Err(busy) => eprintln!("ringkeeper: {}", busy.describe()),
        }
    }

    fn loop_msg(&mut self, ops: &mut Ops, m: LoopMsg) {
        match m {
            LoopMsg::Elected(leader) => self.input(Input::Elected { leader }),
            LoopMsg::SnapshotDurable(zxid, bytes) => {
                if let Some(t) = self.snapshot_since.take() {
                    let zk = &self.state.seq.metrics.zk;
                    zk.snapshottime.record(t.elapsed().as_millis() as u64);
                    zk.snapshots_taken.inc();
                }
                self.input(Input::SnapshotDurable { zxid, bytes })
            }
            LoopMsg::Dialed {
                to,
                conn,
                stream,
                tls,
            } => {
                if let Some(stream) = stream {
                    if let (Some(links), Some(c)) = (&mut self.links, tls) {
                        links.dialed_tls.insert((to, conn), c);
                    }
                    self.to_adopt.push((to, conn, stream));
                } else if let Some(links) = &mut self.links {
                    if let Some(peer) = links.dialed(ops, to, conn, None) {
                        self.input(Input::PeerDisconnected { peer });
                    }
                }
            }
            LoopMsg::Job(done) => self.job_done(done),
            LoopMsg::SnapshotRead | LoopMsg::LogSwitched => {}
            LoopMsg::Leadership(cmd) => self.input(Input::Leadership(cmd)),
        }
    }

    fn job_done(&mut self, done: JobDone) {
        match done {
            JobDone::Epoch {
                kind,
                epoch,
                result,
            } => match result {
                Ok(()) => self.input(Input::EpochPersisted { kind, epoch }),
                // Never acknowledged: the peer waits, and initLimit sends it back to the
                // election, which retries.
                Err(e) => eprintln!("ringkeeper: cannot persist the {kind:?} epoch {epoch}: {e}"),
            },
            JobDone::Truncated { to, result } => {
                let Some(l) = &mut self.log else { return };
                l.barrier = false;
                match result {
                    Ok((tree, pos)) => {
                        match open_log_writer(&l.setup, pos, &self.inbox) {
                            Ok(w) => l.writer = w,
                            Err(e) => {
                                eprintln!("ringkeeper: FATAL: reopening the log after TRUNC: {e}; stopping");
                                std::process::exit(3);
                            }
                        }
                        self.input(Input::Truncated { to, tree });
                    }
                    Err(e) => {
                        // The log's files may be half cut: nothing can be trusted until a
                        // restart recovers from them.
                        eprintln!("ringkeeper: FATAL: {e}; stopping");
                        std::process::exit(3);
                    }
                }
            }
            JobDone::Installed { zxid, result } => {
                let Some(l) = &mut self.log else { return };
                l.barrier = false;
                match result {
                    Ok(tree) => {
                        let pos = LogPosition {
                            last_zxid: zxid,
                            tail: None,
                        };
                        match open_log_writer(&l.setup, pos, &self.inbox) {
                            Ok(w) => l.writer = w,
                            Err(e) => {
                                eprintln!("ringkeeper: FATAL: reopening the log after SNAP: {e}; stopping");
                                std::process::exit(3);
                            }
                        }
                        self.input(Input::SnapshotInstalled { zxid, tree });
                    }
                    Err(error) => self.input(Input::SnapshotInstallFailed { zxid, error }),
                }
            }
            JobDone::Purged(line) => eprintln!("ringkeeper: {line}"),
        }
    }

    /// How a client listener's connections speak; `None` for the quorum listener.
    fn wire_of(&self, l: ListenerId) -> Option<Wire> {
        if l == self.client_listener {
            Some(self.client_wire)
        } else if Some(l) == self.secure_listener {
            Some(Wire::Tls)
        } else {
            None
        }
    }

    /// A dialled connection adopted onto the ring (or why it could not be).
    fn adopted(&mut self, ops: &mut Ops, to: ServerId, conn: u64, r: std::io::Result<Token>) {
        if let Some(links) = &mut self.links {
            if let Some(peer) = links.dialed(ops, to, conn, Some(r)) {
                self.input(Input::PeerDisconnected { peer });
            }
        }
    }

    /// Gives the core the pass's time, once per pass.
    fn ensure_time(&mut self) {
        if !self.timed {
            self.timed = true;
            let (now_ms, wall_ms) = (self.now_ms(), wall_ms());
            self.seq.step(Input::Time { now_ms, wall_ms });
        }
    }

    /// The end of a loop pass (see the module header).
    fn end_pass(&mut self, ops: &mut Ops) {
        self.shard.flush(&mut OpsNet(ops, self.tls.as_mut()));
        // Before this pass applies anything: a root freed here is one its writes need not
        // copy leaves for.
        self.chain.reclaim();
        for round in 0..MAX_ROUNDS {
            // Requests from every shard, as many as the core takes.
            for i in 0..self.to_core.len() {
                let room = self.seq.room();
                if room == 0 {
                    break;
                }
                let mut batch = std::mem::take(&mut self.batch);
                self.to_core[i].drain_up_to(room, &mut batch);
                if !batch.is_empty() {
                    let now = Instant::now();
                    let state = self.state.clone();
                    let m = &state.seq.metrics;
                    for msg in &batch {
                        if let ToSeq::Request { origin, .. } = msg {
                            m.queued
                                .record(now.saturating_duration_since(origin.received));
                        }
                    }
                    let n = batch
                        .iter()
                        .filter(|m| matches!(m, ToSeq::Request { .. }))
                        .count() as u64;
                    m.zk.prep_queued.add(batch.len() as u64);
                    m.zk.prep_queue_size.record(batch.len() as u64);
                    for msg in batch.drain(..) {
                        self.input(Input::Shard(msg));
                    }
                    if n > 0 {
                        m.sequenced.record_n(now.elapsed() / n as u32, n);
                    }
                }
                self.batch = batch;
            }
            for ev in std::mem::take(&mut self.log_events) {
                self.log_event(ev);
            }
            // Even with nothing in, the clock moves the core (expiry, ticks).
            self.ensure_time();
            self.seq.end_pass();
            let mut outs = std::mem::take(&mut self.outputs);
            self.seq.take_outputs(&mut outs);
            let quiet = outs.is_empty();
            for o in outs.drain(..) {
                self.execute(ops, o);
            }
            self.outputs = outs;
            self.pump_log(ops);
            if quiet && self.log_events.is_empty() {
                break;
            }
            assert!(
                round + 1 < MAX_ROUNDS,
                "the core's outputs keep feeding it inputs"
            );
        }
        if let Some(links) = &mut self.links {
            links.pump_all(ops);
        }
        self.timed = false;
        self.state
            .seq
            .sessions
            .store(self.seq.session_count() as i64, Ordering::Relaxed);
        self.state
            .seq
            .local_sessions
            .store(self.seq.local_session_count() as i64, Ordering::Relaxed);
    }
}

impl Handler for CoreLoop {
    /// Places a new client connection on the shard holding the fewest, this one on a
    /// tie: a lone client lands where the core runs (no hand-off per write), and load
    /// spreads evenly (SO_REUSEPORT's hash left 16 connections 10 to 6 at times).
    fn on_accept_stream(
        &mut self,
        _ops: &mut Ops,
        stream: TcpStream,
        _peer: SocketAddr,
        l: ListenerId,
    ) -> Option<TcpStream> {
        let Some(wire) = self.wire_of(l) else {
            return Some(stream);
        };
        let mut best = 0;
        let mut fewest = self.signals[0].conns.load(Ordering::Relaxed);
        for (i, s) in self.signals.iter().enumerate().skip(1) {
            let n = s.conns.load(Ordering::Relaxed);
            if n < fewest {
                (best, fewest) = (i, n);
            }
        }
        // Counted now, so that a burst of accepts before the shard adopts them spreads.
        self.signals[best].conns.fetch_add(1, Ordering::Relaxed);
        if best == 0 {
            return Some(stream);
        }
        self.to_shards[best].push_unbounded(ToShard::Adopt(stream, wire));
        None
    }

    fn on_accept(&mut self, ops: &mut Ops, token: Token, peer: SocketAddr, l: ListenerId) {
        if let Some(wire) = self.wire_of(l) {
            let slot = token.as_u64() as usize;
            if let Err(e) = super::driver::start_tls(self.tls.as_mut(), slot, peer, wire) {
                eprintln!("ringkeeper: closing {peer}: {e}");
                self.signals[0].conns.fetch_sub(1, Ordering::Relaxed);
                ops.abort(token);
                return;
            }
            if !self.shard.accepted(slot, peer, self.max_conns_per_ip) {
                self.signals[0].conns.fetch_sub(1, Ordering::Relaxed);
                ops.abort(token);
            }
            return;
        }
        match &mut self.links {
            Some(links) if l == links.listener => {
                if !links.accepted(token) {
                    ops.abort(token);
                }
            }
            _ => ops.abort(token),
        }
    }

    fn on_data(&mut self, ops: &mut Ops, token: Token, data: &[u8]) {
        let Some(links) = self.links.as_mut().filter(|l| l.is_link(token)) else {
            super::driver::client_data(&mut self.shard, &mut self.tls, ops, token, data);
            return;
        };
        let plain = match link_receive(&mut links.tls, ops, token, data) {
            Ok(p) => p,
            Err(e) => {
                eprintln!(
                    "ringkeeper: quorum: TLS with {:?} failed: {e}; connection dropped",
                    ops.peer_addr(token)
                );
                ops.close(token);
                return;
            }
        };
        let data = plain.as_deref().unwrap_or(data);
        let mut msgs = Vec::new();
        let ok = links.data(token, data, &mut msgs);
        for (from, msg) in msgs {
            let links = self.links.as_mut().expect("links");
            if links.admit(ops, token, from, &msg) {
                self.peer_input_at = Some(Instant::now());
                self.input(Input::PeerMessage { from, msg });
            }
        }
        if !ok {
            ops.close(token);
        }
    }

    fn on_closed(&mut self, _ops: &mut Ops, token: Token, _reason: CloseReason) {
        if let Some(links) = self.links.as_mut().filter(|l| l.is_link(token)) {
            if let Some(peer) = links.closed(token) {
                self.input(Input::PeerDisconnected { peer });
            }
            return;
        }
        if let Some(t) = self.tls.as_mut() {
            t.closed(token.as_u64() as usize);
        }
        self.shard.closed(token.as_u64() as usize);
    }

    fn on_end_of_stream(&mut self, ops: &mut Ops, token: Token) -> bool {
        if self.links.as_ref().is_some_and(|l| l.is_link(token)) {
            return true;
        }
        super::driver::client_end_of_stream(&self.tls, ops, token);
        self.shard.end_of_stream(token.as_u64() as usize)
    }

    fn on_wake(&mut self, ops: &mut Ops) {
        if self.stop.load(Ordering::Acquire) {
            ops.stop();
            return;
        }
        let mut msgs = std::mem::take(&mut self.inbox_buf);
        self.inbox.drain_into(&mut msgs);
        for m in msgs.drain(..) {
            self.loop_msg(ops, m);
        }
        self.inbox_buf = msgs;
        self.shard.wake(&mut OpsNet(ops, self.tls.as_mut()));
    }

    fn on_file(&mut self, _ops: &mut Ops, tag: u64, result: i32) {
        let Some(l) = &mut self.log else {
            panic!("a file completion without a log");
        };
        let (id, is_sync) = (tag & !io::SYNC_TAG, tag & io::SYNC_TAG != 0);
        let f = l
            .inflight
            .get_mut(&id)
            .unwrap_or_else(|| panic!("completion of unknown log write {id}"));
        if is_sync {
            f.sync = Some(result);
        } else {
            f.write = Some(result);
        }
        let (Some(w), Some(s)) = (f.write, f.sync) else {
            return;
        };
        let f = l.inflight.remove(&id).expect("present");
        let len = f.req.buf.len();
        let r =
            file_result(w, len, "log write").and_then(|()| file_result(s, len, "log fdatasync"));
        let mut events = Vec::new();
        l.writer.completed(id, r, f.req.buf, &mut events);
        for ev in events {
            self.log_event(ev);
        }
    }

    fn on_tick(&mut self, ops: &mut Ops) {
        self.shard.tick(&mut OpsNet(ops, self.tls.as_mut()));
        // The leader's synced observers for the AdminServer's `observers`, once a tick
        // (a lock and a few entries, only while leading with observers).
        let observers = self
            .seq
            .peer()
            .map_or_else(Vec::new, |p| p.synced_observers());
        if self.state.take_observer_reset() {
            if let Some(l) = &mut self.links {
                l.reset_stats(&observers);
            }
        }
        if !observers.is_empty() || self.state.has_observers() {
            let infos = match &self.links {
                Some(l) => observers
                    .iter()
                    .filter_map(|sid| l.learner_info(ops, *sid))
                    .collect(),
                None => Vec::new(),
            };
            self.state.set_observers(infos);
        }
        // Bucket times are on the core's monotonic clock; `dump` prints wall clock.
        let offset = wall_ms() - self.now_ms();
        self.state
            .seq
            .metrics
            .zk
            .sessions_expired
            .store(self.seq.expired_total(), Ordering::Relaxed);
        *self.state.seq.expiry.lock().expect("expiry poisoned") = self
            .seq
            .expiry()
            .into_iter()
            .map(|(at, ids)| (at + offset, ids))
            .collect();
        *self
            .state
            .seq
            .local_expiry
            .lock()
            .expect("local expiry poisoned") = self.seq.local_expiry().map(|sets| {
            sets.into_iter()
                .map(|(at, ids)| (at + offset, ids))
                .collect()
        });
    }
}

/// The addresses the core loop bound: clients, the quorum and election ports of an
/// ensemble member, and the TLS client port.
pub type Bound = (
    SocketAddr,
    Option<SocketAddr>,
    Option<SocketAddr>,
    Option<SocketAddr>,
);

/// Starts the core loop on the calling thread's ring (shard 0's thread). Reports the
/// bound client address (or the error) on `ready` first, then runs until `stop`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    shard: Shard,
    setup: CoreSetup,
    dcfg: super::driver::DriverConfig,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<std::io::Result<Bound>>,
) {
    let tick = (setup.tick_ms / crate::sequencer::PEER_TICKS_PER_TICK).clamp(10, 1000);
    let rcfg = io::Config {
        tick: Some(Duration::from_millis(tick as u64)),
        max_connections: dcfg.max_conns,
        ..io::Config::default()
    };
    let fail = |ready: &mpsc::Sender<_>, e: std::io::Error| {
        let _ = ready.send(Err(e));
    };
    let mut reactor = match Reactor::new(rcfg) {
        Ok(r) => r,
        Err(e) => return fail(&ready, std::io::Error::other(e.to_string())),
    };
    let (client_listener, addr) = match reactor.listen_handing_off(dcfg.addr, io::LISTEN_BACKLOG) {
        Ok(x) => x,
        Err(e) => {
            return fail(
                &ready,
                std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", dcfg.addr)),
            )
        }
    };
    // secureClientPort: a second client listener, handing off like the first.
    let mut secure = None;
    if let Some(saddr) = dcfg.secure_addr {
        match reactor.listen_handing_off(saddr, io::LISTEN_BACKLOG) {
            Ok(x) => secure = Some(x),
            Err(e) => {
                return fail(
                    &ready,
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot listen on the secure client port {saddr}: {e}"),
                    ),
                )
            }
        }
    }
    let _ = setup.wakers[0].0.set(Box::new(reactor.waker()));
    let worker = match Worker::start(setup.storage.clone(), setup.inbox.clone()) {
        Ok(w) => w,
        Err(e) => return fail(&ready, e),
    };
    // The log writer on this ring, and the snapshotter.
    let (log, snapshotter) = match &setup.storage {
        None => (None, None),
        Some(st) => {
            let writer = match open_log_writer(st, st.position, &setup.inbox) {
                Ok(w) => w,
                Err(e) => return fail(&ready, e),
            };
            let inbox = setup.inbox.clone();
            let snapshotter = match Snapshotter::start_notifying(
                st.disk.clone(),
                st.data_dir.clone(),
                Box::new(move |zxid, len| {
                    inbox.push_unbounded(LoopMsg::SnapshotDurable(zxid, len))
                }),
            ) {
                Ok(s) => s,
                Err(e) => return fail(&ready, e),
            };
            snapshotter.set_write_rate(st.snapshot_write_rate);
            (
                Some(LogSide {
                    writer,
                    setup: st.clone(),
                    inflight: HashMap::new(),
                    queue: VecDeque::new(),
                    barrier: false,
                }),
                Some(snapshotter),
            )
        }
    };
    // Quorum and election ports.
    let mut links = None;
    let mut election_handle = None;
    let mut bound_quorum = None;
    if let Some(ens) = &setup.ensemble {
        let me = ens
            .members
            .get(&ens.my_id)
            .expect("myid is a member")
            .clone();
        let (lid, qaddr) = match reactor.listen(me.quorum, 128) {
            Ok(x) => x,
            Err(e) => {
                return fail(
                    &ready,
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot listen on the quorum port {}: {e}", me.quorum),
                    ),
                )
            }
        };
        bound_quorum = Some(qaddr);
        let peers: BTreeMap<ServerId, SocketAddr> = ens
            .members
            .iter()
            .filter(|(id, _)| **id != ens.my_id)
            .map(|(id, m)| (*id, m.election))
            .collect();
        let inbox = setup.inbox.clone();
        match election::start(
            ens.my_id,
            ens.ensemble.clone(),
            me.election,
            peers,
            ens.tls.clone(),
            move |e: election::Elected| inbox.push_unbounded(LoopMsg::Elected(e.leader)),
        ) {
            Ok(h) => election_handle = Some(h),
            Err(e) => return fail(&ready, e),
        }
        let (disk, snap_dir) = match &setup.storage {
            Some(st) => (st.disk.clone(), st.data_dir.clone()),
            None => (
                Arc::new(crate::storage::OsDisk) as Arc<dyn Disk>,
                std::env::temp_dir(),
            ),
        };
        links = Some(Links {
            my_id: ens.my_id,
            members: ens.members.clone(),
            listener: lid,
            snap_dir,
            disk,
            next_conn: 1,
            by_token: HashMap::new(),
            current: BTreeMap::new(),
            dialing: BTreeMap::new(),
            info_conns: BTreeMap::new(),
            last_propose: None,
            tls_cfg: ens.tls.clone(),
            tls: HashMap::new(),
            dialed_tls: HashMap::new(),
        });
    }
    if let Some(ens) = &setup.ensemble {
        setup.state.set_membership(ens.membership.clone());
    }
    let election_addr = election_handle.as_ref().map(|h| h.local_addr);
    let _ = ready.send(Ok((
        addr,
        bound_quorum,
        election_addr,
        secure.map(|(_, a)| a),
    )));
    let mut h = CoreLoop {
        shard,
        seq: setup.seq,
        log,
        links,
        client_listener,
        client_addr: addr,
        rebind_to: None,
        secure_listener: secure.map(|(l, _)| l),
        client_wire: dcfg.client_wire,
        tls: dcfg.tls.clone().map(TlsConns::new),
        to_core: setup.to_core,
        to_shards: setup.to_shards,
        signals: setup.signals,
        wakers: setup.wakers,
        chain: setup.chain,
        inbox: setup.inbox,
        inbox_buf: Vec::new(),
        batch: Vec::new(),
        outputs: Vec::new(),
        state: setup.state,
        snapshotter,
        election: election_handle,
        worker,
        stop,
        max_conns_per_ip: dcfg.max_conns_per_ip,
        started: setup.started,
        timed: false,
        to_adopt: Vec::new(),
        log_events: Vec::new(),
        appends: VecDeque::new(),
        peer_input_at: None,
        looking_since: None,
        snapshot_since: None,
        config_files: setup.ensemble.as_ref().and_then(|e| e.config_files.clone()),
    };
    let (mut reported, mut last_report) = (0u64, None::<Instant>);
    loop {
        match reactor.run_once(&mut h) {
            Ok(Status::Running) => {}
            Ok(Status::Stopped) => break,
            Err(e) => {
                eprintln!("ringkeeper: core loop failed: {e}");
                break;
            }
        }
        for (to, conn, stream) in std::mem::take(&mut h.to_adopt) {
            let r = reactor.adopt(stream);
            h.adopted(reactor.ops(), to, conn, r);
        }
        h.end_pass(reactor.ops());
        h.rebind(&mut reactor);
        if h.stop.load(Ordering::Acquire) {
            break;
        }
        let refused = reactor.refused();
        if refused > reported && last_report.is_none_or(|t| t.elapsed() >= REFUSED_REPORT_INTERVAL)
        {
            eprintln!(
                "ringkeeper: refused {} connections: this shard holds at most {} (maxCnxns, or the default bound)",
                refused - reported,
                dcfg.max_conns
            );
            (reported, last_report) = (refused, Some(Instant::now()));
        }
    }
    // Log writes in flight finish before their buffers go: the ring waits for them
    // (bounded), and if the kernel still holds any, their buffers are leaked rather
    // than freed under it.
    reactor.wait_files(&mut h, Duration::from_secs(5));
    if reactor.ops().files_inflight() > 0 {
        if let Some(l) = h.log.as_mut() {
            for (_, f) in l.inflight.drain() {
                std::mem::forget(f);
            }
        }
    }
    drop(reactor);
    if let Some(s) = h.snapshotter.take() {
        s.shutdown();
    }
}
