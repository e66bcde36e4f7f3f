//! `zkbench`'s parts: a load generator for any ZooKeeper-compatible server.
//!
//! - `workload`: op mixes, key choice, request encoding;
//! - `conn`: handshake, framing, reply decoding, a blocking client;
//! - `setup`: the unmeasured population of the tree;
//! - `engine`: the measured run (epoll workers, closed and open loop);
//! - `report`: summary, JSON, .hgrm, timeline, HTML;
//! - `watch`: write-to-notification latency over persistent watches on hot nodes;
//! - `storm`: many sessions connecting at once;
//! - `tls`: TLS for the measured sessions (`--tls`);
//! - `fake`: a fake server with a known delay and known errors, for tests and for the
//!   generator's own ceiling.
//!
//! Built on the project's own codec rather than an async ZooKeeper client crate: a
//! benchmark must control exactly when each request is written and when each reply is
//! read, and must pipeline far more requests per session than those clients queue.

pub mod conn;
pub mod cost;
pub mod engine;
pub mod fake;
pub mod report;
pub mod rng;
pub mod setup;
pub mod storm;
pub mod tls;
pub mod watch;
pub mod workload;

pub use engine::{run, BenchError, Config, LoadModel, RunStats};
