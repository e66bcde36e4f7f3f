#!/usr/bin/env python3
"""Loads servers with the official ZooKeeper Java client (perf/java/JavaLoad.java) and
reports throughput, latency and what the servers spent per write: CPU microseconds and
voluntary and involuntary context switches per operation, summed over every thread of
every server process (from /proc, sampled at the start and end of the measured window,
as zkbench does).

Usage: scripts/java-load.py CONNECT [--sessions 16] [--outstanding 16] [--warmup 3]
           [--duration 8] [--value-size 100] [--keys 10000] [--pids PID,PID]
Prints one JSON line. Server pids are found from the ports of CONNECT (the processes
listening there on this machine) unless --pids names them.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "perf", "java", "JavaLoad.java")
JAR = os.environ.get("ZK_JAR", "/usr/share/java/zookeeper.jar")


def listening_pids(ports):
    """The processes holding a listening socket on each port (like zkbench's)."""
    inodes = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            port = int(f[1].rsplit(":", 1)[1], 16)
            if port in ports and f[3] == "0A":
                inodes[int(f[9])] = port
    pids = set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                t = os.readlink(f"/proc/{p}/fd/{fd}")
                if t.startswith("socket:[") and int(t[8:-1]) in inodes:
                    pids.add(int(p))
        except OSError:
            continue
    return sorted(pids)


def sample(pids):
    """(cpu ns, voluntary, involuntary) per (pid, tid)."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            d = f"/proc/{pid}/task/{tid}"
            try:
                ns = int(open(f"{d}/schedstat").read().split()[0])
                v = iv = 0
                for line in open(f"{d}/status"):
                    if line.startswith("voluntary_ctxt_switches"):
                        v = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        iv = int(line.split()[1])
                out[(pid, int(tid))] = (ns, v, iv)
            except OSError:
                continue
    return out


def spent(before, after):
    cpu = vol = invol = 0
    for k, (ns, v, iv) in after.items():
        b = before.get(k, (0, 0, 0))
        cpu += ns - b[0]
        vol += v - b[1]
        invol += iv - b[2]
    return cpu / 1000.0, vol, invol


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("connect")
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--outstanding", type=int, default=16)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--pids", default="")
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    ports = {int(hp.rsplit(":", 1)[1]) for hp in a.connect.split(",")}
    pids = [int(p) for p in a.pids.split(",") if p] or listening_pids(ports)
    with tempfile.TemporaryDirectory() as classes:
        r = subprocess.run(["javac", "-cp", JAR, "-d", classes, SRC], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"javac failed: {r.stderr}")
        cmd = ["java", "-Xmx1g", "-Dzookeeper.log.threshold=WARN", "-cp", f"{JAR}:{classes}", "JavaLoad",
               a.connect, str(a.sessions), str(a.outstanding), str(a.warmup), str(a.duration),
               str(a.value_size), str(a.keys)]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        before = after = None
        result = None
        limit = a.warmup + a.duration + 120
        import threading
        timer = threading.Timer(limit, p.kill)
        timer.start()
        for line in p.stdout:
            line = line.strip()
            if line == "WINDOW START":
                before = sample(pids)
            elif line == "WINDOW END":
                after = sample(pids)
            elif line.startswith("{"):
                result = json.loads(line)
        p.wait()
        timer.cancel()
    if result is None or before is None or after is None:
        sys.exit(f"the Java load did not finish (exit {p.returncode})")
    cpu_us, vol, invol = spent(before, after)
    ops = max(result["ops"], 1)
    result.update({
        "label": a.label,
        "target": a.connect,
        "load": f"java client {a.sessions}x{a.outstanding} setData {a.value_size} B",
        "server_pids": pids,
        "server_cpu_us_per_op": round(cpu_us / ops, 3),
        "server_vcs_per_op": round(vol / ops, 4),
        "server_ivcs_per_op": round(invol / ops, 4),
    })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
