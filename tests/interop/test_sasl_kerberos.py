"""SASL GSSAPI (Kerberos) against a real MIT KDC started for this module (tests/interop/
kdc.py): the server's principal zookeeper/localhost@EXAMPLE.COM and its keytab come from
a JAAS `Server` section with Krb5LoginModule; the official Java client logs in as
bob@EXAMPLE.COM from its own keytab (a JAAS `Client` section). The server finds the KDC
through KRB5_CONFIG (RingKeeper) or -Djava.security.krb5.conf (Apache's JVM).

kazoo is not tested here: its GSSAPI (pure-sasl) needs the `kerberos` PyPI module,
which has no wheel and builds only with libkrb5-dev's krb5-config."""

import os
import shutil
import tempfile

import pytest

import kdc as kdc_mod
import zkraw
from conftest import TARGET, Server, free_port
from test_sasl import assert_closed, java, java_classes  # noqa: F401 (fixture)
from kazoo.exceptions import NoAuthError

SASL_PROVIDER = "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider"


@pytest.fixture(scope="module")
def kdc(tmp_path_factory):
    assert kdc_mod.available(), "krb5kdc missing: apt-get install krb5-kdc krb5-admin-server"
    k = kdc_mod.MiniKdc(str(tmp_path_factory.mktemp("kdc")))
    k.start()
    try:
        k.server_keytab = k.add_principal("zookeeper/localhost")
        k.bob_keytab = k.add_principal("bob")
        yield k
    finally:
        k.stop()


def krb5_section(name, keytab, principal):
    return (f"{name} {{\n    com.sun.security.auth.module.Krb5LoginModule required\n"
            f"    useKeyTab=true\n    keyTab=\"{keytab}\"\n    storeKey=true\n"
            f"    useTicketCache=false\n    principal=\"{principal}\";\n}};\n")


def kerberos_server(kdc, extra_cfg=()):
    """A server with SASL from the KDC's keytab; a generator for a fixture."""
    jaas = os.path.join(kdc.dir, "server-jaas.conf")
    with open(jaas, "w") as f:
        f.write(krb5_section("Server", kdc.server_keytab,
                             f"zookeeper/localhost@{kdc_mod.REALM}"))
    dir = tempfile.mkdtemp(prefix=f"interop-{TARGET}-krb-")
    srv = Server(TARGET, dir, free_port(), [SASL_PROVIDER, *extra_cfg],
                 [f"-Djava.security.auth.login.config={jaas}",
                  f"-Djava.security.krb5.conf={kdc.krb5_conf}"],
                 # The acceptor's replay cache goes with the KDC's files, not /var/tmp.
                 env={"KRB5_CONFIG": kdc.krb5_conf, "KRB5RCACHEDIR": kdc.dir})
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server(kdc):
    """This module's server (overrides conftest's)."""
    yield from kerberos_server(kdc)


@pytest.fixture(scope="module")
def server_without_realm(kdc):
    yield from kerberos_server(kdc, ["kerberos.removeRealmFromPrincipal=true"])


@pytest.fixture(scope="module")
def client_jaas(kdc):
    path = os.path.join(kdc.dir, "client-jaas.conf")
    with open(path, "w") as f:
        f.write(krb5_section("Client", kdc.bob_keytab, f"bob@{kdc_mod.REALM}"))
    return path


def java_krb(server, classes, kdc, client_jaas, path, *rest):
    # test_sasl.java takes a JAAS file relative to tests/interop/sasl; an absolute path
    # stays as it is.
    return java(server, classes, client_jaas, path, *rest,
                extra=[f"-Djava.security.krb5.conf={kdc.krb5_conf}"])


def test_java_client_kerberos_login_and_a_sasl_acl(server, kdc, client_jaas, java_classes,
                                                   kz_factory, base):
    r = java_krb(server, java_classes, kdc, client_jaas, f"{base}/krb", "right",
                 f"bob@{kdc_mod.REALM}")
    assert r.returncode == 0 and "PASS right" in r.stdout, r.stdout + r.stderr[-3000:]
    # Nobody else may read the node the Kerberos user made for sasl:bob@EXAMPLE.COM.
    with pytest.raises(NoAuthError):
        kz_factory().get(f"{base}/krb")


def test_a_garbage_gss_token_fails_only_its_connection(raw_factory):
    witness = raw_factory()
    raw = raw_factory()
    rep = raw.sasl(b"\x60\x05not-a-kerberos-token")
    assert rep.err == zkraw.AUTHFAILED, rep
    assert_closed(raw)
    assert witness.exists("/").err == zkraw.OK


def test_a_digest_md5_client_cannot_log_in_to_a_kerberos_server(raw_factory):
    """With a Krb5LoginModule the server speaks GSSAPI only, as ZooKeeper does: DIGEST-MD5's
    empty first token is not a GSS token."""
    raw = raw_factory()
    assert raw.sasl(b"").err == zkraw.AUTHFAILED
    assert_closed(raw)


def test_remove_realm_from_principal_makes_the_id_bob(server_without_realm, kdc, client_jaas,
                                                      java_classes):
    r = java_krb(server_without_realm, java_classes, kdc, client_jaas, "/krb-norealm",
                 "right", "bob")
    assert r.returncode == 0 and "PASS right" in r.stdout, r.stdout + r.stderr[-3000:]
