//! Four-letter words: the text ZooKeeper 3.8 answers on the client port, byte for byte.
//!
//! Pure formatters. The server gathers plain input structs ([`ServerSnapshot`],
//! [`ConfInfo`], [`DumpInfo`], ...) from its shards and calls the formatter for the
//! command; this module never touches a connection, reads the clock or the environment.
//! Times are given in milliseconds (wall clock where ZooKeeper prints a date).
//!
//! The formats follow ZooKeeper 3.8's `command/*.java`, `ServerStats.toString`,
//! `ServerCnxn.dumpConnectionInfo`, `ZooKeeperServer.dumpConf`, `ExpiryQueue.dump`,
//! `DataTree.dumpEphemerals`, `WatchManager.dumpWatches` and `MonitorCommand`, and are
//! checked against outputs captured from Apache ZooKeeper 3.8 in `tests/data/4lw/`.
//!
//! Whitelisting: the server checks `Config::four_letter_whitelist` and answers
//! [`refusal`] for a command that is not enabled.

use std::fmt::Write as _;

/// ZooKeeper release whose client-visible formats we follow; version strings start with
/// it so that tools parsing the version (kazoo's `server_version` reads the leading
/// digits of `zookeeper.version` in `envi`) see a 3.8 server.
pub const ZK_COMPAT_VERSION: &str = "3.8.0";

/// Our version string, in ZooKeeper's `major.minor.patch-qualifier` shape.
pub fn full_version() -> String {
    format!(
        "{ZK_COMPAT_VERSION}-ringkeeper-{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The reply of a command other than ruok/envi/gtmk/isro while the server is not serving.
pub const ZK_NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// ZooKeeper's initial trace mask (`ZooTrace`): 0x132.
pub const DEFAULT_TRACE_MASK: i64 = 306;

/// A four-letter word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Conf,
    Cons,
    Crst,
    Dirs,
    Dump,
    Envi,
    Gtmk,
    Ruok,
    Stmk,
    Srst,
    Srvr,
    Stat,
    Wchc,
    Wchp,
    Wchs,
    Mntr,
    Isro,
    Hash,
    /// RingKeeper's: load attribution (who drives the load; see `server::load`).
    Load,
    /// RingKeeper's quorum-aware health (`hlth`): serving with a quorum, synced, safe to
    /// stop. Not a ZooKeeper word (ZooKeeper has none that knows the quorum).
    Hlth,
    /// Request leadership (ClickHouse Keeper's `rqld`): this server asks to lead.
    Rqld,
    /// Yield leadership (ClickHouse Keeper's `ydld`): the leader hands off.
    Ydld,
    /// The telnet interrupt sequence 0xfff4fffd: ZooKeeper closes the connection.
    TelnetClose,
}

const COMMANDS: [(Command, &str); 23] = [
    (Command::Conf, "conf"),
    (Command::Cons, "cons"),
    (Command::Crst, "crst"),
    (Command::Dirs, "dirs"),
    (Command::Dump, "dump"),
    (Command::Envi, "envi"),
    (Command::Gtmk, "gtmk"),
    (Command::Ruok, "ruok"),
    (Command::Stmk, "stmk"),
    (Command::Srst, "srst"),
    (Command::Srvr, "srvr"),
    (Command::Stat, "stat"),
    (Command::Wchc, "wchc"),
    (Command::Wchp, "wchp"),
    (Command::Wchs, "wchs"),
    (Command::Mntr, "mntr"),
    (Command::Isro, "isro"),
    (Command::Hash, "hash"),
    (Command::Load, "load"),
    (Command::Hlth, "hlth"),
    (Command::Rqld, "rqld"),
    (Command::Ydld, "ydld"),
    (Command::TelnetClose, "telnet close"),
];

const TELNET_CLOSE: u32 = 0xfff4_fffd;

impl Command {
    /// The command a connection's first four bytes name, read as the big-endian frame
    /// length would be (`FourLetterCommands.isKnown`); `None` for a real length.
    pub fn from_first_int(word: u32) -> Option<Command> {
        if word == TELNET_CLOSE {
            return Some(Command::TelnetClose);
        }
        Command::from_bytes(&word.to_be_bytes())
    }

    /// The command spelled by four bytes.
    pub fn from_bytes(bytes: &[u8; 4]) -> Option<Command> {
        COMMANDS
            .iter()
            .find(|(_, name)| name.as_bytes() == bytes)
            .map(|(c, _)| *c)
    }

    /// The name ZooKeeper uses (and the whitelist holds).
    pub fn as_str(self) -> &'static str {
        COMMANDS
            .iter()
            .find(|(c, _)| *c == self)
            .map(|(_, n)| *n)
            .unwrap()
    }

    /// `stmk` is followed by an 8-byte big-endian mask the server must read first.
    pub fn takes_argument(self) -> bool {
        self == Command::Stmk
    }

    /// Whether the reply needs a serving server (the others answer regardless).
    pub fn needs_serving(self) -> bool {
        !matches!(
            self,
            Command::Ruok
                | Command::Envi
                | Command::Gtmk
                | Command::Stmk
                | Command::Isro
                | Command::Hlth
                | Command::Rqld
                | Command::Ydld
                | Command::TelnetClose
        )
    }
}

/// The answer to a command that is not in `4lw.commands.whitelist`.
pub fn refusal(cmd: Command) -> String {
    format!(
        "{} is not executed because it is not in the whitelist.\n",
        cmd.as_str()
    )
}

/// The answer of a command that needs a serving server while it is not serving.
pub fn not_serving(cmd: Command) -> String {
    match cmd {
        // DigestCommand prints without a newline.
        Command::Hash => ZK_NOT_SERVING.to_string(),
        Command::Isro => "null".to_string(),
        _ => format!("{ZK_NOT_SERVING}\n"),
    }
}

/// The server's role, as `ServerStats.getServerState` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    Leader,
    Follower,
    Observer,
    ReadOnly,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Leader => "leader",
            Mode::Follower => "follower",
            Mode::Observer => "observer",
            Mode::ReadOnly => "read-only",
        }
    }
}

/// Request latency over the server's life or since `srst`, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub min_ms: u64,
    /// Average; printed rounded half-up to 4 decimals as `AvgMinMaxCounter.getAvg`.
    pub avg_ms: f64,
    pub max_ms: u64,
}

/// The session part of a connection, when it has one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionConnInfo {
    pub session_id: i64,
    /// ZooKeeper's short op name of the last request: GETD, SETD, CREA, PING, ...
    pub last_op: String,
    /// When the connection was established, wall clock ms.
    pub established_ms: i64,
    pub timeout_ms: u32,
    /// -1 when no request was seen (then `lcxid` is not printed).
    pub last_cxid: i64,
    pub last_zxid: i64,
    /// When the last reply left, ms (ZooKeeper prints its elapsed-time clock).
    pub last_response_ms: i64,
    pub last_latency_ms: u64,
    pub min_latency_ms: u64,
    pub avg_latency_ms: u64,
    pub max_latency_ms: u64,
}

/// One client connection, as `cons` and `stat` show it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnInfo {
    /// The peer as Java prints an `InetSocketAddress`; see [`java_socket_addr`].
    pub remote: String,
    /// NIO interest ops: 1 = read, 4 = write, 5 = both, 0 = throttled.
    pub interest_ops: u32,
    pub queued: u64,
    pub received: u64,
    pub sent: u64,
    pub session: Option<SessionConnInfo>,
}

/// `/ip:port` as Java's `InetSocketAddress.toString` prints a resolved literal address.
pub fn java_socket_addr(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("/[{ip}]:{port}")
    } else {
        format!("/{ip}:{port}")
    }
}

/// What `srvr` and `stat` print.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSnapshot {
    pub version: String,
    pub mode: Mode,
    pub latency: Latency,
    pub packets_received: u64,
    pub packets_sent: u64,
    /// Client connections alive (ServerStats' `getNumAliveClientConnections`).
    pub alive_connections: u64,
    pub outstanding_requests: u64,
    /// The last processed zxid.
    pub zxid: i64,
    pub node_count: u64,
    /// The connections for `stat`'s `Clients:` section.
    pub connections: Vec<ConnInfo>,
    /// Leader only: proposal sizes last/min/max in bytes.
    pub proposal_sizes: Option<(i64, i64, i64)>,
}

impl ServerSnapshot {
    /// A standalone server with nothing happened yet.
    pub fn new(mode: Mode) -> ServerSnapshot {
        ServerSnapshot {
            version: full_version(),
            mode,
            latency: Latency::default(),
            packets_received: 0,
            packets_sent: 0,
            alive_connections: 0,
            outstanding_requests: 0,
            zxid: 0,
            node_count: 0,
            connections: Vec::new(),
            proposal_sizes: None,
        }
    }
}

/// `ruok`.
pub fn ruok() -> String {
    "imok".to_string()
}

/// `isro`.
pub fn isro(mode: Mode) -> String {
    if mode == Mode::ReadOnly { "ro" } else { "rw" }.to_string()
}

/// `crst`.
pub fn crst() -> String {
    "Connection stats reset.\n".to_string()
}

/// `srst`.
pub fn srst() -> String {
    "Server stats reset.\n".to_string()
}

/// `gtmk`, and `stmk` with the mask just set.
pub fn trace_mask(mask: i64) -> String {
    mask.to_string()
}

/// `hash`: one `zxid-hex: digest` line per recorded digest (none until we compute them).
pub fn hash(digests: &[(i64, i64)]) -> String {
    let mut out = String::new();
    for (zxid, digest) in digests {
        let _ = writeln!(out, "{:x}: {digest}", *zxid as u64);
    }
    out
}

fn write_conn(out: &mut String, c: &ConnInfo, brief: bool) {
    out.push(' ');
    out.push_str(&c.remote);
    out.push('[');
    if c.interest_ops == 0 {
        out.push('0');
    } else {
        let _ = write!(out, "{:x}", c.interest_ops);
    }
    let _ = write!(
        out,
        "](queued={},recved={},sent={}",
        c.queued, c.received, c.sent
    );
    if !brief {
        if let Some(s) = c.session.as_ref().filter(|s| s.session_id != 0) {
            let _ = write!(
                out,
                ",sid=0x{:x},lop={},est={},to={}",
                s.session_id as u64, s.last_op, s.established_ms, s.timeout_ms
            );
            if s.last_cxid >= 0 {
                let _ = write!(out, ",lcxid=0x{:x}", s.last_cxid);
            }
            let _ = write!(
                out,
                ",lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={}",
                s.last_zxid as u64,
                s.last_response_ms,
                s.last_latency_ms,
                s.min_latency_ms,
                s.avg_latency_ms,
                s.max_latency_ms
            );
        }
    }
    out.push(')');
}

fn write_stats(out: &mut String, s: &ServerSnapshot) {
    let _ = writeln!(
        out,
        "Latency min/avg/max: {}/{}/{}",
        s.latency.min_ms,
        java_double(round4(s.latency.avg_ms)),
        s.latency.max_ms
    );
    let _ = writeln!(out, "Received: {}", s.packets_received);
    let _ = writeln!(out, "Sent: {}", s.packets_sent);
    let _ = writeln!(out, "Connections: {}", s.alive_connections);
    let _ = writeln!(out, "Outstanding: {}", s.outstanding_requests);
    let _ = writeln!(out, "Zxid: 0x{:x}", s.zxid as u64);
    let _ = writeln!(out, "Mode: {}", s.mode.as_str());
    let _ = writeln!(out, "Node count: {}", s.node_count);
    if s.mode == Mode::Leader {
        if let Some((last, min, max)) = s.proposal_sizes {
            let _ = writeln!(out, "Proposal sizes last/min/max: {last}/{min}/{max}");
        }
    }
}

fn write_version(out: &mut String, s: &ServerSnapshot) {
    let _ = writeln!(out, "Zookeeper version: {}", s.version);
    if s.mode == Mode::ReadOnly {
        out.push_str("READ-ONLY mode; serving only read-only clients\n");
    }
}

/// `srvr` (what `zkServer.sh status` greps for `Mode`).
pub fn srvr(s: &ServerSnapshot) -> String {
    let mut out = String::new();
    write_version(&mut out, s);
    write_stats(&mut out, s);
    out
}

/// `stat`: `srvr` with a `Clients:` section of brief connection lines.
pub fn stat(s: &ServerSnapshot) -> String {
    let mut out = String::new();
    write_version(&mut out, s);
    out.push_str("Clients:\n");
    for c in &s.connections {
        write_conn(&mut out, c, true);
        out.push('\n');
    }
    out.push('\n');
    write_stats(&mut out, s);
    out
}

/// `cons`: one full line per connection, then an empty line.
pub fn cons(connections: &[ConnInfo]) -> String {
    let mut out = String::new();
    for c in connections {
        write_conn(&mut out, c, false);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// What `conf` prints (standalone `ZooKeeperServer.dumpConf`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfInfo {
    pub client_port: u16,
    /// -1 when there is no TLS port.
    pub secure_client_port: i32,
    /// The snapshot directory as an absolute path (ZooKeeper prints `dataDir/version-2`).
    pub data_dir: String,
    pub data_dir_size: u64,
    pub data_log_dir: String,
    pub data_log_size: u64,
    pub tick_time_ms: u32,
    pub max_client_cnxns: u32,
    pub min_session_timeout_ms: u32,
    pub max_session_timeout_ms: u32,
    /// -1 = the system default.
    pub client_port_listen_backlog: i32,
    /// 0 in standalone without myid.
    pub server_id: u64,
    /// In an ensemble, what `QuorumZooKeeperServer.dumpConf` adds.
    pub quorum: Option<QuorumConf>,
}

/// The ensemble part of `conf`. The membership (the config in force, as
/// `/zookeeper/config` holds it) changes with reconfigs, so it is passed when printing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumConf {
    pub init_limit: u32,
    pub sync_limit: u32,
    pub election_port: u16,
    pub quorum_port: u16,
}

/// `conf`; in an ensemble followed by the quorum settings and `membership: ` with the
/// config in force (`membership`), as ZooKeeper's quorum servers print them. `peerType`
/// (0 participant, 1 observer) is this server's role in that config.
pub fn conf_with_membership(c: &ConfInfo, membership: &str) -> String {
    let mut out = conf(c);
    if let Some(q) = &c.quorum {
        let observer = membership
            .lines()
            .any(|l| l.starts_with(&format!("server.{}=", c.server_id)) && l.contains(":observer"));
        let _ = writeln!(out, "initLimit={}", q.init_limit);
        let _ = writeln!(out, "syncLimit={}", q.sync_limit);
        let _ = writeln!(out, "electionAlg=3");
        let _ = writeln!(out, "electionPort={}", q.election_port);
        let _ = writeln!(out, "quorumPort={}", q.quorum_port);
        let _ = writeln!(out, "peerType={}", u8::from(observer));
        let _ = writeln!(out, "membership: ");
        out.push_str(membership);
    }
    out
}

/// `conf`.
pub fn conf(c: &ConfInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "clientPort={}", c.client_port);
    let _ = writeln!(out, "secureClientPort={}", c.secure_client_port);
    let _ = writeln!(out, "dataDir={}", c.data_dir);
    let _ = writeln!(out, "dataDirSize={}", c.data_dir_size);
    let _ = writeln!(out, "dataLogDir={}", c.data_log_dir);
    let _ = writeln!(out, "dataLogSize={}", c.data_log_size);
    let _ = writeln!(out, "tickTime={}", c.tick_time_ms);
    let _ = writeln!(out, "maxClientCnxns={}", c.max_client_cnxns);
    let _ = writeln!(out, "minSessionTimeout={}", c.min_session_timeout_ms);
    let _ = writeln!(out, "maxSessionTimeout={}", c.max_session_timeout_ms);
    let _ = writeln!(
        out,
        "clientPortListenBacklog={}",
        c.client_port_listen_backlog
    );
    let _ = writeln!(out, "serverId={}", c.server_id);
    out
}

/// `dirs`.
pub fn dirs(data_dir_size: u64, log_dir_size: u64) -> String {
    format!("datadir_size: {data_dir_size}\nlogdir_size: {log_dir_size}\n")
}

/// What `envi` prints besides the version. ZooKeeper lists JVM properties; we have no
/// JVM, so the `java.*` lines are printed with Java's own "not available" value `<NA>`,
/// keeping every line tools may look for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvInfo {
    pub version: String,
    pub host_name: String,
    pub os_name: String,
    pub os_arch: String,
    pub os_version: String,
    pub user_name: String,
    pub user_home: String,
    pub user_dir: String,
    pub memory_free_mb: u64,
    pub memory_max_mb: u64,
    pub memory_total_mb: u64,
}

/// `envi`.
pub fn envi(e: &EnvInfo) -> String {
    const NA: &str = "<NA>";
    let lines: [(&str, String); 18] = [
        ("zookeeper.version", e.version.clone()),
        ("host.name", e.host_name.clone()),
        ("java.version", NA.into()),
        ("java.vendor", NA.into()),
        ("java.home", NA.into()),
        ("java.class.path", NA.into()),
        ("java.library.path", NA.into()),
        ("java.io.tmpdir", NA.into()),
        ("java.compiler", NA.into()),
        ("os.name", e.os_name.clone()),
        ("os.arch", e.os_arch.clone()),
        ("os.version", e.os_version.clone()),
        ("user.name", e.user_name.clone()),
        ("user.home", e.user_home.clone()),
        ("user.dir", e.user_dir.clone()),
        ("os.memory.free", format!("{}MB", e.memory_free_mb)),
        ("os.memory.max", format!("{}MB", e.memory_max_mb)),
        ("os.memory.total", format!("{}MB", e.memory_total_mb)),
    ];
    let mut out = String::from("Environment:\n");
    for (k, v) in lines {
        let _ = writeln!(out, "{k}={v}");
    }
    out
}

/// `wchs`: the counts of data watches (ZooKeeper counts its data-watch table only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchSummary {
    /// Sessions with an entry in the watch table (ZooKeeper keeps an entry whose watches
    /// all fired, so this may count sessions with no watch left).
    pub connections: u64,
    pub paths: u64,
    pub total_watches: u64,
}

/// `wchs`.
pub fn wchs(w: &WatchSummary) -> String {
    format!(
        "{} connections watching {} paths\nTotal watches:{}\n",
        w.connections, w.paths, w.total_watches
    )
}

/// `wchc`: by session, the paths it watches.
pub fn wchc(by_session: &[(i64, Vec<String>)]) -> String {
    let mut out = String::new();
    for (session, paths) in by_session {
        let _ = writeln!(out, "0x{:x}", *session as u64);
        for p in paths {
            let _ = writeln!(out, "\t{p}");
        }
    }
    out.push('\n');
    out
}

/// `wchp`: by path, the sessions watching it.
pub fn wchp(by_path: &[(String, Vec<i64>)]) -> String {
    let mut out = String::new();
    for (path, sessions) in by_path {
        let _ = writeln!(out, "{path}");
        for s in sessions {
            let _ = writeln!(out, "\t0x{:x}", *s as u64);
        }
    }
    out.push('\n');
    out
}

/// One bucket of an expiry queue: what expires at one tick boundary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpirySet<T> {
    /// Wall clock ms; printed as a UTC `java.util.Date`.
    pub expire_at_ms: i64,
    pub items: Vec<T>,
}

/// What `dump` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpInfo {
    /// Session ids by expiry time, in increasing time order.
    pub session_sets: Vec<ExpirySet<i64>>,
    /// Local sessions the same way, on a server with `localSessionsEnabled`: printed
    /// first as "Local Session Sets", the others then as "Global Session Sets"
    /// (ZooKeeper's LeaderSessionTracker.dumpSessions).
    pub local_session_sets: Option<Vec<ExpirySet<i64>>>,
    /// On a follower or observer: the global sessions (id, timeout ms), printed as
    /// ZooKeeper's LearnerSessionTracker does ("Global Sessions(N):") instead of
    /// `session_sets` (a learner does not expire global sessions; the leader does).
    pub learner_sessions: Option<Vec<(i64, i32)>>,
    /// Sessions owning ephemeral nodes, with their paths.
    pub ephemerals: Vec<(i64, Vec<String>)>,
    /// Connections by idle-expiry time: (remote as [`java_socket_addr`], session id or 0).
    pub connection_sets: Vec<ExpirySet<(String, i64)>>,
}

fn write_expiry<T>(out: &mut String, sets: &[ExpirySet<T>], item: impl Fn(&T) -> String) {
    let total: usize = sets.iter().map(|s| s.items.len()).sum();
    let _ = writeln!(out, "Sets ({})/({}):", sets.len(), total);
    for set in sets {
        let _ = writeln!(
            out,
            "{} expire at {}:",
            set.items.len(),
            java_date_utc(set.expire_at_ms)
        );
        for i in &set.items {
            let _ = writeln!(out, "\t{}", item(i));
        }
    }
}

/// `dump`.
pub fn dump(d: &DumpInfo) -> String {
    let mut out = String::from("SessionTracker dump:\n");
    let id = |s: &i64| format!("0x{:x}", *s as u64);
    if let Some(local) = &d.local_session_sets {
        out.push_str("Local Session ");
        write_expiry(&mut out, local, id);
    }
    match &d.learner_sessions {
        Some(global) => {
            let _ = writeln!(out, "Global Sessions({}):", global.len());
            for (s, timeout_ms) in global {
                let _ = writeln!(out, "{}\t{timeout_ms}ms", id(s));
            }
        }
        None => {
            if d.local_session_sets.is_some() {
                out.push_str("Global ");
            }
            out.push_str("Session ");
            write_expiry(&mut out, &d.session_sets, id);
        }
    }
    out.push_str("ephemeral nodes dump:\n");
    let _ = writeln!(out, "Sessions with Ephemerals ({}):", d.ephemerals.len());
    for (session, paths) in &d.ephemerals {
        let _ = writeln!(out, "0x{:x}:", *session as u64);
        for p in paths {
            let _ = writeln!(out, "\t{p}");
        }
    }
    out.push_str("Connections dump:\nConnections ");
    write_expiry(&mut out, &d.connection_sets, |(remote, s)| {
        format!("ip: {remote} sessionId: 0x{:x}", *s as u64)
    });
    out
}

/// A value in `mntr`.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    Int(i64),
    Float(f64),
    Text(String),
}

impl MetricValue {
    fn render(&self) -> String {
        match self {
            MetricValue::Int(n) => n.to_string(),
            MetricValue::Float(f) => java_double(*f),
            MetricValue::Text(s) => s.clone(),
        }
    }
}

/// The `mntr` keys (without `zk_`) of a standalone ZooKeeper 3.8, in its order (the
/// order of its metrics registry), as captured in `tests/data/4lw/mntr.txt`. A key whose
/// name starts with `avg_` is a float.
pub const MNTR_GAUGES: &[&str] = &[
    "ephemerals_count",
    "num_alive_connections",
    "avg_latency",
    "outstanding_requests",
    "znode_count",
    "global_sessions",
    "non_mtls_remote_conn_count",
    "last_client_response_size",
    "packets_sent",
    "packets_received",
    "max_client_response_size",
    "connection_drop_probability",
    "watch_count",
    "auth_failed_count",
    "min_latency",
    "max_file_descriptor_count",
    "approximate_data_size",
    "open_file_descriptor_count",
    "local_sessions",
    "uptime",
    "max_latency",
    "outstanding_tls_handshake",
    "min_client_response_size",
    "non_mtls_local_conn_count",
];

/// Counters, after the gauges.
pub const MNTR_COUNTERS: &[&str] = &[
    "proposal_count",
    "watch_bytes",
    "outstanding_changes_removed",
    "throttled_ops",
    "stale_requests_dropped",
    "large_requests_rejected",
    "insecure_admin_count",
    "connection_rejected",
    "cnxn_closed_without_zk_server_running",
    "sessionless_connections_expired",
    "looking_count",
    "dead_watchers_queued",
    "stale_requests",
    "connection_drop_count",
    "learner_proposal_received_count",
    "digest_mismatches_count",
    "dead_watchers_cleared",
    "response_packet_cache_hits",
    "bytes_received_count",
    "add_dead_watcher_stall_time",
    "request_throttle_wait_count",
    "requests_not_forwarded_to_commit_processor",
    "response_packet_cache_misses",
    "ensemble_auth_success",
    "prep_processor_request_queued",
    "learner_commit_received_count",
    "stale_replies",
    "connection_request_count",
    "response_bytes",
    "ensemble_auth_fail",
    "diff_count",
    "response_packet_get_children_cache_misses",
    "connection_revalidate_count",
    "quit_leading_due_to_disloyal_voter",
    "snap_count",
    "unrecoverable_error_count",
    "unsuccessful_handshake",
    "commit_count",
    "stale_sessions_expired",
    "response_packet_get_children_cache_hits",
    "sync_processor_request_queued",
    "outstanding_changes_queued",
    "request_commit_queued",
    "ensemble_auth_skip",
    "skip_learner_request_to_next_processor_count",
    "tls_handshake_exceeded",
    "revalidate_count",
];

/// Counters ZooKeeper 3.9 added (its `snapshot` and `restore` admin commands), printed
/// after the 3.8 counters. Read from the 3.9.5 sources (`ServerMetrics`).
pub const MNTR_COUNTERS_SINCE_39: &[&str] = &[
    "snapshot_error_count",
    "snapshot_rate_limited_count",
    "restore_error_count",
    "restore_rate_limited_count",
];

/// Summaries ZooKeeper 3.9 added, printed after the 3.8 summaries.
pub const MNTR_SUMMARIES_SINCE_39: &[&str] = &["restore_time"];

/// Summaries: each prints `avg_X min_X max_X cnt_X sum_X`.
pub const MNTR_SUMMARIES: &[&str] = &[
    "socket_closing_time",
    "proposal_process_time",
    "leader_unavailable_time",
    "node_created_watch_count",
    "session_queues_drained",
    "write_commit_proc_req_queued",
    "connection_token_deficit",
    "read_commit_proc_req_queued",
    "node_deleted_watch_count",
    "startup_txns_load_time",
    "sync_processor_queue_size",
    "follower_sync_time",
    "prep_processor_queue_size",
    "fsynctime",
    "inflight_snap_count",
    "reads_issued_from_session_queue",
    "learner_request_processor_queue_size",
    "snapshottime",
    "unavailable_time",
    "startup_txns_loaded",
    "reads_after_write_in_session_queue",
    "requests_in_session_queue",
    "write_commit_proc_issued",
    "prep_process_time",
    "pending_session_queue_size",
    "time_waiting_empty_pool_in_commit_processor_read_ms",
    "commit_process_time",
    "dbinittime",
    "inflight_diff_count",
    "netty_queued_buffer_capacity",
    "election_time",
    "commit_commit_proc_req_queued",
    "sync_processor_batch_size",
    "node_children_watch_count",
    "write_batch_time_in_commit_processor",
    "read_commit_proc_issued",
    "concurrent_request_processing_in_commit_processor",
    "observer_sync_time",
    "node_changed_watch_count",
    "sync_process_time",
    "startup_snap_load_time",
];

/// Summaries with percentiles: `avg min max cnt sum p50 p95 p99 p999`.
pub const MNTR_PERCENTILE_SUMMARIES: &[&str] = &[
    "prep_processor_queue_time_ms",
    "jvm_pause_time_ms",
    "close_session_prep_time",
    "read_commitproc_time_ms",
    "updatelatency",
    "local_write_committed_time_ms",
    "request_throttle_queue_time_ms",
    "readlatency",
    "quorum_ack_latency",
    "om_commit_process_time_ms",
    "read_final_proc_time_ms",
    "commit_propagation_latency",
    "dead_watchers_cleaner_latency",
    "write_final_proc_time_ms",
    "proposal_ack_creation_latency",
    "proposal_latency",
    "om_proposal_process_time_ms",
    "sync_processor_queue_and_flush_time_ms",
    "propagation_latency",
    "server_write_committed_time_ms",
    "sync_processor_queue_time_ms",
    "sync_processor_queue_flush_time_ms",
    "write_commitproc_time_ms",
];

/// Per-namespace summary sets ZooKeeper prints after the others (`app` is the first path
/// component: `/app/config` counts under `app`). Each prints `avg min max cnt sum` of
/// `X_read_per_namespace` and `X_write_per_namespace`.
pub const MNTR_NAMESPACE_SUMMARIES: &[&str] = &["read_per_namespace", "write_per_namespace"];

/// A summary's values: count and sum (avg derives from them), min, max, percentiles.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub count: i64,
    pub sum: i64,
    pub min: i64,
    pub max: i64,
    /// p50, p95, p99, p999; used only by percentile summaries.
    pub percentiles: [i64; 4],
}

/// What `mntr` prints. Keys not given print 0 (or 0.0): the counters we do not keep yet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MonitorInfo {
    pub version: String,
    /// `standalone`, `leader`, ... (see [`Mode::as_str`]).
    pub server_state: String,
    /// Gauge and counter values by key (without `zk_`).
    pub values: Vec<(String, MetricValue)>,
    /// Summary values by summary name (e.g. `readlatency`).
    pub summaries: Vec<(String, Summary)>,
    /// Per-namespace summaries: (namespace, reads, writes).
    pub namespaces: Vec<(String, Summary, Summary)>,
}

impl MonitorInfo {
    pub fn value(&self, key: &str) -> MetricValue {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or(
                if key.starts_with("avg_") || key == "connection_drop_probability" {
                    MetricValue::Float(0.0)
                } else {
                    MetricValue::Int(0)
                },
            )
    }
    pub fn summary(&self, name: &str) -> Summary {
        self.summaries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }
}

fn write_summary(out: &mut String, name: &str, s: &Summary, percentiles: bool) {
    let avg = if s.count > 0 {
        round4(s.sum as f64 / s.count as f64)
    } else {
        0.0
    };
    let _ = writeln!(out, "zk_avg_{name}\t{}", java_double(avg));
    let _ = writeln!(out, "zk_min_{name}\t{}", s.min);
    let _ = writeln!(out, "zk_max_{name}\t{}", s.max);
    let _ = writeln!(out, "zk_cnt_{name}\t{}", s.count);
    let _ = writeln!(out, "zk_sum_{name}\t{}", s.sum);
    if percentiles {
        for (p, v) in ["p50", "p95", "p99", "p999"].iter().zip(s.percentiles) {
            let _ = writeln!(out, "zk_{p}_{name}\t{v}");
        }
    }
}

/// `mntr`: `zk_<key>\t<value>` lines in ZooKeeper 3.8 standalone's order.
pub fn mntr(m: &MonitorInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "zk_version\t{}", m.version);
    let _ = writeln!(out, "zk_server_state\t{}", m.server_state);
    for key in MNTR_GAUGES
        .iter()
        .chain(MNTR_COUNTERS)
        .chain(MNTR_COUNTERS_SINCE_39)
    {
        let _ = writeln!(out, "zk_{key}\t{}", m.value(key).render());
    }
    // Keys of a role (a leader's learner counts) follow the ones every server has.
    for (key, v) in &m.values {
        if !MNTR_GAUGES.contains(&key.as_str())
            && !MNTR_COUNTERS.contains(&key.as_str())
            && !MNTR_COUNTERS_SINCE_39.contains(&key.as_str())
        {
            let _ = writeln!(out, "zk_{key}\t{}", v.render());
        }
    }
    for name in MNTR_SUMMARIES.iter().chain(MNTR_SUMMARIES_SINCE_39) {
        write_summary(&mut out, name, &m.summary(name), false);
    }
    for name in MNTR_PERCENTILE_SUMMARIES {
        write_summary(&mut out, name, &m.summary(name), true);
    }
    for (ns, reads, writes) in &m.namespaces {
        write_summary(&mut out, &format!("{ns}_read_per_namespace"), reads, false);
        write_summary(
            &mut out,
            &format!("{ns}_write_per_namespace"),
            writes,
            false,
        );
    }
    out
}

/// Rounds half-up to 4 decimals, as `AvgMinMaxCounter.getAvg` does with BigDecimal.
pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// A double as Java's `Double.toString` prints it in the range ZooKeeper's statistics
/// use: at least one digit after the point (`0.0`, `2.0`, `1.6667`), and the
/// computerized scientific form (`1.0E7`) from 10^7 up or below 10^-3.
pub fn java_double(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e7).contains(&a) {
        // Rust's {:e} gives the shortest digits: 1.5e7 -> "1.5e7"; Java wants "1.5E7",
        // and "1.0E7" for a single digit.
        let s = format!("{x:e}");
        let (mantissa, exp) = s.split_once('e').unwrap();
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        return format!("{mantissa}E{exp}");
    }
    let s = format!("{x}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// `java.util.Date.toString` in UTC: `Wed Nov 25 06:44:01 UTC 2026`.
pub fn java_date_utc(epoch_ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = epoch_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        y
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_double_forms() {
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(2.0), "2.0");
        assert_eq!(java_double(1.6667), "1.6667");
        assert_eq!(java_double(81.5), "81.5");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(12345678.0), "1.2345678E7");
        assert_eq!(java_double(0.0001), "1.0E-4");
        assert_eq!(round4(5.0 / 3.0), 1.6667);
        assert_eq!(round4(2.0 / 7.0), 0.2857);
    }

    #[test]
    fn dates_as_java_prints_them() {
        assert_eq!(java_date_utc(0), "Thu Jan 01 00:00:00 UTC 1970");
        // 2026-11-25T06:44:01Z, the capture in tests/data/4lw/dump.txt.
        assert_eq!(
            java_date_utc(1_795_589_041_000),
            "Wed Nov 25 06:44:01 UTC 2026"
        );
        assert_eq!(
            java_date_utc(951_782_400_000),
            "Tue Feb 29 00:00:00 UTC 2000"
        );
    }

    #[test]
    fn command_words() {
        assert_eq!(Command::from_bytes(b"mntr"), Some(Command::Mntr));
        assert_eq!(
            Command::from_first_int(u32::from_be_bytes(*b"ruok")),
            Some(Command::Ruok)
        );
        assert_eq!(
            Command::from_first_int(0xfff4_fffd),
            Some(Command::TelnetClose)
        );
        assert_eq!(Command::from_first_int(44), None);
        assert_eq!(Command::from_bytes(b"RUOK"), None);
        assert!(Command::Stmk.takes_argument());
        assert!(!Command::Ruok.needs_serving() && Command::Srvr.needs_serving());
        for (c, name) in COMMANDS {
            assert_eq!(c.as_str(), name);
        }
    }

    #[test]
    fn connection_lines() {
        let mut c = ConnInfo {
            remote: java_socket_addr("127.0.0.1", 45086),
            interest_ops: 1,
            queued: 0,
            received: 12,
            sent: 13,
            session: None,
        };
        assert_eq!(
            cons(std::slice::from_ref(&c)),
            " /127.0.0.1:45086[1](queued=0,recved=12,sent=13)\n\n"
        );
        c.session = Some(SessionConnInfo {
            session_id: 0x100000715a80000,
            last_op: "GETD".into(),
            established_ms: 1795589031006,
            timeout_ms: 10000,
            last_cxid: -1,
            last_zxid: 7,
            last_response_ms: 483221,
            last_latency_ms: 0,
            min_latency_ms: 0,
            avg_latency_ms: 1,
            max_latency_ms: 7,
        });
        assert_eq!(
            cons(&[c]),
            " /127.0.0.1:45086[1](queued=0,recved=12,sent=13,sid=0x100000715a80000,lop=GETD,est=1795589031006,to=10000,lzxid=0x7,lresp=483221,llat=0,minlat=0,avglat=1,maxlat=7)\n\n"
        );
        assert_eq!(java_socket_addr("::1", 5), "/[::1]:5");
    }

    #[test]
    fn refusal_and_not_serving_text() {
        assert_eq!(
            refusal(Command::Stat),
            "stat is not executed because it is not in the whitelist.\n"
        );
        assert_eq!(not_serving(Command::Mntr), format!("{ZK_NOT_SERVING}\n"));
        assert_eq!(not_serving(Command::Isro), "null");
    }
}
