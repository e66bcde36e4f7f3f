//! Local sessions (issue 12): `tests/ensemble_sessions.py` scenarios against the built
//! `ringkeeper` binary, three voters (and an observer) as real processes on 127.0.0.1,
//! with kazoo and the official Java client. Needs python3 with kazoo, Java and
//! libzookeeper-java.

mod common_script;

use common_script::run_script;
use std::time::Duration;

const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// `localSessionsEnabled` with upgrading, on a follower, the observer and the leader: a
/// reading session is local and never reaches the leader (its proposal count, global
/// sessions and every zxid unchanged); an ephemeral upgrades it (global on the leader,
/// owner everywhere, deleted with it); a local id is expired on another server and
/// resumed on its own; a silent local session is expired by its own server; the Java
/// client's session and lock scenarios pass on every role.
#[test]
fn local_sessions_stay_on_their_server_until_an_ephemeral_upgrades_them() {
    run_script("ensemble_sessions.py", &["local"], RUN_TIMEOUT, None);
}

/// Without `localSessionsUpgradingEnabled` (ZooKeeper's default) an ephemeral on a local
/// session is EPHEMERALONLOCALSESSION for kazoo and the Java client, on a follower and
/// on the leader, and leaves no node.
#[test]
fn without_upgrading_an_ephemeral_on_a_local_session_is_refused() {
    run_script("ensemble_sessions.py", &["noupgrade"], RUN_TIMEOUT, None);
}
