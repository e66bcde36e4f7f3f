//! The checksums in ZooKeeper's files: Adler-32 (`java.util.zip.Adler32`) over each log
//! record and over a snapshot's stream up to each seal, and the node digest of
//! `DigestCalculator` (digest version 2) whose wrapping sum is the tree digest that
//! snapshots and log records carry since ZooKeeper 3.6.

use crate::zkfiles::tree::StatPersisted;

/// Adler-32 as `java.util.zip.Adler32` computes it, continuing from `adler` (1 to start).
pub fn adler32_update(adler: u32, bytes: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    // 5552 is the most bytes that can be summed before `b` may overflow a u32.
    const NMAX: usize = 5552;
    let (mut a, mut b) = (adler & 0xffff, adler >> 16);
    for chunk in bytes.chunks(NMAX) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// Adler-32 of `bytes`.
pub fn adler32(bytes: &[u8]) -> u32 {
    adler32_update(1, bytes)
}

/// The digest version ZooKeeper 3.6–3.9 computes (`DigestCalculator.DIGEST_VERSION`).
pub const DIGEST_VERSION: i32 = 2;

/// Whether a node counts towards the tree digest: nothing under `/zookeeper/` does.
pub fn in_digest(path: &str) -> bool {
    !path.starts_with("/zookeeper/")
}

/// One node's digest (`DigestCalculator.calculateDigest`): CRC32 of the path (the root
/// as ""), the data, then czxid, mzxid, pzxid, ctime, mtime (8 bytes each, big-endian),
/// version, cversion, aversion (4 each) and ephemeralOwner (8). 0 for nodes under
/// `/zookeeper/`.
pub fn node_digest(path: &str, data: Option<&[u8]>, stat: &StatPersisted) -> i64 {
    if !in_digest(path) {
        return 0;
    }
    let path = if path == "/" { "" } else { path };
    let mut h = crc32fast::Hasher::new();
    h.update(path.as_bytes());
    if let Some(d) = data {
        h.update(d);
    }
    let mut b = [0u8; 60];
    let mut at = 0;
    for v in [stat.czxid, stat.mzxid, stat.pzxid, stat.ctime, stat.mtime] {
        b[at..at + 8].copy_from_slice(&v.to_be_bytes());
        at += 8;
    }
    for v in [stat.version, stat.cversion, stat.aversion] {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        at += 4;
    }
    b[at..at + 8].copy_from_slice(&stat.ephemeral_owner.to_be_bytes());
    h.update(&b);
    i64::from(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_known_values() {
        // The value RFC 1950's reference code and zlib give.
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b""), 1);
        // Long input exercises the modulo steps.
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut a = 1u32;
        let mut b = 0u32;
        for &x in &big {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(adler32(&big), (b << 16) | a);
        let (x, y) = big.split_at(12_345);
        assert_eq!(adler32_update(adler32(x), y), adler32(&big));
    }

    #[test]
    fn digest_skips_the_zookeeper_subtree_and_maps_the_root() {
        let st = StatPersisted::default();
        assert_eq!(node_digest("/zookeeper/quota", Some(b"x"), &st), 0);
        assert_ne!(node_digest("/zookeeper", None, &st), 0);
        assert_eq!(node_digest("/", None, &st), node_digest("", None, &st));
        // null and empty data hash alike, as in ZooKeeper (crc.update is skipped for null).
        assert_eq!(
            node_digest("/a", None, &st),
            node_digest("/a", Some(b""), &st)
        );
    }
}
