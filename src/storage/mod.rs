//! Durable storage: the disk interface, the transaction log writer and its reader,
//! snapshots and recovery.
//!
//! * [`disk`]: the `Disk`/`DiskFile` traits every storage file operation goes through,
//!   the real file system and a seeded simulated disk for crash tests.
//! * [`aligned`]: block-aligned buffers for O_DIRECT.
//! * [`dirlock`]: one server per data directory (an exclusive lock on it while running).
//! * [`txn_codec`]: the versioned binary encoding of a txn.
//! * [`format`]: segment header, batch frames and CRC32C-framed records.
//! * [`log`]: the [`Logger`] thread: group commit, several writes in flight, events in
//!   zxid order, failure handling (see its contract).
//! * [`reader`]: [`LogReader`] for recovery and tools: torn tails cut and logged,
//!   corruption refused with file, offset and expectation.
//! * [`snapshot`]: the snapshot format, its files, policy, background thread and purge.
//! * [`recovery`]: the newest valid snapshot plus the log's txns after it.
//! * [`truncate`]: cutting the log back to a zxid (a learner's TRUNC).
//!
//! docs/write-path.md says how the log is driven; docs/storage-benchmarks.md what it costs.

pub mod aligned;
pub mod dirlock;
pub mod disk;
pub mod format;
pub mod log;
pub mod open;
pub mod reader;
pub mod recovery;
pub mod snapshot;
pub mod truncate;
pub mod txn_codec;
mod uring;

pub use disk::{Disk, DiskFile, FaultOp, OpenOptions, OsDisk, SimDisk};
pub use log::{Full, IoBackend, LogConfig, LogEvent, Logger, SyncMode};
pub use reader::{LogEnd, LogError, LogPosition, LogReader, LogRecord, SegmentTail, TornTail};
