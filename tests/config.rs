//! zoo.cfg loading end to end: files on disk, myid, defaults, warnings and errors.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use ringkeeper::config::{
    default_shards, Config, ConfigBuilder, ConfigErrorKind, KeyStatus, PeerType, Warning,
    DEFAULT_JUTE_MAXBUFFER, KEYS, MAX_LOG_SYNC_INTERVAL_US, MAX_SHARDS,
};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        // Tests run in parallel threads: a counter keeps their directories apart.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "ringkeeper-config-{}-{name}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("data")).unwrap();
        TempDir(dir)
    }
    fn write_cfg(&self, body: &str) -> PathBuf {
        let body = body.replace("@DATA@", &self.0.join("data").display().to_string());
        let path = self.0.join("zoo.cfg");
        fs::write(&path, body).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn sample_standalone_file_loads_with_zookeeper_defaults() {
    let t = TempDir::new("sample");
    let cfg = t.write_cfg("tickTime=2000\ndataDir=@DATA@\nclientPort=2181\n");
    let (c, warnings) = Config::load(&cfg).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.tick_time_ms, 2000);
    assert_eq!(c.data_log_dir, c.data_dir);
    assert_eq!(c.min_session_timeout_ms, 4000);
    assert_eq!(c.max_session_timeout_ms, 40000);
    assert_eq!(c.max_client_cnxns, 60);
    assert_eq!(c.max_cnxns, 0);
    assert_eq!(c.jute_maxbuffer, DEFAULT_JUTE_MAXBUFFER);
    assert!(c.four_letter_whitelist.allows("srvr"));
    assert!(!c.four_letter_whitelist.allows("ruok"));
    assert_eq!(c.client_address().to_string(), "0.0.0.0:2181");
    assert_eq!(c.my_id, None);
    assert!(!c.is_distributed());
    assert!(c.force_sync && !c.skip_acl && !c.extended_types_enabled);
    assert_eq!(c.snap_count, 100_000);
    assert_eq!(c.snap_retain_count, 3);
    assert_eq!(c.config_path.as_deref(), Some(cfg.as_path()));
}

#[test]
fn tick_time_defaults_to_3000_when_absent() {
    let (c, _) = ConfigBuilder::new()
        .data_dir("d")
        .client_port(2181)
        .build()
        .unwrap();
    assert_eq!(c.tick_time_ms, 3000);
    assert_eq!(
        (c.min_session_timeout_ms, c.max_session_timeout_ms),
        (6000, 60000)
    );
}

#[test]
fn system_property_keys_are_accepted_as_users_write_them() {
    let t = TempDir::new("sysprops");
    let cfg = t.write_cfg(
        "dataDir=@DATA@\nclientPort=2181\n\
         4lw.commands.whitelist=ruok, mntr,\\\n   stat\n\
         zookeeper.DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n\
         jute.maxbuffer=4194304\nextendedTypesEnabled=true\nskipACL=yes\nmaxCnxns=500\n\
         zookeeper.globalOutstandingLimit=2000\nsnapSizeLimitInKb=1024\n\
         connectionMaxTokens=50\nconnectionDropIncrease=0.5\nlargeRequestThreshold=0\n\
         largeRequestMaxBytes=-3\nnio.sessionlessCnxnTimeout=2500\n",
    );
    let (c, warnings) = Config::load(&cfg).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    for cmd in ["ruok", "mntr", "stat", "srvr"] {
        assert!(c.four_letter_whitelist.allows(cmd), "{cmd}");
    }
    assert!(!c.four_letter_whitelist.allows("dump"));
    assert_eq!(
        c.super_digest.as_deref(),
        Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=")
    );
    assert_eq!(c.jute_maxbuffer, 4 << 20);
    assert!(c.extended_types_enabled && c.skip_acl);
    assert_eq!((c.max_cnxns, c.global_outstanding_limit), (500, 2000));
    assert_eq!(c.snap_size_limit_kb, 1024);
    assert_eq!(c.conn_throttle.max_tokens, 50);
    assert_eq!(c.conn_throttle.drop_increase, 0.5);
    // As ZooKeeperServer: a threshold of 0 is off (-1), a non-positive max is ignored.
    assert_eq!(c.large_requests.threshold, -1);
    assert_eq!(c.large_requests.max_bytes, 100 << 20);
    assert_eq!(c.sessionless_cnxn_timeout_ms, 2500);
    // ZooKeeper's view: zookeeper.<key> system properties.
    assert_eq!(c.system_properties["zookeeper.jute.maxbuffer"], "4194304");
    assert_eq!(
        c.system_properties["zookeeper.DigestAuthenticationProvider.superDigest"],
        "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
    );
    assert!(!c.system_properties.contains_key("zookeeper.dataDir"));
}

#[test]
fn superdigest_without_prefix_too() {
    let (c, w) = ConfigBuilder::new()
        .data_dir("d")
        .client_port(1)
        .set("DigestAuthenticationProvider.superDigest", "super:abc=")
        .build()
        .unwrap();
    assert!(w.is_empty());
    assert_eq!(c.super_digest.as_deref(), Some("super:abc="));
}

#[test]
fn unknown_and_recorded_keys_warn_with_their_line() {
    let t = TempDir::new("warn");
    let cfg = t.write_cfg(
        "dataDir=@DATA@\nclientPort=2181\ntikTime=2000\nsnapCount=5000\nquorumListenOnAllIPs=true\n\
         admin.serverPort=8080\nnio.numWorkerThreads=8\ndigest.enabled=false\n",
    );
    let (c, warnings) = Config::load(&cfg).unwrap();
    let lines: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 3, "{lines:?}");
    assert_eq!(warnings[0].line, Some(3));
    assert!(lines[0].contains("unknown key tikTime"), "{}", lines[0]);
    // snapCount is acted on: no warning for line 4.
    assert!(
        lines[1].starts_with("line 5: key quorumListenOnAllIPs is recorded but not supported yet:"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("line 8: key digest.enabled is recorded but not supported yet:"),
        "{}",
        lines[2]
    );
    assert_eq!(c.snap_count, 5000);
    assert_eq!(c.admin["serverPort"], "8080");
    assert_eq!(c.system_properties["zookeeper.tikTime"], "2000");
}

#[test]
fn duplicate_keys_last_wins_with_a_warning() {
    let t = TempDir::new("dup");
    let cfg = t.write_cfg("dataDir=@DATA@\nclientPort=2181\nclientPort=2182\n");
    let (c, warnings) = Config::load(&cfg).unwrap();
    assert_eq!(c.client_port, Some(2182));
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].message.contains("lines 2 and 3"));
}

fn load_err(body: &str) -> ringkeeper::config::ConfigError {
    let t = TempDir::new("err");
    let cfg = t.write_cfg(body);
    Config::load(&cfg).unwrap_err()
}

#[test]
fn errors_name_key_and_line() {
    let e = load_err("dataDir=@DATA@\nclientPort=21x81\n");
    assert_eq!(
        (e.kind, e.key.as_deref(), e.line),
        (ConfigErrorKind::BadValue, Some("clientPort"), Some(2))
    );
    assert!(e.to_string().starts_with("line 2: clientPort: "), "{e}");

    let e = load_err("dataDir=@DATA@\nclientPort=2181\ntickTime=0\n");
    assert_eq!((e.key.as_deref(), e.line), (Some("tickTime"), Some(3)));

    let e = load_err("clientPort=2181\n");
    assert_eq!(
        (e.kind, e.key.as_deref()),
        (ConfigErrorKind::Missing, Some("dataDir"))
    );

    let e = load_err("dataDir=@DATA@\nclientPort=2181\nminSessionTimeout=70000\n");
    assert_eq!(e.kind, ConfigErrorKind::Inconsistent);
    assert!(e
        .message
        .contains("minSessionTimeout must not be larger than maxSessionTimeout"));

    let e = load_err("dataDir=@DATA@\nclientPort=2181\nstandaloneEnabled=maybe\n");
    assert_eq!(e.line, Some(3));
    assert!(e.message.contains("Choose 'true' or 'false.'"));

    let e = load_err("dataDir=@DATA@\nclientPort=2181\nserver.1=zk1:2888\n");
    assert_eq!((e.key.as_deref(), e.line), (Some("server.1"), Some(3)));

    let e = load_err("dataDir=@DATA@\nclientPort=70000\n");
    assert!(e.message.contains("out of range"), "{e}");

    let e = load_err("dataDir=@DATA@\nclientPortAddress=127.0.0.1\n");
    assert_eq!(e.key.as_deref(), Some("clientPort"));

    let e = load_err("dataDir=@DATA@\n");
    assert!(e.message.contains("clientPort is not set"));

    let e = load_err("dataDir=@DATA@\nclientPort=1\nelectionAlg=1\n");
    assert!(e.message.contains("Only 3 is supported"));
}

#[test]
fn missing_file_is_an_io_error() {
    let e = Config::load(std::path::Path::new("no/such/zoo.cfg")).unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::Io);
}

const ENSEMBLE: &str =
    "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=@DATA@\nclientPort=2181\n\
server.1=zk1:2888:3888\nserver.2=zk2:2888:3888\nserver.3=zk3:2888:3888;127.0.0.1:2181\n\
server.4=zk4:2888:3888:observer\n";

#[test]
fn ensemble_needs_myid() {
    let e = load_err(ENSEMBLE);
    assert_eq!(
        (e.kind, e.key.as_deref()),
        (ConfigErrorKind::Missing, Some("myid"))
    );
    assert!(e.message.contains("myid file is missing"));
}

#[test]
fn ensemble_with_myid() {
    let t = TempDir::new("ensemble");
    let cfg = t.write_cfg(ENSEMBLE);
    fs::write(t.0.join("data/myid"), "3\n").unwrap();
    let (c, warnings) = Config::load(&cfg).unwrap();
    assert_eq!(c.my_id, Some(3));
    assert!(c.is_distributed());
    assert_eq!(c.servers.len(), 4);
    assert_eq!(c.servers[&4].peer_type, PeerType::Observer);
    // This server's client address comes from its server.3 line.
    assert_eq!(c.client_address().to_string(), "127.0.0.1:2181");
    // server.N lines are acted on: no warning names them.
    assert!(
        !warnings.iter().any(|w| w.message.contains("server.")),
        "{warnings:?}"
    );
    // A client address that contradicts the server line is refused, as in ZooKeeper.
    fs::write(
        &cfg,
        ENSEMBLE
            .replace("@DATA@", &t.0.join("data").display().to_string())
            .replace("clientPort=2181", "clientPort=2182"),
    )
    .unwrap();
    let e = Config::load(&cfg).unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::Inconsistent);
    assert!(
        e.message
            .contains("differs from the client address 127.0.0.1:2181"),
        "{e}"
    );
}

#[test]
fn ensemble_bad_myid_and_unlisted_myid() {
    let t = TempDir::new("badmyid");
    let cfg = t.write_cfg(&ENSEMBLE.replace(";127.0.0.1:2181", ""));
    fs::write(t.0.join("data/myid"), "three\n").unwrap();
    let e = Config::load(&cfg).unwrap_err();
    assert_eq!(
        (e.kind, e.key.as_deref()),
        (ConfigErrorKind::BadValue, Some("myid"))
    );
    fs::write(t.0.join("data/myid"), "7\n").unwrap();
    let e = Config::load(&cfg).unwrap_err();
    assert!(e.message.contains("no server.7 line"), "{e}");
    fs::write(t.0.join("data/myid"), "2").unwrap();
    let (c, w) = Config::load(&cfg).unwrap();
    assert_eq!(c.client_address().to_string(), "0.0.0.0:2181");
    // Four server.N lines (recorded) plus "consider an odd number" is not printed: 3 voters.
    assert!(w.iter().all(|w| w.key.starts_with("server.")), "{w:?}");
}

#[test]
fn ensemble_without_init_limit() {
    let e = load_err(&ENSEMBLE.replace("initLimit=10\n", ""));
    // myid is checked after initLimit, as in QuorumPeerConfig.checkValidity.
    assert_eq!(e.key.as_deref(), Some("initLimit"));
}

#[test]
fn single_server_line_runs_standalone_with_a_warning() {
    let (c, w) = ConfigBuilder::new()
        .data_dir("d")
        .client_port(2181)
        .set("server.1", "zk1:2888:3888")
        .build()
        .unwrap();
    assert!(!c.is_distributed());
    assert!(w
        .iter()
        .any(|w| w.message.contains("only one server is listed")));
}

#[test]
fn standalone_default_is_loopback_2181() {
    let c = Config::standalone_default("data");
    assert_eq!(c.client_address().to_string(), "127.0.0.1:2181");
    assert_eq!(c.data_dir, PathBuf::from("data"));
    assert_eq!(c.tick_time_ms, 2000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(c.shard_count(), default_shards(cores));
}

#[test]
fn the_default_leaves_one_core_outside_the_loops_but_always_runs_one() {
    assert_eq!(default_shards(1), 1);
    assert_eq!(default_shards(2), 1);
    assert_eq!(default_shards(3), 2);
    assert_eq!(default_shards(16), 15);
    assert_eq!(
        default_shards(200),
        MAX_SHARDS,
        "a big machine gets the most loops a server runs"
    );
    // `shards` set says exactly how many, even as many as the cores.
    let (c, _) = ConfigBuilder::new()
        .data_dir("d")
        .client_port(1)
        .shards(2)
        .build()
        .unwrap();
    assert_eq!(c.shard_count(), 2);
}

#[test]
fn our_own_keys() {
    let (c, _) = ConfigBuilder::new()
        .data_dir("d")
        .client_port(1)
        .shards(3)
        .set("logSegmentSize", 8 << 20)
        .build()
        .unwrap();
    assert_eq!(c.shard_count(), 3);
    assert_eq!(c.log_segment_size, 8 << 20);
    let e = ConfigBuilder::new()
        .data_dir("d")
        .client_port(1)
        .shards(0)
        .build()
        .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("shards"));
    // More loops than a commit's mask names is a clear error, not a panic at start.
    let e = ConfigBuilder::new()
        .data_dir("d")
        .client_port(1)
        .shards(MAX_SHARDS + 1)
        .build()
        .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("shards"));
    assert!(
        e.to_string().contains(&format!("at most {MAX_SHARDS}")),
        "{e}"
    );
    let e = ConfigBuilder::new()
        .data_dir("d")
        .client_port(1)
        .set("logSegmentSize", 1_000_000)
        .build()
        .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("logSegmentSize"));
    let (c, warnings) = ConfigBuilder::new()
        .data_dir("d")
        .client_port(1)
        .set("logSync", "fdatasync")
        .set("bulkReadChildren", 100)
        .set("snapshotWriteRate", 0)
        .set("slowRequestThresholdMs", 5)
        .set("slowRequestLogPerSecond", 1)
        .set("loadAttribution", "on")
        .set("logSyncIntervalMicros", 1000)
        .build()
        .unwrap();
    // Ours are known keys: no "unknown key" warning for any of them.
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(c.log_fdatasync);
    assert_eq!(c.log_sync_interval_us, 1000);
    assert_eq!(c.bulk_read_children, 100);
    assert_eq!(c.snapshot_write_rate_mb, 0, "0: no limit");
    let (c, _) = ConfigBuilder::new()
        .data_dir("d")
        .client_port(1)
        .build()
        .unwrap();
    assert!(!c.log_fdatasync, "O_DSYNC by default");
    assert_eq!(
        c.log_sync_interval_us, 0,
        "writes spaced by nothing by default"
    );
    // A wait longer than the bound is a clear error, not a stalled log.
    let e = ConfigBuilder::new()
        .data_dir("d")
        .client_port(1)
        .set("logSyncIntervalMicros", MAX_LOG_SYNC_INTERVAL_US + 1)
        .build()
        .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("logSyncIntervalMicros"));
    assert_eq!(c.bulk_read_children, 16_384);
    assert_eq!(c.snapshot_write_rate_mb, 100, "100 MB/s by default");
    let e = ConfigBuilder::new()
        .data_dir("d")
        .client_port(1)
        .set("snapshotWriteRate", "fast")
        .build()
        .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("snapshotWriteRate"));
    let e = ConfigBuilder::new()
        .data_dir("d")
        .client_port(1)
        .set("logSync", "sometimes")
        .build()
        .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("logSync"));
}

#[test]
fn snap_retain_count_is_raised_to_three() {
    let (c, w) = ConfigBuilder::new()
        .data_dir("d")
        .client_port(1)
        .set("autopurge.snapRetainCount", 1)
        .build()
        .unwrap();
    assert_eq!(c.snap_retain_count, 3);
    assert!(w.iter().any(|w| w.message.contains("Defaulting to 3")));
}

#[test]
fn sample_configs_in_conf_load() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let (c, w) = Config::load(&root.join("conf/zoo.cfg")).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.client_address().to_string(), "127.0.0.1:2181");
    // The ensemble sample needs a myid; give it through the builder.
    let text = fs::read_to_string(root.join("conf/zoo-ensemble.cfg")).unwrap();
    let props = ringkeeper::config::parse_properties(&text);
    let (c, _) = ConfigBuilder::from_properties(&props)
        .my_id(1)
        .build()
        .unwrap();
    assert!(c.is_distributed());
    assert_eq!(c.servers.len(), 3);
}

#[test]
fn compat_doc_lists_every_key() {
    let doc = fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/compat.md"))
        .unwrap();
    for k in KEYS {
        let cell = format!("| `{}` |", k.name);
        assert!(
            doc.contains(&cell),
            "docs/compat.md has no row for {}",
            k.name
        );
        let row = doc.lines().find(|l| l.starts_with(&cell)).unwrap();
        // The status cell says exactly what the table says, reason included, so the
        // doc cannot keep claiming what the server stopped (or started) doing.
        let want = match k.status {
            KeyStatus::Supported => "supported".to_string(),
            KeyStatus::Recorded(what) => format!("recorded, not acted on: {what}"),
            KeyStatus::Cosmetic => "accepted (no effect here)".to_string(),
        };
        let status = row[cell.len()..].split('|').next().unwrap_or("").trim();
        assert_eq!(
            status, want,
            "docs/compat.md row for {} disagrees with config::KEYS",
            k.name
        );
    }
}

#[test]
fn jvm_flags_give_known_keys_under_the_files() {
    use ringkeeper::config::jvm_properties;
    assert_eq!(
        jvm_properties("-Xmx1g  -Da=b -Dflag -XX:+UseG1GC -Dc=d=e"),
        vec![
            ("a".to_string(), "b".to_string()),
            ("flag".to_string(), String::new()),
            ("c".to_string(), "d=e".to_string()),
        ]
    );
    let props = ringkeeper::config::parse_properties(
        "dataDir=/d\nclientPort=2181\nallowSaslFailedClients=false\n",
    );
    let (c, warnings) = ConfigBuilder::from_properties(&props)
        .jvm_flags(
            "-Djava.security.auth.login.config=/etc/jaas.conf -Dzookeeper.allowSaslFailedClients=true \
             -DallowSaslFailedClients=true -Dzookeeper.log.dir=/var/log -Xmx512m",
        )
        .build()
        .unwrap();
    assert_eq!(
        c.system_properties
            .get("zookeeper.java.security.auth.login.config")
            .map(String::as_str),
        Some("/etc/jaas.conf")
    );
    // zoo.cfg's value wins over the flag, and that is no duplicate.
    assert_eq!(
        c.system_properties
            .get("zookeeper.allowSaslFailedClients")
            .map(String::as_str),
        Some("false")
    );
    // JVM-only flags are not config keys: no "unknown key" warning for them.
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!c.system_properties.contains_key("zookeeper.log.dir"));
}

#[test]
fn the_jaas_file_key_in_zoo_cfg_reaches_the_system_properties() {
    let props = ringkeeper::config::parse_properties(
        "dataDir=/d\nclientPort=2181\njava.security.auth.login.config=/etc/zk/jaas.conf\n\
         authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n",
    );
    let (c, warnings) = ConfigBuilder::from_properties(&props).build().unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let sp = &c.system_properties;
    assert_eq!(
        sp.get("zookeeper.java.security.auth.login.config")
            .map(String::as_str),
        Some("/etc/zk/jaas.conf")
    );
    assert!(sp.contains_key("zookeeper.authProvider.1"));
}

/// `dynamicConfigFile`: the server lines come from that file and its name's hex suffix
/// is the config's version (QuorumPeerConfig.getVersionFromFilename); zoo.cfg may then
/// hold no server line, and the dynamic file no version or other key.
#[test]
fn dynamic_config_file_holds_the_servers_and_names_the_version() {
    let t = TempDir::new("dynamic");
    let dynamic = t.0.join("zoo.cfg.dynamic.100000000");
    fs::write(
        &dynamic,
        "server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\n\
         server.2=127.0.0.1:2889:3889:participant;127.0.0.1:2182\n\
         server.3=127.0.0.1:2890:3890:observer;127.0.0.1:2183",
    )
    .unwrap();
    fs::write(t.0.join("data/myid"), "2\n").unwrap();
    let body = format!(
        "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=@DATA@\nreconfigEnabled=true\n\
         dynamicConfigFile={}\n",
        dynamic.display()
    );
    let cfg = t.write_cfg(&body);
    let (c, warnings) = Config::load(&cfg).unwrap();
    // Two voters: only ZooKeeper's "no failure tolerated" warning.
    assert!(warnings.iter().all(|w| w.key == "server.N"), "{warnings:?}");
    assert!(c.reconfig_enabled && c.is_distributed());
    assert_eq!(c.config_version, 0x100000000);
    assert_eq!(c.servers.len(), 3);
    assert_eq!(c.servers[&3].peer_type, PeerType::Observer);
    assert_eq!(c.client_address().to_string(), "127.0.0.1:2182");
    assert_eq!(
        ringkeeper::dynconfig::config_text(&c.servers, c.config_version),
        "server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\n\
         server.2=127.0.0.1:2889:3889:participant;127.0.0.1:2182\n\
         server.3=127.0.0.1:2890:3890:observer;127.0.0.1:2183\nversion=100000000"
    );

    // A name without a hex suffix: version 0.
    let plain = t.0.join("zoo.cfg.dynamic");
    fs::copy(&dynamic, &plain).unwrap();
    t.write_cfg(&body.replace(&dynamic.display().to_string(), &plain.display().to_string()));
    assert_eq!(Config::load(&cfg).unwrap().0.config_version, 0);

    // A server line left in zoo.cfg beside the pointer is refused, as ZooKeeper does.
    t.write_cfg(&format!("{body}server.4=127.0.0.1:2891:3891\n"));
    let e = Config::load(&cfg).unwrap_err();
    assert!(
        e.message
            .contains("server.4 must be in a separate dynamic config file"),
        "{e}"
    );

    // The dynamic file holds no version (it is in the name) and no other key.
    t.write_cfg(&body);
    fs::write(&dynamic, "server.1=127.0.0.1:2888:3888\nversion=1\n").unwrap();
    let e = Config::load(&cfg).unwrap_err();
    assert!(e.message.contains("shouldn't have version inside"), "{e}");
    fs::write(&dynamic, "server.1=127.0.0.1:2888:3888\ntickTime=5\n").unwrap();
    let e = Config::load(&cfg).unwrap_err();
    assert!(
        e.message.contains("Unrecognised parameter: tickTime"),
        "{e}"
    );
    // A missing file is an I/O error naming it.
    fs::remove_file(&dynamic).unwrap();
    let e = Config::load(&cfg).unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::Io);
}

/// reconfigEnabled defaults to false (ZooKeeper 3.5.3+) and takes only true or false.
#[test]
fn reconfig_enabled_defaults_to_false() {
    let t = TempDir::new("reconfig");
    let cfg = t.write_cfg(ENSEMBLE);
    fs::write(t.0.join("data/myid"), "3\n").unwrap();
    let (c, _) = Config::load(&cfg).unwrap();
    assert!(!c.reconfig_enabled);
    assert_eq!((c.config_version, c.dynamic_config_file.clone()), (0, None));
    t.write_cfg(&format!("{ENSEMBLE}reconfigEnabled=yes\n"));
    let e = Config::load(&cfg).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("reconfigEnabled"));
}

#[test]
fn secure_client_port_alone_is_a_tls_only_server() {
    let t = TempDir::new("tlsonly");
    let cfg = t.write_cfg(
        "dataDir=@DATA@\nsecureClientPort=2281\nsecureClientPortAddress=127.0.0.1\nclient.portUnification=true\n",
    );
    let (c, warnings) = Config::load(&cfg).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!c.has_plain_client_port());
    assert_eq!(c.client_address().to_string(), "127.0.0.1:2281");
    assert!(c.client_port_unification && !c.port_unification);
    let cfg = t.write_cfg("dataDir=@DATA@\nclientPort=2181\nsecureClientPort=2281\n");
    let (c, _) = Config::load(&cfg).unwrap();
    assert!(c.has_plain_client_port());
    assert_eq!(c.client_address().to_string(), "0.0.0.0:2181");
    assert_eq!(c.secure_client_port, Some(2281));
}

/// A minimal standalone config, with one more `key=value` if given: the config and the
/// warnings it loaded with.
fn with_key(kv: Option<(&str, &str)>) -> (Config, Vec<Warning>) {
    let mut b = ConfigBuilder::new().data_dir("d").client_port(1);
    if let Some((key, v)) = kv {
        b = b.set(key, v);
    }
    b.build().unwrap()
}

/// `snapshotSizeFactor` (with or without `zookeeper.`, as ZooKeeper's system property):
/// 0.33 by default; above 1 or not a number is the default with a warning, as
/// `ZKDatabase` does; negative is kept (no DIFF beyond the snapshot before last).
#[test]
fn snapshot_size_factor_is_read_as_zookeeper_reads_it() {
    let (c, _) = with_key(None);
    assert_eq!(c.snapshot_size_factor.0, 0.33);
    let (c, w) = with_key(Some(("snapshotSizeFactor", "0.5")));
    assert_eq!((c.snapshot_size_factor.0, w.len()), (0.5, 0), "{w:?}");
    let (c, w) = with_key(Some(("zookeeper.snapshotSizeFactor", "-1")));
    assert_eq!((c.snapshot_size_factor.0, w.len()), (-1.0, 0), "{w:?}");
    for bad in ["2", "lots"] {
        let (c, w) = with_key(Some(("snapshotSizeFactor", bad)));
        assert_eq!(c.snapshot_size_factor.0, 0.33);
        assert!(
            w.iter()
                .any(|w| w.message.contains("using the default 0.33")),
            "{bad}: {w:?}"
        );
    }
}

/// `fsync.warningthresholdms` (with or without `zookeeper.`): 1000 ms by default, any
/// integer kept (negative: every log write warns), not a number is the default with a
/// warning (ZooKeeper's Long.getLong takes the default silently).
#[test]
fn fsync_warning_threshold_is_read_as_zookeeper_reads_it() {
    let (c, _) = with_key(None);
    assert_eq!(c.fsync_warning_threshold_ms, 1000);
    let (c, w) = with_key(Some(("fsync.warningthresholdms", "50")));
    assert_eq!((c.fsync_warning_threshold_ms, w.len()), (50, 0), "{w:?}");
    let (c, w) = with_key(Some(("zookeeper.fsync.warningthresholdms", "-1")));
    assert_eq!((c.fsync_warning_threshold_ms, w.len()), (-1, 0), "{w:?}");
    for bad in ["1s", "", "99999999999999999999"] {
        let (c, w) = with_key(Some(("fsync.warningthresholdms", bad)));
        assert_eq!(c.fsync_warning_threshold_ms, 1000, "{bad}");
        assert!(
            w.iter()
                .any(|w| w.message.contains("using the default 1000")),
            "{bad}: {w:?}"
        );
    }
}
