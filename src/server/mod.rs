//! The drivers: the core loop (shard 0's io_uring loop, which also runs the sequencer
//! core, its log writes and its peer connections), the other shards' loops, and their
//! wiring. Protocol decisions live in the pure modules; this module carries them out.

pub mod admin;
pub mod audit;
pub mod bulk;
pub mod chain;
pub mod core_loop;
pub mod driver;
pub mod election;
pub mod fourlw;
pub mod health;
pub mod http;
pub mod json;
pub mod load;
pub mod mailbox;
pub mod metrics;
pub mod observe;
pub mod peer_wire;
pub mod reads;
pub mod replication;
pub mod shard;
pub mod stats;

use crate::sequencer::msg::{Commit, ToSeq};
use crate::sequencer::{CoreConfig, Sequencer};
use crate::tree::DataTree;
use chain::{Chain, ShardSignals};
use core_loop::{CoreSetup, EnsembleSetup, LoopMsg, StorageSetup};
use mailbox::{Mailbox, Wake};
use shard::ToShard;
use stats::{SequencerStats, ServerState, Settings};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Everything the running server needs, resolved from zoo.cfg and the command line.
pub struct ServerConfig {
    pub client_addr: SocketAddr,
    /// `secureClientPort`'s address: a TLS-only client listener.
    pub secure_client_addr: Option<SocketAddr>,
    /// How the `client_addr` listener speaks: plaintext, either (`client.portUnification`),
    /// or TLS only (a `secureClientPort` and no `clientPort`).
    pub client_wire: crate::tls::Wire,
    /// The client port's TLS settings (with a secure port or port unification).
    pub tls: Option<Arc<crate::tls::TlsSettings>>,
    /// Event loops (one thread each); the first also runs the core.
    pub shards: usize,
    pub max_client_cnxns_per_ip: usize,
    /// `maxCnxns`: connections the server holds at most (0: the io layer's bound per
    /// shard, `io::MAX_CONNECTIONS`).
    pub max_cnxns: usize,
    /// Where to serve Prometheus `/metrics` (`metricsProvider.httpHost:httpPort`), if at all.
    pub metrics_addr: Option<SocketAddr>,
    /// Where to serve the AdminServer (`admin.serverAddress:serverPort`) and its
    /// command URL, if at all.
    pub admin: Option<(SocketAddr, String)>,
    pub core: CoreConfig,
    /// The log and snapshots; `None` keeps data in memory only (tests).
    pub storage: Option<StorageSetup>,
    /// The ensemble's network; `None` is standalone.
    pub ensemble: Option<EnsembleSetup>,
    pub settings: Settings,
}

impl ServerConfig {
    /// A standalone server on `addr` with ZooKeeper's defaults (tickTime 2000), in
    /// memory only.
    pub fn standalone(addr: SocketAddr, shards: usize) -> Self {
        let tick = 2000;
        ServerConfig {
            client_addr: addr,
            secure_client_addr: None,
            client_wire: crate::tls::Wire::Plain,
            tls: None,
            shards,
            max_client_cnxns_per_ip: 60,
            max_cnxns: 0,
            metrics_addr: None,
            admin: None,
            core: CoreConfig {
                server_id: 0,
                tick_ms: tick,
                min_session_timeout_ms: 2 * tick as i32,
                max_session_timeout_ms: 20 * tick as i32,
                prep: crate::prep::PrepConfig::default(),
                container_check_interval_ms: 60_000,
                container_max_per_check: 10_000,
                snapshots: None,
                ensemble: None,
                max_inflight: crate::sequencer::MAX_INFLIGHT,
                read_only: false,
                local_sessions: false,
                local_upgrading: false,
                roots_after_ask_ms: crate::sequencer::ROOTS_AFTER_ASK_MS,
                rollback_root_txns: crate::sequencer::ROLLBACK_ROOT_TXNS,
                broken: Default::default(),
            },
            storage: None,
            ensemble: None,
            settings: Settings {
                max_frame: crate::proto::DEFAULT_MAX_BUFFER,
                super_digest: None,
                skip_acl: false,
                max_cnxns: 0,
                global_outstanding_limit: crate::config::DEFAULT_GLOBAL_OUTSTANDING_LIMIT as usize,
                conn_throttle: Default::default(),
                large_requests: Default::default(),
                audit: None,
                sessionless_timeout: std::time::Duration::from_millis(
                    crate::config::DEFAULT_SESSIONLESS_CNXN_TIMEOUT_MS,
                ),
                fourlw_whitelist: crate::config::FourLetterWhitelist::parse("srvr").0,
                conf: crate::fourlw::ConfInfo::default(),
                ops: Default::default(),
                bulk_children: crate::config::DEFAULT_BULK_READ_CHILDREN,
                fsync_warning_ms: crate::config::DEFAULT_FSYNC_WARNING_THRESHOLD_MS,
                sasl: Default::default(),
                broken_reads_on_old_view: false,
            },
        }
    }
}

/// A waker that a shard installs once its ring exists; wakes before that are dropped,
/// which is safe because a shard reads its mailbox and the chain on its first pass.
#[derive(Default)]
pub struct LateWake(pub OnceLock<Box<dyn Wake>>);

impl Wake for Arc<LateWake> {
    fn wake(&self) {
        if let Some(w) = self.0.get() {
            w.wake();
        }
    }
}

/// A mailbox whose consumer needs no wake: the core loop drains shard 0's own
/// mailbox at the end of every pass of its own thread.
struct NoWake;

impl Wake for NoWake {
    fn wake(&self) {}
}

/// A running server: its threads and the flag that stops them.
pub struct Running {
    pub stop: Arc<AtomicBool>,
    pub state: Arc<ServerState>,
    pub local_addr: SocketAddr,
    /// The TLS client port, when one was asked for.
    pub secure_addr: Option<SocketAddr>,
    /// The quorum and election ports, in an ensemble.
    pub quorum_addr: Option<SocketAddr>,
    pub election_addr: Option<SocketAddr>,
    /// The Prometheus endpoint's address, when one was asked for.
    pub metrics_addr: Option<SocketAddr>,
    /// The AdminServer's address, when it runs.
    pub admin_addr: Option<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
    shard_wakes: Vec<Arc<LateWake>>,
}

impl Running {
    /// A leader hands its leadership to its most up-to-date synced follower before it
    /// stops (a SIGTERM): waits until this server is no longer the leader (and, within
    /// `timeout`, until it follows the new one, so that the new leader has its
    /// quorum), or returns after `timeout`. Nothing to do on other servers.
    pub fn hand_off(&self, timeout: std::time::Duration) {
        use crate::fourlw::Mode;
        // Nobody to hand off to (no other synced voter): stop at once.
        let others = self
            .state
            .health()
            .map_or(0, |h| h.synced_voters.len().saturating_sub(1));
        if self.state.mode() != Some(Mode::Leader)
            || others == 0
            || !self
                .state
                .leadership(crate::sequencer::LeadershipCmd::Yield(None))
        {
            return;
        }
        let t0 = std::time::Instant::now();
        while t0.elapsed() < timeout {
            std::thread::sleep(std::time::Duration::from_millis(2));
            if self.state.mode() != Some(Mode::Leader) {
                eprintln!(
                    "ringkeeper: handed leadership off in {} ms",
                    t0.elapsed().as_millis()
                );
                return;
            }
        }
        eprintln!(
            "ringkeeper: leadership hand-off did not complete in {timeout:?}; stopping anyway"
        );
    }

    /// Stops every thread and waits for them.
    pub fn shutdown(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        for w in &self.shard_wakes {
            w.wake();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts the server's threads over the recovered `tree` at `zxid`. Returns once every
/// shard listens.
///
/// # Errors
/// When io_uring is unusable, a port cannot be bound, or the log cannot be opened.
pub fn start(cfg: ServerConfig, tree: DataTree, zxid: i64) -> std::io::Result<Running> {
    assert!(
        cfg.shards > 0 && cfg.shards <= crate::config::MAX_SHARDS,
        "1 to {} shards",
        crate::config::MAX_SHARDS
    );
    let stop = Arc::new(AtomicBool::new(false));
    let seq_stats = Arc::new(SequencerStats::default());
    let mut settings = cfg.settings.clone();
    settings.max_cnxns = cfg.max_cnxns;
    let state = Arc::new(ServerState::new(settings, cfg.shards, seq_stats.clone()));
    if cfg.ensemble.is_some() {
        // Not serving until the core reports a role (srvr, sd_notify's READY=1).
        state.set_mode(stats::MODE_LOOKING);
    }
    seq_stats
        .last_zxid
        .store(zxid, std::sync::atomic::Ordering::Relaxed);
    seq_stats
        .published_zxid
        .store(zxid, std::sync::atomic::Ordering::Relaxed);
    let shard_wakes: Vec<Arc<LateWake>> = (0..cfg.shards)
        .map(|_| Arc::new(LateWake::default()))
        .collect();
    let inbox: Arc<Mailbox<LoopMsg>> =
        Arc::new(Mailbox::new(usize::MAX, Box::new(shard_wakes[0].clone())));
    if cfg.ensemble.is_some() {
        let inbox = inbox.clone();
        state.set_leadership_hook(Box::new(move |cmd| {
            inbox.push_unbounded(LoopMsg::Leadership(cmd))
        }));
    }
    // Shard i's requests to the core: the core loop is woken for another shard's.
    let to_core: Vec<Arc<Mailbox<ToSeq>>> = (0..cfg.shards)
        .map(|i| {
            let wake: Box<dyn Wake> = if i == 0 {
                Box::new(NoWake)
            } else {
                Box::new(shard_wakes[0].clone())
            };
            Arc::new(Mailbox::new(shard::SEQ_INBOX_CAP, wake))
        })
        .collect();
    // Control messages to each shard. Bounded by what the core sends per connection
    // (a close each), so pushes to it never fail.
    let to_shards: Vec<Arc<Mailbox<ToShard>>> = shard_wakes
        .iter()
        .map(|w| Arc::new(Mailbox::new(usize::MAX, Box::new(w.clone()))))
        .collect();
    state.set_shard_inboxes(to_shards.clone());
    let signals: Vec<Arc<ShardSignals>> = (0..cfg.shards)
        .map(|_| Arc::new(ShardSignals::default()))
        .collect();
    let chain = Chain::new(Commit {
        entries: Vec::new(),
        root: Some(tree.clone()),
        zxid,
        writes: 0,
        shards: 0,
    });
    let started = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let tick_ms = cfg.core.tick_ms;
    let seq = Sequencer::new(cfg.core, tree, zxid, 0, wall);
    let mut threads = Vec::new();
    let mut shards: Vec<shard::Shard> = (0..cfg.shards)
        .map(|i| {
            shard::Shard::new(
                i,
                chain.tail(),
                signals[i].clone(),
                to_core[i].clone(),
                to_shards[i].clone(),
                state.clone(),
            )
        })
        .collect();
    if state.settings.bulk_children > 0 {
        let bulk = bulk::spawn()?;
        for s in &mut shards {
            s.set_bulk(bulk.clone());
        }
    }
    let dcfg = |addr| driver::DriverConfig {
        addr,
        secure_addr: cfg.secure_client_addr,
        client_wire: cfg.client_wire,
        tls: cfg.tls.clone(),
        tick_ms: (tick_ms / 2).clamp(10, 1000) as u64,
        max_conns_per_ip: cfg.max_client_cnxns_per_ip,
        // maxCnxns is one cap for the whole server (`ServerState::admit`), not split
        // between loops: the kernel does not spread accepts evenly.
        max_conns: match cfg.max_cnxns {
            0 => crate::io::MAX_CONNECTIONS,
            n => n.min(crate::io::MAX_CONNECTIONS),
        },
    };
    // The core loop first: if the log cannot be opened or a port bound, no shard
    // listens yet.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let setup = CoreSetup {
        seq,
        storage: cfg.storage,
        ensemble: cfg.ensemble,
        to_core,
        to_shards,
        signals,
        wakers: shard_wakes.clone(),
        chain,
        inbox,
        state: state.clone(),
        started,
        tick_ms,
    };
    let shard0 = shards.remove(0);
    {
        let (stop, d) = (stop.clone(), dcfg(cfg.client_addr));
        threads.push(
            std::thread::Builder::new()
                .name("shard-0".into())
                .spawn(move || core_loop::run(shard0, setup, d, stop, ready_tx))?,
        );
    }
    let (addr, quorum_addr, election_addr, secure_addr) = ready_rx
        .recv()
        .map_err(|_| std::io::Error::other("the core loop died during start-up"))??;
    for (i, shard) in shards.into_iter().enumerate() {
        let i = i + 1;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let wake = shard_wakes[i].clone();
        let stop = stop.clone();
        let d = dcfg(addr);
        threads.push(
            std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || driver::run_shard(shard, d, wake, stop, ready_tx))?,
        );
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("shard thread died during start-up"))??;
    }
    let mut metrics_addr = None;
    if let Some(maddr) = cfg.metrics_addr {
        let (bound, t) = http::start(maddr, http::Endpoint::Metrics, state.clone(), stop.clone())?;
        metrics_addr = Some(bound);
        threads.push(t);
    }
    let mut admin_addr = None;
    if let Some((addr, url)) = cfg.admin {
        let ep = http::Endpoint::Admin { command_url: url };
        // As a ZooKeeper quorum peer: a port in use costs the AdminServer, not the server.
        match http::start(addr, ep, state.clone(), stop.clone()) {
            Ok((bound, t)) => {
                admin_addr = Some(bound);
                threads.push(t);
            }
            Err(e) => eprintln!("ringkeeper: problem starting the AdminServer on {addr}: {e}"),
        }
    }
    Ok(Running {
        admin_addr,
        metrics_addr,
        quorum_addr,
        election_addr,
        stop,
        state,
        local_addr: addr,
        secure_addr,
        threads,
        shard_wakes,
    })
}
