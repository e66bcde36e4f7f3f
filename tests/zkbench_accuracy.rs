//! zkbench measures what it claims: against a fake server that answers every request
//! after a known delay, and every Nth request with a known error code, the reported
//! latencies match the delay and the error counts match the server's own count exactly,
//! in both load models. Plus: a short run of the zkbench binary writes the HTML report.
//!
//! Tolerances (stated so they hold on a loaded 2-core machine): every latency is at least
//! the delay (the server cannot answer sooner), and p50 lies in [delay, delay + 15 ms].

use bytes::Bytes;
use ringkeeper::bench::engine::{self, Config, LoadModel};
use ringkeeper::bench::fake::{FakeConfig, FakeServer};
use ringkeeper::bench::report;
use ringkeeper::bench::rng::KeyDist;
use ringkeeper::bench::workload::{Mix, Workload};
use std::sync::atomic::Ordering;
use std::time::Duration;

const DELAY: Duration = Duration::from_millis(20);
const DELAY_US: u64 = 20_000;
const SLACK_US: u64 = 15_000;
const NONODE: i32 = -101;

fn fake(error_every: u64) -> FakeServer {
    let cfg = FakeConfig {
        error_every,
        error_code: NONODE,
        ..FakeConfig::delay(DELAY)
    };
    FakeServer::start("127.0.0.1:0", cfg).expect("bind fake server")
}

fn config(server: &FakeServer, load: LoadModel, workload: &str) -> Config {
    Config {
        servers: vec![server.addr],
        sessions: 4,
        load,
        warmup: Duration::ZERO,
        duration: Duration::from_millis(1500),
        drain: Duration::from_secs(5),
        workload: Workload {
            mix: Mix::parse(workload, 0.9).unwrap(),
            root: "/zkbench".into(),
            keys: 100,
            dist: KeyDist::uniform(100),
            value: Bytes::from_static(b"0123456789"),
            multi_ops: 2,
            run_id: 1,
        },
        session_timeout_ms: 10_000,
        threads: 2,
        seed: 1,
        progress: false,
        reconnect: false,
        no_coalesce: false,
        server_pids: Vec::new(),
        record_acks: false,
        tls: None,
    }
}

/// Checks latency bounds and exact error accounting against the server's counters.
fn check(stats: &engine::RunStats, server: &FakeServer) {
    let requests = server.counters.requests.load(Ordering::Relaxed);
    let errors = server.counters.errors.load(Ordering::Relaxed);
    assert_eq!(
        stats.unanswered, 0,
        "every request is answered within the drain time"
    );
    assert_eq!(stats.disconnects, 0);
    // With no warm-up every request the server saw was sent inside the window.
    assert_eq!(
        stats.ops, requests,
        "answered requests vs the server's count"
    );
    assert!(errors > 0, "the run must exercise errors");
    let want: std::collections::BTreeMap<i32, u64> = [(NONODE, errors)].into();
    assert_eq!(stats.errors, want, "errors by code");
    assert_eq!(errors, requests / 7, "every 7th request failed");
    let p50 = stats.hist.value_at_percentile(50.0);
    assert!(
        stats.hist.min() >= DELAY_US,
        "min {} us below the server's delay",
        stats.hist.min()
    );
    assert!(
        p50 <= DELAY_US + SLACK_US,
        "p50 {p50} us, want <= {}",
        DELAY_US + SLACK_US
    );
}

#[test]
fn closed_loop_latency_and_errors_match_the_server() {
    let server = fake(7);
    let cfg = config(&server, LoadModel::Closed { outstanding: 4 }, "get");
    let stats = engine::run(&cfg).unwrap();
    check(&stats, &server);
    // A closed loop has no schedule to be late for.
    assert!(stats.send_lag.is_empty());
    assert!(!report::summary("closed", &stats).contains("send lag"));
    assert!(!report::json_line(&[], &stats).contains("send_lag"));
    // 16 requests in flight, each taking at least 20 ms: at most 800 ops/s. The floor is
    // loose because a busy machine may stretch each round trip.
    let ops_s = stats.ops_per_sec();
    assert!(
        ops_s <= 800.0 * 1.02,
        "{ops_s} ops/s exceeds what 16 x 20 ms allows"
    );
    assert!(ops_s >= 200.0, "{ops_s} ops/s");
    server.stop();
}

#[test]
fn open_loop_latency_errors_and_rate_match_the_schedule() {
    let server = fake(7);
    let cfg = config(&server, LoadModel::Open { rate: 200.0 }, "get=1,set=1");
    let stats = engine::run(&cfg).unwrap();
    check(&stats, &server);
    // 200/s for 1.5 s is 300 slots, whatever the server's delay.
    assert!(
        (296..=304).contains(&stats.ops),
        "{} ops for 300 slots",
        stats.ops
    );
    assert_eq!(
        stats.per_op.len(),
        2,
        "per-op histograms for getData and setData"
    );
    // Each measured request, sent once, says how late it left: all were answered, so
    // there is one lag per answer, and the outputs carry them.
    assert_eq!(stats.send_lag.len(), stats.ops);
    assert!(report::summary("open", &stats).contains("send lag ms"));
    let json = report::json_line(&[], &stats);
    for key in ["send_lag_p99_ms", "send_lag_p99_9_ms", "send_lag_max_ms"] {
        assert!(json.contains(&format!("\"{key}\":")), "{key} in {json}");
    }
    server.stop();
}

/// A schedule faster than one session may have requests in flight for
/// (`MAX_OPEN_OUTSTANDING` against a server that answers after 20 ms: at most 500,000/s)
/// leaves the client behind it: its requests leave later and later, and the send lag
/// says so (here the client is the bottleneck, not the server).
#[test]
fn an_open_loop_the_client_cannot_keep_shows_as_send_lag() {
    let server = fake(0);
    // 200,000 slots in 200 ms: at 500,000/s at most, the last leave 200 ms late or more.
    let mut cfg = config(&server, LoadModel::Open { rate: 1_000_000.0 }, "exists");
    cfg.sessions = 1;
    cfg.threads = 1;
    cfg.duration = Duration::from_millis(200);
    let stats = engine::run(&cfg).unwrap();
    server.stop();
    // Each answer was sent once and has its lag (a loaded machine may leave some
    // unanswered at the drain's end: those have one if they left).
    assert!(stats.ops > 0);
    assert!(stats.send_lag.len() >= stats.ops);
    assert!(
        stats.send_lag.max() >= 100_000,
        "the last requests left {} us late",
        stats.send_lag.max()
    );
}

/// Requests answered after more than 100 ms.
fn slow(stats: &engine::RunStats) -> u64 {
    stats.hist.count_between(100_000, engine::HIST_MAX_US)
}

#[test]
fn open_loop_charges_a_server_stall_to_every_request_it_delays() {
    // One session at 200/s; after 30 requests the server stops reading for 300 ms.
    // Requests scheduled in the first ~220 ms of the stall wait more than 100 ms:
    // about 44 of them. A closed loop with one request in flight sees the same stall
    // as a single slow sample (the omission the open loop corrects).
    const STALL: Duration = Duration::from_millis(300);
    let cfg_fake = FakeConfig {
        stall_after: 30,
        stall: STALL,
        ..FakeConfig::delay(DELAY)
    };
    let server = FakeServer::start("127.0.0.1:0", cfg_fake).unwrap();
    let mut cfg = config(&server, LoadModel::Open { rate: 200.0 }, "exists");
    cfg.sessions = 1;
    let open = engine::run(&cfg).unwrap();
    server.stop();
    assert!(
        open.hist.max() >= STALL.as_micros() as u64,
        "max {} us",
        open.hist.max()
    );
    // Upper bound is loose: a busy machine may oversleep the stall.
    assert!(
        (30..=90).contains(&slow(&open)),
        "{} requests over 100 ms",
        slow(&open)
    );
    // They left on time: the send lag charges the stall to the server, not to the
    // client (a few may leave late on a busy machine, not the stall's 30 or more).
    let late = open.send_lag.count_between(100_000, engine::HIST_MAX_US);
    assert!(late <= 5, "{late} requests left over 100 ms late");

    // The per-second latencies place the stall: it ends in the first second of the
    // window (after ~150 ms + 300 ms), whose p99 holds it; the last second is clean.
    let tl = &open.timeline_lat;
    assert_eq!(tl.len(), open.timeline.len(), "a histogram per second");
    assert!(
        tl[0].value_at_quantile(0.99) >= 250_000,
        "first second p99 {} us",
        tl[0].value_at_quantile(0.99)
    );
    // Each second's histogram holds exactly that second's answers (no timing bound on
    // the clean seconds: a loaded machine may stall them too).
    for (i, h) in tl.iter().enumerate() {
        assert_eq!(h.len(), open.timeline[i], "second {i}");
    }
    let csv = report::timeline_csv(&open);
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("second,unix_ms,ops,p50_ms,p99_ms,max_ms"));
    let first: Vec<&str> = rows.next().unwrap().split(',').collect();
    assert_eq!(first.len(), 6, "{csv}");
    assert!(
        first[1].parse::<u64>().unwrap() > 1_600_000_000_000,
        "{csv}"
    );
    assert!(first[4].parse::<f64>().unwrap() >= 250.0, "{csv}");
    assert_eq!(rows.count() + 1, open.timeline.len());

    let server = FakeServer::start("127.0.0.1:0", cfg_fake).unwrap();
    let mut cfg = config(&server, LoadModel::Closed { outstanding: 1 }, "exists");
    cfg.sessions = 1;
    let closed = engine::run(&cfg).unwrap();
    server.stop();
    // One request waits out the stall; a busy machine may add a slow one or two of its
    // own, still far from the open loop's 30 or more.
    assert!(
        (1..=3).contains(&slow(&closed)),
        "the closed loop waits out the stall once: {} requests over 100 ms",
        slow(&closed)
    );
}

#[test]
fn zkbench_binary_writes_the_html_report_and_json() {
    let server = fake(5);
    let dir = std::env::temp_dir().join(format!("zkbench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("report.html");
    let hgrm = dir.join("latency.hgrm");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zkbench"))
        .args([
            "run",
            "--connect",
            &server.addr.to_string(),
            "--no-setup",
            "-q",
            "--json",
        ])
        .args([
            "-w",
            "mixed",
            "-s",
            "4",
            "-k",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.2",
        ])
        .arg("--html")
        .arg(&html)
        .arg("--hgrm")
        .arg(&hgrm)
        .output()
        .expect("run zkbench");
    assert!(
        out.status.success(),
        "zkbench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8(out.stdout).unwrap();
    assert_eq!(json.lines().count(), 1, "one JSON line: {json}");
    assert!(json.starts_with('{') && json.trim_end().ends_with('}'));
    assert!(json.contains("\"errors\":{\"NONODE\":"), "{json}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        page.matches("<svg").count(),
        2,
        "percentile curve and timeline"
    );
    assert!(page.contains("<polyline"));
    // Self-contained: no scripts, no external resources.
    assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="));
    let dist = std::fs::read_to_string(&hgrm).unwrap();
    assert!(dist.contains("#[Max"), "{dist}");
    std::fs::remove_dir_all(&dir).ok();
    server.stop();
}

#[test]
fn html_report_renders_a_series() {
    let server = fake(0);
    let stats = engine::run(&config(
        &server,
        LoadModel::Closed { outstanding: 2 },
        "get",
    ))
    .unwrap();
    let page = report::html("t", &[("target", "fake".into())], &[("fake", &stats)]);
    assert!(page.contains("<td>fake</td>") || page.contains(">fake</td>"));
    let line = report::json_line(&[], &stats);
    assert!(line.contains(&format!("\"ops\":{}", stats.ops)));
    server.stop();
}
