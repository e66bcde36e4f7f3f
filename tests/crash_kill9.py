#!/usr/bin/env python3
"""The kill -9 test: a real ZooKeeper client (kazoo) writes with many requests in flight
and records every acknowledged write; the server is SIGKILLed at a random moment; after
each restart every acknowledged write must be present with its data (0 lost). At the end
`ringkeeper data check` must find the data directory valid (every CRC, zxid continuity,
and the recovered tree equal to a replay of the whole log).

Usage: crash_kill9.py RINGKEEPER_BINARY [ROUNDS] [SEED]

Exit codes: 0 pass, 1 fail, 77 the binary keeps data in memory only (storage not wired
into the server yet), so the test cannot apply.
"""

import faulthandler
import random
import shutil
import sys
import tempfile
import threading
import time

from kazoo.exceptions import NoNodeError

from rkharness import Server, connect, data_check, free_port

# Requests kept in flight by the writer: enough that a kill lands among many
# unacknowledged ones.
IN_FLIGHT = 128
# Writes per round at most, so a round ends even if the kill comes late.
MAX_WRITES_PER_ROUND = 20_000
# The kill comes after this many seconds of writing, drawn uniformly.
KILL_AFTER_S = (0.05, 1.2)
# Acknowledged writes whose data is read back per round (all are checked by name).
DATA_SAMPLE = 300
MEMORY_ONLY_BANNER = "kept in memory only"


def verify(zk, acked, rnd):
    """Every acknowledged write is present: names of all, data of a sample."""
    lost = []
    by_round = {}
    for path in acked:
        parent, name = path.rsplit("/", 1)
        parent = parent or "/"
        by_round.setdefault(parent, set()).add(name)
    for parent, names in sorted(by_round.items()):
        present = set(zk.get_children(parent)) if zk.exists(parent) else set()
        lost.extend(f"{parent}/{n}" for n in sorted(names - present))
    sample = rnd.sample(sorted(acked), min(DATA_SAMPLE, len(acked)))
    for path in sample:
        try:
            data, _ = zk.get(path)
        except NoNodeError:
            continue  # Already listed as lost by name above.
        if data != acked[path]:
            lost.append(f"{path} (data {data!r}, acknowledged {acked[path]!r})")
    return lost


def write_until_killed(zk, server, rnd, round_no, acked):
    parent = f"/k9/r{round_no}"
    zk.create(parent)
    acked[parent] = b""
    killer = threading.Timer(rnd.uniform(*KILL_AFTER_S), server.kill9)
    killer.start()
    pending = []
    sent = 0
    while sent < MAX_WRITES_PER_ROUND and server.proc.poll() is None:
        while len(pending) < IN_FLIGHT and sent < MAX_WRITES_PER_ROUND:
            path = f"{parent}/n{sent:06d}"
            data = f"r{round_no}-{sent}-{rnd.randrange(1 << 30)}".encode()
            pending.append((path, data, zk.create_async(path, data)))
            sent += 1
        path, data, res = pending.pop(0)
        try:
            res.get(timeout=15)
            acked[path] = data
        except Exception:
            pass
    killer.join()
    if server.proc.poll() is None:
        server.kill9()
    # Collect what was acknowledged before the kill; the rest fail with ConnectionLoss.
    # One deadline for all: a result kazoo never resolves is simply not acknowledged
    # (waiting 15 s for each of 128 of them once stalled a run for half an hour).
    deadline = time.monotonic() + 15
    for path, data, res in pending:
        try:
            res.get(timeout=max(0.01, deadline - time.monotonic()))
            acked[path] = data
        except Exception:
            pass
    return sent


def main():
    # A hang prints every thread's stack and exits, so a stuck run says where it stuck.
    faulthandler.dump_traceback_later(480, exit=True)
    binary = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else random.randrange(1 << 32)
    rnd = random.Random(seed)
    print(f"crash_kill9: seed {seed}, {rounds} rounds", flush=True)
    workdir = tempfile.mkdtemp(prefix="rk-kill9-")
    # 1 MiB segments: a round of writes crosses several, so kills land amid segment
    # switches too (the core loop runs them on a thread of their own).
    server = Server(binary, workdir, free_port(), cfg_lines=["logSegmentSize=1048576"])
    ok = False
    try:
        server.start()
        if MEMORY_ONLY_BANNER in server.tail():
            print("crash_kill9: the server keeps data in memory only: storage is not wired")
            return 77
        acked = {}
        zk = connect(server.port)
        zk.ensure_path("/k9")
        acked["/k9"] = b""
        zk.stop()
        for r in range(rounds):
            zk = connect(server.port)
            lost = verify(zk, acked, rnd)
            if lost:
                print(f"crash_kill9: round {r}: {len(lost)} acknowledged writes lost, e.g. {lost[:5]}")
                return 1
            sent = write_until_killed(zk, server, rnd, r, acked)
            zk.stop()
            zk.close()
            print(f"crash_kill9: round {r}: sent {sent}, acknowledged so far {len(acked)}", flush=True)
            server.start()
        zk = connect(server.port)
        lost = verify(zk, acked, rnd)
        zk.stop()
        zk.close()
        if lost:
            print(f"crash_kill9: final: {len(lost)} acknowledged writes lost, e.g. {lost[:5]}")
            return 1
        server.stop()
        code, out, err = data_check(binary, server.data_dir)
        print(out, end="")
        if code != 0:
            print(f"crash_kill9: data check failed ({code}): {err}")
            return 1
        print(f"crash_kill9: PASS: {rounds} kills, {len(acked)} acknowledged writes, 0 lost")
        ok = True
        return 0
    finally:
        server.stop()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"crash_kill9: kept {workdir} for inspection; server log tail:\n{server.tail()}")


if __name__ == "__main__":
    sys.exit(main())
