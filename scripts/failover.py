#!/usr/bin/env python3
"""Failover time of a 3-node ensemble, Apache ZooKeeper and RingKeeper alike: a kazoo
client that lists every server writes one create at a time; the leader is SIGKILLed
(by the PID its start script recorded) and restarted, ROUNDS times. Per round it prints
the time from the kill to (a) a surviving server reporting `Mode: leader` in `srvr`
and (b) the first acknowledged write sent after the kill, then the medians.

    scripts/failover.py [--targets zk,rk] [--rounds 5] [--nodes 3]

Both ensembles run on loopback through scripts/apache-zk.sh and scripts/ringkeeper.sh
(tickTime 2000, initLimit 10, syncLimit 5), one after the other, each in a temporary
folder removed at the end. RingKeeper's binary is target/release/ringkeeper (build it
first) unless RINGKEEPER_BIN is set. Every wait is bounded.
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from rkharness import srvr_mode  # noqa: E402  (the tests' harness: 4lw helpers)
SCRIPTS = {"zk": os.path.join(HERE, "apache-zk.sh"), "rk": os.path.join(HERE, "ringkeeper.sh")}
BASE_PORT = {"zk": 28880, "rk": 29880}
# Bounds: a round's wait for a new leader and for the first write, and the settle time
# before the next kill (the restarted server rejoins; ZooKeeper's takes seconds).
ROUND_TIMEOUT_S = 60
SETTLE_TIMEOUT_S = 60
# Writes before the kill, to be in a steady state.
WARM_WRITES = 200


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def measure(target, rounds, nodes):
    script = SCRIPTS[target]
    base = BASE_PORT[target]
    ports = [base + i for i in range(1, nodes + 1)]
    d = tempfile.mkdtemp(prefix=f"failover-{target}-")
    results = []
    zk = None
    try:
        run([script, "start-ensemble", d, str(nodes), str(base)])
        run([script, "wait-serving", ",".join(f"127.0.0.1:{p}" for p in ports)])
        zk = KazooClient(hosts=",".join(f"127.0.0.1:{p}" for p in ports), timeout=10,
                         connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.2))
        zk.start(timeout=60)
        zk.ensure_path("/failover")
        n = 0
        for r in range(rounds):
            for _ in range(WARM_WRITES):
                zk.create(f"/failover/n{n:07d}")
                n += 1
            modes = {i: srvr_mode(p) for i, p in enumerate(ports, 1)}
            leader = [i for i, m in modes.items() if m == "leader"]
            if len(leader) != 1:
                raise RuntimeError(f"{target}: no single leader: {modes}")
            leader = leader[0]
            with open(os.path.join(d, f"s{leader}", "pid")) as f:
                pid = int(f.read())
            elected = {}
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)

            def watch():
                while time.monotonic() - t_kill < ROUND_TIMEOUT_S and "at" not in elected:
                    for i, p in enumerate(ports, 1):
                        if i != leader and srvr_mode(p) == "leader":
                            elected["at"] = time.monotonic() - t_kill
                            return
                    time.sleep(0.01)

            w = threading.Thread(target=watch, daemon=True)
            w.start()
            first = None
            while first is None and time.monotonic() - t_kill < ROUND_TIMEOUT_S:
                try:
                    zk.create(f"/failover/n{n:07d}")
                    first = time.monotonic() - t_kill
                except Exception:  # noqa: BLE001 - ConnectionLoss etc. until the new leader
                    time.sleep(0.01)
                n += 1
            w.join(timeout=ROUND_TIMEOUT_S)
            if first is None or "at" not in elected:
                raise RuntimeError(f"{target}: round {r}: no failover within {ROUND_TIMEOUT_S}s")
            results.append((elected["at"], first))
            print(f"{target} round {r + 1}: killed server {leader}; new leader after "
                  f"{elected['at']:.3f} s; first acknowledged write after {first:.3f} s",
                  flush=True)
            # Bring the killed server back and wait until every server serves again.
            run([script, "restart", d, str(leader)])
            until = time.monotonic() + SETTLE_TIMEOUT_S
            while time.monotonic() < until:
                if all(srvr_mode(p) in ("leader", "follower") for p in ports):
                    break
                time.sleep(0.1)
    finally:
        if zk is not None:
            zk.stop()
            zk.close()
        subprocess.run([script, "stop", d], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="zk,rk")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=3)
    a = ap.parse_args()
    summary = {}
    for t in a.targets.split(","):
        res = measure(t, a.rounds, a.nodes)
        summary[t] = (statistics.median(x for x, _ in res), statistics.median(y for _, y in res))
    print("target  median kill->leader  median kill->first write")
    for t, (x, y) in summary.items():
        print(f"{t:6}  {x:>18.3f} s  {y:>22.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
