"""Shared by the multi-process test scripts (crash_kill9.py, disk_full.py, ensemble.py):
free loopback ports, a RingKeeper server process started from a zoo.cfg and stopped by
its PID, four-letter words, a kazoo client and `ringkeeper data check`.
"""

import os
import signal
import socket
import subprocess
import time

# Attempts (0.05 s apart) to connect to a starting server before giving up.
START_ATTEMPTS = 400


# Ports this process has handed out: a later call must not return one of them again
# (the kernel may, once the probing socket is closed: an ensemble's client port came
# back as its AdminServer port, and the server could not bind it).
_handed_out = set()


def free_ports(n):
    """`n` distinct free loopback ports (held open together so they differ), none of
    them handed out before by this process."""
    socks, ports = [], []
    try:
        # Bounded: the kernel hands out each port once while its socket stays open.
        for _ in range(n + 1000):
            if len(ports) == n:
                break
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            port = s.getsockname()[1]
            if port not in _handed_out:
                ports.append(port)
        if len(ports) < n:
            raise RuntimeError(f"could not find {n} fresh loopback ports")
        _handed_out.update(ports)
        return ports
    finally:
        for s in socks:
            s.close()


def free_port():
    return free_ports(1)[0]


def four_letter(port, word, timeout=2.0, host="127.0.0.1"):
    """The answer to a four-letter word ('' when the server is not there). What arrived
    before a reset counts."""
    data = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(word.encode())
            s.shutdown(socket.SHUT_WR)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        pass
    return data.decode(errors="replace")


def srvr_mode(port, timeout=2.0, host="127.0.0.1"):
    """The `Mode:` a server reports in `srvr` (leader, follower, observer, standalone),
    or None (not serving, or not there)."""
    for line in four_letter(port, "srvr", timeout, host).splitlines():
        if line.startswith("Mode: "):
            return line[len("Mode: "):].strip()
    return None


def parse_hash(text):
    """The `hash` four-letter word's answer as (zxid, digest) of the served tree, or None.

    It is one `ZXIDHEX: DIGEST` line (zxid in hex without 0x, the digest in signed
    decimal), as ZooKeeper's `hash` prints its digest log."""
    lines = text.splitlines()
    if len(lines) != 1 or ": " not in lines[0]:
        return None
    zxid, digest = lines[0].split(": ", 1)
    try:
        return int(zxid, 16), int(digest)
    except ValueError:
        return None


class Server:
    """One `ringkeeper zoo.cfg` process in `workdir`, its output appended to server.log.
    `cfg_lines` follow the standard ones (tickTime, dataDir, clientPort on 127.0.0.1)."""

    # Bound on one four-letter word to this server (`mode`).
    fourlw_timeout = 2.0

    def __init__(self, binary, workdir, port, cfg_lines=(), data_dir=None, tick_ms=2000):
        self.binary = binary
        self.workdir = workdir
        self.cfg = os.path.join(workdir, "zoo.cfg")
        self.data_dir = data_dir or os.path.join(workdir, "data")
        self.log_path = os.path.join(workdir, "server.log")
        self.port = port
        os.makedirs(self.data_dir, exist_ok=True)
        with open(self.cfg, "w") as f:
            f.write(
                f"tickTime={tick_ms}\n"
                f"dataDir={self.data_dir}\n"
                f"clientPort={port}\n"
                "clientPortAddress=127.0.0.1\n"
            )
            for line in cfg_lines:
                f.write(line + "\n")
        self.proc = None

    def launch(self):
        """Starts the process without waiting for it to listen."""
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([self.binary, self.cfg], stdout=log, stderr=log)

    def start(self):
        """Starts the process and waits until its client port accepts connections."""
        self.launch()
        for _ in range(START_ATTEMPTS):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not listen: {self.tail()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def terminate(self, timeout=20):
        """Clean stop: SIGTERM (the server shuts down), SIGKILL if it has not exited
        within `timeout` s. True if it exited on its own."""
        if not self.alive():
            return True
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            self.kill9()
            return False

    def stop(self):
        """SIGTERM, then SIGKILL after 20 s."""
        self.terminate()

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def pause(self, timeout=30.0):
        """SIGSTOP, then waits until every thread of the process is stopped.

        The kernel stops a process's threads one by one: the thread that takes the
        signal must run first, and on a loaded machine (or if it is a niced thread) the
        others keep working meanwhile. A test that needs the server frozen waits for
        every /proc/<pid>/task/*/stat to say `T`."""
        self.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(state == "T" for state in self.thread_states()):
                return
            time.sleep(0.005)
        raise RuntimeError(f"server {self.pid()} not stopped after {timeout} s: "
                           f"{self.thread_states()}")

    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def thread_states(self):
        """The scheduler state letter of each of the process's threads."""
        states = []
        task_dir = f"/proc/{self.proc.pid}/task"
        for tid in os.listdir(task_dir):
            try:
                with open(f"{task_dir}/{tid}/stat") as f:
                    # The state follows the command name, which is in parentheses.
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except (OSError, IndexError):
                continue  # a thread that exited meanwhile
        return states

    def add_cfg(self, lines):
        """Appends zoo.cfg lines (before the first start)."""
        with open(self.cfg, "a") as f:
            f.write(lines)

    def mode(self):
        return srvr_mode(self.port, self.fourlw_timeout) if self.alive() else None

    def data_check(self):
        """`ringkeeper data check` on this server's dataDir: (exit code, output)."""
        code, out, err = data_check(self.binary, self.data_dir)
        return code, out + err

    def log_count(self, needle):
        """How many lines of this server's log contain `needle`."""
        try:
            with open(self.log_path, errors="replace") as f:
                return sum(needle in line for line in f)
        except OSError:
            return 0

    def tail(self, chars=3000):
        try:
            with open(self.log_path) as f:
                return f.read()[-chars:]
        except OSError:
            return ""


def connect(port, timeout=10.0, **kw):
    """A started kazoo client on 127.0.0.1:`port`."""
    from kazoo.client import KazooClient

    zk = KazooClient(hosts=f"127.0.0.1:{port}", timeout=timeout, **kw)
    zk.start(timeout=15)
    return zk


def data_check(binary, data_dir):
    """Runs `ringkeeper data check DIR`: (exit code, stdout, stderr)."""
    r = subprocess.run([binary, "data", "check", data_dir], capture_output=True, text=True,
                       timeout=300)
    return r.returncode, r.stdout, r.stderr
