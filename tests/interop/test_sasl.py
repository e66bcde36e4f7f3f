"""Client SASL DIGEST-MD5 with real clients: kazoo (through pure-sasl), the official Java
client (its JAAS `Client` section), and raw packets for what clients never send.

The server takes its JAAS file the way ZooKeeper's start scripts give it, as
-Djava.security.auth.login.config in SERVER_JVMFLAGS, and registers the sasl scheme with
authProvider.1. Users (tests/interop/sasl/server-jaas.conf): bob, alice, super.
"""

import glob
import re
import os
import shutil
import socket
import struct
import subprocess
import threading

import pytest
import puresasl.client
from kazoo.exceptions import NoAuthError
from kazoo.protocol.states import KazooState, KeeperState
from kazoo.security import make_acl

import zkraw

HERE = os.path.dirname(os.path.abspath(__file__))
SASL_DIR = os.path.join(HERE, "sasl")
SERVER_JVMFLAGS = [f"-Djava.security.auth.login.config={SASL_DIR}/server-jaas.conf"]
SERVER_EXTRA_CFG = ["authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider"]
JAR = os.environ.get("ZK_JAR", "/usr/share/java/zookeeper.jar")


def digest(user, password):
    return {"mechanism": "DIGEST-MD5", "username": user, "password": password}


def raw_login(raw, user, password):
    """A DIGEST-MD5 exchange on a raw connection; returns the last reply."""
    cli = puresasl.client.SASLClient("zk-sasl-md5", "zookeeper", mechanism="DIGEST-MD5",
                                     username=user, password=password)
    first = raw.sasl(b"")
    assert first.err == zkraw.OK and first.token, first
    return raw.sasl(cli.process(first.token))


def assert_closed(raw):
    """The server closed this connection (bounded by the socket's timeout)."""
    with pytest.raises((zkraw.Closed, ConnectionResetError)):
        raw.recv_frame()


def lost_states(client):
    """Records the KeeperState a kazoo client is in when it gives up its connection
    (its listeners run inside the state change; the state moves on to CLOSED after)."""
    seen = []
    lost = threading.Event()

    def listener(state):
        if state == KazooState.LOST:
            seen.append(client.client_state)
            lost.set()

    client.add_listener(listener)
    return lost, seen


def test_kazoo_digest_md5_login_with_the_right_password(kz_factory, raw_factory):
    bob = kz_factory(sasl_options=digest("bob", "bobsecret"))
    assert bob.connected
    assert bob.exists("/") is not None
    # The same login on a raw connection: whoAmI reports the sasl identity.
    raw = raw_factory()
    rep = raw_login(raw, "bob", "bobsecret")
    assert rep.err == zkraw.OK and rep.token.startswith(b"rspauth="), rep
    who = raw.who_am_i()
    assert who.err == zkraw.OK
    assert ("sasl", "bob") in who.ids and ("ip", "127.0.0.1") in who.ids, who.ids


def test_kazoo_wrong_password_ends_in_auth_failed(kz_factory, kz):
    eve = kz_factory(sasl_options=digest("bob", "wrong"), start=False)
    lost, seen = lost_states(eve)
    eve.start(timeout=15)
    assert lost.wait(15), eve.client_state
    assert seen[0] == KeeperState.AUTH_FAILED, seen
    # Only that connection is affected.
    assert kz.connected and kz.exists("/") is not None


def test_unknown_user_and_wrong_password_get_authfailed_and_the_connection_closes(raw_factory):
    for user, pw in [("bob", "wrong"), ("mallory", "x")]:
        raw = raw_factory()
        rep = raw_login(raw, user, pw)
        assert rep.err == zkraw.AUTHFAILED, rep
        assert rep.zxid == 0
        # ZooKeeper's error reply still carries a SetSASLResponse with a null token (the
        # Java client needs it to report AuthFailed).
        assert rep.has_body and rep.token is None
        assert_closed(raw)


def test_sasl_acl_node_is_readable_only_by_its_user(kz_factory, base):
    bob = kz_factory(sasl_options=digest("bob", "bobsecret"))
    alice = kz_factory(sasl_options=digest("alice", "alicesecret"))
    anon = kz_factory()
    path = f"{base}/bobs"
    bob.create(path, b"secret", acl=[make_acl("sasl", "bob", all=True)])
    assert bob.get(path)[0] == b"secret"
    acl, _ = bob.get_acls(path)
    assert [(a.id.scheme, a.id.id) for a in acl] == [("sasl", "bob")]
    for other in (alice, anon):
        with pytest.raises(NoAuthError):
            other.get(path)
    # The `auth` scheme expands to the caller's sasl id.
    bob.create(f"{base}/auth", b"a", acl=[make_acl("auth", "", all=True)])
    acl, _ = bob.get_acls(f"{base}/auth")
    assert [(a.id.scheme, a.id.id) for a in acl] == [("sasl", "bob")]
    with pytest.raises(NoAuthError):
        alice.get(f"{base}/auth")


def test_garbled_and_oversized_tokens_fail_only_their_connection(raw_factory, kz):
    witness = raw_factory()
    raw = raw_factory()
    assert raw.sasl(b"").err == zkraw.OK
    rep = raw.sasl(b'username="bob",realm="zk-sasl-md5",nonce="\x00\xff')  # unclosed quote
    assert rep.err == zkraw.AUTHFAILED
    assert_closed(raw)
    raw = raw_factory()
    rep = raw.sasl(b"x" * 5000)  # over the JDK's 4096-byte limit
    assert rep.err == zkraw.AUTHFAILED
    assert_closed(raw)
    # The server and its other connections go on.
    assert witness.exists("/").err == zkraw.OK
    assert kz.exists("/") is not None


def test_a_second_exchange_after_success_fails(raw_factory):
    raw = raw_factory()
    assert raw_login(raw, "bob", "bobsecret").err == zkraw.OK
    rep = raw.sasl(b"")
    assert rep.err == zkraw.AUTHFAILED
    assert_closed(raw)


def test_a_sasl_packet_before_the_session_closes_the_connection(server):
    """Before the handshake a SASL request is read as a connect request, which it is
    not: the connection is closed without an answer."""
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        payload = struct.pack(">ii", 1, zkraw.SASL) + struct.pack(">i", 0)
        s.sendall(struct.pack(">i", len(payload)) + payload)
        assert s.recv(64) == b""


@pytest.fixture(scope="module")
def java_classes(tmp_path_factory):
    assert os.path.exists(JAR), f"{JAR} missing: apt-get install libzookeeper-java"
    assert shutil.which("javac"), "javac missing: apt-get install default-jdk-headless"
    out = tmp_path_factory.mktemp("sasl-java")
    r = subprocess.run(["javac", "-cp", JAR, "-d", str(out)] + glob.glob(f"{SASL_DIR}/*.java"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return str(out)


def java(server, classes, jaas, path, *args, extra=()):
    """Runs SaslInterop with the JAAS file `jaas` (in tests/interop/sasl unless absolute)."""
    return subprocess.run(
        ["java", "-Dzookeeper.log.threshold=WARN",
         f"-Djava.security.auth.login.config={os.path.join(SASL_DIR, jaas)}", *extra,
         "-cp", f"{JAR}:{classes}", "SaslInterop", server.hostport, path, *args],
        capture_output=True, text=True, timeout=90)


def test_java_client_digest_md5_and_a_sasl_acl(server, java_classes, kz_factory, base):
    r = java(server, java_classes, "client-jaas.conf", f"{base}/java", "right")
    assert r.returncode == 0 and "PASS right" in r.stdout, r.stdout + r.stderr[-3000:]
    # The node the Java client made for sasl:bob is bob's alone.
    bob = kz_factory(sasl_options=digest("bob", "bobsecret"))
    assert bob.get(f"{base}/java")[0] == b"java"
    with pytest.raises(NoAuthError):
        kz_factory(sasl_options=digest("alice", "alicesecret")).get(f"{base}/java")


def test_java_client_wrong_password_gets_auth_failed(server, java_classes, base):
    r = java(server, java_classes, "client-wrong-jaas.conf", f"{base}/x", "wrong")
    assert r.returncode == 0 and "PASS wrong" in r.stdout, r.stdout + r.stderr[-3000:]


def test_zkcli_logs_in_with_digest_md5(server):
    """Debian's zkCli.sh with the JAAS file in CLIENT_JVMFLAGS, as its docs say."""
    zkcli = os.environ.get("ZKCLI", "/usr/share/zookeeper/bin/zkCli.sh")
    assert os.access(zkcli, os.X_OK), f"{zkcli} missing: apt-get install zookeeper"
    env = dict(os.environ, CLIENT_JVMFLAGS=f"-Djava.security.auth.login.config="
                                           f"{SASL_DIR}/client-jaas.conf")
    r = subprocess.run([zkcli, "-server", server.hostport, "whoami"], env=env,
                       capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "state:SaslAuthenticated" in out, out
    assert "sasl: bob" in out.splitlines(), out


def test_the_challenge_is_the_jdks(raw_factory):
    """DIGEST-MD5's challenge as ZooKeeper (JDK DigestMD5Server, no SASL properties)
    sends it: realm, nonce, charset, algorithm, and no qop directive; a first token that
    is not empty is ignored, as the JDK does."""
    raw = raw_factory()
    rep = raw.sasl(b"username=bob")
    assert rep.err == zkraw.OK
    m = re.fullmatch(rb'realm="zk-sasl-md5",nonce="([A-Za-z0-9+/]{40})",charset=utf-8,'
                     rb'algorithm=md5-sess', rep.token)
    assert m, rep.token


def edited_login(raw, edit):
    cli = puresasl.client.SASLClient("zk-sasl-md5", "zookeeper", mechanism="DIGEST-MD5",
                                     username="bob", password="bobsecret")
    first = raw.sasl(b"")
    return raw.sasl(edit(cli.process(first.token)))


def test_nc_is_ignored_and_a_bad_maxbuf_drops_the_connection(raw_factory):
    """The JDK's server reads no `nc` (its table says nonce-count), and a maxbuf that is
    not a number throws past ZooKeeper's SaslException handler: no answer, a close."""
    raw = raw_factory()
    rep = edited_login(raw, lambda r: r.replace(b"nc=00000001", b"nc=00000002"))
    assert rep.err == zkraw.OK and rep.token.startswith(b"rspauth="), rep
    raw = raw_factory()
    with pytest.raises((zkraw.Closed, ConnectionResetError)):
        edited_login(raw, lambda r: r + b",maxbuf=lots")
