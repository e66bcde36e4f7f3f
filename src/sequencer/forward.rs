//! What a learner's sequencer sends its leader's sequencer, and what comes back, inside
//! the opaque payloads of `zab::msg::Msg::Forward` and `Msg::Reply`.
//!
//! A learner serves reads itself and hands everything that needs the leader to it:
//! writes, syncs and closeSession (`Request`, answered by the txn the leader commits,
//! matched on the learner by session and xid), new sessions (`CreateSession` with an id
//! the learner chose: ids carry the server id, so they never collide), resumes
//! (`Revalidate`, answered by a `Reply`: the leader owns session liveness) and the
//! sessions its clients kept alive (`Touch`, ZooKeeper's session list in PING).
//!
//! Encoding: jute primitives, one tag first. Decoding never panics; a payload that does
//! not decode is a bug or a lying peer and is dropped by the caller with a message.

use crate::proto::jute::{DecodeError, Reader, Writer};
use crate::proto::{Id, Request};
use bytes::Bytes;

/// Sessions in one `Touch`: a shard reports at most its connections per pass; more
/// than this in one payload is garbage.
const MAX_TOUCHES: usize = 1 << 20;

const TAG_REQUEST: i32 = 1;
const TAG_CREATE_SESSION: i32 = 2;
const TAG_REVALIDATE: i32 = 3;
const TAG_TOUCH: i32 = 4;

const TAG_REVALIDATED: i32 = 1;

/// Learner to leader.
#[derive(Debug, Clone, PartialEq)]
pub enum Fwd {
    /// A client request of `session_id` (a write, sync or closeSession) with the
    /// connection's authenticated ids for the ACL checks.
    Request {
        session_id: i64,
        xid: i32,
        ids: Vec<Id>,
        req: Request,
    },
    /// A new session with the id the learner chose and the timeout it negotiated.
    CreateSession { session_id: i64, timeout_ms: i32 },
    /// Is `session_id` alive? `token` names the waiting connection on the learner.
    Revalidate { session_id: i64, token: i64 },
    /// Sessions with client activity since the last report.
    Touch(Vec<i64>),
}

/// Leader to learner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The session of `token` is alive with this timeout, or gone (`None`).
    Revalidated { token: i64, timeout_ms: Option<i32> },
}

impl Fwd {
    /// The encoding of `Fwd::Request { session_id, xid, ids, req }`, from borrowed
    /// parts: a learner forwards each of its clients' writes this way, without a copy
    /// of the session's auth ids (a `Vec` and two `String`s per id, allocated and freed
    /// per forwarded write).
    pub fn encode_request(session_id: i64, xid: i32, ids: &[Id], req: &Request) -> Bytes {
        let mut out = Vec::with_capacity(request_len_hint(ids, req));
        put_request(&mut out, session_id, xid, ids, req);
        out.into()
    }

    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.len_hint());
        match self {
            Fwd::Request {
                session_id,
                xid,
                ids,
                req,
            } => put_request(&mut out, *session_id, *xid, ids, req),
            Fwd::CreateSession {
                session_id,
                timeout_ms,
            } => {
                out.put_i32(TAG_CREATE_SESSION);
                out.put_i64(*session_id);
                out.put_i32(*timeout_ms);
            }
            Fwd::Revalidate { session_id, token } => {
                out.put_i32(TAG_REVALIDATE);
                out.put_i64(*session_id);
                out.put_i64(*token);
            }
            Fwd::Touch(ids) => {
                out.put_i32(TAG_TOUCH);
                out.put_i32(i32::try_from(ids.len()).expect("under 2^31 sessions"));
                for id in ids {
                    out.put_i64(*id);
                }
            }
        }
        out.into()
    }

    /// About how many bytes `encode` writes: exact enough for the forwarded writes of a
    /// busy learner (setData, create, delete) that the buffer is allocated once instead
    /// of grown five or six times per request (~2% of a follower's CPU under the Java
    /// client's load, perf). Other requests start from a small guess and grow.
    fn len_hint(&self) -> usize {
        match self {
            Fwd::Request { ids, req, .. } => request_len_hint(ids, req),
            Fwd::CreateSession { .. } | Fwd::Revalidate { .. } => 20,
            Fwd::Touch(ids) => 8 + 8 * ids.len(),
        }
    }

    /// # Errors
    /// A payload that is not one encoded `Fwd`.
    pub fn decode(b: &[u8]) -> Result<Fwd, String> {
        Fwd::decode_in(Reader::new(b))
    }

    /// [`Fwd::decode`] of a payload the caller holds as `Bytes`: the request's data is
    /// a slice of it, not a copy. The leader decodes every forwarded write this way:
    /// a copy cost an allocation, and another when the txn took its own handle on the
    /// data (~2% of a leader's CPU under setData on 3 servers).
    ///
    /// # Errors
    /// A payload that is not one encoded `Fwd`.
    pub fn decode_shared(b: &Bytes) -> Result<Fwd, String> {
        Fwd::decode_in(Reader::at_shared(b, 0))
    }

    fn decode_in(mut r: Reader) -> Result<Fwd, String> {
        let tag = r.read_i32("forward tag").map_err(err)?;
        let fwd = match tag {
            TAG_REQUEST => {
                let session_id = r.read_i64("forward.session").map_err(err)?;
                let ids: Vec<Id> = r.read_vec("forward.ids").map_err(err)?;
                let (hdr, req) = Request::decode_from(&mut r).map_err(|e| e.to_string())?;
                return Ok(Fwd::Request {
                    session_id,
                    xid: hdr.xid,
                    ids,
                    req,
                });
            }
            TAG_CREATE_SESSION => Fwd::CreateSession {
                session_id: r.read_i64("forward.session").map_err(err)?,
                timeout_ms: r.read_i32("forward.timeout").map_err(err)?,
            },
            TAG_REVALIDATE => Fwd::Revalidate {
                session_id: r.read_i64("forward.session").map_err(err)?,
                token: r.read_i64("forward.token").map_err(err)?,
            },
            TAG_TOUCH => {
                let n = r.read_i32("forward.touch.count").map_err(err)?;
                if n < 0 || n as usize > MAX_TOUCHES || n as usize > r.remaining() / 8 {
                    return Err(format!("touch count {n}"));
                }
                let mut ids = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    ids.push(r.read_i64("forward.touch.id").map_err(err)?);
                }
                Fwd::Touch(ids)
            }
            other => return Err(format!("forward tag {other}")),
        };
        r.finish("forward").map_err(err)?;
        Ok(fwd)
    }
}

impl Answer {
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            Answer::Revalidated { token, timeout_ms } => {
                out.put_i32(TAG_REVALIDATED);
                out.put_i64(*token);
                // 0 is never a negotiated timeout (minSessionTimeout is at least 2 ticks).
                out.put_i32(timeout_ms.unwrap_or(0));
            }
        }
        out.into()
    }

    /// # Errors
    /// A payload that is not one encoded `Answer`.
    pub fn decode(b: &[u8]) -> Result<Answer, String> {
        let mut r = Reader::new(b);
        let a = match r.read_i32("answer tag").map_err(err)? {
            TAG_REVALIDATED => {
                let token = r.read_i64("answer.token").map_err(err)?;
                let t = r.read_i32("answer.timeout").map_err(err)?;
                Answer::Revalidated {
                    token,
                    timeout_ms: (t > 0).then_some(t),
                }
            }
            other => return Err(format!("answer tag {other}")),
        };
        r.finish("answer").map_err(err)?;
        Ok(a)
    }
}

/// Appends the encoding of `Fwd::Request { session_id, xid, ids, req }`.
fn put_request(out: &mut Vec<u8>, session_id: i64, xid: i32, ids: &[Id], req: &Request) {
    out.put_i32(TAG_REQUEST);
    out.put_i64(session_id);
    out.put_vec(ids);
    // The request as the client framed it: header (xid, op) and body.
    req.encode(xid, out);
}

/// `Fwd::len_hint` of a request.
fn request_len_hint(ids: &[Id], req: &Request) -> usize {
    let ids: usize = ids.iter().map(|i| 8 + i.scheme.len() + i.id.len()).sum();
    let body = match req {
        Request::SetData(r) => 12 + r.path.len() + r.data.as_ref().map_or(0, |d| d.len()),
        Request::Create { req, .. } => {
            16 + req.path.len() + req.data.as_ref().map_or(0, |d| d.len()) + req.acl.len() * 32
        }
        Request::Delete(r) => 8 + r.path.len(),
        _ => 64,
    };
    // tag, session id, ids' count, request header.
    4 + 8 + 4 + ids + 8 + body
}

fn err(e: DecodeError) -> String {
    format!("{e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::records::SyncRequest;

    #[test]
    fn forwards_and_answers_round_trip_and_truncations_fail() {
        let fwds = vec![
            Fwd::Request {
                session_id: 0x0100_0000_0000_0001,
                xid: 7,
                ids: vec![Id {
                    scheme: "digest".into(),
                    id: "u:x".into(),
                }],
                req: Request::Sync(SyncRequest { path: "/a".into() }),
            },
            Fwd::Request {
                session_id: 3,
                xid: 9,
                ids: vec![],
                req: Request::CloseSession,
            },
            Fwd::CreateSession {
                session_id: 5,
                timeout_ms: 4000,
            },
            Fwd::Revalidate {
                session_id: 5,
                token: 11,
            },
            Fwd::Touch(vec![1, 2, 3]),
        ];
        for f in fwds {
            let b = f.encode();
            assert_eq!(Fwd::decode(&b).as_ref(), Ok(&f));
            for cut in 0..b.len() {
                assert!(Fwd::decode(&b[..cut]).is_err(), "{f:?} cut at {cut}");
            }
        }
        for a in [
            Answer::Revalidated {
                token: 1,
                timeout_ms: Some(4000),
            },
            Answer::Revalidated {
                token: 2,
                timeout_ms: None,
            },
        ] {
            let b = a.encode();
            assert_eq!(Answer::decode(&b), Ok(a.clone()));
            assert!(Answer::decode(&b[..b.len() - 1]).is_err());
        }
    }

    /// The forwarded writes a busy learner sends most are encoded into a buffer of the
    /// right size at once (`len_hint` is exact for them), and the rest still round-trip.
    #[test]
    fn hot_forwards_are_sized_exactly() {
        use crate::proto::records::{CreateRequest, DeleteRequest, SetDataRequest};
        let ids = vec![Id {
            scheme: "ip".into(),
            id: "127.0.0.1".into(),
        }];
        let reqs = [
            Request::SetData(SetDataRequest {
                path: "/javaload/k17".into(),
                data: Some(vec![b'v'; 100].into()),
                version: -1,
            }),
            Request::SetData(SetDataRequest {
                path: "/n".into(),
                data: None,
                version: 3,
            }),
            Request::Delete(DeleteRequest {
                path: "/a/b".into(),
                version: -1,
            }),
            Request::Create {
                op: crate::proto::OpCode::Create,
                req: CreateRequest {
                    path: "/c".into(),
                    data: Some(vec![1; 10].into()),
                    acl: vec![],
                    flags: 0,
                },
            },
        ];
        for req in reqs {
            let f = Fwd::Request {
                session_id: 9,
                xid: 4,
                ids: ids.clone(),
                req,
            };
            let b = f.encode();
            assert_eq!(Fwd::decode(&b).as_ref(), Ok(&f));
            assert_eq!(Fwd::decode_shared(&b).as_ref(), Ok(&f));
            if let Fwd::Request {
                session_id,
                xid,
                ids,
                req,
            } = &f
            {
                assert_eq!(Fwd::encode_request(*session_id, *xid, ids, req), b);
            }
            assert_eq!(f.len_hint(), b.len(), "{f:?}");
        }
    }

    #[test]
    fn a_shared_decode_slices_the_data_and_fails_as_the_copying_one() {
        use crate::proto::records::SetDataRequest;
        let f = Fwd::Request {
            session_id: 9,
            xid: 4,
            ids: vec![],
            req: Request::SetData(SetDataRequest {
                path: "/k".into(),
                data: Some(vec![b'v'; 100].into()),
                version: -1,
            }),
        };
        let b = f.encode();
        let Ok(Fwd::Request {
            req: Request::SetData(r),
            ..
        }) = Fwd::decode_shared(&b)
        else {
            panic!("a setData forward decodes");
        };
        let data = r.data.expect("data");
        let inside = b.as_ptr_range();
        assert!(
            inside.contains(&data.as_ptr()),
            "the data is a slice of the payload"
        );
        for cut in 0..b.len() {
            assert!(Fwd::decode_shared(&b.slice(..cut)).is_err(), "cut at {cut}");
        }
    }
}
