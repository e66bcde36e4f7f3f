"""The connection token bucket (ZooKeeper's BlueThrottle): connectionMaxTokens=5 with a
refill of one token per 60 s: after five connect requests, the next ones are refused
(their connections closed) until tokens come back. Apache ZooKeeper reads only the system
property zookeeper.connection_throttle_tokens (its documented zoo.cfg key is not read),
so the reference run sets both spellings."""

import zkraw

TOKENS = 5
SERVER_EXTRA_CFG = [
    f"connectionMaxTokens={TOKENS}",
    "connectionTokenFillTime=60000",
    "connectionTokenFillCount=1",
    f"connection_throttle_tokens={TOKENS}",
    "connection_throttle_fill_time=60000",
    "connection_throttle_fill_count=1",
]


def test_connect_requests_beyond_the_bucket_are_refused(server):
    held, refused = [], 0
    try:
        for _ in range(TOKENS + 5):
            try:
                held.append(server.raw(timeout=5.0))
            except (OSError, zkraw.Closed):
                refused += 1
        # The start-up probe took one token or more already.
        assert len(held) <= TOKENS and refused >= 5
        # Connections that are already made keep working.
        assert all(h.exists("/").err == zkraw.OK for h in held)
    finally:
        for h in held:
            h.close_socket()
