"""The AdminServer over real HTTP (urllib): every command ZooKeeper 3.8 lists, with the
JSON keys ZooKeeper 3.8 answers (captured in tests/data/admin/zk38, see capture.py), the
3.9 commands and their auth, aliases and errors.

RingKeeper only: scripts/apache-zk.sh runs ZooKeeper without its AdminServer (its Jetty
is not on the class path); the captures are ZooKeeper's side.
"""

import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request

import pytest
from kazoo.client import KazooClient

import tlscerts
from conftest import REPO, SUPER_PASSWORD, SUPER_USER, TARGET, Server, free_port

pytestmark = pytest.mark.skipif(TARGET != "ringkeeper", reason="AdminServer of RingKeeper")

CAPTURE = os.path.join(REPO, "tests", "data", "admin", "zk38")
# Commands whose keys are the machine's or the JVM's own: only `command` and `error` must
# match (environment's keys are checked, its values are not ZooKeeper's).
MACHINE_KEYS = {"system_properties"}
# ZooKeeper 3.9's commands, absent from the 3.8 capture.
SINCE_39 = ["restore", "snapshot"]


def captured_commands():
    with open(os.path.join(CAPTURE, "commands.txt")) as f:
        return [line.strip() for line in f if line.strip()]


def captured(name):
    with open(os.path.join(CAPTURE, f"{name}.json")) as f:
        return json.load(f)


def get(server, path, headers=None, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{server.admin_port}{path}",
                                 headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def command(server, name, **kw):
    status, ctype, body = get(server, f"/commands/{name}", **kw)
    assert ctype == "application/json", (name, ctype, body)
    return status, json.loads(body)


@pytest.fixture
def busy(kz):
    """A session with an ephemeral node and watches, as in the capture."""
    kz.ensure_path("/app")
    kz.create("/app/lock", b"x", ephemeral=True)
    kz.get("/app", watch=lambda e: None)
    kz.get_children("/app", watch=lambda e: None)
    return kz


def test_commands_page_links_every_zookeeper_command(server):
    status, ctype, body = get(server, "/commands")
    assert status == 200 and ctype == "text/html"
    for name in captured_commands() + SINCE_39:
        assert f'<a href="/commands/{name}">{name}</a>' in body, name


def test_every_command_answers_with_zookeepers_keys(server, busy):
    for name in captured_commands():
        want = captured(name)
        status, got = command(server, name)
        assert status == want["status"], name
        assert got["command"] == name
        assert ("error" in got) and (got["error"] is None) == (want["body"]["error"] is None), \
            (name, got["error"], want["body"]["error"])
        if name in MACHINE_KEYS:
            continue
        missing = set(want["body"]) - set(got)
        assert not missing, f"{name}: keys ZooKeeper answers and we do not: {sorted(missing)}"
        if name == "monitor":
            # The 3.9 keys come on top of 3.8's; nothing else of ours is in the JSON.
            extra = set(got) - set(want["body"])
            assert all(k.startswith(("rk_", "snapshot_", "restore_")) or "restore" in k
                       for k in extra), sorted(extra)
        for k in ("server_stats", "client_response"):
            if k in want["body"]:
                assert set(want["body"][k]) <= set(got[k]), (name, k)
        if name == "connections":
            conn = got["connections"][0]
            assert set(want["body"]["connections"][0]) <= set(conn)


def test_values_are_the_servers(server, busy):
    sid = busy.client_id[0]
    _, dump = command(server, "dump")
    assert dump["session_id_to_ephemeral_paths"][str(sid)] == ["/app/lock"]
    _, w = command(server, "watches")
    assert "/app" in w["session_id_to_watched_paths"][str(sid)]
    _, wp = command(server, "watches_by_path")
    assert sid in wp["path_to_session_ids"]["/app"]
    _, mon = command(server, "monitor")
    assert mon["ephemerals_count"] >= 1 and mon["znode_count"] >= 3
    assert mon["server_state"] == "standalone"
    _, stats = command(server, "server_stats")
    assert stats["node_count"] == mon["znode_count"]


def test_aliases_unknown_commands_and_arguments(server):
    assert command(server, "mntr")[1]["command"] == "monitor"
    assert command(server, "srvr")[1]["command"] == "server_stats"
    status, body = command(server, "no_such_command")
    assert status == 200 and body == {"command": "no_such_command",
                                      "error": "Unknown command: no_such_command"}
    _, body = command(server, "set_trace_mask")
    assert body["error"] == "setTraceMask requires long traceMask argument"
    _, body = command(server, "set_trace_mask?traceMask=306")
    assert body["error"] is None and body["tracemask"] == 306
    status, _, _ = get(server, "/nothing-here")
    assert status == 404


def test_stat_reset_changes_the_counters(server, kz):
    for _ in range(5):
        kz.exists("/")
    _, before = command(server, "server_stats")
    assert before["server_stats"]["packets_received"] >= 5
    assert command(server, "stat_reset")[1]["error"] is None
    _, after = command(server, "server_stats")
    assert after["server_stats"]["packets_received"] < before["server_stats"]["packets_received"]


def test_snapshot_and_restore_need_auth_as_in_39(server):
    for name in SINCE_39:
        status, body = command(server, name)
        assert status == 401 and body["error"] == "Auth info is missing for the command"
        status, body = command(server, name, headers={"Authorization": "digest nobody:wrong"})
        # `/` is world:anyone ALL on a fresh server: any authenticated caller may.
        assert status in (200, 403), (status, body)
        status, body = command(server, name,
                               headers={"Authorization": f"digest {SUPER_USER}:{SUPER_PASSWORD}"})
        assert status == 200 and body["command"] == name
        status, body = command(server, name, headers={"Authorization": "x509"})
        assert status == 401 and body["error"] == "Not authenticated"


def test_snapshot_is_refused_without_all_on_root(server, kz):
    from kazoo.security import make_digest_acl
    kz.add_auth("digest", f"{SUPER_USER}:{SUPER_PASSWORD}")
    kz.set_acls("/", [make_digest_acl("admin", "pw", all=True)])
    try:
        status, body = command(server, "snapshot", headers={"Authorization": "digest other:pw"})
        assert status == 403 and body["error"] == "Not authorized"
        status, body = command(server, "snapshot", headers={"Authorization": "digest admin:pw"})
        assert status == 200
    finally:
        from kazoo.security import OPEN_ACL_UNSAFE
        kz.set_acls("/", OPEN_ACL_UNSAFE)


def my_connection(server, name, sid, key="connections"):
    _, body = command(server, name)
    mine = [c for c in body[key] if c.get("session_id") == sid]
    assert len(mine) == 1, (sid, body)
    return mine[0]


def test_connection_stat_reset_resets_what_cons_shows(server, kz):
    sid = kz.client_id[0]
    for _ in range(5):
        kz.exists("/")
    before = my_connection(server, "connections", sid)
    assert before["packets_received"] >= 6 and before["last_operation"] in ("EXIS", "PING"), before
    assert before["last_cxid"] >= 5 and before["max_latency"] >= 0
    assert command(server, "crst")[1] == {"command": "connection_stat_reset", "error": None}
    after = my_connection(server, "connections", sid)
    # Reset as ZooKeeper's ServerCnxn.resetStats: only a ping kazoo may have sent since
    # (xid -2) can count; the establishment time stays.
    assert after["packets_received"] <= 1 and after["packets_sent"] <= 1, after
    assert after["last_operation"] in ("NA", "PING"), after
    assert after["last_cxid"] in (-1, -2) and after["established"] == before["established"]
    assert after["session_id"] == sid


def test_crst_four_letter_word_resets_cons(server, kz):
    sid = kz.client_id[0]
    for _ in range(5):
        kz.exists("/")

    def recved():
        line = [x for x in kz.command(b"cons").splitlines() if f"sid=0x{sid:x}," in x]
        assert len(line) == 1, line
        return int(re.search(r"recved=(\d+)", line[0]).group(1))

    assert recved() >= 6
    assert kz.command(b"crst") == "Connection stats reset.\n"
    assert recved() <= 1


@pytest.fixture(scope="module")
def tls_server():
    """A server with a TLS client port besides its plaintext one."""
    d = tempfile.mkdtemp(prefix=f"interop-admin-tls-{TARGET}-")
    certs = tlscerts.make(d)
    secure = free_port()
    srv = Server(TARGET, d, free_port(),
                 [f"secureClientPort={secure}", "secureClientPortAddress=127.0.0.1"]
                 + tlscerts.server_cfg(certs))
    srv.secure_port, srv.certs = secure, certs
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_tls_clients_are_listed_under_secure_connections(tls_server):
    c = tls_server.certs
    tls = tlscerts.kazoo_client(tls_server.secure_port, c)
    plain = KazooClient(hosts=tls_server.hostport, timeout=10.0)
    plain.start(timeout=15)
    try:
        tls_sid, plain_sid = tls.client_id[0], plain.client_id[0]
        for _ in range(5):
            tls.exists("/")
            plain.exists("/")
        for name in ("connections", "stats"):
            _, body = command(tls_server, name)
            secure = {x.get("session_id") for x in body["secure_connections"]}
            cons = {x.get("session_id") for x in body["connections"]}
            assert tls_sid in secure and tls_sid not in cons, (name, body)
            assert plain_sid in cons and plain_sid not in secure, (name, body)
        s = my_connection(tls_server, "connections", tls_sid, "secure_connections")
        assert set(s) == set(my_connection(tls_server, "connections", plain_sid))
        assert s["packets_received"] >= 6
        # As ZooKeeper 3.9's connection_stat_reset: the plain factory's connections.
        command(tls_server, "connection_stat_reset")
        assert my_connection(tls_server, "connections", plain_sid)["packets_received"] <= 1
        assert my_connection(tls_server, "connections", tls_sid,
                             "secure_connections")["packets_received"] >= 6
    finally:
        for k in (tls, plain):
            k.stop()
            k.close()


def started_server(prefix, cfg):
    d = tempfile.mkdtemp(prefix=f"interop-admin-{prefix}-{TARGET}-")
    srv = Server(TARGET, d, free_port(), cfg)
    try:
        srv.start()
    except Exception:
        shutil.rmtree(d, ignore_errors=True)
        raise
    return srv, d


@pytest.mark.parametrize("threshold,key", [(-1, "fsync.warningthresholdms"),
                                           (3_600_000, "zookeeper.fsync.warningthresholdms")])
def test_slow_log_writes_are_counted_and_logged_over_the_threshold(threshold, key):
    """fsync.warningthresholdms, as ZooKeeper's FileTxnLog: a log write over the threshold
    is a warning in the log and one more `fsync_threshold_exceed_count`. At -1 every
    write is over it; at an hour none is."""
    srv, d = started_server("fsync", [f"{key}={threshold}"])
    try:
        zk = KazooClient(hosts=srv.hostport, timeout=10.0)
        zk.start(timeout=15)
        try:
            for i in range(20):
                zk.create(f"/fsync-{i}", b"x")
        finally:
            zk.stop()
            zk.close()
        _, body = command(srv, "server_stats")
        count = body["server_stats"]["fsync_threshold_exceed_count"]
        with open(os.path.join(d, "server.log"), errors="replace") as f:
            warnings = [line for line in f if "more than fsync.warningthresholdms" in line]
        if threshold < 0:
            # 20 creates, each answered only once durable: 20 writes at least if none
            # shared a batch, one at least in any case.
            # (The log is read after the count: a write in between adds a line.)
            assert count >= 1 and len(warnings) >= count, (count, warnings[:3])
            assert f"({threshold} ms)" in warnings[0], warnings[0]
        else:
            assert count == 0 and not warnings, (count, warnings[:3])
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)
