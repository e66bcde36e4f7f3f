//! Apache ZooKeeper's data files, read and written as ZooKeeper's own writers lay them
//! out (the `version-2` directory of `dataDir` and `dataLogDir`), for moving a ZooKeeper
//! installation to RingKeeper and back:
//!
//! * [`checksum`]: Adler-32 (log records, snapshot seals) and ZooKeeper's node digest.
//! * [`txn`]: the txn records a log holds (`TxnHeader`, every txn type ZooKeeper 3.4–3.9
//!   writes, multi, the optional `TxnDigest`), parsed from and encoded to bytes.
//! * [`log`]: a `log.<zxid>` file: header, Adler-32-checked records, ZooKeeper's rules for
//!   where a file ends (preallocated zeros, a partial record, a missing end marker).
//! * [`snap`]: a `snapshot.<zxid>[.gz|.snappy]` file: header, sessions, the ACL cache, the
//!   tree, the seals, the zxid digest; read and written.
//! * [`tree`]: ZooKeeper's data tree as a model that replays txns exactly as
//!   `DataTree.processTxn` does (tolerantly, over a fuzzy snapshot), keeps ZooKeeper's
//!   digest to check itself against the digests ZooKeeper recorded, and converts to and
//!   from RingKeeper's [`DataTree`](crate::tree::DataTree).
//! * [`import`]: a ZooKeeper data directory -> RingKeeper's (at start or offline).
//! * [`export`]: RingKeeper's data directory -> a ZooKeeper `version-2` snapshot and epoch
//!   files.
//!
//! The parsers are pure (bytes in, values or an error with the byte offset out); only
//! `import` and `export` touch the file system. Nothing here writes into a source
//! directory. See docs/migration.md.

pub mod checksum;
pub mod export;
pub mod import;
pub mod log;
pub mod snap;
pub mod tree;
pub mod txn;

use std::fmt;
use std::path::PathBuf;

/// The directory ZooKeeper keeps its files in, under `dataDir` and `dataLogDir`.
pub const VERSION_DIR: &str = "version-2";

/// Damage or an unsupported construct in a ZooKeeper file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkFileError {
    pub file: PathBuf,
    /// Byte offset in the file (in the decompressed stream for a compressed snapshot).
    pub offset: u64,
    pub what: String,
}

impl fmt::Display for ZkFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: at byte {}: {}",
            self.file.display(),
            self.offset,
            self.what
        )
    }
}

impl std::error::Error for ZkFileError {}

/// The epoch of a zxid (its high 32 bits).
pub fn epoch_of(zxid: i64) -> u32 {
    ((zxid as u64) >> 32) as u32
}
