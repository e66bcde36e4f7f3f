"""Four-letter words on the client port, parsed the way monitoring tools parse them."""

import re

import pytest


def kv_lines(text, sep):
    out = {}
    for line in text.splitlines():
        if sep in line:
            k, v = line.split(sep, 1)
            out[k.strip()] = v.strip()
    return out


def test_ruok(server, kz):
    assert server.fourlw("ruok") == "imok"
    assert kz.command(b"ruok") == "imok"  # kazoo's own 4lw helper


def test_srvr(server):
    out = server.fourlw("srvr")
    f = kv_lines(out, ": ")
    assert f["Mode"] == "standalone"
    assert f["Zookeeper version"]
    assert re.fullmatch(r"0x[0-9a-f]+", f["Zxid"])
    assert re.fullmatch(r"\d+/[\d.]+/\d+", f["Latency min/avg/max"])
    for k in ("Received", "Sent", "Connections", "Outstanding", "Node count"):
        assert f[k].isdigit(), k


def test_srvr_zxid_and_node_count_follow_writes(server, kz, base):
    f0 = kv_lines(server.fourlw("srvr"), ": ")
    kz.create(base + "/a")
    kz.create(base + "/b")
    f1 = kv_lines(server.fourlw("srvr"), ": ")
    assert int(f1["Node count"]) == int(f0["Node count"]) + 2
    assert int(f1["Zxid"], 16) >= int(f0["Zxid"], 16) + 2


def test_stat_lists_clients(server, kz):
    out = server.fourlw("stat")
    assert out.startswith("Zookeeper version: ")
    clients = out.split("Clients:\n", 1)[1].split("\n\n", 1)[0]
    assert any(line.startswith(" /127.0.0.1:") for line in clients.splitlines())
    assert "Mode: standalone" in out


def test_mntr(server, kz, base):
    def mntr():
        lines = [line for line in server.fourlw("mntr").splitlines() if line]
        assert all(line.count("\t") == 1 for line in lines), lines
        return dict(line.split("\t") for line in lines)

    m0 = mntr()
    assert m0["zk_server_state"] == "standalone"
    assert m0["zk_version"]
    for k in ("zk_znode_count", "zk_ephemerals_count", "zk_watch_count",
              "zk_num_alive_connections", "zk_outstanding_requests", "zk_packets_received",
              "zk_packets_sent", "zk_approximate_data_size", "zk_avg_latency",
              "zk_max_latency", "zk_min_latency"):
        float(m0[k])  # present and numeric
    kz.create(base + "/e", ephemeral=True)
    kz.get(base, watch=lambda ev: None)
    m1 = mntr()
    assert int(m1["zk_znode_count"]) == int(m0["zk_znode_count"]) + 1
    assert int(m1["zk_ephemerals_count"]) == int(m0["zk_ephemerals_count"]) + 1
    assert int(m1["zk_watch_count"]) >= int(m0["zk_watch_count"]) + 1


def test_conf(server):
    c = kv_lines(server.fourlw("conf"), "=")
    assert c["clientPort"] == str(server.port)
    assert c["tickTime"] == "200"
    assert c["minSessionTimeout"] == "400"
    assert c["maxSessionTimeout"] == "30000"
    assert c["maxClientCnxns"] == "0"
    assert "dataDir" in c


def test_cons_shows_session(server, kz):
    sid = f"0x{kz.client_id[0]:x}"
    out = server.fourlw("cons")
    line = next(line for line in out.splitlines() if f"sid={sid}," in line)
    assert line.startswith(" /127.0.0.1:")
    fields = kv_lines(line.split("(", 1)[1].rstrip(")").replace(",", "\n"), "=")
    for k in ("queued", "recved", "sent", "lop", "est", "to", "lcxid", "lzxid"):
        assert k in fields, k
    assert fields["to"] == "10000"


def test_envi(server):
    out = server.fourlw("envi")
    assert out.startswith("Environment:\n")
    e = kv_lines(out, "=")
    assert e["zookeeper.version"]
    assert "os.name" in e


def test_watch_commands(server, kz, base):
    p = kz.create(base + "/w")
    kz.get(p, watch=lambda ev: None)
    sid = f"0x{kz.client_id[0]:x}"

    m = re.search(r"(\d+) connections watching (\d+) paths\nTotal watches:(\d+)",
                  server.fourlw("wchs"))
    assert m and int(m.group(1)) >= 1 and int(m.group(2)) >= 1 and int(m.group(3)) >= 1

    wchc = server.fourlw("wchc")   # session, then its paths indented by a tab
    block = wchc.split(sid + "\n", 1)[1].split("\n\n", 1)[0]
    assert f"\t{p}" in block.splitlines()

    wchp = server.fourlw("wchp")   # path, then its sessions indented by a tab
    block = wchp.split(p + "\n", 1)[1]
    sessions = []
    for line in block.splitlines():
        if not line.startswith("\t"):
            break
        sessions.append(line[1:])
    assert sid in sessions


def test_dump(server, kz, base):
    p = kz.create(base + "/e", ephemeral=True)
    sid = f"0x{kz.client_id[0]:x}"
    out = server.fourlw("dump")
    assert out.startswith("SessionTracker dump:")
    eph = out.split("ephemeral nodes dump:\n", 1)[1]
    block = eph.split(sid + ":\n", 1)[1]
    assert f"\t{p}" in block.splitlines()


def test_isro(server):
    assert server.fourlw("isro") == "rw"


def test_dirs(server):
    d = kv_lines(server.fourlw("dirs"), ": ")
    assert int(d["datadir_size"]) >= 0
    assert int(d["logdir_size"]) >= 0


@pytest.mark.parametrize("cmd", ["ruok", "srvr", "mntr"])
def test_fourlw_does_not_disturb_sessions(server, kz, base, cmd):
    kz.create(base + "/x", b"1")
    server.fourlw(cmd)
    assert kz.get(base + "/x")[0] == b"1"
