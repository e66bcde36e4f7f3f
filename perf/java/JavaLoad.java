// A write load from the official ZooKeeper Java client, for measuring servers the way
// most users load them: each request is its own packet, written as the client makes it.
//
//   java -cp zookeeper.jar:. JavaLoad CONNECT SESSIONS OUTSTANDING WARMUP_S DURATION_S VALUE_BYTES KEYS
//
// CONNECT is host:port[,host:port...]; session i connects to server i mod N only (so the
// load is pinned, spread over every server). Each session keeps OUTSTANDING async setData
// requests in flight on random keys of /javaload. The program prints "WINDOW START" and
// "WINDOW END" (flushed) around the measured window, so a caller can sample the servers
// exactly then, and finally one JSON line: ops, ops_per_sec, errors, and latency
// percentiles in milliseconds of the requests sent in the window.

import java.util.concurrent.Semaphore;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import org.apache.zookeeper.AsyncCallback;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.Stat;

public class JavaLoad {
    // Latency histogram: microseconds in log-linear buckets (1/8 of a power of two).
    static final int SUB = 8;
    static final AtomicLongArray HIST = new AtomicLongArray(64 * SUB);

    static int bucket(long us) {
        if (us < SUB) return (int) Math.max(us, 0);
        int hi = 63 - Long.numberOfLeadingZeros(us);
        int sub = (int) ((us >> (hi - 3)) & (SUB - 1));
        return hi * SUB + sub;
    }

    static long bucketValue(int b) {
        if (b < SUB) return b;
        int hi = b / SUB, sub = b % SUB;
        return (1L << hi) + ((long) sub << (hi - 3));
    }

    static double percentileMs(double p, long total) {
        long want = (long) Math.ceil(total * p / 100.0), seen = 0;
        for (int b = 0; b < HIST.length(); b++) {
            seen += HIST.get(b);
            if (seen >= want && want > 0) return bucketValue(b) / 1000.0;
        }
        return 0.0;
    }

    static ZooKeeper connect(String hostport) throws Exception {
        java.util.concurrent.CountDownLatch up = new java.util.concurrent.CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(hostport, 30000, e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) up.countDown();
        });
        if (!up.await(30, java.util.concurrent.TimeUnit.SECONDS))
            throw new IllegalStateException("no session on " + hostport);
        return zk;
    }

    public static void main(String[] a) throws Exception {
        String[] servers = a[0].split(",");
        int sessions = Integer.parseInt(a[1]);
        int outstanding = Integer.parseInt(a[2]);
        double warmupS = Double.parseDouble(a[3]);
        double durationS = Double.parseDouble(a[4]);
        byte[] value = new byte[Integer.parseInt(a[5])];
        int keys = Integer.parseInt(a[6]);
        java.util.Arrays.fill(value, (byte) 'v');

        ZooKeeper setup = connect(servers[0]);
        try { setup.create("/javaload", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT); }
        catch (KeeperException.NodeExistsException e) { }
        for (int k = 0; k < keys; k++) {
            try { setup.create("/javaload/k" + k, value, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT); }
            catch (KeeperException.NodeExistsException e) { }
        }
        setup.close();

        ZooKeeper[] zks = new ZooKeeper[sessions];
        for (int i = 0; i < sessions; i++) zks[i] = connect(servers[i % servers.length]);

        final long start = System.nanoTime();
        final long measureFrom = start + (long) (warmupS * 1e9);
        final long end = measureFrom + (long) (durationS * 1e9);
        final AtomicLong ops = new AtomicLong(), errors = new AtomicLong();
        Thread[] threads = new Thread[sessions];
        for (int i = 0; i < sessions; i++) {
            final ZooKeeper zk = zks[i];
            final Semaphore slots = new Semaphore(outstanding);
            threads[i] = new Thread(() -> {
                AsyncCallback.StatCallback cb = (rc, path, ctx, stat) -> {
                    long sent = (Long) ctx, now = System.nanoTime();
                    if (sent >= measureFrom && sent < end) {
                        if (rc == 0) {
                            ops.incrementAndGet();
                            HIST.incrementAndGet(bucket((now - sent) / 1000));
                        } else {
                            errors.incrementAndGet();
                        }
                    }
                    slots.release();
                };
                try {
                    while (System.nanoTime() < end) {
                        slots.acquire();
                        String path = "/javaload/k" + ThreadLocalRandom.current().nextInt(keys);
                        zk.setData(path, value, -1, cb, System.nanoTime());
                    }
                    slots.acquire(outstanding);
                } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
            });
            threads[i].start();
        }
        Thread.sleep(Math.max(0, (measureFrom - System.nanoTime()) / 1_000_000));
        System.out.println("WINDOW START");
        System.out.flush();
        Thread.sleep(Math.max(0, (end - System.nanoTime()) / 1_000_000));
        System.out.println("WINDOW END");
        System.out.flush();
        for (Thread t : threads) t.join(30000);
        for (ZooKeeper zk : zks) zk.close();
        long n = ops.get();
        System.out.printf("{\"ops\":%d,\"ops_per_sec\":%.1f,\"errors\":%d,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p99_9_ms\":%.3f}%n",
            n, n / durationS, errors.get(), percentileMs(50, n), percentileMs(99, n), percentileMs(99.9, n));
    }
}
