//! Cutting the log back to a zxid: what a learner does on ZAB's TRUNC, when it holds
//! txns the new leader never committed (ZooKeeper's `FileTxnLog.truncate`).
//!
//! Only for a log nobody is writing: the caller has stopped appending (the server
//! restarts into recovery right after, so the tree and the logger start again from the
//! shortened log). Segments that start after `to` are deleted; in the segment holding
//! `to`, the batch holding it is re-encoded with only its records up to `to`, and every
//! byte after that batch is zeroed, so the reader sees the log end there (not a torn
//! tail). Everything is synced before this returns.
//!
//! The caller guarantees `to` is not below the commit point (the ZAB core refuses such
//! a TRUNC): nothing committed is ever cut.

use crate::storage::aligned::AlignedBuf;
use crate::storage::format::{encode_batch, parse_batch, parse_segment_name, BatchParse, BLOCK};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Zeros written per call while clearing a segment's tail: one 64 MiB segment is 64
/// writes, and the buffer stays small.
const ZERO_CHUNK: usize = 1 << 20;

/// What a truncation did, for the server's log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Truncated {
    pub segments_deleted: usize,
    /// Records cut from the segment that holds `to`.
    pub records_cut: usize,
}

/// Cuts every txn with a zxid above `to` from the log in `dir`.
///
/// # Errors
/// I/O errors, or a segment holding `to` whose batches do not parse (then nothing after
/// the bad batch was touched, and the caller must not go on).
pub fn truncate_log(dir: &Path, to: i64) -> std::io::Result<Truncated> {
    let mut segments: Vec<(i64, std::path::PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(z) = e.file_name().to_str().and_then(parse_segment_name) {
            segments.push((z, e.path()));
        }
    }
    segments.sort();
    let mut out = Truncated::default();
    // Newest first: a crash half way leaves a log that ends earlier, never one with a hole.
    for (first, path) in segments.iter().rev() {
        if *first > to {
            std::fs::remove_file(path)?;
            out.segments_deleted += 1;
            continue;
        }
        out.records_cut = cut_segment(path, to)?;
        break;
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(out)
}

/// Cuts the records above `to` from one segment (see the module header).
fn cut_segment(path: &Path, to: i64) -> std::io::Result<usize> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut image = Vec::new();
    f.read_to_end(&mut image)?;
    let mut at = BLOCK;
    // Bounded: every batch advances `at` by at least one block.
    loop {
        let (records, next) = match parse_batch(&image, at) {
            BatchParse::End => return Ok(0),
            BatchParse::Batch { records, next } => (records, next),
            // Recovery cut a torn tail here before the server started; anything else
            // bad where `to` lies is never dropped silently.
            BatchParse::Bad { offset, expected } => {
                return Err(bad(format!(
                    "{}: offset {offset}: {expected}",
                    path.display()
                )))
            }
        };
        if records.last().is_some_and(|r| r.zxid <= to) {
            at = next;
            continue;
        }
        let keep: Vec<(i64, Vec<u8>)> = records
            .iter()
            .filter(|r| r.zxid <= to)
            .map(|r| (r.zxid, r.payload.to_vec()))
            .collect();
        let cut = records.len() - keep.len();
        let mut end = at;
        if !keep.is_empty() {
            let mut buf = AlignedBuf::with_capacity(next - at);
            encode_batch(&mut buf, keep.iter().map(|(z, p)| (*z, p.as_slice())));
            f.seek(SeekFrom::Start(at as u64))?;
            f.write_all(&buf)?;
            end = at + buf.len();
        }
        let later = count_records_after(&image, next);
        zero_from(&mut f, end as u64, image.len() as u64)?;
        f.sync_all()?;
        return Ok(cut + later);
    }
}

fn count_records_after(image: &[u8], mut at: usize) -> usize {
    let mut n = 0;
    while let BatchParse::Batch { records, next } = parse_batch(image, at) {
        n += records.len();
        at = next;
    }
    n
}

fn zero_from(f: &mut std::fs::File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK];
    f.seek(SeekFrom::Start(from))?;
    let mut off = from;
    while off < to {
        let n = ((to - off) as usize).min(ZERO_CHUNK);
        f.write_all(&zeros[..n])?;
        off += n as u64;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::format::{segment_name, SegmentHeader};
    use crate::storage::{LogReader, OsDisk};
    use std::sync::Arc;

    /// Writes a segment starting at `first` with the given batches of zxids.
    pub(crate) fn segment(dir: &Path, first: i64, batches: &[&[i64]]) {
        let mut bytes = SegmentHeader {
            first_zxid: first,
            segment_bytes: 1 << 20,
            window_bytes: 4 * BLOCK as u64,
        }
        .encode()
        .to_vec();
        for b in batches {
            let payloads: Vec<(i64, Vec<u8>)> = b
                .iter()
                .map(|z| {
                    let t = crate::txn::Txn {
                        session_id: 1,
                        cxid: 0,
                        zxid: *z,
                        time_ms: 0,
                        op: crate::txn::TxnOp::Delete { path: "/x".into() },
                    };
                    let mut p = Vec::new();
                    crate::storage::txn_codec::encode_txn(&t, &mut p);
                    (*z, p)
                })
                .collect();
            let mut one = AlignedBuf::with_capacity(1 << 16);
            encode_batch(&mut one, payloads.iter().map(|(z, p)| (*z, p.as_slice())));
            bytes.extend_from_slice(&one);
        }
        bytes.resize(1 << 20, 0);
        std::fs::write(dir.join(segment_name(first)), bytes).unwrap();
    }

    fn zxids(dir: &Path) -> Vec<i64> {
        let r = LogReader::open(Arc::new(OsDisk), dir).unwrap();
        let mut v = Vec::new();
        let end = r
            .replay(0, |rec| {
                v.push(rec.txn.zxid);
                Ok(())
            })
            .unwrap();
        assert!(
            end.torn.is_none(),
            "a truncated log has no torn tail: {end:?}"
        );
        v
    }

    #[test]
    fn cuts_inside_a_batch_and_deletes_later_segments() {
        let path = std::env::temp_dir().join(format!("rk-trunc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        struct Dir(std::path::PathBuf);
        impl Dir {
            fn path(&self) -> &Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = Dir(path);
        segment(dir.path(), 1, &[&[1, 2], &[3, 4, 5], &[6]]);
        segment(dir.path(), 7, &[&[7, 8]]);
        assert_eq!(zxids(dir.path()), (1..=8).collect::<Vec<_>>());
        let t = truncate_log(dir.path(), 3).unwrap();
        assert_eq!(
            t,
            Truncated {
                segments_deleted: 1,
                records_cut: 3
            }
        );
        assert_eq!(zxids(dir.path()), vec![1, 2, 3]);
        // At a batch boundary, and to the same point again: nothing more goes.
        truncate_log(dir.path(), 2).unwrap();
        assert_eq!(zxids(dir.path()), vec![1, 2]);
        assert_eq!(truncate_log(dir.path(), 2).unwrap(), Truncated::default());
        assert_eq!(zxids(dir.path()), vec![1, 2]);
    }
}
