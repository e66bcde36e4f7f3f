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
    # Debian's ZooKeeper logs nothing without an SLF4J binding: route it to JDK logging.
    env["JAVA_TOOL_OPTIONS"] = ("-Xbootclasspath/a:/usr/share/java/slf4j-api.jar:"
                                "/usr/share/java/slf4j-jdk14.jar")
    logf = os.path.join(workdir, "server.log")
    seen = len(open(logf, errors="replace").read()) if os.path.exists(logf) else 0
    t0 = time.time()
    # ZooKeeper answers ruok before it has loaded its data: wait for it to serve.
    subprocess.run([APACHE, "start", workdir, str(port)], check=True, env=env, timeout=600)
    try:
        m = []
        while time.time() - t0 < 900:
            if "Mode: standalone" in rkharness.four_letter(port, "srvr"):
                break
            time.sleep(0.05)
        serving = time.time() - t0
        text = open(logf, errors="replace").read()[seen:]
        m = re.findall(r"Snapshot loaded in (\d+) ms", text)
    finally:
        subprocess.run([APACHE, "stop", workdir], check=True, timeout=120)
    return (int(m[-1]) if m else None), serving


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
        print(f"ZooKeeper 3.8 on the generated snapshot: loaded in {first[0]} ms, "
              f"serving {first[1]:.2f} s after launch")
        print(f"ZooKeeper 3.8 on its own snapshot: loaded in {own[0]} ms (its log's "
              f"'Snapshot loaded in'), serving {own[1]:.2f} s after launch")
        dst = os.path.join(tmp, "rk")
        t = time.time()
        r = subprocess.run([binary, "data", "import-zookeeper", os.path.join(zkdir, "data"), dst],
                           capture_output=True, text=True, timeout=1200)
        took = time.time() - t
        assert r.returncode == 0, r.stdout + r.stderr
        print(f"ringkeeper data import-zookeeper: {took:.2f} s wall: {r.stdout.strip()}")
        os.makedirs(os.path.join(tmp, "srv"), exist_ok=True)
        s = rkharness.Server(binary, os.path.join(tmp, "srv"), rkharness.free_port(), data_dir=dst)
        s.start()
        s.stop()
        rec = [line for line in s.tail(20000).splitlines() if "recovered" in line]
        print(f"ringkeeper start on the imported directory: {rec[-1] if rec else '?'}")
        # RingKeeper started directly on ZooKeeper's dataDir: import at start, then serve.
        port = rkharness.free_port()
        os.makedirs(os.path.join(tmp, "srv2"), exist_ok=True)
        s = rkharness.Server(binary, os.path.join(tmp, "srv2"), port,
                             data_dir=os.path.join(zkdir, "data"))
        t0 = time.time()
        s.start()
        serving = time.time() - t0
        s.stop()
        imp = [line for line in s.tail(20000).splitlines() if "imported ZooKeeper" in line]
        print(f"ringkeeper started on ZooKeeper's dataDir: serving {serving:.2f} s after launch; "
              f"{imp[-1][:120] if imp else '?'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
