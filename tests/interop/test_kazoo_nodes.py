"""Nodes and their Stat: create of every mode, get/set/delete/exists/children, multi,
sync, limits and path validation, through kazoo (and the raw client where kazoo has no
API for the opcode)."""

import pytest
from kazoo.exceptions import (BadArgumentsError, BadVersionError, NoChildrenForEphemeralsError,
                              NodeExistsError, NoNodeError, NotEmptyError, RolledBackError,
                              RuntimeInconsistency)

import zkraw

MAX_BUFFER = 0xFFFFF  # jute.maxbuffer default: 1048575 bytes per frame


def test_create_persistent_stat(kz, base):
    parent_before = kz.exists(base)
    path = kz.create(base + "/n", b"hello")
    assert path == base + "/n"
    data, st = kz.get(path)
    assert data == b"hello"
    assert st.czxid == st.mzxid == st.pzxid
    assert st.czxid > parent_before.czxid
    assert st.ctime == st.mtime
    assert (st.version, st.cversion, st.aversion) == (0, 0, 0)
    assert st.ephemeralOwner == 0
    assert st.dataLength == 5
    assert st.numChildren == 0

    parent = kz.exists(base)
    assert parent.cversion == parent_before.cversion + 1
    assert parent.numChildren == parent_before.numChildren + 1
    assert parent.pzxid == st.czxid
    # A child does not change the parent's data: mzxid and version stay.
    assert parent.mzxid == parent_before.mzxid
    assert parent.version == parent_before.version


def test_create2_returns_stat(kz, base):
    path, st = kz.create(base + "/n", b"abc", include_data=True)
    assert path == base + "/n"
    assert st == kz.exists(path)
    assert st.dataLength == 3


def test_create_empty_and_null_data(raw, base):
    r = raw.create(base + "/empty", b"")
    assert r.err == zkraw.OK
    g = raw.get_data(base + "/empty")
    assert g.stat["dataLength"] == 0
    r = raw.create(base + "/null", None)
    assert r.err == zkraw.OK
    g = raw.get_data(base + "/null")
    assert g.stat["dataLength"] == 0


def test_create_errors(kz, base):
    kz.create(base + "/n")
    with pytest.raises(NodeExistsError):
        kz.create(base + "/n")
    with pytest.raises(NoNodeError):
        kz.create(base + "/missing/child")


def test_ephemeral(kz_factory, base):
    a = kz_factory()
    b = kz_factory()
    path = a.create(base + "/e", b"x", ephemeral=True)
    st = b.exists(path)
    assert st.ephemeralOwner == a.client_id[0]
    assert st.ephemeralOwner != 0
    with pytest.raises(NoChildrenForEphemeralsError):
        a.create(path + "/child")
    a.stop()
    assert b.exists(path) is None  # closeSession deletes them before answering


def test_sequential_suffix_follows_parent_cversion(kz, base):
    p0 = kz.create(base + "/seq-", sequence=True)
    p1 = kz.create(base + "/seq-", sequence=True)
    assert p0 == base + "/seq-0000000000"
    assert p1 == base + "/seq-0000000001"
    # The suffix is the parent's stored cversion, which counts child creations only.
    # The cversion clients see counts creations and deletions (ZooKeeper reports
    # stored * 2 - numChildren), so after a create and a delete the visible cversion is 4
    # while the next suffix is 3.
    kz.create(base + "/plain")
    kz.delete(base + "/plain")
    assert kz.exists(base).cversion == 4
    p3 = kz.create(base + "/seq-", sequence=True)
    assert p3 == base + "/seq-0000000003"
    assert kz.exists(base).cversion == 5
    # A sequential node may end in '/': the suffix makes the path valid.
    kz.create(base + "/dir")
    assert kz.create(base + "/dir/", sequence=True) == base + "/dir/0000000000"


def test_ephemeral_sequential(kz, base):
    p = kz.create(base + "/lock-", ephemeral=True, sequence=True)
    assert p == base + "/lock-0000000000"
    assert kz.exists(p).ephemeralOwner == kz.client_id[0]


def test_sequence_number_formatting_past_nine(kz, base):
    for i in range(11):
        p = kz.create(base + "/s", sequence=True)
    assert p == base + "/s0000000010"


def test_container_node_stat_and_reaping(raw, kz, base):
    r = raw.create(base + "/c", b"", op=zkraw.CREATE_CONTAINER, flags=4)
    assert r.err == zkraw.OK, r
    assert r.path == base + "/c"
    # The server marks containers with ephemeralOwner Long.MIN_VALUE but shows clients 0.
    assert r.stat["ephemeralOwner"] == 0
    kz.create(base + "/c/child")
    gone = kz.handler.event_object()
    kz.exists(base + "/c", watch=lambda ev: ev.type == "DELETED" and gone.set())
    kz.delete(base + "/c/child")
    # The container is reaped once its last child is gone (checked every
    # znode.container.checkIntervalMs, 100 ms here).
    assert gone.wait(20), "container not reaped after its last child was deleted"
    assert kz.exists(base + "/c") is None


def test_create_mode_checks(raw, base):
    # TTL modes need createTTL; unknown flags are refused.
    assert raw.create(base + "/t", b"", flags=5).err == zkraw.BADARGUMENTS
    assert raw.create(base + "/t", b"", flags=6).err == zkraw.BADARGUMENTS
    assert raw.create(base + "/t", b"", flags=99).err == zkraw.BADARGUMENTS
    assert raw.create(base + "/t", b"", op=zkraw.CREATE_TTL, flags=1, ttl=100).err == \
        zkraw.BADARGUMENTS
    assert raw.exists(base + "/t").err == zkraw.NONODE


def test_ttl_node(raw, kz, base):
    r = raw.create(base + "/ttl", b"t", op=zkraw.CREATE_TTL, flags=5, ttl=300)
    assert r.err == zkraw.OK, r
    # Stored as ephemeralOwner 0xff00...ttl, but clients are shown 0.
    assert r.stat["ephemeralOwner"] == 0
    gone = kz.handler.event_object()
    if kz.exists(base + "/ttl", watch=lambda ev: ev.type == "DELETED" and gone.set()):
        assert gone.wait(20), "TTL node not removed after its TTL"
    assert kz.exists(base + "/ttl") is None


def test_ttl_sequential_and_bad_ttl(raw, base):
    r = raw.create(base + "/t-", b"", op=zkraw.CREATE_TTL, flags=6, ttl=60000)
    assert r.err == zkraw.OK
    assert r.path == base + "/t-0000000000"
    assert raw.create(base + "/bad", b"", op=zkraw.CREATE_TTL, flags=5, ttl=0).err == \
        zkraw.BADARGUMENTS
    # A TTL with a mode that is not a TTL mode is refused.
    assert raw.create(base + "/bad", b"", op=zkraw.CREATE_TTL, flags=0, ttl=1000).err == \
        zkraw.BADARGUMENTS


def test_set_with_versions(kz, base):
    path = kz.create(base + "/n", b"v0")
    st0 = kz.exists(path)
    st1 = kz.set(path, b"v1-longer", version=0)
    assert st1.version == 1
    assert st1.mzxid > st0.mzxid
    assert st1.czxid == st0.czxid
    assert st1.pzxid == st0.pzxid  # data changes do not touch pzxid
    assert st1.mtime >= st0.mtime
    assert st1.ctime == st0.ctime
    assert st1.dataLength == len(b"v1-longer")
    assert st1.cversion == 0
    with pytest.raises(BadVersionError):
        kz.set(path, b"stale", version=0)
    assert kz.get(path)[0] == b"v1-longer"
    st2 = kz.set(path, b"any", version=-1)
    assert st2.version == 2
    with pytest.raises(NoNodeError):
        kz.set(base + "/missing", b"")


def test_delete(kz, base):
    path = kz.create(base + "/n")
    kz.create(path + "/child")
    with pytest.raises(NotEmptyError):
        kz.delete(path)
    kz.delete(path + "/child")
    kz.set(path, b"x")
    with pytest.raises(BadVersionError):
        kz.delete(path, version=0)
    before = kz.exists(base)
    kz.delete(path, version=1)
    after = kz.exists(base)
    assert kz.exists(path) is None
    assert after.cversion == before.cversion + 1
    assert after.numChildren == before.numChildren - 1
    assert after.pzxid > before.pzxid
    with pytest.raises(NoNodeError):
        kz.delete(path)


def test_exists(kz, base):
    assert kz.exists(base + "/nope") is None
    st = kz.exists(base)
    assert st is not None and st.czxid > 0


def test_get_children(kz, base):
    for name in ("b", "a", "c"):
        kz.create(f"{base}/{name}")
    assert sorted(kz.get_children(base)) == ["a", "b", "c"]
    children, st = kz.get_children(base, include_data=True)  # getChildren2
    assert sorted(children) == ["a", "b", "c"]
    assert st.numChildren == 3
    assert st.cversion == 3
    with pytest.raises(NoNodeError):
        kz.get_children(base + "/nope")


def test_all_children_number_and_ephemerals(kz, raw, base):
    kz.create(base + "/a/b/c", makepath=True)
    kz.create(base + "/a/d")
    r = raw.all_children_number(base)
    assert r.err == zkraw.OK
    assert r.number == 4  # a, a/b, a/b/c, a/d
    e1 = raw.create(base + "/eph1", b"", flags=1)
    e2 = raw.create(base + "/a/eph2", b"", flags=1)
    assert e1.err == e2.err == zkraw.OK
    kz.create(base + "/other-eph", ephemeral=True)  # another session's: not listed
    r = raw.ephemerals(base)
    assert r.err == zkraw.OK
    assert sorted(r.paths) == [base + "/a/eph2", base + "/eph1"]
    assert raw.all_children_number(base + "/nope").err == zkraw.NONODE


def test_multi_success(kz, base):
    kz.create(base + "/x", b"0")
    t = kz.transaction()
    t.create(base + "/new", b"n")
    t.set_data(base + "/x", b"1", version=0)
    t.check(base + "/x", 1)
    t.delete(base + "/new")
    results = t.commit()
    assert results[0] == base + "/new"
    assert results[1].version == 1
    assert results[2] is True
    assert results[3] is True
    assert kz.get(base + "/x")[0] == b"1"
    assert kz.exists(base + "/new") is None


def test_multi_failure_is_atomic(kz, base):
    kz.create(base + "/x", b"0")
    before = kz.exists(base)
    t = kz.transaction()
    t.create(base + "/new", b"n")
    t.set_data(base + "/x", b"1", version=7)  # wrong version
    t.delete(base + "/x")
    results = t.commit()
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], BadVersionError)
    assert isinstance(results[2], RuntimeInconsistency)
    assert kz.exists(base + "/new") is None
    assert kz.get(base + "/x")[0] == b"0"
    assert kz.exists(base) == before


def test_multi_ops_see_earlier_ops(kz, base):
    t = kz.transaction()
    t.create(base + "/p", b"")
    t.create(base + "/p/c", b"")
    t.check(base + "/p", 0)
    results = t.commit()
    assert results == [base + "/p", base + "/p/c", True]
    assert kz.exists(base + "/p").numChildren == 1


def test_multi_read(raw, kz, base):
    kz.create(base + "/a", b"data-a")
    kz.create(base + "/a/k")
    r = raw.multi_read([(zkraw.GET_DATA, base + "/a"), (zkraw.GET_CHILDREN, base + "/a"),
                        (zkraw.GET_DATA, base + "/missing")])
    assert r.err == zkraw.OK
    assert r.results[0][0] == zkraw.OK and r.results[0][1][0] == b"data-a"
    assert r.results[1] == (zkraw.OK, ["k"])
    assert r.results[2] == (zkraw.NONODE, None)  # a read multi is not atomic


def test_sync(kz, base):
    assert kz.sync(base) == base


def test_get_set_acl_versions(kz, base):
    from kazoo.security import OPEN_ACL_UNSAFE
    path = kz.create(base + "/n")
    acls, st = kz.get_acls(path)
    assert [(a.perms, a.id.scheme, a.id.id) for a in acls] == [(31, "world", "anyone")]
    assert st.aversion == 0
    st = kz.set_acls(path, OPEN_ACL_UNSAFE, version=0)
    assert st.aversion == 1
    assert st.version == 0
    with pytest.raises(BadVersionError):
        kz.set_acls(path, OPEN_ACL_UNSAFE, version=0)


B, N = zkraw.BADARGUMENTS, zkraw.NONODE
# path suffix -> (create, delete, setData), as ZooKeeper answers. create and delete look up
# the parent before validating the whole path, so a bad path whose parent does not exist
# is NONODE; setData validates first.
INVALID_PATHS = {
    "": (B, B, B),
    "noslash": (B, B, B),
    "/": (B, N, B),
    "//": (N, N, B),
    "//x": (N, N, B),
    "/./x": (N, N, B),
    "/../x": (N, N, B),
    "/.": (B, N, B),
    "/..": (B, N, B),
    "/x/": (N, N, B),
    "/a\x00b": (B, B, B),
}


@pytest.mark.parametrize("suffix", list(INVALID_PATHS))
def test_invalid_paths(raw, base, suffix):
    path = suffix if suffix in ("", "noslash") else base + suffix
    want = INVALID_PATHS[suffix]
    got = (raw.create(path, b"").err, raw.delete(path).err, raw.set_data(path, b"").err)
    assert got == want


def create_frame_len(path, n):
    # header (xid, type) + path + data + [world:anyone ALL] + flags
    return 8 + (4 + len(path.encode())) + (4 + n) + 27 + 4


def test_largest_frame_accepted(server, raw, kz, base):
    path = base + "/big"
    n = MAX_BUFFER - create_frame_len(path, 0)
    assert create_frame_len(path, n) == MAX_BUFFER
    r = raw.create(path, b"x" * n, op=zkraw.CREATE)
    assert r.err == zkraw.OK
    data, st = kz.get(path)
    assert len(data) == n and st.dataLength == n
    assert data == b"x" * n


def test_oversized_frame_closes_only_that_connection(server, raw_factory, kz, base):
    victim = raw_factory()
    path = base + "/big"
    n = MAX_BUFFER - create_frame_len(path, 0) + 1
    with pytest.raises((zkraw.Closed, ConnectionError)):
        victim.create(path, b"x" * n, op=zkraw.CREATE)
    assert kz.exists(path) is None
    kz.create(base + "/still-works", b"ok")
    assert kz.get(base + "/still-works")[0] == b"ok"
