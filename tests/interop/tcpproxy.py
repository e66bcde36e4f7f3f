"""A loopback TCP proxy that a test can cut, to force a client to reconnect.

A client connected through the proxy sees its connection drop when ``cut()`` is called;
while ``blocked`` it cannot reach the server at all (new connections are closed at once),
which lets the server expire the session or lets changes happen while the client is away.
"""

import socket
import threading


class TcpProxy:
    def __init__(self, upstream_host, upstream_port):
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.blocked = False
        self.accepted = 0  # connections passed through, for tests that await a reconnect
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pairs = []
        self._closing = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def hostport(self):
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.blocked or self._closing:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._cond:
                self._pairs.append((client, server))
                self.accepted += 1
                self._cond.notify_all()
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """Drops every connection currently passing through the proxy."""
        with self._cond:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def wait_accepted(self, count, timeout=20.0):
        """Waits until at least `count` connections have been passed through."""
        with self._cond:
            return self._cond.wait_for(lambda: self.accepted >= count, timeout)

    def close(self):
        self._closing = True
        self.listener.close()
        self.cut()
