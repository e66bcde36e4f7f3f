"""TLS on the client port (secureClientPort, client.portUnification, the ssl.* keys) with real
clients: kazoo with client certificates, the official Java client over Netty with JKS
stores, zkCli.sh; and the x509 ACL scheme. Certificates are made at test time
(tlscerts.py). Bad input (plaintext on the TLS port, TLS on the plaintext port,
expired, untrusted or missing client certificates, a truncated or stalled handshake)
closes only that connection, with a log line saying why.

Runs against RingKeeper; with ZK_TARGET=apache the same configuration (plus Netty, which
ZooKeeper's TLS needs) runs Apache ZooKeeper, except the log-line checks.
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import make_acl

import tlscerts
import zkraw
from conftest import TARGET, Server, free_port

JAR = os.environ.get("ZK_JAR", "/usr/share/java/zookeeper.jar")
ZKCLI = os.environ.get("ZKCLI", "/usr/share/zookeeper/bin/zkCli.sh")
JAVA_SRC = os.path.join(os.path.dirname(__file__), "java")
# The Netty client socket needs two jars zookeeper.jar's manifest does not list.
JAVA_CP = ":".join([JAR] + [os.path.join(os.path.dirname(JAR), j)
                            for j in ("netty-resolver.jar", "netty-codec.jar")])
PW = tlscerts.PASSWORD

# How long a server may take to close a connection it refuses.
CLOSE_WITHIN_S = 10


@pytest.fixture(scope="module")
def certs():
    d = tempfile.mkdtemp(prefix="tls-certs-")
    try:
        yield tlscerts.make(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


tls_cfg = tlscerts.server_cfg


@pytest.fixture(scope="module")
def tls_server(certs):
    d = tempfile.mkdtemp(prefix=f"interop-tls-{TARGET}-")
    secure = free_port()
    srv = Server(TARGET, d, free_port(),
                 [f"secureClientPort={secure}", "secureClientPortAddress=127.0.0.1",
                  "nio.sessionlessCnxnTimeout=2000"] + tls_cfg(certs))
    srv.secure_port = secure
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


kazoo_tls = tlscerts.kazoo_client


def ssl_ctx(certs, who="alice"):
    ctx = ssl.create_default_context(cafile=certs["ca"])
    if who:
        ctx.load_cert_chain(certs[f"{who}_cert"], certs[f"{who}_key"])
    return ctx


def raw_tls(port, certs, who="alice"):
    ctx = ssl_ctx(certs, who)
    return zkraw.RawClient("127.0.0.1", port,
                           wrap=lambda s: ctx.wrap_socket(s, server_hostname="127.0.0.1"))


def closed_by_server(sock, deadline_s=CLOSE_WITHIN_S):
    """Reads until the server closes (EOF or reset); False if it stays open that long."""
    sock.settimeout(deadline_s)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def wait_log(srv, text, timeout_s=CLOSE_WITHIN_S):
    """Waits (bounded) for the server's log to contain `text`."""
    if TARGET != "ringkeeper":
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open(os.path.join(srv.dir, "server.log"), errors="replace") as f:
            if text in f.read():
                return
        time.sleep(0.05)  # the log is a file: nothing to wait on but time
    raise AssertionError(f"no {text!r} in the server log:\n{srv.log_tail()}")


def still_serves(srv, certs):
    c = kazoo_tls(srv.secure_port, certs)
    try:
        c.ensure_path("/tls-alive")
        assert c.exists("/tls-alive") is not None
    finally:
        c.stop()
        c.close()


# -- kazoo over TLS

def test_kazoo_over_tls_with_client_certificate(tls_server, certs):
    c = kazoo_tls(tls_server.secure_port, certs)
    try:
        c.create("/tls-kazoo", b"x" * 300_000)
        assert c.get("/tls-kazoo")[0] == b"x" * 300_000
        events = []
        c.get("/tls-kazoo", watch=events.append)
        for i in range(50):
            c.set("/tls-kazoo", str(i).encode())
        assert c.get("/tls-kazoo")[0] == b"49"
        assert events and events[0].type == "CHANGED"
        # The plaintext port serves the same tree.
        plain = KazooClient(hosts=tls_server.hostport)
        plain.start(timeout=15)
        try:
            assert plain.get("/tls-kazoo")[0] == b"49"
        finally:
            plain.stop()
            plain.close()
    finally:
        c.stop()
        c.close()


def test_who_am_i_shows_the_certificate_subject(tls_server, certs):
    c = raw_tls(tls_server.secure_port, certs, "alice")
    try:
        r = c.who_am_i()
        assert r.err == zkraw.OK
        assert ("x509", certs["alice_dn"]) in r.ids, r.ids
        assert ("ip", "127.0.0.1") in r.ids, r.ids
    finally:
        c.close_session()


def test_x509_acl_admits_only_the_right_certificate(tls_server, certs):
    alice = kazoo_tls(tls_server.secure_port, certs, "alice")
    bob = kazoo_tls(tls_server.secure_port, certs, "bob")
    try:
        acl = make_acl("x509", certs["alice_dn"], all=True)
        alice.create("/tls-acl", b"alice's", acl=[acl])
        assert alice.get("/tls-acl")[0] == b"alice's"
        with pytest.raises(NoAuthError):
            bob.get("/tls-acl")
        with pytest.raises(NoAuthError):
            bob.set("/tls-acl", b"bob's")
        # "auth" ACLs expand to the caller's x509 id.
        bob.create("/tls-acl-bob", b"", acl=[make_acl("auth", "", all=True)])
        assert bob.get_acls("/tls-acl-bob")[0][0].id.id == certs["bob_dn"]
        with pytest.raises(NoAuthError):
            alice.get("/tls-acl-bob")
    finally:
        for c in (alice, bob):
            c.stop()
            c.close()


# -- bad input: each closes only its own connection

def test_plaintext_on_the_tls_port_is_closed(tls_server, certs):
    s = socket.create_connection(("127.0.0.1", tls_server.secure_port))
    s.sendall(b"\x00\x00\x00\x2c" + b"\x00" * 44)  # a plaintext connect request
    assert closed_by_server(s)
    s.close()
    wait_log(tls_server, "plaintext sent to the TLS port?")
    still_serves(tls_server, certs)


def test_tls_on_the_plaintext_port_is_closed(tls_server, certs):
    s = socket.create_connection(("127.0.0.1", tls_server.port))
    ctx = ssl_ctx(certs)
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        t.recv(1)
    s.close()
    wait_log(tls_server, "a TLS handshake on a plaintext port")
    still_serves(tls_server, certs)


@pytest.mark.parametrize("who,why", [("expired", "certificate expired"), ("stranger", "UnknownIssuer"),
                                     (None, "no certificates")])
def test_bad_client_certificate_is_refused(tls_server, certs, who, why):
    ctx = ssl_ctx(certs, who)
    s = socket.create_connection(("127.0.0.1", tls_server.secure_port))
    # TLS 1.3: the client sends its certificate after its handshake is done, so the
    # server's refusal may surface on the first read rather than in the handshake.
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, zkraw.Closed)):
        t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        t.sendall(b"\x00\x00\x00\x2c" + b"\x00" * 44)
        if not t.recv(1):
            raise zkraw.Closed("closed")
    s.close()
    wait_log(tls_server, why)
    still_serves(tls_server, certs)


def test_truncated_handshake_is_logged(tls_server, certs):
    s = socket.create_connection(("127.0.0.1", tls_server.secure_port))
    # The first bytes of a ClientHello record (header says 512 bytes follow), then EOF.
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20)
    s.shutdown(socket.SHUT_WR)
    assert closed_by_server(s)
    s.close()
    wait_log(tls_server, "hung up during the TLS handshake")
    still_serves(tls_server, certs)


def test_stalled_handshake_counts_toward_the_handshake_timeout(tls_server, certs):
    """nio.sessionlessCnxnTimeout (2 s here) covers the TLS handshake too."""
    s = socket.create_connection(("127.0.0.1", tls_server.secure_port))
    s.sendall(b"\x16\x03\x01\x02\x00\x01")
    assert closed_by_server(s, deadline_s=15)
    s.close()
    wait_log(tls_server, "no handshake within 2000 ms")
    still_serves(tls_server, certs)


# -- stores and port unification

@pytest.mark.parametrize("keystore,truststore,types", [
    ("server_jks", "trust_jks", False), ("server_p12", "trust_p12", False),
    ("server_jks", "trust_p12", True), ("server_p12", "trust_pem", True)])
def test_key_and_trust_store_types(certs, keystore, truststore, types):
    d = tempfile.mkdtemp(prefix=f"interop-tls-stores-{TARGET}-")
    secure = free_port()
    srv = Server(TARGET, d, free_port(), [f"secureClientPort={secure}"]
                 + tls_cfg(certs, keystore, truststore, types))
    try:
        srv.start()
        c = kazoo_tls(secure, certs, "bob")
        try:
            c.ensure_path("/stores")
        finally:
            c.stop()
            c.close()
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_port_unification_serves_tls_and_plaintext_on_one_port(certs):
    d = tempfile.mkdtemp(prefix=f"interop-tls-unified-{TARGET}-")
    port = free_port()
    # zookeeper.client.portUnification (zoo.cfg's portUnification is the quorum port's).
    srv = Server(TARGET, d, port, ["client.portUnification=true", "ssl.clientAuth=want"]
                 + tls_cfg(certs))
    try:
        srv.start()
        t = kazoo_tls(port, certs, "alice")
        p = KazooClient(hosts=srv.hostport)
        p.start(timeout=15)
        try:
            t.create("/unified", b"tls")
            assert p.get("/unified")[0] == b"tls"
            p.set("/unified", b"plain")
            assert t.get("/unified")[0] == b"plain"
            # A TLS client without a certificate (clientAuth=want) is served.
            ctx = ssl_ctx(certs, None)
            r = zkraw.RawClient("127.0.0.1", port,
                                wrap=lambda s: ctx.wrap_socket(s, server_hostname="127.0.0.1"))
            ids = r.who_am_i().ids
            assert not any(s == "x509" for s, _ in ids), ids
            r.close_session()
            assert zkraw.four_letter("127.0.0.1", port, "ruok") == "imok"
        finally:
            for c in (t, p):
                c.stop()
                c.close()
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_bad_tls_settings_stop_the_start(certs, tmp_path):
    if TARGET != "ringkeeper":
        pytest.skip("RingKeeper's start-up errors")
    binary = os.environ.get("RINGKEEPER_BIN", os.path.join(
        os.path.dirname(__file__), "..", "..", "target", "debug", "ringkeeper"))
    cases = [
        ("ssl.ciphersuites=TLS_RSA_WITH_AES_128_CBC_SHA", "is not supported"),
        ("ssl.ciphersuites=AES128-SHA", "unknown cipher suite"),
        ("ssl.enabledProtocols=TLSv1.1", "TLSv1.1 is not supported"),
        ("ssl.clientAuth=sometimes", "is not need, want or none"),
        (f"ssl.keyStore.password=wrong-{PW}", "password"),
    ]
    for line, why in cases:
        cfg = tmp_path / "zoo.cfg"
        cfg.write_text("\n".join([f"dataDir={tmp_path}/data", f"clientPort={free_port()}",
                                  "clientPortAddress=127.0.0.1", f"secureClientPort={free_port()}",
                                  "admin.enableServer=false"] + tls_cfg(certs, "server_jks")
                                 + [line]) + "\n")
        r = subprocess.run([binary, str(cfg)], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and why in r.stderr, (line, r.stderr[-2000:])


# -- the official Java client and zkCli.sh

def java_tls_flags(certs, who="alice"):
    return ["-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
            "-Dzookeeper.client.secure=true",
            f"-Dzookeeper.ssl.keyStore.location={certs[f'{who}_jks']}",
            f"-Dzookeeper.ssl.keyStore.password={PW}",
            f"-Dzookeeper.ssl.trustStore.location={certs['trust_jks']}",
            f"-Dzookeeper.ssl.trustStore.password={PW}"]


@pytest.fixture(scope="module")
def java_classes(tmp_path_factory):
    assert os.path.exists(JAR), f"{JAR} missing: apt-get install libzookeeper-java"
    out = tmp_path_factory.mktemp("java-tls-classes")
    src = [os.path.join(JAVA_SRC, f) for f in os.listdir(JAVA_SRC) if f.endswith(".java")]
    r = subprocess.run(["javac", "-cp", JAR, "-d", str(out)] + src,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return str(out)


@pytest.mark.parametrize("scenario", ["session", "watch", "lock"])
def test_java_client_over_tls(tls_server, certs, java_classes, scenario):
    c = kazoo_tls(tls_server.secure_port, certs)
    try:
        c.ensure_path("/java-tls")
    finally:
        c.stop()
        c.close()
    r = subprocess.run(
        ["java", "-Dzookeeper.log.threshold=WARN"] + java_tls_flags(certs)
        + ["-cp", f"{JAVA_CP}:{java_classes}", "JavaClientInterop",
           f"127.0.0.1:{tls_server.secure_port}", "/java-tls", scenario],
        capture_output=True, text=True, timeout=90)
    assert r.returncode == 0 and f"PASS {scenario}" in r.stdout, r.stdout + r.stderr[-3000:]


def test_zkcli_over_tls(tls_server, certs):
    assert os.access(ZKCLI, os.X_OK), f"{ZKCLI} missing: apt-get install zookeeper"
    # zkCli.sh puts its own -cp first; the java launcher takes the last one.
    flags = ["-cp", f"/etc/zookeeper/conf:{JAVA_CP}"] + java_tls_flags(certs, "bob")
    env = dict(os.environ, CLIENT_JVMFLAGS=" ".join(flags))
    hp = f"127.0.0.1:{tls_server.secure_port}"
    r = subprocess.run([ZKCLI, "-server", hp, "create", "/zkcli-tls", "over-tls"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and "Created /zkcli-tls" in r.stdout + r.stderr, r.stdout + r.stderr
    r = subprocess.run([ZKCLI, "-server", hp, "whoami"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert certs["bob_dn"] in r.stdout, r.stdout + r.stderr
    r = subprocess.run([ZKCLI, "-server", hp, "get", "/zkcli-tls"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert "over-tls" in r.stdout.splitlines(), r.stdout + r.stderr


def test_zkbench_over_tls(tls_server, certs):
    """zkbench --tls (used for docs/security.md's numbers) drives setData over TLS with
    a client certificate, with the unmeasured setup over the plaintext port."""
    if TARGET != "ringkeeper":
        pytest.skip("zkbench is built with RingKeeper")
    binary = os.path.join(os.path.dirname(__file__), "..", "..", "target", "debug", "zkbench")
    r = subprocess.run(
        [binary, "run", "-c", f"127.0.0.1:{tls_server.secure_port}", "-w", "set",
         "-s", "2", "-k", "4", "-d", "1", "--warmup", "0.2", "--keys", "20", "--root",
         "/zkbench-tls", "--json", "-q", "--no-server-cost", "--tls", "--tls-ca",
         certs["ca"], "--tls-cert", certs["alice_cert"], "--tls-key", certs["alice_key"],
         "--setup-server", tls_server.hostport],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["ops"] > 0 and d["errors_total"] == 0 and d["disconnects"] == 0, d


def test_secure_client_port_alone_serves_tls_only(certs, tmp_path):
    """A zoo.cfg with secureClientPort and no clientPort: one listener, TLS only."""
    if TARGET != "ringkeeper":
        pytest.skip("started directly: conftest's Server waits on a plaintext port")
    binary = os.environ.get("RINGKEEPER_BIN", os.path.join(
        os.path.dirname(__file__), "..", "..", "target", "debug", "ringkeeper"))
    secure = free_port()
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text("\n".join([f"dataDir={tmp_path}/data", f"secureClientPort={secure}",
                              "secureClientPortAddress=127.0.0.1", "admin.enableServer=false"]
                             + tls_cfg(certs)) + "\n")
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen([binary, str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = raw_tls(secure, certs, "bob")
                break
            except (OSError, zkraw.Closed):
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.05)  # the port is not open yet: nothing to wait on but time
        assert ("x509", certs["bob_dn"]) in r.who_am_i().ids
        r.close_session()
        # The same port takes no plaintext.
        s = socket.create_connection(("127.0.0.1", secure))
        s.sendall(b"ruok")
        assert closed_by_server(s)
        s.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
