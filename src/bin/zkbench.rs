//! zkbench: a load generator for any ZooKeeper-compatible server. See `zkbench --help`
//! and `ringkeeper::bench` for the parts.

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use ringkeeper::bench::engine::{self, LoadModel, RunStats};
use ringkeeper::bench::fake::{FakeConfig, FakeServer};
use ringkeeper::bench::rng::KeyDist;
use ringkeeper::bench::setup;
use ringkeeper::bench::workload::{Mix, Workload};
use ringkeeper::bench::{cost, report};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "zkbench",
    about = "Load generator for ZooKeeper-compatible servers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One measured run against one target.
    Run {
        #[command(flatten)]
        load: LoadArgs,
        /// host:port[,host:port...]; sessions are spread over the servers.
        #[arg(long, short = 'c', default_value = "127.0.0.1:2181")]
        connect: String,
        #[command(flatten)]
        out: OutArgs,
    },
    /// The same workload against two targets alternately: A B A B ...
    Ab {
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long)]
        a: String,
        #[arg(long)]
        b: String,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Watch workload: persistent watches on hot nodes, write-to-notification latency.
    Watch {
        #[arg(long, short = 'c', default_value = "127.0.0.1:2181")]
        connect: String,
        /// Watcher sessions (each watches every hot node).
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        #[arg(long, default_value_t = 4)]
        hot_nodes: usize,
        /// Write rounds per second at most (a round writes each hot node once).
        #[arg(long, default_value_t = 50.0)]
        rounds_per_sec: f64,
        #[arg(long, short = 'd', default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value = "/zkbench")]
        root: String,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Session storm: N sessions connect at once; time to each handshake reply. With
    /// --restart, the target is then restarted and every session resumes.
    Storm {
        #[arg(long, short = 'c', default_value = "127.0.0.1:2181")]
        connect: String,
        /// After the storm, run this shell command (it restarts the target, e.g.
        /// "scripts/ringkeeper.sh restart DIR") while each session waits for its
        /// connection to drop, then resumes it with its id and password; reports the
        /// time from drop to resume and sessions resumed, expired and failed.
        #[arg(long)]
        restart: Option<String>,
        #[arg(long, short = 's', default_value_t = 1000)]
        sessions: usize,
        /// Give up on sessions not established after this many seconds.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
        #[arg(long, default_value_t = 10_000)]
        session_timeout_ms: i32,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Serve a fake ZooKeeper that answers after a fixed delay (tests, generator ceiling).
    FakeServer {
        #[arg(long, default_value = "127.0.0.1:2199")]
        listen: String,
        #[arg(long, default_value_t = 0.0)]
        delay_ms: f64,
        #[arg(long, default_value_t = 0)]
        error_every: u64,
        #[arg(long, default_value_t = -101)]
        error_code: i32,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
    },
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// create, create-ephemeral, create-sequential, set, get, exists, children, delete,
    /// multi, mixed (get/set by --read-ratio), or a mix like get=90,set=10.
    #[arg(long, short = 'w', default_value = "mixed")]
    workload: String,
    #[arg(long, default_value_t = 0.9)]
    read_ratio: f64,
    #[arg(long, short = 's', default_value_t = 16)]
    sessions: usize,
    /// Closed loop: requests in flight per session.
    #[arg(long, short = 'k', default_value_t = 16)]
    outstanding: usize,
    /// Open loop: total requests per second (latency from the intended send time).
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before the window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds to wait for in-flight replies after the window.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// uniform or zipfian.
    #[arg(long, default_value = "uniform")]
    dist: String,
    #[arg(long, default_value_t = 0.99)]
    zipf_theta: f64,
    #[arg(long, default_value_t = 4)]
    multi_ops: usize,
    #[arg(long, default_value = "/zkbench")]
    root: String,
    /// Worker threads (each an epoll loop over its sessions).
    #[arg(long, short = 't', default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: i32,
    /// Skip the setup phase (the tree is already populated).
    #[arg(long)]
    no_setup: bool,
    /// A session that loses its server resumes on the next server of the connect
    /// string and goes on (its in-flight requests count as CONNECTIONLOSS); without it
    /// the session stops for the rest of the run. For measuring failover.
    #[arg(long)]
    reconnect: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write each request with its own system call, as the Java client and kazoo do
    /// (by default a session's requests of one loop pass go out in one write).
    #[arg(long)]
    no_coalesce: bool,
    /// Server processes whose CPU time and context switches per op are reported
    /// (comma-separated pids). By default the processes listening on the targets' ports
    /// on this machine are found and measured (`ab`: each target's own).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Do not measure the servers' cost.
    #[arg(long)]
    no_server_cost: bool,
    /// Speak TLS to the targets (their secureClientPort), trusting --tls-ca.
    #[arg(long)]
    tls: bool,
    /// PEM file of the CA(s) the server's certificate chains to.
    #[arg(long)]
    tls_ca: Option<String>,
    /// PEM client certificate (chain) and key, for servers that ask (ssl.clientAuth).
    #[arg(long)]
    tls_cert: Option<String>,
    #[arg(long)]
    tls_key: Option<String>,
    /// Where the unmeasured setup runs (plaintext), when the targets speak TLS.
    #[arg(long)]
    setup_server: Option<SocketAddr>,
}

#[derive(Args, Clone)]
struct OutArgs {
    /// Print one JSON line on stdout (instead of the summary).
    #[arg(long)]
    json: bool,
    /// Write the HdrHistogram percentile distribution here.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write per-second throughput and latency (CSV: second, wall-clock ms, ops, p50, p99, max) here.
    #[arg(long)]
    timeline: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write the gaps between consecutive successful replies (all sessions merged)
    /// of 2 ms or more here, as CSV `at_ms,gap_ms` (ms since the run's start, which a
    /// `# start_unix_ms=` line gives): the write outage of a restart or a hand-off.
    #[arg(long)]
    ack_gaps: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Name of the target in reports.
    #[arg(long)]
    label: Option<String>,
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("zkbench: {msg}");
    std::process::exit(1)
}

fn resolve(connect: &str) -> Vec<SocketAddr> {
    let addrs: Vec<SocketAddr> = connect
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|hp| {
            hp.to_socket_addrs()
                .unwrap_or_else(|e| die(format!("bad server {hp:?}: {e}")))
                .next()
                .unwrap_or_else(|| die(format!("{hp:?} resolves to nothing")))
        })
        .collect();
    if addrs.is_empty() {
        die("empty connect string");
    }
    addrs
}

/// The server processes to measure for `servers` (see `LoadArgs::server_pid`).
fn server_pids(load: &LoadArgs, servers: &[SocketAddr]) -> Vec<u32> {
    if load.no_server_cost {
        return Vec::new();
    }
    if !load.server_pid.is_empty() {
        return load.server_pid.clone();
    }
    let mut pids: Vec<u32> = cost::find_listeners(servers)
        .into_iter()
        .flatten()
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn config(load: &LoadArgs, servers: Vec<SocketAddr>, quiet: bool) -> engine::Config {
    let mix = Mix::parse(&load.workload, load.read_ratio).unwrap_or_else(|e| die(e));
    let dist = match load.dist.as_str() {
        "uniform" => KeyDist::uniform(load.keys.max(1)),
        "zipfian" | "zipf" => KeyDist::zipfian(load.keys.max(1), load.zipf_theta),
        d => die(format!("unknown --dist {d:?} (uniform, zipfian)")),
    };
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    engine::Config {
        sessions: load.sessions,
        load: match load.rate {
            Some(rate) => LoadModel::Open { rate },
            None => LoadModel::Closed {
                outstanding: load.outstanding,
            },
        },
        warmup: Duration::from_secs_f64(load.warmup),
        duration: Duration::from_secs_f64(load.duration),
        drain: Duration::from_secs_f64(load.drain),
        workload: Workload {
            mix,
            root: load.root.trim_end_matches('/').to_string(),
            keys: load.keys.max(1),
            dist,
            value: Bytes::from(vec![b'v'; load.value_size]),
            multi_ops: load.multi_ops,
            run_id,
        },
        session_timeout_ms: load.session_timeout_ms,
        threads: load.threads,
        seed: load.seed,
        progress: !quiet,
        reconnect: load.reconnect,
        no_coalesce: load.no_coalesce,
        server_pids: server_pids(load, &servers),
        record_acks: false,
        tls: load.tls.then(|| {
            let ca = load
                .tls_ca
                .as_deref()
                .unwrap_or_else(|| die("--tls needs --tls-ca"));
            ringkeeper::bench::tls::client_config(
                ca,
                load.tls_cert.as_deref(),
                load.tls_key.as_deref(),
            )
            .unwrap_or_else(|e| die(e))
        }),
        servers,
    }
}

fn describe(load: &LoadArgs, cfg: &engine::Config) -> Vec<(&'static str, String)> {
    let model = match cfg.load {
        LoadModel::Closed { outstanding } => format!("closed {}x{}", cfg.sessions, outstanding),
        LoadModel::Open { rate } => format!("open {rate} ops/s over {} sessions", cfg.sessions),
    };
    vec![
        ("workload", cfg.workload.mix.describe()),
        ("load", model),
        (
            "keys",
            format!("{} {}", cfg.workload.keys, cfg.workload.dist.name()),
        ),
        ("value_size", load.value_size.to_string()),
        ("duration_s", load.duration.to_string()),
        ("warmup_s", load.warmup.to_string()),
        ("reconnect", load.reconnect.to_string()),
    ]
}

fn setup_target(load: &LoadArgs, cfg: &engine::Config, quiet: bool) {
    if load.no_setup {
        return;
    }
    let target = match (cfg.tls.is_some(), load.setup_server) {
        (_, Some(a)) => a,
        (false, None) => cfg.servers[0],
        (true, None) => die(
            "--tls: the setup speaks plaintext: give --setup-server (the plaintext port) or --no-setup",
        ),
    };
    let t = std::time::Instant::now();
    let n = setup::populate(
        target,
        &cfg.workload.root,
        cfg.workload.keys,
        &cfg.workload.value,
    )
    .unwrap_or_else(|e| die(e));
    if !quiet {
        eprintln!(
            "setup: {n} keys created in {:.1}s (unmeasured)",
            t.elapsed().as_secs_f64()
        );
    }
}

fn measure(cfg: &engine::Config) -> RunStats {
    engine::run(cfg).unwrap_or_else(|e| die(e))
}

fn write_outputs(
    out: &OutArgs,
    title: &str,
    notes: &[(&str, String)],
    series: &[(&str, &RunStats)],
) {
    let write = |p: &PathBuf, s: String| {
        std::fs::write(p, s).unwrap_or_else(|e| die(format!("{}: {e}", p.display())))
    };
    if let Some(p) = &out.hgrm {
        write(p, report::hgrm(&series[0].1.hist));
    }
    if let Some(p) = &out.timeline {
        write(p, report::timeline_csv(series[0].1));
    }
    if let Some(p) = &out.html {
        write(p, report::html(title, notes, series));
    }
    if let Some(p) = &out.ack_gaps {
        write(p, report::ack_gaps_csv(series[0].1, 2_000));
    }
}

/// Prints a table of `ab`'s rounds: a `round` column, then `cols` (title, width,
/// decimals) with one row per round and a row of each column's median, which it returns.
fn round_table(cols: &[(&str, usize, usize)], rows: Vec<Vec<f64>>) -> Vec<f64> {
    let mut head = format!("{:>6}", "round");
    for (title, w, _) in cols {
        head += &format!(" {title:>w$}");
    }
    println!("{head}");
    let line = |first: String, values: &[f64]| {
        let mut l = format!("{first:>6}");
        for ((_, w, d), v) in cols.iter().zip(values) {
            l += &format!(" {v:>w$.d$}");
        }
        println!("{l}");
    };
    let mut by_col: Vec<Vec<f64>> = vec![Vec::new(); cols.len()];
    for (r, row) in rows.iter().enumerate() {
        line((r + 1).to_string(), row);
        for (c, v) in by_col.iter_mut().zip(row) {
            c.push(*v);
        }
    }
    let medians: Vec<f64> = by_col.iter_mut().map(|c| median(c)).collect();
    line("median".to_string(), &medians);
    medians
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    match Cli::parse().cmd {
        Cmd::Run { load, connect, out } => {
            let mut cfg = config(&load, resolve(&connect), out.quiet);
            cfg.record_acks = out.ack_gaps.is_some();
            setup_target(&load, &cfg, out.quiet);
            let stats = measure(&cfg);
            let label = out.label.clone().unwrap_or(connect.clone());
            let mut notes = describe(&load, &cfg);
            notes.insert(0, ("target", label.clone()));
            if out.json {
                println!("{}", report::json_line(&notes, &stats));
            } else {
                print!("{}", report::summary(&label, &stats));
            }
            write_outputs(
                &out,
                &format!("zkbench: {label}"),
                &notes,
                &[(&label, &stats)],
            );
        }
        Cmd::Ab {
            load,
            a,
            b,
            rounds,
            out,
        } => {
            let targets = [(a.clone(), resolve(&a)), (b.clone(), resolve(&b))];
            let cfgs: Vec<_> = targets
                .iter()
                .map(|(_, s)| config(&load, s.clone(), out.quiet))
                .collect();
            for c in &cfgs {
                setup_target(&load, c, out.quiet);
            }
            let mut runs: [Vec<RunStats>; 2] = [Vec::new(), Vec::new()];
            for r in 0..rounds.max(1) {
                for (i, c) in cfgs.iter().enumerate() {
                    if !out.quiet {
                        eprintln!("round {} target {}: {}", r + 1, ["A", "B"][i], targets[i].0);
                    }
                    runs[i].push(measure(c));
                }
            }
            // Throughput, then each percentile: A, B and the ratio B/A, per round and as
            // medians over the rounds (a ratio's median is taken over the rounds' ratios).
            const PCTS: [(&str, f64); 3] = [("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9)];
            let ms = |s: &RunStats, p: f64| s.hist.value_at_percentile(p) as f64 / 1000.0;
            let titles: Vec<[String; 3]> = PCTS
                .iter()
                .map(|(name, _)| [format!("A {name}"), format!("B {name}"), "B/A".into()])
                .collect();
            let mut cols: Vec<(&str, usize, usize)> =
                vec![("A ops/s", 12, 0), ("B ops/s", 12, 0), ("B/A", 8, 3)];
            for [a, b, r] in &titles {
                cols.extend([(a.as_str(), 10, 3), (b.as_str(), 10, 3), (r.as_str(), 8, 3)]);
            }
            let rows: Vec<Vec<f64>> = runs[0]
                .iter()
                .zip(&runs[1])
                .map(|(x, y)| {
                    let (xt, yt) = (x.ops_per_sec(), y.ops_per_sec());
                    let mut row = vec![xt, yt, yt / xt];
                    for (_, p) in PCTS {
                        row.extend([ms(x, p), ms(y, p), ms(y, p) / ms(x, p)]);
                    }
                    row
                })
                .collect();
            // Medians: throughput A, B, B/A, then A, B, B/A of each percentile.
            let m = round_table(&cols, rows);
            // What the servers spent per operation, where they could be measured.
            let cost = |s: &RunStats| {
                s.server_cost.as_ref().map(|c| {
                    let t = c.total();
                    let ops = s.ops.max(1) as f64;
                    (t.cpu_us / ops, t.voluntary as f64 / ops)
                })
            };
            if runs.iter().flatten().all(|s| s.server_cost.is_some()) {
                let rows: Vec<Vec<f64>> = runs[0]
                    .iter()
                    .zip(&runs[1])
                    .map(|(x, y)| {
                        let (xa, ya) = (cost(x).expect("measured"), cost(y).expect("measured"));
                        vec![xa.0, ya.0, ya.0 / xa.0, xa.1, ya.1, ya.1 / xa.1]
                    })
                    .collect();
                round_table(
                    &[
                        ("A cpu us/op", 12, 2),
                        ("B cpu us/op", 12, 2),
                        ("B/A", 8, 3),
                        ("A vcs/op", 12, 3),
                        ("B vcs/op", 12, 3),
                        ("B/A", 8, 3),
                    ],
                    rows,
                );
            }
            // How late each target's requests left this client (open loop): a round whose
            // tail is the client's own shows here, for A and B alike.
            if runs.iter().flatten().all(|s| !s.send_lag.is_empty()) {
                let lag = |s: &RunStats, p: f64| report::pct(&s.send_lag, p) as f64 / 1000.0;
                let rows: Vec<Vec<f64>> = runs[0]
                    .iter()
                    .zip(&runs[1])
                    .map(|(x, y)| vec![lag(x, 99.9), lag(y, 99.9), lag(x, 100.0), lag(y, 100.0)])
                    .collect();
                round_table(
                    &[
                        ("A lag p99.9", 12, 3),
                        ("B lag p99.9", 12, 3),
                        ("A lag max", 12, 3),
                        ("B lag max", 12, 3),
                    ],
                    rows,
                );
            }
            if out.json {
                let mut notes = describe(&load, &cfgs[0]);
                notes.push(("a", a.clone()));
                notes.push(("b", b.clone()));
                let cost_med = |i: usize| {
                    let mut v: Vec<f64> = runs[i]
                        .iter()
                        .filter_map(|s| cost(s).map(|c| c.0))
                        .collect();
                    if v.is_empty() {
                        -1.0
                    } else {
                        median(&mut v)
                    }
                };
                println!(
                    "{{\"ab\":true,\"rounds\":{},\"median_a_ops\":{:.1},\"median_b_ops\":{:.1},\"median_ratio_ops\":{:.4},\"median_ratio_p50\":{:.4},\"median_ratio_p99\":{:.4},\"median_ratio_p99_9\":{:.4},\"median_a_cpu_us_per_op\":{:.3},\"median_b_cpu_us_per_op\":{:.3}}}",
                    runs[0].len().min(runs[1].len()),
                    m[0],
                    m[1],
                    m[2],
                    m[5],
                    m[8],
                    m[11],
                    cost_med(0),
                    cost_med(1)
                );
            }
            // Reports show the median-throughput round of each target.
            let pick = |i: usize| {
                let mut idx: Vec<usize> = (0..runs[i].len()).collect();
                idx.sort_by(|&p, &q| {
                    runs[i][p]
                        .ops_per_sec()
                        .total_cmp(&runs[i][q].ops_per_sec())
                });
                &runs[i][idx[idx.len() / 2]]
            };
            let (la, lb) = (format!("A {a}"), format!("B {b}"));
            write_outputs(
                &out,
                "zkbench A/B",
                &describe(&load, &cfgs[0]),
                &[(&la, pick(0)), (&lb, pick(1))],
            );
        }
        Cmd::Watch {
            connect,
            watchers,
            hot_nodes,
            rounds_per_sec,
            duration,
            root,
            out,
        } => {
            let cfg = ringkeeper::bench::watch::WatchConfig {
                servers: resolve(&connect),
                watchers,
                hot_nodes,
                rounds_per_sec,
                duration: Duration::from_secs_f64(duration),
                root: root.trim_end_matches('/').to_string(),
                round_timeout: Duration::from_secs(2),
            };
            let stats = ringkeeper::bench::watch::run(&cfg).unwrap_or_else(|e| die(e));
            let label = format!("watch {connect}: {watchers} watchers x {hot_nodes} hot nodes");
            let notes = vec![
                ("target", connect.clone()),
                (
                    "measure",
                    "write-to-notification latency; ops = notifications, unanswered = missed"
                        .into(),
                ),
            ];
            if out.json {
                println!("{}", report::json_line(&notes, &stats));
            } else {
                print!("{}", report::summary(&label, &stats));
            }
            write_outputs(&out, &label, &notes, &[(&label, &stats)]);
        }
        Cmd::Storm {
            connect,
            restart,
            sessions,
            timeout,
            session_timeout_ms,
            out,
        } => {
            let cfg = ringkeeper::bench::storm::StormConfig {
                servers: resolve(&connect),
                sessions,
                timeout: Duration::from_secs_f64(timeout),
                session_timeout_ms,
            };
            match restart {
                Some(cmd) => {
                    let restart = Box::new(move || {
                        let st = std::process::Command::new("sh")
                            .arg("-c")
                            .arg(&cmd)
                            .status()
                            .map_err(|e| format!("cannot run the restart command: {e}"))?;
                        if st.success() {
                            Ok(())
                        } else {
                            Err(format!("the restart command failed: {st}"))
                        }
                    });
                    let r = ringkeeper::bench::storm::run_restart(&cfg, restart)
                        .unwrap_or_else(|e| die(e));
                    let label = format!("storm {connect}: {sessions} sessions, restart, resume");
                    let restart_note = match &r.restart {
                        None => "still running at the time limit".to_string(),
                        Some((d, Ok(()))) => format!("ok in {:.2}s", d.as_secs_f64()),
                        Some((d, Err(e))) => format!("{e} after {:.2}s", d.as_secs_f64()),
                    };
                    let notes = vec![
                        ("target", connect.clone()),
                        (
                            "measure",
                            "time from each session's connection drop to its resumed handshake reply; ops = resumed sessions"
                                .into(),
                        ),
                        ("restart", restart_note.clone()),
                    ];
                    if out.json {
                        let line = report::json_line(&notes, &r.reconnect);
                        println!(
                            "{},\"established\":{},\"dropped\":{},\"not_dropped\":{},\"resumed\":{},\"expired_sessions\":{},\"failed\":{},\"attempts\":{},\"storm_p50_ms\":{:.3},\"storm_max_ms\":{:.3}}}",
                            line.trim_end_matches('}'),
                            r.established, r.dropped, r.not_dropped, r.resumed, r.expired, r.failed, r.attempts,
                            r.storm.hist.value_at_percentile(50.0) as f64 / 1000.0,
                            r.storm.hist.max() as f64 / 1000.0
                        );
                    } else {
                        print!(
                            "{}",
                            report::summary(
                                &format!("storm {connect}: {sessions} sessions at once"),
                                &r.storm
                            )
                        );
                        println!("== restart: {restart_note}");
                        println!(
                            "sessions   {} established, {} dropped, {} not dropped; {} resumed, {} expired, {} failed ({} resume attempts)",
                            r.established, r.dropped, r.not_dropped, r.resumed, r.expired, r.failed, r.attempts
                        );
                        let ms = |p: f64| {
                            let h = &r.reconnect.hist;
                            (if p >= 100.0 {
                                h.max()
                            } else {
                                h.value_at_percentile(p)
                            }) as f64
                                / 1000.0
                        };
                        println!(
                            "drop->resume ms  p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}; all resumed {:.2}s after the restart began",
                            ms(50.0), ms(90.0), ms(99.0), ms(99.9), ms(100.0), r.reconnect.window_s
                        );
                    }
                    write_outputs(&out, &label, &notes, &[(&label, &r.reconnect)]);
                }
                None => {
                    let stats = ringkeeper::bench::storm::run(&cfg).unwrap_or_else(|e| die(e));
                    let label = format!("storm {connect}: {sessions} sessions at once");
                    let notes = vec![
                        ("target", connect.clone()),
                        (
                            "measure",
                            "time from the storm's start to each handshake reply; ops = sessions"
                                .into(),
                        ),
                    ];
                    if out.json {
                        println!("{}", report::json_line(&notes, &stats));
                    } else {
                        print!("{}", report::summary(&label, &stats));
                    }
                    write_outputs(&out, &label, &notes, &[(&label, &stats)]);
                }
            }
        }
        Cmd::FakeServer {
            listen,
            delay_ms,
            error_every,
            error_code,
            seconds,
        } => {
            let cfg = FakeConfig {
                error_every,
                error_code,
                ..FakeConfig::delay(Duration::from_secs_f64(delay_ms / 1000.0))
            };
            let s = FakeServer::start(&listen, cfg).unwrap_or_else(|e| die(e));
            eprintln!("fake ZooKeeper on {} (delay {delay_ms} ms)", s.addr);
            std::thread::sleep(Duration::from_secs(seconds));
            s.stop();
        }
    }
}
