"""sessionRequireClientSASLAuth: a connection that has not logged in with SASL gets
SESSIONCLOSEDREQUIRESASLAUTH for its first request, and is closed; one that has is
served. (ZooKeeper's AuthenticationHelper.)"""

import pytest
from kazoo.exceptions import SessionClosedRequireSaslError

import zkraw
from test_sasl import SASL_DIR, assert_closed, digest, raw_login

SERVER_JVMFLAGS = [f"-Djava.security.auth.login.config={SASL_DIR}/server-jaas.conf"]
SERVER_EXTRA_CFG = [
    "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
    "sessionRequireClientSASLAuth=true",
]


def test_requests_without_sasl_are_refused_and_the_connection_closed(raw_factory):
    raw = raw_factory()
    rep = raw.exists("/")
    assert rep.err == zkraw.SESSIONCLOSEDREQUIRESASLAUTH and rep.zxid == 0, rep
    assert_closed(raw)
    # A ping and an addauth digest do not count as SASL either.
    raw = raw_factory()
    assert raw.add_auth("digest", b"bob:bobsecret").err == zkraw.OK
    assert raw.ping().err == zkraw.SESSIONCLOSEDREQUIRESASLAUTH
    assert_closed(raw)


def test_a_sasl_login_is_served(raw_factory, kz_factory):
    raw = raw_factory()
    assert raw_login(raw, "bob", "bobsecret").err == zkraw.OK
    assert raw.exists("/").err == zkraw.OK
    bob = kz_factory(sasl_options=digest("bob", "bobsecret"))
    assert bob.exists("/") is not None


def test_a_failed_login_answers_sessionclosedrequiresaslauth(raw_factory):
    raw = raw_factory()
    rep = raw_login(raw, "bob", "wrong")
    assert rep.err == zkraw.SESSIONCLOSEDREQUIRESASLAUTH, rep
    assert_closed(raw)


def test_kazoo_without_sasl_cannot_use_the_session(kz_factory):
    anon = kz_factory(start=False)
    anon.start(timeout=15)
    with pytest.raises(SessionClosedRequireSaslError):
        anon.exists("/")
