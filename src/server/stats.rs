//! Server-wide state shared by the shards and the sequencer for the four-letter words
//! and metrics: settings, counters, and each shard's last published picture of its
//! connections and watches.
//!
//! Counters are relaxed atomics (they are statistics, not synchronisation). Shards
//! publish their connection list on every tick, so `cons` and `wchc` may lag by a tick.

use super::fourlw::{ConnLine, WatchSummary};
use crate::proto::OpCode;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// The settings a shard consults on its hot path.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The largest frame accepted (jute.maxbuffer).
    pub max_frame: usize,
    /// `DigestAuthenticationProvider.superDigest`: `super:<base64 sha1>`.
    pub super_digest: Option<String>,
    /// `skipACL=yes`: reads and watch notifications check no permission either.
    pub skip_acl: bool,
    /// `maxCnxns`: client connections the whole server holds at most (0: no cap).
    pub max_cnxns: usize,
    /// `nio.sessionlessCnxnTimeout`: how long a connection may stay idle before its
    /// handshake is done.
    pub sessionless_timeout: std::time::Duration,
    /// `globalOutstandingLimit`: above this many requests outstanding in the whole
    /// server, connections with a request outstanding are not read.
    pub global_outstanding_limit: usize,
    /// The connection token bucket.
    pub conn_throttle: crate::throttle::ThrottleConfig,
    /// `largeRequestMaxBytes` / `largeRequestThreshold`.
    pub large_requests: crate::throttle::LargeRequests,
    /// The audit log, when `audit.enable=true`.
    pub audit: Option<Arc<super::audit::AuditLog>>,
    /// The four-letter words allowed (`4lw.commands.whitelist`).
    pub fourlw_whitelist: crate::config::FourLetterWhitelist,
    /// What `conf` prints.
    pub conf: crate::fourlw::ConfInfo,
    /// Load attribution and the slow-request log.
    pub ops: super::observe::OpsSettings,
    /// `bulkReadChildren`: a getChildren of a node with more children than this is
    /// answered by the bulk-reply thread, not the shard's (0: always on the shard).
    pub bulk_children: usize,
    /// `fsync.warningthresholdms`: a log write slower than this many ms is logged as a
    /// warning and counted.
    pub fsync_warning_ms: i64,
    /// Client SASL: the JAAS login, the enforcement switches (`crate::sasl`).
    pub sasl: Arc<crate::sasl::SaslSettings>,
    /// A planted bug for the simulator to catch, never set by a server: reads run on
    /// whatever view the shard holds, not only on one at the last commit it processed.
    pub broken_reads_on_old_view: bool,
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `maxCnxns` connections are open.
    MaxCnxns(usize),
    /// `maxClientCnxns` connections from this address are open.
    PerIp(usize),
}

/// Per-connection statistics for `cons`.
#[derive(Debug, Clone)]
pub struct ConnStats {
    pub received: u64,
    pub sent: u64,
    pub last_op: &'static str,
    pub last_cxid: i32,
    pub last_zxid: i64,
    pub established: SystemTime,
    pub last_response: Option<SystemTime>,
    pub lat_min_ms: u64,
    pub lat_max_ms: u64,
    pub lat_sum_ms: u64,
    pub lat_count: u64,
}

/// The monotonic and wall clocks read once, for every answer a shard sends in one
/// commit: each answer's statistics used to read them (six clock reads per write,
/// ~3% of a standalone server's CPU under zkbench's setData load, perf); the answers
/// of one commit go out within microseconds of each other.
#[derive(Clone, Copy)]
pub struct Clock {
    pub now: Instant,
    pub wall: SystemTime,
}

impl Clock {
    pub fn now() -> Clock {
        Clock {
            now: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The time now, reading the monotonic clock alone: the wall time follows from this
    /// one's (`cons` shows it in milliseconds).
    pub fn later(&self) -> Clock {
        let now = Instant::now();
        Clock {
            now,
            wall: self.wall + now.saturating_duration_since(self.now),
        }
    }
}

impl ConnStats {
    pub fn new() -> Self {
        ConnStats {
            received: 0,
            sent: 0,
            last_op: "NA",
            last_cxid: 0,
            last_zxid: 0,
            established: SystemTime::now(),
            last_response: None,
            lat_min_ms: u64::MAX,
            lat_max_ms: 0,
            lat_sum_ms: 0,
            lat_count: 0,
        }
    }

    /// One answer sent, at `at` (the caller reads the clocks once for many answers).
    pub fn answered_at(&mut self, op: OpCode, received: Instant, zxid: i64, at: Clock) {
        let ms = at.now.saturating_duration_since(received).as_millis() as u64;
        self.sent += 1;
        self.last_op = short_op(op);
        self.last_zxid = zxid;
        self.last_response = Some(at.wall);
        self.lat_min_ms = self.lat_min_ms.min(ms);
        self.lat_max_ms = self.lat_max_ms.max(ms);
        self.lat_sum_ms += ms;
        self.lat_count += 1;
    }
}

impl ConnStats {
    /// ZooKeeper's `ServerCnxn.resetStats` (`crst`): counts and latencies zeroed, the
    /// last operation `NA`, the last cxid and zxid -1, no last response; the time the
    /// connection was established stays.
    pub fn reset(&mut self) {
        *self = ConnStats {
            last_op: "NA",
            last_cxid: -1,
            last_zxid: -1,
            established: self.established,
            ..ConnStats::new()
        };
    }
}

impl Default for ConnStats {
    fn default() -> Self {
        Self::new()
    }
}

/// The four-letter abbreviation ZooKeeper's `cons` prints as `lop`.
pub fn short_op(op: OpCode) -> &'static str {
    use OpCode::*;
    match op {
        Create | Create2 | CreateContainer | CreateTtl => "CREA",
        Delete | DeleteContainer => "DELE",
        Exists => "EXIS",
        GetData => "GETD",
        SetData => "SETD",
        GetAcl => "GETA",
        SetAcl => "SETA",
        GetChildren | GetChildren2 => "GETC",
        Sync => "SYNC",
        Ping => "PING",
        Check => "CHEC",
        Multi => "MULT",
        MultiRead => "MLTR",
        CheckWatches => "CHKW",
        RemoveWatches => "REMW",
        SetWatches | SetWatches2 => "SETW",
        AddWatch => "ADDW",
        WhoAmI => "HOMI",
        GetEphemerals => "GETE",
        GetAllChildrenNumber => "GETACN",
        CreateSession => "SESS",
        CloseSession => "CLOS",
        _ => "NA",
    }
}

/// What the core loop publishes for the four-letter words and metrics.
#[derive(Debug, Default)]
pub struct SequencerStats {
    /// Write-stage and read latency histograms (shared with the shards).
    pub metrics: super::metrics::Metrics,
    pub last_zxid: std::sync::atomic::AtomicI64,
    /// The zxid of the newest commit published to the shards.
    pub published_zxid: std::sync::atomic::AtomicI64,
    pub sessions: std::sync::atomic::AtomicI64,
    /// Local sessions of this server (`localSessionsEnabled`): `zk_local_sessions`.
    pub local_sessions: std::sync::atomic::AtomicI64,
    /// Sessions by expiry time (wall clock ms), refreshed every tick, for `dump`.
    pub expiry: std::sync::Mutex<Vec<(i64, Vec<i64>)>>,
    /// Local sessions the same way (`None`: no local sessions on this server).
    pub local_expiry: std::sync::Mutex<Option<ExpirySets>>,
}

/// Session ids by expiry time (ms), in time order.
pub type ExpirySets = Vec<(i64, Vec<i64>)>;

impl SequencerStats {
    pub fn expiry(&self) -> Vec<(i64, Vec<i64>)> {
        self.expiry.lock().expect("expiry poisoned").clone()
    }

    pub fn local_expiry(&self) -> Option<ExpirySets> {
        self.local_expiry
            .lock()
            .expect("local expiry poisoned")
            .clone()
    }
}

/// What the loops publish, unasked, for `/metrics` (see `http.rs`): plain relaxed
/// stores on each loop pass (a few per pass, no allocation, no lock), so that a scrape
/// renders on the HTTP thread and never has to wake or message a loop.
#[derive(Debug, Default)]
pub struct Published {
    /// The first shard's view of the tree: `zk_znode_count` (ZooKeeper's count, see
    /// `DataTree::node_count`), ephemerals, approximate data size and global sessions,
    /// as of its last loop pass.
    pub node_count: AtomicI64,
    pub ephemerals: AtomicI64,
    pub data_size: AtomicI64,
    pub sessions: AtomicI64,
    /// The zxid of that view.
    pub zxid: AtomicI64,
}

/// A leader's view of one learner's link, for the AdminServer's `observers` (the keys
/// of ZooKeeper's `LearnerHandler.getLearnerHandlerInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnerInfo {
    pub remote: Option<std::net::SocketAddr>,
    pub sid: u64,
    /// When the link was made, wall clock ms.
    pub established_ms: i64,
    /// Frames not yet handed to the socket, and the bytes queued (those frames' and
    /// the socket's unsent output).
    pub queued_packets: usize,
    pub queued_bytes: usize,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub requests: u64,
    pub last_zxid: i64,
}

/// One shard's per-namespace byte summaries, as of its last tick.
pub type NamespaceBytes = Vec<(String, [super::load::ByteSummary; 2])>;

/// What one shard last published, and for which request (`gen`).
#[derive(Debug, Default, Clone)]
pub struct ShardPicture {
    pub gen: u64,
    pub conns: Vec<ConnLine>,
    pub watches: WatchSummary,
    /// The shard's load sketches (`None`: attribution is off).
    pub load: Option<super::load::Load>,
}

pub struct ServerState {
    pub settings: Settings,
    pub started: Instant,
    pub seq: Arc<SequencerStats>,
    packets_received: AtomicU64,
    packets_sent: AtomicU64,
    connections: AtomicU64,
    auth_failed: AtomicU64,
    lat_min_us: AtomicU64,
    lat_max_us: AtomicU64,
    lat_sum_us: AtomicU64,
    lat_count: AtomicU64,
    shards: Mutex<Vec<ShardPicture>>,
    /// Connections per client address, across shards (maxClientCnxns).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    picture_gen: AtomicU64,
    inboxes: std::sync::OnceLock<Vec<Arc<super::mailbox::Mailbox<super::shard::ToShard>>>>,
    /// The server's role for the four-letter words: one of the `MODE_*` values. The
    /// replication loop writes it; shards read it when a 4lw asks.
    mode: std::sync::atomic::AtomicU8,
    /// The leader's server id (this server's own while it leads), -1 while there is
    /// none: the AdminServer's `leader` command. The replication loop writes it.
    leader_id: std::sync::atomic::AtomicI64,
    /// The host of the leader's quorum address ("" while there is none).
    leader_ip: Mutex<String>,
    /// While leading an established epoch: its learners and since when it leads (the
    /// leader-only `mntr` keys). The replication loop writes it.
    leading: Mutex<Option<(crate::zab::peer::LearnerCounts, Instant)>>,
    /// The core's last health view (`None`: standalone). The replication loop writes it.
    health: Mutex<Option<crate::sequencer::Health>>,
    /// The config in force as `/zookeeper/config` holds it (`conf`'s membership), in an
    /// ensemble; the replication loop writes it at start and at each reconfig.
    membership: Mutex<String>,
    /// Hands a leadership command to the core loop (set once the loop runs).
    leadership: std::sync::OnceLock<LeadershipHook>,
    /// A drain is shedding this server's clients (readiness says not ready meanwhile).
    pub draining: std::sync::atomic::AtomicBool,
    /// Replies handed to the bulk-reply thread (`server::bulk`): `zk_rk_bulk_replies`.
    pub bulk_replies: AtomicU64,
    /// Each shard's requests outstanding (read, queued or in flight, not answered),
    /// as it last published them (once per loop pass).
    outstanding: Vec<crossbeam_utils::CachePadded<AtomicI64>>,
    /// Each shard's watch count, as it last published it (once per loop pass).
    watch_counts: Vec<crossbeam_utils::CachePadded<AtomicI64>>,
    /// The first shard's tree numbers (once per loop pass).
    published: crossbeam_utils::CachePadded<Published>,
    /// Each shard's namespace byte summaries, swapped in on its tick (`try_lock`: a
    /// shard never waits for a scrape; if one holds the lock, the next tick publishes).
    namespaces: Vec<Mutex<Arc<NamespaceBytes>>>,
    /// The leader's synced observers' links (the core loop writes it each tick while
    /// leading with observers).
    observers: Mutex<Vec<LearnerInfo>>,
    /// `observer_connection_stat_reset` asked for the observers' link counts to be
    /// reset (the core loop does it on its next tick).
    observer_reset: std::sync::atomic::AtomicBool,
    /// The connection token bucket, and a random state for its BLUE drops.
    throttle: Mutex<(crate::throttle::ConnThrottle, u64)>,
    /// Bytes held by large requests being served (largeRequestMaxBytes).
    large_bytes: AtomicI64,
}

/// How a 4lw, the HTTP endpoint or a signal reaches the core loop.
pub type LeadershipHook = Box<dyn Fn(crate::sequencer::LeadershipCmd) + Send + Sync>;

/// `ServerState::mode` values.
pub const MODE_STANDALONE: u8 = 0;
/// In an election or syncing with a leader: not serving (ZooKeeper answers `srvr` with
/// "not currently serving requests" then).
pub const MODE_LOOKING: u8 = 1;
pub const MODE_LEADER: u8 = 2;
pub const MODE_FOLLOWER: u8 = 3;
pub const MODE_OBSERVER: u8 = 4;
/// Cut off from the quorum, serving read-only sessions (`readonlymode.enabled`).
pub const MODE_READ_ONLY: u8 = 5;

impl ServerState {
    pub fn new(settings: Settings, shards: usize, seq: Arc<SequencerStats>) -> Self {
        let settings_throttle = settings.conn_throttle.clone();
        ServerState {
            settings,
            started: Instant::now(),
            seq,
            packets_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            auth_failed: AtomicU64::new(0),
            lat_min_us: AtomicU64::new(u64::MAX),
            lat_max_us: AtomicU64::new(0),
            lat_sum_us: AtomicU64::new(0),
            lat_count: AtomicU64::new(0),
            shards: Mutex::new(vec![ShardPicture::default(); shards]),
            per_ip: Mutex::new(HashMap::new()),
            picture_gen: AtomicU64::new(0),
            inboxes: std::sync::OnceLock::new(),
            mode: std::sync::atomic::AtomicU8::new(MODE_STANDALONE),
            leader_id: std::sync::atomic::AtomicI64::new(-1),
            leader_ip: Mutex::new(String::new()),
            leading: Mutex::new(None),
            health: Mutex::new(None),
            membership: Mutex::new(String::new()),
            leadership: std::sync::OnceLock::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            bulk_replies: AtomicU64::new(0),
            outstanding: (0..shards)
                .map(|_| crossbeam_utils::CachePadded::new(AtomicI64::new(0)))
                .collect(),
            watch_counts: (0..shards)
                .map(|_| crossbeam_utils::CachePadded::new(AtomicI64::new(0)))
                .collect(),
            published: Default::default(),
            observers: Mutex::new(Vec::new()),
            observer_reset: std::sync::atomic::AtomicBool::new(false),
            namespaces: (0..shards).map(|_| Mutex::default()).collect(),
            throttle: Mutex::new((
                crate::throttle::ConnThrottle::new(settings_throttle, 0),
                0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64,
            )),
            large_bytes: AtomicI64::new(0),
        }
    }

    /// Records the config in force (see `membership`).
    pub fn set_membership(&self, text: String) {
        *self.membership.lock().expect("membership poisoned") = text;
    }

    /// The config in force, empty standalone.
    pub fn membership(&self) -> String {
        self.membership.lock().expect("membership poisoned").clone()
    }

    /// Records the leader's synced observers.
    pub fn set_observers(&self, v: Vec<LearnerInfo>) {
        *self.observers.lock().expect("observers poisoned") = v;
    }

    /// Asks the core loop to reset the observers' link counts on its next tick.
    pub fn request_observer_reset(&self) {
        self.observer_reset.store(true, Ordering::Release);
    }

    /// Whether an observer reset was asked for since the last call.
    pub fn take_observer_reset(&self) -> bool {
        self.observer_reset.swap(false, Ordering::AcqRel)
    }

    /// Whether any observer is recorded.
    pub fn has_observers(&self) -> bool {
        !self
            .observers
            .lock()
            .expect("observers poisoned")
            .is_empty()
    }

    /// The leader's synced observers, as the core loop last recorded them.
    pub fn observers(&self) -> Vec<LearnerInfo> {
        self.observers.lock().expect("observers poisoned").clone()
    }

    /// Records the core's health view.
    pub fn set_health(&self, h: crate::sequencer::Health) {
        *self.health.lock().expect("health poisoned") = Some(h);
    }

    /// The core's last health view; `None` standalone.
    pub fn health(&self) -> Option<crate::sequencer::Health> {
        self.health.lock().expect("health poisoned").clone()
    }

    /// Installs the core loop's leadership hook (once).
    pub fn set_leadership_hook(&self, hook: LeadershipHook) {
        let _ = self.leadership.set(hook);
    }

    /// Hands `cmd` to the core loop; false when there is none (standalone).
    pub fn leadership(&self, cmd: crate::sequencer::LeadershipCmd) -> bool {
        match self.leadership.get() {
            Some(hook) => {
                hook(cmd);
                true
            }
            None => false,
        }
    }

    /// Publishes shard `shard`'s outstanding count.
    pub fn publish_outstanding(&self, shard: usize, n: i64) {
        self.outstanding[shard].store(n, Ordering::Relaxed);
    }

    /// Publishes shard `shard`'s watch count.
    pub fn publish_watches(&self, shard: usize, n: usize) {
        self.watch_counts[shard].store(n as i64, Ordering::Relaxed);
    }

    /// The published state's numbers: `counts` at `zxid`.
    pub fn publish_counts(&self, counts: &crate::tree::Counts, zxid: i64) {
        let p = &self.published;
        p.node_count.store(counts.nodes as i64, Ordering::Relaxed);
        p.ephemerals
            .store(counts.ephemerals as i64, Ordering::Relaxed);
        p.data_size.store(counts.data_size, Ordering::Relaxed);
        p.sessions.store(counts.sessions as i64, Ordering::Relaxed);
        p.zxid.store(zxid, Ordering::Relaxed);
    }

    /// What the first shard last published of its view.
    pub fn published(&self) -> &Published {
        &self.published
    }

    /// Every shard's watches, as last published.
    pub fn published_watches(&self) -> i64 {
        self.watch_counts
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    /// Every shard's requests outstanding, as last published.
    pub fn published_outstanding(&self) -> i64 {
        self.outstanding
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    /// Swaps in shard `shard`'s namespace summaries, unless a reader holds them right
    /// now (then the shard's next tick does it).
    pub fn publish_namespaces(&self, shard: usize, ns: &NamespaceBytes) {
        if let Ok(mut g) = self.namespaces[shard].try_lock() {
            if g.as_slice() != ns.as_slice() {
                *g = Arc::new(ns.clone());
            }
        }
    }

    /// Every shard's namespace summaries merged, as of their last ticks; `None` when
    /// load attribution is off.
    pub fn published_namespaces(
        &self,
    ) -> Option<Vec<(String, super::load::ByteSummary, super::load::ByteSummary)>> {
        if !self.settings.ops.load_attribution {
            return None;
        }
        let all: Vec<Arc<NamespaceBytes>> = self
            .namespaces
            .iter()
            .map(|m| m.lock().expect("namespaces poisoned").clone())
            .collect();
        Some(super::load::merge_namespaces(
            all.iter().map(|a| a.as_slice()),
        ))
    }

    /// The outstanding counts other shards published.
    pub fn others_outstanding(&self, shard: usize) -> i64 {
        self.outstanding
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != shard)
            .map(|(_, a)| a.load(Ordering::Relaxed))
            .sum()
    }

    /// The connection token bucket's verdict on a connect request (`resuming`: it
    /// names a session). Always true when the throttle is off.
    pub fn connect_allowed(&self, resuming: bool) -> bool {
        if self.settings.conn_throttle.max_tokens == 0 {
            return true;
        }
        let mut g = self.throttle.lock().expect("throttle poisoned");
        let (t, rng) = &mut *g;
        // xorshift64*: the drop decision needs no better randomness.
        *rng ^= *rng >> 12;
        *rng ^= *rng << 25;
        *rng ^= *rng >> 27;
        let r = (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        let now = self.started.elapsed().as_millis() as i64;
        let need = t.cost(resuming);
        t.check(need, now, r)
    }

    /// Takes `len` bytes of the large-request budget; false (nothing taken) if that
    /// would exceed `largeRequestMaxBytes`.
    pub fn take_large(&self, len: i64) -> bool {
        let max = self.settings.large_requests.max_bytes;
        let now = self.large_bytes.fetch_add(len, Ordering::Relaxed) + len;
        if now > max {
            self.large_bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives back what `take_large` took.
    pub fn release_large(&self, len: i64) {
        self.large_bytes.fetch_sub(len, Ordering::Relaxed);
    }

    /// Sets the role reported by `srvr`, `stat` and `mntr` (a `MODE_*` value).
    /// Records the learner counts of an established leader (`None`: not leading). The
    /// leader's uptime counts from the first `Some` after a `None`.
    pub fn set_leading(&self, counts: Option<crate::zab::peer::LearnerCounts>) {
        let mut g = self.leading.lock().expect("leading poisoned");
        *g = match (counts, g.take()) {
            (None, _) => None,
            (Some(c), Some((_, since))) => Some((c, since)),
            (Some(c), None) => Some((c, Instant::now())),
        };
    }

    /// The learner counts and time leading, while this server leads.
    pub fn leading(&self) -> Option<(crate::zab::peer::LearnerCounts, std::time::Duration)> {
        let g = self.leading.lock().expect("leading poisoned");
        g.map(|(c, since)| (c, since.elapsed()))
    }

    pub fn set_mode(&self, mode: u8) {
        assert!(mode <= MODE_READ_ONLY, "unknown mode {mode}");
        self.mode.store(mode, Ordering::Release);
    }

    /// Records the leader: its id and the host of its quorum address (`None`: no
    /// leader, as while looking or read-only).
    pub fn set_leader(&self, leader: Option<(u64, String)>) {
        let (id, ip) = leader.map_or((-1, String::new()), |(i, ip)| (i as i64, ip));
        *self.leader_ip.lock().expect("leader ip poisoned") = ip;
        self.leader_id.store(id, Ordering::Release);
    }

    /// The leader's server id, -1 when there is none (ZooKeeper's `getLeaderId`), and
    /// its quorum address's host ("" then).
    pub fn leader(&self) -> (i64, String) {
        let ip = self.leader_ip.lock().expect("leader ip poisoned").clone();
        (self.leader_id.load(Ordering::Acquire), ip)
    }

    /// The role to report, or `None` while looking (not serving).
    pub fn mode(&self) -> Option<crate::fourlw::Mode> {
        use crate::fourlw::Mode;
        match self.mode.load(Ordering::Acquire) {
            MODE_STANDALONE => Some(Mode::Standalone),
            MODE_LEADER => Some(Mode::Leader),
            MODE_FOLLOWER => Some(Mode::Follower),
            MODE_READ_ONLY => Some(Mode::ReadOnly),
            MODE_OBSERVER => Some(Mode::Observer),
            _ => None,
        }
    }

    pub fn packet_received(&self) {
        self.packets_received.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a new connection from `ip`; false when `ip` already has `max` (0: no
    /// limit), as ZooKeeper's maxClientCnxns.
    pub fn admit(&self, ip: IpAddr, max: usize) -> Result<(), Refusal> {
        let mut m = self.per_ip.lock().expect("per-ip counts poisoned");
        // Checked under the lock that every count change holds: one cap for the whole
        // server, however the kernel spreads accepts between loops.
        let total = self.connections.load(Ordering::Relaxed) as usize;
        if self.settings.max_cnxns > 0 && total >= self.settings.max_cnxns {
            return Err(Refusal::MaxCnxns(self.settings.max_cnxns));
        }
        let n = m.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return Err(Refusal::PerIp(max));
        }
        *n += 1;
        self.connections.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Uncounts a connection `admit` counted.
    pub fn release(&self, ip: IpAddr) {
        let mut m = self.per_ip.lock().expect("per-ip counts poisoned");
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// A reply of `n` bytes was queued (ZooKeeper's response size and bytes keys).
    pub fn responded(&self, n: usize) {
        let zk = &self.seq.metrics.zk;
        zk.response_bytes.add(n as u64);
        zk.response_size.record(n as u64);
    }

    /// A committed change fired `n` watches of this shard.
    pub fn watches_triggered(&self, ev: crate::proto::EventType, n: usize) {
        use crate::proto::EventType;
        if n == 0 {
            return;
        }
        let zk = &self.seq.metrics.zk;
        let s = match ev {
            EventType::NodeCreated => &zk.node_created_watches,
            EventType::NodeDeleted => &zk.node_deleted_watches,
            EventType::NodeDataChanged => &zk.node_changed_watches,
            EventType::NodeChildrenChanged => &zk.node_children_watches,
            _ => return,
        };
        s.record(n as u64);
    }

    pub fn auth_failed(&self) {
        self.auth_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// One request answered, at `now` (read once by the caller for many answers).
    pub fn request_done_at(&self, received: Instant, now: Instant) {
        let us = now.saturating_duration_since(received).as_micros() as u64;
        self.packets_sent.fetch_add(1, Ordering::Relaxed);
        self.lat_min_us.fetch_min(us, Ordering::Relaxed);
        self.lat_max_us.fetch_max(us, Ordering::Relaxed);
        self.lat_sum_us.fetch_add(us, Ordering::Relaxed);
        self.lat_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn publish_shard(
        &self,
        shard: usize,
        gen: u64,
        conns: Vec<ConnLine>,
        watches: WatchSummary,
        load: Option<super::load::Load>,
    ) {
        let mut s = self.shards.lock().expect("shard pictures poisoned");
        s[shard] = ShardPicture {
            gen,
            conns,
            watches,
            load,
        };
    }

    /// The shards' load sketches merged, as last published; `None` when load
    /// attribution is off.
    pub fn load(&self) -> Option<super::load::Merged> {
        let pictures = self.pictures();
        let loads: Vec<&super::load::Load> =
            pictures.iter().filter_map(|p| p.load.as_ref()).collect();
        if !self.settings.ops.load_attribution {
            return None;
        }
        Some(super::load::merged(&loads))
    }

    /// `load` as JSON (null when attribution is off).
    pub fn load_json(&self) -> super::json::Json {
        self.load().map_or(super::json::Json::Null, |m| m.json())
    }

    /// Asks every shard but `except` to reset the `cons` statistics of its TLS
    /// (`secure`) or plain connections (`crst`, `connection_stat_reset`).
    pub fn reset_conn_stats(&self, except: Option<usize>, secure: bool) {
        for (i, inbox) in self.shard_inboxes().iter().enumerate() {
            if Some(i) != except {
                inbox.push_unbounded(super::shard::ToShard::ResetConnStats { secure });
            }
        }
    }

    /// A fresh generation for a four-letter word that gathers every shard's picture.
    pub fn next_picture_gen(&self) -> u64 {
        self.picture_gen.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether every shard has published for `gen` (or later).
    pub fn pictures_ready(&self, gen: u64) -> bool {
        let s = self.shards.lock().expect("shard pictures poisoned");
        s.iter().all(|p| p.gen >= gen)
    }

    /// Every shard's inbox, to ask for pictures.
    pub fn shard_inboxes(&self) -> &[Arc<super::mailbox::Mailbox<super::shard::ToShard>>] {
        self.inboxes.get().map_or(&[], |v| v.as_slice())
    }

    /// Runs `f` on the first shard's loop over its view once every shard published
    /// its picture, and returns its answer; `None` when no answer came in `timeout`
    /// (the server is stopping). For the HTTP endpoints, off every hot path.
    pub fn inspect<T: Send + 'static>(
        &self,
        timeout: std::time::Duration,
        f: impl FnOnce(&ServerState, &crate::tree::DataTree, i64) -> T + Send + 'static,
    ) -> Option<T> {
        let inbox = self.shard_inboxes().first()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        inbox.push_unbounded(super::shard::ToShard::Inspect(super::shard::Inspect(
            Box::new(move |st, view, zxid| {
                let _ = tx.send(f(st, view, zxid));
            }),
        )));
        rx.recv_timeout(timeout).ok()
    }

    pub fn set_shard_inboxes(&self, v: Vec<Arc<super::mailbox::Mailbox<super::shard::ToShard>>>) {
        let _ = self.inboxes.set(v);
    }

    pub fn pictures(&self) -> Vec<ShardPicture> {
        self.shards.lock().expect("shard pictures poisoned").clone()
    }

    pub fn packets_received(&self) -> u64 {
        self.packets_received.load(Ordering::Relaxed)
    }

    pub fn packets_sent(&self) -> u64 {
        self.packets_sent.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn auth_failures(&self) -> u64 {
        self.auth_failed.load(Ordering::Relaxed)
    }

    /// (min, avg, max) request latency in milliseconds, as `srvr` prints it.
    pub fn latency_ms(&self) -> (f64, f64, f64) {
        let n = self.lat_count.load(Ordering::Relaxed);
        if n == 0 {
            return (0.0, 0.0, 0.0);
        }
        let min = self.lat_min_us.load(Ordering::Relaxed) as f64 / 1000.0;
        let max = self.lat_max_us.load(Ordering::Relaxed) as f64 / 1000.0;
        let avg = self.lat_sum_us.load(Ordering::Relaxed) as f64 / 1000.0 / n as f64;
        (min, avg, max)
    }

    pub fn reset_stats(&self) {
        self.packets_received.store(0, Ordering::Relaxed);
        self.packets_sent.store(0, Ordering::Relaxed);
        self.lat_min_us.store(u64::MAX, Ordering::Relaxed);
        self.lat_max_us.store(0, Ordering::Relaxed);
        self.lat_sum_us.store(0, Ordering::Relaxed);
        self.lat_count.store(0, Ordering::Relaxed);
    }
}
