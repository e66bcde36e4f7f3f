"""Watches of every kind: one-shot data/exists/child, persistent and persistent-recursive
(addWatch), checkWatches/removeWatches, watch-before-data, setWatches after a reconnect."""

import threading

from kazoo.protocol.states import EventType, KazooState

import zkraw
from zkraw import NODE_CREATED, NODE_DATA_CHANGED, NODE_DELETED, NODE_CHILDREN_CHANGED

WAIT_S = 20  # bound on every wait for an event


class Recorder:
    """Collects kazoo watch events; lets a test wait for a count."""

    def __init__(self):
        self.events = []
        self.cond = threading.Condition()

    def __call__(self, ev):
        with self.cond:
            self.events.append((ev.type, ev.path))
            self.cond.notify_all()

    def wait(self, n=1):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.events) >= n, WAIT_S), self.events
            return list(self.events)


def settle(raw, path):
    """A read on `raw`'s session after the writes of the test: ZooKeeper sends any event
    those writes triggered before this reply, so after it the event list is complete."""
    assert raw.exists(path).err in (zkraw.OK, zkraw.NONODE)


def test_data_watch_fires_once(raw, kz, base):
    p = kz.create(base + "/n", b"0")
    assert raw.get_data(p, watch=True).err == zkraw.OK
    kz.set(p, b"1")
    kz.set(p, b"2")
    settle(raw, p)
    assert raw.events == [(NODE_DATA_CHANGED, p)]
    assert raw.events[0].state == 3  # SyncConnected


def test_kazoo_data_watch(kz_factory, base):
    a, b = kz_factory(), kz_factory()
    p = a.create(base + "/n", b"0")
    rec = Recorder()
    a.get(p, watch=rec)
    b.set(p, b"1")
    assert rec.wait() == [(EventType.CHANGED, p)]


def test_exists_watch_on_missing_node_sees_create(raw, kz, base):
    p = base + "/later"
    assert raw.exists(p, watch=True).err == zkraw.NONODE  # the watch is set anyway
    kz.create(p)
    assert raw.wait_event() == (NODE_CREATED, p)
    kz.delete(p)
    settle(raw, p)
    assert raw.events == [(NODE_CREATED, p)]  # one-shot


def test_exists_watch_on_node_sees_delete(raw, kz, base):
    p = kz.create(base + "/n")
    assert raw.exists(p, watch=True).err == zkraw.OK
    kz.delete(p)
    assert raw.wait_event() == (NODE_DELETED, p)


def test_child_watch_fires_once_and_ignores_data(raw, kz, base):
    assert raw.get_children(base, watch=True).err == zkraw.OK
    kz.set(base, b"parent data")  # not a child change
    kz.create(base + "/c1")
    kz.create(base + "/c2")
    settle(raw, base)
    assert raw.events == [(NODE_CHILDREN_CHANGED, base)]


def test_delete_fires_data_and_child_watches(raw, kz, base):
    p = kz.create(base + "/n")
    raw.get_data(p, watch=True)
    raw.get_children(p, watch=True)
    raw.get_children(base, watch=True)
    kz.delete(p)
    settle(raw, base)
    # One NodeDeleted for the node (its data and child watches are one event per
    # watcher) and NodeChildrenChanged for the parent.
    assert (NODE_DELETED, p) in raw.events
    assert (NODE_CHILDREN_CHANGED, base) in raw.events
    assert all(ev in [(NODE_DELETED, p), (NODE_CHILDREN_CHANGED, base)] for ev in raw.events)


def test_kazoo_child_watch(kz_factory, base):
    a, b = kz_factory(), kz_factory()
    rec = Recorder()
    a.get_children(base, watch=rec)
    b.create(base + "/c")
    assert rec.wait() == [(EventType.CHILD, base)]


def test_watch_event_before_own_write_reply(raw, base):
    p = base + "/n"
    raw.create(p, b"0")
    raw.get_data(p, watch=True)
    n = len(raw.frames)
    r = raw.set_data(p, b"1")
    assert r.err == zkraw.OK
    new = raw.frames[n:]
    assert [type(f).__name__ for f in new] == ["Event", "Reply"]
    assert new[0] == (NODE_DATA_CHANGED, p)
    assert r.zxid == r.stat["mzxid"]


def test_watch_event_before_data_of_other_write(raw, kz, base):
    p = kz.create(base + "/n", b"0")
    raw.get_data(p, watch=True)
    kz.set(p, b"1")
    n = len(raw.frames)
    g = raw.get_data(p)
    assert g.data == b"1"
    new = raw.frames[n:]
    # The event, if not already read, comes before the reply that shows the new data.
    assert raw.events == [(NODE_DATA_CHANGED, p)]
    assert new[-1] is g
    assert all(isinstance(f, zkraw.Event) for f in new[:-1])


def test_persistent_watch(raw, kz, base):
    p = kz.create(base + "/n", b"0")
    assert raw.add_watch(p, zkraw.PERSISTENT).err == zkraw.OK
    kz.set(p, b"1")
    kz.set(p, b"2")
    kz.create(p + "/child")
    kz.create(p + "/child/grandchild")  # not watched: only p's own children count
    kz.set(p + "/child", b"x")          # neither
    kz.delete(p + "/child/grandchild")
    kz.delete(p + "/child")
    kz.delete(p)
    settle(raw, base)
    assert raw.events == [(NODE_DATA_CHANGED, p), (NODE_DATA_CHANGED, p),
                          (NODE_CHILDREN_CHANGED, p), (NODE_CHILDREN_CHANGED, p),
                          (NODE_DELETED, p)]
    kz.create(p)  # the watch survives the node's deletion
    settle(raw, base)
    assert raw.events[-1] == (NODE_CREATED, p)


def test_persistent_recursive_watch(raw, kz, base):
    p = kz.create(base + "/r")
    assert raw.add_watch(p, zkraw.PERSISTENT_RECURSIVE).err == zkraw.OK
    kz.create(p + "/a")
    kz.create(p + "/a/b", b"")
    kz.set(p + "/a/b", b"x")
    kz.set(p, b"y")
    kz.delete(p + "/a/b")
    kz.create(base + "/outside")  # outside the subtree
    settle(raw, base)
    # No NodeChildrenChanged for recursive watches.
    assert raw.events == [(NODE_CREATED, p + "/a"), (NODE_CREATED, p + "/a/b"),
                          (NODE_DATA_CHANGED, p + "/a/b"), (NODE_DATA_CHANGED, p),
                          (NODE_DELETED, p + "/a/b")]


def test_check_and_remove_watches(raw_factory, kz, base):
    raw = raw_factory()
    p = kz.create(base + "/n")
    assert raw.check_watches(p, zkraw.WT_DATA).err == zkraw.NOWATCHER
    raw.get_data(p, watch=True)
    assert raw.check_watches(p, zkraw.WT_DATA).err == zkraw.OK
    assert raw.check_watches(p, zkraw.WT_ANY).err == zkraw.OK
    assert raw.check_watches(p, zkraw.WT_CHILDREN).err == zkraw.NOWATCHER
    assert raw.remove_watches(p, zkraw.WT_DATA).err == zkraw.OK
    assert raw.check_watches(p, zkraw.WT_DATA).err == zkraw.NOWATCHER
    assert raw.remove_watches(p, zkraw.WT_DATA).err == zkraw.NOWATCHER
    kz.set(p, b"1")
    settle(raw, p)
    assert raw.events == []  # removed on the server: nothing fires (the client makes
    # the DataWatchRemoved event itself)

    raw.get_children(p, watch=True)
    raw.get_data(p, watch=True)
    assert raw.remove_watches(p, zkraw.WT_ANY).err == zkraw.OK
    assert raw.check_watches(p, zkraw.WT_ANY).err == zkraw.NOWATCHER

    # Persistent watches count as data and child watches and are removed by Any.
    assert raw.add_watch(p, zkraw.PERSISTENT).err == zkraw.OK
    assert raw.check_watches(p, zkraw.WT_DATA).err == zkraw.OK
    assert raw.remove_watches(p, zkraw.WT_ANY).err == zkraw.OK
    assert raw.check_watches(p, zkraw.WT_ANY).err == zkraw.NOWATCHER
    kz.set(p, b"2")
    kz.create(p + "/c")
    settle(raw, p)
    assert raw.events == []
    # removeWatches removes only the caller's own watches. (checkWatches of ZooKeeper 3.8
    # answers OK for another session's watch, so that is not asserted.)
    other = raw_factory()
    raw.get_data(p, watch=True)
    assert other.remove_watches(p, zkraw.WT_DATA).err == zkraw.NOWATCHER
    assert raw.check_watches(p, zkraw.WT_DATA).err == zkraw.OK


def reconnect(server, raw_factory, old, last_zxid):
    """Moves `old`'s session to a new connection, as a client does after a disconnect."""
    sid, pw = old.session_id, old.passwd
    old.close_socket()
    new = raw_factory(session_id=sid, passwd=pw, last_zxid=last_zxid)
    assert new.session_id == sid
    return new


def set_watches(raw, relative_zxid, data=(), exist=(), child=(), persistent=None,
                recursive=None):
    body = (zkraw.j_long(relative_zxid) + zkraw.j_strs(list(data))
            + zkraw.j_strs(list(exist)) + zkraw.j_strs(list(child)))
    op = zkraw.SET_WATCHES
    if persistent is not None or recursive is not None:
        op = zkraw.SET_WATCHES2
        body += zkraw.j_strs(list(persistent or [])) + zkraw.j_strs(list(recursive or []))
    r = raw.call(op, body, xid=-8)
    assert r.err == zkraw.OK
    return r


def test_set_watches_catch_up_after_reconnect(server, raw_factory, kz, base):
    p = kz.create(base + "/n", b"0")
    later, gone = base + "/later", kz.create(base + "/gone")
    a = raw_factory()
    last = a.get_data(p, watch=True).zxid
    # While the client is away, everything it watches changes.
    a.close_socket()
    kz.set(p, b"1")
    kz.create(base + "/c")
    kz.create(later)
    kz.delete(gone)
    b = reconnect(server, raw_factory, a, last)
    set_watches(b, last, data=[p], exist=[later, gone], child=[base])
    settle(b, base)
    # The server compares the watched nodes with relativeZxid and sends what was missed.
    # An exist watch on a node that is now absent is simply armed again.
    assert sorted((e.type, e.path) for e in b.events) == sorted(
        [(NODE_DATA_CHANGED, p), (NODE_CREATED, later), (NODE_CHILDREN_CHANGED, base)])
    kz.create(gone)
    assert b.wait_event() == (NODE_CREATED, gone)


def test_set_watches_rearms_after_reconnect(server, raw_factory, kz, base):
    p = kz.create(base + "/n", b"0")
    a = raw_factory()
    last = a.get_data(p, watch=True).zxid
    b = reconnect(server, raw_factory, a, last)
    set_watches(b, last, data=[p], child=[base], exist=[base + "/later"])
    settle(b, base)
    assert b.events == []  # nothing changed: nothing to catch up
    kz.set(p, b"1")
    assert b.wait_event() == (NODE_DATA_CHANGED, p)
    kz.create(base + "/later")
    settle(b, base)
    assert sorted((e.type, e.path) for e in b.events) == sorted(
        [(NODE_DATA_CHANGED, p), (NODE_CREATED, base + "/later"),
         (NODE_CHILDREN_CHANGED, base)])


def test_set_watches2_rearms_persistent_watches(raw_factory, server, kz, base):
    p = kz.create(base + "/r")
    a = raw_factory()
    assert a.add_watch(p, zkraw.PERSISTENT_RECURSIVE).err == zkraw.OK
    assert a.add_watch(base, zkraw.PERSISTENT).err == zkraw.OK
    last = a.exists(p).zxid
    b = reconnect(server, raw_factory, a, last)
    set_watches(b, last, persistent=[base], recursive=[p])
    kz.create(p + "/x")
    kz.set(base, b"d")
    settle(b, base)
    # p/x is not a child of base: only the recursive watch sees it.
    assert b.events == [(NODE_CREATED, p + "/x"), (NODE_DATA_CHANGED, base)]


def test_kazoo_watchers_after_reconnect(kz_factory, proxy, base):
    """kazoo itself drops its watchers on a disconnect (it calls them with a NONE event)
    and keeps its session: check that it sees exactly that."""
    c = kz_factory(hosts=proxy.hostport)
    p = c.create(base + "/n", ephemeral=True)
    rec = Recorder()
    c.get(p, watch=rec)
    session = c.client_id
    proxy.cut()
    assert rec.wait() == [(EventType.NONE, None)]
    assert proxy.wait_accepted(2)
    assert c.exists(p).ephemeralOwner == session[0]
    assert c.client_id == session
