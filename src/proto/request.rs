//! Whole client requests: a `RequestHeader` followed by the record its opcode names,
//! and the multi encoding. Implemented by the codec work (see ARCHITECTURE.md).

use super::codes::OpCode;
use super::records::*;

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
