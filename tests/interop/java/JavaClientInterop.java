// Interop scenarios with the official ZooKeeper Java client (Debian libzookeeper-java).
// Usage: java -cp zookeeper.jar:. JavaClientInterop HOST:PORT BASE_PATH SCENARIO
// Prints "PASS <scenario>" and exits 0, or prints the failure and exits 1. Every wait is
// bounded (WAIT_S).

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.Stat;

public class JavaClientInterop {
    static final long WAIT_S = 20;

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    /** Connects and waits for SyncConnected through the session watcher. */
    static ZooKeeper connect(String hosts, BlockingQueue<WatchedEvent> sessionEvents) throws Exception {
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(hosts, 10000, ev -> {
            if (sessionEvents != null) {
                sessionEvents.add(ev);
            }
            if (ev.getState() == Watcher.Event.KeeperState.SyncConnected) {
                connected.countDown();
            }
        });
        check(connected.await(WAIT_S, TimeUnit.SECONDS), "session watcher saw SyncConnected");
        return zk;
    }

    static void sessionAndEphemeral(String hosts, String base) throws Exception {
        BlockingQueue<WatchedEvent> events = new LinkedBlockingQueue<>();
        ZooKeeper a = connect(hosts, events);
        WatchedEvent first = events.poll(WAIT_S, TimeUnit.SECONDS);
        check(first != null && first.getType() == Watcher.Event.EventType.None
              && first.getState() == Watcher.Event.KeeperState.SyncConnected, "first event is SyncConnected");
        check(a.getSessionId() != 0, "session id");
        String p = a.create(base + "/eph", "x".getBytes(), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
        ZooKeeper b = connect(hosts, null);
        Stat st = b.exists(p, false);
        check(st != null && st.getEphemeralOwner() == a.getSessionId(), "ephemeral owned by a");
        CountDownLatch deleted = new CountDownLatch(1);
        b.exists(p, ev -> {
            if (ev.getType() == Watcher.Event.EventType.NodeDeleted) {
                deleted.countDown();
            }
        });
        a.close();
        check(deleted.await(WAIT_S, TimeUnit.SECONDS), "ephemeral deleted on close");
        check(b.exists(p, false) == null, "ephemeral gone");
        b.close();
    }

    /** A getData watch that re-registers itself on each event sees every change. */
    static void reregisteringWatch(String hosts, String base) throws Exception {
        ZooKeeper a = connect(hosts, null);
        ZooKeeper b = connect(hosts, null);
        String p = a.create(base + "/rw", "0".getBytes(), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        final int n = 5;
        BlockingQueue<String> seen = new LinkedBlockingQueue<>();
        Watcher[] w = new Watcher[1];
        w[0] = ev -> {
            if (ev.getType() == Watcher.Event.EventType.NodeDataChanged) {
                try {
                    seen.add(new String(a.getData(p, w[0], null)));
                } catch (Exception e) {
                    seen.add("error: " + e);
                }
            }
        };
        a.getData(p, w[0], null);
        for (int i = 1; i <= n; i++) {
            b.setData(p, Integer.toString(i).getBytes(), -1);
            // Wait for this change to be seen (and the watch re-set) before the next one,
            // so each change is its own event.
            String got = seen.poll(WAIT_S, TimeUnit.SECONDS);
            check(Integer.toString(i).equals(got), "change " + i + " seen, got " + got);
        }
        a.close();
        b.close();
    }

    static void versionedSetData(String hosts, String base) throws Exception {
        ZooKeeper a = connect(hosts, null);
        String p = a.create(base + "/v", "0".getBytes(), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        Stat st = a.setData(p, "1".getBytes(), 0);
        check(st.getVersion() == 1, "version 1");
        try {
            a.setData(p, "stale".getBytes(), 0);
            check(false, "stale setData must fail");
        } catch (KeeperException.BadVersionException e) {
            // expected
        }
        check(new String(a.getData(p, false, null)).equals("1"), "data unchanged by stale set");
        a.close();
    }

    static void asyncGetData(String hosts, String base) throws Exception {
        ZooKeeper a = connect(hosts, null);
        String p = a.create(base + "/async", "payload".getBytes(), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        BlockingQueue<Object[]> results = new LinkedBlockingQueue<>();
        Object ctx = new Object();
        a.getData(p, false, (rc, path, c, data, stat) -> results.add(new Object[] {rc, path, c, data, stat}), ctx);
        a.getData(base + "/missing", false, (rc, path, c, data, stat) -> results.add(new Object[] {rc, path, c, data, stat}), ctx);
        Object[] r1 = results.poll(WAIT_S, TimeUnit.SECONDS);
        Object[] r2 = results.poll(WAIT_S, TimeUnit.SECONDS);
        check(r1 != null && r2 != null, "both callbacks ran");
        // Callbacks run in request order.
        check((Integer) r1[0] == KeeperException.Code.OK.intValue(), "rc OK");
        check(p.equals(r1[1]) && r1[2] == ctx, "path and ctx");
        check(new String((byte[]) r1[3]).equals("payload"), "data");
        check(((Stat) r1[4]).getDataLength() == 7, "stat");
        check((Integer) r2[0] == KeeperException.Code.NONODE.intValue(), "NONODE for missing");
        a.close();
    }

    /** The classic lock recipe: sequential ephemerals, each watching its predecessor. */
    static void lock(String hosts, String base) throws Exception {
        final int n = 3;
        String dir = base + "/lock";
        ZooKeeper setup = connect(hosts, null);
        setup.create(dir, new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        List<ZooKeeper> sessions = new ArrayList<>();
        List<String> nodes = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            ZooKeeper zk = connect(hosts, null);
            sessions.add(zk);
            nodes.add(zk.create(dir + "/lock-", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE,
                                CreateMode.EPHEMERAL_SEQUENTIAL));
        }
        BlockingQueue<Integer> acquired = new LinkedBlockingQueue<>();
        for (int i = 0; i < n; i++) {
            final int me = i;
            new Thread(() -> {
                try {
                    ZooKeeper zk = sessions.get(me);
                    String mine = nodes.get(me).substring(dir.length() + 1);
                    while (true) {
                        List<String> children = zk.getChildren(dir, false);
                        Collections.sort(children);
                        int idx = children.indexOf(mine);
                        if (idx == 0) {
                            acquired.add(me);
                            return;
                        }
                        CountDownLatch gone = new CountDownLatch(1);
                        Stat pred = zk.exists(dir + "/" + children.get(idx - 1), ev -> gone.countDown());
                        if (pred != null) {
                            gone.await(WAIT_S, TimeUnit.SECONDS);
                        }
                    }
                } catch (Exception e) {
                    acquired.add(-1);
                }
            }).start();
        }
        for (int expect = 0; expect < n; expect++) {
            Integer holder = acquired.poll(WAIT_S, TimeUnit.SECONDS);
            check(holder != null && holder == expect, "lock holder " + expect + ", got " + holder);
            check(acquired.isEmpty() || expect == n - 1, "only one holder at a time");
            check(nodes.get(expect).endsWith(String.format("%010d", expect)), "sequence suffix");
            sessions.get(expect).close(); // release: the ephemeral goes, the next one wakes
        }
        check(setup.getChildren(dir, false).isEmpty(), "all lock nodes released");
        setup.close();
    }

    /**
     * A session with 100,000 watches loses its connection and re-arms them all: the
     * client sends them in setWatches requests of at most 128 KB each (its
     * SET_WATCHES_MAX_LENGTH). `hosts` goes through a proxy the test cuts after this
     * prints READY; `direct` reaches the server without it. Then creating watched nodes
     * (the first, one in the middle, the last) must fire their watches.
     */
    static void manyWatches(String hosts, String base, String direct) throws Exception {
        final int n = 100_000;
        BlockingQueue<WatchedEvent> session = new LinkedBlockingQueue<>();
        ZooKeeper a = connect(hosts, session);
        String dir = a.create(base + "/mw", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        BlockingQueue<String> created = new LinkedBlockingQueue<>();
        Watcher w = ev -> {
            if (ev.getType() == Watcher.Event.EventType.NodeCreated) {
                created.add(ev.getPath());
            }
        };
        CountDownLatch armed = new CountDownLatch(n);
        for (int i = 0; i < n; i++) {
            // exists on a missing node leaves an exist watch: no node is needed.
            a.exists(String.format("%s/n%06d", dir, i), w, (rc, path, ctx, stat) -> armed.countDown(), null);
        }
        check(armed.await(60, TimeUnit.SECONDS), "100000 exists watches set");
        session.clear();
        System.out.println("READY");
        System.out.flush();
        // The test cuts the connection now; the client reconnects and re-arms.
        boolean lost = false, back = false;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!back && System.nanoTime() < deadline) {
            WatchedEvent ev = session.poll(1, TimeUnit.SECONDS);
            if (ev == null) {
                continue;
            }
            if (ev.getState() == Watcher.Event.KeeperState.Disconnected) {
                lost = true;
            } else if (lost && ev.getState() == Watcher.Event.KeeperState.SyncConnected) {
                back = true;
            }
        }
        check(lost && back, "connection lost and the session resumed (lost " + lost + ")");
        ZooKeeper b = connect(direct, null);
        List<String> want = new ArrayList<>();
        for (int i : new int[] {0, n / 2, n - 1}) {
            String p = String.format("%s/n%06d", dir, i);
            b.create(p, new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
            want.add(p);
        }
        List<String> got = new ArrayList<>();
        while (got.size() < want.size()) {
            String p = created.poll(WAIT_S, TimeUnit.SECONDS);
            check(p != null, "NodeCreated for each re-armed watch, got " + got);
            got.add(p);
        }
        Collections.sort(got);
        check(got.equals(want), "events " + got + ", expected " + want);
        b.close();
        a.close();
    }

    /**
     * localSessionsEnabled without upgrading: the session stays local, so a persistent
     * create works and an ephemeral fails with EphemeralOnLocalSessionException (-120).
     */
    static void noEphemeralOnLocal(String hosts, String base) throws Exception {
        ZooKeeper zk = connect(hosts, null);
        zk.create(base + "/persistent", "x".getBytes(), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        try {
            zk.create(base + "/eph", "x".getBytes(), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
            throw new AssertionError("an ephemeral was created on a local session");
        } catch (KeeperException.EphemeralOnLocalSessionException e) {
            // expected
        }
        check(zk.exists(base + "/eph", false) == null, "no ephemeral left behind");
        check(zk.exists(base + "/persistent", false) != null, "the persistent node is there");
        zk.close();
    }

    /**
     * A read-only client (canBeReadOnly) on a server cut off from its quorum: the
     * session watcher sees ConnectedReadOnly, reads work, a write is NotReadOnly. Then
     * "READ-ONLY OK" is printed and the client waits for SyncConnected (the quorum is
     * brought back by the caller), after which it writes.
     */
    static void readOnly(String hosts, String base) throws Exception {
        BlockingQueue<Watcher.Event.KeeperState> states = new LinkedBlockingQueue<>();
        ZooKeeper zk = new ZooKeeper(hosts, 10000, ev -> {
            if (ev.getType() == Watcher.Event.EventType.None) {
                states.add(ev.getState());
            }
        }, true);
        Watcher.Event.KeeperState first = states.poll(WAIT_S, TimeUnit.SECONDS);
        check(first == Watcher.Event.KeeperState.ConnectedReadOnly, "first state ConnectedReadOnly, got " + first);
        check(new String(zk.getData(base, false, null)).equals("before"), "read-only read");
        try {
            zk.create(base + "/w", "x".getBytes(), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
            throw new AssertionError("a write succeeded on a read-only server");
        } catch (KeeperException.NotReadOnlyException e) {
            // expected
        }
        System.out.println("READ-ONLY OK");
        System.out.flush();
        // The caller restarts the quorum: the client moves on to a read-write session.
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        Watcher.Event.KeeperState s = null;
        while (s != Watcher.Event.KeeperState.SyncConnected && System.nanoTime() < deadline) {
            s = states.poll(1, TimeUnit.SECONDS);
        }
        check(s == Watcher.Event.KeeperState.SyncConnected, "SyncConnected once the quorum is back");
        zk.create(base + "/w", "after".getBytes(), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        check(new String(zk.getData(base + "/w", false, null)).equals("after"), "read-write write");
        zk.close();
    }

    public static void main(String[] args) throws Exception {
        String hosts = args[0], base = args[1], scenario = args[2];
        try {
            switch (scenario) {
                case "session": sessionAndEphemeral(hosts, base); break;
                case "watch": reregisteringWatch(hosts, base); break;
                case "version": versionedSetData(hosts, base); break;
                case "async": asyncGetData(hosts, base); break;
                case "lock": lock(hosts, base); break;
                case "manywatches": manyWatches(hosts, base, args[3]); break;
                case "noephemeral": noEphemeralOnLocal(hosts, base); break;
                case "readonly": readOnly(hosts, base); break;
                default: throw new IllegalArgumentException("unknown scenario " + scenario);
            }
        } catch (Throwable t) {
            System.out.println("FAIL " + scenario + ": " + t);
            t.printStackTrace(System.out);
            System.exit(1);
        }
        System.out.println("PASS " + scenario);
        System.exit(0);
    }
}
