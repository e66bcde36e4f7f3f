#!/usr/bin/env python3
"""Network partitions of a RingKeeper ensemble: real `ringkeeper` processes, one per host
of a private network made of Linux network namespaces (tests/netns.py), cut apart by
taking cables down, not by killing processes. A killed process closes its TCP connections
and is noticed at once; a partition drops packets silently, so only the timeouts
(tickTime, initLimit, syncLimit, the client's session timeout) find it.

Usage: ensemble_partition.py RINGKEEPER_BINARY SCENARIO [SERVERS]

Hosts: server I on 10.78.0.I (its own namespace, zoo.cfg `server.I=10.78.0.I:2888:3888`,
clientPort 2181 on that address), and a client host 10.78.0.100 where this driver runs.

Scenarios:
  leader    the leader's cable is cut under writes.
  follower  a follower's cable is cut under writes.
  split     (5 servers) the leader and one follower on one side, the other three and
            the client host on the other: the two can still talk to each other.

Writers: a client on the client host with every server in its list (it fails over), and on
each server's host a client of that server only (a client on the same side of the
partition as its server). Each records every acknowledged write with the time it was
sent and answered. The partition lasts until the majority has a new leader (when the
leader is cut off) and acknowledged a write sent after the cut, and every server on the
minority side has left its role (its own host's client sees `srvr` answer "not serving"),
and then HOLD_S more; then the cables are back.

Asserts:
  * the majority elects a leader of its own (when the old one is cut off) and
    acknowledges writes sent after the cut;
  * every minority server leaves its role (an old leader steps down);
  * no minority client gets success for a write sent after the cut before the heal;
  * after the heal: the minority servers rejoin as followers, there is one leader, every
    server reports the same zxid and tree digest (`hash`), and every acknowledged write
    of every client is in the tree on every server.
Prints (never asserts, they depend on the machine): cut -> new leader, cut -> first
acknowledged write on the majority side, cut -> every minority server out of its role,
heal -> rejoined.

Each server's log (server.log in its folder, every line behind the monotonic time it
arrived, with `=== test:` lines marking the cut and the heal) is printed on failure, and the folder kept; RINGKEEPER_PARTITION_KEEP=1 keeps it
after a pass too. Every wait is bounded; every process started here is stopped by its PID; the namespaces
are deleted in a finally block, also on failure. Exit codes: 0 pass, 1 fail, 77 skipped
because network namespaces cannot be made here (not root, no `ip`); the reason is printed.

With SCENARIO `agent` (internal): the writer on a server's host, run inside that host by
the driver: `agent ADDR PORT NAME`, reports on stdout until its stdin closes.
"""

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from netns import Net, Unavailable  # noqa: E402
import rkharness  # noqa: E402

SKIP = 77
# The client host's number (its address is 10.78.0.CLIENT_HOST).
CLIENT_HOST = 100
CLIENT_PORT = 2181
QUORUM_PORT = 2888
ELECTION_PORT = 3888
# ZooKeeper's production tickTime is 2000 ms; 200 keeps the test short. Failure detection
# scales with it: a follower that hears nothing from its leader for syncLimit ticks
# (here 1 s, 10 s in production with syncLimit 5) goes looking, and a leader that hears
# from no quorum of followers for syncLimit ticks steps down; initLimit bounds discovery
# and sync of a new epoch (here 2 s).
TICK_MS = 200
INIT_LIMIT = 10
SYNC_LIMIT = 5
# The clients' session timeout: the server's maximum with this tickTime (20 ticks).
# Kazoo gives up on a silent server after two thirds of it and tries the next.
SESSION_TIMEOUT_S = 4
# Four-letter words get this long to answer; a cut-off server never answers.
FOURLW_TIMEOUT_S = 1.0
POLL_S = 0.05
# Bound of every wait for a milestone (a leader, a first write, a step-down, a rejoin,
# convergence): far above the few seconds each takes, so only a real hang fails, also on
# a 2-core machine shared with other builds.
WAIT_S = 90
# The partition is kept this long after its milestones, so the minority's clients keep
# trying writes against servers that have left their roles.
HOLD_S = 2.0
# Writes before the cut, and after the heal, on every writer (so the rejoined servers
# serve writes too): at least this many seconds.
STEADY_S = 1.0
# A write answered later than this is left behind (its answer is still recorded when it
# comes) and the writer sends the next.
WRITE_WAIT_S = 10.0
# Pause between writes, per writer: the machine has 2 cores for servers, clients and
# other work; a few hundred writes a second over all writers are plenty.
WRITE_PAUSE_S = 0.01
ERROR_PAUSE_S = 0.1
# Writes per writer at most, so a writer ends even if its stop never comes.
MAX_WRITES = 50_000
# The whole run's bound (an alarm raises in the driver, whose finally blocks clean up).
RUN_BUDGET_S = 420


def four_letter(addr, word, timeout=FOURLW_TIMEOUT_S):
    """The answer to a four-letter word ('' when the server does not answer)."""
    return rkharness.four_letter(CLIENT_PORT, word, timeout, host=addr)


def mode_of(addr):
    """`leader`, `follower`, `observer`, `looking` (answers "not serving") or `down`."""
    out = four_letter(addr, "srvr")
    for line in out.splitlines():
        if line.startswith("Mode: "):
            return line[len("Mode: "):].strip()
    return "looking" if "not currently serving" in out else "down"


def hash_of(addr):
    """(zxid, digest) from `hash`, None when there is no answer."""
    return rkharness.parse_hash(four_letter(addr, "hash"))


def kazoo_client(hosts):
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry

    return KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT_S,
                       connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.5))


def write_loop(zk, writer, stop, emit):
    """Creates /p/WRITER-NNNNNN one after another until `stop`; `emit` gets
    ("ack"|"err", name, sent, answered[, error]) for each answer, also a late one."""
    for i in range(MAX_WRITES):
        if stop.is_set():
            return
        name = f"{writer}-{i:06d}"
        sent = time.monotonic()
        done = threading.Event()

        def answered(res, name=name, sent=sent, done=done):
            t = time.monotonic()
            if res.successful():
                emit("ack", name, sent, t)
            else:
                emit("err", name, sent, t, type(res.exception).__name__)
            done.set()

        zk.create_async(f"/p/{name}", b"x").rawlink(answered)
        ok = done.wait(WRITE_WAIT_S)
        time.sleep(WRITE_PAUSE_S if ok else ERROR_PAUSE_S)


def agent(addr, port, writer):
    """Runs inside a server's host: writes to that server only and polls its mode;
    prints `ready`, `ack NAME SENT T`, `err NAME SENT T ERROR`, `mode T MODE`; ends when
    stdin closes."""
    logging.basicConfig(level=logging.WARNING)  # kazoo's complaints go to stderr (a file)
    lock = threading.Lock()

    def emit(*fields):
        line = " ".join(f"{f:.6f}" if isinstance(f, float) else str(f) for f in fields)
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    stop = threading.Event()

    def poll_mode():
        last = None
        while not stop.is_set():
            m = mode_of(addr)
            if m != last:
                emit("mode", time.monotonic(), m)
                last = m
            time.sleep(POLL_S)

    threading.Thread(target=poll_mode, daemon=True).start()
    zk = kazoo_client(f"{addr}:{port}")
    zk.start(timeout=WAIT_S)
    emit("ready")
    t = threading.Thread(target=write_loop, args=(zk, writer, stop, emit), daemon=True)
    t.start()
    sys.stdin.read()  # until the driver closes it (or dies)
    stop.set()
    t.join(WRITE_WAIT_S + 1)
    zk.stop()
    zk.close()


class Log:
    """What the writers saw: acknowledged writes and answers, and agents' mode changes."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acks = {}  # writer -> [(name, sent, answered)]
        self.errs = {}  # writer -> count
        self.modes = {}  # server id -> [(t, mode)]
        self.ready = set()

    def emit_for(self, writer):
        def emit(kind, name, sent, t, *rest):
            with self.lock:
                if kind == "ack":
                    self.acks.setdefault(writer, []).append((name, sent, t))
                else:
                    self.errs[writer] = self.errs.get(writer, 0) + 1
        return emit

    def agent_line(self, writer, sid, line):
        f = line.split()
        if not f:
            return
        with self.lock:
            if f[0] == "ready":
                self.ready.add(sid)
            elif f[0] == "mode":
                self.modes.setdefault(sid, []).append((float(f[1]), f[2]))
            elif f[0] == "ack":
                self.acks.setdefault(writer, []).append((f[1], float(f[2]), float(f[3])))
            elif f[0] == "err":
                self.errs[writer] = self.errs.get(writer, 0) + 1

    def acked_names(self):
        with self.lock:
            return {n for acks in self.acks.values() for n, _, _ in acks}

    def first_ack_sent_after(self, writers, t0):
        """Earliest answer time of a write sent after t0 by one of `writers`."""
        with self.lock:
            ts = [t for w in writers for _, sent, t in self.acks.get(w, []) if sent > t0]
        return min(ts) if ts else None

    def left_role_at(self, sid, t0):
        """When server `sid`, as its own host sees it, first reported no role after t0."""
        with self.lock:
            for t, m in self.modes.get(sid, []):
                if t > t0 and m in ("looking", "down"):
                    return t
        return None


def bounded(what, pred, timeout=WAIT_S):
    """Polls pred() until it returns a true value, which it returns; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_S)


class Ensemble:
    def __init__(self, binary, net, n, root):
        self.binary = binary
        self.net = net
        self.root = root
        self.sids = list(range(1, n + 1))
        self.procs = {}
        self.agents = {}
        members = "".join(f"server.{i}={Net.addr(i)}:{QUORUM_PORT}:{ELECTION_PORT}\n"
                          for i in self.sids)
        for i in self.sids:
            d = self.dir(i)
            os.makedirs(os.path.join(d, "data"))
            with open(os.path.join(d, "data", "myid"), "w") as f:
                f.write(f"{i}\n")
            with open(os.path.join(d, "zoo.cfg"), "w") as f:
                f.write(f"tickTime={TICK_MS}\ninitLimit={INIT_LIMIT}\nsyncLimit={SYNC_LIMIT}\n"
                        f"dataDir={os.path.join(d, 'data')}\n"
                        f"clientPort={CLIENT_PORT}\nclientPortAddress={Net.addr(i)}\n"
                        "4lw.commands.whitelist=*\nshards=1\n" + members)

    def mark(self, what):
        """Appends a line naming a step of the test to every server's log (the server
        appends too, line by line), so that a log reads against the test's steps."""
        for i in self.sids:
            with open(os.path.join(self.dir(i), "server.log"), "a") as f:
                f.write(f"{time.monotonic():.3f} === test: {what}\n")

    def dir(self, i):
        return os.path.join(self.root, f"s{i}")

    def start(self):
        """Starts every server; a thread per server copies its output to its server.log,
        each line behind the time it arrived (the server's own lines carry none)."""
        for i in self.sids:
            p = self.net.popen(i, [self.binary, os.path.join(self.dir(i), "zoo.cfg")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.procs[i] = p

            def copy(p=p, path=os.path.join(self.dir(i), "server.log")):
                with open(path, "ab", buffering=0) as log:
                    for line in p.stdout:
                        log.write(f"{time.monotonic():.3f} ".encode() + line)

            t = threading.Thread(target=copy, daemon=True)
            t.start()
            p.copier = t

    def start_agent(self, i, log):
        """The writer on server i's host, writing to server i only."""
        writer = f"h{i}"
        with open(os.path.join(self.dir(i), "agent.log"), "a") as err:
            p = self.net.popen(
                i, [sys.executable, os.path.abspath(__file__), "agent", Net.addr(i),
                    str(CLIENT_PORT), writer],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
        self.agents[i] = p

        def read():
            for line in p.stdout:
                log.agent_line(writer, i, line)

        t = threading.Thread(target=read, daemon=True)
        t.start()
        p.reader = t

    def stop_agents(self):
        for p in self.agents.values():
            if p.poll() is None:
                try:
                    p.stdin.close()
                except OSError:
                    pass
        for p in self.agents.values():
            try:
                p.wait(WRITE_WAIT_S + 5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.reader.join(5)

    def modes(self, sids=None):
        return {i: mode_of(Net.addr(i)) for i in (sids or self.sids)}

    def sole_leader(self, sids):
        """The one leader among `sids` when exactly one of them reports leader."""
        leaders = [i for i, m in self.modes(sids).items() if m == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    def stop(self):
        """Every process started here, by its PID."""
        if self.procs:
            self.mark("stopping every process")  # later lines are the teardown's
        for p in list(self.agents.values()) + list(self.procs.values()):
            if p.poll() is None:
                p.kill()
            p.wait()
        for p in self.procs.values():
            p.copier.join(5)  # the server's last lines, up to its end of output

    def tails(self, chars=4000):
        for i in self.sids:
            for name in ("server.log", "agent.log"):
                try:
                    with open(os.path.join(self.dir(i), name)) as f:
                        text = f.read()[-chars:]
                except OSError:
                    text = ""
                print(f"--- server {i} {name} (tail) ---\n{text}", file=sys.stderr)


def partition_run(ens, net, scenario):
    log = Log()
    ens.start()
    t0 = time.monotonic()
    leader = bounded("a leader", lambda: ens.sole_leader(ens.sids))
    print(f"{scenario}: leader is server {leader} after {time.monotonic() - t0:.3f} s; "
          f"modes {ens.modes()}")
    all_hosts = ",".join(f"{Net.addr(i)}:{CLIENT_PORT}" for i in ens.sids)
    zk = kazoo_client(all_hosts)
    zk.start(timeout=WAIT_S)
    zk.ensure_path("/p")
    for i in ens.sids:
        ens.start_agent(i, log)
    bounded("every host's writer connected", lambda: log.ready == set(ens.sids))
    stop = threading.Event()
    writer = threading.Thread(target=write_loop, args=(zk, "c", stop, log.emit_for("c")),
                              daemon=True)
    writer.start()
    bounded("a write of every writer", lambda: len(log.acks) == len(ens.sids) + 1)
    time.sleep(STEADY_S)

    followers = [i for i in ens.sids if i != leader]
    if scenario == "leader":
        minority = [leader]
    elif scenario == "follower":
        minority = [followers[0]]
    else:
        minority = [leader, followers[0]]
    majority = [i for i in ens.sids if i not in minority]
    log_at_cut = {i: os.path.getsize(os.path.join(ens.dir(i), "server.log")) for i in minority}
    t_cut = time.monotonic()
    if len(minority) == 1:
        net.cut(minority[0])
    else:
        net.partition([majority + [CLIENT_HOST], minority])
    t_cut_done = time.monotonic()
    ens.mark(f"cut off {minority}")
    print(f"{scenario}: cut off {minority} from {majority} and the client host "
          f"({t_cut_done - t_cut:.3f} s to apply)")

    t_leader = None
    if leader in minority:
        new = bounded("a leader on the majority side", lambda: ens.sole_leader(majority))
        t_leader = time.monotonic()
    majority_writers = ["c"] + [f"h{i}" for i in majority]
    t_first = bounded("an acknowledged write on the majority side sent after the cut",
                      lambda: log.first_ack_sent_after(majority_writers, t_cut_done))
    t_left = {i: bounded(f"server {i} to leave its role", lambda i=i: log.left_role_at(i, t_cut))
              for i in minority}
    if leader not in minority:
        assert ens.sole_leader(majority) == leader, ens.modes(majority)
        new = leader
    time.sleep(HOLD_S)

    for i in minority:
        assert mode_of(Net.addr(i)) == "down", f"server {i} answers through the cut"
    # Why each minority server left its role, as its log says (the first such line
    # since the cut): an old leader "lost a quorum of followers"; a follower found its
    # "leader silent", or its "leader connection lost" when a leader on its side of
    # the split stepped down and closed it.
    reasons = {}
    for i in minority:
        with open(os.path.join(ens.dir(i), "server.log"), errors="replace") as f:
            f.seek(log_at_cut[i])
            lines = [ln.strip() for ln in f if "looking (" in ln]
        if lines:
            t, line = lines[0].split(" ", 1)
            reasons[i] = f"{line} (logged {float(t) - t_cut:.3f} s after the cut)"
        else:
            reasons[i] = "(no looking line in its log)"
    t_heal = time.monotonic()
    net.heal()
    ens.mark("healed")
    rejoined = bounded("the minority to rejoin as followers under one leader", lambda: (
        ens.sole_leader(ens.sids) is not None
        and all(mode_of(Net.addr(i)) == "follower" for i in minority)))
    t_rejoined = time.monotonic()
    assert rejoined
    final_modes = ens.modes()
    time.sleep(STEADY_S)
    stop.set()
    ens.stop_agents()
    writer.join(WRITE_WAIT_S + 5)
    zk.stop()
    zk.close()

    # No minority client got success for a write it sent after the cut while cut off.
    minority_writers = [f"h{i}" for i in minority]
    with log.lock:
        bad = [(w, n, round(s - t_cut, 3), round(t - t_cut, 3))
               for w in minority_writers for n, s, t in log.acks.get(w, [])
               if s > t_cut_done and t < t_heal]
        # Writes sent before the cut may still be answered after it (their commit was
        # under way); these are in the final history like every acknowledged write.
        during = [t - t_cut for w in minority_writers for _, _, t in log.acks.get(w, [])
                  if t_cut < t < t_heal]
        counts = {w: len(a) for w, a in sorted(log.acks.items())}
        errs = dict(sorted(log.errs.items()))
    assert not bad, f"minority clients acknowledged writes sent after the cut: {bad[:10]}"

    hashes = bounded("every server at the same zxid and digest", lambda: (
        lambda h: h if None not in h.values() and len(set(h.values())) == 1 else None)(
            {i: hash_of(Net.addr(i)) for i in ens.sids}))
    acked = log.acked_names()
    trees = {}
    for i in ens.sids:
        c = kazoo_client(f"{Net.addr(i)}:{CLIENT_PORT}")
        c.start(timeout=WAIT_S)
        c.sync("/p")
        trees[i] = set(c.get_children("/p"))
        c.stop()
        c.close()
    lost = {i: sorted(acked - t)[:5] for i, t in trees.items() if acked - t}
    assert not lost, f"acknowledged writes missing: {lost}"
    assert all(t == trees[1] for t in trees.values()), "servers hold different /p"

    def dt(t):
        return "n/a" if t is None else f"{t - t_cut:.3f} s"

    print(f"{scenario}: new leader {new} (cut -> seen leading by srvr polls: {dt(t_leader)}); "
          f"cut -> first acknowledged write on the majority side: {dt(t_first)}")
    for i in minority:
        what = "old leader stepped down" if i == leader else "follower left its role"
        print(f"{scenario}: server {i}: cut -> {what}: {dt(t_left[i])}; its log: {reasons[i]}")
    print(f"{scenario}: heal -> minority rejoined as followers: {t_rejoined - t_heal:.3f} s; "
          f"modes {final_modes}")
    print(f"{scenario}: acknowledged writes per client {counts}; errors {errs}; minority "
          f"acknowledgements between cut and heal: {len(during)}, the last "
          f"{max(during, default=0):.3f} s after the cut (none of a write sent after it)")
    print(f"{scenario}: converged: {hashes}; {len(acked)} acknowledged writes on every server")


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "agent":
        agent(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    binary, scenario = os.path.abspath(sys.argv[1]), sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    assert scenario in ("leader", "follower", "split"), scenario
    assert 3 <= n <= 9 and (scenario != "split" or n == 5), (scenario, n)

    def give_up(signum, _frame):
        raise TimeoutError(f"signal {signum}: run budget of {RUN_BUDGET_S} s or stopped")

    signal.signal(signal.SIGALRM, give_up)
    signal.signal(signal.SIGTERM, give_up)
    signal.alarm(RUN_BUDGET_S)
    net = Net(list(range(1, n + 1)) + [CLIENT_HOST])
    root = tempfile.mkdtemp(prefix="rk-partition-")
    logging.basicConfig(filename=os.path.join(root, "driver-kazoo.log"), level=logging.WARNING)
    ens = None
    ok = False
    try:
        try:
            net.up()
        except Unavailable as e:
            print(f"SKIP: {e}")
            shutil.rmtree(root, ignore_errors=True)
            sys.exit(SKIP)
        # The driver and its clients are the client host.
        net.enter(CLIENT_HOST)
        ens = Ensemble(binary, net, n, root)
        partition_run(ens, net, scenario)
        ok = True
    except Exception as e:  # noqa: BLE001 - report, print the logs, fail
        print(f"FAIL: {scenario} {n}: {e!r}", file=sys.stderr)
        if ens is not None:
            ens.tails()
    finally:
        signal.alarm(0)
        if ens is not None:
            ens.stop()
        left = net.pids()
        if left:
            # Only processes inside this run's namespaces, so started by this run.
            print(f"stopping leftover processes in this run's namespaces: {left}",
                  file=sys.stderr)
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        net.down()
        if ok and not os.environ.get("RINGKEEPER_PARTITION_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
        elif os.path.isdir(root):  # a failure, or RINGKEEPER_PARTITION_KEEP set
            print(f"kept {root}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
