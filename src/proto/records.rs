//! The records of `zookeeper.jute` (modules `data` and `proto`), field for field in
//! declaration order. Names follow Rust casing; the jute name is in each doc line.
//!
//! Nulls: a null `ustring` or `vector` decodes as empty; a null `buffer` stays `None`,
//! because ZooKeeper keeps null data distinct from empty data.

use super::jute::{Jute, Nested, Reader, Result};
use crate::jute_record;
use bytes::Bytes;

jute_record! {
    /// `data.Id`: an ACL identity, `scheme:id`.
    pub struct Id { pub scheme: String, pub id: String }
}
impl Nested for Id {}

jute_record! {
    /// `data.ACL`.
    pub struct Acl { pub perms: i32, pub id: Id }
}

jute_record! {
    /// `data.Stat`: 68 bytes on the wire.
    pub struct Stat {
        pub czxid: i64,
        pub mzxid: i64,
        pub ctime: i64,
        pub mtime: i64,
        pub version: i32,
        pub cversion: i32,
        pub aversion: i32,
        pub ephemeral_owner: i64,
        pub data_length: i32,
        pub num_children: i32,
        pub pzxid: i64,
    }
}
impl Nested for Stat {}

jute_record! {
    /// `data.ClientInfo` of whoAmI.
    pub struct ClientInfo { pub auth_scheme: String, pub user: String }
}

jute_record! {
    /// `proto.RequestHeader`.
    pub struct RequestHeader { pub xid: i32, pub op: i32 }
}

jute_record! {
    /// `proto.ReplyHeader`.
    pub struct ReplyHeader { pub xid: i32, pub zxid: i64, pub err: i32 }
}

jute_record! {
    /// `proto.MultiHeader`.
    pub struct MultiHeader { pub op: i32, pub done: bool, pub err: i32 }
}

jute_record! {
    /// `proto.AuthPacket`.
    pub struct AuthPacket { pub auth_type: i32, pub scheme: String, pub auth: Option<Bytes> }
}

jute_record! {
    /// `proto.SetWatches` (opcode 101).
    pub struct SetWatches {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
    }
}

jute_record! {
    /// `proto.SetWatches2` (opcode 105).
    pub struct SetWatches2 {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
        pub persistent_watches: Vec<String>,
        pub persistent_recursive_watches: Vec<String>,
    }
}

jute_record! {
    /// `proto.GetDataRequest`.
    pub struct GetDataRequest { pub path: String, pub watch: bool }
}

jute_record! {
    /// `proto.SetDataRequest`.
    pub struct SetDataRequest { pub path: String, pub data: Option<Bytes>, pub version: i32 }
}

jute_record! {
    /// `proto.ReconfigRequest`.
    pub struct ReconfigRequest {
        pub joining_servers: String,
        pub leaving_servers: String,
        pub new_members: String,
        pub cur_config_id: i64,
    }
}

jute_record! {
    /// `proto.SetDataResponse`.
    pub struct SetDataResponse { pub stat: Stat }
}

jute_record! {
    /// `proto.GetSASLRequest` / `SetSASLRequest` / `SetSASLResponse`: one token.
    pub struct SaslToken { pub token: Option<Bytes> }
}

jute_record! {
    /// `proto.ErrorResponse`: a failed op inside a multi response.
    pub struct ErrorResponse { pub err: i32 }
}

jute_record! {
    /// `proto.CreateRequest` (create, create2, createContainer).
    pub struct CreateRequest {
        pub path: String,
        pub data: Option<Bytes>,
        pub acl: Vec<Acl>,
        pub flags: i32,
    }
}

jute_record! {
    /// `proto.CreateTTLRequest`.
    pub struct CreateTtlRequest {
        pub path: String,
        pub data: Option<Bytes>,
        pub acl: Vec<Acl>,
        pub flags: i32,
        pub ttl: i64,
    }
}

jute_record! {
    /// `proto.DeleteRequest`.
    pub struct DeleteRequest { pub path: String, pub version: i32 }
}

jute_record! {
    /// `proto.GetChildrenRequest`.
    pub struct GetChildrenRequest { pub path: String, pub watch: bool }
}

jute_record! {
    /// `proto.GetChildren2Request`.
    pub struct GetChildren2Request { pub path: String, pub watch: bool }
}

jute_record! {
    /// `proto.GetAllChildrenNumberRequest`.
    pub struct GetAllChildrenNumberRequest { pub path: String }
}

jute_record! {
    /// `proto.CheckVersionRequest`.
    pub struct CheckVersionRequest { pub path: String, pub version: i32 }
}

jute_record! {
    /// `proto.SyncRequest`.
    pub struct SyncRequest { pub path: String }
}

jute_record! {
    /// `proto.SyncResponse`.
    pub struct SyncResponse { pub path: String }
}

jute_record! {
    /// `proto.GetACLRequest`.
    pub struct GetAclRequest { pub path: String }
}

jute_record! {
    /// `proto.SetACLRequest`.
    pub struct SetAclRequest { pub path: String, pub acl: Vec<Acl>, pub version: i32 }
}

jute_record! {
    /// `proto.SetACLResponse`.
    pub struct SetAclResponse { pub stat: Stat }
}

jute_record! {
    /// `proto.AddWatchRequest`.
    pub struct AddWatchRequest { pub path: String, pub mode: i32 }
}

jute_record! {
    /// `proto.WatcherEvent`.
    pub struct WatcherEvent { pub event_type: i32, pub state: i32, pub path: String }
}

jute_record! {
    /// `proto.CreateResponse`.
    pub struct CreateResponse { pub path: String }
}

jute_record! {
    /// `proto.Create2Response`.
    pub struct Create2Response { pub path: String, pub stat: Stat }
}

jute_record! {
    /// `proto.ExistsRequest`.
    pub struct ExistsRequest { pub path: String, pub watch: bool }
}

jute_record! {
    /// `proto.ExistsResponse`.
    pub struct ExistsResponse { pub stat: Stat }
}

jute_record! {
    /// `proto.GetDataResponse`.
    pub struct GetDataResponse { pub data: Option<Bytes>, pub stat: Stat }
}

jute_record! {
    /// `proto.GetChildrenResponse`.
    pub struct GetChildrenResponse { pub children: Vec<String> }
}

jute_record! {
    /// `proto.GetAllChildrenNumberResponse`.
    pub struct GetAllChildrenNumberResponse { pub total_number: i32 }
}

jute_record! {
    /// `proto.GetChildren2Response`.
    pub struct GetChildren2Response { pub children: Vec<String>, pub stat: Stat }
}

jute_record! {
    /// `proto.GetACLResponse`.
    pub struct GetAclResponse { pub acl: Vec<Acl>, pub stat: Stat }
}

jute_record! {
    /// `proto.CheckWatchesRequest`.
    pub struct CheckWatchesRequest { pub path: String, pub watcher_type: i32 }
}

jute_record! {
    /// `proto.RemoveWatchesRequest`.
    pub struct RemoveWatchesRequest { pub path: String, pub watcher_type: i32 }
}

jute_record! {
    /// `proto.GetEphemeralsRequest`.
    pub struct GetEphemeralsRequest { pub prefix_path: String }
}

jute_record! {
    /// `proto.GetEphemeralsResponse`.
    pub struct GetEphemeralsResponse { pub ephemerals: Vec<String> }
}

jute_record! {
    /// `proto.WhoAmIResponse`.
    pub struct WhoAmIResponse { pub client_info: Vec<ClientInfo> }
}

/// `proto.ConnectRequest`. `read_only` is the optional trailing byte: `None` when the
/// client did not send it, and then the response must not carry it either.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Option<Bytes>,
    pub read_only: Option<bool>,
}

impl Jute for ConnectRequest {
    const MIN_SIZE: usize = 4 + 8 + 4 + 8 + 4;
    fn write(&self, out: &mut Vec<u8>) {
        use super::jute::Writer;
        out.put_i32(self.protocol_version);
        out.put_i64(self.last_zxid_seen);
        out.put_i32(self.timeout_ms);
        out.put_i64(self.session_id);
        out.put_buffer(self.passwd.as_deref());
        if let Some(ro) = self.read_only {
            out.put_bool(ro);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let protocol_version = r.read_i32("ConnectRequest.protocolVersion")?;
        let last_zxid_seen = r.read_i64("ConnectRequest.lastZxidSeen")?;
        let timeout_ms = r.read_i32("ConnectRequest.timeOut")?;
        let session_id = r.read_i64("ConnectRequest.sessionId")?;
        let passwd = r.read_buffer("ConnectRequest.passwd")?;
        // ZooKeeper reads the readOnly byte only when bytes remain, and tolerates its absence.
        let read_only = if r.is_empty() {
            None
        } else {
            Some(r.read_bool("ConnectRequest.readOnly")?)
        };
        Ok(ConnectRequest {
            protocol_version,
            last_zxid_seen,
            timeout_ms,
            session_id,
            passwd,
            read_only,
        })
    }
}

/// `proto.ConnectResponse`; `read_only` is written only when the request carried it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Option<Bytes>,
    pub read_only: Option<bool>,
}

impl Jute for ConnectResponse {
    const MIN_SIZE: usize = 4 + 4 + 8 + 4;
    fn write(&self, out: &mut Vec<u8>) {
        use super::jute::Writer;
        out.put_i32(self.protocol_version);
        out.put_i32(self.timeout_ms);
        out.put_i64(self.session_id);
        out.put_buffer(self.passwd.as_deref());
        if let Some(ro) = self.read_only {
            out.put_bool(ro);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let protocol_version = r.read_i32("ConnectResponse.protocolVersion")?;
        let timeout_ms = r.read_i32("ConnectResponse.timeOut")?;
        let session_id = r.read_i64("ConnectResponse.sessionId")?;
        let passwd = r.read_buffer("ConnectResponse.passwd")?;
        let read_only = if r.is_empty() {
            None
        } else {
            Some(r.read_bool("ConnectResponse.readOnly")?)
        };
        Ok(ConnectResponse {
            protocol_version,
            timeout_ms,
            session_id,
            passwd,
            read_only,
        })
    }
}
