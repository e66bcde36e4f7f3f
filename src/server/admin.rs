//! ZooKeeper's AdminServer commands (`/commands/<name>`), answered as ZooKeeper 3.8/3.9
//! answers them: a JSON object with `command` and `error` (null on success) and the
//! command's own keys, the keys captured from ZooKeeper 3.8 in tests/data/admin. The
//! HTTP side is `http.rs`; every command runs on the first shard's loop over its view
//! (`ServerState::inspect`), as a four-letter word does.

use super::fourlw::{conn_info, dir_size, env_info, monitor_info, snapshot};
use super::json::Json;
use super::stats::ServerState;
use crate::fourlw::{self as fmt, Mode};
use crate::proto::Id;
use crate::tree::DataTree;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Every command's primary name and its aliases, as ZooKeeper 3.9 registers them
/// (`Commands.registerCommand`), then ours.
pub const COMMANDS: &[&[&str]] = &[
    &["connection_stat_reset", "crst"],
    &["configuration", "conf", "config"],
    &["connections", "cons"],
    &["hash"],
    &["dirs"],
    &["dump"],
    &["environment", "env", "envi"],
    &["get_trace_mask", "gtmk"],
    &["initial_configuration", "icfg"],
    &["is_read_only", "isro"],
    &["last_snapshot", "lsnp"],
    &["leader", "lead"],
    &["monitor", "mntr"],
    &["observer_connection_stat_reset", "orst"],
    &["restore", "rest"],
    &["ruok"],
    &["set_trace_mask", "stmk"],
    &["snapshot", "snap"],
    &["server_stats", "srvr"],
    &["stats", "stat"],
    &["stat_reset", "srst"],
    &["observers", "obsr"],
    &["system_properties", "sysp"],
    &["voting_view"],
    &["watches", "wchc"],
    &["watches_by_path", "wchp"],
    &["watch_summary", "wchs"],
    &["zabstate"],
    // RingKeeper's: load attribution (docs/operations.md).
    &["load", "load"],
];

/// Commands that need no running server (`isServerRequired` false in ZooKeeper).
const NO_SERVER_NEEDED: &[&str] = &[
    "environment",
    "get_trace_mask",
    "monitor",
    "set_trace_mask",
    "system_properties",
    "zabstate",
];

/// Commands that need the caller's credentials with ALL permission on `/` (3.9).
const NEED_AUTH: &[&str] = &["snapshot", "restore"];

/// The primary name of `name` (an alias or a primary name).
pub fn primary(name: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .find(|names| names.contains(&name))
        .map(|names| names[0])
}

/// The sorted primary names, as `/commands` lists them.
pub fn primary_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = COMMANDS.iter().map(|n| n[0]).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// One answer: the HTTP status and the JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Json,
}

fn answer(command: &str, error: Option<String>, status: u16, data: Vec<(String, Json)>) -> Answer {
    let mut body = Json::obj([
        ("command", Json::str(command)),
        ("error", error.map_or(Json::Null, Json::Str)),
    ]);
    body.extend(data);
    Answer { status, body }
}

/// Runs command `name` with the query's `kwargs` and the `Authorization` header.
pub fn run(
    name: &str,
    kwargs: &BTreeMap<String, String>,
    authorization: Option<&str>,
    state: &ServerState,
) -> Answer {
    let Some(cmd) = primary(name) else {
        return answer(name, Some(format!("Unknown command: {name}")), 200, vec![]);
    };
    if !NO_SERVER_NEEDED.contains(&cmd) && state.mode().is_none() {
        return answer(
            cmd,
            Some("This ZooKeeper instance is not currently serving requests".into()),
            200,
            vec![],
        );
    }
    let kwargs = kwargs.clone();
    let authorization = authorization.map(str::to_string);
    state
        .inspect(Duration::from_secs(10), move |st, view, zxid| {
            if NEED_AUTH.contains(&cmd) {
                if let Err(a) = authorize(cmd, authorization.as_deref(), st, view) {
                    return a;
                }
            }
            let (error, data) = command(cmd, &kwargs, st, view, zxid);
            answer(cmd, error, 200, data)
        })
        .unwrap_or_else(|| answer(cmd, Some("the server is stopping".into()), 503, vec![]))
}

/// ZooKeeper 3.9's check for commands with an `AuthRequest`: `Authorization: digest
/// user:password` (or `ip`), whose ids must have ALL on `/`.
fn authorize(
    cmd: &str,
    authorization: Option<&str>,
    st: &ServerState,
    view: &DataTree,
) -> Result<(), Answer> {
    let Some(info) = authorization else {
        return Err(answer(
            cmd,
            Some("Auth info is missing for the command".into()),
            401,
            vec![],
        ));
    };
    let (scheme, auth) = info.split_once(' ').unwrap_or((info, ""));
    let ids: Vec<Id> = match scheme {
        "digest" if !auth.is_empty() => {
            crate::acl::auth_digest(auth.as_bytes(), st.settings.super_digest.as_deref())
        }
        _ => {
            return Err(answer(cmd, Some("Not authenticated".into()), 401, vec![]));
        }
    };
    let acl = view.acl("/").map(|(a, _)| a).unwrap_or_default();
    if crate::acl::check(&acl, crate::proto::perms::ALL, &ids) {
        Ok(())
    } else {
        Err(answer(cmd, Some("Not authorized".into()), 403, vec![]))
    }
}

fn kv<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Json)>) -> Vec<(String, Json)> {
    pairs.into_iter().map(|(k, v)| (k.into(), v)).collect()
}

fn int(n: impl TryInto<i64>) -> Json {
    Json::Int(n.try_into().unwrap_or(i64::MAX))
}

fn watches(st: &ServerState) -> (BTreeMap<i64, BTreeSet<String>>, usize) {
    super::fourlw::watches_by_session(&st.pictures())
}

/// The client connections that speak TLS (`secure`) or not, as ZooKeeper lists those
/// of its secure and its plain connection factory.
fn connections(st: &ServerState, secure: bool) -> Json {
    let conns: Vec<fmt::ConnInfo> = st
        .pictures()
        .iter()
        .flat_map(|p| p.conns.iter().filter(|c| c.secure == secure).map(conn_info))
        .collect();
    Json::Arr(
        conns
            .iter()
            .map(|c| {
                let mut o = kv([
                    (
                        "remote_socket_address",
                        Json::str(c.remote.trim_start_matches('/')),
                    ),
                    ("interest_ops", int(c.interest_ops)),
                    ("outstanding_requests", int(c.queued)),
                    ("packets_received", int(c.received)),
                    ("packets_sent", int(c.sent)),
                ]);
                if let Some(s) = &c.session {
                    o.extend(kv([
                        ("session_id", int(s.session_id)),
                        ("last_operation", Json::str(s.last_op.clone())),
                        ("established", int(s.established_ms)),
                        ("session_timeout", int(s.timeout_ms)),
                        ("last_cxid", int(s.last_cxid)),
                        ("last_zxid", int(s.last_zxid)),
                        ("last_response_time", int(s.last_response_ms)),
                        ("last_latency", int(s.last_latency_ms)),
                        ("min_latency", int(s.min_latency_ms)),
                        ("avg_latency", int(s.avg_latency_ms)),
                        ("max_latency", int(s.max_latency_ms)),
                    ]));
                }
                Json::Obj(o)
            })
            .collect(),
    )
}

/// One learner as ZooKeeper's `LearnerHandler.getLearnerHandlerInfo` shows it.
fn learner_info(l: &super::stats::LearnerInfo) -> Json {
    let remote = l.remote.map_or_else(
        || "<null>".to_string(),
        |a| fmt::java_socket_addr(&a.ip().to_string(), a.port()),
    );
    Json::obj([
        ("remote_socket_address", Json::str(remote)),
        ("sid", int(l.sid)),
        ("established", int(l.established_ms)),
        ("queued_packets", int(l.queued_packets)),
        ("queued_packets_size", int(l.queued_bytes)),
        ("packets_received", int(l.packets_received)),
        ("packets_sent", int(l.packets_sent)),
        ("requests", int(l.requests)),
        ("last_zxid", int(l.last_zxid)),
    ])
}

fn server_stats(st: &ServerState, view: &DataTree, zxid: i64) -> Vec<(String, Json)> {
    let snap = snapshot(st, view, zxid, &[]);
    let (last, min, max) = st.seq.metrics.zk.response_size.get();
    let client_response = Json::obj([
        ("last_buffer_size", Json::Int(last)),
        ("min_buffer_size", Json::Int(min)),
        ("max_buffer_size", Json::Int(max)),
    ]);
    let conf = &st.settings.conf;
    let outstanding: u64 = st
        .pictures()
        .iter()
        .flat_map(|p| p.conns.iter().map(|c| c.queued as u64))
        .sum();
    let mode = st.mode().unwrap_or(Mode::Standalone);
    kv([
        ("version", Json::str(fmt::full_version())),
        ("read_only", Json::Bool(false)),
        (
            "server_stats",
            Json::obj([
                ("packets_sent", int(snap.packets_sent)),
                ("packets_received", int(snap.packets_received)),
                (
                    "fsync_threshold_exceed_count",
                    int(st.seq.metrics.zk.fsync_threshold_exceed.get()),
                ),
                ("client_response_stats", client_response.clone()),
                (
                    "data_dir_size",
                    int(dir_size(std::path::Path::new(&conf.data_dir))),
                ),
                (
                    "log_dir_size",
                    int(dir_size(std::path::Path::new(&conf.data_log_dir))),
                ),
                ("last_processed_zxid", int(zxid)),
                ("outstanding_requests", int(outstanding)),
                ("server_state", Json::str(mode.as_str())),
                ("avg_latency", Json::Float(fmt::round4(snap.latency.avg_ms))),
                ("max_latency", int(snap.latency.max_ms)),
                ("min_latency", int(snap.latency.min_ms)),
                ("num_alive_client_connections", int(st.connections())),
                ("provider_null", Json::Bool(false)),
                ("uptime", int(st.started.elapsed().as_millis() as u64)),
                ("auth_failed_count", int(st.auth_failures())),
                ("non_mtlsremote_conn_count", Json::Int(0)),
                ("non_mtlslocal_conn_count", Json::Int(0)),
            ]),
        ),
        ("client_response", client_response),
        ("node_count", int(view.node_count() as u64)),
    ])
}

fn command(
    cmd: &str,
    kwargs: &BTreeMap<String, String>,
    st: &ServerState,
    view: &DataTree,
    zxid: i64,
) -> (Option<String>, Vec<(String, Json)>) {
    let conf = &st.settings.conf;
    let mode = st.mode();
    let data = match cmd {
        "ruok" => vec![],
        "observer_connection_stat_reset" => {
            // The leader's observers' link counts, on the core loop's next tick.
            st.request_observer_reset();
            vec![]
        }
        "connection_stat_reset" => {
            // As ZooKeeper 3.9: the plain connection factory's connections. Every
            // shard's, through its inbox: ahead of the picture request of any command
            // that comes after this one.
            st.reset_conn_stats(None, false);
            vec![]
        }
        "stat_reset" => {
            st.reset_stats();
            vec![]
        }
        "configuration" => kv([
            ("client_port", int(conf.client_port)),
            ("data_dir", Json::str(conf.data_dir.clone())),
            ("data_log_dir", Json::str(conf.data_log_dir.clone())),
            ("tick_time", int(conf.tick_time_ms)),
            ("max_client_cnxns", int(conf.max_client_cnxns)),
            ("min_session_timeout", int(conf.min_session_timeout_ms)),
            ("max_session_timeout", int(conf.max_session_timeout_ms)),
            ("server_id", int(conf.server_id)),
            ("client_port_listen_backlog", int(conf.client_port_listen_backlog)),
        ]),
        "connections" => kv([
            ("connections", connections(st, false)),
            ("secure_connections", connections(st, true)),
        ]),
        "hash" => kv([(
            "digests",
            Json::Arr(vec![Json::obj([
                ("zxid", int(zxid)),
                ("digest", int(view.digest() as i64)),
            ])]),
        )]),
        "dirs" => kv([
            ("datadir_size", int(dir_size(std::path::Path::new(&conf.data_dir)))),
            (
                "logdir_size",
                int(dir_size(std::path::Path::new(&conf.data_log_dir))),
            ),
        ]),
        "dump" => {
            // Local sessions first, then global ones over them, as ZooKeeper's
            // LeaderSessionTracker.getSessionExpiryMap merges the two.
            let mut merged: std::collections::BTreeMap<i64, Vec<i64>> =
                st.seq.local_expiry().unwrap_or_default().into_iter().collect();
            for (at, ids) in st.seq.expiry() {
                merged.insert(at, ids);
            }
            let expiry = merged;
            let mut ephemerals = Vec::new();
            let mut sessions: Vec<i64> = view.sessions().map(|(id, _)| id).collect();
            sessions.sort_unstable();
            for id in sessions {
                let e = view.ephemerals_of(id);
                ephemerals.push((
                    id.to_string(),
                    Json::Arr(e.into_iter().map(Json::Str).collect()),
                ));
            }
            kv([
                (
                    "expiry_time_to_session_ids",
                    Json::Obj(
                        expiry
                            .into_iter()
                            .map(|(at, ids)| {
                                (at.to_string(), Json::Arr(ids.into_iter().map(Json::Int).collect()))
                            })
                            .collect(),
                    ),
                ),
                ("session_id_to_ephemeral_paths", Json::Obj(ephemerals)),
            ])
        }
        "environment" => {
            let e = env_info();
            let na = || Json::str("<NA>");
            kv([
                ("zookeeper.version", Json::str(e.version)),
                ("host.name", Json::str(e.host_name)),
                ("java.version", na()),
                ("java.vendor", na()),
                ("java.home", na()),
                ("java.class.path", na()),
                ("java.library.path", na()),
                ("java.io.tmpdir", Json::str(std::env::temp_dir().display().to_string())),
                ("java.compiler", na()),
                ("os.name", Json::str(e.os_name)),
                ("os.arch", Json::str(e.os_arch)),
                ("os.version", Json::str(e.os_version)),
                ("user.name", Json::str(e.user_name)),
                ("user.home", Json::str(e.user_home)),
                ("user.dir", Json::str(e.user_dir)),
                ("os.memory.free", Json::str(format!("{}MB", e.memory_free_mb))),
                ("os.memory.max", Json::str(format!("{}MB", e.memory_max_mb))),
                ("os.memory.total", Json::str(format!("{}MB", e.memory_total_mb))),
            ])
        }
        "get_trace_mask" => kv([("tracemask", Json::Int(0))]),
        "set_trace_mask" => match kwargs.get("traceMask").map(|v| v.parse::<i64>()) {
            None => {
                return (
                    Some("setTraceMask requires long traceMask argument".into()),
                    vec![],
                )
            }
            Some(Err(_)) => {
                return (
                    Some(format!(
                        "setTraceMask requires long traceMask argument, got {}",
                        kwargs["traceMask"]
                    )),
                    vec![],
                )
            }
            // Tracing is not implemented: the mask is accepted and reported.
            Some(Ok(m)) => kv([("tracemask", Json::Int(m))]),
        },
        "initial_configuration" => kv([(
            "initial_configuration",
            Json::str(fmt::conf(conf)),
        )]),
        "is_read_only" => kv([("read_only", Json::Bool(mode == Some(Mode::ReadOnly)))]),
        "last_snapshot" => {
            let (z, ts) = last_snapshot(std::path::Path::new(&conf.data_dir));
            kv([("zxid", Json::str(format!("{z:x}"))), ("timestamp", Json::Int(ts))])
        }
        "leader" => match mode {
            Some(Mode::Leader | Mode::Follower | Mode::Observer) => {
                // As ZooKeeper: the leader's id (-1 while there is none) and the host
                // of its quorum address ("" when unknown).
                let (id, ip) = st.leader();
                kv([
                    ("is_leader", Json::Bool(mode == Some(Mode::Leader))),
                    ("leader_id", Json::Int(id)),
                    ("leader_ip", Json::str(ip)),
                ])
            }
            _ => return (Some("server is not initialized".into()), vec![]),
        },
        "monitor" => {
            let m = monitor_info(st, view);
            let mut out = kv([
                ("version", Json::str(m.version.clone())),
                ("server_state", Json::str(m.server_state.clone())),
            ]);
            for line in fmt::mntr(&m).lines().skip(2) {
                let Some((k, v)) = line.split_once('\t') else {
                    continue;
                };
                let k = k.trim_start_matches("zk_").to_string();
                let v = if let Ok(n) = v.parse::<i64>() {
                    Json::Int(n)
                } else if let Ok(f) = v.parse::<f64>() {
                    Json::Float(f)
                } else {
                    Json::str(v)
                };
                out.push((k, v));
            }
            out
        }
        // As ZooKeeper's leader: its observers up to date, each as its LearnerHandler
        // describes itself. A follower or a standalone server answers 0 and [].
        "observers" => {
            let list = if mode == Some(Mode::Leader) {
                st.observers()
            } else {
                Vec::new()
            };
            kv([
                ("synced_observers", int(list.len())),
                (
                    "observers",
                    Json::Arr(list.iter().map(learner_info).collect()),
                ),
            ])
        }
        "server_stats" => server_stats(st, view, zxid),
        "stats" => {
            let mut v = server_stats(st, view, zxid);
            v.extend(kv([
                ("connections", connections(st, false)),
                ("secure_connections", connections(st, true)),
            ]));
            v
        }
        "system_properties" => {
            let e = env_info();
            kv([
                ("os.name", Json::str(e.os_name)),
                ("os.arch", Json::str(e.os_arch)),
                ("os.version", Json::str(e.os_version)),
                ("user.name", Json::str(e.user_name)),
                ("user.home", Json::str(e.user_home)),
                ("user.dir", Json::str(e.user_dir)),
                ("file.separator", Json::str("/")),
                ("path.separator", Json::str(":")),
                ("line.separator", Json::str("\n")),
            ])
        }
        // As ZooKeeper: the voting members of the config in force, by id (a
        // standalone or read-only server answers an empty map).
        "voting_view" => kv([(
            "current_config",
            match mode {
                Some(Mode::Leader | Mode::Follower | Mode::Observer) => {
                    voting_view(&st.membership())
                }
                _ => Json::obj::<String>([]),
            },
        )]),
        "watches" => {
            let (by_session, _) = watches(st);
            kv([(
                "session_id_to_watched_paths",
                Json::Obj(
                    by_session
                        .into_iter()
                        .map(|(s, p)| (s.to_string(), Json::Arr(p.into_iter().map(Json::Str).collect())))
                        .collect(),
                ),
            )])
        }
        "watches_by_path" => {
            let (by_session, _) = watches(st);
            let mut by_path: BTreeMap<String, Vec<Json>> = BTreeMap::new();
            for (s, paths) in by_session {
                for p in paths {
                    by_path.entry(p).or_default().push(Json::Int(s));
                }
            }
            kv([(
                "path_to_session_ids",
                Json::Obj(by_path.into_iter().map(|(p, s)| (p, Json::Arr(s))).collect()),
            )])
        }
        "watch_summary" => {
            let (by_session, total) = watches(st);
            let paths: BTreeSet<&String> = by_session.values().flatten().collect();
            kv([
                ("num_connections", int(by_session.len())),
                ("num_paths", int(paths.len())),
                ("num_total_watches", int(total)),
            ])
        }
        "zabstate" => match mode {
            Some(Mode::Leader | Mode::Follower | Mode::Observer) => kv([
                ("myid", int(conf.server_id)),
                ("is_leader", Json::Bool(mode == Some(Mode::Leader))),
                ("voting", Json::Bool(mode != Some(Mode::Observer))),
                ("last_zxid", Json::str(format!("0x{zxid:x}"))),
                ("zab_epoch", int(zxid >> 32)),
                ("zab_counter", int(zxid & 0xffff_ffff)),
                ("zabstate", Json::str("broadcast")),
            ]),
            _ => kv([("voting", Json::Bool(false)), ("zabstate", Json::str(""))]),
        },
        "snapshot" | "restore" => {
            return (
                Some(format!(
                    "{cmd} over HTTP is not supported: use `ringkeeper backup` and `ringkeeper restore`"
                )),
                vec![],
            )
        }
        "load" => kv([("load", st.load_json())]),
        _ => return (Some(format!("Unknown command: {cmd}")), vec![]),
    };
    (None, data)
}

/// The newest snapshot in `dir` (its zxid, and its file's modification time in seconds),
/// or (-1, -1) as ZooKeeper answers when there is none.
fn last_snapshot(dir: &std::path::Path) -> (i64, i64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (-1, -1);
    };
    let mut best: Option<(i64, i64)> = None;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(z) = crate::storage::snapshot::zxid_of_name(&name) else {
            continue;
        };
        let ts = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(-1, |d| d.as_secs() as i64);
        if best.is_none_or(|(bz, _)| z > bz) {
            best = Some((z, ts));
        }
    }
    best.unwrap_or((-1, -1))
}

/// ZooKeeper's `voting_view` map from the config text `/zookeeper/config` holds
/// (`server.N=host:quorum:election:role[;client]` lines): its participants.
fn voting_view(config: &str) -> Json {
    let mut out = Vec::new();
    for line in config.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let Some(id) = key.strip_prefix("server.") else {
            continue;
        };
        let (server, client) = value.split_once(';').unwrap_or((value, ""));
        // host:quorum:election:role, the host possibly an IPv6 literal: from the right.
        let mut parts = server.rsplitn(4, ':');
        let (Some(role), Some(election), Some(quorum), Some(host)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if role != "participant" {
            continue;
        }
        out.push((
            id.to_string(),
            Json::obj([
                (
                    "server_addresses",
                    Json::Arr(vec![Json::str(format!("{host}:{quorum}"))]),
                ),
                (
                    "election_addresses",
                    Json::Arr(vec![Json::str(format!("{host}:{election}"))]),
                ),
                ("client_address", Json::str(client.to_string())),
                ("learner_type", Json::str("participant".to_string())),
            ]),
        ));
    }
    Json::Obj(out)
}
