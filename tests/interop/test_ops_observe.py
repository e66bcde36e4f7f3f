"""What an operator sees of a loaded server: the slow-request log and load attribution
(the `load` four-letter word, the AdminServer's `load`, `ringkeeper top` as JSON and in a
real terminal under tmux), under zkbench load with a planted hot client (its own
address, 127.0.0.2) hammering a planted hot path.

RingKeeper only (these are RingKeeper's own tools).
"""

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest

import zkraw
from conftest import REPO, TARGET

pytestmark = pytest.mark.skipif(TARGET != "ringkeeper", reason="RingKeeper's own tools")

SLOW_PER_SECOND = 3
SERVER_EXTRA_CFG = ["slowRequestThresholdMs=1", f"slowRequestLogPerSecond={SLOW_PER_SECOND}"]
HOT_PATH = "/hot/spot"
HOT_SOURCE = "127.0.0.2"


def binary(name):
    """`ringkeeper` (RINGKEEPER_BIN, as conftest) or `zkbench` beside it."""
    rk = os.environ.get("RINGKEEPER_BIN", os.path.join(REPO, "target", "debug", "ringkeeper"))
    return rk if name == "ringkeeper" else os.path.join(os.path.dirname(rk), name)


def slow_lines(server):
    with open(os.path.join(server.dir, "server.log"), errors="replace") as f:
        return [l for l in f if "slow request:" in l]


def test_slow_requests_are_logged_with_their_stages(server):
    c = server.raw()
    c.create("/slow", b"")
    before = len(slow_lines(server))
    # 48 writes of 512 KiB pipelined: 24 MiB through the log, which no disk makes
    # durable in 1 ms, so the later writes wait longer than the 1 ms threshold.
    value = b"v" * (512 * 1024)
    n = 48
    for i in range(n):
        c.xid += 1
        c.send_frame(zkraw.j_int(c.xid) + zkraw.j_int(zkraw.SET_DATA) + zkraw.j_str("/slow")
                     + zkraw.j_buf(value) + zkraw.j_int(-1))
    replies = 0
    while replies < n:
        if isinstance(c.read_one(), zkraw.Reply):
            replies += 1
    # The log is written by the server's shard loop; give the lines a moment to land.
    deadline = time.monotonic() + 10
    while len(slow_lines(server)) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = slow_lines(server)[before:]
    assert lines, "no slow-request line for writes slower than the threshold"
    line = lines[0]
    for field in ("setData /slow", f"session 0x{c.session_id:x}", "client 127.0.0.1:",
                  "bytes ", "zxid 0x", "stages us: proposed", " logged ", " replicated ",
                  " committed ", " answered "):
        assert field in line, (field, line)
    # Rate-limited: a handful a second, not one per slow request.
    assert len(lines) < n, lines


def run_hot_client(port, stop, counter):
    """Closed loop of getData on HOT_PATH from another local address, 32 in flight."""
    c = zkraw.RawClient("127.0.0.1", port, source=HOT_SOURCE)
    counter["session"] = c.session_id
    req = zkraw.j_str(HOT_PATH) + zkraw.j_bool(False)
    while not stop.is_set():
        for _ in range(32):
            c.xid += 1
            c.send_frame(zkraw.j_int(c.xid) + zkraw.j_int(zkraw.GET_DATA) + req)
        got = 0
        while got < 32:
            if isinstance(c.read_one(), zkraw.Reply):
                got += 1
        counter["ops"] += 32
    c.close_socket()


@pytest.fixture
def loaded(server):
    """zkbench (16 sessions, 500 ops/s, from 127.0.0.1) plus the hot client, for the
    duration of a test (bounded: zkbench stops by itself, the hot client at the end)."""
    c = server.raw()
    c.create("/hot", b"")
    c.create(HOT_PATH, b"x" * 100)
    c.close_session()
    bench = subprocess.Popen(
        [binary("zkbench"), "run", "-c", server.hostport, "-w", "mixed", "--rate", "500",
         "-s", "16", "-d", "20", "--warmup", "0", "--drain", "1", "--keys", "200", "-q",
         "--no-server-cost"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    counter = {"ops": 0, "session": None}
    t = threading.Thread(target=run_hot_client, args=(server.port, stop, counter), daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while counter["ops"] < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    yield counter
    stop.set()
    t.join(timeout=10)
    bench.terminate()
    bench.wait(timeout=20)


def parse_load(text):
    rows = {}
    for line in text.splitlines():
        f = line.split("\t")
        if len(f) == 7:
            rows.setdefault(f[0], []).append((f[1], int(f[2])))
    return rows


def test_load_word_and_admin_command_find_the_hot_client_and_path(server, loaded):
    rows = parse_load(server.fourlw("load"))
    assert rows["client"][0][0] == HOT_SOURCE, rows["client"][:3]
    assert rows["path"][0][0] == HOT_PATH, rows["path"][:3]
    assert rows["session"][0][0] == f"0x{loaded['session']:x}", rows["session"][:3]
    # zkbench's keys are there too, under its root.
    assert any(k.startswith("/zkbench") for k, _ in rows["path"])
    with urllib.request.urlopen(f"http://127.0.0.1:{server.admin_port}/commands/load",
                                timeout=20) as r:
        body = json.load(r)
    assert body["error"] is None
    assert body["load"]["clients"][0]["key"] == HOT_SOURCE
    assert body["load"]["paths"][0]["key"] == HOT_PATH


def test_top_json_dump_ranks_the_hot_client_and_path_by_rate(server, loaded):
    out = subprocess.run([binary("ringkeeper"), "top", server.hostport, "--once", "--json",
                          "--interval-ms", "1000"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    v = json.loads(out.stdout)
    assert v["servers"][0]["server"] == server.hostport
    assert v["servers"][0]["state"] == "standalone"
    assert v["servers"][0]["ops_per_sec"] > 0
    assert v["clients"][0]["key"] == HOT_SOURCE and v["clients"][0]["ops_per_sec"] > 0
    assert v["paths"][0]["key"] == HOT_PATH
    assert v["sessions"][0]["key"] == f"0x{loaded['session']:x}"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_top_draws_the_live_view_in_a_terminal(server, loaded, tmp_path):
    name = f"rktop-{os.getpid()}"
    sock = str(tmp_path / "tmux.sock")
    tmux = ["tmux", "-S", sock]
    subprocess.run(tmux + ["new-session", "-d", "-s", name, "-x", "120", "-y", "50",
                           f"{binary('ringkeeper')} top {server.hostport} --iterations 30; "
                           "sleep 30"], check=True, timeout=10)
    try:
        screens = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.5)
            screen = subprocess.run(tmux + ["capture-pane", "-p", "-t", name],
                                    capture_output=True, text=True, timeout=10).stdout
            screens.append(screen)
            if HOT_PATH in screen and HOT_SOURCE in screen and len(screens) >= 3:
                break
        screen = screens[-1]
        assert "ringkeeper top - " in screen, screen
        assert "TOP SESSIONS" in screen and "TOP CLIENTS" in screen and "TOP PATHS" in screen
        lines = screen.splitlines()
        # The hot ones head their tables: the first row under each title.
        first = {lines[i].split()[0] + " " + lines[i].split()[1]: lines[i + 1].split()[0]
                 for i in range(len(lines) - 1) if lines[i].startswith("TOP ")}
        assert first["TOP CLIENTS"] == HOT_SOURCE, screen
        assert first["TOP PATHS"] == HOT_PATH, screen
        # The screen is redrawn in place (cleared), not scrolled: one header only.
        assert screen.count("ringkeeper top - ") == 1
        # And it moves: a later screen differs from an earlier one.
        assert len(set(screens)) > 1
    finally:
        subprocess.run(tmux + ["kill-server"], timeout=10)
