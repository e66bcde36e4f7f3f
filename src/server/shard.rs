//! One shard: the client connections of one event loop, their sessions' request queues,
//! their watches, and the shard's read view of the tree.
//!
//! The shard is driven by events (bytes arrived, connection closed, mailbox woke, tick)
//! and acts through the [`Net`] trait, so the same code runs under the io_uring loop and
//! in tests. Ordering rules:
//!
//! - Reads are answered from `view` without locks.
//! - A connection with a write in flight queues its later reads (and everything behind
//!   them) until the write's commit arrives; writes behind writes are pipelined.
//! - For each commit, in zxid order: watches fire, then this shard's writes are
//!   answered, then `view` moves to the commit's root, then queued reads run.
//! - Commits come from the commit chain (`server::chain`): the shard walks it before it
//!   serves anything, and at the end of every loop pass; the core wakes it only when a
//!   commit has something for it (see the chain's header).

use super::audit;
use super::bulk::{BulkJob, BulkWhat};
use super::chain::{Cursor, Node, ShardSignals};
use super::fourlw;
use super::mailbox::Mailbox;
use super::reads;
use super::stats::{Clock, ConnStats, ServerState};
use crate::acl;
use crate::proto::frame;
use crate::proto::request::{self, ErrorAction, MultiResult, Request};
use crate::proto::*;
use crate::sequencer::msg::*;
use crate::session;
use crate::tree::DataTree;
use crate::txn::{OpResult, TxnOp};
use crate::watch::{self, Watches};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Instant;

/// Core to shard, beside the commit chain.
#[derive(Debug)]
pub enum ToShard {
    /// Close this connection (its session moved to another connection).
    Close(ConnRef),
    /// This server stopped serving (it went back to the election): close every client
    /// connection, so that clients move to a server that serves, as ZooKeeper's
    /// `Learner.shutdown` and `Leader.shutdown` do (`closeAllConnections`). Sessions live
    /// on; connections still in their first frame (maybe a four-letter word) stay.
    CloseClients,
    /// A four-letter word on `requester` needs every shard's picture: publish yours,
    /// tagged `gen`, then tell the requester.
    Publish {
        gen: u64,
        requester: crate::sequencer::msg::ShardId,
    },
    /// Some shard published the picture a pending four-letter word waits for.
    PictureReady,
    /// A client connection the acceptor placed on this shard, and how it speaks
    /// (plaintext, TLS, or either under `client.portUnification`).
    Adopt(std::net::TcpStream, crate::tls::Wire),
    /// The HTTP endpoints' question (an AdminServer command, a scrape): run it over
    /// this shard's view once every shard's picture is in, as a four-letter word.
    Inspect(Inspect),
    /// Close `percentage` percent (rounded up) of the client connections, and say how
    /// many on `reply` (ZooKeeper's `shed_connections`; a drain repeats it).
    Shed {
        percentage: u8,
        reply: std::sync::mpsc::Sender<usize>,
    },
    /// `crst` / `connection_stat_reset`: reset the `cons` statistics of every client
    /// connection that speaks TLS (`secure`) or not, as ZooKeeper resets those of one
    /// connection factory (the secure one or the plain one).
    ResetConnStats { secure: bool },
    /// The bulk-reply thread built the reply a connection waits for (`server::bulk`).
    BulkReply {
        slot: usize,
        gen: u32,
        bytes: Vec<u8>,
    },
}

/// An inspection run on a shard's loop over its view and the server's state.
pub struct Inspect(pub InspectFn);

/// The job of an [`Inspect`]: the state, the shard's view and its zxid.
pub type InspectFn = Box<dyn FnOnce(&ServerState, &DataTree, i64) + Send>;

impl std::fmt::Debug for Inspect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inspect")
    }
}

/// What a shard needs from the network layer.
pub trait Net {
    /// Appends bytes to the connection's output; sent at the end of the loop pass.
    fn send(&mut self, slot: usize, bytes: &[u8]);
    /// Closes the connection once its queued output is sent.
    fn close(&mut self, slot: usize);
    /// Stops or resumes reading from the connection (backpressure).
    fn pause(&mut self, slot: usize, paused: bool);
    /// Takes over a connection another shard accepted, speaking `wire`: its slot and
    /// peer, or `None` when it cannot be held (it is closed then).
    fn adopt(
        &mut self,
        stream: std::net::TcpStream,
        wire: crate::tls::Wire,
    ) -> Option<(usize, SocketAddr)>;
}

/// The most requests one connection may have queued or in flight before the shard stops
/// reading from it (ZooKeeper's globalOutstandingLimit is 1000 per server; per
/// connection keeps one greedy client from starving the others).
pub const MAX_OUTSTANDING_PER_CONN: usize = 1000;

/// The most requests this shard sends the sequencer in one batch before holding back.
pub const SEQ_INBOX_CAP: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first frame: a connect request or a four-letter word.
    Fresh,
    /// The connect request is with the sequencer.
    Connecting,
    Active,
    /// Closing: nothing more is read.
    Closing,
}

struct Queued {
    xid: i32,
    req: Request,
    received: Instant,
    /// Its frame's length if it is a large request (largeRequestThreshold), whose bytes
    /// are held in the server's budget until it is answered; else 0.
    large: u32,
}

/// What the audit log needs of a write in flight (kept only with `audit.enable`).
struct PendingAudit {
    op: &'static str,
    path: String,
    mode: Option<&'static str>,
    acl: Option<String>,
    /// A multi's creates: requested path and create mode.
    multi_modes: Vec<(String, &'static str)>,
}

impl PendingAudit {
    /// `None` for writes ZooKeeper does not audit (sync, closeSession, check).
    fn of(req: &Request) -> Option<PendingAudit> {
        let simple = |op, path: &str, mode, acl| PendingAudit {
            op,
            path: path.to_string(),
            mode,
            acl,
            multi_modes: Vec::new(),
        };
        Some(match req {
            Request::Create { req, .. } => {
                simple("create", &req.path, audit::create_mode(req.flags), None)
            }
            Request::CreateTtl(r) => simple("create", &r.path, audit::create_mode(r.flags), None),
            Request::Delete(r) => simple("delete", &r.path, None, None),
            Request::SetData(r) => simple("setData", &r.path, None, None),
            Request::SetAcl(r) => simple("setAcl", &r.path, None, Some(audit::acl_string(&r.acl))),
            Request::Multi(ops) => PendingAudit {
                op: "multiOperation",
                path: String::new(),
                mode: None,
                acl: None,
                multi_modes: ops
                    .iter()
                    .filter_map(|o| match o {
                        request::MultiOp::Create { req, .. } => {
                            Some((req.path.clone(), audit::create_mode(req.flags)?))
                        }
                        _ => None,
                    })
                    .collect(),
            },
            _ => return None,
        })
    }
}

struct Conn {
    gen: u32,
    peer: SocketAddr,
    phase: Phase,
    inbuf: Vec<u8>,
    session_id: i64,
    timeout_ms: i32,
    /// Whether the client sent the readOnly byte (the answer carries it only then).
    read_only_byte: Option<bool>,
    /// A read-only session (this server is cut off from its quorum): writes get
    /// NOTREADONLY here.
    read_only: bool,
    ids: Arc<Vec<Id>>,
    queue: VecDeque<Queued>,
    in_flight: usize,
    /// The sub-op opcodes of each multi in flight, oldest first: a create inside a multi
    /// answers `CreateResult` or `Create2Result` by its own opcode.
    multi_ops: VecDeque<Vec<OpCode>>,
    paused: bool,
    /// Large writes in flight, oldest first: (xid, bytes held).
    large_writes: VecDeque<(i32, u32)>,
    /// With the audit log on: one entry per write in flight, oldest first.
    audits: VecDeque<Option<PendingAudit>>,
    /// When bytes last arrived while the handshake was not done (only kept then: the
    /// handshake timeout, `nio.sessionlessCnxnTimeout`, is measured from it).
    last_active: Instant,
    stats: ConnStats,
    /// It speaks TLS (ZooKeeper's secure factory: `secure_connections`).
    secure: bool,
    /// A reply being built by the bulk-reply thread: everything behind it waits.
    bulk: Option<BulkWait>,
    /// This connection's SASL exchange.
    sasl: crate::sasl::SaslConn,
}

/// A connection's wait for its bulk reply.
struct BulkWait {
    op: OpCode,
    received: Instant,
    /// What the shard would have sent the connection meanwhile (watch events), sent
    /// after the reply.
    held: Vec<u8>,
}

pub struct Shard {
    id: ShardId,
    /// The clocks as the last `parse` read them: the `received` of every request it
    /// decoded, and the base an answer's wall time follows from ([`Clock::later`]).
    clock: Clock,
    /// The newest root published (a learner publishes one only when a shard asks: see
    /// `Commit::root`), and the zxid it is the state of.
    view: DataTree,
    view_at: i64,
    /// The zxid of the last commit processed: what answers carry. A read runs only on a
    /// view at it ([`Shard::view_is_current`]).
    view_zxid: i64,
    /// Connections whose next request is a read waiting for a current view.
    root_waiters: Vec<usize>,
    /// A root was asked for and has not come yet.
    root_asked: bool,
    conns: HashMap<usize, Conn>,
    next_gen: u32,
    /// Sessions bound to connections of this shard.
    bound: HashMap<i64, usize>,
    watches: Watches<usize>,
    touched: HashSet<i64>,
    to_seq: Arc<Mailbox<ToSeq>>,
    outbox: Vec<ToSeq>,
    inbox: Arc<Mailbox<ToShard>>,
    inbox_buf: Vec<ToShard>,
    /// Where this shard is in the commit chain.
    cursor: Cursor,
    signals: Arc<ShardSignals>,
    /// `maxClientCnxns` (for connections handed over by the acceptor).
    max_per_ip: usize,
    state: Arc<ServerState>,
    max_frame: usize,
    super_digest: Option<String>,
    /// `skipACL=yes`.
    skip_acl: bool,
    scratch: Vec<u8>,
    events: Vec<watch::Event<usize>>,
    /// Connections refused since the last report, and when that was.
    refusals: (u64, Option<Instant>),
    /// Requests read on this shard and not yet answered (globalOutstandingLimit).
    outstanding: i64,
    /// `audit.enable`: the audit log.
    audit: Option<Arc<audit::AuditLog>>,
    /// Four-letter words waiting for the other shards' pictures: (slot, command, gen).
    pending_fourlw: Vec<(usize, crate::fourlw::Command, u64)>,
    pending_inspect: Vec<(u64, Inspect)>,
    /// Load attribution and the slow-request log (`None`: both off).
    observe: Option<Box<super::observe::Observe>>,
    /// The bulk-reply thread, if this server runs one (`server::bulk`).
    bulk_tx: Option<std::sync::mpsc::Sender<BulkJob>>,
}

/// A read's answer in the connection's, the reads histogram's and the server's
/// statistics, at one read of the monotonic clock ([`Clock::later`]).
fn read_answered(
    state: &ServerState,
    stats: &mut ConnStats,
    clock: &Clock,
    op: OpCode,
    received: Instant,
    zxid: i64,
) {
    let at = clock.later();
    stats.answered_at(op, received, zxid, at);
    let m = &state.seq.metrics;
    m.reads.record(at.now.saturating_duration_since(received));
    state.request_done_at(received, at.now);
}

/// One framed reply: the header, and the body only on success (ZooKeeper's layout).
fn frame_reply(out: &mut Vec<u8>, xid: i32, zxid: i64, err: Code, body: &[u8]) {
    frame::write_reply(out, xid, zxid, err, |o| o.extend_from_slice(body));
}

fn frame_record<T: Jute>(out: &mut Vec<u8>, rec: &T) {
    frame::write_frame(out, |o| rec.write(o));
}

impl Shard {
    /// A shard reading the chain from `start` (whose root is its first view).
    pub fn new(
        id: ShardId,
        start: Arc<Node>,
        signals: Arc<ShardSignals>,
        to_seq: Arc<Mailbox<ToSeq>>,
        inbox: Arc<Mailbox<ToShard>>,
        state: Arc<ServerState>,
    ) -> Self {
        let max_frame = state.settings.max_frame;
        let super_digest = state.settings.super_digest.clone();
        let observe = super::observe::Observe::new(&state.settings.ops);
        let skip_acl = state.settings.skip_acl;
        let audit = state.settings.audit.clone();
        Shard {
            id,
            clock: Clock::now(),
            view: start
                .commit
                .root
                .clone()
                .expect("the chain starts with a root"),
            view_at: start.commit.zxid,
            view_zxid: start.commit.zxid,
            root_waiters: Vec::new(),
            root_asked: false,
            cursor: Cursor::new(start),
            signals,
            max_per_ip: 60,
            conns: HashMap::new(),
            next_gen: 0,
            bound: HashMap::new(),
            watches: Watches::new(),
            touched: HashSet::new(),
            to_seq,
            outbox: Vec::new(),
            inbox,
            inbox_buf: Vec::new(),
            state,
            max_frame,
            super_digest,
            skip_acl,
            scratch: Vec::new(),
            events: Vec::new(),
            refusals: (0, None),
            outstanding: 0,
            audit,
            pending_fourlw: Vec::new(),
            pending_inspect: Vec::new(),
            observe,
            bulk_tx: None,
        }
    }

    /// Hands getChildren of more than `bulkReadChildren` children to the bulk-reply
    /// thread behind `tx`.
    pub fn set_bulk(&mut self, tx: std::sync::mpsc::Sender<BulkJob>) {
        self.bulk_tx = Some(tx);
    }

    /// Sends to a connection, or holds the bytes while it waits for a bulk reply.
    fn send_or_hold(&mut self, net: &mut dyn Net, slot: usize, bytes: &[u8]) {
        match self.conns.get_mut(&slot).and_then(|c| c.bulk.as_mut()) {
            Some(w) => w.held.extend_from_slice(bytes),
            None => net.send(slot, bytes),
        }
    }

    fn conn_ref(&self, slot: usize) -> ConnRef {
        ConnRef {
            shard: self.id,
            slot,
            gen: self.conns[&slot].gen,
        }
    }

    /// `maxClientCnxns`, for the connections the acceptor hands over.
    pub fn set_max_per_ip(&mut self, max: usize) {
        self.max_per_ip = max;
    }

    /// A new connection was accepted; false if it must be refused (maxClientCnxns).
    /// The connection counts towards `ShardSignals::conns` (the acceptor counts it)
    /// until `closed`.
    pub fn accepted(&mut self, slot: usize, peer: SocketAddr, max_per_ip: usize) -> bool {
        if let Err(why) = self.state.admit(peer.ip(), max_per_ip) {
            self.state.seq.metrics.zk.connection_rejected.inc();
            self.refused(peer, why);
            return false;
        }
        self.next_gen = self.next_gen.wrapping_add(1);
        let ip = Id {
            scheme: "ip".into(),
            id: peer.ip().to_string(),
        };
        let prev = self.conns.insert(
            slot,
            Conn {
                gen: self.next_gen,
                peer,
                phase: Phase::Fresh,
                inbuf: Vec::new(),
                session_id: 0,
                timeout_ms: 0,
                read_only_byte: None,
                read_only: false,
                ids: Arc::new(vec![ip]),
                queue: VecDeque::new(),
                in_flight: 0,
                multi_ops: VecDeque::new(),
                paused: false,
                large_writes: VecDeque::new(),
                audits: VecDeque::new(),
                last_active: Instant::now(),
                stats: ConnStats::new(),
                secure: false,
                bulk: None,
                sasl: Default::default(),
            },
        );
        assert!(prev.is_none(), "slot {slot} accepted twice");
        true
    }

    /// The connection in `slot` spoke TLS (called for each TLS record received).
    pub fn secured(&mut self, slot: usize) {
        if let Some(c) = self.conns.get_mut(&slot) {
            c.secure = true;
        }
    }

    /// Resets the `cons` statistics of this shard's connections that speak TLS
    /// (`secure`) or not.
    fn reset_conn_stats(&mut self, secure: bool) {
        for c in self.conns.values_mut().filter(|c| c.secure == secure) {
            c.stats.reset();
        }
    }

    /// A TLS client's certificate was verified: its identities (`x509:<subject DN>`,
    /// and `super` for the configured superUser) join the connection's auth, as
    /// ZooKeeper's X509AuthenticationProvider adds them when the handshake completes.
    pub fn authenticated(&mut self, slot: usize, ids: Vec<Id>) {
        if let Some(c) = self.conns.get_mut(&slot) {
            let all = Arc::make_mut(&mut c.ids);
            for id in ids {
                if !all.contains(&id) {
                    all.push(id);
                }
            }
        }
    }

    /// The connection is gone (closed by either side); forget it.
    /// The client closed its sending side. A connection closes then, as in ZooKeeper,
    /// unless it asked a four-letter word whose answer waits for the other shards'
    /// pictures: `nc` and most scripts send the word and shut down their side at once,
    /// and still read the answer. Returns whether to close now.
    pub fn end_of_stream(&mut self, slot: usize) -> bool {
        self.state.seq.metrics.zk.connection_drops.inc();
        !self.pending_fourlw.iter().any(|(s, _, _)| *s == slot)
    }

    pub fn closed(&mut self, slot: usize) {
        let Some(c) = self.conns.remove(&slot) else {
            return;
        };
        self.signals.conns.fetch_sub(1, Ordering::Relaxed);
        // Its unanswered requests will never be answered here.
        self.outstanding -= (c.queue.len() + c.in_flight + usize::from(c.bulk.is_some())) as i64;
        let large: i64 = c.queue.iter().map(|q| i64::from(q.large)).sum::<i64>()
            + c.large_writes
                .iter()
                .map(|(_, n)| i64::from(*n))
                .sum::<i64>();
        if large > 0 {
            self.state.release_large(large);
        }
        self.watches.remove_watcher(slot);
        if let Some(ob) = &mut self.observe {
            ob.closed(slot);
        }
        if c.session_id != 0 && self.bound.get(&c.session_id) == Some(&slot) {
            self.bound.remove(&c.session_id);
            self.outbox.push(ToSeq::Detached {
                conn: ConnRef {
                    shard: self.id,
                    slot,
                    gen: c.gen,
                },
                session_id: c.session_id,
            });
        }
        self.state.release(c.peer.ip());
    }

    fn close(&mut self, net: &mut dyn Net, slot: usize) {
        if let Some(c) = self.conns.get_mut(&slot) {
            if c.phase != Phase::Closing {
                c.phase = Phase::Closing;
                net.close(slot);
            }
        }
    }

    /// Processes every commit the core published since the last call, in order. Called
    /// before a request is served (so a write answered by any shard is visible to every
    /// read that arrives after its answer, on any shard: what clients of one ZooKeeper
    /// server observe) and at the end of every pass.
    pub fn advance(&mut self, net: &mut dyn Net) {
        while let Some(node) = self.cursor.peek() {
            self.commit(net, &node);
            self.cursor.advance_to(node, &self.signals);
        }
    }

    /// Bytes arrived on a connection.
    pub fn data(&mut self, net: &mut dyn Net, slot: usize, bytes: &[u8]) {
        self.advance(net);
        let Some(c) = self.conns.get_mut(&slot) else {
            return;
        };
        if c.phase == Phase::Closing {
            return;
        }
        if c.phase == Phase::Fresh {
            c.last_active = Instant::now();
        }
        c.inbuf.extend_from_slice(bytes);
        self.state
            .seq
            .metrics
            .zk
            .bytes_received
            .add(bytes.len() as u64);
        self.parse(net, slot);
    }

    /// Decodes and handles every complete frame buffered on `slot`.
    fn parse(&mut self, net: &mut dyn Net, slot: usize) {
        // Once for every frame decoded here: a clock read per request was ~10% of a
        // read's CPU (five of them: receipt, and the answer's statistics).
        self.clock = Clock::now();
        // The buffer is lent out while its frames are handled, so that each is read in
        // place (a copy of every frame was ~7% of a read's CPU). Nothing appends to a
        // connection's input meanwhile: `data` and the other callers of `parse` are not
        // reached from a frame's handling.
        let Some(c) = self.conns.get_mut(&slot) else {
            return;
        };
        let mut inbuf = std::mem::take(&mut c.inbuf);
        let parsed = self.parse_frames(net, slot, &inbuf);
        let Some(c) = self.conns.get_mut(&slot) else {
            return;
        };
        if let Some((consumed, _)) = parsed {
            inbuf.drain(..consumed);
        }
        inbuf.extend_from_slice(&c.inbuf);
        c.inbuf = inbuf;
        if let Some((_, throttled)) = parsed {
            // Backpressure: too many requests outstanding on this connection, or in the
            // server.
            let busy = throttled || c.queue.len() + c.in_flight >= MAX_OUTSTANDING_PER_CONN;
            if busy != c.paused {
                c.paused = busy;
                net.pause(slot, busy);
            }
        }
    }

    /// [`Shard::parse`]'s frames, from `inbuf`: the bytes consumed and whether
    /// globalOutstandingLimit stopped the reading; `None` when the connection closed or
    /// turned to a four-letter word.
    fn parse_frames(
        &mut self,
        net: &mut dyn Net,
        slot: usize,
        inbuf: &[u8],
    ) -> Option<(usize, bool)> {
        let mut consumed = 0;
        let mut throttled = false;
        let limit = self.state.settings.global_outstanding_limit as i64;
        let others = self.state.others_outstanding(self.id);
        loop {
            let c = self.conns.get_mut(&slot)?;
            if !matches!(c.phase, Phase::Fresh | Phase::Active) {
                break;
            }
            // Backpressure, checked before each frame: with this many requests queued
            // or in flight, the rest stays in `inbuf` (and reading stops, below) until
            // answers make room (`drain_queue` parses again). A client that pipelines
            // a burst is slowed down, never dropped.
            let mine = c.queue.len() + c.in_flight;
            if mine >= MAX_OUTSTANDING_PER_CONN {
                break;
            }
            // globalOutstandingLimit (ZooKeeperServer.shouldThrottle): while the server
            // has more requests outstanding than the limit, a connection that has one
            // outstanding is not read; one with none still is, so a flood from some
            // clients does not lock the others out.
            if mine > 0 && self.outstanding + others > limit {
                throttled = true;
                break;
            }
            let avail = &inbuf[consumed..];
            if avail.len() < 4 {
                break;
            }
            let head = [avail[0], avail[1], avail[2], avail[3]];
            if c.phase == Phase::Fresh {
                if let Some(cmd) = fourlw::command(head) {
                    // stmk carries an 8-byte mask after the word.
                    if cmd.takes_argument() && avail.len() < 12 {
                        break;
                    }
                    c.phase = Phase::Closing;
                    self.four_letter_word(net, slot, cmd);
                    return None;
                }
            }
            let len = i32::from_be_bytes(head);
            if len < 0 || len as usize > self.max_frame {
                // A TLS ClientHello's record header (0x16 0x03): say so.
                let hint = if c.phase == Phase::Fresh && head[0] == 0x16 && head[1] == 0x03 {
                    " (a TLS handshake on a plaintext port: use secureClientPort or client.portUnification=true)"
                } else {
                    ""
                };
                eprintln!(
                    "ringkeeper: closing {}: frame length {len} outside 0..={} (jute.maxbuffer){hint}",
                    c.peer, self.max_frame
                );
                self.close(net, slot);
                return None;
            }
            let len = len as usize;
            if avail.len() < 4 + len {
                break;
            }
            let frame = &avail[4..4 + len];
            consumed += 4 + len;
            c.stats.received += 1;
            self.state.packet_received();
            let ok = if c.phase == Phase::Fresh {
                self.handshake(slot, frame)
            } else {
                self.frame(net, slot, frame)
            };
            if !ok {
                self.close(net, slot);
                return None;
            }
        }
        Some((consumed, throttled))
    }

    fn handshake(&mut self, slot: usize, frame: &[u8]) -> bool {
        let zk = &self.state.seq.metrics.zk;
        zk.connection_requests.inc();
        let req = match ConnectRequest::from_bytes(frame) {
            Ok(r) => r,
            Err(e) => {
                zk.unsuccessful_handshake.inc();
                eprintln!("ringkeeper: bad connect request: {e}");
                return false;
            }
        };
        if !self.state.connect_allowed(req.session_id != 0) {
            let c = &self.conns[&slot];
            eprintln!(
                "ringkeeper: closing {}: connection throttled (connectionMaxTokens)",
                c.peer
            );
            return false;
        }
        let c = self
            .conns
            .get_mut(&slot)
            .expect("handshake on unknown slot");
        c.phase = Phase::Connecting;
        c.read_only_byte = req.read_only;
        if req.session_id != 0 {
            zk.revalidate.inc();
        }
        let conn = self.conn_ref(slot);
        self.outbox.push(ToSeq::Connect {
            conn,
            req,
            received: self.clock.now,
        });
        true
    }

    /// One request frame of an active connection. False closes the connection.
    fn frame(&mut self, net: &mut dyn Net, slot: usize, frame: &[u8]) -> bool {
        let mut r = Reader::new(frame);
        let hdr = match RequestHeader::read(&mut r) {
            Ok(h) => h,
            Err(_) => return false,
        };
        let received = self.clock.now;
        let req = match Request::decode(&hdr, &mut r) {
            Ok(req) => req,
            Err(e) => {
                let c = &self.conns[&slot];
                eprintln!("ringkeeper: {}: {e}", c.peer);
                let mut out = Vec::new();
                return match e.action() {
                    ErrorAction::Reply(code) => {
                        frame_reply(&mut out, hdr.xid, self.view_zxid, code, &[]);
                        self.send_or_hold(net, slot, &out);
                        true
                    }
                    ErrorAction::ReplyAndClose(code) => {
                        frame_reply(&mut out, hdr.xid, self.view_zxid, code, &[]);
                        self.send_or_hold(net, slot, &out);
                        false
                    }
                    ErrorAction::Close => false,
                };
            }
        };
        let c = self.conns.get_mut(&slot).expect("frame on unknown slot");
        self.touched.insert(c.session_id);
        c.stats.last_cxid = hdr.xid;
        if let Request::Auth(a) = &req {
            return self.auth(net, slot, a.clone());
        }
        if let Request::Sasl(t) = &req {
            let token = t.token.clone().unwrap_or_default();
            return self.sasl(net, slot, hdr.xid, &token);
        }
        // sessionRequireClientSASLAuth / enforce.auth (AuthenticationHelper
        // .enforceAuthentication): every other request of a connection without an id of
        // a required scheme is answered SESSIONCLOSEDREQUIRESASLAUTH and the connection
        // closed (the session lives on until it expires).
        if !self.state.settings.sasl.allows(&c.ids) {
            eprintln!(
                "ringkeeper: closing {} (session 0x{:x}): it is not authenticated with any of the schemes {:?} the server requires",
                c.peer, c.session_id, self.state.settings.sasl.enforce_schemes
            );
            let mut out = Vec::new();
            frame_reply(
                &mut out,
                hdr.xid,
                0,
                Code::SessionClosedRequireSaslAuth,
                &[],
            );
            self.send_or_hold(net, slot, &out);
            return false;
        }
        let mut large = 0;
        if self.state.settings.large_requests.is_large(frame.len()) {
            if !self.state.take_large(frame.len() as i64) {
                eprintln!(
                    "ringkeeper: closing {}: rejecting a large request of {} bytes (largeRequestMaxBytes {} held)",
                    c.peer,
                    frame.len(),
                    self.state.settings.large_requests.max_bytes
                );
                return false;
            }
            large = frame.len() as u32;
        }
        if let Some(ob) = &mut self.observe {
            ob.request(slot, c.session_id, c.peer, &req, frame.len() + 4);
        }
        self.outstanding += 1;
        let queued = Queued {
            xid: hdr.xid,
            req,
            received,
            large,
        };
        if !c.queue.is_empty() || c.bulk.is_some() || (c.in_flight > 0 && !queued.req.is_write()) {
            c.queue.push_back(queued);
        } else if let Some(queued) = self.unless_waiting_for_root(slot, queued) {
            self.dispatch(net, slot, queued);
        }
        true
    }

    /// Runs a request whose turn has come (a read, on a current view: its caller checked
    /// with `unless_waiting_for_root`): a write goes to the sequencer, a read is answered
    /// now.
    fn dispatch(&mut self, net: &mut dyn Net, slot: usize, q: Queued) {
        let conn = self.conn_ref(slot);
        let c = self.conns.get_mut(&slot).expect("dispatch on unknown slot");
        if q.req.is_write() && c.read_only {
            // ZooKeeper's ReadOnlyRequestProcessor: a change (or sync) is NOTREADONLY;
            // closeSession ends this server-only session.
            let mut out = Vec::new();
            let close = matches!(q.req, Request::CloseSession);
            let code = if close { Code::Ok } else { Code::NotReadOnly };
            frame_reply(&mut out, q.xid, self.view_zxid, code, &[]);
            net.send(slot, &out);
            if close {
                self.close(net, slot);
            }
            return;
        }
        if q.req.is_write() {
            c.in_flight += 1;
            if q.large > 0 {
                c.large_writes.push_back((q.xid, q.large));
            }
            if self.audit.is_some() {
                c.audits.push_back(PendingAudit::of(&q.req));
            }
            if let Request::Multi(ops) = &q.req {
                c.multi_ops.push_back(ops.iter().map(|o| o.op()).collect());
            }
            self.outbox.push(ToSeq::Request {
                origin: Origin {
                    conn,
                    xid: q.xid,
                    op: q.req.op(),
                    received: q.received,
                },
                session_id: c.session_id,
                req: q.req,
                ids: c.ids.clone(),
            });
            return;
        }
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let zxid = self.view_zxid;
        match &q.req {
            Request::Ping => frame_reply(&mut out, xid::PING, zxid, Code::Ok, &[]),
            Request::SetWatches(_) | Request::SetWatches2(_) => {
                let lists = reads::WatchLists::of(&q.req).expect("a setWatches request");
                let mut missed = Vec::new();
                reads::set_watches(&self.view, &mut self.watches, slot, &lists, &mut missed);
                Self::notify_missed(&mut out, &missed);
                frame_reply(&mut out, q.xid, zxid, Code::Ok, &[]);
            }
            req => {
                let who = reads::Reader {
                    slot,
                    session_id: c.session_id,
                    ids: &c.ids,
                    skip_acl: self.skip_acl,
                };
                // With a bulk-reply thread, a listing read (getChildren, or a multiRead
                // with getChildren ops) checks its nodes once, then lists on this thread
                // or hands the lists over by how many names they hold.
                let listing = if self.bulk_tx.is_some() && self.state.settings.bulk_children > 0 {
                    let (view, watches) = (&self.view, &mut self.watches);
                    let children = |watches: &mut Watches<usize>,
                                    path: &String,
                                    watch: bool,
                                    with_stat: bool| {
                        reads::children_prelude(view, watches, &who, path, watch).map(|stat| {
                            let what = BulkWhat::Children {
                                path: path.clone(),
                                stat: with_stat.then(|| stat.clone()),
                            };
                            (what, stat.num_children.max(0) as usize)
                        })
                    };
                    match req {
                        Request::GetChildren(r) => Some(children(watches, &r.path, r.watch, false)),
                        Request::GetChildren2(r) => Some(children(watches, &r.path, r.watch, true)),
                        Request::MultiRead(ops) => Some(
                            reads::multi_read_prelude(view, watches, &who, ops)
                                .map(|(parts, names)| (BulkWhat::MultiRead(parts), names)),
                        ),
                        _ => None,
                    }
                } else {
                    None
                };
                if let Some(listing) = listing {
                    let bulk = self.state.settings.bulk_children;
                    match listing {
                        Ok((what, names)) if names <= bulk => {
                            let body = what.body(&self.view);
                            frame_reply(&mut out, q.xid, zxid, Code::Ok, &body);
                        }
                        Ok((what, _)) => {
                            let job = BulkJob {
                                view: self.view.clone(),
                                what,
                                xid: q.xid,
                                zxid,
                                slot,
                                gen: c.gen,
                                inbox: self.inbox.clone(),
                            };
                            let tx = self.bulk_tx.as_ref().expect("checked above");
                            match tx.send(job) {
                                Ok(()) => {
                                    self.state.bulk_replies.fetch_add(1, Ordering::Relaxed);
                                    c.bulk = Some(BulkWait {
                                        op: q.req.op(),
                                        received: q.received,
                                        held: Vec::new(),
                                    });
                                    // Outstanding until `bulk_reply` (or `closed`).
                                    if q.large > 0 {
                                        self.state.release_large(i64::from(q.large));
                                    }
                                    self.scratch = out;
                                    return;
                                }
                                // The thread is gone (it cannot panic on a valid view,
                                // but if it did): build it here.
                                Err(mpsc::SendError(job)) => {
                                    out.extend_from_slice(&job.build());
                                }
                            }
                        }
                        Err(code) => frame_reply(&mut out, q.xid, zxid, code, &[]),
                    }
                } else {
                    match reads::execute(&self.view, &mut self.watches, &who, req) {
                        Ok(body) => frame_reply(&mut out, q.xid, zxid, Code::Ok, &body),
                        Err(code) => frame_reply(&mut out, q.xid, zxid, code, &[]),
                    }
                }
            }
        }
        read_answered(
            &self.state,
            &mut c.stats,
            &self.clock,
            q.req.op(),
            q.received,
            zxid,
        );
        self.state.responded(out.len());
        if let Some(ob) = &mut self.observe {
            ob.read_answered(
                slot,
                c.session_id,
                c.peer,
                &q.req,
                out.len(),
                q.received,
                zxid,
            );
        }
        self.outstanding -= 1;
        if q.large > 0 {
            self.state.release_large(i64::from(q.large));
        }
        net.send(slot, &out);
        self.scratch = out;
    }

    fn notify_missed(out: &mut Vec<u8>, missed: &[(EventType, String)]) {
        for (ev, path) in missed {
            Self::notification(out, -1, *ev, path);
        }
    }

    fn notification(out: &mut Vec<u8>, zxid: i64, ev: EventType, path: &str) {
        frame::write_notification(out, zxid, ev, keeper_state::SYNC_CONNECTED, path);
    }

    /// addauth: handled at once, outside the request order, as ZooKeeper does.
    fn auth(&mut self, net: &mut dyn Net, slot: usize, a: AuthPacket) -> bool {
        let mut out = Vec::new();
        let result = acl::authenticate(
            &a.scheme,
            a.auth.as_deref().unwrap_or(&[]),
            self.super_digest.as_deref(),
        );
        let c = self.conns.get_mut(&slot).expect("auth on unknown slot");
        match result {
            Ok(new_ids) => {
                let mut ids = (*c.ids).clone();
                for id in new_ids {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                c.ids = Arc::new(ids);
                frame_reply(&mut out, xid::AUTH, 0, Code::Ok, &[]);
                net.send(slot, &out);
                true
            }
            Err(_) => {
                self.state.auth_failed();
                frame_reply(&mut out, xid::AUTH, 0, Code::AuthFailed, &[]);
                net.send(slot, &out);
                self.close(net, slot);
                true
            }
        }
    }

    /// A SASL packet: handled at once, outside the request order, as ZooKeeper's
    /// `processPacket` does (see `crate::sasl`). False closes the connection.
    fn sasl(&mut self, net: &mut dyn Net, slot: usize, xid: i32, token: &[u8]) -> bool {
        let settings = self.state.settings.sasl.clone();
        let c = self.conns.get_mut(&slot).expect("sasl on unknown slot");
        let (answer, log) = c.sasl.process(&settings, token);
        if let Some(m) = log {
            eprintln!("ringkeeper: {} session 0x{:x}: {m}", c.peer, c.session_id);
        }
        let mut out = Vec::new();
        match answer {
            crate::sasl::Answer::Reply { token, new_ids } => {
                if !new_ids.is_empty() {
                    let mut ids = (*c.ids).clone();
                    for id in new_ids {
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                    }
                    c.ids = Arc::new(ids);
                }
                let mut body = Vec::new();
                SaslToken {
                    token: token.map(bytes::Bytes::from),
                }
                .write(&mut body);
                frame_reply(&mut out, xid, 0, Code::Ok, &body);
                self.send_or_hold(net, slot, &out);
                true
            }
            crate::sasl::Answer::FailAndClose(code) => {
                // The error header still carries a SetSASLResponse with a null token:
                // the Java client reads one before it can report AuthFailed (without it
                // it reconnects and tries again, forever).
                frame::write_frame(&mut out, |o| {
                    ReplyHeader {
                        xid,
                        zxid: 0,
                        err: code.as_i32(),
                    }
                    .write(o);
                    SaslToken { token: None }.write(o);
                });
                self.send_or_hold(net, slot, &out);
                false
            }
            crate::sasl::Answer::Close => false,
        }
    }

    /// Handles everything the core sent since the last pass: control messages, then
    /// the commit chain.
    pub fn wake(&mut self, net: &mut dyn Net) {
        let mut msgs = std::mem::take(&mut self.inbox_buf);
        self.inbox.drain_into(&mut msgs);
        for m in msgs.drain(..) {
            match m {
                ToShard::Publish { gen, requester } => {
                    self.publish_picture(gen);
                    if requester != self.id {
                        self.state.shard_inboxes()[requester].push_unbounded(ToShard::PictureReady);
                    }
                }
                ToShard::PictureReady => self.answer_ready_fourlw(net),
                ToShard::ResetConnStats { secure } => self.reset_conn_stats(secure),
                ToShard::Inspect(job) => {
                    let gen = self.ask_pictures();
                    self.pending_inspect.push((gen, job));
                    self.answer_ready_fourlw(net);
                }
                ToShard::Adopt(stream, wire) => {
                    // The acceptor counted it for this shard already.
                    match net.adopt(stream, wire) {
                        Some((slot, peer)) => {
                            if !self.accepted(slot, peer, self.max_per_ip) {
                                self.signals.conns.fetch_sub(1, Ordering::Relaxed);
                                net.close(slot);
                            }
                        }
                        None => {
                            self.signals.conns.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                }
                ToShard::Close(conn) => {
                    if self
                        .conns
                        .get(&conn.slot)
                        .is_some_and(|c| c.gen == conn.gen)
                    {
                        self.close(net, conn.slot);
                    }
                }
                ToShard::Shed { percentage, reply } => {
                    let mut slots: Vec<usize> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| matches!(c.phase, Phase::Connecting | Phase::Active))
                        .map(|(slot, _)| *slot)
                        .collect();
                    slots.sort_unstable();
                    let n = (slots.len() * usize::from(percentage.min(100))).div_ceil(100);
                    for &slot in &slots[..n] {
                        self.close(net, slot);
                    }
                    let _ = reply.send(n);
                }
                ToShard::BulkReply { slot, gen, bytes } => self.bulk_reply(net, slot, gen, &bytes),
                ToShard::CloseClients => {
                    let mut slots: Vec<usize> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| matches!(c.phase, Phase::Connecting | Phase::Active))
                        .map(|(slot, _)| *slot)
                        .collect();
                    slots.sort_unstable();
                    for slot in slots {
                        self.close(net, slot);
                    }
                }
            }
        }
        self.inbox_buf = msgs;
        self.advance(net);
    }

    /// The reply a connection waited for: sent, then what was held, then the requests
    /// queued behind it run.
    fn bulk_reply(&mut self, net: &mut dyn Net, slot: usize, gen: u32, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&slot).filter(|c| c.gen == gen) else {
            return; // the connection closed meanwhile
        };
        let Some(w) = c.bulk.take() else {
            return;
        };
        read_answered(
            &self.state,
            &mut c.stats,
            &self.clock,
            w.op,
            w.received,
            self.view_zxid,
        );
        self.state.responded(bytes.len());
        if let Some(ob) = &mut self.observe {
            ob.bytes_out(slot, c.session_id, c.peer, bytes.len());
        }
        self.outstanding -= 1;
        net.send(slot, bytes);
        if !w.held.is_empty() {
            net.send(slot, &w.held);
        }
        self.drain_queue(net, slot);
    }

    fn is_mine(&self, conn: &ConnRef) -> bool {
        conn.shard == self.id
            && self
                .conns
                .get(&conn.slot)
                .is_some_and(|c| c.gen == conn.gen && c.phase != Phase::Closing)
    }

    fn commit(&mut self, net: &mut dyn Net, node: &Node) {
        let commit = &node.commit;
        // Read once, at this commit's first answer of this shard (see `stats::Clock`).
        let mut clock: Option<Clock> = None;
        let mut touched: Vec<usize> = Vec::new();
        let mut out = std::mem::take(&mut self.scratch);
        for e in &commit.entries {
            match e {
                Entry::Txn {
                    txn,
                    applied,
                    origin,
                } => {
                    // 1. Watches fire before anything that shows the new state.
                    if !self.watches_empty() {
                        for t in &applied.triggers {
                            let before = self.events.len();
                            self.watches.trigger(&t.path, t.event, &mut self.events);
                            self.state
                                .watches_triggered(t.event, self.events.len() - before);
                            let mut events = std::mem::take(&mut self.events);
                            for ev in events.drain(..) {
                                // Only to watchers that may READ the node the event
                                // names (ZooKeeper's `ServerCnxn.process(event, acl)`,
                                // CVE-2024-23944); a refused standard watch is still
                                // used up, as there.
                                let allowed = self.skip_acl
                                    || self
                                        .conns
                                        .get(&ev.watcher)
                                        .is_some_and(|c| acl::check(&t.acl, perms::READ, &c.ids));
                                if !allowed {
                                    continue;
                                }
                                if let (Some(ob), Some(c)) =
                                    (&mut self.observe, self.conns.get(&ev.watcher))
                                {
                                    ob.watch_fired(ev.watcher, c.session_id, c.peer, &ev.path);
                                }
                                out.clear();
                                Self::notification(&mut out, txn.zxid, ev.event, &ev.path);
                                self.state.seq.metrics.zk.watch_bytes.add(out.len() as u64);
                                self.send_or_hold(net, ev.watcher, &out);
                            }
                            self.events = events;
                        }
                    }
                    // 2. The origin's answer.
                    if let Some(o) = origin.filter(|o| self.is_mine(&o.conn)) {
                        touched.push(o.conn.slot);
                        if o.op == OpCode::CreateSession {
                            let TxnOp::CreateSession { timeout_ms } = txn.op else {
                                panic!("createSession origin on {:?}", txn.op);
                            };
                            self.session_established(net, o.conn.slot, txn.session_id, timeout_ms);
                        } else {
                            if self.audit.is_some() {
                                self.audit_txn(o.conn.slot, txn, applied);
                            }
                            out.clear();
                            let sub_ops = self.take_multi_ops(&o);
                            Self::write_result(&mut out, o, txn, &applied.result, &sub_ops);
                            let at = *clock.get_or_insert_with(Clock::now);
                            self.answered(net, o, &out, txn.zxid, Some(node), at);
                            let m = &self.state.seq.metrics;
                            let since = |t: Instant| at.now.saturating_duration_since(t);
                            m.answered.record(since(node.published_at));
                            if let Some([appended, ..]) =
                                node.stages.as_ref().map(|s| s.of(txn.zxid))
                            {
                                m.zk.propagation_latency.record(since(appended));
                                m.proposed
                                    .record(appended.saturating_duration_since(o.received));
                            }
                            m.total.record(since(o.received));
                        }
                    }
                    // 3. A closed session's connections go.
                    if let TxnOp::CloseSession { ephemerals } = &txn.op {
                        // Logged once, by shard 0, as every server's DataTree does.
                        if let Some(log) = self.audit.as_ref().filter(|_| self.id == 0) {
                            for p in ephemerals {
                                log.log(
                                    &audit::Event {
                                        session: Some(txn.session_id),
                                        user: Some(log.server_user.clone()),
                                        operation: "ephemeralZNodeDeletionOnSessionCloseOrExpire",
                                        znode: Some(p),
                                        ..Default::default()
                                    },
                                    audit::Outcome::Success,
                                );
                            }
                        }
                        if let Some(slot) = self.bound.remove(&txn.session_id) {
                            self.close(net, slot);
                        }
                    }
                }
                Entry::Failed {
                    origin,
                    zxid,
                    error,
                } => {
                    if !self.is_mine(&origin.conn) {
                        continue;
                    }
                    touched.push(origin.conn.slot);
                    if self.audit.is_some() {
                        self.audit_failed(origin.conn.slot);
                    }
                    out.clear();
                    let sub_ops = self.take_multi_ops(origin);
                    match &error.multi {
                        Some(results) if origin.op == OpCode::Multi => {
                            // A failed multi answers OK with per-op errors (FinalRequestProcessor).
                            let rs: Vec<MultiResult> = results
                                .iter()
                                .zip(&sub_ops)
                                .map(|(r, op)| Self::multi_result(r, *op))
                                .collect();
                            let mut body = Vec::new();
                            request::encode_multi_response(&rs, &mut body);
                            frame_reply(&mut out, origin.xid, *zxid, Code::Ok, &body);
                        }
                        _ => frame_reply(&mut out, origin.xid, *zxid, error.code, &[]),
                    }
                    let at = *clock.get_or_insert_with(Clock::now);
                    self.answered(net, *origin, &out, *zxid, None, at);
                }
                Entry::Sync { origin, zxid, path } => {
                    if !self.is_mine(&origin.conn) {
                        continue;
                    }
                    if self.audit.is_some() {
                        self.conns
                            .get_mut(&origin.conn.slot)
                            .map(|c| c.audits.pop_front());
                    }
                    touched.push(origin.conn.slot);
                    out.clear();
                    let body = SyncResponse { path: path.clone() }.to_bytes();
                    frame_reply(&mut out, origin.xid, *zxid, Code::Ok, &body);
                    let at = *clock.get_or_insert_with(Clock::now);
                    self.answered(net, *origin, &out, *zxid, None, at);
                }
                Entry::Connect { conn, outcome } => {
                    if !self.is_mine(conn) {
                        continue;
                    }
                    match outcome {
                        ConnectOutcome::Resumed {
                            session_id,
                            timeout_ms,
                        } => {
                            touched.push(conn.slot);
                            self.session_established(net, conn.slot, *session_id, *timeout_ms);
                        }
                        ConnectOutcome::Expired => {
                            let ro = self.conns[&conn.slot].read_only_byte;
                            out.clear();
                            frame_record(
                                &mut out,
                                &ConnectResponse {
                                    protocol_version: 0,
                                    timeout_ms: 0,
                                    session_id: 0,
                                    passwd: Some(vec![0u8; session::PASSWORD_LEN].into()),
                                    read_only: ro.map(|_| false),
                                },
                            );
                            net.send(conn.slot, &out);
                            self.close(net, conn.slot);
                        }
                        ConnectOutcome::Refused => self.close(net, conn.slot),
                        ConnectOutcome::ReadOnly {
                            session_id,
                            timeout_ms,
                        } => {
                            touched.push(conn.slot);
                            if let Some(c) = self.conns.get_mut(&conn.slot) {
                                c.read_only = true;
                            }
                            self.session_established(net, conn.slot, *session_id, *timeout_ms);
                        }
                    }
                }
            }
        }
        self.scratch = out;
        // 3. The view moves; 4. queued reads run against it.
        if let Some(root) = &commit.root {
            self.view = root.clone();
            self.view_at = commit.zxid;
            self.root_asked = false;
            touched.append(&mut self.root_waiters);
        } else if self.view_at == self.view_zxid && commit.zxid != self.view_zxid {
            // The view falls behind: let the old version go rather than keep every
            // node the core replaces from now on alive (a read asks for a new one).
            self.view = DataTree::new();
        }
        self.view_zxid = commit.zxid;
        touched.sort_unstable();
        touched.dedup();
        for slot in touched {
            self.drain_queue(net, slot);
        }
        if commit.root.is_some() {
            self.answer_ready_fourlw(net);
        }
    }

    /// Whether the view is the state after the last commit processed, which every read
    /// (and four-letter word) needs: a client may have seen that commit's answer. If
    /// not, the core is asked for a root once; its commit runs the waiting reads.
    fn view_is_current(&mut self) -> bool {
        if self.view_at == self.view_zxid || self.state.settings.broken_reads_on_old_view {
            return true;
        }
        if !self.root_asked {
            self.root_asked = true;
            self.outbox.push(ToSeq::WantRoot);
        }
        false
    }

    /// `q`, unless it is a read that must wait for a current view: then it goes back to
    /// the head of `slot`'s queue (what follows waits behind it) until the root comes.
    /// Pings need no view.
    fn unless_waiting_for_root(&mut self, slot: usize, q: Queued) -> Option<Queued> {
        if q.req.is_write() || matches!(q.req, Request::Ping) || self.view_is_current() {
            return Some(q);
        }
        self.root_waiters.push(slot);
        if let Some(c) = self.conns.get_mut(&slot) {
            c.queue.push_front(q);
        }
        None
    }

    /// The audit lines of a committed write of this shard's connection `slot`.
    fn audit_txn(&mut self, slot: usize, txn: &crate::txn::Txn, applied: &crate::txn::Applied) {
        let Some((log, p, who)) = self.next_audit(slot) else {
            return;
        };
        let line = |op, znode: Option<&str>, mode, acl: Option<String>, outcome| {
            log.log(
                &audit::Event {
                    operation: op,
                    znode,
                    znode_type: mode,
                    acl,
                    ..who.clone()
                },
                outcome,
            )
        };
        match (&txn.op, &applied.result) {
            (TxnOp::Multi(ops), OpResult::Multi(results)) => {
                let mut failed = false;
                for (op, r) in ops.iter().zip(results) {
                    if matches!(r, OpResult::Error(_)) {
                        failed = true;
                        continue;
                    }
                    match (op, r) {
                        (TxnOp::Create { .. }, OpResult::Created { path, .. }) => {
                            let mode = p
                                .multi_modes
                                .iter()
                                .find(|(q, _)| q == path)
                                .map(|(_, m)| *m);
                            line("create", Some(path), mode, None, audit::Outcome::Success)
                        }
                        (TxnOp::Delete { path } | TxnOp::DeleteContainer { path }, _) => {
                            line("delete", Some(path), None, None, audit::Outcome::Success)
                        }
                        (TxnOp::SetData { path, .. }, _) => {
                            line("setData", Some(path), None, None, audit::Outcome::Success)
                        }
                        _ => {}
                    }
                }
                if failed {
                    line("multiOperation", None, None, None, audit::Outcome::Failure);
                }
            }
            (_, OpResult::Error(_)) => {
                line(p.op, Some(&p.path), p.mode, p.acl, audit::Outcome::Failure)
            }
            (_, OpResult::Created { path, .. }) => {
                line(p.op, Some(path), p.mode, p.acl, audit::Outcome::Success)
            }
            _ => line(p.op, Some(&p.path), p.mode, p.acl, audit::Outcome::Success),
        }
    }

    /// The audit line of a write of `slot` that failed validation.
    fn audit_failed(&mut self, slot: usize) {
        let Some((log, p, who)) = self.next_audit(slot) else {
            return;
        };
        let multi = p.op == "multiOperation";
        log.log(
            &audit::Event {
                operation: p.op,
                znode: (!multi).then_some(p.path.as_str()),
                znode_type: p.mode,
                acl: p.acl,
                ..who
            },
            audit::Outcome::Failure,
        );
    }

    /// With the audit log on: the log, the oldest write of `slot` waiting for its audit
    /// line, and who made it (session, users, address).
    fn next_audit(
        &mut self,
        slot: usize,
    ) -> Option<(Arc<audit::AuditLog>, PendingAudit, audit::Event<'static>)> {
        let log = self.audit.clone()?;
        let c = self.conns.get_mut(&slot)?;
        let p = c.audits.pop_front()??;
        let who = audit::Event {
            session: Some(c.session_id),
            user: audit::users(&c.ids),
            ip: Some(c.peer.ip()),
            ..Default::default()
        };
        Some((log, p, who))
    }

    fn watches_empty(&self) -> bool {
        self.watches.count() == 0
    }

    fn session_established(
        &mut self,
        net: &mut dyn Net,
        slot: usize,
        session_id: i64,
        timeout_ms: i32,
    ) {
        let c = self
            .conns
            .get_mut(&slot)
            .expect("established on unknown slot");
        c.phase = Phase::Active;
        c.session_id = session_id;
        c.timeout_ms = timeout_ms;
        let mut out = Vec::new();
        frame_record(
            &mut out,
            &ConnectResponse {
                protocol_version: 0,
                timeout_ms,
                session_id,
                passwd: Some(session::password(session_id).to_vec().into()),
                read_only: c.read_only_byte.map(|_| c.read_only),
            },
        );
        net.send(slot, &out);
        if let Some(old) = self.bound.insert(session_id, slot) {
            if old != slot {
                self.close(net, old);
            }
        }
        // Frames the client pipelined behind its connect request (setWatches, auth).
        self.parse(net, slot);
    }

    fn answered(
        &mut self,
        net: &mut dyn Net,
        o: Origin,
        bytes: &[u8],
        zxid: i64,
        node: Option<&Node>,
        at: Clock,
    ) {
        let c = self
            .conns
            .get_mut(&o.conn.slot)
            .expect("answer on unknown slot");
        assert!(c.in_flight > 0, "answer without a write in flight");
        c.in_flight -= 1;
        c.stats.answered_at(o.op, o.received, zxid, at);
        self.state.request_done_at(o.received, at.now);
        self.state.responded(bytes.len());
        if let Some(ob) = &mut self.observe {
            ob.write_answered(&o, c.session_id, c.peer, bytes.len(), zxid, node);
        }
        self.outstanding -= 1;
        if c.large_writes.front().is_some_and(|(x, _)| *x == o.xid) {
            let (_, n) = c.large_writes.pop_front().expect("front exists");
            self.state.release_large(i64::from(n));
        }
        net.send(o.conn.slot, bytes);
        if o.op == OpCode::CloseSession {
            self.close(net, o.conn.slot);
        }
    }

    /// Runs the queued requests of `slot` whose turn has come.
    fn drain_queue(&mut self, net: &mut dyn Net, slot: usize) {
        loop {
            let Some(c) = self.conns.get_mut(&slot) else {
                return;
            };
            if c.phase == Phase::Closing || c.bulk.is_some() {
                return;
            }
            let Some(front) = c.queue.front() else {
                break;
            };
            if !front.req.is_write() && c.in_flight > 0 {
                break;
            }
            let q = c.queue.pop_front().expect("front exists");
            let Some(q) = self.unless_waiting_for_root(slot, q) else {
                break;
            };
            self.dispatch(net, slot, q);
        }
        if let Some(c) = self.conns.get_mut(&slot) {
            let busy = c.queue.len() + c.in_flight >= MAX_OUTSTANDING_PER_CONN;
            if busy != c.paused {
                c.paused = busy;
                net.pause(slot, busy);
            }
        }
        // Input held back while the connection was connecting or paused.
        self.parse(net, slot);
    }

    /// The sub-op opcodes of the oldest multi in flight on the origin's connection.
    fn take_multi_ops(&mut self, o: &Origin) -> Vec<OpCode> {
        if o.op != OpCode::Multi {
            return Vec::new();
        }
        let c = self
            .conns
            .get_mut(&o.conn.slot)
            .expect("multi answer on unknown slot");
        c.multi_ops
            .pop_front()
            .expect("multi answered without its ops recorded")
    }

    /// One op's entry in a multi response; `op` is the sub-op's own opcode.
    fn multi_result(r: &OpResult, op: OpCode) -> MultiResult {
        match r {
            OpResult::Created { path, .. } if op == OpCode::Create => {
                MultiResult::Create { path: path.clone() }
            }
            OpResult::Created { path, stat } => MultiResult::Create2 {
                path: path.clone(),
                stat: stat.clone(),
            },
            OpResult::Deleted => MultiResult::Delete,
            OpResult::Stat(s) => MultiResult::SetData(s.clone()),
            OpResult::Checked => MultiResult::Check,
            OpResult::Error(c) => MultiResult::Error(*c),
            other => panic!("unexpected result inside multi: {other:?}"),
        }
    }

    /// Encodes the answer to a committed write, in the layout its opcode asks for.
    ///
    /// The body is written straight into `out` (the shard's reused scratch buffer),
    /// field by field: no record is built and no vector is grown per reply. A setData's
    /// answer went through a fresh `Vec` grown five times and copied once more; under
    /// the Java client's load that was ~3% of a follower's CPU (perf, see
    /// docs/write-path.md).
    fn write_result(
        out: &mut Vec<u8>,
        o: Origin,
        txn: &crate::txn::Txn,
        result: &OpResult,
        sub_ops: &[OpCode],
    ) {
        let zxid = txn.zxid;
        match (o.op, result) {
            // A reconfig is a setData of /zookeeper/config; its answer is the new
            // config and its Stat (FinalRequestProcessor's GetDataResponse).
            (OpCode::Reconfig, OpResult::Stat(stat)) => {
                let TxnOp::SetData { data, .. } = &txn.op else {
                    panic!("reconfig answered from {:?}", txn.op);
                };
                frame::write_reply(out, o.xid, zxid, Code::Ok, |b| {
                    b.put_buffer(data.as_deref());
                    stat.write(b);
                });
            }
            // CreateResponse{path}.
            (OpCode::Create, OpResult::Created { path, .. }) => {
                frame::write_reply(out, o.xid, zxid, Code::Ok, |b| b.put_string(path));
            }
            // Create2Response{path, stat}.
            (
                OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl,
                OpResult::Created { path, stat },
            ) => frame::write_reply(out, o.xid, zxid, Code::Ok, |b| {
                b.put_string(path);
                stat.write(b);
            }),
            // SetDataResponse{stat} and SetACLResponse{stat}.
            (OpCode::SetData | OpCode::SetAcl, OpResult::Stat(stat)) => {
                frame::write_reply(out, o.xid, zxid, Code::Ok, |b| stat.write(b));
            }
            (OpCode::Multi, OpResult::Multi(results)) => {
                assert_eq!(results.len(), sub_ops.len(), "multi results and ops differ");
                let rs: Vec<MultiResult> = results
                    .iter()
                    .zip(sub_ops)
                    .map(|(r, op)| Self::multi_result(r, *op))
                    .collect();
                frame::write_reply(out, o.xid, zxid, Code::Ok, |b| {
                    request::encode_multi_response(&rs, b);
                });
            }
            (OpCode::Delete | OpCode::CloseSession | OpCode::Check, _) => {
                frame::write_reply_header(out, o.xid, zxid, Code::Ok);
            }
            (op, r) => panic!("no reply layout for {op:?} with {r:?}"),
        }
    }

    /// Logs a refused connection: the first at once, then how many more every
    /// `REFUSED_REPORT_INTERVAL` (a connection storm must not flood the log).
    fn refused(&mut self, peer: SocketAddr, why: super::stats::Refusal) {
        self.refusals.0 += 1;
        if self
            .refusals
            .1
            .is_some_and(|t| t.elapsed() < super::driver::REFUSED_REPORT_INTERVAL)
        {
            return;
        }
        let more = match self.refusals.0 {
            1 => String::new(),
            n => format!(" ({} refused since the last report)", n),
        };
        match why {
            super::stats::Refusal::MaxCnxns(max) => eprintln!(
                "ringkeeper: too many connections - max is {max} (maxCnxns): refused {}{more}",
                peer
            ),
            super::stats::Refusal::PerIp(max) => eprintln!(
                "ringkeeper: too many connections from {} - max is {max} (maxClientCnxns){more}",
                peer.ip()
            ),
        }
        self.refusals = (0, Some(Instant::now()));
    }

    /// Closes connections whose handshake is not done and that sent nothing for
    /// `nio.sessionlessCnxnTimeout` (ZooKeeper's NIOServerCnxnFactory expires them
    /// the same way): idle sockets must not hold connection slots.
    fn expire_sessionless(&mut self, net: &mut dyn Net) {
        let limit = self.state.settings.sessionless_timeout;
        let mut idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Fresh && c.last_active.elapsed() >= limit)
            .map(|(slot, _)| *slot)
            .collect();
        idle.sort_unstable();
        for slot in idle {
            let c = &self.conns[&slot];
            eprintln!(
                "ringkeeper: closing {}: no handshake within {} ms (nio.sessionlessCnxnTimeout)",
                c.peer,
                limit.as_millis()
            );
            self.close(net, slot);
        }
    }

    /// The periodic tick: reports active sessions to the sequencer, and closes
    /// connections idle before their handshake.
    pub fn tick(&mut self, net: &mut dyn Net) {
        self.expire_sessionless(net);
        if let Some(o) = &mut self.observe {
            o.fold();
            if let Some(l) = &o.load {
                self.state.publish_namespaces(self.id, &l.namespaces);
            }
        }
        if !self.touched.is_empty() {
            self.touched.remove(&0);
            let ids: Vec<i64> = self.touched.drain().collect();
            if !ids.is_empty() {
                self.outbox.push(ToSeq::Touch(ids));
            }
        }
    }

    /// Answers a four-letter word. Words that show connections or watches need every
    /// shard's current picture: this shard asks the others to publish and answers once
    /// they all have (`answer_ready_fourlw`), without blocking its loop.
    fn four_letter_word(&mut self, net: &mut dyn Net, slot: usize, cmd: crate::fourlw::Command) {
        let gen = self.ask_pictures();
        self.pending_fourlw.push((slot, cmd, gen));
        self.answer_ready_fourlw(net);
    }

    /// Publishes this shard's picture and asks the others for theirs; the generation
    /// to wait for.
    fn ask_pictures(&mut self) -> u64 {
        let gen = self.state.next_picture_gen();
        self.publish_picture(gen);
        for (i, inbox) in self.state.shard_inboxes().iter().enumerate() {
            if i != self.id {
                inbox.push_unbounded(ToShard::Publish {
                    gen,
                    requester: self.id,
                });
            }
        }
        gen
    }

    fn answer_ready_fourlw(&mut self, net: &mut dyn Net) {
        if self.pending_fourlw.is_empty() && self.pending_inspect.is_empty() {
            return;
        }
        if !self.view_is_current() {
            return; // the root's commit calls again
        }
        let mut i = 0;
        while i < self.pending_inspect.len() {
            if !self.state.pictures_ready(self.pending_inspect[i].0) {
                i += 1;
                continue;
            }
            let (_, job) = self.pending_inspect.swap_remove(i);
            (job.0)(&self.state, &self.view, self.view_zxid);
        }
        let mut i = 0;
        while i < self.pending_fourlw.len() {
            let (slot, cmd, gen) = self.pending_fourlw[i];
            if !self.state.pictures_ready(gen) {
                i += 1;
                continue;
            }
            self.pending_fourlw.swap_remove(i);
            if let Some(c) = self.conns.get(&slot) {
                if cmd == crate::fourlw::Command::Crst
                    && self.state.mode().is_some()
                    && self.state.settings.fourlw_whitelist.allows(cmd.as_str())
                {
                    // ZooKeeper resets the connections of the factory the word came
                    // in on: plain ones over the plain port, TLS ones over TLS. This
                    // shard's at once (a `cons` after this sees them reset), the other
                    // shards' through their inboxes, ahead of any later picture request.
                    let secure = c.secure;
                    self.reset_conn_stats(secure);
                    self.state.reset_conn_stats(Some(self.id), secure);
                }
                let text = fourlw::run(cmd, &self.state, &self.view, self.view_zxid);
                net.send(slot, text.as_bytes());
                net.close(slot);
            }
        }
    }

    fn publish_picture(&mut self, gen: u64) {
        if let Some(o) = &mut self.observe {
            o.fold();
        }
        let load = self.observe.as_ref().and_then(|o| o.load.clone());
        self.state.publish_shard(
            self.id,
            gen,
            self.snapshot_conns(),
            self.watch_summary(),
            load,
        );
    }

    fn snapshot_conns(&self) -> Vec<fourlw::ConnLine> {
        self.conns
            .values()
            .map(|c| fourlw::ConnLine {
                peer: c.peer,
                session_id: c.session_id,
                timeout_ms: c.timeout_ms,
                queued: c.queue.len() + c.in_flight,
                stats: c.stats.clone(),
                secure: c.secure,
            })
            .collect()
    }

    fn watch_summary(&self) -> fourlw::WatchSummary {
        let by_conn = self
            .watches
            .by_watcher()
            .into_iter()
            .map(|(slot, paths)| (self.conns.get(&slot).map_or(0, |c| c.session_id), paths))
            .collect();
        fourlw::WatchSummary {
            total: self.watches.count(),
            by_session: by_conn,
        }
    }

    /// Ends the loop pass: publishes the watch count, reads the chain to its end (see
    /// the chain's header for why in this order), and hands this pass's requests to
    /// the core in one batch. What does not fit stays and is retried on the next pass
    /// (the core's answers wake us).
    pub fn flush(&mut self, net: &mut dyn Net) {
        let watches = self.watches.count();
        self.signals.watches.store(watches as i64, Ordering::SeqCst);
        self.state.publish_outstanding(self.id, self.outstanding);
        self.state.publish_watches(self.id, watches);
        self.advance(net);
        if !self.outbox.is_empty() {
            self.to_seq.push_all(&mut self.outbox);
        }
    }

    /// Requests this shard holds back because the core's mailbox is full.
    pub fn held_back(&self) -> usize {
        self.outbox.len()
    }
}
