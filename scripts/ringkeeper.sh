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
#   scripts/ringkeeper.sh wait-serving CONNECT_STRING  waits until every server reports a
#                                                      Mode (an ensemble elected)
# Environment: RINGKEEPER_BIN (default target/release/ringkeeper), START_TIMEOUT_S
# (default 20), RK_EXTRA_CFG (extra zoo.cfg lines, newline-separated), RK_LOG_TIMES=1
# (each server.log line starts with the wall clock in seconds, to ms: for profiles
# such as scripts/rolling-restart.py --log-times), RK_NICE (start the server at this
# nice value; scripts/rolling-restart.py --nice-recovery).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
RINGKEEPER_BIN=${RINGKEEPER_BIN:-$here/target/release/ringkeeper}
START_TIMEOUT_S=${START_TIMEOUT_S:-20}
NAME=ringkeeper.sh
DEFAULT_BASE=23880
USAGE_LINES=2,22p

launch() { # dir cfg
  local dir=$1 cfg=$2
  [ -x "$RINGKEEPER_BIN" ] || die "$RINGKEEPER_BIN not found: cargo build --release (or set RINGKEEPER_BIN)"
  # `nice` execs the server, so $! stays its PID.
  local run=(nice -n "${RK_NICE:-0}" "$RINGKEEPER_BIN" "$cfg")
  if [ "${RK_LOG_TIMES:-0}" = 1 ]; then
    # The stamping loop is a child of the shell, not of the server.
    "${run[@]}" > >(stamp >>"$dir/server.log") 2>&1 &
  else
    "${run[@]}" >>"$dir/server.log" 2>&1 &
  fi
  echo $! >"$dir/pid"
}

stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%3N)" "$line"; done; }

server_cfg_lines() { :; }
extra_cfg() { if [ -n "${RK_EXTRA_CFG:-}" ]; then printf "%s\n" "$RK_EXTRA_CFG"; fi; }

# shellcheck source=lib/servers.sh
. "$here/scripts/lib/servers.sh"
servers_main "$@"
