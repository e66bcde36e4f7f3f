//! Our four-letter-word formatters against the outputs of Apache ZooKeeper 3.8 captured
//! in tests/data/4lw (see its README). Where we can feed the captured values, the text
//! must match byte for byte; `envi` and `mntr` are compared by their keys, in order.

use std::fs;
use std::path::PathBuf;

use ringkeeper::fourlw::*;

fn captured(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/4lw")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const ZK_VERSION: &str = "3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC";
const S0: i64 = 0x100000715a80000;
const S1: i64 = 0x100000715a80001;

fn conn(port: u16, ops: u32, recved: u64, sent: u64, session: Option<SessionConnInfo>) -> ConnInfo {
    ConnInfo {
        remote: java_socket_addr("127.0.0.1", port),
        interest_ops: ops,
        queued: 0,
        received: recved,
        sent,
        session,
    }
}

fn snapshot(connections: Vec<ConnInfo>, received: u64, sent: u64) -> ServerSnapshot {
    ServerSnapshot {
        version: ZK_VERSION.to_string(),
        mode: Mode::Standalone,
        latency: Latency {
            min_ms: 0,
            avg_ms: 5.0 / 3.0,
            max_ms: 7,
        },
        packets_received: received,
        packets_sent: sent,
        alive_connections: 3,
        outstanding_requests: 0,
        zxid: 7,
        node_count: 9,
        connections,
        proposal_sizes: None,
    }
}

#[test]
fn srvr_matches_zookeeper() {
    assert_eq!(srvr(&snapshot(vec![], 19, 20)), captured("srvr.txt"));
}

#[test]
fn srvr_first_line_and_mode_parse_as_tools_expect() {
    let out = srvr(&ServerSnapshot::new(Mode::Standalone));
    // zkServer.sh status: `... srvr | grep Mode`, then cuts after ": ".
    let mode = out.lines().find(|l| l.contains("Mode")).unwrap();
    assert_eq!(mode, "Mode: standalone");
    // kazoo.server_version: leading [\d.]* of the version.
    let version = out
        .lines()
        .next()
        .unwrap()
        .strip_prefix("Zookeeper version: ")
        .unwrap();
    let digits: String = version
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    assert_eq!(digits, "3.8.0");
    assert!(version.starts_with("3.8.0-ringkeeper-"));
}

#[test]
fn stat_matches_zookeeper() {
    let conns = vec![
        conn(45086, 1, 12, 13, None),
        conn(45092, 1, 3, 4, None),
        conn(45122, 0, 1, 0, None),
    ];
    assert_eq!(stat(&snapshot(conns, 20, 21)), captured("stat.txt"));
}

#[test]
fn leader_and_read_only_lines() {
    let mut s = ServerSnapshot::new(Mode::Leader);
    s.proposal_sizes = Some((36, 32, 120));
    assert!(
        srvr(&s).ends_with("Mode: leader\nNode count: 0\nProposal sizes last/min/max: 36/32/120\n")
    );
    let s = ServerSnapshot::new(Mode::ReadOnly);
    let out = srvr(&s);
    assert_eq!(
        out.lines().nth(1),
        Some("READ-ONLY mode; serving only read-only clients")
    );
    assert_eq!(isro(Mode::ReadOnly), "ro");
}

fn session(
    id: i64,
    cxid: i64,
    zxid: i64,
    est: i64,
    lresp: i64,
    avg: u64,
    max: u64,
) -> Option<SessionConnInfo> {
    Some(SessionConnInfo {
        session_id: id,
        last_op: "GETD".into(),
        established_ms: est,
        timeout_ms: 10000,
        last_cxid: cxid,
        last_zxid: zxid,
        last_response_ms: lresp,
        last_latency_ms: 0,
        min_latency_ms: 0,
        avg_latency_ms: avg,
        max_latency_ms: max,
    })
}

#[test]
fn cons_matches_zookeeper() {
    let conns = vec![
        conn(
            45086,
            1,
            12,
            13,
            session(S0, 0xb, 7, 1795589031006, 483221, 1, 7),
        ),
        conn(
            45092,
            1,
            3,
            4,
            session(S1, 2, 6, 1795589031023, 483216, 0, 1),
        ),
        conn(45146, 0, 1, 0, None),
    ];
    assert_eq!(cons(&conns), captured("cons.txt"));
}

#[test]
fn conf_matches_zookeeper() {
    let c = ConfInfo {
        client_port: 23481,
        secure_client_port: -1,
        data_dir: "/var/lib/zookeeper/version-2".into(),
        data_dir_size: 67109337,
        data_log_dir: "/var/lib/zookeeper/version-2".into(),
        data_log_size: 67109337,
        tick_time_ms: 2000,
        max_client_cnxns: 0,
        min_session_timeout_ms: 4000,
        max_session_timeout_ms: 40000,
        client_port_listen_backlog: -1,
        server_id: 0,
        quorum: None,
    };
    assert_eq!(conf(&c), captured("conf.txt"));
}

/// In an ensemble `conf` goes on as `QuorumZooKeeperServer.dumpConf` does: the quorum
/// settings, this server's role in the config in force, and that config after
/// `membership: ` (without a newline after its `version=` line).
#[test]
fn conf_in_an_ensemble_ends_with_the_membership() {
    let c = ConfInfo {
        server_id: 2,
        quorum: Some(ringkeeper::fourlw::QuorumConf {
            init_limit: 10,
            sync_limit: 5,
            election_port: 3889,
            quorum_port: 2889,
        }),
        ..ConfInfo::default()
    };
    let members = "server.1=127.0.0.1:2888:3888:participant\n\
                   server.2=127.0.0.1:2889:3889:observer\nversion=100000000";
    let out = ringkeeper::fourlw::conf_with_membership(&c, members);
    assert!(out.starts_with(&conf(&c)), "{out}");
    assert!(
        out.ends_with(
            "serverId=2\ninitLimit=10\nsyncLimit=5\nelectionAlg=3\nelectionPort=3889\n\
             quorumPort=2889\npeerType=1\nmembership: \nserver.1=127.0.0.1:2888:3888:participant\n\
             server.2=127.0.0.1:2889:3889:observer\nversion=100000000"
        ),
        "{out}"
    );
    // Standalone: no quorum part.
    assert_eq!(
        ringkeeper::fourlw::conf_with_membership(&ConfInfo::default(), ""),
        conf(&ConfInfo::default())
    );
}

#[test]
fn dirs_matches_zookeeper() {
    assert_eq!(dirs(67109337, 67109337), captured("dirs.txt"));
}

#[test]
fn watches_match_zookeeper() {
    let w = WatchSummary {
        connections: 2,
        paths: 2,
        total_watches: 2,
    };
    assert_eq!(wchs(&w), captured("wchs.txt"));
    let by_session = vec![
        (S0, vec!["/missing".to_string(), "/app/config".to_string()]),
        (S1, vec![]),
    ];
    assert_eq!(wchc(&by_session), captured("wchc.txt"));
    let by_path = vec![
        ("/missing".to_string(), vec![S0]),
        ("/app/config".to_string(), vec![S0]),
    ];
    assert_eq!(wchp(&by_path), captured("wchp.txt"));
}

#[test]
fn dump_matches_zookeeper() {
    let d = DumpInfo {
        session_sets: vec![ExpirySet {
            expire_at_ms: 1_795_589_041_000,
            items: vec![S1, S0],
        }],
        local_session_sets: None,
        learner_sessions: None,
        ephemerals: vec![
            (S1, vec!["/app/lock2".into()]),
            (S0, vec!["/app/lock".into()]),
        ],
        connection_sets: vec![
            ExpirySet {
                expire_at_ms: 1_795_589_037_000,
                items: vec![],
            },
            ExpirySet {
                expire_at_ms: 1_795_589_047_000,
                items: vec![
                    (java_socket_addr("127.0.0.1", 45086), S0),
                    (java_socket_addr("127.0.0.1", 45092), S1),
                    (java_socket_addr("127.0.0.1", 45180), 0),
                ],
            },
        ],
    };
    assert_eq!(dump(&d), captured("dump.txt"));
}

/// A follower with `localSessionsEnabled`, as ZooKeeper 3.8 answered `dump` (its
/// LearnerSessionTracker, the same in 3.9.5): the local sessions' expiry sets, then the
/// global sessions with their timeouts.
#[test]
fn dump_of_a_follower_with_local_sessions_matches_zookeeper() {
    let d = DumpInfo {
        session_sets: Vec::new(),
        local_session_sets: Some(vec![
            ExpirySet {
                expire_at_ms: 1_796_442_589_000,
                items: vec![],
            },
            ExpirySet {
                expire_at_ms: 1_796_442_591_000,
                items: vec![0x10000b07df20000],
            },
        ]),
        learner_sessions: Some(vec![]),
        ephemerals: vec![],
        connection_sets: vec![
            ExpirySet {
                expire_at_ms: 1_796_442_585_000,
                items: vec![],
            },
            ExpirySet {
                expire_at_ms: 1_796_442_595_000,
                items: vec![(java_socket_addr("127.0.0.1", 52628), 0)],
            },
        ],
    };
    let zk = "SessionTracker dump:\n\
              Local Session Sets (2)/(1):\n\
              0 expire at Sat Dec 05 03:49:49 UTC 2026:\n\
              1 expire at Sat Dec 05 03:49:51 UTC 2026:\n\
              \t0x10000b07df20000\n\
              Global Sessions(0):\n\
              ephemeral nodes dump:\n\
              Sessions with Ephemerals (0):\n\
              Connections dump:\n\
              Connections Sets (2)/(1):\n\
              0 expire at Sat Dec 05 03:49:45 UTC 2026:\n\
              1 expire at Sat Dec 05 03:49:55 UTC 2026:\n\
              \tip: /127.0.0.1:52628 sessionId: 0x0\n";
    assert_eq!(dump(&d), zk);
    // A leader prints its global sessions' expiry sets after "Global".
    let leader = DumpInfo {
        session_sets: vec![ExpirySet {
            expire_at_ms: 1_796_442_591_000,
            items: vec![S0],
        }],
        learner_sessions: None,
        ..d
    };
    assert!(dump(&leader).contains(
        "\t0x10000b07df20000\n\
         Global Session Sets (1)/(1):\n\
         1 expire at Sat Dec 05 03:49:51 UTC 2026:\n\
         \t0x100000715a80000\n\
         ephemeral nodes dump:\n"
    ));
}

#[test]
fn fixed_replies_match_zookeeper() {
    assert_eq!(ruok(), captured("ruok.txt"));
    assert_eq!(isro(Mode::Standalone), captured("isro.txt"));
    assert_eq!(crst(), captured("crst.txt"));
    assert_eq!(srst(), captured("srst.txt"));
    assert_eq!(trace_mask(DEFAULT_TRACE_MASK), captured("gtmk.txt"));
    assert_eq!(hash(&[]), captured("hash.txt"));
    assert_eq!(hash(&[(0x1a, 12345)]), "1a: 12345\n");
}

#[test]
fn whitelist_refusal_matches_zookeeper() {
    assert_eq!(refusal(Command::Stat), captured("refused-stat.txt"));
    assert_eq!(refusal(Command::Mntr), captured("refused-mntr.txt"));
}

fn keys(text: &str, sep: char) -> Vec<String> {
    text.lines()
        .map(|l| l.split(sep).next().unwrap().to_string())
        .collect()
}

#[test]
fn envi_has_zookeepers_keys_in_order() {
    let e = EnvInfo {
        version: full_version(),
        host_name: "localhost".into(),
        os_name: "Linux".into(),
        os_arch: "amd64".into(),
        os_version: "6.1".into(),
        user_name: "zk".into(),
        user_home: "/home/zk".into(),
        user_dir: "/var/lib/zookeeper".into(),
        memory_free_mb: 10,
        memory_max_mb: 20,
        memory_total_mb: 30,
    };
    let out = envi(&e);
    assert_eq!(keys(&out, '='), keys(&captured("envi.txt"), '='));
    assert!(out.contains(&format!("\nzookeeper.version={}\n", full_version())));
    assert!(out.ends_with("os.memory.free=10MB\nos.memory.max=20MB\nos.memory.total=30MB\n"));
}

#[test]
fn mntr_has_zookeepers_keys_in_order_and_our_values() {
    let m = MonitorInfo {
        version: ZK_VERSION.into(),
        server_state: Mode::Standalone.as_str().into(),
        values: vec![
            ("znode_count".into(), MetricValue::Int(9)),
            ("avg_latency".into(), MetricValue::Float(round4(5.0 / 3.0))),
            ("ephemerals_count".into(), MetricValue::Int(2)),
        ],
        summaries: vec![(
            "readlatency".into(),
            Summary {
                count: 8,
                sum: 6,
                min: 0,
                max: 3,
                percentiles: [1, 3, 3, 3],
            },
        )],
        namespaces: vec![(
            "app".into(),
            Summary {
                count: 4,
                sum: 326,
                min: 79,
                max: 87,
                percentiles: [0; 4],
            },
            Summary {
                count: 5,
                sum: 49,
                min: 4,
                max: 13,
                percentiles: [0; 4],
            },
        )],
    };
    let out = mntr(&m);
    let want = captured("mntr.txt");
    // ZooKeeper 3.8's keys, in its order, then the keys 3.9 added (read from the 3.9.5
    // sources: the Debian package that produced the capture is 3.8).
    let since_39: Vec<String> = MNTR_COUNTERS_SINCE_39
        .iter()
        .map(|k| format!("zk_{k}"))
        .chain(
            MNTR_SUMMARIES_SINCE_39
                .iter()
                .flat_map(|k| ["avg", "min", "max", "cnt", "sum"].map(|s| format!("zk_{s}_{k}"))),
        )
        .collect();
    let ours = keys(&out, '\t');
    let (extra, as_38): (Vec<String>, Vec<String>) =
        ours.into_iter().partition(|k| since_39.contains(k));
    assert_eq!(as_38, keys(&want, '\t'));
    assert_eq!(extra.len(), since_39.len(), "every 3.9 key once: {extra:?}");
    // Every line is key TAB value, floats in Java's form.
    let line = |k: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{k}\t")))
            .unwrap()
            .to_string()
    };
    assert_eq!(line("zk_version"), format!("zk_version\t{ZK_VERSION}"));
    assert_eq!(line("zk_znode_count"), "zk_znode_count\t9");
    assert_eq!(line("zk_avg_latency"), "zk_avg_latency\t1.6667");
    assert_eq!(
        line("zk_connection_drop_probability"),
        "zk_connection_drop_probability\t0.0"
    );
    assert_eq!(line("zk_throttled_ops"), "zk_throttled_ops\t0");
    assert_eq!(line("zk_avg_fsynctime"), "zk_avg_fsynctime\t0.0");
    // These match the capture exactly: same inputs.
    for k in [
        "zk_avg_readlatency",
        "zk_p95_readlatency",
        "zk_avg_app_read_per_namespace",
        "zk_avg_app_write_per_namespace",
    ] {
        let theirs = want
            .lines()
            .find(|l| l.starts_with(&format!("{k}\t")))
            .unwrap();
        assert_eq!(line(k), theirs);
    }
}
