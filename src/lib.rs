//! RingKeeper: a ZooKeeper-compatible coordination service built as an io_uring
//! storage-and-network engine. See ARCHITECTURE.md for the module map.

pub mod bench;
pub mod proto;
