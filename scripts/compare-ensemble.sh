#!/usr/bin/env bash
# A 3-node Apache ZooKeeper ensemble (A) beside a 3-node RingKeeper ensemble (B), both on
# loopback at once, measured alternately by `zkbench ab` (A B A B ...) so that the noise
# of a shared machine falls on both. Writes the table, the JSON medians and each target's
# HTML report of its median round under perf/results/<UTC timestamp>-ensemble/.
#
#   scripts/compare-ensemble.sh [extra zkbench ab options]
#
# Environment: WORKLOAD (set), SESSIONS (16), OUTSTANDING (16), DURATION_S (8),
# WARMUP_S (2), ROUNDS (5), KEYS (10000), VALUE_SIZE (100), NODES (3), OUT.
# Clients connect to every server of an ensemble (zkbench spreads sessions over the
# connect string), so followers forward writes as they do in production.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
WORKLOAD=${WORKLOAD:-set}
SESSIONS=${SESSIONS:-16}
OUTSTANDING=${OUTSTANDING:-16}
DURATION_S=${DURATION_S:-8}
WARMUP_S=${WARMUP_S:-2}
ROUNDS=${ROUNDS:-5}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-100}
NODES=${NODES:-3}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-perf/results/$stamp-ensemble}
mkdir -p "$OUT"

cargo build --release --quiet --bins
ZKBENCH=${ZKBENCH:-target/release/zkbench}

tmp=$(mktemp -d)
cleanup() {
  scripts/apache-zk.sh stop "$tmp/zk3" 2>/dev/null || true
  scripts/ringkeeper.sh stop "$tmp/rk3" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

scripts/apache-zk.sh start-ensemble "$tmp/zk3" "$NODES" 24880 >&2
scripts/ringkeeper.sh start-ensemble "$tmp/rk3" "$NODES" 25880 >&2
a=$(cat "$tmp/zk3/connect")
b=$(cat "$tmp/rk3/connect")

# An ensemble answers `ruok` before it elects; wait until every server names a Mode.
wait_serving() { scripts/ringkeeper.sh wait-serving "$1"; }
wait_serving "$a"
wait_serving "$b"

{
  echo "# zkbench ab: $NODES-node Apache ZooKeeper (A) vs $NODES-node RingKeeper (B)"
  echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores; workload $WORKLOAD," \
    "$SESSIONS sessions x $OUTSTANDING outstanding, ${DURATION_S}s x $ROUNDS rounds"
  echo "# A: $a"
  echo "# B: $b"
} | tee "$OUT/table.txt"
"$ZKBENCH" ab -w "$WORKLOAD" -s "$SESSIONS" -k "$OUTSTANDING" -d "$DURATION_S" \
  --warmup "$WARMUP_S" --rounds "$ROUNDS" --keys "$KEYS" --value-size "$VALUE_SIZE" \
  --a "$a" --b "$b" --json --html "$OUT/report.html" "$@" | tee -a "$OUT/table.txt"
echo "compare-ensemble: results in $OUT" >&2
