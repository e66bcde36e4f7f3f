#!/usr/bin/env python3
"""A rolling restart of a 3-server ensemble by SIGTERM under a zkbench write load, for
Apache ZooKeeper 3.8 (scripts/apache-zk.sh) and RingKeeper (scripts/ringkeeper.sh) in
the same run: the longest gap between acknowledged writes around each server's restart
(followers first, then the leader, as operators do it), split into the stop (SIGTERM
until 0.5 s after the process exited: a leader's hand-off, or an election), the time
the server is down and recovering (until the restarted process answers `ruok`: the
other two are a quorum of two meanwhile) and the rejoin (from then until --settle
seconds after it serves again: its election and sync). For RingKeeper, the gaps of
`ydld` (the leader yields to its best follower) and `rqld` (a follower asks to lead)
follow in the same load. First, --baseline seconds with every server up and nothing
restarting give the longest gap this machine shows anyway (the floor to read the
others against: on shared cores a quorum write can wait on a busy CPU or disk).

    scripts/rolling-restart.py [--targets zk,rk] [--sessions 16] [--outstanding 16]
                               [--settle 3] [--baseline 5] [--out DIR] [--log-times]
                               [--nice-recovery]

The load is `zkbench run -w set --reconnect --ack-gaps` over every server of the
ensemble (sessions of a stopped server resume on the next one). A gap is the time
between two consecutive successful replies over all sessions; `ydld`/`rqld` windows
run until 0.5 s after the new leader reports `leader`. Servers are stopped by their PIDs (the scripts' pid files), never by name.
Writes results to perf/results/<UTC stamp>-rolling/ (summary.txt, the gap files).
With --log-times (RingKeeper only) the servers' log lines are stamped with the wall
clock and rk-timeline.txt merges them with every write gap of 50 ms or more, to see
what each server was doing when the writes stalled. With --nice-recovery (RingKeeper
only) a restarted server starts at nice 19 and every thread of it is put back to 0
once it serves: on one machine shared by the three servers, its recovery then takes
CPU only when the two serving ones leave it some (servers on machines of their own do
not compete).
"""

import argparse
import csv
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASES = {"zk": 26880, "rk": 27880}
SCRIPTS = {"zk": "scripts/apache-zk.sh", "rk": "scripts/ringkeeper.sh"}
NAMES = {"zk": "Apache ZooKeeper", "rk": "RingKeeper"}


def four_letter(port, word, timeout=1.0):
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(word.encode())
            s.shutdown(socket.SHUT_WR)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        pass
    return data.decode(errors="replace")


def mode(port):
    for line in four_letter(port, "srvr").splitlines():
        if line.startswith("Mode: "):
            return line[6:].strip()
    return None


def gone(pid):
    """Whether process `pid` has exited (gone, or a zombie not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def session_ok(port):
    """Whether the server answers a ConnectRequest with a ConnectResponse (a server can
    report its Mode before it takes sessions)."""
    body = struct.pack(">iqiqi16sb", 0, 0, 10000, 0, 16, bytes(16), 0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            s.sendall(struct.pack(">i", len(body)) + body)
            data = s.recv(64)
            return len(data) >= 4 + 4 + 4 + 8
    except OSError:
        return False


def wait_serving(i, port, timeout=120.0):
    """Waits until server `i` serves (leader or follower: synced); returns when it first
    answered `ruok` (recovered and listening, maybe still electing or syncing), in ms."""
    t0 = time.monotonic()
    answered = None
    while time.monotonic() - t0 < timeout:
        if answered is None and four_letter(port, "ruok") == "imok":
            answered = time.time() * 1000
        m = mode(port)
        if m is not None and answered is None:
            answered = time.time() * 1000
        if m in ("leader", "follower"):
            return answered
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for server {i} serving")


def wait(what, pred, timeout=120.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def ports(target):
    return [BASES[target] + i for i in (1, 2, 3)]


def leader_index(target):
    for i, p in enumerate(ports(target), 1):
        if mode(p) == "leader":
            return i
    return None


def read_gaps(path):
    """(start_unix_ms, [(at_unix_ms, gap_ms)], acks) from zkbench --ack-gaps."""
    start, acks, gaps = 0, 0, []
    with open(path) as f:
        for line in f:
            if line.startswith("# start_unix_ms="):
                start = int(line.split("=", 1)[1])
            elif line.startswith("# acks="):
                acks = int(line.split()[1].split("=", 1)[1])
    with open(path) as f:
        rows = [r for r in csv.reader(line for line in f if not line.startswith("#"))]
    for r in rows[1:]:
        gaps.append((start + float(r[0]), float(r[1])))
    return start, gaps, acks


def longest(gaps, t0_ms, t1_ms):
    """The longest gap overlapping [t0, t1] (ms) and when it began (ms after t0)."""
    best = (0.0, 0.0)
    for at, g in gaps:
        if at < t1_ms and at + g > t0_ms:
            best = max(best, (g, at - t0_ms))
    return best


def unnice(pid):
    """Puts every thread of `pid` back to nice 0 (Linux: one TID at a time)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.setpriority(os.PRIO_PROCESS, int(tid), 0)
        except OSError:
            pass  # the thread ended meanwhile


# Gaps at least this long go into the timeline.
TIMELINE_GAP_MS = 50


def write_timeline(d, gaps_path, path):
    """Merges the stamped server logs of ensemble dir `d` with the write gaps of at
    least TIMELINE_GAP_MS (placed where they began), in time order."""
    with open(gaps_path) as f:
        rows = f.read().splitlines()
    start_s = int(rows[0].split("=", 1)[1]) / 1000
    events = []
    for row in rows[3:]:
        at_ms, gap_ms = (float(x) for x in row.split(","))
        if gap_ms >= TIMELINE_GAP_MS:
            end = start_s + at_ms / 1000
            events.append((end - gap_ms / 1000, f"WRITE GAP {gap_ms:.0f} ms"))
    for i in (1, 2, 3):
        with open(os.path.join(d, f"s{i}", "server.log"), errors="replace") as f:
            for line in f:
                stamp, _, text = line.rstrip("\n").partition(" ")
                # The ensemble's temporary directory says nothing: DIR stands for it.
                text = text.replace(d, "DIR")
                try:
                    events.append((float(stamp), f"server {i}: {text}"))
                except ValueError:
                    continue
    events.sort()
    with open(path, "w") as f:
        for t, what in events:
            f.write(f"{t - start_s:9.3f} {what}\n")


def run_target(target, args, out, zkbench):
    d = tempfile.mkdtemp(prefix=f"rolling-{target}-")
    script = os.path.join(HERE, SCRIPTS[target])
    env = dict(os.environ)
    if args.log_times:
        env["RK_LOG_TIMES"] = "1"
    events = []
    try:
        subprocess.run([script, "start-ensemble", d, "3", str(BASES[target])], check=True,
                       env=env, stdout=subprocess.DEVNULL)
        connect = open(os.path.join(d, "connect")).read().strip()
        subprocess.run([script, "wait-serving", connect], check=True, env=env)
        gaps_path = os.path.join(out, f"{target}-gaps.csv")
        duration = args.duration or (90 if target == "zk" else 60)
        for p in ports(target):
            wait(f"sessions on port {p}", lambda p=p: session_ok(p))
        # A JVM ensemble that just elected may still reset the first connections.
        for _attempt in range(5):
            time.sleep(2)
            bench = subprocess.Popen(
                [zkbench, "run", "-w", "set", "-s", str(args.sessions), "-k",
                 str(args.outstanding), "-d", str(duration), "--warmup", "2",
                 "--reconnect", "--no-server-cost", "-q", "-c", connect, "--json",
                 "--ack-gaps", gaps_path],
                stdout=subprocess.PIPE, text=True)
            time.sleep(2 + args.settle)
            if bench.poll() is None:
                break
        else:
            raise RuntimeError(f"zkbench could not start against {connect}")
        # The floor: the longest gap with every server up and nothing restarting, over
        # as long as a restart takes, so that each window's gap can be read against
        # what this machine does anyway.
        t0 = time.time() * 1000
        time.sleep(args.baseline)
        events.append(("steady, all serving (floor)", t0, time.time() * 1000,
                       args.baseline))
        lead = leader_index(target)
        order = [i for i in (1, 2, 3) if i != lead] + [lead]
        for i in order:
            port = ports(target)[i - 1]
            role = mode(port)
            pid = int(open(os.path.join(d, f"s{i}", "pid")).read())
            t_stop = time.time() * 1000
            os.kill(pid, signal.SIGTERM)
            # Its own child: poll /proc until it is gone (the script's pid file names it).
            wait(f"server {i} exits", lambda: gone(pid), timeout=30)
            t_exit = time.time() * 1000
            renice = args.nice_recovery and target == "rk"
            subprocess.run([script, "restart", d, str(i)], check=True,
                           env=dict(env, RK_NICE="19") if renice else env,
                           stdout=subprocess.DEVNULL)
            t_listen = wait_serving(i, port)
            if renice:
                unnice(int(open(os.path.join(d, f"s{i}", "pid")).read()))
            t_back = time.time() * 1000
            time.sleep(args.settle)
            # The stop: from SIGTERM until 0.5 s after the process is gone (a leader's
            # hand-off, or ZooKeeper's election); then one server short: until the
            # restarted process answers ruok (it recovered), the other two a quorum of two;
            # the rejoin: from then until the settle time after it serves (its
            # election and sync).
            events.append((f"stop server {i} ({role})", t_stop - 100, t_exit + 500,
                           (t_exit - t_stop) / 1000))
            events.append((f"  server {i} down, recovering", t_exit + 500, t_listen,
                           (t_listen - t_exit) / 1000))
            events.append((f"  rejoin of server {i}", t_listen, time.time() * 1000,
                           (t_back - t_listen) / 1000))
        if target == "rk":
            lead = leader_index(target)
            t0 = time.time() * 1000
            four_letter(ports(target)[lead - 1], "ydld")
            wait("a new leader", lambda: leader_index(target) not in (None, lead))
            t_moved = time.time() * 1000
            time.sleep(args.settle)
            events.append((f"ydld on leader {lead}", t0 - 1, t_moved + 500,
                           (t_moved - t0) / 1000))
            lead = leader_index(target)
            other = next(i for i in (1, 2, 3) if i != lead)
            t0 = time.time() * 1000
            four_letter(ports(target)[other - 1], "rqld")
            wait("the requester leads", lambda: leader_index(target) == other)
            t_moved = time.time() * 1000
            time.sleep(args.settle)
            events.append((f"rqld on follower {other}", t0 - 1, t_moved + 500,
                           (t_moved - t0) / 1000))
        summary, _ = bench.communicate(timeout=duration + 60)
        _, gaps, acks = read_gaps(gaps_path)
        if args.log_times and target == "rk":
            write_timeline(d, gaps_path, os.path.join(out, "rk-timeline.txt"))
        lines = []
        for what, t0, t1, took in events:
            gap, at = longest(gaps, t0, t1)
            lines.append(f"{NAMES[target]:17} {what:28} longest write gap {gap:8.1f} ms "
                         f"from +{at / 1000:5.2f} s   (took {took:.2f} s)")
        lines.append(f"{NAMES[target]:17} {acks} acknowledged writes; zkbench: "
                     f"{summary.strip()[:300]}")
        return lines
    finally:
        subprocess.run([script, "stop", d], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", d])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="zk,rk")
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--outstanding", type=int, default=16)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--baseline", type=float, default=5.0,
                    help="seconds of steady load, every server up, measured before the "
                         "first stop: the machine's floor for a write gap")
    ap.add_argument("--duration", type=int, default=0,
                    help="zkbench seconds (default: 90 for zk, 60 for rk)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--nice-recovery", action="store_true",
                    help="restart RingKeeper servers at nice 19 until they serve")
    ap.add_argument("--log-times", action="store_true",
                    help="stamp RingKeeper's log lines; write rk-timeline.txt")
    args = ap.parse_args()
    os.chdir(HERE)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.out or os.path.join("perf", "results", f"{stamp}-rolling")
    os.makedirs(out, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bins"], check=True)
    zkbench = os.path.join(HERE, "target", "release", "zkbench")
    report = [f"# rolling restart by SIGTERM under zkbench set {args.sessions}x"
              f"{args.outstanding}, 3 servers each, tickTime 2000, "
              f"{time.strftime('%FT%TZ', time.gmtime())}, {os.cpu_count()} cores"]
    for t in args.targets.split(","):
        report += run_target(t, args, out, zkbench)
    text = "\n".join(report) + "\n"
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(text)
    print(text, end="")
    print(f"rolling-restart: results in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
