#!/usr/bin/env bash
# TLS cost on the client port: setData throughput, latency and server CPU per op over
# plaintext and TLS, on RingKeeper and on Apache ZooKeeper (Debian's 3.8, Netty server),
# rounds alternating between the four targets (docs/security.md quotes the results).
#
# Usage: perf/tls-bench.sh [ROUNDS] [SECONDS]     (default 3 rounds of 5 s)
# Needs release builds (cargo build --release --bin ringkeeper --bin zkbench), openssl,
# keytool, python3 and Debian's zookeeper. Everything listens on 127.0.0.1 and is stopped
# by its PID at the end.
set -euo pipefail

ROUNDS=${1:-3}
SECS=${2:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
RK=$here/target/release/ringkeeper
ZKB=$here/target/release/zkbench
work=$(mktemp -d)
rk_pid=
cleanup() {
  [ -n "$rk_pid" ] && kill "$rk_pid" 2>/dev/null || true
  "$here/scripts/apache-zk.sh" stop "$work/zk" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$work/certs" "$work/rk" "$work/zk"
python3 - "$work/certs" <<'PY'
import sys
sys.path.insert(0, "tests/interop")
import tlscerts
tlscerts.make(sys.argv[1])
PY
C=$work/certs
TLS_CFG="ssl.keyStore.location=$C/server.jks
ssl.keyStore.password=test-pass
ssl.trustStore.location=$C/trust.jks
ssl.trustStore.password=test-pass
maxClientCnxns=0"

rk_plain=$(port); rk_tls=$(port); zk_plain=$(port); zk_tls=$(port)
cat >"$work/rk/zoo.cfg" <<EOF
dataDir=$work/rk/data
clientPort=$rk_plain
clientPortAddress=127.0.0.1
secureClientPort=$rk_tls
secureClientPortAddress=127.0.0.1
admin.enableServer=false
$TLS_CFG
EOF
"$RK" "$work/rk/zoo.cfg" >"$work/rk/server.log" 2>&1 &
rk_pid=$!

# ZooKeeper's Netty server factory, with the two Netty jars its manifest leaves out.
ZK_CLASSPATH=/usr/share/java/zookeeper.jar:/usr/share/java/netty-resolver.jar:/usr/share/java/netty-codec.jar \
ZK_EXTRA_CFG="serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
secureClientPort=$zk_tls
secureClientPortAddress=127.0.0.1
$TLS_CFG" \
  "$here/scripts/apache-zk.sh" start "$work/zk" "$zk_plain" >/dev/null

for p in $rk_plain $zk_plain; do
  "$ZKB" run -c "127.0.0.1:$p" -w set -d 0.5 --warmup 0 -s 1 -k 1 -q --no-server-cost >/dev/null
done

TLS_ARGS=(--tls --tls-ca "$C/ca.pem" --tls-cert "$C/alice.pem" --tls-key "$C/alice.key")
run() { # label port load... -> one tab-separated line
  local label=$1 port=$2; shift 2
  "$ZKB" run -c "127.0.0.1:$port" -w set -d "$SECS" --warmup 2 --no-setup -q --json "$@" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("\t".join(str(x) for x in (sys.argv[1], round(d["ops_per_sec"]), d["p50_ms"], d["p99_ms"], d.get("server_cpu_us_per_op"))))' "$label"
}

printf 'target\tops/s\tp50 ms\tp99 ms\tserver CPU us/op\n'
for load in "16 16" "1 1"; do
  read -r s k <<<"$load"
  for r in $(seq "$ROUNDS"); do
    run "rk-plain-${s}x$k" "$rk_plain" -s "$s" -k "$k"
    run "rk-tls-${s}x$k" "$rk_tls" -s "$s" -k "$k" "${TLS_ARGS[@]}"
    run "zk-plain-${s}x$k" "$zk_plain" -s "$s" -k "$k"
    run "zk-tls-${s}x$k" "$zk_tls" -s "$s" -k "$k" "${TLS_ARGS[@]}"
  done
done
