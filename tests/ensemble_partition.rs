//! Network partitions of a multi-process ensemble: runs `tests/ensemble_partition.py`
//! against the built `ringkeeper` binary. Each server runs in its own Linux network
//! namespace (a "host" on a private bridge, `tests/netns.py`), the driver and its kazoo
//! clients in another; a host's cable is cut (or a group of hosts moved to a bridge of
//! its own), so packets are dropped silently and only the timeouts (tickTime, syncLimit,
//! initLimit) find the failure, unlike the process kills of `ensemble_election`.
//!
//! Each scenario asserts: the majority elects a leader and acknowledges writes, every
//! minority server leaves its role (an old leader steps down), no client on the minority
//! side gets success for a write sent after the cut, and after the heal the minority
//! rejoins as followers, all servers report the same zxid and tree digest, and every
//! acknowledged write is on every server. Timings are printed by the script, never
//! asserted.
//!
//! Needs python3 with kazoo, root and iproute2. Where network namespaces cannot be made
//! (not root, no `ip`), the script exits 77 with the reason and the test says so loudly
//! and passes; set `RINGKEEPER_PARTITION_REQUIRE=1` to make that a failure.

mod common_script;

use common_script::{run_script, Needs};
use std::time::Duration;

/// Bound on one scenario: a run takes about 15 s here and the script gives up by itself
/// after 420 s (cleaning up its namespaces); a hang must fail, not stall CI.
const RUN_TIMEOUT: Duration = Duration::from_secs(480);

fn run_scenario(scenario: &str, servers: usize) {
    let needs = Needs {
        require_var: "RINGKEEPER_PARTITION_REQUIRE",
        what: "network namespaces: root and iproute2",
    };
    let n = servers.to_string();
    run_script(
        "ensemble_partition.py",
        &[scenario, &n],
        RUN_TIMEOUT,
        Some(needs),
    );
}

/// The leader's cable is cut under writes: the other two elect a leader and go on
/// acknowledging writes, the old leader steps down and acknowledges nothing sent after
/// the cut, and after the heal it rejoins as a follower with the same tree.
#[test]
fn leader_cut_off_steps_down_and_majority_goes_on() {
    run_scenario("leader", 3);
}

/// The same with five servers: four elect a new leader.
#[test]
fn five_servers_leader_cut_off_steps_down_and_majority_goes_on() {
    run_scenario("leader", 5);
}

/// A follower's cable is cut under writes: the leader and the other follower go on,
/// the cut-off follower stops serving its clients' writes, and after the heal it
/// catches up to the same zxid and digest.
#[test]
fn follower_cut_off_stops_serving_and_catches_up() {
    run_scenario("follower", 3);
}

/// Five servers split 2|3 with the leader on the side of two: the two still talk but
/// are no quorum, so the leader steps down and neither acknowledges a write; the three
/// elect a leader; after the heal all five converge.
#[test]
fn five_servers_split_two_three_leader_on_the_two_side() {
    run_scenario("split", 5);
}
