//! What rendering `/metrics` costs the HTTP thread, without a server around it: a
//! server state with two shards' published numbers, every stage histogram holding
//! samples, and 64 namespaces (the most a loop keeps), rendered again and again. Prints
//! us per render and the text's size, to set against the per-scrape CPU that
//! `perf/scrape_cost.py` measures in a running server.
//!
//! Run: `cargo bench --bench scrape -- [RENDERS]`. With `--test` (as `cargo test
//! --benches` passes) it renders a few times and checks the text, so it cannot rot.

use ringkeeper::server::load::ByteSummary;
use ringkeeper::server::stats::{SequencerStats, ServerState};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test = args.iter().any(|a| a == "--test");
    let n: usize = if test {
        3
    } else {
        args.iter().find_map(|a| a.parse().ok()).unwrap_or(20_000)
    };
    let settings =
        ringkeeper::server::ServerConfig::standalone("127.0.0.1:0".parse().expect("address"), 2)
            .settings;
    let st = ServerState::new(settings, 2, Arc::new(SequencerStats::default()));
    let m = &st.seq.metrics;
    for i in 0..100_000u64 {
        let d = Duration::from_micros(50 + (i * 7919) % 20_000);
        for (_, h) in m.all() {
            h.record(d);
        }
        m.zk.proposal_latency.record(d);
        m.zk.propagation_latency.record(d);
        m.zk.fsynctime.record(i % 30);
    }
    st.publish_counts(&ringkeeper::tree::DataTree::new().counts(), 1);
    let b = |count, sum| ByteSummary {
        count,
        sum,
        min: 1,
        max: sum,
    };
    for shard in 0..2 {
        let ns: Vec<(String, [ByteSummary; 2])> = (0..64)
            .map(|i| (format!("namespace-{i}"), [b(10, 1000), b(5, 500)]))
            .collect();
        st.publish_namespaces(shard, &ns);
        st.publish_watches(shard, 100);
    }
    let text = ringkeeper::server::http::render(&st);
    assert!(text.contains("read_per_namespace_count{key=\"namespace-63\"} 20\n"));
    assert!(text.contains("ringkeeper_latency_seconds_count{stage=\"write_total\"} 100000\n"));
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        bytes = ringkeeper::server::http::render(&st).len();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("render /metrics: {us:.1} us per render, {bytes} bytes, {n} renders");
}
