#!/usr/bin/env python3
"""Big trees: memory, snapshots and restart of RingKeeper beside Apache ZooKeeper, in the
same run on the same machine (issue 10).

For each size N and each target (rk = RingKeeper, zk = Apache ZooKeeper 3.8, started by
scripts/ringkeeper.sh and scripts/apache-zk.sh on loopback):
  1. start an empty server, read its RSS;
  2. populate N znodes of VALUE_SIZE bytes with zkbench's setup phase
     (`zkbench run -w get --keys N --value-size V`, paths /zkbench/k0000000000...);
  3. RSS after populating (settled 2 s): bytes per znode = (RSS - empty RSS) / N; and
     RSS after the last restart (the same tree loaded, without the garbage of building it);
  4. snapshot write rate: RingKeeper's last "snapshot ... written" log line, ZooKeeper's
     mntr snapshottime with its newest snapshot file's size;
  5. ROUNDS restarts after SIGTERM and ROUNDS after SIGKILL, each of a server that has run
     for SETTLE_S seconds: seconds from the signal to the
     first answered `exists` of the last key by a fresh session (a raw jute client, polled
     every 20 ms),
     and after each, that the last key exists and /zkbench has N + 3 children (every
     acknowledged create is there; kazoo); the snapshot load rate of each restart (RingKeeper's
     "recovery: loaded" line, ZooKeeper's mntr startup_snap_load_time and file size);
  6. RingKeeper only: `ringkeeper data check` on the stopped data directory says VALID;
  7. with --children: getChildren of /zkbench (N + 3 children) back to back beside 16
     sessions reading, and the readers' p99 and max with and without it.
Medians over the rounds. Writes results.md (the table, the command lines) and
results.jsonl into OUT (default perf/results/<UTC timestamp>-bigtree/).

Usage: perf/bigtree.py [--sizes 100000,1000000] [--targets rk,zk] [--rounds 3]
                       [--value-size 100] [--zk-heap 2g] [--snap-count 100000]
                       [--rk-bin PATH] [--out DIR] [--check] [--keep] [--port-base P]
                       [--children]
--check: exit 1 unless every figure was measured and every check passed (the test
suite runs it on a small size). Every wait is bounded (PHASE_TIMEOUT_S scaled by N).
"""

import argparse
import datetime
import json
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
POLL_S = 0.02
# Seconds a server runs before it is signalled.
SETTLE_S = 3
# Seconds per phase for 1M znodes; scaled with N (at least 60 s).
PHASE_TIMEOUT_S = 600
# Client ports: --port-base for RingKeeper, the next one for ZooKeeper.
PORT_BASE = 24281
ROOT_NODE = "/zkbench"
# zkbench's setup creates /zkbench/c, /zkbench/e and /zkbench/s beside the keys.
EXTRA_CHILDREN = 3


def log(msg):
    print(f"bigtree: {msg}", file=sys.stderr, flush=True)


def key_path(i):
    return f"{ROOT_NODE}/k{i:010d}"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def four_letter(port, word):
    import socket
    data = b""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(word.encode())
        s.shutdown(socket.SHUT_WR)
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
    except OSError:
        pass
    return data.decode(errors="replace")


def mntr(port):
    out = {}
    for line in four_letter(port, "mntr").splitlines():
        k, _, v = line.partition("\t")
        out[k] = v
    return out


class Server:
    """One server in its own directory, started by the project's script (which writes
    zoo.cfg and waits for ruok), then stopped and relaunched by PID with the same
    command the script uses."""

    def __init__(self, target, workdir, args):
        self.target, self.dir, self.args = target, workdir, args
        self.port = args.port_base + (0 if target == "rk" else 1)
        self.script = os.path.join(ROOT, "scripts", "ringkeeper.sh" if target == "rk" else "apache-zk.sh")
        snap = f"snapCount={args.snap_count}"
        self.env = dict(os.environ, RINGKEEPER_BIN=args.rk_bin, ZK_HEAP=args.zk_heap,
                        START_TIMEOUT_S="120", RK_EXTRA_CFG=snap, ZK_EXTRA_CFG=snap)
        self.pid = None

    def cmd(self):
        cfg = os.path.join(self.dir, "zoo.cfg")
        if self.target == "rk":
            return [self.args.rk_bin, cfg]
        jar = os.environ.get("ZK_JAR", "/usr/share/java/zookeeper.jar")
        return ["java", f"-Xmx{self.args.zk_heap}", "-Dzookeeper.admin.enableServer=false",
                "-cp", jar, "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg]

    def start(self):
        subprocess.run([self.script, "start", self.dir, str(self.port)], env=self.env,
                       check=True, timeout=180, stdout=subprocess.DEVNULL)
        with open(os.path.join(self.dir, "pid")) as f:
            self.pid = int(f.read())

    def launch(self):
        with open(os.path.join(self.dir, "server.log"), "ab") as logf:
            p = subprocess.Popen(self.cmd(), stdout=logf, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.pid = p.pid
        self.proc = p
        with open(os.path.join(self.dir, "pid"), "w") as f:
            f.write(str(p.pid))

    def signal_and_wait(self, sig, timeout_s):
        os.kill(self.pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if getattr(self, "proc", None) is not None:
                if self.proc.poll() is not None:
                    return
            else:
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    return
                # A zombie of the script's background job still answers kill 0: look at
                # its state. The thread group leader shows Z while its other threads
                # still exit, holding the process's sockets: wait for them too (a JVM
                # of a 10M-znode heap takes seconds, and a new server would find its
                # port in use).
                try:
                    with open(f"/proc/{self.pid}/stat") as f:
                        zombie = f.read().split(") ")[1].startswith("Z")
                    if zombie and len(os.listdir(f"/proc/{self.pid}/task")) <= 1:
                        return
                except FileNotFoundError:
                    return
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGKILL)
        raise RuntimeError(f"{self.target} did not exit within {timeout_s} s of signal {sig}")

    def stop(self):
        subprocess.run([self.script, "stop", self.dir], env=self.env, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if getattr(self, "proc", None) is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def log_text(self):
        with open(os.path.join(self.dir, "server.log"), errors="replace") as f:
            return f.read()


def serving(port, last_key):
    """True once a fresh session's `exists` of the last key is answered with a Stat. A raw
    jute client (tests/interop/zkraw.py): a refused connection fails at once, so the
    20 ms poll is the resolution (kazoo's own connection retries were coarser)."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))
    import zkraw
    try:
        c = zkraw.RawClient("127.0.0.1", port, timeout_ms=30000, timeout=5.0)
    except Exception:  # noqa: BLE001 - refused, or accepted and closed while starting
        return False
    try:
        return c.exists(last_key).err == zkraw.OK
    except Exception:  # noqa: BLE001 - closed while starting
        return False
    finally:
        try:
            c.close_session()
        except Exception:  # noqa: BLE001
            pass


def children_of_root(port):
    from kazoo.client import KazooClient
    zk = KazooClient(hosts=f"127.0.0.1:{port}", timeout=10.0)
    zk.start(timeout=10)
    try:
        st = zk.exists(ROOT_NODE)
        return None if st is None else st.numChildren
    finally:
        zk.stop()
        zk.close()


def get_children_count(c, path):
    """getChildren of `path` on raw client `c`: (error code, number of children). Reads
    the reply into one buffer (the names are not decoded)."""
    import struct
    import zkraw
    c.xid += 1
    c.send_frame(zkraw.j_int(c.xid) + zkraw.j_int(zkraw.GET_CHILDREN) + zkraw.j_str(path)
                 + zkraw.j_bool(False))
    (n,) = struct.unpack(">i", c._recv_exact(4))
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = c.sock.recv_into(view[got:])
        if k == 0:
            raise RuntimeError("connection closed inside a getChildren reply")
        got += k
    _xid, _zxid, err = struct.unpack(">iqi", bytes(buf[:16]))
    count = struct.unpack(">i", bytes(buf[16:20]))[0] if err == 0 else None
    return err, count


def children_stall(srv, n, args, timeout_s):
    """Readers beside a getChildren of the parent of all N znodes: 16 zkbench sessions
    send `exists` for 4 s (after 1 s warm-up), once alone and once while a raw client
    sends getChildren of /zkbench back to back. Returns the getChildren time (median)
    and count, and the readers' p99 and max (ms) in both runs."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))
    import zkraw
    cmd = [args.zkbench, "run", "-c", f"127.0.0.1:{srv.port}", "-w", "exists", "--no-setup",
           "--keys", str(n), "-s", "16", "-k", "4", "-d", "4", "--warmup", "1", "--json", "-q"]

    def readers(p):
        out, _ = p.communicate(timeout=timeout_s)
        return json.loads(out.strip().splitlines()[-1])

    alone = readers(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    c = zkraw.RawClient("127.0.0.1", srv.port, timeout_ms=30000, timeout=60.0)
    times, counts = [], set()
    time.sleep(1.2)
    end = time.monotonic() + 3.5
    while time.monotonic() < end:
        t = time.monotonic()
        err, count = get_children_count(c, ROOT_NODE)
        times.append(time.monotonic() - t)
        counts.add(count if err == 0 else f"error {err}")
    c.close_socket()
    beside = readers(p)
    return {"get_children_s": statistics.median(times), "get_children_calls": len(times),
            "get_children_counts": sorted(map(str, counts)),
            "readers_alone_p99_ms": alone["p99_ms"], "readers_alone_max_ms": alone["max_ms"],
            "readers_beside_p99_ms": beside["p99_ms"], "readers_beside_max_ms": beside["max_ms"]}


def newest_zk_snapshot(datadir):
    d = os.path.join(datadir, "version-2")
    snaps = [os.path.join(d, n) for n in os.listdir(d) if n.startswith("snapshot.")]
    return max(snaps, key=os.path.getmtime) if snaps else None


def restart(srv, sig, n, timeout_s):
    """Signal -> serving, in seconds, and the snapshot load rate of that start."""
    log_before = len(srv.log_text())
    t0 = time.monotonic()
    srv.signal_and_wait(sig, timeout_s)
    srv.launch()
    last = key_path(n - 1)
    served = None
    while time.monotonic() - t0 < timeout_s:
        if serving(srv.port, last):
            served = time.monotonic() - t0
            break
        if srv.proc.poll() is not None:
            raise RuntimeError(f"{srv.target} exited during restart; see {srv.dir}/server.log")
        time.sleep(POLL_S)
    if served is None:
        raise RuntimeError(f"{srv.target} not serving {timeout_s} s after signal {sig}")
    load = {}
    if srv.target == "rk":
        text = srv.log_text()[log_before:]
        m = re.search(r"recovery: loaded .*?: (\d+) znodes, (\d+) bytes in ([0-9.]+) s", text)
        if m:
            load = {"znodes": int(m.group(1)), "bytes": int(m.group(2)), "s": float(m.group(3))}
        m = re.search(r"recovered (\d+) znodes .* in ([0-9.]+) s", text)
        if m:
            load["recover_s"] = float(m.group(2))
    else:
        mt = mntr(srv.port)
        snap = newest_zk_snapshot(os.path.join(srv.dir, "data"))
        ms = mt.get("zk_max_startup_snap_load_time")
        if ms is not None and snap:
            load = {"bytes": os.path.getsize(snap), "s": float(ms) / 1000.0}
    kids = children_of_root(srv.port)
    return served, load, kids


def snapshot_write(srv):
    if srv.target == "rk":
        lines = re.findall(r"snapshot \S+ written: zxid \S+, (\d+) znodes, (\d+) bytes in (\d+) ms",
                           srv.log_text())
        if not lines:
            return None
        z, b, ms = lines[-1]
        return {"znodes": int(z), "bytes": int(b), "s": max(int(ms), 1) / 1000.0}
    mt = mntr(srv.port)
    snap = newest_zk_snapshot(os.path.join(srv.dir, "data"))
    avg = mt.get("zk_avg_snapshottime")
    cnt = int(mt.get("zk_cnt_snapshottime", "0"))
    if snap is None or avg is None or cnt < 2:
        return None
    # The first count is the empty tree's snapshot at start: the average over the rest is
    # close to the average; report max too.
    return {"bytes": os.path.getsize(snap), "s": max(float(avg), 1.0) / 1000.0,
            "max_s": float(mt.get("zk_max_snapshottime", "0")) / 1000.0, "count": cnt}


def mb_s(d):
    return d["bytes"] / d["s"] / 1e6 if d and d.get("s") else None


def run_one(target, n, args, results):
    timeout_s = max(60, PHASE_TIMEOUT_S * n // 1_000_000)
    work = tempfile.mkdtemp(prefix=f"bigtree-{target}-")
    srv = Server(target, work, args)
    row = {"target": target, "znodes": n, "value_size": args.value_size}
    try:
        log(f"{target} {n}: start")
        srv.start()
        time.sleep(1)
        empty = rss_kib(srv.pid)
        log(f"{target} {n}: populate")
        t0 = time.monotonic()
        cmd = [args.zkbench, "run", "-c", f"127.0.0.1:{srv.port}", "-w", "get", "--keys", str(n),
               "--value-size", str(args.value_size), "-d", "1", "--warmup", "0", "-q",
               "--session-timeout-ms", "30000"]
        subprocess.run(cmd, check=True, timeout=timeout_s, stdout=subprocess.DEVNULL)
        row["populate_s"] = time.monotonic() - t0
        time.sleep(2)
        full = rss_kib(srv.pid)
        row["rss_empty_mb"] = empty / 1024
        row["rss_mb"] = full / 1024
        row["bytes_per_znode"] = (full - empty) * 1024 / n
        row["snapshot_write"] = snapshot_write(srv)
        row["snapshot_write_mb_s"] = mb_s(row["snapshot_write"])
        if args.children:
            log(f"{target} {n}: getChildren beside readers")
            row["children"] = children_stall(srv, n, args, timeout_s)
        for name, sig in (("term", signal.SIGTERM), ("kill", signal.SIGKILL)):
            times, loads, ok = [], [], True
            for r in range(args.rounds):
                # Settled first: a signal right after a start would also time the
                # start's own background work (ZooKeeper's, or RingKeeper's log
                # preallocating its spare segment), not a restart of a running server.
                time.sleep(SETTLE_S)
                served, load, kids = restart(srv, sig, n, timeout_s)
                times.append(served)
                loads.append(load)
                ok &= kids == n + EXTRA_CHILDREN
                log(f"{target} {n}: {name} round {r + 1}: serving after {served:.2f} s, "
                    f"{kids} children under {ROOT_NODE}")
            row[f"restart_{name}_s"] = statistics.median(times)
            row[f"restart_{name}_rounds"] = times
            row[f"all_writes_after_{name}"] = ok
            rates = [mb_s(x) for x in loads if mb_s(x)]
            row[f"snapshot_load_mb_s_{name}"] = statistics.median(rates) if rates else None
            row[f"snapshot_load_{name}"] = loads
        # The same tree freshly loaded: no garbage of the writes that built it.
        time.sleep(1)
        row["rss_restarted_mb"] = rss_kib(srv.pid) / 1024
        srv.stop()
        if target == "rk":
            rk_check = subprocess.run([args.rk_bin, "data", "check", os.path.join(work, "data")],
                                      capture_output=True, text=True, timeout=timeout_s)
            row["data_check"] = "VALID" if rk_check.returncode == 0 and "VALID" in rk_check.stdout else \
                (rk_check.stdout + rk_check.stderr)[-500:]
    except Exception as e:
        # What was measured before the failure still goes into the results.
        row["failed"] = str(e)
        results.append(row)
        raise
    finally:
        srv.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results.append(row)
    return row


def fmt(v, spec="{:.2f}"):
    return "-" if v is None else spec.format(v)


def table(results, args):
    lines = ["| znodes | target | RSS MB | bytes/znode | RSS after restart MB | snapshot write MB/s "
             "| snapshot load MB/s | restart after SIGTERM s | after kill -9 s | all writes there "
             "| data check |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['znodes']:,} | {'RingKeeper' if r['target'] == 'rk' else 'ZooKeeper'} "
            f"| {fmt(r.get('rss_mb'), '{:.0f}')} | {fmt(r.get('bytes_per_znode'), '{:.0f}')} "
            f"| {fmt(r.get('rss_restarted_mb'), '{:.0f}')} "
            f"| {fmt(r.get('snapshot_write_mb_s'), '{:.0f}')} | {fmt(r.get('snapshot_load_mb_s_term'), '{:.0f}')} "
            f"| {fmt(r.get('restart_term_s'))} | {fmt(r.get('restart_kill_s'))} "
            f"| {r.get('all_writes_after_term') and r.get('all_writes_after_kill')} "
            f"| {r.get('data_check', 'n/a')} |")
    kids = [r for r in results if r.get("children")]
    if kids:
        lines += ["", "getChildren of /zkbench (all N znodes) back to back, beside 16 sessions "
                  "sending `exists` (zkbench, 4 s); readers' latency alone and beside it:", "",
                  "| znodes | target | getChildren s | calls | readers p99 alone / beside ms "
                  "| readers max alone / beside ms |", "|---|---|---|---|---|---|"]
        for r in kids:
            k = r["children"]
            lines.append(
                f"| {r['znodes']:,} | {'RingKeeper' if r['target'] == 'rk' else 'ZooKeeper'} "
                f"| {k['get_children_s']:.3f} | {k['get_children_calls']} "
                f"| {k['readers_alone_p99_ms']:.1f} / {k['readers_beside_p99_ms']:.1f} "
                f"| {k['readers_alone_max_ms']:.1f} / {k['readers_beside_max_ms']:.1f} |")
    by = {(r["znodes"], r["target"]): r for r in results}
    ratios = []
    for n in sorted({r["znodes"] for r in results}):
        rk, zk = by.get((n, "rk")), by.get((n, "zk"))
        if rk and zk:
            ratios.append(
                f"- {n:,} znodes, RingKeeper / ZooKeeper: RSS {rk['rss_mb'] / zk['rss_mb']:.2f}x, "
                f"restart after SIGTERM {rk['restart_term_s'] / zk['restart_term_s']:.2f}x, "
                f"after kill -9 {rk['restart_kill_s'] / zk['restart_kill_s']:.2f}x")
    return "\n".join(lines + [""] + ratios)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--targets", default="rk,zk")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--zk-heap", default="2g")
    ap.add_argument("--snap-count", type=int, default=100000,
                    help="snapCount of both servers (ZooKeeper's default 100000)")
    ap.add_argument("--rk-bin", default=os.path.join(ROOT, "target", "release", "ringkeeper"))
    ap.add_argument("--zkbench", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--children", action="store_true",
                    help="also time getChildren of /zkbench beside 16 reading sessions")
    ap.add_argument("--port-base", type=int, default=PORT_BASE,
                    help="RingKeeper's client port; ZooKeeper gets the next")
    ap.add_argument("--keep", action="store_true", help="keep the servers' directories")
    args = ap.parse_args()
    args.rk_bin = os.path.abspath(args.rk_bin)
    args.zkbench = os.path.abspath(args.zkbench or os.path.join(os.path.dirname(args.rk_bin), "zkbench"))
    logging.disable(logging.CRITICAL)
    out = args.out or os.path.join(
        ROOT, "perf", "results",
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-bigtree")
    os.makedirs(out, exist_ok=True)
    results = []
    failures = []
    for n in [int(s) for s in args.sizes.split(",")]:
        for t in args.targets.split(","):
            try:
                row = run_one(t, n, args, results)
                log(json.dumps({k: v for k, v in row.items() if not isinstance(v, (list, dict))}))
            except Exception as e:  # noqa: BLE001 - reported and counted as a failure
                failures.append(f"{t} {n}: {e}")
                log(f"{t} {n}: FAILED: {e}")
    with open(os.path.join(out, "results.jsonl"), "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    cmdline = " ".join(["perf/bigtree.py"] + [a for a in sys.argv[1:]])
    text = (f"# Big trees: RingKeeper beside Apache ZooKeeper\n\n"
            f"Command: `{cmdline}`\n\n"
            f"Populated with `zkbench run -w get --keys N --value-size {args.value_size} -d 1 "
            f"--warmup 0` (its setup phase); snapCount={args.snap_count} for both; ZooKeeper "
            f"with `-Xmx{args.zk_heap}`; restarts: medians "
            f"of {args.rounds} rounds, seconds from the signal to the first answered `exists` of the "
            f"last key.\n\n{table(results, args)}\n")
    if failures:
        text += "\nFailures:\n" + "\n".join(f"- {x}" for x in failures) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    print(text)
    if args.check:
        bad = list(failures)
        for r in results:
            for k in ("rss_mb", "bytes_per_znode", "restart_term_s", "restart_kill_s",
                      "snapshot_load_mb_s_term"):
                if not r.get(k) or r[k] <= 0:
                    bad.append(f"{r['target']} {r['znodes']}: {k} not measured")
            if not (r.get("all_writes_after_term") and r.get("all_writes_after_kill")):
                bad.append(f"{r['target']} {r['znodes']}: znodes missing after a restart")
            if r["target"] == "rk" and r.get("data_check") != "VALID":
                bad.append(f"rk {r['znodes']}: data check: {r.get('data_check')}")
        if bad:
            print("\n".join(["CHECK FAILED:"] + bad), file=sys.stderr)
            return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
