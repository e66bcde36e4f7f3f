#!/usr/bin/env bash
# Records a CPU profile of a RingKeeper server under a zkbench load and renders a flame
# graph (perf + inferno), plus the per-stage write latency the server measured during
# the same run (mntr zk_rk_* keys).
#
# Usage: scripts/flamegraph.sh [OUT_DIR] [-- zkbench run args]
#   default load: setData, 16 sessions x 16 outstanding, 12 s (profile the middle 8 s)
# Needs: perf (Debian linux-perf), inferno (cargo install inferno). Installs neither
# silently: it says what is missing.
# Writes OUT_DIR/flame.svg, OUT_DIR/stages.txt, OUT_DIR/zkbench.txt
# (default OUT_DIR perf/results/flame-<UTC timestamp>).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-perf/results/flame-$(date -u +%Y%m%dT%H%M%SZ)}
shift || true
[ "${1:-}" = "--" ] && shift
load=("$@")
[ ${#load[@]} -gt 0 ] || load=(-w set -s 16 -k 16 -d 12 --warmup 1)

command -v perf >/dev/null || { echo "perf not found: apt-get install linux-perf"; exit 1; }
command -v inferno-flamegraph >/dev/null || { echo "inferno not found: cargo install inferno"; exit 1; }
mkdir -p "$out"
cargo build --release --quiet --bins
tmp=$(mktemp -d)
trap 'scripts/ringkeeper.sh stop "$tmp/rk" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
port=$((30000 + RANDOM % 20000))
RINGKEEPER_BIN=target/release/ringkeeper scripts/ringkeeper.sh start "$tmp/rk" "$port" >&2
pid=$(cat "$tmp/rk/pid")

target/release/zkbench run -c "127.0.0.1:$port" "${load[@]}" >"$out/zkbench.txt" 2>/dev/null &
bench=$!
sleep 3
perf record -F 999 -g -p "$pid" -o "$tmp/perf.data" -- sleep 8 >/dev/null 2>&1
wait "$bench" || true
perf script -i "$tmp/perf.data" 2>/dev/null | inferno-collapse-perf >"$tmp/folded"
inferno-flamegraph --title "RingKeeper: zkbench ${load[*]}" <"$tmp/folded" >"$out/flame.svg"
python3 - "$port" >"$out/stages.txt" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"mntr")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
for line in data.decode().splitlines():
    if line.startswith("zk_rk_"):
        print(line)
PY
# The hottest frames by self time, for a quick read without opening the SVG.
perf report -i "$tmp/perf.data" --no-children --sort sym --stdio 2>/dev/null \
  | grep -E '^\s+[0-9]' | head -25 >"$out/top.txt" || true
echo "flame graph: $out/flame.svg; stages: $out/stages.txt; load: $out/zkbench.txt; top: $out/top.txt"
