//! Whole client requests: a `RequestHeader` followed by the record its opcode names,
//! the multi encoding (requests and `MultiResponse`), and the error split a server
//! needs to answer a bad request exactly as ZooKeeper does.
//!
//! Owns: decoding a frame's payload (after the handshake) into a typed [`Request`],
//! encoding one for the client side, and multi responses.
//! Must not: do I/O, allocate from a count it has not checked against the bytes present
//! (the `Reader` bounds every vector), or panic on any input.
//!
//! What ZooKeeper (3.9.5) does with bad requests, and so what the server must do
//! (see [`RequestError::action`]):
//! - Trailing bytes after a body are ignored: `Request.readRequestRecord` deserializes
//!   from the buffer and never checks that it was used up (captured from 3.8: a getData
//!   with two extra bytes is answered normally). We tolerate them too.
//! - An opcode `Request.isValid` rejects (unknown numbers, `notification`, a top-level
//!   `check`) is answered `ReplyHeader{xid, zxid, UNIMPLEMENTED}` and then the
//!   connection (not the session) is closed (`UnimplementedRequestProcessor`).
//! - A body of a known op that does not decode is answered `MARSHALLINGERROR` and the
//!   connection stays open (the catch-all of `PrepRequestProcessor` and
//!   `FinalRequestProcessor`; captured from 3.8 with a truncated exists). For auth and
//!   sasl the parse happens in `processPacket`, whose IOException closes the connection.

use super::codes::{Code, CreateMode, OpCode};
use super::jute::{DecodeError, Jute, Reader, Writer};
use super::records::*;
use bytes::Bytes;
use std::fmt;

/// One op inside a `multi` or `multiRead`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// create, create2, createContainer (the op says which reply layout).
    Create {
        op: OpCode,
        req: CreateRequest,
    },
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    SetData(SetDataRequest),
    Check(CheckVersionRequest),
    /// multiRead only.
    GetChildren(GetChildrenRequest),
    /// multiRead only.
    GetData(GetDataRequest),
}

/// A decoded client request (everything after the 4-byte frame length, after the
/// handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// create (1), create2 (15) or createContainer (19).
    Create {
        op: OpCode,
        req: CreateRequest,
    },
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    Exists(ExistsRequest),
    GetData(GetDataRequest),
    SetData(SetDataRequest),
    GetAcl(GetAclRequest),
    SetAcl(SetAclRequest),
    GetChildren(GetChildrenRequest),
    GetChildren2(GetChildren2Request),
    Sync(SyncRequest),
    Ping,
    /// Never produced by [`Request::decode`]: ZooKeeper 3.9 answers a top-level check
    /// with UNIMPLEMENTED. Kept so a client (tests, zkbench) can send one.
    Check(CheckVersionRequest),
    Multi(Vec<MultiOp>),
    MultiRead(Vec<MultiOp>),
    Reconfig(ReconfigRequest),
    CheckWatches(CheckWatchesRequest),
    RemoveWatches(RemoveWatchesRequest),
    GetEphemerals(GetEphemeralsRequest),
    GetAllChildrenNumber(GetAllChildrenNumberRequest),
    SetWatches(SetWatches),
    SetWatches2(SetWatches2),
    AddWatch(AddWatchRequest),
    WhoAmI,
    Auth(AuthPacket),
    Sasl(SaslToken),
    CloseSession,
}

/// Why a request could not be turned into a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The frame is shorter than a `RequestHeader`. ZooKeeper's IOException closes the
    /// connection.
    BadHeader(DecodeError),
    /// An opcode ZooKeeper does not accept from a client (`Request.isValid` is false, or
    /// one we do not serve: see [`Request::decode`]).
    Unimplemented { op: i32 },
    /// The body of a known opcode does not decode.
    Malformed { op: OpCode, err: DecodeError },
}

/// What the server does about a [`RequestError`], as ZooKeeper does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    /// Send `ReplyHeader{xid, zxid, code}` (no body) and keep serving the connection.
    Reply(Code),
    /// Send `ReplyHeader{xid, zxid, code}` (no body), then close the connection; the
    /// session lives on and the client may reconnect.
    ReplyAndClose(Code),
    /// Close the connection without a reply.
    Close,
}

impl RequestError {
    /// The server's answer to this error.
    pub fn action(&self) -> ErrorAction {
        match self {
            RequestError::BadHeader(_) => ErrorAction::Close,
            RequestError::Unimplemented { .. } => ErrorAction::ReplyAndClose(Code::Unimplemented),
            RequestError::Malformed {
                op: OpCode::Auth | OpCode::Sasl,
                ..
            } => ErrorAction::Close,
            RequestError::Malformed { .. } => ErrorAction::Reply(Code::MarshallingError),
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::BadHeader(e) => write!(f, "bad request header: {e}"),
            RequestError::Unimplemented { op } => write!(f, "unimplemented opcode {op}"),
            RequestError::Malformed { op, err } => write!(f, "malformed {}: {err}", op.name()),
        }
    }
}

impl std::error::Error for RequestError {}

/// The `MultiHeader` that ends a multi request and a multi response.
const MULTI_END: MultiHeader = MultiHeader {
    op: -1,
    done: true,
    err: -1,
};

/// The fewest bytes one op of a multi request takes: a MultiHeader (9 bytes) plus the
/// smallest op record (getData's or getChildren's path length and watch byte). An op is
/// pushed only after its bytes were read, so a multi holds at most
/// `payload / MULTI_OP_MIN_SIZE` ops: the op count is bounded by the bytes present.
pub const MULTI_OP_MIN_SIZE: usize = 9 + 5;

impl Request {
    /// Decodes the body that follows `hdr` in one frame.
    ///
    /// Bytes left after the body are ignored, as ZooKeeper does. Opcodes that a client
    /// may not send are [`RequestError::Unimplemented`]: those `Request.isValid` rejects,
    /// and two it accepts that we deliberately do not serve from clients: `createSession`
    /// (internal; the handshake creates sessions) and `deleteContainer` (issued by the
    /// server's own container reaper; no client library exposes it).
    ///
    /// # Errors
    /// [`RequestError::Unimplemented`] or [`RequestError::Malformed`]; see
    /// [`RequestError::action`] for the answer.
    pub fn decode(hdr: &RequestHeader, r: &mut Reader) -> Result<Request, RequestError> {
        let op = match OpCode::from_i32(hdr.op) {
            Some(op) => op,
            None => return Err(RequestError::Unimplemented { op: hdr.op }),
        };
        let malformed = |err| RequestError::Malformed { op, err };
        let req = match op {
            OpCode::Create | OpCode::Create2 | OpCode::CreateContainer => Request::Create {
                op,
                req: CreateRequest::read(r).map_err(malformed)?,
            },
            OpCode::CreateTtl => Request::CreateTtl(Jute::read(r).map_err(malformed)?),
            OpCode::Delete => Request::Delete(Jute::read(r).map_err(malformed)?),
            OpCode::Exists => Request::Exists(Jute::read(r).map_err(malformed)?),
            OpCode::GetData => Request::GetData(Jute::read(r).map_err(malformed)?),
            OpCode::SetData => Request::SetData(Jute::read(r).map_err(malformed)?),
            OpCode::GetAcl => Request::GetAcl(Jute::read(r).map_err(malformed)?),
            OpCode::SetAcl => Request::SetAcl(Jute::read(r).map_err(malformed)?),
            OpCode::GetChildren => Request::GetChildren(Jute::read(r).map_err(malformed)?),
            OpCode::GetChildren2 => Request::GetChildren2(Jute::read(r).map_err(malformed)?),
            OpCode::Sync => Request::Sync(Jute::read(r).map_err(malformed)?),
            OpCode::Ping => Request::Ping,
            OpCode::Multi => Request::Multi(decode_multi_ops(r, false).map_err(malformed)?),
            OpCode::MultiRead => Request::MultiRead(decode_multi_ops(r, true).map_err(malformed)?),
            OpCode::Reconfig => Request::Reconfig(Jute::read(r).map_err(malformed)?),
            OpCode::CheckWatches => Request::CheckWatches(Jute::read(r).map_err(malformed)?),
            OpCode::RemoveWatches => Request::RemoveWatches(Jute::read(r).map_err(malformed)?),
            OpCode::GetEphemerals => Request::GetEphemerals(Jute::read(r).map_err(malformed)?),
            OpCode::GetAllChildrenNumber => {
                Request::GetAllChildrenNumber(Jute::read(r).map_err(malformed)?)
            }
            OpCode::SetWatches => Request::SetWatches(Jute::read(r).map_err(malformed)?),
            OpCode::SetWatches2 => Request::SetWatches2(Jute::read(r).map_err(malformed)?),
            OpCode::AddWatch => Request::AddWatch(Jute::read(r).map_err(malformed)?),
            OpCode::WhoAmI => Request::WhoAmI,
            OpCode::Auth => Request::Auth(Jute::read(r).map_err(malformed)?),
            OpCode::Sasl => Request::Sasl(Jute::read(r).map_err(malformed)?),
            OpCode::CloseSession => Request::CloseSession,
            OpCode::Check
            | OpCode::Notification
            | OpCode::Error
            | OpCode::CreateSession
            | OpCode::DeleteContainer => return Err(RequestError::Unimplemented { op: hdr.op }),
        };
        Ok(req)
    }

    /// Decodes a whole frame payload: the `RequestHeader` and its body.
    ///
    /// # Errors
    /// As [`Request::decode`], plus [`RequestError::BadHeader`] for a payload shorter
    /// than a header.
    pub fn decode_payload(payload: &[u8]) -> Result<(RequestHeader, Request), RequestError> {
        Request::decode_from(&mut Reader::new(payload))
    }

    /// [`Request::decode_payload`] from a reader (one over shared bytes gives the
    /// request's data as slices of them).
    pub fn decode_from(r: &mut Reader) -> Result<(RequestHeader, Request), RequestError> {
        let hdr = RequestHeader::read(r).map_err(RequestError::BadHeader)?;
        let req = Request::decode(&hdr, r)?;
        Ok((hdr, req))
    }

    /// The opcode this request travels under.
    pub fn op(&self) -> OpCode {
        match self {
            Request::Create { op, .. } => *op,
            Request::CreateTtl(_) => OpCode::CreateTtl,
            Request::Delete(_) => OpCode::Delete,
            Request::Exists(_) => OpCode::Exists,
            Request::GetData(_) => OpCode::GetData,
            Request::SetData(_) => OpCode::SetData,
            Request::GetAcl(_) => OpCode::GetAcl,
            Request::SetAcl(_) => OpCode::SetAcl,
            Request::GetChildren(_) => OpCode::GetChildren,
            Request::GetChildren2(_) => OpCode::GetChildren2,
            Request::Sync(_) => OpCode::Sync,
            Request::Ping => OpCode::Ping,
            Request::Check(_) => OpCode::Check,
            Request::Multi(_) => OpCode::Multi,
            Request::MultiRead(_) => OpCode::MultiRead,
            Request::Reconfig(_) => OpCode::Reconfig,
            Request::CheckWatches(_) => OpCode::CheckWatches,
            Request::RemoveWatches(_) => OpCode::RemoveWatches,
            Request::GetEphemerals(_) => OpCode::GetEphemerals,
            Request::GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            Request::SetWatches(_) => OpCode::SetWatches,
            Request::SetWatches2(_) => OpCode::SetWatches2,
            Request::AddWatch(_) => OpCode::AddWatch,
            Request::WhoAmI => OpCode::WhoAmI,
            Request::Auth(_) => OpCode::Auth,
            Request::Sasl(_) => OpCode::Sasl,
            Request::CloseSession => OpCode::CloseSession,
        }
    }

    /// True for what goes through the sequencer: create*, delete, setData, setACL,
    /// check, multi, sync, closeSession, reconfig. Sync is ordered with the writes so a
    /// follower's next read waits for what the leader had committed.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Create { .. }
                | Request::CreateTtl(_)
                | Request::Delete(_)
                | Request::SetData(_)
                | Request::SetAcl(_)
                | Request::Check(_)
                | Request::Multi(_)
                | Request::Sync(_)
                | Request::CloseSession
                | Request::Reconfig(_)
        )
    }

    /// The znode path the request names, if it names exactly one.
    pub fn path(&self) -> Option<&str> {
        Some(match self {
            Request::Create { req, .. } => &req.path,
            Request::CreateTtl(r) => &r.path,
            Request::Delete(r) => &r.path,
            Request::Exists(r) => &r.path,
            Request::GetData(r) => &r.path,
            Request::SetData(r) => &r.path,
            Request::GetAcl(r) => &r.path,
            Request::SetAcl(r) => &r.path,
            Request::GetChildren(r) => &r.path,
            Request::GetChildren2(r) => &r.path,
            Request::Sync(r) => &r.path,
            Request::Check(r) => &r.path,
            Request::CheckWatches(r) => &r.path,
            Request::RemoveWatches(r) => &r.path,
            Request::GetEphemerals(r) => &r.prefix_path,
            Request::GetAllChildrenNumber(r) => &r.path,
            Request::AddWatch(r) => &r.path,
            Request::Ping
            | Request::Multi(_)
            | Request::MultiRead(_)
            | Request::Reconfig(_)
            | Request::SetWatches(_)
            | Request::SetWatches2(_)
            | Request::WhoAmI
            | Request::Auth(_)
            | Request::Sasl(_)
            | Request::CloseSession => return None,
        })
    }

    /// Client side: appends `RequestHeader{xid, op}` and the body (no frame length; wrap
    /// it with [`super::frame::write_frame`]).
    pub fn encode(&self, xid: i32, out: &mut Vec<u8>) {
        RequestHeader {
            xid,
            op: self.op() as i32,
        }
        .write(out);
        match self {
            Request::Create { req, .. } => req.write(out),
            Request::CreateTtl(r) => r.write(out),
            Request::Delete(r) => r.write(out),
            Request::Exists(r) => r.write(out),
            Request::GetData(r) => r.write(out),
            Request::SetData(r) => r.write(out),
            Request::GetAcl(r) => r.write(out),
            Request::SetAcl(r) => r.write(out),
            Request::GetChildren(r) => r.write(out),
            Request::GetChildren2(r) => r.write(out),
            Request::Sync(r) => r.write(out),
            Request::Check(r) => r.write(out),
            Request::Multi(ops) | Request::MultiRead(ops) => encode_multi_ops(ops, out),
            Request::Reconfig(r) => r.write(out),
            Request::CheckWatches(r) => r.write(out),
            Request::RemoveWatches(r) => r.write(out),
            Request::GetEphemerals(r) => r.write(out),
            Request::GetAllChildrenNumber(r) => r.write(out),
            Request::SetWatches(r) => r.write(out),
            Request::SetWatches2(r) => r.write(out),
            Request::AddWatch(r) => r.write(out),
            Request::Auth(r) => r.write(out),
            Request::Sasl(r) => r.write(out),
            Request::Ping | Request::WhoAmI | Request::CloseSession => {}
        }
    }
}

impl MultiOp {
    /// The opcode in this op's `MultiHeader`.
    pub fn op(&self) -> OpCode {
        match self {
            MultiOp::Create { op, .. } => *op,
            MultiOp::CreateTtl(_) => OpCode::CreateTtl,
            MultiOp::Delete(_) => OpCode::Delete,
            MultiOp::SetData(_) => OpCode::SetData,
            MultiOp::Check(_) => OpCode::Check,
            MultiOp::GetChildren(_) => OpCode::GetChildren,
            MultiOp::GetData(_) => OpCode::GetData,
        }
    }

    /// The znode path this op names.
    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create { req, .. } => &req.path,
            MultiOp::CreateTtl(r) => &r.path,
            MultiOp::Delete(r) => &r.path,
            MultiOp::SetData(r) => &r.path,
            MultiOp::Check(r) => &r.path,
            MultiOp::GetChildren(r) => &r.path,
            MultiOp::GetData(r) => &r.path,
        }
    }

    /// True for getChildren and getData, the only ops a multiRead may hold.
    pub fn is_read(&self) -> bool {
        matches!(self, MultiOp::GetChildren(_) | MultiOp::GetData(_))
    }

    fn write_body(&self, out: &mut Vec<u8>) {
        match self {
            MultiOp::Create { req, .. } => req.write(out),
            MultiOp::CreateTtl(r) => r.write(out),
            MultiOp::Delete(r) => r.write(out),
            MultiOp::SetData(r) => r.write(out),
            MultiOp::Check(r) => r.write(out),
            MultiOp::GetChildren(r) => r.write(out),
            MultiOp::GetData(r) => r.write(out),
        }
    }
}

/// Writes ops as `MultiOperationRecord` does: `{op, false, -1}` + record per op, then
/// `{-1, true, -1}`.
fn encode_multi_ops(ops: &[MultiOp], out: &mut Vec<u8>) {
    for op in ops {
        MultiHeader {
            op: op.op() as i32,
            done: false,
            err: -1,
        }
        .write(out);
        op.write_body(out);
    }
    MULTI_END.write(out);
}

/// Reads a `MultiOperationRecord` the way ZooKeeper does: ops until a header with
/// `done` set (its type and err are not checked), and fails like it on an op type a
/// multi cannot hold ("Invalid type of op"), on create flags that name no mode, and on
/// mixing reads and writes ("Mixing different kind of ops").
///
/// ZooKeeper decodes both multi (14) and multiRead (22) with the same record and then
/// fails a multi of reads in `PrepRequestProcessor` and a multiRead of writes in
/// `FinalRequestProcessor`, each as MARSHALLINGERROR; `reads` makes that check here.
fn decode_multi_ops(r: &mut Reader, reads: bool) -> Result<Vec<MultiOp>, DecodeError> {
    let mut ops = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            return Ok(ops);
        }
        let op = match OpCode::from_i32(h.op) {
            Some(op @ (OpCode::Create | OpCode::Create2 | OpCode::CreateContainer)) => {
                let req = CreateRequest::read(r)?;
                if CreateMode::from_flags(req.flags).is_none() {
                    return Err(DecodeError::BadValue {
                        what: "CreateRequest.flags",
                        value: req.flags as i64,
                    });
                }
                MultiOp::Create { op, req }
            }
            Some(OpCode::CreateTtl) => MultiOp::CreateTtl(CreateTtlRequest::read(r)?),
            Some(OpCode::Delete) => MultiOp::Delete(DeleteRequest::read(r)?),
            Some(OpCode::SetData) => MultiOp::SetData(SetDataRequest::read(r)?),
            Some(OpCode::Check) => MultiOp::Check(CheckVersionRequest::read(r)?),
            Some(OpCode::GetChildren) => MultiOp::GetChildren(GetChildrenRequest::read(r)?),
            Some(OpCode::GetData) => MultiOp::GetData(GetDataRequest::read(r)?),
            _ => {
                return Err(DecodeError::BadValue {
                    what: "MultiHeader.type",
                    value: h.op as i64,
                })
            }
        };
        if op.is_read() != reads {
            return Err(DecodeError::BadValue {
                what: if reads {
                    "multiRead op (a write)"
                } else {
                    "multi op (a read)"
                },
                value: h.op as i64,
            });
        }
        ops.push(op);
    }
}

/// One entry of a `MultiResponse` (`OpResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    /// A create op sent as `create` (1): `CreateResponse{path}`. ZooKeeper 3.8.0 also
    /// answered a create2 inside multi this way (captured); 3.9.5 answers it Create2.
    Create {
        path: String,
    },
    /// A create op sent as create2, createContainer or createTTL: `Create2Response`
    /// under type create2 (15), as `FinalRequestProcessor` maps them.
    Create2 {
        path: String,
        stat: Stat,
    },
    Delete,
    SetData(Stat),
    Check,
    /// multiRead.
    GetData {
        data: Option<Bytes>,
        stat: Stat,
    },
    /// multiRead.
    GetChildren {
        children: Vec<String>,
    },
    /// A failed op: header `{-1, false, code}` then `ErrorResponse{code}`. When a multi
    /// fails, every op is an Error: OK (0) before the failing op, its code, then
    /// RUNTIMEINCONSISTENCY after it, and the reply header's err is 0 (captured from
    /// 3.8: `FinalRequestProcessor` never sets it for multi). In a multiRead only the
    /// failing reads are errors.
    Error(Code),
}

impl MultiResult {
    fn header_type(&self) -> OpCode {
        match self {
            MultiResult::Create { .. } => OpCode::Create,
            MultiResult::Create2 { .. } => OpCode::Create2,
            MultiResult::Delete => OpCode::Delete,
            MultiResult::SetData(_) => OpCode::SetData,
            MultiResult::Check => OpCode::Check,
            MultiResult::GetData { .. } => OpCode::GetData,
            MultiResult::GetChildren { .. } => OpCode::GetChildren,
            MultiResult::Error(_) => OpCode::Error,
        }
    }
}

/// Appends a `MultiResponse` (no reply header, no frame length).
pub fn encode_multi_response(results: &[MultiResult], out: &mut Vec<u8>) {
    for res in results {
        let err = match res {
            MultiResult::Error(code) => code.as_i32(),
            _ => 0,
        };
        MultiHeader {
            op: res.header_type() as i32,
            done: false,
            err,
        }
        .write(out);
        match res {
            MultiResult::Create { path } => out.put_string(path),
            MultiResult::Create2 { path, stat } => {
                out.put_string(path);
                stat.write(out);
            }
            MultiResult::Delete | MultiResult::Check => {}
            MultiResult::SetData(stat) => stat.write(out),
            MultiResult::GetData { data, stat } => {
                out.put_buffer(data.as_deref());
                stat.write(out);
            }
            MultiResult::GetChildren { children } => out.put_vec(children),
            MultiResult::Error(code) => out.put_i32(code.as_i32()),
        }
    }
    MULTI_END.write(out);
}

/// Reads a `MultiResponse` as `MultiResponse.deserialize` does: results until a header
/// with `done` set; the error code is taken from the `ErrorResponse` body, not the
/// header (they agree when ZooKeeper wrote them).
///
/// # Errors
/// A truncated record, a result type a multi response cannot hold, or an error code
/// this codec does not know.
pub fn decode_multi_response(r: &mut Reader) -> Result<Vec<MultiResult>, DecodeError> {
    let mut results = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            return Ok(results);
        }
        let res = match OpCode::from_i32(h.op) {
            Some(OpCode::Create) => MultiResult::Create {
                path: r.read_string("CreateResponse.path")?,
            },
            Some(OpCode::Create2) => {
                let c = Create2Response::read(r)?;
                MultiResult::Create2 {
                    path: c.path,
                    stat: c.stat,
                }
            }
            Some(OpCode::Delete) => MultiResult::Delete,
            Some(OpCode::Check) => MultiResult::Check,
            Some(OpCode::SetData) => MultiResult::SetData(Stat::read(r)?),
            Some(OpCode::GetData) => {
                let g = GetDataResponse::read(r)?;
                MultiResult::GetData {
                    data: g.data,
                    stat: g.stat,
                }
            }
            Some(OpCode::GetChildren) => MultiResult::GetChildren {
                children: r.read_vec("GetChildrenResponse.children")?,
            },
            Some(OpCode::Error) => {
                let err = r.read_i32("ErrorResponse.err")?;
                MultiResult::Error(Code::from_i32(err).ok_or(DecodeError::BadValue {
                    what: "ErrorResponse.err",
                    value: err as i64,
                })?)
            }
            _ => {
                return Err(DecodeError::BadValue {
                    what: "MultiHeader.type",
                    value: h.op as i64,
                })
            }
        };
        results.push(res);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(op: i32, body: &[u8]) -> Result<Request, RequestError> {
        Request::decode(&RequestHeader { xid: 1, op }, &mut Reader::new(body))
    }

    #[test]
    fn opcodes_zookeeper_rejects_are_unimplemented() {
        // Unknown numbers, notification, a top-level check (3.9.5's Request.isValid), and
        // the two valid-but-internal ops we do not take from clients.
        for op in [99, 0, 13, -1, -10, 20] {
            let err = decode(op, &[]).unwrap_err();
            assert_eq!(err, RequestError::Unimplemented { op });
            assert_eq!(
                err.action(),
                ErrorAction::ReplyAndClose(Code::Unimplemented)
            );
        }
    }

    #[test]
    fn malformed_bodies_answer_marshalling_error_except_auth() {
        let err = decode(OpCode::GetData as i32, &[0, 0, 0, 9, b'/']).unwrap_err();
        assert_eq!(err.action(), ErrorAction::Reply(Code::MarshallingError));
        let err = decode(OpCode::Auth as i32, &[0, 0]).unwrap_err();
        assert_eq!(err.action(), ErrorAction::Close);
        assert_eq!(
            Request::decode_payload(&[0, 0, 0]).unwrap_err().action(),
            ErrorAction::Close
        );
    }

    #[test]
    fn multi_rejects_bad_create_flags_and_foreign_ops() {
        let mut body = Vec::new();
        MultiHeader {
            op: OpCode::Create as i32,
            done: false,
            err: -1,
        }
        .write(&mut body);
        CreateRequest {
            path: "/a".into(),
            data: None,
            acl: vec![],
            flags: 7,
        }
        .write(&mut body);
        MULTI_END.write(&mut body);
        assert!(decode(OpCode::Multi as i32, &body).is_err());

        let mut body = Vec::new();
        MultiHeader {
            op: OpCode::Exists as i32,
            done: false,
            err: -1,
        }
        .write(&mut body);
        ExistsRequest {
            path: "/a".into(),
            watch: false,
        }
        .write(&mut body);
        MULTI_END.write(&mut body);
        assert!(decode(OpCode::Multi as i32, &body).is_err());
        assert!(decode(OpCode::MultiRead as i32, &body).is_err());
    }

    #[test]
    fn empty_multi_and_trailing_bytes_are_accepted() {
        let mut body = Vec::new();
        MULTI_END.write(&mut body);
        assert_eq!(
            decode(OpCode::Multi as i32, &body),
            Ok(Request::Multi(vec![]))
        );
        body.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            decode(OpCode::MultiRead as i32, &body),
            Ok(Request::MultiRead(vec![]))
        );
    }

    #[test]
    fn writes_are_what_the_sequencer_orders() {
        assert!(Request::Sync(SyncRequest { path: "/".into() }).is_write());
        assert!(Request::CloseSession.is_write());
        assert!(!Request::Exists(ExistsRequest {
            path: "/".into(),
            watch: true
        })
        .is_write());
        assert!(!Request::MultiRead(vec![]).is_write());
        assert!(!Request::Ping.is_write());
    }
}
