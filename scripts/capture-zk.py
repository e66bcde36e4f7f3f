#!/usr/bin/env python3
"""Records the ZooKeeper client protocol as real clients speak it to Apache ZooKeeper.

A tiny TCP proxy on 127.0.0.1 sits between a client and a running Apache ZooKeeper
(start one with `scripts/apache-zk.sh start DIR PORT`; that script sets
extendedTypesEnabled=true, which TTL nodes need). Every frame in both directions is
written as one line of the scenario's file under OUT_DIR:

    c2s <opname> <hex of the whole frame, 4-byte length included>
    s2c <opname> <hex>
    # a note saying what the next exchange is

Replies are named by the opcode of the request with the same xid; xid -1 is
`notification`, -2 `ping`, -4 `auth`. The first frame each way is `connect`.

Scenarios: `kazoo` (kazoo drives every operation it has), `raw` (a minimal hand-written
client for what kazoo lacks: connect without readOnly, createContainer, createTTL,
multiRead, addWatch, checkWatches, removeWatches, getEphemerals,
getAllChildrenNumber, whoAmI, setWatches and setWatches2 on reconnect, an unknown
opcode, a top-level check) and `java` (the Java client, when a JDK and the
ZooKeeper jar are present).

Usage: scripts/capture-zk.py --zk 127.0.0.1:PORT --out tests/data/zk38 [scenario...]
The output is regenerable, but zxids, session ids, passwords and times change on every
run, so tests assert only what a scenario fixes (paths, data, versions, error codes).
"""

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

OPS = {
    0: "notification", 1: "create", 2: "delete", 3: "exists", 4: "getData", 5: "setData",
    6: "getACL", 7: "setACL", 8: "getChildren", 9: "sync", 11: "ping", 12: "getChildren2",
    13: "check", 14: "multi", 15: "create2", 16: "reconfig", 17: "checkWatches",
    18: "removeWatches", 19: "createContainer", 20: "deleteContainer", 21: "createTTL",
    22: "multiRead", 100: "auth", 101: "setWatches", 102: "sasl", 103: "getEphemerals",
    104: "getAllChildrenNumber", 105: "setWatches2", 106: "addWatch", 107: "whoAmI",
    -10: "createSession", -11: "closeSession",
}

# How long any single wait in this script may take before it gives up: generous,
# because the JVM on a shared two-core machine can stall for seconds.
WAIT_S = 20.0
# The largest frame the proxy accepts: ZooKeeper's default jute.maxbuffer.
MAX_FRAME = 0xFFFFF


class Recorder:
    """Collects the lines of one scenario in the order the proxy sees them."""

    def __init__(self):
        self.lines = []
        self.lock = threading.Lock()

    def add(self, line):
        with self.lock:
            self.lines.append(line)

    def note(self, text):
        self.add("# " + text)


class Proxy:
    """Forwards 127.0.0.1:<ephemeral> to ZooKeeper and records each frame."""

    def __init__(self, upstream, rec):
        self.upstream = upstream
        self.rec = rec
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.conns = []
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def address(self):
        return "127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            u = socket.create_connection(self.upstream, timeout=WAIT_S)
            u.settimeout(None)
            xids = {}
            self.conns.append((c, u))
            threading.Thread(target=self._pump, args=(c, u, "c2s", xids), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, "s2c", xids), daemon=True).start()

    def _pump(self, src, dst, direction, xids):
        buf = b""
        first = True
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                # Half-close only: the other direction may still carry the last reply
                # (closeSession's answer arrives after the client stopped sending).
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            buf += data
            while len(buf) >= 4:
                (n,) = struct.unpack(">i", buf[:4])
                if n < 0 or n > MAX_FRAME:
                    # Not a frame (a four-letter word): forward it unrecorded.
                    dst.sendall(buf)
                    buf = b""
                    break
                if len(buf) < 4 + n:
                    break
                frame, buf = buf[: 4 + n], buf[4 + n:]
                name = self._name(frame, direction, first, xids)
                first = False
                # Record before forwarding, so a reply is never named before its request.
                self.rec.add("%s %s %s" % (direction, name, frame.hex()))
                dst.sendall(frame)

    @staticmethod
    def _name(frame, direction, first, xids):
        if first:
            return "connect"
        if direction == "c2s":
            xid, op = struct.unpack(">ii", frame[4:12])
            name = OPS.get(op, "unknown%d" % op)
            xids[xid] = name
            return name
        (xid,) = struct.unpack(">i", frame[4:8])
        if xid == -1:
            return "notification"
        return xids.get(xid, "xid%d" % xid)

    def drop_clients(self):
        """Closes every proxied connection, which makes clients reconnect."""
        for c, u in self.conns:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.conns = []

    def close(self):
        self.stopping = True
        self.lsock.close()
        self.drop_clients()


# ---- a minimal raw client -------------------------------------------------------------

def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def boolean(v):
    return b"\x01" if v else b"\x00"


def buf(b):
    return i32(-1) if b is None else i32(len(b)) + b


def ustr(s):
    return buf(s.encode())


def strings(v):
    return i32(len(v)) + b"".join(ustr(s) for s in v)


OPEN_ACL = i32(1) + i32(31) + ustr("world") + ustr("anyone")


class Raw:
    """Sends hand-built frames and waits for the reply with the same xid."""

    def __init__(self, addr, read_only=None, session=(0, b"\x00" * 16), last_zxid=0):
        host, port = addr.split(":")
        self.s = socket.create_connection((host, int(port)), timeout=WAIT_S)
        self.xid = 0
        self.pending = b""
        body = i32(0) + i64(last_zxid) + i32(10000) + i64(session[0]) + buf(session[1])
        if read_only is not None:
            body += boolean(read_only)
        self.s.sendall(i32(len(body)) + body)
        resp = self.frame()
        _, timeout, self.session_id = struct.unpack(">iiq", resp[:16])
        (plen,) = struct.unpack(">i", resp[16:20])
        self.passwd = resp[20:20 + plen]
        self.last_zxid = last_zxid

    def frame(self):
        deadline = time.monotonic() + WAIT_S
        while True:
            if len(self.pending) >= 4:
                (n,) = struct.unpack(">i", self.pending[:4])
                if len(self.pending) >= 4 + n:
                    f, self.pending = self.pending[4:4 + n], self.pending[4 + n:]
                    return f
            if time.monotonic() > deadline:
                raise TimeoutError("no frame from server")
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("server closed the connection")
            self.pending += d

    def call(self, op, body, xid=None):
        if xid is None:
            self.xid += 1
            xid = self.xid
        payload = i32(xid) + i32(op) + body
        self.s.sendall(i32(len(payload)) + payload)
        while True:
            f = self.frame()
            rxid, zxid, err = struct.unpack(">iqi", f[:16])
            if rxid == xid:
                if zxid > self.last_zxid:
                    self.last_zxid = zxid
                return err, f[16:]

    def wait_notification(self):
        while True:
            f = self.frame()
            (rxid,) = struct.unpack(">i", f[:4])
            if rxid == -1:
                return f

    def close(self):
        try:
            self.call(-11, b"")
        except (OSError, ConnectionError, TimeoutError):
            pass
        self.s.close()


def scenario_raw(addr, rec):
    c = Raw(addr)  # no readOnly byte: the 44-byte ConnectRequest of older clients
    rec.note("createContainer /rawc")
    c.call(19, ustr("/rawc") + buf(b"c") + OPEN_ACL + i32(4))
    rec.note("createTTL /rawttl ttl=60000 mode PERSISTENT_WITH_TTL")
    c.call(21, ustr("/rawttl") + buf(b"t") + OPEN_ACL + i32(5) + i64(60000))
    rec.note("create /rawc/e ephemeral, null data")
    c.call(1, ustr("/rawc/e") + buf(None) + OPEN_ACL + i32(1))
    rec.note("exists miss /rawnone with watch")
    c.call(3, ustr("/rawnone") + boolean(True))
    rec.note("multiRead getData /rawc, getChildren /rawc, getData /rawnone (error)")
    ops = (i32(4) + boolean(False) + i32(-1) + ustr("/rawc") + boolean(False)
           + i32(8) + boolean(False) + i32(-1) + ustr("/rawc") + boolean(False)
           + i32(4) + boolean(False) + i32(-1) + ustr("/rawnone") + boolean(False)
           + i32(-1) + boolean(True) + i32(-1))
    c.call(22, ops)
    rec.note("multi create2 /rawm, createContainer /rawm2, createTTL /rawm3, setData /rawm, check /rawm v1, delete /rawm3")
    ops = (i32(15) + boolean(False) + i32(-1) + ustr("/rawm") + buf(b"m") + OPEN_ACL + i32(0)
           + i32(19) + boolean(False) + i32(-1) + ustr("/rawm2") + buf(b"") + OPEN_ACL + i32(4)
           + i32(21) + boolean(False) + i32(-1) + ustr("/rawm3") + buf(b"") + OPEN_ACL + i32(5) + i64(1000)
           + i32(5) + boolean(False) + i32(-1) + ustr("/rawm") + buf(b"mm") + i32(0)
           + i32(13) + boolean(False) + i32(-1) + ustr("/rawm") + i32(1)
           + i32(2) + boolean(False) + i32(-1) + ustr("/rawm3") + i32(-1)
           + i32(-1) + boolean(True) + i32(-1))
    c.call(14, ops)
    rec.note("addWatch /rawc PERSISTENT_RECURSIVE")
    c.call(106, ustr("/rawc") + i32(1))
    rec.note("addWatch /rawttl PERSISTENT")
    c.call(106, ustr("/rawttl") + i32(0))
    rec.note("getData /rawttl with watch")
    c.call(4, ustr("/rawttl") + boolean(True))
    rec.note("checkWatches /rawttl Data")
    c.call(17, ustr("/rawttl") + i32(2))
    rec.note("checkWatches /rawnone Children (NOWATCHER)")
    c.call(17, ustr("/rawnone") + i32(1))
    rec.note("removeWatches /rawttl Data")
    c.call(18, ustr("/rawttl") + i32(2))
    rec.note("getEphemerals /rawc")
    c.call(103, ustr("/rawc"))
    rec.note("getAllChildrenNumber /rawc")
    c.call(104, ustr("/rawc"))
    rec.note("getAllChildrenNumber /rawnone (NONODE)")
    c.call(104, ustr("/rawnone"))
    rec.note("whoAmI")
    c.call(107, b"")
    rec.note("ping")
    c.call(11, b"", xid=-2)
    rec.note("setData /rawc/e fires the recursive watch")
    c.call(5, ustr("/rawc/e") + buf(b"x") + i32(-1))
    rec.note("unknown opcode 99: UNIMPLEMENTED, then the server closes the connection")
    sid, pw, zx = c.session_id, c.passwd, c.last_zxid
    try:
        c.call(99, b"")
        c.frame()
    except (ConnectionError, TimeoutError, OSError):
        pass
    c.s.close()

    rec.note("reconnect with session id and readOnly=false; setWatches2 then setWatches")
    c = Raw(addr, read_only=False, session=(sid, pw), last_zxid=zx)
    c.call(105, i64(zx) + strings(["/rawttl"]) + strings(["/rawnone"]) + strings(["/rawc"])
           + strings(["/rawttl"]) + strings(["/rawc"]), xid=-8)
    c.call(101, i64(zx) + strings(["/rawttl"]) + strings([]) + strings(["/rawc"]), xid=-8)
    rec.note("top-level check /rawc v0: 3.9.5 answers UNIMPLEMENTED and closes; 3.8.0 sends no reply")
    try:
        c.s.settimeout(3.0)
        c.call(13, ustr("/rawc") + i32(0))
        c.frame()
    except (ConnectionError, TimeoutError, OSError):
        pass
    c.s.close()

    rec.note("a third connection: trailing bytes after a getData body, then a truncated exists body")
    c = Raw(addr, read_only=True)
    c.call(4, ustr("/rawc") + boolean(False) + b"\xde\xad")
    c.call(3, ustr("/rawc")[:3])
    rec.note("delete the nodes, closeSession")
    c.call(2, ustr("/rawm") + i32(-1))
    c.call(2, ustr("/rawm2") + i32(-1))
    c.call(2, ustr("/rawttl") + i32(-1))
    c.close()


def scenario_kazoo(addr, rec, proxy):
    from kazoo.client import KazooClient
    from kazoo.security import make_digest_acl, OPEN_ACL_UNSAFE

    events = []
    zk = KazooClient(hosts=addr, timeout=10.0, connection_retry={"max_tries": 5, "delay": 0.2},
                     command_retry={"max_tries": 5, "delay": 0.2})
    zk.start(timeout=WAIT_S)
    rec.note("create /kz data=hello persistent")
    zk.create("/kz", b"hello")
    rec.note("create2 /kz/seq- sequential (include_data)")
    zk.create("/kz/seq-", b"s", sequence=True, include_data=True)
    rec.note("create /kz/eph ephemeral")
    zk.create("/kz/eph", b"", ephemeral=True)
    rec.note("exists hit /kz with watch")
    zk.exists("/kz", watch=lambda e: events.append(e))
    rec.note("exists miss /kz/none")
    zk.exists("/kz/none")
    rec.note("getData /kz with watch")
    zk.get("/kz", watch=lambda e: events.append(e))
    rec.note("getChildren /kz with watch")
    zk.get_children("/kz", watch=lambda e: events.append(e))
    rec.note("getChildren2 /kz")
    zk.get_children("/kz", include_data=True)
    rec.note("setData /kz data=world version=0 (fires the data watches)")
    zk.set("/kz", b"world", version=0)
    rec.note("setData /kz version=7 (BADVERSION)")
    try:
        zk.set("/kz", b"bad", version=7)
    except Exception:
        pass
    rec.note("getACL /kz")
    zk.get_acls("/kz")
    rec.note("auth digest user:pass")
    zk.add_auth("digest", "user:pass")
    rec.note("setACL /kz digest user:pass ALL + world READ, version=0")
    zk.set_acls("/kz", [make_digest_acl("user", "pass", all=True)] + list(OPEN_ACL_UNSAFE[:0]), version=0)
    rec.note("getACL /kz after setACL")
    zk.get_acls("/kz")
    rec.note("sync /kz")
    zk.sync("/kz")
    rec.note("multi success: create /kz/m1, check /kz v1 (aversion), setData /kz/m1, delete /kz/m1")
    t = zk.transaction()
    t.create("/kz/m1", b"m")
    t.check("/kz", 1)
    t.set_data("/kz/m1", b"mm")
    t.delete("/kz/m1")
    t.commit()
    rec.note("multi failure: create /kz/m2, check /kz v99 (BADVERSION), delete /kz/eph")
    t = zk.transaction()
    t.create("/kz/m2", b"m")
    t.check("/kz", 99)
    t.delete("/kz/eph")
    t.commit()
    rec.note("delete /kz/none (NONODE)")
    try:
        zk.delete("/kz/none")
    except Exception:
        pass
    rec.note("delete the sequential child (fires the child watch)")
    for ch in zk.get_children("/kz"):
        if ch.startswith("seq-"):
            zk.delete("/kz/" + ch)
    rec.note("close: delete /kz/eph, closeSession")
    zk.delete("/kz/eph")
    zk.delete("/kz")
    zk.stop()
    zk.close()


JAVA_CLIENT = r"""
import org.apache.zookeeper.*;
import org.apache.zookeeper.data.*;
import java.util.*;
import java.util.concurrent.*;
public class Capture {
  public static void main(String[] a) throws Exception {
    CountDownLatch up = new CountDownLatch(1);
    ZooKeeper zk = new ZooKeeper(a[0], 10000, e -> { if (e.getState() == Watcher.Event.KeeperState.SyncConnected) up.countDown(); });
    if (!up.await(20, TimeUnit.SECONDS)) throw new RuntimeException("no connection");
    zk.create("/jv", "j".getBytes(), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
    zk.create("/jv/c", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.CONTAINER);
    zk.create("/jv/t", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_WITH_TTL, new Stat(), 5000);
    zk.addWatch("/jv", e -> {}, AddWatchMode.PERSISTENT_RECURSIVE);
    zk.getData("/jv", true, null);
    zk.multi(Arrays.asList(Op.getData("/jv"), Op.getChildren("/jv")));
    zk.getEphemerals("/jv");
    zk.getAllChildrenNumber("/jv");
    zk.whoAmI();
    System.out.println("RECONNECT"); System.out.flush();
    Thread.sleep(Integer.parseInt(a[1]));
    zk.exists("/jv", false);
    zk.removeWatches("/jv", e -> {}, Watcher.WatcherType.Any, true);
    zk.delete("/jv/t", -1);
    zk.delete("/jv/c", -1);
    zk.delete("/jv", -1);
    zk.close();
  }
}
"""


def scenario_java(addr, rec, proxy):
    jar = os.environ.get("ZK_JAR", "/usr/share/java/zookeeper.jar")
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "Capture.java")
        with open(src, "w") as f:
            f.write(JAVA_CLIENT)
        rec.note("java client: create, container, TTL, addWatch, getData watch, multiRead, "
                 "getEphemerals, getAllChildrenNumber, whoAmI, reconnect (setWatches2), removeWatches")
        p = subprocess.Popen(["java", "-cp", jar, src, addr, "3000"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        try:
            for line in p.stdout:
                if line.strip() == "RECONNECT":
                    proxy.drop_clients()
                    break
            p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zk", required=True, help="Apache ZooKeeper host:port (loopback)")
    ap.add_argument("--out", required=True)
    ap.add_argument("scenarios", nargs="*", default=["raw", "kazoo", "java"])
    args = ap.parse_args()
    host, port = args.zk.split(":")
    if host not in ("127.0.0.1", "localhost"):
        sys.exit("capture-zk: only loopback servers")
    os.makedirs(args.out, exist_ok=True)
    for name in args.scenarios:
        rec = Recorder()
        proxy = Proxy(("127.0.0.1", int(port)), rec)
        try:
            if name == "raw":
                scenario_raw(proxy.address(), rec)
            elif name == "kazoo":
                scenario_kazoo(proxy.address(), rec, proxy)
            elif name == "java":
                scenario_java(proxy.address(), rec, proxy)
            else:
                sys.exit("unknown scenario " + name)
            # Let the last frames (close replies) reach the recorder.
            time.sleep(0.5)
        finally:
            proxy.close()
        path = os.path.join(args.out, name + ".hex")
        with open(path, "w") as f:
            f.write("# captured by scripts/capture-zk.py from Apache ZooKeeper; scenario %s\n" % name)
            for line in rec.lines:
                f.write(line + "\n")
        print("%s: %d lines" % (path, len(rec.lines)))


if __name__ == "__main__":
    main()
