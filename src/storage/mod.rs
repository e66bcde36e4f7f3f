//! Durable storage: the disk interface, the transaction log and its reader.
//!
//! * [`disk`]: the `Disk`/`DiskFile` traits every storage file operation goes through,
//!   the real file system and a seeded simulated disk for crash tests.
//! * [`aligned`]: block-aligned buffers for O_DIRECT.
//!
//! See `../shared/DESIGN.md`, "Storage", for the shape.

pub mod aligned;
pub mod disk;
pub mod format;
pub mod txn_codec;

pub use disk::{Disk, DiskFile, FaultOp, OpenOptions, OsDisk, SimDisk};
