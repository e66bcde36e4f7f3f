//! Byte encodings of what servers say to each other: election notifications (election
//! port) and ZAB messages (quorum port). Servers of one ensemble all run RingKeeper, so
//! these are our own compact frames, not ZooKeeper's (its clients never see them).
//!
//! Every frame is `u32 length (big endian) | body`. A connection opens with a hello:
//! `u32 magic | u64 sender myid`, so the acceptor knows who speaks before the first frame.
//! Decoding checks every length against the bytes present and never panics: a peer that
//! sends garbage gets its connection closed, nothing more.

use crate::zab::election::{Notification, State, Vote};
use crate::zab::msg::{Msg, SyncMode};
use crate::zab::{ServerId, Txn};
use bytes::Bytes;
use std::io::{self, Read, Write};

/// The first word of an election connection's hello.
pub const ELECTION_MAGIC: u32 = 0x524b_454c; // "RKEL"
/// The first word of a quorum connection's hello.
pub const QUORUM_MAGIC: u32 = 0x524b_5155; // "RKQU"

/// The largest election frame: a notification is 30 bytes; anything bigger is garbage.
pub const MAX_ELECTION_FRAME: usize = 64;
/// The largest quorum frame: a SYNC carries a learner's whole missing history, and a
/// PROPOSAL one sequencer pass; ZooKeeper bounds a packet by jute.maxbuffer (1 MiB) but
/// sends a DIFF as many packets. 256 MiB bounds what a bad length can make us allocate.
pub const MAX_QUORUM_FRAME: usize = 256 << 20;

/// Writes a connection's hello.
pub fn write_hello(w: &mut impl Write, magic: u32, my_id: ServerId) -> io::Result<()> {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&magic.to_be_bytes());
    b[4..].copy_from_slice(&my_id.to_be_bytes());
    w.write_all(&b)
}

/// Reads a hello; the sender's myid.
///
/// # Errors
/// On EOF, a socket error, or a magic that is not `magic`.
pub fn read_hello(r: &mut impl Read, magic: u32) -> io::Result<ServerId> {
    let mut b = [0u8; 12];
    r.read_exact(&mut b)?;
    let got = u32::from_be_bytes(b[..4].try_into().expect("4 bytes"));
    if got != magic {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad hello magic {got:#x}"),
        ));
    }
    Ok(u64::from_be_bytes(b[4..].try_into().expect("8 bytes")))
}

/// Writes one length-prefixed frame.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).expect("frame under 4 GiB");
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf)
}

/// Reads one frame of at most `max` bytes.
///
/// # Errors
/// On EOF, a socket error, or a length above `max`.
pub fn read_frame(r: &mut impl Read, max: usize) -> io::Result<Vec<u8>> {
    let mut l = [0u8; 4];
    r.read_exact(&mut l)?;
    let len = u32::from_be_bytes(l) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes, more than {max}"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

fn state_byte(s: State) -> u8 {
    match s {
        State::Looking => 0,
        State::Following => 1,
        State::Leading => 2,
        State::Observing => 3,
    }
}

/// Encodes a notification: state, vote presence, vote (epoch, zxid, leader), round.
pub fn encode_notification(n: &Notification) -> Vec<u8> {
    let mut b = Vec::with_capacity(30);
    b.push(state_byte(n.state));
    match n.vote {
        None => b.extend_from_slice(&[0u8; 21]),
        Some(v) => {
            b.push(1);
            b.extend_from_slice(&v.epoch.to_be_bytes());
            b.extend_from_slice(&v.zxid.to_be_bytes());
            b.extend_from_slice(&v.leader.to_be_bytes());
        }
    }
    b.extend_from_slice(&n.election_epoch.to_be_bytes());
    b
}

/// Decodes a notification; `None` for anything malformed.
pub fn decode_notification(b: &[u8]) -> Option<Notification> {
    let mut c = Cursor { b, at: 0 };
    let state = match c.u8()? {
        0 => State::Looking,
        1 => State::Following,
        2 => State::Leading,
        3 => State::Observing,
        _ => return None,
    };
    let has = c.u8()?;
    let epoch = c.u32()?;
    let zxid = c.u64()?;
    let leader = c.u64()?;
    let vote = match has {
        0 => None,
        1 => Some(Vote {
            epoch,
            zxid,
            leader,
        }),
        _ => return None,
    };
    let election_epoch = c.u64()?;
    c.end()?;
    Some(Notification {
        vote,
        state,
        election_epoch,
    })
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let n = self.u32()? as usize;
        Some(Bytes::copy_from_slice(self.take(n)?))
    }
    fn txns(&mut self) -> Option<Vec<Txn>> {
        let n = self.u32()? as usize;
        // Each txn takes at least 12 bytes: a count beyond what remains is garbage, and
        // checking it first keeps a bad count from reserving memory.
        if n > (self.b.len() - self.at) / 12 {
            return None;
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let zxid = self.u64()?;
            let payload = self.bytes()?;
            v.push(Txn { zxid, payload });
        }
        Some(v)
    }
    fn payloads(&mut self) -> Option<Vec<Bytes>> {
        let n = self.u32()? as usize;
        // Each payload takes at least its 4-byte length (see `txns`).
        if n > (self.b.len() - self.at) / 4 {
            return None;
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.bytes()?);
        }
        Some(v)
    }
    fn end(&self) -> Option<()> {
        (self.at == self.b.len()).then_some(())
    }
}

fn put_bytes(b: &mut Vec<u8>, p: &[u8]) {
    b.extend_from_slice(&u32::try_from(p.len()).expect("under 4 GiB").to_be_bytes());
    b.extend_from_slice(p);
}

fn put_txns(b: &mut Vec<u8>, txns: &[Txn]) {
    b.extend_from_slice(&(txns.len() as u32).to_be_bytes());
    for t in txns {
        b.extend_from_slice(&t.zxid.to_be_bytes());
        put_bytes(b, &t.payload);
    }
}

/// Encodes a ZAB message: one tag byte, then its fields in declaration order.
pub fn encode_msg(m: &Msg) -> Vec<u8> {
    let mut b = Vec::new();
    match m {
        Msg::FollowerInfo {
            accepted_epoch,
            last_zxid,
            observer,
        } => {
            b.push(1);
            b.extend_from_slice(&accepted_epoch.to_be_bytes());
            b.extend_from_slice(&last_zxid.to_be_bytes());
            b.push(*observer as u8);
        }
        Msg::LeaderInfo { new_epoch } => {
            b.push(2);
            b.extend_from_slice(&new_epoch.to_be_bytes());
        }
        Msg::AckEpoch {
            current_epoch,
            last_zxid,
        } => {
            b.push(3);
            b.extend_from_slice(&current_epoch.to_be_bytes());
            b.extend_from_slice(&last_zxid.to_be_bytes());
        }
        Msg::Sync {
            mode,
            txns,
            commit_through,
        } => {
            b.push(4);
            match mode {
                SyncMode::Diff => b.push(0),
                SyncMode::Trunc { to } => {
                    b.push(1);
                    b.extend_from_slice(&to.to_be_bytes());
                }
                SyncMode::Snap { zxid, data } => {
                    b.push(2);
                    b.extend_from_slice(&zxid.to_be_bytes());
                    put_bytes(&mut b, data);
                }
            }
            put_txns(&mut b, txns);
            b.extend_from_slice(&commit_through.to_be_bytes());
        }
        Msg::NewLeader { epoch } => {
            b.push(5);
            b.extend_from_slice(&epoch.to_be_bytes());
        }
        Msg::AckNewLeader { epoch } => {
            b.push(6);
            b.extend_from_slice(&epoch.to_be_bytes());
        }
        Msg::UpToDate => b.push(7),
        Msg::Propose { txns } => {
            b.push(8);
            put_txns(&mut b, txns);
        }
        Msg::Ack { zxid } => {
            b.push(9);
            b.extend_from_slice(&zxid.to_be_bytes());
        }
        Msg::Commit { through } => {
            b.push(10);
            b.extend_from_slice(&through.to_be_bytes());
        }
        Msg::Inform { txns } => {
            b.push(11);
            put_txns(&mut b, txns);
        }
        Msg::Request { payload } => {
            b.push(12);
            put_bytes(&mut b, payload);
        }
        Msg::Ping => b.push(13),
        Msg::Forward { payloads } => {
            b.push(14);
            b.extend_from_slice(&(payloads.len() as u32).to_be_bytes());
            for p in payloads {
                put_bytes(&mut b, p);
            }
        }
        Msg::Reply { payload } => {
            b.push(15);
            put_bytes(&mut b, payload);
        }
    }
    b
}

/// Decodes a ZAB message; `None` for anything malformed.
pub fn decode_msg(b: &[u8]) -> Option<Msg> {
    let mut c = Cursor { b, at: 0 };
    let m = match c.u8()? {
        1 => Msg::FollowerInfo {
            accepted_epoch: c.u32()?,
            last_zxid: c.u64()?,
            observer: match c.u8()? {
                0 => false,
                1 => true,
                _ => return None,
            },
        },
        2 => Msg::LeaderInfo {
            new_epoch: c.u32()?,
        },
        3 => Msg::AckEpoch {
            current_epoch: c.u32()?,
            last_zxid: c.u64()?,
        },
        4 => {
            let mode = match c.u8()? {
                0 => SyncMode::Diff,
                1 => SyncMode::Trunc { to: c.u64()? },
                2 => SyncMode::Snap {
                    zxid: c.u64()?,
                    data: c.bytes()?,
                },
                _ => return None,
            };
            Msg::Sync {
                mode,
                txns: c.txns()?,
                commit_through: c.u64()?,
            }
        }
        5 => Msg::NewLeader { epoch: c.u32()? },
        6 => Msg::AckNewLeader { epoch: c.u32()? },
        7 => Msg::UpToDate,
        8 => Msg::Propose { txns: c.txns()? },
        9 => Msg::Ack { zxid: c.u64()? },
        10 => Msg::Commit { through: c.u64()? },
        11 => Msg::Inform { txns: c.txns()? },
        12 => Msg::Request {
            payload: c.bytes()?,
        },
        13 => Msg::Ping,
        14 => Msg::Forward {
            payloads: c.payloads()?,
        },
        15 => Msg::Reply {
            payload: c.bytes()?,
        },
        _ => return None,
    };
    c.end()?;
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_round_trip() {
        for n in [
            Notification {
                vote: None,
                state: State::Observing,
                election_epoch: 3,
            },
            Notification {
                vote: Some(Vote {
                    epoch: 7,
                    zxid: 0x7_0000_0009,
                    leader: 2,
                }),
                state: State::Leading,
                election_epoch: u64::MAX,
            },
        ] {
            let b = encode_notification(&n);
            assert!(b.len() <= MAX_ELECTION_FRAME);
            assert_eq!(decode_notification(&b), Some(n));
            assert_eq!(decode_notification(&b[..b.len() - 1]), None);
        }
    }

    #[test]
    fn messages_round_trip_and_truncations_fail() {
        let txns = vec![
            Txn {
                zxid: 0x1_0000_0001,
                payload: Bytes::from_static(b"abc"),
            },
            Txn {
                zxid: 0x1_0000_0002,
                payload: Bytes::new(),
            },
        ];
        let msgs = vec![
            Msg::FollowerInfo {
                accepted_epoch: 1,
                last_zxid: 5,
                observer: true,
            },
            Msg::LeaderInfo { new_epoch: 2 },
            Msg::AckEpoch {
                current_epoch: 1,
                last_zxid: 9,
            },
            Msg::Sync {
                mode: SyncMode::Snap {
                    zxid: 4,
                    data: Bytes::from_static(b"snap"),
                },
                txns: txns.clone(),
                commit_through: 3,
            },
            Msg::Sync {
                mode: SyncMode::Trunc { to: 8 },
                txns: vec![],
                commit_through: 8,
            },
            Msg::NewLeader { epoch: 2 },
            Msg::AckNewLeader { epoch: 2 },
            Msg::UpToDate,
            Msg::Propose { txns: txns.clone() },
            Msg::Ack { zxid: 3 },
            Msg::Commit { through: 3 },
            Msg::Inform { txns },
            Msg::Request {
                payload: Bytes::from_static(b"req"),
            },
            Msg::Ping,
            Msg::Forward {
                payloads: vec![Bytes::from_static(b"a"), Bytes::new()],
            },
            Msg::Reply {
                payload: Bytes::from_static(b"ok"),
            },
        ];
        for m in msgs {
            let b = encode_msg(&m);
            assert_eq!(decode_msg(&b).as_ref(), Some(&m), "{}", m.name());
            for cut in 0..b.len() {
                assert_eq!(decode_msg(&b[..cut]), None, "{} cut at {cut}", m.name());
            }
        }
    }
}
