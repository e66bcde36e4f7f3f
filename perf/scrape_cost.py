#!/usr/bin/env python3
"""What a Prometheus scrape of /metrics costs a standalone RingKeeper, in one command.

1. Per scrape, idle and under load: N scrapes back to back (one connection each, as
   Prometheus makes them); the server's CPU per scrape split by thread (the HTTP
   thread, the shard loops, the rest), from the nanosecond
   on-CPU counters of /proc/<pid>/task/*/schedstat (shard-0's loop also runs the
   sequencer core and the log), and the response's size.
   Back to back (mostly answered from the server's 1 s cache) and 1.05 s apart (each
   rendered anew; less the CPU of a quiet span as long, without scrapes, measured
   just before: the loops' own ticks). Under load the shard and other columns include the load's own
   work: read the HTTP column, and the A/B table below, for what scraping adds.
2. Under load, A/B: the same zkbench write load with no scrapes and with 10 scrapes a
   second, alternating round by round (A B A B ...) so that drift in a shared machine
   hits both alike; medians over the rounds of writes/s, p99 and server CPU per write.

Usage: perf/scrape_cost.py [--rounds 5] [--seconds 8] [--scrapes 1000] [--out DIR]
                           [--rk-bin target/release/ringkeeper]
                           [--zkbench target/release/zkbench]
Writes results.md (and raw.json) to --out when given.
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
SCRIPT = os.path.join(REPO, "scripts", "ringkeeper.sh")


def thread_cpu_ns(pid):
    """{tid: (thread group, ns on CPU)} over the server's threads. The first shard's
    loop (shard-0) also runs the sequencer core and the log."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
        except OSError:
            continue
        if comm.endswith("-http"):
            g = "http"
        elif comm.startswith("shard-"):
            g = "shards"
        else:
            g = "other"
        out[tid] = (g, ns)
    return out


def cpu_delta(before, after):
    """ns on CPU by thread group between two samples; a thread that started in between
    counts from 0, one that ended is left out."""
    d = {"http": 0, "shards": 0, "other": 0}
    for tid, (g, ns) in after.items():
        d[g] += ns - before.get(tid, (g, 0))[1]
    return d


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return len(resp.read())


class Server:
    def __init__(self, a):
        self.a = a
        self.dir = tempfile.mkdtemp(prefix="rk-scrape-cost-", dir=os.environ.get("RK_TMP"))
        self.url = f"http://127.0.0.1:{a.port + 1}/metrics"

    def __enter__(self):
        extra = [
            "metricsProvider.className=org.apache.zookeeper.metrics.prometheus."
            "PrometheusMetricsProvider",
            "metricsProvider.httpHost=127.0.0.1", f"metricsProvider.httpPort={self.a.port + 1}",
            "admin.enableServer=false"]
        self.env = dict(os.environ, RINGKEEPER_BIN=self.a.rk_bin, RK_EXTRA_CFG="\n".join(extra))
        subprocess.run([SCRIPT, "start", self.dir, str(self.a.port)], check=True,
                       env=self.env, timeout=60)
        with open(os.path.join(self.dir, "pid")) as f:
            self.pid = int(f.read().strip())
        return self

    def __exit__(self, *exc):
        subprocess.run([SCRIPT, "stop", self.dir], env=self.env, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)

    def bench(self, seconds, **kw):
        return subprocess.Popen(
            [self.a.zkbench, "run", "-c", f"127.0.0.1:{self.a.port}", "-w", "set",
             "-s", str(self.a.sessions), "-k", str(self.a.outstanding), "-d", str(seconds),
             "--warmup", "2", "--keys", "10000", "--json", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def per_scrape(a, loaded, count, interval):
    """CPU per scrape by thread group, bytes, and scrape latency: `count` scrapes,
    `interval` seconds apart (0: back to back)."""
    with Server(a) as s:
        scrape(s.url)  # first scrape: lazily built state
        bench = None
        if loaded:
            # Long enough to cover the scrapes; stopped (by its PID) once they are done.
            bench = s.bench(3600)
            time.sleep(3)
        quiet = None
        if interval:
            # The loops' own ticks over the same span without scrapes: subtracted, so
            # the table shows what the scrapes added.
            q0 = thread_cpu_ns(s.pid)
            time.sleep(count * interval)
            quiet = cpu_delta(q0, thread_cpu_ns(s.pid))
        before = thread_cpu_ns(s.pid)
        lat = []
        size = 0
        t_end = time.monotonic() + a.per_scrape_limit_s
        n = 0
        while n < count and time.monotonic() < t_end:
            t0 = time.monotonic()
            size = scrape(s.url)
            lat.append(time.monotonic() - t0)
            n += 1
            if interval:
                time.sleep(max(0.0, interval - (time.monotonic() - t0)))
        after = thread_cpu_ns(s.pid)
        if bench:
            bench.kill()
            bench.wait()
    d = cpu_delta(before, after)
    if quiet:
        d = {g: ns - quiet.get(g, 0) for g, ns in d.items()}
    cpu = {g: ns / n / 1000 for g, ns in d.items()}
    lat.sort()
    return {"scrapes": n, "bytes": size, "cpu_us_per_scrape": cpu,
            "latency_ms_p50": lat[len(lat) // 2] * 1000,
            "latency_ms_p99": lat[min(len(lat) - 1, len(lat) * 99 // 100)] * 1000}


def ab_round(a, scraped):
    with Server(a) as s:
        stop = threading.Event()
        count = [0]

        def loop():
            # 10 a second, on a fixed schedule: a slow scrape does not push the next.
            nxt = time.monotonic()
            while not stop.is_set():
                nxt += 0.1
                try:
                    scrape(s.url)
                    count[0] += 1
                except OSError:
                    pass
                stop.wait(max(0.0, nxt - time.monotonic()))

        t = threading.Thread(target=loop, daemon=True) if scraped else None
        if t:
            t.start()
        try:
            p = s.bench(a.seconds)
            out, err = p.communicate(timeout=a.seconds + 120)
        finally:
            stop.set()
            if t:
                t.join(timeout=15)
        if p.returncode != 0:
            raise SystemExit(f"zkbench failed: {err}")
    j = json.loads(out.strip().splitlines()[-1])
    return {"ops_per_sec": j["ops_per_sec"], "p99_us": j["p99_ms"] * 1000,
            "cpu_us_per_op": j.get("server_cpu_us_per_op"), "scrapes": count[0]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--scrapes", type=int, default=1000)
    ap.add_argument("--renders", type=int, default=20,
                    help="scrapes 1.05 s apart (each renders anew)")
    ap.add_argument("--per-scrape-limit-s", type=float, default=60.0,
                    help="stop the back-to-back scrapes after this long")
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--outstanding", type=int, default=16)
    ap.add_argument("--port", type=int, default=24881)
    ap.add_argument("--out")
    ap.add_argument("--rk-bin", default=os.path.join(REPO, "target", "release", "ringkeeper"))
    ap.add_argument("--zkbench", default=os.path.join(REPO, "target", "release", "zkbench"))
    a = ap.parse_args()
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    # Back to back, most scrapes are answered from the server's 1 s cache; 1.05 s
    # apart, each one renders.
    raw = {}
    for loaded in (False, True):
        k = "loaded" if loaded else "idle"
        raw[f"{k}, back to back"] = per_scrape(a, loaded, a.scrapes, 0)
        raw[f"{k}, 1.05 s apart"] = per_scrape(a, loaded, a.renders, 1.05)
    print(f"per scrape: {json.dumps(raw)}", file=sys.stderr)
    modes = {"no scrapes": False, "scraped 10/s": True}
    rounds = {m: [] for m in modes}
    for r in range(a.rounds):
        for m, scraped in modes.items():
            row = ab_round(a, scraped)
            rounds[m].append(row)
            print(f"round {r + 1} {m}: {row}", file=sys.stderr)
    raw["rounds"] = rounds
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    raw["loadavg"] = {"before": load_before, "after": load_after, "cpus": os.cpu_count()}

    lines = [f"Machine: {os.cpu_count()} CPUs, load average (1/5/15 min) "
             f"{' '.join(load_before)} before, {' '.join(load_after)} after.", "",
             "## Per scrape", "",
             "| server | scrapes | bytes | http us | shards us | other us | "
             "latency p50 / p99 (ms) |", "|---|---|---|---|---|---|---|"]
    for k in [k for k in raw if k not in ("rounds", "loadavg")]:
        x = raw[k]
        c = x["cpu_us_per_scrape"]
        lines.append(f"| {k} | {x['scrapes']} | {x['bytes']:,} | {c.get('http', 0):.0f} | "
                     f"{c.get('shards', 0):.0f} | "
                     f"{c.get('other', 0):.0f} | {x['latency_ms_p50']:.2f} / "
                     f"{x['latency_ms_p99']:.2f} |")
    lines += ["", f"## Under load: zkbench run -w set -s {a.sessions} -k {a.outstanding} "
              f"-d {a.seconds} --keys 10000, medians of {a.rounds} alternating rounds", "",
              "| mode | writes/s | p99 (us) | server CPU (us/write) | scrapes | vs no scrapes |",
              "|---|---|---|---|---|---|"]
    base = statistics.median(x["ops_per_sec"] for x in rounds["no scrapes"]) if a.rounds else 0
    for m, rows in rounds.items() if a.rounds else []:
        ops = statistics.median(x["ops_per_sec"] for x in rows)
        p99 = statistics.median(x["p99_us"] or 0 for x in rows)
        cpu = statistics.median(x["cpu_us_per_op"] or 0 for x in rows)
        n = statistics.median(x["scrapes"] for x in rows)
        lines.append(f"| {m} | {ops:,.0f} | {p99:,.0f} | {cpu:.2f} | {n:.0f} | "
                     f"{(ops / base - 1) * 100:+.1f}% |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "results.md"), "w") as f:
            f.write(text)
        with open(os.path.join(a.out, "raw.json"), "w") as f:
            json.dump(raw, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
