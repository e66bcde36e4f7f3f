#!/bin/bash
# What load attribution costs a standalone server, as the share of its CPU samples spent
# inside the counting (issue 13: counting must cost <= 3% of write throughput).
#
# Throughput A/B runs of attribution on against off (perf/observe_cost.py) are dominated
# by this machine's round-to-round noise (a fresh server's rounds land at ~240k or ~300k
# writes/s, whichever mode runs), so this measures the cost inside one server instead:
# a release server with `loadAttribution=yes` under `zkbench run -w set -s 16 -k 16`,
# `perf record --call-graph dwarf` on its threads for 5 s of the window, and the
# inclusive ("children") share of the counting's entry points: `Observe::request` (which
# calls the path sketch and the namespace summaries), `Observe::write_answered`,
# `Observe::read_answered`, `Observe::closed` and `Observe::fold`. On a server whose
# CPU bounds its throughput, that share bounds what counting costs in writes/s.
#
# Usage: perf/observe-share.sh [ROUNDS (3)] [OUT_DIR]
# Needs perf (linux-perf) and a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
out=${2:-perf/results/$(date -u +%Y%m%dT%H%MZ)-observe-share}
port=${PORT:-24391}
mkdir -p "$out"
summary="$out/summary.txt"
{
  echo "# load attribution's share of a standalone server's CPU samples"
  echo "command: perf/observe-share.sh $rounds; zkbench run -w set -s 16 -k 16 -d 12 --keys 10000,"
  echo "perf record -F 1999 --call-graph dwarf for 5 s of the window; $(nproc) cores"
} >"$summary"
for r in $(seq "$rounds"); do
  d=$(mktemp -d "${TMPDIR:-/tmp}/rk-observe-share.XXXX")
  RK_EXTRA_CFG="loadAttribution=yes" scripts/ringkeeper.sh start "$d" "$port" >/dev/null
  pid=$(cat "$d/pid")
  target/release/zkbench run -c "127.0.0.1:$port" -w set -s 16 -k 16 -d 12 --warmup 2 \
    --keys 10000 -q --json >"$d/bench.json" 2>&1 &
  bench=$!
  sleep 5
  perf record -F 1999 --call-graph dwarf,16384 -p "$pid" -o "$d/perf.data" -- sleep 5 \
    >/dev/null 2>&1 || true
  wait "$bench" || true
  scripts/ringkeeper.sh stop "$d" >/dev/null
  perf report -i "$d/perf.data" --children --stdio --no-demangle -g none --percent-limit 0 \
    2>/dev/null >"$d/report.txt"
  python3 - "$d/report.txt" "$d/bench.json" "$r" >>"$summary" <<'EOF'
import json, re, sys
report, bench, r = sys.argv[1:]
# The counting's entry points: mangled names' path components (`7Observe7request`).
tops = ["7Observe7request", "7Observe14write_answered", "7Observe13read_answered",
        "7Observe6closed", "7Observe4fold"]
share = {}
for line in open(report):
    if "(inlined)" in line:
        continue
    m = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\S+\s+\S+\s+\[\.\]\s+(\S+)", line)
    if m:
        for t in tops:
            if t in m.group(2):
                share[t] = share.get(t, 0.0) + float(m.group(1))
j = json.loads(open(bench).read().strip().splitlines()[-1])
if not share:
    # perf recorded nothing of the server (or its report failed): not a 0% round.
    print(f"round {r}: no samples of the counting's entry points (perf record failed?); "
          f"not counted")
    sys.exit(0)
parts = ", ".join(f"{k.split('7Observe')[1].lstrip('0123456789')} {v:.2f}%"
                  for k, v in sorted(share.items()))
print(f"round {r}: counting {sum(share.values()):.2f}% of the server's CPU samples ({parts}); "
      f"{j['ops_per_sec']:.0f} writes/s, {j.get('server_cpu_us_per_op')} us of server CPU "
      f"per write")
EOF
  rm -rf "$d"
done
python3 - "$summary" >>"$summary" <<'EOF'
import re, statistics, sys
v = [float(m.group(1)) for m in re.finditer(r"counting ([\d.]+)%", open(sys.argv[1]).read())]
print(f"median over {len(v)} rounds: {statistics.median(v):.2f}% (budget 3%)")
EOF
cat "$summary"
