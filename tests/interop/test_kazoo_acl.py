"""ACLs: world, digest (addauth), auth, ip, super; NOAUTH and INVALIDACL."""

import pytest
from kazoo.exceptions import AuthFailedError, InvalidACLError, NoAuthError
from kazoo.security import ACL, Id, Permissions, make_digest_acl

import zkraw
from conftest import SUPER_PASSWORD, SUPER_USER, digest_id


def acl(perms, scheme, ident):
    return ACL(perms, Id(scheme, ident))


def test_world_read_only(kz, base):
    p = kz.create(base + "/n", b"x", acl=[acl(Permissions.READ, "world", "anyone")])
    assert kz.get(p)[0] == b"x"
    with pytest.raises(NoAuthError):
        kz.set(p, b"y")
    with pytest.raises(NoAuthError):
        kz.create(p + "/child")
    with pytest.raises(NoAuthError):
        kz.set_acls(p, [acl(Permissions.ALL, "world", "anyone")])


def test_permissions_per_operation(kz, base):
    p = kz.create(base + "/n", b"x", acl=[acl(Permissions.CREATE | Permissions.READ,
                                              "world", "anyone")])
    c = kz.create(p + "/c")  # CREATE allows creating children ...
    with pytest.raises(NoAuthError):
        kz.delete(c)  # ... but deleting one needs DELETE on the parent
    with pytest.raises(NoAuthError):
        kz.set(p, b"")  # no WRITE
    q = kz.create(base + "/w", b"x", acl=[acl(Permissions.WRITE, "world", "anyone")])
    with pytest.raises(NoAuthError):
        kz.get(q)
    with pytest.raises(NoAuthError):
        kz.get_children(q)
    kz.set(q, b"y")


def test_digest_with_addauth(kz_factory, base):
    owner = kz_factory(auth_data=[("digest", "alice:pw")])
    p = owner.create(base + "/n", b"secret", acl=[make_digest_acl("alice", "pw", all=True)])
    acls, _ = owner.get_acls(p)
    assert [(a.perms, a.id.scheme, a.id.id) for a in acls] == \
        [(31, "digest", digest_id("alice", "pw"))]
    assert owner.get(p)[0] == b"secret"
    stranger = kz_factory()
    with pytest.raises(NoAuthError):
        stranger.get(p)
    liar = kz_factory(auth_data=[("digest", "alice:wrong")])  # digest auth never fails ...
    with pytest.raises(NoAuthError):  # ... it just yields another id
        liar.get(p)
    late = kz_factory()
    late.add_auth("digest", "alice:pw")
    assert late.get(p)[0] == b"secret"


def test_auth_scheme(kz_factory, base):
    c = kz_factory()
    with pytest.raises(InvalidACLError):  # no authenticated id to put in the ACL
        c.create(base + "/n", acl=[acl(Permissions.ALL, "auth", "")])
    c.add_auth("digest", "bob:pw")
    p = c.create(base + "/n", b"b", acl=[acl(Permissions.ALL, "auth", "")])
    acls, _ = c.get_acls(p)
    assert [(a.perms, a.id.scheme, a.id.id) for a in acls] == \
        [(31, "digest", digest_id("bob", "pw"))]
    with pytest.raises(NoAuthError):
        kz_factory().get(p)


def test_ip_scheme(kz, base):
    p = kz.create(base + "/lo", b"1", acl=[acl(Permissions.ALL, "ip", "127.0.0.1")])
    assert kz.get(p)[0] == b"1"
    q = kz.create(base + "/net", b"2", acl=[acl(Permissions.ALL, "ip", "127.0.0.0/8")])
    assert kz.get(q)[0] == b"2"
    r = kz.create(base + "/far", b"3", acl=[acl(Permissions.ALL, "ip", "10.1.2.3")])
    with pytest.raises(NoAuthError):
        kz.get(r)


def test_empty_acl_is_invalid(raw, base):
    # kazoo replaces an empty list with its default ACL, so this goes on the raw client.
    assert raw.create(base + "/n", b"", acl=[]).err == zkraw.INVALIDACL
    assert raw.exists(base + "/n").err == zkraw.NONODE


@pytest.mark.parametrize("bad", [
    [acl(Permissions.ALL, "nosuchscheme", "x")],
    [acl(Permissions.ALL, "digest", "no-colon")],
    [acl(Permissions.ALL, "ip", "not-an-ip")],
])
def test_invalid_acl(kz, base, bad):
    with pytest.raises(InvalidACLError):
        kz.create(base + "/n", acl=bad)
    assert kz.exists(base + "/n") is None


def test_set_acl_invalid(kz, base):
    p = kz.create(base + "/n")
    with pytest.raises(InvalidACLError):
        kz.set_acls(p, [])


def test_super_user(kz_factory, base):
    owner = kz_factory(auth_data=[("digest", "carol:pw")])
    p = owner.create(base + "/n", b"c", acl=[make_digest_acl("carol", "pw", all=True)])
    admin = kz_factory(auth_data=[("digest", f"{SUPER_USER}:{SUPER_PASSWORD}")])
    assert admin.get(p)[0] == b"c"
    admin.set(p, b"changed by super")
    admin.set_acls(p, [acl(Permissions.ALL, "world", "anyone")])
    assert kz_factory().get(p)[0] == b"changed by super"
    not_super = kz_factory(auth_data=[("digest", f"{SUPER_USER}:wrong")])
    q = owner.create(base + "/m", acl=[make_digest_acl("carol", "pw", all=True)])
    with pytest.raises(NoAuthError):
        not_super.get(q)


def test_unknown_auth_scheme_fails_and_closes(kz_factory, raw, base):
    r = raw.add_auth("nosuchscheme", b"x")
    assert r.err == -115  # AUTHFAILED
    with pytest.raises((zkraw.Closed, ConnectionError)):
        raw.ping()
    c = kz_factory()
    with pytest.raises(AuthFailedError):
        c.add_auth("nosuchscheme", "x")


def test_who_am_i(raw):
    assert raw.who_am_i().ids == [("ip", "127.0.0.1")]
    assert raw.add_auth("digest", b"dave:pw").err == zkraw.OK
    assert sorted(raw.who_am_i().ids) == [("digest", "dave"), ("ip", "127.0.0.1")]

