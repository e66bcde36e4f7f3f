//! zoo.cfg + `myid` + command-line overrides -> a validated [`Config`].
//!
//! The file is read the way ZooKeeper's `QuorumPeerConfig` reads it: Java properties
//! syntax ([`parse_properties`]), every key and value trimmed, the last of duplicate keys
//! wins. `QuorumPeerConfig` parses a fixed set of keys itself and turns every other key
//! `k` into the system property `zookeeper.k`; that is how `4lw.commands.whitelist`,
//! `snapCount` or `DigestAuthenticationProvider.superDigest` reach ZooKeeper. We accept
//! those keys with or without the `zookeeper.` prefix, because users write both.
//!
//! Every key is classified in [`KEYS`]: acted on, recorded but not acted on yet (a
//! [`Warning`] says what would change), or cosmetic (accepted quietly). An unknown key is
//! a warning too: ZooKeeper would set a system property nobody reads, so a typo would go
//! unnoticed.
//!
//! This module reads the config file and the `myid` file and nothing else: it starts
//! nothing, binds nothing and resolves no host names.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

/// ZooKeeper's tickTime when the file gives none (`ZooKeeperServer.DEFAULT_TICK_TIME`).
/// The sample zoo.cfg uses 2000; we keep the code's default.
pub const DEFAULT_TICK_TIME_MS: u32 = 3000;
/// The client port of the no-argument standalone server and of `conf/zoo.cfg`.
pub const DEFAULT_CLIENT_PORT: u16 = 2181;
/// Connections per client IP (`QuorumPeerConfig.maxClientCnxns`); 0 = unlimited.
pub const DEFAULT_MAX_CLIENT_CNXNS: u32 = 60;
/// `jute.maxbuffer`: the largest frame and znode payload, 0xfffff bytes.
pub const DEFAULT_JUTE_MAXBUFFER: u32 = 0xfffff;
/// `zookeeper.snapCount`: txns between snapshots.
pub const DEFAULT_SNAP_COUNT: u64 = 100_000;
/// `autopurge.snapRetainCount`; ZooKeeper raises smaller values to 3.
pub const MIN_SNAP_RETAIN_COUNT: u32 = 3;
/// `zookeeper.preAllocSize`, in KiB (64 MiB).
pub const DEFAULT_PRE_ALLOC_SIZE_KB: u64 = 65_536;
/// `zookeeper.nio.sessionlessCnxnTimeout`'s default (NIOServerCnxnFactory).
pub const DEFAULT_SESSIONLESS_CNXN_TIMEOUT_MS: u64 = 10_000;

/// `zookeeper.globalOutstandingLimit`: requests in flight before throttling.
pub const DEFAULT_GLOBAL_OUTSTANDING_LIMIT: u32 = 1000;
/// `bulkReadChildren` (ours): a getChildren of more children than this is built off the
/// shard's thread. At ~90 ns per child name that is ~1.5 ms of work; smaller lists cost
/// less on the shard than a hand-off to another thread.
pub const DEFAULT_BULK_READ_CHILDREN: usize = 16_384;
/// `fsync.warningthresholdms`: a log write that takes longer than this (ms) is logged as a
/// warning and counted (`fsync_threshold_exceed_count`), as ZooKeeper's FileTxnLog does.
pub const DEFAULT_FSYNC_WARNING_THRESHOLD_MS: i64 = 1000;
/// `snapshotWriteRate` (ours), MB/s: how fast the background snapshot is written. Unpaced,
/// a 1M-znode snapshot (~130 MB) took 0.6-0.8 s of one core and the disk beside a 16x16
/// write load, and the p99 of the seconds it ran in was 1.6-2.1x the second before's;
/// paced at 100 MB/s (~2 s) it was 0.94-1.23x (perf/snapshot-seconds.py, see
/// docs/big-trees.md). A 10M-znode snapshot then takes ~20 s, as ZooKeeper's ~10 s.
/// A paced snapshot also takes at most 10% of one core
/// (`storage::snapshot::SNAPSHOT_CPU_SHARE`); 0 turns both limits off.
pub const DEFAULT_SNAPSHOT_WRITE_RATE_MB: u64 = 100;
/// Our log segment size: 64 MiB.
/// ZooKeeper's default `zookeeper.snapshotSizeFactor` (`ZKDatabase`).
pub const DEFAULT_SNAPSHOT_SIZE_FACTOR: f64 = 0.33;

/// `snapshotSizeFactor`: a finite number (the parser refuses NaN and infinities), so
/// equality is total.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SizeFactor(pub f64);

impl Eq for SizeFactor {}
/// ZooKeeper's default `snapSizeLimitInKb`: 4 GiB of log between snapshots.
pub const DEFAULT_SNAP_SIZE_LIMIT_KB: i64 = 4 << 20;
pub const DEFAULT_LOG_SEGMENT_SIZE: u64 = 64 << 20;

/// `logSyncIntervalMicros` by default: see [`Config::log_sync_interval_us`].
pub const DEFAULT_LOG_SYNC_INTERVAL_US: u64 = 0;
/// The largest `logSyncIntervalMicros`: a write never waits longer than this for others
/// to join it.
pub const MAX_LOG_SYNC_INTERVAL_US: u64 = 100_000;
/// Log segments are written in 4 KiB O_DIRECT blocks, so their size is a multiple of it.
pub const LOG_SEGMENT_ALIGN: u64 = 4096;
/// A smaller segment would switch files (a barrier) every few batches.
pub const MIN_LOG_SEGMENT_SIZE: u64 = 1 << 20;
/// The data folder of the no-argument standalone server, relative to the working directory.
pub const STANDALONE_DATA_DIR: &str = "data";

/// Every four-letter word ZooKeeper 3.8 knows (`FourLetterCommands`), in its order.
pub const FOUR_LETTER_WORDS: [&str; 22] = [
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srst", "srvr", "stat",
    "wchc", "wchp", "wchs", "mntr", "isro", "hash", // ZooKeeper's
    "hlth", // RingKeeper's quorum-aware health
    "rqld", "ydld", // ClickHouse Keeper's leadership requests
    "load", // RingKeeper's load attribution
];

/// How far we honour a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    /// Parsed and acted on.
    Supported,
    /// Parsed and kept in [`Config`], but the server does not act on it yet. Setting it
    /// yields a warning with this text: what would change if we did.
    Recorded(&'static str),
    /// Parsed and accepted quietly: it changes nothing a client can observe in RingKeeper
    /// (JVM, Jetty or NIO tuning that has no counterpart here).
    Cosmetic,
}

/// One zoo.cfg key we know.
#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    /// The key as ZooKeeper's admin guide spells it (without the `zookeeper.` prefix).
    pub name: &'static str,
    pub status: KeyStatus,
}

const fn key(name: &'static str, status: KeyStatus) -> KeySpec {
    KeySpec { name, status }
}

use KeyStatus::{Cosmetic, Recorded, Supported};

/// Every key we know, with how far we honour it. `docs/compat.md` mirrors this table and
/// a test keeps the two in step. Prefix families (`server.N`, `group.N`, `weight.N`,
/// `admin.*`, `metricsProvider.*`, `multiAddress.*`) are matched by [`key_spec`].
pub const KEYS: &[KeySpec] = &[
    // Parsed by QuorumPeerConfig itself.
    key("tickTime", Supported),
    key("dataDir", Supported),
    key("dataLogDir", Supported),
    key("clientPort", Supported),
    key("clientPortAddress", Supported),
    key("maxClientCnxns", Supported),
    key("minSessionTimeout", Supported),
    key("maxSessionTimeout", Supported),
    key("initLimit", Supported),
    key("syncLimit", Supported),
    key("standaloneEnabled", Supported),
    key("server.N", Supported),
    key("autopurge.snapRetainCount", Supported),
    key("autopurge.purgeInterval", Supported),
    key("secureClientPort", Supported),
    key("secureClientPortAddress", Supported),
    key(
        "clientPortListenBacklog",
        Recorded("the listen backlog is the server's own"),
    ),
    key("connectToLearnerMasterLimit", Recorded("learners connect to the leader within initLimit")),
    key("electionAlg", Supported),
    key("localSessionsEnabled", Supported),
    key("localSessionsUpgradingEnabled", Supported),
    key("peerType", Recorded("a server observes when its own server.N line ends in :observer")),
    key("syncEnabled", Recorded("learners always log what they receive")),
    key("dynamicConfigFile", Supported),
    key("reconfigEnabled", Supported),
    key("sslQuorum", Supported),
    // QuorumPeerConfig's portUnification is the quorum port's (Leader's
    // UnifiedServerSocket: TLS and plaintext learners side by side during a rolling
    // switch to sslQuorum); the client port's is the system property
    // zookeeper.client.portUnification (NettyServerCnxnFactory).
    key("portUnification", Recorded("the quorum port does not take plaintext and TLS learners side by side (the client port's is client.portUnification)")),
    key("client.portUnification", Supported),
    key("sslQuorumReloadCertFiles", Supported),
    key("quorumListenOnAllIPs", Recorded("quorum and election ports listen on the server.N address")),
    key(
        "quorum.auth.enableSasl",
        Recorded("quorum SASL is not supported"),
    ),
    key(
        "quorum.auth.serverRequireSasl",
        Recorded("quorum SASL is not supported"),
    ),
    key(
        "quorum.auth.learnerRequireSasl",
        Recorded("quorum SASL is not supported"),
    ),
    key("quorum.auth.learner.saslLoginContext", Cosmetic),
    key("quorum.auth.server.saslLoginContext", Cosmetic),
    key("quorum.auth.kerberos.servicePrincipal", Cosmetic),
    key("quorum.cnxn.threads.size", Cosmetic),
    key("jvm.pause.info-threshold.ms", Cosmetic),
    key("jvm.pause.warn-threshold.ms", Cosmetic),
    key("jvm.pause.sleep.time.ms", Cosmetic),
    key("jvm.pause.monitor", Cosmetic),
    // A className naming Prometheus serves /metrics on httpHost:httpPort (the write
    // stage histograms and ZooKeeper-named gauges); exportJvmInfo and the worker
    // settings have no meaning here.
    key("metricsProvider.className", Supported),
    key("metricsProvider.*", Supported),
    key("multiAddress.enabled", Recorded("one address per server")),
    key("multiAddress.reachabilityCheckTimeoutMs", Recorded("one address per server")),
    key("multiAddress.reachabilityCheckEnabled", Recorded("one address per server")),
    key("oraclePath", Recorded("no quorum oracle: a 2-server ensemble needs both servers")),
    key("observerMasterPort", Recorded("observers follow the leader")),
    key(
        "group.N",
        Recorded("hierarchical quorums are not supported"),
    ),
    key(
        "weight.N",
        Recorded("hierarchical quorums are not supported"),
    ),
    // System properties (`zookeeper.<key>`).
    key("4lw.commands.whitelist", Supported),
    key("DigestAuthenticationProvider.superDigest", Supported),
    key("jute.maxbuffer", Supported),
    key("extendedTypesEnabled", Supported),
    // ZooKeeper reads these two as JVM system properties only; we also take them from
    // zoo.cfg, where users of other settings expect to find them.
    key("znode.container.checkIntervalMs", Supported),
    key("znode.container.maxPerMinute", Supported),
    key("skipACL", Supported),
    key("maxCnxns", Supported),
    key("globalOutstandingLimit", Supported),
    key("snapCount", Supported),
    key("snapSizeLimitInKb", Supported),
    key("txnLogSizeLimitInKb", Recorded("log segments are logSegmentSize bytes")),
    key("preAllocSize", Recorded("log segments are preallocated whole: see logSegmentSize")),
    key("forceSync", Supported),
    key("fsync.warningthresholdms", Supported),
    key("flushDelay", Recorded("the log group-commits by itself: a batch is whatever arrived during the previous write; logSyncIntervalMicros spaces writes under load")),
    key("maxBatchSize", Recorded("the log group-commits by itself: a batch is whatever arrived during the previous write; logSyncIntervalMicros spaces writes under load")),
    key("maxWriteQueuePollTime", Recorded("the log group-commits by itself: a batch is whatever arrived during the previous write; logSyncIntervalMicros spaces writes under load")),
    key("commitLogCount", Recorded("the leader keeps its log from the snapshot before last in memory for DIFF, and further back as snapshotSizeFactor allows")),
    key("snapshotSizeFactor", Supported),
    key("leaderServes", Recorded("the leader always serves clients")),
    // A server cut off from its quorum serves read-only clients (issue 12).
    key("readonlymode.enabled", Supported),
    key("digest.enabled", Recorded("the tree digest is always computed")),
    key("snapshot.compression.method", Recorded("snapshots are written uncompressed")),
    // Read when a ZooKeeper dataDir is imported at start (zkfiles::import).
    key("snapshot.trust.empty", Supported),
    key("enforceQuota", Recorded("quotas are not enforced")),
    key(
        "requestThrottleLimit",
        Recorded("requests are not throttled"),
    ),
    key(
        "requestThrottleStallTime",
        Recorded("requests are not throttled"),
    ),
    key(
        "requestThrottleDropStale",
        Recorded("requests are not throttled"),
    ),
    key("largeRequestMaxBytes", Supported),
    key("largeRequestThreshold", Supported),
    key("connectionMaxTokens", Supported),
    key("connectionTokenFillTime", Supported),
    key("connectionTokenFillCount", Supported),
    key("connectionFreezeTime", Supported),
    key("connectionDropIncrease", Supported),
    key("connectionDropDecrease", Supported),
    key("connectionDecreaseRatio", Supported),
    // The system properties ZooKeeper's BlueThrottle reads for connection weights.
    key("connection_throttle_weight_enabled", Supported),
    key("connection_throttle_global_session_weight", Supported),
    key("connection_throttle_renew_session_weight", Supported),
    key("audit.enable", Supported),
    // Ours: where the audit log goes (ZooKeeper's goes where its logback.xml says).
    key("audit.logFile", Supported),
    // Client SASL (src/sasl): authProvider.N registers the sasl scheme when it names
    // SASLAuthenticationProvider; the JAAS file comes from this key or, as in
    // ZooKeeper, from -Djava.security.auth.login.config in SERVER_JVMFLAGS/JVMFLAGS.
    key("authProvider.N", Supported),
    key("java.security.auth.login.config", Supported),
    key("sasl.serverconfig", Supported),
    key("allowSaslFailedClients", Supported),
    key("sessionRequireClientSASLAuth", Supported),
    key("enforce.auth.enabled", Supported),
    key("enforce.auth.schemes", Supported),
    key("kerberos.removeHostFromPrincipal", Supported),
    key("kerberos.removeRealmFromPrincipal", Supported),
    key("superUser", Supported),
    key("SASLAuthenticationProvider.superPassword", Supported),
    // TLS on the client port (src/tls; docs/security.md).
    key("ssl.keyStore.location", Supported),
    key("ssl.keyStore.password", Supported),
    key("ssl.keyStore.passwordPath", Supported),
    key("ssl.keyStore.type", Supported),
    key("ssl.trustStore.location", Supported),
    key("ssl.trustStore.password", Supported),
    key("ssl.trustStore.passwordPath", Supported),
    key("ssl.trustStore.type", Supported),
    key("ssl.clientAuth", Supported),
    key("ssl.protocol", Supported),
    key("ssl.enabledProtocols", Supported),
    key("ssl.ciphersuites", Supported),
    // On the server side ZooKeeper (its default zookeeper.fips-mode=true) checks no
    // client host name: neither do we.
    key("ssl.hostnameVerification", Supported),
    key("ssl.authProvider", Supported),
    key("X509AuthenticationProvider.superUser", Supported),
    key("ssl.clientHostnameVerification", Recorded("client certificates are not matched against the client's address (ZooKeeper does so only with zookeeper.fips-mode=false)")),
    key("ssl.crl", Recorded("certificate revocation lists are not checked")),
    key("ssl.ocsp", Recorded("OCSP is not checked")),
    key("ssl.handshakeDetectionTimeoutMillis", Recorded("port unification decides on the first byte a client sends")),
    key("ssl.sslProvider", Recorded("TLS is always rustls")),
    // TLS between servers (sslQuorum=true), read as the ssl.* keys above.
    key("ssl.quorum.keyStore.location", Supported),
    key("ssl.quorum.keyStore.password", Supported),
    key("ssl.quorum.keyStore.passwordPath", Supported),
    key("ssl.quorum.keyStore.type", Supported),
    key("ssl.quorum.trustStore.location", Supported),
    key("ssl.quorum.trustStore.password", Supported),
    key("ssl.quorum.trustStore.passwordPath", Supported),
    key("ssl.quorum.trustStore.type", Supported),
    key("ssl.quorum.clientAuth", Supported),
    key("ssl.quorum.protocol", Supported),
    key("ssl.quorum.enabledProtocols", Supported),
    key("ssl.quorum.ciphersuites", Supported),
    key("ssl.quorum.hostnameVerification", Recorded("a server's certificate is checked against the address of its server.N line always")),
    key("serverCnxnFactory", Cosmetic),
    key("maxResponseCacheSize", Cosmetic),
    key("maxGetChildrenResponseCacheSize", Cosmetic),
    key("commitProcessor.numWorkerThreads", Cosmetic),
    key("nio.numSelectorThreads", Cosmetic),
    key("nio.numWorkerThreads", Cosmetic),
    key("nio.directBufferBytes", Cosmetic),
    key("nio.sessionlessCnxnTimeout", Supported),
    key("admin.enableServer", Supported),
    key("admin.serverAddress", Supported),
    key("admin.serverPort", Supported),
    key("admin.commandURL", Supported),
    key("admin.*", Cosmetic),
    // Ours.
    key("shards", Supported),
    key("logSegmentSize", Supported),
    key("logSyncIntervalMicros", Supported),
    key("bulkReadChildren", Supported),
    key("logSync", Supported),
    key("slowRequestThresholdMs", Supported),
    key("slowRequestLogPerSecond", Supported),
    key("loadAttribution", Supported),
    key("snapshotWriteRate", Supported),
];

/// The `admin.*` keys the AdminServer reads; the others are Jetty's and accepted quietly.
const ADMIN_KEYS: [&str; 4] = [
    "admin.enableServer",
    "admin.serverAddress",
    "admin.serverPort",
    "admin.commandURL",
];

/// Looks a key up in [`KEYS`], with or without the `zookeeper.` prefix, mapping numbered
/// and prefixed families (`server.3`, `admin.serverPort`) to their row.
pub fn key_spec(key: &str) -> Option<&'static KeySpec> {
    let bare = bare_key(key);
    let family = if numbered(bare, "server.") {
        "server.N"
    } else if numbered(bare, "group.") {
        "group.N"
    } else if numbered(bare, "weight.") {
        "weight.N"
    } else if bare.starts_with("authProvider.") {
        "authProvider.N"
    } else if bare.starts_with("superUser.") {
        "superUser"
    } else if bare.starts_with("admin.") && !ADMIN_KEYS.contains(&bare) {
        "admin.*"
    } else if bare.starts_with("metricsProvider.") && bare != "metricsProvider.className" {
        "metricsProvider.*"
    } else {
        bare
    };
    KEYS.iter().find(|k| k.name == family)
}

/// `key` without a `zookeeper.` prefix, unless what remains is a key QuorumPeerConfig
/// parses itself: `zookeeper.tickTime` is a system property nobody reads, not tickTime.
fn bare_key(key: &str) -> &str {
    match key.strip_prefix("zookeeper.") {
        Some(rest) if !is_direct_key(rest) => rest,
        _ => key,
    }
}

fn numbered(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Where a server's client listener binds: a host name or address literal (resolved by
/// the server, not here) and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAddress {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A voting member or an observer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerType {
    Participant,
    Observer,
}

/// One `server.N=host:quorumPort:electionPort[:participant|observer][;[clientAddr:]clientPort]`
/// line. Several `|`-separated addresses (3.6 multiAddress) are rejected: not supported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    pub id: u64,
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub peer_type: PeerType,
    /// The client address given after `;`; a bare port binds 0.0.0.0 as in ZooKeeper.
    pub client: Option<ClientAddress>,
}

/// The set of enabled four-letter words. `srvr` is always enabled, as in ZooKeeper
/// (`zkServer.sh status` needs it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FourLetterWhitelist {
    enabled: Vec<String>,
}

impl FourLetterWhitelist {
    /// Parses `4lw.commands.whitelist` as `FourLetterCommands.isEnabled` does: a comma
    /// separated list, trimmed, `*` for every known command, `srvr` always added.
    /// Returns the list and the entries that are not four-letter words we know.
    pub fn parse(value: &str) -> (FourLetterWhitelist, Vec<String>) {
        let mut enabled: Vec<String> = Vec::new();
        let mut unknown = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                enabled = FOUR_LETTER_WORDS.iter().map(|s| s.to_string()).collect();
                break;
            }
            if !FOUR_LETTER_WORDS.contains(&item) {
                unknown.push(item.to_string());
            }
            if !enabled.iter().any(|e| e == item) {
                enabled.push(item.to_string());
            }
        }
        if !enabled.iter().any(|e| e == "srvr") {
            enabled.push("srvr".to_string());
        }
        (FourLetterWhitelist { enabled }, unknown)
    }

    /// Every known command enabled (`*`).
    pub fn all() -> FourLetterWhitelist {
        FourLetterWhitelist::parse("*").0
    }

    /// Whether `cmd` may run.
    pub fn allows(&self, cmd: &str) -> bool {
        self.enabled.iter().any(|e| e == cmd)
    }

    /// The enabled commands, in the order given.
    pub fn commands(&self) -> &[String] {
        &self.enabled
    }
}

impl Default for FourLetterWhitelist {
    /// ZooKeeper's default: `srvr` only.
    fn default() -> Self {
        FourLetterWhitelist::parse("").0
    }
}

/// Everything the server reads from zoo.cfg, `myid` and the command line, validated.
///
/// Built by [`Config::load`], [`Config::standalone_default`] or [`ConfigBuilder`]; owned
/// by the main thread and handed read-only to the rest. Times are milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file this came from, if any.
    pub config_path: Option<PathBuf>,
    pub tick_time_ms: u32,
    /// Snapshots (and `myid`).
    pub data_dir: PathBuf,
    /// The txn log; `data_dir` when not set.
    pub data_log_dir: PathBuf,
    /// `clientPort`, if set (it may come from this server's `server.N` line instead).
    pub client_port: Option<u16>,
    /// `clientPortAddress`, if set.
    pub client_port_address: Option<String>,
    /// `secureClientPort`: the TLS client port, if any.
    pub secure_client_port: Option<u16>,
    /// `secureClientPortAddress` (the wildcard address when not set, as ZooKeeper).
    pub secure_client_port_address: Option<String>,
    /// `portUnification`: the quorum port takes TLS and plaintext learners (recorded).
    pub port_unification: bool,
    /// `client.portUnification` (`zookeeper.client.portUnification`): the plaintext
    /// client port also takes TLS clients.
    pub client_port_unification: bool,
    /// `sslQuorum`: election and quorum connections speak TLS (`ssl.quorum.*`).
    pub ssl_quorum: bool,
    /// `sslQuorumReloadCertFiles`: the quorum's key and trust stores are read again
    /// when their files change.
    pub ssl_quorum_reload: bool,
    /// Connections per client IP; 0 = unlimited.
    pub max_client_cnxns: u32,
    /// Connections in total; 0 = unlimited.
    pub max_cnxns: u32,
    /// Resolved: 2 x tickTime when not set.
    pub min_session_timeout_ms: u32,
    /// Resolved: 20 x tickTime when not set.
    pub max_session_timeout_ms: u32,
    pub jute_maxbuffer: u32,
    pub four_letter_whitelist: FourLetterWhitelist,
    /// `user:base64(sha1(user:password))` of the super user.
    pub super_digest: Option<String>,
    /// TTL nodes (`zookeeper.extendedTypesEnabled`).
    pub extended_types_enabled: bool,
    /// `readonlymode.enabled`: an ensemble member cut off from its quorum serves
    /// clients that asked for read-only sessions.
    pub read_only_mode: bool,
    /// `localSessionsEnabled`: an ensemble member's new sessions are local (tracked by
    /// that server alone, never logged) until they need to be global. A standalone
    /// server ignores it, as ZooKeeper's does.
    pub local_sessions_enabled: bool,
    /// `localSessionsUpgradingEnabled`: a local session that creates an ephemeral is
    /// upgraded to a global one; without it the create fails (EPHEMERALONLOCALSESSION).
    /// QuorumPeerConfig's default is false.
    pub local_sessions_upgrading_enabled: bool,
    /// `zookeeper.skipACL=yes` turns every ACL check off.
    pub skip_acl: bool,
    pub global_outstanding_limit: u32,
    /// `zookeeper.nio.sessionlessCnxnTimeout`: ms a connection may sit idle before its
    /// handshake completes (ZooKeeper's default 10000).
    pub sessionless_cnxn_timeout_ms: u64,
    /// `zookeeper.audit.enable`.
    pub audit_enable: bool,
    /// `audit.logFile` (ours): default `zookeeper_audit.log` in the working directory,
    /// where ZooKeeper's default log configuration puts it.
    pub audit_log_file: PathBuf,
    /// The connection token bucket (`connectionMaxTokens` and its companions).
    pub conn_throttle: crate::throttle::ThrottleConfig,
    /// `largeRequestMaxBytes` / `largeRequestThreshold`.
    pub large_requests: crate::throttle::LargeRequests,
    pub snap_count: u64,
    pub snap_retain_count: u32,
    /// Hours; 0 = never purge.
    pub purge_interval_hours: u32,
    /// `snapSizeLimitInKb`: KiB of log between snapshots (0 or less: no size rule).
    pub snap_size_limit_kb: i64,
    /// `zookeeper.snapshotSizeFactor`: a leader syncs a learner by DIFF while the txns
    /// it lacks are at most this fraction of the newest snapshot's size (0.33;
    /// negative: only within the log since the snapshot before last).
    pub snapshot_size_factor: SizeFactor,
    pub pre_alloc_size_kb: u64,
    pub force_sync: bool,
    /// `logSync` (ours): `dsync` (O_DSYNC writes, the default) or `fdatasync` (each write
    /// followed by an fdatasync).
    pub log_fdatasync: bool,
    /// Ticks; 0 = not set (required when servers are listed).
    pub init_limit: u32,
    pub sync_limit: u32,
    pub standalone_enabled: bool,
    /// The `server.N` lines, by id: from zoo.cfg, or from the dynamic file when
    /// `dynamicConfigFile` is set.
    pub servers: BTreeMap<u64, ServerSpec>,
    /// `reconfigEnabled` (default false, as in ZooKeeper 3.5.3 and later).
    pub reconfig_enabled: bool,
    /// `dynamicConfigFile`: where the `server.N` lines are, as given (ZooKeeper opens it
    /// relative to the working directory).
    pub dynamic_config_file: Option<PathBuf>,
    /// The version of the server list: the hex suffix of the dynamic file's name
    /// (`zoo.cfg.dynamic.100000000`), 0 for lines in zoo.cfg or a name without one.
    pub config_version: u64,
    /// From `dataDir/myid`; `None` when the file is absent (fine for standalone).
    pub my_id: Option<u64>,
    /// `admin.*` keys, prefix removed (recorded; there is no AdminServer).
    pub admin: BTreeMap<String, String>,
    /// `metricsProvider.className`, if set.
    pub metrics_provider_class: Option<String>,
    /// Other `metricsProvider.*` keys, prefix removed.
    pub metrics_provider: BTreeMap<String, String>,
    /// Event loops; `None` = one per core but one, see [`Config::shard_count`].
    pub shards: Option<NonZeroUsize>,
    /// Bytes per log segment.
    pub log_segment_size: u64,
    /// `logSyncIntervalMicros`: while log writes overlap, the next starts at least this
    /// long after the last (0: as soon as a write slot is free). Fewer synced writes
    /// per second under load, at most this much longer waits.
    pub log_sync_interval_us: u64,
    /// `slowRequestThresholdMs`: requests slower are logged (0: off, the default).
    pub slow_request_threshold_ms: u64,
    /// `slowRequestLogPerSecond`: at most this many slow-request lines a second.
    pub slow_request_log_per_second: u32,
    /// `loadAttribution`: count load per session, client and path (default yes).
    pub load_attribution: bool,
    /// `bulkReadChildren`: see [`DEFAULT_BULK_READ_CHILDREN`].
    pub bulk_read_children: usize,
    /// `fsync.warningthresholdms`: see [`DEFAULT_FSYNC_WARNING_THRESHOLD_MS`].
    pub fsync_warning_threshold_ms: i64,
    /// `snapshotWriteRate` in MB/s, 0 for no limit: see [`DEFAULT_SNAPSHOT_WRITE_RATE_MB`].
    pub snapshot_write_rate_mb: u64,
    /// Every other key as the system property ZooKeeper would set: `zookeeper.<key>`
    /// (keys already starting with `zookeeper.` kept as they are).
    pub system_properties: BTreeMap<String, String>,
}

/// Something in the configuration we accept but want the operator to see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The line in the config file, when the key came from one.
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why a configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The config or myid file could not be read.
    Io,
    /// A value that does not parse (number, boolean, address).
    BadValue,
    /// A required setting is absent.
    Missing,
    /// Settings that contradict each other.
    Inconsistent,
}

/// A refused configuration: the key and line at fault when there is one, and a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ConfigErrorKind,
    pub key: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    fn new(kind: ConfigErrorKind, key: Option<&str>, line: Option<usize>, message: String) -> Self {
        ConfigError {
            kind,
            key: key.map(str::to_string),
            line,
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, &self.key) {
            (Some(line), Some(key)) => write!(f, "line {line}: {key}: {}", self.message),
            (Some(line), None) => write!(f, "line {line}: {}", self.message),
            (None, Some(key)) => write!(f, "{key}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One `key=value` of a properties file, with the line it starts on (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// Parses Java properties text as `java.util.Properties.load` does: `#` and `!` comment
/// lines, `key=value`, `key: value` and `key value`, a line ending in an odd number of
/// backslashes continued on the next (its leading blanks dropped), and the escapes
/// `\t \n \r \f \uXXXX`; any other escaped character stands for itself. Keys and values
/// are then trimmed as `QuorumPeerConfig` does. Properties come back in file order,
/// duplicates included.
pub fn parse_properties(text: &str) -> Vec<Property> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((index, first)) = lines.next() {
        let start = first.trim_start_matches([' ', '\t', '\x0c']);
        if start.is_empty() || start.starts_with('#') || start.starts_with('!') {
            continue;
        }
        // Join continuation lines into one logical line.
        let mut logical = String::new();
        let mut current = start.to_string();
        loop {
            let trailing = current.chars().rev().take_while(|&c| c == '\\').count();
            if trailing % 2 == 1 {
                current.pop();
                logical.push_str(&current);
                match lines.next() {
                    Some((_, next)) => {
                        current = next.trim_start_matches([' ', '\t', '\x0c']).to_string()
                    }
                    None => break,
                }
            } else {
                logical.push_str(&current);
                break;
            }
        }
        let (key, value) = split_key_value(&logical);
        out.push(Property {
            key: unescape(&key).trim().to_string(),
            value: unescape(&value).trim().to_string(),
            line: index + 1,
        });
    }
    out
}

/// Splits a logical line at the first unescaped `=`, `:` or blank; a blank separator may
/// be followed by one `=` or `:`. Escapes are left in place for [`unescape`].
fn split_key_value(line: &str) -> (String, String) {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let mut escaped = false;
    while i < chars.len() {
        let c = chars[i];
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || c == ' ' || c == '\t' || c == '\x0c' {
            break;
        }
        i += 1;
    }
    let key: String = chars[..i].iter().collect();
    let mut j = i;
    while j < chars.len() && matches!(chars[j], ' ' | '\t' | '\x0c') {
        j += 1;
    }
    if j < chars.len() && (chars[j] == '=' || chars[j] == ':') {
        j += 1;
        while j < chars.len() && matches!(chars[j], ' ' | '\t' | '\x0c') {
            j += 1;
        }
    }
    let value: String = chars[j.min(chars.len())..].iter().collect();
    (key, value)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) if hex.len() == 4 => out.push(ch),
                    // Java throws "Malformed \uxxxx encoding"; keeping the text lets the
                    // key's own validation report it with its line.
                    _ => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

impl Config {
    /// Reads a zoo.cfg, then `myid` from its dataDir, and validates them.
    ///
    /// # Errors
    /// The file or `myid` cannot be read, or a value is refused (see [`ConfigErrorKind`]).
    pub fn load(path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                ConfigErrorKind::Io,
                None,
                None,
                format!("cannot read config file {}: {e}", path.display()),
            )
        })?;
        let mut builder = ConfigBuilder::from_properties(&parse_properties(&text));
        builder.config_path = Some(path.to_path_buf());
        builder.read_myid = true;
        builder.build()
    }

    /// The configuration of `ringkeeper` run with no arguments: standalone on
    /// 127.0.0.1:2181, data under `data_dir` (the binary passes `./data`, see
    /// [`STANDALONE_DATA_DIR`]), every other setting at ZooKeeper's default.
    pub fn standalone_default(data_dir: impl Into<PathBuf>) -> Config {
        let data_dir = data_dir.into();
        ConfigBuilder::new()
            .data_dir(data_dir)
            .client_port(DEFAULT_CLIENT_PORT)
            .client_port_address("127.0.0.1")
            .tick_time_ms(2000)
            .build()
            .expect("the standalone defaults are valid")
            .0
    }

    /// Whether a plaintext client port is configured (`clientPort`, or a client
    /// address on this server's `server.N` line).
    pub fn has_plain_client_port(&self) -> bool {
        self.client_port.is_some()
            || self
                .my_id
                .and_then(|id| self.servers.get(&id))
                .is_some_and(|s| s.client.is_some())
    }

    /// Where clients connect: `clientPortAddress:clientPort`, else this server's
    /// `server.N` client address, else the wildcard address with `clientPort`; with
    /// no plaintext port, `secureClientPortAddress:secureClientPort` (TLS only).
    pub fn client_address(&self) -> ClientAddress {
        let from_server = self
            .my_id
            .and_then(|id| self.servers.get(&id))
            .and_then(|s| s.client.clone());
        if let (None, None, Some(port)) = (&from_server, self.client_port, self.secure_client_port)
        {
            return ClientAddress {
                host: self
                    .secure_client_port_address
                    .clone()
                    .unwrap_or_else(|| "0.0.0.0".to_string()),
                port,
            };
        }
        match (from_server, self.client_port) {
            (Some(addr), _) => addr,
            (None, Some(port)) => ClientAddress {
                host: self
                    .client_port_address
                    .clone()
                    .unwrap_or_else(|| "0.0.0.0".to_string()),
                port,
            },
            (None, None) => unreachable!("validated: a client port is always known"),
        }
    }

    /// Whether `server.N` lines make this an ensemble (ZooKeeper's `isDistributed`): more
    /// than one voting member, or one with standaloneEnabled=false.
    pub fn is_distributed(&self) -> bool {
        let voters = self
            .servers
            .values()
            .filter(|s| s.peer_type == PeerType::Participant)
            .count();
        voters > 1 || (voters == 1 && !self.standalone_enabled)
    }

    /// The number of event loops: `shards`, else [`default_shards`] of the cores
    /// available to this process (its CPU affinity and cgroup quota).
    pub fn shard_count(&self) -> usize {
        match self.shards {
            Some(n) => n.get(),
            None => {
                default_shards(std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
            }
        }
    }
}

/// The event loops a server runs when `shards` is not set: one per core but one, and
/// at least one. The core left over takes the work every write and read also needs
/// outside the loops: the kernel's TCP and disk completions, the election, the log's
/// spare segment, the admin endpoint, and on small machines often a client. Measured on
/// 2 cores (docs/write-path.md, "Fifth round"), one loop against two did 1.13x the
/// writes of a standalone server at 0.69x the CPU per write, and 1.18x at 0.80x on three
/// servers: the second loop time-shared the cores and handed requests across. Reads
/// alone were the exception (0.86x the reads): `shards` is for that.
/// At most [`MAX_SHARDS`].
pub fn default_shards(cores: usize) -> usize {
    cores.saturating_sub(1).clamp(1, MAX_SHARDS)
}

/// The most event loops a server runs: a commit names the loops that hold its
/// sessions in one 64-bit mask (`server::chain`).
pub const MAX_SHARDS: usize = 64;

/// Builds a [`Config`] from zoo.cfg properties, command-line overrides or test code.
///
/// Every setter overrides what came before (a file's value, a default). [`build`]
/// validates as ZooKeeper does and resolves the session timeouts.
///
/// [`build`]: ConfigBuilder::build
#[derive(Clone, Debug, Default)]
pub struct ConfigBuilder {
    config_path: Option<PathBuf>,
    /// Read `dataDir/myid` during build (off for tests that give `my_id`).
    read_myid: bool,
    /// (key, value, line) in file order; later ones win.
    props: Vec<Property>,
    overrides: Vec<Property>,
    /// `-Dkey=value` properties from the JVM flags variables, under the file's keys.
    jvm: Vec<Property>,
    my_id: Option<u64>,
}

/// The `-Dkey=value` words of JVM flags (as `SERVER_JVMFLAGS` and `JVMFLAGS` hold them
/// for ZooKeeper's `zkServer.sh`, which passes them unquoted, so split on white space),
/// in order; other words (`-Xmx1g`, `-XX:...`) are not properties and are skipped.
pub fn jvm_properties(flags: &str) -> Vec<(String, String)> {
    flags
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("-D"))
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            // `-Dflag` alone sets the property to "" in Java.
            None => (kv.to_string(), String::new()),
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

impl ConfigBuilder {
    /// An empty builder: `build` fails until `data_dir` and a client port are given.
    pub fn new() -> Self {
        ConfigBuilder::default()
    }

    /// A builder holding the properties of a zoo.cfg (see [`parse_properties`]).
    pub fn from_properties(props: &[Property]) -> Self {
        ConfigBuilder {
            props: props.to_vec(),
            ..ConfigBuilder::default()
        }
    }

    /// Sets any key as zoo.cfg would, overriding the file.
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.overrides.push(Property {
            key: key.to_string(),
            value: value.to_string(),
            line: 0,
        });
        self
    }

    pub fn tick_time_ms(self, ms: u32) -> Self {
        self.set("tickTime", ms)
    }
    pub fn data_dir(self, dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref().display().to_string();
        self.set("dataDir", dir)
    }
    pub fn data_log_dir(self, dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref().display().to_string();
        self.set("dataLogDir", dir)
    }
    pub fn client_port(self, port: u16) -> Self {
        self.set("clientPort", port)
    }
    pub fn client_port_address(self, host: &str) -> Self {
        self.set("clientPortAddress", host)
    }
    pub fn shards(self, n: usize) -> Self {
        self.set("shards", n)
    }
    pub fn four_letter_whitelist(self, list: &str) -> Self {
        self.set("4lw.commands.whitelist", list)
    }
    /// Gives the server id directly instead of reading `dataDir/myid`.
    pub fn my_id(mut self, id: u64) -> Self {
        self.my_id = Some(id);
        self.read_myid = false;
        self
    }
    /// Reads `dataDir/myid` during [`ConfigBuilder::build`] (what [`Config::load`] does).
    pub fn read_myid(mut self, yes: bool) -> Self {
        self.read_myid = yes;
        self
    }
    /// Takes `-Dkey=value` properties from JVM flags (see [`jvm_properties`]), the way
    /// ZooKeeper's start scripts pass `SERVER_JVMFLAGS` and `JVMFLAGS` to its JVM. Only
    /// keys RingKeeper knows (see [`key_spec`]) are taken, with or without
    /// `zookeeper.`; the rest are JVM matters (`-Dzookeeper.log.dir`, ...) and skipped
    /// quietly. A key also in zoo.cfg takes the file's value, as in ZooKeeper, where
    /// `QuorumPeerConfig` sets zoo.cfg's keys as system properties after the JVM
    /// started.
    pub fn jvm_flags(mut self, flags: &str) -> Self {
        for (key, value) in jvm_properties(flags) {
            if key_spec(&key).is_some() {
                self.jvm.push(Property {
                    key,
                    value,
                    line: 0,
                });
            }
        }
        self
    }

    /// Records the file the properties came from.
    pub fn config_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_path = Some(path.into());
        self
    }

    /// Validates and resolves.
    ///
    /// # Errors
    /// A bad value (naming key and line), a missing dataDir or client port, tickTime 0,
    /// minSessionTimeout > maxSessionTimeout, a bad `server.N`, a missing or bad `myid`
    /// when servers are listed, missing initLimit/syncLimit in an ensemble.
    pub fn build(self) -> Result<(Config, Vec<Warning>), ConfigError> {
        let mut warnings = Vec::new();
        // The last value of each key wins, as in java.util.Properties; remember its line.
        let mut seen: BTreeMap<String, Property> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        // JVM -D properties first, so the file's and the command line's win.
        for p in self.jvm.iter() {
            if !seen.contains_key(&p.key) {
                order.push(p.key.clone());
            }
            seen.insert(p.key.clone(), p.clone());
        }
        for p in self.props.iter() {
            // (A JVM property has line 0: the file overriding it is not a duplicate.)
            if let Some(prev) = seen.get(&p.key).filter(|prev| prev.line > 0) {
                warnings.push(Warning {
                    line: Some(p.line),
                    key: p.key.clone(),
                    message: format!(
                        "key {} is given twice (lines {} and {}); the last value is used",
                        p.key, prev.line, p.line
                    ),
                });
            } else if !seen.contains_key(&p.key) {
                order.push(p.key.clone());
            }
            seen.insert(p.key.clone(), p.clone());
        }
        for p in self.overrides.iter() {
            if !seen.contains_key(&p.key) {
                order.push(p.key.clone());
            }
            seen.insert(p.key.clone(), p.clone());
        }

        let mut c = Config {
            config_path: self.config_path.clone(),
            tick_time_ms: DEFAULT_TICK_TIME_MS,
            data_dir: PathBuf::new(),
            data_log_dir: PathBuf::new(),
            client_port: None,
            client_port_address: None,
            secure_client_port: None,
            secure_client_port_address: None,
            port_unification: false,
            client_port_unification: false,
            ssl_quorum: false,
            ssl_quorum_reload: false,
            max_client_cnxns: DEFAULT_MAX_CLIENT_CNXNS,
            max_cnxns: 0,
            min_session_timeout_ms: 0,
            max_session_timeout_ms: 0,
            jute_maxbuffer: DEFAULT_JUTE_MAXBUFFER,
            four_letter_whitelist: FourLetterWhitelist::default(),
            super_digest: None,
            extended_types_enabled: false,
            read_only_mode: false,
            local_sessions_enabled: false,
            local_sessions_upgrading_enabled: false,
            skip_acl: false,
            global_outstanding_limit: DEFAULT_GLOBAL_OUTSTANDING_LIMIT,
            sessionless_cnxn_timeout_ms: DEFAULT_SESSIONLESS_CNXN_TIMEOUT_MS,
            audit_enable: false,
            audit_log_file: PathBuf::from("zookeeper_audit.log"),
            conn_throttle: Default::default(),
            large_requests: Default::default(),
            snap_count: DEFAULT_SNAP_COUNT,
            snap_retain_count: MIN_SNAP_RETAIN_COUNT,
            purge_interval_hours: 0,
            snap_size_limit_kb: DEFAULT_SNAP_SIZE_LIMIT_KB,
            snapshot_size_factor: SizeFactor(DEFAULT_SNAPSHOT_SIZE_FACTOR),
            pre_alloc_size_kb: DEFAULT_PRE_ALLOC_SIZE_KB,
            force_sync: true,
            log_fdatasync: false,
            init_limit: 0,
            sync_limit: 0,
            standalone_enabled: true,
            servers: BTreeMap::new(),
            reconfig_enabled: false,
            dynamic_config_file: None,
            config_version: 0,
            my_id: None,
            admin: BTreeMap::new(),
            metrics_provider_class: None,
            metrics_provider: BTreeMap::new(),
            shards: None,
            log_segment_size: DEFAULT_LOG_SEGMENT_SIZE,
            log_sync_interval_us: DEFAULT_LOG_SYNC_INTERVAL_US,
            slow_request_threshold_ms: 0,
            slow_request_log_per_second: 10,
            load_attribution: true,
            bulk_read_children: DEFAULT_BULK_READ_CHILDREN,
            fsync_warning_threshold_ms: DEFAULT_FSYNC_WARNING_THRESHOLD_MS,
            snapshot_write_rate_mb: DEFAULT_SNAPSHOT_WRITE_RATE_MB,
            system_properties: BTreeMap::new(),
        };
        let mut data_dir = None;
        let mut data_log_dir = None;
        let mut min_timeout = None;
        let mut max_timeout = None;

        for k in order.iter() {
            let p = &seen[k];
            let line = (p.line > 0).then_some(p.line);
            let v = p.value.as_str();
            let bare = bare_key(&p.key);
            let spec = key_spec(&p.key);
            let ctx = Ctx { key: &p.key, line };
            match bare {
                "tickTime" => c.tick_time_ms = ctx.int(v)?,
                "dataDir" => data_dir = Some(PathBuf::from(v)),
                "dataLogDir" => data_log_dir = Some(PathBuf::from(v)),
                "clientPort" => c.client_port = Some(ctx.port(v)?),
                "clientPortAddress" => c.client_port_address = Some(v.to_string()),
                "secureClientPort" => c.secure_client_port = Some(ctx.port(v)?),
                "secureClientPortAddress" => c.secure_client_port_address = Some(v.to_string()),
                // Boolean.parseBoolean.
                "portUnification" => c.port_unification = v.eq_ignore_ascii_case("true"),
                // Boolean.getBoolean.
                "client.portUnification" => {
                    c.client_port_unification = v.eq_ignore_ascii_case("true")
                }
                "sslQuorum" => c.ssl_quorum = v.eq_ignore_ascii_case("true"),
                "sslQuorumReloadCertFiles" => c.ssl_quorum_reload = v.eq_ignore_ascii_case("true"),
                "maxClientCnxns" => c.max_client_cnxns = ctx.int(v)?,
                "maxCnxns" => c.max_cnxns = ctx.int(v)?,
                "minSessionTimeout" => min_timeout = ctx.timeout(v)?,
                "maxSessionTimeout" => max_timeout = ctx.timeout(v)?,
                "initLimit" => c.init_limit = ctx.int(v)?,
                "syncLimit" => c.sync_limit = ctx.int(v)?,
                "standaloneEnabled" => c.standalone_enabled = ctx.boolean(v)?,
                "localSessionsEnabled" => c.local_sessions_enabled = ctx.boolean(v)?,
                "localSessionsUpgradingEnabled" => {
                    c.local_sessions_upgrading_enabled = ctx.boolean(v)?
                }
                "reconfigEnabled" => c.reconfig_enabled = ctx.boolean(v)?,
                "dynamicConfigFile" => c.dynamic_config_file = Some(PathBuf::from(v)),
                "electionAlg" => {
                    let alg: u32 = ctx.int(v)?;
                    if alg != 3 {
                        return Err(ctx.err(
                            ConfigErrorKind::BadValue,
                            "Invalid electionAlg value. Only 3 is supported.".to_string(),
                        ));
                    }
                }
                "autopurge.snapRetainCount" => {
                    let n: u32 = ctx.int(v)?;
                    if n < MIN_SNAP_RETAIN_COUNT {
                        warnings.push(ctx.warn(format!(
                            "Invalid autopurge.snapRetainCount: {n}. Defaulting to {MIN_SNAP_RETAIN_COUNT}"
                        )));
                    }
                    c.snap_retain_count = n.max(MIN_SNAP_RETAIN_COUNT);
                }
                "autopurge.purgeInterval" => c.purge_interval_hours = ctx.int(v)?,
                "4lw.commands.whitelist" => {
                    let (list, unknown) = FourLetterWhitelist::parse(v);
                    for u in unknown {
                        warnings.push(ctx.warn(format!(
                            "{} names {u:?}, which is not a four-letter word",
                            p.key
                        )));
                    }
                    c.four_letter_whitelist = list;
                }
                "DigestAuthenticationProvider.superDigest" => {
                    if !v.contains(':') {
                        return Err(ctx.err(
                            ConfigErrorKind::BadValue,
                            format!("{v:?} is not of the form user:base64digest"),
                        ));
                    }
                    c.super_digest = Some(v.to_string());
                }
                "jute.maxbuffer" => {
                    c.jute_maxbuffer = ctx.int(v)?;
                    if c.jute_maxbuffer == 0 {
                        return Err(ctx.err(ConfigErrorKind::BadValue, "must be positive".into()));
                    }
                }
                // Boolean.getBoolean: exactly "true" (any case) is true.
                "extendedTypesEnabled" => c.extended_types_enabled = v.eq_ignore_ascii_case("true"),
                "readonlymode.enabled" => c.read_only_mode = v.eq_ignore_ascii_case("true"),
                // ZooKeeperServer: skipACL is on only for "yes".
                "skipACL" => c.skip_acl = v == "yes",
                "globalOutstandingLimit" => c.global_outstanding_limit = ctx.int(v)?,
                // Boolean.getBoolean.
                "audit.enable" => c.audit_enable = v.eq_ignore_ascii_case("true"),
                "audit.logFile" => c.audit_log_file = PathBuf::from(v),
                "connectionMaxTokens" => c.conn_throttle.max_tokens = ctx.int(v)?,
                "connectionTokenFillTime" => {
                    c.conn_throttle.fill_time_ms = ctx.int(v)?;
                    if c.conn_throttle.fill_time_ms <= 0 {
                        return Err(ctx.err(ConfigErrorKind::BadValue, "must be positive".into()));
                    }
                }
                "connectionTokenFillCount" => c.conn_throttle.fill_count = ctx.int(v)?,
                "connectionFreezeTime" => c.conn_throttle.freeze_time_ms = ctx.int(v)?,
                "connectionDropIncrease" => c.conn_throttle.drop_increase = ctx.float(v)?,
                "connectionDropDecrease" => c.conn_throttle.drop_decrease = ctx.float(v)?,
                "connectionDecreaseRatio" => c.conn_throttle.decrease_ratio = ctx.float(v)?,
                // Boolean.getBoolean.
                "connection_throttle_weight_enabled" => {
                    c.conn_throttle.weight_enabled = v.eq_ignore_ascii_case("true")
                }
                "connection_throttle_global_session_weight" => {
                    c.conn_throttle.global_weight = ctx.int::<i64>(v)?.max(1)
                }
                "connection_throttle_renew_session_weight" => {
                    c.conn_throttle.renew_weight = ctx.int::<i64>(v)?.max(1)
                }
                // ZooKeeperServer: a non-positive max keeps the default; a threshold
                // of 0 or below -1 means off (-1).
                "largeRequestMaxBytes" => {
                    let n: i64 = ctx.int(v)?;
                    if n > 0 {
                        c.large_requests.max_bytes = n;
                    }
                }
                "largeRequestThreshold" => {
                    let n: i64 = ctx.int(v)?;
                    c.large_requests.threshold = if n == 0 || n < -1 { -1 } else { n };
                }
                "nio.sessionlessCnxnTimeout" => {
                    c.sessionless_cnxn_timeout_ms = ctx.int(v)?;
                    if c.sessionless_cnxn_timeout_ms == 0 {
                        return Err(ctx.err(ConfigErrorKind::BadValue, "must be positive".into()));
                    }
                }
                "snapCount" => {
                    c.snap_count = ctx.int(v)?;
                    if c.snap_count < 2 {
                        return Err(ctx.err(ConfigErrorKind::BadValue, "must be at least 2".into()));
                    }
                }
                // SyncRequestProcessor: KiB of log between snapshots; 0 or less: off.
                "snapSizeLimitInKb" => c.snap_size_limit_kb = ctx.int(v)?,
                // ZKDatabase: above 1, or not a number, is the default with a warning.
                "snapshotSizeFactor" => {
                    c.snapshot_size_factor = SizeFactor(match ctx.float(v) {
                        Ok(f) if f <= 1.0 => f,
                        _ => {
                            warnings.push(ctx.warn(format!(
                                "invalid {} {v:?}: using the default {DEFAULT_SNAPSHOT_SIZE_FACTOR}",
                                p.key
                            )));
                            DEFAULT_SNAPSHOT_SIZE_FACTOR
                        }
                    });
                }
                "preAllocSize" => c.pre_alloc_size_kb = ctx.int(v)?,
                // FileTxnLog: only "no" turns fsync off.
                "forceSync" => c.force_sync = v != "no",
                "logSync" => {
                    c.log_fdatasync = match v {
                        "dsync" => false,
                        "fdatasync" => true,
                        _ => {
                            return Err(ctx.err(
                                ConfigErrorKind::BadValue,
                                format!("{v}: must be dsync or fdatasync"),
                            ))
                        }
                    }
                }
                "shards" => {
                    let n = ctx.int_at_most(v, MAX_SHARDS, "event loops")?;
                    c.shards = Some(NonZeroUsize::new(n).ok_or_else(|| {
                        ctx.err(ConfigErrorKind::BadValue, "must be at least 1".into())
                    })?);
                }
                "logSegmentSize" => {
                    let n: u64 = ctx.int(v)?;
                    if n < MIN_LOG_SEGMENT_SIZE || !n.is_multiple_of(LOG_SEGMENT_ALIGN) {
                        return Err(ctx.err(
                            ConfigErrorKind::BadValue,
                            format!(
                                "{n} must be at least {MIN_LOG_SEGMENT_SIZE} and a multiple of {LOG_SEGMENT_ALIGN}"
                            ),
                        ));
                    }
                    c.log_segment_size = n;
                }
                "logSyncIntervalMicros" => {
                    c.log_sync_interval_us =
                        ctx.int_at_most(v, MAX_LOG_SYNC_INTERVAL_US, "microseconds")?;
                }
                "bulkReadChildren" => c.bulk_read_children = ctx.int(v)?,
                // FileTxnLog reads it with Long.getLong: not a number is the default
                // (there silently, here with a warning).
                "fsync.warningthresholdms" => {
                    c.fsync_warning_threshold_ms = match ctx.int::<i64>(v) {
                        Ok(ms) => ms,
                        Err(_) => {
                            warnings.push(ctx.warn(format!(
                                "invalid {} {v:?}: using the default {DEFAULT_FSYNC_WARNING_THRESHOLD_MS}",
                                p.key
                            )));
                            DEFAULT_FSYNC_WARNING_THRESHOLD_MS
                        }
                    };
                }
                "snapshotWriteRate" => c.snapshot_write_rate_mb = ctx.int(v)?,
                "metricsProvider.className" => c.metrics_provider_class = Some(v.to_string()),
                "slowRequestThresholdMs" => c.slow_request_threshold_ms = ctx.int(v)?,
                "slowRequestLogPerSecond" => c.slow_request_log_per_second = ctx.int(v)?,
                "loadAttribution" => c.load_attribution = v != "no" && v != "false",
                _ if numbered(bare, "server.") => {
                    let id = ctx.int::<u64>(&bare["server.".len()..])?;
                    let spec =
                        parse_server(id, v).map_err(|m| ctx.err(ConfigErrorKind::BadValue, m))?;
                    c.servers.insert(id, spec);
                }
                _ if bare.starts_with("admin.") => {
                    c.admin
                        .insert(bare["admin.".len()..].to_string(), v.to_string());
                }
                _ if bare.starts_with("metricsProvider.") => {
                    c.metrics_provider
                        .insert(bare["metricsProvider.".len()..].to_string(), v.to_string());
                }
                _ => {}
            }
            // Keys QuorumPeerConfig does not parse become system properties.
            if !is_direct_key(&p.key) {
                let prop = if p.key.starts_with("zookeeper.") {
                    p.key.clone()
                } else {
                    format!("zookeeper.{}", p.key)
                };
                c.system_properties.insert(prop, v.to_string());
            }
            match spec.map(|s| s.status) {
                Some(Supported) | Some(Cosmetic) => {}
                Some(Recorded(what)) => warnings.push(ctx.warn(format!(
                    "key {} is recorded but not supported yet: {what}",
                    p.key
                ))),
                None => warnings.push(ctx.warn(format!(
                    "unknown key {}: ZooKeeper would set the system property zookeeper.{}; RingKeeper ignores it (a typo?)",
                    p.key, bare
                ))),
            }
        }

        // Required settings and relations, in QuorumPeerConfig's order.
        c.data_dir = data_dir.ok_or_else(|| {
            ConfigError::new(
                ConfigErrorKind::Missing,
                Some("dataDir"),
                None,
                "dataDir is not set".to_string(),
            )
        })?;
        c.data_log_dir = data_log_dir.unwrap_or_else(|| c.data_dir.clone());
        if c.client_port_address.is_some() && c.client_port.is_none() {
            return Err(ConfigError::new(
                ConfigErrorKind::Missing,
                Some("clientPort"),
                line_of(&seen, "clientPortAddress"),
                "clientPortAddress is set but clientPort is not set".to_string(),
            ));
        }
        if c.tick_time_ms == 0 {
            return Err(ConfigError::new(
                ConfigErrorKind::BadValue,
                Some("tickTime"),
                line_of(&seen, "tickTime"),
                "tickTime is not set (it is 0)".to_string(),
            ));
        }
        c.min_session_timeout_ms = min_timeout.unwrap_or(c.tick_time_ms.saturating_mul(2));
        c.max_session_timeout_ms = max_timeout.unwrap_or(c.tick_time_ms.saturating_mul(20));
        if c.min_session_timeout_ms > c.max_session_timeout_ms {
            return Err(ConfigError::new(
                ConfigErrorKind::Inconsistent,
                Some("minSessionTimeout"),
                line_of(&seen, "minSessionTimeout").or(line_of(&seen, "maxSessionTimeout")),
                format!(
                    "minSessionTimeout must not be larger than maxSessionTimeout ({} > {})",
                    c.min_session_timeout_ms, c.max_session_timeout_ms
                ),
            ));
        }

        // The server list from the dynamic file (QuorumPeerConfig.parse): zoo.cfg may
        // then hold no server.N line of its own.
        if let Some(dyn_path) = c.dynamic_config_file.clone() {
            if let Some(k) = seen.keys().find(|k| {
                let b = bare_key(k);
                numbered(b, "server.") || numbered(b, "group.") || numbered(b, "weight.")
            }) {
                return Err(ConfigError::new(
                    ConfigErrorKind::Inconsistent,
                    Some(k),
                    line_of(&seen, k),
                    format!("parameter: {k} must be in a separate dynamic config file"),
                ));
            }
            let (servers, version) = read_dynamic_file(&dyn_path)?;
            c.servers = servers;
            c.config_version = version;
        }

        // Quorum shape (QuorumPeerConfig.parseDynamicConfig).
        let voters = c
            .servers
            .values()
            .filter(|s| s.peer_type == PeerType::Participant)
            .count();
        let observers = c.servers.len() - voters;
        if voters == 0 && observers > 0 {
            return Err(ConfigError::new(
                ConfigErrorKind::Inconsistent,
                Some("server.N"),
                None,
                "Observers w/o participants is an invalid configuration".to_string(),
            ));
        }
        if voters == 0 && !c.standalone_enabled {
            return Err(ConfigError::new(
                ConfigErrorKind::Inconsistent,
                Some("standaloneEnabled"),
                line_of(&seen, "standaloneEnabled"),
                "standaloneEnabled = false then number of participants should be >0".to_string(),
            ));
        }
        if voters == 1 && c.standalone_enabled {
            if observers > 0 {
                return Err(ConfigError::new(
                    ConfigErrorKind::Inconsistent,
                    Some("server.N"),
                    None,
                    "Observers w/o quorum is an invalid configuration".to_string(),
                ));
            }
            warnings.push(Warning {
                line: None,
                key: "server.N".to_string(),
                message: "only one server is listed: running standalone (ZooKeeper logs this as an invalid configuration and ignores the line)".to_string(),
            });
        }
        if voters == 2 || (voters > 2 && voters % 2 == 0) {
            warnings.push(Warning {
                line: None,
                key: "server.N".to_string(),
                message: if voters == 2 {
                    "No server failure will be tolerated. You need at least 3 servers.".to_string()
                } else {
                    "Non-optimal configuration, consider an odd number of servers.".to_string()
                },
            });
        }

        // myid: given, or read from dataDir when present; required in an ensemble.
        c.my_id = self.my_id;
        if self.read_myid && c.my_id.is_none() {
            c.my_id = read_myid(&c.data_dir)?;
        }
        if !c.servers.is_empty() {
            if let Some(id) = c.my_id {
                if !c.servers.contains_key(&id) {
                    return Err(ConfigError::new(
                        ConfigErrorKind::Inconsistent,
                        Some("myid"),
                        None,
                        format!("myid {id} has no server.{id} line"),
                    ));
                }
            }
        }
        if c.is_distributed() {
            if c.init_limit == 0 {
                return Err(ConfigError::new(
                    ConfigErrorKind::Missing,
                    Some("initLimit"),
                    None,
                    "initLimit is not set".to_string(),
                ));
            }
            if c.sync_limit == 0 {
                return Err(ConfigError::new(
                    ConfigErrorKind::Missing,
                    Some("syncLimit"),
                    None,
                    "syncLimit is not set".to_string(),
                ));
            }
            if c.my_id.is_none() {
                return Err(ConfigError::new(
                    ConfigErrorKind::Missing,
                    Some("myid"),
                    None,
                    format!(
                        "myid file is missing: servers are listed, so {} must hold this server's id",
                        c.data_dir.join("myid").display()
                    ),
                ));
            }
        }

        // A client port, from clientPort or this server's server.N line.
        let from_server = c
            .my_id
            .and_then(|id| c.servers.get(&id))
            .and_then(|s| s.client.as_ref());
        if let (Some(addr), Some(port)) = (from_server, c.client_port) {
            // QuorumPeerConfig.setupClientPort: a specific clientPortAddress must equal the
            // server line's address; a wildcard one must agree on the port.
            let wildcard = match c.client_port_address.as_deref() {
                None | Some("0.0.0.0") | Some("::") | Some("[::]") => true,
                Some(_) => false,
            };
            let same_host = c.client_port_address.as_deref() == Some(addr.host.as_str());
            if addr.port != port || !(wildcard || same_host) {
                return Err(ConfigError::new(
                    ConfigErrorKind::Inconsistent,
                    Some("clientPort"),
                    line_of(&seen, "clientPort"),
                    format!(
                        "client address {}:{port} differs from the client address {addr} of this server's server.N line",
                        c.client_port_address.as_deref().unwrap_or("0.0.0.0")
                    ),
                ));
            }
        }
        // ZooKeeper accepts a secureClientPort alone (a TLS-only server).
        if from_server.is_none() && c.client_port.is_none() && c.secure_client_port.is_none() {
            return Err(ConfigError::new(
                ConfigErrorKind::Missing,
                Some("clientPort"),
                None,
                "clientPort is not set (nor a client address on this server's server.N line, nor secureClientPort)"
                    .to_string(),
            ));
        }
        Ok((c, warnings))
    }
}

fn line_of(seen: &BTreeMap<String, Property>, key: &str) -> Option<usize> {
    seen.get(key).map(|p| p.line).filter(|&l| l > 0)
}

/// Keys `QuorumPeerConfig.parseProperties` handles itself; every other key becomes the
/// system property `zookeeper.<key>`.
fn is_direct_key(key: &str) -> bool {
    const DIRECT: &[&str] = &[
        "dataDir",
        "dataLogDir",
        "clientPort",
        "localSessionsEnabled",
        "localSessionsUpgradingEnabled",
        "clientPortAddress",
        "secureClientPort",
        "secureClientPortAddress",
        "observerMasterPort",
        "clientPortListenBacklog",
        "tickTime",
        "maxClientCnxns",
        "minSessionTimeout",
        "maxSessionTimeout",
        "initLimit",
        "syncLimit",
        "connectToLearnerMasterLimit",
        "electionAlg",
        "quorumListenOnAllIPs",
        "peerType",
        "syncEnabled",
        "dynamicConfigFile",
        "autopurge.snapRetainCount",
        "autopurge.purgeInterval",
        "standaloneEnabled",
        "reconfigEnabled",
        "sslQuorum",
        "portUnification",
        "sslQuorumReloadCertFiles",
        "quorum.auth.enableSasl",
        "quorum.auth.serverRequireSasl",
        "quorum.auth.learnerRequireSasl",
        "quorum.auth.learner.saslLoginContext",
        "quorum.auth.server.saslLoginContext",
        "quorum.auth.kerberos.servicePrincipal",
        "quorum.cnxn.threads.size",
        "jvm.pause.info-threshold.ms",
        "jvm.pause.warn-threshold.ms",
        "jvm.pause.sleep.time.ms",
        "jvm.pause.monitor",
        "multiAddress.enabled",
        "multiAddress.reachabilityCheckTimeoutMs",
        "multiAddress.reachabilityCheckEnabled",
        "oraclePath",
        "version",
    ];
    DIRECT.contains(&key)
        || key.starts_with("metricsProvider.")
        || numbered(key, "server.")
        || numbered(key, "group.")
        || numbered(key, "weight.")
}

/// The key and line a value came from, for error messages.
struct Ctx<'a> {
    key: &'a str,
    line: Option<usize>,
}

impl Ctx<'_> {
    /// [`Ctx::int`], refused above `max` with a message naming it in `unit`s.
    fn int_at_most<T>(&self, v: &str, max: T, unit: &str) -> Result<T, ConfigError>
    where
        T: TryFrom<i128> + PartialOrd + std::fmt::Display,
    {
        let n: T = self.int(v)?;
        if n > max {
            return Err(self.err(
                ConfigErrorKind::BadValue,
                format!("{n}: at most {max} {unit}"),
            ));
        }
        Ok(n)
    }
    fn err(&self, kind: ConfigErrorKind, message: String) -> ConfigError {
        ConfigError::new(kind, Some(self.key), self.line, message)
    }
    fn warn(&self, message: String) -> Warning {
        Warning {
            line: self.line,
            key: self.key.to_string(),
            message,
        }
    }
    /// A decimal integer as Java's `Integer.parseInt` reads it (optional sign), in range.
    /// Java's `Double.parseDouble` for the plain decimal forms zoo.cfg files use.
    fn float(&self, v: &str) -> Result<f64, ConfigError> {
        v.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| self.err(ConfigErrorKind::BadValue, format!("{v:?} is not a number")))
    }

    fn int<T: TryFrom<i128>>(&self, v: &str) -> Result<T, ConfigError> {
        let digits = v.strip_prefix('+').unwrap_or(v);
        let parsed = if digits.is_empty()
            || !digits
                .trim_start_matches('-')
                .bytes()
                .all(|b| b.is_ascii_digit())
        {
            None
        } else {
            digits.parse::<i128>().ok()
        };
        match parsed {
            Some(n) => T::try_from(n)
                .map_err(|_| self.err(ConfigErrorKind::BadValue, format!("{v} is out of range"))),
            None => Err(self.err(ConfigErrorKind::BadValue, format!("{v:?} is not a number"))),
        }
    }
    fn port(&self, v: &str) -> Result<u16, ConfigError> {
        let n: u16 = self.int(v)?;
        if n == 0 {
            return Err(self.err(ConfigErrorKind::BadValue, "port 0 is not a port".into()));
        }
        Ok(n)
    }
    /// A session timeout: ZooKeeper's -1 means "derive from tickTime"; other negatives
    /// are refused.
    fn timeout(&self, v: &str) -> Result<Option<u32>, ConfigError> {
        let n: i64 = self.int(v)?;
        match n {
            -1 => Ok(None),
            n if n < 0 => Err(self.err(ConfigErrorKind::BadValue, format!("{n} is negative"))),
            n => u32::try_from(n)
                .map(Some)
                .map_err(|_| self.err(ConfigErrorKind::BadValue, format!("{n} is out of range"))),
        }
    }
    /// `QuorumPeerConfig.parseBoolean`: "true" or "false", any case.
    fn boolean(&self, v: &str) -> Result<bool, ConfigError> {
        if v.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if v.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err(self.err(
                ConfigErrorKind::BadValue,
                format!(
                    "Invalid option {v} for {}. Choose 'true' or 'false.'",
                    self.key
                ),
            ))
        }
    }
}

/// Splits `host:port` where the host may be a bracketed IPv6 literal
/// (`ConfigUtils.getHostAndPort`).
fn host_and_port_parts(s: &str) -> Result<Vec<String>, String> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest
            .find(']')
            .ok_or_else(|| format!("{s} starts with '[' but has no matching ']'"))?;
        let host = rest[..close].to_string();
        let tail = &rest[close + 1..];
        let mut parts = vec![host];
        if !tail.is_empty() {
            let tail = tail
                .strip_prefix(':')
                .ok_or_else(|| format!("{s} does not have : after ]"))?;
            parts.extend(tail.split(':').map(str::to_string));
        }
        Ok(parts)
    } else {
        Ok(s.split(':').map(str::to_string).collect())
    }
}

const SERVER_FORMAT: &str = "does not have the form host:quorumPort:electionPort[:participant|observer][;[clientHost:]clientPort]";

/// Parses the value of a `server.N` line.
pub fn parse_server(id: u64, value: &str) -> Result<ServerSpec, String> {
    let halves: Vec<&str> = value.split(';').collect();
    if halves.len() > 2 {
        return Err(format!("{value:?} {SERVER_FORMAT}"));
    }
    if halves[0].contains('|') {
        return Err(format!(
            "{value:?}: several addresses per server (multiAddress) are not supported"
        ));
    }
    let parts = host_and_port_parts(halves[0].trim())?;
    if parts.len() < 3 || parts.len() > 4 || parts[0].is_empty() {
        return Err(format!("{value:?} {SERVER_FORMAT}"));
    }
    let port = |s: &str, what: &str| -> Result<u16, String> {
        match s.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("{value:?}: {what} {s:?} is not a port")),
        }
    };
    let quorum_port = port(&parts[1], "quorum port")?;
    let election_port = port(&parts[2], "election port")?;
    if quorum_port == election_port {
        return Err(format!(
            "{value:?}: quorum and election port must be different"
        ));
    }
    let peer_type = match parts.get(3).map(|s| s.trim().to_ascii_lowercase()) {
        None => PeerType::Participant,
        Some(t) if t == "participant" => PeerType::Participant,
        Some(t) if t == "observer" => PeerType::Observer,
        Some(t) => {
            return Err(format!(
                "{value:?}: unknown peer type {t:?} (participant or observer)"
            ))
        }
    };
    let client = match halves.get(1) {
        None => None,
        Some(c) => {
            let cp = host_and_port_parts(c.trim())?;
            match cp.as_slice() {
                [p] => Some(ClientAddress {
                    host: "0.0.0.0".to_string(),
                    port: port(p, "client port")?,
                }),
                [h, p] if !h.is_empty() => Some(ClientAddress {
                    host: h.clone(),
                    port: port(p, "client port")?,
                }),
                _ => return Err(format!("{value:?} {SERVER_FORMAT}")),
            }
        }
    };
    Ok(ServerSpec {
        id,
        host: parts[0].clone(),
        quorum_port,
        election_port,
        peer_type,
        client,
    })
}

/// The version a dynamic file's name carries (`QuorumPeerConfig.getVersionFromFilename`):
/// the hex number after its last dot; 0 when there is none (`zoo.cfg.dynamic`).
pub fn version_from_filename(path: &Path) -> u64 {
    let name = path.to_string_lossy();
    name.rsplit_once('.')
        .and_then(|(_, hex)| u64::from_str_radix(hex, 16).ok())
        .unwrap_or(0)
}

/// Reads a dynamic config file as `QuorumPeerConfig.parse` and `parseDynamicConfig`
/// do: Java properties holding `server.N` lines only; no `version` key (the version is
/// in the file's name); hierarchical quorums (`group.N`, `weight.N`) are not
/// supported here.
fn read_dynamic_file(path: &Path) -> Result<(BTreeMap<u64, ServerSpec>, u64), ConfigError> {
    let key = Some("dynamicConfigFile");
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            ConfigErrorKind::Io,
            key,
            None,
            format!("Error processing {}: {e}", path.display()),
        )
    })?;
    let mut servers = BTreeMap::new();
    for p in parse_properties(&text) {
        let at = |m: String| {
            ConfigError::new(
                ConfigErrorKind::BadValue,
                Some(&p.key),
                None,
                format!("{} line {}: {m}", path.display(), p.line),
            )
        };
        if p.key == "version" {
            return Err(at("dynamic file shouldn't have version inside".into()));
        }
        if p.key.starts_with("group") || p.key.starts_with("weight") {
            return Err(at(
                "hierarchical quorums (group.N, weight.N) are not supported".into(),
            ));
        }
        if !numbered(&p.key, "server.") {
            return Err(at(format!("Unrecognised parameter: {}", p.key)));
        }
        let id = p.key["server.".len()..]
            .parse::<u64>()
            .map_err(|e| at(e.to_string()))?;
        servers.insert(id, parse_server(id, &p.value).map_err(at)?);
    }
    Ok((servers, version_from_filename(path)))
}

/// Reads `dataDir/myid`: absent is fine (standalone), unreadable or not a number is not.
fn read_myid(data_dir: &Path) -> Result<Option<u64>, ConfigError> {
    let path = data_dir.join("myid");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigError::new(
            ConfigErrorKind::Io,
            Some("myid"),
            None,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    // ZooKeeper reads the first line and parses it as a long.
    let first = text.lines().next().unwrap_or("").trim();
    first.parse::<u64>().map(Some).map_err(|_| {
        ConfigError::new(
            ConfigErrorKind::BadValue,
            Some("myid"),
            None,
            format!("serverid {first} is not a number (in {})", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String, usize)> {
        parse_properties(text)
            .into_iter()
            .map(|p| (p.key, p.value, p.line))
            .collect()
    }

    #[test]
    fn properties_separators_comments_and_trimming() {
        let got =
            kv("# comment\n! also\n\n  a=1\nb = 2 \nc:3\nd 4\ne\tfive six\nf=\n  g  =  x=y  \n");
        let want = [
            ("a", "1", 4),
            ("b", "2", 5),
            ("c", "3", 6),
            ("d", "4", 7),
            ("e", "five six", 8),
            ("f", "", 9),
            ("g", "x=y", 10),
        ];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want.iter()) {
            assert_eq!((g.0.as_str(), g.1.as_str(), g.2), *w);
        }
    }

    #[test]
    fn properties_continuations_and_escapes() {
        let got = kv("list=a,\\\n    b,\\\n    c\nesc=tab\\there\\u0041\\\\\nkey\\=with=eq\n");
        assert_eq!(got[0], ("list".into(), "a,b,c".into(), 1));
        assert_eq!(got[1], ("esc".into(), "tab\there\u{41}\\".into(), 4));
        assert_eq!(got[2], ("key=with".into(), "eq".into(), 5));
    }

    #[test]
    fn server_line_forms() {
        let s = parse_server(1, "zk1:2888:3888").unwrap();
        assert_eq!(
            (s.host.as_str(), s.quorum_port, s.election_port),
            ("zk1", 2888, 3888)
        );
        assert_eq!(s.peer_type, PeerType::Participant);
        assert_eq!(s.client, None);
        let s = parse_server(2, "zk2:2888:3888:observer;2181").unwrap();
        assert_eq!(s.peer_type, PeerType::Observer);
        assert_eq!(
            s.client,
            Some(ClientAddress {
                host: "0.0.0.0".into(),
                port: 2181
            })
        );
        let s = parse_server(3, "[::1]:2888:3888:participant;127.0.0.1:2182").unwrap();
        assert_eq!(s.host, "::1");
        assert_eq!(
            s.client,
            Some(ClientAddress {
                host: "127.0.0.1".into(),
                port: 2182
            })
        );
        for bad in [
            "zk1:2888",
            "zk1:2888:3888:leader",
            "zk1:x:3888",
            "zk1:2888:2888",
            "a:1:2|b:1:2",
            "zk1:1:2;a:b:c",
            "zk1:1:2;x;y",
        ] {
            assert!(parse_server(9, bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn whitelist_rules() {
        let (w, unknown) = FourLetterWhitelist::parse(" ruok , stat,bogus,");
        assert!(w.allows("ruok") && w.allows("stat") && w.allows("srvr"));
        assert!(!w.allows("mntr"));
        assert_eq!(unknown, vec!["bogus".to_string()]);
        let all = FourLetterWhitelist::all();
        assert!(FOUR_LETTER_WORDS.iter().all(|c| all.allows(c)));
        let d = FourLetterWhitelist::default();
        assert_eq!(d.commands(), ["srvr".to_string()]);
    }

    #[test]
    fn key_spec_families_and_prefix() {
        assert_eq!(key_spec("server.12").unwrap().name, "server.N");
        assert_eq!(key_spec("admin.idleTimeout").unwrap().name, "admin.*");
        // The AdminServer's own keys have rows of their own.
        assert_eq!(
            key_spec("admin.serverPort").unwrap().name,
            "admin.serverPort"
        );
        assert_eq!(key_spec("zookeeper.snapCount").unwrap().name, "snapCount");
        assert_eq!(
            key_spec("metricsProvider.httpPort").unwrap().name,
            "metricsProvider.*"
        );
        assert!(key_spec("zookeeper.tickTime").is_none());
        assert!(key_spec("server.x").is_none());
        assert!(key_spec("tikTime").is_none());
    }
}
