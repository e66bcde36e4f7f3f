//! Dynamic reconfiguration (issue 12): `tests/ensemble_reconfig.py` scenarios against
//! the built `ringkeeper` binary, real processes on 127.0.0.1. Needs python3 with kazoo.

mod common_script;

use common_script::run_script;
use std::time::Duration;

const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// `/zookeeper/config` holds the server lines and `version=` on every server; with
/// reconfigEnabled the first established config takes the epoch's first zxid as its
/// version and moves from zoo.cfg to `zoo.cfg.dynamic.<version>` (zoo.cfg.bak kept), a
/// restarted server starts from it; without, version 0 and zoo.cfg untouched.
#[test]
fn zookeeper_config_holds_the_ensemble_and_moves_to_a_dynamic_file() {
    run_script("ensemble_reconfig.py", &["config"], RUN_TIMEOUT, None);
}

/// kazoo's `reconfig` on a 3-voter ensemble under writes: NoAuth, BadVersion,
/// BadArguments and NewConfigNoQuorum refusals; a fourth server joins, becomes an
/// observer and a participant again, a follower and then the leader leave (removed
/// servers stop serving; the leader hands leadership over first);
/// `/zookeeper/config` agrees everywhere, its watch fires, no acknowledged write is lost.
#[test]
fn kazoo_reconfig_adds_and_removes_servers_under_writes() {
    run_script("ensemble_reconfig.py", &["kazoo"], RUN_TIMEOUT, None);
}

/// The official Java client's `ZooKeeperAdmin.reconfigure` (NoAuth without the super
/// user; a join from getConfig's version, whose watch fires; BadVersion from the stale
/// one) and zkCli's `reconfig -remove` and `reconfig -members`: 3 servers grow to 4 and
/// shrink to 2 under a zkbench setData load and a kazoo writer; removed servers stop
/// serving; no acknowledged write is lost. Needs javac, libzookeeper-java and zkCli.
#[test]
fn java_admin_and_zkcli_reconfig_grow_to_four_and_shrink_to_two_under_load() {
    run_script("ensemble_reconfig.py", &["java"], RUN_TIMEOUT, None);
}

/// A reconfig that gives a server another client address moves its client listener:
/// the new port accepts, the old one refuses, a session connected before the move goes
/// on, and a restart listens on the new port (from the dynamic config file).
#[test]
fn a_reconfig_moves_a_servers_client_port_and_keeps_its_sessions() {
    run_script("ensemble_reconfig.py", &["clientaddr"], RUN_TIMEOUT, None);
}

/// 3 -> 5 -> 3 under three kazoo writers: servers 4 and 5 start with the five-server
/// config and one incremental reconfig adds both; another removes an original follower
/// and server 5. Removed servers keep running but stop serving (no session); every
/// acknowledged write is on every remaining server; trees and digests agree.
#[test]
fn scale_three_to_five_to_three_under_writes() {
    run_script("ensemble_reconfig.py", &["scale"], RUN_TIMEOUT, None);
}

/// The same with the leader and an original follower removed in one reconfig: the
/// leader hands leadership to a server of the new config (no election on any remaining
/// server), then stops serving; nothing acknowledged is lost.
#[test]
fn scale_three_to_five_to_three_removing_the_leader() {
    run_script("ensemble_reconfig.py", &["scale-leader"], RUN_TIMEOUT, None);
}
