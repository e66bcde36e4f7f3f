//! Reads the transaction log back: for recovery, for `ringkeeper` tooling and for tests.
//!
//! [`LogReader::open`] lists the segments of a directory; [`LogReader::replay`] walks
//! every record of every segment in zxid order from a given zxid, checking each batch
//! header, each record's CRC32C, zxid order and continuity (within an epoch each zxid is
//! the previous plus one; segment names, headers and first records agree).
//!
//! What it does with damage, never silently:
//! * A **torn tail** — the newest segment's valid batches end at offset E, the bytes in
//!   `[E, E + window)` are not a valid batch (a write in flight at a crash: partial, or
//!   a later in-flight write that landed while an earlier one did not) and everything
//!   after that window is zeros — ends the log at E. It is reported in
//!   [`LogEnd::torn`] and logged on stderr; the logger zeroes the window before it
//!   appends again. `window` is in the segment header: the most bytes the writer ever
//!   has in flight past its last durable batch.
//! * Anything else — a bad batch in an older segment, non-zero bytes after the window,
//!   a CRC-valid record that does not decode, a zxid gap — is a [`LogError::Corrupt`]
//!   naming the file, the offset and what was expected.

use crate::storage::disk::{Disk, OpenOptions};
use crate::storage::format::{parse_batch, parse_segment_name, BatchParse, SegmentHeader, BLOCK};
use crate::storage::txn_codec::decode_txn;
use crate::txn::Txn;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the log cannot be read.
#[derive(Debug)]
pub enum LogError {
    Io {
        file: PathBuf,
        error: io::Error,
    },
    /// Damage that is not a torn tail: recovery must refuse to start.
    Corrupt {
        file: PathBuf,
        offset: u64,
        expected: String,
    },
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Io { file, error } => write!(f, "{}: {error}", file.display()),
            LogError::Corrupt {
                file,
                offset,
                expected,
            } => write!(
                f,
                "corrupt transaction log {} at offset {offset}: expected {expected}",
                file.display()
            ),
        }
    }
}

impl std::error::Error for LogError {}

/// Where appending resumes: the last zxid in the log and the newest segment's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogPosition {
    /// The last zxid in the log; 0 when it has none (then `tail` may still name an
    /// empty segment).
    pub last_zxid: i64,
    /// The newest segment and the block offset after its last valid batch; `None` when
    /// there is no segment (the logger starts one at `last_zxid + 1`).
    pub tail: Option<SegmentTail>,
}

/// The newest segment and where its valid batches end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentTail {
    pub first_zxid: i64,
    pub end_offset: u64,
}

/// A torn tail that was cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    /// The log ends here; the bytes after it are not part of the log.
    pub offset: u64,
    /// Why the bytes at `offset` are not a batch.
    pub reason: String,
}

/// What a complete replay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEnd {
    pub position: LogPosition,
    pub torn: Option<TornTail>,
    /// Records passed to the callback.
    pub replayed: u64,
}

/// One record as the reader found it.
#[derive(Debug)]
pub struct LogRecord<'a> {
    pub file: &'a Path,
    pub offset: u64,
    pub txn: Txn,
}

/// The segments of one log directory.
pub struct LogReader {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// (first zxid, file name), ascending.
    segments: Vec<(i64, String)>,
}

/// Whether `zxid` may follow `prev` in the log: strictly increasing, and within one
/// epoch (the high 32 bits) without gaps.
pub fn zxid_follows(prev: i64, zxid: i64) -> bool {
    zxid > prev && ((zxid >> 32) != (prev >> 32) || zxid == prev + 1)
}

impl LogReader {
    /// Lists the segments in `dir` (a missing directory is an empty log).
    pub fn open(disk: Arc<dyn Disk>, dir: &Path) -> Result<LogReader, LogError> {
        let names = match disk.list(dir) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => {
                return Err(LogError::Io {
                    file: dir.to_path_buf(),
                    error,
                })
            }
        };
        let mut segments: Vec<(i64, String)> = names
            .into_iter()
            .filter_map(|n| parse_segment_name(&n).map(|z| (z, n)))
            .collect();
        segments.sort();
        Ok(LogReader {
            disk,
            dir: dir.to_path_buf(),
            segments,
        })
    }

    /// The segment files, oldest first.
    pub fn segments(&self) -> Vec<PathBuf> {
        self.segments
            .iter()
            .map(|(_, n)| self.dir.join(n))
            .collect()
    }

    /// Calls `f` with every txn of zxid `>= from_zxid`, in zxid order, after checking
    /// the whole log (records before `from_zxid` are checked, not passed).
    ///
    /// # Errors
    /// [`LogError::Corrupt`] for damage other than a torn tail, or when the log starts
    /// after `from_zxid` (a gap between the snapshot and the log); `Io` for read errors;
    /// whatever `f` returns.
    pub fn replay(
        &self,
        from_zxid: i64,
        mut f: impl FnMut(LogRecord<'_>) -> Result<(), LogError>,
    ) -> Result<LogEnd, LogError> {
        let mut end = LogEnd {
            position: LogPosition::default(),
            torn: None,
            replayed: 0,
        };
        // Segments wholly before `from_zxid` are skipped: the next one starts at or below it.
        let start = self
            .segments
            .iter()
            .rposition(|(z, _)| *z <= from_zxid)
            .unwrap_or(0);
        if let Some((first, name)) = self.segments.get(start) {
            // The log may start in a later epoch than `from_zxid - 1` (an ensemble's
            // first txn is (1 << 32) | 1, after a snapshot at 0): only a gap counts.
            if *first > from_zxid && from_zxid > 0 && !zxid_follows(from_zxid - 1, *first) {
                return Err(LogError::Corrupt {
                    file: self.dir.join(name),
                    offset: 0,
                    expected: format!(
                        "a log covering zxid {from_zxid:#x}, but the oldest segment starts at {first:#x}"
                    ),
                });
            }
        }
        let mut prev: Option<i64> = None;
        for (i, (name_zxid, name)) in self.segments.iter().enumerate().skip(start) {
            let path = self.dir.join(name);
            let newest = i + 1 == self.segments.len();
            let image = self.read_segment(&path)?;
            let corrupt = |offset: u64, expected: String| LogError::Corrupt {
                file: path.clone(),
                offset,
                expected,
            };
            let header = SegmentHeader::decode(&image).map_err(|e| corrupt(0, e))?;
            if header.first_zxid != *name_zxid {
                return Err(corrupt(
                    0,
                    format!(
                        "first zxid {name_zxid:#x} as the name says, header has {:#x}",
                        header.first_zxid
                    ),
                ));
            }
            if let Some(p) = prev {
                if !zxid_follows(p, header.first_zxid) {
                    return Err(corrupt(
                        0,
                        format!(
                            "a segment starting right after zxid {p:#x}, found {:#x}",
                            header.first_zxid
                        ),
                    ));
                }
            }
            let mut at = BLOCK;
            let mut first_in_segment = true;
            loop {
                match parse_batch(&image, at) {
                    BatchParse::Batch { records, next } => {
                        for r in records {
                            if first_in_segment && r.zxid != header.first_zxid {
                                return Err(corrupt(
                                    r.offset,
                                    format!(
                                        "the segment's first zxid {:#x}, found {:#x}",
                                        header.first_zxid, r.zxid
                                    ),
                                ));
                            }
                            first_in_segment = false;
                            if let Some(p) = prev {
                                if !zxid_follows(p, r.zxid) {
                                    return Err(corrupt(
                                        r.offset,
                                        format!("the zxid after {p:#x}, found {:#x}", r.zxid),
                                    ));
                                }
                            }
                            prev = Some(r.zxid);
                            if r.zxid < from_zxid {
                                // Before the replay point (the start of the segment
                                // holding it): framed and CRC-checked above, but not
                                // decoded, since nothing applies it. At restart that is
                                // most of a 64 MiB segment: decoding it took longer than
                                // replaying the tail after the snapshot.
                                continue;
                            }
                            let txn = decode_txn(r.payload).map_err(|e| {
                                corrupt(r.offset, format!("a decodable txn (CRC matched): {e}"))
                            })?;
                            if txn.zxid != r.zxid {
                                return Err(corrupt(
                                    r.offset,
                                    format!(
                                        "txn zxid {:#x} as framed, found {:#x}",
                                        r.zxid, txn.zxid
                                    ),
                                ));
                            }
                            end.replayed += 1;
                            f(LogRecord {
                                file: &path,
                                offset: r.offset,
                                txn,
                            })?;
                        }
                        at = next;
                    }
                    BatchParse::End => {
                        // The written part ends here; the rest must be zeros. In the
                        // newest segment a later in-flight batch may have landed while
                        // this one did not: the window allows that.
                        let allowed = if newest {
                            header.window_bytes as usize
                        } else {
                            0
                        };
                        check_zeros(&image, at + allowed).map_err(|o| {
                            corrupt(
                                o as u64,
                                format!("zeros after the end of the log at offset {at}"),
                            )
                        })?;
                        if newest
                            && !is_zero(
                                &image[at.min(image.len())..(at + allowed).min(image.len())],
                            )
                        {
                            end.torn = Some(TornTail {
                                file: path.clone(),
                                offset: at as u64,
                                reason: "data from unfinished writes after the last complete batch"
                                    .into(),
                            });
                        }
                        break;
                    }
                    BatchParse::Bad { offset, expected } => {
                        if !newest {
                            return Err(corrupt(offset as u64, expected));
                        }
                        let after = at + header.window_bytes as usize;
                        check_zeros(&image, after).map_err(|o| corrupt(o as u64, format!(
                            "zeros after the torn tail at offset {at} (bad batch: {expected} at {offset})")))?;
                        end.torn = Some(TornTail {
                            file: path.clone(),
                            offset: at as u64,
                            reason: format!("{expected} at offset {offset}"),
                        });
                        break;
                    }
                }
            }
            if let Some(t) = &end.torn {
                eprintln!(
                    "ringkeeper: torn tail in transaction log {} at offset {}: {}; the log ends there",
                    t.file.display(),
                    t.offset,
                    t.reason
                );
            }
            end.position = LogPosition {
                last_zxid: prev.unwrap_or(header.first_zxid - 1),
                tail: Some(SegmentTail {
                    first_zxid: header.first_zxid,
                    end_offset: at as u64,
                }),
            };
        }
        Ok(end)
    }

    fn read_segment(&self, path: &Path) -> Result<Vec<u8>, LogError> {
        let io_err = |error| LogError::Io {
            file: path.to_path_buf(),
            error,
        };
        let file = self.disk.open(path, OpenOptions::read()).map_err(io_err)?;
        let len = file.len().map_err(io_err)? as usize;
        let mut image = vec![0u8; len];
        let n = file.read_at(&mut image, 0).map_err(io_err)?;
        image.truncate(n);
        Ok(image)
    }
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Ok if every byte from `from` on is zero, else the offset of the first that is not.
fn check_zeros(image: &[u8], from: usize) -> Result<(), usize> {
    match image
        .get(from..)
        .and_then(|r| r.iter().position(|&b| b != 0))
    {
        None => Ok(()),
        Some(i) => Err(from + i),
    }
}
