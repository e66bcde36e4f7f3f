//! Runs one of the multi-process test scripts (`tests/*.py`) against the built
//! `ringkeeper` binary, bounded in time, and judges its exit code: 0 passes; 77 means the
//! script cannot run here (no root, no loop device, no network namespaces), which is a
//! loud NOT RUN unless the given `*_REQUIRE` variable is set; anything else fails.

// Each test binary uses a part of it.
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

/// The exit code of a script that cannot run on this machine (it printed why).
pub const CANNOT_RUN: i32 = 77;

/// What a script needs that a machine may lack, for its NOT RUN message.
pub struct Needs {
    /// Set this variable to make a NOT RUN a failure.
    pub require_var: &'static str,
    /// What is missing when the script exits 77, e.g. "root and iproute2".
    pub what: &'static str,
}

/// Runs `python3 tests/<script> <ringkeeper binary> <args...>`; panics (failing the test)
/// on a non-zero exit, a hang beyond `timeout` (the script is killed), or a 77 when
/// `needs` is `None` or its variable is set.
pub fn run_script(script: &str, args: &[&str], timeout: Duration, needs: Option<Needs>) {
    let path = format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR"));
    let what = format!("{script} {}", args.join(" "));
    let mut child = Command::new("python3")
        .arg(&path)
        .arg(env!("CARGO_BIN_EXE_ringkeeper"))
        .args(args)
        .spawn()
        .expect("run python3 (with kazoo installed)");
    let status = wait_bounded(&mut child, timeout, &what);
    match (status.code(), needs) {
        (Some(0), _) => {}
        (Some(CANNOT_RUN), Some(n)) if std::env::var_os(n.require_var).is_none() => {
            eprintln!(
                "{what}: NOT RUN: needs {} (reason above); set {}=1 to fail instead",
                n.what, n.require_var
            );
        }
        (code, _) => panic!("{what} failed: exit {code:?} (see its output above)"),
    }
}

/// Waits for `child`; kills it and panics (failing the test) if it runs past `timeout`.
pub fn wait_bounded(
    child: &mut std::process::Child,
    timeout: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait for the script") {
            return st;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
