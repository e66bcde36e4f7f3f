//! The measured run: worker threads, each an epoll loop over its share of the sessions,
//! driving the closed-loop or open-loop load model.
//!
//! Timing contract: every request carries an *intended* send time. In the closed loop it
//! is the moment the request was queued (a reply frees a slot, the next request is sent
//! in the same loop pass); in the open loop it is the request's slot in the fixed
//! schedule, so a request sent late because the server (or the generator) fell behind is
//! charged the wait (coordinated-omission correction). A reply's latency is its arrival
//! time minus the intended time. Requests whose intended time lies in the measured window
//! `[start + warmup, start + warmup + duration)` are measured; after the window no new
//! requests are sent and those in flight are drained for at most `drain`.

use super::conn::{
    decode_reply, handshake_frame, BlockingClient, ConnError, Handshake, HandshakeStep, Incoming,
    SessionCreds,
};
use super::workload::{OpKind, SessionGen, Workload};
use crate::proto::{OpCode, RequestHeader};
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

/// Histogram bounds: 1 µs to one hour, three significant digits.
pub const HIST_MAX_US: u64 = 3_600_000_000;

/// Open loop: most requests one session may have in flight. Past it the session falls
/// behind its schedule (and is charged for it) instead of growing memory without bound:
/// 10k × 64 sessions × ~48 bytes per entry stays near 30 MB.
pub const MAX_OPEN_OUTSTANDING: usize = 10_000;

/// Reconnect mode: pause before retrying after an attempt failed. The first attempt
/// after a loss goes at once to the next server; later ones wait, so a server that is
/// down is not hammered, but not so long that the pause hides the failover time.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(50);

/// Reconnect mode: the shortest limit for one attempt (connect + handshake). The limit
/// is the session timeout divided by the number of servers, as ZooKeeper's client's
/// connect timeout, but at least this.
pub const RECONNECT_ATTEMPT_MIN: Duration = Duration::from_millis(200);

/// Read chunk per syscall; 256 KiB holds thousands of small replies.
const READ_CHUNK: usize = 256 * 1024;

/// Error code recorded for requests lost with their connection (ZooKeeper's
/// CONNECTIONLOSS, as its clients report them).
pub const CONNECTION_LOSS: i32 = -4;

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadModel {
    /// Each session keeps `outstanding` requests in flight.
    Closed { outstanding: usize },
    /// `rate` requests per second in total, spread evenly over the sessions.
    Open { rate: f64 },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub servers: Vec<SocketAddr>,
    pub sessions: usize,
    pub load: LoadModel,
    pub warmup: Duration,
    pub duration: Duration,
    /// How long to wait for in-flight replies after the window; the rest are counted
    /// as unanswered.
    pub drain: Duration,
    pub workload: Workload,
    pub session_timeout_ms: i32,
    pub threads: usize,
    pub seed: u64,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// A session whose connection is lost resumes (its id, password and last zxid) on
    /// the next server of the list, as ZooKeeper's client does, and goes on; without
    /// it the session stays dead for the rest of the run.
    pub reconnect: bool,
    /// Write each request with its own system call, as the Java client and kazoo do,
    /// instead of coalescing a pass's requests into one write per session.
    pub no_coalesce: bool,
    /// Server processes whose CPU time and context switches the window measures.
    pub server_pids: Vec<u32>,
    /// Keep the arrival time of every successful reply (`RunStats::acks`), for the
    /// longest gap between acknowledged requests (rolling restarts, hand-offs).
    pub record_acks: bool,
    /// Speak TLS to the servers (`--tls`), with this client configuration.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The outcome of one measured run.
#[derive(Debug, Clone)]
pub struct RunStats {
    pub window_s: f64,
    /// Answered requests in the measured window (errors included).
    pub ops: u64,
    /// Replies by error code (0 excluded), plus CONNECTIONLOSS for requests lost with a
    /// connection.
    pub errors: BTreeMap<i32, u64>,
    /// Measured requests with no answer when the drain time ran out.
    pub unanswered: u64,
    /// Latency of every answered measured request, in microseconds.
    pub hist: Histogram<u64>,
    pub per_op: BTreeMap<OpKind, Histogram<u64>>,
    /// Answered measured requests per second of the window, by arrival time.
    pub timeline: Vec<u64>,
    /// Their latencies, per second of the window (by arrival time): how a server's
    /// latency moves while it does something else (a snapshot, a log switch).
    pub timeline_lat: Vec<Histogram<u64>>,
    /// Wall-clock start of the measured window, milliseconds since the Unix epoch (0 if
    /// unknown): to line the timeline up with servers' logs.
    pub window_start_unix_ms: u64,
    pub disconnects: u64,
    pub watch_events: u64,
    /// Sessions that could not be opened (after the allowed retries).
    pub connect_failures: u64,
    /// Reconnect mode: lost sessions resumed (same session id) on some server.
    pub reconnects: u64,
    /// Reconnect mode: lost sessions the server no longer knew (replaced by new ones).
    pub expired: u64,
    /// Reconnect mode: sessions still without a connection when the window ended.
    pub still_disconnected: u64,
    /// Reconnect mode: time from a connection's loss to the session's next
    /// ConnectResponse, in microseconds.
    pub reconnect: Histogram<u64>,
    /// What the servers named in `Config::server_pids` spent over the window.
    pub server_cost: Option<super::cost::Cost>,
    /// With `Config::record_acks`: when each successful reply arrived, in microseconds
    /// since the run's start (warm-up included), unsorted across workers.
    pub acks: Vec<u64>,
    /// Open loop: how late each measured request left the generator after its slot, in
    /// microseconds (the loop's own pass, a thread that woke late or was descheduled, a
    /// session at `MAX_OPEN_OUTSTANDING`). Its latency includes this; a tail here is the
    /// client's, not the server's. Empty in a closed loop, which has no schedule.
    pub send_lag: Histogram<u64>,
    /// The run's start (the first request) on the wall clock, in ms since the epoch.
    pub start_unix_ms: u64,
    record_acks: bool,
}

impl RunStats {
    pub fn ops_per_sec(&self) -> f64 {
        if self.window_s > 0.0 {
            self.ops as f64 / self.window_s
        } else {
            0.0
        }
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// No samples yet; `seconds` timeline slots.
    pub fn empty(window_s: f64, seconds: usize) -> RunStats {
        RunStats {
            window_s,
            ops: 0,
            errors: BTreeMap::new(),
            unanswered: 0,
            hist: new_hist(),
            per_op: BTreeMap::new(),
            timeline: vec![0; seconds],
            timeline_lat: Vec::new(),
            window_start_unix_ms: 0,
            disconnects: 0,
            watch_events: 0,
            connect_failures: 0,
            reconnects: 0,
            expired: 0,
            still_disconnected: 0,
            reconnect: new_hist(),
            server_cost: None,
            acks: Vec::new(),
            send_lag: new_hist(),
            start_unix_ms: 0,
            record_acks: false,
        }
    }

    /// Adds another worker's (or watcher's) results.
    pub fn merge(&mut self, o: RunStats) {
        self.ops += o.ops;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.unanswered += o.unanswered;
        self.hist.add(&o.hist).expect("same bounds");
        for (k, h) in o.per_op {
            self.per_op
                .entry(k)
                .or_insert_with(new_hist)
                .add(&h)
                .expect("same bounds");
        }
        for (i, v) in o.timeline.into_iter().enumerate() {
            self.timeline[i] += v;
        }
        if self.timeline_lat.len() < o.timeline_lat.len() {
            self.timeline_lat
                .resize_with(o.timeline_lat.len(), new_hist);
        }
        for (i, h) in o.timeline_lat.iter().enumerate() {
            self.timeline_lat[i].add(h).expect("same bounds");
        }
        self.window_start_unix_ms = self.window_start_unix_ms.max(o.window_start_unix_ms);
        self.disconnects += o.disconnects;
        self.watch_events += o.watch_events;
        self.connect_failures += o.connect_failures;
        self.reconnects += o.reconnects;
        self.expired += o.expired;
        self.still_disconnected += o.still_disconnected;
        self.reconnect.add(&o.reconnect).expect("same bounds");
        self.acks.extend(o.acks);
        self.send_lag.add(&o.send_lag).expect("same bounds");
    }
}

#[derive(Debug)]
pub enum BenchError {
    Connect { addr: SocketAddr, err: ConnError },
    Config(String),
    Io(io::Error),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Connect { addr, err } => {
                write!(f, "cannot open a session on {addr}: {err}")
            }
            BenchError::Config(m) => write!(f, "{m}"),
            BenchError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BenchError {}

/// Shared between the workers and the progress printer.
#[derive(Default)]
struct Progress {
    answered: AtomicU64,
    errors: AtomicU64,
    done: AtomicBool,
}

struct Inflight {
    xid: i32,
    op: OpKind,
    intended: Instant,
}

struct Session {
    stream: TcpStream,
    /// The TLS session over `stream` (`Config::tls`).
    tls: Option<Box<rustls::ClientConnection>>,
    gen: SessionGen,
    out: Vec<u8>,
    out_pos: usize,
    inb: Vec<u8>,
    in_pos: usize,
    inflight: VecDeque<Inflight>,
    next_xid: i32,
    last_send: Instant,
    ping_every: Duration,
    /// Open loop: the next slot of this session's schedule.
    next_due: Instant,
    epollout: bool,
    dead: bool,
    creds: SessionCreds,
    /// Index into `Config::servers` of the current (or next) server.
    server: usize,
    /// Reconnect mode: when the connection was lost, while the session has none.
    lost_at: Option<Instant>,
    /// Reconnect mode: earliest start of the next attempt.
    retry_at: Instant,
    /// Reconnect mode: the attempt in progress and when it began.
    hs: Option<(Handshake, Instant)>,
    /// Reconnect mode: the server said the session expired; the next attempt opens a
    /// new one.
    fresh: bool,
    /// Write each request as it is issued (`Config::no_coalesce`).
    no_coalesce: bool,
}

impl Session {
    fn issue(&mut self, w: &Workload, intended: Instant) {
        let x = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        let op = self.gen.next_request(w, x, &mut self.out);
        self.inflight.push_back(Inflight {
            xid: x,
            op,
            intended,
        });
        if self.no_coalesce && !self.epollout {
            // One system call per request, as a client writing each packet as it is
            // made does; a full socket keeps the rest for the next writable event.
            // An error shows again at the loop's own flush, which handles it.
            let _ = self.flush(intended);
        }
    }

    fn ping(&mut self) {
        let start = super::workload::begin_frame(&mut self.out);
        use crate::proto::Jute;
        RequestHeader {
            xid: crate::proto::xid::PING,
            op: OpCode::Ping as i32,
        }
        .write(&mut self.out);
        super::workload::end_frame(&mut self.out, start);
    }

    /// Writes what it can; returns Ok(true) when everything was written.
    fn flush(&mut self, now: Instant) -> io::Result<bool> {
        if let Some(tls) = self.tls.as_mut() {
            let done = super::tls::flush(tls, &mut self.stream, &self.out[self.out_pos..])?;
            self.out.clear();
            self.out_pos = 0;
            self.last_send = now;
            return Ok(done);
        }
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    self.last_send = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(true)
    }

    /// Finds the in-flight entry of `xid`. ZooKeeper answers a session in order, so it
    /// is the front one; the search covers servers that do not.
    fn take(&mut self, xid: i32) -> Option<Inflight> {
        if self.inflight.front().is_some_and(|f| f.xid == xid) {
            return self.inflight.pop_front();
        }
        let i = self.inflight.iter().position(|f| f.xid == xid)?;
        self.inflight.remove(i)
    }
}

struct Window {
    start: Instant,
    measure: Instant,
    end: Instant,
    hard_end: Instant,
}

impl Window {
    fn measured(&self, t: Instant) -> bool {
        t >= self.measure && t < self.end
    }
}

/// Runs one measured run. The tree must already be populated (see `setup`).
pub fn run(cfg: &Config) -> Result<RunStats, BenchError> {
    if cfg.servers.is_empty() || cfg.sessions == 0 {
        return Err(BenchError::Config(
            "need at least one server and one session".into(),
        ));
    }
    if cfg.reconnect && cfg.tls.is_some() {
        return Err(BenchError::Config(
            "--reconnect does not speak TLS yet".into(),
        ));
    }
    if let LoadModel::Closed { outstanding: 0 } = cfg.load {
        return Err(BenchError::Config(
            "--outstanding must be at least 1".into(),
        ));
    }
    if let LoadModel::Open { rate } = cfg.load {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(BenchError::Config(format!(
                "--rate must be positive, got {rate}"
            )));
        }
    }
    let threads = cfg.threads.clamp(1, cfg.sessions);
    let progress = Arc::new(Progress::default());
    let barrier = Arc::new(Barrier::new(threads + 1));
    let start_at: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let seconds = cfg.duration.as_secs_f64().ceil().max(1.0) as usize;
    let mut handles = Vec::new();
    for t in 0..threads {
        let mine: Vec<usize> = (t..cfg.sessions).step_by(threads).collect();
        let (cfg, progress, barrier, start_at) = (
            cfg.clone(),
            progress.clone(),
            barrier.clone(),
            start_at.clone(),
        );
        handles.push(std::thread::spawn(move || {
            worker(&cfg, &mine, &progress, &barrier, &start_at, seconds)
        }));
    }
    barrier.wait();
    // Every worker has connected (or failed). Start a few ms ahead so all begin together.
    let start = Instant::now() + Duration::from_millis(5);
    start_at.set(start).expect("set once");
    barrier.wait();
    // The servers' counters at the window's start and end.
    let sampler = (!cfg.server_pids.is_empty()).then(|| {
        let (pids, from, to) = (
            cfg.server_pids.clone(),
            start + cfg.warmup,
            start + cfg.warmup + cfg.duration,
        );
        std::thread::spawn(move || {
            std::thread::sleep(from.saturating_duration_since(Instant::now()));
            let before = super::cost::sample(&pids);
            std::thread::sleep(to.saturating_duration_since(Instant::now()));
            let after = super::cost::sample(&pids);
            super::cost::spent(&pids, &before, &after)
        })
    });
    let printer = cfg.progress.then(|| {
        let (progress, warmup, duration) = (progress.clone(), cfg.warmup, cfg.duration);
        std::thread::spawn(move || print_progress(&progress, start, warmup, duration))
    });
    let mut stats = RunStats::empty(cfg.duration.as_secs_f64(), seconds);
    let since_start = Instant::now().saturating_duration_since(start);
    stats.start_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.saturating_sub(since_start).as_millis() as u64)
        .unwrap_or(0);
    // The window starts at `start + warmup` (an Instant); its wall-clock time:
    let to_window = (start + cfg.warmup).saturating_duration_since(Instant::now());
    stats.window_start_unix_ms = (std::time::SystemTime::now() + to_window)
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut first_err = None;
    for h in handles {
        match h.join().expect("worker panicked") {
            Ok(s) => stats.merge(s),
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    progress.done.store(true, Ordering::Relaxed);
    if let Some(p) = printer {
        p.join().ok();
    }
    if let Some(s) = sampler {
        stats.server_cost = s.join().ok();
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

fn print_progress(p: &Progress, start: Instant, warmup: Duration, duration: Duration) {
    let mut last = 0;
    let mut last_t = Instant::now();
    while !p.done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let now = Instant::now();
        if now.duration_since(last_t) < Duration::from_secs(1) && !p.done.load(Ordering::Relaxed) {
            continue;
        }
        let n = p.answered.load(Ordering::Relaxed);
        let rate = (n - last) as f64 / now.duration_since(last_t).as_secs_f64();
        let el = now.saturating_duration_since(start);
        let phase = if el < warmup {
            "warm-up"
        } else if el < warmup + duration {
            "measure"
        } else {
            "drain"
        };
        eprint!(
            "\r[{phase}] {:5.1}s/{:.0}s  {:>10.0} ops/s  answered {:>10}  errors {:>8}   ",
            el.as_secs_f64(),
            (warmup + duration).as_secs_f64(),
            rate,
            n,
            p.errors.load(Ordering::Relaxed)
        );
        last = n;
        last_t = now;
    }
    eprintln!();
}

fn worker(
    cfg: &Config,
    mine: &[usize],
    progress: &Progress,
    barrier: &Barrier,
    start_at: &OnceLock<Instant>,
    seconds: usize,
) -> Result<RunStats, BenchError> {
    let connected = connect_sessions(cfg, mine);
    barrier.wait();
    barrier.wait();
    let mut sessions = connected?;
    let start = *start_at.get().expect("set before the second barrier");
    let w = Window {
        start,
        measure: start + cfg.warmup,
        end: start + cfg.warmup + cfg.duration,
        hard_end: start + cfg.warmup + cfg.duration + cfg.drain,
    };
    let mut stats = RunStats::empty(cfg.duration.as_secs_f64(), seconds);
    stats.record_acks = cfg.record_acks;
    let res = event_loop(cfg, &mut sessions, &w, &mut stats, progress);
    res.map_err(BenchError::Io)?;
    Ok(stats)
}

fn connect_sessions(cfg: &Config, mine: &[usize]) -> Result<Vec<Session>, BenchError> {
    let mut out = Vec::with_capacity(mine.len());
    let now = Instant::now();
    for &i in mine {
        let addr = cfg.servers[i % cfg.servers.len()];
        let (stream, tls, creds) = match &cfg.tls {
            Some(tc) => {
                let (stream, conn, resp) = super::tls::connect(addr, cfg.session_timeout_ms, tc)
                    .map_err(|err| BenchError::Connect { addr, err })?;
                (stream, Some(conn), SessionCreds::from_response(&resp))
            }
            None => {
                let c = BlockingClient::connect(addr, cfg.session_timeout_ms)
                    .map_err(|err| BenchError::Connect { addr, err })?;
                c.stream.set_nonblocking(true).map_err(BenchError::Io)?;
                let creds = SessionCreds {
                    session_id: c.session_id,
                    passwd: c.passwd.clone(),
                    timeout_ms: c.timeout_ms,
                    last_zxid: 0,
                };
                (c.stream, None, creds)
            }
        };
        let ping_every = Duration::from_millis((creds.timeout_ms / 3).max(1) as u64);
        out.push(Session {
            stream,
            tls,
            gen: SessionGen::new(cfg.seed, i),
            out: Vec::with_capacity(64 * 1024),
            out_pos: 0,
            inb: Vec::with_capacity(READ_CHUNK * 2),
            in_pos: 0,
            inflight: VecDeque::new(),
            next_xid: 1,
            last_send: now,
            ping_every,
            next_due: now,
            epollout: false,
            dead: false,
            creds,
            server: i % cfg.servers.len(),
            lost_at: None,
            retry_at: now,
            hs: None,
            fresh: false,
            no_coalesce: cfg.no_coalesce,
        });
    }
    Ok(out)
}

/// A thin safe wrapper over epoll + a timerfd for sub-millisecond wake-ups.
struct Poller {
    epfd: i32,
    tfd: i32,
}

const TIMER_TOKEN: u64 = u64::MAX;

impl Poller {
    fn new() -> io::Result<Poller> {
        // SAFETY: plain syscalls with constant flags; the fds are owned by Poller.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        let tfd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if tfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let p = Poller { epfd, tfd };
        p.ctl(libc::EPOLL_CTL_ADD, tfd, libc::EPOLLIN as u32, TIMER_TOKEN)?;
        Ok(p)
    }

    fn ctl(&self, op: i32, fd: i32, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.epfd, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for events or until `timeout` passes (None: forever).
    fn wait(
        &self,
        events: &mut Vec<libc::epoll_event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let ms = match timeout {
            None => -1,
            Some(t) if t.is_zero() => 0,
            Some(t) => {
                // Arm the timerfd for precision below epoll_wait's milliseconds.
                let spec = libc::itimerspec {
                    it_interval: libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    },
                    it_value: libc::timespec {
                        tv_sec: t.as_secs() as libc::time_t,
                        tv_nsec: t.subsec_nanos().max(1) as libc::c_long,
                    },
                };
                // SAFETY: valid pointers; relative timer.
                if unsafe { libc::timerfd_settime(self.tfd, 0, &spec, std::ptr::null_mut()) } < 0 {
                    return Err(io::Error::last_os_error());
                }
                -1
            }
        };
        events.clear();
        // SAFETY: the buffer has capacity for `capacity()` events; we set the length to
        // what the kernel filled.
        let n = unsafe {
            libc::epoll_wait(self.epfd, events.as_mut_ptr(), events.capacity() as i32, ms)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        // SAFETY: the kernel initialised the first n entries.
        unsafe { events.set_len(n as usize) };
        Ok(())
    }

    fn clear_timer(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes into an 8-byte buffer; EAGAIN is fine.
        unsafe { libc::read(self.tfd, buf.as_mut_ptr().cast(), 8) };
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // SAFETY: we own both fds.
        unsafe {
            libc::close(self.tfd);
            libc::close(self.epfd);
        }
    }
}

fn event_loop(
    cfg: &Config,
    sessions: &mut [Session],
    w: &Window,
    stats: &mut RunStats,
    progress: &Progress,
) -> io::Result<()> {
    let poller = Poller::new()?;
    for (i, s) in sessions.iter().enumerate() {
        poller.ctl(
            libc::EPOLL_CTL_ADD,
            s.stream.as_raw_fd(),
            libc::EPOLLIN as u32,
            i as u64,
        )?;
    }
    let mut events = Vec::with_capacity(sessions.len() + 1);
    let mut chunk = vec![0u8; READ_CHUNK];
    let interval = match cfg.load {
        LoadModel::Open { rate } => Duration::from_secs_f64(cfg.sessions as f64 / rate),
        LoadModel::Closed { .. } => Duration::ZERO,
    };
    // Wait for the common start.
    let now = Instant::now();
    if w.start > now {
        std::thread::sleep(w.start - now);
    }
    match cfg.load {
        LoadModel::Closed { outstanding } => {
            let now = Instant::now();
            for s in sessions.iter_mut() {
                for _ in 0..outstanding {
                    s.issue(&cfg.workload, now);
                }
            }
        }
        LoadModel::Open { .. } => {
            // Stagger the sessions' schedules across one interval.
            for s in sessions.iter_mut() {
                let k = s.gen.session_index as f64 / cfg.sessions as f64;
                s.next_due = w.start + interval.mul_f64(k);
            }
        }
    }
    let mut answered_local = 0u64;
    let mut errors_local = 0u64;
    loop {
        let now = Instant::now();
        // Every slot due inside the window is sent, late if this thread woke late (after
        // the window's end too): its latency counts from when it was due.
        if let LoadModel::Open { .. } = cfg.load {
            for s in sessions.iter_mut().filter(|s| !s.dead) {
                while s.next_due <= now
                    && s.next_due < w.end
                    && s.inflight.len() < MAX_OPEN_OUTSTANDING
                {
                    let due = s.next_due;
                    s.issue(&cfg.workload, due);
                    if w.measured(due) {
                        let lag = now.saturating_duration_since(due).as_micros() as u64;
                        stats.send_lag.saturating_record(lag.max(1));
                    }
                    s.next_due += interval;
                }
            }
        }
        let sending = now < w.end;
        let inflight: usize = sessions
            .iter()
            .filter(|s| !s.dead)
            .map(|s| s.inflight.len())
            .sum();
        if !sending && (inflight == 0 || now >= w.hard_end) {
            break;
        }
        // Keep idle sessions alive; ZooKeeper's client pings after a third of the
        // negotiated timeout without traffic as well.
        for s in sessions.iter_mut().filter(|s| !s.dead) {
            if s.out.is_empty() && now.duration_since(s.last_send) >= s.ping_every {
                s.ping();
            }
        }
        for (i, s) in sessions.iter_mut().enumerate() {
            if s.dead || s.out.is_empty() || s.epollout {
                continue;
            }
            match s.flush(now) {
                Ok(true) => {}
                Ok(false) => {
                    s.epollout = true;
                    let ev = (libc::EPOLLIN | libc::EPOLLOUT) as u32;
                    poller.ctl(libc::EPOLL_CTL_MOD, s.stream.as_raw_fd(), ev, i as u64)?;
                }
                Err(_) => kill(cfg, s, w, stats, &poller, now),
            }
        }
        if cfg.reconnect && sending {
            for (i, s) in sessions.iter_mut().enumerate() {
                reconnect_step(cfg, s, i, &poller, now)?;
            }
        }
        // Next deadline: the next open-loop slot, the window's end, pings, the drain.
        let mut deadline = if sending { w.end } else { w.hard_end };
        for s in sessions.iter().filter(|s| !s.dead) {
            if sending && interval > Duration::ZERO && s.inflight.len() < MAX_OPEN_OUTSTANDING {
                deadline = deadline.min(s.next_due);
            }
            deadline = deadline.min(s.last_send + s.ping_every);
        }
        if cfg.reconnect && sending {
            for s in sessions.iter().filter(|s| s.dead && s.lost_at.is_some()) {
                deadline = deadline.min(match &s.hs {
                    None => s.retry_at,
                    Some((_, began)) => *began + attempt_limit(cfg),
                });
            }
        }
        let now = Instant::now();
        poller.wait(&mut events, Some(deadline.saturating_duration_since(now)))?;
        let recv = Instant::now();
        for ev in events.iter().copied() {
            let token = ev.u64;
            if token == TIMER_TOKEN {
                poller.clear_timer();
                continue;
            }
            let i = token as usize;
            let s = &mut sessions[i];
            if s.dead {
                if s.hs.is_some() {
                    handshake_event(cfg, s, i, ev.events, &poller, stats, recv, sending, w.end)?;
                }
                continue;
            }
            if ev.events & libc::EPOLLOUT as u32 != 0 && s.epollout {
                match s.flush(recv) {
                    Ok(true) => {
                        s.epollout = false;
                        poller.ctl(
                            libc::EPOLL_CTL_MOD,
                            s.stream.as_raw_fd(),
                            libc::EPOLLIN as u32,
                            token,
                        )?;
                    }
                    Ok(false) => {}
                    Err(_) => {
                        kill(cfg, s, w, stats, &poller, recv);
                        continue;
                    }
                }
            }
            if ev.events & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 == 0 {
                continue;
            }
            let mut closed = false;
            if let Some(tls) = s.tls.as_mut() {
                closed = !super::tls::read(tls, &mut s.stream, &mut s.inb).unwrap_or(false);
            }
            while s.tls.is_none() {
                match s.stream.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        s.inb.extend_from_slice(&chunk[..n]);
                        if n < chunk.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            let (a, e) = match process_input(cfg, s, w, stats, recv, sending) {
                Ok(c) => c,
                Err(_) => {
                    closed = true;
                    (0, 0)
                }
            };
            answered_local += a;
            errors_local += e;
            if closed {
                kill(cfg, s, w, stats, &poller, recv);
            }
        }
        if answered_local > 0 {
            progress
                .answered
                .fetch_add(answered_local, Ordering::Relaxed);
            progress.errors.fetch_add(errors_local, Ordering::Relaxed);
            answered_local = 0;
            errors_local = 0;
        }
    }
    for s in sessions.iter_mut().filter(|s| !s.dead) {
        stats.unanswered += s.inflight.iter().filter(|f| w.measured(f.intended)).count() as u64;
    }
    for s in sessions
        .iter_mut()
        .filter(|s| s.dead && s.lost_at.is_some())
    {
        stats.still_disconnected += 1;
        if let Some((hs, _)) = s.hs.take() {
            let _ = poller.ctl(libc::EPOLL_CTL_DEL, hs.stream.as_raw_fd(), 0, 0);
        }
        // Open loop: the measured slots this session never sent are unanswered too;
        // dropping them would hide the outage from the latency and the counts.
        if interval > Duration::ZERO {
            let mut due = s.next_due.max(w.measure);
            // Bounded: at most the window's length over the interval.
            while due < w.end {
                stats.unanswered += 1;
                due += interval;
            }
        }
    }
    Ok(())
}

/// One attempt's limit in reconnect mode (see `RECONNECT_ATTEMPT_MIN`).
fn attempt_limit(cfg: &Config) -> Duration {
    let per_server = cfg.session_timeout_ms.max(0) as u64 / cfg.servers.len() as u64;
    Duration::from_millis(per_server).max(RECONNECT_ATTEMPT_MIN)
}

/// Reconnect mode: starts a due attempt, or ends one that ran past its limit.
fn reconnect_step(
    cfg: &Config,
    s: &mut Session,
    token: usize,
    poller: &Poller,
    now: Instant,
) -> io::Result<()> {
    if !s.dead || s.lost_at.is_none() {
        return Ok(());
    }
    if let Some((_, began)) = &s.hs {
        if now.duration_since(*began) >= attempt_limit(cfg) {
            let (hs, _) = s.hs.take().expect("checked");
            poller.ctl(libc::EPOLL_CTL_DEL, hs.stream.as_raw_fd(), 0, 0)?;
            s.server = (s.server + 1) % cfg.servers.len();
            s.retry_at = now + RECONNECT_BACKOFF;
        }
        return Ok(());
    }
    if s.retry_at > now {
        return Ok(());
    }
    let resume = (!s.fresh).then_some(&s.creds);
    let hello = handshake_frame(cfg.session_timeout_ms, resume);
    match Handshake::start(cfg.servers[s.server], hello) {
        Ok(hs) => {
            let ev = (libc::EPOLLIN | libc::EPOLLOUT) as u32;
            poller.ctl(libc::EPOLL_CTL_ADD, hs.stream.as_raw_fd(), ev, token as u64)?;
            s.hs = Some((hs, now));
        }
        Err(_) => {
            s.server = (s.server + 1) % cfg.servers.len();
            s.retry_at = now + RECONNECT_BACKOFF;
        }
    }
    Ok(())
}

/// Reconnect mode: an event on the attempt's socket.
#[allow(clippy::too_many_arguments)]
fn handshake_event(
    cfg: &Config,
    s: &mut Session,
    token: usize,
    events: u32,
    poller: &Poller,
    stats: &mut RunStats,
    now: Instant,
    sending: bool,
    w_end: Instant,
) -> io::Result<()> {
    let (hs, _) = s.hs.as_mut().expect("caller checked");
    match hs.advance(events) {
        HandshakeStep::Pending => {
            if hs.sent_all() {
                let fd = hs.stream.as_raw_fd();
                poller.ctl(libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN as u32, token as u64)?;
            }
        }
        HandshakeStep::Done(resp) => {
            let (hs, _) = s.hs.take().expect("present");
            let lost_at = s.lost_at.take().expect("reconnecting");
            let fd = hs.stream.as_raw_fd();
            poller.ctl(libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN as u32, token as u64)?;
            // The old, already shut down, socket closes here.
            s.stream = hs.stream;
            if s.fresh || resp.session_id != s.creds.session_id {
                // A new session: a resume the server no longer knew, now replaced.
                s.creds = SessionCreds::from_response(&resp);
                s.fresh = false;
            } else {
                stats.reconnects += 1;
                s.creds.timeout_ms = resp.timeout_ms;
            }
            let us = now.saturating_duration_since(lost_at).as_micros() as u64;
            stats.reconnect.saturating_record(us.max(1));
            s.dead = false;
            s.last_send = now;
            s.ping_every = Duration::from_millis((resp.timeout_ms / 3).max(1) as u64);
            if let (LoadModel::Closed { outstanding }, true) = (cfg.load, sending && now < w_end) {
                for _ in 0..outstanding {
                    s.issue(&cfg.workload, now);
                }
            }
        }
        HandshakeStep::Failed(e) => {
            let (hs, _) = s.hs.take().expect("present");
            poller.ctl(libc::EPOLL_CTL_DEL, hs.stream.as_raw_fd(), 0, 0)?;
            if matches!(e, ConnError::Refused) && !s.fresh {
                // timeOut 0: the session expired. Open a new one at once, same server.
                stats.expired += 1;
                s.fresh = true;
                s.retry_at = now;
            } else {
                s.server = (s.server + 1) % cfg.servers.len();
                s.retry_at = now + RECONNECT_BACKOFF;
            }
        }
    }
    Ok(())
}

/// Decodes every complete frame in the session's input; returns (answered, errors).
fn process_input(
    cfg: &Config,
    s: &mut Session,
    w: &Window,
    stats: &mut RunStats,
    recv: Instant,
    sending: bool,
) -> Result<(u64, u64), ConnError> {
    let mut answered = 0;
    let mut errors = 0;
    let mut replies = 0usize;
    let inb = std::mem::take(&mut s.inb);
    let mut pos = s.in_pos;
    let res = super::conn::split_frames(&inb, &mut pos, |payload| {
        let multi = |x: i32| {
            s.inflight
                .iter()
                .find(|f| f.xid == x)
                .is_some_and(|f| f.op == OpKind::Multi)
        };
        match decode_reply(payload, multi)? {
            Incoming::Ping => {}
            Incoming::Watch { .. } => stats.watch_events += 1,
            Incoming::Reply { xid, err, zxid } => {
                s.creds.saw(zxid);
                let f = s
                    .take(xid)
                    .ok_or_else(|| ConnError::Protocol(format!("reply to unknown xid {xid}")))?;
                replies += 1;
                answered += 1;
                if err != 0 {
                    errors += 1;
                } else if stats.record_acks {
                    stats
                        .acks
                        .push(recv.saturating_duration_since(w.start).as_micros() as u64);
                }
                if w.measured(f.intended) {
                    let us = recv.saturating_duration_since(f.intended).as_micros() as u64;
                    stats.hist.saturating_record(us.max(1));
                    stats
                        .per_op
                        .entry(f.op)
                        .or_insert_with(new_hist)
                        .saturating_record(us.max(1));
                    stats.ops += 1;
                    if err != 0 {
                        *stats.errors.entry(err).or_default() += 1;
                    }
                    let sec = recv.saturating_duration_since(w.measure).as_secs() as usize;
                    let last = stats.timeline.len() - 1;
                    let sec = sec.min(last);
                    stats.timeline[sec] += 1;
                    if stats.timeline_lat.len() <= sec {
                        stats.timeline_lat.resize_with(sec + 1, new_hist);
                    }
                    stats.timeline_lat[sec].saturating_record(us.max(1));
                }
            }
        }
        Ok(())
    });
    s.inb = inb;
    if pos == s.inb.len() {
        s.inb.clear();
        s.in_pos = 0;
    } else if pos > READ_CHUNK {
        s.inb.drain(..pos);
        s.in_pos = 0;
    } else {
        s.in_pos = pos;
    }
    res?;
    // `sending` was decided at the top of the loop pass; a reply read after the window
    // ended must not start a request the window would not measure (it would only load
    // the server during the drain).
    if sending && recv < w.end {
        if let LoadModel::Closed { .. } = cfg.load {
            for _ in 0..replies {
                s.issue(&cfg.workload, recv);
            }
        }
    }
    Ok((answered, errors))
}

/// Drops a failed connection; its measured in-flight requests count as CONNECTIONLOSS.
/// In reconnect mode, during the window, the session then looks for a server.
fn kill(
    cfg: &Config,
    s: &mut Session,
    w: &Window,
    stats: &mut RunStats,
    poller: &Poller,
    now: Instant,
) {
    s.dead = true;
    let _ = s.stream.shutdown(std::net::Shutdown::Both);
    s.out.clear();
    s.out_pos = 0;
    s.inb.clear();
    s.in_pos = 0;
    s.epollout = false;
    if cfg.reconnect && now < w.end {
        s.lost_at = Some(now);
        // ZooKeeper's client moves on to the next server of its list at once.
        s.server = (s.server + 1) % cfg.servers.len();
        s.retry_at = now;
    }
    stats.disconnects += 1;
    let lost = s
        .inflight
        .drain(..)
        .filter(|f| w.measured(f.intended))
        .count() as u64;
    if lost > 0 {
        *stats.errors.entry(CONNECTION_LOSS).or_default() += lost;
    }
    let _ = poller.ctl(libc::EPOLL_CTL_DEL, s.stream.as_raw_fd(), 0, 0);
}
