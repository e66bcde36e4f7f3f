"""Hostile input on a raw socket: the server closes that one connection (or answers an
error, as ZooKeeper does) and every other session keeps working."""

import socket
import struct

import pytest

import zkraw


def assert_closed(sock):
    """The server closed the connection: reads end (EOF or reset) within the timeout."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass


@pytest.fixture
def survivor(kz, base):
    kz.create(base + "/alive", b"yes")
    yield kz
    # After the attack: the other session still reads and writes.
    assert kz.get(base + "/alive")[0] == b"yes"
    kz.set(base + "/alive", b"still")
    assert kz.get(base + "/alive")[0] == b"still"


def connect(server):
    s = socket.create_connection((server.host, server.port), timeout=10)
    return s


def test_oversized_length_before_handshake(server, survivor):
    s = connect(server)
    s.sendall(struct.pack(">i", 0x7FFFFFF0))
    assert_closed(s)


def test_negative_length(server, survivor):
    s = connect(server)
    s.sendall(struct.pack(">i", -5))
    assert_closed(s)


def test_oversized_length_after_handshake(server, survivor):
    c = server.raw()
    c.sock.sendall(struct.pack(">i", 0xFFFFF + 1))
    assert_closed(c.sock)


def test_garbage_handshake(server, survivor):
    s = connect(server)
    s.sendall(struct.pack(">i", 12) + b"\xde\xad\xbe\xef" * 3)
    assert_closed(s)


def test_truncated_frame_then_close(server, survivor):
    s = connect(server)
    s.sendall(struct.pack(">i", 100) + b"\0" * 10)  # promises 100 bytes, sends 10
    s.shutdown(socket.SHUT_WR)
    assert_closed(s)


def test_truncated_request_record(server, survivor, base):
    c = server.raw(timeout=5.0)
    # A getData whose path claims 50 bytes but the frame ends after 3. ZooKeeper neither
    # answers nor closes; what must hold is that the server survives it (the survivor
    # fixture) and that the connection is not left half-served: a later ping is either
    # answered or the connection is closed.
    c.send_frame(zkraw.j_int(1) + zkraw.j_int(zkraw.GET_DATA) + zkraw.j_int(50) + b"/ab")
    try:
        c.send_frame(zkraw.j_int(-2) + zkraw.j_int(zkraw.PING))
        while True:
            f = c.read_one()
            if isinstance(f, zkraw.Reply) and f.xid == -2:
                break
    except (zkraw.Closed, ConnectionError):
        pass


def test_unknown_opcode(server, survivor):
    c = server.raw()
    # ZooKeeper answers an unknown opcode with an error reply or closes the connection;
    # either way the session does not hang and nothing else breaks.
    c.send_frame(zkraw.j_int(7) + zkraw.j_int(9999) + b"\0" * 8)
    try:
        rep = c.read_one()
    except (zkraw.Closed, ConnectionError):
        return
    assert isinstance(rep, zkraw.Reply)
    assert rep.xid == 7
    assert rep.err != zkraw.OK


def test_garbage_after_handshake(server, survivor):
    c = server.raw()
    c.send_frame(b"\xff" * 64)
    try:
        rep = c.read_one()
    except (zkraw.Closed, ConnectionError):
        return
    assert rep.err != zkraw.OK


def test_request_before_handshake(server, survivor):
    # A request header where the connect request should be.
    s = connect(server)
    s.sendall(struct.pack(">iii", 8, 1, zkraw.GET_DATA))
    assert_closed(s)


def test_many_connections_dropped_mid_frame(server, survivor):
    socks = [connect(server) for _ in range(50)]
    for s in socks:
        s.sendall(struct.pack(">i", 44) + b"\0" * 20)
    for s in socks:
        s.close()
