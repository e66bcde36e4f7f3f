import socket, sys, time, os
from kazoo.client import KazooClient
host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def fourlw(cmd):
    s = socket.create_connection((host, port)); s.sendall(cmd.encode()); s.shutdown(socket.SHUT_WR)
    buf = b""
    while True:
        d = s.recv(65536)
        if not d: break
        buf += d
    s.close(); return buf.decode()
zk = KazooClient(hosts=f"{host}:{port}"); zk.start()
zk2 = KazooClient(hosts=f"{host}:{port}"); zk2.start()
zk.ensure_path("/app/config")
zk.create("/app/lock", b"x", ephemeral=True)
zk2.create("/app/lock2", b"y", ephemeral=True)
zk.get("/app/config", watch=lambda e: None)
zk.get_children("/app", watch=lambda e: None)
zk.exists("/missing", watch=lambda e: None)
zk2.get("/app/config", watch=lambda e: None)
zk.set("/app/config", b"v1"); zk.get("/app/config", watch=lambda e: None)
for c in sys.argv[4:]:
    with open(os.path.join(out, c + ".txt"), "w") as f:
        f.write(fourlw(c))
zk.stop(); zk2.stop()
