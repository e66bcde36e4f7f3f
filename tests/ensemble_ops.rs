//! Operating an ensemble without outages (issue 12): `tests/ensemble_ops.py` scenarios
//! against the built `ringkeeper` binary, three real processes on 127.0.0.1. Timings are
//! printed by the script, never asserted (a hand-off's, under load, is measured by
//! `scripts/rolling-restart.py`).

mod common_script;

use common_script::run_script;
use std::time::Duration;

const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// `hlth` and `/health`, `/health/ready`, `/health/safe-to-stop` follow the quorum
/// (three synced voters: safe to stop everywhere; one stopped: nowhere); ZooKeeper's
/// `shed_connections` closes the share asked for and the sessions resume; a drain makes
/// the server not ready and sheds every client. Needs python3 with kazoo.
#[test]
fn health_answers_follow_the_quorum_and_drain_sheds_clients() {
    run_script("ensemble_ops.py", &["health"], RUN_TIMEOUT, None);
}

/// `ydld` and `rqld` move leadership under writes without an election; clients keep
/// their connections; every acknowledged write is on every server.
#[test]
fn ydld_and_rqld_move_leadership_without_an_election() {
    run_script("ensemble_ops.py", &["transfer"], RUN_TIMEOUT, None);
}

/// A leader that gets SIGTERM hands off first: no survivor goes looking, and nothing
/// acknowledged is lost.
#[test]
fn sigterm_on_the_leader_hands_off_before_stopping() {
    run_script("ensemble_ops.py", &["sigterm"], RUN_TIMEOUT, None);
}

/// `readonlymode.enabled=true`: with two of three servers stopped, the third serves a
/// kazoo `read_only=True` client (CONNECTED_RO, reads, NotReadOnly on writes, `isro`
/// says `ro`) and refuses a read-write one; when the quorum returns the client goes
/// read-write.
#[test]
fn read_only_mode_serves_read_only_clients_without_a_quorum() {
    run_script("ensemble_ops.py", &["readonly"], RUN_TIMEOUT, None);
}

/// The same with the official Java client (`canBeReadOnly=true`, every server in its
/// connect string): ConnectedReadOnly, reads, NotReadOnlyException on a write, then
/// SyncConnected and a write once the quorum is back. Needs Java and libzookeeper-java.
#[test]
fn read_only_mode_serves_the_java_client_that_asked_for_it() {
    run_script("ensemble_ops.py", &["readonly-java"], RUN_TIMEOUT, None);
}

/// Three voters and an observer: the leader's AdminServer `observers` lists the
/// observer with ZooKeeper's `LearnerHandler` keys and real counts (the requests it
/// forwarded, the last zxid sent); the followers and the observer list none.
#[test]
fn admin_observers_lists_the_leaders_observer() {
    run_script("ensemble_ops.py", &["observers"], RUN_TIMEOUT, None);
}
