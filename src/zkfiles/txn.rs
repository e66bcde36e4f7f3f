//! The txn records of ZooKeeper's transaction log (`zookeeper.jute`, module
//! `org.apache.zookeeper.txn`), as `SerializeUtils.deserializeTxn` reads them: a
//! `TxnHeader`, the record its type selects, then, since 3.6, an optional `TxnDigest`.
//!
//! Every type ZooKeeper 3.4–3.9 writes is understood: createSession, closeSession (with
//! the paths to delete since 3.6, without before), create and create2 (and the pre-3.3
//! `CreateTxnV0` without parentCVersion), createContainer, createTTL, delete,
//! deleteContainer, setData, reconfig (a SetDataTxn of /zookeeper/config), setACL, error
//! and multi (whose ops may also be check and error). Anything else is refused by type.
//! Pure: bytes in, values out.

use crate::proto::jute::{Reader, Writer};
use crate::proto::{Acl, DecodeError};
use bytes::Bytes;

/// ZooKeeper's opcodes as they appear in txn headers (`ZooDefs.OpCode`).
pub mod op {
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const SET_DATA: i32 = 5;
    pub const SET_ACL: i32 = 7;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// `TxnHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxnHeader {
    pub client_id: i64,
    pub cxid: i32,
    pub zxid: i64,
    pub time: i64,
    pub kind: i32,
}

/// `TxnDigest`: the tree digest after the txn, as the leader predicted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnDigest {
    pub version: i32,
    pub tree_digest: i64,
}

/// The record a txn carries, by its header's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZkOp {
    /// `CreateSessionTxn`.
    CreateSession { timeout: i32 },
    /// `CloseSessionTxn` (3.6+), or `None` where the txn has no record (3.4, 3.5).
    CloseSession { paths: Option<Vec<String>> },
    /// `CreateTxn` for create and create2; a V0 record reads with parent_cversion -1.
    Create {
        path: String,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        ephemeral: bool,
        parent_cversion: i32,
    },
    /// `CreateTTLTxn`.
    CreateTtl {
        path: String,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        parent_cversion: i32,
        ttl: i64,
    },
    /// `CreateContainerTxn`.
    CreateContainer {
        path: String,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        parent_cversion: i32,
    },
    /// `DeleteTxn`, for delete and deleteContainer.
    Delete { path: String },
    /// `SetDataTxn`, for setData and reconfig.
    SetData {
        path: String,
        data: Option<Bytes>,
        version: i32,
    },
    /// `SetACLTxn`.
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    /// `CheckVersionTxn` (inside a multi only).
    Check { path: String, version: i32 },
    /// `ErrorTxn`.
    Error { err: i32 },
    /// `MultiTxn`: each op with its own type.
    Multi(Vec<(i32, ZkOp)>),
}

/// One txn of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkTxn {
    pub hdr: TxnHeader,
    pub op: ZkOp,
    pub digest: Option<TxnDigest>,
}

/// The name of a txn type, for messages.
pub fn type_name(kind: i32) -> String {
    match kind {
        op::CREATE => "create".into(),
        op::DELETE => "delete".into(),
        op::SET_DATA => "setData".into(),
        op::SET_ACL => "setACL".into(),
        op::CHECK => "check".into(),
        op::MULTI => "multi".into(),
        op::CREATE2 => "create2".into(),
        op::RECONFIG => "reconfig".into(),
        op::CREATE_CONTAINER => "createContainer".into(),
        op::DELETE_CONTAINER => "deleteContainer".into(),
        op::CREATE_TTL => "createTTL".into(),
        op::CREATE_SESSION => "createSession".into(),
        op::CLOSE_SESSION => "closeSession".into(),
        op::ERROR => "error".into(),
        k => format!("unknown type {k}"),
    }
}

/// Why a txn's bytes could not be read: `at` is the offset in the txn's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnParseError {
    pub at: usize,
    pub what: String,
}

fn err_at(r: &Reader<'_>, e: DecodeError, context: &str) -> TxnParseError {
    TxnParseError {
        at: r.position(),
        what: format!("{context}: {e}"),
    }
}

fn read_acl_vec(r: &mut Reader<'_>) -> Result<Vec<Acl>, DecodeError> {
    r.read_vec::<Acl>("acl")
}

/// Reads the record of a top-level or multi op of type `kind`. `None` for a type this
/// position does not allow.
fn read_op(r: &mut Reader<'_>, kind: i32, in_multi: bool) -> Option<Result<ZkOp, DecodeError>> {
    (|| -> Option<Result<ZkOp, DecodeError>> {
        Some(match kind {
            op::CREATE | op::CREATE2 => (|| {
                Ok(ZkOp::Create {
                    path: r.read_string("CreateTxn.path")?,
                    data: r.read_buffer("CreateTxn.data")?,
                    acl: read_acl_vec(r)?,
                    ephemeral: r.read_bool("CreateTxn.ephemeral")?,
                    parent_cversion: r.read_i32("CreateTxn.parentCVersion")?,
                })
            })(),
            op::CREATE_TTL => (|| {
                Ok(ZkOp::CreateTtl {
                    path: r.read_string("CreateTTLTxn.path")?,
                    data: r.read_buffer("CreateTTLTxn.data")?,
                    acl: read_acl_vec(r)?,
                    parent_cversion: r.read_i32("CreateTTLTxn.parentCVersion")?,
                    ttl: r.read_i64("CreateTTLTxn.ttl")?,
                })
            })(),
            op::CREATE_CONTAINER => (|| {
                Ok(ZkOp::CreateContainer {
                    path: r.read_string("CreateContainerTxn.path")?,
                    data: r.read_buffer("CreateContainerTxn.data")?,
                    acl: read_acl_vec(r)?,
                    parent_cversion: r.read_i32("CreateContainerTxn.parentCVersion")?,
                })
            })(),
            op::DELETE | op::DELETE_CONTAINER => r
                .read_string("DeleteTxn.path")
                .map(|path| ZkOp::Delete { path }),
            op::SET_DATA => (|| {
                Ok(ZkOp::SetData {
                    path: r.read_string("SetDataTxn.path")?,
                    data: r.read_buffer("SetDataTxn.data")?,
                    version: r.read_i32("SetDataTxn.version")?,
                })
            })(),
            op::ERROR => r.read_i32("ErrorTxn.err").map(|err| ZkOp::Error { err }),
            op::CHECK if in_multi => (|| {
                Ok(ZkOp::Check {
                    path: r.read_string("CheckVersionTxn.path")?,
                    version: r.read_i32("CheckVersionTxn.version")?,
                })
            })(),
            op::RECONFIG if !in_multi => (|| {
                Ok(ZkOp::SetData {
                    path: r.read_string("SetDataTxn.path")?,
                    data: r.read_buffer("SetDataTxn.data")?,
                    version: r.read_i32("SetDataTxn.version")?,
                })
            })(),
            op::SET_ACL if !in_multi => (|| {
                Ok(ZkOp::SetAcl {
                    path: r.read_string("SetACLTxn.path")?,
                    acl: read_acl_vec(r)?,
                    version: r.read_i32("SetACLTxn.version")?,
                })
            })(),
            op::CREATE_SESSION if !in_multi => r
                .read_i32("CreateSessionTxn.timeOut")
                .map(|timeout| ZkOp::CreateSession { timeout }),
            _ => return None,
        })
    })()
}

fn read_digest(r: &mut Reader<'_>) -> Result<TxnDigest, DecodeError> {
    Ok(TxnDigest {
        version: r.read_i32("TxnDigest.version")?,
        tree_digest: r.read_i64("TxnDigest.treeDigest")?,
    })
}

/// The bytes a `TxnDigest` takes.
const DIGEST_LEN: usize = 12;

/// Parses one txn (the bytes of one log record) as `SerializeUtils.deserializeTxn` does.
///
/// # Errors
/// An unknown txn type (at top level or in a multi), a record that does not decode, or
/// bytes left over that are not a `TxnDigest`.
pub fn parse_txn(bytes: &[u8]) -> Result<ZkTxn, TxnParseError> {
    let mut r = Reader::new(bytes);
    let hdr = (|| -> Result<TxnHeader, DecodeError> {
        Ok(TxnHeader {
            client_id: r.read_i64("TxnHeader.clientId")?,
            cxid: r.read_i32("TxnHeader.cxid")?,
            zxid: r.read_i64("TxnHeader.zxid")?,
            time: r.read_i64("TxnHeader.time")?,
            kind: r.read_i32("TxnHeader.type")?,
        })
    })()
    .map_err(|e| err_at(&r, e, "txn header"))?;
    let body_start = r.position();
    let op = match hdr.kind {
        op::CLOSE_SESSION => {
            // 3.6+ writes CloseSessionTxn; 3.4/3.5 (and 3.6+ with closeSessionTxn disabled)
            // write no record, possibly followed by a digest.
            if r.is_empty() {
                ZkOp::CloseSession { paths: None }
            } else {
                let mut probe = Reader::new(&bytes[body_start..]);
                match probe.read_vec::<String>("CloseSessionTxn.paths2Delete") {
                    Ok(paths) if probe.remaining() == 0 || probe.remaining() == DIGEST_LEN => {
                        r = Reader::at(bytes, body_start + probe.position());
                        ZkOp::CloseSession { paths: Some(paths) }
                    }
                    _ if r.remaining() == DIGEST_LEN => ZkOp::CloseSession { paths: None },
                    Ok(_) | Err(_) => {
                        return Err(TxnParseError {
                            at: body_start,
                            what: "closeSession: neither a CloseSessionTxn nor a TxnDigest".into(),
                        })
                    }
                }
            }
        }
        op::CREATE => {
            let start = r.position();
            match read_op(&mut r, op::CREATE, false).expect("create is a top-level type") {
                Ok(o) => o,
                // ZooKeeper's fallback: a V0 create has no parentCVersion.
                Err(DecodeError::Truncated { .. }) => {
                    let mut v0 = Reader::at(bytes, start);
                    let o = (|| -> Result<ZkOp, DecodeError> {
                        Ok(ZkOp::Create {
                            path: v0.read_string("CreateTxnV0.path")?,
                            data: v0.read_buffer("CreateTxnV0.data")?,
                            acl: read_acl_vec(&mut v0)?,
                            ephemeral: v0.read_bool("CreateTxnV0.ephemeral")?,
                            parent_cversion: -1,
                        })
                    })()
                    .map_err(|e| err_at(&v0, e, "create"))?;
                    r = v0;
                    o
                }
                Err(e) => return Err(err_at(&r, e, "create")),
            }
        }
        op::MULTI => {
            let n = r
                .read_i32("MultiTxn.txns")
                .map_err(|e| err_at(&r, e, "multi"))?;
            if n < -1 || (n as i64) * 8 > r.remaining() as i64 {
                return Err(TxnParseError {
                    at: r.position(),
                    what: format!("multi: bad op count {n}"),
                });
            }
            let mut ops = Vec::with_capacity(n.max(0) as usize);
            for i in 0..n.max(0) {
                let at = r.position();
                let kind = r
                    .read_i32("Txn.type")
                    .map_err(|e| err_at(&r, e, "multi op"))?;
                let data = r
                    .read_buffer("Txn.data")
                    .map_err(|e| err_at(&r, e, "multi op"))?
                    .unwrap_or_default();
                let mut sub = Reader::new(&data);
                let o = match read_op(&mut sub, kind, true) {
                    None => {
                        return Err(TxnParseError {
                            at,
                            what: format!(
                                "multi op {i}: txn type {kind} ({}) is not one ZooKeeper \
                                 writes in a multi",
                                type_name(kind)
                            ),
                        })
                    }
                    Some(Err(e)) => {
                        return Err(TxnParseError {
                            at,
                            what: format!("multi op {i} ({}): {e}", type_name(kind)),
                        })
                    }
                    Some(Ok(o)) => o,
                };
                // Bytes after an op's record are ignored, as ZooKeeper's reader
                // (`ByteBufferInputStream.byteBuffer2Record`) ignores them: a leader that
                // applies a failed multi before it has logged it rewrites the ops' types
                // to error in place, and logs error ops that still hold their original
                // records (seen in a real 3.8 ensemble's log).
                ops.push((kind, o));
            }
            ZkOp::Multi(ops)
        }
        kind => match read_op(&mut r, kind, false) {
            None => {
                return Err(TxnParseError {
                    at: body_start - 4,
                    what: format!(
                        "unknown txn type {kind} (zxid {:#x}): not one ZooKeeper 3.4-3.9 writes",
                        hdr.zxid
                    ),
                })
            }
            Some(Err(e)) => return Err(err_at(&r, e, &type_name(kind))),
            Some(Ok(o)) => o,
        },
    };
    let digest = match r.remaining() {
        0 => None,
        DIGEST_LEN => Some(read_digest(&mut r).map_err(|e| err_at(&r, e, "digest"))?),
        n => {
            return Err(TxnParseError {
                at: r.position(),
                what: format!(
                    "{} txn: {n} bytes after its record, which is not a TxnDigest",
                    type_name(hdr.kind)
                ),
            })
        }
    };
    Ok(ZkTxn { hdr, op, digest })
}

// ----- encoding (for export tooling and tests) -----

fn put_op(out: &mut Vec<u8>, o: &ZkOp) {
    match o {
        ZkOp::CreateSession { timeout } => out.put_i32(*timeout),
        ZkOp::CloseSession { paths } => {
            if let Some(p) = paths {
                out.put_vec(p);
            }
        }
        ZkOp::Create {
            path,
            data,
            acl,
            ephemeral,
            parent_cversion,
        } => {
            out.put_string(path);
            out.put_buffer(data.as_deref());
            out.put_vec(acl);
            out.put_bool(*ephemeral);
            out.put_i32(*parent_cversion);
        }
        ZkOp::CreateTtl {
            path,
            data,
            acl,
            parent_cversion,
            ttl,
        } => {
            out.put_string(path);
            out.put_buffer(data.as_deref());
            out.put_vec(acl);
            out.put_i32(*parent_cversion);
            out.put_i64(*ttl);
        }
        ZkOp::CreateContainer {
            path,
            data,
            acl,
            parent_cversion,
        } => {
            out.put_string(path);
            out.put_buffer(data.as_deref());
            out.put_vec(acl);
            out.put_i32(*parent_cversion);
        }
        ZkOp::Delete { path } => out.put_string(path),
        ZkOp::SetData {
            path,
            data,
            version,
        } => {
            out.put_string(path);
            out.put_buffer(data.as_deref());
            out.put_i32(*version);
        }
        ZkOp::SetAcl { path, acl, version } => {
            out.put_string(path);
            out.put_vec(acl);
            out.put_i32(*version);
        }
        ZkOp::Check { path, version } => {
            out.put_string(path);
            out.put_i32(*version);
        }
        ZkOp::Error { err } => out.put_i32(*err),
        ZkOp::Multi(ops) => {
            out.put_i32(ops.len() as i32);
            for (kind, o) in ops {
                out.put_i32(*kind);
                let mut b = Vec::new();
                put_op(&mut b, o);
                out.put_buffer(Some(&b));
            }
        }
    }
}

/// Encodes a txn as ZooKeeper's `Util.marshallTxnEntry` does.
pub fn encode_txn(t: &ZkTxn) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i64(t.hdr.client_id);
    out.put_i32(t.hdr.cxid);
    out.put_i64(t.hdr.zxid);
    out.put_i64(t.hdr.time);
    out.put_i32(t.hdr.kind);
    put_op(&mut out, &t.op);
    if let Some(d) = t.digest {
        out.put_i32(d.version);
        out.put_i64(d.tree_digest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Id;

    fn hdr(kind: i32, zxid: i64) -> TxnHeader {
        TxnHeader {
            client_id: 0x100,
            cxid: 7,
            zxid,
            time: 1_700_000_000_000,
            kind,
        }
    }

    fn acl() -> Vec<Acl> {
        vec![Acl {
            perms: 31,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }]
    }

    #[test]
    fn every_type_round_trips_with_and_without_digest() {
        let ops: Vec<(i32, ZkOp)> = vec![
            (op::CREATE_SESSION, ZkOp::CreateSession { timeout: 30_000 }),
            (
                op::CLOSE_SESSION,
                ZkOp::CloseSession {
                    paths: Some(vec!["/e1".into(), "/e2".into()]),
                },
            ),
            (op::CLOSE_SESSION, ZkOp::CloseSession { paths: None }),
            (
                op::CREATE,
                ZkOp::Create {
                    path: "/a".into(),
                    data: Some(Bytes::from_static(b"x")),
                    acl: acl(),
                    ephemeral: true,
                    parent_cversion: 3,
                },
            ),
            (
                op::CREATE2,
                ZkOp::Create {
                    path: "/b".into(),
                    data: None,
                    acl: acl(),
                    ephemeral: false,
                    parent_cversion: 4,
                },
            ),
            (
                op::CREATE_TTL,
                ZkOp::CreateTtl {
                    path: "/t".into(),
                    data: Some(Bytes::new()),
                    acl: acl(),
                    parent_cversion: 1,
                    ttl: 5000,
                },
            ),
            (
                op::CREATE_CONTAINER,
                ZkOp::CreateContainer {
                    path: "/c".into(),
                    data: None,
                    acl: acl(),
                    parent_cversion: 2,
                },
            ),
            (op::DELETE, ZkOp::Delete { path: "/a".into() }),
            (op::DELETE_CONTAINER, ZkOp::Delete { path: "/c".into() }),
            (
                op::SET_DATA,
                ZkOp::SetData {
                    path: "/b".into(),
                    data: Some(Bytes::from_static(b"yy")),
                    version: 2,
                },
            ),
            (
                op::RECONFIG,
                ZkOp::SetData {
                    path: "/zookeeper/config".into(),
                    data: Some(Bytes::from_static(b"server.1=...")),
                    version: 1,
                },
            ),
            (
                op::SET_ACL,
                ZkOp::SetAcl {
                    path: "/b".into(),
                    acl: acl(),
                    version: 1,
                },
            ),
            (op::ERROR, ZkOp::Error { err: -101 }),
            (
                op::MULTI,
                ZkOp::Multi(vec![
                    (
                        op::CREATE,
                        ZkOp::Create {
                            path: "/m".into(),
                            data: None,
                            acl: acl(),
                            ephemeral: false,
                            parent_cversion: 9,
                        },
                    ),
                    (
                        op::CHECK,
                        ZkOp::Check {
                            path: "/m".into(),
                            version: 0,
                        },
                    ),
                    (op::DELETE, ZkOp::Delete { path: "/m".into() }),
                    (op::ERROR, ZkOp::Error { err: 0 }),
                ]),
            ),
        ];
        for (i, (kind, o)) in ops.into_iter().enumerate() {
            for digest in [
                None,
                Some(TxnDigest {
                    version: 2,
                    tree_digest: -5,
                }),
            ] {
                let t = ZkTxn {
                    hdr: hdr(kind, i as i64 + 1),
                    op: o.clone(),
                    digest,
                };
                let bytes = encode_txn(&t);
                assert_eq!(parse_txn(&bytes).unwrap(), t, "{}", type_name(kind));
            }
        }
    }

    #[test]
    fn v0_create_reads_with_parent_cversion_minus_one() {
        let mut b = Vec::new();
        b.put_i64(1);
        b.put_i32(1);
        b.put_i64(5);
        b.put_i64(6);
        b.put_i32(op::CREATE);
        b.put_string("/old");
        b.put_buffer(Some(b"d"));
        b.put_vec(&acl());
        b.put_bool(false);
        let t = parse_txn(&b).unwrap();
        assert!(matches!(
            t.op,
            ZkOp::Create {
                parent_cversion: -1,
                ..
            }
        ));
    }

    #[test]
    fn unknown_types_and_leftovers_are_refused() {
        let t = ZkTxn {
            hdr: hdr(999, 1),
            op: ZkOp::Error { err: 0 },
            digest: None,
        };
        let e = parse_txn(&encode_txn(&t)).unwrap_err();
        assert!(e.what.contains("unknown txn type 999"), "{}", e.what);
        assert_eq!(e.at, 28);
        let t = ZkTxn {
            hdr: hdr(op::MULTI, 1),
            op: ZkOp::Multi(vec![(op::SET_ACL, ZkOp::Error { err: 0 })]),
            digest: None,
        };
        let e = parse_txn(&encode_txn(&t)).unwrap_err();
        assert!(e.what.contains("multi op 0"), "{}", e.what);
        // An error op still holding a create's record reads as its error code.
        let t = ZkTxn {
            hdr: hdr(op::MULTI, 1),
            op: ZkOp::Multi(vec![(
                op::CREATE,
                ZkOp::Create {
                    path: "/x".into(),
                    data: None,
                    acl: acl(),
                    ephemeral: false,
                    parent_cversion: 1,
                },
            )]),
            digest: None,
        };
        let mut b = encode_txn(&t);
        b[32 + 4..32 + 8].copy_from_slice(&op::ERROR.to_be_bytes());
        match parse_txn(&b).unwrap().op {
            ZkOp::Multi(ops) => assert_eq!(ops, vec![(op::ERROR, ZkOp::Error { err: 2 })]),
            o => panic!("{o:?}"),
        }
        let mut b = encode_txn(&ZkTxn {
            hdr: hdr(op::DELETE, 1),
            op: ZkOp::Delete { path: "/x".into() },
            digest: None,
        });
        b.extend_from_slice(&[1, 2, 3]);
        assert!(parse_txn(&b).unwrap_err().what.contains("3 bytes after"));
        // Truncated anywhere: an error, never a panic.
        let full = encode_txn(&ZkTxn {
            hdr: hdr(op::SET_DATA, 1),
            op: ZkOp::SetData {
                path: "/x".into(),
                data: Some(Bytes::from_static(b"abc")),
                version: 1,
            },
            digest: None,
        });
        for n in 0..full.len() {
            assert!(parse_txn(&full[..n]).is_err(), "prefix {n}");
        }
    }
}
