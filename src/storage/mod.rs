//! Durable storage: the disk interface, the transaction log and its reader, snapshots
//! and recovery.
//!
//! * [`disk`]: the `Disk`/`DiskFile` traits every storage file operation goes through,
//!   the real file system and a seeded simulated disk for crash tests.
//! * [`aligned`]: block-aligned buffers for O_DIRECT.
//! * [`snapshot`]: the snapshot format, its files, policy, background thread and purge.
//! * [`recovery`]: the newest valid snapshot plus the log's txns after it.
//!
//! See `../shared/DESIGN.md`, "Storage", for the shape.

pub mod aligned;
pub mod disk;
pub mod recovery;
pub mod snapshot;

pub use disk::{Disk, DiskFile, FaultOp, OpenOptions, OsDisk, SimDisk};
