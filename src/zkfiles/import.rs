//! Importing a ZooKeeper data directory: ZooKeeper's start-up restore
//! (`FileTxnSnapLog.restore`), done on its files, then RingKeeper's data directory
//! written through RingKeeper's own storage API (a snapshot of the tree at the last
//! zxid, the epoch files).
//!
//! As ZooKeeper does: the newest snapshot that reads back whole (an older one when it
//! does not, reported), then every logged txn after its zxid, from the newest log file
//! that starts at or before it on; a log file ends at its preallocated zeros or at a
//! record a crash cut short; the ephemerals of sessions that are no longer live are
//! removed. Stricter than ZooKeeper: a gap or a step back in the zxids after the snapshot
//! is refused (ZooKeeper would serve a tree missing those txns). The replay is checked
//! against the tree digests ZooKeeper recorded (snapshot and log records, 3.6+).
//!
//! Nothing is written to the ZooKeeper files' directories. Failures name the file and
//! the byte offset.

use crate::storage::snapshot;
use crate::storage::OsDisk;
use crate::tree::DataTree;
use crate::zkfiles::log::{zxid_of_log_name, LogEnd, LogIter};
use crate::zkfiles::snap::{decompress, parse_snapshot, stream_mode, zxid_of_snapshot_name};
use crate::zkfiles::tree::{DigestReport, ZkTree};
use crate::zkfiles::{ZkFileError, VERSION_DIR};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The name of the note an import leaves in RingKeeper's data directory.
pub const MARKER: &str = "zookeeper-import.txt";

/// ZooKeeper's epoch files (in the snapshot directory).
pub const ACCEPTED_EPOCH: &str = "acceptedEpoch";
pub const CURRENT_EPOCH: &str = "currentEpoch";

/// Where ZooKeeper's files are: `dataDir/version-2` and `dataLogDir/version-2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkDirs {
    pub snap_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl ZkDirs {
    /// The `version-2` directories of a ZooKeeper `dataDir` and `dataLogDir`. A path
    /// that already ends in `version-2` is taken as it is.
    pub fn of(data_dir: &Path, data_log_dir: &Path) -> ZkDirs {
        let v2 = |d: &Path| {
            if d.file_name().is_some_and(|n| n == VERSION_DIR) {
                d.to_path_buf()
            } else {
                d.join(VERSION_DIR)
            }
        };
        ZkDirs {
            snap_dir: v2(data_dir),
            log_dir: v2(data_log_dir),
        }
    }

    /// Whether ZooKeeper's snapshots or logs are there.
    pub fn has_zookeeper_data(&self) -> bool {
        !list(&self.snap_dir, zxid_of_snapshot_name).is_empty()
            || !list(&self.log_dir, zxid_of_log_name).is_empty()
    }
}

/// Files in `dir` whose names `zxid_of` accepts, ascending by zxid (a missing or
/// unreadable directory has none).
fn list(dir: &Path, zxid_of: fn(&str) -> Option<i64>) -> Vec<(i64, PathBuf)> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Some(name) = e.file_name().to_str() {
                if let Some(z) = zxid_of(name) {
                    if e.path().is_file() {
                        v.push((z, e.path()));
                    }
                }
            }
        }
    }
    v.sort();
    v
}

/// Import choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Replay logs without any snapshot from the empty tree, as ZooKeeper does with
    /// `zookeeper.snapshot.trust.empty=true` (a 3.4 directory before its first snapshot).
    pub trust_empty_snapshot: bool,
}

/// ZooKeeper's data, read and replayed.
#[derive(Debug)]
pub struct Imported {
    pub tree: DataTree,
    /// The zxid of the last txn (the snapshot's when no txn follows it).
    pub zxid: i64,
    pub snapshot: Option<PathBuf>,
    /// Log files read, in order.
    pub logs: Vec<PathBuf>,
    /// Txns applied after the snapshot.
    pub replayed: u64,
    pub accepted_epoch: Option<u32>,
    pub current_epoch: Option<u32>,
    /// Fallbacks, torn ends and clean-ups, in order.
    pub notes: Vec<String>,
    pub digest: DigestReport,
}

impl Imported {
    /// A one-paragraph summary for the start-up message and the command line.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} znodes, {} sessions ({} ephemerals), through zxid {:#x}: snapshot {}",
            self.tree.len(),
            self.tree.session_count(),
            self.tree.ephemeral_count(),
            self.zxid,
            self.snapshot
                .as_ref()
                .map_or("none (empty tree)".to_string(), |p| p.display().to_string()),
        );
        let _ = write!(
            s,
            " and {} txns from {} log files",
            self.replayed,
            self.logs.len()
        );
        if self.digest.mismatches.is_empty() {
            let _ = write!(
                s,
                "; checked against {} digests ZooKeeper recorded, all equal",
                self.digest.checked
            );
        } else {
            let (z, want, got) = self.digest.mismatches[0];
            let _ = write!(
                s,
                "; WARNING: {} of {} digests ZooKeeper recorded differ (first at zxid {z:#x}: \
                 ZooKeeper {want}, replay {got})",
                self.digest.mismatches.len(),
                self.digest.checked
            );
        }
        s
    }
}

fn file_err(file: &Path, offset: u64, what: impl Into<String>) -> ZkFileError {
    ZkFileError {
        file: file.to_path_buf(),
        offset,
        what: what.into(),
    }
}

fn read_epoch(dir: &Path, name: &str) -> Result<Option<u32>, ZkFileError> {
    let p = dir.join(name);
    match std::fs::read_to_string(&p) {
        Ok(s) => {
            let line = s.lines().next().unwrap_or("").trim();
            let v: i64 = line
                .parse()
                .map_err(|_| file_err(&p, 0, format!("not an epoch number: {line:?}")))?;
            u32::try_from(v)
                .map(Some)
                .map_err(|_| file_err(&p, 0, format!("epoch {v} out of range")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(&p, 0, format!("cannot read: {e}"))),
    }
}

/// True if `next` may directly follow `prev` (see `storage::recovery::follows`).
fn follows(prev: i64, next: i64) -> bool {
    crate::storage::recovery::follows(prev, next)
}

/// Reads ZooKeeper's data in `dirs` and replays it as ZooKeeper does at start.
///
/// # Errors
/// No ZooKeeper data; no snapshot that reads back (each one's damage named); logs but no
/// snapshot (unless `trust_empty_snapshot`); a log record with a bad Adler-32, an
/// unknown txn type or a record that does not parse; a gap after the snapshot; a tree
/// RingKeeper cannot hold. Each names the file and the offset.
pub fn read_zookeeper(dirs: &ZkDirs, opts: Options) -> Result<Imported, ZkFileError> {
    let snaps = list(&dirs.snap_dir, zxid_of_snapshot_name);
    let logs = list(&dirs.log_dir, zxid_of_log_name);
    if snaps.is_empty() && logs.is_empty() {
        return Err(file_err(
            &dirs.snap_dir,
            0,
            "no ZooKeeper snapshot.* or log.* files here",
        ));
    }
    let mut notes = Vec::new();
    let mut failures = Vec::new();
    let mut base: Option<(ZkTree, i64, PathBuf)> = None;
    // Newest first, at most 100 tried, as FileSnap.deserialize.
    for (zxid, path) in snaps.iter().rev().take(100) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let loaded = std::fs::read(path)
            .map_err(|e| file_err(path, 0, format!("cannot read: {e}")))
            .and_then(|raw| {
                let bytes = decompress(stream_mode(name), &raw)
                    .map_err(|e| file_err(path, e.offset, e.what))?;
                parse_snapshot(&bytes).map_err(|e| file_err(path, e.offset, e.what))
            });
        match loaded {
            Ok((mut tree, meta)) => {
                if meta.trailing > 0 {
                    notes.push(format!(
                        "{}: {} bytes after the last section, ignored as ZooKeeper ignores them",
                        path.display(),
                        meta.trailing
                    ));
                }
                tree.loaded(*zxid, meta.digest);
                base = Some((tree, *zxid, path.clone()));
                break;
            }
            Err(e) => {
                notes.push(format!(
                    "{e}; this snapshot is skipped and the one before it tried, as ZooKeeper does"
                ));
                failures.push(e);
            }
        }
    }
    let (mut tree, snap_zxid, snapshot) = match base {
        Some((t, z, p)) => (t, z, Some(p)),
        None if !snaps.is_empty() => {
            let first = failures.remove(0);
            let mut what = format!("no snapshot reads back whole: {}", first.what);
            for f in &failures {
                let _ = write!(what, "; {f}");
            }
            return Err(ZkFileError { what, ..first });
        }
        None => {
            let (z, first_log) = &logs[0];
            if !opts.trust_empty_snapshot {
                return Err(file_err(
                    first_log,
                    crate::zkfiles::log::HEADER_LEN as u64,
                    format!(
                        "transaction logs from zxid {z:#x} on but no snapshot in {}. This is what \
                         ZooKeeper 3.4 leaves before its first snapshot; ZooKeeper 3.5 and later \
                         refuse to start on it too (ZOOKEEPER-3056). Let ZooKeeper 3.4 write a \
                         snapshot first, or, if the logs go back to the very first txn, import \
                         with --trust-empty-snapshot (zoo.cfg: snapshot.trust.empty=true) to \
                         replay them from an empty tree",
                        dirs.snap_dir.display()
                    ),
                ));
            }
            notes.push(format!(
                "no snapshot: replaying the logs from an empty tree (snapshot.trust.empty), \
                 starting with {}",
                first_log.display()
            ));
            let mut t = ZkTree::fresh();
            t.loaded(0, None);
            (t, 0, None)
        }
    };
    // FileTxnLog.getLogFiles: the newest log starting at or before the snapshot's zxid,
    // and every later one.
    let start_at = logs.iter().rposition(|(z, _)| *z <= snap_zxid).unwrap_or(0);
    let to_read = &logs[start_at..];
    let mut read_logs = Vec::new();
    let mut replayed = 0u64;
    let mut last = snap_zxid;
    for (i, (_, path)) in to_read.iter().enumerate() {
        let bytes =
            std::fs::read(path).map_err(|e| file_err(path, 0, format!("cannot read: {e}")))?;
        let mut it = LogIter::new(&bytes).map_err(|e| file_err(path, e.offset, e.what))?;
        read_logs.push(path.clone());
        for rec in it.by_ref() {
            let rec = rec.map_err(|e| file_err(path, e.offset, e.what))?;
            let z = rec.txn.hdr.zxid;
            if z <= snap_zxid {
                continue;
            }
            if !follows(last, z) {
                let what = if last == snap_zxid {
                    format!(
                        "the first logged txn after the snapshot's zxid {snap_zxid:#x} is {z:#x}: \
                         the txns between are missing"
                    )
                } else {
                    format!("zxid {z:#x} right after {last:#x}: a gap or a step back in the log")
                };
                return Err(file_err(path, rec.offset, what));
            }
            tree.apply(&rec.txn);
            last = z;
            replayed += 1;
        }
        if let Some(LogEnd::Torn { offset, reason }) = it.end() {
            let nonzero = bytes[*offset as usize..]
                .iter()
                .filter(|b| **b != 0)
                .count();
            let is_last = i + 1 == to_read.len();
            notes.push(format!(
                "{}: at byte {offset}: {reason}; {} ({nonzero} non-zero bytes follow), as ZooKeeper does",
                path.display(),
                if is_last {
                    "the log ends there (a torn tail)"
                } else {
                    "the rest of this file is not read and the next file follows"
                }
            ));
        }
    }
    let removed = tree.kill_dead_sessions();
    if !removed.is_empty() {
        notes.push(format!(
            "removed {} ephemerals of sessions that are no longer live, as ZooKeeper does at \
             start: {}",
            removed.len(),
            removed.join(", ")
        ));
    }
    if tree.reset_config_node() {
        notes.push(
            "/zookeeper/config is imported empty, as a fresh RingKeeper has it: each server \
             of an ensemble writes it at start from its own configuration, as ZooKeeper does"
                .to_string(),
        );
    }
    let digest = tree.report.clone();
    let data_tree = tree.to_data_tree().map_err(|e| {
        file_err(
            snapshot.as_deref().unwrap_or(&dirs.snap_dir),
            0,
            format!("the replayed tree cannot be held: {e}"),
        )
    })?;
    Ok(Imported {
        zxid: data_tree.zxid(),
        tree: data_tree,
        snapshot,
        logs: read_logs,
        replayed,
        accepted_epoch: read_epoch(&dirs.snap_dir, ACCEPTED_EPOCH)?,
        current_epoch: read_epoch(&dirs.snap_dir, CURRENT_EPOCH)?,
        notes,
        digest,
    })
}

/// Whether RingKeeper's own data is in `data_dir` / `data_log_dir` (a snapshot or a log
/// segment).
///
/// # Errors
/// A directory that exists but cannot be listed.
pub fn has_ringkeeper_data(data_dir: &Path, data_log_dir: &Path) -> std::io::Result<bool> {
    Ok(!snapshot::list(&OsDisk, data_dir)?.is_empty()
        || !snapshot::list_logs(&OsDisk, data_log_dir)?.is_empty())
}

/// Writes RingKeeper's data for `imp` into `data_dir` (which must hold no RingKeeper
/// data): the epoch files when ZooKeeper had them, then the snapshot (the commit point:
/// until it is renamed into place, the directory holds no RingKeeper data and a restart
/// imports again), then the marker describing the import. On failure, what this wrote
/// is removed.
///
/// # Errors
/// Any file-system failure.
pub fn write_ringkeeper(
    imp: &Imported,
    data_dir: &Path,
    source: &ZkDirs,
) -> Result<PathBuf, String> {
    use crate::server::replication::{write_epoch, ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE};
    let mut written: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
    let result = (|| -> Result<PathBuf, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        for (name, value) in [
            (ACCEPTED_EPOCH_FILE, imp.accepted_epoch),
            (CURRENT_EPOCH_FILE, imp.current_epoch),
        ] {
            if let Some(v) = value {
                let p = data_dir.join(name);
                written.push((p.clone(), std::fs::read(&p).ok()));
                write_epoch(data_dir, name, v).map_err(|e| format!("{}: {e}", p.display()))?;
            }
        }
        let (path, _, _) =
            snapshot::save(&OsDisk, data_dir, &imp.tree).map_err(|e| e.to_string())?;
        written.push((path.clone(), None));
        let mut text = String::new();
        let _ = writeln!(text, "imported from Apache ZooKeeper's files");
        let _ = writeln!(text, "snapshot dir: {}", source.snap_dir.display());
        let _ = writeln!(text, "log dir: {}", source.log_dir.display());
        let _ = writeln!(text, "zxid: {:#x}", imp.zxid);
        let _ = writeln!(text, "summary: {}", imp.summary());
        for n in &imp.notes {
            let _ = writeln!(text, "note: {n}");
        }
        let marker = data_dir.join(MARKER);
        let tmp = data_dir.join(format!("{MARKER}.tmp"));
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &marker))
            .map_err(|e| format!("{}: {e}", marker.display()))?;
        Ok(path)
    })();
    if result.is_err() {
        for (p, old) in written.iter().rev() {
            match old {
                Some(b) => {
                    let _ = std::fs::write(p, b);
                }
                None => {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
    result
}

/// What [`import_at_start`] did.
#[derive(Debug)]
pub enum AtStart {
    /// No ZooKeeper files, or RingKeeper's own data is there already.
    Nothing,
    /// RingKeeper's data is there and so are ZooKeeper files written after the import:
    /// the message says so (the server still starts from RingKeeper's data).
    Stale(String),
    /// Imported: the summary, the notes and the time it took.
    Imported {
        summary: String,
        notes: Vec<String>,
        seconds: f64,
    },
}

/// At server start: when `data_dir`/`data_log_dir` hold ZooKeeper's files and no
/// RingKeeper data, imports them into RingKeeper's format in `data_dir`.
///
/// # Errors
/// What [`read_zookeeper`] or [`write_ringkeeper`] refuse; nothing is left written.
pub fn import_at_start(
    data_dir: &Path,
    data_log_dir: &Path,
    opts: Options,
) -> Result<AtStart, String> {
    let dirs = ZkDirs::of(data_dir, data_log_dir);
    if !dirs.has_zookeeper_data() {
        return Ok(AtStart::Nothing);
    }
    if has_ringkeeper_data(data_dir, data_log_dir).map_err(|e| e.to_string())? {
        // Imported before: warn if ZooKeeper wrote past what was imported.
        let imported_zxid = std::fs::read_to_string(data_dir.join(MARKER))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("zxid: 0x"))
                    .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            });
        if let Some(z) = imported_zxid {
            let newest = list(&dirs.log_dir, zxid_of_log_name)
                .into_iter()
                .chain(list(&dirs.snap_dir, zxid_of_snapshot_name))
                .map(|(z, _)| z)
                .max()
                .unwrap_or(0);
            if newest > z as i64 {
                return Ok(AtStart::Stale(format!(
                    "{} holds ZooKeeper files from zxid {newest:#x}, after the import of zxid \
                     {z:#x}: ZooKeeper ran on this directory since. RingKeeper starts from its \
                     own data; to import again, move RingKeeper's files away",
                    dirs.snap_dir.display()
                )));
            }
        }
        return Ok(AtStart::Nothing);
    }
    let started = Instant::now();
    let imp = read_zookeeper(&dirs, opts).map_err(|e| e.to_string())?;
    write_ringkeeper(&imp, data_dir, &dirs)?;
    Ok(AtStart::Imported {
        summary: imp.summary(),
        notes: imp.notes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `ringkeeper data import-zookeeper SRC DST`: imports ZooKeeper's `dataDir` `src` (its
/// logs in `src_log`, default `src`) into a new RingKeeper data directory `dst`, built
/// beside it and renamed into place, so that `dst` either does not exist or holds the
/// whole import. `myid` is copied. `dst` must not exist or be empty.
///
/// # Errors
/// What [`read_zookeeper`] refuses, a `dst` that holds files, or a file-system failure.
pub fn import_offline(
    src: &Path,
    src_log: Option<&Path>,
    dst: &Path,
    opts: Options,
) -> Result<Imported, String> {
    if dst.exists() {
        let empty = std::fs::read_dir(dst)
            .map_err(|e| format!("{}: {e}", dst.display()))?
            .next()
            .is_none();
        if !empty {
            return Err(format!(
                "{}: exists and is not empty; the import writes a new data directory",
                dst.display()
            ));
        }
    }
    let dirs = ZkDirs::of(src, src_log.unwrap_or(src));
    let imp = read_zookeeper(&dirs, opts).map_err(|e| e.to_string())?;
    let parent = dst
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dst
        .file_name()
        .ok_or_else(|| format!("{}: not a directory name", dst.display()))?;
    let staging = parent.join(format!(
        ".{}.importing.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    let result = (|| -> Result<(), String> {
        write_ringkeeper(&imp, &staging, &dirs)?;
        let src_root = dirs.snap_dir.parent().unwrap_or(src);
        if let Ok(myid) = std::fs::read(src_root.join("myid")) {
            std::fs::write(staging.join("myid"), myid)
                .map_err(|e| format!("{}: {e}", staging.display()))?;
        }
        if dst.exists() {
            std::fs::remove_dir(dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        }
        std::fs::rename(&staging, dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: {e}", parent.display()))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    Ok(imp)
}
