//! Tests of the snapshot format, the file handling, the policy, the snapshotter and purge.

use super::*;
use crate::proto::{perms, CONTAINER_EPHEMERAL_OWNER};
use crate::storage::disk::{OsDisk, SimDisk};
use crate::tree::ttl_owner;
use crate::txn::{Txn, TxnOp};
use std::fs;

/// A fresh directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "rk-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn digest_acl(user: &str) -> Vec<Acl> {
    vec![Acl {
        perms: perms::READ | perms::WRITE,
        id: Id {
            scheme: "digest".into(),
            id: format!("{user}:x"),
        },
    }]
}

/// Txns that build a tree with every kind of content a snapshot must keep: sessions,
/// ephemerals, containers, TTL nodes, null and empty data, shared and private ACLs,
/// deletes (so cversion and pzxid differ from a plain create) and setData/setACL.
pub(crate) fn sample_txns(n: usize) -> Vec<Txn> {
    let mut txns = Vec::new();
    let mut zxid = 0i64;
    let mut push = |session_id: i64, op: TxnOp| {
        zxid += 1;
        txns.push(Txn {
            session_id,
            cxid: zxid as i32,
            zxid,
            time_ms: 1_700_000_000_000 + zxid,
            op,
        });
    };
    let create = |path: String, data: Option<&[u8]>, acl: Vec<Acl>, owner: i64| TxnOp::Create {
        path,
        data: data.map(Bytes::copy_from_slice),
        acl,
        ephemeral_owner: owner,
    };
    push(0x11, TxnOp::CreateSession { timeout_ms: 30_000 });
    push(0x22, TxnOp::CreateSession { timeout_ms: 4_000 });
    push(
        0,
        create(
            "/app".into(),
            Some(b"root of app"),
            crate::tree::open_acl_unsafe(),
            0,
        ),
    );
    push(
        0,
        create(
            "/c".into(),
            None,
            crate::tree::open_acl_unsafe(),
            CONTAINER_EPHEMERAL_OWNER,
        ),
    );
    push(
        0,
        create("/t".into(), Some(b""), digest_acl("bob"), ttl_owner(5000)),
    );
    for i in 0..n {
        let acl = if i % 7 == 0 {
            digest_acl(&format!("u{}", i % 3))
        } else {
            crate::tree::open_acl_unsafe()
        };
        let data = format!("value-{i}-{}", "x".repeat(i % 13));
        push(
            0,
            create(format!("/app/n{i}"), Some(data.as_bytes()), acl, 0),
        );
        if i % 5 == 0 {
            push(
                0x11,
                create(
                    format!("/app/n{i}/e"),
                    None,
                    crate::tree::open_acl_unsafe(),
                    0x11,
                ),
            );
        }
        if i % 4 == 1 {
            push(
                0,
                TxnOp::SetData {
                    path: format!("/app/n{i}"),
                    data: Some(Bytes::from_static(b"new")),
                    version: 1,
                },
            );
        }
        if i % 6 == 2 {
            push(
                0,
                TxnOp::SetAcl {
                    path: format!("/app/n{i}"),
                    acl: digest_acl("carol"),
                    aversion: 1,
                },
            );
        }
        if i % 9 == 3 && i % 5 != 0 {
            push(
                0,
                TxnOp::Delete {
                    path: format!("/app/n{i}"),
                },
            );
        }
    }
    push(
        0x22,
        create(
            "/c/child".into(),
            Some(b"k"),
            crate::tree::open_acl_unsafe(),
            0x22,
        ),
    );
    push(0x33, TxnOp::CreateSession { timeout_ms: 10_000 });
    txns
}

pub(crate) fn apply_all(tree: &mut DataTree, txns: &[Txn]) {
    for t in txns {
        tree.apply(t);
    }
}

pub(crate) fn sample_tree(n: usize) -> DataTree {
    let mut t = DataTree::new();
    apply_all(&mut t, &sample_txns(n));
    t
}

fn to_bytes(tree: &DataTree) -> Vec<u8> {
    let mut v = Vec::new();
    let (h, len) = write_to(tree, &mut v).expect("write to memory");
    assert_eq!(len, v.len() as u64);
    assert_eq!(h.zxid, tree.zxid());
    v
}

#[test]
fn round_trip_yields_an_equal_tree() {
    for n in [0, 1, 10, 200] {
        let tree = sample_tree(n);
        let loaded = read_from(&to_bytes(&tree)[..]).expect("valid snapshot");
        assert_eq!(loaded.digest(), tree.digest());
        assert_eq!(loaded.recompute_digest(), tree.digest());
        assert_eq!(loaded.zxid(), tree.zxid());
        assert_eq!(loaded.ephemeral_count(), tree.ephemeral_count());
        assert_eq!(loaded.containers(), tree.containers());
        assert_eq!(loaded.ttls(), tree.ttls());
        assert_eq!(loaded.approximate_data_size(), tree.approximate_data_size());
        assert_eq!(
            loaded.sessions().collect::<Vec<_>>(),
            tree.sessions().collect::<Vec<_>>()
        );
        assert_eq!(loaded.ephemerals_of(0x11), tree.ephemerals_of(0x11));
        // Whole-structure equality: children sets, stats, ACLs, counters.
        assert_eq!(loaded, tree);
    }
}

#[test]
fn a_loaded_tree_applies_further_txns_like_the_original() {
    let txns = sample_txns(50);
    let (head, tail) = txns.split_at(txns.len() / 2);
    let mut tree = DataTree::new();
    apply_all(&mut tree, head);
    let mut loaded = read_from(&to_bytes(&tree)[..]).expect("valid");
    apply_all(&mut tree, tail);
    apply_all(&mut loaded, tail);
    assert_eq!(loaded.digest(), tree.digest());
    assert_eq!(loaded, tree);
}

#[test]
fn acl_lists_are_shared_after_load() {
    let tree = sample_tree(30);
    let loaded = read_from(&to_bytes(&tree)[..]).expect("valid");
    let a = loaded.get("/app/n1").expect("exists");
    let b = loaded.get("/app/n5").expect("exists");
    assert!(Arc::ptr_eq(a.acl(), b.acl()), "open ACL stored once");
}

#[test]
fn every_single_byte_flip_is_detected() {
    let bytes = to_bytes(&sample_tree(3));
    // Bounded by the snapshot's length (a few kilobytes).
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        assert!(
            read_from(&bad[..]).is_err(),
            "flip at {at} of {} accepted",
            bytes.len()
        );
    }
}

#[test]
fn every_truncation_is_detected() {
    let bytes = to_bytes(&sample_tree(3));
    for len in 0..bytes.len() {
        match read_from(&bytes[..len]) {
            Err(SnapshotError::Corrupt { .. }) => {}
            other => panic!("truncated to {len}: {other:?}"),
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(read_from(&longer[..]).is_err(), "trailing byte accepted");
}

#[test]
fn corruption_names_the_offset_and_expectation() {
    let good = to_bytes(&sample_tree(3));
    // A flipped byte inside the first frame: the frame's CRC names the frame.
    let mut bytes = good.clone();
    bytes[HEADER_LEN + 8] ^= 0x40;
    let msg = read_from(&bytes[..]).expect_err("bad frame").to_string();
    assert!(
        msg.contains(&format!("at byte {HEADER_LEN}: frame of")),
        "{msg}"
    );
    assert!(msg.contains("CRC"), "{msg}");
    // A bad tag under a matching frame CRC: the record's own offset and expectation.
    let mut bytes = good.clone();
    bytes[HEADER_LEN + 8] = b'Z';
    let len = u32::from_le_bytes(bytes[HEADER_LEN..HEADER_LEN + 4].try_into().unwrap()) as usize;
    let crc = crc32c::crc32c(&bytes[HEADER_LEN + 8..HEADER_LEN + 8 + len]);
    bytes[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&crc.to_le_bytes());
    let msg = read_from(&bytes[..]).expect_err("bad tag").to_string();
    assert!(
        msg.contains(&format!("at byte {}", HEADER_LEN + 8)),
        "{msg}"
    );
    assert!(msg.contains("expected A, N or S"), "{msg}");
}

#[test]
fn the_previous_format_still_loads() {
    for n in [0, 3, 40] {
        let tree = sample_tree(n);
        let mut v1 = Vec::new();
        write_v1_to(&tree, &mut v1).expect("write v1");
        assert_eq!(u32::from_le_bytes(v1[8..12].try_into().unwrap()), 1);
        let loaded = read_from(&v1[..]).expect("version 1 loads");
        assert_eq!(loaded, tree);
        assert_eq!(loaded.recompute_digest(), tree.digest());
        let mut nodes = 0;
        let h = scan(&v1[..], |r| {
            nodes += matches!(r, Record::Node { .. }) as usize;
            Ok(())
        })
        .expect("version 1 scans");
        assert_eq!((h.version, nodes), (1, tree.len()));
    }
}

#[test]
fn unknown_versions_and_zookeeper_files_are_refused_by_name() {
    let mut bytes = to_bytes(&sample_tree(2));
    bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..HEADER_LEN - 4]);
    bytes[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    let msg = read_from(&bytes[..]).expect_err("version 9").to_string();
    assert!(msg.contains("format version 9"), "{msg}");
    assert!(msg.contains("newer RingKeeper"), "{msg}");
    let mut zk = b"ZKSN\0\0\0\x02".to_vec();
    zk.resize(HEADER_LEN + 16, 0);
    let msg = read_from(&zk[..]).expect_err("ZooKeeper file").to_string();
    assert!(msg.contains("Apache ZooKeeper snapshot"), "{msg}");
}

#[test]
fn save_list_load_and_names() {
    let dir = TempDir::new("snap-save");
    assert!(list(&OsDisk, &dir.0).expect("list").is_empty());
    let mut tree = DataTree::new();
    let txns = sample_txns(20);
    let mut saved = Vec::new();
    for chunk in txns.chunks(txns.len() / 3) {
        apply_all(&mut tree, chunk);
        let (p, h, _) = save(&OsDisk, &dir.0, &tree).expect("save");
        assert_eq!(
            p.file_name().unwrap().to_str().unwrap(),
            file_name(tree.zxid())
        );
        assert_eq!(h.node_count, tree.len() as u64);
        saved.push((tree.zxid(), tree.clone()));
    }
    // A leftover temporary file is not a snapshot.
    fs::write(
        dir.0.join(format!("{}{TEMP_SUFFIX}", file_name(0xfff))),
        b"junk",
    )
    .unwrap();
    let listed = list(&OsDisk, &dir.0).expect("list");
    assert_eq!(listed.len(), saved.len());
    assert!(listed.windows(2).all(|w| w[0].0 > w[1].0), "newest first");
    for (z, t) in &saved {
        let p = dir.0.join(file_name(*z));
        assert_eq!(&load(&OsDisk, &p).expect("load"), t);
        assert_eq!(verify(&OsDisk, &p).expect("verify").digest, t.digest());
    }
    assert_eq!(zxid_of_name("snapshot.1a"), Some(0x1a));
    assert_eq!(zxid_of_name("snapshot.1a.tmp"), None);
    assert_eq!(zxid_of_name("snapshot."), None);
    assert_eq!(zxid_of_name("log.1a"), None);
}

/// A tree of `n` znodes `/n<i>` of 100 KiB each (their first byte `i`): snapshots that
/// span many write-behind chunks.
fn tree_of_100k_nodes(n: i64) -> DataTree {
    let mut tree = DataTree::new();
    let txns: Vec<Txn> = (0..n)
        .map(|i| Txn {
            session_id: 0,
            cxid: i as i32,
            zxid: i + 1,
            time_ms: 1_700_000_000_000,
            op: TxnOp::Create {
                path: format!("/n{i}"),
                data: Some(Bytes::from({
                    let mut d = vec![0x5au8; 100 << 10];
                    d[0] = i as u8;
                    d
                })),
                acl: crate::tree::open_acl_unsafe(),
                ephemeral_owner: 0,
            },
        })
        .collect();
    apply_all(&mut tree, &txns);
    tree
}

/// The real file system, except that it refuses O_DIRECT as tmpfs did before Linux
/// 6.6: open(2) creates the file, then fails with EINVAL (which `OsDisk` reports as
/// `Unsupported`).
struct NoDirectDisk;

impl Disk for NoDirectDisk {
    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Box<dyn DiskFile>> {
        if opts.direct {
            OsDisk.open(
                path,
                OpenOptions {
                    direct: false,
                    ..opts
                },
            )?;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no O_DIRECT here",
            ));
        }
        OsDisk.open(path, opts)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsDisk.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsDisk.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        OsDisk.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsDisk.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsDisk.create_dir_all(dir)
    }
}

#[test]
fn a_snapshot_of_many_buffers_loads_back_whole_direct_or_buffered() {
    // 20 MB of data in 1 MiB buffers. Direct (a file system that takes O_DIRECT): the
    // last buffer is written padded to the device's alignment and the file cut back to
    // its length. Buffered (one that refuses it, after creating the file): write-behind
    // starts and settles the buffers and drops them from the page cache before the
    // final datasync. Either way the file is exactly the snapshot's bytes, and it loads
    // back as the tree.
    let tree = tree_of_100k_nodes(200);
    for (name, disk) in [
        ("direct", &OsDisk as &dyn Disk),
        ("buffered", &NoDirectDisk),
    ] {
        let dir = TempDir::new(&format!("snap-{name}"));
        let (p, _, len) = save(disk, &dir.0, &tree).expect(name);
        assert!(
            len > 4 * super::IO_BUFFER as u64,
            "{name}: {len} bytes cross several buffers"
        );
        assert_ne!(len % 4096, 0, "{name}: the tail is not a whole block");
        assert_eq!(fs::metadata(&p).unwrap().len(), len, "{name}");
        assert_eq!(load(&OsDisk, &p).expect(name), tree, "{name}");
        assert_eq!(
            fs::read_dir(&dir.0).unwrap().count(),
            1,
            "{name}: no temporary file left"
        );
    }
}

#[test]
fn load_errors_name_the_file() {
    let dir = TempDir::new("snap-name");
    let (p, _, _) = save(&OsDisk, &dir.0, &sample_tree(2)).expect("save");
    let mut bytes = fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&p, &bytes).unwrap();
    let msg = load(&OsDisk, &p).expect_err("bad crc").to_string();
    assert!(msg.contains(&p.display().to_string()), "{msg}");
    assert!(msg.contains("end frame says"), "{msg}");
}

#[test]
fn policy_fires_within_the_random_range() {
    for seed in 0..50u64 {
        let mut p = SnapPolicy::new(100, 0, seed);
        // Two rounds per seed: the point is re-rolled after a reset.
        for _ in 0..2 {
            let mut n = 0u64;
            // Bounded by snap_count: the policy must fire by then.
            while n < 100 {
                n += 1;
                if p.record(10) {
                    break;
                }
            }
            assert!((51..=100).contains(&n), "seed {seed}: fired after {n}");
            p.reset();
        }
    }
}

#[test]
fn policy_fires_on_bytes() {
    let mut p = SnapPolicy::new(1_000_000, 1000, 7);
    let mut n = 0;
    while n < 1000 {
        n += 1;
        if p.record(100) {
            break;
        }
    }
    assert!((6..=10).contains(&n), "fired after {n} txns of 100 bytes");
}

/// `snapshotWriteRate`: a paced snapshot is written no faster than its rate (a sleep
/// between write-behind chunks; a lower bound, so a slow machine cannot fail it), and
/// loads back whole; a shutdown ends the pacing of the one in progress.
#[test]
fn a_paced_snapshot_takes_at_least_its_bytes_over_the_rate() {
    let dir = TempDir::new("snap-paced");
    let tree = tree_of_100k_nodes(80);
    let snapper = Snapshotter::start(Arc::new(OsDisk), dir.0.clone()).expect("start");
    let rate = 10_000_000; // 10 MB/s: the ~8 MB snapshot takes at least ~0.6 s.
    snapper.set_write_rate(rate);
    let began = std::time::Instant::now();
    assert_eq!(snapper.offer(tree.clone(), tree.zxid()), Offer::Taken);
    // Done when counted (bounded wait); a shutdown would end the pacing.
    let deadline = began + std::time::Duration::from_secs(60);
    while snapper.stats.taken.load(Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the snapshot never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let took = began.elapsed();
    snapper.shutdown();
    let snaps = list(&OsDisk, &dir.0).expect("list");
    assert_eq!(snaps.len(), 1);
    let len = fs::metadata(&snaps[0].1).unwrap().len();
    assert!(
        len > 6 * super::IO_BUFFER as u64,
        "{len} bytes: several chunks"
    );
    // Paced up to the last full chunk it wrote behind.
    let floor = (len - 2 * super::IO_BUFFER as u64) as f64 / rate as f64;
    assert!(
        took.as_secs_f64() >= floor,
        "{len} bytes at {rate} B/s took {took:?}, less than {floor} s"
    );
    assert_eq!(load(&OsDisk, &snaps[0].1).expect("load"), tree);

    // Paced at 1 byte a second it would never finish: a shutdown ends the pacing, and
    // the snapshot is complete (a hang here is the failure).
    let dir = TempDir::new("snap-paced-stop");
    let snapper = Snapshotter::start(Arc::new(OsDisk), dir.0.clone()).expect("start");
    snapper.set_write_rate(1);
    assert_eq!(snapper.offer(tree.clone(), tree.zxid()), Offer::Taken);
    std::thread::sleep(std::time::Duration::from_millis(100));
    snapper.shutdown();
    let snaps = list(&OsDisk, &dir.0).expect("list");
    assert_eq!(snaps.len(), 1);
    assert_eq!(load(&OsDisk, &snaps[0].1).expect("load"), tree);
}

#[test]
fn snapshotter_writes_and_refuses_a_second_job_while_busy() {
    let dir = TempDir::new("snapper");
    let snapper = Snapshotter::start(Arc::new(OsDisk), dir.0.clone()).expect("start");
    let big = sample_tree(3000);
    let zxid = big.zxid();
    assert_eq!(snapper.offer(big.clone(), zxid), Offer::Taken);
    // Either still busy (refused) or done (taken): never two in flight.
    let second = snapper.offer(big.clone(), zxid);
    if second == Offer::TooBusy {
        assert_eq!(snapper.stats.skipped_busy.load(Ordering::Relaxed), 1);
    }
    snapper.shutdown();
    let snaps = list(&OsDisk, &dir.0).expect("list");
    assert_eq!(snaps.len(), 1);
    assert_eq!(load(&OsDisk, &snaps[0].1).expect("load"), big);
}

#[test]
fn a_skipped_offer_says_how_far_behind_it_is() {
    let dir = TempDir::new("snapper-busy");
    let snapper = Snapshotter::start(Arc::new(OsDisk), dir.0.clone()).expect("start");
    let big = sample_tree(20_000);
    let (zxid, nodes) = (big.zxid(), big.len() as u64);
    let mut later = big.clone();
    later.apply(&Txn {
        session_id: 0,
        cxid: 0,
        zxid: zxid + 7,
        time_ms: 0,
        op: TxnOp::Create {
            path: "/later".into(),
            data: None,
            acl: crate::tree::open_acl_unsafe(),
            ephemeral_owner: 0,
        },
    });
    snapper.try_offer(big, zxid).expect("idle: taken");
    // Offered microseconds after a 20k-znode snapshot began: busy unless the machine
    // wrote and synced it meanwhile, which only the checks below would then skip.
    match snapper.try_offer(later.clone(), zxid + 7) {
        Err(b) => {
            assert_eq!(b.offered_zxid, zxid + 7);
            assert_eq!(b.in_progress_zxid, zxid);
            assert_eq!(b.behind_txns, Some(7));
            assert_eq!(b.total_nodes, nodes);
            assert_eq!(b.skipped_in_a_row, 1);
            assert!(b.describe().contains("7 txns behind"), "{}", b.describe());
            assert_eq!(
                snapper.stats.last_skip_behind_txns.load(Ordering::Relaxed),
                7
            );
        }
        Ok(()) => eprintln!("snapshot finished before the second offer; nothing checked"),
    }
    snapper.shutdown();
}

#[test]
fn purge_keeps_retained_snapshots_and_the_logs_they_need() {
    let dir = TempDir::new("purge");
    let logs = TempDir::new("purge-logs");
    let mut tree = DataTree::new();
    let txns = sample_txns(40);
    // Six snapshots, at zxids spread over the history.
    let step = txns.len() / 6;
    let mut snap_zxids = Vec::new();
    for chunk in txns.chunks(step).take(6) {
        apply_all(&mut tree, chunk);
        save(&OsDisk, &dir.0, &tree).expect("save");
        snap_zxids.push(tree.zxid());
    }
    // Log segments starting at 1 and every 5 zxids.
    let mut seg_starts = Vec::new();
    let mut z = 1i64;
    while z <= tree.zxid() {
        fs::write(logs.0.join(format!("{LOG_PREFIX}{z:x}")), b"").unwrap();
        seg_starts.push(z);
        z += 5;
    }
    fs::write(dir.0.join(format!("snapshot.1{TEMP_SUFFIX}")), b"").unwrap();
    // A retain count below the floor is raised to 3.
    let r = purge(&OsDisk, &dir.0, &logs.0, 1, None).expect("purge");
    assert_eq!(r.temps.len(), 1);
    assert_eq!(r.snapshots.len(), 3);
    let kept: Vec<i64> = list(&OsDisk, &dir.0)
        .unwrap()
        .iter()
        .map(|(z, _)| *z)
        .collect();
    assert_eq!(kept, vec![snap_zxids[5], snap_zxids[4], snap_zxids[3]]);
    let oldest_kept = snap_zxids[3];
    let kept_logs: Vec<i64> = list_logs(&OsDisk, &logs.0)
        .unwrap()
        .iter()
        .map(|(z, _)| *z)
        .collect();
    let first_needed = *seg_starts
        .iter()
        .filter(|s| **s <= oldest_kept)
        .max()
        .unwrap();
    let expected: Vec<i64> = seg_starts
        .iter()
        .copied()
        .filter(|s| *s >= first_needed)
        .collect();
    assert_eq!(kept_logs, expected);
    // Every txn after the oldest kept snapshot is still in a kept segment.
    assert!(kept_logs[0] <= oldest_kept + 1);
    // Nothing more to do a second time.
    let again = purge(&OsDisk, &dir.0, &logs.0, 3, None).expect("purge");
    assert_eq!(again, PurgeReport::default());
}

/// Most crash points tried per save: a save of a small tree is a handful of writes and
/// syncs, so this covers every one of them with room to spare.
const MAX_CRASH_POINTS: u64 = 64;

#[test]
fn a_crash_at_any_point_of_a_save_leaves_the_old_or_the_new_snapshot() {
    let dir = Path::new("/data");
    let txns = sample_txns(60);
    let old = {
        let mut t = DataTree::new();
        apply_all(&mut t, &txns[..30]);
        t
    };
    let new = {
        let mut t = old.clone();
        apply_all(&mut t, &txns[30..]);
        t
    };
    let mut completed = false;
    for crash_at in 1..=MAX_CRASH_POINTS {
        for seed in 0..4u64 {
            let disk = SimDisk::new(crash_at * 31 + seed);
            disk.create_dir_all(dir).expect("mkdir");
            save(&disk, dir, &old).expect("first save");
            disk.crash_after_ops(crash_at);
            let saved = save(&disk, dir, &new).is_ok();
            disk.crash();
            let snaps = list(&disk, dir).expect("list");
            // Every snapshot under its final name is whole: the newest is the new tree
            // if the save returned Ok, else either tree.
            for (_, p) in &snaps {
                load(&disk, p).unwrap_or_else(|e| panic!("crash at op {crash_at}: {e}"));
            }
            let newest = load(&disk, &snaps[0].1).expect("newest loads");
            if saved {
                assert_eq!(
                    newest, new,
                    "crash at op {crash_at}: acknowledged save lost"
                );
                completed = true;
            } else {
                assert!(newest == new || newest == old, "crash at op {crash_at}");
            }
        }
        if completed {
            break;
        }
    }
    assert!(completed, "no crash point let the save finish");
}

#[test]
fn a_failed_sync_fails_the_save_and_leaves_no_snapshot() {
    let dir = Path::new("/data");
    let disk = SimDisk::new(5);
    disk.create_dir_all(dir).expect("mkdir");
    disk.fail_op(crate::storage::disk::FaultOp::Sync, 0, libc::EIO);
    let e = save(&disk, dir, &sample_tree(5)).expect_err("sync failed");
    assert!(matches!(e, SnapshotError::Io { .. }), "{e}");
    assert!(list(&disk, dir).expect("list").is_empty());
    assert!(
        disk.list(dir).expect("list").is_empty(),
        "temp file removed"
    );
}

#[test]
fn purge_never_removes_the_protected_snapshot() {
    let dir = TempDir::new("purge-protect");
    let logs = TempDir::new("purge-protect-logs");
    let mut tree = DataTree::new();
    let txns = sample_txns(30);
    let mut snap_zxids = Vec::new();
    for chunk in txns.chunks(txns.len().div_ceil(6)) {
        apply_all(&mut tree, chunk);
        save(&OsDisk, &dir.0, &tree).expect("save");
        snap_zxids.push(tree.zxid());
    }
    assert_eq!(snap_zxids.len(), 6);
    for z in [1, snap_zxids[0] + 1, snap_zxids[2] + 1] {
        fs::write(logs.0.join(format!("{LOG_PREFIX}{z:x}")), b"").unwrap();
    }
    // The protected one is the fifth newest: it and everything newer stay, with the
    // segment holding the txns right after it.
    let protect = snap_zxids[1];
    let r = purge(&OsDisk, &dir.0, &logs.0, 3, Some(protect)).expect("purge");
    assert_eq!(r.snapshots, vec![dir.0.join(file_name(snap_zxids[0]))]);
    let kept: Vec<i64> = list(&OsDisk, &dir.0)
        .unwrap()
        .iter()
        .map(|(z, _)| *z)
        .collect();
    assert_eq!(kept.last(), Some(&protect));
    assert_eq!(kept.len(), snap_zxids.len() - 1);
    let first_log = list_logs(&OsDisk, &logs.0).unwrap()[0].0;
    assert!(
        first_log <= protect + 1,
        "log {first_log:#x} after base {protect:#x}"
    );
    // A protected snapshot among the newest changes nothing.
    let r = purge(&OsDisk, &dir.0, &logs.0, 3, Some(snap_zxids[4])).expect("purge");
    assert_eq!(r.snapshots.len(), 2);
}

fn snapshot_bytes(tree: &DataTree) -> Vec<u8> {
    let mut b = Vec::new();
    write_to(tree, &mut b).expect("write");
    b
}

/// Receives `data` as the snapshot of `zxid` in chunks of `chunk` bytes.
fn receive(
    dir: &Path,
    zxid: i64,
    data: &[u8],
    chunk: usize,
) -> Result<(PathBuf, SnapshotHeader), SnapshotError> {
    let mut r = SnapshotReceiver::begin(Arc::new(OsDisk), dir, zxid, 3, data.len() as u64)?;
    for c in data.chunks(chunk) {
        r.append(c)?;
    }
    r.finish()
}

/// The names of the files in `dir`, sorted.
fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_received_snapshot_is_written_as_sent_and_checked() {
    let dir = TempDir::new("recv");
    let tree = sample_tree(200);
    let zxid = tree.zxid();
    let good = snapshot_bytes(&tree);
    let (path, h) = receive(&dir.0, zxid, &good, 1000).expect("valid");
    assert!(good.len() > 3 * 1000, "several chunks");
    assert_eq!(path, dir.0.join(received_name(zxid, 3)));
    assert_eq!((h.zxid, h.digest), (zxid, tree.digest()));
    assert_eq!(fs::read(&path).unwrap(), good);
    // Nothing that reads snapshots sees it, and purge leaves it.
    assert_eq!(zxid_of_name(&received_name(zxid, 3)), None);
    assert_eq!(zxid_of_received_name(&received_name(zxid, 3)), Some(zxid));
    for name in [
        "snapshot.1f.recv",
        "snapshot.1f.x.recv",
        "snapshot.1f.3.tmp",
        "snapshot.1f",
    ] {
        assert_eq!(zxid_of_received_name(name), None, "{name}");
    }
    assert!(list(&OsDisk, &dir.0).unwrap().is_empty());
    purge(&OsDisk, &dir.0, &dir.0, 3, None).unwrap();
    assert!(path.exists());
    // The next SNAP removes it, as does start.
    let r = SnapshotReceiver::begin(Arc::new(OsDisk), &dir.0, zxid + 1, 4, 10).unwrap();
    assert_eq!(file_names(&dir.0), vec![received_name(zxid + 1, 4)]);
    drop(r);
    assert!(
        file_names(&dir.0).is_empty(),
        "an unfinished receiver leaves nothing"
    );
    fs::write(&path, b"half").unwrap();
    assert_eq!(remove_received(&OsDisk, &dir.0).unwrap(), vec![path]);
    assert!(file_names(&dir.0).is_empty());
}

#[test]
fn a_bad_received_snapshot_fails_and_leaves_nothing() {
    let dir = TempDir::new("recv-bad");
    let tree = sample_tree(200);
    let zxid = tree.zxid();
    let good = snapshot_bytes(&tree);
    save(&OsDisk, &dir.0, &sample_tree(10)).expect("save");
    let before = file_names(&dir.0);
    assert!(
        receive(&dir.0, zxid + 1, &good, 4096).is_err(),
        "wrong zxid"
    );
    assert_eq!(file_names(&dir.0), before);
    assert!(
        receive(&dir.0, zxid, &good[..good.len() - 1], 4096).is_err(),
        "truncated"
    );
    assert_eq!(file_names(&dir.0), before);
    // Every byte flipped somewhere in the file is caught (header CRC, a record, the
    // trailer CRC): sample positions across the whole file.
    for at in (0..good.len()).step_by((good.len() / 97).max(1)) {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        assert!(
            receive(&dir.0, zxid, &bad, 4096).is_err(),
            "flip at {at} accepted"
        );
        assert_eq!(file_names(&dir.0), before, "flip at {at}");
    }
}

#[test]
fn install_received_replaces_newer_snapshots_and_every_log_segment() {
    let dir = TempDir::new("install");
    let logs = TempDir::new("install-logs");
    let txns = sample_txns(40);
    let mut old = DataTree::new();
    apply_all(&mut old, &txns[..10]);
    save(&OsDisk, &dir.0, &old).expect("save");
    let mut newer = old.clone();
    apply_all(&mut newer, &txns[10..]);
    save(&OsDisk, &dir.0, &newer).expect("save");
    for z in [1i64, 9] {
        fs::write(logs.0.join(format!("{LOG_PREFIX}{z:x}")), b"").unwrap();
    }
    fs::write(logs.0.join("log.spare"), b"").unwrap();
    let mut leader = old.clone();
    apply_all(&mut leader, &txns[10..25]);
    let data = snapshot_bytes(&leader);
    // A missing received file changes nothing.
    let received = dir.0.join(received_name(leader.zxid(), 3));
    assert!(install_received(&OsDisk, &dir.0, &logs.0, leader.zxid(), &received).is_err());
    assert_eq!(list(&OsDisk, &dir.0).unwrap().len(), 2);
    assert_eq!(list_logs(&OsDisk, &logs.0).unwrap().len(), 2);
    let (received, _) = receive(&dir.0, leader.zxid(), &data, 512).expect("valid");
    let done =
        install_received(&OsDisk, &dir.0, &logs.0, leader.zxid(), &received).expect("install");
    assert_eq!(
        done.snapshots_removed,
        vec![dir.0.join(file_name(newer.zxid()))]
    );
    assert_eq!(done.len, data.len() as u64);
    assert_eq!(done.logs_removed.len(), 2);
    assert!(
        logs.0.join("log.spare").exists(),
        "the spare is not a segment"
    );
    assert!(!received.exists());
    let snaps = list(&OsDisk, &dir.0).unwrap();
    assert_eq!(snaps[0].0, leader.zxid());
    assert_eq!(fs::read(&snaps[0].1).unwrap(), data);
    assert_eq!(load(&OsDisk, &snaps[0].1).expect("load"), leader);
    assert!(list_logs(&OsDisk, &logs.0).unwrap().is_empty());
}

/// Pacing also holds the writer's CPU to [`SNAPSHOT_CPU_SHARE`] of the time since it
/// began: a writer that burns CPU between buffers (as walking a big tree does) sleeps
/// until its CPU time is that share of the elapsed time, even when the byte rate would
/// let it go on. A lower bound on the time taken, so a slow machine cannot fail it.
#[test]
fn pacing_holds_the_writers_cpu_to_its_share_of_the_time() {
    let dir = TempDir::new("snap-cpu-share");
    let file = OsDisk
        .open(&dir.0.join("f"), OpenOptions::create_new())
        .expect("open");
    let rate = AtomicU64::new(1 << 40); // bytes never bind
    let mut w = FileWriter::new(&*file, false, Some(&rate));
    let began = std::time::Instant::now();
    let cpu0 = thread_cpu_seconds();
    let buffer = vec![7u8; IO_BUFFER];
    for _ in 0..6 {
        let t = thread_cpu_seconds();
        // Bounded: ends after 20 ms of this thread's CPU.
        let mut x = 0u64;
        while thread_cpu_seconds() - t < 0.02 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        w.write_all(&buffer).expect("write");
    }
    let cpu = thread_cpu_seconds() - cpu0;
    let took = began.elapsed().as_secs_f64();
    assert!(
        took >= 0.9 * cpu / SNAPSHOT_CPU_SHARE,
        "{cpu:.3} s of CPU in {took:.3} s: more than the share"
    );
    assert_eq!(w.finish().expect("finish"), 6 * IO_BUFFER as u64);
}
