#!/usr/bin/env bash
# Starts and stops Apache ZooKeeper (Debian package `zookeeper`, 3.8) on loopback, for
# interop tests and side-by-side benchmarks. Data lives in a directory the caller names
# (a temporary folder); servers are stopped by the PIDs recorded there, never by name.
#
# Usage:
#   scripts/apache-zk.sh start DIR [CLIENT_PORT]      standalone server
#   scripts/apache-zk.sh start-ensemble DIR N [BASE]  N servers (client ports BASE+1..BASE+N,
#                                                     default BASE=21880), quorum/election
#                                                     ports on 127.0.0.1
#   scripts/apache-zk.sh stop DIR                     stops every server started in DIR
#   scripts/apache-zk.sh restart DIR [I]              stops (by PID) and starts again, same
#                                                     data and config: every server in DIR,
#                                                     or only server I of an ensemble
#   scripts/apache-zk.sh connect-string DIR           prints host:port[,host:port...]
#   scripts/apache-zk.sh ruok HOST PORT               prints the ruok answer (or nothing)
#   scripts/apache-zk.sh wait-serving CONNECT_STRING  waits until every server reports a
#                                                     Mode (an ensemble elected)
# Environment: ZK_JAR (default /usr/share/java/zookeeper.jar), ZK_CLASSPATH (a whole class
# path instead of ZK_JAR, e.g. "DIR/lib/*" of a ZooKeeper 3.9 release), ZK_HEAP (default 512m),
# ZK_EXTRA_CFG (extra zoo.cfg lines, newline-separated).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
ZK_JAR=${ZK_JAR:-/usr/share/java/zookeeper.jar}
ZK_HEAP=${ZK_HEAP:-512m}
# How long a server may take to answer `ruok` after start (JVM start-up on a busy machine).
START_TIMEOUT_S=${START_TIMEOUT_S:-60}
NAME=apache-zk
DEFAULT_BASE=21880
USAGE_LINES=2,20p

launch() { # dir cfg
  local dir=$1 cfg=$2
  [ -n "${ZK_CLASSPATH:-}" ] || [ -f "$ZK_JAR" ] || die "$ZK_JAR not found: apt-get install zookeeper"
  java -Xmx"$ZK_HEAP" -Dzookeeper.admin.enableServer=false \
    -cp "${ZK_CLASSPATH:-$ZK_JAR}" org.apache.zookeeper.server.quorum.QuorumPeerMain "$cfg" \
    >>"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
}

server_cfg_lines() { echo "extendedTypesEnabled=true"; }
extra_cfg() { if [ -n "${ZK_EXTRA_CFG:-}" ]; then printf "%s\n" "$ZK_EXTRA_CFG"; fi; }

# shellcheck source=lib/servers.sh
. "$here/scripts/lib/servers.sh"
servers_main "$@"
