"""Debian's zkCli.sh driving create/ls/get/set/stat/delete non-interactively."""

import os
import re

import subprocess

import pytest

ZKCLI = os.environ.get("ZKCLI", "/usr/share/zookeeper/bin/zkCli.sh")


@pytest.fixture(scope="module")
def cli(server):
    assert os.access(ZKCLI, os.X_OK), f"{ZKCLI} missing: apt-get install zookeeper"

    def run(*args):
        r = subprocess.run([ZKCLI, "-server", server.hostport] + list(args),
                           capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr
    return run


def test_zkcli_create_ls_get_set_delete(cli, kz, base):
    p = base + "/cli"
    rc, out = cli("create", p, "hello")
    assert rc == 0 and f"Created {p}" in out, out
    assert kz.get(p)[0] == b"hello"

    kz.create(p + "/kid-b")
    kz.create(p + "/kid-a")
    rc, out = cli("ls", p)
    assert rc == 0 and "[kid-a, kid-b]" in out.splitlines(), out

    rc, out = cli("get", p)
    assert rc == 0 and "hello" in out.splitlines(), out

    rc, out = cli("set", p, "world")
    assert rc == 0, out
    data, st = kz.get(p)
    assert data == b"world" and st.version == 1

    rc, out = cli("stat", p)
    assert rc == 0, out
    fields = dict(re.findall(r"^(\w+) = (.*)$", out, re.M))
    assert fields["dataVersion"] == "1"
    assert fields["numChildren"] == "2"
    assert fields["dataLength"] == "5"
    assert int(fields["cZxid"], 16) == st.czxid
    assert int(fields["mZxid"], 16) == st.mzxid

    rc, out = cli("deleteall", p)
    assert rc == 0, out
    assert kz.exists(p) is None


def test_zkcli_errors(cli, kz, base):
    rc, out = cli("get", base + "/missing")
    assert rc != 0 and f"Node does not exist: {base}/missing" in out, out
    kz.create(base + "/full/kid", makepath=True)
    rc, out = cli("delete", base + "/full")
    assert rc != 0 and "Node not empty" in out, out
    assert kz.exists(base + "/full") is not None
    rc, out = cli("delete", base + "/full/kid")
    assert rc == 0, out
    assert kz.exists(base + "/full/kid") is None


def test_zkcli_ephemeral_and_sequential(cli, kz, base):
    rc, out = cli("create", "-s", base + "/s-", "d")
    assert rc == 0 and f"Created {base}/s-0000000000" in out, out
    rc, out = cli("create", "-e", base + "/e", "d")
    assert rc == 0, out
    # zkCli exits without closing its session, so the node lives on until the session
    # expires; it belongs to zkCli's session.
    st = kz.exists(base + "/e")
    assert st is not None and st.ephemeralOwner not in (0, kz.client_id[0])
