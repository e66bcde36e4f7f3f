//! The on-disk format of log segments: the segment header, batch frames and records.
//!
//! ```text
//! segment file  log.<first zxid, 16 hex digits>, preallocated to segment_bytes, zeroed
//! block 0       segment header (SEGMENT_HEADER_LEN bytes, rest zeros)
//!   magic "RKTXNLOG" | u32 version | u32 block | i64 first_zxid | u64 segment_bytes
//!   | u64 window_bytes | u32 crc32c(all before)
//! then batches, each starting on a BLOCK boundary and padded with zeros to the next:
//!   batch header (BATCH_HEADER_LEN): u32 magic "RKB1" | u32 record count
//!   | u32 body bytes | u32 0 | i64 first zxid | i64 last zxid | u32 crc32c(all before)
//!   | u32 0
//!   records, back to back: u32 payload len | u32 crc32c(len, zxid, payload) | i64 zxid
//!   | payload (the txn codec's bytes)
//! ```
//!
//! Every integer is big-endian. A batch is one write: starting each on a fresh block
//! means a write never touches a block an earlier, acknowledged write covered.
//! `window_bytes` is the most bytes that can be in flight past the last durable batch;
//! after a crash only that window may hold partial batches (see the reader).

use crate::storage::aligned::{round_up, AlignedBuf};

/// The write and alignment unit of the log.
pub const BLOCK: usize = 4096;
pub const SEGMENT_MAGIC: &[u8; 8] = b"RKTXNLOG";
pub const SEGMENT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 8 + 4;
pub const BATCH_MAGIC: u32 = u32::from_be_bytes(*b"RKB1");
pub const BATCH_HEADER_LEN: usize = 40;
pub const RECORD_HEADER_LEN: usize = 16;
/// The largest record payload accepted (a txn carries at most jute.maxbuffer, 1 MiB by
/// default, of data plus its path); a length above this is corruption, not a record.
pub const MAX_RECORD_PAYLOAD: usize = 16 << 20;

const _: () = assert!(SEGMENT_HEADER_LEN <= BLOCK);
const _: () = assert!(BATCH_HEADER_LEN + RECORD_HEADER_LEN <= BLOCK);

/// The file name of the segment whose first record is `first_zxid`.
pub fn segment_name(first_zxid: i64) -> String {
    format!("log.{first_zxid:016x}")
}

/// The first zxid a segment file name stands for; `None` for other files.
pub fn parse_segment_name(name: &str) -> Option<i64> {
    let hex = name.strip_prefix("log.")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(|v| v as i64)
}

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_zxid: i64,
    pub segment_bytes: u64,
    pub window_bytes: u64,
}

impl SegmentHeader {
    /// Block 0 of the segment.
    pub fn encode(&self) -> AlignedBuf {
        let mut b = AlignedBuf::with_capacity(BLOCK);
        let mut h = Vec::with_capacity(SEGMENT_HEADER_LEN);
        h.extend_from_slice(SEGMENT_MAGIC);
        h.extend_from_slice(&SEGMENT_VERSION.to_be_bytes());
        h.extend_from_slice(&(BLOCK as u32).to_be_bytes());
        h.extend_from_slice(&self.first_zxid.to_be_bytes());
        h.extend_from_slice(&self.segment_bytes.to_be_bytes());
        h.extend_from_slice(&self.window_bytes.to_be_bytes());
        let crc = crc32c::crc32c(&h);
        h.extend_from_slice(&crc.to_be_bytes());
        debug_assert_eq!(h.len(), SEGMENT_HEADER_LEN);
        b.extend_from_slice(&h);
        b.pad_to(BLOCK);
        b
    }

    /// Decodes block 0; the error says what was expected.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, String> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(format!(
                "a {SEGMENT_HEADER_LEN}-byte segment header, found {} bytes",
                b.len()
            ));
        }
        if &b[..8] != SEGMENT_MAGIC {
            return Err(format!(
                "segment magic {SEGMENT_MAGIC:?}, found {:?}",
                &b[..8]
            ));
        }
        let crc = be_u32(b, SEGMENT_HEADER_LEN - 4);
        let want = crc32c::crc32c(&b[..SEGMENT_HEADER_LEN - 4]);
        if crc != want {
            return Err(format!(
                "segment header crc32c {want:#010x}, found {crc:#010x}"
            ));
        }
        let version = be_u32(b, 8);
        if version != SEGMENT_VERSION {
            return Err(format!(
                "segment version {SEGMENT_VERSION}, found {version}"
            ));
        }
        let block = be_u32(b, 12);
        if block as usize != BLOCK {
            return Err(format!("block size {BLOCK}, found {block}"));
        }
        Ok(SegmentHeader {
            first_zxid: be_i64(b, 16),
            segment_bytes: be_u64(b, 24),
            window_bytes: be_u64(b, 32),
        })
    }
}

/// Appends one batch (header, records, zero padding to BLOCK) to `buf`, which must start
/// the batch at a block boundary. `payloads` are (zxid, encoded txn).
///
/// # Panics
/// If `buf`'s length is not block-aligned, if the batch is empty or too big for `buf`,
/// or if zxids do not increase.
pub fn encode_batch<'a>(buf: &mut AlignedBuf, records: impl Iterator<Item = (i64, &'a [u8])>) {
    assert_eq!(buf.len() % BLOCK, 0, "batch must start on a block boundary");
    let start = buf.len();
    buf.extend_from_slice(&[0u8; BATCH_HEADER_LEN]);
    let (mut count, mut first, mut last) = (0u32, 0i64, 0i64);
    let mut rec = [0u8; RECORD_HEADER_LEN];
    for (zxid, payload) in records {
        assert!(count == 0 || zxid > last, "zxid {zxid} after {last}");
        assert!(!payload.is_empty() && payload.len() <= MAX_RECORD_PAYLOAD);
        if count == 0 {
            first = zxid;
        }
        last = zxid;
        count += 1;
        let len = (payload.len() as u32).to_be_bytes();
        let z = zxid.to_be_bytes();
        let crc = crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(&len), &z), payload);
        rec[0..4].copy_from_slice(&len);
        rec[4..8].copy_from_slice(&crc.to_be_bytes());
        rec[8..16].copy_from_slice(&z);
        buf.extend_from_slice(&rec);
        buf.extend_from_slice(payload);
    }
    assert!(count > 0, "empty batch");
    let body = (buf.len() - start - BATCH_HEADER_LEN) as u32;
    let mut h = [0u8; BATCH_HEADER_LEN];
    h[0..4].copy_from_slice(&BATCH_MAGIC.to_be_bytes());
    h[4..8].copy_from_slice(&count.to_be_bytes());
    h[8..12].copy_from_slice(&body.to_be_bytes());
    h[16..24].copy_from_slice(&first.to_be_bytes());
    h[24..32].copy_from_slice(&last.to_be_bytes());
    let crc = crc32c::crc32c(&h[..32]);
    h[32..36].copy_from_slice(&crc.to_be_bytes());
    buf[start..start + BATCH_HEADER_LEN].copy_from_slice(&h);
    buf.pad_to(BLOCK);
}

/// The bytes a batch of records with these payload sizes takes on disk, padded.
pub fn batch_disk_len(payload_bytes: usize, records: usize) -> usize {
    round_up(
        BATCH_HEADER_LEN + records * RECORD_HEADER_LEN + payload_bytes,
        BLOCK,
    )
}

/// One record found in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    pub zxid: i64,
    pub offset: u64,
    pub payload: &'a [u8],
}

/// What parsing the batch at a block boundary found.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchParse<'a> {
    /// All zeros where a batch header would be: the end of the written part.
    End,
    /// A whole, valid batch; the next one starts at `next`.
    Batch {
        records: Vec<RawRecord<'a>>,
        next: usize,
    },
    /// Not a valid batch: the offset of the first bad byte range and what was expected.
    Bad { offset: usize, expected: String },
}

/// Parses the batch starting at block offset `at` of a segment image `seg`.
pub fn parse_batch(seg: &[u8], at: usize) -> BatchParse<'_> {
    assert_eq!(at % BLOCK, 0);
    let Some(h) = seg.get(at..at + BATCH_HEADER_LEN) else {
        return BatchParse::End;
    };
    if h.iter().all(|&b| b == 0) {
        return BatchParse::End;
    }
    let bad = |offset: usize, expected: String| BatchParse::Bad { offset, expected };
    if be_u32(h, 0) != BATCH_MAGIC {
        return bad(
            at,
            format!(
                "batch magic {BATCH_MAGIC:#010x}, found {:#010x}",
                be_u32(h, 0)
            ),
        );
    }
    let crc = be_u32(h, 32);
    let want = crc32c::crc32c(&h[..32]);
    if crc != want {
        return bad(
            at,
            format!("batch header crc32c {want:#010x}, found {crc:#010x}"),
        );
    }
    // The reserved words are outside the CRC, so they are checked to be zero: no byte of
    // a batch may change unnoticed.
    if be_u32(h, 12) != 0 || be_u32(h, 36) != 0 {
        return bad(at, "zero reserved words in the batch header".to_string());
    }
    let count = be_u32(h, 4) as usize;
    let body = be_u32(h, 8) as usize;
    let (first, last) = (be_i64(h, 16), be_i64(h, 24));
    let body_start = at + BATCH_HEADER_LEN;
    let Some(body_bytes) = seg.get(body_start..body_start + body) else {
        return bad(
            at,
            format!("a batch body of {body} bytes inside the segment"),
        );
    };
    if count == 0 || count > body / RECORD_HEADER_LEN {
        return bad(
            at,
            format!("a record count that fits {body} bytes, found {count}"),
        );
    }
    let mut records = Vec::with_capacity(count);
    let mut pos = 0usize;
    for i in 0..count {
        let off = body_start + pos;
        let Some(rh) = body_bytes.get(pos..pos + RECORD_HEADER_LEN) else {
            return bad(
                off,
                format!("record {i} of {count} header within the batch body"),
            );
        };
        let len = be_u32(rh, 0) as usize;
        if len == 0 || len > MAX_RECORD_PAYLOAD {
            return bad(
                off,
                format!("record length in 1..={MAX_RECORD_PAYLOAD}, found {len}"),
            );
        }
        let p0 = pos + RECORD_HEADER_LEN;
        let Some(payload) = body_bytes.get(p0..p0 + len) else {
            return bad(off, format!("record of {len} bytes within the batch body"));
        };
        let zxid = be_i64(rh, 8);
        let want = crc32c::crc32c_append(
            crc32c::crc32c_append(crc32c::crc32c(&rh[0..4]), &rh[8..16]),
            payload,
        );
        let crc = be_u32(rh, 4);
        if crc != want {
            return bad(
                off,
                format!("record crc32c {want:#010x} for zxid {zxid:#x}, found {crc:#010x}"),
            );
        }
        records.push(RawRecord {
            zxid,
            offset: off as u64,
            payload,
        });
        pos = p0 + len;
    }
    if pos != body {
        return bad(
            body_start + pos,
            format!("batch body to end after {count} records"),
        );
    }
    if records[0].zxid != first || records[count - 1].zxid != last {
        return bad(
            at,
            format!("batch zxids {first:#x}..{last:#x} to match its records"),
        );
    }
    BatchParse::Batch {
        records,
        next: at + round_up(BATCH_HEADER_LEN + body, BLOCK),
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    be_u64(b, at) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name(0x1_0000_0005), "log.0000000100000005");
        assert_eq!(
            parse_segment_name("log.0000000100000005"),
            Some(0x1_0000_0005)
        );
        assert_eq!(parse_segment_name("log.spare"), None);
        assert_eq!(parse_segment_name("log.00000001000000zz"), None);
    }

    #[test]
    fn header_round_trips_and_detects_flips() {
        let h = SegmentHeader {
            first_zxid: 42,
            segment_bytes: 1 << 20,
            window_bytes: 1 << 16,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..SEGMENT_HEADER_LEN {
            let mut c = b[..].to_vec();
            c[i] ^= 0x10;
            assert!(SegmentHeader::decode(&c).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn batch_round_trips_and_every_byte_flip_is_caught() {
        let mut buf = AlignedBuf::with_capacity(3 * BLOCK);
        let payloads: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8 + 1; 100 * i + 1]).collect();
        encode_batch(
            &mut buf,
            payloads
                .iter()
                .enumerate()
                .map(|(i, p)| (10 + i as i64, &p[..])),
        );
        let used =
            BATCH_HEADER_LEN + 5 * RECORD_HEADER_LEN + payloads.iter().map(Vec::len).sum::<usize>();
        assert_eq!(
            buf.len(),
            batch_disk_len(used - BATCH_HEADER_LEN - 5 * RECORD_HEADER_LEN, 5)
        );
        let seg = buf[..].to_vec();
        match parse_batch(&seg, 0) {
            BatchParse::Batch { records, next } => {
                assert_eq!(next, buf.len());
                assert_eq!(records.len(), 5);
                assert_eq!(records[4].zxid, 14);
                assert_eq!(records[4].payload, &payloads[4][..]);
            }
            other => panic!("{other:?}"),
        }
        for i in 0..used {
            let mut c = seg.clone();
            c[i] ^= 0x01;
            assert!(
                matches!(parse_batch(&c, 0), BatchParse::Bad { .. }),
                "flip at {i} accepted"
            );
        }
        assert_eq!(parse_batch(&[0u8; BLOCK], 0), BatchParse::End);
    }
}
