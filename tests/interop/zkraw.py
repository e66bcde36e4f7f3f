"""A minimal ZooKeeper wire-protocol client for the interop tests.

kazoo (the main client of these suites) does not expose every 3.6+ opcode (addWatch,
checkWatches, removeWatches, getAllChildrenNumber, getEphemerals, createContainer,
createTTL, whoAmI) and never lets a test see the exact order of frames on the wire.
This client speaks jute directly, one synchronous request at a time: ``call`` sends one
request and reads frames until its reply arrives; watch notifications read on the way
are kept, in arrival order, in ``frames`` (so a test can check that an event came
before the reply that showed its effect) and in ``events``.

Every socket operation is bounded by ``timeout`` seconds.
"""

import socket
import struct

# Opcodes (ZooDefs.OpCode).
CREATE, DELETE, EXISTS, GET_DATA, SET_DATA, GET_ACL, SET_ACL = 1, 2, 3, 4, 5, 6, 7
GET_CHILDREN, SYNC, PING, GET_CHILDREN2, CHECK, MULTI, CREATE2 = 8, 9, 11, 12, 13, 14, 15
CHECK_WATCHES, REMOVE_WATCHES, CREATE_CONTAINER, CREATE_TTL, MULTI_READ = 17, 18, 19, 21, 22
AUTH, SET_WATCHES, GET_EPHEMERALS, GET_ALL_CHILDREN_NUMBER = 100, 101, 103, 104
SET_WATCHES2, ADD_WATCH, WHO_AM_I, CLOSE_SESSION = 105, 106, 107, -11
RECONFIG = 16
SASL = 102

# Error codes (KeeperException.Code).
OK, RUNTIMEINCONSISTENCY, UNIMPLEMENTED, BADARGUMENTS = 0, -2, -6, -8
NONODE, NOAUTH, BADVERSION, NOCHILDRENFOREPHEMERALS = -101, -102, -103, -108
NODEEXISTS, NOTEMPTY, INVALIDACL, NOWATCHER = -110, -111, -114, -121
RECONFIGDISABLED = -123
AUTHFAILED, SESSIONCLOSEDREQUIRESASLAUTH = -115, -124

# Event types (Watcher.Event.EventType).
NODE_CREATED, NODE_DELETED, NODE_DATA_CHANGED, NODE_CHILDREN_CHANGED = 1, 2, 3, 4

# Watcher types for checkWatches/removeWatches.
WT_CHILDREN, WT_DATA, WT_ANY, WT_PERSISTENT, WT_PERSISTENT_RECURSIVE = 1, 2, 3, 4, 5

# addWatch modes.
PERSISTENT, PERSISTENT_RECURSIVE = 0, 1

OPEN_ACL_UNSAFE = [(31, "world", "anyone")]

STAT_FIELDS = ("czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
               "ephemeralOwner", "dataLength", "numChildren", "pzxid")
STAT_FORMAT = ">qqqqiiiqiiq"
STAT_SIZE = struct.calcsize(STAT_FORMAT)  # 68 bytes on the wire


class Closed(Exception):
    """The server closed the connection."""


# ---- jute encoding -------------------------------------------------------------------

def j_int(v):
    return struct.pack(">i", v)


def j_long(v):
    return struct.pack(">q", v)


def j_bool(v):
    return b"\x01" if v else b"\x00"


def j_buf(b):
    if b is None:
        return j_int(-1)
    return j_int(len(b)) + b


def j_str(s):
    return j_buf(None if s is None else s.encode())


def j_acls(acls):
    out = j_int(len(acls))
    for perms, scheme, ident in acls:
        out += j_int(perms) + j_str(scheme) + j_str(ident)
    return out


def j_strs(items):
    out = j_int(len(items))
    for s in items:
        out += j_str(s)
    return out


class Reader:
    """Decodes jute fields from one frame's payload."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def _take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"short frame: need {n} at {self.pos}, have {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int(self):
        return struct.unpack(">i", self._take(4))[0]

    def long(self):
        return struct.unpack(">q", self._take(8))[0]

    def bool(self):
        return self._take(1) != b"\x00"

    def buf(self):
        n = self.int()
        return None if n < 0 else self._take(n)

    def str(self):
        b = self.buf()
        return None if b is None else b.decode()

    def strs(self):
        n = self.int()
        return None if n < 0 else [self.str() for _ in range(n)]

    def stat(self):
        return dict(zip(STAT_FIELDS, struct.unpack(STAT_FORMAT, self._take(STAT_SIZE))))

    def acls(self):
        return [(self.int(), self.str(), self.str()) for _ in range(self.int())]

    def rest(self):
        return len(self.data) - self.pos


# ---- the client ----------------------------------------------------------------------

class Reply:
    def __init__(self, xid, zxid, err, body):
        self.xid, self.zxid, self.err, self.body = xid, zxid, err, body

    def __repr__(self):
        return f"Reply(xid={self.xid}, zxid={self.zxid:#x}, err={self.err})"


class Event:
    def __init__(self, zxid, type, state, path):
        self.zxid, self.type, self.state, self.path = zxid, type, state, path

    def __eq__(self, other):
        return (self.type, self.path) == other

    def __repr__(self):
        return f"Event(type={self.type}, state={self.state}, path={self.path!r})"


class RawClient:
    """One ZooKeeper session over one TCP connection, driven synchronously."""

    def __init__(self, host, port, timeout_ms=10000, session_id=0, passwd=b"\x00" * 16,
                 last_zxid=0, read_only=False, timeout=10.0, source=None, wrap=None):
        # `source`: the local address to connect from (e.g. 127.0.0.2, another client).
        # `wrap`: applied to the socket before the handshake (an ssl context's
        # wrap_socket, for TLS).
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        if wrap is not None:
            self.sock = wrap(self.sock)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.xid = 0
        self.frames = []   # everything received after the handshake, in order
        self.events = []   # watch notifications, in order
        req = (j_int(0) + j_long(last_zxid) + j_int(timeout_ms) + j_long(session_id)
               + j_buf(passwd) + j_bool(read_only))
        self.send_frame(req)
        r = Reader(self.recv_frame())
        self.protocol_version = r.int()
        self.negotiated_timeout_ms = r.int()
        self.session_id = r.long()
        self.passwd = r.buf()
        self.read_only = r.bool() if r.rest() else None

    # -- framing
    def send_frame(self, payload):
        self.sock.sendall(j_int(len(payload)) + payload)

    def _recv_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise Closed(f"connection closed after {len(out)} of {n} bytes")
            out += chunk
        return out

    def recv_frame(self):
        (n,) = struct.unpack(">i", self._recv_exact(4))
        return self._recv_exact(n)

    def read_one(self):
        """Reads the next frame after the handshake; returns a Reply or an Event."""
        r = Reader(self.recv_frame())
        xid, zxid, err = r.int(), r.long(), r.int()
        if xid == -1 and r.rest() >= 8:
            ev = Event(zxid, r.int(), r.int(), r.str())
            self.frames.append(ev)
            self.events.append(ev)
            return ev
        rep = Reply(xid, zxid, err, Reader(r.data[r.pos:]))
        self.frames.append(rep)
        return rep

    def wait_event(self):
        """Reads frames until the next notification; returns it (bounded by the socket timeout)."""
        while True:
            f = self.read_one()
            if isinstance(f, Event):
                return f

    def close_socket(self):
        self.sock.close()

    # -- requests
    def call(self, op, body=b"", xid=None):
        if xid is None:
            self.xid += 1
            xid = self.xid
        self.send_frame(j_int(xid) + j_int(op) + body)
        while True:
            f = self.read_one()
            if isinstance(f, Reply):
                assert f.xid == xid, f"reply for xid {f.xid}, expected {xid}"
                return f

    def create(self, path, data=b"", acl=OPEN_ACL_UNSAFE, flags=0, op=CREATE2, ttl=None):
        body = j_str(path) + j_buf(data) + j_acls(acl) + j_int(flags)
        if ttl is not None:
            body += j_long(ttl)
        rep = self.call(op, body)
        if rep.err == OK:
            rep.path = rep.body.str()
            rep.stat = rep.body.stat() if op != CREATE else None
        return rep

    def delete(self, path, version=-1):
        return self.call(DELETE, j_str(path) + j_int(version))

    def exists(self, path, watch=False):
        rep = self.call(EXISTS, j_str(path) + j_bool(watch))
        rep.stat = rep.body.stat() if rep.err == OK else None
        return rep

    def get_data(self, path, watch=False):
        rep = self.call(GET_DATA, j_str(path) + j_bool(watch))
        if rep.err == OK:
            rep.data = rep.body.buf()
            rep.stat = rep.body.stat()
        return rep

    def set_data(self, path, data, version=-1):
        rep = self.call(SET_DATA, j_str(path) + j_buf(data) + j_int(version))
        rep.stat = rep.body.stat() if rep.err == OK else None
        return rep

    def get_children(self, path, watch=False):
        rep = self.call(GET_CHILDREN2, j_str(path) + j_bool(watch))
        if rep.err == OK:
            rep.children = rep.body.strs()
            rep.stat = rep.body.stat()
        return rep

    def get_acl(self, path):
        rep = self.call(GET_ACL, j_str(path))
        if rep.err == OK:
            rep.acl = rep.body.acls()
            rep.stat = rep.body.stat()
        return rep

    def set_acl(self, path, acl, version=-1):
        return self.call(SET_ACL, j_str(path) + j_acls(acl) + j_int(version))

    def sync(self, path):
        return self.call(SYNC, j_str(path))

    def set_watches2(self, relative_zxid, data=(), exist=(), child=(), persistent=(),
                     recursive=()):
        body = j_long(relative_zxid)
        for lst in (data, exist, child, persistent, recursive):
            body += j_strs(list(lst))
        return self.call(SET_WATCHES2, body, xid=-8)

    def multi1(self, op, body):
        """A multi of one op (its opcode and request body). Returns (header err, the
        op's result err: its ErrorResult code, or OK)."""
        req = j_int(op) + j_bool(False) + j_int(-1) + body + j_int(-1) + j_bool(True) + j_int(-1)
        rep = self.call(MULTI, req)
        if rep.err != OK:
            return rep.err, None
        typ, _done, err = rep.body.int(), rep.body.bool(), rep.body.int()
        return rep.err, (err if typ == -1 else OK)

    def add_watch(self, path, mode):
        return self.call(ADD_WATCH, j_str(path) + j_int(mode))

    def check_watches(self, path, wtype):
        return self.call(CHECK_WATCHES, j_str(path) + j_int(wtype))

    def remove_watches(self, path, wtype):
        return self.call(REMOVE_WATCHES, j_str(path) + j_int(wtype))

    def all_children_number(self, path):
        rep = self.call(GET_ALL_CHILDREN_NUMBER, j_str(path))
        rep.number = rep.body.int() if rep.err == OK else None
        return rep

    def ephemerals(self, prefix):
        rep = self.call(GET_EPHEMERALS, j_str(prefix))
        rep.paths = rep.body.strs() if rep.err == OK else None
        return rep

    def who_am_i(self):
        rep = self.call(WHO_AM_I)
        if rep.err == OK:
            rep.ids = [(rep.body.str(), rep.body.str()) for _ in range(rep.body.int())]
        return rep

    def add_auth(self, scheme, auth):
        return self.call(AUTH, j_int(0) + j_str(scheme) + j_buf(auth), xid=-4)

    def sasl(self, token):
        """One SASL packet (GetSASLRequest); the reply's `token` is the server's (None for
        a null token or none at all: `has_body` tells them apart)."""
        rep = self.call(SASL, j_buf(token))
        rep.has_body = rep.body.rest() >= 4
        rep.token = rep.body.buf() if rep.has_body else None
        return rep

    def ping(self):
        return self.call(PING, xid=-2)

    def multi_read(self, ops):
        """ops: list of (GET_DATA|GET_CHILDREN, path). Returns [(err, value)]."""
        body = b""
        for op, path in ops:
            body += j_int(op) + j_bool(False) + j_int(-1) + j_str(path) + j_bool(False)
        body += j_int(-1) + j_bool(True) + j_int(-1)
        rep = self.call(MULTI_READ, body)
        out = []
        r = rep.body
        while True:
            typ, done, err = r.int(), r.bool(), r.int()
            if done:
                break
            if typ == -1:
                out.append((r.int(), None))
            elif typ == GET_DATA:
                out.append((OK, (r.buf(), r.stat())))
            elif typ == GET_CHILDREN:
                out.append((OK, r.strs()))
            else:
                raise ValueError(f"unexpected multiRead result type {typ}")
        rep.results = out
        return rep

    def close_session(self):
        rep = self.call(CLOSE_SESSION)
        self.sock.close()
        return rep


def four_letter(host, port, cmd, timeout=10.0):
    """Sends a four-letter word and returns the whole answer (the server closes after it)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(cmd.encode())
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out.decode()
            out += chunk
