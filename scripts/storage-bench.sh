#!/usr/bin/env bash
# The storage benchmarks of docs/storage-benchmarks.md, RingKeeper beside Apache
# ZooKeeper 3.8 in the same run, both with their data directories on the same disk
# (a temporary folder) and syncing on (ZooKeeper's forceSync=yes, our O_DSYNC log):
#
#   write   zkbench ab setData 16x16 and 64x32: throughput and p99, rounds A B A B ...
#   recover 1M znodes of 100 bytes (zkbench setup), then restarts: seconds from launch
#           to the first answered request (scripts/time-to-serve.py), RECOVER_ROUNDS times
#   snap    setData 16x16 with snapCount=SNAP_HIGH (no snapshot in the run) and with
#           snapCount=SNAP_LOW (snapshots of the 1M-znode tree during the run): p99 of
#           both, and the snapshot durations each server reports (our log line; ZooKeeper's
#           mntr snapshottime)
#
# Servers are started in a temporary folder and stopped by PID (also on Ctrl-C).
# Environment: PHASES (default "write recover snap"), CELL_S (measured seconds per round,
# default 5), ROUNDS (3), RECOVER_ROUNDS (3), ZNODES (1000000), SNAP_LOW (20000),
# SNAP_HIGH (10000000), ZK_HEAP (default here 3g: 1M znodes need more than 512m).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
PHASES=${PHASES:-write recover snap}
CELL_S=${CELL_S:-5}
ROUNDS=${ROUNDS:-3}
RECOVER_ROUNDS=${RECOVER_ROUNDS:-3}
ZNODES=${ZNODES:-1000000}
SNAP_LOW=${SNAP_LOW:-20000}
SNAP_HIGH=${SNAP_HIGH:-10000000}
export ZK_HEAP=${ZK_HEAP:-3g}
ZK_PORT=22181
RK_PORT=22182
ZK=127.0.0.1:$ZK_PORT
RK=127.0.0.1:$RK_PORT

cargo build --release --quiet --bins
ZKBENCH=target/release/zkbench

tmp=$(mktemp -d)
cleanup() {
  scripts/apache-zk.sh stop "$tmp/zk" 2>/dev/null || true
  scripts/ringkeeper.sh stop "$tmp/rk" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

start_both() { # extra zoo.cfg lines for both
  ZK_EXTRA_CFG="${1:-}" scripts/apache-zk.sh start "$tmp/zk" $ZK_PORT
  RK_EXTRA_CFG="${1:-}" scripts/ringkeeper.sh start "$tmp/rk" $RK_PORT
  # ZooKeeper answers ruok while it still loads a large tree: wait until it serves.
  scripts/apache-zk.sh wait-serving "$ZK,$RK"
}
stop_both() {
  scripts/apache-zk.sh stop "$tmp/zk"
  scripts/ringkeeper.sh stop "$tmp/rk"
}
fresh() { stop_both 2>/dev/null || true; rm -rf "$tmp/zk" "$tmp/rk"; }

echo "# machine: nproc $(nproc), kernel $(uname -r), data on $(df --output=source,fstype "$tmp" | tail -1)"
echo "# java: $(java -version 2>&1 | head -1)"

fourlw() { # word port -> the server's answer
  python3 - "$1" "$2" <<'PY' 2>/dev/null || true
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=5)
s.sendall(sys.argv[1].encode()); s.shutdown(socket.SHUT_WR)
out = b""
while chunk := s.recv(65536):
    out += chunk
print(out.decode(), end="")
PY
}

ab() { # label workload args...
  local label=$1; shift
  echo "## $label"
  $ZKBENCH ab --a "$ZK" --b "$RK" -d "$CELL_S" --warmup 1 --rounds "$ROUNDS" -q "$@" 2>&1 | tail -n $((ROUNDS + 2))
}

for phase in $PHASES; do
  case $phase in
    write)
      fresh
      start_both
      echo "# write: A = Apache ZooKeeper 3.8, B = RingKeeper; latency in ms"
      ab "setData 16x16" -w set -s 16 -k 16
      ab "setData 64x32" -w set -s 64 -k 32
      stop_both
      ;;
    recover)
      fresh
      start_both
      echo "# recover: populating $ZNODES znodes of 100 bytes in each"
      for t in "$ZK" "$RK"; do
        s=$(date +%s.%N)
        $ZKBENCH run -c "$t" -w get --keys "$ZNODES" --value-size 100 -d 1 --warmup 0 -q >/dev/null
        echo "populate $t: $(echo "$(date +%s.%N) - $s" | bc) s"
      done
      stop_both
      last=$(printf '/zkbench/k%010d' $((ZNODES - 1)))
      for r in $(seq "$RECOVER_ROUNDS"); do
        zk_s=$(python3 scripts/time-to-serve.py 127.0.0.1 $ZK_PORT "$last" 300 -- scripts/apache-zk.sh start "$tmp/zk" $ZK_PORT)
        zk_load=$(fourlw mntr $ZK_PORT | grep -E 'startup_(snap|txns)_load_time_sum|znode_count' | tr '\n' ' ' || true)
        scripts/apache-zk.sh stop "$tmp/zk"
        rk_s=$(python3 scripts/time-to-serve.py 127.0.0.1 $RK_PORT "$last" 300 -- scripts/ringkeeper.sh start "$tmp/rk" $RK_PORT)
        scripts/ringkeeper.sh stop "$tmp/rk"
        echo "recover round $r: zookeeper ${zk_s} s, ringkeeper ${rk_s} s  ($zk_load)"
      done
      du -sh "$tmp/zk/data" "$tmp/rk/data"
      ;;
    snap)
      # Uses the 1M-znode data directories the recover phase left.
      [ -d "$tmp/rk/data" ] || { echo "snap needs the recover phase first"; exit 2; }
      for sc in "$SNAP_HIGH" "$SNAP_LOW"; do
        start_both "snapCount=$sc"
        ab "setData 16x16, $ZNODES znodes, snapCount=$sc" -w set -s 16 -k 16 --keys "$ZNODES" --no-setup
        echo "zookeeper: $(fourlw mntr $ZK_PORT | grep -E 'snapshottime' | tr '\n' ' ')"
        stop_both
        echo "ringkeeper snapshots in this run:"
        grep -h "snapshot .* written\|too busy to snap" "$tmp/rk/server.log" | sed 's/^/  /' | tail -20 || true
        : >"$tmp/rk/server.log"
      done
      ;;
    *) echo "unknown phase $phase"; exit 2 ;;
  esac
done
