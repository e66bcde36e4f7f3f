//! Session storm: N sessions connect at once, and (restart mode) reconnect after the
//! target restarts.
//!
//! The storm: all sockets are opened non-blocking in one pass, each sends its handshake
//! as soon as its TCP connect completes, and the time from the storm's start to each
//! session's ConnectResponse is recorded.
//!
//! Restart mode: after the storm, a restart (a command the user gives) runs while every
//! established session waits for its connection to drop. Each dropped session then
//! resumes the way ZooKeeper's client does: a ConnectRequest with its session id,
//! password and last zxid seen, retried (next server in the list, short back-off) until
//! the server answers or the time limit passes. Per session we record the time from its
//! connection's drop to the ConnectResponse, and classify it: resumed (same session),
//! expired (timeOut 0: the server no longer knows it), failed (no answer in time).

use super::conn::{
    drive_handshakes, handshake_frame, HandshakeJob, HandshakeLimits, HandshakeOutcome,
    SessionCreds,
};
use super::engine::{BenchError, RunStats};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct StormConfig {
    pub servers: Vec<SocketAddr>,
    pub sessions: usize,
    pub timeout: Duration,
    pub session_timeout_ms: i32,
}

/// Pause between a failed resume attempt and the next: short, so the time to reconnect
/// is not dominated by the back-off (ZooKeeper's client sleeps up to 1 s at random).
pub const RESUME_BACKOFF: Duration = Duration::from_millis(50);

/// One resume attempt's limit; a server that accepts but does not answer is retried.
pub const RESUME_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the storm. In the result `ops` counts established sessions, `hist` is the time
/// from the storm's start to each session's handshake reply, and `errors` counts failed
/// sessions (as CONNECTIONLOSS); sessions not established within `timeout` are
/// `unanswered`.
pub fn run(cfg: &StormConfig) -> Result<RunStats, BenchError> {
    Ok(storm(cfg)?.0)
}

/// The storm itself; also returns the established sessions for restart mode.
fn storm(cfg: &StormConfig) -> Result<(RunStats, Vec<Established>), BenchError> {
    let start = Instant::now();
    let hello = handshake_frame(cfg.session_timeout_ms, None);
    let jobs: Vec<HandshakeJob> = (0..cfg.sessions)
        .map(|i| HandshakeJob {
            first_server: i % cfg.servers.len(),
            hello: hello.clone(),
            since: start,
        })
        .collect();
    let lim = HandshakeLimits {
        concurrency: cfg.sessions.max(1),
        attempts: 1,
        backoff: Duration::ZERO,
        attempt_timeout: cfg.timeout,
        deadline: start + cfg.timeout,
    };
    let outcomes = drive_handshakes(&cfg.servers, &jobs, lim).map_err(BenchError::Io)?;
    let mut stats = RunStats::empty(
        cfg.timeout.as_secs_f64(),
        cfg.timeout.as_secs().max(1) as usize,
    );
    let mut established = Vec::new();
    for o in outcomes {
        match o {
            HandshakeOutcome::Done {
                stream,
                resp,
                at,
                server,
                ..
            } => {
                let us = at.duration_since(start).as_micros() as u64;
                stats.hist.saturating_record(us.max(1));
                stats.ops += 1;
                established.push(Established {
                    stream,
                    creds: SessionCreds::from_response(&resp),
                    server,
                });
            }
            HandshakeOutcome::Failed { err, .. } if is_timeout(&err) => stats.unanswered += 1,
            HandshakeOutcome::Failed { .. } | HandshakeOutcome::Expired { .. } => {
                *stats
                    .errors
                    .entry(super::engine::CONNECTION_LOSS)
                    .or_default() += 1;
                stats.connect_failures += 1;
            }
        }
    }
    // Throughput of a storm: sessions established per second until the last one.
    stats.window_s = start.elapsed().as_secs_f64();
    Ok((stats, established))
}

fn is_timeout(e: &super::conn::ConnError) -> bool {
    matches!(e, super::conn::ConnError::Io(io) if io.kind() == io::ErrorKind::TimedOut)
}

struct Established {
    stream: TcpStream,
    creds: SessionCreds,
    server: usize,
}

/// The outcome of a storm followed by a restart.
#[derive(Debug, Clone)]
pub struct RestartStats {
    /// The initial storm (see `run`).
    pub storm: RunStats,
    /// Time from each session's drop to its resumed ConnectResponse (`ops` = resumed,
    /// `hist` in µs, `window_s` = restart start to the last resume).
    pub reconnect: RunStats,
    pub established: u64,
    /// Sessions whose connection dropped during the restart.
    pub dropped: u64,
    /// Sessions whose connection was still open when the time limit passed.
    pub not_dropped: u64,
    pub resumed: u64,
    /// The server answered the resume with timeOut 0 (or with another session id).
    pub expired: u64,
    /// No answer to any resume attempt within the time limit.
    pub failed: u64,
    /// Resume attempts in all (the first ones included).
    pub attempts: u64,
    /// How long the restart took, and its error; None if it had not returned in time.
    pub restart: Option<(Duration, Result<(), String>)>,
}

/// Storm, then restart the target with `restart` (run on its own thread), then resume
/// every dropped session. `cfg.timeout` bounds the storm and, again, the restart and
/// reconnection phase.
pub fn run_restart(
    cfg: &StormConfig,
    restart: Box<dyn FnOnce() -> Result<(), String> + Send>,
) -> Result<RestartStats, BenchError> {
    let (storm_stats, established) = storm(cfg)?;
    let n = established.len();
    let t0 = Instant::now();
    let deadline = t0 + cfg.timeout;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let began = Instant::now();
        let res = restart();
        let _ = tx.send((began.elapsed(), res));
    });
    let lost_at = wait_for_drops(&established, deadline).map_err(BenchError::Io)?;
    let dropped: Vec<usize> = (0..n).filter(|&i| lost_at[i].is_some()).collect();
    let jobs: Vec<HandshakeJob> = dropped
        .iter()
        .map(|&i| {
            let e = &established[i];
            HandshakeJob {
                // ZooKeeper's client moves on to the next server of its list.
                first_server: (e.server + 1) % cfg.servers.len(),
                hello: handshake_frame(cfg.session_timeout_ms, Some(&e.creds)),
                since: lost_at[i].expect("dropped"),
            }
        })
        .collect();
    let lim = HandshakeLimits {
        concurrency: jobs.len().max(1),
        attempts: u32::MAX,
        backoff: RESUME_BACKOFF,
        attempt_timeout: RESUME_ATTEMPT_TIMEOUT,
        deadline,
    };
    let outcomes = drive_handshakes(&cfg.servers, &jobs, lim).map_err(BenchError::Io)?;
    let seconds = cfg.timeout.as_secs().max(1) as usize;
    let mut out = RestartStats {
        storm: storm_stats,
        reconnect: RunStats::empty(0.0, seconds),
        established: n as u64,
        dropped: dropped.len() as u64,
        not_dropped: (n - dropped.len()) as u64,
        resumed: 0,
        expired: 0,
        failed: 0,
        attempts: 0,
        restart: None,
    };
    let mut last = t0;
    for (k, o) in outcomes.into_iter().enumerate() {
        let e = &established[dropped[k]];
        match o {
            HandshakeOutcome::Done {
                resp, at, attempts, ..
            } => {
                out.attempts += attempts as u64;
                if resp.session_id != e.creds.session_id {
                    out.expired += 1;
                    continue;
                }
                let us = at.duration_since(jobs[k].since).as_micros() as u64;
                out.reconnect.hist.saturating_record(us.max(1));
                out.reconnect.ops += 1;
                out.resumed += 1;
                last = last.max(at);
            }
            HandshakeOutcome::Expired { attempts, .. } => {
                out.attempts += attempts as u64;
                out.expired += 1;
            }
            HandshakeOutcome::Failed { attempts, .. } => {
                out.attempts += attempts as u64;
                out.failed += 1;
            }
        }
    }
    out.reconnect.window_s = last.duration_since(t0).as_secs_f64();
    out.restart = rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok();
    assert_eq!(out.resumed + out.expired + out.failed, out.dropped);
    Ok(out)
}

/// Waits until each connection reports EOF or an error; returns when it did (None for
/// those still open at `deadline`).
fn wait_for_drops(conns: &[Established], deadline: Instant) -> io::Result<Vec<Option<Instant>>> {
    let mut lost_at = vec![None; conns.len()];
    // SAFETY: plain syscall; closed below.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(io::Error::last_os_error());
    }
    for (i, c) in conns.iter().enumerate() {
        c.stream.set_nonblocking(true)?;
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: i as u64,
        };
        // SAFETY: valid event pointer for the call.
        unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, c.stream.as_raw_fd(), &mut ev) };
    }
    let mut left = conns.len();
    let mut events: Vec<libc::epoll_event> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    // Bounded by the deadline: each pass waits at most 100 ms.
    while left > 0 && Instant::now() < deadline {
        // SAFETY: capacity-sized buffer; the length is set to what the kernel filled.
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), 1024, 100) };
        // SAFETY: the kernel initialised n entries (none on error).
        unsafe { events.set_len(n.max(0) as usize) };
        let now = Instant::now();
        for ev in events.iter().copied() {
            let i = ev.u64 as usize;
            if lost_at[i].is_some() {
                continue;
            }
            // Drain what the server sent (nothing is expected); EOF or an error is the drop.
            let mut gone = ev.events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            let mut s = &conns[i].stream;
            for _ in 0..16 {
                match s.read(&mut chunk) {
                    Ok(0) => gone = true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => gone = true,
                }
                break;
            }
            if gone {
                lost_at[i] = Some(now);
                left -= 1;
                // SAFETY: removing a registered fd.
                unsafe {
                    libc::epoll_ctl(
                        epfd,
                        libc::EPOLL_CTL_DEL,
                        s.as_raw_fd(),
                        std::ptr::null_mut(),
                    )
                };
            }
        }
    }
    // SAFETY: we own epfd.
    unsafe { libc::close(epfd) };
    Ok(lost_at)
}
