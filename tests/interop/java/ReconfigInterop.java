// Dynamic reconfiguration with the official ZooKeeper Java client's ZooKeeperAdmin.
// Usage: java -cp zookeeper.jar:. ReconfigInterop HOST:PORT SUPER_PASSWORD MODE ARG
//   MODE add     ARG = "server.N=host:quorum:election:role;client" (incremental join)
//   MODE remove  ARG = a server id (incremental leave)
//   MODE noauth  ARG = a server id: reconfigure without the super user gets NoAuth
// Each change first reads the config with getConfig and a watch, reconfigures from that
// version (fromConfig), checks the returned config and that the watch fired with
// NodeDataChanged on /zookeeper/config; a second reconfigure from the stale version gets
// BadVersion. Prints "PASS <mode> <new version hex>" and exits 0, or the failure and 1.
// Every wait is bounded (WAIT_S).

import java.nio.charset.StandardCharsets;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.admin.ZooKeeperAdmin;
import org.apache.zookeeper.data.Stat;

public class ReconfigInterop {
    static final long WAIT_S = 30;

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static long versionOf(String config) {
        String v = config.substring(config.lastIndexOf("version=") + "version=".length()).trim();
        return Long.parseLong(v, 16);
    }

    public static void main(String[] args) throws Exception {
        String hostPort = args[0], password = args[1], mode = args[2], arg = args[3];
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeperAdmin zk = new ZooKeeperAdmin(hostPort, 30000, e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) {
                connected.countDown();
            }
        });
        try {
            check(connected.await(WAIT_S, TimeUnit.SECONDS), "no connection");
            if (mode.equals("noauth")) {
                try {
                    zk.reconfigure(null, arg, null, -1, new Stat());
                    check(false, "reconfigure without the super user succeeded");
                } catch (KeeperException.NoAuthException expected) {
                }
                System.out.println("PASS noauth");
                return;
            }
            zk.addAuthInfo("digest", ("super:" + password).getBytes(StandardCharsets.UTF_8));
            BlockingQueue<WatchedEvent> events = new LinkedBlockingQueue<>();
            Stat before = new Stat();
            String current = new String(zk.getConfig(events::add, before), StandardCharsets.UTF_8);
            long from = versionOf(current);
            check(before.getMzxid() == from, "config mzxid " + before.getMzxid() + " is not its version " + from);
            Stat after = new Stat();
            byte[] data;
            if (mode.equals("add")) {
                data = zk.reconfigure(arg, null, null, from, after);
            } else {
                data = zk.reconfigure(null, arg, null, from, after);
            }
            String next = new String(data, StandardCharsets.UTF_8);
            long version = versionOf(next);
            check(version > from && after.getMzxid() == version, "new version " + version + " stat " + after);
            if (mode.equals("add")) {
                check(next.contains(arg.substring(0, arg.indexOf('='))) , "added server missing: " + next);
            } else {
                check(!next.contains("server." + arg + "="), "removed server still listed: " + next);
            }
            WatchedEvent ev = events.poll(WAIT_S, TimeUnit.SECONDS);
            check(ev != null && ev.getType() == Watcher.Event.EventType.NodeDataChanged
                    && "/zookeeper/config".equals(ev.getPath()), "getConfig watch: " + ev);
            try {
                zk.reconfigure(null, arg, null, from, new Stat());
                check(false, "a reconfigure from a stale version succeeded");
            } catch (KeeperException.BadVersionException expected) {
            }
            System.out.println("PASS " + mode + " " + Long.toHexString(version));
        } finally {
            zk.close();
        }
    }
}
