//! The kill -9 test (issue 3): runs `tests/crash_kill9.py` against the built
//! `ringkeeper` binary. A kazoo client writes with many requests in flight, the server is
//! SIGKILLed at a random moment, 20 rounds; every acknowledged write must survive and
//! `ringkeeper data check` must find the data directory valid.
//!
//! Needs python3 with kazoo (`pip install kazoo`). While the server keeps data in memory
//! only (storage not wired into `server::start`), the script exits 77 and this test
//! says so loudly and passes; set `RINGKEEPER_KILL9_REQUIRE=1` to make that a failure.
//! Rounds and seed: `RINGKEEPER_KILL9_ROUNDS`, `RINGKEEPER_KILL9_SEED`.

use std::process::Command;
use std::time::{Duration, Instant};

/// The whole run's bound: 20 rounds take about 35 s here; a hang must fail, not stall CI.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Exit code of the script when the binary does not persist anything.
const NOT_WIRED: i32 = 77;

#[test]
fn kill9_loses_no_acknowledged_write() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/crash_kill9.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(env!("CARGO_BIN_EXE_ringkeeper"));
    cmd.arg(std::env::var("RINGKEEPER_KILL9_ROUNDS").unwrap_or_else(|_| "20".into()));
    if let Ok(seed) = std::env::var("RINGKEEPER_KILL9_SEED") {
        cmd.arg(seed);
    }
    let mut child = cmd.spawn().expect("run python3 (with kazoo installed)");
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the script") {
            break st;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kill -9 test did not finish within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    match status.code() {
        Some(0) => {}
        Some(NOT_WIRED) if std::env::var_os("RINGKEEPER_KILL9_REQUIRE").is_none() => {
            eprintln!(
                "crash_kill9: NOT RUN: the server does not persist data yet \
                 (storage not wired into the server)"
            );
        }
        other => panic!("kill -9 test failed: exit {other:?} (see its output above)"),
    }
}
