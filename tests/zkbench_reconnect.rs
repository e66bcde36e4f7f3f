//! zkbench's reconnecting parts count what happened:
//!
//! - a run with `reconnect` whose server dies moves the lost sessions to the next
//!   server, resumed with their ids, and goes on; the requests in flight at the loss are
//!   CONNECTIONLOSS, and every request is either answered or lost (checked against the
//!   fake servers' own counts);
//! - a resume the server refuses (timeOut 0) is counted as expired and replaced;
//! - the handshake driver retries connections a server dropped, and reports those that
//!   ran out of attempts;
//! - a storm against the real `ringkeeper` binary, restarted by
//!   `scripts/ringkeeper.sh restart`, resumes every session.
//!
//! Tolerances: reconnect times are only bounded above by 2 s (a fake server accepts at
//! once; the bound absorbs a loaded 2-core machine). Everything else is an exact count.

use bytes::Bytes;
use ringkeeper::bench::conn::{
    drive_handshakes, handshake_frame, HandshakeJob, HandshakeLimits, HandshakeOutcome,
};
use ringkeeper::bench::engine::{self, Config, LoadModel, CONNECTION_LOSS};
use ringkeeper::bench::fake::{FakeConfig, FakeServer};
use ringkeeper::bench::rng::KeyDist;
use ringkeeper::bench::storm::{run_restart, StormConfig};
use ringkeeper::bench::workload::{Mix, Workload};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const OUTSTANDING: usize = 4;

fn config(servers: Vec<std::net::SocketAddr>) -> Config {
    Config {
        servers,
        sessions: 4,
        load: LoadModel::Closed {
            outstanding: OUTSTANDING,
        },
        warmup: Duration::ZERO,
        duration: Duration::from_millis(2000),
        drain: Duration::from_secs(5),
        workload: Workload {
            mix: Mix::parse("get", 0.9).unwrap(),
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
        reconnect: true,
        no_coalesce: false,
        server_pids: Vec::new(),
        record_acks: false,
        tls: None,
    }
}

/// Runs 4 sessions over servers A and B (two each) and kills A after 700 ms.
fn failover(b_cfg: FakeConfig) -> (engine::RunStats, u64, FakeServer) {
    let a = FakeServer::start("127.0.0.1:0", FakeConfig::delay(Duration::from_millis(2))).unwrap();
    let b = FakeServer::start("127.0.0.1:0", b_cfg).unwrap();
    let cfg = config(vec![a.addr, b.addr]);
    let a_counters = a.counters.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        a.kill();
    });
    let stats = engine::run(&cfg).unwrap();
    killer.join().unwrap();
    let a_requests = a_counters.requests.load(Ordering::Relaxed);
    (stats, a_requests, b)
}

#[test]
fn lost_sessions_resume_on_the_next_server_and_go_on() {
    let (stats, a_requests, b) = failover(FakeConfig::delay(Duration::from_millis(2)));
    assert_eq!(stats.disconnects, 2, "A's two sessions lost their server");
    assert_eq!(stats.reconnects, 2, "both resumed on B");
    assert_eq!(b.counters.resumes.load(Ordering::Relaxed), 2);
    assert_eq!((stats.expired, stats.still_disconnected), (0, 0));
    assert_eq!(stats.reconnect.len(), 2);
    assert!(
        stats.reconnect.max() <= 2_000_000,
        "{}",
        stats.reconnect.max()
    );
    // A closed loop keeps exactly OUTSTANDING requests in flight per session.
    let lost = stats.errors.get(&CONNECTION_LOSS).copied().unwrap_or(0);
    assert_eq!(lost, 2 * OUTSTANDING as u64, "{:?}", stats.errors);
    assert_eq!(stats.errors.len(), 1, "{:?}", stats.errors);
    assert_eq!(stats.unanswered, 0);
    // Every request a server read was answered or lost with A; every lost one was sent.
    let served = a_requests + b.counters.requests.load(Ordering::Relaxed);
    assert!(
        stats.ops <= served,
        "{} answered, {served} served",
        stats.ops
    );
    assert!(
        served <= stats.ops + lost,
        "{served} served, {} answered",
        stats.ops
    );
    // The run went on after the failover: the last second has answers.
    assert!(*stats.timeline.last().unwrap() > 0, "{:?}", stats.timeline);
    b.stop();
}

#[test]
fn an_expired_resume_is_counted_and_replaced_by_a_new_session() {
    let b_cfg = FakeConfig {
        expire_resumes: true,
        ..FakeConfig::delay(Duration::from_millis(2))
    };
    let (stats, _, b) = failover(b_cfg);
    assert_eq!(stats.disconnects, 2);
    assert_eq!((stats.reconnects, stats.expired), (0, 2));
    assert_eq!(stats.still_disconnected, 0);
    assert_eq!(b.counters.resumes.load(Ordering::Relaxed), 2);
    // Two sessions at the start, two refused resumes, two new sessions.
    assert_eq!(b.counters.sessions.load(Ordering::Relaxed), 6);
    assert!(*stats.timeline.last().unwrap() > 0, "{:?}", stats.timeline);
    b.stop();
}

#[test]
fn handshakes_ramp_retry_dropped_connections_and_report_the_rest() {
    let cfg = FakeConfig {
        drop_first: 5,
        ..FakeConfig::delay(Duration::ZERO)
    };
    let jobs: Vec<HandshakeJob> = (0..10)
        .map(|_| HandshakeJob {
            first_server: 0,
            hello: handshake_frame(10_000, None),
            since: Instant::now(),
        })
        .collect();
    let lim = |attempts| HandshakeLimits {
        concurrency: 3,
        attempts,
        backoff: Duration::from_millis(10),
        attempt_timeout: Duration::from_secs(5),
        deadline: Instant::now() + Duration::from_secs(30),
    };
    let done = |o: &HandshakeOutcome| matches!(o, HandshakeOutcome::Done { .. });
    let attempts = |o: &HandshakeOutcome| match o {
        HandshakeOutcome::Done { attempts, .. }
        | HandshakeOutcome::Expired { attempts, .. }
        | HandshakeOutcome::Failed { attempts, .. } => *attempts as u64,
    };

    let server = FakeServer::start("127.0.0.1:0", cfg).unwrap();
    let out = drive_handshakes(&[server.addr], &jobs, lim(3)).unwrap();
    assert_eq!(out.iter().filter(|o| done(o)).count(), 10);
    assert_eq!(
        out.iter().map(attempts).sum::<u64>(),
        15,
        "5 dropped, 5 retries"
    );
    assert_eq!(server.counters.sessions.load(Ordering::Relaxed), 10);
    server.stop();

    let server = FakeServer::start("127.0.0.1:0", cfg).unwrap();
    let out = drive_handshakes(&[server.addr], &jobs, lim(1)).unwrap();
    assert_eq!(out.iter().filter(|o| done(o)).count(), 5);
    assert_eq!(server.counters.dropped.load(Ordering::Relaxed), 5);
    server.stop();
}

/// Stops the servers started in `dir` (by PID, through the script) and removes it.
struct RingKeeper {
    dir: PathBuf,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/ringkeeper.sh")
}

fn rk(args: &[&str], dir: &std::path::Path) -> Command {
    let mut c = Command::new("bash");
    c.arg(script())
        .arg(args[0])
        .arg(dir)
        .args(&args[1..])
        .env("RINGKEEPER_BIN", env!("CARGO_BIN_EXE_ringkeeper"));
    c
}

impl Drop for RingKeeper {
    fn drop(&mut self) {
        let _ = rk(&["stop"], &self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn storm_sessions_resume_after_a_ringkeeper_restart() {
    const SESSIONS: usize = 50;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("zkbench-restart-{}", std::process::id()));
    let server = RingKeeper { dir: dir.clone() };
    let st = rk(&["start", &port.to_string()], &dir).status().unwrap();
    assert!(st.success(), "ringkeeper did not start");
    let pid_before = std::fs::read_to_string(dir.join("pid")).unwrap();
    let cfg = StormConfig {
        servers: vec![format!("127.0.0.1:{port}").parse().unwrap()],
        sessions: SESSIONS,
        timeout: Duration::from_secs(40),
        session_timeout_ms: 30_000,
    };
    let restart_dir = dir.clone();
    let r = run_restart(
        &cfg,
        Box::new(move || {
            let st = rk(&["restart"], &restart_dir)
                .status()
                .map_err(|e| e.to_string())?;
            st.success().then_some(()).ok_or(format!("restart: {st}"))
        }),
    )
    .unwrap();
    let pid_after = std::fs::read_to_string(dir.join("pid")).unwrap();
    assert_ne!(pid_before, pid_after, "a new server process");
    assert!(matches!(r.restart, Some((_, Ok(())))), "{:?}", r.restart);
    assert_eq!(r.established, SESSIONS as u64);
    assert_eq!((r.dropped, r.not_dropped), (SESSIONS as u64, 0));
    assert_eq!(
        (r.resumed, r.expired, r.failed),
        (SESSIONS as u64, 0, 0),
        "every session resumes with its id and password"
    );
    assert_eq!(r.reconnect.hist.len(), SESSIONS as u64);
    assert!(r.attempts >= SESSIONS as u64);
    drop(server);
}
