//! The only module that talks to io_uring: the start-up probe, and the per-shard
//! event loop ([`Reactor`]) that owns one ring, a provided-buffer ring for
//! receives, listeners, connections, a cross-thread wake-up and a periodic tick.
//!
//! It knows bytes and sockets, nothing about ZooKeeper.
//!
//! # Contract
//!
//! * Call [`probe`] once at start-up; on error print it and exit (there is no
//!   epoll fallback; the message names the cause and the fix).
//! * Create each [`Reactor`] on the thread that runs it (the ring is
//!   SINGLE_ISSUER), and only touch it from that thread. [`Waker`] and
//!   [`StopHandle`] are the only parts other threads use.
//! * [`Reactor::run_once`] is one loop pass: it submits what the last pass queued
//!   (at most one send per connection, receive arms/cancels, closes), waits for at
//!   least one completion unless some are ready, and calls the [`Handler`] for each.
//!   Handlers act through `&mut Ops`: queue output, pause/resume receiving, close.
//! * Output queued during a pass is sent by the next `run_once`. The loop owns the
//!   bytes until the kernel has sent them all (short writes are continued).
//! * Backpressure: receiving stops by itself while a connection's unsent output is
//!   above `Config::max_output_bytes` and resumes below half of it; `Ops::pause`
//!   stops it for the server's own reasons (queues full).
//! * `on_closed` is delivered exactly once per connection, after its descriptor is
//!   closed and no operation references it; its token is never reused before that.
//! * Cross-thread work: push to your queue, then `waker.wake()` if the queue was
//!   empty; the reactor calls `on_wake` and you drain every queue there.
//!
//! # Example: an echo shard
//!
//! ```no_run
//! use ringkeeper::io::{self, CloseReason, Config, Handler, Ops, Reactor, Status, Token};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn on_data(&mut self, ops: &mut Ops, token: Token, data: &[u8]) {
//!         ops.send(token, data);
//!     }
//!     fn on_closed(&mut self, _ops: &mut Ops, _token: Token, _reason: CloseReason) {}
//!     fn on_wake(&mut self, _ops: &mut Ops) { /* drain cross-thread queues */ }
//!     fn on_tick(&mut self, _ops: &mut Ops) { /* session expiry, timers */ }
//! }
//!
//! io::probe().unwrap_or_else(|e| panic!("{e}"));
//! let mut reactor = Reactor::new(Config::default()).unwrap();
//! let (_listener, addr) = reactor.listen("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
//! println!("listening on {addr}");
//! let waker = reactor.waker(); // give clones to other threads
//! let stop = reactor.stop_handle(); // stop.stop() from anywhere ends the loop
//! # let _ = (waker, stop);
//! let mut echo = Echo;
//! while reactor.run_once(&mut echo).unwrap() == Status::Running {
//!     // Between passes: `reactor.ops()` gives the same `Ops` as the callbacks.
//! }
//! ```

mod bufring;
mod net;
mod probe;
mod reactor;

use std::time::Duration;

pub use probe::{probe, Features, ProbeError};
pub use reactor::{
    CloseReason, Handler, ListenerId, Ops, Reactor, Status, StopHandle, Token, Waker, SYNC_TAG,
};

/// Submission queue entries per ring. One pass submits about one send and at most
/// one receive arm or cancel per active connection; a full queue is submitted and
/// reused mid-pass, so this bounds syscalls per pass, not connections.
pub const RING_ENTRIES: u32 = 1024;

/// Completion queue entries per submission entry. Multishot receive and accept
/// produce many completions per submission; a roomy CQ keeps the kernel off its
/// overflow list (it never drops completions: FEAT_NODROP, but overflow is slow).
pub const CQ_PER_SQ: u32 = 8;

/// Provided receive buffers per shard (a power of two, at most 32768). A buffer is
/// recycled in the pass that filled it, so this bounds the receive completions one
/// pass can take; when they run out the kernel ends the multishot with ENOBUFS and
/// we re-arm it next pass. 512 x 16 KiB = 8 MiB per shard.
pub const RECV_BUF_COUNT: u16 = 512;

/// Size of one provided receive buffer. Requests are mostly small; 16 KiB takes a
/// typical batch of pipelined requests in one completion, and larger messages just
/// arrive in several slices.
pub const RECV_BUF_SIZE: u32 = 16 * 1024;

/// Connections per shard. The open-files limit here is 20k per process; two shards
/// at 8192 leave room for listeners, peers, log segments and snapshots.
pub const MAX_CONNECTIONS: usize = 8192;

/// Unsent output per connection above which we stop reading from it (and resume at
/// half). A few of the largest messages we send; beyond that a peer that does not
/// read is only costing us memory: 8192 connections x 1 MiB bounds a shard at 8 GiB
/// in the worst case, 1 MiB being one full-size reply.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// Listen backlog: connections the kernel queues per listener before we accept
/// them. Bursts of reconnecting clients (after a leader change) arrive together; the
/// kernel caps it at net.core.somaxconn (4096 here). With 1024, a storm of 10,000
/// sessions on 2 shards once took 4.1 s, its tail waiting out 3 s SYN retries; with
/// 4096 two storms finished in 1.1 s (`zkbench storm -s 10000`, same machine).
pub const LISTEN_BACKLOG: i32 = 4096;

/// A reactor's sizes. `Default` gives the constants above and no tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub ring_entries: u32,
    pub recv_buf_count: u16,
    pub recv_buf_size: u32,
    pub max_connections: usize,
    pub max_output_bytes: usize,
    /// Period of `Handler::on_tick`; `None` for no tick.
    pub tick: Option<Duration>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            ring_entries: RING_ENTRIES,
            recv_buf_count: RECV_BUF_COUNT,
            recv_buf_size: RECV_BUF_SIZE,
            max_connections: MAX_CONNECTIONS,
            max_output_bytes: MAX_OUTPUT_BYTES,
            tick: None,
        }
    }
}

const _: () = assert!(RECV_BUF_COUNT.is_power_of_two() && RECV_BUF_COUNT <= 32768);
const _: () = assert!(RING_ENTRIES.is_power_of_two());
const _: () = assert!(MAX_CONNECTIONS <= u32::MAX as usize);

impl Config {
    /// # Panics
    /// On sizes the kernel or the reactor cannot use: these are programming errors.
    pub fn validate(&self) {
        assert!(
            self.ring_entries.is_power_of_two() && (8..=32768).contains(&self.ring_entries),
            "ring_entries {} must be a power of two in 8..=32768",
            self.ring_entries
        );
        assert!(
            self.recv_buf_count.is_power_of_two() && self.recv_buf_count <= 32768,
            "recv_buf_count {} must be a power of two <= 32768",
            self.recv_buf_count
        );
        assert!(
            self.recv_buf_size >= 64,
            "recv_buf_size {}",
            self.recv_buf_size
        );
        assert!(
            (1..=u32::MAX as usize).contains(&self.max_connections),
            "max_connections {}",
            self.max_connections
        );
        assert!(self.max_output_bytes >= 1, "max_output_bytes");
        if let Some(t) = self.tick {
            assert!(!t.is_zero(), "tick must be positive");
        }
    }
}
