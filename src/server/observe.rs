//! What a shard observes for operators beyond the metrics: load attribution (`load.rs`)
//! and the slow-request log. Owned by its shard, touched only on its loop; absent
//! (`None` in the shard) when both are off.
//!
//! The slow-request log (`slowRequestThresholdMs`, off by default) writes one line to
//! stderr for each request slower than the threshold, decode to reply:
//!
//! ```text
//! ringkeeper: slow request: 412.3 ms setData /app/cfg session 0x1000000a3 client 10.0.0.7:51022 bytes 96/36 zxid 0x300000a1c stages us: proposed 12 logged 405112 replicated 3980 committed 41 answered 2311
//! ```
//!
//! `proposed` runs from the shard's decode to the log's hand-off (the queue to the
//! sequencer and its validation; on a learner also the forward to the leader and the
//! leader's PROPOSAL back), `logged` to durable, `replicated` to the quorum's ack
//! (0 standalone), `committed` to the commit's hand-off to the shards, `answered` to the
//! reply queued on its socket. Reads have only their total. At most
//! `slowRequestLogPerSecond` lines a second per event loop are written; the lines left
//! out are counted, and the next line written says how many.

use super::chain::Node;
use super::load::{ConnCounts, Counts, Load};
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
    /// Per connection slot, its counts since they were last folded into `load`'s
    /// session and client sketches: the request path adds to plain fields here; the
    /// sketches are updated on each tick, at close and before a picture is published.
    /// Indexed by the slot's low 32 bits (the event loop's dense connection index; the
    /// high bits are a generation, checked against the stored slot).
    conns: Vec<Option<(usize, ConnCounts)>>,
    slow: Option<(Duration, Limiter)>,
    /// Per connection slot, its writes in flight, oldest first (answered in order);
    /// kept only for the slow-request log.
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
            conns: Vec::new(),
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

    /// The counts of the connection on `slot` (of `session` at `peer`), folding the
    /// previous owner's in first when the slot changed hands or session.
    fn conn(&mut self, slot: usize, session: i64, peer: SocketAddr) -> &mut Counts {
        let ip = peer.ip();
        let i = slot & 0xffff_ffff;
        if i >= self.conns.len() {
            self.conns.resize(i + 1, None);
        }
        let e = &mut self.conns[i];
        let fresh = (
            slot,
            ConnCounts {
                session,
                ip,
                counts: Counts::default(),
            },
        );
        match e {
            Some((s, c)) if *s == slot && c.session == session && c.ip == ip => {}
            Some((_, c)) => {
                if let Some(l) = &mut self.load {
                    l.fold(c.session, c.ip, &c.counts);
                }
                *e = Some(fresh);
            }
            None => *e = Some(fresh),
        }
        &mut e.as_mut().expect("just set").1.counts
    }

    /// Folds every connection's counts into the sketches (before they are read).
    pub fn fold(&mut self) {
        let Some(l) = &mut self.load else {
            return;
        };
        for (_, cc) in self.conns.iter_mut().flatten() {
            l.fold(cc.session, cc.ip, &cc.counts);
            cc.counts = Counts::default();
        }
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
        if self.load.is_some() {
            let c = self.conn(slot, session, peer);
            c.ops += 1;
            c.bytes_in += bytes as u64;
            let l = self.load.as_mut().expect("checked");
            l.path_request(path.unwrap_or("(none)"), bytes);
            if let (true, Some(p)) = (req.is_write(), path) {
                l.namespace_bytes(p, true, bytes);
            }
        }
        // A write's path and size wait for its answer only for the slow-request log:
        // attribution counts a write's path when it arrives (no copy of it is kept).
        if req.is_write() && self.slow.is_some() {
            self.pending.entry(slot).or_default().push_back(Pending {
                path: path.map(Into::into),
                bytes_in: bytes as u32,
            });
        }
    }

    /// A read on `slot` answered now with `bytes`.
    #[allow(clippy::too_many_arguments)]
    pub fn read_answered(
        &mut self,
        slot: usize,
        session: i64,
        peer: SocketAddr,
        req: &Request,
        bytes: usize,
        received: Instant,
        zxid: i64,
    ) {
        let path = request_path(req);
        if self.load.is_some() {
            self.conn(slot, session, peer).bytes_out += bytes as u64;
            let l = self.load.as_mut().expect("checked");
            if let Some(p) = path {
                l.path_response(p, bytes);
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
    pub fn write_answered(
        &mut self,
        o: &Origin,
        session: i64,
        peer: SocketAddr,
        bytes: usize,
        zxid: i64,
        node: Option<&Node>,
    ) {
        if self.load.is_some() {
            self.conn(o.conn.slot, session, peer).bytes_out += bytes as u64;
        }
        let Some((threshold, lim)) = &mut self.slow else {
            return;
        };
        let p = self
            .pending
            .get_mut(&o.conn.slot)
            .and_then(VecDeque::pop_front);
        let now = Instant::now();
        let total = now.duration_since(o.received);
        if total < *threshold || !lim.admit(now) {
            return;
        }
        let mut stages = String::new();
        if let Some([appended, durable, quorum]) =
            node.and_then(|n| n.stages.as_ref()).map(|s| s.of(zxid))
        {
            let n = node.expect("stages come from the node");
            let us = |a: Instant, b: Instant| b.saturating_duration_since(a).as_micros();
            let _ = write!(
                stages,
                " stages us: proposed {} logged {} replicated {} committed {} answered {}",
                us(o.received, appended),
                us(appended, durable),
                us(durable, quorum),
                us(quorum, n.published_at),
                us(n.published_at, now)
            );
        }
        let line = slow_line(
            total,
            o.op.name(),
            p.as_ref().and_then(|p| p.path.as_deref()),
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

    /// A reply of `bytes` on `slot` built off the shard (a bulk getChildren).
    pub fn bytes_out(&mut self, slot: usize, session: i64, peer: SocketAddr, bytes: usize) {
        if self.load.is_some() {
            self.conn(slot, session, peer).bytes_out += bytes as u64;
        }
    }

    /// A watch of the connection on `slot` (`session` at `peer`) fired for `path`.
    pub fn watch_fired(&mut self, slot: usize, session: i64, peer: SocketAddr, path: &str) {
        if self.load.is_some() {
            self.conn(slot, session, peer).watches += 1;
            self.load.as_mut().expect("checked").path_watch(path);
        }
    }

    /// The connection on `slot` is gone: its counts are folded in.
    pub fn closed(&mut self, slot: usize) {
        self.pending.remove(&slot);
        let i = slot & 0xffff_ffff;
        if let Some(e) = self.conns.get_mut(i) {
            if matches!(e, Some((s, _)) if *s == slot) {
                let (_, cc) = e.take().expect("matched");
                if let Some(l) = &mut self.load {
                    l.fold(cc.session, cc.ip, &cc.counts);
                }
            }
        }
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
