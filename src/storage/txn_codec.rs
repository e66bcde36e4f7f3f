//! The binary encoding of a [`Txn`] inside a log record (and a snapshot's session list).
//!
//! Layout, big-endian via the jute primitives:
//!
//! ```text
//! u8  codec version (TXN_CODEC_VERSION)
//! i64 session_id  i32 cxid  i64 zxid  i64 time_ms
//! op: i32 tag, then the variant's fields in declaration order
//!     (strings and buffers jute-length-prefixed; a multi is i32 count + ops)
//! ```
//!
//! The version byte lets a later release change the layout and still read old logs.
//! [`decode_txn`] never panics and never allocates from an unchecked length: every
//! failure is a [`DecodeError`] naming the field. Pure: no I/O.

use crate::proto::jute::{DecodeError, Reader, Writer};
use crate::proto::{Acl, Code};
use crate::txn::{Txn, TxnOp};
use bytes::Bytes;

/// The layout version written by this release.
pub const TXN_CODEC_VERSION: u8 = 1;

/// How deep multis may nest when decoding. The sequencer never nests them (a multi's ops
/// are plain ops); the bound keeps hostile input from recursing without limit.
pub const MAX_MULTI_DEPTH: usize = 1;

const TAG_CREATE_SESSION: i32 = 1;
const TAG_CLOSE_SESSION: i32 = 2;
const TAG_CREATE: i32 = 3;
const TAG_DELETE: i32 = 4;
const TAG_DELETE_CONTAINER: i32 = 5;
const TAG_SET_DATA: i32 = 6;
const TAG_SET_ACL: i32 = 7;
const TAG_CHECK: i32 = 8;
const TAG_MULTI: i32 = 9;
const TAG_ERROR: i32 = 10;
/// Ops in a failed multi's error list; a multi holds far fewer ops than this (the request
/// would exceed jute.maxbuffer first), so more is a hostile or corrupt record.
const MAX_ERROR_CODES: usize = 1 << 20;

/// Appends the encoding of `txn` to `out`.
pub fn encode_txn(txn: &Txn, out: &mut Vec<u8>) {
    out.push(TXN_CODEC_VERSION);
    out.put_i64(txn.session_id);
    out.put_i32(txn.cxid);
    out.put_i64(txn.zxid);
    out.put_i64(txn.time_ms);
    encode_op(&txn.op, out);
}

fn encode_op(op: &TxnOp, out: &mut Vec<u8>) {
    match op {
        TxnOp::CreateSession { timeout_ms } => {
            out.put_i32(TAG_CREATE_SESSION);
            out.put_i32(*timeout_ms);
        }
        TxnOp::CloseSession { ephemerals } => {
            out.put_i32(TAG_CLOSE_SESSION);
            out.put_vec(ephemerals);
        }
        TxnOp::Create {
            path,
            data,
            acl,
            ephemeral_owner,
        } => {
            out.put_i32(TAG_CREATE);
            out.put_string(path);
            out.put_buffer(data.as_deref());
            out.put_vec::<Acl>(acl);
            out.put_i64(*ephemeral_owner);
        }
        TxnOp::Delete { path } => {
            out.put_i32(TAG_DELETE);
            out.put_string(path);
        }
        TxnOp::DeleteContainer { path } => {
            out.put_i32(TAG_DELETE_CONTAINER);
            out.put_string(path);
        }
        TxnOp::SetData {
            path,
            data,
            version,
        } => {
            out.put_i32(TAG_SET_DATA);
            out.put_string(path);
            out.put_buffer(data.as_deref());
            out.put_i32(*version);
        }
        TxnOp::SetAcl {
            path,
            acl,
            aversion,
        } => {
            out.put_i32(TAG_SET_ACL);
            out.put_string(path);
            out.put_vec::<Acl>(acl);
            out.put_i32(*aversion);
        }
        TxnOp::Check { path } => {
            out.put_i32(TAG_CHECK);
            out.put_string(path);
        }
        TxnOp::Multi(ops) => {
            out.put_i32(TAG_MULTI);
            out.put_i32(i32::try_from(ops.len()).expect("multi with more than 2^31 ops"));
            for op in ops {
                encode_op(op, out);
            }
        }
        TxnOp::Error { code, multi } => {
            out.put_i32(TAG_ERROR);
            out.put_i32(*code as i32);
            out.put_bool(multi.is_some());
            if let Some(codes) = multi {
                out.put_i32(i32::try_from(codes.len()).expect("multi with more than 2^31 ops"));
                for c in codes {
                    out.put_i32(*c as i32);
                }
            }
        }
    }
}

/// Decodes one txn that must fill `buf` exactly.
///
/// # Errors
/// An unknown version or tag, a truncated field, a bad length, trailing bytes.
pub fn decode_txn(buf: &[u8]) -> Result<Txn, DecodeError> {
    decode_from(buf, Reader::at(buf, 1))
}

/// [`decode_txn`] whose data buffers are slices of `buf` rather than copies (a
/// learner's proposals: the frame they came in is shared already).
///
/// # Errors
/// As [`decode_txn`].
pub fn decode_txn_shared(buf: &Bytes) -> Result<Txn, DecodeError> {
    decode_from(buf, Reader::at_shared(buf, 1))
}

fn decode_from(buf: &[u8], mut r: Reader<'_>) -> Result<Txn, DecodeError> {
    let Some(&version) = buf.first() else {
        return Err(DecodeError::Truncated {
            what: "txn codec version",
        });
    };
    if version != TXN_CODEC_VERSION {
        return Err(DecodeError::BadValue {
            what: "txn codec version",
            value: version as i64,
        });
    }
    let txn = Txn {
        session_id: r.read_i64("txn.session_id")?,
        cxid: r.read_i32("txn.cxid")?,
        zxid: r.read_i64("txn.zxid")?,
        time_ms: r.read_i64("txn.time_ms")?,
        op: decode_op(&mut r, 0)?,
    };
    r.finish("txn")?;
    Ok(txn)
}

fn decode_op(r: &mut Reader<'_>, depth: usize) -> Result<TxnOp, DecodeError> {
    let tag = r.read_i32("txn op tag")?;
    Ok(match tag {
        TAG_CREATE_SESSION => TxnOp::CreateSession {
            timeout_ms: r.read_i32("createSession.timeout")?,
        },
        TAG_CLOSE_SESSION => TxnOp::CloseSession {
            ephemerals: r.read_vec("closeSession.ephemerals")?,
        },
        TAG_CREATE => TxnOp::Create {
            path: r.read_string("create.path")?,
            data: r.read_buffer("create.data")?,
            acl: r.read_vec("create.acl")?,
            ephemeral_owner: r.read_i64("create.ephemeralOwner")?,
        },
        TAG_DELETE => TxnOp::Delete {
            path: r.read_string("delete.path")?,
        },
        TAG_DELETE_CONTAINER => TxnOp::DeleteContainer {
            path: r.read_string("deleteContainer.path")?,
        },
        TAG_SET_DATA => TxnOp::SetData {
            path: r.read_string("setData.path")?,
            data: r.read_buffer("setData.data")?,
            version: r.read_i32("setData.version")?,
        },
        TAG_SET_ACL => TxnOp::SetAcl {
            path: r.read_string("setACL.path")?,
            acl: r.read_vec("setACL.acl")?,
            aversion: r.read_i32("setACL.aversion")?,
        },
        TAG_CHECK => TxnOp::Check {
            path: r.read_string("check.path")?,
        },
        TAG_ERROR => {
            let code = read_code(r, "error.code")?;
            let multi = if r.read_bool("error.hasMulti")? {
                let n = r.read_i32("error.multi.count")?;
                if n < 0 || n as usize > MAX_ERROR_CODES || n as usize > r.remaining() / 4 {
                    return Err(DecodeError::BadLength {
                        what: "error.multi.count",
                        len: n as i64,
                    });
                }
                let mut codes = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    codes.push(read_code(r, "error.multi.code")?);
                }
                Some(codes)
            } else {
                None
            };
            TxnOp::Error { code, multi }
        }
        TAG_MULTI if depth < MAX_MULTI_DEPTH => {
            let n = r.read_i32("multi.count")?;
            // Every op takes at least its 4-byte tag, so a count beyond remaining/4 is a
            // lie; checking first keeps a hostile count from driving the allocation.
            if n < 0 || n as usize > r.remaining() / 4 {
                return Err(DecodeError::BadLength {
                    what: "multi.count",
                    len: n as i64,
                });
            }
            let mut ops = Vec::with_capacity(n as usize);
            for _ in 0..n {
                ops.push(decode_op(r, depth + 1)?);
            }
            TxnOp::Multi(ops)
        }
        other => {
            return Err(DecodeError::BadValue {
                what: "txn op tag",
                value: other as i64,
            })
        }
    })
}

fn read_code(r: &mut Reader<'_>, what: &'static str) -> Result<Code, DecodeError> {
    let v = r.read_i32(what)?;
    Code::from_i32(v).ok_or(DecodeError::BadValue {
        what,
        value: v as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Id;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn sample_ops() -> Vec<TxnOp> {
        let acl = vec![Acl {
            perms: 31,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }];
        vec![
            TxnOp::CreateSession { timeout_ms: 30000 },
            TxnOp::CloseSession {
                ephemerals: vec!["/a".into(), "/b/c".into()],
            },
            TxnOp::Create {
                path: "/x0000000001".into(),
                data: Some(Bytes::from_static(b"data")),
                acl: acl.clone(),
                ephemeral_owner: 0x1234,
            },
            TxnOp::Create {
                path: "/nodata".into(),
                data: None,
                acl: acl.clone(),
                ephemeral_owner: 0,
            },
            TxnOp::Delete { path: "/x".into() },
            TxnOp::DeleteContainer { path: "/c".into() },
            TxnOp::SetData {
                path: "/x".into(),
                data: Some(Bytes::new()),
                version: 7,
            },
            TxnOp::SetAcl {
                path: "/x".into(),
                acl,
                aversion: 2,
            },
            TxnOp::Check { path: "/x".into() },
            TxnOp::Error {
                code: Code::NoNode,
                multi: None,
            },
            TxnOp::Error {
                code: Code::BadVersion,
                multi: Some(vec![Code::Ok, Code::BadVersion, Code::RuntimeInconsistency]),
            },
        ]
    }

    #[test]
    fn every_op_round_trips() {
        let mut ops = sample_ops();
        ops.push(TxnOp::Multi(sample_ops()));
        for (i, op) in ops.into_iter().enumerate() {
            let txn = Txn {
                session_id: -5,
                cxid: i as i32,
                zxid: (3 << 32) | i as i64,
                time_ms: 1_700_000_000_000,
                op,
            };
            let mut buf = Vec::new();
            encode_txn(&txn, &mut buf);
            assert_eq!(decode_txn(&buf).unwrap(), txn);
            // Every strict prefix is an error, never a different txn.
            for cut in 0..buf.len() {
                assert!(decode_txn(&buf[..cut]).is_err(), "prefix {cut} decoded");
            }
        }
    }

    #[test]
    fn unknown_version_and_nested_multi_are_refused() {
        let txn = Txn {
            session_id: 1,
            cxid: 1,
            zxid: 1,
            time_ms: 1,
            op: TxnOp::Multi(vec![TxnOp::Multi(vec![])]),
        };
        let mut buf = Vec::new();
        encode_txn(&txn, &mut buf);
        assert!(matches!(
            decode_txn(&buf),
            Err(DecodeError::BadValue {
                what: "txn op tag",
                ..
            })
        ));
        buf[0] = 99;
        assert!(matches!(
            decode_txn(&buf),
            Err(DecodeError::BadValue {
                what: "txn codec version",
                value: 99
            })
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_txn(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(i in 0usize..9, pos in 0usize..200, val in any::<u8>()) {
            let txn = Txn { session_id: 9, cxid: 9, zxid: 9, time_ms: 9, op: sample_ops()[i].clone() };
            let mut buf = Vec::new();
            encode_txn(&txn, &mut buf);
            let pos = pos % buf.len();
            buf[pos] = val;
            let _ = decode_txn(&buf);
        }
    }
}
