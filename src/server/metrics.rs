//! Latency histograms of the write path, stage by stage, and of reads: the breakdown an
//! engineer reaches for first when a write is slow. Exposed in `mntr` (as
//! `zk_rk_<name>_<stat>` keys) and on the Prometheus `/metrics` endpoint.
//!
//! Stages of one write, each measured on the thread that ends it:
//!
//! | stage       | from                                  | to                                  |
//! |-------------|---------------------------------------|-------------------------------------|
//! | `queued`    | the shard decoded the request         | the sequencer took it               |
//! | `sequenced` | the sequencer took it                 | validated, zxid assigned, applied   |
//! | `proposed`  | the shard decoded the request         | its pass was handed to this server's log (on a learner: after the forward to the leader and its PROPOSAL back) |
//! | `logged`    | its pass was handed to the log        | the log reported it durable         |
//! | `replicated`| durable                               | a quorum had it (the peer message that completed the quorum arrived; 0 standalone) |
//! | `committed` | a quorum had it                       | the commit was handed to the shards |
//! | `answered`  | the commit was handed to the shards   | the reply was queued on its socket  |
//! | `total`     | the shard decoded the request         | the reply was queued on its socket  |
//!
//! `queued` and `sequenced` lie inside `proposed`; `proposed`, `logged`, `replicated`,
//! `committed` and `answered` follow each other and make up `total`.
//!
//! The histograms are lock-free (one relaxed atomic add per sample) so every thread
//! records into the same ones; readers scan them when asked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two: 8 gives about 12% relative precision, plenty to see
/// which stage dominates, at 8 counters per octave.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Octaves of microseconds covered: 2^40 us is 12 days; larger values land in the last
/// bucket.
const OCTAVES: usize = 40;
const BUCKETS: usize = OCTAVES * SUB;

/// A log-linear histogram of microseconds.
pub struct Histogram {
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros(); // >= SUB_BITS
    let shift = octave - SUB_BITS;
    let sub = ((us >> shift) as usize) & (SUB - 1);
    let idx = ((octave - SUB_BITS + 1) as usize) * SUB + sub;
    idx.min(BUCKETS - 1)
}

/// The largest value a bucket holds (what a percentile reports: never an underestimate).
fn bucket_top(idx: usize) -> u64 {
    if idx < SUB {
        return idx as u64;
    }
    let octave = (idx / SUB) as u32 - 1 + SUB_BITS;
    let sub = (idx % SUB) as u64;
    let shift = octave - SUB_BITS;
    (((SUB as u64) | sub) << shift) + (1u64 << shift) - 1
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        self.record_n(d, 1);
    }

    /// Records `n` samples of `d` (one pass's log latency counts once per write in it).
    pub fn record_n(&self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.counts[bucket_of(us)].fetch_add(n, Ordering::Relaxed);
        self.count.fetch_add(n, Ordering::Relaxed);
        self.sum_us
            .fetch_add(us.saturating_mul(n), Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }

    pub fn max_us(&self) -> u64 {
        self.max_us.load(Ordering::Relaxed)
    }

    /// The value at quantile `q` (0..=1), in microseconds; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        quantile_of(
            self.count(),
            self.max_us(),
            self.counts.iter().map(|c| c.load(Ordering::Relaxed)),
            q,
        )
    }

    /// A plain copy, to take several quantiles with one read of the shared counters.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            count: self.count(),
            sum_us: self.sum_us(),
            max_us: self.max_us(),
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// The quantile `q` of a histogram of `total` samples whose largest is `max`.
fn quantile_of(total: u64, max: u64, counts: impl Iterator<Item = u64>, q: f64) -> u64 {
    if total == 0 {
        return 0;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, c) in counts.enumerate() {
        seen += c;
        if seen >= rank {
            return bucket_top(i).min(max);
        }
    }
    max
}

/// A [`Histogram`] copied out (`Histogram::snapshot`).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub count: u64,
    pub sum_us: u64,
    pub max_us: u64,
    counts: Vec<u64>,
}

impl Snapshot {
    /// As [`Histogram::quantile_us`].
    pub fn quantile_us(&self, q: f64) -> u64 {
        quantile_of(self.count, self.max_us, self.counts.iter().copied(), q)
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .field("p50_us", &self.quantile_us(0.5))
            .field("max_us", &self.max_us())
            .finish()
    }
}

/// Every histogram the server keeps.
#[derive(Default, Debug)]
pub struct Metrics {
    pub queued: Histogram,
    pub sequenced: Histogram,
    /// Decode to the log hand-off of the pass that carries the txn (the slow-request
    /// log's first stage): on a learner this is where the forward to the leader shows.
    pub proposed: Histogram,
    pub logged: Histogram,
    pub replicated: Histogram,
    pub committed: Histogram,
    pub answered: Histogram,
    pub total: Histogram,
    /// Reads, decode to reply.
    pub reads: Histogram,
    /// Log writes submitted, and the records they carried: the group commit's batching
    /// (records per write), which decides the disk's and the kernel's cost per txn.
    pub log_writes: std::sync::atomic::AtomicU64,
    pub log_records: std::sync::atomic::AtomicU64,
    /// ZooKeeper's own counters and summaries (the `mntr` keys it prints).
    pub zk: ZkStats,
}

/// ZooKeeper's `avg/min/max/cnt/sum` summary (an `AvgMinMaxCounter`), lock-free.
#[derive(Debug)]
pub struct Summary {
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }
}

impl Summary {
    pub fn record(&self, v: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.min.fetch_min(v, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    /// (count, sum, min, max); min is 0 when empty, as ZooKeeper prints it.
    pub fn get(&self) -> (u64, u64, u64, u64) {
        let n = self.count.load(Ordering::Relaxed);
        let min = if n == 0 {
            0
        } else {
            self.min.load(Ordering::Relaxed)
        };
        (
            n,
            self.sum.load(Ordering::Relaxed),
            min,
            self.max.load(Ordering::Relaxed),
        )
    }
}

/// A relaxed counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Last/min/max of a size (ZooKeeper's `*_client_response_size`, `*_proposal_size`).
#[derive(Debug)]
pub struct SizeGauge {
    last: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Default for SizeGauge {
    fn default() -> Self {
        SizeGauge {
            last: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }
}

impl SizeGauge {
    pub fn record(&self, n: u64) {
        self.last.store(n, Ordering::Relaxed);
        if n < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(n, Ordering::Relaxed);
        }
        if n > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(n, Ordering::Relaxed);
        }
    }
    /// (last, min, max); ZooKeeper prints -1 for min and max before the first value.
    pub fn get(&self) -> (i64, i64, i64) {
        let min = self.min.load(Ordering::Relaxed);
        if min == u64::MAX {
            return (-1, -1, -1);
        }
        (
            self.last.load(Ordering::Relaxed) as i64,
            min as i64,
            self.max.load(Ordering::Relaxed) as i64,
        )
    }
}

/// The counters and summaries behind ZooKeeper's `mntr` keys that RingKeeper has a
/// meaning for (docs/compat.md maps each key). Times are in milliseconds, as
/// ZooKeeper's; every update is a relaxed atomic on the thread that sees the event.
#[derive(Debug, Default)]
pub struct ZkStats {
    pub bytes_received: Counter,
    pub response_bytes: Counter,
    pub response_size: SizeGauge,
    pub proposal_size: SizeGauge,
    pub connection_requests: Counter,
    pub connection_rejected: Counter,
    pub unsuccessful_handshake: Counter,
    pub revalidate: Counter,
    pub proposals: Counter,
    pub commits: Counter,
    pub learner_proposals_received: Counter,
    pub learner_commits_received: Counter,
    pub looking: Counter,
    pub prep_queued: Counter,
    /// Requests waiting for the sequencer, sampled at each of its passes.
    pub prep_queue_size: Summary,
    /// Written by the core loop each tick from the core's own count.
    pub sessions_expired: AtomicU64,
    pub snapshots_taken: Counter,
    /// Log writes slower than `fsync.warningthresholdms` (ZooKeeper's
    /// `fsync_threshold_exceed_count`).
    pub fsync_threshold_exceed: Counter,
    /// Bytes of watch notifications sent.
    pub watch_bytes: Counter,
    /// Connections the client closed (end of stream), ZooKeeper's failed reads.
    pub connection_drops: Counter,
    /// A leader's syncs of learners by SNAP, and by DIFF or TRUNC.
    pub snap_syncs: Counter,
    pub diff_syncs: Counter,
    pub fsynctime: Summary,
    pub snapshottime: Summary,
    pub sync_batch_size: Summary,
    pub election_time: Summary,
    pub unavailable_time: Summary,
    pub leader_unavailable_time: Summary,
    pub follower_sync_time: Summary,
    pub observer_sync_time: Summary,
    pub startup_snap_load_time: Summary,
    pub startup_txns_loaded: Summary,
    pub startup_txns_load_time: Summary,
    pub dbinittime: Summary,
    pub node_created_watches: Summary,
    pub node_deleted_watches: Summary,
    pub node_changed_watches: Summary,
    pub node_children_watches: Summary,
    /// A leader's proposals, from their append to the quorum's ack (microseconds).
    pub proposal_latency: Histogram,
    /// Writes from the log hand-off (the txn's making) to their answer here.
    pub propagation_latency: Histogram,
}

/// The quantiles reported for each histogram.
pub const QUANTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

impl Metrics {
    /// (name, histogram) for every write stage in path order, then reads.
    pub fn all(&self) -> [(&'static str, &Histogram); 9] {
        [
            ("write_queued", &self.queued),
            ("write_sequenced", &self.sequenced),
            ("write_proposed", &self.proposed),
            ("write_logged", &self.logged),
            ("write_replicated", &self.replicated),
            ("write_committed", &self.committed),
            ("write_answered", &self.answered),
            ("write_total", &self.total),
            ("read_total", &self.reads),
        ]
    }

    /// `mntr` lines: `zk_rk_<name>_{count,avg_us,p50_us,...,max_us}`.
    pub fn mntr_lines(&self) -> String {
        let mut out = String::new();
        for (name, h) in self.all() {
            let n = h.count();
            out.push_str(&format!("zk_rk_{name}_count\t{n}\n"));
            out.push_str(&format!(
                "zk_rk_{name}_avg_us\t{}\n",
                h.sum_us().checked_div(n).unwrap_or(0)
            ));
            for (q, v) in QUANTILES {
                out.push_str(&format!("zk_rk_{name}_{q}_us\t{}\n", h.quantile_us(v)));
            }
            out.push_str(&format!("zk_rk_{name}_max_us\t{}\n", h.max_us()));
        }
        let w = self.log_writes.load(std::sync::atomic::Ordering::Relaxed);
        let r = self.log_records.load(std::sync::atomic::Ordering::Relaxed);
        out.push_str(&format!("zk_rk_log_writes\t{w}\n"));
        out.push_str(&format!("zk_rk_log_records\t{r}\n"));
        out
    }

    /// The Prometheus text exposition of the histograms, as summaries in seconds.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        self.prometheus_into(&mut out);
        out
    }

    /// [`Metrics::prometheus`], appended to `out`. Each histogram is read once: a
    /// copy of its buckets, then every quantile from the copy (not a scan of the
    /// shared atomics per quantile).
    pub fn prometheus_into(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str(
            "# HELP ringkeeper_latency_seconds Latency of each write stage and of reads.\n",
        );
        out.push_str("# TYPE ringkeeper_latency_seconds summary\n");
        for (name, h) in self.all() {
            let snap = h.snapshot();
            for (q, v) in QUANTILES {
                let quantile = match q {
                    "p50" => "0.5",
                    "p90" => "0.9",
                    "p99" => "0.99",
                    _ => "0.999",
                };
                let _ = writeln!(
                    out,
                    "ringkeeper_latency_seconds{{stage=\"{name}\",quantile=\"{quantile}\"}} {}",
                    snap.quantile_us(v) as f64 / 1e6
                );
            }
            let _ = write!(
                out,
                "ringkeeper_latency_seconds_sum{{stage=\"{name}\"}} {}\n\
                 ringkeeper_latency_seconds_count{{stage=\"{name}\"}} {}\n",
                snap.sum_us as f64 / 1e6,
                snap.count
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover_their_values() {
        let mut last = 0;
        for us in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            1000,
            12_345,
            1 << 30,
            u64::MAX / 2,
        ] {
            let b = bucket_of(us);
            assert!(b >= last, "bucket of {us} went backwards");
            last = b;
            assert!(
                bucket_top(b) >= us.min(bucket_top(BUCKETS - 1)),
                "{us} above its bucket"
            );
            if b > 0 && b < BUCKETS - 1 {
                assert!(bucket_top(b - 1) < us, "{us} belongs in an earlier bucket");
            }
        }
    }

    #[test]
    fn quantiles_are_within_the_precision() {
        let h = Histogram::default();
        for i in 1..=1000u64 {
            h.record(Duration::from_micros(i));
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile_us(0.5);
        assert!((500..=570).contains(&p50), "p50 {p50}");
        let p99 = h.quantile_us(0.99);
        assert!((990..=1000).contains(&p99), "p99 {p99}");
        assert_eq!(h.quantile_us(1.0), 1000);
        assert_eq!(h.max_us(), 1000);
        let snap = h.snapshot();
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(snap.quantile_us(q), h.quantile_us(q), "q {q}");
        }
    }

    #[test]
    fn record_n_counts_every_sample() {
        let h = Histogram::default();
        h.record_n(Duration::from_micros(200), 10);
        h.record(Duration::from_micros(5));
        assert_eq!(h.count(), 11);
        assert_eq!(h.sum_us(), 2005);
        assert!(h.quantile_us(0.5) >= 200);
        assert_eq!(h.quantile_us(0.01), 5);
    }

    #[test]
    fn text_formats_name_every_stage() {
        let m = Metrics::default();
        m.logged.record(Duration::from_micros(300));
        let mntr = m.mntr_lines();
        assert!(mntr.contains("zk_rk_write_logged_count\t1\n"));
        assert!(mntr.contains("zk_rk_write_logged_max_us\t300\n"));
        let prom = m.prometheus();
        assert!(prom.contains("ringkeeper_latency_seconds_count{stage=\"write_logged\"} 1\n"));
        assert!(prom.contains("stage=\"read_total\",quantile=\"0.99\""));
    }
}
