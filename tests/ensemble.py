#!/usr/bin/env python3
"""Multi-process ensemble tests: real `ringkeeper` processes on 127.0.0.1, each started
from its own zoo.cfg with `server.N` lines and a myid file, as ZooKeeper users run them.

Usage: ensemble.py RINGKEEPER_BINARY SCENARIO [VOTERS [OBSERVERS]]

Scenarios:
  election   wait until exactly one server reports `Mode: leader` (srvr), SIGKILL it,
             wait until one of the others reports leader; prints the time from the kill
             to the new leader (measured, not asserted: timings depend on the machine).
  failover   kazoo writes, the leader is SIGKILLed halfway; no acknowledged write lost.
  clients    clients on followers: read-your-writes, errors, sync, a write read on every
             server, watches on every server, a session resumed on another server, a
             killed client's ephemeral vanishing everywhere.
  observer   (with 1 observer) the observer serves reads and writes, sees every commit.
  kills      writers on every server; the leader is SIGKILLed and restarted, repeatedly.
  rolling    writers on every server; every server in turn is SIGKILLed and restarted.
  refuse     (with 1 observer) raw jute clients: a connect whose lastZxidSeen is beyond
             the server's zxid is closed without an answer on a follower, the observer,
             the leader and a standalone server; at the server's zxid it gets a session.
  behind     a kazoo client that has seen zxid Z moves to a follower held behind Z (its
             quorum link through a held proxy): refused until it catches up, then its
             first read there returns its own last write.
  connloss   a create forwarded by a follower to a SIGSTOPped leader; the leader is
             SIGKILLed: ConnectionLoss (never success), the follower closes the client's
             connection, the client writes again after the re-election.
  java       the official Java client on a follower: sessions, ephemerals, watches,
             versions, async reads, a lock; trees converge.
  renewal    epochs of 50 zxids (RINGKEEPER_TEST_MAX_ZXID_COUNTER, test-only): writes
             through clients on every server run past many epochs' ends; the leader
             renews its epoch in place each time: no election, no client connection
             lost, every write acknowledged and on every server.
  tls        sslQuorum=true: election and quorum over TLS; a server with another CA's
             certificate cannot join, and the logs say why.
  snap       small snapCount: a follower killed while the leader snapshots and compacts
             past it rejoins by SNAP, and so does a follower whose data dir was wiped;
             all converge to the same zxid and tree digest with every write readable.
  diff       small snapCount, a 2 MB tree: a follower stopped while the leader takes many
             snapshots, missing txns far smaller than snapshotSizeFactor x the snapshot,
             rejoins by DIFF (the leader's log line; no SNAP anywhere); all converge.
  diff-off   the same with snapshotSizeFactor=-1: a SNAP, of the leader's newest
             snapshot.

Every scenario ends with `stop_and_check_data`: the live servers must serve identical
trees (same zxid and digest from the `hash` four-letter word, same node count), then every
server is stopped with SIGTERM and `ringkeeper data check` must pass on each data dir, the
live servers recovering identical trees (zxid, counts, digest).

Every wait is bounded; every process started here is killed by its PID at the end.
Exit codes: 0 pass, 1 fail.
"""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rkharness  # noqa: E402
from rkharness import free_ports  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "interop"))
import tlscerts  # noqa: E402

# Attempts (POLL_S apart) to see a leader before giving up: 30 s, far above the
# sub-second elections we expect, so only a real hang fails.
LEADER_ATTEMPTS = 600
POLL_S = 0.05
# srvr answers within this or the server counts as not answering.
FOURLW_TIMEOUT_S = 0.5
# tickTime of the test ensembles: ZooKeeper's default, so that timings compare.
TICK_MS = 2000
# A server stops within this after SIGTERM or is SIGKILLed (and the test says so).
STOP_TIMEOUT_S = 30


def four_letter(port, word):
    return rkharness.four_letter(port, word, FOURLW_TIMEOUT_S)


class Server(rkharness.Server):
    """One ensemble member in `s<sid>` under `root`: its myid, the ensemble's
    `server.N` lines and one shard. `start` does not wait: a member listens on its
    client port before it serves; the scenarios wait for modes instead."""

    fourlw_timeout = FOURLW_TIMEOUT_S

    def __init__(self, binary, root, sid, lines, client_port):
        self.sid = sid
        self.dir = os.path.join(root, f"s{sid}")
        cfg = ["initLimit=10", "syncLimit=5", "4lw.commands.whitelist=*", "shards=1"]
        super().__init__(binary, self.dir, client_port, cfg + lines.splitlines(),
                         tick_ms=TICK_MS)
        with open(os.path.join(self.data_dir, "myid"), "w") as f:
            f.write(f"{sid}\n")

    def start(self):
        self.launch()

    def terminate(self):
        return super().terminate(STOP_TIMEOUT_S)

    def tail(self, n=30):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class Ensemble:
    def __init__(self, binary, n, observers=0):
        self.binary = binary
        self.root = tempfile.mkdtemp(prefix="rk-ensemble-")
        total = n + observers
        ports = free_ports(3 * total)
        lines = "".join(
            f"server.{i + 1}=127.0.0.1:{ports[3 * i]}:{ports[3 * i + 1]}"
            f"{':observer' if i >= n else ''}\n"
            for i in range(total)
        )
        n = total
        self.servers = [
            Server(binary, self.root, i + 1, lines, ports[3 * i + 2]) for i in range(n)
        ]

    def start(self):
        for s in self.servers:
            s.start()

    def modes(self):
        return {s.sid: s.mode() for s in self.servers if s.alive()}

    def wait_leader(self, exclude=()):
        """The sole leader's id, once exactly one live server reports leader."""
        for _ in range(LEADER_ATTEMPTS):
            leaders = [sid for sid, m in self.modes().items() if m == "leader"]
            leaders = [sid for sid in leaders if sid not in exclude]
            if len(leaders) == 1:
                return leaders[0]
            time.sleep(POLL_S)
        raise RuntimeError(f"no single leader: {self.modes()}")

    def stop(self):
        for s in self.servers:
            s.kill9()

    def dump_logs(self):
        for s in self.servers:
            print(f"--- server {s.sid} log ---\n{s.tail()}", file=sys.stderr)


def mntr_fields(port):
    out = {}
    for line in four_letter(port, "mntr").splitlines():
        if "\t" in line:
            k, v = line.split("\t", 1)
            out[k] = v
    return out


def thread_nices(pid):
    """{thread name: nice value} of a process's threads (Linux /proc)."""
    out = {}
    task = f"/proc/{pid}/task"
    for tid in os.listdir(task):
        try:
            with open(f"{task}/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"{task}/{tid}/stat") as f:
                # Fields after the parenthesised name; nice is field 19 of stat.
                fields = f.read().rsplit(")", 1)[1].split()
            out[f"{name}#{tid}"] = int(fields[16])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return out


def wait_learner_counts(ens, leader, want):
    """Waits until the leader's mntr reports `want` (zk_* key -> value) and no other
    server reports a leader-only key; returns the leader's values of those keys."""
    got = {}
    for _ in range(LEADER_ATTEMPTS):
        got = {k: mntr_fields(ens.servers[leader - 1].port).get(k) for k in want}
        others = [s.sid for s in ens.servers
                  if s.sid != leader and s.alive() and "zk_learners" in mntr_fields(s.port)]
        if got == want and not others:
            return got
        time.sleep(POLL_S)
    raise RuntimeError(f"leader {leader} mntr {got}, wanted {want}")


def scenario_election(ens):
    ens.start()
    t0 = time.monotonic()
    leader = ens.wait_leader()
    print(f"election: first leader server {leader} after {time.monotonic() - t0:.3f} s "
          f"(from process start); modes {ens.modes()}")
    n = len(ens.servers)
    got = wait_learner_counts(ens, leader, {
        "zk_learners": str(n - 1), "zk_synced_followers": str(n - 1),
        "zk_synced_observers": "0", "zk_pending_syncs": "0", "zk_quorum_size": str(n)})
    print(f"election: leader mntr {got}")
    # The election runs on threads below the shards' priority (docs/write-path.md).
    nice = thread_nices(ens.servers[leader - 1].proc.pid)
    election = {t: n for t, n in nice.items() if t.startswith("election")}
    shards = {t: n for t, n in nice.items() if t.startswith("shard")}
    # Relative to the shards, so the suite may itself run under `nice`.
    assert shards and len(set(shards.values())) == 1, nice
    shard_nice = next(iter(shards.values()))
    assert election and all(n > shard_nice for n in election.values()), nice
    print(f"election: thread nice values {sorted(set(election.values()))} (election), "
          f"{sorted(set(shards.values()))} (shards)")
    victim = ens.servers[leader - 1]
    t_kill = time.monotonic()
    victim.kill9()
    new = ens.wait_leader(exclude=(leader,))
    dt = time.monotonic() - t_kill
    print(f"election: killed leader {leader}; new leader server {new} after {dt:.3f} s; "
          f"modes {ens.modes()}")
    modes = ens.modes()
    assert list(modes.values()).count("leader") == 1, modes
    stop_and_check_data(ens)


# Writes of the failover scenario at most, so it ends even if the kill comes late.
MAX_WRITES = 5000
# Attempts (POLL_S apart) for all servers to report the same zxid and node count.
CONVERGE_ATTEMPTS = 400


def srvr_fields(port):
    out = {}
    for line in four_letter(port, "srvr").splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            out[k] = v
    return out


def tree_hash(port):
    """(zxid, digest) of the tree the server serves (`hash`), or None."""
    return rkharness.parse_hash(four_letter(port, "hash"))


# A four-letter word a live server must answer is asked until it is (wait_for): one
# answer may miss FOURLW_TIMEOUT_S on a loaded machine.


def served_zxid(port):
    """The zxid of the tree a live server serves (`hash`)."""
    return wait_for(f"hash of the server on {port}", lambda: tree_hash(port))[0]


def srvr_zxid(port):
    """The `Zxid` a live server's `srvr` reports."""
    z = wait_for(f"srvr of the server on {port}", lambda: srvr_fields(port).get("Zxid"))
    return int(z, 16)


def wait_converged(ens):
    """Waits until every live server serves the same tree: the same zxid and digest
    (`hash`) and node count (`srvr`). Returns {sid: (zxid hex, node count, digest)};
    raises, printing each server's, if they differ after CONVERGE_ATTEMPTS polls."""
    seen = {}
    for _ in range(CONVERGE_ATTEMPTS):
        seen = {}
        for s in ens.servers:
            if not s.alive():
                continue
            h = tree_hash(s.port)
            nodes = srvr_fields(s.port).get("Node count")
            seen[s.sid] = None if h is None else (f"{h[0]:#x}", nodes, h[1])
        values = list(seen.values())
        if values and None not in values and len(set(values)) == 1:
            return seen
        time.sleep(POLL_S)
    raise RuntimeError("servers did not converge (zxid, node count, digest): "
                       + "; ".join(f"server {sid}: {v}" for sid, v in seen.items()))


# `ringkeeper data check`'s line for the tree recovery yields from a data dir.
RECOVERED_RE = re.compile(r"^ok   recovered: zxid (0x[0-9a-f]+), (\d+) znodes, "
                          r"(\d+) sessions, digest (0x[0-9a-f]+)$", re.M)


def stop_and_check_data(ens):
    """Ends a scenario: waits until the live servers serve identical trees, stops every
    server cleanly (SIGTERM), then runs `ringkeeper data check` on every server's data
    dir (SIGKILLed ones too: a torn tail is a note, not an error). Every check must pass;
    the servers live at the end must recover identical trees (zxid, counts, digest), and
    one that recovers the zxid it served must recover the digest it served."""
    live = [s for s in ens.servers if s.alive()]
    served = wait_converged(ens)
    # The leader first: once it is gone nothing new can commit, so the learners stop
    # with what it had.
    order = sorted(live, key=lambda s: s.mode() != "leader")
    for s in order:
        assert s.terminate(), f"server {s.sid} did not stop within {STOP_TIMEOUT_S} s"
    recovered = {}
    for s in ens.servers:
        rc, out = s.data_check()
        assert rc == 0, f"data check of server {s.sid} failed ({rc}):\n{out}"
        m = RECOVERED_RE.search(out)
        assert m, f"data check of server {s.sid}: no recovered line:\n{out}"
        recovered[s.sid] = m.groups()
    print(f"data check: every data dir valid; served (zxid, node count, digest) {served}; "
          f"recovered (zxid, znodes, sessions, digest) {recovered}")
    ends = {recovered[s.sid] for s in live}
    assert len(ends) == 1, f"live servers recovered different trees: {recovered}"
    for s in live:
        zxid, _, _, digest = recovered[s.sid]
        served_zxid, _, served_digest = served[s.sid]
        if int(zxid, 16) == int(served_zxid, 16):
            assert int(digest, 16) == served_digest & (2**64 - 1), (
                f"server {s.sid} recovered {digest} at {zxid} but served {served_digest}")


def scenario_failover(ens):
    """Writes through the leader, SIGKILL it while writing, keep writing through the new
    leader; every acknowledged write must be on every live server."""
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry

    ens.start()
    leader = ens.wait_leader()
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in ens.servers)
    zk = KazooClient(hosts=hosts, timeout=10,
                     connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.2))
    zk.start(timeout=30)
    zk.ensure_path("/f")
    acked = []
    t_kill = None
    first_after = None
    elected = {}

    def watch_survivors():
        # Kill -> a survivor reports itself leader (srvr every 10 ms): the server side of
        # the failover, without the client's reconnect and retry.
        while time.monotonic() - t_kill < 30 and "at" not in elected:
            for s in ens.servers:
                if s.sid != leader and s.alive() and s.mode() == "leader":
                    elected["at"] = time.monotonic() - t_kill
            time.sleep(0.01)

    for i in range(MAX_WRITES):
        if i == MAX_WRITES // 2:
            ens.servers[leader - 1].kill9()
            t_kill = time.monotonic()
            watcher = threading.Thread(target=watch_survivors, daemon=True)
            watcher.start()
        try:
            zk.create(f"/f/n{i:06d}", f"v{i}".encode())
            acked.append(i)
            if t_kill is not None and first_after is None:
                first_after = time.monotonic() - t_kill
        except Exception as e:  # noqa: BLE001 - an unacknowledged write may or may not exist
            print(f"write {i}: {e!r}")
            time.sleep(POLL_S)
    new = ens.wait_leader(exclude=(leader,))
    watcher.join(timeout=35)
    print(f"failover: killed leader {leader} after {MAX_WRITES // 2} writes; new leader {new}; "
          f"kill -> new leader serving {elected.get('at', float('nan')):.3f} s; "
          f"kill -> first acknowledged write {first_after:.3f} s; {len(acked)} writes acknowledged")
    seen = wait_converged(ens)
    print(f"failover: live servers converged: {seen}")
    names = set(zk.get_children("/f"))
    lost = [i for i in acked if f"n{i:06d}" not in names]
    zk.stop()
    assert not lost, f"{len(lost)} acknowledged writes lost, first {lost[:10]}"
    stop_and_check_data(ens)


# Attempts (POLL_S apart) for a change to show on every server: 30 s.
SEE_ATTEMPTS = 600
# Session timeout of the "killed client": ZooKeeper's minimum with tickTime 2000.
SHORT_SESSION_S = 4
# Attempts (POLL_S apart) for a killed client's ephemeral to vanish: its session
# timeout plus a tick of expiry granularity, far exceeded.
EXPIRE_ATTEMPTS = 800


def client(port, **kw):
    from kazoo.client import KazooClient
    zk = KazooClient(hosts=f"127.0.0.1:{port}", timeout=10, **kw)
    zk.start(timeout=30)
    return zk


# 30 s for anything to be seen: far above what it takes, so only a hang fails.
SEEN_ATTEMPTS = 600


def wait_for(what, pred):
    """Polls pred until it holds (bounded: SEEN_ATTEMPTS polls POLL_S apart); returns
    what it returned then."""
    for _ in range(SEEN_ATTEMPTS):
        got = pred()
        if got:
            return got
        time.sleep(POLL_S)
    raise RuntimeError(f"not seen within {SEEN_ATTEMPTS * POLL_S:.0f} s: {what}")


def wait_all(ens, what, pred):
    """Polls every live server with a fresh client until pred(zk) holds on all."""
    clients = {s.sid: client(s.port) for s in ens.servers if s.alive()}
    try:
        for _ in range(SEE_ATTEMPTS):
            if all(pred(zk) for zk in clients.values()):
                return
            time.sleep(POLL_S)
        raise RuntimeError(f"{what}: not seen on every server")
    finally:
        for zk in clients.values():
            zk.stop()


def scenario_clients(ens):
    """Clients on followers: read-your-writes, errors, sync, a write on one server read
    on all, watches on every server, a session resumed on another server, the ephemeral
    of a killed client vanishing on every server."""
    import threading
    from kazoo.exceptions import NodeExistsError, BadVersionError

    ens.start()
    leader = ens.wait_leader()
    followers = [s for s in ens.servers if s.sid != leader]
    f1, f2 = followers[0], followers[1]
    zk = client(f1.port)
    zk.create("/rw", b"1")
    assert zk.get("/rw")[0] == b"1"
    zk.set("/rw", b"2")
    assert zk.get("/rw")[0] == b"2", "a follower's client reads its own write"
    try:
        zk.create("/rw", b"x")
        raise AssertionError("create of an existing node succeeded")
    except NodeExistsError:
        pass
    t = zk.transaction()
    t.check("/rw", 99)
    t.create("/never")
    results = t.commit()
    assert isinstance(results[0], BadVersionError), results
    assert zk.exists("/never") is None
    zk.sync("/rw")
    print("clients: read-your-writes, NodeExists, failed multi and sync on a follower")

    # Written on one follower, read on every server.
    wait_all(ens, "/rw=2", lambda c: c.exists("/rw") and c.get("/rw")[0] == b"2")
    print("clients: a follower's write is read on every server")

    # A data watch on every server fires on a write made through the leader.
    watchers = {s.sid: client(s.port) for s in ens.servers}
    fired = {sid: threading.Event() for sid in watchers}
    for sid, c in watchers.items():
        c.get("/rw", watch=lambda ev, sid=sid: fired[sid].set())
    lz = client(ens.servers[leader - 1].port)
    lz.set("/rw", b"3")
    for sid, ev in fired.items():
        assert ev.wait(30), f"watch on server {sid} did not fire"
    for c in watchers.values():
        c.stop()
    print("clients: a watch fired on every server")

    # A session moves to another server and keeps its ephemeral.
    zk.create("/eph", b"", ephemeral=True)
    sid, passwd = zk.client_id
    moved = client(f2.port, client_id=(sid, passwd))
    assert moved.client_id[0] == sid, (hex(moved.client_id[0]), hex(sid))
    assert moved.get("/eph")[1].ephemeralOwner == sid
    print(f"clients: session {sid:#x} resumed on server {f2.sid}")
    moved.stop()
    wait_all(ens, "/eph gone after close", lambda c: c.exists("/eph") is None)
    zk.stop()

    # A killed client's ephemeral vanishes on every server when its session expires.
    code = (
        "import sys, time\n"
        "from kazoo.client import KazooClient\n"
        f"zk = KazooClient(hosts='127.0.0.1:{f1.port}', timeout={SHORT_SESSION_S})\n"
        "zk.start(timeout=30)\n"
        "zk.create('/killed', b'', ephemeral=True)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        line = child.stdout.readline()
        assert line.strip() == b"ready", line
        wait_all(ens, "/killed exists", lambda c: c.exists("/killed") is not None)
        os.kill(child.pid, signal.SIGKILL)
        t_kill = time.monotonic()
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()
    clients = [client(s.port) for s in ens.servers]
    try:
        for _ in range(EXPIRE_ATTEMPTS):
            if all(c.exists("/killed") is None for c in clients):
                break
            time.sleep(POLL_S)
        else:
            raise RuntimeError("the killed client's ephemeral did not vanish everywhere")
    finally:
        for c in clients:
            c.stop()
    print(f"clients: killed client's ephemeral gone on every server "
          f"{time.monotonic() - t_kill:.1f} s after the kill (session timeout {SHORT_SESSION_S} s)")
    stop_and_check_data(ens)


# The official Java client's interop program (tests/interop/java), and the Debian jar.
JAVA_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "interop", "java")
ZK_JAR = os.environ.get("ZK_JAR", "/usr/share/java/zookeeper.jar")
JAVA_SCENARIOS = ("session", "watch", "version", "async", "lock")
JAVA_TIMEOUT_S = 120


def compile_java():
    """The interop Java classes compiled into a fresh directory (the caller removes it)."""
    import glob

    assert os.path.exists(ZK_JAR), f"{ZK_JAR} missing: apt-get install libzookeeper-java"
    classes = tempfile.mkdtemp(prefix="rk-java-")
    r = subprocess.run(["javac", "-cp", ZK_JAR, "-d", classes]
                       + glob.glob(os.path.join(JAVA_SRC, "*.java")),
                       capture_output=True, text=True, timeout=JAVA_TIMEOUT_S)
    assert r.returncode == 0, f"javac failed: {r.stderr}"
    return classes


def java_command(classes, hosts, base, scenario):
    """The command line of one JavaClientInterop scenario."""
    return ["java", "-Dzookeeper.log.threshold=WARN", "-cp", f"{ZK_JAR}:{classes}",
            "JavaClientInterop", hosts, base, scenario]


def run_java(classes, hosts, base, scenario):
    """Runs one JavaClientInterop scenario to its end; asserts it passed."""
    r = subprocess.run(java_command(classes, hosts, base, scenario),
                       capture_output=True, text=True, timeout=JAVA_TIMEOUT_S)
    assert r.returncode == 0 and f"PASS {scenario}" in r.stdout, \
        f"java {scenario} on {hosts}: {r.stdout}{r.stderr[-3000:]}"


def scenario_java(ens):
    """The official Java client (Debian libzookeeper-java) on a follower: sessions and
    ephemerals, re-registered watches, versioned setData, async reads and a lock recipe,
    every write forwarded to the leader; then every server has the same tree."""
    import glob

    assert os.path.exists(ZK_JAR), f"{ZK_JAR} missing: apt-get install libzookeeper-java"
    classes = tempfile.mkdtemp(prefix="rk-java-")
    try:
        r = subprocess.run(["javac", "-cp", ZK_JAR, "-d", classes]
                           + glob.glob(os.path.join(JAVA_SRC, "*.java")),
                           capture_output=True, text=True, timeout=JAVA_TIMEOUT_S)
        assert r.returncode == 0, f"javac failed: {r.stderr}"
        ens.start()
        leader = ens.wait_leader()
        follower = next(s for s in ens.servers if s.sid != leader)
        zk = client(follower.port)
        try:
            for sc in JAVA_SCENARIOS:
                base = f"/java-{sc}"
                zk.ensure_path(base)
                r = subprocess.run(
                    ["java", "-Dzookeeper.log.threshold=WARN", "-cp", f"{ZK_JAR}:{classes}",
                     "JavaClientInterop", f"127.0.0.1:{follower.port}", base, sc],
                    capture_output=True, text=True, timeout=JAVA_TIMEOUT_S)
                assert r.returncode == 0 and f"PASS {sc}" in r.stdout, \
                    f"java {sc} on follower {follower.sid}: {r.stdout}{r.stderr[-3000:]}"
                print(f"java: {sc} passed on follower {follower.sid}")
        finally:
            zk.stop()
            zk.close()
        stop_and_check_data(ens)
    finally:
        shutil.rmtree(classes, ignore_errors=True)


def scenario_observer(ens):
    """Server 4 is an observer: it serves reads and writes of its clients and sees every
    commit; srvr reports it as observer."""
    ens.start()
    leader = ens.wait_leader()
    obs = ens.servers[-1]
    for _ in range(LEADER_ATTEMPTS):
        if obs.mode() == "observer":
            break
        time.sleep(POLL_S)
    assert obs.mode() == "observer", ens.modes()
    voters = len(ens.servers) - 1
    wait_learner_counts(ens, leader, {
        "zk_learners": str(voters), "zk_synced_followers": str(voters - 1),
        "zk_synced_observers": "1", "zk_quorum_size": str(voters)})
    oz = client(obs.port)
    lz = client(ens.servers[leader - 1].port)
    for i in range(50):
        lz.create(f"/o{i}", b"x")
    oz.sync("/")
    assert len([c for c in oz.get_children("/") if c.startswith("o")]) == 50
    oz.create("/from-observer", b"y")
    assert oz.get("/from-observer")[0] == b"y"
    wait_all(ens, "/from-observer", lambda c: c.exists("/from-observer") is not None)
    seen = wait_converged(ens)
    print(f"observer: server {obs.sid} saw every commit; converged {seen}")
    oz.stop()
    lz.stop()
    stop_and_check_data(ens)


# Leader kills in the kill scenario; writer clients; how long writers run after the last
# change before the check.
KILL_ROUNDS = 3
WRITERS = 3
# Attempts (POLL_S apart) for a restarted server to rejoin: 30 s.
REJOIN_ATTEMPTS = 600


def wait_rejoined(server):
    for _ in range(REJOIN_ATTEMPTS):
        if server.mode() in ("follower", "leader", "observer"):
            return
        time.sleep(POLL_S)
    raise RuntimeError(f"server {server.sid} did not rejoin: {server.tail()}")


def churn(ens, pick, rounds, what):
    """Writers on every server write until the end; `rounds` times a server chosen by
    pick() is SIGKILLed, then restarted once a leader is up. Every acknowledged write
    must be on every server at the end, and the servers must hold identical trees."""
    import threading
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry

    ens.start()
    ens.wait_leader()
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in ens.servers)
    setup = client(ens.servers[0].port)
    setup.ensure_path("/k")
    setup.stop()
    stop = threading.Event()
    acked, first_ok, kills = [], [], []
    lock = threading.Lock()

    def writer(w):
        zk = KazooClient(hosts=hosts, timeout=10,
                         connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.2))
        zk.start(timeout=30)
        for i in range(MAX_WRITES):
            if stop.is_set():
                break
            name = f"w{w}-{i:06d}"
            started = time.monotonic()
            try:
                zk.create(f"/k/{name}", b"x")
                with lock:
                    acked.append(name)
                    # Only a write sent after the kill measures the failover.
                    if kills and first_ok[-1] is None and started >= kills[-1]:
                        first_ok[-1] = time.monotonic()
            except Exception:  # noqa: BLE001 - unacknowledged: may or may not exist
                time.sleep(POLL_S)
        zk.stop()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        for r in range(rounds):
            victim = pick(r)
            victim.kill9()
            t_kill = time.monotonic()
            with lock:
                first_ok.append(None)
                kills.append(t_kill)
            leader = ens.wait_leader(exclude=(victim.sid,))
            for _ in range(SEE_ATTEMPTS):
                with lock:
                    if first_ok[-1] is not None:
                        break
                time.sleep(POLL_S / 5)
            dt = (first_ok[-1] - t_kill) if first_ok[-1] else float("nan")
            print(f"{what} round {r}: killed server {victim.sid}; leader now {leader}; "
                  f"kill -> first acknowledged write {dt:.3f} s")
            victim.start()
            wait_rejoined(victim)
            time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    seen = wait_converged(ens)
    print(f"{what}: {len(acked)} writes acknowledged; converged {seen}")
    trees = {}
    for s in ens.servers:
        c = client(s.port)
        c.sync("/k")
        trees[s.sid] = set(c.get_children("/k"))
        c.stop()
    lost = {sid: sorted(set(acked) - t)[:5] for sid, t in trees.items() if set(acked) - t}
    assert not lost, f"acknowledged writes missing: {lost}"
    first = trees[ens.servers[0].sid]
    assert all(t == first for t in trees.values()), "servers hold different /k"
    stop_and_check_data(ens)


def scenario_kills(ens):
    churn(ens, lambda r: ens.servers[ens.wait_leader() - 1], KILL_ROUNDS, "leader kill")


def scenario_rolling(ens):
    churn(ens, lambda r: ens.servers[r], len(ens.servers), "rolling restart")


# --- Single system image: a connect from a client that has seen a newer zxid ---

# A raw client's bound on one answer: a connect response, a reply, or the server
# closing the connection. Far above a loopback round trip; only a hang reaches it.
RAW_TIMEOUT_S = 10
# The session timeout a raw client asks for.
RAW_SESSION_MS = 10000
# What the server logs when it refuses a connect by lastZxidSeen (sequencer.rs).
REFUSAL_LOG = "refusing session request: client has seen zxid"
# A zxid a whole epoch beyond another: far beyond anything the ensemble has.
EPOCH = 1 << 32


def recv_exact(sock, n):
    """n bytes, or None if the peer closed (or reset) the connection before the first."""
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except ConnectionResetError:
            chunk = b""
        except socket.timeout:
            raise AssertionError(f"no answer and no close within {RAW_TIMEOUT_S} s") from None
        if not chunk:
            assert not buf, f"connection closed after {len(buf)} of {n} bytes"
            return None
        buf += chunk
    return buf


def read_frame(sock):
    """One length-prefixed jute frame, or None if the server closed the connection."""
    head = recv_exact(sock, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">i", head)
    body = recv_exact(sock, n)
    assert body is not None, "connection closed inside a frame"
    return body


def raw_connect(port, last_zxid_seen):
    """Sends a jute ConnectRequest (protocolVersion 0, lastZxidSeen, timeOut
    RAW_SESSION_MS, sessionId 0, a 16-byte zero passwd, readOnly false) on a new
    connection. Returns (socket, answer): answer is None if the server closed the
    connection without a ConnectResponse, else (protocolVersion, timeOut, sessionId)."""
    body = struct.pack(">iqiqi", 0, last_zxid_seen, RAW_SESSION_MS, 0, 16) + bytes(16) + b"\0"
    sock = socket.create_connection(("127.0.0.1", port), timeout=RAW_TIMEOUT_S)
    sock.settimeout(RAW_TIMEOUT_S)
    sock.sendall(struct.pack(">i", len(body)) + body)
    frame = read_frame(sock)
    if frame is None:
        return sock, None
    return sock, struct.unpack_from(">iiq", frame)


def raw_close_session(sock):
    """closeSession (xid 1, type -11) on a raw client's connection; asserts err 0."""
    sock.sendall(struct.pack(">iii", 8, 1, -11))
    frame = read_frame(sock)
    assert frame is not None, "closed before answering closeSession"
    xid, _zxid, err = struct.unpack_from(">iqi", frame)
    assert (xid, err) == (1, 0), (xid, err)
    sock.close()


def assert_refuses_ahead(server, what):
    """A connect whose lastZxidSeen is beyond the server's zxid (by one, and by an
    epoch) is closed without a ConnectResponse, as ZooKeeper's processConnectRequest
    does (CloseRequestException, "client must try another server"), and logged; the
    same connect with lastZxidSeen equal to the server's zxid gets a session."""
    zxid = served_zxid(server.port)
    for ahead in (zxid + 1, zxid + EPOCH):
        before = server.log_count(REFUSAL_LOG)
        sock, answer = raw_connect(server.port, ahead)
        sock.close()
        assert answer is None, (
            f"{what} at zxid {zxid:#x} answered a client that has seen {ahead:#x}: {answer}")
        assert server.log_count(REFUSAL_LOG) > before, f"{what}: refusal not logged"
    sock, answer = raw_connect(server.port, zxid)
    assert answer is not None, f"{what}: refused a client that has seen its zxid {zxid:#x}"
    _proto, timeout, session_id = answer
    assert session_id != 0 and timeout > 0, f"{what}: no session: {answer}"
    raw_close_session(sock)
    print(f"refuse: {what} at zxid {zxid:#x}: lastZxidSeen {zxid + 1:#x} and "
          f"{zxid + EPOCH:#x} refused (closed, no answer); {zxid:#x} got session "
          f"{session_id:#x}")


def wait_mode(server, mode):
    for _ in range(LEADER_ATTEMPTS):
        if server.mode() == mode:
            return
        time.sleep(POLL_S)
    raise RuntimeError(f"server {server.sid} is not {mode}: {server.mode()}")


def scenario_refuse(ens):
    """(3 voters, 1 observer.) Raw jute clients: on a follower, the observer, the leader
    and a standalone server, a connect whose lastZxidSeen is beyond the server's zxid is
    closed without an answer; at the server's zxid it gets a session."""
    ens.start()
    leader = ens.wait_leader()
    obs = ens.servers[-1]
    wait_mode(obs, "observer")
    lz = client(ens.servers[leader - 1].port)
    for i in range(10):
        lz.create(f"/r{i}", b"x")
    lz.stop()
    follower = next(s for s in ens.servers[:-1] if s.sid != leader)
    for server, what in ((follower, f"follower {follower.sid}"), (obs, f"observer {obs.sid}"),
                         (ens.servers[leader - 1], f"leader {leader}")):
        # Each check's session txns must have reached every server before the next
        # reads a zxid, or that server could apply one between the read and the connect.
        wait_converged(ens)
        assert_refuses_ahead(server, what)
    alone = Server(ens.binary, ens.root, 99, "", free_ports(1)[0])
    alone.start()
    try:
        wait_mode(alone, "standalone")
        zk = client(alone.port)
        zk.create("/s", b"x")
        zk.stop()
        assert_refuses_ahead(alone, "standalone server")
    finally:
        alone.kill9()
    stop_and_check_data(ens)


# Bound on holding a proxy's server-to-client bytes: below syncLimit ticks (10 s), after
# which a leader would drop a learner whose quorum link is held.
HOLD_MAX_S = 5


class Proxy:
    """A TCP forwarder on 127.0.0.1 to one port. `switch` moves new connections to
    another port and drops the current ones (a client that knows only the proxy then
    reconnects to the new server with its session and the zxid it has seen, as a real
    client does when its connection drops). `hold` delays the bytes from the target to
    the connecting side, in order, until `release` (a slow network, not a loss)."""

    def __init__(self, port):
        self.target = port
        self.lock = threading.Lock()
        self.pairs = []
        # Bytes the connecting side sent to the target since the last switch.
        self.sent_up = 0
        self.flowing = threading.Event()
        self.flowing.set()
        self.closing = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(POLL_S)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closing.is_set():
            try:
                c, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                target = self.target
            try:
                u = socket.create_connection(("127.0.0.1", target), timeout=RAW_TIMEOUT_S)
            except OSError:
                c.close()
                continue
            c.settimeout(None)
            u.settimeout(None)
            with self.lock:
                self.pairs.append((c, u))
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, src, dst, up):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not up:
                    self.flowing.wait(HOLD_MAX_S)
                dst.sendall(data)
                if up:
                    with self.lock:
                        self.sent_up += len(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def hold(self):
        self.flowing.clear()

    def release(self):
        self.flowing.set()

    def switch(self, port):
        """New connections go to `port`; the current ones are dropped."""
        with self.lock:
            self.target = port
            self.sent_up = 0
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def close(self):
        self.closing.set()
        self.release()
        self.switch(self.target)
        self.listener.close()
        self.thread.join(5)


def redirect_quorum(server, sid, port):
    """Rewrites `server`'s zoo.cfg so that it reaches server `sid`'s quorum port at
    `port` (a proxy); returns the port it replaced. Only `server` dials through it."""
    with open(server.cfg) as f:
        text = f.read()
    m = re.search(rf"^server\.{sid}=127\.0\.0\.1:(\d+):", text, re.M)
    assert m, f"no server.{sid} line in {server.cfg}"
    text = text[:m.start(1)] + str(port) + text[m.end(1):]
    with open(server.cfg, "w") as f:
        f.write(text)
    return int(m.group(1))


# Writes made while the follower is behind.
BEHIND_WRITES = 50
# Refusals to see while the follower is held behind before letting it catch up.
BEHIND_REFUSALS = 2


def scenario_behind(ens):
    """Server 1 reaches the others' quorum ports through proxies. A kazoo client writes
    through the leader while the leader's bytes to server 1 are held: server 1 stays
    behind, up and following. The client is moved (a proxy drops its connection) to
    server 1: every connect is refused while server 1 is behind the client's zxid (the
    client stays disconnected; server 1 logs the refusal); once the link is released and
    server 1 has caught up the session resumes there and its first read returns the
    client's own last write."""
    from kazoo.client import KazooClient
    from kazoo.protocol.states import KazooState
    from kazoo.retry import KazooRetry

    follower = ens.servers[0]
    links = {}
    for s in ens.servers[1:]:
        links[s.sid] = Proxy(0)
        links[s.sid].target = redirect_quorum(follower, s.sid, links[s.sid].port)
    ens.start()
    leader = ens.servers[ens.wait_leader() - 1]
    # Votes tie on zxid at start, so the highest id that takes part wins: never 1.
    assert leader is not follower, "server 1 leads: the proxies are on the wrong side"
    wait_mode(follower, "follower")
    entry = Proxy(leader.port)
    zk = KazooClient(hosts=f"127.0.0.1:{entry.port}", timeout=10,
                     connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.2))
    try:
        zk.start(timeout=30)
        session_id = zk.client_id[0]
        zk.create("/behind", b"first")
        wait_converged(ens)
        refusals = follower.log_count(REFUSAL_LOG)
        links[leader.sid].hold()
        try:
            for i in range(BEHIND_WRITES):
                zk.create(f"/behind/n{i:03d}", b"x")
            zk.set("/behind", b"last")
            seen = zk.last_zxid
            f_zxid = served_zxid(follower.port)
            assert f_zxid < seen, f"server 1 not behind: {f_zxid:#x} >= {seen:#x}"
            entry.switch(follower.port)
            for _ in range(SEE_ATTEMPTS):
                if follower.log_count(REFUSAL_LOG) - refusals >= BEHIND_REFUSALS:
                    break
                time.sleep(POLL_S)
            else:
                raise RuntimeError(
                    f"server 1 at {f_zxid:#x} did not refuse a client that has seen {seen:#x}")
            assert zk.state != KazooState.CONNECTED, "served while behind"
            assert served_zxid(follower.port) < seen, "caught up while held"
        finally:
            links[leader.sid].release()
        for _ in range(SEE_ATTEMPTS):
            if zk.state == KazooState.CONNECTED:
                break
            time.sleep(POLL_S)
        else:
            raise RuntimeError("the client did not reconnect to server 1")
        assert zk.client_id[0] == session_id, "the session did not survive the move"
        data = zk.get("/behind")[0]
        assert data == b"last", f"stale read on the follower: {data!r}"
        assert len(zk.get_children("/behind")) == BEHIND_WRITES
        refused = follower.log_count(REFUSAL_LOG) - refusals
        print(f"behind: client saw {seen:#x} on leader {leader.sid}; server 1 held at "
              f"{f_zxid:#x} refused it {refused} times, then caught up and served it; the "
              f"first read returned the client's last write")
    finally:
        zk.stop()
        zk.close()
        entry.close()
    try:
        stop_and_check_data(ens)
    finally:
        for p in links.values():
            p.close()


# How long a forwarded write must stay unanswered while the leader is stopped: a follower
# notices a silent leader only after syncLimit ticks (10 s here), far later.
PENDING_S = 1
# Bound on the pending write's answer once the leader is killed: the kill closes its
# connections, so only a hang reaches it.
ANSWER_TIMEOUT_S = 30


def scenario_connloss(ens):
    """A kazoo client on a follower has a create forwarded to a SIGSTOPped leader; the
    leader is SIGKILLed: the create is answered ConnectionLoss (no hang, never success);
    after the re-election the same client writes again; the pending node may exist or
    not (both are allowed: it may have committed), and the servers converge."""
    from kazoo.exceptions import ConnectionLoss, NodeExistsError
    from kazoo.protocol.states import KazooState

    ens.start()
    leader = ens.servers[ens.wait_leader() - 1]
    follower = next(s for s in ens.servers if s is not leader)
    wait_mode(follower, "follower")
    zk = client(follower.port)
    states = []
    zk.add_listener(states.append)
    try:
        zk.create("/before", b"x")
        leader.pause()
        try:
            pending = zk.create_async("/pending", b"x")
            time.sleep(PENDING_S)
            assert not pending.ready(), (
                f"a forwarded create completed while the leader was stopped: "
                f"{pending.exception!r}")
            leader.kill9()
            t_kill = time.monotonic()
        finally:
            leader.send_signal(signal.SIGCONT)
        assert pending.wait(ANSWER_TIMEOUT_S), "the pending create was never answered"
        dt = time.monotonic() - t_kill
        assert not pending.successful(), "a create forwarded to a dead leader succeeded"
        assert isinstance(pending.exception, ConnectionLoss), repr(pending.exception)
        # ZooKeeper's learner closes every client connection when it leaves the leader
        # (Learner.shutdown -> closeAllConnections), so clients move to a server that
        # serves instead of staying on one that is electing (or cut off for good).
        for _ in range(SEE_ATTEMPTS):
            if KazooState.SUSPENDED in states:
                break
            time.sleep(POLL_S)
        else:
            raise AssertionError(f"the follower kept the client's connection: {states}")
        new = ens.wait_leader(exclude=(leader.sid,))
        for _ in range(SEE_ATTEMPTS):
            try:
                zk.create("/after", b"y")
                break
            except ConnectionLoss:
                time.sleep(POLL_S)
            except NodeExistsError:
                break
        else:
            raise RuntimeError("no write succeeded after the re-election")
        assert zk.get("/after")[0] == b"y"
        present = zk.exists("/pending") is not None
        print(f"connloss: create pending on follower {follower.sid} answered "
              f"{type(pending.exception).__name__} {dt:.3f} s after leader {leader.sid} was "
              f"killed; new leader {new}; a write succeeded after; /pending "
              f"{'present' if present else 'absent'}")
        leader.start()
        wait_rejoined(leader)
    finally:
        zk.stop()
        zk.close()
    stop_and_check_data(ens)


# snapCount of the snap scenario: a snapshot every 101-200 committed txns, so a few
# hundred writes move the leader's replication base several snapshots on.
SNAP_COUNT = 200
# Writes per round of the snap scenario, and rounds at most, until the leader's base
# passes the killed follower (two or three snapshots usually suffice: one round).
SNAP_WRITES = 600
SNAP_ROUNDS = 8


def log_text(server):
    try:
        with open(server.log_path) as f:
            return f.read()
    except OSError:
        return ""


def compacted_bases(server):
    """The replication bases the server's log reports compacting to."""
    out = []
    for line in log_text(server).splitlines():
        marker = "replication log compacted to "
        if marker in line:
            out.append(int(line.split(marker, 1)[1].split(":", 1)[0], 16))
    return out


def wait_log(server, text, what):
    for _ in range(REJOIN_ATTEMPTS):
        if text in log_text(server):
            return
        time.sleep(POLL_S)
    raise RuntimeError(f"server {server.sid}: {what}: no {text!r} in its log: {server.tail()}")


def scenario_snap(ens):
    """A follower SIGKILLed while the leader snapshots and compacts its log past the
    follower's last zxid rejoins by SNAP; a follower whose data directory is wiped
    rejoins by SNAP too; then every server has the same zxid, the same tree digest
    (`hash`) and every acknowledged write."""
    for s in ens.servers:
        # purgeInterval is in hours: configured as a user would, it does not fire
        # within this test (purge's protection of the base is a unit test).
        s.add_cfg(f"snapCount={SNAP_COUNT}\nautopurge.snapRetainCount=3\n"
                  "autopurge.purgeInterval=1\n")
    ens.start()
    leader_id = ens.wait_leader()
    leader = ens.servers[leader_id - 1]
    stale, fresh = [s for s in ens.servers if s.sid != leader_id][:2]
    lz = client(leader.port)
    lz.ensure_path("/s")
    acked = []

    def write(n):
        for _ in range(n):
            name = f"n{len(acked):06d}"
            lz.create(f"/s/{name}", name.encode())
            acked.append(name)

    write(50)
    stale.kill9()
    kill_zxid = srvr_zxid(leader.port)
    for _ in range(SNAP_ROUNDS):
        write(SNAP_WRITES)
        if any(b > kill_zxid for b in compacted_bases(leader)):
            break
    bases = compacted_bases(leader)
    assert any(b > kill_zxid for b in bases), \
        f"leader base never passed {kill_zxid:#x}: {[hex(b) for b in bases]}"
    print(f"snap: killed server {stale.sid} at zxid {kill_zxid:#x}; {len(acked)} writes; "
          f"leader {leader_id} compacted to {bases[-1]:#x}")

    # (a) The stale follower rejoins by SNAP, then restarts in place and gets a DIFF.
    stale.start()
    wait_log(stale, "SNAP: installed snapshot", "stale follower")
    wait_rejoined(stale)
    wait_log(leader, f"SNAP to server {stale.sid}: sent snapshot", "leader")
    print(f"snap: server {stale.sid} installed the leader's snapshot and rejoined")

    # (b) A follower with an empty data directory: SNAP too.
    fresh.kill9()
    shutil.rmtree(fresh.data_dir)
    os.makedirs(fresh.data_dir)
    with open(os.path.join(fresh.data_dir, "myid"), "w") as f:
        f.write(f"{fresh.sid}\n")
    write(100)
    fresh.start()
    wait_log(fresh, "SNAP: installed snapshot", "wiped follower")
    wait_rejoined(fresh)
    print(f"snap: server {fresh.sid} (wiped) installed the leader's snapshot and rejoined")

    write(100)
    seen = wait_converged(ens)
    print(f"snap: converged (zxid, node count, digest): {seen}")
    for s in ens.servers:
        c = client(s.port)
        try:
            c.sync("/s")
            names = set(c.get_children("/s"))
            missing = [n for n in acked if n not in names]
            assert not missing, f"server {s.sid} lacks {len(missing)} writes, first {missing[:5]}"
            assert c.get(f"/s/{acked[-1]}")[0] == acked[-1].encode()
        finally:
            c.stop()
    lz.stop()
    print(f"snap: all {len(acked)} acknowledged writes on every server")
    stop_and_check_data(ens)


# The diff scenario: a tree of DIFF_BIG_NODES nodes of DIFF_BIG_BYTES each (its
# snapshots ~2 MB, so snapshotSizeFactor 0.33 lets a DIFF carry ~660 KB of txns), then
# DIFF_WRITES small creates (~100 bytes of txn each, ~200 KB) while a follower is down,
# with a snapshot every 26-50 txns.
DIFF_SNAP_COUNT = 50
DIFF_BIG_NODES = 4
DIFF_BIG_BYTES = 500_000
DIFF_WRITES = 1500
# Snapshots the leader must take while the follower is down: with the log compacted to
# the snapshot before last (the rule without snapshotSizeFactor), two suffice for a
# SNAP; 3 leaves room. Runs here see 5-15 in DIFF_WRITES, but a snapshot still being
# written when the next is due is skipped, so a loaded machine (the snapshotter runs
# at nice +10) may see fewer: the scenario then writes on in batches, giving the
# snapshotter a bounded while after each, up to DIFF_MAX_WRITES (~300 KB of txns, still
# well inside what a DIFF may carry).
DIFF_MIN_SNAPSHOTS = 3
DIFF_MAX_WRITES = 3000
DIFF_BATCH = 100
# Polls (POLL_S apart) for a due snapshot to be written after an extra batch.
DIFF_SNAPSHOT_POLLS = 100


def snapshot_zxids(server):
    """The zxids of the snapshots the server's log reports written."""
    out = []
    for line in log_text(server).splitlines():
        m = re.search(r"snapshot \S+ written: zxid (0x[0-9a-f]+)", line)
        if m:
            out.append(int(m.group(1), 16))
    return out


def scenario_diff(ens, size_factor=None):
    """A follower stopped while the leader takes many snapshots comes back with a DIFF
    (not a SNAP): the txns it missed are far smaller than snapshotSizeFactor (0.33, the
    default) x the snapshot, so the leader's log still reaches back to it, as ZooKeeper's
    LearnerHandler.syncFollower would sync it from its txn log. With a negative
    `size_factor` (ZooKeeper: no sync from the txn log) the log reaches back only to
    the snapshot before last, and the follower gets a SNAP instead: of the leader's
    newest snapshot. Then every server has every acknowledged write and the same zxid
    and digest."""
    for s in ens.servers:
        s.add_cfg(f"snapCount={DIFF_SNAP_COUNT}\n")
        if size_factor is not None:
            s.add_cfg(f"snapshotSizeFactor={size_factor}\n")
    ens.start()
    leader_id = ens.wait_leader()
    leader = ens.servers[leader_id - 1]
    for s in ens.servers:
        wait_rejoined(s)
    down = next(s for s in ens.servers if s.sid != leader_id)
    lz = client(leader.port)
    lz.ensure_path("/big")
    for i in range(DIFF_BIG_NODES):
        lz.create(f"/big/{i}", bytes([65 + i]) * DIFF_BIG_BYTES)
    lz.ensure_path("/d")
    wait_converged(ens)
    assert down.terminate(), f"server {down.sid} did not stop"
    stop_zxid = srvr_zxid(leader.port)
    acked = []

    def write_batch():
        names = [f"n{i:05d}" for i in range(len(acked), len(acked) + DIFF_BATCH)]
        for name, a in [(n, lz.create_async(f"/d/{n}", n.encode())) for n in names]:
            a.get(timeout=30)
            acked.append(name)

    def taken_since_stop():
        return [z for z in snapshot_zxids(leader) if z > stop_zxid]

    while len(acked) < DIFF_WRITES:
        write_batch()
    taken = taken_since_stop()
    while len(taken) < DIFF_MIN_SNAPSHOTS and len(acked) < DIFF_MAX_WRITES:
        # A batch makes a snapshot due (or finds one in progress); give the snapshotter
        # a bounded while to write it before the next batch.
        write_batch()
        for _ in range(DIFF_SNAPSHOT_POLLS):
            if len(taken_since_stop()) > len(taken):
                break
            time.sleep(POLL_S)
        taken = taken_since_stop()
    assert len(taken) >= DIFF_MIN_SNAPSHOTS, \
        f"the leader took only {len(taken)} snapshots after {stop_zxid:#x} " \
        f"in {len(acked)} writes"
    print(f"diff: server {down.sid} stopped at {stop_zxid:#x}; {len(acked)} writes; "
          f"leader {leader_id} took {len(taken)} snapshots since")

    down.start()
    snap = size_factor is not None and size_factor < 0
    said = f"SNAP to server {down.sid}: sent snapshot " if snap \
        else f"sync of server {down.sid}: DIFF: "
    wait_log(leader, said, "leader")
    wait_rejoined(down)
    line = [l for l in log_text(leader).splitlines() if said in l][-1]
    if snap:
        assert "SNAP: installed snapshot" in log_text(down), down.tail()
        # The newest snapshot the leader had, not the one its log starts from.
        sent = int(line.split(said, 1)[1].split()[0], 16)
        assert sent >= max(taken), f"SNAP of {sent:#x}, newest was {max(taken):#x}"
    else:
        assert f"SNAP to server {down.sid}" not in log_text(leader), leader.tail()
        assert "SNAP: installed snapshot" not in log_text(down), down.tail()
    print(f"diff: leader: {line.split('ringkeeper: ', 1)[-1]}")

    seen = wait_converged(ens)
    for s in ens.servers:
        c = client(s.port)
        try:
            c.sync("/d")
            names = set(c.get_children("/d"))
            missing = [n for n in acked if n not in names]
            assert not missing, f"server {s.sid} lacks {len(missing)} writes, first {missing[:5]}"
        finally:
            c.stop()
    lz.stop()
    print(f"diff: converged {seen}; all {len(acked)} acknowledged writes on every server")
    stop_and_check_data(ens)


# Zxids per epoch in the renewal scenario, and the writes it makes (a dozen renewals).
RENEWAL_COUNTER = 50
RENEWAL_WRITES = 600


def scenario_renewal(ens):
    """A leader at the end of its epoch's zxids renews the epoch in place."""
    from kazoo.client import KazooClient, KazooState

    os.environ["RINGKEEPER_TEST_MAX_ZXID_COUNTER"] = str(RENEWAL_COUNTER)
    try:
        ens.start()
    finally:
        del os.environ["RINGKEEPER_TEST_MAX_ZXID_COUNTER"]
    leader = ens.wait_leader()
    changes = []
    clients = []
    for s in ens.servers:
        zk = KazooClient(hosts=f"127.0.0.1:{s.port}", timeout=10)
        zk.add_listener(lambda state, port=s.port: changes.append((port, state)))
        zk.start(timeout=30)
        clients.append(zk)
    clients[0].ensure_path("/r")
    first_epoch = srvr_zxid(ens.servers[leader - 1].port) >> 32
    worst = 0.0
    for i in range(RENEWAL_WRITES):
        t = time.monotonic()
        clients[i % len(clients)].create(f"/r/n{i:05d}", b"v")
        worst = max(worst, time.monotonic() - t)
    last_epoch = srvr_zxid(ens.servers[leader - 1].port) >> 32
    renewals = log_text(ens.servers[leader - 1]).count("renewed the epoch in place")
    print(f"renewal: {RENEWAL_WRITES} writes, epochs {first_epoch} -> {last_epoch}, "
          f"{renewals} renewals by leader {leader}; slowest write {worst * 1000:.1f} ms")
    assert last_epoch - first_epoch >= RENEWAL_WRITES // RENEWAL_COUNTER - 1, (first_epoch, last_epoch)
    assert renewals >= RENEWAL_WRITES // RENEWAL_COUNTER - 1, renewals
    for s in ens.servers:
        text = log_text(s)
        assert "looking (" not in text, f"server {s.sid} went back to the election:\n{text[-2000:]}"
    lost = [(p, st) for p, st in changes if st != KazooState.CONNECTED]
    assert not lost, f"client connections changed state: {lost}"
    seen = wait_converged(ens)
    print(f"renewal: converged {seen}")
    for zk in clients:
        names = zk.get_children("/r")
        assert len(names) == RENEWAL_WRITES, len(names)
        zk.stop()
    stop_and_check_data(ens)


def tls_quorum_cfg(c, keystore, truststore):
    return (f"sslQuorum=true\nssl.quorum.keyStore.location={keystore}\n"
            f"ssl.quorum.keyStore.password={tlscerts.PASSWORD}\n"
            f"ssl.quorum.trustStore.location={truststore}\n"
            f"ssl.quorum.trustStore.password={tlscerts.PASSWORD}\n")


def wait_serving_all(ens, what):
    """Waits (bounded) until every live server is the leader or a follower."""
    for _ in range(LEADER_ATTEMPTS):
        modes = ens.modes()
        if all(m in ("leader", "follower") for m in modes.values()):
            return
        time.sleep(POLL_S)
    raise RuntimeError(f"{what}: {ens.modes()}")


def scenario_tls(ens):
    """sslQuorum=true: three servers whose election and quorum connections speak TLS
    with certificates of one CA elect a leader, replicate writes and survive the
    leader's SIGKILL; then a server restarted with a certificate of another CA cannot
    rejoin (the others' logs say the handshake failed and why), and rejoins once it
    has a certificate of the right CA again (its data wiped: everything resent over
    TLS)."""
    certs_dir = tempfile.mkdtemp(prefix="rk-ensemble-certs-")
    try:
        c = tlscerts.make(certs_dir)
        stranger = os.path.join(certs_dir, "stranger-store.pem")
        with open(stranger, "w") as out:
            for part in (c["stranger_key"], c["stranger_cert"]):
                with open(part) as f:
                    out.write(f.read())
        # The servers' own copy of the trust store, which the reload phase changes.
        quorum_trust = os.path.join(certs_dir, "quorum-trust.jks")
        shutil.copyfile(c["trust_jks"], quorum_trust)
        for s in ens.servers:
            s.add_cfg(tls_quorum_cfg(c, c["server_jks"], quorum_trust)
                      + "sslQuorumReloadCertFiles=true\n")
        ens.start()
        leader_id = ens.wait_leader()
        wait_serving_all(ens, "following the leader")
        lz = client(ens.servers[leader_id - 1].port)
        for i in range(20):
            lz.create(f"/tls-{i:02d}", b"over TLS")
        for s in ens.servers:
            zk = client(s.port)
            zk.sync("/")
            assert zk.get("/tls-19")[0] == b"over TLS", s.sid
            zk.stop()
            zk.close()
        lz.stop()
        lz.close()
        # The leader dies: the two others re-elect over TLS.
        ens.servers[leader_id - 1].kill9()
        new_leader = ens.wait_leader(exclude=(leader_id,))
        ens.servers[leader_id - 1].start()
        wait_serving_all(ens, "rejoined")
        # A follower restarted with a certificate from another CA cannot rejoin.
        odd = next(s for s in ens.servers if s.sid != new_leader)
        odd.kill9()
        with open(odd.cfg) as f:
            text = f.read()
        with open(odd.cfg, "w") as f:
            # A PEM key store takes no password (it would be the key's encryption one).
            f.write(text.replace(c["server_jks"], stranger).replace(
                f"ssl.quorum.keyStore.password={tlscerts.PASSWORD}\n", ""))
        odd.start()
        others = [s for s in ens.servers if s.sid != odd.sid]
        for s in others:
            wait_log(s, "UnknownIssuer", "refusing the stranger's certificate")
        # Running (not stopped by a configuration error), yet neither leading nor
        # following.
        assert odd.alive(), f"server {odd.sid} exited: {odd.tail()}"
        assert odd.mode() not in ("leader", "follower"), odd.mode()
        said = [line for line in log_text(others[0]).splitlines() if "UnknownIssuer" in line]
        own = [line for line in log_text(odd).splitlines() if "TLS" in line]
        print(f"tls: server {odd.sid} with another CA's certificate stayed out "
              f"(mode {odd.mode()}); server {others[0].sid} logged: {said[0]}; "
              f"server {odd.sid} logged: {own[0] if own else '(nothing)'}")
        # sslQuorumReloadCertFiles: the stranger's CA is added to the trust store file
        # the servers read; without a restart they load it and admit the stranger.
        subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "other",
                        "-file", c["other_ca"], "-keystore", quorum_trust,
                        "-storepass", tlscerts.PASSWORD], check=True,
                       capture_output=True, timeout=60)
        for s in others:
            wait_log(s, "quorum key and trust stores changed", "reloading the trust store")
        wait_serving_all(ens, "the stranger admitted after the trust store changed")
        assert odd.mode() in ("leader", "follower"), odd.mode()
        print(f"tls: after the trust store file changed, server {odd.sid} joined as "
              f"{odd.mode()} without a restart of the others")
        # With the right certificate again, and its data directory wiped, it rejoins:
        # the whole history comes over the TLS link.
        odd.kill9()
        with open(odd.cfg, "w") as f:
            f.write(text)
        shutil.rmtree(odd.data_dir)
        os.makedirs(odd.data_dir)
        with open(os.path.join(odd.data_dir, "myid"), "w") as f:
            f.write(f"{odd.sid}\n")
        odd.start()
        wait_serving_all(ens, "rejoined")
        zk = client(odd.port)
        zk.sync("/")
        assert zk.get("/tls-19")[0] == b"over TLS"
        zk.stop()
        zk.close()
        stop_and_check_data(ens)
    finally:
        shutil.rmtree(certs_dir, ignore_errors=True)


SCENARIOS = {
    "renewal": scenario_renewal,
    "kills": scenario_kills,
    "rolling": scenario_rolling,
    "election": scenario_election,
    "failover": scenario_failover,
    "clients": scenario_clients,
    "observer": scenario_observer,
    "refuse": scenario_refuse,
    "behind": scenario_behind,
    "connloss": scenario_connloss,
    "snap": scenario_snap,
    "diff": scenario_diff,
    "diff-off": lambda ens: scenario_diff(ens, -1),
    "java": scenario_java,
    "tls": scenario_tls,
}


def main():
    binary, scenario = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    observers = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    run_scenario(Ensemble(binary, n, observers), SCENARIOS[scenario], scenario)


def run_scenario(ens, fn, name):
    """Runs scenario `fn` on `ens` and exits: 0 if it passed (its directory removed),
    1 if it raised (the servers' logs dumped, the directory kept)."""
    ok = False
    try:
        fn(ens)
        ok = True
    except Exception as e:  # noqa: BLE001 - report, dump the logs, fail
        print(f"FAIL: {name}: {e!r}", file=sys.stderr)
        ens.dump_logs()
    finally:
        ens.stop()
        if ok:
            shutil.rmtree(ens.root, ignore_errors=True)
        else:
            print(f"kept {ens.root}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
