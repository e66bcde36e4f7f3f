"""Hosts on a private network for multi-process tests, made of Linux network namespaces.

Each host is a namespace with one interface `eth0` on 10.78.0.0/24 (host I has address
10.78.0.I). Its cable is a veth pair whose other end, `vI`, is a port of a bridge in a
further "switch" namespace, so nothing is added to the root namespace and no packet
leaves the namespaces made here. Faults use iproute2 only:

  cut(I) / restore(I)       the cable of host I down / up (switch side): packets to and
                            from it are dropped silently, no TCP reset, as when a cable
                            is pulled;
  partition([[1, 2], ...])  each group of hosts on its own bridge: hosts of one group
                            still reach each other, no packet crosses between groups;
  heal()                    every host back on the first bridge with its cable up.

Namespace names start with `rkpt<pid>` of the process that made them, so two runs never
clash (the address ranges do not either: each run has its own switch). `down()` deletes
exactly the namespaces this object created, also after a failure half way; it does not
end the processes inside them, the caller stops those first by their PIDs.

Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and `ip`; `up()` raises `Unavailable` with
the reason when the namespaces cannot be made.

Usage as a script (a self-check, needs root): python3 netns.py selftest
"""

import ctypes
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

SUBNET = "10.78.0"
PREFIX_LEN = 24
# Every `ip` command ends within this; a hung one fails the caller instead of stalling it.
IP_TIMEOUT_S = 30
# setns(2) flag for a network namespace (linux/sched.h).
CLONE_NEWNET = 0x40000000
# prctl(2) option: a signal the kernel sends this process when its parent thread exits.
PR_SET_PDEATHSIG = 1
SIGKILL = 9


class Unavailable(Exception):
    """The namespaces cannot be made here (not root, no `ip`, no permission)."""


_libc = ctypes.CDLL(None, use_errno=True)


def kill_with_parent():
    """For `preexec_fn`: the child gets SIGKILL when the thread that started it exits, so a
    driver that dies without its finally block (SIGKILL) leaves no server behind. It
    survives the exec of `ip netns exec` and the server's own exec on TRUNC."""
    _libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)


class Net:
    """Hosts `hosts` (numbers 1..254, the last byte of their address) on one switch."""

    def __init__(self, hosts, prefix=None):
        assert hosts and all(1 <= h <= 254 for h in hosts), hosts
        assert len(set(hosts)) == len(hosts), hosts
        self.hosts = list(hosts)
        self.prefix = prefix or f"rkpt{os.getpid()}"
        self.switch = f"{self.prefix}sw"
        # Namespaces made so far, in order: `down()` deletes these and nothing else.
        self.created = []
        # Bridges in the switch namespace; br0 is the one every host starts on.
        self.bridges = ["br0"]
        # The namespace the calling process moved into with `enter`, if any.
        self.entered = None

    def ns(self, host):
        assert host in self.hosts, host
        return f"{self.prefix}h{host}"

    @staticmethod
    def addr(host):
        return f"{SUBNET}.{host}"

    def _ip(self, *args, ns=None):
        argv = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT_S)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")

    def _add_ns(self, name):
        self._ip("netns", "add", name)
        self.created.append(name)
        self._ip("link", "set", "lo", "up", ns=name)

    def up(self):
        """Makes the switch and every host. Raises `Unavailable` when the first namespace
        cannot be made; later failures are bugs of this script and raise RuntimeError."""
        if os.geteuid() != 0:
            raise Unavailable("not root: `ip netns add` needs CAP_SYS_ADMIN")
        if shutil.which("ip") is None:
            raise Unavailable("no `ip` command: install iproute2")
        try:
            self._add_ns(self.switch)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            raise Unavailable(f"cannot make a network namespace: {e}") from e
        self._ip("link", "add", "br0", "type", "bridge", ns=self.switch)
        self._ip("link", "set", "br0", "up", ns=self.switch)
        for h in self.hosts:
            self._add_ns(self.ns(h))
            # The pair is made inside the switch with its host end moved straight into
            # the host: neither end ever exists in the root namespace.
            self._ip("link", "add", f"v{h}", "type", "veth", "peer", "name", "eth0",
                     "netns", self.ns(h), ns=self.switch)
            self._ip("link", "set", f"v{h}", "master", "br0", "up", ns=self.switch)
            self._ip("addr", "add", f"{self.addr(h)}/{PREFIX_LEN}", "dev", "eth0",
                     ns=self.ns(h))
            self._ip("link", "set", "eth0", "up", ns=self.ns(h))

    def down(self):
        """Deletes the namespaces this object made (last first); reports, never raises, so
        that it can run in a finally block after any failure."""
        for name in reversed(self.created):
            try:
                self._ip("netns", "del", name)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                print(f"netns: cannot delete {name}: {e}", file=sys.stderr)
        self.created.clear()

    def pids(self):
        """PIDs of the processes still inside this object's namespaces, but the one the
        caller entered (the caller itself is there, and so is the `ip` listing it)."""
        out = []
        for name in self.created:
            if name == self.entered:
                continue
            r = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                               text=True, timeout=IP_TIMEOUT_S)
            out += [int(p) for p in r.stdout.split()]
        return out

    def argv(self, host, argv):
        """`argv` to run inside `host`."""
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def popen(self, host, argv, **kw):
        """Starts `argv` inside `host`. `ip netns exec` execs the command in place, so the
        returned process's PID is the command's own."""
        return subprocess.Popen(self.argv(host, argv), preexec_fn=kill_with_parent, **kw)

    def cut(self, host):
        self._ip("link", "set", f"v{host}", "down", ns=self.switch)

    def restore(self, host):
        self._ip("link", "set", f"v{host}", "up", ns=self.switch)

    def partition(self, groups):
        """Puts each group after the first on a bridge of its own; hosts named in no group
        stay with the first."""
        for k, group in enumerate(groups):
            if k == 0:
                continue
            while len(self.bridges) <= k:
                br = f"br{len(self.bridges)}"
                self._ip("link", "add", br, "type", "bridge", ns=self.switch)
                self._ip("link", "set", br, "up", ns=self.switch)
                self.bridges.append(br)
            for h in group:
                self._ip("link", "set", f"v{h}", "master", self.bridges[k], ns=self.switch)

    def heal(self):
        for h in self.hosts:
            self._ip("link", "set", f"v{h}", "master", "br0", "up", ns=self.switch)

    def enter(self, host):
        """Moves the calling thread into `host`'s namespace. Threads it starts afterwards
        are there too (a new thread inherits its creator's namespaces); call it before
        starting any, from the main thread, to put the whole process there."""
        assert threading.current_thread() is threading.main_thread()
        fd = os.open(f"/run/netns/{self.ns(host)}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into {self.ns(host)}: {os.strerror(err)}")
        finally:
            os.close(fd)
        self.entered = self.ns(host)


def reachable(host_addr, port, timeout=1.0):
    """Whether a TCP connection to host_addr:port is accepted within `timeout`."""
    try:
        socket.create_connection((host_addr, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def selftest():
    """Hosts 1..3; a listener on each; host 3 checks what it reaches through a cut, a
    partition and the heal. Exit 0 when each fault does what it says, 77 when skipped."""
    net = Net([1, 2, 3])
    listeners = []
    try:
        try:
            net.up()
        except Unavailable as e:
            print(f"netns selftest: skipped: {e}")
            return 77
        port = 7000
        code = ("import socket,time;s=socket.socket();"
                f"s.bind(('0.0.0.0',{port}));s.listen(64);"
                "[s.accept()[0].close() for _ in range(10**6)]")
        for h in (1, 2):
            listeners.append(net.popen(h, [sys.executable, "-c", code]))
        net.enter(3)
        checks = []

        def expect(what, h, want):
            # Reached once within 5 s (the listener may still be starting), or not in 1 s.
            got = False
            for _ in range(50 if want else 1):
                got = reachable(net.addr(h), port)
                if got:
                    break
                time.sleep(0.1)
            checks.append((what, got == want))
            print(f"  {'ok  ' if got == want else 'FAIL'} {what}")

        expect("3 reaches 1", 1, True)
        net.cut(1)
        expect("cut 1: 3 does not reach 1", 1, False)
        expect("cut 1: 3 still reaches 2", 2, True)
        net.restore(1)
        expect("restore 1: 3 reaches 1", 1, True)
        net.partition([[2, 3], [1]])
        expect("partition 1|2,3: 3 does not reach 1", 1, False)
        expect("partition 1|2,3: 3 reaches 2", 2, True)
        net.heal()
        expect("heal: 3 reaches 1", 1, True)
        return 0 if all(ok for _, ok in checks) else 1
    finally:
        for p in listeners:
            p.kill()
            p.wait()
        net.down()


if __name__ == "__main__":
    if sys.argv[1:] == ["selftest"]:
        sys.exit(selftest())
    print(__doc__)
    sys.exit(2)
