//! `scripts/mntr-parity.py`: Apache ZooKeeper and RingKeeper under the same zkbench and
//! watch traffic; every `mntr` key non-zero on ZooKeeper must be non-zero here or be
//! documented in docs/compat.md as having no meaning here. Needs python3 with kazoo,
//! Java and the Debian `zookeeper` package (scripts/test.sh installs them).

mod common_script;

use std::process::Command;
use std::time::Duration;

/// The run's bound: about 30 s, most of it the JVM starting.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn every_nonzero_zookeeper_mntr_key_is_nonzero_here_or_documented() {
    let root = env!("CARGO_MANIFEST_DIR");
    let report = std::env::temp_dir().join(format!("rk-mntr-parity-{}.txt", std::process::id()));
    let mut child = Command::new("python3")
        .arg(format!("{root}/scripts/mntr-parity.py"))
        .arg("--rk-bin")
        .arg(env!("CARGO_BIN_EXE_ringkeeper"))
        .arg("--zkbench")
        .arg(env!("CARGO_BIN_EXE_zkbench"))
        // Ports apart from the other scripted tests'.
        .args(["--port-base", "24581", "--seconds", "3"])
        .arg("--report")
        .arg(&report)
        .spawn()
        .expect("run python3 (with kazoo installed)");
    let status = common_script::wait_bounded(&mut child, RUN_TIMEOUT, "scripts/mntr-parity.py");
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    assert!(
        status.success(),
        "scripts/mntr-parity.py failed ({status}):\n{text}"
    );
}

/// Every key `mntr` prints has a row in docs/compat.md's mntr table.
#[test]
fn compat_doc_maps_every_mntr_key() {
    use ringkeeper::fourlw::*;
    let doc =
        std::fs::read_to_string(format!("{}/docs/compat.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for k in MNTR_GAUGES
        .iter()
        .chain(MNTR_COUNTERS)
        .chain(MNTR_COUNTERS_SINCE_39)
    {
        assert!(doc.contains(&format!("| `zk_{k}` | ")), "no row for zk_{k}");
    }
    for k in MNTR_SUMMARIES
        .iter()
        .chain(MNTR_SUMMARIES_SINCE_39)
        .chain(MNTR_PERCENTILE_SUMMARIES)
    {
        assert!(
            doc.contains(&format!("| `zk_*_{k}` | ")),
            "no row for summary {k}"
        );
    }
}
