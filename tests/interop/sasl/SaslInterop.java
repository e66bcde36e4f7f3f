// The official Java client logging in with SASL DIGEST-MD5 (its JAAS `Client` section,
// named by -Djava.security.auth.login.config), for tests/interop/test_sasl.py.
//
// Usage: SaslInterop <hosts> <path> right|wrong [ID]
//   right: waits for SaslAuthenticated, creates <path> with the ACL sasl:ID (all; ID is
//          bob unless given, e.g. bob@EXAMPLE.COM for Kerberos), reads it back, checks
//          its ACL and whoAmI.
//   wrong: waits for AuthFailed (the server refused the password).
// Prints "PASS <mode>" and exits 0, or prints the failure and exits 1. Every wait is
// bounded (30 s).

import java.util.Collections;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.ClientInfo;
import org.apache.zookeeper.data.Id;
import org.apache.zookeeper.data.Stat;

public class SaslInterop {
    static void check(boolean ok, String what) {
        if (!ok) {
            System.out.println("FAIL " + what);
            System.exit(1);
        }
    }

    static void waitFor(BlockingQueue<Watcher.Event.KeeperState> states,
                        Watcher.Event.KeeperState want) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (true) {
            long left = deadline - System.nanoTime();
            Watcher.Event.KeeperState s = states.poll(Math.max(left, 0), TimeUnit.NANOSECONDS);
            check(s != null, "no " + want + " within 30 s");
            if (s == want) {
                return;
            }
            // A refused login closes the connection: the client may see Disconnected (and
            // reconnect) before it reports AuthFailed.
            boolean ok = s == Watcher.Event.KeeperState.SyncConnected
                || (want == Watcher.Event.KeeperState.AuthFailed
                    && s == Watcher.Event.KeeperState.Disconnected);
            check(ok, "state " + s + " before " + want);
        }
    }

    public static void main(String[] args) throws Exception {
        String hosts = args[0], path = args[1], mode = args[2];
        String id = args.length > 3 ? args[3] : "bob";
        BlockingQueue<Watcher.Event.KeeperState> states = new LinkedBlockingQueue<>();
        ZooKeeper zk = new ZooKeeper(hosts, 10000, e -> {
            if (e.getType() == Watcher.Event.EventType.None) {
                states.add(e.getState());
            }
        });
        try {
            if (mode.equals("right")) {
                waitFor(states, Watcher.Event.KeeperState.SaslAuthenticated);
                List<ACL> acl = Collections.singletonList(
                    new ACL(ZooDefs.Perms.ALL, new Id("sasl", id)));
                zk.create(path, "java".getBytes(), acl, CreateMode.PERSISTENT);
                check(new String(zk.getData(path, false, null)).equals("java"), "data read back");
                check(zk.getACL(path, new Stat()).equals(acl), "ACL read back");
                boolean found = false;
                for (ClientInfo ci : zk.whoAmI()) {
                    found |= ci.getAuthScheme().equals("sasl") && ci.getUser().equals(id);
                }
                check(found, "whoAmI has sasl:" + id);
            } else {
                waitFor(states, Watcher.Event.KeeperState.AuthFailed);
            }
        } finally {
            zk.close();
        }
        System.out.println("PASS " + mode);
    }
}
