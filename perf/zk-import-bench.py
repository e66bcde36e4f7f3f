"""Import speed of a large ZooKeeper snapshot, beside ZooKeeper's own load time of it.

Usage: python3 perf/zk-import-bench.py RINGKEEPER_BIN [ZNODES]   (default 1,000,000)

1. Writes a ZooKeeper version-2 snapshot of ZNODES znodes (1000 parents of equal
   numbers of children, 100 bytes of data each) into a fresh dataDir.
2. Starts Apache ZooKeeper 3.8 on it (scripts/apache-zk.sh, loopback): ZooKeeper loads
   it and, at start, writes its own snapshot of it. Stops it, starts it again: ZooKeeper
   now loads the snapshot it wrote itself; its log line "Snapshot loaded in N ms" is
   ZooKeeper's load time. Stops it (by PID).
3. Runs `ringkeeper data import-zookeeper` on that dataDir (ZooKeeper's own snapshot)
   and reports its time, then RingKeeper's own start-up recovery of the imported
   directory.
Prints one line per measurement. Needs ZK_HEAP large enough (default here 3g).
"""

import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import rkharness  # noqa: E402

APACHE = os.path.join(ROOT, "scripts", "apache-zk.sh")


def jstr(s):
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def write_snapshot(path, znodes):
    parents = 1000
    per = max(1, (znodes - 5) // parents)
    stat = lambda cv: struct.pack(">qqqqiiiqq", 1, 1, 1, 1, 0, cv, 0, 0, 1)  # noqa: E731
    data = b"x" * 100
    out = bytearray()
    out += struct.pack(">iiq", int.from_bytes(b"ZKSN", "big"), 2, -1)
    out += struct.pack(">i", 0)  # sessions
    out += struct.pack(">i", 1)  # ACL cache: 1 -> world:anyone ALL
    out += struct.pack(">qi", 1, 1) + struct.pack(">i", 31) + jstr("world") + jstr("anyone")

    def node(p, d, cv):
        out.extend(jstr(p))
        if d is None:
            out.extend(struct.pack(">i", -1))
        else:
            out.extend(struct.pack(">i", len(d)) + d)
        out.extend(struct.pack(">q", 1))
        out.extend(stat(cv))

    node("", b"", 2)
    node("/zookeeper", b"", 2)
    node("/zookeeper/quota", b"", 0)
    node("/zookeeper/config", b"", 0)
    node("/bench", b"", parents)
    for i in range(parents):
        node(f"/bench/p{i}", b"", per)
        for j in range(per):
            node(f"/bench/p{i}/c{j}", data, 0)
    out += jstr("/")
    out += struct.pack(">q", zlib.adler32(bytes(out))) + jstr("/")
    out += struct.pack(">qiq", 0, 2, 0)  # an empty ZxidDigest (not compared)
    out += struct.pack(">q", zlib.adler32(bytes(out))) + jstr("/")
    with open(path, "wb") as f:
        f.write(out)
    return 5 + parents + parents * per


def zk_load_ms(workdir, port):
    env = dict(os.environ, ZK_HEAP=os.environ.get("ZK_HEAP", "3g"))
    subprocess.run([APACHE, "start", workdir, str(port)], check=True, env=env, timeout=600)
    subprocess.run([APACHE, "stop", workdir], check=True, timeout=120)
    text = open(os.path.join(workdir, "server.log"), errors="replace").read()
    m = re.findall(r"Snapshot loaded in (\d+) ms", text)
    return int(m[-1]) if m else None


def main():
    binary = sys.argv[1]
    znodes = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    tmp = tempfile.mkdtemp(prefix="rk-zk-import-bench-")
    try:
        zkdir = os.path.join(tmp, "zk")
        v2 = os.path.join(zkdir, "data", "version-2")
        os.makedirs(v2)
        n = write_snapshot(os.path.join(v2, "snapshot.1"), znodes)
        port = rkharness.free_port()
        first = zk_load_ms(zkdir, port)
        # Now the dataDir holds the snapshot ZooKeeper wrote at its start.
        own = zk_load_ms(zkdir, port)
        snaps = sorted(os.listdir(v2))
        size = sum(os.path.getsize(os.path.join(v2, s)) for s in snaps if s.startswith("snapshot."))
        print(f"snapshot: {n} znodes, files {snaps}, {size} bytes")
        print(f"ZooKeeper 3.8 load of the generated snapshot: {first} ms")
        print(f"ZooKeeper 3.8 load of its own snapshot: {own} ms")
        dst = os.path.join(tmp, "rk")
        t = time.time()
        r = subprocess.run([binary, "data", "import-zookeeper", os.path.join(zkdir, "data"), dst],
                           capture_output=True, text=True, timeout=1200)
        took = time.time() - t
        assert r.returncode == 0, r.stdout + r.stderr
        print(f"ringkeeper data import-zookeeper: {took:.2f} s wall: {r.stdout.strip()}")
        s = rkharness.Server(binary, os.path.join(tmp, "srv"), rkharness.free_port(), data_dir=dst)
        os.makedirs(s.workdir, exist_ok=True)
        s.start()
        s.stop()
        rec = [line for line in s.tail(20000).splitlines() if "recovered" in line]
        print(f"ringkeeper start on the imported directory: {rec[-1] if rec else '?'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
