//! Client connections: the handshake, frame splitting, reply decoding, and a small
//! blocking client for the setup phase and the watch and storm workloads.
//!
//! The measured path (see `engine`) uses non-blocking sockets with the same framing.

use crate::proto::{
    xid, ConnectRequest, ConnectResponse, ErrorResponse, Jute, MultiHeader, OpCode, Reader,
    ReplyHeader, SetDataResponse, WatcherEvent, DEFAULT_MAX_BUFFER,
};
use bytes::Bytes;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

/// Why a connection failed.
#[derive(Debug)]
pub enum ConnError {
    Io(io::Error),
    /// The server's reply did not decode, or broke the protocol.
    Protocol(String),
    /// The server answered the handshake with timeOut 0: session expired or refused.
    Refused,
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "{e}"),
            ConnError::Protocol(m) => write!(f, "protocol error: {m}"),
            ConnError::Refused => write!(f, "session refused (timeOut 0 in the handshake)"),
        }
    }
}

impl std::error::Error for ConnError {}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        ConnError::Io(e)
    }
}

/// What a session needs to resume on another connection: ZooKeeper's client keeps the
/// same four values and sends them in its next ConnectRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCreds {
    pub session_id: i64,
    pub passwd: Bytes,
    /// The timeout the server granted.
    pub timeout_ms: i32,
    /// The newest zxid this session has seen in a reply; a server that is behind it
    /// must refuse the session (it would show the client an older state).
    pub last_zxid: i64,
}

impl SessionCreds {
    pub fn from_response(resp: &ConnectResponse) -> SessionCreds {
        SessionCreds {
            session_id: resp.session_id,
            passwd: resp.passwd.clone().unwrap_or_default(),
            timeout_ms: resp.timeout_ms,
            last_zxid: 0,
        }
    }

    /// Records a reply's zxid (ZooKeeper's client keeps only positive ones).
    pub fn saw(&mut self, zxid: i64) {
        if zxid > self.last_zxid {
            self.last_zxid = zxid;
        }
    }
}

/// The handshake frame a new session sends.
pub fn connect_frame(timeout_ms: i32) -> Vec<u8> {
    handshake_frame(timeout_ms, None)
}

/// The handshake frame of a new session (`resume` None) or of a session resuming with
/// its id, password and last zxid seen.
pub fn handshake_frame(timeout_ms: i32, resume: Option<&SessionCreds>) -> Vec<u8> {
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: resume.map_or(0, |c| c.last_zxid),
        timeout_ms,
        session_id: resume.map_or(0, |c| c.session_id),
        passwd: Some(resume.map_or(Bytes::from_static(&[0u8; 16]), |c| c.passwd.clone())),
        read_only: Some(false),
    };
    let mut out = Vec::with_capacity(64);
    let start = super::workload::begin_frame(&mut out);
    req.write(&mut out);
    super::workload::end_frame(&mut out, start);
    out
}

pub fn parse_connect_response(payload: &[u8]) -> Result<ConnectResponse, ConnError> {
    let resp = ConnectResponse::from_bytes(payload)
        .map_err(|e| ConnError::Protocol(format!("handshake reply: {e}")))?;
    if resp.timeout_ms <= 0 {
        return Err(ConnError::Refused);
    }
    Ok(resp)
}

/// Splits complete frames off the front of `buf[*pos..]`: calls `f` with each payload
/// and advances `pos`. Returns an error on a length ZooKeeper would never send.
pub fn split_frames(
    buf: &[u8],
    pos: &mut usize,
    mut f: impl FnMut(&[u8]) -> Result<(), ConnError>,
) -> Result<(), ConnError> {
    loop {
        let rest = &buf[*pos..];
        if rest.len() < 4 {
            return Ok(());
        }
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        // Replies may exceed jute.maxbuffer slightly (header bytes); allow twice it.
        if len < 0 || len as usize > 2 * DEFAULT_MAX_BUFFER {
            return Err(ConnError::Protocol(format!("bad frame length {len}")));
        }
        let len = len as usize;
        if rest.len() < 4 + len {
            return Ok(());
        }
        f(&rest[4..4 + len])?;
        *pos += 4 + len;
    }
}

/// One decoded server frame after the handshake.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A reply to request `xid`; `err` is the ZooKeeper error code (for multi, the first
    /// failing op's code when the header carries none).
    Reply {
        xid: i32,
        zxid: i64,
        err: i32,
    },
    Ping,
    Watch {
        event: WatcherEvent,
    },
}

/// Decodes one frame. Only multi bodies are decoded (to find a failing op); other
/// bodies are skipped, since the generator needs only the outcome.
pub fn decode_reply(payload: &[u8], multi: impl Fn(i32) -> bool) -> Result<Incoming, ConnError> {
    let mut r = Reader::new(payload);
    let h = ReplyHeader::read(&mut r).map_err(|e| ConnError::Protocol(e.to_string()))?;
    match h.xid {
        xid::PING => Ok(Incoming::Ping),
        xid::NOTIFICATION => {
            let event =
                WatcherEvent::read(&mut r).map_err(|e| ConnError::Protocol(e.to_string()))?;
            Ok(Incoming::Watch { event })
        }
        x => {
            let mut err = h.err;
            if err == 0 && multi(x) {
                err = multi_error(&mut r)
                    .map_err(|e| ConnError::Protocol(format!("multi reply: {e}")))?;
            }
            Ok(Incoming::Reply {
                xid: x,
                zxid: h.zxid,
                err,
            })
        }
    }
}

/// The first failing code in a MultiResponse of setData ops (0 if all succeeded).
fn multi_error(r: &mut Reader<'_>) -> crate::proto::jute::Result<i32> {
    let mut first = 0;
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            return Ok(first);
        }
        if h.op == OpCode::Error as i32 {
            let e = ErrorResponse::read(r)?;
            // RUNTIMEINCONSISTENCY marks the ops after the one that failed.
            if first == 0 && e.err != 0 && e.err != -2 {
                first = e.err;
            }
        } else if h.op == OpCode::SetData as i32 {
            SetDataResponse::read(r)?;
        } else {
            // Our multis hold only setData; anything else means we cannot parse on.
            return Ok(if first != 0 { first } else { h.err });
        }
    }
}

/// A blocking client with its own xid counter: set-up work, watchers, storms.
pub struct BlockingClient {
    pub stream: TcpStream,
    pub session_id: i64,
    pub timeout_ms: i32,
    pub passwd: Bytes,
    buf: Vec<u8>,
    pos: usize,
    next_xid: i32,
}

impl BlockingClient {
    pub fn connect(addr: SocketAddr, timeout_ms: i32) -> Result<BlockingClient, ConnError> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_nodelay(true)?;
        stream.write_all(&connect_frame(timeout_ms))?;
        let mut c = BlockingClient {
            stream,
            session_id: 0,
            timeout_ms,
            passwd: Bytes::new(),
            buf: Vec::new(),
            pos: 0,
            next_xid: 1,
        };
        c.stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let payload = c.read_frame()?;
        let resp = parse_connect_response(&payload)?;
        c.session_id = resp.session_id;
        c.timeout_ms = resp.timeout_ms;
        c.passwd = resp.passwd.unwrap_or_default();
        Ok(c)
    }

    /// Wraps a connection whose handshake already completed (see `drive_handshakes`);
    /// the stream is made blocking.
    pub fn from_handshake(stream: TcpStream, resp: &ConnectResponse) -> io::Result<BlockingClient> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(BlockingClient {
            stream,
            session_id: resp.session_id,
            timeout_ms: resp.timeout_ms,
            passwd: resp.passwd.clone().unwrap_or_default(),
            buf: Vec::new(),
            pos: 0,
            next_xid: 1,
        })
    }

    pub fn next_xid(&mut self) -> i32 {
        let x = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        x
    }

    /// Reads one whole frame's payload.
    pub fn read_frame(&mut self) -> Result<Vec<u8>, ConnError> {
        loop {
            let rest = &self.buf[self.pos..];
            if rest.len() >= 4 {
                let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                if len < 0 || len as usize > 2 * DEFAULT_MAX_BUFFER {
                    return Err(ConnError::Protocol(format!("bad frame length {len}")));
                }
                let len = len as usize;
                if rest.len() >= 4 + len {
                    let p = rest[4..4 + len].to_vec();
                    self.pos += 4 + len;
                    return Ok(p);
                }
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(ConnError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends already encoded frames.
    pub fn send(&mut self, frames: &[u8]) -> Result<(), ConnError> {
        self.stream.write_all(frames)?;
        Ok(())
    }

    /// Reads frames until a reply (skipping pings); watch events go to `on_watch`.
    pub fn read_reply(
        &mut self,
        mut on_watch: impl FnMut(WatcherEvent),
    ) -> Result<(i32, i64, i32), ConnError> {
        loop {
            let p = self.read_frame()?;
            match decode_reply(&p, |_| false)? {
                Incoming::Reply { xid, zxid, err } => return Ok((xid, zxid, err)),
                Incoming::Ping => {}
                Incoming::Watch { event } => on_watch(event),
            }
        }
    }

    /// Sends one request and waits for its reply; returns the error code.
    pub fn call(&mut self, op: OpCode, record: &impl Jute) -> Result<i32, ConnError> {
        let x = self.next_xid();
        let mut out = Vec::new();
        super::workload::push_request(&mut out, x, op, record);
        self.send(&out)?;
        let (rx, _, err) = self.read_reply(|_| {})?;
        if rx != x {
            return Err(ConnError::Protocol(format!("reply xid {rx}, expected {x}")));
        }
        Ok(err)
    }

    /// Pipelines `reqs` with at most `window` outstanding; returns each reply's code in
    /// order.
    pub fn pipeline<R: Jute>(
        &mut self,
        reqs: impl IntoIterator<Item = (OpCode, R)>,
        window: usize,
    ) -> Result<Vec<i32>, ConnError> {
        let mut errs = Vec::new();
        let mut outstanding = std::collections::VecDeque::new();
        let mut it = reqs.into_iter().peekable();
        loop {
            let mut out = Vec::new();
            while outstanding.len() < window {
                let Some((op, rec)) = it.next() else { break };
                let x = self.next_xid();
                super::workload::push_request(&mut out, x, op, &rec);
                outstanding.push_back(x);
            }
            if !out.is_empty() {
                self.send(&out)?;
            }
            let Some(want) = outstanding.pop_front() else {
                return Ok(errs);
            };
            let (x, _, err) = self.read_reply(|_| {})?;
            if x != want {
                return Err(ConnError::Protocol(format!(
                    "reply xid {x}, expected {want}"
                )));
            }
            errs.push(err);
        }
    }

    /// Sends closeSession and waits (briefly) for its answer.
    pub fn close(mut self) {
        let x = self.next_xid();
        let mut out = Vec::new();
        let start = super::workload::begin_frame(&mut out);
        crate::proto::RequestHeader {
            xid: x,
            op: OpCode::CloseSession as i32,
        }
        .write(&mut out);
        super::workload::end_frame(&mut out, start);
        if self.send(&out).is_ok() {
            let _ = self.stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = self.read_reply(|_| {});
        }
    }
}

/// Opens a non-blocking TCP connection (connect in progress).
pub fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
    let SocketAddr::V4(v4) = addr else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "non-blocking connects support IPv4 targets",
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

/// Where a non-blocking handshake stands after an event.
#[derive(Debug)]
pub enum HandshakeStep {
    Pending,
    Done(ConnectResponse),
    Failed(ConnError),
}

/// One handshake over a non-blocking socket: connect, send the ConnectRequest once the
/// connect completed, read the ConnectResponse. The owner polls the stream (EPOLLIN |
/// EPOLLOUT) and calls `advance` on each event.
pub struct Handshake {
    pub stream: TcpStream,
    hello: Vec<u8>,
    sent: usize,
    buf: Vec<u8>,
}

impl Handshake {
    pub fn start(addr: SocketAddr, hello: Vec<u8>) -> io::Result<Handshake> {
        Ok(Handshake {
            stream: connect_nonblocking(addr)?,
            hello,
            sent: 0,
            buf: Vec::new(),
        })
    }

    /// The whole ConnectRequest was written.
    pub fn sent_all(&self) -> bool {
        self.sent == self.hello.len()
    }

    /// Progresses on an epoll event's flags.
    pub fn advance(&mut self, events: u32) -> HandshakeStep {
        if self.sent < self.hello.len() && events & libc::EPOLLOUT as u32 != 0 {
            // EPOLLOUT on a connecting socket means the connect finished (or failed:
            // then the write reports the connect's error).
            while self.sent < self.hello.len() {
                match self.stream.write(&self.hello[self.sent..]) {
                    Ok(0) => {
                        return HandshakeStep::Failed(
                            io::Error::from(io::ErrorKind::WriteZero).into(),
                        )
                    }
                    Ok(n) => self.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return HandshakeStep::Failed(e.into()),
                }
            }
        }
        if events & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
            let mut chunk = [0u8; 512];
            // Bounded: a ConnectResponse is under 64 bytes; stop at WouldBlock or EOF.
            for _ in 0..16 {
                match self.stream.read(&mut chunk) {
                    Ok(0) => {
                        return HandshakeStep::Failed(
                            io::Error::from(io::ErrorKind::UnexpectedEof).into(),
                        )
                    }
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return HandshakeStep::Failed(e.into()),
                }
            }
            let mut pos = 0;
            let mut got = None;
            if let Err(e) = split_frames(&self.buf, &mut pos, |p| {
                if got.is_none() {
                    got = Some(parse_connect_response(p));
                }
                Ok(())
            }) {
                return HandshakeStep::Failed(e);
            }
            match got {
                Some(Ok(resp)) => return HandshakeStep::Done(resp),
                Some(Err(e)) => return HandshakeStep::Failed(e),
                None => {}
            }
        }
        HandshakeStep::Pending
    }
}

/// One session's handshake for `drive_handshakes`.
#[derive(Debug, Clone)]
pub struct HandshakeJob {
    /// Index of the first server to try; retries move to the next one in the list, as
    /// ZooKeeper's client does.
    pub first_server: usize,
    pub hello: Vec<u8>,
    /// The instant this job's time is measured from.
    pub since: Instant,
}

/// Limits for `drive_handshakes`.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeLimits {
    /// Handshakes in progress at once (a ramp: a server may drop connections that
    /// arrive in a burst).
    pub concurrency: usize,
    /// Attempts per job, the first included (>= 1).
    pub attempts: u32,
    /// Pause before a retry.
    pub backoff: Duration,
    /// One attempt's limit (connect + handshake).
    pub attempt_timeout: Duration,
    /// Nothing is attempted or awaited after this.
    pub deadline: Instant,
}

/// The end of one job.
#[derive(Debug)]
pub enum HandshakeOutcome {
    Done {
        stream: TcpStream,
        resp: ConnectResponse,
        /// When the ConnectResponse arrived.
        at: Instant,
        attempts: u32,
        server: usize,
    },
    /// The server answered with timeOut 0: for a resume, the session expired. Not
    /// retried.
    Expired { at: Instant, attempts: u32 },
    /// Every attempt failed (the last error), or the deadline passed.
    Failed { err: ConnError, attempts: u32 },
}

/// Runs every job's handshake, at most `concurrency` at once, retrying failures on the
/// next server after `backoff`, until each is done or out of attempts or the deadline
/// passed. Returns one outcome per job, in job order.
pub fn drive_handshakes(
    servers: &[SocketAddr],
    jobs: &[HandshakeJob],
    lim: HandshakeLimits,
) -> io::Result<Vec<HandshakeOutcome>> {
    assert!(!servers.is_empty());
    assert!(lim.concurrency >= 1 && lim.attempts >= 1);
    struct Active {
        job: usize,
        hs: Handshake,
        began: Instant,
        server: usize,
    }
    // SAFETY: plain syscall; closed below.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out: Vec<Option<HandshakeOutcome>> = (0..jobs.len()).map(|_| None).collect();
    let mut attempts = vec![0u32; jobs.len()];
    // (ready time, job, server) of jobs waiting to (re)try, oldest first.
    let mut waiting: std::collections::VecDeque<(Instant, usize, usize)> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.since, i, j.first_server % servers.len()))
        .collect();
    let mut active: Vec<Option<Active>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut n_active = 0usize;
    let mut events: Vec<libc::epoll_event> = Vec::with_capacity(lim.concurrency.min(1024));
    let fail = |job: usize,
                err: ConnError,
                server: usize,
                now: Instant,
                attempts: &[u32],
                waiting: &mut std::collections::VecDeque<(Instant, usize, usize)>,
                out: &mut [Option<HandshakeOutcome>]| {
        if attempts[job] < lim.attempts && now + lim.backoff < lim.deadline {
            waiting.push_back((now + lim.backoff, job, (server + 1) % servers.len()));
        } else {
            out[job] = Some(HandshakeOutcome::Failed {
                err,
                attempts: attempts[job],
            });
        }
    };
    // Bounded by the deadline: every pass either waits on epoll (at most 50 ms) or
    // finishes an attempt, and no attempt starts after the deadline.
    while (n_active > 0 || !waiting.is_empty()) && Instant::now() < lim.deadline {
        let now = Instant::now();
        // Start what may start.
        let mut rotated = 0;
        while n_active < lim.concurrency && rotated < waiting.len() {
            let Some(&(ready, job, server)) = waiting.front() else {
                break;
            };
            if ready > now {
                // Retries are queued in time order behind first tries; look further.
                waiting.rotate_left(1);
                rotated += 1;
                continue;
            }
            waiting.pop_front();
            attempts[job] += 1;
            match Handshake::start(servers[server], jobs[job].hello.clone()) {
                Ok(hs) => {
                    let slot = free.pop().unwrap_or_else(|| {
                        active.push(None);
                        active.len() - 1
                    });
                    let mut ev = libc::epoll_event {
                        events: (libc::EPOLLIN | libc::EPOLLOUT) as u32,
                        u64: slot as u64,
                    };
                    // SAFETY: valid event pointer for the call.
                    unsafe {
                        libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, hs.stream.as_raw_fd(), &mut ev)
                    };
                    active[slot] = Some(Active {
                        job,
                        hs,
                        began: now,
                        server,
                    });
                    n_active += 1;
                }
                Err(e) => fail(
                    job,
                    e.into(),
                    server,
                    now,
                    &attempts,
                    &mut waiting,
                    &mut out,
                ),
            }
        }
        // SAFETY: capacity-sized buffer; the length is set to what the kernel filled.
        let n =
            unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), events.capacity() as i32, 10) };
        // SAFETY: the kernel initialised n entries (none on error).
        unsafe { events.set_len(n.max(0) as usize) };
        let now = Instant::now();
        let mut finish = |slot: usize, step: HandshakeStep, active: &mut Vec<Option<Active>>| {
            let a = active[slot].take().expect("active slot");
            // SAFETY: removing a registered fd.
            unsafe {
                libc::epoll_ctl(
                    epfd,
                    libc::EPOLL_CTL_DEL,
                    a.hs.stream.as_raw_fd(),
                    std::ptr::null_mut(),
                )
            };
            free.push(slot);
            n_active -= 1;
            match step {
                HandshakeStep::Done(resp) => {
                    out[a.job] = Some(HandshakeOutcome::Done {
                        stream: a.hs.stream,
                        resp,
                        at: now,
                        attempts: attempts[a.job],
                        server: a.server,
                    })
                }
                HandshakeStep::Failed(ConnError::Refused) => {
                    out[a.job] = Some(HandshakeOutcome::Expired {
                        at: now,
                        attempts: attempts[a.job],
                    })
                }
                HandshakeStep::Failed(e) => {
                    fail(a.job, e, a.server, now, &attempts, &mut waiting, &mut out)
                }
                HandshakeStep::Pending => unreachable!("only finished steps end an attempt"),
            }
        };
        for ev in events.iter().copied() {
            let slot = ev.u64 as usize;
            let Some(a) = active[slot].as_mut() else {
                continue;
            };
            match a.hs.advance(ev.events) {
                HandshakeStep::Pending => {
                    if a.hs.sent == a.hs.hello.len() {
                        let mut m = libc::epoll_event {
                            events: libc::EPOLLIN as u32,
                            u64: slot as u64,
                        };
                        // SAFETY: as above.
                        unsafe {
                            libc::epoll_ctl(
                                epfd,
                                libc::EPOLL_CTL_MOD,
                                a.hs.stream.as_raw_fd(),
                                &mut m,
                            )
                        };
                    }
                }
                step => finish(slot, step, &mut active),
            }
        }
        for slot in 0..active.len() {
            if active[slot]
                .as_ref()
                .is_some_and(|a| now.duration_since(a.began) >= lim.attempt_timeout)
            {
                finish(
                    slot,
                    HandshakeStep::Failed(io::Error::from(io::ErrorKind::TimedOut).into()),
                    &mut active,
                );
            }
        }
    }
    // SAFETY: we own epfd; the sockets of unfinished attempts close on drop.
    unsafe { libc::close(epfd) };
    Ok(out
        .into_iter()
        .zip(attempts)
        .map(|(o, attempts)| {
            o.unwrap_or(HandshakeOutcome::Failed {
                err: io::Error::from(io::ErrorKind::TimedOut).into(),
                attempts,
            })
        })
        .collect())
}
