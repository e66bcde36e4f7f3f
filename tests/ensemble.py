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
  snap       small snapCount: a follower killed while the leader snapshots and compacts
             past it rejoins by SNAP, and so does a follower whose data dir was wiped;
             all converge to the same zxid and tree digest with every write readable.

Every wait is bounded; every process started here is killed by its PID at the end.
Exit codes: 0 pass, 1 fail.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

# Attempts (POLL_S apart) to see a leader before giving up: 30 s, far above the
# sub-second elections we expect, so only a real hang fails.
LEADER_ATTEMPTS = 600
POLL_S = 0.05
# srvr answers within this or the server counts as not answering.
FOURLW_TIMEOUT_S = 0.5
# tickTime of the test ensembles: ZooKeeper's default, so that timings compare.
TICK_MS = 2000


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def four_letter(port, word):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=FOURLW_TIMEOUT_S) as s:
            s.settimeout(FOURLW_TIMEOUT_S)
            s.sendall(word.encode())
            out = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
            return out.decode(errors="replace")
    except OSError:
        return ""


class Server:
    def __init__(self, binary, root, sid, lines, client_port):
        self.binary = binary
        self.sid = sid
        self.dir = os.path.join(root, f"s{sid}")
        self.data_dir = os.path.join(self.dir, "data")
        self.cfg = os.path.join(self.dir, "zoo.cfg")
        self.log_path = os.path.join(self.dir, "server.log")
        self.port = client_port
        os.makedirs(self.data_dir)
        with open(os.path.join(self.data_dir, "myid"), "w") as f:
            f.write(f"{sid}\n")
        with open(self.cfg, "w") as f:
            f.write(
                f"tickTime={TICK_MS}\ninitLimit=10\nsyncLimit=5\n"
                f"dataDir={self.data_dir}\n"
                f"clientPort={client_port}\nclientPortAddress=127.0.0.1\n"
                "4lw.commands.whitelist=*\n"
                "shards=1\n"
            )
            f.write(lines)
        self.proc = None

    def add_cfg(self, lines):
        """Appends zoo.cfg lines (before the first start)."""
        with open(self.cfg, "a") as f:
            f.write(lines)

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([self.binary, self.cfg], stdout=log, stderr=log)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def mode(self):
        if not self.alive():
            return None
        for line in four_letter(self.port, "srvr").splitlines():
            if line.startswith("Mode: "):
                return line[len("Mode: "):]
        return None

    def tail(self, n=30):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class Ensemble:
    def __init__(self, binary, n, observers=0):
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


def scenario_election(ens):
    ens.start()
    t0 = time.monotonic()
    leader = ens.wait_leader()
    print(f"election: first leader server {leader} after {time.monotonic() - t0:.3f} s "
          f"(from process start); modes {ens.modes()}")
    victim = ens.servers[leader - 1]
    t_kill = time.monotonic()
    victim.kill9()
    new = ens.wait_leader(exclude=(leader,))
    dt = time.monotonic() - t_kill
    print(f"election: killed leader {leader}; new leader server {new} after {dt:.3f} s; "
          f"modes {ens.modes()}")
    modes = ens.modes()
    assert list(modes.values()).count("leader") == 1, modes


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


def wait_converged(ens):
    for _ in range(CONVERGE_ATTEMPTS):
        seen = {s.sid: (srvr_fields(s.port).get("Zxid"), srvr_fields(s.port).get("Node count"))
                for s in ens.servers if s.alive()}
        if len(set(seen.values())) == 1 and None not in list(seen.values())[0]:
            return seen
        time.sleep(POLL_S)
    raise RuntimeError(f"servers did not converge: {seen}")


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
    for i in range(MAX_WRITES):
        if i == MAX_WRITES // 2:
            ens.servers[leader - 1].kill9()
            t_kill = time.monotonic()
        try:
            zk.create(f"/f/n{i:06d}", f"v{i}".encode())
            acked.append(i)
            if t_kill is not None and first_after is None:
                first_after = time.monotonic() - t_kill
        except Exception as e:  # noqa: BLE001 - an unacknowledged write may or may not exist
            print(f"write {i}: {e!r}")
            time.sleep(POLL_S)
    new = ens.wait_leader(exclude=(leader,))
    print(f"failover: killed leader {leader} after {MAX_WRITES // 2} writes; new leader {new}; "
          f"kill -> first acknowledged write {first_after:.3f} s; {len(acked)} writes acknowledged")
    seen = wait_converged(ens)
    print(f"failover: live servers converged: {seen}")
    names = set(zk.get_children("/f"))
    lost = [i for i in acked if f"n{i:06d}" not in names]
    zk.stop()
    assert not lost, f"{len(lost)} acknowledged writes lost, first {lost[:10]}"


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


def scenario_kills(ens):
    churn(ens, lambda r: ens.servers[ens.wait_leader() - 1], KILL_ROUNDS, "leader kill")


def scenario_rolling(ens):
    churn(ens, lambda r: ens.servers[r], len(ens.servers), "rolling restart")


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
        marker = "replication log compacted to snapshot "
        if marker in line:
            out.append(int(line.split(marker, 1)[1].split(":", 1)[0], 16))
    return out


def wait_log(server, text, what):
    for _ in range(REJOIN_ATTEMPTS):
        if text in log_text(server):
            return
        time.sleep(POLL_S)
    raise RuntimeError(f"server {server.sid}: {what}: no {text!r} in its log: {server.tail()}")


def hashes(ens):
    return {s.sid: four_letter(s.port, "hash").strip() for s in ens.servers}


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
    kill_zxid = int(srvr_fields(leader.port)["Zxid"], 16)
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
    for _ in range(CONVERGE_ATTEMPTS):
        h = hashes(ens)
        if len(set(h.values())) == 1 and "" not in h.values():
            break
        time.sleep(POLL_S)
    assert len(set(h.values())) == 1 and "" not in h.values(), f"digests differ: {h}"
    print(f"snap: converged {seen}; digest {list(h.values())[0]}")
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


SCENARIOS = {
    "kills": scenario_kills,
    "rolling": scenario_rolling,
    "election": scenario_election,
    "failover": scenario_failover,
    "clients": scenario_clients,
    "observer": scenario_observer,
    "snap": scenario_snap,
}


def main():
    binary, scenario = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    observers = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    ens = Ensemble(binary, n, observers)
    ok = False
    try:
        SCENARIOS[scenario](ens)
        ok = True
    except Exception as e:  # noqa: BLE001 - report, dump the logs, fail
        print(f"FAIL: {scenario}: {e!r}", file=sys.stderr)
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
