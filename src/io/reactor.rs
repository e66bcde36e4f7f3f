//! The per-shard event loop: one io_uring, one provided-buffer ring, a slab of
//! connections, listeners, a wake-up eventfd, a periodic tick and a one-shot timer.
//!
//! See the module header of `io` for the contract and an example.

use std::io;
use std::marker::PhantomData;
use std::mem;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use super::bufring::BufRing;
use super::probe::{build_ring, kernel_release, ProbeError};
use super::{net, Config};

/// Identifies one connection of one reactor.
///
/// A token is never reused while the kernel may still complete an operation for
/// it, and carries a generation so that a stale token (kept by the caller after
/// `on_closed`) is ignored by every `Ops` method instead of hitting a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(u64);

impl Token {
    fn new(index: usize, gen: u32) -> Token {
        Token(u64::from(gen) << 32 | index as u64)
    }
    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    fn gen(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// A stable number for logs and maps (unique among live tokens of one reactor).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The token `as_u64` returned. A number that names no live connection is
    /// ignored by every `Ops` method, like any stale token.
    pub fn from_u64(v: u64) -> Token {
        Token(v)
    }
}

/// Identifies a listener of one reactor (the order of `listen` calls, from 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(pub u32);

/// Why a connection closed; delivered once per connection by `Handler::on_closed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The caller called `Ops::close` (output was flushed first).
    Local,
    /// The caller called `Ops::abort` (pending output was dropped).
    Aborted,
    /// The peer closed its side (receive returned 0); our pending output was flushed.
    PeerClosed,
    /// A receive or send failed with this errno (e.g. ECONNRESET, EPIPE).
    Error(i32),
}

/// What `Reactor::run_once` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    /// `StopHandle::stop` or `Ops::stop` was called; the loop should end.
    Stopped,
}

/// The callbacks of one reactor. Each gets `&mut Ops` to queue output, pause, resume
/// or close any connection. All run on the reactor's thread, inside `run_once`.
pub trait Handler {
    /// A listener accepted `token` from `peer`. Receiving has started already.
    fn on_accept(&mut self, ops: &mut Ops, token: Token, peer: SocketAddr, listener: ListenerId) {
        let _ = (ops, token, peer, listener);
    }
    /// Bytes received on `token`, in order. The slice is valid only during the call
    /// (its buffer goes back to the kernel right after). May still be called a few
    /// times after `Ops::pause` until the kernel acknowledges the cancel; never after
    /// `close`/`abort` or end of stream.
    fn on_data(&mut self, ops: &mut Ops, token: Token, data: &[u8]);
    /// Offered first for each connection accepted on a listener made with
    /// `Reactor::listen_handing_off`: return the stream to keep it on this reactor
    /// (`on_accept` follows), or `None` when the handler took it elsewhere (another
    /// reactor `Ops::adopt`s it).
    fn on_accept_stream(
        &mut self,
        ops: &mut Ops,
        stream: TcpStream,
        peer: SocketAddr,
        listener: ListenerId,
    ) -> Option<TcpStream> {
        let _ = (ops, peer, listener);
        Some(stream)
    }
    /// `token` is closed: its descriptor is closed, no operation references it, and
    /// no further event names it. Called exactly once per accepted or adopted token.
    fn on_closed(&mut self, ops: &mut Ops, token: Token, reason: CloseReason);
    /// The peer closed its sending side (receive returned 0). Return true to close the
    /// connection once its output is flushed (`on_closed(PeerClosed)` follows), or false
    /// to keep it open for output the handler still owes the peer: it is no longer read
    /// and the handler closes it later with `Ops::close` (half-close, as a client that
    /// sends `ruok` and shuts down its side expects its answer).
    fn on_end_of_stream(&mut self, ops: &mut Ops, token: Token) -> bool {
        let _ = (ops, token);
        true
    }
    /// Some `Waker` was woken since the last `on_wake` (wake-ups are coalesced).
    fn on_wake(&mut self, ops: &mut Ops) {
        let _ = ops;
    }
    /// A file operation queued with `Ops::write_at` or `Ops::fsync` completed: `result`
    /// is the kernel's (bytes written, or 0 for a sync; a negative errno on failure).
    /// Called exactly once per operation.
    fn on_file(&mut self, ops: &mut Ops, tag: u64, result: i32) {
        let _ = (ops, tag, result);
        panic!("file completion {tag} ({result}) for a handler that queues none");
    }
    /// The periodic tick (`Config::tick`) fired. Ticks are at least `tick` apart;
    /// a slow pass delays them, it never bunches them.
    fn on_tick(&mut self, ops: &mut Ops) {
        let _ = ops;
    }
}

/// Wakes a reactor from any thread. `Send + Sync + Clone`; cheap when repeated.
///
/// A wake costs a system call only when the reactor sleeps: `wake` sets the pending
/// flag, and writes the eventfd only if the reactor announced that it is about to wait
/// (and no earlier wake wrote it since). A reactor that is running sees the flag at the
/// end of its pass and calls `on_wake` then, without waiting. The two sides are a
/// Dekker pair (the waker: flag, fence, read `sleeping`; the reactor: `sleeping`,
/// fence, read the flag), so a wake is never lost. The flag is cleared (with acquire)
/// before `on_wake` runs, so an item pushed before a `wake` that found the flag already
/// set is seen by that `on_wake`.
///
/// Why an eventfd and not IORING_OP_MSG_RING: a waker must work from threads that
/// own no ring (the election thread, the snapshotter, tests), and a SINGLE_ISSUER
/// ring cannot be submitted to by another thread, so MSG_RING would only serve
/// ring-to-ring wakes. With coalescing a wake costs at most one `write(2)` per
/// receiving pass, which the benchmark in `benches/io_echo.rs` does not see.
#[derive(Clone)]
pub struct Waker {
    shared: Arc<WakeShared>,
}

struct WakeShared {
    fd: OwnedFd,
    pending: AtomicBool,
    /// The reactor is in (or about to enter) its wait.
    sleeping: AtomicBool,
    /// The eventfd was written since the reactor last went to sleep.
    signalled: AtomicBool,
    /// Eventfd writes, for tests and measurements.
    signals: std::sync::atomic::AtomicU64,
}

impl Waker {
    /// Makes the reactor report `on_wake` soon. Never blocks.
    pub fn wake(&self) {
        let s = &self.shared;
        if s.pending.swap(true, Ordering::SeqCst) {
            return;
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        if s.sleeping.load(Ordering::SeqCst) && !s.signalled.swap(true, Ordering::SeqCst) {
            s.signals.fetch_add(1, Ordering::Relaxed);
            net::eventfd_signal(s.fd.as_raw_fd());
        }
    }

    /// Eventfd writes this waker's reactor received so far (wakes of a running reactor
    /// cost none).
    pub fn signals(&self) -> u64 {
        self.shared.signals.load(Ordering::Relaxed)
    }
}

/// Stops a reactor from any thread: `run_once` returns `Status::Stopped` at its next
/// pass (it is woken if it is waiting).
#[derive(Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    waker: Waker,
}

impl StopHandle {
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// Receive state of one connection: at most one multishot receive in the kernel.
#[derive(Default)]
struct RecvState {
    /// A multishot receive is in the kernel (its final completion has not arrived).
    armed: bool,
    /// We asked the kernel to cancel it.
    cancelling: bool,
    /// The peer closed its side; never receive again (the handler kept the connection
    /// open to finish its output, see `Handler::on_end_of_stream`).
    eof: bool,
}

struct Conn {
    /// Owned; closed by a ring `Close` operation when nothing references it.
    fd: RawFd,
    gen: u32,
    peer: SocketAddr,
    /// Bytes the caller queued this pass (and earlier, if a send was in flight).
    out: Vec<u8>,
    /// Bytes handed to the kernel: untouched while `send_inflight`.
    inflight: Vec<u8>,
    /// How much of `inflight` the kernel has sent.
    sent: usize,
    send_inflight: bool,
    send_cancelling: bool,
    recv: RecvState,
    paused_by_user: bool,
    /// Output above `max_output_bytes`: stop reading until it drains to half.
    paused_by_output: bool,
    closing: Option<CloseReason>,
    close_inflight: bool,
    /// In `Ops::dirty` already.
    dirty: bool,
}

impl Conn {
    fn queued(&self) -> usize {
        self.out.len() + self.inflight.len() - self.sent
    }
    /// Graceful closes flush first; aborts and errors drop output.
    fn flushes(&self) -> bool {
        matches!(
            self.closing,
            Some(CloseReason::Local | CloseReason::PeerClosed)
        )
    }
}

/// What the handler may do during a callback (and the caller between passes, via
/// `Reactor::ops`). Every method ignores tokens that are closed or closing, except
/// the queries, which answer `None`/`false`.
pub struct Ops {
    conns: Slab<Conn>,
    /// Connections whose state changed this pass; reconciled with the kernel by
    /// `flush` before the next wait. Bounded by the slab size (one entry per conn).
    dirty: Vec<u32>,
    next_gen: u32,
    max_output_bytes: usize,
    stop: Arc<AtomicBool>,
    /// File operations queued this pass, submitted by `flush`.
    file_sqes: Vec<squeue::Entry>,
    /// File operations in the kernel.
    files_inflight: usize,
    /// Connections this reactor holds at most.
    max_connections: usize,
    /// The earliest pass asked for with `wake_at` this pass, armed by `flush`.
    wake_at: Option<Instant>,
}

/// The most tag bits a file operation carries (the rest of `user_data` is its kind).
pub const FILE_TAG_BITS: u32 = 48;

impl Ops {
    /// Queues a positional write of `len` bytes at `ptr` to `fd` at `offset`, submitted
    /// at the end of this pass; its completion is `Handler::on_file(tag)`. With
    /// `then_fdatasync` an fdatasync of `fd` is linked after it (it runs only if the
    /// write succeeded; else it completes with ECANCELED) and completes as
    /// `on_file(tag | SYNC_TAG)`.
    ///
    /// # Safety
    /// The `len` bytes at `ptr` must stay valid and unmoved, and `fd` open, until
    /// `on_file` reports this operation (and its sync) complete, even if the reactor is
    /// dropped first (its drop waits for the kernel, bounded, and then leaks).
    ///
    /// # Panics
    /// If `tag` does not fit [`FILE_TAG_BITS`] - 1 bits.
    pub unsafe fn write_at(
        &mut self,
        fd: RawFd,
        ptr: *const u8,
        len: usize,
        offset: u64,
        tag: u64,
        then_fdatasync: bool,
    ) {
        assert!(tag < SYNC_TAG, "file tag {tag} too wide");
        let len = u32::try_from(len).expect("one write under 4 GiB");
        let mut w = opcode::Write::new(types::Fd(fd), ptr, len)
            .offset(offset)
            .build()
            .user_data(user_data64(Kind::File, tag));
        if then_fdatasync {
            w = w.flags(squeue::Flags::IO_LINK);
        }
        self.file_sqes.push(w);
        self.files_inflight += 1;
        if then_fdatasync {
            self.file_sqes.push(
                opcode::Fsync::new(types::Fd(fd))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(user_data64(Kind::File, tag | SYNC_TAG)),
            );
            self.files_inflight += 1;
        }
    }

    /// File operations queued or in the kernel.
    pub fn files_inflight(&self) -> usize {
        self.files_inflight
    }

    /// Asks for a pass at `at` at the latest, even if nothing else completes by then:
    /// a one-shot timer, which a pass that runs earlier for other reasons does not
    /// cancel (the handler decides again in each pass what it still waits for). Of
    /// several asked for, the earliest counts.
    pub fn wake_at(&mut self, at: Instant) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// Takes over a connected stream (one another reactor accepted and handed over):
    /// it behaves like an accepted one from the next pass on, except that `on_accept`
    /// is not called.
    ///
    /// # Errors
    /// Setting TCP_NODELAY or reading the peer address failed; or this reactor holds
    /// `max_connections` already (`ErrorKind::OutOfMemory`; the stream is closed).
    pub fn adopt(&mut self, stream: TcpStream) -> io::Result<Token> {
        if self.conns.len() >= self.max_connections {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "max_connections reached",
            ));
        }
        let (fd, peer) = net::prepare_stream(stream)?;
        Ok(self.insert(fd, peer))
    }

    fn conn_mut(&mut self, token: Token) -> Option<&mut Conn> {
        self.conns
            .get_mut(token.index())
            .filter(|c| c.gen == token.gen() && c.closing.is_none())
    }

    fn mark(&mut self, index: usize) {
        let c = &mut self.conns[index];
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(index as u32);
        }
    }

    /// Appends `bytes` to the connection's output; sent at the end of this pass.
    /// Returns false (and drops the bytes) if `token` is closed or closing.
    pub fn send(&mut self, token: Token, bytes: &[u8]) -> bool {
        match self.output(token) {
            Some(out) => {
                out.extend_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    /// The connection's output buffer, to encode replies in place. Bytes appended are
    /// sent at the end of this pass. Do not remove bytes that were there before.
    pub fn output(&mut self, token: Token) -> Option<&mut Vec<u8>> {
        self.conn_mut(token)?;
        self.mark(token.index());
        Some(&mut self.conns[token.index()].out)
    }

    /// Output bytes queued and not yet sent (including those the kernel is sending).
    pub fn output_len(&self, token: Token) -> Option<usize> {
        let c = self
            .conns
            .get(token.index())
            .filter(|c| c.gen == token.gen())?;
        Some(c.queued())
    }

    /// Stops receiving on `token` until `resume` (server-side backpressure).
    pub fn pause(&mut self, token: Token) {
        if let Some(c) = self.conn_mut(token) {
            c.paused_by_user = true;
            self.mark(token.index());
        }
    }

    /// Undoes `pause`. Receiving restarts unless output is above the bound.
    pub fn resume(&mut self, token: Token) {
        if let Some(c) = self.conn_mut(token) {
            c.paused_by_user = false;
            self.mark(token.index());
        }
    }

    /// Whether receiving is stopped, by `pause` or by output above the bound.
    pub fn is_paused(&self, token: Token) -> bool {
        self.conns
            .get(token.index())
            .filter(|c| c.gen == token.gen())
            .is_some_and(|c| c.paused_by_user || c.paused_by_output)
    }

    /// Closes gracefully: stops receiving, sends the queued output, then closes.
    /// `on_closed(Local)` follows. A peer that never reads keeps the connection
    /// until `abort`.
    pub fn close(&mut self, token: Token) {
        self.begin_close(token, CloseReason::Local);
    }

    /// Closes now: cancels receive and send, drops output. `on_closed(Aborted)` follows.
    pub fn abort(&mut self, token: Token) {
        if let Some(c) = self
            .conns
            .get_mut(token.index())
            .filter(|c| c.gen == token.gen())
        {
            if matches!(
                c.closing,
                None | Some(CloseReason::Local | CloseReason::PeerClosed)
            ) {
                c.closing = Some(CloseReason::Aborted);
                self.mark(token.index());
            }
        }
    }

    /// The connection failed with `errno`: drop its output and close (an abort
    /// already under way keeps its reason).
    fn fail(&mut self, index: usize, errno: i32) {
        let c = &mut self.conns[index];
        if c.closing.is_none() || c.flushes() {
            c.closing = Some(CloseReason::Error(errno));
        }
        self.mark(index);
    }

    fn begin_close(&mut self, token: Token, reason: CloseReason) {
        if let Some(c) = self.conn_mut(token) {
            c.closing = Some(reason);
            self.mark(token.index());
        }
    }

    /// Whether `token` is a live connection not yet closing.
    pub fn is_open(&self, token: Token) -> bool {
        self.conns
            .get(token.index())
            .is_some_and(|c| c.gen == token.gen() && c.closing.is_none())
    }

    /// The peer's address (for `ip` ACLs and `cons`).
    pub fn peer_addr(&self, token: Token) -> Option<SocketAddr> {
        let c = self
            .conns
            .get(token.index())
            .filter(|c| c.gen == token.gen())?;
        Some(c.peer)
    }

    /// Connections in the slab, closing ones included.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Makes `run_once` return `Status::Stopped` at its next pass.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }

    fn insert(&mut self, fd: OwnedFd, peer: SocketAddr) -> Token {
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let index = self.conns.insert(Conn {
            fd: fd.into_raw_fd(),
            gen,
            peer,
            out: Vec::new(),
            inflight: Vec::new(),
            sent: 0,
            send_inflight: false,
            send_cancelling: false,
            recv: RecvState::default(),
            paused_by_user: false,
            paused_by_output: false,
            closing: None,
            close_inflight: false,
            dirty: false,
        });
        assert!(index <= u32::MAX as usize);
        self.mark(index);
        Token::new(index, gen)
    }
}

/// The kinds of operation, in the top byte of `user_data`; the low 32 bits hold the
/// connection index or listener id. Completions are routed by these alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Cancel = 4,
    Close = 5,
    Wake = 6,
    Tick = 7,
    File = 8,
    Timer = 9,
}

/// Set in a file operation's tag for the fdatasync linked after a write.
pub const SYNC_TAG: u64 = 1 << (FILE_TAG_BITS - 1);

fn user_data64(kind: Kind, tag: u64) -> u64 {
    assert!(tag < 1 << FILE_TAG_BITS);
    (kind as u64) << KIND_SHIFT | tag
}

const KIND_SHIFT: u32 = 56;

fn user_data(kind: Kind, index: usize) -> u64 {
    (kind as u64) << KIND_SHIFT | index as u64
}

fn split_user_data(ud: u64) -> (Kind, usize) {
    let kind = match ud >> KIND_SHIFT {
        1 => Kind::Accept,
        2 => Kind::Recv,
        3 => Kind::Send,
        4 => Kind::Cancel,
        5 => Kind::Close,
        6 => Kind::Wake,
        7 => Kind::Tick,
        8 => Kind::File,
        9 => Kind::Timer,
        other => panic!("completion with unknown kind {other} (user_data {ud:#x})"),
    };
    (kind, (ud & 0xffff_ffff) as usize)
}

struct Listener {
    socket: TcpListener,
    armed: bool,
    /// Accepted streams are offered to `Handler::on_accept_stream` first.
    hand_off: bool,
    /// Re-arm at the next tick instead of the next pass (after EMFILE and friends,
    /// re-arming at once would spin while descriptors are exhausted).
    backoff: bool,
    /// The socket `relisten` replaced, kept open until its multishot accept has ended
    /// (cancelled): closing a descriptor does not end an accept armed on it.
    retiring: Option<TcpListener>,
}

/// Longest time `Drop` waits for the kernel to finish cancelled operations before it
/// leaks their buffers instead of freeing memory the kernel might still write.
const DROP_DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// One shard's event loop. Create it on the thread that will run it (the ring is
/// SINGLE_ISSUER), which is why it is not `Send`.
pub struct Reactor {
    // Declared first so it is dropped first: the kernel lets go of every buffer
    // below when the ring closes.
    ring: IoUring,
    bufs: BufRing,
    ops: Ops,
    listeners: Vec<Listener>,
    max_connections: usize,
    /// Accepted sockets closed at once because the slab was full.
    refused: u64,
    wake: Arc<WakeShared>,
    /// The eventfd read's target; boxed so its address is stable while in the kernel.
    wake_buf: Box<u64>,
    wake_armed: bool,
    tick: Option<Box<types::Timespec>>,
    tick_armed: bool,
    /// The one-shot timer's timespec (boxed like the tick's) and the deadline it is
    /// armed for, if it is (`Ops::wake_at`).
    timer: Box<types::Timespec>,
    timer_at: Option<Instant>,
    /// Completions copied out of the ring, then dispatched. Bounded by the CQ size per
    /// pass (plus any spill from a full submission queue during `flush`).
    cqes: Vec<(u64, i32, u32)>,
    /// The ring runs with DEFER_TASKRUN (else COOP_TASKRUN).
    defer_taskrun: bool,
    _not_send: PhantomData<*const ()>,
}

impl Reactor {
    /// Creates the ring, the buffer ring and the wake-up eventfd.
    ///
    /// # Errors
    /// A [`ProbeError`] if the ring cannot be created or a feature is missing (call
    /// `io::probe()` first at start-up for a clean message).
    ///
    /// # Panics
    /// If `config` is invalid (`Config::validate`).
    pub fn new(config: Config) -> Result<Reactor, ProbeError> {
        config.validate();
        let (ring, defer_taskrun) =
            build_ring(config.ring_entries, config.ring_entries * super::CQ_PER_SQ)?;
        let bufs = BufRing::new(&ring, 0, config.recv_buf_count, config.recv_buf_size).map_err(
            |error| ProbeError::MissingFeature {
                name: "provided-buffer rings (IORING_REGISTER_PBUF_RING)",
                kernel: kernel_release(),
                error: Some(error),
            },
        )?;
        let fd = net::eventfd().map_err(|error| ProbeError::Setup { error })?;
        let wake = Arc::new(WakeShared {
            fd,
            pending: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            signalled: AtomicBool::new(false),
            signals: std::sync::atomic::AtomicU64::new(0),
        });
        let cq = (config.ring_entries * super::CQ_PER_SQ) as usize;
        Ok(Reactor {
            ring,
            bufs,
            ops: Ops {
                conns: Slab::with_capacity(config.max_connections.min(1024)),
                dirty: Vec::with_capacity(config.max_connections.min(1024)),
                next_gen: 0,
                max_output_bytes: config.max_output_bytes,
                stop: Arc::new(AtomicBool::new(false)),
                file_sqes: Vec::new(),
                files_inflight: 0,
                max_connections: config.max_connections,
                wake_at: None,
            },
            listeners: Vec::new(),
            max_connections: config.max_connections,
            refused: 0,
            wake,
            wake_buf: Box::new(0),
            wake_armed: false,
            tick: config.tick.map(|d| Box::new(types::Timespec::from(d))),
            tick_armed: false,
            timer: Box::new(types::Timespec::new()),
            timer_at: None,
            cqes: Vec::with_capacity(cq),
            defer_taskrun,
            _not_send: PhantomData,
        })
    }

    /// Whether this ring runs with DEFER_TASKRUN (else COOP_TASKRUN).
    pub fn defer_taskrun(&self) -> bool {
        self.defer_taskrun
    }

    /// A handle other threads use to wake this reactor.
    pub fn waker(&self) -> Waker {
        Waker {
            shared: self.wake.clone(),
        }
    }

    /// A handle other threads use to stop this reactor.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            flag: self.ops.stop.clone(),
            waker: self.waker(),
        }
    }

    /// The connection operations, for use between passes (e.g. after draining a
    /// cross-thread queue). Output queued here goes out at the next `run_once`.
    pub fn ops(&mut self) -> &mut Ops {
        &mut self.ops
    }

    /// Sockets accepted and closed at once because `max_connections` was reached.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Listens on `addr` and accepts with a multishot accept. Returns the bound address
    /// (useful with port 0). A port another socket listens on is refused, also one
    /// bound with SO_REUSEPORT (see `net::refuse_if_taken`).
    ///
    /// # Errors
    /// Socket, bind or listen failures (e.g. EADDRINUSE).
    pub fn listen(
        &mut self,
        addr: SocketAddr,
        backlog: i32,
    ) -> io::Result<(ListenerId, SocketAddr)> {
        net::refuse_if_taken(addr)?;
        let socket = net::listen_reuseport(addr, backlog)?;
        let local = socket.local_addr()?;
        let id = ListenerId(u32::try_from(self.listeners.len()).expect("listener count"));
        self.listeners.push(Listener {
            socket,
            armed: false,
            hand_off: false,
            backoff: false,
            retiring: None,
        });
        Ok((id, local))
    }

    /// Moves listener `id` to `addr`: binds there first (on failure the listener keeps
    /// its old address and the error is returned), then cancels the accept armed on
    /// the old socket, which closes once that accept has ended; the new socket is armed
    /// after that, so one accept is armed per listener at any time. Connections
    /// accepted on the old address stay. Returns the new bound address.
    ///
    /// # Errors
    /// As `listen`.
    pub fn relisten(
        &mut self,
        id: ListenerId,
        addr: SocketAddr,
        backlog: i32,
    ) -> io::Result<SocketAddr> {
        let socket = net::listen_reuseport(addr, backlog)?;
        let local = socket.local_addr()?;
        let i = id.0 as usize;
        let old = mem::replace(&mut self.listeners[i].socket, socket);
        if self.listeners[i].armed {
            // (A socket retiring from an earlier relisten whose cancel is in flight is
            // dropped here: the kernel holds its own reference until the cancel ends.)
            self.listeners[i].retiring = Some(old);
            self.push(cancel(Kind::Accept, i));
        }
        Ok(local)
    }

    /// As `listen`, but each accepted stream is offered to `Handler::on_accept_stream`,
    /// which may hand it to another reactor.
    ///
    /// # Errors
    /// As `listen`.
    pub fn listen_handing_off(
        &mut self,
        addr: SocketAddr,
        backlog: i32,
    ) -> io::Result<(ListenerId, SocketAddr)> {
        let r = self.listen(addr, backlog)?;
        self.listeners.last_mut().expect("just added").hand_off = true;
        Ok(r)
    }

    /// Takes over an already connected stream (e.g. an outgoing peer connection);
    /// it behaves like an accepted one, except that `on_accept` is not called.
    ///
    /// # Errors
    /// Setting TCP_NODELAY or reading the peer address failed; or the slab is full
    /// (`ErrorKind::OutOfMemory`).
    pub fn adopt(&mut self, stream: TcpStream) -> io::Result<Token> {
        self.ops.adopt(stream)
    }

    /// Runs passes until stopped.
    ///
    /// # Errors
    /// As `run_once`.
    pub fn run<H: Handler>(&mut self, handler: &mut H) -> io::Result<()> {
        while self.run_once(handler)? == Status::Running {}
        Ok(())
    }

    /// One pass: hand this pass's work to the kernel (at most one send per
    /// connection, receive arms and cancels, closes), wait for at least one
    /// completion unless some are ready, then dispatch every ready completion.
    ///
    /// # Errors
    /// Only unexpected `io_uring_enter` failures; EINTR and a full completion
    /// queue are handled here.
    pub fn run_once<H: Handler>(&mut self, handler: &mut H) -> io::Result<Status> {
        if self.ops.stop.load(Ordering::Acquire) {
            return Ok(Status::Stopped);
        }
        self.flush();
        let mut ready = !self.cqes.is_empty() || !self.ring.completion().is_empty();
        if !ready {
            // About to wait: announce it, then look at the wake flag once more (see
            // `Waker`): a wake that came after the last pass ran must not wait for the
            // eventfd.
            self.wake.sleeping.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            ready = self.wake.pending.load(Ordering::SeqCst);
        }
        let result = if ready {
            self.ring.submit()
        } else {
            self.ring.submit_and_wait(1)
        };
        self.wake.sleeping.store(false, Ordering::SeqCst);
        self.wake.signalled.store(false, Ordering::SeqCst);
        match result {
            Ok(_) => {}
            // A signal interrupted the wait: dispatch what there is, then go round.
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            // The completion queue overflowed and the kernel wants it drained before
            // taking more submissions: dispatching below does that.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            // Anything else (EBADF, EFAULT, EINVAL) means our ring is broken.
            Err(e) => return Err(e),
        }
        self.collect();
        self.dispatch(handler);
        // Wakes of a running reactor write no eventfd: they are taken here.
        if self.wake.pending.swap(false, Ordering::AcqRel) {
            handler.on_wake(&mut self.ops);
        }
        if self.ops.stop.load(Ordering::Acquire) {
            return Ok(Status::Stopped);
        }
        Ok(Status::Running)
    }

    /// Waits, at most `limit`, until no file operation is in the kernel, dispatching
    /// whatever completes meanwhile (for a clean stop: the caller owns those buffers).
    pub fn wait_files<H: Handler>(&mut self, handler: &mut H, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.ops.files_inflight > 0 && Instant::now() < deadline {
            self.flush();
            let ts = types::Timespec::from(Duration::from_millis(50));
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                // ETIME: the wait timed out; EINTR: a signal. Check the deadline.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Err(_) => break,
                Ok(_) => {}
            }
            self.collect();
            self.dispatch(handler);
        }
    }

    /// Arms the one-shot timer for `at`, or brings an armed one forward to it; a later
    /// deadline than the armed one waits for that one's pass, which asks again.
    fn arm_timer(&mut self, at: Instant) {
        if self.timer_at.is_some_and(|t| t <= at) {
            return;
        }
        // Relative (no ABS flag): absolute timeouts ignore time namespaces. The kernel
        // copies the timespec when it takes the entry, in this pass's submit.
        *self.timer = types::Timespec::from(at.saturating_duration_since(Instant::now()));
        let ts: *const types::Timespec = &*self.timer;
        let e = if self.timer_at.is_some() {
            // Its completion (or ENOENT, if the timer fired meanwhile) is not looked at:
            // the timer's own completion ends the wait either way.
            opcode::TimeoutUpdate::new(user_data(Kind::Timer, 0), ts)
                .build()
                .user_data(user_data(Kind::Cancel, 0))
        } else {
            opcode::Timeout::new(ts)
                .build()
                .user_data(user_data(Kind::Timer, 0))
        };
        self.push(e);
        self.timer_at = Some(at);
    }

    /// Copies ready completions out of the ring.
    fn collect(&mut self) {
        for cqe in self.ring.completion() {
            self.cqes.push((cqe.user_data(), cqe.result(), cqe.flags()));
        }
    }

    /// Pushes one SQE, submitting first when the queue is full.
    fn push(&mut self, entry: squeue::Entry) {
        // Bound: each round either pushes or submits; a submit empties the SQ unless
        // the kernel refuses, and after `PUSH_ATTEMPTS` refusals the ring is unusable.
        const PUSH_ATTEMPTS: usize = 1000;
        for _ in 0..PUSH_ATTEMPTS {
            // SAFETY: every entry we build points only at memory that stays valid and
            // untouched until its completion (send buffers, `wake_buf`), or at memory
            // the kernel copies during submission (the tick timespec).
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            match self.ring.submit() {
                Ok(_) => {}
                // EINTR: try again. EBUSY/EAGAIN: the CQ is full; spill it into
                // `cqes` (dispatched later this pass or the next) to make room.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                    ) =>
                {
                    self.collect();
                }
                Err(e) => panic!("io_uring submit failed: {e}"),
            }
        }
        panic!("submission queue stayed full after {PUSH_ATTEMPTS} submits");
    }

    /// Reconciles the kernel with what this pass asked for.
    fn flush(&mut self) {
        for e in std::mem::take(&mut self.ops.file_sqes) {
            self.push(e);
        }
        if !self.wake_armed {
            let fd = self.wake.fd.as_raw_fd();
            let ptr: *mut u64 = &mut *self.wake_buf;
            let e = opcode::Read::new(types::Fd(fd), ptr.cast(), 8)
                .build()
                .user_data(user_data(Kind::Wake, 0));
            self.push(e);
            self.wake_armed = true;
        }
        if !self.tick_armed {
            if let Some(ts) = &self.tick {
                let ts: *const types::Timespec = &**ts;
                // Relative (no ABS flag): absolute timeouts ignore time namespaces.
                let e = opcode::Timeout::new(ts)
                    .build()
                    .user_data(user_data(Kind::Tick, 0));
                self.push(e);
                self.tick_armed = true;
            }
        }
        if let Some(at) = self.ops.wake_at.take() {
            self.arm_timer(at);
        }
        for i in 0..self.listeners.len() {
            let l = &self.listeners[i];
            if !l.armed && !l.backoff {
                let e = opcode::AcceptMulti::new(types::Fd(l.socket.as_raw_fd()))
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
                    .user_data(user_data(Kind::Accept, i));
                self.push(e);
                self.listeners[i].armed = true;
            }
        }
        let mut dirty = mem::take(&mut self.ops.dirty);
        for index in dirty.drain(..) {
            self.reconcile(index as usize);
        }
        // Keep the allocation; entries pushed during reconcile (none today) survive.
        dirty.append(&mut self.ops.dirty);
        self.ops.dirty = dirty;
    }

    fn reconcile(&mut self, index: usize) {
        let max_output = self.ops.max_output_bytes;
        let mut sqes: [Option<squeue::Entry>; 3] = [None, None, None];
        {
            let Some(c) = self.ops.conns.get_mut(index) else {
                return;
            };
            c.dirty = false;
            let fd = types::Fd(c.fd);
            let aborting = c.closing.is_some() && !c.flushes();
            // Send: at most one in flight; after a full send, the next takes `out`.
            if aborting {
                c.out.clear();
                if c.send_inflight && !c.send_cancelling {
                    c.send_cancelling = true;
                    sqes[0] = Some(cancel(Kind::Send, index));
                }
            } else if !c.send_inflight {
                if c.sent == c.inflight.len() && !c.out.is_empty() {
                    mem::swap(&mut c.out, &mut c.inflight);
                    c.out.clear();
                    c.sent = 0;
                }
                if c.sent < c.inflight.len() {
                    let rest = &c.inflight[c.sent..];
                    let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
                    sqes[0] = Some(
                        opcode::Send::new(fd, rest.as_ptr(), len)
                            .flags(libc::MSG_NOSIGNAL)
                            .build()
                            .user_data(user_data(Kind::Send, index)),
                    );
                    c.send_inflight = true;
                }
            }
            // Output backpressure with hysteresis: pause above the bound, resume at half.
            let queued = c.queued();
            if queued > max_output {
                c.paused_by_output = true;
            } else if queued <= max_output / 2 {
                c.paused_by_output = false;
            }
            // Receive: armed iff open and not paused.
            let want =
                c.closing.is_none() && !c.recv.eof && !c.paused_by_user && !c.paused_by_output;
            if want && !c.recv.armed {
                sqes[1] = Some(
                    opcode::RecvMulti::new(fd, self.bufs.bgid())
                        .build()
                        .user_data(user_data(Kind::Recv, index)),
                );
                c.recv.armed = true;
            } else if !want && c.recv.armed && !c.recv.cancelling {
                c.recv.cancelling = true;
                sqes[1] = Some(cancel(Kind::Recv, index));
            }
            // Close once nothing references the descriptor and output is done.
            let drained = aborting || c.queued() == 0;
            if c.closing.is_some()
                && drained
                && !c.recv.armed
                && !c.send_inflight
                && !c.close_inflight
            {
                c.close_inflight = true;
                sqes[2] = Some(
                    opcode::Close::new(fd)
                        .build()
                        .user_data(user_data(Kind::Close, index)),
                );
            }
        }
        for e in sqes.into_iter().flatten() {
            self.push(e);
        }
    }

    fn dispatch<H: Handler>(&mut self, handler: &mut H) {
        let mut cqes = mem::take(&mut self.cqes);
        for &(ud, res, flags) in &cqes {
            let (kind, index) = split_user_data(ud);
            match kind {
                Kind::Accept => self.on_accept_cqe(handler, index, res, flags),
                Kind::Recv => self.on_recv_cqe(handler, index, res, flags),
                Kind::Send => self.on_send_cqe(index, res),
                Kind::Close => {
                    // Linux releases the descriptor whatever close returns (EIO from
                    // NFS, EINTR), so every result ends the connection. EBADF would be
                    // a double close: a bug.
                    debug_assert_ne!(res, -libc::EBADF, "double close of connection {index}");
                    let c = self.ops.conns.remove(index);
                    let token = Token::new(index, c.gen);
                    let reason = c.closing.expect("closed connection had a reason");
                    handler.on_closed(&mut self.ops, token, reason);
                }
                // Results: 0 (cancelled), ENOENT (already finished), EALREADY (running,
                // will finish): in every case the target's own completion follows or
                // has arrived, and that is what we track.
                Kind::Cancel => {}
                Kind::Wake => {
                    self.wake_armed = false;
                    match -res {
                        // 8: the counter was read. EAGAIN cannot reach us (the ring polls
                        // a non-blocking eventfd) but would only mean "nothing yet".
                        _ if res == 8 => {}
                        libc::EAGAIN | libc::EINTR => {}
                        // ECANCELED only happens in Drop.
                        libc::ECANCELED => continue,
                        other => panic!("eventfd read failed: errno {other}"),
                    }
                    // The flag is taken after the dispatch (`run_once`), for every wake
                    // whether it wrote the eventfd or not.
                }
                Kind::File => {
                    self.ops.files_inflight -= 1;
                    handler.on_file(&mut self.ops, ud & ((1 << FILE_TAG_BITS) - 1), res);
                }
                Kind::Tick => {
                    self.tick_armed = false;
                    if !timeout_expired(res, "tick timeout") {
                        continue;
                    }
                    for l in &mut self.listeners {
                        l.backoff = false;
                    }
                    handler.on_tick(&mut self.ops);
                }
                Kind::Timer => {
                    self.timer_at = None;
                    // Nothing to call, expired or cancelled: the pass that follows this
                    // completion is what `wake_at` asked for.
                    timeout_expired(res, "one-shot timer");
                }
            }
        }
        cqes.clear();
        // Completions spilled during dispatch (none: we do not push here) are kept.
        cqes.append(&mut self.cqes);
        self.cqes = cqes;
        self.bufs.publish();
    }

    fn on_accept_cqe<H: Handler>(&mut self, handler: &mut H, li: usize, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.listeners[li].armed = false;
            // The accept of a socket `relisten` replaced has ended: close it.
            self.listeners[li].retiring = None;
        }
        if res >= 0 {
            if self.ops.conns.len() >= self.max_connections {
                // Full: refuse by closing at once (the client sees a reset/EOF).
                // SAFETY: `res` is a descriptor the kernel just created for us.
                unsafe { libc::close(res) };
                self.refused += 1;
                return;
            }
            let lid = ListenerId(li as u32);
            if self.listeners[li].hand_off {
                // SAFETY: `res` is a fresh descriptor the kernel created for us.
                let stream = unsafe { TcpStream::from_raw_fd(res) };
                let Ok(peer) = stream.peer_addr() else {
                    // The peer reset before we looked: nothing to serve (dropping closes).
                    return;
                };
                let Some(stream) = handler.on_accept_stream(&mut self.ops, stream, peer, lid)
                else {
                    return;
                };
                if let Ok((fd, peer)) = net::prepare_stream(stream) {
                    let token = self.ops.insert(fd, peer);
                    handler.on_accept(&mut self.ops, token, peer, lid);
                }
                return;
            }
            // On error the peer reset before we looked (ENOTCONN from getpeername):
            // nothing to serve, and `prepare_accepted` closed the descriptor.
            if let Ok((fd, peer)) = net::prepare_accepted(res) {
                let token = self.ops.insert(fd, peer);
                handler.on_accept(&mut self.ops, token, peer, lid);
            }
            return;
        }
        match -res {
            // Out of descriptors or memory: the multishot ended; retry at the next tick
            // (or next pass without a tick) rather than spin.
            libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS => {
                self.listeners[li].backoff = self.tick.is_some();
            }
            // The connection was reset in the accept queue: harmless, keep accepting.
            libc::ECONNABORTED | libc::EPROTO | libc::EINTR | libc::EAGAIN => {}
            // Cancelled: by `relisten`, or in Drop.
            libc::ECANCELED => {}
            // EINVAL/EBADF/ENOTSOCK: our listener is broken, a bug.
            other => panic!("multishot accept failed: errno {other}"),
        }
    }

    fn on_recv_cqe<H: Handler>(&mut self, handler: &mut H, index: usize, res: i32, flags: u32) {
        let c = self
            .ops
            .conns
            .get_mut(index)
            .unwrap_or_else(|| panic!("receive completion for free slot {index}"));
        let token = Token::new(index, c.gen);
        let open = c.closing.is_none();
        if !cqueue::more(flags) {
            c.recv.armed = false;
            c.recv.cancelling = false;
            self.ops.mark(index);
        }
        if let Some(bid) = cqueue::buffer_select(flags) {
            if res > 0 && open {
                let data = self.bufs.get(bid, res as usize);
                handler.on_data(&mut self.ops, token, data);
            }
            self.bufs.recycle(bid);
        }
        if res > 0 {
            return;
        }
        match -res {
            // End of stream: flush what we owe, then close, unless the handler still
            // owes output it has not queued yet.
            0 => {
                if let Some(c) = self.ops.conns.get_mut(index) {
                    c.recv.eof = true;
                }
                if !open || handler.on_end_of_stream(&mut self.ops, token) {
                    self.ops.begin_close(token, CloseReason::PeerClosed);
                }
            }
            // No provided buffer was free: the multishot ended; it is re-armed at the
            // next flush, after this pass recycled the buffers it used.
            libc::ENOBUFS => {}
            // Our cancel (pause or close) took effect.
            libc::ECANCELED => {}
            // Interrupted or spurious: re-armed at the next flush.
            libc::EINTR | libc::EAGAIN => {}
            // The connection failed (ECONNRESET, ETIMEDOUT, EHOSTUNREACH, ...): drop
            // the output, nobody will read it.
            e => self.ops.fail(index, e),
        }
    }

    fn on_send_cqe(&mut self, index: usize, res: i32) {
        let max_output = self.ops.max_output_bytes;
        let c = self
            .ops
            .conns
            .get_mut(index)
            .unwrap_or_else(|| panic!("send completion for free slot {index}"));
        assert!(c.send_inflight, "send completion without a send in flight");
        c.send_inflight = false;
        c.send_cancelling = false;
        if res > 0 {
            c.sent += res as usize;
            assert!(
                c.sent <= c.inflight.len(),
                "sent {} of {}",
                c.sent,
                c.inflight.len()
            );
            if c.sent == c.inflight.len() {
                c.inflight.clear();
                c.sent = 0;
                // Do not let one burst pin a large buffer for the connection's life.
                if c.inflight.capacity() > max_output {
                    c.inflight = Vec::new();
                }
            }
        } else {
            match -res {
                // Cancelled by abort; or interrupted: the next flush decides.
                libc::ECANCELED | libc::EINTR | libc::EAGAIN => {}
                // 0 bytes for a non-empty send, or EPIPE/ECONNRESET/...: the peer is
                // gone; drop the output.
                e => {
                    self.ops.fail(index, if e == 0 { libc::EPIPE } else { e });
                    return;
                }
            }
        }
        self.ops.mark(index);
    }

    /// Operations the kernel still holds that reference our memory.
    fn outstanding(&self) -> usize {
        let conns = self
            .ops
            .conns
            .iter()
            .filter(|(_, c)| c.recv.armed || c.send_inflight || c.close_inflight)
            .count();
        conns
            + usize::from(self.wake_armed)
            + self.listeners.iter().filter(|l| l.armed).count()
            + self.ops.files_inflight
    }
}

/// Whether a timeout's completion says it expired (ETIME, its success), or it was
/// cancelled (ECANCELED: only in Drop). 0 cannot happen with count 0; anything else is
/// a bug.
fn timeout_expired(res: i32, what: &str) -> bool {
    match -res {
        libc::ETIME => true,
        libc::ECANCELED => false,
        other => panic!("{what} failed: errno {other}"),
    }
}

fn cancel(kind: Kind, index: usize) -> squeue::Entry {
    opcode::AsyncCancel::new(user_data(kind, index))
        .build()
        .user_data(user_data(Kind::Cancel, index))
}

impl Drop for Reactor {
    /// Cancels every operation and waits (bounded) until the kernel has let go of our
    /// buffers, then closes the remaining descriptors. No `on_closed` is delivered.
    fn drop(&mut self) {
        // File operations queued and never submitted will never complete.
        self.ops.files_inflight -= self.ops.file_sqes.len();
        self.ops.file_sqes.clear();
        let mut cancels = Vec::new();
        for (i, c) in self.ops.conns.iter() {
            if c.recv.armed {
                cancels.push(cancel(Kind::Recv, i));
            }
            if c.send_inflight {
                cancels.push(cancel(Kind::Send, i));
            }
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if l.armed {
                cancels.push(cancel(Kind::Accept, i));
            }
        }
        if self.wake_armed {
            cancels.push(cancel(Kind::Wake, 0));
        }
        if self.tick_armed {
            cancels.push(cancel(Kind::Tick, 0));
        }
        if self.timer_at.is_some() {
            cancels.push(cancel(Kind::Timer, 0));
        }
        for e in cancels {
            self.push(e);
        }
        let deadline = Instant::now() + DROP_DRAIN_LIMIT;
        while self.outstanding() > 0 && Instant::now() < deadline {
            let ts = types::Timespec::from(Duration::from_millis(50));
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                // ETIME: the wait timed out; EINTR: a signal. Check the deadline.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Err(_) => break,
                Ok(_) => {}
            }
            self.collect();
            for (ud, res, flags) in mem::take(&mut self.cqes) {
                let (kind, index) = split_user_data(ud);
                let more = cqueue::more(flags);
                match kind {
                    Kind::Recv => {
                        if let Some(bid) = cqueue::buffer_select(flags) {
                            self.bufs.recycle(bid);
                        }
                        if !more {
                            self.ops.conns[index].recv.armed = false;
                        }
                    }
                    Kind::Send => self.ops.conns[index].send_inflight = false,
                    Kind::Close => {
                        // The kernel closed the descriptor already.
                        self.ops.conns.remove(index);
                    }
                    Kind::Accept if !more => {
                        // A socket accepted during shutdown (res >= 0) is closed here.
                        if res >= 0 {
                            // SAFETY: a fresh descriptor the kernel created for us.
                            unsafe { libc::close(res) };
                        }
                        self.listeners[index].armed = false;
                    }
                    Kind::Accept => {
                        if res >= 0 {
                            // SAFETY: a fresh descriptor the kernel created for us.
                            unsafe { libc::close(res) };
                        }
                    }
                    Kind::Wake => self.wake_armed = false,
                    Kind::Tick => self.tick_armed = false,
                    Kind::Timer => self.timer_at = None,
                    // The caller owns the buffer (see `Ops::write_at`); it is told
                    // nothing more, its memory is its own to keep alive.
                    Kind::File => self.ops.files_inflight -= 1,
                    Kind::Cancel => {}
                }
            }
        }
        if self.outstanding() > 0 {
            // The kernel may still write into these: leak rather than free under it.
            self.bufs.leak = true;
            for (_, c) in self.ops.conns.iter_mut() {
                mem::forget(mem::take(&mut c.inflight));
            }
            mem::forget(mem::take(&mut self.wake_buf));
        }
        for (_, c) in self.ops.conns.iter() {
            if !c.close_inflight {
                // SAFETY: the connection owns this descriptor and nothing else closes it.
                unsafe { libc::close(c.fd) };
            }
        }
    }
}
