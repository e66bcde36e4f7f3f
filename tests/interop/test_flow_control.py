"""Flow control and idle squatters: a client that pipelines a large burst while reading
its replies is slowed down (the server stops reading from it), never dropped; a
connection that does not complete its handshake is closed after
`nio.sessionlessCnxnTimeout` (ZooKeeper's NIOServerCnxnFactory: 10 s by default; set to
1 s here), whatever it sent so far."""

import socket
import struct
import threading
import time

import zkraw
from zkraw import OK, j_buf, j_int, j_str

SESSIONLESS_TIMEOUT_MS = 1000
SERVER_EXTRA_CFG = [f"nio.sessionlessCnxnTimeout={SESSIONLESS_TIMEOUT_MS}"]

BURST = 50_000
WAIT_S = 120  # bound on the whole burst (Apache ZooKeeper answers 50,000 in ~3 s)


def test_pipelined_burst_gets_every_reply(raw):
    p = raw.create("/burst", b"").path
    frames = []
    for i in range(BURST):
        payload = j_int(i + 1) + j_int(zkraw.SET_DATA) + j_str(p) + j_buf(b"v") + j_int(-1)
        frames.append(j_int(len(payload)) + payload)
    blob = b"".join(frames)
    sock = raw.sock
    sock.settimeout(WAIT_S)
    sent = threading.Event()
    errors = []

    def writer():
        try:
            sock.sendall(blob)  # one burst; the server must read it as it can
            sent.set()
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    deadline = time.monotonic() + WAIT_S
    got, last_xid = 0, 0
    while got < BURST and time.monotonic() < deadline:
        rep = raw.read_one()
        assert isinstance(rep, zkraw.Reply), rep
        assert rep.err == OK, (got, rep)
        assert rep.xid == last_xid + 1, "replies come in order"
        last_xid = rep.xid
        got += 1
    t.join(timeout=10)
    assert not errors, errors
    assert got == BURST and sent.is_set()
    # The connection is still good.
    assert raw.get_data(p).stat["version"] == BURST


def closed_within(sock, seconds):
    """True if the server closes `sock` (EOF or reset) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_connections_without_a_handshake_are_closed(server, raw):
    starts = {
        "nothing": b"",
        "a partial length": b"\x00\x00",
        "a partial frame": struct.pack(">i", 44) + b"\x00" * 10,
        "half a four-letter word": b"ru",
        "stmk without its mask": b"stmk",
    }
    socks = {}
    for name, first in starts.items():
        s = socket.create_connection((server.host, server.port), timeout=10)
        if first:
            s.sendall(first)
        socks[name] = s
    # A session made at the same time stays, idle as it is (its session timeout is far
    # longer than the handshake timeout).
    open_after = {name: not closed_within(s, 10 * SESSIONLESS_TIMEOUT_MS / 1000 + 10)
             for name, s in socks.items()}
    assert open_after == {name: False for name in starts}
    assert raw.exists("/").err == OK
    for s in socks.values():
        s.close()
