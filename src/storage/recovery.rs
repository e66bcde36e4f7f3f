//! Recovery at start: the newest valid snapshot, then the log's txns after it, applied
//! in zxid order. The result is the committed tree and its zxid, which `server::start`
//! takes.
//!
//! Rules:
//! - A snapshot that fails its checks is reported and the next older one is tried; the
//!   log then supplies the txns after that older one. Nothing is skipped silently: each
//!   fallback is in [`Recovered::notes`] and printed.
//! - A torn tail (a short or bad-CRC record at the end of the newest segment) is the
//!   log reader's to truncate; it reports it and recovery prints it.
//! - Anything else (corruption before the tail, a gap between the snapshot and the
//!   first logged txn after it, a zxid out of order, an unreadable file) refuses to
//!   start with an error naming what was found and what was expected.
//!
//! Sessions survive: they are part of the tree (snapshot and createSession /
//! closeSession txns), so a client that reconnects within its timeout finds its session
//! and ephemerals. Expiry restarts from the recovered tree's session table, as in
//! ZooKeeper, where every session's deadline is reset at load.

use super::disk::Disk;
use super::snapshot::{self, SnapshotError};
use crate::tree::DataTree;
use crate::txn::Txn;
use std::fmt;
use std::path::{Path, PathBuf};

/// What recovery needs from the transaction log: its txns after a zxid, in order.
///
/// Implemented by the log's reader; tests use an in-memory log. A source handles its
/// own framing: it truncates a torn tail (and says so in [`LogReplay::notes`]) and
/// returns an error for corruption anywhere else.
pub trait TxnSource {
    /// Calls `apply` with every logged txn whose zxid is above `after`, in log order,
    /// stopping at the first error `apply` returns.
    ///
    /// # Errors
    /// Corruption before the tail or an I/O failure, naming the file, the offset and
    /// what was expected; or the error `apply` returned.
    fn replay_after(
        &mut self,
        after: i64,
        apply: &mut dyn FnMut(&Txn) -> Result<(), String>,
    ) -> Result<LogReplay, String>;

    /// The first zxid the source holds, when it knows without reading (the oldest log
    /// segment's name): a log purged up to a snapshot starts after 1.
    fn oldest_zxid(&self) -> Option<i64> {
        None
    }
}

/// What a [`TxnSource`] did besides delivering txns.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogReplay {
    /// Human-readable reports of repairs, e.g. "truncated torn tail of log.1 at byte
    /// 8192: record CRC mismatch".
    pub notes: Vec<String>,
}

/// The outcome of a successful recovery.
#[derive(Debug)]
pub struct Recovered {
    pub tree: DataTree,
    /// The zxid of the last txn the tree reflects (0 for an empty history).
    pub zxid: i64,
    /// The snapshot the tree started from, if any.
    pub snapshot: Option<PathBuf>,
    /// Txns replayed from the log on top of it.
    pub replayed: u64,
    /// Every fallback and repair, in order (also printed to stderr).
    pub notes: Vec<String>,
}

impl Recovered {
    /// What `server::start` takes.
    pub fn into_parts(self) -> (DataTree, i64) {
        (self.tree, self.zxid)
    }
}

/// Why recovery refused to start.
#[derive(Debug)]
pub enum RecoveryError {
    /// A snapshot could not be read (I/O, not corruption: retrying elsewhere would hide
    /// a failing disk).
    Snapshot(SnapshotError),
    /// The log reader refused: corruption before the tail, or an I/O failure.
    Log(String),
    /// The snapshot and log do not join up: a gap or a zxid out of order.
    Continuity(String),
    /// The data directory cannot be listed.
    Dir {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::Snapshot(e) => write!(f, "cannot recover: {e}"),
            RecoveryError::Log(e) => write!(f, "cannot recover: transaction log: {e}"),
            RecoveryError::Continuity(e) => write!(f, "cannot recover: {e}"),
            RecoveryError::Dir { path, error } => {
                write!(f, "cannot recover: cannot list {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for RecoveryError {}

/// Prints a snapshot load's progress about once a second once it has run for a second:
/// znodes loaded, MB/s and the time left, so an operator of a large tree sees how long
/// the wait is.
struct ProgressPrinter {
    name: String,
    next_s: f64,
    /// Bytes read at the last report (the whole file after a version-2 load).
    bytes: u64,
}

/// The first report comes after this many seconds; then one a second.
const PROGRESS_FIRST_S: f64 = 1.0;

impl ProgressPrinter {
    fn new(path: &Path) -> ProgressPrinter {
        ProgressPrinter {
            name: path.display().to_string(),
            next_s: PROGRESS_FIRST_S,
            bytes: 0,
        }
    }

    fn report(&mut self, p: &snapshot::LoadProgress) {
        self.bytes = p.bytes;
        let s = p.elapsed.as_secs_f64();
        if s >= self.next_s && p.nodes < p.node_count {
            self.next_s = s + 1.0;
            eprintln!(
                "ringkeeper: recovery: loading {}: {}",
                self.name,
                p.describe()
            );
        }
    }
}

/// True if `next` may directly follow `prev` in the history: the next counter of the
/// same epoch, or the first txn of a later epoch (counters restart at 1 after an
/// election). zxid 0 is the empty history.
pub fn follows(prev: i64, next: i64) -> bool {
    let epoch = |z: i64| (z as u64) >> 32;
    let counter = |z: i64| (z as u64) & 0xffff_ffff;
    next == prev + 1 || (epoch(next) > epoch(prev) && counter(next) == 1)
}

/// Recovers from the snapshots in `snap_dir` and the txns `log` supplies.
///
/// Tries snapshots newest first; a corrupt one is reported and the next older one is
/// tried; with none valid, the history is replayed from the empty tree. Then replays
/// every txn after the snapshot's zxid, each of which must [`follow`](follows) the one
/// before.
///
/// # Errors
/// See [`RecoveryError`]. A corrupt snapshot is an error only through its consequence:
/// if the log does not reach back to an older snapshot (or zxid 1), the gap is refused.
///
/// # Panics
/// If a txn that joins up does not fit the tree (`DataTree::apply`): that is a bug in
/// the writer of the history, and hiding it would serve a wrong tree.
pub fn recover_with(
    disk: &dyn Disk,
    snap_dir: &Path,
    log: &mut dyn TxnSource,
) -> Result<Recovered, RecoveryError> {
    let mut notes = Vec::new();
    let snaps = snapshot::list(disk, snap_dir).map_err(|error| RecoveryError::Dir {
        path: snap_dir.to_path_buf(),
        error,
    })?;
    let mut base: Option<(DataTree, PathBuf)> = None;
    // Bounded by the number of snapshot files listed.
    for (zxid, path) in &snaps {
        let started = std::time::Instant::now();
        let mut reporter = ProgressPrinter::new(path);
        match snapshot::load_with_progress(disk, path, &mut |p| reporter.report(p)) {
            Ok((tree, header)) => {
                let took = started.elapsed().as_secs_f64().max(1e-6);
                let bytes = reporter.bytes;
                eprintln!(
                    "ringkeeper: recovery: loaded {} (format {}): {} znodes, {} bytes in {:.3} s \
                     ({:.0} MB/s, {:.0} znodes/s)",
                    path.display(),
                    header.version,
                    tree.len(),
                    bytes,
                    took,
                    bytes as f64 / took / 1e6,
                    tree.len() as f64 / took
                );
                if tree.zxid() != *zxid {
                    notes.push(format!(
                        "snapshot {} holds zxid {:#x}, its name says {zxid:#x}; skipped",
                        path.display(),
                        tree.zxid()
                    ));
                    continue;
                }
                base = Some((tree, path.clone()));
                break;
            }
            Err(e @ SnapshotError::Corrupt { .. }) => {
                notes.push(format!("{e}; falling back to the previous snapshot"));
            }
            Err(e @ SnapshotError::Io { .. }) => return Err(RecoveryError::Snapshot(e)),
        }
    }
    for n in &notes {
        eprintln!("ringkeeper: recovery: {n}");
    }
    let (mut tree, snapshot) = match base {
        Some((t, p)) => (t, Some(p)),
        None => (DataTree::new(), None),
    };
    let start = tree.zxid();
    let mut last = start;
    let mut replayed = 0u64;
    let mut continuity: Option<String> = None;
    let replay_started = std::time::Instant::now();
    let replay = log.replay_after(start, &mut |txn: &Txn| {
        if !follows(last, txn.zxid) {
            let msg = if last == start {
                format!(
                    "the log's first txn after zxid {start:#x} ({}) is {:#x}: \
                     the txns between are missing",
                    snapshot
                        .as_ref()
                        .map_or("the empty tree".to_string(), |p| format!(
                            "snapshot {}",
                            p.display()
                        )),
                    txn.zxid
                )
            } else {
                format!(
                    "the log holds zxid {:#x} right after {last:#x}: out of order or a gap",
                    txn.zxid
                )
            };
            continuity = Some(msg.clone());
            return Err(msg);
        }
        tree.apply(txn);
        last = txn.zxid;
        replayed += 1;
        Ok(())
    });
    if let Some(msg) = continuity {
        return Err(RecoveryError::Continuity(msg));
    }
    let replay = replay.map_err(RecoveryError::Log)?;
    eprintln!(
        "ringkeeper: recovery: replayed {replayed} txns after zxid {start:#x} from the log in {:.3} s",
        replay_started.elapsed().as_secs_f64()
    );
    for n in &replay.notes {
        eprintln!("ringkeeper: recovery: {n}");
    }
    notes.extend(replay.notes);
    assert_eq!(tree.zxid(), last, "tree zxid follows the replay");
    Ok(Recovered {
        tree,
        zxid: last,
        snapshot,
        replayed,
        notes,
    })
}

#[cfg(test)]
mod tests;
