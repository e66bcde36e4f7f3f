//! A tiny fake ZooKeeper server: it completes the handshake and answers every request
//! after a fixed delay, every `error_every`-th request with `error_code`. It checks
//! nothing. Used by the accuracy tests (known latency, known errors) and to measure the
//! generator's own ceiling (delay 0).
//!
//! One reader thread per connection decodes frames; with a delay, a writer thread per
//! connection releases each reply at its due time (replies keep request order because
//! every reply is due exactly `delay` after its request).

use super::conn::split_frames;
use crate::proto::{
    xid, ConnectRequest, ConnectResponse, CreateResponse, ExistsResponse, GetChildrenResponse,
    GetDataResponse, Jute, MultiHeader, OpCode, Reader, ReplyHeader, RequestHeader,
    SetDataResponse,
};
use bytes::Bytes;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct FakeConfig {
    pub delay: Duration,
    /// Answer request number n (counted from 1 over the whole server, pings and
    /// closeSession excluded) with `error_code` when n % error_every == 0; 0 = never.
    pub error_every: u64,
    pub error_code: i32,
    /// After this many requests (0 = never), stop reading for `stall` once: a server
    /// pause, to show what the load models make of it.
    pub stall_after: u64,
    pub stall: Duration,
    /// Close the first this many connections before their handshake is answered: a
    /// server shedding a burst of connections.
    pub drop_first: u64,
    /// Answer a resume (a handshake with a session id) with timeOut 0: the session
    /// expired. Otherwise any resume succeeds with the id it asked for.
    pub expire_resumes: bool,
}

impl FakeConfig {
    pub fn delay(delay: Duration) -> FakeConfig {
        FakeConfig {
            delay,
            error_every: 0,
            error_code: -101,
            stall_after: 0,
            stall: Duration::ZERO,
            drop_first: 0,
            expire_resumes: false,
        }
    }
}

/// Counters the test compares with what zkbench reports.
#[derive(Debug, Default)]
pub struct FakeCounters {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub sessions: AtomicU64,
    /// Handshakes that asked to resume a session.
    pub resumes: AtomicU64,
    /// Connections closed by `drop_first`.
    pub dropped: AtomicU64,
}

pub struct FakeServer {
    pub addr: SocketAddr,
    pub counters: Arc<FakeCounters>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
    /// Clones of the open connections by session number, for `kill`; each
    /// connection's thread removes its own entry when it ends.
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
}

impl FakeServer {
    /// Listens on `addr` (port 0 picks a free port).
    pub fn start(addr: &str, cfg: FakeConfig) -> std::io::Result<FakeServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(FakeCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(HashMap::new()));
        let (c, s, open) = (counters.clone(), stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            let next_session = AtomicU64::new(1);
            let mut accepted = 0u64;
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                accepted += 1;
                if accepted <= cfg.drop_first {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let sid = next_session.fetch_add(1, Ordering::Relaxed);
                if let Ok(clone) = conn.try_clone() {
                    open.lock().expect("not poisoned").insert(sid, clone);
                }
                let (c, s, open) = (c.clone(), s.clone(), open.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, cfg, &c, &s, sid);
                    open.lock().expect("not poisoned").remove(&sid);
                });
            }
        });
        Ok(FakeServer {
            addr,
            counters,
            stop,
            accept: Some(accept),
            conns,
        })
    }

    /// A crash: stops accepting and cuts every open connection.
    pub fn kill(self) {
        let conns = self.conns.clone();
        self.stop();
        for (_, c) in conns.lock().expect("not poisoned").drain() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Stops accepting; open connections end when their clients close them.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Writes a reply body after the header.
type Body<'a> = Option<&'a dyn Fn(&mut Vec<u8>)>;

fn reply(out: &mut Vec<u8>, xid: i32, err: i32, body: Body<'_>) {
    let start = super::workload::begin_frame(out);
    ReplyHeader { xid, zxid: 1, err }.write(out);
    if let (0, Some(b)) = (err, body) {
        b(out);
    }
    super::workload::end_frame(out, start);
}

/// Encodes the answer to one request frame; None for closeSession (close after it).
fn answer(
    payload: &[u8],
    cfg: &FakeConfig,
    counters: &FakeCounters,
    out: &mut Vec<u8>,
) -> Option<()> {
    let h = RequestHeader::read(&mut Reader::new(payload)).ok()?;
    if h.xid == xid::PING {
        reply(out, xid::PING, 0, None);
        return Some(());
    }
    if h.op == OpCode::CloseSession as i32 {
        reply(out, h.xid, 0, None);
        return None;
    }
    let n = counters.requests.fetch_add(1, Ordering::Relaxed) + 1;
    if cfg.error_every > 0 && n.is_multiple_of(cfg.error_every) {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        reply(out, h.xid, cfg.error_code, None);
        return Some(());
    }
    let op = OpCode::from_i32(h.op);
    let body: Body<'_> = match op {
        Some(OpCode::Create) => Some(&|o| {
            CreateResponse {
                path: "/fake".into(),
            }
            .write(o)
        }),
        Some(OpCode::GetData) => Some(&|o| {
            GetDataResponse {
                data: Some(Bytes::new()),
                stat: Default::default(),
            }
            .write(o)
        }),
        Some(OpCode::SetData) => Some(&|o| SetDataResponse::default().write(o)),
        Some(OpCode::Exists) => Some(&|o| ExistsResponse::default().write(o)),
        Some(OpCode::GetChildren) => Some(&|o| GetChildrenResponse::default().write(o)),
        Some(OpCode::Multi) => Some(&|o| {
            MultiHeader {
                op: -1,
                done: true,
                err: -1,
            }
            .write(o)
        }),
        _ => None,
    };
    reply(out, h.xid, 0, body);
    Some(())
}

fn serve(
    mut conn: TcpStream,
    cfg: FakeConfig,
    counters: &FakeCounters,
    stop: &AtomicBool,
    sid: u64,
) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut buf = Vec::new();
    let mut pos = 0;
    let mut chunk = vec![0u8; 256 * 1024];
    // Handshake.
    let req = loop {
        let mut got = None;
        let _ = split_frames(&buf, &mut pos, |p| {
            got = got.take().or_else(|| ConnectRequest::from_bytes(p).ok());
            Ok(())
        });
        if let Some(r) = got {
            break r;
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    buf.drain(..pos);
    pos = 0;
    counters.sessions.fetch_add(1, Ordering::Relaxed);
    let resume = req.session_id != 0;
    if resume {
        counters.resumes.fetch_add(1, Ordering::Relaxed);
    }
    let resp = ConnectResponse {
        protocol_version: 0,
        timeout_ms: if resume && cfg.expire_resumes {
            0
        } else {
            req.timeout_ms.clamp(4000, 40_000)
        },
        session_id: if resume { req.session_id } else { sid as i64 },
        passwd: Some(Bytes::from_static(&[7u8; 16])),
        read_only: req.read_only.map(|_| false),
    };
    let mut hs = Vec::new();
    let start = super::workload::begin_frame(&mut hs);
    resp.write(&mut hs);
    super::workload::end_frame(&mut hs, start);
    conn.write_all(&hs)?;

    let delayed = (!cfg.delay.is_zero()).then(|| {
        let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
        let mut w = conn.try_clone().expect("clone socket");
        let h = std::thread::spawn(move || {
            while let Ok((due, mut bytes)) = rx.recv() {
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                // Coalesce replies that are due by now into one write.
                while let Ok((d, more)) = rx.try_recv() {
                    if d > Instant::now() {
                        if w.write_all(&bytes).is_err() {
                            return;
                        }
                        let now = Instant::now();
                        if d > now {
                            std::thread::sleep(d - now);
                        }
                        bytes = more;
                        continue;
                    }
                    bytes.extend_from_slice(&more);
                }
                if w.write_all(&bytes).is_err() {
                    return;
                }
            }
        });
        (tx, h)
    });
    let mut closing = false;
    let mut stalled = false;
    while !closing && !stop.load(Ordering::Relaxed) {
        if cfg.stall_after > 0
            && !stalled
            && counters.requests.load(Ordering::Relaxed) >= cfg.stall_after
        {
            stalled = true;
            std::thread::sleep(cfg.stall);
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        let arrived = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let _ = split_frames(&buf, &mut pos, |p| {
            if closing {
                return Ok(());
            }
            if answer(p, &cfg, counters, &mut out).is_none() {
                closing = true;
            }
            Ok(())
        });
        buf.drain(..pos);
        pos = 0;
        match &delayed {
            None => conn.write_all(&out)?,
            Some((tx, _)) => {
                // The whole read's replies are due together: they arrived together.
                if !out.is_empty() && tx.send((arrived + cfg.delay, out)).is_err() {
                    break;
                }
            }
        }
    }
    if let Some((tx, h)) = delayed {
        drop(tx);
        let _ = h.join();
    }
    let _ = conn.shutdown(std::net::Shutdown::Both);
    Ok(())
}
