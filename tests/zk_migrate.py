"""Moving between Apache ZooKeeper and RingKeeper, with real servers (issue 14).

Usage: zk_migrate.py RINGKEEPER_BIN SCENARIO
  standalone   real ZooKeeper 3.8 (scripts/apache-zk.sh) under a kazoo load (persistent,
               sequential, ephemeral, container and TTL nodes; digest and ip ACLs; multi,
               a failed multi, deletes, version and ACL bumps; a session held open at the
               stop), for each snapshot compression (none, gz, snappy). Then RingKeeper on
               that dataDir (imported at start, or with `data import-zookeeper`) must serve
               the same tree dump (path, data, ACL, every Stat field, through the same
               client), continue the sequential numbering, and resume the held session with
               its ephemerals. Then the round trip: RingKeeper -> `data export-zookeeper` ->
               ZooKeeper starts and dumps the same tree (and RingKeeper's session resumes
               on ZooKeeper).
  bad          damaged copies of a real ZooKeeper dataDir: a corrupt Adler-32, truncated
               snapshots, an unknown txn type, a ZooKeeper 3.4 layout (logs without a
               snapshot, no digests, closeSession without its record). Each is refused with
               the file and the offset; the source is left byte for byte as it was and no
               data directory (or staging directory) is left behind.
  ensemble     a 3-server ZooKeeper ensemble under load, stopped, each server's dataDir
               imported offline, then a 3-server RingKeeper ensemble on them: it elects,
               every server serves ZooKeeper's tree, the held session resumes.

Every server listens on 127.0.0.1 and is stopped by its PID; every load loop is bounded.
"""

import hashlib
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "interop"))

import rkharness  # noqa: E402

APACHE = os.path.join(ROOT, "scripts", "apache-zk.sh")
# Debian's ZooKeeper has no SLF4J binding on its class path, so it logs nothing; these
# jars (Debian's libslf4j-java, a dependency of libzookeeper-java) send its log to
# java.util.logging, which prints INFO and above to the server's log.
SLF4J_JARS = ["/usr/share/java/slf4j-api.jar", "/usr/share/java/slf4j-jdk14.jar"]


# A ZooKeeper 3.9 release's class path ("DIR/lib/*"), if the machine has one (Debian ships
# 3.8 only; PyPI's pyspark 4.3.0 sdist carries zookeeper-3.9.5.jar and its jars): the
# export is then also started on 3.9.
ZK39_CLASSPATH = os.environ.get("ZK39_CLASSPATH", "")


def zk_env(extra_cfg=()):
    e = dict(os.environ)
    e["ZK_EXTRA_CFG"] = "\n".join(extra_cfg)
    e["ZK_HEAP"] = e.get("ZK_HEAP", "256m")
    if all(os.path.exists(j) for j in SLF4J_JARS):
        e["JAVA_TOOL_OPTIONS"] = "-Xbootclasspath/a:" + ":".join(SLF4J_JARS)
    return e
SESSION_TIMEOUT_S = 30.0
USER, PASSWORD = "alice", "secret"


def log(*a):
    print("zk_migrate:", *a, flush=True)


# ---------------------------------------------------------------- Apache ZooKeeper


class ApacheZk:
    """A standalone Apache ZooKeeper or an ensemble, through scripts/apache-zk.sh (which
    records PIDs and stops by them)."""

    def __init__(self, workdir, port, extra=(), ensemble=0):
        self.workdir, self.port, self.extra, self.ensemble = workdir, port, list(extra), ensemble

    classpath = ""

    def env(self):
        e = zk_env(self.extra)
        if self.classpath:
            e["ZK_CLASSPATH"] = self.classpath
            e.pop("JAVA_TOOL_OPTIONS", None)  # 3.9 brings its own SLF4J
        return e

    def start(self):
        if self.ensemble:
            cmd = [APACHE, "start-ensemble", self.workdir, str(self.ensemble), str(self.port)]
        else:
            cmd = [APACHE, "start", self.workdir, str(self.port)]
        subprocess.run(cmd, check=True, env=self.env(), timeout=180)
        if self.ensemble:
            subprocess.run([APACHE, "wait-serving", self.connect()], check=True, timeout=120)

    def connect(self):
        with open(os.path.join(self.workdir, "connect")) as f:
            return f.read().strip()

    def stop(self):
        subprocess.run([APACHE, "stop", self.workdir], check=True, timeout=120)

    def data_dir(self, i=None):
        if i is None:
            return os.path.join(self.workdir, "data")
        return os.path.join(self.workdir, f"s{i}", "data")

    def log_text(self):
        out = ""
        for root, _, files in os.walk(self.workdir):
            for f in files:
                if f == "server.log":
                    with open(os.path.join(root, f), errors="replace") as fh:
                        out += fh.read()
        return out


# ---------------------------------------------------------------- the load and the dump

HOLDER = r'''
import json, random, sys, time
sys.path.insert(0, sys.argv[4])
sys.path.insert(0, sys.argv[4] + "/interop")
import zkraw
from kazoo.client import KazooClient
from kazoo.security import make_digest_acl, ACL, Id, Permissions
hosts, out, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
ops, timeout = int(sys.argv[5]), float(sys.argv[6])
rng = random.Random(seed)
zk = KazooClient(hosts=hosts, timeout=timeout)
zk.start(timeout=30)
zk.add_auth("digest", "alice:secret")
digest_acl = make_digest_acl("alice", "secret", all=True)
ip_acl = ACL(Permissions.ALL, Id("ip", "127.0.0.1"))
for p in ["/app", "/seq", "/mixed", "/eph", "/acl"]:
    zk.ensure_path(p)
zk.create("/acl/digest", b"d", acl=[digest_acl])
zk.create("/acl/ip", b"i", acl=[ip_acl])
zk.create("/acl/both", b"b", acl=[digest_acl, ip_acl])
zk.create("/acl/nulldata", None)
host, port = hosts.split(",")[0].split(":")
raw = zkraw.RawClient(host, int(port), timeout_ms=int(timeout * 1000))
assert raw.create("/cont", b"c", op=zkraw.CREATE_CONTAINER, flags=4).err == 0
assert raw.create("/cont/child", b"k").err == 0
assert raw.create("/cont-empty", b"", op=zkraw.CREATE_CONTAINER, flags=4).err == 0
assert raw.create("/ttl", b"t", op=zkraw.CREATE_TTL, flags=5, ttl=3600000).err == 0
assert raw.create("/ttl-seq-", b"t", op=zkraw.CREATE_TTL, flags=6, ttl=3600000).err == 0
raw.close_socket()
live = []
last_seq = None
deadline = time.time() + 120
for i in range(ops):
    if time.time() > deadline:
        break
    r = rng.random()
    if r < 0.30 or not live:
        p = f"/app/n{i}"
        zk.create(p, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))))
        live.append(p)
    elif r < 0.45:
        zk.set(rng.choice(live), str(i).encode())
    elif r < 0.52:
        p = live.pop(rng.randrange(len(live)))
        zk.delete(p)
    elif r < 0.57:
        zk.set_acls(rng.choice(live), [digest_acl, ip_acl] if rng.random() < 0.5 else [ip_acl])
    elif r < 0.70:
        last_seq = zk.create("/seq/item-", b"s", sequence=True)
    elif r < 0.80:
        x = rng.random()
        if x < 0.35:
            zk.create("/mixed/m-", b"m", sequence=True)
        elif x < 0.7:
            zk.create(f"/mixed/p{i}", b"p")
        else:
            kids = zk.get_children("/mixed")
            if kids:
                zk.delete("/mixed/" + rng.choice(kids))
    elif r < 0.92:
        t = zk.transaction()
        p = f"/app/multi{i}"
        t.create(p, b"x")
        t.set_data(p, b"y")
        if live:
            q = rng.choice(live)
            t.check(q, -1)
        t.create(p + "-b")
        t.delete(p + "-b")
        res = t.commit()
        assert not any(isinstance(x, Exception) for x in res), res
        live.append(p)
    else:
        # A failed multi: ZooKeeper logs it as a multi of error txns.
        t = zk.transaction()
        t.create(f"/app/never{i}")
        t.check("/app", 12345)
        t.commit()
ephemerals = [zk.create("/eph/e1", b"held", ephemeral=True),
              zk.create("/eph/s-", b"held", ephemeral=True, sequence=True),
              zk.create("/app/eph-under-app", b"held", ephemeral=True)]
sid, pw = zk.client_id
with open(out + ".tmp", "w") as f:
    json.dump({"sid": sid, "pw": pw.hex(), "ephemerals": ephemerals, "last_seq": last_seq}, f)
import os
os.rename(out + ".tmp", out)
time.sleep(600)
'''


class Holder:
    """The load, then a session held open (with its ephemerals) until SIGKILLed."""

    def __init__(self, workdir, hosts, seed, ops):
        self.info_path = os.path.join(workdir, "holder.json")
        self.log = open(os.path.join(workdir, "holder.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, hosts, self.info_path, str(seed), HERE, str(ops),
             str(SESSION_TIMEOUT_S)], stdout=self.log, stderr=self.log)

    def wait(self, timeout=240):
        end = time.time() + timeout
        while time.time() < end:
            if os.path.exists(self.info_path):
                with open(self.info_path) as f:
                    return json.load(f)
            if self.proc.poll() is not None:
                raise RuntimeError(f"load failed: {open(self.log.name).read()[-3000:]}")
            time.sleep(0.2)
        raise RuntimeError("load did not finish")

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def kazoo(hosts, **kw):
    from kazoo.client import KazooClient
    zk = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT_S, **kw)
    zk.start(timeout=30)
    return zk


def dump(hosts):
    """Every znode: path -> (data hex or None, ACLs, the full Stat), through kazoo."""
    zk = kazoo(hosts)
    try:
        zk.add_auth("digest", f"{USER}:{PASSWORD}")
        out, todo = {}, ["/"]
        while todo:
            p = todo.pop()
            data, stat = zk.get(p)
            acls, _ = zk.get_acls(p)
            out[p] = {
                "data": None if data is None else data.hex(),
                "acl": sorted((a.perms, a.id.scheme, a.id.id) for a in acls),
                "stat": [stat.czxid, stat.mzxid, stat.ctime, stat.mtime, stat.version,
                         stat.cversion, stat.aversion, stat.ephemeralOwner, stat.dataLength,
                         stat.numChildren, stat.pzxid],
            }
            for c in zk.get_children(p):
                todo.append(("" if p == "/" else p) + "/" + c)
        return out
    finally:
        zk.stop()
        zk.close()


def same_tree(want, got, what):
    if want == got:
        log(f"{what}: {len(got)} znodes equal (data, ACL, all Stat fields)")
        return
    missing = sorted(set(want) - set(got))[:10]
    extra = sorted(set(got) - set(want))[:10]
    differ = [(p, want[p], got[p]) for p in sorted(want) if p in got and want[p] != got[p]][:10]
    raise AssertionError(f"{what}: trees differ: missing {missing}, extra {extra}, "
                         f"differing {differ}")


def tree_hash(d):
    """Every file under d with its sha256 (to prove nothing was written)."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def run_zk_load(workdir, port, extra, seed, ops, ensemble=0):
    """Starts ZooKeeper, runs the load, holds a session, dumps, stops ZooKeeper (the held
    session is still open at the stop). Returns (zk, dump, holder info)."""
    zk = ApacheZk(workdir, port, ["snapCount=200"] + list(extra), ensemble)
    zk.start()
    hosts = zk.connect()
    holder = Holder(workdir, hosts, seed, ops)
    try:
        info = holder.wait()
        d = dump(hosts)
    finally:
        holder.kill()
    zk.stop()
    return zk, d, info


def check_resume(hosts, info, want_dump):
    """The held session resumes on `hosts` with its ephemerals."""
    zk = kazoo(hosts, client_id=(info["sid"], bytes.fromhex(info["pw"])))
    try:
        assert zk.client_id[0] == info["sid"], \
            f"session {info['sid']:#x} not resumed (got {zk.client_id[0]:#x})"
        for p in info["ephemerals"]:
            st = zk.exists(p)
            assert st is not None, f"ephemeral {p} missing after resume"
            assert st.ephemeralOwner == info["sid"], (p, st)
            assert want_dump[p]["stat"][7] == info["sid"]
        zk.create("/app/after-resume", b"r")
    finally:
        zk.stop()  # closes the session: its ephemerals go
        zk.close()
    zk = kazoo(hosts)
    try:
        for p in info["ephemerals"]:
            assert zk.exists(p) is None, f"ephemeral {p} outlived its closed session"
    finally:
        zk.stop()
        zk.close()
    log(f"session {info['sid']:#x} resumed with {len(info['ephemerals'])} ephemerals")


def check_sequential(hosts, want_dump, info):
    """The next sequential child continues ZooKeeper's numbering: /seq only ever had
    sequential creates (next = last + 1); /mixed had creates and deletes (next = the
    stored cversion, which ZooKeeper shows as 2 * stored - numChildren)."""
    zk = kazoo(hosts)
    try:
        last = int(info["last_seq"].rsplit("-", 1)[1])
        p = zk.create("/seq/item-", b"s", sequence=True)
        assert p == f"/seq/item-{last + 1:010d}", (p, last)
        st = want_dump["/mixed"]["stat"]
        stored = (st[5] + st[9]) // 2
        p = zk.create("/mixed/m-", b"m", sequence=True)
        assert p == f"/mixed/m-{stored:010d}", (p, st)
        log(f"sequential numbering continues: {p}")
    finally:
        zk.stop()
        zk.close()


def rk_server(binary, workdir, port, **kw):
    os.makedirs(workdir, exist_ok=True)
    return rkharness.Server(binary, workdir, port, **kw)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    return r.returncode, r.stdout + r.stderr


# ---------------------------------------------------------------- scenarios


def digests_agree(text):
    """Whether the import found every digest ZooKeeper recorded equal to the replay's,
    except possibly the one its fuzzy snapshot recorded: ZooKeeper writes the snapshot
    while it applies txns, so the nodes can hold changes newer than the zxid of the
    digest it wrote with them, and its own start (`compareSnapshotDigests`) reports
    that mismatch the same way. A loaded machine makes that overlap likely. Every
    logged txn's digest must still agree."""
    if "all equal" in text:
        return True
    m = re.search(r"snapshot \S*snapshot\.([0-9a-f]+) and \d+ txns", text)
    w = re.search(r"WARNING: (\d+) of \d+ digests ZooKeeper recorded differ "
                  r"\(first at zxid 0x([0-9a-f]+)", text)
    return bool(m and w and w.group(1) == "1" and int(w.group(2), 16) == int(m.group(1), 16))


def standalone(binary, tmp):
    for i, compression in enumerate(["", "gz", "snappy"]):
        work = os.path.join(tmp, f"zk-{compression or 'plain'}")
        os.makedirs(work)
        zport, rport, zport2 = rkharness.free_ports(3)
        extra = [f"snapshot.compression.method={compression}"] if compression else []
        zk, want, info = run_zk_load(work, zport, extra, seed=100 + i, ops=1500)
        src = zk.data_dir()
        names = os.listdir(os.path.join(src, "version-2"))
        snaps = [n for n in names if n.startswith("snapshot.")]
        logs = [n for n in names if n.startswith("log.")]
        assert len(snaps) >= 2 and logs, names
        if compression:
            assert all(n.endswith("." + compression) for n in snaps), snaps
        before = tree_hash(os.path.join(src, "version-2"))
        log(f"[{compression or 'plain'}] ZooKeeper wrote {len(snaps)} snapshots, {len(logs)} logs, "
            f"{len(want)} znodes")
        if i == 1:
            # Offline: import into a new directory, then serve it.
            rk_dir = os.path.join(work, "rk-data")
            code, out = run([binary, "data", "import-zookeeper", src, rk_dir])
            assert code == 0, out
            log(out.strip())
            assert digests_agree(out), out
        else:
            rk_dir = src  # RingKeeper on ZooKeeper's own dataDir: imported at start.
        server = rk_server(binary, os.path.join(work, "rk"), rport, data_dir=rk_dir,
                                  cfg_lines=["extendedTypesEnabled=true"])
        server.start()
        try:
            if rk_dir == src:
                text = server.tail(20000)
                assert "holds Apache ZooKeeper's data" in text, text
                assert "imported ZooKeeper's data" in text and digests_agree(text), text
            hosts = f"127.0.0.1:{rport}"
            got = dump(hosts)
            same_tree(want, got, f"[{compression or 'plain'}] RingKeeper after import")
            check_resume(hosts, info, want)
            check_sequential(hosts, want, info)
            assert tree_hash(os.path.join(src, "version-2")) == before, \
                "ZooKeeper's files changed"
            if i != 0:
                continue
            # Round trip: one more held session on RingKeeper, then export and start
            # Apache ZooKeeper on the export.
            zk2 = kazoo(hosts)
            zk2.create("/rk-made/eph", b"rk", ephemeral=True, makepath=True)
            rk_sid, rk_pw = zk2.client_id
            rk_dump = dump(hosts)
        finally:
            server.stop()
        back = os.path.join(work, "zk-back")
        code, out = run([binary, "data", "export-zookeeper", rk_dir, os.path.join(back, "data")])
        assert code == 0, out
        log(out.strip())
        zkb = ApacheZk(back, zport2)
        zkb.start()
        try:
            hosts = zkb.connect()
            got = dump(hosts)
            same_tree(rk_dump, got, "Apache ZooKeeper on RingKeeper's export")
            c = kazoo(hosts, client_id=(rk_sid, rk_pw))
            try:
                assert c.client_id[0] == rk_sid, "RingKeeper's session did not resume on ZooKeeper"
                assert c.exists("/rk-made/eph").ephemeralOwner == rk_sid
            finally:
                c.stop()
                c.close()
            log(f"RingKeeper's session {rk_sid:#x} resumed on Apache ZooKeeper")
        finally:
            zkb.stop()
        text = zkb.log_text()
        assert "Digests are not matching" not in text, "ZooKeeper found a digest mismatch"
        # ZooKeeper computes the digest of what it loaded: it must be the export's.
        loaded = re.findall(r"Snapshot loaded in \d+ ms, highest zxid is 0x([0-9a-f]+), "
                            r"digest is (-?\d+)", text)
        want_digest = re.search(r"ZooKeeper digest (-?\d+)", out).group(1)
        if all(os.path.exists(j) for j in SLF4J_JARS):
            assert loaded and loaded[0][1] == want_digest, (loaded, want_digest)
            log(f"ZooKeeper loaded the export with digest {loaded[0][1]}, the export's")
        if ZK39_CLASSPATH:
            back39 = os.path.join(work, "zk39-back")
            code, out = run([binary, "data", "export-zookeeper", rk_dir,
                             os.path.join(back39, "data")])
            assert code == 0, out
            zk39 = ApacheZk(back39, rkharness.free_ports(1)[0])
            zk39.classpath = ZK39_CLASSPATH
            zk39.start()
            try:
                same_tree(rk_dump, dump(zk39.connect()),
                          "Apache ZooKeeper 3.9 on RingKeeper's export")
            finally:
                zk39.stop()
        try:
            zk2.stop()
            zk2.close()
        except Exception:
            pass


def records(path):
    """(offset, crc, length) of each record of a ZooKeeper log file."""
    with open(path, "rb") as f:
        b = f.read()
    out, pos = [], 16
    while pos + 12 <= len(b):
        crc, n = struct.unpack(">qi", b[pos:pos + 12])
        if n <= 0 or pos + 12 + n + 1 > len(b) or b[pos + 12 + n] != 0x42:
            break
        out.append((pos, crc, n))
        pos += 12 + n + 1
    return b, out


def rewrite_record(b, off, n, new_payload):
    """b with the record at off (payload length n) replaced by new_payload, Adler-32 fixed."""
    rec = struct.pack(">qi", zlib.adler32(new_payload), len(new_payload)) + new_payload + b"B"
    return b[:off] + rec + b[off + 12 + n + 1:]


def expect_refusal(binary, src, needles, tmp, label, extra_args=()):
    """`data import-zookeeper` refuses src with a message holding every needle; src is
    unchanged and no destination (or staging directory) is left."""
    before = tree_hash(src)
    dst = os.path.join(tmp, f"dst-{label}")
    code, out = run([binary, "data", "import-zookeeper", *extra_args, src, dst])
    assert code != 0, f"{label}: import of damaged data succeeded: {out}"
    for n in needles:
        assert n in out, f"{label}: message lacks {n!r}: {out}"
    assert tree_hash(src) == before, f"{label}: the source changed"
    assert not os.path.exists(dst), f"{label}: {dst} left behind"
    left = [n for n in os.listdir(tmp) if "importing" in n]
    assert not left, f"{label}: staging left behind: {left}"
    log(f"{label}: refused: {out.strip().splitlines()[-1][:300]}")
    return out


def bad(binary, tmp):
    work = os.path.join(tmp, "zk")
    os.makedirs(work)
    zport, rport = rkharness.free_ports(2)
    zk, want, _ = run_zk_load(work, zport, [], seed=7, ops=600)
    src = os.path.join(zk.data_dir(), "version-2")
    logs = sorted((n for n in os.listdir(src) if n.startswith("log.")),
                  key=lambda n: int(n.split(".")[1], 16))

    def copy(label):
        d = os.path.join(tmp, label, "data")
        shutil.copytree(zk.data_dir(), d)
        return d

    # 1. A corrupt Adler-32: one flipped byte inside a record of the newest log.
    d = copy("adler")
    newest = os.path.join(d, "version-2", logs[-1])
    b, recs = records(newest)
    assert len(recs) >= 2, recs
    off, _, n = recs[len(recs) // 2]
    b = bytearray(b)
    b[off + 12 + n // 2] ^= 0x20
    with open(newest, "wb") as f:
        f.write(b)
    expect_refusal(binary, d, [newest, f"at byte {off}", "Adler-32"], tmp, "adler")
    # ... and a server started on it refuses to start and writes nothing.
    before = tree_hash(d)
    server = rk_server(binary, os.path.join(tmp, "adler", "rk"), rport, data_dir=d)
    server.launch()
    server.proc.wait(timeout=60)
    assert server.proc.returncode != 0, "server started on a corrupt log"
    assert f"at byte {off}" in server.tail(), server.tail()
    assert tree_hash(d) == before, "the server wrote into the damaged dataDir"
    log("adler: the server refuses to start and writes nothing")

    # 2. Truncated snapshots: the newest cut in half is skipped, as ZooKeeper does, when
    # the logs reach back to the previous one; all of them cut: refused.
    d = copy("trunc-newest")
    snaps = sorted((n for n in os.listdir(os.path.join(d, "version-2"))
                    if n.startswith("snapshot.")), key=lambda n: int(n.split(".")[1], 16))
    p = os.path.join(d, "version-2", snaps[-1])
    size = os.path.getsize(p)
    os.truncate(p, size // 2)
    dst = os.path.join(tmp, "trunc-newest", "rk")
    code, out = run([binary, "data", "import-zookeeper", d, dst])
    assert code == 0, out
    assert p in out and "truncated" in out, out
    server = rk_server(binary, os.path.join(tmp, "trunc-newest", "srv"), rport,
                              data_dir=dst)
    server.start()
    try:
        same_tree(want, dump(f"127.0.0.1:{rport}"), "after skipping a truncated snapshot")
    finally:
        server.stop()
    d = copy("trunc-all")
    for s in snaps:
        q = os.path.join(d, "version-2", s)
        os.truncate(q, os.path.getsize(q) // 2)
    q = os.path.join(d, "version-2", snaps[-1])
    expect_refusal(binary, d, [q, "at byte", "truncated"], tmp, "trunc-all")

    # 3. An unknown txn type in the newest log (Adler-32 made right for it).
    d = copy("unknown")
    newest = os.path.join(d, "version-2", logs[-1])
    b, recs = records(newest)
    off, _, n = recs[-1]
    payload = bytearray(b[off + 12:off + 12 + n])
    payload[28:32] = struct.pack(">i", 99)
    with open(newest, "wb") as f:
        f.write(rewrite_record(b, off, n, bytes(payload)))
    expect_refusal(binary, d, [newest, f"at byte {off + 12 + 28}", "unknown txn type 99"],
                   tmp, "unknown")

    # 4. A ZooKeeper 3.4 layout: no snapshot yet (3.4 writes its first after snapCount
    # txns), no digests after the txns, closeSession without its CloseSessionTxn.
    d = copy("zk34")
    v2 = os.path.join(d, "version-2")
    stripped = 0
    for name in os.listdir(v2):
        q = os.path.join(v2, name)
        if name.startswith("snapshot."):
            os.remove(q)
        elif name.startswith("log."):
            b, recs = records(q)
            for off, _, n in reversed(recs):
                payload = b[off + 12:off + 12 + n]
                if payload[-12:-8] == b"\x00\x00\x00\x02":
                    payload = payload[:-12]
                    stripped += 1
                if struct.unpack(">i", payload[28:32])[0] == -11:
                    payload = payload[:32]
                b = rewrite_record(b, off, n, payload)
            with open(q, "wb") as f:
                f.write(b)
    assert stripped > 0
    first_log = os.path.join(v2, logs[0])
    expect_refusal(binary, d, [first_log, "at byte 16", "ZooKeeper 3.4", "trust-empty-snapshot"],
                   tmp, "zk34")
    dst = os.path.join(tmp, "zk34", "rk")
    code, out = run([binary, "data", "import-zookeeper", "--trust-empty-snapshot", d, dst])
    assert code == 0, out
    server = rk_server(binary, os.path.join(tmp, "zk34", "srv"), rport, data_dir=dst)
    server.start()
    try:
        same_tree(want, dump(f"127.0.0.1:{rport}"), "3.4 layout replayed from the empty tree")
    finally:
        server.stop()


def free_ensemble_base():
    """A base for scripts/apache-zk.sh start-ensemble: ports base+1..+3 (clients),
    +101..+103 and +201..+203 (quorum, election) all free now, below the kernel's
    ephemeral range."""
    import socket
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 29000)
        socks = []
        try:
            for off in (1, 2, 3, 101, 102, 103, 201, 202, 203):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + off))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range for the ensemble")


def ensemble(binary, tmp):
    work = os.path.join(tmp, "zk")
    os.makedirs(work)
    base = free_ensemble_base()
    zk, want, info = run_zk_load(work, base, [], seed=11, ops=800, ensemble=3)
    servers = []
    cports = rkharness.free_ports(3)
    qports = rkharness.free_ports(6)
    lines = [f"server.{i + 1}=127.0.0.1:{qports[2 * i]}:{qports[2 * i + 1]}" for i in range(3)]
    for i in range(1, 4):
        src = zk.data_dir(i)
        dst = os.path.join(tmp, f"rk{i}", "data")
        code, out = run([binary, "data", "import-zookeeper", src, dst])
        assert code == 0, out
        log(f"server {i}: {out.strip()}")
        assert "all equal" in out, out
        with open(os.path.join(dst, "myid")) as f:
            assert f.read().strip() == str(i)
        s = rk_server(binary, os.path.join(tmp, f"rk{i}"), cports[i - 1], data_dir=dst,
                             cfg_lines=["initLimit=10", "syncLimit=5",
                                        "extendedTypesEnabled=true"] + lines)
        servers.append(s)
    try:
        for s in servers:
            s.launch()
        end = time.time() + 90
        while time.time() < end and not all(s.mode() in ("leader", "follower") for s in servers):
            time.sleep(0.2)
        modes = [s.mode() for s in servers]
        assert sorted(modes) == ["follower", "follower", "leader"], modes
        log(f"RingKeeper ensemble elected: {modes}")
        # /zookeeper/config is the one node each server writes locally at its start (its
        # config in force, version -1), in ZooKeeper as in RingKeeper: here the three
        # RingKeeper servers' lines and version 0 (reconfig is off). The rest must be
        # ZooKeeper's tree, on every server, and the servers must agree on all.
        dumps = [dump(f"127.0.0.1:{s.port}") for s in servers]
        assert dumps[0] == dumps[1] == dumps[2], "RingKeeper's servers disagree"
        cfg = dumps[0]["/zookeeper/config"]
        text = bytes.fromhex(cfg["data"]).decode()
        lines = text.split("\n")
        assert lines[-1] == "version=0", text
        assert [x.split("=")[0] for x in lines[:-1]] == ["server.1", "server.2", "server.3"], text
        assert all(x.endswith(":participant") for x in lines[:-1]), text
        assert cfg["acl"] == [(1, "world", "anyone")] and cfg["stat"][4] == -1, cfg
        for d in [want] + dumps:
            del d["/zookeeper/config"]
        for s, d in zip(servers, dumps):
            same_tree(want, d, f"RingKeeper server on {s.port} (all but /zookeeper/config)")
        check_resume(",".join(f"127.0.0.1:{s.port}" for s in servers), info, want)
    finally:
        for s in servers:
            s.stop()


def main():
    binary, scenario = sys.argv[1], sys.argv[2]
    if not os.path.exists("/usr/share/java/zookeeper.jar"):
        print("zk_migrate: Apache ZooKeeper (Debian package zookeeper) is not installed")
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix=f"rk-zkmig-{scenario}-")
    ok = False
    try:
        {"standalone": standalone, "bad": bad, "ensemble": ensemble}[scenario](binary, tmp)
        ok = True
        log(f"{scenario}: PASS")
    finally:
        if ok and not os.environ.get("KEEP_SERVER_DIRS"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
