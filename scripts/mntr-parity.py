#!/usr/bin/env python3
"""Side by side under the same load: Apache ZooKeeper (Debian's 3.8) and RingKeeper each
serve the same zkbench run and kazoo watch traffic, then their `mntr` answers are
compared. Every numeric key that is non-zero on ZooKeeper must be present and non-zero
on RingKeeper (a summary's statistics may be 0 when its count is not: it was measured
and took under a millisecond, ZooKeeper's unit), or be listed in docs/compat.md's mntr
table as having no meaning here
(a row whose second cell starts with "no meaning here"). Prints the table of keys and
exits non-zero on a violation.

Usage: scripts/mntr-parity.py [--rk-bin PATH] [--zkbench PATH] [--port-base N]
                              [--seconds S] [--keep]
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def four_letter(port, word, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(word.encode())
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out.decode()
            out += chunk


def mntr(port):
    vals = {}
    for line in four_letter(port, "mntr").splitlines():
        k, _, v = line.partition("\t")
        vals[k] = v
    return vals


def is_zero(v):
    try:
        return float(v) == 0.0
    except ValueError:
        return False  # text values (version, state)


def documented_no_meaning():
    """Keys (with zk_) whose docs/compat.md mntr row says they mean nothing here."""
    keys = set()
    with open(os.path.join(REPO, "docs", "compat.md")) as f:
        for line in f:
            m = re.match(r"\| `zk_(\*_)?([a-z0-9_]+)` \| no meaning here", line)
            if not m:
                continue
            if m.group(1):  # a summary: every statistic of it
                keys |= {f"zk_{s}_{m.group(2)}" for s in
                         ("avg", "min", "max", "cnt", "sum", "p50", "p95", "p99", "p999")}
            else:
                keys.add(f"zk_{m.group(2)}")
    return keys


def load(port, zkbench, seconds):
    """The same traffic on both: zkbench's mixed get/set, then watches that fire."""
    subprocess.run([zkbench, "run", "-c", f"127.0.0.1:{port}", "-w", "mixed", "-s", "8",
                    "-d", str(seconds), "--warmup", "0", "--drain", "2", "--keys", "500", "-q",
                    "--no-server-cost"], check=True, stdout=subprocess.DEVNULL, timeout=120)
    from kazoo.client import KazooClient
    k = KazooClient(hosts=f"127.0.0.1:{port}")
    k.start(timeout=20)
    k.ensure_path("/parity/app")
    k.create("/parity/app/e", b"x", ephemeral=True)
    for i in range(5):
        k.get("/parity/app", watch=lambda e: None)
        k.get_children("/parity/app", watch=lambda e: None)
        k.exists(f"/parity/app/n{i}", watch=lambda e: None)
        k.create(f"/parity/app/n{i}", b"y")
        k.set("/parity/app", b"z")
        k.delete(f"/parity/app/n{i}")
    # A second session that resumes (revalidation) and one refused handshake.
    k.stop()
    k.close()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x00\x00\x00\x02xx")
        s.settimeout(5)
        try:
            s.recv(10)
        except OSError:
            pass


REPORT = []


def say(line=""):
    print(line)
    REPORT.append(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rk-bin", default=os.path.join(REPO, "target", "release", "ringkeeper"))
    ap.add_argument("--zkbench", default=os.path.join(REPO, "target", "release", "zkbench"))
    ap.add_argument("--port-base", type=int, default=24481)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--report", help="also write the report to this file")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="mntr-parity-")
    zk_dir, rk_dir = os.path.join(root, "zk"), os.path.join(root, "rk")
    zk_port, rk_port = a.port_base, a.port_base + 1
    env = dict(os.environ, RINGKEEPER_BIN=a.rk_bin, ZK_EXTRA_CFG="4lw.commands.whitelist=*\nsnapCount=1000",
               RK_EXTRA_CFG="4lw.commands.whitelist=*\nadmin.enableServer=false\nsnapCount=1000")
    results = {}
    try:
        for name, script, d, port in [("zk", "apache-zk.sh", zk_dir, zk_port),
                                      ("rk", "ringkeeper.sh", rk_dir, rk_port)]:
            os.makedirs(d)
            subprocess.run([os.path.join(REPO, "scripts", script), "start", d, str(port)],
                           check=True, env=env, timeout=120)
            subprocess.run([os.path.join(REPO, "scripts", script), "wait-serving",
                            f"127.0.0.1:{port}"], check=True, env=env, timeout=120)
            try:
                load(port, a.zkbench, a.seconds)
                results[name] = mntr(port)
            finally:
                subprocess.run([os.path.join(REPO, "scripts", script), "stop", d], env=env,
                               timeout=60)
    finally:
        if a.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    zk, rk = results["zk"], results["rk"]
    undocumented = documented_no_meaning()
    bad = []
    say(f"{'key':<52} {'zookeeper':>14} {'ringkeeper':>14}")
    for k, v in zk.items():
        if is_zero(v) or k in ("zk_version", "zk_server_state"):
            continue
        ours = rk.get(k)
        ok = ours is not None and not is_zero(ours)
        note = ""
        m = re.match(r"zk_(avg|min|max|sum|p50|p95|p99|p999)_(.+)$", k)
        if not ok and ours is not None and m and not is_zero(rk.get(f"zk_cnt_{m.group(2)}", "0")):
            # A summary measured here whose values are under 1 ms (ZooKeeper's unit).
            ok, note = True, "measured here, under 1 ms"
        if not ok:
            note = "no meaning here (docs/compat.md)" if k in undocumented else "MISSING"
        say(f"{k:<52} {v:>14} {str(ours):>14} {note}")
        if not ok and k not in undocumented:
            bad.append(k)
    if bad:
        say(f"\n{len(bad)} keys non-zero on ZooKeeper, zero or absent here and not "
            f"documented in docs/compat.md: {bad}")
    else:
        say("\nevery non-zero ZooKeeper key is non-zero here or documented")
    if a.report:
        with open(a.report, "w") as f:
            f.write("\n".join(REPORT) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
