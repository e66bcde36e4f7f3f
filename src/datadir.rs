//! The data-directory tool behind `ringkeeper data check` and `ringkeeper data dump`:
//! what ZooKeeper's `TxnLogToolkit` and `SnapshotFormatter` do, as functions that return
//! text, so the command line only prints and picks the exit code.
//!
//! `check` validates every snapshot (CRCs, structure, counts, digest), the log (the
//! reader checks every record's CRC; this checks zxid continuity), and that recovery
//! (newest valid snapshot plus the log after it) yields the same tree as replaying the
//! whole log from the empty tree, when the log still reaches back to zxid 1. Nothing
//! here writes to the directory.

use crate::storage::disk::Disk;
use crate::storage::recovery::{follows, TxnSource};
use crate::storage::snapshot::{self, Record};
use crate::tree::DataTree;
use crate::txn::{Txn, TxnOp};
use std::fmt::Write as _;
use std::path::Path;

/// The result of [`check`]: the report, and whether everything was valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub ok: bool,
    /// One line per finding, ending with a verdict line.
    pub text: String,
}

/// Checks the snapshots in `snap_dir` and, when given, the log `log` supplies.
///
/// The log source is read once, from its beginning; it must not repair anything
/// (a read-only reader: `check` reports a torn tail, it does not truncate it).
///
/// # Errors
/// Never for invalid content (that is `ok == false` with the reason); only when a
/// directory cannot be listed.
pub fn check(
    disk: &dyn Disk,
    snap_dir: &Path,
    log: Option<&mut dyn TxnSource>,
) -> std::io::Result<CheckReport> {
    let mut out = String::new();
    let mut ok = true;
    let snaps = snapshot::list(disk, snap_dir)?;
    let mut base: Option<DataTree> = None;
    for (zxid, path) in &snaps {
        match snapshot::load(disk, path) {
            Ok(t) if t.zxid() != *zxid => {
                ok = false;
                let _ = writeln!(
                    out,
                    "BAD  {}: holds zxid {:#x}, its name says {zxid:#x}",
                    path.display(),
                    t.zxid()
                );
            }
            Ok(t) => {
                let _ = writeln!(
                    out,
                    "ok   {}: zxid {:#x}, {} znodes, {} sessions, digest {:#018x}",
                    path.display(),
                    t.zxid(),
                    t.len(),
                    t.session_count(),
                    t.digest()
                );
                if base.is_none() {
                    base = Some(t);
                }
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(out, "BAD  {e}");
            }
        }
    }
    if snaps.is_empty() {
        let _ = writeln!(out, "--   no snapshots in {}", snap_dir.display());
    }
    let Some(log) = log else {
        let _ = writeln!(out, "--   log not checked");
        return Ok(finish(out, ok));
    };
    // One pass over the log feeds two trees: recovery's (snapshot, then the txns after
    // it) and a full replay from the empty tree, possible only if the log starts at 1.
    let mut recovered = base.unwrap_or_default();
    let start = recovered.zxid();
    let mut full: Option<DataTree> = Some(DataTree::new());
    let (mut first, mut last, mut count) = (None::<i64>, 0i64, 0u64);
    let mut problem: Option<String> = None;
    // A log purged up to a snapshot (a server's autopurge, a backup's retention) starts
    // later: then only recovery's part can be checked, from the newest snapshot.
    let after = match log.oldest_zxid() {
        Some(f) if f > 1 && !crate::storage::reader::zxid_follows(0, f) => start,
        _ => 0,
    };
    let result = log.replay_after(after, &mut |t: &Txn| {
        if first.is_none() {
            first = Some(t.zxid);
            if t.zxid != 1 {
                full = None;
            }
        } else if !follows(last, t.zxid) {
            let m = format!(
                "log: zxid {:#x} follows {last:#x}: a gap or out of order",
                t.zxid
            );
            problem = Some(m.clone());
            return Err(m);
        }
        if let Some(f) = full.as_mut() {
            f.apply(t);
        }
        if t.zxid > start {
            if !follows(recovered.zxid(), t.zxid) {
                let m = format!(
                    "log: first txn after the snapshot at {start:#x} is {:#x}: txns missing",
                    t.zxid
                );
                problem = Some(m.clone());
                return Err(m);
            }
            recovered.apply(t);
        }
        last = t.zxid;
        count += 1;
        Ok(())
    });
    match (result, problem) {
        (_, Some(p)) => {
            let _ = writeln!(out, "BAD  {p}");
            return Ok(finish(out, false));
        }
        (Err(e), None) => {
            let _ = writeln!(out, "BAD  log: {e}");
            return Ok(finish(out, false));
        }
        (Ok(replay), None) => {
            for n in replay.notes {
                let _ = writeln!(out, "note {n}");
            }
        }
    }
    match first {
        None => {
            let _ = writeln!(out, "ok   log: empty");
        }
        Some(f) => {
            let _ = writeln!(
                out,
                "ok   log: {count} txns, zxid {f:#x} to {last:#x}, continuous"
            );
        }
    }
    let _ = writeln!(
        out,
        "ok   recovered: zxid {:#x}, {} znodes, {} sessions, digest {:#018x}",
        recovered.zxid(),
        recovered.len(),
        recovered.session_count(),
        recovered.digest()
    );
    // /zookeeper/config is set by each server at start, outside the log.
    let full = full.map(|mut f| {
        f.adopt_config_node(&recovered);
        f
    });
    match full {
        Some(f) if f.zxid() == recovered.zxid() && f == recovered => {
            let _ = writeln!(out, "ok   full log replay equals the recovered tree");
        }
        Some(f) => {
            ok = false;
            let _ = writeln!(
                out,
                "BAD  full log replay: zxid {:#x} digest {:#018x} differs from the recovered tree",
                f.zxid(),
                f.digest()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "--   log starts after zxid 1 (purged): full replay not possible"
            );
        }
    }
    Ok(finish(out, ok))
}

fn finish(mut text: String, ok: bool) -> CheckReport {
    text.push_str(if ok { "VALID\n" } else { "INVALID\n" });
    CheckReport { ok, text }
}

/// Dumps every snapshot (a summary and one line per znode and session, in file order,
/// as `SnapshotFormatter`) and, when given, every logged txn one per line (as
/// `TxnLogToolkit`).
///
/// # Errors
/// The first invalid snapshot or log failure, with what was printed before it.
pub fn dump(
    disk: &dyn Disk,
    snap_dir: &Path,
    log: Option<&mut dyn TxnSource>,
) -> Result<String, String> {
    let mut out = String::new();
    let snaps =
        snapshot::list(disk, snap_dir).map_err(|e| format!("{}: {e}", snap_dir.display()))?;
    for (_, path) in snaps.iter().rev() {
        let _ = writeln!(out, "----- {}", path.display());
        let mut acls = 0usize;
        let header = snapshot::scan_file(disk, path, |rec| {
            match rec {
                Record::Acl { .. } => acls += 1,
                Record::Node { path, node } => {
                    let s = node.stat();
                    let _ = writeln!(
                        out,
                        "{path}  cZxid={:#x} ctime={} mZxid={:#x} mtime={} pZxid={:#x} \
                         cversion={} dataVersion={} aclVersion={} ephemeralOwner={:#x} dataLength={}",
                        s.czxid,
                        format_time(s.ctime),
                        s.mzxid,
                        format_time(s.mtime),
                        s.pzxid,
                        node.cversion,
                        s.version,
                        s.aversion,
                        node.ephemeral_owner,
                        node.data_len()
                    );
                }
                Record::Session { id, timeout_ms } => {
                    let _ = writeln!(out, "session {id:#x} timeout {timeout_ms}");
                }
            }
            Ok(())
        })
        .map_err(|e| format!("{out}{e}"))?;
        let _ = writeln!(
            out,
            "Summary: zxid {:#x}, {} znodes, {} sessions, {} ACL lists, data size {}, digest {:#018x}",
            header.zxid, header.node_count, header.session_count, acls, header.data_size, header.digest
        );
    }
    if let Some(log) = log {
        let _ = writeln!(out, "----- log");
        let mut count = 0u64;
        let r = log.replay_after(0, &mut |t: &Txn| {
            out.push_str(&format_txn(t));
            out.push('\n');
            count += 1;
            Ok(())
        });
        match r {
            Ok(replay) => {
                for n in replay.notes {
                    let _ = writeln!(out, "note {n}");
                }
                let _ = writeln!(out, "EOF reached after {count} txns.");
            }
            Err(e) => return Err(format!("{out}log: {e}")),
        }
    }
    Ok(out)
}

/// One txn as `TxnLogToolkit` prints it: time, session, cxid, zxid, type and fields.
pub fn format_txn(t: &Txn) -> String {
    format!(
        "{} session {:#x} cxid {:#x} zxid {:#x} {}",
        format_time(t.time_ms),
        t.session_id,
        t.cxid,
        t.zxid,
        format_op(&t.op)
    )
}

fn format_op(op: &TxnOp) -> String {
    let data = |d: &Option<bytes::Bytes>| match d {
        None => "null".to_string(),
        Some(d) => format!("#{}", hex(d)),
    };
    match op {
        TxnOp::Error { code, multi: None } => format!("error {}", *code as i32),
        TxnOp::Error {
            code,
            multi: Some(codes),
        } => format!(
            "error {} {:?}",
            *code as i32,
            codes.iter().map(|c| *c as i32).collect::<Vec<_>>()
        ),
        TxnOp::CreateSession { timeout_ms } => format!("createSession {timeout_ms}"),
        TxnOp::CloseSession { ephemerals } => format!("closeSession {ephemerals:?}"),
        TxnOp::Create {
            path,
            data: d,
            acl,
            ephemeral_owner,
        } => format!(
            "create '{path},{},v{{{}}},{},{ephemeral_owner:#x}",
            data(d),
            acl.iter()
                .map(|a| format!("s{{{},{{'{},'{}}}}}", a.perms, a.id.scheme, a.id.id))
                .collect::<Vec<_>>()
                .join(","),
            i32::from(*ephemeral_owner != 0)
        ),
        TxnOp::Delete { path } => format!("delete '{path}"),
        TxnOp::DeleteContainer { path } => format!("deleteContainer '{path}"),
        TxnOp::SetData {
            path,
            data: d,
            version,
        } => format!("setData '{path},{},{version}", data(d)),
        TxnOp::SetAcl {
            path,
            acl,
            aversion,
        } => format!("setACL '{path},{} entries,{aversion}", acl.len()),
        TxnOp::Check { path } => format!("check '{path}"),
        TxnOp::Multi(ops) => format!(
            "multi v{{{}}}",
            ops.iter().map(format_op).collect::<Vec<_>>().join("; ")
        ),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// The (year, month, day) of a count of days since 1970-01-01 in the proleptic
/// Gregorian calendar (Howard Hinnant's civil_from_days).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm UTC`.
pub fn format_time(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03} UTC",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::disk::OsDisk;
    use crate::storage::recovery::LogReplay;
    use crate::storage::snapshot::tests::{apply_all, sample_txns, TempDir};

    struct VecLog(Vec<Txn>);

    impl TxnSource for VecLog {
        fn replay_after(
            &mut self,
            after: i64,
            apply: &mut dyn FnMut(&Txn) -> Result<(), String>,
        ) -> Result<LogReplay, String> {
            for t in self.0.iter().filter(|t| t.zxid > after) {
                apply(t)?;
            }
            Ok(LogReplay::default())
        }
    }

    fn tree_of(txns: &[Txn]) -> DataTree {
        let mut t = DataTree::new();
        apply_all(&mut t, txns);
        t
    }

    #[test]
    fn check_passes_a_good_directory_and_compares_with_a_full_replay() {
        let dir = TempDir::new("dd-good");
        let txns = sample_txns(20);
        snapshot::save(&OsDisk, &dir.0, &tree_of(&txns[..10])).expect("save");
        let r = check(&OsDisk, &dir.0, Some(&mut VecLog(txns.clone()))).expect("check");
        assert!(r.ok, "{}", r.text);
        assert!(
            r.text.contains("full log replay equals the recovered tree"),
            "{}",
            r.text
        );
        assert!(r.text.ends_with("VALID\n"));
    }

    #[test]
    fn check_fails_on_a_corrupt_snapshot_and_on_a_gap() {
        let dir = TempDir::new("dd-bad");
        let txns = sample_txns(20);
        let (p, _, _) = snapshot::save(&OsDisk, &dir.0, &tree_of(&txns[..10])).expect("save");
        let mut b = std::fs::read(&p).unwrap();
        b[60] ^= 1;
        std::fs::write(&p, b).unwrap();
        let r = check(&OsDisk, &dir.0, None).expect("check");
        assert!(!r.ok);
        assert!(
            r.text.contains("BAD") && r.text.contains(&p.display().to_string()),
            "{}",
            r.text
        );

        let dir = TempDir::new("dd-gap");
        let mut gap = txns.clone();
        gap.remove(12);
        let r = check(&OsDisk, &dir.0, Some(&mut VecLog(gap))).expect("check");
        assert!(!r.ok);
        assert!(r.text.contains("a gap or out of order"), "{}", r.text);
    }

    #[test]
    fn dump_lists_snapshot_nodes_and_log_records() {
        let dir = TempDir::new("dd-dump");
        let txns = sample_txns(5);
        snapshot::save(&OsDisk, &dir.0, &tree_of(&txns)).expect("save");
        let out = dump(&OsDisk, &dir.0, Some(&mut VecLog(txns.clone()))).expect("dump");
        assert!(out.contains("/app/n1  cZxid="), "{out}");
        assert!(out.contains("session 0x11 timeout 30000"), "{out}");
        assert!(out.contains("Summary: zxid"), "{out}");
        assert!(out.contains("zxid 0x1 createSession 30000"), "{out}");
        assert!(
            out.contains(&format!("EOF reached after {} txns.", txns.len())),
            "{out}"
        );
    }

    #[test]
    fn time_is_formatted_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(
            format_time(1_700_000_000_123),
            "2023-11-14 22:13:20.123 UTC"
        );
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00.000 UTC");
    }
}
