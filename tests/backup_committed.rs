//! A backup reaches only what the server has committed (issue 14): a member's log may
//! end in proposals that are never committed (its leader failed before a quorum acked
//! them; the member is later told to TRUNC them), so `backup_pass` takes the server's
//! committed zxid and the manifest, `verify` and `restore --latest` stop there, and a
//! segment is final only once all of it is committed.

mod common_log;

use bytes::Bytes;
use common_log::*;
use ringkeeper::backup::{self, DirTarget, Manifest, Object, Point};
use ringkeeper::storage::{IoBackend, LogConfig, LogPosition, Logger, OsDisk, SyncMode};
use ringkeeper::txn::{Txn, TxnOp};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rk-bkc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// zxid 1 creates /k, every later zxid sets it to data naming that zxid.
fn write_log(dir: &Path, last: i64) {
    let mut c = LogConfig::new(dir);
    c.segment_bytes = 256 << 10;
    c.max_write_bytes = 16 << 10;
    c.sync = SyncMode::Dsync;
    c.backend = IoBackend::Uring;
    let (notify, rx) = notifier();
    let logger = Logger::start(c, Arc::new(OsDisk), LogPosition::default(), notify).unwrap();
    let mut oracle = Oracle::default();
    let create = Txn {
        session_id: 0,
        cxid: 0,
        zxid: 1,
        time_ms: 1_700_000_000_000,
        op: TxnOp::Create {
            path: "/k".into(),
            data: None,
            acl: ringkeeper::tree::open_acl_unsafe(),
            ephemeral_owner: 0,
        },
    };
    logger.append(vec![create]).unwrap();
    let mut z = 2;
    while z <= last {
        let n = 3.min(last - z + 1) as usize;
        logger.append(batch(z, n, 0, 2000)).unwrap();
        z += n as i64;
    }
    wait_for(&logger, &rx, &mut oracle, |o| o.settled(last));
    assert_eq!(oracle.durable_through, last, "{:?}", oracle.errors);
}

fn data_of_k(dir: &Path) -> Bytes {
    let opened = ringkeeper::storage::open::open(Arc::new(OsDisk), dir, dir).unwrap();
    opened.tree.data("/k").unwrap().0.unwrap()
}

#[test]
fn a_backup_stops_at_the_committed_zxid() {
    let base = temp_dir("cap");
    let log = base.join("log");
    std::fs::create_dir_all(&log).unwrap();
    write_log(&log, 600);
    let segments = std::fs::read_dir(&log)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("log.0")
        })
        .count();
    assert!(segments >= 3, "the log spans several segments ({segments})");

    let target = DirTarget::create(&base.join("backup")).unwrap();
    let scratch = base.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    // The server says it has committed 250 of the 600 logged txns.
    let r = backup::backup_pass(&log, &log, &target, &scratch, Some(250), 0).unwrap();
    assert_eq!(r.last_zxid, 250);
    let m = Manifest::load(&target).unwrap();
    assert_eq!(m.last_zxid(), 250);
    for e in m.entries.values() {
        if let Object::Segment {
            first,
            last,
            closed,
        } = e.object
        {
            assert!(first <= 250, "{}: nothing committed in it", e.name);
            assert!(last <= 250, "{}: reaches {last}", e.name);
            if last == 250 {
                assert!(!closed, "{}: holds uncommitted txns, not final", e.name);
            }
        }
    }
    let v = backup::verify(&target, &scratch).unwrap();
    assert!(v.ok, "{}", v.text);
    let dst = base.join("restored-250");
    let restored = backup::restore(&target, Point::Latest, &dst).unwrap();
    assert_eq!(restored.zxid, 250);
    assert!(data_of_k(&dst).starts_with(b"z250g0-"));
    // A time after every txn still stops at the committed point.
    let dst_t = base.join("restored-time");
    let restored = backup::restore(&target, Point::Time(i64::MAX), &dst_t).unwrap();
    assert_eq!(restored.zxid, 250);
    assert!(backup::restore(&target, Point::Zxid(251), &base.join("past")).is_err());

    // Later the server has committed everything: the next pass completes the backup.
    let r = backup::backup_pass(&log, &log, &target, &scratch, Some(600), 0).unwrap();
    assert_eq!(r.last_zxid, 600);
    let v = backup::verify(&target, &scratch).unwrap();
    assert!(v.ok, "{}", v.text);
    let dst = base.join("restored-600");
    assert_eq!(
        backup::restore(&target, Point::Latest, &dst).unwrap().zxid,
        600
    );
    assert!(data_of_k(&dst).starts_with(b"z600g0-"));

    // Offline (no server to ask): everything logged.
    let offline = DirTarget::create(&base.join("offline")).unwrap();
    let r = backup::backup_pass(&log, &log, &offline, &scratch, None, 0).unwrap();
    assert_eq!(r.last_zxid, 600);
    std::fs::remove_dir_all(&base).ok();
}

#[test]
fn the_committed_zxid_comes_from_srvr_and_a_silent_server_is_an_error() {
    // Nothing listens there: a clear error, not a guess.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let e = backup::committed_zxid(&addr.to_string()).unwrap_err();
    assert!(e.contains("committed zxid"), "{e}");
    // A real server answers its zxid.
    let cfg = ringkeeper::server::ServerConfig::standalone("127.0.0.1:0".parse().unwrap(), 1);
    let srv = ringkeeper::server::start(cfg, ringkeeper::tree::DataTree::new(), 0x5_0000_0007)
        .expect("server starts");
    let z = backup::committed_zxid(&srv.local_addr.to_string()).unwrap();
    assert_eq!(z, 0x5_0000_0007);
    srv.shutdown();
}

#[test]
fn retention_keeps_the_newest_snapshots_and_the_log_after_them() {
    let base = temp_dir("keep");
    let dir = base.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    write_log(&dir, 600);
    // Snapshots at 200 and 400, built by restoring those points of an offline backup.
    let scratch = base.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let all = DirTarget::create(&base.join("all")).unwrap();
    backup::backup_pass(&dir, &dir, &all, &scratch, None, 0).unwrap();
    for z in [200, 400] {
        let at = base.join(format!("at-{z}"));
        backup::restore(&all, Point::Zxid(z), &at).unwrap();
        let opened = ringkeeper::storage::open::open(Arc::new(OsDisk), &at, &at).unwrap();
        assert_eq!(opened.zxid, z);
        ringkeeper::storage::snapshot::save(&OsDisk, &dir, &opened.tree).unwrap();
    }
    let target = DirTarget::create(&base.join("kept")).unwrap();
    let r = backup::backup_pass(&dir, &dir, &target, &scratch, None, 1).unwrap();
    assert!(
        r.removed.contains(&"snapshot.c8".to_string()),
        "{:?}",
        r.removed
    );
    assert!(
        r.removed.iter().any(|n| n.starts_with("log.")),
        "segments wholly before 400 go: {:?}",
        r.removed
    );
    let m = Manifest::load(&target).unwrap();
    for n in &r.removed {
        assert!(!m.entries.contains_key(n), "{n} still listed");
        assert!(!base.join("kept").join(n).exists(), "{n} still stored");
    }
    // Every point from the kept snapshot on restores; earlier ones do not.
    let v = backup::verify(&target, &scratch).unwrap();
    assert!(v.ok, "{}", v.text);
    for z in [400, 401, 555, 600] {
        let dst = base.join(format!("r-{z}"));
        assert_eq!(
            backup::restore(&target, Point::Zxid(z), &dst).unwrap().zxid,
            z
        );
        assert!(data_of_k(&dst).starts_with(format!("z{z}g0-").as_bytes()));
    }
    assert!(backup::restore(&target, Point::Zxid(150), &base.join("r-150")).is_err());
    std::fs::remove_dir_all(&base).ok();
}
