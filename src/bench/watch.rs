//! The watch workload: many sessions hold persistent watches on a few hot nodes; one
//! writer session updates the hot nodes in rounds; each notification's latency is its
//! arrival time minus the moment the write that caused it was sent.
//!
//! Rounds make the mapping from notification to write exact: a round writes every hot
//! node once, and the next round starts only after every expected notification arrived
//! (or `round_timeout` passed; the missing ones are counted). Threads, not the epoll
//! engine: watchers are idle most of the time and a blocking read per watcher is the
//! simplest exact clock.
//!
//! Watchers connect in a ramp: at most `HANDSHAKE_CONCURRENCY` handshakes at once, a
//! failed one retried `HANDSHAKE_ATTEMPTS` times in all (Apache ZooKeeper closed
//! connections that arrived in a burst of 200). Watchers that still fail are reported
//! as `connect_failures` and the run goes on with the others.

use super::conn::{
    drive_handshakes, handshake_frame, BlockingClient, ConnError, HandshakeJob, HandshakeLimits,
    HandshakeOutcome,
};
use super::engine::{BenchError, RunStats};
use crate::proto::{AddWatchRequest, CreateRequest, OpCode, SetDataRequest};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// Handshakes in progress at once while the watchers connect.
pub const HANDSHAKE_CONCURRENCY: usize = 16;

/// Attempts per watcher's connection, the first included.
pub const HANDSHAKE_ATTEMPTS: u32 = 4;

/// Pause before a watcher's connection is retried.
pub const HANDSHAKE_BACKOFF: Duration = Duration::from_millis(200);

/// Limit of one connection attempt.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// `EventType.NodeDataChanged`.
const NODE_DATA_CHANGED: i32 = 3;

#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub servers: Vec<SocketAddr>,
    pub watchers: usize,
    pub hot_nodes: usize,
    /// Rounds per second at most (each round writes every hot node once).
    pub rounds_per_sec: f64,
    pub duration: Duration,
    pub root: String,
    pub round_timeout: Duration,
}

/// Runs the watch workload. In the returned stats, `ops` counts notifications, `hist`
/// is write-to-notification latency, `unanswered` counts notifications that never came,
/// and `timeline` counts notifications per second.
pub fn run(cfg: &WatchConfig) -> Result<RunStats, BenchError> {
    assert!(cfg.watchers > 0 && cfg.hot_nodes > 0 && cfg.rounds_per_sec > 0.0);
    let dir = format!("{}/w", cfg.root);
    let paths: Vec<String> = (0..cfg.hot_nodes).map(|i| format!("{dir}/h{i}")).collect();
    let addr0 = cfg.servers[0];
    let cerr = move |err: ConnError| BenchError::Connect { addr: addr0, err };
    let mut writer = BlockingClient::connect(addr0, 10_000).map_err(cerr)?;
    let mk = |path: &String| {
        (
            OpCode::Create,
            CreateRequest {
                path: path.clone(),
                data: None,
                acl: super::workload::open_acl(),
                flags: 0,
            },
        )
    };
    super::setup::populate(addr0, &cfg.root, 0, &Bytes::new())?;
    writer
        .pipeline([&dir].into_iter().chain(&paths).map(mk), 64)
        .map_err(cerr)?;

    let base = Instant::now();
    let stamps: Arc<Vec<AtomicU64>> =
        Arc::new((0..cfg.hot_nodes).map(|_| AtomicU64::new(0)).collect());
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = connect_watchers(cfg)?;
    let mut connect_failures = 0u64;
    let live: Vec<(SocketAddr, BlockingClient)> = clients
        .into_iter()
        .filter_map(|c| {
            c.or_else(|| {
                connect_failures += 1;
                None
            })
        })
        .collect();
    if live.is_empty() {
        return Err(BenchError::Config(format!(
            "none of the {} watchers could connect",
            cfg.watchers
        )));
    }
    let watchers = live.len();
    let ready = Arc::new(Barrier::new(watchers + 1));
    let seconds = cfg.duration.as_secs_f64().ceil().max(1.0) as usize;
    let merged = Arc::new(Mutex::new(RunStats::empty(
        cfg.duration.as_secs_f64(),
        seconds,
    )));
    merged.lock().expect("not poisoned").connect_failures = connect_failures;
    let mut handles = Vec::new();
    for (addr, client) in live {
        let (paths, stamps, received, stop, ready, merged) = (
            paths.clone(),
            stamps.clone(),
            received.clone(),
            stop.clone(),
            ready.clone(),
            merged.clone(),
        );
        handles.push(std::thread::spawn(move || -> Result<(), BenchError> {
            let res = watcher(
                client, &paths, &stamps, base, &received, &stop, &ready, seconds,
            );
            match res {
                Ok(s) => {
                    merged.lock().expect("not poisoned").merge(s);
                    Ok(())
                }
                Err(err) => Err(BenchError::Connect { addr, err }),
            }
        }));
    }
    ready.wait();
    let start = Instant::now();
    let mut expected = 0u64;
    let round_every = Duration::from_secs_f64(1.0 / cfg.rounds_per_sec);
    while start.elapsed() < cfg.duration {
        let round_start = Instant::now();
        let reqs: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(h, p)| {
                stamps[h].store(base.elapsed().as_nanos() as u64, Ordering::Release);
                (
                    OpCode::SetData,
                    SetDataRequest {
                        path: p.clone(),
                        data: Some(Bytes::from_static(b"x")),
                        version: -1,
                    },
                )
            })
            .collect();
        writer.pipeline(reqs, cfg.hot_nodes).map_err(cerr)?;
        expected += (watchers * cfg.hot_nodes) as u64;
        let deadline = round_start + cfg.round_timeout;
        while received.load(Ordering::Acquire) < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        // Late notifications of this round would be charged to the next one's stamps:
        // count them as missing instead, by resynchronising the expectation.
        expected = expected.max(received.load(Ordering::Acquire));
        let next = round_start + round_every;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    stop.store(true, Ordering::Release);
    for h in handles {
        h.join().expect("watcher panicked")?;
    }
    writer.close();
    let mut stats = merged.lock().expect("not poisoned").clone();
    stats.unanswered = expected.saturating_sub(stats.ops);
    Ok(stats)
}

/// Opens every watcher's session in a ramp (see the module header); None for the ones
/// that failed every attempt.
fn connect_watchers(
    cfg: &WatchConfig,
) -> Result<Vec<Option<(SocketAddr, BlockingClient)>>, BenchError> {
    let now = Instant::now();
    let hello = handshake_frame(10_000, None);
    let jobs: Vec<HandshakeJob> = (0..cfg.watchers)
        .map(|i| HandshakeJob {
            first_server: i % cfg.servers.len(),
            hello: hello.clone(),
            since: now,
        })
        .collect();
    // Every job gets its attempts: the deadline only guards against a hung server.
    let per_job = (HANDSHAKE_TIMEOUT + HANDSHAKE_BACKOFF) * HANDSHAKE_ATTEMPTS;
    let waves = cfg.watchers.div_ceil(HANDSHAKE_CONCURRENCY) as u32;
    let lim = HandshakeLimits {
        concurrency: HANDSHAKE_CONCURRENCY,
        attempts: HANDSHAKE_ATTEMPTS,
        backoff: HANDSHAKE_BACKOFF,
        attempt_timeout: HANDSHAKE_TIMEOUT,
        deadline: now + per_job * waves.min(8),
    };
    let outcomes = drive_handshakes(&cfg.servers, &jobs, lim).map_err(BenchError::Io)?;
    let mut out = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        out.push(match o {
            HandshakeOutcome::Done {
                stream,
                resp,
                server,
                ..
            } => Some((
                cfg.servers[server],
                BlockingClient::from_handshake(stream, &resp).map_err(BenchError::Io)?,
            )),
            HandshakeOutcome::Expired { .. } | HandshakeOutcome::Failed { .. } => None,
        });
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn watcher(
    client: BlockingClient,
    paths: &[String],
    stamps: &[AtomicU64],
    base: Instant,
    received: &AtomicU64,
    stop: &AtomicBool,
    ready: &Barrier,
    seconds: usize,
) -> Result<RunStats, ConnError> {
    let connected = (|| {
        let mut c = client;
        let reqs = paths.iter().map(|p| {
            (
                OpCode::AddWatch,
                AddWatchRequest {
                    path: p.clone(),
                    mode: 0,
                },
            )
        });
        for e in c.pipeline(reqs, 64)? {
            if e != 0 {
                return Err(ConnError::Protocol(format!("addWatch failed with {e}")));
            }
        }
        Ok(c)
    })();
    ready.wait();
    let mut c = connected?;
    let mut stats = RunStats::empty(0.0, seconds);
    let ping_every = Duration::from_millis((c.timeout_ms / 3).max(100) as u64);
    c.stream.set_read_timeout(Some(Duration::from_millis(50)))?;
    let start = Instant::now();
    let mut last_ping = Instant::now();
    while !stop.load(Ordering::Acquire) {
        if last_ping.elapsed() >= ping_every {
            let mut out = Vec::new();
            let s = super::workload::begin_frame(&mut out);
            use crate::proto::Jute;
            crate::proto::RequestHeader {
                xid: crate::proto::xid::PING,
                op: OpCode::Ping as i32,
            }
            .write(&mut out);
            super::workload::end_frame(&mut out, s);
            c.send(&out)?;
            last_ping = Instant::now();
        }
        let frame = match c.read_frame() {
            Ok(f) => f,
            Err(ConnError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        if let super::conn::Incoming::Watch { event } =
            super::conn::decode_reply(&frame, |_| false)?
        {
            if event.event_type != NODE_DATA_CHANGED {
                continue;
            }
            let Some(h) = paths.iter().position(|p| *p == event.path) else {
                continue;
            };
            let sent = base + Duration::from_nanos(stamps[h].load(Ordering::Acquire));
            let us = now.saturating_duration_since(sent).as_micros() as u64;
            stats.hist.saturating_record(us.max(1));
            stats.ops += 1;
            let sec = now.saturating_duration_since(start).as_secs() as usize;
            let last = stats.timeline.len() - 1;
            stats.timeline[sec.min(last)] += 1;
            received.fetch_add(1, Ordering::AcqRel);
        }
    }
    c.close();
    Ok(stats)
}
