//! Snapshot benchmark: builds a tree of N znodes of 100 bytes (default 1 000 000), then
//! times `snapshot::save` (serialize + datasync + rename) and `snapshot::load` (read,
//! verify, rebuild), with the process's RSS after building and after loading (the built
//! tree dropped first). Run: `cargo bench --bench snapshot -- [N] [DIR]`. With `--test`
//! (as `cargo test --benches` passes) it runs once on 1000 znodes and checks the loaded
//! tree equals the saved one, so it cannot rot. `SNAPBENCH_KEEP=1` keeps the file (for
//! `--load-only PATH` runs).

use bytes::Bytes;
use ringkeeper::storage::snapshot;
use ringkeeper::storage::OsDisk;
use ringkeeper::tree::{open_acl_unsafe, DataTree};
use ringkeeper::txn::{Txn, TxnOp};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Children per parent: ZooKeeper trees are wide but not one flat directory.
const FANOUT: usize = 1000;
const DATA_LEN: usize = 100;

/// `--load-only PATH`: loads one snapshot and prints the time and the RSS it added.
fn load_only(path: &str) {
    let rss0 = rss_mib();
    let t = Instant::now();
    let tree = snapshot::load(&OsDisk, std::path::Path::new(path)).expect("load");
    let took = t.elapsed();
    println!(
        "fresh process: load {took:.2?}, RSS +{:.0} MiB for {} znodes ({:.0} bytes/znode)",
        rss_mib() - rss0,
        tree.len(),
        (rss_mib() - rss0) * 1048576.0 / tree.len() as f64
    );
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--load-only") {
        return load_only(&argv[i + 1]);
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let test_mode = std::env::args().any(|a| a == "--test");
    let n: usize = if test_mode {
        1000
    } else {
        args.first()
            .and_then(|a| a.parse().ok())
            .unwrap_or(1_000_000)
    };
    let dir = args
        .get(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("rk-snapbench-{}", std::process::id()))
        });
    std::fs::create_dir_all(&dir).expect("bench dir");
    let rss0 = rss_mib();
    let t0 = Instant::now();
    let mut tree = DataTree::new();
    let data = Bytes::from(vec![b'x'; DATA_LEN]);
    let mut zxid = 0i64;
    let mut create = |tree: &mut DataTree, path: String| {
        zxid += 1;
        tree.apply(&Txn {
            session_id: 0,
            cxid: 0,
            zxid,
            time_ms: 1_700_000_000_000,
            op: TxnOp::Create {
                path,
                data: Some(data.clone()),
                acl: open_acl_unsafe(),
                ephemeral_owner: 0,
            },
        });
    };
    for p in 0..n.div_ceil(FANOUT) {
        create(&mut tree, format!("/p{p}"));
        for c in 0..FANOUT.min(n - p * FANOUT) {
            create(&mut tree, format!("/p{p}/c{c:04}"));
        }
    }
    println!(
        "built {} znodes in {:.2?}, RSS +{:.0} MiB",
        tree.len(),
        t0.elapsed(),
        rss_mib() - rss0
    );
    let t1 = Instant::now();
    let (path, _, bytes) = snapshot::save(&OsDisk, &dir, &tree).expect("save");
    let save = t1.elapsed();
    println!(
        "save: {} bytes in {save:.2?} ({:.0} MB/s)",
        bytes,
        bytes as f64 / save.as_secs_f64() / 1e6
    );
    let tv = Instant::now();
    snapshot::verify(&OsDisk, &path).expect("verify");
    println!("verify only (read + CRC + parse): {:.2?}", tv.elapsed());
    // The load's memory is measured in a fresh process (this one's allocator holds the
    // built tree's pages): the bench runs itself with `--load-only PATH`.
    if !test_mode {
        let out = std::process::Command::new(std::env::current_exe().expect("own path"))
            .arg("--load-only")
            .arg(&path)
            .output()
            .expect("run the load in a fresh process");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    let t2 = Instant::now();
    let loaded = snapshot::load(&OsDisk, &path).expect("load");
    let load = t2.elapsed();
    println!(
        "load (verify + rebuild): {load:.2?} ({:.0} MB/s)",
        bytes as f64 / load.as_secs_f64() / 1e6
    );
    assert_eq!(loaded.digest(), tree.digest());
    assert_eq!(loaded.len(), tree.len());
    // The whole tree, children included (the digest does not cover them).
    assert!(loaded == tree, "the loaded tree differs from the saved one");
    if std::env::var_os("SNAPBENCH_KEEP").is_some() {
        println!("kept {}", path.display());
    } else {
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
    }
}
