#!/usr/bin/env python3
"""Dynamic reconfiguration on real `ringkeeper` processes on 127.0.0.1 (started from
zoo.cfg files, as in ensemble.py).

Usage: ensemble_reconfig.py RINGKEEPER_BINARY SCENARIO

Scenarios:
  config     three voters with reconfigEnabled=true: every server's /zookeeper/config
             holds the server lines and `version=<hex>` of the established epoch's
             first zxid (ZooKeeper's NEWLEADER zxid); each zoo.cfg lost its server
             lines for `dynamicConfigFile=` pointing at `zoo.cfg.dynamic.<version>`,
             and `zoo.cfg.bak` keeps the original; a restarted server starts from the
             dynamic file and shows the same config. Then three voters without
             reconfigEnabled: version 0 and no file touched.

Each ends with ensemble.stop_and_check_data (identical trees, `ringkeeper data check`).
Every wait is bounded; every process started here is stopped by its PID.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ensemble import (  # noqa: E402
    Ensemble, client, run_scenario, stop_and_check_data)

POLL_S = 0.05
# 30 s for anything to be seen: far above what it takes, so only a hang fails.
ATTEMPTS = 600


def wait_serving(ens):
    """Waits until every live server reports leader, follower or observer."""
    for _ in range(ATTEMPTS):
        modes = ens.modes()
        if modes and all(m in ("leader", "follower", "observer") for m in modes.values()):
            return modes
        time.sleep(POLL_S)
    raise RuntimeError(f"not every server serves: {ens.modes()}")


def static_lines(ens):
    """The server.N lines ensemble.py wrote, as QuorumServer.toString shows them."""
    with open(ens.servers[0].cfg) as f:
        lines = [l.strip() for l in f if l.startswith("server.")]
    out = []
    for l in lines:
        key, value = l.split("=", 1)
        if not value.endswith(":observer"):
            value += ":participant"
        out.append(f"{key}={value}")
    return out


def config_of(server):
    """(data, stat) of /zookeeper/config read through a kazoo client on `server`."""
    zk = client(server.port)
    try:
        data, stat = zk.get("/zookeeper/config")
        return data.decode(), stat
    finally:
        zk.stop()
        zk.close()


def wait_config(ens, want):
    """Waits until every live server's /zookeeper/config is `want`; returns the stats."""
    seen = {}
    for _ in range(ATTEMPTS):
        seen = {s.sid: config_of(s) for s in ens.servers if s.alive()}
        if all(d == want for d, _ in seen.values()):
            return {sid: st for sid, (_, st) in seen.items()}
        time.sleep(POLL_S)
    raise RuntimeError(f"/zookeeper/config is not {want!r} everywhere: {seen}")


def scenario_config(ens):
    lines = static_lines(ens)
    for s in ens.servers:
        s.add_cfg("reconfigEnabled=true\n")
    ens.start()
    leader = ens.wait_leader()
    wait_serving(ens)
    zk = client(ens.servers[leader - 1].port)
    zk.create("/after-start", b"x")
    epoch = zk.exists("/after-start").mzxid >> 32
    zk.stop()
    zk.close()
    version = f"{epoch << 32:x}"
    want = "\n".join(lines) + f"\nversion={version}"
    stats = wait_config(ens, want)
    for sid, st in stats.items():
        assert st.mzxid == epoch << 32 and st.version == -1, (sid, st)
    for s in ens.servers:
        # zoo.cfg: no server line, a pointer to the dynamic file; the backup kept.
        with open(s.cfg) as f:
            text = f.read()
        dynamic = os.path.realpath(s.cfg + f".dynamic.{version}")
        assert "server." not in text, text
        assert f"dynamicConfigFile={dynamic}\n" in text, text
        assert "clientPort=" in text, text  # the lines carry no client address
        with open(dynamic) as f:
            assert f.read() == "\n".join(sorted(lines)), dynamic
        with open(s.cfg + ".bak") as f:
            assert f.read().count("server.") == len(lines)
    # A restarted follower starts from the dynamic file and agrees.
    follower = next(s for s in ens.servers if s.sid != leader)
    assert follower.terminate()
    follower.start()
    wait_serving(ens)
    wait_config(ens, want)
    assert follower.log_count("cannot write the configuration") == 0
    print(f"config: version {version} on every server, files moved")
    stop_and_check_data(ens)

    # Without reconfigEnabled: version 0, zoo.cfg as written.
    plain = Ensemble(ens.binary, 3)
    try:
        with open(plain.servers[0].cfg) as f:
            before = f.read()
        plain.start()
        plain.wait_leader()
        wait_serving(plain)
        wait_config(plain, "\n".join(static_lines(plain)) + "\nversion=0")
        with open(plain.servers[0].cfg) as f:
            assert f.read() == before
        assert not any(re.search(r"zoo\.cfg\.(dynamic|bak)", n)
                       for s in plain.servers for n in os.listdir(s.dir))
        print("config: reconfig disabled: version 0, zoo.cfg untouched")
        stop_and_check_data(plain)
    finally:
        plain.stop()


SCENARIOS = {
    "config": scenario_config,
}


def main():
    binary, scenario = sys.argv[1], sys.argv[2]
    run_scenario(Ensemble(binary, 3), SCENARIOS[scenario], scenario)


if __name__ == "__main__":
    main()
