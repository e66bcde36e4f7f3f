"""A server with allowSaslFailedClients=true and no SASLAuthenticationProvider: a failed
login keeps its connection, and a successful one gets a `sasl` id that no ACL can name
(ZooKeeper 3.9.5 registers only the ip and digest schemes unless authProvider.N adds
sasl)."""

import pytest
from kazoo.exceptions import InvalidACLError
from kazoo.security import make_acl

import zkraw
from test_sasl import SASL_DIR, digest, raw_login

SERVER_JVMFLAGS = [f"-Djava.security.auth.login.config={SASL_DIR}/server-jaas.conf",
                   "-Dzookeeper.allowSaslFailedClients=true"]


def test_a_failed_login_keeps_the_connection_without_a_sasl_id(raw_factory):
    raw = raw_factory()
    rep = raw_login(raw, "bob", "wrong")
    assert rep.err == zkraw.OK and rep.token is None, rep
    assert raw.exists("/").err == zkraw.OK
    who = raw.who_am_i()
    assert [s for s, _ in who.ids] == ["ip"], who.ids


def test_without_the_provider_the_sasl_id_names_no_acl(raw_factory, kz_factory, base):
    raw = raw_factory()
    rep = raw_login(raw, "bob", "bobsecret")
    assert rep.err == zkraw.OK and rep.token.startswith(b"rspauth=")
    # The id is there, but with no provider its user is empty (AuthUtil.getUser).
    assert ("sasl", "") in raw.who_am_i().ids
    bob = kz_factory(sasl_options=digest("bob", "bobsecret"))
    with pytest.raises(InvalidACLError):
        bob.create(f"{base}/n", acl=[make_acl("sasl", "bob", all=True)])
    # `auth` has no authenticated id to expand to.
    with pytest.raises(InvalidACLError):
        bob.create(f"{base}/a", acl=[make_acl("auth", "", all=True)])
