#!/usr/bin/env bash
# Runs the standard zkbench matrix side by side and writes a Markdown table plus the
# HTML reports under perf/results/<UTC timestamp>/.
#
#   workloads: writes (setData), reads (getData), mixed 90/10
#   load:      1x1, 16x16, 64x32 sessions x outstanding (closed loop)
#   targets:   Apache ZooKeeper standalone, Apache ZooKeeper 3-node (loopback), and
#              RingKeeper standalone when its binary answers `ruok`.
#
# Targets run one after another (never two servers loaded at once), each started in a
# temporary folder and stopped by PID at the end (also on Ctrl-C).
# Environment: CELL_S (measured seconds per cell, default 5), WARMUP_S (1), KEYS (10000),
# VALUE_SIZE (100), TARGETS (default "zk zk3 rk"), OUT (results folder).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
CELL_S=${CELL_S:-5}
WARMUP_S=${WARMUP_S:-1}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-100}
TARGETS=${TARGETS:-zk zk3 rk}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-perf/results/$stamp}
mkdir -p "$OUT"

cargo build --release --quiet --bins
ZKBENCH=${ZKBENCH:-target/release/zkbench}

tmp=$(mktemp -d)
cleanup() {
  scripts/apache-zk.sh stop "$tmp/zk" 2>/dev/null || true
  scripts/apache-zk.sh stop "$tmp/zk3" 2>/dev/null || true
  scripts/ringkeeper.sh stop "$tmp/rk" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

workloads=("writes:set" "reads:get" "mixed-90/10:mixed")
loads=("1x1" "16x16" "64x32")
results="$OUT/results.jsonl"
: >"$results"

start_target() { # name -> prints connect string, or nothing if unavailable
  case $1 in
    zk) scripts/apache-zk.sh start "$tmp/zk" 24181 >&2 && cat "$tmp/zk/connect" ;;
    zk3) scripts/apache-zk.sh start-ensemble "$tmp/zk3" 3 24880 >&2 && cat "$tmp/zk3/connect" ;;
    rk)
      if START_TIMEOUT_S=${RK_START_TIMEOUT_S:-5} scripts/ringkeeper.sh start "$tmp/rk" 25181 >&2; then
        cat "$tmp/rk/connect"
      else
        echo "compare: RingKeeper did not answer ruok; its column stays empty" >&2
        scripts/ringkeeper.sh stop "$tmp/rk" >&2 || true
      fi
      ;;
  esac
}

# Waits until every server of a connect string serves (`srvr` names a Mode): an
# ensemble answers `ruok` before it has elected a leader.
wait_serving() { scripts/ringkeeper.sh wait-serving "$1"; }

stop_target() {
  case $1 in
    zk | zk3) scripts/apache-zk.sh stop "$tmp/$1" ;;
    rk) scripts/ringkeeper.sh stop "$tmp/rk" ;;
  esac
}

label() {
  case $1 in zk) echo "ZooKeeper standalone" ;; zk3) echo "ZooKeeper 3-node" ;; rk) echo "RingKeeper" ;; esac
}

for t in $TARGETS; do
  conn=$(start_target "$t" || true)
  [ -n "$conn" ] || continue
  wait_serving "$conn"
  # Populate the tree once per target (unmeasured), retrying while it settles.
  for ((try = 0; try < 10; try++)); do
    "$ZKBENCH" run -q -c "$conn" -w get -s 1 -k 1 --duration 0.2 --warmup 0 --keys "$KEYS" \
      --value-size "$VALUE_SIZE" >/dev/null && break
    sleep 1
  done
  for wl in "${workloads[@]}"; do
    name=${wl%%:*}; w=${wl#*:}
    for l in "${loads[@]}"; do
      s=${l%x*}; k=${l#*x}
      cell="$t-${name//\//-}-$l"
      echo "compare: $(label "$t") $name $l" >&2
      line=$("$ZKBENCH" run -q --json -c "$conn" -w "$w" --read-ratio 0.9 -s "$s" -k "$k" \
        --duration "$CELL_S" --warmup "$WARMUP_S" --keys "$KEYS" --value-size "$VALUE_SIZE" \
        --label "$(label "$t")" --no-setup \
        --html "$OUT/$cell.html" --hgrm "$OUT/$cell.hgrm" || echo '{"failed":true}')
      echo "{\"target\":\"$t\",\"cell\":\"$name $l\",\"run\":$line}" >>"$results"
    done
  done
  stop_target "$t"
done

python3 - "$results" "$OUT/results.md" "$CELL_S" "$TARGETS" <<'PY'
import json, sys, platform, os
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
targets = sys.argv[4].split()
names = {"zk": "ZooKeeper standalone", "zk3": "ZooKeeper 3-node", "rk": "RingKeeper"}
cells = []
for r in rows:
    if r["cell"] not in cells:
        cells.append(r["cell"])
by = {(r["target"], r["cell"]): r["run"] for r in rows}
out = []
out.append(f"zkbench matrix, closed loop, {sys.argv[3]} s per cell; cell = ops/s, p50 / p99 ms")
out.append(f"machine: {platform.machine()}, {os.cpu_count()} cpus, kernel {platform.release()}")
out.append("")
out.append("| workload | load | " + " | ".join(names[t] for t in targets) + " |")
out.append("|---|---|" + "---|" * len(targets))
for c in cells:
    w, l = c.rsplit(" ", 1)
    vals = []
    for t in targets:
        run = by.get((t, c))
        if run is None:
            vals.append("n/a")
        elif run.get("failed"):
            vals.append("failed")
        else:
            e = run.get("errors_total", 0)
            vals.append(f"{run['ops_per_sec']:.0f}, {run['p50_ms']:.2f} / {run['p99_ms']:.2f}" + (f" ({e} err)" if e else ""))
    out.append(f"| {w} | {l} | " + " | ".join(vals) + " |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
echo "compare: results in $OUT" >&2
