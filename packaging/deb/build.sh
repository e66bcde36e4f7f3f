#!/usr/bin/env bash
# Builds the Debian package ringkeeper_<version>_<arch>.deb with dpkg-deb (no other
# tool needed): the server and zkbench, the systemd unit (Type=notify), the default
# /etc/ringkeeper/zoo.cfg, the zkServer.sh-compatible control script, the Grafana
# dashboard and the docs; the maintainer scripts create the `ringkeeper` system user and
# its data directory /var/lib/ringkeeper.
#
# Usage: packaging/deb/build.sh [--bin-dir DIR] [--out DIR] [--compression TYPE]
#   --bin-dir      where ringkeeper and zkbench are (default: build them with
#                  `cargo build --release` and take target/release)
#   --out          where the .deb goes (default: target/deb)
#   --compression  dpkg-deb's -Z: xz (default), gzip, zstd or none (tests: none)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
bin_dir=""
out=$repo/target/deb
compression=xz
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --compression) compression=$2; shift 2 ;;
    *) sed -n '2,13p' "$0" >&2; exit 2 ;;
  esac
done
if [ -z "$bin_dir" ]; then
  (cd "$repo" && cargo build --release --bin ringkeeper --bin zkbench)
  bin_dir=$repo/target/release
fi
for b in ringkeeper zkbench; do
  [ -x "$bin_dir/$b" ] || { echo "$bin_dir/$b not found" >&2; exit 1; }
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n 1)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

install -D -m 0755 "$bin_dir/ringkeeper" "$root/usr/bin/ringkeeper"
install -D -m 0755 "$bin_dir/zkbench" "$root/usr/bin/zkbench"
install -D -m 0755 "$repo/packaging/bin/zkServer.sh" "$root/usr/share/ringkeeper/bin/zkServer.sh"
install -D -m 0644 "$repo/packaging/conf/zoo.cfg" "$root/etc/ringkeeper/zoo.cfg"
install -D -m 0644 "$repo/packaging/systemd/ringkeeper.service" "$root/lib/systemd/system/ringkeeper.service"
install -D -m 0644 "$repo/packaging/grafana/ringkeeper.json" "$root/usr/share/ringkeeper/grafana/ringkeeper.json"
for d in operations.md compat.md migration.md; do
  install -D -m 0644 "$repo/docs/$d" "$root/usr/share/doc/ringkeeper/$d"
done
install -D -m 0644 "$repo/README.md" "$root/usr/share/doc/ringkeeper/README.md"
cat >"$root/usr/share/doc/ringkeeper/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ringkeeper

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPY

mkdir -p "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: ringkeeper
Version: $version
Architecture: $arch
Maintainer: RingKeeper developers <ringkeeper@localhost>
Installed-Size: $size
Depends: libc6, adduser
Section: net
Priority: optional
Description: ZooKeeper-compatible coordination service on io_uring
 RingKeeper speaks Apache ZooKeeper's client protocol and reads its zoo.cfg, data
 files and four-letter words; existing ZooKeeper clients connect unchanged. This
 package holds the server (a systemd unit, ringkeeper.service), zkbench (a load
 generator), a zkServer.sh-compatible control script and a Grafana dashboard.
CONTROL
echo /etc/ringkeeper/zoo.cfg >"$root/DEBIAN/conffiles"

cat >"$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd ringkeeper >/dev/null; then
    adduser --system --group --home /var/lib/ringkeeper --no-create-home \
      --gecos "RingKeeper" ringkeeper >/dev/null
  fi
  mkdir -p /var/lib/ringkeeper /var/log/ringkeeper
  chown ringkeeper:ringkeeper /var/lib/ringkeeper /var/log/ringkeeper
  chmod 0750 /var/lib/ringkeeper
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
    # Enabled, not started: review /etc/ringkeeper/zoo.cfg, then
    # `systemctl start ringkeeper`.
    systemctl enable ringkeeper.service >/dev/null 2>&1 || true
  fi
fi
exit 0
POSTINST
cat >"$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop ringkeeper.service >/dev/null 2>&1 || true
  systemctl disable ringkeeper.service >/dev/null 2>&1 || true
fi
exit 0
PRERM
cat >"$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
# The data directory is kept even on purge: it is the cluster's state.
if [ "$1" = purge ]; then
  rm -rf /var/log/ringkeeper
fi
exit 0
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb=$out/ringkeeper_${version}_${arch}.deb
dpkg-deb --root-owner-group -Z"$compression" --build "$root" "$deb" >/dev/null
echo "$deb"
