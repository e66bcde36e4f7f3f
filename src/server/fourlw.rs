//! The four-letter words on the client port: the whitelist, and gathering the server's
//! state for the pure formatters of [`crate::fourlw`].

use super::stats::{ConnStats, ServerState};
use crate::fourlw::{self as fmt, Command, ConnInfo, Mode, SessionConnInfo};
use crate::tree::DataTree;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// One connection as `cons` shows it.
#[derive(Debug, Clone)]
pub struct ConnLine {
    pub peer: SocketAddr,
    pub session_id: i64,
    pub timeout_ms: i32,
    pub queued: usize,
    pub stats: ConnStats,
    /// It speaks TLS: the AdminServer lists it under `secure_connections`.
    pub secure: bool,
}

/// One shard's watches for `wchs`/`wchc`/`wchp`.
#[derive(Debug, Clone, Default)]
pub struct WatchSummary {
    pub total: usize,
    pub by_session: BTreeMap<i64, BTreeSet<String>>,
}

/// The command a fresh connection's first four bytes spell, if any.
pub fn command(head: [u8; 4]) -> Option<Command> {
    Command::from_first_int(u32::from_be_bytes(head))
}

fn ms_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) fn conn_info(c: &ConnLine) -> ConnInfo {
    let s = &c.stats;
    ConnInfo {
        remote: fmt::java_socket_addr(&c.peer.ip().to_string(), c.peer.port()),
        interest_ops: 1,
        queued: c.queued as u64,
        received: s.received,
        sent: s.sent,
        session: (c.session_id != 0).then(|| SessionConnInfo {
            session_id: c.session_id,
            last_op: s.last_op.to_string(),
            established_ms: ms_since_epoch(s.established),
            timeout_ms: c.timeout_ms as u32,
            last_cxid: s.last_cxid as i64,
            last_zxid: s.last_zxid,
            last_response_ms: s.last_response.map_or(0, ms_since_epoch),
            last_latency_ms: 0,
            min_latency_ms: if s.lat_count == 0 { 0 } else { s.lat_min_ms },
            avg_latency_ms: s.lat_sum_ms.checked_div(s.lat_count).unwrap_or(0),
            max_latency_ms: s.lat_max_ms,
        }),
    }
}

/// ZooKeeper's `ZK_NOT_SERVING` four-letter-word answer.
const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests\n";

pub(super) fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

pub(super) fn snapshot(
    state: &ServerState,
    view: &DataTree,
    zxid: i64,
    conns: &[ConnInfo],
) -> fmt::ServerSnapshot {
    let (min, avg, max) = state.latency_ms();
    let mut s = fmt::ServerSnapshot::new(state.mode().unwrap_or(Mode::Standalone));
    s.latency = fmt::Latency {
        min_ms: min as u64,
        avg_ms: avg,
        max_ms: max as u64,
    };
    s.packets_received = state.packets_received();
    s.packets_sent = state.packets_sent();
    s.alive_connections = state.connections();
    s.outstanding_requests = conns.iter().map(|c| c.queued).sum();
    s.zxid = zxid;
    s.node_count = view.node_count() as u64;
    s.connections = conns.to_vec();
    s
}

/// Runs a four-letter word and returns its full output. `arg` is `stmk`'s mask.
pub fn run(cmd: Command, state: &ServerState, view: &DataTree, zxid: i64) -> String {
    if !state.settings.fourlw_whitelist.allows(cmd.as_str()) {
        return fmt::refusal(cmd);
    }
    match cmd {
        Command::Hlth => return super::health::report(state),
        Command::Rqld => return super::health::request_leadership(state),
        Command::Ydld => return super::health::yield_leadership(state),
        _ => {}
    }
    let Some(mode) = state.mode() else {
        // ZooKeeper's answer while its peer is LOOKING (no ZooKeeperServer running):
        // every command but these few says so (`NopCommand` in FourLetterCommands).
        return match cmd {
            Command::Ruok => fmt::ruok(),
            Command::Conf => fmt::conf_with_membership(&state.settings.conf, &state.membership()),
            _ => NOT_SERVING.to_string(),
        };
    };
    let pictures = state.pictures();
    let conns: Vec<ConnInfo> = pictures
        .iter()
        .flat_map(|p| p.conns.iter().map(conn_info))
        .collect();
    let (by_session, total) = watches_by_session(&pictures);
    match cmd {
        Command::Ruok => fmt::ruok(),
        Command::Isro => fmt::isro(mode),
        Command::Srvr => fmt::srvr(&snapshot(state, view, zxid, &conns)),
        Command::Stat => fmt::stat(&snapshot(state, view, zxid, &conns)),
        Command::Cons => fmt::cons(&conns),
        Command::Conf => fmt::conf_with_membership(&state.settings.conf, &state.membership()),
        Command::Crst => fmt::crst(),
        Command::Srst => {
            state.reset_stats();
            fmt::srst()
        }
        Command::Dirs => fmt::dirs(
            dir_size(Path::new(&state.settings.conf.data_dir)),
            dir_size(Path::new(&state.settings.conf.data_log_dir)),
        ),
        Command::Envi => fmt::envi(&env_info()),
        Command::Gtmk | Command::Stmk => fmt::trace_mask(0),
        Command::Hash => fmt::hash(&[(zxid, view.digest() as i64)]),
        Command::Wchs => {
            let paths: BTreeSet<&String> = by_session.values().flatten().collect();
            fmt::wchs(&fmt::WatchSummary {
                connections: by_session.len() as u64,
                paths: paths.len() as u64,
                total_watches: total as u64,
            })
        }
        Command::Wchc => {
            let list: Vec<(i64, Vec<String>)> = by_session
                .into_iter()
                .map(|(s, p)| (s, p.into_iter().collect()))
                .collect();
            fmt::wchc(&list)
        }
        Command::Wchp => {
            let mut by_path: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            for (s, paths) in by_session {
                for p in paths {
                    by_path.entry(p).or_default().push(s);
                }
            }
            fmt::wchp(&by_path.into_iter().collect::<Vec<_>>())
        }
        Command::Dump => {
            let expiry = state.seq.expiry();
            let mut ephemerals = Vec::new();
            let mut sessions: Vec<i64> = view.sessions().map(|(id, _)| id).collect();
            sessions.sort_unstable();
            for id in sessions {
                let e = view.ephemerals_of(id);
                if !e.is_empty() {
                    ephemerals.push((id, e));
                }
            }
            fmt::dump(&fmt::DumpInfo {
                session_sets: expiry
                    .into_iter()
                    .map(|(at, items)| fmt::ExpirySet {
                        expire_at_ms: at,
                        items,
                    })
                    .collect(),
                local_session_sets: state.seq.local_expiry().map(|sets| {
                    sets.into_iter()
                        .map(|(at, items)| fmt::ExpirySet {
                            expire_at_ms: at,
                            items,
                        })
                        .collect()
                }),
                learner_sessions: matches!(state.mode(), Some(Mode::Follower | Mode::Observer))
                    .then(|| {
                        let mut g: Vec<(i64, i32)> = view.sessions().collect();
                        g.sort_unstable();
                        g
                    }),
                ephemerals,
                connection_sets: Vec::new(),
            })
        }
        Command::Mntr => {
            // ZooKeeper's keys first, in its order, then ours (`zk_rk_*`): tools that
            // parse mntr read key/value lines and skip keys they do not know.
            let mut out = fmt::mntr(&monitor(
                state,
                LoopNumbers::on_loop(state, view, &pictures),
            ));
            out.push_str(&state.seq.metrics.mntr_lines());
            let bulk = state
                .bulk_replies
                .load(std::sync::atomic::Ordering::Relaxed);
            out.push_str(&format!("zk_rk_bulk_replies\t{bulk}\n"));
            out
        }
        Command::Load => state.load().map_or_else(
            || "load attribution is off (loadAttribution=no)\n".to_string(),
            |m| m.text(),
        ),
        Command::TelnetClose => String::new(),
        Command::Hlth | Command::Rqld | Command::Ydld => unreachable!("answered above"),
    }
}

/// What `mntr`'s numbers need from the loops: either read on a loop (a shard's view
/// and every shard's picture: the four-letter word, the AdminServer), or what the loops
/// publish unasked (`/metrics`, rendered off the loops).
pub struct LoopNumbers {
    pub node_count: i64,
    pub ephemerals: i64,
    pub data_size: i64,
    pub sessions: i64,
    /// Requests read and not yet answered.
    pub outstanding: i64,
    pub watches: i64,
    pub namespaces: Vec<(String, fmt::Summary, fmt::Summary)>,
}

impl LoopNumbers {
    /// On a shard's loop: its `view`, and the shards' `pictures`.
    fn on_loop(
        state: &ServerState,
        view: &DataTree,
        pictures: &[super::stats::ShardPicture],
    ) -> Self {
        LoopNumbers {
            node_count: view.node_count() as i64,
            ephemerals: view.ephemeral_count() as i64,
            data_size: view.approximate_data_size(),
            sessions: view.session_count() as i64,
            outstanding: pictures
                .iter()
                .flat_map(|p| p.conns.iter().map(|c| c.queued as i64))
                .sum(),
            watches: pictures.iter().map(|p| p.watches.total as i64).sum(),
            namespaces: namespaces(state.load().map(|m| m.namespaces)),
        }
    }

    /// Off the loops: what they last published (`ServerState::published`), at most a
    /// loop pass old (the namespaces: a tick).
    pub fn published(state: &ServerState) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let p = state.published();
        LoopNumbers {
            node_count: p.node_count.load(Relaxed),
            ephemerals: p.ephemerals.load(Relaxed),
            data_size: p.data_size.load(Relaxed),
            sessions: p.sessions.load(Relaxed),
            outstanding: state.published_outstanding(),
            watches: state.published_watches(),
            namespaces: namespaces(state.published_namespaces()),
        }
    }
}

/// The `mntr` numbers, from `n` and the server's own atomics.
pub fn monitor(state: &ServerState, n: LoopNumbers) -> fmt::MonitorInfo {
    use fmt::MetricValue::{Float, Int};
    let (min, avg, max) = state.latency_ms();
    let v = |k: &str, m: fmt::MetricValue| (k.to_string(), m);
    fmt::MonitorInfo {
        version: fmt::full_version(),
        server_state: state
            .mode()
            .unwrap_or(Mode::Standalone)
            .as_str()
            .to_string(),
        values: vec![
            v("avg_latency", Float(fmt::round4(avg))),
            v("max_latency", Int(max as i64)),
            v("min_latency", Int(min as i64)),
            v("packets_received", Int(state.packets_received() as i64)),
            v("packets_sent", Int(state.packets_sent() as i64)),
            v("num_alive_connections", Int(state.connections() as i64)),
            v("outstanding_requests", Int(n.outstanding)),
            v("znode_count", Int(n.node_count)),
            v("watch_count", Int(n.watches)),
            v("ephemerals_count", Int(n.ephemerals)),
            v("approximate_data_size", Int(n.data_size)),
            v("global_sessions", Int(n.sessions)),
            v(
                "local_sessions",
                Int(state
                    .seq
                    .local_sessions
                    .load(std::sync::atomic::Ordering::Relaxed)),
            ),
            v("uptime", Int(state.started.elapsed().as_millis() as i64)),
            v("open_file_descriptor_count", Int(open_fds())),
            v("max_file_descriptor_count", Int(max_fds())),
            v("auth_failed_count", Int(state.auth_failures() as i64)),
        ]
        .into_iter()
        .chain(zk_values(state))
        .chain(leader_values(state))
        .chain(quorum_values(state))
        .collect(),
        summaries: zk_summaries(state),
        namespaces: n.namespaces,
    }
}

/// ZooKeeper's counters and size gauges that RingKeeper keeps (docs/compat.md maps
/// every key; the ones absent here print 0 and have no meaning here).
fn zk_values(state: &ServerState) -> Vec<(String, fmt::MetricValue)> {
    use fmt::MetricValue::Int;
    let m = &state.seq.metrics;
    let zk = &m.zk;
    let (last, min, max) = zk.response_size.get();
    let records = m.log_records.load(std::sync::atomic::Ordering::Relaxed);
    let i = |n: u64| Int(n as i64);
    [
        ("last_client_response_size", Int(last)),
        ("min_client_response_size", Int(min)),
        ("max_client_response_size", Int(max)),
        ("proposal_count", i(zk.proposals.get())),
        ("commit_count", i(zk.commits.get())),
        (
            "learner_proposal_received_count",
            i(zk.learner_proposals_received.get()),
        ),
        (
            "learner_commit_received_count",
            i(zk.learner_commits_received.get()),
        ),
        ("looking_count", i(zk.looking.get())),
        ("bytes_received_count", i(zk.bytes_received.get())),
        ("response_bytes", i(zk.response_bytes.get())),
        ("connection_request_count", i(zk.connection_requests.get())),
        ("connection_rejected", i(zk.connection_rejected.get())),
        ("unsuccessful_handshake", i(zk.unsuccessful_handshake.get())),
        ("revalidate_count", i(zk.revalidate.get())),
        (
            "stale_sessions_expired",
            i(zk.sessions_expired
                .load(std::sync::atomic::Ordering::Relaxed)),
        ),
        ("prep_processor_request_queued", i(zk.prep_queued.get())),
        ("sync_processor_request_queued", i(records)),
        ("outstanding_changes_queued", i(records)),
        ("outstanding_changes_removed", i(records)),
        ("snap_count", i(zk.snap_syncs.get())),
        ("watch_bytes", i(zk.watch_bytes.get())),
        ("connection_drop_count", i(zk.connection_drops.get())),
        ("diff_count", i(zk.diff_syncs.get())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `peer_state` of a server in an ensemble, as `QuorumZooKeeperServer` adds it.
fn quorum_values(state: &ServerState) -> Vec<(String, fmt::MetricValue)> {
    let Some(mode) = state.mode() else {
        return Vec::new();
    };
    let s = match mode {
        Mode::Standalone | Mode::ReadOnly => return Vec::new(),
        Mode::Leader => "leading - broadcast",
        Mode::Follower => "following - broadcast",
        Mode::Observer => "observing - broadcast",
    };
    vec![("peer_state".to_string(), fmt::MetricValue::Text(s.into()))]
}

/// ZooKeeper's per-namespace byte summaries, from the shards' merged ones (`None`:
/// load attribution is off).
fn namespaces(
    merged: Option<Vec<(String, super::load::ByteSummary, super::load::ByteSummary)>>,
) -> Vec<(String, fmt::Summary, fmt::Summary)> {
    let Some(ns) = merged else {
        return Vec::new();
    };
    let conv = |b: &super::load::ByteSummary| fmt::Summary {
        count: b.count as i64,
        sum: b.sum as i64,
        min: b.min as i64,
        max: b.max as i64,
        percentiles: [0; 4],
    };
    ns.iter()
        .map(|(ns, r, w)| (ns.clone(), conv(r), conv(w)))
        .collect()
}

fn from_summary(s: &super::metrics::Summary) -> fmt::Summary {
    let (count, sum, min, max) = s.get();
    fmt::Summary {
        count: count as i64,
        sum: sum as i64,
        min: min as i64,
        max: max as i64,
        percentiles: [0; 4],
    }
}

/// A microsecond histogram as a ZooKeeper summary in milliseconds.
fn from_histogram(h: &super::metrics::Histogram) -> fmt::Summary {
    let ms = |us: u64| (us / 1000) as i64;
    let h = h.snapshot();
    fmt::Summary {
        count: h.count as i64,
        sum: ms(h.sum_us),
        min: if h.count == 0 {
            0
        } else {
            ms(h.quantile_us(0.0))
        },
        max: ms(h.max_us),
        percentiles: [0.5, 0.95, 0.99, 0.999].map(|q| ms(h.quantile_us(q))),
    }
}

/// ZooKeeper's summaries that RingKeeper measures, from its stage histograms and
/// timers: which stage stands for which ZooKeeper processor is in docs/compat.md.
fn zk_summaries(state: &ServerState) -> Vec<(String, fmt::Summary)> {
    let m = &state.seq.metrics;
    let zk = &m.zk;
    let mut out: Vec<(&str, fmt::Summary)> = vec![
        ("updatelatency", from_histogram(&m.total)),
        ("readlatency", from_histogram(&m.reads)),
        ("prep_processor_queue_time_ms", from_histogram(&m.queued)),
        ("prep_process_time", from_histogram(&m.sequenced)),
        (
            "sync_processor_queue_and_flush_time_ms",
            from_histogram(&m.logged),
        ),
        ("quorum_ack_latency", from_histogram(&m.replicated)),
        ("proposal_latency", from_histogram(&zk.proposal_latency)),
        ("commit_propagation_latency", from_histogram(&m.committed)),
        (
            "propagation_latency",
            from_histogram(&zk.propagation_latency),
        ),
        (
            "prep_processor_queue_size",
            from_summary(&zk.prep_queue_size),
        ),
        ("server_write_committed_time_ms", from_histogram(&m.total)),
        ("local_write_committed_time_ms", from_histogram(&m.total)),
        ("write_final_proc_time_ms", from_histogram(&m.answered)),
        ("read_final_proc_time_ms", from_histogram(&m.reads)),
        ("fsynctime", from_summary(&zk.fsynctime)),
        ("snapshottime", from_summary(&zk.snapshottime)),
        (
            "sync_processor_batch_size",
            from_summary(&zk.sync_batch_size),
        ),
        ("election_time", from_summary(&zk.election_time)),
        ("unavailable_time", from_summary(&zk.unavailable_time)),
        (
            "leader_unavailable_time",
            from_summary(&zk.leader_unavailable_time),
        ),
        ("follower_sync_time", from_summary(&zk.follower_sync_time)),
        ("observer_sync_time", from_summary(&zk.observer_sync_time)),
        (
            "startup_snap_load_time",
            from_summary(&zk.startup_snap_load_time),
        ),
        ("startup_txns_loaded", from_summary(&zk.startup_txns_loaded)),
        (
            "startup_txns_load_time",
            from_summary(&zk.startup_txns_load_time),
        ),
        ("dbinittime", from_summary(&zk.dbinittime)),
        (
            "node_created_watch_count",
            from_summary(&zk.node_created_watches),
        ),
        (
            "node_deleted_watch_count",
            from_summary(&zk.node_deleted_watches),
        ),
        (
            "node_changed_watch_count",
            from_summary(&zk.node_changed_watches),
        ),
        (
            "node_children_watch_count",
            from_summary(&zk.node_children_watches),
        ),
    ];
    out.retain(|(_, s)| s.count > 0);
    out.into_iter().map(|(k, s)| (k.to_string(), s)).collect()
}

/// Every `mntr` value and summary, for the Prometheus endpoint and the AdminServer.
pub fn monitor_info(state: &ServerState, view: &DataTree) -> fmt::MonitorInfo {
    monitor(state, LoopNumbers::on_loop(state, view, &state.pictures()))
}

/// ZooKeeper's leader-only `mntr` keys (`LeaderZooKeeperServer`'s gauges), present only
/// while this server leads an established epoch. Followers cannot be non-voting here.
fn leader_values(state: &ServerState) -> Vec<(String, fmt::MetricValue)> {
    use fmt::MetricValue::Int;
    let Some((c, up)) = state.leading() else {
        return Vec::new();
    };
    [
        ("learners", c.learners as i64),
        ("synced_followers", c.synced_followers as i64),
        ("synced_non_voting_followers", 0),
        ("synced_observers", c.synced_observers as i64),
        ("pending_syncs", c.pending_syncs as i64),
        (
            "last_proposal_size",
            state.seq.metrics.zk.proposal_size.get().0,
        ),
        (
            "max_proposal_size",
            state.seq.metrics.zk.proposal_size.get().2,
        ),
        (
            "min_proposal_size",
            state.seq.metrics.zk.proposal_size.get().1,
        ),
        ("leader_uptime", up.as_millis() as i64),
        ("quorum_size", c.quorum_size as i64),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), Int(n)))
    .collect()
}

fn open_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64)
}

fn max_fds() -> i64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and touches nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        r.rlim_cur as i64
    } else {
        0
    }
}

pub(super) fn env_info() -> fmt::EnvInfo {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    fmt::EnvInfo {
        version: fmt::full_version(),
        host_name: read("/proc/sys/kernel/hostname"),
        os_name: "Linux".into(),
        os_arch: std::env::consts::ARCH.into(),
        os_version: read("/proc/sys/kernel/osrelease"),
        user_name: std::env::var("USER").unwrap_or_default(),
        user_home: std::env::var("HOME").unwrap_or_default(),
        user_dir: std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        memory_free_mb: 0,
        memory_max_mb: 0,
        memory_total_mb: 0,
    }
}

/// Every shard's watches merged: the paths each session watches, and the total count.
pub(crate) fn watches_by_session(
    pictures: &[super::stats::ShardPicture],
) -> (BTreeMap<i64, BTreeSet<String>>, usize) {
    let mut by_session: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let mut total = 0;
    for p in pictures {
        total += p.watches.total;
        for (s, paths) in &p.watches.by_session {
            by_session
                .entry(*s)
                .or_default()
                .extend(paths.iter().cloned());
        }
    }
    (by_session, total)
}
