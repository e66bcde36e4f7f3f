//! What a shard observes for operators beyond the metrics: load attribution (`load.rs`)
//! and the slow-request log. Owned by its shard, touched only on its loop; absent
//! (`None` in the shard) when both are off.
//!
//! The slow-request log (`slowRequestThresholdMs`, off by default) writes one line to
//! stderr for each request slower than the threshold, decode to reply:
//!
//! ```text
//! ringkeeper: slow request: 412.3 ms setData /app/cfg session 0x1000000a3 client 10.0.0.7:51022 bytes 96/36 zxid 0x300000a1c stages us: sequenced 12 logged 405112 replicated 3980 committed 41 answered 2311
//! ```
//!
//! `sequenced` runs from the shard's decode to the log's hand-off (the queue to the
//! sequencer and its validation), `logged` to durable, `replicated` to the quorum's ack
//! (0 standalone), `committed` to the commit's hand-off to the shards, `answered` to the
//! reply queued on its socket. Reads have only their total. At most
//! `slowRequestLogPerSecond` lines a second per event loop are written; the lines left
//! out are counted, and the next line written says how many.

use super::chain::Node;
use super::load::Load;
use crate::proto::request::Request;
use crate::sequencer::msg::Origin;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The operator settings a shard reads at start.
#[derive(Debug, Clone)]
pub struct OpsSettings {
    pub load_attribution: bool,
    /// Requests slower than this are logged; `None`: off.
    pub slow_threshold: Option<Duration>,
    pub slow_per_second: u32,
}

impl Default for OpsSettings {
    fn default() -> Self {
        OpsSettings {
            load_attribution: true,
            slow_threshold: None,
            slow_per_second: 10,
        }
    }
}

/// The slow-request log's rate limit: a budget per one-second window.
#[derive(Debug)]
struct Limiter {
    per_second: u32,
    window: Instant,
    used: u32,
    dropped: u64,
}

impl Limiter {
    /// Whether a line may be written now; counts it either way.
    fn admit(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.used = 0;
        }
        if self.used < self.per_second {
            self.used += 1;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// A write in flight on a connection, for its slow-log line and its path's bytes out.
#[derive(Debug)]
struct Pending {
    path: Option<Box<str>>,
    bytes_in: u32,
}

#[derive(Debug)]
pub struct Observe {
    pub load: Option<Load>,
    slow: Option<(Duration, Limiter)>,
    /// Per connection slot, its writes in flight, oldest first (answered in order).
    pending: HashMap<usize, VecDeque<Pending>>,
}

impl Observe {
    /// `None` when there is nothing to observe.
    pub fn new(s: &OpsSettings) -> Option<Box<Observe>> {
        if !s.load_attribution && s.slow_threshold.is_none() {
            return None;
        }
        Some(Box::new(Observe {
            load: s.load_attribution.then(Load::default),
            slow: s.slow_threshold.map(|t| {
                (
                    t,
                    Limiter {
                        per_second: s.slow_per_second,
                        window: Instant::now(),
                        used: 0,
                        dropped: 0,
                    },
                )
            }),
            pending: HashMap::new(),
        }))
    }

    /// A request decoded on `slot` (frame of `bytes`, length prefix included).
    pub fn request(
        &mut self,
        slot: usize,
        session: i64,
        peer: SocketAddr,
        req: &Request,
        bytes: usize,
    ) {
        let path = request_path(req);
        if let Some(l) = &mut self.load {
            l.request(session, peer.ip(), path, bytes);
            if let (true, Some(p)) = (req.is_write(), path) {
                l.namespace_bytes(p, true, bytes);
            }
        }
        if req.is_write() {
            self.pending.entry(slot).or_default().push_back(Pending {
                path: path.map(Into::into),
                bytes_in: bytes as u32,
            });
        }
    }

    /// A read answered now with `bytes`.
    #[allow(clippy::too_many_arguments)]
    pub fn read_answered(
        &mut self,
        session: i64,
        peer: SocketAddr,
        req: &Request,
        bytes: usize,
        received: Instant,
        zxid: i64,
    ) {
        let path = request_path(req);
        if let Some(l) = &mut self.load {
            l.response(session, peer.ip(), path, bytes);
            if let Some(p) = path {
                l.namespace_bytes(p, false, bytes);
            }
        }
        if let Some((threshold, lim)) = &mut self.slow {
            let now = Instant::now();
            let total = now.duration_since(received);
            if total >= *threshold && lim.admit(now) {
                let line = slow_line(
                    total,
                    req.op().name(),
                    path,
                    session,
                    peer,
                    0,
                    bytes,
                    zxid,
                    "",
                    std::mem::take(&mut lim.dropped),
                );
                eprintln!("{line}");
            }
        }
    }

    /// A write answered now with `bytes`, by the commit `node` (`None`: it failed).
    #[allow(clippy::too_many_arguments)]
    pub fn write_answered(
        &mut self,
        o: &Origin,
        session: i64,
        peer: SocketAddr,
        bytes: usize,
        zxid: i64,
        node: Option<&Node>,
    ) {
        let p = self
            .pending
            .get_mut(&o.conn.slot)
            .and_then(VecDeque::pop_front);
        let path = p.as_ref().and_then(|p| p.path.as_deref());
        if let Some(l) = &mut self.load {
            l.response(session, peer.ip(), path, bytes);
        }
        let Some((threshold, lim)) = &mut self.slow else {
            return;
        };
        let now = Instant::now();
        let total = now.duration_since(o.received);
        if total < *threshold || !lim.admit(now) {
            return;
        }
        let mut stages = String::new();
        if let Some(n) = node {
            if let Some([appended, durable, quorum]) = n.stages {
                let us = |a: Instant, b: Instant| b.saturating_duration_since(a).as_micros();
                let _ = write!(
                    stages,
                    " stages us: sequenced {} logged {} replicated {} committed {} answered {}",
                    us(o.received, appended),
                    us(appended, durable),
                    us(durable, quorum),
                    us(quorum, n.published_at),
                    us(n.published_at, now)
                );
            }
        }
        let line = slow_line(
            total,
            o.op.name(),
            path,
            session,
            peer,
            p.as_ref().map_or(0, |p| p.bytes_in as usize),
            bytes,
            zxid,
            &stages,
            std::mem::take(&mut lim.dropped),
        );
        eprintln!("{line}");
    }

    /// A watch of `session` at `peer` fired for `path`.
    pub fn watch_fired(&mut self, session: i64, peer: SocketAddr, path: &str) {
        if let Some(l) = &mut self.load {
            l.watch_fired(session, peer.ip(), path);
        }
    }

    /// The connection on `slot` is gone.
    pub fn closed(&mut self, slot: usize) {
        self.pending.remove(&slot);
    }
}

fn request_path(req: &Request) -> Option<&str> {
    match req {
        Request::Multi(ops) => ops.first().map(|o| o.path()),
        r => r.path(),
    }
}

#[allow(clippy::too_many_arguments)]
fn slow_line(
    total: Duration,
    op: &str,
    path: Option<&str>,
    session: i64,
    peer: SocketAddr,
    bytes_in: usize,
    bytes_out: usize,
    zxid: i64,
    stages: &str,
    dropped: u64,
) -> String {
    let mut line = format!(
        "ringkeeper: slow request: {:.1} ms {op} {} session 0x{:x} client {peer} bytes {bytes_in}/{bytes_out} zxid 0x{:x}{stages}",
        total.as_secs_f64() * 1000.0,
        path.unwrap_or("-"),
        session as u64,
        zxid as u64,
    );
    if dropped > 0 {
        let _ = write!(
            line,
            " ({dropped} slow requests not logged before this one)"
        );
    }
    line
}
