//! The server-level disk-full test (issue 3, "Disk trouble"): runs `tests/disk_full.py`
//! against the built `ringkeeper` binary. The data directory sits on a 64 MiB
//! loop-mounted ext4 that the script fills: writes the log cannot make durable must be
//! answered SYSTEMERROR (never success), reads must go on, writes must succeed again once
//! space returns, and every acknowledged write must be present after a restart.
//!
//! Needs python3 with kazoo, root and a loop device. Where a loop-mounted ext4 cannot be
//! made, the script exits 77 with the reason and this test says so loudly and passes; set
//! `RINGKEEPER_DISKFULL_REQUIRE=1` to make that a failure.

use std::process::Command;
use std::time::{Duration, Instant};

/// The whole run's bound: it takes about a second here; a hang must fail, not stall CI.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Exit code of the script when no loop-mounted ext4 can be made.
const SKIPPED: i32 = 77;

#[test]
fn disk_full_fails_writes_with_systemerror_keeps_reads_and_recovers() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/disk_full.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_ringkeeper"))
        .spawn()
        .expect("run python3 (with kazoo installed)");
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the script") {
            break st;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("disk-full test did not finish within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    match status.code() {
        Some(0) => {}
        Some(SKIPPED) if std::env::var_os("RINGKEEPER_DISKFULL_REQUIRE").is_none() => {
            eprintln!(
                "disk_full: NOT RUN: no loop-mounted ext4 can be made here (reason above); \
                 set RINGKEEPER_DISKFULL_REQUIRE=1 to fail instead"
            );
        }
        other => panic!("disk-full test failed: exit {other:?} (see its output above)"),
    }
}
