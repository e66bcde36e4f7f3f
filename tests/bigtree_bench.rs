//! The big-tree benchmark (`perf/bigtree.py`, issue 10) on a small tree, so that it
//! cannot rot: RingKeeper and Apache ZooKeeper each get 2,000 znodes, a restart after
//! SIGTERM and one after SIGKILL; the script's `--check` fails unless every figure was
//! measured, every acknowledged create is there after each restart, and `ringkeeper data
//! check` says VALID. No speed or memory target is asserted here: those are the
//! benchmark's to report (perf/results), not a test's.
//!
//! Needs python3 with kazoo, Java and the Debian `zookeeper` package (scripts/test.sh
//! installs them). `BIGTREE_TARGETS=rk` runs RingKeeper alone.

mod common_script;

use std::process::Command;
use std::time::Duration;

/// The run's bound: about 30 s here, most of it the JVM starting three times.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn bigtree_benchmark_runs_on_a_small_tree() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::env::temp_dir().join(format!("rk-bigtree-test-{}", std::process::id()));
    let targets = std::env::var("BIGTREE_TARGETS").unwrap_or_else(|_| "rk,zk".into());
    let mut child = Command::new("python3")
        .arg(format!("{root}/perf/bigtree.py"))
        .args(["--sizes", "2000", "--rounds", "1", "--snap-count", "400"])
        .args(["--zk-heap", "256m", "--check", "--targets", &targets])
        // Ports apart from a benchmark run's defaults, which may be running meanwhile.
        .args(["--port-base", "24381"])
        .arg("--rk-bin")
        .arg(env!("CARGO_BIN_EXE_ringkeeper"))
        .arg("--zkbench")
        .arg(env!("CARGO_BIN_EXE_zkbench"))
        .arg("--out")
        .arg(&out)
        .spawn()
        .expect("run python3 (with kazoo installed)");
    let status = common_script::wait_bounded(&mut child, RUN_TIMEOUT, "perf/bigtree.py");
    let table = std::fs::read_to_string(out.join("results.md")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        status.success(),
        "perf/bigtree.py --check failed ({status}); its table:\n{table}"
    );
    assert!(table.contains("| 2,000 | RingKeeper |"), "{table}");
}
