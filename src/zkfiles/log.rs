//! A ZooKeeper transaction log file, `version-2/log.<first zxid hex>`, as `FileTxnLog`
//! writes it and its iterator reads it:
//!
//! ```text
//! FileHeader   magic "ZKLG" (int) | version 2 (int) | dbid (long)
//! records      crc (long: Adler-32 of the txn bytes) | txn bytes (jute buffer: int
//!              length, bytes) | 'B' (the end-of-record byte)
//! padding      zeros: the file is preallocated in 64 MiB steps
//! ```
//!
//! Where a file ends, as ZooKeeper decides it: at the end of the bytes, at a record of
//! length 0 (the preallocated zeros), or at a record that is cut short or lacks its 'B'
//! (a write a crash interrupted). ZooKeeper then goes on with the next file. A record
//! whose Adler-32 does not match, or whose txn does not parse, is an error (ZooKeeper
//! refuses to start on it too). Pure: bytes in, records out.

use crate::zkfiles::checksum::adler32;
use crate::zkfiles::txn::{parse_txn, ZkTxn};

/// "ZKLG".
pub const LOG_MAGIC: i32 = i32::from_be_bytes(*b"ZKLG");
/// The FileHeader length.
pub const HEADER_LEN: usize = 16;
/// The end-of-record byte.
pub const EOR: u8 = b'B';

/// A log file name's first zxid, as `Util.getZxidFromName(name, "log")` reads it.
pub fn zxid_of_log_name(name: &str) -> Option<i64> {
    zxid_of_name(name, "log")
}

/// `Util.getZxidFromName`: the second dot-separated part, in hex, after `prefix`.
pub fn zxid_of_name(name: &str, prefix: &str) -> Option<i64> {
    let mut parts = name.split('.');
    if parts.next() != Some(prefix) {
        return None;
    }
    let hex = parts.next()?;
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let v = u64::from_str_radix(hex, 16).ok()?;
    i64::try_from(v).ok()
}

/// How reading a log file stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEnd {
    /// At the end of the bytes, or at the preallocated zeros (a record of length 0).
    Clean { offset: u64 },
    /// At a record a crash cut short (`reason` says how); the bytes from `offset` on are
    /// not read, as ZooKeeper does not read them.
    Torn { offset: u64, reason: String },
}

/// One record of a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Where the record (its crc) starts in the file.
    pub offset: u64,
    pub txn: ZkTxn,
}

/// Damage in a log file: `offset` is where in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogParseError {
    pub offset: u64,
    pub what: String,
}

/// Reads the records of one log file in order.
#[derive(Debug)]
pub struct LogIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: Option<LogEnd>,
    failed: bool,
}

impl<'a> LogIter<'a> {
    /// Checks the file header. An empty file (ZooKeeper may leave one behind when it
    /// crashed before the header was written) has no records.
    ///
    /// # Errors
    /// A header that is cut short or has the wrong magic.
    pub fn new(bytes: &'a [u8]) -> Result<LogIter<'a>, LogParseError> {
        if bytes.is_empty() {
            return Ok(LogIter {
                bytes,
                pos: 0,
                end: Some(LogEnd::Clean { offset: 0 }),
                failed: false,
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(LogParseError {
                offset: 0,
                what: format!(
                    "the file header is cut short ({} of {HEADER_LEN} bytes)",
                    bytes.len()
                ),
            });
        }
        let magic = i32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes"));
        if magic != LOG_MAGIC {
            return Err(LogParseError {
                offset: 0,
                what: format!(
                    "not a ZooKeeper transaction log: magic {magic:#010x}, expected {LOG_MAGIC:#010x} (\"ZKLG\")"
                ),
            });
        }
        let version = i32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if version != 2 {
            return Err(LogParseError {
                offset: 4,
                what: format!("log format version {version}; only version 2 exists"),
            });
        }
        Ok(LogIter {
            bytes,
            pos: HEADER_LEN,
            end: None,
            failed: false,
        })
    }

    /// How the file ended, once the iterator returned `None`.
    pub fn end(&self) -> Option<&LogEnd> {
        self.end.as_ref()
    }

    fn stop(&mut self, end: LogEnd) -> Option<Result<LogRecord, LogParseError>> {
        self.end = Some(end);
        None
    }
}

impl Iterator for LogIter<'_> {
    type Item = Result<LogRecord, LogParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.end.is_some() || self.failed {
            return None;
        }
        let at = self.pos;
        let rest = &self.bytes[at..];
        let offset = at as u64;
        if rest.is_empty() {
            return self.stop(LogEnd::Clean { offset });
        }
        if rest.len() < 12 {
            return self.stop(LogEnd::Torn {
                offset,
                reason: format!("{} bytes, too few for a record header", rest.len()),
            });
        }
        let crc = i64::from_be_bytes(rest[0..8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        if len == 0 {
            // The preallocated zeros (ZooKeeper treats a zero-length entry as the end).
            return self.stop(LogEnd::Clean { offset });
        }
        if len == -1 {
            return self.stop(LogEnd::Torn {
                offset,
                reason: "a record of null length".into(),
            });
        }
        if len < 0 {
            self.failed = true;
            return Some(Err(LogParseError {
                offset: offset + 8,
                what: format!("record length {len}"),
            }));
        }
        let len = len as usize;
        if rest.len() < 12 + len + 1 {
            return self.stop(LogEnd::Torn {
                offset,
                reason: format!(
                    "a record of {len} bytes cut short: {} bytes remain in the file",
                    rest.len() - 12
                ),
            });
        }
        let txn_bytes = &rest[12..12 + len];
        if rest[12 + len] != EOR {
            return self.stop(LogEnd::Torn {
                offset,
                reason: format!(
                    "a record without its end marker 'B' (byte {:#04x} at offset {})",
                    rest[12 + len],
                    offset + 12 + len as u64
                ),
            });
        }
        let actual = i64::from(adler32(txn_bytes));
        if actual != crc {
            self.failed = true;
            return Some(Err(LogParseError {
                offset,
                what: format!(
                    "record Adler-32 mismatch: the record says {crc:#x}, its {len} bytes give {actual:#x}"
                ),
            }));
        }
        match parse_txn(txn_bytes) {
            Ok(txn) => {
                self.pos = at + 12 + len + 1;
                Some(Ok(LogRecord { offset, txn }))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(LogParseError {
                    offset: offset + 12 + e.at as u64,
                    what: format!("record at offset {offset}: {}", e.what),
                }))
            }
        }
    }
}

/// Encodes a log file holding `txns` (each already encoded), as `FileTxnLog` writes it,
/// followed by `padding` zero bytes. For tests and tools.
pub fn encode_log(txns: &[Vec<u8>], padding: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&LOG_MAGIC.to_be_bytes());
    out.extend_from_slice(&2i32.to_be_bytes());
    out.extend_from_slice(&0i64.to_be_bytes());
    for t in txns {
        out.extend_from_slice(&i64::from(adler32(t)).to_be_bytes());
        out.extend_from_slice(&(t.len() as i32).to_be_bytes());
        out.extend_from_slice(t);
        out.push(EOR);
    }
    out.resize(out.len() + padding, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zkfiles::txn::{encode_txn, op, TxnHeader, ZkOp};

    fn txn(zxid: i64) -> Vec<u8> {
        encode_txn(&ZkTxn {
            hdr: TxnHeader {
                client_id: 1,
                cxid: 1,
                zxid,
                time: 10,
                kind: op::DELETE,
            },
            op: ZkOp::Delete {
                path: format!("/n{zxid}"),
            },
            digest: None,
        })
    }

    fn read_all(b: &[u8]) -> (Vec<i64>, Option<LogEnd>, Option<LogParseError>) {
        let mut it = LogIter::new(b).unwrap();
        let mut z = Vec::new();
        let mut err = None;
        for r in it.by_ref() {
            match r {
                Ok(r) => z.push(r.txn.hdr.zxid),
                Err(e) => err = Some(e),
            }
        }
        (z, it.end().cloned(), err)
    }

    #[test]
    fn names() {
        assert_eq!(zxid_of_log_name("log.100000001"), Some(0x1_0000_0001));
        assert_eq!(zxid_of_log_name("log.1.tmp"), Some(1));
        assert_eq!(zxid_of_log_name("logx.1"), None);
        assert_eq!(zxid_of_log_name("log."), None);
        assert_eq!(zxid_of_name("snapshot.1f.gz", "snapshot"), Some(0x1f));
    }

    #[test]
    fn records_then_preallocated_zeros() {
        let b = encode_log(&[txn(1), txn(2), txn(3)], 4096);
        let (z, end, err) = read_all(&b);
        assert_eq!(z, vec![1, 2, 3]);
        assert!(err.is_none());
        assert!(matches!(end, Some(LogEnd::Clean { .. })));
        let (z, end, _) = read_all(&encode_log(&[txn(1)], 0));
        assert_eq!(z, vec![1]);
        assert!(matches!(end, Some(LogEnd::Clean { .. })));
    }

    #[test]
    fn a_cut_record_is_a_torn_end_at_its_offset() {
        let full = encode_log(&[txn(1), txn(2)], 0);
        let second = (HEADER_LEN + 12 + txn(1).len() + 1) as u64;
        for cut in (second as usize + 1)..full.len() {
            let (z, end, err) = read_all(&full[..cut]);
            assert_eq!(z, vec![1], "cut {cut}");
            assert!(err.is_none());
            match end {
                Some(LogEnd::Torn { offset, .. }) => assert_eq!(offset, second),
                e => panic!("cut {cut}: {e:?}"),
            }
        }
        // A missing 'B' ends the file too.
        let mut b = full.clone();
        *b.last_mut().unwrap() = 0;
        let (z, end, _) = read_all(&b);
        assert_eq!(z, vec![1]);
        assert!(matches!(end, Some(LogEnd::Torn { .. })));
    }

    #[test]
    fn a_bad_adler32_is_an_error_naming_the_record() {
        let mut b = encode_log(&[txn(1), txn(2)], 100);
        let second = HEADER_LEN + 12 + txn(1).len() + 1;
        b[second + 12 + 20] ^= 0x40;
        let (z, _, err) = read_all(&b);
        assert_eq!(z, vec![1]);
        let e = err.unwrap();
        assert_eq!(e.offset, second as u64);
        assert!(e.what.contains("Adler-32"), "{}", e.what);
    }

    #[test]
    fn bad_headers() {
        assert!(LogIter::new(b"ZKL").is_err());
        let mut b = encode_log(&[], 0);
        b[0] = b'X';
        assert!(LogIter::new(&b).unwrap_err().what.contains("magic"));
        assert_eq!(LogIter::new(&[]).unwrap().count(), 0);
    }
}
