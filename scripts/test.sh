#!/usr/bin/env bash
# The one command that runs every test of RingKeeper, on a fresh machine too (Debian
# bookworm or alike, as root for the installs). It installs what the tests need when it is
# missing (fast when present), then runs:
#   1. cargo fmt --check
#   2. cargo clippy --all-targets -- -D warnings
#   3. the Rust tests (cargo nextest run if installed, else cargo test)
#   4. cargo build (target/debug/ringkeeper)
#   5. the interop suites in tests/interop with real clients (kazoo, the Java client,
#      zkCli.sh) against ZK_TARGET (default ringkeeper; apache = Apache ZooKeeper)
#   6. a short run of the fuzz targets, codec and SASL (installs cargo-fuzz if missing)
# and prints a summary; the exit status is non-zero if any step failed.
#
# Usage:
#   scripts/test.sh                          everything
#   scripts/test.sh --interop-only [ARGS]    only step 5 (and step 4 when the target is
#                                            ringkeeper); ARGS go to pytest, e.g. -k acl
#   ZK_TARGET=apache scripts/test.sh --interop-only    the interop suites against the
#                                            reference server, to check the tests themselves
# Environment: ZK_TARGET, RINGKEEPER_BIN (server binary, default target/debug/ringkeeper),
# NO_INSTALL=1 (never install anything).
set -uo pipefail

cd "$(dirname "$0")/.."

KAZOO_VERSION=2.11.0
PYTEST_VERSION=8.3.4
PYTEST_TIMEOUT_VERSION=2.3.1
# kazoo's SASL (tests/interop/test_sasl.py) needs pure-sasl.
PURE_SASL_VERSION=0.6.2
# iproute2: `ip netns` for the partition tests (tests/ensemble_partition.py).
# tmux: `ringkeeper top` is tested in a real terminal (tests/interop/test_ops_observe.py).
# krb5-kdc, krb5-admin-server (kadmin.local): a throwaway KDC for the SASL GSSAPI tests
# (tests/interop/kdc.py); the server loads libgssapi-krb5-2 at run time.
# openssl: test certificates for the TLS tests (tests/interop/tlscerts.py).
APT_PACKAGES=(zookeeper libzookeeper-java zookeeper-bin default-jdk-headless python3-pip iproute2 tmux
              krb5-kdc krb5-admin-server libgssapi-krb5-2 openssl)

interop_only=0
if [ "${1:-}" = "--interop-only" ]; then interop_only=1; shift; fi
export ZK_TARGET=${ZK_TARGET:-ringkeeper}

declare -a summary=()
failed=0
note() { summary+=("$(printf '%-6s %s' "$1" "$2")"); [ "$1" = PASS ] || failed=1; }
step() { echo; echo "==> $*"; }

# ---- installs ------------------------------------------------------------------------
install_deps() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    step "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}" \
      || { echo "apt-get install failed"; return 1; }
  fi
  if ! python3 - "$KAZOO_VERSION" "$PYTEST_VERSION" "$PYTEST_TIMEOUT_VERSION" "$PURE_SASL_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
want = dict(zip(["kazoo", "pytest", "pytest-timeout", "pure-sasl"], sys.argv[1:]))
sys.exit(0 if all(version(k) == v for k, v in want.items()) else 1)
PY
  then
    step "pip install kazoo==$KAZOO_VERSION pytest==$PYTEST_VERSION pytest-timeout==$PYTEST_TIMEOUT_VERSION pure-sasl==$PURE_SASL_VERSION"
    local pkgs=("kazoo==$KAZOO_VERSION" "pytest==$PYTEST_VERSION" "pytest-timeout==$PYTEST_TIMEOUT_VERSION"
                "pure-sasl==$PURE_SASL_VERSION")
    # Debian's system Python refuses pip installs unless told (PEP 668).
    python3 -m pip install -q "${pkgs[@]}" 2>/dev/null \
      || python3 -m pip install -q --break-system-packages "${pkgs[@]}" \
      || { echo "pip install failed"; return 1; }
  fi
  if [ $interop_only = 0 ] || [ "$ZK_TARGET" = ringkeeper ]; then
    command -v cargo >/dev/null || {
      echo "cargo not found: install Rust with rustup (https://rustup.rs), then re-run"; return 1; }
  fi
  if [ $interop_only = 0 ] && command -v rustup >/dev/null; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  fi
  return 0
}

if [ -z "${NO_INSTALL:-}" ]; then
  if install_deps; then note PASS "install test dependencies"; else note FAIL "install test dependencies"; fi
fi

# ---- Rust checks and tests -----------------------------------------------------------
run_step() { # name command...
  local name=$1; shift
  step "$name: $*"
  if "$@"; then note PASS "$name"; else note FAIL "$name"; fi
}

if [ $interop_only = 0 ]; then
  run_step "cargo fmt" cargo fmt --check
  run_step "cargo clippy" cargo clippy --all-targets -- -D warnings
  if cargo nextest --version >/dev/null 2>&1; then
    # --no-tests=warn: a package with no Rust tests yet is not an error of this script.
    # The failing tests' names go into the summary, so that the end of the log, which is
    # all a CI page may show, says which tests failed.
    step "rust tests (nextest): cargo nextest run --no-tests=warn"
    ntlog=$(mktemp)
    cargo nextest run --no-tests=warn 2>&1 | tee "$ntlog"
    if [ "${PIPESTATUS[0]}" = 0 ]; then
      note PASS "rust tests (nextest)"
    else
      note FAIL "rust tests (nextest)"
      # nextest's closing summary lists each failure as "  FAIL [ 1.234s] crate::binary test".
      while read -r line; do summary+=("         $line"); done \
        < <(grep -E '^ +(FAIL|TIMEOUT|SIG[A-Z]+|ABORT|LEAK)[ -]' "$ntlog" | sed 's/^ *//' | sort -u | head -20)
    fi
    rm -f "$ntlog"
  else
    run_step "rust tests (cargo test)" cargo test
  fi
fi

if [ "$ZK_TARGET" = ringkeeper ] && [ -z "${RINGKEEPER_BIN:-}" ]; then
  run_step "cargo build" cargo build --bin ringkeeper --bin zkbench
fi

# ---- interop suites ------------------------------------------------------------------
step "interop suites against ZK_TARGET=$ZK_TARGET"
log=$(mktemp)
python3 -m pytest tests/interop "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
result=$(grep -E '(passed|failed|errors?|skipped|deselected|no tests ran).* in [0-9.]+s' "$log" | tail -1 | tr -d '=' | sed 's/^ *//;s/ *$//')
rm -f "$log"
case $rc in
  0) note PASS "interop ($ZK_TARGET): $result" ;;
  5) note FAIL "interop ($ZK_TARGET): no tests were collected" ;;  # never a silent pass
  *) note FAIL "interop ($ZK_TARGET): ${result:-pytest exit $rc}" ;;
esac

# ---- fuzz smoke ------------------------------------------------------------------------
# A short run of the codec's fuzz target (docs/fuzzing.md): a few seconds of new inputs on
# every CI run, the seed corpus replayed first.
if [ $interop_only = 0 ]; then
  if ! command -v cargo-fuzz >/dev/null && [ -z "${NO_INSTALL:-}" ]; then
    step "cargo install cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet || echo "cargo install cargo-fuzz failed"
  fi
  if command -v cargo-fuzz >/dev/null; then
    run_step "fuzz smoke (decode ${FUZZ_SECONDS:-20} s, sasl and tls_handshake half that each)" scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-20}"
  else
    note FAIL "fuzz smoke: cargo-fuzz is not installed (cargo install cargo-fuzz)"
  fi
fi

echo
echo "==================== summary ===================="
printf '%s\n' "${summary[@]}"
echo "================================================="
if [ $failed = 0 ]; then echo "ALL PASSED"; else echo "SOME STEPS FAILED"; fi
exit $failed
