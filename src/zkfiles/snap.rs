//! A ZooKeeper snapshot, `version-2/snapshot.<zxid hex>` (plain), `.gz` or `.snappy`
//! (`snapshot.compression.method`), as `FileSnap` and `SnapStream` write it:
//!
//! ```text
//! FileHeader   magic "ZKSN" (int) | version 2 (int) | dbid -1 (long)
//! sessions     count (int), then per session: id (long) | timeout (int)
//! ACL cache    count (int), then per list: index (long) | vector<ACL>
//! nodes        per node, parents first: path (ustring; the root is "") | data (buffer)
//!              | acl index (long; -1 is world:anyone) | StatPersisted
//!              then the path "/" marks the end
//! seal         Adler-32 of every byte before it (long) | "/" (ustring)
//! [3.6+]       ZxidDigest: zxid (long) | digest version (int) | digest (long; a hex
//!              ustring before version 2) | seal
//! [3.9+]       lastProcessedZxid (long) | seal
//! ```
//!
//! All of it is jute: big-endian, strings and buffers with an int length. A compressed
//! snapshot is the same stream through gzip or snappy-java's framing (a 16-byte header,
//! then chunks of an int length and raw Snappy); checksums are over the uncompressed
//! stream. Pure: bytes in, values out.

use crate::proto::jute::Reader;
use crate::proto::{Acl, DecodeError};
use crate::tree::DataTree;
use crate::zkfiles::checksum::{adler32, adler32_update, node_digest, DIGEST_VERSION};
use crate::zkfiles::tree::{AclRef, StatPersisted, ZkNode, ZkTree, ZxidDigest};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// "ZKSN".
pub const SNAP_MAGIC: i32 = i32::from_be_bytes(*b"ZKSN");
/// snappy-java's stream header magic.
pub const SNAPPY_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

/// How a snapshot file is stored, from its name (`SnapStream.getStreamMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    Checked,
    Gzip,
    Snappy,
}

/// The mode of a snapshot file name: its last extension, `gz` or `snappy`, else plain.
pub fn stream_mode(name: &str) -> StreamMode {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 1 {
        let ext = parts[parts.len() - 1];
        if ext.eq_ignore_ascii_case("gz") {
            return StreamMode::Gzip;
        }
        if ext.eq_ignore_ascii_case("snappy") {
            return StreamMode::Snappy;
        }
    }
    StreamMode::Checked
}

/// A snapshot file name's zxid.
pub fn zxid_of_snapshot_name(name: &str) -> Option<i64> {
    crate::zkfiles::log::zxid_of_name(name, "snapshot")
}

/// Damage in a snapshot: `offset` is in the uncompressed stream (for a compressed
/// file's framing errors, in the file; `what` says which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapParseError {
    pub offset: u64,
    pub what: String,
}

fn err(offset: usize, what: impl Into<String>) -> SnapParseError {
    SnapParseError {
        offset: offset as u64,
        what: what.into(),
    }
}

/// The uncompressed stream of a snapshot file.
///
/// # Errors
/// A gzip stream that does not decode, or snappy framing or chunks that do not.
pub fn decompress(mode: StreamMode, file: &[u8]) -> Result<Vec<u8>, SnapParseError> {
    match mode {
        StreamMode::Checked => Ok(file.to_vec()),
        StreamMode::Gzip => {
            if file.len() < 2 || file[0] != 0x1f || file[1] != 0x8b {
                return Err(err(0, "not a gzip stream (no gzip magic)"));
            }
            let mut out = Vec::with_capacity(file.len() * 4);
            match flate2::read::MultiGzDecoder::new(file).read_to_end(&mut out) {
                Ok(_) => Ok(out),
                Err(e) => Err(err(
                    out.len(),
                    format!("gzip stream does not decode after {} bytes: {e}", out.len()),
                )),
            }
        }
        StreamMode::Snappy => unsnappy(file),
    }
}

/// snappy-java's `SnappyInputStream` format: header (magic, version, compatible
/// version), then chunks (int length, raw Snappy); a concatenated stream repeats the
/// header at a chunk boundary.
fn unsnappy(file: &[u8]) -> Result<Vec<u8>, SnapParseError> {
    let mut out = Vec::with_capacity(file.len() * 3);
    let mut pos = 0usize;
    let mut dec = snap::raw::Decoder::new();
    let mut first = true;
    while pos < file.len() {
        if file.len() - pos >= 8 && file[pos..pos + 8] == SNAPPY_MAGIC {
            if file.len() - pos < 16 {
                return Err(err(pos, "snappy stream header cut short (file offset)"));
            }
            pos += 16;
            first = false;
            continue;
        }
        if first {
            return Err(err(0, "not a snappy-java stream (no snappy magic header)"));
        }
        if file.len() - pos < 4 {
            return Err(err(
                pos,
                "snappy chunk length cut short: the file ends (file offset)",
            ));
        }
        let len = i32::from_be_bytes(file[pos..pos + 4].try_into().expect("4 bytes"));
        if len < 0 || file.len() - pos - 4 < len as usize {
            return Err(err(
                pos,
                format!(
                    "snappy chunk of {len} bytes cut short: {} bytes remain (file offset)",
                    file.len() - pos - 4
                ),
            ));
        }
        let chunk = &file[pos + 4..pos + 4 + len as usize];
        let n = snap::raw::decompress_len(chunk).map_err(|e| {
            err(
                pos,
                format!("snappy chunk does not decode: {e} (file offset)"),
            )
        })?;
        let at = out.len();
        out.resize(at + n, 0);
        dec.decompress(chunk, &mut out[at..]).map_err(|e| {
            err(
                pos,
                format!("snappy chunk does not decode: {e} (file offset)"),
            )
        })?;
        pos += 4 + len as usize;
    }
    if first {
        return Err(err(0, "empty file: not a snappy-java stream"));
    }
    Ok(out)
}

/// What a snapshot holds besides the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapMeta {
    pub dbid: i64,
    pub sessions: usize,
    pub nodes: usize,
    /// The ZxidDigest (3.6+), if written.
    pub digest: Option<ZxidDigest>,
    /// The lastProcessedZxid (3.9+), if written.
    pub last_processed_zxid: Option<i64>,
    /// Bytes after the last section that no ZooKeeper version writes (ZooKeeper ignores
    /// them; so does this reader, and says so).
    pub trailing: usize,
}

fn dec(r: &Reader<'_>, e: DecodeError, ctx: &str) -> SnapParseError {
    let what = match e {
        DecodeError::Truncated { what } => {
            format!("the snapshot ends inside {what} ({ctx}): it is truncated")
        }
        DecodeError::BadLength { what, len } if len >= 0 && len as usize > r.remaining() => {
            format!(
                "{what} ({ctx}) has {len} bytes but only {} remain: the snapshot is truncated",
                r.remaining()
            )
        }
        other => format!("{ctx}: {other}"),
    };
    err(r.position(), what)
}

/// Checks a seal at the reader's position: the Adler-32 of everything before it, and "/".
fn check_seal(
    r: &mut Reader<'_>,
    bytes: &[u8],
    adler: &mut (usize, u32),
) -> Result<(), SnapParseError> {
    let at = r.position();
    // Running Adler-32 from where the last seal's computation stopped.
    adler.1 = adler32_update(adler.1, &bytes[adler.0..at]);
    adler.0 = at;
    let val = r.read_i64("seal checksum").map_err(|e| dec(r, e, "seal"))?;
    let slash = r.read_string("seal path").map_err(|e| dec(r, e, "seal"))?;
    if val != i64::from(adler.1) {
        return Err(err(
            at,
            format!(
                "snapshot checksum mismatch: the seal says {val:#x}, the {at} bytes before it give {:#x}",
                adler.1
            ),
        ));
    }
    if slash != "/" {
        return Err(err(at + 8, format!("seal path {slash:?}, expected \"/\"")));
    }
    Ok(())
}

/// Parses a snapshot's uncompressed stream into ZooKeeper's tree (loaded, not yet
/// replayed: call [`ZkTree::loaded`] with the snapshot's zxid) and its metadata.
///
/// # Errors
/// Anything that does not match the format, with the offset: a wrong magic, a
/// truncated stream, a node before its parent, a bad checksum.
pub fn parse_snapshot(bytes: &[u8]) -> Result<(ZkTree, SnapMeta), SnapParseError> {
    let mut r = Reader::new(bytes);
    let magic = r
        .read_i32("FileHeader.magic")
        .map_err(|e| dec(&r, e, "file header"))?;
    if magic != SNAP_MAGIC {
        return Err(err(
            0,
            format!("not a ZooKeeper snapshot: magic {magic:#010x}, expected {SNAP_MAGIC:#010x} (\"ZKSN\")"),
        ));
    }
    let version = r
        .read_i32("FileHeader.version")
        .map_err(|e| dec(&r, e, "file header"))?;
    if version != 2 {
        return Err(err(
            4,
            format!("snapshot format version {version}; only version 2 exists"),
        ));
    }
    let dbid = r
        .read_i64("FileHeader.dbid")
        .map_err(|e| dec(&r, e, "file header"))?;
    let mut tree = ZkTree::empty();
    let count = r
        .read_i32("session count")
        .map_err(|e| dec(&r, e, "sessions"))?;
    if count < 0 || count as usize > r.remaining() / 12 {
        return Err(err(r.position() - 4, format!("session count {count}")));
    }
    for _ in 0..count {
        let id = r
            .read_i64("session id")
            .map_err(|e| dec(&r, e, "sessions"))?;
        let to = r
            .read_i32("session timeout")
            .map_err(|e| dec(&r, e, "sessions"))?;
        tree.add_session(id, to);
    }
    let nacl = r
        .read_i32("ACL cache size")
        .map_err(|e| dec(&r, e, "ACL cache"))?;
    if nacl < 0 || nacl as usize > r.remaining() / 12 {
        return Err(err(r.position() - 4, format!("ACL cache size {nacl}")));
    }
    let mut acls: HashMap<i64, Arc<Vec<Acl>>> = HashMap::with_capacity(nacl as usize);
    for _ in 0..nacl {
        let index = r
            .read_i64("ACL index")
            .map_err(|e| dec(&r, e, "ACL cache"))?;
        let list = r
            .read_vec::<Acl>("ACL list")
            .map_err(|e| dec(&r, e, "ACL cache"))?;
        let shared = tree.intern(&list);
        acls.insert(index, shared);
    }
    let open = tree.intern(&[Acl {
        perms: crate::proto::perms::ALL,
        id: crate::proto::Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]);
    let mut nodes = 0usize;
    loop {
        let at = r.position();
        let path = r
            .read_string("node path")
            .map_err(|e| dec(&r, e, "nodes"))?;
        if path == "/" {
            break;
        }
        let ctx = |p: &str| format!("node {}", if p.is_empty() { "/" } else { p });
        let data = r
            .read_buffer("node data")
            .map_err(|e| dec(&r, e, &ctx(&path)))?;
        let acl = r
            .read_i64("node acl")
            .map_err(|e| dec(&r, e, &ctx(&path)))?;
        let mut s = StatPersisted::default();
        (|| -> Result<(), DecodeError> {
            s.czxid = r.read_i64("StatPersisted.czxid")?;
            s.mzxid = r.read_i64("StatPersisted.mzxid")?;
            s.ctime = r.read_i64("StatPersisted.ctime")?;
            s.mtime = r.read_i64("StatPersisted.mtime")?;
            s.version = r.read_i32("StatPersisted.version")?;
            s.cversion = r.read_i32("StatPersisted.cversion")?;
            s.aversion = r.read_i32("StatPersisted.aversion")?;
            s.ephemeral_owner = r.read_i64("StatPersisted.ephemeralOwner")?;
            s.pzxid = r.read_i64("StatPersisted.pzxid")?;
            Ok(())
        })()
        .map_err(|e| dec(&r, e, &ctx(&path)))?;
        let acl = if acl == -1 {
            AclRef::List(open.clone())
        } else {
            match acls.get(&acl) {
                Some(l) => AclRef::List(l.clone()),
                None => AclRef::Missing(acl),
            }
        };
        tree.insert_loaded(
            &path,
            ZkNode {
                data,
                acl,
                stat: s,
                children: HashSet::new(),
            },
        )
        .map_err(|e| err(at, e))?;
        nodes += 1;
    }
    if tree.get("").is_none() {
        return Err(err(r.position(), "the snapshot has no root node"));
    }
    let mut adler = (0usize, 1u32);
    check_seal(&mut r, bytes, &mut adler)?;
    let mut meta = SnapMeta {
        dbid,
        sessions: count as usize,
        nodes,
        digest: None,
        last_processed_zxid: None,
        trailing: 0,
    };
    if r.remaining() > 0 {
        let d = (|| -> Result<ZxidDigest, DecodeError> {
            let zxid = r.read_i64("ZxidDigest.zxid")?;
            let version = r.read_i32("ZxidDigest.digestVersion")?;
            let digest = if version < 2 {
                let s = r.read_string("ZxidDigest.digest")?;
                u64::from_str_radix(&s, 16).unwrap_or(0) as i64
            } else {
                r.read_i64("ZxidDigest.digest")?
            };
            Ok(ZxidDigest {
                zxid,
                version,
                digest,
            })
        })()
        .map_err(|e| dec(&r, e, "zxid digest"))?;
        check_seal(&mut r, bytes, &mut adler)?;
        meta.digest = Some(d);
    }
    if r.remaining() >= 8 + 8 + 5 {
        let z = r
            .read_i64("lastProcessedZxid")
            .map_err(|e| dec(&r, e, "last processed zxid"))?;
        check_seal(&mut r, bytes, &mut adler)?;
        meta.last_processed_zxid = Some(z);
    }
    meta.trailing = r.remaining();
    Ok((tree, meta))
}

// ----- writing -----

/// A writer that keeps the Adler-32 of what went through it.
struct AdlerWriter<W: Write> {
    inner: W,
    adler: u32,
    written: u64,
}

impl<W: Write> AdlerWriter<W> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.adler = adler32_update(self.adler, b);
        self.written += b.len() as u64;
        self.inner.write_all(b)
    }
    fn int(&mut self, v: i32) -> io::Result<()> {
        self.put(&v.to_be_bytes())
    }
    fn long(&mut self, v: i64) -> io::Result<()> {
        self.put(&v.to_be_bytes())
    }
    fn len_of(n: usize) -> io::Result<i32> {
        i32::try_from(n).map_err(|_| io::Error::other(format!("field of {n} bytes too long")))
    }
    fn string(&mut self, s: &str) -> io::Result<()> {
        self.int(Self::len_of(s.len())?)?;
        self.put(s.as_bytes())
    }
    fn buffer(&mut self, b: Option<&[u8]>) -> io::Result<()> {
        match b {
            None => self.int(-1),
            Some(b) => {
                self.int(Self::len_of(b.len())?)?;
                self.put(b)
            }
        }
    }
    fn seal(&mut self) -> io::Result<()> {
        let v = i64::from(self.adler);
        self.long(v)?;
        self.string("/")
    }
}

/// What [`write_snapshot`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub nodes: u64,
    pub sessions: u64,
    pub bytes: u64,
    /// ZooKeeper's tree digest of the content (recorded in the ZxidDigest).
    pub digest: i64,
}

/// Writes `tree` as a plain ZooKeeper snapshot of its zxid, as ZooKeeper 3.9 writes one:
/// header, sessions, ACL cache, nodes in preorder from the root, seal, the zxid digest
/// (so ZooKeeper checks the content when it loads it), seal, the last processed zxid,
/// seal. ZooKeeper 3.8 reads it too (it stops after the digest's seal).
///
/// # Errors
/// When `out` fails, or a field is too long for jute.
pub fn write_snapshot<W: Write>(tree: &DataTree, out: W) -> io::Result<Written> {
    let mut w = AdlerWriter {
        inner: out,
        adler: 1,
        written: 0,
    };
    w.int(SNAP_MAGIC)?;
    w.int(2)?;
    w.long(-1)?;
    let sessions: Vec<(i64, i32)> = tree.sessions().collect();
    w.int(AdlerWriter::<W>::len_of(sessions.len())?)?;
    for (id, to) in &sessions {
        w.long(*id)?;
        w.int(*to)?;
    }
    // The ACL cache: one index per distinct list, from 1 as ZooKeeper counts them.
    // Lists are shared by `Arc` in the tree, so most nodes are found by pointer; equal
    // lists under different pointers get one index through their content.
    let mut by_ptr: HashMap<*const Vec<Acl>, i64> = HashMap::new();
    let mut by_key: HashMap<crate::zkfiles::tree::AclKey, i64> = HashMap::new();
    let mut lists: Vec<Arc<Vec<Acl>>> = Vec::new();
    tree.walk(|_, n| {
        let acl = n.acl();
        let ptr = Arc::as_ptr(acl);
        if by_ptr.contains_key(&ptr) {
            return;
        }
        let k = crate::zkfiles::tree::acl_key(acl);
        let i = *by_key.entry(k).or_insert_with(|| {
            lists.push(acl.clone());
            lists.len() as i64
        });
        by_ptr.insert(ptr, i);
    });
    w.int(AdlerWriter::<W>::len_of(lists.len())?)?;
    for (i, l) in lists.iter().enumerate() {
        w.long(i as i64 + 1)?;
        w.int(AdlerWriter::<W>::len_of(l.len())?)?;
        for a in l.iter() {
            w.int(a.perms)?;
            w.string(&a.id.scheme)?;
            w.string(&a.id.id)?;
        }
    }
    // Preorder from the root, parents before children, as DataTree.serializeNode walks
    // (children in our tree order; ZooKeeper's own order is a hash set's, so readers
    // depend on no order beyond parents first).
    let mut digest = 0i64;
    let mut nodes = 0u64;
    let mut failed: Option<io::Error> = None;
    tree.walk(|path, n| {
        if failed.is_some() {
            return;
        }
        let zk_path = if path == "/" { "" } else { path };
        let f = n.fields();
        let s = StatPersisted {
            czxid: f.czxid,
            mzxid: f.mzxid,
            ctime: f.ctime,
            mtime: f.mtime,
            version: f.version,
            cversion: f.cversion,
            aversion: f.aversion,
            ephemeral_owner: f.ephemeral_owner,
            pzxid: f.pzxid,
        };
        let r = (|| -> io::Result<()> {
            w.string(zk_path)?;
            w.buffer(n.data())?;
            w.long(by_ptr[&Arc::as_ptr(n.acl())])?;
            for v in [s.czxid, s.mzxid, s.ctime, s.mtime] {
                w.long(v)?;
            }
            for v in [s.version, s.cversion, s.aversion] {
                w.int(v)?;
            }
            w.long(s.ephemeral_owner)?;
            w.long(s.pzxid)
        })();
        match r {
            Ok(()) => {
                digest = digest.wrapping_add(node_digest(zk_path, n.data(), &s));
                nodes += 1;
            }
            Err(e) => failed = Some(e),
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    w.string("/")?;
    w.seal()?;
    w.long(tree.zxid())?;
    w.int(DIGEST_VERSION)?;
    w.long(digest)?;
    w.seal()?;
    w.long(tree.zxid())?;
    w.seal()?;
    w.inner.flush()?;
    Ok(Written {
        nodes,
        sessions: sessions.len() as u64,
        bytes: w.written,
        digest,
    })
}

/// Adler-32 of a whole byte string (re-exported for tools that check seals).
pub fn seal_of(bytes: &[u8]) -> u32 {
    adler32(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::{Txn, TxnOp};
    use bytes::Bytes;

    fn sample() -> DataTree {
        let mut t = DataTree::new();
        let mut z = 0;
        let mut apply = |t: &mut DataTree, sid: i64, op: TxnOp| {
            z += 1;
            t.apply(&Txn {
                session_id: sid,
                cxid: 0,
                zxid: z,
                time_ms: 1000 + z,
                op,
            });
        };
        apply(&mut t, 5, TxnOp::CreateSession { timeout_ms: 30_000 });
        let digest_acl = vec![Acl {
            perms: 31,
            id: crate::proto::Id {
                scheme: "digest".into(),
                id: "u:abc=".into(),
            },
        }];
        apply(
            &mut t,
            5,
            TxnOp::Create {
                path: "/a".into(),
                data: Some(Bytes::from_static(b"hello")),
                acl: digest_acl,
                ephemeral_owner: 0,
            },
        );
        apply(
            &mut t,
            5,
            TxnOp::Create {
                path: "/a/e".into(),
                data: None,
                acl: crate::tree::open_acl_unsafe(),
                ephemeral_owner: 5,
            },
        );
        apply(
            &mut t,
            5,
            TxnOp::SetData {
                path: "/a".into(),
                data: Some(Bytes::from_static(b"bye")),
                version: 1,
            },
        );
        t
    }

    #[test]
    fn write_then_read_gives_the_same_tree() {
        let t = sample();
        let mut b = Vec::new();
        let w = write_snapshot(&t, &mut b).unwrap();
        assert_eq!(w.nodes, t.len() as u64);
        // ZooKeeper's validity check: the file ends with the seal's "/".
        assert_eq!(&b[b.len() - 5..], &[0, 0, 0, 1, b'/']);
        let (mut zk, meta) = parse_snapshot(&b).unwrap();
        assert_eq!(meta.nodes, t.len());
        assert_eq!(meta.digest.unwrap().digest, w.digest);
        assert_eq!(meta.last_processed_zxid, Some(t.zxid()));
        assert_eq!(meta.trailing, 0);
        zk.loaded(t.zxid(), meta.digest);
        // The digest recorded equals the one the reader computes: checked, no mismatch.
        assert_eq!(zk.report.checked, 1);
        assert!(zk.report.mismatches.is_empty());
        let back = zk.to_data_tree().unwrap();
        assert_eq!(back.digest(), t.digest());
        assert_eq!(back, t);
    }

    #[test]
    fn truncation_anywhere_is_an_error_with_an_offset() {
        let mut b = Vec::new();
        write_snapshot(&sample(), &mut b).unwrap();
        // Cut inside the node section: the error says where the stream ended.
        for cut in [3, 20, 60, b.len() / 2, b.len() - 40] {
            let e = parse_snapshot(&b[..cut]).unwrap_err();
            assert!(e.offset <= cut as u64, "cut {cut}: {e:?}");
            assert!(!e.what.is_empty());
        }
        // A flipped byte in a node breaks the seal.
        let mut c = b.clone();
        c[b.len() / 2] ^= 1;
        assert!(parse_snapshot(&c).is_err());
    }

    #[test]
    fn compressed_streams() {
        let mut b = Vec::new();
        write_snapshot(&sample(), &mut b).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&b).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decompress(StreamMode::Gzip, &gz).unwrap(), b);
        assert!(decompress(StreamMode::Gzip, &gz[..gz.len() / 2]).is_err());
        // snappy-java framing: header, then two chunks.
        let mut s = SNAPPY_MAGIC.to_vec();
        s.extend_from_slice(&1i32.to_be_bytes());
        s.extend_from_slice(&1i32.to_be_bytes());
        let (x, y) = b.split_at(b.len() / 3);
        for part in [x, y] {
            let c = snap::raw::Encoder::new().compress_vec(part).unwrap();
            s.extend_from_slice(&(c.len() as i32).to_be_bytes());
            s.extend_from_slice(&c);
        }
        assert_eq!(decompress(StreamMode::Snappy, &s).unwrap(), b);
        let e = decompress(StreamMode::Snappy, &s[..s.len() - 3]).unwrap_err();
        assert!(e.what.contains("cut short"), "{e:?}");
        assert_eq!(stream_mode("snapshot.1a"), StreamMode::Checked);
        assert_eq!(stream_mode("snapshot.1a.gz"), StreamMode::Gzip);
        assert_eq!(stream_mode("snapshot.1a.SNAPPY"), StreamMode::Snappy);
        assert_eq!(zxid_of_snapshot_name("snapshot.1a.snappy"), Some(0x1a));
    }
}
