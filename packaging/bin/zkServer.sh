#!/usr/bin/env bash
# Starts, stops and reports RingKeeper the way Apache ZooKeeper's bin/zkServer.sh does,
# with the same commands, arguments, messages and exit codes, so that operators' scripts
# keep working:
#
#   zkServer.sh [--config <conf-dir>] {start|start-foreground|stop|restart|status|print-cmd|version} [zoo.cfg]
#
# The configuration is ZOOCFGDIR/zoo.cfg (ZOOCFGDIR defaults to /etc/ringkeeper), or the
# file named by the last argument (a name in ZOOCFGDIR, or a path). The PID file is
# dataDir/zookeeper_server.pid unless ZOOPIDFILE says otherwise; the server's output goes
# to ZOO_LOG_DIR (default /var/log/ringkeeper). RINGKEEPER_BIN overrides the server
# binary (default: usr/bin/ringkeeper of the tree this script is installed in).
# Under systemd, use `systemctl start ringkeeper` instead (the unit is Type=notify).
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RINGKEEPER_BIN=${RINGKEEPER_BIN:-$(cd "$here/../../.." && pwd)/bin/ringkeeper}
ZOOCFGDIR=${ZOOCFGDIR:-/etc/ringkeeper}
ZOO_LOG_DIR=${ZOO_LOG_DIR:-/var/log/ringkeeper}
# How long `start` waits for the server to answer ruok, and `stop` for it to exit.
START_WAIT_S=${START_WAIT_S:-30}
STOP_WAIT_S=${STOP_WAIT_S:-60}

if [ "${1:-}" = "--config" ]; then
  ZOOCFGDIR=$2
  shift 2
fi
ZOOCFG=${ZOOCFG:-$ZOOCFGDIR/zoo.cfg}
if [ -n "${2:-}" ]; then
  case $2 in
    */*) ZOOCFG=$2 ;;
    *) ZOOCFG=$ZOOCFGDIR/$2 ;;
  esac
fi

usage() {
  echo "Usage: $0 [--config <conf-dir>] {start|start-foreground|stop|version|restart|status|print-cmd}" >&2
}

cfg_value() { # key: the last value of `key=` in the config, trimmed
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$ZOOCFG" | tail -n 1 | sed 's/[[:space:]]*$//'
}

four_letter() { # host port word: prints the answer (bash's /dev/tcp; no nc needed)
  local out
  out=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf %s "$3" >&3 && cat <&3' _ "$1" "$2" "$3" 2>/dev/null) || return 1
  printf '%s\n' "$out"
}

case ${1:-} in
  start|start-foreground|stop|restart|status|print-cmd) ;;
  version) exec "$RINGKEEPER_BIN" --version ;;
  *) usage; exit 1 ;;
esac

echo "Using config: $ZOOCFG" >&2
if [ ! -r "$ZOOCFG" ]; then
  echo "cannot read $ZOOCFG" >&2
  exit 1
fi
data_dir=$(cfg_value dataDir)
if [ -z "${ZOOPIDFILE:-}" ]; then
  mkdir -p "$data_dir" 2>/dev/null
  ZOOPIDFILE=$data_dir/zookeeper_server.pid
else
  mkdir -p "$(dirname "$ZOOPIDFILE")"
fi
client_addr=$(cfg_value clientPortAddress)
client_port=$(cfg_value clientPort)
ask_addr=${client_addr:-localhost}
case $ask_addr in 0.0.0.0|::|"[::]") ask_addr=127.0.0.1 ;; esac
out_file=$ZOO_LOG_DIR/ringkeeper-server.out

running_pid() { # prints the PID from the PID file if that process lives
  [ -f "$ZOOPIDFILE" ] || return 1
  local pid
  pid=$(cat "$ZOOPIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

case $1 in
start)
  echo -n "Starting ringkeeper ... "
  if pid=$(running_pid); then
    echo "ringkeeper already running as process $pid."
    exit 1
  fi
  mkdir -p "$ZOO_LOG_DIR"
  nohup "$RINGKEEPER_BIN" "$ZOOCFG" >"$out_file" 2>&1 </dev/null &
  pid=$!
  if ! echo -n "$pid" >"$ZOOPIDFILE"; then
    echo "FAILED TO WRITE PID"
    exit 1
  fi
  # Started once it answers ruok (or, with no client port to ask, once it stays up).
  for _ in $(seq $((START_WAIT_S * 10))); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "FAILED TO START"
      tail -n 5 "$out_file" >&2
      exit 1
    fi
    if [ -z "$client_port" ] || [ "$(four_letter "$ask_addr" "$client_port" ruok)" = imok ]; then
      echo STARTED
      exit 0
    fi
    sleep 0.1
  done
  echo "SERVER DID NOT START"
  exit 1
  ;;
start-foreground)
  exec "$RINGKEEPER_BIN" "$ZOOCFG"
  ;;
print-cmd)
  echo "\"$RINGKEEPER_BIN\" \"$ZOOCFG\" > \"$out_file\" 2>&1 < /dev/null"
  ;;
stop)
  echo -n "Stopping ringkeeper ... "
  if [ ! -f "$ZOOPIDFILE" ]; then
    echo "no ringkeeper to stop (could not find file $ZOOPIDFILE)"
    exit 0
  fi
  pid=$(cat "$ZOOPIDFILE")
  kill "$pid" 2>/dev/null
  # SIGTERM makes the server finish its log writes and exit; wait for it.
  for _ in $(seq $((STOP_WAIT_S * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$ZOOPIDFILE"
  echo STOPPED
  exit 0
  ;;
restart)
  shift
  "$0" stop "$@"
  "$0" start "$@"
  ;;
status)
  if [ -z "$client_port" ]; then
    echo "Client port not found in the server configs"
    exit 1
  fi
  echo "Client port found: $client_port. Client address: ${client_addr:-localhost}. Client SSL: false."
  stat=$(four_letter "$ask_addr" "$client_port" srvr | grep Mode)
  if [ -z "$stat" ]; then
    echo "Error contacting service. It is probably not running."
    exit 1
  fi
  echo "$stat"
  exit 0
  ;;
esac
