# Shared by scripts/apache-zk.sh and scripts/ringkeeper.sh (sourced, not run): zoo.cfg
# generation, start-up and stop by PID, and the commands both scripts take. The sourcing
# script sets NAME (for messages), DEFAULT_BASE (first client port of an ensemble, minus
# one), START_TIMEOUT_S, USAGE_LINES (the sed range of its usage header), and defines
#   launch DIR CFG        start one server in the background, writing DIR/pid
#   server_cfg_lines      print its server-specific zoo.cfg lines
#   extra_cfg             print the caller's extra zoo.cfg lines (may print nothing)
# then calls `servers_main "$@"`.

die() { echo "$NAME: $*" >&2; exit 1; }

# Prints a four-letter word's answer (empty if none): host port word.
four_letter() {
  python3 - "$1" "$2" "$3" <<'PY' 2>/dev/null || true
import socket, sys
# A server may reset the connection after its answer: what arrived before counts.
data = b""
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)
    s.sendall(sys.argv[3].encode()); s.shutdown(socket.SHUT_WR)
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except OSError:
    pass
print(data.decode(errors="replace"), end="")
PY
}

ruok() { four_letter "$1" "$2" ruok; }

wait_ready() { # port pidfile
  local port=$1 pidfile=$2 i
  for ((i = 0; i < START_TIMEOUT_S * 5; i++)); do
    [ "$(ruok 127.0.0.1 "$port")" = imok ] && return 0
    kill -0 "$(cat "$pidfile")" 2>/dev/null || die "server on port $port exited during start-up (log: ${pidfile%/*}/server.log)"
    sleep 0.2
  done
  die "server on port $port did not answer ruok within ${START_TIMEOUT_S}s"
}

# An ensemble answers `ruok` before it has elected; this waits (up to 60 s per server)
# until every server of a connect string reports itself leader, follower or observer,
# or standalone.
wait_serving() { # connect-string
  local hp i
  for hp in ${1//,/ }; do
    for ((i = 0; i < 300; i++)); do
      four_letter "${hp%:*}" "${hp#*:}" srvr | grep -qE "^Mode: (leader|follower|observer|standalone)" && break
      sleep 0.2
    done
  done
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
    server_cfg_lines
    for l in "$@"; do echo "$l"; done
    extra_cfg
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

servers_main() {
  local cmd=${1:-} dir port n base only i s
  shift || true
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
      dir=${1:?DIR}; n=${2:?N}; base=${3:-$DEFAULT_BASE}
      mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
      local servers=() conn=()
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
      local list=()
      if [ -n "$only" ]; then list=("$dir/s$only")
      elif [ -f "$dir/zoo.cfg" ]; then list=("$dir")
      else list=("$dir"/s*); fi
      for s in "${list[@]}"; do
        [ -f "$s/zoo.cfg" ] || die "no server in $s"
        stop_pid "$s/pid"
      done
      for s in "${list[@]}"; do launch "$s" "$s/zoo.cfg"; done
      for s in "${list[@]}"; do
        wait_ready "$(sed -n 's/^clientPort=//p' "$s/zoo.cfg")" "$s/pid"
      done
      ;;
    connect-string)
      cat "${1:?DIR}/connect"
      ;;
    ruok)
      ruok "${1:?HOST}" "${2:?PORT}"; echo
      ;;
    wait-serving)
      wait_serving "${1:?CONNECT_STRING}"
      ;;
    *)
      sed -n "$USAGE_LINES" "$0"; exit 2 ;;
  esac
}
