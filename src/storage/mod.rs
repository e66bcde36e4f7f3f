//! Durable storage: the transaction log, snapshots and recovery (DESIGN.md, "Storage").

pub mod recovery;
pub mod snapshot;
