"""Permissions as ZooKeeper 3.9.5 checks them: every opcode with each permission bit
missing (the permission matrix), and watch notifications filtered by the ACL of the node
they name (ZOOKEEPER-4799, the fix for CVE-2024-23944), for every kind of watch.

The expected answers were taken from Apache ZooKeeper 3.9.5 (`ZK_TARGET=apache` with
ZK_CLASSPATH set to a 3.9.5 class path, see scripts/apache-zk.sh). Debian's ZooKeeper 3.8.0
predates both fixes (exists checks no permission, every watcher is told), so against
an Apache server older than 3.8.4 / 3.9.2 these tests are skipped.
"""

import re

import pytest

import zkraw
from zkraw import (NODE_CHILDREN_CHANGED, NODE_CREATED, NODE_DATA_CHANGED, NODE_DELETED,
                   NOAUTH, NONODE, NOWATCHER, OK, RECONFIGDISABLED, j_bool, j_buf, j_int,
                   j_long, j_acls, j_str)
from conftest import digest_id

READ, WRITE, CREATE, DELETE, ADMIN, ALL = 1, 2, 4, 8, 16, 31
BITS = {"READ": READ, "WRITE": WRITE, "CREATE": CREATE, "DELETE": DELETE, "ADMIN": ADMIN}
OWNER = ("owner", "pw")
OWNER_ACL = (ALL, "digest", digest_id(*OWNER))
TTL = 5  # CreateMode.PERSISTENT_WITH_TTL


@pytest.fixture(autouse=True)
def needs_fixed_zookeeper(server):
    """Skips against an Apache ZooKeeper without ZOOKEEPER-2590 and ZOOKEEPER-4799."""
    if server.target != "apache":
        return
    m = re.search(r"Zookeeper version: (\d+)\.(\d+)\.(\d+)", server.fourlw("srvr"))
    v = tuple(int(x) for x in m.groups()) if m else (0, 0, 0)
    if v < (3, 8, 4) or (3, 9, 0) <= v < (3, 9, 2):
        pytest.skip(f"Apache ZooKeeper {v} predates the exists and watch ACL fixes")


@pytest.fixture
def owner(raw_factory):
    c = raw_factory()
    assert c.add_auth("digest", ":".join(OWNER).encode()).err == OK
    return c


def create(c, path, data=b"", acl=None, flags=0, op=zkraw.CREATE2, ttl=None):
    rep = c.create(path, data, acl=acl or [OWNER_ACL, (ALL, "world", "anyone")], flags=flags,
                   op=op, ttl=ttl)
    assert rep.err == OK, (path, rep.err)
    return path


def settle(c, path):
    """A reply on `c`'s connection after the test's writes: ZooKeeper sends every event
    those writes triggered for `c` before it, so after it `c.events` is complete."""
    assert c.call(zkraw.SYNC, j_str(path)).err == OK
    assert c.get_children(path).err in (OK, NONODE, NOAUTH)


# ---- the permission matrix ------------------------------------------------------------

# Each op as it is run on P (world:anyone with one permission bit missing; the owner
# holds ALL through a digest entry) whose children are P/c and P/c2: the permission it
# needs (None: none), and its answer when allowed. The order matters only for the last
# op (delete), and for removeWatches after addWatch.
def create_body(path, flags=0, ttl=None):
    b = j_str(path) + j_buf(b"") + j_acls([(ALL, "world", "anyone")]) + j_int(flags)
    return b + (j_long(ttl) if ttl is not None else b"")


OPS = [
    ("exists", READ, OK, lambda c, p: c.exists(p).err),
    ("exists of an absent child", None, NONODE, lambda c, p: c.exists(p + "/absent").err),
    ("getData", READ, OK, lambda c, p: c.get_data(p).err),
    ("getChildren", READ, OK,
     lambda c, p: c.call(zkraw.GET_CHILDREN, j_str(p) + j_bool(False)).err),
    ("getChildren2", READ, OK, lambda c, p: c.get_children(p).err),
    ("getAllChildrenNumber", READ, OK, lambda c, p: c.all_children_number(p).err),
    ("getACL", READ | ADMIN, OK, lambda c, p: c.get_acl(p).err),
    # Without ADMIN, digest ids are answered as user:x (and with neither READ nor
    # ADMIN there is no answer at all).
    ("getACL digest id", ADMIN, OWNER_ACL[2], lambda c, p: acl_ids(c.get_acl(p))),
    ("multiRead getData", READ, OK, lambda c, p: c.multi_read([(zkraw.GET_DATA, p)]).results[0][0]),
    ("multiRead getChildren", READ, OK,
     lambda c, p: c.multi_read([(zkraw.GET_CHILDREN, p)]).results[0][0]),
    ("setData", WRITE, OK, lambda c, p: c.set_data(p, b"x").err),
    ("setACL", ADMIN, OK, lambda c, p: c.set_acl(p, c.acl_of_p).err),
    ("create", CREATE, OK, lambda c, p: c.call(zkraw.CREATE, create_body(p + "/n1")).err),
    ("create2", CREATE, OK, lambda c, p: c.call(zkraw.CREATE2, create_body(p + "/n2")).err),
    ("createContainer", CREATE, OK,
     lambda c, p: c.call(zkraw.CREATE_CONTAINER, create_body(p + "/n3", flags=4)).err),
    ("createTTL", CREATE, OK,
     lambda c, p: c.call(zkraw.CREATE_TTL, create_body(p + "/n4", flags=TTL, ttl=100000)).err),
    ("multi check", READ, (OK, OK),
     lambda c, p: c.multi1(zkraw.CHECK, j_str(p) + j_int(-1))),
    ("multi setData", WRITE, (OK, OK),
     lambda c, p: c.multi1(zkraw.SET_DATA, j_str(p) + j_buf(b"y") + j_int(-1))),
    ("multi create", CREATE, (OK, OK),
     lambda c, p: c.multi1(zkraw.CREATE, create_body(p + "/n5"))),
    ("multi delete", DELETE, (OK, OK),
     lambda c, p: c.multi1(zkraw.DELETE, j_str(p + "/c2") + j_int(-1))),
    ("sync", None, OK, lambda c, p: c.sync(p).err),
    ("checkWatches", None, NOWATCHER, lambda c, p: c.check_watches(p, zkraw.WT_ANY).err),
    ("addWatch persistent", None, OK, lambda c, p: c.add_watch(p, zkraw.PERSISTENT).err),
    ("addWatch recursive", None, OK,
     lambda c, p: c.add_watch(p, zkraw.PERSISTENT_RECURSIVE).err),
    ("removeWatches", None, OK, lambda c, p: c.remove_watches(p, zkraw.WT_ANY).err),
    ("getEphemerals", None, OK, lambda c, p: c.ephemerals(p).err),
    ("whoAmI", None, OK, lambda c, p: c.who_am_i().err),
    ("setWatches2", None, OK, lambda c, p: c.set_watches2(1 << 40, data=[p]).err),
    ("reconfig", None, RECONFIGDISABLED,
     lambda c, p: c.call(zkraw.RECONFIG, j_str("") + j_str("") + j_str("") + j_long(-1)).err),
    ("delete", DELETE, OK, lambda c, p: c.delete(p + "/c").err),
]


def acl_ids(rep):
    return rep.acl[0][2] if rep.err == OK else rep.err


def failed(answer, perms):
    """What an op answers when its permission is missing."""
    if isinstance(answer, tuple):
        return (OK, NOAUTH)  # a failed multi answers OK with the op's error
    if answer == OWNER_ACL[2]:
        return "owner:x" if perms & READ else NOAUTH
    return NOAUTH


@pytest.mark.parametrize("missing", ["none"] + list(BITS) + ["all"])
def test_permission_matrix(raw_factory, owner, base, missing):
    perms = {"none": ALL, "all": 0}.get(missing, ALL & ~BITS.get(missing, 0))
    p = f"{base}/m"
    acl = [OWNER_ACL, (perms, "world", "anyone")]
    create(owner, p)
    create(owner, p + "/c")
    create(owner, p + "/c2")
    assert owner.set_acl(p, acl).err == OK
    c = raw_factory()
    c.acl_of_p = acl
    got, want = {}, {}
    for name, need, answer, run in OPS:
        got[name] = run(c, p)
        want[name] = answer if need is None or perms & need else failed(answer, perms)
    assert got == want


# ---- watch notifications and ACLs ----------------------------------------------------

def secret_acl():
    """Everyone may do anything but READ; the owner may do everything."""
    return [OWNER_ACL, (ALL & ~READ, "world", "anyone")]


def test_exists_watch_not_told_of_an_unreadable_creation(raw_factory, owner, base):
    stranger, friend = raw_factory(), raw_factory()
    p = base + "/x"
    assert stranger.exists(p, watch=True).err == NONODE  # no permission needed
    assert friend.exists(p, watch=True).err == NONODE
    assert friend.add_auth("digest", ":".join(OWNER).encode()).err == OK
    create(owner, p, acl=secret_acl())
    settle(stranger, base)
    settle(friend, base)
    assert stranger.events == []
    assert friend.events == [(NODE_CREATED, p)]
    # The one-shot watch was used up all the same: nothing more comes.
    assert stranger.check_watches(p, zkraw.WT_DATA).err == NOWATCHER


def test_exists_needs_read_and_a_refused_exists_sets_no_watch(raw_factory, owner, base):
    p = create(owner, base + "/x", acl=secret_acl())
    stranger = raw_factory()
    assert stranger.exists(p, watch=True).err == NOAUTH
    assert stranger.check_watches(p, zkraw.WT_DATA).err == NOWATCHER
    assert stranger.exists(p + "/absent", watch=True).err == NONODE


def test_kazoo_exists_needs_read(kz, base):
    from kazoo.exceptions import NoAuthError
    from kazoo.security import ACL, Id
    p = kz.create(base + "/n", acl=[ACL(WRITE, Id("world", "anyone"))])
    with pytest.raises(NoAuthError):
        kz.exists(p)
    assert kz.exists(p + "/absent") is None


def test_data_and_child_watches_follow_the_acl_at_the_change(raw_factory, owner, base):
    """Watches set while the node was readable; its ACL then loses READ for everyone
    but the owner: the change is told to the owner only."""
    p = create(owner, base + "/x")
    stranger, friend = raw_factory(), raw_factory()
    assert friend.add_auth("digest", ":".join(OWNER).encode()).err == OK
    for c in (stranger, friend):
        assert c.get_data(p, watch=True).err == OK
        assert c.get_children(p, watch=True).err == OK
    assert owner.set_acl(p, secret_acl()).err == OK  # setACL fires no watch
    assert owner.set_data(p, b"1").err == OK
    create(owner, p + "/kid")
    for c in (stranger, friend):
        settle(c, base)
    assert stranger.events == []
    assert friend.events == [(NODE_DATA_CHANGED, p), (NODE_CHILDREN_CHANGED, p)]
    # Both one-shot watches of the stranger were consumed by the refused events.
    assert stranger.check_watches(p, zkraw.WT_DATA).err == NOWATCHER
    assert stranger.check_watches(p, zkraw.WT_CHILDREN).err == NOWATCHER


def test_delete_told_by_the_deleted_nodes_acl_and_the_parents(raw_factory, owner, base):
    """NodeDeleted uses the deleted node's ACL; the parent's NodeChildrenChanged uses
    the parent's, so a readable parent tells of an unreadable child's deletion."""
    p = create(owner, base + "/x")
    kid = create(owner, p + "/kid")
    stranger = raw_factory()
    assert stranger.get_data(kid, watch=True).err == OK
    assert stranger.get_children(kid, watch=True).err == OK
    assert stranger.get_children(p, watch=True).err == OK
    assert owner.set_acl(kid, secret_acl()).err == OK
    assert owner.delete(kid).err == OK
    settle(stranger, base)
    assert stranger.events == [(NODE_CHILDREN_CHANGED, p)]


def test_persistent_watch_on_an_unreadable_node(raw_factory, owner, base):
    p = create(owner, base + "/x", acl=secret_acl())
    stranger, friend = raw_factory(), raw_factory()
    assert friend.add_auth("digest", ":".join(OWNER).encode()).err == OK
    for c in (stranger, friend):
        assert c.add_watch(p, zkraw.PERSISTENT).err == OK  # addWatch needs no permission
    assert owner.set_data(p, b"1").err == OK
    kid = create(owner, p + "/kid")  # NodeChildrenChanged at p: p's ACL
    assert owner.delete(kid).err == OK
    assert owner.delete(p).err == OK
    for c in (stranger, friend):
        settle(c, base)
    assert stranger.events == []
    assert friend.events == [(NODE_DATA_CHANGED, p), (NODE_CHILDREN_CHANGED, p),
                             (NODE_CHILDREN_CHANGED, p), (NODE_DELETED, p)]


def test_persistent_watch_stays_after_refused_events(raw_factory, owner, base):
    p = create(owner, base + "/x", acl=secret_acl())
    stranger = raw_factory()
    assert stranger.add_watch(p, zkraw.PERSISTENT).err == OK
    assert owner.set_data(p, b"1").err == OK
    assert owner.set_acl(p, [OWNER_ACL, (ALL, "world", "anyone")]).err == OK
    assert owner.set_data(p, b"2").err == OK
    settle(stranger, base)
    assert stranger.events == [(NODE_DATA_CHANGED, p)]


def test_recursive_watch_on_root_over_an_unreadable_subtree(raw_factory, owner, base):
    """A recursive watch on / is told of each change by the ACL of the node the event
    names, never an ancestor's: nothing about an unreadable node, but a readable node
    under an unreadable one is told."""
    secret = create(owner, base + "/secret", acl=secret_acl())
    stranger, friend = raw_factory(), raw_factory()
    assert friend.add_auth("digest", ":".join(OWNER).encode()).err == OK
    for c in (stranger, friend):
        assert c.add_watch("/", zkraw.PERSISTENT_RECURSIVE).err == OK
    hidden = create(owner, secret + "/hidden", acl=secret_acl())
    assert owner.set_data(hidden, b"1").err == OK
    assert owner.set_data(secret, b"1").err == OK
    visible = create(owner, secret + "/visible")  # world-readable under the secret
    assert owner.set_data(visible, b"1").err == OK
    assert owner.delete(visible).err == OK
    assert owner.delete(hidden).err == OK
    for c in (stranger, friend):
        settle(c, base)
    mine = lambda evs: [e for e in evs if e.path.startswith(secret)]  # noqa: E731
    assert mine(stranger.events) == [(NODE_CREATED, visible), (NODE_DATA_CHANGED, visible),
                                     (NODE_DELETED, visible)]
    assert mine(friend.events) == [(NODE_CREATED, hidden), (NODE_DATA_CHANGED, hidden),
                                   (NODE_DATA_CHANGED, secret), (NODE_CREATED, visible),
                                   (NODE_DATA_CHANGED, visible), (NODE_DELETED, visible),
                                   (NODE_DELETED, hidden)]


def test_recursive_watch_under_an_unreadable_node(raw_factory, owner, base):
    secret = create(owner, base + "/secret", acl=secret_acl())
    stranger = raw_factory()
    assert stranger.add_watch(secret, zkraw.PERSISTENT_RECURSIVE).err == OK
    a = create(owner, secret + "/a", acl=secret_acl())
    b = create(owner, a + "/b")
    assert owner.set_data(b, b"1").err == OK
    assert owner.set_data(a, b"1").err == OK
    settle(stranger, base)
    assert stranger.events == [(NODE_CREATED, b), (NODE_DATA_CHANGED, b)]


def test_super_is_told_of_everything(raw_factory, owner, base):
    """The super user reads everything, so it is told of everything."""
    from conftest import SUPER_PASSWORD, SUPER_USER
    p = create(owner, base + "/x", acl=[OWNER_ACL])
    boss = raw_factory()
    assert boss.add_auth("digest", f"{SUPER_USER}:{SUPER_PASSWORD}".encode()).err == OK
    assert boss.get_data(p, watch=True).err == OK
    assert owner.set_data(p, b"1").err == OK
    settle(boss, base)
    assert boss.events == [(NODE_DATA_CHANGED, p)]
