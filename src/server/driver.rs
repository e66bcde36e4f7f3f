//! The io_uring driver of a shard (placeholder until the io layer lands).
use super::shard::Shard;
use super::LateWake;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub struct DriverConfig {
    pub addr: SocketAddr,
    pub tick_ms: u64,
    pub max_conns_per_ip: usize,
}

pub fn run_shard(
    _shard: Shard,
    _cfg: DriverConfig,
    _wake: Arc<LateWake>,
    _stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<std::io::Result<SocketAddr>>,
) {
    let _ = ready.send(Err(std::io::Error::other("io driver not built")));
}
