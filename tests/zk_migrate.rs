//! Moving between Apache ZooKeeper and RingKeeper with real servers (issue 14): runs
//! `tests/zk_migrate.py` scenarios against the built `ringkeeper` binary and Apache
//! ZooKeeper 3.8 (Debian package `zookeeper`, started by `scripts/apache-zk.sh` on
//! loopback), with kazoo as the client. See the script's header for what each checks.
//!
//! Needs python3 with kazoo and the `zookeeper` package; without ZooKeeper the script
//! exits 77 (NOT RUN, a failure when RINGKEEPER_ZK_REQUIRE is set).

mod common_script;

use common_script::{run_script, Needs};
use std::time::Duration;

fn needs() -> Option<Needs> {
    Some(Needs {
        require_var: "RINGKEEPER_ZK_REQUIRE",
        what: "Apache ZooKeeper (apt-get install zookeeper)",
    })
}

#[test]
fn zookeeper_standalone_to_ringkeeper_and_back() {
    run_script(
        "zk_migrate.py",
        &["standalone"],
        Duration::from_secs(900),
        needs(),
    );
}

#[test]
fn damaged_zookeeper_data_is_refused_with_file_and_offset() {
    run_script("zk_migrate.py", &["bad"], Duration::from_secs(600), needs());
}

#[test]
fn zookeeper_ensemble_moves_to_a_ringkeeper_ensemble() {
    run_script(
        "zk_migrate.py",
        &["ensemble"],
        Duration::from_secs(600),
        needs(),
    );
}
