//! Opening the data directories at start: the newest valid snapshot plus the log after
//! it ([`recovery`](super::recovery)), read through the real [`LogReader`], and the
//! position the log writer resumes from.

use super::disk::Disk;
use super::reader::{LogEnd, LogError, LogPosition, LogReader};
use super::recovery::{self, LogReplay, TxnSource};
use crate::tree::DataTree;
use crate::txn::Txn;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What start-up recovered.
#[derive(Debug)]
pub struct Opened {
    pub tree: DataTree,
    /// The zxid of the last txn the tree reflects (0 for an empty history).
    pub zxid: i64,
    /// The zxid of the snapshot recovery started from (`None`: the empty tree).
    pub snapshot_zxid: Option<i64>,
    /// Where the log writer resumes.
    pub position: LogPosition,
    /// Fallbacks and repairs, in order (each also printed).
    pub notes: Vec<String>,
}

/// A [`TxnSource`] over the log directory that remembers where the log ends.
pub struct ReaderSource {
    reader: LogReader,
    end: Option<LogEnd>,
}

impl ReaderSource {
    pub fn open(disk: Arc<dyn Disk>, dir: &Path) -> Result<ReaderSource, LogError> {
        Ok(ReaderSource {
            reader: LogReader::open(disk, dir)?,
            end: None,
        })
    }

    /// The end of the log the last replay found.
    pub fn end(&self) -> Option<&LogEnd> {
        self.end.as_ref()
    }
}

/// Txns decoded ahead of the one being applied (see [`ReaderSource`]'s replay).
const REPLAY_AHEAD: usize = 4096;

impl TxnSource for ReaderSource {
    /// Reads and decodes the log on a second thread while this one applies, so a long
    /// log tail costs about the larger of the two rather than their sum (decoding
    /// allocates each txn's path, data and ACL).
    fn oldest_zxid(&self) -> Option<i64> {
        self.reader
            .segments()
            .first()
            .and_then(|p| crate::storage::format::parse_segment_name(p.file_name()?.to_str()?))
    }

    fn replay_after(
        &mut self,
        after: i64,
        apply: &mut dyn FnMut(&Txn) -> Result<(), String>,
    ) -> Result<LogReplay, String> {
        let reader = &self.reader;
        let (end, refused) = std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(Txn, Arc<PathBuf>, u64)>(REPLAY_AHEAD);
            let decoder = scope.spawn(move || {
                let mut file: Option<Arc<PathBuf>> = None;
                reader.replay(after + 1, |rec| {
                    if file.as_deref().map(PathBuf::as_path) != Some(rec.file) {
                        file = Some(Arc::new(rec.file.to_path_buf()));
                    }
                    let f = file.clone().expect("set just above");
                    tx.send((rec.txn, f, rec.offset))
                        .map_err(|_| LogError::Corrupt {
                            file: rec.file.to_path_buf(),
                            offset: rec.offset,
                            expected: "the applying thread to take the txn (it stopped)".into(),
                        })
                })
            });
            // The first txn `apply` refuses, with where it is; then the channel is
            // dropped, which stops the decoder at its next send.
            let mut refused: Option<LogError> = None;
            for (txn, file, offset) in rx.iter() {
                if let Err(expected) = apply(&txn) {
                    refused = Some(LogError::Corrupt {
                        file: file.to_path_buf(),
                        offset,
                        expected,
                    });
                    break;
                }
            }
            drop(rx);
            let end = decoder.join().expect("the log decoder does not panic");
            (end, refused)
        });
        if let Some(e) = refused {
            return Err(e.to_string());
        }
        let end = end.map_err(|e| e.to_string())?;
        let mut notes = Vec::new();
        if let Some(t) = &end.torn {
            notes.push(format!(
                "truncated the torn tail of {} at byte {}: {}",
                t.file.display(),
                t.offset,
                t.reason
            ));
        }
        self.end = Some(end);
        Ok(LogReplay { notes })
    }
}

/// Recovers the tree from `snap_dir` and `log_dir`.
///
/// # Errors
/// Corruption before the log's tail, a snapshot/log gap, or an I/O failure, with the
/// file, offset and expectation: the server must refuse to start.
pub fn open(disk: Arc<dyn Disk>, snap_dir: &Path, log_dir: &Path) -> Result<Opened, String> {
    let mut source = ReaderSource::open(disk.clone(), log_dir).map_err(|e| e.to_string())?;
    let rec = recovery::recover_with(&*disk, snap_dir, &mut source).map_err(|e| e.to_string())?;
    let position = match source.end() {
        Some(end) => end.position,
        None => LogPosition::default(),
    };
    // A log whose last zxid is behind the snapshot (it was purged, or lost) resumes
    // after the snapshot: the writer starts a new segment there.
    let position = if position.last_zxid < rec.zxid {
        LogPosition {
            last_zxid: rec.zxid,
            tail: None,
        }
    } else {
        position
    };
    let snapshot_zxid = rec.snapshot.as_ref().map(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        super::snapshot::zxid_of_name(name).expect("recovery loads snapshots by name")
    });
    Ok(Opened {
        snapshot_zxid,
        tree: rec.tree,
        zxid: rec.zxid,
        position,
        notes: rec.notes,
    })
}
