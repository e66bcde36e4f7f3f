#!/usr/bin/env bash
# Runs the fuzz targets for a few seconds each (CI smoke run; see docs/fuzzing.md):
# `decode` for SECONDS, then `sasl` and `tls_handshake` for half as long each (their
# input spaces are far smaller).
# New inputs go to a scratch corpus so the committed seed corpora stay as they are.
#
# Usage: scripts/fuzz-smoke.sh [SECONDS]   (default 30)
# Needs cargo-fuzz (`cargo install cargo-fuzz`); works on stable Rust with `-s none`.
set -euo pipefail

SECONDS_TO_RUN=${1:-30}
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || { echo "fuzz-smoke: cargo-fuzz not installed: cargo install cargo-fuzz" >&2; exit 2; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/decode" "$scratch/sasl"
# -max_len bounds each input: 64 KiB holds several frames of every kind we capture.
cargo fuzz run decode -s none "$scratch/decode" corpus/decode -- \
  -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -print_final_stats=1
# 8 KiB: two tokens over the DIGEST-MD5 server's 4096-byte limit.
cargo fuzz run sasl -s none "$scratch/sasl" corpus/sasl -- \
  -max_total_time="$(( (SECONDS_TO_RUN + 1) / 2 ))" -max_len=8192 -print_final_stats=1
# The TLS receive path (tls_handshake), for half as long: its seeds are two ClientHellos.
mkdir -p "$scratch/tls"
cargo fuzz run tls_handshake -s none "$scratch/tls" corpus/tls_handshake -- \
  -max_total_time="$(( (SECONDS_TO_RUN + 1) / 2 ))" -max_len=16384 -print_final_stats=1
