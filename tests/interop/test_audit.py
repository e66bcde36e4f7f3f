"""The audit log (audit.enable=true): one line per audited event in ZooKeeper's format
(timestamp, level, `audit.Slf4jAuditLogger:`, then tab-separated key=value fields).
RingKeeper writes it to audit.logFile; Apache ZooKeeper's goes where its logback
configuration says, so this module runs against RingKeeper only."""

import os
import tempfile
import time

import pytest

import zkraw
from zkraw import OK, NODEEXISTS, j_bool, j_buf, j_int, j_str, j_acls

AUDIT = os.path.join(tempfile.gettempdir(), f"rk-audit-{os.getpid()}.log")
SERVER_EXTRA_CFG = ["audit.enable=true", f"audit.logFile={AUDIT}"]


@pytest.fixture(autouse=True)
def ringkeeper_only(server):
    if server.target != "ringkeeper":
        pytest.skip("Apache ZooKeeper writes its audit log where logback.xml says")


def events():
    """The log's events: (level, fields without the timestamp)."""
    out = []
    with open(AUDIT) as f:
        for line in f:
            head, _, event = line.rstrip("\n").partition(" audit.Slf4jAuditLogger: ")
            out.append((head.split(" ")[-1], event))
    return out


def wait_for(n):
    deadline = time.monotonic() + 20
    while len(events()) < n and time.monotonic() < deadline:
        time.sleep(0.05)  # the log is written by the server's threads: poll the file
    return events()


def test_audit_lines(server, raw_factory):
    start = events()
    assert start[0] == ("INFO", f"user={os.environ.get('USER', 'unknown')}\toperation=serverStart\tresult=success")
    n0 = len(start)
    c = raw_factory()
    assert c.add_auth("digest", b"alice:pw").err == OK
    sid = f"0x{c.session_id:x}"
    who = f"session={sid}\tuser=127.0.0.1,alice\tip=127.0.0.1"
    assert c.create("/a", b"").err == OK
    assert c.create("/a", b"").err == NODEEXISTS
    e = c.create("/a/e-", b"", flags=3)  # ephemeral sequential
    assert c.set_data("/a", b"x").err == OK
    assert c.set_acl("/a", [(31, "world", "anyone"), (1, "ip", "10.0.0.1")]).err == OK
    assert c.get_data("/a").err == OK  # reads are not audited
    body = (j_int(1) + j_bool(False) + j_int(-1) + j_str("/a/m") + j_buf(b"") +
            j_acls(zkraw.OPEN_ACL_UNSAFE) + j_int(0) +
            j_int(5) + j_bool(False) + j_int(-1) + j_str("/a") + j_buf(b"y") + j_int(-1) +
            j_int(-1) + j_bool(True) + j_int(-1))
    assert c.call(zkraw.MULTI, body).err == OK
    assert c.multi1(zkraw.DELETE, j_str("/absent") + j_int(-1)) == (OK, zkraw.NONODE)
    assert c.delete("/a/m").err == OK
    c.close_session()
    got = wait_for(n0 + 10)[n0:]
    assert got == [
        ("INFO", f"{who}\toperation=create\tznode=/a\tznode_type=persistent\tresult=success"),
        ("ERROR", f"{who}\toperation=create\tznode=/a\tznode_type=persistent\tresult=failure"),
        ("INFO", f"{who}\toperation=create\tznode={e.path}\tznode_type=ephemeral_sequential"
                 "\tresult=success"),
        ("INFO", f"{who}\toperation=setData\tznode=/a\tresult=success"),
        ("INFO", f"{who}\toperation=setAcl\tznode=/a\tacl=world:anyone:cdrwaip:10.0.0.1:r"
                 "\tresult=success"),
        ("INFO", f"{who}\toperation=create\tznode=/a/m\tznode_type=persistent\tresult=success"),
        ("INFO", f"{who}\toperation=setData\tznode=/a\tresult=success"),
        ("ERROR", f"{who}\toperation=multiOperation\tresult=failure"),
        ("INFO", f"{who}\toperation=delete\tznode=/a/m\tresult=success"),
        ("INFO", f"session={sid}\tuser={os.environ.get('USER', 'unknown')}"
                 f"\toperation=ephemeralZNodeDeletionOnSessionCloseOrExpire\tznode={e.path}"
                 "\tresult=success"),
    ], got
