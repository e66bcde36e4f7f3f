//! RingKeeper: a ZooKeeper-compatible coordination service built as an io_uring
//! storage-and-network engine. See ARCHITECTURE.md for the module map.

pub mod acl;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod dynconfig;
pub mod fourlw;
pub mod io;
pub mod prep;
pub mod proto;
pub mod reaper;
pub mod sasl;
pub mod sched;
pub mod sdnotify;
pub mod sequencer;
pub mod server;
pub mod session;
pub mod storage;
pub mod throttle;
pub mod tls;
pub mod top;
pub mod tree;
pub mod txn;
pub mod watch;
pub mod zab;
pub mod zkfiles;
