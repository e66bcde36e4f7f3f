#!/usr/bin/env python3
"""What watching a server costs it: the same zkbench write load on a standalone
RingKeeper with load attribution off, on (the default), and on while /metrics is scraped
10 times a second. Every round runs each mode once, on a fresh server, in an order
that rotates from round to round (A B C, B C A, C A B, ...) so that drift in the machine
and the position in a round hit each mode alike. The table gives medians over the
rounds of write throughput, p99 latency and the server's CPU time per write (zkbench
reads it from /proc/<pid>/task/*/stat), and the median over rounds of each round's own
ratio to "attribution off" in that round: the paired figure, which a slow minute of the
machine moves less than the ratio of two medians.

Usage: perf/observe_cost.py [--rounds 3] [--seconds 10] [--out DIR]
                            [--rk-bin target/release/ringkeeper] [--zkbench target/release/zkbench]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MODES = {
    "attribution off": ["loadAttribution=no"],
    "attribution on": ["loadAttribution=yes"],
    "attribution on, scraped 10/s": ["loadAttribution=yes"],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--outstanding", type=int, default=16)
    ap.add_argument("--port", type=int, default=24781)
    ap.add_argument("--out")
    ap.add_argument("--rk-bin", default=os.path.join(REPO, "target", "release", "ringkeeper"))
    ap.add_argument("--zkbench", default=os.path.join(REPO, "target", "release", "zkbench"))
    a = ap.parse_args()
    metrics_port = a.port + 1
    results = {m: [] for m in MODES}
    names = list(MODES)
    for r in range(a.rounds):
        for k in range(len(names)):
            mode = names[(r + k) % len(names)]
            cfg = MODES[mode]
            d = tempfile.mkdtemp(prefix="rk-observe-cost-", dir=os.environ.get("RK_TMP"))
            extra = cfg + [
                "metricsProvider.className=org.apache.zookeeper.metrics.prometheus."
                "PrometheusMetricsProvider",
                "metricsProvider.httpHost=127.0.0.1", f"metricsProvider.httpPort={metrics_port}",
                "admin.enableServer=false", "4lw.commands.whitelist=*"]
            env = dict(os.environ, RINGKEEPER_BIN=a.rk_bin, RK_EXTRA_CFG="\n".join(extra))
            script = os.path.join(REPO, "scripts", "ringkeeper.sh")
            subprocess.run([script, "start", d, str(a.port)], check=True, env=env, timeout=60)
            stop = threading.Event()
            scrapes = [0]

            def scrape():
                while not stop.wait(0.1):
                    try:
                        with urllib.request.urlopen(
                                f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
                            resp.read()
                        scrapes[0] += 1
                    except OSError:
                        pass

            t = None
            if "scraped" in mode:
                t = threading.Thread(target=scrape, daemon=True)
                t.start()
            try:
                out = subprocess.run(
                    [a.zkbench, "run", "-c", f"127.0.0.1:{a.port}", "-w", "set",
                     "-s", str(a.sessions), "-k", str(a.outstanding), "-d", str(a.seconds),
                     "--warmup", "2", "--keys", "10000", "--json", "-q"],
                    check=True, capture_output=True, text=True, timeout=a.seconds + 120)
            finally:
                stop.set()
                if t:
                    t.join(timeout=10)
                subprocess.run([script, "stop", d], env=env, timeout=60)
                shutil.rmtree(d, ignore_errors=True)
            j = json.loads(out.stdout.strip().splitlines()[-1])
            row = {"ops_per_sec": j["ops_per_sec"], "p99_us": j["p99_ms"] * 1000,
                   "cpu_us_per_op": j.get("server_cpu_us_per_op"), "scrapes": scrapes[0]}
            results[mode].append(row)
            print(f"round {r + 1} {mode}: {row}", file=sys.stderr)
    lines = [f"zkbench run -w set -s {a.sessions} -k {a.outstanding} -d {a.seconds} "
             f"--keys 10000, standalone, medians of {a.rounds} rounds", "",
             "| mode | writes/s | p99 (us) | server CPU (us/write) | writes/s vs off, "
             "paired | CPU/write vs off, paired |", "|---|---|---|---|---|---|"]
    off = results["attribution off"]
    for mode, rows in results.items():
        ops = statistics.median(x["ops_per_sec"] for x in rows)
        p99 = statistics.median(x["p99_us"] or 0 for x in rows)
        cpu = statistics.median(x["cpu_us_per_op"] or 0 for x in rows)
        d_ops = statistics.median(x["ops_per_sec"] / o["ops_per_sec"] - 1
                                  for x, o in zip(rows, off))
        d_cpu = statistics.median((x["cpu_us_per_op"] or 0) / (o["cpu_us_per_op"] or 1) - 1
                                  for x, o in zip(rows, off))
        lines.append(f"| {mode} | {ops:,.0f} | {p99:,.0f} | {cpu:.2f} | "
                     f"{d_ops * 100:+.1f}% | {d_cpu * 100:+.1f}% |")
    lines.append("")
    lines.append("Every round: " + json.dumps(results))
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "results.md"), "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
