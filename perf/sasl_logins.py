#!/usr/bin/env python3
"""Cost of a SASL DIGEST-MD5 login: sequential sessions, each a raw handshake, an
optional DIGEST-MD5 exchange (two SASL round trips, pure-sasl on the client) and a
closeSession; prints per-session latency percentiles and sessions per second, with and
without the login, so the difference is the login's cost.

Usage: perf/sasl_logins.py HOST:PORT [--seconds 10] [--user bob --password bobsecret]
Needs a server with a JAAS file naming the user (see docs/security.md, SASL). Each
phase runs for at most --seconds.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "tests", "interop"))
import puresasl.client  # noqa: E402
import zkraw  # noqa: E402


def one(host, port, login, user, password):
    t = time.perf_counter()
    c = zkraw.RawClient(host, port, timeout=10)
    if login:
        cli = puresasl.client.SASLClient("zk-sasl-md5", "zookeeper", mechanism="DIGEST-MD5",
                                         username=user, password=password)
        first = c.sasl(b"")
        rep = c.sasl(cli.process(first.token))
        assert rep.err == zkraw.OK, rep
    c.close_session()
    c.close_socket()
    return time.perf_counter() - t


def phase(args, login):
    host, port = args.server.rsplit(":", 1)
    lat = []
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        lat.append(one(host, int(port), login, args.user, args.password))
    lat.sort()
    q = statistics.quantiles(lat, n=100)
    total = sum(lat)
    print(f"{'with' if login else 'without'} login: {len(lat)} sessions, "
          f"{len(lat) / total:.0f}/s, median {statistics.median(lat) * 1e3:.2f} ms, "
          f"p99 {q[98] * 1e3:.2f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--user", default="bob")
    ap.add_argument("--password", default="bobsecret")
    args = ap.parse_args()
    phase(args, False)
    phase(args, True)


if __name__ == "__main__":
    main()
