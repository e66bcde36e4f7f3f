//! The server-level disk-full test (issue 3, "Disk trouble"): runs `tests/disk_full.py`
//! against the built `ringkeeper` binary. The data directory sits on a 64 MiB
//! loop-mounted ext4 that the script fills: writes the log cannot make durable must be
//! answered SYSTEMERROR (never success), reads must go on, writes must succeed again once
//! space returns, and every acknowledged write must be present after a restart.
//!
//! Needs python3 with kazoo, root and a loop device. Where a loop-mounted ext4 cannot be
//! made, the script exits 77 with the reason and this test says so loudly and passes; set
//! `RINGKEEPER_DISKFULL_REQUIRE=1` to make that a failure.

mod common_script;

use common_script::{run_script, Needs};
use std::time::Duration;

/// The whole run's bound: it takes about a second here; a hang must fail, not stall CI.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn disk_full_fails_writes_with_systemerror_keeps_reads_and_recovers() {
    let needs = Needs {
        require_var: "RINGKEEPER_DISKFULL_REQUIRE",
        what: "a loop-mounted ext4: root and a loop device",
    };
    run_script("disk_full.py", &[], RUN_TIMEOUT, Some(needs));
}
