#!/usr/bin/env python3
"""The server-level disk-full test (issue 3, "Disk trouble"): RingKeeper runs with its data
directory on a small loop-mounted ext4 (O_DIRECT works there, not on tmpfs); a real client
(kazoo) writes while the file system is filled by a filler file. Then:

  * a write the log could not make durable is answered SYSTEMERROR (-1), never success,
    and with the disk still full every further write is answered SYSTEMERROR too;
  * reads still work and the server stays up;
  * once the filler is deleted, writes succeed again;
  * after a restart every acknowledged write (before and after the failure) is present
    with its data, no write answered SYSTEMERROR is, and `ringkeeper data check` passes.

Usage: disk_full.py RINGKEEPER_BINARY

Exit codes: 0 pass, 1 fail, 77 skipped because a loop-mounted ext4 cannot be made here
(not root, no loop device, no mkfs.ext4); the reason is printed.
"""

import faulthandler
import os
import shutil
import subprocess
import sys
import tempfile
import time

from kazoo.exceptions import SystemZookeeperError

from rkharness import Server, connect, data_check, free_port

SKIP = 77
# The file system: small so that filling it is quick, big enough for the server's
# segment, spare and the test's data (ext4 metadata takes a few MiB of it).
IMAGE_MIB = 64
# logSegmentSize: the smallest the config accepts, so the current segment and the spare
# (both preallocated, so writes into them need no space) are used up in a few hundred
# writes once the file system is full.
SEGMENT_BYTES = 1 << 20
# Payload per create: each batch takes at least one 4 KiB block; 2 KiB values make
# pipelined batches take more.
VALUE_BYTES = 2048
# Creates kept in flight while filling the log.
IN_FLIGHT = 32
# Writes before the filler at most. Bound: with the file system full, the current
# segment and the spare (2 MiB) hold at most 512 batches; 4000 is far beyond that.
MAX_WRITES_UNTIL_FAILURE = 4000
# Single writes after the first failure until one fails (the rest of the current
# segment: at most 256 blocks of 4 KiB), bounded.
MAX_WRITES_UNTIL_FULL = 600
# Writes answered while the disk is still full, after that: all must fail.
WRITES_WHILE_FULL = 50
# Attempts (0.1 s apart) to write once space is back before giving up.
RECOVER_ATTEMPTS = 100
# Writes after recovery: all must succeed.
WRITES_AFTER_RECOVERY = 200
# Bytes written per call when topping up the filler after fallocate, and its bound.
TOP_UP_CHUNK = 4096
TOP_UP_MAX_CHUNKS = (IMAGE_MIB << 20) // TOP_UP_CHUNK


def run_ok(*cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return r.returncode == 0, (r.stderr or r.stdout).strip()


class LoopFs:
    """A loop-mounted ext4 image in a temporary folder, unmounted and deleted on close."""

    def __init__(self, base):
        self.img = os.path.join(base, "fs.img")
        self.mnt = os.path.join(base, "mnt")
        self.mounted = False
        os.makedirs(self.mnt)

    def make(self):
        if os.geteuid() != 0:
            return "not root: mount -o loop needs CAP_SYS_ADMIN"
        if shutil.which("mkfs.ext4") is None:
            return "mkfs.ext4 not installed (e2fsprogs)"
        with open(self.img, "wb") as f:
            f.truncate(IMAGE_MIB << 20)
        ok, err = run_ok("mkfs.ext4", "-q", "-F", self.img)
        if not ok:
            return f"mkfs.ext4 failed: {err}"
        ok, err = run_ok("mount", "-o", "loop", self.img, self.mnt)
        if not ok:
            return f"mount -o loop failed (no loop device?): {err}"
        self.mounted = True
        return None

    def close(self):
        if self.mounted:
            ok, err = run_ok("umount", self.mnt)
            if not ok:
                print(f"disk_full: WARNING: umount {self.mnt} failed: {err}")
            self.mounted = not ok


class Writer:
    """Creates /df/nNNNNN nodes and sorts every answer: acknowledged, SYSTEMERROR, other."""

    def __init__(self, zk):
        self.zk = zk
        self.next = 0
        self.acked = {}
        self.failed = []
        self.other = []

    def value(self, n):
        return (f"df-{n}-".encode() * (VALUE_BYTES // 8 + 1))[:VALUE_BYTES]

    def batch(self, count):
        """Sends `count` creates (IN_FLIGHT at a time); returns (acked, failed) counts."""
        acked = failed = 0
        sent = 0
        while sent < count:
            window = []
            for _ in range(min(IN_FLIGHT, count - sent)):
                path = f"/df/n{self.next:06d}"
                data = self.value(self.next)
                self.next += 1
                sent += 1
                window.append((path, data, self.zk.create_async(path, data)))
            for path, data, res in window:
                try:
                    res.get(timeout=20)
                    self.acked[path] = data
                    acked += 1
                except SystemZookeeperError:
                    self.failed.append(path)
                    failed += 1
                except Exception as e:  # noqa: BLE001 - every other answer is a failure
                    self.other.append((path, repr(e)))
        return acked, failed


def fill(path):
    """Fills the file system: fallocate what statvfs reports free, then write until
    ENOSPC (bounded), and sync. Returns the filler's size."""
    st = os.statvfs(os.path.dirname(path))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, st.f_bfree * st.f_frsize)
        except OSError:
            pass  # Metadata may need a few blocks: the top-up below takes the rest.
        os.lseek(fd, 0, os.SEEK_END)
        chunk = b"\xff" * TOP_UP_CHUNK
        for _ in range(TOP_UP_MAX_CHUNKS):
            try:
                os.write(fd, chunk)
            except OSError:
                break
        try:
            os.fsync(fd)
        except OSError:
            pass
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def run(binary, fs, workdir):
    data_dir = os.path.join(fs.mnt, "data")
    server = Server(binary, workdir, free_port(), [f"logSegmentSize={SEGMENT_BYTES}"], data_dir)
    try:
        server.start()
        zk = connect(server.port)
        zk.create("/df", b"root")
        w = Writer(zk)
        w.batch(100)
        check(len(w.acked) == 100 and not w.failed and not w.other,
              f"writes before the filler: {len(w.acked)} acked, {w.failed[:3]}, {w.other[:3]}")

        filler = os.path.join(fs.mnt, "filler")
        size = fill(filler)
        st = os.statvfs(fs.mnt)
        print(f"disk_full: filler {size >> 20} MiB, {st.f_bfree * st.f_frsize} bytes left", flush=True)

        # Write until the log fails: the current segment and the spare are used up.
        before = len(w.acked)
        while not w.failed and w.next < MAX_WRITES_UNTIL_FAILURE:
            w.batch(IN_FLIGHT)
            check(not w.other, f"a write got neither success nor SYSTEMERROR: {w.other[:3]}")
        check(w.failed, f"no write failed after {w.next} writes on a full file system")
        print(f"disk_full: first SYSTEMERROR after {len(w.acked) - before} more acknowledged "
              f"writes ({w.next} sent)", flush=True)
        check(server.alive(), "server exited after the log failed")
        loud = [l for l in server.tail().splitlines() if "writing the transaction log failed" in l]
        check(loud, "no loud log line for the failed log write")
        print(f"disk_full: server said: {loud[0]}", flush=True)

        # The batch that failed needed a new segment; single writes may still fit in what
        # is left of the current one, and those are durable and acknowledged. Once that is
        # used up, with the disk still full, every write fails: none is acknowledged.
        for _ in range(MAX_WRITES_UNTIL_FULL):
            _, f = w.batch(1)
            check(not w.other, f"a write got neither success nor SYSTEMERROR: {w.other[:3]}")
            if f:
                break
        acked_before_full, failed_before = len(w.acked), len(w.failed)
        for _ in range(WRITES_WHILE_FULL):
            w.batch(1)
        check(not w.other, f"a write got neither success nor SYSTEMERROR: {w.other[:3]}")
        check(len(w.acked) == acked_before_full,
              f"{len(w.acked) - acked_before_full} writes acknowledged while the disk is full "
              "and the current segment is used up")
        check(len(w.failed) == failed_before + WRITES_WHILE_FULL, "a write was not answered")

        # Reads still work: the children list and data of acknowledged writes.
        children = set(zk.get_children("/df"))
        check(all(p.rsplit("/", 1)[1] in children for p in w.acked),
              "an acknowledged write is missing while the disk is full")
        check(not any(p.rsplit("/", 1)[1] in children for p in w.failed),
              "a write answered SYSTEMERROR is visible")
        for path in list(w.acked)[-20:]:
            check(zk.get(path)[0] == w.acked[path], f"{path}: wrong data while the disk is full")
        check(server.alive(), "server exited")

        # Space returns: writes succeed again.
        os.remove(filler)
        recovered = False
        for _ in range(RECOVER_ATTEMPTS):
            a, _ = w.batch(1)
            if a:
                recovered = True
                break
            time.sleep(0.1)
        check(recovered, f"writes did not succeed again after the filler was deleted: {server.tail()}")
        after = len(w.acked)
        w.batch(WRITES_AFTER_RECOVERY)
        check(len(w.acked) == after + WRITES_AFTER_RECOVERY and not w.other,
              f"after recovery {len(w.acked) - after} of {WRITES_AFTER_RECOVERY} writes acknowledged, "
              f"{w.other[:3]}")
        print(f"disk_full: {len(w.acked)} acknowledged, {len(w.failed)} SYSTEMERROR", flush=True)
        zk.stop()
        zk.close()

        # Restart: everything acknowledged is there, nothing that failed is.
        server.stop()
        server.start()
        zk = connect(server.port)
        children = set(zk.get_children("/df"))
        lost = [p for p in w.acked if p.rsplit("/", 1)[1] not in children]
        check(not lost, f"{len(lost)} acknowledged writes lost after restart, e.g. {lost[:5]}")
        ghosts = [p for p in w.failed if p.rsplit("/", 1)[1] in children]
        check(not ghosts, f"{len(ghosts)} writes answered SYSTEMERROR present after restart, e.g. {ghosts[:5]}")
        bad = [p for p, d in w.acked.items() if zk.get(p)[0] != d]
        check(not bad, f"{len(bad)} acknowledged writes have wrong data after restart, e.g. {bad[:5]}")
        zk.stop()
        zk.close()
        server.stop()
        code, out, err = data_check(binary, data_dir)
        print(out, end="")
        check(code == 0, f"data check failed ({code}): {err}")
        print(f"disk_full: PASS: {len(w.acked)} acknowledged writes present after restart, "
              f"{len(w.failed)} SYSTEMERROR answers, none present")
    except BaseException:
        print(f"disk_full: server log tail:\n{server.tail()}")
        raise
    finally:
        server.stop()


def main():
    # A hang prints every thread's stack and exits, so a stuck run says where it stuck.
    faulthandler.dump_traceback_later(240, exit=True)
    binary = sys.argv[1]
    base = tempfile.mkdtemp(prefix="rk-diskfull-")
    fs = LoopFs(base)
    try:
        why = fs.make()
        if why:
            print(f"disk_full: SKIPPED: cannot make a loop-mounted ext4: {why}")
            return SKIP
        try:
            run(binary, fs, base)
            return 0
        except AssertionError as e:
            print(f"disk_full: FAIL: {e}")
            return 1
    finally:
        fs.close()
        if not fs.mounted:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"disk_full: left {base} (still mounted)")


if __name__ == "__main__":
    sys.exit(main())
