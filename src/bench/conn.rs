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
use std::time::Duration;

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

/// The handshake frame a new session sends.
pub fn connect_frame(timeout_ms: i32) -> Vec<u8> {
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout_ms,
        session_id: 0,
        passwd: Some(Bytes::from_static(&[0u8; 16])),
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
            buf: Vec::new(),
            pos: 0,
            next_xid: 1,
        };
        c.stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let payload = c.read_frame()?;
        let resp = parse_connect_response(&payload)?;
        c.session_id = resp.session_id;
        c.timeout_ms = resp.timeout_ms;
        Ok(c)
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
