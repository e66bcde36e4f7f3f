"""The one place that starts and stops the server under test for every interop suite.

ZK_TARGET chooses the server:
  ringkeeper (default)  RINGKEEPER_BIN (default target/debug/ringkeeper) with a generated zoo.cfg
  apache                Apache ZooKeeper through scripts/apache-zk.sh (the reference)

Both get the same settings (SERVER_CFG below, plus the module's SERVER_EXTRA_CFG list if it
has one, and its SERVER_JVMFLAGS list of -D flags, passed as ZooKeeper's scripts pass them). Each test module gets its own server on a
free loopback port, so a module that breaks the server cannot fail the others; the server
is stopped by its PID when the module ends.
"""

import base64
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

sys.path.insert(0, os.path.dirname(__file__))
import zkraw  # noqa: E402
from tcpproxy import TcpProxy  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("ZK_TARGET", "ringkeeper")

# How long a server may take to answer `ruok` after start (a JVM on a busy CI machine).
START_TIMEOUT_S = 60

SUPER_USER, SUPER_PASSWORD = "super", "super-secret"


def digest_id(user, password):
    """The digest scheme's ACL id: user:base64(sha1(user:password))."""
    h = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(h).decode()}"


# tickTime 200 ms lets sessions of 1 s expire quickly (minSessionTimeout defaults to
# 2 x tickTime = 400 ms on ZooKeeper; we say it explicitly). maxSessionTimeout is raised so
# clients that ask for 10-30 s get it (the default would be 20 x tickTime = 4 s).
SERVER_CFG = [
    "tickTime=200",
    "minSessionTimeout=400",
    "maxSessionTimeout=30000",
    "maxClientCnxns=0",
    "4lw.commands.whitelist=*",
    "extendedTypesEnabled=true",
    f"DigestAuthenticationProvider.superDigest={digest_id(SUPER_USER, SUPER_PASSWORD)}",
    # Two event loops, so real clients' sessions and watches span loops as on a bigger
    # machine (the default leaves one core outside the loops: one loop on 2 cores).
    # RingKeeper's own key; Apache ZooKeeper makes it an unused system property.
    "shards=2",
]
TICK_MS = 200
# How often containers and TTL nodes are checked for removal (ZooKeeper's default: 60 s).
CONTAINER_CHECK_MS = 100
MAX_SESSION_TIMEOUT_MS = 30000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ruok(port):
    try:
        return zkraw.four_letter("127.0.0.1", port, "ruok", timeout=1.0)
    except OSError:
        return ""


class Server:
    """A running server under test."""

    def __init__(self, target, dir, port, extra_cfg=(), jvm_flags=(), env=None):
        self.target, self.dir, self.port = target, dir, port
        self.cfg = SERVER_CFG + list(extra_cfg)
        # JVM -D flags, as ZooKeeper's start scripts take them from SERVER_JVMFLAGS:
        # RingKeeper reads that variable; Apache's JVM gets them in JAVA_TOOL_OPTIONS.
        self.jvm_flags = list(jvm_flags)
        # More environment for the server process (e.g. KRB5_CONFIG).
        self.env = dict(env or {})
        # RingKeeper's AdminServer, on a port of its own (Apache's is off: apache-zk.sh).
        self.admin_port = free_port()
        self.host = "127.0.0.1"
        self.hostport = f"127.0.0.1:{port}"
        self.proc = None  # our own child (ringkeeper); Apache's PID is in dir/pid

    def fourlw(self, cmd):
        return zkraw.four_letter(self.host, self.port, cmd)

    def raw(self, **kw):
        return zkraw.RawClient(self.host, self.port, **kw)

    def log_tail(self, n=40):
        try:
            with open(os.path.join(self.dir, "server.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no server.log)"

    def alive(self):
        if self.proc is not None:
            return self.proc.poll() is None
        return ruok(self.port) == "imok"

    # -- start / stop
    def start(self):
        if self.target == "apache":
            # ZooKeeper reads the container/TTL reaper interval only as a JVM system
            # property without the zookeeper. prefix, so zoo.cfg cannot carry it there.
            env = dict(os.environ, **self.env, ZK_EXTRA_CFG="\n".join(self.cfg),
                       JAVA_TOOL_OPTIONS=" ".join(
                           [f"-Dznode.container.checkIntervalMs={CONTAINER_CHECK_MS}"]
                           + self.jvm_flags),
                       START_TIMEOUT_S=str(START_TIMEOUT_S))
            r = subprocess.run([os.path.join(REPO, "scripts", "apache-zk.sh"), "start",
                                self.dir, str(self.port)], env=env, capture_output=True,
                               text=True, timeout=START_TIMEOUT_S + 30)
            if r.returncode != 0:
                raise RuntimeError(f"apache-zk.sh start failed: {r.stderr}\n{self.log_tail()}")
            self.wait_serving(time.monotonic() + START_TIMEOUT_S)
            return
        if self.target != "ringkeeper":
            raise RuntimeError(f"unknown ZK_TARGET={self.target!r} (ringkeeper or apache)")
        binary = os.environ.get("RINGKEEPER_BIN",
                                os.path.join(REPO, "target", "debug", "ringkeeper"))
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"{binary} not found: run `cargo build` or set RINGKEEPER_BIN")
        data = os.path.join(self.dir, "data")
        os.makedirs(data, exist_ok=True)
        cfg = os.path.join(self.dir, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write("\n".join([f"dataDir={data}", f"clientPort={self.port}",
                               "clientPortAddress=127.0.0.1",
                               f"znode.container.checkIntervalMs={CONTAINER_CHECK_MS}",
                               "admin.serverAddress=127.0.0.1",
                               f"admin.serverPort={self.admin_port}"]
                              + self.cfg) + "\n")
        log = open(os.path.join(self.dir, "server.log"), "w")
        env = dict(os.environ, **self.env, SERVER_JVMFLAGS=" ".join(self.jvm_flags))
        self.proc = subprocess.Popen([binary, cfg], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while ruok(self.port) != "imok":
            if self.proc.poll() is not None:
                raise RuntimeError(f"ringkeeper exited with {self.proc.returncode} during "
                                   f"start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ringkeeper did not answer ruok within "
                                   f"{START_TIMEOUT_S}s:\n{self.log_tail()}")
            time.sleep(0.05)  # polling a port that is not yet open: there is no event
        self.wait_serving(deadline)

    def wait_serving(self, deadline):
        """`ruok` answers before the server takes sessions; wait until one can be made."""
        while True:
            try:
                c = self.raw(timeout=2.0)
                if c.session_id != 0:
                    c.close_session()
                    return
                c.close_socket()
            except (OSError, zkraw.Closed):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.target} answered ruok but no session could be "
                                   f"made within {START_TIMEOUT_S}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self):
        if self.target == "apache":
            subprocess.run([os.path.join(REPO, "scripts", "apache-zk.sh"), "stop", self.dir],
                           capture_output=True, timeout=60)
            return
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the server must stop cleanly
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(request):
    dir = tempfile.mkdtemp(prefix=f"interop-{TARGET}-")
    srv = Server(TARGET, dir, free_port(), getattr(request.module, "SERVER_EXTRA_CFG", ()),
                 getattr(request.module, "SERVER_JVMFLAGS", ()))
    try:
        srv.start()
    except Exception:
        shutil.rmtree(dir, ignore_errors=True)
        raise
    yield srv
    srv.stop()
    if os.environ.get("KEEP_SERVER_DIRS"):
        print(f"server dir kept: {dir}")
    else:
        shutil.rmtree(dir, ignore_errors=True)


def fast_retry():
    # Reconnect quickly and forever: tests cut connections on purpose and bound their
    # own waits.
    return KazooRetry(max_tries=-1, delay=0.05, backoff=1, max_jitter=0.05, max_delay=0.2)


@pytest.fixture
def kz_factory(server):
    """Makes started kazoo clients (to the server, or to any hosts string); stops them all."""
    clients = []

    def make(hosts=None, timeout=10.0, start=True, **kw):
        c = KazooClient(hosts=hosts or server.hostport, timeout=timeout,
                        connection_retry=fast_retry(), **kw)
        clients.append(c)
        if start:
            c.start(timeout=15)
        return c

    yield make
    for c in clients:
        try:
            c.stop()
            c.close()
        except Exception:
            pass


@pytest.fixture
def kz(kz_factory):
    return kz_factory()


@pytest.fixture
def raw_factory(server):
    clients = []

    def make(**kw):
        c = server.raw(**kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        try:
            c.close_socket()
        except Exception:
            pass


@pytest.fixture
def raw(raw_factory):
    return raw_factory()


@pytest.fixture
def proxy(server):
    p = TcpProxy(server.host, server.port)
    yield p
    p.close()


@pytest.fixture
def base(request, kz):
    """A fresh znode for one test's nodes, named after the test."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)
    path = f"/{name}"
    kz.ensure_path(path)
    return path
