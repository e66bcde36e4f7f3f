#!/usr/bin/env python3
"""Times a server start: runs COMMAND (which launches a server), and from that moment
polls HOST:PORT with a real client request (kazoo: connect, then exists PATH) until it
succeeds; prints the seconds from launch to the first answered request.

Usage: time-to-serve.py HOST PORT PATH TIMEOUT_S -- COMMAND...
Exit status 1 if the server did not answer within TIMEOUT_S.
"""

import logging
import subprocess
import sys
import time

from kazoo.client import KazooClient

# Seconds between attempts: the resolution of the measurement.
POLL_S = 0.05


def main():
    host, port, path, timeout_s = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    cmd = sys.argv[sys.argv.index("--") + 1:]
    logging.disable(logging.CRITICAL)
    t0 = time.monotonic()
    launcher = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    served = None
    # Bounded by TIMEOUT_S.
    while time.monotonic() - t0 < timeout_s:
        zk = KazooClient(hosts=f"{host}:{port}", timeout=2.0, connection_retry=None)
        try:
            zk.start(timeout=1.0)
            if zk.exists(path) is not None:
                served = time.monotonic() - t0
                break
        except Exception:  # noqa: BLE001 - not serving yet
            pass
        finally:
            try:
                zk.stop()
                zk.close()
            except Exception:  # noqa: BLE001
                pass
        time.sleep(POLL_S)
    launcher.wait(timeout=max(1.0, timeout_s - (time.monotonic() - t0)) + 60)
    if served is None:
        print(f"not serving after {timeout_s} s", file=sys.stderr)
        return 1
    print(f"{served:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
