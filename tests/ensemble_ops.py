#!/usr/bin/env python3
"""Operating an ensemble without outages (issue 12), on real `ringkeeper` processes on
127.0.0.1 (three voters, started from zoo.cfg files, as in ensemble.py).

Usage: ensemble_ops.py RINGKEEPER_BINARY SCENARIO

Scenarios:
  health     `hlth` and the HTTP health paths on every server: serving with a quorum,
             synced, safe to stop (3 synced voters: every server; one follower
             stopped: none, and /health/safe-to-stop answers 503; back: every server
             again); ZooKeeper's shed_connections closes the asked share of a server's
             clients, whose sessions resume; a drain makes /health/ready 503 and sheds
             every client; bad command bodies get 400.
  transfer   kazoo writers on every server; `ydld` on the leader moves leadership to a
             follower and `rqld` on another follower moves it there, each without an
             election (no server logs "looking"; the times are printed, and measured
             under load by scripts/rolling-restart.py); clients keep their
             connections; every acknowledged write is on every server.
  sigterm    kazoo writers; the leader gets SIGTERM: it hands off first (no server
             goes looking, its log says it handed off), then stops; it is restarted and
             rejoins; nothing acknowledged is lost.
  readonly   readonlymode.enabled=true; two of three servers stopped: the third serves
             a kazoo read_only=True client (CONNECTED_RO, reads, NotReadOnly on a
             write, `isro` says ro, `srvr` says read-only) and refuses a read-write
             client; the two come back: the client goes read-write and writes.
  readonly-java  the same with the official Java client (canBeReadOnly=true, every
             server in its connect string): ConnectedReadOnly, reads,
             NotReadOnlyException, then SyncConnected and a write.
  observers  three voters and an observer, each with an AdminServer: the leader's
             `observers` lists the observer with ZooKeeper's LearnerHandler keys (its
             sid, address, establishment, packets, forwarded requests, last zxid);
             observer_connection_stat_reset zeroes its counts; the followers and the
             observer list none.

Each ends with ensemble.stop_and_check_data (identical trees, `ringkeeper data check`).
Every wait is bounded; every process started here is stopped by its PID.
"""

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ensemble  # noqa: E402
from ensemble import (  # noqa: E402
    Ensemble, client, four_letter, run_scenario, stop_and_check_data, wait_for)
from rkharness import free_ports  # noqa: E402


def with_http(ens):
    """Gives every server the Prometheus endpoint (the HTTP health paths live there)."""
    ports = free_ports(len(ens.servers))
    for s, p in zip(ens.servers, ports):
        s.http = p
        s.add_cfg(
            "metricsProvider.className="
            "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n"
            "metricsProvider.httpHost=127.0.0.1\n"
            f"metricsProvider.httpPort={p}\n"
        )


def with_admin(ens):
    """Gives every server its own AdminServer port (`server.admin`)."""
    for s, p in zip(ens.servers, free_ports(len(ens.servers))):
        s.admin = p
        s.add_cfg(f"admin.enableServer=true\nadmin.serverAddress=127.0.0.1\n"
                  f"admin.serverPort={p}\n")


def admin_command(server, name):
    """An AdminServer command's JSON answer."""
    url = f"http://127.0.0.1:{server.admin}/commands/{name}"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read().decode())


def admin_leader(server):
    """The AdminServer's `leader` command: (leader_id, leader_ip, is_leader)."""
    body = admin_command(server, "leader")
    return body.get("leader_id"), body.get("leader_ip"), body.get("is_leader")


def http(server, method, path, body=None):
    """(status, body) of an HTTP request to the server's endpoint."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{server.http}{path}", data=data,
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def health(server):
    """The `hlth` answer as a dict (empty when the server does not answer)."""
    out = {}
    for line in four_letter(server.port, "hlth").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def looking_lines(ens):
    """How many times each server's log says it went looking."""
    return {s.sid: ensemble.log_text(s).count("ringkeeper: looking (") for s in ens.servers}


def scenario_health(ens):
    with_http(ens)
    ens.start()
    leader = ens.wait_leader()
    by_id = {s.sid: s for s in ens.servers}
    followers = [s for s in ens.servers if s.sid != leader]

    def all_safe(servers, want):
        return all(health(s).get("safe_to_stop") == want for s in servers)

    wait_for("every server safe to stop", lambda: all_safe(ens.servers, "true"))
    h = health(by_id[leader])
    assert h["status"] == "serving" and h["role"] == "leader", h
    assert h["synced_voters"] == "3" and h["quorum_size"] == "2", h
    for f in followers:
        h = health(f)
        assert h["role"] == "follower" and h["synced"] == "true", h
        assert h["ready"] == "true", h
    for s in ens.servers:
        assert http(s, "GET", "/health/ready")[0] == 200
        assert http(s, "GET", "/health/safe-to-stop")[0] == 200
        assert http(s, "GET", "/health/live")[0] == 200
        status, body = http(s, "GET", "/health")
        assert status == 200 and "status=serving" in body, body
    # ruok stays ZooKeeper's.
    assert four_letter(followers[0].port, "ruok") == "imok"

    # One follower stopped: two synced voters of three, so stopping either breaks the
    # quorum; both still serve.
    gone = followers[0]
    assert gone.terminate()
    rest = [s for s in ens.servers if s is not gone]
    wait_for("no server safe to stop", lambda: all_safe(rest, "false"))
    for s in rest:
        h = health(s)
        assert h["status"] == "serving" and h["synced_voters"] == "2", h
        assert http(s, "GET", "/health/safe-to-stop")[0] == 503
        assert http(s, "GET", "/health/ready")[0] == 200
    gone.start()
    wait_for("every server safe to stop again", lambda: all_safe(ens.servers, "true"))

    # ZooKeeper's shed_connections on a follower with four clients of its own: half of
    # them are closed; their sessions resume (the only server they know is this one).
    f = followers[1]
    clients = [client(f.port) for _ in range(4)]
    sessions = [zk.client_id[0] for zk in clients]
    shed = []
    for zk in clients:
        zk.add_listener(lambda state, zk=zk: shed.append(zk) if state == "SUSPENDED" else None)
    status, body = http(f, "POST", "/commands/shed_connections", {"percentage": 50})
    answer = json.loads(body)
    assert status == 200 and answer["connections_shed"] == 2, body
    assert answer["percentage_requested"] == 50, body
    # Each shed client first notices its connection is gone, then resumes.
    wait_for("shed clients noticed", lambda: len(set(map(id, shed))) == 2)
    wait_for("shed clients back", lambda: all(zk.connected for zk in clients))
    assert [zk.client_id[0] for zk in clients] == sessions
    for zk in clients:
        zk.retry(zk.exists, "/")
    assert http(f, "POST", "/commands/shed_connections", {"percentage": 101})[0] == 400
    assert http(f, "POST", "/commands/shed_connections", {"nothing": 1})[0] == 400
    assert http(f, "POST", "/commands/shed_connections", None)[0] == 400

    # A drain: not ready from the start, every client shed within its second.
    lost = []
    for zk in clients:
        zk.add_listener(lambda state, zk=zk: lost.append(zk) if state == "SUSPENDED" else None)
    status, body = http(f, "POST", "/commands/drain", {"seconds": 1})
    assert status == 200, body
    status, body = http(f, "GET", "/health/ready")
    assert status == 503 and "draining=true" in body, body
    wait_for("every client shed by the drain", lambda: len(set(map(id, lost))) == 4)
    assert http(f, "POST", "/commands/undrain", {})[0] == 200
    assert http(f, "GET", "/health/ready")[0] == 200
    wait_for("drained clients back", lambda: all(zk.connected for zk in clients))
    for zk in clients:
        zk.stop()
    print("health: hlth and /health paths agree with the quorum; shed and drain work")
    stop_and_check_data(ens)


class Writers:
    """One kazoo client per server writing sequential znodes under /w<sid> as fast as
    it gets answers; records what was acknowledged, each write's answer time, and the
    clients' connection losses."""

    def __init__(self, ens):
        from kazoo.client import KazooClient
        from kazoo.retry import KazooRetry

        self.stop_flag = threading.Event()
        self.acked = {}
        self.times = []
        self.losses = []
        self.lock = threading.Lock()
        self.threads = []
        self.clients = []
        hosts_all = [f"127.0.0.1:{s.port}" for s in ens.servers]
        for s in ens.servers:
            # Its own server first, then the others (kazoo shuffles unless told not to).
            hosts = ",".join([f"127.0.0.1:{s.port}"] + [h for h in hosts_all
                                                       if not h.endswith(f":{s.port}")])
            zk = KazooClient(hosts=hosts, timeout=10, randomize_hosts=False,
                             connection_retry=KazooRetry(max_tries=-1, delay=0.05,
                                                         max_delay=0.2))
            zk.start(timeout=30)
            zk.ensure_path(f"/w{s.sid}")
            zk.add_listener(lambda st, sid=s.sid: self.losses.append((sid, st))
                            if st != "CONNECTED" else None)
            self.clients.append(zk)
            self.acked[s.sid] = []
            t = threading.Thread(target=self.run, args=(zk, s.sid), daemon=True)
            self.threads.append(t)

    def start(self):
        for t in self.threads:
            t.start()

    def run(self, zk, sid):
        from kazoo.exceptions import ConnectionLoss, SessionExpiredError
        i = 0
        while not self.stop_flag.is_set():
            path = f"/w{sid}/n{i:07d}"
            try:
                zk.create(path, b"x")
            except (ConnectionLoss, SessionExpiredError):
                # May or may not have committed: not counted as acknowledged.
                time.sleep(0.01)
                i += 1
                continue
            except Exception:  # noqa: BLE001 - NodeExists after a retried create
                i += 1
                continue
            with self.lock:
                self.acked[sid].append(path)
                self.times.append(time.monotonic())
            i += 1

    def finish(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=30)

    def longest_gap(self, t0, t1):
        """The longest time without an acknowledged write between t0 and t1 (s)."""
        with self.lock:
            ts = sorted(t for t in self.times if t0 <= t <= t1)
        pts = [t0] + ts + [t1]
        return max(b - a for a, b in zip(pts, pts[1:]))

    def check(self, ens):
        """Every acknowledged write is on every live server."""
        live = [s for s in ens.servers if s.alive()]
        for s in live:
            zk = client(s.port)
            try:
                zk.sync("/")
                for sid, paths in self.acked.items():
                    have = set(zk.get_children(f"/w{sid}"))
                    missing = [p for p in paths if p.rsplit("/", 1)[1] not in have]
                    assert not missing, f"server {s.sid} lacks acknowledged {missing[:5]}"
            finally:
                zk.stop()
        for zk in self.clients:
            zk.stop()
        return sum(len(v) for v in self.acked.values())


def scenario_transfer(ens):
    with_admin(ens)
    ens.start()
    leader = ens.wait_leader()
    # Every server names the leader, as ZooKeeper's `leader` admin command does.
    wait_for("every server names the leader",
             lambda: all(admin_leader(s) == (leader, "127.0.0.1", s.sid == leader)
                         for s in ens.servers))
    # voting_view: the participants of the config in force, by id.
    view = admin_command(ens.servers[0], "voting_view")["current_config"]
    assert sorted(view) == sorted(str(s.sid) for s in ens.servers), view
    for s in ens.servers:
        v = view[str(s.sid)]
        assert v["learner_type"] == "participant", v
        assert len(v["server_addresses"]) == 1 and v["server_addresses"][0].startswith(
            "127.0.0.1:"), v
        assert v["election_addresses"][0].startswith("127.0.0.1:"), v
    w = Writers(ens)
    w.start()
    time.sleep(1.0)
    before = looking_lines(ens)
    # ydld on the leader: to its most up-to-date follower.
    t0 = time.monotonic()
    answer = four_letter(next(s.port for s in ens.servers if s.sid == leader), "ydld")
    assert "Sent yield leadership request" in answer, answer
    wait_for("a new leader after ydld",
             lambda: ens.modes().get(leader) == "follower"
             and list(ens.modes().values()).count("leader") == 1)
    moved = time.monotonic() - t0
    new = ens.wait_leader()
    assert new != leader
    # A hand-off changes the leader without an election: each server names the new one.
    wait_for("every server names the new leader",
             lambda: all(admin_leader(s)[0] == new for s in ens.servers))
    time.sleep(1.0)
    gap1 = w.longest_gap(t0, time.monotonic())
    # rqld on the third server.
    third = next(s for s in ens.servers if s.sid not in (leader, new))
    assert "already the leader" in four_letter(
        next(s.port for s in ens.servers if s.sid == new), "rqld")
    t1 = time.monotonic()
    answer = four_letter(third.port, "rqld")
    assert "Sent leadership request" in answer, answer
    wait_for("the requesting server leads", lambda: third.mode() == "leader")
    moved2 = time.monotonic() - t1
    time.sleep(1.0)
    gap2 = w.longest_gap(t1, time.monotonic())
    w.finish()
    after = looking_lines(ens)
    assert after == before, f"an election ran: looking lines {before} -> {after}"
    assert not w.losses, f"clients lost their connections: {w.losses}"
    n = w.check(ens)
    print(f"transfer: ydld {leader}->{new} in {moved:.3f} s (longest write gap "
          f"{gap1 * 1000:.0f} ms); rqld ->{third.sid} in {moved2:.3f} s (longest write "
          f"gap {gap2 * 1000:.0f} ms); {n} acknowledged writes on every server")
    stop_and_check_data(ens)


def scenario_sigterm(ens):
    ens.start()
    leader = ens.wait_leader()
    by_id = {s.sid: s for s in ens.servers}
    w = Writers(ens)
    w.start()
    time.sleep(1.0)
    before = looking_lines(ens)
    t0 = time.monotonic()
    old = by_id[leader]
    old.send_signal(signal.SIGTERM)
    old.proc.wait(timeout=30)
    stopped = time.monotonic() - t0
    new = ens.wait_leader()
    time.sleep(1.0)
    gap = w.longest_gap(t0, time.monotonic())
    after = looking_lines(ens)
    log = ensemble.log_text(old)
    assert "handed leadership to server" in log, log[-2000:]
    for s in ens.servers:
        if s is not old:
            assert after[s.sid] == before[s.sid], f"server {s.sid} went looking: {after}"
    old.start()
    ensemble.wait_rejoined(old)
    time.sleep(0.5)
    w.finish()
    n = w.check(ens)
    print(f"sigterm: leader {leader} handed off to {new} and stopped in {stopped:.3f} s; "
          f"longest write gap {gap * 1000:.0f} ms; {n} acknowledged writes on every server")
    stop_and_check_data(ens)


# ZooKeeper's LearnerHandler.getLearnerHandlerInfo keys.
LEARNER_KEYS = {"remote_socket_address", "sid", "established", "queued_packets",
                "queued_packets_size", "packets_received", "packets_sent", "requests",
                "last_zxid"}


def scenario_observers(ens):
    with_admin(ens)
    ens.start()
    leader = ens.wait_leader()
    lead = ens.servers[leader - 1]
    obs = ens.servers[-1]
    wait_for("the observer observing", lambda: obs.mode() == "observer")
    oz = client(obs.port)
    # Writes on the observer: forwarded to the leader as requests, proposed, informed.
    for i in range(20):
        oz.create(f"/obs{i}", b"x")
    found = {}

    def listed():
        body = admin_command(lead, "observers")
        ok = body["synced_observers"] == 1 and len(body["observers"]) == 1 \
            and body["observers"][0]["requests"] >= 20
        found["body"] = body
        return ok

    wait_for("the leader listing its observer", listed)
    body = found["body"]
    assert body["command"] == "observers" and body["error"] is None, body
    o = body["observers"][0]
    assert set(o) == LEARNER_KEYS, o
    assert o["sid"] == obs.sid, (o, obs.sid)
    assert o["remote_socket_address"].startswith("/127.0.0.1:"), o
    assert o["packets_received"] >= 20 and o["packets_sent"] >= 20, o
    assert o["last_zxid"] >= int(oz.get("/obs19")[1].mzxid), o
    assert o["established"] > 1_600_000_000_000 and o["queued_packets"] >= 0, o
    # As ZooKeeper's resetObserverConnectionStats: counts zeroed (the observer
    # forwards nothing more, so its requests stay 0), the establishment time kept.
    assert admin_command(lead, "observer_connection_stat_reset")["error"] is None

    def reset():
        body = admin_command(lead, "observers")
        found["reset"] = body["observers"]
        return len(body["observers"]) == 1 and body["observers"][0]["requests"] == 0

    wait_for("the observer's counts reset", reset)
    r = found["reset"][0]
    assert r["established"] == o["established"] and r["packets_received"] < 20, r
    for s in ens.servers:
        if s.sid != leader:
            assert admin_command(s, "observers") == {
                "command": "observers", "error": None, "synced_observers": 0,
                "observers": []}, s.sid
    print(f"observers: the leader lists server {obs.sid}: {o}")
    oz.stop()
    stop_and_check_data(ens)


def scenario_readonly(ens):
    from kazoo.client import KazooClient
    from kazoo.exceptions import NotReadOnlyCallError
    from kazoo.handlers.threading import KazooTimeoutError
    from kazoo.protocol.states import KeeperState

    for s in ens.servers:
        s.add_cfg("readonlymode.enabled=true\n")
    with_admin(ens)
    ens.start()
    leader = ens.wait_leader()
    zk = client(ens.servers[0].port)
    zk.create("/ro", b"before")
    zk.stop()
    keep = next(s for s in ens.servers if s.sid != leader)
    others = [s for s in ens.servers if s is not keep]
    for s in others:
        assert s.terminate()
    wait_for("read-only mode", lambda: keep.mode() == "read-only")
    assert four_letter(keep.port, "isro") == "ro"
    assert admin_command(keep, "is_read_only")["read_only"] is True
    ro = KazooClient(hosts=f"127.0.0.1:{keep.port}", timeout=10, read_only=True)
    ro.start(timeout=30)
    try:
        assert ro.client_state == KeeperState.CONNECTED_RO, ro.client_state
        assert ro.get("/ro")[0] == b"before"
        assert ro.get_children("/") is not None
        try:
            ro.create("/ro-write", b"x")
            raise AssertionError("a write succeeded on a read-only server")
        except NotReadOnlyCallError:
            pass
        try:
            ro.set("/ro", b"x")
            raise AssertionError("a write succeeded on a read-only server")
        except NotReadOnlyCallError:
            pass
        # A client that did not ask for read-only is refused.
        rw = KazooClient(hosts=f"127.0.0.1:{keep.port}", timeout=10)
        try:
            rw.start(timeout=3)
            raise AssertionError("a read-write client connected to a read-only server")
        except KazooTimeoutError:
            pass
        finally:
            rw.stop()
            rw.close()
        for s in others:
            s.start()
        wait_for("the read-only client goes read-write",
                 lambda: ro.client_state == KeeperState.CONNECTED)
        ro.create("/ro-write", b"after")
        assert ro.get("/ro-write")[0] == b"after"
        assert four_letter(keep.port, "isro") == "rw"
        assert admin_command(keep, "is_read_only")["read_only"] is False
    finally:
        ro.stop()
        ro.close()
    print("readonly: CONNECTED_RO, reads, NotReadOnly, then read-write when the quorum "
          "returned")
    stop_and_check_data(ens)


def scenario_readonly_java(ens):
    """The official Java client asking for read-only (`new ZooKeeper(connect, timeout,
    watcher, true)`) with every server in its connect string, two of them stopped: it
    sees ConnectedReadOnly, reads, gets NotReadOnlyException on a write; the two come
    back and it moves on to a read-write session (SyncConnected) and writes."""
    import shutil
    import subprocess

    classes = ensemble.compile_java()
    try:
        for s in ens.servers:
            s.add_cfg("readonlymode.enabled=true\n")
        ens.start()
        leader = ens.wait_leader()
        zk = client(ens.servers[0].port)
        zk.create("/roj", b"before")
        zk.stop()
        zk.close()
        keep = next(s for s in ens.servers if s.sid != leader)
        others = [s for s in ens.servers if s is not keep]
        for s in others:
            assert s.terminate()
        wait_for("read-only mode", lambda: keep.mode() == "read-only")
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in ens.servers)
        proc = subprocess.Popen(ensemble.java_command(classes, hosts, "/roj", "readonly"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = []
        try:
            # Bounded: the client gives up on its own after its waits (20 s, then 60 s).
            for line in proc.stdout:
                out.append(line)
                if "READ-ONLY OK" in line or line.startswith("FAIL"):
                    break
            assert any("READ-ONLY OK" in x for x in out), "".join(out)
            back = time.monotonic()
            for s in others:
                s.start()
            rest, _ = proc.communicate(timeout=ensemble.JAVA_TIMEOUT_S)
            took = time.monotonic() - back
            out.append(rest)
            assert proc.returncode == 0 and "PASS readonly" in rest, "".join(out)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        zk = client(keep.port)
        assert zk.get("/roj/w")[0] == b"after"
        zk.stop()
        zk.close()
    finally:
        shutil.rmtree(classes, ignore_errors=True)
    print("readonly-java: ConnectedReadOnly, reads, NotReadOnlyException, then "
          f"SyncConnected and a write {took:.1f} s after the quorum was restarted")
    stop_and_check_data(ens)


SCENARIOS = {
    "readonly": scenario_readonly,
    "readonly-java": scenario_readonly_java,
    "health": scenario_health,
    "transfer": scenario_transfer,
    "sigterm": scenario_sigterm,
    "observers": scenario_observers,
}


def main():
    binary, scenario = sys.argv[1], sys.argv[2]
    observers = 1 if scenario == "observers" else 0
    run_scenario(Ensemble(binary, 3, observers=observers), SCENARIOS[scenario], scenario)


if __name__ == "__main__":
    main()
