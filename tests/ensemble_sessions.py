#!/usr/bin/env python3
"""Local sessions (`localSessionsEnabled`, `localSessionsUpgradingEnabled`) on real
`ringkeeper` processes on 127.0.0.1: three voters and an observer started from zoo.cfg
files, as in ensemble.py, with kazoo and the official Java client.

Usage: ensemble_sessions.py RINGKEEPER_BINARY SCENARIO

Scenarios:
  local      localSessionsEnabled=true, localSessionsUpgradingEnabled=true. On a
             follower, the observer and the leader: a kazoo session that only reads is
             local (its id carries that server's myid; `zk_local_sessions` counts it)
             and never reaches the leader (the leader's `zk_proposal_count`,
             `zk_global_sessions` and every server's zxid stay as they were, also after
             it closes); a local session's persistent create is seen everywhere and
             leaves it local; an ephemeral upgrades it (the leader's
             `zk_global_sessions` counts it, the node's ephemeralOwner is the session on
             every server, and closing the session deletes it everywhere). A local
             session id resumes on its own server but is expired on another server and
             on the leader; a local session whose client goes silent is expired by its
             own server (the connection closes, `zk_stale_sessions_expired` counts it
             there, not on the leader) and is expired on reconnect. The Java client's
             session/ephemeral and lock scenarios run on a follower, the observer and
             the leader.
  noupgrade  localSessionsEnabled=true, localSessionsUpgradingEnabled=false (ZooKeeper's
             default): on a follower and the leader, kazoo and the Java client get
             EPHEMERALONLOCALSESSION (-120) for an ephemeral and no node is left; a
             multi holding an ephemeral gets ZooKeeper's per-op result (SESSIONEXPIRED
             through a follower, -120 on the leader, as ZooKeeper 3.8 answers); a
             persistent create works; the leader never has a global session.

Each ends with ensemble.stop_and_check_data (identical trees, `ringkeeper data check`).
Every wait is bounded; every process started here is stopped by its PID.
"""

import os
import shutil
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ensemble  # noqa: E402
from ensemble import (  # noqa: E402
    Ensemble, client, four_letter, mntr_fields, read_frame, run_scenario,
    served_zxid, stop_and_check_data, wait_all, wait_for)

# The session timeout a silent raw client asks for: the ensemble's minimum (2 ticks).
SILENT_SESSION_MS = 2 * ensemble.TICK_MS
SOCKET_TIMEOUT_S = 10
# How long a silent session's connection is read for the server to close it on expiry.
EXPIRY_READ_TIMEOUT_S = 30


def metric(server, key):
    """A live server's `mntr` value of `key` (-1 if it has none); an empty answer (one
    that missed its bound on a loaded machine) is asked again."""
    fields = wait_for(f"mntr of server {server.sid}", lambda: mntr_fields(server.port))
    return int(fields.get(key, "-1"))


def local_config(ens, upgrading):
    for s in ens.servers:
        s.add_cfg("localSessionsEnabled=true\n"
                  f"localSessionsUpgradingEnabled={'true' if upgrading else 'false'}\n")


def start_serving(ens):
    """Starts the ensemble; returns (leader, follower, observer or None) once every
    server serves."""
    ens.start()
    leader_id = ens.wait_leader()
    wait_for("every server serving",
             lambda: all(m in ("leader", "follower", "observer")
                         for m in ens.modes().values()))
    leader = next(s for s in ens.servers if s.sid == leader_id)
    follower = next(s for s in ens.servers if s.mode() == "follower")
    observer = next((s for s in ens.servers if s.mode() == "observer"), None)
    return leader, follower, observer


def raw_connect(port, session_id=0, passwd=bytes(16), timeout_ms=10000):
    """A jute ConnectRequest on a new connection. Returns (socket, (timeout, session id))
    or (socket, None) if the server closed the connection without an answer."""
    body = (struct.pack(">iqiqi", 0, 0, timeout_ms, session_id, len(passwd)) + passwd
            + b"\0")
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
    sock.settimeout(SOCKET_TIMEOUT_S)
    sock.sendall(struct.pack(">i", len(body)) + body)
    frame = read_frame(sock)
    if frame is None:
        return sock, None
    _proto, timeout, sid = struct.unpack_from(">iiq", frame)
    return sock, (timeout, sid)


def leader_state(leader, servers):
    return (metric(leader, "zk_proposal_count"), metric(leader, "zk_global_sessions"),
            {s.sid: served_zxid(s.port) for s in servers})


def dump_lists_local(server, sid, glob):
    """Whether `dump` lists `sid` among the local sessions, before the global part
    (headed `glob`)."""
    sessions = four_letter(server.port, "dump").split("ephemeral nodes dump:")[0]
    local, found, _ = sessions.partition(glob)
    return (bool(found) and local.startswith("SessionTracker dump:\nLocal Session Sets")
            and f"\t0x{sid:x}\n" in local)


def reads_stay_local(ens, leader, server, what):
    """A kazoo client that only reads on `server`: a local session of that server that
    the leader never hears of."""
    before = leader_state(leader, ens.servers)
    zk = client(server.port)
    sid = zk.client_id[0]
    assert sid >> 56 == server.sid, f"{what}: session {sid:#x} is not server {server.sid}'s"
    assert zk.get_children("/") is not None
    assert zk.exists("/zookeeper") is not None
    wait_for(f"{what}: zk_local_sessions 1", lambda: metric(server, "zk_local_sessions") == 1)
    # `dump` lists it among the local sessions (refreshed every tick), then the global
    # ones as ZooKeeper's trackers print them: a learner's with their timeouts.
    glob = "Global Session Sets" if what == "leader" else "Global Sessions("
    wait_for(f"{what}: dump lists the local session",
             lambda: dump_lists_local(server, sid, glob))
    zk.stop()
    zk.close()
    wait_for(f"{what}: zk_local_sessions 0 after close",
             lambda: metric(server, "zk_local_sessions") == 0)
    after = leader_state(leader, ens.servers)
    assert after == before, (
        f"{what}: a reading local session reached the leader: (proposals, global "
        f"sessions, zxids) {before} -> {after}")
    print(f"local: {what} (server {server.sid}): session {sid:#x} read and closed; leader "
          f"proposals {after[0]}, global sessions {after[1]}, zxids unchanged")


def ephemeral_upgrades(ens, leader, server, what):
    """A local session on `server` writes a persistent node (still local), then an
    ephemeral: upgraded, owned by it on every server, gone everywhere when it closes."""
    zk = client(server.port)
    sid = zk.client_id[0]
    zk.create(f"/ls/p-{server.sid}", b"p", makepath=True)
    wait_all(ens, f"{what}: persistent node", lambda c: c.exists(f"/ls/p-{server.sid}"))
    assert metric(server, "zk_local_sessions") >= 1, f"{what}: not local after a write"
    globals_before = metric(leader, "zk_global_sessions")
    upgrades_before = server.log_count("upgrading local session")
    path = zk.create(f"/ls/e-{server.sid}", b"e", ephemeral=True)
    assert server.log_count("upgrading local session") == upgrades_before + 1, \
        f"{what}: no upgrade logged"
    wait_for(f"{what}: the leader has the upgraded session",
             lambda: metric(leader, "zk_global_sessions") == globals_before + 1)
    wait_all(ens, f"{what}: ephemeral owned by {sid:#x}",
             lambda c: (st := c.exists(path)) is not None and st.ephemeralOwner == sid)
    zk.stop()
    zk.close()
    wait_all(ens, f"{what}: ephemeral gone after close", lambda c: c.exists(path) is None)
    wait_for(f"{what}: the global session closed",
             lambda: metric(leader, "zk_global_sessions") == globals_before)
    print(f"local: {what} (server {server.sid}): persistent create kept session {sid:#x} "
          f"local; an ephemeral upgraded it (leader global sessions "
          f"{globals_before} -> {globals_before + 1}), owned it everywhere, went with it")


def moved_local_session_expires(ens, leader, follower, other):
    """A local session id resumes on its own server; elsewhere it is expired."""
    zk = client(follower.port)
    sid, passwd = zk.client_id
    try:
        for s, what in ((other, "another learner"), (leader, "the leader")):
            sock, answer = raw_connect(s.port, sid, passwd)
            sock.close()
            assert answer is not None and answer[1] == 0, \
                f"a local session resumed on {what} (server {s.sid}): {answer}"
        sock, answer = raw_connect(follower.port, sid, passwd)
        assert answer is not None and answer[1] == sid, \
            f"a local session did not resume on its own server: {answer}"
        sock.close()
    finally:
        zk.stop()
        zk.close()
    print(f"local: session {sid:#x} of server {follower.sid} expired on server {other.sid} "
          f"and the leader {leader.sid}, resumed on its own server")


def silent_session_expires(leader, server):
    """A raw client that never pings: its own server expires its local session."""
    expired_before = metric(server, "zk_stale_sessions_expired")
    leader_expired_before = metric(leader, "zk_stale_sessions_expired")
    sock, answer = raw_connect(server.port, timeout_ms=SILENT_SESSION_MS)
    assert answer is not None and answer[1] != 0, answer
    timeout, sid = answer
    assert timeout == SILENT_SESSION_MS, answer
    started = time.monotonic()
    # The server closes the connection when it expires the session, a tick or so past
    # its 4 s timeout; the read's bound leaves a loaded machine room beyond that.
    sock.settimeout(EXPIRY_READ_TIMEOUT_S)
    assert read_frame(sock) is None, "the silent session's connection got a frame"
    closed_after = time.monotonic() - started
    sock.close()
    wait_for("the expiry counted on the session's server",
             lambda: metric(server, "zk_stale_sessions_expired") == expired_before + 1)
    assert metric(leader, "zk_stale_sessions_expired") == leader_expired_before
    sock, answer = raw_connect(server.port, sid, _password(sid))
    sock.close()
    assert answer is not None and answer[1] == 0, f"an expired local session resumed: {answer}"
    print(f"local: silent session {sid:#x} ({SILENT_SESSION_MS} ms) expired by server "
          f"{server.sid} (connection closed {closed_after:.1f} s after connect), "
          "not by the leader; a reconnect is expired")


def _password(session_id):
    """ZooKeeper's session password (java.util.Random(id ^ 0xB3415C00).nextBytes(16))."""
    mult, mask = 0x5DEECE66D, (1 << 48) - 1
    seed = (session_id ^ 0xB3415C00 ^ mult) & mask
    out = bytearray()
    for _ in range(4):
        seed = (seed * mult + 0xB) & mask
        r = seed >> 16
        out += bytes((r >> (8 * i)) & 0xFF for i in range(4))
    return bytes(out)


def scenario_local(ens):
    local_config(ens, upgrading=True)
    leader, follower, observer = start_serving(ens)
    other = next(s for s in ens.servers if s not in (leader, follower, observer))
    for s, what in ((follower, "follower"), (observer, "observer"), (leader, "leader")):
        reads_stay_local(ens, leader, s, what)
    for s, what in ((follower, "follower"), (observer, "observer"), (leader, "leader")):
        ephemeral_upgrades(ens, leader, s, what)
    moved_local_session_expires(ens, leader, follower, other)
    silent_session_expires(leader, follower)
    classes = ensemble.compile_java()
    try:
        zk = client(leader.port)
        for s in (follower, observer, leader):
            for sc in ("session", "lock"):
                base = f"/java-{sc}-{s.sid}"
                zk.ensure_path(base)
                ensemble.run_java(classes, f"127.0.0.1:{s.port}", base, sc)
                print(f"local: java {sc} passed on server {s.sid} ({s.mode()})")
        zk.stop()
        zk.close()
    finally:
        shutil.rmtree(classes, ignore_errors=True)
    stop_and_check_data(ens)


def scenario_noupgrade(ens):
    from kazoo.exceptions import EphemeralOnLocalSessionError, SessionExpiredError

    local_config(ens, upgrading=False)
    leader, follower, _ = start_serving(ens)
    classes = ensemble.compile_java()
    try:
        for s, what in ((follower, "follower"), (leader, "leader")):
            zk = client(s.port)
            zk.create(f"/nu/p-{s.sid}", b"p", makepath=True)
            try:
                zk.create(f"/nu/e-{s.sid}", b"e", ephemeral=True)
                raise AssertionError(f"{what}: an ephemeral on a local session")
            except EphemeralOnLocalSessionError:
                pass
            assert zk.exists(f"/nu/e-{s.sid}") is None
            # A multi holding one: ZooKeeper 3.8 answers per op, SESSIONEXPIRED through
            # a follower (its leader's error txn) and -120 on the leader itself.
            t = zk.transaction()
            t.create(f"/nu/m-{s.sid}", b"m", ephemeral=True)
            results = t.commit()
            want = SessionExpiredError if what == "follower" else EphemeralOnLocalSessionError
            assert len(results) == 1 and isinstance(results[0], want), (what, results)
            assert zk.exists(f"/nu/m-{s.sid}") is None
            assert metric(s, "zk_local_sessions") >= 1
            base = f"/nu-java-{s.sid}"
            zk.ensure_path(base)
            ensemble.run_java(classes, f"127.0.0.1:{s.port}", base, "noephemeral")
            zk.stop()
            zk.close()
            print(f"noupgrade: {what} (server {s.sid}): kazoo and Java got "
                  "EPHEMERALONLOCALSESSION; the multi got ZooKeeper's per-op result; "
                  "persistent creates worked")
    finally:
        shutil.rmtree(classes, ignore_errors=True)
    wait_all(ens, "no ephemeral anywhere",
             lambda c: all(not n.startswith("e-") for n in c.get_children("/nu")))
    assert metric(leader, "zk_global_sessions") == 0, "a session became global"
    stop_and_check_data(ens)


SCENARIOS = {
    "local": (scenario_local, 1),
    "noupgrade": (scenario_noupgrade, 0),
}


def main():
    binary, scenario = sys.argv[1], sys.argv[2]
    fn, observers = SCENARIOS[scenario]
    run_scenario(Ensemble(binary, 3, observers), fn, scenario)


if __name__ == "__main__":
    main()
