#!/usr/bin/env bash
# Starts and stops RingKeeper on loopback the way scripts/apache-zk.sh does Apache
# ZooKeeper: a generated zoo.cfg in a directory the caller names (a temporary folder),
# the server run as `ringkeeper DIR/zoo.cfg`, stopped by the PID recorded there.
#
# Usage:
#   scripts/ringkeeper.sh start DIR [CLIENT_PORT]      standalone server
#   scripts/ringkeeper.sh start-ensemble DIR N [BASE]  N servers (client ports BASE+1..BASE+N,
#                                                      default BASE=23880)
#   scripts/ringkeeper.sh stop DIR                     stops every server started in DIR
#   scripts/ringkeeper.sh restart DIR [I]              stops (by PID) and starts again, same
#                                                      data and config: every server in DIR,
#                                                      or only server I of an ensemble
#   scripts/ringkeeper.sh connect-string DIR           prints host:port[,host:port...]
#   scripts/ringkeeper.sh ruok HOST PORT               prints the ruok answer (or nothing)
# Environment: RINGKEEPER_BIN (default target/release/ringkeeper), START_TIMEOUT_S
# (default 20), RK_EXTRA_CFG (extra zoo.cfg lines, newline-separated).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
RINGKEEPER_BIN=${RINGKEEPER_BIN:-$here/target/release/ringkeeper}
START_TIMEOUT_S=${START_TIMEOUT_S:-20}

die() { echo "ringkeeper.sh: $*" >&2; exit 1; }

ruok() { # host port -> prints the answer (empty if none)
  python3 - "$1" "$2" <<'PY' 2>/dev/null || true
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)
    s.sendall(b"ruok"); s.shutdown(socket.SHUT_WR)
    print(s.recv(16).decode(), end="")
except OSError:
    pass
PY
}

wait_ready() { # port pidfile
  local port=$1 pidfile=$2 i
  for ((i = 0; i < START_TIMEOUT_S * 5; i++)); do
    [ "$(ruok 127.0.0.1 "$port")" = imok ] && return 0
    kill -0 "$(cat "$pidfile")" 2>/dev/null || die "server on port $port exited during start-up (log: ${pidfile%/*}/server.log)"
    sleep 0.2
  done
  die "server on port $port did not answer ruok within ${START_TIMEOUT_S}s"
}

launch() { # dir cfg
  local dir=$1 cfg=$2
  [ -x "$RINGKEEPER_BIN" ] || die "$RINGKEEPER_BIN not found: cargo build --release (or set RINGKEEPER_BIN)"
  "$RINGKEEPER_BIN" "$cfg" >>"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
}

write_cfg() { # dir port [extra lines...]
  local dir=$1 port=$2; shift 2
  mkdir -p "$dir/data"
  {
    echo "tickTime=2000"
    echo "initLimit=10"
    echo "syncLimit=5"
    echo "dataDir=$dir/data"
    echo "clientPort=$port"
    echo "clientPortAddress=127.0.0.1"
    echo "maxClientCnxns=0"
    echo "4lw.commands.whitelist=*"
    for l in "$@"; do echo "$l"; done
    if [ -n "${RK_EXTRA_CFG:-}" ]; then printf "%s\n" "$RK_EXTRA_CFG"; fi
  } >"$dir/zoo.cfg"
}

stop_pid() { # pidfile: TERM, up to 5 s, then KILL
  local pidfile=$1 pid i
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

cmd=${1:-}; shift || true
case "$cmd" in
  start)
    dir=${1:?DIR}; port=${2:-2181}
    mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
    write_cfg "$dir" "$port"
    launch "$dir" "$dir/zoo.cfg"
    echo "127.0.0.1:$port" >"$dir/connect"
    wait_ready "$port" "$dir/pid"
    ;;
  start-ensemble)
    dir=${1:?DIR}; n=${2:?N}; base=${3:-23880}
    mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
    servers=(); conn=()
    for ((i = 1; i <= n; i++)); do
      servers+=("server.$i=127.0.0.1:$((base + 100 + i)):$((base + 200 + i))")
      conn+=("127.0.0.1:$((base + i))")
    done
    for ((i = 1; i <= n; i++)); do
      write_cfg "$dir/s$i" "$((base + i))" "${servers[@]}"
      echo "$i" >"$dir/s$i/data/myid"
      launch "$dir/s$i" "$dir/s$i/zoo.cfg"
    done
    (IFS=,; echo "${conn[*]}") >"$dir/connect"
    for ((i = 1; i <= n; i++)); do wait_ready "$((base + i))" "$dir/s$i/pid"; done
    ;;
  stop)
    dir=${1:?DIR}
    for pidfile in "$dir"/pid "$dir"/s*/pid; do stop_pid "$pidfile"; done
    ;;
  restart)
    dir=${1:?DIR}; only=${2:-}
    dir=$(cd "$dir" && pwd)
    if [ -n "$only" ]; then servers=("$dir/s$only")
    elif [ -f "$dir/zoo.cfg" ]; then servers=("$dir")
    else servers=("$dir"/s*); fi
    for s in "${servers[@]}"; do
      [ -f "$s/zoo.cfg" ] || die "no server in $s"
      stop_pid "$s/pid"
    done
    for s in "${servers[@]}"; do launch "$s" "$s/zoo.cfg"; done
    for s in "${servers[@]}"; do
      wait_ready "$(sed -n 's/^clientPort=//p' "$s/zoo.cfg")" "$s/pid"
    done
    ;;
  connect-string)
    cat "${1:?DIR}/connect"
    ;;
  ruok)
    ruok "${1:?HOST}" "${2:?PORT}"; echo
    ;;
  *)
    sed -n '2,18p' "$0"; exit 2 ;;
esac
