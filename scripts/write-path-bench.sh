#!/usr/bin/env bash
# The write-path benchmarks, each beside Apache ZooKeeper in the same run, with what the
# servers spend per write (CPU microseconds and context switches per op, summed over
# every thread of every server process, from /proc):
#
#   1. standalone, setData 16x16 and 1x1            zkbench ab (ZooKeeper A, RingKeeper B)
#   2. 3 nodes, setData 16x16 closed loop            zkbench ab, clients on every server
#   3. 3 nodes, open loop at a rate ZooKeeper holds  zkbench ab --rate (OPEN_RATE, or 70%
#                                                    of ZooKeeper's closed-loop median)
#   4. 3 nodes, setData 1x1                          zkbench ab
#   5. 3 nodes, the official Java client as the load scripts/java-load.py, alternating
#   6. 3 nodes and standalone, each request its own  zkbench run --no-coalesce (RingKeeper)
#      write (as real clients frame them)
#   7. steps 2 and 3 again with RingKeeper's servers at logSyncIntervalMicros=SYNC_INTERVAL_US
#      (1000): the setting for servers whose disk stalls under frequent synced writes, as
#      here, where the three servers share one disk
#
# Results (tables, JSON lines) go to perf/results/<UTC timestamp>-write-path/.
# Environment: ROUNDS (5), DURATION_S (8), WARMUP_S (2), JAVA_ROUNDS (3), OPEN_RATE,
# STEPS (1-7, e.g. "1 2" to run some), SYNC_INTERVAL_US (1000), OUT.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
ROUNDS=${ROUNDS:-5}
DURATION_S=${DURATION_S:-8}
WARMUP_S=${WARMUP_S:-2}
JAVA_ROUNDS=${JAVA_ROUNDS:-3}
STEPS=${STEPS:-"1 2 3 4 5 6 7"}
SYNC_INTERVAL_US=${SYNC_INTERVAL_US:-1000}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-perf/results/$stamp-write-path}
mkdir -p "$OUT"

cargo build --release --quiet --bins
ZKBENCH=target/release/zkbench
tmp=$(mktemp -d)
cleanup() {
  scripts/apache-zk.sh stop "$tmp/zk1" 2>/dev/null || true
  scripts/ringkeeper.sh stop "$tmp/rk1" 2>/dev/null || true
  scripts/apache-zk.sh stop "$tmp/zk3" 2>/dev/null || true
  scripts/ringkeeper.sh stop "$tmp/rk3" 2>/dev/null || true
  scripts/ringkeeper.sh stop "$tmp/rk3s" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

has() { [[ " $STEPS " == *" $1 "* ]]; }
header() {
  { echo; echo "## $*"; echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores"; } | tee -a "$OUT/summary.txt"
}
ab() { # title a b args...
  local title=$1 a=$2 b=$3; shift 3
  header "$title"
  "$ZKBENCH" ab --a "$a" --b "$b" --rounds "$ROUNDS" -d "$DURATION_S" --warmup "$WARMUP_S" -q "$@" \
    | tee -a "$OUT/summary.txt"
}
ab_json() { # title a b json-file args...: ab, its JSON lines kept in json-file only
  local title=$1 a=$2 b=$3 json=$4; shift 4
  header "$title"
  "$ZKBENCH" ab --a "$a" --b "$b" --rounds "$ROUNDS" -d "$DURATION_S" --warmup "$WARMUP_S" -q \
    --json "$@" >"$json" || true
  grep -v '^{' "$json" | tee -a "$OUT/summary.txt"
}

if has 1 || has 6; then
  scripts/apache-zk.sh start "$tmp/zk1" 24181 >&2
  scripts/ringkeeper.sh start "$tmp/rk1" 24182 >&2
  a=127.0.0.1:24181 b=127.0.0.1:24182
  if has 1; then
    ab "standalone: setData 16x16 (A = ZooKeeper, B = RingKeeper)" "$a" "$b" -w set -s 16 -k 16
    ab "standalone: setData 1x1 (A = ZooKeeper, B = RingKeeper)" "$a" "$b" -w set -s 1 -k 1
  fi
  if has 6; then
    header "standalone: setData 16x16, each request its own write (RingKeeper)"
    for r in $(seq "$ROUNDS"); do
      "$ZKBENCH" run -c "$b" -w set -s 16 -k 16 -d "$DURATION_S" --warmup "$WARMUP_S" -q --no-setup \
        --no-coalesce --json | tee -a "$OUT/no-coalesce-standalone.jsonl" >/dev/null
    done
    python3 - "$OUT/no-coalesce-standalone.jsonl" <<'PY' | tee -a "$OUT/summary.txt"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for k in ("ops_per_sec", "p50_ms", "p99_ms", "server_cpu_us_per_op", "server_vcs_per_op"):
    v = [r[k] for r in rows]
    print(f"{k:>22}: median {statistics.median(v):.3f}  rounds {v}")
PY
  fi
  scripts/apache-zk.sh stop "$tmp/zk1" >&2
  scripts/ringkeeper.sh stop "$tmp/rk1" >&2
fi

# The open loop's rate: OPEN_RATE, else 70% of ZooKeeper's closed-loop median (step 2).
open_rate() {
  local rate=${OPEN_RATE:-}
  if [ -z "$rate" ] && [ -s "$OUT/ensemble-16x16.json" ]; then
    rate=$(python3 -c "
import json,sys
for l in open('$OUT/ensemble-16x16.json'):
    if l.startswith('{'):
        j=json.loads(l)
        if 'median_a_ops' in j: print(int(0.7*j['median_a_ops'])); break
" 2>/dev/null || true)
  fi
  echo "${rate:-15000}"
}

if has 2 || has 3 || has 4 || has 5 || has 6 || has 7; then
  scripts/apache-zk.sh start-ensemble "$tmp/zk3" 3 24880 >&2
  scripts/ringkeeper.sh start-ensemble "$tmp/rk3" 3 25880 >&2
  a=$(cat "$tmp/zk3/connect") b=$(cat "$tmp/rk3/connect")
  scripts/ringkeeper.sh wait-serving "$a"
  scripts/ringkeeper.sh wait-serving "$b"
  if has 2; then
    ab_json "3 nodes: setData 16x16, clients on every server (A = ZooKeeper, B = RingKeeper)" \
      "$a" "$b" "$OUT/ensemble-16x16.json" -w set -s 16 -k 16
  fi
  if has 3; then
    rate=$(open_rate)
    ab "3 nodes: open loop at $rate writes/s (70% of ZooKeeper's closed loop), 16 sessions" "$a" "$b" \
      -w set -s 16 --rate "$rate"
  fi
  if has 4; then
    ab "3 nodes: setData 1x1 (A = ZooKeeper, B = RingKeeper)" "$a" "$b" -w set -s 1 -k 1
  fi
  if has 5; then
    header "3 nodes: the official Java client, 16 sessions x 16 async setData, pinned to every server"
    for r in $(seq "$JAVA_ROUNDS"); do
      python3 scripts/java-load.py "$a" --label zookeeper --warmup "$WARMUP_S" --duration "$DURATION_S" \
        | tee -a "$OUT/java-load.jsonl"
      python3 scripts/java-load.py "$b" --label ringkeeper --warmup "$WARMUP_S" --duration "$DURATION_S" \
        | tee -a "$OUT/java-load.jsonl"
    done
    python3 - "$OUT/java-load.jsonl" <<'PY' | tee -a "$OUT/summary.txt"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for who in ("zookeeper", "ringkeeper"):
    rs = [r for r in rows if r["label"] == who]
    for k in ("ops_per_sec", "p50_ms", "p99_9_ms", "server_cpu_us_per_op", "server_vcs_per_op"):
        v = [r[k] for r in rs]
        spread = (max(v) - min(v)) / statistics.median(v) if statistics.median(v) else 0
        print(f"{who:>10} {k:>22}: median {statistics.median(v):10.3f}  spread {spread:6.1%}  rounds {v}")
PY
  fi
  if has 6; then
    header "3 nodes: setData 16x16, each request its own write (RingKeeper)"
    for r in $(seq "$ROUNDS"); do
      "$ZKBENCH" run -c "$b" -w set -s 16 -k 16 -d "$DURATION_S" --warmup "$WARMUP_S" -q --no-setup \
        --no-coalesce --json | tee -a "$OUT/no-coalesce-ensemble.jsonl" >/dev/null
    done
    python3 - "$OUT/no-coalesce-ensemble.jsonl" <<'PY' | tee -a "$OUT/summary.txt"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for k in ("ops_per_sec", "p50_ms", "p99_ms", "server_cpu_us_per_op", "server_vcs_per_op"):
    v = [r[k] for r in rows]
    print(f"{k:>22}: median {statistics.median(v):.3f}  rounds {v}")
PY
  fi
  if has 7; then
    scripts/ringkeeper.sh stop "$tmp/rk3" >&2
    RK_EXTRA_CFG="logSyncIntervalMicros=$SYNC_INTERVAL_US" \
      scripts/ringkeeper.sh start-ensemble "$tmp/rk3s" 3 26880 >&2
    b=$(cat "$tmp/rk3s/connect")
    scripts/ringkeeper.sh wait-serving "$b"
    ab "3 nodes: setData 16x16, RingKeeper at logSyncIntervalMicros=$SYNC_INTERVAL_US (A = ZooKeeper, B = RingKeeper)" \
      "$a" "$b" -w set -s 16 -k 16
    rate=$(open_rate)
    ab "3 nodes: open loop at $rate writes/s, RingKeeper at logSyncIntervalMicros=$SYNC_INTERVAL_US, 16 sessions" \
      "$a" "$b" -w set -s 16 --rate "$rate"
  fi
fi
echo "write-path-bench: results in $OUT" >&2
