"""Backups under load with point-in-time restore (issue 14).

Usage: backup_pitr.py RINGKEEPER_BIN

A RingKeeper server (small log segments and snapCount, so that snapshots and closed
segments come and go) takes a kazoo write load for a few seconds while `ringkeeper backup`
runs beside it, and a poller records the server's `hash` (zxid, digest of the served
tree) every few milliseconds. Then:
  - `ringkeeper backup verify` finds the backup valid;
  - restores to several recorded zxids each give a server whose `hash` is the live
    server's at that zxid (the digests are compared);
  - a restore of the newest point equals the live tree at the end (digest and a full
    dump): no acknowledged write is lost, and every acknowledged create is there;
  - a restore to a time lands between the recorded points around that time, and equals
    the restore to the zxid it chose;
  - a damaged backup object fails `backup verify` and the restores that need it.

Every server listens on 127.0.0.1 and is stopped by its PID; the load is bounded in time.
"""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import rkharness  # noqa: E402

LOAD_SECONDS = 6.0
# The load goes on past LOAD_SECONDS until the live server has written this many log
# segments and snapshots (what the checks below need), at most MAX_LOAD_SECONDS: on a
# loaded machine 6 s may hold only a few hundred requests.
MIN_SEGMENTS, MIN_SNAPSHOTS, MAX_LOAD_SECONDS = 3, 2, 120.0
# A bound on how long a txn takes from its time stamp to being served (its log write
# and apply), for the restore-to-time check's upper point.
VISIBLE_WITHIN_MS = 2000


def log(*a):
    print("backup_pitr:", *a, flush=True)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


def server(binary, workdir, port, data_dir):
    os.makedirs(workdir, exist_ok=True)
    return rkharness.Server(binary, workdir, port, data_dir=data_dir,
                            cfg_lines=["snapCount=400", f"logSegmentSize={1 << 20}",
                                       "4lw.commands.whitelist=*"])


def hash_of(port):
    return rkharness.parse_hash(rkharness.four_letter(port, "hash"))


def dump(port):
    zk = rkharness.connect(port)
    try:
        out, todo = {}, ["/"]
        while todo:
            p = todo.pop()
            data, st = zk.get(p)
            out[p] = (data, st.mzxid, st.version, st.cversion, st.pzxid)
            todo += [("" if p == "/" else p) + "/" + c for c in zk.get_children(p)]
        return out
    finally:
        zk.stop()
        zk.close()


def main():
    binary = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="rk-backup-")
    ok = False
    procs = []
    try:
        port, rport = rkharness.free_ports(2)
        live = server(binary, os.path.join(tmp, "live"), port, os.path.join(tmp, "live", "data"))
        live.start()
        backup_dir = os.path.join(tmp, "backup")
        blog = open(os.path.join(tmp, "backup.log"), "w")
        bk = subprocess.Popen([binary, "backup", live.cfg, "--to", backup_dir,
                               "--interval-ms", "200"], stdout=blog, stderr=blog)
        procs.append(bk)

        # The poller: (zxid, digest, wall ms answered, wall ms asked) of the served tree,
        # as often as it answers.
        points, stop = [], threading.Event()

        def poll():
            while not stop.is_set():
                asked = int(time.time() * 1000)
                h = hash_of(port)
                if h and (not points or points[-1][0] != h[0]):
                    points.append((h[0], h[1], int(time.time() * 1000), asked))
                time.sleep(0.005)

        poller = threading.Thread(target=poll)
        poller.start()
        zk = rkharness.connect(port)
        rng = random.Random(5)
        acked = {}
        zk.ensure_path("/load")
        start = time.time()
        live_data = os.path.join(tmp, "live", "data")

        def enough():
            names = os.listdir(live_data)
            return (sum(bool(re.fullmatch(r"log\.[0-9a-f]+", n)) for n in names) >= MIN_SEGMENTS
                    and sum(n.startswith("snapshot.") and not n.endswith(".tmp")
                            for n in names) >= MIN_SNAPSHOTS)

        i = 0
        while time.time() < start + MAX_LOAD_SECONDS and (
                time.time() < start + LOAD_SECONDS or i % 50 != 0 or not enough()):
            i += 1
            r = rng.random()
            p = f"/load/n{rng.randrange(400)}"
            data = os.urandom(rng.randrange(10, 300))
            try:
                if r < 0.6:
                    zk.create(p, data)
                    acked[p] = data
                elif r < 0.9 and p in acked:
                    zk.set(p, data)
                    acked[p] = data
                elif p in acked:
                    zk.delete(p)
                    del acked[p]
            except Exception as e:  # NodeExists / NoNode from the random choice
                if type(e).__name__ not in ("NodeExistsError", "NoNodeError"):
                    raise
        zk.stop()
        zk.close()
        time.sleep(0.3)
        stop.set()
        poller.join()
        live_dump = dump(port)
        # After the dump: its session's createSession and closeSession are txns too.
        final = hash_of(port)
        log(f"{i} requests, {len(points)} (zxid, digest) points recorded, live ends at "
            f"zxid {final[0]:#x}")
        # The daemon stops on SIGTERM; then one more pass, to the newest point.
        bk.send_signal(signal.SIGTERM)
        bk.wait(timeout=60)
        assert bk.returncode == 0, open(blog.name).read()[-3000:]
        code, out = run([binary, "backup", live.cfg, "--to", backup_dir, "--once"])
        assert code == 0, out
        names = os.listdir(backup_dir)
        snaps = [n for n in names if n.startswith("snapshot.")]
        segs = [n for n in names if n.startswith("log.")]
        log(f"backup holds {len(snaps)} snapshots and {len(segs)} segments")
        assert len(snaps) >= 2 and len(segs) >= 3, names

        code, out = run([binary, "backup", "verify", backup_dir])
        assert code == 0 and "VALID" in out, out
        log("backup verify: VALID")

        def restore_and_hash(args, label):
            dst = os.path.join(tmp, f"restore-{label}")
            code, out = run([binary, "restore", "--from", backup_dir, *args, dst])
            assert code == 0, out
            s = server(binary, os.path.join(tmp, f"srv-{label}"), rport, dst)
            s.start()
            try:
                h = hash_of(rport)
                d = dump(rport) if label == "latest" else None
            finally:
                s.stop()
            return h, d

        # Points spread over the run, including early ones behind several snapshots.
        chosen = [points[len(points) * k // 5] for k in range(1, 5)]
        for z, digest, _, _ in chosen:
            h, _ = restore_and_hash(["--to-zxid", hex(z)], f"z{z:x}")
            assert h == (z, digest), f"restore to {z:#x}: served {h}, live had {(z, digest)}"
            log(f"restore to zxid {z:#x}: digest {digest} equals the live tree's at that zxid")

        h, d = restore_and_hash(["--latest"], "latest")
        assert h == final, f"latest restore {h}, live ended at {final}"
        assert d == live_dump, "latest restore's tree differs from the live tree"
        for p, data in acked.items():
            assert d[p][0] == data, f"acknowledged write to {p} lost"
        log(f"restore of the newest point equals the live tree ({len(d)} znodes, "
            f"{len(acked)} acknowledged nodes all present)")

        # By time: between the points recorded just before and after it.
        k = len(points) // 2
        t = points[k][2]
        h, _ = restore_and_hash(["--to-time", str(t)], "time")
        assert points[k][0] <= h[0], (h, points[k])
        # A txn stamped by t is served once it is durable, which a loaded machine may
        # delay: the upper bound is a point asked for well after that.
        # The load runs LOAD_SECONDS at least, so points go on well past its middle.
        later = [p for p in points if p[3] > t + VISIBLE_WITHIN_MS]
        assert later, f"no point asked {VISIBLE_WITHIN_MS} ms after {t}: {points[-1]}"
        assert h[0] <= later[0][0], (h, later[0])
        h2, _ = restore_and_hash(["--to-zxid", hex(h[0])], "time-check")
        assert h2 == h, (h2, h)
        log(f"restore to time {t}: zxid {h[0]:#x}, between {points[k][0]:#x} (served at "
            f"{t}) and {later[0][0]:#x} (asked for {later[0][3] - t} ms later)")

        # Damage: a flipped byte in the newest backed-up segment (every restore of the
        # newest point needs it).
        victim = sorted(segs)[-1]
        p = os.path.join(backup_dir, victim)
        b = bytearray(open(p, "rb").read())
        b[len(b) // 2] ^= 1
        open(p, "wb").write(b)
        code, out = run([binary, "backup", "verify", backup_dir])
        assert code != 0 and victim in out and "CRC32C" in out, out
        code, out = run([binary, "restore", "--from", backup_dir, "--latest",
                         os.path.join(tmp, "restore-bad")])
        assert code != 0 and victim in out and "CRC32C" in out, out
        assert not os.path.exists(os.path.join(tmp, "restore-bad")), "half restore left"
        assert not [n for n in os.listdir(tmp) if n.startswith(".rk-restore")], \
            "restore staging left behind"
        log(f"a damaged {victim}: verify fails naming it, restore refuses and leaves nothing")
        live.stop()
        ok = True
        log("PASS")
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
                pr.wait()
        if ok and not os.environ.get("KEEP_SERVER_DIRS"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
