"""Throwaway certificates for the TLS tests, made at test time with openssl and keytool.

Nothing here is a real secret: every key is generated fresh in a temporary directory,
for one test run, and signed by a CA that exists only there.

make(dir) returns a dict of paths:
  ca, ca_key            the test CA (PEM)
  other_ca              another CA nobody trusts
  server_pem            the server's key and certificate in one PEM file (a PEM key store)
  server_p12, server_jks   the same as PKCS12 and JKS key stores (password PASSWORD)
  trust_pem, trust_p12, trust_jks   trust stores holding the CA
  <name>_key, <name>_cert   client certificates: alice, bob (the CA's), expired (the
                        CA's, valid in 2020 only), stranger (other_ca's)
  <name>_p12, <name>_jks    alice's and bob's key stores, for the Java client
and the subject DN of each client certificate as Java prints it, under <name>_dn.
"""

import os
import subprocess

PASSWORD = "test-pass"

# Subjects in openssl's /-form (most significant first) and as Java's
# X500Principal.getName() prints them (RFC 2253: least significant first).
CLIENTS = {
    "alice": ("/C=NL/O=RingKeeper Tests/OU=dev/CN=alice", "CN=alice,OU=dev,O=RingKeeper Tests,C=NL"),
    "bob": ("/O=RingKeeper Tests/CN=bob", "CN=bob,O=RingKeeper Tests"),
    "expired": ("/CN=expired", "CN=expired"),
    "stranger": ("/CN=stranger", "CN=stranger"),
}

EXT = """basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
"""

CA_CNF = """[ ca ]
default_ca = CA_default
[ CA_default ]
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = policy_any
unique_subject = no
[ policy_any ]
commonName = supplied
"""


def run(*args, cwd):
    r = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {r.stderr}")


def new_ca(d, name, cn):
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={cn}",
        "-days", "3", cwd=d)


def new_leaf(d, name, subj, ca, expired=False):
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj, cwd=d)
    if expired:
        # `openssl x509 -req` cannot date a certificate in the past; `openssl ca` can.
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write(CA_CNF.format(dir=d))
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("1000\n")
        run("openssl", "ca", "-batch", "-config", "ca.cnf", "-cert", f"{ca}.pem", "-keyfile",
            f"{ca}.key", "-in", f"{name}.csr", "-out", f"{name}.pem", "-startdate",
            "20200101000000Z", "-enddate", "20200102000000Z", "-extfile", "ext.cnf", "-notext",
            cwd=d)
    else:
        run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
            f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "3", "-extfile",
            "ext.cnf", cwd=d)


def stores(d, name):
    """PKCS12 and JKS key stores of a key and its certificate (chain: the CA)."""
    run("openssl", "pkcs12", "-export", "-in", f"{name}.pem", "-inkey", f"{name}.key",
        "-certfile", "ca.pem", "-name", name, "-out", f"{name}.p12", "-passout",
        f"pass:{PASSWORD}", cwd=d)
    run("keytool", "-importkeystore", "-noprompt", "-srckeystore", f"{name}.p12",
        "-srcstoretype", "PKCS12", "-srcstorepass", PASSWORD, "-destkeystore", f"{name}.jks",
        "-deststoretype", "JKS", "-deststorepass", PASSWORD, "-destkeypass", PASSWORD, cwd=d)


def make(d):
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write(EXT)
    new_ca(d, "ca", "RingKeeper Test CA")
    new_ca(d, "other_ca", "Some Other CA")
    new_leaf(d, "server", "/CN=localhost", "ca")
    with open(os.path.join(d, "server-store.pem"), "w") as out:
        for part in ("server.key", "server.pem"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    stores(d, "server")
    for name, (subj, _) in CLIENTS.items():
        new_leaf(d, name, subj, "other_ca" if name == "stranger" else "ca",
                 expired=name == "expired")
    for name in ("alice", "bob"):
        stores(d, name)
    for ty, ext in (("JKS", "jks"), ("PKCS12", "p12")):
        run("keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem",
            "-keystore", f"trust.{ext}", "-storetype", ty, "-storepass", PASSWORD, cwd=d)
    p = lambda f: os.path.join(d, f)  # noqa: E731
    out = {
        "ca": p("ca.pem"), "ca_key": p("ca.key"), "other_ca": p("other_ca.pem"),
        "server_pem": p("server-store.pem"), "server_p12": p("server.p12"),
        "server_jks": p("server.jks"), "trust_pem": p("ca.pem"), "trust_p12": p("trust.p12"),
        "trust_jks": p("trust.jks"),
    }
    for name, (_, dn) in CLIENTS.items():
        out[f"{name}_key"], out[f"{name}_cert"] = p(f"{name}.key"), p(f"{name}.pem")
        out[f"{name}_dn"] = dn
    for name in ("alice", "bob"):
        out[f"{name}_p12"], out[f"{name}_jks"] = p(f"{name}.p12"), p(f"{name}.jks")
    return out


def server_cfg(c, keystore="server_pem", truststore="trust_pem", types=False):
    """The ssl.* lines for a server using the given stores (types given or inferred)."""
    # A PEM key store's password is its key's encryption password (ZooKeeper's
    # PEMFileLoader): the test keys are not encrypted, so none is given.
    lines = [f"ssl.keyStore.location={c[keystore]}",
             f"ssl.trustStore.location={c[truststore]}", f"ssl.trustStore.password={PASSWORD}"]
    if not keystore.endswith("_pem"):
        lines.append(f"ssl.keyStore.password={PASSWORD}")
    if types:
        kind = {"pem": "PEM", "p12": "PKCS12", "jks": "JKS"}
        lines += [f"ssl.keyStore.type={kind[keystore.split('_')[1]]}",
                  f"ssl.trustStore.type={kind[truststore.split('_')[1]]}"]
    import conftest  # here, not at the top: ensemble.py and perf scripts use make() alone

    if conftest.TARGET == "apache":
        lines += ["serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory"]
    return lines


def kazoo_client(port, certs, who="alice", **kw):
    """A started kazoo client over TLS with `who`'s certificate."""
    from kazoo.client import KazooClient

    import conftest

    c = KazooClient(hosts=f"127.0.0.1:{port}", use_ssl=True, verify_certs=True,
                    ca=certs["ca"], keyfile=certs[f"{who}_key"],
                    certfile=certs[f"{who}_cert"], timeout=10.0,
                    connection_retry=conftest.fast_retry(), **kw)
    c.start(timeout=15)
    return c
