//! The drivers: shard threads (one io_uring loop each), the sequencer thread, and their
//! wiring. Protocol decisions live in the pure modules; this module carries them out.

pub mod bridge;
pub mod driver;
pub mod election;
pub mod forward;
pub mod fourlw;
pub mod http;
pub mod mailbox;
pub mod metrics;
pub mod msg;
pub mod peer_wire;
pub mod reads;
pub mod replication;
pub mod sequencer;
pub mod shard;
pub mod stats;

use crate::prep::PrepConfig;
use crate::tree::DataTree;
use mailbox::{Mailbox, Signal, Wake};
use msg::{ToSeq, ToShard};
use sequencer::{Sequencer, SequencerConfig, SequencerStats};
use stats::{ServerState, Settings};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

/// Everything the running server needs, resolved from zoo.cfg and the command line.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub client_addr: SocketAddr,
    /// Event loops (one thread each).
    pub shards: usize,
    pub max_client_cnxns_per_ip: usize,
    /// `maxCnxns`: connections the server holds at most (0: the io layer's bound per
    /// shard, `io::MAX_CONNECTIONS`).
    pub max_cnxns: usize,
    /// Where to serve Prometheus `/metrics` (`metricsProvider.httpHost:httpPort`), if at all.
    pub metrics_addr: Option<SocketAddr>,
    pub sequencer: SequencerConfig,
    pub settings: Settings,
}

impl ServerConfig {
    /// A standalone server on `addr` with ZooKeeper's defaults (tickTime 2000).
    pub fn standalone(addr: SocketAddr, shards: usize) -> Self {
        let tick = 2000;
        ServerConfig {
            client_addr: addr,
            shards,
            max_client_cnxns_per_ip: 60,
            max_cnxns: 0,
            metrics_addr: None,
            sequencer: SequencerConfig {
                server_id: 0,
                tick_ms: tick,
                min_session_timeout_ms: 2 * tick as i32,
                max_session_timeout_ms: 20 * tick as i32,
                prep: PrepConfig::default(),
                container_check_interval_ms: 60_000,
                container_max_per_check: 10_000,
                storage: None,
                repl: None,
            },
            settings: Settings {
                max_frame: crate::proto::DEFAULT_MAX_BUFFER,
                super_digest: None,
                fourlw_whitelist: crate::config::FourLetterWhitelist::parse("srvr").0,
                conf: crate::fourlw::ConfInfo::default(),
            },
        }
    }
}

/// A waker that a shard installs once its ring exists; wakes before that are dropped,
/// which is safe because a shard drains its mailbox on its first pass.
#[derive(Default)]
pub struct LateWake(pub OnceLock<Box<dyn Wake>>);

impl Wake for Arc<LateWake> {
    fn wake(&self) {
        if let Some(w) = self.0.get() {
            w.wake();
        }
    }
}

/// A running server: its threads and the flag that stops them.
pub struct Running {
    pub stop: Arc<AtomicBool>,
    pub state: Arc<ServerState>,
    pub local_addr: SocketAddr,
    /// The Prometheus endpoint's address, when one was asked for.
    pub metrics_addr: Option<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
    shard_wakes: Vec<Arc<LateWake>>,
    signal: Arc<Signal>,
}

impl Running {
    /// Stops every thread and waits for them.
    pub fn shutdown(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        for w in &self.shard_wakes {
            w.wake();
        }
        self.signal.wake();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts the server's threads. Returns once every shard listens.
///
/// # Errors
/// When io_uring is unusable or the client port cannot be bound.
pub fn start(cfg: ServerConfig, tree: DataTree, zxid: i64) -> std::io::Result<Running> {
    assert!(cfg.shards > 0, "at least one shard");
    let stop = Arc::new(AtomicBool::new(false));
    let signal = Arc::new(Signal::default());
    let seq_stats = Arc::new(SequencerStats::default());
    let state = Arc::new(ServerState::new(
        cfg.settings.clone(),
        cfg.shards,
        seq_stats.clone(),
    ));
    let to_seq: Vec<Arc<Mailbox<ToSeq>>> = (0..cfg.shards)
        .map(|_| Arc::new(Mailbox::new(shard::SEQ_INBOX_CAP, Box::new(signal.clone()))))
        .collect();
    let shard_wakes: Vec<Arc<LateWake>> = (0..cfg.shards)
        .map(|_| Arc::new(LateWake::default()))
        .collect();
    // The commit stream is bounded by what the shard itself sent (one entry per request,
    // and requests per connection are capped), so pushes to it never fail.
    let to_shard: Vec<Arc<Mailbox<ToShard>>> = shard_wakes
        .iter()
        .map(|w| Arc::new(Mailbox::new(usize::MAX, Box::new(w.clone()))))
        .collect();

    state.set_shard_inboxes(to_shard.clone());
    // The sequencer (and with it the log writer) starts first: if the log cannot be
    // opened, no shard is listening yet.
    let seq = Sequencer::new(
        cfg.sequencer.clone(),
        tree.clone(),
        zxid,
        to_seq.clone(),
        to_shard.clone(),
        signal.clone(),
        seq_stats,
    )?;
    let mut threads = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<SocketAddr>>();
    let mut addr = cfg.client_addr;
    for i in 0..cfg.shards {
        let shard = shard::Shard::new(
            i,
            tree.clone(),
            zxid,
            to_seq[i].clone(),
            to_shard[i].clone(),
            state.clone(),
        );
        let wake = shard_wakes[i].clone();
        let stop = stop.clone();
        let ready = ready_tx.clone();
        let dcfg = driver::DriverConfig {
            addr,
            tick_ms: (cfg.sequencer.tick_ms / 2).clamp(10, 1000) as u64,
            max_conns_per_ip: cfg.max_client_cnxns_per_ip,
            max_conns: match cfg.max_cnxns {
                0 => crate::io::MAX_CONNECTIONS,
                n => n.div_ceil(cfg.shards),
            },
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || driver::run_shard(shard, dcfg, wake, stop, ready))?,
        );
        // The first shard may have bound port 0: the others join the same port.
        let bound = ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("shard thread died during start-up"))??;
        addr = bound;
    }
    {
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("sequencer".into())
                .spawn(move || seq.run(&stop))?,
        );
    }
    let mut metrics_addr = None;
    if let Some(addr) = cfg.metrics_addr {
        let (bound, t) = http::start(addr, state.clone(), stop.clone())?;
        metrics_addr = Some(bound);
        threads.push(t);
    }
    Ok(Running {
        metrics_addr,
        stop,
        state,
        local_addr: addr,
        threads,
        shard_wakes,
        signal,
    })
}
