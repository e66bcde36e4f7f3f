"""Sessions: expiry, resume on a new connection, wrong password, closeSession, timeout
negotiation."""

import threading

import pytest
from kazoo.protocol.states import EventType, KazooState

import zkraw
from conftest import MAX_SESSION_TIMEOUT_MS, TICK_MS

WAIT_S = 30


class States:
    def __init__(self, client):
        self.states, self.cond = [], threading.Condition()
        client.add_listener(self._on)

    def _on(self, state):
        with self.cond:
            self.states.append(state)
            self.cond.notify_all()

    def wait(self, pred):
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.states), WAIT_S), self.states


def test_negotiated_timeout_is_clamped(raw_factory):
    assert raw_factory(timeout_ms=1).negotiated_timeout_ms == 2 * TICK_MS
    assert raw_factory(timeout_ms=10**7).negotiated_timeout_ms == MAX_SESSION_TIMEOUT_MS
    assert raw_factory(timeout_ms=5000).negotiated_timeout_ms == 5000


def test_connect_answers_in_kind(server):
    c = server.raw()
    assert c.read_only is False  # the request carried the readOnly byte: so does the reply
    assert c.protocol_version == 0
    assert len(c.passwd) == 16
    c.close_session()


def test_expiry_deletes_ephemerals_and_notifies(kz_factory, proxy, base):
    watcher = kz_factory()
    c = kz_factory(hosts=proxy.hostport, timeout=1.0)
    states = States(c)
    e = c.create(base + "/e", ephemeral=True)
    c.create(base + "/e2", ephemeral=True)
    gone = threading.Event()
    watcher.exists(e, watch=lambda ev: ev.type == EventType.DELETED and gone.set())
    before = watcher.exists(base)

    proxy.blocked = True
    proxy.cut()
    assert gone.wait(WAIT_S), "ephemeral not deleted after the session expired"
    assert watcher.exists(base + "/e2") is None
    after = watcher.exists(base)
    assert after.numChildren == before.numChildren - 2
    assert after.cversion == before.cversion + 2
    assert after.pzxid > before.pzxid
    # When the client can reach the server again, it learns that its session expired.
    proxy.blocked = False
    states.wait(lambda s: KazooState.LOST in s)


def test_resume_keeps_ephemerals_and_watches(kz_factory, proxy, base):
    other = kz_factory()
    c = kz_factory(hosts=proxy.hostport, timeout=10.0)
    states = States(c)
    session = c.client_id
    e = c.create(base + "/e", b"", ephemeral=True)
    proxy.cut()
    states.wait(lambda s: s[-2:] == [KazooState.SUSPENDED, KazooState.CONNECTED])
    assert c.client_id == session
    assert other.exists(e).ephemeralOwner == session[0]
    # A watch set on the resumed connection works.
    fired = threading.Event()
    c.get(e, watch=lambda ev: fired.set())
    other.set(e, b"x")
    assert fired.wait(WAIT_S)


def test_resume_moves_session_to_new_connection(raw_factory, kz, base):
    a = raw_factory()
    assert a.create(base + "/e", b"", flags=1).err == zkraw.OK
    assert a.get_data(base + "/e", watch=True).err == zkraw.OK
    b = raw_factory(session_id=a.session_id, passwd=a.passwd)
    assert b.session_id == a.session_id
    assert b.negotiated_timeout_ms > 0
    # The server closes the session's old connection.
    with pytest.raises((zkraw.Closed, ConnectionError)):
        a.ping()
    assert kz.exists(base + "/e").ephemeralOwner == a.session_id
    assert b.ping().err == zkraw.OK


def test_wrong_password_refused(raw_factory, kz, base):
    a = raw_factory()
    a.create(base + "/e", b"", flags=1)
    bad = bytes(x ^ 0xFF for x in a.passwd)
    b = raw_factory(session_id=a.session_id, passwd=bad)
    # Refused as an invalid session: timeout 0, session id 0, a zero password ...
    assert (b.negotiated_timeout_ms, b.session_id, b.passwd) == (0, 0, b"\0" * 16)
    # ... and the connection is closed.
    with pytest.raises((zkraw.Closed, ConnectionError)):
        b.recv_frame()
    # ZooKeeper closes the session's current connection before it checks the password,
    # but the session itself lives on: its owner resumes it with the right password.
    with pytest.raises((zkraw.Closed, ConnectionError)):
        a.ping()
    c = raw_factory(session_id=a.session_id, passwd=a.passwd)
    assert c.session_id == a.session_id
    assert c.ping().err == zkraw.OK
    assert kz.exists(base + "/e").ephemeralOwner == a.session_id


def test_close_session(raw_factory, kz, base):
    a = raw_factory()
    a.create(base + "/e", b"", flags=1)
    sid, pw = a.session_id, a.passwd
    assert a.close_session().err == zkraw.OK
    assert kz.exists(base + "/e") is None  # removed before closeSession was answered
    b = raw_factory(session_id=sid, passwd=pw)
    assert (b.negotiated_timeout_ms, b.session_id) == (0, 0)  # the session is gone


def test_unknown_session_refused(raw_factory):
    b = raw_factory(session_id=0x7777_0000_0000_0001, passwd=b"\1" * 16)
    assert (b.negotiated_timeout_ms, b.session_id) == (0, 0)


def test_kazoo_stop_removes_ephemerals(kz_factory, base):
    a, b = kz_factory(), kz_factory()
    a.create(base + "/e", ephemeral=True)
    gone = threading.Event()
    b.exists(base + "/e", watch=lambda ev: ev.type == EventType.DELETED and gone.set())
    a.stop()
    assert gone.wait(WAIT_S)
