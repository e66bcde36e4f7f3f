//! The io_uring driver of one shard: runs the shard's [`Reactor`] and turns its events
//! into calls on the [`Shard`], and the shard's actions into reactor operations.
//!
//! TLS connections (`secureClientPort`, `client.portUnification`) pass through the loop's
//! [`TlsConns`] on the way in ([`client_data`]) and out ([`OpsNet`]): the shard only
//! ever sees plaintext. The core loop uses the same helpers for its own clients.

use super::shard::{Net, Shard};
use super::LateWake;
use crate::io::{self, CloseReason, Handler, ListenerId, Ops, Reactor, Status, Token};
use crate::tls::{Received, TlsConns, TlsSettings, Wire};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

pub struct DriverConfig {
    pub addr: SocketAddr,
    pub tick_ms: u64,
    pub max_conns_per_ip: usize,
    /// Connections this shard's reactor holds at most (`maxCnxns`, which the shards
    /// enforce together, or the io layer's default bound when `maxCnxns` is 0).
    pub max_conns: usize,
    /// `secureClientPort`'s address (the core loop listens there too).
    pub secure_addr: Option<SocketAddr>,
    /// How connections on `addr` speak: plaintext, either (`client.portUnification`), or TLS
    /// (a `secureClientPort` without a `clientPort`).
    pub client_wire: Wire,
    /// The TLS settings, when some client port speaks TLS.
    pub tls: Option<Arc<TlsSettings>>,
}

/// How often a shard reports connections it refused for its connection bound: often
/// enough to be seen in the log, rarely enough that a storm does not flood it.
pub(crate) const REFUSED_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The most unsent output one connection may hold before it is dropped. Reading from
/// a connection stops far earlier (`io::MAX_OUTPUT_BYTES`), so only what the server
/// sends on its own can grow past that: watch notifications to a client that stopped
/// reading. Sixteen full-size replies; beyond that the client is not coming back for
/// them, and its memory is better spent on clients that read.
pub const MAX_UNSENT_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// The shard's view of the reactor: slots are token numbers. With TLS configured, the
/// loop's [`TlsConns`] rides along: what the shard sends to a TLS connection is
/// encrypted on the way to the connection's output buffer.
pub(crate) struct OpsNet<'a>(pub(crate) &'a mut Ops, pub(crate) Option<&'a mut TlsConns>);

impl Net for OpsNet<'_> {
    fn send(&mut self, slot: usize, bytes: &[u8]) {
        let t = Token::from_u64(slot as u64);
        let bytes = match self
            .1
            .as_deref_mut()
            .and_then(|tls| tls.encrypt(slot, bytes))
        {
            Some(records) => records,
            None => bytes,
        };
        // Judged by what was unsent before this reply: one reply bigger than the bound
        // (a getChildren of a million names) is sent to a client that reads. Once
        // dropped, the connection takes no more output (send says false), so this is
        // said once per connection, not once per notification still addressed to it.
        let before = self.0.output_len(t).unwrap_or(0);
        if self.0.send(t, bytes) && before > MAX_UNSENT_OUTPUT_BYTES {
            eprintln!(
                "ringkeeper: dropping connection {:?}: more than {MAX_UNSENT_OUTPUT_BYTES} bytes unsent (the client stopped reading)",
                self.0.peer_addr(t)
            );
            self.0.abort(t);
        }
    }
    fn close(&mut self, slot: usize) {
        let t = Token::from_u64(slot as u64);
        if let Some(records) = self.1.as_deref_mut().and_then(|tls| tls.close_notify(slot)) {
            self.0.send(t, records);
        }
        self.0.close(t);
    }
    fn pause(&mut self, slot: usize, paused: bool) {
        let t = Token::from_u64(slot as u64);
        if paused {
            self.0.pause(t);
        } else {
            self.0.resume(t);
        }
    }
    fn adopt(&mut self, stream: std::net::TcpStream, wire: Wire) -> Option<(usize, SocketAddr)> {
        match self.0.adopt(stream) {
            Ok(t) => {
                let peer = self.0.peer_addr(t)?;
                let slot = t.as_u64() as usize;
                if let Err(e) = start_tls(self.1.as_deref_mut(), slot, peer, wire) {
                    eprintln!("ringkeeper: closing {peer}: {e}");
                    self.0.abort(t);
                    return None;
                }
                Some((slot, peer))
            }
            Err(e) => {
                eprintln!("ringkeeper: cannot take over a client connection: {e}");
                None
            }
        }
    }
}

/// Registers a new client connection's TLS session (or its absence).
pub(crate) fn start_tls(
    tls: Option<&mut TlsConns>,
    slot: usize,
    peer: SocketAddr,
    wire: Wire,
) -> Result<(), String> {
    match (tls, wire) {
        (Some(tls), w) => tls.accepted(slot, peer, w),
        (None, Wire::Plain) => Ok(()),
        (None, _) => Err("a TLS connection on a loop without TLS settings".into()),
    }
}

/// Bytes received on a client connection: decrypted first when it speaks TLS, then
/// handed to the shard. Shared by the core loop and the other shards.
pub(crate) fn client_data(
    shard: &mut Shard,
    tls: &mut Option<TlsConns>,
    ops: &mut Ops,
    token: Token,
    data: &[u8],
) {
    let slot = token.as_u64() as usize;
    let Some(t) = tls.as_mut() else {
        shard.data(&mut OpsNet(ops, None), slot, data);
        return;
    };
    match t.receive(slot, data) {
        Received::Plain => shard.data(&mut OpsNet(ops, Some(t)), slot, data),
        Received::Close => {
            if let Some(alert) = t.take_out() {
                ops.send(token, alert);
            }
            t.sent_out();
            ops.close(token);
        }
        Received::Tls { ids } => {
            shard.secured(slot);
            if let Some(records) = t.take_out() {
                ops.send(token, records);
            }
            t.sent_out();
            if !ids.is_empty() {
                shard.authenticated(slot, ids);
            }
            let plain = t.take_plain();
            if !plain.is_empty() {
                shard.data(&mut OpsNet(ops, Some(t)), slot, &plain);
            }
            if let Some(t) = tls.as_mut() {
                t.give_back_plain(plain);
            }
        }
    }
}

/// The peer closed its side: a TLS connection still in its handshake is worth a line.
pub(crate) fn client_end_of_stream(tls: &Option<TlsConns>, ops: &Ops, token: Token) {
    if tls
        .as_ref()
        .is_some_and(|t| t.handshaking(token.as_u64() as usize))
    {
        eprintln!(
            "ringkeeper: closing {:?}: the client hung up during the TLS handshake",
            ops.peer_addr(token)
        );
    }
}

struct ShardHandler {
    shard: Shard,
    stop: Arc<AtomicBool>,
    max_conns_per_ip: usize,
    tls: Option<TlsConns>,
}

impl Handler for ShardHandler {
    fn on_accept(&mut self, ops: &mut Ops, token: Token, peer: SocketAddr, _l: ListenerId) {
        if !self
            .shard
            .accepted(token.as_u64() as usize, peer, self.max_conns_per_ip)
        {
            ops.abort(token);
        }
    }

    fn on_data(&mut self, ops: &mut Ops, token: Token, data: &[u8]) {
        client_data(&mut self.shard, &mut self.tls, ops, token, data);
    }

    fn on_closed(&mut self, _ops: &mut Ops, token: Token, _reason: CloseReason) {
        let slot = token.as_u64() as usize;
        if let Some(t) = self.tls.as_mut() {
            t.closed(slot);
        }
        self.shard.closed(slot);
    }

    fn on_end_of_stream(&mut self, ops: &mut Ops, token: Token) -> bool {
        client_end_of_stream(&self.tls, ops, token);
        self.shard.end_of_stream(token.as_u64() as usize)
    }

    fn on_wake(&mut self, ops: &mut Ops) {
        if self.stop.load(Ordering::Acquire) {
            ops.stop();
            return;
        }
        self.shard.wake(&mut OpsNet(ops, self.tls.as_mut()));
    }

    fn on_tick(&mut self, ops: &mut Ops) {
        self.shard.tick(&mut OpsNet(ops, self.tls.as_mut()));
    }
}

/// Runs one shard (other than the core loop's) until the server stops. It does not
/// listen: the core loop accepts every client and hands some over (`ToShard::Adopt`).
/// Reports readiness (or the start-up error) on `ready` first.
pub fn run_shard(
    mut shard: Shard,
    cfg: DriverConfig,
    wake: Arc<LateWake>,
    stop: Arc<AtomicBool>,
    ready: Sender<std::io::Result<()>>,
) {
    let rcfg = io::Config {
        tick: Some(Duration::from_millis(cfg.tick_ms)),
        max_connections: cfg.max_conns,
        ..io::Config::default()
    };
    let mut reactor = match Reactor::new(rcfg) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(std::io::Error::other(e.to_string())));
            return;
        }
    };
    shard.set_max_per_ip(cfg.max_conns_per_ip);
    let waker = reactor.waker();
    let _ = wake.0.set(Box::new(waker));
    let _ = ready.send(Ok(()));
    let mut h = ShardHandler {
        shard,
        stop,
        max_conns_per_ip: cfg.max_conns_per_ip,
        tls: cfg.tls.clone().map(TlsConns::new),
    };
    // The core may have sent before our waker existed.
    h.shard.wake(&mut OpsNet(reactor.ops(), h.tls.as_mut()));
    let (mut reported, mut last_report) = (0u64, None::<std::time::Instant>);
    loop {
        match reactor.run_once(&mut h) {
            Ok(Status::Running) => {}
            Ok(Status::Stopped) => break,
            Err(e) => {
                eprintln!("ringkeeper: shard event loop failed: {e}");
                break;
            }
        }
        h.shard.flush(&mut OpsNet(reactor.ops(), h.tls.as_mut()));
        if h.stop.load(Ordering::Acquire) {
            break;
        }
        let refused = reactor.refused();
        if refused > reported && last_report.is_none_or(|t| t.elapsed() >= REFUSED_REPORT_INTERVAL)
        {
            eprintln!(
                "ringkeeper: refused {} connections: this shard holds at most {} (maxCnxns, or the default bound)",
                refused - reported,
                cfg.max_conns
            );
            (reported, last_report) = (refused, Some(std::time::Instant::now()));
        }
    }
}

impl super::mailbox::Wake for io::Waker {
    fn wake(&self) {
        io::Waker::wake(self);
    }
}
