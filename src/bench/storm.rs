//! Session storm: N sessions connect at once. All sockets are opened non-blocking in one
//! pass, each sends its handshake as soon as its TCP connect completes, and the time from
//! the storm's start to each session's ConnectResponse is recorded.

use super::conn::{connect_frame, parse_connect_response, split_frames, ConnError};
use super::engine::{BenchError, RunStats};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct StormConfig {
    pub servers: Vec<SocketAddr>,
    pub sessions: usize,
    pub timeout: Duration,
    pub session_timeout_ms: i32,
}

/// Opens a non-blocking TCP connection (connect in progress).
fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
    let SocketAddr::V4(v4) = addr else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "storm supports IPv4 targets",
        ));
    };
    // SAFETY: plain socket creation; the fd is owned by the TcpStream below.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(v4.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sa is a valid sockaddr_in of the given length.
    let r = unsafe {
        libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs the storm. In the result `ops` counts established sessions, `hist` is the time
/// from the storm's start to each session's handshake reply, and `errors` counts failed
/// sessions (as CONNECTIONLOSS); sessions not established within `timeout` are
/// `unanswered`.
pub fn run(cfg: &StormConfig) -> Result<RunStats, BenchError> {
    struct S {
        stream: TcpStream,
        sent: bool,
        done: bool,
        buf: Vec<u8>,
    }
    // SAFETY: plain syscall.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(BenchError::Io(io::Error::last_os_error()));
    }
    let hello = connect_frame(cfg.session_timeout_ms);
    let mut stats = RunStats::empty(
        cfg.timeout.as_secs_f64(),
        cfg.timeout.as_secs().max(1) as usize,
    );
    let start = Instant::now();
    let mut conns = Vec::with_capacity(cfg.sessions);
    for i in 0..cfg.sessions {
        let addr = cfg.servers[i % cfg.servers.len()];
        let stream = connect_nonblocking(addr).map_err(|e| BenchError::Connect {
            addr,
            err: ConnError::Io(e),
        })?;
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT) as u32,
            u64: i as u64,
        };
        // SAFETY: valid event pointer for the call.
        unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, stream.as_raw_fd(), &mut ev) };
        conns.push(S {
            stream,
            sent: false,
            done: false,
            buf: Vec::new(),
        });
    }
    let mut left = cfg.sessions;
    let mut events: Vec<libc::epoll_event> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    while left > 0 && start.elapsed() < cfg.timeout {
        let wait_ms = cfg
            .timeout
            .saturating_sub(start.elapsed())
            .as_millis()
            .min(100) as i32;
        // SAFETY: capacity-sized buffer; length set to what the kernel filled.
        let n = unsafe {
            libc::epoll_wait(epfd, events.as_mut_ptr(), events.capacity() as i32, wait_ms)
        };
        if n < 0 {
            continue;
        }
        // SAFETY: the kernel initialised n entries.
        unsafe { events.set_len(n as usize) };
        let now = Instant::now();
        for ev in events.iter().copied() {
            let c = &mut conns[ev.u64 as usize];
            if c.done {
                continue;
            }
            let mut failed = ev.events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            if !failed && !c.sent && ev.events & libc::EPOLLOUT as u32 != 0 {
                // The frame is 49 bytes: a fresh socket's buffer takes it whole.
                failed = c.stream.write_all(&hello).is_err();
                c.sent = true;
                let mut m = libc::epoll_event {
                    events: libc::EPOLLIN as u32,
                    u64: ev.u64,
                };
                // SAFETY: as above.
                unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_MOD, c.stream.as_raw_fd(), &mut m) };
            }
            if !failed && ev.events & libc::EPOLLIN as u32 != 0 {
                match c.stream.read(&mut chunk) {
                    Ok(0) => failed = true,
                    Ok(k) => c.buf.extend_from_slice(&chunk[..k]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => failed = true,
                }
                let mut pos = 0;
                let mut ok = None;
                let _ = split_frames(&c.buf, &mut pos, |p| {
                    ok = Some(parse_connect_response(p).is_ok());
                    Ok(())
                });
                match ok {
                    Some(true) => {
                        c.done = true;
                        left -= 1;
                        let us = now.duration_since(start).as_micros() as u64;
                        stats.hist.saturating_record(us.max(1));
                        stats.ops += 1;
                    }
                    Some(false) => failed = true,
                    None => {}
                }
            }
            if failed && !c.done {
                c.done = true;
                left -= 1;
                *stats
                    .errors
                    .entry(super::engine::CONNECTION_LOSS)
                    .or_default() += 1;
            }
        }
    }
    stats.unanswered = left as u64;
    // Throughput of a storm: sessions established per second until the last one.
    stats.window_s = start.elapsed().as_secs_f64();
    // SAFETY: we own epfd. Sockets close on drop (the server then ends the sessions).
    unsafe { libc::close(epfd) };
    Ok(stats)
}
