"""Limits that protect the server, with ZooKeeper's keys: globalOutstandingLimit (a
connection with a request outstanding is not read while the server has more than the
limit outstanding), the connection token bucket (connectionMaxTokens: connect requests
beyond the bucket close their connection), largeRequestThreshold/largeRequestMaxBytes
(a request that would take large requests past the budget closes its connection),
maxClientCnxns per client address."""

import re
import socket
import threading
import time

import pytest

import zkraw
from zkraw import OK, j_buf, j_int, j_str

LIMIT = 20
SERVER_EXTRA_CFG = [
    f"globalOutstandingLimit={LIMIT}",
    "largeRequestThreshold=10000",
    "largeRequestMaxBytes=25000",
    "maxClientCnxns=40",
]


def queued_of(server, session_id):
    """The `queued` count `cons` shows for a session."""
    out = server.fourlw("cons")
    for line in out.splitlines():
        if f"sid=0x{session_id:x}" in line:
            m = re.search(r"queued=(\d+)", line)
            return int(m.group(1)) if m else None
    return None


def test_global_outstanding_limit_bounds_a_pipelining_client(server, raw):
    """A client pipelining 3,000 setData while reading: every reply comes, and while it
    runs, `cons` shows it with a small multiple of the limit outstanding at most
    (RingKeeper: the limit + 1, the frame that crossed it; ZooKeeper 3.9.5 counts
    requests in its pipeline, not awaiting their reply, and shows about twice the
    limit). Without the limit: up to 1,000 per connection."""
    p = raw.create("/flood", b"").path
    n = 3000
    blob = b""
    for i in range(n):
        payload = j_int(i + 1) + j_int(zkraw.SET_DATA) + j_str(p) + j_buf(b"v") + j_int(-1)
        blob += j_int(len(payload)) + payload
    raw.sock.settimeout(60)
    threading.Thread(target=raw.sock.sendall, args=(blob,), daemon=True).start()
    seen = []
    done = threading.Event()

    def watch_cons():
        while not done.is_set():
            q = queued_of(server, raw.session_id)
            if q is not None:
                seen.append(q)

    t = threading.Thread(target=watch_cons, daemon=True)
    t.start()
    got = 0
    while got < n:
        rep = raw.read_one()
        assert isinstance(rep, zkraw.Reply) and rep.err == OK, rep
        got += 1
    done.set()
    t.join(timeout=30)
    assert seen, "cons never listed the session"
    assert max(seen) <= 3 * LIMIT, max(seen)


def test_a_large_request_beyond_the_budget_closes_its_connection(raw_factory):
    a = raw_factory()
    p = a.create("/big", b"").path
    # 12,000 bytes: large (over 10,000) and within the 25,000 budget.
    assert a.set_data(p, b"x" * 12000).err == OK
    # Two at once fit (24,000); the budget is given back after each reply.
    for _ in range(3):
        assert a.set_data(p, b"y" * 12000).err == OK
    # One of 30,000 can never fit: the server closes the connection.
    b = raw_factory()
    with pytest.raises((zkraw.Closed, ConnectionResetError)):
        b.set_data(p, b"z" * 30000)
    # Small requests are not counted.
    assert a.get_data(p).err == OK


def test_max_client_cnxns_per_address(server):
    held, refused = [], 0
    try:
        for _ in range(45):
            try:
                held.append(server.raw(timeout=5.0))
            except (OSError, zkraw.Closed):
                refused += 1
        assert len(held) <= 40 and refused >= 5
    finally:
        for h in held:
            h.close_socket()
